//! Sketches: aggregates whose state is small, bounded and mergeable, so the stream stage can
//! keep them per window and key and the batch stage can merge windows into days (or the
//! partial rows of several Kafka partitions into one).
//!
//! - [`Hll`]: HyperLogLog for `approx_distinct` (written here; fixed hash, sparse start);
//! - [`Quantiles`]: a t-digest for `approx_percentile` (DataFusion's `TDigest`, the one its
//!   `approx_percentile_cont` uses, so both stages estimate the same way).
//!
//! # Bytes in the lake (format version 1)
//!
//! A table aggregate with `sketch: true` also writes its sketch to a binary column
//! `<name>_sketch`. All integers and floats are little-endian.
//!
//! ```text
//! byte 0      format version (1)
//! byte 1      kind: b'H' (HyperLogLog) or b'T' (t-digest)
//! HyperLogLog:
//!   byte 2      precision p (14: 2^14 registers)
//!   byte 3      0 = sparse: u32 n, then n × u32 (register index << 8 | rank), by index
//!               1 = dense: 2^p register bytes
//! t-digest:
//!   u32 max_size (500), f64 count, f64 sum, f64 min, f64 max,
//!   u32 n, then n × (f64 mean, f64 weight), by mean
//! ```
//!
//! Readers other than `batch-analyze` see an ordinary binary column; the value column
//! beside it holds the estimate of that window alone.

mod hll;
mod quantiles;

pub use hll::{Hll, hash64};
pub use quantiles::Quantiles;

/// The version of the bytes this build writes (and the only one it reads).
pub const FORMAT_VERSION: u8 = 1;
const KIND_HLL: u8 = b'H';
const KIND_TDIGEST: u8 = b'T';

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SketchError {
    #[error("an empty sketch value")]
    Empty,
    #[error("sketch format version {0}; this build reads version {FORMAT_VERSION}")]
    Version(u8),
    #[error("a sketch of kind `{found}` where a {expected} was expected")]
    Kind { found: char, expected: &'static str },
    #[error("a damaged {0} sketch")]
    Damaged(&'static str),
}

/// Either kind of sketch, as read from the lake.
#[derive(Debug, Clone)]
pub enum Sketch {
    Distinct(Hll),
    Quantiles(Quantiles),
}

impl Sketch {
    /// Reads a value of a sketch column.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SketchError> {
        match header(bytes)? {
            KIND_HLL => Hll::from_bytes(bytes).map(Sketch::Distinct),
            _ => Quantiles::from_bytes(bytes).map(Sketch::Quantiles),
        }
    }
}

/// Checks the version; returns the kind byte.
fn header(bytes: &[u8]) -> Result<u8, SketchError> {
    match bytes {
        [] | [_] => Err(SketchError::Empty),
        [v, ..] if *v != FORMAT_VERSION => Err(SketchError::Version(*v)),
        [_, k, ..] if *k == KIND_HLL || *k == KIND_TDIGEST => Ok(*k),
        [_, k, ..] => Err(SketchError::Kind {
            found: *k as char,
            expected: "HyperLogLog or t-digest",
        }),
    }
}

fn expect_kind(bytes: &[u8], kind: u8, name: &'static str) -> Result<(), SketchError> {
    let found = header(bytes)?;
    if found == kind {
        Ok(())
    } else {
        Err(SketchError::Kind {
            found: found as char,
            expected: name,
        })
    }
}

/// A little-endian reader over a sketch's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
    what: &'static str,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], SketchError> {
        if self.bytes.len() < n {
            return Err(SketchError::Damaged(self.what));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, SketchError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, SketchError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn f64(&mut self) -> Result<f64, SketchError> {
        Ok(f64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    fn end(&self) -> Result<(), SketchError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(SketchError::Damaged(self.what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_checked() {
        assert_eq!(Sketch::from_bytes(&[]).unwrap_err(), SketchError::Empty);
        assert_eq!(
            Sketch::from_bytes(&[2, b'H', 14, 0]).unwrap_err(),
            SketchError::Version(2)
        );
        assert!(matches!(
            Sketch::from_bytes(&[1, b'X']).unwrap_err(),
            SketchError::Kind { found: 'X', .. }
        ));
        assert_eq!(
            Sketch::from_bytes(&[1, b'H', 14, 0, 5]).unwrap_err(),
            SketchError::Damaged("HyperLogLog")
        );
        assert_eq!(
            Quantiles::from_bytes(&Hll::default().to_bytes()).unwrap_err(),
            SketchError::Kind {
                found: 'H',
                expected: "t-digest"
            }
        );
    }
}
