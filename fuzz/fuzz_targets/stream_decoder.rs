//! The stream decoder on arbitrary bytes in arbitrary chunks: never panics, frames come out
//! whole, in order and the same whatever the split, and nothing but an incomplete frame is left.
//!
//! Input: chunk size (u16, little-endian), repeat count (u8), then the bytes. The stream is the
//! bytes repeated `repeat + 1` times (capped), so that streams longer than the decoder's buffer
//! (two maximum frames) are decoded and its compaction runs; libFuzzer's inputs are only 4 KiB.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::wire::{HEADER_LEN, MAX_FRAME_LEN, RoutingHeader, StreamDecoder};

/// Longest stream built: a few times the decoder's buffer.
const MAX_STREAM: usize = 6 * MAX_FRAME_LEN;

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
            // Every complete frame was taken out, so there is room for more: a decoder that
            // takes nothing here would make this loop spin for ever.
            assert!(taken > 0 || piece.is_empty(), "push took nothing with no frame buffered");
        }
    }
    (frames, false)
}

fuzz_target!(|input: (u16, u8, &[u8])| {
    let (chunk, repeat, data) = input;
    let mut stream = data.repeat(usize::from(repeat) + 1);
    stream.truncate(MAX_STREAM);
    let whole = decode(&stream, stream.len());
    let split = decode(&stream, usize::from(chunk));
    assert_eq!(whole, split, "split points changed the frames");
    // The frames are the stream's bytes, in order, from its start.
    let (frames, failed) = whole;
    let joined = frames.concat();
    assert!(stream.starts_with(&joined), "frames are not the stream's bytes in order");
    if !failed {
        // What is left is an incomplete frame: a partial header, or less than its header says.
        let rest = &stream[joined.len()..];
        if rest.len() >= HEADER_LEN {
            let header = RoutingHeader::parse(rest).expect("a bad header poisons the decoder");
            assert!(rest.len() < header.frame_len(), "a whole frame was left in the decoder");
        }
    }
});
