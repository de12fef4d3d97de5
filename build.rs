//! With the `python` feature: give the `rgunicorn` binaries (and this package's tests) an
//! rpath to the libpython pyo3 was configured with, so the loader does not pick another
//! libpython with the same soname (whose standard library and packages would not match).
//! `LD_LIBRARY_PATH` still takes precedence. Without the feature: nothing.

fn main() {
    #[cfg(feature = "python")]
    {
        pyo3_build_config::add_libpython_rpath_link_args();
        let config = pyo3_build_config::get();
        if !config.shared() {
            // A static libpython: C extension modules resolve Python's symbols in the
            // executable itself, so they must be exported.
            println!("cargo:rustc-link-arg-bins=-Wl,--export-dynamic");
        }
    }
}
