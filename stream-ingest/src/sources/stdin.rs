//! Standard input, read to its end. It cannot seek: a restart reads past the bytes its
//! checkpoint covers, so it must be fed the same stream again.

use std::io;

use super::{ChunkSender, ReaderOptions, SourceError, file};

pub(super) fn spawn(
    name: String,
    opts: ReaderOptions,
    tx: ChunkSender,
) -> Result<std::thread::JoinHandle<()>, SourceError> {
    let skip = opts.start.bytes();
    file::spawn_chunked(Box::new(io::stdin()), skip, name, opts, tx)
}
