//! SRP-6a handshake cost, both sides, in one thread.
//!
//! - `srp2048/full_handshake_both_sides`: `ServerHandshake::new` (B = kv + g^b),
//!   `ClientHandshake::new` (A = g^a), `process_challenge` (client: x, u, S, K, M1),
//!   `verify_client` (server: S, K, check M1, M2) and `verify_server` (client: check M2), in the
//!   2048-bit RFC 5054 group, with fresh private exponents every iteration. The verifier is made
//!   once outside the loop, as the leader does once per session.
//! - `srp2048/verifier`: `Verifier::new` (v = g^x) on its own.
//! - `srp3072/full_handshake_both_sides`: the same in the 3072-bit group, for information.
//!
//! The private exponents come from a seeded ChaCha20 outside the timed section
//! (`iter_batched`); the exponentiations are constant time, so their values do not change the
//! timing anyway.
//!
//! Run: `cargo bench -p lifeline-core --bench handshake` (or `bash scripts/bench.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion};
use lifeline_core::crypto::srp::{ClientHandshake, Group, PRIVATE_LEN, ServerHandshake, Verifier};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

const IDENTITY: &[u8] = b"lifeline:123456789";
const PIN: &[u8] = b"24681357";
const SALT: [u8; 16] = [0x5a; 16];

/// One whole handshake, both sides; returns the agreed key's first byte so nothing is elided.
fn handshake(verifier: &Verifier, a: [u8; PRIVATE_LEN], b: [u8; PRIVATE_LEN]) -> u8 {
    let group = verifier.group();
    let server = ServerHandshake::new(verifier, b);
    let client = ClientHandshake::new(group, a);
    let client_session =
        client.process_challenge(IDENTITY, PIN, verifier.salt(), server.public_key()).expect("valid challenge");
    let server_session = server
        .verify_client(verifier, IDENTITY, client.public_key(), client_session.client_proof())
        .expect("M1 verifies");
    let key = client_session.verify_server(server_session.server_proof()).expect("M2 verifies");
    assert_eq!(key.as_bytes(), server_session.key());
    key.as_bytes()[0]
}

fn exponents(rng: &mut ChaCha20Rng) -> ([u8; PRIVATE_LEN], [u8; PRIVATE_LEN]) {
    let mut a = [0u8; PRIVATE_LEN];
    let mut b = [0u8; PRIVATE_LEN];
    rng.fill_bytes(&mut a);
    rng.fill_bytes(&mut b);
    (a, b)
}

fn srp(c: &mut Criterion) {
    for (name, group) in [("srp2048", Group::Rfc5054_2048), ("srp3072", Group::Rfc5054_3072)] {
        let verifier = Verifier::new(group, IDENTITY, PIN, SALT);
        let mut rng = ChaCha20Rng::seed_from_u64(42);
        let mut bench = c.benchmark_group(name);
        // A handshake takes milliseconds: fewer samples keep the run short and are plenty.
        bench.sample_size(30);
        bench.bench_function("full_handshake_both_sides", |b| {
            b.iter_batched(
                || exponents(&mut rng),
                |(a, b)| handshake(black_box(&verifier), a, b),
                BatchSize::SmallInput,
            );
        });
        if group == Group::Rfc5054_2048 {
            bench.bench_function("verifier", |b| {
                b.iter(|| Verifier::new(group, black_box(IDENTITY), black_box(PIN), black_box(SALT)));
            });
        }
        bench.finish();
    }
}

// What `criterion_group!`/`criterion_main!` expand to, written out: the macro's public,
// undocumented `benches` function would trip the crate's `missing_docs` lint.
fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    srp(&mut criterion);
    criterion.final_summary();
}
