//! A constrained endpoint's stream decoder (capacity of one frame of a 2 048-byte receive limit,
//! as the appliance transport uses) on arbitrary bytes in arbitrary chunks: never panics, never
//! spins; frames longer than its capacity are skipped, not buffered; the frames that come out
//! are whole, in order, the same whatever the split, and exactly the stream's frames that fit.
//!
//! Input: chunk size (u16, little-endian), repeat count (u8), then the bytes (repeated as in
//! `stream_decoder`, so that skipped frames span many pushes).
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::wire::{HEADER_LEN, MAX_FRAME_LEN, RoutingHeader, StreamDecoder, protected_frame_len};

const CAP: usize = protected_frame_len(2048);
const MAX_STREAM: usize = 6 * MAX_FRAME_LEN;

fn decode(data: &[u8], chunk: usize) -> (Vec<Vec<u8>>, u32, bool) {
    let mut decoder: StreamDecoder<CAP> = StreamDecoder::new();
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
                        assert!(frame.len() <= CAP, "a frame over the capacity came out");
                        frames.push(frame.to_vec());
                    }
                    Ok(None) => break,
                    Err(_) => return (frames, decoder.skipped(), true),
                }
            }
            assert!(taken > 0 || piece.is_empty(), "push took nothing with no frame buffered");
        }
    }
    (frames, decoder.skipped(), false)
}

/// The stream's frames by their headers: (fits, bytes) until a bad header or the end.
fn reference(stream: &[u8]) -> (Vec<Vec<u8>>, u32) {
    let (mut fitting, mut skipped, mut rest) = (Vec::new(), 0, stream);
    while rest.len() >= HEADER_LEN {
        let Ok(header) = RoutingHeader::parse(rest) else { break };
        let len = header.frame_len();
        if len > CAP {
            skipped += 1;
        } else if rest.len() >= len {
            fitting.push(rest[..len].to_vec());
        }
        if rest.len() < len {
            break;
        }
        rest = &rest[len..];
    }
    (fitting, skipped)
}

fuzz_target!(|input: (u16, u8, &[u8])| {
    let (chunk, repeat, data) = input;
    let mut stream = data.repeat(usize::from(repeat) + 1);
    stream.truncate(MAX_STREAM);
    let whole = decode(&stream, stream.len());
    let split = decode(&stream, usize::from(chunk));
    assert_eq!(whole, split, "split points changed the frames");
    let (frames, skipped, _) = whole;
    let (expected, expected_skipped) = reference(&stream);
    assert_eq!(frames, expected, "not the stream's fitting frames in order");
    assert_eq!(skipped, expected_skipped, "skipped count");
});
