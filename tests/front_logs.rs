//! The front's logs (issue 10.6): buffered access lines are all written when the front
//! stops; lines a full disk refuses are counted and reported, with one error line per
//! episode, once the disk has room; a failed reopen is an error line and nothing else.

mod common;
mod front_support;

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use front_support::*;

/// Every stderr line of `proc` until one contains `needle` (kept in `seen`).
fn wait_line_into(proc: &Proc, needle: &str, seen: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match proc.stderr_lines.recv_timeout(left) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return true;
                }
            }
            Err(_) => return false,
        }
    }
    false
}

/// Requests on one keep-alive connection, each answered 200.
fn requests(scripted: &Scripted, targets: impl Iterator<Item = String>) {
    let mut tls = connect(&scripted.client, scripted.front.addr);
    for target in targets {
        // One write, one record: no small segments for Nagle to hold back.
        let request = format!("GET {target} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        tls.write_all(request.as_bytes()).expect("write");
        tls.flush().expect("flush");
        let answer = read_response(&mut tls, false).expect("answer");
        assert_eq!(answer.status, 200, "{target}");
    }
}

/// Access lines wait in each event loop's buffer (64k by default) for at most a sweep;
/// a TERM that comes before it loses none of them.
#[test]
fn term_writes_every_buffered_access_line() {
    let log = |dir: &Path| dir.join("access.log");
    let mut scripted = Scripted::start_in("threads = 1", |dir, upstream, extra| {
        let extra = format!("{extra}\naccess_log = \"{}\"", log(dir).display());
        start_front(dir, upstream, &extra)
    });
    const N: usize = 50;
    requests(&scripted, (0..N).map(|i| format!("/count?term-{i}")));
    scripted.front.proc.signal(libc::SIGTERM);
    assert_eq!(
        scripted.front.proc.wait_exit(Duration::from_secs(10)),
        Some(0)
    );
    let text = std::fs::read_to_string(log(scripted.dir.path())).expect("access log");
    for i in 0..N {
        assert!(
            text.contains(&format!("GET /count?term-{i} HTTP/1.1\" 200 ")),
            "line {i} missing:\n{text}"
        );
    }
    assert_eq!(text.lines().count(), N, "{text}");
}

/// USR1 with the access log's directory gone: one error line naming the file, nothing
/// that says the logs were reopened; the error log (stderr) is reopened all the same, and
/// the next USR1, with the directory back, reopens both and says so.
#[test]
fn a_failed_reopen_is_one_error_line_and_nothing_else() {
    let logs = |dir: &Path| dir.join("logs");
    let scripted = Scripted::start_in("threads = 1", |dir, upstream, extra| {
        std::fs::create_dir(logs(dir)).expect("logs dir");
        let extra = format!(
            "{extra}\naccess_log = \"{}\"\naccess_log_buffer = 0",
            logs(dir).join("access.log").display()
        );
        start_front(dir, upstream, &extra)
    });
    let dir = logs(scripted.dir.path());
    std::fs::remove_dir_all(&dir).expect("rm logs");
    let proc = &scripted.front.proc;
    proc.signal(libc::SIGUSR1);
    let mut seen = Vec::new();
    assert!(
        wait_line_into(proc, "reopen", &mut seen),
        "no line for USR1: {seen:?}"
    );
    let line = seen.last().expect("line").clone();
    assert!(
        line.contains("[error]")
            && line.contains(&format!(
                "cannot reopen the access log {}/access.log",
                dir.display()
            ))
            && line.ends_with("still writing to the old file"),
        "{line}"
    );
    std::fs::create_dir(&dir).expect("logs dir again");
    proc.signal(libc::SIGUSR1);
    assert!(wait_line_into(proc, "logs reopened", &mut seen), "{seen:?}");
    let usr1: Vec<&String> = seen.iter().filter(|l| l.contains("reopen")).collect();
    assert_eq!(usr1.len(), 2, "{usr1:?}");
    requests(&scripted, std::iter::once("/count?after".to_string()));
    let text = read_log_with(&dir.join("access.log"), "/count?after");
    assert!(text.contains("GET /count?after HTTP/1.1\" 200 "), "{text}");
}

/// A real full disk: a 64 KiB tmpfs mounted in a mount namespace of the front's own (root
/// and util-linux's unshare needed), filled up from outside through /proc/PID/root. Every
/// request made while it is full is in the file, whole, or counted in the one report.
#[test]
fn access_lines_a_full_disk_refused_are_counted_and_reported_when_it_has_room() {
    if !common::can_mount_small_tmpfs() {
        return;
    }
    let logs = |dir: &Path| dir.join("logs");
    let scripted = Scripted::start_in("threads = 1", |dir, upstream, extra| {
        let logs = logs(dir);
        std::fs::create_dir(&logs).expect("logs dir");
        let extra = format!("{extra}\naccess_log = \"{}/access.log\"", logs.display());
        start_front_launched(dir, upstream, &extra, |config| {
            let mut cmd = Command::new("unshare");
            cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
                .arg(format!(
                    "mount -t tmpfs -o size=64k tmpfs {} && exec {} -c {}",
                    logs.display(),
                    front_bin().display(),
                    config.display()
                ));
            cmd
        })
    });
    let proc = &scripted.front.proc;
    // The front's view of the tmpfs (the test's own is the empty directory below it).
    let inside = Path::new(&format!("/proc/{}/root", proc.child.id())).join(
        logs(scripted.dir.path())
            .strip_prefix("/")
            .expect("absolute temp dir"),
    );
    let access = inside.join("access.log");
    requests(&scripted, std::iter::once("/count?before-full".into()));
    read_log_with(&access, "?before-full");
    assert!(std::fs::read_to_string(&access).is_ok_and(|t| t.contains("?before-full")));
    // Fill the filesystem.
    let filler = inside.join("filler");
    let mut file = std::fs::File::create(&filler).expect("filler");
    while file.write_all(&[b'x'; 4096]).is_ok() {}
    drop(file);
    const FULL: usize = 400;
    requests(
        &scripted,
        (0..FULL).map(|i| format!("/count?while-full-{i}")),
    );
    let mut seen = Vec::new();
    assert!(
        wait_line_into(
            proc,
            "cannot write the access log (No space left on device (os error 28)): \
             dropping its lines until it can",
            &mut seen
        ),
        "{seen:?}"
    );
    std::fs::remove_file(&filler).expect("make room");
    requests(&scripted, std::iter::once("/count?after-room".into()));
    let note = " access-log line(s) could not be written (No space left on device (os error 28)) \
                and were dropped; writing again";
    assert!(wait_line_into(proc, note, &mut seen), "{seen:?}");
    let failing = seen
        .iter()
        .filter(|l| l.contains("cannot write the access log"))
        .count();
    assert_eq!(failing, 1, "one line per episode: {seen:?}");
    let reported: usize = seen
        .iter()
        .find_map(|l| l.split(": ").nth(1)?.strip_suffix(note)?.parse().ok())
        .unwrap_or_else(|| panic!("no count of dropped lines: {seen:?}"));
    let text = read_log_with(&access, "?after-room");
    assert!(
        text.contains("?after-room"),
        "the line after the disk had room"
    );
    // Whole lines only: each ends with the quoted user agent ("-" here).
    let kept = text
        .lines()
        .filter(|l| l.contains("?while-full-") && l.ends_with("\"-\""))
        .count();
    eprintln!("while full: {kept} lines kept, {reported} reported dropped");
    assert!(reported > 0, "{seen:?}");
    assert_eq!(kept + reported, FULL, "kept {kept}, reported {reported}");
}
