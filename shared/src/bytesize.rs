//! Sizes read the same everywhere: `512KB`, `64MiB`, `1GB`, `0B`. A bare number is refused,
//! like a bare duration, because `128` could mean bytes or megabytes.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserialize, Deserializer};

/// A number of bytes parsed from `128MB` (10^6) or `128MiB` (2^20).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ByteSize(pub u64);

const UNITS: &[(&str, u64)] = &[
    ("B", 1),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("KIB", 1 << 10),
    ("MIB", 1 << 20),
    ("GIB", 1 << 30),
];

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        let split = t
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(t.len());
        let (number, unit) = (t[..split].trim(), t[split..].trim().to_ascii_uppercase());
        let hint = "write it like `512KB`, `64MiB` or `1GB`";
        if unit.is_empty() {
            return Err(format!("`{t}` has no unit: {hint}"));
        }
        let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
            return Err(format!("`{t}` is not a size: {hint}"));
        };
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{t}` is not a size: {hint}"))?;
        Ok(ByteSize((value * scale as f64).round() as u64))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        match UNITS[1..4]
            .iter()
            .rev()
            .find(|(_, s)| b >= *s && b.is_multiple_of(*s))
        {
            Some((u, s)) => write!(f, "{}{u}", b / s),
            None => write!(f, "{b}B"),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(serde_json::Number),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Text(s) => s.parse().map_err(de::Error::custom),
            Raw::Number(n) => Err(de::Error::custom(format!(
                "`{n}` has no unit: write it like `{n}MB` or `{n}B`"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_sizes() {
        assert_eq!("128MB".parse::<ByteSize>().unwrap(), ByteSize(128_000_000));
        assert_eq!("64MiB".parse::<ByteSize>().unwrap(), ByteSize(64 << 20));
        assert_eq!("1.5 kb".parse::<ByteSize>().unwrap(), ByteSize(1500));
        assert_eq!("0B".parse::<ByteSize>().unwrap(), ByteSize(0));
        assert!("128".parse::<ByteSize>().unwrap_err().contains("no unit"));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert_eq!(ByteSize(128_000_000).to_string(), "128MB");
        assert_eq!(ByteSize(1500).to_string(), "1500B");
        let from_yaml: ByteSize = serde_yaml_ng::from_str("10MB").unwrap();
        assert_eq!(from_yaml, ByteSize(10_000_000));
        let err = serde_yaml_ng::from_str::<ByteSize>("10").unwrap_err();
        assert!(err.to_string().contains("no unit"), "{err}");
    }
}
