//! The properties the fuzz targets check, in one file included by both the cargo-fuzz
//! targets (fuzz/fuzz_targets/) and the workspace test http/tests/fuzz_regressions.rs,
//! which replays every request fixture and every input in fuzz/regressions/ through
//! them: a crash found once stays a test forever. Each check panics on a violation.
//!
//! - [`request_head`]: no panic on any input; an accepted head is accepted alone and
//!   every shorter prefix of it is incomplete, never an error; a refused input is
//!   refused with the same status (or incomplete) at any shorter prefix.
//! - [`chunked`]: a chunked body decodes to the same data, boundary and verdict whole or
//!   in pieces with the output capped, and re-encodes to the same data.
//! - [`response_head`]: the upstream response parser never panics, keeps its head inside
//!   the input, and frames the body it announces the same whole or in pieces.
//! - [`framing`]: the differential. The worker reads a byte stream whole and its bodies
//!   uncapped; the front reads the same stream in pieces as they arrive, with its
//!   buffers capped. Both must see the same requests (method, target, version, fields,
//!   body bytes) ending at the same offsets, and refuse at the same point with the same
//!   status. And a request as the front forwards it (origin-form target, hop-by-hop and
//!   framing fields dropped, framing re-stated, a chunked body re-encoded) must be
//!   framed by the worker into the same request.

#![allow(dead_code)]

use rgunicorn_http::{
    is_framing_field, parse_request_head, parse_response_head, push_chunk, BodyDecoder,
    ChunkedDecoder, Framing, Limits, ParseError, Version, LAST_CHUNK,
};

/// Limits small enough that fuzzed inputs reach every limit check.
const TINY: Limits = Limits {
    request_line: 32,
    fields: 4,
    field_size: 24,
};

/// Piece sizes derived from the input itself, so a crash reproduces from its bytes.
struct Pieces(u64);

impl Pieces {
    fn new(data: &[u8]) -> Pieces {
        let seed = data
            .iter()
            .take(16)
            .fold(data.len() as u64 ^ 0x9e37_79b9_7f4a_7c15, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
        Pieces(seed | 1)
    }

    /// 1 to `max` inclusive.
    fn next(&mut self, max: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        1 + (self.0 % max as u64) as usize
    }
}

/// A refusal's status, or `None` while more input is needed.
fn verdict<T>(r: &Result<Option<T>, ParseError>) -> Option<u16> {
    match r {
        Err(e) => Some(e.status()),
        Ok(_) => None,
    }
}

pub fn request_head(data: &[u8]) {
    for limits in [Limits::default(), TINY] {
        let whole = parse_request_head(data, &limits);
        match &whole {
            Ok(Some(head)) => {
                assert!(head.head_len <= data.len());
                assert_ne!(
                    head.body,
                    Framing::UntilClose,
                    "a request never runs to close"
                );
                assert!(!head.method.is_empty() && !head.target.path().is_empty());
                if head.version == Version::Http11 {
                    assert!(head.header("host").is_some(), "1.1 without Host accepted");
                }
                let alone = parse_request_head(&data[..head.head_len], &limits);
                assert_eq!(alone, whole, "the head alone parses differently");
                for cut in [head.head_len - 1, head.head_len / 2] {
                    assert_eq!(
                        parse_request_head(&data[..cut], &limits),
                        Ok(None),
                        "a prefix of an accepted head ({cut} bytes) is not incomplete"
                    );
                }
            }
            Ok(None) => {}
            Err(e) => {
                for cut in [data.len() - 1, data.len() / 2] {
                    let prefix = verdict(&parse_request_head(&data[..cut], &limits));
                    assert!(
                        prefix.is_none() || prefix == Some(e.status()),
                        "whole: {e:?}, a {cut}-byte prefix: {prefix:?}"
                    );
                }
            }
        }
    }
}

/// Everything one way of decoding a chunked body saw.
#[derive(Debug, PartialEq, Eq)]
struct Chunked {
    data: Vec<u8>,
    consumed: usize,
    done: bool,
    refused: Option<u16>,
}

fn decode_chunked(body: &[u8], max_body: u64, pieces: Option<&mut Pieces>) -> Chunked {
    let mut decoder = ChunkedDecoder::new().with_max_body(max_body);
    let mut seen = Chunked {
        data: Vec::new(),
        consumed: 0,
        done: false,
        refused: None,
    };
    let mut pieces = pieces;
    let mut fed = 0;
    loop {
        let (more, cap) = match pieces.as_deref_mut() {
            Some(p) => (p.next(7), p.next(5)),
            None => (body.len(), usize::MAX),
        };
        fed = (fed + more).min(body.len());
        // Decode everything available before feeding more, as a connection does.
        loop {
            match decoder.next_capped(&body[seen.consumed..fed], cap) {
                Err(e) => {
                    // Where in the line the refusal came is not part of the verdict.
                    seen.refused = Some(e.status());
                    seen.consumed = 0;
                    return seen;
                }
                Ok(step) => {
                    seen.data.extend_from_slice(step.data);
                    seen.consumed += step.consumed;
                    if step.done {
                        seen.done = true;
                        assert!(decoder.declared() >= seen.data.len() as u64);
                        return seen;
                    }
                    if step.consumed == 0 {
                        break;
                    }
                }
            }
        }
        if fed == body.len() {
            return seen;
        }
    }
}

pub fn chunked(data: &[u8]) {
    // A fixture's chunked body (after its head), else the whole input as a body.
    let body = match parse_request_head(data, &Limits::default()) {
        Ok(Some(head)) if head.body == Framing::Chunked => &data[head.head_len..],
        _ => data,
    };
    for max_body in [0, 64] {
        let whole = decode_chunked(body, max_body, None);
        let split = decode_chunked(body, max_body, Some(&mut Pieces::new(data)));
        assert_eq!(whole, split, "whole and split decoding disagree");
        if whole.done {
            let mut encoded = Vec::new();
            for piece in whole.data.chunks(13) {
                push_chunk(&mut encoded, piece);
            }
            encoded.extend_from_slice(LAST_CHUNK);
            let again = decode_chunked(&encoded, 0, None);
            assert_eq!((again.data, again.done), (whole.data, true), "re-encoding");
        }
    }
}

pub fn response_head(data: &[u8]) {
    let head_request = data.first().is_some_and(|b| b & 1 == 1);
    let whole = parse_response_head(data, head_request);
    let Ok(Some(head)) = &whole else {
        return;
    };
    assert!(head.head_len <= data.len());
    assert!((100..=599).contains(&head.status));
    if head.framing == Framing::UntilClose {
        assert!(
            !head.keep_alive,
            "a body that ends at close keeps the connection"
        );
    }
    assert_eq!(
        parse_response_head(&data[..head.head_len - 1], head_request),
        Ok(None)
    );
    // The body as the front reads it: whole, and in capped pieces.
    let body = &data[head.head_len..];
    let read = |pieces: Option<&mut Pieces>| {
        let mut decoder = BodyDecoder::response(head.framing);
        let mut out = Vec::new();
        let mut pos = 0;
        let mut pieces = pieces;
        loop {
            let (end, cap) = match pieces.as_deref_mut() {
                Some(p) => ((pos + p.next(9)).min(body.len()), p.next(4)),
                None => (body.len(), usize::MAX),
            };
            match decoder.next_capped(&body[pos..end], cap) {
                // Where in a line the refusal came is not part of the verdict.
                Err(e) => return (out, 0, Some(e.status())),
                Ok(step) => {
                    out.extend_from_slice(step.data);
                    pos += step.consumed;
                    if step.done || (step.consumed == 0 && end == body.len()) {
                        return (out, pos, None);
                    }
                }
            }
        }
    };
    assert_eq!(read(None), read(Some(&mut Pieces::new(data))));
}

/// One request as a reader of the stream saw it, or where the stream stopped making sense.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Request {
        method: String,
        target: String,
        path: String,
        query: String,
        version: Version,
        fields: Vec<(String, Vec<u8>)>,
        framing: Framing,
        body: Vec<u8>,
        /// Offsets in the stream where its head starts and ends, and its body ends.
        head_start: usize,
        head_end: usize,
        body_end: usize,
    },
    Refused(u16),
    /// The stream ended inside a request.
    Incomplete,
}

/// Reads every request of `stream`: whole and uncapped (the worker) when `pieces` is
/// `None`, else arriving in pieces and with capped output (the front).
fn read_requests(
    stream: &[u8],
    limits: &Limits,
    max_body: u64,
    pieces: Option<Pieces>,
) -> Vec<Seen> {
    let capped = pieces.is_some();
    let mut pieces = pieces;
    let mut seen = Vec::new();
    let mut fed = 0;
    let mut offset = 0; // stream offset of buf[0]
    let mut feed = |fed: &mut usize| -> bool {
        if *fed == stream.len() {
            return false;
        }
        let more = pieces.as_mut().map_or(stream.len(), |p| p.next(11));
        *fed = (*fed + more).min(stream.len());
        true
    };
    loop {
        // The head: reparsed as bytes arrive, as both connections do.
        let head = loop {
            match parse_request_head(&stream[offset..fed], limits) {
                Err(e) => {
                    seen.push(Seen::Refused(e.status()));
                    return seen;
                }
                Ok(Some(head)) => break head,
                Ok(None) => {
                    if !feed(&mut fed) {
                        if fed > offset {
                            seen.push(Seen::Incomplete);
                        }
                        return seen;
                    }
                }
            }
        };
        let head_end = offset + head.head_len;
        let mut request = Seen::Request {
            method: head.method.to_owned(),
            target: head.target.raw().to_owned(),
            path: head.target.path().to_owned(),
            query: head.target.query().to_owned(),
            version: head.version,
            fields: head
                .fields
                .iter()
                .map(|f| (f.name.to_owned(), f.value.to_vec()))
                .collect(),
            framing: head.body,
            body: Vec::new(),
            head_start: offset,
            head_end,
            body_end: head_end,
        };
        let keep_alive = head.keep_alive;
        let mut body = match BodyDecoder::request(head.body, limits, max_body) {
            Ok(body) => body,
            Err(e) => {
                seen.push(Seen::Refused(e.status()));
                return seen;
            }
        };
        let mut pos = head_end;
        loop {
            // The cap shapes how much one step hands out, never where a body ends.
            let cap = if capped { 3 } else { usize::MAX };
            match body.next_capped(&stream[pos..fed], cap) {
                Err(e) => {
                    seen.push(Seen::Refused(e.status()));
                    return seen;
                }
                Ok(step) => {
                    if let Seen::Request { body, .. } = &mut request {
                        body.extend_from_slice(step.data);
                    }
                    pos += step.consumed;
                    if step.done {
                        break;
                    }
                    if step.consumed == 0 && !feed(&mut fed) {
                        seen.push(Seen::Incomplete);
                        return seen;
                    }
                }
            }
        }
        if let Seen::Request { body_end, .. } = &mut request {
            *body_end = pos;
        }
        seen.push(request);
        offset = pos;
        if !keep_alive || seen.len() >= 16 {
            return seen;
        }
    }
}

/// A request as the front forwards it to the workers: origin form, HTTP/1.1, every field
/// but hop-by-hop and framing ones, a Host (the target's authority wins, as RFC 9112
/// 3.2.2 says a proxy must send), framing re-stated, a chunked body re-encoded.
fn forward(stream: &[u8], seen: &Seen, limits: &Limits) -> Vec<u8> {
    let Seen::Request {
        framing,
        body,
        head_start,
        head_end,
        ..
    } = seen
    else {
        return Vec::new();
    };
    let head = match parse_request_head(&stream[*head_start..*head_end], limits) {
        Ok(Some(head)) => head,
        other => panic!("a head seen in the stream does not parse alone: {other:?}"),
    };
    let mut out = Vec::new();
    out.extend_from_slice(head.method.as_bytes());
    out.push(b' ');
    head.target.write_origin_form(&mut out);
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let authority = head.authority().unwrap_or("upstream");
    out.extend_from_slice(format!("Host: {authority}\r\n").as_bytes());
    for field in head.fields.iter() {
        if head.fields.is_hop_by_hop(field.name)
            || is_framing_field(field.name)
            || field.name.eq_ignore_ascii_case("host")
        {
            continue;
        }
        out.extend_from_slice(field.name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(field.value);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(format!("Content-Length: {n}\r\n\r\n").as_bytes())
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n"),
        Framing::NoBody | Framing::UntilClose => out.extend_from_slice(b"\r\n"),
    }
    match framing {
        Framing::Chunked => {
            for piece in body.chunks(7) {
                push_chunk(&mut out, piece);
            }
            out.extend_from_slice(LAST_CHUNK);
        }
        _ => out.extend_from_slice(body),
    }
    out
}

pub fn framing(data: &[u8]) {
    for (limits, max_body) in [(Limits::default(), 0), (TINY, 16)] {
        let worker = read_requests(data, &limits, max_body, None);
        let front = read_requests(data, &limits, max_body, Some(Pieces::new(data)));
        assert_eq!(
            worker, front,
            "the worker and the front frame the stream differently"
        );
        if limits != Limits::default() {
            continue;
        }
        for request in &worker {
            let Seen::Request {
                method,
                path,
                query,
                framing,
                body,
                ..
            } = request
            else {
                continue;
            };
            let forwarded = forward(data, request, &limits);
            let again = read_requests(&forwarded, &limits, max_body, None);
            let Some(Seen::Request {
                method: m,
                path: p,
                query: q,
                framing: f,
                body: b,
                body_end,
                ..
            }) = again.first()
            else {
                panic!(
                    "the forwarded request is not framed as a request: {again:?}\n{}",
                    String::from_utf8_lossy(&forwarded)
                );
            };
            assert_eq!(
                (m, p, q, b),
                (method, path, query, body),
                "forwarding changed it"
            );
            assert_eq!(*body_end, forwarded.len(), "forwarded body ends elsewhere");
            let same_kind = matches!(
                (framing, f),
                (Framing::NoBody, Framing::NoBody)
                    | (Framing::Chunked, Framing::Chunked)
                    | (Framing::Length(_), Framing::Length(_))
            );
            assert!(same_kind, "framing {framing:?} forwarded as {f:?}");
        }
    }
}
