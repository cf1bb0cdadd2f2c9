//! HyperLogLog for `approx_distinct`: a distinct count in bounded memory.
//!
//! An exact `count_distinct` keeps every value of every group of every open window; a
//! high-cardinality column (user ids, client IPs) makes that the largest state of a pipeline.
//! This sketch keeps 2^14 one-byte registers (16 KiB, standard error 1.04/√16384 ≈ 0.8 %),
//! and starts *sparse* (a sorted list of the registers set, 4 bytes each) so that the many
//! small groups of a window cost a few bytes, not 16 KiB each. Below about 40,000 values the
//! estimate is linear counting over the registers, nearly exact for small counts.
//!
//! Values are hashed with a fixed 64-bit hash written here (not the standard library's,
//! whose algorithm may change), so a checkpointed sketch stays valid across versions.

/// Register index bits.
const P: u32 = 14;
/// Registers.
const M: usize = 1 << P;
/// A sparse sketch turns dense when it holds this many registers (its bytes then near
/// half the dense size).
const SPARSE_MAX: usize = M / 8;

/// A HyperLogLog sketch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Hll {
    /// Set registers, sorted by index: `index << 8 | rank`.
    Sparse(Vec<u32>),
    /// Every register.
    Dense(Box<[u8]>),
}

impl Default for Hll {
    fn default() -> Self {
        Hll::Sparse(Vec::new())
    }
}

#[inline]
fn fmix64(mut k: u64) -> u64 {
    k ^= k >> 33;
    k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
    k ^= k >> 33;
    k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    k ^ (k >> 33)
}

/// A fixed 64-bit hash of bytes (8-byte words mixed with Murmur3's finalizer).
#[inline]
pub fn hash64(bytes: &[u8]) -> u64 {
    let mut h = 0x243f_6a88_85a3_08d3u64 ^ (bytes.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("8 bytes"));
        h = (h ^ fmix64(w))
            .rotate_left(27)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    let rest = words.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        h = (h ^ fmix64(u64::from_le_bytes(last))).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    fmix64(h)
}

impl Hll {
    /// Adds a value; returns the bytes the sketch grew by (for the state budget).
    #[inline]
    pub fn add(&mut self, value: &[u8]) -> usize {
        let h = hash64(value);
        let index = (h >> (64 - P)) as usize;
        // The rank of the first 1 bit after the index bits (a sentinel bit bounds it).
        let rank = ((h << P) | (1 << (P - 1))).leading_zeros() as u8 + 1;
        self.set(index, rank)
    }

    fn set(&mut self, index: usize, rank: u8) -> usize {
        match self {
            Hll::Dense(regs) => {
                if regs[index] < rank {
                    regs[index] = rank;
                }
                0
            }
            Hll::Sparse(list) => {
                let key = (index as u32) << 8;
                match list.binary_search_by(|e| (e & !0xff).cmp(&key)) {
                    Ok(i) => {
                        if (list[i] & 0xff) < u32::from(rank) {
                            list[i] = key | u32::from(rank);
                        }
                        0
                    }
                    Err(i) => {
                        list.insert(i, key | u32::from(rank));
                        if list.len() > SPARSE_MAX {
                            let before = self.heap_bytes();
                            self.densify();
                            self.heap_bytes() - before + 4
                        } else {
                            4
                        }
                    }
                }
            }
        }
    }

    fn densify(&mut self) {
        if let Hll::Sparse(list) = self {
            let mut regs = vec![0u8; M].into_boxed_slice();
            for e in list.iter() {
                regs[(e >> 8) as usize] = (e & 0xff) as u8;
            }
            *self = Hll::Dense(regs);
        }
    }

    /// Folds `other` in: the sketch of the union.
    pub fn merge(&mut self, other: &Hll) {
        match other {
            Hll::Sparse(list) => {
                for e in list {
                    self.set((e >> 8) as usize, (e & 0xff) as u8);
                }
            }
            Hll::Dense(regs) => {
                self.densify();
                if let Hll::Dense(mine) = self {
                    for (a, b) in mine.iter_mut().zip(regs.iter()) {
                        *a = (*a).max(*b);
                    }
                }
            }
        }
    }

    /// Bytes on the heap.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Hll::Sparse(list) => list.len() * 4,
            Hll::Dense(_) => M,
        }
    }

    /// The estimated number of distinct values added.
    pub fn estimate(&self) -> i64 {
        let m = M as f64;
        let (zeros, sum) = match self {
            Hll::Sparse(list) => {
                let set: f64 = list.iter().map(|e| 2f64.powi(-((e & 0xff) as i32))).sum();
                (M - list.len(), set + (M - list.len()) as f64)
            }
            Hll::Dense(regs) => regs.iter().fold((0, 0.0), |(z, s), &r| {
                (z + usize::from(r == 0), s + 2f64.powi(-i32::from(r)))
            }),
        };
        let alpha = 0.7213 / (1.0 + 1.079 / m);
        let raw = alpha * m * m / sum;
        let estimate = if raw <= 2.5 * m && zeros > 0 {
            m * (m / zeros as f64).ln()
        } else {
            raw
        };
        estimate.round() as i64
    }
}

/// The lake's bytes of a HyperLogLog (see [`super`] for the layout).
impl Hll {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = vec![super::FORMAT_VERSION, super::KIND_HLL, P as u8];
        match self {
            Hll::Sparse(list) => {
                out.reserve(5 + list.len() * 4);
                out.push(0);
                out.extend_from_slice(&(list.len() as u32).to_le_bytes());
                for e in list {
                    out.extend_from_slice(&e.to_le_bytes());
                }
            }
            Hll::Dense(regs) => {
                out.push(1);
                out.extend_from_slice(regs);
            }
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Self, super::SketchError> {
        super::expect_kind(bytes, super::KIND_HLL, "HyperLogLog")?;
        let mut r = super::Reader {
            bytes: &bytes[2..],
            what: "HyperLogLog",
        };
        let damaged = super::SketchError::Damaged("HyperLogLog");
        if u32::from(r.u8()?) != P {
            return Err(damaged);
        }
        let hll = match r.u8()? {
            0 => {
                let n = r.u32()? as usize;
                let list = (0..n).map(|_| r.u32()).collect::<Result<Vec<_>, _>>()?;
                let sorted = list.windows(2).all(|w| (w[0] >> 8) < (w[1] >> 8));
                if !sorted || list.last().is_some_and(|e| (e >> 8) as usize >= M) {
                    return Err(damaged);
                }
                Hll::Sparse(list)
            }
            1 => Hll::Dense(r.take(M)?.to_vec().into_boxed_slice()),
            _ => return Err(damaged),
        };
        r.end()?;
        Ok(hll)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(range: std::ops::Range<u64>) -> Hll {
        let mut h = Hll::default();
        for i in range {
            h.add(format!("user-{i}").as_bytes());
        }
        h
    }

    #[test]
    fn small_counts_are_nearly_exact_and_cheap() {
        for n in [0u64, 1, 2, 10, 100, 1000] {
            let h = sketch(0..n);
            let e = h.estimate();
            assert!((e - n as i64).abs() <= (n as i64 / 100).max(1), "{n}: {e}");
            assert!(matches!(h, Hll::Sparse(_)), "{n}");
        }
        // Duplicates do not count.
        let mut h = sketch(0..100);
        h.merge(&sketch(0..100));
        assert_eq!(h.estimate(), sketch(0..100).estimate());
        assert!(sketch(0..100).heap_bytes() <= 400);
    }

    #[test]
    fn large_counts_within_a_few_standard_errors() {
        for n in [5_000u64, 50_000, 1_000_000] {
            let h = sketch(0..n);
            let err = (h.estimate() as f64 - n as f64).abs() / n as f64;
            assert!(err < 0.03, "{n}: {} ({err:.4})", h.estimate());
            assert!(h.heap_bytes() <= M);
        }
    }

    #[test]
    fn merge_is_the_sketch_of_the_union() {
        let (a, b) = (sketch(0..30_000), sketch(20_000..60_000));
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged.estimate(), sketch(0..60_000).estimate());
        let mut other_way = b.clone();
        other_way.merge(&a);
        assert_eq!(other_way.estimate(), merged.estimate());
        // Sparse into dense and dense into sparse.
        let mut small = sketch(0..10);
        small.merge(&sketch(0..100_000));
        assert_eq!(small.estimate(), sketch(0..100_000).estimate());
    }

    #[test]
    fn growth_is_reported() {
        let mut h = Hll::default();
        let mut grown = 0;
        for i in 0..200_000u64 {
            grown += h.add(&i.to_le_bytes());
        }
        assert_eq!(grown, h.heap_bytes());
        assert!(matches!(h, Hll::Dense(_)));
    }

    #[test]
    fn bytes_round_trip() {
        for n in [0, 5, 100_000] {
            let h = sketch(0..n);
            let back = Hll::from_bytes(&h.to_bytes()).unwrap();
            assert_eq!(back, h);
        }
        assert_eq!(Hll::default().to_bytes(), [1, b'H', 14, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn hash_is_fixed() {
        // The sketch in a checkpoint must mean the same after an upgrade.
        assert_eq!(hash64(b""), hash64(b""));
        assert_ne!(hash64(b"a"), hash64(b"b"));
        assert_ne!(hash64(b"abcdefgh1"), hash64(b"abcdefgh2"));
        assert_eq!(hash64(b"access-log"), 0x2c43_de8b_87ae_2be1);
    }
}
