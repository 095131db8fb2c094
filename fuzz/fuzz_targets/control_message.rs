//! Session-control parsing (the plaintext inside protected frames) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::wire::control::ControlRepr;

fuzz_target!(|data: &[u8]| {
    let Some((&message_type, payload)) = data.split_first() else { return };
    if let Some(message) = ControlRepr::parse(message_type, payload) {
        let mut out = [0u8; 128];
        let len = message.emit_payload(&mut out).expect("parsed messages fit");
        assert_eq!(&out[..len], payload, "emit(parse(x)) == x");
        assert_eq!(message.message_type(), message_type);
    }
});
