//! The relay's routing-only parser and the checked frame view on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::wire::{Frame, HEADER_LEN, MAX_FRAME_LEN, RoutingHeader};

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = RoutingHeader::parse(data) {
        assert!(header.frame_len() <= MAX_FRAME_LEN);
        let mut again = [0u8; HEADER_LEN];
        header.emit(&mut again);
        assert_eq!(RoutingHeader::parse(&again), Ok(header), "parse/emit round trip");
    }
    if let Ok(frame) = Frame::new_checked(data) {
        assert_eq!(frame.as_bytes().len(), HEADER_LEN + frame.body().len());
    }
});
