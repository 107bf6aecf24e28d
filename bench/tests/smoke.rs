//! The engine-only workloads at tiny counts: they run, and their results are right (the
//! workloads themselves refuse a run whose output count is wrong).

use brook_bench::engine::{plan, run_pipeline};
use brook_bench::gen::{OrdersGen, BIG_ORDERS, ORDERS_DDL};
use brook_bench::{engine_rows, Args};
use clap::Parser;

#[test]
fn big_orders_keeps_the_right_records() {
    let g = OrdersGen::default();
    let n = 3_000;
    let records = g.records(0..n, 4);
    let want = (0..n).filter(|i| g.order(*i).total > 1000.0).count() as u64;
    assert!(want > n / 3 && want < 2 * n / 3, "about half pass: {want}");
    let mut p = plan(ORDERS_DDL, BIG_ORDERS).expect("plans");
    let t = run_pipeline(&mut p, &[], &records).expect("runs");
    assert_eq!(t.outputs, want);
    assert_eq!(t.errors, 0);
}

#[test]
fn quick_engine_workloads_run() {
    let args = Args::parse_from([
        "brook-bench",
        "--quick",
        "--records",
        "2000",
        "--only",
        "stateless,tumbling,join,nexmark",
    ]);
    let rows = engine_rows(&args).expect("engine workloads");
    let names: Vec<&str> = rows.iter().map(|r| r.workload.as_str()).collect();
    for want in [
        "stateless",
        "tumbling",
        "join",
        "nexmark q0",
        "nexmark q1",
        "nexmark q2",
    ] {
        let row = rows
            .iter()
            .find(|r| r.workload.contains(want))
            .unwrap_or_else(|| panic!("no {want} row in {names:?}"));
        assert!(
            row.figure.is_some_and(|f| f > 0.0),
            "{want}: no figure: {row:?}"
        );
    }
    let table = brook_bench::table::render(&rows);
    assert!(table.lines().count() == rows.len() + 2, "{table}");
}
