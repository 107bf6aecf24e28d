//! The REST and gRPC API's resource limits, each a server setting (`--config KEY=VALUE`)
//! with a default: ksqlDB's name and default where ksqlDB has the setting, a `brook.`
//! name where it has none. A limit reached is refused with an error naming the setting;
//! `docs/limits.md` lists them.

use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// ksqlDB's: concurrent pull queries per server (default: no limit).
pub const PULL_MAX_CONCURRENT: &str = "ksql.query.pull.max.concurrent.requests";
/// ksqlDB's: persistent queries per server (default: no limit).
pub const PERSISTENT_ACTIVE_LIMIT: &str = "ksql.query.persistent.active.limit";
/// ksqlDB's: the longest a `/ws/query` connection lives (0: no limit).
pub const WEBSOCKET_MAX_TIMEOUT_MS: &str = "ksql.websocket.connection.max.timeout.ms";
/// ksqlDB's: how long a `/healthcheck` answer is reused.
pub const HEALTHCHECK_INTERVAL_MS: &str = "ksql.healthcheck.interval.ms";
/// ksqlDB's: a connection with no bytes either way for this long is closed.
pub const IDLE_CONNECTION_TIMEOUT_SECONDS: &str = "ksql.idle.connection.timeout.seconds";
/// The largest request body read whole (`/ksql`, `/query`, `/query-stream`,
/// `/close-query`, the Schema Registry endpoints, a gRPC message).
pub const REQUEST_MAX_BYTES: &str = "brook.rest.request.max.bytes";
/// How long a client may take to send a request body that is read whole.
pub const REQUEST_BODY_TIMEOUT_MS: &str = "brook.rest.request.body.timeout.ms";
/// The longest `/inserts-stream` line (one row), and gRPC Insert row.
pub const INSERTS_MAX_ROW_BYTES: &str = "brook.inserts.stream.max.row.bytes";
/// PRINT statements running at once (each has a Kafka consumer of its own).
pub const PRINT_MAX_CONCURRENT: &str = "brook.query.print.max.concurrent";
/// How long a client may take to send a request's headers (and, on a kept-alive HTTP/1
/// connection, to start the next request).
pub const HEADER_READ_TIMEOUT_MS: &str = "brook.http.header.read.timeout.ms";
/// Connections served at once; one more is answered 429 and closed.
pub const MAX_CONNECTIONS: &str = "brook.http.max.connections";
/// Concurrent HTTP/2 streams (requests, gRPC calls) per connection.
pub const HTTP2_MAX_CONCURRENT_STREAMS: &str = "brook.http2.max.concurrent.streams";

/// The limits in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub request_max_bytes: usize,
    pub request_body_timeout: Duration,
    pub inserts_max_row_bytes: usize,
    pub pull_max_concurrent: usize,
    pub persistent_active_limit: usize,
    pub print_max_concurrent: usize,
    /// `None`: WebSocket connections live as long as their query.
    pub websocket_max_lifetime: Option<Duration>,
    pub healthcheck_interval: Duration,
    pub http: HttpLimits,
}

/// The limits the connection layer enforces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_connections: usize,
    pub http2_max_concurrent_streams: u32,
}

/// ksqlDB's "no limit" (`Integer.MAX_VALUE`).
const JAVA_INT_MAX: usize = i32::MAX as usize;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            request_max_bytes: 2 << 20,
            request_body_timeout: Duration::from_secs(60),
            inserts_max_row_bytes: 1 << 20,
            pull_max_concurrent: JAVA_INT_MAX,
            persistent_active_limit: JAVA_INT_MAX,
            print_max_concurrent: 100,
            websocket_max_lifetime: Some(Duration::from_millis(3_600_000)),
            healthcheck_interval: Duration::from_millis(5000),
            http: HttpLimits {
                header_read_timeout: Duration::from_secs(30),
                idle_timeout: Duration::from_secs(86_400),
                max_connections: 4096,
                http2_max_concurrent_streams: 100,
            },
        }
    }
}

/// A setting whose value is not a number in its range.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("--config {key}={value}: expected a whole number from {min} to {max}")]
pub struct BadSetting {
    pub key: String,
    pub value: String,
    pub min: u64,
    pub max: u64,
}

fn number(key: &str, value: &str, min: u64, max: u64) -> Result<u64, BadSetting> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| BadSetting {
            key: key.to_string(),
            value: value.to_string(),
            min,
            max,
        })
}

/// The largest count a limit may have (within tokio's semaphore bound, and far above any
/// real limit).
const MAX_COUNT: u64 = u32::MAX as u64;

impl Limits {
    /// The defaults, with the settings among `config` applied (other keys are ignored).
    pub fn from_config(config: &[(String, String)]) -> Result<Limits, BadSetting> {
        let mut l = Limits::default();
        for (key, value) in config {
            let n = |min, max| number(key, value, min, max);
            let ms = |min, max| n(min, max).map(Duration::from_millis);
            match key.as_str() {
                REQUEST_MAX_BYTES => l.request_max_bytes = n(1, 1 << 30)? as usize,
                REQUEST_BODY_TIMEOUT_MS => l.request_body_timeout = ms(1, u32::MAX.into())?,
                INSERTS_MAX_ROW_BYTES => l.inserts_max_row_bytes = n(1, 1 << 30)? as usize,
                PULL_MAX_CONCURRENT => l.pull_max_concurrent = n(1, MAX_COUNT)? as usize,
                PERSISTENT_ACTIVE_LIMIT => l.persistent_active_limit = n(0, MAX_COUNT)? as usize,
                PRINT_MAX_CONCURRENT => l.print_max_concurrent = n(1, MAX_COUNT)? as usize,
                WEBSOCKET_MAX_TIMEOUT_MS => {
                    l.websocket_max_lifetime =
                        Some(ms(0, u32::MAX.into())?).filter(|d| !d.is_zero())
                }
                HEALTHCHECK_INTERVAL_MS => l.healthcheck_interval = ms(0, u32::MAX.into())?,
                IDLE_CONNECTION_TIMEOUT_SECONDS => {
                    l.http.idle_timeout = Duration::from_secs(n(1, u32::MAX.into())?)
                }
                HEADER_READ_TIMEOUT_MS => l.http.header_read_timeout = ms(1, u32::MAX.into())?,
                MAX_CONNECTIONS => l.http.max_connections = n(1, MAX_COUNT)? as usize,
                HTTP2_MAX_CONCURRENT_STREAMS => {
                    l.http.http2_max_concurrent_streams = n(1, u32::MAX.into())? as u32
                }
                _ => {}
            }
        }
        Ok(l)
    }
}

/// A count of things running at once, up to a limit: a slot is held for as long as its
/// permit lives, however the work holding it ends.
#[derive(Debug, Clone)]
pub struct Slots {
    semaphore: Arc<Semaphore>,
    limit: usize,
}

impl Slots {
    pub fn new(limit: usize) -> Self {
        let limit = limit.min(Semaphore::MAX_PERMITS);
        Slots {
            semaphore: Arc::new(Semaphore::new(limit)),
            limit,
        }
    }

    /// A slot, or `None` when all are taken.
    pub fn try_take(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.semaphore).try_acquire_owned().ok()
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Slots taken now.
    pub fn in_use(&self) -> usize {
        self.limit - self.semaphore.available_permits()
    }

    /// Waits until no slot is taken.
    pub async fn all_free(&self) {
        let all = u32::try_from(self.limit).unwrap_or(u32::MAX);
        let _ = self.semaphore.acquire_many(all).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn settings_override_the_defaults() {
        let l = Limits::from_config(&config(&[
            (PULL_MAX_CONCURRENT, "3"),
            (WEBSOCKET_MAX_TIMEOUT_MS, "0"),
            (IDLE_CONNECTION_TIMEOUT_SECONDS, "5"),
            ("ksql.streams.auto.offset.reset", "earliest"),
        ]));
        let l = l.expect("valid settings");
        assert_eq!(l.pull_max_concurrent, 3);
        assert_eq!(l.websocket_max_lifetime, None);
        assert_eq!(l.http.idle_timeout, Duration::from_secs(5));
        assert_eq!(l.persistent_active_limit, JAVA_INT_MAX);
    }

    #[test]
    fn bad_values_are_refused_naming_the_setting() {
        for (k, v) in [
            (PULL_MAX_CONCURRENT, "0"),
            (REQUEST_MAX_BYTES, "lots"),
            (MAX_CONNECTIONS, "-1"),
        ] {
            let e = Limits::from_config(&config(&[(k, v)])).expect_err("refused");
            assert!(e.to_string().contains(k), "{e}");
        }
    }

    #[test]
    fn slots_are_given_back_when_their_permit_goes() {
        let slots = Slots::new(1);
        let held = slots.try_take();
        assert!(held.is_some());
        assert!(slots.try_take().is_none());
        assert_eq!(slots.in_use(), 1);
        drop(held);
        assert!(slots.try_take().is_some());
    }
}
