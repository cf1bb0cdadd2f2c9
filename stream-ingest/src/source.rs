//! Sources: where lines come from. A source reads on its own thread and hands the engine
//! chunks of complete lines (a chunk ends at a `\n`, except the very last one of the
//! input), so that a parser never sees half a line. A file or standard input is read once,
//! to its end; the `tail` source ([`crate::tail`]) follows files until stopped.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use shared::config::GenerateConfig;

use crate::generate::{Generator, Pace};
use crate::tail::{FileId, Follower, TailPosition};

/// Target size of a chunk; a single longer line makes a longer chunk.
pub const CHUNK_BYTES: usize = 4 << 20;

/// How long a chunk of a slow input (a pipe) waits to fill before its lines are handed over.
const HANDOVER: Duration = Duration::from_millis(100);

/// Where a run reads from.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    File(PathBuf),
    Stdin,
    /// Files followed as they grow (a path or a glob).
    Tail {
        pattern: PathBuf,
        poll: Duration,
    },
    /// The built-in access-log generator.
    Generate(GenerateConfig),
}

impl std::fmt::Display for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Input::File(p) => write!(f, "{}", p.display()),
            Input::Stdin => f.write_str("standard input"),
            Input::Tail { pattern, .. } => write!(f, "{} (followed)", pattern.display()),
            Input::Generate(g) => {
                write!(f, "generated access log (seed {}", g.seed)?;
                match g.lines {
                    Some(n) => write!(f, ", {n} lines)"),
                    None => f.write_str(", until stopped)"),
                }
            }
        }
    }
}

/// What a source hands the engine.
#[derive(Debug)]
pub enum Chunk {
    /// Complete lines of a file or standard input read from its start: the position is the
    /// number of bytes consumed.
    Bytes(Vec<u8>),
    /// Complete lines of a followed file, and the position just after them.
    Tail {
        data: Vec<u8>,
        position: TailPosition,
    },
    /// A followed file is finished (rotated away and read to its end): forget its position.
    Forget(FileId),
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
    /// Bytes to skip first: the position of the checkpoint a run resumes from.
    pub start_offset: u64,
    /// Positions of followed files in the checkpoint a run resumes from.
    pub tail_positions: Vec<TailPosition>,
    /// Read no faster than this many lines per second (demos and crash tests).
    pub max_lines_per_sec: Option<u64>,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        ReaderOptions {
            chunk_bytes: CHUNK_BYTES,
            start_offset: 0,
            tail_positions: Vec::new(),
            max_lines_per_sec: None,
        }
    }
}

/// Opens the input now (so a missing file is reported before anything runs), skips to the
/// start offset, and starts a thread that sends its chunks, then closes the channel at the
/// end of the input.
pub fn spawn_reader(
    input: Input,
    opts: ReaderOptions,
    tx: SyncSender<Result<Chunk, SourceError>>,
) -> Result<std::thread::JoinHandle<()>, SourceError> {
    let name = input.to_string();
    let err = |source| SourceError {
        input: name.clone(),
        source,
    };
    let reader: Box<dyn Read + Send> = match &input {
        Input::File(p) => {
            let mut f = File::open(p).map_err(err)?;
            f.seek(SeekFrom::Start(opts.start_offset)).map_err(err)?;
            Box::new(f)
        }
        Input::Stdin => Box::new(io::stdin()),
        Input::Tail { pattern, poll } => {
            let follower = Follower::new(pattern, *poll, opts.chunk_bytes, opts.tail_positions);
            return std::thread::Builder::new()
                .name("tail".into())
                .spawn(move || follower.run(|chunk| tx.send(chunk).is_ok()))
                .map_err(err);
        }
        Input::Generate(config) => {
            let config = config.clone();
            return std::thread::Builder::new()
                .name("generate".into())
                .spawn(move || generate_chunks(&config, &opts, |c| tx.send(Ok(c)).is_ok()))
                .map_err(err);
        }
    };
    let skip = if input == Input::Stdin {
        opts.start_offset
    } else {
        0
    };
    let handle = std::thread::Builder::new()
        .name("source".into())
        .spawn(move || {
            let mut reader = reader;
            if skip > 0 {
                // Standard input cannot seek: read past what the checkpoint already covers.
                if let Err(source) = io::copy(&mut (&mut reader).take(skip), &mut io::sink()) {
                    let _ = tx.send(Err(SourceError {
                        input: name,
                        source,
                    }));
                    return;
                }
            }
            let started = Instant::now();
            let mut lines = 0u64;
            let send = |chunk: Result<Vec<u8>, SourceError>| {
                if let (Some(rate), Ok(c)) = (opts.max_lines_per_sec, &chunk) {
                    lines += c.iter().filter(|&&b| b == b'\n').count() as u64;
                    let due = Duration::from_secs_f64(lines as f64 / rate.max(1) as f64);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                tx.send(chunk.map(Chunk::Bytes)).is_ok()
            };
            read_chunks(reader, opts.chunk_bytes, HANDOVER, send, &name)
        })
        .map_err(|source| SourceError {
            input: input.to_string(),
            source,
        })?;
    Ok(handle)
}

/// Sends the generator's lines in chunks, from `opts.start_offset` (the generator is
/// deterministic: the lines before it are produced again and dropped). With a `rate`, a chunk
/// is sent at least every 100 ms of wall time, holding the event time due by then.
fn generate_chunks(
    config: &GenerateConfig,
    opts: &ReaderOptions,
    mut send: impl FnMut(Chunk) -> bool,
) {
    let mut generator = Generator::new(config);
    let mut buf = Vec::with_capacity(opts.chunk_bytes + 4096);
    let mut skipped = 0u64;
    while skipped < opts.start_offset && generator.next_line(&mut buf) {
        skipped += buf.len() as u64;
        buf.clear();
    }
    let pace = Pace::new(config.rate.map(|r| r.0));
    loop {
        generator.fill_due(&mut buf, opts.chunk_bytes, &pace);
        let done = generator.is_done();
        if !buf.is_empty() {
            let next = Vec::with_capacity(if pace.is_paced() {
                1 << 16
            } else {
                opts.chunk_bytes + 4096
            });
            if !send(Chunk::Bytes(std::mem::replace(&mut buf, next))) {
                return;
            }
        }
        if done {
            return;
        }
        pace.wait_for(generator.elapsed_event_us());
    }
}

/// Reads `reader` to its end in line-aligned chunks; stops early when `send` returns false
/// (the engine stopped).
fn read_chunks(
    mut reader: impl Read,
    chunk_bytes: usize,
    handover: Duration,
    mut send: impl FnMut(Result<Vec<u8>, SourceError>) -> bool,
    name: &str,
) {
    let mut buf: Vec<u8> = Vec::with_capacity(chunk_bytes + 4096);
    // Bytes to gather before looking for a line end; grows while a line is longer than that.
    let mut target = chunk_bytes.max(1);
    loop {
        // A short read means the input had no more for now (a pipe; a file gives full reads
        // until its end). Once a chunk has waited `handover` for more, the complete lines it
        // has are handed over instead of waiting for a full chunk, so that a live pipe
        // (`gen --rate 1m | stream-ingest run --input -`) is processed as it arrives, while a
        // fast one (`cat big.log |`) still makes full chunks.
        let started = Instant::now();
        let mut short = false;
        while buf.len() < target
            && !(short && started.elapsed() >= handover && buf.contains(&b'\n'))
        {
            let old = buf.len();
            buf.resize(target.max(old + 4096), 0);
            let asked = buf.len() - old;
            match reader.read(&mut buf[old..]) {
                Ok(0) => {
                    buf.truncate(old);
                    if !buf.is_empty() {
                        send(Ok(buf));
                    }
                    return;
                }
                Ok(n) => {
                    buf.truncate(old + n);
                    short = n < asked;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => buf.truncate(old),
                Err(source) => {
                    send(Err(SourceError {
                        input: name.to_string(),
                        source,
                    }));
                    return;
                }
            }
        }
        match buf.iter().rposition(|&b| b == b'\n') {
            Some(pos) => {
                let mut next = Vec::with_capacity(chunk_bytes + 4096);
                next.extend_from_slice(&buf[pos + 1..]);
                buf.truncate(pos + 1);
                if !send(Ok(std::mem::replace(&mut buf, next))) {
                    return;
                }
                target = chunk_bytes.max(1);
            }
            None if short => {}
            None => target = buf.len() + chunk_bytes.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(input: &[u8], size: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        read_chunks(
            input,
            size,
            HANDOVER,
            |c| {
                out.push(c.unwrap());
                true
            },
            "test",
        );
        out
    }

    #[test]
    fn chunks_end_at_line_ends_and_lose_nothing() {
        let input = b"one\ntwo\nthree\nfour\nfive-is-longer-than-a-chunk\nsix";
        for size in [1, 2, 5, 8, 64] {
            let cs = chunks(input, size);
            assert_eq!(cs.concat(), input.to_vec(), "chunk size {size}");
            for c in &cs[..cs.len() - 1] {
                assert_eq!(
                    c.last(),
                    Some(&b'\n'),
                    "chunk size {size}: {:?}",
                    String::from_utf8_lossy(c)
                );
            }
        }
        assert!(chunks(b"", 8).is_empty());
    }

    /// Gives its pieces one read at a time, as a pipe fed by a slow writer does.
    struct Trickle(Vec<&'static [u8]>);

    impl Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Ok(0);
            }
            let piece = self.0.remove(0);
            out[..piece.len()].copy_from_slice(piece);
            Ok(piece.len())
        }
    }

    #[test]
    fn a_slow_pipe_is_handed_over_as_its_lines_arrive() {
        let mut out = Vec::new();
        read_chunks(
            Trickle(vec![b"one\ntw", b"o\n", b"three", b"\nfour"]),
            1 << 20,
            Duration::ZERO,
            |c| {
                out.push(c.unwrap());
                true
            },
            "test",
        );
        let expected: Vec<&[u8]> = vec![b"one\n", b"two\n", b"three\n", b"four"];
        assert_eq!(out, expected);
        // A pipe that keeps up still makes full chunks.
        let mut out = Vec::new();
        read_chunks(
            Trickle(vec![b"one\ntw", b"o\n", b"three", b"\nfour"]),
            1 << 20,
            HANDOVER,
            |c| {
                out.push(c.unwrap());
                true
            },
            "test",
        );
        assert_eq!(out, vec![b"one\ntwo\nthree\nfour".to_vec()]);
    }
}
