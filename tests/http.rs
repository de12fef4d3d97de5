//! The worker's HTTP/1.1 behaviour, end to end: the real `rgunicorn` binary on port 0,
//! real sockets, hand-written requests so every byte on the wire is the test's choice.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn welcome_api_answers_the_reference_json() {
    let server = Server::start(&["-w", "2"]);
    let resp = get(server.addr, WELCOME_PATH);
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), WELCOME);
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(resp.header("content-length"), Some("67"));
    assert!(resp.header("server").unwrap().starts_with("rgunicorn/"));
    assert!(resp.header("date").unwrap().ends_with(" GMT"));
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(server.log().contains("built-in welcome app"));
}

#[test]
fn unknown_path_is_json_404_and_wrong_method_is_405_with_allow() {
    let server = Server::start(&[]);
    let resp = get(server.addr, "/nope");
    assert_eq!(resp.status, 404);
    assert!(resp.text().contains("NOT_FOUND"));
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let resp = exchange(
        server.addr,
        format!("DELETE {WELCOME_PATH} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    );
    assert_eq!(resp.status, 405);
    assert_eq!(resp.header("allow"), Some("GET, HEAD, OPTIONS"));
}

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    let mut reader = Reader::new(stream.try_clone().unwrap());
    for _ in 0..3 {
        stream
            .write_all(format!("GET {WELCOME_PATH} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let resp = reader.response(false).unwrap();
        assert_eq!(resp.status, 200);
        assert_eq!(resp.header("connection"), Some("keep-alive"));
        assert_eq!(resp.text(), WELCOME);
    }
    // Connection: close from the client ends it after the answer.
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let resp = reader.response(false).unwrap();
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(reader.at_eof());
}

#[test]
fn keep_alive_idle_timeout_closes_the_connection() {
    let server = Server::start(&["--keep-alive", "1"]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reader = Reader::new(stream.try_clone().unwrap());
    reader.response(false).unwrap();
    let start = Instant::now();
    assert!(reader.at_eof(), "idle keep-alive connection must be closed");
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn http10_closes_unless_keep_alive_is_asked() {
    let server = Server::start(&[]);
    let resp = exchange(server.addr, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(resp.version, "HTTP/1.0");
    assert_eq!(resp.header("connection"), Some("close"));

    let mut stream = server.connect();
    stream
        .write_all(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        .unwrap();
    let mut reader = Reader::new(stream.try_clone().unwrap());
    let resp = reader.response(false).unwrap();
    assert_eq!(resp.header("connection"), Some("keep-alive"));
    stream.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(reader.response(false).unwrap().status, 404);
    assert!(reader.at_eof());
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let server = Server::start(&["echo"]);
    let mut stream = server.connect();
    let mut batch = Vec::new();
    for i in 0..5 {
        batch.extend_from_slice(format!("GET /req/{i} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    batch.extend_from_slice(b"POST /req/5 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    stream.write_all(&batch).unwrap();
    let mut reader = Reader::new(stream);
    for i in 0..6 {
        let resp = reader.response(false).unwrap();
        assert_eq!(resp.status, 200);
        let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(json["path"], format!("/req/{i}"));
    }
}

#[test]
fn chunked_request_body_reaches_the_app_whole() {
    let server = Server::start(&["echo"]);
    let resp = exchange(
        server.addr,
        b"POST /up?x=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!(resp.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(json["body"], "hello world");
    assert_eq!(json["query"], "x=1");
    assert_eq!(json["method"], "POST");
}

#[test]
fn large_bodies_spool_to_disk_and_arrive_intact() {
    let server = Server::start_bin(&custom_app_bin(), &[], &[]);
    let body = vec![b'z'; 3 * 1024 * 1024];
    let mut stream = server.connect();
    stream
        .write_all(
            format!(
                "POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )
            .as_bytes(),
        )
        .unwrap();
    stream.write_all(&body).unwrap();
    let resp = Reader::new(stream).response(false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text().trim(), body.len().to_string());
}

#[test]
fn expect_100_continue_gets_an_interim_response_before_the_body() {
    let server = Server::start(&["echo"]);
    let mut stream = server.connect();
    stream
        .write_all(
            b"PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n",
        )
        .unwrap();
    let mut reader = Reader::new(stream.try_clone().unwrap());
    let interim = reader.response(false).unwrap();
    assert_eq!(interim.status, 100);
    stream.write_all(b"data").unwrap();
    let resp = reader.response(false).unwrap();
    assert_eq!(resp.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(json["body"], "data");
}

#[test]
fn head_has_headers_but_no_body() {
    let server = Server::start(&[]);
    let mut stream = server.connect();
    stream
        .write_all(format!("HEAD {WELCOME_PATH} HTTP/1.1\r\nHost: x\r\n\r\nGET {WELCOME_PATH} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .unwrap();
    let mut reader = Reader::new(stream);
    let head = reader.response(true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("67"));
    // The next response starts right away: HEAD sent no body bytes.
    let get = reader.response(false).unwrap();
    assert_eq!(get.text(), WELCOME);
}

#[test]
fn streamed_response_is_chunked_on_11_and_close_delimited_on_10() {
    let server = Server::start_bin(&custom_app_bin(), &[], &[]);
    let resp = get(server.addr, "/stream?n=4&size=3");
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.text(), "aaabbbcccddd");
    let resp = exchange(server.addr, b"GET /stream?n=2&size=2 HTTP/1.0\r\n\r\n");
    assert_eq!(resp.header("transfer-encoding"), None);
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(resp.text(), "aabb");
    let big = get(server.addr, "/stream?n=200&size=20000");
    assert_eq!(big.body.len(), 200 * 20000);
    let file = get(server.addr, "/file");
    assert_eq!(
        file.body,
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap()
    );
}

#[test]
fn panicking_app_gives_500_and_the_worker_keeps_serving() {
    let server = Server::start_bin(&custom_app_bin(), &[], &[]);
    let pids = server.wait_for_workers(1, Duration::from_secs(5));
    let resp = get(server.addr, "/panic");
    assert_eq!(resp.status, 500);
    let resp = get(server.addr, "/hello");
    assert_eq!(resp.status, 200);
    assert_eq!(
        server.worker_pids(),
        pids,
        "the worker must not have been replaced"
    );
    assert!(server.log().contains("app panicked"));
}

#[test]
fn request_line_header_and_body_limits() {
    let server = Server::start(&[
        "echo",
        "--limit-request-line",
        "100",
        "--limit-request-fields",
        "5",
        "--limit-request-body",
        "10",
    ]);
    let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(200));
    assert_eq!(exchange(server.addr, long.as_bytes()).status, 414);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: x\r\n");
    for i in 0..10 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    assert_eq!(exchange(server.addr, many.as_bytes()).status, 431);
    let big = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world";
    assert_eq!(exchange(server.addr, big).status, 413);
    let chunked =
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n";
    assert_eq!(exchange(server.addr, chunked).status, 413);
    let ok = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhelloworld";
    assert_eq!(exchange(server.addr, ok).status, 200);
}

#[test]
fn bad_request_closes_only_that_connection_and_nothing_after_it_is_read() {
    let server = Server::start(&["echo"]);
    let pids = server.wait_for_workers(1, Duration::from_secs(5));
    // A smuggling attempt: CL and TE together, with a second request hidden in the body.
    let mut stream = server.connect();
    stream
        .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut reader = Reader::new(stream);
    let resp = reader.response(false).unwrap();
    assert_eq!(resp.status, 400);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(reader.at_eof(), "no second response may follow a 400");
    assert_eq!(get(server.addr, "/after").status, 200);
    assert_eq!(server.worker_pids(), pids);
}

#[test]
fn slow_header_gets_408_and_is_closed() {
    let server = Server::start(&["--header-timeout", "1"]);
    let mut stream = server.connect();
    stream.write_all(b"GET / HTTP/1.1\r\nHost:").unwrap();
    let start = Instant::now();
    let resp = Reader::new(stream).response(false).unwrap();
    assert_eq!(resp.status, 408);
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn client_that_disconnects_mid_body_does_not_hurt_the_worker() {
    let server = Server::start(&["echo"]);
    let pids = server.wait_for_workers(1, Duration::from_secs(5));
    for _ in 0..5 {
        let mut stream = server.connect();
        stream
            .write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\npartial")
            .unwrap();
        drop(stream);
    }
    assert_eq!(get(server.addr, "/").status, 200);
    assert_eq!(server.worker_pids(), pids);
}

#[test]
fn concurrent_clients_are_spread_over_several_workers() {
    let server = Server::start_bin(&custom_app_bin(), &["-w", "3"], &[]);
    server.wait_for_workers(3, Duration::from_secs(5));
    let addr = server.addr;
    let handles: Vec<_> = (0..12)
        .map(|_| {
            std::thread::spawn(move || {
                let mut pids = Vec::new();
                for _ in 0..20 {
                    let resp = get(addr, "/hello");
                    assert_eq!(resp.status, 200);
                    pids.push(resp.text());
                }
                pids
            })
        })
        .collect();
    let mut seen = std::collections::HashSet::new();
    for h in handles {
        for text in h.join().expect("client thread") {
            seen.insert(text);
        }
    }
    assert!(seen.len() >= 2, "answers came from only {seen:?}");
}

#[test]
fn term_lets_an_in_flight_request_finish_then_exits_zero() {
    let mut server = Server::start_bin(&custom_app_bin(), &[], &[]);
    let mut stream = server.connect();
    stream
        .write_all(b"GET /slow?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    server.signal(libc::SIGTERM);
    let resp = Reader::new(stream).response(false).unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "slow done\n");
    assert_eq!(resp.header("connection"), Some("close"));
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0));
    assert!(
        TcpStream::connect(server.addr).is_err(),
        "listener must be closed"
    );
}

#[test]
fn int_stops_fast_and_leaves_no_worker_behind() {
    let mut server = Server::start(&["-w", "3"]);
    let pids = server.wait_for_workers(3, Duration::from_secs(5));
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    std::thread::sleep(Duration::from_millis(100));
    for pid in pids {
        assert!(!is_running(pid), "worker {pid} outlived the master");
    }
}

#[test]
fn a_killed_worker_is_replaced() {
    let server = Server::start(&["-w", "2"]);
    let pids = server.wait_for_workers(2, Duration::from_secs(5));
    // SAFETY: kill(2) on a worker this test started.
    unsafe {
        libc::kill(pids[0], libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let now = server.worker_pids();
        if now.len() == 2 && !now.contains(&pids[0]) {
            break;
        }
        assert!(Instant::now() < deadline, "no respawn: {now:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log().contains("SIGKILL"));
    assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
}

#[test]
fn unix_socket_bind_serves_and_replaces_a_stale_socket_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rg.sock");
    // A stale socket file, as a crashed server leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let sock = format!("unix:{}", path.display());
    let server = Server::start(&["-b", &sock, "-b", "127.0.0.1:0", "echo"]);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).unwrap();
    stream
        .write_all(b"GET /via-unix HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n")
        .unwrap();
    let resp = Reader::new(stream).response(false).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(json["path"], "/via-unix");
    // The unix socket is the trusted front's way in: its forwarded headers apply.
    assert_eq!(json["scheme"], "https");
    assert_eq!(json["remote_addr"], "203.0.113.9");
    drop(server);
    // A TCP peer that is not trusted cannot claim to be forwarded.
    let server = Server::start(&["echo", "--forwarded-allow-ips", "10.0.0.1"]);
    let resp = exchange(
        server.addr,
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-For: 203.0.113.9\r\n\r\n",
    );
    let json: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(json["scheme"], "http");
    assert_eq!(json["remote_addr"], "127.0.0.1");
}

#[test]
fn a_path_that_is_not_a_socket_is_refused_before_anything_is_bound() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain-file");
    std::fs::write(&path, "not a socket").unwrap();
    let out = std::process::Command::new(rgunicorn_bin())
        .args(["-b", &format!("unix:{}", path.display())])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a socket"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "not a socket");
}

/// Every parser fixture, sent to the real server: the status it earns on the wire must
/// be the one its `.expect` names (valid ones reach the echo app: 200).
#[test]
fn parser_fixtures_replayed_against_the_real_server() {
    let server = Server::start(&["echo"]);
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workers/tests/fixtures/requests");
    let mut checked = 0;
    let mut failures = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "http"))
        .collect();
    names.sort();
    for path in names {
        let raw = std::fs::read(&path).unwrap();
        let expect = std::fs::read_to_string(path.with_extension("expect")).unwrap();
        let first = expect.lines().next().unwrap_or("").trim().to_string();
        let want: u16 = if first == "ok" {
            200
        } else {
            first.parse().unwrap()
        };
        let mut stream = TcpStream::connect(server.addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let _ = stream.write_all(&raw);
        // Half-close so a request the fixture leaves open-ended cannot wait forever.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let is_head = raw.starts_with(b"HEAD ");
        let got = Reader::new(stream).response(is_head).map(|r| r.status);
        match got {
            Ok(status) if status == want => {}
            other => failures.push(format!("{}: want {want}, got {other:?}", path.display())),
        }
        checked += 1;
    }
    assert!(checked >= 55, "only {checked} fixtures found");
    assert!(
        failures.is_empty(),
        "fixture mismatches:\n{}",
        failures.join("\n")
    );
}

#[test]
fn worker_answers_through_curl() {
    let server = Server::start(&[]);
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-i",
            &format!("http://{}{WELCOME_PATH}", server.addr),
        ])
        .output()
        .expect("curl is installed by .ci/run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    assert!(
        text.contains("content-type: application/json; charset=utf-8")
            || text.contains("Content-Type: application/json; charset=utf-8")
    );
    assert!(text.ends_with(WELCOME));
}

#[test]
fn worker_answers_python_http_client() {
    let server = Server::start(&["echo"]);
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/http_client_check.py"
    );
    let out = std::process::Command::new("python3")
        .args([
            script,
            &server.addr.ip().to_string(),
            &server.addr.port().to_string(),
        ])
        .output()
        .expect("python3 is on the machine");
    assert!(
        out.status.success(),
        "python client failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sink = String::new();
    let _ = (&out.stdout[..]).read_to_string(&mut sink);
    assert!(sink.contains("ok"));
}

#[test]
fn access_log_uses_gunicorn_atoms() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("access.log");
    let log_arg = log.display().to_string();
    let server = Server::start(&[
        "--access-logfile",
        &log_arg,
        "--access-logformat",
        r#"%(h)s "%(r)s" %(s)s %(b)s "%(a)s" %(m)s %(U)s %(q)s %(H)s %({x-test}i)s %({content-type}o)s"#,
    ]);
    let resp = exchange(
        server.addr,
        format!("GET {WELCOME_PATH}?a=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: tester/1\r\nX-Test: yes\r\nConnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(resp.status, 200);
    let want = format!(
        r#"127.0.0.1 "GET {WELCOME_PATH}?a=1 HTTP/1.1" 200 67 "tester/1" GET {WELCOME_PATH} a=1 HTTP/1.1 yes application/json; charset=utf-8"#
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.lines().any(|l| l == want) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "access log has {text:?}, want {want:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn half_closed_client_still_gets_every_answer() {
    let server = Server::start_bin(&custom_app_bin(), &[], &[]);
    let mut stream = server.connect();
    stream
        .write_all(
            b"GET /slow?ms=300 HTTP/1.1\r\nHost: x\r\n\r\nGET /hello HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut reader = Reader::new(stream);
    assert_eq!(reader.response(false).unwrap().text(), "slow done\n");
    assert!(reader.response(false).unwrap().text().starts_with("hello"));
}

#[test]
fn reuse_port_gives_every_worker_a_listener_of_its_own() {
    let server = Server::start_bin(&custom_app_bin(), &["-w", "3", "--reuse-port"], &[]);
    let pids = server.wait_for_workers(3, Duration::from_secs(5));
    let mut seen = std::collections::HashSet::new();
    // New connections are hashed over the workers' own sockets by the kernel.
    for _ in 0..60 {
        let resp = get(server.addr, "/hello");
        assert_eq!(resp.status, 200);
        seen.insert(resp.text());
    }
    assert!(
        seen.len() >= 2,
        "all connections reached one worker: {seen:?}"
    );
    // The master's reserved socket does not listen: nothing can queue where nobody accepts.
    let listening = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let port = format!(":{:04X} ", server.addr.port());
    let listeners = listening
        .lines()
        .filter(|l| l.contains(&port) && l.split_whitespace().nth(3) == Some("0A"))
        .count();
    assert_eq!(listeners, pids.len(), "one listening socket per worker");
}
