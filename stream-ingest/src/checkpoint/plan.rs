//! What a restart does with a checkpoint taken under another version of the pipeline file:
//! the plan `stream-ingest plan` prints and `run` carries out, decided before a single event
//! is applied.
//!
//! The rules are Flink's for savepoints, per table:
//!
//! | change since the checkpoint                   | the next run                              |
//! | --------------------------------------------- | ----------------------------------------- |
//! | none                                          | continues the table                       |
//! | a new table                                   | starts it at the checkpoint's position    |
//! | a table removed                               | drops its state, leaves its lake files    |
//! | an aggregate added                            | windows open now carry NULL for it        |
//! | an aggregate removed                          | its column stops                          |
//! | window, key, filter, an aggregate's function, | refused: the state cannot continue        |
//! | or a `derive`/`lookup` the table reads        |                                           |
//! | source kind, format, event time               | refused for the whole pipeline            |
//!
//! A refusal is a [`ConfigError`] (exit 2) naming the file, line and field, with the ways
//! out: a new table name, or `run --rebuild TABLE` ([`crate::rebuild`]), which recomputes
//! the table; a table being rebuilt is never refused.

use std::fmt::{self, Write as _};

use shared::config::{ConfigError, LoadedConfig, Problem};

use super::Checkpoint;
use super::spec::{PipelineSpec, TableSpec};
use super::state::{EngineSnapshot, SinkSnapshot, TableSnapshot};

/// What the next run does with one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableChange {
    Unchanged,
    /// A table the checkpoint does not have: it starts at the checkpoint's position.
    Added,
    /// A table of the checkpoint the pipeline no longer has.
    Removed,
    /// Recomputed from the input by `run --rebuild` (whatever changed): its state and files
    /// are replaced.
    Rebuilt,
    /// Changed in a way its state cannot follow (these parts): the run is refused.
    Refused(Vec<String>),
    /// Aggregates added or removed (by output column); `open` windows carry NULL for the
    /// added ones.
    Aggregates {
        added: Vec<String>,
        removed: Vec<String>,
        open: usize,
    },
}

/// One table's line of the plan.
#[derive(Debug, Clone)]
pub struct TablePlan {
    pub name: String,
    pub change: TableChange,
    /// Its position in the checkpoint's tables.
    old: Option<usize>,
    /// For each of today's aggregates, its position in the checkpoint's (`None`: added).
    aggregates: Vec<Option<usize>>,
}

/// The plan for one checkpoint.
#[derive(Debug, Clone)]
pub struct Plan {
    pub checkpoint: u64,
    /// The tables in the pipeline file's order, then the removed ones.
    pub tables: Vec<TablePlan>,
    /// Changes the state cannot survive.
    pub refused: Vec<Problem>,
}

impl Plan {
    /// Compares the pipeline file with what computed `ck`; the tables of `rebuild` are
    /// recomputed (`run --rebuild`), so no change of theirs is refused.
    pub fn new(loaded: &LoadedConfig, ck: &Checkpoint, rebuild: &[String]) -> Plan {
        let now = PipelineSpec::of(&loaded.config);
        let mut plan = Plan {
            checkpoint: ck.id,
            tables: Vec::new(),
            refused: Vec::new(),
        };
        match &ck.spec {
            Some(then) => plan.compare(loaded, then, &now, &ck.engine),
            None => plan.positional(loaded, &now, &ck.engine),
        }
        plan.rebuild(loaded, rebuild);
        plan
    }

    /// Marks the tables of `rebuild` as recomputed, and drops the refusals that were theirs.
    /// (A checkpoint of an earlier release with another number of tables stays refused: its
    /// states cannot be told apart.)
    fn rebuild(&mut self, loaded: &LoadedConfig, rebuild: &[String]) {
        for (i, t) in loaded.config.tables.iter().enumerate() {
            if !rebuild.contains(&t.name) {
                continue;
            }
            let prefix = format!("tables[{i}]");
            self.refused
                .retain(|p| !(p.path == prefix || p.path.starts_with(&format!("{prefix}."))));
            if let Some(plan) = self.tables.iter_mut().find(|p| p.name == t.name) {
                plan.change = TableChange::Rebuilt;
                plan.old = None;
                plan.aggregates = vec![None; t.aggregates.len()];
            }
        }
    }

    /// Whether `run` may go on.
    pub fn check(&self, loaded: &LoadedConfig) -> Result<(), ConfigError> {
        if self.refused.is_empty() {
            Ok(())
        } else {
            Err(loaded.invalid(self.refused.clone()))
        }
    }

    /// A checkpoint of format 6 or 5 recorded no spec: its tables are the file's, in order,
    /// as those formats required.
    fn positional(&mut self, loaded: &LoadedConfig, now: &PipelineSpec, state: &EngineSnapshot) {
        if state.tables.len() != now.tables.len() {
            self.refused.push(loaded.problem(
                "tables",
                format!(
                    "checkpoint {} (written by an earlier release, which did not record its tables) holds {} tables and the file declares {}: the state cannot be matched to them. Put the tables back as they were for one run (the next checkpoint records them), or start over with --from-scratch",
                    self.checkpoint,
                    state.tables.len(),
                    now.tables.len()
                ),
            ));
            return;
        }
        for (i, t) in now.tables.iter().enumerate() {
            self.tables.push(TablePlan {
                name: t.name.clone(),
                change: TableChange::Unchanged,
                old: Some(i),
                aggregates: (0..t.aggregates.len()).map(Some).collect(),
            });
        }
    }

    fn compare(
        &mut self,
        loaded: &LoadedConfig,
        then: &PipelineSpec,
        now: &PipelineSpec,
        state: &EngineSnapshot,
    ) {
        let pipeline_parts = [
            ("source", "the source kind", &then.source, &now.source),
            ("format", "the format", &then.format, &now.format),
            (
                "event_time",
                "the event time",
                &then.event_time,
                &now.event_time,
            ),
        ];
        for (path, what, old, new) in pipeline_parts {
            if old != new {
                self.refused.push(loaded.problem(
                    path,
                    format!(
                        "{what} changed since checkpoint {} (was `{old}`, now `{new}`): no table's state can continue. Put it back, or start over with --from-scratch",
                        self.checkpoint
                    ),
                ));
            }
        }
        for (i, t) in now.tables.iter().enumerate() {
            let old = then.tables.iter().position(|o| o.name == t.name);
            let plan = match old {
                None => TablePlan {
                    name: t.name.clone(),
                    change: TableChange::Added,
                    old: None,
                    aggregates: vec![None; t.aggregates.len()],
                },
                Some(o) => self.table(loaded, i, &then.tables[o], t, o, &state.tables[o]),
            };
            self.tables.push(plan);
        }
        for (o, t) in then.tables.iter().enumerate() {
            if now.table(&t.name).is_none() {
                self.tables.push(TablePlan {
                    name: t.name.clone(),
                    change: TableChange::Removed,
                    old: Some(o),
                    aggregates: Vec::new(),
                });
            }
        }
    }

    /// The plan of a table both have (`i`: today's position, `o`: the checkpoint's).
    fn table(
        &mut self,
        loaded: &LoadedConfig,
        i: usize,
        then: &TableSpec,
        now: &TableSpec,
        o: usize,
        state: &TableSnapshot,
    ) -> TablePlan {
        let mut refused = self.changed_parts(loaded, i, then, now);
        let mut aggregates = Vec::new();
        let mut added = Vec::new();
        for (j, a) in now.aggregates.iter().enumerate() {
            let old = then.aggregates.iter().position(|x| x.name == a.name);
            match old.map(|p| &then.aggregates[p]) {
                Some(x) if x.state != a.state => {
                    let path = format!("tables[{i}].aggregates[{j}]");
                    let what = format!("aggregate `{}`", a.name);
                    self.refuse(loaded, path, &now.name, &what, &x.state, &a.state);
                    refused.push(what);
                }
                Some(_) => {}
                None => added.push(a.name.clone()),
            }
            aggregates.push(old);
        }
        let removed: Vec<String> = then
            .aggregates
            .iter()
            .filter(|x| now.aggregate(&x.name).is_none())
            .map(|x| x.name.clone())
            .collect();
        let change = if !refused.is_empty() {
            TableChange::Refused(refused)
        } else if added.is_empty() && removed.is_empty() {
            TableChange::Unchanged
        } else {
            let open =
                state.windows.len() + state.sessions.iter().map(|s| s.1.len()).sum::<usize>();
            TableChange::Aggregates {
                added,
                removed,
                open,
            }
        };
        TablePlan {
            name: now.name.clone(),
            change,
            old: Some(o),
            aggregates,
        }
    }

    /// Refuses each part of table `i` that its state cannot follow (window, key, filter, the
    /// `derive`/`lookup` it reads); what they are.
    fn changed_parts(
        &mut self,
        loaded: &LoadedConfig,
        i: usize,
        then: &TableSpec,
        now: &TableSpec,
    ) -> Vec<String> {
        let none = || "none".to_string();
        let parts: [(&str, &str, String, String); 4] = [
            ("window", "window", then.window.clone(), now.window.clone()),
            ("key", "key", then.key.join(", "), now.key.join(", ")),
            (
                "filter",
                "filter",
                then.filter.clone().unwrap_or_else(none),
                now.filter.clone().unwrap_or_else(none),
            ),
            (
                "",
                "derive/lookup inputs",
                then.inputs.join("; "),
                now.inputs.join("; "),
            ),
        ];
        let mut refused = Vec::new();
        for (field, what, old, new) in parts {
            if old != new {
                let path = match field {
                    "" => format!("tables[{i}]"),
                    f => format!("tables[{i}].{f}"),
                };
                self.refuse(loaded, path, &now.name, what, &old, &new);
                refused.push(what.to_string());
            }
        }
        refused
    }

    fn refuse(
        &mut self,
        loaded: &LoadedConfig,
        path: String,
        table: &str,
        what: &str,
        old: &str,
        new: &str,
    ) {
        self.refused.push(loaded.problem(
            path,
            format!(
                "{what} of table `{table}` changed since checkpoint {} (was `{old}`, now `{new}`): its open windows cannot continue. Either give the table a new name (a new table starts now; the old one's files stay), or recompute it from the input with `run --rebuild {table}`",
                self.checkpoint
            ),
        ));
    }

    /// The checkpoint's state laid out for today's tables: in the file's order, new tables
    /// empty, removed ones dropped, aggregate states moved to their new positions (an added
    /// aggregate gets a state that gives NULL). Call only once [`Plan::check`] passed.
    pub fn apply(&self, mut state: EngineSnapshot) -> EngineSnapshot {
        let mut tables: Vec<Option<TableSnapshot>> = std::mem::take(&mut state.tables)
            .into_iter()
            .map(Some)
            .collect();
        let mut sinks: Vec<Option<SinkSnapshot>> = std::mem::take(&mut state.sinks)
            .into_iter()
            .map(Some)
            .collect();
        for t in &self.tables {
            if t.change == TableChange::Removed {
                continue;
            }
            let Some(o) = t.old else {
                state.tables.push(TableSnapshot::default());
                state.sinks.push(SinkSnapshot::default());
                continue;
            };
            let mut table = tables[o].take().unwrap_or_default();
            // Aggregates added, removed, or only listed in another order.
            if t.aggregates.iter().enumerate().any(|(i, a)| *a != Some(i)) {
                table.remap_aggregates(&t.aggregates);
            }
            state.tables.push(table);
            state
                .sinks
                .push(sinks.get_mut(o).and_then(Option::take).unwrap_or_default());
        }
        state
    }

    /// Whether the next run does anything but continue.
    pub fn changes(&self) -> bool {
        self.tables
            .iter()
            .any(|t| t.change != TableChange::Unchanged)
    }
}

impl fmt::Display for TableChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableChange::Unchanged => write!(f, "unchanged: continues"),
            TableChange::Added => write!(
                f,
                "new table: starts at the checkpoint's position (earlier input is not in it)"
            ),
            TableChange::Refused(parts) => {
                write!(f, "refused: its {} changed (see below)", parts.join(", "))
            }
            TableChange::Rebuilt => write!(
                f,
                "rebuilt: recomputed from the start of the input to the checkpoint's position, its files replaced"
            ),
            TableChange::Removed => write!(
                f,
                "removed: its state is dropped; its files in the lake stay"
            ),
            TableChange::Aggregates {
                added,
                removed,
                open,
            } => {
                let mut parts = Vec::new();
                if !added.is_empty() {
                    parts.push(format!(
                        "adds {}: rows of the {open} window{} open now carry NULL for {}, windows opened later carry {}",
                        quoted(added),
                        if *open == 1 { "" } else { "s" },
                        if added.len() == 1 { "it" } else { "them" },
                        if added.len() == 1 { "it" } else { "them" },
                    ));
                }
                if !removed.is_empty() {
                    parts.push(format!(
                        "drops {}: {} column stops (earlier files keep it)",
                        quoted(removed),
                        if removed.len() == 1 { "its" } else { "their" }
                    ));
                }
                write!(f, "{}", parts.join("; "))
            }
        }
    }
}

fn quoted(names: &[String]) -> String {
    let names: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    names.join(", ")
}

impl Plan {
    /// The plan as `stream-ingest plan` prints it (refusals are printed as errors).
    pub fn render(&self) -> String {
        let width = self.tables.iter().map(|t| t.name.len()).max().unwrap_or(0);
        let mut out = String::new();
        for t in &self.tables {
            let _ = writeln!(out, "  {:width$}  {}", t.name, t.change);
        }
        out
    }
}

/// What `stream-ingest plan` found: the text to print, and why the next run would refuse
/// to start (exit 2), if it would.
pub struct PlanReport {
    pub text: String,
    pub refused: Option<ConfigError>,
}

/// The plan of the next run against the newest checkpoint of each unit of state in `lake`
/// (one for most pipelines, one per Kafka partition), as `run` would make it: the input each
/// unit reads (`identity` of its tag) must be its checkpoint's too.
pub async fn next_run(
    loaded: &LoadedConfig,
    lake: &shared::lake::Lake,
    identity: impl Fn(Option<&str>) -> String,
    rebuild: &[String],
) -> Result<PlanReport, super::CheckpointError> {
    let config = &loaded.config;
    let store =
        super::CheckpointStore::new(lake.clone(), &config.name, config.checkpoint.keep as usize);
    let mut text = String::new();
    let mut refused: Vec<Problem> = Vec::new();
    let mut found = 0;
    let mut changed = false;
    for (unit, store) in store.units().await? {
        let (Some(ck), _) = store.latest().await? else {
            continue;
        };
        found += 1;
        let mut plan = Plan::new(loaded, &ck, rebuild);
        changed |= plan.changes();
        let identity = identity(unit.as_deref());
        if ck.input != identity {
            plan.refused.push(loaded.problem(
                "source",
                format!(
                    "checkpoint {} was taken reading {}; this run would read {}. Run with the same input, or rebuild every table from this one with --from-scratch",
                    ck.id, ck.input, identity
                ),
            ));
        }
        let unit = unit.map_or(String::new(), |u| format!(" (unit {u})"));
        let _ = writeln!(text, "checkpoint {}{unit}:", ck.id);
        text.push_str(&plan.render());
        for p in plan.refused {
            if !refused.contains(&p) {
                refused.push(p);
            }
        }
    }
    if found == 0 {
        let _ = writeln!(
            text,
            "no checkpoint of `{}` in {}: the next run starts every table from the start of its input",
            config.name, lake.url
        );
    } else if refused.is_empty() && !changed {
        let _ = writeln!(text, "nothing changed: the next run continues every table");
    } else if refused.is_empty() {
        let _ = writeln!(text, "the next run applies these changes");
    } else {
        let _ = writeln!(text, "the next run would refuse to start:");
    }
    Ok(PlanReport {
        text,
        refused: (!refused.is_empty()).then(|| loaded.invalid(refused)),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use shared::config::load_str;

    use super::*;
    use crate::aggregate::Acc;

    const BASE: &str = "
name: life
source: { kind: file, path: access.log }
format: { kind: apache }
event_time: { field: ts, max_out_of_orderness: 60s }
derive:
  - { name: class, expr: status / 100 }
tables:
  - name: status_1m
    window: { kind: tumbling, size: 1m }
    key: [status]
    aggregates:
      - { name: requests, fn: count }
      - { name: bytes, fn: sum, column: bytes }
  - name: class_1m
    window: { kind: tumbling, size: 1m }
    key: [class]
    aggregates:
      - { name: requests, fn: count }
lake: { root: /nonexistent/lake }
";

    fn load(text: &str) -> LoadedConfig {
        load_str(text, Path::new("life.yaml")).unwrap()
    }

    /// A checkpoint of `BASE` with one open window of one group per table.
    fn checkpoint() -> Checkpoint {
        let loaded = load(BASE);
        let table = |accs: Vec<Acc>| TableSnapshot {
            windows: vec![(0, vec![(b"k".to_vec(), accs)])],
            ..TableSnapshot::default()
        };
        Checkpoint {
            id: 5,
            generation: 1,
            pipeline: "life".into(),
            input: "access.log".into(),
            engine: EngineSnapshot {
                tables: vec![
                    table(vec![Acc::Count(3), Acc::SumInt(Some(10))]),
                    table(vec![Acc::Count(4)]),
                ],
                sinks: vec![SinkSnapshot::default(), SinkSnapshot::default()],
                ..EngineSnapshot::default()
            },
            pending: Vec::new(),
            dimension_files: Vec::new(),
            spec: Some(PipelineSpec::of(&loaded.config)),
            rebuilt: Vec::new(),
        }
    }

    fn plan(edited: &str) -> (Plan, LoadedConfig) {
        let loaded = load(edited);
        (Plan::new(&loaded, &checkpoint(), &[]), loaded)
    }

    fn changes(p: &Plan) -> Vec<(String, TableChange)> {
        p.tables
            .iter()
            .map(|t| (t.name.clone(), t.change.clone()))
            .collect()
    }

    /// The refusals as `run` prints them.
    fn refusal(edited: &str) -> String {
        let (p, loaded) = plan(edited);
        assert!(!p.refused.is_empty(), "not refused:\n{edited}");
        p.check(&loaded).unwrap_err().to_string()
    }

    #[test]
    fn an_unchanged_file_continues_every_table() {
        let (p, loaded) = plan(BASE);
        assert!(p.check(&loaded).is_ok());
        assert!(!p.changes());
        let state = p.apply(checkpoint().engine);
        assert_eq!(state.tables[1].windows[0].1[0].1, vec![Acc::Count(4)]);
    }

    #[test]
    fn an_added_aggregate_is_null_in_open_windows_and_a_removed_one_stops() {
        let edited = BASE.replace(
            "      - { name: bytes, fn: sum, column: bytes }\n",
            "      - { name: max_bytes, fn: max, column: bytes }\n",
        );
        let (p, loaded) = plan(&edited);
        assert!(p.check(&loaded).is_ok());
        assert_eq!(
            changes(&p)[0].1,
            TableChange::Aggregates {
                added: vec!["max_bytes".into()],
                removed: vec!["bytes".into()],
                open: 1
            }
        );
        let state = p.apply(checkpoint().engine);
        assert_eq!(
            state.tables[0].windows[0].1[0].1,
            vec![Acc::Count(3), Acc::Unseen]
        );
        assert_eq!(
            p.tables[0].change.to_string(),
            "adds `max_bytes`: rows of the 1 window open now carry NULL for it, windows opened later carry it; drops `bytes`: its column stops (earlier files keep it)"
        );
    }

    #[test]
    fn aggregates_listed_in_another_order_keep_their_states() {
        let edited = BASE.replace(
            "      - { name: requests, fn: count }\n      - { name: bytes, fn: sum, column: bytes }\n",
            "      - { name: bytes, fn: sum, column: bytes }\n      - { name: requests, fn: count }\n",
        );
        let (p, loaded) = plan(&edited);
        assert!(p.check(&loaded).is_ok() && !p.changes());
        let state = p.apply(checkpoint().engine);
        assert_eq!(
            state.tables[0].windows[0].1[0].1,
            vec![Acc::SumInt(Some(10)), Acc::Count(3)]
        );
    }

    #[test]
    fn a_new_table_starts_empty_and_a_removed_one_is_dropped() {
        let edited = BASE.replace("name: class_1m", "name: class_5m");
        let (p, loaded) = plan(&edited);
        assert!(p.check(&loaded).is_ok());
        assert_eq!(
            changes(&p),
            vec![
                ("status_1m".to_string(), TableChange::Unchanged),
                ("class_5m".to_string(), TableChange::Added),
                ("class_1m".to_string(), TableChange::Removed),
            ]
        );
        let state = p.apply(checkpoint().engine);
        assert_eq!(state.tables.len(), 2);
        assert!(state.tables[1].windows.is_empty());
        // Tables are laid out in the file's order, whatever the checkpoint's.
        let swapped = format!(
            "{}\n  - name: status_1m{}",
            BASE.split("  - name: status_1m").next().unwrap(),
            BASE.split("  - name: status_1m").nth(1).unwrap()
        );
        assert_eq!(plan(&swapped).0.tables.len(), 2);
    }

    #[test]
    fn a_changed_window_key_filter_or_aggregate_is_refused_with_its_line() {
        let cases = [
            (
                BASE.replacen("size: 1m }", "size: 5m }", 1),
                "life.yaml:10: tables[0].window: window of table `status_1m` changed since checkpoint 5 (was `tumbling 1m`, now `tumbling 5m`)",
            ),
            (
                BASE.replace("key: [status]", "key: [status, method]"),
                "tables[0].key: key of table `status_1m` changed since checkpoint 5 (was `status: Int32`, now `status: Int32, method: Utf8`)",
            ),
            (
                BASE.replace(
                    "    key: [class]\n",
                    "    key: [class]\n    filter: \"method = 'GET'\"\n",
                ),
                "tables[1].filter: filter of table `class_1m` changed",
            ),
            (
                BASE.replace(
                    "{ name: bytes, fn: sum, column: bytes }",
                    "{ name: bytes, fn: max, column: bytes }",
                ),
                "tables[0].aggregates[1]: aggregate `bytes` of table `status_1m` changed since checkpoint 5 (was `sum(bytes: Int64)`, now `max(bytes: Int64)`)",
            ),
            (
                BASE.replace("expr: status / 100", "expr: status / 10"),
                "tables[1]: derive/lookup inputs of table `class_1m` changed",
            ),
        ];
        for (edited, expected) in cases {
            let e = refusal(&edited);
            assert!(e.contains(expected), "{e}\nexpected: {expected}");
            assert!(e.contains("--rebuild "), "{e}");
        }
        let (p, _) = plan(&BASE.replacen("size: 1m }", "size: 5m }", 1));
        assert_eq!(
            p.tables[0].change.to_string(),
            "refused: its window changed (see below)"
        );
        // A derive no table reads is not a change of any table.
        let unused = BASE.replace(
            "  - { name: class, expr: status / 100 }\n",
            "  - { name: class, expr: status / 100 }\n  - { name: slow, expr: bytes > 1000 }\n",
        );
        let (p, loaded) = plan(&unused);
        assert!(p.check(&loaded).is_ok() && !p.changes());
    }

    #[test]
    fn a_table_being_rebuilt_is_never_refused_and_starts_over() {
        let edited = BASE.replacen("size: 1m }", "size: 5m }", 1);
        let loaded = load(&edited);
        let p = Plan::new(&loaded, &checkpoint(), &["status_1m".to_string()]);
        assert!(p.check(&loaded).is_ok());
        assert_eq!(changes(&p)[0].1, TableChange::Rebuilt);
        let state = p.apply(checkpoint().engine);
        assert!(state.tables[0].windows.is_empty());
        assert_eq!(state.tables[1].windows[0].1[0].1, vec![Acc::Count(4)]);
        // Another table's change is still refused.
        let p = Plan::new(&loaded, &checkpoint(), &["class_1m".to_string()]);
        assert!(p.check(&loaded).is_err());
    }

    #[test]
    fn a_changed_source_format_or_event_time_is_refused_for_the_pipeline() {
        for (edited, path) in [
            (
                BASE.replace("kind: file, path: access.log", "kind: stdin"),
                "source: the source kind changed",
            ),
            (
                BASE.replace("max_out_of_orderness: 60s", "max_out_of_orderness: 5m"),
                "event_time: the event time changed since checkpoint 5 (was `ts with max_out_of_orderness 1m`, now `ts with max_out_of_orderness 5m`)",
            ),
        ] {
            let e = refusal(&edited);
            assert!(e.contains(path), "{e}");
        }
    }

    #[test]
    fn a_checkpoint_of_an_earlier_release_is_taken_in_file_order() {
        let mut old = checkpoint();
        old.spec = None;
        let loaded = load(BASE);
        let p = Plan::new(&loaded, &old, &[]);
        assert!(p.check(&loaded).is_ok() && !p.changes());
        let one_table = BASE.split("  - name: class_1m").next().unwrap().to_string()
            + "lake: { root: /nonexistent/lake }\n";
        let loaded = load(&one_table);
        let e = Plan::new(&loaded, &old, &[])
            .check(&loaded)
            .unwrap_err()
            .to_string();
        assert!(e.contains("holds 2 tables and the file declares 1"), "{e}");
    }
}
