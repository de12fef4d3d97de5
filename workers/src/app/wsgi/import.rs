//! Importing the WSGI callable named by a [`PythonTarget`], with gunicorn's rules and
//! messages (`loader.py`, embedded here), and reporting Python exceptions to the error log
//! with their tracebacks.

use std::ffi::CString;

use pyo3::prelude::*;
use pyo3::types::PyModule;

use crate::app::spec::PythonTarget;
use crate::app::AppError;

const LOADER: &str = include_str!("loader.py");

/// The embedded `loader.py` module, made once per process.
pub(super) struct Loader {
    module: Py<PyModule>,
}

impl Loader {
    pub(super) fn new(py: Python<'_>) -> Result<Loader, AppError> {
        let fail = |e: &dyn std::fmt::Display| {
            AppError::Interpreter(format!("cannot set up the app loader: {e}"))
        };
        let code = CString::new(LOADER).map_err(|e| fail(&e))?;
        let module = PyModule::from_code(py, &code, c"rgunicorn_loader.py", c"rgunicorn_loader")
            .map_err(|e| fail(&e))?;
        Ok(Loader {
            module: module.unbind(),
        })
    }

    /// Import the target and return its callable. An `AppImportError` (no such attribute,
    /// not callable, bad factory arguments) is one line; any other exception is the app's
    /// own and goes to the error log with its traceback first.
    pub(super) fn import_app<'py>(
        &self,
        py: Python<'py>,
        target: &PythonTarget,
    ) -> Result<Bound<'py, PyAny>, AppError> {
        let module = self.module.bind(py);
        let result = module.getattr("import_app").and_then(|f| {
            f.call1((
                target.module.as_str(),
                target.object.clone(),
                target.call.as_deref(),
            ))
        });
        result.map_err(|err| {
            let expected = module
                .getattr("AppImportError")
                .is_ok_and(|cls| err.get_type(py).is(&cls));
            let why = err.value(py).to_string();
            let why = if expected {
                why
            } else {
                self.log_exception(py, &err, "Exception in worker process");
                format!("{}: {why}", error_name(py, &err))
            };
            AppError::Load {
                text: target.text.clone(),
                why,
            }
        })
    }

    /// The source files of every loaded module (`--reload`).
    pub(super) fn module_files(&self, py: Python<'_>) -> Vec<std::path::PathBuf> {
        self.module
            .bind(py)
            .getattr("module_files")
            .and_then(|f| f.call0())
            .and_then(|files| files.extract::<Vec<std::path::PathBuf>>())
            .unwrap_or_default()
    }

    /// `what`, then the exception's traceback, to the error log.
    pub(super) fn log_exception(&self, py: Python<'_>, err: &PyErr, what: &str) {
        let text = self
            .module
            .bind(py)
            .getattr("format_exception")
            .and_then(|f| f.call1((err.value(py), err.traceback(py))))
            .and_then(|t| t.extract::<String>())
            .unwrap_or_else(|_| format!("{}: {}", error_name(py, err), err.value(py)));
        crate::log_exception!("{what}\n{}", text.trim_end());
    }
}

/// The exception's class name, e.g. `ModuleNotFoundError`.
fn error_name(py: Python<'_>, err: &PyErr) -> String {
    err.get_type(py)
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into())
}
