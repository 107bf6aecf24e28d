//! `brook-bench`: runs the benchmarks and prints one table (see README.md).

use std::process::ExitCode;

fn main() -> ExitCode {
    brook_bench::main_with_args(std::env::args().collect())
}
