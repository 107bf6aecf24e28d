//! `brook grpc://host:port`: the REPL over the gRPC API (same port as REST) runs a script
//! (DDL, INSERT, SHOW, DESCRIBE, SET, a push query with LIMIT, PRINT, a pull query) and
//! prints what it prints over REST; a server-side error stops the script with exit code 1;
//! an address nobody answers at is reported as such.

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

#[test]
fn the_repl_speaks_grpc() {
    let server = Server::start();
    let grpc = server.api.replacen("http://", "grpc://", 1);
    assert!(grpc.starts_with("grpc://127.0.0.1:"), "{grpc}");
    let dir = tempfile::tempdir().expect("temp dir");

    let script = dir.path().join("grpc.sql");
    let mut s = String::from(
        "CREATE STREAM grpc_orders (orderId STRING KEY, customerId STRING, total DOUBLE)\n\
         \x20   WITH (KAFKA_TOPIC='grpc_orders', VALUE_FORMAT='JSON', PARTITIONS=1);\n",
    );
    for i in 0..6 {
        s.push_str(&format!(
            "INSERT INTO grpc_orders (orderId, customerId, total) VALUES ('o{i}', 'c{}', {i}.5);\n",
            i % 2
        ));
    }
    s.push_str("SHOW STREAMS;\nDESCRIBE grpc_orders;\nSET 'auto.offset.reset'='earliest';\n");
    s.push_str("SELECT orderId, total FROM grpc_orders EMIT CHANGES LIMIT 6;\n");
    s.push_str("PRINT 'grpc_orders' FROM BEGINNING LIMIT 2;\n");
    s.push_str(
        "CREATE TABLE grpc_totals AS SELECT customerId, COUNT(*) AS n FROM grpc_orders \
         GROUP BY customerId;\n",
    );
    std::fs::write(&script, &s).expect("script written");
    let out = run(&[&grpc, "-f", script.to_str().expect("utf-8 path")]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        out.status,
        text(&out.stderr)
    );
    assert!(stdout.contains("Stream created"), "{stdout}");
    assert!(stdout.contains(" GRPC_ORDERS | grpc_orders "), "{stdout}");
    assert!(stdout.contains("CUSTOMERID"), "DESCRIBE: {stdout}");
    assert!(stdout.contains("6 rows in"), "{stdout}");
    for i in 0..6 {
        assert!(
            stdout.contains(&format!("| o{i} ")) && stdout.contains(&format!("| {i}.5 ")),
            "row o{i} missing:\n{stdout}"
        );
    }
    assert_eq!(stdout.matches("rowtime: ").count(), 2, "PRINT: {stdout}");
    assert!(stdout.contains("Key format: "), "PRINT: {stdout}");
    assert!(
        stdout.contains("Created query with ID CTAS_GRPC_TOTALS_"),
        "{stdout}"
    );

    // A pull query through gRPC, once the table has caught up.
    let mut pulled = String::new();
    for _ in 0..50 {
        let out = run(&[
            &grpc,
            "-e",
            "SELECT * FROM grpc_totals WHERE customerId = 'c1';",
        ]);
        pulled = text(&out.stdout);
        if pulled.contains("| c1 ") && pulled.contains("| 3 ") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(pulled.contains("| 3 "), "pull query: {pulled}");

    // The server's refusal stops -e, with the server's message, as over REST.
    let out = run(&[&grpc, "-e", "SHOW STREAMS; DESCRIBE nope; SHOW TABLES;"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Could not find STREAM/TABLE 'NOPE' in the Metastore"),
        "{stderr}"
    );
    assert!(
        !text(&out.stdout).contains("Table Name"),
        "ran past the error"
    );

    // Nobody listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port");
    let nowhere = format!("grpc://127.0.0.1:{port}");
    let out = run(&[&nowhere, "-e", "SHOW STREAMS;"]);
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot reach the server at {nowhere}")),
        "{stderr}"
    );
}
