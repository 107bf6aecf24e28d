//! A round trip through the embedded broker with plain rdkafka clients: keyed records with
//! headers and timestamps into 4 partitions, read back in per-partition order.

use std::collections::HashMap;
use std::time::Duration;

use brook_runtime::kafka::{consumer_config, create_topic, partition_for_key, producer_config};
use brook_runtime::rdkafka::consumer::{Consumer, StreamConsumer};
use brook_runtime::rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::rdkafka::util::Timeout;

const RECORDS: usize = 400;
const PARTITIONS: i32 = 4;

#[derive(Debug, Clone, PartialEq)]
struct Rec {
    key: String,
    value: String,
    timestamp: i64,
    header: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keyed_records_round_trip_in_partition_order() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    create_topic(&bootstrap, "round-trip", PARTITIONS, 1)
        .await
        .expect("create topic");

    let producer: FutureProducer = producer_config(&bootstrap).create().expect("producer");
    let base_ts = 1_700_000_000_000i64;
    let mut sent: HashMap<i32, Vec<Rec>> = HashMap::new();
    for i in 0..RECORDS {
        let rec = Rec {
            key: format!("key-{}", i % 37),
            value: format!("{{\"n\":{i}}}"),
            timestamp: base_ts + i as i64,
            header: format!("h{i}"),
        };
        let headers = OwnedHeaders::new().insert(Header {
            key: "trace",
            value: Some(rec.header.as_bytes()),
        });
        let delivery = producer
            .send(
                FutureRecord::to("round-trip")
                    .key(&rec.key)
                    .payload(&rec.value)
                    .timestamp(rec.timestamp)
                    .headers(headers),
                Timeout::After(Duration::from_secs(30)),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("delivered");
        // Kafka's default partitioner (murmur2) must decide where a key goes, so that Brook's
        // outputs are co-partitioned with what Java clients write.
        assert_eq!(
            delivery.partition,
            partition_for_key(rec.key.as_bytes(), PARTITIONS),
            "key {} landed off its murmur2 partition",
            rec.key
        );
        sent.entry(delivery.partition).or_default().push(rec);
    }
    assert_eq!(
        sent.len(),
        PARTITIONS as usize,
        "every partition got records"
    );

    let consumer: StreamConsumer = consumer_config(&bootstrap, "round-trip-reader")
        .create()
        .expect("consumer");
    consumer.subscribe(&["round-trip"]).expect("subscribe");
    let mut got: HashMap<i32, Vec<(i64, Rec)>> = HashMap::new();
    let mut count = 0;
    let deadline = tokio::time::Instant::now() + brook_tests::DEADLINE;
    while count < RECORDS {
        let msg = tokio::time::timeout_at(deadline, consumer.recv())
            .await
            .unwrap_or_else(|_| panic!("only {count} of {RECORDS} records came back"))
            .expect("consume");
        let header = msg
            .headers()
            .and_then(|h| h.iter().find(|h| h.key == "trace"))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).to_string())
            .unwrap_or_default();
        let rec = Rec {
            key: String::from_utf8_lossy(msg.key().unwrap_or_default()).to_string(),
            value: String::from_utf8_lossy(msg.payload().unwrap_or_default()).to_string(),
            timestamp: msg.timestamp().to_millis().unwrap_or(-1),
            header,
        };
        got.entry(msg.partition())
            .or_default()
            .push((msg.offset(), rec));
        count += 1;
    }
    for (partition, records) in &got {
        let offsets: Vec<i64> = records.iter().map(|(o, _)| *o).collect();
        let expected_offsets: Vec<i64> = (0..records.len() as i64).collect();
        assert_eq!(offsets, expected_offsets, "partition {partition} offsets");
        let recs: Vec<Rec> = records.iter().map(|(_, r)| r.clone()).collect();
        assert_eq!(&recs, &sent[partition], "partition {partition} records");
    }
}
