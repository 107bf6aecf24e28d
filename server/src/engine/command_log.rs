//! The command log's records. Every statement that changes the catalog or the persistent
//! queries is appended to the command topic before it takes effect, and a starting server
//! replays the topic in order, so it must come back exactly as it was:
//! - a statement carries the id of the query it started, so a replay gives each query the
//!   id it had (and a replayed TERMINATE finds it), whatever failed in between;
//! - TERMINATE, PAUSE and RESUME name one query by its exact id;
//! - a statement that was recorded but then failed is followed by an `Abort` naming it, so
//!   what a user saw fail never takes effect after a restart;
//! - a record that cannot be read stops the start-up (see [`UnreadableCommand`]) rather than
//!   start a server with part of its catalog.
//!
//! Records are JSON objects with a `version`. Logs written before that hold statement text;
//! they are still read ([`Command::Legacy`]).

use brook_runtime::RuntimeError;
use serde::{Deserialize, Serialize};

/// The record format written today; a record of a later version stops the start-up.
pub const VERSION: u32 = 1;

/// One record of the command log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// A statement (DDL, CREATE … AS SELECT, INSERT INTO … SELECT, SET/UNSET, types), with
    /// the id of the query it started, if any.
    Statement {
        /// This record's id, which an `Abort` names.
        id: String,
        statement: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        query_id: Option<String>,
    },
    Terminate {
        query_id: String,
    },
    Pause {
        query_id: String,
    },
    Resume {
        query_id: String,
    },
    /// The statement recorded as `id` did not take effect (its recording failed, or what
    /// followed it did): a replay skips it.
    Abort {
        id: String,
    },
    /// A record written before records were versioned: statement text.
    #[serde(skip)]
    Legacy(String),
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u32,
    #[serde(flatten)]
    command: Command,
}

/// Why a record of the command log cannot be replayed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UnreadableCommand {
    #[error("it is not UTF-8 text")]
    NotText,
    #[error("it is not a command record: {0}")]
    Malformed(String),
    #[error("it was written by a newer Brook (record version {0}; this server reads {VERSION})")]
    NewerVersion(u32),
    #[error("its statement does not parse: {0}")]
    Unparsable(String),
    #[error("it has no payload")]
    Empty,
}

impl Command {
    /// A new statement record (with a fresh id).
    pub fn statement(statement: &str, query_id: Option<String>) -> Command {
        Command::Statement {
            id: uuid::Uuid::new_v4().to_string(),
            statement: statement.to_string(),
            query_id,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        let envelope = Envelope {
            version: VERSION,
            command: self.clone(),
        };
        // Serializing a struct of strings cannot fail.
        serde_json::to_vec(&envelope).unwrap_or_default()
    }

    /// Reads a record; statement text (legacy records, and the text of statement records)
    /// must parse, so a replay never finds out half-way that it cannot go on.
    pub fn decode(payload: Option<&[u8]>) -> Result<Command, UnreadableCommand> {
        let bytes = payload.ok_or(UnreadableCommand::Empty)?;
        let text = std::str::from_utf8(bytes).map_err(|_| UnreadableCommand::NotText)?;
        let command = if text.trim_start().starts_with('{') {
            Self::decode_json(text)?
        } else {
            Command::Legacy(text.to_string())
        };
        match &command {
            Command::Statement { statement: s, .. } | Command::Legacy(s) => {
                brook_sql::parse(s).map_err(|e| UnreadableCommand::Unparsable(e.to_string()))?;
            }
            _ => {}
        }
        Ok(command)
    }

    fn decode_json(text: &str) -> Result<Command, UnreadableCommand> {
        #[derive(Deserialize)]
        struct Version {
            version: u32,
        }
        let version: Version =
            serde_json::from_str(text).map_err(|e| UnreadableCommand::Malformed(e.to_string()))?;
        if version.version > VERSION {
            return Err(UnreadableCommand::NewerVersion(version.version));
        }
        let envelope: Envelope =
            serde_json::from_str(text).map_err(|e| UnreadableCommand::Malformed(e.to_string()))?;
        Ok(envelope.command)
    }
}

/// A record of the command log: its offset and payload.
pub type LogRecord = (i64, Option<Vec<u8>>);

/// Every record of the command log up to its end now, with its offset, read on a
/// blocking thread. Fails when the log cannot be read to its end within a minute.
pub async fn read_log(
    bootstrap: &brook_runtime::kafka::Kafka,
    topic: &str,
) -> Result<Vec<LogRecord>, RuntimeError> {
    let bootstrap = bootstrap.clone();
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || read_blocking(&bootstrap, &topic))
        .await
        .map_err(|e| RuntimeError::Broker(format!("command log reader failed: {e}")))?
}

fn read_blocking(
    bootstrap: &brook_runtime::kafka::Kafka,
    topic: &str,
) -> Result<Vec<LogRecord>, RuntimeError> {
    use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
    use brook_runtime::rdkafka::message::Message;
    use brook_runtime::rdkafka::{Offset, TopicPartitionList};
    use std::time::{Duration, Instant};

    let consumer: BaseConsumer = brook_runtime::kafka::client_config(bootstrap)
        .set("group.id", "_brook_command_reader")
        .set("enable.auto.commit", "false")
        .create()?;
    let (_, high) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(30))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next = 0;
    while next < high && Instant::now() < deadline {
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            let m = m?;
            next = m.offset() + 1;
            out.push((m.offset(), m.payload().map(<[u8]>::to_vec)));
        }
    }
    if next < high {
        return Err(RuntimeError::Broker(format!(
            "the command log {topic} could not be read to its end ({next} of {high})"
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_reads_back_as_written() {
        let commands = [
            Command::statement(
                "CREATE STREAM a AS SELECT * FROM s;",
                Some("CSAS_A_3".into()),
            ),
            Command::statement("SET 'x'='y';", None),
            Command::Terminate {
                query_id: "CSAS_a_1".into(),
            },
            Command::Pause {
                query_id: "Q".into(),
            },
            Command::Resume {
                query_id: "Q".into(),
            },
            Command::Abort { id: "x-1".into() },
        ];
        for c in commands {
            assert_eq!(Command::decode(Some(&c.encode())), Ok(c.clone()), "{c:?}");
        }
    }

    #[test]
    fn statement_text_from_older_servers_still_reads() {
        let got = Command::decode(Some(
            b"CREATE STREAM s (a INT) WITH (kafka_topic='s', value_format='json');",
        ));
        assert!(matches!(got, Ok(Command::Legacy(_))), "{got:?}");
    }

    #[test]
    fn unreadable_records_say_why() {
        let cases: [(Option<&[u8]>, UnreadableCommand); 6] = [
            (None, UnreadableCommand::Empty),
            (Some(&[0xff, 0xfe]), UnreadableCommand::NotText),
            (
                Some(b"{\"version\":2,\"command\":\"terminate\",\"query_id\":\"Q\"}"),
                UnreadableCommand::NewerVersion(2),
            ),
            (
                Some(b"{\"version\":1,\"command\":\"explode\"}"),
                UnreadableCommand::Malformed(String::new()),
            ),
            (
                Some(b"{\"version\":1"),
                UnreadableCommand::Malformed(String::new()),
            ),
            (
                Some(b"CREATE STREM oops;"),
                UnreadableCommand::Unparsable(String::new()),
            ),
        ];
        for (payload, want) in cases {
            let got = Command::decode(payload).expect_err("unreadable");
            assert_eq!(
                std::mem::discriminant(&got),
                std::mem::discriminant(&want),
                "{payload:?}: {got}"
            );
        }
        let statement = Command::Statement {
            id: "i".into(),
            statement: "SELEC 1;".into(),
            query_id: None,
        };
        assert!(matches!(
            Command::decode(Some(&statement.encode())),
            Err(UnreadableCommand::Unparsable(_))
        ));
    }
}
