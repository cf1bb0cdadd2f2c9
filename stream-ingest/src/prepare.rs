//! The per-event stages between parsing and the engine: a Kafka record's fields appended to
//! its event, then the pipeline's `derive` columns, then its `lookup` columns.
//!
//! They run on the parse threads ([`crate::parallel`]), right after a chunk is parsed: with
//! `derive`'s regular expressions and string functions they can cost as much as parsing, and
//! the engine thread is the one that cannot be split. The first two depend only on the
//! chunk. Lookups depend on the dimension versions in use, which the engine switches at
//! checkpoints: a worker applies the versions the engine last published and says which
//! ([`Enriched::generation`]); the engine enriches the chunk again if it must see others
//! ([`crate::lookup::Lookups::finish`]). A chunk prepared on any thread gives the same batch,
//! so the output stays identical for any `--threads`.

use std::sync::Arc;

use arrow::array::{Int32Builder, Int64Builder, RecordBatch, TimestampMicrosecondBuilder};
use arrow::datatypes::SchemaRef;
use arrow::error::ArrowError;
use shared::config::PipelineConfig;
use shared::expr::Derivations;

use crate::lookup::{Enriched, Published, Versions};
use crate::parallel::ParsedChunk;

/// What turns a parsed chunk into the engine's events.
pub struct Prepare {
    /// A Kafka source: the event schema, whose last fields come from each line's record.
    with_records: Option<SchemaRef>,
    /// The pipeline's `derive` columns, appended to each batch.
    derive: Derivations,
    /// The lookups' versions the engine uses now (none when the pipeline has no lookups).
    lookups: Published,
}

impl Prepare {
    /// Compiles the pipeline's `derive` expressions; lookups use the versions `lookups`
    /// publishes ([`crate::lookup::Lookups::published`]). An error names the index of the
    /// `derive` at fault.
    pub fn new(config: &PipelineConfig, lookups: Published) -> Result<Self, (usize, String)> {
        let source_events = shared::schema::source_events_of(config);
        let derive = Derivations::compile(&source_events, &config.derive)?;
        let kafka = matches!(config.source, shared::config::SourceConfig::Kafka(_));
        Ok(Prepare {
            with_records: kafka.then_some(source_events),
            derive,
            lookups,
        })
    }

    /// The schema of the events after `derive` (before lookups), given the source's events.
    pub fn schema<'a>(&'a self, source_events: &'a SchemaRef) -> &'a SchemaRef {
        self.derive.schema(source_events)
    }

    /// The chunk's events with their record fields, derived and lookup columns.
    pub fn apply(&self, parsed: &ParsedChunk) -> Result<Enriched, ArrowError> {
        let batch = match &self.with_records {
            Some(schema) => with_record_fields(schema, parsed)?,
            None => parsed.batch.clone(),
        };
        let batch = self.derive.apply(batch)?;
        let versions: Versions = self
            .lookups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        Ok(Enriched {
            generation: versions.generation(),
            batch: versions.apply(batch)?,
        })
    }
}

/// A parsed batch with the fields of each valid line's Kafka record appended (NULL when the
/// chunk came without records: a Kafka pipeline run on a file).
fn with_record_fields(schema: &SchemaRef, parsed: &ParsedChunk) -> Result<RecordBatch, ArrowError> {
    let rows = parsed.batch.num_rows();
    let (mut kafka_partition, mut offset) = (
        Int32Builder::with_capacity(rows),
        Int64Builder::with_capacity(rows),
    );
    let mut ts = TimestampMicrosecondBuilder::with_capacity(rows);
    let mut invalid = parsed.invalid.iter().map(|i| i.index).peekable();
    for line in 0..parsed.lines as usize {
        if invalid.next_if_eq(&(line as u64)).is_some() {
            continue;
        }
        match &parsed.records {
            Some(r) => {
                kafka_partition.append_value(r.kafka_partition);
                offset.append_option(r.offsets.get(line).copied());
                ts.append_option(r.timestamps.get(line).copied().flatten());
            }
            None => {
                kafka_partition.append_null();
                offset.append_null();
                ts.append_null();
            }
        }
    }
    let mut columns = parsed.batch.columns().to_vec();
    columns.push(Arc::new(kafka_partition.finish()));
    columns.push(Arc::new(offset.finish()));
    columns.push(Arc::new(ts.finish().with_timezone("UTC")));
    RecordBatch::try_new(schema.clone(), columns)
}
