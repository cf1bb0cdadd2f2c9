//! The pipeline file: one YAML document drives both binaries.
//!
//! Three steps, kept apart so each is easy to test and to change:
//!
//! 1. **parse** ([`load`]): YAML into the plain serde structs of [`model`]; unknown fields
//!    and wrong types are refused here, with the line serde saw;
//! 2. **validate** (`validate/`): a pure function over the parsed model that returns
//!    *every* problem with its field path (`tables[1].window.size`); `source_map.rs` turns
//!    the path into a line of the file;
//! 3. **build**: each binary turns the validated model into its runtime objects.
//!
//! The doc comments on the model are the user documentation of each field; `README.md`
//! repeats them as a reference.
//!
//! The types every step shares ([`Problem`], [`ConfigError`], [`LoadedConfig`]) live here,
//! so that the steps import them from above and never from each other.

use std::fmt;
use std::path::{Path, PathBuf};

pub(crate) mod filter;
mod load;
pub mod model;
pub mod query_engine;
mod source_map;
mod validate;

pub use load::{load, load_str};
pub use model::*;
pub use query_engine::QueryEngine;

use source_map::SourceMap;

/// One thing wrong with a pipeline file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Field path such as `tables[1].window.size`; empty when serde could not tell.
    pub path: String,
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    pub message: String,
}

/// A pipeline file that cannot be used. Binaries exit with status 2 on it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read pipeline file {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(file, problems))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

fn render(file: &Path, problems: &[Problem]) -> String {
    let mut out = format!(
        "{}: {} problem{} in the pipeline file",
        file.display(),
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str("\n  ");
        out.push_str(&p.located(file));
    }
    out
}

impl Problem {
    /// `file:line: field: message`, the form editors and CI logs link.
    pub fn located(&self, file: &Path) -> String {
        let mut s = file.display().to_string();
        if let Some(line) = self.line {
            s.push_str(&format!(":{line}"));
        }
        s.push_str(": ");
        if !self.path.is_empty() {
            s.push_str(&self.path);
            s.push_str(": ");
        }
        s.push_str(&self.message);
        s
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}: {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

/// A parsed and validated pipeline file, with what is needed to report later problems
/// (the binaries run checks of their own) against its lines.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: PipelineConfig,
    /// The file as named by the user.
    pub file: PathBuf,
    source_map: SourceMap,
}

impl LoadedConfig {
    /// Directory that relative paths in the file are taken from.
    pub fn base_dir(&self) -> &Path {
        match self.file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }

    /// `path` taken relative to the pipeline file when it is not absolute.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base_dir().join(path)
        }
    }

    /// A problem at a field path, with its line looked up.
    pub fn problem(&self, path: impl Into<String>, message: impl Into<String>) -> Problem {
        let path = path.into();
        Problem {
            line: self.source_map.line_of(&path),
            path,
            message: message.into(),
        }
    }

    /// The error for problems found after loading.
    pub fn invalid(&self, problems: Vec<Problem>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.clone(),
            problems,
        }
    }
}
