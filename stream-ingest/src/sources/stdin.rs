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
    let input = file::Input::Stream {
        handover: file::HANDOVER,
    };
    file::spawn_chunked(Box::new(io::stdin()), input, skip, name, opts, tx)
}
