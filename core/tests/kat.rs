//! Known-answer tests for the crypto primitives, against the published
//! vectors in `tests/vectors/` (RFC 3394, NIST SP 800-38A, RFC 2202,
//! RFC 5869, FIPS 180).
//!
//! Vector files are plain text: `name = value` lines, records separated by
//! blank lines, `#` comments. A value is hex (possibly empty) or an ASCII
//! string in double quotes.

// Test code: a malformed vector file should fail loudly.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use lifeline_core::crypto::kdf::{PRK_LEN, hkdf_sha1, hkdf_sha1_expand, hkdf_sha1_extract};
use lifeline_core::crypto::keywrap::{KeyWrapError, WRAP_OVERHEAD, unwrap, unwrap_with_kek, wrap, wrap_with_kek};
use lifeline_core::crypto::primitives::{Aes128Ctr, BLOCK_LEN, HmacSha1Key, TAG_LEN, hmac_sha1, sha1};

const RFC3394: &str = include_str!("vectors/rfc3394_aes_key_wrap.txt");
const SP800_38A_CTR: &str = include_str!("vectors/sp800_38a_ctr_aes128.txt");
const RFC2202: &str = include_str!("vectors/rfc2202_hmac_sha1.txt");
const RFC5869: &str = include_str!("vectors/rfc5869_hkdf_sha1.txt");
const FIPS180_SHA1: &str = include_str!("vectors/fips180_sha1.txt");

// ---------------------------------------------------------------------------
// Vector file parser
// ---------------------------------------------------------------------------

struct Record {
    /// 1-based line number of the record's first field, for messages.
    line: usize,
    fields: Vec<(String, String)>,
}

impl Record {
    fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    fn str(&self, name: &str) -> &str {
        self.get(name).unwrap_or_else(|| panic!("record at line {}: missing field `{name}`", self.line))
    }

    /// Decodes a field: `"ascii"` or hex.
    fn bytes(&self, name: &str) -> Vec<u8> {
        decode_value(self.str(name)).unwrap_or_else(|e| panic!("record at line {}, field `{name}`: {e}", self.line))
    }

    fn opt_bytes(&self, name: &str) -> Option<Vec<u8>> {
        self.get(name).map(|_| self.bytes(name))
    }

    fn num(&self, name: &str) -> usize {
        self.str(name).parse().unwrap_or_else(|e| panic!("record at line {}, field `{name}`: {e}", self.line))
    }

    fn array<const N: usize>(&self, name: &str) -> [u8; N] {
        let v = self.bytes(name);
        v.as_slice()
            .try_into()
            .unwrap_or_else(|_| panic!("record at line {}, field `{name}`: {} bytes, want {N}", self.line, v.len()))
    }
}

fn parse(text: &str) -> Vec<Record> {
    let mut records = Vec::new();
    let mut current: Option<Record> = None;
    for (idx, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            records.extend(current.take());
            continue;
        }
        let (name, value) = line.split_once('=').unwrap_or_else(|| panic!("line {}: expected `name = value`", idx + 1));
        let (name, value) = (name.trim().to_owned(), value.trim().to_owned());
        assert!(!name.is_empty(), "line {}: empty field name", idx + 1);
        let record = current.get_or_insert_with(|| Record { line: idx + 1, fields: Vec::new() });
        assert!(record.get(&name).is_none(), "line {}: duplicate field `{name}`", idx + 1);
        record.fields.push((name, value));
    }
    records.extend(current);
    records
}

fn decode_value(value: &str) -> Result<Vec<u8>, String> {
    if let Some(rest) = value.strip_prefix('"') {
        let ascii = rest.strip_suffix('"').ok_or("unterminated string")?;
        if !ascii.is_ascii() {
            return Err("non-ASCII string".into());
        }
        return Ok(ascii.as_bytes().to_vec());
    }
    if !value.len().is_multiple_of(2) {
        return Err("odd number of hex digits".into());
    }
    let nibble = |c: u8| -> Result<u8, String> {
        match c {
            b'0'..=b'9' => Ok(c - b'0'),
            b'a'..=b'f' => Ok(c - b'a' + 10),
            b'A'..=b'F' => Ok(c - b'A' + 10),
            _ => Err(format!("bad hex digit {:?}", c as char)),
        }
    };
    value.as_bytes().chunks(2).map(|pair| Ok(nibble(pair[0])? << 4 | nibble(pair[1])?)).collect()
}

#[test]
fn parser_handles_the_format() {
    let recs = parse("# c\n\na = 0aFf\nb = \"x y\"\nc =\n\n\n# d\nd = 7\n");
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].bytes("a"), [0x0a, 0xff]);
    assert_eq!(recs[0].bytes("b"), b"x y");
    assert_eq!(recs[0].bytes("c"), b"");
    assert_eq!(recs[0].get("d"), None);
    assert_eq!(recs[1].num("d"), 7);
    assert_eq!(recs[1].line, 9);
    assert!(decode_value("abc").is_err());
    assert!(decode_value("zz").is_err());
    assert!(decode_value("\"open").is_err());
}

/// Every way to cut `data` into parts: all 2- and 3-part splits (with empty
/// parts), plus one byte per part.
fn splits(data: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut out = vec![vec![data], data.chunks(1).collect()];
    for i in 0..=data.len() {
        out.push(vec![&data[..i], &data[i..]]);
        for j in i..=data.len() {
            out.push(vec![&data[..i], &data[i..j], &data[j..]]);
        }
    }
    out
}

// ---------------------------------------------------------------------------
// RFC 3394 AES Key Wrap
// ---------------------------------------------------------------------------

#[test]
fn rfc3394_key_wrap_vectors() {
    let records = parse(RFC3394);
    let sections: Vec<&str> = records.iter().map(|r| r.str("section")).collect();
    assert_eq!(sections, ["4.1", "4.2", "4.3", "4.4", "4.5", "4.6"]);

    for r in &records {
        let section = r.str("section");
        let kek = r.bytes("kek");
        let key_data = r.bytes("key_data");
        let ciphertext = r.bytes("ciphertext");
        assert_eq!(ciphertext.len(), key_data.len() + WRAP_OVERHEAD, "{section}");

        let mut wrapped = vec![0u8; ciphertext.len()];
        assert_eq!(wrap_with_kek(&kek, &key_data, &mut wrapped), Ok(ciphertext.len()), "{section}");
        assert_eq!(wrapped, ciphertext, "{section}: wrap");

        let mut unwrapped = vec![0u8; key_data.len()];
        assert_eq!(unwrap_with_kek(&kek, &ciphertext, &mut unwrapped), Ok(key_data.len()), "{section}");
        assert_eq!(unwrapped, key_data, "{section}: unwrap");

        // The protocol's AES-128 entry points give the same answers.
        if let Ok(kek128) = <[u8; 16]>::try_from(kek.as_slice()) {
            let mut wrapped = vec![0u8; ciphertext.len()];
            assert_eq!(wrap(&kek128, &key_data, &mut wrapped), Ok(ciphertext.len()));
            assert_eq!(wrapped, ciphertext, "{section}: wrap (AES-128 API)");
            let mut unwrapped = vec![0u8; key_data.len()];
            assert_eq!(unwrap(&kek128, &ciphertext, &mut unwrapped), Ok(key_data.len()));
            assert_eq!(unwrapped, key_data, "{section}: unwrap (AES-128 API)");
        }

        // Any corrupted byte must fail the integrity check and release nothing.
        for i in 0..ciphertext.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bad = ciphertext.clone();
                bad[i] ^= flip;
                let mut out = vec![0xa5u8; key_data.len()];
                assert_eq!(
                    unwrap_with_kek(&kek, &bad, &mut out),
                    Err(KeyWrapError::IntegrityCheckFailed),
                    "{section}: byte {i} ^ {flip:#04x}"
                );
                assert!(out.iter().all(|&b| b == 0), "{section}: output not cleared");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// NIST SP 800-38A CTR-AES128
// ---------------------------------------------------------------------------

#[test]
fn sp800_38a_ctr_aes128_vectors() {
    let records = parse(SP800_38A_CTR);
    let sections: Vec<(&str, &str)> = records.iter().map(|r| (r.str("section"), r.str("direction"))).collect();
    assert_eq!(sections, [("F.5.1", "encrypt"), ("F.5.2", "decrypt")]);

    for r in &records {
        let section = r.str("section");
        let aes = Aes128Ctr::new(&r.array::<16>("key"));
        let init_counter: [u8; BLOCK_LEN] = r.array("init_counter");
        let counter_blocks = r.bytes("counter_blocks");
        let output_blocks = r.bytes("output_blocks");
        let input = r.bytes("input");
        let output = r.bytes("output");
        assert_eq!(input.len(), 4 * BLOCK_LEN, "{section}");
        assert_eq!(output.len(), input.len(), "{section}");
        assert_eq!(counter_blocks.len(), input.len(), "{section}");
        assert_eq!(&counter_blocks[..BLOCK_LEN], init_counter, "{section}");

        // All four blocks in one call.
        let mut buf = input.clone();
        aes.apply_keystream(&init_counter, &mut buf);
        assert_eq!(buf, output, "{section}: one call");

        // The keystream itself is the SP's "Output Block"s.
        let mut keystream = vec![0u8; input.len()];
        aes.apply_keystream(&init_counter, &mut keystream);
        assert_eq!(keystream, output_blocks, "{section}: output blocks");

        // One block per call, restarting at the SP's counter block for it.
        let mut buf = input.clone();
        for (block, counter) in buf.chunks_mut(BLOCK_LEN).zip(counter_blocks.chunks(BLOCK_LEN)) {
            aes.apply_keystream(counter.try_into().unwrap(), block);
        }
        assert_eq!(buf, output, "{section}: block per call");

        // Every split at a block boundary: the second call restarts with the
        // counter block of the block it starts at.
        for k in 0..=4 {
            let mut buf = input.clone();
            let (head, tail) = buf.split_at_mut(k * BLOCK_LEN);
            aes.apply_keystream(&init_counter, head);
            if k < 4 {
                let counter: &[u8; BLOCK_LEN] = counter_blocks[k * BLOCK_LEN..][..BLOCK_LEN].try_into().unwrap();
                aes.apply_keystream(counter, tail);
            }
            assert_eq!(buf, output, "{section}: split after {k} blocks");
        }

        // Partial final block: a prefix of the input gives a prefix of the output.
        for len in [1, 15, 17, 33, 63] {
            let mut buf = input[..len].to_vec();
            aes.apply_keystream(&init_counter, &mut buf);
            assert_eq!(buf, output[..len], "{section}: {len}-byte prefix");
        }
    }
}

// ---------------------------------------------------------------------------
// RFC 2202 HMAC-SHA1
// ---------------------------------------------------------------------------

#[test]
fn rfc2202_hmac_sha1_vectors() {
    let records = parse(RFC2202);
    let cases: Vec<usize> = records.iter().map(|r| r.num("test_case")).collect();
    assert_eq!(cases, [1, 2, 3, 4, 5, 6, 7]);

    for r in &records {
        let case = r.num("test_case");
        let key = r.bytes("key");
        let data = r.bytes("data");
        let digest: [u8; TAG_LEN] = r.array("digest");
        assert_eq!(key.len(), r.num("key_len"), "case {case}");
        assert_eq!(data.len(), r.num("data_len"), "case {case}");

        assert_eq!(hmac_sha1(&key, &[&data]), digest, "case {case}: hmac_sha1");
        let mac = HmacSha1Key::new(&key);
        assert_eq!(mac.compute(&[&data]), digest, "case {case}: compute");
        assert!(mac.verify(&[&data], &digest), "case {case}: verify");
        // The keyed state is reusable: a second computation gives the same tag.
        assert_eq!(mac.compute(&[&data]), digest, "case {case}: compute again");

        for parts in splits(&data) {
            assert_eq!(mac.compute(&parts), digest, "case {case}: {} parts", parts.len());
            assert_eq!(hmac_sha1(&key, &parts), digest, "case {case}: {} parts", parts.len());
            assert!(mac.verify(&parts, &digest), "case {case}: verify {} parts", parts.len());
        }

        for i in 0..TAG_LEN {
            let mut bad = digest;
            bad[i] ^= 0x01;
            assert!(!mac.verify(&[&data], &bad), "case {case}: flipped tag byte {i}");
        }
        assert!(!mac.verify(&[&data, b"x"], &digest), "case {case}: extra data");

        if let Some(digest_96) = r.opt_bytes("digest_96") {
            // Truncation keeps the leftmost bits (RFC 2202 section 1).
            assert_eq!(digest_96.len(), 12, "case {case}");
            assert_eq!(mac.compute(&[&data])[..12], digest_96, "case {case}: digest-96");
            // `verify` takes full-length tags only.
            assert!(!mac.verify(&[&data], &digest_96), "case {case}: truncated tag accepted");
        }
    }
}

// ---------------------------------------------------------------------------
// RFC 5869 HKDF-SHA1
// ---------------------------------------------------------------------------

#[test]
fn rfc5869_hkdf_sha1_vectors() {
    let records = parse(RFC5869);
    let cases: Vec<usize> = records.iter().map(|r| r.num("test_case")).collect();
    assert_eq!(cases, [4, 5, 6, 7]);

    for r in &records {
        let case = r.num("test_case");
        let ikm = r.bytes("ikm");
        let info = r.bytes("info");
        let prk: [u8; PRK_LEN] = r.array("prk");
        let okm = r.bytes("okm");
        assert_eq!(okm.len(), r.num("l"), "case {case}");

        // "Salt not provided" means HashLen zero octets, which HMAC treats
        // exactly like an empty salt: check both spellings.
        let salts = match r.opt_bytes("salt") {
            Some(salt) => vec![salt],
            None => vec![vec![0u8; PRK_LEN], Vec::new()],
        };
        for salt in &salts {
            assert_eq!(*hkdf_sha1_extract(salt, &ikm), prk, "case {case}: PRK");

            let mut out = vec![0u8; okm.len()];
            assert_eq!(hkdf_sha1(salt, &ikm, &[&info], &mut out), Ok(()), "case {case}");
            assert_eq!(out, okm, "case {case}: OKM");

            for parts in splits(&info) {
                let mut out = vec![0u8; okm.len()];
                assert_eq!(hkdf_sha1(salt, &ikm, &parts, &mut out), Ok(()));
                assert_eq!(out, okm, "case {case}: OKM, info in {} parts", parts.len());
            }
        }

        let mut out = vec![0u8; okm.len()];
        assert_eq!(hkdf_sha1_expand(&prk, &[&info], &mut out), Ok(()), "case {case}");
        assert_eq!(out, okm, "case {case}: expand from PRK");

        // A shorter output is a prefix of the longer one.
        let mut short = vec![0u8; okm.len() - 1];
        assert_eq!(hkdf_sha1(&salts[0], &ikm, &[&info], &mut short), Ok(()));
        assert_eq!(short, okm[..okm.len() - 1], "case {case}: prefix");
    }
}

// ---------------------------------------------------------------------------
// FIPS 180 SHA-1
// ---------------------------------------------------------------------------

#[test]
fn fips180_sha1_vectors() {
    let records = parse(FIPS180_SHA1);
    let sections: Vec<&str> = records.iter().map(|r| r.str("section")).collect();
    assert_eq!(sections, ["A.1", "A.2"]);

    for r in &records {
        let section = r.str("section");
        let message = r.bytes("message");
        let digest: [u8; 20] = r.array("digest");
        assert_eq!(message.len() * 8, r.num("message_bits"), "{section}");
        assert_eq!(sha1(&[&message]), digest, "{section}");
        for parts in splits(&message) {
            assert_eq!(sha1(&parts), digest, "{section}: {} parts", parts.len());
        }
    }
}
