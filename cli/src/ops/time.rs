//! Times as the tools print them: dates in UTC, uptimes in h/m/s.

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time.
pub(crate) fn date(unix: u64) -> String {
    let t = micro::wkt::Timestamp { seconds: i64::try_from(unix).unwrap_or(i64::MAX), nanos: 0 };
    t.to_rfc3339().map(|s| s.replacen('T', " ", 1).trim_end_matches('Z').to_string()).unwrap_or_else(|e| e)
}

/// A number of seconds as `1h2m5s`.
pub(crate) fn duration(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h{}m{}s", s / 3600, s % 3600 / 60, s % 60),
        s if s >= 60 => format!("{}m{}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The current time, `YYYY-MM-DD HH:MM:SS UTC`.
pub(crate) fn now_utc() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    format!("{} UTC", date(secs))
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_and_durations() {
        assert_eq!(super::date(0), "1970-01-01 00:00:00");
        assert_eq!(super::date(1_700_000_000), "2023-11-14 22:13:20");
        assert_eq!(super::duration(3725), "1h2m5s");
        assert_eq!(super::duration(59), "59s");
    }
}
