//! File transfer and diagnostics over the session, for both commands: the glue between
//! [`lifeline_apps`] (which speaks the protocol and does the file I/O) and the session handle.
//!
//! Payloads go out as `File` / `Diagnostics` data through [`SessionHandle::send`] (file chunks
//! in batches through [`SessionHandle::send_batch`]: one driver command and one TLS flush for up
//! to `FILE_BATCH` chunks). When the
//! driver's queue is full (`SendError::QueueFull`) the payload is held and sent again on the next
//! pump (a timer tick, or any event): nothing is dropped, and `Transfers` never gets ahead of
//! what was sent. Whatever the customer has not granted, the customer's engine refuses to send
//! or deliver (`SendError::NotGranted`): such payloads are dropped here.
//!
//! Slow work (hashing a file before it is offered, collecting diagnostics) runs on a blocking
//! thread and comes back as a [`Prepared`]; reading or writing one chunk happens inline.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Instant;

use lifeline_apps::diagnostics::{Assembled, Assembler, Report, collect, encode_reply};
use lifeline_apps::transfer::{
    Direction, PreparedFile, TransferConfig, TransferError, TransferEvent, Transfers, shared_file,
};
use lifeline_core::app::diagnostics::{DiagnosticsRepr, Section, Sections};
use lifeline_core::app::file::CancelReason;
use lifeline_core::session::SendError;
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::{Destination, MAX_PAYLOAD_LEN, MemberId};
use lifeline_transport_tokio::SessionHandle;
use lifeline_web_console as web;
use tokio::sync::mpsc;

use crate::text::{count, sanitize};

/// Slow work finished on a blocking thread.
pub(crate) enum Prepared {
    /// A file to offer, hashed.
    Offer { peer: MemberId, path: PathBuf, result: Result<PreparedFile, TransferError> },
    /// A file a peer fetched from the shared folder, hashed.
    Serve { peer: MemberId, id: u32, name: String, result: Result<PreparedFile, TransferError> },
    /// Diagnostics collected for a query.
    Diagnostics { peer: MemberId, request: u16, report: Report },
}

/// A transfer that moves nothing for this long is reported once (it goes on waiting).
const STALL_NOTICE: std::time::Duration = std::time::Duration::from_secs(5);
/// Most file chunks (of at most 16 KiB) handed to the driver in one command.
const FILE_BATCH: usize = 16;

/// What a transfer is, for progress lines and the web console.
struct Known {
    name: String,
    size: u64,
    direction: Direction,
    web_id: u32,
    /// Last progress step printed (tenths).
    printed_step: u64,
    /// When bytes last moved (from the first progress on), and whether a stall was reported.
    last_progress: Option<Instant>,
    stall_reported: bool,
    last_web: Option<Instant>,
}

/// A diagnostics query the provider is waiting for.
struct Query {
    assembler: Assembler,
    web_id: u32,
}

/// Lines for the terminal and events for the web console, from the apps.
pub(crate) trait Show {
    /// A line for the local user.
    fn line(&self, text: &str);
    /// The name of a member, for lines.
    fn name_of(&self, member: MemberId) -> String;
    /// The web console, on the provider.
    fn web(&self) -> Option<&web::Publisher>;
}

pub(crate) struct Apps {
    local: MemberId,
    provider: bool,
    transfers: Transfers,
    share: Option<PathBuf>,
    known: BTreeMap<(MemberId, u32), Known>,
    next_web_id: u32,
    /// `File` payloads taken from `transfers` and not yet accepted by the driver, in order.
    held: VecDeque<(MemberId, Vec<u8>)>,
    /// Diagnostics payloads waiting to go (customer: report parts; provider: queries).
    outbox: VecDeque<(MemberId, Vec<u8>)>,
    buf: Vec<u8>,
    /// Application bytes handed to the session (file and diagnostics payloads).
    sent_bytes: u64,
    prepared: mpsc::UnboundedSender<Prepared>,
    // Provider: queries in flight.
    next_request: u16,
    queries: BTreeMap<u16, Query>,
    next_report: u32,
    /// Customer: what was last sent, to show again on `/sent`.
    last_sent: Option<Report>,
}

impl Apps {
    pub(crate) fn new(
        provider: bool,
        downloads: PathBuf,
        share: Option<PathBuf>,
    ) -> (Apps, mpsc::UnboundedReceiver<Prepared>) {
        let (prepared, receiver) = mpsc::unbounded_channel();
        let local = if provider { MemberId::LEADER } else { MemberId(1) };
        let apps = Apps {
            local,
            provider,
            transfers: Transfers::new(local, TransferConfig::new(downloads)),
            share,
            known: BTreeMap::new(),
            next_web_id: 1,
            held: VecDeque::new(),
            outbox: VecDeque::new(),
            buf: vec![0; MAX_PAYLOAD_LEN],
            sent_bytes: 0,
            prepared,
            next_request: 1,
            queries: BTreeMap::new(),
            next_report: 1,
            last_sent: None,
        };
        (apps, receiver)
    }

    /// The member id the relay gave this endpoint.
    pub(crate) fn set_local(&mut self, member: MemberId) {
        self.local = member;
        self.transfers.set_local(member);
    }

    /// Application bytes handed to the session so far.
    pub(crate) fn sent_bytes(&self) -> u64 {
        self.sent_bytes
    }

    pub(crate) fn local(&self) -> MemberId {
        self.local
    }

    // ---- local requests --------------------------------------------------------------------

    /// Hashes `path` on a blocking thread, then offers it to `peer`.
    pub(crate) fn send_file(&self, show: &dyn Show, peer: MemberId, path: PathBuf) {
        show.line(&format!("Preparing {} (reading it once for its SHA-256)…", path.display()));
        let prepared = self.prepared.clone();
        tokio::task::spawn_blocking(move || {
            let result = PreparedFile::open(&path);
            let _ = prepared.send(Prepared::Offer { peer, path, result });
        });
    }

    pub(crate) fn fetch(&mut self, show: &dyn Show, peer: MemberId, name: &str) {
        match self.transfers.fetch(Instant::now(), peer, name) {
            Ok(id) => {
                let web_id = self.remember(peer, id, name, 0, Direction::Receiving);
                show.line(&format!("Asked {} for {name} (transfer {web_id}).", show.name_of(peer)));
                self.publish(show, (peer, id), web::TransferState::Waiting);
            }
            Err(error) => show.line(&format!("Cannot fetch {name:?}: {error}.")),
        }
    }

    /// Answers an offer (`number` is the transfer number shown to the user).
    pub(crate) fn answer(&mut self, show: &dyn Show, number: u32, accept: bool) {
        let Some((key, _)) = self.known.iter().find(|(_, known)| known.web_id == number) else {
            show.line(&format!("No transfer {number}."));
            return;
        };
        let (peer, id) = *key;
        let result =
            if accept { self.transfers.accept(Instant::now(), peer, id) } else { self.transfers.decline(peer, id) };
        match result {
            Ok(()) if accept => {
                show.line(&format!("Receiving transfer {number}…"));
                self.publish(show, (peer, id), web::TransferState::InProgress { bytes: 0 });
            }
            Ok(()) => {}
            Err(error) => show.line(&format!("Transfer {number}: {error}.")),
        }
    }

    /// Offers waiting for an answer (number, name).
    pub(crate) fn open_offers(&self) -> Vec<u32> {
        self.known.values().filter(|known| known.printed_step == u64::MAX).map(|known| known.web_id).collect()
    }

    /// Provider: asks `peer` for diagnostics `sections` (names; empty: all).
    pub(crate) fn query(&mut self, show: &dyn Show, peer: MemberId, names: &[String]) {
        let mut sections = Sections::EMPTY;
        for name in names {
            match Section::ALL.iter().find(|section| section.name().eq_ignore_ascii_case(name)) {
                Some(section) => sections = sections.with(*section),
                None => {
                    let all: Vec<&str> = Section::ALL.iter().map(|s| s.name()).collect();
                    show.line(&format!("No diagnostics section {name:?}: one of {}.", all.join(", ")));
                    return;
                }
            }
        }
        if sections == Sections::EMPTY {
            sections = Sections::ALL;
        }
        let request = self.next_request;
        self.next_request = self.next_request.wrapping_add(1).max(1);
        let assembler = Assembler::new(request, sections);
        self.outbox.push_back((peer, assembler.query()));
        let web_id = self.next_report;
        self.next_report += 1;
        self.queries.insert(request, Query { assembler, web_id });
        show.line(&format!("Asked {} for diagnostics (report {web_id}).", show.name_of(peer)));
    }

    /// Customer: the diagnostics last sent, in full.
    pub(crate) fn show_sent(&self, show: &dyn Show) {
        match &self.last_sent {
            Some(report) => {
                for line in report.to_text().lines() {
                    show.line(&format!("  {line}"));
                }
            }
            None => show.line("No diagnostics have been sent."),
        }
    }

    /// Every transfer stops (the customer took back file transfer, on either side).
    pub(crate) fn revoke_files(&mut self) {
        self.transfers.cancel_all(CancelReason::Revoked);
        self.held.clear();
        // The cancels are not sent: both sides know the grant is gone (the customer's engine
        // would refuse to send them, and to take them in).
        while self.transfers.poll_message(&mut self.buf).is_some() {}
    }

    /// Diagnostics taken back: nothing more of a report goes out.
    pub(crate) fn revoke_diagnostics(&mut self) {
        self.outbox.clear();
    }

    pub(crate) fn peer_gone(&mut self, peer: MemberId) {
        self.transfers.peer_gone(peer);
        self.held.retain(|(to, _)| *to != peer);
        self.outbox.retain(|(to, _)| *to != peer);
    }

    /// The session is over: every transfer stops and part files are removed (nothing partial is
    /// left to look complete).
    pub(crate) fn finish(&mut self, show: &dyn Show) {
        self.transfers.cancel_all(CancelReason::Aborted);
        self.show_events(show);
    }

    pub(crate) fn reconnected(&mut self) {
        self.transfers.handle_reconnected(Instant::now());
    }

    // ---- input from the session ------------------------------------------------------------

    /// A `File` or `Diagnostics` payload from `from`. `granted_diagnostics`: the customer's own
    /// grant (its engine checks it too).
    pub(crate) fn on_data(
        &mut self,
        show: &dyn Show,
        from: MemberId,
        content: ContentType,
        payload: &[u8],
        granted_diagnostics: bool,
    ) {
        match content {
            ContentType::File if !self.transfers.handle_message(Instant::now(), from, payload) => {
                tracing::debug!("malformed file message dropped");
            }
            ContentType::File => {}
            ContentType::Diagnostics if self.provider => self.on_report(show, payload),
            ContentType::Diagnostics => {
                let Some(DiagnosticsRepr::Query { request, sections }) = DiagnosticsRepr::parse(payload) else {
                    return;
                };
                if !granted_diagnostics {
                    return;
                }
                let names: Vec<&str> = sections.iter().map(Section::name).collect();
                show.line(&format!("{} asks for diagnostics ({}): collecting…", show.name_of(from), names.join(", ")));
                let prepared = self.prepared.clone();
                tokio::task::spawn_blocking(move || {
                    let report = collect(sections);
                    let _ = prepared.send(Prepared::Diagnostics { peer: from, request, report });
                });
            }
            _ => {}
        }
    }

    fn on_report(&mut self, show: &dyn Show, payload: &[u8]) {
        let request = match DiagnosticsRepr::parse(payload) {
            Some(DiagnosticsRepr::Report { request, .. } | DiagnosticsRepr::Refused { request, .. }) => request,
            _ => return,
        };
        let Some(query) = self.queries.get_mut(&request) else { return };
        match query.assembler.handle(payload) {
            Assembled::Complete => {
                if let Some(query) = self.queries.remove(&request) {
                    let report = query.assembler.report();
                    let records: usize = report.sections.values().map(Vec::len).sum();
                    show.line(&format!("Diagnostics report {} arrived: {}.", query.web_id, count(records, "record")));
                    for (section, entries) in &report.sections {
                        let preview: Vec<String> =
                            entries.iter().take(3).map(|(k, v)| format!("{k}={}", sanitize(v))).collect();
                        let records = count(entries.len(), "record");
                        show.line(&format!("  [{}] {records}: {}", section.name(), preview.join("; ")));
                    }
                    if let Some(web) = show.web() {
                        web.publish(web::ConsoleEvent::Diagnostics(web_report(query.web_id, report)));
                    }
                }
            }
            Assembled::Refused => {
                self.queries.remove(&request);
                show.line("The customer's app refused the diagnostics query.");
            }
            Assembled::Partial | Assembled::Ignored => {}
        }
    }

    /// Slow work came back.
    pub(crate) fn on_prepared(&mut self, show: &dyn Show, prepared: Prepared, granted_diagnostics: bool) {
        let now = Instant::now();
        match prepared {
            Prepared::Offer { peer, path, result } => match result {
                Ok(file) => {
                    let size = file.size();
                    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                    match self.transfers.offer(now, peer, file) {
                        Ok(id) => {
                            let web_id = self.remember(peer, id, &name, size, Direction::Sending);
                            show.line(&format!(
                                "Offered {name} ({}) to {} (transfer {web_id}); waiting for an answer.",
                                bytes_text(size),
                                show.name_of(peer)
                            ));
                            self.publish(show, (peer, id), web::TransferState::Waiting);
                        }
                        Err(error) => show.line(&format!("Cannot offer {name}: {error}.")),
                    }
                }
                Err(TransferError::BadName) => {
                    show.line(&format!("Cannot send {}: not a regular file with a plain name.", path.display()))
                }
                Err(error) => show.line(&format!("Cannot send {}: {error}.", path.display())),
            },
            Prepared::Serve { peer, id, name, result } => match result {
                Ok(file) => {
                    let size = file.size();
                    if self.transfers.serve_fetch(now, peer, id, file).is_ok() {
                        let web_id = self.remember(peer, id, &name, size, Direction::Sending);
                        show.line(&format!(
                            "Sending {name} ({}) from your shared folder to {} (transfer {web_id}).",
                            bytes_text(size),
                            show.name_of(peer)
                        ));
                    }
                }
                Err(_) => {
                    let _ = self.transfers.refuse_fetch(peer, id, CancelReason::NotFound);
                }
            },
            Prepared::Diagnostics { peer, request, report } => {
                if !granted_diagnostics {
                    show.line("Diagnostics were collected but not sent: you took the permission back.");
                    return;
                }
                let records: usize = report.sections.values().map(Vec::len).sum();
                for payload in encode_reply(request, &report) {
                    self.outbox.push_back((peer, payload));
                }
                show.line(&format!(
                    "Sending diagnostics to {}: {} in {}. /sent shows exactly what.",
                    show.name_of(peer),
                    count(records, "record"),
                    count(report.sections.len(), "section")
                ));
                for (section, entries) in &report.sections {
                    show.line(&format!("  [{}] {}", section.name(), count(entries.len(), "record")));
                }
                self.last_sent = Some(report);
            }
        }
    }

    // ---- output ----------------------------------------------------------------------------

    /// Sends what can be sent, handles timers, shows events. Call often (on every event and on
    /// a short tick while anything is in progress).
    /// Whether anything here moves with time alone (a transfer in progress or waiting, data the
    /// driver has not taken yet): then the session loop pumps often.
    pub(crate) fn is_busy(&self) -> bool {
        !self.transfers.is_idle() || !self.held.is_empty() || !self.outbox.is_empty()
    }

    pub(crate) async fn pump(&mut self, show: &dyn Show, handle: &SessionHandle) {
        let now = Instant::now();
        if self.transfers.poll_timeout().is_some_and(|at| at <= now) {
            self.transfers.handle_timeout(now);
        }
        self.show_events(show);
        for known in self.known.values_mut() {
            let stalled = known.last_progress.is_some_and(|at| now.duration_since(at) >= STALL_NOTICE);
            if stalled && !known.stall_reported {
                known.stall_reported = true;
                show.line(&format!(
                    "{}: nothing moved for {} s; waiting (the other side may be reconnecting, or gone).",
                    sanitize(&known.name),
                    STALL_NOTICE.as_secs()
                ));
            }
        }
        while let Some((peer, payload)) = self.outbox.pop_front() {
            match handle.send(Destination::Member(peer), ContentType::Diagnostics, payload.clone()).await {
                Ok(()) => self.sent_bytes += payload.len() as u64,
                Err(SendError::QueueFull | SendError::TransmitPending | SendError::KeysExhausted) => {
                    self.outbox.push_front((peer, payload));
                    return;
                }
                Err(SendError::NotGranted) => {
                    show.line("Diagnostics not sent: not allowed.");
                    self.outbox.retain(|(to, _)| *to != peer);
                }
                Err(error) => {
                    tracing::debug!(%error, "diagnostics payload dropped");
                }
            }
        }
        // File data goes in batches: one driver command (and one TLS flush) for up to FILE_BATCH
        // payloads to one peer, each still sealed on its own by the engine's `Session::send`.
        loop {
            while self.held.len() < FILE_BATCH {
                match self.transfers.poll_message(&mut self.buf) {
                    Some((peer, len)) => self.held.push_back((peer, self.buf[..len].to_vec())),
                    None => break,
                }
            }
            let Some(&(peer, _)) = self.held.front() else { break };
            let run = self.held.iter().take_while(|(to, _)| *to == peer).count();
            let payloads: Vec<Vec<u8>> = self.held.drain(..run).map(|(_, payload)| payload).collect();
            let bytes: usize = payloads.iter().map(Vec::len).sum();
            let result = handle.send_batch(Destination::Member(peer), ContentType::File, payloads).await;
            let unsent: usize = result.unsent.iter().map(Vec::len).sum();
            self.sent_bytes += (bytes - unsent) as u64;
            match result.error {
                None => {}
                Some(SendError::QueueFull | SendError::TransmitPending | SendError::KeysExhausted) => {
                    for payload in result.unsent.into_iter().rev() {
                        self.held.push_front((peer, payload));
                    }
                    break;
                }
                Some(SendError::NotGranted) => {
                    // The customer has not granted (or took back) file transfer: its engine
                    // sends nothing of it.
                    show.line("Not sent: file transfer is not allowed (the provider asks, and you allow it).");
                    self.transfers.cancel_all(CancelReason::Revoked);
                    self.held.clear();
                    while self.transfers.poll_message(&mut self.buf).is_some() {}
                }
                Some(error) => {
                    tracing::debug!(%error, "file payloads dropped");
                    break;
                }
            }
        }
        self.show_events(show);
    }

    fn show_events(&mut self, show: &dyn Show) {
        while let Some(event) = self.transfers.poll_event() {
            self.show_event(show, event);
        }
    }

    fn show_event(&mut self, show: &dyn Show, event: TransferEvent) {
        match event {
            TransferEvent::Offered { peer, id, name, size } => {
                let web_id = self.remember(peer, id, &name, size, Direction::Receiving);
                if let Some(known) = self.known.get_mut(&(peer, id)) {
                    known.printed_step = u64::MAX;
                }
                show.line(&format!(
                    "{} offers you the file {} ({}): /accept {web_id} or /decline {web_id}",
                    show.name_of(peer),
                    sanitize(&name),
                    bytes_text(size)
                ));
                self.publish(show, (peer, id), web::TransferState::Offered);
            }
            TransferEvent::FetchRequested { peer, id, name } => {
                let Some(share) = self.share.clone() else {
                    show.line(&format!(
                        "{} asked for the file {} but you share no folder (--share): refused.",
                        show.name_of(peer),
                        sanitize(&name)
                    ));
                    let _ = self.transfers.refuse_fetch(peer, id, CancelReason::NotFound);
                    return;
                };
                match shared_file(&share, &name) {
                    Ok(path) => {
                        let prepared = self.prepared.clone();
                        tokio::task::spawn_blocking(move || {
                            let result = PreparedFile::open(&path);
                            let _ = prepared.send(Prepared::Serve { peer, id, name, result });
                        });
                    }
                    Err(reason) => {
                        show.line(&format!(
                            "{} asked for {:?}, which is not a file in your shared folder: refused.",
                            show.name_of(peer),
                            sanitize(&name)
                        ));
                        let _ = self.transfers.refuse_fetch(peer, id, reason);
                    }
                }
            }
            TransferEvent::Progress { peer, id, done, size, .. } => {
                let Some(known) = self.known.get_mut(&(peer, id)) else { return };
                known.size = size;
                known.last_progress = Some(Instant::now());
                known.stall_reported = false;
                let step = (done * 10).checked_div(size).unwrap_or(10);
                let print = known.printed_step == u64::MAX || step > known.printed_step;
                if print {
                    known.printed_step = step;
                    let verb = if known.direction == Direction::Sending { "Sending" } else { "Receiving" };
                    show.line(&format!(
                        "{verb} {}: {} % ({} of {})",
                        known.name,
                        step * 10,
                        bytes_text(done),
                        bytes_text(size)
                    ));
                }
                let now = Instant::now();
                let due = known.last_web.is_none_or(|at| now.duration_since(at).as_millis() >= 100);
                if due {
                    known.last_web = Some(now);
                    self.publish(show, (peer, id), web::TransferState::InProgress { bytes: done });
                }
            }
            TransferEvent::Completed { peer, id, direction, saved_as, size, sha256 } => {
                let name = self.known.get(&(peer, id)).map(|k| k.name.clone()).unwrap_or_default();
                // The hash the receiver checked, and the size, for the web console (a fetched
                // file's size is not known when it is asked for).
                let sha256: String = sha256.iter().map(|b| format!("{b:02x}")).collect();
                if let Some(known) = self.known.get_mut(&(peer, id)) {
                    known.size = size;
                }
                let line = match (&saved_as, direction) {
                    (Some(path), _) => format!(
                        "Received {} ({}) from {}: SHA-256 checked, saved as {}.",
                        sanitize(&name),
                        bytes_text(size),
                        show.name_of(peer),
                        path.display()
                    ),
                    (None, _) => format!(
                        "Sent {name} ({}) to {}: the receiver checked its SHA-256.",
                        bytes_text(size),
                        show.name_of(peer)
                    ),
                };
                show.line(&line);
                let state =
                    web::TransferState::Completed { sha256, saved_to: saved_as.map(|p| p.display().to_string()) };
                self.publish(show, (peer, id), state);
                self.forget((peer, id));
            }
            TransferEvent::Failed { peer, id, direction, reason, by_us } => {
                let name = self.known.get(&(peer, id)).map(|k| sanitize(&k.name)).unwrap_or_default();
                let why = reason_text(reason);
                let who = if by_us { "here".to_owned() } else { format!("by {}", show.name_of(peer)) };
                let verb = if direction == Direction::Sending { "Sending" } else { "Receiving" };
                let tail = if direction == Direction::Receiving { " Nothing partial was kept." } else { "" };
                show.line(&format!("{verb} {name} stopped ({who}): {why}.{tail}"));
                let state = if reason == CancelReason::Declined {
                    web::TransferState::Declined
                } else {
                    web::TransferState::Failed { reason: why.to_owned() }
                };
                self.publish(show, (peer, id), state);
                self.forget((peer, id));
            }
            _ => {}
        }
    }

    fn remember(&mut self, peer: MemberId, id: u32, name: &str, size: u64, direction: Direction) -> u32 {
        let web_id = self.next_web_id;
        self.next_web_id += 1;
        self.known.insert(
            (peer, id),
            Known {
                name: name.to_owned(),
                size,
                direction,
                web_id,
                printed_step: 0,
                last_progress: None,
                stall_reported: false,
                last_web: None,
            },
        );
        web_id
    }

    fn forget(&mut self, key: (MemberId, u32)) {
        self.known.remove(&key);
    }

    fn publish(&self, show: &dyn Show, key: (MemberId, u32), state: web::TransferState) {
        let (Some(web), Some(known)) = (show.web(), self.known.get(&key)) else { return };
        let direction = match known.direction {
            Direction::Sending => web::Direction::ToCustomer,
            Direction::Receiving => web::Direction::FromCustomer,
        };
        web.publish(web::ConsoleEvent::Transfer(web::Transfer {
            id: web::TransferId(known.web_id),
            direction,
            name: known.name.clone(),
            size: (known.size > 0).then_some(known.size),
            state,
        }));
    }
}

/// Renames an upload from the web console's outbox so that the offered name is the provider's
/// chosen one: `OUTBOX/send-N/NAME`. The web console checked the name (a plain name).
pub(crate) fn staged_upload(path: &Path, name: &str, number: u32) -> std::io::Result<PathBuf> {
    let parent = path.parent().unwrap_or(Path::new("."));
    let dir = parent.join(format!("send-{number}"));
    std::fs::create_dir(&dir)?;
    let target = dir.join(name);
    std::fs::rename(path, &target)?;
    Ok(target)
}

fn web_report(id: u32, report: &Report) -> web::DiagnosticsReport {
    let at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let sections = report
        .sections
        .iter()
        .map(|(section, entries)| web::DiagnosticsSection {
            name: section.name().to_owned(),
            // One row per record: a "key" and a "value" column.
            records: entries
                .iter()
                .map(|(k, v)| vec![("key".to_owned(), k.clone()), ("value".to_owned(), v.clone())])
                .collect(),
        })
        .collect();
    web::DiagnosticsReport { id, at_ms, sections }
}

pub(crate) fn reason_text(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::Declined => "declined",
        CancelReason::NotFound => "no such file",
        CancelReason::Integrity => "the SHA-256 did not match (the data was corrupted)",
        CancelReason::Storage => "cannot read or write the file (is the disk full?)",
        CancelReason::Exists => "the file exists",
        CancelReason::Revoked => "file transfer was taken back",
        CancelReason::Aborted => "cancelled, or the other side left",
        CancelReason::TooLarge => "the file is too large for the receiver",
        CancelReason::Protocol => "a protocol error (a bad file name?)",
        _ => "an unknown reason",
    }
}

/// "12.3 MB", "512 B".
pub(crate) fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["kB", "MB", "GB", "TB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    #[test]
    fn sizes_read_well() {
        assert_eq!(bytes_text(0), "0 B");
        assert_eq!(bytes_text(999), "999 B");
        assert_eq!(bytes_text(50_000), "50.0 kB");
        assert_eq!(bytes_text(1 << 30), "1.1 GB");
    }

    #[test]
    fn an_upload_is_offered_under_the_name_the_provider_chose() {
        let outbox = std::env::temp_dir().join(format!("lifeline-desktop-staged-{}", std::process::id()));
        std::fs::create_dir_all(&outbox).unwrap();
        let upload = outbox.join("upload-1");
        std::fs::write(&upload, b"hello").unwrap();
        let staged = staged_upload(&upload, "notes for Grace.txt", 1).unwrap();
        assert_eq!(staged, outbox.join("send-1").join("notes for Grace.txt"));
        assert_eq!(std::fs::read(&staged).unwrap(), b"hello");
        assert!(!upload.exists());
        let prepared = PreparedFile::open(&staged).unwrap();
        assert_eq!(prepared.size(), 5);
        std::fs::remove_dir_all(&outbox).unwrap();
    }

    #[test]
    fn every_cancel_reason_has_words() {
        for reason in [
            CancelReason::Declined,
            CancelReason::NotFound,
            CancelReason::Integrity,
            CancelReason::Storage,
            CancelReason::Exists,
            CancelReason::Revoked,
            CancelReason::Aborted,
            CancelReason::TooLarge,
            CancelReason::Protocol,
        ] {
            assert_ne!(reason_text(reason), "an unknown reason", "{reason:?}");
        }
    }
}
