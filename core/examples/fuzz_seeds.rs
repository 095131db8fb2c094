//! Writes the seed corpus of the fuzz targets in `fuzz/fuzz_targets/` from real traffic: a real
//! leader and member join (2048- and 3072-bit groups), exchange control and data, rekey and close,
//! a member with a wrong PIN is rejected, and every frame they send becomes a seed. Control
//! payloads, LZ4 blocks and the session target's byte programs are built directly.
//!
//!     cargo run -p lifeline-core --example fuzz_seeds -- fuzz/seeds
//!
//! Output is deterministic (fixed seeds for every random generator), so re-running it changes
//! nothing unless the protocol does. Existing seed directories are replaced, except files named
//! `regression-*` (crash reproducers), which are kept.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fs;
use std::path::{Path, PathBuf};

use heapless::{String as HString, Vec as HVec};
use lifeline_core::compress;
use lifeline_core::consent::{Capability, CapabilitySet};
use lifeline_core::crypto::srp::Group;
use lifeline_core::session::{Config, Pin, Session};
use lifeline_core::time::{Duration, Instant};
use lifeline_core::wire::control::{CloseReason, ContentType, ControlRepr};
use lifeline_core::wire::handshake::Role;
use lifeline_core::wire::relay::{RefusalReason, RelayRepr};
use lifeline_core::wire::{
    Destination, FrameKind, HEADER_LEN, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, MemberId, RoutingHeader,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type Endpoint = Session<ChaCha20Rng, 4>;

const MEMBER: MemberId = MemberId(1);

/// A leader and one member joined through a lossless in-memory relay; every frame is recorded.
///
/// Set up exactly as in the session fuzz target (session number, names, generator seeds), so the
/// frames of a join are the very frames the target's endpoints exchange: the `raw-frames` program
/// can replay them.
struct Pair {
    now: Instant,
    leader: Endpoint,
    member: Endpoint,
    frames: Vec<Vec<u8>>,
}

impl Pair {
    fn new(group: Group, member_pin: Option<&str>, rekey_after_frames: u64) -> Self {
        let now = Instant::from_secs(1);
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let pin = Pin::generate(&mut rng);
        let mut config = Config::new(99, MemberId::LEADER, Role::Provider, "p");
        config.group = group;
        config.rekey_after_frames = rekey_after_frames;
        let leader = Session::new_leader(config, &pin, rng, now);
        let mut config = Config::new(99, MEMBER, Role::Customer, "c");
        config.rekey_after_frames = rekey_after_frames;
        let member_pin = member_pin.unwrap_or(pin.as_str());
        let member = Session::new_member(config, member_pin, ChaCha20Rng::seed_from_u64(8), now);
        Pair { now, leader, member, frames: Vec::new() }
    }

    /// Delivers everything both sides have to send until both are quiet.
    fn flush(&mut self) {
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let mut out = vec![0u8; MAX_PAYLOAD_LEN];
        loop {
            let mut quiet = true;
            for from_leader in [true, false] {
                let (from, to) = if from_leader {
                    (&mut self.leader, &mut self.member)
                } else {
                    (&mut self.member, &mut self.leader)
                };
                while let Some(transmit) = from.poll_transmit(self.now, &mut buf).unwrap() {
                    quiet = false;
                    let frame = buf[..transmit.len].to_vec();
                    let _ = to.handle_frame(self.now, &mut frame.clone(), &mut out);
                    self.frames.push(frame);
                }
            }
            while self.leader.poll_event().is_some() {}
            while self.member.poll_event().is_some() {}
            if quiet {
                break;
            }
        }
    }

    fn send(&mut self, from_leader: bool, content: ContentType, payload: &[u8]) {
        self.flush();
        let mut buf = vec![0u8; MAX_FRAME_LEN];
        let mut out = vec![0u8; MAX_PAYLOAD_LEN];
        let to = if from_leader { Destination::Member(MEMBER) } else { Destination::AllMembers };
        let (from, receiver) =
            if from_leader { (&mut self.leader, &mut self.member) } else { (&mut self.member, &mut self.leader) };
        let len = from.send(self.now, to, content, payload, &mut buf).expect("send in an established session");
        let frame = buf[..len].to_vec();
        let delivered = receiver.handle_frame(self.now, &mut frame.clone(), &mut out).expect("honest frame");
        if let Some(delivery) = delivered {
            assert_eq!(&out[..delivery.len], payload);
        }
        self.frames.push(frame);
    }

    fn advance(&mut self, duration: Duration) {
        self.now = self.now + duration;
        self.leader.handle_timeout(self.now);
        self.member.handle_timeout(self.now);
        self.flush();
    }
}

/// All frames of a full session: join, consent, data both ways, rekeys, keepalives, close.
fn full_session() -> Vec<Vec<u8>> {
    let mut pair = Pair::new(Group::Rfc5054_2048, None, 4);
    pair.flush();
    assert!(pair.member.is_established(), "the member joined");
    pair.send(true, ContentType::Chat, b"Hello, this is Ada from the helpdesk.");
    pair.send(false, ContentType::Chat, b"Hi!");
    pair.leader.request(MEMBER, Capability::ViewScreen).unwrap();
    pair.leader.request(MEMBER, Capability::FileTransfer).unwrap();
    pair.flush();
    pair.member.grant(Capability::ViewScreen).unwrap();
    pair.member.deny(Capability::FileTransfer).unwrap();
    pair.flush();
    pair.send(false, ContentType::Screen, &[0x42; 200]);
    pair.leader.request(MEMBER, Capability::Diagnostics).unwrap();
    pair.flush();
    pair.member.grant(Capability::Diagnostics).unwrap();
    let report = "cpu: 4 cores\nmemory: 8 GiB\ndisk: ok\n".repeat(12);
    pair.send(false, ContentType::Diagnostics, report.as_bytes());
    pair.send(true, ContentType::Diagnostics, b"uptime");
    pair.member.revoke(Capability::ViewScreen).unwrap();
    pair.flush();
    pair.advance(Duration::from_secs(11)); // keepalives
    pair.send(true, ContentType::Chat, b"Thanks, all done.");
    pair.member.close(pair.now);
    pair.flush();
    pair.frames
}

/// The frames of a join in the 3072-bit group.
fn join_3072() -> Vec<Vec<u8>> {
    let mut pair = Pair::new(Group::Rfc5054_3072, None, 1 << 20);
    pair.flush();
    assert!(pair.member.is_established(), "the member joined (3072)");
    pair.frames
}

/// A join with the wrong PIN: the leader's reject.
fn rejected_join() -> Vec<Vec<u8>> {
    let mut pair = Pair::new(Group::Rfc5054_2048, Some("00000000"), 1 << 20);
    pair.flush();
    assert!(!pair.member.is_established());
    pair.frames
}

fn kind(frame: &[u8]) -> FrameKind {
    RoutingHeader::parse(frame).unwrap().kind
}

/// One seed directory, filled from scratch (keeping `regression-*` files).
struct Seeds {
    dir: PathBuf,
    count: usize,
}

impl Seeds {
    fn new(root: &Path, target: &str) -> Self {
        let dir = root.join(target);
        fs::create_dir_all(&dir).unwrap();
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("regression-") {
                fs::remove_file(&path).unwrap();
            }
        }
        Seeds { dir, count: 0 }
    }

    fn write(&mut self, name: &str, bytes: &[u8]) {
        assert!(bytes.len() <= 8 * 1024, "seed {name} is {} bytes: keep seeds small", bytes.len());
        fs::write(self.dir.join(name), bytes).unwrap();
        self.count += 1;
    }

    fn done(self) {
        assert!(self.count <= 20, "{}: {} seeds, keep it under 20", self.dir.display(), self.count);
        println!("{:>3} seeds in {}", self.count, self.dir.display());
    }
}

/// A short name for a frame: its kind and, for handshakes, the message.
fn frame_name(frame: &[u8]) -> String {
    match kind(frame) {
        FrameKind::Handshake => {
            let message = match frame[HEADER_LEN] {
                1 => "hello",
                2 => "challenge",
                3 => "proof",
                4 => "accept",
                5 => "reject",
                _ => "unknown",
            };
            format!("handshake-{message}")
        }
        FrameKind::KeyUpdate => "key-update".into(),
        FrameKind::SecureControl => "control".into(),
        FrameKind::SecureData => "data".into(),
        _ => "other".into(),
    }
}

fn frame_seeds(root: &Path, session: &[Vec<u8>], join_3072: &[Vec<u8>], rejected: &[Vec<u8>]) {
    // routing_header: one frame of every kind and message, and a few distinct protected ones.
    let mut seeds = Seeds::new(root, "routing_header");
    let mut written: Vec<String> = Vec::new();
    let all = session.iter().chain(join_3072).chain(rejected);
    for frame in all {
        let name = frame_name(frame);
        let limit = if name == "control" || name == "data" { 4 } else { 1 };
        let n = written.iter().filter(|w| **w == name).count();
        if n < limit && frame.len() <= 1024 {
            seeds.write(&format!("{name}-{n}"), frame);
            written.push(name);
        }
    }
    seeds.done();

    // stream_decoder: chunk size u16 LE, repeat count u8, bytes (repeated `repeat + 1` times).
    let mut seeds = Seeds::new(root, "stream_decoder");
    let seed = |chunk: u16, repeat: u8, bytes: &[u8]| [&chunk.to_le_bytes()[..], &[repeat], bytes].concat();
    let stream = |frames: &[Vec<u8>]| frames.concat();
    let join: Vec<Vec<u8>> = session.iter().filter(|f| kind(f) == FrameKind::Handshake).cloned().collect();
    let protected: Vec<Vec<u8>> = session.iter().filter(|f| kind(f).is_protected()).take(6).cloned().collect();
    let tail: Vec<Vec<u8>> = session[session.len() - 4..].to_vec();
    for (name, chunk, repeat, bytes) in [
        ("join-whole", 0u16, 0u8, stream(&join)),
        ("join-chunks-7", 7, 0, stream(&join)),
        ("protected-chunks-1", 1, 0, stream(&protected)),
        ("protected-chunks-16-repeated", 16, 20, stream(&protected)),
        ("protected-chunks-255", 255, 0, stream(&protected)),
        ("session-end-chunks-33", 33, 3, stream(&tail)),
        ("join-chunks-5000-repeated", 5000, 60, stream(&join)),
    ] {
        seeds.write(name, &seed(chunk, repeat, &bytes));
    }
    // Valid frames followed by a truncated one, and by a bad header (the decoder is poisoned).
    let mut truncated = stream(&protected[..2]);
    truncated.extend_from_slice(&protected[2][..protected[2].len() / 2]);
    seeds.write("truncated-tail", &seed(5, 0, &truncated));
    let mut poisoned = stream(&protected[..2]);
    poisoned.extend_from_slice(&[2, 4, 0, 40, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0xFF, 0, 0]);
    seeds.write("bad-version-after-frames", &seed(11, 0, &poisoned));
    // 16 KiB frames: a 4 KiB copy starts with a header whose body spans it and 3 more copies.
    let mut big = vec![0u8; 4096];
    let body_len = u16::try_from(4 * big.len() - HEADER_LEN).unwrap();
    RoutingHeader {
        kind: FrameKind::SecureData,
        body_len,
        session: 99,
        sender: MEMBER,
        destination: Destination::AllMembers,
    }
    .emit((&mut big[..HEADER_LEN]).try_into().unwrap());
    seeds.write("max-frames-chunks-3000", &seed(3000, 11, &big));
    seeds.done();

    // handshake_message: the bodies of every handshake message, both groups.
    let mut seeds = Seeds::new(root, "handshake_message");
    let mut written: Vec<String> = Vec::new();
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for (group, frames) in [("2048", session), ("3072", join_3072), ("2048", rejected)] {
        for frame in frames.iter().filter(|f| kind(f) == FrameKind::Handshake) {
            let name = format!("{}-{group}", frame_name(frame).trim_start_matches("handshake-"));
            let body = frame[HEADER_LEN..].to_vec();
            if !written.contains(&name) && !bodies.contains(&body) {
                seeds.write(&name, &body);
                written.push(name);
                bodies.push(body);
            }
        }
    }
    seeds.done();

    // key_update: the KeyUpdate bodies (join and rekeys).
    let mut seeds = Seeds::new(root, "key_update");
    let updates = session.iter().chain(join_3072).filter(|f| kind(f) == FrameKind::KeyUpdate).take(6);
    for (n, frame) in updates.enumerate() {
        seeds.write(&format!("key-update-{n}"), &frame[HEADER_LEN..]);
    }
    seeds.done();
}

fn control_seeds(root: &Path) {
    let mut seeds = Seeds::new(root, "control_message");
    let mut roster = HVec::new();
    roster.extend_from_slice(&[MemberId(0), MemberId(1), MemberId(3), MemberId(0xFD)]).unwrap();
    let mut full_roster = HVec::new();
    for id in 0..64 {
        full_roster.push(MemberId(id)).unwrap();
    }
    let granted = CapabilitySet::EMPTY.with(Capability::ViewScreen).with(Capability::RemoteControl);
    let messages = [
        (
            "announce-provider",
            ControlRepr::Announce {
                role: Role::Provider,
                name: HString::try_from("Ada (Helpdesk)").unwrap(),
                receive_limit: None,
            },
        ),
        (
            "announce-customer-utf8",
            ControlRepr::Announce {
                role: Role::Customer,
                name: HString::try_from("Zoë Ω ✓").unwrap(),
                receive_limit: None,
            },
        ),
        (
            "announce-constrained",
            ControlRepr::Announce {
                role: Role::Customer,
                name: HString::try_from("Pump 7").unwrap(),
                receive_limit: Some(2048),
            },
        ),
        (
            "announce-empty-name",
            ControlRepr::Announce { role: Role::Customer, name: HString::new(), receive_limit: None },
        ),
        ("roster", ControlRepr::Roster { members: roster }),
        ("roster-full", ControlRepr::Roster { members: full_roster }),
        ("roster-empty", ControlRepr::Roster { members: HVec::new() }),
        ("capability-request", ControlRepr::CapabilityRequest { capability: Capability::RemoteControl }),
        (
            "consent-state",
            ControlRepr::ConsentState { granted, pending: CapabilitySet::EMPTY.with(Capability::FileTransfer) },
        ),
        ("leave", ControlRepr::Leave),
        ("close-ended", ControlRepr::Close { reason: CloseReason::Ended }),
        ("close-removed", ControlRepr::Close { reason: CloseReason::Removed }),
        ("ping", ControlRepr::Ping),
        ("rekey-request", ControlRepr::RekeyRequest),
    ];
    for (name, message) in messages {
        let mut payload = [0u8; 128];
        let len = message.emit_payload(&mut payload).unwrap();
        seeds.write(name, &[&[message.message_type()][..], &payload[..len]].concat());
    }
    seeds.done();
}

fn app_seeds(root: &Path) {
    use lifeline_core::app::console::{CommandNames, ConsoleRepr, RefusalReason as ConsoleRefusal};
    use lifeline_core::app::diagnostics::{DiagnosticsRepr, RecordWriter, Section, Sections};
    use lifeline_core::app::file::{CancelReason, FileRepr, Side};
    let mut seeds = Seeds::new(root, "app_message");
    let mut put = |name: &str, which: u8, payload: &[u8]| seeds.write(name, &[&[which][..], payload].concat());
    let mut buf = [0u8; 2048];
    let files = [
        ("file-offer", FileRepr::Offer { id: 2, size: 1 << 20, sha256: [0xA5; 32], name: "system.log" }),
        ("file-fetch", FileRepr::Fetch { id: 3, name: "config.toml" }),
        ("file-accept", FileRepr::Accept { id: 2, offset: 4096, window: 65_536 }),
        ("file-chunk", FileRepr::Chunk { id: 2, offset: 4096, data: b"line one\nline two\n" }),
        ("file-ack", FileRepr::Ack { id: 2, received: 8192 }),
        ("file-complete", FileRepr::Complete { id: 2 }),
        ("file-cancel", FileRepr::Cancel { id: 2, by: Side::Receiver, reason: CancelReason::Integrity }),
    ];
    for (name, message) in files {
        let len = message.emit(&mut buf).unwrap();
        put(name, 0, &buf[..len]);
    }
    let mut records = [0u8; 512];
    let mut writer = RecordWriter::new(&mut records);
    assert!(writer.push("os.name", "Debian GNU/Linux 12"));
    assert!(writer.push("mem.total_kib", "24576000"));
    let query =
        DiagnosticsRepr::Query { request: 1, sections: Sections::EMPTY.with(Section::System).with(Section::Memory) };
    let report = DiagnosticsRepr::Report {
        request: 1,
        section: Section::System,
        part: 0,
        last: true,
        records: writer.records(),
    };
    for (name, message) in [("diag-query", query), ("diag-report", report)] {
        let len = message.emit(&mut buf).unwrap();
        put(name, 1, &buf[..len]);
    }
    let mut names = [0u8; 64];
    let names = CommandNames::encode(&["uptime", "net.status"], &mut names).unwrap();
    let consoles = [
        ("console-list", ConsoleRepr::List { request: 4 }),
        ("console-commands", ConsoleRepr::Commands { request: 4, names }),
        ("console-run", ConsoleRepr::Run { request: 5, command: "net.status", args: "eth0" }),
        ("console-output", ConsoleRepr::Output { request: 5, part: 0, last: true, status: 0, data: b"link up\n" }),
        ("console-refused", ConsoleRepr::Refused { request: 6, reason: ConsoleRefusal::UnknownCommand }),
    ];
    for (name, message) in consoles {
        let len = message.emit(&mut buf).unwrap();
        put(name, 2, &buf[..len]);
    }
    seeds.done();
}

fn relay_seeds(root: &Path) {
    let mut seeds = Seeds::new(root, "relay_message");
    let ticket: Vec<u8> = (0..98u8).collect();
    let messages = [
        ("admit", RelayRepr::Admit { resume: None, ticket: &ticket }),
        ("admit-resume", RelayRepr::Admit { resume: Some(MemberId(3)), ticket: &ticket }),
        ("admit-empty-ticket", RelayRepr::Admit { resume: Some(MemberId(0)), ticket: &[] }),
        ("welcome", RelayRepr::Welcome { member: MemberId(2) }),
        ("refused", RelayRepr::Refused { reason: RefusalReason::BadTicket }),
        ("refused-full", RelayRepr::Refused { reason: RefusalReason::Full }),
        ("member-gone", RelayRepr::MemberGone { member: MemberId(1) }),
        ("go-away", RelayRepr::GoAway),
    ];
    for (name, message) in messages {
        let mut body = [0u8; 1024];
        let len = message.emit(&mut body).unwrap();
        seeds.write(name, &body[..len]);
    }
    seeds.done();
}

fn decompress_seeds(root: &Path) {
    let mut seeds = Seeds::new(root, "decompress");
    let text = "Lifeline: end-to-end encrypted remote support. The customer decides what the provider \
                may do, and can take back control at any time.\n"
        .repeat(8);
    let mut counter = Vec::new();
    for i in 0u32..400 {
        counter.extend_from_slice(&i.to_le_bytes());
    }
    let mut noise = Vec::new();
    let mut x = 0x1234_5678u32;
    for _ in 0..300 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        noise.push(x as u8);
    }
    let mut mixed = noise[..100].to_vec();
    mixed.extend_from_slice(&[0u8; 700]);
    mixed.extend_from_slice(&noise[..100]);
    mixed.extend_from_slice(text.as_bytes());
    let inputs: [(&str, &[u8]); 9] = [
        ("empty", b""),
        ("short", b"hello"),
        ("thirteen-bytes", b"0123456789abc"),
        ("text", text.as_bytes()),
        ("zeros-4k", &[0u8; 4096]),
        ("counter", &counter),
        ("noise", &noise),
        ("mixed", &mixed),
        ("period-3", &b"abc".repeat(300)),
    ];
    for (name, input) in inputs {
        let mut out = vec![0u8; compress::max_compressed_len(input.len())];
        let len = compress::compress(input, &mut out).unwrap();
        seeds.write(name, &out[..len]);
    }
    seeds.done();
}

/// Byte programs for the session target; the op table is in `fuzz/fuzz_targets/session.rs`.
#[derive(Default)]
struct Program(Vec<u8>);

const LEADER: u8 = 0x80;

impl Program {
    fn op(mut self, op: u8) -> Self {
        self.0.push(op);
        self
    }
    fn exchange(self) -> Self {
        self.op(0)
    }
    fn restart_member(self) -> Self {
        self.op(1)
    }
    fn request(self, capability: Capability) -> Self {
        self.op((capability.to_byte() << 4) | 4)
    }
    fn grant(self, capability: Capability) -> Self {
        self.op((capability.to_byte() << 4) | 5)
    }
    fn revoke(self, capability: Capability) -> Self {
        self.op((capability.to_byte() << 4) | 6)
    }
    fn deny(self, capability: Capability) -> Self {
        self.op(LEADER | (capability.to_byte() << 4) | 6)
    }
    fn send(mut self, leader: bool, content: ContentType, chunk: &[u8], repeat: u8) -> Self {
        let who = if leader { LEADER } else { 0 };
        let len = u8::try_from(chunk.len()).unwrap();
        self.0.extend_from_slice(&[who | (content.to_byte() << 4) | 7, len, repeat]);
        self.0.extend_from_slice(chunk);
        self
    }
    fn wait(self, steps: u8) -> Self {
        assert!(steps < 16);
        self.op((steps << 4) | 8)
    }
    fn close(self, leader: bool) -> Self {
        self.op(if leader { LEADER | 9 } else { 9 })
    }
    fn disconnected(self, leader: bool, member: u8) -> Self {
        self.op(if leader { LEADER } else { 0 } | (member << 4) | 10)
    }
    fn remove(self) -> Self {
        self.op(11)
    }
    fn replay(self, pick: u8) -> Self {
        self.op(12).op(pick)
    }
    fn tamper(mut self, pick: u8, at: u16, xor: u8) -> Self {
        self.0.push(3);
        self.0.push(pick);
        self.0.extend_from_slice(&at.to_be_bytes());
        self.0.push(xor);
        self
    }
    fn take_back_control(self) -> Self {
        self.op(13)
    }
    fn lose(self, leader: bool) -> Self {
        self.op(if leader { LEADER | 14 } else { 14 })
    }
    fn clock(mut self, micros: u64) -> Self {
        self.0.push(15);
        self.0.extend_from_slice(&micros.to_be_bytes());
        self
    }
    fn raw_frame(mut self, leader: bool, frame: &[u8]) -> Self {
        self.0.push(if leader { LEADER | 2 } else { 2 });
        self.0.extend_from_slice(&u16::try_from(frame.len()).unwrap().to_be_bytes());
        self.0.extend_from_slice(frame);
        self
    }
}

fn session_seeds(root: &Path, session: &[Vec<u8>]) {
    use Capability::{Diagnostics, FileTransfer, RemoteConsole, RemoteControl, ViewScreen};
    use ContentType::{Chat, Console, Diagnostics as Diag, File, Input, Screen};
    let mut seeds = Seeds::new(root, "session");
    let joined = || Program::default().exchange();
    let granted = |capability| joined().request(capability).exchange().grant(capability).exchange();
    let log_line = b"2024-05-01 12:00:00 INFO service started\n";
    let programs = [
        ("join", joined()),
        ("chat", joined().send(true, Chat, b"Hello, this is Ada.", 0).send(false, Chat, b"Hi!", 0).exchange()),
        ("screen-granted", granted(ViewScreen).send(false, Screen, &[7; 100], 3).send(true, Screen, b"ok", 0)),
        (
            "remote-control-then-take-back",
            granted(RemoteControl)
                .send(true, Input, b"\x01move 10 20", 0)
                .take_back_control()
                .exchange()
                .send(true, Input, b"\x02click", 0)
                .exchange(),
        ),
        (
            "input-while-prompt-open",
            granted(RemoteControl).request(ViewScreen).exchange().send(true, Input, b"key a", 0).deny(ViewScreen),
        ),
        ("file-compressed", granted(FileTransfer).send(false, File, log_line, 40).send(true, File, log_line, 90)),
        (
            "diagnostics-revoked",
            granted(Diagnostics)
                .send(true, Diag, b"uptime", 0)
                .send(false, Diag, b"up 3 days, load average: 0.1 0.2 0.3 ", 4)
                .revoke(Diagnostics)
                .exchange()
                .send(true, Diag, b"df -h", 0),
        ),
        (
            "console-denied",
            joined().request(RemoteConsole).exchange().deny(RemoteConsole).exchange().send(true, Console, b"ls", 0),
        ),
        ("max-payload", granted(FileTransfer).send(false, File, &[0x5A; 255], 70)),
        (
            "rekeys",
            (0..10)
                .fold(joined(), |p, i| p.send(true, Chat, &[b'a' + i; 3], 0).exchange())
                .send(false, Chat, b"member side", 0)
                .exchange(),
        ),
        (
            "member-rekey-request",
            (0..10).fold(joined(), |p, i| p.send(false, Chat, &[b'0' + i; 5], 0)).exchange().send(false, Chat, b"x", 0),
        ),
        (
            "keepalive-then-idle",
            joined().wait(15).exchange().wait(15).exchange().wait(15).wait(15).wait(15).wait(15).wait(15).exchange(),
        ),
        (
            // The leader removes the member, whose app rejoins; old frames are replayed.
            "member-rejoins",
            joined()
                .send(false, Chat, b"before", 0)
                .remove()
                .exchange()
                .restart_member()
                .exchange()
                .replay(8)
                .send(true, Chat, b"welcome back", 0)
                .replay(0),
        ),
        (
            "clock-steps-back-then-ends",
            joined().wait(15).clock(0).exchange().send(true, Chat, b"t", 0).clock(u64::MAX).exchange(),
        ),
        ("leader-closes", joined().send(true, Chat, b"bye", 0).close(true).exchange()),
        ("customer-closes", granted(ViewScreen).close(false).exchange().send(true, Chat, b"?", 0)),
        ("remove-member", joined().remove().exchange().send(true, Chat, b"still there?", 0).disconnected(true, 1)),
        // The join sends 8 frames (0..=7); the chat is frame 8.
        (
            "replay-and-tamper",
            joined()
                .send(true, Chat, b"once", 0)
                .replay(8)
                .replay(3)
                .tamper(8, 30, 0x01)
                .tamper(8, 50, 0x80)
                .tamper(8, 13, 0xFF)
                .tamper(5, 300, 0x01),
        ),
        (
            "lost-then-late",
            joined()
                .send(true, Chat, b"before", 0)
                .request(ViewScreen)
                .lose(true)
                .exchange()
                .grant(ViewScreen)
                .replay(255)
                .exchange(),
        ),
        ("raw-frames", session.iter().take(6).fold(Program::default(), |p, f| p.raw_frame(f[12] != 0, f)).exchange()),
    ];
    for (name, program) in programs {
        seeds.write(name, &program.0);
    }
    seeds.done();
}

fn main() {
    let root = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/seeds".into()));
    let session = full_session();
    let join_3072 = join_3072();
    let rejected = rejected_join();
    frame_seeds(&root, &session, &join_3072, &rejected);
    control_seeds(&root);
    relay_seeds(&root);
    app_seeds(&root);
    decompress_seeds(&root);
    session_seeds(&root, &session);
}
