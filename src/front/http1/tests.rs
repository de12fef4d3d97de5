//! Unit tests of the HTTP/1 exchange: pipelining, re-framing both ways, local answers.
use super::*;
use rgunicorn_http::parse_response_head;

struct Fixture {
    session: Session,
    input: ByteQueue,
    output: Output,
    settings: FrontSettings,
    log: Logger,
    ids: u64,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            session: Session::new("192.0.2.1".parse().expect("ip"), Instant::now()),
            input: ByteQueue::default(),
            output: Output::default(),
            settings: FrontSettings::default(),
            log: Logger::stderr(),
            ids: 0,
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        self.input.extend(bytes);
        self.session.advance(
            &mut self.input,
            &mut self.output,
            false,
            false,
            &self.settings,
            &self.log,
            &mut self.ids,
            Instant::now(),
        );
    }

    fn respond(&mut self, id: u64, raw: &[u8], body: &[u8]) {
        let head = parse_response_head(raw, false)
            .expect("valid head")
            .expect("complete head");
        self.session
            .on_head(id, &head, &mut self.output, &self.settings, false);
        self.session.on_data(id, body, &mut self.output, BUF_CAP);
        self.session
            .on_end(id, &mut self.output, &self.log, Instant::now());
    }

    fn written(&mut self) -> String {
        let text = String::from_utf8_lossy(self.output.as_slice()).into_owned();
        let n = self.output.len();
        self.output.consume(n);
        text
    }
}

#[test]
fn pipelined_requests_are_parsed_ahead_and_answered_in_order() {
    let mut f = Fixture::new();
    f.feed(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nHEAD /b HTTP/1.1\r\nHost: h\r\n\r\nGET /c HTTP/1.1\r\nHost: h\r\n\r\n");
    let ids: Vec<u64> = f.session.exchanges.iter().map(|x| x.id).collect();
    assert_eq!(ids, [1, 2, 3]);
    assert!(f
        .session
        .exchanges
        .iter()
        .all(|x| x.unsent() && x.idempotent));
    assert!(
        String::from_utf8_lossy(&f.session.exchanges[1].head).starts_with("HEAD /b HTTP/1.1\r\n")
    );
    // A response for the second cannot be taken before the first is answered.
    assert!(!f.session.can_take(2, &f.output, BUF_CAP));
    f.respond(1, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n", b"ok");
    assert!(f.written().ends_with("Content-Length: 2\r\n\r\nok"));
    assert!(f.session.can_take(2, &f.output, BUF_CAP));
    f.respond(2, b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", b"");
    let head = f.written();
    assert!(
        head.contains("Content-Length: 9\r\n") && head.ends_with("\r\n\r\n"),
        "{head}"
    );
    assert_eq!(f.session.exchanges.len(), 1);
}

#[test]
fn until_close_body_is_rechunked_for_http11_and_closes_http10() {
    let mut f = Fixture::new();
    f.feed(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    f.respond(1, b"HTTP/1.0 200 OK\r\n\r\n", b"hello");
    assert!(f
        .written()
        .ends_with("Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"));
    assert!(!f.session.stopped());

    let mut f = Fixture::new();
    f.feed(b"GET / HTTP/1.0\r\n\r\n");
    f.respond(1, b"HTTP/1.0 200 OK\r\n\r\n", b"hello");
    assert!(f.written().ends_with("Connection: close\r\n\r\nhello"));
    assert!(f.session.finished());
}

#[test]
fn a_bad_request_is_answered_after_the_good_ones_before_it() {
    let mut f = Fixture::new();
    f.feed(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\n\r\n");
    assert_eq!(f.session.exchanges.len(), 2);
    assert!(f.written().is_empty(), "the 400 waits for /a");
    f.respond(1, b"HTTP/1.1 204 No Content\r\n\r\n", b"");
    f.session.advance(
        &mut f.input,
        &mut f.output,
        false,
        false,
        &f.settings,
        &f.log,
        &mut f.ids,
        Instant::now(),
    );
    let text = f.written();
    assert!(text.starts_with("HTTP/1.1 204"), "{text}");
    assert!(text.contains("HTTP/1.1 400 Bad Request"), "{text}");
    assert!(f.session.finished());
}

#[test]
fn a_body_too_large_is_refused_before_it_is_read() {
    let mut f = Fixture::new();
    f.settings.client_max_body_size = 10;
    f.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n");
    assert!(f.written().starts_with("HTTP/1.1 413"));
    assert!(f.session.finished());
}

#[test]
fn chunked_request_bodies_are_reframed_and_not_replayable() {
    let mut f = Fixture::new();
    f.feed(b"PUT / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;x=1\r\nabc\r\n");
    let x = &f.session.exchanges[0];
    assert!(!x.idempotent, "a request with a body is never sent twice");
    assert_eq!(x.body_out.as_slice(), b"3\r\nabc\r\n");
    f.feed(b"0\r\n\r\n");
    let x = &f.session.exchanges[0];
    assert!(matches!(x.body, RequestBody::Done));
    assert_eq!(x.body_out.as_slice(), b"3\r\nabc\r\n0\r\n\r\n");
}
