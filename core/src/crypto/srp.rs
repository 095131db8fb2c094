//! SRP-6a password-authenticated key exchange (RFC 5054 flavour, SHA-1).
//!
//! The leader (SRP *server*) holds a [`Verifier`] `v = g^x mod N` derived from
//! the one-time password; the joining member (SRP *client*) knows the password.
//! Both sides prove knowledge of the same premaster secret `S` without either
//! ever sending the password or anything an eavesdropper could test a password
//! guess against offline.
//!
//! # Construction
//!
//! `H` is SHA-1, `|` is concatenation, `PAD(z)` is `z` big-endian, left-padded
//! with zeros to the byte length of `N`. `N` and `g` are the RFC 5054 Appendix A
//! groups ([`Group`]). The exponentiation secrets `a` and `b` are 32 bytes the
//! caller draws from a CSPRNG (this module takes no RNG), read big-endian.
//!
//! ```text
//! k  = H(N | PAD(g))                    x  = H(s | H(I | ":" | P))
//! v  = g^x mod N                        u  = H(PAD(A) | PAD(B))
//! A  = g^a mod N                        B  = (k*v + g^b) mod N
//! client: S = (B - k*g^x)^(a + u*x) mod N
//! server: S = (A * v^u)^b mod N
//! K  = H(PAD(S))
//! M1 = H((H(N) XOR H(PAD(g))) | H(I) | s | PAD(A) | PAD(B) | K)
//! M2 = H(PAD(A) | M1 | K)
//! ```
//!
//! The server rejects an `A`, and the client a `B`, that is not exactly
//! [`Group::byte_len`] bytes or not in `1..N` ([`SrpError::InvalidPublicKey`]);
//! both reject `u == 0`. Proofs are compared in constant time. The session key is
//! only handed out after the peer's proof has been checked: the server checks
//! `M1` before building a [`ServerSession`]; the client gets a [`SessionKey`]
//! from [`ClientSession::verify_server`] only after `M2` matches.
//!
//! # Why the exponents are short
//!
//! Every modular exponentiation is constant time over a *public* bound on the
//! exponent's bit length, so its cost is proportional to that bound, not to the
//! size of `N`. The exponents are short by construction: `a` and `b` are
//! 256-bit secrets (a 256-bit exponent costs a discrete-log attacker about
//! 2^128 work, matching the rest of the protocol), `x` and `u` are 160-bit
//! SHA-1 outputs, and the client's `a + u*x` is computed exactly as an integer
//! of at most 321 bits. It is never reduced modulo `N`: exponents live modulo
//! the order of `g`, not `N`, and at 321 bits no reduction is needed at all.
//! With 2048-bit `N` this makes a handshake several times cheaper than
//! full-width exponents, which matters on microcontrollers.
//!
//! Powers of the small generator `g` use square-and-select with `acc * g`
//! computed by modular additions; other bases use a fixed 4-bit window with a
//! constant-time table scan. Both work in place on the fixed-size Montgomery
//! integers of `crypto-bigint` (no heap); the Montgomery parameters of each
//! group are computed at compile time.
//!
//! # Cost
//!
//! One complete 2048-bit handshake (both sides, verifier precomputed) takes
//! about 2.2 to 2.5 ms on a desktop x86_64 core; 3072-bit about 2.3 times that.
//! Peak stack use is about 12 KB for 2048-bit and 16 KB for 3072-bit groups
//! (x86_64 and Cortex-M4 alike: the big numbers dominate).
//!
//! Secrets (`a`, `b`, `x`, `H(I | ":" | P)`, `S`, `K`, the verifier and the
//! big-number intermediates this module holds) are zeroized after use or on
//! drop. Temporaries inside `crypto-bigint`'s multiplication routines and the
//! SHA-1 state are outside this module's control.

use core::fmt;

use crypto_bigint::{
    CtAssign, CtEq, Limb, MontyForm, MontyMultiplier, NonZero, Odd, U256, U512, Uint, Word,
    modular::{FixedMontyForm, FixedMontyParams},
};
use sha1::{Digest, Sha1};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of the salt `s` in bytes.
pub const SALT_LEN: usize = 16;
/// Length of the private exponents `a` and `b` in bytes.
pub const PRIVATE_LEN: usize = 32;
/// Length of the proofs `M1` and `M2` in bytes (one SHA-1 output).
pub const PROOF_LEN: usize = 20;
/// Length of the session key `K` in bytes (one SHA-1 output).
pub const SESSION_KEY_LEN: usize = 20;
/// Largest public-key (and verifier) length of any supported group, in bytes.
pub const MAX_PUBLIC_LEN: usize = 384;

/// SHA-1 output length.
const HASH_LEN: usize = 20;
/// Bit bound for the exponents `a` and `b`.
const PRIVATE_BITS: u32 = (PRIVATE_LEN * 8) as u32;
/// Bit bound for hash-derived exponents (`x`, `u`).
const HASH_BITS: u32 = (HASH_LEN * 8) as u32;
/// Bit bound for the client's `a + u*x`: `a < 2^256` and `u*x < 2^320`, so the
/// sum is below `2^256 + 2^320 < 2^321`.
const CLIENT_EXP_BITS: u32 = HASH_BITS * 2 + 1;

type Hash = [u8; HASH_LEN];

/// An SRP group: a safe prime `N` and generator `g` from RFC 5054 Appendix A.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Group {
    /// The 2048-bit group of RFC 5054 Appendix A, `g = 2`. Wire id 2.
    Rfc5054_2048,
    /// The 3072-bit group of RFC 5054 Appendix A, `g = 5`. Wire id 3.
    Rfc5054_3072,
}

impl Group {
    /// Byte length of `N`, and so of every padded big number on the wire
    /// (`A`, `B`, the verifier): 256 or 384.
    pub const fn byte_len(self) -> usize {
        match self {
            Group::Rfc5054_2048 => 256,
            Group::Rfc5054_3072 => 384,
        }
    }

    /// The group's one-byte wire identifier: 2 for 2048-bit, 3 for 3072-bit.
    pub fn id(self) -> u8 {
        match self {
            Group::Rfc5054_2048 => 2,
            Group::Rfc5054_3072 => 3,
        }
    }

    /// The group with wire identifier `id`, if there is one.
    pub fn from_id(id: u8) -> Option<Group> {
        match id {
            2 => Some(Group::Rfc5054_2048),
            3 => Some(Group::Rfc5054_3072),
            _ => None,
        }
    }
}

/// Why a handshake step failed.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SrpError {
    /// The peer's public key has the wrong length or is not in `1..N`, or it
    /// makes the scrambling parameter `u` zero.
    InvalidPublicKey,
    /// The peer's proof does not match: wrong password (or verifier), or the
    /// messages were tampered with.
    BadProof,
}

impl fmt::Display for SrpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SrpError::InvalidPublicKey => "invalid SRP public key",
            SrpError::BadProof => "SRP proof mismatch",
        })
    }
}

impl core::error::Error for SrpError {}

// ---------------------------------------------------------------------------
// Group constants
// ---------------------------------------------------------------------------

/// `N` and `g` of one group, with Montgomery parameters computed at compile
/// time.
struct GroupConsts<const L: usize> {
    params: FixedMontyParams<L>,
    g: u8,
}

impl<const L: usize> GroupConsts<L> {
    /// Byte length of `N` (`PAD()` width). Checked at compile time to fit the
    /// `MAX_PUBLIC_LEN` buffers, which makes slicing those with `LEN` safe.
    const LEN: usize = {
        assert!(Uint::<L>::BYTES >= 2 && Uint::<L>::BYTES <= MAX_PUBLIC_LEN);
        Uint::<L>::BYTES
    };

    /// [`Self::LEN`], for call sites where `L` is inferred. Never more than
    /// `MAX_PUBLIC_LEN`, so `buf[..c.len()]` on a `[u8; MAX_PUBLIC_LEN]`
    /// cannot panic.
    fn len(&self) -> usize {
        Self::LEN
    }

    /// `const` so that the statics below are built by the compiler; a malformed
    /// constant fails the build, never a run.
    const fn new(n_hex: &str, g: u8) -> Self {
        Self { params: FixedMontyParams::new(Odd::<Uint<L>>::from_be_hex(n_hex)), g }
    }
}

/// RFC 5054 Appendix A, 2048-bit group.
static G2048: GroupConsts<{ crypto_bigint::U2048::LIMBS }> = GroupConsts::new(
    concat!(
        "AC6BDB41324A9A9BF166DE5E1389582FAF72B6651987EE07FC3192943DB56050",
        "A37329CBB4A099ED8193E0757767A13DD52312AB4B03310DCD7F48A9DA04FD50",
        "E8083969EDB767B0CF6095179A163AB3661A05FBD5FAAAE82918A9962F0B93B8",
        "55F97993EC975EEAA80D740ADBF4FF747359D041D5C33EA71D281E446B14773B",
        "CA97B43A23FB801676BD207A436C6481F1D2B9078717461A5B9D32E688F87748",
        "544523B524B0D57D5EA77A2775D2ECFA032CFBDBF52FB3786160279004E57AE6",
        "AF874E7303CE53299CCC041C7BC308D82A5698F3A8D0C38271AE35F8E9DBFBB6",
        "94B5C803D89F7AE435DE236D525F54759B65E372FCD68EF20FA7111F9E4AFF73",
    ),
    2,
);

/// RFC 5054 Appendix A, 3072-bit group (the RFC 3526 MODP prime), `g = 5`.
static G3072: GroupConsts<{ crypto_bigint::U3072::LIMBS }> = GroupConsts::new(
    concat!(
        "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74",
        "020BBEA63B139B22514A08798E3404DDEF9519B3CD3A431B302B0A6DF25F1437",
        "4FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B0BFF5CB6F406B7ED",
        "EE386BFB5A899FA5AE9F24117C4B1FE649286651ECE45B3DC2007CB8A163BF05",
        "98DA48361C55D39A69163FA8FD24CF5F83655D23DCA3AD961C62F356208552BB",
        "9ED529077096966D670C354E4ABC9804F1746C08CA18217C32905E462E36CE3B",
        "E39E772C180E86039B2783A2EC07A28FB5C55DF06F4C52C9DE2BCBF695581718",
        "3995497CEA956AE515D2261898FA051015728E5A8AAAC42DAD33170D04507A33",
        "A85521ABDF1CBA64ECFB850458DBEF0A8AEA71575D060C7DB3970F85A6E1E4C7",
        "ABF5AE8CDB0933D71E8C94E04A25619DCEE3D2261AD2EE6BF12FFA06D98A0864",
        "D87602733EC86A64521F2B18177B200CBBE117577A615D6C770988C0BAD946E2",
        "08E24FA074E5AB3143DB5BFCE0FD108E4B82D120A93AD2CAFFFFFFFFFFFFFFFF",
    ),
    5,
);

// `Group::byte_len` must agree with the integer sizes (and so with
// `GroupConsts::LEN`), and fit the fixed buffers sliced with it.
const _: () = assert!(Group::Rfc5054_2048.byte_len() == crypto_bigint::U2048::BYTES);
const _: () = assert!(Group::Rfc5054_3072.byte_len() == crypto_bigint::U3072::BYTES);
const _: () = assert!(Group::Rfc5054_3072.byte_len() == MAX_PUBLIC_LEN);

/// Runs `$body` with `$c` bound to the constants of `$group`; the body is
/// monomorphised once per group size.
macro_rules! with_group {
    ($group:expr, |$c:ident| $body:expr) => {
        match $group {
            Group::Rfc5054_2048 => {
                let $c = &G2048;
                $body
            }
            Group::Rfc5054_3072 => {
                let $c = &G3072;
                $body
            }
        }
    };
}

// ---------------------------------------------------------------------------
// Encoding helpers (panic-free)
// ---------------------------------------------------------------------------

/// All-zero bytes for feeding `PAD()` prefixes into the hash.
static ZEROS: [u8; MAX_PUBLIC_LEN] = [0; MAX_PUBLIC_LEN];

/// Reads big-endian `bytes` into a `Uint`, right-aligned (i.e. as if
/// left-padded with zeros). Bytes beyond the integer's width are ignored;
/// callers only pass inputs that fit.
fn read_be<const L: usize>(bytes: &[u8]) -> Uint<L> {
    let mut out = Uint::<L>::ZERO;
    for (limb, chunk) in out.as_mut_limbs().iter_mut().zip(bytes.rchunks(Limb::BYTES)) {
        let mut w: Word = 0;
        for &byte in chunk {
            w = (w << 8) | Word::from(byte);
        }
        limb.0 = w;
    }
    out
}

/// Writes `x` big-endian into `out`, which callers size to exactly
/// `Uint::<L>::BYTES` (if it were shorter, high limbs would be dropped rather
/// than panicking).
fn write_be<const L: usize>(x: &Uint<L>, out: &mut [u8]) {
    for (limb, chunk) in x.as_limbs().iter().rev().zip(out.chunks_exact_mut(Limb::BYTES)) {
        // `chunks_exact_mut(Limb::BYTES)` yields exactly `Limb::BYTES` bytes,
        // the length of `Word::to_be_bytes`, so this cannot panic.
        chunk.copy_from_slice(&limb.0.to_be_bytes());
    }
}

fn hash_parts(parts: &[&[u8]]) -> Hash {
    let mut h = Sha1::new();
    for part in parts {
        h.update(part);
    }
    h.finalize().into()
}

/// Feeds `PAD(g)` into `h`.
fn update_pad_g<const L: usize>(h: &mut Sha1, c: &GroupConsts<L>) {
    // 2 <= LEN <= MAX_PUBLIC_LEN (checked at compile time).
    h.update(&ZEROS[..GroupConsts::<L>::LEN - 1]);
    h.update([c.g]);
}

/// `k = H(N | PAD(g))` and `H(N) XOR H(PAD(g))` (the first `M1` input).
fn group_hashes<const L: usize>(c: &GroupConsts<L>) -> (Hash, Hash) {
    let mut n = [0u8; MAX_PUBLIC_LEN];
    // LEN <= MAX_PUBLIC_LEN (checked at compile time).
    let n = &mut n[..GroupConsts::<L>::LEN];
    write_be(c.params.modulus().as_ref(), n);

    let mut h = Sha1::new();
    h.update(&*n);
    let h_n = h.clone().finalize();
    update_pad_g(&mut h, c);
    let k: Hash = h.finalize().into();

    let mut h = Sha1::new();
    update_pad_g(&mut h, c);
    let h_g = h.finalize();

    let mut xor = [0u8; HASH_LEN];
    for ((o, a), b) in xor.iter_mut().zip(h_n.iter()).zip(h_g.iter()) {
        *o = a ^ b;
    }
    (k, xor)
}

/// `x = H(s | H(I | ":" | P))`.
fn compute_x(identity: &[u8], password: &[u8], salt: &[u8; SALT_LEN]) -> Zeroizing<Hash> {
    let mut inner = Sha1::new();
    inner.update(identity);
    inner.update(b":");
    inner.update(password);
    let inner = Zeroizing::new(<Hash>::from(inner.finalize()));
    Zeroizing::new(hash_parts(&[salt, &inner[..]]))
}

/// `u = H(PAD(A) | PAD(B))`, or `None` if it is zero.
fn compute_u(a_pub: &[u8], b_pub: &[u8]) -> Option<Hash> {
    let u = hash_parts(&[a_pub, b_pub]);
    // Public value: a plain check is fine.
    if u.iter().all(|&b| b == 0) { None } else { Some(u) }
}

/// `M1 = H((H(N) XOR H(PAD(g))) | H(I) | s | PAD(A) | PAD(B) | K)`.
fn compute_m1(ng_xor: &Hash, identity: &[u8], salt: &[u8; SALT_LEN], a_pub: &[u8], b_pub: &[u8], key: &Hash) -> Hash {
    let h_i = hash_parts(&[identity]);
    hash_parts(&[ng_xor, &h_i, salt, a_pub, b_pub, key])
}

/// `M2 = H(PAD(A) | M1 | K)`.
fn compute_m2(a_pub: &[u8], m1: &Hash, key: &Hash) -> Hash {
    hash_parts(&[a_pub, m1, key])
}

// ---------------------------------------------------------------------------
// Big-number steps, generic over the group size
// ---------------------------------------------------------------------------

/// Decodes a peer's public value: exactly `PAD()` width and in `1..N`. (Given
/// the exact width, `0 < X < N` is the same as `X mod N != 0` with `X`
/// already reduced.)
fn decode_public<const L: usize>(c: &GroupConsts<L>, bytes: &[u8]) -> Option<Uint<L>> {
    if bytes.len() != GroupConsts::<L>::LEN {
        return None;
    }
    let x = read_be::<L>(bytes);
    // Public value: variable-time comparison is fine.
    if x.is_zero_vartime() || x >= *c.params.modulus().as_ref() {
        return None;
    }
    Some(x)
}

/// In-place Montgomery multiplier: unlike the by-value `FixedMontyForm`
/// operators it does not copy the group parameters on every operation, which
/// keeps stack frames small.
type Multiplier<'a, const L: usize> = <FixedMontyForm<L> as MontyForm>::Multiplier<'a>;

/// Window table sizes of [`pow_secret`] (`2^width` entries of one group
/// element each, on the stack). Every width must divide the limb width (checked
/// below) so that a window never straddles two limbs.
///
/// Groups up to 2048 bits use 4-bit windows (a 16-entry table: 4 KiB at
/// 2048 bits). Larger groups use 2-bit windows (4 entries: 1.5 KiB at 3072
/// bits instead of 6 KiB): a 64 KiB-RAM appliance joining a 3072-bit leader
/// went over its RAM budget with the 16-entry table (docs/BENCHMARKS.md,
/// "Footprint"), at the price of one multiplication per 2 exponent bits
/// instead of per 4 (the client's 321-bit exponent: 161 instead of 81, next
/// to 320 squarings either way).
const TABLE_SMALL_GROUPS: usize = 16;
const TABLE_LARGE_GROUPS: usize = 4;
/// Largest modulus, in bits, that gets [`TABLE_SMALL_GROUPS`].
const SMALL_GROUP_BITS: u32 = 2048;
const _: () = assert!(Limb::BITS.is_multiple_of(TABLE_SMALL_GROUPS.trailing_zeros()));
const _: () = assert!(Limb::BITS.is_multiple_of(TABLE_LARGE_GROUPS.trailing_zeros()));
const _: () = assert!(TABLE_SMALL_GROUPS.is_power_of_two() && TABLE_LARGE_GROUPS.is_power_of_two());

/// `x * g mod N` for the small public generator `g`, by modular doublings
/// and additions (branching only on the bits of the public constant `g`).
/// Montgomery form is linear, so this works on Montgomery representatives.
fn mul_by_g<const L: usize>(x: &Uint<L>, g: u8, n: &NonZero<Uint<L>>) -> Uint<L> {
    let mut r = *x;
    let mut bit = u8::BITS - g.leading_zeros();
    // Skip g's top bit, which `r = x` already accounts for.
    while bit > 1 {
        bit -= 1;
        r = r.double_mod(n);
        if (g >> (bit - 1)) & 1 == 1 {
            r = r.add_mod(x, n);
        }
    }
    r
}

/// `g^e mod N` in Montgomery form, `e` bounded to `bits` bits.
///
/// Left-to-right binary exponentiation exploiting the small base: each bit
/// costs one squaring plus one to three modular additions (`acc * g`) and a
/// constant-time select on the secret bit. That is cheaper than a 4-bit window
/// (one squaring plus a quarter of a full multiplication per bit, plus a
/// table) and needs no table on the stack.
#[inline(never)]
fn g_pow<const L: usize>(c: &GroupConsts<L>, e: &U256, bits: u32) -> FixedMontyForm<L> {
    let n = c.params.modulus().as_nz_ref();
    let mut m = Multiplier::<L>::from(&c.params);
    let mut acc = FixedMontyForm::one(&c.params);
    let mut t = Uint::<L>::ZERO;
    let mut i = bits;
    while i > 0 {
        i -= 1;
        m.square_assign(&mut acc);
        t = mul_by_g(acc.as_montgomery(), c.g, n);
        acc.as_montgomery_mut().ct_assign(&t, e.bit(i));
    }
    t.zeroize();
    acc
}

/// The `width` exponent bits of `e` starting at bit `pos`, with bits at or
/// above `bits` masked off. Timing depends only on the public `pos`/`bits`.
fn window<const R: usize>(e: &Uint<R>, pos: u32, bits: u32, width: u32) -> Word {
    // width divides Limb::BITS (32 or 64), so a window never straddles limbs.
    let word = e.as_limbs().get((pos / Limb::BITS) as usize).map_or(0, |limb| limb.0);
    let mut idx = (word >> (pos % Limb::BITS)) & ((1 << width) - 1);
    let valid = bits.saturating_sub(pos);
    if valid < width {
        idx &= (1 << valid) - 1;
    }
    idx
}

/// `x = x^e mod N` (Montgomery form), `e` bounded to `bits` bits: fixed
/// window, constant time in `e`. The window width depends on the group size
/// only (see [`TABLE_SMALL_GROUPS`]); the result does not.
fn pow_secret<const L: usize, const R: usize>(c: &GroupConsts<L>, x: &mut FixedMontyForm<L>, e: &Uint<R>, bits: u32) {
    if Uint::<L>::BITS <= SMALL_GROUP_BITS {
        pow_windowed::<L, R, TABLE_SMALL_GROUPS>(c, x, e, bits);
    } else {
        pow_windowed::<L, R, TABLE_LARGE_GROUPS>(c, x, e, bits);
    }
}

/// [`pow_secret`] with a `T`-entry table (windows of `log2(T)` bits, `T` a
/// power of two whose log divides the limb width): every window does the
/// same squarings, one multiplication and a full constant-time table scan.
/// Works in place so that callers hold a single big number.
#[inline(never)]
fn pow_windowed<const L: usize, const R: usize, const T: usize>(
    c: &GroupConsts<L>,
    x: &mut FixedMontyForm<L>,
    e: &Uint<R>,
    bits: u32,
) {
    let width = T.trailing_zeros();
    let mut m = Multiplier::<L>::from(&c.params);
    let bits = bits.min(Uint::<R>::BITS);

    // table[i] = x^i (Montgomery form).
    let mut table = [*c.params.one(); T];
    let mut p = *x;
    for entry in table.iter_mut().skip(1) {
        *entry = *p.as_montgomery();
        m.mul_assign(&mut p, x);
    }

    // The table holds everything needed from x: reuse it as the accumulator.
    let acc = x;
    *acc.as_montgomery_mut() = *c.params.one();
    let windows = bits.div_ceil(width);
    let mut w = windows;
    while w > 0 {
        w -= 1;
        if w + 1 != windows {
            for _ in 0..width {
                m.square_assign(acc);
            }
        }
        let idx = window(e, w * width, bits, width);
        for (j, entry) in (0..).zip(table.iter()) {
            p.as_montgomery_mut().ct_assign(entry, CtEq::ct_eq(&j, &idx));
        }
        m.mul_assign(acc, &p);
    }
    table.zeroize();
    p.zeroize();
}

/// `x = x * y mod N` for `y` in normal (not Montgomery) form. Kept out of
/// line so that the temporary does not enlarge the callers' stack frames.
#[inline(never)]
fn mul_by<const L: usize>(c: &GroupConsts<L>, x: &mut FixedMontyForm<L>, y: &Uint<L>) {
    Multiplier::<L>::from(&c.params).mul_assign(x, &FixedMontyForm::new(y, &c.params));
}

/// `PAD(v)` for `v = g^x mod N` into `out` (`LEN` bytes).
#[inline(never)]
fn compute_verifier<const L: usize>(c: &GroupConsts<L>, x: &Hash, out: &mut [u8]) {
    let mut x = read_be::<{ U256::LIMBS }>(x);
    let mut v = g_pow(c, &x, HASH_BITS);
    x.zeroize();
    write_be(&v.retrieve(), out);
    v.zeroize();
}

/// `PAD(A)` for `A = g^a mod N` into `out`.
#[inline(never)]
fn compute_a_pub<const L: usize>(c: &GroupConsts<L>, a: &[u8; PRIVATE_LEN], out: &mut [u8]) {
    let mut a = read_be::<{ U256::LIMBS }>(a);
    let pub_a = g_pow(c, &a, PRIVATE_BITS);
    a.zeroize();
    write_be(&pub_a.retrieve(), out);
}

/// `PAD(B)` for `B = (k*v + g^b) mod N` into `out`.
#[inline(never)]
fn compute_b_pub<const L: usize>(c: &GroupConsts<L>, k: &Hash, v: &[u8], b: &[u8; PRIVATE_LEN], out: &mut [u8]) {
    let mut b = read_be::<{ U256::LIMBS }>(b);
    let mut gb = g_pow(c, &b, PRIVATE_BITS);
    b.zeroize();
    let mut pub_b = FixedMontyForm::new(&read_be::<L>(v), &c.params);
    mul_by(c, &mut pub_b, &read_be::<L>(k));
    let sum = pub_b.as_montgomery().add_mod(gb.as_montgomery(), c.params.modulus().as_nz_ref());
    *pub_b.as_montgomery_mut() = sum;
    gb.zeroize();
    write_be(&pub_b.retrieve(), out);
}

/// `x = (y - x) mod N` for `y` in normal (not Montgomery) form. Kept out of
/// line, as [`mul_by`]: `y`'s Montgomery form is a temporary as large as
/// `x` with its parameters.
#[inline(never)]
fn sub_from<const L: usize>(c: &GroupConsts<L>, x: &mut FixedMontyForm<L>, y: &Uint<L>) {
    let y = FixedMontyForm::new(y, &c.params);
    let mut diff = y.as_montgomery().sub_mod(x.as_montgomery(), c.params.modulus().as_nz_ref());
    *x.as_montgomery_mut() = diff;
    diff.zeroize();
}

/// Client premaster secret `S = (B - k*g^x)^(a + u*x) mod N`, as `PAD(S)`.
#[inline(never)]
fn client_premaster<const L: usize>(
    c: &GroupConsts<L>,
    k: &Hash,
    x: &Hash,
    a: &[u8; PRIVATE_LEN],
    u: &Hash,
    pub_b: &Uint<L>,
    out: &mut [u8],
) {
    let mut x = read_be::<{ U256::LIMBS }>(x);
    // The base (B - k*g^x) mod N is built in place, step by step, each step
    // out of line: at 3072 bits a helper holding its own copy of the base and
    // calling g_pow was the firmware's deepest stack (docs/BENCHMARKS.md,
    // "Footprint").
    let mut base = g_pow(c, &x, HASH_BITS);
    mul_by(c, &mut base, &read_be::<L>(k));
    sub_from(c, &mut base, pub_b);
    // Exact a + u*x as a 512-bit integer: u*x < 2^320 and a < 2^256, so
    // neither the product nor the sum can wrap.
    let mut e = read_be::<{ U512::LIMBS }>(u).wrapping_mul(&x);
    x.zeroize();
    let mut a_wide = read_be::<{ U512::LIMBS }>(a);
    e = e.wrapping_add(&a_wide);
    a_wide.zeroize();
    pow_secret(c, &mut base, &e, CLIENT_EXP_BITS);
    e.zeroize();
    let mut s_int = base.retrieve();
    base.zeroize();
    write_be(&s_int, out);
    s_int.zeroize();
}

/// Server premaster secret `S = (A * v^u)^b mod N`, as `PAD(S)`.
#[inline(never)]
fn server_premaster<const L: usize>(
    c: &GroupConsts<L>,
    v: &[u8],
    u: &Hash,
    b: &[u8; PRIVATE_LEN],
    pub_a: &Uint<L>,
    out: &mut [u8],
) {
    let mut base = FixedMontyForm::new(&read_be::<L>(v), &c.params);
    pow_secret(c, &mut base, &read_be::<{ U256::LIMBS }>(u), HASH_BITS);
    mul_by(c, &mut base, pub_a);
    let mut b = read_be::<{ U256::LIMBS }>(b);
    pow_secret(c, &mut base, &b, PRIVATE_BITS);
    b.zeroize();
    let mut s_int = base.retrieve();
    base.zeroize();
    write_be(&s_int, out);
    s_int.zeroize();
}

/// `K = H(PAD(S))`; zeroizes `s`.
fn session_key(s: &mut [u8]) -> Hash {
    let k = hash_parts(&[s]);
    s.zeroize();
    k
}

// ---------------------------------------------------------------------------
// Verifier
// ---------------------------------------------------------------------------

/// The leader's password verifier: group, salt and `v = g^x mod N`.
///
/// `v` is password-equivalent for offline guessing, so it is zeroized on drop
/// and not shown by `Debug`.
#[derive(Clone)]
pub struct Verifier {
    group: Group,
    salt: [u8; SALT_LEN],
    /// `PAD(v)`; only the first `group.byte_len()` bytes are used.
    v: [u8; MAX_PUBLIC_LEN],
}

impl Verifier {
    /// Derives the verifier for `identity` and `password` with `salt` (16
    /// bytes the caller draws from a CSPRNG).
    pub fn new(group: Group, identity: &[u8], password: &[u8], salt: [u8; SALT_LEN]) -> Self {
        let x = compute_x(identity, password, &salt);
        let mut v = [0u8; MAX_PUBLIC_LEN];
        // c.len() <= MAX_PUBLIC_LEN (compile-time check on GroupConsts::LEN).
        with_group!(group, |c| compute_verifier(c, &x, &mut v[..c.len()]));
        Verifier { group, salt, v }
    }

    /// The group this verifier belongs to.
    pub fn group(&self) -> Group {
        self.group
    }

    /// The salt `s`, which the leader sends to the joining member.
    pub fn salt(&self) -> &[u8; SALT_LEN] {
        &self.salt
    }

    /// `PAD(v)`.
    fn v(&self) -> &[u8] {
        // byte_len() <= MAX_PUBLIC_LEN for every group (checked at compile time).
        &self.v[..self.group.byte_len()]
    }
}

impl Drop for Verifier {
    fn drop(&mut self) {
        self.v.zeroize();
        self.salt.zeroize();
    }
}

impl ZeroizeOnDrop for Verifier {}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").field("group", &self.group).field("salt", &self.salt).finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Leader (server) side
// ---------------------------------------------------------------------------

/// The leader's half of a handshake: the secret `b` and public `B`.
pub struct ServerHandshake {
    group: Group,
    b: [u8; PRIVATE_LEN],
    /// `PAD(B)`; only the first `group.byte_len()` bytes are used.
    public: [u8; MAX_PUBLIC_LEN],
}

impl ServerHandshake {
    /// Starts a handshake for `verifier` with the secret `b` (32 bytes from a
    /// CSPRNG, never reused), computing `B = (k*v + g^b) mod N`.
    pub fn new(verifier: &Verifier, mut b: [u8; PRIVATE_LEN]) -> Self {
        let mut hs = ServerHandshake { group: verifier.group, b, public: [0u8; MAX_PUBLIC_LEN] };
        // c.len() <= MAX_PUBLIC_LEN (compile-time check on GroupConsts::LEN).
        with_group!(verifier.group, |c| {
            let (k, _) = group_hashes(c);
            compute_b_pub(c, &k, verifier.v(), &hs.b, &mut hs.public[..c.len()]);
        });
        b.zeroize();
        hs
    }

    /// The group of this handshake.
    pub fn group(&self) -> Group {
        self.group
    }

    /// `PAD(B)`, [`Group::byte_len`] bytes, to send to the joining member.
    pub fn public_key(&self) -> &[u8] {
        // byte_len() <= MAX_PUBLIC_LEN for every group (checked at compile time).
        &self.public[..self.group.byte_len()]
    }

    /// Checks the joining member's public key `A` and proof `M1`.
    ///
    /// `verifier` must be the one this handshake was started with (a different
    /// one, or one of another group, makes the proof fail). On success returns
    /// the session: the key `K` and the proof `M2` to send back.
    ///
    /// # Errors
    ///
    /// [`SrpError::InvalidPublicKey`] if `client_public` is not exactly
    /// [`Group::byte_len`] bytes, not in `1..N`, or gives `u == 0`;
    /// [`SrpError::BadProof`] if `client_proof` does not match.
    pub fn verify_client(
        &self,
        verifier: &Verifier,
        identity: &[u8],
        client_public: &[u8],
        client_proof: &[u8],
    ) -> Result<ServerSession, SrpError> {
        let b_pub = self.public_key();
        let (key, m1) = with_group!(self.group, |c| {
            let a_pub = decode_public(c, client_public).ok_or(SrpError::InvalidPublicKey)?;
            let u = compute_u(client_public, b_pub).ok_or(SrpError::InvalidPublicKey)?;
            if verifier.group != self.group {
                return Err(SrpError::BadProof);
            }
            let mut s = [0u8; MAX_PUBLIC_LEN];
            // c.len() <= MAX_PUBLIC_LEN (compile-time check on GroupConsts::LEN).
            let s = &mut s[..c.len()];
            server_premaster(c, verifier.v(), &u, &self.b, &a_pub, s);
            let key = Zeroizing::new(session_key(s));
            let (_, ng_xor) = group_hashes(c);
            let m1 = compute_m1(&ng_xor, identity, &verifier.salt, client_public, b_pub, &key);
            if !bool::from(subtle::ConstantTimeEq::ct_eq(m1.as_slice(), client_proof)) {
                return Err(SrpError::BadProof);
            }
            (key, m1)
        });
        let session = ServerSession { key: *key, m2: compute_m2(client_public, &m1, &key) };
        Ok(session)
    }
}

impl Drop for ServerHandshake {
    fn drop(&mut self) {
        self.b.zeroize();
    }
}

impl ZeroizeOnDrop for ServerHandshake {}

impl fmt::Debug for ServerHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerHandshake").field("group", &self.group).finish_non_exhaustive()
    }
}

/// The leader's result of a successful handshake: the session key and the
/// proof `M2` to send to the joining member.
pub struct ServerSession {
    key: [u8; SESSION_KEY_LEN],
    m2: [u8; PROOF_LEN],
}

impl ServerSession {
    /// The session key `K = H(PAD(S))`.
    pub fn key(&self) -> &[u8; SESSION_KEY_LEN] {
        &self.key
    }

    /// The server proof `M2 = H(PAD(A) | M1 | K)` to send to the joining member.
    pub fn server_proof(&self) -> &[u8; PROOF_LEN] {
        &self.m2
    }

    /// Consumes the session, keeping only the key.
    pub fn into_key(self) -> SessionKey {
        SessionKey(self.key)
    }
}

impl Drop for ServerSession {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

impl ZeroizeOnDrop for ServerSession {}

impl fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSession").finish_non_exhaustive()
    }
}

// ---------------------------------------------------------------------------
// Joining member (client) side
// ---------------------------------------------------------------------------

/// The joining member's half of a handshake: the secret `a` and public `A`.
pub struct ClientHandshake {
    group: Group,
    a: [u8; PRIVATE_LEN],
    /// `PAD(A)`; only the first `group.byte_len()` bytes are used.
    public: [u8; MAX_PUBLIC_LEN],
}

impl ClientHandshake {
    /// Starts a handshake in `group` with the secret `a` (32 bytes from a
    /// CSPRNG, never reused), computing `A = g^a mod N`.
    pub fn new(group: Group, mut a: [u8; PRIVATE_LEN]) -> Self {
        let mut hs = ClientHandshake { group, a, public: [0u8; MAX_PUBLIC_LEN] };
        // c.len() <= MAX_PUBLIC_LEN (compile-time check on GroupConsts::LEN).
        with_group!(group, |c| compute_a_pub(c, &hs.a, &mut hs.public[..c.len()]));
        a.zeroize();
        hs
    }

    /// The group of this handshake.
    pub fn group(&self) -> Group {
        self.group
    }

    /// `PAD(A)`, [`Group::byte_len`] bytes, to send to the leader.
    pub fn public_key(&self) -> &[u8] {
        // byte_len() <= MAX_PUBLIC_LEN for every group (checked at compile time).
        &self.public[..self.group.byte_len()]
    }

    /// Processes the leader's salt and public key `B` and computes the session
    /// key and the proof `M1` to send.
    ///
    /// # Errors
    ///
    /// [`SrpError::InvalidPublicKey`] if `server_public` is not exactly
    /// [`Group::byte_len`] bytes, not in `1..N`, or gives `u == 0`.
    pub fn process_challenge(
        &self,
        identity: &[u8],
        password: &[u8],
        salt: &[u8; SALT_LEN],
        server_public: &[u8],
    ) -> Result<ClientSession, SrpError> {
        let a_pub = self.public_key();
        with_group!(self.group, |c| {
            let b_pub = decode_public(c, server_public).ok_or(SrpError::InvalidPublicKey)?;
            let u = compute_u(a_pub, server_public).ok_or(SrpError::InvalidPublicKey)?;
            let x = compute_x(identity, password, salt);
            let (k, ng_xor) = group_hashes(c);
            let mut s = [0u8; MAX_PUBLIC_LEN];
            // c.len() <= MAX_PUBLIC_LEN (compile-time check on GroupConsts::LEN).
            let s = &mut s[..c.len()];
            client_premaster(c, &k, &x, &self.a, &u, &b_pub, s);
            let key = Zeroizing::new(session_key(s));
            let m1 = compute_m1(&ng_xor, identity, salt, a_pub, server_public, &key);
            Ok(ClientSession { key: *key, m1, m2: compute_m2(a_pub, &m1, &key) })
        })
    }
}

impl Drop for ClientHandshake {
    fn drop(&mut self) {
        self.a.zeroize();
    }
}

impl ZeroizeOnDrop for ClientHandshake {}

impl fmt::Debug for ClientHandshake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientHandshake").field("group", &self.group).finish_non_exhaustive()
    }
}

/// The joining member's state after processing the challenge: the proof `M1`
/// to send and the `M2` expected back. The key is released only by
/// [`ClientSession::verify_server`].
pub struct ClientSession {
    key: [u8; SESSION_KEY_LEN],
    m1: [u8; PROOF_LEN],
    m2: [u8; PROOF_LEN],
}

impl ClientSession {
    /// The client proof `M1` to send to the leader.
    pub fn client_proof(&self) -> &[u8; PROOF_LEN] {
        &self.m1
    }

    /// Checks the leader's proof `M2` (in constant time) and, if it matches,
    /// releases the session key.
    ///
    /// # Errors
    ///
    /// [`SrpError::BadProof`] if `server_proof` is not the expected `M2`.
    pub fn verify_server(self, server_proof: &[u8]) -> Result<SessionKey, SrpError> {
        if bool::from(subtle::ConstantTimeEq::ct_eq(self.m2.as_slice(), server_proof)) {
            Ok(SessionKey(self.key))
        } else {
            Err(SrpError::BadProof)
        }
    }
}

impl Drop for ClientSession {
    fn drop(&mut self) {
        self.key.zeroize();
        self.m2.zeroize();
    }
}

impl ZeroizeOnDrop for ClientSession {}

impl fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientSession").finish_non_exhaustive()
    }
}

/// A verified SRP session key `K` (20 bytes), zeroized on drop.
pub struct SessionKey([u8; SESSION_KEY_LEN]);

impl SessionKey {
    /// The key bytes.
    pub fn as_bytes(&self) -> &[u8; SESSION_KEY_LEN] {
        &self.0
    }
}

impl Drop for SessionKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl ZeroizeOnDrop for SessionKey {}

impl fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    extern crate std;

    use super::*;
    use hex_literal::hex;

    // ---- RFC 5054 Appendix A 1024-bit group and Appendix B vector ----

    static G1024: GroupConsts<{ crypto_bigint::U1024::LIMBS }> = GroupConsts::new(
        concat!(
            "EEAF0AB9ADB38DD69C33F80AFA8FC5E86072618775FF3C0B9EA2314C9C256576",
            "D674DF7496EA81D3383B4813D692C6E0E0D5D8E250B98BE48E495C1D6089DAD1",
            "5DC7D7B46154D6B6CE8EF4AD69B15D4982559B297BCF1885C529F566660E57EC",
            "68EDBC3C05726CC02FD4CBF4976EAA9AFD5138FE8376435B9FC61D2FC0EB06E3",
        ),
        2,
    );

    const RFC_I: &[u8] = b"alice";
    const RFC_P: &[u8] = b"password123";
    const RFC_S: [u8; SALT_LEN] = hex!("BEB25379 D1A8581E B5A72767 3A2441EE");
    const RFC_K: Hash = hex!("7556AA04 5AEF2CDD 07ABAF0F 665C3E81 8913186F");
    const RFC_X: Hash = hex!("94B7555A ABE9127C C58CCF49 93DB6CF8 4D16C124");
    const RFC_V: [u8; 128] = hex!(
        "7E273DE8 696FFC4F 4E337D05 B4B375BE B0DDE156 9E8FA00A 9886D812"
        "9BADA1F1 822223CA 1A605B53 0E379BA4 729FDC59 F105B478 7E5186F5"
        "C671085A 1447B52A 48CF1970 B4FB6F84 00BBF4CE BFBB1681 52E08AB5"
        "EA53D15C 1AFF87B2 B9DA6E04 E058AD51 CC72BFC9 033B564E 26480D78"
        "E955A5E2 9E7AB245 DB2BE315 E2099AFB"
    );
    const RFC_A_PRIV: [u8; PRIVATE_LEN] =
        hex!("60975527 035CF2AD 1989806F 0407210B C81EDC04 E2762A56 AFD529DD DA2D4393");
    const RFC_B_PRIV: [u8; PRIVATE_LEN] =
        hex!("E487CB59 D31AC550 471E81F0 0F6928E0 1DDA08E9 74A004F4 9E61F5D1 05284D20");
    const RFC_A: [u8; 128] = hex!(
        "61D5E490 F6F1B795 47B0704C 436F523D D0E560F0 C64115BB 72557EC4"
        "4352E890 3211C046 92272D8B 2D1A5358 A2CF1B6E 0BFCF99F 921530EC"
        "8E393561 79EAE45E 42BA92AE ACED8251 71E1E8B9 AF6D9C03 E1327F44"
        "BE087EF0 6530E69F 66615261 EEF54073 CA11CF58 58F0EDFD FE15EFEA"
        "B349EF5D 76988A36 72FAC47B 0769447B"
    );
    const RFC_B: [u8; 128] = hex!(
        "BD0C6151 2C692C0C B6D041FA 01BB152D 4916A1E7 7AF46AE1 05393011"
        "BAF38964 DC46A067 0DD125B9 5A981652 236F99D9 B681CBF8 7837EC99"
        "6C6DA044 53728610 D0C6DDB5 8B318885 D7D82C7F 8DEB75CE 7BD4FBAA"
        "37089E6F 9C6059F3 88838E7A 00030B33 1EB76840 910440B1 B27AAEAE"
        "EB4012B7 D7665238 A8E3FB00 4B117B58"
    );
    const RFC_U: Hash = hex!("CE38B959 3487DA98 554ED47D 70A7AE5F 462EF019");
    const RFC_PREMASTER: [u8; 128] = hex!(
        "B0DC82BA BCF30674 AE450C02 87745E79 90A3381F 63B387AA F271A10D"
        "233861E3 59B48220 F7C4693C 9AE12B0A 6F67809F 0876E2D0 13800D6C"
        "41BB59B6 D5979B5C 00A172B4 A2A5903A 0BDCAF8A 709585EB 2AFAFA8F"
        "3499B200 210DCC1F 10EB3394 3CD67FC8 8A2F39A4 BE5BEC4E C0A3212D"
        "C346D7E4 74B29EDE 8A469FFE CA686E5A"
    );

    #[test]
    fn rfc5054_appendix_b() {
        let c = &G1024;
        assert_eq!(c.len(), 128);
        let (k, ng_xor) = group_hashes(c);
        assert_eq!(k, RFC_K);

        let x = compute_x(RFC_I, RFC_P, &RFC_S);
        assert_eq!(*x, RFC_X);

        let mut v = [0u8; 128];
        compute_verifier(c, &x, &mut v);
        assert_eq!(v, RFC_V);

        let mut a_pub = [0u8; 128];
        compute_a_pub(c, &RFC_A_PRIV, &mut a_pub);
        assert_eq!(a_pub, RFC_A);

        let mut b_pub = [0u8; 128];
        compute_b_pub(c, &k, &v, &RFC_B_PRIV, &mut b_pub);
        assert_eq!(b_pub, RFC_B);

        let u = compute_u(&a_pub, &b_pub).unwrap();
        assert_eq!(u, RFC_U);

        let b_int = decode_public(c, &b_pub).unwrap();
        let mut s_client = [0u8; 128];
        client_premaster(c, &k, &x, &RFC_A_PRIV, &u, &b_int, &mut s_client);
        assert_eq!(s_client, RFC_PREMASTER);

        let a_int = decode_public(c, &a_pub).unwrap();
        let mut s_server = [0u8; 128];
        server_premaster(c, &v, &u, &RFC_B_PRIV, &a_int, &mut s_server);
        assert_eq!(s_server, RFC_PREMASTER);

        // Beyond the RFC (which stops at the premaster secret): K = H(S) as
        // published by other SHA-1 SRP implementations, and M1/M2 with this
        // module's H(N) XOR H(PAD(g)), cross-checked with an independent
        // Python implementation.
        let key = session_key(&mut s_client);
        assert_eq!(s_client, [0u8; 128], "PAD(S) is zeroized");
        assert_eq!(key, hex!("017eefa1cefc5c2e626e21598987f31e0f1b11bb"));
        let m1 = compute_m1(&ng_xor, RFC_I, &RFC_S, &a_pub, &b_pub, &key);
        assert_eq!(m1, hex!("62c71b289cb22a034b405667e1541202ce5d8e03"));
        assert_eq!(compute_m2(&a_pub, &m1, &key), hex!("b475d7f2d75ce9537748005483e5d326048b59e9"));
    }

    // ---- Exponentiation helpers against crypto-bigint's reference ----

    fn check_pows<const L: usize>(c: &GroupConsts<L>) {
        let n = c.params.modulus().as_ref();
        let base = FixedMontyForm::new(&n.wrapping_sub(&Uint::from_u8(3)), &c.params);
        let g = FixedMontyForm::new(&Uint::from_u8(c.g), &c.params);
        let wide: [U512; 5] = [
            U512::ZERO,
            U512::ONE,
            U512::from_u64(0b1011_0110),
            read_be(&hex!("01 60975527 035CF2AD 1989806F 0407210B C81EDC04 E2762A56 AFD529DD DA2D4393 CE38B959")),
            U512::MAX,
        ];
        for bits in [0, 1, 3, 4, 5, 31, 32, 33, 63, 64, 65, 160, 255, 256, 321, 511, 512, 600] {
            for e in &wide {
                let expected = base.pow_bounded_exp(e, bits).retrieve();
                let mut x = base;
                pow_secret(c, &mut x, e, bits);
                assert_eq!(x.retrieve(), expected, "bits {bits}");
                // Every window width gives the same result, whatever the group size.
                let mut x = base;
                pow_windowed::<L, { U512::LIMBS }, TABLE_SMALL_GROUPS>(c, &mut x, e, bits);
                assert_eq!(x.retrieve(), expected, "16-entry table, bits {bits}");
                let mut x = base;
                pow_windowed::<L, { U512::LIMBS }, TABLE_LARGE_GROUPS>(c, &mut x, e, bits);
                assert_eq!(x.retrieve(), expected, "4-entry table, bits {bits}");
                let mut x = base;
                pow_windowed::<L, { U512::LIMBS }, 2>(c, &mut x, e, bits);
                assert_eq!(x.retrieve(), expected, "2-entry table, bits {bits}");
                let e: U256 = e.resize();
                let expected = g.pow_bounded_exp(&e, bits).retrieve();
                assert_eq!(g_pow(c, &e, bits.min(256)).retrieve(), expected, "g, bits {bits}");
            }
        }
    }

    #[test]
    fn pow_helpers_match_library() {
        check_pows(&G1024);
        check_pows(&G2048);
        check_pows(&G3072);
    }

    // ---- Round trips ----

    fn round_trip(group: Group, seed: u8) -> (ServerSession, SessionKey) {
        let identity = b"lifeline:987654321";
        let password = b"correct horse";
        let verifier = Verifier::new(group, identity, password, [seed; SALT_LEN]);
        assert_eq!(verifier.group(), group);
        assert_eq!(verifier.salt(), &[seed; SALT_LEN]);

        let server = ServerHandshake::new(&verifier, [seed.wrapping_add(1); PRIVATE_LEN]);
        let client = ClientHandshake::new(group, [seed.wrapping_add(2); PRIVATE_LEN]);
        assert_eq!(server.public_key().len(), group.byte_len());
        assert_eq!(client.public_key().len(), group.byte_len());

        let session = client.process_challenge(identity, password, verifier.salt(), server.public_key()).unwrap();
        let server_session =
            server.verify_client(&verifier, identity, client.public_key(), session.client_proof()).unwrap();
        let key = session.verify_server(server_session.server_proof()).unwrap();
        assert_eq!(key.as_bytes(), server_session.key());
        (server_session, key)
    }

    #[test]
    fn round_trip_2048() {
        let (s, k) = round_trip(Group::Rfc5054_2048, 7);
        assert_eq!(s.into_key().as_bytes(), k.as_bytes());
    }

    #[test]
    fn round_trip_3072() {
        round_trip(Group::Rfc5054_3072, 9);
    }

    #[test]
    fn group_ids() {
        for g in [Group::Rfc5054_2048, Group::Rfc5054_3072] {
            assert_eq!(Group::from_id(g.id()), Some(g));
        }
        assert_eq!(Group::Rfc5054_2048.byte_len(), 256);
        assert_eq!(Group::Rfc5054_3072.byte_len(), 384);
        assert_eq!(G2048.len(), 256);
        assert_eq!(G3072.len(), 384);
        assert_eq!(Group::from_id(0), None);
        assert_eq!(Group::from_id(1), None);
        assert_eq!(Group::from_id(4), None);
    }

    // ---- Failures ----

    const I: &[u8] = b"lifeline:123456789";
    const P: &[u8] = b"246810";
    const SALT: [u8; SALT_LEN] = RFC_S;

    #[test]
    fn wrong_password_is_bad_proof() {
        let group = Group::Rfc5054_2048;
        let verifier = Verifier::new(group, I, P, SALT);
        let server = ServerHandshake::new(&verifier, RFC_B_PRIV);
        let client = ClientHandshake::new(group, RFC_A_PRIV);
        let session = client.process_challenge(I, b"246811", &SALT, server.public_key()).unwrap();
        let err = server.verify_client(&verifier, I, client.public_key(), session.client_proof()).unwrap_err();
        assert_eq!(err, SrpError::BadProof);

        // Right password, wrong identity in the proof.
        let session = client.process_challenge(I, P, &SALT, server.public_key()).unwrap();
        let err =
            server.verify_client(&verifier, b"lifeline:0", client.public_key(), session.client_proof()).unwrap_err();
        assert_eq!(err, SrpError::BadProof);

        // Truncated, extended and empty proofs.
        let m1 = session.client_proof();
        for proof in [&m1[..19], &[m1.as_slice(), &[0]].concat()[..], &[][..]] {
            let err = server.verify_client(&verifier, I, client.public_key(), proof).unwrap_err();
            assert_eq!(err, SrpError::BadProof);
        }

        // A verifier from another group.
        let other = Verifier::new(Group::Rfc5054_3072, I, P, SALT);
        let err = server.verify_client(&other, I, client.public_key(), session.client_proof()).unwrap_err();
        assert_eq!(err, SrpError::BadProof);

        // And the genuine proof still works.
        assert!(server.verify_client(&verifier, I, client.public_key(), session.client_proof()).is_ok());
    }

    #[test]
    fn tampered_m2_is_bad_proof() {
        let group = Group::Rfc5054_2048;
        let verifier = Verifier::new(group, I, P, SALT);
        let server = ServerHandshake::new(&verifier, RFC_B_PRIV);
        let client = ClientHandshake::new(group, RFC_A_PRIV);
        let process = || client.process_challenge(I, P, &SALT, server.public_key()).unwrap();
        let server_session = server.verify_client(&verifier, I, client.public_key(), process().client_proof()).unwrap();
        let m2 = *server_session.server_proof();
        for i in 0..PROOF_LEN {
            let mut bad = m2;
            bad[i] ^= 0x01;
            assert_eq!(process().verify_server(&bad).unwrap_err(), SrpError::BadProof);
        }
        assert_eq!(process().verify_server(&m2[..19]).unwrap_err(), SrpError::BadProof);
        assert_eq!(process().verify_server(&[]).unwrap_err(), SrpError::BadProof);
        assert_eq!(process().verify_server(&[m2.as_slice(), &[0]].concat()).unwrap_err(), SrpError::BadProof);
        // A client proof is not a server proof.
        let session = process();
        let m1 = *session.client_proof();
        assert_eq!(session.verify_server(&m1).unwrap_err(), SrpError::BadProof);
        assert!(process().verify_server(&m2).is_ok());
    }

    /// Public keys every receiver must reject, for a group.
    fn bad_publics(group: Group) -> std::vec::Vec<std::vec::Vec<u8>> {
        let len = group.byte_len();
        let mut n = [0u8; MAX_PUBLIC_LEN];
        with_group!(group, |c| write_be(c.params.modulus().as_ref(), &mut n[..len]));
        let n = &n[..len];
        let mut n_plus_1 = n.to_vec();
        for byte in n_plus_1.iter_mut().rev() {
            let (sum, carry) = byte.overflowing_add(1);
            *byte = sum;
            if !carry {
                break;
            }
        }
        let mut one = std::vec![0u8; len];
        *one.last_mut().unwrap() = 1;
        std::vec![
            std::vec![0u8; len],         // 0
            n.to_vec(),                  // N
            n_plus_1,                    // N + 1
            std::vec![0xFF; len],        // > N
            [n, n].concat(),             // 2N-length garbage (N | N)
            std::vec![0xAB; 2 * len],    // 2N-length garbage
            [&[0u8][..], &one].concat(), // 1, but one byte too long
            one[1..].to_vec(),           // 1, but one byte too short
            std::vec![1],                // unpadded 1
            std::vec![],                 // empty
            std::vec![0u8; MAX_PUBLIC_LEN + 1],
        ]
    }

    #[test]
    fn server_rejects_bad_a() {
        for group in [Group::Rfc5054_2048, Group::Rfc5054_3072] {
            let verifier = Verifier::new(group, I, P, SALT);
            let server = ServerHandshake::new(&verifier, RFC_B_PRIV);
            for a in bad_publics(group) {
                let err = server.verify_client(&verifier, I, &a, &[0u8; PROOF_LEN]).unwrap_err();
                assert_eq!(err, SrpError::InvalidPublicKey, "len {}", a.len());
            }
            // N - 1 and 1 are in range: they get as far as the proof check.
            let mut one = std::vec![0u8; group.byte_len()];
            *one.last_mut().unwrap() = 1;
            let err = server.verify_client(&verifier, I, &one, &[0u8; PROOF_LEN]).unwrap_err();
            assert_eq!(err, SrpError::BadProof);
        }
    }

    #[test]
    fn client_rejects_bad_b() {
        for group in [Group::Rfc5054_2048, Group::Rfc5054_3072] {
            let client = ClientHandshake::new(group, RFC_A_PRIV);
            for b in bad_publics(group) {
                let err = client.process_challenge(I, P, &SALT, &b).unwrap_err();
                assert_eq!(err, SrpError::InvalidPublicKey, "len {}", b.len());
            }
            // A 2048-bit B offered to a 3072-bit client and vice versa.
            let other = match group {
                Group::Rfc5054_2048 => Group::Rfc5054_3072,
                Group::Rfc5054_3072 => Group::Rfc5054_2048,
            };
            let verifier = Verifier::new(other, I, P, SALT);
            let server = ServerHandshake::new(&verifier, RFC_B_PRIV);
            let err = client.process_challenge(I, P, &SALT, server.public_key()).unwrap_err();
            assert_eq!(err, SrpError::InvalidPublicKey);
        }
    }

    #[test]
    fn u_zero_is_rejected() {
        // u == 0 cannot be provoked with SHA-1; check the predicate itself.
        assert!(compute_u(&[1], &[2]).is_some());
        let zero_u: Option<Hash> = {
            let u = [0u8; HASH_LEN];
            if u.iter().all(|&b| b == 0) { None } else { Some(u) }
        };
        assert_eq!(zero_u, None);
    }

    #[test]
    fn encoding_helpers() {
        let x = read_be::<{ U256::LIMBS }>(&hex!("0102"));
        assert_eq!(x, U256::from_u32(0x0102));
        let mut out = [0u8; 32];
        write_be(&x, &mut out);
        assert_eq!(out[30..], hex!("0102"));
        assert!(out[..30].iter().all(|&b| b == 0));
        let full: [u8; 32] = core::array::from_fn(|i| i as u8 + 1);
        let mut back = [0u8; 32];
        write_be(&read_be::<{ U256::LIMBS }>(&full), &mut back);
        assert_eq!(back, full);
    }

    #[test]
    fn debug_hides_secrets() {
        use std::format;
        let verifier = Verifier::new(Group::Rfc5054_2048, I, P, SALT);
        let server = ServerHandshake::new(&verifier, RFC_B_PRIV);
        let client = ClientHandshake::new(Group::Rfc5054_2048, RFC_A_PRIV);
        let session = client.process_challenge(I, P, &SALT, server.public_key()).unwrap();
        let ss = server.verify_client(&verifier, I, client.public_key(), session.client_proof()).unwrap();
        let m2 = *ss.server_proof();
        let key = session.verify_server(&m2).unwrap();
        let dbg = format!("{verifier:?} {server:?} {client:?} {ss:?} {key:?}");
        assert_eq!(
            dbg,
            format!(
                "Verifier {{ group: Rfc5054_2048, salt: {SALT:?}, .. }} \
                 ServerHandshake {{ group: Rfc5054_2048, .. }} \
                 ClientHandshake {{ group: Rfc5054_2048, .. }} \
                 ServerSession {{ .. }} SessionKey(..)"
            )
        );
        assert_eq!(format!("{}", SrpError::BadProof), "SRP proof mismatch");
        assert_eq!(format!("{}", SrpError::InvalidPublicKey), "invalid SRP public key");
    }

    // ---- Lifeline's own 2048-bit vector ----

    const FIXED_I: &[u8] = b"lifeline:123456789";
    const FIXED_P: &[u8] = b"246810";
    const FIXED_A: [u8; 256] = hex!(
        "4b700f8d48e69c9aae40c684ac7c7c03121e2b7602eb4c3514804ccada0ed401"
        "9193a351ecc65a6f854ede91eb096e721b22d701c7adc64e9cedacd75f2e26bb"
        "2f5e45dd53dc8dbeafffe82aa49fca0573444691212537a73cf80e2503925820"
        "5a7edf4749b30adaf25877c62fcd09d6613598bcd4baf2a9727a53706a278148"
        "992b2abb23ad5d512d269e16ca11bc0895b5a3b5ec4721cde40a8c39c796e94f"
        "0be86dbbeb33da7037018983921aba3f5053195d5ac1da4e567e3c0e75d9e060"
        "9f92e850657b2be4771f415b9cacc5c1ecedc30133bf6474f5022c6519d78076"
        "0ca4d8d3b966b034bd73877c1b3b33f474b9c3c5299a1968f3e6cd3bfe84445a"
    );
    const FIXED_B: [u8; 256] = hex!(
        "20efb3ec299c9cf61caa46cfe8a458573e39e26394a2284ccf4cf0ad6261b63d"
        "e3cc123432598e7afaab8e9e0662ab5367044143abf84c188d312519b705e7dd"
        "2efe851a1e4c4334d3f2685cf1ef703149ef2ab73e4662398054c029e6390c94"
        "f0b7f615fb9e7c5483a1fc0fd2c0f9c593fe44bcb5163aa56f383eb16092ab31"
        "d87b3282ad4fcb70e3f57f2f929e1d189bae8062646c94c76915f1d24f99c6bb"
        "e16ee74204338d59c6e06586e0fdeffe7e3489a622f17eb9f42ab0559f5c17b8"
        "7c14073213cca4f9a0db340f9e9518ba43682b0e1a76a0ffe91e4349605bd34c"
        "430e731c6b06b57a5c326d61dff3c068d745c8f715119328fafe81d3973f1a7a"
    );
    const FIXED_K: [u8; SESSION_KEY_LEN] = hex!("cbc5e7bc07c4afe49cdb16bc3f899c9413da54fc");
    const FIXED_M1: [u8; PROOF_LEN] = hex!("a19eb5e164f3e556aacb465a82162a083cfd7977");
    const FIXED_M2: [u8; PROOF_LEN] = hex!("7ed6e90d3a583a965a44de652d5d8fc3e1c96fb4");

    /// Runs the fixed 2048-bit handshake (salt, a and b as in RFC 5054
    /// Appendix B) and returns `(A, B, M1, M2, K)`.
    fn fixed_2048() -> (std::vec::Vec<u8>, std::vec::Vec<u8>, Hash, Hash, Hash) {
        let group = Group::Rfc5054_2048;
        let verifier = Verifier::new(group, FIXED_I, FIXED_P, RFC_S);
        let server = ServerHandshake::new(&verifier, RFC_B_PRIV);
        let client = ClientHandshake::new(group, RFC_A_PRIV);
        let session = client.process_challenge(FIXED_I, FIXED_P, verifier.salt(), server.public_key()).unwrap();
        let m1 = *session.client_proof();
        let ss = server.verify_client(&verifier, FIXED_I, client.public_key(), &m1).unwrap();
        let m2 = *ss.server_proof();
        let key = session.verify_server(&m2).unwrap();
        assert_eq!(key.as_bytes(), ss.key());
        (client.public_key().to_vec(), server.public_key().to_vec(), m1, m2, *key.as_bytes())
    }

    #[test]
    fn fixed_2048_vector() {
        // Values cross-checked with an independent Python implementation of
        // the construction in the module docs.
        let (a, b, m1, m2, k) = fixed_2048();
        assert_eq!(a, FIXED_A);
        assert_eq!(b, FIXED_B);
        assert_eq!(m1, FIXED_M1);
        assert_eq!(m2, FIXED_M2);
        assert_eq!(k, FIXED_K);
    }

    #[test]
    #[ignore = "prints the fixed 2048-bit vector for docs/PROTOCOL.md"]
    fn print_fixed_2048_vector() {
        use std::println;
        fn hex(bytes: &[u8]) -> std::string::String {
            bytes.iter().map(|b| std::format!("{b:02x}")).collect()
        }
        let (a, b, m1, m2, k) = fixed_2048();
        println!("group = 2 (RFC 5054 2048-bit, g = 2), H = SHA-1");
        println!("I     = {:?}", core::str::from_utf8(FIXED_I).unwrap());
        println!("P     = {:?}", core::str::from_utf8(FIXED_P).unwrap());
        println!("s     = {}", hex(&RFC_S));
        println!("a     = {}", hex(&RFC_A_PRIV));
        println!("b     = {}", hex(&RFC_B_PRIV));
        let verifier = Verifier::new(Group::Rfc5054_2048, FIXED_I, FIXED_P, RFC_S);
        println!("v     = {}", hex(verifier.v()));
        println!("A     = {}", hex(&a));
        println!("B     = {}", hex(&b));
        println!("u     = {}", hex(&compute_u(&a, &b).unwrap()));
        println!("M1    = {}", hex(&m1));
        println!("M2    = {}", hex(&m2));
        println!("K     = {}", hex(&k));
    }
}
