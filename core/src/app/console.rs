//! Restricted remote console messages (content type `Console`, which needs the `RemoteConsole`
//! grant). Appliances run only the commands their maker registered; there is no shell, no
//! command line is ever interpreted, and arguments are passed to the registered handler as text.
//!
//! | type | message    | sent by  | payload after the type byte                                       |
//! |------|------------|----------|-------------------------------------------------------------------|
//! | 0x01 | `List`     | provider | request u16                                                       |
//! | 0x02 | `Commands` | agent    | request u16, count u8, names (len u8, UTF-8 each)                 |
//! | 0x03 | `Run`      | provider | request u16, name (len u8, UTF-8), args (len u16, UTF-8, ≤ 1024)  |
//! | 0x04 | `Output`   | agent    | request u16, part u16, last u8 (0/1), status i32, data (the rest) |
//! | 0x05 | `Refused`  | agent    | request u16, reason u8                                            |
//!
//! Command names are 1 to [`MAX_COMMAND_LEN`] bytes of `a-z`, `0-9`, `-`, `_`, `.`. `status` is
//! meaningful in the last part only (0: success). Output longer than one payload comes in parts
//! numbered from 0.

use crate::wire::{MAX_PAYLOAD_LEN, Reader, Writer};

use super::{read_flag, read_text, write_text};

/// Longest command name, in bytes.
pub const MAX_COMMAND_LEN: usize = 32;
/// Longest argument text, in bytes.
pub const MAX_ARGS_LEN: usize = 1024;
/// Most names one `Commands` message lists.
pub const MAX_COMMANDS: usize = 64;
/// Bytes before an output's data: type, request, part, last, status.
pub const OUTPUT_OVERHEAD: usize = 1 + 2 + 2 + 1 + 4;
/// Most output bytes one `Output` carries.
pub const MAX_OUTPUT_LEN: usize = MAX_PAYLOAD_LEN - OUTPUT_OVERHEAD;

/// Whether `name` is a valid command name.
pub fn is_command_name(name: &str) -> bool {
    (1..=MAX_COMMAND_LEN).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

/// Why a command was not run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RefusalReason {
    /// No command of that name is registered.
    UnknownCommand,
    /// The handler refused the arguments.
    BadArguments,
    /// Another command is still running.
    Busy,
    /// Any other value.
    Other,
}

impl RefusalReason {
    /// Wire byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            RefusalReason::UnknownCommand => 1,
            RefusalReason::BadArguments => 2,
            RefusalReason::Busy => 3,
            RefusalReason::Other => 0,
        }
    }

    /// Parses the wire byte; unknown values are [`RefusalReason::Other`].
    pub const fn from_byte(byte: u8) -> RefusalReason {
        match byte {
            1 => RefusalReason::UnknownCommand,
            2 => RefusalReason::BadArguments,
            3 => RefusalReason::Busy,
            _ => RefusalReason::Other,
        }
    }
}

/// One console message, borrowing from the payload it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsoleRepr<'a> {
    /// "Which commands are there?"
    List {
        /// Request id, echoed in the reply.
        request: u16,
    },
    /// The registered command names.
    Commands {
        /// The request's id.
        request: u16,
        /// The names, already checked: iterate with [`CommandNames::iter`].
        names: CommandNames<'a>,
    },
    /// "Run this registered command."
    Run {
        /// Request id, echoed in the reply.
        request: u16,
        /// A command name.
        command: &'a str,
        /// Argument text for the handler (never a command line).
        args: &'a str,
    },
    /// Part of a command's output.
    Output {
        /// The request's id.
        request: u16,
        /// Part number, from 0.
        part: u16,
        /// Whether the command has finished.
        last: bool,
        /// Exit status (in the last part; 0 is success).
        status: i32,
        /// Output bytes (text, by convention).
        data: &'a [u8],
    },
    /// The command was not run.
    Refused {
        /// The request's id.
        request: u16,
        /// Why.
        reason: RefusalReason,
    },
}

/// The checked name list of a `Commands` message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandNames<'a> {
    count: u8,
    bytes: &'a [u8],
}

impl<'a> CommandNames<'a> {
    /// The names in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        let mut reader = Reader::new(self.bytes);
        core::iter::from_fn(move || read_text(&mut reader, 1, MAX_COMMAND_LEN))
    }

    /// How many names.
    pub const fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether there are none.
    pub const fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encodes `names` into `buf` (each must be a command name; at most [`MAX_COMMANDS`]).
    pub fn encode<'b>(names: &[&str], buf: &'b mut [u8]) -> Option<CommandNames<'b>> {
        if names.len() > MAX_COMMANDS || !names.iter().all(|name| is_command_name(name)) {
            return None;
        }
        let mut writer = Writer::new(buf);
        for name in names {
            write_text(&mut writer, name)?;
        }
        let len = writer.finish()?;
        Some(CommandNames { count: names.len() as u8, bytes: &buf[..len] })
    }
}

mod message_type {
    pub(super) const LIST: u8 = 0x01;
    pub(super) const COMMANDS: u8 = 0x02;
    pub(super) const RUN: u8 = 0x03;
    pub(super) const OUTPUT: u8 = 0x04;
    pub(super) const REFUSED: u8 = 0x05;
}

impl<'a> ConsoleRepr<'a> {
    /// Parses one payload; `None` if it is malformed in any way.
    pub fn parse(payload: &'a [u8]) -> Option<ConsoleRepr<'a>> {
        let mut reader = Reader::new(payload);
        let message = reader.u8()?;
        let request = reader.u16()?;
        let repr = match message {
            message_type::LIST => ConsoleRepr::List { request },
            message_type::COMMANDS => {
                let count = reader.u8()?;
                if usize::from(count) > MAX_COMMANDS {
                    return None;
                }
                let bytes = reader.rest();
                let mut names = Reader::new(bytes);
                for _ in 0..count {
                    if !is_command_name(read_text(&mut names, 1, MAX_COMMAND_LEN)?) {
                        return None;
                    }
                }
                if !names.is_empty() {
                    return None;
                }
                ConsoleRepr::Commands { request, names: CommandNames { count, bytes } }
            }
            message_type::RUN => {
                let command = read_text(&mut reader, 1, MAX_COMMAND_LEN)?;
                if !is_command_name(command) {
                    return None;
                }
                let args_len = usize::from(reader.u16()?);
                if args_len > MAX_ARGS_LEN {
                    return None;
                }
                let args = core::str::from_utf8(reader.take(args_len)?).ok()?;
                ConsoleRepr::Run { request, command, args }
            }
            message_type::OUTPUT => {
                let part = reader.u16()?;
                let last = read_flag(&mut reader)?;
                let status = i32::from_be_bytes(reader.array::<4>()?);
                let data = reader.rest();
                if data.len() > MAX_OUTPUT_LEN {
                    return None;
                }
                ConsoleRepr::Output { request, part, last, status, data }
            }
            message_type::REFUSED => ConsoleRepr::Refused { request, reason: RefusalReason::from_byte(reader.u8()?) },
            _ => return None,
        };
        reader.is_empty().then_some(repr)
    }

    /// Writes the payload into `out` and returns its length; `None` if it does not fit or a
    /// field is out of range.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let mut writer = Writer::new(out);
        match *self {
            ConsoleRepr::List { request } => {
                writer.u8(message_type::LIST);
                writer.u16(request);
            }
            ConsoleRepr::Commands { request, names } => {
                writer.u8(message_type::COMMANDS);
                writer.u16(request);
                writer.u8(names.count);
                writer.put(names.bytes);
            }
            ConsoleRepr::Run { request, command, args } => {
                if !is_command_name(command) || args.len() > MAX_ARGS_LEN {
                    return None;
                }
                writer.u8(message_type::RUN);
                writer.u16(request);
                write_text(&mut writer, command)?;
                writer.u16(args.len() as u16);
                writer.put(args.as_bytes());
            }
            ConsoleRepr::Output { request, part, last, status, data } => {
                if data.len() > MAX_OUTPUT_LEN {
                    return None;
                }
                writer.u8(message_type::OUTPUT);
                writer.u16(request);
                writer.u16(part);
                writer.u8(u8::from(last));
                writer.put(&status.to_be_bytes());
                writer.put(data);
            }
            ConsoleRepr::Refused { request, reason } => {
                writer.u8(message_type::REFUSED);
                writer.u16(request);
                writer.u8(reason.to_byte());
            }
        }
        writer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let mut names_buf = [0u8; 128];
        let names = CommandNames::encode(&["uptime", "net.status", "reboot_later"], &mut names_buf).unwrap();
        let messages = [
            ConsoleRepr::List { request: 1 },
            ConsoleRepr::Commands { request: 1, names },
            ConsoleRepr::Run { request: 2, command: "net.status", args: "eth0 --verbose" },
            ConsoleRepr::Output { request: 2, part: 0, last: true, status: -3, data: b"link up\n" },
            ConsoleRepr::Refused { request: 3, reason: RefusalReason::UnknownCommand },
        ];
        for message in messages {
            let mut buf = [0u8; 256];
            let len = message.emit(&mut buf).unwrap();
            assert_eq!(ConsoleRepr::parse(&buf[..len]), Some(message));
            if !matches!(message, ConsoleRepr::Output { .. }) {
                assert_eq!(ConsoleRepr::parse(&buf[..len + 1]), None, "trailing byte {message:?}");
            }
        }
        assert!(names.iter().eq(["uptime", "net.status", "reboot_later"]));
        assert_eq!(names.len(), 3);
    }

    #[test]
    fn nothing_shell_like_gets_through() {
        for bad in ["", "rm -rf", "sh;id", "Reboot", "../x", "a/b", "$(id)", "x".repeat(33).as_str()] {
            assert!(!is_command_name(bad), "{bad:?}");
            let mut buf = [0u8; 64];
            assert_eq!(ConsoleRepr::Run { request: 1, command: bad, args: "" }.emit(&mut buf), None);
        }
        let mut names_buf = [0u8; 64];
        assert!(CommandNames::encode(&["ok", "no way"], &mut names_buf).is_none());
        // A hostile Run with a space in the name does not parse.
        let hostile = [0x03, 0, 1, 5, b's', b'h', b' ', b'-', b'c', 0, 0];
        assert_eq!(ConsoleRepr::parse(&hostile), None);
        // Arguments over the limit.
        let mut long = [0u8; 8 + MAX_ARGS_LEN + 1];
        long[..6].copy_from_slice(&[0x03, 0, 1, 1, b'a', 0x04]);
        long[6] = 0x01;
        assert_eq!(ConsoleRepr::parse(&long[..7 + MAX_ARGS_LEN + 1]), None);
        // A name count that promises more than there is, or less.
        assert_eq!(ConsoleRepr::parse(&[0x02, 0, 1, 2, 1, b'a']), None);
        assert_eq!(ConsoleRepr::parse(&[0x02, 0, 1, 0, 1, b'a']), None);
        assert_eq!(ConsoleRepr::parse(&[0x04, 0, 1, 0, 0, 2, 0, 0, 0, 0]), None, "a bad last flag");
    }
}
