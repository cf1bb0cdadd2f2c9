//! Which days a run reads: `--date`, `--from`/`--to`, `--last`, with `today` and
//! `yesterday` accepted wherever a date is. Days are the lake's `dt=` partitions, which are
//! UTC days of `window_start`, so "today" is the UTC date (or `--today` for backfills).
//!
//! The selection is applied to directory names before anything below them is listed: a run
//! for one day lists the table directory once and that day's directory, nothing else.

use chrono::{Days, NaiveDate};
use shared::HumanDuration;

/// A closed range of days; an open end is unbounded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRange {
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
}

impl DayRange {
    /// Every day.
    #[cfg(test)]
    pub fn all() -> DayRange {
        DayRange {
            from: None,
            to: None,
        }
    }

    /// Whether a `dt=` value is in the range. A value that is not a date is only in the
    /// unbounded range.
    pub fn contains(&self, dt: &str) -> bool {
        if self.from.is_none() && self.to.is_none() {
            return true;
        }
        let Ok(day) = NaiveDate::parse_from_str(dt, "%Y-%m-%d") else {
            return false;
        };
        self.from.is_none_or(|f| day >= f) && self.to.is_none_or(|t| day <= t)
    }

    pub fn is_all(&self) -> bool {
        self.from.is_none() && self.to.is_none()
    }
}

impl std::fmt::Display for DayRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.from, self.to) {
            (None, None) => f.write_str("all days"),
            (Some(a), Some(b)) if a == b => write!(f, "{a}"),
            (Some(a), Some(b)) => write!(f, "{a} … {b}"),
            (Some(a), None) => write!(f, "{a} and later"),
            (None, Some(b)) => write!(f, "up to {b}"),
        }
    }
}

/// The date options of the command line, as typed.
#[derive(Debug, Clone, Default)]
pub struct DateArgs {
    pub date: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub last: Option<String>,
    pub today: Option<String>,
}

/// `YYYY-MM-DD`, `today` or `yesterday`.
pub fn parse_day(s: &str, today: NaiveDate) -> Result<NaiveDate, String> {
    match s.trim() {
        "today" => Ok(today),
        "yesterday" => today
            .checked_sub_days(Days::new(1))
            .ok_or_else(|| "no day before the first date".to_string()),
        other => NaiveDate::parse_from_str(other, "%Y-%m-%d").map_err(|_| {
            format!("`{other}` is not a day: write 2024-05-17, `today` or `yesterday`")
        }),
    }
}

/// Resolves the date options into a range (all days when none is given).
pub fn select(args: &DateArgs, utc_today: NaiveDate) -> Result<DayRange, String> {
    let today = match &args.today {
        Some(t) => NaiveDate::parse_from_str(t.trim(), "%Y-%m-%d")
            .map_err(|_| format!("--today {t}: write the date as 2024-05-17"))?,
        None => utc_today,
    };
    let day = |flag: &str, v: &Option<String>| -> Result<Option<NaiveDate>, String> {
        v.as_deref()
            .map(|s| parse_day(s, today).map_err(|e| format!("--{flag}: {e}")))
            .transpose()
    };
    let range_given = args.from.is_some() || args.to.is_some();
    if args.date.is_some() && (range_given || args.last.is_some()) {
        return Err("--date selects one day: leave out --from, --to and --last".into());
    }
    if args.last.is_some() && range_given {
        return Err("--last ends today: leave out --from and --to (or use them alone)".into());
    }
    if let Some(d) = day("date", &args.date)? {
        return Ok(DayRange {
            from: Some(d),
            to: Some(d),
        });
    }
    if let Some(last) = &args.last {
        let n = last_days(last).map_err(|e| format!("--last: {e}"))?;
        let from = today
            .checked_sub_days(Days::new(n - 1))
            .ok_or_else(|| format!("--last {last}: reaches before the first date"))?;
        return Ok(DayRange {
            from: Some(from),
            to: Some(today),
        });
    }
    let range = DayRange {
        from: day("from", &args.from)?,
        to: day("to", &args.to)?,
    };
    if let (Some(a), Some(b)) = (range.from, range.to)
        && a > b
    {
        return Err(format!("--from {a} is after --to {b}"));
    }
    Ok(range)
}

/// `--last`: a duration of whole days (`7d`, `1d`, `48h`).
fn last_days(s: &str) -> Result<u64, String> {
    let d: HumanDuration = s.parse()?;
    let secs = d.0.as_secs();
    if secs == 0 || !secs.is_multiple_of(86_400) || d.0.subsec_nanos() != 0 {
        return Err(format!(
            "`{s}` is not a whole number of days (write 1d, 7d, 30d)"
        ));
    }
    Ok(secs / 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    fn sel(f: impl FnOnce(&mut DateArgs)) -> Result<DayRange, String> {
        let mut a = DateArgs::default();
        f(&mut a);
        select(&a, day("2024-05-17"))
    }

    #[test]
    fn words_and_ranges() {
        assert_eq!(sel(|_| {}).unwrap(), DayRange::all());
        let r = sel(|a| a.date = Some("yesterday".into())).unwrap();
        assert_eq!(r.to_string(), "2024-05-16");
        let r = sel(|a| a.last = Some("7d".into())).unwrap();
        assert_eq!(r.to_string(), "2024-05-11 … 2024-05-17");
        assert!(r.contains("2024-05-11") && r.contains("2024-05-17"));
        assert!(!r.contains("2024-05-10") && !r.contains("2024-05-18"));
        assert!(!r.contains("__HIVE_DEFAULT_PARTITION__"));
        let r = sel(|a| a.from = Some("2024-05-01".into())).unwrap();
        assert!(r.contains("2030-01-01") && !r.contains("2024-04-30"));
        let r = sel(|a| {
            a.last = Some("1d".into());
            a.today = Some("2015-05-18".into());
        })
        .unwrap();
        assert_eq!(r.to_string(), "2015-05-18");
        let r = sel(|a| a.to = Some("today".into())).unwrap();
        assert_eq!(r.to_string(), "up to 2024-05-17");
    }

    #[test]
    fn mistakes_are_explained() {
        let e = sel(|a| a.date = Some("17/05/2024".into())).unwrap_err();
        assert!(e.contains("--date") && e.contains("2024-05-17"), "{e}");
        let e = sel(|a| {
            a.date = Some("today".into());
            a.last = Some("2d".into());
        })
        .unwrap_err();
        assert!(e.contains("--date selects one day"), "{e}");
        let e = sel(|a| a.last = Some("36h".into())).unwrap_err();
        assert!(e.contains("whole number of days"), "{e}");
        let e = sel(|a| a.last = Some("7".into())).unwrap_err();
        assert!(e.contains("no unit"), "{e}");
        let e = sel(|a| {
            a.from = Some("2024-05-18".into());
            a.to = Some("2024-05-17".into());
        })
        .unwrap_err();
        assert!(e.contains("is after"), "{e}");
    }
}
