//! HTTP/1.1 for the worker and the TLS front: strict request parsing ([`parse`]),
//! chunked body decoding ([`chunked`]) and the error statuses a bad request earns.
//!
//! The front parses with the same code, so a request the worker would refuse never
//! crosses, and both agree on framing byte for byte. Response writing lives beside the
//! connection state in the worker.

pub mod chunked;
mod fields;
pub mod parse;

pub use chunked::{ChunkedDecoder, DecodeProgress};
pub use parse::{
    parse_request_head, percent_decode_latin1, BodyKind, Header, Limits, ParseError, RequestHead,
    TargetForm, Version,
};
