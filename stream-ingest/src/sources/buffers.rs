//! Chunk buffers, used again. A chunk is a few MiB that a source fills and a parse thread
//! drops once parsed. Allocated fresh for every chunk, each buffer had to be zeroed before
//! `read` could fill it (safe Rust reads only into initialized bytes): 2 % of the
//! instructions of a run of the insights pipeline. Parse threads give their buffers back
//! here instead, and the file and stdin sources (`file::read_chunks`) take them with their
//! bytes still initialized (stale lines, never read as data: a source only hands over what
//! it wrote), so a `read` goes straight into them. (Reading into spare capacity with
//! `read_to_end` instead was measured slower: it grows its reads from 8 KiB, ten times the
//! system calls.) The `tail` source reads with a loop of its own (`Followed::read_more`),
//! sized to what its file's size says is new, so it zeroes no more than it reads.
//!
//! At most [`MAX_SPARE`] buffers wait here; more are dropped, so a run keeps no more memory
//! than a few chunks beyond the ones in flight. Kafka's per-partition record buffers do not
//! take from here: each grows to its own partition's traffic, and a quiet partition would
//! otherwise hold a busy one's few MiB.

use std::sync::Mutex;

/// Buffers kept for the next chunks: enough for a source to take one while the parse
/// threads give theirs back.
pub const MAX_SPARE: usize = 4;

static SPARE: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A buffer with room for at least `capacity` bytes. Its length is the bytes already
/// initialized (possibly more than zero: their content is left from an earlier chunk).
pub fn take(capacity: usize) -> Vec<u8> {
    let spare = SPARE.lock().ok().and_then(|mut s| s.pop());
    match spare {
        Some(mut buf) => {
            buf.reserve(capacity.saturating_sub(buf.len()));
            buf
        }
        None => Vec::with_capacity(capacity),
    }
}

/// Gives a chunk's buffer back once its lines are parsed.
pub fn give(buf: Vec<u8>) {
    if buf.capacity() == 0 {
        return;
    }
    if let Ok(mut spare) = SPARE.lock()
        && spare.len() < MAX_SPARE
    {
        spare.push(buf);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_buffer_comes_back_with_its_allocation() {
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(b"stale line\n");
        let ptr = buf.as_ptr();
        give(buf);
        // Other tests of this process may take and give buffers at the same time: look for
        // this one among a few.
        let taken: Vec<Vec<u8>> = (0..MAX_SPARE + 1).map(|_| take(1024)).collect();
        assert!(
            taken
                .iter()
                .any(|b| b.as_ptr() == ptr && b.capacity() >= 1 << 16)
        );
        assert!(taken.iter().all(|b| b.capacity() >= 1024));
        for b in taken {
            give(b);
        }
        assert!(SPARE.lock().unwrap().len() <= MAX_SPARE);
    }
}
