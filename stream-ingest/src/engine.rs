//! The engine: one thread that turns parsed chunks of lines into Parquet files (the parsing
//! itself runs on a pool of threads, [`crate::parallel`], and arrives here in source order).
//!
//! ```text
//! parsed chunk ─▶ batch ─▶ watermark per event ─▶ each WindowedTable ─▶ emitted rows ─▶ TableSink ─▶ files
//!                      │                                     └─▶ late rows ─▶ late TableSink ─┘
//!                      └─▶ invalid lines ─▶ counters, dead-letter file
//! ```
//!
//! The watermark is computed once per event for all tables (`W` just before the event), so
//! lateness is decided event by event exactly as a record-at-a-time engine would, while the
//! tables work on whole batches. Windows complete inside a batch are emitted at its end: a
//! later event of the same batch cannot reach them, as it is judged against its own `W`.
//! Tables are independent once the watermarks are known, so with more than one thread each
//! table processes the batch (and emits, and encodes its files) on a scoped thread of its
//! own; results are taken back in table order, so the output is the same.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, TimestampMicrosecondArray, UInt32Array,
};
use arrow::compute::take_record_batch;
use arrow::datatypes::{SchemaRef, TimestampMicrosecondType};
use shared::config::{EndOfInput, PipelineConfig};
use shared::lake::Lake;

use crate::checkpoint::EngineSnapshot;
use crate::dead_letter::{DeadLetter, DeadLetterError};
use crate::lookup::Lookups;
use crate::metrics::{TableMetrics, Telemetry};
use crate::parallel::ParsedChunk;
use crate::prepare::Prepare;
use crate::sink::{EncodedFile, SinkError, SinkOptions, TableSink, complete_through};
use crate::sources::{Advance, Position};
use crate::table::{LateRow, WindowedTable};
use crate::window::Watermark;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(transparent)]
    DeadLetter(#[from] DeadLetterError),
    #[error("building table `{table}`: {message}")]
    Build { table: String, message: String },
    #[error(transparent)]
    Lookup(#[from] crate::lookup::LookupError),
}

struct LateOutput {
    schema: SchemaRef,
    sink: TableSink,
    metrics: TableMetrics,
}

pub struct Engine {
    tables: Vec<WindowedTable>,
    sinks: Vec<TableSink>,
    late: Option<LateOutput>,
    watermark: Watermark,
    ts_column: usize,
    dead_letter: Option<DeadLetter>,
    lake: Lake,
    next_line: u64,
    position: Position,
    /// The largest event time when the source went quiet (see [`Engine::advance_idle`]).
    idle_base: Option<i64>,
    /// Quiet for `idle_timeout` without ever an event: its horizon holds nothing back.
    idle_empty: bool,
    /// A bounded input ended and every window was emitted (`end_of_input: flush`): every
    /// partition is complete, while the watermark stays the events' own.
    ended: bool,
    /// Kafka record fields and `derive` columns (on the parse threads, unless a chunk comes
    /// unprepared).
    prepare: Arc<Prepare>,
    /// The pipeline's `lookup` columns, appended after them.
    lookups: Lookups,
    /// The checkpoint that commits the files cut now.
    checkpoint: u64,
    commit_delay: i64,
    /// Whether tables work on their own threads (each table is independent of the others
    /// for a batch; results are taken in table order, so the output does not change).
    parallel_tables: bool,
    /// `state.memory_budget` in bytes, and whether the state is over it now.
    memory_budget: u64,
    over_budget: bool,
    telemetry: Arc<Telemetry>,
    /// Each table's metrics, in table order.
    metrics: Vec<TableMetrics>,
}

impl Engine {
    /// `lookups` are the pipeline's, opened on their dimension files ([`Lookups::open`]).
    pub fn new(
        config: &PipelineConfig,
        lake: Lake,
        dead_letter: Option<DeadLetter>,
        telemetry: Arc<Telemetry>,
        lookups: Lookups,
    ) -> Result<Self, EngineError> {
        let source_events = shared::schema::source_events_of(config);
        let prepare = Prepare::new(config, lookups.published()).map_err(|(i, message)| {
            EngineError::Build {
                table: format!("(derive[{i}])"),
                message,
            }
        })?;
        let events = lookups.schema(prepare.schema(&source_events)).clone();
        let ts_column =
            events
                .index_of(&config.event_time.field)
                .map_err(|e| EngineError::Build {
                    table: "(event time)".into(),
                    message: e.to_string(),
                })?;
        let (tables, sinks) = windowed_tables(config, &events, ts_column, &lake)?;
        let late = late_output(config, &events, ts_column, &lake, &telemetry);
        let metrics = config
            .tables
            .iter()
            .map(|t| telemetry.table(&t.name))
            .collect();
        Ok(Engine {
            tables,
            sinks,
            late,
            watermark: Watermark::new(config.event_time.max_out_of_orderness.as_micros()),
            ts_column,
            dead_letter,
            lake,
            next_line: 1,
            position: Position::Start,
            idle_base: None,
            idle_empty: false,
            ended: false,
            prepare: Arc::new(prepare),
            lookups,
            checkpoint: 1,
            commit_delay: config.partition_commit.delay.as_micros(),
            parallel_tables: false,
            memory_budget: config.state.memory_budget.0,
            over_budget: false,
            telemetry,
            metrics,
        })
    }

    /// What the parse threads do to a chunk before it reaches [`Engine::apply`].
    pub fn prepare(&self) -> Arc<Prepare> {
        self.prepare.clone()
    }

    /// With more than one thread, tables process a batch and emit windows in parallel.
    pub fn set_threads(&mut self, threads: usize) {
        self.parallel_tables = threads > 1;
    }

    /// Applies a chunk the parsers finished (in source order): its events, then where the
    /// source is after it. Appends the files it completes.
    pub fn apply(
        &mut self,
        events: Option<ParsedChunk>,
        after: Advance,
        files: &mut Vec<EncodedFile>,
    ) -> Result<(), EngineError> {
        if let Some(parsed) = events {
            self.process_parsed(parsed, files)?;
        }
        self.position.advance(after);
        self.telemetry.source_position(self.position.consumed());
        Ok(())
    }

    /// Counts a parsed chunk's lines, dead-letters its invalid ones, processes its events.
    fn process_parsed(
        &mut self,
        mut parsed: ParsedChunk,
        files: &mut Vec<EncodedFile>,
    ) -> Result<(), EngineError> {
        for bad in &parsed.invalid {
            let line = self.next_line + bad.index;
            tracing::debug!(line, reason = %bad.reason, "invalid line");
            if let Some(dl) = self.dead_letter.as_mut() {
                dl.write(line, &bad.reason, &bad.text)?;
            }
        }
        self.next_line += parsed.lines;
        self.telemetry.chunk_parsed(
            parsed.lines,
            parsed.batch.num_rows() as u64,
            parsed.invalid.len() as u64,
        );
        let enriched = match parsed.prepared.take() {
            Some(prepared) => prepared?,
            None => self.prepare.apply(&parsed)?,
        };
        let batch = self.lookups.finish(enriched)?;
        self.process_batch(&batch, files)
    }

    fn process_batch(
        &mut self,
        batch: &RecordBatch,
        files: &mut Vec<EncodedFile>,
    ) -> Result<(), EngineError> {
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.idle_base = None;
        // The watermark just before each event.
        let ts = batch
            .column(self.ts_column)
            .as_primitive::<TimestampMicrosecondType>();
        let mut watermarks = Vec::with_capacity(batch.num_rows());
        for i in 0..batch.num_rows() {
            watermarks.push(self.watermark.current());
            if ts.is_valid(i) {
                self.watermark.observe(ts.value(i));
            }
        }
        let watermarks = &watermarks;
        let lates = for_each_table(
            &mut self.tables,
            &mut self.sinks,
            self.parallel_tables,
            |table, _| table.process(batch, watermarks),
        );
        for (t, late) in lates.into_iter().enumerate() {
            let late = late?;
            if !late.is_empty() {
                let name = &self.tables[t].name;
                self.telemetry
                    .late_events(&self.metrics[t], name, late.len() as u64);
                if let Some(out) = &mut self.late {
                    let rows = late_rows(&out.schema, name, batch, &late)?;
                    out.sink.add(&rows, &self.lake, None)?;
                }
            }
        }
        self.emit(files)
    }

    /// Emits complete windows and writes complete lake partitions. (Late events belong to
    /// partitions already written: their table's rolling policy writes them.)
    fn emit(&mut self, files: &mut Vec<EncodedFile>) -> Result<(), EngineError> {
        self.emit_through(self.watermark.current(), files)
    }

    /// [`Engine::emit`] as if the watermark were `wm` (the end of time for a flush).
    fn emit_through(&mut self, wm: i64, files: &mut Vec<EncodedFile>) -> Result<(), EngineError> {
        let lake = &self.lake;
        let now = Instant::now();
        let emitted = for_each_table(
            &mut self.tables,
            &mut self.sinks,
            self.parallel_tables,
            |table, sink| -> Result<_, EngineError> {
                let before = table.windows_emitted;
                let mut rows = 0;
                if let Some(batch) = table.emit(wm)? {
                    rows = batch.num_rows() as u64;
                    sink.add(&batch, lake, Some(now))?;
                }
                let done = sink.complete(table.low_water_start(wm))?;
                Ok((table.windows_emitted - before, rows, done))
            },
        );
        for (t, result) in emitted.into_iter().enumerate() {
            let (windows, rows, done) = result?;
            self.telemetry
                .windows_emitted(&self.metrics[t], windows, rows);
            files.extend(done);
        }
        self.telemetry
            .watermark_moved(self.watermark.current(), self.watermark.max_ts());
        self.check_budget();
        Ok(())
    }

    /// Bytes of open state: every table's windows and every sink's waiting rows.
    pub fn state_bytes(&self) -> u64 {
        let tables: usize = self.tables.iter().map(WindowedTable::state_bytes).sum();
        let sinks: usize = self.sinks.iter().map(TableSink::buffered_bytes).sum();
        let late = self.late.as_ref().map_or(0, |l| l.sink.buffered_bytes());
        (tables + sinks + late) as u64
    }

    /// Measures the open state (per table, for the metrics, and in all), tracks the peak, and
    /// says so, once each time, when the state passes the budget.
    fn check_budget(&mut self) {
        for ((table, sink), m) in self.tables.iter().zip(&self.sinks).zip(&self.metrics) {
            m.state_bytes
                .set((table.state_bytes() + sink.buffered_bytes()) as i64);
        }
        if let Some(l) = &self.late {
            l.metrics.state_bytes.set(l.sink.buffered_bytes() as i64);
        }
        let bytes = self.state_bytes();
        let over = bytes > self.memory_budget;
        self.telemetry
            .state_measured(bytes, over && !self.over_budget);
        if over && !self.over_budget {
            let largest = self.tables.iter().max_by_key(|t| t.state_bytes());
            let (windows, groups) = largest.map_or((0, 0), WindowedTable::open_state);
            tracing::warn!(
                state_mb = bytes / 1_000_000,
                budget_mb = self.memory_budget / 1_000_000,
                largest_table = largest.map_or("-", |t| t.name.as_str()),
                largest_table_mb = largest.map_or(0, |t| t.state_bytes()) / 1_000_000,
                open_windows = windows,
                groups,
                "open state is over state.memory_budget: fewer keys, shorter windows, a smaller max_out_of_orderness, or approx_distinct instead of count_distinct would shrink it"
            );
        } else if !over && self.over_budget {
            tracing::info!(
                state_mb = bytes / 1_000_000,
                "open state is back under state.memory_budget"
            );
        }
        self.over_budget = over;
    }

    /// The source brought nothing for `quiet` (at least `event_time.idle_timeout`): event
    /// time is taken to have gone on with the wall clock since the last event, so the
    /// watermark moves and windows close.
    pub fn advance_idle(
        &mut self,
        quiet: Duration,
        files: &mut Vec<EncodedFile>,
    ) -> Result<(), EngineError> {
        let Some(max) = self.watermark.max_ts() else {
            // Never any event (an empty Kafka partition): hold no commit back.
            self.idle_empty = true;
            return Ok(());
        };
        let base = *self.idle_base.get_or_insert(max);
        let now = base.saturating_add(i64::try_from(quiet.as_micros()).unwrap_or(i64::MAX));
        if now > max {
            self.watermark.observe(now);
            self.emit(files)?;
        }
        Ok(())
    }

    /// End of a bounded input. `Flush`: every open window is emitted and every buffer
    /// written, and each table remembers the windows it emitted before the watermark passed
    /// them (the watermark itself stays the events'). `Keep`: the open state stays for the
    /// next run, which continues it.
    pub fn finish(
        &mut self,
        end: EndOfInput,
        files: &mut Vec<EncodedFile>,
    ) -> Result<(), EngineError> {
        if end == EndOfInput::Flush {
            self.tables.iter_mut().for_each(WindowedTable::mark_flushed);
            self.ended = true;
            self.emit_through(i64::MAX, files)?;
            for sink in &mut self.sinks {
                files.extend(sink.flush_all()?);
            }
            if let Some(out) = &mut self.late {
                files.extend(out.sink.flush_all()?);
            }
        }
        if let Some(dl) = &mut self.dead_letter {
            dl.flush()?;
        }
        Ok(())
    }
}

impl Engine {
    /// The watermark that decides which lake partitions are complete: the end of time once a
    /// flush emitted everything, else the events'.
    fn completion_watermark(&self) -> i64 {
        if self.ended {
            i64::MAX
        } else {
            self.watermark.current()
        }
    }

    /// Where the source is: a restart's reader starts there.
    pub fn position(&self) -> &Position {
        &self.position
    }

    /// See [`EngineSnapshot::horizon`]: where every table's lake partitions are complete
    /// ([`complete_through`], the rule by which a sink commits a partition), held back by
    /// partitions with rows not written yet.
    fn commit_horizon(&self) -> i64 {
        if self.idle_empty && self.watermark.max_ts().is_none() {
            // Past every lake partition, short of the end of input (see `Board::all_ended`).
            return i64::MAX / 4;
        }
        let wm = self.completion_watermark();
        let mut horizon = wm.saturating_sub(self.commit_delay);
        for (table, sink) in self.tables.iter().zip(&self.sinks) {
            horizon = horizon.min(complete_through(
                table.low_water_start(wm),
                wm,
                self.commit_delay,
            ));
            if let Some(end) = sink.earliest_buffered_end() {
                horizon = horizon.min(end.saturating_sub(1));
            }
        }
        horizon
    }

    /// Names the files of a unit of state (`p3`: a Kafka partition's).
    pub fn set_unit(&mut self, unit: Option<String>) {
        for sink in &mut self.sinks {
            sink.set_unit(unit.clone());
        }
        if let Some(out) = &mut self.late {
            out.sink.set_unit(unit);
        }
    }

    /// The checkpoint that will commit the files cut now.
    pub fn next_checkpoint(&self) -> u64 {
        self.checkpoint
    }

    /// Files cut from now on are committed by checkpoint `id` (and the next ones).
    pub fn set_next_checkpoint(&mut self, id: u64) {
        self.checkpoint = id;
        for sink in &mut self.sinks {
            sink.set_checkpoint(id);
        }
        if let Some(out) = &mut self.late {
            out.sink.set_checkpoint(id);
        }
    }

    /// The state to checkpoint (flushes the dead-letter file to record its length). First
    /// appends the files the rolling policies write at a checkpoint: they belong to it.
    pub fn snapshot(
        &mut self,
        files: &mut Vec<EncodedFile>,
    ) -> Result<EngineSnapshot, EngineError> {
        let now = crate::sink::now_ms();
        for sink in &mut self.sinks {
            files.extend(sink.roll(now)?);
        }
        // Counting groups walks every window (every key, for sessions): once per checkpoint,
        // not per batch.
        for (table, m) in self.tables.iter().zip(&self.metrics) {
            let (windows, groups) = table.open_state();
            m.open_windows.set(windows as i64);
            m.open_groups.set(groups as i64);
        }
        if let Some(out) = &mut self.late {
            files.extend(out.sink.roll(now)?);
        }
        // A changed dimension file is taken here: the events after this checkpoint (and a
        // replay of them) see the new version.
        self.lookups.refresh();
        let (wm, real) = (self.completion_watermark(), self.watermark.current());
        let mut markers = Vec::new();
        for (table, sink) in self.tables.iter_mut().zip(&mut self.sinks) {
            table.forget_flushed(real);
            let complete = complete_through(table.low_water_start(wm), wm, self.commit_delay);
            markers.extend(sink.ready_markers(complete, real));
        }
        let snapshot = EngineSnapshot {
            checkpoint: self.checkpoint,
            markers,
            horizon: self.commit_horizon(),
            source: self.position.clone(),
            next_line: self.next_line,
            max_ts: self.watermark.max_ts(),
            stats: self.telemetry.engine_stats(),
            tables: self.tables.iter().map(WindowedTable::snapshot).collect(),
            sinks: self
                .sinks
                .iter()
                .map(TableSink::snapshot)
                .collect::<Result<_, _>>()?,
            late: self.late.as_ref().map(|l| l.sink.snapshot()).transpose()?,
            dead_letter_len: self
                .dead_letter
                .as_mut()
                .map(DeadLetter::checkpoint_len)
                .transpose()?,
            lookups: self.lookups.snapshot(),
        };
        self.set_next_checkpoint(self.checkpoint + 1);
        Ok(snapshot)
    }

    /// Continues from a checkpoint.
    pub fn restore(&mut self, s: EngineSnapshot) -> Result<(), EngineError> {
        if s.tables.len() != self.tables.len() || s.sinks.len() != self.sinks.len() {
            return Err(EngineError::Build {
                table: "(checkpoint)".into(),
                message: "the checkpoint was taken with other tables; restart with --from-scratch"
                    .into(),
            });
        }
        self.position = s.source.normalized();
        self.next_line = s.next_line;
        self.watermark.restore(s.max_ts);
        self.telemetry.restore(&s.stats);
        for (t, snap) in self.tables.iter_mut().zip(s.tables) {
            t.restore(snap);
        }
        for (sink, snap) in self.sinks.iter_mut().zip(s.sinks) {
            sink.restore(snap)?;
        }
        if let (Some(out), Some(snap)) = (&mut self.late, s.late) {
            out.sink.restore(snap)?;
        }
        if let (Some(dl), Some(len)) = (&mut self.dead_letter, s.dead_letter_len) {
            dl.truncate(len)?;
        }
        self.lookups.restore(s.lookups)?;
        Ok(())
    }
}

/// The pipeline's windowed tables over `events`, each with the sink of its files.
fn windowed_tables(
    config: &PipelineConfig,
    events: &SchemaRef,
    ts_column: usize,
    lake: &Lake,
) -> Result<(Vec<WindowedTable>, Vec<TableSink>), EngineError> {
    let mut tables = Vec::new();
    let mut sinks = Vec::new();
    for t in &config.tables {
        let table =
            WindowedTable::new(t, events, ts_column).map_err(|message| EngineError::Build {
                table: t.name.clone(),
                message,
            })?;
        let options = SinkOptions {
            time_column: 0,
            partition_by: &t.partition_by,
            rolling: &t.rolling,
            commit_markers: true,
        };
        sinks.push(
            TableSink::new(&t.name, table.schema().clone(), options, lake)
                .with_compression(config.lake.compression.codec()),
        );
        tables.push(table);
    }
    Ok((tables, sinks))
}

/// The late-events table's sink, if the pipeline has one.
fn late_output(
    config: &PipelineConfig,
    events: &SchemaRef,
    ts_column: usize,
    lake: &Lake,
    telemetry: &Telemetry,
) -> Option<LateOutput> {
    let l = config.late_events.as_ref()?;
    let schema = shared::schema::late_schema(events);
    let options = SinkOptions {
        // Late events are partitioned by their own event time.
        time_column: 2 + ts_column,
        partition_by: &[],
        rolling: &l.rolling,
        commit_markers: false,
    };
    Some(LateOutput {
        sink: TableSink::new(&l.table, schema.clone(), options, lake)
            .with_compression(config.lake.compression.codec()),
        schema,
        metrics: telemetry.table(&l.table),
    })
}

/// Runs `f` on every (table, sink) pair, on one scoped thread each when `parallel`, and
/// returns the results in table order.
fn for_each_table<R: Send>(
    tables: &mut [WindowedTable],
    sinks: &mut [TableSink],
    parallel: bool,
    f: impl Fn(&mut WindowedTable, &mut TableSink) -> R + Sync,
) -> Vec<R> {
    if !parallel || tables.len() < 2 {
        return tables.iter_mut().zip(sinks).map(|(t, s)| f(t, s)).collect();
    }
    std::thread::scope(|scope| {
        let f = &f;
        let mut pairs = tables.iter_mut().zip(sinks);
        let (t0, s0) = pairs.next().expect("two tables or more");
        let others: Vec<_> = pairs.map(|(t, s)| scope.spawn(move || f(t, s))).collect();
        let mut out = vec![f(t0, s0)];
        for h in others {
            out.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}

/// Rows of the late-events table: the table that dropped each event, the watermark then,
/// and the event's fields.
fn late_rows(
    schema: &SchemaRef,
    table: &str,
    batch: &RecordBatch,
    late: &[LateRow],
) -> Result<RecordBatch, EngineError> {
    let indices = UInt32Array::from_iter_values(late.iter().map(|l| l.row));
    let events = take_record_batch(batch, &indices)?;
    let mut columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from(vec![table; late.len()])),
        Arc::new(
            TimestampMicrosecondArray::from_iter_values(late.iter().map(|l| l.watermark))
                .with_timezone("UTC"),
        ),
    ];
    columns.extend(events.columns().iter().cloned());
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
