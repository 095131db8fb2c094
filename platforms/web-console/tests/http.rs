//! The console's HTTP side, over real sockets: the token, Host and Origin checks, limits, commands
//! on the channel, the event stream with its replay, uploads to disk, shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{Events, Req, token_of};
use lifeline_web_console::{
    Capability, ChatLine, ConnectionState, ConsoleCommand, ConsoleConfig, ConsoleEvent, Direction, SessionInfo,
    Transfer, TransferId, TransferState, WebConsole,
};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;

const FORBIDDEN: &str = r#"{"error":"forbidden"}"#;

async fn start(config: ConsoleConfig) -> (WebConsole, mpsc::Receiver<ConsoleCommand>, String) {
    let (console, commands) = WebConsole::start(config).await.unwrap();
    let token = token_of(console.url());
    (console, commands, token)
}

fn chat(text: &str) -> ConsoleEvent {
    ConsoleEvent::Chat(ChatLine { from: "Customer".into(), member: Some(1), text: text.into(), local: false, at_ms: 1 })
}

async fn next_command(commands: &mut mpsc::Receiver<ConsoleCommand>) -> ConsoleCommand {
    tokio::time::timeout(Duration::from_secs(5), commands.recv()).await.expect("a command in time").expect("open")
}

// ---- where it listens, and the token ----

#[tokio::test]
async fn listens_on_loopback_with_a_fresh_256_bit_token() {
    let (a, _ca, token_a) = start(ConsoleConfig::default()).await;
    let (b, _cb, token_b) = start(ConsoleConfig::default()).await;
    assert!(a.local_addr().ip().is_loopback());
    assert_eq!(a.local_addr().ip().to_string(), "127.0.0.1");
    assert!(a.url().starts_with(&format!("http://127.0.0.1:{}/?t=", a.local_addr().port())));
    assert_eq!(token_a.len(), 64);
    assert!(token_a.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(token_a, token_b);
    assert_ne!(a.local_addr().port(), b.local_addr().port());
    // The token is not in the Debug output.
    assert!(!format!("{a:?}").contains(&token_a));
}

#[tokio::test]
async fn requests_without_the_token_get_403_and_nothing_else() {
    let (console, _commands, token) = start(ConsoleConfig::default()).await;
    let addr = console.local_addr();
    let wrong = "0".repeat(64);
    let short = &token[..63];
    let cases = [
        Req::get("/", addr),
        Req::get(&format!("/?t={wrong}"), addr),
        Req::get(&format!("/?t={short}"), addr),
        Req::get("/?t=", addr),
        Req::get("/api/events", addr),
        Req::get("/api/events", addr).token(&wrong),
        // The token in the query is only for the page itself.
        Req::get(&format!("/api/events?t={token}"), addr),
        Req::post("/api/command", addr).json(r#"{"type":"end_session"}"#),
        Req::post(&format!("/api/command?t={token}"), addr).json(r#"{"type":"end_session"}"#),
        Req::post("/api/command", addr).token(&wrong).json(r#"{"type":"end_session"}"#),
        Req::post("/api/upload?name=a", addr).header("content-type", "application/octet-stream"),
        // Unknown paths too: without the token, nothing says what exists.
        Req::get("/nothing-here", addr),
        Req::get("/favicon.ico", addr),
    ];
    for req in cases {
        let head = req.head();
        let reply = req.send(addr).await;
        assert_eq!(reply.status, 403, "{head}");
        assert_eq!(reply.text(), FORBIDDEN, "{head}");
    }
    // The page with the token; then a second request on the same footing but without it.
    let page = Req::get(&format!("/?t={token}"), addr).send(addr).await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains("Lifeline — provider console"));
    assert_eq!(Req::get("/", addr).send(addr).await.status, 403);
    // With the token, unknown paths and methods are told apart.
    assert_eq!(Req::get("/nothing-here", addr).token(&token).send(addr).await.status, 404);
    let reply = Req::post("/api/events", addr).token(&token).json("{}").send(addr).await;
    assert_eq!((reply.status, reply.header("allow")), (405, Some("GET")));
}

#[tokio::test]
async fn the_page_is_served_with_a_strict_policy_and_a_fresh_nonce() {
    let (console, _commands, token) = start(ConsoleConfig::default()).await;
    let addr = console.local_addr();
    let first = Req::get(&format!("/?t={token}"), addr).send(addr).await;
    let second = Req::get(&format!("/?t={token}"), addr).send(addr).await;
    let csp = first.header("content-security-policy").unwrap().to_owned();
    assert!(csp.starts_with("default-src 'none'; script-src 'nonce-"), "{csp}");
    assert!(csp.contains("connect-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_ne!(csp, second.header("content-security-policy").unwrap(), "a nonce per response");
    let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert_eq!(first.text().matches(&format!("nonce=\"{nonce}\"")).count(), 2);
    assert!(!first.text().contains("{{NONCE}}"));
    assert_eq!(first.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(first.header("x-frame-options"), Some("DENY"));
    assert_eq!(first.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(first.header("cache-control"), Some("no-store"));
    assert_eq!(first.header("set-cookie"), None, "no ambient credential");
    // No external resources: nothing in the page points off the console's origin.
    for needle in ["http://", "https://", "//cdn", "src=\"", "href=\"http"] {
        assert!(!first.text().contains(needle), "page contains {needle}");
    }
    // The token is never written into the page by the server.
    assert!(!first.text().contains(&token));
}

// ---- DNS rebinding and cross-site requests ----

#[tokio::test]
async fn the_host_must_be_the_loopback_address_and_port() {
    let (console, _commands, token) = start(ConsoleConfig::default()).await;
    let addr = console.local_addr();
    let port = addr.port();
    let page = format!("/?t={token}");
    for host in [
        Some("evil.example".to_owned()),
        Some(format!("evil.example:{port}")),
        Some(format!("127.0.0.1:{}", port.wrapping_add(1))),
        Some(format!("127.0.0.2:{port}")),
        Some(format!("[::1]:{port}")),
        Some("127.0.0.1".to_owned()),
        None,
    ] {
        let reply = Req::get(&page, addr).host(host.as_deref()).send(addr).await;
        assert!(reply.status == 403 || reply.status == 400, "{host:?}: {}", reply.status);
        let reply = Req::post("/api/command", addr)
            .host(host.as_deref())
            .token(&token)
            .json(r#"{"type":"end_session"}"#)
            .send(addr)
            .await;
        assert!(reply.status == 403 || reply.status == 400, "{host:?}: {}", reply.status);
    }
    assert_eq!(Req::get(&page, addr).host(Some(&format!("localhost:{port}"))).send(addr).await.status, 200);
}

#[tokio::test]
async fn state_changes_need_the_console_origin() {
    let (console, mut commands, token) = start(ConsoleConfig::default()).await;
    let addr = console.local_addr();
    let port = addr.port();
    let end = r#"{"type":"end_session"}"#;
    let cases = [
        Req::post("/api/command", addr).without("origin"),
        Req::post("/api/command", addr).header("origin", "http://evil.example"),
        Req::post("/api/command", addr).header("origin", "null"),
        Req::post("/api/command", addr).header("origin", &format!("http://127.0.0.1:{}", port.wrapping_add(1))),
        Req::post("/api/command", addr).header("origin", &format!("https://127.0.0.1:{port}")),
        // Fetch metadata: another port of 127.0.0.1 is "same-site", and refused like any other site.
        Req::post("/api/command", addr).header("sec-fetch-site", "same-site"),
        Req::post("/api/command", addr).header("sec-fetch-site", "cross-site"),
    ];
    for req in cases {
        let head = req.head();
        let reply = req.token(&token).json(end).send(addr).await;
        assert_eq!((reply.status, reply.text().as_str()), (403, FORBIDDEN), "{head}");
    }
    // A foreign Origin on a GET is refused too.
    let reply = Req::get("/api/events", addr).token(&token).header("origin", "http://evil.example").send(addr).await;
    assert_eq!(reply.status, 403);
    assert!(commands.try_recv().is_err(), "nothing reached the native side");

    let ok = Req::post("/api/command", addr).header("sec-fetch-site", "same-origin").token(&token).json(end);
    assert_eq!(ok.send(addr).await.status, 202);
    let ok = Req::post("/api/command", addr).header("origin", &format!("http://localhost:{port}"));
    assert_eq!(ok.host(Some(&format!("localhost:{port}"))).token(&token).json(end).send(addr).await.status, 202);
    assert_eq!(next_command(&mut commands).await, ConsoleCommand::EndSession);
    assert_eq!(next_command(&mut commands).await, ConsoleCommand::EndSession);
}

// ---- commands ----

#[tokio::test]
async fn commands_from_the_page_arrive_on_the_channel() {
    let (console, mut commands, token) = start(ConsoleConfig::default()).await;
    let addr = console.local_addr();
    let cases = [
        (r#"{"type":"send_chat","text":"Hello, I'm Ada"}"#, ConsoleCommand::SendChat { text: "Hello, I'm Ada".into() }),
        (
            r#"{"type":"request_capability","capability":"remote_control"}"#,
            ConsoleCommand::RequestCapability { capability: Capability::RemoteControl },
        ),
        (r#"{"type":"fetch_file","name":"install.log"}"#, ConsoleCommand::FetchFile { name: "install.log".into() }),
        (r#"{"type":"accept_file","transfer":4}"#, ConsoleCommand::AcceptFile { transfer: TransferId(4) }),
        (r#"{"type":"decline_file","transfer":5}"#, ConsoleCommand::DeclineFile { transfer: TransferId(5) }),
        (
            r#"{"type":"query_diagnostics","sections":["os","processes"]}"#,
            ConsoleCommand::QueryDiagnostics { sections: vec!["os".into(), "processes".into()] },
        ),
        (r#"{"type":"end_session"}"#, ConsoleCommand::EndSession),
    ];
    for (json, expected) in cases {
        let reply = Req::post("/api/command", addr).token(&token).json(json).send(addr).await;
        assert_eq!((reply.status, reply.text().as_str()), (202, r#"{"ok":true}"#), "{json}");
        assert_eq!(next_command(&mut commands).await, expected);
    }
}

#[tokio::test]
async fn bad_commands_get_clear_4xx_errors() {
    let config = ConsoleConfig { max_command_body: 1024, max_chat_bytes: 100, ..ConsoleConfig::default() };
    let (console, mut commands, token) = start(config).await;
    let addr = console.local_addr();
    let post = || Req::post("/api/command", addr).token(&token);
    let cases: Vec<(Req, u16, &str)> = vec![
        (post().json("{not json"), 400, "bad command JSON"),
        (post().json(r#"{"type":"format_disk"}"#), 400, "bad command JSON"),
        (post().json(r#"{"type":"send_chat"}"#), 400, "bad command JSON"),
        (post().json(r#"{"type":"send_chat","text":"hi","path":"/etc/passwd"}"#), 400, "bad command JSON"),
        (post().json(r#"{"type":"send_file","name":"x","path":"/etc/shadow","size":1}"#), 400, "bad command JSON"),
        (post().json(&format!(r#"{{"type":"send_chat","text":"{}"}}"#, "x".repeat(101))), 400, "too long"),
        (post().json(r#"{"type":"send_chat","text":"   "}"#), 400, "empty"),
        (post().json(r#"{"type":"fetch_file","name":"../../etc/passwd"}"#), 400, "file name"),
        (post().json(&format!(r#"{{"type":"send_chat","text":"{}"}}"#, "x".repeat(2000))), 413, "larger than 1024"),
        (post().json(&format!(r#"{{"type":"send_chat","text":"{}"}}"#, "x".repeat(2000))).chunked(), 413, "larger"),
        (post().header("content-type", "text/plain").body(br#"{"type":"end_session"}"#.to_vec()), 415, "json"),
        (post().body(br#"{"type":"end_session"}"#.to_vec()), 415, "json"),
        (post().header("content-type", "application/json; charset=latin1").body(b"{}".to_vec()), 415, "json"),
        (Req::get("/api/command", addr).token(&token), 405, "POST"),
    ];
    for (req, status, message) in cases {
        let head = req.head();
        let reply = req.send(addr).await;
        assert_eq!(reply.status, status, "{head}\n{}", reply.text());
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert!(reply.text().contains(message), "{head}\n{}", reply.text());
    }
    // Errors never echo what was sent.
    let reply = post().json(r#"{"type":"<script>alert(1)</script>"}"#).send(addr).await;
    assert_eq!(reply.status, 400);
    assert!(!reply.text().contains("script"), "{}", reply.text());
    assert!(commands.try_recv().is_err());
}

#[tokio::test]
async fn a_full_queue_says_busy_and_a_closed_one_says_gone() {
    let (console, commands, token) = start(ConsoleConfig { command_queue: 1, ..ConsoleConfig::default() }).await;
    let addr = console.local_addr();
    let end = r#"{"type":"end_session"}"#;
    assert_eq!(Req::post("/api/command", addr).token(&token).json(end).send(addr).await.status, 202);
    let reply = Req::post("/api/command", addr).token(&token).json(end).send(addr).await;
    assert_eq!(reply.status, 503, "{}", reply.text());
    drop(commands);
    let reply = Req::post("/api/command", addr).token(&token).json(end).send(addr).await;
    assert_eq!(reply.status, 410, "{}", reply.text());
}

// ---- events ----

#[tokio::test]
async fn the_event_stream_replays_the_state_then_goes_live() {
    let (console, _commands, token) = start(ConsoleConfig { chat_history: 2, ..ConsoleConfig::default() }).await;
    let addr = console.local_addr();
    console.publish(ConsoleEvent::Session(SessionInfo {
        session_number: 123_456_789,
        pin: Some("482913".into()),
        ..SessionInfo::default()
    }));
    console.publish(ConsoleEvent::Connection { state: ConnectionState::Connecting, detail: None });
    console.publish(ConsoleEvent::Connection { state: ConnectionState::Connected, detail: Some("relay".into()) });
    for text in ["one", "two", "three"] {
        console.publish(chat(text));
    }

    let mut page = Events::open(addr, &token).await;
    assert!(page.seen.contains("text/event-stream"));
    page.wait_for(r#""text":"three""#).await;
    let replay = page.seen.clone();
    let reset = replay.find(r#"data: {"type":"reset"}"#).expect("reset first");
    let session = replay.find(r#""session_number":123456789,"pin":"482913""#).expect("session");
    let two = replay.find(r#""text":"two""#).expect("chat two");
    assert!(reset < session && session < two);
    assert!(!replay.contains(r#""text":"one""#), "history is bounded");
    assert!(!replay.contains("connecting"), "only the latest connection state");
    assert!(replay.contains(r#""state":"connected","detail":"relay""#));

    // Live: a page already open sees new events; a publisher handle works from anywhere.
    let publisher = console.publisher();
    tokio::spawn(async move { publisher.publish(chat("live <b>line</b>")) }).await.unwrap();
    page.wait_for(r#""text":"live <b>line</b>""#).await;

    // A page opened later gets the same state, including what went live before.
    let mut late = Events::open(addr, &token).await;
    late.wait_for(r#""text":"live <b>line</b>""#).await;
    assert!(late.seen.contains(r#""text":"three""#) && !late.seen.contains(r#""text":"two""#));

    // Transfers are updated in place in the replay.
    for bytes in [0, 512, 1024] {
        console.publish(ConsoleEvent::Transfer(Transfer {
            id: TransferId(9),
            direction: Direction::ToCustomer,
            name: "setup.exe".into(),
            size: Some(1024),
            state: if bytes == 1024 {
                TransferState::Completed { sha256: "ab".repeat(32), saved_to: None }
            } else {
                TransferState::InProgress { bytes }
            },
        }));
    }
    page.wait_for(r#""kind":"completed""#).await;
    let mut third = Events::open(addr, &token).await;
    third.wait_for(r#""kind":"completed""#).await;
    assert!(!third.seen.contains("in_progress"));

    // Shutting down ends every stream.
    console.shutdown().await;
    page.wait_closed().await;
    late.wait_closed().await;
}

#[tokio::test]
async fn a_page_that_falls_behind_starts_over_from_the_current_state() {
    let (console, _commands, token) = start(ConsoleConfig { chat_history: 100, ..ConsoleConfig::default() }).await;
    let addr = console.local_addr();
    let mut page = Events::open(addr, &token).await;
    page.wait_for(r#"{"type":"reset"}"#).await;
    // On this single-threaded runtime the stream's task cannot run while we publish, so the page
    // falls more than the live buffer (1024 events) behind.
    for i in 0..3000 {
        console.publish(chat(&format!("burst {i}")));
    }
    page.wait_for(r#""text":"burst 2999""#).await;
    assert_eq!(page.seen.matches(r#"{"type":"reset"}"#).count(), 2, "a second reset, then the replay");
    let after_reset = page.seen.rsplit(r#"{"type":"reset"}"#).next().unwrap();
    assert!(after_reset.contains(r#""text":"burst 2900""#) && !after_reset.contains(r#""text":"burst 2899""#));
}

// ---- uploads ----

#[tokio::test]
async fn uploads_stream_to_the_outbox_and_become_send_file_commands() {
    let outbox = std::env::temp_dir().join(format!("lifeline-console-test-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&outbox);
    let config =
        ConsoleConfig { max_upload_bytes: 4 << 20, outbox_dir: Some(outbox.clone()), ..ConsoleConfig::default() };
    let (console, mut commands, token) = start(config).await;
    let addr = console.local_addr();
    assert_eq!(console.outbox_dir(), outbox);
    let content: Vec<u8> = (0..3 << 20).map(|i: u32| (i % 251) as u8).collect();

    // Chunked, 64 KiB at a time; the name is percent-encoded UTF-8.
    let reply = Req::post("/api/upload?name=Bericht%20%C3%84nderung.pdf", addr)
        .token(&token)
        .header("content-type", "application/octet-stream")
        .body(content.clone())
        .chunked()
        .send(addr)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    assert_eq!(reply.text(), r#"{"name":"Bericht Änderung.pdf","size":3145728}"#);
    let ConsoleCommand::SendFile { name, path, size } = next_command(&mut commands).await else { panic!() };
    assert_eq!((name.as_str(), size), ("Bericht Änderung.pdf", 3 << 20));
    assert!(path.starts_with(&outbox));
    assert_eq!(std::fs::read(&path).unwrap(), content);
    std::fs::remove_file(&path).unwrap();

    // Exactly the limit is fine (with a Content-Length this time).
    let body = vec![7u8; 4 << 20];
    let reply = Req::post("/api/upload?name=exact.bin", addr)
        .token(&token)
        .header("content-type", "application/octet-stream")
        .body(body)
        .send(addr)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    let ConsoleCommand::SendFile { path, size, .. } = next_command(&mut commands).await else { panic!() };
    assert_eq!(size, 4 << 20);
    std::fs::remove_file(&path).unwrap();

    // Over the limit: refused on the declared length, or while streaming; nothing is left behind.
    let over = vec![1u8; (4 << 20) + 1];
    let declared = Req::post("/api/upload?name=big.bin", addr)
        .token(&token)
        .header("content-type", "application/octet-stream")
        .body(over.clone());
    let reply = declared.send(addr).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    let streamed = Req::post("/api/upload?name=big.bin", addr)
        .token(&token)
        .header("content-type", "application/octet-stream")
        .body(over)
        .chunked();
    let reply = streamed.send(addr).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    assert!(reply.text().contains("larger than 4194304"));

    // Bad names and types.
    for (target, content_type, status) in [
        ("/api/upload?name=..%2Fescape", "application/octet-stream", 400),
        ("/api/upload?name=..", "application/octet-stream", 400),
        ("/api/upload?name=a%2Fb", "application/octet-stream", 400),
        ("/api/upload?name=%zz", "application/octet-stream", 400),
        ("/api/upload", "application/octet-stream", 400),
        ("/api/upload?name=ok.txt", "multipart/form-data", 415),
    ] {
        let reply = Req::post(target, addr)
            .token(&token)
            .header("content-type", content_type)
            .body(b"data".to_vec())
            .send(addr)
            .await;
        assert_eq!(reply.status, status, "{target}: {}", reply.text());
    }
    assert!(commands.try_recv().is_err());
    assert_eq!(std::fs::read_dir(&outbox).unwrap().count(), 0, "no partial or refused file left");

    // A given outbox outlives the console.
    console.shutdown().await;
    assert!(outbox.exists());
    std::fs::remove_dir_all(&outbox).unwrap();
}

#[tokio::test]
async fn an_upload_is_written_as_it_arrives_and_an_abandoned_one_is_deleted() {
    let (console, mut commands, token) = start(ConsoleConfig::default()).await;
    let addr = console.local_addr();
    let outbox = console.outbox_dir().to_owned();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = Req::post("/api/upload?name=slow.bin", addr)
        .token(&token)
        .header("content-type", "application/octet-stream")
        .header("content-length", &(8u64 << 20).to_string())
        .head();
    // `head()` wrote content-length 0 for the empty body; send our own head instead.
    let head = head.replace("content-length: 0\r\n", "");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&vec![5u8; 1 << 20]).await.unwrap();

    // The first MiB is on disk, under a .part name, while the rest has not been sent.
    let part = outbox.join("upload-1.part");
    let on_disk = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0) >= 1 << 20 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(on_disk.is_ok(), "the upload is streamed to disk");

    // The browser goes away: the partial file goes too, and nothing is handed over.
    drop(stream);
    let gone = tokio::time::timeout(Duration::from_secs(10), async {
        while part.exists() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(gone.is_ok(), "the partial upload is deleted");
    assert!(commands.try_recv().is_err());

    // The console's own outbox is removed with it.
    console.shutdown().await;
    assert!(!outbox.exists());
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "nothing listens after shutdown");
}
