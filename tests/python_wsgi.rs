//! PEP 3333 as a Python app sees it (issue 9): the environ, `wsgi.input` through each of
//! its methods, streamed and file responses, `start_response` with `exc_info` and
//! `write()`, exceptions before and after the response started, bodies that break their
//! Content-Length. The app (`tests/python/apps/pep3333.py`) runs inside
//! `wsgiref.validate.validator` wherever the validator allows, and no test may leave a
//! validator complaint in the log.
#![cfg(feature = "python")]

mod common;
mod python_support;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::{exchange, get, wait_until, Reader, Server};
use python_support::{apps, start};

fn pep(args: &[&str], env: &[(&str, &str)]) -> Server {
    let mut all = args.to_vec();
    if !args.iter().any(|a| a.starts_with("pep3333:")) {
        all.push("pep3333:application");
    }
    start(&apps(), &all, env)
}

/// The validator raises (a 500) or prints "Exception ignored" on any violation it sees.
fn assert_validator_silent(server: &Server) {
    // "Exception ignored" comes from a garbage-collected iterable: give it a moment.
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log();
    assert!(
        !log.contains("AssertionError")
            && !log.contains("Exception ignored")
            && !log.contains("WSGIWarning"),
        "wsgiref.validate complained:\n{log}"
    );
}

/// The app with `RG_MARKERS` set to a fresh folder, where it leaves a file per close().
fn pep_with_markers(args: &[&str]) -> (Server, tempfile::TempDir) {
    let marks = tempfile::tempdir().expect("temp dir");
    let dir = marks.path().to_str().expect("utf-8");
    (pep(args, &[("RG_MARKERS", dir)]), marks)
}

#[test]
fn the_environ_has_every_pep3333_key_with_its_type() {
    let server = pep(&["-w", "2", "--threads", "2"], &[]);
    let raw = "GET /environ?a=1&b=%20 HTTP/1.1\r\nHost: example.com:8080\r\nX-Custom: one\r\n\
               X-Custom: two\r\nUser-Agent: test\r\n\r\n";
    let resp = exchange(server.addr, raw.as_bytes());
    assert_eq!(resp.status, 200, "{}", server.log());
    let env: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
    let is = |key: &str, ty: &str, value: serde_json::Value| {
        assert_eq!(
            env[key],
            serde_json::json!([ty, value]),
            "{key}: {}",
            env[key]
        );
    };
    is("REQUEST_METHOD", "str", "GET".into());
    is("SCRIPT_NAME", "str", "".into());
    is("PATH_INFO", "str", "/environ".into());
    is("QUERY_STRING", "str", "a=1&b=%20".into());
    is("RAW_URI", "str", "/environ?a=1&b=%20".into());
    is("SERVER_NAME", "str", "example.com".into());
    is("SERVER_PORT", "str", "8080".into());
    is("SERVER_PROTOCOL", "str", "HTTP/1.1".into());
    is("REMOTE_ADDR", "str", "127.0.0.1".into());
    is("HTTP_HOST", "str", "example.com:8080".into());
    is("HTTP_X_CUSTOM", "str", "one,two".into());
    is("HTTP_USER_AGENT", "str", "test".into());
    is("wsgi.url_scheme", "str", "http".into());
    is("wsgi.version", "tuple", serde_json::json!([1, 0]));
    is("wsgi.multithread", "bool", true.into());
    is("wsgi.multiprocess", "bool", true.into());
    is("wsgi.run_once", "bool", false.into());
    is("wsgi.input_terminated", "bool", true.into());
    assert_eq!(
        env["SERVER_SOFTWARE"][1]
            .as_str()
            .map(|s| s.starts_with("rgunicorn/")),
        Some(true)
    );
    assert_eq!(env["REMOTE_PORT"][0], "str");
    assert_eq!(env["wsgi.file_wrapper"][0], "type");
    assert!(env.get("CONTENT_LENGTH").is_none() && env.get("CONTENT_TYPE").is_none());
    // One worker and the default one thread: neither flag. (Unvalidated, to see the server's
    // own streams.)
    let single = pep(&["pep3333:raw"], &[]);
    let env: serde_json::Value =
        serde_json::from_slice(&get(single.addr, "/environ").body).expect("json");
    assert_eq!(env["wsgi.multithread"][1], false);
    assert_eq!(env["wsgi.multiprocess"][1], false);
    assert_eq!(env["wsgi.input"][0], "InputStream");
    assert_eq!(env["wsgi.errors"][0], "ErrorStream");
    assert_validator_silent(&server);
}

/// Lines of assorted lengths (some over 100 bytes, for readline(100)), without a final newline.
fn upload_body(len: usize) -> Vec<u8> {
    let mut body = Vec::with_capacity(len);
    let mut i = 0usize;
    while body.len() < len {
        let line_len = 1 + (i * 37) % 180;
        body.extend((0..line_len).map(|k| b'a' + ((i + k) % 26) as u8));
        body.push(b'\n');
        i += 1;
    }
    body.truncate(len);
    body
}

#[test]
fn uploads_read_through_every_wsgi_input_method_in_memory_and_spooled() {
    // The validator insists on read(size); read() and read(None) go to the raw app.
    let validated = pep(&[], &[]);
    let raw = pep(&["pep3333:raw"], &[]);
    // 2 KB stays in memory; 300 KB is spooled to a temp file by the event loop.
    for len in [2_000usize, 300_000] {
        let body = upload_body(len);
        for (server, how) in [
            (&raw, "read"),
            (&raw, "read_none"),
            (&validated, "read_n"),
            (&validated, "readline"),
            (&validated, "readline_n"),
            (&validated, "readlines"),
            (&validated, "iter"),
        ] {
            let mut request = format!(
                "POST /upload/{how} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {len}\r\n\r\n"
            )
            .into_bytes();
            request.extend_from_slice(&body);
            let resp = exchange(server.addr, &request);
            assert_eq!(resp.status, 200, "{how} {len}: {}", server.log());
            let expected = format!("{len} ");
            assert!(
                resp.text().starts_with(&expected),
                "{how} {len}: {}",
                resp.text()
            );
            // Reading after the end gives nothing: never past the body.
            assert!(resp.text().ends_with(" 0"), "{how} {len}: {}", resp.text());
        }
        // A chunked upload has no CONTENT_LENGTH; wsgi.input still ends where the body ends.
        let mut request =
            b"POST /upload/read HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec();
        for part in body.chunks(7000) {
            request.extend_from_slice(format!("{:x}\r\n", part.len()).as_bytes());
            request.extend_from_slice(part);
            request.extend_from_slice(b"\r\n");
        }
        request.extend_from_slice(b"0\r\n\r\n");
        let resp = exchange(raw.addr, &request);
        assert!(
            resp.text().starts_with(&format!("{len} ")),
            "{}",
            resp.text()
        );
    }
    // The digest the app computed matches the bytes sent.
    let body = upload_body(300_000);
    let digest = python_sha256(&body);
    let mut request =
        b"POST /upload/iter HTTP/1.1\r\nHost: localhost\r\nContent-Length: 300000\r\n\r\n".to_vec();
    request.extend_from_slice(&body);
    assert_eq!(
        exchange(validated.addr, &request).text(),
        format!("300000 {digest} 0")
    );
    assert_validator_silent(&validated);
}

fn python_sha256(data: &[u8]) -> String {
    let mut child = std::process::Command::new(python_support::venv().join("bin/python"))
        .args([
            "-c",
            "import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("python");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(data)
        .expect("write");
    let out = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// What `Stream` in pep3333.py yields as chunk number `i` (1-based).
fn stream_chunk(i: usize, size: usize) -> Vec<u8> {
    let block: Vec<u8> = (0..256).map(|k| ((i + k) % 251) as u8).collect();
    block.repeat(size / 256)
}

#[test]
fn a_streamed_download_reaches_a_slow_reader_whole_and_close_runs() {
    let (server, marks) = pep_with_markers(&[]);
    let (n, size) = (160, 65536);
    let mut stream = server.connect();
    write!(
        stream,
        "GET /stream?n={n}&size={size}&token=slow HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .expect("write");
    // Read slowly: small reads with pauses, so the server must hold back, not buffer 10 MB.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let started = Instant::now();
    loop {
        let got = stream.read(&mut buf).expect("read");
        raw.extend_from_slice(&buf[..got]);
        if got == 0 || raw.ends_with(b"0\r\n\r\n") {
            break;
        }
        std::thread::sleep(Duration::from_micros(300));
        assert!(started.elapsed() < Duration::from_secs(60), "too slow");
    }
    let resp = Reader::new(&raw[..])
        .response(false)
        .expect("a whole chunked response");
    assert_eq!(resp.status, 200);
    let expected: Vec<u8> = (1..=n).flat_map(|i| stream_chunk(i, size)).collect();
    assert_eq!(resp.body.len(), expected.len());
    assert!(resp.body == expected, "the streamed bytes differ");
    wait_until(Duration::from_secs(5), "close() after the stream", || {
        marks.path().join("closed-slow").exists()
    });
    assert_validator_silent(&server);
}

#[test]
fn a_client_that_leaves_mid_stream_still_gets_close_called() {
    let (server, marks) = pep_with_markers(&["--threads", "1"]);
    let mut stream = server.connect();
    write!(
        stream,
        "GET /stream?n=1000000&size=65536&token=gone HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .expect("write");
    let mut buf = vec![0u8; 1 << 20];
    stream.read_exact(&mut buf).expect("the first megabyte");
    drop(stream);
    wait_until(
        Duration::from_secs(15),
        "close() after the client left",
        || marks.path().join("closed-gone").exists(),
    );
    // The only app thread is free again.
    assert_eq!(get(server.addr, "/environ").status, 200);
    assert_validator_silent(&server);
}

#[test]
fn file_wrapper_sends_a_file_from_where_the_app_left_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("data.bin");
    let data: Vec<u8> = (0..1_000_003u32).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(&path, &data).expect("write");
    let server = pep(
        &["pep3333:raw"],
        &[("RG_FILE", path.to_str().expect("utf-8"))],
    );
    let resp = get(server.addr, "/file?skip=10");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-length"), Some("999993"));
    assert!(resp.body == data[10..], "file bytes differ");
    // A file-like object without a descriptor is iterated in blksize blocks.
    let resp = get(server.addr, "/bytesio");
    assert_eq!(resp.body, vec![b'x'; 10000]);
}

#[test]
fn exceptions_before_the_response_are_500_with_the_traceback_and_the_worker_keeps_serving() {
    let server = pep(&["--threads", "2"], &[]);
    let pid_before = server.worker_pids();
    for path in ["/error/before", "/error/started"] {
        let resp = get(server.addr, path);
        assert_eq!(resp.status, 500, "{path}");
        assert_eq!(resp.text(), "500 Internal Server Error\n");
    }
    for line in [
        "Error handling request GET /error/before",
        "Traceback (most recent call last):",
        "ValueError: raised before start_response, on purpose",
        "ValueError: raised after start_response, before the body, on purpose",
    ] {
        wait_until(Duration::from_secs(5), line, || server.log().contains(line));
    }
    assert_eq!(get(server.addr, "/environ").status, 200);
    assert_eq!(server.worker_pids(), pid_before, "the worker kept serving");
}

#[test]
fn an_exception_after_the_response_started_closes_the_connection_and_close_runs() {
    let (server, marks) = pep_with_markers(&[]);
    let mut stream = server.connect();
    write!(
        stream,
        "GET /stream?n=5&size=1024&fail_at=2&token=failed HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read to the close");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        !raw.ends_with(b"0\r\n\r\n"),
        "a failed stream must not look complete"
    );
    assert!(Reader::new(&raw[..]).response(false).is_err());
    wait_until(Duration::from_secs(5), "close() after the failure", || {
        marks.path().join("closed-failed").exists()
    });
    wait_until(Duration::from_secs(5), "the traceback", || {
        server
            .log()
            .contains("RuntimeError: failed while streaming, on purpose")
    });
    assert_eq!(get(server.addr, "/environ").status, 200);
}

#[test]
fn start_response_takes_exc_info_and_write_comes_first() {
    let server = pep(&[], &[]);
    let resp = get(server.addr, "/exc_info");
    assert_eq!((resp.status, resp.text().as_str()), (503, "replaced"));
    let resp = get(server.addr, "/write");
    assert_eq!(
        (resp.status, resp.text().as_str()),
        (200, "written, then returned")
    );
    assert_validator_silent(&server);
}

#[test]
fn head_204_and_304_carry_no_body_and_keep_the_connection_in_step() {
    let server = pep(&[], &[]);
    let stream = server.connect();
    let mut writer = stream.try_clone().expect("clone");
    writer
        .write_all(
            b"HEAD /head HTTP/1.1\r\nHost: x\r\n\r\nGET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /status/304 HTTP/1.1\r\nHost: x\r\n\r\nGET /head HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .expect("write");
    let mut conn = Reader::new(stream);
    let head = conn.response(true).expect("HEAD");
    assert_eq!(
        (head.status, head.header("content-length")),
        (200, Some("5"))
    );
    assert_eq!(conn.response(false).expect("204").status, 204);
    assert_eq!(conn.response(false).expect("304").status, 304);
    let last = conn.response(false).expect("GET after them");
    assert_eq!((last.status, last.text().as_str()), (200, "hello"));
    assert_validator_silent(&server);
}

#[test]
fn a_body_that_breaks_its_content_length_closes_the_connection() {
    let server = pep(&[], &[]);
    // Shorter than declared, as one buffer.
    let mut stream = server.connect();
    stream
        .write_all(b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("closed");
    let text = String::from_utf8_lossy(&raw);
    assert!(
        text.contains("Content-Length: 100\r\n") && text.ends_with("\r\n\r\nonly this"),
        "{text}"
    );
    // Streamed, longer than declared: exactly the declared bytes, then the close.
    let mut conn = send(&server, "/stream-length?n=3&size=1024&declared=1000");
    let resp = conn.response(false).expect("response");
    assert_eq!(resp.body.len(), 1000);
    assert!(
        conn.at_eof(),
        "the connection must close after a body longer than declared"
    );
    // Streamed, shorter than declared: the close tells the client the body is cut.
    let mut conn = send(&server, "/stream-length?n=3&size=1024&declared=5000");
    assert!(
        conn.response(false).is_err(),
        "a short body must end with the connection"
    );
    // Exactly as declared: the connection stays usable.
    let stream = server.connect();
    let mut writer = stream.try_clone().expect("clone");
    writer
        .write_all(b"GET /stream-length?n=3&size=1024 HTTP/1.1\r\nHost: x\r\n\r\nGET /head HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut conn = Reader::new(stream);
    assert_eq!(conn.response(false).expect("exact").body.len(), 3072);
    assert_eq!(conn.response(false).expect("next").text(), "hello");
}

/// `GET path` on a new connection, left open for reading.
fn send(server: &Server, path: &str) -> Reader<std::net::TcpStream> {
    let stream = server.connect();
    let mut writer = stream.try_clone().expect("clone");
    write!(writer, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    Reader::new(stream)
}

/// `GET path` with `Connection: close`, and every byte of the answer.
fn raw_get(server: &Server, path: &str) -> Vec<u8> {
    let mut stream = server.connect();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).expect("read to the close");
    raw
}

#[test]
fn a_status_reason_of_the_apps_own_goes_out_as_the_app_gave_it() {
    let server = pep(&[], &[]);
    for (status, line) in [
        ("299%20Whatever", &b"HTTP/1.1 299 Whatever\r\n"[..]),
        ("200%20OK", b"HTTP/1.1 200 OK\r\n"),
        ("404%20Nowhere%20here", b"HTTP/1.1 404 Nowhere here\r\n"),
        // Latin-1 on the wire, as PEP 3333 has native strings.
        ("299%20Caf%C3%A9", b"HTTP/1.1 299 Caf\xe9\r\n"),
    ] {
        let raw = raw_get(&server, &format!("/reason?status={status}"));
        assert!(
            raw.starts_with(line),
            "{status}: {}",
            String::from_utf8_lossy(&raw)
        );
        let resp = Reader::new(&raw[..]).response(false).expect("whole");
        assert_eq!(resp.text(), "reason", "{status}");
    }
    // A reason that would split the status line is the app's error: a 500.
    let raw = raw_get(&server, "/reason?status=299%20Bad%0D%0AX-Injected:%201");
    assert!(raw.starts_with(b"HTTP/1.1 500 Internal Server Error\r\n"));
    assert!(!raw.windows(10).any(|w| w == b"X-Injected"));
    assert_validator_silent(&server);
}

#[test]
fn write_sends_its_bytes_before_it_returns() {
    let (server, marks) = pep_with_markers(&[]);
    let mut stream = server.connect();
    write!(
        stream,
        "GET /write-wait?token=early HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .expect("write");
    // The app waits for the go-ahead after write(b"first,"): the head and those bytes
    // must reach the client meanwhile (a read timeout here means write() held them).
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(6).any(|w| w == b"first,") {
        let n = stream
            .read(&mut buf)
            .expect("write()'s bytes before the app returned");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
    }
    std::fs::write(marks.path().join("go-early"), "").expect("go");
    while !raw.ends_with(b"0\r\n\r\n") {
        let n = stream.read(&mut buf).expect("the rest");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&raw));
        raw.extend_from_slice(&buf[..n]);
    }
    let resp = Reader::new(&raw[..]).response(false).expect("whole");
    assert_eq!(
        (resp.status, resp.reason.as_str(), resp.text().as_str()),
        (299, "Written Early", "first,rest")
    );
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_validator_silent(&server);
}

/// How many write() calls of request `token` had returned, as the app counts them.
fn written(marks: &tempfile::TempDir, token: &str) -> usize {
    std::fs::read_to_string(marks.path().join(format!("written-{token}")))
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn write_waits_for_a_slow_client_and_one_that_leaves_frees_its_thread() {
    let (server, marks) = pep_with_markers(&["--threads", "1"]);
    // 94 MiB: far more than the socket buffers (loopback autotuning grows to 32 MiB here).
    let (n, size) = (1500usize, 65536usize);
    let total = n * size;
    let mut stream = server.connect();
    write!(
        stream,
        "GET /write-many?n={n}&size={size}&declared={total}&token=slow HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).expect("the head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains(&format!("Content-Length: {total}\r\n")),
        "{head}"
    );
    // The client reads nothing more: write() must stop returning once the socket
    // buffers and the channel between the app thread and the loop are full.
    let mut last = usize::MAX;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = written(&marks, "slow");
        if now == last && now > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "write() never came to a stop");
        last = now;
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(
        last < n / 2,
        "{last} of {n} write() calls returned while the client read nothing"
    );
    // Then every byte arrives, in order, and the app finishes.
    let mut buf = vec![0u8; 1 << 16];
    let mut at = 0usize;
    while at < total {
        let got = stream.read(&mut buf).expect("the body");
        assert!(got > 0, "closed after {at} of {total} bytes");
        for (o, b) in buf[..got].iter().enumerate() {
            let off = at + o;
            let want = ((off / size + 1 + off % size % 256) % 251) as u8;
            assert_eq!(*b, want, "byte {off}");
        }
        at += got;
    }
    wait_until(Duration::from_secs(10), "the app to finish", || {
        marks.path().join("write-done-slow").exists()
    });
    assert_eq!(written(&marks, "slow"), n);

    // A client that leaves mid-write: write() raises in the app, and the only app thread
    // is free for the next request.
    let mut stream = server.connect();
    write!(
        stream,
        "GET /write-many?n=1000000&size=65536&token=gone HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .expect("write");
    let mut buf = vec![0u8; 1 << 20];
    stream.read_exact(&mut buf).expect("the first megabyte");
    drop(stream);
    wait_until(Duration::from_secs(15), "write() to raise", || {
        marks.path().join("write-failed-gone").exists()
    });
    assert_eq!(get(server.addr, "/environ").status, 200);
    assert!(
        server.log().contains("the client has gone"),
        "{}",
        server.log()
    );
}

#[test]
fn write_keeps_to_the_declared_length_and_the_connection_in_step() {
    let server = pep(&[], &[]);
    let stream = server.connect();
    let mut writer = stream.try_clone().expect("clone");
    // 3 KiB written and a tail returned, 2000 bytes declared: the client gets exactly
    // 2000, as gunicorn sends, and the next request on the connection is answered.
    writer
        .write_all(
            b"GET /write-many?n=3&size=1024&declared=2000&tail=xyz&token=len HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /head HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .expect("write");
    let mut conn = Reader::new(stream);
    let first = conn.response(false).expect("the declared length");
    let expected: Vec<u8> = (1..=3).flat_map(|i| stream_chunk(i, 1024)).collect();
    assert!(
        first.body == expected[..2000],
        "the first 2000 bytes written"
    );
    let next = conn.response(false).expect("the next response");
    assert_eq!((next.status, next.text().as_str()), (200, "hello"));
    assert_validator_silent(&server);
}
