//! Application-message parsing (file transfer, diagnostics, console payloads) on arbitrary
//! bytes. The first byte picks the content type; the rest is the payload.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::app::console::ConsoleRepr;
use lifeline_core::app::diagnostics::DiagnosticsRepr;
use lifeline_core::app::file::FileRepr;
use lifeline_core::wire::MAX_PAYLOAD_LEN;

fuzz_target!(|data: &[u8]| {
    let Some((&which, payload)) = data.split_first() else { return };
    let mut out = [0u8; MAX_PAYLOAD_LEN + 64];
    // parse(emit(m)) == m for every message that parses; emitting never needs more than the
    // input's length (no field grows on the way back).
    match which % 3 {
        0 => {
            if let Some(message) = FileRepr::parse(payload) {
                let len = message.emit(&mut out).expect("parsed messages emit");
                assert!(len <= payload.len());
                assert_eq!(FileRepr::parse(&out[..len]), Some(message));
            }
        }
        1 => {
            if let Some(message) = DiagnosticsRepr::parse(payload) {
                let len = message.emit(&mut out).expect("parsed messages emit");
                assert_eq!(DiagnosticsRepr::parse(&out[..len]), Some(message));
                if let DiagnosticsRepr::Report { records, .. } = message {
                    for (key, value) in records.iter() {
                        assert!(!key.is_empty() && value.len() <= 4096);
                    }
                }
            }
        }
        _ => {
            if let Some(message) = ConsoleRepr::parse(payload) {
                let len = message.emit(&mut out).expect("parsed messages emit");
                assert_eq!(ConsoleRepr::parse(&out[..len]), Some(message));
                if let ConsoleRepr::Commands { names, .. } = message {
                    assert_eq!(names.iter().count(), names.len());
                }
            }
        }
    }
});
