//! The WSGI environ dict: a template holding the keys that never change (`wsgi.version`,
//! `wsgi.errors`, `wsgi.file_wrapper`, ...) is copied per request, then the request's keys
//! are set with interned key strings (measured: 0.7 µs against 1.8 µs building it afresh).
//! The values follow PEP 3333 and gunicorn: native strings decoded as latin-1, `HTTP_*`
//! keys by [`Environ::http_vars`].

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::response::FileWrapper;
use super::streams::{ErrorStream, InputStream};
use crate::app::{Environ, Input};
use crate::config::PythonConfig;

/// The request's CGI keys, interned once.
struct Keys {
    request_method: Py<PyString>,
    script_name: Py<PyString>,
    path_info: Py<PyString>,
    query_string: Py<PyString>,
    raw_uri: Py<PyString>,
    content_type: Py<PyString>,
    content_length: Py<PyString>,
    server_name: Py<PyString>,
    server_port: Py<PyString>,
    server_protocol: Py<PyString>,
    remote_addr: Py<PyString>,
    remote_port: Py<PyString>,
    url_scheme: Py<PyString>,
    input: Py<PyString>,
}

pub(super) struct Template {
    base: Py<PyDict>,
    keys: Keys,
    /// gunicorn takes SCRIPT_NAME from the process environment (`-e SCRIPT_NAME=/app`)
    /// and strips it from the front of PATH_INFO.
    script_name: Option<String>,
}

impl Template {
    pub(super) fn new(py: Python<'_>, python: &PythonConfig, server: &str) -> PyResult<Template> {
        let base = PyDict::new(py);
        base.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
        base.set_item("wsgi.multithread", python.multithread)?;
        base.set_item("wsgi.multiprocess", python.multiprocess)?;
        base.set_item("wsgi.run_once", false)?;
        base.set_item("wsgi.errors", Bound::new(py, ErrorStream)?)?;
        base.set_item("wsgi.file_wrapper", py.get_type::<FileWrapper>())?;
        base.set_item("wsgi.input_terminated", true)?;
        base.set_item("SERVER_SOFTWARE", server)?;
        base.set_item("SCRIPT_NAME", "")?;
        let key = |name: &str| PyString::intern(py, name).unbind();
        Ok(Template {
            base: base.unbind(),
            keys: Keys {
                request_method: key("REQUEST_METHOD"),
                script_name: key("SCRIPT_NAME"),
                path_info: key("PATH_INFO"),
                query_string: key("QUERY_STRING"),
                raw_uri: key("RAW_URI"),
                content_type: key("CONTENT_TYPE"),
                content_length: key("CONTENT_LENGTH"),
                server_name: key("SERVER_NAME"),
                server_port: key("SERVER_PORT"),
                server_protocol: key("SERVER_PROTOCOL"),
                remote_addr: key("REMOTE_ADDR"),
                remote_port: key("REMOTE_PORT"),
                url_scheme: key("wsgi.url_scheme"),
                input: key("wsgi.input"),
            },
            script_name: std::env::var("SCRIPT_NAME")
                .ok()
                .map(|s| s.trim_end_matches('/').to_string())
                .filter(|s| !s.is_empty()),
        })
    }

    /// The environ for one request, with `input` as `wsgi.input`.
    pub(super) fn build<'py>(
        &self,
        py: Python<'py>,
        env: &Environ,
        input: Input,
    ) -> PyResult<Bound<'py, PyDict>> {
        let d = self.base.bind(py).copy()?;
        let k = &self.keys;
        let set = |key: &Py<PyString>, value: &str| d.set_item(key.bind(py), value);
        set(&k.request_method, &env.method)?;
        let mut path_info = env.path_info.as_str();
        let script_name = match &self.script_name {
            Some(script) => {
                if let Some(rest) = path_info.strip_prefix(script.as_str()) {
                    if rest.is_empty() || rest.starts_with('/') {
                        path_info = rest;
                    }
                }
                script.as_str()
            }
            None => env.script_name.as_str(),
        };
        if !script_name.is_empty() {
            set(&k.script_name, script_name)?;
        }
        set(&k.path_info, path_info)?;
        set(&k.query_string, &env.query_string)?;
        set(&k.raw_uri, &env.raw_uri)?;
        if !env.content_type.is_empty() {
            set(&k.content_type, &env.content_type)?;
        }
        if !env.content_length.is_empty() {
            set(&k.content_length, &env.content_length)?;
        }
        set(&k.server_name, &env.server_name)?;
        set(&k.server_port, &env.server_port)?;
        set(&k.server_protocol, &env.server_protocol)?;
        set(&k.remote_addr, &env.remote_addr)?;
        set(&k.remote_port, &env.remote_port)?;
        set(&k.url_scheme, &env.url_scheme)?;
        for (key, value) in env.http_vars() {
            d.set_item(key, value)?;
        }
        d.set_item(k.input.bind(py), Bound::new(py, InputStream::new(input))?)?;
        Ok(d)
    }
}
