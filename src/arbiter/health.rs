//! The master's decisions about one worker, as pure functions the unit tests drive:
//! is its heartbeat late, did it retire by itself, is it too big, what its end means;
//! plus the two facts the
//! arbiter ([`super`]) feeds them with (resident memory) and the max_requests jitter.

use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use rgunicorn_process::exit;

use super::WorkerState;

/// What a worker slot's state asks the master to do (a pure decision, unit-tested).
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    Fine,
    /// Heartbeat late for the first time: SIGABRT.
    Abort,
    /// Still there after SIGABRT: SIGKILL.
    Kill,
    /// Retired by itself (max_requests, stuck request): start its replacement.
    Replace,
    /// Over the memory cap: retire it gracefully.
    TooBig(u64),
}

pub(super) struct Health {
    pub(super) silent_for: Duration,
    pub(super) state: WorkerState,
    pub(super) says_retiring: bool,
    pub(super) rss: Option<u64>,
}

pub(super) fn judge(h: &Health, timeout: Duration, max_memory: u64) -> Verdict {
    if !timeout.is_zero() && h.silent_for > timeout {
        return match h.state {
            WorkerState::Aborted => Verdict::Kill,
            WorkerState::Running | WorkerState::Retiring => Verdict::Abort,
        };
    }
    if h.state != WorkerState::Running {
        return Verdict::Fine;
    }
    if h.says_retiring {
        return Verdict::Replace;
    }
    match h.rss {
        Some(rss) if max_memory > 0 && rss > max_memory => Verdict::TooBig(rss),
        _ => Verdict::Fine,
    }
}

/// How a child ended, as waitpid tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Ending {
    Exited(i32),
    Killed(Signal),
}

impl Ending {
    pub(super) fn of(code: Option<i32>, sig: Option<Signal>) -> Ending {
        match (code, sig) {
            (Some(code), _) => Ending::Exited(code),
            (None, Some(sig)) => Ending::Killed(sig),
            // waitpid reports one or the other; a stop or continue is not an end.
            (None, None) => Ending::Exited(exit::OK),
        }
    }
}

/// What a worker's end means to the master.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Death {
    /// It was retiring: nothing to say (its replacement exists or is not wanted).
    Expected,
    /// Exit 3 or 4: the next worker would fail the same way (retry with a backoff, or
    /// halt).
    BootFailure(i32),
    /// Anything else: say what happened; the master starts a replacement.
    Unexpected(String),
}

/// Why a worker in `state` that ended `how` did (`said_retiring`: its slot says it was
/// retiring by itself).
pub(super) fn death(how: Ending, state: WorkerState, said_retiring: bool) -> Death {
    let expected = state != WorkerState::Running || said_retiring;
    match how {
        Ending::Exited(code) if exit::halts_the_master(code) => Death::BootFailure(code),
        Ending::Exited(exit::OK) if expected => Death::Expected,
        Ending::Exited(exit::OK) => Death::Unexpected("exited by itself".into()),
        Ending::Exited(exit::RUNTIME_ERROR) => Death::Unexpected(format!(
            "stopped: its event loop failed (exit {})",
            exit::RUNTIME_ERROR
        )),
        Ending::Exited(code) => Death::Unexpected(format!("exited with code {code}")),
        Ending::Killed(Signal::SIGKILL) if state == WorkerState::Aborted => {
            Death::Unexpected("was killed after its timeout".into())
        }
        Ending::Killed(Signal::SIGKILL) => {
            Death::Unexpected("was sent SIGKILL! Perhaps out of memory?".into())
        }
        Ending::Killed(sig) => Death::Unexpected(format!("was sent {sig}!")),
    }
}

/// Resident memory of a process, from /proc/PID/statm (pages).
pub(super) fn rss_bytes(pid: Pid) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = text.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf only reads a system constant.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).unwrap_or(4096))
}

/// A spread of extra requests per worker so they do not all restart together.
pub(super) fn jitter(max: u64, seed: u64) -> u64 {
    let mut x = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(u64::from(std::process::id()))
        .wrapping_add(rgunicorn_workers::clock::unix_now());
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x % (max + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health {
            silent_for: Duration::from_secs(1),
            state: WorkerState::Running,
            says_retiring: false,
            rss: Some(100 << 20),
        }
    }

    #[test]
    fn a_late_worker_gets_abort_then_kill() {
        let t = Duration::from_secs(30);
        let late = Health {
            silent_for: Duration::from_secs(31),
            ..health()
        };
        assert_eq!(judge(&late, t, 0), Verdict::Abort);
        let aborted = Health {
            state: WorkerState::Aborted,
            ..late
        };
        assert_eq!(judge(&aborted, t, 0), Verdict::Kill);
        // A retiring worker is still killed when it stops beating.
        let retiring = Health {
            silent_for: Duration::from_secs(31),
            state: WorkerState::Retiring,
            ..health()
        };
        assert_eq!(judge(&retiring, t, 0), Verdict::Abort);
    }

    #[test]
    fn timeout_zero_never_kills() {
        let late = Health {
            silent_for: Duration::from_secs(3600),
            ..health()
        };
        assert_eq!(judge(&late, Duration::ZERO, 0), Verdict::Fine);
    }

    #[test]
    fn a_worker_retiring_by_itself_is_replaced_once() {
        let says = Health {
            says_retiring: true,
            ..health()
        };
        assert_eq!(judge(&says, Duration::from_secs(30), 0), Verdict::Replace);
        let known = Health {
            state: WorkerState::Retiring,
            ..says
        };
        assert_eq!(judge(&known, Duration::from_secs(30), 0), Verdict::Fine);
    }

    #[test]
    fn memory_cap_recycles_only_above_the_cap() {
        let t = Duration::from_secs(30);
        assert_eq!(judge(&health(), t, 0), Verdict::Fine);
        assert_eq!(judge(&health(), t, 200 << 20), Verdict::Fine);
        assert_eq!(judge(&health(), t, 50 << 20), Verdict::TooBig(100 << 20));
    }

    #[test]
    fn a_worker_whose_loop_failed_is_replaced_while_a_boot_failure_is_not() {
        use WorkerState::*;
        let running = |how| death(how, Running, false);
        assert_eq!(
            running(Ending::Exited(exit::BOOT_ERROR)),
            Death::BootFailure(3)
        );
        assert_eq!(
            running(Ending::Exited(exit::APP_LOAD_ERROR)),
            Death::BootFailure(4)
        );
        assert_eq!(
            running(Ending::Exited(exit::RUNTIME_ERROR)),
            Death::Unexpected("stopped: its event loop failed (exit 5)".into())
        );
        assert_eq!(death(Ending::Exited(0), Retiring, false), Death::Expected);
        assert_eq!(death(Ending::Exited(0), Running, true), Death::Expected);
        assert_eq!(
            running(Ending::Exited(0)),
            Death::Unexpected("exited by itself".into())
        );
        assert_eq!(
            death(Ending::Killed(Signal::SIGKILL), Aborted, false),
            Death::Unexpected("was killed after its timeout".into())
        );
        assert_eq!(
            running(Ending::Killed(Signal::SIGSEGV)),
            Death::Unexpected("was sent SIGSEGV!".into())
        );
        // Exit 3 halts even a retiring worker's master: its replacement would fail too.
        assert_eq!(
            death(Ending::Exited(3), Retiring, true),
            Death::BootFailure(3)
        );
    }

    #[test]
    fn rss_of_this_process_is_readable() {
        let rss = rss_bytes(nix::unistd::getpid()).expect("statm");
        assert!(rss > 0);
    }
}
