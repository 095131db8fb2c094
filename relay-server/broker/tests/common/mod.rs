//! Test harness: a broker over SQLite (in memory) or PostgreSQL (a fresh database per test on
//! the server `LIFELINE_TEST_POSTGRES_URL` names), a manual clock, and a development PKI for
//! relay client certificates.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use lifeline_broker::store::{NewAccount, Role, SqliteStore, Store};
use lifeline_broker::{Broker, ManualClock, Policy, Request, Response, password};
use lifeline_ticket::TicketSigner;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

/// 2026-01-01T00:00:00Z.
pub const START: i64 = 1_767_225_600;
/// A password that passes the policy.
pub const GOOD_PASSWORD: &str = "tangerine-Lamp-47";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The PostgreSQL server for tests. In CI it must be there (`scripts/test.sh` starts one):
/// a test that silently skips is not a test.
pub fn postgres_url() -> Option<String> {
    match std::env::var("LIFELINE_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but LIFELINE_TEST_POSTGRES_URL is unset: run the tests through scripts/test.sh")
        }
        _ => {
            eprintln!(
                "SKIPPED (PostgreSQL): LIFELINE_TEST_POSTGRES_URL is unset; `source scripts/postgres-test.sh` to run it"
            );
            None
        }
    }
}

/// A fresh, empty store; `None` (after saying so) if PostgreSQL is not available outside CI.
pub fn store(backend: Backend) -> Option<Arc<dyn Store>> {
    match backend {
        Backend::Sqlite => Some(Arc::new(SqliteStore::open(":memory:").unwrap())),
        Backend::Postgres => {
            let url = postgres_url()?;
            static COUNTER: AtomicU32 = AtomicU32::new(0);
            let name = format!("lifeline_test_{}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
            let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).unwrap();
            admin.batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
            Some(Arc::new(lifeline_broker::store::PostgresStore::open(&format!("{url} dbname={name}")).unwrap()))
        }
    }
}

/// A fresh folder under Cargo's temporary folder.
pub fn temp_dir(tag: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "lifeline-broker-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One development PKI per test binary: relays a, b, c and local, and the broker.
pub fn pki_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = temp_dir("pki");
        let relays = ["a", "b", "c", "local"].map(String::from);
        lifeline_relay::pki::init(&dir, &relays, &["localhost".into(), "127.0.0.1".into()]).unwrap();
        dir
    })
}

pub fn signer() -> TicketSigner {
    TicketSigner::from_pem(&std::fs::read_to_string(pki_dir().join("ticket-signing.key")).unwrap()).unwrap()
}

/// The DER leaf of a PKI certificate file (`relay-a.pem`, `broker.pem`).
pub fn cert_der(file: &str) -> Vec<u8> {
    CertificateDer::pem_file_iter(pki_dir().join(file)).unwrap().next().unwrap().unwrap().to_vec()
}

/// A broker on a manual clock.
pub struct Env {
    pub broker: Arc<Broker>,
    pub clock: ManualClock,
    pub backend: Backend,
}

impl Env {
    pub fn new(backend: Backend) -> Option<Env> {
        Env::with_policy(backend, Policy::default())
    }

    pub fn with_policy(backend: Backend, policy: Policy) -> Option<Env> {
        let store = store(backend)?;
        let clock = ManualClock::new(START);
        let broker = Arc::new(Broker::new(store, Arc::new(clock.clone()), signer(), policy));
        Some(Env { broker, clock, backend })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.broker.store()
    }

    /// Creates an account directly in the store.
    pub fn account(&self, role: Role, email: &str) -> i64 {
        self.store()
            .create_account(&NewAccount {
                email: email.into(),
                name: format!("Test {email}"),
                role,
                subscription: "test".into(),
                organisation: String::new(),
                password_hash: password::hash(GOOD_PASSWORD).unwrap(),
                created_at: self.clock_now(),
            })
            .unwrap()
    }

    pub fn clock_now(&self) -> i64 {
        lifeline_broker::Clock::now_unix(&self.clock)
    }

    pub fn handle(&self, request: Request) -> Response {
        self.broker.handle(&request)
    }

    pub fn login_from(&self, email: &str, password: &str, source: IpAddr) -> Response {
        let mut request = Request::new("POST", "/v1/login").json(&json!({ "email": email, "password": password }));
        request.source = source;
        self.handle(request)
    }

    pub fn login(&self, email: &str) -> String {
        let response = self.login_from(email, GOOD_PASSWORD, IpAddr::from([127, 0, 0, 1]));
        assert_eq!(response.status, 200, "{}", String::from_utf8_lossy(&response.body));
        response.json()["token"].as_str().unwrap().to_owned()
    }

    /// A request with a token and an optional JSON body.
    pub fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Response {
        let mut request = Request::new(method, path).bearer(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.handle(request)
    }

    /// A relay report as relay `name`, presenting the certificate of relay `cert_of`.
    pub fn report_as(&self, name: &str, cert_of: &str, healthy: bool, members: i64) -> Response {
        let mut request = Request::new("POST", "/v1/relay/report").json(&json!({
            "name": name, "healthy": healthy, "sessions": members / 2, "members": members, "connections": members,
        }));
        request.client_cert = Some(cert_der(&format!("relay-{cert_of}.pem")));
        self.handle(request)
    }

    pub fn report(&self, name: &str, members: i64) -> Response {
        self.report_as(name, name, true, members)
    }

    /// Registers relay `name` at 127.0.0.1:port directly in the store.
    pub fn register_relay(&self, name: &str) {
        self.store().register_relay(name, &[format!("127.0.0.1:82{}", name.len())], None, self.clock_now()).unwrap();
    }

    /// The audit outcomes of `action`, oldest first.
    pub fn audit_outcomes(&self, action: &str) -> Vec<String> {
        let mut entries = self.store().audit_log(100_000).unwrap();
        entries.reverse();
        entries.into_iter().filter(|e| e.action == action).map(|e| e.outcome).collect()
    }
}

/// Runs each named test function (taking a [`Backend`]) once per store.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[test] fn $name() { super::$name(super::common::Backend::Sqlite) } )*
        }
        mod postgres {
            $( #[test] fn $name() { super::$name(super::common::Backend::Postgres) } )*
        }
    };
}
