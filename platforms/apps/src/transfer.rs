//! File transfer over a session, both ways (protocol: `docs/PROTOCOL.md` §10.4, messages in
//! [`lifeline_core::app::file`]).
//!
//! One [`Transfers`] per endpoint holds every transfer with every peer. The caller:
//! - passes each `File` payload received from a peer to [`Transfers::handle_message`];
//! - sends what [`Transfers::poll_message`] returns (as `ContentType::File` data to that peer)
//!   until it returns `None`, and again whenever the session can take more;
//! - shows [`Transfers::poll_event`]s (offers to answer, progress, results);
//! - calls [`Transfers::handle_timeout`] at [`Transfers::poll_timeout`], and
//!   [`Transfers::handle_reconnected`] after the transport resumed the session.
//!
//! Memory stays bounded whatever the file size: a sender reads one chunk when the receiver's
//! window allows it; a receiver writes each chunk to disk as it arrives, hashing as it goes.
//! A receiver never writes outside its download folder (names are plain names, checked by the
//! parser), writes into a hidden part file, and moves it to a free name only after the SHA-256
//! matched: an existing file is never overwritten (`name.ext` becomes `name (1).ext`).
//! The part file is synced to disk before that move; so that this last sync does not have to
//! write the whole file at once (for 1 GiB, seconds on a plain disk), a background thread asks
//! the kernel to write out what has arrived every [`SYNC_EVERY`] bytes, while the rest arrives.
//!
//! Lost frames (the relay drops data for a slow member; a reconnect loses what was in flight)
//! are recovered: a chunk out of order is discarded and the receiver asks again from what it has
//! (`Accept` with its offset), at once and whenever it hears nothing for `stall_after`.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lifeline_core::app::file::{self as wire, CancelReason, FileRepr, MAX_CHUNK_LEN, Side};
use lifeline_core::wire::{MAX_PAYLOAD_LEN, MemberId};
use sha2::{Digest, Sha256};

/// Settings of one endpoint's transfers.
#[derive(Clone, Debug)]
pub struct TransferConfig {
    /// Where received files go.
    pub download_dir: PathBuf,
    /// The largest file this endpoint accepts.
    pub max_size: u64,
    /// Bytes a sender may have in flight beyond this endpoint's last acknowledgement.
    pub window: u32,
    /// A receiver that hears nothing for this long asks again from what it has; a sender that
    /// sent everything and heard nothing re-offers (which the receiver answers).
    pub stall_after: Duration,
}

impl TransferConfig {
    /// Defaults for `download_dir`: 64 GiB at most, a 512 KiB window, 3 s stall timer.
    pub fn new(download_dir: impl Into<PathBuf>) -> TransferConfig {
        TransferConfig {
            download_dir: download_dir.into(),
            max_size: 64 << 30,
            window: 512 * 1024,
            stall_after: Duration::from_secs(3),
        }
    }
}

/// Which way a transfer goes, seen from this endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// This endpoint has the file.
    Sending,
    /// This endpoint stores it.
    Receiving,
}

/// What happened, for the user interface.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransferEvent {
    /// A peer offers a file: answer with [`Transfers::accept`] or [`Transfers::decline`].
    Offered {
        /// From whom.
        peer: MemberId,
        /// Transfer id.
        id: u32,
        /// Plain file name.
        name: String,
        /// Bytes.
        size: u64,
    },
    /// A peer asks for a file: answer with [`Transfers::serve_fetch`] or
    /// [`Transfers::refuse_fetch`].
    FetchRequested {
        /// Who asks.
        peer: MemberId,
        /// Transfer id.
        id: u32,
        /// Plain file name.
        name: String,
    },
    /// Bytes moved (sender: acknowledged by the receiver; receiver: stored).
    Progress {
        /// The peer.
        peer: MemberId,
        /// Transfer id.
        id: u32,
        /// Which way.
        direction: Direction,
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        size: u64,
    },
    /// The whole file arrived and its SHA-256 matched.
    Completed {
        /// The peer.
        peer: MemberId,
        /// Transfer id.
        id: u32,
        /// Which way.
        direction: Direction,
        /// The receiver's copy (receiving side only).
        saved_as: Option<PathBuf>,
        /// Bytes.
        size: u64,
        /// SHA-256 of the whole file (the receiver checked it).
        sha256: [u8; 32],
    },
    /// The transfer ended unfinished.
    Failed {
        /// The peer.
        peer: MemberId,
        /// Transfer id.
        id: u32,
        /// Which way.
        direction: Direction,
        /// Why.
        reason: CancelReason,
        /// Whether this endpoint ended it (or the peer did).
        by_us: bool,
    },
}

/// Why a local request could not be carried out.
#[derive(Debug)]
#[non_exhaustive]
pub enum TransferError {
    /// Reading or creating a file failed.
    Io(io::Error),
    /// Not a plain file name, or not a regular file.
    BadName,
    /// No such transfer waiting for that answer.
    UnknownTransfer,
    /// All ids are in use.
    TooMany,
}

impl std::fmt::Display for TransferError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TransferError::Io(error) => write!(f, "{error}"),
            TransferError::BadName => f.write_str("not a plain file name or not a regular file"),
            TransferError::UnknownTransfer => f.write_str("no such transfer"),
            TransferError::TooMany => f.write_str("too many transfers"),
        }
    }
}

impl std::error::Error for TransferError {}

impl From<io::Error> for TransferError {
    fn from(error: io::Error) -> Self {
        TransferError::Io(error)
    }
}

/// A file opened and hashed, ready to offer. Hashing reads the whole file: do it where blocking
/// is fine ([`PreparedFile::open`] is the slow part; [`Transfers::offer`] is quick).
#[derive(Debug)]
pub struct PreparedFile {
    file: File,
    name: String,
    size: u64,
    sha256: [u8; 32],
}

impl PreparedFile {
    /// Opens `path` (a regular file; symbolic links are refused), hashes it, and names it by its
    /// final path component.
    pub fn open(path: &Path) -> Result<PreparedFile, TransferError> {
        let name = path.file_name().and_then(|name| name.to_str()).ok_or(TransferError::BadName)?;
        if !wire::is_plain_file_name(name) || !fs::symlink_metadata(path)?.is_file() {
            return Err(TransferError::BadName);
        }
        let mut file = File::open(path)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        let mut size = 0u64;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            size += n as u64;
        }
        Ok(PreparedFile { file, name: name.to_owned(), size, sha256: hasher.finalize().into() })
    }

    /// Bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// SHA-256 of the content.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }
}

/// The regular file named `name` directly inside `dir` (what a peer may fetch from a shared
/// folder), or the reason to refuse.
pub fn shared_file(dir: &Path, name: &str) -> Result<PathBuf, CancelReason> {
    if !wire::is_plain_file_name(name) {
        return Err(CancelReason::Protocol);
    }
    let path = dir.join(name);
    match fs::symlink_metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        _ => Err(CancelReason::NotFound),
    }
}

type Key = (MemberId, u32);

#[derive(Debug)]
struct Outgoing {
    file: PreparedFile,
    state: SendState,
    /// Next byte to send.
    next: u64,
    /// Bytes the receiver has acknowledged.
    acked: u64,
    window: u64,
    last_heard: Instant,
    offer_due: bool,
}

#[derive(Debug, PartialEq, Eq)]
enum SendState {
    AwaitingAccept,
    Sending,
}

#[derive(Debug)]
struct Incoming {
    name: String,
    size: u64,
    sha256: [u8; 32],
    state: ReceiveState,
    last_heard: Instant,
}

#[derive(Debug)]
enum ReceiveState {
    /// Offered; the local user has not answered.
    AwaitingUser,
    /// Fetched; the peer has not offered yet.
    AwaitingOffer,
    Receiving(Box<Receiving>),
}

/// Bytes a receiver writes between two background syncs of its part file.
pub const SYNC_EVERY: u64 = 32 * 1024 * 1024;

#[derive(Debug)]
struct Receiving {
    part: PathBuf,
    file: File,
    hasher: Sha256,
    received: u64,
    acked: u64,
    /// A gap was seen and reported; chunks past it are ignored until the sender rewinds.
    gap_reported: bool,
    /// Bytes written since the last background sync started.
    unsynced: u64,
    /// The background sync of `file` (a `sync_data` on a clone of its descriptor), if one ran.
    syncing: Option<JoinHandle<io::Result<()>>>,
}

impl Receiving {
    fn new(part: PathBuf, file: File) -> Receiving {
        Receiving {
            part,
            file,
            hasher: Sha256::new(),
            received: 0,
            acked: 0,
            gap_reported: false,
            unsynced: 0,
            syncing: None,
        }
    }

    /// Counts `len` bytes written and, every [`SYNC_EVERY`] bytes, starts a background sync
    /// unless one still runs. An error is what the last background sync reported (the transfer
    /// fails: the kernel reports a write-back error once, so it must not be lost).
    fn wrote(&mut self, len: usize) -> io::Result<()> {
        self.unsynced += len as u64;
        if self.unsynced < SYNC_EVERY || self.syncing.as_ref().is_some_and(|sync| !sync.is_finished()) {
            return Ok(());
        }
        self.collect_sync()?;
        self.unsynced = 0;
        // No thread (or no second descriptor) only means the final sync does all the work.
        if let Ok(file) = self.file.try_clone() {
            self.syncing =
                std::thread::Builder::new().name("lifeline-sync".into()).spawn(move || file.sync_data()).ok();
        }
        Ok(())
    }

    /// Waits for the background sync, if any, and returns its result.
    fn collect_sync(&mut self) -> io::Result<()> {
        match self.syncing.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the background sync stopped")),
        }
    }
}

/// Every transfer of one endpoint, with every peer.
#[derive(Debug)]
pub struct Transfers {
    local: MemberId,
    config: TransferConfig,
    next_id: u32,
    sending: BTreeMap<Key, Outgoing>,
    receiving: BTreeMap<Key, Incoming>,
    /// Fetches we were asked for and have not answered: the id is the peer's.
    fetch_requests: BTreeMap<Key, String>,
    /// Recently completed incoming transfers, to answer a re-offer whose `Complete` was lost.
    completed: VecDeque<Key>,
    messages: VecDeque<(MemberId, Vec<u8>)>,
    events: VecDeque<TransferEvent>,
    /// Round-robin position among senders, so one large file does not starve the others.
    turn: Option<Key>,
}

/// Most transfers in each direction at once.
const MAX_TRANSFERS: usize = 64;
const COMPLETED_MEMORY: usize = 64;

impl Transfers {
    /// Transfers of the endpoint `local` (its member id picks the parity of its transfer ids).
    pub fn new(local: MemberId, config: TransferConfig) -> Transfers {
        Transfers {
            local,
            config,
            next_id: 0,
            sending: BTreeMap::new(),
            receiving: BTreeMap::new(),
            fetch_requests: BTreeMap::new(),
            completed: VecDeque::new(),
            messages: VecDeque::new(),
            events: VecDeque::new(),
            turn: None,
        }
    }

    /// The member id this endpoint got (after a join); ids picked from now on follow it.
    pub fn set_local(&mut self, local: MemberId) {
        self.local = local;
    }

    fn new_id(&mut self, peer: MemberId) -> Result<u32, TransferError> {
        for _ in 0..4 {
            let id = self.next_id.wrapping_mul(2) | u32::from(self.local >= peer);
            self.next_id = self.next_id.wrapping_add(1);
            let key = (peer, id);
            if !self.sending.contains_key(&key) && !self.receiving.contains_key(&key) {
                debug_assert!(wire::id_is_ours(self.local.0, peer.0, id));
                return Ok(id);
            }
        }
        Err(TransferError::TooMany)
    }

    /// Offers `file` to `peer`; returns the transfer id.
    pub fn offer(&mut self, now: Instant, peer: MemberId, file: PreparedFile) -> Result<u32, TransferError> {
        if self.sending.len() >= MAX_TRANSFERS {
            return Err(TransferError::TooMany);
        }
        let id = self.new_id(peer)?;
        self.start_sending(now, (peer, id), file);
        Ok(id)
    }

    fn start_sending(&mut self, now: Instant, key: Key, file: PreparedFile) {
        let outgoing = Outgoing {
            file,
            state: SendState::AwaitingAccept,
            next: 0,
            acked: 0,
            window: 0,
            last_heard: now,
            offer_due: false,
        };
        self.queue_offer(key, &outgoing.file);
        self.sending.insert(key, outgoing);
    }

    fn queue_offer(&mut self, (peer, id): Key, file: &PreparedFile) {
        let offer = FileRepr::Offer { id, size: file.size, sha256: file.sha256, name: &file.name };
        self.queue(peer, &offer);
    }

    /// Asks `peer` for its file `name`; returns the transfer id.
    pub fn fetch(&mut self, now: Instant, peer: MemberId, name: &str) -> Result<u32, TransferError> {
        if !wire::is_plain_file_name(name) {
            return Err(TransferError::BadName);
        }
        if self.receiving.len() >= MAX_TRANSFERS {
            return Err(TransferError::TooMany);
        }
        let id = self.new_id(peer)?;
        self.queue(peer, &FileRepr::Fetch { id, name });
        let incoming = Incoming {
            name: name.to_owned(),
            size: 0,
            sha256: [0; 32],
            state: ReceiveState::AwaitingOffer,
            last_heard: now,
        };
        self.receiving.insert((peer, id), incoming);
        Ok(id)
    }

    /// Accepts an offered file: it is received into the download folder.
    pub fn accept(&mut self, now: Instant, peer: MemberId, id: u32) -> Result<(), TransferError> {
        let key = (peer, id);
        let Some(incoming) = self.receiving.get_mut(&key) else {
            return Err(TransferError::UnknownTransfer);
        };
        if !matches!(incoming.state, ReceiveState::AwaitingUser) {
            return Err(TransferError::UnknownTransfer);
        }
        match open_part(&self.config.download_dir, &incoming.name, peer, id) {
            Ok((part, file)) => {
                incoming.state = ReceiveState::Receiving(Box::new(Receiving::new(part, file)));
                incoming.last_heard = now;
                let empty = incoming.size == 0;
                let window = self.config.window;
                self.queue(peer, &FileRepr::Accept { id, offset: 0, window });
                if empty {
                    // Nothing will come: it is complete (and its hash is checked) now.
                    self.finish_incoming(key);
                }
                Ok(())
            }
            Err(error) => {
                self.fail_incoming(key, CancelReason::Storage, true);
                Err(error.into())
            }
        }
    }

    /// Declines an offered file.
    pub fn decline(&mut self, peer: MemberId, id: u32) -> Result<(), TransferError> {
        match self.receiving.get(&(peer, id)) {
            Some(Incoming { state: ReceiveState::AwaitingUser, .. }) => {
                self.fail_incoming((peer, id), CancelReason::Declined, true);
                Ok(())
            }
            _ => Err(TransferError::UnknownTransfer),
        }
    }

    /// Answers a [`TransferEvent::FetchRequested`] with the file.
    pub fn serve_fetch(
        &mut self,
        now: Instant,
        peer: MemberId,
        id: u32,
        file: PreparedFile,
    ) -> Result<(), TransferError> {
        if self.fetch_requests.remove(&(peer, id)).is_none() || self.sending.contains_key(&(peer, id)) {
            return Err(TransferError::UnknownTransfer);
        }
        self.start_sending(now, (peer, id), file);
        Ok(())
    }

    /// Answers a [`TransferEvent::FetchRequested`] with a refusal.
    pub fn refuse_fetch(&mut self, peer: MemberId, id: u32, reason: CancelReason) -> Result<(), TransferError> {
        if self.fetch_requests.remove(&(peer, id)).is_none() {
            return Err(TransferError::UnknownTransfer);
        }
        self.queue(peer, &FileRepr::Cancel { id, by: Side::Sender, reason });
        Ok(())
    }

    /// Cancels one transfer (either direction).
    pub fn cancel(&mut self, peer: MemberId, id: u32) -> Result<(), TransferError> {
        let key = (peer, id);
        if self.sending.contains_key(&key) {
            self.fail_outgoing(key, CancelReason::Aborted, true);
            Ok(())
        } else if self.receiving.contains_key(&key) {
            self.fail_incoming(key, CancelReason::Aborted, true);
            Ok(())
        } else {
            Err(TransferError::UnknownTransfer)
        }
    }

    /// Cancels everything, telling each peer `reason` (for example
    /// [`CancelReason::Revoked`] when the customer takes back the file-transfer grant). Nothing
    /// more is sent for these transfers; part files are removed.
    pub fn cancel_all(&mut self, reason: CancelReason) {
        let sending: Vec<Key> = self.sending.keys().copied().collect();
        for key in sending {
            self.fail_outgoing(key, reason, true);
        }
        let receiving: Vec<Key> = self.receiving.keys().copied().collect();
        for key in receiving {
            self.fail_incoming(key, reason, true);
        }
        let fetches: Vec<Key> = self.fetch_requests.keys().copied().collect();
        for (peer, id) in fetches {
            let _ = self.refuse_fetch(peer, id, reason);
        }
    }

    /// Forgets every transfer with `peer` (it left the session). Nothing is sent to it.
    pub fn peer_gone(&mut self, peer: MemberId) {
        let sending: Vec<Key> = self.sending.keys().copied().filter(|key| key.0 == peer).collect();
        for key in sending {
            self.sending.remove(&key);
            self.push_failed(key, Direction::Sending, CancelReason::Aborted, false);
        }
        let receiving: Vec<Key> = self.receiving.keys().copied().filter(|key| key.0 == peer).collect();
        for key in receiving {
            if let Some(incoming) = self.receiving.remove(&key) {
                discard(incoming);
            }
            self.push_failed(key, Direction::Receiving, CancelReason::Aborted, false);
        }
        self.fetch_requests.retain(|key, _| key.0 != peer);
        self.messages.retain(|(to, _)| *to != peer);
    }

    /// The session resumed after a reconnect: frames in flight may be lost, so every receiver
    /// asks again from what it has.
    pub fn handle_reconnected(&mut self, now: Instant) {
        let keys: Vec<Key> = self.receiving.keys().copied().collect();
        for key in keys {
            self.resync(now, key);
        }
    }

    /// Stall timers: receivers that heard nothing ask again; senders that sent everything and
    /// heard nothing re-offer.
    pub fn handle_timeout(&mut self, now: Instant) {
        let stall = self.config.stall_after;
        let stalled: Vec<Key> = self
            .receiving
            .iter()
            .filter(|(_, incoming)| matches!(incoming.state, ReceiveState::Receiving(_)))
            .filter(|(_, incoming)| now.saturating_duration_since(incoming.last_heard) >= stall)
            .map(|(key, _)| *key)
            .collect();
        for key in stalled {
            self.resync(now, key);
        }
        for outgoing in self.sending.values_mut() {
            let waiting = outgoing.state == SendState::AwaitingAccept
                || outgoing.next >= outgoing.file.size
                || outgoing.next >= outgoing.acked + outgoing.window;
            if waiting && now.saturating_duration_since(outgoing.last_heard) >= stall {
                outgoing.offer_due = true;
                outgoing.last_heard = now;
            }
        }
    }

    /// When [`Transfers::handle_timeout`] should run next, if anything is in progress.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let stall = self.config.stall_after;
        let receivers = self
            .receiving
            .values()
            .filter(|incoming| matches!(incoming.state, ReceiveState::Receiving(_)))
            .map(|incoming| incoming.last_heard + stall);
        let senders = self.sending.values().map(|outgoing| outgoing.last_heard + stall);
        receivers.chain(senders).min()
    }

    fn resync(&mut self, now: Instant, key: Key) {
        let Some(incoming) = self.receiving.get_mut(&key) else { return };
        let ReceiveState::Receiving(receiving) = &incoming.state else { return };
        incoming.last_heard = now;
        let offset = receiving.received;
        let window = self.config.window;
        self.queue(key.0, &FileRepr::Accept { id: key.1, offset, window });
    }

    /// Whether any transfer is in progress or waiting for an answer.
    pub fn is_idle(&self) -> bool {
        self.sending.is_empty() && self.receiving.is_empty() && self.fetch_requests.is_empty()
    }

    /// The next event for the user interface.
    pub fn poll_event(&mut self) -> Option<TransferEvent> {
        self.events.pop_front()
    }

    /// The next payload to send (as `ContentType::File` data to the returned peer), written into
    /// `out` (at least [`MAX_PAYLOAD_LEN`] bytes, or the call returns `None` and changes nothing).
    /// Small messages go first, then chunks, turn by turn among senders, as their receivers'
    /// windows allow.
    pub fn poll_message(&mut self, out: &mut [u8]) -> Option<(MemberId, usize)> {
        if out.len() < MAX_PAYLOAD_LEN {
            return None;
        }
        if let Some((peer, message)) = self.messages.pop_front() {
            out[..message.len()].copy_from_slice(&message);
            return Some((peer, message.len()));
        }
        let mut keys: Vec<Key> = self.sending.keys().copied().collect();
        if let Some(turn) = self.turn {
            let split = keys.iter().position(|key| *key > turn).unwrap_or(0);
            keys.rotate_left(split);
        }
        for key in keys {
            if let Some(len) = self.next_from(key, out) {
                self.turn = Some(key);
                return Some((key.0, len));
            }
        }
        None
    }

    fn next_from(&mut self, key: Key, out: &mut [u8]) -> Option<usize> {
        let outgoing = self.sending.get_mut(&key)?;
        if outgoing.offer_due {
            outgoing.offer_due = false;
            let file = &outgoing.file;
            let offer = FileRepr::Offer { id: key.1, size: file.size, sha256: file.sha256, name: &file.name };
            return offer.emit(out);
        }
        if outgoing.state != SendState::Sending {
            return None;
        }
        let offset = outgoing.next;
        let remaining = outgoing.file.size.saturating_sub(offset);
        let len = usize::try_from(remaining).unwrap_or(usize::MAX).min(MAX_CHUNK_LEN);
        // Whole chunks only, within the window; but always one in flight, so a window smaller
        // than a chunk still moves.
        let in_window = offset + len as u64 <= outgoing.acked.saturating_add(outgoing.window);
        if len == 0 || !(in_window || offset == outgoing.acked) {
            return None;
        }
        let mut data = [0u8; MAX_CHUNK_LEN];
        let read = read_at(&mut outgoing.file.file, offset, &mut data[..len]);
        match read {
            Ok(()) => {
                outgoing.next += len as u64;
                FileRepr::Chunk { id: key.1, offset, data: &data[..len] }.emit(out)
            }
            Err(_) => {
                // The file shrank or became unreadable since it was offered.
                self.fail_outgoing(key, CancelReason::Storage, true);
                let (peer, message) = self.messages.pop_front()?;
                debug_assert_eq!(peer, key.0);
                out[..message.len()].copy_from_slice(&message);
                Some(message.len())
            }
        }
    }

    /// A `File` payload from `peer`. Malformed payloads are dropped (`false`).
    pub fn handle_message(&mut self, now: Instant, peer: MemberId, payload: &[u8]) -> bool {
        let Some(message) = FileRepr::parse(payload) else {
            return false;
        };
        let key = (peer, message.id());
        match message {
            FileRepr::Offer { id, size, sha256, name } => self.on_offer(now, key, id, size, sha256, name),
            FileRepr::Fetch { id, name } => {
                let ours = wire::id_is_ours(self.local.0, peer.0, id);
                if ours || self.sending.contains_key(&key) || self.fetch_requests.contains_key(&key) {
                    return true;
                }
                if self.fetch_requests.len() >= MAX_TRANSFERS {
                    self.queue(peer, &FileRepr::Cancel { id, by: Side::Sender, reason: CancelReason::Other });
                    return true;
                }
                self.fetch_requests.insert(key, name.to_owned());
                self.events.push_back(TransferEvent::FetchRequested { peer, id, name: name.to_owned() });
            }
            FileRepr::Accept { offset, window, .. } => {
                let Some(outgoing) = self.sending.get_mut(&key) else { return true };
                if offset > outgoing.file.size {
                    self.fail_outgoing(key, CancelReason::Protocol, true);
                    return true;
                }
                outgoing.state = SendState::Sending;
                outgoing.next = offset;
                outgoing.acked = offset;
                outgoing.window = u64::from(window);
                outgoing.last_heard = now;
            }
            FileRepr::Ack { received, .. } => {
                let Some(outgoing) = self.sending.get_mut(&key) else { return true };
                if outgoing.state != SendState::Sending || received > outgoing.next {
                    return true;
                }
                outgoing.last_heard = now;
                if received > outgoing.acked {
                    outgoing.acked = received;
                    let (done, size) = (received, outgoing.file.size);
                    self.events.push_back(TransferEvent::Progress {
                        peer,
                        id: key.1,
                        direction: Direction::Sending,
                        done,
                        size,
                    });
                }
            }
            FileRepr::Chunk { offset, data, .. } => self.on_chunk(now, key, offset, data),
            FileRepr::Complete { .. } => {
                if let Some(outgoing) = self.sending.remove(&key) {
                    self.events.push_back(TransferEvent::Completed {
                        peer,
                        id: key.1,
                        direction: Direction::Sending,
                        saved_as: None,
                        size: outgoing.file.size,
                        sha256: outgoing.file.sha256,
                    });
                }
            }
            FileRepr::Cancel { by, reason, .. } => match by {
                // The sender cancelled: we were receiving (or had asked for a fetch).
                Side::Sender => {
                    if let Some(incoming) = self.receiving.remove(&key) {
                        discard(incoming);
                        self.push_failed(key, Direction::Receiving, reason, false);
                    }
                    self.fetch_requests.remove(&key);
                }
                Side::Receiver => {
                    if self.sending.remove(&key).is_some() {
                        self.push_failed(key, Direction::Sending, reason, false);
                    }
                }
            },
            _ => return false,
        }
        true
    }

    fn on_offer(&mut self, now: Instant, key: Key, id: u32, size: u64, sha256: [u8; 32], name: &str) {
        let peer = key.0;
        if self.completed.contains(&key) {
            // Our `Complete` was lost: say it again.
            self.queue(peer, &FileRepr::Complete { id });
            return;
        }
        if let Some(incoming) = self.receiving.get_mut(&key) {
            match &incoming.state {
                // The answer to our fetch.
                ReceiveState::AwaitingOffer => {
                    if name != incoming.name {
                        self.fail_incoming(key, CancelReason::Protocol, true);
                        return;
                    }
                    incoming.size = size;
                    incoming.sha256 = sha256;
                    incoming.state = ReceiveState::AwaitingUser;
                    if size > self.config.max_size {
                        self.fail_incoming(key, CancelReason::TooLarge, true);
                        return;
                    }
                    // We asked for it: accept without asking the user again.
                    let _ = self.accept(now, peer, id);
                }
                // A re-offer (the sender heard nothing): say where we are.
                ReceiveState::Receiving(_) => self.resync(now, key),
                ReceiveState::AwaitingUser => {}
            }
            return;
        }
        if wire::id_is_ours(self.local.0, peer.0, id) {
            // An offer must use the offerer's ids (a fetch answer matched above).
            self.queue(peer, &FileRepr::Cancel { id, by: Side::Receiver, reason: CancelReason::Protocol });
            return;
        }
        if size > self.config.max_size {
            self.queue(peer, &FileRepr::Cancel { id, by: Side::Receiver, reason: CancelReason::TooLarge });
            return;
        }
        if self.receiving.len() >= MAX_TRANSFERS {
            self.queue(peer, &FileRepr::Cancel { id, by: Side::Receiver, reason: CancelReason::Other });
            return;
        }
        let incoming =
            Incoming { name: name.to_owned(), size, sha256, state: ReceiveState::AwaitingUser, last_heard: now };
        self.receiving.insert(key, incoming);
        self.events.push_back(TransferEvent::Offered { peer, id, name: name.to_owned(), size });
    }

    fn on_chunk(&mut self, now: Instant, key: Key, offset: u64, data: &[u8]) {
        let window = u64::from(self.config.window);
        let Some(incoming) = self.receiving.get_mut(&key) else { return };
        let size = incoming.size;
        let ReceiveState::Receiving(receiving) = &mut incoming.state else { return };
        if offset != receiving.received {
            // A gap (or a duplicate after a resync): ask from what we have, once per gap; the
            // stall timer repeats it if that is lost too.
            if offset > receiving.received && !receiving.gap_reported {
                receiving.gap_reported = true;
                let accept = FileRepr::Accept { id: key.1, offset: receiving.received, window: self.config.window };
                self.queue(key.0, &accept);
            }
            return;
        }
        if offset + data.len() as u64 > size {
            self.fail_incoming(key, CancelReason::Protocol, true);
            return;
        }
        incoming.last_heard = now;
        if receiving.file.write_all(data).and_then(|()| receiving.wrote(data.len())).is_err() {
            self.fail_incoming(key, CancelReason::Storage, true);
            return;
        }
        receiving.hasher.update(data);
        receiving.received += data.len() as u64;
        let received = receiving.received;
        if received == size {
            self.finish_incoming(key);
            return;
        }
        // After a gap the first in-order chunk is acknowledged at once.
        if std::mem::take(&mut receiving.gap_reported) || received - receiving.acked >= window / 4 {
            receiving.acked = received;
            self.queue(key.0, &FileRepr::Ack { id: key.1, received });
            self.events.push_back(TransferEvent::Progress {
                peer: key.0,
                id: key.1,
                direction: Direction::Receiving,
                done: received,
                size,
            });
        }
    }

    fn finish_incoming(&mut self, key: Key) {
        let Some(incoming) = self.receiving.remove(&key) else { return };
        let ReceiveState::Receiving(receiving) = incoming.state else { return };
        let mut receiving = *receiving;
        // The background sync's result first: a write-back error it saw is not reported again.
        let stored = receiving.collect_sync().and_then(|()| receiving.file.sync_all());
        let Receiving { part, file, hasher, .. } = receiving;
        let digest: [u8; 32] = hasher.finalize().into();
        drop(file);
        let (peer, id) = key;
        if digest != incoming.sha256 {
            let _ = fs::remove_file(&part);
            self.queue(peer, &FileRepr::Cancel { id, by: Side::Receiver, reason: CancelReason::Integrity });
            self.push_failed(key, Direction::Receiving, CancelReason::Integrity, true);
            return;
        }
        let saved = stored.and_then(|()| move_to_free_name(&part, &self.config.download_dir, &incoming.name));
        match saved {
            Ok(path) => {
                self.queue(peer, &FileRepr::Complete { id });
                if self.completed.len() >= COMPLETED_MEMORY {
                    self.completed.pop_front();
                }
                self.completed.push_back(key);
                self.events.push_back(TransferEvent::Completed {
                    peer,
                    id,
                    direction: Direction::Receiving,
                    saved_as: Some(path),
                    size: incoming.size,
                    sha256: digest,
                });
            }
            Err(_) => {
                let _ = fs::remove_file(&part);
                self.queue(peer, &FileRepr::Cancel { id, by: Side::Receiver, reason: CancelReason::Storage });
                self.push_failed(key, Direction::Receiving, CancelReason::Storage, true);
            }
        }
    }

    fn fail_outgoing(&mut self, key: Key, reason: CancelReason, tell: bool) {
        if self.sending.remove(&key).is_some() {
            if tell {
                self.queue(key.0, &FileRepr::Cancel { id: key.1, by: Side::Sender, reason });
            }
            self.push_failed(key, Direction::Sending, reason, tell);
        }
    }

    fn fail_incoming(&mut self, key: Key, reason: CancelReason, tell: bool) {
        if let Some(incoming) = self.receiving.remove(&key) {
            discard(incoming);
            if tell {
                self.queue(key.0, &FileRepr::Cancel { id: key.1, by: Side::Receiver, reason });
            }
            self.push_failed(key, Direction::Receiving, reason, tell);
        }
    }

    fn push_failed(&mut self, (peer, id): Key, direction: Direction, reason: CancelReason, by_us: bool) {
        self.events.push_back(TransferEvent::Failed { peer, id, direction, reason, by_us });
    }

    fn queue(&mut self, peer: MemberId, message: &FileRepr<'_>) {
        let mut buf = [0u8; 512];
        // Only small messages are queued (chunks are read on demand); they always fit.
        if let Some(len) = message.emit(&mut buf) {
            self.messages.push_back((peer, buf[..len].to_vec()));
        }
    }
}

fn read_at(file: &mut File, offset: u64, out: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(out)
}

fn discard(incoming: Incoming) {
    if let ReceiveState::Receiving(receiving) = incoming.state {
        drop(receiving.file);
        let _ = fs::remove_file(&receiving.part);
    }
}

/// Creates a new hidden part file for a transfer (never opening an existing one).
fn open_part(dir: &Path, name: &str, peer: MemberId, id: u32) -> io::Result<(PathBuf, File)> {
    fs::create_dir_all(dir)?;
    for attempt in 0..100u32 {
        let part = dir.join(format!(".{name}.{}-{id}-{attempt}.lifeline-part", peer.0));
        match OpenOptions::new().write(true).create_new(true).open(&part) {
            Ok(file) => return Ok((part, file)),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(error),
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free part file name"))
}

/// Moves `part` to `dir/name`, or `dir/name (1).ext`, … whichever does not exist: never over an
/// existing file (a hard link fails if the target exists; where links are not supported, a
/// rename after an existence check).
fn move_to_free_name(part: &Path, dir: &Path, name: &str) -> io::Result<PathBuf> {
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    for n in 0..1000u32 {
        let candidate = if n == 0 { dir.join(name) } else { dir.join(format!("{stem} ({n}){ext}")) };
        match fs::hard_link(part, &candidate) {
            Ok(()) => {
                fs::remove_file(part)?;
                return Ok(candidate);
            }
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(_) => {
                if fs::symlink_metadata(&candidate).is_err() {
                    fs::rename(part, &candidate)?;
                    return Ok(candidate);
                }
            }
        }
    }
    Err(io::Error::new(io::ErrorKind::AlreadyExists, "no free file name"))
}
