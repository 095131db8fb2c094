//! On-target benchmarks (feature `bench`, console line `bench`): a 2048-bit and a 3072-bit SRP-6a
//! join between two engines in memory (leader and member, both sides' work, no network) and sealing/opening
//! 1 KiB frames. Run under QEMU with `-icount shift=0`, where virtual time advances exactly 1 ns
//! per instruction, so the elapsed virtual time *is* an instruction count
//! (`scripts/bench-firmware.sh`).

use lifeline_core::crypto::srp::Group;
use lifeline_core::session::{Config, Pin, Session};
use lifeline_core::time::Instant;
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::handshake::Role;
use lifeline_core::wire::{Destination, MAX_PAYLOAD_LEN, MemberId};
use lifeline_transport_embassy::Drbg;
use static_cell::StaticCell;

use crate::{board, say};

type BenchSession = Session<Drbg, 2>;

struct Scratch {
    frame: [u8; 20 * 1024],
    data: [u8; MAX_PAYLOAD_LEN],
}

fn now() -> Instant {
    Instant::from_micros(embassy_time::Instant::now().as_micros())
}

/// Virtual nanoseconds since boot (= instructions under `-icount shift=0`), to the millisecond.
fn virtual_ns() -> u64 {
    embassy_time::Instant::now().as_micros() * 1000
}

/// Moves every frame each side has to the other until neither sends anything.
fn pump(a: &mut BenchSession, b: &mut BenchSession, scratch: &mut Scratch) {
    while deliver(a, b, scratch) | deliver(b, a, scratch) {}
}

/// Hands everything `from` has to send to `to`; whether anything moved.
fn deliver(from: &mut BenchSession, to: &mut BenchSession, scratch: &mut Scratch) -> bool {
    let mut moved = false;
    while let Ok(Some(transmit)) = from.poll_transmit(now(), &mut scratch.frame) {
        let _ = to.handle_frame(now(), &mut scratch.frame[..transmit.len], &mut scratch.data);
        moved = true;
    }
    while from.poll_event().is_some() {}
    moved
}

/// Runs the benchmarks and prints `@bench ...` lines.
pub fn run(rng: &mut Drbg) {
    static SCRATCH: StaticCell<Scratch> = StaticCell::new();
    static LEADER: StaticCell<BenchSession> = StaticCell::new();
    static MEMBER: StaticCell<BenchSession> = StaticCell::new();
    let Some(scratch) = SCRATCH.try_init_with(|| Scratch { frame: [0; 20 * 1024], data: [0; MAX_PAYLOAD_LEN] }) else {
        say!("@error bench runs once per boot");
        return;
    };
    let pin = Pin::generate(rng);
    let started = virtual_ns();
    let leader = LEADER.init_with(|| {
        Session::new_leader(Config::new(1, MemberId::LEADER, Role::Provider, "bench"), &pin, rng.fork(), now())
    });
    let verifier = virtual_ns() - started;
    let started = virtual_ns();
    let member = MEMBER.init_with(|| {
        Session::new_member(Config::new(1, MemberId(1), Role::Customer, "bench"), pin.as_str(), rng.fork(), now())
    });
    pump(member, leader, scratch);
    let join = virtual_ns() - started;
    if !member.is_established() {
        say!("@error bench: the join did not complete");
        return;
    }
    say!("@bench srp2048_verifier_ns={verifier}");
    say!("@bench srp2048_join_both_sides_ns={join}");
    join_3072(rng, scratch);

    // Whole loops are timed (the clock resolves 1 ms = 10^6 instructions): seal alone, then
    // seal + open; open = the difference.
    const FRAMES: u64 = 2000;
    let payload = [0x5Au8; 1024];
    let started = virtual_ns();
    for _ in 0..FRAMES {
        if member.send(now(), Destination::AllMembers, ContentType::Chat, &payload, &mut scratch.frame).is_err() {
            say!("@error bench: send failed");
            return;
        }
    }
    let seal = virtual_ns() - started;
    let mut delivered = 0u64;
    let started = virtual_ns();
    for _ in 0..FRAMES {
        let Ok(len) = member.send(now(), Destination::AllMembers, ContentType::Chat, &payload, &mut scratch.frame)
        else {
            say!("@error bench: send failed");
            return;
        };
        if let Ok(Some(_)) = leader.handle_frame(now(), &mut scratch.frame[..len], &mut scratch.data) {
            delivered += 1;
        }
    }
    let both = virtual_ns() - started;
    say!(
        "@bench seal_1kib_ns={} open_1kib_ns={} frames={FRAMES} delivered={delivered}",
        seal / FRAMES,
        both.saturating_sub(seal) / FRAMES
    );
    say!("@bench stack_peak={}", board::stack_used());
}

/// A join whose leader chose the 3072-bit group (members accept it): verifier, then both sides.
fn join_3072(rng: &mut Drbg, scratch: &mut Scratch) {
    static LEADER: StaticCell<BenchSession> = StaticCell::new();
    static MEMBER: StaticCell<BenchSession> = StaticCell::new();
    let pin = Pin::generate(rng);
    let started = virtual_ns();
    let leader = LEADER.init_with(|| {
        let mut config = Config::new(2, MemberId::LEADER, Role::Provider, "bench");
        config.group = Group::Rfc5054_3072;
        Session::new_leader(config, &pin, rng.fork(), now())
    });
    let verifier = virtual_ns() - started;
    let started = virtual_ns();
    let member = MEMBER.init_with(|| {
        Session::new_member(Config::new(2, MemberId(1), Role::Customer, "bench"), pin.as_str(), rng.fork(), now())
    });
    pump(member, leader, scratch);
    let join = virtual_ns() - started;
    if !member.is_established() {
        say!("@error bench: the 3072-bit join did not complete");
        return;
    }
    say!("@bench srp3072_verifier_ns={verifier}");
    say!("@bench srp3072_join_both_sides_ns={join}");
}
