//! The TOML config file (`-c`): read it, reject unknown keys, and hand back raw values per
//! setting plus the `[front]` table (which `crate::front` validates). Values keep their TOML
//! type so `apply.rs` can reject a string where a number belongs.
//!
//! Relative paths inside the file (pidfile, accesslog, errorlog, `unix:` binds, chdir) are
//! relative to the directory rgunicorn was started in, not to the file: gunicorn does the same.

use std::io;
use std::path::{Path, PathBuf};

use super::apply::Raw;
use super::spec::{by_name, Spec};
use super::ConfigError;

pub(crate) struct ConfigFile {
    pub path: PathBuf,
    pub values: Vec<(&'static Spec, Raw)>,
    pub front: Option<toml::Table>,
}

pub(crate) fn read(path: &Path) -> Result<ConfigFile, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::ReadConfig {
        path: path.to_path_buf(),
        reason: io_reason(&e),
    })?;
    parse(path, &text)
}

/// Parse the file's text; `path` is only for messages.
pub(crate) fn parse(path: &Path, text: &str) -> Result<ConfigFile, ConfigError> {
    let table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::ParseConfig {
                path: path.to_path_buf(),
                message: toml_message(text, &e),
            })?;
    let mut values = Vec::new();
    let mut front = None;
    for (key, value) in table {
        if key == "front" {
            match value {
                toml::Value::Table(t) => front = Some(t),
                other => {
                    return Err(ConfigError::ParseConfig {
                        path: path.to_path_buf(),
                        message: format!(
                            "invalid value {other} for front: expected a table ([front])"
                        ),
                    })
                }
            }
            continue;
        }
        match by_name(&key) {
            // Every setting's gunicorn name is its key (the APP positional's is wsgi_app).
            Some(spec) => values.push((spec, Raw::Toml(value))),
            None => {
                return Err(ConfigError::UnknownSetting {
                    path: path.to_path_buf(),
                    key,
                })
            }
        }
    }
    Ok(ConfigFile {
        path: path.to_path_buf(),
        values,
        front,
    })
}

/// "No such file or directory", without the "(os error 2)" std appends.
fn io_reason(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_string(),
        None => e.to_string(),
    }
}

/// toml's error spans several lines (a source excerpt); keep one: line, column, message.
fn toml_message(text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', " ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {message}")
        }
        None => message,
    }
}
