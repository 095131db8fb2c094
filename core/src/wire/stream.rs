//! Reassembles frames from a byte stream (TLS over TCP) whatever the split points.

use core::fmt;

use super::{HEADER_LEN, MAX_FRAME_LEN, MIN_RECEIVE_LIMIT, RoutingHeader, WireError, protected_frame_len};

/// Reassembles whole frames from arbitrary chunks of a byte stream, in a fixed buffer.
///
/// ```
/// use lifeline_core::wire::StreamDecoder;
/// # let received: &[u8] = &[];
/// let mut decoder: StreamDecoder = StreamDecoder::new();
/// let mut input = received;
/// while !input.is_empty() {
///     let taken = decoder.push(input);
///     input = &input[taken..];
///     while let Some(frame) = decoder.next_frame().expect("a bad header ends the connection") {
///         // hand `frame` (one whole frame, header included) to the session or router
///         let _ = frame;
///     }
/// }
/// ```
///
/// A header that fails [`RoutingHeader::parse`] poisons the decoder: framing is lost, so the
/// connection must be closed; every later call returns the same error. The buffer holds one
/// maximum-size frame plus the start of the next, `CAP` bytes in all.
///
/// A constrained endpoint (one that announces a receive limit, PROTOCOL.md 11.1) may use a `CAP`
/// below [`MAX_FRAME_LEN`], down to [`protected_frame_len`]`(`[`MIN_RECEIVE_LIMIT`]`)`: a frame
/// longer than `CAP` (a sender that did not know or honour the limit yet) is then **skipped**:
/// its bytes are discarded as they arrive, framing is kept, and [`skipped`](Self::skipped)
/// counts it.
#[derive(Clone)]
pub struct StreamDecoder<const CAP: usize = { MAX_FRAME_LEN * 2 }> {
    buf: [u8; CAP],
    start: usize,
    end: usize,
    /// Bytes at `start` handed out by the previous `next_frame`, released on the next call.
    lent: usize,
    /// Bytes of a frame longer than `CAP` still to discard.
    discard: usize,
    skipped: u32,
    poisoned: Option<WireError>,
}

impl<const CAP: usize> fmt::Debug for StreamDecoder<CAP> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamDecoder")
            .field("buffered", &self.buffered())
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

impl<const CAP: usize> Default for StreamDecoder<CAP> {
    fn default() -> Self {
        Self::new()
    }
}

/// The stream cannot be framed any more; close the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DecodeError(pub WireError);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stream framing lost: {}", self.0)
    }
}

impl core::error::Error for DecodeError {}

impl<const CAP: usize> StreamDecoder<CAP> {
    const CAPACITY_OK: () = assert!(
        CAP >= protected_frame_len(MIN_RECEIVE_LIMIT),
        "StreamDecoder needs room for a frame of the smallest receive limit"
    );

    /// An empty decoder.
    pub const fn new() -> Self {
        let () = Self::CAPACITY_OK;
        StreamDecoder { buf: [0; CAP], start: 0, end: 0, lent: 0, discard: 0, skipped: 0, poisoned: None }
    }

    /// Frames skipped because they were longer than `CAP` (never with a `CAP` of at least
    /// [`MAX_FRAME_LEN`]).
    pub const fn skipped(&self) -> u32 {
        self.skipped
    }

    /// Bytes buffered and not yet returned as frames.
    pub const fn buffered(&self) -> usize {
        self.end - self.start - self.lent
    }

    /// Copies as much of `data` as fits and returns how many bytes were taken. Call
    /// [`next_frame`](Self::next_frame) until it returns `None`, then push the rest.
    pub fn push(&mut self, data: &[u8]) -> usize {
        self.release();
        if self.discard > 0 {
            let dropped = self.discard.min(data.len());
            self.discard -= dropped;
            return dropped;
        }
        if CAP - self.end < data.len() && self.start > 0 {
            self.compact();
        }
        let room = CAP - self.end;
        let taken = room.min(data.len());
        self.buf[self.end..self.end + taken].copy_from_slice(&data[..taken]);
        self.end += taken;
        taken
    }

    /// The next whole frame, if one is buffered. The slice is valid until the next call on the
    /// decoder; it is mutable so the session can decrypt in place.
    pub fn next_frame(&mut self) -> Result<Option<&mut [u8]>, DecodeError> {
        self.release();
        if let Some(error) = self.poisoned {
            return Err(DecodeError(error));
        }
        let len = loop {
            let available = &self.buf[self.start..self.end];
            if available.len() < HEADER_LEN {
                return Ok(None);
            }
            let len = match RoutingHeader::parse(available) {
                Ok(header) => header.frame_len(),
                Err(error) => {
                    self.poisoned = Some(error);
                    return Err(DecodeError(error));
                }
            };
            if len <= CAP {
                if available.len() < len {
                    return Ok(None);
                }
                break len;
            }
            // Longer than this decoder takes: drop what is here, discard the rest as it comes.
            let here = available.len().min(len);
            self.start += here;
            self.discard = len - here;
            self.skipped = self.skipped.saturating_add(1);
            self.release();
            if self.discard > 0 {
                return Ok(None);
            }
        };
        let start = self.start;
        self.lent = len;
        Ok(Some(&mut self.buf[start..start + len]))
    }

    fn release(&mut self) {
        self.start += self.lent;
        self.lent = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::vec::Vec;

    use super::*;
    use crate::wire::{Destination, FrameKind, MAX_BODY_LEN, MemberId, emit_frame};
    use proptest::prelude::*;

    fn frame(body: &[u8], sender: u8) -> Vec<u8> {
        let mut out = std::vec![0u8; HEADER_LEN + body.len()];
        emit_frame(FrameKind::Handshake, 77, MemberId(sender), Destination::AllMembers, body, &mut out).unwrap();
        out
    }

    fn decode_all(stream: &[u8], chunks: &[usize]) -> Result<Vec<Vec<u8>>, DecodeError> {
        let mut decoder: StreamDecoder = StreamDecoder::new();
        let mut frames = Vec::new();
        let mut rest = stream;
        let mut chunk_sizes = chunks.iter().cycle();
        while !rest.is_empty() {
            let size = (*chunk_sizes.next().unwrap_or(&1)).clamp(1, rest.len());
            let mut piece = &rest[..size];
            rest = &rest[size..];
            while !piece.is_empty() {
                let taken = decoder.push(piece);
                piece = &piece[taken..];
                while let Some(frame) = decoder.next_frame()? {
                    frames.push(frame.to_vec());
                }
            }
        }
        Ok(frames)
    }

    #[test]
    fn frames_come_out_whole() {
        let a = frame(b"first", 1);
        let b = frame(&[7u8; 300], 2);
        let stream = [a.clone(), b.clone()].concat();
        assert_eq!(decode_all(&stream, &[1]).unwrap(), [a.clone(), b.clone()]);
        assert_eq!(decode_all(&stream, &[stream.len()]).unwrap(), [a, b]);
    }

    #[test]
    fn maximum_frames_back_to_back_fit() {
        let big = frame(&[9u8; MAX_BODY_LEN], 1);
        let stream = [big.clone(), big.clone(), big.clone()].concat();
        assert_eq!(decode_all(&stream, &[5000]).unwrap().len(), 3);
    }

    #[test]
    fn bad_header_poisons_the_stream() {
        let mut stream = frame(b"ok", 1);
        stream.extend_from_slice(&[9u8; 40]);
        let mut decoder: StreamDecoder = StreamDecoder::new();
        decoder.push(&stream);
        assert!(decoder.next_frame().unwrap().is_some());
        assert_eq!(decoder.next_frame().unwrap_err(), DecodeError(WireError::UnsupportedVersion));
        assert!(decoder.next_frame().is_err(), "stays poisoned");
    }

    #[test]
    fn oversized_length_is_refused_before_buffering() {
        let mut header = frame(b"", 1);
        header[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
        let mut decoder: StreamDecoder = StreamDecoder::new();
        decoder.push(&header);
        assert_eq!(decoder.next_frame().unwrap_err(), DecodeError(WireError::BadLength));
    }

    // ---- a constrained decoder (CAP below MAX_FRAME_LEN) ----

    const SMALL: usize = 1100;

    fn decode_small(stream: &[u8], chunk: usize) -> (Vec<Vec<u8>>, u32) {
        let mut decoder: StreamDecoder<SMALL> = StreamDecoder::new();
        let mut frames = Vec::new();
        for mut piece in stream.chunks(chunk) {
            while !piece.is_empty() {
                let taken = decoder.push(piece);
                piece = &piece[taken..];
                while let Some(frame) = decoder.next_frame().unwrap() {
                    frames.push(frame.to_vec());
                }
            }
        }
        (frames, decoder.skipped())
    }

    #[test]
    fn a_small_decoder_skips_frames_over_its_capacity_and_keeps_framing() {
        let small = frame(&[1u8; 100], 1);
        let fits = frame(&[2u8; SMALL - HEADER_LEN], 2);
        let big = frame(&[3u8; 5000], 3);
        let stream = [small.clone(), big.clone(), fits.clone(), big.clone(), big, small.clone()].concat();
        for chunk in [1, 7, 100, 1099, 1100, 4000, stream.len()] {
            let (frames, skipped) = decode_small(&stream, chunk);
            assert_eq!(frames, [small.clone(), fits.clone(), small.clone()], "chunk {chunk}");
            assert_eq!(skipped, 3, "chunk {chunk}");
        }
    }

    #[test]
    fn a_small_decoder_still_refuses_bad_headers() {
        let mut header = frame(b"", 1);
        header[2..4].copy_from_slice(&u16::MAX.to_be_bytes());
        let mut decoder: StreamDecoder<SMALL> = StreamDecoder::new();
        decoder.push(&header);
        assert_eq!(decoder.next_frame().unwrap_err(), DecodeError(WireError::BadLength));
    }

    proptest! {
        #[test]
        fn small_decoder_split_points_do_not_matter(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..3000), 1..8),
            chunk in 1usize..4000,
        ) {
            let frames: Vec<Vec<u8>> = bodies.iter().enumerate().map(|(i, b)| frame(b, i as u8)).collect();
            let expected: Vec<Vec<u8>> = frames.iter().filter(|f| f.len() <= SMALL).cloned().collect();
            let (decoded, skipped) = decode_small(&frames.concat(), chunk);
            prop_assert_eq!(skipped as usize, frames.len() - expected.len());
            prop_assert_eq!(decoded, expected);
        }

        #[test]
        fn split_points_do_not_matter(
            bodies in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..2000), 1..8),
            chunks in proptest::collection::vec(1usize..4000, 1..16),
        ) {
            let frames: Vec<Vec<u8>> = bodies.iter().enumerate().map(|(i, b)| frame(b, i as u8)).collect();
            let stream = frames.concat();
            prop_assert_eq!(decode_all(&stream, &chunks).unwrap(), frames);
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4000), chunk in 1usize..100) {
            let _ = decode_all(&bytes, &[chunk]);
        }
    }
}
