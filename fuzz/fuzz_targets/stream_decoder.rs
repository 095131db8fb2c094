//! The stream decoder on arbitrary bytes in arbitrary chunks: never panics, frames come out
//! whole and the same whatever the split.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::wire::{RoutingHeader, StreamDecoder};

fn decode(data: &[u8], chunk: usize) -> (Vec<Vec<u8>>, bool) {
    let mut decoder: StreamDecoder = StreamDecoder::new();
    let mut frames = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        let mut piece = piece;
        while !piece.is_empty() {
            let taken = decoder.push(piece);
            piece = &piece[taken..];
            loop {
                match decoder.next_frame() {
                    Ok(Some(frame)) => {
                        let header = RoutingHeader::parse(frame).expect("decoder yields valid headers");
                        assert_eq!(header.frame_len(), frame.len());
                        frames.push(frame.to_vec());
                    }
                    Ok(None) => break,
                    Err(_) => return (frames, true),
                }
            }
        }
    }
    (frames, false)
}

fuzz_target!(|input: (u8, &[u8])| {
    let (chunk, data) = input;
    let whole = decode(data, data.len());
    let split = decode(data, usize::from(chunk));
    assert_eq!(whole, split, "split points changed the frames");
});
