//! Input event parsing (lifeline-screen, the payload of `ContentType::Input`) on arbitrary bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_screen::input::InputEvent;

fuzz_target!(|data: &[u8]| {
    if let Some(event) = InputEvent::parse(data) {
        // emit(parse(x)) == x and parse(emit(e)) == e.
        let (out, len) = event.to_bytes().expect("parsed events emit");
        assert_eq!(&out[..len], data, "emit(parse(x)) == x");
        assert_eq!(InputEvent::parse(&out[..len]), Some(event));
    }
});
