//! UTC timestamps in the two text forms the wire formats use, without a date-time crate.
//!
//! Attack records carry `2026-11-26T16:14:48Z` (SPEC §6) and lifecycle records
//! `2026-11-26T16:14:48.123456` (SPEC §5). Both only need the proleptic Gregorian civil date of
//! a Unix time, which is a few lines of arithmetic.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Time since the Unix epoch (zero if the clock is before it).
pub fn since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    since_epoch().as_millis() as u64
}

/// `YYYY-MM-DDTHH:MM:SSZ` of the current time.
pub fn attack_timestamp() -> String {
    let t = since_epoch();
    let (date, time) = civil(t.as_secs());
    format!("{date}T{time}Z")
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` of the current time.
pub fn record_timestamp() -> String {
    let t = since_epoch();
    let (date, time) = civil(t.as_secs());
    format!("{date}T{time}.{:06}", t.subsec_micros())
}

/// Date and time of day of a Unix time in seconds, as `YYYY-MM-DD` and `HH:MM:SS`.
fn civil(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

/// Howard Hinnant's days-from-civil inverse: days since 1970-01-01 → (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(civil(0), ("1970-01-01".into(), "00:00:00".into()));
        // 2026-11-26T16:14:48Z
        assert_eq!(
            civil(1_795_709_688),
            ("2026-11-26".into(), "16:14:48".into())
        );
        // Leap day.
        assert_eq!(civil(951_782_400).0, "2000-02-29");
        assert_eq!(civil(4_107_542_400).0, "2100-03-01");
    }
}
