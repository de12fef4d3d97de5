//! The master's contract (SIGNALS.md), with the real binaries, real signals and real
//! sockets on loopback: reload and upgrade under load, liveness, recycling, boot
//! failures, and every signal row. The load is [`common::load`]'s, at full rate on
//! keep-alive and on new connections; its counts are asserted, never its speed.

mod common;
mod front_support;
mod log_files;
mod process_tree;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::load::{FullRate, Tally, Tcp};
use common::*;

/// Keep-alive clients, and clients sending each request on a new connection.
const KEPT: usize = 2;
const FRESH: usize = 2;
/// Answers to see before and after an event.
const AROUND: u64 = 500;

fn pid_alive(pid: i32) -> bool {
    is_running(pid)
}

/// `GET WELCOME_PATH` at full rate from [`KEPT`] and [`FRESH`] clients, once
/// [`AROUND`] answers have come.
fn full_load(server: &Server) -> FullRate {
    let load = FullRate::get_kept_and_fresh(Tcp(server.addr), KEPT, FRESH, WELCOME_PATH);
    load.run_for(AROUND, Duration::from_secs(20));
    load
}

/// Not one failed request, and at least `least` answered.
fn assert_clean(tally: &Tally, least: u64, log: &str) {
    eprintln!("load: {}", tally.summary());
    assert!(tally.failures.is_empty(), "{}\n{log}", tally.summary());
    assert!(
        tally.ok >= least,
        "too few answers: {}\n{log}",
        tally.summary()
    );
}

/// A directory only its owner may enter (mode 0700), inside `parent`.
fn root_only_dir(parent: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let dir = parent.join("private");
    std::fs::create_dir(&dir).expect("private dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    dir
}

/// Whether process `pid` has `path` open (its descriptors, from /proc).
fn holds_open(pid: i32, path: &Path) -> bool {
    let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
        fds.filter_map(Result::ok)
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target == path))
    })
}

fn write_config(path: &Path, text: &str) {
    let mut f = std::fs::File::create(path).expect("config file");
    f.write_all(text.as_bytes()).expect("write config");
}

#[test]
fn hup_under_load_replaces_every_worker_without_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("rg.toml");
    write_config(&conf, "workers = 2\n");
    let server = Server::start(&["-c", conf.to_str().unwrap(), "-w", "2"]);
    let old = server.wait_for_workers(2, Duration::from_secs(10));
    let load = full_load(&server);
    write_config(&conf, "workers = 2\nmax_requests = 100000\n");
    server.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(15), "the old workers to exit", || {
        old.iter().all(|p| !pid_alive(*p))
    });
    let new = server.wait_for_workers(2, Duration::from_secs(10));
    load.run_for(AROUND, Duration::from_secs(20));
    let tally = load.finish();
    let log = server.log();
    assert_clean(&tally, 2 * AROUND, &log);
    assert!(new.iter().all(|p| !old.contains(p)), "{old:?} -> {new:?}");
    assert!(log.contains("Handling signal: hup"), "{log}");
    assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
}

#[test]
fn hup_applies_the_new_config_and_keeps_the_unchanged_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("rg.toml");
    write_config(&conf, "workers = 1\n");
    let server = Server::start(&["-c", conf.to_str().unwrap()]);
    let before = server.worker_pids();
    write_config(&conf, "workers = 3\n");
    server.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(10), "the old worker to exit", || {
        before.iter().all(|p| !pid_alive(*p))
    });
    let after = server.wait_for_workers(3, Duration::from_secs(10));
    assert!(after.iter().all(|p| !before.contains(p)));
    // Same bind, same socket: the port (chosen by the kernel at start) still answers.
    assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
    let log = server.log();
    assert_eq!(log.matches("Listening at:").count(), 1, "{log}");
}

#[test]
fn hup_with_a_broken_config_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("rg.toml");
    write_config(&conf, "workers = 2\n");
    let server = Server::start(&["-c", conf.to_str().unwrap(), "-w", "2"]);
    let before = server.wait_for_workers(2, Duration::from_secs(10));
    write_config(&conf, "workers = [not toml\n");
    server.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(10), "the refusal", || {
        server.log().contains("Reload refused")
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(server.worker_pids(), before);
    assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
    let log = server.log();
    assert_eq!(log.matches("Reload refused").count(), 1, "{log}");
}

#[test]
fn sigkill_of_a_worker_mid_request_is_replaced() {
    let server = Server::start_bin(&custom_app_bin(), &["-w", "2"], &[]);
    let before = server.wait_for_workers(2, Duration::from_secs(10));
    let addr = server.addr;
    let slow = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let _ = s.write_all(b"GET /slow?ms=3000 HTTP/1.1\r\nHost: x\r\n\r\n");
        Reader::new(s).response(false).map(|r| r.status)
    });
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on a worker this test started.
    unsafe {
        libc::kill(before[0], libc::SIGKILL);
    }
    let killed_at = Instant::now();
    wait_until(Duration::from_secs(3), "a replacement worker", || {
        let now = server.worker_pids();
        now.len() == 2 && !now.contains(&before[0])
    });
    assert!(killed_at.elapsed() < Duration::from_secs(2));
    // The slow request either finished on the other worker or failed with its worker.
    let _ = slow.join();
    for _ in 0..20 {
        assert_eq!(get(server.addr, "/hello").status, 200);
    }
    let log = server.log();
    assert!(
        log.contains("was sent SIGKILL! Perhaps out of memory?"),
        "{log}"
    );
}

#[test]
fn stuck_worker_is_killed_at_timeout() {
    let server = Server::start(&["-w", "1", "--timeout", "2"]);
    let before = server.wait_for_workers(1, Duration::from_secs(10));
    // A stopped process beats no more: the same as a worker stuck in a loop.
    // SAFETY: kill(2) on a worker this test started.
    unsafe {
        libc::kill(before[0], libc::SIGSTOP);
    }
    let stopped = Instant::now();
    wait_until(
        Duration::from_secs(10),
        "the stuck worker's replacement",
        || {
            let now = server.worker_pids();
            now.len() == 1 && now[0] != before[0]
        },
    );
    let took = stopped.elapsed();
    assert!(took >= Duration::from_secs(2), "killed too early: {took:?}");
    let log = server.log();
    assert!(log.contains("WORKER TIMEOUT"), "{log}");
    assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
}

#[test]
fn request_timeout_answers_504_and_recycles() {
    let server = Server::start_bin(
        &custom_app_bin(),
        &["-w", "1", "--request-timeout", "1"],
        &[],
    );
    let before = server.wait_for_workers(1, Duration::from_secs(10));
    let started = Instant::now();
    let resp = get(server.addr, "/spin");
    assert_eq!(resp.status, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    wait_until(
        Duration::from_secs(10),
        "the stuck worker to be replaced",
        || {
            let now = server.worker_pids();
            now.len() == 1 && now[0] != before[0]
        },
    );
    assert_eq!(get(server.addr, "/hello").status, 200);
}

/// `--request-timeout` counts the app's time, from when a thread takes the request, not
/// the time it waited for one: with one thread, three requests of 0.7 s each take 2.1 s
/// in all, and every one is answered by the same worker. (Counted from the dispatch, the
/// third had waited 1.4 s before it started: a 504, and the worker recycled.)
#[test]
fn request_timeout_counts_from_when_a_thread_takes_the_request() {
    let server = Server::start_bin(
        &custom_app_bin(),
        &["-w", "1", "--threads", "1", "--request-timeout", "1"],
        &[],
    );
    let before = server.wait_for_workers(1, Duration::from_secs(10));
    let addr = server.addr;
    let clients: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || get(addr, "/slow?ms=700")))
        .collect();
    for client in clients {
        let resp = client.join().expect("client thread");
        assert_eq!(resp.status, 200, "{}", server.log());
        assert_eq!(resp.body, b"slow done\n");
    }
    assert_eq!(server.worker_pids(), before, "{}", server.log());
    assert!(
        !server.log().contains("request timeout"),
        "{}",
        server.log()
    );
}

/// A thread stuck past `--request-timeout` is given up on (a 504) and its worker
/// retires. The requests already queued behind it, on the worker's only thread, are
/// answered by a thread started in its place, not closed unanswered when the graceful
/// timeout ends (the stuck request never ends).
#[test]
fn requests_queued_behind_a_stuck_thread_are_answered() {
    let server = Server::start_bin(
        &custom_app_bin(),
        &[
            "-w",
            "1",
            "--threads",
            "1",
            "--request-timeout",
            "1",
            "--graceful-timeout",
            "3",
        ],
        &[],
    );
    let before = server.wait_for_workers(1, Duration::from_secs(10));
    let addr = server.addr;
    let stuck = std::thread::spawn(move || get(addr, "/spin"));
    // Let the spin take the only thread first (if it does not, the others are answered
    // before it and the test proves less, but still passes).
    std::thread::sleep(Duration::from_millis(300));
    let queued: Vec<_> = (0..3)
        .map(|_| std::thread::spawn(move || get(addr, "/hello")))
        .collect();
    for client in queued {
        let resp = client.join().expect("a queued request got no answer");
        assert_eq!(resp.status, 200, "{}", server.log());
        assert_eq!(resp.text(), format!("hello from pid {}\n", before[0]));
    }
    assert_eq!(stuck.join().expect("the stuck request").status, 504);
    let log = server.log();
    assert!(
        log.contains("started 1 app thread(s) in place of stuck ones"),
        "{log}"
    );
    wait_until(Duration::from_secs(10), "the worker's replacement", || {
        let now = server.worker_pids();
        now.len() == 1 && now[0] != before[0]
    });
}

#[test]
fn max_requests_recycles_under_load_without_failures() {
    let server = Server::start(&[
        "-w",
        "2",
        "--max-requests",
        "40",
        "--max-requests-jitter",
        "10",
    ]);
    let before = server.wait_for_workers(2, Duration::from_secs(10));
    let load = FullRate::get_kept_and_fresh(Tcp(server.addr), KEPT, FRESH, WELCOME_PATH);
    wait_until(Duration::from_secs(20), "a few recycles", || {
        server.log().matches("Autorestarting worker").count() >= 4
    });
    let tally = load.finish();
    let log = server.log();
    assert_clean(&tally, 1, &log);
    let after = server.wait_for_workers(2, Duration::from_secs(10));
    assert!(after.iter().all(|p| !before.contains(p)), "{log}");
}

#[test]
fn max_worker_memory_recycles() {
    let server = Server::start_bin(
        &custom_app_bin(),
        &["-w", "1", "--max-worker-memory", "64M"],
        &[],
    );
    let before = server.wait_for_workers(1, Duration::from_secs(10));
    assert_eq!(get(server.addr, "/alloc?mb=100").status, 200);
    wait_until(
        Duration::from_secs(10),
        "the big worker's replacement",
        || {
            let now = server.worker_pids();
            now.len() == 1 && now[0] != before[0]
        },
    );
    assert!(server.log().contains("over max_worker_memory"));
    assert_eq!(get(server.addr, "/hello").status, 200);
}

/// `boot_retries`: a worker that cannot boot because of something transient (here its
/// access log's directory is closed to its user until the test opens it) is retried
/// after a backoff instead of halting the master, and the count starts over once one
/// boots.
#[test]
fn boot_retries_outlast_a_transient_boot_failure() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    use std::io::{BufRead, BufReader};
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let logs = root_only_dir(dir.path());
    let access = logs.join("access.log");
    let mut child = Command::new(rgunicorn_bin())
        .args(["-w", "2", "-b", "127.0.0.1:0", "--user", "65534"])
        .args(["--boot-retries", "3"])
        .args(["--access-logfile", access.to_str().unwrap()])
        .env_remove("RGUNICORN_CMD_ARGS")
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rgunicorn");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let mut log = String::new();
    let mut read_until = |what: &str| -> String {
        for line in lines.by_ref().map_while(Result::ok) {
            log.push_str(&line);
            log.push('\n');
            if line.contains(what) {
                return line;
            }
        }
        panic!("no line with {what:?}:\n{log}");
    };
    let listening = read_until("Listening at: http://");
    let retry = read_until("Retry 1 of 3 in 1 s");
    assert!(retry.contains("Worker failed to boot."), "{retry}");
    // The cause goes away during the backoff.
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    read_until("Booting worker with pid");
    read_until("the count of boot failures starts over");
    let addr: std::net::SocketAddr = listening
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .expect("address");
    assert_eq!(get(addr, WELCOME_PATH).status, 200);
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn boot_retries_run_out_then_the_master_halts() {
    let dir = tempfile::tempdir().expect("tempdir");
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // As in worker_that_cannot_boot_halts_the_master_with_3: a failure that stays.
    let access = root_only_dir(dir.path()).join("access.log");
    let user = if root { "65534" } else { "0" };
    let started = Instant::now();
    let out = Command::new(rgunicorn_bin())
        .args(["-w", "2", "-b", "127.0.0.1:0", "--user", user])
        .args(["--boot-retries", "2"])
        .args(["--access-logfile", access.to_str().unwrap()])
        .env_remove("RGUNICORN_CMD_ARGS")
        .stdin(Stdio::null())
        .output()
        .expect("run rgunicorn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    // Two waits: 1 s, then 2 s.
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(3), "{took:?}\n{stderr}");
    assert!(took < Duration::from_secs(15), "{took:?}\n{stderr}");
    assert!(stderr.contains("Retry 2 of 2 in 2 s"), "{stderr}");
    assert!(
        stderr.contains("Worker failed to boot. (after 2 retries)"),
        "{stderr}"
    );
}

#[test]
fn app_that_fails_to_load_exits_4_once() {
    let started = Instant::now();
    let out = Command::new(rgunicorn_bin())
        .args(["-w", "3", "-b", "127.0.0.1:0", "no_such_module:app"])
        .env_remove("RGUNICORN_CMD_ARGS")
        .stdin(Stdio::null())
        .output()
        .expect("run rgunicorn");
    assert_eq!(out.status.code(), Some(4));
    assert!(started.elapsed() < Duration::from_secs(10));
    let stderr = String::from_utf8_lossy(&out.stderr);
    // One line names the APP (with Python support, after the import's own error lines).
    let naming: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("no_such_module:app"))
        .collect();
    assert_eq!(naming.len(), 1, "one message expected:\n{stderr}");
}

#[test]
fn ttin_ttou_change_the_worker_count() {
    let server = Server::start(&["-w", "2"]);
    server.wait_for_workers(2, Duration::from_secs(10));
    server.signal(libc::SIGTTIN);
    server.wait_for_workers(3, Duration::from_secs(10));
    server.signal(libc::SIGTTOU);
    server.wait_for_workers(2, Duration::from_secs(10));
    server.signal(libc::SIGTTOU);
    server.wait_for_workers(1, Duration::from_secs(10));
    // Never below one.
    server.signal(libc::SIGTTOU);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(server.worker_pids().len(), 1);
    assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
}

#[test]
fn usr1_reopens_a_rotated_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let access = dir.path().join("access.log");
    let server = Server::start(&["--access-logfile", access.to_str().unwrap()]);
    assert_eq!(
        get(server.addr, "/api/v1/welcome/get_welcome_data?first").status,
        200
    );
    wait_until(Duration::from_secs(5), "the first access line", || {
        std::fs::read_to_string(&access).is_ok_and(|t| t.contains("first"))
    });
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&access, &rotated).expect("rotate");
    server.signal(libc::SIGUSR1);
    // The master creates the file before it tells the workers: wait for the worker's
    // reopen itself, or the next line may still go to the rotated file.
    let worker = server.worker_pids()[0];
    wait_until(
        Duration::from_secs(5),
        "the worker to reopen its log",
        || access.exists() && !holds_open(worker, &rotated),
    );
    assert_eq!(
        get(server.addr, "/api/v1/welcome/get_welcome_data?second").status,
        200
    );
    wait_until(Duration::from_secs(5), "the second access line", || {
        std::fs::read_to_string(&access).is_ok_and(|t| t.contains("second"))
    });
    let old = std::fs::read_to_string(&rotated).expect("rotated log");
    assert!(!old.contains("second"));
}

#[test]
fn term_lets_a_slow_request_finish_then_exits_0() {
    let mut server = Server::start_bin(&custom_app_bin(), &["-w", "1"], &[]);
    let addr = server.addr;
    let slow = std::thread::spawn(move || get(addr, "/slow?ms=1500"));
    std::thread::sleep(Duration::from_millis(400));
    server.signal(libc::SIGTERM);
    let resp = slow.join().expect("slow request");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "slow done\n");
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{}", server.log());
}

#[test]
fn int_stops_fast() {
    let mut server = Server::start_bin(&custom_app_bin(), &["-w", "1"], &[]);
    let addr = server.addr;
    let slow = std::thread::spawn(move || {
        let mut s = std::net::TcpStream::connect(addr).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let _ = s.write_all(b"GET /slow?ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n");
        Reader::new(s).response(false).is_ok()
    });
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    server.signal(libc::SIGINT);
    let status = server.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0));
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(
        !slow.join().expect("client"),
        "the slow request cannot have finished"
    );
}

#[test]
fn usr2_upgrades_without_failures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("rg.pid");
    let mut server = Server::start(&["-w", "2", "--pid", pidfile.to_str().unwrap()]);
    let old_workers = server.wait_for_workers(2, Duration::from_secs(10));
    let load = full_load(&server);
    server.signal(libc::SIGUSR2);
    let second = dir.path().join("rg.pid.2");
    wait_until(Duration::from_secs(15), "the new master's pidfile", || {
        second.exists()
    });
    let new_master: i32 = std::fs::read_to_string(&second)
        .expect("pidfile.2")
        .trim()
        .parse()
        .expect("pid");
    // Four workers booted in all: two old, two new.
    wait_until(Duration::from_secs(15), "the new workers", || {
        server.log().matches("Booting worker with pid").count() >= 4
    });
    load.run_for(AROUND, Duration::from_secs(20));
    server.signal(libc::SIGWINCH);
    wait_until(Duration::from_secs(15), "the old workers to stop", || {
        old_workers.iter().all(|p| !pid_alive(*p))
    });
    server.signal(libc::SIGTERM);
    let status = server.wait_exit(Duration::from_secs(15));
    assert_eq!(status.code(), Some(0));
    wait_until(
        Duration::from_secs(10),
        "the new master to own PIDFILE",
        || std::fs::read_to_string(&pidfile).is_ok_and(|t| t.trim() == new_master.to_string()),
    );
    load.run_for(AROUND, Duration::from_secs(20));
    let tally = load.finish();
    let log = server.log();
    assert!(pid_alive(new_master), "{log}");
    assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
    // SAFETY: kill(2) on the master this test's server started.
    unsafe {
        libc::kill(new_master, libc::SIGTERM);
    }
    wait_until(Duration::from_secs(15), "the new master to stop", || {
        !pid_alive(new_master)
    });
    assert_clean(&tally, 3 * AROUND, &log);
}

fn status_field(pid: i32, key: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key).map(|v| v.trim().to_string()))
        .unwrap_or_default()
}

#[test]
fn workers_drop_privileges_and_own_the_unix_socket() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("rg.sock");
    let unix = format!("unix:{}", sock.display());
    let server = Server::start(&[
        "-b",
        "127.0.0.1:0",
        "-b",
        &unix,
        "--user",
        "65534",
        "--group",
        "65534",
    ]);
    let workers = server.wait_for_workers(1, Duration::from_secs(10));
    let uids = status_field(workers[0], "Uid:");
    assert!(uids.split_whitespace().all(|u| u == "65534"), "{uids}");
    let gids = status_field(workers[0], "Gid:");
    assert!(gids.split_whitespace().all(|g| g == "65534"), "{gids}");
    assert!(status_field(server.pid(), "Uid:").starts_with('0'));
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(&sock).expect("socket file");
    assert_eq!((meta.uid(), meta.gid()), (65534, 65534));
    assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
}

/// Regression: an access log file the workers' user cannot write made every worker exit
/// 3 (and the master halt). The master creates it and hands it to that user, at start
/// and again on USR1 after a rotation.
#[test]
fn a_root_owned_access_log_is_given_to_the_workers_user() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to switch users");
        return;
    }
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let access = dir.path().join("access.log");
    std::fs::write(&access, "").expect("root's own access log");
    std::fs::set_permissions(&access, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let server = Server::start(&[
        "--access-logfile",
        access.to_str().unwrap(),
        "--user",
        "65534",
        "--group",
        "65534",
    ]);
    let owner = |path: &Path| {
        let meta = std::fs::metadata(path).expect("log file");
        (meta.uid(), meta.gid())
    };
    assert_eq!(owner(&access), (65534, 65534));
    assert_eq!(
        get(server.addr, &format!("{WELCOME_PATH}?first")).status,
        200
    );
    wait_until(Duration::from_secs(5), "the first access line", || {
        std::fs::read_to_string(&access).is_ok_and(|t| t.contains("first"))
    });
    // logrotate moves it; the directory is root's, so only the master can create it.
    std::fs::rename(&access, dir.path().join("access.log.1")).expect("rotate");
    server.signal(libc::SIGUSR1);
    // Created, then chowned, then reopened by the worker: wait for all three.
    let rotated = dir.path().join("access.log.1");
    let worker = server.worker_pids()[0];
    wait_until(Duration::from_secs(5), "the reopened log, chowned", || {
        access.exists() && owner(&access) == (65534, 65534) && !holds_open(worker, &rotated)
    });
    assert_eq!(
        get(server.addr, &format!("{WELCOME_PATH}?second")).status,
        200
    );
    wait_until(Duration::from_secs(5), "the second access line", || {
        std::fs::read_to_string(&access).is_ok_and(|t| t.contains("second"))
    });
    assert!(!server.log().contains("cannot reopen"), "{}", server.log());
}

#[test]
fn processes_are_titled() {
    let server = Server::start(&["-w", "1", "-n", "site"]);
    let workers = server.wait_for_workers(1, Duration::from_secs(10));
    let cmdline = |pid: i32| {
        String::from_utf8_lossy(&std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default())
            .into_owned()
    };
    // The test binary's path is long enough to hold either title.
    assert!(
        cmdline(server.pid()).starts_with("rgunicorn: master [site]"),
        "{}",
        cmdline(server.pid())
    );
    assert!(cmdline(workers[0]).starts_with("rgunicorn: worker [site]"));
}

#[test]
fn the_master_runs_restarts_and_stops_the_front() {
    use front_support::MasterFront;
    let config = MasterFront::write("");
    let mut args = config.args();
    args.extend(["-b".to_string(), "127.0.0.1:0".to_string()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut server = Server::start(&args);
    wait_until(Duration::from_secs(10), "the front", || {
        MasterFront::pid(&server.log()).is_some()
    });
    let log = server.log();
    let addr = MasterFront::address(&log).expect("front address");
    let first = MasterFront::pid(&log).expect("front pid");
    let client = config.client.clone();
    let through_front = || {
        front_support::get(&client, addr, WELCOME_PATH)
            .map(|r| r.status)
            .unwrap_or(0)
    };
    wait_until(
        Duration::from_secs(10),
        "an answer through the front",
        || through_front() == 200,
    );
    // SAFETY: kill(2) on the front this test's master started.
    unsafe {
        libc::kill(first, libc::SIGKILL);
    }
    wait_until(Duration::from_secs(10), "the front to be restarted", || {
        MasterFront::pid(&server.log()).is_some_and(|p| p != first)
    });
    wait_until(
        Duration::from_secs(10),
        "an answer through the new front",
        || through_front() == 200,
    );
    let second = MasterFront::pid(&server.log()).expect("front pid");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait_exit(Duration::from_secs(20)).code(), Some(0));
    assert!(!pid_alive(second), "the front outlived the master");
}

/// Each thread of `pid`: (thread id, name, scheduling policy), from /proc.
fn thread_policies(pid: i32) -> Vec<(i32, String, u32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc task list");
    tasks
        .map(|task| {
            let path = task.expect("task entry").path();
            let tid = path.file_name().and_then(|n| n.to_str()).expect("tid");
            let stat = std::fs::read_to_string(path.join("stat")).expect("task stat");
            let name = std::fs::read_to_string(path.join("comm")).expect("task comm");
            let policy = stat_field(&stat, 41).expect("policy field");
            (
                tid.parse().expect("tid"),
                name.trim().to_string(),
                policy.parse().expect("policy"),
            )
        })
        .collect()
}

/// Every event loop runs under SCHED_BATCH (rgunicorn_process::sched): the worker's loop
/// thread and the front's loops. The master, the front's main thread and the app threads
/// keep the normal policy.
#[test]
fn the_event_loops_run_under_sched_batch_and_nothing_else_does() {
    use front_support::MasterFront;
    const NORMAL: u32 = libc::SCHED_OTHER as u32;
    const BATCH: u32 = libc::SCHED_BATCH as u32;
    let config = MasterFront::write("");
    let args = config.args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = Server::start(&args);
    wait_until(Duration::from_secs(10), "the front", || {
        MasterFront::pid(&server.log()).is_some()
    });
    let front = MasterFront::pid(&server.log()).expect("front pid");
    // The master's children: its one worker and the front.
    let workers: Vec<i32> = server
        .wait_for_workers(2, Duration::from_secs(10))
        .into_iter()
        .filter(|pid| *pid != front)
        .collect();
    // A loop sets its policy as it starts, so each process is given time to settle: `pid`'s
    // main thread under `loop_policy`, its `threads - 1` others under `others`.
    let settles = |pid: i32, threads: usize, loop_policy: u32, others: u32| {
        let what = format!("{threads} threads of {pid}: main {loop_policy}, others {others}");
        wait_until(Duration::from_secs(10), &what, || {
            let found = thread_policies(pid);
            found.len() == threads
                && found.iter().all(|(tid, _, policy)| {
                    *policy == if *tid == pid { loop_policy } else { others }
                })
        });
    };
    assert!(thread_policies(server.pid()).iter().all(|t| t.2 == NORMAL));
    // The built-in app is inline: a worker is its loop thread alone.
    for worker in &workers {
        settles(*worker, 1, BATCH, BATCH);
    }
    // The front's main thread and its one loop (`threads = 1`).
    settles(front, 2, NORMAL, BATCH);

    // A threaded app: the worker's main thread is the loop, the two others run the app.
    let threaded = Server::start_bin(&custom_app_bin(), &["-w", "1", "--threads", "2"], &[]);
    let worker = threaded.wait_for_workers(1, Duration::from_secs(10))[0];
    settles(worker, 3, BATCH, NORMAL);
    let names: Vec<String> = thread_policies(worker).into_iter().map(|t| t.1).collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("app-")).count(),
        2,
        "{names:?}"
    );
}

#[test]
fn workers_exit_when_the_master_dies() {
    let server = Server::start(&["-w", "2"]);
    let workers = server.wait_for_workers(2, Duration::from_secs(10));
    server.signal(libc::SIGKILL);
    wait_until(
        Duration::from_secs(5),
        "the orphaned workers to exit",
        || workers.iter().all(|p| !pid_alive(*p)),
    );
}

#[test]
fn worker_that_cannot_boot_halts_the_master_with_3() {
    let dir = tempfile::tempdir().expect("tempdir");
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    // As root: workers become nobody and cannot reach an access log in a root-only
    // directory (the master creates it and gives it to them, but cannot open the
    // way). Otherwise: switching to root fails. Either way the worker exits 3.
    let access = root_only_dir(dir.path()).join("access.log");
    let user = if root { "65534" } else { "0" };
    let started = Instant::now();
    let out = Command::new(rgunicorn_bin())
        .args(["-w", "2", "-b", "127.0.0.1:0", "--user", user])
        .args(["--access-logfile", access.to_str().unwrap()])
        .env_remove("RGUNICORN_CMD_ARGS")
        .stdin(Stdio::null())
        .output()
        .expect("run rgunicorn");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(stderr.contains("Worker failed to boot."), "{stderr}");
}

/// systemd's readiness protocol: with NOTIFY_SOCKET set, the master says READY=1 once
/// its workers are forked, RELOADING=1 then READY=1 on HUP, STOPPING=1 on TERM.
#[test]
fn sd_notify_tells_systemd_ready_reloading_stopping() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let next = || {
        let mut buf = [0u8; 256];
        let n = sock.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let mut server = Server::start_bin(
        &rgunicorn_bin(),
        &[],
        &[("NOTIFY_SOCKET", path.to_str().expect("utf-8 path"))],
    );
    assert_eq!(next(), "READY=1");
    server.signal(libc::SIGHUP);
    assert_eq!(next(), "RELOADING=1");
    assert_eq!(next(), "READY=1");
    server.signal(libc::SIGTERM);
    assert_eq!(next(), "STOPPING=1");
    assert!(server.wait_exit(Duration::from_secs(15)).success());
}

/// As PID 1 of its own PID namespace (a container's init), the master reaps an orphan
/// that is not one of its workers, without taking it for a worker, and still stops on
/// TERM. Needs root and util-linux's unshare and nsenter.
#[test]
fn as_pid_1_the_master_reaps_orphans_that_are_not_workers() {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root for a PID namespace");
        return;
    }
    let ok = |cmd: &str| {
        Command::new(cmd)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if !ok("unshare") || !ok("nsenter") {
        eprintln!("skipped: needs util-linux's unshare and nsenter");
        return;
    }
    let bin = rgunicorn_bin();
    let server = Server::start_bin(
        Path::new("unshare"),
        &[
            "--pid",
            "--fork",
            "--mount-proc",
            bin.to_str().expect("utf-8 path"),
            "-b",
            "127.0.0.1:0",
            "-w",
            "2",
        ],
        &[],
    );
    // unshare's only child is the master, PID 1 inside.
    let master = server.wait_for_workers(1, Duration::from_secs(10))[0];
    let children = |pid: i32| -> Vec<i32> {
        std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
            .unwrap_or_default()
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    let ns_pid = status_field(master, "NSpid:");
    assert!(
        ns_pid.ends_with(" 1") || ns_pid.ends_with("\t1"),
        "{ns_pid}"
    );
    wait_until(Duration::from_secs(10), "two workers", || {
        children(master).len() == 2
    });
    let workers = children(master);
    // A shell in the namespace starts a sleep and exits: the sleep is orphaned and
    // handed to the namespace's init, our master.
    let status = Command::new("nsenter")
        .args(["-t", &master.to_string(), "-p", "--", "sh", "-c"])
        .arg("sleep 1 & exit 0")
        .status()
        .expect("nsenter");
    assert!(status.success());
    wait_until(Duration::from_secs(5), "the orphan to be adopted", || {
        children(master).len() == 3
    });
    let orphan = *children(master)
        .iter()
        .find(|p| !workers.contains(p))
        .expect("the orphan");
    // It exits after a second; a master that did not reap it would leave a zombie.
    wait_until(Duration::from_secs(5), "the orphan to be reaped", || {
        !Path::new(&format!("/proc/{orphan}")).exists()
    });
    assert_eq!(children(master), workers, "{}", server.log());
    let log = server.log();
    assert!(!log.contains(&format!("{orphan}")), "{log}");
    assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
    // SAFETY: kill(2) on the master this test started.
    unsafe {
        libc::kill(master, libc::SIGTERM);
    }
    wait_until(Duration::from_secs(15), "the master to stop", || {
        !is_running(master)
    });
    assert!(log.contains("Booting worker"), "{log}");
}
