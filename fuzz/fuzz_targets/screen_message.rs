//! Screen message parsing and update decoding (lifeline-screen) on arbitrary bytes: the parser
//! and the decoder must refuse, never panic, and never allocate past the decoder's limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_screen::codec::{Decoder, Limits};
use lifeline_screen::message::ScreenMessage;

fuzz_target!(|data: &[u8]| {
    let Some(message) = ScreenMessage::parse(data) else { return };
    // emit(parse(x)) == x: every field is read back exactly (no defaults, no normalising).
    let mut out = vec![0u8; data.len()];
    let len = message.emit(&mut out).expect("parsed messages emit");
    assert_eq!(&out[..len], data, "emit(parse(x)) == x");
    if let ScreenMessage::Update(update) = message {
        // Small limits keep each run fast; the bound itself is what is being checked.
        let mut decoder = Decoder::new(Limits { max_width: 512, max_height: 512 });
        if decoder.apply(&update).is_ok() {
            assert_eq!((decoder.frame().width(), decoder.frame().height()), (update.width, update.height));
        }
        assert!(decoder.frame().as_bytes().len() <= 512 * 512 * 4);
    }
});
