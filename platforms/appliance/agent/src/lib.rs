//! The Lifeline appliance agent, independent of the board: what an appliance offers a support
//! provider once it has joined a session as the customer side, always behind the device
//! owner's consent.
//!
//! It speaks the core's application messages ([`lifeline_core::app`]), the same the desktop
//! apps (`lifeline-apps`) speak, so a desktop provider drives an appliance like any customer:
//!
//! - **Consent**: every capability request reaches the owner through the OEM hook
//!   ([`Oem::ask_consent`]); only the owner's answer ([`Oem::owner_input`]) grants, denies or
//!   revokes. The engine enforces it: data needing a capability not granted never reaches this
//!   code, and nothing here can widen a grant.
//! - **Diagnostics** ([`diagnostics`]): a `Query` is answered per asked section with one
//!   `Report` of key/value records: `System` (firmware, board, uptime), `Memory` (RAM, static
//!   data, stack size and peak, flash), `Network` (link, address, Ethernet counters),
//!   `Counters` (the engine's and the OEM's); other sections are answered empty.
//! - **Restricted console** ([`console`]): `List` returns the OEM's registered commands
//!   ([`ConsoleCommand`]); `Run` runs one of them with its argument text, or is `Refused`
//!   (`UnknownCommand`). There is no shell and no command line is interpreted.
//! - **Files** ([`file`]): a provider `Fetch`es one of the OEM's small files (logs,
//!   configuration); the agent `Offer`s it with its size and SHA-256, then sends `Chunk`s
//!   within the receiver's window as it `Accept`s and `Ack`s; the receiver checks the SHA-256
//!   of the whole file and answers `Complete` (or `Cancel` with `Integrity`).
#![no_std]
#![forbid(unsafe_code)]
#![allow(async_fn_in_trait)] // single-threaded executor: no Send bound wanted

use core::fmt::{self, Write as _};

use heapless::String;
use lifeline_core::app::console::{self, CommandNames, ConsoleRepr};
use lifeline_core::app::diagnostics::{self, DiagnosticsRepr, RecordWriter, Section};
use lifeline_core::app::file::{self, CancelReason, FileRepr, Side};
use lifeline_core::consent::Capability;
use lifeline_core::session::Event;
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::{Destination, MemberId};
use lifeline_transport_embassy::{Application, ConnectionState, Io};
use sha2::{Digest as _, Sha256};

/// Largest file chunk the agent sends (a few fit the transport's outbox at once).
pub const CHUNK: usize = 1024;
/// Largest reply the agent builds (a diagnostics section, console output).
const REPLY: usize = 1536;

/// A command the OEM allows a provider to run (with the owner's consent to the console).
#[derive(Clone, Copy)]
pub struct ConsoleCommand {
    /// Its name ([`console::is_command_name`]: `a-z`, `0-9`, `-`, `_`, `.`).
    pub name: &'static str,
    /// One line of help.
    pub help: &'static str,
    /// Runs it: `args` is the argument text; output goes to `out` (bounded; overflow is cut);
    /// the exit status (0: success).
    pub run: fn(args: &str, out: &mut dyn fmt::Write) -> i32,
}

/// A decision of the device owner, from the OEM's input (console, buttons).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum OwnerInput {
    /// Allow the capability (answers its prompt).
    Allow(Capability),
    /// Refuse it (answers its prompt).
    Deny(Capability),
    /// Take it back.
    Revoke(Capability),
    /// End the session.
    End,
    /// Nothing for the session (the OEM handled it, or it was not understood).
    None,
}

/// What the appliance's maker provides: the owner's interface, board facts, commands, files.
pub trait Oem {
    /// Shows a line to the owner (and, in the emulated build, to the test harness).
    fn show(&mut self, line: fmt::Arguments<'_>);
    /// Asks the owner whether `from` may use `capability`. The answer comes through
    /// [`owner_input`](Self::owner_input); until then the engine applies no remote input.
    fn ask_consent(&mut self, from: MemberId, capability: Capability);
    /// Resolves with the owner's next decision. Must be cancel-safe.
    async fn owner_input(&mut self) -> OwnerInput;
    /// Board records for a diagnostics section (`System`, `Memory`, `Network`, `Counters`...).
    fn diagnostics(&mut self, section: Section, records: &mut Records<'_, '_>);
    /// The registered console commands.
    fn commands(&self) -> &[ConsoleCommand];
    /// The files a provider may fetch, by name.
    fn files(&self) -> &[(&'static str, &'static [u8])];
}

/// Key/value records of one diagnostics section, as the OEM adds them.
pub struct Records<'w, 'b> {
    writer: &'w mut RecordWriter<'b>,
}

impl Records<'_, '_> {
    /// Adds `key = value` (formatted); dropped if the section's part is full.
    pub fn add(&mut self, key: &str, value: impl fmt::Display) {
        let mut text: String<96> = String::new();
        let _ = write!(text, "{value}");
        let _ = self.writer.push(key, &text);
    }
}

/// The one file transfer the agent serves at a time.
struct Transfer {
    peer: MemberId,
    id: u32,
    name: &'static str,
    contents: &'static [u8],
    /// Next byte to send.
    next: usize,
    /// Bytes the receiver acknowledged.
    acked: usize,
    /// Bytes the sender may have unacknowledged.
    window: usize,
    /// Accepted: chunks may flow.
    accepted: bool,
}

/// The agent: a transport [`Application`] around the OEM hooks.
pub struct Agent<O: Oem> {
    oem: O,
    firmware: &'static str,
    pending_input: Option<OwnerInput>,
    transfer: Option<Transfer>,
}

impl<O: Oem> Agent<O> {
    /// An agent reporting `firmware` as its version.
    pub fn new(oem: O, firmware: &'static str) -> Self {
        Agent { oem, firmware, pending_input: None, transfer: None }
    }

    /// The OEM hooks.
    pub fn oem(&mut self) -> &mut O {
        &mut self.oem
    }

    // ---- diagnostics ---------------------------------------------------------------------

    fn diagnostics(&mut self, io: &mut Io<'_>, from: MemberId, payload: &[u8]) {
        let Some(DiagnosticsRepr::Query { request, sections }) = DiagnosticsRepr::parse(payload) else {
            if let Some(request) = request_id(payload) {
                let refused = DiagnosticsRepr::Refused { request, reason: diagnostics::RefusalReason::BadQuery };
                self.emit_diagnostics(io, from, &refused);
            }
            return;
        };
        let stats = io.session().stats();
        let epoch = io.session().epoch();
        let granted = io.session().consent().granted().bits();
        let mut sent = 0;
        for section in sections.iter() {
            let mut buffer = [0u8; REPLY];
            let mut writer = RecordWriter::new(&mut buffer);
            let mut records = Records { writer: &mut writer };
            match section {
                Section::System => records.add("firmware", self.firmware),
                Section::Counters => {
                    records.add("session.epoch", epoch);
                    records.add("session.granted", format_args!("0x{granted:02x}"));
                    records.add("session.frames_in", stats.frames_in);
                    records.add("session.frames_out", stats.frames_out);
                    records.add("session.unauthentic", stats.unauthentic);
                    records.add("session.replayed", stats.replayed);
                    records.add("session.malformed", stats.malformed);
                    records.add("session.refused_by_consent", stats.refused_by_consent);
                }
                _ => {}
            }
            self.oem.diagnostics(section, &mut records);
            let report = DiagnosticsRepr::Report { request, section, part: 0, last: true, records: writer.records() };
            self.emit_diagnostics(io, from, &report);
            sent += 1;
        }
        self.oem.show(format_args!("@diagnostics sent sections={sent}"));
    }

    fn emit_diagnostics(&mut self, io: &mut Io<'_>, to: MemberId, message: &DiagnosticsRepr<'_>) {
        let mut out = [0u8; REPLY + 16];
        if let Some(len) = message.emit(&mut out) {
            self.reply(io, to, ContentType::Diagnostics, &out[..len]);
        }
    }

    // ---- console -------------------------------------------------------------------------

    fn console(&mut self, io: &mut Io<'_>, from: MemberId, payload: &[u8]) {
        let mut out = [0u8; REPLY + 16];
        let message = match ConsoleRepr::parse(payload) {
            Some(ConsoleRepr::List { request }) => {
                let mut names: heapless::Vec<&str, { console::MAX_COMMANDS }> = heapless::Vec::new();
                for command in self.oem.commands() {
                    let _ = names.push(command.name);
                }
                let mut buffer = [0u8; 512];
                match CommandNames::encode(&names, &mut buffer) {
                    Some(names) => ConsoleRepr::Commands { request, names }.emit(&mut out),
                    None => ConsoleRepr::Refused { request, reason: console::RefusalReason::Other }.emit(&mut out),
                }
            }
            Some(ConsoleRepr::Run { request, command, args }) => {
                match self.oem.commands().iter().find(|registered| registered.name == command).copied() {
                    Some(registered) => {
                        let mut output: String<REPLY> = String::new();
                        let status = (registered.run)(args, &mut output);
                        self.oem.show(format_args!("@console ran {} status={status}", registered.name));
                        ConsoleRepr::Output { request, part: 0, last: true, status, data: output.as_bytes() }
                            .emit(&mut out)
                    }
                    None => {
                        self.oem.show(format_args!("@console refused {}", printable(command)));
                        ConsoleRepr::Refused { request, reason: console::RefusalReason::UnknownCommand }.emit(&mut out)
                    }
                }
            }
            // Replies are the provider's to receive; a malformed request is dropped.
            _ => None,
        };
        if let Some(len) = message {
            self.reply(io, from, ContentType::Console, &out[..len]);
        }
    }

    // ---- files ---------------------------------------------------------------------------

    fn file(&mut self, io: &mut Io<'_>, from: MemberId, payload: &[u8]) {
        match FileRepr::parse(payload) {
            Some(FileRepr::Fetch { id, name }) => self.fetch(io, from, id, name),
            Some(FileRepr::Accept { id, offset, window }) => {
                if let Some(transfer) = self.transfer_mut(from, id) {
                    // Also a restart from `offset` after a gap (a reconnect lost chunks).
                    let offset = usize::try_from(offset).unwrap_or(usize::MAX).min(transfer.contents.len());
                    transfer.next = offset;
                    transfer.acked = offset;
                    transfer.window = usize::try_from(window).unwrap_or(usize::MAX).max(1);
                    transfer.accepted = true;
                    self.send_chunks(io);
                }
            }
            Some(FileRepr::Ack { id, received }) => {
                if let Some(transfer) = self.transfer_mut(from, id) {
                    let received = usize::try_from(received).unwrap_or(usize::MAX).min(transfer.next);
                    transfer.acked = transfer.acked.max(received);
                    self.send_chunks(io);
                }
            }
            Some(FileRepr::Complete { id }) => {
                if let Some(transfer) = self.transfer_mut(from, id) {
                    let (name, size) = (transfer.name, transfer.contents.len());
                    self.transfer = None;
                    self.oem.show(format_args!("@file sent {name} bytes={size}"));
                }
            }
            Some(FileRepr::Cancel { id, reason, .. }) if self.transfer_mut(from, id).is_some() => {
                self.transfer = None;
                self.oem.show(format_args!("@file cancelled by the receiver ({reason:?})"));
            }
            // Offers and chunks: the agent receives no files.
            Some(FileRepr::Offer { id, .. }) => self.cancel(io, from, id, Side::Receiver, CancelReason::Declined),
            _ => {}
        }
    }

    fn fetch(&mut self, io: &mut Io<'_>, from: MemberId, id: u32, name: &str) {
        if self.transfer.is_some() {
            self.cancel(io, from, id, Side::Sender, CancelReason::Other);
            return;
        }
        let Some((name, contents)) = self.oem.files().iter().find(|(candidate, _)| *candidate == name).copied() else {
            self.oem.show(format_args!("@file not found {}", printable(name)));
            self.cancel(io, from, id, Side::Sender, CancelReason::NotFound);
            return;
        };
        let sha256: [u8; 32] = Sha256::digest(contents).into();
        let offer = FileRepr::Offer { id, size: contents.len() as u64, sha256, name };
        let mut out = [0u8; 1 + 4 + 8 + 32 + 1 + file::MAX_NAME_LEN];
        if let Some(len) = offer.emit(&mut out) {
            self.reply(io, from, ContentType::File, &out[..len]);
            self.transfer =
                Some(Transfer { peer: from, id, name, contents, next: 0, acked: 0, window: 0, accepted: false });
        }
    }

    fn transfer_mut(&mut self, peer: MemberId, id: u32) -> Option<&mut Transfer> {
        self.transfer.as_mut().filter(|transfer| transfer.peer == peer && transfer.id == id)
    }

    /// Sends chunks while the window and the outbox allow; the next `Ack` sends more.
    fn send_chunks(&mut self, io: &mut Io<'_>) {
        let Some(transfer) = self.transfer.as_mut() else { return };
        let mut out = [0u8; file::CHUNK_OVERHEAD + CHUNK];
        while transfer.accepted && transfer.next < transfer.contents.len() {
            let in_flight = transfer.next - transfer.acked;
            if in_flight >= transfer.window {
                break;
            }
            let len = CHUNK.min(transfer.window - in_flight).min(transfer.contents.len() - transfer.next);
            if io.room() < file::CHUNK_OVERHEAD + len {
                break;
            }
            let data = &transfer.contents[transfer.next..transfer.next + len];
            let chunk = FileRepr::Chunk { id: transfer.id, offset: transfer.next as u64, data };
            let Some(size) = chunk.emit(&mut out) else { break };
            if io.send(Destination::Member(transfer.peer), ContentType::File, &out[..size]).is_err() {
                break;
            }
            transfer.next += len;
        }
    }

    fn cancel(&mut self, io: &mut Io<'_>, to: MemberId, id: u32, by: Side, reason: CancelReason) {
        let mut out = [0u8; 16];
        if let Some(len) = (FileRepr::Cancel { id, by, reason }).emit(&mut out) {
            self.reply(io, to, ContentType::File, &out[..len]);
        }
    }

    fn reply(&mut self, io: &mut Io<'_>, to: MemberId, content: ContentType, payload: &[u8]) {
        if let Err(error) = io.send(Destination::Member(to), content, payload) {
            log::warn!("agent: reply to {} not sent ({error})", to.0);
        }
    }
}

impl<O: Oem> Application for Agent<O> {
    fn on_connection(&mut self, state: ConnectionState) {
        match state {
            ConnectionState::Connecting { port } => self.oem.show(format_args!("@relay connecting port={port}")),
            ConnectionState::Connected { port, member, resumed } => {
                self.oem.show(format_args!("@relay connected port={port} member={} resumed={resumed}", member.0))
            }
            ConnectionState::Reconnecting { attempt, delay } => {
                self.oem.show(format_args!("@relay reconnecting attempt={attempt} delay_ms={}", delay.as_millis()))
            }
            _ => {}
        }
    }

    fn on_event(&mut self, _io: &mut Io<'_>, event: Event) {
        match event {
            Event::Joined { epoch } => self.oem.show(format_args!("@joined epoch={epoch}")),
            Event::MemberAnnounced { member, role, name } => {
                self.oem.show(format_args!("@member id={} role={role:?} name={}", member.0, printable(&name)))
            }
            Event::MemberLeft { member } => {
                if self.transfer.as_ref().is_some_and(|transfer| transfer.peer == member) {
                    self.transfer = None;
                }
                self.oem.show(format_args!("@member-left id={}", member.0))
            }
            Event::ConsentRequested { from, capability } => {
                self.oem.show(format_args!("@consent-request {} from={}", capability_key(capability), from.0));
                self.oem.ask_consent(from, capability);
            }
            Event::ConsentChanged { granted, pending } => {
                if !granted.contains(Capability::FileTransfer) {
                    // Revoked (or never granted): a transfer in progress stops at once.
                    self.transfer = None;
                }
                self.oem.show(format_args!(
                    "@consent granted=0x{:02x} pending=0x{:02x}",
                    granted.bits(),
                    pending.bits()
                ))
            }
            Event::DataRefused { from, content, capability } => {
                self.oem.show(format_args!("@refused {content:?} from={} needs={}", from.0, capability_key(capability)))
            }
            Event::Rekeyed { epoch } => self.oem.show(format_args!("@rekeyed epoch={epoch}")),
            Event::Closed { reason } => self.oem.show(format_args!("@session-closed {reason}")),
            other => log::debug!("agent: {other:?}"),
        }
    }

    fn on_data(&mut self, io: &mut Io<'_>, from: MemberId, content: ContentType, payload: &[u8]) {
        match content {
            ContentType::Chat => {
                let text = core::str::from_utf8(payload).unwrap_or("<not UTF-8>");
                self.oem.show(format_args!("@chat from={} {}", from.0, printable(text)));
            }
            ContentType::Diagnostics => self.diagnostics(io, from, payload),
            ContentType::Console => self.console(io, from, payload),
            ContentType::File => self.file(io, from, payload),
            other => log::info!("agent: {other:?} from {} ignored (not offered)", from.0),
        }
    }

    fn on_writable(&mut self, io: &mut Io<'_>) {
        self.send_chunks(io);
    }

    async fn wait_local(&mut self) {
        // Cancel-safe: the input is taken and stored in the same poll.
        let input = self.oem.owner_input().await;
        self.pending_input = Some(input);
    }

    fn on_local(&mut self, io: &mut Io<'_>) {
        let Some(input) = self.pending_input.take() else { return };
        let result = match input {
            OwnerInput::Allow(capability) => io.session().grant(capability),
            OwnerInput::Deny(capability) => io.session().deny(capability),
            OwnerInput::Revoke(capability) => io.session().revoke(capability),
            OwnerInput::End => {
                let now = io.now();
                io.session().close(now);
                Ok(())
            }
            OwnerInput::None => Ok(()),
        };
        if let Err(error) = result {
            self.oem.show(format_args!("@owner-input refused {error}"));
        }
    }
}

/// The request id of a diagnostics message that did not parse, if it has one.
fn request_id(payload: &[u8]) -> Option<u16> {
    match payload {
        [0x01, high, low, ..] => Some(u16::from_be_bytes([*high, *low])),
        _ => None,
    }
}

/// The short key the owner types for a capability (and the harness reads).
pub const fn capability_key(capability: Capability) -> &'static str {
    match capability {
        Capability::ViewScreen => "view",
        Capability::RemoteControl => "control",
        Capability::FileTransfer => "files",
        Capability::Diagnostics => "diagnostics",
        Capability::Unattended => "unattended",
        Capability::RemoteConsole => "console",
        _ => "unknown",
    }
}

/// The capability for a key, as the owner types it.
pub fn capability_from_key(key: &str) -> Option<Capability> {
    Capability::ALL.into_iter().find(|capability| capability_key(*capability) == key)
}

/// Text from the network, shown on one line: control characters replaced, length bounded.
fn printable(text: &str) -> Printable<'_> {
    Printable(text)
}

struct Printable<'a>(&'a str);

impl fmt::Display for Printable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in self.0.chars().take(200) {
            f.write_char(if c.is_control() { '?' } else { c })?;
        }
        Ok(())
    }
}
