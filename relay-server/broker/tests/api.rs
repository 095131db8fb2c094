//! The API's rules, through `Broker::handle` (everything but the HTTP framing, which
//! `https.rs` covers), against SQLite and PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::IpAddr;
use std::sync::Arc;

use common::{Backend, Env, GOOD_PASSWORD, START};
use lifeline_broker::store::Role;
use lifeline_broker::{Policy, Request};
use serde_json::json;

both_stores!(
    role_boundaries,
    providers_see_only_their_own_reports,
    password_policy_applies_when_set_or_changed,
    lockout_follows_the_injected_clock,
    lockout_holds_under_concurrent_attempts,
    failures_are_throttled_per_source_address,
    tokens_expire_and_logout_revokes,
    least_loaded_healthy_relay_is_assigned,
    dead_and_unhealthy_relays_are_never_assigned,
    relay_reports_need_the_right_certificate,
    session_flow_with_consent_receipts_and_reports,
    bad_input_is_refused_and_nothing_is_stored,
    the_customer_learns_the_provider_as_the_broker_has_the_account,
);

fn setup_roles(env: &Env) -> (String, String, String) {
    env.account(Role::AccountAdmin, "accounts@example.com");
    env.account(Role::NetworkAdmin, "network@example.com");
    env.account(Role::Provider, "ada@example.com");
    (env.login("accounts@example.com"), env.login("network@example.com"), env.login("ada@example.com"))
}

fn role_boundaries(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let (accounts, network, provider) = setup_roles(&env);
    let new_account = json!({ "email": "bob@example.com", "name": "Bob", "password": GOOD_PASSWORD });
    let relay = json!({ "name": "a", "addresses": ["127.0.0.1:8200"] });

    // A provider can do no admin work.
    for (method, path, body) in [
        ("GET", "/v1/admin/accounts", None),
        ("POST", "/v1/admin/accounts", Some(new_account.clone())),
        ("DELETE", "/v1/admin/accounts/1", None),
        ("POST", "/v1/admin/accounts/1/unlock", None),
        ("GET", "/v1/admin/audit", None),
        ("GET", "/v1/admin/relays", None),
        ("POST", "/v1/admin/relays", Some(relay.clone())),
        ("DELETE", "/v1/admin/relays/a", None),
    ] {
        assert_eq!(env.call(method, path, &provider, body).status, 403, "provider: {method} {path}");
    }
    // The network administrator cannot manage accounts or start sessions.
    assert_eq!(env.call("POST", "/v1/admin/accounts", &network, Some(new_account.clone())).status, 403);
    assert_eq!(env.call("GET", "/v1/admin/accounts", &network, None).status, 403);
    assert_eq!(env.call("POST", "/v1/sessions", &network, None).status, 403);
    assert_eq!(env.call("GET", "/v1/reports", &network, None).status, 403);
    // The account administrator cannot manage relays or start sessions.
    assert_eq!(env.call("POST", "/v1/admin/relays", &accounts, Some(relay.clone())).status, 403);
    assert_eq!(env.call("GET", "/v1/admin/relays", &accounts, None).status, 403);
    assert_eq!(env.call("POST", "/v1/sessions", &accounts, None).status, 403);
    // Nothing was stored by the refused calls.
    assert_eq!(env.store().list_accounts().unwrap().len(), 3);
    assert!(env.store().list_relays().unwrap().is_empty());
    assert_eq!(env.audit_outcomes("account_create"), ["forbidden", "forbidden"]);

    // Each role can do its own work.
    assert_eq!(env.call("POST", "/v1/admin/accounts", &accounts, Some(new_account)).status, 201);
    assert_eq!(env.call("POST", "/v1/admin/relays", &network, Some(relay)).status, 201);
    assert_eq!(env.call("GET", "/v1/admin/relays", &network, None).status, 200);
    // Account administrators manage providers only; administrators are made with the CLI.
    let admin_id = env.store().account_by_email("network@example.com").unwrap().unwrap().id;
    assert_eq!(env.call("DELETE", &format!("/v1/admin/accounts/{admin_id}"), &accounts, None).status, 403);
    // Without a token, or with a made-up one: 401, same answer.
    assert_eq!(env.handle(Request::new("GET", "/v1/admin/accounts")).status, 401);
    let fake = format!("llt_{}", "0".repeat(64));
    let response = env.call("GET", "/v1/me", &fake, None);
    assert_eq!((response.status, response.json()["error"].as_str()), (401, Some("unauthorized")));
}

fn providers_see_only_their_own_reports(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let (accounts, _, ada) = setup_roles(&env);
    env.account(Role::Provider, "bob@example.com");
    let bob = env.login("bob@example.com");
    env.register_relay("a");
    env.report("a", 0);
    let ada_session = env.call("POST", "/v1/sessions", &ada, None).json()["session"].as_i64().unwrap();
    let bob_session = env.call("POST", "/v1/sessions", &bob, None).json()["session"].as_i64().unwrap();

    let listed = env.call("GET", "/v1/reports", &ada, None).json();
    let numbers: Vec<i64> =
        listed["reports"].as_array().unwrap().iter().map(|r| r["session"].as_i64().unwrap()).collect();
    assert_eq!(numbers, [ada_session]);
    // Another provider's session is "not found", for reading and for ending.
    assert_eq!(env.call("GET", &format!("/v1/reports/{bob_session}"), &ada, None).status, 404);
    assert_eq!(env.call("POST", &format!("/v1/sessions/{bob_session}/end"), &ada, None).status, 404);
    assert!(env.store().session(bob_session).unwrap().unwrap().ended_at.is_none());
    assert_eq!(env.call("GET", &format!("/v1/reports/{ada_session}"), &ada, None).status, 200);
    // The account administrator sees both.
    assert_eq!(env.call("GET", "/v1/reports", &accounts, None).json()["reports"].as_array().unwrap().len(), 2);
}

fn password_policy_applies_when_set_or_changed(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let (accounts, _, ada) = setup_roles(&env);
    for weak in ["short1", "lettersonly", "1234567890", "password1", "Dragon2024", "letmein99"] {
        let body = json!({ "email": "new@example.com", "name": "New", "password": weak });
        let response = env.call("POST", "/v1/admin/accounts", &accounts, Some(body));
        assert_eq!((response.status, response.json()["error"].as_str()), (400, Some("weak_password")), "{weak}");
        let change = json!({ "current_password": GOOD_PASSWORD, "new_password": weak });
        assert_eq!(env.call("POST", "/v1/me/password", &ada, Some(change)).status, 400, "{weak}");
    }
    assert!(env.store().account_by_email("new@example.com").unwrap().is_none());
    // A good change works, needs the current password, and revokes the old tokens.
    let wrong = json!({ "current_password": "not-it-123", "new_password": "Quiet-Harbor-91" });
    assert_eq!(env.call("POST", "/v1/me/password", &ada, Some(wrong)).status, 401);
    let good = json!({ "current_password": GOOD_PASSWORD, "new_password": "Quiet-Harbor-91" });
    assert_eq!(env.call("POST", "/v1/me/password", &ada, Some(good)).status, 200);
    assert_eq!(env.call("GET", "/v1/me", &ada, None).status, 401);
    let response = env.login_from("ada@example.com", "Quiet-Harbor-91", IpAddr::from([127, 0, 0, 1]));
    assert_eq!(response.status, 200);
}

fn lockout_follows_the_injected_clock(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.account(Role::Provider, "ada@example.com");
    let from = IpAddr::from([127, 0, 0, 1]);
    // Four failures, then a success: the count starts again.
    for _ in 0..4 {
        assert_eq!(env.login_from("ada@example.com", "Wrong-guess-1", from).status, 401);
    }
    assert_eq!(env.login_from("ada@example.com", GOOD_PASSWORD, from).status, 200);
    // Five consecutive failures lock the account: even the right password is refused, with the
    // same answer as a wrong one.
    for _ in 0..5 {
        assert_eq!(env.login_from("ada@example.com", "Wrong-guess-1", from).status, 401);
    }
    let locked = env.login_from("ada@example.com", GOOD_PASSWORD, from);
    assert_eq!((locked.status, locked.json()["error"].as_str()), (401, Some("unauthorized")));
    env.clock.advance(299);
    assert_eq!(env.login_from("ada@example.com", GOOD_PASSWORD, from).status, 401);
    env.clock.advance(1);
    assert_eq!(env.login_from("ada@example.com", GOOD_PASSWORD, from).status, 200);
    let outcomes = env.audit_outcomes("login");
    assert_eq!(outcomes.iter().filter(|o| *o == "bad_password").count(), 9);
    assert_eq!(outcomes.iter().filter(|o| *o == "locked").count(), 2);
    assert_eq!(outcomes.iter().filter(|o| *o == "ok").count(), 2);
    assert_eq!(outcomes.len(), 13, "every attempt is audited");
    // An administrator can lift a lock at once.
    for _ in 0..5 {
        env.login_from("ada@example.com", "Wrong-guess-1", from);
    }
    let id = env.store().account_by_email("ada@example.com").unwrap().unwrap().id;
    assert!(env.store().unlock(id).unwrap());
    assert_eq!(env.login_from("ada@example.com", GOOD_PASSWORD, from).status, 200);
}

fn lockout_holds_under_concurrent_attempts(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.account(Role::Provider, "ada@example.com");
    let env = Arc::new(env);
    // 40 wrong guesses at once, from 40 addresses (so the per-source throttle is not what stops them).
    let threads: Vec<_> = (0..40u8)
        .map(|i| {
            let env = env.clone();
            std::thread::spawn(move || {
                env.login_from("ada@example.com", "Wrong-guess-1", IpAddr::from([10, 0, 0, i])).status
            })
        })
        .collect();
    for thread in threads {
        assert_eq!(thread.join().unwrap(), 401);
    }
    // Exactly five guesses were checked; every other attempt met the lock.
    let outcomes = env.audit_outcomes("login");
    assert_eq!(outcomes.iter().filter(|o| *o == "bad_password").count(), 5, "{outcomes:?}");
    assert_eq!(outcomes.iter().filter(|o| *o == "locked").count(), 35);
    assert_eq!(env.login_from("ada@example.com", GOOD_PASSWORD, IpAddr::from([10, 0, 1, 1])).status, 401);
    env.clock.advance(300);
    assert_eq!(env.login_from("ada@example.com", GOOD_PASSWORD, IpAddr::from([10, 0, 1, 1])).status, 200);
}

fn failures_are_throttled_per_source_address(backend: Backend) {
    let policy = Policy { failures_per_source_per_min: 6.0, failures_per_source_burst: 6.0, ..Policy::default() };
    let Some(env) = Env::with_policy(backend, policy) else { return };
    env.account(Role::Provider, "ada@example.com");
    let attacker = IpAddr::from([192, 0, 2, 7]);
    // Six failures against unknown accounts (no lockout applies): then the address is throttled.
    for i in 0..6 {
        assert_eq!(env.login_from(&format!("nobody{i}@example.com"), "Wrong-guess-1", attacker).status, 401);
    }
    let throttled = env.login_from("ada@example.com", GOOD_PASSWORD, attacker);
    assert_eq!((throttled.status, throttled.json()["error"].as_str()), (429, Some("throttled")));
    // Other addresses are unaffected; the account is not locked by someone else's failures.
    assert_eq!(env.login_from("ada@example.com", GOOD_PASSWORD, IpAddr::from([192, 0, 2, 8])).status, 200);
    // The bucket refills: one attempt per 10 s at 6 per minute.
    env.clock.advance(10);
    assert_eq!(env.login_from("ada@example.com", GOOD_PASSWORD, attacker).status, 200);
    assert!(env.audit_outcomes("login").contains(&"throttled".to_owned()));
}

fn tokens_expire_and_logout_revokes(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    env.account(Role::Provider, "ada@example.com");
    let token = env.login("ada@example.com");
    assert_eq!(env.call("GET", "/v1/me", &token, None).status, 200);
    env.clock.advance(8 * 3600 - 1);
    assert_eq!(env.call("GET", "/v1/me", &token, None).status, 200);
    env.clock.advance(1);
    assert_eq!(env.call("GET", "/v1/me", &token, None).status, 401);
    let token = env.login("ada@example.com");
    assert_eq!(env.call("POST", "/v1/logout", &token, None).status, 200);
    assert_eq!(env.call("GET", "/v1/me", &token, None).status, 401);
}

fn least_loaded_healthy_relay_is_assigned(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let (_, _, provider) = setup_roles(&env);
    for name in ["a", "b", "c"] {
        env.register_relay(name);
    }
    assert_eq!(env.report("a", 10).status, 200);
    assert_eq!(env.report("b", 3).status, 200);
    assert_eq!(env.report("c", 6).status, 200);
    let mut homes = Vec::new();
    for _ in 0..4 {
        let response = env.call("POST", "/v1/sessions", &provider, None);
        assert_eq!(response.status, 201);
        homes.push(response.json()["relay"]["name"].as_str().unwrap().to_owned());
    }
    // b (3), then b (3+2=5), then c (6) or b (7): c; then b (7) over c (8) and a (10).
    assert_eq!(homes, ["b", "b", "c", "b"]);
    // A report resets the pending count.
    env.report("a", 0);
    assert_eq!(env.call("POST", "/v1/sessions", &provider, None).json()["relay"]["name"], "a");
}

fn dead_and_unhealthy_relays_are_never_assigned(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let (_, network, provider) = setup_roles(&env);
    env.register_relay("a");
    env.register_relay("b");
    // Never reported: not assignable.
    assert_eq!(env.call("POST", "/v1/sessions", &provider, None).status, 503);
    env.report("a", 0);
    env.report("b", 50);
    assert_eq!(env.call("POST", "/v1/sessions", &provider, None).json()["relay"]["name"], "a");
    // a stops reporting; b keeps going. After 30 s a is stale.
    env.clock.advance(20);
    env.report("b", 50);
    env.clock.advance(11);
    for _ in 0..5 {
        assert_eq!(env.call("POST", "/v1/sessions", &provider, None).json()["relay"]["name"], "b");
    }
    let fleet = env.call("GET", "/v1/admin/relays", &network, None).json();
    assert_eq!(fleet["relays"][0]["assignable"], false);
    assert_eq!(fleet["relays"][1]["assignable"], true);
    // b reports it is draining: nothing is assignable.
    env.report_as("b", "b", false, 0);
    let response = env.call("POST", "/v1/sessions", &provider, None);
    assert_eq!((response.status, response.json()["error"].as_str()), (503, Some("no_relay")));
}

fn relay_reports_need_the_right_certificate(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let (_, network, _) = setup_roles(&env);
    env.register_relay("a");
    // No client certificate: refused.
    let request = Request::new("POST", "/v1/relay/report")
        .json(&json!({ "name": "a", "healthy": true, "sessions": 0, "members": 0, "connections": 0 }));
    assert_eq!(env.handle(request).status, 401);
    // Relay b's certificate cannot report as a.
    assert_eq!(env.report_as("a", "b", true, 0).status, 403);
    // Not registered: refused.
    assert_eq!(env.report("c", 0).status, 403);
    assert_eq!(env.report("a", 0).status, 200);
    // Pinning: after rotation to another certificate, a's old one is refused.
    let other = lifeline_broker::password::hex(&ring_sha256(&common::cert_der("relay-b.pem")));
    let response = env.call("POST", "/v1/admin/relays/a/cert", &network, Some(json!({ "cert_sha256": other })));
    assert_eq!(response.status, 200);
    assert_eq!(env.report("a", 0).status, 403);
    let mine = lifeline_broker::password::hex(&ring_sha256(&common::cert_der("relay-a.pem")));
    env.call("POST", "/v1/admin/relays/a/cert", &network, Some(json!({ "cert_sha256": mine })));
    assert_eq!(env.report("a", 0).status, 200);
    assert!(env.audit_outcomes("relay_report").contains(&"certificate_not_pinned".to_owned()));
}

fn ring_sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes).as_ref().to_vec()
}

fn session_flow_with_consent_receipts_and_reports(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let (_, _, provider) = setup_roles(&env);
    env.register_relay("a");
    env.report("a", 0);
    let created = env.call("POST", "/v1/sessions", &provider, None).json();
    let session = created["session"].as_u64().unwrap();
    assert!((100_000_000..1_000_000_000).contains(&session));
    let verifier = common::signer().verifier();
    let now = env.clock_now() as u64;
    let leader = lifeline_broker::password::unhex(created["ticket"].as_str().unwrap()).unwrap();
    let leader = verifier.verify(&leader, now).unwrap();
    assert_eq!(
        (leader.session, leader.role, leader.home_relay.as_str()),
        (session, lifeline_ticket::TicketRole::Leader, "a")
    );

    // The customer resolves the number: a member ticket, the relay, and no secret.
    let resolved = env.handle(Request::new("POST", "/v1/sessions/resolve").json(&json!({ "session": session }))).json();
    let keys: Vec<&str> = resolved.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["provider", "relay", "session", "ticket", "ticket_expires_at"]);
    let member_hex = resolved["ticket"].as_str().unwrap().to_owned();
    let member = verifier.verify(&lifeline_broker::password::unhex(&member_hex).unwrap(), now).unwrap();
    assert_eq!(member.role, lifeline_ticket::TicketRole::Member);
    assert_eq!(resolved["relay"]["addresses"][0], "127.0.0.1:821");

    // Consent receipts from the customer's endpoint, authorised by its ticket.
    let events = json!({ "events": [
        { "kind": "joined", "at": START + 5 },
        { "kind": "granted", "capability": "view", "at": START + 10 },
        { "kind": "revoked", "capability": "view", "at": START + 70 },
        { "kind": "bytes", "value": 123_456, "at": START + 80 },
    ]});
    let post = |authorization: String, body: &serde_json::Value| {
        let mut request = Request::new("POST", &format!("/v1/sessions/{session}/events")).json(body);
        request.authorization = Some(zeroize::Zeroizing::new(authorization));
        env.handle(request)
    };
    assert_eq!(post(format!("Ticket {member_hex}"), &events).status, 201);
    // The leader's ticket cannot speak for the customer; a forged ticket is refused.
    assert_eq!(post(format!("Ticket {}", created["ticket"].as_str().unwrap()), &events).status, 403);
    let mut forged = lifeline_broker::password::unhex(&member_hex).unwrap();
    let last = forged.len() - 1;
    forged[last] ^= 1;
    assert_eq!(post(format!("Ticket {}", lifeline_broker::password::hex(&forged)), &events).status, 401);
    let bad_kind = json!({ "events": [{ "kind": "granted", "capability": "VIEW; DROP", "at": START }] });
    assert_eq!(post(format!("Ticket {member_hex}"), &bad_kind).status, 400);

    // End, then the report, JSON and CSV.
    assert_eq!(env.call("POST", &format!("/v1/sessions/{session}/end"), &provider, None).status, 200);
    let report = env.call("GET", &format!("/v1/reports/{session}"), &provider, None).json();
    assert_eq!(report["provider"], "ada@example.com");
    assert_eq!(report["relay"], "a");
    assert_eq!(report["member_tickets"], 1);
    assert_eq!(report["joined"], 1);
    assert_eq!(report["bytes"], 123_456);
    assert_eq!(report["ended_at"], START);
    assert_eq!(report["consent"][0], json!({ "action": "granted", "capability": "view", "at": START + 10 }));
    assert_eq!(report["consent"][1], json!({ "action": "revoked", "capability": "view", "at": START + 70 }));
    let csv = env.call("GET", "/v1/reports?format=csv", &provider, None);
    assert_eq!(csv.content_type, "text/csv; charset=utf-8");
    let text = String::from_utf8(csv.body).unwrap();
    assert!(text.starts_with("session,provider,relay,created_at,ended_at,member_tickets,joined,consent,bytes\r\n"));
    assert!(text.contains(&format!("\"{session}\",\"ada@example.com\",\"a\"")), "{text}");
    assert!(text.contains(&format!("granted view at {}; revoked view at {}", START + 10, START + 70)));
    // An ended session cannot be resolved any more.
    let again = env.handle(Request::new("POST", "/v1/sessions/resolve").json(&json!({ "session": session })));
    assert_eq!(again.status, 404);
}

fn the_customer_learns_the_provider_as_the_broker_has_the_account(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let (accounts, _, provider) = setup_roles(&env);
    env.register_relay("a");
    env.report("a", 0);
    let ada = env.store().account_by_email("ada@example.com").unwrap().unwrap();
    assert_eq!(ada.organisation, "", "no organisation until an administrator sets one");
    let resolve = |session: u64| {
        env.handle(Request::new("POST", "/v1/sessions/resolve").json(&json!({ "session": session }))).json()
    };
    let first = env.call("POST", "/v1/sessions", &provider, None).json()["session"].as_u64().unwrap();
    assert_eq!(resolve(first)["provider"], json!({ "name": "Test ada@example.com", "organisation": "" }));

    // The account administrator sets name and organisation; the provider cannot.
    let path = format!("/v1/admin/accounts/{}", ada.id);
    let change = json!({ "name": "Ada Lovelace", "organisation": "Example Helpdesk Ltd" });
    assert_eq!(env.call("PATCH", &path, &provider, Some(change.clone())).status, 403);
    let bad = json!({ "organisation": "Evil\u{1b}[2J" });
    assert_eq!(env.call("PATCH", &path, &accounts, Some(bad)).status, 400);
    assert_eq!(env.call("PATCH", &path, &accounts, Some(json!({ "organisation": "x".repeat(101) }))).status, 400);
    let changed = env.call("PATCH", &path, &accounts, Some(change));
    assert_eq!(changed.status, 200);
    assert_eq!(changed.json()["organisation"], "Example Helpdesk Ltd");
    // Sessions resolve to the account as it is now, old and new alike.
    let second = env.call("POST", "/v1/sessions", &provider, None).json()["session"].as_u64().unwrap();
    for session in [first, second] {
        let resolved = resolve(session);
        assert_eq!(resolved["provider"], json!({ "name": "Ada Lovelace", "organisation": "Example Helpdesk Ltd" }));
    }
    // Created with an organisation; listed with it.
    let new = json!({ "email": "bob@example.com", "name": "Bob", "password": GOOD_PASSWORD,
                      "organisation": "Bob's Repairs" });
    let created = env.call("POST", "/v1/admin/accounts", &accounts, Some(new));
    assert_eq!(created.status, 201);
    assert_eq!(created.json()["organisation"], "Bob's Repairs");
    let listed = env.call("GET", "/v1/admin/accounts", &accounts, None).json();
    let bob = listed["accounts"].as_array().unwrap().iter().find(|a| a["email"] == "bob@example.com").unwrap();
    assert_eq!(bob["organisation"], "Bob's Repairs");
    // A deleted account: the session still resolves, with no provider to vouch for.
    assert_eq!(env.call("DELETE", &path, &accounts, None).status, 200);
    assert_eq!(resolve(second)["provider"], serde_json::Value::Null);
}

#[test]
fn an_old_sqlite_store_gains_the_organisation_column() {
    let dir = std::env::temp_dir().join(format!("lifeline-broker-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("old.db");
    let _ = std::fs::remove_file(&path);
    {
        // The accounts table as migration 1 made it, with one account in it.
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY);
             INSERT INTO schema_migrations (version) VALUES (1);
             CREATE TABLE accounts (id INTEGER PRIMARY KEY AUTOINCREMENT, email TEXT NOT NULL UNIQUE,
                 name TEXT NOT NULL, role TEXT NOT NULL, subscription TEXT NOT NULL,
                 password_hash TEXT NOT NULL, failed_logins BIGINT NOT NULL DEFAULT 0,
                 locked_until BIGINT, created_at BIGINT NOT NULL);
             INSERT INTO accounts (email, name, role, subscription, password_hash, created_at)
                 VALUES ('ada@example.com', 'Ada', 'provider', '', 'x', 0);",
        )
        .unwrap();
    }
    let store = lifeline_broker::store::SqliteStore::open(path.to_str().unwrap()).unwrap();
    use lifeline_broker::store::Store as _;
    let ada = store.account_by_email("ada@example.com").unwrap().unwrap();
    assert_eq!((ada.name.as_str(), ada.organisation.as_str()), ("Ada", ""));
    let update = lifeline_broker::store::AccountUpdate { organisation: Some("Example".into()), ..Default::default() };
    assert!(store.update_account(ada.id, &update).unwrap());
    assert_eq!(store.account_by_id(ada.id).unwrap().unwrap().organisation, "Example");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn bad_input_is_refused_and_nothing_is_stored(backend: Backend) {
    let Some(env) = Env::new(backend) else { return };
    let (accounts, _, _) = setup_roles(&env);
    let count = || env.store().list_accounts().unwrap().len();
    let create = |content_type: Option<&str>, body: &[u8]| {
        let mut request = Request::new("POST", "/v1/admin/accounts").bearer(&accounts);
        request.content_type = content_type.map(str::to_owned);
        request.body = zeroize::Zeroizing::new(body.to_vec());
        env.handle(request)
    };
    for body in [
        &b"{"[..],
        b"not json",
        b"[]",
        b"{\"email\": 5}",
        b"\xff\xfe",
        b"{\"email\":\"x@y.z\",\"name\":\"n\",\"password\":\"tangerine-Lamp-47\",\"role\":\"account_admin\"}",
    ] {
        let response = create(Some("application/json"), body);
        assert_eq!(response.status, 400, "{}", String::from_utf8_lossy(body));
        let error = response.json();
        assert_eq!(error["error"], "bad_request");
        assert!(!error["message"].as_str().unwrap().contains("tangerine"), "errors never echo values");
    }
    let valid = json!({ "email": "x@example.com", "name": "X", "password": GOOD_PASSWORD }).to_string();
    for content_type in [None, Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("application/jsonp")]
    {
        let response = create(content_type, valid.as_bytes());
        assert_eq!((response.status, response.json()["error"].as_str()), (415, Some("unsupported_media_type")));
    }
    assert_eq!(count(), 3);
    // Injection strings: refused as emails, stored verbatim where they are only text.
    for email in ["a'; DROP TABLE accounts; --@x.io", "\"><script>@x.io", "a@b.c\r\nX-Injected: 1", "' OR '1'='1"] {
        let body = json!({ "email": email, "name": "X", "password": GOOD_PASSWORD });
        assert_eq!(env.call("POST", "/v1/admin/accounts", &accounts, Some(body)).status, 400, "{email}");
        let login = env.login_from(email, "' OR '1'='1", IpAddr::from([127, 0, 0, 2]));
        assert_eq!(login.status, 401);
    }
    assert_eq!(count(), 3);
    let name = "Robert'); DROP TABLE accounts;-- =HYPERLINK(\"x\")";
    let body = json!({ "email": "bobby@example.com", "name": name, "password": GOOD_PASSWORD, "subscription": "=1+1" });
    assert_eq!(env.call("POST", "/v1/admin/accounts", &accounts, Some(body)).status, 201);
    assert_eq!(env.store().account_by_email("bobby@example.com").unwrap().unwrap().name, name);
    assert_eq!(count(), 4);
    // Spreadsheet formulas are defused in CSV exports.
    let audit = env.call("GET", "/v1/admin/audit?format=csv", &accounts, None);
    let text = String::from_utf8(audit.body).unwrap();
    assert!(text.contains("\"'=\"\"><script>@x.io\"") || !text.contains("\"=\""));
    // Unknown routes and methods.
    assert_eq!(env.call("GET", "/v1/nothing", &accounts, None).status, 404);
    assert_eq!(env.call("PUT", "/v1/admin/accounts", &accounts, None).status, 405);
    assert_eq!(env.call("GET", "/v1/reports/1%27%20OR%201=1", &accounts, None).status, 404);
    let huge_session = env.handle(Request::new("POST", "/v1/sessions/resolve").json(&json!({ "session": -1 })));
    assert_eq!(huge_session.status, 400);
}

#[test]
fn openapi_matches_the_routes() {
    let yaml = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/broker-openapi.yaml")).unwrap();
    let mut documented = Vec::new();
    let mut path = None;
    for line in yaml.lines() {
        if let Some(rest) = line.strip_prefix("  /v1") {
            path = Some(format!("/v1{}", rest.trim_end_matches(':')));
        } else if let (Some(path), Some(method)) = (&path, line.strip_prefix("    ").and_then(|l| l.strip_suffix(':')))
        {
            if ["get", "post", "patch", "delete", "put"].contains(&method) {
                documented.push((method.to_uppercase(), path.clone()));
            }
        } else if !line.starts_with("    ") && !line.starts_with("  /") {
            path = None;
        }
    }
    let mut routes: Vec<(String, String)> =
        lifeline_broker::service::ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    documented.sort();
    routes.sort();
    assert_eq!(documented, routes, "docs/broker-openapi.yaml and service::ROUTES differ");

    // Every route is routed: never 404 for an unknown path, never 405.
    let env = Env::new(Backend::Sqlite).unwrap();
    for (method, template) in lifeline_broker::service::ROUTES {
        let path = template.replace("{session}", "123456789").replace("{id}", "1").replace("{name}", "a");
        let response = env.handle(Request::new(method, &path));
        // Without credentials every route answers 200, 400, 401 or 415: never 404 or 405.
        assert!(![404, 405].contains(&response.status), "{method} {path} is not routed: {}", response.status);
    }
}

#[test]
fn a_session_number_resolves_to_a_bounded_number_of_tickets() {
    let env = Env::new(Backend::Sqlite).unwrap();
    let (_, _, provider) = setup_roles(&env);
    env.register_relay("a");
    env.report("a", 0);
    let session = env.call("POST", "/v1/sessions", &provider, None).json()["session"].as_u64().unwrap();
    let resolve = || env.handle(Request::new("POST", "/v1/sessions/resolve").json(&json!({ "session": session })));
    for _ in 0..lifeline_broker::service::MAX_MEMBER_TICKETS_PER_SESSION {
        assert_eq!(resolve().status, 200);
    }
    let refused = resolve();
    assert_eq!((refused.status, refused.json()["error"].as_str()), (409, Some("too_many_tickets")));
}

#[test]
fn a_stolen_token_cannot_guess_the_password_past_the_lockout() {
    let env = Env::new(Backend::Sqlite).unwrap();
    env.account(Role::Provider, "ada@example.com");
    let token = env.login("ada@example.com");
    let guess = |current: &str| {
        let body = json!({ "current_password": current, "new_password": "Quiet-Harbor-91" });
        env.call("POST", "/v1/me/password", &token, Some(body)).status
    };
    for _ in 0..5 {
        assert_eq!(guess("Wrong-guess-1"), 401);
    }
    // Locked now: even the right current password is refused, and logins are locked too.
    assert_eq!(guess(GOOD_PASSWORD), 401);
    assert_eq!(env.login_from("ada@example.com", GOOD_PASSWORD, IpAddr::from([127, 0, 0, 9])).status, 401);
    assert_eq!(env.audit_outcomes("password_change").iter().filter(|o| *o == "locked").count(), 1);
    env.clock.advance(300);
    assert_eq!(guess(GOOD_PASSWORD), 200);
}
