//! The provider's web console: a page in the provider's own browser, served from the native
//! process on `127.0.0.1` only, that shows the session and asks for things.
//!
//! The engine, the keys and every decision stay in the native process (`lifeline support`). The
//! page renders [`ConsoleEvent`]s and sends requests that arrive as [`ConsoleCommand`]s; it can
//! never name a file on disk, and anything a peer wrote is shown as text, never as HTML.
//!
//! # Layers
//! - [`api`]: the types on both sides of the channel (serde JSON, documented field by field).
//! - The server (private): hyper 1 over tokio, bound to `127.0.0.1:0`. Every request must pass
//!   the loopback, `Host`, `Origin`, fetch-metadata and token checks before anything else; see
//!   `docs/web-console.md`.
//! - The page (private, `src/console.html`): one file, embedded with `include_str!`, no external
//!   resources, served under a strict Content Security Policy with a per-response nonce.
//!
//! # Use
//! ```no_run
//! use lifeline_web_console::{ConsoleCommand, ConsoleConfig, ConsoleEvent, SessionInfo, WebConsole};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let (console, mut commands) = WebConsole::start(ConsoleConfig::default()).await?;
//! // The URL holds the secret token: give it to the provider's browser, never to a log.
//! println!("open {}", console.url());
//! console.publish(ConsoleEvent::Session(SessionInfo {
//!     session_number: 123_456_789,
//!     pin: Some("482913".into()),
//!     ..SessionInfo::default()
//! }));
//! while let Some(command) = commands.recv().await {
//!     match command {
//!         ConsoleCommand::SendChat { text } => { /* send it over the session, then publish it */ }
//!         ConsoleCommand::EndSession => break,
//!         _ => {}
//!     }
//! }
//! console.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Replay
//! The console keeps the latest session info, connection state and member list, the last
//! [`ConsoleConfig::chat_history`] chat lines, the latest state of recent transfers, the last few
//! diagnostics reports, notices and errors, and the end of the session. A page that opens (or reloads, or
//! falls behind the live stream) first receives `{"type":"reset"}` and then all of that, then live
//! events; each event reaches it exactly once.

pub mod api;
mod screen;
mod server;
mod state;
mod upload;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use tokio::net::TcpListener;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

pub use api::{
    Capability, ChatLine, ConnectionState, Consent, ConsentState, ConsoleCommand, ConsoleEvent, DiagnosticsReport,
    DiagnosticsSection, Direction, Member, Role, SessionInfo, Transfer, TransferId, TransferState,
};

pub use screen::{ScreenInput, ScreenMonitor, ScreenRect, ScreenStatus};
use server::{Limits, Shared};
use state::{EventHub, ReplayLimits};

/// The header the page sends the token in (after the first request, which carries it as `?t=`).
pub const TOKEN_HEADER: &str = server::TOKEN_HEADER;

/// How the console is set up. `ConsoleConfig::default()` suits `lifeline support`.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    /// The largest file the provider can upload to send, in bytes. Default 1 GiB.
    pub max_upload_bytes: u64,
    /// Where uploads go. `None` (the default): a new private directory under the system's temp
    /// directory, removed when the console shuts down. A given directory is created if missing
    /// and left in place.
    pub outbox_dir: Option<PathBuf>,
    /// The longest chat line the page may send, in bytes. Default 4096.
    pub max_chat_bytes: usize,
    /// The largest command body, in bytes. Default 16 KiB.
    pub max_command_body: usize,
    /// Commands waiting for the native side before the page is told "busy". Default 64.
    pub command_queue: usize,
    /// Chat lines kept for a page opened late. Default 1000.
    pub chat_history: usize,
    /// Open connections at most (each open page holds one for its event stream). Default 32.
    pub max_connections: usize,
    /// Uploads at the same time at most. Default 2.
    pub max_concurrent_uploads: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            max_upload_bytes: 1 << 30,
            outbox_dir: None,
            max_chat_bytes: 4096,
            max_command_body: 16 * 1024,
            command_queue: 64,
            chat_history: 1000,
            max_connections: 32,
            max_concurrent_uploads: 2,
        }
    }
}

/// The running console. Dropping it stops the server (as [`WebConsole::shutdown`] does, without
/// waiting).
pub struct WebConsole {
    shared: Arc<Shared>,
    url: String,
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
    /// The outbox, when the console made it (and so removes it).
    own_outbox: Option<PathBuf>,
}

impl WebConsole {
    /// Binds `127.0.0.1` on a port the OS picks, makes the token and the outbox, and starts
    /// serving on the current tokio runtime (which needs I/O and time enabled). Returns the
    /// console and the receiver of the page's commands; the page's requests are answered
    /// `410 Gone` once the receiver is dropped.
    pub async fn start(config: ConsoleConfig) -> Result<(WebConsole, mpsc::Receiver<ConsoleCommand>), StartError> {
        // 256 bits from the OS generator.
        let token = random_hex::<32>().map_err(StartError::Random)?;
        let (outbox, own_outbox) = match &config.outbox_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(StartError::Outbox)?;
                (dir.clone(), None)
            }
            None => {
                let dir = make_private_dir().map_err(StartError::Outbox)?;
                (dir.clone(), Some(dir))
            }
        };
        let listener = match TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await {
            Ok(listener) => listener,
            Err(e) => {
                remove_outbox(own_outbox.as_deref());
                return Err(StartError::Bind(e));
            }
        };
        let addr = match listener.local_addr() {
            Ok(addr) => addr,
            Err(e) => {
                remove_outbox(own_outbox.as_deref());
                return Err(StartError::Bind(e));
            }
        };
        let (commands_tx, commands) = mpsc::channel(config.command_queue.max(1));
        let (stop, stopped) = watch::channel(false);
        let shared = Arc::new(Shared {
            token: token.clone(),
            port: addr.port(),
            hub: EventHub::new(
                ReplayLimits { chat_lines: config.chat_history, transfers: 256, diagnostics: 8, messages: 50 },
                1024,
            ),
            commands: commands_tx,
            limits: Limits {
                max_command_body: config.max_command_body,
                max_chat_bytes: config.max_chat_bytes,
                max_upload_bytes: config.max_upload_bytes,
            },
            outbox,
            upload_slots: Semaphore::new(config.max_concurrent_uploads.max(1)),
            next_upload: AtomicU64::new(1),
            stop: stopped,
            screen: screen::ScreenHub::new(),
        });
        let task = tokio::spawn(server::run(listener, shared.clone(), config.max_connections));
        let url = format!("http://{addr}/?t={token}");
        Ok((WebConsole { shared, url, addr, stop, task: Some(task), own_outbox }, commands))
    }

    /// The address to open in the provider's browser, token included. It is a secret for as long
    /// as the console runs: show it to the provider (or open the browser with it), never log it.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The bound address (always `127.0.0.1` and the port the OS picked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where uploaded files are put before they are handed over as [`ConsoleCommand::SendFile`].
    pub fn outbox_dir(&self) -> &Path {
        &self.shared.outbox
    }

    /// Shows an event on every open page, and keeps it for pages opened later. Never blocks.
    pub fn publish(&self, event: ConsoleEvent) {
        self.shared.hub.publish(&event);
    }

    /// A handle for publishing from other tasks.
    pub fn publisher(&self) -> Publisher {
        Publisher(self.shared.clone())
    }

    /// The page's mouse and keyboard on the customer's screen (`POST /api/input`), in batches;
    /// `Some` the first time only. Nothing here checks consent: the receiver must.
    pub fn take_screen_input(&self) -> Option<mpsc::Receiver<Vec<ScreenInput>>> {
        self.shared.screen.take_input()
    }

    /// Stops serving: closes the listener and every connection (open pages see the stream end),
    /// waits for the server task, and removes the outbox if the console made it.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        // `Drop` removes the outbox.
    }
}

impl Drop for WebConsole {
    fn drop(&mut self) {
        self.stop.send_replace(true);
        remove_outbox(self.own_outbox.as_deref());
    }
}

impl fmt::Debug for WebConsole {
    // Not derived: the URL holds the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebConsole")
            .field("addr", &self.addr)
            .field("outbox", &self.shared.outbox)
            .finish_non_exhaustive()
    }
}

/// Publishes events from anywhere; cheap to clone. Publishing after the console stopped does
/// nothing.
#[derive(Clone)]
pub struct Publisher(Arc<Shared>);

impl Publisher {
    /// As [`WebConsole::publish`].
    pub fn publish(&self, event: ConsoleEvent) {
        self.0.hub.publish(&event);
    }

    /// The customer's screen changed: `damage` (the whole frame when `None`) of a frame of
    /// `B G R X` pixels, rows packed (`width × height × 4` bytes; anything else is ignored).
    /// Open pages draw it; a new size clears them first.
    pub fn screen_frame(&self, width: u16, height: u16, bgrx: &[u8], damage: Option<ScreenRect>) {
        self.0.screen.frame(width, height, bgrx, damage);
    }

    /// Nothing is shared any more (view taken back, customer gone): pages clear the canvas.
    pub fn screen_clear(&self) {
        self.0.screen.clear();
    }

    /// Who may do what, for the page's indicator.
    pub fn screen_status(&self, status: ScreenStatus) {
        self.0.screen.status(status);
    }

    /// The customer's pointer, in frame coordinates.
    pub fn screen_cursor(&self, x: i16, y: i16, visible: bool) {
        self.0.screen.cursor(x, y, visible);
    }

    /// The customer's monitors (from its `Layout`) and the index of the one shown.
    pub fn screen_layout(&self, monitors: &[ScreenMonitor], shown: u8) {
        self.0.screen.layout(monitors, shown);
    }
}

impl fmt::Debug for Publisher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Publisher").finish_non_exhaustive()
    }
}

/// Why the console could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum StartError {
    /// The OS generator gave no randomness for the token.
    Random(getrandom::Error),
    /// The outbox directory could not be made.
    Outbox(std::io::Error),
    /// `127.0.0.1` could not be bound.
    Bind(std::io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Random(e) => write!(f, "web console: no randomness for the token: {e}"),
            StartError::Outbox(e) => write!(f, "web console: cannot make the upload directory: {e}"),
            StartError::Bind(e) => write!(f, "web console: cannot listen on 127.0.0.1: {e}"),
        }
    }
}

impl std::error::Error for StartError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StartError::Random(_) => None,
            StartError::Outbox(e) | StartError::Bind(e) => Some(e),
        }
    }
}

/// `N` bytes from the OS generator, as lowercase hex.
pub(crate) fn random_hex<const N: usize>() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// A new directory only this user can enter, under the temp directory.
fn make_private_dir() -> std::io::Result<PathBuf> {
    let suffix = random_hex::<8>().map_err(std::io::Error::other)?;
    let dir = std::env::temp_dir().join(format!("lifeline-console-{suffix}"));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir)?;
    Ok(dir)
}

fn remove_outbox(dir: Option<&Path>) {
    if let Some(dir) = dir {
        let _ = std::fs::remove_dir_all(dir);
    }
}
