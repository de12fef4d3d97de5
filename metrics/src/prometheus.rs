//! A [`Snapshot`] in the Prometheus text exposition format (version 0.0.4), the page
//! the metrics listener serves at `/metrics`. Every name starts with `rgunicorn_`.

use std::fmt::Write;

use crate::health;
use crate::log_lines::Logged;
use crate::record::Method;
use crate::snapshot::Snapshot;
use crate::table::{Restart, BOUNDS_US, CLASSES};

/// The `Content-Type` of the page.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

const CLASS_NAMES: [&str; CLASSES] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Seconds from microseconds, exactly, without trailing zeros: 100 -> `0.0001`.
fn seconds(us: u64) -> String {
    let mut s = format!("{}.{:06}", us / 1_000_000, us % 1_000_000);
    while s.ends_with('0') {
        s.pop();
    }
    if s.ends_with('.') {
        s.pop();
    }
    s
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// Render the page; `version` goes into `rgunicorn_build_info`.
pub fn render(snap: &Snapshot, version: &str, out: &mut String) {
    let t = &snap.totals;

    family(
        out,
        "rgunicorn_http_requests_total",
        "counter",
        "Responses the workers sent, by request method and status class.",
    );
    for method in Method::ALL {
        for (class, name) in CLASS_NAMES.iter().enumerate() {
            let n = t.requests[method as usize][class];
            if n > 0 {
                let _ = writeln!(
                    out,
                    "rgunicorn_http_requests_total{{method=\"{}\",status=\"{name}\"}} {n}",
                    method.name()
                );
            }
        }
    }

    let name = "rgunicorn_http_request_duration_seconds";
    family(
        out,
        name,
        "histogram",
        "Time from a request's head to its response's head, in the workers.",
    );
    let mut cumulative = 0;
    for (i, bound) in BOUNDS_US.iter().enumerate() {
        cumulative += t.duration_count[i];
        let _ = writeln!(
            out,
            "{name}_bucket{{le=\"{}\"}} {cumulative}",
            seconds(*bound)
        );
    }
    let count: u64 = t.duration_count.iter().sum();
    let sum_us: u64 = t.duration_us.iter().sum();
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {}", seconds(sum_us));
    let _ = writeln!(out, "{name}_count {count}");

    family(
        out,
        "rgunicorn_http_requests_in_flight",
        "gauge",
        "Requests an app is working on.",
    );
    let _ = writeln!(
        out,
        "rgunicorn_http_requests_in_flight {}",
        snap.in_flight()
    );

    family(
        out,
        "rgunicorn_workers",
        "gauge",
        "Worker processes, by state: booting (app not loaded yet), serving, leaving (retiring or told to stop).",
    );
    let count = |f: &dyn Fn(&crate::snapshot::WorkerView) -> bool| {
        snap.workers.iter().filter(|w| f(w)).count()
    };
    let booting = count(&|w| !w.booted && !w.leaving);
    let serving = count(&|w| w.booted && !w.leaving);
    let leaving = count(&|w| w.leaving);
    for (state, n) in [
        ("booting", booting),
        ("serving", serving),
        ("leaving", leaving),
    ] {
        let _ = writeln!(out, "rgunicorn_workers{{state=\"{state}\"}} {n}");
    }
    family(
        out,
        "rgunicorn_workers_wanted",
        "gauge",
        "Workers the master keeps running (--workers, TTIN, TTOU).",
    );
    let _ = writeln!(out, "rgunicorn_workers_wanted {}", snap.target_workers);

    family(
        out,
        "rgunicorn_worker_restarts_total",
        "counter",
        "Workers replaced, by reason.",
    );
    for (i, why) in Restart::ALL.iter().enumerate() {
        let _ = writeln!(
            out,
            "rgunicorn_worker_restarts_total{{reason=\"{}\"}} {}",
            why.name(),
            snap.restarts[i]
        );
    }

    family(
        out,
        "rgunicorn_app_threads",
        "gauge",
        "App threads of every worker, busy running a request or idle (none for apps that run on the event loop).",
    );
    let threads: u64 = snap.workers.iter().map(|w| w.threads).sum();
    let busy: u64 = snap
        .workers
        .iter()
        .map(|w| w.busy_threads.min(w.threads))
        .sum();
    let _ = writeln!(out, "rgunicorn_app_threads{{state=\"busy\"}} {busy}");
    let _ = writeln!(
        out,
        "rgunicorn_app_threads{{state=\"idle\"}} {}",
        threads - busy
    );
    family(
        out,
        "rgunicorn_worker_app_threads",
        "gauge",
        "App threads per worker (by slot, which the worker's replacement keeps), busy or idle.",
    );
    for w in &snap.workers {
        let busy = w.busy_threads.min(w.threads);
        for (state, n) in [("busy", busy), ("idle", w.threads - busy)] {
            let _ = writeln!(
                out,
                "rgunicorn_worker_app_threads{{worker=\"{}\",state=\"{state}\"}} {n}",
                w.slot.0
            );
        }
    }

    family(
        out,
        "rgunicorn_open_connections",
        "gauge",
        "Client connections open, in the workers and in the TLS front.",
    );
    let worker_conns: u64 = snap.workers.iter().map(|w| w.open_conns).sum();
    let _ = writeln!(
        out,
        "rgunicorn_open_connections{{process=\"worker\"}} {worker_conns}"
    );
    let front = snap.front.configured && snap.front.counting;
    if front {
        let _ = writeln!(
            out,
            "rgunicorn_open_connections{{process=\"front\"}} {}",
            snap.front.open_conns
        );
    }
    family(
        out,
        "rgunicorn_connections_accepted_total",
        "counter",
        "Connections the workers accepted.",
    );
    let _ = writeln!(out, "rgunicorn_connections_accepted_total {}", t.accepted);

    for (name, help, worker, by_front) in [
        (
            "rgunicorn_received_bytes_total",
            "Bytes read from clients (the front's are TLS records).",
            t.bytes_in,
            snap.front.bytes_in,
        ),
        (
            "rgunicorn_sent_bytes_total",
            "Bytes written to clients (the front's are TLS records).",
            t.bytes_out,
            snap.front.bytes_out,
        ),
    ] {
        family(out, name, "counter", help);
        let _ = writeln!(out, "{name}{{process=\"worker\"}} {worker}");
        if front {
            let _ = writeln!(out, "{name}{{process=\"front\"}} {by_front}");
        }
    }

    if front {
        family(
            out,
            "rgunicorn_front_tls_handshakes_total",
            "counter",
            "TLS handshakes in the front: full, resumed (session ticket or cache), failed.",
        );
        for (i, result) in ["full", "resumed", "failed"].iter().enumerate() {
            let _ = writeln!(
                out,
                "rgunicorn_front_tls_handshakes_total{{result=\"{result}\"}} {}",
                snap.front.handshakes[i]
            );
        }
        family(
            out,
            "rgunicorn_front_upstream_errors_total",
            "counter",
            "Answers the front gave itself because the workers could not: 502 unreachable, 504 too slow.",
        );
        for (i, status) in ["502", "504"].iter().enumerate() {
            let _ = writeln!(
                out,
                "rgunicorn_front_upstream_errors_total{{status=\"{status}\"}} {}",
                snap.front.upstream_errors[i]
            );
        }
    }

    family(
        out,
        "rgunicorn_log_messages_total",
        "counter",
        "Error-log lines at warning level and above, by process and level (exception: an app's error with its traceback, written as ERROR).",
    );
    let mut processes = vec![("master", snap.master_log_lines), ("worker", t.log_lines)];
    if front {
        processes.push(("front", snap.front.log_lines));
    }
    for (process, lines) in processes {
        for level in Logged::ALL {
            let _ = writeln!(
                out,
                "rgunicorn_log_messages_total{{process=\"{process}\",level=\"{}\"}} {}",
                level.name(),
                lines[level as usize]
            );
        }
    }

    family(
        out,
        "rgunicorn_ready",
        "gauge",
        "1 when /readyz answers 200: every worker booted, the front running, not stopping.",
    );
    let ready = health::ready(snap).is_ok();
    let _ = writeln!(out, "rgunicorn_ready {}", u8::from(ready));
    family(
        out,
        "rgunicorn_build_info",
        "gauge",
        "The running rgunicorn's version.",
    );
    let _ = writeln!(out, "rgunicorn_build_info{{version=\"{version}\"}} 1");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(100), "0.0001");
        assert_eq!(seconds(2_500), "0.0025");
        assert_eq!(seconds(1_000_000), "1");
        assert_eq!(seconds(60_000_000), "60");
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1_234_567), "1.234567");
    }

    #[test]
    fn a_page_has_every_family_and_cumulative_buckets() {
        let mut snap = Snapshot::default();
        snap.totals.requests[0][1] = 3;
        snap.totals.duration_count[0] = 2;
        snap.totals.duration_count[3] = 1;
        snap.totals.duration_us[0] = 150;
        snap.totals.duration_us[3] = 900;
        let mut page = String::new();
        render(&snap, "0.1.0", &mut page);
        assert!(page.contains("rgunicorn_http_requests_total{method=\"GET\",status=\"2xx\"} 3\n"));
        assert!(page.contains("rgunicorn_http_request_duration_seconds_bucket{le=\"0.0001\"} 2\n"));
        assert!(page.contains("rgunicorn_http_request_duration_seconds_bucket{le=\"0.001\"} 3\n"));
        assert!(page.contains("rgunicorn_http_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(page.contains("rgunicorn_http_request_duration_seconds_sum 0.00105\n"));
        assert!(page.contains("rgunicorn_worker_restarts_total{reason=\"crash\"} 0\n"));
        assert!(page
            .contains("rgunicorn_log_messages_total{process=\"worker\",level=\"exception\"} 0\n"));
        assert!(
            !page.contains("process=\"front\"") && !page.contains("rgunicorn_front_"),
            "no front metrics without a front"
        );
        assert!(page.ends_with("rgunicorn_build_info{version=\"0.1.0\"} 1\n"));
    }
}
