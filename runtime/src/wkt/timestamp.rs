//! `google.protobuf.Timestamp` with the proto3 JSON mapping: RFC 3339, UTC, `Z`, and 0, 3, 6 or 9
//! fractional digits; any offset is accepted when reading. Years 0001 to 9999, as the mapping
//! requires.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A point in time: seconds and nanoseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Timestamp {
    /// Seconds since 1970-01-01T00:00:00Z.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds of the second, 0 to 999,999,999.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

impl prost::Name for Timestamp {
    const NAME: &'static str = "Timestamp";
    const PACKAGE: &'static str = "google.protobuf";
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, in Unix seconds.
const MIN_SECONDS: i64 = -62_135_596_800;
const MAX_SECONDS: i64 = 253_402_300_799;

/// Days since 1970-01-01 → (year, month, day), in the proleptic Gregorian calendar.
fn civil(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) → days since 1970-01-01.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl Timestamp {
    /// Now.
    pub fn now() -> Timestamp {
        SystemTime::now().into()
    }

    /// The RFC 3339 form, or why there is none (out of range).
    pub fn to_rfc3339(&self) -> Result<String, String> {
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&self.seconds) || !(0..1_000_000_000).contains(&self.nanos) {
            return Err(format!(
                "timestamp {}s {}ns is out of range (0001-01-01 to 9999-12-31)",
                self.seconds, self.nanos
            ));
        }
        let (days, secs) = (self.seconds.div_euclid(86_400), self.seconds.rem_euclid(86_400));
        let (y, mo, d) = civil(days);
        let mut out = format!("{y:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}", secs / 3600, secs % 3600 / 60, secs % 60);
        let n = self.nanos;
        if n != 0 {
            if n % 1_000_000 == 0 {
                out.push_str(&format!(".{:03}", n / 1_000_000));
            } else if n % 1_000 == 0 {
                out.push_str(&format!(".{:06}", n / 1_000));
            } else {
                out.push_str(&format!(".{n:09}"));
            }
        }
        out.push('Z');
        Ok(out)
    }

    /// Reads RFC 3339 (`2024-02-29T12:00:00.5+01:00`, `Z` or any offset, up to 9 fractional
    /// digits).
    pub fn parse_rfc3339(text: &str) -> Result<Timestamp, String> {
        let bad = || format!("{text:?} is not an RFC 3339 timestamp (like 1972-01-01T10:00:20.021Z)");
        let b = text.as_bytes();
        let num = |from: usize, len: usize| -> Result<i64, String> {
            let s = text.get(from..from + len).ok_or_else(bad)?;
            if !s.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad());
            }
            s.parse().map_err(|_| bad())
        };
        if b.len() < 20
            || b[4] != b'-'
            || b[7] != b'-'
            || !matches!(b[10], b'T' | b't')
            || b[13] != b':'
            || b[16] != b':'
        {
            return Err(bad());
        }
        let (y, mo, d, h, mi, s) = (num(0, 4)?, num(5, 2)?, num(8, 2)?, num(11, 2)?, num(14, 2)?, num(17, 2)?);
        let leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
        let month_days = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        if !(1..=12).contains(&mo) || d < 1 || d > month_days[(mo - 1) as usize] || h > 23 || mi > 59 || s > 59 {
            return Err(bad());
        }
        let mut i = 19;
        let mut nanos = 0i64;
        if b.get(i) == Some(&b'.') {
            let start = i + 1;
            let mut end = start;
            while end < b.len() && b[end].is_ascii_digit() {
                end += 1;
            }
            let digits = end - start;
            if digits == 0 || digits > 9 {
                return Err(bad());
            }
            nanos = num(start, digits)? * 10i64.pow((9 - digits) as u32);
            i = end;
        }
        let offset = match b.get(i) {
            Some(b'Z' | b'z') if i + 1 == b.len() => 0,
            Some(sign @ (b'+' | b'-')) if i + 6 == b.len() && b[i + 3] == b':' => {
                let (oh, om) = (num(i + 1, 2)?, num(i + 4, 2)?);
                if oh > 23 || om > 59 {
                    return Err(bad());
                }
                let o = oh * 3600 + om * 60;
                if *sign == b'+' {
                    o
                } else {
                    -o
                }
            }
            _ => return Err(bad()),
        };
        let seconds = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
        if !(MIN_SECONDS..=MAX_SECONDS).contains(&seconds) {
            return Err(format!("{text:?} is out of range (0001-01-01 to 9999-12-31)"));
        }
        Ok(Timestamp { seconds, nanos: nanos as i32 })
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.to_rfc3339() {
            Ok(s) => f.write_str(&s),
            Err(_) => write!(f, "{}s+{}ns", self.seconds, self.nanos),
        }
    }
}

impl From<SystemTime> for Timestamp {
    fn from(t: SystemTime) -> Self {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp { seconds: d.as_secs() as i64, nanos: d.subsec_nanos() as i32 },
            Err(e) => {
                let d = e.duration();
                let (mut seconds, mut nanos) = (-(d.as_secs() as i64), -(d.subsec_nanos() as i32));
                if nanos < 0 {
                    seconds -= 1;
                    nanos += 1_000_000_000;
                }
                Timestamp { seconds, nanos }
            }
        }
    }
}

impl TryFrom<Timestamp> for SystemTime {
    type Error = String;
    fn try_from(t: Timestamp) -> Result<Self, String> {
        if !(0..1_000_000_000).contains(&t.nanos) {
            return Err(format!("{} nanoseconds is not within a second", t.nanos));
        }
        let base = if t.seconds >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(t.seconds as u64))
        } else {
            UNIX_EPOCH.checked_sub(Duration::from_secs(t.seconds.unsigned_abs()))
        };
        base.and_then(|b| b.checked_add(Duration::from_nanos(t.nanos as u64)))
            .ok_or_else(|| format!("{t} is out of range"))
    }
}

impl From<pbjson_types::Timestamp> for Timestamp {
    fn from(t: pbjson_types::Timestamp) -> Self {
        Timestamp { seconds: t.seconds, nanos: t.nanos }
    }
}

impl From<Timestamp> for pbjson_types::Timestamp {
    fn from(t: Timestamp) -> Self {
        pbjson_types::Timestamp { seconds: t.seconds, nanos: t.nanos }
    }
}

impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_rfc3339().map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_both_ways() {
        let t = |s: &str| Timestamp::parse_rfc3339(s).unwrap();
        assert_eq!(t("1972-01-01T10:00:20.021Z").to_string(), "1972-01-01T10:00:20.021Z");
        assert_eq!(t("2000-01-01T00:00:00+01:00").to_string(), "1999-12-31T23:00:00Z");
        assert_eq!(t("1970-01-01T00:00:00.000001Z"), Timestamp { seconds: 0, nanos: 1000 });
        assert_eq!(t("1970-01-01T00:00:00.000001Z").to_string(), "1970-01-01T00:00:00.000001Z");
        assert_eq!(t("1969-12-31T23:59:59.5Z"), Timestamp { seconds: -1, nanos: 500_000_000 });
        assert_eq!(t("0001-01-01T00:00:00Z").seconds, MIN_SECONDS);
        assert_eq!(t("9999-12-31T23:59:59.999999999Z").to_string(), "9999-12-31T23:59:59.999999999Z");
        for bad in [
            "1972-01-01 10:00:20Z",
            "1972-13-01T00:00:00Z",
            "1972-02-30T00:00:00Z",
            "1972-01-01T00:00:00",
            "1972-01-01T00:00:00.Z",
            "1972-01-01T00:00:00.1234567890Z",
            "x",
        ] {
            assert!(Timestamp::parse_rfc3339(bad).is_err(), "{bad}");
        }
        assert!(Timestamp { seconds: MAX_SECONDS + 1, nanos: 0 }.to_rfc3339().is_err());
        let now = SystemTime::now();
        assert_eq!(SystemTime::try_from(Timestamp::from(now)).unwrap(), now);
    }
}
