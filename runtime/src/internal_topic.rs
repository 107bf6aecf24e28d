//! Internal topics that must keep every record for as long as the service lives (the
//! command log: lose a record and a restart loses the streams, tables and queries it
//! made). They are created with no retention limit, and checked at start-up: settings that
//! would expire records are corrected, as ksqlDB's `KsqlInternalTopicUtils.ensureTopic`
//! does, and when they cannot be the server refuses to start rather than lose statements
//! silently a week later.

use std::collections::HashMap;
use std::time::Duration;

use tracing::warn;

use crate::error::{Result, RuntimeError};
use crate::kafka::Admin;

/// The settings of a topic whose records never expire (ksqlDB's `INTERNAL_TOPIC_CONFIG`,
/// with `retention.bytes` too: a size limit deletes the oldest records as surely as time).
pub const KEEP_FOREVER: &[(&str, &str)] = &[
    ("cleanup.policy", "delete"),
    ("retention.ms", "-1"),
    ("retention.bytes", "-1"),
];

/// What in a topic's settings would delete records, one phrase per setting; empty when
/// none would. Kafka's defaults apply to settings the broker did not report.
pub fn expiry(config: &HashMap<String, String>) -> Vec<String> {
    let policy = config
        .get("cleanup.policy")
        .map_or("delete", |p| p.as_str())
        .to_ascii_lowercase();
    let mut problems = Vec::new();
    if policy.contains("compact") {
        problems.push(format!(
            "cleanup.policy={policy} keeps only the newest record of each key"
        ));
    }
    if !policy.contains("delete") {
        return problems;
    }
    // Kafka's defaults: seven days, no size limit. A value that is not a number is read
    // as a limit, so it is corrected rather than trusted.
    let limit = |name: &str, default: &str| {
        let value = config.get(name).map_or(default, |v| v.as_str()).trim();
        match value.parse::<i64>() {
            Ok(n) if n < 0 => None,
            _ => Some(value.to_string()),
        }
    };
    if let Some(ms) = limit("retention.ms", "604800000") {
        problems.push(format!("retention.ms={ms} deletes records older than that"));
    }
    if let Some(bytes) = limit("retention.bytes", "-1") {
        problems.push(format!(
            "retention.bytes={bytes} deletes the oldest records beyond that size"
        ));
    }
    problems
}

/// Makes sure `topic` exists with one partition and keeps every record: creates it so, or
/// corrects an existing one's retention. Fails, with what is wrong and how to mend it, when
/// the topic has another partition count or its settings cannot be corrected.
pub async fn ensure(admin: &Admin, topic: &str) -> Result<()> {
    let partitions = admin.topic_partitions(Duration::from_secs(30)).await?;
    match partitions.get(topic) {
        None => return admin.create_topic_with(topic, 1, 1, KEEP_FOREVER).await,
        Some(1) => {}
        Some(n) => {
            return Err(RuntimeError::InternalTopic {
                topic: topic.to_string(),
                reason: format!(
                    "it has {n} partitions, and Brook reads its command log in order from one \
                     partition. Give the server another command topic (--command-topic) or \
                     recreate this one with one partition."
                ),
            })
        }
    }
    let problems = expiry(&admin.topic_config(topic).await?);
    if problems.is_empty() {
        return Ok(());
    }
    warn!(
        topic,
        problems = %problems.join("; "),
        "internal topic would lose records: setting retention.ms=-1, retention.bytes=-1, cleanup.policy=delete"
    );
    let altered = admin.set_topic_config(topic, KEEP_FOREVER).await;
    let left = expiry(&admin.topic_config(topic).await?);
    if left.is_empty() {
        return Ok(());
    }
    Err(RuntimeError::InternalTopic {
        topic: topic.to_string(),
        reason: refusal(topic, &left, altered.err()),
    })
}

fn refusal(topic: &str, problems: &[String], why: Option<RuntimeError>) -> String {
    let why = why.map_or_else(String::new, |e| format!(" ({e})"));
    format!(
        "{}, so statements would be lost and a restart would not bring back the streams, \
         tables and queries they made. Brook could not change it{why}. Set it with \
         `kafka-configs --alter --entity-type topics --entity-name {topic} --add-config \
         retention.ms=-1,retention.bytes=-1,cleanup.policy=delete` and start again.",
        problems.join("; ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn settings_that_keep_every_record() {
        for pairs in [
            KEEP_FOREVER,
            &[("retention.ms", "-1")][..],
            &[("cleanup.policy", "delete"), ("retention.ms", "-5")][..],
        ] {
            assert_eq!(expiry(&config(pairs)), Vec::<String>::new(), "{pairs:?}");
        }
    }

    /// Topic settings, and the start of each problem they make.
    type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str]);

    #[test]
    fn settings_that_lose_records() {
        let cases: &[Case<'_>] = &[
            // Kafka's default: seven days.
            (&[], &["retention.ms=604800000"]),
            (&[("retention.ms", "1000")], &["retention.ms=1000"]),
            (
                &[("retention.ms", "-1"), ("retention.bytes", "1048576")],
                &["retention.bytes=1048576"],
            ),
            (
                &[("cleanup.policy", "compact"), ("retention.ms", "-1")],
                &["cleanup.policy=compact"],
            ),
            (
                &[("cleanup.policy", "compact,delete")],
                &["cleanup.policy=compact,delete", "retention.ms=604800000"],
            ),
            (&[("retention.ms", "soon")], &["retention.ms=soon"]),
        ];
        for (pairs, want) in cases {
            let got = expiry(&config(pairs));
            assert_eq!(got.len(), want.len(), "{pairs:?}: {got:?}");
            for (g, w) in got.iter().zip(want.iter()) {
                assert!(g.starts_with(w), "{pairs:?}: {g} should start with {w}");
            }
        }
    }

    #[test]
    fn the_refusal_names_the_topic_the_problem_and_the_mend() {
        let text = refusal(
            "_brook_command_topic",
            &["retention.ms=1000 deletes".into()],
            None,
        );
        assert!(text.starts_with("retention.ms=1000 deletes"), "{text}");
        assert!(
            text.contains("--entity-name _brook_command_topic"),
            "{text}"
        );
        assert!(
            text.contains("retention.ms=-1,retention.bytes=-1"),
            "{text}"
        );
    }
}
