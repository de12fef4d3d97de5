//! Exit codes between a child and the master: a protocol (gunicorn's, extended), kept in
//! one place because the master decides from them whether to respawn or to halt.
//! SIGNALS.md ("Exit codes") is the specification.

/// Stopped as asked, or retired.
pub const OK: i32 = 0;
/// Could not boot (event loop, signals, logs, privileges, certificate): do not respawn,
/// halt the master with this code (gunicorn's `WORKER_BOOT_ERROR`).
pub const BOOT_ERROR: i32 = 3;
/// The app could not be loaded: halt the master with this code (gunicorn's
/// `APP_LOAD_ERROR`).
pub const APP_LOAD_ERROR: i32 = 4;
/// A worker that was serving hit an error it cannot recover from (its `poll` failed):
/// unlike 3 this says nothing about the next worker, so the master starts a replacement.
pub const RUNTIME_ERROR: i32 = 5;

/// Whether a child's exit code means the next one would fail the same way.
pub fn halts_the_master(code: i32) -> bool {
    code == BOOT_ERROR || code == APP_LOAD_ERROR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_boot_and_app_load_errors_halt() {
        assert!(halts_the_master(BOOT_ERROR));
        assert!(halts_the_master(APP_LOAD_ERROR));
        for code in [OK, 1, 2, RUNTIME_ERROR, 137] {
            assert!(!halts_the_master(code), "{code}");
        }
    }
}
