//! When jobs run: parsing `startIn`, `startAt`, `cron` and `cronTimezone`,
//! and finding a cron expression's next slot.
//!
//! Cron expressions read the way the original's croniter read them: five
//! fields (minute hour day-of-month month day-of-week), `*/n`, ranges,
//! lists, month and day names, day-of-week 0–6 with 7 also Sunday, and a
//! restricted day-of-month *or* day-of-week. On top of that: the
//! `@hourly`/`@daily`/`@weekly`/`@monthly`/`@yearly` macros, an optional
//! leading seconds field, and a time zone (UTC by default). The parsing is
//! croner's; the tests below pin its answers to croniter's.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde_json::Value;

/// Parses a `startIn` delay: whole numbers with units, largest first, at
/// least one of `d`, `h`, `m`, `s` (`10s`, `2m30s`, `4h30m25s`, `240h`, `1d12h`).
pub fn parse_start_in(text: &str) -> Result<Duration, String> {
    let error = || {
        format!(
            "startIn {text:?} is not a delay like 10s, 2m30s, 4h30m25s or 1d (units d, h, m, s, largest first)"
        )
    };
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(error());
    }
    let mut seconds: u64 = 0;
    let mut last_unit = usize::MAX;
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(error)?;
        if digits == 0 {
            return Err(error());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| error())?;
        let unit = rest[digits..].chars().next().ok_or_else(error)?;
        let index = UNITS
            .iter()
            .position(|(u, _)| *u == unit)
            .ok_or_else(error)?;
        if last_unit != usize::MAX && index <= last_unit {
            return Err(error());
        }
        last_unit = index;
        seconds = number
            .checked_mul(UNITS[index].1)
            .and_then(|s| s.checked_add(seconds))
            .ok_or_else(error)?;
        rest = &rest[digits + unit.len_utf8()..];
    }
    if seconds > 10 * 365 * 86_400 {
        return Err(format!("startIn {text:?} is more than ten years away"));
    }
    Ok(Duration::from_secs(seconds))
}

/// Parses `startAt`: unix seconds, UTC (a time in the past means now).
pub fn parse_start_at(value: &Value) -> Result<DateTime<Utc>, String> {
    value
        .as_i64()
        .or_else(|| value.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .ok_or_else(|| format!("startAt {value} is not a unix timestamp in seconds"))
}

/// A parsed cron expression and the zone it is read in.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    cron: Cron,
    zone: Tz,
}

impl CronSchedule {
    /// Parses `expression` (5 fields, or 6 with leading seconds, or a macro)
    /// in `timezone` (an IANA name; UTC when `None`).
    pub fn parse(expression: &str, timezone: Option<&str>) -> Result<Self, String> {
        let zone = match timezone {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| format!("cronTimezone {name:?} is not an IANA time zone name"))?,
        };
        let fields = expression.split_whitespace().count();
        if !expression.trim_start().starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "cron {expression:?} must have 5 fields (minute hour day month weekday), or 6 with leading seconds"
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser
            .parse(expression.trim())
            .map_err(|e| format!("cron {expression:?} is not a valid cron expression: {e}"))?;
        let schedule = Self { cron, zone };
        if schedule.next_after(Utc::now()).is_none() {
            return Err(format!("cron {expression:?} never fires"));
        }
        Ok(schedule)
    }

    /// The first slot strictly after `after`.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = self.zone.from_utc_datetime(&after.naive_utc());
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("{text}Z"))
            .expect("timestamp")
            .with_timezone(&Utc)
    }

    #[test]
    fn start_in_reads_the_documented_forms() {
        let secs = |t| parse_start_in(t).map(|d| d.as_secs());
        assert_eq!(secs("10s"), Ok(10));
        assert_eq!(secs("2m30s"), Ok(150));
        assert_eq!(secs("4h30m25s"), Ok(4 * 3600 + 30 * 60 + 25));
        assert_eq!(secs("2h30m"), Ok(9000));
        assert_eq!(secs("240h"), Ok(240 * 3600));
        assert_eq!(secs("1d12h"), Ok(36 * 3600));
        assert_eq!(secs("0s"), Ok(0));
    }

    #[test]
    fn start_in_refuses_what_the_original_silently_ran_at_once() {
        for bad in [
            "",
            "5",
            "5M",
            "abc",
            "30m10h",
            "1h1h",
            "10 s",
            "-5s",
            "s",
            "99999999999999999d",
        ] {
            assert!(parse_start_in(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn start_at_is_unix_seconds() {
        assert_eq!(
            parse_start_at(&serde_json::json!(1645113692)),
            Ok(utc("2022-02-17T16:01:32"))
        );
        assert!(parse_start_at(&serde_json::json!("tomorrow")).is_err());
    }

    /// Next fire times croniter 0.3.30 (the original's parser) gave for these
    /// expressions from these instants (UTC), recorded with
    /// `croniter(expr, base).get_next(datetime)`.
    const CRONITER: &[(&str, [&str; 2])] = &[
        ("* * * * *", ["2026-11-23T10:08:00", "2024-02-29T00:00:00"]),
        (
            "*/10 * * * *",
            ["2026-11-23T10:10:00", "2024-02-29T00:00:00"],
        ),
        (
            "0 */6 * * *",
            ["2026-11-23T12:00:00", "2024-02-29T00:00:00"],
        ),
        (
            "30 2 * * 1-5",
            ["2026-11-24T02:30:00", "2024-02-29T02:30:00"],
        ),
        ("0 0 1 * *", ["2026-12-01T00:00:00", "2024-03-01T00:00:00"]),
        (
            "0 9 * * mon,wed,fri",
            ["2026-11-25T09:00:00", "2024-03-01T09:00:00"],
        ),
        (
            "15 14 1 * *",
            ["2026-12-01T14:15:00", "2024-03-01T14:15:00"],
        ),
        ("0 0 * * 0", ["2026-11-29T00:00:00", "2024-03-03T00:00:00"]),
        ("0 0 * * 7", ["2026-11-29T00:00:00", "2024-03-03T00:00:00"]),
        (
            "0 12 13 * 5",
            ["2026-11-27T12:00:00", "2024-03-01T12:00:00"],
        ),
        (
            "0 0 13 * fri",
            ["2026-11-27T00:00:00", "2024-03-01T00:00:00"],
        ),
        (
            "5 4 * jan,jul *",
            ["2027-01-01T04:05:00", "2024-07-01T04:05:00"],
        ),
        (
            "0 22 * * 1-5",
            ["2026-11-23T22:00:00", "2024-02-29T22:00:00"],
        ),
        (
            "23 0-20/2 * * *",
            ["2026-11-23T10:23:00", "2024-02-29T00:23:00"],
        ),
        (
            "*/15 9-17 * * *",
            ["2026-11-23T10:15:00", "2024-02-29T09:00:00"],
        ),
        (
            "0 0 1,15 * *",
            ["2026-12-01T00:00:00", "2024-03-01T00:00:00"],
        ),
        (
            "59 23 31 12 *",
            ["2026-12-31T23:59:00", "2024-12-31T23:59:00"],
        ),
    ];

    #[test]
    fn five_field_expressions_fire_when_croniter_said() {
        let bases = [utc("2026-11-23T10:07:30"), utc("2024-02-28T23:59:59")];
        for (expression, expected) in CRONITER {
            let cron = CronSchedule::parse(expression, None).expect(expression);
            for (base, want) in bases.iter().zip(expected) {
                assert_eq!(
                    cron.next_after(*base),
                    Some(utc(want)),
                    "{expression} after {base}"
                );
            }
        }
    }

    #[test]
    fn macros_seconds_and_time_zones_work() {
        let base = utc("2026-11-23T10:07:30");
        let next = |e: &str, tz: Option<&str>| {
            CronSchedule::parse(e, tz)
                .expect(e)
                .next_after(base)
                .expect("fires")
        };
        assert_eq!(next("@hourly", None), utc("2026-11-23T11:00:00"));
        assert_eq!(next("@daily", None), utc("2026-11-24T00:00:00"));
        assert_eq!(next("@weekly", None), utc("2026-11-29T00:00:00"));
        assert_eq!(next("@monthly", None), utc("2026-12-01T00:00:00"));
        assert_eq!(next("@yearly", None), utc("2027-01-01T00:00:00"));
        assert_eq!(next("*/20 * * * * *", None), utc("2026-11-23T10:07:40"));
        // 09:00 in São Paulo (UTC-3, no DST since 2019) is 12:00 UTC.
        assert_eq!(
            next("0 9 * * *", Some("America/Sao_Paulo")),
            utc("2026-11-23T12:00:00")
        );
        // Leap day: croniter 0.3.30 gave up looking; this finds 2028.
        assert_eq!(next("0 0 29 2 *", None), utc("2028-02-29T00:00:00"));
    }

    #[test]
    fn bad_expressions_are_refused_with_a_reason() {
        for (expression, tz) in [
            ("* * * *", None),
            ("* * * * * * *", None),
            ("61 * * * *", None),
            ("* * * * mon-", None),
            ("every minute", None),
            ("* * * * *", Some("Mars/Olympus")),
        ] {
            assert!(
                CronSchedule::parse(expression, tz).is_err(),
                "{expression:?} in {tz:?} should be refused"
            );
        }
    }
}
