//! A raw HTTP/1.1 client for the tests: every header is the test's choice (a missing `Host`, a
//! foreign `Origin`), and event streams can be read as they come.

#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The token in a console URL.
pub fn token_of(url: &str) -> String {
    url.split("?t=").nth(1).expect("token in url").to_owned()
}

/// A request under construction.
pub struct Req {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    host: Option<String>,
    body: Vec<u8>,
    chunked: bool,
}

impl Req {
    pub fn new(method: &str, target: &str, addr: SocketAddr) -> Req {
        Req {
            method: method.into(),
            target: target.into(),
            headers: Vec::new(),
            host: Some(format!("127.0.0.1:{}", addr.port())),
            body: Vec::new(),
            chunked: false,
        }
    }
    pub fn get(target: &str, addr: SocketAddr) -> Req {
        Req::new("GET", target, addr)
    }
    pub fn post(target: &str, addr: SocketAddr) -> Req {
        Req::new("POST", target, addr).header("origin", &format!("http://127.0.0.1:{}", addr.port()))
    }
    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }
    pub fn without(mut self, name: &str) -> Req {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }
    pub fn host(mut self, host: Option<&str>) -> Req {
        self.host = host.map(str::to_owned);
        self
    }
    pub fn token(self, token: &str) -> Req {
        self.header("x-lifeline-token", token)
    }
    pub fn json(self, body: &str) -> Req {
        let mut req = self.header("content-type", "application/json");
        req.body = body.as_bytes().to_vec();
        req
    }
    pub fn body(mut self, body: Vec<u8>) -> Req {
        self.body = body;
        self
    }
    /// Sends the body with chunked transfer encoding (no Content-Length).
    pub fn chunked(mut self) -> Req {
        self.chunked = true;
        self
    }

    /// The request head (and, unless chunked, a Content-Length for the body).
    pub fn head(&self) -> String {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if let Some(host) = &self.host {
            head.push_str(&format!("host: {host}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if self.chunked {
            head.push_str("transfer-encoding: chunked\r\n");
        } else if !self.body.is_empty() || self.method == "POST" {
            head.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        head.push_str("connection: close\r\n\r\n");
        head
    }

    /// Sends the request and reads the whole response. Reading runs beside writing, so that an
    /// early answer (413) is read even when the server closes before the body is all sent.
    pub async fn send(self, addr: SocketAddr) -> Reply {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let head = self.head();
        let writing = tokio::spawn(async move {
            writer.write_all(head.as_bytes()).await?;
            if self.chunked {
                for chunk in self.body.chunks(64 * 1024) {
                    writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
                    writer.write_all(chunk).await?;
                    writer.write_all(b"\r\n").await?;
                }
                writer.write_all(b"0\r\n\r\n").await?;
            } else {
                writer.write_all(&self.body).await?;
            }
            // Keep the write half open until the reader is done.
            Ok::<_, std::io::Error>(writer)
        });
        let reply = read_reply(&mut reader).await;
        writing.abort();
        reply
    }
}

/// A parsed response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (to its Content-Length, the end of its chunks, or the server closing),
/// then parses it.
pub async fn read_reply<R: tokio::io::AsyncRead + Unpin>(stream: &mut R) -> Reply {
    let mut raw = Vec::new();
    // Generous: starting Chromium on a loaded two-core machine is slow.
    let read = tokio::time::timeout(Duration::from_secs(60), async {
        let mut buf = [0u8; 16 * 1024];
        while !complete(&raw) {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no complete response in time: {:?}", String::from_utf8_lossy(&raw));
    parse_reply(&raw)
}

/// True once `raw` holds a whole response that says how long it is.
fn complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else { return false };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    for line in head.split("\r\n") {
        if let Some(length) = line.strip_prefix("content-length:") {
            return length.trim().parse::<usize>().is_ok_and(|length| body.len() >= length);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"0\r\n\r\n");
        }
    }
    false
}

pub fn parse_reply(raw: &[u8]) -> Reply {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("end of head");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked")) {
        body = dechunk(&body);
    }
    Reply { status, headers, body }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || raw.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[(eol + 4 + size).min(raw.len())..];
    }
    out
}

/// An open event stream.
pub struct Events {
    stream: TcpStream,
    pub seen: String,
}

impl Events {
    pub async fn open(addr: SocketAddr, token: &str) -> Events {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let head = Req::get("/api/events", addr).token(token).head();
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut events = Events { stream, seen: String::new() };
        events.wait_for("200 OK").await;
        events
    }

    /// Reads until `needle` has been seen (anywhere since the stream opened).
    pub async fn wait_for(&mut self, needle: &str) {
        let found = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 8192];
            while !self.seen.contains(needle) {
                let n = self.stream.read(&mut buf).await.unwrap();
                assert!(n > 0, "stream closed before {needle:?}: {}", self.seen);
                self.seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
        .await;
        assert!(found.is_ok(), "{needle:?} not seen in time; seen: {}", self.seen);
    }

    /// Waits for the server to close the stream.
    pub async fn wait_closed(&mut self) {
        let closed = tokio::time::timeout(Duration::from_secs(10), async {
            let mut buf = [0u8; 8192];
            loop {
                match self.stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => self.seen.push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        })
        .await;
        assert!(closed.is_ok(), "the event stream stayed open");
    }
}
