//! Wall-clock formatting without a date library: the HTTP `Date` header (IMF-fixdate),
//! cached once a second, and the timestamps of the access and error logs.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// A UTC calendar time, broken down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 = Thursday (1970-01-01 was one).
    pub weekday: usize,
}

impl Civil {
    pub fn from_unix(secs: u64) -> Civil {
        let days = (secs / 86_400) as i64;
        let rem = secs % 86_400;
        // Howard Hinnant's days-to-civil algorithm.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hour: (rem / 3600) as u32,
            minute: (rem / 60 % 60) as u32,
            second: (rem % 60) as u32,
            weekday: (days.rem_euclid(7)) as usize,
        }
    }

    pub fn now() -> Civil {
        Civil::from_unix(unix_now())
    }

    /// `Sun, 06 Nov 1994 08:49:37 GMT`
    pub fn http_date(&self) -> String {
        let mut out = String::with_capacity(29);
        self.write_http_date(&mut out);
        out
    }

    /// [`Civil::http_date`] appended to `out`, which allocates nothing once `out` has room.
    pub fn write_http_date(&self, out: &mut String) {
        use std::fmt::Write as _;
        // Writing into a String cannot fail.
        let _ = write!(
            out,
            "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
            DAYS[self.weekday],
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        );
    }

    /// The access log's `%(t)s`: `[06/Nov/1994:08:49:37 +0000]`
    pub fn access_log_time(&self) -> String {
        format!("[{}]", self.clf_time())
    }

    /// Common Log Format time (nginx's `$time_local` in UTC): `06/Nov/1994:08:49:37 +0000`
    pub fn clf_time(&self) -> String {
        format!(
            "{:02}/{}/{}:{:02}:{:02}:{:02} +0000",
            self.day,
            MONTHS[(self.month - 1) as usize],
            self.year,
            self.hour,
            self.minute,
            self.second
        )
    }

    /// The error log's timestamp: `[1994-11-06 08:49:37 +0000]`
    pub fn error_log_time(&self) -> String {
        format!(
            "[{}-{:02}-{:02} {:02}:{:02}:{:02} +0000]",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

thread_local! {
    static CACHED_DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// Run `f` with the current `Date` header value, formatted at most once a second per thread.
pub fn with_http_date<R>(f: impl FnOnce(&str) -> R) -> R {
    CACHED_DATE.with(|cell| {
        let now = unix_now();
        let mut cached = cell.borrow_mut();
        if cached.0 != now {
            // Formatted in place: the string keeps its buffer from one second to the next.
            cached.0 = now;
            cached.1.clear();
            Civil::from_unix(now).write_http_date(&mut cached.1);
        }
        f(&cached.1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_rfc_example_date() {
        // 784111777 is Sun, 06 Nov 1994 08:49:37 GMT (RFC 9110's example).
        let civil = Civil::from_unix(784_111_777);
        assert_eq!(civil.http_date(), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(civil.access_log_time(), "[06/Nov/1994:08:49:37 +0000]");
        assert_eq!(civil.error_log_time(), "[1994-11-06 08:49:37 +0000]");
    }

    #[test]
    fn handles_leap_days_and_epoch() {
        assert_eq!(
            Civil::from_unix(0).http_date(),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
        // 2024-02-29 12:00:00 UTC
        assert_eq!(
            Civil::from_unix(1_709_208_000).http_date(),
            "Thu, 29 Feb 2024 12:00:00 GMT"
        );
    }
}
