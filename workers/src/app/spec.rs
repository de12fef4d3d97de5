//! Choosing an app in two phases. [`AppSpec::parse`] reads the APP argument (a built-in
//! name, or gunicorn's `module:callable` forms) without running anything, so the master may
//! call it to refuse a bad APP before anything is bound. [`AppSpec::instantiate`] makes the
//! app: only a worker calls it after the fork (or the master once under `--preload`), from
//! the one place that also wraps the server hooks (the `rgunicorn` crate's child process).
//! Importing Python code is [`super::wsgi`]'s job, behind the `python` cargo feature.

use std::sync::Arc;

use super::{echo, welcome, App};
use crate::config::PythonConfig;

/// The app the worker runs when none is named.
pub const DEFAULT_APP: &str = "welcome";

/// How to build the `python` feature in, for the message a build without it gives.
pub const HOW_TO_GET_PYTHON: &str =
    "rebuild with `cargo install --path . --features python` (README: Python apps)";

/// What the APP argument names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppSpec {
    Builtin(Builtin),
    Python(PythonTarget),
}

/// The apps compiled into rgunicorn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// The reference backend's welcome API (the default).
    Welcome,
    /// Answers what it received, as JSON.
    Echo,
}

/// A Python WSGI callable as gunicorn names it: `pkg.module:name`, `module` alone (the
/// callable is then `application`), a dotted attribute (`module:app.wsgi_app`), or a factory
/// called with literal arguments (`module:create_app("production")`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PythonTarget {
    /// The APP text as given, for messages.
    pub text: String,
    /// The module to import, dotted.
    pub module: String,
    /// The attribute path inside it, e.g. `["app", "wsgi_app"]`.
    pub object: Vec<String>,
    /// A factory call's arguments as written between the parentheses (Python literals,
    /// evaluated with `ast.literal_eval` at import); `None` when the object is not called.
    pub call: Option<String>,
}

/// Errors choosing or loading an app. A worker exits 4 on these (gunicorn's
/// APP_LOAD_ERROR); the master reports them once before forking.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The APP text is neither a built-in name nor `module:callable`.
    #[error("invalid APP {text:?}: {why}")]
    Syntax { text: String, why: &'static str },
    #[error("APP {0:?} is a Python WSGI app, and this rgunicorn was built without Python support: {HOW_TO_GET_PYTHON}")]
    PythonUnsupported(String),
    /// Python could not be started (wrong virtualenv, missing standard library).
    #[error("{0}")]
    Interpreter(String),
    /// The import, the attribute lookup or the factory call failed; the traceback went to
    /// the error log before this line.
    #[error("APP {text:?} could not be loaded: {why}")]
    Load { text: String, why: String },
}

impl AppSpec {
    /// Read an APP argument. Runs nothing and touches no file.
    pub fn parse(text: &str) -> Result<AppSpec, AppError> {
        match text {
            "welcome" => return Ok(AppSpec::Builtin(Builtin::Welcome)),
            "echo" => return Ok(AppSpec::Builtin(Builtin::Echo)),
            _ => {}
        }
        let bad = |why| AppError::Syntax {
            text: text.to_string(),
            why,
        };
        let (module, object) = match text.split_once(':') {
            Some((module, object)) => (module, object.trim()),
            None => (text, "application"),
        };
        if !is_dotted_name(module) {
            return Err(bad(
                "expected a built-in app (welcome, echo) or a Python module:callable such as myapp.wsgi:app",
            ));
        }
        let (name, call) = match object.split_once('(') {
            Some((name, rest)) => match rest.strip_suffix(')') {
                Some(args) if balanced(args) => (name.trim(), Some(args.to_string())),
                _ => return Err(bad("a factory call must end with its closing parenthesis, as in module:create_app()")),
            },
            None => (object, None),
        };
        if !is_dotted_name(name) {
            return Err(bad(
                "the callable must be a name or a dotted attribute, optionally called: module:app, module:app.wsgi_app, module:create_app()",
            ));
        }
        Ok(AppSpec::Python(PythonTarget {
            text: text.to_string(),
            module: module.to_string(),
            object: name.split('.').map(str::to_string).collect(),
            call,
        }))
    }

    pub fn is_python(&self) -> bool {
        matches!(self, AppSpec::Python(_))
    }

    /// Whether the APP `text` is a Python app, which workers run on app threads (they
    /// answer each connection's requests in turn: the TLS front sends them short batches).
    pub fn names_python(text: &str) -> bool {
        AppSpec::parse(text).is_ok_and(|spec| spec.is_python())
    }

    /// Make the app. For a Python app this starts the interpreter in this process (if it
    /// is not running yet) and imports the module: call it in a worker after the fork, or
    /// in the master only under `--preload`.
    pub fn instantiate(&self, python: &PythonConfig) -> Result<Arc<dyn App>, AppError> {
        match self {
            AppSpec::Builtin(Builtin::Welcome) => Ok(Arc::new(welcome::Welcome)),
            AppSpec::Builtin(Builtin::Echo) => Ok(Arc::new(echo::Echo)),
            #[cfg(feature = "python")]
            AppSpec::Python(target) => super::wsgi::load(target, python),
            #[cfg(not(feature = "python"))]
            AppSpec::Python(target) => {
                let _ = python;
                Err(AppError::PythonUnsupported(target.text.clone()))
            }
        }
    }

    /// What the master can verify before anything is bound, without starting Python in
    /// its own process: the build supports the app, and (for Python) the virtualenv fits
    /// the Python this binary runs.
    pub fn preflight(&self) -> Result<(), AppError> {
        match self {
            AppSpec::Builtin(_) => Ok(()),
            #[cfg(feature = "python")]
            AppSpec::Python(_) => super::wsgi::interpreter::Environment::find().map(|_| ()),
            #[cfg(not(feature = "python"))]
            AppSpec::Python(target) => Err(AppError::PythonUnsupported(target.text.clone())),
        }
    }
}

/// `a.b.c`: dot-separated Python identifiers.
fn is_dotted_name(text: &str) -> bool {
    text.split('.').all(|part| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
            && chars.all(|c| c.is_alphanumeric() || c == '_')
    })
}

/// Parentheses and brackets outside string literals close in order. Literal evaluation
/// is Python's; this only catches `create_app(1))(` before anything runs.
fn balanced(args: &str) -> bool {
    let mut depth: Vec<char> = Vec::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in args.chars() {
        if let Some(q) = quote {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some(c),
            '(' | '[' | '{' => depth.push(c),
            ')' | ']' | '}' => {
                let open = match c {
                    ')' => '(',
                    ']' => '[',
                    _ => '{',
                };
                if depth.pop() != Some(open) {
                    return false;
                }
            }
            _ => {}
        }
    }
    depth.is_empty() && quote.is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn python(text: &str) -> PythonTarget {
        match AppSpec::parse(text) {
            Ok(AppSpec::Python(t)) => t,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn built_in_names_win() {
        assert_eq!(
            AppSpec::parse("welcome").ok(),
            Some(AppSpec::Builtin(Builtin::Welcome))
        );
        assert_eq!(
            AppSpec::parse("echo").ok(),
            Some(AppSpec::Builtin(Builtin::Echo))
        );
        // A Python module of that name is still reachable with its callable spelled out.
        assert_eq!(python("echo:application").module, "echo");
    }

    #[test]
    fn gunicorn_forms() {
        let t = python("app.app:app");
        assert_eq!(
            (t.module.as_str(), t.object.as_slice()),
            ("app.app", &["app".to_string()][..])
        );
        assert_eq!(t.call, None);
        let t = python("mysite.wsgi");
        assert_eq!(t.object, ["application"]);
        let t = python("myapp:create_app(\"production\", debug=False)");
        assert_eq!(t.object, ["create_app"]);
        assert_eq!(t.call.as_deref(), Some("\"production\", debug=False"));
        let t = python("myapp:create_app()");
        assert_eq!(t.call.as_deref(), Some(""));
        let t = python("pkg.mod:app.wsgi_app");
        assert_eq!(t.object, ["app", "wsgi_app"]);
        let t = python("m:make(')(')");
        assert_eq!(t.call.as_deref(), Some("')('"));
        assert_eq!(python("módulo:aplicación").module, "módulo");
    }

    #[test]
    fn malformed_apps_are_refused_with_the_text() {
        for bad in [
            "",
            "not-an-app",
            "app:",
            ":app",
            "app..x:app",
            "1app:app",
            "app:create_app(",
            "app:create_app())",
            "app:create_app(1))(",
            "app:f(x)[0]",
            "app:app app",
            "app:a-b",
        ] {
            match AppSpec::parse(bad) {
                Err(err @ AppError::Syntax { .. }) => {
                    assert!(err.to_string().contains(&format!("{bad:?}")), "{err}")
                }
                other => panic!("{bad:?} parsed as {other:?}"),
            }
        }
    }

    #[test]
    fn the_unsupported_message_says_how_to_get_python() {
        let err = AppError::PythonUnsupported("app:app".into()).to_string();
        assert!(err.contains("--features python"), "{err}");
        assert!(!err.contains('\n'));
    }
}
