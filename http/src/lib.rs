//! rgunicorn-http: the one home of HTTP/1.1 for rgunicorn's workers and its TLS front.
//!
//! Strict request parsing ([`request`]), chunked bodies ([`chunked`]), the field-line
//! grammar both share (`fields`) and the HTTP date ([`date`]). It knows nothing of apps,
//! WSGI or sockets: the workers crate builds environs and frames app responses on top of
//! it, the front proxies with it, and because both parse with this code they agree on
//! framing byte for byte.

pub mod chunked;
pub mod date;
mod fields;
pub mod request;

pub use chunked::{ChunkedDecoder, DecodeProgress};
pub use request::{
    parse_request_head, percent_decode_latin1, BodyKind, Header, Limits, ParseError, RequestHead,
    TargetForm, Version,
};
