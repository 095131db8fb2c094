//! The broker's configuration (TOML, unknown keys refused; relative paths are relative to the
//! config file's folder).
//!
//! ```toml
//! listen = "127.0.0.1:8600"          # HTTPS: endpoints, admins, and relays (mutual TLS)
//! store = "sqlite:broker.db"         # or "postgres://user:password@host:5432/lifeline"
//!
//! [tls]
//! cert = "broker.pem"                # served to clients; presented by nobody else
//! key = "broker.key"
//! ca = "ca.pem"                      # the fleet CA: relays' client certificates must chain to it
//!
//! [tickets]
//! signing_key = "ticket-signing.key" # Ed25519, PKCS#8 PEM; relays hold the public half
//! ttl_secs = 43200                   # admission ticket lifetime (at most 86400)
//!
//! [auth]
//! max_failures = 5                   # consecutive failed logins before the soft lockout
//! lockout_secs = 300
//! token_ttl_secs = 28800             # API tokens expire
//! failures_per_source_per_min = 20   # failed logins per source address (token bucket)
//! failures_per_source_burst = 20
//!
//! [sessions]
//! join_window_secs = 3600            # a customer can resolve a session number this long
//! resolve_misses_per_source_per_min = 30  # unknown session numbers per source address
//!
//! [relays]
//! stale_after_secs = 30              # a relay silent this long is never assigned
//!
//! [limits]
//! max_body_bytes = 65536
//! max_connections = 1024
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTPS listener.
    pub listen: SocketAddr,
    /// Store URL: `sqlite:PATH` or `postgres://...`.
    pub store: String,
    /// Certificate files.
    pub tls: TlsFiles,
    /// Ticket signing.
    pub tickets: TicketConfig,
    /// Login policy.
    #[serde(default)]
    pub auth: AuthConfig,
    /// Session policy.
    #[serde(default)]
    pub sessions: SessionConfig,
    /// Relay fleet policy.
    #[serde(default)]
    pub relays: RelayConfig,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
}

/// Certificate files (PEM).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// Fleet CA (relays' client certificates).
    pub ca: PathBuf,
}

/// Ticket signing.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketConfig {
    /// PKCS#8 PEM Ed25519 key.
    pub signing_key: PathBuf,
    /// Ticket lifetime.
    #[serde(default = "default_ticket_ttl")]
    pub ttl_secs: i64,
}

/// Login policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// Consecutive failures before the lockout.
    pub max_failures: i64,
    /// Lockout length.
    pub lockout_secs: i64,
    /// API token lifetime.
    pub token_ttl_secs: i64,
    /// Failed logins per source address per minute, sustained.
    pub failures_per_source_per_min: f64,
    /// Burst of that bucket.
    pub failures_per_source_burst: f64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            max_failures: 5,
            lockout_secs: 300,
            token_ttl_secs: 8 * 3600,
            failures_per_source_per_min: 20.0,
            failures_per_source_burst: 20.0,
        }
    }
}

/// Session policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// How long after creation a customer may resolve the number.
    pub join_window_secs: i64,
    /// Unknown session numbers per source address per minute (enumeration bound).
    pub resolve_misses_per_source_per_min: f64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig { join_window_secs: 3600, resolve_misses_per_source_per_min: 30.0 }
    }
}

/// Relay fleet policy.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// A relay whose last report is older is not assigned.
    pub stale_after_secs: i64,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig { stale_after_secs: 30 }
    }
}

/// Request limits.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body.
    pub max_body_bytes: usize,
    /// HTTPS connections at once.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_body_bytes: 64 * 1024, max_connections: 1024 }
    }
}

fn default_ticket_ttl() -> i64 {
    12 * 3600
}

/// The configuration could not be used.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError(format!("{}: {e}", path.display())))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::from_toml(&text, base).map_err(|e| ConfigError(format!("{}: {e}", path.display())))
    }

    /// Parses and validates TOML text; relative paths (and a relative `sqlite:` path) are resolved
    /// against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError(e.to_string()))?;
        for path in [&mut config.tls.cert, &mut config.tls.key, &mut config.tls.ca, &mut config.tickets.signing_key] {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        }
        if let Some(file) = config.store.strip_prefix("sqlite:")
            && file != ":memory:"
            && Path::new(file).is_relative()
        {
            config.store = format!("sqlite:{}", base.join(file).display());
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |message: &str| Err(ConfigError(message.to_owned()));
        if !(60..=lifeline_ticket::MAX_LIFETIME_SECS as i64).contains(&self.tickets.ttl_secs) {
            return invalid("tickets.ttl_secs: between 60 and 86400");
        }
        let auth = &self.auth;
        if !(1..=100).contains(&auth.max_failures) {
            return invalid("auth.max_failures: between 1 and 100");
        }
        if auth.lockout_secs < 0 || auth.token_ttl_secs < 60 {
            return invalid("auth.lockout_secs: at least 0; auth.token_ttl_secs: at least 60");
        }
        if auth.failures_per_source_per_min.is_nan()
            || auth.failures_per_source_per_min <= 0.0
            || auth.failures_per_source_burst.is_nan()
            || auth.failures_per_source_burst < 1.0
        {
            return invalid("auth.failures_per_source_*: positive");
        }
        let rate = self.sessions.resolve_misses_per_source_per_min;
        if rate.is_nan() || rate <= 0.0 || self.sessions.join_window_secs < 60 {
            return invalid("sessions: join_window_secs at least 60, resolve_misses_per_source_per_min positive");
        }
        if self.relays.stale_after_secs < 1 {
            return invalid("relays.stale_after_secs: at least 1");
        }
        if self.limits.max_body_bytes < 1024 || self.limits.max_connections == 0 {
            return invalid("limits: max_body_bytes at least 1024, max_connections at least 1");
        }
        Ok(())
    }
}
