//! `--since` / `--until` values: a duration back from now (`2h`, `15m`) or
//! an RFC 3339 timestamp.

use dsl::time::{now_ns, parse_duration_ns, parse_rfc3339};

/// A `--since` / `--until` value that is not a time.
#[derive(Debug, thiserror::Error)]
pub enum TimeArgError {
    #[error("{problem}; use a duration such as 2h or an RFC 3339 time")]
    Unparsable { problem: String },
    #[error("--since is after --until")]
    Reversed,
}

pub fn parse_time_arg(text: &str) -> Result<i64, TimeArgError> {
    if let Ok(ago) = parse_duration_ns(text) {
        return Ok(now_ns().saturating_sub(ago));
    }
    parse_rfc3339(text).map_err(|e| TimeArgError::Unparsable {
        problem: e.to_string(),
    })
}

/// The time range of `--since` / `--until` (both optional).
pub fn time_range(
    since: Option<&str>,
    until: Option<&str>,
) -> Result<spool::TimeRange, TimeArgError> {
    let start = since.map(parse_time_arg).transpose()?.unwrap_or(i64::MIN);
    let end = until.map(parse_time_arg).transpose()?.unwrap_or(i64::MAX);
    if start > end {
        return Err(TimeArgError::Reversed);
    }
    Ok(spool::TimeRange::new(start, end))
}
