//! rgunicorn-workers: everything that runs inside a worker process.
//!
//! The master (the `rgunicorn` crate) binds listeners, forks, and hands each child a
//! [`WorkerConfig`]; from there this crate owns the process: the mio event loop
//! ([`worker`]) and its connections ([`conn`]), HTTP/1.1 parsing ([`http`]) and response
//! framing ([`respond`]), the app thread pool ([`pool`]), the logs ([`log`]) and the
//! apps themselves ([`app`]).

pub mod access_json;
pub mod app;
pub mod clock;
pub mod config;
pub mod conn;
pub mod environ;
pub mod http;
pub mod log;
pub mod pool;
pub mod respond;
pub mod stream;
pub mod worker;

pub use app::{App, Body, Environ, Input, Mode, Response};
pub use config::WorkerConfig;
pub use stream::Listener;
