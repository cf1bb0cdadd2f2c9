//! A file, read once from the checkpoint's byte offset to its end, and the line-aligned
//! chunking that standard input shares.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Chunk, ChunkSender, ReaderOptions, SourceError, buffers};

/// How long a chunk of a slow input (a pipe) waits to fill before its lines are handed over.
pub(super) const HANDOVER: Duration = Duration::from_millis(100);

/// Opens the file now (a missing file is reported before anything runs), seeks to the
/// start position and reads the rest on a thread.
pub(super) fn spawn(
    path: &Path,
    name: String,
    opts: ReaderOptions,
    tx: ChunkSender,
) -> Result<std::thread::JoinHandle<()>, SourceError> {
    let err = |source| SourceError {
        input: name.clone(),
        source,
    };
    let mut f = File::open(path).map_err(err)?;
    let (len, start) = (f.metadata().map_err(err)?.len(), opts.start.bytes());
    if len < start {
        // Seeking past the end would read nothing now and the middle of the new file later.
        return Err(err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "it has {len} bytes, fewer than the {start} the last checkpoint read: it was truncated or replaced since. Rebuild the tables from it with --from-scratch, or follow a rotating log with `source: {{ kind: tail }}`"
            ),
        )));
    }
    f.seek(SeekFrom::Start(start)).map_err(err)?;
    match &opts.until {
        Some(until) => {
            let rest = until.bytes().saturating_sub(start);
            spawn_chunked(Box::new(f.take(rest)), 0, name, opts, tx)
        }
        None => spawn_chunked(Box::new(f), 0, name, opts, tx),
    }
}

/// Starts a thread that skips `skip` bytes of `reader` (an input that cannot seek), then
/// sends the rest in chunks, paced to `opts.max_lines_per_sec`.
pub(super) fn spawn_chunked(
    mut reader: Box<dyn Read + Send>,
    skip: u64,
    name: String,
    opts: ReaderOptions,
    tx: ChunkSender,
) -> Result<std::thread::JoinHandle<()>, SourceError> {
    let thread_name = name.clone();
    std::thread::Builder::new()
        .name("source".into())
        .spawn(move || {
            if skip > 0
                && let Err(source) = io::copy(&mut (&mut reader).take(skip), &mut io::sink())
            {
                let _ = tx.send(Err(SourceError {
                    input: name,
                    source,
                }));
                return;
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
                tx.send(chunk.map(Chunk::bytes)).is_ok()
            };
            read_chunks(reader, opts.chunk_bytes, HANDOVER, send, &name)
        })
        .map_err(|source| SourceError {
            input: thread_name,
            source,
        })
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
    // `buf[..filled]` is the chunk; the rest of `buf` is initialized bytes left from an
    // earlier chunk (see `buffers`), read into without zeroing.
    let mut buf = buffers::take(chunk_bytes + 4096);
    let mut filled = 0;
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
        while filled < target
            && !(short && started.elapsed() >= handover && buf[..filled].contains(&b'\n'))
        {
            let want = target.max(filled + 4096);
            if buf.len() < want {
                buf.resize(want, 0);
            }
            match reader.read(&mut buf[filled..want]) {
                Ok(0) => {
                    buf.truncate(filled);
                    if !buf.is_empty() {
                        send(Ok(buf));
                    }
                    return;
                }
                Ok(n) => {
                    short = n < want - filled;
                    filled += n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    send(Err(SourceError {
                        input: name.to_string(),
                        source,
                    }));
                    return;
                }
            }
        }
        match buf[..filled].iter().rposition(|&b| b == b'\n') {
            Some(pos) => {
                let rest = filled - (pos + 1);
                let mut next = buffers::take(chunk_bytes + 4096);
                if next.len() < rest {
                    next.resize(rest, 0);
                }
                next[..rest].copy_from_slice(&buf[pos + 1..filled]);
                buf.truncate(pos + 1);
                if !send(Ok(std::mem::replace(&mut buf, next))) {
                    return;
                }
                filled = rest;
                target = chunk_bytes.max(1);
            }
            None if short => {}
            None => target = filled + chunk_bytes.max(1),
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

    #[test]
    fn chunks_in_reused_buffers_hold_only_their_lines() {
        let input = b"one\ntwo\nthree\nfour\na line longer than the chunk\nlast";
        for size in [1, 2, 5, 8, 64, 4096] {
            // Buffers full of stale bytes, as the parse threads give them back.
            for _ in 0..buffers::MAX_SPARE {
                buffers::give(vec![b'#'; 1 << 13]);
            }
            let cs = chunks(input, size);
            assert_eq!(cs.concat(), input.to_vec(), "chunk size {size}");
            for c in cs {
                buffers::give(c);
            }
        }
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
