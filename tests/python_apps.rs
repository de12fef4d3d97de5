//! Real Python apps, unchanged, under rgunicorn (issue 9): the README's examples in
//! `examples/python/` (the welcome API in Flask with Flask-RESTful, flask-cors and a
//! Flask-SQLAlchemy database set up at import, a plain WSGI app, a minimal Django project), each started the way the README says, with the real
//! packages from PyPI in a virtualenv, over real sockets.
#![cfg(feature = "python")]

mod common;
mod python_support;

use std::time::Duration;

use common::{exchange, get, wait_until, Reader, Resp, Server, WELCOME, WELCOME_PATH};
use python_support::{examples, start};

/// Every header but Date, in order, with the status line and body: what "identical" means.
fn shape(resp: &Resp) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let headers = resp
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
        .cloned()
        .collect();
    (resp.status, headers, resp.body.clone())
}

#[test]
fn the_flask_welcome_example_answers_the_built_in_apps_bytes() {
    let flask = start(&examples().join("welcome"), &["app.app:app"], &[]);
    let builtin = Server::start(&[]);
    let requests = [
        format!("GET {WELCOME_PATH} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        format!("HEAD {WELCOME_PATH} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        format!("OPTIONS {WELCOME_PATH} HTTP/1.1\r\nHost: localhost\r\n\r\n"),
        format!("POST {WELCOME_PATH} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n"),
        "GET /no/such/page HTTP/1.1\r\nHost: localhost\r\n\r\n".to_string(),
        format!("GET {WELCOME_PATH} HTTP/1.0\r\n\r\n"),
    ];
    for request in &requests {
        let ours = exchange(builtin.addr, request.as_bytes());
        let theirs = exchange(flask.addr, request.as_bytes());
        assert_eq!(shape(&theirs), shape(&ours), "{request:?}\n{}", flask.log());
    }
    let resp = get(flask.addr, WELCOME_PATH);
    assert_eq!(resp.text(), WELCOME);
    assert!(!flask.log().contains("WARNING"), "{}", flask.log());
}

#[test]
fn flask_cors_answers_a_preflight_through_flask_restful() {
    let flask = start(
        &examples().join("welcome"),
        &["-w", "2", "app.app:app"],
        &[],
    );
    let preflight = format!(
        "OPTIONS {WELCOME_PATH} HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://www.example.com\r\n\
         Access-Control-Request-Method: GET\r\nAccess-Control-Request-Headers: content-type\r\n\r\n"
    );
    let resp = exchange(flask.addr, preflight.as_bytes());
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://www.example.com")
    );
    let methods = resp.header("access-control-allow-methods").unwrap_or("");
    assert!(methods.contains("GET"), "{methods}");
    assert_eq!(
        resp.header("access-control-allow-headers"),
        Some("content-type")
    );
    let simple = format!(
        "GET {WELCOME_PATH} HTTP/1.1\r\nHost: api.example.com\r\nOrigin: https://www.example.com\r\n\r\n"
    );
    let resp = exchange(flask.addr, simple.as_bytes());
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), WELCOME);
    assert_eq!(
        resp.header("access-control-allow-origin"),
        Some("https://www.example.com")
    );
}

#[test]
fn the_plain_wsgi_example_serves_with_chdir() {
    let plain = examples().join("plain");
    let plain = plain.to_str().expect("utf-8 path");
    let server = start(
        python_support::manifest_dir(),
        &["--chdir", plain, "hello:application"],
        &[],
    );
    let resp = get(server.addr, "/rgunicorn");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "Hello, rgunicorn!\n");
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
}

#[test]
fn the_django_example_serves_views_forms_and_404s() {
    let django = examples().join("django");
    let django = django.to_str().expect("utf-8 path");
    let server = start(
        python_support::manifest_dir(),
        &[
            "-w",
            "2",
            "--threads",
            "8",
            "--chdir",
            django,
            "mysite.wsgi",
        ],
        &[],
    );
    let resp = get(server.addr, "/");
    assert_eq!(resp.status, 200, "{}", server.log());
    assert_eq!(resp.text(), "Hello from Django!\n");
    // A form post, read by Django through wsgi.input; then a second request on the
    // same connection.
    let form = "name=rg+unicorn&lang=rust";
    let raw = format!(
        "POST /echo/?x=1 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{form}GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
        form.len()
    );
    let stream = server.connect();
    let mut writer = stream.try_clone().expect("clone");
    std::io::Write::write_all(&mut writer, raw.as_bytes()).expect("write");
    let mut conn = Reader::new(stream);
    let resp = conn.response(false).expect("response");
    assert_eq!(resp.status, 200);
    let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
    assert_eq!(
        json,
        serde_json::json!({
            "method": "POST",
            "query": {"x": "1"},
            "form": {"name": "rg unicorn", "lang": "rust"},
            "length": form.len()
        })
    );
    assert_eq!(conn.response(false).expect("second").status, 200);
    let resp = get(server.addr, "/no/such/page");
    assert_eq!(resp.status, 404);
    assert!(!server.log().contains("Traceback"), "{}", server.log());
}

/// The welcome example copied to a fresh project folder (no database yet), so the test
/// sees the database made at import, relative to that folder.
fn fresh_welcome_project() -> tempfile::TempDir {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).expect("mkdir");
        for entry in std::fs::read_dir(from).expect("read_dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name();
            if name == "instance" || name == "__pycache__" {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                copy(&path, &to.join(&name));
            } else {
                std::fs::copy(&path, to.join(&name)).expect("copy");
            }
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    copy(&examples().join("welcome"), dir.path());
    dir
}

/// What `get_greetings` answers: the rows app/db.py seeds, once each.
fn assert_greetings(server: &Server) {
    let resp = get(server.addr, "/api/v1/welcome/get_greetings");
    assert_eq!(resp.status, 200, "{}", server.log());
    assert_eq!(
        resp.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    let json: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
    assert_eq!(
        json,
        serde_json::json!({"code": "SUCCESS", "data": [
            {"language": "en", "text": "Welcome to HUO Ke Website"},
            {"language": "fr", "text": "Bienvenue sur le site de HUO Ke"},
            {"language": "zh", "text": "\u{6b22}\u{8fce}\u{6765}\u{5230}\u{970d}\u{514b}\u{7684}\u{7f51}\u{7ad9}"},
        ]})
    );
}

#[test]
fn flask_sqlalchemy_set_up_at_import_serves_with_and_without_preload_and_across_a_hup() {
    for preload in [false, true] {
        let project = fresh_welcome_project();
        let mut args = vec!["-w", "2", "--threads", "4"];
        if preload {
            args.push("--preload");
        }
        args.push("app.app:app");
        // Two workers import at once without --preload: one makes the database.
        let server = start(project.path(), &args, &[]);
        assert!(
            project.path().join("instance/welcome.db").is_file(),
            "the database is made relative to the project folder"
        );
        for _ in 0..8 {
            assert_greetings(&server);
        }
        assert_eq!(get(server.addr, WELCOME_PATH).text(), WELCOME);
        let before = server.worker_pids();
        server.signal(libc::SIGHUP);
        wait_until(Duration::from_secs(30), "new workers after HUP", || {
            let now = server.worker_pids();
            now.len() == 2 && now.iter().all(|p| !before.contains(p))
        });
        for _ in 0..8 {
            assert_greetings(&server);
        }
        let log = server.log();
        assert!(
            !log.contains("Traceback") && !log.contains("WARNING"),
            "preload {preload}:\n{log}"
        );
    }
}
