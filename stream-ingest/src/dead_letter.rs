//! The dead-letter file: invalid lines kept as JSON objects (`line`, `reason`, `text`), one
//! per line, appended, so that a user can see what was skipped and why.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("cannot write the dead-letter file {}: {source}", path.display())]
pub struct DeadLetterError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

pub struct DeadLetter {
    path: PathBuf,
    out: BufWriter<File>,
}

#[derive(serde::Serialize)]
struct Entry<'a> {
    line: u64,
    reason: &'a str,
    text: &'a str,
}

impl DeadLetter {
    pub fn open(path: &Path) -> Result<Self, DeadLetterError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DeadLetterError {
                path: path.into(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| DeadLetterError {
                path: path.into(),
                source,
            })?;
        Ok(DeadLetter {
            path: path.into(),
            out: BufWriter::new(file),
        })
    }

    pub fn write(&mut self, line: u64, reason: &str, text: &[u8]) -> Result<(), DeadLetterError> {
        let text = String::from_utf8_lossy(text);
        let entry = Entry {
            line,
            reason,
            text: &text,
        };
        serde_json::to_writer(&mut self.out, &entry)
            .map_err(std::io::Error::from)
            .and_then(|_| self.out.write_all(b"\n"))
            .map_err(|source| DeadLetterError {
                path: self.path.clone(),
                source,
            })
    }

    /// Flushes and returns the file's length: what a checkpoint records.
    pub fn checkpoint_len(&mut self) -> Result<u64, DeadLetterError> {
        self.flush()?;
        self.out
            .get_ref()
            .metadata()
            .map(|m| m.len())
            .map_err(|source| DeadLetterError {
                path: self.path.clone(),
                source,
            })
    }

    /// Cuts the file back to a checkpoint's length: lines after it are written again by the replay.
    pub fn truncate(&mut self, len: u64) -> Result<(), DeadLetterError> {
        self.flush()?;
        let file = self.out.get_ref();
        if file.metadata().map(|m| m.len() > len).unwrap_or(false) {
            file.set_len(len).map_err(|source| DeadLetterError {
                path: self.path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    pub fn flush(&mut self) -> Result<(), DeadLetterError> {
        self.out.flush().map_err(|source| DeadLetterError {
            path: self.path.clone(),
            source,
        })
    }
}
