//! Log files when things go wrong (issue 10, item 6): a USR1 whose reopen fails says so
//! as an error and nothing else; access-log lines a full disk refused are counted and
//! reported once the log can be written again, so no line is lost without a trace.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// rgunicorn writing its error log to a file (the test harness reads stderr, so this
/// one is started here); killed with its children when dropped.
struct FileLogged {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl FileLogged {
    fn start(error_log: &Path) -> FileLogged {
        let child = Command::new(rgunicorn_bin())
            .args(["-b", "127.0.0.1:0", "--error-logfile"])
            .arg(error_log)
            .env_remove("RGUNICORN_CMD_ARGS")
            .env_remove("WEB_CONCURRENCY")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rgunicorn");
        let mut addr = None;
        wait_until(Duration::from_secs(20), "the server to start", || {
            let text = std::fs::read_to_string(error_log).unwrap_or_default();
            addr = text
                .lines()
                .filter_map(|l| l.split("Listening at: http://").nth(1))
                .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
                .next();
            addr.is_some() && text.contains("Booting worker")
        });
        FileLogged {
            child,
            addr: addr.expect("address"),
        }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn worker(&self) -> i32 {
        children_of(self.pid())
            .into_iter()
            .next()
            .expect("a worker")
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the master this test started.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }
}

impl Drop for FileLogged {
    fn drop(&mut self) {
        stop_master(&mut self.child);
    }
}

#[test]
fn a_failed_usr1_reopen_is_an_error_and_nothing_else() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("error.log");
    let server = FileLogged::start(&log);
    // Rotated away, and a directory where the file must be created again: no reopen
    // can succeed, so every process keeps writing to the rotated file.
    let rotated = dir.path().join("error.log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    std::fs::create_dir(&log).expect("a directory in the way");
    server.signal(libc::SIGUSR1);
    let read = || std::fs::read_to_string(&rotated).unwrap_or_default();
    let says = |pid: i32| {
        format!(
            "[{pid}] [ERROR] cannot reopen the error log {}: Is a directory",
            log.display()
        )
    };
    wait_until(
        Duration::from_secs(10),
        "the master's and the worker's errors",
        || read().contains(&says(server.pid())) && read().contains(&says(server.worker())),
    );
    assert!(!read().contains("logs reopened"), "{}", read());
    // Out of the way again: the next USR1 reopens, and says so in the new file.
    std::fs::remove_dir(&log).expect("rmdir");
    server.signal(libc::SIGUSR1);
    wait_until(Duration::from_secs(10), "the reopened log", || {
        std::fs::read_to_string(&log)
            .is_ok_and(|t| t.contains("Handling signal: usr1: logs reopened"))
    });
    assert_eq!(get(server.addr, WELCOME_PATH).status, 200);
}

/// A real full disk: a 64 KiB tmpfs mounted in a mount namespace of the server's own
/// (root and util-linux's unshare needed), filled up from outside through
/// /proc/PID/root.
#[test]
fn access_lines_a_full_disk_refused_are_counted_and_reported_when_it_has_room() {
    if !can_mount_small_tmpfs() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir(&logs).expect("logs dir");
    let script = format!(
        "mount -t tmpfs -o size=64k tmpfs {logs} && exec {bin} \"$@\" \
         --access-logfile {logs}/access.log",
        logs = logs.display(),
        bin = rgunicorn_bin().display()
    );
    let server = Server::start_bin(
        Path::new("unshare"),
        &[
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            "sh",
            "-b",
            "127.0.0.1:0",
        ],
        &[],
    );
    // The master's view of the tmpfs (the test's own is the empty directory below it).
    let inside = Path::new(&format!("/proc/{}/root", server.pid()))
        .join(logs.strip_prefix("/").expect("absolute temp dir"));
    let access = inside.join("access.log");
    assert_eq!(
        get(server.addr, &format!("{WELCOME_PATH}?before-full")).status,
        200
    );
    wait_until(Duration::from_secs(5), "the first access line", || {
        std::fs::read_to_string(&access).is_ok_and(|t| t.contains("?before-full"))
    });
    // Fill the filesystem.
    let filler = inside.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    let chunk = [b'x'; 4096];
    while std::io::Write::write_all(&mut file, &chunk).is_ok() {}
    drop(file);
    const FULL: usize = 200;
    for i in 0..FULL {
        assert_eq!(
            get(server.addr, &format!("{WELCOME_PATH}?while-full-{i}")).status,
            200
        );
    }
    wait_until(Duration::from_secs(10), "the failure to be logged", || {
        server.log().contains(
            "cannot write the access log (No space left on device (os error 28)): \
             dropping its lines until it can",
        )
    });
    std::fs::remove_file(&filler).expect("make room");
    assert_eq!(
        get(server.addr, &format!("{WELCOME_PATH}?after-room")).status,
        200
    );
    wait_until(
        Duration::from_secs(10),
        "the report of dropped lines",
        || {
            server
                .log()
                .contains("access-log line(s) could not be written")
        },
    );
    let log = server.log();
    assert_eq!(
        log.matches("cannot write the access log").count(),
        1,
        "one line per episode\n{log}"
    );
    let reported: usize = log
        .lines()
        .find_map(|l| {
            l.split(" [WARNING] ").nth(1)?.strip_suffix(
                " access-log line(s) could not be written (No space left on device (os error 28)) \
             and were dropped; writing again",
            )
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no count of dropped lines\n{log}"));
    wait_until(
        Duration::from_secs(5),
        "the line after the disk had room",
        || std::fs::read_to_string(&access).is_ok_and(|t| t.contains("?after-room")),
    );
    // Every request made while the disk was full is either in the file, whole (the
    // default format ends with the quoted user agent, "-" here), or counted.
    let text = std::fs::read_to_string(&access).expect("access log");
    let kept = text
        .lines()
        .filter(|l| l.contains("?while-full-") && l.ends_with("\"-\""))
        .count();
    eprintln!("while full: {kept} lines kept, {reported} reported dropped");
    assert!(reported > 0, "{log}");
    assert_eq!(
        kept + reported,
        FULL,
        "kept {kept}, reported {reported}\n{log}"
    );
}
