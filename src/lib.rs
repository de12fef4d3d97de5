//! rgunicorn: the control plane. Configuration ([`config`]), the master process
//! ([`arbiter`]) with its listeners ([`listeners`]) and pidfile, and the TLS front
//! ([`front`]). Everything that runs inside a worker lives in the `rgunicorn-workers` crate.

pub mod config;
pub mod front;

pub use rgunicorn_workers as workers;
