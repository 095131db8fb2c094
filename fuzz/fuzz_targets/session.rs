//! Drives a real leader (provider) and a real member (customer) with arbitrary inputs: frames
//! (arbitrary, real ones with a byte changed, real ones replayed late or twice), local commands
//! and time. Checked after every step:
//! - the engine never panics;
//! - a real frame with a byte changed never delivers data (every byte of a protected frame is
//!   under its HMAC; handshake and key-update frames never deliver data);
//! - no frame delivers data twice to the same endpoint (replay windows);
//! - data that arrives is exactly what was sent, from the endpoint that sent it;
//! - the customer never delivers content its consent does not allow, and nothing but its own
//!   `grant` calls ever adds to what it has granted.
//!
//! The input is a little program. Each op byte: low nibble = operation, bits 4..=6 = an argument
//! (`arg`), bit 7 = the endpoint it applies to (set: the leader), then the operation's own bytes:
//!
//! | op | bytes after it        | what                                                          |
//! |----|-----------------------|---------------------------------------------------------------|
//! | 0  | -                     | exchange honest traffic both ways (4 rounds; one op completes a join) |
//! | 1  | -                     | the member's app restarts: a new member session, same id and PIN, joins on the next exchange (the old one's frames stay for replays) |
//! | 2  | len u16 BE, bytes     | an arbitrary frame to the endpoint                            |
//! | 3  | pick, at u16 BE, xor  | a sent frame with one byte changed, to both endpoints          |
//! | 4  | -                     | leader requests `Capability::ALL[arg % 6]`                    |
//! | 5  | -                     | member grants `Capability::ALL[arg % 6]`                      |
//! | 6  | -                     | member revokes (bit 7 clear) or denies (bit 7 set) it         |
//! | 7  | len, repeat, bytes    | endpoint sends content type `arg` (0, 7: chat) of `bytes` repeated `repeat + 1` times; the frame goes to the other endpoint |
//! | 8  | -                     | time passes: `op >> 4` × 700 ms, then both handle the timeout |
//! | 9  | -                     | endpoint closes                                               |
//! | 10 | -                     | endpoint hears from the relay that `MemberId(arg)` disconnected |
//! | 11 | -                     | leader removes the member                                     |
//! | 12 | pick                  | a sent frame replayed unchanged to both endpoints             |
//! | 13 | -                     | member takes back control                                     |
//! | 14 | -                     | endpoint's next frame is sent but lost (kept for ops 3 and 12: late delivery) |
//! | 15 | instant u64 BE        | the clock jumps (backwards, or to the end of time), then both handle the timeout |
//!
//! `core/examples/fuzz_seeds.rs` writes seed programs; keep it in step with this table.
//!
//! To see what a program reaches, run inputs with `LIFELINE_FUZZ_TRACE=1` set (for example
//! `cargo fuzz run -O -a session seeds/session -- -runs=0`): each prints the endpoints' state.
#![no_main]
use std::collections::HashSet;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use lifeline_core::consent::{Capability, CapabilitySet};
use lifeline_core::session::{Config, Delivery, Pin, Session};
use lifeline_core::time::{Duration, Instant};
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::handshake::Role;
use lifeline_core::wire::{Destination, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, MemberId};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type S = Session<ChaCha20Rng, 4>;

const MEMBER: MemberId = MemberId(1);
/// Low, so rekeys (KeyUpdate in an established session, the previous epoch's grace, replay
/// windows per epoch) happen within a short program.
const REKEY_AFTER_FRAMES: u64 = 8;

struct World {
    now: Instant,
    leader: S,
    member: S,
    out: Vec<u8>,
    buf: Vec<u8>,
    /// Every frame either endpoint sent, as sent.
    sent: Vec<Vec<u8>>,
    /// (delivered to the leader, frame) for every frame that delivered data.
    delivered: HashSet<(bool, Vec<u8>)>,
    /// What the member's user granted and has not taken back.
    granted: CapabilitySet,
    /// Whether the member was ever established (for the trace).
    joined: bool,
    pin: Pin,
    restarts: u64,
}

impl World {
    fn new() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let pin = Pin::generate(&mut rng);
        let now = Instant::from_secs(1);
        let mut leader_config = Config::new(99, MemberId::LEADER, Role::Provider, "p");
        leader_config.rekey_after_frames = REKEY_AFTER_FRAMES;
        World {
            now,
            leader: Session::new_leader(leader_config, &pin, rng, now),
            member: Self::new_member(&pin, 0, now),
            out: vec![0u8; MAX_PAYLOAD_LEN],
            buf: vec![0u8; MAX_FRAME_LEN],
            sent: Vec::new(),
            delivered: HashSet::new(),
            granted: CapabilitySet::EMPTY,
            joined: false,
            pin,
            restarts: 0,
        }
    }

    fn new_member(pin: &Pin, restarts: u64, now: Instant) -> S {
        let mut config = Config::new(99, MEMBER, Role::Customer, "c");
        config.rekey_after_frames = REKEY_AFTER_FRAMES;
        Session::new_member(config, pin.as_str(), ChaCha20Rng::seed_from_u64(8 + restarts), now)
    }

    /// The member's app starts over: a new session object with the same id and PIN. What the old
    /// one delivered stays in `delivered`: it never had the keys the new one gets (the leader
    /// rekeys when the old one leaves and when the new one joins), so a frame delivered to both
    /// would be a replay across the restart.
    fn restart_member(&mut self) {
        self.restarts += 1;
        self.member = Self::new_member(&self.pin, self.restarts, self.now);
        self.granted = CapabilitySet::EMPTY;
    }

    fn endpoint(&mut self, leader: bool) -> &mut S {
        if leader { &mut self.leader } else { &mut self.member }
    }

    /// Hands a copy of `frame` to one endpoint and checks what it delivers.
    fn deliver(&mut self, to_leader: bool, frame: &[u8]) -> Option<Delivery> {
        let mut copy = frame.to_vec();
        let now = self.now;
        let target = if to_leader { &mut self.leader } else { &mut self.member };
        let Ok(Some(delivery)) = target.handle_frame(now, &mut copy, &mut self.out) else {
            return None;
        };
        assert!(delivery.len <= MAX_PAYLOAD_LEN);
        assert!(self.delivered.insert((to_leader, frame.to_vec())), "a frame delivered data twice");
        if !to_leader && let Some(capability) = delivery.content.required_capability() {
            assert!(
                self.member.consent().allows(capability),
                "the customer delivered {capability:?} data it does not allow"
            );
        }
        Some(delivery)
    }

    /// The next frame `from` has to send, recorded.
    fn transmit(&mut self, from_leader: bool) -> Option<Vec<u8>> {
        let now = self.now;
        let source = if from_leader { &mut self.leader } else { &mut self.member };
        let transmit = source.poll_transmit(now, &mut self.buf).expect("a MAX_FRAME_LEN buffer always fits")?;
        let frame = self.buf[..transmit.len].to_vec();
        self.sent.push(frame.clone());
        Some(frame)
    }

    fn exchange(&mut self) {
        for _ in 0..4 {
            for from_leader in [true, false] {
                while let Some(frame) = self.transmit(from_leader) {
                    let _ = self.deliver(!from_leader, &frame);
                }
            }
        }
    }

    fn pick(&self, byte: u8) -> Option<Vec<u8>> {
        (!self.sent.is_empty()).then(|| self.sent[usize::from(byte) % self.sent.len()].clone())
    }

    fn check(&mut self) {
        self.joined |= self.member.is_established();
        while self.leader.poll_event().is_some() {}
        while self.member.poll_event().is_some() {}
        let _ = self.leader.poll_timeout();
        let _ = self.member.poll_timeout();
        let granted = self.member.consent().granted();
        assert_eq!(granted.bits() & !self.granted.bits(), 0, "granted {granted:?} without the user");
        assert!(self.leader.consent().granted().is_empty(), "a provider never holds grants");
    }
}

/// Takes `n` bytes from the front of `input` (fewer if it is shorter).
fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = input.split_at(n.min(input.len()));
    *input = rest;
    head
}

fn byte(input: &mut &[u8]) -> Option<u8> {
    take(input, 1).first().copied()
}

fn u16_be(input: &mut &[u8]) -> Option<u16> {
    let bytes = take(input, 2);
    (bytes.len() == 2).then(|| u16::from_be_bytes([bytes[0], bytes[1]]))
}

fuzz_target!(|data: &[u8]| {
    let mut world = World::new();
    let mut input = data;
    while let Some(op) = byte(&mut input) {
        let leader = op & 0x80 != 0;
        let arg = (op >> 4) & 0x07;
        let capability = Capability::ALL[usize::from(arg) % Capability::ALL.len()];
        match op & 0x0F {
            0 => world.exchange(),
            1 => world.restart_member(),
            2 => {
                let Some(len) = u16_be(&mut input) else { break };
                let frame = take(&mut input, usize::from(len)).to_vec();
                let _ = world.deliver(leader, &frame);
            }
            3 => {
                let (Some(pick), Some(at), Some(xor)) = (byte(&mut input), u16_be(&mut input), byte(&mut input)) else {
                    break;
                };
                let Some(mut frame) = world.pick(pick) else { continue };
                if xor == 0 {
                    continue;
                }
                let index = usize::from(at) % frame.len();
                frame[index] ^= xor;
                for to_leader in [true, false] {
                    // Every byte is under the HMAC (protected frames) or the frame never
                    // delivers data (handshake, key update): no change can make it deliver.
                    assert!(world.deliver(to_leader, &frame).is_none(), "a modified frame delivered data");
                }
            }
            4 => {
                let _ = world.leader.request(MEMBER, capability);
            }
            5 => {
                let granted = world.member.grant(capability).is_ok();
                if granted {
                    world.granted = world.granted.with(capability);
                }
            }
            6 => {
                if leader {
                    let _ = world.member.deny(capability);
                } else if world.member.revoke(capability).is_ok() {
                    world.granted = world.granted.without(capability);
                }
            }
            7 => {
                let content = ContentType::from_byte(arg).unwrap_or(ContentType::Chat);
                let (Some(len), Some(repeat)) = (byte(&mut input), byte(&mut input)) else { break };
                let chunk = take(&mut input, usize::from(len));
                let mut payload = chunk.repeat(usize::from(repeat) + 1);
                payload.truncate(MAX_PAYLOAD_LEN);
                let to = if leader { Destination::Member(MEMBER) } else { Destination::AllMembers };
                let now = world.now;
                let World { leader: l, member: m, buf, .. } = &mut world;
                let sender = if leader { l } else { m };
                let Ok(len) = sender.send(now, to, content, &payload, buf) else { continue };
                let frame = world.buf[..len].to_vec();
                world.sent.push(frame.clone());
                if let Some(delivery) = world.deliver(!leader, &frame) {
                    let from = if leader { MemberId::LEADER } else { MEMBER };
                    assert_eq!((delivery.from, delivery.content), (from, content), "delivered as sent");
                    assert!(world.out[..delivery.len] == payload[..], "payload delivered as sent");
                }
            }
            8 => {
                world.now = world.now + Duration::from_millis(u64::from(op >> 4) * 700);
                let now = world.now;
                world.leader.handle_timeout(now);
                world.member.handle_timeout(now);
            }
            9 => {
                let now = world.now;
                world.endpoint(leader).close(now);
            }
            10 => {
                let now = world.now;
                world.endpoint(leader).handle_peer_disconnected(now, MemberId(arg));
            }
            11 => {
                let now = world.now;
                let _ = world.leader.remove_member(now, MEMBER);
            }
            12 => {
                let Some(pick) = byte(&mut input) else { break };
                if let Some(frame) = world.pick(pick) {
                    for to_leader in [true, false] {
                        let _ = world.deliver(to_leader, &frame);
                    }
                }
            }
            13 => {
                let taken_back = world.member.take_back_control().is_ok();
                if taken_back {
                    world.granted = world.granted.without(Capability::RemoteControl);
                }
            }
            14 => {
                let _ = world.transmit(leader);
            }
            15 => {
                // The time is an input like any other: a clock may step back or be nonsense.
                let bytes = take(&mut input, 8);
                let Ok(micros) = <[u8; 8]>::try_from(bytes) else { break };
                world.now = Instant::from_micros(u64::from_be_bytes(micros));
                let now = world.now;
                world.leader.handle_timeout(now);
                world.member.handle_timeout(now);
            }
            _ => {}
        }
        world.check();
    }
    static TRACE: OnceLock<bool> = OnceLock::new();
    if *TRACE.get_or_init(|| std::env::var_os("LIFELINE_FUZZ_TRACE").is_some()) {
        eprintln!(
            "session: {} bytes, {} frames sent, {} delivered; leader {:?} {:?}; member joined {} established {} {:?} {:?} {:?}",
            data.len(),
            world.sent.len(),
            world.delivered.len(),
            world.leader,
            world.leader.stats(),
            world.joined,
            world.member.is_established(),
            world.member.end(),
            world.member,
            world.member.consent(),
        );
    }
});
