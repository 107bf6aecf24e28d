//! The REPL driven through a pseudo-terminal against a live server, as a user types: a
//! statement over three lines runs once, INSERT … VALUES three times, a push query with
//! LIMIT 3 shows a table of three rows, SHOW STREAMS and DESCRIBE show their tables, Ctrl-C
//! stops an open push query and the prompt comes back, Ctrl-D exits.

#[path = "repl/server.rs"]
mod server;

use std::process::Command;

use rexpect::session::PtySession;
use server::{brook, Server};

/// A fresh prompt. The editor redraws the prompt with the line on every keystroke (for
/// colours and hints), so the text alone does not say that a statement finished; a new
/// `readline` starts by turning on bracketed paste (`ESC[?2004h`), a redraw does not.
const PROMPT: &str = r"(?s)\x1b\[\?2004h.{0,24}?brook> ";
const CONTINUATION: &str = r"(?s)\x1b\[\?2004h.{0,24}?     > ";

/// Everything printed from now until `needle`, failing with what was seen on a timeout.
fn expect(p: &mut PtySession, needle: &str) -> String {
    match p.exp_string(needle) {
        Ok(before) => before,
        Err(e) => panic!("never saw {needle:?}: {e}"),
    }
}

/// Everything printed until the next fresh prompt (`PROMPT` or `CONTINUATION`).
fn expect_prompt(p: &mut PtySession, prompt: &str) -> String {
    match p.exp_regex(prompt) {
        Ok((before, _)) => before,
        Err(e) => panic!("never saw the prompt {prompt:?}: {e}"),
    }
}

/// Sends a line and waits for the next prompt; returns what was printed in between.
fn statement(p: &mut PtySession, line: &str) -> String {
    p.send_line(line).expect("line sent");
    expect_prompt(p, PROMPT)
}

#[test]
fn a_session_at_the_prompt() {
    let server = Server::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let history = dir.path().join("history");
    let mut cmd = Command::new(brook());
    cmd.arg(&server.api)
        .env("BROOK_HISTORY", &history)
        .env("TERM", "xterm")
        .env_remove("NO_COLOR")
        .env_remove("COLUMNS");
    let mut p = rexpect::session::spawn_command(cmd, Some(60_000)).expect("brook starts");
    let banner = expect_prompt(&mut p, PROMPT);
    assert!(banner.contains("Server: "), "{banner}");

    // One statement over three lines: two continuation prompts, then it runs once.
    p.send_line("CREATE STREAM orders (orderId STRING KEY, customerId STRING,")
        .expect("line sent");
    expect_prompt(&mut p, CONTINUATION);
    p.send_line("  items ARRAY<STRING>, total DOUBLE, createdAt BIGINT)")
        .expect("line sent");
    expect_prompt(&mut p, CONTINUATION);
    let out = statement(
        &mut p,
        "  WITH (KAFKA_TOPIC='orders', VALUE_FORMAT='JSON', PARTITIONS=4, TIMESTAMP='createdAt');",
    );
    assert_eq!(out.matches("Stream created").count(), 1, "{out}");
    assert!(!out.contains("already exists"), "{out}");

    for (id, customer, items, total, at) in [
        (
            "o1",
            "alice",
            "ARRAY['apple', 'pear']",
            "12.5",
            1_700_000_000_000u64,
        ),
        ("o2", "bob", "ARRAY['fig']", "3.0", 1_700_000_001_000),
        ("o3", "alice", "ARRAY['kiwi']", "7.25", 1_700_000_002_000),
    ] {
        let out = statement(
            &mut p,
            &format!(
                "INSERT INTO orders (orderId, customerId, items, total, createdAt) \
                 VALUES ('{id}', '{customer}', {items}, {total}, {at});"
            ),
        );
        assert!(!out.to_lowercase().contains("error"), "{out}");
    }

    let out = statement(&mut p, "SET 'auto.offset.reset'='earliest';");
    assert!(out.contains("Successfully changed local property"), "{out}");

    p.send_line("SELECT orderId, customerId, items, total FROM orders EMIT CHANGES LIMIT 3;")
        .expect("line sent");
    let header = expect(&mut p, "| TOTAL ");
    assert!(header.contains("| ORDERID "), "{header}");
    let rows = expect(&mut p, "Limit Reached");
    for want in [
        "| o1 ",
        "| o2 ",
        "| o3 ",
        "| alice ",
        "| bob ",
        "[\"apple\",\"pear\"]",
    ] {
        assert!(rows.contains(want), "{want} missing from:\n{rows}");
    }
    let table_rows = rows.lines().filter(|l| l.starts_with("| o")).count();
    assert_eq!(table_rows, 3, "{rows}");
    let summary = expect_prompt(&mut p, PROMPT);
    assert!(summary.contains("3 rows in"), "{summary}");

    let out = statement(&mut p, "SHOW STREAMS;");
    assert!(out.contains("Stream Name"), "{out}");
    let orders = out
        .lines()
        .find(|l| l.contains("ORDERS"))
        .unwrap_or_else(|| panic!("no ORDERS row:\n{out}"));
    assert!(
        orders.contains("orders") && orders.contains("JSON"),
        "{out}"
    );

    let out = statement(&mut p, "DESCRIBE orders;");
    for want in [
        "Name                 : ORDERS",
        "ORDERID    | VARCHAR(STRING)  (key)",
        "ITEMS      | ARRAY<VARCHAR(STRING)>",
        "TOTAL      | DOUBLE",
    ] {
        assert!(out.contains(want), "{want} missing from:\n{out}");
    }

    // An open push query: its rows arrive, then Ctrl-C stops it and the prompt returns.
    p.send_line("SELECT orderId, total FROM orders EMIT CHANGES;")
        .expect("line sent");
    expect(&mut p, "| ORDERID ");
    let mut seen = String::new();
    while ["| o1 ", "| o2 ", "| o3 "]
        .iter()
        .any(|r| !seen.contains(r))
    {
        let (before, row) = p
            .exp_regex(r"\| o[0-9] ")
            .unwrap_or_else(|e| panic!("rows stopped ({e}) after:\n{seen}"));
        seen.push_str(&before);
        seen.push_str(&row);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    p.send_control('c').expect("Ctrl-C sent");
    expect(&mut p, "Query terminated");
    let summary = expect_prompt(&mut p, PROMPT);
    assert!(summary.contains("3 rows in"), "{summary}");

    // The REPL is still there and still talks to the server.
    let out = statement(&mut p, "SHOW STREAMS;");
    assert!(out.contains("ORDERS"), "{out}");

    // Tab completes a source name fetched from the server.
    let out = statement(&mut p, "DESCRIBE ORD\t;");
    assert!(out.contains("Name                 : ORDERS"), "{out}");

    // Ctrl-C at the prompt drops the half-typed statement, and the REPL stays.
    p.send_line("SHOW").expect("line sent");
    expect_prompt(&mut p, CONTINUATION);
    p.send_control('c').expect("Ctrl-C sent");
    expect_prompt(&mut p, PROMPT);
    let out = statement(&mut p, "SHOW TABLES;");
    assert!(out.contains("Table Name"), "{out}");

    // OUTPUT JSON shows the server's entities; spool copies commands and results.
    let out = statement(&mut p, "output json");
    assert!(out.contains("Output format set to JSON"), "{out}");
    let out = statement(&mut p, "SHOW STREAMS;");
    assert!(out.contains("\"@type\": \"streams\""), "{out}");
    statement(&mut p, "output tabular");
    let spool = dir.path().join("spool.txt");
    statement(&mut p, &format!("spool {}", spool.display()));
    statement(&mut p, "SHOW TABLES;");
    statement(&mut p, "spool off");
    let spooled = std::fs::read_to_string(&spool).expect("spool written");
    assert!(spooled.contains("brook> SHOW TABLES;"), "{spooled}");
    assert!(spooled.contains("Table Name"), "{spooled}");
    assert!(!spooled.contains("spool off"), "{spooled}");

    // Ctrl-D leaves; the statements are in the history file.
    p.send_control('d').expect("Ctrl-D sent");
    p.exp_eof().expect("brook exits");
    let status = p.process().wait().expect("exit status");
    assert!(
        matches!(status, rexpect::process::WaitStatus::Exited(_, 0)),
        "{status:?}"
    );
    let saved = std::fs::read_to_string(&history).expect("history saved");
    assert!(saved.contains("DESCRIBE orders;"), "{saved}");
}
