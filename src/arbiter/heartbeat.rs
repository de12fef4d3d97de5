//! Worker liveness: one small block of memory shared between the master and one worker.
//! The master maps it (anonymous, `MAP_SHARED`) before the fork, so both processes see
//! the same page. The worker stamps the monotonic clock into it on every tick of its
//! event loop and flags there that it is retiring; the master reads it on its own tick.
//! No file, no descriptor, no syscall per beat (gunicorn fchmods a temp file per beat,
//! which stalls on a slow /tmp). The worker side is the [`WorkerHooks`] impl below; the
//! decisions the master takes from a slot are in the arbiter.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rgunicorn_workers::worker::WorkerHooks;

#[repr(C)]
struct Shared {
    /// CLOCK_MONOTONIC in milliseconds at the last beat (system-wide, same in both processes).
    beat_ms: AtomicU64,
    /// Non-zero once the worker has begun to retire on its own (max_requests, a stuck request).
    retiring: AtomicU64,
    /// Non-zero once the worker has loaded its app and is about to accept: a later
    /// exit is not a boot failure, and the master's count of those starts over.
    booted: AtomicU64,
}

const MAP_LEN: usize = 4096;

/// One worker's slot. The master owns the mapping and unmaps it when the worker is reaped;
/// the worker's copy (inherited through fork) lives as long as the worker.
pub struct Slot {
    ptr: NonNull<Shared>,
}

impl Slot {
    /// Map a fresh slot, stamped now (boot time counts towards the timeout).
    pub fn new() -> io::Result<Slot> {
        // SAFETY: an anonymous mapping with no address hint touches no existing memory;
        // the result is checked against MAP_FAILED before use.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MAP_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(addr.cast::<Shared>()).ok_or_else(io::Error::last_os_error)?;
        let slot = Slot { ptr };
        slot.beat();
        Ok(slot)
    }

    fn shared(&self) -> &Shared {
        // SAFETY: the mapping is page-aligned, zero-filled (valid AtomicU64s),
        // larger than `Shared`, and stays mapped as long as `self` lives.
        unsafe { self.ptr.as_ref() }
    }

    /// Stamp the clock: the worker is alive.
    pub fn beat(&self) {
        self.shared()
            .beat_ms
            .store(monotonic_ms(), Ordering::Relaxed);
    }

    /// How long since the last beat.
    pub fn silent_for(&self) -> Duration {
        let last = self.shared().beat_ms.load(Ordering::Relaxed);
        Duration::from_millis(monotonic_ms().saturating_sub(last))
    }

    pub fn set_retiring(&self) {
        self.shared().retiring.store(1, Ordering::Relaxed);
    }

    pub fn is_retiring(&self) -> bool {
        self.shared().retiring.load(Ordering::Relaxed) != 0
    }

    pub fn set_booted(&self) {
        self.shared().booted.store(1, Ordering::Relaxed);
    }

    pub fn is_booted(&self) -> bool {
        self.shared().booted.load(Ordering::Relaxed) != 0
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the mapping `new` created; no reference to it outlives `self`.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), MAP_LEN);
        }
    }
}

/// The worker's side: beats on every loop tick, and says when it retires by itself.
pub struct Beat<'a> {
    pub slot: &'a Slot,
}

impl WorkerHooks for Beat<'_> {
    fn heartbeat(&mut self) {
        self.slot.beat();
    }

    fn retiring(&mut self) {
        self.slot.set_retiring();
    }

    fn post_worker_init(&mut self) {
        self.slot.set_booted();
    }
}

/// CLOCK_MONOTONIC in milliseconds.
pub fn monotonic_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec into memory we own; CLOCK_MONOTONIC
    // always exists on Linux, so it cannot fail.
    unsafe {
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
    }
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_slot_is_not_silent_and_not_retiring() {
        let slot = Slot::new().expect("mmap");
        assert!(slot.silent_for() < Duration::from_secs(1));
        assert!(!slot.is_retiring());
        slot.set_retiring();
        assert!(slot.is_retiring());
        assert!(!slot.is_booted());
        slot.set_booted();
        assert!(slot.is_booted());
    }

    #[test]
    fn a_beat_from_a_forked_child_reaches_the_parent() {
        let slot = Slot::new().expect("mmap");
        // Make the stamp old, then let a child beat.
        slot.shared().beat_ms.store(0, Ordering::Relaxed);
        assert!(slot.silent_for() > Duration::from_secs(1));
        // SAFETY: the child only stores into the shared page and calls _exit.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                slot.beat();
                slot.set_retiring();
                // SAFETY: _exit skips the test harness's atexit handlers in the child.
                unsafe { libc::_exit(0) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                nix::sys::wait::waitpid(child, None).expect("waitpid");
            }
        }
        assert!(slot.silent_for() < Duration::from_secs(1));
        assert!(slot.is_retiring());
    }
}
