//! `--since` / `--until` values: a duration back from now (`2h`, `15m`) or
//! an RFC 3339 timestamp.

use anyhow::{anyhow, Result};
use dsl::time::{now_ns, parse_duration_ns, parse_rfc3339};

pub fn parse_time_arg(text: &str) -> Result<i64> {
    if let Ok(ago) = parse_duration_ns(text) {
        return Ok(now_ns().saturating_sub(ago));
    }
    parse_rfc3339(text).map_err(|e| anyhow!("{e}; use a duration such as 2h or an RFC 3339 time"))
}

/// The time range of `--since` / `--until` (both optional).
pub fn time_range(since: Option<&str>, until: Option<&str>) -> Result<spool::TimeRange> {
    let start = since.map(parse_time_arg).transpose()?.unwrap_or(i64::MIN);
    let end = until.map(parse_time_arg).transpose()?.unwrap_or(i64::MAX);
    if start > end {
        return Err(anyhow!("--since is after --until"));
    }
    Ok(spool::TimeRange::new(start, end))
}
