//! The messages between the native process and the page.
//!
//! [`ConsoleEvent`]s go from the native process to every open page (as Server-Sent Events, one JSON
//! object per `data:` line). [`ConsoleCommand`]s come back from the page (a JSON body per request,
//! or a file upload) and arrive on the channel [`WebConsole::start`](crate::WebConsole::start)
//! returns. The page only renders what it is told and asks for things; it decides nothing.
//!
//! Events are *state updates*: each one replaces what the page shows for its part (the session
//! panel, the member list, one transfer by id, one diagnostics report by id), except chat lines
//! and errors, which are appended. The console keeps the latest of each, so a page opened late,
//! or reloaded, is brought up to date first (see [`crate`] docs, "Replay").
//!
//! The JSON shapes are documented on each type and in `docs/web-console.md`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Something the page shows, published by the native process with
/// [`WebConsole::publish`](crate::WebConsole::publish).
///
/// JSON: an object with a `"type"` field naming the variant in `snake_case`, and the variant's
/// fields beside it, e.g. `{"type":"chat","from":"Customer","text":"hi","local":false,"at_ms":0}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConsoleEvent {
    /// The session panel: number, PIN, short authentication string. Replaces the previous one.
    Session(SessionInfo),
    /// Who is connected, with their consent state. Replaces the previous list.
    Members {
        /// Every member, the provider itself included (`you: true`).
        members: Vec<Member>,
    },
    /// The state of the connection to the relay. Replaces the previous one.
    Connection {
        /// The state.
        state: ConnectionState,
        /// A short human-readable detail ("relay.example:443", "retry in 4 s"), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
    },
    /// A chat line, from either side. Appended. The native side publishes the provider's own
    /// lines too (`local: true`) once it has sent them: the console does not echo commands.
    Chat(ChatLine),
    /// A file transfer's current state. Replaces the previous state of the transfer with the same
    /// id, or adds it.
    Transfer(Transfer),
    /// A diagnostics report received from the customer. Replaces the report with the same id, or
    /// adds it.
    Diagnostics(DiagnosticsReport),
    /// Something the provider should know ("Grace allowed remote control"). Appended to the
    /// page's messages.
    Notice {
        /// The message, as text.
        message: String,
        /// When, in milliseconds since the Unix epoch (0: when the page received it).
        #[serde(default)]
        at_ms: u64,
    },
    /// Something went wrong that the provider should see ("the customer declined the file").
    /// Appended to the page's messages, marked as an error.
    Error {
        /// The message, as text.
        message: String,
        /// When, in milliseconds since the Unix epoch (0: when the page received it).
        #[serde(default)]
        at_ms: u64,
    },
    /// The session is over; the page disables its controls.
    Ended {
        /// Why, as text ("the customer ended the session").
        reason: String,
    },
}

/// The session panel.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionInfo {
    /// The session number the customer types (the page groups its digits).
    pub session_number: u64,
    /// The PIN to read out to the customer, while it is still usable; `None` once it has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin: Option<String>,
    /// The short authentication string both sides compare by phone, once the keys exist.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_auth_string: Option<String>,
    /// The provider's own name and organisation as the broker verified them, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
}

/// One member of the session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The member id in the session (the leader is 0).
    pub id: u32,
    /// Display name, as the member announced it (text from a peer: the page never renders it as HTML).
    pub name: String,
    /// What the member is.
    pub role: Role,
    /// The organisation the broker verified, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
    /// True for the provider's own entry.
    #[serde(default)]
    pub you: bool,
    /// What this member (a customer) has granted, or has been asked for. Empty for providers.
    #[serde(default)]
    pub consent: Vec<Consent>,
}

/// A member's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Role {
    /// A support provider.
    Provider,
    /// The customer (or an appliance agent): the only judge of consent over its machine.
    Customer,
}

/// What a provider can ask the customer for. Mirrors `lifeline_core::consent::Capability`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Capability {
    /// See the customer's screen.
    ViewScreen,
    /// Send mouse and keyboard input.
    RemoteControl,
    /// Send and fetch files.
    FileTransfer,
    /// Collect diagnostic data.
    Diagnostics,
    /// Keep privileges for unattended support after this session.
    Unattended,
    /// Run the commands an appliance's maker registered.
    RemoteConsole,
}

/// The consent state of one capability for one member.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    /// The capability.
    pub capability: Capability,
    /// Its state.
    pub state: ConsentState,
}

/// Where a capability stands with the customer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConsentState {
    /// Never asked for.
    NotRequested,
    /// Asked for; the customer has not answered yet.
    Pending,
    /// The customer allowed it.
    Granted,
    /// The customer refused it.
    Denied,
    /// The customer allowed it, then took it back.
    Revoked,
}

/// The state of the session's connection to the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connecting for the first time.
    Connecting,
    /// Connected; traffic flows.
    Connected,
    /// Lost; trying again.
    Reconnecting,
    /// Not connected and not trying.
    Disconnected,
}

/// A chat line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatLine {
    /// The sender's display name.
    pub from: String,
    /// The sender's member id, if the line came from a member.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member: Option<u32>,
    /// The text (shown as text, never as HTML).
    pub text: String,
    /// True for the provider's own lines.
    #[serde(default)]
    pub local: bool,
    /// When, in milliseconds since the Unix epoch (0 when unknown).
    #[serde(default)]
    pub at_ms: u64,
}

/// Identifies a file transfer within the session; the native side assigns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransferId(pub u32);

/// A file transfer, either way.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    /// The transfer's id (the page sends it back in [`ConsoleCommand::AcceptFile`] and
    /// [`ConsoleCommand::DeclineFile`]).
    pub id: TransferId,
    /// Which way the file goes.
    pub direction: Direction,
    /// The file's name (no directories).
    pub name: String,
    /// The file's size in bytes, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Where the transfer stands.
    pub state: TransferState,
}

/// Which way a file goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the provider to the customer.
    ToCustomer,
    /// From the customer to the provider.
    FromCustomer,
}

/// Where a transfer stands. JSON: `{"kind":"in_progress","bytes":1024}` and so on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TransferState {
    /// The customer offers this file; the provider can accept or decline it.
    Offered,
    /// Waiting for the other side (its consent, or its acceptance).
    Waiting,
    /// Moving: `bytes` done so far.
    InProgress {
        /// Bytes transferred so far.
        bytes: u64,
    },
    /// Done and verified end to end.
    Completed {
        /// SHA-256 of the whole file, lowercase hex.
        sha256: String,
        /// Where the native side saved a received file, for the provider to find it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        saved_to: Option<String>,
    },
    /// Stopped with an error; any partial file was discarded.
    Failed {
        /// Why, as text.
        reason: String,
    },
    /// The receiving side declined the file.
    Declined,
}

impl TransferState {
    /// True once the transfer can no longer change (completed, failed or declined).
    pub fn is_finished(&self) -> bool {
        matches!(self, TransferState::Completed { .. } | TransferState::Failed { .. } | TransferState::Declined)
    }
}

/// A diagnostics report: sections, each a table of records, each record key → value pairs in
/// order. A section with one record (the OS) shows as a two-column table; a section with many
/// (processes) as a table with a column per key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticsReport {
    /// The report's id (a later report with the same id replaces it).
    pub id: u32,
    /// When it was collected, in milliseconds since the Unix epoch (0 when unknown).
    #[serde(default)]
    pub at_ms: u64,
    /// The sections, in the order the customer's side produced them.
    pub sections: Vec<DiagnosticsSection>,
}

/// One section of a diagnostics report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiagnosticsSection {
    /// The section's name ("os", "cpu", "processes").
    pub name: String,
    /// The records; JSON: `[[["pid","1"],["name","init"]], ...]`.
    pub records: Vec<Vec<(String, String)>>,
}

/// Something the provider asked for in the page. The native process acts on it (sending over the
/// session what the engine allows) and reports the outcome with [`ConsoleEvent`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConsoleCommand {
    /// Send a chat line (non-empty, at most [`ConsoleConfig::max_chat_bytes`](crate::ConsoleConfig)).
    SendChat {
        /// The text.
        text: String,
    },
    /// Ask the customer for a capability.
    RequestCapability {
        /// The capability.
        capability: Capability,
    },
    /// Send a file the provider uploaded from the browser. The file is complete (its size
    /// checked) and belongs to the native side from now on: send it, then delete it. It stays
    /// in the console's outbox until then, and the outbox is removed when the console shuts down
    /// (when the console made it).
    SendFile {
        /// The file's name as the provider chose it (validated: no directories, no `..`).
        name: String,
        /// Where the file is on disk (in the outbox, under a name the console chose).
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// Ask the customer for a file by name (validated like upload names).
    FetchFile {
        /// The name.
        name: String,
    },
    /// Accept a file the customer offered.
    AcceptFile {
        /// The transfer.
        transfer: TransferId,
    },
    /// Decline a file the customer offered.
    DeclineFile {
        /// The transfer.
        transfer: TransferId,
    },
    /// Ask the customer's side for diagnostics.
    QueryDiagnostics {
        /// The sections wanted; empty means all.
        sections: Vec<String>,
    },
    /// End the session for everyone.
    EndSession,
}

/// The JSON the page posts to `/api/command`. Kept apart from [`ConsoleCommand`] so that the page
/// can never name a path on disk ([`ConsoleCommand::SendFile`] only comes from an upload).
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum PageCommand {
    SendChat { text: String },
    RequestCapability { capability: Capability },
    FetchFile { name: String },
    AcceptFile { transfer: TransferId },
    DeclineFile { transfer: TransferId },
    QueryDiagnostics { sections: Vec<String> },
    EndSession,
}

/// The most sections one diagnostics query may name, and the longest name.
pub(crate) const MAX_QUERY_SECTIONS: usize = 32;
pub(crate) const MAX_SECTION_NAME: usize = 64;

impl PageCommand {
    /// Checks the command's values and turns it into a [`ConsoleCommand`]; the error is a message
    /// for the page.
    pub(crate) fn validate(self, max_chat_bytes: usize) -> Result<ConsoleCommand, String> {
        Ok(match self {
            PageCommand::SendChat { text } => {
                if text.trim().is_empty() {
                    return Err("the chat line is empty".into());
                }
                if text.len() > max_chat_bytes {
                    return Err(format!("the chat line is too long (at most {max_chat_bytes} bytes)"));
                }
                // Escape sequences and the like would reach the customer's terminal.
                if text.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                    return Err("the chat line holds control characters".into());
                }
                ConsoleCommand::SendChat { text }
            }
            PageCommand::RequestCapability { capability } => ConsoleCommand::RequestCapability { capability },
            PageCommand::FetchFile { name } => {
                check_file_name(&name)?;
                ConsoleCommand::FetchFile { name }
            }
            PageCommand::AcceptFile { transfer } => ConsoleCommand::AcceptFile { transfer },
            PageCommand::DeclineFile { transfer } => ConsoleCommand::DeclineFile { transfer },
            PageCommand::QueryDiagnostics { sections } => {
                if sections.len() > MAX_QUERY_SECTIONS {
                    return Err(format!("too many sections (at most {MAX_QUERY_SECTIONS})"));
                }
                let bad = |s: &String| {
                    s.is_empty()
                        || s.len() > MAX_SECTION_NAME
                        || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                };
                if sections.iter().any(bad) {
                    return Err(format!("a section name is 1 to {MAX_SECTION_NAME} letters, digits, '_' or '-'"));
                }
                ConsoleCommand::QueryDiagnostics { sections }
            }
            PageCommand::EndSession => ConsoleCommand::EndSession,
        })
    }
}

/// The longest file name accepted, in bytes (what common file systems allow).
pub const MAX_FILE_NAME_BYTES: usize = 255;

/// Checks a file name from the page: a plain name, no directories, nothing a file system would
/// read as a path or a device. The customer's side checks again; this only refuses early.
pub fn check_file_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_FILE_NAME_BYTES {
        return Err(format!("a file name is 1 to {MAX_FILE_NAME_BYTES} bytes"));
    }
    if name == "." || name == ".." {
        return Err("a file name cannot be '.' or '..'".into());
    }
    if name.chars().any(|c| c.is_control() || matches!(c, '/' | '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')) {
        return Err("a file name cannot hold directories, control characters or any of / \\ : * ? \" < > |".into());
    }
    if name.starts_with(' ') || name.ends_with(' ') || name.ends_with('.') {
        return Err("a file name cannot start or end with a space, or end with a dot".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn events_serialize_with_a_type_tag() {
        let event = ConsoleEvent::Chat(ChatLine {
            from: "Customer".into(),
            member: Some(1),
            text: "hi".into(),
            local: false,
            at_ms: 5,
        });
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"chat","from":"Customer","member":1,"text":"hi","local":false,"at_ms":5}"#
        );
        let event = ConsoleEvent::Transfer(Transfer {
            id: TransferId(7),
            direction: Direction::FromCustomer,
            name: "log.txt".into(),
            size: Some(10),
            state: TransferState::InProgress { bytes: 4 },
        });
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            r#"{"type":"transfer","id":7,"direction":"from_customer","name":"log.txt","size":10,"state":{"kind":"in_progress","bytes":4}}"#
        );
        let event = ConsoleEvent::Connection { state: ConnectionState::Connected, detail: None };
        assert_eq!(serde_json::to_string(&event).unwrap(), r#"{"type":"connection","state":"connected"}"#);
        let event = ConsoleEvent::Diagnostics(DiagnosticsReport {
            id: 1,
            at_ms: 0,
            sections: vec![DiagnosticsSection {
                name: "os".into(),
                records: vec![vec![("name".into(), "Debian".into())]],
            }],
        });
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(
            json,
            r#"{"type":"diagnostics","id":1,"at_ms":0,"sections":[{"name":"os","records":[[["name","Debian"]]]}]}"#
        );
        assert_eq!(serde_json::from_str::<ConsoleEvent>(&json).unwrap(), event);
    }

    #[test]
    fn page_commands_parse_strictly() {
        let parse = |s: &str| serde_json::from_str::<PageCommand>(s).map(|c| c.validate(100));
        assert_eq!(
            parse(r#"{"type":"send_chat","text":"hello"}"#).unwrap(),
            Ok(ConsoleCommand::SendChat { text: "hello".into() })
        );
        assert_eq!(
            parse(r#"{"type":"request_capability","capability":"view_screen"}"#).unwrap(),
            Ok(ConsoleCommand::RequestCapability { capability: Capability::ViewScreen })
        );
        assert_eq!(parse(r#"{"type":"end_session"}"#).unwrap(), Ok(ConsoleCommand::EndSession));
        assert_eq!(
            parse(r#"{"type":"accept_file","transfer":3}"#).unwrap(),
            Ok(ConsoleCommand::AcceptFile { transfer: TransferId(3) })
        );
        // Unknown types and fields, and a path smuggled into a command, are refused.
        assert!(parse(r#"{"type":"send_file","name":"a","path":"/etc/passwd","size":1}"#).is_err());
        assert!(parse(r#"{"type":"send_chat","text":"x","extra":1}"#).is_err());
        assert!(parse(r#"{"type":"request_capability","capability":"root"}"#).is_err());
        // Values are checked.
        assert!(parse(r#"{"type":"send_chat","text":"  "}"#).unwrap().is_err());
        assert!(parse(r#"{"type":"send_chat","text":"\u001b[2J"}"#).unwrap().is_err());
        assert!(parse(r#"{"type":"send_chat","text":"two\nlines"}"#).unwrap().is_ok());
        assert!(parse(&format!(r#"{{"type":"send_chat","text":"{}"}}"#, "x".repeat(101))).unwrap().is_err());
        assert!(parse(r#"{"type":"fetch_file","name":"../etc/passwd"}"#).unwrap().is_err());
        assert!(parse(r#"{"type":"query_diagnostics","sections":["os","<b>"]}"#).unwrap().is_err());
        assert_eq!(
            parse(r#"{"type":"query_diagnostics","sections":[]}"#).unwrap(),
            Ok(ConsoleCommand::QueryDiagnostics { sections: vec![] })
        );
    }

    #[test]
    fn file_names_are_plain_names() {
        for good in ["report.pdf", "Änderungen 2026.txt", "a", ".bashrc", "x..y"] {
            assert_eq!(check_file_name(good), Ok(()), "{good}");
        }
        let long = "a".repeat(256);
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", "C:x", "a\0b", "a\nb", " a", "a.", long.as_str()] {
            assert!(check_file_name(bad).is_err(), "{bad:?}");
        }
    }
}
