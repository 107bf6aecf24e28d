//! `brook [SERVER_URL]`: the interactive SQL REPL, and its non-interactive forms (`-e`,
//! `-f`). Statements go to a Brook (or ksqlDB) server over the REST API (or Brook's gRPC
//! API), over TLS for `https://`/`grpcs://`, logged in with `--user`; SET/UNSET,
//! DEFINE/UNDEFINE and the client commands (`help`, `spool`, …) are handled here.

pub mod client;
pub mod commands;
pub mod complete;
pub mod lexer;
mod password;
pub mod render;

use std::collections::HashMap;
use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use brook_sql::{ListKind, Statement};
use rustyline::error::ReadlineError;
use rustyline::history::DefaultHistory;
use rustyline::{Config, Editor};
use serde_json::{json, Map, Value};
use thiserror::Error;

use client::{Client, Login, ServerError, StreamItem};
use commands::{Command, OutputFormat};
use complete::{BrookHelper, Names, SharedNames};
use lexer::Piece;

pub const DEFAULT_SERVER: &str = "http://localhost:8088";
const PROMPT: &str = "brook> ";
/// As wide as the prompt, so continued lines line up under the first.
const CONTINUATION: &str = "     > ";

/// Everything that can go wrong in the REPL.
#[derive(Debug, Error)]
pub enum ReplError {
    #[error("cannot reach the server at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("{}", .0.message)]
    Server(ServerError),
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// A statement the client itself could not read (an undefined variable).
    #[error("{0}")]
    Parse(#[from] brook_sql::ParseError),
    #[error("{0}")]
    Usage(String),
    #[error("line editor: {0}")]
    Readline(#[from] ReadlineError),
    #[error("cannot start the client's runtime: {0}")]
    Runtime(std::io::Error),
}

/// How `brook` was started.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub server: Option<String>,
    /// `-e`: statements to run, then exit.
    pub execute: Option<String>,
    /// `-f`: a file of statements to run, then exit.
    pub file: Option<PathBuf>,
    /// `-d name=value`: variables, as DEFINE sets them.
    pub defines: Vec<String>,
    pub output: Option<String>,
    /// `--user`, `--password` (asked for when missing), `--ca`.
    pub login: Login,
}

/// Runs the REPL or the statements given; the exit code is non-zero when a statement
/// failed (non-interactive) or the REPL could not start.
pub fn run(mut opts: Options) -> ExitCode {
    let interactive = opts.execute.is_none() && opts.file.is_none();
    if let Err(e) = password::complete(&mut opts.login) {
        eprintln!("brook: {e}");
        return ExitCode::FAILURE;
    }
    let mut session = match Session::new(&opts, interactive) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("brook: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(sql) = &opts.execute {
        return exit_code(session.run_text(sql, None));
    }
    if let Some(path) = &opts.file {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("brook: cannot read {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
        };
        return exit_code(session.run_text(&text, Some(&path.display().to_string())));
    }
    match session.interactive() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("brook: {e}");
            ExitCode::FAILURE
        }
    }
}

fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

struct Spool {
    path: PathBuf,
    file: File,
}

struct Session {
    rt: tokio::runtime::Runtime,
    client: Client,
    /// Kept for `server <url>`, which logs in to the new server the same way.
    login: Login,
    /// SET properties, sent as `streamsProperties` with every request.
    properties: Map<String, Value>,
    /// DEFINE variables, substituted into statements before they are sent.
    variables: HashMap<String, String>,
    output: OutputFormat,
    spool: Option<Spool>,
    interactive: bool,
    /// Lines printed so far, so the prompt loop can tell whether a statement printed any.
    emitted: usize,
    /// A spinner while a statement runs, only when someone watches a terminal.
    spinner: bool,
    width: usize,
    names: SharedNames,
}

impl Session {
    fn new(opts: &Options, interactive: bool) -> Result<Session, ReplError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ReplError::Runtime)?;
        let client = Client::new(
            opts.server.as_deref().unwrap_or(DEFAULT_SERVER),
            &opts.login,
        )?;
        let output = match &opts.output {
            Some(o) => OutputFormat::parse(o)?,
            None => OutputFormat::Tabular,
        };
        let mut variables = HashMap::new();
        for d in &opts.defines {
            let Some((name, value)) = d.split_once('=') else {
                return Err(ReplError::Usage(format!("-d {d}: expected name=value")));
            };
            variables.insert(name.trim().to_string(), value.to_string());
        }
        let width = std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(120);
        Ok(Session {
            rt,
            client,
            login: opts.login.clone(),
            properties: Map::new(),
            variables,
            output,
            spool: None,
            interactive,
            emitted: 0,
            spinner: interactive && std::io::stderr().is_terminal(),
            width,
            names: Arc::new(Mutex::new(Names::default())),
        })
    }

    fn emit(&mut self, text: &str) {
        self.emitted += 1;
        println!("{text}");
        self.spool_write(text);
    }

    /// A line about a statement rather than its result: with JSON output from a script it
    /// goes to stderr, so that stdout stays JSON.
    fn emit_status(&mut self, text: &str) {
        if self.output == OutputFormat::Json && !self.interactive {
            self.emitted += 1;
            eprintln!("{text}");
            self.spool_write(text);
        } else {
            self.emit(text);
        }
    }

    fn emit_error(&mut self, text: &str) {
        self.emitted += 1;
        // Through stdout when interactive, so errors and results stay in order on screen;
        // stderr otherwise, so scripts can tell them apart.
        if self.interactive {
            println!("{text}");
        } else {
            eprintln!("{text}");
        }
        self.spool_write(text);
    }

    fn spool_write(&mut self, text: &str) {
        if let Some(s) = &mut self.spool {
            if let Err(e) = writeln!(s.file, "{text}") {
                let path = s.path.display().to_string();
                self.spool = None;
                eprintln!("brook: spool to {path} stopped: {e}");
            }
        }
    }

    /// Runs every statement in `text`, stopping at the first that fails (after reporting
    /// it). `origin` names the file the text came from, for error positions.
    fn run_text(&mut self, text: &str, origin: Option<&str>) -> bool {
        let pieces = lexer::split_all(text);
        for piece in &pieces {
            if let Err(e) = self.run_piece(piece) {
                self.report(piece, &e, origin);
                return false;
            }
        }
        true
    }

    fn report(&mut self, piece: &Piece, e: &ReplError, origin: Option<&str>) {
        let at = origin.map(|f| (f, piece.line, piece.column));
        let shown = match e {
            ReplError::Server(se) => {
                let statement = se
                    .statement
                    .clone()
                    .unwrap_or_else(|| format!("{};", piece.text));
                render::failure(&statement, &se.message, at)
            }
            ReplError::Parse(pe) => render::failure(&piece.text, &pe.to_string(), at),
            other => match at {
                Some((f, l, c)) => format!("{f}:{l}:{c}: {other}"),
                None => other.to_string(),
            },
        };
        self.emit_error(&shown);
    }

    fn run_piece(&mut self, piece: &Piece) -> Result<(), ReplError> {
        // Inside statements only RUN SCRIPT is a command; the others are for the prompt.
        if let Some(Ok(Command::RunScript(path))) = commands::parse(&piece.text) {
            return self.run_script(&path);
        }
        let text = if piece.text.contains("${") {
            brook_sql::substitute(&piece.text, &self.variables)?
        } else {
            piece.text.clone()
        };
        let parsed = brook_sql::parse(&text).ok().and_then(|mut v| {
            if v.len() == 1 {
                Some(v.remove(0).statement)
            } else {
                None
            }
        });
        match parsed {
            Some(Statement::Set { name, value }) => {
                let message = format!(
                    "Successfully changed local property '{name}' to '{value}'. Use the UNSET command to revert your change."
                );
                self.properties.insert(name, Value::String(value));
                self.emit_status(&message);
                Ok(())
            }
            Some(Statement::Unset { name }) => match self.properties.remove(&name) {
                Some(old) => {
                    let old = render::cell(&old);
                    self.emit_status(&format!(
                        "Successfully unset local property '{name}' (value was '{old}')."
                    ));
                    Ok(())
                }
                None => Err(ReplError::Usage(format!(
                    "Cannot unset local property '{name}' which was never set"
                ))),
            },
            Some(Statement::Define { name, value }) => {
                self.variables
                    .retain(|k, _| !k.eq_ignore_ascii_case(&name.value));
                self.variables.insert(name.value, value);
                Ok(())
            }
            Some(Statement::Undefine(name)) => {
                let before = self.variables.len();
                self.variables
                    .retain(|k, _| !k.eq_ignore_ascii_case(&name.value));
                if before == self.variables.len() {
                    self.emit_status(&format!("Variable '{}' is undefined", name.value));
                }
                Ok(())
            }
            Some(Statement::List {
                kind: ListKind::Variables,
                ..
            }) => {
                let mut rows: Vec<Vec<String>> = self
                    .variables
                    .iter()
                    .map(|(k, v)| vec![k.clone(), v.clone()])
                    .collect();
                rows.sort();
                let json = json!({"@type": "variables", "variables": rows});
                self.show_local(&["Variable Name", "Value"], &rows, json);
                Ok(())
            }
            Some(Statement::List {
                kind: ListKind::Properties,
                ..
            }) => {
                let rows: Vec<Vec<String>> = self
                    .properties
                    .iter()
                    .map(|(k, v)| vec![k.clone(), "SESSION".to_string(), render::cell(v)])
                    .collect();
                let json = json!({"@type": "properties", "properties": self.properties});
                self.show_local(&["Property", "Scope", "Value"], &rows, json);
                Ok(())
            }
            Some(Statement::Query(q)) => self.push_query(&text, q.limit),
            Some(Statement::Print { .. }) => self.print_topic(&text),
            other => {
                let entities = self.request_ksql(&text)?;
                self.show_entities(&entities);
                if matches!(
                    other,
                    Some(
                        Statement::CreateSource { .. }
                            | Statement::CreateAsSelect { .. }
                            | Statement::Drop { .. }
                    )
                ) {
                    self.refresh_names();
                }
                Ok(())
            }
        }
    }

    fn show_local(&mut self, header: &[&str], rows: &[Vec<String>], as_json: Value) {
        let shown = match self.output {
            OutputFormat::Tabular => render::table(header, rows, self.width),
            OutputFormat::Json => {
                serde_json::to_string_pretty(&as_json).unwrap_or_else(|_| as_json.to_string())
            }
        };
        self.emit(&shown);
    }

    fn run_script(&mut self, path: &Path) -> Result<(), ReplError> {
        let text = std::fs::read_to_string(path).map_err(|source| ReplError::Io {
            path: path.display().to_string(),
            source,
        })?;
        if self.run_text(&text, Some(&path.display().to_string())) {
            Ok(())
        } else {
            // The failing statement was reported where it is, in the script.
            Err(ReplError::Usage(format!(
                "{}: the script stopped at the statement that failed",
                path.display()
            )))
        }
    }

    fn request_ksql(&mut self, text: &str) -> Result<Vec<Value>, ReplError> {
        let sql = format!("{text};");
        let client = self.client.clone();
        let props = self.properties.clone();
        let spinner = Spinner::start(self.spinner);
        let answer = self
            .rt
            .block_on(interruptible(self.interactive, client.ksql(&sql, &props)));
        drop(spinner);
        match answer {
            Some(r) => r,
            None => Err(ReplError::Usage(
                "Interrupted: the statement may still complete on the server".into(),
            )),
        }
    }

    fn show_entities(&mut self, entities: &[Value]) {
        match self.output {
            OutputFormat::Json => {
                let text = serde_json::to_string_pretty(entities)
                    .unwrap_or_else(|_| Value::Array(entities.to_vec()).to_string());
                self.emit(&text);
            }
            OutputFormat::Tabular => {
                for e in entities {
                    if let Some(text) = render::entity(e, self.width) {
                        self.emit(&text);
                    }
                }
            }
        }
    }

    /// Streams a push query's rows until its LIMIT, an error, or Ctrl-C.
    fn push_query(&mut self, text: &str, limit: Option<u64>) -> Result<(), ReplError> {
        let sql = format!("{text};");
        let client = self.client.clone();
        let props = self.properties.clone();
        let started = Instant::now();
        let spinner = Spinner::start(self.spinner);
        let stream = self
            .rt
            .block_on(interruptible(self.interactive, client.query(&sql, &props)));
        drop(spinner);
        let mut stream = match stream {
            Some(s) => s?,
            None => {
                self.emit_status("Query terminated");
                return Ok(());
            }
        };
        let table = render::StreamTable::new(&stream.columns, &stream.types, self.width);
        match self.output {
            OutputFormat::Tabular => self.emit(&table.header(&stream.columns)),
            OutputFormat::Json => self.emit(
                &json!({"queryId": stream.query_id, "columnNames": stream.columns,
                        "columnTypes": stream.types})
                .to_string(),
            ),
        }
        let mut rows = 0u64;
        let mut interrupted = false;
        let mut failure = None;
        loop {
            let next = self
                .rt
                .block_on(interruptible(self.interactive, stream.next()));
            match next {
                None => {
                    interrupted = true;
                    break;
                }
                Some(Ok(Some(StreamItem::Row(values)))) => {
                    rows += 1;
                    match self.output {
                        OutputFormat::Tabular => self.emit(&table.row(&values)),
                        OutputFormat::Json => {
                            let obj: Map<String, Value> =
                                stream.columns.iter().cloned().zip(values).collect();
                            self.emit(&Value::Object(obj).to_string());
                        }
                    }
                }
                Some(Ok(Some(StreamItem::Error(message)))) => {
                    failure = Some(ReplError::Server(ServerError {
                        status: 200,
                        code: None,
                        message,
                        statement: Some(sql.clone()),
                    }));
                    break;
                }
                Some(Ok(None)) => break,
                Some(Err(e)) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        // Closing the connection is what ends the query on the server.
        drop(stream);
        if self.output == OutputFormat::Tabular {
            self.emit(&table.rule());
        }
        if let Some(e) = failure {
            return Err(e);
        }
        if limit.is_some_and(|l| rows >= l) {
            self.emit_status("Limit Reached");
        }
        if interrupted || limit.is_some() {
            self.emit_status("Query terminated");
        }
        let plural = if rows == 1 { "row" } else { "rows" };
        let secs = started.elapsed().as_secs_f64();
        self.emit_status(&format!("{rows} {plural} in {secs:.2} s"));
        Ok(())
    }

    /// PRINT: the server's lines as they come, until its LIMIT or Ctrl-C.
    fn print_topic(&mut self, text: &str) -> Result<(), ReplError> {
        let sql = format!("{text};");
        let client = self.client.clone();
        let props = self.properties.clone();
        let stream = self
            .rt
            .block_on(interruptible(self.interactive, client.print(&sql, &props)));
        let mut stream = match stream {
            Some(s) => s?,
            None => {
                self.emit_status("Topic printing ceased");
                return Ok(());
            }
        };
        loop {
            match self
                .rt
                .block_on(interruptible(self.interactive, stream.next_line()))
            {
                Some(Ok(Some(line))) => self.emit(&line),
                Some(Ok(None)) => break,
                Some(Err(e)) => return Err(e),
                None => {
                    drop(stream);
                    self.emit_status("Topic printing ceased");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Reloads the stream, table and column names that tab completion offers.
    fn refresh_names(&mut self) {
        if !self.interactive {
            return;
        }
        let client = self.client.clone();
        let names = self.rt.block_on(async move {
            let mut n = Names::default();
            let none = Map::new();
            for (list, key) in [("SHOW STREAMS;", "streams"), ("SHOW TABLES;", "tables")] {
                let Ok(entities) = client.ksql(list, &none).await else {
                    continue;
                };
                for e in &entities {
                    for s in e.get(key).and_then(Value::as_array).into_iter().flatten() {
                        if let Some(name) = s.get("name").and_then(Value::as_str) {
                            n.sources.push(name.to_string());
                        }
                    }
                }
            }
            for source in n.sources.clone() {
                let Ok(entities) = client.ksql(&format!("DESCRIBE `{source}`;"), &none).await
                else {
                    continue;
                };
                let fields = entities
                    .iter()
                    .filter_map(|e| e.pointer("/sourceDescription/fields"))
                    .filter_map(Value::as_array)
                    .flatten();
                for f in fields {
                    if let Some(name) = f.get("name").and_then(Value::as_str) {
                        if !n.columns.iter().any(|c| c == name) {
                            n.columns.push(name.to_string());
                        }
                    }
                }
            }
            n.sources.sort();
            n.columns.sort();
            n
        });
        *self
            .names
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = names;
    }

    fn server_version(&mut self) -> Result<String, ReplError> {
        let client = self.client.clone();
        let info = self.rt.block_on(client.info())?;
        Ok(info
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string())
    }

    fn banner(&mut self) {
        let url = self.client.url().to_string();
        let version = env!("CARGO_PKG_VERSION");
        self.emit(&format!("Brook CLI {version}"));
        match self.server_version() {
            Ok(v) => self.emit(&format!("Server: {url} (version {v})")),
            // It answered, and refused: the login, not the server, needs fixing.
            Err(e @ ReplError::Server(_)) => self.emit_error(&format!("Warning: {e}")),
            Err(e) => self.emit_error(&format!(
                "Warning: {e}\nStatements will fail until it is up; 'server <url>' switches."
            )),
        }
        self.emit("Type 'help' for the commands; Ctrl-D exits.\n");
    }

    /// The prompt loop.
    fn interactive(&mut self) -> Result<(), ReplError> {
        #[cfg(unix)]
        {
            // Registering SIGINT once means a Ctrl-C between statements cannot kill the
            // REPL; each running statement listens for it and stops.
            let _ = self.rt.block_on(async {
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
            });
        }
        let config = Config::builder()
            .auto_add_history(false)
            .history_ignore_space(true)
            .max_history_size(2000)?
            .completion_type(rustyline::CompletionType::List)
            // A pasted script arrives as one edit (its newlines do not run it line by
            // line); the pty test also relies on each prompt turning it on.
            .bracketed_paste(true)
            .build();
        let mut editor: Editor<BrookHelper, DefaultHistory> = Editor::with_config(config)?;
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        editor.set_helper(Some(BrookHelper::new(self.names.clone(), color)));
        let history_path = history_path();
        if let Some(p) = &history_path {
            // No history yet is the common first-run case, not an error.
            let _ = editor.load_history(p);
        }
        self.banner();
        self.refresh_names();
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.is_empty() {
                PROMPT
            } else {
                CONTINUATION
            };
            if let Some((cols, _)) = editor.dimensions() {
                self.width = usize::from(cols).max(20);
            }
            let line = match editor.readline(prompt) {
                Ok(line) => line,
                Err(ReadlineError::Interrupted) => {
                    // Ctrl-C at the prompt drops what was typed, as in a shell.
                    buffer.clear();
                    continue;
                }
                Err(ReadlineError::Eof) => break,
                Err(e) => return Err(e.into()),
            };
            let command = if buffer.is_empty() {
                commands::parse(&line)
            } else {
                None
            };
            // The spool holds what was typed, except the command that ends it.
            if !matches!(command, Some(Ok(Command::Spool(None)))) {
                self.spool_write(&format!("{prompt}{line}"));
            }
            if let Some(cmd) = command {
                let _ = editor.add_history_entry(line.trim());
                save_history(&mut editor, history_path.as_deref());
                let printed = self.emitted;
                match cmd {
                    Ok(Command::Exit) => break,
                    Ok(cmd) => {
                        if let Err(e) = self.command(cmd, &mut editor) {
                            self.emit_error(&e.to_string());
                        }
                    }
                    Err(e) => self.emit_error(&e.to_string()),
                }
                if self.emitted > printed {
                    self.emit("");
                }
                continue;
            }
            buffer.push_str(&line);
            buffer.push('\n');
            let split = lexer::split(&buffer);
            if split.statements.is_empty() && split.pending {
                continue;
            }
            let done = buffer[..buffer.len() - split.rest.len()].trim().to_string();
            if !done.is_empty() {
                let _ = editor.add_history_entry(done.as_str());
                save_history(&mut editor, history_path.as_deref());
            }
            for piece in &split.statements {
                let printed = self.emitted;
                let result = self.run_piece(piece);
                if let Err(e) = &result {
                    self.report(piece, e, None);
                }
                // A blank line after each result keeps one from running into the next.
                if self.emitted > printed {
                    self.emit("");
                }
                if result.is_err() {
                    break;
                }
            }
            buffer = if split.pending {
                split.rest
            } else {
                String::new()
            };
            // Keep a pending statement's text without the blank lines before it.
            if buffer.trim().is_empty() {
                buffer.clear();
            }
        }
        save_history(&mut editor, history_path.as_deref());
        Ok(())
    }

    fn command(
        &mut self,
        cmd: Command,
        editor: &mut Editor<BrookHelper, DefaultHistory>,
    ) -> Result<(), ReplError> {
        match cmd {
            Command::Help => self.emit(commands::HELP),
            Command::Clear => editor.clear_screen()?,
            Command::Exit => {}
            Command::History => {
                let lines: Vec<String> = editor
                    .history()
                    .iter()
                    .enumerate()
                    .map(|(i, h)| format!("{:>5}  {h}", i + 1))
                    .collect();
                self.emit(&lines.join("\n"));
            }
            Command::Version => {
                let mut text = format!("Brook CLI {}", env!("CARGO_PKG_VERSION"));
                match self.server_version() {
                    Ok(v) => text.push_str(&format!("\nServer {} {v}", self.client.url())),
                    Err(e) => text.push_str(&format!("\n{e}")),
                }
                self.emit(&text);
            }
            Command::Server(None) => {
                let url = self.client.url().to_string();
                self.emit(&url);
            }
            Command::Server(Some(url)) => {
                self.client = Client::new(&url, &self.login)?;
                match self.server_version() {
                    Ok(v) => {
                        let url = self.client.url().to_string();
                        self.emit(&format!("Server now: {url} (version {v})"));
                    }
                    Err(e) => self.emit_error(&format!("Warning: {e}")),
                }
                self.refresh_names();
            }
            Command::Output(None) => {
                let name = self.output.name();
                self.emit(&format!("Output format: {name}"));
            }
            Command::Output(Some(f)) => {
                self.output = f;
                self.emit(&format!("Output format set to {}", f.name()));
            }
            Command::Spool(None) => match self.spool.take() {
                Some(s) => self.emit(&format!("Spool to {} stopped", s.path.display())),
                None => self.emit("No spool is active"),
            },
            Command::Spool(Some(path)) => {
                let file = File::create(&path).map_err(|source| ReplError::Io {
                    path: path.display().to_string(),
                    source,
                })?;
                self.emit(&format!("Spooling to {}", path.display()));
                self.spool = Some(Spool { path, file });
            }
            Command::RunScript(path) => {
                // The failing statement was already reported with its position.
                let _ = self.run_script(&path);
            }
        }
        Ok(())
    }
}

/// `BROOK_HISTORY`, else `~/.brook_history`; none without a home directory.
fn history_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BROOK_HISTORY") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".brook_history"))
}

fn save_history(editor: &mut Editor<BrookHelper, DefaultHistory>, path: Option<&Path>) {
    if let Some(p) = path {
        // History is a convenience: a read-only home must not stop the REPL.
        let _ = editor.save_history(p);
    }
}

/// Runs `f`; when `enabled`, Ctrl-C abandons it and gives `None` (dropping a request's
/// future closes its connection, which stops a push query on the server).
async fn interruptible<F: std::future::Future>(enabled: bool, f: F) -> Option<F::Output> {
    if !enabled {
        return Some(f.await);
    }
    let cancel = async {
        if tokio::signal::ctrl_c().await.is_err() {
            // No signal handling here: nothing can interrupt, so wait for the work.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        r = f => Some(r),
        _ = cancel => None,
    }
}

/// A spinner on stderr while a statement runs; it shows only after a short delay, so fast
/// statements do not flicker, and erases itself when dropped.
struct Spinner {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    fn start(enabled: bool) -> Option<Spinner> {
        if !enabled {
            return None;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let tick = Duration::from_millis(100);
            for _ in 0..3 {
                std::thread::sleep(tick);
                if flag.load(Ordering::Relaxed) {
                    return;
                }
            }
            let frames = ['|', '/', '-', '\\'];
            let mut err = std::io::stderr();
            let mut i = 0;
            while !flag.load(Ordering::Relaxed) {
                let _ = write!(err, "\r{} running…", frames[i % frames.len()]);
                let _ = err.flush();
                i += 1;
                std::thread::sleep(tick);
            }
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        });
        Some(Spinner {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
