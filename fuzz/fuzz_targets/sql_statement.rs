//! SQL statements: arbitrary UTF-8 through `brook_sql::parse`, and every statement that
//! parses through the planner the server uses (`Session::plan`) against a small catalog,
//! on a thread with a tokio worker's 2 MiB stack. Each statement that parses must display
//! as text that parses and displays as itself (what the server stores and replays).
#![no_main]
use std::sync::OnceLock;

use brook_runtime::session::Session;
use libfuzzer_sys::fuzz_target;

/// The catalog statements are planned against: a stream and a table with a column of
/// every type, and a custom type.
const CATALOG: &str = "
CREATE TYPE ADDRESS AS STRUCT<STREET STRING, ZIP INT>;
CREATE STREAM S (ID STRING KEY, B BOOLEAN, I INT, L BIGINT, D DOUBLE, DEC DECIMAL(10, 2),
  STR STRING, BY BYTES, T TIME, DT DATE, TS TIMESTAMP, A ARRAY<INT>, M MAP<STRING, INT>,
  ST STRUCT<X INT, Y ARRAY<STRING>>, AD ADDRESS)
  WITH (KAFKA_TOPIC='s', VALUE_FORMAT='JSON', PARTITIONS=1);
CREATE TABLE T (ID STRING PRIMARY KEY, I INT, STR STRING)
  WITH (KAFKA_TOPIC='t', VALUE_FORMAT='JSON', PARTITIONS=1);
";

fn session() -> Session {
    static BASE: OnceLock<Session> = OnceLock::new();
    BASE.get_or_init(|| {
        let mut s = Session::new();
        for ps in brook_sql::parse(CATALOG).expect("the fuzz catalog parses") {
            s.plan(&ps, &|_| Some(1)).expect("the fuzz catalog plans");
        }
        s
    })
    .clone()
}

fn check(text: String) {
    let Ok(statements) = brook_sql::parse(&text) else {
        return;
    };
    let mut session = session();
    for ps in statements {
        let shown = ps.statement.to_string();
        // The shown text is what matters (the server stores and replays text): it must
        // parse and show as itself. The trees may differ in how an identifier was quoted
        // (`"x"` shows as `` `x` ``, the same identifier).
        match brook_sql::parse_one(&shown) {
            Ok(again) => assert_eq!(again.to_string(), shown),
            Err(e) => panic!("{shown}\ndoes not parse again: {e}"),
        }
        // Errors are answers; only a panic, an abort or a hang is a finding.
        let _ = session.plan(&ps, &|_| Some(1));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.to_string();
    let worker = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || check(text))
        .expect("thread starts");
    if let Err(panic) = worker.join() {
        std::panic::resume_unwind(panic);
    }
});
