//! TRANSFORM, FILTER and REDUCE with ksqlDB lambdas.
//!
//! A lambda body is compiled against a scope in which its parameters are columns of a
//! small per-element batch (outer columns stay visible and are copied to each of their
//! row's elements), planned into a physical expression, and evaluated on the collection's
//! flattened elements. ksqlDB runs lambdas as Java code, where arithmetic on a NULL throws
//! and the whole call yields NULL for that record; a guard around each arithmetic operator
//! reproduces that, and a failing batch is re-evaluated row by row so only the offending
//! rows become NULL.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use arrow::array::{new_empty_array, new_null_array, Array, ArrayRef, AsArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::{RecordBatch, RecordBatchOptions};
use brook_sql::sqlparser::ast::{Expr as SqlExpr, FunctionArg, FunctionArgExpr};
use brook_sql::Type;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, ScalarValue};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;

use crate::expr::{is_numeric, physical, Scope, ScopeColumn, Typed};
use crate::limits::{too_large, MAX_BATCH_BYTES, MAX_VALUE_BYTES};
use crate::types::arrow_type;
use crate::PlanError;

use super::kernels::{build_list, build_map, list, list_from_parts, map, range};
use crate::functions::udf::{call_batch, exec_err};

/// Makes each lambda's parameter columns unique, also across nested lambdas.
static NEXT_LAMBDA: AtomicUsize = AtomicUsize::new(0);

fn invalid<T>(msg: impl Into<String>) -> Result<T, PlanError> {
    Err(PlanError::Invalid(msg.into()))
}

/// A compiled lambda, ready to run on batches of parameter values.
struct Lambda {
    schema: SchemaRef,
    phys: Arc<dyn PhysicalExpr>,
    /// For each column after the parameters, its position among the captured arguments.
    captured: Vec<usize>,
    ret: DataType,
}

/// The outer columns lambdas refer to, passed to the function as extra arguments.
#[derive(Default)]
struct Captures {
    fields: Vec<String>,
}

impl Captures {
    fn index(&mut self, field: &str) -> usize {
        match self.fields.iter().position(|f| f == field) {
            Some(p) => p,
            None => {
                self.fields.push(field.to_string());
                self.fields.len() - 1
            }
        }
    }

    fn exprs(&self) -> Vec<Expr> {
        self.fields
            .iter()
            .map(|f| Expr::Column(Column::new_unqualified(f.clone())))
            .collect()
    }
}

/// Compiles the lambda `sql` with parameters of `types`; the body is cast to `target`
/// when given (REDUCE's state type).
fn compile_lambda(
    scope: &Scope,
    fname: &str,
    sql: &SqlExpr,
    types: &[Type],
    target: Option<&Type>,
    captures: &mut Captures,
) -> Result<(Lambda, Type), PlanError> {
    let Some((params, body)) = brook_sql::as_lambda(sql) else {
        return invalid(format!(
            "Function '{}' expects a lambda function, got {sql}",
            fname.to_lowercase()
        ));
    };
    if params.len() != types.len() {
        return invalid(format!(
            "Lambda function for '{}' expects {} argument(s), got {}: {sql}",
            fname.to_lowercase(),
            types.len(),
            params.len()
        ));
    }
    let id = NEXT_LAMBDA.fetch_add(1, Ordering::Relaxed);
    let mut columns: Vec<ScopeColumn> = params
        .iter()
        .zip(types)
        .enumerate()
        .map(|(k, (p, ty))| ScopeColumn {
            name: p.value.clone(),
            qualifiers: Vec::new(),
            ty: ty.clone(),
            field: format!("__lambda{id}_{k}"),
        })
        .collect();
    let param_fields: Vec<String> = columns.iter().map(|c| c.field.clone()).collect();
    // Parameters shadow columns of the same name.
    columns.extend(
        scope
            .columns
            .iter()
            .filter(|c| !params.iter().any(|p| p.value == c.name))
            .cloned(),
    );
    let inner = Scope {
        columns,
        types: scope.types,
    };
    let mut t = inner.compile(body)?;
    if let Some(target) = target {
        match &t.ty {
            Some(b) if b != target && !(is_numeric(b) && is_numeric(target)) => {
                return invalid(format!(
                    "Lambda function for '{}' returns {b}, but its state is {target}: {sql}",
                    fname.to_lowercase()
                ));
            }
            _ => {}
        }
        t = inner.coerce_pub(t, target)?;
    }
    let Some(ty) = t.ty.clone() else {
        return invalid(format!(
            "Cannot infer the type of lambda function {sql}: cast its NULL result to a type"
        ));
    };
    let ret = arrow_type(&ty, scope.types)?;
    let expr = guard_arithmetic(t.expr)?;

    let mut fields: Vec<Field> = param_fields
        .iter()
        .zip(types)
        .map(|(f, ty)| Ok(Field::new(f, arrow_type(ty, scope.types)?, true)))
        .collect::<Result<_, PlanError>>()?;
    let mut referenced: Vec<String> = expr
        .column_refs()
        .into_iter()
        .map(|c| c.name.clone())
        .filter(|n| !param_fields.contains(n))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    referenced.sort();
    let mut captured = Vec::new();
    for name in referenced {
        let Some(c) = scope.columns.iter().find(|c| c.field == name) else {
            return invalid(format!("Column '{name}' cannot be resolved."));
        };
        fields.push(Field::new(&name, arrow_type(&c.ty, scope.types)?, true));
        captured.push(captures.index(&name));
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    let phys = physical(&expr, &schema)?;
    Ok((
        Lambda {
            schema,
            phys,
            captured,
            ret,
        },
        ty,
    ))
}

impl Lambda {
    /// Evaluates on parameter arrays of one length; element `e` belongs to row `rows[e]`
    /// of the captured arguments.
    fn eval(&self, params: &[ArrayRef], captured: &[ArrayRef], rows: &[u64]) -> DfResult<ArrayRef> {
        let m = rows.len();
        if m == 0 {
            return Ok(new_empty_array(&self.ret));
        }
        let mut cols: Vec<ArrayRef> = params.to_vec();
        if !self.captured.is_empty() {
            let idx = UInt64Array::from(rows.to_vec());
            for &c in &self.captured {
                cols.push(arrow::compute::take(captured[c].as_ref(), &idx, None)?);
            }
        }
        let cols = cols
            .into_iter()
            .zip(self.schema.fields())
            .map(|(c, f)| {
                if c.data_type() == f.data_type() {
                    Ok(c)
                } else {
                    Ok(arrow::compute::cast(&c, f.data_type())?)
                }
            })
            .collect::<DfResult<Vec<_>>>()?;
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(m)),
        )?;
        // A lambda runs inside the function that calls it: nested lambdas nest
        // evaluations, each on room enough of stack.
        let out = crate::limits::with_stack(|| self.phys.evaluate(&batch))?.into_array(m)?;
        // A parameter may be used more than once (`x => x + x`): nested lambdas could
        // double a value with every level. A result may be as large as the parameters, or
        // the batch limit.
        let size = out.get_array_memory_size();
        let params_size: usize = params.iter().map(|p| p.get_array_memory_size()).sum();
        let limit = MAX_BATCH_BYTES.max(params_size);
        if size > limit {
            return Err(too_large("a lambda", "bytes", size, limit));
        }
        if out.data_type() == &self.ret {
            Ok(out)
        } else {
            Ok(arrow::compute::cast(&out, &self.ret)?)
        }
    }

    /// Like [`Lambda::eval`] with elements grouped by row (`rows` ascending): if the batch
    /// fails, each row is evaluated alone, and rows that fail are reported (their
    /// elements' results are NULL).
    fn eval_rows(
        &self,
        params: &[ArrayRef],
        captured: &[ArrayRef],
        rows: &[u64],
        n: usize,
    ) -> DfResult<(ArrayRef, Vec<bool>)> {
        let mut failed = vec![false; n];
        if let Ok(out) = self.eval(params, captured, rows) {
            return Ok((out, failed));
        }
        let mut parts: Vec<ArrayRef> = Vec::new();
        let mut start = 0;
        while start < rows.len() {
            let row = rows[start];
            let end = start + rows[start..].iter().take_while(|&&r| r == row).count();
            let slice: Vec<ArrayRef> = params.iter().map(|p| p.slice(start, end - start)).collect();
            match self.eval(&slice, captured, &rows[start..end]) {
                Ok(out) => parts.push(out),
                Err(_) => {
                    failed[row as usize] = true;
                    parts.push(new_null_array(&self.ret, end - start));
                }
            }
            start = end;
        }
        if parts.is_empty() {
            return Ok((new_empty_array(&self.ret), failed));
        }
        let refs: Vec<&dyn Array> = parts.iter().map(|p| p.as_ref()).collect();
        Ok((arrow::compute::concat(&refs)?, failed))
    }
}

/// The elements of a list or map column, flattened in row order.
struct Elements {
    /// Positions in the collection's flattened values.
    idx: Vec<u64>,
    /// The row of each element.
    rows: Vec<u64>,
    lengths: Vec<usize>,
}

fn elements(offsets: &[i32], is_null: impl Fn(usize) -> bool, n: usize) -> Elements {
    let mut e = Elements {
        idx: Vec::new(),
        rows: Vec::new(),
        lengths: Vec::with_capacity(n),
    };
    for i in 0..n {
        if is_null(i) {
            e.lengths.push(0);
            continue;
        }
        let r = range(offsets, i);
        e.lengths.push(r.len());
        e.rows.extend(std::iter::repeat_n(i as u64, r.len()));
        e.idx.extend(r.map(|j| j as u64));
    }
    e
}

fn take(values: &ArrayRef, idx: &[u64]) -> DfResult<ArrayRef> {
    Ok(arrow::compute::take(
        values.as_ref(),
        &UInt64Array::from(idx.to_vec()),
        None,
    )?)
}

/// Compiles TRANSFORM, FILTER or REDUCE from its SQL arguments (lambdas are not
/// expressions on their own, so these functions see their arguments uncompiled).
pub(crate) fn lambda_call(
    scope: &Scope,
    name: &str,
    args: &[&FunctionArg],
) -> Result<Typed, PlanError> {
    let raw: Vec<&SqlExpr> = args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Ok(e),
            other => invalid(format!("Unsupported argument {other} to {name}")),
        })
        .collect::<Result<_, _>>()?;
    let lname = name.to_lowercase();
    let Some(first) = raw.first() else {
        return invalid(format!("Function '{lname}' does not accept parameters ()."));
    };
    let coll = scope.compile(first)?;
    let mut captures = Captures::default();
    let wrong_count = || {
        invalid(format!(
            "Function '{lname}' does not accept {} parameter(s) for {}",
            raw.len(),
            coll.ty
                .as_ref()
                .map(|t| t.to_string())
                .unwrap_or("NULL".into())
        ))
    };
    match (name, coll.ty.clone()) {
        ("TRANSFORM", Some(Type::Array(item))) => {
            if raw.len() != 2 {
                return wrong_count();
            }
            let (lam, out) = compile_lambda(scope, name, raw[1], &[*item], None, &mut captures)?;
            let ty = Type::Array(Box::new(out));
            let ret = arrow_type(&ty, scope.types)?;
            let mut exprs = vec![coll.expr];
            exprs.extend(captures.exprs());
            Ok(Typed {
                ty: Some(ty),
                expr: call_batch(name, ret, exprs, move |arrays, n| {
                    let l = list(&arrays[0])?;
                    let e = elements(l.value_offsets(), |i| l.is_null(i), n);
                    let x = take(l.values(), &e.idx)?;
                    let (out, failed) = lam.eval_rows(&[x], &arrays[1..], &e.rows, n)?;
                    let valid = (0..n).map(|i| !l.is_null(i) && !failed[i]).collect();
                    list_from_parts(out, e.lengths, valid)
                }),
            })
        }
        ("TRANSFORM", Some(Type::Map(k, v))) => {
            if raw.len() != 3 {
                return wrong_count();
            }
            let kv = [*k, *v];
            let (klam, kty) = compile_lambda(scope, name, raw[1], &kv, None, &mut captures)?;
            let (vlam, vty) = compile_lambda(scope, name, raw[2], &kv, None, &mut captures)?;
            let ty = Type::Map(Box::new(kty), Box::new(vty));
            let ret = arrow_type(&ty, scope.types)?;
            let mut exprs = vec![coll.expr];
            exprs.extend(captures.exprs());
            Ok(Typed {
                ty: Some(ty),
                expr: call_batch(name, ret, exprs, move |arrays, n| {
                    let m = map(&arrays[0])?;
                    let e = elements(m.value_offsets(), |i| m.is_null(i), n);
                    let params = [take(m.keys(), &e.idx)?, take(m.values(), &e.idx)?];
                    let (keys, kfailed) = klam.eval_rows(&params, &arrays[1..], &e.rows, n)?;
                    let (values, vfailed) = vlam.eval_rows(&params, &arrays[1..], &e.rows, n)?;
                    let mut rows = Vec::with_capacity(n);
                    let mut at = 0;
                    for i in 0..n {
                        let len = e.lengths[i];
                        let r = at..at + len;
                        at += len;
                        if m.is_null(i) || kfailed[i] || vfailed[i] {
                            rows.push(None);
                            continue;
                        }
                        // A NULL or repeated key fails the record, as Java's map builder does.
                        let mut seen = HashSet::new();
                        let mut ok = true;
                        for j in r.clone() {
                            let key = ScalarValue::try_from_array(&keys, j)?;
                            if key.is_null() || !seen.insert(key) {
                                ok = false;
                                break;
                            }
                        }
                        rows.push(ok.then(|| r.collect()));
                    }
                    build_map(&keys, &values, rows)
                }),
            })
        }
        ("FILTER", Some(Type::Array(item))) => {
            if raw.len() != 2 {
                return wrong_count();
            }
            let item = *item;
            let (lam, out) = compile_lambda(
                scope,
                name,
                raw[1],
                std::slice::from_ref(&item),
                None,
                &mut captures,
            )?;
            expect_boolean(&lname, &out)?;
            let ty = Type::Array(Box::new(item));
            let ret = arrow_type(&ty, scope.types)?;
            let mut exprs = vec![coll.expr];
            exprs.extend(captures.exprs());
            Ok(Typed {
                ty: Some(ty),
                expr: call_batch(name, ret, exprs, move |arrays, n| {
                    let l = list(&arrays[0])?;
                    let e = elements(l.value_offsets(), |i| l.is_null(i), n);
                    let x = take(l.values(), &e.idx)?;
                    let (keep, failed) = lam.eval_rows(&[x], &arrays[1..], &e.rows, n)?;
                    let rows = kept(&keep, &e, n, |i| l.is_null(i) || failed[i]);
                    build_list(l.values(), rows)
                }),
            })
        }
        ("FILTER", Some(Type::Map(k, v))) => {
            if raw.len() != 2 {
                return wrong_count();
            }
            let kv = [*k, *v];
            let (lam, out) = compile_lambda(scope, name, raw[1], &kv, None, &mut captures)?;
            expect_boolean(&lname, &out)?;
            let ty = coll.ty.clone().unwrap_or(Type::String);
            let ret = arrow_type(&ty, scope.types)?;
            let mut exprs = vec![coll.expr];
            exprs.extend(captures.exprs());
            Ok(Typed {
                ty: Some(ty),
                expr: call_batch(name, ret, exprs, move |arrays, n| {
                    let m = map(&arrays[0])?;
                    let e = elements(m.value_offsets(), |i| m.is_null(i), n);
                    let params = [take(m.keys(), &e.idx)?, take(m.values(), &e.idx)?];
                    let (keep, failed) = lam.eval_rows(&params, &arrays[1..], &e.rows, n)?;
                    let rows = kept(&keep, &e, n, |i| m.is_null(i) || failed[i]);
                    build_map(m.keys(), m.values(), rows)
                }),
            })
        }
        ("REDUCE", Some(coll_ty @ (Type::Array(_) | Type::Map(..)))) => {
            if raw.len() != 3 {
                return wrong_count();
            }
            let init = scope.compile(raw[1])?;
            let Some(state_ty) = init.ty.clone() else {
                return invalid(format!(
                    "Function '{lname}' cannot infer the type of a NULL initial state: cast it to a type"
                ));
            };
            let mut types = vec![state_ty.clone()];
            let is_map = matches!(coll_ty, Type::Map(..));
            match coll_ty {
                Type::Array(item) => types.push(*item),
                Type::Map(k, v) => {
                    types.push(*k);
                    types.push(*v);
                }
                _ => {}
            }
            let (lam, _) =
                compile_lambda(scope, name, raw[2], &types, Some(&state_ty), &mut captures)?;
            let ret = arrow_type(&state_ty, scope.types)?;
            let mut exprs = vec![coll.expr, init.expr];
            exprs.extend(captures.exprs());
            let ret2 = ret.clone();
            Ok(Typed {
                ty: Some(state_ty),
                expr: call_batch(name, ret, exprs, move |arrays, n| {
                    reduce(&lam, &ret2, arrays, n, is_map)
                }),
            })
        }
        (_, None) => {
            // A NULL collection: the result is NULL of an unknown type.
            Ok(Typed {
                expr: datafusion::logical_expr::lit(ScalarValue::Null),
                ty: None,
            })
        }
        (_, Some(t)) => invalid(format!(
            "Function '{lname}' does not accept parameters ({t}, LAMBDA)."
        )),
    }
}

fn expect_boolean(name: &str, t: &Type) -> Result<(), PlanError> {
    if *t != Type::Boolean {
        return invalid(format!(
            "Lambda function for '{name}' must return BOOLEAN, got {t}"
        ));
    }
    Ok(())
}

/// Per row, the positions (in the collection's values) of the elements the predicate
/// kept; rows for which `drop` holds are NULL.
fn kept(
    keep: &ArrayRef,
    e: &Elements,
    n: usize,
    drop: impl Fn(usize) -> bool,
) -> Vec<Option<Vec<usize>>> {
    let keep = keep.as_boolean();
    let mut rows = Vec::with_capacity(n);
    let mut at = 0;
    for i in 0..n {
        let len = e.lengths[i];
        let r = at..at + len;
        at += len;
        if drop(i) {
            rows.push(None);
            continue;
        }
        rows.push(Some(
            r.filter(|&k| keep.is_valid(k) && keep.value(k))
                .map(|k| e.idx[k] as usize)
                .collect(),
        ));
    }
    rows
}

/// REDUCE: the state threads through each row's elements in order.
fn reduce(
    lam: &Lambda,
    ret: &DataType,
    arrays: &[ArrayRef],
    n: usize,
    is_map: bool,
) -> DfResult<ArrayRef> {
    if n == 0 {
        return Ok(new_empty_array(ret));
    }
    let init = &arrays[1];
    let init = if init.data_type() == ret {
        init.clone()
    } else {
        arrow::compute::cast(init, ret)?
    };
    let captured = &arrays[2..];
    let (offsets, nulls, parts): (Vec<i32>, Vec<bool>, Vec<ArrayRef>) = if is_map {
        let m = map(&arrays[0])?;
        (
            m.value_offsets().to_vec(),
            (0..n).map(|i| m.is_null(i)).collect(),
            vec![m.keys().clone(), m.values().clone()],
        )
    } else {
        let l = list(&arrays[0])?;
        (
            l.value_offsets().to_vec(),
            (0..n).map(|i| l.is_null(i)).collect(),
            vec![l.values().clone()],
        )
    };
    let mut out: Vec<ArrayRef> = Vec::with_capacity(n);
    for (i, &null) in nulls.iter().enumerate() {
        let mut state = init.slice(i, 1);
        // A NULL state stays NULL, as ksqlDB documents.
        if !null && state.is_valid(0) {
            for j in range(&offsets, i) {
                let mut params = vec![state.clone()];
                params.extend(parts.iter().map(|p| p.slice(j, 1)));
                match lam.eval(&params, captured, &[i as u64]) {
                    // The state may grow with every element (`(s, x) => s + s`).
                    Ok(s) if s.get_array_memory_size() > MAX_VALUE_BYTES => {
                        let size = s.get_array_memory_size();
                        return Err(too_large("REDUCE", "bytes", size, MAX_VALUE_BYTES));
                    }
                    Ok(s) => state = s,
                    Err(_) => {
                        state = new_null_array(ret, 1);
                        break;
                    }
                }
            }
        }
        out.push(state);
    }
    let refs: Vec<&dyn Array> = out.iter().map(|p| p.as_ref()).collect();
    Ok(arrow::compute::concat(&refs)?)
}

/// Wraps both operands of each arithmetic operator in a check that fails evaluation when
/// the operand is NULL (Java unboxing a null). Each operand is checked where it stands, so
/// the plan holds it once (checking both in one call would copy one of them, doubling the
/// plan with every level of nesting).
fn guard_arithmetic(e: Expr) -> Result<Expr, PlanError> {
    let guard = Arc::new(ScalarUDF::new_from_impl(NullGuard::new()));
    let checked = |e: Box<Expr>| {
        Box::new(Expr::ScalarFunction(ScalarFunction::new_udf(
            guard.clone(),
            vec![*e],
        )))
    };
    e.transform_up(|e| match e {
        Expr::BinaryExpr(b)
            if matches!(
                b.op,
                Operator::Plus
                    | Operator::Minus
                    | Operator::Multiply
                    | Operator::Divide
                    | Operator::Modulo
            ) =>
        {
            Ok(Transformed::yes(Expr::BinaryExpr(BinaryExpr::new(
                checked(b.left),
                b.op,
                checked(b.right),
            ))))
        }
        other => Ok(Transformed::no(other)),
    })
    .map(|t| t.data)
    .map_err(|e| PlanError::DataFusion(e.to_string()))
}

/// `guard(a)`: `a`, or an evaluation error if it holds a NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NullGuard {
    signature: Signature,
}

impl NullGuard {
    fn new() -> Self {
        NullGuard {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for NullGuard {
    fn name(&self) -> &str {
        "lambda_null_guard"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| exec_err("lambda_null_guard takes one argument"))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let has_null = |v: &ColumnarValue| match v {
            ColumnarValue::Scalar(s) => s.is_null(),
            ColumnarValue::Array(a) => a.null_count() > 0 || a.data_type() == &DataType::Null,
        };
        if args.args.iter().any(has_null) {
            return Err(exec_err("NULL operand of arithmetic in a lambda function"));
        }
        args.args
            .into_iter()
            .next()
            .ok_or_else(|| exec_err("lambda_null_guard takes one argument"))
    }
}
