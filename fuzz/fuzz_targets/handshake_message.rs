//! Join-message parsing on arbitrary bytes, with and without the leader's group.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::crypto::srp::Group;
use lifeline_core::wire::handshake::HandshakeRepr;

fuzz_target!(|data: &[u8]| {
    for group in [None, Some(Group::Rfc5054_2048), Some(Group::Rfc5054_3072)] {
        if let Some(message) = HandshakeRepr::parse(data, group) {
            let mut out = [0u8; 512];
            let len = message.emit(&mut out).expect("parsed messages fit");
            assert_eq!(&out[..len], data, "emit(parse(x)) == x");
        }
    }
});
