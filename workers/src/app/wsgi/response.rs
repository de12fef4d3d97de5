//! The app's side of a WSGI response: `start_response` (with `exc_info` and the `write()`
//! callable), `wsgi.file_wrapper`, and turning what the app returned into a [`Response`]:
//! a list of bytes becomes one buffer, a file wrapper around a real file becomes
//! [`Body::File`] (sent by the event loop), anything else is iterated as the client reads,
//! with `close()` called however the response ends (completed, failed, client gone).
//! The status line goes out as the app wrote it (`299 Whatever`), as gunicorn sends it.
//!
//! `write()` sends as PEP 3333 asks, before it returns: its first call sends the head
//! through the app thread's [`Reply`], and each call's bytes go through the same bounded
//! channel a streamed body uses, so a slow client makes `write()` wait (with the GIL
//! released). What the app returns afterwards follows what it wrote. A HEAD request or a
//! status without a body keeps written bytes until the app returns, for the length.
//!
//! A body that breaks its own Content-Length is never sent as if it were whole: a short
//! buffer gets `Connection: close`, a stream that runs long is cut at the declared length
//! and the connection closed (a stream that runs short is closed by the event loop).

use std::borrow::Cow;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use pyo3::exceptions::{PyAssertionError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyIterator, PyList, PyTuple};

use super::import::Loader;
use crate::app::{Body, Environ, Header, Response};
use crate::pool::{Reply, Ticket};
use crate::respond::reason;

/// The app's status line: its code, and its reason when that is not the standard one.
struct Status {
    code: u16,
    reason: Option<String>,
}

/// `start_response`, one per request.
#[pyclass(module = "rgunicorn", name = "StartResponse")]
pub(super) struct StartResponse {
    status: Option<Status>,
    headers: Vec<Header>,
    /// A Content-Length the app declared.
    declared: Option<u64>,
    /// Bytes the app wrote through `write()` and that wait for it to return (only when
    /// the answer has no body to stream, or no app thread's reply is at hand).
    written: Vec<u8>,
    /// Body bytes exist (written, or yielded): per PEP 3333 the headers count as sent, so a
    /// later `start_response(..., exc_info)` re-raises instead of replacing them.
    committed: bool,
    /// The request is HEAD: its answer has no body.
    head_request: bool,
    /// The request this answers, when `write()` can send at once (on an app thread).
    ticket: Option<Ticket>,
    /// The head went out at the first `write()`: everything after follows it.
    streaming: bool,
    /// Body bytes sent through `write()`.
    sent: u64,
}

impl StartResponse {
    pub(super) fn new(head_request: bool) -> StartResponse {
        StartResponse {
            status: None,
            headers: Vec::new(),
            declared: None,
            written: Vec::new(),
            committed: false,
            head_request,
            ticket: Reply::with_current(|reply| reply.ticket()),
            streaming: false,
            sent: 0,
        }
    }

    /// What the declared Content-Length still allows after what `write()` sent.
    fn left(&self) -> Option<u64> {
        self.declared.map(|n| n.saturating_sub(self.sent))
    }

    /// The response as far as `start_response` set it, with `body`.
    fn response(&self, status: &Status, headers: Vec<Header>, body: Body) -> Response {
        let response = Response::new(status.code, headers, body);
        match &status.reason {
            Some(reason) => response.with_reason(reason.clone()),
            None => response,
        }
    }

    /// `write()`'s bytes, sent now: the head first, on the first call.
    fn send(&mut self, ticket: Ticket, chunk: Vec<u8>) -> PyResult<()> {
        let head = match (&self.status, self.streaming) {
            (Some(status), false) => Some(self.response(status, self.headers.clone(), Body::Empty)),
            _ => None,
        };
        let len = chunk.len() as u64;
        let sent = Reply::with_current(|reply| {
            if reply.ticket() != ticket {
                return Err(None);
            }
            if let Some(head) = head {
                reply.start(head).map_err(Some)?;
            }
            reply.send(chunk).map_err(Some)
        });
        // Whatever happened to the chunk, a head that went out stays out.
        self.streaming = self.streaming || Reply::with_current(|r| r.started()).unwrap_or(false);
        match sent {
            Some(Ok(())) => {
                self.sent += len;
                Ok(())
            }
            Some(Err(Some(err))) => Err(PyOSError::new_err(format!("write() failed: {err}"))),
            None | Some(Err(None)) => Err(PyRuntimeError::new_err(
                "write() called outside the application call it was given to",
            )),
        }
    }
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__<'py>(
        slf: &Bound<'py, Self>,
        status: &Bound<'py, PyAny>,
        headers: &Bound<'py, PyAny>,
        exc_info: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        {
            let mut this = slf.borrow_mut();
            match exc_info.filter(|e| !e.is_none()) {
                Some(exc_info) if this.committed => {
                    // Too late to change the response: re-raise, as PEP 3333 requires.
                    return Err(PyErr::from_value(exc_info.get_item(1)?));
                }
                Some(_) => {}
                None if this.status.is_some() => {
                    return Err(PyAssertionError::new_err(
                        "start_response() called a second time without exc_info",
                    ))
                }
                None => {}
            }
            let status = parse_status(status)?;
            let (headers, declared) = parse_headers(headers)?;
            this.status = Some(status);
            this.headers = headers;
            this.declared = declared;
        }
        slf.getattr(intern!(py, "write"))
    }

    /// PEP 3333's `write()` callable: its bytes are sent before it returns (the head with
    /// the first), and come before the returned iterable's.
    fn write(&mut self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let Some(status) = &self.status else {
            return Err(PyAssertionError::new_err(
                "write() called before start_response()",
            ));
        };
        let bytes = data
            .cast::<PyBytes>()
            .map_err(|_| PyTypeError::new_err("write() argument must be bytes"))?
            .as_bytes();
        if bytes.is_empty() {
            return Ok(());
        }
        self.committed = true;
        let has_body =
            !self.head_request && status.code >= 200 && status.code != 204 && status.code != 304;
        let Some(ticket) = self.ticket.filter(|_| has_body) else {
            self.written.extend_from_slice(bytes);
            return Ok(());
        };
        // Held to the declared Content-Length, as gunicorn does: the excess is dropped.
        let take = self.left().map_or(bytes.len(), |left| {
            bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX))
        });
        if take < bytes.len() {
            crate::log_warning!(
                "app wrote more than its declared Content-Length: the rest is dropped"
            );
        }
        if take == 0 {
            return Ok(());
        }
        self.send(ticket, bytes[..take].to_vec())
    }
}

/// `"200 OK"`: a three-digit code, then a space and a reason (or nothing). The reason is
/// kept when it is not the standard one, to be sent as the app wrote it: latin-1 text
/// without control characters, as PEP 3333 and the status line allow.
fn parse_status(status: &Bound<'_, PyAny>) -> PyResult<Status> {
    let text: &str = status
        .extract()
        .map_err(|_| PyTypeError::new_err("status must be a str, such as '200 OK'"))?;
    let (code, rest) = text.split_at(text.len().min(3));
    let valid = code.len() == 3
        && code.bytes().all(|b| b.is_ascii_digit())
        && (rest.is_empty() || rest.starts_with(' '))
        && rest
            .chars()
            .all(|c| c == '\t' || (' '..='\u{ff}').contains(&c) && c != '\u{7f}');
    let code = match code.parse::<u16>() {
        Ok(n) if valid && n >= 100 => n,
        _ => {
            return Err(PyValueError::new_err(format!(
                "invalid status {text:?}: expected a three-digit code and a reason of latin-1 \
                 text, such as '200 OK'"
            )))
        }
    };
    let given = rest.strip_prefix(' ').unwrap_or(rest);
    let reason = (!given.is_empty() && given != reason(code)).then(|| given.to_owned());
    Ok(Status { code, reason })
}

/// A list of `(name, value)` str pairs; names are tokens, values latin-1 without CR or LF.
fn parse_headers(headers: &Bound<'_, PyAny>) -> PyResult<(Vec<Header>, Option<u64>)> {
    let list = headers
        .cast::<PyList>()
        .map_err(|_| PyTypeError::new_err("headers must be a list of (name, value) tuples"))?;
    let mut out: Vec<Header> = Vec::with_capacity(list.len());
    let mut declared = None;
    for item in list.iter() {
        let pair = item.cast::<PyTuple>().map_err(|_| {
            PyTypeError::new_err(format!("header {item} is not a (name, value) tuple"))
        })?;
        let (name, value): (String, String) = pair.extract().map_err(|_| {
            PyTypeError::new_err(format!("header {pair} must be a tuple of two str"))
        })?;
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b))
        {
            return Err(PyValueError::new_err(format!(
                "invalid header name {name:?}"
            )));
        }
        if value
            .chars()
            .any(|c| c == '\r' || c == '\n' || c == '\0' || c > '\u{ff}')
        {
            return Err(PyValueError::new_err(format!(
                "invalid value for header {name}: CR, LF, NUL or a character outside latin-1"
            )));
        }
        if name.eq_ignore_ascii_case("content-length") {
            declared = value.trim().parse::<u64>().ok();
        }
        out.push((Cow::Owned(name), Cow::Owned(value)));
    }
    Ok((out, declared))
}

/// `wsgi.file_wrapper`: iterates a file-like object in `blksize` blocks; when it wraps a
/// real file, the response is sent from the file descriptor instead.
#[pyclass(module = "rgunicorn", name = "FileWrapper")]
pub(super) struct FileWrapper {
    filelike: Py<PyAny>,
    blksize: usize,
}

#[pymethods]
impl FileWrapper {
    #[new]
    #[pyo3(signature = (filelike, blksize = 8192))]
    fn new(filelike: Py<PyAny>, blksize: usize) -> FileWrapper {
        FileWrapper {
            filelike,
            blksize: blksize.max(1),
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let block = self
            .filelike
            .bind(py)
            .call_method1(intern!(py, "read"), (self.blksize,))?;
        Ok((!block.is_empty()?).then_some(block))
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let filelike = self.filelike.bind(py);
        if filelike.hasattr(intern!(py, "close"))? {
            filelike.call_method0(intern!(py, "close"))?;
        }
        Ok(())
    }
}

/// Turn the app's return value into a [`Response`]. An `Err` means nothing was sent yet
/// (the caller answers 500); exceptions after that end the stream instead.
pub(super) fn respond(
    py: Python<'_>,
    result: Bound<'_, PyAny>,
    start: &Bound<'_, StartResponse>,
    loader: &Arc<Loader>,
    request: &Environ,
) -> PyResult<Response> {
    let head = request.method == "HEAD";
    if let Ok(wrapper) = result.cast::<FileWrapper>() {
        let (nothing_written, declared) = {
            let this = start.borrow();
            (this.written.is_empty() && !this.streaming, this.declared)
        };
        if nothing_written {
            if let Some(body) = file_body(py, wrapper, declared)? {
                close(py, &result, loader);
                return finish(start, body, head);
            }
        }
    }
    if result.is_exact_instance_of::<PyList>() || result.is_exact_instance_of::<PyTuple>() {
        let mut body = std::mem::take(&mut start.borrow_mut().written);
        for item in result.try_iter()? {
            body.extend_from_slice(chunk(&item?)?);
        }
        return finish(start, Body::Bytes(body), head);
    }
    let iter = match result.try_iter() {
        Ok(iter) => iter,
        Err(err) => {
            close(py, &result, loader);
            return Err(err);
        }
    };
    // The first non-empty chunk decides: the headers may be set lazily, while iterating.
    let mut first = std::mem::take(&mut start.borrow_mut().written);
    let mut ended = false;
    while first.is_empty() {
        match iter_next(&iter) {
            Ok(Some(bytes)) => first = bytes,
            Ok(None) => {
                ended = true;
                break;
            }
            Err(err) => {
                close(py, &result, loader);
                return Err(err);
            }
        }
    }
    let declared = start.borrow().left();
    if ended || declared.is_some_and(|n| first.len() as u64 >= n) {
        // All of it (or all the client may get): no stream needed.
        close(py, &result, loader);
        return finish(start, Body::Bytes(first), head);
    }
    start.borrow_mut().committed = true;
    let stream = Chunks {
        first: Some(first),
        iter: Some(iter.unbind()),
        result: Some(result.unbind()),
        loader: Arc::clone(loader),
        request: format!("{} {}", request.method, request.raw_uri),
        left: declared,
    };
    finish(start, Body::Stream(Box::new(stream)), head)
}

/// The response once the body is known; a status is required by now.
fn finish(start: &Bound<'_, StartResponse>, body: Body, head: bool) -> PyResult<Response> {
    let mut this = start.borrow_mut();
    let Some(status) = this.status.take() else {
        return Err(PyAssertionError::new_err(
            "the app returned without calling start_response()",
        ));
    };
    if this.streaming {
        // The head went out with the first write(): this is the rest of the body (held
        // to the declared length, as write() was), and the status is for the hooks.
        let body = match (body, this.left()) {
            (Body::Bytes(mut bytes), Some(left)) if bytes.len() as u64 > left => {
                crate::log_warning!(
                    "app sent more than its declared Content-Length: the rest is dropped"
                );
                bytes.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                Body::Bytes(bytes)
            }
            (body, _) => body,
        };
        return Ok(this.response(&status, Vec::new(), body));
    }
    let mut headers = std::mem::take(&mut this.headers);
    // A HEAD answer keeps the GET's Content-Length without its body, and 1xx/204/304
    // have none: only a body that is sent can break its length.
    let code = status.code;
    let has_body = !head && code >= 200 && code != 204 && code != 304;
    if let (Some(declared), Some(actual), true) = (this.declared, body.known_len(), has_body) {
        if declared != actual {
            crate::log_warning!(
                "app declared Content-Length {declared} and sent {actual} bytes: closing the connection"
            );
            headers.push(("Connection".into(), "close".into()));
        }
    }
    Ok(this.response(&status, headers, body))
}

/// One body item: PEP 3333 allows only bytes.
fn chunk<'a>(item: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    item.cast::<PyBytes>().map(|b| b.as_bytes()).map_err(|_| {
        PyTypeError::new_err(format!(
            "the response iterable yielded {}, not bytes",
            item.get_type()
                .name()
                .map_or_else(|_| "an object".into(), |n| n.to_string())
        ))
    })
}

fn iter_next(iter: &Bound<'_, PyIterator>) -> PyResult<Option<Vec<u8>>> {
    match iter.clone().next() {
        None => Ok(None),
        Some(item) => Ok(Some(chunk(&item?)?.to_vec())),
    }
}

/// The wrapped file as a [`Body::File`] from its current position, when it is a real
/// file; `None` to iterate it instead.
fn file_body(
    py: Python<'_>,
    wrapper: &Bound<'_, FileWrapper>,
    declared: Option<u64>,
) -> PyResult<Option<Body>> {
    let filelike = wrapper.borrow().filelike.clone_ref(py);
    let filelike = filelike.bind(py);
    let Ok(fd) = filelike
        .call_method0(intern!(py, "fileno"))
        .and_then(|f| f.extract::<i32>())
    else {
        return Ok(None);
    };
    // The Python object's position, which a buffered reader keeps ahead of the OS offset.
    let position = filelike
        .call_method0(intern!(py, "tell"))
        .and_then(|p| p.extract::<u64>())
        .ok();
    // SAFETY: `fd` is open for as long as `filelike` is, and it is only borrowed here to
    // duplicate it; the duplicate is ours alone.
    let borrowed = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let Ok(owned): Result<OwnedFd, _> = borrowed.try_clone_to_owned() else {
        return Ok(None);
    };
    let mut file = File::from(owned);
    let Ok(meta) = file.metadata() else {
        return Ok(None);
    };
    if !meta.is_file() {
        return Ok(None);
    }
    let offset = match position {
        Some(p) => file.seek(SeekFrom::Start(p)),
        None => file.stream_position(),
    };
    let Ok(offset) = offset else {
        return Ok(None);
    };
    let available = meta.len().saturating_sub(offset);
    let len = declared.map_or(available, |n| n.min(available));
    Ok(Some(Body::File {
        file,
        len: Some(len),
    }))
}

/// Call the iterable's `close()` if it has one; an exception there is logged.
fn close(py: Python<'_>, result: &Bound<'_, PyAny>, loader: &Arc<Loader>) {
    match result.hasattr(intern!(py, "close")) {
        Ok(true) => {
            if let Err(err) = result.call_method0(intern!(py, "close")) {
                loader.log_exception(py, &err, "Error closing the response iterable");
            }
        }
        Ok(false) => {}
        Err(err) => loader.log_exception(py, &err, "Error closing the response iterable"),
    }
}

/// A streamed body, pulled on the app thread (which holds the GIL outside its waits).
/// Dropping it calls the iterable's `close()`, whether the body ended, failed, or the
/// client went away.
struct Chunks {
    first: Option<Vec<u8>>,
    iter: Option<Py<PyIterator>>,
    result: Option<Py<PyAny>>,
    loader: Arc<Loader>,
    /// `METHOD URI`, for the log.
    request: String,
    /// What the declared Content-Length still allows.
    left: Option<u64>,
}

impl Chunks {
    /// Hold a chunk to the declared length; past it, the stream fails, so the connection
    /// closes rather than carry bytes the client would take for the next response.
    fn limit(&mut self, mut bytes: Vec<u8>) -> std::io::Result<Vec<u8>> {
        if let Some(left) = self.left.as_mut() {
            if *left == 0 {
                self.iter = None;
                crate::log_warning!(
                    "app sent more than its declared Content-Length: closing the connection"
                );
                return Err(std::io::Error::other(
                    "response longer than its Content-Length",
                ));
            }
            let take = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(bytes.len());
            bytes.truncate(take);
            *left -= take as u64;
        }
        Ok(bytes)
    }
}

impl Iterator for Chunks {
    type Item = std::io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            return Some(self.limit(first));
        }
        let iter = self.iter.as_ref()?;
        let next = Python::attach(|py| loop {
            match iter_next(iter.bind(py)) {
                Ok(Some(bytes)) if bytes.is_empty() => continue,
                Ok(Some(bytes)) => break Ok(Some(bytes)),
                Ok(None) => break Ok(None),
                Err(err) => {
                    self.loader.log_exception(
                        py,
                        &err,
                        &format!(
                            "Error handling request {} (the response had started: closing the connection)",
                            self.request
                        ),
                    );
                    break Err(std::io::Error::other("the app raised while streaming"));
                }
            }
        });
        match next {
            // A body longer than declared shows on the pull after the last allowed byte,
            // which fails the stream.
            Ok(Some(bytes)) => Some(self.limit(bytes)),
            Ok(None) => {
                self.iter = None;
                None
            }
            Err(err) => {
                self.iter = None;
                Some(Err(err))
            }
        }
    }
}

impl Drop for Chunks {
    fn drop(&mut self) {
        let Some(result) = self.result.take() else {
            return;
        };
        let iter = self.iter.take();
        Python::attach(|py| {
            drop(iter);
            close(py, result.bind(py), &self.loader);
            drop(result);
        });
    }
}
