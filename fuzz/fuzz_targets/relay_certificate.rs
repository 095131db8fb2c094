//! The appliance's relay-certificate reader (transports/embassy/src/verify.rs) on arbitrary
//! bytes: the CA-certificate parse used at provisioning, the relay check (signature by the test
//! fleet CA, name `localhost`) and the `ECDSA-Sig-Value` reader.
#![no_main]
use libfuzzer_sys::fuzz_target;
use lifeline_transport_embassy::CaKey;
use lifeline_transport_embassy::fuzzing::{check_relay_certificate, read_certificate, verify_p256};

/// The test fleet CA and its relay certificate (names relay-a, localhost, 127.0.0.1).
const CA: &[u8] = include_bytes!("../../transports/embassy/src/testdata/ca.der");
const HOST: &str = "localhost";

fuzz_target!(|data: &[u8]| {
    let Some(ca) = CaKey::from_certificate(CA) else { panic!("the test CA certificate parses") };

    // Provisioning from a CA certificate: a key that comes out is a P-256 point.
    if let Some(key) = CaKey::from_certificate(data) {
        assert_eq!(CaKey::from_sec1(key.as_bytes()), Some(key));
        assert_eq!(CaKey::from_key_or_certificate(data), Some(key));
        assert_eq!(read_certificate(data, HOST).map(|(bytes, _)| bytes), Some(*key.as_bytes()));
    }

    // The parse alone (the name matching is out of reach behind the signature otherwise).
    let parsed = read_certificate(data, HOST);
    if let Some((_, names_host)) = parsed {
        // ASCII case-insensitive: the same answer for the upper-case name. (An empty dNSName
        // matches the empty host here; the relay check refuses an empty host before this.)
        assert_eq!(read_certificate(data, "LOCALHOST").map(|(_, n)| n), Some(names_host));
    }

    // The relay check: what passes parsed, names the host, and has a key that is a P-256 point.
    if let Some(key) = check_relay_certificate(data, &[ca], HOST) {
        assert_eq!(parsed, Some((key, true)));
        assert!(CaKey::from_sec1(&key).is_some(), "the relay key is a P-256 point");
        assert_eq!(check_relay_certificate(data, &[ca], "LocalHost"), Some(key));
        assert_eq!(check_relay_certificate(data, &[], HOST), None, "no pinned key, no pass");
        assert_eq!(check_relay_certificate(data, &[ca], ""), None, "no name, no pass");
    }

    // The signature reader on the same bytes (a DER `ECDSA-Sig-Value` the fuzzer cannot forge).
    assert!(!verify_p256(ca.as_bytes(), b"not signed by the CA", data));
});
