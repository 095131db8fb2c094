//! HTTP CONNECT proxies: a tunnel to `host:port` through a proxy, with TLS inside it.
//!
//! The proxy sees only the relay's host name and port, then TLS. Configured explicitly
//! ([`HttpProxy::parse`]) or from the `https_proxy` / `HTTPS_PROXY` environment variables
//! ([`HttpProxy::from_env`]), honouring `no_proxy` / `NO_PROXY`.

use std::fmt;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::connect::ConnectError;

/// Longest proxy response head read before giving up.
const MAX_RESPONSE_HEAD: usize = 8 * 1024;
/// curl's default proxy port.
const DEFAULT_PROXY_PORT: u16 = 1080;

/// An HTTP proxy that tunnels with `CONNECT`.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpProxy {
    host: String,
    port: u16,
    /// `Basic …` credentials, if the URL had `user:password@`. Never logged.
    authorization: Option<String>,
    /// Hosts (and domain suffixes) reached directly.
    no_proxy: Vec<String>,
}

impl fmt::Debug for HttpProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpProxy")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("credentials", &self.authorization.is_some())
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// A proxy setting that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxyParseError(String);

impl fmt::Display for ProxyParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid proxy setting: {}", self.0)
    }
}

impl std::error::Error for ProxyParseError {}

impl HttpProxy {
    /// Parses `[http://][user:password@]host[:port][/]` (port 1080 if absent, as curl).
    /// `https://` proxies (TLS to the proxy itself) are not supported.
    pub fn parse(url: &str) -> Result<HttpProxy, ProxyParseError> {
        let url = url.trim();
        let rest = match url.split_once("://") {
            None => url,
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => return Err(ProxyParseError(format!("unsupported proxy scheme {scheme:?}"))),
        };
        let rest = rest.trim_end_matches('/');
        let (credentials, address) = match rest.rsplit_once('@') {
            Some((credentials, address)) => (Some(credentials), address),
            None => (None, rest),
        };
        let (host, port) = split_host_port(address)
            .ok_or_else(|| ProxyParseError(format!("cannot read host and port from {address:?}")))?;
        let authorization = credentials.map(|credentials| {
            let decoded = percent_decode(credentials);
            format!("Basic {}", base64(&decoded))
        });
        Ok(HttpProxy { host, port: port.unwrap_or(DEFAULT_PROXY_PORT), authorization, no_proxy: Vec::new() })
    }

    /// The proxy from `https_proxy` or `HTTPS_PROXY` (first set, non-empty), with the hosts of
    /// `no_proxy` / `NO_PROXY`; `Ok(None)` when neither is set.
    pub fn from_env() -> Result<Option<HttpProxy>, ProxyParseError> {
        let Some(url) = env_var("https_proxy").or_else(|| env_var("HTTPS_PROXY")) else {
            return Ok(None);
        };
        let mut proxy = HttpProxy::parse(&url)?;
        if let Some(list) = env_var("no_proxy").or_else(|| env_var("NO_PROXY")) {
            proxy = proxy.with_no_proxy(&list);
        }
        Ok(Some(proxy))
    }

    /// Adds a `no_proxy`-style list: comma-separated host names or domain suffixes
    /// (`example.com` also covers `relay.example.com`), `*` for every host.
    #[must_use]
    pub fn with_no_proxy(mut self, list: &str) -> HttpProxy {
        self.no_proxy.extend(
            list.split(',')
                .map(|entry| entry.trim().trim_start_matches('.').to_ascii_lowercase())
                .filter(|e| !e.is_empty()),
        );
        self
    }

    /// The proxy's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether connections to `host` go through this proxy (not excluded by `no_proxy`).
    pub fn applies_to(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
        !self.no_proxy.iter().any(|entry| entry == "*" || host == *entry || host.ends_with(&format!(".{entry}")))
    }

    /// Opens a TCP connection to the proxy and a `CONNECT` tunnel to `host:port` through it.
    pub async fn connect(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| ConnectError::Proxy(format!("cannot reach proxy {}:{}: {e}", self.host, self.port)))?;
        let _ = stream.set_nodelay(true);
        let authority = authority(host, port);
        let mut request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
        if let Some(authorization) = &self.authorization {
            request.push_str("Proxy-Authorization: ");
            request.push_str(authorization);
            request.push_str("\r\n");
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await.map_err(|e| ConnectError::Proxy(format!("proxy write: {e}")))?;
        let head = read_response_head(&mut stream).await?;
        let status = parse_status(&head).ok_or_else(|| ConnectError::Proxy("proxy sent no HTTP status line".into()))?;
        match status {
            200..=299 => Ok(stream),
            407 => Err(ConnectError::Proxy("proxy authentication required (407)".into())),
            other => Err(ConnectError::Proxy(format!("proxy refused CONNECT to {authority}: HTTP {other}"))),
        }
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// `host:port`, with IPv6 literals in brackets.
pub(crate) fn authority(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Splits `host`, `host:port`, `[v6]`, `[v6]:port`. `None` if empty or the port is not a number.
pub(crate) fn split_host_port(address: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return None,
        }
    } else {
        match address.rsplit_once(':') {
            Some((host, port)) if !host.contains(':') => (host, Some(port)),
            Some(_) => (address, None), // a bare IPv6 literal
            None => (address, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(port) => Some(port.parse().ok()?),
        None => None,
    };
    Some((host.to_owned(), port))
}

async fn read_response_head(stream: &mut TcpStream) -> Result<Vec<u8>, ConnectError> {
    // Byte by byte: nothing of the tunnel may be consumed past the blank line (the relay speaks
    // only after our ClientHello, but a proxy could pipeline).
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_RESPONSE_HEAD {
            return Err(ConnectError::Proxy("proxy response head too long".into()));
        }
        let n = stream.read(&mut byte).await.map_err(|e| ConnectError::Proxy(format!("proxy read: {e}")))?;
        if n == 0 {
            return Err(ConnectError::Proxy("proxy closed the connection during CONNECT".into()));
        }
        head.push(byte[0]);
    }
    Ok(head)
}

/// The status code of `HTTP/1.x NNN reason`.
fn parse_status(head: &[u8]) -> Option<u16> {
    let line = head.split(|&b| b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?.trim_end();
    let mut parts = line.split_ascii_whitespace();
    let version = parts.next()?;
    if !version.starts_with("HTTP/1.") {
        return None;
    }
    let code = parts.next()?;
    if code.len() != 3 {
        return None;
    }
    code.parse().ok()
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let decoded = (bytes[index] == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| std::str::from_utf8(hex).ok())
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match decoded {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    out
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 0x3F) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let proxy = HttpProxy::parse("http://proxy.corp:3128/").unwrap();
        assert_eq!((proxy.host(), proxy.port()), ("proxy.corp", 3128));
        assert_eq!(proxy.authorization, None);
        assert_eq!(HttpProxy::parse("10.0.0.1").unwrap().port(), 1080);
        let with_auth = HttpProxy::parse("http://Aladdin:open%20sesame@proxy:8080").unwrap();
        assert_eq!(with_auth.authorization.as_deref(), Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="));
        assert!(!format!("{with_auth:?}").contains("QWxh"), "credentials stay out of Debug");
        assert_eq!(HttpProxy::parse("[::1]:3128").unwrap().host(), "::1");
        assert!(HttpProxy::parse("https://proxy:443").is_err());
        assert!(HttpProxy::parse("proxy:notaport").is_err());
        assert!(HttpProxy::parse("").is_err());
    }

    #[test]
    fn no_proxy_matches_hosts_and_suffixes() {
        let proxy = HttpProxy::parse("proxy:3128").unwrap().with_no_proxy("localhost, .example.com,10.1.2.3");
        assert!(!proxy.applies_to("localhost"));
        assert!(!proxy.applies_to("relay.example.com"));
        assert!(!proxy.applies_to("example.com"));
        assert!(!proxy.applies_to("10.1.2.3"));
        assert!(proxy.applies_to("badexample.com"));
        assert!(proxy.applies_to("relay.lifeline.test"));
        assert!(!HttpProxy::parse("p:1").unwrap().with_no_proxy("*").applies_to("anything"));
    }

    #[test]
    fn status_lines_and_base64() {
        assert_eq!(parse_status(b"HTTP/1.1 200 Connection established\r\n\r\n"), Some(200));
        assert_eq!(parse_status(b"HTTP/1.0 407 Proxy Authentication Required\r\n\r\n"), Some(407));
        assert_eq!(parse_status(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(authority("::1", 443), "[::1]:443");
        assert_eq!(split_host_port("relay:8200"), Some(("relay".into(), Some(8200))));
        assert_eq!(split_host_port("[::1]"), Some(("::1".into(), None)));
    }
}
