//! `brook`: Brook's command-line tools.

use std::io::Read;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "brook", version, about = "Brook's SQL tools")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Parse ksqlDB statements and print them back in canonical form, or the first error
    /// with its position.
    Parse {
        /// SQL text to parse.
        #[arg(short = 'e', long = "execute", conflicts_with = "file")]
        sql: Option<String>,
        /// A file of statements (`-` for standard input).
        #[arg(short, long)]
        file: Option<String>,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match args.command {
        Command::Parse { sql, file } => {
            let text = match (sql, file) {
                (Some(s), _) => s,
                (None, Some(f)) if f != "-" => match std::fs::read_to_string(&f) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("brook: cannot read {f}: {e}");
                        return ExitCode::FAILURE;
                    }
                },
                _ => {
                    let mut t = String::new();
                    if let Err(e) = std::io::stdin().read_to_string(&mut t) {
                        eprintln!("brook: cannot read standard input: {e}");
                        return ExitCode::FAILURE;
                    }
                    t
                }
            };
            match brook_sql::parse(&text) {
                Ok(stmts) => {
                    for s in stmts {
                        println!("{};", s.statement);
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{}", brook_cli::render_error(&text, &e));
                    ExitCode::FAILURE
                }
            }
        }
    }
}
