//! ksqlDB's query-validation tests on the deterministic driver, with a ratchet: every case
//! listed in `qtt-passing.txt` (repo root) must keep passing. Regenerate the list with
//! `brook qtt --write-passing qtt-passing.txt` when more cases pass.

use std::collections::BTreeSet;
use std::io::Write;

use brook_cli::qtt::{default_dir, files, run_file, Outcome, Totals};

#[test]
fn qtt_ratchet_holds() {
    let dir = default_dir();
    if !dir.is_dir() {
        eprintln!(
            "qtt: skipped: no QTT suite at {} (set BROOK_QTT_DIR)",
            dir.display()
        );
        return;
    }
    let ratchet_path = manifest_dir().join("../qtt-passing.txt");
    let ratchet: BTreeSet<String> = std::fs::read_to_string(&ratchet_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let mut total = Totals::default();
    let mut outcomes = std::collections::BTreeMap::new();
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
    let dir = default_dir();
    if !dir.is_dir() {
        eprintln!(
            "qtt: skipped: no QTT suite at {} (set BROOK_QTT_DIR)",
            dir.display()
        );
        return;
    }
    let ratchet_path = manifest_dir().join("../qtt-passing.txt");
    let ratchet: BTreeSet<String> = std::fs::read_to_string(&ratchet_path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect();
    let options = brook_cli::qtt::Options {
        restart_every_record: true,
    };
    let mut total = Totals::default();
    let mut regressions = Vec::new();
    for f in files(&dir) {
        for r in brook_cli::qtt::run_file_with(&f, options) {
            total.add(&r);
            if !ratchet.contains(&r.id) {
                continue;
            }
            match &r.outcome {
                Outcome::Pass => {}
                Outcome::Fail(why) => regressions.push(format!("{}: {why}", r.id)),
                Outcome::Skip(why) => regressions.push(format!("{}: skipped: {why}", r.id)),
            }
        }
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

/// The package's directory: cargo's at run time (a test binary built in another checkout
/// of the same workspace — the CI's shared target directory — must read this one's
/// files), else where it was built.
fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}
