//! A Python app's life under the master (issue 9): every way an APP can fail to load (exit
//! 4 once, nothing bound), HUP serving edited code (and refusing broken code), `--preload`
//! (one import in the master, CPython's fork protocol, HUP keeps the code), `--chdir` and
//! `--pythonpath`, the virtualenv rule, `print()` reaching the log when a worker stops,
//! `--reload`, the app threads overlapping requests that wait, and under full load through
//! HUP, max_requests and TERM (each worker gone well inside the graceful timeout).
#![cfg(feature = "python")]

mod common;
mod python_support;

use std::path::Path;
use std::time::{Duration, Instant};

use common::load::{FullRate, Tally, Tcp};
use common::{get, wait_until, Server};
use python_support::{apps, project, run_to_exit, start, venv};
use rgunicorn::workers::app::wsgi::interpreter::BUILD_VERSION;

const SAY: &str = "
import os
VERSION = 'one'

def application(environ, start_response):
    body = ('%s %d' % (VERSION, os.getpid())).encode()
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [body]
";

/// `VERSION pid` from an app written from [`SAY`].
fn say(server: &Server) -> (String, i32) {
    let resp = match std::panic::catch_unwind(|| get(server.addr, "/")) {
        Ok(resp) => resp,
        Err(_) => panic!("GET / failed:\n{}", server.log()),
    };
    assert_eq!(resp.status, 200, "{}", server.log());
    let text = resp.text();
    let (version, pid) = text.split_once(' ').expect("VERSION pid");
    (version.to_string(), pid.parse().expect("pid"))
}

fn edit(dir: &Path, file: &str, text: &str) {
    let path = dir.join(file);
    std::fs::write(&path, text).expect("edit");
    // A new mtime even on coarse clocks, and no stale bytecode.
    let _ = std::fs::remove_dir_all(dir.join("__pycache__"));
}

/// (files, APP, the reason in the line naming APP, the exception is logged, with frames)
type LoadFailure<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str, bool, bool);

#[test]
fn each_way_an_app_can_fail_to_load_exits_4_once_before_anything_is_bound() {
    // (files, APP, the reason in the one line naming APP, the app's exception is
    // logged, with frames of the app's own code)
    #[rustfmt::skip]
    let cases: &[LoadFailure] = &[
        (&[], "no_such_module:app", "ModuleNotFoundError: No module named 'no_such_module'", true, false),
        (&[("broken.py", "def app(:\n    pass\n")], "broken:app", "SyntaxError", true, false),
        (&[("m.py", "raise RuntimeError('no database')\n")], "m:app", "RuntimeError: no database", true, true),
        (&[("m.py", "x = 1\n")], "m:app", "Failed to find attribute 'app' in 'm'.", false, false),
        (&[("m.py", "app = 42\n")], "m", "Failed to find attribute 'application' in 'm'.", false, false),
        (&[("m.py", "app = 42\n")], "m:app", "Application object must be callable.", false, false),
        (&[("m.py", "def make():\n    return None\n")], "m:make()", "Failed to find application object", false, false),
        (&[("m.py", "def make():\n    return 1\n")], "m:make('prod')", "TypeError: make() takes 0 positional arguments but 1 was given", false, false),
        (&[("m.py", "def make(x):\n    return 1\n")], "m:make(os.environ)", "Failed to parse arguments as literal values", false, false),
        (&[("hello.py", "application = None\n")], "hello.py", "did you mean 'hello:application'?", false, false),
    ];
    for (files, app, why, logged, frames) in cases {
        for preload in [false, true] {
            let dir = project(files);
            let mut args = vec!["-w", "3", app];
            if preload {
                args.insert(0, "--preload");
            }
            let out = run_to_exit(dir.path(), &args, &[], Duration::from_secs(30));
            let stderr = String::from_utf8_lossy(&out.stderr);
            let what = format!("{app} (preload {preload}):\n{stderr}");
            assert_eq!(out.status.code(), Some(4), "{what}");
            let named: Vec<&str> = stderr
                .lines()
                .filter(|l| l.contains("could not be loaded"))
                .collect();
            assert_eq!(named.len(), 1, "one line naming APP: {what}");
            assert!(
                named[0].contains(&format!("APP {app:?}")) && named[0].contains(why),
                "{what}"
            );
            // The app's own exception is logged once, with the frames of its own code.
            let logged_count = stderr.matches("Exception in worker process").count();
            assert_eq!(logged_count, usize::from(*logged), "{what}");
            let tracebacks = stderr.matches("Traceback (most recent call last)").count();
            assert_eq!(tracebacks, usize::from(*frames), "{what}");
            assert!(
                !stderr.contains("Listening at"),
                "nothing may be bound: {what}"
            );
        }
    }
}

#[test]
fn hup_serves_edited_code_and_refuses_broken_code_while_the_old_workers_serve() {
    let dir = project(&[("app.py", SAY)]);
    let server = start(dir.path(), &["-w", "2", "app"], &[]);
    assert_eq!(say(&server).0, "one");
    let before = server.worker_pids();
    edit(dir.path(), "app.py", &SAY.replace("'one'", "'two'"));
    server.signal(libc::SIGHUP);
    // Both new workers have imported the edited code (and only then is it broken below:
    // a worker that imports broken code exits 4, which halts the master, as gunicorn's).
    wait_until(Duration::from_secs(20), "the edited code after HUP", || {
        server.log().matches("Booting worker").count() == 4
            && server.worker_pids().iter().all(|p| !before.contains(p))
    });
    let serving = server.wait_for_workers(2, Duration::from_secs(10));
    for _ in 0..10 {
        assert_eq!(say(&server).0, "two");
    }
    edit(dir.path(), "app.py", "def application(:\n");
    server.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(20), "the refusal", || {
        server
            .log()
            .contains("Reload refused, the old workers keep serving")
    });
    assert!(server.log().contains("SyntaxError"), "{}", server.log());
    for _ in 0..10 {
        assert_eq!(say(&server).0, "two");
    }
    assert_eq!(server.worker_pids(), serving);
}

const PRELOADED: &str = "
import os, threading
MARKERS = os.environ['RG_MARKERS']
with open(os.path.join(MARKERS, 'imports'), 'a') as f:
    f.write('%d\\n' % os.getpid())
LOCK = threading.Lock()

def _child():
    with open(os.path.join(MARKERS, 'forked-%d' % os.getpid()), 'w') as f:
        f.write('ok')

os.register_at_fork(after_in_child=_child)
VERSION = 'one'

def application(environ, start_response):
    with LOCK:
        body = ('%s %d' % (VERSION, os.getpid())).encode()
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [body]
";

#[test]
fn preload_imports_once_in_the_master_forks_by_the_protocol_and_hup_keeps_the_code() {
    let dir = project(&[("app.py", PRELOADED)]);
    let marks = tempfile::tempdir().expect("tempdir");
    let env = [("RG_MARKERS", marks.path().to_str().expect("utf-8"))];
    let server = start(dir.path(), &["--preload", "-w", "3", "app"], &env);
    let imports = || std::fs::read_to_string(marks.path().join("imports")).expect("imports");
    assert_eq!(
        imports(),
        format!("{}\n", server.pid()),
        "one import, in the master"
    );
    let workers = server.wait_for_workers(3, Duration::from_secs(10));
    // os.register_at_fork callbacks run in each worker: PyOS_AfterFork_Child was called.
    for pid in &workers {
        assert!(marks.path().join(format!("forked-{pid}")).exists(), "{pid}");
    }
    let (version, pid) = say(&server);
    assert_eq!(version, "one");
    assert!(workers.contains(&pid));
    edit(dir.path(), "app.py", &PRELOADED.replace("'one'", "'two'"));
    server.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(20), "new workers after HUP", || {
        let now = server.worker_pids();
        now.len() == 3 && now.iter().all(|p| !workers.contains(p))
    });
    assert_eq!(
        say(&server).0,
        "one",
        "--preload: HUP keeps the loaded code"
    );
    assert_eq!(imports(), format!("{}\n", server.pid()), "still one import");
}

#[test]
fn chdir_applies_before_the_import_and_pythonpath_follows_it() {
    let lib = project(&[("greeting.py", "WORD = 'hello'\n")]);
    let site = project(&[
        ("data/message.txt", "from the data folder"),
        ("vendor/extra.py", "SUFFIX = '!'\n"),
        (
            "webapp.py",
            "import greeting, extra\nMESSAGE = open('data/message.txt').read()\n\
             def application(environ, start_response):\n\
             \x20   body = ('%s %s %s%s' % (greeting.WORD, MESSAGE, open('data/message.txt').read(), extra.SUFFIX)).encode()\n\
             \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
             \x20   return [body]\n",
        ),
    ]);
    let pythonpath = format!("{},vendor", lib.path().display());
    let chdir = site.path().to_str().expect("utf-8");
    let server = start(
        &apps(),
        &[
            "--chdir",
            chdir,
            "--pythonpath",
            &pythonpath,
            "webapp:application",
        ],
        &[],
    );
    let resp = get(server.addr, "/");
    assert_eq!(resp.status, 200, "{}", server.log());
    assert_eq!(
        resp.text(),
        "hello from the data folder from the data folder!"
    );
}

const SYS: &str = "
import json, sys, django

def application(environ, start_response):
    body = json.dumps({'prefix': sys.prefix, 'executable': sys.executable, 'argv': sys.argv,
                       'path0': sys.path[0], 'django': django.get_version()}).encode()
    start_response('200 OK', [('Content-Type', 'application/json')])
    return [body]
";

/// PATH without the tests' virtualenv.
fn path_without_venv() -> String {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<_> = std::env::split_paths(&path)
        .filter(|d| !d.starts_with(venv()))
        .collect();
    std::env::join_paths(dirs)
        .expect("PATH")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn the_active_virtualenv_is_the_apps_python() {
    let dir = project(&[("app.py", SYS)]);
    let venv_str = venv().to_str().expect("utf-8");
    let venv_path = format!("{venv_str}/bin:{}", path_without_venv());
    // VIRTUAL_ENV, then (unset) the venv whose bin/ is first on PATH: both are honoured.
    for env in [
        vec![("VIRTUAL_ENV", venv_str)],
        vec![("VIRTUAL_ENV", ""), ("PATH", venv_path.as_str())],
    ] {
        let server = start(dir.path(), &["-w", "2", "app"], &env);
        let resp = get(server.addr, "/");
        assert_eq!(resp.status, 200, "{env:?}: {}", server.log());
        let sys: serde_json::Value = serde_json::from_slice(&resp.body).expect("json");
        let prefix =
            std::fs::canonicalize(sys["prefix"].as_str().expect("prefix")).expect("prefix");
        assert_eq!(
            prefix,
            std::fs::canonicalize(venv()).expect("venv"),
            "{env:?}"
        );
        let exe = sys["executable"].as_str().expect("executable");
        assert!(exe.starts_with(venv_str), "{exe}");
        assert_eq!(sys["django"], "5.2.19");
        assert_eq!(
            sys["argv"],
            serde_json::json!([
                common::rgunicorn_bin(),
                "-b",
                "127.0.0.1:0",
                "-w",
                "2",
                "app"
            ])
        );
        assert_eq!(
            std::fs::canonicalize(sys["path0"].as_str().expect("path0")).expect("path0"),
            std::fs::canonicalize(dir.path()).expect("dir"),
            "the working directory is first on sys.path"
        );
    }
    // No virtualenv active: the system Python, which has no Django.
    let path = path_without_venv();
    let out = run_to_exit(
        dir.path(),
        &["app"],
        &[("VIRTUAL_ENV", ""), ("PATH", &path)],
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No module named 'django'"));
}

#[test]
fn a_virtualenv_of_another_python_stops_the_start_with_one_line() {
    let fake = project(&[
        (
            "pyvenv.cfg",
            "home = /opt/python3.99/bin\nversion = 3.99.1\n",
        ),
        ("bin/python3", ""),
    ]);
    let dir = project(&[("app.py", SAY)]);
    let fake_venv = fake.path().to_str().expect("utf-8");
    let out = run_to_exit(
        dir.path(),
        &["app"],
        &[("VIRTUAL_ENV", fake_venv)],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains(&format!("the virtualenv {fake_venv} is Python 3.99")),
        "{stderr}"
    );
    assert!(
        lines[0].contains(&format!("runs Python {BUILD_VERSION}")),
        "{stderr}"
    );
    // VIRTUAL_ENV naming something that is not a virtualenv.
    let out = run_to_exit(
        dir.path(),
        &["app"],
        &[("VIRTUAL_ENV", "/tmp")],
        Duration::from_secs(10),
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("VIRTUAL_ENV=/tmp is not a virtualenv"),
        "{stderr}"
    );
}

#[test]
fn print_output_and_atexit_reach_the_log_when_workers_stop() {
    let mut server = start(&apps(), &["-w", "2", "pep3333:raw"], &[("RG_ATEXIT", "1")]);
    for n in 1..=3 {
        assert_eq!(get(server.addr, &format!("/print?n={n}")).status, 200);
    }
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(20)).code(), Some(0));
    // The pipes are drained by the log threads: give them a moment.
    wait_until(Duration::from_secs(5), "the printed lines", || {
        let log = server.log();
        (1..=3).all(|n| log.contains(&format!("printed by request {n}")))
            && log.matches("atexit ran").count() >= 2
    });
}

#[test]
fn reload_restarts_workers_when_a_module_changes() {
    let dir = project(&[("app.py", SAY), ("helper.py", "X = 1\n")]);
    let server = start(dir.path(), &["--reload", "-w", "2", "app"], &[]);
    assert_eq!(say(&server).0, "one");
    std::thread::sleep(Duration::from_millis(1200)); // let the watchers see the first mtimes
    edit(dir.path(), "app.py", &SAY.replace("'one'", "'two'"));
    wait_until(Duration::from_secs(20), "the edited code", || {
        say(&server).0 == "two"
    });
    assert!(
        server.log().contains("Worker reloading:"),
        "{}",
        server.log()
    );
}

/// Keep-alive clients, and clients sending each request on a new connection: enough
/// to keep the workers' 16 app threads busy.
const KEPT: usize = 14;
const FRESH: usize = 2;

fn assert_no_failures(what: &str, tally: &Tally, server: &Server) {
    assert!(
        tally.failures.is_empty(),
        "{what}: {}\n{}",
        tally.summary(),
        server.log()
    );
    assert!(tally.ok > 100, "{what}: {}", tally.summary());
}

/// Send `n` requests for `path` at once, one connection each: the app thread (Python's
/// `threading.get_ident()`) that answered each.
fn answering_threads(server: &Server, n: usize, path: &str) -> Vec<String> {
    let addr = server.addr;
    std::thread::scope(|s| {
        let clients: Vec<_> = (0..n).map(|_| s.spawn(move || get(addr, path))).collect();
        clients
            .into_iter()
            .map(|client| {
                let resp = client.join().expect("client");
                assert_eq!(resp.status, 200);
                // `pid thread total`
                let text = resp.text();
                text.split(' ').nth(1).expect("thread").to_string()
            })
            .collect()
    })
}

#[test]
fn python_app_threads_overlap_their_waits_and_leave_at_once_on_term() {
    let mut server = start(&apps(), &["-w", "1", "--threads", "4", "pep3333:raw"], &[]);
    // Requests that wait (sleep, without the GIL) run side by side on the four threads:
    // one after another they would take 6 s.
    let began = Instant::now();
    let threads = answering_threads(&server, 4, "/work?ms=1500");
    let took = began.elapsed();
    assert!(took < Duration::from_secs(4), "{took:?}\n{}", server.log());
    let distinct: std::collections::HashSet<&String> = threads.iter().collect();
    assert_eq!(distinct.len(), 4, "{threads:?}");
    term_exits_promptly(&mut server);
}

/// TERM: the master and its workers exit 0 well before the graceful timeout (30 s), which
/// a worker whose app threads cannot all leave would wait out.
fn term_exits_promptly(server: &mut Server) {
    let stopping = Instant::now();
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(40));
    let took = stopping.elapsed();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(took < Duration::from_secs(10), "{took:?}\n{}", server.log());
}

#[test]
fn python_threads_under_full_load_survive_hup_max_requests_and_term() {
    let args = ["-w", "2", "--threads", "8", "pep3333:raw"];
    let mut server = start(&apps(), &args, &[]);
    let before = server.worker_pids();
    let load = FullRate::get_kept_and_fresh(Tcp(server.addr), KEPT, FRESH, "/work?ms=1");
    load.run_for(1000, Duration::from_secs(20));
    server.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(20), "new workers", || {
        let now = server.worker_pids();
        now.len() == 2 && now.iter().all(|p| !before.contains(p))
    });
    load.run_for(1000, Duration::from_secs(20));
    assert_no_failures("HUP under load", &load.finish(), &server);

    // TERM while every connection is busy: the workers drain and exit; no deadlock.
    let load = FullRate::get(Tcp(server.addr), KEPT + FRESH, "/work?ms=1");
    load.run_for(1000, Duration::from_secs(20));
    term_exits_promptly(&mut server);
    // Requests after the exit fail (refused): only the answers before it count here.
    let tally = load.finish();
    assert!(tally.ok > 100, "{}", tally.summary());

    let server = start(
        &apps(),
        &[
            "--max-requests",
            "300",
            "--max-requests-jitter",
            "50",
            "-w",
            "2",
            "--threads",
            "8",
            "pep3333:raw",
        ],
        &[],
    );
    let load = FullRate::get_kept_and_fresh(Tcp(server.addr), KEPT, FRESH, "/work");
    // Until both workers have been recycled at least once, however slow the machine is.
    wait_until(Duration::from_secs(30), "two recycles under load", || {
        server.log().matches("Autorestarting worker").count() >= 2
    });
    assert_no_failures("max_requests under load", &load.finish(), &server);
}
