//! Relay-to-relay links: mutual TLS 1.3 (ALPN `lifeline-mesh/1`), one per pair of relays, each
//! multiplexing circuits (one per endpoint connection carried to its session's home relay).
//!
//! Link messages, big-endian:
//!
//! ```text
//! type u8 | circuit u32 | length u16 | payload (length bytes)
//!
//! 0x01 HELLO  circuit 0   payload: version u8 (1) | name (ASCII, 1..=64)   first message, each way
//! 0x02 OPEN   circuit c   payload: the endpoint's Admit frame (a whole Lifeline frame)
//! 0x03 DATA   circuit c   payload: one whole Lifeline frame
//! 0x04 CLOSE  circuit c   payload: empty
//! 0x05 PING   circuit 0   payload: empty (sent after keepalive_secs without traffic)
//! ```
//!
//! The relay that dials (the one with the smaller name) numbers its circuits with odd ids, the
//! other with even ids, so both can open circuits on one link without colliding. The relay that
//! opens a circuit is the one the endpoint is connected to; the other, the session's home,
//! admits it as if it were local and never forwards it further (one hop).

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Duration;

use lifeline_core::wire::relay::{RefusalReason, RelayRepr};
use lifeline_core::wire::{Destination, HEADER_LEN, MAX_FRAME_LEN, RoutingHeader};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_rustls::{TlsAcceptor, TlsConnector, TlsStream};
use tracing::{debug, info, warn};

use crate::config::{MeshConfig, MeshPeer};
use crate::endpoint::{refusal_metric, route_from_member, verify_admit};
use crate::metrics::{DropReason, HandshakeFailure, Metrics};
use crate::outbox::{Close, FrameBytes, Outbox, Pushed, lock};
use crate::registry::{Admitted, relay_frame};
use crate::relay::Shared;
use crate::tls::{ALPN_MESH, certificate_names};

/// The link protocol version in HELLO.
const MESH_VERSION: u8 = 1;
const MESSAGE_HEADER_LEN: usize = 7;
/// Bytes the link writer gathers before one TLS write.
const WRITE_BATCH: usize = 64 * 1024;
/// Unauthenticated mesh handshakes in progress at once.
const MAX_PENDING_HANDSHAKES: usize = 32;
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

mod message_type {
    pub(super) const HELLO: u8 = 0x01;
    pub(super) const OPEN: u8 = 0x02;
    pub(super) const DATA: u8 = 0x03;
    pub(super) const CLOSE: u8 = 0x04;
    pub(super) const PING: u8 = 0x05;
}

/// One link message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Message {
    Hello(String),
    Open(u32, FrameBytes),
    Data(u32, FrameBytes),
    Close(u32),
    Ping,
}

/// This relay's links.
#[derive(Debug)]
pub(crate) struct Mesh {
    config: MeshConfig,
    links: std::sync::Mutex<HashMap<String, Arc<Link>>>,
    pending_handshakes: Arc<Semaphore>,
}

/// One established link to a peer relay.
#[derive(Debug)]
pub(crate) struct Link {
    peer: String,
    tx: mpsc::Sender<Message>,
    pub(crate) metrics: Arc<Metrics>,
    ours_odd: bool,
    next_circuit: AtomicU32,
    /// Circuits this relay opened: endpoint here, session homed on the peer.
    outgoing: std::sync::Mutex<HashMap<u32, (u64, Arc<Outbox>)>>,
    /// Circuits the peer opened: endpoint there, session homed here.
    incoming: std::sync::Mutex<HashMap<u32, (Admitted, Arc<Outbox>)>>,
    down: AtomicBool,
    replaced: Notify,
}

impl Mesh {
    pub(crate) fn new(config: MeshConfig) -> Mesh {
        Mesh {
            config,
            links: std::sync::Mutex::default(),
            pending_handshakes: Arc::new(Semaphore::new(MAX_PENDING_HANDSHAKES)),
        }
    }

    /// The link to `peer`, if it is up.
    pub(crate) fn link(&self, peer: &str) -> Option<Arc<Link>> {
        lock(&self.links).get(peer).filter(|link| !link.down.load(Ordering::SeqCst)).cloned()
    }

    /// The outboxes of endpoints connected here whose session is homed elsewhere.
    pub(crate) fn forwarded_outboxes(&self) -> Vec<(u64, Arc<Outbox>)> {
        let links: Vec<Arc<Link>> = lock(&self.links).values().cloned().collect();
        links.iter().flat_map(|link| lock(&link.outgoing).values().cloned().collect::<Vec<_>>()).collect()
    }
}

impl Link {
    fn is_ours(&self, circuit: u32) -> bool {
        (circuit % 2 == 1) == self.ours_odd
    }

    /// Opens a circuit for an endpoint connected here: `outbox` receives what the home relay
    /// sends it. `None` if the link is down.
    pub(crate) async fn open(&self, session: u64, outbox: Arc<Outbox>, admit: FrameBytes) -> Option<u32> {
        if self.down.load(Ordering::SeqCst) {
            return None;
        }
        let circuit = {
            let mut outgoing = lock(&self.outgoing);
            let circuit = loop {
                let id = self.next_circuit.fetch_add(2, Ordering::Relaxed);
                if id != 0 && !outgoing.contains_key(&id) {
                    break id;
                }
            };
            outgoing.insert(circuit, (session, outbox));
            circuit
        };
        if self.tx.send(Message::Open(circuit, admit)).await.is_err() || self.down.load(Ordering::SeqCst) {
            lock(&self.outgoing).remove(&circuit);
            return None;
        }
        self.metrics.mesh_circuits.add(1);
        Some(circuit)
    }

    /// Sends a frame on a circuit; `false` if the link is gone.
    pub(crate) async fn send_data(&self, circuit: u32, frame: FrameBytes) -> bool {
        self.tx.send(Message::Data(circuit, frame)).await.is_ok()
    }

    /// Ends a circuit this relay opened (the endpoint's connection ended).
    pub(crate) async fn close_outgoing(&self, circuit: u32) {
        if lock(&self.outgoing).remove(&circuit).is_some() {
            let _ = tokio::time::timeout(CLOSE_TIMEOUT, self.tx.send(Message::Close(circuit))).await;
        }
        self.metrics.mesh_circuits.add(-1);
    }
}

/// Starts the mesh: the listener (if any) and one dialer per peer whose name sorts after ours.
pub(crate) fn start(shared: &Arc<Shared>, listener: Option<TcpListener>) {
    let Some(mesh) = &shared.mesh else { return };
    if let Some(listener) = listener {
        shared.spawn(accept_links(shared.clone(), listener));
    }
    for peer in mesh.config.peers.iter().filter(|peer| shared.name < peer.name) {
        shared.spawn(dial_loop(shared.clone(), peer.clone()));
    }
}

async fn accept_links(shared: Arc<Shared>, listener: TcpListener) {
    let Some(mesh) = &shared.mesh else { return };
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shared.forced() => return,
        };
        let (tcp, addr) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                warn!("mesh accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = mesh.pending_handshakes.clone().try_acquire_owned() else {
            shared.metrics.mesh_handshake_failed(HandshakeFailure::Capacity);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let task_shared = shared.clone();
        shared.spawn(async move {
            let shared = task_shared;
            let handshake = tokio::time::timeout(shared.limits.handshake_timeout(), accept_peer(&shared, tcp));
            let outcome = tokio::select! {
                outcome = handshake => outcome,
                () = shared.forced() => return,
            };
            drop(permit);
            match outcome {
                Ok(Ok((name, stream))) => run_link(shared, name, false, TlsStream::Server(stream)).await,
                Ok(Err(failure)) => {
                    warn!(%addr, reason = failure.label(), "mesh peer refused");
                    shared.metrics.mesh_handshake_failed(failure);
                }
                Err(_) => {
                    warn!(%addr, "mesh peer handshake timed out");
                    shared.metrics.mesh_handshake_failed(HandshakeFailure::Timeout);
                }
            }
        });
    }
}

/// TLS with a client certificate from the fleet CA, then HELLO: the claimed name must be a
/// configured peer that dials us, and the certificate must be valid for it.
async fn accept_peer(
    shared: &Shared,
    tcp: TcpStream,
) -> Result<(String, tokio_rustls::server::TlsStream<TcpStream>), HandshakeFailure> {
    let mut tls =
        TlsAcceptor::from(shared.tls.mesh_server.clone()).accept(tcp).await.map_err(|_| HandshakeFailure::Tls)?;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN_MESH) {
        return Err(HandshakeFailure::Alpn);
    }
    let Ok(Message::Hello(name)) = read_message(&mut tls).await else {
        return Err(HandshakeFailure::BadFrame);
    };
    let configured = shared
        .mesh
        .as_ref()
        .is_some_and(|mesh| mesh.config.peers.iter().any(|peer| peer.name == name) && name < shared.name);
    let certified = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .is_some_and(|cert| certificate_names(cert, &name));
    if !configured || !certified {
        return Err(HandshakeFailure::UnknownPeer);
    }
    let mut hello = Vec::new();
    encode(&Message::Hello(shared.name.clone()), &mut hello);
    tls.write_all(&hello).await.map_err(|_| HandshakeFailure::Closed)?;
    tls.flush().await.map_err(|_| HandshakeFailure::Closed)?;
    Ok((name, tls))
}

async fn dial_loop(shared: Arc<Shared>, peer: MeshPeer) {
    let Some(mesh) = &shared.mesh else { return };
    let min = Duration::try_from_secs_f64(mesh.config.reconnect_min_secs).unwrap_or(Duration::from_secs(1));
    let max = Duration::try_from_secs_f64(mesh.config.reconnect_max_secs).unwrap_or(Duration::from_secs(30));
    let mut delay = min;
    loop {
        let attempt = tokio::time::timeout(shared.limits.handshake_timeout(), dial(&shared, &peer));
        let outcome = tokio::select! {
            outcome = attempt => outcome,
            () = shared.forced() => return,
        };
        match outcome {
            Ok(Ok(stream)) => {
                delay = min;
                run_link(shared.clone(), peer.name.clone(), true, TlsStream::Client(stream)).await;
            }
            Ok(Err(error)) => debug!(peer = %peer.name, "mesh dial failed: {error}"),
            Err(_) => debug!(peer = %peer.name, "mesh dial timed out"),
        }
        if shared.is_draining() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shared.forced() => return,
        }
        delay = (delay * 2).min(max);
    }
}

async fn dial(shared: &Shared, peer: &MeshPeer) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
    let tcp = TcpStream::connect(peer.address.as_str()).await.map_err(|e| format!("{}: {e}", peer.address))?;
    let _ = tcp.set_nodelay(true);
    let server_name = ServerName::try_from(peer.name.clone()).map_err(|e| format!("peer name: {e}"))?;
    let mut tls = TlsConnector::from(shared.tls.mesh_client.clone())
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    if tls.get_ref().1.alpn_protocol() != Some(ALPN_MESH) {
        return Err("peer did not agree on ALPN lifeline-mesh/1".into());
    }
    let mut hello = Vec::new();
    encode(&Message::Hello(shared.name.clone()), &mut hello);
    tls.write_all(&hello).await.map_err(|e| format!("hello: {e}"))?;
    tls.flush().await.map_err(|e| format!("hello: {e}"))?;
    match read_message(&mut tls).await {
        Ok(Message::Hello(name)) if name == peer.name => Ok(tls),
        Ok(_) => Err("unexpected hello from the peer".into()),
        Err(error) => Err(format!("peer refused the link: {error}")),
    }
}

async fn run_link(shared: Arc<Shared>, peer: String, dialed: bool, stream: TlsStream<TcpStream>) {
    let Some(mesh) = &shared.mesh else { return };
    let (tx, rx) = mpsc::channel(mesh.config.link_queue_messages);
    let link = Arc::new(Link {
        peer: peer.clone(),
        tx,
        metrics: shared.metrics.clone(),
        ours_odd: dialed,
        next_circuit: AtomicU32::new(if dialed { 1 } else { 2 }),
        outgoing: std::sync::Mutex::default(),
        incoming: std::sync::Mutex::default(),
        down: AtomicBool::new(false),
        replaced: Notify::new(),
    });
    if let Some(old) = lock(&mesh.links).insert(peer.clone(), link.clone()) {
        old.replaced.notify_one();
    }
    shared.metrics.mesh_links_up.add(1);
    info!(relay = %shared.name, %peer, "mesh link up");
    let keepalive = mesh.config.keepalive();
    let (read, write) = tokio::io::split(stream);
    let end = tokio::select! {
        end = read_link(&shared, &link, BufReader::with_capacity(32 * 1024, read), keepalive * 3) => end,
        end = write_link(rx, write, keepalive) => end,
        () = link.replaced.notified() => "replaced by a newer link".to_owned(),
        () = shared.forced() => "relay shut down".to_owned(),
    };
    link.down.store(true, Ordering::SeqCst);
    {
        let mut links = lock(&mesh.links);
        if links.get(&peer).is_some_and(|current| Arc::ptr_eq(current, &link)) {
            links.remove(&peer);
        }
    }
    let outgoing: Vec<_> = lock(&link.outgoing).drain().collect();
    for (_, (_, outbox)) in outgoing {
        outbox.close(Close::Now);
    }
    let incoming: Vec<_> = lock(&link.incoming).drain().collect();
    for (_, (_, outbox)) in incoming {
        outbox.close(Close::Now);
    }
    shared.metrics.mesh_links_up.add(-1);
    warn!(relay = %shared.name, %peer, "mesh link down: {end}");
}

async fn read_link<R: AsyncRead + Unpin>(
    shared: &Arc<Shared>,
    link: &Arc<Link>,
    mut reader: R,
    dead_after: Duration,
) -> String {
    loop {
        let message = match tokio::time::timeout(dead_after, read_message(&mut reader)).await {
            Err(_) => return "peer silent past three keepalives".into(),
            Ok(Err(error)) => return format!("read: {error}"),
            Ok(Ok(message)) => message,
        };
        match message {
            Message::Ping => {}
            Message::Hello(_) => return "protocol error: second hello".into(),
            Message::Open(circuit, frame) => {
                if link.is_ours(circuit) {
                    return "protocol error: open with our circuit parity".into();
                }
                open_incoming(shared, link, circuit, frame).await;
            }
            Message::Data(circuit, frame) if link.is_ours(circuit) => {
                let Some((_, outbox)) = lock(&link.outgoing).get(&circuit).cloned() else { continue };
                let control = RoutingHeader::parse(&frame).is_ok_and(|header| header.kind.is_control());
                match outbox.push(frame, control) {
                    Pushed::Dropped => shared.metrics.drop_frame(DropReason::SlowConsumer),
                    Pushed::Overflow => shared.metrics.drop_frame(DropReason::ControlOverflow),
                    Pushed::Queued | Pushed::Closed => {}
                }
            }
            Message::Data(circuit, frame) => {
                let Some((admitted, outbox)) = lock(&link.incoming).get(&circuit).cloned() else { continue };
                if let Err(end) = route_from_member(shared, &admitted, &frame) {
                    debug!(peer = %link.peer, circuit, "closing circuit: {end}");
                    outbox.close(Close::Now);
                }
            }
            Message::Close(circuit) if link.is_ours(circuit) => {
                if let Some((_, outbox)) = lock(&link.outgoing).remove(&circuit) {
                    outbox.close(Close::AfterFlush);
                }
            }
            Message::Close(circuit) => {
                if let Some((_, outbox)) = lock(&link.incoming).remove(&circuit) {
                    outbox.close(Close::Now);
                }
            }
        }
    }
}

/// The home side of OPEN: admit the endpoint as if it were connected here.
async fn open_incoming(shared: &Arc<Shared>, link: &Arc<Link>, circuit: u32, frame: FrameBytes) {
    if lock(&link.incoming).contains_key(&circuit) {
        return;
    }
    let session = RoutingHeader::parse(&frame).map_or(0, |header| header.session);
    let refusal = if shared.is_draining() {
        Err((HandshakeFailure::ShuttingDown, RefusalReason::ShuttingDown))
    } else {
        verify_admit(shared, &frame)
    };
    let admission = refusal.and_then(|request| {
        let outbox = shared.outbox();
        let conn = shared.next_conn();
        shared
            .registry
            .admit(request.session, request.role, request.resume, request.ticket_id, conn, &outbox)
            .map(|admitted| (admitted, outbox))
            .map_err(|reason| (refusal_metric(reason), reason))
    });
    match admission {
        Ok((admitted, outbox)) => {
            info!(peer = %link.peer, session, member = admitted.member.0, circuit, "admitted over the mesh");
            lock(&link.incoming).insert(circuit, (admitted.clone(), outbox.clone()));
            shared.spawn(incoming_circuit(shared.clone(), link.clone(), circuit, admitted, outbox));
        }
        Err((failure, reason)) => {
            debug!(peer = %link.peer, circuit, reason = failure.label(), "admission over the mesh refused");
            shared.metrics.handshake_failed(failure);
            if let Some(refused) = relay_frame(RelayRepr::Refused { reason }, session, Destination::AllMembers) {
                let _ = link.tx.send(Message::Data(circuit, refused)).await;
            }
            let _ = link.tx.send(Message::Close(circuit)).await;
        }
    }
}

/// Carries what the home relay routes to a member connected at the peer.
async fn incoming_circuit(shared: Arc<Shared>, link: Arc<Link>, circuit: u32, admitted: Admitted, outbox: Arc<Outbox>) {
    shared.metrics.mesh_circuits.add(1);
    while let Some(frame) = outbox.next_frame().await {
        if link.tx.send(Message::Data(circuit, frame)).await.is_err() {
            break;
        }
    }
    shared.registry.leave(&admitted);
    outbox.close(Close::Now);
    let closed_here = lock(&link.incoming).remove(&circuit).is_some();
    if closed_here {
        let _ = tokio::time::timeout(CLOSE_TIMEOUT, link.tx.send(Message::Close(circuit))).await;
    }
    shared.metrics.mesh_circuits.add(-1);
}

async fn write_link<W: AsyncWrite + Unpin>(
    mut rx: mpsc::Receiver<Message>,
    mut writer: W,
    keepalive: Duration,
) -> String {
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    loop {
        let first = match tokio::time::timeout(keepalive, rx.recv()).await {
            Ok(Some(message)) => message,
            Ok(None) => return "link closed".into(),
            Err(_) => Message::Ping,
        };
        encode(&first, &mut batch);
        while batch.len() < WRITE_BATCH {
            let Ok(message) = rx.try_recv() else { break };
            encode(&message, &mut batch);
        }
        let written = async {
            writer.write_all(&batch).await?;
            writer.flush().await
        };
        if let Err(error) = written.await {
            return format!("write: {error}");
        }
        batch.clear();
    }
}

/// Appends one message to `out`.
pub(crate) fn encode(message: &Message, out: &mut Vec<u8>) {
    let (kind, circuit, payload): (u8, u32, &[u8]) = match message {
        Message::Hello(name) => (message_type::HELLO, 0, name.as_bytes()),
        Message::Open(circuit, frame) => (message_type::OPEN, *circuit, frame),
        Message::Data(circuit, frame) => (message_type::DATA, *circuit, frame),
        Message::Close(circuit) => (message_type::CLOSE, *circuit, &[]),
        Message::Ping => (message_type::PING, 0, &[]),
    };
    let extra = usize::from(kind == message_type::HELLO);
    // Frames are at most MAX_FRAME_LEN and names at most 64 bytes: the length always fits.
    let len = u16::try_from(payload.len() + extra).unwrap_or(u16::MAX);
    out.push(kind);
    out.extend_from_slice(&circuit.to_be_bytes());
    out.extend_from_slice(&len.to_be_bytes());
    if kind == message_type::HELLO {
        out.push(MESH_VERSION);
    }
    out.extend_from_slice(payload);
}

/// Reads one message; protocol violations are `InvalidData`.
pub(crate) async fn read_message<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Message> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut header = [0u8; MESSAGE_HEADER_LEN];
    reader.read_exact(&mut header).await?;
    let kind = header[0];
    let circuit = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    let len = usize::from(u16::from_be_bytes([header[5], header[6]]));
    let max = match kind {
        message_type::HELLO => 1 + lifeline_ticket::MAX_RELAY_NAME_LEN,
        message_type::OPEN | message_type::DATA => MAX_FRAME_LEN,
        message_type::CLOSE | message_type::PING => 0,
        _ => return Err(invalid("unknown mesh message type")),
    };
    if len > max {
        return Err(invalid("mesh message too long"));
    }
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    let circuit_zero = circuit == 0;
    match kind {
        message_type::HELLO if circuit_zero => {
            let (&version, name) = payload.split_first().ok_or_else(|| invalid("empty hello"))?;
            let name = String::from_utf8(name.to_vec()).map_err(|_| invalid("hello name"))?;
            if version != MESH_VERSION || !lifeline_ticket::valid_relay_name(&name) {
                return Err(invalid("hello version or name"));
            }
            Ok(Message::Hello(name))
        }
        message_type::OPEN | message_type::DATA if !circuit_zero => {
            let whole_frame =
                RoutingHeader::parse(&payload).is_ok_and(|header| header.frame_len() == len && len >= HEADER_LEN);
            if !whole_frame {
                return Err(invalid("mesh payload is not one whole frame"));
            }
            let frame = FrameBytes::from(payload);
            Ok(if kind == message_type::OPEN { Message::Open(circuit, frame) } else { Message::Data(circuit, frame) })
        }
        message_type::CLOSE if !circuit_zero => Ok(Message::Close(circuit)),
        message_type::PING if circuit_zero => Ok(Message::Ping),
        _ => Err(invalid("circuit id not allowed for this message type")),
    }
}

#[cfg(test)]
mod tests {
    use lifeline_core::wire::{FrameKind, MemberId, emit_frame};

    use super::*;

    fn frame(len: usize) -> FrameBytes {
        let mut out = vec![0u8; HEADER_LEN + len];
        emit_frame(FrameKind::Handshake, 5, MemberId(1), Destination::AllMembers, &vec![3u8; len], &mut out).unwrap();
        out.into()
    }

    #[tokio::test]
    async fn messages_round_trip() {
        let messages = [
            Message::Hello("relay-a".into()),
            Message::Open(1, frame(10)),
            Message::Data(4, frame(0)),
            Message::Data(u32::MAX, frame(MAX_FRAME_LEN - HEADER_LEN)),
            Message::Close(7),
            Message::Ping,
        ];
        let mut bytes = Vec::new();
        for message in &messages {
            encode(message, &mut bytes);
        }
        assert_eq!(&bytes[..8], &[0x01, 0, 0, 0, 0, 0, 8, MESH_VERSION]);
        let mut reader = &bytes[..];
        for message in messages {
            assert_eq!(read_message(&mut reader).await.unwrap(), message);
        }
        assert!(reader.is_empty());
    }

    #[tokio::test]
    async fn malformed_messages_are_refused() {
        let cases: [&[u8]; 6] = [
            &[0x09, 0, 0, 0, 1, 0, 0],                // unknown type
            &[0x05, 0, 0, 0, 1, 0, 0],                // ping on a circuit
            &[0x04, 0, 0, 0, 0, 0, 0],                // close of circuit 0
            &[0x04, 0, 0, 0, 1, 0, 1, 0],             // close with a payload
            &[0x03, 0, 0, 0, 1, 0, 3, 1, 2, 3],       // data that is not a frame
            &[0x01, 0, 0, 0, 0, 0, 3, 1, b'A', b'B'], // bad name
        ];
        for case in cases {
            let mut reader = case;
            assert!(read_message(&mut reader).await.is_err(), "{case:?}");
        }
        let mut long = frame(20).to_vec();
        long.push(0);
        let mut bytes = vec![0x03, 0, 0, 0, 1];
        bytes.extend_from_slice(&(long.len() as u16).to_be_bytes());
        bytes.extend_from_slice(&long);
        assert!(read_message(&mut &bytes[..]).await.is_err(), "trailing byte after the frame");
    }
}
