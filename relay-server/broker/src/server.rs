//! The HTTPS server: TLS 1.3 (rustls), HTTP/1.1 (hyper), a cap on connections, a handshake and
//! header timeout, a body limit checked before and while reading, then [`Broker::handle`] on a
//! blocking thread.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use lifeline_ticket::TicketSigner;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use zeroize::Zeroizing;

use crate::clock::Clock;
use crate::config::Config;
use crate::service::{ApiError, Broker, Policy, Request, Response};

/// Time allowed for the TLS handshake and for each request's headers.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest life of one connection, whatever it does (slow bodies, idle keep-alive): API calls
/// are short, and clients open a new connection when they need one.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);

/// The broker could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A certificate, key or store problem (exit code 2).
    Config(String),
    /// The listener could not bind (exit code 1).
    Bind(String),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::Config(message) | StartError::Bind(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for StartError {}

/// Opens the store and loads the ticket key named in `config`.
pub fn open_broker(config: &Config, clock: Arc<dyn Clock>) -> Result<Broker, StartError> {
    let store = crate::store::open(&config.store).map_err(|e| StartError::Config(e.to_string()))?;
    let key_path = &config.tickets.signing_key;
    let pem = Zeroizing::new(
        std::fs::read_to_string(key_path).map_err(|e| StartError::Config(format!("{}: {e}", key_path.display())))?,
    );
    let signer =
        TicketSigner::from_pem(&pem).map_err(|e| StartError::Config(format!("{}: {e}", key_path.display())))?;
    Ok(Broker::new(Arc::from(store), clock, signer, Policy::from_config(config)))
}

/// A bound HTTPS server.
pub struct Server {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    broker: Arc<Broker>,
    max_body: usize,
    slots: Arc<Semaphore>,
    stop: Arc<watch::Sender<bool>>,
}

/// Stops a running [`Server`].
#[derive(Clone, Debug)]
pub struct ShutdownHandle(Arc<watch::Sender<bool>>);

impl ShutdownHandle {
    /// Stops accepting new connections; [`Server::run`] returns at once. Connections already
    /// open keep being served by their tasks until they end (at most 60 s) or the runtime stops.
    pub fn shutdown(&self) {
        self.0.send_replace(true);
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({:?})", self.listener.local_addr().ok())
    }
}

impl Server {
    /// Loads the TLS files and binds the listener (port 0 picks a free port).
    pub async fn bind(config: &Config, broker: Arc<Broker>) -> Result<Server, StartError> {
        let tls = crate::tls::server_config(&config.tls).map_err(StartError::Config)?;
        let listener =
            TcpListener::bind(config.listen).await.map_err(|e| StartError::Bind(format!("{}: {e}", config.listen)))?;
        let (stop, _) = watch::channel(false);
        Ok(Server {
            listener,
            acceptor: TlsAcceptor::from(tls),
            broker,
            max_body: config.limits.max_body_bytes,
            slots: Arc::new(Semaphore::new(config.limits.max_connections)),
            stop: Arc::new(stop),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// A handle that stops [`Server::run`].
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle(self.stop.clone())
    }

    /// Serves until shut down.
    pub async fn run(self) {
        let mut stopped = self.stop.subscribe();
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = stopped.wait_for(|stop| *stop) => break,
            };
            let Ok((stream, peer)) = accepted else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let acceptor = self.acceptor.clone();
            let broker = self.broker.clone();
            let max_body = self.max_body;
            tokio::spawn(async move {
                serve_connection(stream, peer, acceptor, broker, max_body).await;
                drop(permit);
            });
        }
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    broker: Arc<Broker>,
    max_body: usize,
) {
    let _ = stream.set_nodelay(true);
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
        return;
    };
    let client_cert = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first()).map(|c| c.to_vec());
    let client_cert = Arc::new(client_cert);
    let service = service_fn(move |request| {
        let broker = broker.clone();
        let client_cert = client_cert.clone();
        async move { Ok::<_, Infallible>(answer(request, peer, &client_cert, broker, max_body).await) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HANDSHAKE_TIMEOUT)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(tls), service);
    let _ = tokio::time::timeout(CONNECTION_LIFETIME, connection).await;
}

async fn answer(
    request: hyper::Request<Incoming>,
    peer: SocketAddr,
    client_cert: &Option<Vec<u8>>,
    broker: Arc<Broker>,
    max_body: usize,
) -> hyper::Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let declared = parts.headers.get(hyper::header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body as u64) {
        return to_hyper(ApiError::too_large(max_body));
    }
    let body = match Limited::new(body, max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return to_hyper(ApiError::too_large(max_body)),
    };
    let header =
        |name: hyper::header::HeaderName| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let request = Request {
        method: parts.method.as_str().to_owned(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        authorization: header(hyper::header::AUTHORIZATION).map(Zeroizing::new),
        content_type: header(hyper::header::CONTENT_TYPE),
        body: Zeroizing::new(body.to_vec()),
        source: peer.ip(),
        client_cert: client_cert.clone(),
    };
    let method = request.method.clone();
    let path = request.path.clone();
    let response = match tokio::task::spawn_blocking(move || broker.handle(&request)).await {
        Ok(response) => response,
        Err(_) => Response {
            status: 500,
            content_type: "application/json",
            body: br#"{"error":"internal","message":"internal error"}"#.to_vec(),
        },
    };
    tracing::debug!(%peer, %method, %path, status = response.status, "request");
    to_hyper(response)
}

fn to_hyper(response: Response) -> hyper::Response<Full<Bytes>> {
    let mut out = hyper::Response::new(Full::new(Bytes::from(response.body)));
    *out.status_mut() =
        hyper::StatusCode::from_u16(response.status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    let headers = out.headers_mut();
    headers.insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static(response.content_type));
    headers.insert(hyper::header::CACHE_CONTROL, hyper::header::HeaderValue::from_static("no-store"));
    headers.insert("x-content-type-options", hyper::header::HeaderValue::from_static("nosniff"));
    out
}
