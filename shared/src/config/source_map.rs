//! Field path → line in the YAML file, so that a validation problem found on the parsed
//! model (`tables[1].window.size`) points at the line a user has to fix.
//!
//! serde gives lines for the errors it finds itself (unknown fields, wrong types); the checks
//! in [`super::validate`] run on plain structs that no longer know where they came from.
//! This module walks the YAML event stream once and records where each key and each
//! sequence item starts.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Lines of every mapping key and sequence item, by field path.
#[derive(Debug, Default, Clone)]
pub struct SourceMap {
    lines: HashMap<String, usize>,
}

impl SourceMap {
    /// Indexes `text`. A document that does not parse gives an empty map (serde reports it).
    pub fn new(text: &str) -> Self {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut builder, false).is_err() {
            return SourceMap::default();
        }
        SourceMap {
            lines: builder.lines,
        }
    }

    /// The line of `path`, or of its closest ancestor that is in the file.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Mapping { key: Option<String> },
    Sequence { index: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<(String, Frame)>,
    lines: HashMap<String, usize>,
}

impl Builder {
    /// Path of the value that starts now, recording its line; `None` when the event is a key.
    fn value_path(&mut self, line: usize) -> Option<String> {
        let (base, frame) = self.stack.last_mut()?;
        match frame {
            Frame::Mapping { key } => {
                let key = key.take()?;
                Some(join(base, &key))
            }
            Frame::Sequence { index } => {
                let path = format!("{base}[{index}]");
                *index += 1;
                self.lines.entry(path.clone()).or_insert(line);
                Some(path)
            }
        }
    }
}

fn join(base: &str, key: &str) -> String {
    if base.is_empty() {
        key.to_string()
    } else {
        format!("{base}.{key}")
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let line = mark.line();
        match ev {
            Event::Scalar(value, ..) => {
                // A scalar is either a key (mapping waiting for one) or a value.
                if let Some((base, Frame::Mapping { key })) = self.stack.last_mut()
                    && key.is_none()
                {
                    self.lines.entry(join(base, &value)).or_insert(line);
                    *key = Some(value);
                    return;
                }
                self.value_path(line);
            }
            Event::Alias(_) => {
                self.value_path(line);
            }
            Event::MappingStart(..) => {
                let path = self.value_path(line).unwrap_or_default();
                self.stack.push((path, Frame::Mapping { key: None }));
            }
            Event::SequenceStart(..) => {
                let path = self.value_path(line).unwrap_or_default();
                self.stack.push((path, Frame::Sequence { index: 0 }));
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_items_and_ancestors() {
        let text = "name: x\ntables:\n  - name: a\n    window:\n      kind: tumbling\n      size: 1m\n  - name: b\n    key: [status, path]\n";
        let map = SourceMap::new(text);
        assert_eq!(map.line_of("name"), Some(1));
        assert_eq!(map.line_of("tables"), Some(2));
        assert_eq!(map.line_of("tables[0]"), Some(3));
        assert_eq!(map.line_of("tables[0].window.size"), Some(6));
        assert_eq!(map.line_of("tables[1].name"), Some(7));
        assert_eq!(map.line_of("tables[1].key[1]"), Some(8));
        // Not in the file: the closest ancestor.
        assert_eq!(map.line_of("tables[1].aggregates[0].column"), Some(7));
        assert_eq!(map.line_of("nothing"), None);
    }
}
