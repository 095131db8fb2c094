//! `lifeline support` and `lifeline join` through the broker: the provider logs in and creates
//! the session, the customer resolves its number; the broker names the relay (which reports to
//! it over mutual TLS) and issues both admission tickets. The PIN stays on the two endpoints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeline_broker::store::{NewAccount, Role, Store};
use lifeline_broker::{Config, Server, SystemClock, open_broker, password};
use support::{App, LIMIT, Relay, TempDir, dev_pki, digits_after};

const PASSWORD: &str = "tangerine-Lamp-47";

/// A broker on a free loopback port, in this process, with one provider account.
struct Broker {
    url: String,
    store: Arc<dyn Store>,
    _runtime: tokio::runtime::Runtime,
}

impl Broker {
    fn start(dev: &std::path::Path) -> Broker {
        let text = format!(
            "listen = \"127.0.0.1:0\"\nstore = \"sqlite:{}\"\n[tls]\ncert = \"broker.pem\"\nkey = \"broker.key\"\n\
             ca = \"ca.pem\"\n[tickets]\nsigning_key = \"ticket-signing.key\"\n[relays]\nstale_after_secs = 5\n",
            dev.join("broker.db").display()
        );
        let config = Config::from_toml(&text, dev).unwrap();
        let broker = open_broker(&config, Arc::new(SystemClock)).unwrap();
        let store = broker.store().clone();
        store
            .create_account(&NewAccount {
                email: "ada@example.com".into(),
                name: "Ada".into(),
                role: Role::Provider,
                subscription: String::new(),
                organisation: "Example Helpdesk Ltd".into(),
                password_hash: password::hash(PASSWORD).unwrap(),
                created_at: 0,
            })
            .unwrap();
        store.register_relay("local", &[], None, 0).unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let server = runtime.block_on(Server::bind(&config, Arc::new(broker))).unwrap();
        let url = format!("https://127.0.0.1:{}", server.local_addr().unwrap().port());
        runtime.spawn(server.run());
        Broker { url, store, _runtime: runtime }
    }

    /// Waits for the relay's first report.
    fn wait_for_relay(&self) {
        let deadline = Instant::now() + LIMIT;
        while !self.store.list_relays().unwrap().iter().any(|r| r.last_report.is_some()) {
            assert!(Instant::now() < deadline, "the relay never reported to the broker");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

#[test]
fn support_and_join_go_through_the_broker() {
    let temp = TempDir::new("broker");
    let dev = dev_pki(temp.path(), "dev");
    let broker = Broker::start(&dev);
    let _relay = Relay::start_with(&dev, &format!("\n[broker]\nurl = \"{}\"\ninterval_secs = 0.2\n", broker.url));
    broker.wait_for_relay();
    let ca = dev.join("ca.pem");
    let ca = ca.to_str().unwrap();

    let provider = App::start_with_env(
        ["support", "--broker", &broker.url, "--ca", ca, "--email", "ada@example.com", "--name", "Ada (Helpdesk)"],
        &[("LIFELINE_PASSWORD", PASSWORD)],
    );
    let session = digits_after(&provider.expect("Session number:"), "Session number:");
    let pin = digits_after(&provider.expect("PIN:"), "PIN:");
    provider.expect("Waiting for the customer to join");
    // The broker knows the session; it never saw the PIN.
    let record = broker.store.session(session.parse().unwrap()).unwrap().expect("the broker made the session");
    assert_eq!(record.relay, "local");

    let downloads = temp.path().join("downloads");
    let downloads = downloads.to_str().unwrap();
    let mut customer = App::start(["join", "--broker", &broker.url, "--ca", ca, "--downloads", downloads]);
    customer.type_line(&session);
    customer.type_line(&pin);
    customer.expect("Connected to Ada (Helpdesk) (Provider)");
    provider.expect("Customer (Customer) joined");
    // Who is asking, as the broker has the account (not as the provider's app names itself),
    // at the join and on the status line.
    customer.type_line("/status");
    let status = customer.expect("[status]");
    assert!(status.contains("verified by the broker: Ada, Example Helpdesk Ltd"), "{status}");
    let transcript = customer.output.transcript.lock().unwrap().join("\n");
    assert!(transcript.contains("Provider verified by the broker: Ada, Example Helpdesk Ltd"), "{transcript}");

    // Consent happens on the customer's endpoint; its receipts reach the session report.
    let mut provider = provider;
    provider.type_line("/request view");
    customer.expect("asks to view your screen");
    customer.type_line("/allow view");
    customer.expect("You allowed: view screen");
    customer.type_line("/revoke view");
    customer.expect("You took back: view screen");
    let number = session.parse().unwrap();
    let deadline = Instant::now() + LIMIT;
    let kinds = loop {
        let events = broker.store.session_events(number).unwrap();
        let kinds: Vec<(String, String)> = events
            .iter()
            .filter(|e| ["joined", "granted", "revoked"].contains(&e.kind.as_str()))
            .map(|e| (e.kind.clone(), e.detail.clone()))
            .collect();
        if kinds.len() >= 3 || Instant::now() > deadline {
            break kinds;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let expected =
        [("joined", ""), ("granted", "view"), ("revoked", "view")].map(|(k, d)| (k.to_owned(), d.to_owned()));
    assert_eq!(kinds, expected);

    // Files through the same chain (broker, relay, both endpoints), after consent.
    provider.type_line("/request files");
    customer.expect("/allow files or /deny files");
    customer.type_line("/allow files");
    provider.expect("Customer allowed: file transfer");
    let file = temp.path().join("update.bin");
    support::random_file(&file, 200_000);
    provider.type_line(&format!("/send {}", file.display()));
    customer.expect("offers you the file update.bin");
    customer.type_line("/accept");
    let saved = customer.expect("Received update.bin");
    let saved_as = saved.split("saved as ").nth(1).unwrap().trim_end_matches('.');
    assert_eq!(support::sha256_file(std::path::Path::new(saved_as)), support::sha256_file(&file));
    std::fs::remove_file(saved_as).unwrap();
    customer.type_line("/end");
    customer.expect("Session ended.");
    assert_eq!(customer.wait(LIMIT).code(), Some(0));
    provider.expect("Session ended by Customer.");
    assert_eq!(provider.wait(LIMIT).code(), Some(0));
    // The provider's app told the broker: the report has the end time.
    assert!(broker.store.session(number).unwrap().unwrap().ended_at.is_some());
    let events = broker.store.session_events(record.number).unwrap();
    assert_eq!(events.iter().filter(|e| e.kind == "ticket_member").count(), 1);
    // The customer's endpoint reported the application bytes it moved (the 200 kB file and
    // its chunk framing, plus the chat and control-free payloads), flushed as it exited.
    let bytes = events.iter().filter(|e| e.kind == "bytes").map(|e| e.value).max().unwrap_or(0);
    assert!((200_000..300_000).contains(&bytes), "reported bytes: {bytes}");

    // A wrong password: refused by the broker, nothing started.
    let mut refused = App::start_with_env(
        ["support", "--broker", &broker.url, "--ca", ca, "--email", "ada@example.com"],
        &[("LIFELINE_PASSWORD", "Wrong-guess-1")],
    );
    refused.expect_error("the broker refused the login");
    assert_eq!(refused.wait(LIMIT).code(), Some(6));
    // An unknown session number: refused by the broker.
    let mut lost = App::start(["join", "--broker", &broker.url, "--ca", ca, "--session", "999999999", "--pin", "1"]);
    lost.expect_error("no open session with this number");
    assert_eq!(lost.wait(LIMIT).code(), Some(6));
    // A broker whose certificate is not from --ca: exit 5, said in words (not the TLS
    // library's "UnknownIssuer").
    let other = dev_pki(temp.path(), "other");
    let other_ca = other.join("ca.pem");
    let mut untrusted = App::start([
        "join",
        "--broker",
        &broker.url,
        "--ca",
        other_ca.to_str().unwrap(),
        "--session",
        "999999999",
        "--pin",
        "1",
    ]);
    // (The other dev CA has the same name as the right one, so the signature is what fails.)
    let said = untrusted.expect_error("the broker's TLS certificate is not trusted: it is not signed by");
    assert!(said.contains("Check --ca"), "{said}");
    assert!(!said.contains("BadSignature") && !said.contains("UnknownIssuer"), "{said}");
    assert_eq!(untrusted.wait(LIMIT).code(), Some(5));
    // No broker at that address: exit 4.
    let nowhere = format!("https://127.0.0.1:{}", support::free_port());
    let mut unreachable =
        App::start(["join", "--broker", &nowhere, "--ca", ca, "--session", "999999999", "--pin", "1"]);
    unreachable.expect_error("broker unreachable");
    assert_eq!(unreachable.wait(LIMIT).code(), Some(4));
}
