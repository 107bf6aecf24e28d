//! End-to-end tests of Brook against a real Kafka-protocol broker (the embedded one).
//! The tests live in `tests/`; this library holds what they share.

use std::time::Duration;

use brook_runtime::embedded::{EmbeddedBroker, EmbeddedBrokerConfig};

/// Starts an in-memory embedded broker on a free loopback port.
pub async fn broker() -> EmbeddedBroker {
    match EmbeddedBroker::start(EmbeddedBrokerConfig::for_tests()).await {
        Ok(b) => b,
        Err(e) => panic!("embedded broker did not start: {e}"),
    }
}

/// How long a test waits for records before it fails rather than hangs.
pub const DEADLINE: Duration = Duration::from_secs(60);
