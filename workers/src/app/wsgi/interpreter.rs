//! The embedded CPython interpreter's life in one process: which Python and virtualenv it
//! runs ([`Environment`]), starting it ([`start`]: after the fork in a worker, or in the
//! master under `--preload`), CPython's fork protocol around a fork of a process that runs
//! it ([`fork_with`]), and its end ([`finish`]: flush stdout/stderr and finalize, so a
//! `print()` is never lost). Loading the app is [`super::import`]'s job.
//!
//! rgunicorn's signal handlers stay in charge: Python starts with its own handlers off
//! (no `KeyboardInterrupt`), after the worker's are installed.

use std::ffi::{CStr, CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use pyo3::ffi;
use pyo3::prelude::*;

use crate::app::AppError;
use crate::config::PythonConfig;

/// The Python pyo3 built against: `X.Y` and the interpreter it asked.
pub const BUILD_VERSION: &str = env!("RGUNICORN_PYTHON_VERSION");
pub const BUILD_EXECUTABLE: &str = env!("RGUNICORN_PYTHON_EXECUTABLE");

/// App threads attached to the interpreter right now. `finish` finalizes only at zero.
static ATTACHED: AtomicUsize = AtomicUsize::new(0);

/// Held by whoever uses Python outside the app threads (the `--reload` watcher) and by
/// `finish`, which sets it to false before finalizing, so nothing attaches afterwards.
pub(super) static USABLE: Mutex<bool> = Mutex::new(true);

/// Counts an app thread as attached for as long as it lives.
pub(super) struct AttachedThread;

impl AttachedThread {
    pub(super) fn enter() -> AttachedThread {
        ATTACHED.fetch_add(1, Ordering::SeqCst);
        AttachedThread
    }
}

impl Drop for AttachedThread {
    fn drop(&mut self) {
        ATTACHED.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Which Python an app runs with: the active virtualenv's, else the one rgunicorn was
/// built against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// The virtualenv: `VIRTUAL_ENV`, or the one whose `bin/` holds the first python on PATH.
    pub venv: Option<PathBuf>,
    /// What Python is configured with as `sys.executable`, which decides `sys.prefix` and
    /// `site-packages` (an embedded interpreter ignores `VIRTUAL_ENV` itself).
    pub executable: Option<PathBuf>,
    /// The loaded libpython's `X.Y`.
    pub version: (u32, u32),
}

impl Environment {
    /// Find the environment and check that its virtualenv was made from this Python's
    /// version. Reads environment variables and `pyvenv.cfg`; starts nothing.
    pub fn find() -> Result<Environment, AppError> {
        let version = runtime_version();
        let venv = active_venv(
            std::env::var_os("VIRTUAL_ENV").map(PathBuf::from),
            std::env::var_os("PATH"),
        )?;
        let executable = match &venv {
            Some(venv) => {
                let venv_version = venv_version(venv)?;
                if venv_version != version {
                    return Err(AppError::Interpreter(format!(
                        "the virtualenv {} is Python {}.{}, but this rgunicorn runs Python {}.{} (built against {}): make the virtualenv with python{}.{} -m venv, or rebuild rgunicorn with PYO3_PYTHON={}/bin/python",
                        venv.display(),
                        venv_version.0,
                        venv_version.1,
                        version.0,
                        version.1,
                        BUILD_VERSION,
                        version.0,
                        version.1,
                        venv.display()
                    )));
                }
                Some(venv_python(venv))
            }
            None => Some(PathBuf::from(BUILD_EXECUTABLE)).filter(|p| p.is_absolute() && p.exists()),
        };
        Ok(Environment {
            venv,
            executable,
            version,
        })
    }
}

/// The libpython actually loaded (LD_LIBRARY_PATH may beat the rpath): `X.Y` of
/// `Py_GetVersion`, which CPython allows before initialization.
fn runtime_version() -> (u32, u32) {
    // SAFETY: Py_GetVersion returns a static NUL-terminated string and may be called
    // before the interpreter is initialized.
    let text = unsafe { CStr::from_ptr(ffi::Py_GetVersion()) }.to_string_lossy();
    parse_version(&text).unwrap_or((0, 0))
}

/// `3.11.7 (main, ...)` or `3.11.7` -> (3, 11).
fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// gunicorn runs with the Python of the virtualenv it was started from: `VIRTUAL_ENV` when
/// set (it must be one), else the directory above the first PATH entry that holds a python,
/// when that is a virtualenv (it has `pyvenv.cfg`).
fn active_venv(
    virtual_env: Option<PathBuf>,
    path: Option<std::ffi::OsString>,
) -> Result<Option<PathBuf>, AppError> {
    if let Some(dir) = virtual_env.filter(|d| !d.as_os_str().is_empty()) {
        if dir.join("pyvenv.cfg").is_file() {
            return Ok(Some(dir));
        }
        return Err(AppError::Interpreter(format!(
            "VIRTUAL_ENV={} is not a virtualenv (it has no pyvenv.cfg): activate a virtualenv or unset VIRTUAL_ENV",
            dir.display()
        )));
    }
    let Some(path) = path else {
        return Ok(None);
    };
    for dir in std::env::split_paths(&path) {
        if ["python3", "python"].iter().any(|p| dir.join(p).exists()) {
            return Ok(dir
                .parent()
                .filter(|venv| venv.join("pyvenv.cfg").is_file())
                .map(Path::to_path_buf));
        }
    }
    Ok(None)
}

/// The `version` (or `version_info`) a virtualenv's `pyvenv.cfg` records.
fn venv_version(venv: &Path) -> Result<(u32, u32), AppError> {
    let cfg = venv.join("pyvenv.cfg");
    let text = std::fs::read_to_string(&cfg)
        .map_err(|e| AppError::Interpreter(format!("cannot read {}: {e}", cfg.display())))?;
    text.lines()
        .filter_map(|line| line.split_once('='))
        .find(|(key, _)| matches!(key.trim(), "version" | "version_info"))
        .and_then(|(_, value)| parse_version(value.trim()))
        .ok_or_else(|| {
            AppError::Interpreter(format!(
                "{} records no Python version: recreate the virtualenv",
                cfg.display()
            ))
        })
}

fn venv_python(venv: &Path) -> PathBuf {
    let bin = venv.join("bin");
    ["python3", "python"]
        .iter()
        .map(|name| bin.join(name))
        .find(|p| p.exists())
        .unwrap_or_else(|| bin.join("python3"))
}

/// Start the interpreter in this process, once: configured with the environment's
/// executable (so a virtualenv's `site-packages` are found), the process's arguments as
/// `sys.argv`, and no Python signal handlers. The working directory goes first on
/// `sys.path`, then `--pythonpath`, as gunicorn puts them. Leaves the GIL released.
pub(super) fn start(python: &PythonConfig) -> Result<(), AppError> {
    // SAFETY: Py_IsInitialized may be called at any time.
    if unsafe { ffi::Py_IsInitialized() } != 0 {
        return Ok(());
    }
    let env = Environment::find()?;
    initialize(&env)?;
    Python::attach(|py| -> PyResult<()> {
        // Imported on this (the main) thread so that it is threading's main thread,
        // which finalization expects.
        py.import("threading")?;
        let sys = py.import("sys")?;
        let sys_path = sys.getattr("path")?;
        let os_path = py.import("os.path")?;
        let mut first = vec![std::env::current_dir()
            .map(|d| d.into_os_string())
            .unwrap_or_default()];
        first.extend(python.pythonpath.iter().map(|p| p.clone().into_os_string()));
        for (i, dir) in first.into_iter().enumerate() {
            let dir = os_path.call_method1("abspath", (dir,))?;
            if sys_path.contains(&dir)? {
                sys_path.call_method1("remove", (&dir,))?;
            }
            sys_path.call_method1("insert", (i, dir))?;
        }
        Ok(())
    })
    .map_err(|err| AppError::Interpreter(format!("cannot set up sys.path: {err}")))?;
    Ok(())
}

/// The command line as started, for `sys.argv` (see [`keep_argv`]).
static ARGV: OnceLock<Vec<OsString>> = OnceLock::new();

/// Keep the command line before the process title overwrites the memory that
/// `std::env::args` reads.
pub fn keep_argv() {
    ARGV.get_or_init(|| std::env::args_os().collect());
}

fn initialize(env: &Environment) -> Result<(), AppError> {
    let fail = |what: &str| AppError::Interpreter(format!("cannot start Python: {what}"));
    let argv = ARGV.get_or_init(|| std::env::args_os().collect());
    let args: Vec<CString> = argv
        .iter()
        .filter_map(|a| CString::new(a.as_bytes()).ok())
        .collect();
    let mut argv: Vec<*const std::ffi::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    let executable = match &env.executable {
        Some(exe) => {
            Some(CString::new(exe.as_os_str().as_bytes()).map_err(|_| fail("NUL in path"))?)
        }
        None => None,
    };
    // SAFETY: PyConfig is a plain C struct that PyConfig_InitPythonConfig fills in
    // completely before anything reads it; the strings handed to CPython are copied by
    // PyConfig_Set*, and PyConfig_Clear frees CPython's copies on every path.
    unsafe {
        let mut config = std::mem::MaybeUninit::<ffi::PyConfig>::zeroed();
        ffi::PyConfig_InitPythonConfig(config.as_mut_ptr());
        let mut config = config.assume_init();
        config.install_signal_handlers = 0;
        config.parse_argv = 0;
        let mut status = ffi::PyStatus_Ok();
        if let Some(exe) = &executable {
            status =
                ffi::PyConfig_SetBytesString(&mut config, &mut config.executable, exe.as_ptr());
        }
        if ffi::PyStatus_Exception(status) == 0 {
            status = ffi::PyConfig_SetBytesArgv(
                &mut config,
                argv.len() as ffi::Py_ssize_t,
                argv.as_mut_ptr(),
            );
        }
        if ffi::PyStatus_Exception(status) == 0 {
            status = ffi::Py_InitializeFromConfig(&config);
        }
        ffi::PyConfig_Clear(&mut config);
        if ffi::PyStatus_Exception(status) != 0 {
            let msg = if status.err_msg.is_null() {
                "initialization failed".to_string()
            } else {
                CStr::from_ptr(status.err_msg)
                    .to_string_lossy()
                    .into_owned()
            };
            return Err(fail(&format!(
                "{msg} (executable {})",
                env.executable
                    .as_deref()
                    .map_or("unset".into(), |p| p.display().to_string())
            )));
        }
        // The initializing thread holds the GIL: give it up so app threads can attach.
        ffi::PyEval_SaveThread();
    }
    Ok(())
}

/// Run `fork` with CPython's fork protocol when this process runs Python: the GIL taken
/// and `PyOS_BeforeFork` before, `PyOS_AfterFork_Parent`/`_Child` after (Python's own
/// locks and `os.register_at_fork` callbacks are handled as `os.fork` does).
pub fn fork_with<T>(fork: impl FnOnce() -> T, is_child: impl Fn(&T) -> bool) -> T {
    // SAFETY: Py_IsInitialized may be called at any time.
    if unsafe { ffi::Py_IsInitialized() } == 0 {
        return fork();
    }
    Python::attach(|_py| {
        // SAFETY: called with the GIL held, as os.fork does, around the fork itself.
        unsafe { ffi::PyOS_BeforeFork() };
        let result = fork();
        if is_child(&result) {
            // SAFETY: in the child right after fork, still holding the GIL.
            unsafe { ffi::PyOS_AfterFork_Child() };
        } else {
            // SAFETY: in the parent right after fork, still holding the GIL.
            unsafe { ffi::PyOS_AfterFork_Parent() };
        }
        result
    })
}

/// The process is leaving: flush `sys.stdout`/`sys.stderr` and finalize the interpreter
/// (running `atexit` handlers). App threads get a moment to detach; if one is stuck in
/// the app, the interpreter cannot be finalized under it, so only the flush is attempted
/// (from a helper thread, bounded, in case the stuck thread holds the GIL).
pub fn finish() {
    // SAFETY: Py_IsInitialized may be called at any time.
    if unsafe { ffi::Py_IsInitialized() } == 0 {
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(1);
    while ATTACHED.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut usable = USABLE.lock().unwrap_or_else(|e| e.into_inner());
    if !*usable {
        return;
    }
    if ATTACHED.load(Ordering::SeqCst) == 0 {
        *usable = false;
        // SAFETY: no app thread is attached and the reload watcher is held off by
        // `USABLE`; this is the thread that initialized Python (the process's main
        // thread), which takes the GIL and never gives it back: nothing runs Python after.
        unsafe {
            ffi::PyGILState_Ensure();
            if ffi::Py_FinalizeEx() < 0 {
                crate::log_warning!("Python could not flush stdout or stderr at exit");
            }
        }
        return;
    }
    drop(usable);
    crate::log_warning!(
        "an app thread is still running Python: flushing its output without finalizing"
    );
    let (done_tx, done_rx) = crossbeam_channel::bounded(1);
    let _ = std::thread::Builder::new()
        .name("py-flush".into())
        .spawn(move || {
            Python::attach(flush_std_streams);
            let _ = done_tx.send(());
        });
    let _ = done_rx.recv_timeout(Duration::from_secs(1));
}

pub(super) fn flush_std_streams(py: Python<'_>) {
    if let Ok(sys) = py.import("sys") {
        for name in ["stdout", "stderr"] {
            if let Ok(stream) = sys.getattr(name) {
                if !stream.is_none() {
                    let _ = stream.call_method0("flush");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("3.11.7 (main, May  9 2026)"), Some((3, 11)));
        assert_eq!(parse_version("3.9"), Some((3, 9)));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn the_virtualenv_is_virtual_env_or_first_on_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let venv = dir.path().join("venv");
        std::fs::create_dir_all(venv.join("bin")).expect("mkdir");
        std::fs::write(
            venv.join("pyvenv.cfg"),
            "home = /usr/bin\nversion = 3.11.2\n",
        )
        .expect("write");
        std::fs::write(venv.join("bin/python3"), "").expect("write");
        let system = dir.path().join("usr/bin");
        std::fs::create_dir_all(&system).expect("mkdir");
        std::fs::write(system.join("python3"), "").expect("write");

        let path = |dirs: &[&Path]| Some(std::env::join_paths(dirs).expect("join"));
        let found = active_venv(None, path(&[&venv.join("bin"), &system])).expect("ok");
        assert_eq!(found.as_deref(), Some(venv.as_path()));
        // A system python earlier on PATH wins: no virtualenv is active.
        assert_eq!(
            active_venv(None, path(&[&system, &venv.join("bin")])).expect("ok"),
            None
        );
        assert_eq!(
            active_venv(Some(venv.clone()), path(&[&system]))
                .expect("ok")
                .as_deref(),
            Some(venv.as_path())
        );
        let err = active_venv(Some(system.clone()), None).expect_err("not a venv");
        assert!(err.to_string().contains("no pyvenv.cfg"), "{err}");
        assert_eq!(venv_version(&venv).expect("version"), (3, 11));
    }
}
