//! `lifeline-transport-embassy`: runs a Lifeline session over TLS 1.3 to a relay on an
//! embassy-net TCP/IP stack, with no heap.
//!
//! A thin driver of [`lifeline_core`], the bare-metal sibling of `lifeline-transport-tokio`: it
//! owns the socket, TLS and the clock (embassy-time), feeds the engine's `handle_*` calls and
//! sends what its `poll_*` calls return. Protocol decisions (who may join, what is encrypted,
//! what the customer allowed) are the engine's; what the appliance does with data and consent
//! prompts is the [`Application`]'s.
//!
//! # Behaviour (as the tokio transport)
//!
//! - Outbound only. Each relay is tried on its ports ([`DEFAULT_PORTS`]: 8200, 443, 80). The
//!   tokio transport races the ports in parallel; this one tries them **in order**, starting
//!   with the last port that worked, because a race needs a TLS buffer set (about 21 KiB) per
//!   port, which a microcontroller does not have.
//! - Admission: `Admit` with the ticket (and the member id to resume after a reconnect), then
//!   `Welcome` (or `Refused`). The engine is made when the relay has assigned the member id.
//! - Reconnect with exponential backoff and equal jitter (250 ms doubling to 15 s); after a
//!   `GoAway` at once (within 250 ms) on the next relay; a session that was established
//!   resumes with the same member id and the engine is told ([`Session::handle_reconnected`]).
//!   Give up after [`TransportConfig::initial_attempts`] failures before the first admission,
//!   or after [`TransportConfig::reconnect_budget`] without a connection later.
//! - A link silent for [`TransportConfig::link_silence`] (25 s: two and a half of the leader's
//!   keepalive intervals) is presumed dead and replaced, since a dropped connection may give no
//!   sign on the device's side (NATs, middleboxes; QEMU's user network).
//!
//! # The run loop
//!
//! One task. Each turn waits for exactly one input: the socket becoming readable, the engine's
//! timer, or the application's local input ([`Application::wait_local`]); hands it to the
//! engine; then drains the engine in the order its contract states: `poll_transmit` until
//! empty (into an outbox written to TLS), `poll_event` until empty (to the application), then
//! `poll_timeout` becomes the one timer. Time is embassy-time's `Instant` in microseconds.
//! Randomness is a [`Drbg`] seeded from the board's [`EntropySource`].
#![no_std]
#![forbid(unsafe_code)]
#![allow(async_fn_in_trait)] // single-threaded executor: no Send bound wanted

mod rng;
mod tls;
mod verify;

use core::cell::RefCell;

use embassy_futures::select::{Either3, select3};
use embassy_net::tcp::TcpSocket;
use embassy_net::{IpAddress, Stack};
use embassy_time::{Duration, Timer, with_timeout};
use embedded_tls::{TlsConfig, TlsConnection, TlsContext};
use heapless::Vec;
use lifeline_core::session::{Config, Event, SendError, Session, SessionEnd};
use lifeline_core::time::Instant;
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::relay::{MAX_TICKET_LEN, RefusalReason, RelayRepr};
use lifeline_core::wire::{
    Destination, FrameKind, HEADER_LEN, MemberId, RoutingHeader, StreamDecoder, protected_frame_len,
};

pub use rng::Drbg;
pub use tls::{ALPN, RELAY_RECORD_LIMIT, TLS_READ_BUFFER, TLS_WRITE_BUFFER};
pub use verify::{CA_KEY_LEN, CaKey};

/// The relay-certificate reader (src/verify.rs) for the fuzz target `relay_certificate`
/// (`fuzz/`): only with the `fuzzing` feature, which the firmware does not enable.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    use crate::verify::{CA_KEY_LEN, CaKey};

    /// The checks (1) and (2) on a relay certificate: its public key if they pass.
    pub fn check_relay_certificate(der: &[u8], ca_keys: &[CaKey], host: &str) -> Option<[u8; CA_KEY_LEN]> {
        crate::verify::check_relay_certificate(der, ca_keys, host)
    }

    /// Whether `signature` (DER `ECDSA-Sig-Value`) is `key`'s ECDSA P-256 / SHA-256 over `message`.
    pub fn verify_p256(key: &[u8; CA_KEY_LEN], message: &[u8], signature: &[u8]) -> bool {
        crate::verify::verify_p256(key, message, signature)
    }

    /// The parse alone, **no signature check** (a fuzzer cannot forge one, so this is how it
    /// reaches the name matching): the subject's key bytes and whether the names contain `host`.
    pub fn read_certificate(der: &[u8], host: &str) -> Option<([u8; CA_KEY_LEN], bool)> {
        crate::verify::read_certificate(der, host)
    }
}

/// The relay ports tried, in this order (the seed design's three, so one gets through).
pub const DEFAULT_PORTS: [u16; 3] = [8200, 443, 80];
/// Members per session this transport's engine holds (as the tokio transport).
pub const MAX_MEMBERS: usize = 8;
/// Bytes of TCP receive and send buffer.
pub const TCP_BUFFER: usize = 2048;
/// Bytes of frames waiting for TLS (sealed by the engine, not yet written).
pub const OUTBOX: usize = 4096;
/// The largest payload this endpoint accepts in one frame: its engine announces it as its
/// receive limit (docs/PROTOCOL.md 11.1) and the other members send nothing larger.
pub const RECEIVE_LIMIT: usize = 2048;
/// The stream decoder's capacity: one whole frame of [`RECEIVE_LIMIT`]; longer frames (from a
/// member that has not seen the announcement yet) are skipped, not buffered.
pub const DECODER: usize = protected_frame_len(RECEIVE_LIMIT);

/// The engine as this transport runs it.
pub type EngineSession = Session<Drbg, MAX_MEMBERS>;

/// The board's source of unpredictable bytes. A real board reads its TRNG (and should run the
/// vendor's health tests); the emulated board takes a seed provisioned over its console.
pub trait EntropySource {
    /// Fills `seed` with unpredictable bytes.
    fn fill(&mut self, seed: &mut [u8; 32]);
}

/// A relay to reach.
#[derive(Clone, Copy, Debug)]
pub struct Relay<'a> {
    /// Its address (no DNS on this transport: the board is given addresses).
    pub address: IpAddress,
    /// Ports to try, in order.
    pub ports: &'a [u16],
    /// The name its certificate must carry (and the TLS SNI).
    pub tls_name: &'a str,
}

/// Exponential backoff with equal jitter between reconnection attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Wait before the first retry (before jitter).
    pub initial: Duration,
    /// Longest wait.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { initial: Duration::from_millis(250), max: Duration::from_secs(15) }
    }
}

impl Backoff {
    /// The ceiling for attempt `attempt` (1-based), before jitter.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u64.checked_shl(attempt.saturating_sub(1).min(20)).unwrap_or(u64::MAX);
        let ticks = self.initial.as_ticks().saturating_mul(factor).min(self.max.as_ticks());
        Duration::from_ticks(ticks)
    }

    /// The wait before attempt `attempt`: between half the ceiling and the ceiling.
    pub fn delay(&self, attempt: u32, rng: &mut Drbg) -> Duration {
        let ceiling = self.ceiling(attempt).as_ticks();
        let half = ceiling / 2;
        Duration::from_ticks(half + rng.below(ceiling - half + 1))
    }
}

/// How to reach the relays, and how hard to try.
#[derive(Clone, Copy, Debug)]
pub struct TransportConfig<'a> {
    /// Relays in order of preference; a `GoAway` or a failed attempt moves to the next.
    pub relays: &'a [Relay<'a>],
    /// The fleet CA key(s) the relays' certificates must be signed with (more than one during
    /// a CA rotation).
    pub ca_keys: &'a [CaKey],
    /// Waits between attempts.
    pub backoff: Backoff,
    /// Limit for TCP connect + TLS handshake, per port.
    pub connect_timeout: Duration,
    /// Limit for the relay's answer to `Admit`.
    pub admit_timeout: Duration,
    /// Limit for writing to the relay; a stalled connection counts as lost.
    pub write_timeout: Duration,
    /// Failed attempts (each over all ports of a relay) before the first admission gives up.
    pub initial_attempts: u32,
    /// How long an admitted session keeps trying to come back.
    pub reconnect_budget: Duration,
    /// A link that delivers nothing for this long is presumed dead and replaced. Members hear
    /// the leader's keepalive at least every 10 s, so a healthy link is never this quiet; a dead
    /// one may give no sign at all (a NAT or middlebox that dropped the connection, or QEMU's
    /// user network, which does not pass on the far end's close).
    pub link_silence: Duration,
}

impl<'a> TransportConfig<'a> {
    /// The defaults of the tokio transport for these relays and CA keys.
    pub fn new(relays: &'a [Relay<'a>], ca_keys: &'a [CaKey]) -> Self {
        TransportConfig {
            relays,
            ca_keys,
            backoff: Backoff::default(),
            connect_timeout: Duration::from_secs(10),
            admit_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(10),
            initial_attempts: 5,
            reconnect_budget: Duration::from_secs(120),
            link_silence: Duration::from_secs(25),
        }
    }
}

/// The session to run: engine configuration (`local_id` is replaced by the relay's and
/// `receive_limit` by [`RECEIVE_LIMIT`], which the buffers are sized for), the PIN the device
/// owner was given, and the admission ticket (a bearer token: never logged).
pub struct SessionSpec<'a> {
    /// Engine configuration.
    pub config: Config,
    /// The PIN, as typed.
    pub pin: &'a str,
    /// The admission ticket.
    pub ticket: &'a [u8],
}

/// The connection to the relay changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Trying a relay's port.
    Connecting {
        /// The port.
        port: u16,
    },
    /// Admitted by the relay.
    Connected {
        /// The port that worked.
        port: u16,
        /// The member id the relay assigned.
        member: MemberId,
        /// Whether this resumed the session after a reconnect.
        resumed: bool,
    },
    /// Lost or not yet reached: the next attempt after `delay`.
    Reconnecting {
        /// Failed attempts so far.
        attempt: u32,
        /// The wait before the next.
        delay: Duration,
    },
}

/// Why [`run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseCause {
    /// The session ended (see [`SessionEnd`]).
    Session(SessionEnd),
    /// The relay refused the ticket or the resumption.
    Refused(RefusalReason),
    /// No relay could be reached within the attempts or the reconnect budget.
    Unreachable,
    /// The relay broke the protocol (an id that does not fit, a bad admission answer).
    Protocol,
}

impl core::fmt::Display for CloseCause {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            CloseCause::Session(end) => write!(f, "{end}"),
            CloseCause::Refused(reason) => write!(f, "refused by the relay ({reason:?})"),
            CloseCause::Unreachable => f.write_str("no relay reachable"),
            CloseCause::Protocol => f.write_str("relay protocol error"),
        }
    }
}

/// What the appliance does with the session: the transport calls these with an [`Io`] that
/// reaches the engine (consent decisions, sending data).
pub trait Application {
    /// The connection changed.
    fn on_connection(&mut self, state: ConnectionState);
    /// An engine event ([`Event::ConsentRequested`] is where the device owner is asked).
    fn on_event(&mut self, io: &mut Io<'_>, event: Event);
    /// Application data from a member (already checked against consent by the engine).
    fn on_data(&mut self, io: &mut Io<'_>, from: MemberId, content: ContentType, payload: &[u8]);
    /// Resolves when local input waits (a console line, a button). Must be cancel-safe: the run
    /// loop drops it when another input comes first.
    async fn wait_local(&mut self);
    /// Handles the local input [`wait_local`](Self::wait_local) announced.
    fn on_local(&mut self, io: &mut Io<'_>);
    /// The outbox was written to the relay and is empty: more bulk data (file chunks) may be
    /// queued now. Called after every turn until it queues nothing.
    fn on_writable(&mut self, _io: &mut Io<'_>) {}
}

/// The engine and the outbox, lent to the [`Application`] for one call.
pub struct Io<'a> {
    session: &'a mut EngineSession,
    outbox: &'a mut Outbox,
    now: Instant,
}

impl Io<'_> {
    /// The engine (consent: `grant`, `deny`, `revoke`; `close`; state queries).
    pub fn session(&mut self) -> &mut EngineSession {
        self.session
    }

    /// The engine's clock reading for this call.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Seals `payload` for `destination` and queues it for the relay.
    pub fn send(&mut self, destination: Destination, content: ContentType, payload: &[u8]) -> Result<(), SendError> {
        let mut result = self.session.send(self.now, destination, content, payload, self.outbox.spare());
        if result == Err(SendError::TransmitPending) {
            // Control frames go first (keys before data sealed with them).
            drain_transmit(self.session, self.outbox, self.now);
            result = self.session.send(self.now, destination, content, payload, self.outbox.spare());
        }
        let len = result?;
        self.outbox.commit(len);
        Ok(())
    }

    /// Room left in the outbox for one sealed frame of payload (for sizing file chunks).
    pub fn room(&self) -> usize {
        self.outbox.room().saturating_sub(HEADER_LEN + 34 + 2)
    }
}

/// Frames sealed and waiting for TLS.
pub struct Outbox {
    bytes: [u8; OUTBOX],
    len: usize,
}

impl Outbox {
    const fn new() -> Outbox {
        Outbox { bytes: [0; OUTBOX], len: 0 }
    }

    fn spare(&mut self) -> &mut [u8] {
        &mut self.bytes[self.len..]
    }

    fn commit(&mut self, len: usize) {
        self.len = (self.len + len).min(OUTBOX);
    }

    fn room(&self) -> usize {
        OUTBOX - self.len
    }

    fn pending(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    fn clear(&mut self) {
        self.len = 0;
    }
}

/// Every buffer the transport needs, in one place so that the board can put it in a static and
/// the linker's map shows it (about 19 KiB with the defaults).
pub struct Buffers {
    tcp_rx: [u8; TCP_BUFFER],
    tcp_tx: [u8; TCP_BUFFER],
    tls_read: [u8; TLS_READ_BUFFER],
    tls_write: [u8; TLS_WRITE_BUFFER],
    decoder: StreamDecoder<DECODER>,
    data: [u8; RECEIVE_LIMIT],
    outbox: Outbox,
}

impl Buffers {
    /// Zeroed buffers (put them in a `StaticCell`).
    pub const fn new() -> Buffers {
        Buffers {
            tcp_rx: [0; TCP_BUFFER],
            tcp_tx: [0; TCP_BUFFER],
            tls_read: [0; TLS_READ_BUFFER],
            tls_write: [0; TLS_WRITE_BUFFER],
            decoder: StreamDecoder::new(),
            data: [0; RECEIVE_LIMIT],
            outbox: Outbox::new(),
        }
    }
}

impl Default for Buffers {
    fn default() -> Self {
        Buffers::new()
    }
}

/// Runs one session until it ends: connects, is admitted, joins, runs the engine, reconnects
/// and resumes when the connection is lost. Returns why it stopped.
///
/// `rng` seeds the engine's generator (forked) and feeds TLS and jitter.
pub async fn run<A: Application>(
    stack: Stack<'_>,
    config: &TransportConfig<'_>,
    spec: &SessionSpec<'_>,
    buffers: &mut Buffers,
    rng: &mut Drbg,
    app: &mut A,
) -> CloseCause {
    if spec.ticket.len() > MAX_TICKET_LEN || config.relays.is_empty() {
        return CloseCause::Protocol;
    }
    // The engine is built once here, where the stack is shallow, and reset in place at
    // admission (`start_engine`): building a session takes a 7.7 KiB temporary or two.
    let mut slot: Option<EngineSession> = None;
    let engine = closed_engine(&mut slot, spec, rng);
    // Admitted once and joining or joined: later connections resume this engine.
    let mut joined = false;
    let mut relay_cursor = 0usize;
    let mut preferred_port: Option<u16> = None;
    let mut failures = 0u32;
    let mut down_since: Option<embassy_time::Instant> = None;
    loop {
        let relay = config.relays[relay_cursor % config.relays.len()];
        let mut outcome = LinkEnd::ConnectFailed;
        // The port that worked last time first, then the others in order.
        let ports = ordered_ports(relay.ports, preferred_port);
        for &port in &ports {
            app.on_connection(ConnectionState::Connecting { port });
            outcome = connection(stack, config, spec, buffers, rng, app, engine, &mut joined, relay, port).await;
            match outcome {
                LinkEnd::ConnectFailed => continue,
                _ => {
                    preferred_port = Some(port);
                    break;
                }
            }
        }
        match outcome {
            LinkEnd::Over(cause) => return cause,
            LinkEnd::Lost { was_admitted: true } => {
                failures = 0;
                down_since = Some(embassy_time::Instant::now());
            }
            LinkEnd::GoAway => {
                relay_cursor += 1;
                down_since.get_or_insert_with(embassy_time::Instant::now);
                failures = failures.saturating_add(1);
                let delay = Duration::from_millis(rng.below(250));
                app.on_connection(ConnectionState::Reconnecting { attempt: failures, delay });
                Timer::after(delay).await;
                continue;
            }
            LinkEnd::Lost { was_admitted: false } | LinkEnd::ConnectFailed => {}
        }
        let now = embassy_time::Instant::now();
        let since = *down_since.get_or_insert(now);
        failures = failures.saturating_add(1);
        let spent = match joined {
            false => failures >= config.initial_attempts.max(1),
            true => now.saturating_duration_since(since) >= config.reconnect_budget,
        };
        if spent {
            return CloseCause::Unreachable;
        }
        if matches!(outcome, LinkEnd::ConnectFailed) {
            relay_cursor += 1;
        }
        let delay = config.backoff.delay(failures, rng);
        log::info!("relay: will reconnect, attempt {failures}, in {} ms", delay.as_millis());
        app.on_connection(ConnectionState::Reconnecting { attempt: failures, delay });
        // The engine's clock keeps running while the link is down (handshake and idle timers).
        wait_with_engine(joined.then_some(&mut *engine), delay).await;
        if let Some(end) = engine.end().filter(|_| joined) {
            return CloseCause::Session(end);
        }
    }
}

/// How one connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LinkEnd {
    /// TCP or TLS did not come up on this port.
    ConnectFailed,
    /// The connection broke (after or before admission).
    Lost { was_admitted: bool },
    /// The relay is going away: move on at once.
    GoAway,
    /// Nothing more to do.
    Over(CloseCause),
}

fn ordered_ports(ports: &[u16], preferred: Option<u16>) -> Vec<u16, 8> {
    let mut ordered = Vec::new();
    if let Some(port) = preferred.filter(|port| ports.contains(port)) {
        let _ = ordered.push(port);
    }
    for &port in ports {
        if Some(port) != preferred {
            let _ = ordered.push(port);
        }
    }
    ordered
}

fn engine_now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

async fn wait_with_engine(mut session: Option<&mut EngineSession>, delay: Duration) {
    let until = embassy_time::Instant::now() + delay;
    loop {
        let deadline = session.as_ref().and_then(|s| s.poll_timeout());
        let deadline = deadline.map(|at| embassy_time::Instant::from_micros(at.as_micros()));
        match deadline {
            Some(at) if at < until => {
                Timer::at(at).await;
                if let Some(session) = session.as_mut() {
                    session.handle_timeout(engine_now());
                    // Nothing can be sent while down: the engine keeps what it has queued.
                    while session.poll_event().is_some() {}
                }
            }
            _ => {
                Timer::at(until).await;
                return;
            }
        }
    }
}

/// One connection: TCP, TLS, admission, then the run loop until it breaks or the session ends.
#[allow(clippy::too_many_arguments)]
async fn connection<A: Application>(
    stack: Stack<'_>,
    config: &TransportConfig<'_>,
    spec: &SessionSpec<'_>,
    buffers: &mut Buffers,
    rng: &mut Drbg,
    app: &mut A,
    session: &mut EngineSession,
    joined: &mut bool,
    relay: Relay<'_>,
    port: u16,
) -> LinkEnd {
    let Buffers { tcp_rx, tcp_tx, tls_read, tls_write, decoder, data, outbox } = buffers;
    let mut socket = TcpSocket::new(stack, tcp_rx, tcp_tx);
    {
        socket.set_timeout(Some(Duration::from_secs(90)));
        match with_timeout(config.connect_timeout, socket.connect((relay.address, port))).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => {
                log::info!("relay: TCP connect to port {port} failed: {error:?}");
                return LinkEnd::ConnectFailed;
            }
            Err(_) => {
                log::info!("relay: TCP connect to port {port} timed out");
                socket.abort();
                return LinkEnd::ConnectFailed;
            }
        }
    }
    let socket = RefCell::new(socket);
    let shared = tls::SharedSocket { socket: &socket };
    let mut tls: TlsConnection<'_, _, embedded_tls::Aes128GcmSha256> = TlsConnection::new(shared, tls_read, tls_write);
    let alpn = [ALPN];
    let tls_config = TlsConfig::new().with_server_name(relay.tls_name).with_alpn(&alpn);
    let provider = tls::Provider::new(rng, config.ca_keys);
    match with_timeout(config.connect_timeout, tls.open(TlsContext::new(&tls_config, provider))).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            log::warn!("relay: TLS handshake on port {port} failed: {error:?}");
            socket.borrow_mut().abort();
            return LinkEnd::ConnectFailed;
        }
        Err(_) => {
            log::warn!("relay: TLS handshake on port {port} timed out");
            socket.borrow_mut().abort();
            return LinkEnd::ConnectFailed;
        }
    }
    log::info!("relay: TLS 1.3 up on port {port}");

    // ---- admission ----
    *decoder = StreamDecoder::new();
    outbox.clear();
    let resume = joined.then(|| session.local_id());
    let admit = RelayRepr::Admit { resume, ticket: spec.ticket }.emit_frame(
        spec.config.session,
        Destination::Member(MemberId::RELAY),
        outbox.spare(),
    );
    let Ok(len) = admit else { return LinkEnd::Over(CloseCause::Protocol) };
    outbox.commit(len);
    if !write_outbox(&mut tls, outbox, config.write_timeout).await {
        return LinkEnd::Lost { was_admitted: false };
    }
    let member = match with_timeout(config.admit_timeout, await_welcome(&mut tls, decoder)).await {
        Ok(Ok(member)) => member,
        Ok(Err(Admission::Refused(reason))) => {
            log::warn!("relay: refused ({reason:?})");
            return match reason {
                RefusalReason::ShuttingDown => LinkEnd::GoAway,
                RefusalReason::Full | RefusalReason::Other => LinkEnd::Lost { was_admitted: false },
                _ => LinkEnd::Over(CloseCause::Refused(reason)),
            };
        }
        Ok(Err(Admission::Broken)) | Err(_) => return LinkEnd::Lost { was_admitted: false },
        Ok(Err(Admission::Protocol)) => return LinkEnd::Over(CloseCause::Protocol),
    };
    let now = engine_now();
    let resumed = *joined;
    if resumed {
        if session.local_id() != member {
            return LinkEnd::Over(CloseCause::Protocol);
        }
        session.handle_reconnected(now);
    } else {
        if member == MemberId::LEADER {
            return LinkEnd::Over(CloseCause::Protocol);
        }
        start_engine(session, spec, member, rng, now);
        *joined = true;
    }
    log::info!("relay: admitted as member {} (resumed: {resumed})", member.0);
    app.on_connection(ConnectionState::Connected { port, member, resumed });

    // ---- the run loop ----
    let mut last_heard = embassy_time::Instant::now();
    loop {
        // Frames already buffered (right behind the Welcome, or a record's worth).
        if let Some(end) = feed_decoder(session, decoder, data, outbox, app) {
            return end;
        }
        drain(session, outbox, app);
        // Write until the engine has nothing more queued (the outbox may not have held it all).
        loop {
            if !write_outbox(&mut tls, outbox, config.write_timeout).await {
                log::info!("relay: connection lost (write failed or stalled)");
                return LinkEnd::Lost { was_admitted: true };
            }
            drain_transmit(session, outbox, engine_now());
            if outbox.len == 0 {
                let mut io = Io { session, outbox, now: engine_now() };
                app.on_writable(&mut io);
                if outbox.len == 0 {
                    break;
                }
            }
        }
        if let Some(end) = session.end() {
            log::info!("session: over ({end})");
            let _ = socket.try_borrow_mut().map(|mut s| s.close());
            return LinkEnd::Over(CloseCause::Session(end));
        }
        let deadline = session.poll_timeout().map(|at| embassy_time::Instant::from_micros(at.as_micros()));
        let silence_limit = last_heard + config.link_silence;
        let wake_at = deadline.map_or(silence_limit, |at| at.min(silence_limit));
        // The borrow ends with the wait, before TLS touches the socket (see `SharedSocket`).
        #[allow(clippy::await_holding_refcell_ref)]
        let readable = async {
            match socket.try_borrow() {
                Ok(socket) => socket.wait_read_ready().await,
                Err(_) => core::future::pending().await,
            }
        };
        let timer = Timer::at(wake_at);
        match select3(readable, timer, app.wait_local()).await {
            Either3::First(()) => {
                // A whole record is read (bounded: a relay that stalls mid-record is lost).
                let record = with_timeout(Duration::from_secs(30), tls.read_buffered()).await;
                let mut record = match record {
                    Ok(Ok(record)) => {
                        last_heard = embassy_time::Instant::now();
                        record
                    }
                    Ok(Err(error)) => {
                        log::info!("relay: connection lost ({error:?})");
                        return LinkEnd::Lost { was_admitted: true };
                    }
                    Err(_) => {
                        log::info!("relay: connection lost (no whole record within 30 s)");
                        return LinkEnd::Lost { was_admitted: true };
                    }
                };
                while !record.is_empty() {
                    let taken = decoder.push(record.peek_all());
                    record.pop(taken);
                    if let Some(end) = feed_decoder(session, decoder, data, outbox, app) {
                        return end;
                    }
                    if taken == 0 {
                        log::warn!("relay: stream framing stalled");
                        return LinkEnd::Lost { was_admitted: true };
                    }
                }
            }
            Either3::Second(()) => {
                if embassy_time::Instant::now() >= silence_limit {
                    log::info!("relay: connection lost (silent for {} s)", config.link_silence.as_secs());
                    return LinkEnd::Lost { was_admitted: true };
                }
                if deadline.is_some_and(|at| embassy_time::Instant::now() >= at) {
                    session.handle_timeout(engine_now());
                }
            }
            Either3::Third(()) => {
                let mut io = Io { session, outbox, now: engine_now() };
                app.on_local(&mut io);
            }
        }
    }
}

enum Admission {
    Refused(RefusalReason),
    Broken,
    Protocol,
}

async fn await_welcome<S: embedded_io_async::Read + embedded_io_async::Write>(
    tls: &mut TlsConnection<'_, S, embedded_tls::Aes128GcmSha256>,
    decoder: &mut StreamDecoder<DECODER>,
) -> Result<MemberId, Admission> {
    loop {
        match decoder.next_frame() {
            Ok(Some(frame)) => {
                let Ok(header) = RoutingHeader::parse(frame) else { return Err(Admission::Protocol) };
                if header.kind != FrameKind::Relay {
                    return Err(Admission::Protocol);
                }
                return match frame.get(HEADER_LEN..).and_then(RelayRepr::parse) {
                    Some(RelayRepr::Welcome { member }) => Ok(member),
                    Some(RelayRepr::Refused { reason }) => Err(Admission::Refused(reason)),
                    _ => Err(Admission::Protocol),
                };
            }
            Ok(None) => {}
            Err(_) => return Err(Admission::Protocol),
        }
        let Ok(mut record) = tls.read_buffered().await else { return Err(Admission::Broken) };
        // Only what the decoder takes now; a Welcome is small, and frames behind it stay in
        // the decoder for the run loop. A record that does not fit is a protocol error.
        let taken = decoder.push(record.peek_all());
        record.pop(taken);
        if !record.is_empty() {
            return Err(Admission::Protocol);
        }
    }
}

/// The engine `run` keeps for the whole session, built closed in `slot`. Not inlined, so that
/// any `Session` temporary LLVM makes (7.7 KiB; elsewhere it made two) stays out of the frames
/// that live under the connection. Here it makes none: 1 216 B (`-Z emit-stack-sizes`;
/// BENCHMARKS.md "Footprint").
#[inline(never)]
fn closed_engine<'a>(
    slot: &'a mut Option<EngineSession>,
    spec: &SessionSpec<'_>,
    rng: &mut Drbg,
) -> &'a mut EngineSession {
    slot.insert(Session::closed(spec.config.clone(), rng.fork(), engine_now()))
}

/// Makes `engine` a fresh member joining as `member`, in place: building a new `Session` here,
/// under the connection, took a 15.7 KiB frame that set the firmware's stack peak.
fn start_engine(engine: &mut EngineSession, spec: &SessionSpec<'_>, member: MemberId, rng: &mut Drbg, now: Instant) {
    let mut engine_config = spec.config.clone();
    engine_config.local_id = member;
    // The buffers hold this much: the engine announces it, and members honour it.
    engine_config.receive_limit = RECEIVE_LIMIT;
    engine.reset_member(engine_config, spec.pin, rng.fork(), now);
}

/// Hands every whole frame in the decoder to the engine (relay notices to the transport),
/// draining after each.
fn feed_decoder<A: Application>(
    session: &mut EngineSession,
    decoder: &mut StreamDecoder<DECODER>,
    data: &mut [u8; RECEIVE_LIMIT],
    outbox: &mut Outbox,
    app: &mut A,
) -> Option<LinkEnd> {
    loop {
        let frame = match decoder.next_frame() {
            Ok(Some(frame)) => frame,
            Ok(None) => return None,
            Err(_) => {
                log::warn!("relay: undecodable stream");
                return Some(LinkEnd::Lost { was_admitted: true });
            }
        };
        let now = engine_now();
        let Ok(header) = RoutingHeader::parse(frame) else { return Some(LinkEnd::Lost { was_admitted: true }) };
        if header.kind == FrameKind::Relay {
            match frame.get(HEADER_LEN..).and_then(RelayRepr::parse) {
                Some(RelayRepr::MemberGone { member }) => session.handle_peer_disconnected(now, member),
                Some(RelayRepr::GoAway) => return Some(LinkEnd::GoAway),
                Some(RelayRepr::Refused { reason }) => {
                    return Some(LinkEnd::Over(CloseCause::Refused(reason)));
                }
                _ => log::debug!("relay: unexpected relay frame ignored"),
            }
            continue;
        }
        match session.handle_frame(now, frame, data) {
            Ok(Some(delivery)) => {
                let payload = data.get(..delivery.len).unwrap_or_default();
                let mut io = Io { session, outbox, now };
                app.on_data(&mut io, delivery.from, delivery.content, payload);
            }
            Ok(None) => {}
            // Counted in the engine's stats; the peer is never told.
            Err(error) => log::debug!("session: frame refused ({error})"),
        }
        drain(session, outbox, app);
    }
}

/// The engine's outputs after an input: frames into the outbox, events to the application.
fn drain<A: Application>(session: &mut EngineSession, outbox: &mut Outbox, app: &mut A) {
    let now = engine_now();
    drain_transmit(session, outbox, now);
    while let Some(event) = session.poll_event() {
        let mut io = Io { session, outbox, now };
        app.on_event(&mut io, event);
        drain_transmit(io.session, io.outbox, now);
    }
}

fn drain_transmit(session: &mut EngineSession, outbox: &mut Outbox, now: Instant) {
    // A frame that does not fit stays queued in the engine until the outbox is written.
    while let Ok(Some(transmit)) = session.poll_transmit(now, outbox.spare()) {
        outbox.commit(transmit.len);
    }
}

/// Writes the outbox to TLS and flushes; false if the connection broke or stalled.
async fn write_outbox<S: embedded_io_async::Read + embedded_io_async::Write>(
    tls: &mut TlsConnection<'_, S, embedded_tls::Aes128GcmSha256>,
    outbox: &mut Outbox,
    limit: Duration,
) -> bool {
    if outbox.len == 0 {
        return true;
    }
    let write = async {
        let mut rest = outbox.pending();
        while !rest.is_empty() {
            let written = tls.write(rest).await?;
            if written == 0 {
                tls.flush().await?;
            }
            rest = rest.get(written..).unwrap_or_default();
        }
        tls.flush().await
    };
    let ok = matches!(with_timeout(limit, write).await, Ok(Ok(())));
    outbox.clear();
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    // ---- backoff ----

    #[test]
    fn backoff_grows_then_caps_with_bounded_jitter() {
        let backoff = Backoff { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(2), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(4), Duration::from_millis(800));
        assert_eq!(backoff.ceiling(5), Duration::from_secs(1));
        assert_eq!(backoff.ceiling(u32::MAX), Duration::from_secs(1));
        let mut rng = Drbg::from_seed([7; 32]);
        for attempt in 1..12 {
            let delay = backoff.delay(attempt, &mut rng);
            let ceiling = backoff.ceiling(attempt);
            assert!(delay >= ceiling / 2 && delay <= ceiling, "{delay:?} for attempt {attempt}");
        }
    }

    #[test]
    fn default_backoff_matches_the_tokio_transport() {
        let backoff = Backoff::default();
        assert_eq!(backoff.initial, Duration::from_millis(250));
        assert_eq!(backoff.max, Duration::from_secs(15));
    }

    // ---- ports ----

    #[test]
    fn ports_are_tried_in_order_with_the_last_good_one_first() {
        assert_eq!(ordered_ports(&DEFAULT_PORTS, None).as_slice(), &[8200, 443, 80]);
        assert_eq!(ordered_ports(&DEFAULT_PORTS, Some(443)).as_slice(), &[443, 8200, 80]);
        // A preferred port that is not in the list changes nothing.
        assert_eq!(ordered_ports(&DEFAULT_PORTS, Some(9999)).as_slice(), &[8200, 443, 80]);
        assert!(ordered_ports(&[], Some(80)).is_empty());
    }

    // ---- outbox and randomness ----

    #[test]
    fn the_outbox_never_overflows() {
        let mut outbox = Outbox::new();
        assert_eq!(outbox.room(), OUTBOX);
        outbox.spare()[..10].fill(1);
        outbox.commit(10);
        assert_eq!(outbox.pending(), &[1; 10]);
        outbox.commit(OUTBOX * 2);
        assert_eq!(outbox.room(), 0);
        assert!(outbox.spare().is_empty());
        outbox.clear();
        assert_eq!(outbox.room(), OUTBOX);
    }

    #[test]
    fn forked_generators_are_independent_and_below_is_bounded() {
        let mut parent = Drbg::from_seed([1; 32]);
        let mut a = parent.fork();
        let mut b = parent.fork();
        let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
        rand_core::Rng::fill_bytes(&mut a, &mut x);
        rand_core::Rng::fill_bytes(&mut b, &mut y);
        assert_ne!(x, y);
        for bound in [1, 2, 7, 250, 1 << 40] {
            for _ in 0..100 {
                assert!(parent.below(bound) < bound.max(1));
            }
        }
        assert_eq!(parent.below(0), 0);
    }
}
