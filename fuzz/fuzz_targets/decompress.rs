//! The LZ4 block decoder on hostile input, and compress/decompress round trips.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_core::compress;

fuzz_target!(|data: &[u8]| {
    let mut out = vec![0u8; 16 * 1024];
    let _ = compress::decompress(data, &mut out);
    if data.len() <= 16 * 1024 {
        let mut packed = vec![0u8; compress::max_compressed_len(data.len())];
        let len = compress::compress(data, &mut packed).expect("bound is enough");
        let back = compress::decompress(&packed[..len], &mut out).expect("own output decodes");
        assert_eq!(&out[..back], data);
    }
});
