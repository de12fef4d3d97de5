//! Wall-clock formatting lives in `rgunicorn_http::date` (the HTTP `Date` header and the
//! log timestamps, shared with the front); this re-export keeps `crate::clock` paths.

pub use rgunicorn_http::date::*;
