//! Timestamps are i64 nanoseconds since the Unix epoch everywhere in vigil;
//! these helpers convert them to and from the text people and ECS use.

use chrono::{DateTime, SecondsFormat, Utc};

pub const NS_PER_SEC: i64 = 1_000_000_000;

/// `2024-09-04T07:32:31.324Z`, with as many fraction digits as needed.
pub fn format_rfc3339(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp(ns.div_euclid(NS_PER_SEC), ns.rem_euclid(NS_PER_SEC) as u32)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true))
        .unwrap_or_else(|| format!("{ns}ns"))
}

pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let t = DateTime::parse_from_rfc3339(text)
        .map_err(|e| format!("invalid RFC 3339 timestamp {text:?}: {e}"))?;
    t.timestamp_nanos_opt()
        .ok_or_else(|| format!("timestamp {text:?} is outside the supported range"))
}

/// Parses a duration such as `15s`, `1m`, `2h`, `500ms`, `3d` into ns.
pub fn parse_duration_ns(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("duration {text:?} needs a unit (ms, s, m, h, d)"))?;
    let (num, unit) = text.split_at(split);
    let n: i64 = num
        .parse()
        .map_err(|_| format!("duration {text:?} needs a number before the unit"))?;
    let scale = match unit {
        "ms" => 1_000_000,
        "s" => NS_PER_SEC,
        "m" => 60 * NS_PER_SEC,
        "h" => 3600 * NS_PER_SEC,
        "d" => 86_400 * NS_PER_SEC,
        _ => {
            return Err(format!(
                "unknown duration unit {unit:?} in {text:?} (ms, s, m, h, d)"
            ))
        }
    };
    n.checked_mul(scale)
        .ok_or_else(|| format!("duration {text:?} is too large"))
}

/// Now, in ns since the epoch.
pub fn now_ns() -> i64 {
    // SystemTime, not chrono: sources stamp every event with this.
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trip_keeps_nanoseconds() {
        let ns = 1_717_148_832_436_123_456;
        assert_eq!(parse_rfc3339(&format_rfc3339(ns)), Ok(ns));
        assert_eq!(
            format_rfc3339(1_725_435_151_324_000_000),
            "2024-09-04T07:32:31.324Z"
        );
    }

    #[test]
    fn durations_parse_with_units_and_reject_garbage() {
        assert_eq!(parse_duration_ns("15s"), Ok(15 * NS_PER_SEC));
        assert_eq!(parse_duration_ns("1m"), Ok(60 * NS_PER_SEC));
        assert_eq!(parse_duration_ns("250ms"), Ok(250_000_000));
        assert!(parse_duration_ns("15").is_err());
        assert!(parse_duration_ns("s").is_err());
        assert!(parse_duration_ns("5y").is_err());
        assert!(parse_duration_ns("99999999999999999999h").is_err());
    }
}
