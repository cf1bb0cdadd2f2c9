//! Sources: where lines come from, one file per kind.
//!
//! A source reads on its own thread and hands the engine [`Chunk`]s of complete lines (a
//! chunk ends at a `\n`, except the very last one of the input), so that a parser never sees
//! half a line. Each chunk says how it moves the source's [`Position`]; the engine applies
//! the advance after the chunk's events and stores the position in its checkpoints without
//! looking inside, and a restart hands it back to the same kind of source ([`ReaderOptions`]).
//!
//! ```text
//! sources/
//!   mod.rs       Input, Chunk, Advance, Position, spawn_reader
//!   file.rs      a file read once to its end (and the line-aligned chunking of any reader)
//!   stdin.rs     standard input
//!   tail.rs      files followed as they grow, across rotation and truncation; and the
//!                files of a glob or directory read once (a `file` source for cron runs)
//!   generate.rs  the built-in access-log generator
//!   kafka.rs     Kafka partitions, each one's records chunked for its own engine
//! ```

pub mod buffers;
pub mod file;
pub mod generate;
pub mod kafka;
pub mod stdin;
pub mod tail;

use std::io;
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shared::config::{GenerateConfig, KafkaConfig};

use self::tail::{FileId, TailPosition};

/// Target size of a chunk; a single longer line makes a longer chunk.
pub const CHUNK_BYTES: usize = 4 << 20;

/// Where a run reads from.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    File(PathBuf),
    /// The files a glob or a directory names, each read from where the last run stopped to
    /// its end (a `file` source for cron runs: new lines and new files, then stop).
    Files(PathBuf),
    Stdin,
    /// Files followed as they grow (a path or a glob).
    Tail {
        pattern: PathBuf,
        poll: Duration,
    },
    /// The built-in access-log generator.
    Generate(GenerateConfig),
    /// Kafka topics read by a consumer group: each Kafka partition is a unit of state of its own
    /// (see [`crate::member`]), fed by [`kafka`].
    Kafka(KafkaConfig),
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::File(p) => write!(f, "{}", p.display()),
            Input::Files(p) => write!(f, "{}", p.display()),
            Input::Stdin => f.write_str("standard input"),
            Input::Tail { pattern, .. } => write!(f, "{} (followed)", pattern.display()),
            Input::Generate(g) => {
                write!(f, "generated access log (seed {}", g.seed)?;
                match g.lines {
                    Some(n) => write!(f, ", {n} lines)"),
                    None => f.write_str(", until stopped)"),
                }
            }
            Input::Kafka(k) => write!(
                f,
                "Kafka topic {} (group {})",
                k.topic.names().join(", "),
                k.group
            ),
        }
    }
}

/// What a source hands the engine: complete lines (possibly none) and how they move the
/// source's position.
#[derive(Debug)]
pub struct Chunk {
    pub data: Vec<u8>,
    pub advance: Advance,
    /// Kafka: each line's record (the fields a Kafka source adds to its events).
    pub records: Option<RecordMeta>,
}

/// The Kafka record of each line of a chunk: Kafka partition, offset and timestamp (µs).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordMeta {
    pub kafka_partition: i32,
    pub offsets: Vec<i64>,
    pub timestamps: Vec<Option<i64>>,
}

impl Chunk {
    /// Lines of a file, standard input or the generator: the position moves by their bytes.
    pub fn bytes(data: Vec<u8>) -> Chunk {
        let n = data.len() as u64;
        Chunk {
            data,
            advance: Advance::Bytes(n),
            records: None,
        }
    }
}

/// How a chunk moves a [`Position`].
#[derive(Debug, Clone, PartialEq)]
pub enum Advance {
    /// This many more bytes of a file, standard input or the generator were consumed.
    Bytes(u64),
    /// A followed file is at this position now.
    File(TailPosition),
    /// A followed file is finished (rotated away and read to its end): forget it.
    Forget(FileId),
    /// A Kafka partition: the next record to read is at this offset.
    Offset(i64),
}

/// Where a source is: what a checkpoint stores and a restart resumes from. Only the
/// sources look inside.
///
/// "Nothing read yet" is always [`Position::Start`]: [`Position::advance`] never leaves
/// `Bytes(0)` or an empty `Files`, and [`Position::normalized`] turns those of older
/// checkpoints into `Start`. (The variants and their order are the checkpoint format.)
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub enum Position {
    /// Nothing read yet (or every followed file forgotten).
    #[default]
    Start,
    /// Bytes consumed of a file, standard input or the generator's output (more than 0).
    Bytes(u64),
    /// Followed files (`tail`): each one's identity and the offset after its last complete
    /// line, in identity order (at least one).
    Files(Vec<TailPosition>),
    /// A Kafka partition: the offset of the next record to read.
    Offset(i64),
}

impl Position {
    /// Moves the position past a chunk.
    pub fn advance(&mut self, advance: Advance) {
        *self = match advance {
            Advance::Bytes(n) => Position::of_bytes(self.bytes() + n),
            Advance::File(p) => {
                let mut files = self.files();
                match files.binary_search_by(|f| f.id.cmp(&p.id)) {
                    Ok(i) => files[i] = p,
                    Err(i) => files.insert(i, p),
                }
                Position::of_files(files)
            }
            Advance::Forget(id) => {
                let mut files = self.files();
                files.retain(|f| f.id != id);
                Position::of_files(files)
            }
            Advance::Offset(next) => Position::Offset(next),
        };
    }

    fn of_bytes(n: u64) -> Position {
        if n == 0 {
            Position::Start
        } else {
            Position::Bytes(n)
        }
    }

    fn of_files(files: Vec<TailPosition>) -> Position {
        if files.is_empty() {
            Position::Start
        } else {
            Position::Files(files)
        }
    }

    /// The same position, with "nothing read yet" spelled [`Position::Start`] (a checkpoint
    /// written before that rule may hold `Bytes(0)` or an empty `Files`).
    pub fn normalized(self) -> Position {
        match self {
            Position::Bytes(n) => Position::of_bytes(n),
            Position::Files(files) => Position::of_files(files),
            other => other,
        }
    }

    /// Whether nothing was read yet (a CSV header is expected only then).
    pub fn is_start(&self) -> bool {
        *self == Position::Start
    }

    /// Bytes consumed of a file, standard input or the generator.
    pub fn bytes(&self) -> u64 {
        match self {
            Position::Bytes(n) => *n,
            _ => 0,
        }
    }

    /// The next offset of a Kafka partition, if the position is one.
    pub fn offset(&self) -> Option<i64> {
        match self {
            Position::Offset(n) => Some(*n),
            _ => None,
        }
    }

    /// Positions of followed files.
    pub fn files(&self) -> Vec<TailPosition> {
        match self {
            Position::Files(f) => f.clone(),
            _ => Vec::new(),
        }
    }

    /// One number for the metrics: bytes consumed (summed over followed files).
    pub fn consumed(&self) -> u64 {
        match self {
            Position::Start => 0,
            Position::Bytes(n) => *n,
            Position::Files(f) => f.iter().map(|p| p.offset).sum(),
            Position::Offset(n) => u64::try_from(*n).unwrap_or(0),
        }
    }
}

/// An input that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {input}: {source}")]
pub struct SourceError {
    pub input: String,
    #[source]
    pub source: io::Error,
}

/// How a reader reads.
#[derive(Debug, Clone)]
pub struct ReaderOptions {
    /// Target chunk size in bytes.
    pub chunk_bytes: usize,
    /// The position of the checkpoint a run resumes from.
    pub start: Position,
    /// Read no faster than this many lines per second (demos and crash tests).
    pub max_lines_per_sec: Option<u64>,
    /// Stop at this position instead of the end of the input (a rebuild reads up to the
    /// checkpoint it rebuilds). Files (`Files` inputs) that it does not name are not read.
    pub until: Option<Position>,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            chunk_bytes: CHUNK_BYTES,
            start: Position::Start,
            max_lines_per_sec: None,
            until: None,
        }
    }
}

/// Where chunks go; a send fails once the engine stopped.
pub type ChunkSender = SyncSender<Result<Chunk, SourceError>>;

/// Opens the input now (so a missing file is reported before anything runs), skips to the
/// start position, and starts a thread that sends its chunks, then closes the channel at the
/// end of the input.
pub fn spawn_reader(
    input: Input,
    opts: ReaderOptions,
    tx: ChunkSender,
) -> Result<std::thread::JoinHandle<()>, SourceError> {
    let name = input.to_string();
    let spawned = match input {
        Input::File(path) => return file::spawn(&path, name, opts, tx),
        Input::Files(pattern) => {
            let poll = Duration::ZERO;
            let mut reader =
                tail::Follower::new(&pattern, poll, opts.chunk_bytes, opts.start.files());
            if let Some(until) = &opts.until {
                reader = reader.until(until.files());
            }
            std::thread::Builder::new()
                .name("files".into())
                .spawn(move || reader.read_once(|chunk| tx.send(chunk).is_ok()))
        }
        Input::Stdin => return stdin::spawn(name, opts, tx),
        Input::Tail { pattern, poll } => {
            let follower =
                tail::Follower::new(&pattern, poll, opts.chunk_bytes, opts.start.files());
            std::thread::Builder::new()
                .name("tail".into())
                .spawn(move || follower.run(|chunk| tx.send(chunk).is_ok()))
        }
        Input::Kafka(_) => {
            return Err(SourceError {
                input: name,
                source: io::Error::other("a Kafka topic is read by the member, not a reader"),
            });
        }
        Input::Generate(config) => std::thread::Builder::new()
            .name("generate".into())
            .spawn(move || generate::send_chunks(&config, &opts, |c| tx.send(Ok(c)).is_ok())),
    };
    spawned.map_err(|source| SourceError {
        input: name,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(ino: u64, offset: u64) -> TailPosition {
        TailPosition {
            id: FileId { dev: 1, ino },
            path: format!("f{ino}"),
            offset,
        }
    }

    #[test]
    fn positions_advance_as_their_sources_say() {
        let mut p = Position::Start;
        assert!(p.is_start());
        p.advance(Advance::Bytes(10));
        p.advance(Advance::Bytes(5));
        assert_eq!(p, Position::Bytes(15));
        assert!(!p.is_start());

        let mut p = Position::Start;
        p.advance(Advance::File(file(7, 100)));
        p.advance(Advance::File(file(3, 40)));
        p.advance(Advance::File(file(7, 120)));
        assert_eq!(p.files(), vec![file(3, 40), file(7, 120)]);
        assert_eq!(p.consumed(), 160);
        p.advance(Advance::Forget(FileId { dev: 1, ino: 3 }));
        assert_eq!(p, Position::Files(vec![file(7, 120)]));
    }

    #[test]
    fn nothing_read_is_always_the_start() {
        let mut p = Position::Start;
        p.advance(Advance::Bytes(0));
        assert_eq!(p, Position::Start);
        p.advance(Advance::File(file(7, 100)));
        p.advance(Advance::Forget(FileId { dev: 1, ino: 7 }));
        assert_eq!(p, Position::Start);
        assert!(p.is_start());
        // Older checkpoints spelled it three ways.
        for old in [Position::Bytes(0), Position::Files(vec![])] {
            assert!(old.normalized().is_start());
        }
        assert_eq!(Position::Bytes(3).normalized(), Position::Bytes(3));
        assert!(!Position::Offset(0).normalized().is_start());
    }
}
