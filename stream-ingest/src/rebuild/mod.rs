//! `run --rebuild TABLE[,TABLE]`: recompute some tables from the input, leave the others.
//!
//! A table whose window, key, filter or aggregates changed cannot continue its open
//! windows (see [`crate::checkpoint::plan`]). A rebuild recomputes it instead, from the start
//! of the input up to the newest checkpoint's position, with an engine of its own that keeps
//! only the rebuilt tables. Its state then takes the place of theirs in one new checkpoint,
//! whose staged files are the rebuilt tables' new files:
//!
//! ```text
//! restore checkpoint C ─▶ rebuild engine: input [start, C's position) ─▶ new files (staged)
//!                      └▶ C's state, the rebuilt tables' replaced ─▶ checkpoint R {rebuilt: T}
//! R durable ─▶ publish T's new files ─▶ remove T's files and markers of checkpoints < R
//!           ─▶ write T's new markers ─▶ delete the checkpoints before R
//! ```
//!
//! The other tables and their files are untouched, and the run then goes on from R as any
//! run does. A crash before R is durable leaves the lake as it was (the staged files are
//! cleaned at the next start, and the same command starts the rebuild over); a crash after
//! it finishes the swap on restart (R names the rebuilt tables). The input must still hold
//! what C read: a file or the files of a glob or directory, unchanged up to C's position.
//!
//! A Kafka source has one unit per Kafka partition, whose files the same lake partitions
//! share: [`kafka`] rebuilds every unit the same way, then swaps all of them at once.

mod kafka;

use std::sync::Arc;

use shared::config::{EndOfInput, LoadedConfig, PipelineConfig};
use shared::lake::Lake;
use shared::lock::Locks;
use tokio::sync::mpsc;

use crate::checkpoint::EngineSnapshot;
use crate::engine::{Engine, EngineError};
use crate::format::parser_for;
use crate::lookup::Lookups;
use crate::metrics::Telemetry;
use crate::parallel::parse_chunk;
use crate::sources::{self, Chunk, Input, Position, ReaderOptions, SourceError};
use crate::unit::{Recovered, Unit, lock_unit, recover};
use crate::writer::{CommitWriter, ToWriter};
use crate::{IngestError, RunOptions, input_identity};

pub use kafka::refuse_unfinished;

/// Rebuilds `opts.rebuild` and commits the result; the caller then runs as usual. Without a
/// checkpoint there is nothing to rebuild: the run computes every table anyway.
pub async fn rebuild(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    lake: &Lake,
    input: &Input,
    telemetry: &Arc<Telemetry>,
) -> Result<(), IngestError> {
    check(loaded, opts, input)?;
    if let Input::Kafka(k) = input {
        return kafka::rebuild(loaded, opts, lake, k).await;
    }
    let unit = Unit::whole();
    let locks = lock_unit(lake, &loaded.config.name, &unit, opts.wait.map(|w| w.0)).await?;
    let source = Replay::Input(input);
    let target = Target {
        unit: &unit,
        identity: input_identity(input),
        locks,
    };
    rebuild_unit(loaded, opts, lake, target, &source, telemetry).await?;
    Ok(())
}

/// Where a rebuild reads its input again.
enum Replay<'a> {
    /// The run's input (a file, a glob or a directory) from its start.
    Input(&'a Input),
    /// One Kafka partition from its earliest record.
    Kafka {
        kafka: &'a shared::config::KafkaConfig,
        topic: &'a str,
        partition: i32,
    },
}

impl Replay<'_> {
    /// Starts sending the chunks of the input up to `until`.
    fn spawn(
        &self,
        opts: &RunOptions,
        until: &Position,
        tx: sources::ChunkSender,
    ) -> Result<std::thread::JoinHandle<()>, SourceError> {
        let chunk_bytes = opts.chunk_bytes.unwrap_or(sources::CHUNK_BYTES);
        match self {
            Replay::Input(input) => {
                let reader = ReaderOptions {
                    chunk_bytes,
                    start: Position::Start,
                    max_lines_per_sec: opts.max_lines_per_sec,
                    until: Some(until.clone()),
                };
                sources::spawn_reader((*input).clone(), reader, tx)
            }
            Replay::Kafka {
                kafka,
                topic,
                partition,
            } => {
                let until = until.offset().unwrap_or(0);
                sources::kafka::spawn_replay(kafka, topic, *partition, until, chunk_bytes, tx)
            }
        }
    }
}

/// The unit a rebuild recomputes: its lock, taken, and the input its checkpoints read.
struct Target<'a> {
    unit: &'a Unit,
    identity: String,
    locks: Locks,
}

/// Rebuilds the tables of one unit up to its newest checkpoint, in a checkpoint of their
/// own; its id, or `None` without a checkpoint.
async fn rebuild_unit(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    lake: &Lake,
    target: Target<'_>,
    source: &Replay<'_>,
    telemetry: &Arc<Telemetry>,
) -> Result<Option<u64>, IngestError> {
    let Target {
        unit,
        identity,
        locks,
    } = target;
    let recovered = recover(loaded, opts, lake, identity, telemetry, locks, unit).await?;
    let Some(from) = recovered.resumed_from else {
        tracing::info!(%unit, "no checkpoint to rebuild: the run computes every table from the input");
        return Ok(None);
    };
    let Recovered {
        mut engine,
        mut writer,
        flushed_at_end,
        ..
    } = recovered;
    writer.header.rebuilt = opts.rebuild.clone();
    let until = engine.position().clone();
    let next = engine.next_checkpoint();
    let replay = Rebuilding {
        unit,
        until: &until,
        next,
        source,
        end: if flushed_at_end {
            EndOfInput::Flush
        } else {
            EndOfInput::Keep
        },
    };
    let rebuilt = recompute(loaded, opts, lake, replay, &mut writer).await?;
    if rebuilt.source != until {
        return Err(IngestError::Usage(format!(
            "cannot rebuild {} ({unit}): the input no longer holds what checkpoint {from} read (it read up to {:?}, the input now ends at {:?}); rebuild every table from the input as it is with --from-scratch",
            opts.rebuild.join(", "),
            until,
            rebuilt.source
        )));
    }
    let mut files = Vec::new();
    let mut state = engine.snapshot(&mut files)?;
    for f in files {
        writer.handle(ToWriter::File(f)).await?;
    }
    replace_tables(
        &mut state,
        rebuilt,
        &loaded.config,
        &opts.rebuild,
        flushed_at_end,
    );
    writer.handle(ToWriter::Checkpoint(Box::new(state))).await?;
    tracing::warn!(tables = %opts.rebuild.join(", "), %unit, checkpoint = from, "rebuilt up to the checkpoint's position");
    Ok(Some(next))
}

/// What a unit's rebuild replays: its input up to `until`, into files named for checkpoint
/// `next`, then `end`: an end of input that emitted every window before the checkpoint
/// (its horizon is the end of time) is done again, so that the rebuilt tables stand where
/// the others do.
struct Rebuilding<'a> {
    unit: &'a Unit,
    until: &'a Position,
    next: u64,
    source: &'a Replay<'a>,
    end: EndOfInput,
}

/// Replays the input up to `until` through an engine of the rebuilt tables alone, whose
/// files go to `writer` to be staged; its state at `until`.
async fn recompute(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    lake: &Lake,
    replay: Rebuilding<'_>,
    writer: &mut CommitWriter,
) -> Result<EngineSnapshot, IngestError> {
    let mut rebuilding = rebuild_engine(loaded, &opts.rebuild, lake, replay.unit)?;
    rebuilding.set_next_checkpoint(replay.next);
    let (chunk_tx, chunk_rx) = std::sync::mpsc::sync_channel(2);
    let _reader = replay.source.spawn(opts, replay.until, chunk_tx)?;
    let end = replay.end;
    let (tx, mut rx) = mpsc::channel::<ToWriter>(8);
    let format = loaded.config.format.clone();
    let at_start = replay.unit.tag.is_none();
    let task = tokio::task::spawn_blocking(move || {
        apply_chunks(&mut rebuilding, &format, chunk_rx, at_start, &tx)?;
        let mut files = Vec::new();
        rebuilding.finish(end, &mut files)?;
        let state = rebuilding.snapshot(&mut files)?;
        send(&tx, files)?;
        Ok::<_, IngestError>(state)
    });
    while let Some(msg) = rx.recv().await {
        writer.handle(msg).await?;
    }
    task.await
        .map_err(|e| IngestError::Internal(format!("the rebuild panicked: {e}")))?
}

/// Refuses what cannot be rebuilt, and says why.
fn check(loaded: &LoadedConfig, opts: &RunOptions, input: &Input) -> Result<(), IngestError> {
    let names: Vec<&str> = loaded
        .config
        .tables
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    if let Some(unknown) = opts.rebuild.iter().find(|t| !names.contains(&t.as_str())) {
        return Err(IngestError::Usage(format!(
            "--rebuild {unknown}: no such windowed table (the pipeline has {})",
            names.join(", ")
        )));
    }
    if opts.from_scratch {
        return Err(IngestError::Usage(
            "--rebuild and --from-scratch: --from-scratch rebuilds every table already".into(),
        ));
    }
    let why = match input {
        Input::File(_) | Input::Files(_) | Input::Kafka(_) => return Ok(()),
        Input::Stdin => "standard input cannot be read again",
        Input::Tail { .. } => {
            "a followed log keeps only its current files: the lines rotated away cannot be read again"
        }
        Input::Generate(_) => "the generator cannot be read again from its start yet",
    };
    Err(IngestError::Usage(format!(
        "--rebuild needs an input it can read again from its start (a file, the files of a glob or directory, or a Kafka topic): {why}. Give the changed table a new name instead (it starts now, beside the old one's files), or rebuild every table from a file with --from-scratch --input FILE"
    )))
}

/// An engine of the rebuilt tables alone (no late table, no dead-letter file: those are
/// the run's).
fn rebuild_engine(
    loaded: &LoadedConfig,
    tables: &[String],
    lake: &Lake,
    unit: &Unit,
) -> Result<Engine, IngestError> {
    let mut config: PipelineConfig = loaded.config.clone();
    config.tables.retain(|t| tables.contains(&t.name));
    config.late_events = None;
    let telemetry = Telemetry::new(tables);
    let lookups = Lookups::open(&config, |p| loaded.resolve(p)).map_err(EngineError::from)?;
    let mut engine = Engine::new(&config, lake.clone(), None, telemetry, lookups)?;
    engine.set_unit(unit.tag.clone());
    Ok(engine)
}

/// Applies the input's chunks to the rebuild engine, sending its files to the writer.
/// `at_start`: the first chunk starts the input (a CSV header is there; never in a Kafka
/// record).
fn apply_chunks(
    engine: &mut Engine,
    format: &shared::config::FormatConfig,
    chunks: std::sync::mpsc::Receiver<Result<Chunk, SourceError>>,
    mut at_start: bool,
    tx: &mpsc::Sender<ToWriter>,
) -> Result<(), IngestError> {
    let mut parser = parser_for(format);
    for chunk in chunks {
        let chunk = chunk?;
        let parsed = (!chunk.data.is_empty()).then(|| {
            let mut parsed =
                parse_chunk(parser.as_mut(), &chunk.data, std::mem::take(&mut at_start));
            parsed.records = chunk.records;
            parsed
        });
        let mut files = Vec::new();
        engine.apply(parsed, chunk.advance, &mut files)?;
        send(tx, files)?;
    }
    Ok(())
}

fn send(
    tx: &mpsc::Sender<ToWriter>,
    files: Vec<crate::sink::EncodedFile>,
) -> Result<(), IngestError> {
    for f in files {
        tx.blocking_send(ToWriter::File(f))
            .map_err(|_| IngestError::Internal("the writer stopped during the rebuild".into()))?;
    }
    Ok(())
}

/// The run's state with the rebuilt tables' state (and their markers) in place of theirs;
/// `flushed`: the input had ended and every window was emitted.
fn replace_tables(
    state: &mut EngineSnapshot,
    rebuilt: EngineSnapshot,
    config: &PipelineConfig,
    tables: &[String],
    flushed: bool,
) {
    let mut new_tables = rebuilt.tables.into_iter().zip(rebuilt.sinks);
    for (i, t) in config.tables.iter().enumerate() {
        if tables.contains(&t.name) {
            let (table, sink) = new_tables.next().expect("one state per rebuilt table");
            state.tables[i] = table;
            state.sinks[i] = sink;
        }
    }
    state.markers.extend(rebuilt.markers);
    state.horizon = if flushed {
        // The restored engine does not know its input ended: the rebuilt one, flushed
        // again, says where every table is complete (a Delta lake's readers go by it).
        rebuilt.horizon
    } else {
        // Where a lake partition is complete for both (several units: see `Board`).
        state.horizon.min(rebuilt.horizon)
    };
}
