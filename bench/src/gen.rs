//! Data generators: the README's orders stream and Nexmark's Person, Auction and Bid events,
//! deterministic for a seed, as in-memory records (for engine-only runs) or written into a
//! Kafka topic at a given rate or as fast as possible (for end-to-end runs and demos).

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use brook_runtime::kafka::{partition_for_key, producer_config};
use brook_runtime::rdkafka::error::KafkaError;
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_runtime::rdkafka::types::RDKafkaErrorCode;
use brook_runtime::rows::Record;
use nexmark::event::Event;

use crate::BenchError;

/// The orders stream's DDL (the README's), with the topic's partition count.
pub const ORDERS_DDL: &str = "CREATE STREAM orders (orderId STRING KEY, customerId STRING, \
     items ARRAY<STRING>, total DOUBLE, createdAt BIGINT) WITH (KAFKA_TOPIC='orders', \
     VALUE_FORMAT='JSON', PARTITIONS=4, TIMESTAMP='createdAt');";

/// The README's stateless query: keeps the orders over 1,000 (about half of them).
pub const BIG_ORDERS: &str = "CREATE STREAM big_orders AS SELECT orderId, customerId, total \
     FROM orders WHERE total > 1000 EMIT CHANGES;";

/// First `createdAt` of generated orders (2023-11-14T22:13:20Z).
pub const ORDERS_EPOCH_MS: i64 = 1_700_000_000_000;

/// splitmix64: a counter-based generator, so order `i` is the same whichever order or thread
/// generates it.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// One generated order.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    /// The record key (KAFKA format: the orderId's UTF-8 bytes).
    pub key: Vec<u8>,
    /// The JSON value, about 150 bytes.
    pub value: Vec<u8>,
    pub total: f64,
    pub created_at: i64,
    pub customer: u64,
}

/// The orders stream: unique order ids, `customers` distinct customers, totals uniform in
/// [0, 2000) with cents, 3–5 items, one order per millisecond of `createdAt`.
#[derive(Debug, Clone)]
pub struct OrdersGen {
    pub seed: u64,
    pub customers: u64,
}

impl Default for OrdersGen {
    fn default() -> Self {
        OrdersGen {
            seed: 42,
            customers: 10_000,
        }
    }
}

impl OrdersGen {
    pub fn order(&self, i: u64) -> Order {
        let r = mix(self.seed ^ mix(i));
        let customer = r % self.customers;
        let cents = (r >> 20) % 200_000;
        let total = cents as f64 / 100.0;
        let items = 3 + (r >> 40) % 3;
        let created_at = ORDERS_EPOCH_MS + i as i64;
        let mut value = String::with_capacity(192);
        // Written by hand rather than through serde_json so generation stays cheap next to
        // what is measured; the shape is what any JSON producer would write.
        let _ = write!(
            value,
            "{{\"customerId\":\"customer-{customer:06}\",\"items\":["
        );
        for k in 0..items {
            if k > 0 {
                value.push(',');
            }
            let _ = write!(value, "\"sku-{:08}\"", mix(r ^ k) % 100_000_000);
        }
        let _ = write!(
            value,
            "],\"total\":{}.{:02},\"createdAt\":{created_at}}}",
            cents / 100,
            cents % 100
        );
        Order {
            key: format!("order-{i:012}").into_bytes(),
            value: value.into_bytes(),
            total,
            created_at,
            customer,
        }
    }

    /// Orders `from..to` as records of a topic with `partitions` partitions (Kafka's
    /// murmur2 placement; offsets as the broker would give them if only these were written).
    pub fn records(&self, range: std::ops::Range<u64>, partitions: i32) -> Vec<Record> {
        let mut offsets = vec![0i64; partitions.max(1) as usize];
        range
            .map(|i| {
                let o = self.order(i);
                let p = partition_for_key(&o.key, partitions);
                let offset = offsets[p as usize];
                offsets[p as usize] += 1;
                Record {
                    key: Some(o.key),
                    value: Some(o.value),
                    timestamp: o.created_at,
                    headers: Vec::new(),
                    partition: p,
                    offset,
                }
            })
            .collect()
    }

    /// How many of orders `0..n` the README's `big_orders` query keeps.
    pub fn big_orders(&self, n: u64) -> u64 {
        (0..n).filter(|i| self.order(*i).total > 1000.0).count() as u64
    }
}

/// The customers table for the join: one row per customer of [`OrdersGen`].
pub const CUSTOMERS_DDL: &str = "CREATE TABLE customers (id STRING PRIMARY KEY, name STRING, \
     city STRING) WITH (KAFKA_TOPIC='customers', VALUE_FORMAT='JSON', PARTITIONS=4);";

pub fn customer_records(customers: u64, partitions: i32) -> Vec<Record> {
    let mut offsets = vec![0i64; partitions.max(1) as usize];
    (0..customers)
        .map(|c| {
            let key = format!("customer-{c:06}").into_bytes();
            let value = format!(
                "{{\"name\":\"Customer {c}\",\"city\":\"City {}\"}}",
                c % 500
            )
            .into_bytes();
            let p = partition_for_key(&key, partitions);
            let offset = offsets[p as usize];
            offsets[p as usize] += 1;
            Record {
                key: Some(key),
                value: Some(value),
                timestamp: ORDERS_EPOCH_MS - 1,
                headers: Vec::new(),
                partition: p,
                offset,
            }
        })
        .collect()
}

/// Nexmark's three streams, one topic each, with the field names of the Nexmark spec
/// (ksqlDB matches JSON fields to columns case-insensitively).
pub const NEXMARK_DDL: &str = "\
CREATE STREAM person (id BIGINT, name STRING, emailAddress STRING, creditCard STRING, \
  city STRING, state STRING, dateTime BIGINT, extra STRING) \
  WITH (KAFKA_TOPIC='person', VALUE_FORMAT='JSON', PARTITIONS=1, TIMESTAMP='dateTime');
CREATE STREAM auction (id BIGINT, itemName STRING, description STRING, initialBid BIGINT, \
  reserve BIGINT, dateTime BIGINT, expires BIGINT, seller BIGINT, category BIGINT, extra STRING) \
  WITH (KAFKA_TOPIC='auction', VALUE_FORMAT='JSON', PARTITIONS=1, TIMESTAMP='dateTime');
CREATE STREAM bid (auction BIGINT, bidder BIGINT, price BIGINT, channel STRING, url STRING, \
  dateTime BIGINT, extra STRING) \
  WITH (KAFKA_TOPIC='bid', VALUE_FORMAT='JSON', PARTITIONS=1, TIMESTAMP='dateTime');";

/// Which Nexmark stream an event goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NexmarkTopic {
    Person,
    Auction,
    Bid,
}

impl NexmarkTopic {
    pub fn topic(self) -> &'static str {
        match self {
            NexmarkTopic::Person => "person",
            NexmarkTopic::Auction => "auction",
            NexmarkTopic::Bid => "bid",
        }
    }
}

/// A Nexmark event as a JSON value for its topic (unkeyed, as Nexmark's Kafka source is).
pub fn nexmark_json(e: &Event) -> (NexmarkTopic, i64, Vec<u8>) {
    use serde_json::json;
    let (topic, ts, v) = match e {
        Event::Person(p) => (
            NexmarkTopic::Person,
            p.date_time,
            json!({"id": p.id, "name": p.name, "emailAddress": p.email_address,
                   "creditCard": p.credit_card, "city": p.city, "state": p.state,
                   "dateTime": p.date_time, "extra": p.extra}),
        ),
        Event::Auction(a) => (
            NexmarkTopic::Auction,
            a.date_time,
            json!({"id": a.id, "itemName": a.item_name, "description": a.description,
                   "initialBid": a.initial_bid, "reserve": a.reserve, "dateTime": a.date_time,
                   "expires": a.expires, "seller": a.seller, "category": a.category,
                   "extra": a.extra}),
        ),
        Event::Bid(b) => (
            NexmarkTopic::Bid,
            b.date_time,
            json!({"auction": b.auction, "bidder": b.bidder, "price": b.price,
                   "channel": b.channel, "url": b.url, "dateTime": b.date_time,
                   "extra": b.extra}),
        ),
    };
    (topic, ts as i64, v.to_string().into_bytes())
}

/// The Nexmark events' first timestamp (2023-11-14T22:13:20Z).
pub const NEXMARK_BASE_TIME_MS: u64 = 1_700_000_000_000;

/// The first `n` events of Nexmark's default generator, as records per topic (the default
/// mix: 1 person, 3 auctions, 46 bids in every 50 events).
pub fn nexmark_records(n: usize) -> Vec<(NexmarkTopic, Record)> {
    let mut offsets = [0i64; 3];
    // `EventGenerator::default()` has a step of 0 (every event the same), and the default
    // config's base time is the wall clock: both are set here for a repeatable stream.
    let config = nexmark::config::NexmarkConfig {
        base_time: NEXMARK_BASE_TIME_MS,
        ..Default::default()
    };
    nexmark::EventGenerator::new(config)
        .take(n)
        .map(|e| {
            let (topic, ts, value) = nexmark_json(&e);
            let slot = topic as usize;
            let offset = offsets[slot];
            offsets[slot] += 1;
            (
                topic,
                Record {
                    key: None,
                    value: Some(value),
                    timestamp: ts,
                    headers: Vec::new(),
                    partition: 0,
                    offset,
                },
            )
        })
        .collect()
}

/// Writes records into a topic through rdkafka, as fast as the broker takes them or at
/// `rate` records per second, and waits until every one is acknowledged. Returns the
/// moment each record was handed to the producer (for latency measurements).
pub async fn produce(
    bootstrap: &brook_runtime::kafka::Kafka,
    topic: &str,
    records: impl IntoIterator<Item = Record>,
    rate: Option<u64>,
    linger_ms: u32,
) -> Result<Vec<Instant>, BenchError> {
    let producer: FutureProducer = producer_config(bootstrap)
        .set("linger.ms", linger_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let start = Instant::now();
    let mut sent = Vec::new();
    let mut pending = std::collections::VecDeque::new();
    for (i, r) in records.into_iter().enumerate() {
        if let Some(rate) = rate {
            // Paced against the start, not the previous record, so a late tick catches up
            // instead of lowering the rate.
            let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
        }
        loop {
            let mut rec: FutureRecord<'_, [u8], [u8]> =
                FutureRecord::to(topic).timestamp(r.timestamp);
            if let Some(k) = &r.key {
                rec = rec.key(k.as_slice());
            }
            if let Some(v) = &r.value {
                rec = rec.payload(v.as_slice());
            }
            match producer.send_result(rec) {
                Ok(d) => {
                    sent.push(Instant::now());
                    pending.push_back(d);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    match pending.pop_front() {
                        Some(d) => delivered(d).await?,
                        None => tokio::time::sleep(Duration::from_millis(1)).await,
                    }
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        if pending.len() > 100_000 {
            while pending.len() > 50_000 {
                if let Some(d) = pending.pop_front() {
                    delivered(d).await?;
                }
            }
        }
    }
    for d in pending {
        delivered(d).await?;
    }
    Ok(sent)
}

pub(crate) async fn delivered(
    d: brook_runtime::rdkafka::producer::DeliveryFuture,
) -> Result<(), BenchError> {
    match d.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err((e, _))) => Err(e.into()),
        Err(_) => Err(BenchError::Setup("the producer was dropped".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_are_deterministic_and_about_150_bytes() {
        let g = OrdersGen::default();
        assert_eq!(g.order(7), g.order(7));
        let n = 2_000;
        let bytes: usize = (0..n).map(|i| g.order(i).value.len()).sum();
        let avg = bytes as f64 / n as f64;
        assert!((130.0..170.0).contains(&avg), "average value size {avg}");
        let v: serde_json::Value = serde_json::from_slice(&g.order(3).value).expect("JSON");
        assert!(v["total"].is_number() && v["items"].is_array());
    }

    #[test]
    fn nexmark_events_serialize() {
        let recs = nexmark_records(100);
        assert_eq!(recs.len(), 100);
        let bids = recs.iter().filter(|(t, _)| *t == NexmarkTopic::Bid).count();
        assert_eq!(bids, 92);
        assert_eq!(nexmark_records(100), recs, "repeatable");
    }
}
