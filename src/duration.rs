//! Durations as users write them: in a request's `timeout` and in the duration settings
//! (`CMD_TIMEOUT`, `CMD_KILL_GRACE`, ...).
//!
//! Three spellings are accepted: plain seconds (`300`, `1.5`), short units (`90s`, `5m`,
//! `1h30m`, read by `humantime`) and ISO 8601 durations (`PT10M`, `PT1H30M`, `P1D`, `PT0.5S`),
//! which is how Direktiv workflows write their own timeouts. Errors say what is accepted and
//! never pass on a parser's internal wording.
//!
//! Every duration stops at [`MAX`], a year: far beyond any real timeout or grace period, and
//! far below where adding it to a clock reading overflows (`Instant + Duration` panics there),
//! so the rest of the runner may add any duration it was given to "now".

use std::time::Duration;

/// The longest duration accepted anywhere: a year (humantime's `1y`, 365.25 days).
pub const MAX: Duration = Duration::from_secs(31_557_600);

/// What every duration error ends with.
pub const EXPECTED: &str =
    "expected seconds (300), a duration like \"90s\"/\"5m\"/\"1h30m\", or ISO 8601 like \"PT10M\"";

/// Reads a duration in any of the accepted spellings, at most [`MAX`].
pub fn parse(value: &str) -> Result<Duration, String> {
    let duration = parse_any_length(value)?;
    at_most_a_year(duration, || shown(value))
}

/// A number of seconds, as a request's `"timeout": 300` gives it; `shown_as` is the number as
/// the request wrote it.
pub fn from_secs(secs: f64, shown_as: &str) -> Result<Duration, String> {
    if secs.is_nan() || secs < 0.0 {
        return Err(format!("{EXPECTED}, got {shown_as}"));
    }
    match Duration::try_from_secs_f64(secs) {
        Ok(duration) => at_most_a_year(duration, || shown_as.to_owned()),
        // Negative and NaN are ruled out above: only too large a value is left.
        Err(_) => at_most_a_year(Duration::MAX, || shown_as.to_owned()),
    }
}

fn at_most_a_year(duration: Duration, shown: impl Fn() -> String) -> Result<Duration, String> {
    if duration > MAX {
        return Err(format!(
            "{} is more than a year, the longest duration accepted",
            shown()
        ));
    }
    Ok(duration)
}

/// Reads a duration in any of the accepted spellings, however long.
fn parse_any_length(value: &str) -> Result<Duration, String> {
    let text = value.trim();
    if text.starts_with('-') && text.len() > 1 {
        return Err(format!(
            "{} is not a duration: it must be 0 or more",
            shown(value)
        ));
    }
    let parsed = if is_decimal(text) {
        text.parse::<f64>()
            .ok()
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
    } else if text.starts_with(['P', 'p']) {
        return iso8601(&text.to_ascii_uppercase()).map_err(|why| match why {
            IsoError::Calendar => format!(
                "{} counts months or years, which have no fixed length; use days, hours or \
                 minutes (\"P30D\", \"PT1M\" for one minute)",
                shown(value)
            ),
            IsoError::Malformed => not_a_duration(value),
        });
    } else {
        humantime::parse_duration(text).ok()
    };
    parsed.ok_or_else(|| not_a_duration(value))
}

/// `"<value>" is not a duration; expected ...`.
fn not_a_duration(value: &str) -> String {
    format!("{} is not a duration; {EXPECTED}", shown(value))
}

/// The value quoted for a message, whole: a value cut here could be the first part of a
/// secret, which masking (it finds whole secrets) would miss. Messages are cut to their size
/// once masked.
fn shown(value: &str) -> String {
    format!("{value:?}")
}

/// Digits with at most one decimal point: the plain-seconds spelling. Checked by hand because
/// `f64::from_str` also takes `inf`, `NaN` and exponents, which nobody means as a timeout.
fn is_decimal(text: &str) -> bool {
    let mut parts = text.splitn(2, '.');
    let whole = parts.next().unwrap_or_default();
    let fraction = parts.next().unwrap_or_default();
    !(whole.is_empty() && fraction.is_empty())
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.bytes().all(|b| b.is_ascii_digit())
}

/// Why an ISO 8601 duration was refused.
#[derive(Debug, PartialEq, Eq)]
enum IsoError {
    /// It counts years or months (`P1Y`, `P1M`), whose length depends on the calendar.
    Calendar,
    /// It is not `P[nW][nD][T[nH][nM][nS]]`.
    Malformed,
}

/// `P[nW][nD][T[nH][nM][nS]]` (upper case), each number whole or with a decimal fraction (`.`
/// or `,`), the parts in this order, at least one of them. Hand-written: this subset is a few
/// lines, where the ISO 8601 crates bring a parser combinator library into the binary.
fn iso8601(text: &str) -> Result<Duration, IsoError> {
    /// Designators in the order they must appear, with their length in seconds; `None` marks
    /// the calendar units.
    const DATE: [(char, Option<f64>); 4] = [
        ('Y', None),
        ('M', None),
        ('W', Some(7.0 * 86_400.0)),
        ('D', Some(86_400.0)),
    ];
    const TIME: [(char, Option<f64>); 3] =
        [('H', Some(3_600.0)), ('M', Some(60.0)), ('S', Some(1.0))];
    let body = text.strip_prefix('P').ok_or(IsoError::Malformed)?;
    let (date, time) = match body.split_once('T') {
        Some((_, "")) => return Err(IsoError::Malformed),
        Some((date, time)) => (date, Some(time)),
        None => (body, None),
    };
    let mut seconds = 0.0;
    let mut parts = 0;
    for (section, units) in [(Some(date), &DATE[..]), (time, &TIME[..])] {
        let Some(mut rest) = section else { continue };
        let mut allowed = units;
        while !rest.is_empty() {
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
                .ok_or(IsoError::Malformed)?;
            let number = rest[..end].replace(',', ".");
            let designator = rest[end..].chars().next().ok_or(IsoError::Malformed)?;
            let position = allowed
                .iter()
                .position(|(unit, _)| *unit == designator)
                .ok_or(IsoError::Malformed)?;
            if !is_decimal(&number) {
                return Err(IsoError::Malformed);
            }
            let unit_seconds = allowed[position].1.ok_or(IsoError::Calendar)?;
            let value: f64 = number.parse().map_err(|_| IsoError::Malformed)?;
            seconds += value * unit_seconds;
            parts += 1;
            allowed = &allowed[position + 1..];
            rest = &rest[end + designator.len_utf8()..];
        }
    }
    if parts == 0 {
        return Err(IsoError::Malformed);
    }
    Duration::try_from_secs_f64(seconds).map_err(|_| IsoError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Result<Duration, String> {
        Ok(Duration::from_secs(s))
    }

    #[test]
    fn plain_seconds() {
        assert_eq!(parse("300"), secs(300));
        assert_eq!(parse(" 0 "), secs(0));
        assert_eq!(parse("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse(".5"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn short_units() {
        assert_eq!(parse("90s"), secs(90));
        assert_eq!(parse("5m"), secs(300));
        assert_eq!(parse("1h"), secs(3600));
        assert_eq!(parse("1h30m"), secs(5400));
        assert_eq!(parse("1h 30m"), secs(5400));
        assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
    }

    #[test]
    fn iso_8601() {
        assert_eq!(parse("PT10S"), secs(10));
        assert_eq!(parse("PT10M"), secs(600));
        assert_eq!(parse("PT1H30M"), secs(5400));
        assert_eq!(parse("P1D"), secs(86_400));
        assert_eq!(parse("P1DT2H"), secs(93_600));
        assert_eq!(parse("P2W"), secs(14 * 86_400));
        assert_eq!(parse("PT0.5S"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("PT0,5S"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("PT1M30.25S"), Ok(Duration::from_millis(90_250)));
        assert_eq!(parse("pt10m"), secs(600), "lower case is read too");
        assert_eq!(parse("PT0S"), secs(0));
    }

    #[test]
    fn malformed_iso_8601_is_refused_with_what_is_accepted() {
        for bad in [
            "P", "PT", "P1DT", "PT10", "PT10X", "PT1M1H", "PT1S1S", "P1H", "PTM", "PT.S",
            "PT1..5S", "P1D2", "PT-1S",
        ] {
            let message = parse(bad).unwrap_err();
            assert_eq!(
                message,
                format!("{bad:?} is not a duration; {EXPECTED}"),
                "{bad}"
            );
        }
    }

    #[test]
    fn months_and_years_are_refused_with_a_hint() {
        for bad in ["P1M", "P1Y", "P1Y2M", "P1MT1M"] {
            let message = parse(bad).unwrap_err();
            assert!(message.contains("months or years"), "{bad}: {message}");
            assert!(message.contains("PT1M"), "{bad}: {message}");
        }
    }

    #[test]
    fn errors_never_show_parser_internals() {
        for bad in ["soon", "10 parsecs", "1e3", "inf", "NaN", "", "s"] {
            let message = parse(bad).unwrap_err();
            assert!(message.ends_with(EXPECTED), "{bad}: {message}");
            assert!(!message.contains(" at "), "{bad}: {message}");
        }
        assert_eq!(
            parse("-1").unwrap_err(),
            "\"-1\" is not a duration: it must be 0 or more"
        );
        assert!(parse("-5s").unwrap_err().contains("0 or more"));
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        assert!(parse(&"9".repeat(400)).is_err());
        assert!(parse(&format!("P{}D", "9".repeat(400))).is_err());
        assert!(parse("99999999999999999999999h").is_err());
    }

    #[test]
    fn durations_stop_at_a_year() {
        assert_eq!(parse("1y"), Ok(MAX));
        assert_eq!(parse("365d"), secs(365 * 86_400));
        assert_eq!(parse("31557600"), Ok(MAX));
        assert_eq!(parse("P365D"), secs(365 * 86_400));
        for value in [
            "366d",
            "2y",
            "31557601",
            "18446744073709551615s",
            "P366D",
            "P53W",
        ] {
            let message = parse(value).unwrap_err();
            assert_eq!(
                message,
                format!("{value:?} is more than a year, the longest duration accepted")
            );
        }
    }

    #[test]
    fn seconds_as_numbers_stop_at_a_year_too() {
        assert_eq!(from_secs(300.0, "300"), secs(300));
        assert_eq!(from_secs(1.5, "1.5"), Ok(Duration::from_millis(1500)));
        assert!(from_secs(1e15, "1e15")
            .unwrap_err()
            .starts_with("1e15 is more than a year"));
        assert!(from_secs(f64::INFINITY, "inf").is_err());
        assert_eq!(from_secs(-1.0, "-1"), Err(format!("{EXPECTED}, got -1")));
        assert!(from_secs(f64::NAN, "NaN").is_err());
    }

    #[test]
    fn long_values_are_quoted_whole() {
        let message = parse(&"x".repeat(1000)).unwrap_err();
        assert!(message.starts_with(&format!("\"{}\" is not", "x".repeat(1000))));
    }
}
