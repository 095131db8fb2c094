//! `lifeline-transport-tokio`: runs a Lifeline session over TLS to a relay, on tokio.
//!
//! A thin driver of [`lifeline_core`]: it owns the socket, TLS and the clock, feeds the engine's
//! `handle_*` calls and sends what its `poll_*` calls return. It makes no protocol decision of
//! its own: who may join, what is encrypted, what the customer allowed are the engine's.
//!
//! # Layers
//!
//! - [`tls`]: the client configuration (TLS 1.3 only, ring, ALPN `lifeline/1`, one CA file or
//!   the compiled-in Mozilla roots).
//! - [`connect`]: reaching a relay the way the seed design does: outbound only, TLS raced over
//!   several ports (8200, 443, 80), the first finished handshake wins; plain TCP probes to rank
//!   relays by round-trip time. [`proxy`]: HTTP CONNECT tunnels.
//! - [`driver`]: the session task: admission (`Admit` → `Welcome`), the engine's run loop,
//!   reconnection with exponential backoff and jitter, and resumption with the same member id
//!   (no new join) after a lost connection or a relay's `GoAway`.
//!
//! # The run loop
//!
//! One task per session. Each turn waits for exactly one input (a command from the
//! [`SessionHandle`], bytes from the relay, the engine's timer, a connection attempt's result,
//! the reconnect timer), hands it to the engine, then drains the engine in the order its contract
//! states: `poll_transmit` until empty (into an outbox written to the relay), `poll_event` until
//! empty (to [`SessionEvents`]), then `poll_timeout` becomes the one timer
//! (`tokio::time::sleep_until`). Time is [`Clock`]: `tokio::time::Instant` as microseconds from a
//! fixed origin. Randomness is the OS generator ([`os_rng`]).
//!
//! # Example
//!
//! A customer joining with the session number and PIN it was told:
//!
//! ```no_run
//! use lifeline_core::session::{Config, Event, Pin};
//! use lifeline_core::wire::{handshake::Role, MemberId};
//! use lifeline_transport_tokio::{
//!     client_config, spawn_session, ConnectionState, Join, RelayAddress, SessionSpec, TransportConfig,
//!     TransportEvent, TrustAnchors,
//! };
//!
//! # async fn run(ticket: Vec<u8>) -> Result<(), Box<dyn std::error::Error>> {
//! let tls = client_config(&TrustAnchors::CaFile("dev/ca.pem".into()))?;
//! let relays = vec![RelayAddress::parse("127.0.0.1:8200,8443")?];
//! let config = TransportConfig::new(relays, tls);
//! let spec = SessionSpec {
//!     config: Config::new(123_456_789, MemberId(1), Role::Customer, "Customer"),
//!     join: Join::Member(Pin::from_str_truncated("1234 5678")),
//!     ticket,
//! };
//! let (handle, mut events) = spawn_session(config, spec);
//! while let Some(event) = events.next().await {
//!     match event {
//!         TransportEvent::Session(Event::Joined { .. }) => handle.chat("Hello!").await?,
//!         TransportEvent::Data(data) => println!("{}", String::from_utf8_lossy(&data.payload)),
//!         TransportEvent::Connection(ConnectionState::Closed { cause }) => println!("ended: {cause}"),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```

pub mod backoff;
pub mod clock;
pub mod connect;
pub mod driver;
pub mod proxy;
pub mod rng;
pub mod tls;

pub use backoff::Backoff;
pub use clock::Clock;
pub use connect::{ConnectError, DEFAULT_PORTS, RelayAddress, Timing};
pub use driver::{
    BatchResult, CloseCause, ConnectionState, EngineSession, Join, MAX_MEMBERS, Received, SessionEvents, SessionHandle,
    SessionSpec, TransportConfig, TransportEvent, spawn_session,
};
pub use proxy::HttpProxy;
pub use rng::{OsRng, os_rng};
pub use tls::{ALPN, TrustAnchors, client_config};
