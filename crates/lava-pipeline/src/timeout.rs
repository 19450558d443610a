//! Timeout maps (`{days, hours, minutes, seconds}`) and LAVA's `HH:MM:SS` rendering.

use crate::error::{LavaError, LavaResult};
use serde_yaml::Value;
use std::time::Duration;
use tokio::time::Instant;

/// LAVA's default action timeout (`ACTION_TIMEOUT`), in seconds.
pub const DEFAULT_ACTION_TIMEOUT: u64 = 30;

/// The longest timeout a job may give (job, action, connection; one timeout map's sum):
/// 365 days. LAVA sets no limit; ours keeps deadline arithmetic far from the clock's
/// range, and no real job waits a year. `definition::check_job` refuses more, naming the
/// key path (see `docs/limits.md`).
pub const MAX_TIMEOUT_SECONDS: u64 = 365 * 86400;

/// The instant `after` past `start`, never panicking: a duration beyond what the clock
/// can represent ends at the furthest representable instant instead. Every deadline fed
/// by job or device data is computed here.
pub fn deadline_after(start: Instant, after: Duration) -> Instant {
    let mut after = after;
    loop {
        if let Some(deadline) = start.checked_add(after) {
            return deadline;
        }
        after /= 2;
    }
}

/// [`deadline_after`] from now.
pub fn deadline_in(after: Duration) -> Instant {
    deadline_after(Instant::now(), after)
}

/// The seconds a timeout map adds up to, without the zero-means-default rule, or `None`
/// when it is not a map of numbers (the job checks report those separately).
pub fn timeout_total(value: &Value) -> Option<f64> {
    let map = value.as_mapping()?;
    let mut total = 0.0;
    for (unit, factor) in UNITS {
        if let Some(v) = map.get(unit) {
            total += v.as_f64()? * factor;
        }
    }
    Some(total)
}

/// Seconds in one `unit` of a timeout map (`days`, `hours`, `minutes`, `seconds`).
pub fn unit_seconds(unit: &str) -> Option<f64> {
    UNITS
        .iter()
        .find(|(name, _)| *name == unit)
        .map(|(_, f)| *f)
}

const UNITS: [(&str, f64); 4] = [
    ("days", 86400.0),
    ("hours", 3600.0),
    ("minutes", 60.0),
    ("seconds", 1.0),
];

/// Parse a timeout map into whole seconds, as LAVA's `Timeout.parse`:
/// the units are summed and a zero total means the default 30 s.
pub fn parse_timeout(value: &Value) -> LavaResult<u64> {
    let map = value
        .as_mapping()
        .ok_or_else(|| LavaError::configuration("Invalid timeout data"))?;
    let mut total: f64 = 0.0;
    for (unit, factor) in UNITS {
        if let Some(v) = map.get(unit) {
            let n = v.as_f64().ok_or_else(|| {
                LavaError::configuration(format!("Invalid timeout data: {unit} is not a number"))
            })?;
            total += n * factor;
        }
    }
    if total <= 0.0 {
        return Ok(DEFAULT_ACTION_TIMEOUT);
    }
    Ok(total as u64)
}

/// Like [`parse_timeout`] but for a value that must be a map: a non-map is a JobError
/// ("Invalid timeout ..."), as in LAVA's `_override_action_timeout`.
pub fn parse_override(value: &Value, what: &str) -> LavaResult<u64> {
    if !value.is_mapping() {
        return Err(LavaError::job(format!(
            "Invalid {what} {}",
            crate::value::python_repr(value)
        )));
    }
    parse_timeout(value)
}

/// Render seconds as LAVA does in `start:`/`end:` lines: `HH:MM:SS`, hours not wrapped.
pub fn seconds_to_str(seconds: f64) -> String {
    let total = seconds.max(0.0).round() as u64;
    format!(
        "{:02}:{:02}:{:02}",
        total / 3600,
        (total / 60) % 60,
        total % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    #[test]
    fn units_are_summed_and_zero_means_default() {
        assert_eq!(
            parse_timeout(&yaml("{minutes: 2, seconds: 5}")).unwrap(),
            125
        );
        assert_eq!(parse_timeout(&yaml("{days: 1}")).unwrap(), 86400);
        assert_eq!(parse_timeout(&yaml("{seconds: 0}")).unwrap(), 30);
        assert_eq!(parse_timeout(&yaml("{}")).unwrap(), 30);
        assert!(parse_timeout(&yaml("5")).is_err());
        assert!(parse_timeout(&yaml("{minutes: x}")).is_err());
    }

    #[test]
    fn deadlines_saturate_instead_of_panicking() {
        let start = Instant::now();
        let huge = parse_timeout(&yaml("{days: 1000000000000000}")).unwrap();
        let far = deadline_after(start, Duration::from_secs(huge));
        assert!(far > start + Duration::from_secs(MAX_TIMEOUT_SECONDS));
        assert!(deadline_after(start, Duration::MAX) >= far);
        assert_eq!(
            deadline_after(start, Duration::from_secs(5)),
            start + Duration::from_secs(5)
        );
    }

    #[test]
    fn totals_are_sums_without_the_default() {
        assert_eq!(timeout_total(&yaml("{days: 1, seconds: 2}")), Some(86402.0));
        assert_eq!(timeout_total(&yaml("{}")), Some(0.0));
        assert_eq!(timeout_total(&yaml("{days: x}")), None);
    }

    #[test]
    fn hours_are_not_wrapped() {
        assert_eq!(seconds_to_str(45.0), "00:00:45");
        assert_eq!(seconds_to_str(3725.0), "01:02:05");
        assert_eq!(seconds_to_str(30.0 * 3600.0), "30:00:00");
    }
}
