//! `docs/test-vectors.txt` must be exactly what the code generates, so an independent
//! implementation tested against it tests against this engine.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../examples/vectors.rs"]
mod vectors;

#[test]
fn docs_vectors_match_the_code() {
    let documented = include_str!("../../docs/test-vectors.txt");
    let generated = vectors::generate();
    assert!(
        documented == generated,
        "docs/test-vectors.txt is stale: run `cargo run -p lifeline-core --example vectors > docs/test-vectors.txt`"
    );
}
