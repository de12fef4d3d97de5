//! rgunicorn-workers: everything that runs inside a worker process.
//!
//! The master (the `rgunicorn` crate) binds listeners, forks, and hands each child a
//! [`WorkerConfig`]; from there this crate owns the process: the mio event loop
//! ([`worker`]), HTTP/1.1 parsing and response framing ([`http`]), the app thread pool
//! ([`pool`]), the access and error logs ([`log`]) and the apps themselves ([`app`]).

pub mod app;
pub mod config;
pub mod http;

pub use app::{App, Body, Environ, Input, Mode, Response};
pub use config::WorkerConfig;
