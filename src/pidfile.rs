//! The `--pid` file: written atomically (temp file then rename) and removed on exit,
//! but only when it still holds our pid. A master started by a USR2 upgrade writes
//! `PIDFILE.2` and renames it to `PIDFILE` once the old master is gone.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write pidfile {}: {source}", path.display())]
pub struct PidfileError {
    path: PathBuf,
    source: io::Error,
}

pub struct Pidfile {
    path: PathBuf,
}

impl Pidfile {
    pub fn create(path: &Path) -> Result<Pidfile, PidfileError> {
        let err = |source| PidfileError {
            path: path.to_path_buf(),
            source,
        };
        let pid = std::process::id();
        let tmp = path.with_extension(format!("tmp{pid}"));
        fs::write(&tmp, format!("{pid}\n")).map_err(err)?;
        fs::rename(&tmp, path).map_err(|e| {
            let _ = fs::remove_file(&tmp);
            err(e)
        })?;
        Ok(Pidfile {
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Move the file to `to` (the upgraded master taking `PIDFILE` over from `PIDFILE.2`).
    pub fn rename(self, to: &Path) -> Result<Pidfile, PidfileError> {
        fs::rename(&self.path, to).map_err(|source| PidfileError {
            path: to.to_path_buf(),
            source,
        })?;
        Ok(Pidfile {
            path: to.to_path_buf(),
        })
    }

    pub fn remove(self) {
        let ours = fs::read_to_string(&self.path)
            .map(|s| s.trim() == std::process::id().to_string())
            .unwrap_or(false);
        if ours {
            let _ = fs::remove_file(&self.path);
        }
    }
}
