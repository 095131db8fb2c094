//! Shutdown, metrics, the command line (config errors, `pki init`, `ticket mint`, `run`), and
//! the proof that the relay's source never touches session keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Client, Notice, SESSION, TestRelay, limits, pki, temp_dir};
use lifeline_core::wire::{Destination, FrameKind, MemberId};
use lifeline_ticket::{TicketRole, TicketVerifier};

const BIN: &str = env!("CARGO_BIN_EXE_lifeline-relay");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_sends_go_away_and_waits_for_endpoints() {
    let relay = TestRelay::start(pki().config("local", &limits(&[("shutdown_grace_secs", "3")]))).await;
    let mut leader = Client::join(relay.addr, SESSION, &pki().leader(SESSION, "local"), None).await;
    let mut member = Client::join(relay.addr, SESSION, &pki().member(SESSION, "local"), None).await;
    let started = std::time::Instant::now();
    relay.handle.shutdown();
    assert_eq!(leader.notice(Duration::from_secs(2)).await, Some(Notice::GoAway));
    assert_eq!(member.notice(Duration::from_secs(2)).await, Some(Notice::GoAway));
    // New connections are no longer accepted.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(Client::try_connect(relay.addr).await.is_err(), "the listener is closed");
    // Endpoints leave on GoAway: the relay stops well before the grace is over.
    drop(leader);
    drop(member);
    tokio::time::timeout(Duration::from_secs(2), relay.task).await.expect("run returns").unwrap();
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_that_stay_are_closed_after_the_grace() {
    let relay = TestRelay::start(pki().config("local", &limits(&[("shutdown_grace_secs", "0.3")]))).await;
    let mut leader = Client::join(relay.addr, SESSION, &pki().leader(SESSION, "local"), None).await;
    relay.handle.shutdown();
    assert_eq!(leader.notice(Duration::from_secs(2)).await, Some(Notice::GoAway));
    assert!(leader.closed_within(Duration::from_secs(2)).await);
    tokio::time::timeout(Duration::from_secs(3), relay.task).await.expect("run returns").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_serves_the_counters() {
    let relay = TestRelay::start(pki().config("local", &limits(&[]))).await;
    let mut leader = Client::join(relay.addr, SESSION, &pki().leader(SESSION, "local"), None).await;
    let mut member = Client::join(relay.addr, SESSION, &pki().member(SESSION, "local"), None).await;
    leader.send_as_me(FrameKind::SecureData, Destination::Member(MemberId(1)), &common::body(1, 1000)).await;
    member.expect_frame().await;
    let (status, text) = common::scrape(relay.metrics, "/metrics").await;
    assert!(status.contains("200"), "{status}");
    for family in [
        "lifeline_relay_sessions 1",
        "lifeline_relay_members 2",
        "lifeline_relay_connections 2",
        "lifeline_relay_frames_routed_total 1",
        "lifeline_relay_mesh_links_up 0",
        "# TYPE lifeline_relay_bytes_in_total counter",
        "# TYPE lifeline_relay_bytes_out_total counter",
        "lifeline_relay_drops_total{reason=\"slow_consumer\"} 0",
        "lifeline_relay_handshake_failures_total{reason=\"bad_ticket\"} 0",
    ] {
        assert!(text.contains(family), "missing {family:?} in\n{text}");
    }
    assert!(common::sample(&text, "lifeline_relay_bytes_in_total") > 1000.0);
    assert!(common::sample(&text, "lifeline_relay_bytes_out_total") > 1000.0);
    let (status, _) = common::scrape(relay.metrics, "/").await;
    assert!(status.contains("404"), "{status}");
    relay.stop().await;
}

fn run_bin(args: &[&str]) -> std::process::Output {
    Command::new(BIN).args(args).env("LIFELINE_LOG", "warn").output().unwrap()
}

#[test]
fn a_malformed_or_missing_config_exits_with_code_2_and_a_clear_message() {
    let dir = temp_dir("config");
    let missing = dir.join("nope.toml");
    let output = run_bin(&["run", "--config", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("cannot read config file") && stderr.contains("nope.toml"), "{stderr}");

    let malformed = dir.join("bad.toml");
    std::fs::write(&malformed, "name = \"x\"\nlisten = [\"127.0.0.1:0\"\n").unwrap();
    let output = run_bin(&["run", "--config", malformed.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid config file") && stderr.contains("line"), "{stderr}");

    let unknown_key = dir.join("typo.toml");
    let pki_dir = pki().dir.display();
    std::fs::write(
        &unknown_key,
        format!(
            "name = \"local\"\nlisten = [\"127.0.0.1:0\"]\nlisten_port = 3\n[tls]\ncert = \"{pki_dir}/relay-local.pem\"\nkey = \"{pki_dir}/relay-local.key\"\nca = \"{pki_dir}/ca.pem\"\n[tickets]\nverify_key = \"{pki_dir}/ticket-verify.pem\"\n"
        ),
    )
    .unwrap();
    let output = run_bin(&["run", "--config", unknown_key.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("listen_port"));

    let missing_cert = dir.join("cert.toml");
    std::fs::write(
        &missing_cert,
        "name = \"local\"\nlisten = [\"127.0.0.1:0\"]\n[tls]\ncert = \"none.pem\"\nkey = \"none.key\"\nca = \"ca.pem\"\n[tickets]\nverify_key = \"v.pem\"\n",
    )
    .unwrap();
    let output = run_bin(&["run", "--config", missing_cert.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("none.pem"));
}

#[test]
fn pki_init_writes_every_file_with_private_keys_kept_private() {
    let dir = temp_dir("pki-init");
    let target = dir.join("fleet");
    let output = run_bin(&[
        "pki",
        "init",
        target.to_str().unwrap(),
        "--relay",
        "relay-a",
        "--relay",
        "relay-b",
        "--san",
        "relay.example.net",
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    for file in [
        "ca.pem",
        "ca.key",
        "relay-relay-a.pem",
        "relay-relay-a.key",
        "relay-relay-b.pem",
        "relay-relay-b.key",
        "broker.pem",
        "broker.key",
        "ticket-signing.key",
        "ticket-verify.pem",
    ] {
        assert!(target.join(file).is_file(), "{file}");
    }
    #[cfg(unix)]
    for secret in ["ca.key", "relay-relay-a.key", "broker.key", "ticket-signing.key"] {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(target.join(secret)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{secret}");
    }
    let again = run_bin(&["pki", "init", target.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1), "an existing PKI is never overwritten");
}

fn mint(dir: &Path, role: &str, home: &str) -> Vec<u8> {
    let key = dir.join("ticket-signing.key");
    let session = SESSION.to_string();
    let output = run_bin(&[
        "ticket",
        "mint",
        "--key",
        key.to_str().unwrap(),
        "--session",
        &session,
        "--role",
        role,
        "--home",
        home,
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let hex = String::from_utf8(output.stdout).unwrap();
    let hex = hex.trim();
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pki_init_output_is_what_a_relay_loads_and_minted_tickets_verify() {
    let dir = temp_dir("pki-load");
    let output = run_bin(&["pki", "init", dir.to_str().unwrap(), "--relay", "edge-1"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));

    let ticket = mint(&dir, "member", "edge-1");
    let verifier = TicketVerifier::from_pem(&std::fs::read_to_string(dir.join("ticket-verify.pem")).unwrap()).unwrap();
    let verified = verifier.verify(&ticket, common::now_unix()).unwrap();
    assert_eq!(
        (verified.session, verified.role, verified.home_relay.as_str()),
        (SESSION, TicketRole::Member, "edge-1")
    );
    let expiry = verified.expires_unix - common::now_unix();
    assert!((3590..=3600).contains(&expiry), "default ttl one hour: {expiry}");
    let bad_ttl = run_bin(&[
        "ticket",
        "mint",
        "--key",
        dir.join("ticket-signing.key").to_str().unwrap(),
        "--session",
        "1",
        "--role",
        "leader",
        "--home",
        "edge-1",
        "--ttl",
        "999999",
    ]);
    assert_eq!(bad_ttl.status.code(), Some(2));

    let config_text = format!(
        "name = \"edge-1\"\nlisten = [\"127.0.0.1:0\"]\nmetrics_listen = \"127.0.0.1:0\"\n[tls]\ncert = \"relay-edge-1.pem\"\nkey = \"relay-edge-1.key\"\nca = \"ca.pem\"\n[tickets]\nverify_key = \"ticket-verify.pem\"\n{}",
        limits(&[])
    );
    let relay = TestRelay::start(lifeline_relay::Config::from_toml(&config_text, &dir).unwrap()).await;
    let mut client = Client::connect_trusting(relay.addr, common::roots(&dir.join("ca.pem"))).await.unwrap();
    assert_eq!(client.admit(SESSION, &ticket, None).await, Notice::Welcome(1));
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_a_relay_and_stops_gracefully_on_sigterm() {
    let dir = pki().dir.clone();
    let config = temp_dir("run").join("relay.toml");
    std::fs::write(
        &config,
        format!(
            "name = \"local\"\nlisten = [\"127.0.0.1:0\", \"127.0.0.1:0\"]\nmetrics_listen = \"127.0.0.1:0\"\n[tls]\ncert = \"{d}/relay-local.pem\"\nkey = \"{d}/relay-local.key\"\nca = \"{d}/ca.pem\"\n[tickets]\nverify_key = \"{d}/ticket-verify.pem\"\n[limits]\nshutdown_grace_secs = 5\n",
            d = dir.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(BIN)
        .args(["run", "--config", config.to_str().unwrap()])
        .env("LIFELINE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut ready).unwrap();
    // "lifeline-relay local ready: endpoints A,B metrics M mesh off"
    let endpoints = ready.split_whitespace().skip_while(|word| *word != "endpoints").nth(1).unwrap().to_owned();
    let addrs: Vec<std::net::SocketAddr> = endpoints.split(',').map(|a| a.parse().unwrap()).collect();
    assert_eq!(addrs.len(), 2, "{ready}");

    let ticket = pki().leader(SESSION, "local");
    let mut leader = Client::join(addrs[0], SESSION, &ticket, None).await;
    let mut member = Client::join(addrs[1], SESSION, &pki().member(SESSION, "local"), None).await;
    leader.send_as_me(FrameKind::Handshake, Destination::Member(MemberId(1)), b"port race").await;
    assert_eq!(&member.expect_frame().await[16..], b"port race", "both ports serve the same sessions");

    let Ok(killed) = Command::new("kill").args(["-TERM", &child.id().to_string()]).status() else {
        eprintln!("no kill command: SIGTERM not tested");
        child.kill().unwrap();
        child.wait().unwrap();
        return;
    };
    assert!(killed.success());
    assert_eq!(leader.notice(Duration::from_secs(3)).await, Some(Notice::GoAway));
    drop(leader);
    drop(member);
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(std::time::Instant::now() < deadline, "the relay did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "{status:?}");
}

#[test]
fn the_relay_source_never_touches_session_keys() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut checked = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for (index, _) in text.match_indices("lifeline_core::") {
            let rest = &text[index + "lifeline_core::".len()..];
            assert!(
                rest.starts_with("wire"),
                "{}: uses lifeline_core::{}",
                path.display(),
                &rest[..20.min(rest.len())]
            );
            checked += 1;
        }
        // No other way to name the core: no grouped import, no alias.
        for forbidden in ["lifeline_core::{", "lifeline_core as", "lifeline_core;"] {
            assert!(!text.contains(forbidden), "{} mentions {forbidden}", path.display());
        }
    }
    assert!(checked > 5, "the check saw the wire imports");
    // And the manifest enables no feature of the core beyond its no_std default.
    let manifest = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml")).unwrap();
    let core_line = manifest.lines().find(|line| line.starts_with("lifeline-core")).unwrap();
    assert_eq!(core_line.trim(), "lifeline-core = { workspace = true }");
}
