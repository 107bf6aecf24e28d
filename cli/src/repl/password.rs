//! `--user` without `--password`: the password is asked for on the terminal, as the ksql
//! CLI does ("Enter password: "), and not echoed: the line editor draws each typed
//! character as a space and keeps no history of it.

use std::borrow::Cow;
use std::io::IsTerminal;

use rustyline::completion::Completer;
use rustyline::config::Configurer as _;
use rustyline::error::ReadlineError;
use rustyline::highlight::{CmdKind, Highlighter};
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{ColorMode, Config, Editor, Helper};
use unicode_width::UnicodeWidthStr as _;

use super::client::Login;
use super::ReplError;

/// Tries at an empty password before giving up.
const TRIES: usize = 3;

/// Fills in the password when a user was given without one.
pub fn complete(login: &mut Login) -> Result<(), ReplError> {
    if login.user.is_none() {
        if login.password.is_some() {
            return Err(ReplError::Usage(
                "--password (or BROOK_PASSWORD) needs --user NAME".into(),
            ));
        }
        return Ok(());
    }
    if login.password.is_some() {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(ReplError::Usage(
            "--user without --password, and no terminal to ask for it on: give --password \
             or set BROOK_PASSWORD"
                .into(),
        ));
    }
    login.password = Some(ask()?);
    Ok(())
}

fn ask() -> Result<String, ReplError> {
    let config = Config::builder().auto_add_history(false).build();
    let mut editor: Editor<Masked, DefaultHistory> = Editor::with_config(config)?;
    editor.set_helper(Some(Masked));
    // Masking is drawn as highlighting, so it must be drawn even without colours.
    editor.set_color_mode(ColorMode::Forced);
    for _ in 0..TRIES {
        match editor.readline("Enter password: ") {
            Ok(p) if !p.is_empty() => return Ok(p),
            Ok(_) => eprintln!("Error: password can not be empty"),
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                return Err(ReplError::Usage("no password given".into()))
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(ReplError::Usage("no password given".into()))
}

/// Draws the line as spaces of the same width.
struct Masked;

impl Highlighter for Masked {
    fn highlight<'l>(&self, line: &'l str, _pos: usize) -> Cow<'l, str> {
        Cow::Owned(" ".repeat(line.width()))
    }

    fn highlight_char(&self, _line: &str, _pos: usize, kind: CmdKind) -> bool {
        !matches!(kind, CmdKind::MoveCursor)
    }
}

impl Completer for Masked {
    type Candidate = String;
}

impl Hinter for Masked {
    type Hint = String;
}

impl Validator for Masked {}

impl Helper for Masked {}
