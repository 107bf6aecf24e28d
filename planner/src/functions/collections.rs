//! ARRAY and MAP functions, lambdas (TRANSFORM, REDUCE, FILTER) and struct helpers.
//!
//! Collection functions work on the lists' and maps' flattened values (see [`kernels`]),
//! comparing elements as DataFusion scalars so that nested element types (arrays of
//! maps, say) compare the way Java's `equals` does.

pub(crate) mod kernels;
mod lambda;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, StringArray, StructArray,
};
use arrow::datatypes::{DataType, Field, Fields, Int32Type, Int64Type};
use brook_sql::sqlparser::ast::Ident;
use brook_sql::{StructField, Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result as DfResult;

use crate::expr::{common_type, Scope, Typed};
use crate::limits::{too_large, BatchBudget, MAX_ARRAY_ELEMENTS, MAX_VALUE_BYTES};
use crate::types::arrow_type;
use crate::PlanError;

use super::udf::{call_batch, call_rows, exec_err};
use super::{arity, rejected, Lookup};
use kernels::{build_list, build_map, concat_values, list, map, range, scalars};

pub(crate) use lambda::lambda_call;

/// Compiles `name(args)` if this family has the function.
pub(crate) fn call(scope: &Scope, name: &str, args: &mut Vec<Typed>) -> Lookup {
    const NAMES: &[&str] = &[
        "ARRAY_CONCAT",
        "ARRAY_CONTAINS",
        "ARRAY_DISTINCT",
        "ARRAY_EXCEPT",
        "ARRAY_INTERSECT",
        "ARRAY_JOIN",
        "ARRAY_LENGTH",
        "ARRAY_MAX",
        "ARRAY_MIN",
        "ARRAY_REMOVE",
        "ARRAY_SORT",
        "ARRAY_UNION",
        "AS_MAP",
        "ELT",
        "FIELD",
        "ENTRIES",
        "GENERATE_SERIES",
        "MAP_KEYS",
        "MAP_VALUES",
        "MAP_UNION",
        "SLICE",
    ];
    if !NAMES.contains(&name) {
        return None;
    }
    Some(compile(scope, name, std::mem::take(args)))
}

fn typed(ty: Type, expr: datafusion::logical_expr::Expr) -> Result<Typed, PlanError> {
    Ok(Typed { expr, ty: Some(ty) })
}

fn is_primitive(t: &Type) -> bool {
    !matches!(
        t,
        Type::Array(_) | Type::Map(..) | Type::Struct(_) | Type::Custom(_)
    )
}

/// The element type of an ARRAY argument (`None` for an untyped NULL).
fn item_of(name: &str, args: &[Typed], i: usize) -> Result<Option<Type>, PlanError> {
    match &args[i].ty {
        None => Ok(None),
        Some(Type::Array(t)) => Ok(Some((**t).clone())),
        Some(_) => Err(rejected(name, args)),
    }
}

fn compile(scope: &Scope, name: &str, mut args: Vec<Typed>) -> Result<Typed, PlanError> {
    let arrow = |t: &Type| arrow_type(t, scope.types);
    match name {
        "ARRAY_LENGTH" => {
            arity(name, &args, 1, 1)?;
            item_of(name, &args, 0)?;
            let a = args.remove(0).expr;
            typed(
                Type::Int,
                call_batch(name, DataType::Int32, vec![a], |arrays, n| {
                    if arrays[0].data_type() == &DataType::Null {
                        return Ok(Arc::new(Int32Array::new_null(n)) as ArrayRef);
                    }
                    let l = list(&arrays[0])?;
                    let offsets = l.value_offsets();
                    let out: Int32Array = (0..n)
                        .map(|i| (!l.is_null(i)).then(|| range(offsets, i).len() as i32))
                        .collect();
                    Ok(Arc::new(out) as ArrayRef)
                }),
            )
        }
        "ARRAY_CONTAINS" => {
            arity(name, &args, 2, 2)?;
            let Some(item) = item_of(name, &args, 0)? else {
                return typed(Type::Boolean, datafusion::logical_expr::lit(false));
            };
            if let Some(t) = &args[1].ty {
                if common_type(t, &item).is_none() {
                    return Err(rejected(name, &args));
                }
            }
            let needle = scope.coerce_pub(args.remove(1), &item)?.expr;
            let hay = args.remove(0).expr;
            typed(
                Type::Boolean,
                call_batch(name, DataType::Boolean, vec![hay, needle], |arrays, n| {
                    let l = list(&arrays[0])?;
                    let offsets = l.value_offsets();
                    let mut out = Vec::with_capacity(n);
                    for i in 0..n {
                        // ksqlDB answers false, not NULL, for a NULL array.
                        if l.is_null(i) {
                            out.push(false);
                            continue;
                        }
                        let needle = ScalarValue::try_from_array(&arrays[1], i)?;
                        let found = scalars(l.values(), range(offsets, i))?
                            .iter()
                            .any(|e| *e == needle || (e.is_null() && needle.is_null()));
                        out.push(found);
                    }
                    Ok(Arc::new(BooleanArray::from(out)) as ArrayRef)
                }),
            )
        }
        "ARRAY_MAX" | "ARRAY_MIN" => {
            arity(name, &args, 1, 1)?;
            let item = item_of(name, &args, 0)?.unwrap_or(Type::String);
            if !is_primitive(&item) {
                return Err(rejected(name, &args));
            }
            let ret = arrow(&item)?;
            let max = name == "ARRAY_MAX";
            let a = args.remove(0).expr;
            let ret2 = ret.clone();
            typed(
                item,
                call_batch(name, ret, vec![a], move |arrays, n| {
                    let l = list(&arrays[0])?;
                    let offsets = l.value_offsets();
                    let mut out = Vec::with_capacity(n);
                    for i in 0..n {
                        let mut best: Option<ScalarValue> = None;
                        if !l.is_null(i) {
                            for e in scalars(l.values(), range(offsets, i))? {
                                if e.is_null() {
                                    continue;
                                }
                                let better = match &best {
                                    None => true,
                                    Some(b) => {
                                        let ord = e.partial_cmp(b);
                                        if max {
                                            ord == Some(std::cmp::Ordering::Greater)
                                        } else {
                                            ord == Some(std::cmp::Ordering::Less)
                                        }
                                    }
                                };
                                if better {
                                    best = Some(e);
                                }
                            }
                        }
                        out.push(best.unwrap_or(ScalarValue::Null));
                    }
                    super::udf::scalars_to_array(&ret2, out)
                }),
            )
        }
        "ARRAY_SORT" => {
            arity(name, &args, 1, 2)?;
            let item = item_of(name, &args, 0)?.unwrap_or(Type::String);
            if !is_primitive(&item)
                || args
                    .get(1)
                    .is_some_and(|a| a.ty.as_ref().is_some_and(|t| *t != Type::String))
            {
                return Err(rejected(name, &args));
            }
            let ty = Type::Array(Box::new(item));
            let ret = arrow(&ty)?;
            let exprs = args.into_iter().map(|a| a.expr).collect::<Vec<_>>();
            typed(
                ty,
                call_batch(name, ret, exprs, |arrays, n| {
                    let l = list(&arrays[0])?;
                    let offsets = l.value_offsets();
                    let mut rows = Vec::with_capacity(n);
                    for i in 0..n {
                        let desc = match arrays.get(1) {
                            None => Some(false),
                            Some(d) => match ScalarValue::try_from_array(d, i)? {
                                ScalarValue::Utf8(Some(s)) if s.eq_ignore_ascii_case("asc") => {
                                    Some(false)
                                }
                                ScalarValue::Utf8(Some(s)) if s.eq_ignore_ascii_case("desc") => {
                                    Some(true)
                                }
                                _ => None,
                            },
                        };
                        let (Some(desc), false) = (desc, l.is_null(i)) else {
                            rows.push(None);
                            continue;
                        };
                        let r = range(offsets, i);
                        let elems = scalars(l.values(), r.clone())?;
                        let mut idx: Vec<usize> = (0..elems.len()).collect();
                        // NULLs go last in either direction.
                        idx.sort_by(|&x, &y| {
                            let (a, b) = (&elems[x], &elems[y]);
                            match (a.is_null(), b.is_null()) {
                                (true, true) => std::cmp::Ordering::Equal,
                                (true, false) => std::cmp::Ordering::Greater,
                                (false, true) => std::cmp::Ordering::Less,
                                _ => {
                                    let o = a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal);
                                    if desc {
                                        o.reverse()
                                    } else {
                                        o
                                    }
                                }
                            }
                        });
                        rows.push(Some(idx.into_iter().map(|k| r.start + k).collect()));
                    }
                    build_list(l.values(), rows)
                }),
            )
        }
        "ARRAY_REMOVE" => {
            arity(name, &args, 2, 2)?;
            let Some(item) = item_of(name, &args, 0)? else {
                return Ok(args.remove(0));
            };
            let ty = Type::Array(Box::new(item.clone()));
            let ret = arrow(&ty)?;
            let victim = scope.coerce_pub(args.remove(1), &item)?.expr;
            let a = args.remove(0).expr;
            typed(
                ty,
                call_batch(name, ret, vec![a, victim], |arrays, n| {
                    let l = list(&arrays[0])?;
                    let offsets = l.value_offsets();
                    let mut rows = Vec::with_capacity(n);
                    for i in 0..n {
                        if l.is_null(i) {
                            rows.push(None);
                            continue;
                        }
                        let victim = ScalarValue::try_from_array(&arrays[1], i)?;
                        let r = range(offsets, i);
                        let elems = scalars(l.values(), r.clone())?;
                        let keep = elems
                            .iter()
                            .enumerate()
                            .filter(|(_, e)| !(**e == victim || (e.is_null() && victim.is_null())))
                            .map(|(k, _)| r.start + k)
                            .collect();
                        rows.push(Some(keep));
                    }
                    build_list(l.values(), rows)
                }),
            )
        }
        "ARRAY_DISTINCT" => {
            arity(name, &args, 1, 1)?;
            let Some(item) = item_of(name, &args, 0)? else {
                return Ok(args.remove(0));
            };
            let ty = Type::Array(Box::new(item));
            let ret = arrow(&ty)?;
            let a = args.remove(0).expr;
            typed(
                ty,
                call_batch(name, ret, vec![a], |arrays, n| {
                    let l = list(&arrays[0])?;
                    let offsets = l.value_offsets();
                    let mut rows = Vec::with_capacity(n);
                    for i in 0..n {
                        if l.is_null(i) {
                            rows.push(None);
                            continue;
                        }
                        let r = range(offsets, i);
                        let mut seen = HashSet::new();
                        let mut keep = Vec::new();
                        for (k, e) in scalars(l.values(), r.clone())?.into_iter().enumerate() {
                            if seen.insert(e) {
                                keep.push(r.start + k);
                            }
                        }
                        rows.push(Some(keep));
                    }
                    build_list(l.values(), rows)
                }),
            )
        }
        "ARRAY_EXCEPT" | "ARRAY_INTERSECT" | "ARRAY_UNION" | "ARRAY_CONCAT" => {
            arity(name, &args, 2, 2)?;
            let a_item = item_of(name, &args, 0)?;
            let b_item = item_of(name, &args, 1)?;
            let item = match (a_item, b_item) {
                (Some(a), Some(b)) => common_type(&a, &b).ok_or_else(|| rejected(name, &args))?,
                (Some(t), None) | (None, Some(t)) => t,
                (None, None) => return Ok(args.remove(0)),
            };
            let ty = Type::Array(Box::new(item));
            let ret = arrow(&ty)?;
            let b = scope.coerce_pub(args.remove(1), &ty)?.expr;
            let a = scope.coerce_pub(args.remove(0), &ty)?.expr;
            let op = name.to_string();
            typed(
                ty,
                call_batch(name, ret, vec![a, b], move |arrays, n| {
                    set_op(&op, &arrays[0], &arrays[1], n)
                }),
            )
        }
        "ARRAY_JOIN" => {
            arity(name, &args, 1, 2)?;
            let item = item_of(name, &args, 0)?;
            if item.as_ref().is_some_and(|t| !is_primitive(t))
                || args
                    .get(1)
                    .is_some_and(|a| a.ty.as_ref().is_some_and(|t| *t != Type::String))
            {
                return Err(rejected(name, &args));
            }
            let exprs = args.into_iter().map(|a| a.expr).collect();
            typed(
                Type::String,
                call_batch(name, DataType::Utf8, exprs, |arrays, n| {
                    let l = list(&arrays[0])?;
                    let offsets = l.value_offsets();
                    let mut out: Vec<Option<String>> = Vec::with_capacity(n);
                    let mut budget = BatchBudget::new("ARRAY_JOIN");
                    for i in 0..n {
                        let delim = match arrays.get(1) {
                            None => Some(",".to_string()),
                            Some(d) => match ScalarValue::try_from_array(d, i)? {
                                ScalarValue::Utf8(s) => s,
                                _ => None,
                            },
                        };
                        if l.is_null(i) {
                            out.push(None);
                            continue;
                        }
                        // A NULL delimiter joins with nothing between the elements.
                        let delim = delim.unwrap_or_default();
                        let parts: Vec<String> = scalars(l.values(), range(offsets, i))?
                            .iter()
                            .map(kernels::java_string)
                            .collect();
                        // The delimiter repeats between every two elements.
                        let len = parts.iter().map(String::len).sum::<usize>()
                            + delim.len().saturating_mul(parts.len().saturating_sub(1));
                        if len > MAX_VALUE_BYTES {
                            return Err(too_large("ARRAY_JOIN", "bytes", len, MAX_VALUE_BYTES));
                        }
                        budget.take(len)?;
                        out.push(Some(parts.join(&delim)));
                    }
                    Ok(Arc::new(StringArray::from(out)) as ArrayRef)
                }),
            )
        }
        "SLICE" => {
            arity(name, &args, 3, 3)?;
            let Some(item) = item_of(name, &args, 0)? else {
                return Ok(args.remove(0));
            };
            for a in &args[1..] {
                if a.ty.as_ref().is_some_and(|t| *t != Type::Int) {
                    return Err(rejected(name, &args));
                }
            }
            let ty = Type::Array(Box::new(item));
            let ret = arrow(&ty)?;
            let to = scope.coerce_pub(args.remove(2), &Type::Int)?.expr;
            let from = scope.coerce_pub(args.remove(1), &Type::Int)?.expr;
            let a = args.remove(0).expr;
            typed(
                ty,
                call_batch(name, ret, vec![a, from, to], |arrays, n| {
                    let l = list(&arrays[0])?;
                    let offsets = l.value_offsets();
                    let from = arrays[1].as_primitive::<Int32Type>();
                    let to = arrays[2].as_primitive::<Int32Type>();
                    let mut rows = Vec::with_capacity(n);
                    for i in 0..n {
                        if l.is_null(i) {
                            rows.push(None);
                            continue;
                        }
                        let r = range(offsets, i);
                        let len = r.len() as i64;
                        // Java's subList: 1-based inclusive bounds, NULL when out of range.
                        let start = if from.is_null(i) {
                            0
                        } else {
                            from.value(i) as i64 - 1
                        };
                        let end = if to.is_null(i) {
                            len
                        } else {
                            to.value(i) as i64
                        };
                        if start < 0 || end > len || start > end {
                            rows.push(None);
                            continue;
                        }
                        rows.push(Some(
                            (r.start + start as usize..r.start + end as usize).collect(),
                        ));
                    }
                    build_list(l.values(), rows)
                }),
            )
        }
        "ELT" => {
            if args.is_empty() {
                return Err(rejected(name, &args));
            }
            if args[0].ty.as_ref().is_some_and(|t| *t != Type::Int)
                || args[1..]
                    .iter()
                    .any(|a| a.ty.as_ref().is_some_and(|t| *t != Type::String))
            {
                return Err(rejected(name, &args));
            }
            let exprs = coerce_all(scope, args, &[Type::Int], &Type::String)?;
            typed(
                Type::String,
                call_rows(name, DataType::Utf8, exprs, |row| {
                    let n = match &row[0] {
                        ScalarValue::Int32(Some(n)) => *n,
                        _ => return Ok(ScalarValue::Null),
                    };
                    if n < 1 || n as usize >= row.len() {
                        return Ok(ScalarValue::Null);
                    }
                    Ok(row[n as usize].clone())
                }),
            )
        }
        "FIELD" => {
            if args.is_empty()
                || args
                    .iter()
                    .any(|a| a.ty.as_ref().is_some_and(|t| *t != Type::String))
            {
                return Err(rejected(name, &args));
            }
            let exprs = coerce_all(scope, args, &[], &Type::String)?;
            typed(
                Type::Int,
                call_rows(name, DataType::Int32, exprs, |row| {
                    let pos = match &row[0] {
                        ScalarValue::Utf8(Some(s)) => row[1..]
                            .iter()
                            .position(|v| matches!(v, ScalarValue::Utf8(Some(x)) if x == s))
                            .map(|p| p as i32 + 1)
                            .unwrap_or(0),
                        _ => 0,
                    };
                    Ok(ScalarValue::Int32(Some(pos)))
                }),
            )
        }
        "GENERATE_SERIES" => {
            arity(name, &args, 2, 3)?;
            let int_like = |t: &Option<Type>| matches!(t, None | Some(Type::Int | Type::Bigint));
            if !int_like(&args[0].ty)
                || !int_like(&args[1].ty)
                || args
                    .get(2)
                    .is_some_and(|a| !matches!(a.ty, None | Some(Type::Int)))
            {
                return Err(rejected(name, &args));
            }
            let wide = args[..2].iter().any(|a| a.ty == Some(Type::Bigint));
            let item = if wide { Type::Bigint } else { Type::Int };
            let ty = Type::Array(Box::new(item.clone()));
            let ret = arrow(&ty)?;
            let exprs = coerce_all(scope, args, &[], &Type::Bigint)?;
            typed(
                ty,
                call_batch(name, ret, exprs, move |arrays, n| {
                    let start = arrays[0].as_primitive::<Int64Type>();
                    let end = arrays[1].as_primitive::<Int64Type>();
                    let step = arrays.get(2).map(|s| s.as_primitive::<Int64Type>());
                    let mut values: Vec<i64> = Vec::new();
                    let mut lengths = Vec::with_capacity(n);
                    let mut valid = Vec::with_capacity(n);
                    let mut budget = BatchBudget::new("GENERATE_SERIES");
                    for i in 0..n {
                        let step_null = step.is_some_and(|s| s.is_null(i));
                        if start.is_null(i) || end.is_null(i) || step_null {
                            lengths.push(0);
                            valid.push(false);
                            continue;
                        }
                        let (s, e) = (start.value(i), end.value(i));
                        let st = match step {
                            Some(st) => st.value(i),
                            None if e < s => -1,
                            None => 1,
                        };
                        if st == 0 {
                            return Err(exec_err("GENERATE_SERIES step cannot be zero"));
                        }
                        if (st > 0 && e < s) || (st < 0 && e > s) {
                            return Err(exec_err("GENERATE_SERIES step has wrong sign"));
                        }
                        // ksqlDB sizes the series as Java's int and runs out of memory on a
                        // large one; Brook refuses it before making it.
                        let count = (i128::from(e) - i128::from(s)) / i128::from(st) + 1;
                        if count > MAX_ARRAY_ELEMENTS as i128 {
                            return Err(too_large(
                                "GENERATE_SERIES",
                                "elements",
                                count,
                                MAX_ARRAY_ELEMENTS,
                            ));
                        }
                        budget.take(count as usize * std::mem::size_of::<i64>())?;
                        let before = values.len();
                        let mut v = s;
                        while (st > 0 && v <= e) || (st < 0 && v >= e) {
                            values.push(v);
                            match v.checked_add(st) {
                                Some(next) => v = next,
                                None => break,
                            }
                        }
                        lengths.push(values.len() - before);
                        valid.push(true);
                    }
                    let flat: ArrayRef = if wide {
                        Arc::new(Int64Array::from(values))
                    } else {
                        let ints: Int32Array = values.into_iter().map(|v| Some(v as i32)).collect();
                        Arc::new(ints)
                    };
                    kernels::list_from_parts(flat, lengths, valid)
                }),
            )
        }
        "MAP_KEYS" | "MAP_VALUES" => {
            arity(name, &args, 1, 1)?;
            let Some(Type::Map(k, v)) = args[0].ty.clone() else {
                return Err(rejected(name, &args));
            };
            let keys = name == "MAP_KEYS";
            let ty = Type::Array(Box::new(if keys { *k } else { *v }));
            let ret = arrow(&ty)?;
            let a = args.remove(0).expr;
            typed(
                ty,
                call_batch(name, ret, vec![a], move |arrays, n| {
                    let m = map(&arrays[0])?;
                    let part = if keys { m.keys() } else { m.values() };
                    let offsets = m.value_offsets();
                    let rows = (0..n)
                        .map(|i| (!m.is_null(i)).then(|| range(offsets, i).collect()))
                        .collect();
                    build_list(part, rows)
                }),
            )
        }
        "MAP_UNION" => {
            arity(name, &args, 2, 2)?;
            let ty = match (&args[0].ty, &args[1].ty) {
                (Some(a @ Type::Map(..)), Some(b)) if a == b => a.clone(),
                (Some(a @ Type::Map(..)), None) | (None, Some(a @ Type::Map(..))) => a.clone(),
                _ => return Err(rejected(name, &args)),
            };
            let ret = arrow(&ty)?;
            let b = scope.coerce_pub(args.remove(1), &ty)?.expr;
            let a = scope.coerce_pub(args.remove(0), &ty)?.expr;
            typed(
                ty,
                call_batch(name, ret, vec![a, b], |arrays, n| {
                    let (m1, m2) = (map(&arrays[0])?, map(&arrays[1])?);
                    let shift = m1.keys().len();
                    let keys = arrow::compute::concat(&[m1.keys().as_ref(), m2.keys().as_ref()])?;
                    let values =
                        arrow::compute::concat(&[m1.values().as_ref(), m2.values().as_ref()])?;
                    let mut rows = Vec::with_capacity(n);
                    for i in 0..n {
                        if m1.is_null(i) && m2.is_null(i) {
                            rows.push(None);
                            continue;
                        }
                        let mut order: Vec<usize> = Vec::new();
                        let mut at: HashMap<ScalarValue, usize> = HashMap::new();
                        let parts = [(m1, 0usize), (m2, shift)];
                        for (m, base) in parts {
                            if m.is_null(i) {
                                continue;
                            }
                            for j in range(m.value_offsets(), i) {
                                let k = ScalarValue::try_from_array(m.keys(), j)?;
                                match at.get(&k) {
                                    Some(&p) => order[p] = base + j,
                                    None => {
                                        at.insert(k, order.len());
                                        order.push(base + j);
                                    }
                                }
                            }
                        }
                        rows.push(Some(order));
                    }
                    build_map(&keys, &values, rows)
                }),
            )
        }
        "AS_MAP" => {
            arity(name, &args, 2, 2)?;
            let k = item_of(name, &args, 0)?.unwrap_or(Type::String);
            let v = item_of(name, &args, 1)?.ok_or_else(|| rejected(name, &args))?;
            if k != Type::String {
                return Err(rejected(name, &args));
            }
            let ty = Type::Map(Box::new(k), Box::new(v));
            let ret = arrow(&ty)?;
            let exprs = args.into_iter().map(|a| a.expr).collect();
            typed(
                ty,
                call_batch(name, ret, exprs, |arrays, n| {
                    let (kl, vl) = (list(&arrays[0])?, list(&arrays[1])?);
                    // Missing values pad with NULL: index past the end of the values.
                    let null_value = arrow::array::new_null_array(vl.values().data_type(), 1);
                    let pad = vl.values().len();
                    let values =
                        arrow::compute::concat(&[vl.values().as_ref(), null_value.as_ref()])?;
                    let mut key_idx = Vec::new();
                    let mut value_idx = Vec::new();
                    let mut lengths = Vec::with_capacity(n);
                    let mut valid = Vec::with_capacity(n);
                    for i in 0..n {
                        if kl.is_null(i) || vl.is_null(i) {
                            lengths.push(0);
                            valid.push(false);
                            continue;
                        }
                        let kr = range(kl.value_offsets(), i);
                        let vr = range(vl.value_offsets(), i);
                        let mut at: HashMap<ScalarValue, usize> = HashMap::new();
                        let before = key_idx.len();
                        for (p, j) in kr.enumerate() {
                            if kl.values().is_null(j) {
                                continue;
                            }
                            let vj = if p < vr.len() { vr.start + p } else { pad };
                            let key = ScalarValue::try_from_array(kl.values(), j)?;
                            match at.get(&key) {
                                Some(&q) => value_idx[q] = vj as u64,
                                None => {
                                    at.insert(key, value_idx.len());
                                    key_idx.push(j as u64);
                                    value_idx.push(vj as u64);
                                }
                            }
                        }
                        lengths.push(key_idx.len() - before);
                        valid.push(true);
                    }
                    let keys = arrow::compute::take(
                        kl.values().as_ref(),
                        &arrow::array::UInt64Array::from(key_idx),
                        None,
                    )?;
                    let vals = arrow::compute::take(
                        values.as_ref(),
                        &arrow::array::UInt64Array::from(value_idx),
                        None,
                    )?;
                    kernels::map_from_parts(keys, vals, lengths, valid)
                }),
            )
        }
        "ENTRIES" => {
            arity(name, &args, 2, 2)?;
            let (Some(Type::Map(k, v)), Some(Type::Boolean) | None) = (&args[0].ty, &args[1].ty)
            else {
                return Err(rejected(name, &args));
            };
            if **k != Type::String {
                return Err(rejected(name, &args));
            }
            let vt = (**v).clone();
            let entry = Type::Struct(vec![
                StructField {
                    name: Ident::new("K"),
                    ty: Type::String,
                },
                StructField {
                    name: Ident::new("V"),
                    ty: vt.clone(),
                },
            ]);
            let ty = Type::Array(Box::new(entry));
            let ret = arrow(&ty)?;
            let vdt = arrow(&vt)?;
            let sorted = scope.coerce_pub(args.remove(1), &Type::Boolean)?.expr;
            let m = args.remove(0).expr;
            typed(
                ty,
                call_batch(name, ret, vec![m, sorted], move |arrays, n| {
                    let m = map(&arrays[0])?;
                    let sorted = arrays[1].as_boolean();
                    let mut rows = Vec::with_capacity(n);
                    for i in 0..n {
                        if m.is_null(i) {
                            rows.push(None);
                            continue;
                        }
                        let r = range(m.value_offsets(), i);
                        let mut idx: Vec<usize> = r.clone().collect();
                        if sorted.is_valid(i) && sorted.value(i) {
                            let keys = scalars(m.keys(), r)?;
                            let base = idx.first().copied().unwrap_or(0);
                            idx.sort_by(|&a, &b| {
                                keys[a - base]
                                    .partial_cmp(&keys[b - base])
                                    .unwrap_or(std::cmp::Ordering::Equal)
                            });
                        }
                        rows.push(Some(idx));
                    }
                    let fields = Fields::from(vec![
                        Field::new("K", DataType::Utf8, true),
                        Field::new("V", vdt.clone(), true),
                    ]);
                    let values = m.values().clone();
                    let values = if values.data_type() == &vdt {
                        values
                    } else {
                        arrow::compute::cast(&values, &vdt)?
                    };
                    let entries: ArrayRef = Arc::new(StructArray::try_new(
                        fields,
                        vec![m.keys().clone(), values],
                        None,
                    )?);
                    build_list(&entries, rows)
                }),
            )
        }
        _ => Err(PlanError::Invalid(format!(
            "Can't find any functions with the name '{name}'"
        ))),
    }
}

/// Casts the leading arguments to `lead` types and the rest to `rest`.
fn coerce_all(
    scope: &Scope,
    args: Vec<Typed>,
    lead: &[Type],
    rest: &Type,
) -> Result<Vec<datafusion::logical_expr::Expr>, PlanError> {
    args.into_iter()
        .enumerate()
        .map(|(k, a)| {
            scope
                .coerce_pub(a, lead.get(k).unwrap_or(rest))
                .map(|t| t.expr)
        })
        .collect()
}

/// ARRAY_EXCEPT, ARRAY_INTERSECT, ARRAY_UNION and ARRAY_CONCAT on two lists of one type.
fn set_op(op: &str, a: &ArrayRef, b: &ArrayRef, n: usize) -> DfResult<ArrayRef> {
    let (la, lb) = (list(a)?, list(b)?);
    let (values, shift) = concat_values(la, lb)?;
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let (an, bn) = (la.is_null(i), lb.is_null(i));
        let ra = range(la.value_offsets(), i);
        let rb = range(lb.value_offsets(), i);
        if op == "ARRAY_CONCAT" {
            // Concatenation treats a NULL side as empty, unless both are NULL.
            if an && bn {
                rows.push(None);
                continue;
            }
            let mut idx: Vec<usize> = Vec::new();
            if !an {
                idx.extend(ra);
            }
            if !bn {
                idx.extend(rb.map(|j| j + shift));
            }
            rows.push(Some(idx));
            continue;
        }
        if an || bn {
            rows.push(None);
            continue;
        }
        let ea = scalars(la.values(), ra.clone())?;
        let eb = scalars(lb.values(), rb.clone())?;
        let mut seen = HashSet::new();
        let mut idx = Vec::new();
        match op {
            "ARRAY_UNION" => {
                for (k, e) in ea.into_iter().enumerate() {
                    if seen.insert(e) {
                        idx.push(ra.start + k);
                    }
                }
                for (k, e) in eb.into_iter().enumerate() {
                    if seen.insert(e) {
                        idx.push(rb.start + k + shift);
                    }
                }
            }
            _ => {
                let other: HashSet<ScalarValue> = eb.into_iter().collect();
                let want = op == "ARRAY_INTERSECT";
                for (k, e) in ea.into_iter().enumerate() {
                    if other.contains(&e) == want && seen.insert(e) {
                        idx.push(ra.start + k);
                    }
                }
            }
        }
        rows.push(Some(idx));
    }
    build_list(&values, rows)
}

#[cfg(test)]
mod tests;
