//! The customer app on a pseudo-terminal, answered as a person would: the session number at its
//! prompt, the PIN at a prompt that does not echo it, a consent prompt, a file offer, the end.
//! The provider runs with piped streams; the relay is a real `lifeline-relay` on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{App, LIMIT, Relay, TempDir, dev_pki, digits_after, random_file, sha256_file};

#[test]
fn the_customer_app_on_a_terminal_is_answered_like_a_person_would() {
    let temp = TempDir::new("pty");
    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let dev_arg = dev.display().to_string();
    let relay_arg = relay.address();
    let mut provider = App::start([
        "support",
        "--dev",
        &dev_arg,
        "--relay",
        &relay_arg,
        "--name",
        "Ada (Helpdesk)",
        "--no-web-console",
    ]);
    let session = digits_after(&provider.expect("Session number:"), "Session number:");
    let pin = digits_after(&provider.expect("PIN:"), "PIN:");

    let downloads = temp.path().join("downloads").display().to_string();
    let mut customer =
        App::start_in_pty(&["join", "--dev", &dev_arg, "--relay", &relay_arg, "--downloads", &downloads]);
    customer.type_line(&session);
    customer.expect("Session number:");
    // As a person would: the PIN is typed once its prompt is up (and the terminal's echo off);
    // typed ahead, a terminal echoes it before the program can turn echo off.
    std::thread::sleep(std::time::Duration::from_millis(400));
    customer.type_line(&pin);
    customer.expect("PIN (not shown)");
    customer.expect("Connected to Ada (Helpdesk) (Provider)");
    customer.expect("[status] connected: Ada (Helpdesk) (Provider) | you allow: nothing");
    provider.expect("Customer (Customer) joined");

    provider.type_line("/request files");
    customer.expect("Ada (Helpdesk) asks to transfer files to and from your computer: /allow files or /deny files");
    customer.type_line("/allow files");
    provider.expect("Customer allowed: file transfer");
    customer.expect("you allow: file transfer");

    let file = temp.path().join("fix.sh");
    random_file(&file, 50_000);
    provider.type_line(&format!("/send {}", file.display()));
    customer.expect("offers you the file fix.sh");
    customer.type_line("/accept");
    customer.expect("Received fix.sh");
    assert_eq!(sha256_file(&temp.path().join("downloads/fix.sh")), sha256_file(&file));

    customer.type_line("/end");
    provider.expect("Session ended by Customer.");
    assert_eq!(provider.wait(LIMIT).code(), Some(0));
    assert_eq!(customer.wait(LIMIT).code(), Some(0));
    // The PIN typed at the no-echo prompt never appeared on the customer's screen.
    let screen = customer.output.transcript.lock().unwrap().join("\n");
    assert!(!screen.contains(&pin), "{screen}");
}
