//! What the tests of the validation rules share: a valid base pipeline, the problems of a
//! whole file (through [`load_str`]), and one rule run alone on a parsed, unvalidated file.

use std::path::Path;

use super::checker::Checker;
use crate::config::source_map::SourceMap;
use crate::config::{ConfigError, LoadedConfig, load_str};

pub(super) const BASE: &str = r#"name: t
source: { kind: stdin }
format: { kind: apache }
event_time: { field: ts, max_out_of_orderness: 60s }
tables:
  - name: status_1m
    window: { kind: tumbling, size: 1m }
    key: [status]
    aggregates:
      - { name: requests, fn: count }
lake: { root: lake }
"#;

/// The problems of a whole file, each as `line:path: message`.
pub(super) fn problems(yaml: &str) -> Vec<String> {
    match load_str(yaml, Path::new("p.yaml")) {
        Ok(_) => vec![],
        Err(ConfigError::Invalid { problems, .. }) => problems
            .iter()
            .map(|p| format!("{}:{}: {}", p.line.unwrap_or(0), p.path, p.message))
            .collect(),
        Err(e) => panic!("{e}"),
    }
}

/// BASE with `extra` before `tables:`.
pub(super) fn with(extra: &str) -> String {
    BASE.replace("tables:", &format!("{extra}tables:"))
}

pub(super) fn has(p: &[String], prefix: &str, needle: &str) {
    assert!(
        p.iter()
            .any(|m| m.starts_with(prefix) && m.contains(needle)),
        "no `{prefix}…{needle}` in {p:?}"
    );
}

/// `yaml` parsed but not validated, so that one rule can run on it alone.
pub(super) fn parsed(yaml: &str) -> LoadedConfig {
    LoadedConfig {
        config: serde_yaml_ng::from_str(yaml).expect("the test pipeline parses"),
        file: "p.yaml".into(),
        source_map: SourceMap::new(yaml),
    }
}

/// The problems `rule` reports on `loaded`, each as `line:path: message`.
pub(super) fn run(loaded: &LoadedConfig, rule: impl FnOnce(&mut Checker)) -> Vec<String> {
    let mut c = Checker::new(loaded);
    rule(&mut c);
    c.problems
        .iter()
        .map(|p| format!("{}:{}: {}", p.line.unwrap_or(0), p.path, p.message))
        .collect()
}

/// Column names, for the lists the report rules take.
pub(super) fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}
