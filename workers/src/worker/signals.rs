//! The worker's signals, all in one place: they arrive through the scheme the master and
//! the front use ([`rgunicorn_process::Signals`], a source in the worker's mio loop), are
//! noted here when the loop sees that source readable ([`SignalFlags::read`]), and the
//! loop asks what they want of it ([`SignalFlags::take`]). The loop ([`super`]) decides
//! what each means.

use std::io;

use nix::sys::signal::Signal;
use rgunicorn_process::{signals as roles, Signals};

/// What the signals received so far ask of the worker, most urgent first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Asked {
    /// INT or QUIT: stop now.
    StopFast,
    /// TERM: stop accepting, finish what is in flight, exit.
    StopGracefully,
    /// USR1: reopen the log files.
    ReopenLogs,
    Nothing,
}

/// Signals the worker reacts to, kept until the loop acts on them.
pub struct SignalFlags {
    graceful: bool,
    fast: bool,
    reopen: bool,
    /// Readable when a signal came: the loop polls it so a signal ends its sleep.
    pub source: Signals,
}

impl SignalFlags {
    /// The master forks with these signals blocked so none is lost before this point;
    /// one that came meanwhile is delivered now.
    pub fn install() -> io::Result<SignalFlags> {
        Ok(SignalFlags {
            graceful: false,
            fast: false,
            reopen: false,
            source: Signals::install(&roles::WORKER)?,
        })
    }

    /// Note what arrived (the loop saw the signal source readable).
    pub fn read(&mut self) {
        for signal in self.source.pending() {
            match signal {
                Signal::SIGTERM => self.graceful = true,
                Signal::SIGINT | Signal::SIGQUIT => self.fast = true,
                Signal::SIGUSR1 => self.reopen = true,
                _ => {}
            }
        }
    }

    /// The most urgent request not yet taken; each signal's request is taken once (the
    /// loop takes until [`Asked::Nothing`]).
    pub fn take(&mut self) -> Asked {
        if std::mem::take(&mut self.fast) {
            Asked::StopFast
        } else if std::mem::take(&mut self.graceful) {
            Asked::StopGracefully
        } else if std::mem::take(&mut self.reopen) {
            Asked::ReopenLogs
        } else {
            Asked::Nothing
        }
    }
}
