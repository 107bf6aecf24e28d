//! ksqlDB expressions → DataFusion logical expressions, typed by ksqlDB's rules.
//!
//! Every expression is typed here with ksqlDB's types (the result types of arithmetic,
//! DECIMAL precision and scale, comparisons across numeric types); casts are inserted
//! explicitly so DataFusion never has to coerce, and its result types match Brook's
//! `arrow_type` of the ksqlDB type.

use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use brook_sql::sqlparser::ast::{
    self as sql, AccessExpr, BinaryOperator, CastKind, Expr as SqlExpr, FunctionArg,
    FunctionArgExpr, FunctionArguments, Subscript, UnaryOperator, Value,
};
use brook_sql::{StructField, Type};
use datafusion::common::{Column as DfColumn, DFSchema, ScalarValue};
use datafusion::execution::context::ExecutionProps;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    binary_expr, cast, expr::Like, in_list, is_not_null, is_null, lit, not, when, Expr, Operator,
};
use datafusion::physical_expr::{create_physical_expr, PhysicalExpr};

use crate::functions::cast::{ksql_cast, needs_ksql_cast};
use crate::types::{arrow_type, TypeRegistry};
use crate::PlanError;

/// A column visible to an expression.
#[derive(Debug, Clone)]
pub struct ScopeColumn {
    pub name: String,
    /// The source (name or alias) it belongs to, for `S.COL` references.
    pub qualifiers: Vec<String>,
    pub ty: Type,
    /// The field of the row schema that holds it.
    pub field: String,
}

/// What names an expression can refer to.
pub struct Scope<'a> {
    pub columns: Vec<ScopeColumn>,
    pub types: &'a dyn TypeRegistry,
}

/// A compiled expression and its ksqlDB type (`None` for an untyped NULL literal).
#[derive(Debug, Clone)]
pub struct Typed {
    pub expr: Expr,
    pub ty: Option<Type>,
}

impl Typed {
    fn new(expr: Expr, ty: Type) -> Self {
        Typed { expr, ty: Some(ty) }
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, PlanError> {
    Err(PlanError::Invalid(msg.into()))
}

fn df<T>(r: datafusion::error::Result<T>) -> Result<T, PlanError> {
    r.map_err(|e| PlanError::DataFusion(e.to_string()))
}

/// Compiles a DataFusion expression against the row schema into a physical expression.
/// DataFusion's physical planner recurses once per level of `expr`, with frames of tens of
/// KiB in a debug build: it runs on a stack sized for the expression's depth. Evaluation
/// grows the stack where it must ([`crate::limits::GrowStack`]).
pub fn physical(expr: &Expr, schema: &SchemaRef) -> Result<Arc<dyn PhysicalExpr>, PlanError> {
    let dfschema = df(DFSchema::try_from(schema.as_ref().clone()))?;
    let need = logical_depth(expr) * PLAN_STACK_PER_LEVEL + PLAN_STACK_BASE;
    let planned = stacker::maybe_grow(need, need, || {
        create_physical_expr(
            expr,
            &dfschema,
            &ExecutionProps::new(),
            &PhysicalPlanningContext::default(),
        )
        .and_then(|p| crate::limits::guard_depth(p, 0))
    });
    df(planned)
}

/// Stack DataFusion's physical planner takes per level of an expression in a debug build
/// (measured at about 18 KiB), with room to spare.
const PLAN_STACK_PER_LEVEL: usize = 32 * 1024;
const PLAN_STACK_BASE: usize = 256 * 1024;

/// The depth of a DataFusion expression, found without recursion.
fn logical_depth(expr: &Expr) -> usize {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    let mut deepest = 0;
    let mut stack = vec![(expr, 1)];
    while let Some((e, d)) = stack.pop() {
        deepest = deepest.max(d);
        // Visiting children only (no recursion) cannot fail.
        let _ = e.apply_children(|c| {
            stack.push((c, d + 1));
            Ok(TreeNodeRecursion::Continue)
        });
    }
    deepest
}

impl Scope<'_> {
    fn arrow(&self, ty: &Type) -> Result<DataType, PlanError> {
        arrow_type(ty, self.types)
    }

    fn resolve(&self, qualifier: Option<&str>, name: &str) -> Result<&ScopeColumn, PlanError> {
        let found: Vec<&ScopeColumn> = self
            .columns
            .iter()
            .filter(|c| c.name == name)
            .filter(|c| qualifier.is_none_or(|q| c.qualifiers.iter().any(|cq| cq == q)))
            .collect();
        match found.as_slice() {
            [one] => Ok(one),
            [] => {
                if let Some(q) = qualifier {
                    if !self
                        .columns
                        .iter()
                        .any(|c| c.qualifiers.iter().any(|cq| cq == q))
                    {
                        return err(format!("'{q}' is not a valid stream/table name or alias."));
                    }
                    return err(format!("Column '{q}.{name}' cannot be resolved."));
                }
                err(format!("Column '{name}' cannot be resolved."))
            }
            _ => err(format!("Column '{name}' is ambiguous.")),
        }
    }

    fn column_expr(&self, c: &ScopeColumn) -> Typed {
        Typed::new(
            Expr::Column(DfColumn::new_unqualified(c.field.clone())),
            c.ty.clone(),
        )
    }

    /// Compiles an expression. The recursion grows the stack as it needs (a level takes
    /// tens of KiB in a debug build); each call is a step of the expression's budget.
    #[recursive::recursive]
    pub fn compile(&self, e: &SqlExpr) -> Result<Typed, PlanError> {
        let _step = crate::limits::CompileStep::take()?;
        self.compile_step(e)
    }

    fn compile_step(&self, e: &SqlExpr) -> Result<Typed, PlanError> {
        match e {
            SqlExpr::Identifier(id) => Ok(self.column_expr(self.resolve(None, &id.value)?)),
            SqlExpr::CompoundIdentifier(parts) => match parts.as_slice() {
                [q, c] => Ok(self.column_expr(self.resolve(Some(&q.value), &c.value)?)),
                _ => err(format!("Column '{e}' cannot be resolved.")),
            },
            SqlExpr::Value(v) => literal(&v.value),
            SqlExpr::Nested(inner) => self.compile(inner),
            SqlExpr::UnaryOp { op, expr } => {
                // ksqlDB's grammar makes the sign part of a numeric literal, so
                // `-2147483648` is an INT and `-9223372036854775808` a BIGINT.
                if let (UnaryOperator::Minus, SqlExpr::Value(v)) = (op, expr.as_ref()) {
                    if let Value::Number(n, _) = &v.value {
                        return number_literal(&format!("-{n}"));
                    }
                }
                let t = self.compile(expr)?;
                match op {
                    UnaryOperator::Not => {
                        self.expect_bool(&t, e)?;
                        Ok(Typed::new(not(t.expr), Type::Boolean))
                    }
                    UnaryOperator::Minus => {
                        let ty = t.ty.clone().unwrap_or(Type::Int);
                        if !is_numeric(&ty) {
                            return err(format!("Unsupported unary minus on {ty}"));
                        }
                        Ok(Typed::new(Expr::Negative(Box::new(t.expr)), ty))
                    }
                    UnaryOperator::Plus => Ok(t),
                    _ => err(format!("Unsupported operator in {e}")),
                }
            }
            SqlExpr::BinaryOp { left, op, right } => self.binary(e, left, op, right),
            SqlExpr::IsNull(x) => Ok(Typed::new(is_null(self.compile(x)?.expr), Type::Boolean)),
            SqlExpr::IsNotNull(x) => Ok(Typed::new(
                is_not_null(self.compile(x)?.expr),
                Type::Boolean,
            )),
            SqlExpr::IsDistinctFrom(a, b) | SqlExpr::IsNotDistinctFrom(a, b) => {
                let (a, b) = self.common(e, self.compile(a)?, self.compile(b)?)?;
                let op = if matches!(e, SqlExpr::IsDistinctFrom(..)) {
                    Operator::IsDistinctFrom
                } else {
                    Operator::IsNotDistinctFrom
                };
                Ok(Typed::new(binary_expr(a.expr, op, b.expr), Type::Boolean))
            }
            SqlExpr::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let x = self.compile(expr)?;
                let lo = pseudo_time(expr, &x, low, self.compile(low)?)?;
                let hi = pseudo_time(expr, &x, high, self.compile(high)?)?;
                // Each bound meets the value in their common type; the value is passed
                // once and cast twice as it is evaluated (two copies of it in the plan
                // would double with every BETWEEN nested in it).
                let (x_lo, lo) = self.common_with(e, &x, lo)?;
                let (x_hi, hi) = self.common_with(e, &x, hi)?;
                Ok(Typed::new(
                    crate::functions::compare::between(
                        [x.expr, lo.expr, hi.expr],
                        [x_lo, x_hi],
                        *negated,
                    ),
                    Type::Boolean,
                ))
            }
            SqlExpr::InList {
                expr,
                list,
                negated,
            } => {
                // ksqlDB coerces the tested expression and the items as one list.
                let mut items = vec![(expr.as_ref(), self.compile(expr)?)];
                for i in list {
                    items.push((i, self.compile(i)?));
                }
                let (common, items) = self
                    .coerce_list(items)
                    .map_err(|e| prefix_err("Invalid Predicate: ", e))?;
                // All NULLs: any one type serves, as long as every side has it.
                let target = common.unwrap_or(Type::String);
                let mut items = items
                    .into_iter()
                    .map(|t| self.coerce(t, &target).map(|t| t.expr));
                let Some(x) = items.next().transpose()? else {
                    return err(format!("IN needs a tested expression: {e}"));
                };
                let items = items.collect::<Result<Vec<_>, _>>()?;
                Ok(Typed::new(in_list(x, items, *negated), Type::Boolean))
            }
            SqlExpr::Like {
                negated,
                expr,
                pattern,
                escape_char,
                any: false,
            } => {
                let x = self.compile(expr)?;
                let p = self.compile(pattern)?;
                let escape = match escape_char {
                    None => None,
                    Some(v) => match &v.value {
                        Value::SingleQuotedString(s) if s.chars().count() == 1 => s.chars().next(),
                        _ => return err(format!("Invalid escape character in {e}")),
                    },
                };
                Ok(Typed::new(
                    Expr::Like(Like::new(
                        *negated,
                        Box::new(x.expr),
                        Box::new(p.expr),
                        escape,
                        false,
                    )),
                    Type::Boolean,
                ))
            }
            SqlExpr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => self.case(operand.as_deref(), conditions, else_result.as_deref()),
            SqlExpr::Cast {
                kind: CastKind::Cast,
                expr,
                data_type,
                ..
            } => {
                let target = brook_sql::cast_type(data_type)
                    .map_err(|e| PlanError::Invalid(e.to_string()))?;
                let target = resolve(self.types, &target)?;
                let x = self.compile(expr)?;
                self.cast_to(x, &target)
            }
            SqlExpr::CompoundFieldAccess { root, access_chain } => {
                // `source.column[…]`: the root is a qualifier, not a column.
                let (mut cur, chain) = match (root.as_ref(), access_chain.first()) {
                    (SqlExpr::Identifier(q), Some(AccessExpr::Dot(SqlExpr::Identifier(f))))
                        if !self.columns.iter().any(|c| c.name == q.value)
                            && self.columns.iter().any(|c| c.qualifiers.contains(&q.value)) =>
                    {
                        let col = SqlExpr::CompoundIdentifier(vec![q.clone(), f.clone()]);
                        (self.compile(&col)?, &access_chain[1..])
                    }
                    _ => (self.compile(root)?, &access_chain[..]),
                };
                for access in chain {
                    cur = match access {
                        AccessExpr::Subscript(Subscript::Index { index }) => {
                            self.subscript(cur, self.compile(index)?)?
                        }
                        AccessExpr::Dot(SqlExpr::Identifier(f)) => self.field(cur, &f.value)?,
                        _ => return err(format!("Unsupported access in {e}")),
                    };
                }
                Ok(cur)
            }
            SqlExpr::Array(arr) => {
                let items = arr
                    .elem
                    .iter()
                    .map(|i| Ok((i, self.compile(i)?)))
                    .collect::<Result<Vec<_>, PlanError>>()?;
                let (elem, items) = self.coerce_list(items)?;
                let Some(elem) = elem else {
                    return err("Cannot construct an array with all NULL elements (see https://github.com/confluentinc/ksql/issues/4239). As a workaround, you may cast a NULL value to the desired type.");
                };
                let mut exprs = Vec::new();
                for i in items {
                    exprs.push(self.coerce(i, &elem)?.expr);
                }
                Ok(Typed::new(
                    datafusion::functions_nested::expr_fn::make_array(exprs),
                    Type::Array(Box::new(elem)),
                ))
            }
            SqlExpr::Function(f) => self.function(f),
            // sqlparser gives these functions syntax nodes of their own; ksqlDB has only the
            // plain call forms, which the function families implement.
            SqlExpr::Substring {
                expr,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args = vec![self.compile(expr)?];
                for a in [substring_from, substring_for].into_iter().flatten() {
                    args.push(self.compile(a)?);
                }
                crate::functions::call(self, "SUBSTRING", args)
            }
            SqlExpr::Trim {
                expr,
                trim_where: None,
                trim_what: None,
                trim_characters: None,
            } => crate::functions::call(self, "TRIM", vec![self.compile(expr)?]),
            SqlExpr::Ceil {
                expr,
                field: sql::CeilFloorKind::DateTimeField(sql::DateTimeField::NoDateTime),
            } => crate::functions::call(self, "CEIL", vec![self.compile(expr)?]),
            SqlExpr::Floor {
                expr,
                field: sql::CeilFloorKind::DateTimeField(sql::DateTimeField::NoDateTime),
            } => crate::functions::call(self, "FLOOR", vec![self.compile(expr)?]),
            _ => Err(PlanError::Unsupported(format!(
                "expression not supported yet: {e}"
            ))),
        }
    }

    fn expect_bool(&self, t: &Typed, e: &SqlExpr) -> Result<(), PlanError> {
        match &t.ty {
            None | Some(Type::Boolean) => Ok(()),
            Some(other) => err(format!("Type error in {e}: expected BOOLEAN, got {other}")),
        }
    }

    /// Brings two operands to a common type for comparison.
    fn common(&self, e: &SqlExpr, a: Typed, b: Typed) -> Result<(Typed, Typed), PlanError> {
        match (&a.ty, &b.ty) {
            (Some(x), Some(y)) => {
                let t = compared_type(e, x, y)?;
                Ok((self.coerce(a, &t)?, self.coerce(b, &t)?))
            }
            (Some(x), None) => {
                let x = x.clone();
                Ok((a, self.coerce(b, &x)?))
            }
            (None, Some(y)) => {
                let y = y.clone();
                Ok((self.coerce(a, &y)?, b))
            }
            (None, None) => Ok((a, b)),
        }
    }

    /// [`Scope::common`] for a value used more than once: `b` brought to the common type,
    /// and the Arrow type the value `a` must be cast to (`None`: as it is).
    fn common_with(
        &self,
        e: &SqlExpr,
        a: &Typed,
        b: Typed,
    ) -> Result<(Option<DataType>, Typed), PlanError> {
        match (&a.ty, &b.ty) {
            (Some(x), Some(y)) => {
                let t = compared_type(e, x, y)?;
                let cast = if *x == t { None } else { Some(self.arrow(&t)?) };
                Ok((cast, self.coerce(b, &t)?))
            }
            (Some(x), None) => {
                let x = x.clone();
                Ok((None, self.coerce(b, &x)?))
            }
            (None, Some(y)) => Ok((Some(self.arrow(y)?), b)),
            (None, None) => Ok((None, b)),
        }
    }

    /// Casts when the types differ (only widening: callers choose the target).
    fn coerce(&self, t: Typed, target: &Type) -> Result<Typed, PlanError> {
        if t.ty.as_ref() == Some(target) {
            return Ok(t);
        }
        let dt = self.arrow(target)?;
        // Arrow cannot add or drop struct fields, nor convert nested values field by field.
        if let Some(from @ (Type::Array(_) | Type::Map(..) | Type::Struct(_))) = &t.ty {
            if needs_ksql_cast(&self.arrow(from)?, &dt) {
                return Ok(Typed::new(ksql_cast(t.expr, dt), target.clone()));
            }
        }
        Ok(Typed::new(cast(t.expr, dt), target.clone()))
    }

    fn cast_to(&self, t: Typed, target: &Type) -> Result<Typed, PlanError> {
        let Some(from) = &t.ty else {
            return self.coerce(t, target);
        };
        if !castable(from, target) {
            return err(format!(
                "Cast of {} to {} is not supported",
                crate::schema::SchemaType(from),
                crate::schema::SchemaType(target)
            ));
        }
        if from == target {
            return Ok(t);
        }
        let dt = self.arrow(target)?;
        // Text goes there too, to be read by ksqlDB's parsers: a text that does not read
        // fails its row, which the runtime turns into NULL and a processing-log entry, as
        // ksqlDB does with the exception its parser throws.
        if needs_ksql_cast(&self.arrow(from)?, &dt) {
            return Ok(Typed::new(ksql_cast(t.expr, dt), target.clone()));
        }
        self.coerce(t, target)
    }

    fn binary(
        &self,
        e: &SqlExpr,
        left: &SqlExpr,
        op: &BinaryOperator,
        right: &SqlExpr,
    ) -> Result<Typed, PlanError> {
        if let Some((base, field)) = brook_sql::as_dereference(e) {
            let b = self.compile(base)?;
            return self.field(b, &field.value);
        }
        if brook_sql::as_lambda(e).is_some() {
            return err(format!(
                "A lambda is only allowed as a function argument: {e}"
            ));
        }
        let l = self.compile(left)?;
        let r = self.compile(right)?;
        let (l, r) = if matches!(
            op,
            BinaryOperator::Eq
                | BinaryOperator::NotEq
                | BinaryOperator::Lt
                | BinaryOperator::LtEq
                | BinaryOperator::Gt
                | BinaryOperator::GtEq
        ) {
            let r = pseudo_time(left, &l, right, r)?;
            let l = pseudo_time(right, &r, left, l)?;
            (l, r)
        } else {
            (l, r)
        };
        let cmp = |op: Operator| -> Result<Typed, PlanError> {
            let ordering = matches!(
                op,
                Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq
            );
            let complex = |t: &Option<Type>| {
                matches!(t, Some(Type::Array(_) | Type::Map(..) | Type::Struct(_)))
            };
            if ordering && (complex(&l.ty) || complex(&r.ty)) {
                let show = |t: &Option<Type>| {
                    t.as_ref()
                        .map(|t| crate::schema::SchemaType(t).to_string())
                        .unwrap_or("NULL".into())
                };
                return err(format!(
                    "Cannot compare {left} ({}) to {right} ({}) with {}.",
                    show(&l.ty),
                    show(&r.ty),
                    op_name(e)
                ));
            }
            let (l, r) = self.common(e, l.clone(), r.clone())?;
            // ksqlDB's comparisons are false, not NULL, when a side is NULL. `IS TRUE` says
            // so with the comparison once (a CASE would copy it, and nested comparisons
            // would grow the plan exponentially).
            let c = binary_expr(l.expr, op, r.expr);
            Ok(Typed::new(Expr::IsTrue(Box::new(c)), Type::Boolean))
        };
        match op {
            BinaryOperator::Eq => cmp(Operator::Eq),
            BinaryOperator::NotEq => cmp(Operator::NotEq),
            BinaryOperator::Lt => cmp(Operator::Lt),
            BinaryOperator::LtEq => cmp(Operator::LtEq),
            BinaryOperator::Gt => cmp(Operator::Gt),
            BinaryOperator::GtEq => cmp(Operator::GtEq),
            BinaryOperator::And | BinaryOperator::Or => {
                self.expect_bool(&l, e)?;
                self.expect_bool(&r, e)?;
                let op = if *op == BinaryOperator::And {
                    Operator::And
                } else {
                    Operator::Or
                };
                let l = self.coerce(l, &Type::Boolean)?;
                let r = self.coerce(r, &Type::Boolean)?;
                Ok(Typed::new(binary_expr(l.expr, op, r.expr), Type::Boolean))
            }
            BinaryOperator::Plus
            | BinaryOperator::Minus
            | BinaryOperator::Multiply
            | BinaryOperator::Divide
            | BinaryOperator::Modulo => self.arithmetic(e, op, l, r),
            _ => Err(PlanError::Unsupported(format!(
                "operator {op} not supported yet"
            ))),
        }
    }

    fn arithmetic(
        &self,
        e: &SqlExpr,
        op: &BinaryOperator,
        l: Typed,
        r: Typed,
    ) -> Result<Typed, PlanError> {
        // ksqlDB refuses arithmetic with an untyped NULL rather than guess its type.
        if l.ty.is_none() || r.ty.is_none() {
            let name = |t: &Option<Type>| match t {
                Some(t) => t.to_string(),
                None => "null".to_string(),
            };
            return err(format!(
                "Error processing expression: {}. Arithmetic on types {} and {} are not supported.",
                ksql_text(e),
                name(&l.ty),
                name(&r.ty)
            ));
        }
        let lt = l.ty.clone().or(r.ty.clone()).unwrap_or(Type::Int);
        let rt = r.ty.clone().or(l.ty.clone()).unwrap_or(Type::Int);
        if *op == BinaryOperator::Plus && lt == Type::String && rt == Type::String {
            let expr = datafusion::functions::string::expr_fn::concat(vec![l.expr, r.expr]);
            return Ok(Typed::new(expr, Type::String));
        }
        if !is_numeric(&lt) || !is_numeric(&rt) {
            return err(format!(
                "Error processing expression: {}. Unsupported arithmetic types. {} {}",
                ksql_text(e),
                base_type_name(&lt),
                base_type_name(&rt)
            ));
        }
        let result = arithmetic_type(op, &lt, &rt);
        let dfop = match op {
            BinaryOperator::Plus => Operator::Plus,
            BinaryOperator::Minus => Operator::Minus,
            BinaryOperator::Multiply => Operator::Multiply,
            BinaryOperator::Divide => Operator::Divide,
            _ => Operator::Modulo,
        };
        // Operands are brought to the result's type (DECIMAL operands keep their own
        // precision: Arrow's decimal kernels compute the exact result scale themselves).
        let (l, r) = if let Type::Decimal { .. } = result {
            (
                self.coerce(l, &decimal_of(&lt))?,
                self.coerce(r, &decimal_of(&rt))?,
            )
        } else {
            (self.coerce(l, &result)?, self.coerce(r, &result)?)
        };
        // ksqlDB answers NULL for an integer or decimal division by zero.
        let r_expr =
            if matches!(dfop, Operator::Divide | Operator::Modulo) && result != Type::Double {
                let zero = self.coerce(
                    Typed::new(lit(0i32), Type::Int),
                    r.ty.as_ref().unwrap_or(&result),
                )?;
                datafusion::functions::core::expr_fn::nullif(r.expr, zero.expr)
            } else {
                r.expr
            };
        let expr = binary_expr(l.expr, dfop, r_expr);
        let expr = match &result {
            Type::Decimal { .. } => cast(expr, self.arrow(&result)?),
            _ => expr,
        };
        Ok(Typed::new(expr, result))
    }

    fn case(
        &self,
        operand: Option<&SqlExpr>,
        conditions: &[sql::CaseWhen],
        else_result: Option<&SqlExpr>,
    ) -> Result<Typed, PlanError> {
        let (mut operand, mut whens) = match operand {
            Some(op) => {
                let (o, values) = self.case_operand(op, conditions)?;
                (Some(o), values)
            }
            None => (None, Vec::new()),
        };
        let mut result_ty: Option<Type> = None;
        let mut results = Vec::new();
        for cw in conditions {
            let cond = match operand {
                Some(_) => None,
                None => Some({
                    let c = self.compile(&cw.condition)?;
                    if !matches!(c.ty, None | Some(Type::Boolean)) {
                        return err(format!(
                            "WHEN operand type should be boolean. Type for '{}' is {}",
                            cw.condition,
                            c.ty.clone().unwrap_or(Type::String)
                        ));
                    }
                    c.expr
                }),
            };
            let r = self.compile(&cw.result)?;
            result_ty = merge_result_type(result_ty, &r)?;
            whens.extend(cond);
            results.push(r);
        }
        let else_t = match else_result {
            Some(e) => {
                let t = self.compile(e)?;
                result_ty = merge_result_type(result_ty, &t)?;
                Some(t)
            }
            None => None,
        };
        let ty = result_ty.ok_or_else(|| {
            PlanError::Invalid("Invalid Case expression. All case branches have NULL type".into())
        })?;
        let mut builder: Option<datafusion::logical_expr::conditional_expressions::CaseBuilder> =
            None;
        for (c, r) in whens.into_iter().zip(results) {
            let r = self.coerce(r, &ty)?.expr;
            builder = Some(match (builder, operand.take()) {
                (None, Some(o)) => datafusion::logical_expr::case(o).when(c, r),
                (None, None) => when(c, r),
                (Some(mut b), _) => b.when(c, r),
            });
        }
        let Some(mut b) = builder else {
            return err("CASE needs at least one WHEN");
        };
        let expr = match else_t {
            Some(t) => df(b.otherwise(self.coerce(t, &ty)?.expr))?,
            None => df(b.end())?,
        };
        Ok(Typed::new(expr, ty))
    }

    /// `CASE operand WHEN value …`: the operand and the values in one common type. The
    /// operand is compiled once and compared by DataFusion's CASE with an operand (a copy
    /// of it per WHEN would multiply with every CASE nested in it).
    fn case_operand(
        &self,
        op: &SqlExpr,
        conditions: &[sql::CaseWhen],
    ) -> Result<(Expr, Vec<Expr>), PlanError> {
        let o = self.compile(op)?;
        let mut target = o.ty.clone();
        let mut values = Vec::with_capacity(conditions.len());
        for cw in conditions {
            let c = self.compile(&cw.condition)?;
            target = match (target, &c.ty) {
                (Some(t), Some(y)) => Some(compared_type(&cw.condition, &t, y)?),
                (None, y) => y.clone(),
                (t, None) => t,
            };
            values.push(c);
        }
        let Some(target) = target else {
            return Ok((o.expr, values.into_iter().map(|v| v.expr).collect()));
        };
        let values = values
            .into_iter()
            .map(|v| self.coerce(v, &target).map(|v| v.expr))
            .collect::<Result<_, _>>()?;
        Ok((self.coerce(o, &target)?.expr, values))
    }

    fn field(&self, base: Typed, name: &str) -> Result<Typed, PlanError> {
        let Some(Type::Struct(fields)) = &base.ty else {
            return err(format!(
                "Expected STRUCT type for dereference of field `{name}`, got {}",
                base.ty.map(|t| t.to_string()).unwrap_or("NULL".into())
            ));
        };
        let f = fields
            .iter()
            .find(|f| f.name.value == name)
            .ok_or_else(|| {
                PlanError::Invalid(format!("Could not find field '{name}' in '{}'.", base.expr))
            })?;
        let ty = f.ty.clone();
        let field_name = f.name.value.clone();
        Ok(Typed::new(
            datafusion::functions::core::expr_fn::get_field(base.expr, field_name),
            ty,
        ))
    }

    fn subscript(&self, base: Typed, index: Typed) -> Result<Typed, PlanError> {
        match &base.ty {
            Some(Type::Array(item)) => {
                let item = (**item).clone();
                let idx = self.coerce(index, &Type::Bigint)?;
                Ok(Typed::new(
                    datafusion::functions_nested::expr_fn::array_element(base.expr, idx.expr),
                    item,
                ))
            }
            Some(Type::Map(k, v)) => {
                let v = (**v).clone();
                let k = (**k).clone();
                let key = self.coerce(index, &k)?;
                let extracted =
                    datafusion::functions_nested::expr_fn::map_extract(base.expr, key.expr);
                Ok(Typed::new(
                    datafusion::functions_nested::expr_fn::array_element(extracted, lit(1i64)),
                    v,
                ))
            }
            other => err(format!(
                "Subscript expression can only be applied to ARRAY or MAP, got {}",
                other
                    .clone()
                    .map(|t| t.to_string())
                    .unwrap_or("NULL".into())
            )),
        }
    }

    fn function(&self, f: &sql::Function) -> Result<Typed, PlanError> {
        let name = f.name.to_string().to_uppercase();
        let args: Vec<&FunctionArg> = match &f.args {
            FunctionArguments::List(l) => l.args.iter().collect(),
            FunctionArguments::None => Vec::new(),
            FunctionArguments::Subquery(_) => return err("subqueries are not supported"),
        };
        match name.as_str() {
            "STRUCT" => return self.struct_ctor(&args),
            "MAP" => return self.map_ctor(&args),
            "TRANSFORM" | "REDUCE" | "FILTER" => {
                return crate::functions::collections::lambda_call(self, &name, &args)
            }
            "DATEADD" | "DATESUB" | "TIMEADD" | "TIMESUB" | "TIMESTAMPADD" | "TIMESTAMPSUB" => {
                return crate::functions::datetime::unit_call(self, &name, &args)
            }
            _ => {}
        }
        let mut typed = Vec::new();
        for a in &args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => typed.push(self.compile(e)?),
                // ksqlDB reads `F(*)` as a call without arguments (COUNT(*) is the
                // aggregate planner's).
                FunctionArg::Unnamed(FunctionArgExpr::Wildcard) => {}
                _ => return err(format!("Unsupported argument in {f}")),
            }
        }
        crate::functions::call(self, &name, typed)
    }

    fn struct_ctor(&self, args: &[&FunctionArg]) -> Result<Typed, PlanError> {
        let mut parts = Vec::new();
        let mut fields = Vec::new();
        for a in args {
            let (name, value) = match assignment(a) {
                Some((SqlExpr::Identifier(id), v)) => (id.clone(), v),
                _ => return err("STRUCT fields are written `name := value`"),
            };
            let t = self.compile(value)?;
            let ty = t.ty.clone().unwrap_or(Type::String);
            let t = self.coerce(t, &ty)?;
            parts.push(lit(name.value.clone()));
            parts.push(t.expr);
            fields.push(StructField { name, ty });
        }
        if fields.is_empty() {
            // DataFusion's named_struct needs a field; an empty struct is built directly.
            let expr = crate::functions::udf::call_batch(
                "struct",
                DataType::Struct(Default::default()),
                vec![],
                |_, rows| {
                    Ok(Arc::new(arrow::array::StructArray::new_empty_fields(
                        rows, None,
                    )))
                },
            );
            return Ok(Typed::new(expr, Type::Struct(vec![])));
        }
        Ok(Typed::new(
            datafusion::functions::core::expr_fn::named_struct(parts),
            Type::Struct(fields),
        ))
    }

    fn map_ctor(&self, args: &[&FunctionArg]) -> Result<Typed, PlanError> {
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for a in args {
            let Some((name, v)) = assignment(a) else {
                return err("MAP entries are written `key := value`");
            };
            keys.push((name, self.compile(name)?));
            values.push((v, self.compile(v)?));
        }
        if keys.is_empty() {
            return err("Map constructor cannot be empty. Please supply at least one key value pair (see https://github.com/confluentinc/ksql/issues/4239).");
        }
        let (kt, keys) = self.coerce_list(keys)?;
        let Some(kt) = kt else {
            return err("Cannot construct a map with all NULL keys (see https://github.com/confluentinc/ksql/issues/4239). As a workaround, you may cast a NULL key to the desired type.");
        };
        let (vt, values) = self.coerce_list(values)?;
        let Some(vt) = vt else {
            return err("Cannot construct a map with all NULL values (see https://github.com/confluentinc/ksql/issues/4239). As a workaround, you may cast a NULL value to the desired type.");
        };
        let keys = keys
            .into_iter()
            .map(|k| self.coerce(k, &kt).map(|t| t.expr))
            .collect::<Result<Vec<_>, _>>()?;
        let values = values
            .into_iter()
            .map(|v| self.coerce(v, &vt).map(|t| t.expr))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Typed::new(
            datafusion::functions_nested::map::map(keys, values),
            Type::Map(Box::new(kt), Box::new(vt)),
        ))
    }

    /// ksqlDB's coercion of a user-written list (IN lists, ARRAY and MAP constructors):
    /// the items' common type, found in order from the first typed item, and the items
    /// converted to it. Literals are converted as values (a string literal may stand for
    /// a number or boolean, any scalar literal for a string); other expressions are cast.
    fn coerce_list(
        &self,
        items: Vec<(&SqlExpr, Typed)>,
    ) -> Result<(Option<Type>, Vec<Typed>), PlanError> {
        let mut common: Option<Type> = None;
        let mut memo = TypeMemo::new();
        for (sql, t) in &items {
            common = self
                .item_type(sql, t.ty.as_ref(), common, &mut memo)
                .map_err(ListError::into_plan)?;
        }
        let Some(target) = common else {
            return Ok((None, items.into_iter().map(|(_, t)| t).collect()));
        };
        let mut out = Vec::with_capacity(items.len());
        for (sql, t) in items {
            out.push(self.convert_item(sql, t, &target)?);
        }
        Ok((Some(target), out))
    }

    /// The common type once `sql` (of type `ty`) joins a list whose type so far is `common`.
    fn item_type(
        &self,
        sql: &SqlExpr,
        ty: Option<&Type>,
        common: Option<Type>,
        memo: &mut TypeMemo,
    ) -> Result<Option<Type>, ListError> {
        let Some(target) = common else {
            return Ok(ty.cloned());
        };
        let Some(source) = ty else {
            return Ok(Some(target));
        };
        // A nested mismatch is reported as one of the enclosing constructor.
        let mismatch = || ListError::Mismatch(mismatch_message(&target, source, sql));
        let rewrap = |e: ListError| match e {
            ListError::Mismatch(_) => mismatch(),
            other => other,
        };
        match constructor(sql) {
            Some(Constructor::Array(elems)) => {
                let Type::Array(item) = &target else {
                    return Err(mismatch());
                };
                let item = self
                    .structured_type((**item).clone(), &elems, memo)
                    .map_err(rewrap)?;
                return Ok(Some(Type::Array(Box::new(item))));
            }
            Some(Constructor::Map(entries)) => {
                let Type::Map(k, v) = &target else {
                    return Err(mismatch());
                };
                let keys: Vec<&SqlExpr> = entries.iter().map(|(k, _)| *k).collect();
                let values: Vec<&SqlExpr> = entries.iter().map(|(_, v)| *v).collect();
                let k = self
                    .structured_type((**k).clone(), &keys, memo)
                    .map_err(rewrap)?;
                let v = self
                    .structured_type((**v).clone(), &values, memo)
                    .map_err(rewrap)?;
                return Ok(Some(Type::Map(Box::new(k), Box::new(v))));
            }
            Some(Constructor::Struct(fields)) => {
                let Type::Struct(target_fields) = &target else {
                    return Err(mismatch());
                };
                return self
                    .struct_type(&fields, target_fields, memo)
                    .map(|t| Some(Type::Struct(t)))
                    .map_err(rewrap);
            }
            None => {}
        }
        if let Some(text) = string_literal(sql) {
            if is_numeric(&target) {
                let Some(from_text) = string_number_type(text) else {
                    return Err(ListError::Other(invalid_syntax(text, &target)));
                };
                return Ok(common_type(&from_text, &target));
            }
            if target == Type::Boolean {
                if parse_boolean(text).is_none() {
                    return Err(ListError::Other(invalid_syntax(text, &target)));
                }
                return Ok(Some(target));
            }
        }
        let lax = is_literal(sql);
        if let Some(t) = coercible(source, &target, lax) {
            return Ok(Some(t));
        }
        if let Some(t) = coercible(&target, source, lax) {
            return Ok(Some(t));
        }
        Err(mismatch())
    }

    /// The common type of a constructor's elements, starting from the type they must meet.
    fn structured_type(
        &self,
        target: Type,
        elems: &[&SqlExpr],
        memo: &mut TypeMemo,
    ) -> Result<Type, ListError> {
        let mut common = Some(target.clone());
        for e in elems {
            let t = self.element_type(e, memo)?;
            common = self.item_type(e, t.as_ref(), common, memo)?;
        }
        Ok(common.unwrap_or(target))
    }

    /// The type of a constructor's element, compiled once for one list however deep it
    /// sits: each enclosing constructor asks again, and compiling it each time would
    /// double the work with every level.
    fn element_type(&self, e: &SqlExpr, memo: &mut TypeMemo) -> Result<Option<Type>, ListError> {
        let key = e as *const SqlExpr as usize;
        if let Some(t) = memo.get(&key) {
            return Ok(t.clone());
        }
        // A constructor's type is found from its elements' (themselves remembered), as
        // compiling it would; anything else, or a constructor that would not compile
        // (for its message), is compiled.
        let found = match constructor(e) {
            Some(Constructor::Array(elems)) => self
                .list_type(&elems, memo)?
                .map(|t| Type::Array(Box::new(t))),
            Some(Constructor::Map(entries)) => {
                let keys: Vec<&SqlExpr> = entries.iter().map(|(k, _)| *k).collect();
                let values: Vec<&SqlExpr> = entries.iter().map(|(_, v)| *v).collect();
                match (self.list_type(&keys, memo)?, self.list_type(&values, memo)?) {
                    (Some(k), Some(v)) => Some(Type::Map(Box::new(k), Box::new(v))),
                    _ => None,
                }
            }
            Some(Constructor::Struct(fields)) if !fields.is_empty() => {
                let mut out = Vec::with_capacity(fields.len());
                for (name, v) in fields {
                    let ty = self.element_type(v, memo)?.unwrap_or(Type::String);
                    out.push(StructField {
                        name: name.clone(),
                        ty,
                    });
                }
                Some(Type::Struct(out))
            }
            _ => None,
        };
        let t = match found {
            Some(t) => Some(t),
            None => self.compile(e).map_err(ListError::Other)?.ty,
        };
        memo.insert(key, t.clone());
        Ok(t)
    }

    /// A STRUCT constructor joining a list of structs: the union of the fields, in the
    /// constructor's order and then the list's, each field's type found as for a list.
    fn struct_type(
        &self,
        fields: &[(&sql::Ident, &SqlExpr)],
        target: &[StructField],
        memo: &mut TypeMemo,
    ) -> Result<Vec<StructField>, ListError> {
        let mut names: Vec<&sql::Ident> = Vec::new();
        for n in fields
            .iter()
            .map(|(n, _)| *n)
            .chain(target.iter().map(|f| &f.name))
        {
            if !names.iter().any(|m| m.value == n.value) {
                names.push(n);
            }
        }
        let mut out = Vec::with_capacity(names.len());
        for name in names {
            let source = fields.iter().find(|(n, _)| n.value == name.value);
            let existing = target.iter().find(|f| f.name.value == name.value);
            let ty = match (source, existing) {
                (Some((_, e)), Some(f)) => {
                    let t = self.element_type(e, memo)?;
                    self.item_type(e, t.as_ref(), Some(f.ty.clone()), memo)?
                        .unwrap_or_else(|| f.ty.clone())
                }
                (Some((_, e)), None) => self.element_type(e, memo)?.unwrap_or(Type::String),
                (None, Some(f)) => f.ty.clone(),
                (None, None) => continue,
            };
            out.push(StructField {
                name: name.clone(),
                ty,
            });
        }
        Ok(out)
    }

    /// The common type of a constructor's elements, as [`Scope::coerce_list`] finds it.
    fn list_type(
        &self,
        elems: &[&SqlExpr],
        memo: &mut TypeMemo,
    ) -> Result<Option<Type>, ListError> {
        let mut common = None;
        for x in elems {
            let t = self.element_type(x, memo)?;
            common = self.item_type(x, t.as_ref(), common, memo)?;
        }
        Ok(common)
    }

    /// Brings one list item to the list's common type.
    fn convert_item(&self, sql: &SqlExpr, t: Typed, target: &Type) -> Result<Typed, PlanError> {
        if t.ty.as_ref() == Some(target) {
            return Ok(t);
        }
        if t.ty.is_some() && is_literal(sql) {
            if let Some(text) = string_literal(sql) {
                if *target == Type::Boolean {
                    let b = parse_boolean(text).ok_or_else(|| invalid_syntax(text, target))?;
                    return Ok(Typed::new(lit(b), Type::Boolean));
                }
                if is_numeric(target) {
                    let v = number_from_text(text, target)
                        .ok_or_else(|| invalid_syntax(text, target))?;
                    return Ok(Typed::new(lit(v), target.clone()));
                }
            }
            if *target == Type::String {
                if let Expr::Literal(v, _) = &t.expr {
                    let text = crate::functions::collections::kernels::java_string(v);
                    return Ok(Typed::new(lit(text), Type::String));
                }
            }
        }
        self.coerce(t, target)
    }

    pub fn coerce_pub(&self, t: Typed, target: &Type) -> Result<Typed, PlanError> {
        self.coerce(t, target)
    }
}

/// `name := value` in STRUCT(…) and MAP(…), however sqlparser shaped it.
fn assignment(a: &FunctionArg) -> Option<(&SqlExpr, &SqlExpr)> {
    match a {
        FunctionArg::ExprNamed {
            name,
            arg: FunctionArgExpr::Expr(v),
            ..
        } => Some((name, v)),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(SqlExpr::BinaryOp {
            left,
            op: BinaryOperator::Assignment,
            right,
        })) => Some((left, right)),
        _ => None,
    }
}

fn string_literal(e: &SqlExpr) -> Option<&str> {
    match e {
        SqlExpr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s.as_str()),
            _ => None,
        },
        _ => None,
    }
}

/// Types of constructor elements met while one list's common type is found, by the
/// element's address in the statement's tree (which does not move while it is planned).
type TypeMemo = std::collections::HashMap<usize, Option<Type>>;

/// Why a list has no common type: a plain type mismatch (reported as the enclosing
/// constructor's when nested) or anything else, reported as is.
enum ListError {
    Mismatch(String),
    Other(PlanError),
}

impl ListError {
    fn into_plan(self) -> PlanError {
        match self {
            ListError::Mismatch(m) => PlanError::Invalid(m),
            ListError::Other(e) => e,
        }
    }
}

fn mismatch_message(target: &Type, source: &Type, sql: &SqlExpr) -> String {
    format!(
        "operator does not exist: {} = {} ({})\nHint: You might need to add explicit type casts.",
        crate::schema::SchemaType(target),
        crate::schema::SchemaType(source),
        ksql_text(sql)
    )
}

fn invalid_syntax(text: &str, target: &Type) -> PlanError {
    PlanError::Invalid(format!(
        "invalid input syntax for type {}: \"{text}\".",
        base_type_name(target)
    ))
}

/// A constructor whose elements take part in finding a list's common type.
enum Constructor<'a> {
    Array(Vec<&'a SqlExpr>),
    Map(Vec<(&'a SqlExpr, &'a SqlExpr)>),
    Struct(Vec<(&'a sql::Ident, &'a SqlExpr)>),
}

fn constructor(e: &SqlExpr) -> Option<Constructor<'_>> {
    match e {
        SqlExpr::Array(arr) => Some(Constructor::Array(arr.elem.iter().collect())),
        SqlExpr::Function(f) => {
            let FunctionArguments::List(l) = &f.args else {
                return None;
            };
            match f.name.to_string().to_uppercase().as_str() {
                "MAP" => l
                    .args
                    .iter()
                    .map(assignment)
                    .collect::<Option<Vec<_>>>()
                    .map(Constructor::Map),
                "STRUCT" => l
                    .args
                    .iter()
                    .map(|a| match assignment(a) {
                        Some((SqlExpr::Identifier(id), v)) => Some((id, v)),
                        _ => None,
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(Constructor::Struct),
                _ => None,
            }
        }
        _ => None,
    }
}

/// An expression as ksqlDB prints it in messages (`MAP('a':=1)`, `ARRAY[1, null]`,
/// `(A + 1)`).
pub fn ksql_text(e: &SqlExpr) -> String {
    let join = |items: Vec<String>| items.join(", ");
    match (e, constructor(e)) {
        (_, Some(Constructor::Array(elems))) => {
            format!(
                "ARRAY[{}]",
                join(elems.into_iter().map(ksql_text).collect())
            )
        }
        (_, Some(Constructor::Map(entries))) => format!(
            "MAP({})",
            join(
                entries
                    .into_iter()
                    .map(|(k, v)| format!("{}:={}", ksql_text(k), ksql_text(v)))
                    .collect()
            )
        ),
        (_, Some(Constructor::Struct(fields))) => format!(
            "STRUCT({})",
            join(
                fields
                    .into_iter()
                    .map(|(k, v)| format!("{}:={}", k.value, ksql_text(v)))
                    .collect()
            )
        ),
        (SqlExpr::Value(v), None) if v.value == Value::Null => "null".into(),
        (SqlExpr::Value(v), None) => match &v.value {
            Value::Boolean(b) => b.to_string(),
            _ => e.to_string(),
        },
        (SqlExpr::Nested(inner), None) => ksql_text(inner),
        (SqlExpr::BinaryOp { left, op, right }, None) if *op != BinaryOperator::Assignment => {
            format!("({} {op} {})", ksql_text(left), ksql_text(right))
        }
        (
            SqlExpr::UnaryOp {
                op: UnaryOperator::Not,
                expr,
            },
            None,
        ) => format!("(NOT {})", ksql_text(expr)),
        (SqlExpr::IsNull(x), None) => format!("({} IS NULL)", ksql_text(x)),
        (SqlExpr::IsNotNull(x), None) => format!("({} IS NOT NULL)", ksql_text(x)),
        (SqlExpr::Function(f), None) => match &f.args {
            FunctionArguments::List(l) => format!(
                "{}({})",
                f.name.to_string().to_uppercase(),
                join(
                    l.args
                        .iter()
                        .map(|a| match a {
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(x)) => ksql_text(x),
                            other => other.to_string(),
                        })
                        .collect()
                )
            ),
            FunctionArguments::None => format!("{}()", f.name.to_string().to_uppercase()),
            FunctionArguments::Subquery(_) => e.to_string(),
        },
        _ => e.to_string(),
    }
}

/// ROWTIME, WINDOWSTART and WINDOWEND compared with a string literal: ksqlDB reads the
/// string as a (possibly partial) timestamp, so the comparison is of epoch milliseconds.
fn pseudo_time(
    col: &SqlExpr,
    col_t: &Typed,
    other: &SqlExpr,
    t: Typed,
) -> Result<Typed, PlanError> {
    let name = match col {
        SqlExpr::Identifier(id) => &id.value,
        SqlExpr::CompoundIdentifier(parts) => match parts.last() {
            Some(id) => &id.value,
            None => return Ok(t),
        },
        _ => return Ok(t),
    };
    if !matches!(name.as_str(), "ROWTIME" | "WINDOWSTART" | "WINDOWEND")
        || col_t.ty != Some(Type::Bigint)
    {
        return Ok(t);
    }
    let Some(text) = string_literal(other) else {
        return Ok(t);
    };
    match crate::functions::datetime::partial_timestamp_millis(text) {
        Some(ms) => Ok(Typed::new(lit(ms), Type::Bigint)),
        None => err(format!(
            "Failed to parse timestamp '{text}': expected yyyy-MM-dd'T'HH:mm:ss.SSS, optionally followed by a zone"
        )),
    }
}

/// Literals are coerced leniently (ksqlDB's LAX coercer); other expressions strictly.
fn is_literal(e: &SqlExpr) -> bool {
    match e {
        SqlExpr::Value(_) => true,
        SqlExpr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => matches!(expr.as_ref(), SqlExpr::Value(_)),
        SqlExpr::Nested(inner) => is_literal(inner),
        _ => false,
    }
}

/// The type `from` becomes when converted to `to`, if it can be implicitly: numbers
/// widen, nested types convert element by element, a struct may gain fields; leniently,
/// any scalar also becomes a STRING and a STRING a date or time.
fn coercible(from: &Type, to: &Type, lax: bool) -> Option<Type> {
    if from == to {
        return Some(to.clone());
    }
    if is_numeric(from) && is_numeric(to) {
        return common_type(from, to);
    }
    match (from, to) {
        (Type::Array(a), Type::Array(b)) => coercible(a, b, lax).map(|t| Type::Array(Box::new(t))),
        (Type::Map(k1, v1), Type::Map(k2, v2)) => Some(Type::Map(
            Box::new(coercible(k1, k2, lax)?),
            Box::new(coercible(v1, v2, lax)?),
        )),
        (Type::Struct(fa), Type::Struct(fb)) => {
            if !fa
                .iter()
                .all(|f| fb.iter().any(|g| g.name.value == f.name.value))
            {
                return None;
            }
            let fields = fb
                .iter()
                .map(|g| match fa.iter().find(|f| f.name.value == g.name.value) {
                    Some(f) => coercible(&f.ty, &g.ty, lax).map(|ty| StructField {
                        name: g.name.clone(),
                        ty,
                    }),
                    None => Some(g.clone()),
                })
                .collect::<Option<Vec<_>>>()?;
            Some(Type::Struct(fields))
        }
        (Type::Array(_) | Type::Map(..) | Type::Struct(_) | Type::Bytes, Type::String) => None,
        (_, Type::String) if lax => Some(Type::String),
        (Type::String, Type::Timestamp | Type::Date | Type::Time) if lax => Some(to.clone()),
        _ => None,
    }
}

/// ksqlDB's reading of a boolean string: any non-empty prefix of `true`/`yes` or
/// `false`/`no`, case-insensitively.
fn parse_boolean(text: &str) -> Option<bool> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return None;
    }
    if "true".starts_with(&t) || "yes".starts_with(&t) {
        Some(true)
    } else if "false".starts_with(&t) || "no".starts_with(&t) {
        Some(false)
    } else {
        None
    }
}

/// A decimal number's text as an unscaled value and scale (Java's `BigDecimal`).
fn parse_decimal_text(text: &str) -> Option<(i128, i32)> {
    let (mantissa, exp) = match text.find(['e', 'E']) {
        Some(i) => (&text[..i], text[i + 1..].parse::<i32>().ok()?),
        None => (text, 0),
    };
    let (neg, digits) = match mantissa.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, mantissa.strip_prefix('+').unwrap_or(mantissa)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole
        .chars()
        .chain(frac.chars())
        .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let all = format!("{whole}{frac}");
    let unscaled: i128 = all
        .trim_start_matches('0')
        .parse()
        .or_else(|e| {
            if all.trim_start_matches('0').is_empty() {
                Ok(0)
            } else {
                Err(e)
            }
        })
        .ok()?;
    let scale = i32::try_from(frac.len()).ok()?.checked_sub(exp)?;
    Some((if neg { -unscaled } else { unscaled }, scale))
}

/// The type a numeric string literal reads as: INTEGER or BIGINT when it is a whole
/// number written without a point or exponent, otherwise the DECIMAL that holds it.
fn string_number_type(text: &str) -> Option<Type> {
    let (unscaled, scale) = parse_decimal_text(text.trim())?;
    if !text.contains(['.', 'e', 'E']) {
        if unscaled > i32::MIN as i128 && unscaled < i32::MAX as i128 {
            return Some(Type::Int);
        }
        if unscaled > i64::MIN as i128 && unscaled < i64::MAX as i128 {
            return Some(Type::Bigint);
        }
    }
    let (unscaled, scale) = if scale < 0 {
        (
            unscaled.checked_mul(10i128.checked_pow(scale.unsigned_abs())?)?,
            0u32,
        )
    } else {
        (unscaled, scale as u32)
    };
    let digits = unscaled.unsigned_abs().to_string().len() as u32;
    let precision = if digits <= scale { scale + 1 } else { digits };
    (precision <= 38).then_some(Type::Decimal { precision, scale })
}

/// A numeric string literal as a value of numeric type `ty`.
fn number_from_text(text: &str, ty: &Type) -> Option<ScalarValue> {
    let t = text.trim();
    if *ty == Type::Double {
        return t.parse::<f64>().ok().map(|v| ScalarValue::Float64(Some(v)));
    }
    let (unscaled, scale) = parse_decimal_text(t)?;
    let rescale = |to: i32| -> Option<i128> {
        if scale <= to {
            unscaled.checked_mul(10i128.checked_pow((to - scale) as u32)?)
        } else {
            let d = 10i128.checked_pow((scale - to) as u32)?;
            let q = unscaled / d;
            let r = unscaled % d;
            // BigDecimal's HALF_UP.
            Some(if r.abs() * 2 >= d {
                q + unscaled.signum()
            } else {
                q
            })
        }
    };
    match ty {
        Type::Int => i32::try_from(rescale(0)?)
            .ok()
            .map(|v| ScalarValue::Int32(Some(v))),
        Type::Bigint => i64::try_from(rescale(0)?)
            .ok()
            .map(|v| ScalarValue::Int64(Some(v))),
        Type::Decimal {
            precision,
            scale: s,
        } => {
            let v = rescale(*s as i32)?;
            (v.unsigned_abs() < 10u128.checked_pow(*precision)?).then_some(ScalarValue::Decimal128(
                Some(v),
                *precision as u8,
                *s as i8,
            ))
        }
        _ => None,
    }
}

/// ksqlDB's `SqlBaseType`: the type without its parameters.
fn base_type_name(t: &Type) -> String {
    match t {
        Type::Decimal { .. } => "DECIMAL".into(),
        Type::Array(_) => "ARRAY".into(),
        Type::Map(..) => "MAP".into(),
        Type::Struct(_) => "STRUCT".into(),
        other => crate::schema::SchemaType(other).to_string(),
    }
}

fn prefix_err(p: &str, e: PlanError) -> PlanError {
    match e {
        PlanError::Invalid(m) => PlanError::Invalid(format!("{p}{m}")),
        other => other,
    }
}

fn merge_result_type(cur: Option<Type>, t: &Typed) -> Result<Option<Type>, PlanError> {
    Ok(match (cur, &t.ty) {
        (None, x) => x.clone(),
        (Some(a), None) => Some(a),
        (Some(a), Some(b)) => {
            if a == *b {
                Some(a)
            } else if let Some(c) = common_type(&a, b).filter(|_| is_numeric(&a) && is_numeric(b)) {
                Some(c)
            } else {
                return err(format!(
                    "Invalid Case expression. Type for all 'THEN' clauses should be the same.\nTHEN expression '{}' has type: {b}.",
                    t.expr
                ));
            }
        }
    })
}

/// The type two operands of `e` are compared in, or ksqlDB's message when there is none.
fn compared_type(e: &SqlExpr, x: &Type, y: &Type) -> Result<Type, PlanError> {
    common_type(x, y).ok_or_else(|| {
        PlanError::Invalid(format!(
            "Cannot compare {} ({x}) to {} ({y}) with {}.",
            side(e, true),
            side(e, false),
            op_name(e)
        ))
    })
}

fn side(e: &SqlExpr, left: bool) -> String {
    match e {
        SqlExpr::BinaryOp {
            left: l, right: r, ..
        } => {
            if left {
                l.to_string()
            } else {
                r.to_string()
            }
        }
        _ => e.to_string(),
    }
}

fn op_name(e: &SqlExpr) -> &'static str {
    match e {
        SqlExpr::BinaryOp { op, .. } => match op {
            BinaryOperator::Eq => "EQUAL",
            BinaryOperator::NotEq => "NOT_EQUAL",
            BinaryOperator::Lt => "LESS_THAN",
            BinaryOperator::LtEq => "LESS_THAN_OR_EQUAL",
            BinaryOperator::Gt => "GREATER_THAN",
            BinaryOperator::GtEq => "GREATER_THAN_OR_EQUAL",
            _ => "an operator",
        },
        SqlExpr::IsDistinctFrom(..) => "IS_DISTINCT_FROM",
        SqlExpr::IsNotDistinctFrom(..) => "IS_NOT_DISTINCT_FROM",
        SqlExpr::Between { .. } => "BETWEEN",
        _ => "an operator",
    }
}

/// `t` with its `CREATE TYPE` names replaced, within the type limits.
pub(crate) fn resolve(types: &dyn TypeRegistry, t: &Type) -> Result<Type, PlanError> {
    crate::types::resolve_bounded(t, types)
}

pub fn is_numeric(t: &Type) -> bool {
    matches!(
        t,
        Type::Int | Type::Bigint | Type::Double | Type::Decimal { .. }
    )
}

fn decimal_of(t: &Type) -> Type {
    match t {
        Type::Int => Type::Decimal {
            precision: 10,
            scale: 0,
        },
        Type::Bigint => Type::Decimal {
            precision: 19,
            scale: 0,
        },
        other => other.clone(),
    }
}

/// The type two values are compared or combined in, if they can be.
pub fn common_type(a: &Type, b: &Type) -> Option<Type> {
    if a == b {
        return Some(a.clone());
    }
    if is_numeric(a) && is_numeric(b) {
        return Some(match (a, b) {
            (Type::Double, _) | (_, Type::Double) => Type::Double,
            (Type::Decimal { .. }, _) | (_, Type::Decimal { .. }) => {
                let (
                    Type::Decimal {
                        precision: p1,
                        scale: s1,
                    },
                    Type::Decimal {
                        precision: p2,
                        scale: s2,
                    },
                ) = (decimal_of(a), decimal_of(b))
                else {
                    return None;
                };
                let scale = s1.max(s2);
                let whole = (p1 - s1).max(p2 - s2);
                Type::Decimal {
                    precision: (whole + scale).min(38),
                    scale,
                }
            }
            (Type::Bigint, _) | (_, Type::Bigint) => Type::Bigint,
            _ => Type::Int,
        });
    }
    match (a, b) {
        (Type::Timestamp, Type::String) | (Type::String, Type::Timestamp) => Some(Type::Timestamp),
        (Type::Date, Type::String) | (Type::String, Type::Date) => Some(Type::Date),
        (Type::Time, Type::String) | (Type::String, Type::Time) => Some(Type::Time),
        // A DATE compares with a TIMESTAMP as its midnight.
        (Type::Date, Type::Timestamp) | (Type::Timestamp, Type::Date) => Some(Type::Timestamp),
        (Type::Array(x), Type::Array(y)) => common_type(x, y).map(|t| Type::Array(Box::new(t))),
        _ => None,
    }
}

/// ksqlDB's result type of arithmetic.
fn arithmetic_type(op: &BinaryOperator, a: &Type, b: &Type) -> Type {
    match (a, b) {
        (Type::Double, _) | (_, Type::Double) => Type::Double,
        (Type::Decimal { .. }, _) | (_, Type::Decimal { .. }) => {
            let (
                Type::Decimal {
                    precision: p1,
                    scale: s1,
                },
                Type::Decimal {
                    precision: p2,
                    scale: s2,
                },
            ) = (decimal_of(a), decimal_of(b))
            else {
                return Type::Double;
            };
            let (p, s) = match op {
                BinaryOperator::Plus | BinaryOperator::Minus => {
                    let s = s1.max(s2);
                    ((p1 - s1).max(p2 - s2) + s + 1, s)
                }
                BinaryOperator::Multiply => (p1 + p2 + 1, s1 + s2),
                BinaryOperator::Divide => {
                    let s = 6.max(s1 + p2 + 1);
                    (p1 - s1 + s2 + s, s)
                }
                _ => {
                    let s = s1.max(s2);
                    ((p1 - s1).min(p2 - s2) + s, s)
                }
            };
            let p = p.min(38);
            Type::Decimal {
                precision: p.max(1),
                scale: s.min(p),
            }
        }
        (Type::Bigint, _) | (_, Type::Bigint) => Type::Bigint,
        _ => Type::Int,
    }
}

fn castable(from: &Type, to: &Type) -> bool {
    use Type::*;
    match (from, to) {
        (a, b) if a == b => true,
        (String, Array(_) | Map(..) | Struct(_)) => false,
        (String, _) | (_, String) => !matches!(to, Bytes) && !matches!(from, Bytes),
        (a, b) if is_numeric(a) && is_numeric(b) => true,
        (Boolean, Int | Bigint) => false,
        (Timestamp, Date | Time) | (Date, Timestamp) => true,
        (Array(x), Array(y)) => castable(x, y),
        (Map(k1, v1), Map(k2, v2)) => castable(k1, k2) && castable(v1, v2),
        (Struct(_), Struct(_)) => true,
        _ => false,
    }
}

fn literal(v: &Value) -> Result<Typed, PlanError> {
    Ok(match v {
        Value::Number(n, _) => number_literal(n)?,
        Value::SingleQuotedString(s) => Typed::new(lit(s.clone()), Type::String),
        Value::Boolean(b) => Typed::new(lit(*b), Type::Boolean),
        Value::Null => Typed {
            expr: lit(ScalarValue::Null),
            ty: None,
        },
        other => return err(format!("Unsupported literal {other}")),
    })
}

/// A numeric literal (with its sign) as ksqlDB types it: INTEGER, else BIGINT for a whole
/// number, DECIMAL with a point, DOUBLE with an exponent; a whole number beyond BIGINT
/// or a DOUBLE beyond its range is an error.
fn number_literal(n: &str) -> Result<Typed, PlanError> {
    if n.contains(['e', 'E']) {
        let v: f64 = n
            .parse()
            .map_err(|_| PlanError::Invalid(format!("Invalid number {n}")))?;
        if v.is_infinite() {
            return err(format!("Number overflows DOUBLE: {n}"));
        }
        return Ok(Typed::new(lit(v), Type::Double));
    }
    if let Some((whole, frac)) = n.split_once('.') {
        let unsigned = whole.trim_start_matches(['-', '+']);
        let digits = format!("{unsigned}{frac}");
        let trimmed = digits.trim_start_matches('0');
        let scale = frac.len() as u32;
        let precision = (trimmed.len() as u32).max(scale).max(1);
        if precision > 38 {
            let v: f64 = n.parse().unwrap_or(f64::NAN);
            return Ok(Typed::new(lit(v), Type::Double));
        }
        let unscaled: i128 = if trimmed.is_empty() {
            0
        } else {
            trimmed
                .parse()
                .map_err(|_| PlanError::Invalid(format!("Invalid number {n}")))?
        };
        let unscaled = if whole.starts_with('-') {
            -unscaled
        } else {
            unscaled
        };
        return Ok(Typed::new(
            lit(ScalarValue::Decimal128(
                Some(unscaled),
                precision as u8,
                scale as i8,
            )),
            Type::Decimal { precision, scale },
        ));
    }
    if let Ok(i) = n.parse::<i32>() {
        return Ok(Typed::new(lit(i), Type::Int));
    }
    if let Ok(i) = n.parse::<i64>() {
        return Ok(Typed::new(lit(i), Type::Bigint));
    }
    err(format!("Invalid numeric literal: {n}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::NoTypes;
    use arrow::array::{ArrayRef, Int32Array, Int64Array, ListArray, RecordBatch, StructArray};
    use arrow::datatypes::{Field, Int64Type, Schema};
    use arrow::util::display::{ArrayFormatter, FormatOptions};

    fn columns() -> Vec<(&'static str, Type, ArrayRef)> {
        let st = brook_sql::parse_type("STRUCT<F0 BIGINT, `f1` INT>").expect("type");
        let DataType::Struct(fields) = arrow_type(&st, &NoTypes).expect("arrow") else {
            panic!("not a struct")
        };
        vec![
            (
                "A",
                Type::Int,
                Arc::new(Int32Array::from(vec![Some(1), Some(-2147483648), None])),
            ),
            (
                "B",
                Type::Bigint,
                Arc::new(Int64Array::from(vec![Some(2147483648), Some(20), None])),
            ),
            (
                "ARR",
                Type::Array(Box::new(Type::Bigint)),
                Arc::new(ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
                    Some(vec![Some(10), Some(2147483648)]),
                    Some(vec![Some(3), None]),
                    None,
                ])),
            ),
            (
                "ST",
                st,
                Arc::new(StructArray::new(
                    fields,
                    vec![
                        Arc::new(Int64Array::from(vec![Some(1), None, Some(3)])),
                        Arc::new(Int32Array::from(vec![Some(2), Some(5), None])),
                    ],
                    None,
                )),
            ),
        ]
    }

    fn scope_of(cols: &[(&'static str, Type, ArrayRef)]) -> Scope<'static> {
        Scope {
            columns: cols
                .iter()
                .map(|(n, t, _)| ScopeColumn {
                    name: n.to_string(),
                    qualifiers: vec![],
                    ty: t.clone(),
                    field: n.to_string(),
                })
                .collect(),
            types: &NoTypes,
        }
    }

    fn compile(sql: &str) -> Result<Typed, String> {
        let cols = columns();
        let e = brook_sql::parse_expr(sql).map_err(|e| e.to_string())?;
        scope_of(&cols).compile(&e).map_err(|e| e.to_string())
    }

    /// Each row's value as text, and the ksqlDB type.
    fn eval(sql: &str) -> (Vec<String>, Type) {
        let cols = columns();
        let schema = Arc::new(Schema::new(
            cols.iter()
                .map(|(n, t, _)| Field::new(*n, arrow_type(t, &NoTypes).expect("type"), true))
                .collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(schema.clone(), cols.iter().map(|c| c.2.clone()).collect())
                .expect("batch");
        let t = compile(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let out = physical(&t.expr, &schema)
            .and_then(|p| {
                p.evaluate(&batch)
                    .and_then(|v| v.into_array(batch.num_rows()))
                    .map_err(|e| PlanError::DataFusion(e.to_string()))
            })
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let options = FormatOptions::default().with_null("NULL");
        let f = ArrayFormatter::try_new(out.as_ref(), &options).expect("formatter");
        let rows = (0..out.len()).map(|i| f.value(i).to_string()).collect();
        (rows, t.ty.expect("typed"))
    }

    #[test]
    fn boolean_strings_are_prefixes_of_true_yes_false_no() {
        for (text, want) in [
            ("TrUe", Some(true)),
            ("tr", Some(true)),
            ("Y", Some(true)),
            (" no ", Some(false)),
            ("fa", Some(false)),
            ("", None),
            ("Not a boolean", None),
        ] {
            assert_eq!(parse_boolean(text), want, "{text:?}");
        }
    }

    #[test]
    fn numeric_strings_read_as_the_narrowest_type() {
        assert_eq!(string_number_type("10"), Some(Type::Int));
        assert_eq!(string_number_type("2147483648"), Some(Type::Bigint));
        assert_eq!(
            string_number_type("4.000"),
            Some(Type::Decimal {
                precision: 4,
                scale: 3
            })
        );
        assert_eq!(
            string_number_type("2e1"),
            Some(Type::Decimal {
                precision: 2,
                scale: 0
            })
        );
        assert_eq!(string_number_type("not 10"), None);
        let dec = Type::Decimal {
            precision: 19,
            scale: 0,
        };
        assert_eq!(
            number_from_text("2e1", &dec),
            Some(ScalarValue::Decimal128(Some(20), 19, 0))
        );
        assert_eq!(
            number_from_text("2147483648", &Type::Bigint),
            Some(ScalarValue::Int64(Some(2147483648)))
        );
    }

    #[test]
    fn in_list_items_take_the_tested_expressions_type() {
        // The string literal is a BIGINT, so the INT column widens rather than failing.
        let (rows, _) = eval("A IN (1, '2147483648')");
        assert_eq!(rows, ["true", "false", "NULL"]);
        let (rows, _) = eval("B IN ('2147483648', 20.0)");
        assert_eq!(rows, ["true", "true", "NULL"]);
        // Constructors' elements are coerced one by one, string literals included.
        let (rows, _) = eval("ARR IN (ARRAY['3', NULL], ARRAY[10, 2147483648])");
        assert_eq!(rows, ["true", "true", "NULL"]);
        // A constructor may add fields; the tested struct gains them as NULL.
        let (rows, _) = eval("ST IN (STRUCT(F0 := 1, `f1` := 2, G := 'x'), STRUCT(`f1` := 5))");
        assert_eq!(rows, ["false", "true", "false"]);
    }

    #[test]
    fn in_list_mismatches_are_reported_as_ksqldb_does() {
        let e = compile("A IN (true)").expect_err("mismatch");
        assert!(
            e.contains("Invalid Predicate: operator does not exist: INTEGER = BOOLEAN (true)"),
            "{e}"
        );
        let e = compile("B IN (10, '10 - not a number')").expect_err("bad string");
        assert!(
            e.contains("invalid input syntax for type BIGINT: \"10 - not a number\"."),
            "{e}"
        );
        let e = compile("ARR IN (ARRAY['10', 'not 10'])").expect_err("bad element");
        assert!(
            e.contains("invalid input syntax for type BIGINT: \"not 10\""),
            "{e}"
        );
        let e = compile("ARR IN (MAP('a' := B))").expect_err("not an array");
        assert!(
            e.contains("ARRAY<BIGINT> = MAP<STRING, BIGINT> (MAP('a':=B))"),
            "{e}"
        );
    }

    #[test]
    fn constructors_find_a_common_type() {
        let (rows, ty) = eval("ARRAY[NULL, 10, '2e1', A, B]");
        assert_eq!(
            ty,
            Type::Array(Box::new(Type::Decimal {
                precision: 19,
                scale: 0
            }))
        );
        assert_eq!(rows[1], "[NULL, 10, 20, -2147483648, 20]");
        let (rows, ty) = eval("MAP('k' := true, 10 := 'no')");
        assert_eq!(
            ty,
            Type::Map(Box::new(Type::String), Box::new(Type::Boolean))
        );
        assert_eq!(rows[0], "{k: true, 10: false}");
    }

    #[test]
    fn casts_follow_ksqldb() {
        let (rows, _) = eval("CAST(ARR AS ARRAY<INT>)");
        assert_eq!(rows, ["[10, -2147483648]", "[3, NULL]", "NULL"]);
        let (rows, _) = eval("CAST(ST AS STRING)");
        assert_eq!(rows, ["Struct{F0=1,f1=2}", "Struct{f1=5}", "Struct{F0=3}"]);
        let (rows, _) = eval("CAST(A AS DECIMAL(2, 1))");
        assert_eq!(rows, ["1.0", "NULL", "NULL"]);
        let e = compile("CAST('x' AS MAP<STRING, INT>)").expect_err("unsupported");
        assert_eq!(e, "Cast of STRING to MAP<STRING, INTEGER> is not supported");
    }

    #[test]
    fn text_that_is_not_a_number_fails_the_cast() {
        let (rows, _) = eval("CAST(CAST(A AS STRING) AS INT)");
        assert_eq!(rows, ["1", "-2147483648", "NULL"]);
        // As ksqlDB's `Long.parseLong` throws: the runtime makes the rows that fail NULL,
        // each with a processing-log entry (runtime/src/eval.rs).
        let t = compile("CAST('foo' AS BIGINT)").expect("compiles");
        assert_eq!(t.ty, Some(Type::Bigint));
        let schema = Arc::new(Schema::empty());
        let batch = RecordBatch::new_empty(schema.clone());
        let e = physical(&t.expr, &schema)
            .and_then(|p| {
                p.evaluate(&batch)
                    .map_err(|e| PlanError::DataFusion(e.to_string()))
            })
            .map(|_| ())
            .expect_err("'foo' is no BIGINT");
        assert!(
            e.to_string()
                .contains("Failed to cast 'foo' to BIGINT: For input string: \"foo\""),
            "{e}"
        );
    }

    #[test]
    fn dates_compare_with_timestamps_and_structs_may_be_empty() {
        let t = compile("CAST(A AS DATE) < CAST(B AS TIMESTAMP)");
        assert!(t.is_err(), "an INT does not cast to DATE");
        let scope = Scope {
            columns: vec![
                ScopeColumn {
                    name: "D".into(),
                    qualifiers: vec![],
                    ty: Type::Date,
                    field: "D".into(),
                },
                ScopeColumn {
                    name: "TS".into(),
                    qualifiers: vec![],
                    ty: Type::Timestamp,
                    field: "TS".into(),
                },
            ],
            types: &NoTypes,
        };
        let e = brook_sql::parse_expr("D > TS").expect("parses");
        assert_eq!(scope.compile(&e).expect("compares").ty, Some(Type::Boolean));
        let (rows, ty) = eval("STRUCT()");
        assert_eq!(ty, Type::Struct(vec![]));
        assert_eq!(rows.len(), 3);
    }

    #[test]
    fn numeric_literals_carry_their_sign() {
        assert_eq!(compile("-2147483648").expect("int").ty, Some(Type::Int));
        assert_eq!(
            compile("-9223372036854775808").expect("bigint").ty,
            Some(Type::Bigint)
        );
        assert_eq!(
            compile("9223372036854775808").expect_err("overflow"),
            "Invalid numeric literal: 9223372036854775808"
        );
        assert_eq!(
            compile("-1.7976931348623160E308").expect_err("overflow"),
            "Number overflows DOUBLE: -1.7976931348623160E308"
        );
        assert_eq!(
            compile("TRUE + 1.5").expect_err("not arithmetic"),
            "Error processing expression: (true + 1.5). Unsupported arithmetic types. BOOLEAN DECIMAL"
        );
    }
}
