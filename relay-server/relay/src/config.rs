//! The relay's configuration file (TOML), its defaults and its validation.
//!
//! ```toml
//! name = "relay-a"                              # this relay's name; its certificate names it
//! listen = ["0.0.0.0:8200", "0.0.0.0:443"]      # endpoint listeners (TLS 1.3, ALPN lifeline/1)
//! metrics_listen = "127.0.0.1:9200"             # Prometheus text format at /metrics
//!
//! [tls]                                         # paths are relative to this file's folder
//! cert = "relay-relay-a.pem"
//! key = "relay-relay-a.key"
//! ca = "ca.pem"                                 # the fleet CA: mesh peers must chain to it
//!
//! [tickets]
//! verify_key = "ticket-verify.pem"              # the broker's Ed25519 public key
//!
//! [limits]                                      # every key optional; defaults in `Limits`
//! idle_timeout_secs = 30
//!
//! [mesh]                                        # optional
//! listen = "0.0.0.0:8300"
//! peers = [{ name = "relay-b", address = "relay-b.example.net:8300" }]
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lifeline_core::wire::relay::MAX_TICKET_LEN;
use lifeline_core::wire::{HEADER_LEN, MAX_FRAME_LEN};
use serde::Deserialize;

/// The default address of the metrics listener.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9200";
/// Most members a session can have: ids 0 (leader) to 253.
pub const MAX_MEMBERS_PER_SESSION: usize = 254;

/// A relay's whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// This relay's name (`a-z 0-9 - . _`, 1 to 64): tickets name their home relay with it,
    /// and its certificate must be valid for it (mesh peers check).
    pub name: String,
    /// Endpoint listeners. Several ports let endpoints race them (8200, 443, 80).
    pub listen: Vec<SocketAddr>,
    /// The Prometheus listener (plain HTTP; keep it on loopback or a private network).
    #[serde(default = "default_metrics_listen")]
    pub metrics_listen: SocketAddr,
    /// Certificate, key and fleet CA.
    pub tls: TlsFiles,
    /// The broker's ticket verification key.
    pub tickets: TicketFiles,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Links to other relays of the fleet.
    #[serde(default)]
    pub mesh: Option<MeshConfig>,
    /// Health and load reports to the broker (`[broker]`, optional; see `broker_report.rs`).
    #[serde(default)]
    pub broker: Option<crate::broker_report::BrokerReportConfig>,
}

/// Certificate files (PEM).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// This relay's certificate chain, leaf first. Served to endpoints and mesh peers, and
    /// presented as the client certificate when dialing a peer.
    pub cert: PathBuf,
    /// The certificate's private key (PKCS#8, SEC1 or PKCS#1 PEM).
    pub key: PathBuf,
    /// The fleet's CA certificates: mesh peers (both directions) must present a chain to one.
    pub ca: PathBuf,
}

/// Ticket key file.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketFiles {
    /// The broker's Ed25519 public key (SPKI PEM), e.g. `ticket-verify.pem`.
    pub verify_key: PathBuf,
}

/// Resource limits. Every field has a default (see [`Limits::default`]).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest frame accepted from an endpoint, header included (at most core's `MAX_FRAME_LEN`).
    pub max_frame_len: usize,
    /// Sessions this relay serves at once.
    pub max_sessions: usize,
    /// Members per session (2 to 254).
    pub max_members_per_session: usize,
    /// Endpoint connections at once, admitted or not.
    pub max_connections: usize,
    /// Time from TCP accept to a complete `Admit` frame, TLS handshake included.
    pub handshake_timeout_secs: f64,
    /// An admitted endpoint that sends no byte for this long is disconnected (the engine sends
    /// a keepalive every 10 s by default).
    pub idle_timeout_secs: f64,
    /// New connections accepted per source address per second (IPv6: per /64), sustained.
    pub connections_per_ip_per_sec: f64,
    /// Burst allowance for the above.
    pub connections_per_ip_burst: u32,
    /// Control frames (handshake, key update, secure control, relay) queued per connection.
    pub control_queue_frames: usize,
    /// Bytes of data frames queued per connection.
    pub data_queue_bytes: usize,
    /// After `GoAway`, how long endpoints get to leave before the relay closes their connections.
    pub shutdown_grace_secs: f64,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_frame_len: MAX_FRAME_LEN,
            max_sessions: 10_000,
            max_members_per_session: MAX_MEMBERS_PER_SESSION,
            max_connections: 20_000,
            handshake_timeout_secs: 10.0,
            idle_timeout_secs: 35.0,
            connections_per_ip_per_sec: 10.0,
            connections_per_ip_burst: 40,
            control_queue_frames: 128,
            data_queue_bytes: 1024 * 1024,
            shutdown_grace_secs: 5.0,
        }
    }
}

impl Limits {
    /// The handshake (admission) timeout.
    pub fn handshake_timeout(&self) -> Duration {
        secs(self.handshake_timeout_secs)
    }

    /// The idle timeout.
    pub fn idle_timeout(&self) -> Duration {
        secs(self.idle_timeout_secs)
    }

    /// The shutdown grace.
    pub fn shutdown_grace(&self) -> Duration {
        secs(self.shutdown_grace_secs)
    }
}

/// The relay mesh: one mutual-TLS link to each peer, one hop.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MeshConfig {
    /// Where peers dial this relay (mutual TLS, ALPN `lifeline-mesh/1`).
    pub listen: SocketAddr,
    /// The other relays. Of each pair, the relay with the smaller name dials.
    #[serde(default)]
    pub peers: Vec<MeshPeer>,
    /// A link sends a ping after this long without traffic; three intervals of silence end it.
    #[serde(default = "default_keepalive")]
    pub keepalive_secs: f64,
    /// First redial delay after a link fails; doubles up to `reconnect_max_secs`.
    #[serde(default = "default_reconnect_min")]
    pub reconnect_min_secs: f64,
    /// Longest redial delay.
    #[serde(default = "default_reconnect_max")]
    pub reconnect_max_secs: f64,
    /// Messages queued toward one peer before senders wait.
    #[serde(default = "default_link_queue")]
    pub link_queue_messages: usize,
}

impl MeshConfig {
    /// The keepalive interval.
    pub fn keepalive(&self) -> Duration {
        secs(self.keepalive_secs)
    }
}

/// Another relay of the fleet.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct MeshPeer {
    /// Its name (its certificate must be valid for this name).
    pub name: String,
    /// `host:port` of its mesh listener.
    pub address: String,
}

/// A configuration that cannot be used.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A value is out of range or inconsistent.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => write!(f, "cannot read config file {}: {error}", path.display()),
            ConfigError::Parse { path, message } => write!(f, "invalid config file {}: {message}", path.display()),
            ConfigError::Invalid(message) => write!(f, "invalid configuration: {message}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates a config file; relative paths in it are resolved against the
    /// file's folder.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_path_buf(), error })?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        Config::from_toml(&text, base).map_err(|error| match error {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_path_buf(), message },
            other => other,
        })
    }

    /// Parses and validates TOML text; relative paths are resolved against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|error| ConfigError::Parse { path: PathBuf::from("<text>"), message: error.to_string() })?;
        for path in [&mut config.tls.cert, &mut config.tls.key, &mut config.tls.ca, &mut config.tickets.verify_key] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges and consistency.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: String| Err(ConfigError::Invalid(message));
        if !lifeline_ticket::valid_relay_name(&self.name) {
            return invalid(format!("name {:?}: use 1 to 64 of a-z 0-9 - . _", self.name));
        }
        if self.listen.is_empty() {
            return invalid("listen: at least one address".into());
        }
        let limits = &self.limits;
        let min_frame = HEADER_LEN + 4 + MAX_TICKET_LEN;
        if !(min_frame..=MAX_FRAME_LEN).contains(&limits.max_frame_len) {
            return invalid(format!("limits.max_frame_len: between {min_frame} and {MAX_FRAME_LEN}"));
        }
        if !(2..=MAX_MEMBERS_PER_SESSION).contains(&limits.max_members_per_session) {
            return invalid(format!("limits.max_members_per_session: between 2 and {MAX_MEMBERS_PER_SESSION}"));
        }
        for (name, value) in [
            ("max_sessions", limits.max_sessions),
            ("max_connections", limits.max_connections),
            ("control_queue_frames", limits.control_queue_frames),
        ] {
            if value == 0 {
                return invalid(format!("limits.{name}: at least 1"));
            }
        }
        if limits.data_queue_bytes < limits.max_frame_len {
            return invalid("limits.data_queue_bytes: at least limits.max_frame_len".into());
        }
        if limits.connections_per_ip_burst == 0 {
            return invalid("limits.connections_per_ip_burst: at least 1".into());
        }
        for (name, value) in
            [("handshake_timeout_secs", limits.handshake_timeout_secs), ("idle_timeout_secs", limits.idle_timeout_secs)]
        {
            if !valid_secs(value) || value <= 0.0 {
                return invalid(format!("limits.{name}: a positive number of seconds, at most 86400"));
            }
        }
        // A rate, not a duration: any finite positive number up to a million per second.
        let rate = limits.connections_per_ip_per_sec;
        if !(rate.is_finite() && rate > 0.0 && rate <= MAX_CONNECTION_RATE) {
            return invalid(format!(
                "limits.connections_per_ip_per_sec: a positive number, at most {MAX_CONNECTION_RATE}"
            ));
        }
        if !valid_secs(limits.shutdown_grace_secs) {
            return invalid("limits.shutdown_grace_secs: zero or a positive number".into());
        }
        if let Some(mesh) = &self.mesh {
            for (name, value) in [
                ("keepalive_secs", mesh.keepalive_secs),
                ("reconnect_min_secs", mesh.reconnect_min_secs),
                ("reconnect_max_secs", mesh.reconnect_max_secs),
            ] {
                if !valid_secs(value) || value <= 0.0 {
                    return invalid(format!("mesh.{name}: a positive number"));
                }
            }
            if mesh.reconnect_max_secs < mesh.reconnect_min_secs {
                return invalid("mesh.reconnect_max_secs: at least mesh.reconnect_min_secs".into());
            }
            if mesh.link_queue_messages == 0 {
                return invalid("mesh.link_queue_messages: at least 1".into());
            }
            for (index, peer) in mesh.peers.iter().enumerate() {
                if !lifeline_ticket::valid_relay_name(&peer.name) || peer.name == self.name {
                    return invalid(format!("mesh.peers: bad name {:?}", peer.name));
                }
                if mesh.peers[..index].iter().any(|other| other.name == peer.name) {
                    return invalid(format!("mesh.peers: {:?} listed twice", peer.name));
                }
            }
        }
        Ok(())
    }
}

fn default_metrics_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9200))
}

fn default_keepalive() -> f64 {
    5.0
}

fn default_reconnect_min() -> f64 {
    0.5
}

fn default_reconnect_max() -> f64 {
    30.0
}

fn default_link_queue() -> usize {
    1024
}

/// Durations up to a day; anything longer is a typo.
/// Upper bound for `limits.connections_per_ip_per_sec` (far above what one relay can accept).
const MAX_CONNECTION_RATE: f64 = 1_000_000.0;

fn valid_secs(value: f64) -> bool {
    value.is_finite() && (0.0..=86_400.0).contains(&value)
}

fn secs(value: f64) -> Duration {
    Duration::try_from_secs_f64(value).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
        name = "relay-a"
        listen = ["127.0.0.1:8200"]
        [tls]
        cert = "a.pem"
        key = "a.key"
        ca = "/etc/lifeline/ca.pem"
        [tickets]
        verify_key = "ticket-verify.pem"
    "#;

    #[test]
    fn defaults_fill_what_is_left_out() {
        let config = Config::from_toml(MINIMAL, Path::new("/srv/relay")).unwrap();
        assert_eq!(config.limits, Limits::default());
        assert_eq!(config.metrics_listen.to_string(), DEFAULT_METRICS_LISTEN);
        assert_eq!(config.tls.cert, Path::new("/srv/relay/a.pem"));
        assert_eq!(config.tls.ca, Path::new("/etc/lifeline/ca.pem"));
        assert!(config.mesh.is_none());
    }

    #[test]
    fn typos_and_bad_values_are_reported() {
        let typo = format!("{MINIMAL}\n[limits]\nidle_timeout = 3\n");
        let error = Config::from_toml(&typo, Path::new(".")).unwrap_err().to_string();
        assert!(error.contains("idle_timeout"), "{error}");
        let bad = format!("{MINIMAL}\n[limits]\nmax_members_per_session = 300\n");
        assert!(matches!(Config::from_toml(&bad, Path::new(".")), Err(ConfigError::Invalid(_))));
        let negative = format!("{MINIMAL}\n[limits]\nidle_timeout_secs = -1\n");
        assert!(matches!(Config::from_toml(&negative, Path::new(".")), Err(ConfigError::Invalid(_))));
        // A rate above 86 400 (a day in seconds) is still a valid rate.
        let fast = format!("{MINIMAL}\n[limits]\nconnections_per_ip_per_sec = 50000\n");
        assert_eq!(Config::from_toml(&fast, Path::new(".")).unwrap().limits.connections_per_ip_per_sec, 50_000.0);
        for rate in ["0", "-5", "nan", "inf", "2e6"] {
            let bad_rate = format!("{MINIMAL}\n[limits]\nconnections_per_ip_per_sec = {rate}\n");
            assert!(matches!(Config::from_toml(&bad_rate, Path::new(".")), Err(ConfigError::Invalid(_))), "{rate}");
        }
        let name = MINIMAL.replace("relay-a", "Relay A");
        assert!(matches!(Config::from_toml(&name, Path::new(".")), Err(ConfigError::Invalid(_))));
        assert!(matches!(Config::from_toml("name = ", Path::new(".")), Err(ConfigError::Parse { .. })));
    }

    #[test]
    fn mesh_peers_are_checked() {
        let mesh = format!(
            "{MINIMAL}\n[mesh]\nlisten = \"127.0.0.1:8300\"\npeers = [{{ name = \"relay-b\", address = \"b:8300\" }}]\n"
        );
        let config = Config::from_toml(&mesh, Path::new(".")).unwrap();
        let mesh_config = config.mesh.unwrap();
        assert_eq!(mesh_config.peers.len(), 1);
        assert_eq!(mesh_config.keepalive(), Duration::from_secs(5));
        let twice = mesh.replace(
            "peers = [{ name = \"relay-b\", address = \"b:8300\" }]",
            "peers = [{ name = \"relay-b\", address = \"b:1\" }, { name = \"relay-b\", address = \"b:2\" }]",
        );
        assert!(matches!(Config::from_toml(&twice, Path::new(".")), Err(ConfigError::Invalid(_))));
        let itself = mesh.replace("name = \"relay-b\"", "name = \"relay-a\"");
        assert!(matches!(Config::from_toml(&itself, Path::new(".")), Err(ConfigError::Invalid(_))));
    }
}
