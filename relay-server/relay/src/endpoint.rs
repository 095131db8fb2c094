//! One endpoint connection: TLS, admission, then the reader (check and route every frame) and
//! the writer (drain the outbox, control first) until either ends.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lifeline_core::wire::relay::{RefusalReason, RelayRepr};
use lifeline_core::wire::{Destination, FrameKind, HEADER_LEN, MemberId, RoutingHeader, WireError};
use lifeline_ticket::{TicketError, TicketRole};
use rustls::server::Acceptor;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info};

use crate::mesh::Link;
use crate::metrics::{DropReason, HandshakeFailure, Metrics};
use crate::outbox::{Close, FrameBytes, Outbox};
use crate::registry::{Admitted, Role, relay_frame};
use crate::relay::{Shared, now_unix};
use crate::tls::{ALPN_ENDPOINT, ALPN_ENDPOINT_SMALL_RECORDS};

/// Bytes the writer gathers before one TLS write.
const WRITE_BATCH: usize = 32 * 1024;
/// How long a closing connection may take to deliver its last notice.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

type Reader = FrameReader<ReadHalf<TlsStream<TcpStream>>>;
type Writer = WriteHalf<TlsStream<TcpStream>>;

/// A verified `Admit`.
#[derive(Debug)]
pub(crate) struct AdmitRequest {
    pub(crate) session: u64,
    pub(crate) role: Role,
    pub(crate) resume: Option<MemberId>,
    pub(crate) home_relay: String,
    pub(crate) ticket_id: [u8; 16],
}

/// Checks that `frame` is an `Admit` with a valid ticket for the frame's session.
pub(crate) fn verify_admit(shared: &Shared, frame: &[u8]) -> Result<AdmitRequest, (HandshakeFailure, RefusalReason)> {
    let bad_frame = (HandshakeFailure::BadFrame, RefusalReason::Other);
    let header = RoutingHeader::parse(frame).map_err(|_| bad_frame)?;
    if header.kind != FrameKind::Relay {
        return Err(bad_frame);
    }
    let Some(RelayRepr::Admit { resume, ticket }) = RelayRepr::parse(frame.get(HEADER_LEN..).unwrap_or_default())
    else {
        return Err(bad_frame);
    };
    let ticket = shared.verifier.verify(ticket, now_unix()).map_err(|error| match error {
        TicketError::Expired => (HandshakeFailure::Expired, RefusalReason::BadTicket),
        _ => (HandshakeFailure::BadTicket, RefusalReason::BadTicket),
    })?;
    if ticket.session != header.session {
        return Err((HandshakeFailure::WrongSession, RefusalReason::BadTicket));
    }
    let role = match ticket.role {
        TicketRole::Leader => Role::Leader,
        TicketRole::Member => Role::Member,
        _ => return Err((HandshakeFailure::BadTicket, RefusalReason::BadTicket)),
    };
    Ok(AdmitRequest { session: header.session, role, resume, home_relay: ticket.home_relay, ticket_id: ticket.id })
}

/// Maps a registry refusal to its metric label.
pub(crate) fn refusal_metric(reason: RefusalReason) -> HandshakeFailure {
    match reason {
        RefusalReason::Full => HandshakeFailure::Full,
        RefusalReason::ResumeRefused => HandshakeFailure::ResumeRefused,
        RefusalReason::ShuttingDown => HandshakeFailure::ShuttingDown,
        RefusalReason::BadTicket => HandshakeFailure::BadTicket,
        _ => HandshakeFailure::BadFrame,
    }
}

/// Checks a frame from an admitted member and routes it. `Err` means the connection must end.
pub(crate) fn route_from_member(shared: &Shared, admitted: &Admitted, frame: &FrameBytes) -> Result<(), ReadEnd> {
    let metrics = &shared.metrics;
    metrics.frames_in.add(1);
    if frame.len() > shared.limits.max_frame_len {
        return Err(ReadEnd::TooLarge);
    }
    let Ok(header) = RoutingHeader::parse(frame) else {
        return Err(ReadEnd::Framing(None));
    };
    if header.kind == FrameKind::Relay {
        metrics.drop_frame(DropReason::RelayKind);
    } else if header.session != admitted.session.number {
        metrics.drop_frame(DropReason::WrongSession);
    } else if header.sender != admitted.member {
        metrics.drop_frame(DropReason::SpoofedSender);
    } else {
        let control = header.kind.is_control();
        admitted.session.route(admitted.member, admitted.conn, header.destination, frame, control, metrics);
    }
    Ok(())
}

/// Serves one accepted TCP connection to its end.
pub(crate) async fn serve(shared: Arc<Shared>, tcp: TcpStream, peer: SocketAddr, permit: OwnedSemaphorePermit) {
    let _permit = permit;
    shared.metrics.connections.add(1);
    let _connection = ConnectionGauge(shared.metrics.clone());
    let handshake = tokio::time::timeout(shared.limits.handshake_timeout(), handshake(&shared, tcp));
    let outcome = tokio::select! {
        outcome = handshake => outcome,
        () = shared.forced() => return,
    };
    let (mut reader, mut writer, admit_frame) = match outcome {
        Ok(Ok(admit)) => admit,
        Ok(Err(failure)) => {
            debug!(%peer, reason = failure.label(), "connection not admitted");
            shared.metrics.handshake_failed(failure);
            return;
        }
        Err(_) => {
            debug!(%peer, "no Admit before the handshake timeout");
            shared.metrics.handshake_failed(HandshakeFailure::Timeout);
            return;
        }
    };
    let request = match verify_admit(&shared, &admit_frame) {
        Ok(request) => request,
        Err((failure, reason)) => {
            debug!(%peer, reason = failure.label(), "admission refused");
            shared.metrics.handshake_failed(failure);
            let session = RoutingHeader::parse(&admit_frame).map_or(0, |header| header.session);
            refuse(&mut writer, session, reason).await;
            return;
        }
    };
    if shared.is_draining() {
        shared.metrics.handshake_failed(HandshakeFailure::ShuttingDown);
        refuse(&mut writer, request.session, RefusalReason::ShuttingDown).await;
        return;
    }
    if let Some(link) = forward_to(&shared, &request) {
        let outbox = shared.outbox();
        if let Some(circuit) = link.open(request.session, outbox.clone(), admit_frame).await {
            shared.metrics.forwarded.add(1);
            info!(%peer, session = request.session, home = %request.home_relay, circuit, "forwarded to the home relay");
            let end = tokio::select! {
                end = forward_frames(&link, circuit, &mut reader) => end,
                result = write_loop(&shared.metrics, &outbox, &mut writer) => ReadEnd::from_writer(result),
                () = shared.forced() => ReadEnd::Shutdown,
            };
            debug!(%peer, session = request.session, circuit, "forwarded connection ended: {end}");
            outbox.close(Close::Now);
            link.close_outgoing(circuit).await;
            return;
        }
        // The link went down in between: serve the session here.
        info!(session = request.session, home = %request.home_relay, "mesh link lost: adopting the session");
        shared.metrics.adoptions.add(1);
    }
    serve_local(&shared, peer, request, reader, writer).await;
}

/// Where an admitted endpoint's connection goes: `Some(link)` to forward it to the session's
/// home relay, `None` to serve it here (home is here, this relay already serves the session,
/// or the home relay is unknown or unreachable: adoption).
fn forward_to(shared: &Shared, request: &AdmitRequest) -> Option<Arc<Link>> {
    if request.home_relay == shared.name || shared.registry.contains(request.session) {
        return None;
    }
    let link = shared.mesh.as_ref().and_then(|mesh| mesh.link(&request.home_relay));
    if link.is_none() {
        info!(session = request.session, home = %request.home_relay, "home relay unreachable: adopting the session");
        shared.metrics.adoptions.add(1);
    }
    link
}

async fn serve_local(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    request: AdmitRequest,
    mut reader: Reader,
    mut writer: Writer,
) {
    let conn = shared.next_conn();
    let outbox = shared.outbox();
    let admitted =
        match shared.registry.admit(request.session, request.role, request.resume, request.ticket_id, conn, &outbox) {
            Ok(admitted) => admitted,
            Err(reason) => {
                debug!(%peer, session = request.session, "admission refused: {reason:?}");
                shared.metrics.handshake_failed(refusal_metric(reason));
                refuse(&mut writer, request.session, reason).await;
                return;
            }
        };
    info!(%peer, session = request.session, member = admitted.member.0, "admitted");
    let end = tokio::select! {
        end = route_frames(shared, &admitted, &mut reader) => end,
        result = write_loop(&shared.metrics, &outbox, &mut writer) => ReadEnd::from_writer(result),
        () = shared.forced() => ReadEnd::Shutdown,
    };
    info!(session = request.session, member = admitted.member.0, "connection ended: {end}");
    shared.registry.leave(&admitted);
    outbox.close(Close::Now);
}

async fn route_frames(shared: &Shared, admitted: &Admitted, reader: &mut Reader) -> ReadEnd {
    loop {
        let frame = match reader.next_frame(&shared.metrics).await {
            Ok(frame) => frame,
            Err(end) => return end,
        };
        if let Err(end) = route_from_member(shared, admitted, &frame) {
            return end;
        }
    }
}

async fn forward_frames(link: &Link, circuit: u32, reader: &mut Reader) -> ReadEnd {
    loop {
        let frame = match reader.next_frame(&link.metrics).await {
            Ok(frame) => frame,
            Err(end) => return end,
        };
        link.metrics.frames_in.add(1);
        if !link.send_data(circuit, frame).await {
            return ReadEnd::LinkDown;
        }
    }
}

/// Drains `outbox` into `writer` until the outbox closes, then closes TLS.
pub(crate) async fn write_loop<W: AsyncWrite + Unpin>(
    metrics: &Metrics,
    outbox: &Outbox,
    writer: &mut W,
) -> io::Result<()> {
    // Allocated while frames flow, freed when the queues run dry: an idle connection keeps none.
    let mut batch = Vec::new();
    while outbox.next_batch(&mut batch, WRITE_BATCH).await {
        writer.write_all(&batch).await?;
        writer.flush().await?;
        metrics.bytes_out.add(batch.len() as u64);
        batch.clear();
        if outbox.is_empty() || batch.capacity() > 2 * WRITE_BATCH {
            batch = Vec::new();
        }
    }
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, writer.shutdown()).await;
    Ok(())
}

/// Sends `Refused` and closes, best effort and bounded in time.
async fn refuse(writer: &mut Writer, session: u64, reason: RefusalReason) {
    let Some(frame) = relay_frame(RelayRepr::Refused { reason }, session, Destination::AllMembers) else {
        return;
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, async {
        writer.write_all(&frame).await?;
        writer.flush().await?;
        writer.shutdown().await
    })
    .await;
}

/// TLS handshake, ALPN check, first frame.
async fn handshake(shared: &Shared, tcp: TcpStream) -> Result<(Reader, Writer, FrameBytes), HandshakeFailure> {
    // The configuration is picked after the ClientHello: a constrained endpoint that offers
    // `lifeline/1-small` gets small TLS records; everyone else the default (16 KiB).
    let start = LazyConfigAcceptor::new(Acceptor::default(), tcp).await.map_err(|_| HandshakeFailure::Tls)?;
    let small_records = start
        .client_hello()
        .alpn()
        .is_some_and(|mut offered| offered.any(|protocol| protocol == ALPN_ENDPOINT_SMALL_RECORDS));
    let config = if small_records { &shared.tls.endpoint_small_records } else { &shared.tls.endpoint };
    let tls = start.into_stream(config.clone()).await.map_err(|_| HandshakeFailure::Tls)?;
    if !matches!(tls.get_ref().1.alpn_protocol(), Some(ALPN_ENDPOINT | ALPN_ENDPOINT_SMALL_RECORDS)) {
        return Err(HandshakeFailure::Alpn);
    }
    let (read, write) = tokio::io::split(tls);
    let mut reader = FrameReader::new(read, shared.limits.idle_timeout(), shared.limits.max_frame_len);
    match reader.next_frame(&shared.metrics).await {
        Ok(frame) => Ok((reader, write, frame)),
        Err(ReadEnd::Eof | ReadEnd::Io(_) | ReadEnd::Idle) => Err(HandshakeFailure::Closed),
        Err(_) => Err(HandshakeFailure::BadFrame),
    }
}

/// Why a connection's reader stopped.
#[derive(Debug)]
pub(crate) enum ReadEnd {
    Eof,
    Idle,
    Io(io::Error),
    Framing(Option<WireError>),
    TooLarge,
    LinkDown,
    WriterDone,
    Shutdown,
}

impl ReadEnd {
    fn from_writer(result: io::Result<()>) -> ReadEnd {
        result.map_or_else(ReadEnd::Io, |()| ReadEnd::WriterDone)
    }
}

impl fmt::Display for ReadEnd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadEnd::Eof => f.write_str("closed by the endpoint"),
            ReadEnd::Idle => f.write_str("idle timeout"),
            ReadEnd::Io(error) => write!(f, "I/O error: {error}"),
            ReadEnd::Framing(Some(error)) => write!(f, "{error}"),
            ReadEnd::Framing(None) => f.write_str("framing lost"),
            ReadEnd::TooLarge => f.write_str("frame over the configured maximum"),
            ReadEnd::LinkDown => f.write_str("mesh link down"),
            ReadEnd::WriterDone => f.write_str("closed by the relay"),
            ReadEnd::Shutdown => f.write_str("relay shut down"),
        }
    }
}

/// Reads whole frames from a byte stream, with an idle timeout per read.
///
/// It holds no buffer of its own between frames: the 16 header bytes are read onto the stack and
/// checked with the core's routing parser, then the body is read straight into the frame's shared
/// allocation, sized by the checked header. An idle connection therefore costs no read buffer
/// (the relay's memory per idle session is dominated by TLS state), and every routed byte is
/// copied once, from rustls' plaintext into the frame.
pub(crate) struct FrameReader<R> {
    io: R,
    idle: Duration,
    max_len: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Frames longer than `max_len` end the stream before anything is allocated for them.
    pub(crate) fn new(io: R, idle: Duration, max_len: usize) -> FrameReader<R> {
        FrameReader { io, idle, max_len }
    }

    /// The next whole frame, ready to share between destinations.
    ///
    /// Not cancel-safe: a frame half read when the future is dropped is lost, and the stream with
    /// it. Callers drop it only when the connection ends.
    pub(crate) async fn next_frame(&mut self, metrics: &Metrics) -> Result<FrameBytes, ReadEnd> {
        let mut header = [0u8; HEADER_LEN];
        self.fill(&mut header, metrics, true).await?;
        let len = RoutingHeader::parse(&header).map_err(|error| ReadEnd::Framing(Some(error)))?.frame_len();
        if len > self.max_len {
            return Err(ReadEnd::TooLarge);
        }
        // One allocation, written in place: `collect` into `Arc<[u8]>` sizes it exactly, and the
        // fresh `Arc` is unique, so `get_mut` cannot fail.
        let mut frame: FrameBytes = std::iter::repeat_n(0u8, len).collect();
        let Some(bytes) = Arc::get_mut(&mut frame) else {
            return Err(ReadEnd::Framing(None));
        };
        bytes[..HEADER_LEN].copy_from_slice(&header);
        self.fill(&mut bytes[HEADER_LEN..], metrics, false).await?;
        Ok(frame)
    }

    /// Fills `out`, each read bounded by the idle timeout. End of stream at a frame boundary is
    /// [`ReadEnd::Eof`]; inside a frame it is a framing error.
    async fn fill(&mut self, out: &mut [u8], metrics: &Metrics, at_boundary: bool) -> Result<(), ReadEnd> {
        let mut filled = 0;
        while filled < out.len() {
            let n = match tokio::time::timeout(self.idle, self.io.read(&mut out[filled..])).await {
                Err(_) => return Err(ReadEnd::Idle),
                Ok(Ok(0)) if at_boundary && filled == 0 => return Err(ReadEnd::Eof),
                Ok(Ok(0)) => return Err(ReadEnd::Framing(Some(WireError::Truncated))),
                Ok(Ok(n)) => n,
                Ok(Err(error)) => return Err(ReadEnd::Io(error)),
            };
            metrics.bytes_in.add(n as u64);
            filled += n;
        }
        Ok(())
    }
}

struct ConnectionGauge(Arc<Metrics>);

impl Drop for ConnectionGauge {
    fn drop(&mut self) {
        self.0.connections.add(-1);
    }
}
