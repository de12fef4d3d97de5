//! Keeping only the descriptors a process uses. A forked child inherits every descriptor
//! the master holds (the workers' listening sockets, its signal socket pair, log files,
//! an embedding program's own): the front, which runs no app code, closes all of them
//! but its own, so a socket the master closes is closed, and a front orphaned by a
//! master killed with SIGKILL holds nothing but its own ports.

use std::io;
use std::os::fd::RawFd;

/// Close every descriptor but stdin, stdout, stderr and `keep`. Returns how many were
/// closed.
///
/// # Safety
///
/// Nothing that owns one of the closed descriptors (a `File`, a socket, a static
/// logger) may use or drop it afterwards: call it in a freshly forked child, before it
/// opens anything, over memory it will never drop (it leaves through `process::exit`).
pub unsafe fn close_all_except(keep: &[RawFd]) -> io::Result<usize> {
    // Listed first, closed after: the listing's own descriptor is closed by then and
    // its number just fails with EBADF.
    let open: Vec<RawFd> = std::fs::read_dir("/proc/self/fd")?
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    let mut closed = 0;
    for fd in open {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: the caller guarantees nothing uses or drops these descriptors.
            if unsafe { libc::close(fd) } == 0 {
                closed += 1;
            }
        }
    }
    Ok(closed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn only_the_kept_descriptors_stay_open() {
        // In a child, as the front does: the test process keeps its descriptors.
        let kept = std::fs::File::open("/proc/self/stat").expect("open");
        let other = std::fs::File::open("/proc/self/stat").expect("open");
        let (kept_fd, other_fd) = (kept.as_raw_fd(), other.as_raw_fd());
        // SAFETY: the test harness has other threads; the child only reads a directory
        // (glibc's fork leaves malloc usable in the child), closes and checks
        // descriptors, and leaves with _exit.
        match unsafe { nix::unistd::fork() }.expect("fork") {
            nix::unistd::ForkResult::Child => {
                // SAFETY: the child never uses `kept`/`other` again and leaves with _exit.
                let closed = unsafe { close_all_except(&[kept_fd]) };
                let ok = closed.is_ok()
                    && nix::fcntl::fcntl(kept_fd, nix::fcntl::FcntlArg::F_GETFD).is_ok()
                    && nix::fcntl::fcntl(other_fd, nix::fcntl::FcntlArg::F_GETFD).is_err();
                // SAFETY: _exit ends the child without running the parent's destructors.
                unsafe { libc::_exit(if ok { 0 } else { 1 }) };
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).expect("wait");
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
