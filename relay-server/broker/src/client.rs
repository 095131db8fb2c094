//! A small HTTPS client for the broker's API: used by the desktop app (log in, create, resolve),
//! the tests and the benchmarks. One TLS connection per call; TLS 1.3, trusting the roots given.

use std::fmt;
use std::sync::Arc;

use http_body_util::{BodyExt as _, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::hex::unhex;

/// A call failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `https://host:port`.
    BadUrl(String),
    /// Connecting, TLS or HTTP failed.
    Transport(String),
    /// The broker answered with an error.
    Api {
        /// HTTP status.
        status: u16,
        /// The error code (`unauthorized`, `no_session`, ...).
        code: String,
        /// The message.
        message: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::BadUrl(url) => write!(f, "broker URL {url:?}: use https://HOST:PORT"),
            ClientError::Transport(message) => write!(f, "broker unreachable: {message}"),
            ClientError::Api { status, message, .. } => write!(f, "broker refused ({status}): {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// A raw answer.
#[derive(Clone, Debug)]
pub struct RawResponse {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: String,
    /// Body.
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body as JSON (`Null` if not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the broker gives an endpoint to join a session.
#[derive(Clone, Debug)]
pub struct SessionGrant {
    /// Session number.
    pub session: u64,
    /// Home relay name.
    pub relay: String,
    /// Its endpoint addresses (`host:port`), preferred first.
    pub addresses: Vec<String>,
    /// The admission ticket.
    pub ticket: Vec<u8>,
    /// Ticket expiry (Unix seconds).
    pub ticket_expires_at: i64,
    /// Resolve only: the provider who created the session, as the broker has the account (name
    /// and organisation entered by an account administrator). `None` if the answer has none.
    pub provider: Option<VerifiedProvider>,
}

/// A provider's identity as the broker holds it (not as the provider's app announces it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProvider {
    /// The account's display name.
    pub name: String,
    /// The account's organisation (may be empty).
    pub organisation: String,
}

/// A broker API client.
#[derive(Clone)]
pub struct BrokerClient {
    host: String,
    port: u16,
    server_name: ServerName<'static>,
    connector: TlsConnector,
}

impl fmt::Debug for BrokerClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerClient({}:{})", self.host, self.port)
    }
}

impl BrokerClient {
    /// A client for `https://host:port` trusting `roots`.
    pub fn new(url: &str, roots: RootCertStore) -> Result<BrokerClient, ClientError> {
        Self::build(url, roots, None)
    }

    /// A client that presents a client certificate (a relay reporting, in tests).
    pub fn with_client_cert(
        url: &str,
        roots: RootCertStore,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<BrokerClient, ClientError> {
        Self::build(url, roots, Some((chain, key)))
    }

    /// A client using an existing TLS configuration (its ALPN is replaced by `http/1.1`).
    pub fn from_tls_config(url: &str, tls: &ClientConfig) -> Result<BrokerClient, ClientError> {
        let (host, port, server_name) = parse_url(url)?;
        let mut config = tls.clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(BrokerClient { host, port, server_name, connector: TlsConnector::from(Arc::new(config)) })
    }

    fn build(
        url: &str,
        roots: RootCertStore,
        identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    ) -> Result<BrokerClient, ClientError> {
        let (host, port, server_name) = parse_url(url)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .with_root_certificates(roots);
        let mut config = match identity {
            Some((chain, key)) => {
                builder.with_client_auth_cert(chain, key).map_err(|e| ClientError::Transport(e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(BrokerClient { host, port, server_name, connector: TlsConnector::from(Arc::new(config)) })
    }

    /// Sends one request with the given headers and body; any status is returned.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<RawResponse, ClientError> {
        let transport = |e: &dyn fmt::Display| ClientError::Transport(e.to_string());
        let tcp = TcpStream::connect((self.host.as_str(), self.port)).await.map_err(|e| transport(&e))?;
        let _ = tcp.set_nodelay(true);
        let tls = self.connector.connect(self.server_name.clone(), tcp).await.map_err(|e| transport(&e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(tls)).await.map_err(|e| transport(&e))?;
        let driver = tokio::spawn(connection);
        let mut request = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, format!("{}:{}", self.host, self.port));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Full::new(Bytes::from(body))).map_err(|e| transport(&e))?;
        let response = sender.send_request(request).await.map_err(|e| transport(&e))?;
        let status = response.status().as_u16();
        let content_type =
            response.headers().get(hyper::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let body = response.into_body().collect().await.map_err(|e| transport(&e))?.to_bytes().to_vec();
        driver.abort();
        Ok(RawResponse { status, content_type, body })
    }

    /// Sends JSON (or nothing) with an optional bearer token; returns the JSON answer, or
    /// [`ClientError::Api`] for a 4xx/5xx.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let authorization = token.map(|t| format!("Bearer {t}"));
        let mut headers = Vec::new();
        if let Some(value) = &authorization {
            headers.push(("authorization", value.as_str()));
        }
        if body.is_some() {
            headers.push(("content-type", "application/json"));
        }
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let response = self.raw(method, path, &headers, bytes).await?;
        let value = response.json();
        if response.status >= 400 {
            return Err(ClientError::Api {
                status: response.status,
                code: value["error"].as_str().unwrap_or("").to_owned(),
                message: value["message"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(value)
    }

    /// Logs in; returns the API token.
    pub async fn login(&self, email: &str, password: &str) -> Result<String, ClientError> {
        let answer =
            self.call("POST", "/v1/login", None, Some(&json!({ "email": email, "password": password }))).await?;
        answer["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| ClientError::Transport("no token in the answer".into()))
    }

    /// Logs out (revokes the token).
    pub async fn logout(&self, token: &str) -> Result<(), ClientError> {
        self.call("POST", "/v1/logout", Some(token), None).await.map(|_| ())
    }

    /// Creates a session (support provider).
    pub async fn create_session(&self, token: &str) -> Result<SessionGrant, ClientError> {
        grant(&self.call("POST", "/v1/sessions", Some(token), None).await?)
    }

    /// Resolves a session number for a joining customer.
    pub async fn resolve(&self, session: u64) -> Result<SessionGrant, ClientError> {
        grant(&self.call("POST", "/v1/sessions/resolve", None, Some(&json!({ "session": session }))).await?)
    }

    /// Ends a session.
    pub async fn end_session(&self, token: &str, session: u64) -> Result<(), ClientError> {
        self.call("POST", &format!("/v1/sessions/{session}/end"), Some(token), None).await.map(|_| ())
    }

    /// Posts one consent receipt or counter (`kind`: `joined`, `left`, `granted`, `revoked` with
    /// a capability word; `bytes` with a value), authorised by the customer's ticket.
    pub async fn post_receipt(
        &self,
        ticket: &[u8],
        session: u64,
        kind: &str,
        capability: &str,
        value: i64,
        at: i64,
    ) -> Result<(), ClientError> {
        let mut event = json!({ "kind": kind, "at": at });
        if !capability.is_empty() {
            event["capability"] = json!(capability);
        }
        if value != 0 {
            event["value"] = json!(value);
        }
        self.post_events(ticket, session, &json!([event])).await
    }

    /// Posts consent receipts and counters, authorised by the customer's ticket.
    pub async fn post_events(&self, ticket: &[u8], session: u64, events: &Value) -> Result<(), ClientError> {
        let authorization = format!("Ticket {}", crate::hex::hex(ticket));
        let headers = [("authorization", authorization.as_str()), ("content-type", "application/json")];
        let body = json!({ "events": events }).to_string().into_bytes();
        let response = self.raw("POST", &format!("/v1/sessions/{session}/events"), &headers, body).await?;
        if response.status >= 400 {
            let value = response.json();
            return Err(ClientError::Api {
                status: response.status,
                code: value["error"].as_str().unwrap_or("").to_owned(),
                message: value["message"].as_str().unwrap_or("").to_owned(),
            });
        }
        Ok(())
    }
}

fn parse_url(url: &str) -> Result<(String, u16, ServerName<'static>), ClientError> {
    let bad = || ClientError::BadUrl(url.to_owned());
    let rest = url.strip_prefix("https://").ok_or_else(bad)?.trim_end_matches('/');
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host.trim_start_matches('[').trim_end_matches(']').to_owned();
    let server_name = ServerName::try_from(host.clone()).map_err(|_| bad())?;
    Ok((host, port, server_name))
}

fn grant(value: &Value) -> Result<SessionGrant, ClientError> {
    let bad = || ClientError::Transport("malformed session answer".into());
    Ok(SessionGrant {
        session: value["session"].as_u64().ok_or_else(bad)?,
        relay: value["relay"]["name"].as_str().ok_or_else(bad)?.to_owned(),
        addresses: value["relay"]["addresses"]
            .as_array()
            .map(|list| list.iter().filter_map(|a| a.as_str().map(str::to_owned)).collect())
            .unwrap_or_default(),
        ticket: value["ticket"].as_str().and_then(unhex).ok_or_else(bad)?,
        ticket_expires_at: value["ticket_expires_at"].as_i64().ok_or_else(bad)?,
        provider: value["provider"]["name"].as_str().map(|name| VerifiedProvider {
            name: name.to_owned(),
            organisation: value["provider"]["organisation"].as_str().unwrap_or_default().to_owned(),
        }),
    })
}
