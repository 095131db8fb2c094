//! The LZ4 block decoder on hostile input, compress/decompress round trips, and both checked
//! against an independent LZ4 implementation (`lz4_flex`): the format is standard LZ4, so any
//! conforming decoder must read what `compress` writes, and what `decompress` accepts must mean
//! the same to another decoder. libFuzzer's inputs are at most 4 KiB, so the input is also
//! tiled up to the encoder's 64 KiB limit (large positions and offsets, long match lengths).
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::compress;

const OUT_LEN: usize = 16 * 1024;

fuzz_target!(|data: &[u8]| {
    let mut out = vec![0u8; OUT_LEN];
    if let Ok(len) = compress::decompress(data, &mut out) {
        // A block we accept decodes the same with lz4_flex. (The converse does not hold:
        // lz4_flex accepts some malformed blocks, such as a zero match offset, that we refuse.)
        let mut reference = vec![0u8; OUT_LEN];
        let reference_len = lz4_flex::block::decompress_into(data, &mut reference);
        assert_eq!(reference_len.ok(), Some(len), "lz4_flex disagrees on the decoded length");
        assert!(out[..len] == reference[..len], "lz4_flex decodes other bytes");
    }
    if data.len() <= OUT_LEN {
        let mut packed = vec![0u8; compress::max_compressed_len(data.len())];
        let len = compress::compress(data, &mut packed).expect("bound is enough");
        let back = compress::decompress(&packed[..len], &mut out).expect("own output decodes");
        assert!(out[..back] == data[..], "round trip");
        let mut reference = vec![0u8; data.len()];
        let reference_len = lz4_flex::block::decompress_into(&packed[..len], &mut reference);
        assert_eq!(reference_len.ok(), Some(data.len()), "lz4_flex reads what compress writes");
        assert!(reference == data, "lz4_flex reads the same bytes");
    }
    if let Some((&tiles, rest)) = data.split_first()
        && !rest.is_empty()
        && tiles & 0x80 != 0
    {
        // Up to 64 KiB: `rest` tiled, each copy changed in one byte so matches do not run on.
        let target = (usize::from(tiles & 0x7F) + 1) * 512;
        let mut big = Vec::with_capacity(target.min(compress::MAX_INPUT_LEN));
        let mut copy = 0u8;
        while big.len() < target.min(compress::MAX_INPUT_LEN) {
            let start = big.len();
            big.extend_from_slice(rest);
            big[start] ^= copy;
            copy = copy.wrapping_add(1);
        }
        big.truncate(compress::MAX_INPUT_LEN);
        let mut packed = vec![0u8; compress::max_compressed_len(big.len())];
        let len = compress::compress(&big, &mut packed).expect("bound is enough");
        let mut back = vec![0u8; big.len()];
        let back_len = compress::decompress(&packed[..len], &mut back).expect("own output decodes");
        assert_eq!(back_len, big.len());
        assert!(back == big, "round trip (tiled)");
        let mut reference = vec![0u8; big.len()];
        let reference_len = lz4_flex::block::decompress_into(&packed[..len], &mut reference);
        assert_eq!(reference_len.ok(), Some(big.len()), "lz4_flex reads what compress writes (tiled)");
        assert!(reference == big, "lz4_flex reads the same bytes (tiled)");
    }
});
