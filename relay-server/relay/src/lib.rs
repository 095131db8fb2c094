//! The Lifeline relay: admits endpoints with broker-signed tickets and routes their frames by
//! the 16-byte cleartext routing header. It never holds a session key and never decrypts: the
//! only part of `lifeline-core` it uses is `lifeline_core::wire` (a test checks the source).
//!
//! # Layers
//!
//! - [`Config`] (TOML) names the listeners, certificates, ticket key, limits and mesh peers.
//! - [`Relay::bind`] opens the listeners; [`Relay::run`] serves until a [`ShutdownHandle`] asks
//!   it to stop, then sends `GoAway` to every endpoint, waits the shutdown grace, and closes.
//! - Each endpoint connection is TLS 1.3 (ALPN `lifeline/1`). Its first frame must be
//!   `Relay/Admit` with a valid ticket within the handshake timeout; the relay answers
//!   `Welcome { member }` or `Refused { reason }`. After that every frame's header is checked
//!   (session, sender, kind) and the frame is queued, unchanged, on its destinations' outboxes.
//! - Each connection has a bounded control queue and a bounded data queue, drained control
//!   first. A full data queue drops the frame for that destination; a full control queue
//!   disconnects it (it can reconnect and resume).
//! - Relays of a fleet link by mutual TLS. An endpoint whose session is homed on a linked relay
//!   is carried there over the link (one hop); if the home relay is unreachable, this relay
//!   adopts the session.
//!
//! `docs/relay.md` in the repository describes ports, certificates, the mesh link protocol
//! byte by byte, limits and metrics.

mod broker_report;
mod config;
mod endpoint;
mod mesh;
mod metrics;
mod outbox;
mod ratelimit;
mod registry;
mod relay;
mod tls;

pub mod pki;

pub use broker_report::BrokerReportConfig;
pub use config::{
    Config, ConfigError, DEFAULT_METRICS_LISTEN, Limits, MAX_MEMBERS_PER_SESSION, MeshConfig, MeshPeer, TicketFiles,
    TlsFiles,
};
pub use relay::{Relay, ShutdownHandle, StartError};
pub use tls::{ALPN_ENDPOINT, ALPN_ENDPOINT_SMALL_RECORDS, ALPN_MESH, SMALL_RECORD_LIMIT};

/// Sets up a server process's log (the relay, or the broker): `level` (error … trace), else
/// `$LIFELINE_LOG`, else info; to stderr, coloured only on a terminal.
pub fn init_logging(level: Option<&str>) {
    let level = level.map(str::to_owned).or_else(|| std::env::var("LIFELINE_LOG").ok()).unwrap_or_default();
    let level = level.parse::<tracing::Level>().unwrap_or(tracing::Level::INFO);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .init();
}

/// Waits for SIGTERM or Ctrl-C (Ctrl-C only where there is no SIGTERM): what a server process
/// (the relay, or the broker's dev deployment) waits on before a graceful shutdown.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
