//! Harness: a development PKI per test binary, real relays (the relay crate's library, each on
//! its own tokio runtime so a test can kill one abruptly), endpoints driven by the real tokio
//! transport, and a hostile TLS proxy that records or tampers with the frame stream.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lifeline_core::crypto::srp::Group;
use lifeline_core::session::{Config, Event, Pin};
use lifeline_core::wire::handshake::Role;
use lifeline_core::wire::{FrameKind, HEADER_LEN, MemberId, RoutingHeader, StreamDecoder};
use lifeline_relay::ShutdownHandle;
use lifeline_ticket::{Ticket, TicketRole, TicketSigner};
use lifeline_transport_tokio::{
    Backoff, ConnectionState, Join, Received, RelayAddress, SessionEvents, SessionHandle, SessionSpec, TransportConfig,
    TransportEvent, TrustAnchors, client_config, os_rng, spawn_session,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long any one expected thing may take before the test fails.
pub const LIMIT: Duration = Duration::from_secs(15);

// ---- PKI and tickets ------------------------------------------------------------------------

pub struct Pki {
    pub dir: PathBuf,
    signer: TicketSigner,
}

/// One development PKI per test binary: relays "a", "b" and "proxy", valid for 127.0.0.1.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("lifeline-e2e-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let relays = ["a", "b", "proxy"].map(String::from);
        let sans = ["localhost", "127.0.0.1"].map(String::from);
        lifeline_relay::pki::init(&dir, &relays, &sans).unwrap();
        let signer = TicketSigner::from_pem(
            &std::fs::read_to_string(dir.join(lifeline_relay::pki::TICKET_SIGNING_KEY)).unwrap(),
        )
        .unwrap();
        Pki { dir, signer }
    })
}

impl Pki {
    pub fn ticket(&self, session: u64, role: TicketRole, home: &str) -> Vec<u8> {
        let expires = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() + 600;
        self.signer.mint(&Ticket::new(session, role, home, expires)).unwrap()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn relay_config(&self, name: &str, mesh: &str) -> lifeline_relay::Config {
        let text = format!(
            r#"
            name = "{name}"
            listen = ["127.0.0.1:0"]
            metrics_listen = "127.0.0.1:0"
            [tls]
            cert = "relay-{name}.pem"
            key = "relay-{name}.key"
            ca = "ca.pem"
            [tickets]
            verify_key = "ticket-verify.pem"
            [limits]
            handshake_timeout_secs = 2.0
            connections_per_ip_per_sec = 1000.0
            connections_per_ip_burst = 1000
            shutdown_grace_secs = 0.2
            {mesh}
            "#
        );
        lifeline_relay::Config::from_toml(&text, &self.dir).unwrap()
    }
}

/// A session number no other test of this run uses.
pub fn session_number() -> u64 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    u64::from(std::process::id()) * 1000 + u64::from(NEXT.fetch_add(1, Ordering::Relaxed))
}

// ---- relays ---------------------------------------------------------------------------------

/// A real relay (`lifeline_relay::Relay`) on its own runtime.
pub struct TestRelay {
    pub name: String,
    pub addr: SocketAddr,
    pub mesh: Option<SocketAddr>,
    pub metrics: SocketAddr,
    handle: ShutdownHandle,
    task: Option<JoinHandle<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl TestRelay {
    pub async fn start(name: &str, mesh: &str) -> TestRelay {
        let config = pki().relay_config(name, mesh);
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let task = runtime.spawn(async move {
            let relay = lifeline_relay::Relay::bind(config).await.unwrap();
            let info =
                (relay.endpoint_addrs()[0], relay.mesh_addr(), relay.metrics_addr().unwrap(), relay.shutdown_handle());
            let _ = ready_tx.send(info);
            relay.run().await;
        });
        let (addr, mesh, metrics, handle) = tokio::time::timeout(LIMIT, ready_rx).await.unwrap().unwrap();
        TestRelay { name: name.to_owned(), addr, mesh, metrics, handle, task: Some(task), runtime: Some(runtime) }
    }

    /// Graceful shutdown (GoAway to everyone), then the runtime goes.
    pub async fn stop(mut self) {
        self.handle.shutdown();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(LIMIT, task).await.expect("relay stops").unwrap();
        }
    }

    /// An abrupt death: every task of the relay dropped at once, every socket closed, no
    /// GoAway. On the network this looks like a killed process.
    pub fn kill(mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }

    pub fn address(&self) -> RelayAddress {
        RelayAddress::new("127.0.0.1").with_ports(vec![self.addr.port()])
    }

    /// One metric's value (0 if absent).
    pub async fn metric(&self, name: &str) -> f64 {
        let mut stream = TcpStream::connect(self.metrics).await.unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
            .lines()
            .filter(|line| !line.starts_with('#'))
            .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .map_or(0.0, |value| value.trim().parse().unwrap())
    }

    pub async fn wait_metric(&self, name: &str, check: impl Fn(f64) -> bool) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let value = self.metric(name).await;
            if check(value) {
                return;
            }
            assert!(tokio::time::Instant::now() < deadline, "{}: metric {name} stuck at {value}", self.name);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn mesh_section(peers: &[(&str, String)]) -> String {
    let peers: Vec<String> =
        peers.iter().map(|(name, address)| format!("{{ name = \"{name}\", address = \"{address}\" }}")).collect();
    format!(
        "[mesh]\nlisten = \"127.0.0.1:0\"\nkeepalive_secs = 1.0\nreconnect_min_secs = 0.1\nreconnect_max_secs = 0.5\npeers = [{}]\n",
        peers.join(", ")
    )
}

/// Relays "a" and "b" meshed by mutual TLS ("a" dials "b"), the link up on both sides.
pub async fn meshed_pair() -> (TestRelay, TestRelay) {
    let b = TestRelay::start("b", &mesh_section(&[("a", "127.0.0.1:9".into())])).await;
    let a = TestRelay::start("a", &mesh_section(&[("b", b.mesh.unwrap().to_string())])).await;
    a.wait_metric("lifeline_relay_mesh_links_up", |v| v == 1.0).await;
    b.wait_metric("lifeline_relay_mesh_links_up", |v| v == 1.0).await;
    (a, b)
}

// ---- endpoints ------------------------------------------------------------------------------

pub fn transport(relays: Vec<RelayAddress>) -> TransportConfig {
    let tls = client_config(&TrustAnchors::CaFile(pki().ca())).unwrap();
    let mut config = TransportConfig::new(relays, tls);
    config.backoff = Backoff { initial: Duration::from_millis(50), max: Duration::from_millis(300) };
    config.timing.connect_timeout = Duration::from_secs(3);
    config.timing.admit_timeout = Duration::from_secs(3);
    config
}

/// One endpoint: a real engine on the real transport, and every event it reported so far.
pub struct Endpoint {
    pub handle: SessionHandle,
    events: SessionEvents,
    pub seen: Vec<TransportEvent>,
    cursor: usize,
}

impl Endpoint {
    pub fn leader(relays: Vec<RelayAddress>, session: u64, home: &str, pin: &Pin, name: &str) -> Endpoint {
        Self::leader_in(Group::Rfc5054_2048, relays, session, home, pin, name)
    }

    /// As `leader`, with the SRP `group` the leader sets for its session.
    pub fn leader_in(
        group: Group,
        relays: Vec<RelayAddress>,
        session: u64,
        home: &str,
        pin: &Pin,
        name: &str,
    ) -> Endpoint {
        let mut config = Config::new(session, MemberId::LEADER, Role::Provider, name);
        config.group = group;
        let spec = SessionSpec {
            config,
            join: Join::Leader(pin.clone()),
            ticket: pki().ticket(session, TicketRole::Leader, home),
        };
        Self::spawn(transport(relays), spec)
    }

    pub fn member(relays: Vec<RelayAddress>, session: u64, home: &str, pin: &Pin, role: Role, name: &str) -> Endpoint {
        let spec = SessionSpec {
            config: Config::new(session, MemberId(1), role, name),
            join: Join::Member(Pin::from_str_truncated(pin.as_str())),
            ticket: pki().ticket(session, TicketRole::Member, home),
        };
        Self::spawn(transport(relays), spec)
    }

    fn spawn(config: TransportConfig, spec: SessionSpec) -> Endpoint {
        let (handle, events) = spawn_session(config, spec);
        Endpoint { handle, events, seen: Vec::new(), cursor: 0 }
    }

    /// Waits for the first event, after the last one matched, that `check` accepts.
    pub async fn wait<T>(&mut self, what: &str, mut check: impl FnMut(&TransportEvent) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            while self.cursor < self.seen.len() {
                let index = self.cursor;
                self.cursor += 1;
                if let Some(found) = check(&self.seen[index]) {
                    return found;
                }
            }
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(Some(event)) => {
                    if let TransportEvent::Connection(ConnectionState::Closed { cause }) = &event {
                        panic!("waiting for {what}: the session closed ({cause}); events: {:#?}", self.seen);
                    }
                    self.seen.push(event);
                }
                Ok(None) => panic!("waiting for {what}: the event stream ended"),
                Err(_) => panic!("waiting for {what}: nothing within {LIMIT:?}; events: {:#?}", self.seen),
            }
        }
    }

    /// Takes in every event that arrives within `quiet`.
    pub async fn settle(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(Some(event)) = tokio::time::timeout_at(deadline, self.events.next()).await {
            self.seen.push(event);
        }
    }

    /// The next `Connected`: (port, member id, resumed).
    pub async fn connected(&mut self) -> (u16, MemberId, bool) {
        self.wait("Connected", |event| match event {
            TransportEvent::Connection(ConnectionState::Connected { port, member, resumed, .. }) => {
                Some((*port, *member, *resumed))
            }
            _ => None,
        })
        .await
    }

    pub async fn joined(&mut self) {
        self.wait("Joined", |event| matches!(event, TransportEvent::Session(Event::Joined { .. })).then_some(())).await;
    }

    /// Waits for `member`'s announcement.
    pub async fn announced(&mut self, member: MemberId) {
        self.wait("an announcement", |event| match event {
            TransportEvent::Session(Event::MemberAnnounced { member: m, .. }) if *m == member => Some(()),
            _ => None,
        })
        .await;
    }

    /// Waits for a payload equal to `payload` (received at any time, in any order relative to
    /// other events); returns its sender.
    pub async fn received(&mut self, payload: &[u8]) -> MemberId {
        let find = |event: &TransportEvent| match event {
            TransportEvent::Data(data) if data.payload == payload => Some(data.from),
            _ => None,
        };
        if let Some(from) = self.seen.iter().find_map(find) {
            return from;
        }
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            match tokio::time::timeout_at(deadline, self.events.next()).await {
                Ok(Some(event)) => {
                    let found = find(&event);
                    self.seen.push(event);
                    if let Some(from) = found {
                        return from;
                    }
                }
                Ok(None) => panic!("waiting for {:?}: the event stream ended", String::from_utf8_lossy(payload)),
                Err(_) => panic!("waiting for {:?}: nothing within {LIMIT:?}", String::from_utf8_lossy(payload)),
            }
        }
    }

    /// Every application payload received so far.
    pub fn data(&self) -> Vec<Received> {
        self.seen
            .iter()
            .filter_map(|event| match event {
                TransportEvent::Data(data) => Some(data.clone()),
                _ => None,
            })
            .collect()
    }

    /// How many times the engine reported `Joined` (a resumption must not join again).
    pub fn joins(&self) -> usize {
        self.seen.iter().filter(|event| matches!(event, TransportEvent::Session(Event::Joined { .. }))).count()
    }
}

pub fn new_pin() -> Pin {
    Pin::generate(&mut os_rng())
}

/// A provider leading and a customer joined: both connected, the customer joined, the leader
/// heard its announcement.
pub async fn provider_and_customer(
    provider_relays: Vec<RelayAddress>,
    customer_relays: Vec<RelayAddress>,
    session: u64,
    home: &str,
    pin: &Pin,
) -> (Endpoint, Endpoint) {
    let mut provider = Endpoint::leader(provider_relays, session, home, pin, "Ada (Helpdesk)");
    assert_eq!(provider.connected().await.1, MemberId::LEADER);
    let mut customer = Endpoint::member(customer_relays, session, home, pin, Role::Customer, "Customer");
    assert_eq!(customer.connected().await.1, MemberId(1));
    customer.joined().await;
    provider.announced(MemberId(1)).await;
    (provider, customer)
}

// ---- the hostile proxy ----------------------------------------------------------------------

/// What the proxy does to a `SecureData` frame from the chosen sender on its way from the
/// relay to an endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tamper {
    /// Forward unchanged.
    Pass,
    /// Flip one bit in the middle of the body.
    FlipBit,
    /// Forward, then the same bytes again.
    Replay,
    /// Hold back; forward it right after the next such frame (the two swap places).
    Swap,
    /// Never forward it.
    Drop,
    /// Forward, then a forged frame: the same valid header, a random body of the same length.
    Forge,
    /// Forward, then a forged `SecureControl` frame (valid header, random body) from the same
    /// sender.
    ForgeControl,
}

#[derive(Default)]
struct ProxyState {
    /// Every byte endpoints sent to the relay (inside TLS), all connections.
    upstream: Vec<u8>,
    /// Every byte the relay sent to endpoints (inside TLS), all connections.
    downstream: Vec<u8>,
    /// Actions for the next `SecureData` frames from the chosen sender, in order.
    plan: VecDeque<Tamper>,
    held: Option<Vec<u8>>,
    /// What was applied, in order.
    done: Vec<Tamper>,
}

/// A TLS-terminating man in the middle between endpoints and a real relay. Its certificate is
/// from the fleet's development CA (so endpoints accept it); it opens its own TLS connection to
/// the relay and sees, records and may tamper with the frame stream.
pub struct HostileProxy {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProxyState>>,
    task: JoinHandle<()>,
}

impl HostileProxy {
    /// A proxy in front of `relay`; `SecureData` frames sent by `tamper_sender` follow the plan.
    pub async fn start(relay: SocketAddr, tamper_sender: MemberId) -> HostileProxy {
        let pki = pki();
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(pki.dir.join("relay-proxy.pem")).unwrap().map(Result::unwrap).collect();
        let key = PrivateKeyDer::from_pem_file(pki.dir.join("relay-proxy.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        // `lifeline/1-small` too, for the appliance agent (PROTOCOL.md 3). The proxy writes frame
        // by frame, so its records stay frame-sized; the frames it forwards in the HIL tests are
        // far below the 2 KiB records that ALPN promises.
        server.alpn_protocols = vec![b"lifeline/1".to_vec(), b"lifeline/1-small".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
        let connector = tokio_rustls::TlsConnector::from(client_config(&TrustAnchors::CaFile(pki.ca())).unwrap());

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, connector, state) = (acceptor.clone(), connector.clone(), Arc::clone(&shared));
                connections.spawn(async move {
                    let Ok(endpoint) = acceptor.accept(tcp).await else { return };
                    let Ok(tcp) = TcpStream::connect(relay).await else { return };
                    let name = ServerName::try_from("localhost").unwrap();
                    let Ok(upstream) = connector.connect(name, tcp).await else { return };
                    let (endpoint_rx, endpoint_tx) = tokio::io::split(endpoint);
                    let (relay_rx, relay_tx) = tokio::io::split(upstream);
                    tokio::join!(
                        pump_up(endpoint_rx, relay_tx, Arc::clone(&state)),
                        pump_down(relay_rx, endpoint_tx, state, tamper_sender)
                    );
                });
            }
        });
        HostileProxy { addr, state, task }
    }

    pub fn address(&self) -> RelayAddress {
        RelayAddress::new("127.0.0.1").with_ports(vec![self.addr.port()])
    }

    /// Everything recorded: (endpoints → relay, relay → endpoints).
    pub fn recorded(&self) -> (Vec<u8>, Vec<u8>) {
        let state = self.state.lock().unwrap();
        (state.upstream.clone(), state.downstream.clone())
    }

    pub fn plan(&self, actions: &[Tamper]) {
        self.state.lock().unwrap().plan.extend(actions.iter().copied());
    }

    /// The actions applied so far, in order.
    pub fn done(&self) -> Vec<Tamper> {
        self.state.lock().unwrap().done.clone()
    }
}

impl Drop for HostileProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pump_up(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    state: Arc<Mutex<ProxyState>>,
) {
    let mut buf = vec![0u8; 32 * 1024];
    while let Ok(n @ 1..) = from.read(&mut buf).await {
        state.lock().unwrap().upstream.extend_from_slice(&buf[..n]);
        if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

async fn pump_down(
    mut from: impl tokio::io::AsyncRead + Unpin,
    mut to: impl tokio::io::AsyncWrite + Unpin,
    state: Arc<Mutex<ProxyState>>,
    tamper_sender: MemberId,
) {
    let mut decoder: Box<StreamDecoder> = Box::new(StreamDecoder::new());
    let mut pending = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    'read: while let Ok(n @ 1..) = from.read(&mut buf).await {
        state.lock().unwrap().downstream.extend_from_slice(&buf[..n]);
        pending.extend_from_slice(&buf[..n]);
        loop {
            let taken = decoder.push(&pending);
            pending.drain(..taken);
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame.to_vec(),
                Ok(None) => break,
                Err(_) => break 'read,
            };
            let out = tamper(&state, tamper_sender, frame);
            for frame in out {
                if to.write_all(&frame).await.is_err() {
                    break 'read;
                }
            }
        }
        if to.flush().await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

/// The frames to forward in place of `frame`.
fn tamper(state: &Mutex<ProxyState>, sender: MemberId, frame: Vec<u8>) -> Vec<Vec<u8>> {
    let Ok(header) = RoutingHeader::parse(&frame) else { return vec![frame] };
    if header.kind != FrameKind::SecureData || header.sender != sender {
        return vec![frame];
    }
    let mut state = state.lock().unwrap();
    if let Some(held) = state.held.take() {
        // The second of a swapped pair goes first.
        return vec![frame, held];
    }
    let Some(action) = state.plan.pop_front() else { return vec![frame] };
    state.done.push(action);
    match action {
        Tamper::Pass => vec![frame],
        Tamper::FlipBit => {
            let mut frame = frame;
            let middle = HEADER_LEN + (frame.len() - HEADER_LEN) / 2;
            frame[middle] ^= 0x10;
            vec![frame]
        }
        Tamper::Replay => vec![frame.clone(), frame],
        Tamper::Swap => {
            state.held = Some(frame);
            Vec::new()
        }
        Tamper::Drop => Vec::new(),
        Tamper::Forge => {
            let mut forged = frame.clone();
            fill_random(&mut forged[HEADER_LEN..]);
            vec![frame, forged]
        }
        Tamper::ForgeControl => {
            let mut forged = frame.clone();
            forged[1] = FrameKind::SecureControl.to_byte();
            fill_random(&mut forged[HEADER_LEN..]);
            assert!(RoutingHeader::parse(&forged).is_ok(), "the forged header is valid");
            vec![frame, forged]
        }
    }
}

fn fill_random(bytes: &mut [u8]) {
    let mut rng = os_rng();
    rand_core::Rng::fill_bytes(&mut rng, bytes);
}

/// Whether `needle` occurs anywhere in `haystack`.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle)
}
