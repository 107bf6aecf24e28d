//! The command log keeps what users made: its topic never expires records, a replay gives
//! back the same server (the same query ids, TERMINATEs that hold, nothing the user saw
//! fail), a record that cannot be read stops the start-up, and the topics statements create
//! have ksqlDB's cleanup policies.

use std::collections::HashMap;
use std::time::Duration;

use brook_runtime::kafka::{producer_config, Admin};
use brook_runtime::rdkafka::producer::{FutureProducer, FutureRecord};
use brook_server::engine::{Engine, Executed};
use brook_server::ServerError;

const LOG: &str = "_brook_command_topic";

async fn config(admin: &Admin, topic: &str) -> HashMap<String, String> {
    admin.topic_config(topic).await.expect("describe configs")
}

async fn started(bootstrap: &brook_runtime::kafka::Kafka) -> std::sync::Arc<Engine> {
    let engine = Engine::with_command_log(bootstrap, LOG).expect("engine");
    engine.recover().await.expect("replay");
    engine
}

async fn restarted(
    engine: std::sync::Arc<Engine>,
    bootstrap: &brook_runtime::kafka::Kafka,
) -> std::sync::Arc<Engine> {
    engine.shutdown().await;
    drop(engine);
    started(bootstrap).await
}

async fn query_id(engine: &Engine, sql: &str) -> String {
    match engine.execute(sql).await.expect("statement").pop() {
        Some(Executed::QueryStarted { id, .. }) => id,
        other => panic!("{sql}: {other:?}"),
    }
}

async fn query_ids(engine: &Engine) -> Vec<String> {
    let mut ids: Vec<String> = engine.queries().await.into_iter().map(|q| q.id).collect();
    ids.sort();
    ids
}

async fn append_raw(bootstrap: &brook_runtime::kafka::Kafka, payload: &[u8]) {
    let producer: FutureProducer = producer_config(bootstrap).create().expect("producer");
    producer
        .send(
            FutureRecord::<[u8], [u8]>::to(LOG).payload(payload),
            Duration::from_secs(30),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("delivered");
}

const SOURCE: &str = "CREATE STREAM s (k STRING KEY, n INT) WITH (KAFKA_TOPIC='s', \
                      VALUE_FORMAT='JSON', PARTITIONS=1);";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_topic_keeps_every_record() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let admin = Admin::new(&bootstrap).expect("admin");

    // Created by the server: no limit of time or size.
    let engine = started(&bootstrap).await;
    let c = config(&admin, LOG).await;
    assert_eq!(
        c.get("retention.ms").map(String::as_str),
        Some("-1"),
        "{c:?}"
    );
    assert_eq!(
        c.get("retention.bytes").map(String::as_str),
        Some("-1"),
        "{c:?}"
    );
    engine.shutdown().await;

    // Created before with a week's retention (as by an older Brook): corrected at start.
    let other = "_brook_command_topic_old";
    admin
        .create_topic_with(other, 1, 1, &[("retention.ms", "604800000")])
        .await
        .expect("topic");
    let engine = Engine::with_command_log(&bootstrap, other).expect("engine");
    engine.recover().await.expect("starts once corrected");
    let c = config(&admin, other).await;
    assert_eq!(
        c.get("retention.ms").map(String::as_str),
        Some("-1"),
        "{c:?}"
    );
    engine.shutdown().await;

    // One it cannot read in order: refused, saying why.
    let split = "_brook_command_topic_split";
    admin.create_topic(split, 2, 1).await.expect("topic");
    let engine = Engine::with_command_log(&bootstrap, split).expect("engine");
    let e = engine.recover().await.expect_err("refused").to_string();
    assert!(e.contains(split) && e.contains("2 partitions"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_statements_create_have_ksqldb_cleanup_policies() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let admin = Admin::new(&bootstrap).expect("admin");
    let engine = started(&bootstrap).await;
    engine
        .execute(&format!(
            "{SOURCE}
             CREATE TABLE t (k STRING PRIMARY KEY, n INT) WITH (KAFKA_TOPIC='t', \
             VALUE_FORMAT='JSON', PARTITIONS=1);
             CREATE STREAM copy AS SELECT * FROM s;
             CREATE TABLE counts AS SELECT k, COUNT(*) AS c FROM s GROUP BY k;
             CREATE TABLE windowed AS SELECT k, COUNT(*) AS c FROM s \
             WINDOW TUMBLING (SIZE 1 HOUR, RETENTION 30 DAYS) GROUP BY k;"
        ))
        .await
        .expect("statements");
    let policy = |c: &HashMap<String, String>| c.get("cleanup.policy").cloned();
    for (topic, want) in [
        ("s", "delete"),
        ("t", "compact"),
        ("COPY", "delete"),
        ("COUNTS", "compact"),
        ("WINDOWED", "compact,delete"),
    ] {
        let c = config(&admin, topic).await;
        assert_eq!(policy(&c).as_deref(), Some(want), "{topic}: {c:?}");
    }
    let c = config(&admin, "WINDOWED").await;
    assert_eq!(
        c.get("retention.ms").map(String::as_str),
        Some("2592000000"),
        "a windowed table's topic keeps its windows' retention: {c:?}"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_the_user_saw_fail_never_takes_effect() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let admin = Admin::new(&bootstrap).expect("admin");
    let engine = started(&bootstrap).await;
    // Refused: its topic does not exist and it gives no partition count.
    let e = engine
        .execute("CREATE STREAM late (n INT) WITH (KAFKA_TOPIC='later', VALUE_FORMAT='JSON');")
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("does not exist"), "{e}");
    // The topic appears later; a replay must still not create the stream.
    admin.create_topic("later", 1, 1).await.expect("topic");
    let engine = restarted(engine, &bootstrap).await;
    assert!(
        !engine.catalog().await.sources.contains_key("LATE"),
        "a refused statement came back after a restart"
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_gives_back_the_same_queries_with_the_same_ids() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let engine = started(&bootstrap).await;
    engine.execute(SOURCE).await.expect("source");
    let a = query_id(&engine, "CREATE STREAM a AS SELECT * FROM s;").await;
    // A sink whose name keeps its case: its query id does too.
    let lower = query_id(&engine, "CREATE STREAM `lower` AS SELECT * FROM s;").await;
    assert!(lower.contains("lower"), "{lower}");
    let b = query_id(&engine, "CREATE STREAM b AS SELECT * FROM s;").await;
    assert!(engine.terminate(&a).await);
    assert!(engine.terminate(&lower).await);
    // A statement recorded by another server, with the id it gave its query.
    append_raw(
        &bootstrap,
        br#"{"version":1,"command":"statement","id":"other-1","statement":"CREATE STREAM c AS SELECT * FROM s;","query_id":"CSAS_C_7"}"#,
    )
    .await;
    let engine = restarted(engine, &bootstrap).await;
    assert_eq!(
        query_ids(&engine).await,
        vec![b.clone(), "CSAS_C_7".to_string()]
    );
    // New ids come after every recorded one.
    let d = query_id(&engine, "CREATE STREAM d AS SELECT * FROM s;").await;
    assert_eq!(d, "CSAS_D_8");
    // And the same again after one more restart.
    let engine = restarted(engine, &bootstrap).await;
    assert_eq!(
        query_ids(&engine).await,
        vec![b, "CSAS_C_7".to_string(), "CSAS_D_8".to_string()]
    );
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_command_stops_the_start_up() {
    let broker = brook_tests::broker().await;
    let bootstrap = broker.kafka();
    let engine = started(&bootstrap).await;
    engine.execute(SOURCE).await.expect("source");
    engine.shutdown().await;
    drop(engine);
    append_raw(&bootstrap, &[0xff, 0x00, 0x13]).await;
    let engine = Engine::with_command_log(&bootstrap, LOG).expect("engine");
    match engine.recover().await {
        Err(e @ ServerError::UnreadableCommand { offset: 1, .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("offset 1") && text.contains("not UTF-8"),
                "{text}"
            );
        }
        other => panic!("the start-up went on: {other:?}"),
    }
    assert!(
        engine.catalog().await.sources.is_empty(),
        "half a catalog was started"
    );
}
