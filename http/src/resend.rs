//! The front and the workers' one exchange of their own: a worker whose app threads are
//! all held up may hand a request back, unstarted, for the front to send to another
//! worker (DESIGN.md, "A worker whose threads are all held up").
//!
//! - The front offers it on a request it can send again whole (no body) by adding
//!   [`OFFER_FIELD`]; it removes the field from what clients send.
//! - A worker takes the offer only from a trusted unix-socket peer (the front's user), and
//!   only while none of its app threads has finished a request or been free for a while.
//!   It answers [`HANDED_BACK`] instead of queueing the request; the app never sees it.
//! - The front then sends the request again on a new connection, without the offer, so a
//!   request is handed back at most once.

/// The request field by which the front offers to take a request back.
pub const OFFER_FIELD: &str = "x-rgunicorn-resend";

/// A worker's whole answer for a request it hands back: the connection stays open.
pub const HANDED_BACK: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nX-Rgunicorn-Resend: busy\r\nContent-Length: 0\r\n\r\n";

/// The line the front adds to an offered request's head, before its blank line.
pub const OFFER_LINE: &[u8] = b"X-Rgunicorn-Resend: 1\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_response_head, Framing};

    #[test]
    fn the_handed_back_answer_is_a_complete_empty_response_that_names_the_field() {
        let head = parse_response_head(HANDED_BACK, false)
            .expect("valid")
            .expect("complete");
        assert_eq!(head.status, 503);
        assert_eq!(head.head_len, HANDED_BACK.len());
        assert!(head.keep_alive);
        assert!(matches!(head.framing, Framing::Length(0)));
        assert!(head.fields.get(OFFER_FIELD).is_some());
        assert!(OFFER_LINE
            .to_ascii_lowercase()
            .starts_with(OFFER_FIELD.as_bytes()));
    }
}
