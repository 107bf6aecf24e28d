//! Input and output records: encoded and decoded with the formats of the sources that read
//! or write their topics. The harness plans the case's statements in a catalog of its own
//! (the server's is out of reach), as ksqlDB's harness asks its engine for a topic's serdes.
//! AVRO, PROTOBUF and JSON_SR records carry schema ids of the server's schema registry,
//! which the harness reaches over its Schema Registry API, as ksqlDB's harness uses its
//! schema-registry client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use brook_planner::catalog::{Source, WindowType};
use brook_planner::schema::{Column, Namespace};
use brook_planner::types::NoTypes;
use brook_runtime::format;
use brook_runtime::format::registry::SchemaRegistry;
use brook_runtime::kafka::{client_config, producer_config};
use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
use brook_runtime::rdkafka::message::{Header, Message, OwnedHeaders};
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::rdkafka::{Offset, TopicPartitionList};
use brook_runtime::session::Session;
use serde_json::Value;

/// The sources the case's statements declare, planned locally.
pub struct LocalCatalog {
    session: Session,
    /// The server's schema registry: columns left out of `CREATE` statements are inferred
    /// from it, and records are written and read with its schema ids.
    registry: Arc<dyn SchemaRegistry>,
}

impl LocalCatalog {
    pub fn new(
        properties: &serde_json::Map<String, Value>,
        registry: Arc<dyn SchemaRegistry>,
    ) -> Self {
        let mut session = Session::new();
        session.registry = Arc::clone(&registry);
        for (k, v) in properties {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            session.set_property(k, &text);
        }
        LocalCatalog { session, registry }
    }

    /// Plans the statements one by one; one the planner refuses is left out (the server
    /// answers for it), the others still declare their sources.
    pub fn plan(&mut self, statements: &[String]) {
        for sql in statements {
            let Ok(parsed) = brook_sql::parse(sql) else {
                continue;
            };
            for ps in parsed {
                let _ = self.session.plan(&ps, &|_| Some(1));
            }
        }
    }

    /// The source reading or writing `topic`; a source declared on it comes before a query's
    /// sink that writes it.
    pub fn source_for_topic(&self, topic: &str) -> Option<&Source> {
        let sources = || self.session.catalog.sources.values();
        sources()
            .filter(|s| s.topic == topic)
            .min_by_key(|s| is_sink(&s.sql))
    }
}

fn is_sink(sql: &str) -> bool {
    sql.to_ascii_uppercase().contains(" AS SELECT")
}

fn columns(source: &Source, key: bool) -> Vec<Column> {
    source
        .schema
        .columns
        .iter()
        .filter(|c| {
            (c.namespace == Namespace::Key) == key
                && !matches!(c.namespace, Namespace::Headers | Namespace::Header(_))
        })
        .cloned()
        .collect()
}

fn part(key: bool) -> format::Part {
    if key {
        format::Part::Key
    } else {
        format::Part::Value
    }
}

/// The codec of `source`'s key or value on `topic`, with the server's registry.
fn codec(
    catalog: &LocalCatalog,
    source: &Source,
    topic: &str,
    key: bool,
) -> Result<format::Codec, String> {
    let spec = if key {
        &source.key_format
    } else {
        &source.value_format
    };
    let codec = format::Codec::new(spec, part(key), &columns(source, key), &NoTypes)
        .map_err(|e| e.to_string())?;
    Ok(codec.with_registry(Arc::clone(&catalog.registry), topic))
}

fn to_payload(
    catalog: &LocalCatalog,
    source: Option<&Source>,
    topic: &str,
    key: bool,
    v: &Value,
) -> Result<Option<Vec<u8>>, String> {
    match source {
        Some(s) => codec(catalog, s, topic, key)?
            .json_to_payload(v)
            .map_err(|e| e.to_string()),
        None => Ok(match v {
            Value::Null => None,
            Value::String(s) => Some(s.as_bytes().to_vec()),
            other => Some(other.to_string().into_bytes()),
        }),
    }
}

fn from_payload(
    catalog: &LocalCatalog,
    source: Option<&Source>,
    topic: &str,
    key: bool,
    p: Option<&[u8]>,
) -> Result<Value, String> {
    match source {
        Some(s) => codec(catalog, s, topic, key)?
            .payload_to_json(p)
            .map_err(|e| e.to_string()),
        None => Ok(match p {
            None => Value::Null,
            Some(b) => serde_json::from_slice(b)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).to_string())),
        }),
    }
}

/// A record to produce, encoded.
pub struct Encoded {
    pub topic: String,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
    pub partition: Option<i32>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Encodes one `inputs` entry.
pub fn encode_input(catalog: &LocalCatalog, input: &Value) -> Result<Encoded, String> {
    let topic = input["topic"].as_str().unwrap_or_default().to_string();
    let source = catalog.source_for_topic(&topic);
    let key = to_payload(catalog, source, &topic, true, &input["key"])
        .map_err(|e| format!("input key {}: {e}", input["key"]))?;
    // A windowed key carries its window after the key, as Kafka Streams writes it.
    let key = match (source.and_then(|s| s.window), input.get("window")) {
        (Some(w), Some(win)) => {
            let start = win["start"].as_i64().unwrap_or(0);
            let end = win["end"].as_i64().unwrap_or(0);
            let mut k = key.unwrap_or_default();
            if w == WindowType::Session {
                k.extend_from_slice(&end.to_be_bytes());
            }
            k.extend_from_slice(&start.to_be_bytes());
            Some(k)
        }
        _ => key,
    };
    let value = to_payload(catalog, source, &topic, false, &input["value"])
        .map_err(|e| format!("input value {}: {e}", input["value"]))?;
    let headers = input["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            let k = h["KEY"].as_str().unwrap_or_default().to_string();
            let v = h["VALUE"]
                .as_str()
                .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok());
            (k, v)
        })
        .collect();
    Ok(Encoded {
        topic,
        key,
        value,
        // ksqlDB's harness sends a record without a timestamp at 0.
        timestamp: input["timestamp"].as_i64().unwrap_or(0),
        partition: input["partition"].as_i64().map(|p| p as i32),
        headers,
    })
}

/// Produces the records in order and waits for every acknowledgement.
pub async fn produce(
    bootstrap: &brook_runtime::kafka::Kafka,
    records: &[Encoded],
) -> Result<(), String> {
    if records.is_empty() {
        return Ok(());
    }
    let producer: FutureProducer = producer_config(bootstrap)
        .create()
        .map_err(|e| format!("producer: {e}"))?;
    for r in records {
        let mut rec: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&r.topic).timestamp(r.timestamp);
        if let Some(k) = &r.key {
            rec = rec.key(k.as_slice());
        }
        if let Some(v) = &r.value {
            rec = rec.payload(v.as_slice());
        }
        if let Some(p) = r.partition {
            rec = rec.partition(p);
        }
        if !r.headers.is_empty() {
            let mut hs = OwnedHeaders::new();
            for (key, value) in &r.headers {
                hs = hs.insert(Header {
                    key,
                    value: value.as_deref(),
                });
            }
            rec = rec.headers(hs);
        }
        producer
            .send(rec, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| format!("producing to {}: {e}", r.topic))?;
    }
    Ok(())
}

/// A record read back from a topic.
#[derive(Debug)]
pub struct Received {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
}

/// Reads `topic` from the beginning until `want` records arrived or `wait` passed; records
/// are in partition order, each partition in offset order.
pub fn consume(
    bootstrap: &brook_runtime::kafka::Kafka,
    topic: &str,
    want: usize,
    wait: Duration,
) -> Result<Vec<Received>, String> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "_brook_rest_qtt_reader")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| format!("consumer: {e}"))?;
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .map_err(|e| format!("metadata of {topic}: {e}"))?;
    let partitions: Vec<i32> = metadata
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    let mut tpl = TopicPartitionList::new();
    for p in &partitions {
        tpl.add_partition_offset(topic, *p, Offset::Beginning)
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    let mut got: Vec<(i32, i64, Received)> = Vec::new();
    let deadline = Instant::now() + wait;
    while got.len() < want && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.map_err(|e| format!("consuming {topic}: {e}"))?;
            got.push((
                m.partition(),
                m.offset(),
                Received {
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    timestamp: m.timestamp().to_millis().unwrap_or(0),
                },
            ));
        }
    }
    // A moment more, so that records beyond the expected ones show up as extra.
    let settle = Instant::now() + Duration::from_millis(200);
    while Instant::now() < settle {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(50)) {
            got.push((
                m.partition(),
                m.offset(),
                Received {
                    key: m.key().map(<[u8]>::to_vec),
                    value: m.payload().map(<[u8]>::to_vec),
                    timestamp: m.timestamp().to_millis().unwrap_or(0),
                },
            ));
        }
    }
    got.sort_by_key(|(p, o, _)| (*p, *o));
    Ok(got.into_iter().map(|(_, _, r)| r).collect())
}

/// A record read back, as JSON, for comparison with an `outputs` entry.
pub fn decode_output(
    catalog: &LocalCatalog,
    topic: &str,
    r: &Received,
) -> Result<(Value, Value), String> {
    let source = catalog.source_for_topic(topic);
    let key = match source.and_then(|s| s.window) {
        // The window trails the key; `outputs` here never check it.
        Some(WindowType::Session) => r.key.as_deref().map(|k| &k[..k.len().saturating_sub(16)]),
        Some(_) => r.key.as_deref().map(|k| &k[..k.len().saturating_sub(8)]),
        None => r.key.as_deref(),
    };
    let key = from_payload(catalog, source, topic, true, key)?;
    let value = from_payload(catalog, source, topic, false, r.value.as_deref())?;
    Ok((key, value))
}
