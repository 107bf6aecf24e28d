//! How a pull query reads a table: ksqlDB's analysis of its WHERE clause.
//!
//! The WHERE clause is rewritten as ksqlDB rewrites it (BETWEEN as two comparisons, IN as a
//! disjunction of equalities, NOT pushed down onto the comparisons) into disjunctive normal
//! form. Each disjunct is then checked: a key lookup needs an equality on every key column,
//! anything else needs a table scan, which `ksql.query.pull.table.scan.enabled` may forbid;
//! a single range on a STRING or BYTES key of an unwindowed table is a range scan
//! (`ksql.query.pull.range.scan.enabled`). The errors are ksqlDB's.
//!
//! The WHERE clause itself is still evaluated over the rows read, so the analysis only picks
//! which rows to read (and refuses what ksqlDB refuses).

use std::sync::Arc;

use arrow::array::RecordBatch;
use brook_sql::sqlparser::ast::{BinaryOperator, Expr as SqlExpr, UnaryOperator, Value};
use brook_sql::Type;
use datafusion::common::ScalarValue;

use crate::catalog::{Catalog, Source};
use crate::expr::{ksql_text, physical, Scope};
use crate::schema::{Column, SchemaType, WINDOWEND, WINDOWSTART};
use crate::PlanError;

/// ksqlDB's switch for pull queries that read every row of a table.
pub const TABLE_SCAN_ENABLED: &str = "ksql.query.pull.table.scan.enabled";
/// ksqlDB's switch for pull queries that read a range of keys.
pub const RANGE_SCAN_ENABLED: &str = "ksql.query.pull.range.scan.enabled";

/// Disjuncts beyond this many (DNF can grow exponentially) are not analysed key by key:
/// the query is a table scan.
const MAX_DISJUNCTS: usize = 4096;

/// The settings that decide which pull queries may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullOptions {
    pub table_scan: bool,
    pub range_scan: bool,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            table_scan: true,
            range_scan: true,
        }
    }
}

impl PullOptions {
    /// Applies a property (a server setting, a SET or a request's property); others are
    /// ignored, as are values that are not booleans.
    pub fn set(&mut self, name: &str, value: &str) {
        let Ok(on) = value.trim().to_ascii_lowercase().parse::<bool>() else {
            return;
        };
        match name {
            TABLE_SCAN_ENABLED => self.table_scan = on,
            RANGE_SCAN_ENABLED => self.range_scan = on,
            _ => {}
        }
    }
}

/// Which rows of the table a pull query reads (its WHERE clause still filters them).
#[derive(Debug, Clone, PartialEq)]
pub enum Access {
    /// Every row (a table scan, or a range scan: both read the whole store).
    Scan,
    /// The rows of these keys, in this order: each key is a value per key column, of the
    /// column's Arrow type. A windowed table has a row per window of each.
    Lookup(Vec<Vec<ScalarValue>>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    Distinct,
    NotDistinct,
}

impl Op {
    fn of(op: &BinaryOperator) -> Option<Op> {
        Some(match op {
            BinaryOperator::Eq => Op::Eq,
            BinaryOperator::NotEq => Op::NotEq,
            BinaryOperator::Lt => Op::Lt,
            BinaryOperator::LtEq => Op::LtEq,
            BinaryOperator::Gt => Op::Gt,
            BinaryOperator::GtEq => Op::GtEq,
            _ => return None,
        })
    }

    fn negated(self) -> Op {
        match self {
            Op::Eq => Op::NotEq,
            Op::NotEq => Op::Eq,
            Op::Lt => Op::GtEq,
            Op::GtEq => Op::Lt,
            Op::Gt => Op::LtEq,
            Op::LtEq => Op::Gt,
            Op::Distinct => Op::NotDistinct,
            Op::NotDistinct => Op::Distinct,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::NotEq => "<>",
            Op::Lt => "<",
            Op::LtEq => "<=",
            Op::Gt => ">",
            Op::GtEq => ">=",
            Op::Distinct => "IS DISTINCT FROM",
            Op::NotDistinct => "IS NOT DISTINCT FROM",
        }
    }

    /// ksqlDB's name of the comparison, as its messages print it.
    fn name(self) -> &'static str {
        match self {
            Op::Eq => "EQUAL",
            Op::NotEq => "NOT_EQUAL",
            Op::Lt => "LESS_THAN",
            Op::LtEq => "LESS_THAN_OR_EQUAL",
            Op::Gt => "GREATER_THAN",
            Op::GtEq => "GREATER_THAN_OR_EQUAL",
            Op::Distinct => "IS_DISTINCT_FROM",
            Op::NotDistinct => "IS_NOT_DISTINCT_FROM",
        }
    }
}

/// The WHERE clause as ksqlDB's pull-query rewrite sees it.
#[derive(Debug, Clone)]
enum Pred {
    And(Box<Pred>, Box<Pred>),
    Or(Box<Pred>, Box<Pred>),
    Cmp(Op, SqlExpr, SqlExpr),
    Like(SqlExpr, SqlExpr),
    Other(SqlExpr),
}

fn and(a: Pred, b: Pred) -> Pred {
    Pred::And(Box::new(a), Box::new(b))
}

fn or(a: Pred, b: Pred) -> Pred {
    Pred::Or(Box::new(a), Box::new(b))
}

/// `e`, with NOT pushed onto its comparisons (`negated`: under an odd number of NOTs).
fn rewrite(e: &SqlExpr, negated: bool) -> Pred {
    let cmp = |op: Op, l: &SqlExpr, r: &SqlExpr| {
        let op = if negated { op.negated() } else { op };
        Pred::Cmp(op, l.clone(), r.clone())
    };
    match e {
        SqlExpr::Nested(inner) => rewrite(inner, negated),
        SqlExpr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => rewrite(expr, !negated),
        SqlExpr::BinaryOp { left, op, right } => match (op, Op::of(op)) {
            (BinaryOperator::And, _) => {
                let (l, r) = (rewrite(left, negated), rewrite(right, negated));
                if negated {
                    or(l, r)
                } else {
                    and(l, r)
                }
            }
            (BinaryOperator::Or, _) => {
                let (l, r) = (rewrite(left, negated), rewrite(right, negated));
                if negated {
                    and(l, r)
                } else {
                    or(l, r)
                }
            }
            (_, Some(o)) => cmp(o, left, right),
            _ => other(e, negated),
        },
        SqlExpr::IsDistinctFrom(l, r) => cmp(Op::Distinct, l, r),
        SqlExpr::IsNotDistinctFrom(l, r) => cmp(Op::NotDistinct, l, r),
        SqlExpr::InList {
            expr,
            list,
            negated: not_in,
        } if !list.is_empty() => {
            let neg = negated != *not_in;
            let items = list.iter().map(|item| {
                let op = if neg { Op::NotEq } else { Op::Eq };
                Pred::Cmp(op, (**expr).clone(), item.clone())
            });
            let joined = items.rev().reduce(|acc, c| match neg {
                true => and(c, acc),
                false => or(c, acc),
            });
            joined.unwrap_or_else(|| other(e, negated))
        }
        SqlExpr::Between {
            expr,
            negated: not_between,
            low,
            high,
        } => {
            let neg = negated != *not_between;
            let (lo, hi) = if neg {
                (Op::Lt, Op::Gt)
            } else {
                (Op::GtEq, Op::LtEq)
            };
            let l = Pred::Cmp(lo, (**expr).clone(), (**low).clone());
            let h = Pred::Cmp(hi, (**expr).clone(), (**high).clone());
            if neg {
                or(l, h)
            } else {
                and(l, h)
            }
        }
        // The negation of a LIKE does not change what it may be applied to.
        SqlExpr::Like { expr, pattern, .. } | SqlExpr::ILike { expr, pattern, .. } => {
            Pred::Like((**expr).clone(), (**pattern).clone())
        }
        _ => other(e, negated),
    }
}

fn other(e: &SqlExpr, negated: bool) -> Pred {
    Pred::Other(match negated {
        true => SqlExpr::UnaryOp {
            op: UnaryOperator::Not,
            expr: Box::new(e.clone()),
        },
        false => e.clone(),
    })
}

/// The disjuncts of `p` in DNF, each a list of conjoined atoms; `None` when there would be
/// more than [`MAX_DISJUNCTS`].
fn disjuncts(p: Pred) -> Option<Vec<Vec<Pred>>> {
    match p {
        Pred::Or(a, b) => {
            let mut l = disjuncts(*a)?;
            l.extend(disjuncts(*b)?);
            (l.len() <= MAX_DISJUNCTS).then_some(l)
        }
        Pred::And(a, b) => {
            let (l, r) = (disjuncts(*a)?, disjuncts(*b)?);
            if l.len().saturating_mul(r.len()) > MAX_DISJUNCTS {
                return None;
            }
            let mut out = Vec::with_capacity(l.len() * r.len());
            for x in &l {
                for y in &r {
                    out.push(x.iter().chain(y).cloned().collect());
                }
            }
            Some(out)
        }
        atom => Some(vec![vec![atom]]),
    }
}

fn atom_text(p: &Pred) -> String {
    match p {
        Pred::Cmp(op, l, r) => format!("({} {} {})", ksql_text(l), op.symbol(), ksql_text(r)),
        Pred::Like(v, pat) => format!("({} LIKE {})", ksql_text(v), ksql_text(pat)),
        Pred::Other(e) => ksql_text(e),
        Pred::And(a, b) => format!("({} AND {})", atom_text(a), atom_text(b)),
        Pred::Or(a, b) => format!("({} OR {})", atom_text(a), atom_text(b)),
    }
}

fn disjunct_text(atoms: &[Pred]) -> String {
    let mut parts = atoms.iter().map(atom_text);
    let first = parts.next().unwrap_or_default();
    parts.fold(first, |acc, p| format!("({acc} AND {p})"))
}

/// ksqlDB's refusal of a WHERE clause a pull query cannot run, with its help text.
fn invalid_where(msg: &str, windowed: bool) -> PlanError {
    let window_help = if windowed {
        "\n - (optionally) limits the time bounds of the windowed table.\n\t Bounds on [WINDOWSTART, WINDOWEND] are supported\n\t Supported operators are [EQUAL, GREATER_THAN, GREATER_THAN_OR_EQUAL, LESS_THAN, LESS_THAN_OR_EQUAL]"
    } else {
        ""
    };
    PlanError::Invalid(format!(
        "{msg}.  See https://cnfl.io/queries for more info.\n\
         Pull queries require a WHERE clause that:\n \
         - includes a key equality expression, e.g. `SELECT * FROM X WHERE <key-column> = Y;`.\n \
         - in the case of a multi-column key, is a conjunction of equality expressions that cover all key columns.\n \
         - to support range expressions, e.g.,  SELECT * FROM X WHERE <key-column> < Y;`, range scans need to be enabled by setting ksql.query.pull.range.scan.enabled=true\
         {window_help}\n\
         If more flexible queries are needed, , table scans can be enabled by setting ksql.query.pull.table.scan.enabled=true."
    ))
}

fn table_scan_disabled() -> PlanError {
    PlanError::Invalid(format!(
        "Query requires table scan to be enabled. Table scans can be enabled by setting {TABLE_SCAN_ENABLED}=true"
    ))
}

/// A column referenced directly (`ID`, `T.ID`, `` `Id` ``), by its name in the schema.
fn column_ref(e: &SqlExpr) -> Option<String> {
    let id = match e {
        SqlExpr::Identifier(id) => id,
        SqlExpr::CompoundIdentifier(parts) if parts.len() == 2 => &parts[1],
        SqlExpr::Nested(inner) => return column_ref(inner),
        _ => return None,
    };
    Some(match id.quote_style {
        Some(_) => id.value.clone(),
        None => id.value.to_uppercase(),
    })
}

/// Whether `e` reads a column anywhere (it is then not a constant to look a key up by): it
/// does when it does not compile without columns because a column is unknown there.
fn has_column_ref(e: &SqlExpr, catalog: &Catalog) -> bool {
    let scope = Scope {
        columns: Vec::new(),
        types: catalog,
    };
    matches!(scope.compile(e), Err(PlanError::Invalid(m)) if m.starts_with("Column '"))
}

/// The column side of a comparison and the other side, as ksqlDB picks them (the right
/// side when both are columns).
fn sides(l: &SqlExpr, r: &SqlExpr) -> Option<(String, SqlExpr)> {
    if let Some(c) = column_ref(r) {
        return Some((c, l.clone()));
    }
    column_ref(l).map(|c| (c, r.clone()))
}

fn key_list(keys: &[&Column]) -> String {
    let cols: Vec<String> = keys
        .iter()
        .map(|c| format!("`{}` {} KEY", c.name, SchemaType(&c.ty)))
        .collect();
    format!("[{}]", cols.join(", "))
}

/// ksqlDB's base type name (`INTEGER`, `STRING`, `ARRAY` …).
fn base_type(t: &Type) -> &'static str {
    match t {
        Type::Boolean => "BOOLEAN",
        Type::Int => "INTEGER",
        Type::Bigint => "BIGINT",
        Type::Double => "DOUBLE",
        Type::Decimal { .. } => "DECIMAL",
        Type::String => "STRING",
        Type::Bytes => "BYTES",
        Type::Time => "TIME",
        Type::Date => "DATE",
        Type::Timestamp => "TIMESTAMP",
        Type::Array(_) => "ARRAY",
        Type::Map(..) => "MAP",
        Type::Struct(_) => "STRUCT",
        Type::Custom(_) => "STRUCT",
    }
}

/// The per-disjunct validation of ksqlDB's `QueryFilterNode`.
struct Validation {
    seen: Vec<bool>,
    keyed: bool,
    needs_scan: bool,
}

struct Analyzer<'a> {
    source: &'a Source,
    catalog: &'a Catalog,
    keys: Vec<&'a Column>,
    opts: PullOptions,
    windowed: bool,
}

impl Analyzer<'_> {
    fn key_index(&self, name: &str) -> Option<usize> {
        self.keys.iter().position(|k| k.name == name)
    }

    fn resolved(&self, t: &Type) -> Type {
        crate::expr::resolve(self.catalog, t).unwrap_or_else(|_| t.clone())
    }

    /// A table scan where table scans are allowed, else ksqlDB's refusal.
    fn scan_or(&self, v: &mut Validation, msg: &str, windowed: bool) -> Result<(), PlanError> {
        if self.opts.table_scan {
            v.needs_scan = true;
            Ok(())
        } else {
            Err(invalid_where(msg, windowed))
        }
    }

    fn validate(&self, atoms: &[Pred]) -> Result<Validation, PlanError> {
        let mut v = Validation {
            seen: vec![false; self.keys.len()],
            keyed: false,
            needs_scan: false,
        };
        for atom in atoms {
            match atom {
                Pred::Cmp(op, l, r) => self.validate_comparison(&mut v, *op, l, r)?,
                Pred::Like(value, pattern) => self.validate_like(&mut v, value, pattern)?,
                other => {
                    return Err(invalid_where(
                        &format!(
                            "Unsupported expression in WHERE clause: {}",
                            atom_text(other)
                        ),
                        false,
                    ))
                }
            }
        }
        Ok(v)
    }

    fn validate_comparison(
        &self,
        v: &mut Validation,
        op: Op,
        l: &SqlExpr,
        r: &SqlExpr,
    ) -> Result<(), PlanError> {
        let Some((column, other)) = sides(l, r) else {
            return self.scan_or(
                v,
                "A comparison must directly reference a key column",
                self.windowed,
            );
        };
        if has_column_ref(&other, self.catalog) {
            return self.scan_or(
                v,
                "A comparison must be between a key column and a resolvable expression",
                self.windowed,
            );
        }
        if column == WINDOWSTART || column == WINDOWEND {
            if matches!(op, Op::NotEq | Op::Distinct | Op::NotDistinct) {
                return Err(invalid_where(
                    &format!("Unsupported {column} bounds: {}", op.name()),
                    true,
                ));
            }
            if !self.windowed {
                return Err(invalid_where(
                    "Cannot use WINDOWSTART/WINDOWEND on non-windowed source",
                    false,
                ));
            }
            return Ok(());
        }
        let Some(index) = self.key_index(&column) else {
            return Ok(());
        };
        if matches!(op, Op::NotEq | Op::Distinct | Op::NotDistinct) {
            let msg = format!(
                "Bound on key columns '{}' must currently be '='",
                key_list(&self.keys)
            );
            self.scan_or(v, &msg, self.windowed)?;
        }
        if v.seen[index] && !self.opts.table_scan {
            return Err(invalid_where(
                "A comparison condition on the key column cannot be combined with other comparisons such as an IN predicate",
                self.windowed,
            ));
        }
        v.seen[index] = true;
        v.keyed = true;
        Ok(())
    }

    fn validate_like(
        &self,
        v: &mut Validation,
        value: &SqlExpr,
        pattern: &SqlExpr,
    ) -> Result<(), PlanError> {
        let Some(name) = column_ref(value) else {
            return self.scan_or(v, "Like condition must be between strings", self.windowed);
        };
        let Some(col) = self.source.schema.column(&name) else {
            // Pseudo columns (ROWTIME, window bounds) are numbers.
            return Err(invalid_where(
                "The column type for Like condition must be VARCHAR. The column type is BIGINT",
                self.windowed,
            ));
        };
        let ty = self.resolved(&col.ty);
        if ty != Type::String {
            return Err(invalid_where(
                &format!(
                    "The column type for Like condition must be VARCHAR. The column type is {}",
                    base_type(&ty)
                ),
                self.windowed,
            ));
        }
        let literal = match pattern {
            SqlExpr::Value(v) => matches!(v.value, Value::SingleQuotedString(_) | Value::Null),
            _ => false,
        };
        if !literal {
            return Err(invalid_where(
                &format!(
                    "Like condition on non-string pattern {}",
                    ksql_text(pattern)
                ),
                self.windowed,
            ));
        }
        Ok(())
    }

    /// ksqlDB's `validateWhereClauseAndCheckTableScan`: whether a table scan is needed.
    fn needs_table_scan(&self, disjuncts: &[Vec<Pred>]) -> Result<bool, PlanError> {
        for atoms in disjuncts {
            let v = self.validate(atoms)?;
            if v.needs_scan {
                return Ok(true);
            }
            if !v.keyed {
                if self.opts.table_scan {
                    return Ok(true);
                }
                return Err(invalid_where(
                    &format!(
                        "WHERE clause missing key column for disjunct: {}",
                        disjunct_text(atoms)
                    ),
                    self.windowed,
                ));
            }
            let seen = v.seen.iter().filter(|s| **s).count();
            if seen != self.keys.len() {
                if self.opts.table_scan {
                    return Ok(true);
                }
                let specified: Vec<String> = self
                    .keys
                    .iter()
                    .zip(&v.seen)
                    .filter(|(_, s)| **s)
                    .map(|(k, _)| format!("`{}`", k.name))
                    .collect();
                return Err(invalid_where(
                    &format!(
                        "Multi-column sources must specify every key in the WHERE clause. Specified: [{}] Expected: {}",
                        specified.join(", "),
                        key_list(&self.keys)
                    ),
                    self.windowed,
                ));
            }
        }
        Ok(false)
    }

    /// The constraint one disjunct puts on the key, as ksqlDB's `KeyValueExtractor`.
    fn constraint(&self, atoms: &[Pred]) -> Result<Constraint, PlanError> {
        let mut values: Vec<Option<ScalarValue>> = vec![None; self.keys.len()];
        let mut ops: Vec<Option<Op>> = vec![None; self.keys.len()];
        let mut bounds = WindowBounds::default();
        for atom in atoms {
            let Pred::Cmp(op, l, r) = atom else {
                continue;
            };
            let Some((column, other)) = sides(l, r) else {
                continue;
            };
            if self.windowed && (column == WINDOWSTART || column == WINDOWEND) {
                bounds.add(&column, *op, r, &other, self.catalog, atom)?;
                continue;
            }
            let Some(index) = self.key_index(&column) else {
                continue;
            };
            // The most selective constraint: an equality wins over any other.
            if ops[index] == Some(Op::Eq) || (*op != Op::Eq && ops[index].is_some()) {
                continue;
            }
            let key = self.resolve_key(&other, self.keys[index], &atom_text(atom))?;
            values[index] = Some(key);
            ops[index] = Some(*op);
        }
        let set: Vec<Op> = ops.iter().flatten().copied().collect();
        if set.is_empty() {
            return Ok(Constraint::NonKey);
        }
        if set.iter().all(|o| *o == Op::Eq) {
            return Ok(Constraint::Equal(values.into_iter().flatten().collect()));
        }
        if set.len() == 1 {
            let ty = self.resolved(&self.keys[0].ty);
            if matches!(ty, Type::String | Type::Bytes)
                && matches!(set[0], Op::Lt | Op::LtEq | Op::Gt | Op::GtEq)
            {
                return Ok(Constraint::Range);
            }
        }
        Ok(Constraint::NonKey)
    }

    /// The value a key column is compared with, as the key column's type: ksqlDB's strict
    /// coercion (numbers widen; nothing else converts).
    fn resolve_key(&self, e: &SqlExpr, key: &Column, atom: &str) -> Result<ScalarValue, PlanError> {
        let null = || PlanError::Invalid(format!("Primary key columns can not be NULL: {atom}"));
        let scope = Scope {
            columns: Vec::new(),
            types: self.catalog,
        };
        let t = scope.compile(e)?;
        let value = evaluate(&t.expr)?;
        let Some(from) = t.ty else {
            return Err(null());
        };
        if value.is_null() {
            return Err(null());
        }
        let to = self.resolved(&key.ty);
        if !strictly_coercible(&self.resolved(&from), &to) {
            let shown = match &value {
                ScalarValue::Utf8(Some(s)) | ScalarValue::LargeUtf8(Some(s)) => s.clone(),
                other => other.to_string(),
            };
            return Err(PlanError::Invalid(format!(
                "'{shown}' can not be converted to the type of the key column: {} {} KEY",
                key.name,
                SchemaType(&key.ty)
            )));
        }
        let dt = crate::types::arrow_type(&to, self.catalog)?;
        if value.data_type() == dt {
            return Ok(value);
        }
        let arr = value
            .to_array()
            .and_then(|a| Ok(arrow::compute::cast(&a, &dt)?))
            .and_then(|a| ScalarValue::try_from_array(&a, 0))
            .map_err(|e| PlanError::DataFusion(e.to_string()))?;
        Ok(arr)
    }
}

/// A constant expression's value.
fn evaluate(e: &datafusion::logical_expr::Expr) -> Result<ScalarValue, PlanError> {
    let empty = Arc::new(arrow::datatypes::Schema::empty());
    let one_row = RecordBatch::try_new_with_options(
        empty.clone(),
        vec![],
        &arrow::array::RecordBatchOptions::new().with_row_count(Some(1)),
    )
    .map_err(|e| PlanError::DataFusion(e.to_string()))?;
    let phys = physical(e, &empty)?;
    phys.evaluate(&one_row)
        .and_then(|c| c.into_array(1))
        .and_then(|a| ScalarValue::try_from_array(&a, 0))
        .map_err(|e| PlanError::DataFusion(e.to_string()))
}

/// ksqlDB's strict coercion of a value of type `from` to `to`: the same type, or a number
/// widened (INT → BIGINT → DECIMAL → DOUBLE); containers element by element.
fn strictly_coercible(from: &Type, to: &Type) -> bool {
    match (from, to) {
        (a, b) if a == b => true,
        (Type::Int, Type::Bigint | Type::Decimal { .. } | Type::Double) => true,
        (Type::Bigint, Type::Decimal { .. } | Type::Double) => true,
        (Type::Decimal { .. }, Type::Decimal { .. } | Type::Double) => true,
        (Type::Array(a), Type::Array(b)) => strictly_coercible(a, b),
        (Type::Map(ak, av), Type::Map(bk, bv)) => {
            strictly_coercible(ak, bk) && strictly_coercible(av, bv)
        }
        (Type::Struct(a), Type::Struct(b)) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| {
                    x.name.value.eq_ignore_ascii_case(&y.name.value)
                        && strictly_coercible(&x.ty, &y.ty)
                })
        }
        _ => false,
    }
}

#[derive(Debug)]
enum Constraint {
    NonKey,
    Equal(Vec<ScalarValue>),
    Range,
}

/// The bounds one disjunct puts on WINDOWSTART and WINDOWEND, checked as ksqlDB checks
/// them (the rows are filtered by the WHERE clause itself).
#[derive(Default)]
struct WindowBounds {
    start: [bool; 3],
    end: [bool; 3],
}

impl WindowBounds {
    fn add(
        &mut self,
        column: &str,
        op: Op,
        r: &SqlExpr,
        other: &SqlExpr,
        catalog: &Catalog,
        atom: &Pred,
    ) -> Result<(), PlanError> {
        window_instant(other, catalog)?;
        let inverted = column_ref(r).is_some();
        // [equal, upper, lower]
        let slot = match op {
            Op::Eq => 0,
            Op::Lt | Op::LtEq if !inverted => 1,
            Op::Gt | Op::GtEq if inverted => 1,
            Op::Lt | Op::LtEq | Op::Gt | Op::GtEq => 2,
            _ => return Ok(()),
        };
        let simplified = match slot {
            0 => "EQUAL",
            1 => "LESS_THAN",
            _ => "GREATER_THAN",
        };
        let set = if column == WINDOWSTART {
            &mut self.start
        } else {
            &mut self.end
        };
        let fresh = !set[slot];
        set[slot] = true;
        if set[0] && (set[1] || set[2]) {
            return Err(invalid_where(
                &format!(
                    "`{}` cannot be combined with other {column} bounds",
                    atom_text(atom)
                ),
                true,
            ));
        }
        if !fresh {
            return Err(invalid_where(
                &format!("Duplicate {column} bounds on: {simplified}"),
                true,
            ));
        }
        Ok(())
    }
}

/// A window bound's value: a number of milliseconds, or a (possibly partial) datetime.
fn window_instant(e: &SqlExpr, catalog: &Catalog) -> Result<i64, PlanError> {
    if let SqlExpr::Value(v) = e {
        if let Value::SingleQuotedString(text) = &v.value {
            return crate::functions::datetime::partial_timestamp_millis(text)
                .ok_or_else(|| invalid_where(&format!("Failed to parse datetime: {text}"), true));
        }
    }
    let fail = || {
        invalid_where(
            "Window bounds must resolve to an INT, BIGINT, or STRING containing a datetime.",
            true,
        )
    };
    let scope = Scope {
        columns: Vec::new(),
        types: catalog,
    };
    let t = scope.compile(e).map_err(|_| fail())?;
    if !matches!(t.ty, Some(Type::Int | Type::Bigint)) {
        return Err(fail());
    }
    match evaluate(&t.expr).map_err(|_| fail())? {
        ScalarValue::Int32(Some(n)) => Ok(n.into()),
        ScalarValue::Int64(Some(n)) => Ok(n),
        _ => Err(fail()),
    }
}

/// Key columns whose values compare reliably as stored keys: lookups by other types (arrays,
/// structs, maps) read every row instead, which the WHERE clause then filters the same.
fn lookup_type(t: &Type) -> bool {
    matches!(
        t,
        Type::Boolean
            | Type::Int
            | Type::Bigint
            | Type::Double
            | Type::Decimal { .. }
            | Type::String
            | Type::Bytes
            | Type::Time
            | Type::Date
            | Type::Timestamp
    )
}

/// Decides how a pull query over `source` (a table) reads it, refusing the WHERE clauses
/// ksqlDB refuses. The WHERE clause has already been type-checked.
pub fn analyze(
    selection: Option<&SqlExpr>,
    source: &Source,
    catalog: &Catalog,
    opts: PullOptions,
) -> Result<Access, PlanError> {
    let windowed = source.window.is_some();
    let a = Analyzer {
        source,
        catalog,
        keys: source.schema.key_columns().collect(),
        opts,
        windowed,
    };
    let scan = || {
        if opts.table_scan {
            Ok(Access::Scan)
        } else {
            Err(table_scan_disabled())
        }
    };
    let Some(selection) = selection else {
        return scan();
    };
    let Some(disjuncts) = disjuncts(rewrite(selection, false)) else {
        return scan();
    };
    if a.needs_table_scan(&disjuncts)? {
        return scan();
    }
    let mut keys: Vec<Vec<ScalarValue>> = Vec::new();
    let mut seen: std::collections::HashSet<Vec<ScalarValue>> = Default::default();
    let mut ranges = 0;
    let mut non_key = false;
    for atoms in &disjuncts {
        match a.constraint(atoms)? {
            Constraint::NonKey => non_key = true,
            Constraint::Range => ranges += 1,
            Constraint::Equal(k) => {
                if seen.insert(k.clone()) {
                    keys.push(k);
                }
            }
        }
    }
    if non_key {
        return scan();
    }
    if ranges == 0 {
        if a.keys.iter().all(|k| lookup_type(&a.resolved(&k.ty))) {
            return Ok(Access::Lookup(keys));
        }
        return Ok(Access::Scan);
    }
    // A range scan is one range over an unwindowed table; the store reads it as a scan.
    if disjuncts.len() == 1 && opts.range_scan && !windowed {
        return Ok(Access::Scan);
    }
    scan()
}

#[cfg(test)]
mod tests {
    use super::*;
    use brook_sql::Statement;

    fn catalog(ddl: &str, windowed: bool) -> Catalog {
        let mut catalog = Catalog::default();
        let parsed = brook_sql::parse(ddl).expect("ddl parses");
        let Statement::CreateSource {
            kind,
            name,
            elements,
            properties,
            ..
        } = &parsed[0].statement
        else {
            panic!("not a CREATE");
        };
        let mut src = crate::catalog::plan_create_source(
            &catalog,
            &Default::default(),
            *kind,
            &name.value,
            elements,
            properties,
            false,
            ddl,
        )
        .expect("source plans");
        if windowed {
            src.window = Some(crate::catalog::WindowType::Tumbling { size_ms: 1000 });
        }
        catalog.sources.insert(src.name.clone(), src);
        catalog
    }

    fn run(catalog: &Catalog, where_: &str, opts: PullOptions) -> Result<Access, String> {
        let sql = format!("SELECT * FROM T WHERE {where_};");
        let parsed = brook_sql::parse(&sql).expect("query parses");
        let Statement::Query(q) = &parsed[0].statement else {
            panic!("not a query");
        };
        let source = catalog.source("T").expect("T");
        analyze(q.selection.as_ref(), source, catalog, opts).map_err(|e| e.to_string())
    }

    const SCAN_OFF: PullOptions = PullOptions {
        table_scan: false,
        range_scan: true,
    };
    const BOTH_OFF: PullOptions = PullOptions {
        table_scan: false,
        range_scan: false,
    };
    const ON: PullOptions = PullOptions {
        table_scan: true,
        range_scan: true,
    };

    enum Want {
        Scan,
        Keys(usize),
        Err(&'static str),
    }

    fn check(catalog: &Catalog, cases: &[(&str, PullOptions, Want)]) {
        for (where_, opts, want) in cases {
            let got = run(catalog, where_, *opts);
            match (want, &got) {
                (Want::Scan, Ok(Access::Scan)) => {}
                (Want::Keys(n), Ok(Access::Lookup(k))) if k.len() == *n => {}
                (Want::Err(m), Err(e)) if e.contains(m) => {}
                _ => panic!("WHERE {where_}: got {got:?}"),
            }
        }
    }

    #[test]
    fn string_key() {
        let c = catalog(
            "CREATE TABLE T (ID STRING PRIMARY KEY, COUNT BIGINT, V STRING) WITH (kafka_topic='t', format='JSON');",
            false,
        );
        use Want::*;
        check(
            &c,
            &[
                ("ID = '10'", SCAN_OFF, Keys(1)),
                ("'10' = ID", SCAN_OFF, Keys(1)),
                ("ID IN ('1', '2', '1')", SCAN_OFF, Keys(2)),
                ("ID = '1' OR ID = '2'", SCAN_OFF, Keys(2)),
                ("ID = '1' AND COUNT > 3", SCAN_OFF, Keys(1)),
                ("ID = CONCAT('1', '0')", SCAN_OFF, Keys(1)),
                ("COUNT = 100", ON, Scan),
                (
                    "COUNT = 100",
                    SCAN_OFF,
                    Err("WHERE clause missing key column for disjunct: (COUNT = 100)"),
                ),
                (
                    "ID != '100'",
                    SCAN_OFF,
                    Err("Bound on key columns '[`ID` STRING KEY]' must currently be '='. "),
                ),
                ("ID != '100'", ON, Scan),
                (
                    "'0' < ID AND ID < '100'",
                    SCAN_OFF,
                    Err("A comparison condition on the key column cannot be combined"),
                ),
                ("ID < '100'", SCAN_OFF, Scan),
                (
                    "ID < '100'",
                    BOTH_OFF,
                    Err("Query requires table scan to be enabled"),
                ),
                ("ID <= '11' OR ID >= '13'", ON, Scan),
                (
                    "ID <= '11' OR ID >= '13'",
                    SCAN_OFF,
                    Err("Query requires table scan"),
                ),
                ("V LIKE 'v%'", ON, Scan),
                ("ID LIKE '%1'", ON, Scan),
                (
                    "ID = NULL",
                    ON,
                    Err("Primary key columns can not be NULL: (ID = null)"),
                ),
                (
                    "ID IN (NULL)",
                    ON,
                    Err("Primary key columns can not be NULL: (ID = null)"),
                ),
                ("ID = '1' OR COUNT = 2", ON, Scan),
                ("NOT (ID <> '1')", SCAN_OFF, Keys(1)),
                ("ID BETWEEN '1' AND '2'", ON, Scan),
                (
                    "ID IS NULL",
                    ON,
                    Err("Unsupported expression in WHERE clause: (ID IS NULL)"),
                ),
                ("2 < 5", ON, Scan),
                ("ID = V", ON, Scan),
                (
                    "ID = V",
                    SCAN_OFF,
                    Err("A comparison must be between a key column and a resolvable expression"),
                ),
            ],
        );
        let none = c.source("T").map(|s| analyze(None, s, &c, SCAN_OFF));
        assert!(matches!(none, Ok(std::result::Result::Err(_))));
    }

    #[test]
    fn integer_key() {
        let c = catalog(
            "CREATE TABLE T (ID INT PRIMARY KEY, COUNT BIGINT, V STRING) WITH (kafka_topic='t', format='JSON');",
            true,
        );
        use Want::*;
        check(
            &c,
            &[
                ("ID = 10", SCAN_OFF, Keys(1)),
                ("ID = 10 + 1 AND WINDOWSTART > 12500 + 10", SCAN_OFF, Keys(1)),
                (
                    "ID IN ('10', 8)",
                    ON,
                    Err("'10' can not be converted to the type of the key column: ID INTEGER KEY"),
                ),
                (
                    "ID IN (2, COUNT + 1, 3)",
                    SCAN_OFF,
                    Err("A comparison must be between a key column and a resolvable expression."),
                ),
                (
                    "ID + 10 = 20",
                    SCAN_OFF,
                    Err("A comparison must directly reference a key column."),
                ),
                ("ID + 10 = 20", ON, Scan),
                (
                    "ID = 10 AND ID IN (1, 2, 3, 10)",
                    SCAN_OFF,
                    Err("cannot be combined with other comparisons such as an IN predicate"),
                ),
                (
                    "WINDOWSTART >= 12000",
                    SCAN_OFF,
                    Err("WHERE clause missing key column for disjunct"),
                ),
                ("WINDOWSTART >= 12000", ON, Scan),
                ("ID >= 12", SCAN_OFF, Err("Query requires table scan to be enabled")),
                ("ID <= 10", ON, Scan),
                (
                    "ID = 1 AND '2020-02-22T23:45' <= WINDOWSTART AND WINDOWSTART < '2020-02-24T24'",
                    SCAN_OFF,
                    Keys(1),
                ),
                (
                    "ID = 1 AND WINDOWSTART = 1 AND WINDOWSTART > 0",
                    ON,
                    Err("cannot be combined with other WINDOWSTART bounds"),
                ),
                (
                    "ID = 1 AND WINDOWEND > 1 AND WINDOWEND > 0",
                    ON,
                    Err("Duplicate WINDOWEND bounds on: GREATER_THAN"),
                ),
                (
                    "ID = 1 AND WINDOWSTART != 1",
                    ON,
                    Err("Unsupported WINDOWSTART bounds: NOT_EQUAL"),
                ),
                ("ID = 1 AND WINDOWSTART = 'x'", ON, Err("Failed to parse datetime: x")),
                (
                    "ID LIKE 12",
                    ON,
                    Err("The column type for Like condition must be VARCHAR. The column type is INTEGER"),
                ),
            ],
        );
    }

    #[test]
    fn multi_column_key() {
        let c = catalog(
            "CREATE TABLE T (ID1 STRING PRIMARY KEY, ID2 INT PRIMARY KEY, COUNT BIGINT) WITH (kafka_topic='t', format='JSON');",
            false,
        );
        use Want::*;
        check(
            &c,
            &[
                ("ID1 = '11' AND ID2 = 10", BOTH_OFF, Keys(1)),
                (
                    "ID1 = '11'",
                    SCAN_OFF,
                    Err("Multi-column sources must specify every key in the WHERE clause. Specified: [`ID1`] Expected: [`ID1` STRING KEY, `ID2` INTEGER KEY]"),
                ),
                ("ID1 = '11'", ON, Scan),
                ("ID1 <= '11' AND ID2 >= 10", SCAN_OFF, Err("Query requires table scan")),
                ("ID1 <= '11' AND ID2 >= 10", ON, Scan),
                (
                    "ID1 <= '11' OR ID2 >= 10",
                    SCAN_OFF,
                    Err("Multi-column sources must specify every key in the WHERE clause."),
                ),
                ("ID1 <= '11' AND COUNT = 1", ON, Scan),
            ],
        );
    }

    #[test]
    fn options_from_properties() {
        let mut o = PullOptions::default();
        o.set(TABLE_SCAN_ENABLED, "false");
        o.set(RANGE_SCAN_ENABLED, "FALSE");
        o.set("other", "true");
        assert_eq!(o, BOTH_OFF);
        o.set(TABLE_SCAN_ENABLED, "nonsense");
        assert!(!o.table_scan);
    }
}
