//! RFC 3339 timestamps to and from milliseconds since the Unix epoch.
//!
//! `humantime` checks the calendar and clock fields but only knows UTC (`Z`); the
//! numeric offsets RFC 3339 also allows (`+02:00`) are applied here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last millisecond of the year 9999, the end of what RFC 3339 can write.
const MAX_MS: i64 = 253_402_300_799_999;

/// Parses an RFC 3339 timestamp (`2026-12-01T10:00:00Z`, `2026-12-01T11:00:00.5+01:00`)
/// into milliseconds since the Unix epoch; digits past the millisecond are dropped.
/// `None` for anything else, and for times before 1970 or after 9999.
pub(super) fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let (local, offset_minutes) = split_offset(text)?;
    // RFC 3339 allows a lowercase `t`; humantime wants the uppercase one.
    let utc = format!("{}Z", local.replacen('t', "T", 1));
    let since_epoch = humantime::parse_rfc3339(&utc)
        .ok()?
        .duration_since(UNIX_EPOCH)
        .ok()?;
    let local_ms = i64::try_from(since_epoch.as_millis()).ok()?;
    let ms = local_ms.checked_sub(offset_minutes.checked_mul(60_000)?)?;
    (0..=MAX_MS).contains(&ms).then_some(ms)
}

/// Splits `…Z` or `…+hh:mm` into the local date-time and the offset in minutes.
fn split_offset(text: &str) -> Option<(&str, i64)> {
    if let Some(local) = text.strip_suffix(['Z', 'z']) {
        return Some((local, 0));
    }
    let (local, offset) = text.split_at_checked(text.len().checked_sub(6)?)?;
    let &[sign, h1, h2, b':', m1, m2] = offset.as_bytes() else {
        return None;
    };
    let sign = match sign {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (hours, minutes) = (two_digits(h1, h2)?, two_digits(m1, m2)?);
    (hours < 24 && minutes < 60).then_some((local, sign * (hours * 60 + minutes)))
}

fn two_digits(tens: u8, ones: u8) -> Option<i64> {
    let digit = |b: u8| b.is_ascii_digit().then(|| i64::from(b - b'0'));
    Some(digit(tens)? * 10 + digit(ones)?)
}

/// Formats milliseconds since the Unix epoch as RFC 3339 in UTC, with a fraction only
/// when there is one. `None` outside the years 1970 to 9999, which
/// [`parse_rfc3339_ms`] never produces.
pub(super) fn format_rfc3339_ms(ms: i64) -> Option<String> {
    if !(0..=MAX_MS).contains(&ms) {
        // humantime panics before the epoch and fails after 9999.
        return None;
    }
    let time = SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms.unsigned_abs()))?;
    let text = if ms % 1000 == 0 {
        humantime::format_rfc3339_seconds(time)
    } else {
        humantime::format_rfc3339_millis(time)
    };
    Some(text.to_string())
}
