//! `brook-soak`: see `brook_bench::soak`.

fn main() -> std::process::ExitCode {
    brook_bench::soak::main_with_args(std::env::args().collect())
}
