//! `lifeline support` and `lifeline join` as real processes, through a real `lifeline-relay` on
//! loopback with a throw-away development PKI: join, chat both ways, consent, the end of the
//! session from either side, a wrong PIN, a relay restart, and the configuration errors.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::{App, LIMIT, Provider, Relay, TempDir, dev_pki, digits_after, free_port};

/// A provider that has printed its session number and PIN, and waits for the customer.
fn start_provider(dev: &std::path::Path, relay: &Relay) -> Provider {
    let provider = Provider::start(dev, relay, &[]);
    assert_eq!(provider.session.len(), 9, "a nine-digit session number");
    assert_eq!(provider.pin.len(), 8, "an eight-digit PIN");
    provider.app.expect("Waiting for the customer to join");
    provider
}

/// A customer that types the session number and PIN at the prompts.
fn start_customer(dev: &std::path::Path, relay: &Relay, session: &str, pin: &str) -> App {
    let mut app =
        App::start(["join".as_ref(), "--dev".as_ref(), dev.as_os_str(), "--relay".as_ref(), relay.address().as_ref()]);
    app.type_line(session);
    app.type_line(pin);
    app
}

fn joined_pair(dev: &std::path::Path, relay: &Relay) -> (App, App) {
    let provider = start_provider(dev, relay);
    let customer = start_customer(dev, relay, &provider.session, &provider.pin);
    customer.expect("Connected to Ada (Helpdesk) (Provider)");
    provider.app.expect("Customer (Customer) joined");
    (provider.app, customer)
}

#[test]
fn provider_and_customer_chat_grant_and_the_customer_ends_the_session() {
    let temp = TempDir::new("chat");
    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let (mut provider, mut customer) = joined_pair(&dev, &relay);

    provider.type_line("Hi, I'm Ada from the helpdesk.");
    customer.expect("Ada (Helpdesk): Hi, I'm Ada from the helpdesk.");
    customer.type_line("Hello Ada, my printer is broken");
    provider.expect("Customer: Hello Ada, my printer is broken");

    provider.type_line("/request view");
    customer.expect("Ada (Helpdesk) asks to view your screen: /allow view or /deny view");
    customer.type_line("/allow view");
    customer.expect("You allowed: view screen");
    provider.expect("Customer allowed: view screen");
    customer.type_line("/revoke view");
    provider.expect("Customer took back: view screen");

    customer.type_line("/end");
    customer.expect("Session ended.");
    provider.expect("Session ended by Customer.");
    assert_eq!(customer.wait(LIMIT).code(), Some(0));
    assert_eq!(provider.wait(LIMIT).code(), Some(0));
}

#[test]
fn the_provider_ending_the_session_ends_it_for_the_customer() {
    let temp = TempDir::new("quit");
    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let (mut provider, mut customer) = joined_pair(&dev, &relay);

    provider.type_line("/quit");
    customer.expect("Session ended by Ada (Helpdesk).");
    assert_eq!(provider.wait(LIMIT).code(), Some(0));
    assert_eq!(customer.wait(LIMIT).code(), Some(0));
}

#[test]
fn a_wrong_pin_is_not_accepted() {
    let temp = TempDir::new("pin");
    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let provider = start_provider(&dev, &relay);
    let wrong = if provider.pin == "00000000" { "11111111" } else { "00000000" };

    let mut customer = start_customer(&dev, &relay, &provider.session, wrong);
    assert_eq!(customer.wait(LIMIT).code(), Some(7));
    let transcript = customer.output.finish(LIMIT);
    assert!(transcript.contains("Stderr: lifeline: the PIN was not accepted"), "{transcript}");
    provider.app.expect("Someone tried to join with a wrong PIN (failed attempts: 1)");
}

#[test]
fn the_session_survives_a_relay_restart() {
    let temp = TempDir::new("restart");
    let dev = dev_pki(temp.path(), "dev");
    let mut relay = Relay::start(&dev);
    let (mut provider, customer) = joined_pair(&dev, &relay);

    relay.restart();
    provider.expect("Reconnected to the relay");
    customer.expect("Reconnected to the relay");
    provider.type_line("Still there?");
    customer.expect("Ada (Helpdesk): Still there?");
}

#[test]
fn an_unreachable_relay_is_reported_after_the_retries() {
    let temp = TempDir::new("unreachable");
    let dev = dev_pki(temp.path(), "dev");
    let address = format!("127.0.0.1:{}", free_port());
    let mut provider =
        App::start(["support".as_ref(), "--dev".as_ref(), dev.as_os_str(), "--relay".as_ref(), address.as_ref()]);
    assert_eq!(provider.wait(LIMIT).code(), Some(4));
    let transcript = provider.output.finish(LIMIT);
    assert!(transcript.contains("Stderr: lifeline: cannot reach the relay at 127.0.0.1:"), "{transcript}");
}

#[test]
fn a_relay_certificate_from_another_ca_is_refused() {
    let temp = TempDir::new("ca");
    let dev = dev_pki(temp.path(), "dev");
    let other = dev_pki(temp.path(), "other");
    let relay = Relay::start(&dev);
    let mut provider = App::start([
        "support".as_ref(),
        "--dev".as_ref(),
        other.as_os_str(),
        "--relay".as_ref(),
        relay.address().as_ref(),
    ]);
    assert_eq!(provider.wait(LIMIT).code(), Some(5));
    let transcript = provider.output.finish(LIMIT);
    assert!(transcript.contains("certificate is not trusted"), "{transcript}");
}

#[test]
fn a_ticket_signed_by_another_key_is_refused() {
    let temp = TempDir::new("ticket");
    let dev = dev_pki(temp.path(), "dev");
    let other = dev_pki(temp.path(), "other");
    let relay = Relay::start(&dev);
    // Trusts the relay's CA, but mints with a key the relay does not know.
    let ca = dev.join("ca.pem");
    let mut provider = App::start([
        "support".as_ref(),
        "--dev".as_ref(),
        other.as_os_str(),
        "--ca".as_ref(),
        ca.as_os_str(),
        "--relay".as_ref(),
        relay.address().as_ref(),
    ]);
    assert_eq!(provider.wait(LIMIT).code(), Some(6));
    let transcript = provider.output.finish(LIMIT);
    assert!(transcript.contains("the relay refused admission"), "{transcript}");
}

#[test]
fn a_bad_dev_folder_is_reported() {
    let temp = TempDir::new("baddev");
    let missing = temp.path().join("missing");
    let mut provider = App::start(["support".as_ref(), "--dev".as_ref(), missing.as_os_str()]);
    assert_eq!(provider.wait(Duration::from_secs(10)).code(), Some(3));
    assert!(provider.output.finish(LIMIT).contains("bad dev folder"));

    // A folder without the PKI files.
    let mut customer = App::start([
        "join".as_ref(),
        "--dev".as_ref(),
        temp.path().as_os_str(),
        "--session".as_ref(),
        "123456789".as_ref(),
        "--pin".as_ref(),
        "1".as_ref(),
    ]);
    assert_eq!(customer.wait(Duration::from_secs(10)).code(), Some(3));
    assert!(customer.output.finish(LIMIT).contains("ca.pem is missing"));
}

#[test]
fn tickets_minted_elsewhere_work_without_dev_mode() {
    let temp = TempDir::new("tickets");
    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let key = dev.join("ticket-signing.key");
    let ca = dev.join("ca.pem");
    let mint = |role: &str| {
        let output = std::process::Command::new(support::relay_bin())
            .args(["ticket", "mint", "--session", "555444333", "--role", role, "--home", "local", "--key"])
            .arg(&key)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    };
    let (leader_ticket, member_ticket) = (mint("leader"), mint("member"));

    let address = relay.address();
    let mut provider = App::start([
        "support".as_ref(),
        "--relay".as_ref(),
        address.as_ref(),
        "--ca".as_ref(),
        ca.as_os_str(),
        "--ticket".as_ref(),
        leader_ticket.as_ref(),
    ]);
    assert_eq!(digits_after(&provider.expect("Session number:"), "Session number:"), "555444333");
    let pin = digits_after(&provider.expect("PIN:"), "PIN:");
    let mut customer = App::start([
        "join".as_ref(),
        "--relay".as_ref(),
        address.as_ref(),
        "--ca".as_ref(),
        ca.as_os_str(),
        "--ticket".as_ref(),
        member_ticket.as_ref(),
        "--name".as_ref(),
        "Grace".as_ref(),
    ]);
    customer.type_line(&pin);
    customer.expect("Connected to Provider (Provider)");
    provider.expect("Grace (Customer) joined");
    customer.type_line("hi");
    provider.expect("Grace: hi");
    provider.type_line("/quit");
    assert_eq!(customer.wait(LIMIT).code(), Some(0));
    assert_eq!(provider.wait(LIMIT).code(), Some(0));
}

#[test]
fn the_pin_expires_after_too_many_wrong_attempts() {
    let temp = TempDir::new("expiry");
    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let provider = start_provider(&dev, &relay);
    let wrong = if provider.pin == "00000000" { "11111111" } else { "00000000" };
    // The engine allows five failed joins per session; the fifth kills the PIN.
    for attempt in 1..=5 {
        let mut customer = start_customer(&dev, &relay, &provider.session, wrong);
        let expected = if attempt < 5 { 7 } else { 8 };
        assert_eq!(customer.wait(LIMIT).code(), Some(expected), "attempt {attempt}");
    }
    provider.app.expect("the PIN has expired");
    // From now on even the right PIN is refused.
    let mut late = start_customer(&dev, &relay, &provider.session, &provider.pin);
    assert_eq!(late.wait(LIMIT).code(), Some(8));
    assert!(late.output.finish(LIMIT).contains("the PIN has expired"));
}
