//! HTTP/1.1 lives in the `rgunicorn-http` crate, shared with the TLS front; this
//! re-export keeps the `crate::http::...` paths of the worker's modules working.
//!
//! One exception, for the front only: until src/front reads `rgunicorn_http` directly
//! (issue 11), `parse_request_head`, `RequestHead` and `BodyKind` here are the owned head
//! it was written against, built from the borrowed one. The worker itself uses
//! `rgunicorn_http::parse_request_head`. Delete [`legacy`] once the front has moved.

pub use legacy::{parse_request_head, BodyKind, RequestHead};
pub use rgunicorn_http::*;

pub mod legacy {
    use rgunicorn_http::{Framing, Header, Limits, ParseError, Version};

    /// How the request body is delimited.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum BodyKind {
        None,
        Length(u64),
        Chunked,
    }

    /// A request head copied out of its buffer.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RequestHead {
        pub method: String,
        pub target: String,
        pub version: Version,
        pub headers: Vec<Header>,
        pub body: BodyKind,
        pub keep_alive: bool,
        pub expect_continue: bool,
        pub head_len: usize,
    }

    /// `rgunicorn_http::parse_request_head`, copied into an owned head.
    pub fn parse_request_head(
        buf: &[u8],
        limits: &Limits,
    ) -> Result<Option<RequestHead>, ParseError> {
        Ok(
            rgunicorn_http::parse_request_head(buf, limits)?.map(|head| RequestHead {
                method: head.method.to_owned(),
                target: head.target.raw().to_owned(),
                version: head.version,
                headers: head
                    .fields
                    .iter()
                    .map(|f| Header {
                        name: f.name.to_owned(),
                        value: f.value.to_vec(),
                    })
                    .collect(),
                body: match head.body {
                    Framing::Length(n) => BodyKind::Length(n),
                    Framing::Chunked => BodyKind::Chunked,
                    Framing::NoBody | Framing::UntilClose => BodyKind::None,
                },
                keep_alive: head.keep_alive,
                expect_continue: head.expect_continue,
                head_len: head.head_len,
            }),
        )
    }
}
