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
pub fn physical(expr: &Expr, schema: &SchemaRef) -> Result<Arc<dyn PhysicalExpr>, PlanError> {
    let dfschema = df(DFSchema::try_from(schema.as_ref().clone()))?;
    df(create_physical_expr(
        expr,
        &dfschema,
        &ExecutionProps::new(),
        &PhysicalPlanningContext::default(),
    ))
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

    /// Compiles an expression.
    pub fn compile(&self, e: &SqlExpr) -> Result<Typed, PlanError> {
        match e {
            SqlExpr::Identifier(id) => Ok(self.column_expr(self.resolve(None, &id.value)?)),
            SqlExpr::CompoundIdentifier(parts) => match parts.as_slice() {
                [q, c] => Ok(self.column_expr(self.resolve(Some(&q.value), &c.value)?)),
                _ => err(format!("Column '{e}' cannot be resolved.")),
            },
            SqlExpr::Value(v) => literal(&v.value),
            SqlExpr::Nested(inner) => self.compile(inner),
            SqlExpr::UnaryOp { op, expr } => {
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
                        // Literals fold, so `-2147483648` stays an INT.
                        if let (Expr::Literal(s, _), SqlExpr::Value(_)) = (&t.expr, expr.as_ref()) {
                            if let Some(n) = negate_literal(s) {
                                return Ok(Typed::new(lit(n.clone()), literal_type(&n, &ty)));
                            }
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
                let lo = self.compile(low)?;
                let hi = self.compile(high)?;
                let (x1, lo) = self.common(e, x.clone(), lo)?;
                let (x2, hi) = self.common(e, x, hi)?;
                let inside = binary_expr(
                    binary_expr(x1.expr, Operator::GtEq, lo.expr),
                    Operator::And,
                    binary_expr(x2.expr, Operator::LtEq, hi.expr),
                );
                Ok(Typed::new(
                    if *negated { not(inside) } else { inside },
                    Type::Boolean,
                ))
            }
            SqlExpr::InList {
                expr,
                list,
                negated,
            } => {
                let x = self.compile(expr)?;
                let compiled: Vec<Typed> = list
                    .iter()
                    .map(|i| self.compile(i))
                    .collect::<Result<_, _>>()?;
                let pairs: Vec<(&SqlExpr, &Typed)> = list.iter().zip(compiled.iter()).collect();
                let target = self
                    .unify(x.ty.clone(), &pairs, true)
                    .map_err(|e| prefix_err("Invalid Predicate: ", e))?
                    .unwrap_or(Type::String);
                let x = self.coerce(x, &target)?;
                let mut items = Vec::new();
                for c in compiled {
                    items.push(self.coerce(c, &target)?.expr);
                }
                Ok(Typed::new(in_list(x.expr, items, *negated), Type::Boolean))
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
                let mut cur = self.compile(root)?;
                for access in access_chain {
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
                let items: Vec<Typed> = arr
                    .elem
                    .iter()
                    .map(|i| self.compile(i))
                    .collect::<Result<_, _>>()?;
                let pairs: Vec<(&SqlExpr, &Typed)> = arr.elem.iter().zip(items.iter()).collect();
                let elem = self.unify(None, &pairs, false)?;
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
                let Some(t) = common_type(x, y) else {
                    return err(format!(
                        "Cannot compare {} ({x}) to {} ({y}) with {}.",
                        side(e, true),
                        side(e, false),
                        op_name(e)
                    ));
                };
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

    /// Casts when the types differ (only widening: callers choose the target).
    fn coerce(&self, t: Typed, target: &Type) -> Result<Typed, PlanError> {
        if t.ty.as_ref() == Some(target) {
            return Ok(t);
        }
        let dt = self.arrow(target)?;
        Ok(Typed::new(cast(t.expr, dt), target.clone()))
    }

    fn cast_to(&self, t: Typed, target: &Type) -> Result<Typed, PlanError> {
        if let Some(from) = &t.ty {
            if !castable(from, target) {
                return err(format!("Cast of {from} to {target} is not supported"));
            }
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
            // ksqlDB's comparisons are false, not NULL, when a side is NULL.
            let c = binary_expr(l.expr, op, r.expr);
            let c = df(when(is_null(c.clone()), lit(false)).otherwise(c))?;
            Ok(Typed::new(c, Type::Boolean))
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
        let lt = l.ty.clone().or(r.ty.clone()).unwrap_or(Type::Int);
        let rt = r.ty.clone().or(l.ty.clone()).unwrap_or(Type::Int);
        if *op == BinaryOperator::Plus && lt == Type::String && rt == Type::String {
            let expr = datafusion::functions::string::expr_fn::concat(vec![l.expr, r.expr]);
            return Ok(Typed::new(expr, Type::String));
        }
        if !is_numeric(&lt) || !is_numeric(&rt) {
            return err(format!(
                "Error processing expression: {e}. Unsupported arithmetic types. {lt} {rt}"
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
        let mut whens = Vec::new();
        let mut result_ty: Option<Type> = None;
        let mut results = Vec::new();
        for cw in conditions {
            let cond = match operand {
                Some(op) => {
                    let o = self.compile(op)?;
                    let c = self.compile(&cw.condition)?;
                    let (o, c) = self.common(&cw.condition, o, c)?;
                    binary_expr(o.expr, Operator::Eq, c.expr)
                }
                None => {
                    let c = self.compile(&cw.condition)?;
                    if !matches!(c.ty, None | Some(Type::Boolean)) {
                        return err(format!(
                            "WHEN operand type should be boolean. Type for '{}' is {}",
                            cw.condition,
                            c.ty.clone().unwrap_or(Type::String)
                        ));
                    }
                    c.expr
                }
            };
            let r = self.compile(&cw.result)?;
            result_ty = merge_result_type(result_ty, &r)?;
            whens.push(cond);
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
            builder = Some(match builder {
                None => when(c, r),
                Some(mut b) => b.when(c, r),
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
            return err("STRUCT() needs at least one field");
        }
        Ok(Typed::new(
            datafusion::functions::core::expr_fn::named_struct(parts),
            Type::Struct(fields),
        ))
    }

    fn map_ctor(&self, args: &[&FunctionArg]) -> Result<Typed, PlanError> {
        let mut keys = Vec::new();
        let mut values = Vec::new();
        let mut key_exprs = Vec::new();
        let mut value_exprs = Vec::new();
        for a in args {
            let Some((name, v)) = assignment(a) else {
                return err("MAP entries are written `key := value`");
            };
            keys.push(self.compile(name)?);
            values.push(self.compile(v)?);
            key_exprs.push(name);
            value_exprs.push(v);
        }
        let key_pairs: Vec<(&SqlExpr, &Typed)> =
            key_exprs.iter().copied().zip(keys.iter()).collect();
        let value_pairs: Vec<(&SqlExpr, &Typed)> =
            value_exprs.iter().copied().zip(values.iter()).collect();
        if keys.is_empty() {
            return err("Map constructor cannot be empty. Please supply at least one key value pair (see https://github.com/confluentinc/ksql/issues/4239).");
        }
        let Some(kt) = self.unify(None, &key_pairs, false)? else {
            return err("Cannot construct a map with all NULL keys (see https://github.com/confluentinc/ksql/issues/4239). As a workaround, you may cast a NULL key to the desired type.");
        };
        let Some(vt) = self.unify(None, &value_pairs, false)? else {
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

    /// The common type of a list of items (IN lists, ARRAY and MAP constructors): a string
    /// literal may stand for a number or boolean if it reads as one, as in ksqlDB.
    fn unify(
        &self,
        start: Option<Type>,
        items: &[(&SqlExpr, &Typed)],
        predicate: bool,
    ) -> Result<Option<Type>, PlanError> {
        let mut acc = start;
        for (sql, t) in items {
            let Some(b) = &t.ty else { continue };
            acc = match acc {
                None => Some(b.clone()),
                Some(a) => {
                    if let Some(c) = common_type(&a, b) {
                        Some(c)
                    } else if let (Some(text), true) = (string_literal(sql), *b == Type::String) {
                        if !literal_reads_as(text, &a) {
                            return err(format!(
                                "invalid input syntax for type {}: \"{text}\".",
                                base_type_name(&a)
                            ));
                        }
                        Some(a)
                    } else if predicate {
                        return err(format!(
                            "operator does not exist: {} = {} ({})\nHint: You might need to add explicit type casts.",
                            crate::schema::SchemaType(&a),
                            crate::schema::SchemaType(b),
                            sql
                        ));
                    } else {
                        return err(format!(
                            "invalid input syntax for type {}: \"{}\".",
                            base_type_name(&a),
                            string_literal(sql)
                                .map(str::to_string)
                                .unwrap_or_else(|| sql.to_string())
                        ));
                    }
                }
            };
        }
        Ok(acc)
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

fn literal_reads_as(text: &str, ty: &Type) -> bool {
    let t = text.trim();
    match ty {
        Type::Int => t.parse::<i32>().is_ok(),
        Type::Bigint => t.parse::<i64>().is_ok(),
        Type::Double | Type::Decimal { .. } => t.parse::<f64>().is_ok(),
        Type::Boolean => matches!(
            t.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "t" | "f" | "y" | "n"
        ),
        _ => false,
    }
}

fn base_type_name(t: &Type) -> String {
    match t {
        Type::Decimal { .. } => "DECIMAL".into(),
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

pub(crate) fn resolve(types: &dyn TypeRegistry, t: &Type) -> Result<Type, PlanError> {
    Ok(match t {
        Type::Custom(n) => {
            let r = types
                .resolve(&n.value)
                .ok_or_else(|| PlanError::UnknownType(n.value.clone()))?;
            resolve(types, &r)?
        }
        Type::Array(i) => Type::Array(Box::new(resolve(types, i)?)),
        Type::Map(k, v) => Type::Map(Box::new(resolve(types, k)?), Box::new(resolve(types, v)?)),
        Type::Struct(fs) => Type::Struct(
            fs.iter()
                .map(|f| {
                    Ok(StructField {
                        name: f.name.clone(),
                        ty: resolve(types, &f.ty)?,
                    })
                })
                .collect::<Result<_, PlanError>>()?,
        ),
        other => other.clone(),
    })
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

fn number_literal(n: &str) -> Result<Typed, PlanError> {
    if n.contains(['e', 'E']) {
        let v: f64 = n
            .parse()
            .map_err(|_| PlanError::Invalid(format!("Invalid number {n}")))?;
        return Ok(Typed::new(lit(v), Type::Double));
    }
    if let Some((whole, frac)) = n.split_once('.') {
        let digits = format!("{whole}{frac}");
        let trimmed = digits.trim_start_matches('0');
        let scale = frac.len() as u32;
        let precision = (trimmed.len() as u32).max(scale).max(1);
        let unscaled: i128 = if digits.is_empty() {
            0
        } else {
            digits
                .parse()
                .map_err(|_| PlanError::Invalid(format!("Invalid number {n}")))?
        };
        if precision > 38 {
            let v: f64 = n.parse().unwrap_or(f64::NAN);
            return Ok(Typed::new(lit(v), Type::Double));
        }
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
    // Beyond BIGINT: ksqlDB reads it as a DECIMAL.
    let precision = n.len() as u32;
    if precision <= 38 {
        if let Ok(v) = n.parse::<i128>() {
            return Ok(Typed::new(
                lit(ScalarValue::Decimal128(Some(v), precision as u8, 0)),
                Type::Decimal {
                    precision,
                    scale: 0,
                },
            ));
        }
    }
    err(format!("Invalid number {n}"))
}

fn negate_literal(s: &ScalarValue) -> Option<ScalarValue> {
    Some(match s {
        ScalarValue::Int32(Some(v)) => ScalarValue::Int32(Some(v.checked_neg()?)),
        ScalarValue::Int64(Some(v)) => {
            if *v == i32::MAX as i64 + 1 {
                ScalarValue::Int32(Some(i32::MIN))
            } else {
                ScalarValue::Int64(Some(v.checked_neg()?))
            }
        }
        ScalarValue::Float64(Some(v)) => ScalarValue::Float64(Some(-v)),
        ScalarValue::Decimal128(Some(v), p, s) => ScalarValue::Decimal128(Some(-v), *p, *s),
        _ => return None,
    })
}

fn literal_type(s: &ScalarValue, fallback: &Type) -> Type {
    match s {
        ScalarValue::Int32(_) => Type::Int,
        ScalarValue::Int64(_) => Type::Bigint,
        _ => fallback.clone(),
    }
}
