//! The console page in headless Chromium, driven through ChromeDriver's W3C WebDriver API: the
//! page shows a realistic published session (members, consent, chat, transfers, diagnostics) and
//! live updates; typing and clicking in it produce commands on the channel, an upload from the
//! browser arrives as a file; a screenshot is saved under the target directory.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`scripts/setup-browser.sh`, which
//! `scripts/test.sh` runs). Without them the test fails and says so; it does not skip.
//! `LIFELINE_CHROMIUM` and `LIFELINE_CHROMEDRIVER` override the paths.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine as _;
use common::Req;
use lifeline_web_console::{
    Capability, ChatLine, ConnectionState, Consent, ConsentState, ConsoleCommand, ConsoleConfig, ConsoleEvent,
    DiagnosticsReport, DiagnosticsSection, Direction, Member, Role, SessionInfo, Transfer, TransferId, TransferState,
    WebConsole,
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const XSS: &str = "<img src=x onerror=\"document.title='owned'\"> is that you?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_page_in_headless_chromium() {
    let chromium = tool("LIFELINE_CHROMIUM", "/usr/bin/chromium");
    let chromedriver = tool("LIFELINE_CHROMEDRIVER", "/usr/bin/chromedriver");
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().to_owned();
    let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("web-console-browser-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();

    let (console, mut commands) = WebConsole::start(ConsoleConfig::default()).await.unwrap();
    publish_session(&console);

    let driver = Driver::start(&chromedriver, &chromium, &work.join("profile")).await;
    driver.navigate(console.url()).await;

    // ---- the published state, replayed to the freshly opened page ----
    driver.wait_text("session-number", "123 456 789").await;
    let text = driver.body_text().await;
    for expected in [
        "4829 1375",
        "Ada Lovelace",
        "Helpdesk Ltd",
        "Grace (customer)",
        "View screen: allowed",
        "Remote control: asked",
        "Diagnostics: allowed",
        "Hello, I can see the error again",
        "setup.exe",
        "install.log",
        "Debian GNU/Linux 12 (bookworm)",
        "systemd-journald",
        "connected",
        "Grace allowed file transfer",
        "Grace refused remote control",
    ] {
        assert!(text.contains(expected), "page lacks {expected:?}:\n{text}");
    }
    // Peer text is text: the would-be markup is shown literally and no element was made from it.
    assert!(text.contains(XSS), "{text}");
    assert_eq!(driver.script("return document.querySelectorAll('#chat-log img').length").await, json!(0));
    assert_ne!(driver.script("return document.title").await, json!("owned"));
    // The transfer in progress has its progress bar; the diagnostics are tables.
    let progress = driver.script("return document.querySelector('[data-transfer=\"1\"] progress').value").await;
    assert_eq!(progress.as_f64(), Some(419_430_400.0));
    let rows =
        driver.script("return document.querySelectorAll('#diag-view table[data-section=\"processes\"] tr').length");
    assert_eq!(rows.await, json!(4), "a header row and three processes");

    // ---- live events ----
    console.publish(ConsoleEvent::Transfer(setup_exe(TransferState::InProgress { bytes: 805_306_368 })));
    driver.wait_text("transfers", "768.0 MiB of 1.0 GiB (75 %)").await;

    // ---- typing and clicking produce commands ----
    let input = driver.find("#chat-input").await;
    driver.type_into(&input, "Please click Start, then Settings").await;
    driver.click("#chat-send").await;
    assert_eq!(
        next_command(&mut commands).await,
        ConsoleCommand::SendChat { text: "Please click Start, then Settings".into() }
    );
    // Cleared once the console answered 202 (which comes just after the command is queued).
    driver.wait_script("return document.getElementById('chat-input').value === ''").await;
    // The native side sends it, then publishes it as the provider's own line.
    console.publish(ConsoleEvent::Chat(ChatLine {
        from: "Ada Lovelace".into(),
        member: Some(0),
        text: "Please click Start, then Settings".into(),
        local: true,
        at_ms: 1_764_860_000_000,
    }));
    driver.wait_text("chat-log", "Please click Start, then Settings").await;
    // Enter sends too.
    let input = driver.find("#chat-input").await;
    driver.type_into(&input, "thanks\u{E007}").await;
    assert_eq!(next_command(&mut commands).await, ConsoleCommand::SendChat { text: "thanks".into() });

    driver.click("#requests button[data-capability=\"remote_control\"]").await;
    assert_eq!(
        next_command(&mut commands).await,
        ConsoleCommand::RequestCapability { capability: Capability::RemoteControl }
    );
    driver.click("[data-transfer=\"2\"] button.primary").await;
    assert_eq!(next_command(&mut commands).await, ConsoleCommand::AcceptFile { transfer: TransferId(2) });

    let sections = driver.find("#diag-sections").await;
    driver.type_into(&sections, "os, processes").await;
    driver.click("#diag-query").await;
    assert_eq!(
        next_command(&mut commands).await,
        ConsoleCommand::QueryDiagnostics { sections: vec!["os".into(), "processes".into()] }
    );

    let fetch = driver.find("#fetch-name").await;
    driver.type_into(&fetch, "crash-dump.txt").await;
    driver.click("#fetch-send").await;
    assert_eq!(next_command(&mut commands).await, ConsoleCommand::FetchFile { name: "crash-dump.txt".into() });

    // An upload from the browser's file picker arrives as a complete file.
    let local_file = work.join("notes for Grace.txt");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(&local_file, &content).unwrap();
    let picker = driver.find("#file-input").await;
    driver.type_into(&picker, local_file.to_str().unwrap()).await;
    driver.click("#file-send").await;
    let ConsoleCommand::SendFile { name, path, size } = next_command(&mut commands).await else {
        panic!("expected SendFile")
    };
    assert_eq!((name.as_str(), size), ("notes for Grace.txt", 300_000));
    assert_eq!(std::fs::read(&path).unwrap(), content);
    driver.wait_text("upload-status", "handed to the session").await;

    // A refused command is reported in the page, not silently dropped.
    // (Set past the input's maxlength by script: the server's limit is the one that counts.)
    driver.script("document.getElementById('chat-input').value = 'x'.repeat(5000); return null").await;
    driver.click("#chat-send").await;
    driver.wait_text("errors", "too long").await;
    driver.script("document.getElementById('chat-input').value = ''; return null").await;

    // The screenshot of the live console.
    let screenshot = target.join("web-console.png");
    driver.screenshot(&screenshot).await;
    println!("screenshot: {}", screenshot.display());

    // ---- ending ----
    driver.click("#end-session").await;
    driver.click("#end-yes").await;
    assert_eq!(next_command(&mut commands).await, ConsoleCommand::EndSession);
    console.publish(ConsoleEvent::Ended { reason: "the provider ended the session".into() });
    driver.wait_text("ended", "the provider ended the session").await;
    assert_eq!(driver.script("return document.getElementById('chat-send').disabled").await, json!(true));
    let ended_shot = target.join("web-console-ended.png");
    driver.screenshot(&ended_shot).await;
    println!("screenshot: {}", ended_shot.display());

    // No command came that the test did not expect.
    assert!(commands.try_recv().is_err());
    driver.quit().await;
    console.shutdown().await;
    let _ = std::fs::remove_dir_all(&work);
}

fn tool(variable: &str, default: &str) -> PathBuf {
    let path = PathBuf::from(std::env::var_os(variable).unwrap_or_else(|| default.into()));
    assert!(
        path.exists(),
        "{} not found: the web console's browser test needs Debian's chromium and chromium-driver; \
         run `bash scripts/setup-browser.sh` (scripts/test.sh does), or set {variable}",
        path.display()
    );
    path
}

async fn next_command(commands: &mut mpsc::Receiver<ConsoleCommand>) -> ConsoleCommand {
    tokio::time::timeout(Duration::from_secs(10), commands.recv()).await.expect("a command in time").expect("open")
}

fn setup_exe(state: TransferState) -> Transfer {
    Transfer {
        id: TransferId(1),
        direction: Direction::ToCustomer,
        name: "setup.exe".into(),
        size: Some(1 << 30),
        state,
    }
}

/// A session as `lifeline support` would show it mid-way: two members, consent in several states,
/// chat both ways, three transfers, a diagnostics report.
fn publish_session(console: &WebConsole) {
    let at = 1_764_859_800_000;
    console.publish(ConsoleEvent::Session(SessionInfo {
        session_number: 123_456_789,
        pin: Some("48291375".into()),
        short_auth_string: Some("4F7 2C1".into()),
        provider: Some("Ada Lovelace, Helpdesk Ltd".into()),
    }));
    console
        .publish(ConsoleEvent::Connection { state: ConnectionState::Connected, detail: Some("127.0.0.1:8200".into()) });
    let consent = |capability, state| Consent { capability, state };
    console.publish(ConsoleEvent::Members {
        members: vec![
            Member {
                id: 0,
                name: "Ada Lovelace".into(),
                role: Role::Provider,
                organisation: Some("Helpdesk Ltd".into()),
                you: true,
                consent: vec![],
            },
            Member {
                id: 1,
                name: "Grace (customer)".into(),
                role: Role::Customer,
                organisation: None,
                you: false,
                consent: vec![
                    consent(Capability::ViewScreen, ConsentState::Granted),
                    consent(Capability::RemoteControl, ConsentState::Pending),
                    consent(Capability::FileTransfer, ConsentState::Granted),
                    consent(Capability::Diagnostics, ConsentState::Granted),
                ],
            },
        ],
    });
    let line = |from: &str, member, text: &str, local, at_ms| {
        ConsoleEvent::Chat(ChatLine { from: from.into(), member: Some(member), text: text.into(), local, at_ms })
    };
    console.publish(line("Ada Lovelace", 0, "Hello Grace, this is Ada from the helpdesk.", true, at));
    console.publish(line("Grace (customer)", 1, "Hello, I can see the error again", false, at + 20_000));
    console.publish(line("Grace (customer)", 1, XSS, false, at + 30_000));
    console.publish(ConsoleEvent::Transfer(setup_exe(TransferState::InProgress { bytes: 419_430_400 })));
    console.publish(ConsoleEvent::Transfer(Transfer {
        id: TransferId(2),
        direction: Direction::FromCustomer,
        name: "install.log".into(),
        size: Some(48_213),
        state: TransferState::Offered,
    }));
    console.publish(ConsoleEvent::Transfer(Transfer {
        id: TransferId(3),
        direction: Direction::FromCustomer,
        name: "screenshot-error.png".into(),
        size: Some(231_004),
        state: TransferState::Completed {
            sha256: "9f2c5e0d1b7a4c3e8f6a2b1d0c9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e".into(),
            saved_to: Some("~/Downloads/lifeline/screenshot-error.png".into()),
        },
    }));
    console.publish(ConsoleEvent::Notice { message: "Grace allowed file transfer".into(), at_ms: at + 40_000 });
    console.publish(ConsoleEvent::Error { message: "Grace refused remote control".into(), at_ms: at + 50_000 });
    let record = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    console.publish(ConsoleEvent::Diagnostics(DiagnosticsReport {
        id: 1,
        at_ms: at + 60_000,
        sections: vec![
            DiagnosticsSection {
                name: "os".into(),
                records: vec![record(&[
                    ("name", "Debian GNU/Linux 12 (bookworm)"),
                    ("kernel", "6.1.0-28-amd64"),
                    ("hostname", "grace-laptop"),
                    ("uptime", "3 days, 4:12"),
                ])],
            },
            DiagnosticsSection {
                name: "memory".into(),
                records: vec![record(&[("total", "15.5 GiB"), ("available", "9.8 GiB"), ("swap used", "0 B")])],
            },
            DiagnosticsSection {
                name: "disks".into(),
                records: vec![
                    record(&[("mount", "/"), ("size", "234 GiB"), ("used", "181 GiB"), ("fs", "ext4")]),
                    record(&[("mount", "/boot/efi"), ("size", "511 MiB"), ("used", "5.9 MiB"), ("fs", "vfat")]),
                ],
            },
            DiagnosticsSection {
                name: "processes".into(),
                records: vec![
                    record(&[("pid", "1"), ("name", "systemd"), ("cpu %", "0.0"), ("memory", "12 MiB")]),
                    record(&[("pid", "312"), ("name", "systemd-journald"), ("cpu %", "0.1"), ("memory", "48 MiB")]),
                    record(&[("pid", "2210"), ("name", "firefox-esr"), ("cpu %", "12.5"), ("memory", "1.4 GiB")]),
                ],
            },
        ],
    }));
}

/// A tiny W3C WebDriver client for ChromeDriver, over the test's raw HTTP client.
struct Driver {
    addr: SocketAddr,
    session: String,
    _process: tokio::process::Child,
}

impl Driver {
    async fn start(chromedriver: &Path, chromium: &Path, profile: &Path) -> Driver {
        let port = {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let process = tokio::process::Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start chromedriver");
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let started = Instant::now();
        loop {
            let ready = match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => call(addr, "GET", "/status", None).await["value"]["ready"] == json!(true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The flags the machine notes say work here: no sandbox (root), no GPU, and none of the
        // background connections that a closed network refuses; a fresh profile.
        let capabilities = json!({ "capabilities": { "alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium.to_str().unwrap(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--disable-dev-shm-usage", "--window-size=1280,1250",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let reply = call(addr, "POST", "/session", Some(capabilities)).await;
        let session = reply["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {reply}")).to_owned();
        Driver { addr, session, _process: process }
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let reply = call(self.addr, method, &format!("/session/{}{path}", self.session), body).await;
        assert!(reply["value"].get("error").is_none(), "{method} {path}: {reply}");
        reply["value"].clone()
    }

    async fn navigate(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url }))).await;
    }

    async fn script(&self, script: &str) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({ "script": script, "args": [] }))).await
    }

    async fn body_text(&self) -> String {
        self.script("return document.body.innerText").await.as_str().unwrap_or_default().to_owned()
    }

    async fn find(&self, selector: &str) -> String {
        let found = self.cmd("POST", "/element", Some(json!({ "using": "css selector", "value": selector }))).await;
        found[ELEMENT].as_str().unwrap_or_else(|| panic!("no element {selector}: {found}")).to_owned()
    }

    async fn type_into(&self, element: &str, text: &str) {
        self.cmd("POST", &format!("/element/{element}/value"), Some(json!({ "text": text }))).await;
    }

    async fn click(&self, selector: &str) {
        let element = self.find(selector).await;
        self.cmd("POST", &format!("/element/{element}/click"), Some(json!({}))).await;
    }

    /// Waits until the script returns `true`.
    async fn wait_script(&self, script: &str) {
        let started = Instant::now();
        while self.script(script).await != json!(true) {
            assert!(started.elapsed() < Duration::from_secs(15), "never true: {script}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the element with this id contains the text.
    async fn wait_text(&self, id: &str, text: &str) {
        let script = format!(
            "const e = document.getElementById({}); return e ? e.innerText : null",
            serde_json::to_string(id).unwrap()
        );
        let started = Instant::now();
        loop {
            let shown = self.script(&script).await;
            if shown.as_str().is_some_and(|shown| shown.contains(text)) {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(15), "#{id} never showed {text:?}; it shows {shown}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn screenshot(&self, path: &Path) {
        self.script("window.scrollTo(0, 0); return null").await;
        let png = self.cmd("GET", "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD.decode(png.as_str().unwrap()).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, png).unwrap();
    }

    async fn quit(mut self) {
        call(self.addr, "DELETE", &format!("/session/{}", self.session), None).await;
        self.session.clear();
    }
}

impl Drop for Driver {
    /// On a failed assertion, still close the browser (ChromeDriver itself is killed on drop, and
    /// would leave Chromium running otherwise).
    fn drop(&mut self) {
        use std::io::{Read as _, Write as _};
        if self.session.is_empty() {
            return;
        }
        let Ok(mut stream) = std::net::TcpStream::connect_timeout(&self.addr, Duration::from_secs(2)) else { return };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let request =
            format!("DELETE /session/{} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n\r\n", self.session, self.addr);
        if stream.write_all(request.as_bytes()).is_ok() {
            let _ = stream.read(&mut [0u8; 1024]);
        }
    }
}

async fn call(addr: SocketAddr, method: &str, path: &str, body: Option<Value>) -> Value {
    let mut req = Req::new(method, path, addr);
    if let Some(body) = body {
        req = req.json(&body.to_string());
    }
    let reply = req.send(addr).await;
    serde_json::from_slice(&reply.body).unwrap_or_else(|_| panic!("{method} {path}: {} {}", reply.status, reply.text()))
}
