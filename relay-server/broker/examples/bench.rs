//! Broker benchmarks (not part of the tests): logins per second and session creations per
//! second against SQLite and PostgreSQL, beside the raw Argon2id hash rate (the physical limit
//! of logins per second: every login hashes once).
//!
//! ```sh
//! cargo run --release -p lifeline-broker --example bench -- [SECONDS] [THREADS]
//! # with PostgreSQL too:
//! source scripts/postgres-test.sh && cargo run --release -p lifeline-broker --example bench; postgres_test_stop
//! ```
//!
//! PostgreSQL is used when `LIFELINE_TEST_POSTGRES_URL` is set (a database `lifeline_bench` is
//! made on that server and dropped first). Results go to stdout as a Markdown table.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lifeline_broker::store::{NewAccount, Role, SqliteStore, Store};
use lifeline_broker::{Broker, Policy, Request, SystemClock, password};
use lifeline_ticket::TicketSigner;
use serde_json::json;

const PASSWORD: &str = "tangerine-Lamp-47";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let seconds: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let duration = Duration::from_secs_f64(seconds);
    println!("| measurement | store | threads | per second |");
    println!("|---|---|---|---|");

    let hashed = password::hash(PASSWORD).unwrap();
    for n in [1, threads] {
        let rate = run(n, duration, |_, _| assert!(password::verify(PASSWORD, &hashed)));
        println!("| Argon2id verify (m=19 MiB, t=2, p=1), reference | - | {n} | {rate:.1} |");
    }

    let dir = std::env::temp_dir().join(format!("lifeline-broker-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.join("bench.db").to_str().unwrap()).unwrap());
    let mut stores = vec![("SQLite (file, WAL)", sqlite)];
    if let Ok(url) = std::env::var("LIFELINE_TEST_POSTGRES_URL") {
        let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        admin.batch_execute("DROP DATABASE IF EXISTS lifeline_bench").unwrap();
        admin.batch_execute("CREATE DATABASE lifeline_bench").unwrap();
        let pg = lifeline_broker::store::PostgresStore::open(&format!("{url} dbname=lifeline_bench")).unwrap();
        stores.push(("PostgreSQL (loopback)", Arc::new(pg)));
    }
    for (name, store) in stores {
        let policy = Policy { failures_per_source_per_min: 1e9, failures_per_source_burst: 1e9, ..Policy::default() };
        let broker =
            Arc::new(Broker::new(store.clone(), Arc::new(SystemClock), TicketSigner::generate().unwrap(), policy));
        for i in 0..threads {
            store
                .create_account(&NewAccount {
                    email: format!("p{i}@example.com"),
                    name: "Bench".into(),
                    role: Role::Provider,
                    subscription: String::new(),
                    organisation: String::new(),
                    password_hash: hashed.clone(),
                    created_at: 0,
                })
                .unwrap();
        }
        store.register_relay("a", &["127.0.0.1:8200".into()], None, 0).unwrap();
        let now = lifeline_broker::Clock::now_unix(&SystemClock);
        store
            .record_relay_report("a", &lifeline_broker::store::RelayLoad { healthy: true, ..Default::default() }, now)
            .unwrap();
        // Keep the relay fresh for the whole run.
        store
            .record_relay_report(
                "a",
                &lifeline_broker::store::RelayLoad { healthy: true, ..Default::default() },
                now + 3600,
            )
            .unwrap();

        let login = |thread: usize, _: u64| {
            let mut request = Request::new("POST", "/v1/login")
                .json(&json!({ "email": format!("p{thread}@example.com"), "password": PASSWORD }));
            request.source = IpAddr::from([10, 0, 0, thread as u8]);
            let response = broker.handle(&request);
            assert_eq!(response.status, 200);
        };
        let rate = run(threads, duration, login);
        println!("| logins (handle: argon2 + lockout transaction + token) | {name} | {threads} | {rate:.1} |");

        let tokens: Vec<String> = (0..threads)
            .map(|i| {
                let request = Request::new("POST", "/v1/login")
                    .json(&json!({ "email": format!("p{i}@example.com"), "password": PASSWORD }));
                broker.handle(&request).json()["token"].as_str().unwrap().to_owned()
            })
            .collect();
        let create = |thread: usize, _: u64| {
            let response = broker.handle(&Request::new("POST", "/v1/sessions").bearer(&tokens[thread]));
            assert_eq!(response.status, 201, "{}", String::from_utf8_lossy(&response.body));
        };
        let rate = run(threads, duration, create);
        println!(
            "| session creations (handle: assign relay + insert + sign ticket) | {name} | {threads} | {rate:.1} |"
        );
    }
    https(&dir, threads, duration);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same two operations through HTTPS: a TLS 1.3 handshake per request (as the desktop app
/// does), HTTP/1.1, the server's limits; clients on the same machine, `threads` at once.
fn https(dir: &std::path::Path, threads: usize, duration: Duration) {
    let pki = dir.join("pki");
    lifeline_relay::pki::init(&pki, &["a".to_owned()], &["127.0.0.1".to_owned()]).unwrap();
    let text = format!(
        "listen = \"127.0.0.1:0\"\nstore = \"sqlite:{}\"\n[tls]\ncert = \"broker.pem\"\nkey = \"broker.key\"\n\
         ca = \"ca.pem\"\n[tickets]\nsigning_key = \"ticket-signing.key\"\n\
         [auth]\nfailures_per_source_per_min = 1000000\nfailures_per_source_burst = 1000000\n",
        dir.join("https.db").display()
    );
    let config = lifeline_broker::Config::from_toml(&text, &pki).unwrap();
    let broker = lifeline_broker::open_broker(&config, Arc::new(SystemClock)).unwrap();
    let store = broker.store().clone();
    store
        .create_account(&NewAccount {
            email: "p@example.com".into(),
            name: "Bench".into(),
            role: Role::Provider,
            subscription: String::new(),
            organisation: String::new(),
            password_hash: password::hash(PASSWORD).unwrap(),
            created_at: 0,
        })
        .unwrap();
    store.register_relay("a", &["127.0.0.1:8200".into()], None, 0).unwrap();
    let load = lifeline_broker::store::RelayLoad { healthy: true, ..Default::default() };
    store.record_relay_report("a", &load, lifeline_broker::Clock::now_unix(&SystemClock) + 3600).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let server = runtime.block_on(lifeline_broker::Server::bind(&config, Arc::new(broker))).unwrap();
    let url = format!("https://127.0.0.1:{}", server.local_addr().unwrap().port());
    runtime.spawn(server.run());
    let roots = lifeline_broker::tls::roots(&pki.join("ca.pem")).unwrap();
    let client = lifeline_broker::BrokerClient::new(&url, roots).unwrap();
    let token = runtime.block_on(client.login("p@example.com", PASSWORD)).unwrap();
    let login_client = client.clone();
    let rate = runtime.block_on(run_async(threads, duration, move || {
        let client = login_client.clone();
        async move {
            client.login("p@example.com", PASSWORD).await.unwrap();
        }
    }));
    println!("| logins over HTTPS (new TLS 1.3 connection each) | SQLite (file, WAL) | {threads} | {rate:.1} |");
    let rate = runtime.block_on(run_async(threads, duration, move || {
        let client = client.clone();
        let token = token.clone();
        async move {
            client.create_session(&token).await.unwrap();
        }
    }));
    println!(
        "| session creations over HTTPS (new TLS 1.3 connection each) | SQLite (file, WAL) | {threads} | {rate:.1} |"
    );
}

/// Runs `work` `threads` times concurrently, again and again, for `duration`; operations per second.
async fn run_async<F: std::future::Future<Output = ()> + Send + 'static>(
    threads: usize,
    duration: Duration,
    work: impl Fn() -> F + Send + Sync + 'static,
) -> f64 {
    let work = Arc::new(work);
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..threads)
        .map(|_| {
            let (work, done) = (work.clone(), done.clone());
            tokio::spawn(async move {
                while start.elapsed() < duration {
                    work().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Runs `work` on `threads` threads for `duration`; operations per second.
fn run(threads: usize, duration: Duration, work: impl Fn(usize, u64) + Sync) -> f64 {
    let done = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let done = &done;
            let work = &work;
            scope.spawn(move || {
                let mut i = 0;
                while start.elapsed() < duration {
                    work(thread, i);
                    i += 1;
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    done.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}
