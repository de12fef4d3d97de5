//! Workers retire without failing a request (issue 10): for every reason a worker
//! retires (HUP, TTOU, USR2 then TERM of the old master, max_requests with jitter,
//! max_worker_memory, a request-timeout recycle, a TERM sent to the worker), a full-rate
//! keep-alive load ([`common::load`]) sees zero failures. Run with an inline app (the
//! built-in welcome) and a threaded one (the custom_app example), so both the loop's
//! and the app threads' paths are covered, and with requests queued for the app threads,
//! where the loop paces its turns. Counts are asserted, never speed.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::load::{FullRate, Tally, Tcp, Unix};
use common::*;

/// Connections kept busy at once; wrk's `-c48` over two workers in the issue.
const CLIENTS: usize = 24;
/// Answers to see before and after each event.
const AROUND: u64 = 2000;

#[derive(Clone, Copy)]
enum Served {
    /// The built-in welcome app, run on the event loop.
    Inline,
    /// The custom_app example, run on app threads.
    Threaded,
    /// The custom_app example answering after a millisecond on two app threads per
    /// worker: the clients' requests queue for a thread, so the worker's loop pauses
    /// between its turns instead of waking for each event (`Pool::pace`).
    Queued,
}

impl Served {
    fn start(self, args: &[&str]) -> Server {
        match self {
            Served::Inline => Server::start(args),
            Served::Threaded => Server::start_bin(&custom_app_bin(), args, &[]),
            Served::Queued => {
                let args = [args, &["--threads", "2"]].concat();
                Server::start_bin(&custom_app_bin(), &args, &[])
            }
        }
    }

    fn path(self) -> &'static str {
        match self {
            Served::Inline => WELCOME_PATH,
            Served::Threaded => "/hello",
            Served::Queued => "/slow?ms=1",
        }
    }
}

/// Keep `load` busy around `event` (which returns once the event has run its course)
/// and assert that not one request failed.
fn costs_nothing(server: &Server, load: FullRate, event: impl FnOnce()) {
    load.run_for(AROUND, Duration::from_secs(20));
    event();
    load.run_for(AROUND, Duration::from_secs(20));
    assert_clean(load.finish(), &server.log());
}

fn assert_clean(tally: Tally, log: &str) {
    assert!(
        tally.failures.is_empty(),
        "{}\n--- server log ---\n{log}",
        tally.summary()
    );
    assert!(
        tally.ok >= 2 * AROUND,
        "too few answers: {}\n{log}",
        tally.summary()
    );
}

/// Wait until the master has `n` workers, none of them in `gone`.
fn replaced(server: &Server, n: usize, gone: &[i32]) -> Vec<i32> {
    let mut now = Vec::new();
    wait_until(
        Duration::from_secs(30),
        "the workers to be replaced",
        || {
            now = server.worker_pids();
            now.len() == n
                && now.iter().all(|p| !gone.contains(p) && is_running(*p))
                && gone.iter().all(|p| !is_running(*p))
        },
    );
    now
}

fn hup(served: Served) {
    let server = served.start(&["-w", "2"]);
    let mut workers = server.wait_for_workers(2, Duration::from_secs(10));
    let load = FullRate::get(Tcp(server.addr), CLIENTS, served.path());
    costs_nothing(&server, load, || {
        for _ in 0..3 {
            server.signal(libc::SIGHUP);
            workers = replaced(&server, 2, &workers);
        }
    });
}

#[test]
fn hup_at_full_rate_fails_no_request_inline() {
    hup(Served::Inline);
}

#[test]
fn hup_at_full_rate_fails_no_request_threaded() {
    hup(Served::Threaded);
}

#[test]
fn hup_at_full_rate_fails_no_request_queued_for_app_threads() {
    hup(Served::Queued);
}

/// The front's way in: workers on a unix socket.
#[test]
fn hup_at_full_rate_fails_no_request_over_a_unix_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("workers.sock");
    let bind = format!("unix:{}", path.display());
    let server = Server::start(&["-w", "2", "-b", &bind]);
    let mut workers = server.wait_for_workers(2, Duration::from_secs(10));
    let load = FullRate::get(Unix(path), CLIENTS, WELCOME_PATH);
    costs_nothing(&server, load, || {
        for _ in 0..2 {
            server.signal(libc::SIGHUP);
            workers = replaced(&server, 2, &workers);
        }
    });
}

fn ttou(served: Served) {
    let server = served.start(&["-w", "3"]);
    server.wait_for_workers(3, Duration::from_secs(10));
    let load = FullRate::get(Tcp(server.addr), CLIENTS, served.path());
    costs_nothing(&server, load, || {
        for n in [2, 1] {
            server.signal(libc::SIGTTOU);
            server.wait_for_workers(n, Duration::from_secs(30));
        }
    });
}

#[test]
fn ttou_at_full_rate_fails_no_request_inline() {
    ttou(Served::Inline);
}

#[test]
fn ttou_at_full_rate_fails_no_request_threaded() {
    ttou(Served::Threaded);
}

fn term_one_worker(served: Served) {
    let server = served.start(&["-w", "2"]);
    let workers = server.wait_for_workers(2, Duration::from_secs(10));
    let load = FullRate::get(Tcp(server.addr), CLIENTS, served.path());
    costs_nothing(&server, load, || {
        // SAFETY: kill(2) on a worker of the master this test started.
        unsafe {
            libc::kill(workers[0], libc::SIGTERM);
        }
        replaced(&server, 2, &workers[..1]);
    });
}

#[test]
fn term_of_a_worker_at_full_rate_fails_no_request_inline() {
    term_one_worker(Served::Inline);
}

#[test]
fn term_of_a_worker_at_full_rate_fails_no_request_threaded() {
    term_one_worker(Served::Threaded);
}

#[test]
fn term_of_a_worker_at_full_rate_fails_no_request_queued_for_app_threads() {
    term_one_worker(Served::Queued);
}

fn max_requests(served: Served) {
    let server = served.start(&[
        "-w",
        "2",
        "--max-requests",
        "300",
        "--max-requests-jitter",
        "100",
    ]);
    server.wait_for_workers(2, Duration::from_secs(10));
    let load = FullRate::get(Tcp(server.addr), CLIENTS, served.path());
    costs_nothing(&server, load, || {
        wait_until(Duration::from_secs(30), "four recycles", || {
            server.log().matches("Autorestarting worker").count() >= 4
        });
    });
}

#[test]
fn max_requests_at_full_rate_fails_no_request_inline() {
    max_requests(Served::Inline);
}

#[test]
fn max_requests_at_full_rate_fails_no_request_threaded() {
    max_requests(Served::Threaded);
}

#[test]
fn max_requests_at_full_rate_fails_no_request_queued_for_app_threads() {
    max_requests(Served::Queued);
}

#[test]
fn max_worker_memory_at_full_rate_fails_no_request() {
    let server = Served::Threaded.start(&["-w", "1", "--max-worker-memory", "64M"]);
    let workers = server.wait_for_workers(1, Duration::from_secs(10));
    let load = FullRate::get(Tcp(server.addr), CLIENTS, "/hello");
    costs_nothing(&server, load, || {
        assert_eq!(get(server.addr, "/alloc?mb=100").status, 200);
        replaced(&server, 1, &workers);
        assert!(server.log().contains("over max_worker_memory"));
    });
}

/// A request stuck in the app gets its 504 and the worker is recycled; the other
/// clients of that worker lose nothing.
#[test]
fn request_timeout_recycle_fails_no_other_request() {
    let server = Served::Threaded.start(&["-w", "1", "--request-timeout", "1"]);
    let workers = server.wait_for_workers(1, Duration::from_secs(10));
    let load = FullRate::get(Tcp(server.addr), CLIENTS, "/hello");
    costs_nothing(&server, load, || {
        assert_eq!(get(server.addr, "/spin").status, 504);
        replaced(&server, 1, &workers);
    });
}

/// USR2 starts a new master beside the old; TERM to the old one retires its workers
/// while the new master's serve the same sockets.
#[test]
fn usr2_then_term_of_the_old_master_fails_no_request() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("rg.pid");
    let pid_arg = pidfile.to_str().expect("utf-8 path");
    let mut server = Server::start(&["-w", "2", "--pid", pid_arg]);
    let old_workers = server.wait_for_workers(2, Duration::from_secs(10));
    let load = FullRate::get(Tcp(server.addr), CLIENTS, WELCOME_PATH);
    load.run_for(AROUND, Duration::from_secs(20));
    server.signal(libc::SIGUSR2);
    let second = dir.path().join("rg.pid.2");
    wait_until(Duration::from_secs(15), "the new master's pidfile", || {
        std::fs::read_to_string(&second).is_ok_and(|t| t.trim().parse::<i32>().is_ok())
    });
    let new_master: i32 = std::fs::read_to_string(&second)
        .expect("pidfile.2")
        .trim()
        .parse()
        .expect("pid");
    wait_until(Duration::from_secs(15), "the new workers", || {
        server.log().matches("Booting worker with pid").count() >= 4
    });
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    assert!(old_workers.iter().all(|p| !is_running(*p)));
    load.run_for(AROUND, Duration::from_secs(20));
    let tally = load.finish();
    // SAFETY: kill(2) on the master this test's server started by USR2.
    unsafe {
        libc::kill(new_master, libc::SIGTERM);
    }
    wait_until(Duration::from_secs(30), "the new master to stop", || {
        !is_running(new_master)
    });
    assert_clean(tally, &server.log());
}

/// A retiring worker does not close an idle keep-alive connection under its client: the
/// next request, sent a moment after the stop began, is answered with
/// `Connection: close`; a connection that stays silent is closed after keep-alive,
/// with a FIN (end of file), never a reset.
#[test]
fn a_retiring_worker_answers_an_idle_connection_then_closes_silent_ones_cleanly() {
    let server = Server::start(&["-w", "1", "--keep-alive", "2"]);
    let workers = server.wait_for_workers(1, Duration::from_secs(10));
    let request = format!("GET {WELCOME_PATH} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut talker = Reader::new(server.connect());
    let mut silent = Reader::new(server.connect());
    for conn in [&mut talker, &mut silent] {
        conn.get_mut().write_all(request.as_bytes()).expect("send");
        let resp = conn.response(false).expect("answer");
        assert_eq!(resp.header("connection"), Some("keep-alive"));
    }
    // SAFETY: kill(2) on the worker of the master this test started.
    unsafe {
        libc::kill(workers[0], libc::SIGTERM);
    }
    std::thread::sleep(Duration::from_millis(500));
    talker
        .get_mut()
        .write_all(request.as_bytes())
        .expect("send after the stop began");
    let resp = talker
        .response(false)
        .expect("answered by the retiring worker");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("connection"), Some("close"));
    assert!(talker.at_eof(), "closed after its last answer");
    // The silent one: end of file (a reset would be an error) within keep-alive + a tick.
    silent
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    let started = std::time::Instant::now();
    match silent.get_mut().read(&mut byte) {
        Ok(0) => {}
        other => panic!("expected a clean close, got {other:?}\n{}", server.log()),
    }
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "waited for keep-alive"
    );
}

/// Out of descriptors (a worker's `ulimit -n` lowered with prlimit), the worker pauses
/// accepting with one log line, stays idle, and serves again by itself once
/// descriptors are free, with one line counting the failed attempts.
#[test]
fn out_of_descriptors_the_worker_pauses_accepting_and_resumes_by_itself() {
    let server = Server::start(&["-w", "1"]);
    let worker = server.wait_for_workers(1, Duration::from_secs(10))[0];
    let limit = libc::rlimit {
        rlim_cur: 24,
        rlim_max: 24,
    };
    // SAFETY: prlimit(2) on the worker of the master this test started; `limit` is a
    // valid rlimit and no old value is asked for.
    let rc = unsafe { libc::prlimit(worker, libc::RLIMIT_NOFILE, &limit, std::ptr::null_mut()) };
    assert_eq!(rc, 0, "prlimit: {}", std::io::Error::last_os_error());
    let hogs: Vec<_> = (0..40).map(|_| server.connect()).collect();
    wait_until(Duration::from_secs(5), "the worker to run out", || {
        server.log().contains("cannot accept connections")
    });
    let before = cpu_ticks(worker);
    std::thread::sleep(Duration::from_secs(2));
    let spent = cpu_ticks(worker) - before;
    // A loop retrying accept without pause burns the whole 2 s (200 ticks).
    assert!(spent <= 20, "the worker used {spent} ticks while starved");
    drop(hogs);
    let resp = get(server.addr, WELCOME_PATH);
    assert_eq!(resp.status, 200);
    wait_until(Duration::from_secs(5), "the end of the episode", || {
        server.log().contains("accepting connections again")
    });
    let log = server.log();
    assert_eq!(log.matches("cannot accept connections").count(), 1, "{log}");
    assert_eq!(
        log.matches("accepting connections again").count(),
        1,
        "{log}"
    );
}
