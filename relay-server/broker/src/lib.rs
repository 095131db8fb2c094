//! The Lifeline service broker: accounts and roles, login with lockout, session set-up,
//! admission tickets, relay assignment, reports and the audit log.
//!
//! The broker is trusted for who may start a session, never for what happens in it: it signs
//! admission tickets (Ed25519, `lifeline-ticket`) that let an endpoint into a session's routing
//! on a relay, and it never sees the customer's PIN or any session key.
//!
//! # Layers
//!
//! - [`store::Store`]: persistent state, embedded SQLite ([`store::SqliteStore`]) or PostgreSQL
//!   ([`store::PostgresStore`]), with migrations. Synchronous; atomic where concurrency matters.
//! - [`service::Broker`]: the API logic, transport-free: a [`service::Request`] in, a
//!   [`service::Response`] out. Roles, password policy, lockout, throttling, tickets, reports
//!   and audit all live here, reading time from an injected [`clock::Clock`].
//! - [`server::Server`]: HTTPS (rustls TLS 1.3 + hyper HTTP/1.1) in front of the broker; relays
//!   present a fleet client certificate to report health and load.
//! - [`client::BrokerClient`]: the API client endpoints and tools use.
//!
//! `docs/broker.md` in the repository describes the API, roles, configuration and operation;
//! `docs/broker-openapi.yaml` is the API's OpenAPI description.

//!
//! # Features
//!
//! `server` (default): everything above. Without it (`default-features = false`) the crate is
//! [`client`] and [`hex`] only, with no database or hashing code: what endpoints link.

pub mod client;
#[cfg(feature = "server")]
pub mod clock;
#[cfg(feature = "server")]
pub mod config;
pub mod hex;
#[cfg(feature = "server")]
pub mod password;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod service;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod tls;

pub use client::{BrokerClient, ClientError, SessionGrant, VerifiedProvider};
#[cfg(feature = "server")]
pub use clock::{Clock, ManualClock, SystemClock};
#[cfg(feature = "server")]
pub use config::Config;
#[cfg(feature = "server")]
pub use server::{Server, ShutdownHandle, StartError, open_broker};
#[cfg(feature = "server")]
pub use service::{Broker, Policy, Request, Response};
