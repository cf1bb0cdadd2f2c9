//! `--as-of`: which version of each table of a Delta lake a run reads, so that a report
//! can be computed again later from the tables as they were.
//!
//! The value is a comma-separated list. An item `TABLE=VERSION` names one table's version;
//! one item without a table, a VERSION or a TIMESTAMP, applies to every other table. A
//! version number is per table (each table has its own log), so a run's summary prints the
//! exact list that gives its reports again: `--as-of status_1m=37,path_1m=35,late=12`.
//! A timestamp takes each table's newest version committed at or before it.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use shared::delta::ReadVersion;

/// A parsed `--as-of`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsOf {
    /// For tables not named.
    pub default: ReadVersion,
    pub tables: BTreeMap<String, i64>,
}

impl AsOf {
    /// The version to read of `table`.
    pub fn of(&self, table: &str) -> ReadVersion {
        match self.tables.get(table) {
            Some(v) => ReadVersion::Number(*v),
            None => self.default,
        }
    }

    /// Table names given that are not among `known`.
    pub fn unknown_tables<'a>(&'a self, known: &[String]) -> Vec<&'a str> {
        self.tables
            .keys()
            .filter(|t| !known.contains(t))
            .map(String::as_str)
            .collect()
    }
}

impl FromStr for AsOf {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut default = None;
        let mut tables = BTreeMap::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            match item.split_once('=') {
                Some((table, v)) => {
                    let v = version(v.trim())
                        .ok_or_else(|| format!("`{item}`: the version must be a number"))?;
                    if tables.insert(table.trim().to_string(), v).is_some() {
                        return Err(format!("table `{}` is named twice", table.trim()));
                    }
                }
                None if default.is_some() => {
                    return Err(format!(
                        "`{item}`: only one version or timestamp applies to every table; name the others TABLE=VERSION"
                    ));
                }
                None => default = Some(read_version(item)?),
            }
        }
        if default.is_none() && tables.is_empty() {
            return Err("give a version, a timestamp or TABLE=VERSION".into());
        }
        Ok(AsOf {
            default: default.unwrap_or(ReadVersion::Newest),
            tables,
        })
    }
}

/// A version number (0 is a table's creation).
fn version(s: &str) -> Option<i64> {
    s.parse::<i64>().ok().filter(|v| *v >= 0)
}

/// A version number, or an instant: RFC 3339 (`2026-12-04T06:00:00Z`, `…+01:00`), or a UTC
/// date and time (`2026-12-04 06:00`, `2026-12-04T06:00:00`).
fn read_version(s: &str) -> Result<ReadVersion, String> {
    if let Some(v) = version(s) {
        return Ok(ReadVersion::Number(v));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(ReadVersion::At(t.with_timezone(&Utc)));
    }
    for f in [
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%d %H:%M",
        "%Y-%m-%dT%H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(s, f) {
            return Ok(ReadVersion::At(t.and_utc()));
        }
    }
    Err(format!(
        "`{s}` is neither a version number nor a timestamp (2026-12-04T06:00:00Z, or `2026-12-04 06:00` in UTC)"
    ))
}

/// The versions a run read, as the `--as-of` that reads them again.
pub struct VersionsRead<'a>(pub &'a [(String, i64)]);

impl fmt::Display for VersionsRead<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self.0.iter().map(|(t, v)| format!("{t}={v}")).collect();
        f.write_str(&items.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> ReadVersion {
        ReadVersion::At(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc))
    }

    #[test]
    fn versions_timestamps_and_tables_parse() {
        let a: AsOf = "12".parse().unwrap();
        assert_eq!(a.of("any"), ReadVersion::Number(12));
        let a: AsOf = "2026-12-04 06:00".parse().unwrap();
        assert_eq!(a.of("t"), at("2026-12-04T06:00:00Z"));
        let a: AsOf = "2026-12-04T07:00:00+01:00".parse().unwrap();
        assert_eq!(a.of("t"), at("2026-12-04T06:00:00Z"));
        let a: AsOf = "status_1m=37, late=12".parse().unwrap();
        assert_eq!(a.of("status_1m"), ReadVersion::Number(37));
        assert_eq!(a.of("path_1m"), ReadVersion::Newest);
        let a: AsOf = "2026-12-04T06:00:00Z,late=3".parse().unwrap();
        assert_eq!(a.of("late"), ReadVersion::Number(3));
        assert_eq!(a.of("path_1m"), at("2026-12-04T06:00:00Z"));
        assert_eq!(a.unknown_tables(&["path_1m".into()]), vec!["late"]);
    }

    #[test]
    fn mistakes_are_named() {
        for (s, says) in [
            ("", "give a version"),
            ("yesterday", "neither a version number nor a timestamp"),
            ("-1", "neither a version number"),
            ("t=x", "`t=x`: the version must be a number"),
            ("t=1,t=2", "named twice"),
            ("1,2", "only one version or timestamp"),
        ] {
            let e = s.parse::<AsOf>().unwrap_err();
            assert!(e.contains(says), "{s}: {e}");
        }
    }

    #[test]
    fn the_versions_read_print_as_an_as_of() {
        let read = [("path_1m".to_string(), 35), ("late".to_string(), 12)];
        let printed = VersionsRead(&read).to_string();
        assert_eq!(printed, "path_1m=35,late=12");
        let again: AsOf = printed.parse().unwrap();
        assert_eq!(again.of("late"), ReadVersion::Number(12));
    }
}
