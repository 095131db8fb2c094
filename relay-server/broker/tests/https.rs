//! The broker over HTTPS: framing limits, mutual TLS for relay reports, and a broker-issued
//! ticket admitted by a real relay (a forged one refused).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lifeline_broker::store::{NewAccount, Role};
use lifeline_broker::{BrokerClient, Config, Server, ShutdownHandle, SystemClock, open_broker, password};
use lifeline_core::wire::relay::{RefusalReason, RelayRepr};
use lifeline_core::wire::{Destination, HEADER_LEN, MemberId, StreamDecoder};
use lifeline_ticket::{Ticket, TicketRole, TicketSigner};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

struct TestBroker {
    addr: SocketAddr,
    handle: ShutdownHandle,
    task: tokio::task::JoinHandle<()>,
    store: Arc<dyn lifeline_broker::store::Store>,
}

impl TestBroker {
    async fn start(extra: &str) -> TestBroker {
        let dir = common::temp_dir("https");
        let text = format!(
            r#"
            listen = "127.0.0.1:0"
            store = "sqlite:{db}"
            [tls]
            cert = "broker.pem"
            key = "broker.key"
            ca = "ca.pem"
            [tickets]
            signing_key = "ticket-signing.key"
            {extra}
            "#,
            db = dir.join("broker.db").display()
        );
        let config = Config::from_toml(&text, common::pki_dir()).unwrap();
        let broker = {
            let config = config.clone();
            tokio::task::spawn_blocking(move || open_broker(&config, Arc::new(SystemClock))).await.unwrap().unwrap()
        };
        let store = broker.store().clone();
        let server = Server::bind(&config, Arc::new(broker)).await.unwrap();
        let addr = server.local_addr().unwrap();
        let handle = server.shutdown_handle();
        TestBroker { addr, handle, task: tokio::spawn(server.run()), store }
    }

    fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.addr.port())
    }

    fn client(&self) -> BrokerClient {
        BrokerClient::new(&self.url(), roots()).unwrap()
    }

    fn relay_client(&self, relay: &str) -> BrokerClient {
        let dir = common::pki_dir();
        let chain = CertificateDer::pem_file_iter(dir.join(format!("relay-{relay}.pem")))
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join(format!("relay-{relay}.key"))).unwrap();
        BrokerClient::with_client_cert(&self.url(), roots(), chain, key).unwrap()
    }

    async fn account(&self, role: Role, email: &str) {
        let store = self.store.clone();
        let email = email.to_owned();
        tokio::task::spawn_blocking(move || {
            store
                .create_account(&NewAccount {
                    email,
                    name: "Test".into(),
                    role,
                    subscription: String::new(),
                    organisation: String::new(),
                    password_hash: password::hash(common::GOOD_PASSWORD).unwrap(),
                    created_at: 0,
                })
                .unwrap()
        })
        .await
        .unwrap();
    }

    async fn stop(self) {
        self.handle.shutdown();
        tokio::time::timeout(Duration::from_secs(5), self.task).await.unwrap().unwrap();
    }
}

fn roots() -> rustls::RootCertStore {
    lifeline_broker::tls::roots(&common::pki_dir().join("ca.pem")).unwrap()
}

#[tokio::test]
async fn http_framing_limits_and_errors() {
    let broker = TestBroker::start("[limits]\nmax_body_bytes = 4096").await;
    broker.account(Role::AccountAdmin, "accounts@example.com").await;
    let client = broker.client();
    let health = client.raw("GET", "/v1/health", &[], Vec::new()).await.unwrap();
    assert_eq!((health.status, health.content_type.as_str()), (200, "application/json"));
    let token = client.login("accounts@example.com", common::GOOD_PASSWORD).await.unwrap();
    let auth = format!("Bearer {token}");
    let json_headers = [("authorization", auth.as_str()), ("content-type", "application/json")];

    // A body over the limit: 413 before anything is parsed or stored.
    let huge =
        format!(r#"{{"email":"big@example.com","name":"{}","password":"tangerine-Lamp-47"}}"#, "x".repeat(1 << 20));
    let response = client.raw("POST", "/v1/admin/accounts", &json_headers, huge.into_bytes()).await.unwrap();
    assert_eq!((response.status, response.json()["error"].as_str()), (413, Some("too_large")));
    // Malformed JSON and the wrong content type: clear 4xx JSON errors.
    let response = client.raw("POST", "/v1/admin/accounts", &json_headers, b"{\"email\":".to_vec()).await.unwrap();
    assert_eq!((response.status, response.json()["error"].as_str()), (400, Some("bad_request")));
    let form = [("authorization", auth.as_str()), ("content-type", "application/x-www-form-urlencoded")];
    let response = client.raw("POST", "/v1/admin/accounts", &form, b"email=a%40b.c".to_vec()).await.unwrap();
    assert_eq!((response.status, response.json()["error"].as_str()), (415, Some("unsupported_media_type")));
    // The same without a Content-Length (chunked): cut off while streaming.
    let status = chunked_upload(broker.addr, 1 << 20).await;
    assert_eq!(status, 413);
    // Nothing was stored.
    let accounts = client.call("GET", "/v1/admin/accounts", Some(&token), None).await.unwrap();
    assert_eq!(accounts["accounts"].as_array().unwrap().len(), 1);
    // Wrong credentials: an opaque 401.
    match client.login("accounts@example.com", "Wrong-guess-1").await {
        Err(lifeline_broker::ClientError::Api { status: 401, message, .. }) => {
            assert_eq!(message, "invalid credentials")
        }
        other => panic!("{other:?}"),
    }
    broker.stop().await;
}

/// Sends a chunked body of `len` bytes to /v1/login over raw TLS; returns the HTTP status.
async fn chunked_upload(addr: SocketAddr, len: usize) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots())
        .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let head = "POST /v1/login HTTP/1.1\r\nHost: broker\r\nContent-Type: application/json\r\n\
                Transfer-Encoding: chunked\r\n\r\n";
    tls.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b' '; 16 * 1024];
    let mut sent = 0;
    while sent < len {
        let frame = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk.clone(), b"\r\n".to_vec()].concat();
        if tls.write_all(&frame).await.is_err() {
            break; // the server answered and closed
        }
        sent += chunk.len();
    }
    let _ = tls.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ').nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}

#[tokio::test]
async fn relays_report_over_mutual_tls() {
    let broker = TestBroker::start("").await;
    broker.account(Role::NetworkAdmin, "network@example.com").await;
    let client = broker.client();
    let token = client.login("network@example.com", common::GOOD_PASSWORD).await.unwrap();
    let relay = json!({ "name": "a", "addresses": ["127.0.0.1:8200"] });
    client.call("POST", "/v1/admin/relays", Some(&token), Some(&relay)).await.unwrap();
    let report = json!({ "name": "a", "healthy": true, "sessions": 1, "members": 2, "connections": 2 });
    // Without a client certificate: refused. With relay b's: refused. With a's: stored.
    let anonymous = client.call("POST", "/v1/relay/report", None, Some(&report)).await;
    assert!(matches!(anonymous, Err(lifeline_broker::ClientError::Api { status: 401, .. })), "{anonymous:?}");
    let as_b = broker.relay_client("b").call("POST", "/v1/relay/report", None, Some(&report)).await;
    assert!(matches!(as_b, Err(lifeline_broker::ClientError::Api { status: 403, .. })), "{as_b:?}");
    broker.relay_client("a").call("POST", "/v1/relay/report", None, Some(&report)).await.unwrap();
    let fleet = client.call("GET", "/v1/admin/relays", Some(&token), None).await.unwrap();
    assert_eq!(fleet["relays"][0]["members"], 2);
    assert_eq!(fleet["relays"][0]["assignable"], true);
    broker.stop().await;
}

/// Sends `Admit` with `ticket` to a relay and returns its answer.
async fn admit(relay: SocketAddr, session: u64, ticket: &[u8]) -> RelayRepr<'static> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots())
        .with_no_client_auth();
    config.alpn_protocols = vec![lifeline_relay::ALPN_ENDPOINT.to_vec()];
    let tcp = TcpStream::connect(relay).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .unwrap();
    let mut frame = vec![0u8; 1024];
    let len = RelayRepr::Admit { resume: None, ticket }
        .emit_frame(session, Destination::Member(MemberId::RELAY), &mut frame)
        .unwrap();
    tls.write_all(&frame[..len]).await.unwrap();
    let mut decoder: Box<StreamDecoder> = Box::new(StreamDecoder::new());
    let mut buf = vec![0u8; 4096];
    loop {
        if let Some(frame) = decoder.next_frame().unwrap() {
            return match RelayRepr::parse(&frame[HEADER_LEN..]).unwrap() {
                RelayRepr::Welcome { member } => RelayRepr::Welcome { member },
                RelayRepr::Refused { reason } => RelayRepr::Refused { reason },
                other => panic!("unexpected {other:?}"),
            };
        }
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await.unwrap().unwrap();
        assert!(read > 0, "relay closed without an answer");
        decoder.push(&buf[..read]);
    }
}

#[tokio::test]
async fn a_broker_ticket_is_admitted_by_a_real_relay_and_a_forged_one_refused() {
    let broker = TestBroker::start("[relays]\nstale_after_secs = 1").await;
    broker.account(Role::Provider, "ada@example.com").await;
    {
        let store = broker.store.clone();
        tokio::task::spawn_blocking(move || store.register_relay("local", &[], None, 0).unwrap()).await.unwrap();
    }
    // A real relay, reporting to the broker every 100 ms over mutual TLS.
    let relay_text = format!(
        r#"
        name = "local"
        listen = ["127.0.0.1:0"]
        metrics_listen = "127.0.0.1:0"
        [tls]
        cert = "relay-local.pem"
        key = "relay-local.key"
        ca = "ca.pem"
        [tickets]
        verify_key = "ticket-verify.pem"
        [broker]
        url = "{}"
        interval_secs = 0.1
        "#,
        broker.url()
    );
    let relay = lifeline_relay::Relay::bind(lifeline_relay::Config::from_toml(&relay_text, common::pki_dir()).unwrap())
        .await
        .unwrap();
    let relay_addr = relay.endpoint_addrs()[0];
    let relay_handle = relay.shutdown_handle();
    let relay_task = tokio::spawn(relay.run());

    let client = broker.client();
    let token = client.login("ada@example.com", common::GOOD_PASSWORD).await.unwrap();
    // The relay's first report makes it assignable.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let grant = loop {
        match client.create_session(&token).await {
            Ok(grant) => break grant,
            Err(lifeline_broker::ClientError::Api { status: 503, .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(error) => panic!("{error}"),
        }
    };
    assert_eq!(grant.relay, "local");
    assert_eq!(grant.addresses, [relay_addr.to_string()], "the relay reports its bound address");

    // The provider's leader ticket and the customer's member ticket are admitted.
    assert!(matches!(
        admit(relay_addr, grant.session, &grant.ticket).await,
        RelayRepr::Welcome { member: MemberId(0) }
    ));
    let customer = client.resolve(grant.session).await.unwrap();
    assert!(matches!(
        admit(relay_addr, grant.session, &customer.ticket).await,
        RelayRepr::Welcome { member: MemberId(1) }
    ));

    // A ticket forged with another key, for the same session and relay: refused.
    let forger = TicketSigner::generate().unwrap();
    let expires = u64::try_from(customer.ticket_expires_at).unwrap();
    let forged = forger.mint(&Ticket::new(grant.session, TicketRole::Member, "local", expires)).unwrap();
    assert!(matches!(
        admit(relay_addr, grant.session, &forged).await,
        RelayRepr::Refused { reason: RefusalReason::BadTicket }
    ));
    // The customer's ticket for another session number: refused too.
    assert!(matches!(
        admit(relay_addr, grant.session + 1, &customer.ticket).await,
        RelayRepr::Refused { reason: RefusalReason::BadTicket }
    ));

    // The relay stops: it reports itself draining, then goes silent; no session is homed on it.
    relay_handle.shutdown();
    tokio::time::timeout(Duration::from_secs(10), relay_task).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    match client.create_session(&token).await {
        Err(lifeline_broker::ClientError::Api { status: 503, code, .. }) => assert_eq!(code, "no_relay"),
        other => panic!("a dead relay was assigned: {other:?}"),
    }
    broker.stop().await;
}
