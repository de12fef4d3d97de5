//! The file-like objects a WSGI environ carries: `wsgi.input` (the request body, which the
//! event loop has already received into memory or a spooled file, so reading never waits
//! on the client and never reads past the body) and `wsgi.errors` (the error log).

use std::fs::File;
use std::io::{BufRead, BufReader, Read};

use pyo3::exceptions::PyIOError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::app::Input;

/// How much a spooled body is read ahead; in-memory bodies are sliced directly.
const FILE_BUFFER: usize = 64 * 1024;

enum Body {
    Memory { data: Vec<u8>, pos: usize },
    File(BufReader<File>),
}

/// `wsgi.input`: `read`, `read(n)`, `readline`, `readline(n)`, `readlines`, iteration.
#[pyclass(module = "rgunicorn", name = "InputStream")]
pub(super) struct InputStream {
    body: Body,
}

impl InputStream {
    pub(super) fn new(input: Input) -> InputStream {
        let body = match input {
            Input::Empty => Body::Memory {
                data: Vec::new(),
                pos: 0,
            },
            Input::Memory(cursor) => {
                let pos = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
                Body::Memory {
                    data: cursor.into_inner(),
                    pos,
                }
            }
            Input::Spooled(file) => Body::File(BufReader::with_capacity(FILE_BUFFER, file)),
        };
        InputStream { body }
    }

    /// Up to `limit` bytes (all that is left when `None`).
    fn take(&mut self, limit: Option<usize>) -> std::io::Result<Vec<u8>> {
        match &mut self.body {
            Body::Memory { data, pos } => {
                let start = (*pos).min(data.len());
                let end = limit.map_or(data.len(), |n| start.saturating_add(n).min(data.len()));
                *pos = end;
                Ok(data[start..end].to_vec())
            }
            Body::File(file) => {
                let mut out = Vec::new();
                match limit {
                    None => {
                        file.read_to_end(&mut out)?;
                    }
                    Some(n) => {
                        file.take(n as u64).read_to_end(&mut out)?;
                    }
                }
                Ok(out)
            }
        }
    }

    /// One line, ending with its `\n` (unless the body ends first), of at most `limit` bytes.
    fn line(&mut self, limit: Option<usize>) -> std::io::Result<Vec<u8>> {
        match &mut self.body {
            Body::Memory { data, pos } => {
                let start = (*pos).min(data.len());
                let rest = &data[start..];
                let max = limit.map_or(rest.len(), |n| n.min(rest.len()));
                let end = rest[..max]
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(max, |i| i + 1);
                *pos = start + end;
                Ok(rest[..end].to_vec())
            }
            Body::File(file) => {
                let mut out = Vec::new();
                match limit {
                    None => {
                        file.read_until(b'\n', &mut out)?;
                    }
                    Some(n) => {
                        file.take(n as u64).read_until(b'\n', &mut out)?;
                    }
                }
                Ok(out)
            }
        }
    }
}

/// Python's convention: a negative or missing size means "no limit".
fn limit(size: Option<isize>) -> Option<usize> {
    size.and_then(|n| usize::try_from(n).ok())
}

fn io_error(err: std::io::Error) -> PyErr {
    PyIOError::new_err(format!("reading the request body: {err}"))
}

#[pymethods]
impl InputStream {
    #[pyo3(signature = (size = None))]
    fn read<'py>(&mut self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.take(limit(size)).map_err(io_error)?;
        Ok(PyBytes::new(py, &data))
    }

    #[pyo3(signature = (size = None))]
    fn readline<'py>(
        &mut self,
        py: Python<'py>,
        size: Option<isize>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let data = self.line(limit(size)).map_err(io_error)?;
        Ok(PyBytes::new(py, &data))
    }

    /// Lines until the body ends, or until `hint` bytes have been read (when positive).
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &mut self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Bound<'py, PyList>> {
        let hint = limit(hint).filter(|&n| n > 0);
        let lines = PyList::empty(py);
        let mut total = 0usize;
        loop {
            let line = self.line(None).map_err(io_error)?;
            if line.is_empty() {
                break;
            }
            total += line.len();
            lines.append(PyBytes::new(py, &line))?;
            if hint.is_some_and(|h| total >= h) {
                break;
            }
        }
        Ok(lines)
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.line(None).map_err(io_error)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}

/// `wsgi.errors`: text written here goes to the error log as it is (gunicorn gives apps
/// the error log's stream).
#[pyclass(module = "rgunicorn", name = "ErrorStream")]
pub(super) struct ErrorStream;

#[pymethods]
impl ErrorStream {
    fn write(&self, text: &str) -> usize {
        crate::log::write_raw(text.as_bytes());
        text.chars().count()
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(line?.extract::<&str>()?);
        }
        Ok(())
    }

    fn flush(&self) {}
}
