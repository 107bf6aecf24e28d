//! `brook -f`: a script of 20 statements runs against a live server and exits 0; a bad
//! statement in the middle stops the script there, is reported with its position in the
//! file, and the exit code is 1.

#[path = "repl/server.rs"]
mod server;

use std::process::{Command, Output};

use server::{brook, Server};

fn run(args: &[&str]) -> Output {
    Command::new(brook())
        .args(args)
        .env_remove("COLUMNS")
        .output()
        .expect("brook runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

/// 20 statements: DEFINE, CREATE STREAM (with a variable), 14 INSERTs, SHOW, DESCRIBE, SET
/// and a push query that reads back the 14 rows.
fn good_script() -> String {
    let mut s = String::from(
        "-- orders for the script test\n\
         DEFINE topic = 'script_orders';\n\
         CREATE STREAM script_orders (orderId STRING KEY, customerId STRING,\n\
         \x20   items ARRAY<STRING>, total DOUBLE, createdAt BIGINT)\n\
         \x20   WITH (KAFKA_TOPIC='${topic}', VALUE_FORMAT='JSON', PARTITIONS=4, TIMESTAMP='createdAt');\n",
    );
    for i in 0..14 {
        s.push_str(&format!(
            "INSERT INTO script_orders (orderId, customerId, items, total, createdAt) \
             VALUES ('o{i}', 'c{}', ARRAY['item;{i}'], {}.5, {});\n",
            i % 3,
            i,
            1_700_000_000_000u64 + i as u64,
        ));
    }
    s.push_str("SHOW STREAMS;\nDESCRIBE script_orders;\nSET 'auto.offset.reset'='earliest';\n");
    s.push_str("SELECT orderId, total FROM script_orders EMIT CHANGES LIMIT 14;\n");
    s
}

#[test]
fn scripts_run_to_the_end_or_stop_at_the_first_error() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("temp dir");

    let good = dir.path().join("good.sql");
    let script = good_script();
    assert_eq!(brook_cli::repl::lexer::split_all(&script).len(), 20);
    std::fs::write(&good, &script).expect("script written");
    let out = run(&[&server.api, "-f", good.to_str().expect("utf-8 path")]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    assert!(stdout.contains("Stream created"), "{stdout}");
    assert!(
        stdout.contains(" SCRIPT_ORDERS | script_orders "),
        "{stdout}"
    );
    assert!(stdout.contains("ARRAY<VARCHAR(STRING)>"), "{stdout}");
    assert!(stdout.contains("14 rows in"), "{stdout}");
    for i in 0..14 {
        assert!(
            stdout.contains(&format!("| o{i} ")),
            "row o{i} missing:\n{stdout}"
        );
    }

    // The third statement is misspelt: the first two run, the rest do not.
    let bad = dir.path().join("bad.sql");
    std::fs::write(
        &bad,
        "CREATE STREAM before_error (id STRING KEY, v INT) WITH (KAFKA_TOPIC='before_error', VALUE_FORMAT='JSON', PARTITIONS=1);\n\
         INSERT INTO before_error (id, v) VALUES ('a', 1);\n\
         SELECT id, v\n  FROM before_error EMIT SOON;\n\
         CREATE STREAM after_error (id STRING KEY, v INT) WITH (KAFKA_TOPIC='after_error', VALUE_FORMAT='JSON', PARTITIONS=1);\n",
    )
    .expect("script written");
    let out = run(&[&server.api, "-f", bad.to_str().expect("utf-8 path")]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    let want = format!(
        "{}:4:26: Expected: CHANGES or FINAL, found: SOON\n    FROM before_error EMIT SOON;\n                           ^",
        bad.display()
    );
    assert!(stderr.contains(&want), "want:\n{want}\ngot:\n{stderr}");

    let out = run(&["-e", "SHOW STREAMS;", &server.api]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("BEFORE_ERROR"), "{stdout}");
    assert!(
        !stdout.contains("AFTER_ERROR"),
        "the script went on:\n{stdout}"
    );

    // PRINT streams the topic's records as the server formats them, then ends at LIMIT;
    // a pull query is a table of the aggregate's rows.
    let out = run(&[
        &server.api,
        "-e",
        "PRINT 'script_orders' FROM BEGINNING LIMIT 3;\n\
         CREATE TABLE script_totals AS SELECT customerId, COUNT(*) AS n FROM script_orders GROUP BY customerId;",
    ]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert_eq!(stdout.matches("rowtime: ").count(), 3, "{stdout}");
    let mut pulled = String::new();
    for _ in 0..50 {
        let out = run(&[
            &server.api,
            "-e",
            "SELECT * FROM script_totals WHERE customerId = 'c1';",
        ]);
        pulled = text(&out.stdout);
        if pulled.contains("| c1 ") && pulled.contains("| 5 ") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(pulled.contains("| 5 "), "pull query: {pulled}");

    // -e stops at its first failure too, with the caret under the statement.
    let out = run(&[
        &server.api,
        "-e",
        "SHOW STREAMS; DESCRIBE nope; SHOW TABLES;",
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("NOPE"), "{stderr}");
    assert!(
        !text(&out.stdout).contains("Table Name"),
        "ran past the error"
    );
}
