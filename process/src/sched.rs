//! The scheduling policy of the event loops: `SCHED_BATCH`.
//!
//! An event loop is woken for every request: by the kernel when bytes arrive, by an app
//! thread when an answer is ready, by the worker's reply on the front's upstream socket. A
//! normal thread woken that way preempts whatever runs on its core, often the very thread
//! that woke it, so on a busy machine each request costs two or three context switches.
//! A `SCHED_BATCH` thread woken on a busy core waits for the running thread to block or its
//! slice to end, and then finds several events ready at once. On an idle core it runs at
//! once, as before, so a lightly loaded server answers as fast. Numbers in DESIGN.md.
//!
//! Only the loops are set this way: app threads keep the normal policy, so that Python
//! threads handing over the GIL still wake each other promptly.

use std::io;

/// Put the calling thread (not the whole process) under `SCHED_BATCH`, keeping its nice
/// value. Threads it spawns afterwards inherit the policy. Any user may do this.
pub fn batch_this_thread() -> io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` lives across the call and is only read; pid 0 names the calling
    // thread, and SCHED_BATCH takes priority 0.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_calling_thread_becomes_batch() {
        let before = policy();
        std::thread::spawn(|| {
            batch_this_thread().unwrap();
            assert_eq!(policy(), libc::SCHED_BATCH);
        })
        .join()
        .unwrap();
        assert_eq!(policy(), before, "the test's own thread is unchanged");
    }

    fn policy() -> i32 {
        // SAFETY: no arguments but the calling thread's pid 0.
        unsafe { libc::sched_getscheduler(0) }
    }
}
