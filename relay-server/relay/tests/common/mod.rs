//! Test harness: a development PKI made once per test binary, relays on ephemeral loopback
//! ports, and a raw endpoint (tokio-rustls plus core's wire types, no engine).
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lifeline_core::wire::relay::{RefusalReason, RelayRepr};
use lifeline_core::wire::{Destination, FrameKind, HEADER_LEN, MemberId, RoutingHeader, StreamDecoder, emit_frame};
use lifeline_relay::{Config, Relay, ShutdownHandle};
use lifeline_ticket::{Ticket, TicketRole, TicketSigner};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

pub const SESSION: u64 = 123_456_789;

/// A fresh folder under Cargo's temporary folder for integration tests (in `target/`).
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "lifeline-relay-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A development PKI for relays "a", "b" and "local".
pub struct Pki {
    pub dir: PathBuf,
    pub signer: TicketSigner,
}

impl Pki {
    pub fn new(tag: &str) -> Pki {
        let dir = temp_dir(tag);
        let relays = ["a", "b", "local"].map(String::from);
        let sans = ["localhost", "127.0.0.1"].map(String::from);
        lifeline_relay::pki::init(&dir, &relays, &sans).unwrap();
        let signer = TicketSigner::from_pem(
            &std::fs::read_to_string(dir.join(lifeline_relay::pki::TICKET_SIGNING_KEY)).unwrap(),
        )
        .unwrap();
        Pki { dir, signer }
    }

    /// A ticket expiring `ttl` seconds from now (negative: already expired).
    pub fn ticket(&self, session: u64, role: TicketRole, home: &str, ttl: i64) -> Vec<u8> {
        let expires = now_unix().saturating_add_signed(ttl);
        self.signer.mint(&Ticket::new(session, role, home, expires)).unwrap()
    }

    pub fn leader(&self, session: u64, home: &str) -> Vec<u8> {
        self.ticket(session, TicketRole::Leader, home, 600)
    }

    pub fn member(&self, session: u64, home: &str) -> Vec<u8> {
        self.ticket(session, TicketRole::Member, home, 600)
    }

    /// A relay config for `name` on ephemeral loopback ports, with short test timeouts.
    pub fn config(&self, name: &str, extra: &str) -> Config {
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
            {extra}
            "#
        );
        Config::from_toml(&text, &self.dir).unwrap()
    }

    pub fn roots(&self) -> Arc<RootCertStore> {
        roots(&self.dir.join("ca.pem"))
    }
}

/// A `[limits]` table for tests: short timeouts, generous rates (every test connects from
/// 127.0.0.1); `overrides` replace or add keys.
pub fn limits(overrides: &[(&str, &str)]) -> String {
    let mut table: Vec<(String, String)> = [
        ("handshake_timeout_secs", "1.0"),
        ("idle_timeout_secs", "5.0"),
        ("connections_per_ip_per_sec", "1000.0"),
        ("connections_per_ip_burst", "1000"),
        ("shutdown_grace_secs", "0.5"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    for (key, value) in overrides {
        match table.iter_mut().find(|(k, _)| k == key) {
            Some(entry) => entry.1 = (*value).to_owned(),
            None => table.push(((*key).to_owned(), (*value).to_owned())),
        }
    }
    let mut text = String::from("[limits]\n");
    for (key, value) in table {
        text.push_str(&format!("{key} = {value}\n"));
    }
    text
}

/// The CA certificates in a PEM file.
pub fn roots(ca: &Path) -> Arc<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    Arc::new(roots)
}

/// One PKI per test binary.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| Pki::new("pki"))
}

pub fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A relay running in this process.
pub struct TestRelay {
    pub addr: SocketAddr,
    pub addrs: Vec<SocketAddr>,
    pub metrics: SocketAddr,
    pub mesh: Option<SocketAddr>,
    pub handle: ShutdownHandle,
    pub task: JoinHandle<()>,
}

impl TestRelay {
    pub async fn start(config: Config) -> TestRelay {
        let relay = Relay::bind(config).await.unwrap();
        let addrs = relay.endpoint_addrs();
        let test_relay = TestRelay {
            addr: addrs[0],
            addrs,
            metrics: relay.metrics_addr().unwrap(),
            mesh: relay.mesh_addr(),
            handle: relay.shutdown_handle(),
            task: tokio::spawn(async move {}),
        };
        TestRelay { task: tokio::spawn(relay.run()), ..test_relay }
    }

    /// Graceful shutdown; waits for `run` to return.
    pub async fn stop(self) {
        self.handle.shutdown();
        tokio::time::timeout(Duration::from_secs(10), self.task).await.expect("relay stops").unwrap();
    }

    pub async fn scrape(&self) -> String {
        scrape(self.metrics, "/metrics").await.1
    }

    /// The value of one sample (`name` includes labels), 0 if absent.
    pub async fn metric(&self, name: &str) -> f64 {
        sample(&self.scrape().await, name)
    }

    /// Polls a metric until `check` holds (or panics after 5 s).
    pub async fn wait_metric(&self, name: &str, check: impl Fn(f64) -> bool) -> f64 {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let value = self.metric(name).await;
            if check(value) {
                return value;
            }
            assert!(tokio::time::Instant::now() < deadline, "metric {name} stuck at {value}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

pub fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

/// GET `path` from a metrics listener: (status line, body).
pub async fn scrape(addr: SocketAddr, path: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    (head.lines().next().unwrap().to_owned(), body.to_owned())
}

/// A relay notice, owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Notice {
    Welcome(u8),
    Refused(RefusalReason),
    MemberGone(u8),
    GoAway,
}

/// What a read gave.
#[derive(Debug)]
pub enum Received {
    Frame(Vec<u8>),
    Closed,
    Timeout,
}

/// A TCP stream that keeps a copy of what it reads (the relay's TLS records, to measure them).
pub struct Recorded {
    tcp: TcpStream,
    seen: Vec<u8>,
}

impl tokio::io::AsyncRead for Recorded {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let poll = std::pin::Pin::new(&mut this.tcp).poll_read(cx, buf);
        this.seen.extend_from_slice(&buf.filled()[before..]);
        poll
    }
}

impl tokio::io::AsyncWrite for Recorded {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// A raw endpoint: TLS to the relay, frames by hand.
pub struct Client {
    tls: TlsStream<Recorded>,
    decoder: Box<StreamDecoder>,
    pending: Vec<u8>,
    pub session: u64,
    pub member: u8,
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        Self::try_connect(addr).await.expect("TLS to the relay")
    }

    pub async fn try_connect(addr: SocketAddr) -> std::io::Result<Client> {
        Self::connect_trusting(addr, pki().roots()).await
    }

    /// Connects trusting `roots` (for relays made with another PKI).
    pub async fn connect_trusting(addr: SocketAddr, roots: Arc<RootCertStore>) -> std::io::Result<Client> {
        Self::connect_with(addr, roots, b"lifeline/1").await
    }

    /// Connects offering the ALPN protocol `alpn`.
    pub async fn connect_with(addr: SocketAddr, roots: Arc<RootCertStore>, alpn: &[u8]) -> std::io::Result<Client> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        let tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        let tcp = Recorded { tcp, seen: Vec::new() };
        let tls = TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
        Ok(Client { tls, decoder: Box::new(StreamDecoder::new()), pending: Vec::new(), session: 0, member: 0xFF })
    }

    /// Connects and presents `ticket`; panics unless welcomed.
    pub async fn join(addr: SocketAddr, session: u64, ticket: &[u8], resume: Option<u8>) -> Client {
        let mut client = Client::connect(addr).await;
        match client.admit(session, ticket, resume).await {
            Notice::Welcome(_) => client,
            other => panic!("not admitted: {other:?}"),
        }
    }

    /// The negotiated ALPN protocol.
    pub fn alpn(&self) -> Option<Vec<u8>> {
        self.tls.get_ref().1.alpn_protocol().map(<[u8]>::to_vec)
    }

    /// The length of every TLS record received so far (header included).
    pub fn record_lengths(&self) -> Vec<usize> {
        let seen = &self.tls.get_ref().0.seen;
        let mut lengths = Vec::new();
        let mut at = 0;
        while let Some(header) = seen.get(at..at + 5) {
            let len = 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
            lengths.push(len);
            at += len;
        }
        lengths
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.tls.write_all(bytes).await?;
        self.tls.flush().await
    }

    /// Sends a frame with any header fields.
    pub async fn send(&mut self, kind: FrameKind, session: u64, sender: u8, destination: Destination, body: &[u8]) {
        self.send_raw(&frame(kind, session, sender, destination, body)).await.unwrap();
    }

    /// Sends a frame from this member in its session.
    pub async fn send_as_me(&mut self, kind: FrameKind, destination: Destination, body: &[u8]) {
        self.send(kind, self.session, self.member, destination, body).await;
    }

    /// Sends `Admit` and returns the relay's answer.
    pub async fn admit(&mut self, session: u64, ticket: &[u8], resume: Option<u8>) -> Notice {
        let mut buf = vec![0u8; 1024];
        let len = RelayRepr::Admit { resume: resume.map(MemberId), ticket }
            .emit_frame(session, Destination::Member(MemberId::RELAY), &mut buf)
            .unwrap();
        self.send_raw(&buf[..len]).await.unwrap();
        let notice = self.notice(Duration::from_secs(5)).await.expect("an answer to Admit");
        if let Notice::Welcome(member) = notice {
            self.session = session;
            self.member = member;
        }
        notice
    }

    /// The next frame, or why there is none.
    pub async fn recv(&mut self, within: Duration) -> Received {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match self.decoder.next_frame() {
                Ok(Some(frame)) => return Received::Frame(frame.to_vec()),
                Ok(None) => {}
                Err(error) => panic!("relay sent a bad frame: {error}"),
            }
            if !self.pending.is_empty() {
                let taken = self.decoder.push(&self.pending);
                self.pending.drain(..taken);
                continue;
            }
            let mut buf = vec![0u8; 32 * 1024];
            match tokio::time::timeout_at(deadline, self.tls.read(&mut buf)).await {
                Err(_) => return Received::Timeout,
                Ok(Ok(0) | Err(_)) => return Received::Closed,
                Ok(Ok(n)) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// The next frame; panics on close or timeout.
    pub async fn expect_frame(&mut self) -> Vec<u8> {
        match self.recv(Duration::from_secs(5)).await {
            Received::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// The next relay notice (skipping nothing: the next frame must be one).
    pub async fn notice(&mut self, within: Duration) -> Option<Notice> {
        match self.recv(within).await {
            Received::Frame(frame) => Some(parse_notice(&frame)),
            _ => None,
        }
    }

    /// Whether nothing arrives for `quiet`.
    pub async fn nothing_within(&mut self, quiet: Duration) -> bool {
        matches!(self.recv(quiet).await, Received::Timeout)
    }

    /// Reads (discarding frames) until the relay closes; `true` if it did within `within`.
    pub async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Received::Closed => return true,
                Received::Timeout => return false,
                Received::Frame(_) => {}
            }
        }
    }
}

pub fn frame(kind: FrameKind, session: u64, sender: u8, destination: Destination, body: &[u8]) -> Vec<u8> {
    let mut out = vec![0u8; HEADER_LEN + body.len()];
    emit_frame(kind, session, MemberId(sender), destination, body, &mut out).unwrap();
    out
}

pub fn parse_notice(frame: &[u8]) -> Notice {
    let header = RoutingHeader::parse(frame).unwrap();
    assert_eq!(header.kind, FrameKind::Relay, "expected a relay notice");
    assert_eq!(header.sender, MemberId::RELAY);
    match RelayRepr::parse(&frame[HEADER_LEN..]).unwrap() {
        RelayRepr::Welcome { member } => Notice::Welcome(member.0),
        RelayRepr::Refused { reason } => Notice::Refused(reason),
        RelayRepr::MemberGone { member } => Notice::MemberGone(member.0),
        RelayRepr::GoAway => Notice::GoAway,
        other => panic!("unexpected relay message {other:?}"),
    }
}

/// A body of `len` bytes that changes with `seed` (and is at least the protected overhead).
pub fn body(seed: u32, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len.max(lifeline_core::wire::PROTECTED_OVERHEAD))
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            state as u8
        })
        .collect()
}
