//! rgunicorn-http: the one home of HTTP/1.1 for rgunicorn's workers and its TLS front.
//!
//! - [`request`]: a request head parsed by httparse and checked strictly, borrowed from
//!   the buffer;
//! - [`target`]: the request target's four forms (RFC 9112 3.2), decoded once;
//! - [`response`]: an upstream response head and its framing (RFC 9112 6.3);
//! - [`body`]: the one [`Framing`] type and a [`BodyDecoder`] for every framing;
//! - [`chunked`]: chunked decoding (requests and responses alike) and encoding;
//! - [`fields`]: the field-line grammar, borrowed [`Fields`], hop-by-hop names;
//! - [`limits`]: gunicorn's three request limits, one table for workers and front;
//! - [`resend`]: a request a worker hands back to the front, unstarted;
//! - [`Version`], [`reason`], and [`date`] (the `Date` header, log timestamps).
//!
//! It knows nothing of apps, WSGI or sockets: the workers crate builds environs and
//! frames app responses on top of it, the front proxies with it, and because both parse
//! and frame with this code they agree on where every message ends.

pub mod body;
pub mod chunked;
pub mod date;
mod error;
pub mod fields;
pub mod limits;
mod lines;
pub mod request;
pub mod resend;
pub mod response;
mod status;
pub mod target;
mod version;

pub use body::{BodyDecoder, Decoded, Framing};
pub use chunked::{push_chunk, ChunkedDecoder, DecodeProgress, LAST_CHUNK};
pub use error::ParseError;
pub use fields::{is_framing_field, is_hop_by_hop, Field, Fields, Header, HOP_BY_HOP};
pub use limits::{Limit, LimitError, Limits};
pub use request::{parse_request_head, RequestHead};
pub use response::{parse_response_head, ResponseHead};
pub use status::reason;
pub use target::{split_authority, Target, TargetForm};
pub use version::Version;
