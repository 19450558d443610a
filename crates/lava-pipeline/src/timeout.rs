//! Timeout maps (`{days, hours, minutes, seconds}`) and LAVA's `HH:MM:SS` rendering.

use crate::error::{LavaError, LavaResult};
use serde_yaml::Value;

/// LAVA's default action timeout (`ACTION_TIMEOUT`), in seconds.
pub const DEFAULT_ACTION_TIMEOUT: u64 = 30;

/// Parse a timeout map into whole seconds, as LAVA's `Timeout.parse`:
/// the units are summed and a zero total means the default 30 s.
pub fn parse_timeout(value: &Value) -> LavaResult<u64> {
    let map = value
        .as_mapping()
        .ok_or_else(|| LavaError::configuration("Invalid timeout data"))?;
    let mut total: f64 = 0.0;
    for (unit, factor) in [
        ("days", 86400.0),
        ("hours", 3600.0),
        ("minutes", 60.0),
        ("seconds", 1.0),
    ] {
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
    fn hours_are_not_wrapped() {
        assert_eq!(seconds_to_str(45.0), "00:00:45");
        assert_eq!(seconds_to_str(3725.0), "01:02:05");
        assert_eq!(seconds_to_str(30.0 * 3600.0), "30:00:00");
    }
}
