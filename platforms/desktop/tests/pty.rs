//! The customer app on a pseudo-terminal, answered as a person would: the session number at its
//! prompt, the PIN at a prompt that does not echo it, a consent prompt, a file offer, the end;
//! once with `--plain` (lines), once in the full-screen view (keys, read off the screen).
//! The provider runs with piped streams; the relay is a real `lifeline-relay` on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::time::Duration;

use support::{
    App, LIMIT, PTY_COLUMNS, PTY_ROWS, Provider, Relay, TempDir, dev_pki, digits_after, random_file, sha256_file,
};

#[test]
fn the_customer_app_on_a_terminal_is_answered_like_a_person_would() {
    let temp = TempDir::new("pty");
    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let dev_arg = dev.display().to_string();
    let relay_arg = relay.address();
    let Provider { app: mut provider, session, pin } = Provider::start(&dev, &relay, &["--no-web-console"]);

    let downloads = temp.path().join("downloads").display().to_string();
    let mut customer =
        App::start_in_pty(&["join", "--dev", &dev_arg, "--relay", &relay_arg, "--downloads", &downloads, "--plain"]);
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

#[test]
fn the_full_screen_view_is_answered_with_keys() {
    let temp = TempDir::new("tui");
    let dev = dev_pki(temp.path(), "dev");
    let relay = Relay::start(&dev);
    let dev_arg = dev.display().to_string();
    let relay_arg = relay.address();
    let Provider { app: mut provider, session, pin } = Provider::start(&dev, &relay, &["--no-web-console"]);

    let downloads = temp.path().join("downloads").display().to_string();
    let (mut customer, screen) =
        App::start_in_pty_raw(&["join", "--dev", &dev_arg, "--relay", &relay_arg, "--downloads", &downloads]);
    let wait = |text: &str| screen.wait_for(PTY_ROWS, PTY_COLUMNS, text, LIMIT);
    // The session number and the PIN are asked as lines, before the full-screen view starts.
    wait("Session number:");
    customer.type_line(&session);
    wait("PIN (not shown)");
    std::thread::sleep(Duration::from_millis(400));
    customer.type_line(&pin);

    // The status line: who is connected, the check code, what is allowed and asked.
    let shown = wait("Connected: Ada (Helpdesk) (Provider)");
    assert!(shown.is_alternate(), "the full-screen view runs on the alternate screen");
    wait("You allow: nothing  Asked: nothing");
    let code = digits_after(&provider.expect("Check code:"), "Check code:");
    provider.expect("Customer (Customer) joined");
    wait(&format!("Check code: {} {}", &code[..3], &code[3..]));

    // Chat is typed on the input line and sent with Enter.
    customer.type_bytes(b"hello from the full screen\r");
    provider.expect("Customer: hello from the full screen");
    wait("Customer (you): hello from the full screen");
    provider.type_line("thanks");
    wait("Ada (Helpdesk): thanks");

    // A consent prompt, answered with a key: `a` allows.
    provider.type_line("/request files");
    wait("The provider asks for: files. a = Allow, d = Deny");
    // The log names the keys too, not the line interface's commands.
    wait("asks to transfer files to and from your computer: a = Allow, d = Deny");
    let shown = wait("Asked: files");
    // The status line is on top all the time: it is not repeated in the log.
    assert!(!shown.contains("[status]"), "{}", shown.text());
    customer.type_bytes(b"a");
    provider.expect("Customer allowed: file transfer");
    wait("You allow: files  Asked: nothing");

    // `d` denies the next one.
    provider.type_line("/request diagnostics");
    wait("The provider asks for: diagnostics");
    customer.type_bytes(b"d");
    provider.expect("Customer declined: diagnostics");

    // A file, accepted with a command on the input line.
    let file = temp.path().join("fix.sh");
    random_file(&file, 20_000);
    provider.type_line(&format!("/send {}", file.display()));
    wait("offers you the file fix.sh");
    customer.type_bytes(b"/accept\r");
    wait("> /accept");
    wait("Received fix.sh");
    assert_eq!(sha256_file(&temp.path().join("downloads/fix.sh")), sha256_file(&file));

    // F2 takes back everything allowed.
    customer.type_bytes(b"\x1bOQ");
    provider.expect("Customer took back: file transfer");
    wait("You allow: nothing");
    wait("You took back: file transfer.");

    // Ctrl-E asks first; `y` ends the session for both.
    customer.type_bytes(b"\x05");
    wait("End the session for everyone? y = end");
    customer.type_bytes(b"y");
    provider.expect("Session ended by Customer.");
    assert_eq!(provider.wait(LIMIT).code(), Some(0));
    assert_eq!(customer.wait(LIMIT).code(), Some(0));
    // The terminal is given back: the alternate screen is left, and the end of the session is
    // printed on the normal screen. The PIN never appeared.
    let after = screen.wait_for(PTY_ROWS, PTY_COLUMNS, "Session ended.", LIMIT);
    assert!(!after.is_alternate(), "{}", after.text());
    let bytes = String::from_utf8_lossy(&screen.bytes()).into_owned();
    assert!(bytes.rfind("\x1b[?1049l") > bytes.rfind("\x1b[?1049h"), "alternate screen left");
    assert!(!bytes.contains(&pin), "the PIN was shown");
}
