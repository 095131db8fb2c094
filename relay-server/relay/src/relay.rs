//! The relay as a whole: listeners, shared state, task tracking and graceful shutdown.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lifeline_core::wire::Destination;
use lifeline_core::wire::relay::RelayRepr;
use lifeline_ticket::TicketVerifier;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tracing::{info, warn};

use crate::config::{Config, Limits};
use crate::mesh::Mesh;
use crate::metrics::{HandshakeFailure, Metrics};
use crate::outbox::{FrameBytes, Outbox};
use crate::ratelimit::RateLimiter;
use crate::registry::{Registry, relay_frame};
use crate::tls::{self, TlsSetup};
use crate::{endpoint, mesh, metrics};

/// A relay with its listeners bound, ready to [`run`](Relay::run).
#[derive(Debug)]
pub struct Relay {
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    mesh_listener: Option<TcpListener>,
    reporter: Option<crate::broker_report::Reporter>,
    metrics_listener: TcpListener,
    stop: Arc<watch::Sender<bool>>,
    force: watch::Sender<bool>,
}

/// Asks a running relay to shut down gracefully. Cheap to clone.
#[derive(Clone, Debug)]
pub struct ShutdownHandle {
    stop: Arc<watch::Sender<bool>>,
}

impl ShutdownHandle {
    /// Starts the graceful shutdown: stop accepting, `GoAway` to every endpoint, wait up to the
    /// shutdown grace for them to leave, then close everything. [`Relay::run`] returns after.
    pub fn shutdown(&self) {
        self.stop.send_replace(true);
    }
}

/// The relay could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// A certificate, key or ticket key file is missing or unusable.
    Credentials(String),
    /// A listener could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        error: std::io::Error,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Credentials(message) => write!(f, "{message}"),
            StartError::Bind { addr, error } => write!(f, "cannot listen on {addr}: {error}"),
        }
    }
}

impl std::error::Error for StartError {}

/// State every task of one relay shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) name: String,
    pub(crate) limits: Limits,
    pub(crate) tls: TlsSetup,
    pub(crate) verifier: TicketVerifier,
    pub(crate) registry: Registry,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) rate: RateLimiter,
    pub(crate) connection_slots: Arc<Semaphore>,
    pub(crate) mesh: Option<Mesh>,
    pub(crate) draining: AtomicBool,
    next_conn: AtomicU64,
    force: watch::Receiver<bool>,
    tasks: AtomicUsize,
    tasks_idle: Notify,
}

impl Shared {
    /// A fresh connection id (never reused within this process).
    pub(crate) fn next_conn(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Resolves once the shutdown grace is over: every task ends when this does.
    pub(crate) async fn forced(&self) {
        let mut force = self.force.clone();
        let _ = force.wait_for(|forced| *forced).await;
    }

    /// A new outbox with this relay's queue limits.
    pub(crate) fn outbox(&self) -> Arc<Outbox> {
        Outbox::new(self.limits.control_queue_frames, self.limits.data_queue_bytes, self.metrics.clone())
    }

    /// Spawns a task that shutdown waits for.
    pub(crate) fn spawn<F>(self: &Arc<Self>, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.fetch_add(1, Ordering::SeqCst);
        let guard = TaskGuard(self.clone());
        tokio::spawn(async move {
            let _guard = guard;
            task.await;
        });
    }
}

struct TaskGuard(Arc<Shared>);

impl Drop for TaskGuard {
    fn drop(&mut self) {
        if self.0.tasks.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.tasks_idle.notify_waiters();
        }
    }
}

/// The current time in Unix seconds (0 if the clock is before 1970).
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Relay {
    /// Loads the credentials named in `config` and binds every listener (port 0 picks a free
    /// port; see [`Relay::endpoint_addrs`]).
    pub async fn bind(config: Config) -> Result<Relay, StartError> {
        let tls = tls::load(&config).map_err(StartError::Credentials)?;
        let verify_pem = std::fs::read_to_string(&config.tickets.verify_key)
            .map_err(|error| StartError::Credentials(format!("{}: {error}", config.tickets.verify_key.display())))?;
        let verifier = TicketVerifier::from_pem(&verify_pem)
            .map_err(|error| StartError::Credentials(format!("{}: {error}", config.tickets.verify_key.display())))?;
        let mut listeners = Vec::with_capacity(config.listen.len());
        for addr in &config.listen {
            listeners.push(bind(*addr).await?);
        }
        let mesh_listener = match &config.mesh {
            Some(mesh) => Some(bind(mesh.listen).await?),
            None => None,
        };
        let metrics_listener = bind(config.metrics_listen).await?;
        let reporter = config
            .broker
            .as_ref()
            .map(crate::broker_report::Reporter::new)
            .transpose()
            .map_err(StartError::Credentials)?;
        let metrics = Arc::new(Metrics::default());
        let limits = config.limits.clone();
        let (force, force_rx) = watch::channel(false);
        let shared = Shared {
            registry: Registry::new(limits.max_sessions, limits.max_members_per_session, metrics.clone()),
            rate: RateLimiter::new(limits.connections_per_ip_per_sec, limits.connections_per_ip_burst),
            connection_slots: Arc::new(Semaphore::new(limits.max_connections)),
            mesh: config.mesh.clone().map(Mesh::new),
            name: config.name,
            limits,
            tls,
            verifier,
            metrics,
            draining: AtomicBool::new(false),
            next_conn: AtomicU64::new(1),
            force: force_rx,
            tasks: AtomicUsize::new(0),
            tasks_idle: Notify::new(),
        };
        let (stop, _) = watch::channel(false);
        Ok(Relay {
            shared: Arc::new(shared),
            listeners,
            mesh_listener,
            reporter,
            metrics_listener,
            stop: Arc::new(stop),
            force,
        })
    }

    /// This relay's name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// The bound endpoint listener addresses, in configuration order.
    pub fn endpoint_addrs(&self) -> Vec<SocketAddr> {
        self.listeners.iter().filter_map(|listener| listener.local_addr().ok()).collect()
    }

    /// The bound mesh listener address, if the mesh is configured.
    pub fn mesh_addr(&self) -> Option<SocketAddr> {
        self.mesh_listener.as_ref().and_then(|listener| listener.local_addr().ok())
    }

    /// The bound metrics listener address.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener.local_addr().ok()
    }

    /// A handle that stops [`run`](Relay::run) gracefully.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle { stop: self.stop.clone() }
    }

    /// Serves until shut down through a [`ShutdownHandle`]; returns once every connection is
    /// closed.
    pub async fn run(self) {
        let endpoint_addrs = self.endpoint_addrs();
        let Relay { shared, listeners, mesh_listener, reporter, metrics_listener, stop, force } = self;
        let reporter = reporter.map(|reporter| reporter.spawn(shared.clone(), &endpoint_addrs));
        let metrics_task = tokio::spawn(metrics::serve(metrics_listener, shared.metrics.clone()));
        let mut background = Vec::new();
        for listener in listeners {
            if let Ok(addr) = listener.local_addr() {
                info!(relay = %shared.name, %addr, "listening for endpoints");
            }
            background.push(tokio::spawn(accept_endpoints(shared.clone(), listener)));
        }
        mesh::start(&shared, mesh_listener);

        let mut stopped = stop.subscribe();
        let _ = stopped.wait_for(|stop| *stop).await;

        // Phase 1: stop accepting, tell everyone to leave.
        info!(relay = %shared.name, "shutting down: sending GoAway");
        shared.draining.store(true, Ordering::SeqCst);
        for task in &background {
            task.abort();
        }
        let go_away = |session: u64, destination: Destination| -> Option<FrameBytes> {
            relay_frame(RelayRepr::GoAway, session, destination)
        };
        for (session, member, outbox) in shared.registry.all_members() {
            if let Some(frame) = go_away(session, Destination::Member(member)) {
                outbox.push(frame, true);
            }
        }
        if let Some(mesh) = &shared.mesh {
            for (session, outbox) in mesh.forwarded_outboxes() {
                if let Some(frame) = go_away(session, Destination::AllMembers) {
                    outbox.push(frame, true);
                }
            }
        }

        // Phase 2: wait for them to go, up to the grace.
        let deadline = Instant::now() + shared.limits.shutdown_grace();
        while Instant::now() < deadline && (shared.metrics.connections.get() > 0 || shared.metrics.members.get() > 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // Phase 3: close whatever is left.
        force.send_replace(true);
        let all_done = async {
            loop {
                let idle = shared.tasks_idle.notified();
                if shared.tasks.load(Ordering::SeqCst) == 0 {
                    break;
                }
                idle.await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(3), all_done).await.is_err() {
            warn!(relay = %shared.name, "some connection tasks did not end in time");
        }
        metrics_task.abort();
        if let Some(reporter) = reporter {
            reporter.abort();
        }
        info!(relay = %shared.name, "stopped");
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr).await.map_err(|error| StartError::Bind { addr, error })
}

async fn accept_endpoints(shared: Arc<Shared>, listener: TcpListener) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, typically: back off instead of spinning.
                warn!("accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        if !shared.rate.allow(peer.ip(), Instant::now()) {
            shared.metrics.handshake_failed(HandshakeFailure::RateLimited);
            continue;
        }
        let Ok(permit) = shared.connection_slots.clone().try_acquire_owned() else {
            shared.metrics.handshake_failed(HandshakeFailure::Capacity);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        shared.spawn(endpoint::serve(shared.clone(), tcp, peer, permit));
    }
}
