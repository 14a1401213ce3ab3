//! Greatest common divisors of big integers, for reducing exact
//! rationals: the one cost of exact arithmetic that grows with the square
//! of the numbers' length. Head 1's weights at L positions have L-bit
//! denominators 2^i − 1, so every reduction of a head-1 value is a gcd of
//! L-bit numbers.

use super::Rat;
use num_bigint::{BigInt, BigUint, Sign};
use num_integer::Integer;
use num_traits::{ToPrimitive, Zero};

/// gcd(|a|, |b|). num-bigint's gcd is the binary algorithm, one shift and
/// subtraction of the full numbers per bit of the larger: O(n²) word steps
/// for an n-word operand even when the other operand is one word (a
/// product of head 1's L-bit weight and a small matrix entry paid L² / 64
/// for a gcd that is 1). One division step first leaves two operands of
/// the smaller's size; one that fits a word is then a machine gcd, two
/// big ones go to [`lehmer`].
pub(crate) fn gcd(a: &BigInt, b: &BigInt) -> BigInt {
    let (a, b) = (a.magnitude(), b.magnitude());
    let (big, small) = if a.bits() >= b.bits() { (a, b) } else { (b, a) };
    if small.is_zero() {
        return BigInt::from(big.clone());
    }
    if let Some(s) = small.to_u64() {
        let r = (big % s).to_u64().expect("a remainder below a u64");
        return BigInt::from(r.gcd(&s));
    }
    BigInt::from(lehmer(big % small, small.clone()))
}

/// gcd(a, b) by Lehmer's algorithm (Knuth, TAOCP 4.5.2,
/// Algorithm L): the quotients of Euclid's algorithm are found from the
/// leading 64 bits of both numbers while they agree for both roundings,
/// and applied to the full numbers at once as one 2×2 matrix; a full
/// division step when none can be found. About n/30 steps of O(n) words
/// for n-word operands where the binary algorithm takes 64·n of them.
fn lehmer(a: BigUint, b: BigUint) -> BigUint {
    let (mut u, mut v) = if a >= b {
        (BigInt::from(a), BigInt::from(b))
    } else {
        (BigInt::from(b), BigInt::from(a))
    };
    while v.bits() > 64 {
        let shift = u.bits() - 64;
        let mut x = i128::from((&u >> shift).to_u64().expect("the leading 64 bits"));
        let mut y = i128::from((&v >> shift).to_u64().expect("at most 64 bits"));
        let (mut a, mut b, mut c, mut d) = (1i128, 0i128, 0i128, 1i128);
        while y + c != 0 && y + d != 0 {
            let q = (x + a) / (y + c);
            if q != (x + b) / (y + d) {
                break;
            }
            (a, c) = (c, a - q * c);
            (b, d) = (d, b - q * d);
            (x, y) = (y, x - q * y);
        }
        if b == 0 {
            let r = &u % &v;
            (u, v) = (v, r);
        } else {
            let t = &u * a + &v * b;
            let w = &u * c + &v * d;
            (u, v) = (t, w);
        }
    }
    let (u, v) = (u.magnitude().clone(), v.to_u64().expect("at most 64 bits"));
    if v == 0 {
        return u;
    }
    let r = (&u % v).to_u64().expect("a remainder below a u64");
    BigUint::from(r.gcd(&v))
}

/// n/d reduced (d ≠ 0), the denominator made positive: BigRational's
/// `Ratio::new` with [`gcd`] in place of the binary gcd.
pub(crate) fn reduced(n: BigInt, d: BigInt) -> Rat {
    assert!(!d.is_zero(), "a zero denominator");
    let g = gcd(&n, &d);
    let (mut n, mut d) = if g == BigInt::from(1u8) {
        (n, d)
    } else {
        (n / &g, d / &g)
    };
    if d.sign() == Sign::Minus {
        (n, d) = (-n, -d);
    }
    Rat::new_raw(n, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 1000,
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(15),
            ..proptest::test_runner::Config::default()
        })]

        /// Lehmer's gcd (with the division step and the one-word case
        /// before it) is the binary gcd of num-bigint, on numbers of up
        /// to 1,300 bits with a common factor of up to 600.
        #[test]
        fn gcd_is_num_bigints_gcd(
            x in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..20),
            y in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..20),
            g in proptest::collection::vec(proptest::prelude::any::<u32>(), 1..20),
            sx in -1i8..=1,
        ) {
            let big = |d: &[u32]| BigInt::from(BigUint::new(d.to_vec()));
            let g = big(&g);
            let (a, b) = (big(&x) * &g * i32::from(sx), big(&y) * &g);
            proptest::prop_assert_eq!(gcd(&a, &b), Integer::gcd(&a, &b));
            proptest::prop_assert_eq!(gcd(&b, &a), Integer::gcd(&a, &b));
        }

        /// `reduced` is `Ratio::new`, signs included.
        #[test]
        fn reduced_is_ratio_new(
            x in proptest::collection::vec(proptest::prelude::any::<u32>(), 0..20),
            y in proptest::collection::vec(proptest::prelude::any::<u32>(), 1..20),
            g in proptest::collection::vec(proptest::prelude::any::<u32>(), 1..20),
            sx in -1i8..=1,
            sy in proptest::prop_oneof![proptest::prelude::Just(-1i8), proptest::prelude::Just(1i8)],
        ) {
            let big = |d: &[u32]| BigInt::from(BigUint::new(d.to_vec()));
            let (g, yy) = (big(&g), big(&y));
            proptest::prop_assume!(!yy.is_zero());
            let (n, d) = (big(&x) * &g * i32::from(sx), yy * &g * i32::from(sy));
            let r = reduced(n.clone(), d.clone());
            let want = Rat::new(n, d);
            proptest::prop_assert_eq!(r.numer(), want.numer());
            proptest::prop_assert_eq!(r.denom(), want.denom());
        }
    }
}
