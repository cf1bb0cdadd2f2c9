//! `stream-ingest produce`: lines of a file (or standard input) into the pipeline's Kafka
//! topic, one record per line, keyed by a parsed field (`--key host`: every request of a
//! client lands in the same partition, which keeps `count_distinct(host)` exact across
//! partitions). For demos, tests, benchmarks and backfills; production traffic comes from the
//! users' own producers.

use std::collections::HashSet;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use arrow::array::Array;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use rdkafka::ClientContext;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use shared::config::{KafkaConfig, LoadedConfig, SourceConfig};

use crate::IngestError;
use crate::format::parser_for;
use crate::parallel::parse_chunk;

/// What to produce.
#[derive(Debug, Clone)]
pub struct ProduceOptions {
    /// A file, or `None` for standard input.
    pub input: Option<PathBuf>,
    /// The parsed field whose value keys each record; `None`: no key.
    pub key: Option<String>,
    /// Partitions of the topic when it is created here.
    pub partitions: i32,
    /// At most this many records per produced batch (librdkafka's `batch.num.messages`).
    pub batch_records: u32,
}

/// What was produced.
#[derive(Debug, Clone, Default)]
pub struct ProduceSummary {
    pub records: u64,
    pub bytes: u64,
    pub seconds: f64,
}

impl std::fmt::Display for ProduceSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} records ({:.1} MB) produced in {:.2} s",
            self.records,
            self.bytes as f64 / 1e6,
            self.seconds
        )
    }
}

/// Counts the broker's answers: a record is produced when the broker acknowledged it, and a
/// record it refused (or that timed out) fails the command instead of vanishing.
#[derive(Default)]
struct Deliveries {
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_error.lock().expect("not poisoned");
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

impl Deliveries {
    /// An error when any record was not delivered.
    fn check(&self, records: u64) -> Result<(), IngestError> {
        let failed = self.failed.load(Ordering::Relaxed);
        if failed == 0 {
            return Ok(());
        }
        let first = self.first_error.lock().expect("not poisoned").clone();
        Err(IngestError::Kafka(format!(
            "{failed} of {records} records were not delivered (first error: {})",
            first.unwrap_or_default()
        )))
    }
}

fn kafka_of(loaded: &LoadedConfig) -> Result<&KafkaConfig, IngestError> {
    match &loaded.config.source {
        SourceConfig::Kafka(k) => Ok(k),
        _ => Err(IngestError::Usage(format!(
            "`produce` writes to the pipeline's Kafka topic, and `{}` has a source of another kind",
            loaded.config.name
        ))),
    }
}

/// Creates the topic with `partitions` partitions, unless it exists.
async fn ensure_topic(
    kafka: &KafkaConfig,
    topic: &str,
    partitions: i32,
) -> Result<(), IngestError> {
    let admin: AdminClient<DefaultClientContext> = crate::sources::kafka::client_of(kafka)
        .create()
        .map_err(|e| IngestError::Kafka(format!("cannot connect to {}: {e}", kafka.brokers)))?;
    let new = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics([&new], &opts)
        .await
        .map_err(|e| IngestError::Kafka(format!("cannot create topic `{topic}`: {e}")))?;
    for r in results {
        match r {
            Ok(_) => tracing::info!(topic, partitions, "created the topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(IngestError::Kafka(format!(
                    "cannot create topic `{topic}`: {code}"
                )));
            }
        }
    }
    Ok(())
}

/// Produces every line of the input into the pipeline's (first) topic.
pub async fn produce(
    loaded: &LoadedConfig,
    opts: &ProduceOptions,
) -> Result<ProduceSummary, IngestError> {
    let started = Instant::now();
    let kafka = kafka_of(loaded)?;
    let topic = kafka.topic.names().remove(0);
    ensure_topic(kafka, &topic, opts.partitions).await?;
    if let Some(key) = &opts.key {
        let events = shared::schema::event_schema(&loaded.config.format);
        if events.field_with_name(key).is_err() {
            return Err(IngestError::Usage(format!(
                "--key: no parsed field `{key}`"
            )));
        }
    }
    let input = open_input(opts.input.as_deref())?;
    let config = loaded.config.clone();
    let kafka = kafka.clone();
    let key = opts.key.clone();
    let batch_records = opts.batch_records.max(1);
    tokio::task::spawn_blocking(move || {
        let producer = producer_of(&kafka, batch_records)?;
        let mut parser = parser_for(&config.format);
        let mut summary = ProduceSummary::default();
        let mut send = |data: &[u8]| {
            let keys = match &key {
                Some(k) => line_keys(parser.as_mut(), data, k),
                None => Vec::new(),
            };
            send_lines(&producer, &topic, data, &keys, &mut summary)
        };
        read_in_lines(input, &mut send)?;
        producer
            .flush(Duration::from_secs(120))
            .map_err(|e| IngestError::Kafka(format!("cannot deliver every record: {e}")))?;
        producer.context().check(summary.records)?;
        summary.seconds = started.elapsed().as_secs_f64();
        Ok(summary)
    })
    .await
    .map_err(|e| IngestError::Internal(format!("the producer panicked: {e}")))?
}

/// The file to produce, or standard input.
fn open_input(path: Option<&std::path::Path>) -> Result<Box<dyn Read + Send>, IngestError> {
    Ok(match path {
        Some(p) => {
            Box::new(
                std::fs::File::open(p).map_err(|source| crate::sources::SourceError {
                    input: p.display().to_string(),
                    source,
                })?,
            )
        }
        None => Box::new(std::io::stdin()),
    })
}

/// A producer of the pipeline's brokers that keeps each key's records in order.
fn producer_of(
    kafka: &KafkaConfig,
    batch_records: u32,
) -> Result<BaseProducer<Deliveries>, IngestError> {
    crate::sources::kafka::client_of(kafka)
        // One request in flight per broker: a retried batch cannot land after the next
        // one (the records of a host stay in order without an idempotent producer).
        .set("max.in.flight.requests.per.connection", "1")
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .set("batch.num.messages", batch_records.to_string())
        .create_with_context(Deliveries::default())
        .map_err(|e| IngestError::Kafka(format!("cannot create a producer: {e}")))
}

/// Reads `input` to its end and hands `send` its complete lines, a read at a time (the last
/// line even without its `\n`).
fn read_in_lines(
    mut input: Box<dyn Read + Send>,
    send: &mut impl FnMut(&[u8]) -> Result<(), IngestError>,
) -> Result<(), IngestError> {
    let mut rest = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = input
            .read(&mut buf)
            .map_err(|e| IngestError::Internal(format!("reading the input: {e}")))?;
        let mut data = std::mem::take(&mut rest);
        data.extend_from_slice(&buf[..n]);
        let cut = if n == 0 {
            data.len()
        } else {
            data.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1)
        };
        rest = data.split_off(cut);
        if !data.is_empty() {
            send(&data)?;
        }
        if n == 0 {
            return Ok(());
        }
    }
}

/// The key of each line of `data`: the parsed `field` (`None` for an invalid line or a NULL).
fn line_keys(
    parser: &mut dyn crate::format::EventParser,
    data: &[u8],
    field: &str,
) -> Vec<Option<String>> {
    let parsed = parse_chunk(parser, data, false);
    let invalid: HashSet<u64> = parsed.invalid.iter().map(|i| i.index).collect();
    let Some(column) = parsed.batch.column_by_name(field) else {
        return Vec::new();
    };
    let Ok(fmt) = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default()) else {
        return Vec::new();
    };
    let mut row = 0;
    let mut keys = Vec::with_capacity(parsed.lines as usize);
    for line in 0..parsed.lines {
        if invalid.contains(&line) || row >= column.len() {
            keys.push(None);
        } else {
            keys.push((!column.is_null(row)).then(|| fmt.value(row).to_string()));
            row += 1;
        }
    }
    keys
}

/// Sends each line (without its newline) as a record, waiting when the queue is full.
fn send_lines(
    producer: &BaseProducer<Deliveries>,
    topic: &str,
    data: &[u8],
    keys: &[Option<String>],
    summary: &mut ProduceSummary,
) -> Result<(), IngestError> {
    let lines = data
        .strip_suffix(b"\n")
        .unwrap_or(data)
        .split(|&b| b == b'\n');
    for (i, line) in lines.enumerate() {
        let key = keys.get(i).and_then(|k| k.as_deref());
        loop {
            let mut record = BaseRecord::<str, [u8]>::to(topic).payload(line);
            if let Some(k) = key {
                record = record.key(k);
            }
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(50));
                }
                Err((e, _)) => return Err(IngestError::Kafka(format!("cannot produce: {e}"))),
            }
        }
        summary.records += 1;
        summary.bytes += line.len() as u64;
    }
    producer.poll(Duration::ZERO);
    Ok(())
}
