//! What every rgunicorn process (the master, a worker, the TLS front) does the same way,
//! so there is one way to do it: receive signals ([`signals`]), fork a child that handles
//! its own ([`Signals::fork`]), die with the master ([`parent`]), become another user
//! ([`privileges`]), keep only the descriptors it uses ([`fds`]), the exit codes a
//! child tells the master with ([`exit`]), count the log lines it could not write
//! ([`log_lines`]), and schedule its event loops ([`sched`]).
//!
//! It depends on no other rgunicorn crate, so the master (`rgunicorn`), the workers
//! (`rgunicorn-workers`) and the front can all use it without depending on each other.

pub mod exit;
pub mod fds;
pub mod log_lines;
pub mod parent;
pub mod privileges;
pub mod sched;
pub mod signals;

pub use signals::{Forked, Signals};
