//! Reports this relay's health and load to the broker, over mutual TLS, so the broker homes new
//! sessions on the least-loaded healthy relay and never on one that stopped reporting.
//!
//! Configured by an optional `[broker]` table:
//!
//! ```toml
//! [broker]
//! url = "https://broker.example.net:8600"   # the broker's HTTPS API
//! interval_secs = 5                          # default; the broker's staleness limit is 30 s
//! advertise = ["relay-a.example.net:8200"]   # endpoint addresses to hand out (default: the bound ones)
//! ```
//!
//! Every interval the relay sends `POST /v1/relay/report` with its name, `healthy` (false once
//! it is shutting down), and the `sessions`, `members` and `connections` gauges of its metrics.
//! It presents its own certificate (the one of the mesh, with clientAuth) and checks the
//! broker's certificate against the fleet CA (`tls.ca`) for the URL's host name. The request is
//! plain HTTP/1.1 with `Connection: close`; failures are logged at `warn` once, then `debug`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::ServerName;
use serde::Deserialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tracing::{debug, info, warn};

use crate::relay::Shared;

/// The `[broker]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrokerReportConfig {
    /// The broker's API, `https://HOST:PORT`.
    pub url: String,
    /// Seconds between reports.
    #[serde(default = "default_interval")]
    pub interval_secs: f64,
    /// Endpoint addresses (`host:port`) the broker gives out for this relay; empty: the bound
    /// endpoint listeners.
    #[serde(default)]
    pub advertise: Vec<String>,
}

fn default_interval() -> f64 {
    5.0
}

/// A configured reporter, ready to start.
#[derive(Debug)]
pub(crate) struct Reporter {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    interval: Duration,
    advertise: Vec<String>,
}

impl Reporter {
    /// Checks the `[broker]` table.
    pub(crate) fn new(config: &BrokerReportConfig) -> Result<Reporter, String> {
        let bad = || format!("broker.url {:?}: use https://HOST:PORT", config.url);
        let rest = config.url.strip_prefix("https://").ok_or_else(bad)?.trim_end_matches('/');
        let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
        let server_name = ServerName::try_from(host.clone()).map_err(|_| bad())?;
        if !(config.interval_secs.is_finite() && (0.05..=300.0).contains(&config.interval_secs)) {
            return Err("broker.interval_secs: between 0.05 and 300".into());
        }
        if config.advertise.iter().any(|a| a.is_empty() || a.len() > 255 || a.contains(['"', '\\', ','])) {
            return Err("broker.advertise: host:port strings".into());
        }
        Ok(Reporter {
            host,
            port,
            server_name,
            interval: Duration::from_secs_f64(config.interval_secs),
            advertise: config.advertise.clone(),
        })
    }

    /// Reports every interval until aborted.
    pub(crate) fn spawn(self, shared: Arc<Shared>, endpoints: &[SocketAddr]) -> JoinHandle<()> {
        if self.advertise.is_empty() && endpoints.iter().any(|addr| addr.ip().is_unspecified()) {
            warn!("[broker]: listening on an unspecified address; set broker.advertise to the addresses endpoints use");
        }
        let addresses = if self.advertise.is_empty() {
            endpoints.iter().map(ToString::to_string).collect()
        } else {
            self.advertise.clone()
        };
        let mut tls = (*shared.tls.mesh_client).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let connector = TlsConnector::from(Arc::new(tls));
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                let body = report_json(&shared, &addresses);
                let outcome = tokio::time::timeout(Duration::from_secs(5), self.send(&connector, &body)).await;
                match outcome {
                    Ok(Ok(200)) => {
                        if failing {
                            info!(broker = %self.host, "reporting to the broker again");
                        }
                        failing = false;
                    }
                    other => {
                        let why = match other {
                            Ok(Ok(status)) => format!("status {status}"),
                            Ok(Err(error)) => error,
                            Err(_) => "timed out".to_owned(),
                        };
                        if failing {
                            debug!(broker = %self.host, %why, "report to the broker failed");
                        } else {
                            warn!(broker = %self.host, %why, "report to the broker failed");
                        }
                        failing = true;
                    }
                }
                tokio::time::sleep(self.interval).await;
            }
        })
    }

    async fn send(&self, connector: &TlsConnector, body: &str) -> Result<u16, String> {
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| e.to_string())?;
        let mut tls = connector.connect(self.server_name.clone(), tcp).await.map_err(|e| e.to_string())?;
        let request = format!(
            "POST /v1/relay/report HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.host,
            self.port,
            body.len()
        );
        tls.write_all(request.as_bytes()).await.map_err(|e| e.to_string())?;
        let mut answer = Vec::with_capacity(512);
        let mut buf = [0u8; 512];
        while answer.len() < 4096 {
            let read = tls.read(&mut buf).await.map_err(|e| e.to_string())?;
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&buf[..read]);
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let status_line = answer.split(|b| *b == b'\r').next().unwrap_or(&[]);
        std::str::from_utf8(status_line)
            .ok()
            .and_then(|line| line.split(' ').nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| "no HTTP status in the answer".to_owned())
    }
}

fn report_json(shared: &Shared, addresses: &[String]) -> String {
    let metrics = &shared.metrics;
    let addresses: Vec<String> = addresses.iter().map(|a| format!("\"{a}\"")).collect();
    // The name is `a-z 0-9 - . _` (validated) and the addresses hold no quote or backslash.
    format!(
        "{{\"name\":\"{}\",\"healthy\":{},\"sessions\":{},\"members\":{},\"connections\":{},\"addresses\":[{}]}}",
        shared.name,
        !shared.is_draining(),
        metrics.sessions.get().max(0),
        metrics.members.get().max(0),
        metrics.connections.get().max(0),
        addresses.join(",")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str, interval_secs: f64, advertise: &[&str]) -> BrokerReportConfig {
        BrokerReportConfig {
            url: url.to_owned(),
            interval_secs,
            advertise: advertise.iter().map(|a| (*a).to_owned()).collect(),
        }
    }

    #[test]
    fn the_broker_table_is_checked() {
        let reporter = Reporter::new(&config("https://broker.example.net:8600/", 5.0, &[])).unwrap();
        assert_eq!((reporter.host.as_str(), reporter.port), ("broker.example.net", 8600));
        assert!(Reporter::new(&config("https://[::1]:8600", 5.0, &["relay-a.example.net:8200"])).is_ok());
        for bad in ["http://broker:8600", "https://broker", "https://broker:port", "broker:8600"] {
            assert!(Reporter::new(&config(bad, 5.0, &[])).is_err(), "{bad}");
        }
        assert!(Reporter::new(&config("https://b:1", 0.0, &[])).is_err());
        assert!(Reporter::new(&config("https://b:1", f64::NAN, &[])).is_err());
        assert!(Reporter::new(&config("https://b:1", 5.0, &["a\",\"b:1"])).is_err());
    }

    #[test]
    fn the_table_parses_from_the_relay_config() {
        let parsed: BrokerReportConfig = toml::from_str("url = \"https://127.0.0.1:8600\"").unwrap();
        assert_eq!(parsed.interval_secs, 5.0);
        assert!(parsed.advertise.is_empty());
        assert!(toml::from_str::<BrokerReportConfig>("url = \"x\"\nunknown = 1").is_err());
    }
}
