//! The session driver: one tokio task per session that owns the relay connection and the engine.
//!
//! The task follows the engine's call contract exactly: after every input (bytes from the relay,
//! a command from the application, the timer, a relay notice) it drains `poll_transmit` until
//! empty, then `poll_event` until empty, then arms one timer for `poll_timeout`. Frames the
//! engine writes go to an outbox that is written to the relay after each input; while the
//! connection is down they wait there (bounded), and go out after the session resumes.

use std::fmt;
use std::future::Future;
use std::pin::Pin as PinBox;
use std::sync::Arc;
use std::time::Duration;

use lifeline_core::consent::{Capability, ConsentError};
use lifeline_core::session::{Config, Event, Pin, SendError, Session, SessionEnd};
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::relay::{MAX_TICKET_LEN, RefusalReason, RelayRepr};
use lifeline_core::wire::{
    Destination, FrameKind, HEADER_LEN, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, MemberId, RoutingHeader, StreamDecoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

use crate::backoff::Backoff;
use crate::clock::Clock;
use crate::connect::{ConnectError, RelayAddress, RelayStream, Timing, connect_tls, rank_by_rtt};
use crate::proxy::HttpProxy;
use crate::rng::{OsRng, os_rng, uniform_below};

/// Most members a session driven by this crate holds (the leader included).
pub const MAX_MEMBERS: usize = 8;

/// Plaintext taken from the TLS stream per read. Several frames per read means several
/// deliveries per wake-up of the application's task (one read of 16 KiB was about one frame, and
/// one cross-thread wake-up per frame cost the receiver more than decrypting it).
const READ_BUF_LEN: usize = 128 * 1024;

/// The engine type this driver runs.
pub type EngineSession = Session<OsRng, MAX_MEMBERS>;

/// How to reach the relays, and how hard to try.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// Relays in order of preference. A `GoAway` or a failed attempt moves to the next one.
    pub relays: Vec<RelayAddress>,
    /// TLS client configuration (see [`client_config`](crate::tls::client_config)).
    pub tls: Arc<rustls::ClientConfig>,
    /// HTTP CONNECT proxy, if any (see [`HttpProxy::from_env`]).
    pub proxy: Option<HttpProxy>,
    /// Connection set-up timers.
    pub timing: Timing,
    /// Waits between attempts.
    pub backoff: Backoff,
    /// Attempts at the first connection before giving up (the session does not exist yet).
    pub initial_attempts: u32,
    /// How long an established session keeps trying to reconnect before giving up. The engine
    /// may end it sooner (a member loses the leader after its idle timeout).
    pub reconnect_budget: Duration,
    /// Probe the relays with plain TCP connections first and try the fastest first (only with
    /// several relays and no proxy).
    pub probe_relays: bool,
    /// Most bytes of frames kept for sending while the connection is down.
    pub outbox_limit: usize,
}

impl TransportConfig {
    /// A configuration with default timers: 4 first attempts, 60 s of reconnection, no probes.
    pub fn new(relays: Vec<RelayAddress>, tls: Arc<rustls::ClientConfig>) -> Self {
        TransportConfig {
            relays,
            tls,
            proxy: None,
            timing: Timing::default(),
            backoff: Backoff::default(),
            initial_attempts: 4,
            reconnect_budget: Duration::from_secs(60),
            probe_relays: false,
            outbox_limit: 1 << 20,
        }
    }
}

/// How this endpoint enters the session.
pub enum Join {
    /// As the leader, with the PIN it generated ([`Pin::generate`]) and shows its user.
    Leader(Pin),
    /// As a member, with the PIN its user typed.
    Member(Pin),
}

impl fmt::Debug for Join {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Join::Leader(_) => "Join::Leader(..)",
            Join::Member(_) => "Join::Member(..)",
        })
    }
}

/// The session to run.
pub struct SessionSpec {
    /// Engine configuration; `local_id` is replaced by the id the relay assigns.
    pub config: Config,
    /// Leader or member, and the PIN.
    pub join: Join,
    /// The admission ticket (a bearer token: never logged).
    pub ticket: Vec<u8>,
}

impl fmt::Debug for SessionSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionSpec")
            .field("session", &self.config.session)
            .field("role", &self.config.role)
            .field("join", &self.join)
            .finish_non_exhaustive()
    }
}

/// What the driver tells the application.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportEvent {
    /// The connection to the relay changed state. [`ConnectionState::Closed`] is the last event.
    Connection(ConnectionState),
    /// An event from the engine (joins, announcements, consent, the end of the session).
    Session(Event),
    /// Application data from another member, decrypted and checked.
    Data(Received),
}

/// Application data received, with an owned payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// Sender.
    pub from: MemberId,
    /// What it is.
    pub content: ContentType,
    /// The payload.
    pub payload: Vec<u8>,
}

/// The state of the connection to the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Racing TLS connections to this relay.
    Connecting {
        /// The relay's host.
        relay: String,
    },
    /// Admitted by the relay.
    Connected {
        /// The relay's host.
        relay: String,
        /// The port that won the race.
        port: u16,
        /// This endpoint's member id.
        member: MemberId,
        /// Whether this resumed the session after a reconnect.
        resumed: bool,
    },
    /// The connection failed or was lost; the next attempt starts after `delay`.
    Reconnecting {
        /// Consecutive failed attempts so far (from 1).
        attempt: u32,
        /// The wait before the next attempt.
        delay: Duration,
        /// What went wrong.
        error: ConnectError,
    },
    /// The driver stopped; nothing more will happen.
    Closed {
        /// Why.
        cause: CloseCause,
    },
}

/// Why the driver stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// The session ended (closed here, ended by a peer, join refused, timed out, …).
    Session(SessionEnd),
    /// The relay could not be reached or refused us, and retrying would not help (or the
    /// retry budget is spent).
    Connection(ConnectError),
}

impl fmt::Display for CloseCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseCause::Session(end) => write!(f, "session {end}"),
            CloseCause::Connection(error) => error.fmt(f),
        }
    }
}

/// Sends commands to a running session. Cheap to clone; when every clone is dropped the
/// session is closed.
///
/// Methods report the engine's own errors; once the driver has stopped they report
/// `SendError::Closed` / `ConsentError::Closed`.
#[derive(Clone, Debug)]
pub struct SessionHandle {
    commands: mpsc::Sender<Command>,
}

/// The events of a running session, in order. Ends after [`ConnectionState::Closed`].
///
/// The channel is unbounded so that the driver never waits on the application (which may be
/// waiting on a command reply): read it promptly.
#[derive(Debug)]
pub struct SessionEvents {
    events: mpsc::UnboundedReceiver<TransportEvent>,
}

impl SessionEvents {
    /// The next event; `None` after the driver stopped and every event was read.
    pub async fn next(&mut self) -> Option<TransportEvent> {
        self.events.recv().await
    }
}

#[derive(Debug)]
enum Command {
    Send { to: Destination, content: ContentType, payload: Vec<u8>, reply: oneshot::Sender<Result<(), SendError>> },
    SendBatch { to: Destination, content: ContentType, payloads: Vec<Vec<u8>>, reply: oneshot::Sender<BatchResult> },
    Request { to: MemberId, capability: Capability, reply: oneshot::Sender<Result<(), SendError>> },
    Consent { change: ConsentChange, capability: Capability, reply: oneshot::Sender<Result<(), ConsentError>> },
    RemoveMember { member: MemberId, reply: oneshot::Sender<bool> },
    Close,
}

/// The answer to [`SessionHandle::send_batch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchResult {
    /// How many payloads (from the front) the engine accepted.
    pub sent: usize,
    /// What stopped the batch early, if anything.
    pub error: Option<SendError>,
    /// The payloads not sent (from the first refused one on), handed back for a later try;
    /// empty if the session had already closed.
    pub unsent: Vec<Vec<u8>>,
}

#[derive(Clone, Copy, Debug)]
enum ConsentChange {
    Grant,
    Deny,
    Revoke,
}

impl SessionHandle {
    /// Sends application data to `to` (encrypted by the engine). A customer's engine refuses
    /// content it has not granted ([`SendError::NotGranted`]).
    pub async fn send(
        &self,
        to: Destination,
        content: ContentType,
        payload: impl Into<Vec<u8>>,
    ) -> Result<(), SendError> {
        let payload = payload.into();
        self.ask(|reply| Command::Send { to, content, payload, reply }).await.unwrap_or(Err(SendError::Closed))
    }

    /// Sends several payloads to `to` in one command: the driver seals them in order through the
    /// engine (each exactly as [`SessionHandle::send`] would) and writes them out with one flush.
    /// Stops at the first error; the answer says how many were accepted and hands the rest back.
    pub async fn send_batch(&self, to: Destination, content: ContentType, payloads: Vec<Vec<u8>>) -> BatchResult {
        self.ask(|reply| Command::SendBatch { to, content, payloads, reply }).await.unwrap_or(BatchResult {
            sent: 0,
            error: Some(SendError::Closed),
            unsent: Vec::new(),
        })
    }

    /// Sends a chat line to every member.
    pub async fn chat(&self, text: &str) -> Result<(), SendError> {
        self.send(Destination::AllMembers, ContentType::Chat, text.as_bytes()).await
    }

    /// Provider: asks customer `to` for `capability`.
    pub async fn request(&self, to: MemberId, capability: Capability) -> Result<(), SendError> {
        self.ask(|reply| Command::Request { to, capability, reply }).await.unwrap_or(Err(SendError::Closed))
    }

    /// Customer: the local user allows `capability` (answering its prompt).
    pub async fn grant(&self, capability: Capability) -> Result<(), ConsentError> {
        self.consent(ConsentChange::Grant, capability).await
    }

    /// Customer: the local user refuses `capability` (answering its prompt).
    pub async fn deny(&self, capability: Capability) -> Result<(), ConsentError> {
        self.consent(ConsentChange::Deny, capability).await
    }

    /// Customer: the local user takes `capability` back.
    pub async fn revoke(&self, capability: Capability) -> Result<(), ConsentError> {
        self.consent(ConsentChange::Revoke, capability).await
    }

    /// Leader: removes `member` from the session (the others rekey). `false` if it is not a
    /// member or this endpoint does not lead.
    pub async fn remove_member(&self, member: MemberId) -> bool {
        self.ask(|reply| Command::RemoveMember { member, reply }).await.unwrap_or(false)
    }

    /// Ends the session for this endpoint (for everyone if it is the leader or the customer).
    /// The events then report the end and [`ConnectionState::Closed`].
    pub async fn close(&self) {
        let _ = self.commands.send(Command::Close).await;
    }

    async fn consent(&self, change: ConsentChange, capability: Capability) -> Result<(), ConsentError> {
        self.ask(|reply| Command::Consent { change, capability, reply }).await.unwrap_or(Err(ConsentError::Closed))
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Option<T> {
        let (reply, answer) = oneshot::channel();
        self.commands.send(command(reply)).await.ok()?;
        answer.await.ok()
    }
}

/// Starts a session on the current tokio runtime: connects to the relays, gets admitted, runs
/// the engine, reconnects and resumes as needed. Must be called from within a tokio runtime.
pub fn spawn_session(config: TransportConfig, spec: SessionSpec) -> (SessionHandle, SessionEvents) {
    let (command_tx, command_rx) = mpsc::channel(64);
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let driver = Driver::new(config, spec, command_rx, event_tx);
    tokio::spawn(driver.run());
    (SessionHandle { commands: command_tx }, SessionEvents { events: event_rx })
}

// ---- the driver task ------------------------------------------------------------------------

type AttemptFuture = PinBox<Box<dyn Future<Output = Result<Box<Admitted>, ConnectError>> + Send>>;

/// A connection the relay admitted us on.
struct Link {
    stream: RelayStream,
    decoder: Box<StreamDecoder>,
    /// Bytes read but not yet taken by the decoder.
    pending: Vec<u8>,
}

struct Admitted {
    link: Link,
    relay: String,
    port: u16,
    member: MemberId,
}

/// What the frames just handled mean for the connection.
enum LinkStatus {
    Open,
    GoAway,
    Refused(RefusalReason),
    Broken(String),
}

/// The engine and what it produced: kept apart from the connection so both can be borrowed.
struct Engine {
    clock: Clock,
    session: Option<Box<EngineSession>>,
    outbox: Outbox,
    events: mpsc::UnboundedSender<TransportEvent>,
    deadline: Option<tokio::time::Instant>,
    ended: Option<CloseCause>,
    frame_buf: Vec<u8>,
    data_buf: Vec<u8>,
}

struct Outbox {
    bytes: Vec<u8>,
    limit: usize,
    dropped: u64,
}

impl Outbox {
    fn push(&mut self, frame: &[u8]) -> bool {
        if self.bytes.len() + frame.len() > self.limit {
            self.dropped += 1;
            tracing::warn!(dropped = self.dropped, "outbox full while disconnected: frame dropped");
            return false;
        }
        self.bytes.extend_from_slice(frame);
        true
    }
}

struct Driver {
    config: Arc<TransportConfig>,
    engine: Engine,
    session_config: Config,
    join: Option<Join>,
    ticket: Arc<[u8]>,
    link: Option<Link>,
    attempt: Option<AttemptFuture>,
    retry_at: Option<tokio::time::Instant>,
    /// Consecutive failed attempts (or losses) since the last admission.
    failures: u32,
    down_since: Option<tokio::time::Instant>,
    relay_order: Vec<usize>,
    relay_cursor: usize,
    commands: mpsc::Receiver<Command>,
    read_buf: Vec<u8>,
}

enum Input {
    Command(Option<Command>),
    Timer,
    Read(std::io::Result<usize>),
    Attempt(Result<Box<Admitted>, ConnectError>),
    Retry,
}

impl Driver {
    fn new(
        config: TransportConfig,
        spec: SessionSpec,
        commands: mpsc::Receiver<Command>,
        events: mpsc::UnboundedSender<TransportEvent>,
    ) -> Self {
        let outbox = Outbox { bytes: Vec::new(), limit: config.outbox_limit, dropped: 0 };
        let relay_order = (0..config.relays.len()).collect();
        Driver {
            engine: Engine {
                clock: Clock::new(),
                session: None,
                outbox,
                events,
                deadline: None,
                ended: None,
                frame_buf: vec![0; MAX_FRAME_LEN],
                data_buf: vec![0; MAX_PAYLOAD_LEN],
            },
            config: Arc::new(config),
            session_config: spec.config,
            join: Some(spec.join),
            ticket: spec.ticket.into(),
            link: None,
            attempt: None,
            retry_at: None,
            failures: 0,
            down_since: None,
            relay_order,
            relay_cursor: 0,
            commands,
            read_buf: vec![0; READ_BUF_LEN],
        }
    }

    async fn run(mut self) {
        if self.config.relays.is_empty() {
            self.engine.ended = Some(CloseCause::Connection(ConnectError::Unreachable("no relay configured".into())));
        } else {
            if self.config.probe_relays && self.config.relays.len() > 1 && self.config.proxy.is_none() {
                self.relay_order = rank_by_rtt(&self.config.relays, self.config.timing.probe_timeout).await;
                tracing::debug!(order = ?self.relay_order, "relays ranked by probe RTT");
            }
            self.start_attempt();
        }
        while self.engine.ended.is_none() {
            let input = tokio::select! {
                command = self.commands.recv() => Input::Command(command),
                () = sleep_until(self.engine.deadline) => Input::Timer,
                read = read_link(&mut self.link, &mut self.read_buf) => Input::Read(read),
                result = poll_attempt(&mut self.attempt) => Input::Attempt(result),
                () = sleep_until(self.retry_at) => Input::Retry,
            };
            match input {
                Input::Command(Some(command)) => self.on_command(command),
                Input::Command(None) => self.on_close(),
                Input::Timer => {
                    self.engine.deadline = None;
                    let now = self.engine.clock.now();
                    if let Some(session) = &mut self.engine.session {
                        session.handle_timeout(now);
                    }
                }
                Input::Read(read) => self.on_read(read),
                Input::Attempt(result) => {
                    self.attempt = None;
                    self.on_attempt(result);
                }
                Input::Retry => {
                    self.retry_at = None;
                    self.start_attempt();
                }
            }
            self.engine.drain();
            self.flush().await;
        }
        self.finish().await;
    }

    // ---- connection ------------------------------------------------------------------------

    fn current_relay(&self) -> RelayAddress {
        let index = self.relay_order[self.relay_cursor % self.relay_order.len()];
        self.config.relays[index].clone()
    }

    fn start_attempt(&mut self) {
        let relay = self.current_relay();
        self.engine.emit(TransportEvent::Connection(ConnectionState::Connecting { relay: relay.host.clone() }));
        let resume = self.engine.session.as_ref().map(|session| session.local_id());
        let future =
            establish(Arc::clone(&self.config), relay, self.session_config.session, Arc::clone(&self.ticket), resume);
        self.attempt = Some(Box::pin(future));
    }

    fn on_attempt(&mut self, result: Result<Box<Admitted>, ConnectError>) {
        match result {
            Ok(admitted) => self.on_admitted(*admitted),
            Err(error) if error.is_transient() => self.schedule_retry(error, true),
            Err(error) => self.engine.fail(CloseCause::Connection(error)),
        }
    }

    fn on_admitted(&mut self, admitted: Admitted) {
        let Admitted { link, relay, port, member } = admitted;
        let resumed = self.engine.session.is_some();
        match &self.engine.session {
            Some(session) if session.local_id() != member => {
                let error = format!("relay resumed us as member {} instead of {}", member.0, session.local_id().0);
                self.engine.fail(CloseCause::Connection(ConnectError::Protocol(error)));
                return;
            }
            Some(_) => {
                // Back with our old id: a member asks the leader for the current keys, in case
                // the group rekeyed while it was away (PROTOCOL.md, section 6).
                let now = self.engine.clock.now();
                if let Some(session) = &mut self.engine.session {
                    session.handle_reconnected(now);
                }
            }
            None => {
                let Some(session) = self.new_session(member) else { return };
                self.engine.session = Some(Box::new(session));
            }
        }
        tracing::info!(relay = %relay, port, member = member.0, resumed, "admitted by the relay");
        self.failures = 0;
        self.down_since = None;
        self.engine.emit(TransportEvent::Connection(ConnectionState::Connected { relay, port, member, resumed }));
        let mut link = link;
        // Frames may have arrived right behind the Welcome.
        match feed(&mut link, &mut self.engine) {
            LinkStatus::Open => self.link = Some(link),
            status => self.on_link_status(status),
        }
    }

    /// The engine, made once the relay has told us our member id.
    fn new_session(&mut self, member: MemberId) -> Option<EngineSession> {
        let mut config = self.session_config.clone();
        config.local_id = member;
        let now = self.engine.clock.now();
        match self.join.take() {
            Some(Join::Leader(pin)) if member == MemberId::LEADER => {
                Some(Session::new_leader(config, &pin, os_rng(), now))
            }
            Some(Join::Member(pin)) if member != MemberId::LEADER => {
                Some(Session::new_member(config, pin.as_str(), os_rng(), now))
            }
            _ => {
                let error = format!("relay admitted us with an id that does not fit our role ({})", member.0);
                self.engine.fail(CloseCause::Connection(ConnectError::Protocol(error)));
                None
            }
        }
    }

    fn on_read(&mut self, read: std::io::Result<usize>) {
        let Some(link) = &mut self.link else { return };
        let status = match read {
            Ok(0) => LinkStatus::Broken("connection closed by the relay".into()),
            Ok(n) => {
                link.pending.extend_from_slice(&self.read_buf[..n]);
                feed(link, &mut self.engine)
            }
            Err(error) => LinkStatus::Broken(error.to_string()),
        };
        self.on_link_status(status);
    }

    fn on_link_status(&mut self, status: LinkStatus) {
        match status {
            LinkStatus::Open => {}
            LinkStatus::GoAway => {
                tracing::info!("relay sent GoAway: moving to the next relay");
                self.link = None;
                self.relay_cursor += 1;
                self.down_since.get_or_insert_with(tokio::time::Instant::now);
                // A planned shutdown: come back promptly (no backoff), spread over a quarter
                // second so a relay's endpoints do not all return at once.
                self.failures = self.failures.saturating_add(1);
                let delay = Duration::from_millis(uniform_below(250));
                self.retry_at = Some(tokio::time::Instant::now() + delay);
                let error = ConnectError::Closed("the relay is going away".into());
                let attempt = self.failures;
                self.engine.emit(TransportEvent::Connection(ConnectionState::Reconnecting { attempt, delay, error }));
            }
            LinkStatus::Refused(reason) => {
                self.link = None;
                let error = ConnectError::Refused(reason);
                if error.is_transient() {
                    self.schedule_retry(error, true);
                } else {
                    self.engine.fail(CloseCause::Connection(error));
                }
            }
            LinkStatus::Broken(reason) => {
                tracing::info!(%reason, "connection to the relay lost");
                self.link = None;
                self.schedule_retry(ConnectError::Closed(reason), false);
            }
        }
    }

    /// After a failure: wait (backoff with jitter) and try again, on the next relay if
    /// `next_relay`, unless the budget is spent.
    fn schedule_retry(&mut self, error: ConnectError, next_relay: bool) {
        let now = tokio::time::Instant::now();
        let down_since = *self.down_since.get_or_insert(now);
        self.failures = self.failures.saturating_add(1);
        let spent = match self.engine.session {
            None => self.failures >= self.config.initial_attempts.max(1),
            Some(_) => now.saturating_duration_since(down_since) >= self.config.reconnect_budget,
        };
        if spent {
            self.engine.fail(CloseCause::Connection(error));
            return;
        }
        if next_relay {
            self.relay_cursor += 1;
        }
        let delay = self.config.backoff.delay(self.failures);
        self.retry_at = Some(now + delay);
        tracing::info!(attempt = self.failures, ?delay, %error, "will reconnect");
        self.engine.emit(TransportEvent::Connection(ConnectionState::Reconnecting {
            attempt: self.failures,
            delay,
            error,
        }));
    }

    async fn flush(&mut self) {
        if self.engine.outbox.bytes.is_empty() {
            return;
        }
        let Some(link) = &mut self.link else { return };
        let bytes = &self.engine.outbox.bytes;
        let write = async {
            link.stream.write_all(bytes).await?;
            link.stream.flush().await
        };
        match tokio::time::timeout(self.config.timing.write_timeout, write).await {
            Ok(Ok(())) => self.engine.outbox.bytes.clear(),
            // The outbox is kept: it goes out again after the session resumes (the peers'
            // replay windows drop whatever had already arrived).
            Ok(Err(error)) => self.on_link_status(LinkStatus::Broken(format!("write failed: {error}"))),
            Err(_) => self.on_link_status(LinkStatus::Broken("write timed out".into())),
        }
    }

    async fn finish(&mut self) {
        if let Some(mut link) = self.link.take() {
            let bytes = std::mem::take(&mut self.engine.outbox.bytes);
            let farewell = async {
                link.stream.write_all(&bytes).await?;
                link.stream.shutdown().await
            };
            let _ = tokio::time::timeout(Duration::from_secs(2), farewell).await;
        }
        let cause = self.engine.ended.take().unwrap_or(CloseCause::Session(SessionEnd::Local));
        tracing::info!(%cause, "session driver stopped");
        self.engine.emit(TransportEvent::Connection(ConnectionState::Closed { cause }));
    }

    // ---- commands --------------------------------------------------------------------------

    fn on_command(&mut self, command: Command) {
        let now = self.engine.clock.now();
        match command {
            Command::Send { to, content, payload, reply } => {
                let _ = reply.send(self.engine.send(to, content, &payload));
            }
            Command::SendBatch { to, content, payloads, reply } => {
                let mut result = BatchResult { sent: 0, error: None, unsent: Vec::new() };
                let mut payloads = payloads.into_iter();
                for payload in payloads.by_ref() {
                    if let Err(error) = self.engine.send(to, content, &payload) {
                        result.error = Some(error);
                        result.unsent.push(payload);
                        break;
                    }
                    result.sent += 1;
                }
                result.unsent.extend(payloads);
                let _ = reply.send(result);
            }
            Command::Request { to, capability, reply } => {
                let result = match &mut self.engine.session {
                    Some(session) => session.request(to, capability),
                    None => Err(SendError::NotEstablished),
                };
                let _ = reply.send(result);
            }
            Command::Consent { change, capability, reply } => {
                let result = match &mut self.engine.session {
                    Some(session) => match change {
                        ConsentChange::Grant => session.grant(capability),
                        ConsentChange::Deny => session.deny(capability),
                        ConsentChange::Revoke => session.revoke(capability),
                    },
                    None => Err(ConsentError::NotPending),
                };
                let _ = reply.send(result);
            }
            Command::RemoveMember { member, reply } => {
                let removed = self.engine.session.as_mut().is_some_and(|session| session.remove_member(now, member));
                let _ = reply.send(removed);
            }
            Command::Close => self.on_close(),
        }
    }

    fn on_close(&mut self) {
        let now = self.engine.clock.now();
        match &mut self.engine.session {
            // The engine queues its farewell and reports `Closed`; the drain that follows ends
            // the loop and `finish` writes the farewell out.
            Some(session) => session.close(now),
            None => self.engine.fail(CloseCause::Session(SessionEnd::Local)),
        }
    }
}

impl Engine {
    fn emit(&self, event: TransportEvent) {
        // The application may have dropped its receiver; the session goes on regardless.
        let _ = self.events.send(event);
    }

    fn fail(&mut self, cause: CloseCause) {
        self.ended.get_or_insert(cause);
    }

    /// The output half of the call contract: transmits, then events, then the timer.
    fn drain(&mut self) {
        let Some(session) = &mut self.session else { return };
        let now = self.clock.now();
        loop {
            match session.poll_transmit(now, &mut self.frame_buf) {
                Ok(Some(transmit)) => {
                    self.outbox.push(&self.frame_buf[..transmit.len]);
                }
                Ok(None) => break,
                Err(error) => {
                    // Unreachable: the buffer is MAX_FRAME_LEN. Leave the frame queued.
                    tracing::error!(%error, "frame buffer too small");
                    break;
                }
            }
        }
        while let Some(event) = session.poll_event() {
            if let Event::Closed { reason } = event {
                self.ended.get_or_insert(CloseCause::Session(reason));
            }
            let _ = self.events.send(TransportEvent::Session(event));
        }
        self.deadline = session.poll_timeout().map(|at| self.clock.to_tokio(at));
    }

    fn send(&mut self, to: Destination, content: ContentType, payload: &[u8]) -> Result<(), SendError> {
        let now = self.clock.now();
        let Some(session) = &mut self.session else { return Err(SendError::NotEstablished) };
        let mut result = session.send(now, to, content, payload, &mut self.frame_buf);
        if result == Err(SendError::TransmitPending) {
            // Control frames go first (keys before data sealed with them): drain, then retry.
            self.drain();
            let Some(session) = &mut self.session else { return Err(SendError::Closed) };
            result = session.send(now, to, content, payload, &mut self.frame_buf);
        }
        let len = result?;
        if self.outbox.push(&self.frame_buf[..len]) { Ok(()) } else { Err(SendError::QueueFull) }
    }

    /// Handles one whole frame from the relay: relay notices here, everything else to the engine.
    fn handle_frame(&mut self, frame: &mut [u8]) -> LinkStatus {
        let now = self.clock.now();
        let Ok(header) = RoutingHeader::parse(frame) else {
            return LinkStatus::Broken("invalid frame header".into());
        };
        if header.kind == FrameKind::Relay {
            let notice = frame.get(HEADER_LEN..).and_then(RelayRepr::parse);
            match notice {
                Some(RelayRepr::MemberGone { member }) => {
                    tracing::debug!(member = member.0, "relay reports a member gone");
                    if let Some(session) = &mut self.session {
                        session.handle_peer_disconnected(now, member);
                    }
                }
                Some(RelayRepr::GoAway) => return LinkStatus::GoAway,
                Some(RelayRepr::Refused { reason }) => return LinkStatus::Refused(reason),
                _ => tracing::debug!("unexpected relay frame ignored"),
            }
            return LinkStatus::Open;
        }
        let Some(session) = &mut self.session else { return LinkStatus::Open };
        match session.handle_frame(now, frame, &mut self.data_buf) {
            Ok(Some(delivery)) => {
                let payload = self.data_buf.get(..delivery.len).unwrap_or_default().to_vec();
                self.emit(TransportEvent::Data(Received { from: delivery.from, content: delivery.content, payload }));
            }
            Ok(None) => {}
            // The engine counts refusals in its stats; the peer is never told.
            Err(error) => tracing::trace!(%error, "frame refused by the engine"),
        }
        LinkStatus::Open
    }
}

/// Hands every whole frame buffered on `link` to the engine, draining after each.
fn feed(link: &mut Link, engine: &mut Engine) -> LinkStatus {
    loop {
        loop {
            let frame = match link.decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(error) => return LinkStatus::Broken(error.to_string()),
            };
            let status = engine.handle_frame(frame);
            engine.drain();
            if !matches!(status, LinkStatus::Open) {
                return status;
            }
            if engine.ended.is_some() {
                return LinkStatus::Open;
            }
        }
        if link.pending.is_empty() {
            return LinkStatus::Open;
        }
        let taken = link.decoder.push(&link.pending);
        if taken == 0 {
            return LinkStatus::Broken("stream framing stalled".into());
        }
        link.pending.drain(..taken);
    }
}

/// One connection attempt: race TLS over the relay's ports, present the ticket, await the
/// relay's answer.
async fn establish(
    config: Arc<TransportConfig>,
    relay: RelayAddress,
    session: u64,
    ticket: Arc<[u8]>,
    resume: Option<MemberId>,
) -> Result<Box<Admitted>, ConnectError> {
    let (mut stream, port) =
        connect_tls(&relay, Arc::clone(&config.tls), config.proxy.as_ref(), &config.timing).await?;
    tracing::debug!(relay = %relay.host, port, "TLS established");
    let mut admit = [0u8; HEADER_LEN + 4 + MAX_TICKET_LEN];
    let len = RelayRepr::Admit { resume, ticket: &ticket }
        .emit_frame(session, Destination::Member(MemberId::RELAY), &mut admit)
        .map_err(|_| ConnectError::Protocol(format!("the ticket is longer than {MAX_TICKET_LEN} bytes")))?;
    let write = async {
        stream.write_all(&admit[..len]).await?;
        stream.flush().await
    };
    match tokio::time::timeout(config.timing.write_timeout, write).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => return Err(ConnectError::Closed(error.to_string())),
        Err(_) => return Err(ConnectError::TimedOut),
    }
    let mut link = Link { stream, decoder: Box::new(StreamDecoder::new()), pending: Vec::new() };
    let member = tokio::time::timeout(config.timing.admit_timeout, await_welcome(&mut link))
        .await
        .map_err(|_| ConnectError::TimedOut)??;
    Ok(Box::new(Admitted { link, relay: relay.host, port, member }))
}

/// Reads until the relay's first frame, which must be `Welcome` or `Refused`.
async fn await_welcome(link: &mut Link) -> Result<MemberId, ConnectError> {
    let mut buf = vec![0u8; 4096];
    loop {
        if !link.pending.is_empty() {
            let taken = link.decoder.push(&link.pending);
            link.pending.drain(..taken);
        }
        match link.decoder.next_frame() {
            Ok(Some(frame)) => {
                let header = RoutingHeader::parse(frame).map_err(|e| ConnectError::Protocol(e.to_string()))?;
                if header.kind != FrameKind::Relay {
                    return Err(ConnectError::Protocol("the relay did not answer the admission".into()));
                }
                return match frame.get(HEADER_LEN..).and_then(RelayRepr::parse) {
                    Some(RelayRepr::Welcome { member }) => Ok(member),
                    Some(RelayRepr::Refused { reason }) => Err(ConnectError::Refused(reason)),
                    _ => Err(ConnectError::Protocol("unexpected answer to the admission".into())),
                };
            }
            Ok(None) => {}
            Err(error) => return Err(ConnectError::Protocol(error.to_string())),
        }
        let n = link.stream.read(&mut buf).await.map_err(|e| ConnectError::Closed(e.to_string()))?;
        if n == 0 {
            return Err(ConnectError::Closed("closed before admission".into()));
        }
        link.pending.extend_from_slice(&buf[..n]);
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn read_link(link: &mut Option<Link>, buf: &mut [u8]) -> std::io::Result<usize> {
    match link {
        Some(link) => link.stream.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn poll_attempt(attempt: &mut Option<AttemptFuture>) -> Result<Box<Admitted>, ConnectError> {
    match attempt {
        Some(future) => future.await,
        None => std::future::pending().await,
    }
}
