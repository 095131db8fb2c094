//! Allocation-free LZ4 *block* compression, applied to payloads before they are
//! encrypted.
//!
//! # Format
//!
//! [`compress`] writes, and [`decompress`] reads, the standard
//! [LZ4 block format](https://github.com/lz4/lz4/blob/dev/doc/lz4_Block_format.md)
//! (raw blocks: no frame header, no checksum, no stored size). Any conforming
//! LZ4 block decoder can read what [`compress`] writes, and [`decompress`] reads
//! blocks written by any conforming encoder, which lets the tests check both
//! directions against an independent implementation. The encoder follows the
//! block end rules: the last 5 bytes are always literals, the last match starts
//! at least 12 bytes before the end, every match is at least 4 bytes long and
//! every offset is in `1..=65_535`. An empty input is encoded as the single
//! token byte `0x00`.
//!
//! The uncompressed length is not part of a block: the caller must carry it (or
//! an upper bound for it) and size the output buffer of [`decompress`]
//! accordingly.
//!
//! # Why our own
//!
//! The usual Rust codecs need a heap: `lz4_flex`'s encoder keeps its hash table
//! in a `Box`, and `miniz_oxide`'s deflate needs `alloc`. This crate is
//! `no_std`, allocation-free and free of `unsafe`, so the codec here is a small
//! greedy LZ4 encoder (in the spirit of the reference `LZ4_compress_fast`) and
//! a decoder that treats its input as hostile: every length and offset is
//! checked, no input makes it panic or loop, and its work is bounded by the
//! input and output lengths.
//!
//! # Stack budget
//!
//! [`compress`] keeps a hash table of 2048 `u16` positions (4 KiB) on the
//! stack, plus a few words of locals; that is why inputs are limited to
//! [`MAX_INPUT_LEN`] = 65 535 bytes (every position fits a `u16`, every offset
//! fits the format's 16-bit field). [`decompress`] uses no table: only a few
//! words of locals.

use core::fmt;

/// Largest input accepted (bytes); inputs above it are an error.
///
/// Positions in the encoder's hash table are `u16`, so every position and
/// every match offset of an accepted input fits in 16 bits.
pub const MAX_INPUT_LEN: usize = 65_535;

/// Shortest match the format can express.
const MIN_MATCH: usize = 4;
/// The last this many bytes of a block are always literals.
const LAST_LITERALS: usize = 5;
/// The last match starts at least this many bytes before the end of the input.
const MF_LIMIT: usize = 12;
/// Log2 of the number of hash-table entries.
const HASH_LOG: u32 = 11;
/// Number of hash-table entries: 2048 × `u16` = 4 KiB of stack.
const HASH_SIZE: usize = 1 << HASH_LOG;
/// After `1 << SKIP_TRIGGER` failed probes the search starts skipping ahead,
/// one more byte every `1 << SKIP_TRIGGER` probes (as the reference encoder
/// does), so incompressible input is scanned quickly.
const SKIP_TRIGGER: u32 = 6;
/// A length nibble of this value means "more length bytes follow".
const RUN_MASK: usize = 15;

/// Worst-case output length for [`compress`] of `input_len` bytes.
///
/// This is the LZ4 bound `n + n / 255 + 16` (saturating, so it never
/// overflows); [`compress`] requires an output buffer at least this long.
pub const fn max_compressed_len(input_len: usize) -> usize {
    input_len.saturating_add(input_len / 255).saturating_add(16)
}

/// Why [`compress`] refused its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CompressError {
    /// The input is longer than [`MAX_INPUT_LEN`].
    InputTooLarge,
    /// The output buffer is shorter than [`max_compressed_len`] of the input
    /// length; nothing was written.
    InsufficientSize {
        /// The output length needed: `max_compressed_len(input.len())`.
        required: usize,
    },
    /// [`compress_within`]: the block would be longer than the output buffer.
    DoesNotFit,
}

impl fmt::Display for CompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InputTooLarge => write!(f, "compression input longer than {MAX_INPUT_LEN} bytes"),
            Self::InsufficientSize { required } => {
                write!(f, "compression output buffer too small: {required} bytes required")
            }
            Self::DoesNotFit => f.write_str("the compressed block does not fit the output buffer"),
        }
    }
}

impl core::error::Error for CompressError {}

/// Why [`decompress`] rejected its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DecompressError {
    /// The input is not a well-formed LZ4 block: it is empty or truncated, a
    /// length runs past the end of the input, or a match offset is zero or
    /// points before the start of the output.
    Malformed,
    /// The block decodes to more bytes than the output buffer holds.
    OutputTooSmall,
}

impl fmt::Display for DecompressError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed => f.write_str("malformed LZ4 block"),
            Self::OutputTooSmall => f.write_str("LZ4 block decodes to more bytes than the output buffer holds"),
        }
    }
}

impl core::error::Error for DecompressError {}

// ---------------------------------------------------------------------------
// Encoder
// ---------------------------------------------------------------------------

/// Compresses `input` into `out` as one LZ4 block; returns the number of bytes
/// written to the front of `out`.
///
/// # Errors
///
/// - [`CompressError::InputTooLarge`] if `input` is longer than
///   [`MAX_INPUT_LEN`];
/// - [`CompressError::InsufficientSize`] if `out` is shorter than
///   [`max_compressed_len`]`(input.len())`.
///
/// In both cases `out` is left untouched.
pub fn compress(input: &[u8], out: &mut [u8]) -> Result<usize, CompressError> {
    let n = input.len();
    if n > MAX_INPUT_LEN {
        return Err(CompressError::InputTooLarge);
    }
    let required = max_compressed_len(n);
    if out.len() < required {
        return Err(CompressError::InsufficientSize { required });
    }
    let mut w = Writer { out, pos: 0, required };
    let anchor = if n > MF_LIMIT {
        compress_sequences(input, &mut w)?
    } else {
        // Too short for any match under the end rules: literals only.
        0
    };
    let tail = input.get(anchor..).ok_or(CompressError::InsufficientSize { required })?;
    w.last_literals(tail)?;
    Ok(w.pos)
}

/// Compresses `input` into `out` as one LZ4 block if the block fits `out`, whatever its
/// length; returns the number of bytes written to the front of `out`. For a sender that uses
/// the block only when it is shorter than the input: give it the room it would save
/// (`input.len() - 1` bytes) and it stops as soon as the block cannot be shorter.
///
/// # Errors
///
/// - [`CompressError::InputTooLarge`] if `input` is longer than [`MAX_INPUT_LEN`]
///   (`out` untouched);
/// - [`CompressError::DoesNotFit`] if the block is longer than `out`; the front of `out`
///   then holds part of a block and must not be used.
pub fn compress_within(input: &[u8], out: &mut [u8]) -> Result<usize, CompressError> {
    let n = input.len();
    if n > MAX_INPUT_LEN {
        return Err(CompressError::InputTooLarge);
    }
    let mut w = Writer { out, pos: 0, required: 0 };
    let anchor = if n > MF_LIMIT { compress_sequences(input, &mut w) } else { Ok(0) };
    let written = anchor.and_then(|anchor| {
        let tail = input.get(anchor..).ok_or(CompressError::DoesNotFit)?;
        w.last_literals(tail)
    });
    match written {
        Ok(()) => Ok(w.pos),
        Err(_) => Err(CompressError::DoesNotFit),
    }
}

/// Emits every sequence that ends in a match; returns the start of the final
/// literal run. Requires `input.len() > MF_LIMIT` (so the limits below do not
/// underflow) and `input.len() <= MAX_INPUT_LEN` (so positions fit `u16`).
fn compress_sequences(input: &[u8], w: &mut Writer<'_>) -> Result<usize, CompressError> {
    let n = input.len();
    // Last position where a match may start.
    let mf_limit = n - MF_LIMIT;
    // Matches end at or before this position: the last 5 bytes stay literals.
    let match_limit = n - LAST_LITERALS;

    // Stack budget: HASH_SIZE × u16 = 4 KiB. Entries start at 0, so every
    // slot initially names position 0; a stale or colliding candidate costs
    // one failed 4-byte comparison, never a wrong match.
    let mut table = [0u16; HASH_SIZE];
    let mut anchor = 0usize;
    let mut ip = 1usize;

    loop {
        // --- Find a match starting at or after `ip`. -----------------------
        let mut probes: u32 = 1 << SKIP_TRIGGER;
        let (mut m_start, mut cand) = loop {
            if ip > mf_limit {
                return Ok(anchor);
            }
            // ip <= n - 12, so ip + 4 <= n: the read always succeeds.
            let Some(seq) = read_u32(input, ip) else {
                return Ok(anchor);
            };
            let cand = match table.get_mut(hash(seq)) {
                // ip <= MAX_INPUT_LEN = u16::MAX: the cast is lossless.
                Some(slot) => usize::from(core::mem::replace(slot, ip as u16)),
                None => ip, // unreachable: hash() < HASH_SIZE
            };
            // cand < ip always holds (the table only holds earlier positions),
            // and then ip - cand <= MAX_INPUT_LEN is a valid offset.
            if cand < ip && read_u32(input, cand) == Some(seq) {
                break (ip, cand);
            }
            ip += (probes >> SKIP_TRIGGER) as usize;
            probes = probes.saturating_add(1);
        };

        // --- Extend backwards over pending literals. ----------------------
        while m_start > anchor && cand > 0 && input.get(m_start - 1) == input.get(cand - 1) {
            m_start -= 1;
            cand -= 1;
        }

        // --- Extend forwards up to the end limit. --------------------------
        // m_start + 4 <= (original ip) + 4 <= n - 8 < match_limit.
        let m_len = MIN_MATCH + common_prefix(input, cand + MIN_MATCH, m_start + MIN_MATCH, match_limit);

        let literals = input.get(anchor..m_start).ok_or(CompressError::InsufficientSize { required: w.required })?;
        w.sequence(literals, m_start - cand, m_len)?;

        ip = m_start + m_len;
        anchor = ip;
        if ip > mf_limit {
            return Ok(anchor);
        }
        // Remember a position inside the match just emitted; it often starts
        // the next one (as the reference encoder does).
        let p = ip - 2;
        if let Some(slot) = read_u32(input, p).and_then(|seq| table.get_mut(hash(seq))) {
            *slot = p as u16; // p < n <= MAX_INPUT_LEN = u16::MAX: lossless
        }
    }
}

/// Multiplicative hash of 4 bytes to `HASH_LOG` bits; always `< HASH_SIZE`.
#[inline(always)]
fn hash(seq: u32) -> usize {
    (seq.wrapping_mul(2_654_435_761) >> (32 - HASH_LOG)) as usize
}

#[inline(always)]
fn read_u32(s: &[u8], at: usize) -> Option<u32> {
    let b: [u8; 4] = s.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(u32::from_le_bytes(b))
}

#[inline(always)]
fn read_u64(s: &[u8], at: usize) -> Option<u64> {
    let b: [u8; 8] = s.get(at..at.checked_add(8)?)?.try_into().ok()?;
    Some(u64::from_le_bytes(b))
}

/// Number of equal bytes at `a..` and `b..`, with `a < b`, stopping at `limit`
/// (a position bound for `b`; `limit <= s.len()`).
#[inline(always)]
fn common_prefix(s: &[u8], mut a: usize, mut b: usize, limit: usize) -> usize {
    let start = b;
    while b + 8 <= limit {
        match (read_u64(s, a), read_u64(s, b)) {
            (Some(x), Some(y)) => {
                let diff = x ^ y;
                if diff != 0 {
                    return b - start + (diff.trailing_zeros() / 8) as usize;
                }
            }
            _ => return b - start,
        }
        a += 8;
        b += 8;
    }
    while b < limit {
        match (s.get(a), s.get(b)) {
            (Some(x), Some(y)) if x == y => {}
            _ => break,
        }
        a += 1;
        b += 1;
    }
    b - start
}

/// Output cursor. Every write is bounds-checked; since `out` holds at least
/// `max_compressed_len(n)` bytes, which bounds the encoder's output, the
/// checks never fail, but a failure would be an error rather than a panic.
struct Writer<'a> {
    out: &'a mut [u8],
    pos: usize,
    required: usize,
}

impl Writer<'_> {
    #[inline(always)]
    fn overflow(&self) -> CompressError {
        CompressError::InsufficientSize { required: self.required }
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) -> Result<(), CompressError> {
        let err = self.overflow();
        *self.out.get_mut(self.pos).ok_or(err)? = b;
        self.pos += 1;
        Ok(())
    }

    #[inline(always)]
    fn bytes(&mut self, s: &[u8]) -> Result<(), CompressError> {
        let err = self.overflow();
        // pos <= out.len() and s.len() <= isize::MAX: no overflow.
        let end = self.pos + s.len();
        self.out.get_mut(self.pos..end).ok_or(err)?.copy_from_slice(s);
        self.pos = end;
        Ok(())
    }

    /// Extra length bytes for a length field whose nibble was 15:
    /// `rest = length - 15` as a run of 255s and a final byte < 255.
    #[inline(always)]
    fn length_tail(&mut self, rest: usize) -> Result<(), CompressError> {
        let err = self.overflow();
        let full = rest / 255;
        let end = self.pos + full;
        self.out.get_mut(self.pos..end).ok_or(err)?.fill(255);
        self.pos = end;
        self.byte((rest % 255) as u8)
    }

    /// One sequence: token, literal run, offset, match length.
    #[inline(always)]
    fn sequence(&mut self, literals: &[u8], offset: usize, match_len: usize) -> Result<(), CompressError> {
        let lit = literals.len();
        let ml = match_len - MIN_MATCH;
        let token = ((lit.min(RUN_MASK) as u8) << 4) | ml.min(RUN_MASK) as u8;
        self.byte(token)?;
        if lit >= RUN_MASK {
            self.length_tail(lit - RUN_MASK)?;
        }
        self.bytes(literals)?;
        // 1 <= offset <= MAX_INPUT_LEN: fits the 16-bit little-endian field.
        self.bytes(&(offset as u16).to_le_bytes())?;
        if ml >= RUN_MASK {
            self.length_tail(ml - RUN_MASK)?;
        }
        Ok(())
    }

    /// The final sequence: token and literals, no match.
    fn last_literals(&mut self, literals: &[u8]) -> Result<(), CompressError> {
        let lit = literals.len();
        self.byte((lit.min(RUN_MASK) as u8) << 4)?;
        if lit >= RUN_MASK {
            self.length_tail(lit - RUN_MASK)?;
        }
        self.bytes(literals)
    }
}

// ---------------------------------------------------------------------------
// Decoder
// ---------------------------------------------------------------------------

/// Decompresses one LZ4 block from `input` into `out`; returns the number of
/// bytes written to the front of `out`.
///
/// `input` is treated as hostile. Decoding does work proportional to
/// `input.len() + out.len()` at most, and never writes past `out`.
///
/// # Errors
///
/// - [`DecompressError::Malformed`] if the block is empty or truncated, a
///   literal run or length field runs past the end of `input`, the block ends
///   right after a match (a block ends with a literal-only sequence), or a
///   match offset is zero or points before the start of the output;
/// - [`DecompressError::OutputTooSmall`] if the block decodes to more than
///   `out.len()` bytes.
///
/// Only `out[..n]` (for the returned `n`) is meaningful: the decoder may use
/// the rest of `out` as scratch space, and on error `out` holds partially
/// decoded data.
pub fn decompress(input: &[u8], out: &mut [u8]) -> Result<usize, DecompressError> {
    use DecompressError::{Malformed, OutputTooSmall};

    let mut ip = 0usize;
    let mut op = 0usize;
    loop {
        // Every iteration consumes at least the token byte: no infinite loop.
        let token = *input.get(ip).ok_or(Malformed)?;
        ip += 1;

        // --- Fast path: a short sequence far from both ends. ----------------
        // Both nibbles below 15 means at most 14 literals and a match of at
        // most 18 bytes. With 18 input bytes left (16 literal + 2 offset) and
        // 34 output bytes left (16 + 18), fixed-size copies replace the
        // length-dependent ones; they may write past the sequence's end, but
        // only into `out`, and those bytes are overwritten by what follows or
        // lie past the returned length.
        if token >> 4 < 15 && token & 0x0f < 15 && ip + 18 <= input.len() && op + 34 <= out.len() {
            let lit = usize::from(token >> 4);
            let src = input.get(ip..).and_then(|s| s.first_chunk::<16>());
            let dst = out.get_mut(op..).and_then(|d| d.first_chunk_mut::<16>());
            match (dst, src) {
                (Some(d), Some(s)) => *d = *s,
                _ => return Err(Malformed), // unreachable: bounds checked above
            }
            ip += lit;
            op += lit;
            // ip + 2 <= input.len() still (lit <= 14): the block goes on.
            let offset = match input.get(ip..ip + 2) {
                Some(&[lo, hi]) => usize::from(u16::from_le_bytes([lo, hi])),
                _ => return Err(Malformed),
            };
            ip += 2;
            if offset == 0 || offset > op {
                return Err(Malformed);
            }
            let m_len = usize::from(token & 0x0f) + MIN_MATCH;
            if offset >= 18 {
                // Source ends at or before `op`; op + 18 <= out.len().
                let (head, tail) = out.split_at_mut_checked(op).ok_or(OutputTooSmall)?;
                let s = head.get(op - offset..).and_then(|s| s.first_chunk::<18>());
                let d = tail.first_chunk_mut::<18>();
                match (d, s) {
                    (Some(d), Some(s)) => *d = *s,
                    _ => return Err(OutputTooSmall), // unreachable
                }
            } else {
                copy_match(out, op, offset, m_len).ok_or(OutputTooSmall)?;
            }
            op += m_len;
            continue;
        }

        // --- Literals. -----------------------------------------------------
        let mut lit = usize::from(token >> 4);
        if lit == RUN_MASK {
            // A literal run can never be longer than the input.
            lit = length_tail(input, &mut ip, lit, input.len(), Malformed)?;
        }
        // ip <= input.len() and lit <= input.len() + 255: no overflow.
        let src = input.get(ip..ip + lit).ok_or(Malformed)?;
        let dst = out.get_mut(op..op + lit).ok_or(OutputTooSmall)?;
        copy_exact(dst, src);
        ip += lit;
        op += lit;

        if ip == input.len() {
            // The literal-only last sequence.
            return Ok(op);
        }

        // --- Match. --------------------------------------------------------
        let off = input.get(ip..ip + 2).ok_or(Malformed)?;
        let offset = match off {
            [lo, hi] => usize::from(u16::from_le_bytes([*lo, *hi])),
            _ => return Err(Malformed),
        };
        ip += 2;
        if offset == 0 || offset > op {
            return Err(Malformed);
        }

        let mut m_len = usize::from(token & 0x0f);
        if m_len == RUN_MASK {
            // A match can never be longer than the output buffer.
            m_len = length_tail(input, &mut ip, m_len, out.len(), OutputTooSmall)?;
        }
        m_len += MIN_MATCH;
        if m_len > out.len() - op {
            return Err(OutputTooSmall);
        }
        copy_match(out, op, offset, m_len).ok_or(OutputTooSmall)?;
        op += m_len;
    }
}

/// Reads the extra length bytes after a nibble of 15: adds bytes while they
/// are 255, then the first byte below 255. Fails with `too_long` as soon as
/// the length exceeds `cap`, and with `Malformed` if the input ends first.
/// Each step consumes an input byte, so the work is bounded by the input.
#[inline(always)]
fn length_tail(
    input: &[u8],
    ip: &mut usize,
    mut len: usize,
    cap: usize,
    too_long: DecompressError,
) -> Result<usize, DecompressError> {
    loop {
        let b = *input.get(*ip).ok_or(DecompressError::Malformed)?;
        *ip += 1;
        // len <= cap + 255 here, and cap <= isize::MAX: no overflow.
        len += usize::from(b);
        if len > cap {
            return Err(too_long);
        }
        if b != 255 {
            return Ok(len);
        }
    }
}

/// Copies `len` bytes from `op - offset` to `op` within `out`, with the
/// semantics of a byte-by-byte forward copy (so `offset < len` repeats the
/// last `offset` bytes). The copied span doubles each round, so a long
/// overlapping match takes O(log len) block copies. Returns `None` (never, for
/// `1 <= offset <= op` and `op + len <= out.len()`) if a bound is violated.
#[inline(always)]
fn copy_match(out: &mut [u8], op: usize, offset: usize, len: usize) -> Option<()> {
    let src = op.checked_sub(offset)?;
    let end = op.checked_add(len)?;
    if offset == 1 {
        // A run of one byte.
        let b = *out.get(src)?;
        out.get_mut(op..end)?.fill(b);
        return Some(());
    }
    let mut dst = op;
    while dst < end {
        // dst - src is a multiple of `offset`, so out[src..] read with period
        // `dst - src` reproduces the byte-by-byte result. Source and
        // destination of each round do not overlap (k <= dst - src).
        let k = (dst - src).min(end - dst);
        let (head, tail) = out.split_at_mut_checked(dst)?;
        copy_exact(tail.get_mut(..k)?, head.get(src..src + k)?);
        dst += k;
    }
    Some(())
}

/// `dst.copy_from_slice(src)` for slices of equal length (does nothing if the
/// lengths differ, which no caller does), tuned for the short copies that
/// dominate LZ4 decoding: a length up to 32 is copied as two possibly
/// overlapping fixed-size windows instead of a `memcpy` call. Never writes
/// outside `dst`.
#[inline(always)]
fn copy_exact(dst: &mut [u8], src: &[u8]) {
    let len = src.len();
    if dst.len() != len {
        return;
    }
    if len > 32 {
        dst.copy_from_slice(src);
    } else if len >= 16 {
        copy_window::<16>(dst, src, 0);
        copy_window::<16>(dst, src, len - 16);
    } else if len >= 8 {
        copy_window::<8>(dst, src, 0);
        copy_window::<8>(dst, src, len - 8);
    } else if len >= 4 {
        copy_window::<4>(dst, src, 0);
        copy_window::<4>(dst, src, len - 4);
    } else {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    }
}

/// Copies the `N` bytes at `at` from `src` to `dst` if both hold them.
#[inline(always)]
fn copy_window<const N: usize>(dst: &mut [u8], src: &[u8], at: usize) {
    let d = dst.get_mut(at..).and_then(|d| d.first_chunk_mut::<N>());
    let s = src.get(at..).and_then(|s| s.first_chunk::<N>());
    if let (Some(d), Some(s)) = (d, s) {
        *d = *s;
    }
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    extern crate std;

    use super::*;
    use proptest::prelude::*;
    use std::vec;
    use std::vec::Vec;

    // --- Helpers --------------------------------------------------------------

    /// Small deterministic PRNG (xorshift64*).
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
        let mut r = Rng(seed | 1);
        (0..n).map(|_| (r.next() >> 56) as u8).collect()
    }

    const WORDS: &[&str] = &[
        "the",
        "of",
        "and",
        "to",
        "a",
        "in",
        "is",
        "it",
        "you",
        "that",
        "he",
        "was",
        "for",
        "on",
        "are",
        "with",
        "as",
        "I",
        "his",
        "they",
        "be",
        "at",
        "one",
        "have",
        "this",
        "from",
        "or",
        "had",
        "by",
        "not",
        "word",
        "but",
        "what",
        "some",
        "we",
        "can",
        "out",
        "other",
        "were",
        "all",
        "there",
        "when",
        "up",
        "use",
        "your",
        "how",
        "said",
        "an",
        "each",
        "she",
        "which",
        "do",
        "their",
        "time",
        "if",
        "will",
        "way",
        "about",
        "many",
        "then",
        "them",
        "write",
        "would",
        "like",
        "so",
        "these",
        "her",
        "long",
        "make",
        "thing",
        "see",
        "him",
        "two",
        "has",
        "look",
        "more",
        "day",
        "could",
        "go",
        "come",
        "did",
        "number",
        "sound",
        "no",
        "most",
        "people",
        "my",
        "over",
        "know",
        "water",
        "than",
        "call",
        "first",
        "who",
        "may",
        "down",
        "side",
        "been",
        "now",
        "find",
        "session",
        "remote",
        "support",
        "encrypted",
        "keyboard",
        "screen",
        "relay",
        "connection",
        "established",
        "handshake",
        "consent",
        "operator",
        "frame",
    ];

    /// English-like text: Zipf-ish word choice, punctuation and line breaks.
    fn text(n: usize, seed: u64) -> Vec<u8> {
        let mut r = Rng(seed | 1);
        let mut v = Vec::with_capacity(n + 16);
        let mut words_in_line = 0;
        while v.len() < n {
            // Bias towards the front of the list: min of two uniform draws.
            let a = (r.next() % WORDS.len() as u64) as usize;
            let b = (r.next() % WORDS.len() as u64) as usize;
            v.extend_from_slice(WORDS[a.min(b)].as_bytes());
            words_in_line += 1;
            match r.next() % 16 {
                0 => v.extend_from_slice(b". "),
                1 => v.extend_from_slice(b", "),
                _ => v.push(b' '),
            }
            if words_in_line > 12 {
                v.push(b'\n');
                words_in_line = 0;
            }
        }
        v.truncate(n);
        v
    }

    fn ours(input: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; max_compressed_len(input.len())];
        let n = compress(input, &mut out).unwrap();
        out.truncate(n);
        out
    }

    fn ours_decompress(block: &[u8], len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let n = decompress(block, &mut out).unwrap();
        assert_eq!(n, len);
        out
    }

    fn flex_decompress(block: &[u8], len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        let n = lz4_flex::block::decompress_into(block, &mut out).unwrap();
        assert_eq!(n, len);
        out
    }

    /// Parses a block strictly and checks the LZ4 end rules the encoder must
    /// follow (an independent check: lz4_flex's decoder does not enforce them).
    fn check_end_rules(block: &[u8], n: usize) {
        let mut ip = 0;
        let mut op = 0;
        let read_len = |ip: &mut usize, mut len: usize| {
            if len == 15 {
                loop {
                    let b = block[*ip];
                    *ip += 1;
                    len += b as usize;
                    if b != 255 {
                        break;
                    }
                }
            }
            len
        };
        loop {
            let token = block[ip];
            ip += 1;
            let lit = read_len(&mut ip, (token >> 4) as usize);
            ip += lit;
            op += lit;
            if ip == block.len() {
                break;
            }
            let offset = u16::from_le_bytes([block[ip], block[ip + 1]]) as usize;
            ip += 2;
            assert!(offset >= 1 && offset <= op, "offset {offset} at {op}");
            let m = read_len(&mut ip, (token & 15) as usize) + 4;
            assert!(op + 12 <= n, "match starts at {op}, less than 12 before end {n}");
            op += m;
            assert!(op + 5 <= n, "match ends at {op}, within last 5 of {n}");
        }
        assert_eq!(op, n);
        assert!(ip == block.len());
    }

    /// The full two-way check against lz4_flex.
    fn check_all(input: &[u8]) {
        let block = ours(input);
        assert!(block.len() <= max_compressed_len(input.len()));
        check_end_rules(&block, input.len());
        assert_eq!(ours_decompress(&block, input.len()), input);
        assert_eq!(flex_decompress(&block, input.len()), input);
        // Decoding into a buffer one byte short fails cleanly.
        if !input.is_empty() {
            let mut short = vec![0u8; input.len() - 1];
            assert_eq!(decompress(&block, &mut short), Err(DecompressError::OutputTooSmall));
        }
        // Decoding into a larger buffer reports the true length.
        let mut big = vec![0u8; input.len() + 100];
        assert_eq!(decompress(&block, &mut big), Ok(input.len()));

        // lz4_flex -> ours, both of its entry points.
        let theirs = lz4_flex::block::compress(input);
        assert_eq!(ours_decompress(&theirs, input.len()), input);
        let mut buf = vec![0u8; lz4_flex::block::get_maximum_output_size(input.len())];
        let k = lz4_flex::block::compress_into(input, &mut buf).unwrap();
        assert_eq!(ours_decompress(&buf[..k], input.len()), input);
    }

    // --- Fixed inputs ------------------------------------------------------------

    #[test]
    fn empty() {
        assert_eq!(ours(b""), [0u8]);
        check_all(b"");
        assert_eq!(decompress(&[], &mut []), Err(DecompressError::Malformed));
    }

    #[test]
    fn one_byte() {
        assert_eq!(ours(b"x"), [0x10, b'x']);
        check_all(b"x");
    }

    #[test]
    fn twelve_and_thirteen_bytes() {
        check_all(b"aaaaaaaaaaaa");
        check_all(b"aaaaaaaaaaaaa");
        check_all(b"abcabcabcabc");
        check_all(b"abcabcabcabca");
        check_all(&random_bytes(12, 1));
        check_all(&random_bytes(13, 2));
        // 12 bytes: literals only.
        assert_eq!(ours(b"aaaaaaaaaaaa").len(), 13);
    }

    #[test]
    fn zeros_16k() {
        let input = vec![0u8; 16 * 1024];
        check_all(&input);
        assert!(ours(&input).len() < 100);
    }

    #[test]
    fn random_16k() {
        let input = random_bytes(16 * 1024, 3);
        check_all(&input);
        assert!(ours(&input).len() <= max_compressed_len(input.len()));
    }

    #[test]
    fn repetitive_text() {
        let mut input = Vec::new();
        while input.len() < 10_000 {
            input.extend_from_slice(b"The quick brown fox jumps over the lazy dog. ");
        }
        check_all(&input);
        assert!(ours(&input).len() < 300);
        let t = text(16 * 1024, 4);
        check_all(&t);
        assert!(ours(&t).len() < t.len() * 7 / 10);
    }

    #[test]
    fn max_input() {
        let mut input = text(MAX_INPUT_LEN / 2, 5);
        input.extend_from_slice(&random_bytes(MAX_INPUT_LEN - input.len(), 6));
        assert_eq!(input.len(), MAX_INPUT_LEN);
        check_all(&input);
        check_all(&vec![0xa5u8; MAX_INPUT_LEN]);
        check_all(&random_bytes(MAX_INPUT_LEN, 7));
        // A match at the maximum offset.
        let mut far = random_bytes(MAX_INPUT_LEN, 8);
        let head: Vec<u8> = far[..64].to_vec();
        far[MAX_INPUT_LEN - 64 - 12..MAX_INPUT_LEN - 12].copy_from_slice(&head);
        check_all(&far);
    }

    #[test]
    fn too_large() {
        let input = vec![0u8; MAX_INPUT_LEN + 1];
        let mut out = vec![7u8; max_compressed_len(input.len())];
        assert_eq!(compress(&input, &mut out), Err(CompressError::InputTooLarge));
        assert!(out.iter().all(|&b| b == 7));
    }

    #[test]
    fn insufficient_size_exact() {
        let input = text(1000, 9);
        let required = max_compressed_len(1000);
        assert_eq!(required, 1000 + 3 + 16);
        let mut out = vec![0xeeu8; required - 1];
        assert_eq!(compress(&input, &mut out), Err(CompressError::InsufficientSize { required }));
        assert!(out.iter().all(|&b| b == 0xee));
        let mut out = vec![0u8; required];
        assert!(compress(&input, &mut out).is_ok());
    }

    #[test]
    fn bound_saturates() {
        assert_eq!(max_compressed_len(0), 16);
        assert_eq!(max_compressed_len(usize::MAX), usize::MAX);
    }

    #[test]
    fn long_runs_of_length_bytes() {
        // Literal and match lengths needing several 255 bytes, and lengths
        // landing exactly on the 15 / 15 + 255 boundaries.
        for lit in [14usize, 15, 16, 269, 270, 271, 524, 525, 600] {
            for rep in [3usize, 4, 18, 19, 20, 273, 274, 275, 1000] {
                let mut input = random_bytes(lit, lit as u64);
                let b = input.last().copied().unwrap_or(0);
                input.extend(core::iter::repeat_n(b, rep));
                input.extend_from_slice(&random_bytes(lit % 40 + 5, 99));
                check_all(&input);
            }
        }
    }

    #[test]
    fn display_and_error() {
        let e: &dyn core::error::Error = &CompressError::InsufficientSize { required: 42 };
        assert!(std::format!("{e}").contains("42"));
        assert!(!std::format!("{}", CompressError::InputTooLarge).is_empty());
        assert!(!std::format!("{}", DecompressError::Malformed).is_empty());
        let e: &dyn core::error::Error = &DecompressError::OutputTooSmall;
        assert!(!std::format!("{e}").is_empty());
    }

    // --- Hand-made blocks ------------------------------------------------------------

    fn dec(block: &[u8], cap: usize) -> Result<Vec<u8>, DecompressError> {
        let mut out = vec![0u8; cap];
        let n = decompress(block, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    #[test]
    fn malformed_blocks() {
        use DecompressError::{Malformed, OutputTooSmall};
        // Empty input.
        assert_eq!(dec(&[], 100), Err(Malformed));
        // Zero offset.
        assert_eq!(dec(&[0x10, b'a', 0x00, 0x00, 0x00], 100), Err(Malformed));
        // Offset beyond the output produced so far (1 byte out, offset 2).
        assert_eq!(dec(&[0x10, b'a', 0x02, 0x00, 0x00], 100), Err(Malformed));
        // Offset pointing before the start with no output at all.
        assert_eq!(dec(&[0x00, 0x01, 0x00, 0x00], 100), Err(Malformed));
        // Maximum offset with little output.
        assert_eq!(dec(&[0x10, b'a', 0xff, 0xff, 0x00], 100), Err(Malformed));
        // Truncated literal run.
        assert_eq!(dec(&[0x50, b'a', b'b'], 100), Err(Malformed));
        // Truncated offset.
        assert_eq!(dec(&[0x10, b'a', 0x01], 100), Err(Malformed));
        // Block ending right after a match (no final literal sequence).
        assert_eq!(dec(&[0x10, b'a', 0x01, 0x00], 100), Err(Malformed));
        // Literal length run without end.
        assert_eq!(dec(&[0xf0, 255, 255, 255], 100_000), Err(Malformed));
        // Match length run without end.
        assert_eq!(dec(&[0x1f, b'a', 0x01, 0x00, 255, 255], 100_000), Err(Malformed));
        // Literal length claiming more than the input holds.
        assert_eq!(dec(&[0xf0, 200, b'a', b'b'], 100_000), Err(Malformed));
        let mut long = vec![0xf0];
        long.extend(core::iter::repeat_n(255u8, 10_000));
        long.push(0);
        assert_eq!(dec(&long, usize::from(u16::MAX)), Err(Malformed));
        // Literals larger than the output.
        assert_eq!(dec(&[0x30, 1, 2, 3], 2), Err(OutputTooSmall));
        // Match larger than the output.
        assert_eq!(dec(&[0x1f, b'a', 0x01, 0x00, 100, 0x00], 50), Err(OutputTooSmall));
        // Match length run larger than any output, not terminated.
        let mut m = vec![0x1f, b'a', 0x01, 0x00];
        m.extend(core::iter::repeat_n(255u8, 10_000));
        assert_eq!(dec(&m, 1000), Err(OutputTooSmall));
    }

    #[test]
    fn overlapping_matches() {
        // "a" then a 1-offset match of 4 + 15 + 5 = 24 bytes, then "b".
        let block = [0x1f, b'a', 0x01, 0x00, 5, 0x10, b'b'];
        let mut expect = vec![b'a'; 25];
        expect.push(b'b');
        assert_eq!(dec(&block, 26).unwrap(), expect);
        assert_eq!(flex_decompress(&block, 26), expect);
        // Offset 3 over "abc", long match.
        let block = [0x3f, b'a', b'b', b'c', 0x03, 0x00, 200, 0x00];
        let out = dec(&block, 1000).unwrap();
        assert_eq!(out.len(), 3 + 4 + 15 + 200);
        for (i, &c) in out.iter().enumerate() {
            assert_eq!(c, b"abc"[i % 3]);
        }
        assert_eq!(flex_decompress(&block, out.len()), out);
        // Exactly fitting output.
        assert_eq!(dec(&block, out.len()).unwrap(), out);
        assert_eq!(dec(&block, out.len() - 1), Err(DecompressError::OutputTooSmall));
    }

    // --- Property tests -----------------------------------------------------------------

    /// Inputs with many repeats: chunks from a small alphabet, repeated.
    fn repetitive() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec((prop::collection::vec(0u8..4, 1..40), 1usize..60, any::<bool>()), 0..60).prop_map(
            |parts| {
                let mut v = Vec::new();
                for (chunk, reps, noise) in parts {
                    for _ in 0..reps {
                        v.extend_from_slice(&chunk);
                    }
                    if noise {
                        v.push(0xff);
                    }
                }
                v.truncate(20_000);
                v
            },
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn prop_round_trip(input in prop::collection::vec(any::<u8>(), 0..20_000)) {
            let block = ours(&input);
            check_end_rules(&block, input.len());
            prop_assert_eq!(ours_decompress(&block, input.len()), input.clone());
            prop_assert_eq!(flex_decompress(&block, input.len()), input);
        }

        #[test]
        fn prop_round_trip_repetitive(input in repetitive()) {
            check_all(&input);
        }

        #[test]
        fn prop_within_gives_the_same_block_when_it_fits(input in repetitive(), room in 0usize..25_000) {
            let block = ours(&input);
            let mut out = vec![0u8; room];
            match compress_within(&input, &mut out) {
                Ok(len) => prop_assert_eq!(&out[..len], &block[..]),
                Err(error) => {
                    prop_assert_eq!(error, CompressError::DoesNotFit);
                    prop_assert!(block.len() > room, "{} bytes would have fitted {room}", block.len());
                }
            }
        }

        #[test]
        fn prop_within_the_input_length_keeps_only_a_saving(input in prop::collection::vec(any::<u8>(), 1..20_000)) {
            // Random bytes: the block is almost never shorter than the input.
            let block = ours(&input);
            let mut out = vec![0u8; input.len() - 1];
            match compress_within(&input, &mut out) {
                Ok(len) => {
                    prop_assert!(len < input.len());
                    prop_assert_eq!(&out[..len], &block[..]);
                }
                Err(error) => {
                    prop_assert_eq!(error, CompressError::DoesNotFit);
                    prop_assert!(block.len() >= input.len());
                }
            }
        }

        #[test]
        fn prop_decompress_arbitrary(
            block in prop::collection::vec(any::<u8>(), 0..2_000),
            cap in 0usize..70_000,
        ) {
            let mut out = vec![0u8; cap];
            if let Ok(n) = decompress(&block, &mut out) {
                prop_assert!(n <= cap);
            }
        }

        #[test]
        fn prop_decompress_mutated(
            input in repetitive(),
            flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            slack in 0usize..64,
        ) {
            let mut block = ours(&input);
            for (i, v) in flips {
                let i = i.index(block.len());
                block[i] = v;
            }
            let mut out = vec![0u8; input.len() + slack];
            if let Ok(n) = decompress(&block, &mut out) {
                prop_assert!(n <= out.len());
            }
            // Truncations of a valid block.
            let good = ours(&input);
            for cut in [0, 1, good.len() / 2, good.len().saturating_sub(1)] {
                let _ = decompress(&good[..cut.min(good.len())], &mut out);
            }
        }

        #[test]
        fn prop_insufficient_size_untouched(
            input in prop::collection::vec(any::<u8>(), 0..3_000),
            short in 1usize..200,
            fill in any::<u8>(),
        ) {
            let required = max_compressed_len(input.len());
            let len = required.saturating_sub(short);
            let mut out = vec![fill; len];
            prop_assert_eq!(
                compress(&input, &mut out),
                Err(CompressError::InsufficientSize { required })
            );
            prop_assert!(out.iter().all(|&b| b == fill));
        }
    }

    // --- Throughput (release mode, opt-in) ------------------------------------------------

    /// `cargo test --release -- --ignored --nocapture throughput`
    #[test]
    #[ignore = "benchmark; run in release mode"]
    fn throughput() {
        use std::hint::black_box;
        use std::time::Instant;

        const CHUNK: usize = 16 * 1024;
        const TOTAL: usize = 512 << 20; // bytes processed per measurement
        let source = include_bytes!("compress.rs");
        let cases: [(&str, Vec<u8>); 4] = [
            ("text", text(CHUNK, 11)),
            ("source", source[..CHUNK.min(source.len())].to_vec()),
            ("random", random_bytes(CHUNK, 12)),
            ("zeros", vec![0u8; CHUNK]),
        ];
        let iters = TOTAL / CHUNK;
        let mbs = |secs: f64| (iters * CHUNK) as f64 / secs / 1e6;
        for (name, input) in &cases {
            let mut out = vec![0u8; max_compressed_len(CHUNK)];
            let mut back = vec![0u8; CHUNK];

            let t = Instant::now();
            let mut clen = 0;
            for _ in 0..iters {
                clen = compress(black_box(input), black_box(&mut out)).unwrap();
            }
            let c = mbs(t.elapsed().as_secs_f64());

            let t = Instant::now();
            for _ in 0..iters {
                decompress(black_box(&out[..clen]), black_box(&mut back)).unwrap();
            }
            let d = mbs(t.elapsed().as_secs_f64());
            assert_eq!(&back, input);

            let mut fout = vec![0u8; lz4_flex::block::get_maximum_output_size(CHUNK)];
            let t = Instant::now();
            let mut flen = 0;
            for _ in 0..iters {
                flen = lz4_flex::block::compress_into(black_box(input), black_box(&mut fout)).unwrap();
            }
            let fc = mbs(t.elapsed().as_secs_f64());
            let t = Instant::now();
            for _ in 0..iters {
                lz4_flex::block::decompress_into(black_box(&fout[..flen]), black_box(&mut back)).unwrap();
            }
            let fd = mbs(t.elapsed().as_secs_f64());

            std::println!(
                "{name:>7}: ours  {clen:>6} B  compress {c:>7.0} MB/s  decompress {d:>7.0} MB/s\n\
                 {name:>7}: flex  {flen:>6} B  compress {fc:>7.0} MB/s  decompress {fd:>7.0} MB/s"
            );
        }
    }
}
