//! The TLS front end to end: the real `rgunicorn-front` (and the real `rgunicorn` workers
//! running the echo app, or a scripted upstream) over real sockets, with real TLS clients:
//! curl, `openssl s_client` and a rustls client. Certificates are made at test time.

mod front_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use front_support::*;
use rustls::pki_types::pem::PemObject;

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("front-test")
        .tempdir()
        .expect("tempdir")
}

fn openssl(args: &[&str], stdin: &[u8]) -> String {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().expect("openssl output");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn curl_reaches_the_echo_app_with_forwarded_headers_and_front_server_header() {
    let dir = tempdir();
    let certs = Certs::new(dir.path());
    certs.write_leaf(1);
    let sock = dir.path().join("w.sock");
    let _workers = start_workers(&sock);
    let front = start_front(
        dir.path(),
        &format!("unix:{}", sock.display()),
        &format!(
            "hsts = \"max-age=31536000\"\naccess_log = \"{}\"",
            dir.path().join("access.log").display()
        ),
    );
    let url = format!("https://localhost:{}/api/v1/x?y=1", front.addr.port());
    let out = Command::new("curl")
        .args(["-sS", "-i", "--cacert"])
        .arg(certs.ca_path())
        .args([
            "--resolve",
            &format!("localhost:{}:127.0.0.1", front.addr.port()),
        ])
        .args([
            "-H",
            "X-Forwarded-For: 203.0.113.9",
            "-H",
            "X-Real-IP: 6.6.6.6",
        ])
        .args(["-H", "Connection: keep-alive, X-Hop", "-H", "X-Hop: secret"])
        .arg(&url)
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 200"),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("\r\nServer: rgunicorn-front\r\n"), "{text}");
    assert!(
        text.contains("\r\nStrict-Transport-Security: max-age=31536000\r\n"),
        "{text}"
    );
    let body = &text[text.find("\r\n\r\n").expect("body") + 4..];
    let json: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(json["scheme"], "https");
    assert_eq!(json["path"], "/api/v1/x");
    assert_eq!(json["query"], "y=1");
    assert_eq!(json["remote_addr"], "127.0.0.1");
    let headers: Vec<(String, String)> = json["headers"]
        .as_array()
        .expect("headers")
        .iter()
        .map(|h| {
            (
                h[0].as_str().unwrap_or("").to_lowercase(),
                h[1].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(get("x-forwarded-for"), ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(get("x-forwarded-proto"), ["https"]);
    assert_eq!(
        get("x-forwarded-host"),
        [format!("localhost:{}", front.addr.port())]
    );
    assert_eq!(get("x-real-ip"), ["127.0.0.1"]);
    assert!(
        get("x-hop").is_empty() && get("connection").is_empty(),
        "{headers:?}"
    );
    // nginx "combined": addr - - [time] "request" status bytes "referer" "agent"
    let log = read_log_with(&dir.path().join("access.log"), "\n");
    let line = log.lines().next().expect("a line");
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains("] \"GET /api/v1/x?y=1 HTTP/1.1\" 200 ")
            && line.contains(" \"-\" \"curl/")
            && line.ends_with('"'),
        "{line}"
    );
}

#[test]
fn openssl_versions_and_session_resumption() {
    let dir = tempdir();
    let certs = Certs::new(dir.path());
    certs.write_leaf(1);
    let upstream = TestUpstream::start(&dir.path().join("up.sock"));
    let front = start_front(dir.path(), &format!("unix:{}", upstream.path.display()), "");
    let connect = front.addr.to_string();
    let ca = certs.ca_path().display().to_string();
    for old in ["-tls1", "-tls1_1"] {
        let out = openssl(
            &[
                "s_client",
                "-connect",
                &connect,
                old,
                "-servername",
                "localhost",
            ],
            b"",
        );
        assert!(
            !out.contains("Cipher is TLS") && !out.contains("Cipher is ECDHE"),
            "{old} accepted:\n{out}"
        );
    }
    let request = b"GET /count HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    for (version, name) in [("-tls1_2", "TLSv1.2"), ("-tls1_3", "TLSv1.3")] {
        let sess = dir.path().join(format!("sess{version}"));
        let sess = sess.display().to_string();
        let base = [
            "s_client",
            "-connect",
            &connect,
            version,
            "-servername",
            "localhost",
            "-CAfile",
            &ca,
            "-ign_eof",
        ];
        let first = openssl(&[&base[..], &["-sess_out", &sess]].concat(), request);
        assert!(first.contains(&format!("New, {name}")), "{first}");
        assert!(first.contains("Verify return code: 0 (ok)"), "{first}");
        assert!(
            first.contains("conn="),
            "no response through {name}:\n{first}"
        );
        let second = openssl(&[&base[..], &["-sess_in", &sess]].concat(), request);
        assert!(
            second.contains(&format!("Reused, {name}")),
            "{name} session not reused:\n{second}"
        );
    }
    // The front's order of suites, not the client's: OpenSSL lists AES-256 first, the
    // front takes AES-128 (SHA-256: cheaper handshakes); a client offering only another
    // suite gets that one.
    let suite = |args: &[&str]| {
        let out = openssl(
            &[
                &["s_client", "-connect", &connect, "-servername", "localhost"][..],
                args,
            ]
            .concat(),
            b"",
        );
        out.lines()
            .find_map(|l| l.split("Cipher is ").nth(1))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|| panic!("no cipher:\n{out}"))
    };
    assert_eq!(suite(&["-tls1_3"]), "TLS_AES_128_GCM_SHA256");
    assert_eq!(
        suite(&["-tls1_3", "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256"]),
        "TLS_CHACHA20_POLY1305_SHA256"
    );
    assert_eq!(
        suite(&["-tls1_3", "-ciphersuites", "TLS_AES_256_GCM_SHA384"]),
        "TLS_AES_256_GCM_SHA384"
    );
    assert_eq!(suite(&["-tls1_2"]), "ECDHE-ECDSA-AES128-GCM-SHA256");
}

/// A personal site with two names: each gets its own certificate, chosen by SNI; an
/// unknown name (or none) gets the first.
#[test]
fn sni_chooses_among_several_certificates() {
    let dir = tempdir();
    let certs = Certs::new(dir.path());
    certs.write_leaf(1);
    certs.write_named(2, &["www.example.test", "example.test"], "site");
    certs.write_named(3, &["*.blog.test"], "blog");
    let upstream = TestUpstream::start(&dir.path().join("up.sock"));
    let d = dir.path().display();
    let front = start_front(
        dir.path(),
        &format!("unix:{}", upstream.path.display()),
        &format!(
            "[[front.certificate]]\ncertfile = \"{d}/site.pem\"\nkeyfile = \"{d}/site.key\"\n\
             [[front.certificate]]\ncertfile = \"{d}/blog.pem\"\nkeyfile = \"{d}/blog.key\""
        ),
    );
    let connect = front.addr.to_string();
    let serial_for = |name: Option<&str>| {
        let mut args = vec!["s_client", "-connect", &connect];
        if let Some(name) = name {
            args.extend(["-servername", name]);
        } else {
            args.push("-noservername");
        }
        let out = openssl(&args, b"");
        let pem = out
            .split("-----BEGIN CERTIFICATE-----")
            .nth(1)
            .and_then(|rest| rest.split("-----END CERTIFICATE-----").next())
            .unwrap_or_else(|| panic!("no certificate in {out}"));
        let der: Vec<u8> = rustls::pki_types::CertificateDer::from_pem_slice(
            format!("-----BEGIN CERTIFICATE-----{pem}-----END CERTIFICATE-----\n").as_bytes(),
        )
        .expect("pem")
        .to_vec();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("x509");
        cert.raw_serial_as_string()
    };
    assert_eq!(serial_for(Some("example.test")), "02");
    assert_eq!(serial_for(Some("www.example.test")), "02");
    assert_eq!(serial_for(Some("me.blog.test")), "03");
    assert_eq!(serial_for(Some("localhost")), "01");
    assert_eq!(serial_for(Some("other.test")), "01");
    assert_eq!(serial_for(None), "01");
}

#[test]
fn redirect_listener_answers_301_to_https() {
    let dir = tempdir();
    let certs = Certs::new(dir.path());
    certs.write_leaf(1);
    let access = dir.path().join("access.log");
    let front = start_front(
        dir.path(),
        "unix:/nonexistent.sock",
        &format!(
            "redirect_http = \"127.0.0.1:0\"\nhttps_port = 5000\naccess_log = \"{}\"",
            access.display()
        ),
    );
    let addr = front.redirect.expect("redirect address");
    let out = Command::new("curl")
        .args([
            "-sS",
            "-i",
            &format!(
                "http://localhost:{}/api/v1/welcome/get_welcome_data?a=b",
                addr.port()
            ),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("HTTP/1.1 301"), "{text}");
    assert!(
        text.contains(
            "\r\nLocation: https://localhost:5000/api/v1/welcome/get_welcome_data?a=b\r\n"
        ),
        "{text}"
    );
    assert!(text.contains("\r\nServer: rgunicorn-front\r\n"), "{text}");
    // The access log counts the 301's body, as nginx does (it said 0).
    let length = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("a Content-Length")
        .trim()
        .to_string();
    let log = read_log_with(&access, "\n");
    assert!(
        log.contains(&format!("HTTP/1.1\" 301 {length} ")),
        "{log} (body {length})"
    );
}

#[test]
fn keepalive_is_reused_on_both_sides_and_streams_big_bodies() {
    let scripted = Scripted::start("threads = 1");
    let (front, config) = (&scripted.front, &scripted.client);
    let mut tls = connect(config, front.addr);
    for n in 1..=3 {
        write!(tls, "GET /count HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
        let resp = read_response(&mut tls, false).expect("response");
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.text(),
            format!("conn=1 req={n}"),
            "upstream connection not reused"
        );
    }
    // Pipelined requests in one write come back in order.
    write!(
        tls,
        "GET /count HTTP/1.1\r\nHost: localhost\r\n\r\nGET /count HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .expect("write");
    assert_eq!(
        read_response(&mut tls, false).expect("first").text(),
        "conn=1 req=4"
    );
    assert_eq!(
        read_response(&mut tls, false).expect("second").text(),
        "conn=1 req=5"
    );
    // A 20 MB chunked download crosses within bounded buffers, re-chunked for the client.
    write!(tls, "GET /big/20000000 HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    let resp = read_response(&mut tls, false).expect("big response");
    assert_eq!(resp.header("transfer-encoding"), Some("chunked"));
    assert_eq!(resp.body.len(), 20_000_000);
    assert!(resp.body.iter().all(|b| *b == b'x'));
    // HTTP/1.0-style until-close body: the front re-chunks it and keeps the client.
    write!(
        tls,
        "GET /until-close/100000 HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .expect("write");
    let resp = read_response(&mut tls, false).expect("until-close response");
    assert_eq!(resp.body.len(), 100_000);
    write!(tls, "GET /count HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    let resp = read_response(&mut tls, false).expect("after");
    assert_eq!(resp.status, 200);
    let hwm = std::fs::read_to_string(format!("/proc/{}/status", front.proc.child.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| {
            l.split_whitespace()
                .nth(1)
                .and_then(|kb| kb.parse::<u64>().ok())
        });
    if let Some(kb) = hwm {
        assert!(
            kb < 64 * 1024,
            "front peak memory {kb} kB after a 20 MB download"
        );
    }
}

#[test]
fn large_streamed_upload_reaches_the_app() {
    let stack = BeforeWorkers::start("client_max_body_size = \"20m\"");
    let (front, config) = (&stack.front, &stack.client);
    let mut tls = connect(config, front.addr);
    let size = 8 * 1024 * 1024;
    // Chunked upload: decoded by the front, re-encoded for the workers.
    write!(
        tls,
        "POST /up HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .expect("head");
    let chunk = vec![b'a'; 64 * 1024];
    for _ in 0..size / chunk.len() {
        write!(tls, "{:x}\r\n", chunk.len()).expect("size");
        tls.write_all(&chunk).expect("chunk");
        tls.write_all(b"\r\n").expect("crlf");
    }
    tls.write_all(b"0\r\n\r\n").expect("last");
    let resp = read_response(&mut tls, false).expect("response");
    assert_eq!(
        resp.status,
        200,
        "{}",
        String::from_utf8_lossy(&resp.body[..resp.body.len().min(300)])
    );
    let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
    assert_eq!(json["body_length"], size);
    // Content-Length upload on the same connection.
    write!(
        tls,
        "POST /up HTTP/1.1\r\nHost: localhost\r\nContent-Length: {size}\r\n\r\n"
    )
    .expect("head");
    for _ in 0..size / chunk.len() {
        tls.write_all(&chunk).expect("body");
    }
    let resp = read_response(&mut tls, false).expect("response");
    let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
    assert_eq!(json["body_length"], size);
}

#[test]
fn errors_502_504_413_and_slow_clients_408() {
    let scripted = Scripted::start(
        "upstream_read_timeout = \"1s\"\nclient_header_timeout = \"1s\"\nclient_body_timeout = \"1s\"\nclient_max_body_size = \"1k\"",
    );
    let (front, config) = (&scripted.front, &scripted.client);

    let resp = get(config, front.addr, "/hang").expect("504");
    assert_eq!(resp.status, 504);
    assert_eq!(resp.header("server"), Some("rgunicorn-front"));

    let mut tls = connect(config, front.addr);
    write!(
        tls,
        "POST /hang HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2000\r\n\r\n"
    )
    .expect("write");
    assert_eq!(read_response(&mut tls, false).expect("413").status, 413);

    let mut tls = connect(config, front.addr);
    write!(
        tls,
        "POST /hang HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .expect("write");
    let _ = write!(tls, "800\r\n{}\r\n", "z".repeat(0x800));
    assert_eq!(
        read_response(&mut tls, false).expect("413 chunked").status,
        413
    );

    // Slowloris: half a head, then silence.
    let started = Instant::now();
    let mut tls = connect(config, front.addr);
    write!(tls, "GET /count HTTP/1.1\r\nHost: loc").expect("write");
    let resp = read_response(&mut tls, false).expect("408");
    assert_eq!(resp.status, 408);
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut rest = Vec::new();
    let _ = tls.read_to_end(&mut rest);

    // A body that stops arriving.
    let mut tls = connect(config, front.addr);
    write!(
        tls,
        "POST /count HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc"
    )
    .expect("write");
    assert_eq!(
        read_response(&mut tls, false).expect("408 body").status,
        408
    );

    // Workers gone: 502.
    let down = tempdir();
    let certs2 = Certs::new(down.path());
    certs2.write_leaf(1);
    let front2 = start_front(
        down.path(),
        &format!("unix:{}", down.path().join("none.sock").display()),
        "",
    );
    let resp = get(&client_config(&certs2.ca_pem), front2.addr, "/").expect("502");
    assert_eq!(resp.status, 502);
    assert!(resp.text().contains("502 Bad Gateway"));
}

#[test]
fn bad_certificates_stop_the_start_with_one_line_naming_the_file() {
    let dir = tempdir();
    let certs = Certs::new(dir.path());
    let run = |extra: &str| {
        let config = dir.path().join("bad.toml");
        std::fs::write(
            &config,
            format!("[front]\nlisten = \"127.0.0.1:0\"\nupstream = \"unix:/x.sock\"\n{extra}\n"),
        )
        .expect("config");
        let out = Command::new(env!("CARGO_BIN_EXE_rgunicorn-front"))
            .arg("-c")
            .arg(&config)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let d = dir.path().display();
    // A certificate that cannot be served: the front cannot boot (3, not respawned).
    let (code, err) = run(&format!(
        "certfile = \"{d}/missing.pem\"\nkeyfile = \"{d}/missing.key\""
    ));
    assert_eq!(code, Some(3));
    assert!(
        err.contains("missing.pem") && err.lines().count() == 1,
        "{err}"
    );

    let (cert, key) = certs.leaf(9, Some(()));
    std::fs::write(dir.path().join("old.pem"), cert).expect("write");
    std::fs::write(dir.path().join("old.key"), key).expect("write");
    let (code, err) = run(&format!(
        "certfile = \"{d}/old.pem\"\nkeyfile = \"{d}/old.key\""
    ));
    assert_eq!(code, Some(3));
    assert!(err.contains("old.pem") && err.contains("expired"), "{err}");

    certs.write_leaf(1);
    let (_, other_key) = certs.leaf(2, None);
    std::fs::write(dir.path().join("other.key"), other_key).expect("write");
    let (code, err) = run(&format!(
        "certfile = \"{d}/server.pem\"\nkeyfile = \"{d}/other.key\""
    ));
    assert_eq!(code, Some(3));
    assert!(
        err.contains("other.key") && err.contains("does not match"),
        "{err}"
    );

    // A configuration error is a usage error, as with rgunicorn: one line, exit 2.
    let (code, err) = run(&format!(
        "certfile = \"{d}/server.pem\"\nkeyfile = \"{d}/server.key\"\nsession_timeout = \"soon\""
    ));
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("rgunicorn-front: error: ")
            && err.contains("front.session_timeout")
            && err.contains("soon")
            && err.lines().count() == 1,
        "{err}"
    );
    let (code, err) = run(&format!(
        "certfile = \"{d}/server.pem\"\nkeyfile = \"{d}/server.key\"\nlisten_on = \"x\""
    ));
    assert_eq!(code, Some(2));
    assert!(
        err.contains("front.listen_on: unknown setting") && err.lines().count() == 1,
        "{err}"
    );
}

/// The binary answers like rgunicorn: -v, a bad flag in one line with exit 2, and a
/// silent --check-config.
#[test]
fn the_binary_answers_like_rgunicorn() {
    let front = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_rgunicorn-front"))
            .args(args)
            .output()
            .expect("run");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, out, _) = front(&["-v"]);
    assert_eq!(
        (code, out.trim()),
        (
            Some(0),
            concat!("rgunicorn-front ", env!("CARGO_PKG_VERSION"))
        )
    );
    let (code, _, err) = front(&["--bogus"]);
    assert_eq!(code, Some(2));
    assert!(
        err.starts_with("rgunicorn-front: error: ") && err.lines().count() == 1,
        "{err}"
    );
    let dir = tempdir();
    let certs = Certs::new(dir.path());
    certs.write_leaf(1);
    let config = dir.path().join("ok.toml");
    std::fs::write(
        &config,
        format!(
            "[front]\nlisten = \"127.0.0.1:0\"\nupstream = \"unix:/x.sock\"\ncertfile = \"{0}/server.pem\"\nkeyfile = \"{0}/server.key\"\n",
            dir.path().display()
        ),
    )
    .expect("config");
    let (code, out, err) = front(&["--check-config", "-c", config.to_str().expect("path")]);
    assert_eq!((code, out.as_str(), err.as_str()), (Some(0), "", ""));
}

#[test]
fn hup_reloads_the_certificate_without_failing_requests() {
    let dir = tempdir();
    let certs = Certs::new(dir.path());
    certs.write_leaf(1);
    let upstream = TestUpstream::start(&dir.path().join("up.sock"));
    let front = start_front(dir.path(), &format!("unix:{}", upstream.path.display()), "");
    let config = client_config(&certs.ca_pem);
    let mut established = connect(&config, front.addr);
    assert_eq!(peer_serial(&established), "01");

    // Load during the reload: every request must succeed.
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let load = {
        let (stop, failures, done, config, addr) = (
            stop.clone(),
            failures.clone(),
            done.clone(),
            config.clone(),
            front.addr,
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match get(&config, addr, "/count") {
                    Ok(r) if r.status == 200 => done.fetch_add(1, Ordering::SeqCst),
                    _ => failures.fetch_add(1, Ordering::SeqCst),
                };
            }
        })
    };

    // A bad new certificate is refused and the old one kept.
    std::fs::write(dir.path().join("server.pem"), "not a certificate").expect("write");
    front.proc.signal(libc::SIGHUP);
    assert!(front
        .proc
        .wait_line("reload refused", Duration::from_secs(10))
        .is_some());
    // Fresh client configs: a resumed session would report the old certificate.
    assert_eq!(
        peer_serial(&connect(&client_config(&certs.ca_pem), front.addr)),
        "01"
    );

    certs.write_leaf(2);
    front.proc.signal(libc::SIGHUP);
    assert!(front
        .proc
        .wait_line("certificate serial 02", Duration::from_secs(10))
        .is_some());
    // The loops take the new config a moment after the log line.
    let deadline = Instant::now() + Duration::from_secs(5);
    while peer_serial(&connect(&client_config(&certs.ca_pem), front.addr)) != "02" {
        assert!(Instant::now() < deadline, "new certificate not served");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::SeqCst);
    load.join().expect("load thread");
    assert_eq!(
        failures.load(Ordering::SeqCst),
        0,
        "{} ok",
        done.load(Ordering::SeqCst)
    );
    assert!(done.load(Ordering::SeqCst) > 0);

    // The connection made before the reload still works.
    write!(
        established,
        "GET /count HTTP/1.1\r\nHost: localhost\r\n\r\n"
    )
    .expect("write");
    assert_eq!(
        read_response(&mut established, false)
            .expect("old conn")
            .status,
        200
    );
}

#[test]
fn term_lets_in_flight_requests_finish() {
    let mut scripted = Scripted::start("");
    let config = scripted.client.clone();
    let front = &mut scripted.front;
    let mut tls = connect(&config, front.addr);
    write!(tls, "GET /slow/1000 HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");
    std::thread::sleep(Duration::from_millis(200));
    front.proc.signal(libc::SIGTERM);
    let resp = read_response(&mut tls, false).expect("in-flight response");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    assert_eq!(front.proc.wait_exit(Duration::from_secs(10)), Some(0));
    assert!(TcpStream::connect(front.addr).is_err() || get(&config, front.addr, "/count").is_err());
}

/// Issue 11's defects, through the front to the real workers: the front parses with the
/// workers' code, so it answers as they do.
#[test]
fn http_defects_of_issue_11_through_the_front() {
    let stack = BeforeWorkers::start("limit_request_field_size = 100");
    let (front, config) = (&stack.front, &stack.client);
    let ask = |raw: &str| {
        let mut tls = connect(config, front.addr);
        tls.write_all(raw.as_bytes()).expect("write");
        read_response(&mut tls, raw.starts_with("HEAD")).expect("response")
    };
    let echo = |resp: &Resp| -> serde_json::Value {
        serde_json::from_slice(&resp.body).expect("the echo app's json")
    };

    // An absolute-form target: its authority wins over Host, the path is `/`.
    let resp = ask("GET http://h.example?next=/home HTTP/1.1\r\nHost: other\r\n\r\n");
    assert_eq!(resp.status, 200);
    let json = echo(&resp);
    assert_eq!(json["path"], "/");
    assert_eq!(json["query"], "next=/home");
    assert_eq!(json["server_name"], "h.example");

    // Chunk extensions with whitespace (BWS, RFC 9112 7.1.1).
    let resp = ask(
        "POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5 ; name=value\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(echo(&resp)["body"], "hello");

    // CONNECT is refused as nginx refuses it; an HTTP/0.9 line is answered at once.
    assert_eq!(
        ask("CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n").status,
        405
    );
    assert_eq!(ask("GET /\r\n").status, 400);

    // limit_request_field_size counts the CRLF, as the workers (and gunicorn) do.
    let field = |len: usize| format!("X-A: {}\r\n", "a".repeat(len - 7));
    let at_limit = ask(&format!("GET / HTTP/1.1\r\nHost: h\r\n{}\r\n", field(100)));
    assert_eq!(at_limit.status, 200);
    let over = ask(&format!("GET / HTTP/1.1\r\nHost: h\r\n{}\r\n", field(101)));
    assert_eq!(over.status, 431);
}

/// The link between the front and the workers lets no one else in (issue 12): the unix
/// socket is created 0660 (gunicorn's umask of 0 made it 0777), and even where another
/// user can reach it (`--umask 0`), forwarded headers are trusted from root and the
/// server's own user only (SO_PEERCRED): another uid sees its own address, not the one it
/// forged.
#[test]
fn the_unix_link_lets_no_one_else_in() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let private = dir.path().join("private.sock");
    let _workers = start_workers(&private);
    let mode = std::fs::metadata(&private)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o660, "unix socket mode {mode:o}");
    let open = dir.path().join("open.sock");
    let _open_workers = start_workers_with(&open, &["--umask", "0"]);
    let mode = std::fs::metadata(&open)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o777, "--umask 0: {mode:o}");

    let ask = |sock: &std::path::Path, uid: Option<u32>| {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--unix-socket"])
            .arg(sock)
            .args(["-H", "X-Real-IP: 6.6.6.6", "-H", "X-Forwarded-Proto: https"])
            .arg("http://localhost/whoami");
        if let Some(uid) = uid {
            cmd.uid(uid).gid(uid);
        }
        let out = cmd.output().expect("curl");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    // This process (root, or the user the workers run as) is trusted.
    let (ok, body) = ask(&open, None);
    let json: serde_json::Value = serde_json::from_str(&body).expect("echo json");
    assert!(ok && json["remote_addr"] == "6.6.6.6", "{body}");
    assert_eq!(json["scheme"], "https");
    if !nix::unistd::geteuid().is_root() {
        eprintln!("not root: cannot connect as another user; the rest is not checked");
        return;
    }
    let nobody = 65534;
    let (ok, body) = ask(&private, Some(nobody));
    assert!(!ok, "another user reached the 0660 socket: {body}");
    let (ok, body) = ask(&open, Some(nobody));
    let json: serde_json::Value = serde_json::from_str(&body).expect("echo json");
    assert!(ok, "{body}");
    assert_ne!(json["remote_addr"], "6.6.6.6", "{body}");
    assert_eq!(json["scheme"], "http", "{body}");
}
