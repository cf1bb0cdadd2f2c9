//! One member of a Kafka pipeline's consumer group.
//!
//! Every `stream-ingest run` of a pipeline with a `kafka` source joins the consumer group
//! `source.group`; Kafka gives each member a disjoint set of the topic's partitions and moves
//! them when a member joins, leaves or dies. Here the Kafka partition is the **unit of
//! state** ([`Unit`]): each assigned partition gets an engine of its own, with its own
//! windows, watermark, checkpoints (`_checkpoints/<pipeline>/p<N>/`), lock, dead-letter file
//! and file names (`part-<time>-p<N>-c<checkpoint>-<hash>.parquet`). So moving a partition is
//! simple: the old owner checkpoints and stops its unit on revocation (or dies: its staged
//! files are cleaned by the next owner), the new owner takes the unit's lock, restores its
//! checkpoint and seeks the partition to the checkpoint's offset. Whoever processes a
//! partition writes the same files, so nothing is lost or doubled; a stale owner still alive
//! is fenced by the unit's lock. Offsets live in the checkpoints; they are also committed to
//! the group once durable, for lag monitoring only. Lake partitions are committed when every
//! unit has passed them ([`crate::board`]).
//!
//! ```text
//! consumer thread ── poll ──▶ records of partition N ──▶ chunk ──▶ unit pN: engine ─▶ writer ─▶ lake
//!   (rebalance: assign → lock + recover + seek; revoke → checkpoint + stop)
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use shared::config::{KafkaConfig, KafkaStart, LoadedConfig};
use shared::lake::Lake;
use tokio::runtime::Handle;

use crate::metrics::Telemetry;
use crate::sources::kafka::{RecordBuffer, client_config, fetched_high_watermark};
use crate::sources::{Chunk, SourceError};
use crate::unit::{
    DriveOptions, Recovered, Unit, execute, lock_unit, recover, summarize, table_names,
};
use crate::writer::OnDurable;
use crate::{IngestError, RunOptions, RunSummary};

/// How long a new owner waits for a unit's lock (a lease on S3 lives 60 s).
const LOCK_WAIT: Duration = Duration::from_secs(90);
/// How often buffered records are handed to their units when the topic is quiet.
const HANDOVER: Duration = Duration::from_millis(100);

/// A Kafka partition, and the tag of its unit: `p3`, or `p1_3` for partition 3 of the
/// second of several topics.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct KafkaPartition {
    pub topic: String,
    pub partition: i32,
}

impl KafkaPartition {
    /// The input its unit's checkpoints name.
    pub fn identity(&self) -> String {
        format!("kafka:{}/{}", self.topic, self.partition)
    }
}

/// The Kafka partition of a unit's tag (the inverse of [`unit_tag`]).
pub(crate) fn partition_of(topics: &[String], tag: &str) -> Option<KafkaPartition> {
    let rest = tag.strip_prefix('p')?;
    let (topic, partition) = match rest.split_once('_') {
        Some((i, p)) if topics.len() > 1 => (topics.get(i.parse::<usize>().ok()?)?, p),
        Some(_) => return None,
        None if topics.len() == 1 => (&topics[0], rest),
        None => return None,
    };
    Some(KafkaPartition {
        topic: topic.clone(),
        partition: partition.parse().ok()?,
    })
}

pub(crate) fn unit_tag(topics: &[String], kp: &KafkaPartition) -> String {
    match topics.iter().position(|t| *t == kp.topic) {
        Some(i) if topics.len() > 1 => format!("p{i}_{}", kp.partition),
        _ => format!("p{}", kp.partition),
    }
}

/// A unit this member runs.
struct RunningUnit {
    /// Closed to end the unit (bounded input read, or stopped).
    tx: Option<SyncSender<Result<Chunk, SourceError>>>,
    stop: Arc<AtomicBool>,
    task: Option<tokio::task::JoinHandle<Result<bool, IngestError>>>,
    telemetry: Arc<Telemetry>,
    resumed_from: Option<u64>,
    /// Records not handed over yet, and the offset after them.
    records: RecordBuffer,
    /// Bounded: the end offset the partition had when it was assigned, raised once to the
    /// high watermark of the first fetch answer.
    end: Option<i64>,
    /// Bounded: whether `end` was checked against a fetch answer's high watermark.
    end_checked: bool,
}

/// What the consumer's rebalance callback and the poll loop share.
struct Shared {
    loaded: Arc<LoadedConfig>,
    opts: RunOptions,
    lake: Lake,
    kafka: KafkaConfig,
    topics: Vec<String>,
    /// Tags of every partition of the topics.
    all: Vec<String>,
    /// The commit board, read to see whether every unit has ended (bounded).
    board: crate::board::Board,
    runtime: Handle,
    units: Mutex<BTreeMap<KafkaPartition, RunningUnit>>,
    /// Units stopped or finished: their summaries, by unit (the counters since the start of
    /// the pipeline are the last instance's; what this process wrote adds up).
    done: Mutex<BTreeMap<KafkaPartition, RunSummary>>,
    /// The first error of a unit (or of a rebalance): the member stops.
    error: Mutex<Option<IngestError>>,
    /// Offsets of durable checkpoints, to commit to the group.
    offsets: Mutex<Vec<(KafkaPartition, i64)>>,
    assigned_once: AtomicBool,
    member_telemetry: Arc<Telemetry>,
}

struct MemberContext(Arc<Shared>);

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let shared = &self.0;
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut assigned = TopicPartitionList::new();
                for e in tpl.elements() {
                    let kp = KafkaPartition {
                        topic: e.topic().to_string(),
                        partition: e.partition(),
                    };
                    match shared.start_unit(consumer, &kp) {
                        Ok(offset) => {
                            let _ = assigned.add_partition_offset(&kp.topic, kp.partition, offset);
                        }
                        Err(e) => shared.fail(e),
                    }
                }
                if let Err(e) = consumer.assign(&assigned) {
                    shared.fail(IngestError::Kafka(format!("cannot assign partitions: {e}")));
                }
                shared.assigned_once.store(true, Ordering::SeqCst);
                shared.member_telemetry.set_ready(true);
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                let revoked: Vec<KafkaPartition> = tpl
                    .elements()
                    .iter()
                    .map(|e| KafkaPartition {
                        topic: e.topic().to_string(),
                        partition: e.partition(),
                    })
                    .collect();
                shared.stop_units(&revoked, true);
                let _ = consumer.unassign();
            }
            other => {
                tracing::error!(error = ?other, "rebalance failed");
                let _ = consumer.unassign();
            }
        }
    }
}

impl Shared {
    fn fail(&self, e: IngestError) {
        tracing::error!(error = %e, "unit failed");
        let mut slot = self.error.lock().expect("not poisoned");
        if slot.is_none() {
            *slot = Some(e);
        }
    }

    fn failed(&self) -> bool {
        self.error.lock().expect("not poisoned").is_some()
    }

    /// Takes the unit's lock, restores its checkpoint and starts its engine; returns where
    /// the Kafka partition is to be read from.
    fn start_unit(
        self: &Arc<Self>,
        consumer: &BaseConsumer<MemberContext>,
        kp: &KafkaPartition,
    ) -> Result<Offset, IngestError> {
        let unit = Unit::tagged(unit_tag(&self.topics, kp), self.all.clone());
        let telemetry = Telemetry::new(&table_names(&self.loaded.config));
        tracing::info!(unit = %unit, topic = %kp.topic, partition = kp.partition, "assigned");
        let mut recovered = self.recover_unit(&unit, kp, &telemetry)?;
        let position = recovered.engine.position().offset();
        tracing::info!(unit = %unit, position = ?position, "recovered");
        let offset = match (position, self.kafka.start) {
            (Some(next), _) => Offset::Offset(next),
            (None, KafkaStart::Earliest) => Offset::Beginning,
            (None, KafkaStart::Latest) => Offset::End,
        };
        let end = self.end_offset(consumer, kp, &unit)?;
        let next = match offset {
            Offset::Offset(n) => n,
            _ => -1,
        };
        recovered.writer.on_durable = Some(self.on_durable(kp));
        let (tx, rx) = sync_channel(2);
        let stop = Arc::new(AtomicBool::new(false));
        let resumed_from = recovered.resumed_from;
        let pace = DriveOptions::of(&self.loaded, &self.opts);
        let task = self
            .runtime
            .spawn(execute(recovered, rx, pace, 1, stop.clone()));
        let mut unit = RunningUnit {
            tx: Some(tx),
            stop,
            task: Some(task),
            telemetry,
            resumed_from,
            records: RecordBuffer::starting_at(kp.partition, next),
            end,
            end_checked: false,
        };
        if self.nothing_to_read(end, next) {
            unit.tx = None; // the unit finishes at once
        }
        self.units
            .lock()
            .expect("not poisoned")
            .insert(kp.clone(), unit);
        Ok(offset)
    }

    /// Takes the lock of a Kafka partition's unit (waiting for a previous owner) and
    /// recovers it.
    fn recover_unit(
        &self,
        unit: &Unit,
        kp: &KafkaPartition,
        telemetry: &Arc<Telemetry>,
    ) -> Result<Recovered, IngestError> {
        let config = &self.loaded.config;
        let identity = kp.identity();
        self.runtime.block_on(async {
            let locks = lock_unit(&self.lake, &config.name, unit, Some(LOCK_WAIT)).await?;
            recover(
                &self.loaded,
                &self.opts,
                &self.lake,
                identity,
                telemetry,
                locks,
                unit,
            )
            .await
        })
    }

    /// Bounded: the end offset the Kafka partition has now (the unit ends there, or at the
    /// high watermark of the first fetch answer when that is later: see `check_end`).
    fn end_offset(
        &self,
        consumer: &BaseConsumer<MemberContext>,
        kp: &KafkaPartition,
        unit: &Unit,
    ) -> Result<Option<i64>, IngestError> {
        if !self.kafka.bounded {
            return Ok(None);
        }
        let (_, high) = consumer
            .fetch_watermarks(&kp.topic, kp.partition, Duration::from_secs(30))
            .map_err(|e| IngestError::Kafka(format!("end offset of {}: {e}", unit)))?;
        Ok(Some(high))
    }

    /// Whether a bounded unit starting at `next` (-1: not known, the start setting's) has
    /// nothing to read before `end`.
    fn nothing_to_read(&self, end: Option<i64>, next: i64) -> bool {
        match (end, next) {
            (Some(e), n) if n >= 0 => n >= e,
            (Some(e), _) => e == 0 || self.kafka.start == KafkaStart::Latest,
            (None, _) => false,
        }
    }

    /// What a unit's writer calls once a checkpoint is durable: keep its offset to commit to
    /// the group.
    fn on_durable(self: &Arc<Self>, kp: &KafkaPartition) -> OnDurable {
        let me = Arc::clone(self);
        let durable_kp = kp.clone();
        Box::new(move |p| {
            if let Some(next) = p.offset() {
                let mut offsets = me.offsets.lock().expect("not poisoned");
                offsets.push((durable_kp.clone(), next));
            }
        })
    }

    /// Stops units: `checkpoint` (a revocation, a signal) keeps their windows open in a last
    /// checkpoint; waits for them.
    fn stop_units(&self, which: &[KafkaPartition], checkpoint: bool) {
        let mut stopped = Vec::new();
        {
            let mut units = self.units.lock().expect("not poisoned");
            for kp in which {
                if let Some(mut u) = units.remove(kp) {
                    if checkpoint {
                        u.stop.store(true, Ordering::SeqCst);
                    }
                    hand_over(&mut u);
                    u.tx = None;
                    stopped.push((kp.clone(), u));
                }
            }
        }
        for (kp, u) in stopped {
            tracing::info!(topic = %kp.topic, partition = kp.partition, "unit stopping");
            self.join(kp, u);
        }
    }

    /// Waits for a unit's task; keeps its summary or its error.
    fn join(&self, kp: KafkaPartition, mut u: RunningUnit) {
        let Some(task) = u.task.take() else { return };
        let result = self.runtime.block_on(task);
        match result {
            Ok(Ok(interrupted)) => {
                let summary = summarize(&u.telemetry, u.resumed_from, interrupted);
                tracing::info!(
                    lines = summary.stats.lines,
                    next = u.records.next,
                    interrupted,
                    "unit ended"
                );
                let mut done = self.done.lock().expect("not poisoned");
                let mut summary = summary;
                if let Some(earlier) = done.get(&kp) {
                    summary.add_written(earlier);
                }
                done.insert(kp, summary);
            }
            Ok(Err(e)) => self.fail(e),
            Err(e) => self.fail(IngestError::Internal(format!("unit panicked: {e}"))),
        }
    }
}

/// Sends a unit's buffered records (if any) as one chunk.
fn hand_over(u: &mut RunningUnit) {
    let Some(chunk) = u.records.take_chunk() else {
        return;
    };
    if let Some(tx) = &u.tx
        && tx.send(Ok(chunk)).is_err()
    {
        u.tx = None;
    }
}

/// Runs this process as a member of the pipeline's consumer group until the bounded input
/// is read (every unit it owns finished), or `shutdown` is set.
pub async fn run(
    loaded: &LoadedConfig,
    opts: &RunOptions,
    lake: &Lake,
    kafka: &KafkaConfig,
    telemetry: &Arc<Telemetry>,
    shutdown: Arc<AtomicBool>,
) -> Result<RunSummary, IngestError> {
    let started = Instant::now();
    // Before joining the group: each unit's recovery would refuse anyway.
    crate::rebuild::refuse_unfinished(loaded, lake).await?;
    let topics = kafka.topic.names();
    let all = {
        let (kafka, topics) = (kafka.clone(), topics.clone());
        tokio::task::spawn_blocking(move || all_units(&kafka, &topics))
            .await
            .map_err(|e| IngestError::Internal(format!("the metadata probe panicked: {e}")))??
    };
    // A view of the board to see when a bounded topic is read to its end.
    let board = crate::board::Board::new(
        lake.clone(),
        &loaded.config.name,
        String::new(),
        all.clone(),
    );
    let shared = Arc::new(Shared {
        loaded: Arc::new(loaded.clone()),
        opts: opts.clone(),
        lake: lake.clone(),
        kafka: kafka.clone(),
        topics: topics.clone(),
        all,
        board,
        runtime: Handle::current(),
        units: Mutex::new(BTreeMap::new()),
        done: Mutex::new(BTreeMap::new()),
        error: Mutex::new(None),
        offsets: Mutex::new(Vec::new()),
        assigned_once: AtomicBool::new(false),
        member_telemetry: telemetry.clone(),
    });
    let chunk_bytes = opts.chunk_bytes.unwrap_or(crate::sources::CHUNK_BYTES);
    let signal = shutdown.clone();
    let shared = tokio::task::spawn_blocking(move || consume(shared, chunk_bytes, shutdown))
        .await
        .map_err(|e| IngestError::Internal(format!("the consumer panicked: {e}")))??;
    if let Some(e) = shared.error.lock().expect("not poisoned").take() {
        return Err(e);
    }
    let mut summary = RunSummary::default();
    for s in shared.done.lock().expect("not poisoned").values() {
        summary.add(s);
    }
    // Units stopped because their partition moved are not interrupted runs: only a signal is.
    summary.interrupted = signal.load(Ordering::SeqCst);
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The tags of every partition of the topics: each is a unit, and a commit waits for all.
fn all_units(kafka: &KafkaConfig, topics: &[String]) -> Result<Vec<String>, IngestError> {
    let partitions = partitions(kafka, topics)?;
    Ok(partitions.iter().map(|kp| unit_tag(topics, kp)).collect())
}

/// Every partition of the topics, as the brokers' metadata says (blocking).
pub(crate) fn partitions(
    kafka: &KafkaConfig,
    topics: &[String],
) -> Result<Vec<KafkaPartition>, IngestError> {
    let kafka_err = |what: &str, e: rdkafka::error::KafkaError| {
        IngestError::Kafka(format!("{what} ({}): {e}", kafka.brokers))
    };
    let probe: BaseConsumer = client_config(kafka)
        .create()
        .map_err(|e| kafka_err("cannot create a consumer", e))?;
    let mut all = Vec::new();
    for topic in topics {
        let md = probe
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .map_err(|e| kafka_err(&format!("no metadata for topic `{topic}`"), e))?;
        let partitions = md.topics().first().map_or(0, |t| t.partitions().len());
        if partitions == 0 {
            return Err(IngestError::Kafka(format!(
                "topic `{topic}` does not exist on {} (or has no partition)",
                kafka.brokers
            )));
        }
        all.extend((0..partitions as i32).map(|partition| KafkaPartition {
            topic: topic.clone(),
            partition,
        }));
    }
    Ok(all)
}

/// The consumer thread: joins the group, polls, hands records to their units, commits
/// durable offsets, and stops everything at the end.
fn consume(
    shared: Arc<Shared>,
    chunk_bytes: usize,
    shutdown: Arc<AtomicBool>,
) -> Result<Arc<Shared>, IngestError> {
    let brokers = shared.kafka.brokers.clone();
    let kafka_err = |what: &str, e: rdkafka::error::KafkaError| {
        IngestError::Kafka(format!("{what} ({brokers}): {e}"))
    };
    let consumer: BaseConsumer<MemberContext> = client_config(&shared.kafka)
        .create_with_context(MemberContext(shared.clone()))
        .map_err(|e| kafka_err("cannot create a consumer", e))?;
    let topics: Vec<&str> = shared.topics.iter().map(String::as_str).collect();
    consumer
        .subscribe(&topics)
        .map_err(|e| kafka_err("cannot subscribe", e))?;
    tracing::info!(group = %shared.kafka.group, topics = ?shared.topics, "joined the group");
    poll_loop(&shared, &consumer, chunk_bytes, &shutdown);
    // Stop what still runs: keep open windows in a last checkpoint (a signal, an error).
    let running: Vec<KafkaPartition> = shared
        .units
        .lock()
        .expect("not poisoned")
        .keys()
        .cloned()
        .collect();
    shared.stop_units(&running, true);
    commit_offsets(&shared, &consumer);
    drop(consumer);
    Ok(shared)
}

fn poll_loop(
    shared: &Arc<Shared>,
    consumer: &BaseConsumer<MemberContext>,
    chunk_bytes: usize,
    shutdown: &AtomicBool,
) {
    let mut last_handover = Instant::now();
    let started = Instant::now();
    let mut records = 0u64;
    let mut last_board_check = Instant::now();
    loop {
        // `--max-lines-per-sec`: demos and crash tests.
        if let Some(rate) = shared.opts.max_lines_per_sec {
            let due = Duration::from_secs_f64(records as f64 / rate.max(1) as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        if shutdown.load(Ordering::SeqCst) || shared.failed() {
            return;
        }
        match consumer.poll(HANDOVER) {
            Some(Ok(msg)) => {
                let kp = KafkaPartition {
                    topic: msg.topic().to_string(),
                    partition: msg.partition(),
                };
                let mut units = shared.units.lock().expect("not poisoned");
                if let Some(u) = units.get_mut(&kp)
                    && u.tx.is_some()
                {
                    check_end(u, consumer, &kp);
                    let value = msg.payload().unwrap_or_default();
                    let ts = msg.timestamp().to_millis();
                    if let Some(missing) = u.records.push(value, msg.offset(), ts) {
                        tracing::warn!(
                            partition = kp.partition,
                            first = msg.offset(),
                            missing,
                            "records missing after the checkpoint's offset: the broker skipped them (tansu 0.6 answers a fetch inside a batch with the next batch) or the topic is compacted"
                        );
                    }
                    records += 1;
                    if u.records.len() >= chunk_bytes {
                        hand_over(u);
                    }
                }
            }
            Some(Err(e)) => tracing::warn!(error = %e, "Kafka"),
            None => {}
        }
        if last_handover.elapsed() >= HANDOVER {
            last_handover = Instant::now();
            if finish_ended(shared, started, &mut last_board_check) {
                return;
            }
            commit_offsets(shared, consumer);
        }
    }
}

/// Bounded: raises a unit's end, once, to the high watermark of the fetch answer that brought
/// its first record. The end comes from a ListOffsets request at assignment, and tansu 0.6
/// answers it with the offset after the *first record of the newest batch*, not the high
/// watermark: a unit ending there would leave the rest of that batch unread (a test lost
/// 995 of a million lines produced in 10,000-record batches). Its fetch answers carry the
/// right high watermark, and so do Apache Kafka's, where the two agree up to what arrived
/// in between (a bounded run still ends: the end moves once).
fn check_end(u: &mut RunningUnit, consumer: &BaseConsumer<MemberContext>, kp: &KafkaPartition) {
    if u.end_checked {
        return;
    }
    u.end_checked = true;
    let Some(end) = u.end else { return };
    let fetched = fetched_high_watermark(consumer.client(), &kp.topic, kp.partition);
    if let Some(high) = fetched
        && high > end
    {
        tracing::debug!(
            partition = kp.partition,
            end,
            high,
            "end raised to the fetched high watermark"
        );
        u.end = Some(high);
    }
}

/// Hands buffered records over; closes units that reached their end (bounded); joins the
/// finished ones. Returns true when a bounded member has nothing left to do.
fn finish_ended(shared: &Arc<Shared>, started: Instant, last_board_check: &mut Instant) -> bool {
    let mut finished = Vec::new();
    {
        let mut units = shared.units.lock().expect("not poisoned");
        for (kp, u) in units.iter_mut() {
            hand_over(u);
            if u.end.is_some_and(|e| u.records.next >= e) {
                u.tx = None;
            }
            if u.tx.is_none() && u.task.as_ref().is_some_and(|t| t.is_finished()) {
                finished.push(kp.clone());
            }
        }
    }
    if !finished.is_empty() {
        let mut done = Vec::new();
        {
            let mut units = shared.units.lock().expect("not poisoned");
            for kp in finished {
                if let Some(u) = units.remove(&kp) {
                    tracing::info!(topic = %kp.topic, partition = kp.partition, "unit finished");
                    done.push((kp, u));
                }
            }
        }
        for (kp, u) in done {
            shared.join(kp, u);
        }
    }
    // A member given no partition (more members than partitions) waits a little for one.
    let waited =
        shared.assigned_once.load(Ordering::SeqCst) || started.elapsed() > Duration::from_secs(10);
    if !shared.kafka.bounded
        || !waited
        || !shared.units.lock().expect("not poisoned").is_empty()
        || last_board_check.elapsed() < Duration::from_millis(500)
    {
        return false;
    }
    *last_board_check = Instant::now();
    // Bounded, and this member's units are done: it leaves once every partition of the
    // topic is read to its end, by whichever member (it takes over those of a member that
    // dies before).
    match shared.runtime.block_on(shared.board.all_ended()) {
        Ok(ended) => ended,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the commit board");
            false
        }
    }
}

/// Commits the offsets of durable checkpoints to the group (lag monitoring only: recovery
/// reads the checkpoints).
fn commit_offsets(shared: &Shared, consumer: &BaseConsumer<MemberContext>) {
    let durable = std::mem::take(&mut *shared.offsets.lock().expect("not poisoned"));
    if durable.is_empty() {
        return;
    }
    let mut offsets: BTreeMap<KafkaPartition, i64> = BTreeMap::new();
    for (kp, next) in durable {
        let o = offsets.entry(kp).or_insert(next);
        *o = (*o).max(next);
    }
    let mut tpl = TopicPartitionList::new();
    for (kp, next) in offsets {
        let _ = tpl.add_partition_offset(&kp.topic, kp.partition, Offset::Offset(next));
    }
    if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
        tracing::debug!(error = %e, "cannot commit offsets to the group");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_tags_name_their_partitions() {
        let one = vec!["logs".to_string()];
        let two = vec!["a".to_string(), "b".to_string()];
        for (topics, kp) in [(&one, ("logs", 3)), (&two, ("a", 0)), (&two, ("b", 12))] {
            let kp = KafkaPartition {
                topic: kp.0.into(),
                partition: kp.1,
            };
            let tag = unit_tag(topics, &kp);
            assert_eq!(partition_of(topics, &tag), Some(kp));
        }
        assert_eq!(
            unit_tag(
                &two,
                &KafkaPartition {
                    topic: "b".into(),
                    partition: 12
                }
            ),
            "p1_12"
        );
        assert_eq!(partition_of(&one, "p1_3"), None);
        assert_eq!(partition_of(&two, "p3"), None);
        assert_eq!(partition_of(&two, "p2_3"), None);
        assert_eq!(partition_of(&one, "x3"), None);
    }
}
