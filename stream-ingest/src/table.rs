//! A windowed table: keyed aggregates per open event-time window, emitted as rows when the
//! watermark passes a window's end.
//!
//! Keys are encoded once per batch in Arrow's row format (any number and type of key
//! columns, NULL included), and a group is looked up by those bytes. A fixed window keeps
//! its groups flat ([`Window`]): every key in one byte arena, every aggregate state in one
//! vector, and a hash table of group numbers, so a new group costs its key bytes and states
//! plus about 16 bytes, and no allocation of its own. State is bounded by open windows ×
//! keys: a window's state is dropped when it is emitted.
//!
//! Emitted rows are ordered by window start, then key (row-format bytes sort like the
//! values, NULL first), so a run's output does not depend on hash order.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, RecordBatch, TimestampMicrosecondArray,
};
use arrow::datatypes::{Schema, SchemaRef, TimestampMicrosecondType};
use arrow::error::ArrowError;
use arrow::row::{RowConverter, SortField};
use hashbrown::{DefaultHashBuilder, HashMap, HashTable};
use shared::config::TableConfig;
use std::hash::BuildHasher;
use std::mem::size_of;

use crate::aggregate::{
    Acc, AggInput, AggSpec, collapse_states, expand_states, inputs_of, share_states, state_of,
};
use crate::checkpoint::state::SessionSnapshot;
use crate::checkpoint::{Flushed, TableSnapshot};
use crate::window::WindowAssigner;
use shared::expr::Predicate;

/// Bytes a group of a fixed window costs beyond its key and states: its key's end offset
/// and its slot in the hash table (at the table's load factor).
const GROUP_BYTES: usize = 16;
/// Bytes a session costs beyond its key and states: the session, the list, the map slot.
const SESSION_BYTES: usize = 96;

/// The groups of an open fixed window, flat: group `g` has key `keys[ends[g-1]..ends[g]]` and
/// states `accs[g*n..(g+1)*n]` for `n` aggregates.
#[derive(Debug, Default)]
struct Window {
    /// Group numbers, hashed by key bytes.
    index: HashTable<u32>,
    keys: Vec<u8>,
    ends: Vec<usize>,
    accs: Vec<Acc>,
    /// Estimated bytes (see [`WindowedTable::state_bytes`]).
    bytes: usize,
}

impl Window {
    fn key(&self, g: usize) -> &[u8] {
        key_of(&self.keys, &self.ends, g)
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// The number of the group of `key` (with hash `hash`), created with `fresh` states when
    /// new; and the bytes a new group added.
    #[inline]
    fn group(
        &mut self,
        hasher: &DefaultHashBuilder,
        hash: u64,
        key: &[u8],
        fresh: impl FnOnce(&mut Vec<Acc>),
    ) -> (usize, usize) {
        let (keys, ends) = (&self.keys, &self.ends);
        if let Some(&g) = self
            .index
            .find(hash, |&g| key_of(keys, ends, g as usize) == key)
        {
            return (g as usize, 0);
        }
        let g = self.ends.len();
        self.keys.extend_from_slice(key);
        self.ends.push(self.keys.len());
        let before = self.accs.len();
        fresh(&mut self.accs);
        let (keys, ends) = (&self.keys, &self.ends);
        self.index.insert_unique(hash, g as u32, |&g| {
            hasher.hash_one(key_of(keys, ends, g as usize))
        });
        let added = GROUP_BYTES + key.len() + (self.accs.len() - before) * size_of::<Acc>();
        (g, added)
    }

    /// Empties the window for reuse, keeping its allocations.
    fn clear(&mut self) {
        self.index.clear();
        self.keys.clear();
        self.ends.clear();
        self.accs.clear();
        self.bytes = 0;
    }
}

/// Emitted windows kept for their allocations, at most this many.
const SPARE_WINDOWS: usize = 4;
/// A window with more groups than this is not kept for reuse (its capacity would stay
/// allocated, unaccounted for).
const SPARE_MAX_GROUPS: usize = 1 << 16;

/// The open fixed windows, ascending by start. Windows open and close in time order, and an
/// event usually falls in the newest window or one just before it: a deque with the newest
/// window checked first finds it in a comparison or two (a binary search otherwise), and
/// emission pops from the front. Emitted windows are cleared and reused, so their hash
/// tables, key arenas and state vectors are not allocated again for every window.
#[derive(Debug, Default)]
struct OpenWindows {
    open: VecDeque<(i64, Window)>,
    spare: Vec<Window>,
}

impl OpenWindows {
    /// The window that starts at `start`, opened when new.
    #[inline]
    fn get_or_open(&mut self, start: i64) -> &mut Window {
        let i = match self.open.back() {
            Some((last, _)) if *last == start => self.open.len() - 1,
            Some((last, _)) if *last > start => {
                match self.open.binary_search_by_key(&start, |(s, _)| *s) {
                    Ok(i) => i,
                    Err(i) => {
                        let fresh = self.spare.pop().unwrap_or_default();
                        self.open.insert(i, (start, fresh));
                        i
                    }
                }
            }
            _ => {
                let fresh = self.spare.pop().unwrap_or_default();
                self.open.push_back((start, fresh));
                self.open.len() - 1
            }
        };
        &mut self.open[i].1
    }

    /// Removes the oldest window if it ends at or before `watermark` (`span` long).
    fn pop_complete(&mut self, span: i64, watermark: i64) -> Option<(i64, Window)> {
        let (start, _) = self.open.front()?;
        if start.saturating_add(span) > watermark {
            return None;
        }
        self.open.pop_front()
    }

    /// Keeps an emitted window's allocations for a window to come.
    fn recycle(&mut self, mut window: Window) {
        if self.spare.len() < SPARE_WINDOWS && window.len() <= SPARE_MAX_GROUPS {
            window.clear();
            self.spare.push(window);
        }
    }

    fn starts(&self) -> impl Iterator<Item = i64> + '_ {
        self.open.iter().map(|(s, _)| *s)
    }

    fn iter(&self) -> impl Iterator<Item = &(i64, Window)> {
        self.open.iter()
    }
}

#[inline]
fn key_of<'a>(keys: &'a [u8], ends: &[usize], g: usize) -> &'a [u8] {
    let start = if g == 0 { 0 } else { ends[g - 1] };
    &keys[start..ends[g]]
}

fn session_bytes(key: &[u8], accs: &[Acc]) -> usize {
    SESSION_BYTES
        + key.len()
        + std::mem::size_of_val(accs)
        + accs.iter().map(Acc::heap_bytes).sum::<usize>()
}

/// An open session of one key.
#[derive(Debug)]
struct Session {
    start: i64,
    end: i64,
    accs: Vec<Acc>,
}

/// The sessions of a key an event's session `[start, end)` touches or overlaps, taken out
/// of `list` and merged into one.
struct Bridged {
    merged: Option<Session>,
    /// The merged range: the event's session and every session it joins.
    start: i64,
    end: i64,
    /// Sessions joined.
    joined: usize,
    /// Bytes of the sessions joined, counted again as one after the merge (only when two or
    /// more merge: a merge of sets can shrink them).
    released: usize,
}

/// Takes out of `list` every session that touches or overlaps `[start, end)`, widening the
/// range by each, and merges them.
fn take_bridged(list: &mut Vec<Session>, key: &[u8], start: i64, end: i64) -> Bridged {
    let mut b = Bridged {
        merged: None,
        start,
        end,
        joined: 0,
        released: 0,
    };
    let mut i = 0;
    while i < list.len() {
        let s = &list[i];
        if s.start <= b.end && s.end >= b.start {
            let s = list.swap_remove(i);
            b.joined += 1;
            b.start = b.start.min(s.start);
            b.end = b.end.max(s.end);
            b.merged = Some(match b.merged.take() {
                None => s,
                Some(mut m) => {
                    if b.joined == 2 {
                        b.released += session_bytes(key, &m.accs);
                    }
                    b.released += session_bytes(key, &s.accs);
                    for (a, c) in m.accs.iter_mut().zip(s.accs) {
                        a.merge(c);
                    }
                    m
                }
            });
        } else {
            i += 1;
        }
    }
    b
}

/// A session, ready to become an output row.
struct EmittedSession {
    start: i64,
    end: i64,
    key: Box<[u8]>,
    accs: Vec<Acc>,
}

/// An output row: window bounds, key bytes, states.
type RowRef<'a> = (i64, i64, &'a [u8], &'a [Acc]);

/// An event a table dropped as late: its row in the batch and the watermark then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LateRow {
    pub row: u32,
    pub watermark: i64,
}

/// One windowed table's state and logic.
pub struct WindowedTable {
    pub name: String,
    schema: SchemaRef,
    assigner: WindowAssigner,
    ts_column: usize,
    key_columns: Vec<usize>,
    keys: Option<RowConverter>,
    aggs: Vec<AggSpec>,
    filter: Option<Predicate>,
    /// Open fixed windows.
    windows: OpenWindows,
    /// Session windows by key.
    sessions: HashMap<Box<[u8]>, Vec<Session>>,
    /// Bytes of open state (estimated: keys, states, distinct values, table overhead).
    state_bytes: usize,
    hasher: DefaultHashBuilder,
    /// Windows emitted so far.
    pub windows_emitted: u64,
    /// Starts of the fixed windows an end of input emitted early, ascending (see
    /// [`Flushed`]): an event of a later run is late for them.
    flushed_windows: Vec<i64>,
    /// The sessions an end of input emitted early, by key.
    flushed_sessions: HashMap<Box<[u8]>, Vec<(i64, i64)>>,
}

impl WindowedTable {
    /// Builds the operator from a validated table config.
    pub fn new(config: &TableConfig, events: &Schema, ts_column: usize) -> Result<Self, String> {
        let schema = shared::schema::table_schema(config, events)?;
        let key_columns: Vec<usize> = config
            .key
            .iter()
            .map(|k| events.index_of(k).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        let keys = if key_columns.is_empty() {
            None
        } else {
            let fields = key_columns
                .iter()
                .map(|&i| SortField::new(events.field(i).data_type().clone()))
                .collect();
            Some(RowConverter::new(fields).map_err(|e| e.to_string())?)
        };
        let mut aggs = Vec::new();
        for a in &config.aggregates {
            let column = match &a.column {
                Some(c) => Some(events.index_of(c).map_err(|e| e.to_string())?),
                None => None,
            };
            let input_type = column.map(|c| events.field(c).data_type().clone());
            let output_type = schema.field_with_name(&a.name).map_err(|e| e.to_string())?;
            aggs.push(
                AggSpec::new(
                    a.function,
                    column,
                    input_type,
                    output_type.data_type().clone(),
                )
                .map_err(|e| e.to_string())?
                .with_options(a.q, a.sketch),
            );
        }
        share_states(&mut aggs);
        let filter = match &config.filter {
            Some(f) => Some(Predicate::compile(f, events)?),
            None => None,
        };
        Ok(WindowedTable {
            name: config.name.clone(),
            schema,
            assigner: WindowAssigner::from_config(&config.window),
            ts_column,
            key_columns,
            keys,
            aggs,
            filter,
            windows: OpenWindows::default(),
            sessions: HashMap::new(),
            state_bytes: 0,
            hasher: DefaultHashBuilder::default(),
            windows_emitted: 0,
            flushed_windows: Vec::new(),
            flushed_sessions: HashMap::new(),
        })
    }

    /// The table's schema (window bounds, keys, aggregates).
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn new_accs(&self) -> Vec<Acc> {
        self.aggs.iter().map(AggSpec::new_acc).collect()
    }

    /// Adds a batch of events. `watermarks[i]` is the watermark just before event `i` arrived.
    /// Returns the events that were late for every window they belong to.
    pub fn process(
        &mut self,
        batch: &RecordBatch,
        watermarks: &[i64],
    ) -> Result<Vec<LateRow>, ArrowError> {
        let mask: Option<BooleanArray> = match &self.filter {
            Some(f) => Some(f.evaluate(batch)?),
            None => None,
        };
        let ts = batch
            .column(self.ts_column)
            .as_primitive::<TimestampMicrosecondType>();
        let key_rows = match &self.keys {
            Some(conv) => {
                let cols: Vec<ArrayRef> = self
                    .key_columns
                    .iter()
                    .map(|&i| batch.column(i).clone())
                    .collect();
                Some(conv.convert_columns(&cols)?)
            }
            None => None,
        };
        let inputs = inputs_of(&self.aggs, batch)?;
        let mut late = Vec::new();
        for (row, &wm) in watermarks.iter().enumerate().take(batch.num_rows()) {
            if mask.as_ref().is_some_and(|m| !m.value(row)) || ts.is_null(row) {
                continue;
            }
            let t = ts.value(row);
            let key: &[u8] = match &key_rows {
                Some(rows) => rows.row(row).data(),
                None => &[],
            };
            let accepted = if self.assigner.is_session() {
                self.add_to_session(key, t, wm, &inputs, row)
            } else {
                self.add_to_windows(key, t, wm, &inputs, row)
            };
            if !accepted {
                late.push(LateRow {
                    row: row as u32,
                    watermark: wm,
                });
            }
        }
        Ok(late)
    }

    /// Adds one event to its fixed windows; false when every one of them was already emitted.
    fn add_to_windows(
        &mut self,
        key: &[u8],
        ts: i64,
        wm: i64,
        inputs: &[AggInput],
        row: usize,
    ) -> bool {
        let span = self.assigner.span();
        let mut accepted = false;
        let assigner = self.assigner;
        let hash = self.hasher.hash_one(key);
        let mut grown = 0;
        let aggs = &self.aggs;
        let hasher = &self.hasher;
        let windows = &mut self.windows;
        let flushed = &self.flushed_windows;
        assigner.for_each_start(ts, |start| {
            if start.saturating_add(span) <= wm
                || (!flushed.is_empty() && flushed.binary_search(&start).is_ok())
            {
                return; // this window was emitted: late for it
            }
            accepted = true;
            let window = windows.get_or_open(start);
            let (g, mut added) = window.group(hasher, hash, key, |accs| {
                accs.extend(aggs.iter().map(AggSpec::new_window_acc))
            });
            let n = aggs.len();
            for (acc, input) in window.accs[g * n..(g + 1) * n].iter_mut().zip(inputs) {
                added += acc.update(input, row);
            }
            window.bytes += added;
            grown += added;
        });
        self.state_bytes += grown;
        accepted
    }

    /// Adds one event to its key's sessions, merging the sessions it bridges (Flink's rule:
    /// windows that touch or overlap merge). False when its own session would be late.
    fn add_to_session(
        &mut self,
        key: &[u8],
        ts: i64,
        wm: i64,
        inputs: &[AggInput],
        row: usize,
    ) -> bool {
        let (start, end) = self.assigner.session_of(ts);
        if !self.flushed_sessions.is_empty() && self.joins_flushed(key, start, end) {
            return false;
        }
        let fresh = self.new_accs();
        let list = self.sessions.entry_ref(key).or_default();
        let bridged = take_bridged(list, key, start, end);
        let (start, end) = (bridged.start, bridged.end);
        if bridged.merged.is_none() && end <= wm {
            if list.is_empty() {
                self.sessions.remove(key);
            }
            return false;
        }
        let mut added = match (&bridged.merged, bridged.joined) {
            (None, _) => session_bytes(key, &fresh),
            (Some(m), 2..) => session_bytes(key, &m.accs),
            (Some(_), _) => 0,
        };
        let mut session = bridged.merged.unwrap_or(Session {
            start,
            end,
            accs: fresh,
        });
        session.start = start;
        session.end = end;
        for (acc, input) in session.accs.iter_mut().zip(inputs) {
            added += acc.update(input, row);
        }
        list.push(session);
        self.state_bytes = (self.state_bytes + added).saturating_sub(bridged.released);
        true
    }

    /// Whether a session `[start, end)` of `key` would join one an end of input emitted.
    fn joins_flushed(&self, key: &[u8], start: i64, end: i64) -> bool {
        self.flushed_sessions
            .get(key)
            .is_some_and(|list| list.iter().any(|&(s, e)| s <= end && e >= start))
    }

    /// Records every open window as emitted early: an end of input emits them all
    /// ([`WindowedTable::emit`] at the end of time), while the watermark stays where the
    /// events put it.
    pub fn mark_flushed(&mut self) {
        self.flushed_windows.extend(self.windows.starts());
        self.flushed_windows.sort_unstable();
        self.flushed_windows.dedup();
        for (key, list) in &self.sessions {
            let flushed = self.flushed_sessions.entry_ref(&key[..]).or_default();
            flushed.extend(list.iter().map(|s| (s.start, s.end)));
        }
    }

    /// Forgets the windows emitted early that the watermark has passed since: its own rule
    /// makes their events late.
    pub fn forget_flushed(&mut self, watermark: i64) {
        let span = self.assigner.span();
        self.flushed_windows
            .retain(|start| start.saturating_add(span) > watermark);
        self.flushed_sessions.retain(|_, list| {
            list.retain(|&(_, end)| end > watermark);
            !list.is_empty()
        });
    }

    /// Emits every window whose end is at or before the watermark, as rows of the table
    /// schema ordered by window start, then key. `None` when no window is complete.
    pub fn emit(&mut self, watermark: i64) -> Result<Option<RecordBatch>, ArrowError> {
        if self.assigner.is_session() {
            self.emit_sessions(watermark)
        } else {
            self.emit_windows(watermark)
        }
    }

    /// [`WindowedTable::emit`] for fixed windows (tumbling, hopping).
    fn emit_windows(&mut self, watermark: i64) -> Result<Option<RecordBatch>, ArrowError> {
        let span = self.assigner.span();
        let mut done = Vec::new();
        while let Some((start, mut window)) = self.windows.pop_complete(span, watermark) {
            self.state_bytes = self.state_bytes.saturating_sub(window.bytes);
            window.accs.iter_mut().for_each(Acc::settle);
            self.windows_emitted += 1;
            done.push((start, window));
        }
        if done.is_empty() {
            return Ok(None);
        }
        let n = self.aggs.len();
        let mut rows: Vec<RowRef> = Vec::with_capacity(done.iter().map(|(_, w)| w.len()).sum());
        for (start, window) in &done {
            let mut order: Vec<u32> = (0..window.len() as u32).collect();
            order.sort_unstable_by(|&a, &b| window.key(a as usize).cmp(window.key(b as usize)));
            let end = start.saturating_add(span);
            rows.extend(order.into_iter().map(|g| {
                let g = g as usize;
                (*start, end, window.key(g), &window.accs[g * n..(g + 1) * n])
            }));
        }
        let batch = self.rows_to_batch(&rows);
        drop(rows);
        for (_, window) in done {
            self.windows.recycle(window);
        }
        batch.map(Some)
    }

    /// [`WindowedTable::emit`] for sessions; a window is a distinct session start.
    fn emit_sessions(&mut self, watermark: i64) -> Result<Option<RecordBatch>, ArrowError> {
        let mut out = self.take_closed_sessions(watermark);
        if out.is_empty() {
            return Ok(None);
        }
        out.iter_mut()
            .for_each(|o| o.accs.iter_mut().for_each(Acc::settle));
        out.sort_by(|a, b| (a.start, &a.key).cmp(&(b.start, &b.key)));
        self.windows_emitted += out
            .iter()
            .map(|o| o.start)
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64;
        let rows: Vec<RowRef> = out
            .iter()
            .map(|o| (o.start, o.end, &o.key[..], &o.accs[..]))
            .collect();
        self.rows_to_batch(&rows).map(Some)
    }

    /// Removes the sessions that end at or before the watermark (and keys left without
    /// any), in no particular order.
    fn take_closed_sessions(&mut self, watermark: i64) -> Vec<EmittedSession> {
        let mut out: Vec<EmittedSession> = Vec::new();
        let mut emptied = Vec::new();
        for (key, list) in self.sessions.iter_mut() {
            let mut i = 0;
            while i < list.len() {
                if list[i].end <= watermark {
                    let s = list.swap_remove(i);
                    self.state_bytes = self.state_bytes.saturating_sub(session_bytes(key, &s.accs));
                    out.push(EmittedSession {
                        start: s.start,
                        end: s.end,
                        key: key.clone(),
                        accs: s.accs,
                    });
                } else {
                    i += 1;
                }
            }
            if list.is_empty() {
                emptied.push(key.clone());
            }
        }
        for k in emptied {
            self.sessions.remove(&k);
        }
        out
    }

    fn rows_to_batch(&self, rows: &[RowRef]) -> Result<RecordBatch, ArrowError> {
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0))
                    .with_timezone("UTC"),
            ),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.1))
                    .with_timezone("UTC"),
            ),
        ];
        if let Some(conv) = &self.keys {
            let parser = conv.parser();
            columns.extend(conv.convert_rows(rows.iter().map(|r| parser.parse(r.2)))?);
        }
        let aggs = &self.aggs;
        for (i, spec) in aggs.iter().enumerate() {
            columns.push(spec.finish(rows.iter().map(|r| state_of(aggs, r.3, i)))?);
            if let Some(sketch) = spec.finish_sketch(rows.iter().map(|r| state_of(aggs, r.3, i))) {
                columns.push(sketch);
            }
        }
        // Key columns keep their nullability from the event schema; make the arrays agree.
        RecordBatch::try_new(self.schema.clone(), columns)
    }

    /// No window that starts before this can still be emitted: every open window starts at
    /// or after it, and so does every window a future, non-late event can open.
    pub fn low_water_start(&self, watermark: i64) -> i64 {
        let future = watermark
            .saturating_sub(self.assigner.span())
            .saturating_add(1);
        let open = if self.assigner.is_session() {
            self.sessions.values().flatten().map(|s| s.start).min()
        } else {
            self.windows.starts().next()
        };
        open.map_or(future, |o| o.min(future))
    }

    /// The open state, for a checkpoint.
    pub fn snapshot(&self) -> TableSnapshot {
        TableSnapshot {
            windows: self
                .windows
                .iter()
                .map(|(start, window)| {
                    let n = self.aggs.len();
                    (
                        *start,
                        (0..window.len())
                            .map(|g| {
                                let accs = &window.accs[g * n..(g + 1) * n];
                                (window.key(g).to_vec(), expand_states(&self.aggs, accs))
                            })
                            .collect(),
                    )
                })
                .collect(),
            sessions: self.sessions_in_key_order(),
            windows_emitted: self.windows_emitted,
            flushed: self.flushed(),
        }
    }

    /// The windows emitted early, in a stable order.
    fn flushed(&self) -> Flushed {
        let mut sessions: Vec<(Vec<u8>, i64, i64)> = self
            .flushed_sessions
            .iter()
            .flat_map(|(k, list)| list.iter().map(|&(s, e)| (k.to_vec(), s, e)))
            .collect();
        sessions.sort_unstable();
        Flushed {
            windows: self.flushed_windows.clone(),
            sessions,
        }
    }

    /// Open sessions in key order (a hash map's own order changes from process to process;
    /// the same state must give the same checkpoint bytes).
    fn sessions_in_key_order(&self) -> Vec<(Vec<u8>, Vec<SessionSnapshot>)> {
        let mut sessions: Vec<(Vec<u8>, Vec<SessionSnapshot>)> = self
            .sessions
            .iter()
            .map(|(k, list)| {
                let list = list.iter().map(|s| (s.start, s.end, s.accs.clone()));
                (k.to_vec(), list.collect())
            })
            .collect();
        sessions.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        sessions
    }

    /// Replaces the open state by a checkpoint's.
    pub fn restore(&mut self, snapshot: TableSnapshot) {
        let mut windows: Vec<(i64, Window)> = snapshot
            .windows
            .into_iter()
            .map(|(start, groups)| {
                let mut window = Window::default();
                for (key, mut accs) in groups {
                    collapse_states(&self.aggs, &mut accs);
                    let hash = self.hasher.hash_one(&key[..]);
                    let heap: usize = accs.iter().map(Acc::heap_bytes).sum();
                    let (_, added) = window.group(&self.hasher, hash, &key, |all| all.extend(accs));
                    window.bytes += added + heap;
                }
                (start, window)
            })
            .collect();
        windows.sort_unstable_by_key(|(start, _)| *start);
        self.windows = OpenWindows {
            open: windows.into(),
            spare: Vec::new(),
        };
        self.sessions = snapshot
            .sessions
            .into_iter()
            .map(|(k, list)| {
                let list = list
                    .into_iter()
                    .map(|(start, end, accs)| Session { start, end, accs })
                    .collect();
                (k.into_boxed_slice(), list)
            })
            .collect();
        self.windows_emitted = snapshot.windows_emitted;
        self.flushed_windows = snapshot.flushed.windows;
        self.flushed_sessions = HashMap::new();
        for (key, start, end) in snapshot.flushed.sessions {
            let list = self
                .flushed_sessions
                .entry(key.into_boxed_slice())
                .or_default();
            list.push((start, end));
        }
        self.state_bytes = self.windows.iter().map(|(_, w)| w.bytes).sum::<usize>()
            + self
                .sessions
                .iter()
                .flat_map(|(k, list)| list.iter().map(move |s| session_bytes(k, &s.accs)))
                .sum::<usize>();
    }

    /// Bytes of open state (an estimate that counts keys, states and distinct values).
    pub fn state_bytes(&self) -> usize {
        self.state_bytes
    }

    /// Number of open windows (sessions count one each) and of groups in them.
    pub fn open_state(&self) -> (usize, usize) {
        if self.assigner.is_session() {
            let n = self.sessions.values().map(Vec::len).sum();
            (n, n)
        } else {
            (
                self.windows.open.len(),
                self.windows.iter().map(|(_, w)| w.len()).sum(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int32Array, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type};
    use shared::HumanDuration;
    use shared::config::{AggregateConfig, AggregateFn, WindowConfig};

    const S: i64 = 1_000_000;

    fn events() -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("ts", shared::types::timestamp_type(), false),
            Field::new("k", DataType::Utf8, true),
            Field::new("n", DataType::Int32, false),
        ]))
    }

    fn batch(rows: &[(i64, Option<&str>, i32)]) -> RecordBatch {
        RecordBatch::try_new(
            events(),
            vec![
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0 * S))
                        .with_timezone("UTC"),
                ),
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
                Arc::new(Int32Array::from(
                    rows.iter().map(|r| r.2).collect::<Vec<_>>(),
                )),
            ],
        )
        .unwrap()
    }

    fn table(window: WindowConfig) -> WindowedTable {
        let cfg = TableConfig {
            rolling: Default::default(),
            name: "t".into(),
            window,
            key: vec!["k".into()],
            aggregates: vec![
                AggregateConfig {
                    name: "c".into(),
                    function: AggregateFn::Count,
                    column: None,
                    q: None,
                    sketch: false,
                },
                AggregateConfig {
                    name: "s".into(),
                    function: AggregateFn::Sum,
                    column: Some("n".into()),
                    q: None,
                    sketch: false,
                },
            ],
            filter: None,
            partition_by: vec![],
        };
        WindowedTable::new(&cfg, &events(), 0).unwrap()
    }

    /// An emitted row as (start s, end s, key, count, sum).
    type Row = (i64, i64, Option<String>, i64, i64);

    /// Runs events through the table with the pipeline's watermark rule; returns emitted
    /// rows as (start s, end s, key, count, sum) and the late rows.
    fn run(
        t: &mut WindowedTable,
        bound: i64,
        rows: &[(i64, Option<&str>, i32)],
    ) -> (Vec<Row>, Vec<u32>) {
        let b = batch(rows);
        let mut wm = crate::window::Watermark::new(bound * S);
        let mut wms = Vec::new();
        for r in rows {
            wms.push(wm.current());
            wm.observe(r.0 * S);
        }
        let late = t
            .process(&b, &wms)
            .unwrap()
            .into_iter()
            .map(|l| l.row)
            .collect();
        let mut out = Vec::new();
        let mut collect = |b: Option<RecordBatch>| {
            if let Some(b) = b {
                for i in 0..b.num_rows() {
                    let st = b
                        .column(0)
                        .as_primitive::<TimestampMicrosecondType>()
                        .value(i)
                        / S;
                    let en = b
                        .column(1)
                        .as_primitive::<TimestampMicrosecondType>()
                        .value(i)
                        / S;
                    let k = b.column(2).as_string::<i32>();
                    let k = if k.is_null(i) {
                        None
                    } else {
                        Some(k.value(i).to_string())
                    };
                    let c = b.column(3).as_primitive::<Int64Type>().value(i);
                    let s = b.column(4).as_primitive::<Int64Type>().value(i);
                    out.push((st, en, k, c, s));
                }
            }
        };
        collect(t.emit(wm.current()).unwrap());
        // The end of the input: every window (as `Engine::finish` flushes).
        t.mark_flushed();
        collect(t.emit(i64::MAX).unwrap());
        (out, late)
    }

    fn tumbling(secs: u64) -> WindowConfig {
        WindowConfig::Tumbling {
            size: HumanDuration::from_secs(secs),
        }
    }

    #[test]
    fn tumbling_counts_per_key_and_window() {
        let mut t = table(tumbling(60));
        let (out, late) = run(
            &mut t,
            60,
            &[
                (0, Some("a"), 1),
                (59, Some("a"), 2),
                (60, Some("a"), 3),
                (30, None, 4),
            ],
        );
        assert!(late.is_empty());
        assert_eq!(
            out,
            vec![
                (0, 60, None, 1, 4),
                (0, 60, Some("a".into()), 2, 3),
                (60, 120, Some("a".into()), 1, 3)
            ]
        );
        assert_eq!(t.windows_emitted, 2);
        assert_eq!(t.open_state(), (0, 0));
    }

    #[test]
    fn watermark_emits_and_late_events_are_dropped() {
        let mut t = table(tumbling(60));
        // 200 moves the watermark to 140: [0,60) and [60,120) are complete. 59 is late; 130 is
        // not (its window [120,180) is open); 141 is 59 s behind the maximum: never late.
        let rows = [
            (10, Some("a"), 1),
            (200, Some("a"), 1),
            (59, Some("a"), 1),
            (130, Some("a"), 1),
            (141, Some("b"), 1),
        ];
        let (out, late) = run(&mut t, 60, &rows);
        assert_eq!(late, vec![2]);
        assert_eq!(
            out,
            vec![
                (0, 60, Some("a".into()), 1, 1),
                (120, 180, Some("a".into()), 1, 1),
                (120, 180, Some("b".into()), 1, 1),
                (180, 240, Some("a".into()), 1, 1),
            ]
        );
    }

    /// After an end of input flushed the open windows, a later run's event is late only for
    /// a window that was really emitted: flushed, or passed by the (real) watermark.
    #[test]
    fn after_a_flush_only_windows_really_emitted_make_events_late() {
        let mut first = table(tumbling(60));
        // Max 130, watermark 70: [0,60) emitted by the watermark; [60,120) and [120,180)
        // flushed at the end of the input.
        let (out, late) = run(
            &mut first,
            60,
            &[(10, Some("a"), 1), (70, Some("a"), 1), (130, Some("a"), 1)],
        );
        assert!(late.is_empty());
        assert_eq!(out.len(), 3);
        let snapshot = first.snapshot();
        assert_eq!(snapshot.flushed.windows, vec![60 * S, 120 * S]);

        let mut next = table(tumbling(60));
        next.restore(snapshot);
        // The next run's events, with the watermark restored (max 130, bound 60).
        let rows = [
            (100, Some("a"), 1),
            (190, Some("a"), 1),
            (125, Some("b"), 1),
            (245, Some("a"), 1),
        ];
        let mut wm = crate::window::Watermark::new(60 * S);
        wm.restore(Some(130 * S));
        let mut wms = Vec::new();
        for r in &rows {
            wms.push(wm.current());
            wm.observe(r.0 * S);
        }
        let late: Vec<u32> = next
            .process(&batch(&rows), &wms)
            .unwrap()
            .iter()
            .map(|l| l.row)
            .collect();
        // 100 and 125 fall in flushed windows; 190 opens [180,240), never emitted.
        assert_eq!(late, vec![0, 2]);
        // Once the watermark passed them, flushed windows are forgotten.
        next.forget_flushed(wm.current());
        assert_eq!(next.snapshot().flushed, Flushed::default());
    }

    #[test]
    fn after_a_flush_a_session_is_late_only_where_it_joins_a_flushed_one() {
        let mut first = table(WindowConfig::Session {
            gap: HumanDuration::from_secs(30),
        });
        let (_, late) = run(&mut first, 60, &[(0, Some("a"), 1), (20, Some("b"), 1)]);
        assert!(late.is_empty());
        let mut next = table(WindowConfig::Session {
            gap: HumanDuration::from_secs(30),
        });
        next.restore(first.snapshot());
        // a's session [0,30) was flushed: 25 would join it (late); 31 opens its own [31,61)
        // (touching is joining: 30 < 31); b at 0 would join [20,50).
        let rows = [
            (25, Some("a"), 1),
            (61, Some("a"), 1),
            (0, Some("b"), 1),
            (51, Some("b"), 1),
        ];
        let wms = vec![i64::MIN; rows.len()];
        let late: Vec<u32> = next
            .process(&batch(&rows), &wms)
            .unwrap()
            .iter()
            .map(|l| l.row)
            .collect();
        assert_eq!(late, vec![0, 2]);
    }

    #[test]
    fn emission_waits_for_the_watermark() {
        let mut t = table(tumbling(60));
        let b = batch(&[(10, Some("a"), 1)]);
        t.process(&b, &[i64::MIN]).unwrap();
        assert!(t.emit(59 * S).unwrap().is_none());
        assert_eq!(t.emit(60 * S).unwrap().unwrap().num_rows(), 1);
        assert_eq!(t.low_water_start(60 * S), 1);
    }

    #[test]
    fn sliding_windows_and_partial_lateness() {
        let mut t = table(WindowConfig::Sliding {
            size: HumanDuration::from_secs(120),
            slide: HumanDuration::from_secs(60),
        });
        // 250 → watermark 190: [0,120) and [60,180) are emitted. 125 belongs to [60,180)
        // (emitted, late for it) and [120,240) (open): counted there, not late overall.
        // 110 belongs to [0,120) and [60,180) only: late.
        let rows = [
            (70, Some("a"), 1),
            (250, Some("a"), 2),
            (125, Some("a"), 4),
            (110, Some("a"), 8),
        ];
        let (out, late) = run(&mut t, 60, &rows);
        assert_eq!(late, vec![3]);
        assert_eq!(
            out,
            vec![
                (0, 120, Some("a".into()), 1, 1),
                (60, 180, Some("a".into()), 1, 1),
                (120, 240, Some("a".into()), 1, 4),
                (180, 300, Some("a".into()), 1, 2),
                (240, 360, Some("a".into()), 1, 2),
            ]
        );
    }

    #[test]
    fn sessions_merge_and_close() {
        let mut t = table(WindowConfig::Session {
            gap: HumanDuration::from_secs(30),
        });
        // a: 0, 20, 50 → one session [0, 80) (20+30 = 50 touches 50). b: 10 → [10, 40).
        // 200 → watermark 140 closes both; a at 100 is late-free (its own session [100,130)).
        let rows = [
            (0, Some("a"), 1),
            (20, Some("a"), 1),
            (10, Some("b"), 1),
            (50, Some("a"), 1),
            (200, Some("a"), 1),
            (100, Some("a"), 1),
        ];
        let (out, late) = run(&mut t, 60, &rows);
        assert_eq!(late, vec![5]); // [100,130) ends before the watermark 140: late
        assert_eq!(
            out,
            vec![
                (0, 80, Some("a".into()), 3, 3),
                (10, 40, Some("b".into()), 1, 1),
                (200, 230, Some("a".into()), 1, 1)
            ]
        );
    }

    #[test]
    fn sessions_bridge_two_open_sessions() {
        // [0,20) and [25,45) are apart; 12 opens [12,32), which touches both: one session.
        let mut t = table(WindowConfig::Session {
            gap: HumanDuration::from_secs(20),
        });
        let (out, _) = run(
            &mut t,
            1000,
            &[(0, Some("a"), 1), (25, Some("a"), 1), (12, Some("a"), 1)],
        );
        assert_eq!(out, vec![(0, 45, Some("a".into()), 3, 3)]);
    }

    #[test]
    fn filter_keeps_matching_rows() {
        let mut cfg_t = table(tumbling(60));
        cfg_t.filter = Some(Predicate::compile("n >= 2", &events()).unwrap());
        let (out, _) = run(
            &mut cfg_t,
            60,
            &[(0, Some("a"), 1), (1, Some("a"), 2), (2, Some("a"), 3)],
        );
        assert_eq!(out, vec![(0, 60, Some("a".into()), 2, 5)]);
    }

    /// A table of `approx_percentile` of `n` per key `k` in 60 s windows, one aggregate per
    /// (q, sketch).
    fn percentiles(qs: &[(f64, bool)]) -> WindowedTable {
        let aggregates = qs
            .iter()
            .map(|&(q, sketch)| AggregateConfig {
                name: format!("p{}", (q * 100.0) as u32),
                function: AggregateFn::ApproxPercentile,
                column: Some("n".into()),
                q: Some(q),
                sketch,
            })
            .collect();
        let cfg = TableConfig {
            rolling: Default::default(),
            name: "t".into(),
            window: tumbling(60),
            key: vec!["k".into()],
            aggregates,
            filter: None,
            partition_by: vec![],
        };
        WindowedTable::new(&cfg, &events(), 0).unwrap()
    }

    /// 3,000 events over two windows: key `a` takes most (its digest merges its buffer
    /// several times), `b` 40 (its quantiles stay exact).
    fn spread() -> Vec<(i64, Option<&'static str>, i32)> {
        (0..3000i64)
            .map(|i| {
                let key = if i % 73 == 0 { "b" } else { "a" };
                (i * 119 / 3000, Some(key), ((i * 7919) % 1013) as i32)
            })
            .collect()
    }

    fn feed(t: &mut WindowedTable, rows: &[(i64, Option<&str>, i32)]) {
        let late = t
            .process(&batch(rows), &vec![i64::MIN; rows.len()])
            .unwrap();
        assert!(late.is_empty());
    }

    fn emit_all(t: &mut WindowedTable) -> RecordBatch {
        t.mark_flushed();
        t.emit(i64::MAX).unwrap().unwrap()
    }

    const QS: [(f64, bool); 3] = [(0.5, false), (0.95, true), (0.99, false)];

    #[test]
    fn percentiles_of_one_column_share_a_state_and_give_what_separate_ones_give() {
        let rows = spread();
        let mut shared = percentiles(&QS);
        feed(&mut shared, &rows);
        let (_, window) = shared.windows.iter().next().unwrap();
        assert!(matches!(
            window.accs[..3],
            [Acc::Quantiles(_), Acc::SameAs, Acc::SameAs]
        ));
        // A checkpoint stores every aggregate's state, as without sharing.
        for (_, groups) in shared.snapshot().windows {
            for (_, accs) in groups {
                assert!(matches!(accs[0], Acc::Quantiles(_)));
                assert!(accs[0] == accs[1] && accs[1] == accs[2]);
            }
        }
        let out = emit_all(&mut shared);
        assert_eq!(out.num_rows(), 4);
        // Columns: start, end, k, p50, p95, p95_sketch, p99.
        for (q, column) in [(QS[0], 3), (QS[1], 4), (QS[2], 6)] {
            let mut alone = percentiles(&[q]);
            feed(&mut alone, &rows);
            let alone = emit_all(&mut alone);
            assert_eq!(out.column(column), alone.column(3), "q {}", q.0);
            if q.1 {
                assert_eq!(out.column(5), alone.column(4), "the sketch of q {}", q.0);
            }
        }
    }

    #[test]
    fn a_restored_window_shares_again_unless_a_state_differs() {
        let rows = spread();
        let (first, rest) = rows.split_at(1700);
        let mut whole = percentiles(&QS);
        feed(&mut whole, &rows);
        let whole = emit_all(&mut whole);

        let mut before = percentiles(&QS);
        feed(&mut before, first);
        let mut restored = percentiles(&QS);
        restored.restore(before.snapshot());
        let (_, window) = restored.windows.iter().next().unwrap();
        assert!(matches!(
            window.accs[..3],
            [Acc::Quantiles(_), Acc::SameAs, Acc::SameAs]
        ));
        feed(&mut restored, rest);
        assert_eq!(emit_all(&mut restored), whole);

        // p95 added while the windows were open: it has not seen every event (NULL), and
        // p50 and p99 go on as before.
        let mut snapshot = before.snapshot();
        for (_, groups) in &mut snapshot.windows {
            for (_, accs) in groups {
                accs[1] = Acc::Unseen;
            }
        }
        let mut added = percentiles(&QS);
        added.restore(snapshot);
        feed(&mut added, rest);
        let out = emit_all(&mut added);
        assert_eq!(out.column(4).null_count(), out.num_rows());
        assert_eq!(out.column(3), whole.column(3));
        assert_eq!(out.column(6), whole.column(6));
    }
}
