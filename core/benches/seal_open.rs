//! Packet-protection throughput: AES-128-CTR + HMAC-SHA1 (encrypt-then-MAC) on one frame.
//!
//! Payload sizes: 64 B (a keystroke or a chat line), 1400 B (one frame per Ethernet MTU) and
//! 16 KiB (the largest payload). Every group reports `Throughput::Bytes(payload)`: only the
//! payload counts, not the 34 bytes of header, epoch, sequence, content type, flags and tag that
//! are encrypted or authenticated alongside it, so the figures are a lower bound.
//!
//! - `seal/N`: [`EpochKeys::seal_in_place`] on a frame, a fresh sequence number every iteration.
//! - `open/N`: [`EpochKeys::open_in_place`] on a copy of one sealed frame (the copy is made
//!   outside the timed section by `iter_batched_ref`).
//! - `seal_open/N`: seal with a fresh sequence, then open the same buffer: one frame's full
//!   crypto on both ends (two CTR passes, two HMACs). This is the figure compared with
//!   `openssl speed` by `scripts/bench.sh`.
//! - `ctr/N` and `hmac/N`: the two halves of a seal on their own, over exactly the bytes a seal
//!   covers (CTR over the 2 + N inner plaintext bytes, HMAC-SHA1 over the 30 + N bytes before
//!   the tag), with the keys prepared once as `EpochKeys` does. For comparison with
//!   `openssl speed -evp aes-128-ctr` and `-hmac sha1` one by one.
//! - `engine_send_receive/N`: the same through the whole engine, `Session::send` on an
//!   established leader and `Session::handle_frame` on an established member (header
//!   parsing, epoch lookup, replay window, payload copies in and out). `ContentType::Chat` is
//!   never compressed, so this is still the crypto plus the engine's bookkeeping.
//! - `engine_file/16384`: the same for what a file transfer sends, `ContentType::File` with a
//!   random (incompressible) 16 KiB payload from the customer to the provider (granted first):
//!   the engine tries LZ4 on it, finds no gain and sends it as is. `lz4_incompressible/16384` is
//!   that compression attempt alone.
//!
//! Run: `cargo bench -p lifeline-core --bench seal_open` (or `bash scripts/bench.sh`, which
//! pins it to one core and runs `openssl speed` beside it).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput};
use lifeline_core::compress;
use lifeline_core::consent::Capability;
use lifeline_core::crypto::packet::{EpochKeys, EpochSecret, PLAINTEXT_OFFSET, SEQUENCE_HARD_LIMIT, counter_block};
use lifeline_core::crypto::primitives::{Aes128Ctr, HmacSha1Key, TAG_LEN};
use lifeline_core::session::{Config, Delivery, Pin, Session};
use lifeline_core::time::{Duration, Instant};
use lifeline_core::wire::control::ContentType;
use lifeline_core::wire::handshake::Role;
use lifeline_core::wire::{Destination, FrameKind, MAX_FRAME_LEN, MAX_PAYLOAD_LEN, MemberId, RoutingHeader};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

/// Payload sizes in bytes.
const SIZES: [usize; 3] = [64, 1400, 16 * 1024];

const SESSION: u64 = 123_456_789;

fn epoch_keys() -> EpochKeys {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut secret = EpochSecret { epoch: 1, encryption_key: [0; 16], mac_key: [0; 32] };
    rng.fill_bytes(&mut secret.encryption_key);
    rng.fill_bytes(&mut secret.mac_key);
    EpochKeys::new(secret)
}

fn header(payload_len: usize) -> RoutingHeader {
    RoutingHeader {
        kind: FrameKind::SecureData,
        body_len: u16::try_from(12 + 2 + payload_len + TAG_LEN).unwrap(),
        session: SESSION,
        sender: MemberId(1),
        destination: Destination::Member(MemberId::LEADER),
    }
}

/// An unsealed frame with content type Chat, no flags and a patterned payload in place.
fn plain_frame(header: &RoutingHeader, payload_len: usize) -> Vec<u8> {
    let mut frame = vec![0u8; header.frame_len()];
    frame[PLAINTEXT_OFFSET] = ContentType::Chat.to_byte();
    for (i, byte) in frame[PLAINTEXT_OFFSET + 2..][..payload_len].iter_mut().enumerate() {
        *byte = i as u8;
    }
    frame
}

/// Sequence numbers for the timed loops: fresh every iteration, never at the hard limit.
fn next_sequence(sequence: &mut u64) -> u64 {
    let current = *sequence;
    *sequence = (current + 1) % SEQUENCE_HARD_LIMIT;
    current
}

fn packet_layer(c: &mut Criterion) {
    let keys = epoch_keys();

    // Sanity check outside the timing: the frames the loops build do open.
    for &size in &SIZES {
        let header = header(size);
        let mut frame = plain_frame(&header, size);
        let expected = frame.clone();
        keys.seal_in_place(&header, 3, &mut frame);
        assert_ne!(frame[PLAINTEXT_OFFSET..], expected[PLAINTEXT_OFFSET..]);
        let (sequence, range) = keys.open_in_place(&mut frame).expect("sealed frame opens");
        assert_eq!(sequence, 3);
        assert_eq!(frame[range], expected[PLAINTEXT_OFFSET..expected.len() - TAG_LEN]);
    }

    let mut group = c.benchmark_group("seal");
    for &size in &SIZES {
        let header = header(size);
        let mut frame = plain_frame(&header, size);
        let mut sequence = 0;
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            // Each iteration encrypts whatever the buffer holds (the previous ciphertext): the
            // cost of CTR and HMAC does not depend on the bytes.
            b.iter(|| keys.seal_in_place(black_box(&header), next_sequence(&mut sequence), black_box(&mut frame)));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("open");
    for &size in &SIZES {
        let header = header(size);
        let mut sealed = plain_frame(&header, size);
        keys.seal_in_place(&header, 1, &mut sealed);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter_batched_ref(
                || sealed.clone(),
                |frame| keys.open_in_place(black_box(frame)).is_ok(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();

    // The halves of a seal, with the same keys, lengths and counter block as seal_in_place.
    let cipher = Aes128Ctr::new(&[0x42; 16]);
    let mac = HmacSha1Key::new(&[0x24; 32]);
    let mut group = c.benchmark_group("ctr");
    for &size in &SIZES {
        let header = header(size);
        let mut frame = plain_frame(&header, size);
        let tag_start = frame.len() - TAG_LEN;
        let counter = counter_block(1, header.sender, 5);
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| cipher.apply_keystream(black_box(&counter), black_box(&mut frame[PLAINTEXT_OFFSET..tag_start])));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("hmac");
    for &size in &SIZES {
        let header = header(size);
        let frame = plain_frame(&header, size);
        let tag_start = frame.len() - TAG_LEN;
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| mac.compute(&[black_box(&frame[..tag_start])]));
        });
    }
    group.finish();

    let mut group = c.benchmark_group("seal_open");
    for &size in &SIZES {
        let header = header(size);
        let mut frame = plain_frame(&header, size);
        let mut sequence = 0;
        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                keys.seal_in_place(black_box(&header), next_sequence(&mut sequence), black_box(&mut frame));
                // Opening decrypts in place, so the buffer holds the plaintext again for the
                // next seal. A failure would show as a `false` here; the check above rules it out.
                keys.open_in_place(black_box(&mut frame)).is_ok()
            });
        });
    }
    group.finish();
}

type BenchSession = Session<ChaCha20Rng, 8>;

/// A leader and one member (customer, id 1) that have completed the join, with nothing left to
/// send. Mirrors what `tests/common` does, without the simulation's relay.
fn established_pair() -> (BenchSession, BenchSession, Instant) {
    let mut now = Instant::from_secs(1_000);
    let mut leader_rng = ChaCha20Rng::seed_from_u64(1);
    let pin = Pin::generate(&mut leader_rng);
    let config = Config::new(SESSION, MemberId::LEADER, Role::Provider, "Bench leader");
    let mut leader = Session::new_leader(config, &pin, leader_rng, now);
    let config = Config::new(SESSION, MemberId(1), Role::Customer, "Bench member");
    let mut member = Session::new_member(config, pin.as_str(), ChaCha20Rng::seed_from_u64(2), now);

    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let mut out = vec![0u8; MAX_PAYLOAD_LEN];
    for _ in 0..100 {
        let mut moved = false;
        for leader_sends in [true, false] {
            let (from, to) = if leader_sends { (&mut leader, &mut member) } else { (&mut member, &mut leader) };
            while let Some(t) = from.poll_transmit(now, &mut buf).expect("max-size buffer") {
                moved = true;
                to.handle_frame(now, &mut buf[..t.len], &mut out).expect("join frames are accepted");
            }
            while from.poll_event().is_some() {}
        }
        if !moved && member.is_established() {
            return (leader, member, now);
        }
        now = now + Duration::from_millis(1);
    }
    panic!("the pair did not settle: {member:?}");
}

fn engine(c: &mut Criterion) {
    let (mut leader, mut member, now) = established_pair();
    let to_member = Destination::Member(MemberId(1));
    let mut wire = vec![0u8; MAX_FRAME_LEN];
    let mut out = vec![0u8; MAX_PAYLOAD_LEN];

    let mut group = c.benchmark_group("engine_send_receive");
    for &size in &SIZES {
        let payload: Vec<u8> = (0..size).map(|i| i as u8).collect();
        // Sanity check outside the timing.
        let len = leader.send(now, to_member, ContentType::Chat, &payload, &mut wire).expect("established");
        let delivery = member.handle_frame(now, &mut wire[..len], &mut out).expect("accepted");
        assert!(matches!(delivery, Some(Delivery { content: ContentType::Chat, len, .. }) if len == size));
        assert_eq!(out[..size], payload[..]);

        group.throughput(Throughput::Bytes(size as u64));
        group.bench_function(BenchmarkId::from_parameter(size), |b| {
            b.iter(|| {
                let len = leader.send(now, to_member, ContentType::Chat, black_box(&payload), &mut wire).unwrap();
                member.handle_frame(now, black_box(&mut wire[..len]), &mut out).unwrap()
            });
        });
    }
    group.finish();
    // Every frame was fresh and accepted (a refusal would have panicked in the loop).
    assert_eq!(member.stats().unauthentic + member.stats().replayed, 0);

    // A file chunk: random bytes, as most files that matter for throughput are (already
    // compressed archives, images, video). The customer sends it, so it grants file transfer.
    let size = MAX_PAYLOAD_LEN;
    let mut payload = vec![0u8; size];
    ChaCha20Rng::seed_from_u64(9).fill_bytes(&mut payload);
    let mut area = vec![0u8; compress::max_compressed_len(size)];
    let mut group = c.benchmark_group("lz4_incompressible");
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function(BenchmarkId::from_parameter(size), |b| {
        b.iter(|| compress::compress(black_box(&payload), black_box(&mut area)).map(|len| len >= size))
    });
    group.finish();

    leader.request(MemberId(1), Capability::FileTransfer).expect("provider asks");
    settle(&mut leader, &mut member, now);
    member.grant(Capability::FileTransfer).expect("a prompt is open");
    settle(&mut leader, &mut member, now);
    let to_leader = Destination::Member(MemberId::LEADER);
    let len = member.send(now, to_leader, ContentType::File, &payload, &mut wire).expect("granted");
    assert_eq!(len, size + 50, "random bytes are sent uncompressed");
    let delivery = leader.handle_frame(now, &mut wire[..len], &mut out).expect("accepted");
    assert!(matches!(delivery, Some(Delivery { content: ContentType::File, len, .. }) if len == size));
    assert_eq!(out[..size], payload[..]);
    let mut group = c.benchmark_group("engine_file");
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function(BenchmarkId::from_parameter(size), |b| {
        b.iter(|| {
            let len = member.send(now, to_leader, ContentType::File, black_box(&payload), &mut wire).unwrap();
            leader.handle_frame(now, black_box(&mut wire[..len]), &mut out).unwrap()
        });
    });
    group.finish();
    assert_eq!(leader.stats().unauthentic + leader.stats().replayed, 0);
}

/// Delivers every frame either side has queued, and drops the events, until both are quiet.
fn settle(leader: &mut BenchSession, member: &mut BenchSession, now: Instant) {
    let mut buf = vec![0u8; MAX_FRAME_LEN];
    let mut out = vec![0u8; MAX_PAYLOAD_LEN];
    for _ in 0..100 {
        let mut moved = false;
        for leader_sends in [true, false] {
            let (from, to) = if leader_sends { (&mut *leader, &mut *member) } else { (&mut *member, &mut *leader) };
            while let Some(t) = from.poll_transmit(now, &mut buf).expect("max-size buffer") {
                moved = true;
                to.handle_frame(now, &mut buf[..t.len], &mut out).expect("frames are accepted");
            }
            while from.poll_event().is_some() {}
        }
        if !moved {
            return;
        }
    }
    panic!("the pair did not settle");
}

// What `criterion_group!`/`criterion_main!` expand to, written out: the macro's public,
// undocumented `benches` function would trip the crate's `missing_docs` lint.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    packet_layer(&mut criterion);
    engine(&mut criterion);
    criterion.final_summary();
}
