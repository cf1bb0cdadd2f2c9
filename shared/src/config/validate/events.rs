//! `derive` and `lookup`: the rules of the clauses that shape the events before any table
//! sees them. They return the event schema the table and report rules check against.

use std::collections::HashSet;

use arrow::datatypes::{DataType, Schema, SchemaRef};

use super::checker::{Checker, field_list};
use crate::config::model::{DimensionConfig, FieldConfig, Literal, LookupConfig, PipelineConfig};
use crate::schema;
use crate::types::arrow_type;

/// The events as the tables see them: checks `derive`, then (when it compiles) `lookup`.
pub(super) fn check_events(c: &mut Checker, cfg: &PipelineConfig) -> SchemaRef {
    let derived = check_derive(c, cfg);
    if let Some(derived) = &derived {
        check_lookups(c, cfg, derived);
    }
    schema::with_lookup_columns(
        cfg,
        derived.unwrap_or_else(|| schema::source_events_of(cfg)),
    )
}

/// `derive`: names that do not clash, expressions DataFusion plans against the fields
/// before them.
fn check_derive(c: &mut Checker, cfg: &PipelineConfig) -> Option<SchemaRef> {
    let source = schema::source_events_of(cfg);
    let mut names = HashSet::new();
    for (i, d) in cfg.derive.iter().enumerate() {
        c.check_name(format!("derive[{i}].name"), &d.name);
        c.check_unique(
            &mut names,
            format!("derive[{i}].name"),
            &d.name,
            "derived column",
        );
    }
    match crate::expr::Derivations::compile(&source, &cfg.derive) {
        Ok(d) => Some(d.schema(&source).clone()),
        Err((i, e)) => {
            let at = if e.contains("already a field") {
                "name"
            } else {
                "expr"
            };
            c.report(format!("derive[{i}].{at}"), e);
            None
        }
    }
}

/// `lookup`: a dimension table, a key on both sides with types that match, columns that
/// exist and do not clash, defaults of the right type.
fn check_lookups(c: &mut Checker, cfg: &PipelineConfig, before: &Schema) {
    let mut fields: HashSet<String> = before.fields().iter().map(|f| f.name().clone()).collect();
    for (i, l) in cfg.lookup.iter().enumerate() {
        let p = format!("lookup[{i}]");
        let Some(d) = cfg.dimension(&l.table) else {
            let known: Vec<&str> = cfg.dimensions.iter().map(|d| d.name.as_str()).collect();
            c.report(
                format!("{p}.table"),
                format!(
                    "no dimension `{}` (dimensions: {})",
                    l.table,
                    known.join(", ")
                ),
            );
            continue;
        };
        check_lookup_key(c, &p, l, d, before);
        let added = check_lookup_columns(c, &p, l, d, &mut fields);
        check_lookup_defaults(c, &p, l, &added);
    }
}

/// `on`: an event field and a dimension column whose values can be matched.
fn check_lookup_key(
    c: &mut Checker,
    p: &str,
    l: &LookupConfig,
    d: &DimensionConfig,
    before: &Schema,
) {
    let key = d.columns.iter().find(|k| k.name == l.on.column());
    match (before.field_with_name(l.on.field()), key) {
        (Err(_), _) => c.report(
            format!("{p}.on"),
            format!("no event field `{}` (fields: {})", l.on.field(), field_list(before)),
        ),
        (_, None) => c.report(
            format!("{p}.on"),
            format!("dimension `{}` has no column `{}`", d.name, l.on.column()),
        ),
        (Ok(f), Some(k)) if !schema::lookup_key_types_match(f.data_type(), &arrow_type(k.data_type)) => c.report(
            format!("{p}.on"),
            format!(
                "event field `{}` is {} and dimension column `{}` is {}; they cannot be matched",
                f.name(),
                f.data_type(),
                k.name,
                arrow_type(k.data_type)
            ),
        ),
        _ => {}
    }
}

/// `columns`: columns of the dimension, none already a field of the events (`fields`, which
/// grows by what each lookup adds). Returns the columns this lookup adds.
fn check_lookup_columns<'d>(
    c: &mut Checker,
    p: &str,
    l: &LookupConfig,
    d: &'d DimensionConfig,
    fields: &mut HashSet<String>,
) -> Vec<&'d FieldConfig> {
    for (j, col) in l.columns.iter().enumerate() {
        if !d.columns.iter().any(|k| &k.name == col) {
            c.report(
                format!("{p}.columns[{j}]"),
                format!("dimension `{}` has no column `{col}`", d.name),
            );
        }
    }
    let added = schema::lookup_columns(l, d);
    for col in &added {
        if !fields.insert(col.name.clone()) {
            c.report(
                format!("{p}.columns"),
                format!(
                    "`{}` is already a field of the events; add only other columns",
                    col.name
                ),
            );
        }
    }
    added
}

/// `defaults`: values for columns this lookup adds, of their type.
fn check_lookup_defaults(c: &mut Checker, p: &str, l: &LookupConfig, added: &[&FieldConfig]) {
    for (name, v) in &l.defaults {
        match added.iter().find(|k| &k.name == name) {
            None => c.report(
                format!("{p}.defaults.{name}"),
                format!("`{name}` is not a column this lookup adds"),
            ),
            Some(k) if !literal_fits(v, &arrow_type(k.data_type)) => c.report(
                format!("{p}.defaults.{name}"),
                format!(
                    "`{name}` is {}; {v:?} does not fit",
                    arrow_type(k.data_type)
                ),
            ),
            Some(_) => {}
        }
    }
}

fn literal_fits(v: &Literal, t: &DataType) -> bool {
    matches!(
        (v, t),
        (Literal::String(_), DataType::Utf8)
            | (
                Literal::Int(_),
                DataType::Int32 | DataType::Int64 | DataType::Float64
            )
            | (Literal::Float(_), DataType::Float64)
            | (Literal::Bool(_), DataType::Boolean)
    )
}

#[cfg(test)]
mod tests {
    use crate::config::validate::testing::{has, problems, with};

    #[test]
    fn derive_expressions_are_planned_with_their_line() {
        let p = problems(&with(
            "derive:\n  - { name: class, expr: status / 100 }\n  - { name: kind, expr: \"lower(user_agnet)\" }\n  - { name: bad, expr: \"no_such_fn(path)\" }\n",
        ));
        has(&p, "7:derive[1].expr", "user_agnet");
        // Compilation stops at the first bad expression: later ones are checked once it is fixed.
        assert_eq!(p.len(), 1, "{p:?}");
        let p = problems(&with(
            "derive:\n  - { name: bad, expr: \"no_such_fn(path)\" }\n",
        ));
        has(&p, "6:derive[0].expr", "no_such_fn");
        let p = problems(&with("derive:\n  - { name: path, expr: \"1\" }\n"));
        has(&p, "6:derive[0].name", "already a field");
        let p = problems(&with("derive:\n  - { name: x, expr: \"status +\" }\n"));
        has(&p, "6:derive[0].expr", "");
        // A derived column is a key, an aggregate input and a filter operand.
        let yaml = with("derive:\n  - { name: class, expr: status / 100 }\n")
            .replace(
                "key: [status]",
                "key: [class]\n    filter: \"class >= 4 OR path LIKE '/api/%'\"",
            )
            .replace(
                "{ name: requests, fn: count }",
                "{ name: requests, fn: count }\n      - { name: m, fn: max, column: class }",
            );
        assert_eq!(problems(&yaml), Vec::<String>::new());
    }

    #[test]
    fn lookups_name_their_problems() {
        let dims = "dimensions:\n  - name: codes\n    path: codes.csv\n    columns: [{ name: status, type: int32 }, { name: label, type: string }, { name: n, type: int64 }]\n";
        let ok = with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: status, defaults: {{ label: other }} }}\n"
        ))
        .replace("key: [status]", "key: [label]");
        assert_eq!(problems(&ok), Vec::<String>::new());
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: cods, on: status }}\n"
        )));
        has(&p, "10:lookup[0].table", "no dimension `cods`");
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: path }}\n"
        )));
        has(
            &p,
            "10:lookup[0].on",
            "dimension `codes` has no column `path`",
        );
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: {{ field: host, column: status }} }}\n"
        )));
        has(&p, "10:lookup[0].on", "cannot be matched");
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: status, columns: [labl] }}\n"
        )));
        has(&p, "10:lookup[0].columns[0]", "no column `labl`");
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: status, defaults: {{ n: x }} }}\n"
        )));
        has(&p, "10:lookup[0].defaults.n", "does not fit");
        let p = problems(&with(&format!(
            "{dims}lookup:\n  - {{ table: codes, on: status, defaults: {{ path: x }} }}\n"
        )));
        has(
            &p,
            "10:lookup[0].defaults.path",
            "not a column this lookup adds",
        );
    }
}
