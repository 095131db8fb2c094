//! Hardware-in-the-loop scenarios on QEMU's `mps2-an386` (Cortex-M4F): the real firmware
//! (`platforms/appliance/mps2-an386`) joins a session as the customer side through its UART
//! console, against a real relay and a real provider endpoint (the tokio transport) on
//! 127.0.0.1. The guest reaches the host only through QEMU's restricted user network and one
//! `guestfwd` per relay port.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "../../tests/tests/support/mod.rs"]
mod support;

mod board;

use std::net::SocketAddr;
use std::time::Duration;

use board::{Board, Forwarder, GUEST_PORTS, GUEST_RELAY, hex};
use lifeline_apps::diagnostics::{Assembled, Assembler};
use lifeline_apps::transfer::{TransferConfig, TransferEvent, Transfers};
use lifeline_core::app::console::{ConsoleRepr, RefusalReason};
use lifeline_core::app::diagnostics::Sections;
use lifeline_core::app::file::CancelReason;
use lifeline_core::consent::Capability;
use lifeline_core::crypto::srp::Group;
use lifeline_core::session::{Event, Pin, SessionEnd};
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::{Destination, MAX_PAYLOAD_LEN, MemberId};
use lifeline_ticket::TicketRole;
use lifeline_transport_tokio::{RelayAddress, TransportEvent, os_rng};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use support::{Endpoint, HostileProxy, Tamper, TestRelay, pki, session_number};

/// One scenario at a time: each boots QEMU, and a CI machine has two cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A relay, the forwarders in front of it, the booted and provisioned board, and a provider
/// leading the session.
struct Rig {
    relay: Option<TestRelay>,
    agent_path: Forwarder,
    provider_path: Forwarder,
    board: Board,
    provider: Endpoint,
    session: u64,
    pin: Pin,
}

impl Rig {
    async fn start() -> Rig {
        Rig::start_in(Group::Rfc5054_2048).await
    }

    /// As `start`, the provider leading the session in SRP `group`.
    async fn start_in(group: Group) -> Rig {
        let relay = TestRelay::start("a", "").await;
        Rig::start_through_in(relay.addr, Some(relay), group).await
    }

    /// As `start`, the agent's connections going to `agent_target` (a proxy, say).
    async fn start_through(agent_target: SocketAddr, relay: Option<TestRelay>) -> Rig {
        Rig::start_through_in(agent_target, relay, Group::Rfc5054_2048).await
    }

    async fn start_through_in(agent_target: SocketAddr, relay: Option<TestRelay>, group: Group) -> Rig {
        let relay_addr = relay.as_ref().map(|relay| relay.addr).unwrap_or(agent_target);
        let agent_path = Forwarder::start(Some(agent_target)).await;
        let provider_path = Forwarder::start(Some(relay_addr)).await;
        let session = session_number();
        let pin = support::new_pin();
        let provider_relays = vec![RelayAddress::new("127.0.0.1").with_ports(vec![provider_path.port])];
        let mut provider = Endpoint::leader_in(group, provider_relays, session, "a", &pin, "Ada (Helpdesk)");
        assert_eq!(provider.connected().await.1, MemberId::LEADER);
        let mut board = Board::boot(agent_path.port);
        provision(&mut board, session);
        Rig { relay, agent_path, provider_path, board, provider, session, pin }
    }

    /// Joins with the right PIN; the agent's member id.
    async fn join(&mut self) -> MemberId {
        let pin = self.pin.as_str().to_owned();
        self.board.send(&format!("join {} {}", self.session, pin));
        let connected = self.board.expect("@relay connected");
        self.board.expect("@joined");
        let member = MemberId(field(&connected, "member").parse().unwrap());
        self.provider.announced(member).await;
        member
    }

    /// The provider asks for `capability`; the owner answers on the console.
    async fn consent(&mut self, member: MemberId, capability: Capability, allow: bool) {
        let key = key(capability);
        self.provider.handle.request(member, capability).await.unwrap();
        self.board.expect(&format!("@consent-request {key} from=0"));
        self.board.send(&format!("{} {key}", if allow { "allow" } else { "deny" }));
        self.board.expect("@consent granted=");
        self.provider
            .wait("the customer's consent state", |event| match event {
                TransportEvent::Session(Event::PeerConsent { granted, pending, .. })
                    if granted.contains(capability) == allow && !pending.contains(capability) =>
                {
                    Some(())
                }
                _ => None,
            })
            .await;
    }

    /// Sends a request and waits for the agent's reply of the same content type.
    async fn ask(&mut self, member: MemberId, content: ContentType, payload: &[u8]) -> Vec<u8> {
        self.provider.handle.send(Destination::Member(member), content, payload.to_vec()).await.unwrap();
        self.next_reply(member, content).await
    }

    /// The next payload of `content` from `member`.
    async fn next_reply(&mut self, member: MemberId, content: ContentType) -> Vec<u8> {
        self.provider
            .wait("the agent's reply", |event| match event {
                TransportEvent::Data(data) if data.content == content && data.from == member => {
                    Some(data.payload.clone())
                }
                _ => None,
            })
            .await
    }

    /// A full diagnostics report, put together by the desktop's own assembler (lifeline-apps).
    async fn diagnostics(&mut self, member: MemberId, request: u16) -> Vec<(String, String)> {
        let mut assembler = Assembler::new(request, Sections::ALL);
        let mut reply = self.ask(member, ContentType::Diagnostics, &assembler.query()).await;
        loop {
            match assembler.handle(&reply) {
                Assembled::Complete => break,
                Assembled::Partial => reply = self.next_reply(member, ContentType::Diagnostics).await,
                other => panic!("diagnostics: {other:?}"),
            }
        }
        assembler.report().sections.values().flatten().cloned().collect()
    }

    /// Runs a console command; the parsed reply.
    async fn run(&mut self, member: MemberId, request: u16, command: &str, args: &str) -> Reply {
        let mut out = [0u8; 2048];
        let len = ConsoleRepr::Run { request, command, args }.emit(&mut out).unwrap();
        let reply = self.ask(member, ContentType::Console, &out[..len]).await;
        match ConsoleRepr::parse(&reply).expect("a console reply parses") {
            ConsoleRepr::Output { request: r, last: true, status, data, .. } if r == request => {
                Reply::Output(status, String::from_utf8(data.to_vec()).unwrap())
            }
            ConsoleRepr::Refused { request: r, reason } if r == request => Reply::Refused(reason),
            other => panic!("unexpected console reply {other:?}"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Reply {
    Output(i32, String),
    Refused(RefusalReason),
}

fn provision(board: &mut Board, session: u64) {
    let ca = CertificateDer::from_pem_file(pki().ca()).unwrap();
    provision_trusting(board, session, &ca);
}

/// Provisions the board; relays must chain to `ca` (DER).
fn provision_trusting(board: &mut Board, session: u64, ca: &[u8]) {
    let mut seed = [0u8; 32];
    rand_core::Rng::fill_bytes(&mut os_rng(), &mut seed);
    board.send(&format!("seed {}", hex(&seed)));
    board.expect("@net up");
    board.expect("@ok seed");
    board.send(&format!("ca {}", hex(ca)));
    board.expect("@ok ca");
    let ports: Vec<String> = GUEST_PORTS.iter().map(u16::to_string).collect();
    board.send(&format!("relay {GUEST_RELAY} {} localhost", ports.join(",")));
    board.expect("@ok relay");
    let ticket = pki().ticket(session, TicketRole::Member, "a");
    board.send(&format!("ticket {}", hex(&ticket)));
    board.expect("@ok ticket");
}

fn key(capability: Capability) -> &'static str {
    match capability {
        Capability::Diagnostics => "diagnostics",
        Capability::RemoteConsole => "console",
        Capability::FileTransfer => "files",
        _ => unreachable!("not offered by the agent"),
    }
}

/// `name=value` from a console line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split_whitespace()
        .find_map(|word| word.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
        .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
}

/// A record of a diagnostics report.
fn report_value(report: &[(String, String)], key: &str) -> String {
    report
        .iter()
        .find_map(|(k, value)| (k == key).then(|| value.clone()))
        .unwrap_or_else(|| panic!("no {key} in the report: {report:#?}"))
}

// ---- join ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_with_a_wrong_pin_fails_then_the_right_pin_joins() {
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::start().await;
    // A wrong PIN: the leader's key confirmation fails; the agent reports the refusal.
    let wrong = if rig.pin.as_str() == "00000000" { "11111111" } else { "00000000" };
    rig.board.send(&format!("join {} {wrong}", rig.session));
    rig.board.expect("@relay connected");
    let closed = rig.board.expect("@closed");
    assert!(closed.contains("wrong PIN"), "{closed}");
    rig.provider
        .wait("the failed join", |event| {
            matches!(event, TransportEvent::Session(Event::JoinFailed { failures: 1, .. })).then_some(())
        })
        .await;
    assert!(!rig.board.saw("@joined"));
    // The right PIN, typed as people do: with a space in the middle.
    let (first, second) = rig.pin.as_str().split_at(4);
    rig.board.send(&format!("join {} {first} {second}", rig.session));
    rig.board.expect("@joined");
    rig.provider.handle.chat("hello appliance").await.unwrap();
    let chat = rig.board.expect("@chat");
    assert!(chat.ends_with("hello appliance"), "{chat}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_certificate_from_another_ca_is_refused() {
    let _serial = SERIAL.lock().await;
    let relay = TestRelay::start("a", "").await;
    let path = Forwarder::start(Some(relay.addr)).await;
    let mut board = Board::boot(path.port);
    // The device trusts a certificate that did not sign the relay's (another relay's leaf).
    let other = CertificateDer::from_pem_file(pki().dir.join("relay-b.pem")).unwrap();
    let session = session_number();
    provision_trusting(&mut board, session, &other);
    board.send(&format!("join {session} 12345678"));
    board.expect("[WARN  lifeline_transport_embassy] relay: TLS handshake on port 8200 failed: InvalidCertificate");
    board.expect("@relay reconnecting attempt=1");
    board.expect("[WARN  lifeline_transport_embassy] relay: TLS handshake on port 8200 failed: InvalidCertificate");
    assert!(!board.saw("@relay connected"), "{}", board.transcript());
    // And the relay never saw a ticket from it.
    assert_eq!(relay.metric("lifeline_relay_admissions_total").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_ends_the_session_for_everyone() {
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::start().await;
    let member = rig.join().await;
    rig.board.send("end");
    rig.board.expect("@session-closed");
    let closed = rig.board.expect("@closed");
    assert!(closed.contains("closed locally"), "{closed}");
    // The customer's Close ends the session on the provider's side too.
    rig.provider.settle(Duration::from_secs(2)).await;
    let ended = rig.provider.seen.iter().any(|event| {
        matches!(event, TransportEvent::Session(Event::Closed { reason: SessionEnd::EndedBy(by) }) if *by == member)
    });
    assert!(ended, "{:#?}", rig.provider.seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_falls_back_to_port_443_when_8200_is_blocked() {
    let _serial = SERIAL.lock().await;
    let relay = TestRelay::start("a", "").await;
    // 8200 is "blocked": its connections are accepted and closed at once; 443 reaches the relay.
    let blocked = Forwarder::start(None).await;
    let open = Forwarder::start(Some(relay.addr)).await;
    let session = session_number();
    let pin = support::new_pin();
    let provider_relays = vec![RelayAddress::new("127.0.0.1").with_ports(vec![relay.addr.port()])];
    let mut provider = Endpoint::leader(provider_relays, session, "a", &pin, "Ada (Helpdesk)");
    provider.connected().await;
    let mut board = Board::boot_with_ports(blocked.port, open.port);
    provision(&mut board, session);
    board.send(&format!("join {session} {}", pin.as_str()));
    board.expect("@relay connecting port=8200");
    board.expect("@relay connecting port=443");
    board.expect("@relay connected port=443");
    board.expect("@joined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_comes_back_after_a_relay_goes_away() {
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::start().await;
    let member = rig.join().await;
    // A graceful shutdown: the relay sends GoAway and closes.
    rig.relay.take().unwrap().stop().await;
    rig.board.expect("@relay reconnecting");
    let relay = TestRelay::start("a", "").await;
    rig.agent_path.point_to(Some(relay.addr));
    rig.provider_path.point_to(Some(relay.addr));
    rig.relay = Some(relay);
    let connected = rig.board.expect("@relay connected");
    assert_eq!(field(&connected, "resumed"), "true", "{connected}");
    assert_eq!(field(&connected, "member"), member.0.to_string());
    rig.provider.handle.chat("back again").await.unwrap();
    rig.board.expect("@chat from=0 back again");
}

// ---- consent and diagnostics -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_only_after_the_owner_allows_them() {
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::start().await;
    let member = rig.join().await;

    // Denied: the query is dropped by the agent's engine, nothing comes back.
    rig.consent(member, Capability::Diagnostics, false).await;
    let query = Assembler::new(1, Sections::ALL).query();
    rig.provider.handle.send(Destination::Member(member), ContentType::Diagnostics, query.clone()).await.unwrap();
    rig.board.expect("@refused Diagnostics");
    rig.provider.settle(Duration::from_millis(500)).await;
    assert!(rig.provider.data().iter().all(|data| data.content != ContentType::Diagnostics));

    // Allowed: a report with the board's facts, assembled by the desktop's code.
    rig.consent(member, Capability::Diagnostics, true).await;
    let report = rig.diagnostics(member, 2).await;
    assert_eq!(report_value(&report, "firmware"), "0.1.0");
    assert_eq!(report_value(&report, "board"), "mps2-an386");
    assert!(report_value(&report, "uptime_ms").parse::<u64>().unwrap() > 0);
    assert_eq!(report_value(&report, "ram.total"), "262144");
    let peak: usize = report_value(&report, "stack.peak").parse().unwrap();
    assert!(peak > 4096 && peak < report_value(&report, "stack.size").parse().unwrap(), "{report:?}");
    assert_eq!(report_value(&report, "net.link"), "up");
    assert!(report_value(&report, "net.address").starts_with("10.0.2."), "{report:?}");
    assert!(report_value(&report, "eth.rx_frames").parse::<u32>().unwrap() > 0);
    assert_eq!(report_value(&report, "session.unauthentic"), "0");
    report_value(&report, "oem.pump_cycles");
    for (key, value) in &report {
        eprintln!("diagnostics: {key} = {value}");
    }

    // Revoked by the owner: refused again.
    rig.board.send("revoke diagnostics");
    rig.board.expect("@consent granted=");
    rig.provider.handle.send(Destination::Member(member), ContentType::Diagnostics, query).await.unwrap();
    rig.board.expect("@refused Diagnostics");
}

/// The appliance's RAM budget (the target; memory.x gives QEMU more so overruns show).
const RAM_BUDGET: usize = 64 * 1024;

/// Members accept the 3072-bit group as well (the leader chooses), and its exponentiations are
/// the deepest stack the firmware has: a 3072-bit join and a diagnostics report (the path the
/// 2048-bit peak is measured on) must keep static RAM plus the painted stack peak in budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_3072_bit_leader_keeps_ram_in_budget() {
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::start_in(Group::Rfc5054_3072).await;
    let member = rig.join().await;
    rig.consent(member, Capability::Diagnostics, true).await;
    let report = rig.diagnostics(member, 1).await;
    let peak: usize = report_value(&report, "stack.peak").parse().unwrap();
    let fixed: usize = report_value(&report, "ram.static").parse().unwrap();
    eprintln!("diagnostics (3072-bit leader): stack.peak = {peak}, ram.static = {fixed}, sum = {}", peak + fixed);
    assert!(peak + fixed <= RAM_BUDGET, "static {fixed} + stack peak {peak} > {RAM_BUDGET}");
}

// ---- console ---------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_runs_registered_commands_only() {
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::start().await;
    let member = rig.join().await;
    rig.consent(member, Capability::RemoteConsole, true).await;

    let mut out = [0u8; 16];
    let len = ConsoleRepr::List { request: 1 }.emit(&mut out).unwrap();
    let reply = rig.ask(member, ContentType::Console, &out[..len]).await;
    let Some(ConsoleRepr::Commands { request: 1, names }) = ConsoleRepr::parse(&reply) else { panic!("{reply:?}") };
    assert_eq!(names.iter().collect::<Vec<_>>(), ["status", "version", "echo"]);

    let Reply::Output(0, status) = rig.run(member, 2, "status", "").await else { panic!("status refused") };
    assert!(status.starts_with("pump=running"), "{status:?}");
    rig.board.expect("@console ran status");
    assert_eq!(rig.run(member, 3, "echo", "hello board").await, Reply::Output(0, "hello board".into()));

    // Not registered: refused, nothing runs; arguments are never a command line.
    assert_eq!(rig.run(member, 4, "rm", "-rf /").await, Reply::Refused(RefusalReason::UnknownCommand));
    rig.board.expect("@console refused rm");
    assert_eq!(rig.run(member, 5, "sh", "-c reboot").await, Reply::Refused(RefusalReason::UnknownCommand));
}

// ---- files -----------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_is_fetched_in_chunks_and_checked() {
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::start().await;
    let member = rig.join().await;
    rig.consent(member, Capability::FileTransfer, true).await;

    // The desktop's own transfer engine (lifeline-apps) fetches, stores and checks the file.
    let downloads = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("hil-files-{}", rig.session));
    let _ = std::fs::remove_dir_all(&downloads);
    std::fs::create_dir_all(&downloads).unwrap();
    let mut transfers = Transfers::new(MemberId::LEADER, TransferConfig::new(&downloads));
    let (path, size) = fetch(&mut rig, &mut transfers, member, "config.toml").await.unwrap();
    let missing = fetch(&mut rig, &mut transfers, member, "missing.txt").await.err();
    let expected =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../platforms/appliance/mps2-an386/files/config.toml"))
            .unwrap();
    assert_eq!(size, expected.len() as u64);
    assert!(expected.len() > lifeline_agent_chunk(), "the file should span several chunks");
    // Completed means the receiver checked the SHA-256 of the whole file (lifeline-apps).
    assert_eq!(std::fs::read(path).unwrap(), expected);
    assert_eq!(missing, Some(CancelReason::NotFound));
    rig.board.expect("@file sent config.toml");
}

/// Fetches `name` with the desktop's transfer engine: where it was saved and its size, or why not.
async fn fetch(
    rig: &mut Rig,
    transfers: &mut Transfers,
    member: MemberId,
    name: &str,
) -> Result<(std::path::PathBuf, u64), CancelReason> {
    let now = std::time::Instant::now;
    transfers.fetch(now(), member, name).unwrap();
    let mut buf = vec![0u8; MAX_PAYLOAD_LEN];
    loop {
        while let Some((peer, len)) = transfers.poll_message(&mut buf) {
            rig.provider.handle.send(Destination::Member(peer), ContentType::File, buf[..len].to_vec()).await.unwrap();
        }
        while let Some(event) = transfers.poll_event() {
            match event {
                TransferEvent::Completed { saved_as, size, .. } => {
                    // The final `Complete` goes out too.
                    while let Some((peer, len)) = transfers.poll_message(&mut buf) {
                        let payload = buf[..len].to_vec();
                        rig.provider.handle.send(Destination::Member(peer), ContentType::File, payload).await.unwrap();
                    }
                    return Ok((saved_as.unwrap(), size));
                }
                TransferEvent::Failed { reason, .. } => return Err(reason),
                _ => {}
            }
        }
        let reply = rig.next_reply(member, ContentType::File).await;
        transfers.handle_message(now(), member, &reply);
    }
}

/// The agent's chunk size (`lifeline_agent::CHUNK`; the agent crate is bare-metal only).
fn lifeline_agent_chunk() -> usize {
    1024
}

// ---- tampering -------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_tampered_on_the_way_are_detected() {
    let _serial = SERIAL.lock().await;
    let relay = TestRelay::start("a", "").await;
    // The agent reaches the relay through a hostile TLS proxy that alters the provider's frames.
    let proxy = HostileProxy::start(relay.addr, MemberId::LEADER).await;
    let mut rig = Rig::start_through(proxy.addr, Some(relay)).await;
    let member = rig.join().await;
    rig.consent(member, Capability::Diagnostics, true).await;

    proxy.plan(&[Tamper::FlipBit, Tamper::Pass, Tamper::Forge, Tamper::Pass]);
    for text in ["tampered-0", "clean-1", "clean-2", "clean-3"] {
        rig.provider.handle.chat(text).await.unwrap();
    }
    rig.board.expect("@chat from=0 clean-3");
    let chats = rig.board.lines_with("@chat");
    assert!(chats.iter().all(|line| !line.contains("tampered-0")), "{chats:?}");
    for text in ["clean-1", "clean-2", "clean-3"] {
        assert_eq!(chats.iter().filter(|line| line.ends_with(text)).count(), 1, "{chats:?}");
    }
    assert_eq!(proxy.done(), [Tamper::FlipBit, Tamper::Pass, Tamper::Forge, Tamper::Pass]);
    // The engine counted both the flipped and the forged frame as unauthentic.
    let report = rig.diagnostics(member, 1).await;
    assert_eq!(report_value(&report, "session.unauthentic"), "2", "{report:?}");
}

// ---- relay restart ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reconnects_and_resumes_after_a_relay_restart() {
    let _serial = SERIAL.lock().await;
    let mut rig = Rig::start().await;
    let member = rig.join().await;

    // The relay dies abruptly; nothing answers for a while.
    rig.agent_path.point_to(None);
    rig.provider_path.point_to(None);
    rig.relay.take().unwrap().kill();
    rig.board.expect("@relay reconnecting");
    // A new relay process (same name, new port): both endpoints come back to it.
    let relay = TestRelay::start("a", "").await;
    rig.agent_path.point_to(Some(relay.addr));
    rig.provider_path.point_to(Some(relay.addr));
    rig.relay = Some(relay);
    let connected = rig.board.expect("@relay connected");
    assert_eq!(field(&connected, "resumed"), "true", "{connected}");
    assert_eq!(field(&connected, "member"), member.0.to_string());

    // The session goes on without a new join.
    rig.provider.handle.chat("still there?").await.unwrap();
    rig.board.expect("@chat from=0 still there?");
    assert_eq!(rig.board.lines_with("@joined").len(), 1);
}
