//! Server hooks (`rgunicorn::Hooks`): the `hooks` example, run as a real master with real
//! workers, writes one line per hook call; this test sends requests and signals and
//! checks that each hook fired, in the right process and order.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;

fn hooks_bin() -> PathBuf {
    let bin = rgunicorn_bin();
    let dir = bin.parent().expect("binary has a directory");
    dir.join("examples").join("hooks")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn count(path: &Path, prefix: &str) -> usize {
    lines(path).iter().filter(|l| l.starts_with(prefix)).count()
}

fn wait_for_line(path: &Path, line: &str) {
    wait_until(Duration::from_secs(10), line, || {
        lines(path).iter().any(|l| l == line)
    });
}

#[test]
fn every_hook_fires_where_gunicorn_calls_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("hooks.log");
    let log_str = log.to_str().expect("utf-8 path");
    let mut server = Server::start_bin(
        &hooks_bin(),
        &["-w", "2"],
        &[("RGUNICORN_HOOKS_LOG", log_str)],
    );
    let master = server.pid();
    let first = server.wait_for_workers(2, Duration::from_secs(10));
    wait_until(Duration::from_secs(10), "post_worker_init twice", || {
        count(&log, "post_worker_init ") == 2
    });
    for pid in &first {
        assert!(lines(&log)
            .iter()
            .any(|l| l.starts_with(&format!("post_worker_init pid={pid} "))));
        assert!(lines(&log)
            .iter()
            .any(|l| l.starts_with(&format!("post_fork master={master} pid={pid} age="))));
    }
    let start = lines(&log);
    assert_eq!(
        start[0],
        format!("on_starting master={master} workers=2"),
        "{start:?}"
    );
    assert!(
        start[1].starts_with(&format!(
            "when_ready master={master} listeners=http://127.0.0.1:"
        )),
        "{start:?}"
    );
    assert_eq!(count(&log, "pre_fork "), 2, "{start:?}");
    assert_eq!(count(&log, "post_fork "), 2, "{start:?}");

    // Requests: pre_request and post_request, in the worker that served them.
    for _ in 0..3 {
        assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
        assert_eq!(get(server.addr, "/nope").status, 404);
    }
    wait_until(Duration::from_secs(5), "post_request lines", || {
        count(&log, "post_request ") == 6
    });
    let all = lines(&log);
    let served_by_a_worker = |l: &String| first.iter().any(|p| l.contains(&format!("pid={p} ")));
    let pre: Vec<&String> = all
        .iter()
        .filter(|l| l.starts_with("pre_request"))
        .collect();
    let post: Vec<&String> = all
        .iter()
        .filter(|l| l.starts_with("post_request"))
        .collect();
    assert_eq!(pre.len(), 6, "{all:?}");
    assert!(pre.iter().all(|l| served_by_a_worker(l)), "{all:?}");
    assert!(pre
        .iter()
        .any(|l| l.ends_with(&format!("GET {WELCOME_PATH}"))));
    assert_eq!(
        post.iter()
            .filter(|l| l.ends_with(&format!("{WELCOME_PATH} 200")))
            .count(),
        3,
        "{all:?}"
    );
    assert_eq!(
        post.iter().filter(|l| l.ends_with("/nope 404")).count(),
        3,
        "{all:?}"
    );

    // TTIN: nworkers_changed in the master, and a third worker.
    server.signal(libc::SIGTTIN);
    wait_for_line(&log, "nworkers_changed new=3 old=2");
    server.wait_for_workers(3, Duration::from_secs(10));
    server.signal(libc::SIGTTOU);
    wait_for_line(&log, "nworkers_changed new=2 old=3");
    let two = server.wait_for_workers(2, Duration::from_secs(10));

    // HUP: on_reload, new workers; the old ones run worker_exit, the master child_exit.
    server.signal(libc::SIGHUP);
    wait_for_line(&log, &format!("on_reload master={master}"));
    wait_until(Duration::from_secs(15), "the old workers to exit", || {
        two.iter().all(|p| !is_running(*p))
    });
    let fresh = server.wait_for_workers(2, Duration::from_secs(10));
    for pid in &two {
        wait_for_line(&log, &format!("worker_exit pid={pid} code=0"));
        wait_for_line(&log, &format!("child_exit master={master} pid={pid}"));
    }

    // A worker told to stop fast (QUIT): worker_int, then worker_exit.
    let victim = fresh[0];
    // SAFETY: kill(2) on a worker this test started.
    unsafe {
        libc::kill(victim, libc::SIGQUIT);
    }
    wait_for_line(&log, &format!("worker_int pid={victim}"));
    wait_for_line(&log, &format!("worker_exit pid={victim} code=0"));
    wait_for_line(&log, &format!("child_exit master={master} pid={victim}"));
    let last = server.wait_for_workers(2, Duration::from_secs(10));

    // TERM: every worker exits (worker_exit), then the master's on_exit comes last.
    server.signal(libc::SIGTERM);
    assert!(server.wait_exit(Duration::from_secs(15)).success());
    let all = lines(&log);
    assert_eq!(
        all.last().map(String::as_str),
        Some(format!("on_exit master={master}").as_str()),
        "{all:?}"
    );
    for pid in &last {
        assert!(
            all.contains(&format!("worker_exit pid={pid} code=0")),
            "{pid}: {all:?}"
        );
    }
    assert_eq!(count(&log, "on_starting "), 1, "{all:?}");
    assert_eq!(count(&log, "when_ready "), 1, "{all:?}");
    // Every worker forked ran post_fork and post_worker_init.
    assert_eq!(
        count(&log, "pre_fork "),
        count(&log, "post_worker_init "),
        "{all:?}"
    );
}
