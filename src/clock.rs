//! UTC timestamps in the two text forms the wire formats use.
//!
//! Attack records carry `2026-11-26T16:14:48Z` (`docs/websocket-api.md`) and lifecycle records
//! `2026-11-26T16:14:48.123456` (`docs/records.md`); `chrono` does the calendar.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

/// `strftime` form of an attack record's `TIMESTAMP`: whole seconds, `Z`.
const ATTACK_FORMAT: &str = "%Y-%m-%dT%H:%M:%SZ";
/// `strftime` form of a lifecycle record's `timestamp`: microseconds, no zone (it is UTC).
const RECORD_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6f";

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
    attack_form(SystemTime::now().into())
}

/// `YYYY-MM-DDTHH:MM:SS.ffffff` of the current time.
pub fn record_timestamp() -> String {
    record_form(SystemTime::now().into())
}

fn attack_form(t: DateTime<Utc>) -> String {
    t.format(ATTACK_FORMAT).to_string()
}

fn record_form(t: DateTime<Utc>) -> String {
    t.format(RECORD_FORMAT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64, micros: u32) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, micros * 1000).unwrap()
    }

    #[test]
    fn attack_form_is_whole_seconds_with_z() {
        assert_eq!(attack_form(at(0, 0)), "1970-01-01T00:00:00Z");
        // 2026-11-26T16:14:48Z; the fraction is dropped, not rounded.
        assert_eq!(
            attack_form(at(1_795_709_688, 999_999)),
            "2026-11-26T16:14:48Z"
        );
    }

    #[test]
    fn record_form_has_six_fraction_digits_and_no_zone() {
        assert_eq!(
            record_form(at(1_795_709_688, 123_456)),
            "2026-11-26T16:14:48.123456"
        );
        assert_eq!(record_form(at(0, 7)), "1970-01-01T00:00:00.000007");
        assert_eq!(record_form(at(0, 0)), "1970-01-01T00:00:00.000000");
    }

    #[test]
    fn calendar_edges() {
        // Leap day of a year divisible by 400; 2100 is not a leap year.
        assert_eq!(attack_form(at(951_782_400, 0)), "2000-02-29T00:00:00Z");
        assert_eq!(attack_form(at(4_107_542_400, 0)), "2100-03-01T00:00:00Z");
        assert_eq!(
            record_form(at(1_798_761_599, 999_999)),
            "2026-12-31T23:59:59.999999"
        );
    }

    #[test]
    fn current_time_has_the_same_shapes() {
        let attack = attack_timestamp();
        assert_eq!(attack.len(), "2026-11-26T16:14:48Z".len(), "{attack}");
        assert!(
            attack.ends_with('Z') && attack.as_bytes()[10] == b'T',
            "{attack}"
        );
        let record = record_timestamp();
        assert_eq!(record.len(), "2026-11-26T16:14:48.123456".len(), "{record}");
        assert_eq!(record.as_bytes()[19], b'.', "{record}");
    }
}
