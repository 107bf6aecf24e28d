//! What keeps planning and evaluation within bounds (`docs/sql-limits.md`).
//!
//! The parser bounds a statement's nesting (`brook_sql::limits`); what is planned from it
//! may still be deeper (one SQL operator can become a cast, the operator and a null check)
//! or, through a bug, much larger than the text. So:
//! - the planner's recursion and DataFusion's physical planning run where the stack can grow
//!   (a debug build takes tens of KiB a level, a tokio worker has 2 MiB);
//! - evaluation grows the stack every [`GUARD_EVERY`] levels of a physical expression;
//! - compiling one expression may take at most [`MAX_COMPILE_STEPS`] steps, so that no
//!   shape of expression makes planning take exponential time;
//! - a type, once its `CREATE TYPE` names are replaced, may have at most [`MAX_TYPE_NODES`]
//!   parts and [`brook_sql::limits::MAX_TYPE_DEPTH`] levels, and the types one statement
//!   resolves [`MAX_STATEMENT_TYPE_NODES`] parts together ([`StatementBudget`]).

use std::cell::Cell;
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, FieldRef, Schema};
use brook_sql::Type;
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

use crate::PlanError;

/// Most parts (ARRAY, MAP, STRUCT, fields and scalars) of one resolved type.
pub const MAX_TYPE_NODES: usize = 10_000;

/// Most parts of all the types one statement resolves together (its columns, its CASTs):
/// each `CREATE TYPE` name may stand for [`MAX_TYPE_NODES`] parts, and a statement may name
/// one many times.
pub const MAX_STATEMENT_TYPE_NODES: usize = 250_000;

/// Most steps (sub-expressions compiled) in compiling one expression: many times what any
/// statement the parser accepts needs, where compiling is linear in the statement.
pub const MAX_COMPILE_STEPS: usize = 4 * brook_sql::limits::MAX_STATEMENT_TOKENS;

/// Largest string or bytes value (in bytes, or characters of a string) a function builds
/// from smaller ones: LPAD and RPAD, REPLACE, ARRAY_JOIN, CONCAT_WS, lambdas' results.
/// Kafka's default largest record: a larger value could not be written anyway.
pub const MAX_VALUE_BYTES: usize = 1 << 20;

/// Most elements of one array a function makes from numbers (GENERATE_SERIES).
pub const MAX_ARRAY_ELEMENTS: usize = 1 << 20;

/// Most bytes such a function makes for one batch of records (up to 4096): the limits
/// above, times a batch, would still be gigabytes.
pub const MAX_BATCH_BYTES: usize = 64 << 20;

/// The evaluation error of a function whose result would pass a limit.
pub(crate) fn too_large(
    name: &str,
    what: &str,
    size: impl fmt::Display,
    limit: usize,
) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::Execution(format!(
        "{name}: the result would be {size} {what}, more than the limit of {limit}"
    ))
}

/// What a function may still make for the batch it is evaluating.
pub(crate) struct BatchBudget {
    name: &'static str,
    left: usize,
}

impl BatchBudget {
    pub(crate) fn new(name: &'static str) -> Self {
        BatchBudget {
            name,
            left: MAX_BATCH_BYTES,
        }
    }

    /// Takes `bytes` of the batch's budget, or fails the batch.
    pub(crate) fn take(&mut self, bytes: usize) -> DfResult<()> {
        match self.left.checked_sub(bytes) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(datafusion::error::DataFusionError::Execution(format!(
                "{}: the results for one batch of records would be more than {MAX_BATCH_BYTES} bytes",
                self.name
            ))),
        }
    }
}

/// Levels of a physical expression between two points where evaluation may grow the stack.
pub const GUARD_EVERY: usize = 16;

/// Stack kept free below each point where the stack may grow, and the size of a new part.
const RED_ZONE: usize = 256 * 1024;
const NEW_STACK: usize = 2 * 1024 * 1024;

/// Runs `f` with at least [`RED_ZONE`] of stack, on a new stack part if need be.
pub(crate) fn with_stack<T>(f: impl FnOnce() -> T) -> T {
    stacker::maybe_grow(RED_ZONE, NEW_STACK, f)
}

/// The parts of a type: 1 for a scalar or a name, plus those of its elements and fields.
pub fn type_nodes(t: &Type) -> usize {
    let mut n = 0;
    let mut stack = vec![t];
    while let Some(t) = stack.pop() {
        n += 1;
        match t {
            Type::Array(i) => stack.push(i),
            Type::Map(k, v) => {
                stack.push(k);
                stack.push(v);
            }
            Type::Struct(fields) => stack.extend(fields.iter().map(|f| &f.ty)),
            _ => {}
        }
    }
    n
}

/// Nesting of ARRAY, MAP and STRUCT in a type (a scalar is 0).
pub fn type_depth(t: &Type) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(t, 0)];
    while let Some((t, d)) = stack.pop() {
        deepest = deepest.max(d);
        match t {
            Type::Array(i) => stack.push((i, d + 1)),
            Type::Map(k, v) => {
                stack.push((k, d + 1));
                stack.push((v, d + 1));
            }
            Type::Struct(fields) => stack.extend(fields.iter().map(|f| (&f.ty, d + 1))),
            _ => {}
        }
    }
    deepest
}

thread_local! {
    /// Steps left to the outermost compile running on this thread, if any.
    static COMPILE_STEPS: Cell<Option<usize>> = const { Cell::new(None) };
}

/// One step of compiling: the outermost step starts the budget, which it ends when dropped.
pub(crate) struct CompileStep {
    outermost: bool,
}

impl CompileStep {
    pub(crate) fn take() -> Result<CompileStep, PlanError> {
        COMPILE_STEPS.with(|steps| match steps.get() {
            None => {
                steps.set(Some(MAX_COMPILE_STEPS));
                Ok(CompileStep { outermost: true })
            }
            Some(0) => Err(PlanError::TooComplex {
                limit: MAX_COMPILE_STEPS,
            }),
            Some(n) => {
                steps.set(Some(n - 1));
                Ok(CompileStep { outermost: false })
            }
        })
    }
}

impl Drop for CompileStep {
    fn drop(&mut self) {
        if self.outermost {
            COMPILE_STEPS.with(|steps| steps.set(None));
        }
    }
}

thread_local! {
    /// Type parts the statement being planned on this thread may still resolve, if any.
    static TYPE_NODES: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The planning of one statement: while it lives, the types resolved on this thread share
/// [`MAX_STATEMENT_TYPE_NODES`] parts. Started where a statement is planned (a nested
/// start, e.g. EXPLAIN's, shares the outer one).
pub struct StatementBudget {
    outermost: bool,
}

impl StatementBudget {
    pub fn start() -> Self {
        TYPE_NODES.with(|left| match left.get() {
            None => {
                left.set(Some(MAX_STATEMENT_TYPE_NODES));
                StatementBudget { outermost: true }
            }
            Some(_) => StatementBudget { outermost: false },
        })
    }
}

impl Drop for StatementBudget {
    fn drop(&mut self) {
        if self.outermost {
            TYPE_NODES.with(|left| left.set(None));
        }
    }
}

/// Takes one type part from the statement's budget; false when it is spent.
pub(crate) fn take_type_node() -> bool {
    TYPE_NODES.with(|left| match left.get() {
        None => true,
        Some(0) => false,
        Some(n) => {
            left.set(Some(n - 1));
            true
        }
    })
}

/// Wraps every [`GUARD_EVERY`]-th level of `expr` (never its root, which callers may
/// inspect) in a [`GrowStack`].
#[recursive::recursive]
pub(crate) fn guard_depth(
    expr: Arc<dyn PhysicalExpr>,
    depth: usize,
) -> DfResult<Arc<dyn PhysicalExpr>> {
    let children: Vec<Arc<dyn PhysicalExpr>> = expr.children().into_iter().cloned().collect();
    let expr = if children.is_empty() {
        expr
    } else {
        let guarded = children
            .into_iter()
            .map(|c| guard_depth(c, depth + 1))
            .collect::<DfResult<Vec<_>>>()?;
        datafusion::physical_expr_common::physical_expr::with_new_children_if_necessary(
            expr, guarded,
        )?
    };
    if depth > 0 && depth.is_multiple_of(GUARD_EVERY) && !expr.children().is_empty() {
        return Ok(Arc::new(GrowStack { inner: expr }));
    }
    Ok(expr)
}

/// Evaluates its expression where the stack has room, so that evaluating a deep expression
/// on a worker thread cannot overflow it. Transparent otherwise.
#[derive(Debug, Eq)]
pub(crate) struct GrowStack {
    inner: Arc<dyn PhysicalExpr>,
}

impl PartialEq for GrowStack {
    fn eq(&self, other: &Self) -> bool {
        self.inner.eq(&other.inner)
    }
}

impl Hash for GrowStack {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
    }
}

impl fmt::Display for GrowStack {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl PhysicalExpr for GrowStack {
    fn data_type(&self, input_schema: &Schema) -> DfResult<DataType> {
        self.inner.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> DfResult<bool> {
        self.inner.nullable(input_schema)
    }

    fn return_field(&self, input_schema: &Schema) -> DfResult<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> DfResult<ColumnarValue> {
        with_stack(|| self.inner.evaluate(batch))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> DfResult<Arc<dyn PhysicalExpr>> {
        match children.pop() {
            Some(inner) if children.is_empty() => Ok(Arc::new(GrowStack { inner })),
            _ => Err(datafusion::error::DataFusionError::Internal(
                "GrowStack takes one child".into(),
            )),
        }
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}

#[cfg(test)]
mod tests;
