//! Python WSGI apps (PEP 3333), embedded with pyo3: the `python` cargo feature.
//!
//! [`load`] starts the interpreter in this process ([`interpreter`]) and imports the
//! callable ([`import`]); the [`WsgiApp`] it returns runs on the worker's app threads
//! (`Mode::Threaded`), each attached to Python once for its lifetime and releasing the GIL
//! while it waits for work ([`App::run_thread`], [`Idle::during`]). A request becomes an
//! environ dict ([`environ`]) with `wsgi.input` and `wsgi.errors` ([`streams`]); what the app
//! returns becomes a [`Response`] ([`response`]). `--reload` is [`reload`]'s.
//!
//! An exception before the response started is a 500 with the traceback in the error log,
//! and the worker keeps serving; after it started, the connection is closed.

mod environ;
mod import;
pub mod interpreter;
mod reload;
mod response;
mod streams;

use std::sync::Arc;

use pyo3::prelude::*;

use super::spec::PythonTarget;
use super::{App, AppError, Environ, Idle, Input, Mode, Response};
use crate::config::PythonConfig;
use crate::pool::Reply;
use crate::respond::{cut_short, error_response};
use import::Loader;
use response::StartResponse;

/// Start Python in this process if it is not running yet, and import the app.
pub fn load(target: &PythonTarget, python: &PythonConfig) -> Result<Arc<dyn App>, AppError> {
    interpreter::start(python)?;
    let app = Python::attach(|py| -> Result<WsgiApp, AppError> {
        let loader = Arc::new(Loader::new(py)?);
        let callable = loader.import_app(py, target)?.unbind();
        let environ = environ::Template::new(py, python, crate::config::SERVER_SOFTWARE)
            .map_err(|e| AppError::Interpreter(format!("cannot build the WSGI environ: {e}")))?;
        Ok(WsgiApp {
            callable,
            environ,
            loader,
        })
    })?;
    if python.reload {
        reload::watch(Arc::clone(&app.loader));
    }
    Ok(Arc::new(app))
}

/// A WSGI callable and what calling it needs.
pub struct WsgiApp {
    callable: Py<PyAny>,
    environ: environ::Template,
    loader: Arc<Loader>,
}

impl WsgiApp {
    fn handle(&self, py: Python<'_>, environ: &Environ, input: Input) -> PyResult<Response> {
        let env = self.environ.build(py, environ, input)?;
        let start = Bound::new(py, StartResponse::new(environ.method == "HEAD"))?;
        let result = self.callable.bind(py).call1((env, &start))?;
        response::respond(py, result, &start, &self.loader, environ)
    }
}

impl App for WsgiApp {
    fn mode(&self) -> Mode {
        Mode::Threaded
    }

    fn call(&self, environ: &Environ, input: &mut Input) -> Response {
        let input = std::mem::replace(input, Input::Empty);
        // The app thread is attached already (run_thread): this nests for free.
        Python::attach(|py| match self.handle(py, environ, input) {
            Ok(response) => response,
            Err(err) => {
                // After a write() the head is out: the connection can only be closed.
                let started = Reply::with_current(|reply| reply.started()).unwrap_or(false);
                self.loader.log_exception(
                    py,
                    &err,
                    &format!(
                        "Error handling request {} {}{}",
                        environ.method,
                        environ.raw_uri,
                        if started {
                            " (the response had started: closing the connection)"
                        } else {
                            ""
                        }
                    ),
                );
                if started {
                    cut_short()
                } else {
                    error_response(500)
                }
            }
        })
    }

    /// Attach this thread to Python once, for its whole life: attaching per call costs
    /// about ten times more (33k against 315k calls/s measured).
    fn run_thread(&self, serve: &mut dyn FnMut(&dyn Idle)) {
        let _counted = interpreter::AttachedThread::enter();
        Python::attach(|py| serve(&Detach(py)));
    }
}

/// An app thread's waits run with the GIL released, so the other app threads can run.
struct Detach<'py>(Python<'py>);

/// `wait` crossing into `Python::detach`, which asks for `Send` so that no GIL-bound value
/// is carried across. It is only called on this same thread, and the pool's waits (a
/// channel receive or send) touch no Python object.
struct WaitOnThisThread<'a>(&'a mut dyn FnMut());
// SAFETY: `detach` runs the closure synchronously on the calling thread; nothing is sent to
// another thread, and the closure holds no Python reference.
unsafe impl Send for WaitOnThisThread<'_> {}

impl Idle for Detach<'_> {
    fn during(&self, wait: &mut dyn FnMut()) {
        let wait = WaitOnThisThread(wait);
        self.0.detach(move || {
            let wait = wait;
            (wait.0)()
        });
    }
}
