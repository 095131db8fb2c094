//! Test helpers: a throw-away PKI, plain TLS servers, and a minimal relay stand-in.
//!
//! The stand-in is deliberately tiny: it answers `Admit` with `Welcome` (ticket `leader` → id 0,
//! `member` → the next free id, `bad` → `Refused`), routes frames by the routing header, reports
//! closed connections with `MemberGone`, and can drop every connection or send `GoAway` on
//! command. It verifies nothing else; the real relay lives in `relay-server/relay`.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lifeline_core::wire::relay::{RefusalReason, RelayRepr};
use lifeline_core::wire::{Destination, FrameKind, HEADER_LEN, MemberId, RoutingHeader, StreamDecoder};
use lifeline_transport_tokio::{ConnectionState, SessionEvents, TransportEvent, TrustAnchors, client_config};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// A CA and a server certificate for `localhost` and `127.0.0.1`.
pub struct TestPki {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

impl TestPki {
    pub fn new(name: &str) -> TestPki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let server_key = KeyPair::generate().unwrap();
        let params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        let certificate = params.signed_by(&server_key, &ca).unwrap();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![CertificateDer::from(certificate.der().to_vec())], key)
            .unwrap();
        server.alpn_protocols = vec![b"lifeline/1".to_vec()];
        TestPki { ca_pem: ca.pem(), server: Arc::new(server) }
    }

    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        client_config(&TrustAnchors::CaPem(self.ca_pem.clone().into_bytes())).unwrap()
    }
}

/// Binds a loopback listener on a free port.
pub async fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// A port with nothing listening (bound, then released).
pub async fn closed_port() -> u16 {
    let (listener, port) = listener().await;
    drop(listener);
    port
}

/// Accepts TCP connections and never says a word (a TLS handshake on it never finishes).
pub async fn silent_server(tasks: &mut JoinSet<()>) -> u16 {
    let (listener, port) = listener().await;
    tasks.spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    port
}

/// Completes TLS handshakes with `config` and holds the connections open.
pub async fn tls_server(tasks: &mut JoinSet<()>, config: Arc<rustls::ServerConfig>) -> u16 {
    let (listener, port) = listener().await;
    let acceptor = TlsAcceptor::from(config);
    tasks.spawn(async move {
        let mut held = JoinSet::new();
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            held.spawn(async move {
                if let Ok(mut tls) = acceptor.accept(stream).await {
                    let mut buf = [0u8; 1024];
                    while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            });
        }
    });
    port
}

/// A tiny HTTP CONNECT proxy: records each request head, answers `status`, then (on 200)
/// relays bytes both ways.
pub struct TestProxy {
    pub port: u16,
    pub requests: Arc<Mutex<Vec<String>>>,
}

pub async fn http_proxy(tasks: &mut JoinSet<()>, status: u16) -> TestProxy {
    let (listener, port) = listener().await;
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    tasks.spawn(async move {
        let mut held = JoinSet::new();
        while let Ok((mut client, _)) = listener.accept().await {
            let log = Arc::clone(&log);
            held.spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if client.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let head = String::from_utf8_lossy(&head).into_owned();
                let target = head.split_whitespace().nth(1).unwrap_or_default().to_owned();
                log.lock().unwrap().push(head);
                if status != 200 {
                    let _ = client.write_all(format!("HTTP/1.1 {status} No\r\n\r\n").as_bytes()).await;
                    return;
                }
                let Ok(mut upstream) = TcpStream::connect(target).await else { return };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").await;
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            });
        }
    });
    TestProxy { port, requests }
}

// ---- the relay stand-in -----------------------------------------------------------------

enum Outgoing {
    Frame(Vec<u8>),
    Drop,
}

#[derive(Default)]
struct RelayState {
    session: u64,
    /// Live connections: member id → (connection number, sender).
    members: HashMap<u8, (u64, mpsc::UnboundedSender<Outgoing>)>,
    next_connection: u64,
    /// Every `Admit` seen: (listener port, resume id).
    admits: Vec<(u16, Option<u8>)>,
}

pub struct TestRelay {
    pub ports: Vec<u16>,
    state: Arc<Mutex<RelayState>>,
    tasks: JoinSet<()>,
}

impl TestRelay {
    /// A relay stand-in on `listeners` loopback ports sharing one routing table.
    pub async fn start(pki: &TestPki, listeners: usize) -> TestRelay {
        let state = Arc::new(Mutex::new(RelayState::default()));
        let mut tasks = JoinSet::new();
        let mut ports = Vec::new();
        for _ in 0..listeners {
            let (listener, port) = listener().await;
            ports.push(port);
            let (state, acceptor) = (Arc::clone(&state), TlsAcceptor::from(Arc::clone(&pki.server)));
            tasks.spawn(async move {
                let mut connections = JoinSet::new();
                while let Ok((stream, _)) = listener.accept().await {
                    let (state, acceptor) = (Arc::clone(&state), acceptor.clone());
                    connections.spawn(async move {
                        if let Ok(tls) = acceptor.accept(stream).await {
                            serve(tls, state, port).await;
                        }
                    });
                }
            });
        }
        TestRelay { ports, state, tasks }
    }

    /// Closes every connection, as a relay restart or a network cut would.
    pub fn drop_all(&self) {
        for (_, sender) in self.state.lock().unwrap().members.values() {
            let _ = sender.send(Outgoing::Drop);
        }
    }

    /// Closes `member`'s connection.
    pub fn drop_member(&self, member: u8) {
        if let Some((_, sender)) = self.state.lock().unwrap().members.get(&member) {
            let _ = sender.send(Outgoing::Drop);
        }
    }

    /// Sends `GoAway` to `member`.
    pub fn go_away(&self, member: u8) {
        let mut frame = vec![0u8; 64];
        let session = self.state.lock().unwrap().session;
        let len = RelayRepr::GoAway.emit_frame(session, Destination::Member(MemberId(member)), &mut frame).unwrap();
        frame.truncate(len);
        if let Some((_, sender)) = self.state.lock().unwrap().members.get(&member) {
            let _ = sender.send(Outgoing::Frame(frame));
        }
    }

    /// Every admission so far: (port, resume id).
    pub fn admits(&self) -> Vec<(u16, Option<u8>)> {
        self.state.lock().unwrap().admits.clone()
    }

    /// Stops listening and closes every connection.
    pub async fn stop(mut self) {
        self.drop_all();
        self.tasks.shutdown().await;
    }
}

fn relay_frame(session: u64, to: MemberId, message: RelayRepr<'_>) -> Vec<u8> {
    let mut frame = vec![0u8; 64];
    let len = message.emit_frame(session, Destination::Member(to), &mut frame).unwrap();
    frame.truncate(len);
    frame
}

async fn serve(mut tls: tokio_rustls::server::TlsStream<TcpStream>, state: Arc<Mutex<RelayState>>, port: u16) {
    let mut decoder: Box<StreamDecoder> = Box::new(StreamDecoder::new());
    let mut buf = vec![0u8; 16 * 1024];
    // Admission.
    let (session, ticket, resume) = loop {
        let Ok(n) = tls.read(&mut buf).await else { return };
        if n == 0 {
            return;
        }
        decoder.push(&buf[..n]);
        if let Ok(Some(frame)) = decoder.next_frame() {
            let header = RoutingHeader::parse(frame).unwrap();
            let Some(RelayRepr::Admit { resume, ticket }) = RelayRepr::parse(&frame[HEADER_LEN..]) else { return };
            break (header.session, ticket.to_vec(), resume);
        }
    };
    let (tx, mut rx) = mpsc::unbounded_channel();
    let admitted = {
        let mut state = state.lock().unwrap();
        state.session = session;
        state.admits.push((port, resume.map(|id| id.0)));
        let id = match (ticket.as_slice(), resume) {
            (b"leader", _) => Some(0),
            (b"member", Some(id)) if id.0 != 0 => Some(id.0),
            (b"member", None) => (1..0xFD).find(|id| !state.members.contains_key(id)),
            _ => None,
        };
        match id {
            Some(id) if state.members.contains_key(&id) => Err(RefusalReason::ResumeRefused),
            Some(id) => {
                state.next_connection += 1;
                let connection = state.next_connection;
                state.members.insert(id, (connection, tx));
                Ok((id, connection))
            }
            None => Err(RefusalReason::BadTicket),
        }
    };
    let (id, connection) = match admitted {
        Ok(admitted) => admitted,
        Err(reason) => {
            let _ = tls.write_all(&relay_frame(session, MemberId::RELAY, RelayRepr::Refused { reason })).await;
            let _ = tls.shutdown().await;
            return;
        }
    };
    if tls.write_all(&relay_frame(session, MemberId(id), RelayRepr::Welcome { member: MemberId(id) })).await.is_err() {
        return;
    }
    // Routing.
    'connection: loop {
        tokio::select! {
            read = tls.read(&mut buf) => {
                let n = match read { Ok(n) if n > 0 => n, _ => break };
                let mut input = &buf[..n];
                while !input.is_empty() {
                    let taken = decoder.push(input);
                    input = &input[taken..];
                    loop {
                        let frame = match decoder.next_frame() {
                            Ok(Some(frame)) => frame,
                            Ok(None) => break,
                            Err(_) => break 'connection,
                        };
                        let Ok(header) = RoutingHeader::parse(frame) else { break 'connection };
                        if header.sender.0 != id || header.kind == FrameKind::Relay {
                            continue;
                        }
                        let state = state.lock().unwrap();
                        for (member, (_, sender)) in &state.members {
                            let wanted = match header.destination {
                                Destination::AllMembers => *member != id,
                                Destination::Member(to) => to.0 == *member,
                            };
                            if wanted {
                                let _ = sender.send(Outgoing::Frame(frame.to_vec()));
                            }
                        }
                    }
                }
            }
            outgoing = rx.recv() => match outgoing {
                Some(Outgoing::Frame(frame)) => {
                    if tls.write_all(&frame).await.is_err() {
                        break;
                    }
                }
                Some(Outgoing::Drop) | None => break,
            },
        }
    }
    let mut state = state.lock().unwrap();
    if state.members.get(&id).is_some_and(|(number, _)| *number == connection) {
        state.members.remove(&id);
        let gone = relay_frame(session, MemberId::RELAY, RelayRepr::MemberGone { member: MemberId(id) });
        for (_, sender) in state.members.values() {
            let _ = sender.send(Outgoing::Frame(gone.clone()));
        }
    }
}

// ---- waiting for events -----------------------------------------------------------------

/// Waits (at most `limit`) for the first event `pick` accepts, skipping the others.
pub async fn wait_for<T>(
    events: &mut SessionEvents,
    limit: Duration,
    what: &str,
    mut pick: impl FnMut(&TransportEvent) -> Option<T>,
) -> T {
    let mut seen = Vec::new();
    let result = tokio::time::timeout(limit, async {
        while let Some(event) = events.next().await {
            if let Some(value) = pick(&event) {
                return Some(value);
            }
            seen.push(event);
        }
        None
    })
    .await;
    match result {
        Ok(Some(value)) => value,
        Ok(None) => panic!("events ended while waiting for {what}; seen: {seen:#?}"),
        Err(_) => panic!("timed out waiting for {what}; seen: {seen:#?}"),
    }
}

/// Waits for the driver's final `Closed` state.
pub async fn wait_closed(events: &mut SessionEvents, limit: Duration) -> lifeline_transport_tokio::CloseCause {
    wait_for(events, limit, "Closed", |event| match event {
        TransportEvent::Connection(ConnectionState::Closed { cause }) => Some(cause.clone()),
        _ => None,
    })
    .await
}

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}
