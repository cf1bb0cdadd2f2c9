//! Kafka partitions as sources: each record's value is one input line, and a Kafka
//! partition's records are handed to its own engine in chunks whose position is the offset after them.
//! The consumer group itself (assignment, rebalances, units) is [`crate::member`]'s.

use std::io;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use shared::config::{KafkaConfig, KafkaStart};

use super::{Advance, Chunk, ChunkSender, RecordMeta, SourceError};

/// How long a replay waits for the next record it knows the partition holds.
const REPLAY_STALL: Duration = Duration::from_secs(60);

/// Properties only a consumer knows (a producer or admin client warns about them).
const CONSUMER_ONLY: &[&str] = &[
    "group.",
    "session.",
    "heartbeat.",
    "enable.auto.",
    "auto.",
    "max.poll.",
    "partition.assignment.",
    "fetch.",
    "isolation.level",
    "check.crcs",
    "queued.",
    "group.instance.id",
];

/// A client of the pipeline's brokers (producer, admin): the pipeline's properties that
/// are not a consumer's only.
pub fn client_of(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in &kafka.properties {
        if !CONSUMER_ONLY.iter().any(|p| k.starts_with(p)) {
            c.set(k, v);
        }
    }
    c.set("bootstrap.servers", &kafka.brokers);
    c
}

/// The consumer's client configuration: the pipeline's properties, then what the stage
/// needs (offsets are the checkpoints', never auto-committed).
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    // Defaults the pipeline's properties may change: a short wait on fetches (some brokers,
    // tansu among them, hold a fetch for its whole maximum wait even with data ready: at
    // librdkafka's 500 ms, one member read 50 000 lines/s; at 10 ms, 800 000).
    c.set("fetch.wait.max.ms", "10");
    for (k, v) in &kafka.properties {
        c.set(k, v);
    }
    c.set("bootstrap.servers", &kafka.brokers)
        .set("group.id", &kafka.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set(
            "auto.offset.reset",
            match kafka.start {
                KafkaStart::Earliest => "earliest",
                KafkaStart::Latest => "latest",
            },
        );
    c
}

/// The high watermark of a partition as the last fetch answer gave it: librdkafka's
/// `rd_kafka_get_watermark_offsets` (no request; the value every fetch answer carries), which
/// rust-rdkafka does not wrap. `None` before the first fetch answer of the partition.
pub fn fetched_high_watermark<C: rdkafka::ClientContext>(
    client: &rdkafka::client::Client<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: `client` keeps its librdkafka handle alive for the call, `topic` is a
    // NUL-terminated string that outlives it, and librdkafka only writes the two integers.
    let err = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            client.native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

/// Reads one Kafka partition from its earliest record up to `until` (the offset after the
/// last record wanted) and sends its records as chunks, the last one moving the position
/// to `until` exactly: the input of a rebuild (`run --rebuild`), which recomputes a table
/// up to a unit's checkpoint. A partition that no longer reaches `until` (a topic deleted
/// and created again) is an error; records deleted by the topic's retention are not there
/// to read, which is said in a warning.
pub fn spawn_replay(
    kafka: &KafkaConfig,
    topic: &str,
    partition: i32,
    until: i64,
    chunk_bytes: usize,
    tx: ChunkSender,
) -> Result<std::thread::JoinHandle<()>, SourceError> {
    let input = format!("kafka:{topic}/{partition}");
    let error = |reason: String| SourceError {
        input: input.clone(),
        source: io::Error::other(reason),
    };
    let consumer: BaseConsumer = client_config(kafka)
        .create()
        .map_err(|e| error(format!("cannot create a consumer ({}): {e}", kafka.brokers)))?;
    let (low, high) = consumer
        .fetch_watermarks(topic, partition, Duration::from_secs(30))
        .map_err(|e| error(format!("cannot read the partition's offsets: {e}")))?;
    // An empty partition is checked here; one with records when its first fetch answer
    // gives the high watermark (tansu 0.6 lists a smaller "latest" offset: see
    // `member::check_end`).
    if high <= low.max(0) && high < until {
        return Err(error(ends_before(high, until)));
    }
    if low > 0 {
        tracing::warn!(
            topic,
            partition,
            first = low,
            "the records before this offset were deleted by the topic's retention: the rebuilt tables start after them"
        );
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)
        .and_then(|()| consumer.assign(&tpl))
        .map_err(|e| error(format!("cannot assign the partition: {e}")))?;
    let name = input.clone();
    std::thread::Builder::new()
        .name("kafka-replay".into())
        .spawn(move || {
            let result = replay_records(&consumer, partition, low.max(0), until, chunk_bytes, &tx);
            if let Err(reason) = result {
                let _ = tx.send(Err(SourceError {
                    input: name,
                    source: io::Error::other(reason),
                }));
            }
        })
        .map_err(|e| error(e.to_string()))
}

/// The replay's loop: records from `from` (the partition's first) up to `until`.
fn replay_records(
    consumer: &BaseConsumer,
    partition: i32,
    from: i64,
    until: i64,
    chunk_bytes: usize,
    tx: &ChunkSender,
) -> Result<(), String> {
    let mut records = RecordBuffer::starting_at(partition, -1);
    let mut next = from;
    let mut last_record = Instant::now();
    let mut end_checked = false;
    while next < until {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(msg)) if msg.partition() == partition => {
                if !end_checked {
                    end_checked = true;
                    let high = fetched_high_watermark(consumer.client(), msg.topic(), partition);
                    if let Some(high) = high
                        && high < until
                    {
                        return Err(ends_before(high, until));
                    }
                }
                if msg.offset() >= until {
                    break;
                }
                records.push(
                    msg.payload().unwrap_or_default(),
                    msg.offset(),
                    msg.timestamp().to_millis(),
                );
                next = msg.offset() + 1;
                last_record = Instant::now();
                if records.len() >= chunk_bytes
                    && let Some(chunk) = records.take_chunk()
                    && tx.send(Ok(chunk)).is_err()
                {
                    return Ok(());
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::warn!(error = %e, "Kafka"),
            None if last_record.elapsed() > REPLAY_STALL => {
                return Err(format!(
                    "no record after offset {next} for {}s, though the partition holds records up to {until}",
                    REPLAY_STALL.as_secs()
                ));
            }
            None => {}
        }
    }
    // Offsets with no record (transaction markers, compaction) up to `until` are read too.
    records.next = until;
    let chunk = records.take_chunk().unwrap_or(Chunk {
        data: Vec::new(),
        advance: Advance::Offset(until),
        records: None,
    });
    let _ = tx.send(Ok(chunk));
    Ok(())
}

/// The error of a partition that no longer reaches a checkpoint's offset.
fn ends_before(high: i64, until: i64) -> String {
    format!(
        "the partition ends at offset {high}, before the checkpoint's {until}: the topic is not the one the checkpoint read (deleted and created again?)"
    )
}

/// The records of one Kafka partition not handed to its engine yet.
#[derive(Debug, Default)]
pub struct RecordBuffer {
    data: Vec<u8>,
    records: RecordMeta,
    /// The offset after the last record taken (`-1`: none yet, and no checkpoint).
    pub next: i64,
    /// Whether a record was taken since the start.
    verified: bool,
}

impl RecordBuffer {
    /// A buffer that takes records from `next` on (`-1`: from the first one it gets).
    pub fn starting_at(kafka_partition: i32, next: i64) -> RecordBuffer {
        RecordBuffer {
            data: Vec::new(),
            records: RecordMeta {
                kafka_partition,
                ..RecordMeta::default()
            },
            next,
            verified: next < 0,
        }
    }

    /// Appends a record's value as one line; a record before the start (a fetch that began
    /// before the checkpoint's offset) is skipped. Returns the offsets missing before the
    /// first record taken after the start: a Kafka partition resumed at its checkpoint's offset
    /// must deliver that record first (a compacted topic may not; nor does a broker that
    /// answers a fetch inside a batch with the next batch, as tansu 0.6 does).
    pub fn push(&mut self, value: &[u8], offset: i64, timestamp_ms: Option<i64>) -> Option<i64> {
        if self.next >= 0 && offset < self.next {
            return None;
        }
        let missing =
            (!self.verified && self.next >= 0 && offset > self.next).then(|| offset - self.next);
        self.verified = true;
        self.data.extend_from_slice(value);
        let mut lines = memchr::memchr_iter(b'\n', value).count();
        if value.last() != Some(&b'\n') {
            self.data.push(b'\n');
            lines += 1;
        }
        let ts = timestamp_ms.map(|ms| ms.saturating_mul(1000));
        for _ in 0..lines {
            self.records.offsets.push(offset);
            self.records.timestamps.push(ts);
        }
        self.next = offset + 1;
        missing
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The buffered lines as a chunk that moves the Kafka partition's position past them.
    pub fn take_chunk(&mut self) -> Option<Chunk> {
        let kafka_partition = self.records.kafka_partition;
        (!self.data.is_empty()).then(|| Chunk {
            data: std::mem::take(&mut self.data),
            advance: Advance::Offset(self.next),
            records: Some(std::mem::replace(
                &mut self.records,
                RecordMeta {
                    kafka_partition,
                    ..RecordMeta::default()
                },
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_become_lines_and_the_position_the_next_offset() {
        let mut b = RecordBuffer::starting_at(3, 5);
        b.push(b"old", 4, None);
        assert!(b.is_empty());
        b.push(b"a", 5, Some(1000));
        b.push(b"b\nc\n", 6, Some(2000));
        b.push(b"", 9, None);
        let c = b.take_chunk().unwrap();
        assert_eq!(c.data, b"a\nb\nc\n\n");
        assert_eq!(c.advance, Advance::Offset(10));
        let records = c.records.unwrap();
        assert_eq!(records.kafka_partition, 3);
        assert_eq!(records.offsets, vec![5, 6, 6, 9]);
        assert_eq!(
            records.timestamps,
            vec![Some(1_000_000), Some(2_000_000), Some(2_000_000), None]
        );
        assert!(b.take_chunk().is_none());
        // A resumed Kafka partition whose first record is past the position: reported once.
        let mut gap = RecordBuffer::starting_at(0, 100);
        assert_eq!(gap.push(b"x", 130, None), Some(30));
        assert_eq!(gap.push(b"y", 140, None), None);
        let mut exact = RecordBuffer::starting_at(0, 100);
        assert_eq!(exact.push(b"x", 100, None), None);
        let mut fresh = RecordBuffer::starting_at(0, -1);
        assert_eq!(fresh.push(b"x", 42, None), None);
        fresh.push(b"x", 42, None);
        assert_eq!(fresh.next, 43);
    }
}
