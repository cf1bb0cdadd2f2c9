//! Parsing on several threads with the output of one.
//!
//! Parsing is most of the work of the stream stage, and a chunk of lines parses the same
//! wherever it is parsed ([`EventParser::parse`] depends only on the chunk). So chunks go to a
//! pool of workers, each with its own parser, while the engine thread takes the parsed chunks
//! back *in the order the source produced them* and does the rest (line numbers, dead
//! letters, watermark, windows, Parquet). The engine sees exactly the batches a
//! single-threaded run would, so the output is identical for any number of threads; the
//! pool only lets parsing of the next chunks overlap the engine's work on this one.
//!
//! A worker also prepares the events it parsed ([`Prepare`]: Kafka record fields, `derive`,
//! `lookup`), so that the engine thread only windows and writes them.
//! It gives the chunk's buffer back to the sources ([`buffers`]) once parsed.
//!
//! With one thread there is no pool: chunks are parsed on the engine thread.

use std::collections::VecDeque;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use arrow::array::RecordBatch;
use arrow::error::ArrowError;
use shared::config::FormatConfig;

use crate::format::{EventParser, parser_for};
use crate::lookup::Enriched;
use crate::prepare::Prepare;
use crate::sources::{Advance, Chunk, RecordMeta, buffers};

/// An invalid line of a parsed chunk.
#[derive(Debug, Clone)]
pub struct InvalidLine {
    /// 0-based index of the line in its chunk.
    pub index: u64,
    pub reason: String,
    pub text: Vec<u8>,
}

/// A chunk parsed: the batch of valid events, the number of lines, the invalid ones.
#[derive(Debug)]
pub struct ParsedChunk {
    pub batch: RecordBatch,
    pub lines: u64,
    pub invalid: Vec<InvalidLine>,
    /// Kafka: each line's record (the fields the source adds to its events).
    pub records: Option<RecordMeta>,
    /// The events prepared for the engine ([`Prepare::apply`]), when a parse thread did it.
    pub prepared: Option<Result<Enriched, ArrowError>>,
}

/// Parses one chunk with `parser`.
pub fn parse_chunk(parser: &mut dyn EventParser, data: &[u8], at_start: bool) -> ParsedChunk {
    let mut invalid = Vec::new();
    let parsed = parser.parse(
        data,
        at_start,
        &mut |index: u64, reason: &str, text: &[u8]| {
            invalid.push(InvalidLine {
                index,
                reason: reason.to_string(),
                text: text.to_vec(),
            })
        },
    );
    ParsedChunk {
        batch: parsed.batch,
        lines: parsed.lines,
        invalid,
        records: None,
        prepared: None,
    }
}

/// Parses one chunk with `parser` and prepares its events.
fn parse_and_prepare(
    parser: &mut dyn EventParser,
    prepare: &Prepare,
    data: &[u8],
    at_start: bool,
    records: Option<RecordMeta>,
) -> ParsedChunk {
    let mut parsed = parse_chunk(parser, data, at_start);
    parsed.records = records;
    parsed.prepared = Some(prepare.apply(&parsed));
    parsed
}

/// One item from the source, in order: its events (being parsed, or parsed) and what follows.
pub struct InFlight {
    events: Option<Pending>,
    pub after: Advance,
}

enum Pending {
    Ready(ParsedChunk),
    Parsing(Receiver<ParsedChunk>),
}

impl InFlight {
    /// Waits for the chunk's events (`None` for an item without data). An error means a
    /// worker died.
    pub fn wait(self) -> Result<(Option<ParsedChunk>, Advance), String> {
        let events = match self.events {
            None => None,
            Some(Pending::Ready(p)) => Some(p),
            Some(Pending::Parsing(rx)) => Some(
                rx.recv()
                    .map_err(|_| "a parser thread stopped".to_string())?,
            ),
        };
        Ok((events, self.after))
    }
}

struct Job {
    data: Vec<u8>,
    at_start: bool,
    records: Option<RecordMeta>,
    reply: SyncSender<ParsedChunk>,
}

/// Parses chunks on `threads` threads (inline when 1), keeping them in source order.
pub struct Parsers {
    inline: Option<Box<dyn EventParser>>,
    prepare: Arc<Prepare>,
    jobs: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    threads: usize,
    /// Whether the next chunk starts the input (only the first chunk of a run from the
    /// start of its input does).
    at_start: bool,
}

impl Parsers {
    /// `at_start`: the run reads its input from the beginning. `prepare`: the engine's
    /// ([`crate::engine::Engine::prepare`]).
    pub fn new(
        format: &FormatConfig,
        threads: usize,
        at_start: bool,
        prepare: Arc<Prepare>,
    ) -> Self {
        let threads = threads.max(1);
        if threads == 1 {
            return Parsers {
                inline: Some(parser_for(format)),
                prepare,
                jobs: None,
                workers: Vec::new(),
                threads,
                at_start,
            };
        }
        let (tx, rx) = sync_channel::<Job>(threads);
        let rx = Arc::new(Mutex::new(rx));
        let workers = (0..threads)
            .map(|i| {
                let rx = rx.clone();
                let prepare = prepare.clone();
                let mut parser = parser_for(format);
                std::thread::Builder::new()
                    .name(format!("parse-{i}"))
                    .spawn(move || {
                        loop {
                            let job = match rx.lock() {
                                Ok(guard) => guard.recv(),
                                Err(_) => return,
                            };
                            let Ok(job) = job else { return };
                            let parsed = parse_and_prepare(
                                parser.as_mut(),
                                &prepare,
                                &job.data,
                                job.at_start,
                                job.records,
                            );
                            buffers::give(job.data);
                            // The engine may have stopped waiting (shutdown): fine.
                            let _ = job.reply.send(parsed);
                        }
                    })
                    .expect("a parser thread starts")
            })
            .collect();
        Parsers {
            inline: None,
            prepare,
            jobs: Some(tx),
            workers,
            threads,
            at_start,
        }
    }

    /// How many chunks to keep in flight: one per worker, and one more being applied.
    pub fn depth(&self) -> usize {
        if self.threads == 1 {
            1
        } else {
            self.threads + 1
        }
    }

    /// Starts parsing what the source sent.
    pub fn submit(&mut self, chunk: Chunk) -> InFlight {
        let Chunk {
            data,
            advance,
            records,
        } = chunk;
        if data.is_empty() {
            return InFlight {
                events: None,
                after: advance,
            };
        }
        let after = advance;
        let at_start = std::mem::replace(&mut self.at_start, false);
        let events = match (&mut self.inline, &self.jobs) {
            (Some(parser), _) => {
                let parsed =
                    parse_and_prepare(parser.as_mut(), &self.prepare, &data, at_start, records);
                buffers::give(data);
                Pending::Ready(parsed)
            }
            (None, Some(jobs)) => {
                let (reply, rx) = sync_channel(1);
                match jobs.send(Job {
                    data,
                    at_start,
                    records,
                    reply,
                }) {
                    Ok(()) => Pending::Parsing(rx),
                    // Every worker is gone: `wait` reports it.
                    Err(_) => Pending::Parsing(sync_channel(1).1),
                }
            }
            (None, None) => unreachable!("a pool has workers or an inline parser"),
        };
        InFlight {
            events: Some(events),
            after,
        }
    }
}

impl Drop for Parsers {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// The items in flight, oldest first.
pub type InFlightQueue = VecDeque<InFlight>;

/// The number of threads to parse with by default: the machine's cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
