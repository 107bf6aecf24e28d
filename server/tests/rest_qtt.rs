//! ksqlDB's REST query-validation tests (`rest-query-validation-tests/*.json` of the QTT
//! suite) against live `brook-server`s, with a ratchet: every case listed in
//! `rest-qtt-passing.txt` (repo root) must keep passing.
//!
//! Each case gets a server of its own on the in-memory broker: ksqlDB's harness cleans one
//! server between cases by dropping sources and deleting topics, which Brook's embedded
//! broker cannot do, and a fresh server costs well under a second. Several servers run at
//! once (`BROOK_REST_QTT_JOBS`, default 4), since a case mostly waits on Kafka. A listed
//! case that fails is run once more, alone; every such rerun is printed, and more than
//! [`MAX_RETRIED`] of them fail the run.
//!
//! Without the suite (`../shared/qtt`, or `BROOK_QTT_DIR`) the test skips with a line on
//! stderr, except under CI (`CI` set, as `.ci/run` sets it): there it fails.
//!
//! - `BROOK_REST_QTT_FILTER=text`: only the cases whose id contains `text`;
//! - `BROOK_REST_QTT_VERBOSE=1`: every failure and skip with its reason;
//! - `BROOK_REST_QTT_WRITE=path`: write the passing ids there (grow the ratchet with
//!   `BROOK_REST_QTT_WRITE=$PWD/rest-qtt-passing.txt`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[path = "rest_qtt/case.rs"]
mod case;
mod common;
#[path = "rest_qtt/compare.rs"]
mod compare;
#[path = "rest_qtt/records.rs"]
mod records;
#[path = "rest_qtt/suite.rs"]
mod suite;

use common::{free_port, Options, Server};
use suite::{Case, Outcome};

/// A case that takes longer than this has hung somewhere; it fails and the next one runs.
const CASE_LIMIT: Duration = Duration::from_secs(90);

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

#[test]
fn rest_qtt_ratchet_holds() {
    let root = suite::default_dir();
    let dir = suite::rest_dir(&root);
    if !dir.is_dir() {
        let why = format!("no REST QTT suite at {} (set BROOK_QTT_DIR)", dir.display());
        assert!(
            !under_ci(),
            "rest-qtt: {why}; under CI the suite must be there"
        );
        // Straight to stderr: the harness captures `eprintln!`, and a skip must show.
        let _ = writeln!(std::io::stderr(), "rest-qtt: SKIPPED: {why}");
        return;
    }
    let mut cases = suite::load(&dir).unwrap_or_else(|e| panic!("the REST QTT suite: {e}"));
    let filter = std::env::var("BROOK_REST_QTT_FILTER").ok();
    if let Some(f) = &filter {
        cases.retain(|c| c.id.contains(f.as_str()));
    }
    let verbose = env_flag("BROOK_REST_QTT_VERBOSE");
    let jobs: usize = std::env::var("BROOK_REST_QTT_JOBS")
        .ok()
        .and_then(|j| j.parse().ok())
        .filter(|j| *j > 0)
        .unwrap_or(4);

    let ratchet = read_ratchet(&manifest_dir().join("../rest-qtt-passing.txt"));

    let started = Instant::now();
    let mut outcomes = run_all(cases.clone(), jobs, verbose);
    let retried = retry_failed(&cases, &ratchet, &mut outcomes, verbose);

    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for o in outcomes.values() {
        match o {
            Outcome::Pass => passed += 1,
            Outcome::Fail(_) => failed += 1,
            Outcome::Skip(_) => skipped += 1,
        }
    }
    let mut regressions = Vec::new();
    for id in &ratchet {
        match outcomes.get(id) {
            Some(Outcome::Pass) => {}
            Some(Outcome::Fail(why)) => regressions.push(format!("{id}: {why}")),
            Some(Outcome::Skip(why)) => regressions.push(format!("{id}: skipped: {why}")),
            // Filtered out, or gone from the suite (only a full run can tell).
            None if filter.is_some() => {}
            None => regressions.push(format!("{id}: no longer exists")),
        }
    }
    let newly = outcomes
        .iter()
        .filter(|(id, o)| **o == Outcome::Pass && !ratchet.contains(*id))
        .count();

    // Past the harness's capture, so CI's log carries the figures.
    let mut err = std::io::stderr();
    let _ = writeln!(
        err,
        "rest-qtt: {passed} passed ({} of them only when run again), {failed} failed, {skipped} skipped ({:.0} s, {jobs} servers at a time)",
        retried.len(),
        started.elapsed().as_secs_f64()
    );
    if newly > 0 {
        let _ = writeln!(
            err,
            "rest-qtt: {newly} cases pass that rest-qtt-passing.txt does not list; grow it with BROOK_REST_QTT_WRITE=$PWD/rest-qtt-passing.txt"
        );
    }
    if let Ok(path) = std::env::var("BROOK_REST_QTT_WRITE") {
        let passing: Vec<&str> = outcomes
            .iter()
            .filter(|(_, o)| **o == Outcome::Pass)
            .map(|(id, _)| id.as_str())
            .collect();
        let mut text = passing.join("\n");
        text.push('\n');
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        let _ = writeln!(
            err,
            "rest-qtt: wrote {} passing ids to {path}",
            passing.len()
        );
    }
    assert!(
        regressions.is_empty(),
        "{} cases of the ratchet fail:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
    assert!(
        retried.len() <= MAX_RETRIED,
        "{} cases of the ratchet passed only when run again (at most {MAX_RETRIED} may): \
         they are flaky, not passing:\n{}",
        retried.len(),
        retried.join("\n")
    );
}

/// How many cases of the ratchet may fail once and pass when run again, alone, before the
/// run fails. A rerun covers a loaded machine that is slower than a case's time limits
/// (the servers are eventually consistent); a case that needs one often is flaky — one
/// that fails half the time passes three runs in four with a rerun — so every rerun is
/// printed, and more than a handful is a failure.
const MAX_RETRIED: usize = 3;

/// Runs each case of the ratchet that did not pass once more, alone, and keeps that
/// outcome. Every rerun is printed (past the harness's capture) with the first failure;
/// returns the ids, with that failure, of the cases that passed only on the rerun.
fn retry_failed(
    cases: &[Case],
    ratchet: &BTreeSet<String>,
    outcomes: &mut BTreeMap<String, Outcome>,
    verbose: bool,
) -> Vec<String> {
    let retry: Vec<Case> = cases
        .iter()
        .filter(|c| ratchet.contains(&c.id) && outcomes.get(&c.id) != Some(&Outcome::Pass))
        .cloned()
        .collect();
    if retry.is_empty() {
        return Vec::new();
    }
    let first: BTreeMap<String, String> = retry
        .iter()
        .map(|c| {
            let why = match outcomes.get(&c.id) {
                Some(Outcome::Fail(why)) => why.clone(),
                Some(Outcome::Skip(why)) => format!("skipped: {why}"),
                Some(Outcome::Pass) | None => "no outcome".to_string(),
            };
            (c.id.clone(), why)
        })
        .collect();
    let again = run_all(retry, 1, verbose);
    let mut err = std::io::stderr();
    let mut passed_on_rerun = Vec::new();
    for (id, why) in &first {
        let verdict = match again.get(id) {
            Some(Outcome::Pass) => {
                passed_on_rerun.push(format!("{id}: first run: {why}"));
                "passed when run again"
            }
            _ => "failed again",
        };
        let _ = writeln!(err, "rest-qtt: RETRIED {id}: {verdict}; first run: {why}");
    }
    outcomes.extend(again);
    passed_on_rerun
}

/// Runs the cases on `jobs` threads, each starting a server per case.
fn run_all(cases: Vec<Case>, jobs: usize, verbose: bool) -> BTreeMap<String, Outcome> {
    let queue = Arc::new(Mutex::new(VecDeque::from(cases)));
    let results = Arc::new(Mutex::new(BTreeMap::new()));
    let workers: Vec<_> = (0..jobs)
        .map(|_| {
            let queue = Arc::clone(&queue);
            let results = Arc::clone(&results);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a tokio runtime");
                let http = common::client();
                loop {
                    let Some(case) = queue.lock().unwrap_or_else(|e| e.into_inner()).pop_front()
                    else {
                        break;
                    };
                    let t = Instant::now();
                    // A panic is a bug in the harness or a hung server; it must not stop
                    // the other cases.
                    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        run_one(&case, &rt, &http)
                    }))
                    .unwrap_or_else(|p| {
                        let msg = p
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        Outcome::Fail(format!("panic: {msg}"))
                    });
                    if verbose {
                        let took = t.elapsed().as_secs_f64();
                        let line = match &outcome {
                            Outcome::Pass => format!("PASS {} ({took:.1} s)", case.id),
                            Outcome::Fail(why) => {
                                format!("FAIL {} ({took:.1} s)\n    {why}", case.id)
                            }
                            Outcome::Skip(why) => format!("SKIP {}: {why}", case.id),
                        };
                        let _ = writeln!(std::io::stderr(), "{line}");
                    }
                    results
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(case.id.clone(), outcome);
                }
            })
        })
        .collect();
    for w in workers {
        let _ = w.join();
    }
    let results = std::mem::take(&mut *results.lock().unwrap_or_else(|e| e.into_inner()));
    results
}

fn run_one(case: &Case, rt: &tokio::runtime::Runtime, http: &reqwest::Client) -> Outcome {
    if let Some(why) = case::skip_reason(case) {
        return Outcome::Skip(why);
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    // ksqlDB's REST tests run with scalable push queries enabled (RestQueryTranslationTest).
    let server = Server::start_with(
        Options {
            data_dir: dir.path(),
            broker_port: free_port(),
            broker_in_memory: true,
        },
        &["--config", "ksql.query.push.v2.enabled=true"],
    );
    server.wait_for("brook-server ready");
    let target = case::Target {
        api: &server.api,
        bootstrap: &server.bootstrap,
        http,
    };
    let outcome = rt.block_on(async {
        tokio::time::timeout(CASE_LIMIT, case::run(case, &target))
            .await
            .unwrap_or_else(|_| Outcome::Fail(format!("the case took over {CASE_LIMIT:?}")))
    });
    // Nothing of a case's server is needed afterwards: no graceful shutdown to wait for.
    server.kill();
    outcome
}

/// `CI` set to anything but empty, `0` or `false` (CI services set `CI=true`).
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// The ratchet's ids. A missing, unreadable or empty file is an error: a ratchet read as
/// empty would check nothing.
fn read_ratchet(path: &std::path::Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("the ratchet {}: {e}", path.display()));
    let ids: BTreeSet<String> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    assert!(
        !ids.is_empty(),
        "the ratchet {} lists no case",
        path.display()
    );
    ids
}

/// The package's directory: cargo's at run time (a test binary built in another checkout
/// of the same workspace — the CI's shared target directory — must read this one's
/// files), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
