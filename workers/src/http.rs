//! HTTP/1.1 lives in the `rgunicorn-http` crate, shared with the TLS front; this
//! re-export keeps the `crate::http::...` paths of the worker's modules working.

pub use rgunicorn_http::*;
