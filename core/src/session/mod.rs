//! The session endpoint: one state machine per endpoint (leader or member).
//!
//! See [`Session`] for the call contract.

mod config;
mod event;
mod pin;

pub use config::{Config, DEFAULT_REKEY_AFTER_FRAMES, MAX_EPOCH_GRACE, MAX_JOIN_FAILURES, Timeouts};
pub use event::{Delivery, Event, FrameError, SendError, SessionEnd, Stats, Transmit};
pub use pin::{PIN_DIGITS, Pin};

use core::fmt::Write as _;

use heapless::{Deque, String, Vec};
use rand_core::CryptoRng;
use zeroize::Zeroize;

use crate::compress;
use crate::consent::{Capability, ConsentError, ConsentGuard, RequestOutcome};
use crate::crypto::group::{FLAG_DEPARTURE, KEY_UPDATE_LEN, KeyWrapKey, check_code, generate_epoch};
use crate::crypto::packet::{EpochKeys, PLAINTEXT_OFFSET, SEQUENCE_HARD_LIMIT, frame_epoch};
use crate::crypto::primitives::TAG_LEN;
use crate::crypto::replay::ReplayWindow;
use crate::crypto::srp::{
    self, ClientSession, Group, MAX_PUBLIC_LEN, PRIVATE_LEN, PROOF_LEN, SALT_LEN, ServerHandshake, Verifier,
};
use crate::time::{Duration, Instant};
use crate::wire::control::{CloseReason, ContentType, ControlRepr, FLAG_COMPRESSED, MAX_ROSTER_LEN};
use crate::wire::handshake::{HandshakeRepr, RejectReason, Role};
use crate::wire::{
    Destination, FrameKind, HEADER_LEN, InsufficientSize, MAX_PAYLOAD_LEN, MemberId, RoutingHeader, emit_frame,
};

/// Events the engine holds for the application before it starts dropping them (and counting).
pub const EVENT_QUEUE_LEN: usize = 32;
/// Capability requests a provider may have queued for sending.
pub const REQUEST_QUEUE_LEN: usize = 8;
const REJECT_QUEUE_LEN: usize = 4;
/// A joining member repeats its hello this often until the leader's challenge arrives (or the
/// handshake times out): a hello that reached the relay before the leader did was dropped there.
/// The leader answers a repeated hello with the same challenge.
pub const HELLO_RETRY: Duration = Duration::from_secs(2);
/// A sealed `Close{Removed}`: header, epoch, sequence, type, flags, reason, tag.
const REMOVAL_NOTICE_LEN: usize = PLAINTEXT_OFFSET + 3 + TAG_LEN;
const REMOVAL_NOTICE_QUEUE_LEN: usize = 4;
/// Smallest payload worth compressing.
const COMPRESS_MIN_LEN: usize = 64;
/// Largest control frame this engine writes (an announce or a full roster).
const MAX_CONTROL_PAYLOAD: usize = 2 + MAX_ROSTER_LEN;

/// One endpoint of a Lifeline session: the leader (provider that created the session and holds
/// the PIN verifier) or a member (a customer, an appliance, another provider) that joins with
/// the PIN.
///
/// The engine does no I/O and reads no clock: it is driven entirely by calls.
///
/// # Call contract
///
/// Inputs, each with the current time:
/// - [`handle_frame`](Self::handle_frame): one whole frame received (from a [`StreamDecoder`]).
/// - [`handle_timeout`](Self::handle_timeout): the deadline from `poll_timeout` has passed.
/// - [`handle_peer_disconnected`](Self::handle_peer_disconnected): the relay reports a member gone.
/// - Local decisions and data: [`send`](Self::send), [`request`](Self::request),
///   [`grant`](Self::grant), [`deny`](Self::deny), [`revoke`](Self::revoke),
///   [`take_back_control`](Self::take_back_control), [`close`](Self::close),
///   [`remove_member`](Self::remove_member).
///
/// Outputs, after **every** input, drained in this order until each is empty:
/// 1. [`poll_transmit`](Self::poll_transmit) until `Ok(None)`: frames to send to the relay, in order;
/// 2. [`poll_event`](Self::poll_event) until `None`;
/// 3. [`poll_timeout`](Self::poll_timeout): arm one timer for that instant (replacing the last one);
///    when it fires, call `handle_timeout`.
///
/// `send` writes its frame straight into the caller's buffer and refuses with
/// [`SendError::TransmitPending`] while control frames wait, so keys and consent changes always
/// go out before data that depends on them.
///
/// ```no_run
/// use lifeline_core::session::{Config, Session};
/// use lifeline_core::time::Instant;
/// use lifeline_core::wire::{handshake::Role, MemberId, StreamDecoder, MAX_FRAME_LEN, MAX_PAYLOAD_LEN};
/// # fn now() -> Instant { Instant::ZERO }
/// # fn read_socket(_: &mut [u8]) -> usize { 0 }
/// # fn write_socket(_: &[u8]) {}
/// # fn rng() -> rand_chacha::ChaCha20Rng { rand_core::SeedableRng::seed_from_u64(0) }
/// let config = Config::new(123_456_789, MemberId(3), Role::Customer, "Customer");
/// let mut session: Session<_> = Session::new_member(config, "12345678", rng(), now());
/// let mut decoder: StreamDecoder = StreamDecoder::new();
/// let (mut frame_out, mut data_out) = ([0u8; MAX_FRAME_LEN], [0u8; MAX_PAYLOAD_LEN]);
/// let mut received = [0u8; 4096];
/// loop {
///     // one input ...
///     let n = read_socket(&mut received);
///     let mut input = &received[..n];
///     while !input.is_empty() {
///         let taken = decoder.push(input);
///         input = &input[taken..];
///         while let Ok(Some(frame)) = decoder.next_frame() {
///             if let Ok(Some(delivery)) = session.handle_frame(now(), frame, &mut data_out) {
///                 let _payload = &data_out[..delivery.len];
///             }
///         }
///     }
///     // ... then drain the outputs
///     while let Ok(Some(transmit)) = session.poll_transmit(now(), &mut frame_out) {
///         write_socket(&frame_out[..transmit.len]);
///     }
///     while let Some(_event) = session.poll_event() {}
///     let _next_wakeup = session.poll_timeout();
/// #   break;
/// }
/// ```
///
/// `MAX_MEMBERS` bounds the session (the leader included); all state is inline, nothing is
/// allocated. `R` is the CSPRNG (the OS generator, or the board's TRNG-seeded one).
///
/// [`StreamDecoder`]: crate::wire::StreamDecoder
pub struct Session<R: CryptoRng, const MAX_MEMBERS: usize = 8> {
    config: Config,
    rng: R,
    identity: String<20>,
    phase: Phase,
    leader: Option<LeaderState<MAX_MEMBERS>>,
    keys: Option<EpochKeys>,
    previous_keys: Option<(EpochKeys, Instant)>,
    /// Member: the key-wrap key shared with the leader, for later rekeys.
    member_kek: Option<KeyWrapKey>,
    send_sequence: u64,
    peers: Vec<Peer, MAX_MEMBERS>,
    consent: ConsentGuard,
    due: Due,
    requests: Deque<(MemberId, Capability), REQUEST_QUEUE_LEN>,
    events: Deque<Event, EVENT_QUEUE_LEN>,
    /// When this endpoint last sent a frame every member receives (keepalive clock).
    last_broadcast: Instant,
    /// Leader: when the group last moved to a new epoch (rate-limits rekey requests).
    last_rekey: Instant,
    /// Leader: a `Close{Removed}` already sealed under the old epoch for a removed member.
    removal_notices: Deque<([u8; REMOVAL_NOTICE_LEN], usize), REMOVAL_NOTICE_QUEUE_LEN>,
    /// Leader: a member asked for a rekey within a second of the last one; done when the
    /// second has passed.
    rekey_postponed: bool,
    /// Member: a key request to send (after a reconnect, or on a frame from an unknown newer epoch).
    key_request_due: bool,
    last_key_request: Option<Instant>,
    stats: Stats,
}

/// Where this endpoint is in its life. Named for what it waits for.
// No heap: every state lives inline, so variants differ in size by design.
#[allow(clippy::large_enum_variant)]
enum Phase {
    /// Member: hello sent, waiting for the leader's SRP challenge. The hello is repeated every
    /// [`HELLO_RETRY`] (`hello_at`: when it was last due) until the handshake timeout: the relay
    /// drops a hello to a leader that is not connected yet, and nothing else would resend it.
    AwaitingChallenge { pin: Pin, since: Instant, hello_at: Instant },
    /// Member: proof sent, waiting for the leader's proof M2.
    AwaitingServerProof {
        client: ClientSession,
        client_public: [u8; MAX_PUBLIC_LEN],
        group: Group,
        salt: [u8; SALT_LEN],
        since: Instant,
    },
    /// Member: leader authenticated, waiting for the wrapped group keys.
    AwaitingKeys { kek: KeyWrapKey, since: Instant },
    /// Keys in place: data flows.
    Established,
    /// Close frame still to send, then nothing.
    Closing { end: SessionEnd },
    /// Over.
    Closed { end: SessionEnd },
}

/// Control output waiting for `poll_transmit`; flags, so repeated causes queue one frame.
#[derive(Default)]
struct Due {
    hello: bool,
    proof: bool,
    announce: bool,
    roster: bool,
    consent_state: bool,
    rekey_request: bool,
    ping: bool,
    leave: bool,
}

struct LeaderState<const N: usize> {
    /// `None` once the PIN is dead.
    verifier: Option<Verifier>,
    failures: u8,
    slots: Vec<MemberSlot, N>,
    rejects: Deque<(MemberId, RejectReason), REJECT_QUEUE_LEN>,
    /// The current epoch began because a member departed (flagged in its key updates).
    departure_epoch: bool,
}

struct MemberSlot {
    id: MemberId,
    since: Instant,
    phase: SlotPhase,
}

#[allow(clippy::large_enum_variant)] // inline by design, as `Phase`
enum SlotPhase {
    /// Challenge computed; waiting for the member's proof.
    AwaitingProof { handshake: ServerHandshake, challenge_due: bool },
    /// Proof verified: the member's key-wrap key is known.
    Joined { kek: KeyWrapKey, accept_due: Option<[u8; PROOF_LEN]>, key_update_due: bool },
}

struct Peer {
    id: MemberId,
    role: Option<Role>,
    /// The largest payload it accepts (its announced receive limit; the maximum until then).
    receive_limit: usize,
    last_heard: Instant,
    /// Leader: when the relay reported this member's connection gone. It has
    /// [`Timeouts::reconnect_grace`] to come back (resuming with its keys) before it is removed.
    away_since: Option<Instant>,
    /// Replay windows for the current and previous epochs.
    windows: [(u32, ReplayWindow); 2],
}

impl Peer {
    fn new(id: MemberId, now: Instant) -> Self {
        Peer {
            id,
            role: None,
            receive_limit: MAX_PAYLOAD_LEN,
            last_heard: now,
            away_since: None,
            windows: [(0, ReplayWindow::new()); 2],
        }
    }

    /// The window for `epoch`, replacing the older slot when the epoch is new.
    fn window(&mut self, epoch: u32) -> &mut ReplayWindow {
        let index = match self.windows.iter().position(|(e, _)| *e == epoch) {
            Some(index) => index,
            None => {
                let older = if self.windows[0].0 <= self.windows[1].0 { 0 } else { 1 };
                self.windows[older] = (epoch, ReplayWindow::new());
                older
            }
        };
        &mut self.windows[index].1
    }
}

impl<R: CryptoRng, const MAX_MEMBERS: usize> Session<R, MAX_MEMBERS> {
    const CAPACITY_OK: () =
        assert!(MAX_MEMBERS >= 2 && MAX_MEMBERS <= MAX_ROSTER_LEN, "a session holds 2 to 64 members");

    // ---- construction ------------------------------------------------------------------

    /// The leader of a new session. `pin` is the secret the leader generated (see
    /// [`Pin::generate`]) and shows its user; the engine keeps only an SRP verifier made from it
    /// with a fresh salt. The first group keys (epoch 1) are drawn now.
    pub fn new_leader(mut config: Config, pin: &Pin, mut rng: R, now: Instant) -> Self {
        let () = Self::CAPACITY_OK;
        config.local_id = MemberId::LEADER;
        let identity = session_identity(config.session);
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let verifier = Verifier::new(config.group, identity.as_bytes(), pin.as_str().as_bytes(), salt);
        let keys = EpochKeys::new(generate_epoch(&mut rng, 1));
        debug!("session leader ready, epoch 1");
        Session {
            identity,
            phase: Phase::Established,
            leader: Some(LeaderState {
                verifier: Some(verifier),
                failures: 0,
                slots: Vec::new(),
                rejects: Deque::new(),
                departure_epoch: false,
            }),
            keys: Some(keys),
            ..Self::empty(config, rng, now)
        }
    }

    /// A member that joins the session with the PIN its user was given. The hello goes out on
    /// the first `poll_transmit`.
    pub fn new_member(config: Config, pin: &str, rng: R, now: Instant) -> Self {
        let () = Self::CAPACITY_OK;
        let identity = session_identity(config.session);
        let pin = Pin::from_str_truncated(pin);
        Session {
            identity,
            phase: Phase::AwaitingChallenge { pin, since: now, hello_at: now },
            due: Due { hello: true, ..Due::default() },
            ..Self::empty(config, rng, now)
        }
    }

    /// An engine that is over before it starts: a place to build a member in with
    /// [`Session::reset_member`]. A device that cannot spare a session-sized temporary on its
    /// stack (every `Session::new_*` may build one or two, 7.7 KiB each on the appliance) makes
    /// this once where the stack is shallow and resets it in place for each session.
    pub fn closed(config: Config, rng: R, now: Instant) -> Self {
        let () = Self::CAPACITY_OK;
        Self::empty(config, rng, now)
    }

    /// Turns this engine, whatever its state, into what
    /// `Session::new_member(config, pin, rng, now)` returns, field by field in place (no
    /// session-sized temporary). Everything of the previous session is dropped: keys, peers,
    /// queued events and statistics.
    pub fn reset_member(&mut self, config: Config, pin: &str, rng: R, now: Instant) {
        let () = Self::CAPACITY_OK;
        // Every field named: a field added to `Session` does not compile until it is reset here.
        let Session {
            config: old_config,
            rng: old_rng,
            identity,
            phase,
            leader,
            keys,
            previous_keys,
            member_kek,
            send_sequence,
            peers,
            consent,
            due,
            requests,
            events,
            last_broadcast,
            last_rekey,
            removal_notices,
            rekey_postponed,
            key_request_due,
            last_key_request,
            stats,
        } = self;
        *identity = session_identity(config.session);
        *old_config = config;
        *old_rng = rng;
        *phase = Phase::AwaitingChallenge { pin: Pin::from_str_truncated(pin), since: now, hello_at: now };
        *leader = None;
        *keys = None;
        *previous_keys = None;
        *member_kek = None;
        *send_sequence = 0;
        peers.clear();
        *consent = ConsentGuard::default();
        *due = Due { hello: true, ..Due::default() };
        requests.clear();
        events.clear();
        *last_broadcast = now;
        *last_rekey = now;
        removal_notices.clear();
        *rekey_postponed = false;
        *key_request_due = false;
        *last_key_request = None;
        *stats = Stats::default();
    }

    fn empty(config: Config, rng: R, now: Instant) -> Self {
        Session {
            config,
            rng,
            identity: String::new(),
            phase: Phase::Closed { end: SessionEnd::Local },
            leader: None,
            keys: None,
            previous_keys: None,
            member_kek: None,
            send_sequence: 0,
            peers: Vec::new(),
            consent: ConsentGuard::default(),
            due: Due::default(),
            requests: Deque::new(),
            events: Deque::new(),
            last_broadcast: now,
            last_rekey: now,
            removal_notices: Deque::new(),
            rekey_postponed: false,
            key_request_due: false,
            last_key_request: None,
            stats: Stats::default(),
        }
    }

    // ---- state -------------------------------------------------------------------------

    /// This endpoint's member id.
    pub fn local_id(&self) -> MemberId {
        self.config.local_id
    }

    /// This endpoint's role.
    pub fn role(&self) -> Role {
        self.config.role
    }

    /// Whether this endpoint leads the session.
    pub fn is_leader(&self) -> bool {
        self.leader.is_some()
    }

    /// Whether keys are in place and data can flow.
    pub fn is_established(&self) -> bool {
        matches!(self.phase, Phase::Established)
    }

    /// Why the session ended, once it has.
    pub fn end(&self) -> Option<SessionEnd> {
        match self.phase {
            Phase::Closing { end } | Phase::Closed { end } => Some(end),
            _ => None,
        }
    }

    /// The current key epoch (0 before the keys arrive).
    pub fn epoch(&self) -> u32 {
        self.keys.as_ref().map_or(0, EpochKeys::epoch)
    }

    /// This endpoint's consent state (meaningful for a customer).
    pub fn consent(&self) -> ConsentGuard {
        self.consent
    }

    /// The other members this endpoint knows of, with their announced roles.
    pub fn members(&self) -> impl Iterator<Item = (MemberId, Option<Role>)> + '_ {
        self.peers.iter().map(|peer| (peer.id, peer.role))
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    // ---- inputs ------------------------------------------------------------------------

    /// Handles one whole frame received from the relay. Application data is decrypted into
    /// `out` (at least [`Config::receive_limit`] bytes: [`MAX_PAYLOAD_LEN`] unless the
    /// configuration announces a smaller limit) and returned as a [`Delivery`]; everything else
    /// is handled inside and may produce events and frames to send. The frame buffer is used as
    /// scratch space for in-place decryption.
    pub fn handle_frame(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        out: &mut [u8],
    ) -> Result<Option<Delivery>, FrameError> {
        if matches!(self.phase, Phase::Closing { .. } | Phase::Closed { .. }) {
            return Err(FrameError::Closed);
        }
        let result = self.handle_frame_inner(now, frame, out);
        match result {
            Ok(_) => self.stats.frames_in += 1,
            Err(FrameError::Malformed | FrameError::NotForUs | FrameError::Unexpected) => self.stats.malformed += 1,
            Err(FrameError::Unauthentic) => self.stats.unauthentic += 1,
            Err(FrameError::Replayed) => self.stats.replayed += 1,
            Err(FrameError::InsufficientSize { .. } | FrameError::Closed) => {}
        }
        if let Err(error) = result {
            trace!("frame refused: {}", error);
        }
        result
    }

    /// Handles the passing of time: call when the instant from [`poll_timeout`](Self::poll_timeout) is reached.
    pub fn handle_timeout(&mut self, now: Instant) {
        let timeouts = self.config.timers();
        match &mut self.phase {
            Phase::AwaitingChallenge { since, .. }
            | Phase::AwaitingServerProof { since, .. }
            | Phase::AwaitingKeys { since, .. }
                if now >= *since + timeouts.handshake =>
            {
                self.finish(SessionEnd::HandshakeTimeout);
                return;
            }
            Phase::AwaitingChallenge { hello_at, .. } => {
                if now >= *hello_at + HELLO_RETRY {
                    *hello_at = now;
                    self.due.hello = true;
                }
                return;
            }
            Phase::AwaitingServerProof { .. } | Phase::AwaitingKeys { .. } => return,
            Phase::Closing { .. } | Phase::Closed { .. } => return,
            Phase::Established => {}
        }
        if let Some((_, expires)) = &self.previous_keys
            && now >= *expires
        {
            self.previous_keys = None;
        }
        if let Some(leader) = &mut self.leader {
            leader.slots.retain(|slot| {
                !matches!(slot.phase, SlotPhase::AwaitingProof { .. }) || now < slot.since + timeouts.handshake
            });
            let silent = self
                .peers
                .iter()
                .find(|peer| {
                    now >= peer.last_heard + timeouts.idle
                        || peer.away_since.is_some_and(|since| now >= since + timeouts.reconnect_grace)
                })
                .map(|peer| peer.id);
            if let Some(member) = silent {
                debug!("member {} silent past the idle timeout", member.0);
                self.drop_member(now, member, true);
            }
        } else if self
            .peers
            .iter()
            .find(|peer| peer.id == MemberId::LEADER)
            .is_some_and(|leader| now >= leader.last_heard + timeouts.idle)
        {
            self.finish(SessionEnd::LeaderLost);
            return;
        }
        if self.rekey_postponed && now >= self.last_rekey + Duration::from_secs(1) {
            self.rekey(now, false);
        }
        if now >= self.last_broadcast + timeouts.keepalive {
            self.due.ping = true;
        }
    }

    /// The relay reports that `member`'s connection is gone. The leader gives it
    /// [`Timeouts::reconnect_grace`] to reconnect and resume with its keys, then removes it and
    /// rekeys. Other members wait for the leader's roster: the relay's word alone changes nothing
    /// for them.
    pub fn handle_peer_disconnected(&mut self, now: Instant, member: MemberId) {
        if !self.is_established() || !self.is_leader() || member == self.config.local_id {
            return;
        }
        let joining = self.leader.as_ref().is_some_and(|leader| {
            leader.slots.iter().any(|slot| slot.id == member && matches!(slot.phase, SlotPhase::AwaitingProof { .. }))
        });
        if joining {
            self.drop_member(now, member, false);
        } else if let Some(peer) = self.peers.iter_mut().find(|peer| peer.id == member) {
            peer.away_since.get_or_insert(now);
        }
    }

    /// The transport reconnected to a relay and was admitted again with its old member id. A
    /// member asks the leader for the current keys, in case the group rekeyed while it was away.
    pub fn handle_reconnected(&mut self, now: Instant) {
        if self.is_established() && !self.is_leader() {
            self.request_keys(now);
        }
    }

    // ---- local commands ------------------------------------------------------------------

    /// Seals application data for `destination` into `out` and returns the frame length.
    ///
    /// A customer's engine refuses content whose capability it has not granted. Compression is
    /// applied by content type (see [`ContentType::compressible`]). `out` needs room for the
    /// uncompressed frame: `payload.len() + 50` bytes; a short `out` is left untouched.
    pub fn send(
        &mut self,
        now: Instant,
        destination: Destination,
        content: ContentType,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, SendError> {
        match self.phase {
            Phase::Established => {}
            Phase::Closing { .. } | Phase::Closed { .. } => return Err(SendError::Closed),
            _ => return Err(SendError::NotEstablished),
        }
        if self.has_control_due() {
            return Err(SendError::TransmitPending);
        }
        if let Destination::Member(id) = destination
            && (id == self.config.local_id || !id.is_endpoint())
        {
            return Err(SendError::InvalidDestination);
        }
        if let (Role::Customer, Some(capability)) = (self.config.role, content.required_capability())
            && !self.consent.granted().contains(capability)
        {
            return Err(SendError::NotGranted);
        }
        if payload.len() > self.max_payload(destination) {
            return Err(SendError::PayloadTooLarge);
        }
        let required = PLAINTEXT_OFFSET + 2 + payload.len() + TAG_LEN;
        if out.len() < required {
            return Err(SendError::InsufficientSize { required });
        }
        if self.send_sequence >= SEQUENCE_HARD_LIMIT {
            return Err(SendError::KeysExhausted);
        }
        let body_start = PLAINTEXT_OFFSET + 2;
        let mut flags = 0;
        let mut len = payload.len();
        // The block is used only when shorter than the payload, so it gets exactly the room it
        // would save (inside `out`, which holds the uncompressed frame): no larger buffer needed.
        if content.compressible()
            && payload.len() >= COMPRESS_MIN_LEN
            && let Some(area) = out.get_mut(body_start..body_start + payload.len() - 1)
            && let Ok(compressed) = compress::compress_within(payload, area)
        {
            flags = FLAG_COMPRESSED;
            len = compressed;
        }
        if flags == 0 {
            out[body_start..body_start + len].copy_from_slice(payload);
        }
        out[PLAINTEXT_OFFSET] = content.to_byte();
        out[PLAINTEXT_OFFSET + 1] = flags;
        let frame_len = self.seal(now, FrameKind::SecureData, destination, 2 + len, out);
        Ok(frame_len)
    }

    /// The largest payload [`send`](Self::send) accepts for `destination`: [`MAX_PAYLOAD_LEN`],
    /// or the smallest receive limit announced by the members it goes to (a constrained device
    /// announces one; see [`Config::receive_limit`]). Size chunks of bulk data with it.
    pub fn max_payload(&self, destination: Destination) -> usize {
        self.peers
            .iter()
            .filter(|peer| destination.includes(peer.id))
            .map(|peer| peer.receive_limit)
            .fold(MAX_PAYLOAD_LEN, usize::min)
    }

    /// Provider: asks the customer `to` for `capability`. The customer's user sees a prompt.
    pub fn request(&mut self, to: MemberId, capability: Capability) -> Result<(), SendError> {
        match self.phase {
            Phase::Established => {}
            Phase::Closing { .. } | Phase::Closed { .. } => return Err(SendError::Closed),
            _ => return Err(SendError::NotEstablished),
        }
        if self.config.role != Role::Provider {
            return Err(SendError::NotProvider);
        }
        if to == self.config.local_id || !to.is_endpoint() {
            return Err(SendError::InvalidDestination);
        }
        self.requests.push_back((to, capability)).map_err(|_| SendError::QueueFull)
    }

    /// Customer: the local user allows `capability` (answering its open prompt).
    pub fn grant(&mut self, capability: Capability) -> Result<(), ConsentError> {
        self.consent_change(|guard| guard.grant(capability))
    }

    /// Customer: the local user refuses `capability` (answering its open prompt).
    pub fn deny(&mut self, capability: Capability) -> Result<(), ConsentError> {
        self.consent_change(|guard| guard.deny(capability))
    }

    /// Customer: the local user takes back `capability`; it stops at once, for data already on
    /// its way too.
    pub fn revoke(&mut self, capability: Capability) -> Result<(), ConsentError> {
        self.consent_change(|guard| guard.revoke(capability))
    }

    /// Customer: "take back control": revokes remote control at once.
    pub fn take_back_control(&mut self) -> Result<(), ConsentError> {
        self.revoke(Capability::RemoteControl)
    }

    /// Ends the session for this endpoint. The leader or a customer ends it for everyone; another
    /// provider leaves. The farewell frame goes out on the next `poll_transmit`.
    pub fn close(&mut self, _now: Instant) {
        match self.phase {
            Phase::Established => {
                let ends_for_all = self.is_leader() || self.config.role == Role::Customer;
                if !ends_for_all {
                    self.due.leave = true;
                }
                self.consent.clear();
                self.phase = Phase::Closing { end: SessionEnd::Local };
                self.push_event(Event::Closed { reason: SessionEnd::Local });
            }
            Phase::Closing { .. } | Phase::Closed { .. } => {}
            _ => self.finish(SessionEnd::Local),
        }
    }

    /// Leader: removes `member` from the session; the others move to a new epoch it does not get.
    pub fn remove_member(&mut self, now: Instant, member: MemberId) -> bool {
        self.is_leader() && self.is_established() && self.drop_member(now, member, true)
    }

    // ---- outputs -----------------------------------------------------------------------

    /// Writes the next frame to send into `out`. `Ok(None)` when nothing is waiting. A frame
    /// that does not fit returns [`InsufficientSize`], leaves `out` untouched and stays queued
    /// (a buffer of [`MAX_FRAME_LEN`](crate::wire::MAX_FRAME_LEN) always fits).
    pub fn poll_transmit(&mut self, now: Instant, out: &mut [u8]) -> Result<Option<Transmit>, InsufficientSize> {
        let written = self.next_transmit(now, out)?;
        if let Some(len) = written {
            self.stats.frames_out += 1;
            trace!("transmit {} bytes", len);
        }
        Ok(written.map(|len| Transmit { len }))
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) should next be called; `None` when no timer
    /// is needed (closed).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let timeouts = self.config.timers();
        match &self.phase {
            Phase::AwaitingChallenge { since, hello_at, .. } => {
                return Some((*since + timeouts.handshake).min(*hello_at + HELLO_RETRY));
            }
            Phase::AwaitingServerProof { since, .. } | Phase::AwaitingKeys { since, .. } => {
                return Some(*since + timeouts.handshake);
            }
            Phase::Closing { .. } | Phase::Closed { .. } => return None,
            Phase::Established => {}
        }
        let mut next = self.last_broadcast + timeouts.keepalive;
        let mut consider = |at: Instant| next = next.min(at);
        if let Some((_, expires)) = &self.previous_keys {
            consider(*expires);
        }
        if self.rekey_postponed {
            consider(self.last_rekey + Duration::from_secs(1));
        }
        match &self.leader {
            Some(leader) => {
                for slot in &leader.slots {
                    if matches!(slot.phase, SlotPhase::AwaitingProof { .. }) {
                        consider(slot.since + timeouts.handshake);
                    }
                }
                for peer in &self.peers {
                    consider(peer.last_heard + timeouts.idle);
                    if let Some(since) = peer.away_since {
                        consider(since + timeouts.reconnect_grace);
                    }
                }
            }
            None => {
                if let Some(leader) = self.peers.iter().find(|peer| peer.id == MemberId::LEADER) {
                    consider(leader.last_heard + timeouts.idle);
                }
            }
        }
        Some(next)
    }

    // ---- frame handling ------------------------------------------------------------------

    fn handle_frame_inner(
        &mut self,
        now: Instant,
        frame: &mut [u8],
        out: &mut [u8],
    ) -> Result<Option<Delivery>, FrameError> {
        let header = RoutingHeader::parse(frame).map_err(|_| FrameError::Malformed)?;
        if frame.len() != header.frame_len() {
            return Err(FrameError::Malformed);
        }
        let local = self.config.local_id;
        if header.session != self.config.session
            || !header.destination.includes(local)
            || header.sender == local
            || !header.sender.is_endpoint()
        {
            return Err(FrameError::NotForUs);
        }
        match header.kind {
            FrameKind::Handshake => {
                let body = frame.get(HEADER_LEN..).ok_or(FrameError::Malformed)?;
                self.handle_handshake(now, header.sender, body).map(|()| None)
            }
            FrameKind::KeyUpdate => {
                let body = frame.get(HEADER_LEN..).ok_or(FrameError::Malformed)?;
                if header.sender != MemberId::LEADER || header.destination != Destination::Member(local) {
                    return Err(FrameError::NotForUs);
                }
                self.handle_key_update(now, body).map(|()| None)
            }
            FrameKind::SecureControl | FrameKind::SecureData => self.handle_protected(now, &header, frame, out),
            _ => Err(FrameError::Unexpected),
        }
    }

    fn handle_protected(
        &mut self,
        now: Instant,
        header: &RoutingHeader,
        frame: &mut [u8],
        out: &mut [u8],
    ) -> Result<Option<Delivery>, FrameError> {
        if !self.is_established() {
            return Err(FrameError::Unexpected);
        }
        let required = self.config.receive_limit();
        if header.kind == FrameKind::SecureData && out.len() < required {
            return Err(FrameError::InsufficientSize { required });
        }
        let epoch = frame_epoch(frame).ok_or(FrameError::Malformed)?;
        let current = self.keys.as_ref().map_or(0, EpochKeys::epoch);
        let keys = match (&self.keys, &self.previous_keys) {
            (Some(keys), _) if keys.epoch() == epoch => keys,
            (_, Some((keys, expires))) if keys.epoch() == epoch && now < *expires => keys,
            _ => {
                if epoch > current && !self.is_leader() {
                    // Frames of an epoch we lack: our key update was lost or overtaken.
                    self.request_keys(now);
                }
                return Err(FrameError::Unauthentic);
            }
        };
        let sender = header.sender;
        let known = self.peers.iter().any(|peer| peer.id == sender);
        // The leader knows its members; a member learns new ones from frames under the current
        // epoch (only holders of the group key can make those) before the roster names them.
        if !known && (self.is_leader() || epoch != current) {
            return Err(FrameError::NotForUs);
        }
        let (sequence, plaintext) = keys.open_in_place(frame).map_err(|_| FrameError::Unauthentic)?;
        if !known {
            if self.peers.push(Peer::new(sender, now)).is_err() {
                return Err(FrameError::NotForUs);
            }
            self.push_event(Event::MemberJoined { member: sender });
            self.due.announce = true;
        }
        let peer = self.peers.iter_mut().find(|peer| peer.id == sender).ok_or(FrameError::NotForUs)?;
        if !peer.window(epoch).accept(sequence) {
            return Err(FrameError::Replayed);
        }
        peer.last_heard = now;
        if peer.away_since.take().is_some() {
            // Back after a reconnect: it may have missed a key update while away.
            debug!("member {} resumed", sender.0);
            self.resend_keys(sender);
        }
        let plaintext = frame.get(plaintext).ok_or(FrameError::Malformed)?;
        let (&type_byte, rest) = plaintext.split_first().ok_or(FrameError::Malformed)?;
        let (&flags, payload) = rest.split_first().ok_or(FrameError::Malformed)?;
        if flags & !FLAG_COMPRESSED != 0 {
            return Err(FrameError::Malformed);
        }
        if header.kind == FrameKind::SecureControl {
            if flags != 0 {
                return Err(FrameError::Malformed);
            }
            let control = ControlRepr::parse(type_byte, payload).ok_or(FrameError::Malformed)?;
            self.handle_control(now, sender, epoch == current, control);
            return Ok(None);
        }
        let content = ContentType::from_byte(type_byte).ok_or(FrameError::Malformed)?;
        if self.config.role == Role::Customer
            && let Some(capability) = content.required_capability()
            && !self.consent.allows(capability)
        {
            self.stats.refused_by_consent += 1;
            self.push_event(Event::DataRefused { from: sender, content, capability });
            return Ok(None);
        }
        let len = if flags & FLAG_COMPRESSED != 0 {
            let limit = out.len().min(MAX_PAYLOAD_LEN);
            compress::decompress(payload, &mut out[..limit]).map_err(|_| FrameError::Malformed)?
        } else {
            out.get_mut(..payload.len()).ok_or(FrameError::Malformed)?.copy_from_slice(payload);
            payload.len()
        };
        Ok(Some(Delivery { from: sender, content, len }))
    }

    fn handle_handshake(&mut self, now: Instant, sender: MemberId, body: &[u8]) -> Result<(), FrameError> {
        if self.leader.is_some() {
            let group = self.config.group;
            let message = HandshakeRepr::parse(body, Some(group)).ok_or(FrameError::Malformed)?;
            return self.leader_handshake(now, sender, message);
        }
        if sender != MemberId::LEADER {
            return Err(FrameError::NotForUs);
        }
        let message = HandshakeRepr::parse(body, None).ok_or(FrameError::Malformed)?;
        match (message, &self.phase) {
            (HandshakeRepr::Challenge { group, salt, server_public }, Phase::AwaitingChallenge { pin, since, .. }) => {
                let since = *since;
                let mut a = [0u8; PRIVATE_LEN];
                self.rng.fill_bytes(&mut a);
                let handshake = srp::ClientHandshake::new(group, a);
                a.zeroize();
                match handshake.process_challenge(
                    self.identity.as_bytes(),
                    pin.as_str().as_bytes(),
                    salt,
                    server_public,
                ) {
                    Ok(client) => {
                        let mut client_public = [0u8; MAX_PUBLIC_LEN];
                        let public = handshake.public_key();
                        client_public[..public.len()].copy_from_slice(public);
                        self.phase = Phase::AwaitingServerProof { client, client_public, group, salt: *salt, since };
                        self.due.proof = true;
                        Ok(())
                    }
                    Err(_) => {
                        self.finish(SessionEnd::ProtocolViolation);
                        Err(FrameError::Malformed)
                    }
                }
            }
            (HandshakeRepr::Accept { server_proof }, Phase::AwaitingServerProof { .. }) => {
                let Phase::AwaitingServerProof { client, salt, since, .. } =
                    core::mem::replace(&mut self.phase, Phase::Closing { end: SessionEnd::LeaderNotAuthentic })
                else {
                    return Err(FrameError::Unexpected);
                };
                match client.verify_server(server_proof) {
                    Ok(key) => {
                        let kek = KeyWrapKey::derive(key.as_bytes(), &salt, self.config.session, self.config.local_id);
                        let code = check_code(key.as_bytes(), &salt, self.config.session, self.config.local_id);
                        self.phase = Phase::AwaitingKeys { kek, since };
                        self.push_event(Event::CheckCode { peer: MemberId::LEADER, code });
                        Ok(())
                    }
                    Err(_) => {
                        warn!("leader failed key confirmation");
                        self.finish(SessionEnd::LeaderNotAuthentic);
                        Err(FrameError::Unauthentic)
                    }
                }
            }
            (HandshakeRepr::Reject { reason }, Phase::AwaitingChallenge { .. } | Phase::AwaitingServerProof { .. }) => {
                self.finish(SessionEnd::JoinRejected(reason));
                Ok(())
            }
            _ => Err(FrameError::Unexpected),
        }
    }

    fn leader_handshake(
        &mut self,
        now: Instant,
        sender: MemberId,
        message: HandshakeRepr<'_>,
    ) -> Result<(), FrameError> {
        let Some(leader) = &mut self.leader else {
            return Err(FrameError::Unexpected);
        };
        match message {
            HandshakeRepr::Hello { version, .. } => {
                let existing = leader.slots.iter().position(|slot| slot.id == sender);
                let reason = if leader.verifier.is_none() {
                    Some(RejectReason::PinExpired)
                } else if version != crate::wire::VERSION {
                    Some(RejectReason::Protocol)
                } else if existing.is_some_and(|index| matches!(leader.slots[index].phase, SlotPhase::Joined { .. }))
                    || (existing.is_none() && leader.slots.len() + 1 >= MAX_MEMBERS)
                {
                    Some(RejectReason::SessionFull)
                } else {
                    None
                };
                if let Some(reason) = reason {
                    let _ = leader.rejects.push_back((sender, reason));
                    return Ok(());
                }
                if let Some(index) = existing
                    && let SlotPhase::AwaitingProof { challenge_due, .. } = &mut leader.slots[index].phase
                {
                    // A repeated hello (a retry, or a relay replaying it) gets the same challenge:
                    // replacing the pending handshake would make the real member's proof fail
                    // and cost it one of the session's attempts.
                    *challenge_due = true;
                    return Ok(());
                }
                let Some(verifier) = &leader.verifier else {
                    return Err(FrameError::Unexpected);
                };
                let mut b = [0u8; PRIVATE_LEN];
                self.rng.fill_bytes(&mut b);
                let handshake = ServerHandshake::new(verifier, b);
                b.zeroize();
                let slot = MemberSlot {
                    id: sender,
                    since: now,
                    phase: SlotPhase::AwaitingProof { handshake, challenge_due: true },
                };
                let _ = leader.slots.push(slot);
                Ok(())
            }
            HandshakeRepr::Proof { client_public, client_proof } => {
                let index = leader
                    .slots
                    .iter()
                    .position(|slot| slot.id == sender && matches!(slot.phase, SlotPhase::AwaitingProof { .. }))
                    .ok_or(FrameError::Unexpected)?;
                let Some(verifier) = &leader.verifier else {
                    leader.slots.swap_remove(index);
                    let _ = leader.rejects.push_back((sender, RejectReason::PinExpired));
                    return Ok(());
                };
                let SlotPhase::AwaitingProof { handshake, .. } = &leader.slots[index].phase else {
                    return Err(FrameError::Unexpected);
                };
                match handshake.verify_client(verifier, self.identity.as_bytes(), client_public, client_proof) {
                    Ok(server) => {
                        let kek = KeyWrapKey::derive(server.key(), verifier.salt(), self.config.session, sender);
                        let code = check_code(server.key(), verifier.salt(), self.config.session, sender);
                        leader.slots[index].phase =
                            SlotPhase::Joined { kek, accept_due: Some(*server.server_proof()), key_update_due: true };
                        if self.peers.push(Peer::new(sender, now)).is_err() {
                            return Err(FrameError::Unexpected);
                        }
                        debug!("member {} joined", sender.0);
                        self.due.roster = true;
                        self.due.announce = true;
                        self.push_event(Event::MemberJoined { member: sender });
                        self.push_event(Event::CheckCode { peer: sender, code });
                        // A new epoch for the newcomer: it cannot read what was sent before it
                        // joined, even if a relay kept those frames.
                        self.rekey(now, false);
                        Ok(())
                    }
                    Err(_) => {
                        leader.slots.swap_remove(index);
                        leader.failures = leader.failures.saturating_add(1);
                        let failures = leader.failures;
                        let expired = failures >= self.config.join_failure_limit();
                        let reason = if expired {
                            leader.verifier = None;
                            RejectReason::PinExpired
                        } else {
                            RejectReason::BadProof
                        };
                        let _ = leader.rejects.push_back((sender, reason));
                        warn!("join by {} failed key confirmation ({} failures)", sender.0, failures);
                        self.push_event(Event::JoinFailed { member: sender, failures });
                        if expired {
                            self.push_event(Event::PinExpired);
                        }
                        Err(FrameError::Unauthentic)
                    }
                }
            }
            HandshakeRepr::KeyRequest => {
                if leader.slots.iter().any(|slot| slot.id == sender && matches!(slot.phase, SlotPhase::Joined { .. })) {
                    self.resend_keys(sender);
                    Ok(())
                } else {
                    Err(FrameError::Unexpected)
                }
            }
            _ => Err(FrameError::Unexpected),
        }
    }

    fn handle_key_update(&mut self, now: Instant, body: &[u8]) -> Result<(), FrameError> {
        if body.len() != KEY_UPDATE_LEN {
            return Err(FrameError::Malformed);
        }
        let local = self.config.local_id;
        let (secret, flags) = match &self.phase {
            Phase::AwaitingKeys { kek, .. } => kek.unwrap_epoch(body, local),
            Phase::Established => {
                let Some(kek) = &self.member_kek else {
                    return Err(FrameError::Unexpected);
                };
                kek.unwrap_epoch(body, local)
            }
            _ => return Err(FrameError::Unexpected),
        }
        .ok_or(FrameError::Unauthentic)?;
        if secret.epoch <= self.epoch() {
            // An old KeyUpdate replayed: never go back to an older key.
            return Err(FrameError::Replayed);
        }
        let epoch = secret.epoch;
        // A skipped epoch may have been a departure this member never heard of: keep no grace.
        let skipped = self.epoch() != 0 && Some(epoch) != self.epoch().checked_add(1);
        self.install_keys(now, EpochKeys::new(secret), flags & FLAG_DEPARTURE != 0 || skipped);
        if let Phase::AwaitingKeys { .. } = self.phase {
            let Phase::AwaitingKeys { kek, .. } = core::mem::replace(&mut self.phase, Phase::Established) else {
                return Err(FrameError::Unexpected);
            };
            self.member_kek = Some(kek);
            if self.peers.iter().all(|peer| peer.id != MemberId::LEADER) {
                let _ = self.peers.push(Peer::new(MemberId::LEADER, now));
            }
            self.due.announce = true;
            debug!("joined, epoch {}", epoch);
            self.push_event(Event::Joined { epoch });
        } else {
            self.push_event(Event::Rekeyed { epoch });
        }
        Ok(())
    }

    /// `current_epoch`: whether the message came under the current epoch (not the previous one).
    fn handle_control(&mut self, now: Instant, sender: MemberId, current_epoch: bool, control: ControlRepr) {
        match control {
            ControlRepr::Announce { role, name, receive_limit } => {
                if let Some(peer) = self.peers.iter_mut().find(|peer| peer.id == sender) {
                    peer.role = Some(role);
                    peer.receive_limit = receive_limit.map_or(MAX_PAYLOAD_LEN, usize::from);
                }
                self.push_event(Event::MemberAnnounced { member: sender, role, name });
            }
            ControlRepr::Roster { members } => {
                if sender != MemberId::LEADER || self.is_leader() {
                    return;
                }
                if !members.contains(&self.config.local_id) {
                    self.finish(SessionEnd::Removed);
                    return;
                }
                let mut left: Vec<MemberId, MAX_MEMBERS> = Vec::new();
                for peer in &self.peers {
                    if !members.contains(&peer.id) {
                        let _ = left.push(peer.id);
                    }
                }
                for member in left {
                    self.remove_peer(member);
                    self.push_event(Event::MemberLeft { member });
                }
                for &member in &members {
                    if member != self.config.local_id
                        && self.peers.iter().all(|peer| peer.id != member)
                        && self.peers.push(Peer::new(member, now)).is_ok()
                    {
                        self.push_event(Event::MemberJoined { member });
                        self.due.announce = true;
                    }
                }
            }
            ControlRepr::CapabilityRequest { capability } => {
                if self.config.role == Role::Customer && self.consent.request(capability) == RequestOutcome::Prompt {
                    self.due.consent_state = true;
                    self.push_event(Event::ConsentRequested { from: sender, capability });
                }
            }
            ControlRepr::ConsentState { granted, pending } => {
                self.push_event(Event::PeerConsent { from: sender, granted, pending });
            }
            ControlRepr::Leave => self.peer_left(now, sender),
            ControlRepr::Close { reason } => {
                let ends_for_all = sender == MemberId::LEADER || self.peer_role(sender) == Some(Role::Customer);
                if sender == MemberId::LEADER && reason == CloseReason::Removed {
                    self.finish(SessionEnd::Removed);
                } else if ends_for_all {
                    self.finish(SessionEnd::EndedBy(sender));
                } else {
                    self.peer_left(now, sender);
                }
            }
            ControlRepr::Ping => {}
            ControlRepr::RekeyRequest => {
                // Only requests under the current epoch, at most one rekey a second: a stale or
                // replayed request must not churn the group's keys.
                if self.is_leader() && current_epoch {
                    if now >= self.last_rekey + Duration::from_secs(1) {
                        self.rekey(now, false);
                    } else {
                        self.rekey_postponed = true;
                    }
                }
            }
        }
    }

    // ---- transmit ------------------------------------------------------------------------

    /// Whether anything is waiting for [`poll_transmit`](Self::poll_transmit): [`Session::send`]
    /// refuses until it has been drained, so control always goes out before new data.
    fn has_control_due(&self) -> bool {
        self.next_pending().is_some()
    }

    /// What `poll_transmit` sends next, in priority order. The single source of truth for both
    /// `poll_transmit` and `has_control_due`, so they cannot drift apart.
    fn next_pending(&self) -> Option<Pending> {
        match &self.phase {
            Phase::Closed { .. } => return None,
            Phase::AwaitingChallenge { .. } => return self.due.hello.then_some(Pending::Hello),
            Phase::AwaitingServerProof { .. } => return self.due.proof.then_some(Pending::Proof),
            Phase::Closing { .. } => return Some(Pending::Farewell),
            Phase::Established => {}
            Phase::AwaitingKeys { .. } => return None,
        }
        if self.key_request_due {
            return Some(Pending::KeyRequest);
        }
        if !self.removal_notices.is_empty() {
            return Some(Pending::RemovalNotice);
        }
        if let Some(pending) = self.leader_pending() {
            return Some(pending);
        }
        if self.send_sequence >= SEQUENCE_HARD_LIMIT {
            // Nothing more can be sealed under this epoch; the rekey brings a fresh counter.
            return None;
        }
        let due = &self.due;
        if due.roster && self.is_leader() {
            Some(Pending::Roster)
        } else if due.announce {
            Some(Pending::Announce)
        } else if due.consent_state {
            Some(Pending::ConsentState)
        } else if !self.requests.is_empty() {
            Some(Pending::CapabilityRequest)
        } else if due.rekey_request && !self.is_leader() {
            Some(Pending::RekeyRequest)
        } else if due.ping {
            Some(Pending::Ping)
        } else {
            None
        }
    }

    /// Leader: rejects, then per slot a challenge, an accept or wrapped keys.
    fn leader_pending(&self) -> Option<Pending> {
        let leader = self.leader.as_ref()?;
        if !leader.rejects.is_empty() {
            return Some(Pending::Reject);
        }
        leader
            .slots
            .iter()
            .position(|slot| match &slot.phase {
                SlotPhase::AwaitingProof { challenge_due, .. } => *challenge_due && leader.verifier.is_some(),
                SlotPhase::Joined { accept_due, key_update_due, .. } => {
                    accept_due.is_some() || (*key_update_due && self.keys.is_some())
                }
            })
            .map(Pending::Slot)
    }

    fn next_transmit(&mut self, now: Instant, out: &mut [u8]) -> Result<Option<usize>, InsufficientSize> {
        let Some(pending) = self.next_pending() else {
            return Ok(None);
        };
        let session = self.config.session;
        let local = self.config.local_id;
        let to_leader = Destination::Member(MemberId::LEADER);
        let len = match pending {
            Pending::Hello => {
                let len = emit_handshake(session, local, to_leader, &HandshakeRepr::hello(self.config.role), out)?;
                self.due.hello = false;
                len
            }
            Pending::Proof => {
                let Phase::AwaitingServerProof { client, client_public, group, .. } = &self.phase else {
                    return Ok(None);
                };
                let message = HandshakeRepr::Proof {
                    client_public: &client_public[..group.byte_len()],
                    client_proof: client.client_proof(),
                };
                let len = emit_handshake(session, local, to_leader, &message, out)?;
                self.due.proof = false;
                len
            }
            Pending::Farewell => {
                let Phase::Closing { end } = self.phase else {
                    return Ok(None);
                };
                let control =
                    if self.due.leave { ControlRepr::Leave } else { ControlRepr::Close { reason: CloseReason::Ended } };
                // At the usage limit nothing may be sealed any more, not even the farewell.
                let len = if self.send_sequence < SEQUENCE_HARD_LIMIT {
                    Some(self.seal_control(now, Destination::AllMembers, &control, out)?)
                } else {
                    None
                };
                self.phase = Phase::Closed { end };
                self.keys = None;
                self.previous_keys = None;
                return Ok(len);
            }
            Pending::KeyRequest => {
                let len = emit_handshake(session, local, to_leader, &HandshakeRepr::KeyRequest, out)?;
                self.key_request_due = false;
                len
            }
            Pending::RemovalNotice => {
                let Some((notice, len)) = self.removal_notices.front() else {
                    return Ok(None);
                };
                let len = *len;
                let frame = notice.get(..len).unwrap_or_default();
                let Some(dst) = out.get_mut(..len) else {
                    return Err(InsufficientSize { required: len });
                };
                dst.copy_from_slice(frame);
                self.removal_notices.pop_front();
                len
            }
            Pending::Reject => {
                let Some(leader) = &mut self.leader else {
                    return Ok(None);
                };
                let Some(&(to, reason)) = leader.rejects.front() else {
                    return Ok(None);
                };
                let message = HandshakeRepr::Reject { reason };
                let len = emit_handshake(session, MemberId::LEADER, Destination::Member(to), &message, out)?;
                leader.rejects.pop_front();
                len
            }
            Pending::Slot(index) => return self.slot_transmit(index, out),
            Pending::Roster => {
                let mut members = Vec::new();
                let _ = members.push(MemberId::LEADER);
                for peer in &self.peers {
                    let _ = members.push(peer.id);
                }
                let len = self.seal_control(now, Destination::AllMembers, &ControlRepr::Roster { members }, out)?;
                self.due.roster = false;
                len
            }
            Pending::Announce => {
                let announce = ControlRepr::Announce {
                    role: self.config.role,
                    name: self.config.name.clone(),
                    receive_limit: self.config.announced_receive_limit(),
                };
                let len = self.seal_control(now, Destination::AllMembers, &announce, out)?;
                self.due.announce = false;
                len
            }
            Pending::ConsentState => {
                let state =
                    ControlRepr::ConsentState { granted: self.consent.granted(), pending: self.consent.pending() };
                let len = self.seal_control(now, Destination::AllMembers, &state, out)?;
                self.due.consent_state = false;
                len
            }
            Pending::CapabilityRequest => {
                let Some(&(to, capability)) = self.requests.front() else {
                    return Ok(None);
                };
                let request = ControlRepr::CapabilityRequest { capability };
                let len = self.seal_control(now, Destination::Member(to), &request, out)?;
                self.requests.pop_front();
                len
            }
            Pending::RekeyRequest => {
                let len =
                    self.seal_control(now, Destination::Member(MemberId::LEADER), &ControlRepr::RekeyRequest, out)?;
                self.due.rekey_request = false;
                len
            }
            Pending::Ping => {
                let len = self.seal_control(now, Destination::AllMembers, &ControlRepr::Ping, out)?;
                self.due.ping = false;
                len
            }
        };
        Ok(Some(len))
    }

    /// Leader: the challenge, accept or wrapped keys due for the slot at `index`.
    fn slot_transmit(&mut self, index: usize, out: &mut [u8]) -> Result<Option<usize>, InsufficientSize> {
        let session = self.config.session;
        let group = self.config.group;
        let (Some(leader), keys) = (&mut self.leader, &self.keys) else {
            return Ok(None);
        };
        let Some(slot) = leader.slots.get_mut(index) else {
            return Ok(None);
        };
        let to = Destination::Member(slot.id);
        match &mut slot.phase {
            SlotPhase::AwaitingProof { handshake, challenge_due: due @ true } => {
                let Some(verifier) = &leader.verifier else {
                    return Ok(None);
                };
                let message =
                    HandshakeRepr::Challenge { group, salt: verifier.salt(), server_public: handshake.public_key() };
                let len = emit_handshake(session, MemberId::LEADER, to, &message, out)?;
                *due = false;
                Ok(Some(len))
            }
            SlotPhase::Joined { accept_due: accept @ Some(_), .. } => {
                let server_proof = accept.unwrap_or_default();
                let message = HandshakeRepr::Accept { server_proof: &server_proof };
                let len = emit_handshake(session, MemberId::LEADER, to, &message, out)?;
                *accept = None;
                Ok(Some(len))
            }
            SlotPhase::Joined { kek, key_update_due: due @ true, .. } => {
                let Some(keys) = keys else {
                    return Ok(None);
                };
                let flags = if leader.departure_epoch { FLAG_DEPARTURE } else { 0 };
                let body = kek.wrap_epoch(keys.secret(), slot.id, flags);
                let len = emit_frame(FrameKind::KeyUpdate, session, MemberId::LEADER, to, &body, out)?;
                *due = false;
                Ok(Some(len))
            }
            _ => Ok(None),
        }
    }

    fn seal_control(
        &mut self,
        now: Instant,
        destination: Destination,
        control: &ControlRepr,
        out: &mut [u8],
    ) -> Result<usize, InsufficientSize> {
        let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
        // Every control message fits MAX_CONTROL_PAYLOAD by construction (bounded names, rosters).
        let len = control.emit_payload(&mut payload).unwrap_or(0);
        let required = PLAINTEXT_OFFSET + 2 + len + TAG_LEN;
        if out.len() < required {
            return Err(InsufficientSize { required });
        }
        out[PLAINTEXT_OFFSET] = control.message_type();
        out[PLAINTEXT_OFFSET + 1] = 0;
        out[PLAINTEXT_OFFSET + 2..PLAINTEXT_OFFSET + 2 + len].copy_from_slice(&payload[..len]);
        Ok(self.seal(now, FrameKind::SecureControl, destination, 2 + len, out))
    }

    /// Seals the plaintext already at `out[PLAINTEXT_OFFSET..][..plaintext_len]`; the caller has
    /// checked that `out` is large enough and the session is established.
    fn seal(
        &mut self,
        now: Instant,
        kind: FrameKind,
        destination: Destination,
        plaintext_len: usize,
        out: &mut [u8],
    ) -> usize {
        let body_len = 12 + plaintext_len + TAG_LEN;
        let header = RoutingHeader {
            kind,
            // body_len ≤ MAX_BODY_LEN < u16::MAX: payloads are bounded by the callers.
            body_len: u16::try_from(body_len).unwrap_or(u16::MAX),
            session: self.config.session,
            sender: self.config.local_id,
            destination,
        };
        let frame_len = header.frame_len();
        let Some(keys) = &self.keys else {
            return 0;
        };
        keys.seal_in_place(&header, self.send_sequence, &mut out[..frame_len]);
        self.send_sequence += 1;
        if destination == Destination::AllMembers {
            self.last_broadcast = now;
        }
        if self.send_sequence >= self.config.rekey_threshold() {
            if self.is_leader() {
                self.rekey(now, false);
            } else if self.send_sequence == self.config.rekey_threshold() {
                self.due.rekey_request = true;
            }
        }
        frame_len
    }

    // ---- membership and keys ---------------------------------------------------------------

    /// Leader: moves the group to a new epoch. `departure`: a member left or was removed, so
    /// nobody keeps the previous epoch's keys (it could inject under them).
    fn rekey(&mut self, now: Instant, departure: bool) {
        let Some(leader) = &mut self.leader else {
            return;
        };
        let Some(epoch) = self.keys.as_ref().map_or(0, EpochKeys::epoch).checked_add(1) else {
            // 2^32 - 1 epochs: never reuse an id, end instead.
            self.finish(SessionEnd::ProtocolViolation);
            return;
        };
        let keys = EpochKeys::new(generate_epoch(&mut self.rng, epoch));
        leader.departure_epoch = departure;
        self.last_rekey = now;
        self.rekey_postponed = false;
        for slot in leader.slots.iter_mut() {
            if let SlotPhase::Joined { key_update_due, .. } = &mut slot.phase {
                *key_update_due = true;
            }
        }
        debug!("rekey to epoch {}", epoch);
        self.install_keys(now, keys, departure);
        self.push_event(Event::Rekeyed { epoch });
    }

    /// Leader: sends `member` the current epoch keys again.
    fn resend_keys(&mut self, member: MemberId) {
        if let Some(leader) = &mut self.leader {
            for slot in leader.slots.iter_mut().filter(|slot| slot.id == member) {
                if let SlotPhase::Joined { key_update_due, .. } = &mut slot.phase {
                    *key_update_due = true;
                }
            }
        }
    }

    fn install_keys(&mut self, now: Instant, keys: EpochKeys, departure: bool) {
        let old = self.keys.replace(keys);
        self.previous_keys = match old {
            Some(old) if !departure => Some((old, now + self.config.timers().epoch_grace)),
            _ => None,
        };
        self.send_sequence = 0;
        self.due.rekey_request = false;
    }

    /// Member: asks the leader for the current keys (at most once a second).
    fn request_keys(&mut self, now: Instant) {
        if self.last_key_request.is_none_or(|last| now >= last + Duration::from_secs(1)) {
            self.key_request_due = true;
            self.last_key_request = Some(now);
        }
    }

    /// Leader: removes a member (joined or joining), tells the others, and rekeys. `notify`: tell
    /// the member it was removed, sealed under the epoch it still has.
    fn drop_member(&mut self, now: Instant, member: MemberId, notify: bool) -> bool {
        let Some(leader) = &mut self.leader else {
            return false;
        };
        let Some(index) = leader.slots.iter().position(|slot| slot.id == member) else {
            return false;
        };
        let was_joined = matches!(leader.slots[index].phase, SlotPhase::Joined { .. });
        // A member still owed the current epoch's keys could not read a notice sealed with them.
        let has_current_keys =
            matches!(leader.slots[index].phase, SlotPhase::Joined { key_update_due: false, accept_due: None, .. });
        leader.slots.swap_remove(index);
        if was_joined {
            if notify && has_current_keys {
                let mut notice = [0u8; REMOVAL_NOTICE_LEN];
                let removed = ControlRepr::Close { reason: CloseReason::Removed };
                if let Ok(len) = self.seal_control(now, Destination::Member(member), &removed, &mut notice) {
                    if self.removal_notices.is_full() {
                        self.removal_notices.pop_front();
                    }
                    let _ = self.removal_notices.push_back((notice, len));
                }
            }
            self.remove_peer(member);
            self.push_event(Event::MemberLeft { member });
            self.due.roster = true;
            self.rekey(now, true);
        }
        true
    }

    fn peer_left(&mut self, now: Instant, member: MemberId) {
        if self.is_leader() {
            self.drop_member(now, member, false);
        } else if self.remove_peer(member) {
            self.push_event(Event::MemberLeft { member });
        }
    }

    fn remove_peer(&mut self, member: MemberId) -> bool {
        match self.peers.iter().position(|peer| peer.id == member) {
            Some(index) => {
                self.peers.swap_remove(index);
                true
            }
            None => false,
        }
    }

    fn peer_role(&self, member: MemberId) -> Option<Role> {
        self.peers.iter().find(|peer| peer.id == member).and_then(|peer| peer.role)
    }

    fn consent_change(
        &mut self,
        change: impl FnOnce(&mut ConsentGuard) -> Result<(), ConsentError>,
    ) -> Result<(), ConsentError> {
        if self.config.role != Role::Customer {
            return Err(ConsentError::NotCustomer);
        }
        if matches!(self.phase, Phase::Closing { .. } | Phase::Closed { .. }) {
            return Err(ConsentError::Closed);
        }
        change(&mut self.consent)?;
        self.due.consent_state = self.is_established();
        self.push_event(Event::ConsentChanged { granted: self.consent.granted(), pending: self.consent.pending() });
        Ok(())
    }

    /// Ends the session without a farewell frame (the other side already knows, or cannot be
    /// told).
    fn finish(&mut self, end: SessionEnd) {
        if matches!(self.phase, Phase::Closed { .. }) {
            return;
        }
        debug!("session ended");
        self.phase = Phase::Closed { end };
        self.keys = None;
        self.previous_keys = None;
        self.member_kek = None;
        self.consent.clear();
        self.push_event(Event::Closed { reason: end });
    }

    fn push_event(&mut self, event: Event) {
        if self.events.push_back(event).is_err() {
            self.stats.events_lost += 1;
        }
    }
}

impl<R: CryptoRng, const MAX_MEMBERS: usize> core::fmt::Debug for Session<R, MAX_MEMBERS> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Session")
            .field("session", &self.config.session)
            .field("local_id", &self.config.local_id)
            .field("role", &self.config.role)
            .field("epoch", &self.epoch())
            .field("members", &self.peers.len())
            .finish_non_exhaustive()
    }
}

/// The SRP identity of a session: its number in decimal ASCII.
pub fn session_identity(session: u64) -> String<20> {
    let mut identity = String::new();
    // u64::MAX has 20 digits: always fits.
    let _ = write!(identity, "{session}");
    identity
}

fn emit_handshake(
    session: u64,
    sender: MemberId,
    destination: Destination,
    message: &HandshakeRepr<'_>,
    out: &mut [u8],
) -> Result<usize, InsufficientSize> {
    let mut body = [0u8; 1 + MAX_PUBLIC_LEN + PROOF_LEN];
    // The largest handshake message (a 3072-bit proof) fits `body` by construction.
    let len = message.emit(&mut body).unwrap_or(0);
    emit_frame(FrameKind::Handshake, session, sender, destination, &body[..len], out)
}

/// What the engine has to send next (see `Session::next_pending`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Hello,
    Proof,
    /// `Leave` or `Close`, then the session is closed.
    Farewell,
    KeyRequest,
    RemovalNotice,
    /// Leader: a `Reject` to a failed joiner.
    Reject,
    /// Leader: something for the joined or joining member in this slot.
    Slot(usize),
    Roster,
    Announce,
    ConsentState,
    CapabilityRequest,
    RekeyRequest,
    Ping,
}

#[cfg(test)]
mod tests;
