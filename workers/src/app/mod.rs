//! The application interface (WSGI-style) and the built-in apps.
//!
//! An app receives an [`Environ`] (the PEP 3333 keys, built by the worker from the parsed
//! request) and an [`Input`] stream holding the request body, and answers a [`Response`]:
//! a status, headers and a [`Body`] that is bytes, a stream of chunks, or a file.
//! Rust apps implement [`App`]; so does the Python WSGI adapter ([`wsgi`], behind the
//! `python` cargo feature). Which app runs is chosen by [`spec`]: a built-in name
//! (`welcome`, the default, or `echo`) or a Python `module:callable`.

use std::borrow::Cow;
use std::fs::File;
use std::io::{self, Read};

pub mod echo;
pub mod spec;
pub mod welcome;
#[cfg(feature = "python")]
pub mod wsgi;

pub use spec::{AppError, AppSpec, DEFAULT_APP};

/// How the worker runs an app: decided once per app, never per request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The app never blocks: it runs on the event-loop thread, with no thread hop.
    Inline,
    /// The app may block (I/O, Python): it runs on the pool of `--threads` app threads.
    Threaded,
}

/// One request as the app sees it: the PEP 3333 environ keys, already decoded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Environ {
    /// REQUEST_METHOD, e.g. "GET".
    pub method: String,
    /// SCRIPT_NAME: the mount point (from the `SCRIPT_NAME` raw_env or header rules), usually "".
    pub script_name: String,
    /// PATH_INFO: the path, percent-decoded, without SCRIPT_NAME.
    pub path_info: String,
    /// QUERY_STRING, still encoded, without the '?'.
    pub query_string: String,
    /// RAW_URI: the request target exactly as received.
    pub raw_uri: String,
    /// CONTENT_TYPE, or "" when the request had none.
    pub content_type: String,
    /// CONTENT_LENGTH as the request gave it ("" when absent; chunked bodies have none).
    pub content_length: String,
    /// SERVER_NAME and SERVER_PORT: from Host, else from the listener.
    pub server_name: String,
    pub server_port: String,
    /// SERVER_PROTOCOL: "HTTP/1.0" or "HTTP/1.1".
    pub server_protocol: String,
    /// REMOTE_ADDR and REMOTE_PORT: the peer (or the trusted front's client), "" on unix sockets.
    pub remote_addr: String,
    pub remote_port: String,
    /// wsgi.url_scheme: "http" or "https".
    pub url_scheme: String,
    /// The request headers as received (name spelling kept, values latin-1 decoded), in order.
    pub headers: Vec<(String, String)>,
}

impl Environ {
    /// The first value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The environ as a WSGI server hands it to a Python app: every PEP 3333 CGI key, and
    /// one `HTTP_*` key per header name. Following gunicorn: repeated headers are joined
    /// with "," and header names containing '_' are dropped (they could spoof a dashed one).
    pub fn cgi_vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = vec![
            ("REQUEST_METHOD".into(), self.method.clone()),
            ("SCRIPT_NAME".into(), self.script_name.clone()),
            ("PATH_INFO".into(), self.path_info.clone()),
            ("QUERY_STRING".into(), self.query_string.clone()),
            ("RAW_URI".into(), self.raw_uri.clone()),
            ("SERVER_NAME".into(), self.server_name.clone()),
            ("SERVER_PORT".into(), self.server_port.clone()),
            ("SERVER_PROTOCOL".into(), self.server_protocol.clone()),
            ("REMOTE_ADDR".into(), self.remote_addr.clone()),
            ("REMOTE_PORT".into(), self.remote_port.clone()),
            ("wsgi.url_scheme".into(), self.url_scheme.clone()),
        ];
        if !self.content_type.is_empty() {
            vars.push(("CONTENT_TYPE".into(), self.content_type.clone()));
        }
        if !self.content_length.is_empty() {
            vars.push(("CONTENT_LENGTH".into(), self.content_length.clone()));
        }
        vars.extend(self.http_vars());
        vars
    }

    /// The `HTTP_*` keys of the environ, gunicorn's way: repeated headers joined with ",",
    /// names containing '_' dropped (they could spoof a dashed one), Content-Type and
    /// Content-Length left to their CGI keys.
    pub fn http_vars(&self) -> Vec<(String, String)> {
        let mut vars: Vec<(String, String)> = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            if name.contains('_') {
                continue;
            }
            let mut key = String::with_capacity(5 + name.len());
            key.push_str("HTTP_");
            key.extend(name.chars().map(|c| {
                if c == '-' {
                    '_'
                } else {
                    c.to_ascii_uppercase()
                }
            }));
            if key == "HTTP_CONTENT_TYPE" || key == "HTTP_CONTENT_LENGTH" {
                continue;
            }
            match vars.iter_mut().find(|(k, _)| *k == key) {
                Some((_, existing)) => {
                    existing.push(',');
                    existing.push_str(value);
                }
                None => vars.push((key, value.clone())),
            }
        }
        vars
    }
}

/// The request body as the app reads it (wsgi.input). The worker has received the whole
/// body before the app runs: small bodies sit in memory, larger ones in an unlinked temp
/// file, so an app thread never waits on a slow client.
pub enum Input {
    Empty,
    Memory(io::Cursor<Vec<u8>>),
    Spooled(File),
}

impl Read for Input {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Input::Empty => Ok(0),
            Input::Memory(cursor) => cursor.read(buf),
            Input::Spooled(file) => file.read(buf),
        }
    }
}

/// A streamed response body: chunks pulled one at a time, on the thread that runs the app.
pub type ChunkStream = Box<dyn Iterator<Item = io::Result<Vec<u8>>> + Send>;

/// What the app answers with.
pub enum Body {
    Empty,
    Static(&'static [u8]),
    Bytes(Vec<u8>),
    /// Chunks of unknown total length: sent chunked on HTTP/1.1 unless the app set
    /// Content-Length, and close-delimited on HTTP/1.0.
    Stream(ChunkStream),
    /// A file sent from its current position; `len` bytes when given, else to its end.
    File {
        file: File,
        len: Option<u64>,
    },
}

impl Body {
    /// The length when it is known without reading anything.
    pub fn known_len(&self) -> Option<u64> {
        match self {
            Body::Empty => Some(0),
            Body::Static(bytes) => Some(bytes.len() as u64),
            Body::Bytes(bytes) => Some(bytes.len() as u64),
            Body::Stream(_) => None,
            Body::File { len, .. } => *len,
        }
    }
}

/// One response header: a name and a value, static where they can be.
pub type Header = (Cow<'static, str>, Cow<'static, str>);

/// A response header list: a `Vec` built per response, or a `&'static` slice for an
/// app whose headers never change (then answering costs no allocation at all).
pub type Headers = Cow<'static, [Header]>;

pub struct Response {
    pub status: u16,
    /// The reason phrase to send, when the app chose its own (`299 Whatever`); `None`
    /// sends the standard one for `status`. Latin-1 text without control characters.
    pub reason: Option<Cow<'static, str>>,
    pub headers: Headers,
    pub body: Body,
}

impl Response {
    /// `headers`: a `Vec<Header>`, or a `&'static [Header]` such as
    /// `const JSON: &[Header] = &[(Cow::Borrowed("Content-Type"), Cow::Borrowed("application/json"))];`
    pub fn new(status: u16, headers: impl Into<Headers>, body: Body) -> Response {
        Response {
            status,
            reason: None,
            headers: headers.into(),
            body,
        }
    }

    /// The same answer with its own reason phrase in the status line.
    pub fn with_reason(mut self, reason: impl Into<Cow<'static, str>>) -> Response {
        self.reason = Some(reason.into());
        self
    }

    /// A JSON response with `application/json; charset=utf-8`.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        let body = serde_json::to_vec(value).unwrap_or_default();
        Response::new(
            status,
            vec![(
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            )],
            Body::Bytes(body),
        )
    }
}

/// The one interface every application implements, Rust or Python.
pub trait App: Send + Sync + 'static {
    /// Inline apps run on the event loop and must never block; all others run on app threads.
    fn mode(&self) -> Mode {
        Mode::Threaded
    }

    /// Handle one request. A panic here becomes a 500 and the worker keeps serving.
    fn call(&self, environ: &Environ, input: &mut Input) -> Response;

    /// Runs one app thread's whole life (threaded apps only). `serve` takes and runs jobs
    /// until the pool stops, and wraps every wait (for the next job, for the loop to take a
    /// streamed chunk) in [`Idle::during`]. An app with per-thread state overrides this:
    /// the Python app attaches the thread to the interpreter once here, for the thread's
    /// lifetime, and releases the GIL in `during`.
    fn run_thread(&self, serve: &mut dyn FnMut(&dyn Idle)) {
        serve(&HoldNothing)
    }
}

/// What an app thread releases while it waits; see [`App::run_thread`].
pub trait Idle {
    /// Run `wait`, which may block for a long time, with the thread's app state released.
    fn during(&self, wait: &mut dyn FnMut());
}

/// The [`Idle`] of apps that hold nothing across calls: waits run as they are.
pub struct HoldNothing;

impl Idle for HoldNothing {
    fn during(&self, wait: &mut dyn FnMut()) {
        wait()
    }
}

/// Run `fork` following CPython's before/after-fork protocol when this process runs Python
/// (the master under `--preload`); otherwise just run it. `is_child` tells the child's
/// result from the parent's.
pub fn fork_with<T>(fork: impl FnOnce() -> T, is_child: impl Fn(&T) -> bool) -> T {
    #[cfg(feature = "python")]
    {
        wsgi::interpreter::fork_with(fork, is_child)
    }
    #[cfg(not(feature = "python"))]
    {
        let _ = is_child;
        fork()
    }
}

/// Keep the command line as started, for a Python app's `sys.argv`: call it first thing,
/// before the process title overwrites the memory `std::env::args` reads.
pub fn keep_command_line() {
    #[cfg(feature = "python")]
    wsgi::interpreter::keep_argv();
}

/// The process is about to exit after running app code: flush what a Python app printed
/// and finalize the interpreter (its `atexit` handlers run), when that is safe. Does
/// nothing in a process that never started Python.
pub fn before_exit() {
    #[cfg(feature = "python")]
    wsgi::interpreter::finish();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgi_vars_follow_gunicorn_header_rules() {
        let environ = Environ {
            method: "POST".into(),
            content_type: "text/plain".into(),
            content_length: "3".into(),
            headers: vec![
                ("X-Multi".into(), "a".into()),
                ("x-multi".into(), "b".into()),
                ("X_Spoofed".into(), "evil".into()),
                ("Content-Type".into(), "text/plain".into()),
                ("User-Agent".into(), "t".into()),
            ],
            ..Environ::default()
        };
        let vars = environ.cgi_vars();
        let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("HTTP_X_MULTI"), Some("a,b"));
        assert_eq!(
            get("HTTP_X_SPOOFED"),
            None,
            "underscore headers are dropped"
        );
        assert_eq!(get("HTTP_CONTENT_TYPE"), None);
        assert_eq!(get("CONTENT_TYPE"), Some("text/plain"));
        assert_eq!(get("CONTENT_LENGTH"), Some("3"));
        assert_eq!(get("HTTP_USER_AGENT"), Some("t"));
        assert_eq!(get("REQUEST_METHOD"), Some("POST"));
    }
}
