//! Support for the Python tests (`tests/python_*.rs`, built with the `python` feature):
//! a virtualenv of the Python rgunicorn was built against with the real packages of
//! `tests/python/requirements.txt` (made once, on first use, under target/tmp), and
//! starting rgunicorn on a Python app with that virtualenv active.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rgunicorn::workers::app::wsgi::interpreter::BUILD_EXECUTABLE;

use super::common::{rgunicorn_bin, worker_count, Server};

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Test apps: `tests/python/apps`.
pub fn apps() -> PathBuf {
    manifest_dir().join("tests/python/apps")
}

/// The README's examples: `examples/python`.
pub fn examples() -> PathBuf {
    manifest_dir().join("examples/python")
}

/// The tests' virtualenv, made on first use (about ten seconds with a warm pip cache) and
/// kept while the requirements and the Python stay the same.
pub fn venv() -> &'static Path {
    static VENV: OnceLock<PathBuf> = OnceLock::new();
    VENV.get_or_init(make_venv)
}

fn make_venv() -> PathBuf {
    super::common::tools::venv(
        Path::new(BUILD_EXECUTABLE),
        &manifest_dir().join("tests/python/requirements.txt"),
        "python-venv",
    )
}

/// rgunicorn as a user starts it: from `cwd`, the tests' virtualenv active (VIRTUAL_ENV and
/// its bin/ first on PATH) unless `env` says otherwise.
pub fn command(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let venv = venv();
    let mut cmd = Command::new(rgunicorn_bin());
    if !args.iter().any(|a| *a == "-b" || a.starts_with("--bind")) {
        cmd.args(["-b", "127.0.0.1:0"]);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs = vec![venv.join("bin")];
    dirs.extend(std::env::split_paths(&path));
    cmd.args(args)
        .current_dir(cwd)
        .env_remove("WEB_CONCURRENCY")
        .env_remove("PORT")
        .env_remove("RGUNICORN_CMD_ARGS")
        .env_remove("PYTHONPATH")
        .env_remove("PYTHONHOME")
        .env("VIRTUAL_ENV", venv)
        .env("PATH", std::env::join_paths(dirs).expect("PATH"))
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped());
    cmd
}

/// Start rgunicorn on a Python app and wait until its workers booted.
pub fn start(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
    let dir = tempfile::tempdir().expect("temp dir");
    Server::spawn(command(cwd, args, env), worker_count(args), dir)
}

/// Run rgunicorn to its exit (a start that must fail), at most `within`.
pub fn run_to_exit(cwd: &Path, args: &[&str], env: &[(&str, &str)], within: Duration) -> Output {
    let mut child = command(cwd, args, env)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start rgunicorn");
    let deadline = Instant::now() + within;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "rgunicorn did not exit within {within:?}:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

/// A throwaway project folder holding `files` (path, contents).
pub fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    dir
}
