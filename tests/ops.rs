//! Operating rgunicorn (issue 13), against the real binaries: the metrics page parsed by
//! the reference Prometheus parser, counters that move by exactly the requests sent
//! across a HUP and a worker killed with SIGKILL, `/readyz` turning 503 at TERM before
//! the app's port refuses, the TLS front's handshakes, connections and 504s, gunicorn's
//! statsd metrics received on a real UDP socket, error-log lines counted by level as the
//! log has them (statsd and the page, across a worker killed), and JSON access-log lines
//! that a JSON parser reads whatever the headers held.

mod common;
mod front_support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::load::{FullRate, Tcp};
use common::{custom_app_bin, get, wait_until, Server};

/// The metrics listener's address, from the master's log.
fn metrics_addr(server: &Server) -> SocketAddr {
    server
        .log()
        .lines()
        .filter_map(|l| l.split("Serving metrics at: http://").nth(1))
        .filter_map(|rest| rest.split('/').next())
        .find_map(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no metrics address in the log:\n{}", server.log()))
}

/// Every sample of the page, keyed `name{label="value",...}` (labels sorted), as parsed
/// by prometheus_client's own text parser.
struct Page(HashMap<String, f64>);

impl Page {
    fn scrape(addr: SocketAddr) -> Page {
        let resp = get(addr, "/metrics");
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        Page::parse(&resp.text())
    }

    fn parse(text: &str) -> Page {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/prom_parse.py");
        let mut child = Command::new(common::tools::python())
            .arg(script)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write the page");
        let out = child.wait_with_output().expect("prom_parse.py");
        assert!(
            out.status.success(),
            "the Prometheus parser refused the page: {}\n{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let samples: Vec<(String, HashMap<String, String>, f64)> =
            serde_json::from_slice(&out.stdout).expect("parser output");
        let mut map = HashMap::new();
        for (name, labels, value) in samples {
            let mut labels: Vec<String> =
                labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
            labels.sort();
            let key = if labels.is_empty() {
                name
            } else {
                format!("{name}{{{}}}", labels.join(","))
            };
            map.insert(key, value);
        }
        Page(map)
    }

    /// A sample's value; 0 when the page does not have it (counters appear once non-zero).
    fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }

    fn requests(&self) -> f64 {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with("rgunicorn_http_requests_total{"))
            .map(|(_, v)| v)
            .sum()
    }
}

/// The master's workers (its other child is the metrics listener).
fn workers(server: &Server) -> Vec<i32> {
    server
        .worker_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with("rgunicorn: worker"))
        })
        .collect()
}

/// Send `sig` to worker `pid` of a server of two workers, and wait until another has
/// taken its place and the server is ready again.
fn replace_worker(server: &Server, metrics: SocketAddr, pid: i32, sig: i32) {
    // SAFETY: kill(2) on a worker of the server this test started.
    unsafe { libc::kill(pid, sig) };
    wait_until(Duration::from_secs(20), "the worker's replacement", || {
        let now = workers(server);
        now.len() == 2 && !now.contains(&pid)
    });
    wait_until(Duration::from_secs(10), "ready again", || {
        get(metrics, "/readyz").status == 200
    });
}

/// `n` requests, one after another on one keep-alive connection; all must be 200.
fn send(addr: SocketAddr, n: u64) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut reader = common::Reader::new(stream.try_clone().expect("clone"));
    for _ in 0..n {
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("send");
        let resp = reader.response(false).expect("answer");
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
}

#[test]
fn counters_move_by_exactly_the_requests_sent_across_a_hup_and_a_worker_kill() {
    let server = Server::start_bin(
        &custom_app_bin(),
        &["-w", "2", "--threads", "3", "--metrics-bind", "127.0.0.1:0"],
        &[],
    );
    let metrics = metrics_addr(&server);
    wait_until(Duration::from_secs(10), "ready", || {
        get(metrics, "/readyz").status == 200
    });
    let before = Page::scrape(metrics);
    assert_eq!(before.requests(), 0.0);
    assert_eq!(before.get("rgunicorn_workers_wanted"), 2.0);
    assert_eq!(before.get("rgunicorn_workers{state=\"serving\"}"), 2.0);
    assert_eq!(
        before.get("rgunicorn_app_threads{state=\"idle\"}"),
        6.0,
        "2 workers x 3 app threads, none busy"
    );

    send(server.addr, 40);
    let page = Page::scrape(metrics);
    assert_eq!(
        page.get("rgunicorn_http_requests_total{method=\"GET\",status=\"2xx\"}"),
        40.0
    );
    assert_eq!(
        page.get("rgunicorn_http_request_duration_seconds_count"),
        40.0
    );
    assert_eq!(
        page.get("rgunicorn_http_request_duration_seconds_bucket{le=\"+Inf\"}"),
        40.0
    );
    assert_eq!(page.get("rgunicorn_http_requests_in_flight"), 0.0);
    assert!(page.get("rgunicorn_received_bytes_total{process=\"worker\"}") >= 40.0 * 30.0);
    assert!(page.get("rgunicorn_sent_bytes_total{process=\"worker\"}") >= 40.0 * 100.0);

    // A HUP under a full-rate load: every answer the client got is counted, once.
    let old = workers(&server);
    let load = FullRate::get(Tcp(server.addr), 8, "/hello");
    load.run_for(300, Duration::from_secs(20));
    server.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(20), "the old workers to retire", || {
        let now = workers(&server);
        now.len() == 2 && now.iter().all(|p| !old.contains(p))
    });
    load.run_for(300, Duration::from_secs(20));
    let tally = load.finish();
    assert!(tally.failures.is_empty(), "{}", tally.summary());
    let page = Page::scrape(metrics);
    assert_eq!(
        page.requests(),
        40.0 + tally.ok as f64,
        "exactly the answers sent, across the HUP"
    );
    assert_eq!(
        page.get("rgunicorn_worker_restarts_total{reason=\"reload\"}"),
        2.0
    );
    assert_eq!(page.get("rgunicorn_http_requests_in_flight"), 0.0);
    let total = page.requests();

    // A worker killed outright: its slot's counters stay, its replacement adds to them.
    let victim = workers(&server)[0];
    replace_worker(&server, metrics, victim, libc::SIGKILL);
    send(server.addr, 25);
    let page = Page::scrape(metrics);
    assert_eq!(page.requests(), total + 25.0);
    assert_eq!(
        page.get("rgunicorn_worker_restarts_total{reason=\"crash\"}"),
        1.0
    );
    assert_eq!(
        page.get("rgunicorn_http_request_duration_seconds_count"),
        total + 25.0
    );
    assert_eq!(page.get("rgunicorn_workers{state=\"serving\"}"), 2.0);
    assert_eq!(
        page.get("rgunicorn_app_threads{state=\"idle\"}"),
        6.0,
        "{:?}",
        page.0
            .iter()
            .filter(|(k, _)| k.contains("app_threads"))
            .collect::<Vec<_>>()
    );
    assert_eq!(get(metrics, "/healthz").status, 200);
    let missing = get(metrics, "/nothing");
    assert_eq!(missing.status, 404);
}

#[test]
fn statuses_methods_busy_threads_and_a_restart_at_max_requests_are_counted() {
    let server = Server::start_bin(
        &custom_app_bin(),
        &[
            "-w",
            "1",
            "--threads",
            "2",
            "--max-requests",
            "30",
            "--metrics-bind",
            "127.0.0.1:0",
        ],
        &[],
    );
    let metrics = metrics_addr(&server);
    // One request holds an app thread: busy 1, idle 1, read from the same page (a second
    // scrape may come after the request ended, on a slow enough machine).
    let mut slow = TcpStream::connect(server.addr).expect("connect");
    slow.write_all(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    wait_until(
        Duration::from_secs(5),
        "one busy and one idle app thread",
        || {
            let page = Page::scrape(metrics);
            page.get("rgunicorn_app_threads{state=\"busy\"}") == 1.0
                && page.get("rgunicorn_app_threads{state=\"idle\"}") == 1.0
                && page.get("rgunicorn_http_requests_in_flight") == 1.0
        },
    );
    let mut answer = Vec::new();
    slow.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = [0u8; 1024];
    while !answer.windows(9).any(|w| w == b"slow done") {
        let n = slow.read(&mut buf).expect("read");
        assert!(n > 0, "closed early");
        answer.extend_from_slice(&buf[..n]);
    }
    let posted = common::exchange(
        server.addr,
        b"POST /hello HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
    );
    assert_eq!(posted.status, 200);
    assert_eq!(get(server.addr, "/missing").status, 404);
    let page = Page::scrape(metrics);
    assert_eq!(
        page.get("rgunicorn_http_requests_total{method=\"GET\",status=\"2xx\"}"),
        1.0
    );
    assert_eq!(
        page.get("rgunicorn_http_requests_total{method=\"POST\",status=\"2xx\"}"),
        1.0
    );
    assert_eq!(
        page.get("rgunicorn_http_requests_total{method=\"GET\",status=\"4xx\"}"),
        1.0
    );
    assert!(
        page.get("rgunicorn_http_request_duration_seconds_bucket{le=\"1\"}") == 2.0
            && page.get("rgunicorn_http_request_duration_seconds_bucket{le=\"2.5\"}") == 3.0,
        "the 1.5 s request is in the (1, 2.5] bucket"
    );
    // Past max_requests the worker retires on its own: one restart, by that reason.
    // (Its last answer says `Connection: close`: a connection per request.)
    for _ in 0..30 {
        assert_eq!(get(server.addr, "/hello").status, 200);
    }
    wait_until(Duration::from_secs(20), "a restart at max_requests", || {
        Page::scrape(metrics).get("rgunicorn_worker_restarts_total{reason=\"max_requests\"}") == 1.0
    });
    let page = Page::scrape(metrics);
    assert_eq!(page.requests(), 33.0);
    assert_eq!(
        page.get("rgunicorn_worker_restarts_total{reason=\"crash\"}"),
        0.0
    );
}

#[test]
fn readyz_says_503_at_term_before_the_app_port_refuses() {
    let mut server = Server::start(&[
        "-w",
        "2",
        "--metrics-bind",
        "127.0.0.1:0",
        "--shutdown-delay",
        "2",
    ]);
    let metrics = metrics_addr(&server);
    wait_until(Duration::from_secs(10), "ready", || {
        get(metrics, "/readyz").status == 200
    });
    let path = common::WELCOME_PATH;
    server.signal(libc::SIGTERM);
    let term = Instant::now();
    // 503 at once...
    wait_until(Duration::from_secs(1), "/readyz to say 503", || {
        get(metrics, "/readyz").status == 503
    });
    let not_ready = term.elapsed();
    assert_eq!(get(metrics, "/readyz").text(), "stopping\n");
    assert_eq!(get(metrics, "/healthz").status, 200, "still live");
    // ...while the app still answers, until the delay is over.
    assert_eq!(get(server.addr, path).status, 200);
    let mut refused_at = None;
    while term.elapsed() < Duration::from_secs(10) {
        match TcpStream::connect(server.addr) {
            Ok(_) => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => {
                refused_at = Some(term.elapsed());
                break;
            }
        }
    }
    let refused_at = refused_at.expect("the app port never refused");
    assert!(
        not_ready < refused_at && refused_at >= Duration::from_millis(1900),
        "503 after {not_ready:?}, refused after {refused_at:?}"
    );
    let status = server.wait_exit(Duration::from_secs(15));
    assert!(status.success(), "{status}");
}

#[test]
fn statsd_gets_gunicorns_metrics_for_every_request() {
    let statsd = UdpSocket::bind("127.0.0.1:0").expect("udp");
    statsd
        .set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let target = statsd.local_addr().expect("addr").to_string();
    let server = Server::start(&[
        "-w",
        "2",
        "--statsd-host",
        &target,
        "--statsd-prefix",
        "site",
    ]);
    for _ in 0..20 {
        assert_eq!(get(server.addr, common::WELCOME_PATH).status, 200);
    }
    for _ in 0..5 {
        assert_eq!(get(server.addr, "/nope").status, 404);
    }
    let mut sums: HashMap<String, f64> = HashMap::new();
    let mut timer_count = 0.0;
    let mut workers_gauge = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline && sums.get("site.gunicorn.requests") != Some(&25.0) {
        let Ok(n) = statsd.recv(&mut buf) else {
            continue;
        };
        for line in String::from_utf8_lossy(&buf[..n]).lines() {
            let (name, rest) = line.split_once(':').expect("name:value");
            let parts: Vec<&str> = rest.split('|').collect();
            let value: f64 = parts[0].parse().expect("value");
            match parts[1] {
                "c" => *sums.entry(name.to_string()).or_default() += value,
                "ms" => {
                    assert_eq!(name, "site.gunicorn.request.duration");
                    let rate: f64 = parts
                        .get(2)
                        .and_then(|r| r.strip_prefix('@'))
                        .map_or(1.0, |r| r.parse().expect("rate"));
                    timer_count += 1.0 / rate;
                }
                "g" => {
                    assert_eq!(name, "site.gunicorn.workers");
                    workers_gauge = Some(value);
                }
                other => panic!("unexpected statsd type {other} in {line}"),
            }
        }
    }
    assert_eq!(sums.get("site.gunicorn.requests"), Some(&25.0), "{sums:?}");
    assert_eq!(sums.get("site.gunicorn.request.status.200"), Some(&20.0));
    assert_eq!(sums.get("site.gunicorn.request.status.404"), Some(&5.0));
    assert!(
        (timer_count - 25.0).abs() < 1e-6,
        "timers count {timer_count}"
    );
    assert_eq!(workers_gauge, Some(2.0));
}

#[test]
fn json_access_lines_parse_whatever_the_headers_hold() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("access.log");
    let server = Server::start(&[
        "--access-logfile",
        log.to_str().expect("utf8 path"),
        "--access-logformat",
        "json",
    ]);
    let hostile: [&[u8]; 4] = [
        b"\"quoted\", \\backslash\\ {\"s\":999}",
        b"tab\there and a trailing backslash \\",
        b"obs-text \xff\xfe and unicode \xc3\xa9",
        b"</script><!-- ' \" ]}",
    ];
    for ua in hostile {
        let mut raw = b"GET /api/v1/welcome/get_welcome_data?x=\"1\" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nUser-Agent: ".to_vec();
        raw.extend_from_slice(ua);
        raw.extend_from_slice(b"\r\nReferer: ");
        raw.extend_from_slice(ua);
        raw.extend_from_slice(b"\r\n\r\n");
        assert_eq!(common::exchange(server.addr, &raw).status, 200);
    }
    let mut lines = Vec::new();
    wait_until(Duration::from_secs(5), "4 access lines", || {
        lines = std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(String::from)
            .collect();
        lines.len() == 4
    });
    for (line, ua) in lines.iter().zip(hostile) {
        let v: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
        assert_eq!(v["s"], 200, "{line}");
        assert_eq!(v["m"], "GET");
        assert_eq!(v["U"], "/api/v1/welcome/get_welcome_data");
        assert_eq!(v["q"], "x=\"1\"");
        assert_eq!(v["H"], "HTTP/1.1");
        assert_eq!(v["h"], "127.0.0.1");
        assert!(v["B"].as_u64().is_some_and(|b| b > 0));
        assert!(v["D"].as_u64().is_some());
        let a = v["a"].as_str().expect("a is a string");
        assert_eq!(a, v["f"].as_str().expect("f is a string"));
        if ua.is_ascii() {
            assert_eq!(a.as_bytes(), ua, "{line}");
        } else {
            assert!(a.starts_with("obs-text "), "{line}");
        }
    }
}

#[test]
fn the_fronts_handshakes_connections_and_upstream_errors_are_counted() {
    use front_support::MasterFront;
    let config = MasterFront::write("upstream_read_timeout = \"1s\"");
    let mut args = config.args();
    args.extend(["-b", "127.0.0.1:0", "--metrics-bind", "127.0.0.1:0"].map(String::from));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start_bin(&custom_app_bin(), &args, &[]);
    let metrics = metrics_addr(&server);
    wait_until(Duration::from_secs(10), "ready, the front running", || {
        get(metrics, "/readyz").status == 200
    });
    let front = MasterFront::address(&server.log()).expect("the front's address");
    let client = config.client.clone();
    for _ in 0..3 {
        let resp = front_support::get(&client, front, "/hello").expect("through the front");
        assert_eq!(resp.status, 200);
    }
    // Not TLS at all: a failed handshake.
    let mut plain = TcpStream::connect(front).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    plain
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut sink = Vec::new();
    let _ = plain.read_to_end(&mut sink);
    // A worker slower than upstream_read_timeout: the front answers 504 itself.
    let slow = front_support::get(&client, front, "/slow?ms=2500").expect("through the front");
    assert_eq!(slow.status, 504);
    // One connection held open.
    let held = front_support::connect(&client, front);
    let key = |result: &str| format!("rgunicorn_front_tls_handshakes_total{{result=\"{result}\"}}");
    wait_until(Duration::from_secs(5), "the counts", || {
        let page = Page::scrape(metrics);
        page.get("rgunicorn_open_connections{process=\"front\"}") == 1.0
            && page.get(&key("failed")) == 1.0
            && page.get(&key("full")) + page.get(&key("resumed")) == 5.0
            && page.get("rgunicorn_http_requests_in_flight") == 0.0
    });
    let page = Page::scrape(metrics);
    assert!(page.get(&key("full")) >= 1.0);
    assert!(
        page.get(&key("resumed")) >= 1.0,
        "a client that kept its session tickets resumes"
    );
    assert_eq!(
        page.get("rgunicorn_front_upstream_errors_total{status=\"504\"}"),
        1.0
    );
    assert_eq!(
        page.get("rgunicorn_front_upstream_errors_total{status=\"502\"}"),
        0.0
    );
    assert!(page.get("rgunicorn_received_bytes_total{process=\"front\"}") > 0.0);
    assert!(page.get("rgunicorn_sent_bytes_total{process=\"front\"}") > 1000.0);
    // The front's error line for the 504 (in its own log, nginx's format) is counted as
    // the front's.
    let front_lines = |level: &str| {
        let tag = format!(" [{level}] ");
        server
            .log()
            .lines()
            .filter(|l| l.as_bytes().get(4) == Some(&b'/') && l.contains(&tag))
            .count() as f64
    };
    let front_log = |level: &str| {
        page.get(&format!(
            "rgunicorn_log_messages_total{{level=\"{level}\",process=\"front\"}}"
        ))
    };
    wait_until(Duration::from_secs(5), "the front's error line", || {
        front_lines("error") == 1.0
    });
    assert_eq!(front_log("error"), front_lines("error"));
    assert_eq!(front_log("warning"), front_lines("warn"));
    // The workers answered the three requests; the slow one's connection was closed by
    // the front before its answer came: no response, and no longer in flight.
    assert_eq!(page.requests(), 3.0);
    drop(held);
    wait_until(Duration::from_secs(5), "the held connection closed", || {
        Page::scrape(metrics).get("rgunicorn_open_connections{process=\"front\"}") == 0.0
    });
}

/// The levels counted, in the order [`Logged`] holds them.
const LEVELS: [&str; 4] = ["critical", "error", "warning", "exception"];

/// The error log's lines by level ([`LEVELS`]), the master's apart from the workers',
/// read as an operator would: a line is one that starts `[time] [pid] [LEVEL] ` (a
/// traceback's further lines belong to it), and an exception is an `ERROR` line
/// reporting an app's failure (`Error handling request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Logged {
    master: [u64; 4],
    workers: [u64; 4],
}

impl Logged {
    fn read(server: &Server) -> Logged {
        let master = server.pid().to_string();
        let mut counts = Logged {
            master: [0; 4],
            workers: [0; 4],
        };
        for line in server.log().lines() {
            let Some((pid, level, message)) = Logged::head(line) else {
                continue;
            };
            let i = match level {
                "CRITICAL" => 0,
                "ERROR" if message.starts_with("Error handling request") => 3,
                "ERROR" => 1,
                "WARNING" => 2,
                _ => continue,
            };
            if pid == master {
                counts.master[i] += 1;
            } else {
                counts.workers[i] += 1;
            }
        }
        counts
    }

    /// The pid, level and message of a line's head.
    fn head(line: &str) -> Option<(&str, &str, &str)> {
        let (_time, rest) = line.strip_prefix('[')?.split_once("] [")?;
        let (pid, rest) = rest.split_once("] [")?;
        let (level, message) = rest.split_once("] ")?;
        pid.parse::<u32>().ok().map(|_| (pid, level, message))
    }

    fn total(&self) -> [u64; 4] {
        [0, 1, 2, 3].map(|i| self.master[i] + self.workers[i])
    }
}

/// The `gunicorn.log.*` counters received so far, summed.
struct StatsdLog {
    socket: UdpSocket,
    sums: HashMap<String, f64>,
}

impl StatsdLog {
    fn bind() -> StatsdLog {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("udp");
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .expect("timeout");
        StatsdLog {
            socket,
            sums: HashMap::new(),
        }
    }

    fn target(&self) -> String {
        self.socket.local_addr().expect("addr").to_string()
    }

    /// Take in every datagram waiting; the log counters by level.
    fn counts(&mut self, prefix: &str) -> [u64; 4] {
        let mut buf = [0u8; 2048];
        while let Ok(n) = self.socket.recv(&mut buf) {
            for line in String::from_utf8_lossy(&buf[..n]).lines() {
                let (name, rest) = line.split_once(':').expect("name:value");
                if let Some((value, "c")) = rest.split_once('|') {
                    *self.sums.entry(name.to_string()).or_default() +=
                        value.parse::<f64>().expect("a count");
                }
            }
        }
        LEVELS.map(|level| {
            self.sums
                .get(&format!("{prefix}gunicorn.log.{level}"))
                .copied()
                .unwrap_or(0.0) as u64
        })
    }
}

/// Wait until the metrics page (the master's and the workers' apart) and statsd (both
/// summed) count, level by level, exactly the lines the error log has; those lines.
fn counts_agree(server: &Server, metrics: SocketAddr, statsd: &mut StatsdLog) -> Logged {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let lines = Logged::read(server);
        let page = Page::scrape(metrics);
        let on_page = |process: &str| {
            LEVELS.map(|level| {
                let key = format!(
                    "rgunicorn_log_messages_total{{level=\"{level}\",process=\"{process}\"}}"
                );
                assert!(page.0.contains_key(&key), "{key} is missing: {:?}", page.0);
                page.get(&key) as u64
            })
        };
        let on_page = Logged {
            master: on_page("master"),
            workers: on_page("worker"),
        };
        let sent = statsd.counts("site.");
        if on_page == lines && sent == lines.total() {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "the log has {lines:?} lines (critical, error, warning, exception), the page \
             counts {on_page:?}, statsd {sent:?}:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn log_lines_are_counted_by_level_in_statsd_and_prometheus_across_a_worker_kill() {
    let mut statsd = StatsdLog::bind();
    let target = statsd.target();
    let server = Server::start_bin(
        &custom_app_bin(),
        &[
            "-w",
            "2",
            "--timeout",
            "2",
            "--metrics-bind",
            "127.0.0.1:0",
            "--statsd-host",
            &target,
            "--statsd-prefix",
            "site",
        ],
        &[],
    );
    let metrics = metrics_addr(&server);
    wait_until(Duration::from_secs(10), "ready", || {
        get(metrics, "/readyz").status == 200
    });
    assert_eq!(counts_agree(&server, metrics, &mut statsd).total(), [0; 4]);

    // The workers' lines: warnings (a body longer than its Content-Length) and
    // exceptions (an app that panics).
    for _ in 0..3 {
        assert_eq!(get(server.addr, "/lie?declare=3").status, 200);
    }
    for _ in 0..2 {
        assert_eq!(get(server.addr, "/panic").status, 500);
    }
    let counts = counts_agree(&server, metrics, &mut statsd);
    assert_eq!(counts.workers, [0, 0, 3, 2]);
    assert_eq!(counts.master, [0; 4]);

    // The master's error for a worker killed outright: one that logged, whose lines
    // still count, and whose replacement adds to them.
    let victim: i32 = server
        .log()
        .lines()
        .find_map(|l| Logged::head(l).filter(|(_, level, _)| *level == "WARNING"))
        .and_then(|(pid, _, _)| pid.parse().ok())
        .expect("a worker's warning");
    replace_worker(&server, metrics, victim, libc::SIGKILL);
    for _ in 0..4 {
        assert_eq!(get(server.addr, "/panic").status, 500);
    }
    let counts = counts_agree(&server, metrics, &mut statsd);
    assert_eq!(counts.workers, [0, 0, 3, 6]);
    assert_eq!(counts.master, [0, 1, 0, 0], "was sent SIGKILL");

    // The master's critical line for a worker that stops beating (--timeout).
    let stuck = workers(&server)[0];
    replace_worker(&server, metrics, stuck, libc::SIGSTOP);
    let counts = counts_agree(&server, metrics, &mut statsd);
    assert_eq!(counts.workers, [0, 0, 3, 6]);
    assert!(counts.master[0] >= 1, "WORKER TIMEOUT: {counts:?}");
    let page = Page::scrape(metrics);
    assert!(
        !page.0.keys().any(|k| k.contains("process=\"front\"")),
        "no front, no front counts"
    );
}
