//! The Python that runs the operations tests' reference tools (tests/ops.rs parses the
//! metrics page with prometheus_client's own parser; tests/deploy.rs validates the
//! Kubernetes manifests with kubernetes-validate): `python3` from the PATH when it has
//! both, else a virtualenv made once, on first use, under target/tmp with the pinned
//! packages of `tests/python/tools-requirements.txt` from PyPI. So the README's test
//! command needs nothing installed by hand but python3 and its venv module.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The python3 to run the tools with.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(find_or_make)
}

fn find_or_make() -> PathBuf {
    let has_tools = |python: &Path| {
        Command::new(python)
            .args(["-c", "import prometheus_client, kubernetes_validate, yaml"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_tools(Path::new("python3")) {
        return PathBuf::from("python3");
    }
    let requirements =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/tools-requirements.txt");
    let dir = venv(Path::new("python3"), &requirements, "tools-venv");
    let python = dir.join("bin/python");
    assert!(has_tools(&python), "the tools venv lacks its packages");
    python
}

/// A virtualenv of `python` named `name` under target/tmp with the packages of
/// `requirements`, made once and kept while the requirements and `python` stay the same
/// (a stamp holds both); a lock keeps two test runs from making it at once.
pub fn venv(python: &Path, requirements: &Path, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let wanted = format!(
        "{}\n{}",
        python.display(),
        std::fs::read_to_string(requirements)
            .unwrap_or_else(|e| panic!("{}: {e}", requirements.display()))
    );
    std::fs::create_dir_all(dir.parent().expect("parent")).expect("target/tmp");
    // Test binaries of one `cargo test` run one after another, but two runs may overlap.
    let lock = std::fs::File::create(dir.with_extension("lock")).expect("lock file");
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("lock the venv");
    let stamp = dir.join(".rgunicorn-stamp");
    if std::fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    setup(
        Command::new(python).args(["-m", "venv"]).arg(&dir),
        "python3 -m venv (Debian: apt-get install python3-venv)",
    );
    setup(
        Command::new(dir.join("bin/python"))
            .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
            .arg("-r")
            .arg(requirements),
        &format!("pip install -r {}", requirements.display()),
    );
    std::fs::write(&stamp, wanted).expect("write the venv stamp");
    dir
}

fn setup(cmd: &mut Command, what: &str) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
