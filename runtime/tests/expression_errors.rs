//! An expression that fails on a row does not stop the query, as in ksqlDB: the row goes
//! on with NULL where the expression failed (a predicate that fails does not pass, a
//! GROUP BY key that fails leaves the row out, a table function whose argument fails
//! yields no rows), the processing log gets one entry per failure, and every other row's
//! result is exact. The failing expression here is FROM_BYTES with an encoding read from
//! the record: `'bogus'` is not one (ksqlDB's FROM_BYTES throws, so evaluates to NULL).
//! Each query runs on the deterministic driver (a record at a time) and as one batch
//! through its pipeline (the Kafka task's way), which must agree.

use brook_runtime::driver::Driver;
use brook_runtime::pipeline::Pipeline;
use brook_runtime::rows::Record;
use brook_runtime::session::{Action, Session};

const SRC: &str = "CREATE STREAM src (id STRING KEY, s STRING, enc STRING, g STRING, v INT) \
    WITH (KAFKA_TOPIC='src', VALUE_FORMAT='JSON', PARTITIONS=1);";

/// The expression that fails on the rows whose `enc` is `'bogus'`.
const DECODED: &str = "FROM_BYTES(TO_BYTES(s, 'utf8'), enc)";

/// A table the join case reads (`NAMES_ROWS`).
const NAMES: &str = "CREATE TABLE names (k STRING PRIMARY KEY, name STRING) \
    WITH (KAFKA_TOPIC='names', VALUE_FORMAT='JSON', PARTITIONS=1);";
const NAMES_ROWS: &[(&str, &str)] = &[("6162", r#"{"name":"AB"}"#), ("YWI=", r#"{"name":"ab64"}"#)];

/// (key, value) of the input; rows 1 and 4 (offsets) fail.
const INPUT: &[(&str, &str)] = &[
    ("a", r#"{"s":"ab","enc":"hex","g":"x","v":1}"#),
    ("b", r#"{"s":"ab","enc":"bogus","g":"x","v":2}"#),
    ("c", r#"{"s":"ab","enc":"base64","g":"y","v":3}"#),
    ("d", r#"{"s":"cd","enc":"hex","g":"x","v":4}"#),
    ("e", r#"{"s":"cd","enc":"bogus","g":"y","v":5}"#),
];
const FAILING: &[i64] = &[1, 4];

struct Case {
    query: String,
    /// The sink's records, as (key, value) text.
    want: Vec<(&'static str, &'static str)>,
    /// Processing-log entries per failing row (one per failing expression).
    entries_per_row: usize,
    /// What the entries say the failing expression was for.
    message: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            query: format!("CREATE STREAM out AS SELECT id, {DECODED} AS b, v FROM src;"),
            want: vec![
                ("a", r#"{"B":"6162","V":1}"#),
                ("b", r#"{"B":null,"V":2}"#),
                ("c", r#"{"B":"YWI=","V":3}"#),
                ("d", r#"{"B":"6364","V":4}"#),
                ("e", r#"{"B":null,"V":5}"#),
            ],
            entries_per_row: 1,
            message: "for column B with index 1",
        },
        // A predicate that fails does not pass.
        Case {
            query: format!("CREATE STREAM out AS SELECT id, v FROM src WHERE {DECODED} <> '6364';"),
            want: vec![("a", r#"{"V":1}"#), ("c", r#"{"V":3}"#)],
            entries_per_row: 1,
            message: "Error evaluating predicate",
        },
        // A failing GROUP BY key leaves the row out of the aggregation.
        Case {
            query: format!(
                "CREATE TABLE out AS SELECT {DECODED} AS k, COUNT(*) AS n FROM src \
                 GROUP BY {DECODED};"
            ),
            want: vec![
                ("6162", r#"{"N":1}"#),
                ("YWI=", r#"{"N":1}"#),
                ("6364", r#"{"N":1}"#),
            ],
            entries_per_row: 1,
            message: "Error calculating group-by column with index 0",
        },
        // A failing aggregate argument is NULL, which COUNT skips; the row still counts
        // for COUNT(*).
        Case {
            query: format!(
                "CREATE TABLE out AS SELECT g, COUNT({DECODED}) AS n, COUNT(*) AS all_rows \
                 FROM src GROUP BY g;"
            ),
            want: vec![
                ("x", r#"{"N":1,"ALL_ROWS":1}"#),
                ("x", r#"{"N":1,"ALL_ROWS":2}"#),
                ("y", r#"{"N":1,"ALL_ROWS":1}"#),
                ("x", r#"{"N":2,"ALL_ROWS":3}"#),
                ("y", r#"{"N":1,"ALL_ROWS":2}"#),
            ],
            entries_per_row: 1,
            message: "for aggregate argument with index 0",
        },
        // A failing table function argument yields no rows.
        Case {
            query: format!(
                "CREATE STREAM out AS SELECT id, EXPLODE(SPLIT({DECODED}, '6')) AS part \
                 FROM src;"
            ),
            want: vec![
                ("a", r#"{"PART":""}"#),
                ("a", r#"{"PART":"1"}"#),
                ("a", r#"{"PART":"2"}"#),
                ("c", r#"{"PART":"YWI="}"#),
                ("d", r#"{"PART":""}"#),
                ("d", r#"{"PART":"3"}"#),
                ("d", r#"{"PART":"4"}"#),
            ],
            entries_per_row: 1,
            message: "Failed to evaluate table function parameter 0",
        },
        // PARTITION BY: a failing key is NULL, and the row goes on.
        Case {
            query: format!(
                "CREATE STREAM out AS SELECT {DECODED} AS k, v FROM src PARTITION BY {DECODED};"
            ),
            want: vec![
                ("6162", r#"{"V":1}"#),
                ("<null>", r#"{"V":2}"#),
                ("YWI=", r#"{"V":3}"#),
                ("6364", r#"{"V":4}"#),
                ("<null>", r#"{"V":5}"#),
            ],
            entries_per_row: 1,
            message: "for column K with index 0",
        },
        // A failing join key is NULL, which joins nothing.
        Case {
            query: format!(
                "{NAMES} CREATE STREAM out AS SELECT names.k, src.id, names.name FROM src \
                 JOIN names ON {DECODED} = names.k;"
            ),
            want: vec![
                ("6162", r#"{"ID":"a","NAME":"AB"}"#),
                ("YWI=", r#"{"ID":"c","NAME":"ab64"}"#),
            ],
            entries_per_row: 1,
            message: "Error computing join key",
        },
        // Two failing columns: one entry each.
        Case {
            query: format!(
                "CREATE STREAM out AS SELECT id, {DECODED} AS b, LCASE({DECODED}) AS l \
                 FROM src WHERE v > 3;"
            ),
            want: vec![
                ("d", r#"{"B":"6364","L":"6364"}"#),
                ("e", r#"{"B":null,"L":null}"#),
            ],
            entries_per_row: 2,
            message: "Error computing expression",
        },
    ]
}

fn text(b: Option<&[u8]>) -> String {
    String::from_utf8_lossy(b.unwrap_or(b"<null>")).to_string()
}

fn input() -> Vec<Record> {
    INPUT
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            key: Some(k.as_bytes().to_vec()),
            value: Some(v.as_bytes().to_vec()),
            timestamp: 1_000 + i as i64,
            headers: Vec::new(),
            partition: 0,
            offset: i as i64,
        })
        .collect()
}

/// Rows 3 and up of case 6 only (WHERE v > 3).
fn failing_rows(case: &Case) -> Vec<i64> {
    let mut rows: Vec<i64> = FAILING
        .iter()
        .copied()
        .filter(|o| !case.query.contains("WHERE v > 3") || *o >= 3)
        .flat_map(|o| std::iter::repeat_n(o, case.entries_per_row))
        .collect();
    rows.sort_unstable();
    rows
}

#[test]
fn failing_rows_are_null_logged_and_the_rest_exact_on_the_driver() {
    for case in cases() {
        let mut d = Driver::new();
        d.execute(&format!("{SRC}\n{}", case.query))
            .unwrap_or_else(|e| panic!("{}: {e}", case.query));
        for (k, v) in NAMES_ROWS {
            let (k, v) = (k.as_bytes().to_vec(), v.as_bytes().to_vec());
            d.produce("names", Some(k), Some(v), 0, Vec::new(), None);
        }
        for r in input() {
            d.produce("src", r.key, r.value, r.timestamp, Vec::new(), None);
        }
        let got: Vec<(String, String)> = d
            .topic("OUT")
            .map(|t| {
                t.records
                    .iter()
                    .map(|r| (text(r.key.as_deref()), text(r.value.as_deref())))
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(String, String)> = case
            .want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want, "{}", case.query);
        let logged: Vec<i64> = d
            .processing_log
            .iter()
            .map(|e| {
                assert!(e.contains(case.message), "{}: {e}", case.query);
                assert!(e.contains("topic src partition 0"), "{}: {e}", case.query);
                let at = e.split("offset ").nth(1).and_then(|r| r.split(':').next());
                at.and_then(|o| o.parse().ok())
                    .unwrap_or_else(|| panic!("{}: no offset in {e}", case.query))
            })
            .collect();
        assert_eq!(logged, failing_rows(&case), "{}", case.query);
    }
}

/// The query's pipeline; a join's table already holds `NAMES_ROWS`.
fn pipeline(query: &str) -> Pipeline {
    pipeline_over(SRC, query)
}

/// The pipeline of `query` over the stream `source` creates.
fn pipeline_over(source: &str, query: &str) -> Pipeline {
    let mut session = Session::new();
    let mut spec = None;
    for ps in brook_sql::parse(&format!("{source}\n{query}")).expect("parse") {
        if let Action::StartQuery(s) = session.plan(&ps, &|_| Some(1)).expect("plan") {
            spec = Some(s);
        }
    }
    let mut p = Pipeline::new(*spec.expect("a query"), &session.catalog).expect("pipeline");
    if !p.others.is_empty() {
        let rows: Vec<Record> = NAMES_ROWS
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                key: Some(k.as_bytes().to_vec()),
                value: Some(v.as_bytes().to_vec()),
                timestamp: 0,
                headers: Vec::new(),
                partition: 0,
                offset: i as i64,
            })
            .collect();
        p.process_table(&rows).expect("the table's rows");
    }
    p
}

#[test]
fn a_batch_with_failing_rows_gives_what_rows_one_at_a_time_give() {
    for case in cases() {
        let records = input();
        let mut one = pipeline(&case.query);
        let mut singly = Vec::new();
        let mut errors_singly = Vec::new();
        for r in &records {
            let done = one.process(std::slice::from_ref(r)).expect("process");
            singly.extend(done.outputs);
            errors_singly.extend(done.row_errors);
        }
        let done = pipeline(&case.query).process(&records).expect("process");
        assert_eq!(done.outputs, singly, "{}", case.query);
        assert!(done.errors.is_empty(), "{}: {:?}", case.query, done.errors);
        let mut at: Vec<i64> = done.row_errors.iter().map(|e| e.offset).collect();
        at.sort_unstable();
        assert_eq!(at, failing_rows(&case), "{}", case.query);
        assert_eq!(done.row_errors.len(), errors_singly.len(), "{}", case.query);
        for e in &done.row_errors {
            assert_eq!((e.topic.as_str(), e.partition), ("src", 0), "{e:?}");
            assert!(e.message.contains(case.message), "{e:?}");
            assert!(e.cause.contains("bogus"), "{e:?}");
        }
    }
}

/// CAST of text: where ksqlDB's parser throws (`Integer.parseInt("abc")`, a date that
/// is not one, …) the value is NULL and the processing log has one entry for it; NULL
/// text is NULL with no entry; BOOLEAN never fails (what is not `true`/`yes` is false).
const CASTS_SRC: &str = "CREATE STREAM casts (id STRING KEY, n STRING, d STRING, t STRING) \
    WITH (KAFKA_TOPIC='casts', VALUE_FORMAT='JSON', PARTITIONS=1);";

/// (key, value) of the input to `CASTS_SRC`.
const CASTS_INPUT: &[(&str, &str)] = &[
    ("a", r#"{"n":" 12 ","d":"2020-05-26","t":"01:34"}"#),
    ("b", r#"{"n":"abc","d":"not a date","t":"25:00"}"#),
    ("c", r#"{"n":null,"d":null,"t":null}"#),
    ("d", r#"{"n":"yes","d":"2020","t":"01:34:20.5"}"#),
];

struct CastCase {
    query: &'static str,
    want: &'static [(&'static str, &'static str)],
    /// What the entries say the failing expression was for.
    message: &'static str,
    /// The offsets of the processing-log entries, one per failing expression.
    logged: &'static [i64],
    /// What each failing row's entries say, in order of the entries.
    causes: &'static [&'static str],
}

fn cast_cases() -> Vec<CastCase> {
    vec![
        CastCase {
            query: "CREATE STREAM out AS SELECT id, CAST(n AS INT) AS i, CAST(n AS BIGINT) AS l, \
                    CAST(n AS DOUBLE) AS x, CAST(n AS DECIMAL(4, 1)) AS m, \
                    CAST(n AS BOOLEAN) AS b, CAST(d AS DATE) AS dt, \
                    CAST(d AS TIMESTAMP) AS ts, CAST(t AS TIME) AS tm FROM casts;",
            want: &[
                (
                    "a",
                    r#"{"I":12,"L":12,"X":12.0,"M":12.0,"B":false,"DT":18408,"TS":1590451200000,"TM":5640000}"#,
                ),
                (
                    "b",
                    r#"{"I":null,"L":null,"X":null,"M":null,"B":false,"DT":null,"TS":null,"TM":null}"#,
                ),
                (
                    "c",
                    r#"{"I":null,"L":null,"X":null,"M":null,"B":null,"DT":null,"TS":null,"TM":null}"#,
                ),
                (
                    "d",
                    r#"{"I":null,"L":null,"X":null,"M":null,"B":true,"DT":18262,"TS":1577836800000,"TM":5660500}"#,
                ),
            ],
            message: "Error computing expression",
            logged: &[1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3],
            causes: &[
                "Failed to cast 'abc' to INTEGER: For input string: \"abc\"",
                "Failed to cast 'abc' to BIGINT: For input string: \"abc\"",
                "Failed to cast 'abc' to DOUBLE: For input string: \"abc\"",
                "Failed to cast 'abc' to DECIMAL(4, 1)",
                "Failed to parse date 'not a date'",
                "Failed to parse timestamp 'not a date'",
                "Failed to parse time '25:00'",
                "Failed to cast 'yes' to INTEGER",
                "Failed to cast 'yes' to BIGINT",
                "Failed to cast 'yes' to DOUBLE",
                "Failed to cast 'yes' to DECIMAL(4, 1)",
            ],
        },
        // A literal that does not read fails on every row.
        CastCase {
            query: "CREATE STREAM out AS SELECT id, CAST('abc' AS INT) AS i FROM casts;",
            want: &[
                ("a", r#"{"I":null}"#),
                ("b", r#"{"I":null}"#),
                ("c", r#"{"I":null}"#),
                ("d", r#"{"I":null}"#),
            ],
            message: "Error computing expression",
            logged: &[0, 1, 2, 3],
            causes: &["Failed to cast 'abc' to INTEGER"; 4],
        },
        // ksqlDB's AND is Java's `&&`: a cast its left side rules out is not evaluated,
        // so fails nothing; a predicate that fails does not pass.
        CastCase {
            query: "CREATE STREAM out AS SELECT id, n FROM casts \
                    WHERE n <> 'abc' AND CAST(n AS INT) > 0;",
            want: &[("a", r#"{"N":" 12 "}"#)],
            message: "Error evaluating predicate",
            logged: &[3],
            causes: &["Failed to cast 'yes' to INTEGER"],
        },
        // Likewise a CASE branch that is not taken.
        CastCase {
            query: "CREATE STREAM out AS SELECT id, \
                    CASE WHEN n = 'abc' THEN -1 ELSE CAST(n AS INT) END AS i FROM casts;",
            want: &[
                ("a", r#"{"I":12}"#),
                ("b", r#"{"I":-1}"#),
                ("c", r#"{"I":null}"#),
                ("d", r#"{"I":null}"#),
            ],
            message: "Error computing expression",
            logged: &[3],
            causes: &["Failed to cast 'yes' to INTEGER"],
        },
    ]
}

fn casts_input() -> Vec<Record> {
    CASTS_INPUT
        .iter()
        .enumerate()
        .map(|(i, (k, v))| Record {
            key: Some(k.as_bytes().to_vec()),
            value: Some(v.as_bytes().to_vec()),
            timestamp: 1_000 + i as i64,
            headers: Vec::new(),
            partition: 0,
            offset: i as i64,
        })
        .collect()
}

#[test]
fn a_cast_of_text_that_does_not_read_is_null_and_logged() {
    for case in cast_cases() {
        let mut d = Driver::new();
        d.execute(&format!("{CASTS_SRC}\n{}", case.query))
            .unwrap_or_else(|e| panic!("{}: {e}", case.query));
        for r in casts_input() {
            d.produce("casts", r.key, r.value, r.timestamp, Vec::new(), None);
        }
        let got: Vec<(String, String)> = d
            .topic("OUT")
            .map(|t| {
                t.records
                    .iter()
                    .map(|r| (text(r.key.as_deref()), text(r.value.as_deref())))
                    .collect()
            })
            .unwrap_or_default();
        let want: Vec<(String, String)> = case
            .want
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(got, want, "{}", case.query);
        let mut logged = Vec::new();
        for (e, cause) in d.processing_log.iter().zip(case.causes) {
            assert!(e.contains(case.message), "{}: {e}", case.query);
            assert!(e.contains("topic casts partition 0"), "{e}");
            assert!(e.contains(cause), "{}: {e}", case.query);
            let at = e.split("offset ").nth(1).and_then(|r| r.split(':').next());
            logged.push(at.and_then(|o| o.parse::<i64>().ok()).unwrap_or(-1));
        }
        assert_eq!(d.processing_log.len(), case.logged.len(), "{}", case.query);
        assert_eq!(logged, case.logged, "{}", case.query);

        // As one batch through the pipeline: the same records and entries.
        let done = pipeline_over(CASTS_SRC, case.query)
            .process(&casts_input())
            .expect("process");
        assert!(done.errors.is_empty(), "{}: {:?}", case.query, done.errors);
        let got: Vec<(String, String)> = done
            .outputs
            .iter()
            .map(|o| (text(o.key.as_deref()), text(o.value.as_deref())))
            .collect();
        assert_eq!(got, want, "{}", case.query);
        let mut at: Vec<i64> = done.row_errors.iter().map(|e| e.offset).collect();
        at.sort_unstable();
        assert_eq!(at, case.logged, "{}", case.query);
    }
}
