//! Relay-message parsing (endpoint ↔ relay, the relay's only input besides routing headers) on
//! arbitrary bytes: never panics, and what parses writes back the same.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::wire::relay::RelayRepr;
use lifeline_core::wire::{Destination, Frame, FrameKind, HEADER_LEN, MemberId, RoutingHeader};

fuzz_target!(|body: &[u8]| {
    let Some(message) = RelayRepr::parse(body) else { return };
    let mut out = [0u8; 1024];
    let len = message.emit(&mut out).expect("parsed messages fit");
    assert_eq!(RelayRepr::parse(&out[..len]), Some(message), "parse(emit(m)) == m");
    // emit(parse(x)) == x for every message but `Refused`: its parser reads an unknown reason
    // byte as `RefusalReason::Other` on purpose (a newer relay's reason still refuses), and
    // `Other` is written as 0.
    if matches!(message, RelayRepr::Refused { .. }) {
        assert_eq!(len, body.len(), "Refused keeps its length");
    } else {
        assert_eq!(&out[..len], body, "emit(parse(x)) == x");
    }
    let mut frame = [0u8; 1024];
    let len = message.emit_frame(99, Destination::Member(MemberId(1)), &mut frame).expect("a 1 KiB buffer fits");
    let frame = Frame::new_checked(&frame[..len]).expect("emit_frame writes a valid frame");
    let header = RoutingHeader::parse_frame(&frame).expect("checked");
    assert_eq!((header.kind, header.sender), (FrameKind::Relay, MemberId::RELAY));
    assert_eq!(RelayRepr::parse(&frame.as_bytes()[HEADER_LEN..]), Some(message));
});
