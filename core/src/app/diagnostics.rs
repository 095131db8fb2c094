//! Diagnostics messages (content type `Diagnostics`, which needs the `Diagnostics` grant).
//!
//! | type | message   | sent by  | payload after the type byte                                   |
//! |------|-----------|----------|---------------------------------------------------------------|
//! | 0x01 | `Query`   | provider | request u16, sections u16 (bit set of [`Section`])            |
//! | 0x02 | `Report`  | customer | request u16, section u8, part u16, last u8 (0/1), records      |
//! | 0x03 | `Refused` | customer | request u16, reason u8                                        |
//!
//! Records fill the rest of a `Report`: each is key (len u8, 1 to [`MAX_KEY_LEN`] bytes of
//! UTF-8) then value (len u16, up to [`MAX_VALUE_LEN`] bytes of UTF-8). A section larger than one
//! payload is split into parts numbered from 0; `last` marks the final part. The reply to a query
//! is complete when every asked section that the endpoint knows has had its last part; sections it
//! does not have are answered with an empty last part.
//!
//! The customer's application decides what each section holds and shows the customer what was
//! sent; keys are stable, short, lower-case names (`os.name`, `mem.total_kib`, `proc.1234`).

use crate::wire::{MAX_PAYLOAD_LEN, Reader, Writer};

use super::read_flag;

/// Longest record key, in bytes.
pub const MAX_KEY_LEN: usize = 64;
/// Longest record value, in bytes.
pub const MAX_VALUE_LEN: usize = 4096;
/// Bytes before a report's records: type, request, section, part, last.
pub const REPORT_OVERHEAD: usize = 1 + 2 + 1 + 2 + 1;

/// A part of the diagnostic picture a provider can ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Section {
    /// Operating system or firmware: name, version, host name, uptime.
    System,
    /// Processors and load.
    Cpu,
    /// Memory (and, on a microcontroller, stack) use.
    Memory,
    /// Disks and file systems.
    Disks,
    /// Network interfaces and addresses.
    Network,
    /// Routes.
    Routes,
    /// Running processes (or tasks).
    Processes,
    /// Recent system log lines.
    Logs,
    /// Counters the appliance's maker registered.
    Counters,
}

impl Section {
    /// Every section, in bit order.
    pub const ALL: [Section; 9] = [
        Section::System,
        Section::Cpu,
        Section::Memory,
        Section::Disks,
        Section::Network,
        Section::Routes,
        Section::Processes,
        Section::Logs,
        Section::Counters,
    ];

    /// Wire byte (and bit number in a query's set).
    pub const fn to_byte(self) -> u8 {
        match self {
            Section::System => 0,
            Section::Cpu => 1,
            Section::Memory => 2,
            Section::Disks => 3,
            Section::Network => 4,
            Section::Routes => 5,
            Section::Processes => 6,
            Section::Logs => 7,
            Section::Counters => 8,
        }
    }

    /// Parses the wire byte.
    pub const fn from_byte(byte: u8) -> Option<Section> {
        if (byte as usize) < Section::ALL.len() { Some(Section::ALL[byte as usize]) } else { None }
    }

    /// Short lower-case name, for display.
    pub const fn name(self) -> &'static str {
        match self {
            Section::System => "system",
            Section::Cpu => "cpu",
            Section::Memory => "memory",
            Section::Disks => "disks",
            Section::Network => "network",
            Section::Routes => "routes",
            Section::Processes => "processes",
            Section::Logs => "logs",
            Section::Counters => "counters",
        }
    }
}

/// A set of [`Section`]s (a query's `sections` field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sections(u16);

impl Sections {
    /// No section.
    pub const EMPTY: Sections = Sections(0);
    /// Every section.
    pub const ALL: Sections = Sections((1 << Section::ALL.len()) - 1);

    /// The set with `section` added.
    #[must_use]
    pub const fn with(self, section: Section) -> Sections {
        Sections(self.0 | 1 << section.to_byte())
    }

    /// Whether `section` is in the set.
    pub const fn contains(self, section: Section) -> bool {
        self.0 & (1 << section.to_byte()) != 0
    }

    /// Wire bits.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Parses wire bits; `None` if an unknown bit is set.
    pub const fn from_bits(bits: u16) -> Option<Sections> {
        if bits & !Sections::ALL.0 == 0 { Some(Sections(bits)) } else { None }
    }

    /// The sections in the set, in bit order.
    pub fn iter(self) -> impl Iterator<Item = Section> {
        Section::ALL.into_iter().filter(move |section| self.contains(*section))
    }
}

/// Why a query was not answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum RefusalReason {
    /// Another query is still being answered.
    Busy,
    /// The query was malformed or empty.
    BadQuery,
    /// Any other value.
    Other,
}

impl RefusalReason {
    /// Wire byte.
    pub const fn to_byte(self) -> u8 {
        match self {
            RefusalReason::Busy => 1,
            RefusalReason::BadQuery => 2,
            RefusalReason::Other => 0,
        }
    }

    /// Parses the wire byte; unknown values are [`RefusalReason::Other`].
    pub const fn from_byte(byte: u8) -> RefusalReason {
        match byte {
            1 => RefusalReason::Busy,
            2 => RefusalReason::BadQuery,
            _ => RefusalReason::Other,
        }
    }
}

/// One diagnostics message, borrowing from the payload it was parsed from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DiagnosticsRepr<'a> {
    /// "Send me these sections."
    Query {
        /// Request id, echoed in the reply.
        request: u16,
        /// What is asked for (not empty).
        sections: Sections,
    },
    /// One part of one section of the reply.
    Report {
        /// The query's id.
        request: u16,
        /// Which section.
        section: Section,
        /// Part number, from 0.
        part: u16,
        /// Whether this is the section's final part.
        last: bool,
        /// The records, already checked: iterate with [`Records`].
        records: Records<'a>,
    },
    /// The query will not be answered.
    Refused {
        /// The query's id.
        request: u16,
        /// Why.
        reason: RefusalReason,
    },
}

mod message_type {
    pub(super) const QUERY: u8 = 0x01;
    pub(super) const REPORT: u8 = 0x02;
    pub(super) const REFUSED: u8 = 0x03;
}

impl<'a> DiagnosticsRepr<'a> {
    /// Parses one payload; `None` if it is malformed in any way (records included).
    pub fn parse(payload: &'a [u8]) -> Option<DiagnosticsRepr<'a>> {
        let mut reader = Reader::new(payload);
        let message = reader.u8()?;
        let request = reader.u16()?;
        let repr = match message {
            message_type::QUERY => {
                let sections = Sections::from_bits(reader.u16()?)?;
                if sections == Sections::EMPTY {
                    return None;
                }
                DiagnosticsRepr::Query { request, sections }
            }
            message_type::REPORT => {
                let section = Section::from_byte(reader.u8()?)?;
                let part = reader.u16()?;
                let last = read_flag(&mut reader)?;
                let records = Records::new_checked(reader.rest())?;
                DiagnosticsRepr::Report { request, section, part, last, records }
            }
            message_type::REFUSED => {
                DiagnosticsRepr::Refused { request, reason: RefusalReason::from_byte(reader.u8()?) }
            }
            _ => return None,
        };
        reader.is_empty().then_some(repr)
    }

    /// Writes the payload into `out` and returns its length; `None` if it does not fit.
    pub fn emit(&self, out: &mut [u8]) -> Option<usize> {
        let mut writer = Writer::new(out);
        match *self {
            DiagnosticsRepr::Query { request, sections } => {
                writer.u8(message_type::QUERY);
                writer.u16(request);
                writer.u16(sections.bits());
            }
            DiagnosticsRepr::Report { request, section, part, last, records } => {
                writer.u8(message_type::REPORT);
                writer.u16(request);
                writer.u8(section.to_byte());
                writer.u16(part);
                writer.u8(u8::from(last));
                writer.put(records.bytes);
            }
            DiagnosticsRepr::Refused { request, reason } => {
                writer.u8(message_type::REFUSED);
                writer.u16(request);
                writer.u8(reason.to_byte());
            }
        }
        writer.finish()
    }
}

/// The checked records of a report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Records<'a> {
    bytes: &'a [u8],
}

impl<'a> Records<'a> {
    /// No records.
    pub const EMPTY: Records<'static> = Records { bytes: &[] };

    /// Checks that `bytes` is a sequence of well-formed records.
    pub fn new_checked(bytes: &'a [u8]) -> Option<Records<'a>> {
        let mut reader = Reader::new(bytes);
        while !reader.is_empty() {
            read_record(&mut reader)?;
        }
        Some(Records { bytes })
    }

    /// The records in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + use<'a> {
        let mut reader = Reader::new(self.bytes);
        core::iter::from_fn(move || read_record(&mut reader))
    }

    /// The encoded records.
    pub const fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

fn read_record<'a>(reader: &mut Reader<'a>) -> Option<(&'a str, &'a str)> {
    let key_len = usize::from(reader.u8()?);
    if !(1..=MAX_KEY_LEN).contains(&key_len) {
        return None;
    }
    let key = core::str::from_utf8(reader.take(key_len)?).ok()?;
    let value_len = usize::from(reader.u16()?);
    if value_len > MAX_VALUE_LEN {
        return None;
    }
    let value = core::str::from_utf8(reader.take(value_len)?).ok()?;
    Some((key, value))
}

/// Builds the records of one report part in a caller buffer.
///
/// ```
/// use lifeline_core::app::diagnostics::{DiagnosticsRepr, RecordWriter, Section};
/// let mut records = [0u8; 256];
/// let mut writer = RecordWriter::new(&mut records);
/// assert!(writer.push("os.name", "Linux"));
/// let report = DiagnosticsRepr::Report {
///     request: 1, section: Section::System, part: 0, last: true, records: writer.records(),
/// };
/// let mut payload = [0u8; 300];
/// let len = report.emit(&mut payload).unwrap();
/// assert_eq!(DiagnosticsRepr::parse(&payload[..len]), Some(report));
/// ```
#[derive(Debug)]
pub struct RecordWriter<'b> {
    buf: &'b mut [u8],
    len: usize,
}

impl<'b> RecordWriter<'b> {
    /// Writes into `buf`; at most [`MAX_RECORDS_LEN`] of it is used, so a part always fits one
    /// payload.
    pub fn new(buf: &'b mut [u8]) -> RecordWriter<'b> {
        RecordWriter { buf, len: 0 }
    }

    /// Appends one record; `false` (and nothing written) if it does not fit in this part or the
    /// key or value is out of bounds. Values longer than [`MAX_VALUE_LEN`] are the caller's to
    /// cut at a character boundary.
    pub fn push(&mut self, key: &str, value: &str) -> bool {
        if !(1..=MAX_KEY_LEN).contains(&key.len()) || value.len() > MAX_VALUE_LEN {
            return false;
        }
        let needed = 1 + key.len() + 2 + value.len();
        let end = self.len + needed;
        if end > MAX_RECORDS_LEN {
            return false;
        }
        let Some(dst) = self.buf.get_mut(self.len..end) else {
            return false;
        };
        let mut writer = Writer::new(dst);
        writer.u8(key.len() as u8);
        writer.put(key.as_bytes());
        writer.u16(value.len() as u16);
        writer.put(value.as_bytes());
        if writer.finish().is_none() {
            return false;
        }
        self.len = end;
        true
    }

    /// Whether nothing has been pushed.
    pub const fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The records written so far.
    pub fn records(&self) -> Records<'_> {
        Records { bytes: &self.buf[..self.len] }
    }

    /// Forgets the records, to fill the next part.
    pub fn clear(&mut self) {
        self.len = 0;
    }
}

/// Most record bytes one `Report` carries.
pub const MAX_RECORDS_LEN: usize = MAX_PAYLOAD_LEN - REPORT_OVERHEAD;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let mut records = [0u8; MAX_RECORDS_LEN];
        let mut writer = RecordWriter::new(&mut records);
        assert!(writer.push("os.name", "Debian GNU/Linux 12"));
        assert!(writer.push("os.uptime_s", "3600"));
        assert!(writer.push("empty", ""));
        let report = DiagnosticsRepr::Report {
            request: 7,
            section: Section::System,
            part: 2,
            last: true,
            records: writer.records(),
        };
        let query = DiagnosticsRepr::Query { request: 7, sections: Sections::EMPTY.with(Section::Memory) };
        let refused = DiagnosticsRepr::Refused { request: 7, reason: RefusalReason::Busy };
        for message in [report, query, refused] {
            let mut buf = [0u8; MAX_PAYLOAD_LEN];
            let len = message.emit(&mut buf).unwrap();
            assert_eq!(DiagnosticsRepr::parse(&buf[..len]), Some(message));
            for cut in 0..len {
                // Records are self-delimiting: a report cut at a record boundary is a shorter
                // report (frames are authenticated, so a relay cannot cut one).
                match DiagnosticsRepr::parse(&buf[..cut]) {
                    None => {}
                    Some(DiagnosticsRepr::Report { records, .. }) => {
                        assert!(cut >= REPORT_OVERHEAD && records.as_bytes().len() == cut - REPORT_OVERHEAD)
                    }
                    Some(other) => panic!("{message:?} cut at {cut} parsed as {other:?}"),
                }
            }
        }
        let DiagnosticsRepr::Report { records, .. } = report else { unreachable!() };
        let pairs: [(&str, &str); 3] = [("os.name", "Debian GNU/Linux 12"), ("os.uptime_s", "3600"), ("empty", "")];
        assert!(records.iter().eq(pairs));
    }

    #[test]
    fn a_part_never_outgrows_a_payload() {
        let mut records = [0u8; MAX_PAYLOAD_LEN * 2];
        let mut writer = RecordWriter::new(&mut records);
        let value = [b'v'; MAX_VALUE_LEN];
        let value = core::str::from_utf8(&value).unwrap();
        let mut pushed = 0;
        while writer.push("proc.entry", value) {
            pushed += 1;
        }
        assert_eq!(pushed, MAX_RECORDS_LEN / (1 + 10 + 2 + MAX_VALUE_LEN));
        let report = DiagnosticsRepr::Report {
            request: 1,
            section: Section::Processes,
            part: 0,
            last: false,
            records: writer.records(),
        };
        let mut buf = [0u8; MAX_PAYLOAD_LEN];
        assert!(report.emit(&mut buf).is_some());
        assert!(!writer.push("", "no key"));
        assert!(!writer.push(core::str::from_utf8(&[b'k'; MAX_KEY_LEN + 1]).unwrap(), ""));
    }

    #[test]
    fn hostile_payloads_are_refused() {
        assert_eq!(DiagnosticsRepr::parse(&[0x01, 0, 1, 0, 0]), None, "an empty query");
        assert_eq!(DiagnosticsRepr::parse(&[0x01, 0, 1, 0x80, 0]), None, "an unknown section bit");
        assert_eq!(DiagnosticsRepr::parse(&[0x02, 0, 1, 9, 0, 0, 1]), None, "an unknown section");
        assert_eq!(DiagnosticsRepr::parse(&[0x02, 0, 1, 0, 0, 0, 2]), None, "a bad last flag");
        assert_eq!(DiagnosticsRepr::parse(&[0x02, 0, 1, 0, 0, 0, 1, 0, 0, 0]), None, "an empty key");
        assert_eq!(DiagnosticsRepr::parse(&[0x02, 0, 1, 0, 0, 0, 1, 1, b'k', 0, 2, b'v']), None, "a short value");
        assert_eq!(DiagnosticsRepr::parse(&[0x02, 0, 1, 0, 0, 0, 1, 1, 0xFF, 0, 0]), None, "a key not UTF-8");
        assert_eq!(DiagnosticsRepr::parse(&[0x02, 0, 1, 0, 0, 0, 1, 1, b'k', 0x10, 1]), None, "a value over the limit");
        assert!(DiagnosticsRepr::parse(&[0x02, 0, 1, 0, 0, 0, 1]).is_some(), "an empty last part");
        assert_eq!(Sections::ALL.iter().count(), Section::ALL.len());
    }
}
