//! Kafka client settings and topic administration, all through rdkafka.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::TopicPartitionList;

use crate::error::{Result, RuntimeError};

mod connection;
pub use connection::{check_connection, config_error, is_secret, ClientSecurity, Kafka, REDACTED};

/// Settings every Brook client starts from: the cluster's servers and its security settings.
pub fn client_config(kafka: &Kafka) -> ClientConfig {
    kafka.client_config()
}

/// A producer's settings. Kafka's Java clients place keyed records with murmur2, librdkafka's
/// default is CRC32: without this, Brook's output would not be co-partitioned with what other
/// Kafka clients write.
pub fn producer_config(kafka: &Kafka) -> ClientConfig {
    let mut c = client_config(kafka);
    c.set("partitioner", "murmur2_random")
        .set("enable.idempotence", "true")
        .set("linger.ms", "5");
    c
}

/// A consumer's settings for a group; offsets are committed by Brook, never automatically,
/// so a commit always follows the outputs it covers.
pub fn consumer_config(kafka: &Kafka, group_id: &str) -> ClientConfig {
    let mut c = client_config(kafka);
    c.set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest");
    c
}

/// Creates a topic; an existing topic is not an error.
pub async fn create_topic(
    kafka: &Kafka,
    topic: &str,
    partitions: i32,
    replicas: i32,
) -> Result<()> {
    create_topic_with(kafka, topic, partitions, replicas, &[]).await
}

/// Creates a topic with topic-level settings (e.g. `cleanup.policy`); an existing topic is
/// not an error.
pub async fn create_topic_with(
    kafka: &Kafka,
    topic: &str,
    partitions: i32,
    replicas: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = client_config(kafka).create()?;
    create_with(&admin, topic, partitions, replicas, configs).await
}

async fn create_with(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    partitions: i32,
    replicas: i32,
    configs: &[(&str, &str)],
) -> Result<()> {
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replicas));
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let results = admin.create_topics([&new], &opts).await?;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(RuntimeError::CreateTopic {
                    topic: name,
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Long-lived clients for topic metadata and topic creation. A server keeps one: a client
/// per statement costs its creation, its connections and its teardown every time, which
/// dominated starting a thousand queries.
pub struct Admin {
    metadata: std::sync::Arc<BaseConsumer>,
    /// Shared so blocking calls through librdkafka's C API can take it to another thread.
    admin: std::sync::Arc<AdminClient<DefaultClientContext>>,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin").finish_non_exhaustive()
    }
}

impl Admin {
    pub fn new(kafka: &Kafka) -> Result<Admin> {
        Ok(Admin {
            metadata: std::sync::Arc::new(client_config(kafka).create()?),
            admin: std::sync::Arc::new(client_config(kafka).create()?),
        })
    }

    /// Partition counts of every topic (as [`topic_partitions`]).
    pub async fn topic_partitions(
        &self,
        timeout: Duration,
    ) -> Result<std::collections::HashMap<String, i32>> {
        let c = self.metadata.clone();
        tokio::task::spawn_blocking(move || partition_counts(&c, timeout))
            .await
            .map_err(|e| RuntimeError::Broker(format!("metadata task failed: {e}")))?
    }

    /// Creates a topic (as [`create_topic`]).
    pub async fn create_topic(&self, topic: &str, partitions: i32, replicas: i32) -> Result<()> {
        create_with(&self.admin, topic, partitions, replicas, &[]).await
    }

    /// Creates a topic with topic-level settings (as [`create_topic_with`]).
    pub async fn create_topic_with(
        &self,
        topic: &str,
        partitions: i32,
        replicas: i32,
        configs: &[(&str, &str)],
    ) -> Result<()> {
        create_with(&self.admin, topic, partitions, replicas, configs).await
    }

    /// A topic's settings as the broker reports them (its defaults included).
    pub async fn topic_config(
        &self,
        topic: &str,
    ) -> Result<std::collections::HashMap<String, String>> {
        use rdkafka::admin::ResourceSpecifier;
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
        let results = self
            .admin
            .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
            .await?;
        let resource = results
            .into_iter()
            .next()
            .ok_or_else(|| RuntimeError::Broker(format!("no configuration for topic {topic}")))?
            .map_err(|code| {
                RuntimeError::Broker(format!("describing topic {topic}'s configuration: {code}"))
            })?;
        Ok(resource
            .entries
            .into_iter()
            .filter_map(|e| Some((e.name, e.value?)))
            .collect())
    }

    /// Sets topic-level settings in place, leaving the others as they are (Kafka's
    /// IncrementalAlterConfigs, what `kafka-configs --alter --add-config` does).
    pub async fn set_topic_config(&self, topic: &str, configs: &[(&str, &str)]) -> Result<()> {
        let admin = self.admin.clone();
        let topic = topic.to_string();
        let configs: Vec<(String, String)> = configs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tokio::task::spawn_blocking(move || {
            incremental_alter_topic(&admin, &topic, &configs, Duration::from_secs(30))
        })
        .await
        .map_err(|e| RuntimeError::Broker(format!("config task failed: {e}")))?
    }
}

fn partition_counts(
    c: &BaseConsumer,
    timeout: Duration,
) -> Result<std::collections::HashMap<String, i32>> {
    let md = c.fetch_metadata(None, timeout)?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_string(), t.partitions().len() as i32))
        .collect())
}

/// Kafka's murmur2 hash (`org.apache.kafka.common.utils.Utils.murmur2`).
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    let len = data.len();
    let mut h: u32 = 0x9747_b28c ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> 24;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= (rest[2] as u32) << 16;
    }
    if rest.len() >= 2 {
        h ^= (rest[1] as u32) << 8;
    }
    if !rest.is_empty() {
        h ^= rest[0] as u32;
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition Kafka's default partitioner picks for a non-null key.
pub fn partition_for_key(key: &[u8], partitions: i32) -> i32 {
    ((murmur2(key) & 0x7fff_ffff) as i64 % partitions.max(1) as i64) as i32
}

/// Partition counts of every topic (absent topics are left out).
pub async fn topic_partitions(
    kafka: &Kafka,
    timeout: Duration,
) -> Result<std::collections::HashMap<String, i32>> {
    let cfg = client_config(kafka);
    tokio::task::spawn_blocking(move || partition_counts(&cfg.create()?, timeout))
        .await
        .map_err(|e| RuntimeError::Broker(format!("metadata task failed: {e}")))?
}

/// Sets consumer group `group`'s committed offsets from outside the group (Kafka's
/// AlterConsumerGroupOffsets admin call, librdkafka's `rd_kafka_AlterConsumerGroupOffsets`)
/// — what `kafka-consumer-groups --reset-offsets` does. The group must have no active
/// members. Blocking: run it off the async runtime.
///
/// The rdkafka crate does not wrap this call, so it goes through librdkafka's C API; a
/// commit from a consumer would need a client per group, which is what shared readers
/// exist to avoid.
pub fn alter_group_offsets(
    admin: &AdminClient<DefaultClientContext>,
    group: &str,
    offsets: &TopicPartitionList,
    timeout: Duration,
) -> Result<()> {
    use rdkafka::bindings as rd;
    use std::ffi::CString;

    let failed = |reason: String| {
        RuntimeError::Broker(format!("altering group {group}'s offsets: {reason}"))
    };
    let name = CString::new(group).map_err(|e| failed(e.to_string()))?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let rk = admin.inner().native_ptr();
    // SAFETY: `rk` and `offsets` are live for the whole block (borrowed); librdkafka
    // copies the request (so it is destroyed right after the call) and the result event
    // owns everything read from it until `rd_kafka_event_destroy`. Every pointer read is
    // checked for null first.
    unsafe {
        let queue = rd::rd_kafka_queue_new(rk);
        if queue.is_null() {
            return Err(failed("no result queue".into()));
        }
        let mut request = rd::rd_kafka_AlterConsumerGroupOffsets_new(name.as_ptr(), offsets.ptr());
        rd::rd_kafka_AlterConsumerGroupOffsets(rk, &mut request, 1, std::ptr::null(), queue);
        rd::rd_kafka_AlterConsumerGroupOffsets_destroy(request);
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms);
        let outcome = if event.is_null() {
            Err(failed(format!("no answer within {timeout:?}")))
        } else {
            let outcome = alter_result(event).map_err(failed);
            rd::rd_kafka_event_destroy(event);
            outcome
        };
        rd::rd_kafka_queue_destroy(queue);
        outcome
    }
}

/// An AlterConsumerGroupOffsets result event's error, its group's, or its first
/// partition's.
///
/// # Safety
/// `event` must be a live result event of that call.
unsafe fn alter_result(
    event: *mut rdkafka::bindings::rd_kafka_event_t,
) -> std::result::Result<(), String> {
    let text = |p: *const std::os::raw::c_char| {
        if p.is_null() {
            String::from("unknown error")
        } else {
            std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    if rdkafka::bindings::rd_kafka_event_error(event)
        != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR
    {
        return Err(text(rdkafka::bindings::rd_kafka_event_error_string(event)));
    }
    let result = rdkafka::bindings::rd_kafka_event_AlterConsumerGroupOffsets_result(event);
    if result.is_null() {
        return Err("not an AlterConsumerGroupOffsets result".into());
    }
    let mut count = 0usize;
    let groups =
        rdkafka::bindings::rd_kafka_AlterConsumerGroupOffsets_result_groups(result, &mut count);
    for i in 0..count {
        let g = *groups.add(i);
        let error = rdkafka::bindings::rd_kafka_group_result_error(g);
        if !error.is_null() {
            return Err(text(rdkafka::bindings::rd_kafka_error_string(error)));
        }
        let partitions = rdkafka::bindings::rd_kafka_group_result_partitions(g);
        if partitions.is_null() {
            continue;
        }
        let list = &*partitions;
        for j in 0..usize::try_from(list.cnt).unwrap_or(0) {
            let e = &*list.elems.add(j);
            if e.err != rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(format!(
                    "partition {}: {}",
                    e.partition,
                    text(rdkafka::bindings::rd_kafka_err2str(e.err))
                ));
            }
        }
    }
    Ok(())
}

/// Kafka's IncrementalAlterConfigs on one topic, SET for each of `configs`, through
/// librdkafka's C API (the rdkafka crate wraps only the legacy AlterConfigs, which replaces
/// every setting and which the embedded broker does not offer). Blocking: run it off the
/// async runtime.
pub fn incremental_alter_topic(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    configs: &[(String, String)],
    timeout: Duration,
) -> Result<()> {
    use rdkafka::bindings as rd;
    use std::ffi::CString;

    let failed = |reason: String| {
        RuntimeError::Broker(format!("altering topic {topic}'s configuration: {reason}"))
    };
    let cstr = |s: &str| CString::new(s).map_err(|e| failed(e.to_string()));
    let name = cstr(topic)?;
    let pairs: Vec<(CString, CString)> = configs
        .iter()
        .map(|(k, v)| Ok((cstr(k)?, cstr(v)?)))
        .collect::<Result<_>>()?;
    let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
    let rk = admin.inner().native_ptr();
    // SAFETY: `rk` is live for the whole block (borrowed); every CString outlives the calls
    // that read it; librdkafka copies the request, which is destroyed right after the call;
    // the result event owns what is read from it until `rd_kafka_event_destroy`. Every
    // pointer read is checked for null first.
    unsafe {
        let mut resource = rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        );
        if resource.is_null() {
            return Err(failed("cannot build the request".into()));
        }
        for (k, v) in &pairs {
            let error = rd::rd_kafka_ConfigResource_add_incremental_config(
                resource,
                k.as_ptr(),
                rd::rd_kafka_AlterConfigOpType_t::RD_KAFKA_ALTER_CONFIG_OP_TYPE_SET,
                v.as_ptr(),
            );
            if !error.is_null() {
                let reason = c_text(rd::rd_kafka_error_string(error));
                rd::rd_kafka_error_destroy(error);
                rd::rd_kafka_ConfigResource_destroy(resource);
                return Err(failed(reason));
            }
        }
        let queue = rd::rd_kafka_queue_new(rk);
        if queue.is_null() {
            rd::rd_kafka_ConfigResource_destroy(resource);
            return Err(failed("no result queue".into()));
        }
        rd::rd_kafka_IncrementalAlterConfigs(rk, &mut resource, 1, std::ptr::null(), queue);
        rd::rd_kafka_ConfigResource_destroy(resource);
        let event = rd::rd_kafka_queue_poll(queue, timeout_ms);
        let outcome = if event.is_null() {
            Err(failed(format!("no answer within {timeout:?}")))
        } else {
            let outcome = alter_configs_result(event).map_err(failed);
            rd::rd_kafka_event_destroy(event);
            outcome
        };
        rd::rd_kafka_queue_destroy(queue);
        outcome
    }
}

/// A C string from librdkafka, or "unknown error" for a null one.
///
/// # Safety
/// `p` must be null or a live NUL-terminated string.
unsafe fn c_text(p: *const std::os::raw::c_char) -> String {
    if p.is_null() {
        String::from("unknown error")
    } else {
        std::ffi::CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// An IncrementalAlterConfigs result event's error, or its first resource's.
///
/// # Safety
/// `event` must be a live result event of that call.
unsafe fn alter_configs_result(
    event: *mut rdkafka::bindings::rd_kafka_event_t,
) -> std::result::Result<(), String> {
    use rdkafka::bindings as rd;
    let ok = rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR;
    if rd::rd_kafka_event_error(event) != ok {
        return Err(c_text(rd::rd_kafka_event_error_string(event)));
    }
    let result = rd::rd_kafka_event_IncrementalAlterConfigs_result(event);
    if result.is_null() {
        return Err("not an IncrementalAlterConfigs result".into());
    }
    let mut count = 0usize;
    let resources = rd::rd_kafka_IncrementalAlterConfigs_result_resources(result, &mut count);
    for i in 0..count {
        let r = *resources.add(i);
        if rd::rd_kafka_ConfigResource_error(r) != ok {
            return Err(c_text(rd::rd_kafka_ConfigResource_error_string(r)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka() {
        // Kafka's own UtilsTest vectors.
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (data, want) in cases {
            assert_eq!(murmur2(data), want, "{}", String::from_utf8_lossy(data));
        }
    }
}
