//! Counters of the lake's object-store traffic, so that operators can see requests, errors and
//! retries (local disk or S3) without reading logs.
//!
//! Both binaries reach the lake through one `Arc<dyn ObjectStore>` ([`crate::lake::Lake`]),
//! which [`Lake::open`](crate::lake::Lake::open) wraps in an [`InstrumentedStore`]: every call
//! of the [`ObjectStore`] trait counts one request of its [`OpKind`], and one error if it
//! failed. Two kinds of failure are answers, not errors, and count as requests only:
//!
//! - `NotFound` on get, head or delete: "is it there?" is what those calls are asked
//!   (the commit protocol, the state and the locks all ask it);
//! - a failed precondition (`AlreadyExists`, `Precondition`, `NotModified`): a conditional put,
//!   copy or get said no, which is how the locks and the commit protocol decide.
//!
//! Retries happen inside `object_store`'s HTTP client, out of the wrapper's sight; the client
//! logs each one with a `tracing` event whose target is `object_store::client::retry`, and
//! [`retry_layer`] (installed by [`crate::logging::init`] whatever `RUST_LOG` says) counts
//! those events.
//!
//! The counters are process-wide statics, like the object store and the tracing subscriber
//! they observe; [`snapshot`] reads them all. Metrics are not state: nothing here is
//! checkpointed, a restart starts from zero, as Prometheus counters expect.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result, UploadPart,
};
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

/// The target of the events `object_store`'s HTTP client logs when it retries a request
/// (`client/retry.rs`, one `info!` per retry).
pub const RETRY_TARGET: &str = "object_store::client::retry";

/// What an object-store call does, one per method of the [`ObjectStore`] trait (a head is a
/// get with `head: true`; a delete goes through `delete_stream`; the three listings are one
/// kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    /// `put_opts`: a whole object in one request.
    Put,
    /// `get_opts` (not head), `get_ranges`.
    Get,
    /// `get_opts` with `head: true`.
    Head,
    /// `delete_stream`, which `delete` calls with one path.
    Delete,
    /// `list`, `list_with_offset`, `list_with_delimiter`.
    List,
    /// `copy_opts`.
    Copy,
    /// `rename_opts` (a copy then a delete on S3, counted once).
    Rename,
    /// `put_multipart_opts`: one upload, whatever its number of parts.
    Multipart,
}

impl OpKind {
    /// Every kind, in the order of the label values.
    pub const ALL: [OpKind; 8] = [
        OpKind::Put,
        OpKind::Get,
        OpKind::Head,
        OpKind::Delete,
        OpKind::List,
        OpKind::Copy,
        OpKind::Rename,
        OpKind::Multipart,
    ];

    /// The label value, e.g. `put`.
    pub const fn as_str(self) -> &'static str {
        match self {
            OpKind::Put => "put",
            OpKind::Get => "get",
            OpKind::Head => "head",
            OpKind::Delete => "delete",
            OpKind::List => "list",
            OpKind::Copy => "copy",
            OpKind::Rename => "rename",
            OpKind::Multipart => "multipart",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The counts of one kind of call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpCounts {
    /// Calls made.
    pub requests: u64,
    /// Calls that failed (answers such as `NotFound` on a get are not failures).
    pub errors: u64,
}

/// All counters at one moment, see [`snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    ops: [OpCounts; OpKind::ALL.len()],
    /// Requests the HTTP client retried (each retry of each request counts one).
    pub retries: u64,
}

impl StoreCounts {
    /// The counts of one kind of call.
    pub fn op(&self, kind: OpKind) -> OpCounts {
        self.ops[kind.index()]
    }

    /// Every kind with its counts, in the order of [`OpKind::ALL`].
    pub fn iter(&self) -> impl Iterator<Item = (OpKind, OpCounts)> + '_ {
        OpKind::ALL.into_iter().map(|kind| (kind, self.op(kind)))
    }
}

/// The process's counters.
static COUNTERS: Counters = Counters::new();

/// Reads every counter of the process.
pub fn snapshot() -> StoreCounts {
    COUNTERS.snapshot()
}

/// One set of counters: the process's, or a test's own.
struct Counters {
    requests: [AtomicU64; OpKind::ALL.len()],
    errors: [AtomicU64; OpKind::ALL.len()],
    retries: AtomicU64,
}

impl Counters {
    const fn new() -> Counters {
        Counters {
            requests: [const { AtomicU64::new(0) }; OpKind::ALL.len()],
            errors: [const { AtomicU64::new(0) }; OpKind::ALL.len()],
            retries: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> StoreCounts {
        let mut counts = StoreCounts {
            retries: self.retries.load(Ordering::Relaxed),
            ..StoreCounts::default()
        };
        for kind in OpKind::ALL {
            counts.ops[kind.index()] = OpCounts {
                requests: self.requests[kind.index()].load(Ordering::Relaxed),
                errors: self.errors[kind.index()].load(Ordering::Relaxed),
            };
        }
        counts
    }

    fn request(&self, kind: OpKind) {
        self.requests[kind.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts `error` unless it is an answer, and only the first time `failed` is set (for
    /// calls that may fail several times: streams, the parts of an upload).
    fn error_once(&self, kind: OpKind, error: &object_store::Error, failed: &AtomicBool) {
        if is_error(kind, error) && !failed.swap(true, Ordering::Relaxed) {
            self.errors[kind.index()].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Runs a call that answers once, counting it.
    async fn count<T>(&self, kind: OpKind, call: BoxFuture<'_, Result<T>>) -> Result<T> {
        self.request(kind);
        let result = call.await;
        if let Err(e) = &result {
            self.error_once(kind, e, &AtomicBool::new(false));
        }
        result
    }

    /// Counts a stream as one request, and one error if any of its items is one.
    fn count_stream<T: 'static>(
        &'static self,
        kind: OpKind,
        stream: BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        self.request(kind);
        let failed = AtomicBool::new(false);
        stream
            .inspect(move |item| {
                if let Err(e) = item {
                    self.error_once(kind, e, &failed);
                }
            })
            .boxed()
    }
}

/// Whether a failed call counts as an error (see the module documentation).
fn is_error(kind: OpKind, error: &object_store::Error) -> bool {
    use object_store::Error;
    match error {
        Error::AlreadyExists { .. } | Error::Precondition { .. } | Error::NotModified { .. } => {
            false
        }
        // A rename of a file published already (a restart publishing its checkpoint's
        // files again) answers NotFound too: the commit protocol expects it.
        Error::NotFound { .. } => !matches!(
            kind,
            OpKind::Get | OpKind::Head | OpKind::Delete | OpKind::Rename
        ),
        _ => true,
    }
}

/// An object store that counts its calls into the process's counters, then does what `inner`
/// does. `Display` and `Debug` are those of `inner`, so messages do not change.
pub struct InstrumentedStore<T> {
    inner: T,
    counters: &'static Counters,
}

impl<T: ObjectStore> InstrumentedStore<T> {
    /// Wraps a store; its calls count into [`snapshot`].
    pub fn new(inner: T) -> InstrumentedStore<T> {
        InstrumentedStore {
            inner,
            counters: &COUNTERS,
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &T {
        &self.inner
    }
}

impl<T: fmt::Display> fmt::Display for InstrumentedStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner, f)
    }
}

impl<T: fmt::Debug> fmt::Debug for InstrumentedStore<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

// The trait is declared with `#[async_trait]`; its methods are written here in the form that
// macro expands to (boxed futures, one lifetime per reference), which keeps this crate free of
// the macro.
impl<T: ObjectStore> ObjectStore for InstrumentedStore<T> {
    fn put_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> BoxFuture<'async_trait, Result<PutResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.put_opts(location, payload, opts);
        Box::pin(self.counters.count(OpKind::Put, call))
    }

    fn put_multipart_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        opts: PutMultipartOptions,
    ) -> BoxFuture<'async_trait, Result<Box<dyn MultipartUpload>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.put_multipart_opts(location, opts);
        Box::pin(async move {
            let upload = self.counters.count(OpKind::Multipart, call).await?;
            Ok(Box::new(InstrumentedUpload {
                inner: upload,
                counters: self.counters,
                failed: Arc::new(AtomicBool::new(false)),
            }) as Box<dyn MultipartUpload>)
        })
    }

    fn get_opts<'life0, 'life1, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        options: GetOptions,
    ) -> BoxFuture<'async_trait, Result<GetResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let kind = if options.head {
            OpKind::Head
        } else {
            OpKind::Get
        };
        let call = self.inner.get_opts(location, options);
        Box::pin(self.counters.count(kind, call))
    }

    fn get_ranges<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        location: &'life1 Path,
        ranges: &'life2 [Range<u64>],
    ) -> BoxFuture<'async_trait, Result<Vec<Bytes>>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.get_ranges(location, ranges);
        Box::pin(self.counters.count(OpKind::Get, call))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let stream = self.inner.delete_stream(locations);
        self.counters.count_stream(OpKind::Delete, stream)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let stream = self.inner.list(prefix);
        self.counters.count_stream(OpKind::List, stream)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let stream = self.inner.list_with_offset(prefix, offset);
        self.counters.count_stream(OpKind::List, stream)
    }

    fn list_with_delimiter<'life0, 'life1, 'async_trait>(
        &'life0 self,
        prefix: Option<&'life1 Path>,
    ) -> BoxFuture<'async_trait, Result<ListResult>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.list_with_delimiter(prefix);
        Box::pin(self.counters.count(OpKind::List, call))
    }

    fn copy_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        from: &'life1 Path,
        to: &'life2 Path,
        options: CopyOptions,
    ) -> BoxFuture<'async_trait, Result<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.copy_opts(from, to, options);
        Box::pin(self.counters.count(OpKind::Copy, call))
    }

    fn rename_opts<'life0, 'life1, 'life2, 'async_trait>(
        &'life0 self,
        from: &'life1 Path,
        to: &'life2 Path,
        options: RenameOptions,
    ) -> BoxFuture<'async_trait, Result<()>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        'life2: 'async_trait,
        Self: 'async_trait,
    {
        let call = self.inner.rename_opts(from, to, options);
        Box::pin(self.counters.count(OpKind::Rename, call))
    }
}

/// A multipart upload whose request was counted when it began: a failed part, completion or
/// abort counts one error of that upload, once.
struct InstrumentedUpload {
    inner: Box<dyn MultipartUpload>,
    counters: &'static Counters,
    /// Shared with the part futures, which outlive the borrow of the upload.
    failed: Arc<AtomicBool>,
}

impl InstrumentedUpload {
    fn counted<'a, T: Send + 'a>(
        &self,
        call: BoxFuture<'a, Result<T>>,
    ) -> BoxFuture<'a, Result<T>> {
        let (counters, failed) = (self.counters, Arc::clone(&self.failed));
        Box::pin(async move {
            let result = call.await;
            if let Err(e) = &result {
                counters.error_once(OpKind::Multipart, e, &failed);
            }
            result
        })
    }
}

impl fmt::Debug for InstrumentedUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.inner, f)
    }
}

impl MultipartUpload for InstrumentedUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let part = self.inner.put_part(data);
        self.counted(part)
    }

    fn complete<'life0, 'async_trait>(
        &'life0 mut self,
    ) -> BoxFuture<'async_trait, Result<PutResult>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let (counters, failed) = (self.counters, Arc::clone(&self.failed));
        Box::pin(async move {
            let result = self.inner.complete().await;
            if let Err(e) = &result {
                counters.error_once(OpKind::Multipart, e, &failed);
            }
            result
        })
    }

    fn abort<'life0, 'async_trait>(&'life0 mut self) -> BoxFuture<'async_trait, Result<()>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let (counters, failed) = (self.counters, Arc::clone(&self.failed));
        Box::pin(async move {
            let result = self.inner.abort().await;
            if let Err(e) = &result {
                counters.error_once(OpKind::Multipart, e, &failed);
            }
            result
        })
    }
}

/// A `tracing` layer that counts the retries of `object_store`'s HTTP client into
/// [`snapshot`]. It carries its own filter (the retry target only), so it sees those events
/// whatever the other layers' filters say, and costs nothing on other callsites.
pub fn retry_layer<S>() -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    counting_retries_into(&COUNTERS)
}

fn counting_retries_into<S>(counters: &'static Counters) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    RetryCounter { counters }
        .with_filter(Targets::new().with_target(RETRY_TARGET, LevelFilter::TRACE))
}

/// Counts every event it is given; [`counting_retries_into`] gives it the retry events only.
struct RetryCounter {
    counters: &'static Counters,
}

impl<S: Subscriber> Layer<S> for RetryCounter {
    fn on_event(
        &self,
        _event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.counters.retries.fetch_add(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutMode};
    use tracing_subscriber::layer::SubscriberExt;

    /// A store counting into the test's own counters, so that tests running at the same time
    /// do not disturb the exact counts.
    fn counted(counters: &'static Counters) -> InstrumentedStore<InMemory> {
        InstrumentedStore {
            inner: InMemory::new(),
            counters,
        }
    }

    #[tokio::test]
    async fn counts_requests_and_errors_per_kind() {
        static COUNTS: Counters = Counters::new();
        let store = counted(&COUNTS);
        let (a, b, missing) = (Path::from("d/a"), Path::from("d/b"), Path::from("d/none"));

        store.put(&a, "x".into()).await.unwrap();
        store.put(&b, "yy".into()).await.unwrap();
        assert_eq!(store.get(&a).await.unwrap().bytes().await.unwrap(), "x");
        let err = store.get(&missing).await.unwrap_err();
        assert!(matches!(err, object_store::Error::NotFound { .. }), "{err}");
        assert_eq!(store.head(&b).await.unwrap().size, 2);
        assert!(store.head(&missing).await.is_err());
        let listed: Vec<ObjectMeta> = store
            .list(Some(&Path::from("d")))
            .try_collect()
            .await
            .unwrap();
        assert_eq!(listed.len(), 2);
        store.list_with_delimiter(None).await.unwrap();
        // A conditional put that finds the object there: an answer, not an error.
        let exists = store
            .put_opts(&a, "z".into(), PutMode::Create.into())
            .await
            .unwrap_err();
        assert!(
            matches!(exists, object_store::Error::AlreadyExists { .. }),
            "{exists}"
        );
        // A copy from nowhere is an error.
        assert!(store.copy(&missing, &a).await.is_err());
        store.rename(&b, &Path::from("d/c")).await.unwrap();
        store.delete(&a).await.unwrap();

        let counts = COUNTS.snapshot();
        // (operation, requests, errors)
        let expected = [
            (OpKind::Put, 3, 0),
            (OpKind::Get, 2, 0),
            (OpKind::Head, 2, 0),
            (OpKind::List, 2, 0),
            (OpKind::Copy, 1, 1),
            (OpKind::Rename, 1, 0),
            (OpKind::Delete, 1, 0),
        ];
        for (kind, requests, errors) in expected {
            assert_eq!(counts.op(kind), OpCounts { requests, errors }, "{kind:?}");
        }
        assert_eq!(counts.op(OpKind::Multipart), OpCounts::default());
        assert_eq!(counts.retries, 0);
        assert_eq!(
            counts.iter().map(|(_, c)| c.requests).sum::<u64>(),
            12,
            "every call counted once, none twice (rename and delete call no other method)"
        );
    }

    #[tokio::test]
    async fn a_failing_stream_counts_one_request_and_one_error() {
        static COUNTS: Counters = Counters::new();
        let failing = futures::stream::iter([
            Err(object_store::Error::NotImplemented {
                operation: "list".into(),
                implementer: "test".into(),
            }),
            Err(object_store::Error::NotImplemented {
                operation: "list".into(),
                implementer: "test".into(),
            }),
        ])
        .boxed();
        let items: Vec<Result<ObjectMeta>> =
            COUNTS.count_stream(OpKind::List, failing).collect().await;
        assert_eq!(items.len(), 2);
        // A delete of nothing on the local disk answers `NotFound`: not an error.
        let dir = tempfile::tempdir().unwrap();
        let local = InstrumentedStore {
            inner: object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap(),
            counters: &COUNTS,
        };
        let gone = local.delete(&Path::from("nothing")).await.unwrap_err();
        assert!(
            matches!(gone, object_store::Error::NotFound { .. }),
            "{gone}"
        );

        let counts = COUNTS.snapshot();
        assert_eq!(
            counts.op(OpKind::List),
            OpCounts {
                requests: 1,
                errors: 1
            }
        );
        assert_eq!(
            counts.op(OpKind::Delete),
            OpCounts {
                requests: 1,
                errors: 0
            }
        );
    }

    #[tokio::test]
    async fn multipart_uploads_count_once() {
        static COUNTS: Counters = Counters::new();
        let store = counted(&COUNTS);
        let path = Path::from("big");
        let mut upload = store.put_multipart(&path).await.unwrap();
        upload.put_part("ab".into()).await.unwrap();
        upload.put_part("cd".into()).await.unwrap();
        upload.complete().await.unwrap();
        assert_eq!(
            store.get(&path).await.unwrap().bytes().await.unwrap(),
            "abcd"
        );
        assert_eq!(
            COUNTS.snapshot().op(OpKind::Multipart),
            OpCounts {
                requests: 1,
                errors: 0
            }
        );
    }

    #[test]
    fn display_and_debug_are_the_inner_stores() {
        let inner = InMemory::new();
        let (display, debug) = (inner.to_string(), format!("{inner:?}"));
        let store = InstrumentedStore::new(inner);
        assert_eq!(store.to_string(), display);
        assert_eq!(format!("{store:?}"), debug);
    }

    #[tokio::test]
    async fn lakes_count_into_the_process_counters() {
        let dir = tempfile::tempdir().unwrap();
        let lake = crate::lake::Lake::open(
            dir.path().to_str().unwrap(),
            &crate::config::S3Config::default(),
            crate::config::TimePartitioning::Hour,
        )
        .unwrap();
        let before = snapshot().op(OpKind::Head);
        assert!(lake.store.head(&lake.table_dir("nothing")).await.is_err());
        let after = snapshot().op(OpKind::Head);
        // Other tests may count at the same time: at least ours.
        assert!(after.requests > before.requests, "{before:?} → {after:?}");
        assert!(
            lake.store.to_string().starts_with("LocalFileSystem"),
            "{}",
            lake.store
        );
    }

    #[test]
    fn op_kinds_have_distinct_labels_in_order() {
        let labels: Vec<&str> = OpKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            labels,
            [
                "put",
                "get",
                "head",
                "delete",
                "list",
                "copy",
                "rename",
                "multipart"
            ]
        );
        for (i, kind) in OpKind::ALL.into_iter().enumerate() {
            assert_eq!(kind.index(), i);
        }
    }

    #[test]
    fn the_retry_layer_counts_retry_events_only() {
        static COUNTS: Counters = Counters::new();
        // As `logging::init` stacks them: output filtered at `warn`, retries counted anyway.
        let subscriber = tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::sink)
                    .with_filter(tracing_subscriber::EnvFilter::new("warn")),
            )
            .with(counting_retries_into(&COUNTS));
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(
                target: "object_store::client::retry",
                "Encountered server error with status 503, backing off for 0.1 seconds, retry 1 of 10"
            );
            tracing::info!(target: "object_store::client::retry", "retry 2 of 10");
            tracing::warn!(target: "object_store::client::s3", "not a retry");
            tracing::info!("not a retry either");
        });
        assert_eq!(COUNTS.snapshot().retries, 2);
    }
}
