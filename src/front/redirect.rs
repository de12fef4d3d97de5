//! The plain-HTTP listener: every request gets `301` to the same URI over https.
//!
//! The `Location` is `https://HOST[:PORT]TARGET`: HOST is the request's `Host` without
//! its port (or `server_name` when the request has none), PORT is `https_port` (the
//! port clients reach `listen` on; default the port of `listen`), omitted when 443. In
//! the reference deployment (`docker run -p 5000:443`), set `https_port = 5000`.
//! One request per connection; the request is parsed by `rgunicorn_http`, the workers'
//! own parser.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::time::Instant;

use mio::net::TcpStream;
use mio::Interest;

use rgunicorn_http::date::with_http_date;
use rgunicorn_http::{parse_request_head, reason};

use super::context::{Ctx, Key, Outcome};
use super::headers;
use super::http1::RequestInfo;
use super::log::AccessEntry;
use super::settings::FrontSettings;

const MAX_HEAD: usize = 16 * 1024;

enum State {
    Reading { since: Instant },
    Writing { since: Instant },
}

pub struct Redirect {
    sock: TcpStream,
    peer: SocketAddr,
    buf: Vec<u8>,
    out: Vec<u8>,
    state: State,
}

impl Redirect {
    pub fn new(
        mut sock: TcpStream,
        peer: SocketAddr,
        key: Key,
        ctx: &Ctx<'_>,
    ) -> io::Result<Redirect> {
        ctx.registry.register(
            &mut sock,
            key.token(),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(Redirect {
            sock,
            peer,
            buf: Vec::new(),
            out: Vec::new(),
            state: State::Reading { since: ctx.now },
        })
    }

    pub fn drive(&mut self, ctx: &Ctx<'_>) -> Outcome {
        if let State::Reading { .. } = self.state {
            let mut chunk = [0u8; 4096];
            loop {
                match self.sock.read(&mut chunk) {
                    Ok(0) => return Outcome::Closed,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Outcome::Closed,
                }
                if self.buf.len() > MAX_HEAD {
                    break;
                }
            }
            let settings = &ctx.rt.settings;
            match parse_request_head(&self.buf, &settings.limits) {
                Ok(Some(head)) => {
                    let info = RequestInfo::of(&head);
                    let head_only = head.is_head();
                    let mut origin = Vec::new();
                    head.target.write_origin_form(&mut origin);
                    let origin = String::from_utf8_lossy(&origin);
                    let (status, body) = match location(head.authority(), &origin, settings) {
                        Some(location) => (
                            301,
                            redirect_response(&location, head_only, settings, &mut self.out),
                        ),
                        None => (400, self.error_page(400, head_only, settings)),
                    };
                    self.log(ctx, &info, status, body);
                }
                Ok(None) if self.buf.len() <= MAX_HEAD => return Outcome::Open,
                Ok(None) => {
                    let body = self.error_page(431, false, settings);
                    self.log(ctx, &RequestInfo::default(), 431, body);
                }
                Err(err) => {
                    let body = self.error_page(err.status(), false, settings);
                    self.log(ctx, &RequestInfo::default(), err.status(), body);
                }
            }
            self.state = State::Writing { since: ctx.now };
        }
        while !self.out.is_empty() {
            match self.sock.write(&self.out) {
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Outcome::Open,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let _ = self.sock.shutdown(Shutdown::Write);
        Outcome::Closed
    }

    pub fn check_timeouts(&self, ctx: &Ctx<'_>) -> Outcome {
        let s = &ctx.rt.settings;
        let since = match self.state {
            State::Reading { since } | State::Writing { since } => since,
        };
        let limit = match self.state {
            State::Reading { .. } => s.client_header_timeout,
            State::Writing { .. } => s.send_timeout,
        };
        if ctx.now.saturating_duration_since(since) > limit {
            Outcome::Closed
        } else {
            Outcome::Open
        }
    }

    /// An error page; returns its body length.
    fn error_page(&mut self, status: u16, head_only: bool, settings: &FrontSettings) -> u64 {
        headers::error_response(status, head_only, settings, &mut self.out)
    }

    fn log(&self, ctx: &Ctx<'_>, info: &RequestInfo, status: u16, body_bytes: u64) {
        ctx.log.access(&AccessEntry {
            remote: &self.peer.ip().to_string(),
            request_line: info.request_line(),
            status,
            body_bytes,
            referer: info.referer(),
            user_agent: info.user_agent(),
            from_upstream: false,
        });
    }
}

/// The https URL for a request to `host` (the authority it names: an absolute target's,
/// else `Host`) and `target` (its origin form).
pub fn location(host: Option<&str>, target: &str, settings: &FrontSettings) -> Option<String> {
    let name = host
        .map(strip_port)
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
        })
        .map(str::to_string)
        .or_else(|| settings.server_name.clone())?;
    let port = match settings.https_port {
        443 => String::new(),
        port => format!(":{port}"),
    };
    // Only origin-form targets are echoed; anything else goes to the site root.
    let target = if target.starts_with('/') { target } else { "/" };
    Some(format!("https://{name}{port}{target}"))
}

/// `example.com:8080` → `example.com`; `[::1]:8080` → `[::1]`.
fn strip_port(host: &str) -> &str {
    let host = host.trim();
    if host.starts_with('[') {
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    host.rsplit_once(':').map_or(host, |(name, _)| name)
}

/// Append the 301 to `out`; returns the body length sent.
fn redirect_response(
    location: &str,
    head_only: bool,
    settings: &FrontSettings,
    out: &mut Vec<u8>,
) -> u64 {
    let body = format!(
        "<html>\r\n<head><title>301 {r}</title></head>\r\n<body>\r\n<center><h1>301 {r}</h1></center>\r\n</body>\r\n</html>\r\n",
        r = reason(301)
    );
    out.extend_from_slice(b"HTTP/1.1 301 Moved Permanently\r\n");
    if let Some(server) = &settings.server_header {
        out.extend_from_slice(format!("Server: {server}\r\n").as_bytes());
    }
    let date = with_http_date(str::to_string);
    out.extend_from_slice(
        format!(
            "Date: {date}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nLocation: {location}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    if head_only {
        return 0;
    }
    out.extend_from_slice(body.as_bytes());
    body.len() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_combine() {
        let mut s = FrontSettings::default();
        assert_eq!(
            location(Some("example.com"), "/a?b", &s).as_deref(),
            Some("https://example.com/a?b")
        );
        assert_eq!(
            location(Some("example.com:80"), "/", &s).as_deref(),
            Some("https://example.com/")
        );
        s.https_port = 5000;
        assert_eq!(
            location(Some("localhost:8080"), "/x", &s).as_deref(),
            Some("https://localhost:5000/x")
        );
        assert_eq!(
            location(Some("[::1]:8080"), "/", &s).as_deref(),
            Some("https://[::1]:5000/")
        );
        assert_eq!(location(None, "/", &s), None);
        s.server_name = Some("www.example.com".into());
        assert_eq!(
            location(None, "/", &s).as_deref(),
            Some("https://www.example.com:5000/")
        );
        assert_eq!(
            location(Some("evil\r\nx"), "/", &s).as_deref(),
            Some("https://www.example.com:5000/")
        );
    }
}
