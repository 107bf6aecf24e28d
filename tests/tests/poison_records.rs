//! Poison records (issue 20): an Avro record whose array block claims 500,000,000 items
//! (14 bytes that made apache-avro reserve 28 GB: the server aborted, and aborted again on
//! every restart since the record's offset was never committed) and a JSON record nested
//! 100,000 deep. Each is skipped, counted and written to the processing log; the records
//! after it come through; and the queries' offsets move past it, so a restarted server
//! does not read it again.

use std::collections::BTreeSet;
use std::time::Duration;

use brook_runtime::format::registry::{default_registry, register_json};
use brook_runtime::kafka::producer_config;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_server::engine::Engine;
use brook_tests::{read_expecting, read_until, ByPartition, Rec};
use serde_json::{json, Value};

const LOG: &str = "_brook_command_topic";

/// Produces one record of raw bytes; returns its partition and offset.
async fn send_bytes(p: &FutureProducer, topic: &str, key: &str, value: &[u8]) -> (i32, i64) {
    let delivery = p
        .send(
            FutureRecord::to(topic).key(key).payload(value),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap_or_else(|e| panic!("producing to {topic}: {e}"));
    (delivery.partition, delivery.offset)
}

fn zigzag(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// A good record of the writer schema `id`: V = `v`, A = [`v`].
fn avro_record(id: u32, v: i64) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    zigzag(&mut out, v);
    out.push(2);
    zigzag(&mut out, v);
    out.push(0);
    out
}

/// The poison record: the header, V = 1, then an array block claiming 500,000,000 items,
/// one item and the end of the array.
fn avro_poison(id: u32) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&[2, 0x80, 0x94, 0xEB, 0xDC, 0x03, 2, 0, 0]);
    assert_eq!(out.len(), 14);
    out
}

/// Produces the records of one round (`from..to`, with the poison ones after the first
/// round's first good record), and returns the outputs the good ones must give, per sink,
/// and where the poison ones are.
struct Produced {
    avro_out: ByPartition<(String, Value)>,
    json_out: ByPartition<(String, Value)>,
    poison: BTreeSet<(String, i32, i64)>,
}

async fn produce(p: &FutureProducer, id: u32, from: i64, to: i64, poison: bool) -> Produced {
    let mut out = Produced {
        avro_out: ByPartition::new(),
        json_out: ByPartition::new(),
        poison: BTreeSet::new(),
    };
    let deep = format!(
        "{{\"v\": 1, \"s\": {}1{}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    for n in from..to {
        let key = format!("k{n}");
        let (pa, _) = send_bytes(p, "avro_in", &key, &avro_record(id, n)).await;
        out.avro_out
            .entry(pa)
            .or_default()
            .push((key.clone(), json!({ "V": n })));
        let value = format!("{{\"v\": {n}, \"s\": \"x\"}}");
        let (pj, _) = send_bytes(p, "json_in", &key, value.as_bytes()).await;
        out.json_out
            .entry(pj)
            .or_default()
            .push((key, json!({ "V": n })));
        if poison && n == from {
            let (pa, oa) = send_bytes(p, "avro_in", "poison", &avro_poison(id)).await;
            out.poison.insert(("avro_in".into(), pa, oa));
            let (pj, oj) = send_bytes(p, "json_in", "poison", deep.as_bytes()).await;
            out.poison.insert(("json_in".into(), pj, oj));
        }
    }
    out
}

/// Each query's (records read, records skipped), by sink.
async fn stats(engine: &Engine) -> Vec<(String, bool, u64, u64)> {
    let mut s: Vec<_> = engine
        .queries()
        .await
        .into_iter()
        .map(|q| (q.sink, q.running, q.stats.records_in, q.stats.errors))
        .collect();
    s.sort();
    s
}

fn value_v(r: &Rec) -> (String, Value) {
    (r.key_text(), r.json())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_records_are_skipped_logged_and_never_read_again() {
    let broker = brook_tests::broker().await;
    let kafka = broker.kafka();
    // The writer schema the Avro records name, in the registry the engine reads through.
    let schema = json!({"type": "record", "name": "R", "fields": [
        {"name": "V", "type": "long"},
        {"name": "A", "type": {"type": "array", "items": "long"}}]});
    let id =
        register_json(default_registry().as_ref(), "avro_in-value", &schema).expect("registers");

    let first = Engine::with_command_log(&kafka, LOG).expect("engine");
    assert_eq!(first.recover().await.expect("empty log"), 0);
    first
        .set_config(brook_server::engine::PROCESSING_TOPIC_AUTO_CREATE, "true")
        .await;
    let log_topic = first
        .configure_processing_log()
        .await
        .expect("processing log")
        .expect("a processing log topic");
    first
        .execute(
            "CREATE STREAM avro_in (id STRING KEY, v BIGINT, a ARRAY<BIGINT>) WITH \
             (KAFKA_TOPIC='avro_in', VALUE_FORMAT='AVRO', PARTITIONS=1);
             CREATE STREAM json_in (id STRING KEY, v BIGINT, s STRING) WITH \
             (KAFKA_TOPIC='json_in', VALUE_FORMAT='JSON', PARTITIONS=1);
             CREATE STREAM avro_out WITH (VALUE_FORMAT='JSON') AS SELECT id, v FROM avro_in;
             CREATE STREAM json_out AS SELECT id, v FROM json_in;",
        )
        .await
        .expect("statements");
    let producer: FutureProducer = producer_config(&kafka)
        .set("enable.idempotence", "false")
        .create()
        .expect("producer");

    // Good records before and after the poison ones all come through, each once.
    let round = produce(&producer, id, 0, 5, true).await;
    brook_tests::wait_processed(&first, "AVRO_OUT", 6).await;
    brook_tests::wait_processed(&first, "JSON_OUT", 6).await;
    for (sink, want) in [("AVRO_OUT", &round.avro_out), ("JSON_OUT", &round.json_out)] {
        let got = read_expecting(&kafka, sink, want, value_v).await;
        brook_tests::assert_same(&got, want, sink);
    }
    assert_eq!(
        stats(&first).await,
        [
            ("AVRO_OUT".to_string(), true, 6, 1),
            ("JSON_OUT".to_string(), true, 6, 1)
        ],
        "each query read every record, skipped the poison one and kept running"
    );

    // The processing log names each poison record and why it was skipped.
    let log = read_until(&kafka, &log_topic, |got| {
        got.values().map(Vec::len).sum::<usize>() >= 2
    })
    .await;
    let mut logged = BTreeSet::new();
    for v in log.values().flatten().map(Rec::json) {
        let e = &v["message"]["deserializationError"];
        let topic = e["topic"].as_str().unwrap_or_default().to_string();
        let cause = e["errorMessage"].as_str().unwrap_or_default();
        let want = match topic.as_str() {
            "avro_in" => "claims more items than the 3 bytes left can hold",
            _ => "nesting too deep",
        };
        assert!(cause.contains(want), "{v}");
        let partition = e["partition"].as_i64().and_then(|p| i32::try_from(p).ok());
        let (Some(partition), Some(offset)) = (partition, e["offset"].as_i64()) else {
            panic!("an entry without partition and offset: {v}");
        };
        logged.insert((topic, partition, offset));
    }
    assert_eq!(
        logged, round.poison,
        "the log names exactly the poison records"
    );
    first.shutdown().await;
    drop(first);

    // Restarted, the queries resume after what they committed: the poison records are not
    // read again, only the record produced since.
    let second = Engine::with_command_log(&kafka, LOG).expect("engine");
    second.recover().await.expect("replay");
    let next = produce(&producer, id, 5, 6, false).await;
    brook_tests::wait_processed(&second, "AVRO_OUT", 1).await;
    brook_tests::wait_processed(&second, "JSON_OUT", 1).await;
    for (sink, earlier, new) in [
        ("AVRO_OUT", &round.avro_out, &next.avro_out),
        ("JSON_OUT", &round.json_out, &next.json_out),
    ] {
        let mut want = earlier.clone();
        for (p, records) in new {
            want.entry(*p).or_default().extend(records.iter().cloned());
        }
        let got = read_expecting(&kafka, sink, &want, value_v).await;
        brook_tests::assert_same(&got, &want, sink);
    }
    assert_eq!(
        stats(&second).await,
        [
            ("AVRO_OUT".to_string(), true, 1, 0),
            ("JSON_OUT".to_string(), true, 1, 0)
        ],
        "after the restart, only the new record is read"
    );
    second.shutdown().await;
}
