//! Deterministic, incompressible-looking data: the same seed gives the same bytes in every run,
//! so a failure reproduces and a benchmark compares like with like.

/// xorshift64* (Vigna): small, fast and good enough for test data and workload choices; not for
/// anything that must be unpredictable.
#[derive(Debug, Clone)]
pub struct XorShift64Star(u64);

impl XorShift64Star {
    /// A generator for `seed`; every seed (0 included) gives a distinct, non-degenerate stream.
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0; the slight modulo bias does not matter for tests).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Fills `out` with the stream's bytes (little-endian words).
    pub fn fill(&mut self, out: &mut [u8]) {
        let mut words = out.chunks_exact_mut(8);
        for word in &mut words {
            word.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let tail = words.into_remainder();
        let last = self.next_u64().to_le_bytes();
        tail.copy_from_slice(&last[..tail.len()]);
    }
}

/// `len` deterministic bytes for `seed`, distinct per seed.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    XorShift64Star::new(seed).fill(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        assert_eq!(pattern(7, 100), pattern(7, 100));
        assert_ne!(pattern(7, 100), pattern(8, 100));
        assert_eq!(pattern(7, 13), pattern(7, 100)[..13]);
        assert_ne!(pattern(0, 64), vec![0u8; 64], "seed 0 must not be degenerate");
    }

    #[test]
    fn below_stays_below() {
        let mut rng = XorShift64Star::new(1);
        assert!((0..1000).all(|_| rng.below(3) < 3));
    }
}
