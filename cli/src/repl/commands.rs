//! The ksql CLI's client-side commands: a line that starts with one of them is handled by
//! the REPL, not sent to the server. They need no `;` (one is allowed).

use std::path::PathBuf;

use super::ReplError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Tabular,
    Json,
}

impl OutputFormat {
    pub fn parse(s: &str) -> Result<OutputFormat, ReplError> {
        match s.to_ascii_uppercase().as_str() {
            "TABULAR" => Ok(OutputFormat::Tabular),
            "JSON" => Ok(OutputFormat::Json),
            _ => Err(ReplError::Usage(format!(
                "Unknown output format '{s}': use JSON or TABULAR"
            ))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            OutputFormat::Tabular => "TABULAR",
            OutputFormat::Json => "JSON",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Help,
    Clear,
    Exit,
    History,
    Version,
    /// `server` shows the server; `server URL` switches to another.
    Server(Option<String>),
    Output(Option<OutputFormat>),
    /// `spool FILE` starts writing commands and results to FILE; `spool off` stops.
    Spool(Option<PathBuf>),
    RunScript(PathBuf),
}

/// The command a line holds, if it is one; `Err` for a command used wrongly.
pub fn parse(line: &str) -> Option<Result<Command, ReplError>> {
    let line = line.trim();
    let line = line.strip_suffix(';').unwrap_or(line).trim_end();
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    let word = word.to_ascii_lowercase();
    let no_args = |c: Command| {
        if rest.is_empty() {
            Ok(c)
        } else {
            Err(ReplError::Usage(format!("'{word}' takes no arguments")))
        }
    };
    let cmd = match word.as_str() {
        "help" | "?" => no_args(Command::Help),
        "clear" => no_args(Command::Clear),
        "exit" | "quit" => no_args(Command::Exit),
        "history" => no_args(Command::History),
        "version" => no_args(Command::Version),
        "server" => Ok(Command::Server(
            (!rest.is_empty()).then(|| unquote(rest).to_string()),
        )),
        "output" => {
            if rest.is_empty() {
                Ok(Command::Output(None))
            } else {
                OutputFormat::parse(unquote(rest)).map(|f| Command::Output(Some(f)))
            }
        }
        "spool" => {
            if rest.is_empty() {
                Err(ReplError::Usage("usage: spool <file> | spool off".into()))
            } else if rest.eq_ignore_ascii_case("off") {
                Ok(Command::Spool(None))
            } else {
                Ok(Command::Spool(Some(PathBuf::from(unquote(rest)))))
            }
        }
        "run" => {
            let (second, path) = match rest.split_once(char::is_whitespace) {
                Some((s, p)) => (s, p.trim()),
                None => (rest, ""),
            };
            if !second.eq_ignore_ascii_case("script") {
                return None;
            }
            if path.is_empty() {
                Err(ReplError::Usage("usage: run script <file>".into()))
            } else {
                Ok(Command::RunScript(PathBuf::from(unquote(path))))
            }
        }
        _ => return None,
    };
    Some(cmd)
}

/// `'x'` or `"x"` → `x`: paths and URLs may be quoted, as in the ksql CLI.
fn unquote(s: &str) -> &str {
    for q in ['\'', '"'] {
        if let Some(inner) = s.strip_prefix(q).and_then(|r| r.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

pub const HELP: &str = "\
Statements end with ';' and may span lines. Client commands (no ';' needed):

  help                      this text
  clear                     clear the screen
  exit, quit, Ctrl-D        leave the REPL
  history                   the statements entered so far (Ctrl-R searches them)
  version                   the CLI's and the server's versions
  server [url]              show the server, or switch to another
  output [JSON|TABULAR]     show or set how results are printed
  spool <file> | spool off  copy commands and results to a file
  run script <file>         run the statements in a file

Handled by the CLI, not the server:
  SET 'name'='value';       a property sent with each following statement
  UNSET 'name';             forget a property
  DEFINE name = 'value';    a variable: ${name} is replaced in later statements
  UNDEFINE name;            forget a variable
  SHOW VARIABLES;           the variables defined

Ctrl-C stops a running push query and returns to the prompt.";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let cases: &[(&str, Option<Command>)] = &[
            ("help", Some(Command::Help)),
            ("HELP;", Some(Command::Help)),
            ("  exit  ", Some(Command::Exit)),
            ("quit", Some(Command::Exit)),
            ("server", Some(Command::Server(None))),
            (
                "server http://h:1",
                Some(Command::Server(Some("http://h:1".into()))),
            ),
            (
                "output json",
                Some(Command::Output(Some(OutputFormat::Json))),
            ),
            (
                "OUTPUT Tabular;",
                Some(Command::Output(Some(OutputFormat::Tabular))),
            ),
            ("output", Some(Command::Output(None))),
            (
                "spool /tmp/x.txt",
                Some(Command::Spool(Some("/tmp/x.txt".into()))),
            ),
            ("spool OFF", Some(Command::Spool(None))),
            (
                "RUN SCRIPT '/tmp/a.sql';",
                Some(Command::RunScript("/tmp/a.sql".into())),
            ),
            ("SHOW STREAMS;", None),
            ("SELECT * FROM help;", None),
            ("run away", None),
        ];
        for (line, want) in cases {
            let got = parse(line).map(|r| r.ok());
            match want {
                Some(w) => assert_eq!(got, Some(Some(w.clone())), "{line}"),
                None => assert_eq!(got, None, "{line}"),
            }
        }
    }

    #[test]
    fn misused_commands_are_errors() {
        for line in ["exit now", "output xml", "spool", "run script"] {
            assert!(matches!(parse(line), Some(Err(_))), "{line}");
        }
    }
}
