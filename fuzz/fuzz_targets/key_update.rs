//! Unwrapping a KeyUpdate body: arbitrary bytes never unwrap, and never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::crypto::group::KeyWrapKey;
use lifeline_core::wire::MemberId;

fuzz_target!(|data: &[u8]| {
    let kek = KeyWrapKey::derive(&[7; 20], &[9; 16], 42, MemberId(1));
    assert!(kek.unwrap_epoch(data, MemberId(1)).is_none(), "a forged key update unwrapped");
});
