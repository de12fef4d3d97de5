//! rgunicorn: the control plane. Configuration ([`config`]), the start-up checks
//! ([`startup`]), the master process ([`arbiter`]) with its listeners ([`listeners`]) and
//! pidfile ([`pidfile`]), and the TLS front ([`front`]). Everything that runs inside a
//! worker lives in the `rgunicorn-workers` crate.

pub mod arbiter;
pub mod config;
pub mod front;
pub mod listeners;
pub mod pidfile;
pub mod startup;

pub use rgunicorn_workers as workers;
