//! The `tail` source: follows files as they grow, like `tail -F`.
//!
//! A file is known by its identity (device, inode), not its name, so that a rotation —
//! `access.log` renamed to `access.log.1`, then a new `access.log` — is two files: the old
//! one is read to its end, then dropped, and the new one is read from its start. A file
//! that shrinks below the position read (truncation, `copytruncate`) is read again from its
//! start. Every chunk carries the position after it ([`TailPosition`]); the engine keeps the
//! positions of the lines it processed and the checkpoint stores them, so a restart reopens
//! each file by identity (looking through the directory for a file renamed while the stage
//! was down) and continues after the last line it counted.
//!
//! Only complete lines are sent: a line still being written waits for its `\n`, except in a
//! file that was rotated away, whose last line is final.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Advance, Chunk, SourceError};

/// A file's identity: it survives renames.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    fn of(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// How far a followed file has been read: the end of its last complete line sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TailPosition {
    pub id: FileId,
    /// The name it had when last read (for logs and to find it again).
    pub path: String,
    pub offset: u64,
}

struct Followed {
    path: PathBuf,
    file: File,
    /// Bytes read so far (sent lines plus `partial`).
    read: u64,
    /// The start of a line whose end was not read yet.
    partial: Vec<u8>,
    /// Polls in a row that found this file outside the pattern and with nothing new.
    gone_polls: u32,
    modified: std::time::SystemTime,
}

impl Followed {
    fn sent(&self) -> u64 {
        self.read - self.partial.len() as u64
    }

    fn position(&self, id: FileId) -> TailPosition {
        TailPosition {
            id,
            path: self.path.display().to_string(),
            offset: self.sent(),
        }
    }

    /// Reads up to `chunk_bytes` more after `partial` (from the start again when the file
    /// was truncated below what was read); whether anything was read.
    ///
    /// A regular file is read only as far as its size says it goes: the buffer is zeroed
    /// before a `read` (safe Rust reads into initialized bytes only), so a full chunk's
    /// room would cost a quiet file a 4 MiB memset at every poll, and keep those 4 MiB
    /// resident for as long as the file is followed. A quiet file costs an `fstat`.
    fn read_more(&mut self, chunk_bytes: usize) -> io::Result<bool> {
        let meta = self.file.metadata()?;
        if meta.len() < self.read {
            tracing::warn!(path = %self.path.display(), size = meta.len(), position = self.read, "file truncated: reading it from its start");
            self.file.seek(SeekFrom::Start(0))?;
            self.read = 0;
            self.partial.clear();
        }
        if let Ok(m) = meta.modified() {
            self.modified = m;
        }
        let want = if meta.is_file() {
            let new = usize::try_from(meta.len() - self.read).unwrap_or(usize::MAX);
            if new == 0 {
                return Ok(false);
            }
            chunk_bytes.min(new)
        } else {
            chunk_bytes
        };
        let mut buf = std::mem::take(&mut self.partial);
        let start = buf.len();
        buf.resize(start + want, 0);
        let n = loop {
            match self.file.read(&mut buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        buf.truncate(start + n);
        self.read += n as u64;
        self.partial = buf;
        Ok(n > 0)
    }

    /// The complete lines read (a chunk that moves the file's position past them); keeps
    /// the start of an unfinished one. `None` when no line is complete yet.
    fn complete_lines(&mut self, id: FileId) -> Option<Chunk> {
        let pos = self.partial.iter().rposition(|&b| b == b'\n')?;
        let rest = self.partial.split_off(pos + 1);
        let data = std::mem::replace(&mut self.partial, rest);
        Some(Chunk {
            data,
            advance: Advance::File(self.position(id)),
            records: None,
        })
    }
}

/// Follows the files that `pattern` (a path or a glob) names.
pub struct Follower {
    pattern: String,
    poll: Duration,
    chunk_bytes: usize,
    files: BTreeMap<FileId, Followed>,
    /// Positions from the checkpoint of files not opened yet.
    restored: BTreeMap<FileId, TailPosition>,
    /// [`Follower::read_once`] only: the files to read and where to stop in each.
    until: Option<BTreeMap<FileId, u64>>,
}

/// Polls a rotated file is still read after it left the pattern with nothing new.
const GONE_POLLS: u32 = 2;

impl Follower {
    pub fn new(
        pattern: &Path,
        poll: Duration,
        chunk_bytes: usize,
        restored: Vec<TailPosition>,
    ) -> Self {
        Follower {
            pattern: pattern.display().to_string(),
            poll,
            chunk_bytes: chunk_bytes.max(1),
            files: BTreeMap::new(),
            restored: restored.into_iter().map(|p| (p.id, p)).collect(),
            until: None,
        }
    }

    /// Reads only the files of `positions`, each up to its offset (a rebuild up to a
    /// checkpoint's position).
    pub fn until(mut self, positions: Vec<TailPosition>) -> Self {
        self.until = Some(positions.into_iter().map(|p| (p.id, p.offset)).collect());
        self
    }

    fn is_glob(&self) -> bool {
        self.pattern.contains(['*', '?', '['])
    }

    /// The files the pattern names now, by identity.
    fn matches(&self) -> BTreeMap<FileId, (PathBuf, std::fs::Metadata)> {
        let mut out = BTreeMap::new();
        let paths: Vec<PathBuf> = if self.is_glob() {
            match glob::glob(&self.pattern) {
                Ok(paths) => paths.filter_map(Result::ok).collect(),
                Err(_) => Vec::new(),
            }
        } else {
            vec![PathBuf::from(&self.pattern)]
        };
        for p in paths {
            if let Ok(meta) = std::fs::metadata(&p)
                && meta.is_file()
            {
                out.insert(FileId::of(&meta), (p, meta));
            }
        }
        out
    }

    /// Opens a file at the position the checkpoint has for it (or its start).
    fn open(&mut self, id: FileId, path: PathBuf, meta: &std::fs::Metadata) -> io::Result<()> {
        let mut file = File::open(&path)?;
        // The name may now be another file: trust only what the open file descriptor says.
        let opened = file.metadata()?;
        if FileId::of(&opened) != id {
            return Ok(());
        }
        let mut offset = self.restored.remove(&id).map_or(0, |p| p.offset);
        if opened.len() < offset {
            tracing::warn!(path = %path.display(), offset, size = opened.len(), "file shorter than the checkpoint's position (truncated): reading it from its start");
            offset = 0;
        }
        file.seek(SeekFrom::Start(offset))?;
        tracing::info!(path = %path.display(), offset, "following");
        self.files.insert(
            id,
            Followed {
                path,
                file,
                read: offset,
                partial: Vec::new(),
                gone_polls: 0,
                modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
            },
        );
        Ok(())
    }

    /// Files of the checkpoint that the pattern no longer names: renamed while the stage was
    /// down. Looks for them by identity in the pattern's directory.
    fn reopen_renamed(&mut self) {
        if self.restored.is_empty() {
            return;
        }
        let dir = Path::new(&self.pattern)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if let Ok(meta) = e.metadata()
                    && meta.is_file()
                    && self.restored.contains_key(&FileId::of(&meta))
                    && let Err(err) = self.open(FileId::of(&meta), e.path(), &meta)
                {
                    tracing::warn!(path = %e.path().display(), error = %err, "cannot reopen a rotated file");
                }
            }
        }
        for (_, p) in std::mem::take(&mut self.restored) {
            tracing::warn!(path = %p.path, offset = p.offset, "a followed file is gone: what it held after the checkpoint is lost");
        }
    }

    /// Follows the files until `send` returns false (the engine stopped).
    pub fn run(mut self, mut send: impl FnMut(Result<Chunk, SourceError>) -> bool) {
        let mut first = true;
        loop {
            let matches = self.matches();
            for (id, (path, meta)) in &matches {
                if !self.files.contains_key(id)
                    && let Err(err) = self.open(*id, path.clone(), meta)
                {
                    tracing::warn!(path = %path.display(), error = %err, "cannot open");
                }
            }
            if first {
                self.reopen_renamed();
                first = false;
            }
            // Rotated-away files first, then oldest first: a rotated file is read to its end
            // before its successor. (Modification times alone do not order them: a rotation
            // and the first write to the new file often share one timestamp tick.)
            let mut order: Vec<(bool, std::time::SystemTime, FileId)> = self
                .files
                .iter()
                .map(|(id, f)| (matches.contains_key(id), f.modified, *id))
                .collect();
            order.sort();
            let mut progressed = false;
            for (in_pattern, _, id) in order {
                // A rotated file is drained before the next one; a current file gives one
                // chunk per poll.
                loop {
                    match self.read_file(id, in_pattern, &mut send) {
                        Ok(Some(more)) => {
                            progressed |= more;
                            if !more || in_pattern || !self.files.contains_key(&id) {
                                break;
                            }
                        }
                        Ok(None) => return,
                        Err(source) => {
                            // Stop: a restart resumes from the checkpoint's position.
                            let input = self.files[&id].path.display().to_string();
                            send(Err(SourceError { input, source }));
                            return;
                        }
                    }
                }
            }
            if !progressed {
                std::thread::sleep(self.poll);
            }
        }
    }

    /// Reads what is new in one file; `None` when the engine stopped, else whether
    /// anything was read.
    fn read_file(
        &mut self,
        id: FileId,
        in_pattern: bool,
        send: &mut impl FnMut(Result<Chunk, SourceError>) -> bool,
    ) -> io::Result<Option<bool>> {
        let chunk_bytes = self.chunk_bytes;
        let f = self.files.get_mut(&id).expect("followed");
        if f.read_more(chunk_bytes)? {
            f.gone_polls = 0;
            if let Some(chunk) = f.complete_lines(id)
                && !send(Ok(chunk))
            {
                return Ok(None);
            }
            return Ok(Some(true));
        }
        // Nothing new. A file that left the pattern (rotated away, deleted) is done once it
        // stayed quiet for a few polls: its unfinished last line is final.
        if in_pattern {
            f.gone_polls = 0;
            return Ok(Some(false));
        }
        f.gone_polls += 1;
        if f.gone_polls < GONE_POLLS {
            return Ok(Some(false));
        }
        Ok(self.finish_rotated(id, send).then_some(true))
    }

    /// Drops a file rotated away and read to its end: sends its unfinished last line (now
    /// final), then forgets its position. False when the engine stopped.
    fn finish_rotated(
        &mut self,
        id: FileId,
        send: &mut impl FnMut(Result<Chunk, SourceError>) -> bool,
    ) -> bool {
        let mut f = self.files.remove(&id).expect("followed");
        tracing::info!(path = %f.path.display(), "file rotated away and read to its end");
        if !f.partial.is_empty() {
            let data = std::mem::take(&mut f.partial);
            let position = f.position(id);
            let advance = Advance::File(position);
            let records = None;
            if !send(Ok(Chunk {
                data,
                advance,
                records,
            })) {
                return false;
            }
        }
        let forget = Chunk {
            data: Vec::new(),
            advance: Advance::Forget(id),
            records: None,
        };
        send(Ok(forget))
    }
}

impl Follower {
    /// One pass, for a `file` source that names a glob or a directory (cron runs): reads
    /// every matching file from its checkpointed position to its end, oldest first (by
    /// modification time, then name), then returns. A file's unfinished last line is final
    /// unless the file is the newest, whose writer may still be writing it: that line waits
    /// for the next run. Positions of files the pattern no longer names (deleted, moved
    /// away) are forgotten.
    pub fn read_once(mut self, mut send: impl FnMut(Result<Chunk, SourceError>) -> bool) {
        let mut matches = self.matches();
        if let Some(until) = &self.until {
            matches.retain(|id, _| until.contains_key(id));
        }
        if !self.forget_gone(&matches, &mut send) {
            return;
        }
        let mut order: Vec<(std::time::SystemTime, PathBuf, FileId, std::fs::Metadata)> = matches
            .into_iter()
            .map(|(id, (path, meta))| {
                let modified = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                (modified, path, id, meta)
            })
            .collect();
        order.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let newest = order.last().map(|o| o.2);
        for (_, path, id, meta) in order {
            // A file read to its end by an earlier run is not opened again, and one file is
            // open at a time (a directory may hold years of daily files).
            if self
                .restored
                .get(&id)
                .is_some_and(|p| p.offset == meta.len())
            {
                continue;
            }
            let read = self
                .open(id, path.clone(), &meta)
                .and_then(|()| self.drain(id, Some(id) != newest, &mut send));
            self.files.remove(&id);
            if let Err(source) = read {
                let input = path.display().to_string();
                send(Err(SourceError { input, source }));
                return;
            }
        }
    }

    /// Forgets the positions of the files the pattern no longer names (deleted or moved
    /// away since an earlier run); false when the engine stopped.
    fn forget_gone(
        &mut self,
        matches: &BTreeMap<FileId, (PathBuf, std::fs::Metadata)>,
        send: &mut impl FnMut(Result<Chunk, SourceError>) -> bool,
    ) -> bool {
        let gone: Vec<FileId> = (self.restored.keys())
            .filter(|id| !matches.contains_key(id))
            .copied()
            .collect();
        for id in gone {
            let p = self.restored.remove(&id).expect("listed above");
            tracing::info!(path = %p.path, "a file read by an earlier run is gone");
            let forget = Chunk {
                data: Vec::new(),
                advance: Advance::Forget(id),
                records: None,
            };
            if !send(Ok(forget)) {
                return false;
            }
        }
        true
    }

    /// Reads one file to its end; its unfinished last line too when `last_line_final`.
    /// Stops early (`Ok`) when the engine stopped.
    fn drain(
        &mut self,
        id: FileId,
        last_line_final: bool,
        send: &mut impl FnMut(Result<Chunk, SourceError>) -> bool,
    ) -> io::Result<()> {
        let limit = self.until.as_ref().and_then(|u| u.get(&id).copied());
        let chunk_bytes = self.chunk_bytes;
        // Not opened: the name is another file now (replaced since it was listed).
        let Some(f) = self.files.get_mut(&id) else {
            return Ok(());
        };
        loop {
            let want = match limit {
                Some(l) => chunk_bytes.min(l.saturating_sub(f.read) as usize),
                None => chunk_bytes,
            };
            if want == 0 || !f.read_more(want)? {
                break;
            }
            if let Some(chunk) = f.complete_lines(id)
                && !send(Ok(chunk))
            {
                return Ok(());
            }
        }
        if last_line_final && !f.partial.is_empty() {
            let data = std::mem::take(&mut f.partial);
            let advance = Advance::File(f.position(id));
            send(Ok(Chunk {
                data,
                advance,
                records: None,
            }));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::mpsc;

    /// Runs a follower on its own thread; returns the chunks it sends.
    fn follow(pattern: &Path, restored: Vec<TailPosition>) -> mpsc::Receiver<Chunk> {
        let (tx, rx) = mpsc::channel();
        let f = Follower::new(pattern, Duration::from_millis(10), 7, restored);
        std::thread::spawn(move || f.run(|c| tx.send(c.unwrap()).is_ok()));
        rx
    }

    /// Collects lines until `want` complete lines arrived; returns them and the last positions.
    fn lines(rx: &mpsc::Receiver<Chunk>, want: usize) -> (Vec<String>, Vec<TailPosition>) {
        let mut text = String::new();
        let mut positions = BTreeMap::new();
        while text.lines().count() < want || !text.ends_with('\n') {
            let chunk = rx.recv_timeout(Duration::from_secs(5)).expect("lines");
            match chunk.advance {
                Advance::File(position) => {
                    text.push_str(std::str::from_utf8(&chunk.data).unwrap());
                    if !text.ends_with('\n') {
                        text.push('\n');
                    }
                    positions.insert(position.id, position);
                }
                Advance::Forget(id) => {
                    positions.remove(&id);
                }
                Advance::Bytes(_) | Advance::Offset(_) => unreachable!(),
            }
        }
        (
            text.lines().map(str::to_string).collect(),
            positions.into_values().collect(),
        )
    }

    fn append(path: &Path, text: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(text.as_bytes()).unwrap();
    }

    #[test]
    fn a_quiet_file_keeps_no_chunk_sized_buffer() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        append(&log, "one\ntw");
        let file = File::open(&log).unwrap();
        let mut f = Followed {
            path: log.clone(),
            file,
            read: 0,
            partial: Vec::new(),
            gone_polls: 0,
            modified: std::time::UNIX_EPOCH,
        };
        let chunk = 1 << 20;
        assert!(f.read_more(chunk).unwrap());
        assert_eq!(f.partial, b"one\ntw");
        // Quiet polls: nothing read, no room made for a chunk.
        for _ in 0..3 {
            assert!(!f.read_more(chunk).unwrap());
        }
        assert!(f.partial.capacity() < 4096, "{}", f.partial.capacity());
        // Growth is read, and only as far as it goes.
        append(&log, "o\n");
        assert!(f.read_more(chunk).unwrap());
        assert_eq!(f.partial, b"one\ntwo\n");
        assert!(f.partial.capacity() < 4096, "{}", f.partial.capacity());
        assert_eq!(f.read, 8);
    }

    #[test]
    fn follows_growth_rotation_and_truncation() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("access.log");
        append(&log, "one\ntwo\nthr");
        let rx = follow(&log, vec![]);
        assert_eq!(lines(&rx, 2).0, ["one", "two"]);
        append(&log, "ee\n");
        assert_eq!(lines(&rx, 1).0, ["three"]);
        // Rotation: rename, a last write to the old file, then a new file.
        std::fs::rename(&log, dir.path().join("access.log.1")).unwrap();
        append(&dir.path().join("access.log.1"), "four\nfive");
        append(&log, "six\n");
        let (mut got, _) = lines(&rx, 3);
        got.sort();
        assert_eq!(got, ["five", "four", "six"]);
        // Truncation: the file is emptied, then written again.
        std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&log)
            .unwrap();
        std::thread::sleep(Duration::from_millis(50));
        append(&log, "7\n");
        assert_eq!(lines(&rx, 1).0, ["7"]);
    }

    #[test]
    fn resumes_by_identity_after_a_rename_while_down() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("app.log");
        append(&log, "a\nb\n");
        let rx = follow(&log, vec![]);
        let (got, positions) = lines(&rx, 2);
        assert_eq!(got, ["a", "b"]);
        drop(rx);
        // While down: more lines (many chunks' worth), then a rotation, then a new file
        // written in the same timestamp tick: the rotated file still comes first, whole.
        let more: Vec<String> = (0..200).map(|i| format!("c{i}")).collect();
        append(&log, &format!("{}\n", more.join("\n")));
        std::fs::rename(&log, dir.path().join("app.log.old")).unwrap();
        append(&log, "d\n");
        let old = std::fs::metadata(dir.path().join("app.log.old")).unwrap();
        std::fs::File::options()
            .write(true)
            .open(&log)
            .unwrap()
            .set_modified(old.modified().unwrap())
            .unwrap();
        let rx = follow(&log, positions);
        let (got, _) = lines(&rx, 201);
        let mut want = more;
        want.push("d".into());
        assert_eq!(got, want);
    }

    #[test]
    fn a_glob_follows_every_matching_file() {
        let dir = tempfile::tempdir().unwrap();
        append(&dir.path().join("a.log"), "1\n");
        append(&dir.path().join("b.log"), "2\n");
        append(&dir.path().join("c.txt"), "no\n");
        let rx = follow(&dir.path().join("*.log"), vec![]);
        let (mut got, positions) = lines(&rx, 2);
        got.sort();
        assert_eq!(got, ["1", "2"]);
        assert_eq!(positions.len(), 2);
        append(&dir.path().join("d.log"), "3\n");
        assert_eq!(lines(&rx, 1).0, ["3"]);
    }

    /// One pass of a cron run: the text and final positions of what `read_once` sends.
    fn read_once(pattern: &Path, restored: Vec<TailPosition>) -> (String, Vec<TailPosition>) {
        let mut text = String::new();
        let mut positions: BTreeMap<FileId, TailPosition> =
            restored.iter().map(|p| (p.id, p.clone())).collect();
        Follower::new(pattern, Duration::ZERO, 4, restored).read_once(|c| {
            let c = c.unwrap();
            text.push_str(std::str::from_utf8(&c.data).unwrap());
            match c.advance {
                Advance::File(p) => {
                    positions.insert(p.id, p);
                }
                Advance::Forget(id) => {
                    positions.remove(&id);
                }
                _ => unreachable!("files move by file positions"),
            }
            true
        });
        (text, positions.into_values().collect())
    }

    #[test]
    fn a_pass_reads_what_is_new_in_every_file_oldest_first_then_stops() {
        let dir = tempfile::tempdir().unwrap();
        let day = |n: u32| dir.path().join(format!("access.log-{n}"));
        append(&day(1), "a1\na2\n");
        std::thread::sleep(Duration::from_millis(20));
        append(&day(2), "b1\nb2-unfinished");
        let (text, positions) = read_once(&dir.path().join("access.log-*"), vec![]);
        // The newest file's unfinished line waits for the next run.
        assert_eq!(text, "a1\na2\nb1\n");
        // The next day: more in day 2, a new day 3, day 1 deleted.
        append(&day(2), "\nb3\n");
        std::thread::sleep(Duration::from_millis(20));
        append(&day(3), "c1\n");
        std::fs::remove_file(day(1)).unwrap();
        let (text, positions) = read_once(&dir.path().join("access.log-*"), positions);
        assert_eq!(text, "b2-unfinished\nb3\nc1\n");
        assert_eq!(positions.len(), 2, "{positions:?}");
        // Nothing new: nothing read.
        let (text, after) = read_once(&dir.path().join("access.log-*"), positions.clone());
        assert_eq!((text.as_str(), after), ("", positions));
    }
}
