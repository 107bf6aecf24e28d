//! `brook`: Brook's command-line tools.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "brook",
    version,
    about = "Brook's SQL REPL and tools: `brook [SERVER_URL]` opens the REPL",
    args_conflicts_with_subcommands = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    repl: ReplArgs,
}

/// The REPL's arguments (used when no subcommand is given).
#[derive(Debug, clap::Args)]
struct ReplArgs {
    /// The server's address: http://host:port or https://host:port (REST), grpc://host:port
    /// or grpcs://host:port (gRPC; grpcs over TLS).
    #[arg(value_name = "SERVER_URL", default_value = brook_cli::repl::DEFAULT_SERVER)]
    server: String,
    /// The user to log in as (HTTP Basic authentication), as ksql's --user.
    #[arg(short = 'u', long = "user", env = "BROOK_USER", value_name = "NAME")]
    user: Option<String>,
    /// The user's password; asked for on the terminal when --user is given without it.
    /// The command line is visible to other users (`ps`): prefer the prompt or
    /// BROOK_PASSWORD.
    #[arg(
        short = 'p',
        long = "password",
        env = "BROOK_PASSWORD",
        hide_env_values = true,
        value_name = "PASSWORD"
    )]
    password: Option<String>,
    /// CA certificates (PEM) to check an https:// or grpcs:// server's certificate
    /// against, instead of the system's.
    #[arg(long = "ca", value_name = "PEM")]
    ca: Option<PathBuf>,
    /// Run these statements, then exit (non-zero on the first that fails).
    #[arg(short = 'e', long = "execute", conflicts_with = "file")]
    execute: Option<String>,
    /// Run the statements in this file, then exit (non-zero on the first that fails).
    #[arg(short = 'f', long = "file")]
    file: Option<PathBuf>,
    /// Define a variable for ${name} substitution, as DEFINE does (repeatable).
    #[arg(short = 'd', long = "define", value_name = "NAME=VALUE")]
    define: Vec<String>,
    /// How results are printed: TABULAR or JSON.
    #[arg(long, value_name = "FORMAT", ignore_case = true, value_parser = ["TABULAR", "JSON"])]
    output: Option<String>,
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
    /// Run ksqlDB query-validation tests (files or directories; default ../shared/qtt).
    Qtt {
        paths: Vec<PathBuf>,
        /// Print every failing case with its reason.
        #[arg(short, long)]
        verbose: bool,
        /// Write the ids of the passing cases to this file (the ratchet).
        #[arg(long)]
        write_passing: Option<PathBuf>,
    },
    /// Run a test the way ksqlDB's ksql-test-runner does.
    TestRunner {
        #[arg(short = 's', long = "sql-file")]
        sql_file: PathBuf,
        #[arg(short = 'i', long = "input-file")]
        input_file: Option<PathBuf>,
        #[arg(short = 'o', long = "output-file")]
        output_file: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(command) = args.command else {
        return brook_cli::repl::run(brook_cli::repl::Options {
            server: Some(args.repl.server),
            execute: args.repl.execute,
            file: args.repl.file,
            defines: args.repl.define,
            output: args.repl.output,
            login: brook_cli::repl::client::Login {
                user: args.repl.user,
                password: args.repl.password,
                ca: args.repl.ca,
            },
        });
    };
    match command {
        Command::Parse { sql, file } => parse(sql, file),
        Command::Qtt {
            paths,
            verbose,
            write_passing,
        } => qtt(paths, verbose, write_passing),
        Command::TestRunner {
            sql_file,
            input_file,
            output_file,
        } => match brook_cli::test_runner::run(&sql_file, input_file.as_deref(), &output_file) {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(why) => {
                println!("{why}");
                ExitCode::FAILURE
            }
        },
    }
}

fn parse(sql: Option<String>, file: Option<String>) -> ExitCode {
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

fn qtt(paths: Vec<PathBuf>, verbose: bool, write_passing: Option<PathBuf>) -> ExitCode {
    use brook_cli::qtt::{files, run_file, Outcome, Totals};
    let paths = if paths.is_empty() {
        vec![brook_cli::qtt::default_dir()]
    } else {
        paths
    };
    let mut total = Totals::default();
    let mut passing = Vec::new();
    for p in &paths {
        let fs = files(p);
        if fs.is_empty() {
            eprintln!("brook: no test files under {}", p.display());
            return ExitCode::FAILURE;
        }
        for f in fs {
            let results = run_file(&f);
            let mut t = Totals::default();
            for r in &results {
                t.add(r);
                total.add(r);
                match &r.outcome {
                    Outcome::Pass => passing.push(r.id.clone()),
                    Outcome::Fail(why) if verbose => println!("FAIL {}: {why}", r.id),
                    _ => {}
                }
            }
            let name = f
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            println!("qtt: {name}: {t}");
        }
    }
    println!("qtt: {total}");
    if let Some(path) = write_passing {
        passing.sort();
        let text = passing.join("\n") + "\n";
        if let Err(e) = std::fs::write(&path, text) {
            eprintln!("brook: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
