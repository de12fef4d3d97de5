//! With the `python` feature: point the workers crate's own test binaries at the libpython
//! pyo3 was configured with (an rpath: without it the loader may pick another libpython of
//! the same soname, whose standard library and packages do not match), and record which
//! Python that was, for the virtualenv check and messages. Without the feature: nothing.

fn main() {
    #[cfg(feature = "python")]
    python();
}

#[cfg(feature = "python")]
fn python() {
    let config = pyo3_build_config::get();
    let version = config.version();
    let asked = config.executable().unwrap_or("python3");
    if version < (pyo3_build_config::PythonVersion { major: 3, minor: 9 }) {
        panic!(
            "rgunicorn's python feature needs CPython 3.9 or newer; pyo3 found {version} ({asked}): set PYO3_PYTHON to a newer python3"
        );
    }
    pyo3_build_config::add_libpython_rpath_link_args();
    // PYO3_PYTHON may be a bare name: record the interpreter's own absolute path, which
    // an embedded interpreter without a virtualenv is configured with (sys.executable).
    let executable = std::process::Command::new(asked)
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| asked.to_string());
    println!("cargo:rustc-env=RGUNICORN_PYTHON_VERSION={version}");
    println!("cargo:rustc-env=RGUNICORN_PYTHON_EXECUTABLE={executable}");
}
