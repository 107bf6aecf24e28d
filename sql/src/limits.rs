//! How deep and how large a statement may be (`docs/sql-limits.md`).
//!
//! Every stage after parsing walks a statement's tree recursively: sqlparser's own
//! data-type parser, `Clone` and `Drop` of the tree, the planner's type checker, DataFusion's
//! physical planning and evaluation. A statement nested deeper than the stack allows would
//! abort the process, so nesting is bounded once, before anything is built, from the tokens
//! alone: [`scan`] computes an upper bound of the depth of every tree the parser can build
//! from them and refuses the statement, with the position where the bound passes
//! [`MAX_NESTING_DEPTH`], before parsing starts.
//!
//! The bound is computed bottom-up over bracket groups (`(…)`, `[…]`, `CASE … END`, `<…>`
//! after ARRAY/MAP/STRUCT): a group is one level deeper than its deepest comma-separated item;
//! an item is an OR chain of AND chains of terms; a term is as deep as its operator tokens
//! plus its deepest sub-group. Every step that makes a tree deeper (an infix or prefix
//! operator, a keyword of a construct, a bracket) consumes one of the counted tokens, so the
//! bound is never below the real depth; it is close to it for the usual shapes (a chain of
//! `OR`ed comparisons counts one level per `OR`).

use sqlparser::keywords::Keyword;
use sqlparser::tokenizer::{Location, Token, TokenWithSpan, Word};

use crate::ParseError;

/// Deepest nesting of a statement's expressions, counted in operators and brackets on the
/// way from the statement to its innermost term (`a + b + c` is 2 deep, `f(g(x))` 2, `x = 1
/// OR x = 2 OR x = 3` 3). An `IN` list or a `CASE` has no such limit on its length.
pub const MAX_NESTING_DEPTH: usize = 128;

/// Deepest nesting of ARRAY, MAP and STRUCT in a type (`ARRAY<MAP<STRING, INT>>` is 2).
pub const MAX_TYPE_DEPTH: usize = 32;

/// Most tokens of one statement (words, literals, operators and punctuation).
pub const MAX_STATEMENT_TOKENS: usize = 200_000;

/// Longest text `${name}` substitution may make (each reference copies its value).
pub const MAX_SUBSTITUTED_BYTES: usize = 4 << 20;

/// sqlparser's own recursion limit: nested parentheses, function calls and sub-expressions.
pub const MAX_PARSER_RECURSION: usize = 50;

/// What [`scan`] found: the deepest bound of any statement in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Scan {
    pub depth: usize,
}

/// Checks every `;`-separated statement of `tokens` against [`MAX_NESTING_DEPTH`] and
/// [`MAX_STATEMENT_TOKENS`]; the error names the limit and the token where it was passed.
pub(crate) fn scan(tokens: &[TokenWithSpan]) -> Result<Scan, ParseError> {
    let mut state = State::new();
    let mut deepest = 0;
    let mut count = 0usize;
    for t in tokens {
        if matches!(t.token, Token::Whitespace(_) | Token::EOF) {
            continue;
        }
        if t.token == Token::SemiColon && state.frames.len() == 1 {
            let depth = std::mem::replace(&mut state, State::new()).finish();
            if depth > MAX_NESTING_DEPTH {
                return Err(too_deep(t.span.start));
            }
            deepest = deepest.max(depth);
            count = 0;
            continue;
        }
        count += 1;
        if count > MAX_STATEMENT_TOKENS {
            return Err(too_large(t.span.start));
        }
        let depth = state.step(&t.token);
        if depth > MAX_NESTING_DEPTH {
            return Err(too_deep(t.span.start));
        }
    }
    let last = tokens.last().map_or(Location::new(1, 1), |t| t.span.start);
    let depth = state.finish();
    if depth > MAX_NESTING_DEPTH {
        return Err(too_deep(last));
    }
    Ok(Scan {
        depth: deepest.max(depth),
    })
}

fn too_deep(at: Location) -> ParseError {
    ParseError::nested_too_deeply(
        at.line,
        at.column,
        format!(
            "The statement is nested too deeply: more than {MAX_NESTING_DEPTH} levels of \
             operators, brackets or CASE (an IN list or a flatter expression avoids this)"
        ),
        MAX_NESTING_DEPTH,
    )
}

fn too_large(at: Location) -> ParseError {
    ParseError::too_large(
        at.line,
        at.column,
        format!("The statement is too large: more than {MAX_STATEMENT_TOKENS} tokens"),
        MAX_STATEMENT_TOKENS,
    )
}

/// What opened a bracket group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opener {
    Statement,
    Paren,
    Bracket,
    Brace,
    Case,
    /// `<` after ARRAY, MAP or STRUCT: a type's parameters.
    Angle,
}

/// One open group: the depth bound of what it holds so far.
#[derive(Debug, Clone, Copy)]
struct Frame {
    opener: Opener,
    /// The bound of the enclosing groups on the way to this one.
    base: usize,
    /// Deepest finished comma-separated item.
    items: usize,
    /// The current item: its ORs, and its deepest finished OR operand.
    ors: usize,
    or_terms: usize,
    /// The current OR operand: its ANDs, and its deepest finished AND operand.
    ands: usize,
    and_terms: usize,
    /// The current AND operand: its operator tokens and its deepest sub-group.
    ops: usize,
    groups: usize,
}

impl Frame {
    fn new(opener: Opener, base: usize) -> Self {
        Frame {
            opener,
            base,
            items: 0,
            ors: 0,
            or_terms: 0,
            ands: 0,
            and_terms: 0,
            ops: 0,
            groups: 0,
        }
    }

    /// The operators on the way from the statement to the current term.
    fn path(&self) -> usize {
        self.base + self.ors + self.ands + self.ops
    }

    fn term(&self) -> usize {
        self.ops + self.groups
    }

    fn or_operand(&self) -> usize {
        self.ands + self.and_terms.max(self.term())
    }

    fn item(&self) -> usize {
        self.ors + self.or_terms.max(self.or_operand())
    }

    /// The bound of everything the group holds so far.
    fn depth(&self) -> usize {
        self.items.max(self.item())
    }

    fn and(&mut self) {
        self.and_terms = self.and_terms.max(self.term());
        self.ops = 0;
        self.groups = 0;
        self.ands += 1;
    }

    fn or(&mut self) {
        self.or_terms = self.or_terms.max(self.or_operand());
        self.ands = 0;
        self.and_terms = 0;
        self.ops = 0;
        self.groups = 0;
        self.ors += 1;
    }

    fn separator(&mut self) {
        *self = Frame {
            items: self.depth(),
            ..Frame::new(self.opener, self.base)
        };
    }
}

/// The open groups of one statement, outermost first.
struct State {
    frames: Vec<Frame>,
    /// The previous token was ARRAY, MAP or STRUCT: a following `<` opens a type.
    type_word: bool,
}

impl State {
    fn new() -> Self {
        State {
            frames: vec![Frame::new(Opener::Statement, 0)],
            type_word: false,
        }
    }

    fn top(&mut self) -> &mut Frame {
        let last = self.frames.len() - 1;
        &mut self.frames[last]
    }

    fn top_opener(&self) -> Opener {
        self.frames.last().map_or(Opener::Statement, |f| f.opener)
    }

    /// The bound on the way to the current token.
    fn current(&self) -> usize {
        self.frames.last().map_or(0, |f| f.base + f.depth())
    }

    /// Opens a group inside the current term: as deep as the operators on the way to it.
    fn open(&mut self, opener: Opener) {
        let base = self.frames.last().map_or(0, Frame::path) + 1;
        self.frames.push(Frame::new(opener, base));
    }

    /// Closes the innermost group into its parent, where it is one term's sub-group.
    fn close(&mut self) {
        if self.frames.len() < 2 {
            return;
        }
        if let Some(f) = self.frames.pop() {
            let h = f.depth() + 1;
            let top = self.top();
            top.groups = top.groups.max(h);
        }
    }

    /// A `<…>` type group ends at anything a type cannot hold.
    fn close_angles(&mut self) {
        while self.top_opener() == Opener::Angle {
            self.close();
        }
    }

    /// Takes one token; answers the bound on the way to it.
    fn step(&mut self, token: &Token) -> usize {
        let type_word = std::mem::take(&mut self.type_word);
        match token {
            Token::LParen => self.open(Opener::Paren),
            Token::LBracket => {
                // A subscript is an operator of its term as well as a group.
                self.top().ops += 1;
                self.open(Opener::Bracket);
            }
            Token::LBrace => self.open(Opener::Brace),
            Token::Lt if type_word => self.open(Opener::Angle),
            Token::RParen => self.close_to(Opener::Paren),
            Token::RBracket => self.close_to(Opener::Bracket),
            Token::RBrace => self.close_to(Opener::Brace),
            Token::Gt if self.top_opener() == Opener::Angle => self.close(),
            Token::Comma => {
                // A comma inside a type's `<…>` separates its fields; anywhere else it ends
                // the types it follows.
                if self.top_opener() != Opener::Angle {
                    self.close_angles();
                }
                self.top().separator();
            }
            Token::Word(w) => self.word(w),
            t if is_leaf(t) => {}
            _ => self.top().ops += 1,
        }
        self.current()
    }

    fn close_to(&mut self, opener: Opener) {
        self.close_angles();
        if self.top_opener() == opener {
            self.close();
        } else {
            // Unbalanced: the parser will refuse it; counting it keeps the bound high.
            self.top().ops += 1;
        }
    }

    fn word(&mut self, w: &Word) {
        if w.quote_style.is_some() || w.keyword == Keyword::NoKeyword {
            return;
        }
        let case = self.top_opener() == Opener::Case;
        match w.keyword {
            Keyword::AND => self.top().and(),
            Keyword::OR => self.top().or(),
            Keyword::CASE => self.open(Opener::Case),
            Keyword::END if case => self.close(),
            Keyword::WHEN | Keyword::THEN | Keyword::ELSE if case => self.top().separator(),
            // The type's own depth is its `<…>` group's.
            Keyword::ARRAY | Keyword::MAP | Keyword::STRUCT => self.type_word = true,
            _ => self.top().ops += 1,
        }
    }

    /// Closes what is still open (an unbalanced statement) and answers its bound.
    fn finish(mut self) -> usize {
        while self.frames.len() > 1 {
            self.close();
        }
        self.current()
    }
}

/// Names and literals are the leaves of a tree: they make it no deeper.
fn is_leaf(t: &Token) -> bool {
    matches!(
        t,
        Token::Number(..)
            | Token::Char(_)
            | Token::SingleQuotedString(_)
            | Token::DoubleQuotedString(_)
            | Token::TripleSingleQuotedString(_)
            | Token::TripleDoubleQuotedString(_)
            | Token::DollarQuotedString(_)
            | Token::SingleQuotedByteStringLiteral(_)
            | Token::DoubleQuotedByteStringLiteral(_)
            | Token::NationalStringLiteral(_)
            | Token::EscapedStringLiteral(_)
            | Token::UnicodeStringLiteral(_)
            | Token::HexStringLiteral(_)
            | Token::Placeholder(_)
            | Token::Period
    )
}

#[cfg(test)]
mod tests;
