//! Counters and gauges, rendered in the Prometheus text format, and the `/metrics` listener.
//!
//! Everything here is a plain atomic: updating a counter never blocks routing.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::debug;

/// Why a frame was not delivered to a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DropReason {
    /// The destination's data queue was full.
    SlowConsumer,
    /// The destination's control queue was full: the destination was disconnected.
    ControlOverflow,
    /// The header's sender is not the member the connection was admitted as.
    SpoofedSender,
    /// The header names another session than the connection's.
    WrongSession,
    /// A relay-kind frame after admission (those go to the relay, never through it).
    RelayKind,
    /// The destination member is not connected.
    NoSuchMember,
    /// Destination is the sender itself or the relay.
    BadDestination,
    /// The sender's connection was replaced by a newer one for the same member id.
    Stale,
}

impl DropReason {
    const ALL: [DropReason; 8] = [
        DropReason::SlowConsumer,
        DropReason::ControlOverflow,
        DropReason::SpoofedSender,
        DropReason::WrongSession,
        DropReason::RelayKind,
        DropReason::NoSuchMember,
        DropReason::BadDestination,
        DropReason::Stale,
    ];

    const fn label(self) -> &'static str {
        match self {
            DropReason::SlowConsumer => "slow_consumer",
            DropReason::ControlOverflow => "control_overflow",
            DropReason::SpoofedSender => "spoofed_sender",
            DropReason::WrongSession => "wrong_session",
            DropReason::RelayKind => "relay_kind",
            DropReason::NoSuchMember => "no_such_member",
            DropReason::BadDestination => "bad_destination",
            DropReason::Stale => "stale",
        }
    }
}

/// Why a connection did not get admitted (endpoint listeners and the mesh listener).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HandshakeFailure {
    /// The per-address connection rate was exceeded.
    RateLimited,
    /// `max_connections` reached.
    Capacity,
    /// The TLS handshake failed (not TLS, wrong version, untrusted client certificate...).
    Tls,
    /// TLS succeeded without the expected ALPN protocol.
    Alpn,
    /// No complete `Admit` (or mesh hello) before the handshake timeout.
    Timeout,
    /// The connection closed before admission.
    Closed,
    /// Bytes that are not a frame, or a first frame that is not `Admit`.
    BadFrame,
    /// The ticket is malformed or its signature does not verify.
    BadTicket,
    /// The ticket has expired.
    Expired,
    /// The frame's session is not the ticket's.
    WrongSession,
    /// Sessions or members at their limit.
    Full,
    /// The resume id cannot be granted.
    ResumeRefused,
    /// The relay is shutting down.
    ShuttingDown,
    /// A mesh peer that is not configured, or whose certificate does not match its name.
    UnknownPeer,
}

impl HandshakeFailure {
    const ALL: [HandshakeFailure; 14] = [
        HandshakeFailure::RateLimited,
        HandshakeFailure::Capacity,
        HandshakeFailure::Tls,
        HandshakeFailure::Alpn,
        HandshakeFailure::Timeout,
        HandshakeFailure::Closed,
        HandshakeFailure::BadFrame,
        HandshakeFailure::BadTicket,
        HandshakeFailure::Expired,
        HandshakeFailure::WrongSession,
        HandshakeFailure::Full,
        HandshakeFailure::ResumeRefused,
        HandshakeFailure::ShuttingDown,
        HandshakeFailure::UnknownPeer,
    ];

    pub(crate) const fn label(self) -> &'static str {
        match self {
            HandshakeFailure::RateLimited => "rate_limited",
            HandshakeFailure::Capacity => "capacity",
            HandshakeFailure::Tls => "tls",
            HandshakeFailure::Alpn => "alpn",
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::BadFrame => "bad_frame",
            HandshakeFailure::BadTicket => "bad_ticket",
            HandshakeFailure::Expired => "expired",
            HandshakeFailure::WrongSession => "wrong_session",
            HandshakeFailure::Full => "full",
            HandshakeFailure::ResumeRefused => "resume_refused",
            HandshakeFailure::ShuttingDown => "shutting_down",
            HandshakeFailure::UnknownPeer => "unknown_peer",
        }
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub(crate) struct Gauge(AtomicI64);

impl Gauge {
    pub(crate) fn add(&self, delta: i64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that only goes up.
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, delta: u64) {
        self.0.fetch_add(delta, Ordering::Relaxed);
    }

    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Everything the relay counts.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) sessions: Gauge,
    pub(crate) members: Gauge,
    pub(crate) connections: Gauge,
    pub(crate) queued_bytes: Gauge,
    pub(crate) mesh_links_up: Gauge,
    pub(crate) mesh_circuits: Gauge,
    pub(crate) bytes_in: Counter,
    pub(crate) bytes_out: Counter,
    pub(crate) frames_in: Counter,
    pub(crate) frames_routed: Counter,
    pub(crate) admissions: Counter,
    pub(crate) adoptions: Counter,
    pub(crate) forwarded: Counter,
    drops: [Counter; DropReason::ALL.len()],
    handshake_failures: [Counter; HandshakeFailure::ALL.len()],
    mesh_handshake_failures: [Counter; HandshakeFailure::ALL.len()],
}

impl Metrics {
    pub(crate) fn drop_frame(&self, reason: DropReason) {
        if let Some(index) = DropReason::ALL.iter().position(|r| *r == reason) {
            self.drops[index].add(1);
        }
    }

    pub(crate) fn handshake_failed(&self, reason: HandshakeFailure) {
        if let Some(index) = HandshakeFailure::ALL.iter().position(|r| *r == reason) {
            self.handshake_failures[index].add(1);
        }
    }

    pub(crate) fn mesh_handshake_failed(&self, reason: HandshakeFailure) {
        if let Some(index) = HandshakeFailure::ALL.iter().position(|r| *r == reason) {
            self.mesh_handshake_failures[index].add(1);
        }
    }

    /// The Prometheus text exposition (version 0.0.4).
    pub(crate) fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let gauges: [(&str, &str, &Gauge); 6] = [
            ("lifeline_relay_sessions", "Sessions with at least one member on this relay.", &self.sessions),
            ("lifeline_relay_members", "Admitted members (local and over mesh links).", &self.members),
            ("lifeline_relay_connections", "Endpoint TCP connections, admitted or not.", &self.connections),
            ("lifeline_relay_queued_bytes", "Bytes waiting in per-connection queues.", &self.queued_bytes),
            ("lifeline_relay_mesh_links_up", "Mesh links established.", &self.mesh_links_up),
            ("lifeline_relay_mesh_circuits", "Endpoint connections carried over mesh links.", &self.mesh_circuits),
        ];
        for (name, help, gauge) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {}", gauge.get());
        }
        let counters: [(&str, &str, &Counter); 7] = [
            ("lifeline_relay_bytes_in_total", "Bytes received from endpoints (TLS payload).", &self.bytes_in),
            ("lifeline_relay_bytes_out_total", "Bytes sent to endpoints (TLS payload).", &self.bytes_out),
            ("lifeline_relay_frames_in_total", "Frames received from admitted endpoints.", &self.frames_in),
            (
                "lifeline_relay_frames_routed_total",
                "Frames queued to a destination (one per destination).",
                &self.frames_routed,
            ),
            ("lifeline_relay_admissions_total", "Endpoints admitted (Welcome sent).", &self.admissions),
            (
                "lifeline_relay_adoptions_total",
                "Admissions for sessions homed on an unreachable relay, served here.",
                &self.adoptions,
            ),
            (
                "lifeline_relay_forwarded_total",
                "Endpoint connections forwarded to their session's home relay.",
                &self.forwarded,
            ),
        ];
        for (name, help, counter) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", counter.get());
        }
        let name = "lifeline_relay_drops_total";
        let _ = writeln!(out, "# HELP {name} Frames not delivered to a destination, by reason.\n# TYPE {name} counter");
        for (reason, counter) in DropReason::ALL.iter().zip(&self.drops) {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {}", reason.label(), counter.get());
        }
        let name = "lifeline_relay_handshake_failures_total";
        let _ = writeln!(out, "# HELP {name} Connections that were not admitted, by reason.\n# TYPE {name} counter");
        for (reason, counter) in HandshakeFailure::ALL.iter().zip(&self.handshake_failures) {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {}", reason.label(), counter.get());
        }
        let name = "lifeline_relay_mesh_handshake_failures_total";
        let _ = writeln!(out, "# HELP {name} Mesh connections refused, by reason.\n# TYPE {name} counter");
        for (reason, counter) in HandshakeFailure::ALL.iter().zip(&self.mesh_handshake_failures) {
            let _ = writeln!(out, "{name}{{reason=\"{}\"}} {}", reason.label(), counter.get());
        }
        out
    }
}

/// Serves `GET /metrics` until the task is dropped. One request per connection, at most
/// [`MAX_SCRAPES`] at once, each bounded to 5 s.
pub(crate) async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else { continue };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(error) = tokio::time::timeout(Duration::from_secs(5), answer(stream, &metrics)).await {
                debug!("metrics request timed out: {error}");
            }
        });
    }
}

/// Concurrent metrics requests.
const MAX_SCRAPES: usize = 16;

async fn answer(mut stream: TcpStream, metrics: &Metrics) {
    let mut request = [0u8; 2048];
    let mut len = 0;
    while len < request.len() {
        match stream.read(&mut request[len..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => len += n,
        }
        if request[..len].windows(4).any(|w| w == b"\r\n\r\n") || request[..len].windows(2).any(|w| w == b"\n\n") {
            break;
        }
    }
    let line = request[..len].split(|b| *b == b'\n').next().unwrap_or_default();
    let mut parts = line.split(|b| *b == b' ');
    let (method, path) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let response = if method == b"GET" && (path == b"/metrics" || path.starts_with(b"/metrics?")) {
        let body = metrics.render();
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n".to_owned()
    };
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_lists_every_reason() {
        let metrics = Metrics::default();
        metrics.drop_frame(DropReason::SlowConsumer);
        metrics.drop_frame(DropReason::SlowConsumer);
        metrics.handshake_failed(HandshakeFailure::Timeout);
        metrics.sessions.add(3);
        let text = metrics.render();
        assert!(text.contains("lifeline_relay_drops_total{reason=\"slow_consumer\"} 2\n"), "{text}");
        assert!(text.contains("lifeline_relay_handshake_failures_total{reason=\"timeout\"} 1\n"));
        assert!(text.contains("lifeline_relay_sessions 3\n"));
        for reason in HandshakeFailure::ALL {
            assert!(text.contains(&format!("{{reason=\"{}\"}}", reason.label())));
        }
    }
}
