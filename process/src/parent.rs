//! Dying with the master. A child the master forks asks the kernel for a signal when the
//! master dies (`PR_SET_PDEATHSIG`), checks at once that the master has not died already
//! (the signal only covers deaths after the call), and its loop checks again on every
//! tick ([`is_gone`]), in case the signal was lost or handled late. Changing user or
//! group clears the kernel's setting, so [`crate::privileges::switch`] arms it again.
//!
//! The watched pid lives in this process's memory: a child that was never told to
//! [`watch`] (the standalone `rgunicorn-front`, a worker run by a test) never thinks its
//! parent gone.

use std::sync::atomic::{AtomicI32, Ordering};

use nix::errno::Errno;
use nix::sys::prctl;
use nix::sys::signal::Signal;
use nix::unistd::{getppid, Pid};

/// The master this process watches (0: none).
static MASTER: AtomicI32 = AtomicI32::new(0);
/// The signal it is sent when the master dies (0: none).
static DEATH_SIGNAL: AtomicI32 = AtomicI32::new(0);

#[derive(Debug, thiserror::Error)]
pub enum ParentError {
    #[error("cannot ask for a signal when the master dies (prctl): {0}")]
    Prctl(Errno),
    #[error("the master (pid {0}) is already gone")]
    Gone(Pid),
}

/// In a child just forked by `master`: be sent `signal` when it dies. Fails when the
/// master is already gone (the caller exits then).
pub fn watch(master: Pid, signal: Signal) -> Result<(), ParentError> {
    MASTER.store(master.as_raw(), Ordering::Relaxed);
    DEATH_SIGNAL.store(signal as i32, Ordering::Relaxed);
    rearm()
}

/// Arm the parent-death signal again (credentials changed), if [`watch`] was called.
pub fn rearm() -> Result<(), ParentError> {
    let master = MASTER.load(Ordering::Relaxed);
    let Ok(signal) = Signal::try_from(DEATH_SIGNAL.load(Ordering::Relaxed)) else {
        return Ok(()); // not watching
    };
    prctl::set_pdeathsig(signal).map_err(ParentError::Prctl)?;
    if is_gone() {
        return Err(ParentError::Gone(Pid::from_raw(master)));
    }
    Ok(())
}

/// Whether the watched master has died (this process was re-parented).
pub fn is_gone() -> bool {
    let master = MASTER.load(Ordering::Relaxed);
    master != 0 && getppid().as_raw() != master
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_watches_its_live_parent_is_armed_and_not_orphaned() {
        assert!(!is_gone(), "nothing watched yet");
        watch(getppid(), Signal::SIGTERM).expect("parent alive");
        assert_eq!(prctl::get_pdeathsig(), Ok(Some(Signal::SIGTERM)));
        assert!(!is_gone());
        // Another pid than the parent: gone.
        let wrong = Pid::from_raw(getppid().as_raw() + 1);
        assert!(matches!(watch(wrong, Signal::SIGTERM), Err(ParentError::Gone(p)) if p == wrong));
        assert!(is_gone());
        let _ = prctl::set_pdeathsig(None);
        MASTER.store(0, Ordering::Relaxed);
        DEATH_SIGNAL.store(0, Ordering::Relaxed);
    }
}
