//! Brook's runtime: Kafka I/O through rdkafka, and (feature `embedded-broker`) an
//! in-process Kafka-protocol broker for tests and single-machine servers.

pub mod aggregate;
pub mod changelog;
pub mod driver;
#[cfg(feature = "embedded-broker")]
pub mod embedded;
mod error;
pub mod eval;
pub mod format;
pub mod internal_topic;
pub mod join;
pub mod kafka;
pub mod materialized;
pub mod metrics;
pub mod operator;
pub mod pipeline;
pub mod processing_log;
pub mod rows;
pub mod session;
pub mod shared;
pub mod state;
pub mod task;

pub use error::{Result, RuntimeError};
pub use rdkafka;
