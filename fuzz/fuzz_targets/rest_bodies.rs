//! The REST API's request bodies (`brook_server::bodies`), as the endpoints read them: the
//! `/ksql`, `/query` and `/query-stream` JSON bodies, `/close-query`'s, `/inserts-stream`'s
//! line splitting (arbitrary chunks, a small line limit) and its rows, turned into INSERT
//! statements for a stream with a column of every type, then parsed and planned as the
//! server would. The first byte picks the parser.
//!
//! Beyond "no panic, no abort", it checks the splitter never hands out a line over its
//! limit and loses no byte of lines within it, and that every INSERT statement a row
//! becomes parses (the server reports one that does not as its own bug).
#![no_main]

use std::sync::OnceLock;

use brook_planner::catalog::{Catalog, Source};
use brook_runtime::session::{Action, Session};
use brook_server::bodies::{self, Line, LineSplitter};
use libfuzzer_sys::fuzz_target;

/// A stream with a column of every type a row can fill, and a session that knows it.
fn stream() -> &'static (Session, Source, Catalog) {
    static STREAM: OnceLock<(Session, Source, Catalog)> = OnceLock::new();
    STREAM.get_or_init(|| {
        let ddl = "CREATE STREAM S (K STRING KEY, B BOOLEAN, I INT, L BIGINT, D DOUBLE, \
                   DEC DECIMAL(6, 2), STR STRING, BY BYTES, DT DATE, T TIME, TS TIMESTAMP, \
                   A ARRAY<INT>, AA ARRAY<ARRAY<STRING>>, M MAP<STRING, DOUBLE>, \
                   ST STRUCT<X INT, `y` STRING, Z ARRAY<DOUBLE>>) \
                   WITH (KAFKA_TOPIC='s', PARTITIONS=1, VALUE_FORMAT='JSON');";
        let mut session = Session::new();
        let ps = brook_sql::parse(ddl).expect("the DDL parses").remove(0);
        let source = match session.plan(&ps, &|_| None).expect("the DDL plans") {
            Action::CreateSource { source, .. } => source,
            _ => panic!("not a CREATE STREAM"),
        };
        let catalog = session.catalog.clone();
        (session, source, catalog)
    })
}

/// Splits `data` into chunks at the cut points its first bytes give, with a small limit,
/// and checks what comes out against the lines of the whole.
fn lines(data: &[u8]) {
    let Some((&max, rest)) = data.split_first() else {
        return;
    };
    let max = usize::from(max % 64);
    let Some((&step, body)) = rest.split_first() else {
        return;
    };
    let step = usize::from(step % 17) + 1;
    let mut splitter = LineSplitter::new(max);
    let mut got = Vec::new();
    for chunk in body.chunks(step) {
        got.extend(splitter.push(chunk));
    }
    got.extend(splitter.finish());
    let mut want: Vec<Line> = body
        .split(|b| *b == b'\n')
        .map(|l| match l.len() > max {
            true => Line::TooLong,
            false => Line::Complete(l.to_vec()),
        })
        .collect();
    // A body ending in a newline has no last line after it.
    if want.last() == Some(&Line::Complete(Vec::new())) {
        want.pop();
    }
    assert_eq!(got, want, "max {max}, chunks of {step}");
}

fn row(data: &[u8]) {
    let (session, source, catalog) = stream();
    let Ok(sql) = bodies::insert_statement(source, catalog, data, 1_700_000_000_000) else {
        return;
    };
    let statements = match brook_sql::parse(&sql) {
        Ok(s) => s,
        Err(e) => panic!("a row's INSERT does not parse: {e}\n{sql}"),
    };
    let mut session = session.clone();
    for ps in &statements {
        let _ = session.plan(ps, &|_| None);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            let _ = bodies::ksql_request(rest);
        }
        1 => {
            let _ = bodies::stream_request(rest);
        }
        2 => {
            let _ = bodies::close_query_request(rest);
            let _ = bodies::inserts_target(rest);
        }
        3 => lines(rest),
        _ => row(rest),
    }
});
