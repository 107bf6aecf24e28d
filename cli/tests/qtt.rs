//! ksqlDB's query-validation tests on the deterministic driver, with a ratchet: every case
//! listed in `qtt-passing.txt` (repo root) must keep passing. Regenerate the list with
//! `brook qtt --write-passing qtt-passing.txt` when more cases pass.
//!
//! The suite is read from `../shared/qtt` (or `BROOK_QTT_DIR`). Without it the tests skip
//! with a line on stderr, except under CI (`CI` set, as CI services set it, and as
//! `.ci/run` does): there a missing suite fails, since a skipped ratchet checks nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use brook_cli::qtt::{default_dir, files, run_file, run_file_with, Options, Outcome, Totals};

#[test]
fn qtt_ratchet_holds() {
    let Some(dir) = suite_dir() else {
        return;
    };
    let ratchet = read_ratchet(&manifest_dir().join("../qtt-passing.txt"));
    let mut total = Totals::default();
    let mut outcomes = BTreeMap::new();
    for f in files(&dir) {
        for r in run_file(&f) {
            total.add(&r);
            outcomes.insert(r.id.clone(), r.outcome);
        }
    }
    let mut regressions = Vec::new();
    for id in &ratchet {
        match outcomes.get(id) {
            Some(Outcome::Pass) => {}
            Some(Outcome::Fail(why)) => regressions.push(format!("{id}: {why}")),
            Some(Outcome::Skip(why)) => regressions.push(format!("{id}: skipped: {why}")),
            None => regressions.push(format!("{id}: no longer exists")),
        }
    }
    let newly: usize = outcomes
        .iter()
        .filter(|(id, o)| **o == Outcome::Pass && !ratchet.contains(*id))
        .count();
    // Past the harness's capture, so CI's log carries the figure.
    let _ = writeln!(std::io::stderr(), "qtt: {total}");
    if newly > 0 {
        let _ = writeln!(
            std::io::stderr(),
            "qtt: {newly} cases pass that qtt-passing.txt does not list; grow it with `brook qtt --write-passing qtt-passing.txt`"
        );
    }
    assert!(
        regressions.is_empty(),
        "{} cases of the ratchet fail:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
}

/// Every stateful case of the ratchet passes again when its queries restart after every
/// record from their changelogs alone: the changelog carries all the state.
#[test]
fn qtt_ratchet_holds_across_restarts() {
    let Some(dir) = suite_dir() else {
        return;
    };
    let ratchet = read_ratchet(&manifest_dir().join("../qtt-passing.txt"));
    let options = Options {
        restart_every_record: true,
    };
    let mut total = Totals::default();
    let mut regressions = Vec::new();
    let mut seen = BTreeSet::new();
    for f in files(&dir) {
        for r in run_file_with(&f, options) {
            total.add(&r);
            if !ratchet.contains(&r.id) {
                continue;
            }
            seen.insert(r.id.clone());
            match &r.outcome {
                Outcome::Pass => {}
                Outcome::Fail(why) => regressions.push(format!("{}: {why}", r.id)),
                Outcome::Skip(why) => regressions.push(format!("{}: skipped: {why}", r.id)),
            }
        }
    }
    // A listed case the suite no longer has would otherwise pass here unnoticed.
    for id in ratchet.difference(&seen) {
        regressions.push(format!("{id}: no longer exists"));
    }
    let _ = writeln!(
        std::io::stderr(),
        "qtt (restart after every record): {total}"
    );
    assert!(
        regressions.is_empty(),
        "{} cases of the ratchet fail when their queries restart after every record:\n{}",
        regressions.len(),
        regressions.join("\n")
    );
}

/// The suite's directory, or `None` (after saying so) when it is missing outside CI.
fn suite_dir() -> Option<PathBuf> {
    let dir = default_dir();
    if dir.is_dir() {
        return Some(dir);
    }
    let why = format!("no QTT suite at {} (set BROOK_QTT_DIR)", dir.display());
    assert!(!under_ci(), "qtt: {why}; under CI the suite must be there");
    // Straight to stderr: the harness captures `eprintln!`, and a skip must show.
    let _ = writeln!(std::io::stderr(), "qtt: SKIPPED: {why}");
    None
}

/// `CI` set to anything but empty, `0` or `false` (CI services set `CI=true`).
fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false"))
}

/// The ratchet's ids. A missing, unreadable or empty file is an error: a ratchet read as
/// empty would check nothing.
fn read_ratchet(path: &Path) -> BTreeSet<String> {
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
fn manifest_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
