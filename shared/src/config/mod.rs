//! The pipeline file: one YAML document drives both binaries.
//!
//! Three steps, kept apart so each is easy to test and to change:
//!
//! 1. **parse** ([`load`]): YAML into the plain serde structs of [`model`]; unknown fields
//!    and wrong types are refused here, with the line serde saw;
//! 2. **validate** ([`validate`]): a pure function over the parsed model that returns
//!    *every* problem with its field path (`tables[1].window.size`); [`source_map`] turns
//!    the path into a line of the file;
//! 3. **build**: each binary turns the validated model into its runtime objects.
//!
//! The doc comments on the model are the user documentation of each field; `README.md`
//! repeats them as a reference.

pub mod engine;
pub mod filter;
mod load;
pub mod model;
pub mod source_map;
pub mod validate;

pub use engine::Engine;
pub use load::{ConfigError, LoadedConfig, Problem, load, load_str};
pub use model::*;
