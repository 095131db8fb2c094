//! Reaching a relay: outbound only, TLS raced over several ports, optionally through an HTTP
//! CONNECT proxy; and plain TCP probes to rank relays by round-trip time.
//!
//! As the seed design does, an endpoint opens TLS connections to the relay on several ports
//! (8200, 443, 80 by default) and keeps whichever completes its TLS handshake first; the
//! others are dropped. Attempts start a little apart ([`Timing::stagger`]) so that on a good
//! network the first port wins without the relay paying for the extra handshakes.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use lifeline_core::wire::relay::RefusalReason;

use crate::proxy::{HttpProxy, split_host_port};

/// The ports tried when none are configured, in order of preference.
pub const DEFAULT_PORTS: [u16; 3] = [8200, 443, 80];

/// One relay: a host and the ports to race.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayAddress {
    /// Host name or IP address.
    pub host: String,
    /// Ports, in order of preference (started in this order).
    pub ports: Vec<u16>,
    /// The name the relay's certificate must carry, when it differs from `host`.
    pub tls_name: Option<String>,
}

impl RelayAddress {
    /// A relay on the [`DEFAULT_PORTS`].
    pub fn new(host: impl Into<String>) -> Self {
        RelayAddress { host: host.into(), ports: DEFAULT_PORTS.to_vec(), tls_name: None }
    }

    /// The same relay on other ports.
    #[must_use]
    pub fn with_ports(mut self, ports: impl Into<Vec<u16>>) -> Self {
        self.ports = ports.into();
        self
    }

    /// Parses `HOST`, `HOST:PORT` or `HOST:PORT,PORT,…` (IPv6 literals in brackets:
    /// `[::1]:8200,443`). Without ports, the [`DEFAULT_PORTS`].
    pub fn parse(text: &str) -> Result<RelayAddress, AddressError> {
        let text = text.trim();
        let bad = || AddressError(text.to_owned());
        // The ports list follows the last ':' outside brackets; split it off before the host.
        let (address, extra_ports) = match text.split_once(',') {
            Some((first, rest)) => (first, Some(rest)),
            None => (text, None),
        };
        let (host, first_port) = split_host_port(address).ok_or_else(bad)?;
        let mut ports = Vec::new();
        if let Some(port) = first_port {
            ports.push(port);
        }
        if let Some(rest) = extra_ports {
            if first_port.is_none() {
                return Err(bad());
            }
            for port in rest.split(',') {
                ports.push(port.trim().parse().map_err(|_| bad())?);
            }
        }
        if ports.is_empty() {
            ports = DEFAULT_PORTS.to_vec();
        }
        if ports.contains(&0) {
            return Err(bad());
        }
        Ok(RelayAddress { host, ports, tls_name: None })
    }

    /// The name checked against the relay's certificate.
    pub fn tls_name(&self) -> &str {
        self.tls_name.as_deref().unwrap_or(&self.host)
    }
}

impl fmt::Display for RelayAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') { write!(f, "[{}]", self.host) } else { f.write_str(&self.host) }
    }
}

/// A relay address that cannot be parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressError(String);

impl fmt::Display for AddressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid relay address {:?} (expected HOST, HOST:PORT or HOST:PORT,PORT,…)", self.0)
    }
}

impl std::error::Error for AddressError {}

/// Timers of connection set-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// One attempt (TCP, proxy tunnel and TLS handshake) must finish within this.
    pub connect_timeout: Duration,
    /// Delay between starting the attempts on successive ports.
    pub stagger: Duration,
    /// The relay must answer the admission within this.
    pub admit_timeout: Duration,
    /// A write to the relay must finish within this, or the connection counts as lost.
    pub write_timeout: Duration,
    /// A TCP probe gives up after this.
    pub probe_timeout: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            connect_timeout: Duration::from_secs(10),
            stagger: Duration::from_millis(150),
            admit_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(20),
            probe_timeout: Duration::from_secs(2),
        }
    }
}

/// Why a connection to a relay failed.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectError {
    /// The relay's host name is not a valid TLS server name.
    InvalidName(String),
    /// TCP could not connect (refused, unreachable, name not found).
    Unreachable(String),
    /// No attempt finished in time.
    TimedOut,
    /// The relay's certificate is not trusted (unknown CA, wrong name, expired).
    Certificate(String),
    /// The TLS handshake failed for another reason.
    Tls(String),
    /// The HTTP proxy failed or refused the tunnel.
    Proxy(String),
    /// The relay refused admission.
    Refused(RefusalReason),
    /// The relay answered something that is not the protocol.
    Protocol(String),
    /// The connection closed or failed after TLS, before admission.
    Closed(String),
}

impl ConnectError {
    /// Whether retrying later, or elsewhere, may help. Certificate problems and refused tickets
    /// do not go away by themselves.
    pub fn is_transient(&self) -> bool {
        match self {
            ConnectError::InvalidName(_) | ConnectError::Certificate(_) => false,
            ConnectError::Refused(reason) => {
                matches!(reason, RefusalReason::ResumeRefused | RefusalReason::ShuttingDown | RefusalReason::Other)
            }
            _ => true,
        }
    }

    /// Which of several failures to report: the most specific.
    fn rank(&self) -> u8 {
        match self {
            ConnectError::Certificate(_) => 7,
            ConnectError::Refused(_) => 6,
            ConnectError::Protocol(_) => 5,
            ConnectError::Proxy(_) => 4,
            ConnectError::Tls(_) => 3,
            ConnectError::Closed(_) => 2,
            ConnectError::Unreachable(_) | ConnectError::InvalidName(_) => 1,
            ConnectError::TimedOut => 0,
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::InvalidName(name) => write!(f, "{name:?} is not a valid TLS server name"),
            ConnectError::Unreachable(detail) => write!(f, "relay unreachable: {detail}"),
            ConnectError::TimedOut => f.write_str("connection to the relay timed out"),
            ConnectError::Certificate(detail) => write!(f, "the relay's certificate is not trusted: {detail}"),
            ConnectError::Tls(detail) => write!(f, "TLS handshake failed: {detail}"),
            ConnectError::Proxy(detail) => write!(f, "proxy: {detail}"),
            ConnectError::Refused(reason) => write!(f, "the relay refused admission: {}", refusal_text(*reason)),
            ConnectError::Protocol(detail) => write!(f, "relay protocol error: {detail}"),
            ConnectError::Closed(detail) => write!(f, "the relay closed the connection: {detail}"),
        }
    }
}

impl std::error::Error for ConnectError {}

/// A human description of a relay's refusal.
pub fn refusal_text(reason: RefusalReason) -> &'static str {
    match reason {
        RefusalReason::BadTicket => "the admission ticket is invalid, for another session, or expired",
        RefusalReason::Full => "the session or the relay is full",
        RefusalReason::ResumeRefused => "the member id to resume is in use",
        RefusalReason::ShuttingDown => "the relay is shutting down",
        _ => "refused",
    }
}

/// A TLS connection to a relay, and the port that won the race.
pub type RelayStream = TlsStream<TcpStream>;

/// Races TLS connections to `relay` on all its ports and returns the first whose handshake
/// completes, with its port; the other attempts are dropped. Through `proxy` when given (and
/// not excluded for this host by its `no_proxy`).
pub async fn connect_tls(
    relay: &RelayAddress,
    tls: Arc<rustls::ClientConfig>,
    proxy: Option<&HttpProxy>,
    timing: &Timing,
) -> Result<(RelayStream, u16), ConnectError> {
    let name = ServerName::try_from(relay.tls_name().to_owned())
        .map_err(|_| ConnectError::InvalidName(relay.tls_name().to_owned()))?;
    let connector = TlsConnector::from(tls);
    let proxy = proxy.filter(|proxy| proxy.applies_to(&relay.host)).cloned();
    let mut attempts = JoinSet::new();
    for (index, &port) in relay.ports.iter().enumerate() {
        let start = timing.stagger.saturating_mul(u32::try_from(index).unwrap_or(u32::MAX));
        let (connector, name, host, proxy) = (connector.clone(), name.clone(), relay.host.clone(), proxy.clone());
        let limit = timing.connect_timeout;
        attempts.spawn(async move {
            tokio::time::sleep(start).await;
            let attempt = attempt_tls(&connector, name, &host, port, proxy.as_ref());
            match tokio::time::timeout(limit, attempt).await {
                Ok(result) => result.map(|stream| (stream, port)),
                Err(_) => Err(ConnectError::TimedOut),
            }
        });
    }
    let mut failure: Option<ConnectError> = None;
    while let Some(joined) = attempts.join_next().await {
        match joined {
            Ok(Ok(winner)) => {
                // Dropping the set aborts the attempts still running.
                attempts.abort_all();
                return Ok(winner);
            }
            Ok(Err(error)) => {
                tracing::debug!(relay = %relay.host, %error, "connection attempt failed");
                if failure.as_ref().is_none_or(|worst| error.rank() > worst.rank()) {
                    failure = Some(error);
                }
            }
            Err(join) => failure = failure.or(Some(ConnectError::Unreachable(format!("attempt aborted: {join}")))),
        }
    }
    Err(failure.unwrap_or_else(|| ConnectError::Unreachable("no ports to try".into())))
}

async fn attempt_tls(
    connector: &TlsConnector,
    name: ServerName<'static>,
    host: &str,
    port: u16,
    proxy: Option<&HttpProxy>,
) -> Result<RelayStream, ConnectError> {
    let tcp = match proxy {
        Some(proxy) => proxy.connect(host, port).await?,
        None => {
            let tcp = TcpStream::connect((host, port))
                .await
                .map_err(|e| ConnectError::Unreachable(format!("{}: {e}", crate::proxy::authority(host, port))))?;
            let _ = tcp.set_nodelay(true);
            tcp
        }
    };
    connector.connect(name, tcp).await.map_err(classify_tls_error)
}

fn classify_tls_error(error: std::io::Error) -> ConnectError {
    match error.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(reason)) => ConnectError::Certificate(format!("{reason:?}")),
        Some(other) => ConnectError::Tls(other.to_string()),
        None => ConnectError::Tls(error.to_string()),
    }
}

/// A plain TCP probe: connects to `host:port`, measures how long that took, and closes without
/// sending anything. `None` if it failed or took longer than `limit`.
pub async fn probe(host: &str, port: u16, limit: Duration) -> Option<Duration> {
    let started = tokio::time::Instant::now();
    let stream = tokio::time::timeout(limit, TcpStream::connect((host, port))).await.ok()?.ok()?;
    let elapsed = started.elapsed();
    drop(stream);
    Some(elapsed)
}

/// Probes every relay (on its first port) at once and returns their indexes, fastest first;
/// relays that did not answer keep their configured order after the others.
pub async fn rank_by_rtt(relays: &[RelayAddress], limit: Duration) -> Vec<usize> {
    let mut probes = JoinSet::new();
    for (index, relay) in relays.iter().enumerate() {
        let Some(&port) = relay.ports.first() else { continue };
        let host = relay.host.clone();
        probes.spawn(async move { (index, probe(&host, port, limit).await) });
    }
    let mut timings: Vec<(usize, Option<Duration>)> = relays.iter().enumerate().map(|(i, _)| (i, None)).collect();
    while let Some(Ok((index, rtt))) = probes.join_next().await {
        if let Some(slot) = timings.get_mut(index) {
            slot.1 = rtt;
        }
    }
    timings.sort_by_key(|&(index, rtt)| (rtt.is_none(), rtt, index));
    timings.into_iter().map(|(index, _)| index).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_addresses_parse() {
        assert_eq!(RelayAddress::parse("relay.example").unwrap().ports, DEFAULT_PORTS);
        let relay = RelayAddress::parse("127.0.0.1:8200,8443").unwrap();
        assert_eq!((relay.host.as_str(), relay.ports.as_slice()), ("127.0.0.1", &[8200, 8443][..]));
        assert_eq!(RelayAddress::parse("[::1]:443").unwrap().host, "::1");
        assert!(RelayAddress::parse("relay:x").is_err());
        assert!(RelayAddress::parse("relay,443").is_err());
        assert!(RelayAddress::parse("relay:0").is_err());
        assert!(RelayAddress::parse("").is_err());
    }

    #[test]
    fn transient_errors() {
        assert!(ConnectError::TimedOut.is_transient());
        assert!(!ConnectError::Certificate("x".into()).is_transient());
        assert!(!ConnectError::Refused(RefusalReason::BadTicket).is_transient());
        assert!(ConnectError::Refused(RefusalReason::ShuttingDown).is_transient());
    }
}
