//! Sockets that cross an exec: the USR2 binary upgrade (the old master re-executes the
//! binary with its listening sockets inherited: the workers' named in `RGUNICORN_FD`, as
//! gunicorn does with `GUNICORN_FD`, the front's in `RGUNICORN_FRONT_FD`), systemd socket
//! activation (`LISTEN_FDS`/`LISTEN_PID`), and systemd's readiness protocol (`sd_notify`
//! over `NOTIFY_SOCKET`). The arbiter decides when; this module knows the variables and
//! the descriptors.

use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::process::Command;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::unistd::Pid;

/// The variable naming the listening fds a new master inherits from the old one.
pub const FD_VAR: &str = "RGUNICORN_FD";
/// The variable naming the front's listening fds, each with its role:
/// `tls:5,tls:6,redirect:7`.
pub const FRONT_FD_VAR: &str = "RGUNICORN_FRONT_FD";
/// systemd passes its sockets from fd 3 on.
const SD_LISTEN_FDS_START: RawFd = 3;

/// Where this master's listening sockets come from, besides its own binds.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Inherited {
    /// From an old master (USR2): matched against the binds.
    pub upgrade: Vec<RawFd>,
    /// From systemd: all of them are the listeners; the binds are not used.
    pub systemd: Vec<RawFd>,
    /// The front's, from an old master (USR2): matched against the `[front]` table.
    pub front: FrontFds,
}

/// The front's listening sockets as descriptors, by role: one TLS socket per event loop,
/// and the plain-HTTP redirect.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FrontFds {
    pub tls: Vec<RawFd>,
    pub redirect: Option<RawFd>,
}

impl FrontFds {
    /// `tls:5,tls:6,redirect:7`; entries it does not understand are left out.
    fn parse(text: &str) -> FrontFds {
        let mut fds = FrontFds::default();
        for entry in text.split(',') {
            let Some((role, fd)) = entry.trim().split_once(':') else {
                continue;
            };
            let Ok(fd) = fd.parse() else {
                continue;
            };
            match role {
                "tls" => fds.tls.push(fd),
                "redirect" => fds.redirect = Some(fd),
                _ => {}
            }
        }
        fds
    }

    fn to_var(&self) -> String {
        let tls = self.tls.iter().map(|fd| format!("tls:{fd}"));
        let redirect = self.redirect.iter().map(|fd| format!("redirect:{fd}"));
        tls.chain(redirect).collect::<Vec<_>>().join(",")
    }

    fn all(&self) -> impl Iterator<Item = RawFd> + '_ {
        self.tls.iter().copied().chain(self.redirect)
    }

    pub fn is_empty(&self) -> bool {
        self.tls.is_empty() && self.redirect.is_none()
    }
}

impl Inherited {
    /// Read (and remove, so workers and later execs do not see them) the variables.
    pub fn take_from_env() -> Inherited {
        let mut found = Inherited::parse(
            std::env::var(FD_VAR).ok().as_deref(),
            std::env::var("LISTEN_FDS").ok().as_deref(),
            std::env::var("LISTEN_PID").ok().as_deref(),
            std::process::id(),
        );
        found.front = std::env::var(FRONT_FD_VAR)
            .map(|v| FrontFds::parse(&v))
            .unwrap_or_default();
        // The master is still single-threaded: nothing reads the environment concurrently.
        for key in [
            FD_VAR,
            FRONT_FD_VAR,
            "LISTEN_FDS",
            "LISTEN_PID",
            "LISTEN_FDNAMES",
        ] {
            std::env::remove_var(key);
        }
        found
    }

    fn parse(fd_var: Option<&str>, fds: Option<&str>, pid: Option<&str>, me: u32) -> Inherited {
        let upgrade = fd_var
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_default();
        let systemd = match (fds.and_then(|n| n.parse::<RawFd>().ok()), pid) {
            (Some(n), Some(pid)) if pid.trim() == me.to_string() && n > 0 => {
                (SD_LISTEN_FDS_START..SD_LISTEN_FDS_START + n).collect()
            }
            _ => Vec::new(),
        };
        Inherited {
            upgrade,
            systemd,
            front: FrontFds::default(),
        }
    }

    /// Whether an old master started this one (USR2).
    pub fn is_upgrade(&self) -> bool {
        !self.upgrade.is_empty() || !self.front.is_empty()
    }
}

/// USR2: start the binary at `exe` again with `args` (argv without argv[0]), handing it
/// the workers' sockets `fds` and the front's `front`. Returns the new master's pid; it is
/// our child, reaped like any other.
pub fn spawn_new_master(
    exe: &Path,
    args: &[OsString],
    fds: &[RawFd],
    front: &FrontFds,
) -> io::Result<Pid> {
    let list: Vec<String> = fds.iter().map(|fd| fd.to_string()).collect();
    let every = || fds.iter().copied().chain(front.all());
    for fd in every() {
        set_cloexec(fd, false)?;
    }
    let mut command = Command::new(exe);
    command.args(args).env(FD_VAR, list.join(","));
    if !front.is_empty() {
        command.env(FRONT_FD_VAR, front.to_var());
    }
    let spawned = command.spawn();
    // Only the new master inherits them; our own later children do not exec anyway.
    for fd in every() {
        let _ = set_cloexec(fd, true);
    }
    let child = spawned?;
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(io::Error::other)?);
    // Not waited through `Child`: the arbiter's waitpid loop reaps it.
    drop(child);
    Ok(pid)
}

fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let flags = if on {
        FdFlag::FD_CLOEXEC
    } else {
        FdFlag::empty()
    };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map_err(io::Error::from)?;
    Ok(())
}

/// Tell systemd about our state (`READY=1`, `RELOADING=1`, `STOPPING=1`) when it asked
/// (`NOTIFY_SOCKET`). Failures are ignored: the notification is advisory.
pub fn sd_notify(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        if let Ok(addr) = std::os::unix::net::SocketAddr::from_abstract_name(name) {
            let _ = sock.send_to_addr(state.as_bytes(), &addr);
        }
    } else {
        let _ = sock.send_to(state.as_bytes(), Path::new(&path));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_upgrade_fds() {
        let found = Inherited::parse(Some("5,6"), None, None, 10);
        assert_eq!(found.upgrade, vec![5, 6]);
        assert!(found.systemd.is_empty());
        assert!(found.is_upgrade());
    }

    #[test]
    fn systemd_fds_are_ours_only_when_listen_pid_is_our_pid() {
        let ours = Inherited::parse(None, Some("2"), Some("10"), 10);
        assert_eq!(ours.systemd, vec![3, 4]);
        let theirs = Inherited::parse(None, Some("2"), Some("11"), 10);
        assert!(theirs.systemd.is_empty());
        assert_eq!(Inherited::parse(None, None, None, 10), Inherited::default());
    }

    #[test]
    fn the_front_fds_keep_their_roles_across_the_exec() {
        let fds = FrontFds {
            tls: vec![7, 8],
            redirect: Some(9),
        };
        assert_eq!(fds.to_var(), "tls:7,tls:8,redirect:9");
        assert_eq!(FrontFds::parse(&fds.to_var()), fds);
        assert_eq!(fds.all().collect::<Vec<_>>(), vec![7, 8, 9]);
        let tls_only = FrontFds::parse("tls:5, junk, what:6, tls:x");
        assert_eq!(tls_only.tls, vec![5]);
        assert_eq!(tls_only.redirect, None);
        assert!(FrontFds::parse("").is_empty());
    }
}
