//! The fuzz targets' properties (fuzz/checks.rs) on every input we keep: the request
//! fixtures (workers/tests/fixtures/requests/*.http), the fuzz seeds (fuzz/seeds/TARGET)
//! and every input a fuzzer ever crashed on (fuzz/regressions/TARGET, kept forever).
//! So the properties hold in every `cargo test`, not only while CI fuzzes.

#[path = "../../fuzz/checks.rs"]
mod checks;

use std::fs;
use std::path::{Path, PathBuf};

fn files(dir: &Path, ext: Option<&str>) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| ext.is_none_or(|ext| p.extension().is_some_and(|x| x == ext)))
        .collect();
    files.sort();
    files
}

fn replay(target: &str, check: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut inputs = files(&root.join("workers/tests/fixtures/requests"), Some("http"));
    inputs.extend(files(&root.join("fuzz/seeds").join(target), None));
    inputs.extend(files(&root.join("fuzz/regressions").join(target), None));
    for input in &inputs {
        let data = fs::read(input).expect("input is readable");
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target} fails on {}", input.display());
    }
    inputs.len()
}

#[test]
fn request_head_properties_hold_on_every_kept_input() {
    assert!(replay("request_head", checks::request_head) >= 150);
}

#[test]
fn chunked_properties_hold_on_every_kept_input() {
    assert!(replay("chunked", checks::chunked) >= 150);
}

#[test]
fn response_head_properties_hold_on_every_kept_input() {
    assert!(replay("response_head", checks::response_head) >= 156);
}

#[test]
fn worker_and_front_framing_agree_on_every_kept_input() {
    assert!(replay("framing", checks::framing) >= 150);
}
