//! statsd, for gunicorn parity: gunicorn's metric names, computed by the master from
//! what changed between two [`Snapshot`]s, so nothing is sent on the request path.
//!
//! gunicorn sends one datagram per event from the worker (`gunicorn.requests:1|c`,
//! `gunicorn.request.status.200:1|c`, `gunicorn.request.duration:12.3|ms`). Here the
//! same names carry the interval's totals: counters as their increase, and durations
//! as one sample per histogram bucket that moved, the mean of that bucket's requests,
//! with the sample rate `1/n` for its `n` requests. A statsd server then counts every
//! request, and its sum and mean of durations are exact (percentiles are as fine as the
//! buckets). `gunicorn.workers` is a gauge of the live workers. `gunicorn.log.<level>`
//! (critical, error, warning, exception) counts the error-log lines of the master and
//! the workers, as gunicorn's logger counts its own; the TLS front's lines (its own log,
//! nginx's part in a gunicorn set-up) are not in them. Lines are packed into
//! datagrams of at most [`DATAGRAM`] bytes, newline-separated, as statsd servers accept.

use std::fmt::Write;

use crate::log_lines::Logged;
use crate::snapshot::Snapshot;
use crate::table::BUCKETS;

/// Largest datagram: fits a 1500-byte MTU after IP and UDP headers (etsy statsd's advice).
pub const DATAGRAM: usize = 1432;

/// gunicorn's handling of `--statsd-prefix`: a non-empty prefix ends with exactly one dot.
pub fn normalize_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('.');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}.")
    }
}

/// The statsd lines for what changed from `before` to `now`. `prefix` is normalized.
pub fn lines(before: &Snapshot, now: &Snapshot, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (b, n) = (&before.totals, &now.totals);
    let requests = n.requests().saturating_sub(b.requests());
    if requests > 0 {
        out.push(format!("{prefix}gunicorn.requests:{requests}|c"));
    }
    for (i, (was, is)) in b.statuses.iter().zip(n.statuses.iter()).enumerate() {
        let delta = is.saturating_sub(*was);
        if delta > 0 {
            out.push(format!(
                "{prefix}gunicorn.request.status.{}:{delta}|c",
                i + 100
            ));
        }
    }
    for bucket in 0..BUCKETS {
        let count = n.duration_count[bucket].saturating_sub(b.duration_count[bucket]);
        if count == 0 {
            continue;
        }
        let us = n.duration_us[bucket].saturating_sub(b.duration_us[bucket]);
        let mean_ms = us as f64 / count as f64 / 1000.0;
        let mut line = format!("{prefix}gunicorn.request.duration:{mean_ms:.3}|ms");
        if count > 1 {
            let _ = write!(line, "|@{}", 1.0 / count as f64);
        }
        out.push(line);
    }
    for level in Logged::ALL {
        let i = level as usize;
        let lines = |s: &Snapshot| s.master_log_lines[i] + s.totals.log_lines[i];
        let delta = lines(now).saturating_sub(lines(before));
        if delta > 0 {
            out.push(format!("{prefix}gunicorn.log.{}:{delta}|c", level.name()));
        }
    }
    out.push(format!("{prefix}gunicorn.workers:{}|g", now.workers.len()));
    out
}

/// Pack lines into datagrams of at most [`DATAGRAM`] bytes.
pub fn datagrams(lines: &[String]) -> Vec<Vec<u8>> {
    let mut packets = Vec::new();
    let mut packet: Vec<u8> = Vec::new();
    for line in lines {
        if !packet.is_empty() && packet.len() + 1 + line.len() > DATAGRAM {
            packets.push(std::mem::take(&mut packet));
        }
        if !packet.is_empty() {
            packet.push(b'\n');
        }
        packet.extend_from_slice(line.as_bytes());
    }
    if !packet.is_empty() {
        packets.push(packet);
    }
    packets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::WorkerView;
    use crate::table::SlotId;

    #[test]
    fn the_prefix_ends_with_one_dot_as_gunicorn_makes_it() {
        assert_eq!(normalize_prefix(""), "");
        assert_eq!(normalize_prefix("app"), "app.");
        assert_eq!(normalize_prefix("app..."), "app.");
        assert_eq!(normalize_prefix("a.b"), "a.b.");
    }

    #[test]
    fn deltas_become_gunicorns_metrics() {
        let before = Snapshot::default();
        let mut now = Snapshot::default();
        now.totals.requests[0][1] = 3;
        now.totals.requests[2][3] = 1;
        now.totals.statuses[100] = 3; // 200
        now.totals.statuses[304] = 1; // 404
        now.totals.duration_count[0] = 3;
        now.totals.duration_us[0] = 150;
        now.totals.duration_count[5] = 1;
        now.totals.duration_us[5] = 4_000;
        now.master_log_lines = [1, 2, 0, 0];
        now.totals.log_lines = [0, 1, 4, 2];
        now.front.log_lines = [0, 7, 7, 0]; // the front's are not gunicorn's
        now.workers.push(WorkerView {
            slot: SlotId(0),
            pid: 1,
            beat_age_ms: 0,
            booted: true,
            leaving: false,
            threads: 0,
            busy_threads: 0,
            in_flight: 0,
            open_conns: 0,
        });
        let got = lines(&before, &now, "p.");
        assert_eq!(
            got,
            vec![
                "p.gunicorn.requests:4|c",
                "p.gunicorn.request.status.200:3|c",
                "p.gunicorn.request.status.404:1|c",
                "p.gunicorn.request.duration:0.050|ms|@0.3333333333333333",
                "p.gunicorn.request.duration:4.000|ms",
                "p.gunicorn.log.critical:1|c",
                "p.gunicorn.log.error:3|c",
                "p.gunicorn.log.warning:4|c",
                "p.gunicorn.log.exception:2|c",
                "p.gunicorn.workers:1|g",
            ]
        );
        // Nothing moved: only the gauge.
        assert_eq!(lines(&now, &now, ""), vec!["gunicorn.workers:1|g"]);
    }

    #[test]
    fn datagrams_stay_under_the_limit_and_keep_every_line() {
        let lines: Vec<String> = (0..200).map(|i| format!("gunicorn.x{i}:1|c")).collect();
        let packets = datagrams(&lines);
        assert!(packets.len() > 1);
        assert!(packets.iter().all(|p| p.len() <= DATAGRAM));
        let joined: Vec<String> = packets
            .iter()
            .flat_map(|p| {
                String::from_utf8(p.clone())
                    .expect("utf8")
                    .lines()
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(joined, lines);
    }
}
