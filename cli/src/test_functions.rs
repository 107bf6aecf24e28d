//! The aggregate functions of ksqlDB's test jar (`io.confluent.ksql.function.udaf` in
//! ksqldb-engine's tests), which ksqlDB's QTT cases call as a user's `ext/` UDAFs: VAR_ARG,
//! MID_VAR_ARG, MULTI_ARG, FOUR_ARG, FIVE_ARG, GENERIC_VAR_ARG, OBJ_COL_ARG and test_udaf.
//!
//! They are registered by `brook qtt` and `brook test-runner` only (see [`register`]), never
//! by the server: they exist to run ksqlDB's conformance cases.

use std::sync::{Arc, Once};

use brook_planner::udaf::arrow::array::{Array, ArrayRef, Int32Array, ListArray, StructArray};
use brook_planner::udaf::arrow::buffer::OffsetBuffer;
use brook_planner::udaf::arrow::datatypes::{DataType, Field, Fields};
use brook_planner::udaf::{
    bind_first, rejected, Param, Resolved, ScalarValue, Signature, Udaf, UdafArg, UdafError,
    UdafFunction,
};
use brook_planner::PlanError;
use brook_sql::Type;

/// Registers the test jar's functions (once per process; later calls do nothing).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for udaf in functions() {
            brook_planner::udaf::register(udaf);
        }
    });
}

/// The test jar's functions.
pub fn functions() -> Vec<Arc<dyn Udaf>> {
    let long = || Param::of(Type::Bigint);
    let string = || Param::of(Type::String);
    let int = || Param::of(Type::Int);
    vec![
        Arc::new(LengthSumUdaf {
            name: "VAR_ARG",
            description: "Returns the sum of the provided longs and lengths of strings.",
            signature: Signature::new(vec![long(), string().variadic()], Vec::new()),
            init: Init::None,
        }),
        Arc::new(LengthSumUdaf {
            name: "MID_VAR_ARG",
            description: "Returns the sum of the provided longs, lengths of strings, and \
                          initial arguments.",
            signature: Signature::new(vec![long(), string().variadic()], vec![int(), int()]),
            init: Init::AddedByMap,
        }),
        Arc::new(LengthSumUdaf {
            name: "MULTI_ARG",
            description: "Returns the sum of the provided longs and lengths of strings.",
            signature: Signature::new(vec![long(), string()], vec![int(), string().variadic()]),
            init: Init::InitialValue,
        }),
        Arc::new(LengthSumUdaf {
            name: "FOUR_ARG",
            description: "Returns the sum of the provided longs and lengths of strings.",
            signature: Signature::new(
                vec![long(), string(), string(), string()],
                vec![int(), string().variadic()],
            ),
            init: Init::InitialValue,
        }),
        Arc::new(LengthSumUdaf {
            name: "FIVE_ARG",
            description: "Returns the sum of the provided longs, lengths of strings, and \
                          integers.",
            signature: Signature::new(
                vec![long(), string(), string(), string(), int()],
                vec![int(), string().variadic()],
            ),
            init: Init::InitialValue,
        }),
        Arc::new(CollectFirstUdaf {
            name: "GENERIC_VAR_ARG",
            signature: Signature::new(
                vec![
                    Param::generic("A"),
                    Param::generic("B"),
                    Param::generic("C").variadic(),
                ],
                Vec::new(),
            ),
        }),
        Arc::new(CollectFirstUdaf {
            name: "OBJ_COL_ARG",
            signature: Signature::new(vec![int(), Param::any().variadic()], Vec::new()),
        }),
        Arc::new(TestUdaf),
    ]
}

fn failed(function: &str, message: impl Into<String>) -> UdafError {
    UdafError::failed(function, message)
}

/// An integer argument's value; `None` for NULL or a value of another type.
fn int_value(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::Int8(x) => x.map(i64::from),
        ScalarValue::Int16(x) => x.map(i64::from),
        ScalarValue::Int32(x) => x.map(i64::from),
        ScalarValue::Int64(x) => *x,
        _ => None,
    }
}

/// Java's `String.length()`: UTF-16 code units.
fn java_length(s: &str) -> i64 {
    s.encode_utf16().count() as i64
}

fn text_value(v: &ScalarValue) -> Option<&str> {
    match v {
        ScalarValue::Utf8(x) | ScalarValue::LargeUtf8(x) | ScalarValue::Utf8View(x) => x.as_deref(),
        _ => None,
    }
}

fn long_state(function: &str, v: &ScalarValue) -> Result<i64, UdafError> {
    match v {
        ScalarValue::Int64(Some(n)) => Ok(*n),
        other => Err(failed(function, format!("unexpected state {other:?}"))),
    }
}

/// What a [`LengthSumUdaf`]'s init arguments do.
#[derive(Debug, Clone, Copy)]
enum Init {
    None,
    /// Two INTEGERs whose sum `map` adds to the state (MID_VAR_ARG).
    AddedByMap,
    /// An INTEGER and any number of STRINGs: the INTEGER plus the strings' lengths is the
    /// initial state (MULTI_ARG, FOUR_ARG, FIVE_ARG).
    InitialValue,
}

/// The test jar's functions that sum their integer arguments and the lengths of their
/// string arguments into a BIGINT, NULLs counting 0.
#[derive(Debug)]
struct LengthSumUdaf {
    name: &'static str,
    description: &'static str,
    signature: Signature,
    init: Init,
}

impl Udaf for LengthSumUdaf {
    fn name(&self) -> &str {
        self.name
    }

    fn description(&self) -> &str {
        self.description
    }

    fn signatures(&self) -> Vec<String> {
        vec![self.signature.display()]
    }

    fn resolve(&self, args: &[UdafArg]) -> Result<Resolved, PlanError> {
        let (_, binding) = bind_first(std::slice::from_ref(&self.signature), args)
            .ok_or_else(|| rejected(self.name, args))?;
        let mut init_values = Vec::new();
        for i in binding.columns..args.len() {
            init_values.push(UdafArg::init_value(args, i, self.name)?.clone());
        }
        let init_sum: i64 = init_values
            .iter()
            .map(|v| int_value(v).or_else(|| text_value(v).map(java_length)))
            .map(|n| n.unwrap_or(0))
            .sum();
        let (initial, constant) = match self.init {
            Init::None => (0, 0),
            Init::AddedByMap => (0, init_sum),
            Init::InitialValue => (init_sum, 0),
        };
        Ok(Resolved {
            columns: binding.column_types,
            aggregate_type: Type::Bigint,
            return_type: Type::Bigint,
            function: Arc::new(LengthSum {
                name: self.name,
                initial,
                constant,
            }),
        })
    }
}

#[derive(Debug)]
struct LengthSum {
    name: &'static str,
    initial: i64,
    /// Added to the state by `map`.
    constant: i64,
}

impl UdafFunction for LengthSum {
    fn initialize(&self) -> Result<ScalarValue, UdafError> {
        Ok(ScalarValue::Int64(Some(self.initial)))
    }

    fn aggregate(
        &self,
        args: &[ScalarValue],
        state: ScalarValue,
    ) -> Result<ScalarValue, UdafError> {
        let mut sum = long_state(self.name, &state)?;
        for a in args {
            let n = int_value(a).or_else(|| text_value(a).map(java_length));
            // Java's long arithmetic wraps.
            sum = sum.wrapping_add(n.unwrap_or(0));
        }
        Ok(ScalarValue::Int64(Some(sum)))
    }

    fn merge(&self, a: ScalarValue, b: ScalarValue) -> Result<ScalarValue, UdafError> {
        let sum = long_state(self.name, &a)?.wrapping_add(long_state(self.name, &b)?);
        Ok(ScalarValue::Int64(Some(sum)))
    }

    fn map(&self, state: &ScalarValue) -> Result<ScalarValue, UdafError> {
        let sum = long_state(self.name, state)?.wrapping_add(self.constant);
        Ok(ScalarValue::Int64(Some(sum)))
    }
}

/// GENERIC_VAR_ARG and OBJ_COL_ARG: the list of the first argument's values, from the rows
/// whose arguments are all non-NULL.
#[derive(Debug)]
struct CollectFirstUdaf {
    name: &'static str,
    signature: Signature,
}

impl Udaf for CollectFirstUdaf {
    fn name(&self) -> &str {
        self.name
    }

    fn description(&self) -> &str {
        "Returns an array of rows where all the given columns are non-null."
    }

    fn signatures(&self) -> Vec<String> {
        vec![self.signature.display()]
    }

    fn resolve(&self, args: &[UdafArg]) -> Result<Resolved, PlanError> {
        let (_, binding) = bind_first(std::slice::from_ref(&self.signature), args)
            .ok_or_else(|| rejected(self.name, args))?;
        // The list holds the first argument's type (a NULL first argument: INTEGER's).
        let (first_type, item) = match args.first() {
            Some(UdafArg {
                ty: Some(t),
                data_type,
                ..
            }) => (t.clone(), data_type.clone()),
            _ => (Type::Int, DataType::Int32),
        };
        let list_type = Type::Array(Box::new(first_type));
        Ok(Resolved {
            columns: binding.column_types,
            aggregate_type: list_type.clone(),
            return_type: list_type,
            function: Arc::new(CollectFirst {
                name: self.name,
                item,
            }),
        })
    }
}

#[derive(Debug)]
struct CollectFirst {
    name: &'static str,
    item: DataType,
}

impl CollectFirst {
    /// The list's values.
    fn values(&self, state: &ScalarValue) -> Result<ArrayRef, UdafError> {
        match state {
            ScalarValue::List(l) if l.len() == 1 => Ok(l.value(0)),
            other => Err(failed(self.name, format!("unexpected state {other:?}"))),
        }
    }

    fn list(&self, values: ArrayRef) -> Result<ScalarValue, UdafError> {
        let field = Arc::new(Field::new_list_field(self.item.clone(), true));
        let list = ListArray::try_new(
            field,
            OffsetBuffer::from_lengths([values.len()]),
            values,
            None,
        )
        .map_err(|e| failed(self.name, e.to_string()))?;
        Ok(ScalarValue::List(Arc::new(list)))
    }

    fn concat(&self, parts: &[&dyn Array]) -> Result<ScalarValue, UdafError> {
        let values = brook_planner::udaf::arrow::compute::concat(parts)
            .map_err(|e| failed(self.name, e.to_string()))?;
        self.list(values)
    }
}

impl UdafFunction for CollectFirst {
    fn initialize(&self) -> Result<ScalarValue, UdafError> {
        self.list(brook_planner::udaf::arrow::array::new_empty_array(
            &self.item,
        ))
    }

    fn aggregate(
        &self,
        args: &[ScalarValue],
        state: ScalarValue,
    ) -> Result<ScalarValue, UdafError> {
        let Some(first) = args.first() else {
            return Ok(state);
        };
        if args.iter().any(ScalarValue::is_null) {
            return Ok(state);
        }
        let values = self.values(&state)?;
        let item = first
            .to_array()
            .map_err(|e| failed(self.name, e.to_string()))?;
        self.concat(&[values.as_ref(), item.as_ref()])
    }

    fn merge(&self, a: ScalarValue, b: ScalarValue) -> Result<ScalarValue, UdafError> {
        let (a, b) = (self.values(&a)?, self.values(&b)?);
        self.concat(&[a.as_ref(), b.as_ref()])
    }

    fn map(&self, state: &ScalarValue) -> Result<ScalarValue, UdafError> {
        Ok(state.clone())
    }
}

/// `test_udaf`: sums of BIGINTs and INTEGERs (table functions: they can undo), of DOUBLEs,
/// of strings' lengths (from an initial string's length), and field-wise of
/// `STRUCT<A INTEGER, B INTEGER>`s.
#[derive(Debug)]
struct TestUdaf;

const TEST_UDAF: &str = "test_udaf";

/// `STRUCT<A INTEGER, B INTEGER>`.
fn struct_ab() -> Type {
    let field = |name: &str| brook_sql::StructField {
        name: brook_sql::sqlparser::ast::Ident::new(name),
        ty: Type::Int,
    };
    Type::Struct(vec![field("A"), field("B")])
}

impl TestUdaf {
    fn signatures() -> Vec<Signature> {
        vec![
            Signature::new(vec![Param::of(Type::Bigint)], Vec::new()),
            Signature::new(vec![Param::of(Type::Int)], Vec::new()),
            Signature::new(vec![Param::of(Type::Double)], Vec::new()),
            Signature::new(vec![Param::of(Type::String)], vec![Param::of(Type::String)]),
            Signature::new(vec![Param::of(struct_ab())], Vec::new()),
        ]
    }
}

impl Udaf for TestUdaf {
    fn name(&self) -> &str {
        TEST_UDAF
    }

    fn description(&self) -> &str {
        "test_udaf"
    }

    fn signatures(&self) -> Vec<String> {
        Self::signatures().iter().map(Signature::display).collect()
    }

    fn resolve(&self, args: &[UdafArg]) -> Result<Resolved, PlanError> {
        let (overload, binding) =
            bind_first(&Self::signatures(), args).ok_or_else(|| rejected(TEST_UDAF, args))?;
        let (kind, state_type): (TestKind, Type) = match overload {
            0 => (TestKind::Long, Type::Bigint),
            1 => (TestKind::Int, Type::Bigint),
            2 => (TestKind::Double, Type::Double),
            3 => {
                let init = UdafArg::init_value(args, binding.columns, TEST_UDAF)?;
                let initial = text_value(init).map(java_length).ok_or_else(|| {
                    PlanError::Invalid(format!("{TEST_UDAF}'s initial string must not be NULL"))
                })?;
                (TestKind::Length(initial), Type::Bigint)
            }
            _ => (TestKind::Struct, struct_ab()),
        };
        Ok(Resolved {
            columns: binding.column_types,
            aggregate_type: state_type.clone(),
            return_type: state_type,
            function: Arc::new(kind),
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum TestKind {
    Long,
    Int,
    Double,
    /// Lengths of strings, from this initial value.
    Length(i64),
    Struct,
}

/// A `STRUCT<A INTEGER, B INTEGER>` value.
fn ab(a: Option<i32>, b: Option<i32>) -> ScalarValue {
    let fields = Fields::from(vec![
        Field::new("A", DataType::Int32, true),
        Field::new("B", DataType::Int32, true),
    ]);
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int32Array::from(vec![a])),
        Arc::new(Int32Array::from(vec![b])),
    ];
    ScalarValue::Struct(Arc::new(StructArray::new(fields, columns, None)))
}

/// A struct value's A and B fields (by name, any case); `None` for NULL.
fn ab_fields(v: &ScalarValue) -> Option<(Option<i32>, Option<i32>)> {
    let ScalarValue::Struct(s) = v else {
        return None;
    };
    if s.is_null(0) {
        return None;
    }
    let field = |name: &str| {
        let DataType::Struct(fields) = s.data_type() else {
            return None;
        };
        let i = fields
            .iter()
            .position(|f| f.name().eq_ignore_ascii_case(name))?;
        let col = s.column(i).as_any().downcast_ref::<Int32Array>()?;
        (!col.is_null(0)).then(|| col.value(0))
    };
    Some((field("A"), field("B")))
}

impl UdafFunction for TestKind {
    fn initialize(&self) -> Result<ScalarValue, UdafError> {
        Ok(match self {
            TestKind::Long | TestKind::Int => ScalarValue::Int64(Some(0)),
            TestKind::Double => ScalarValue::Float64(Some(0.0)),
            TestKind::Length(n) => ScalarValue::Int64(Some(*n)),
            TestKind::Struct => ab(Some(0), Some(0)),
        })
    }

    // ksqlDB's Java versions throw on a NULL argument; here a NULL leaves the state as it is.
    fn aggregate(
        &self,
        args: &[ScalarValue],
        state: ScalarValue,
    ) -> Result<ScalarValue, UdafError> {
        let Some(v) = args.first() else {
            return Ok(state);
        };
        Ok(match self {
            TestKind::Long | TestKind::Int => match int_value(v) {
                Some(n) => ScalarValue::Int64(Some(long_state(TEST_UDAF, &state)?.wrapping_add(n))),
                None => state,
            },
            TestKind::Double => match (v, &state) {
                (ScalarValue::Float64(Some(x)), ScalarValue::Float64(Some(s))) => {
                    ScalarValue::Float64(Some(s + x))
                }
                _ => state,
            },
            TestKind::Length(_) => match text_value(v) {
                Some(s) => ScalarValue::Int64(Some(
                    long_state(TEST_UDAF, &state)?.wrapping_add(java_length(s)),
                )),
                None => state,
            },
            TestKind::Struct => match (ab_fields(v), ab_fields(&state)) {
                (Some((a1, b1)), Some((a2, b2))) => {
                    let add = |x: Option<i32>, y: Option<i32>| {
                        Some(x.unwrap_or(0).wrapping_add(y.unwrap_or(0)))
                    };
                    ab(add(a1, a2), add(b1, b2))
                }
                _ => state,
            },
        })
    }

    fn merge(&self, a: ScalarValue, b: ScalarValue) -> Result<ScalarValue, UdafError> {
        match self {
            // The state is of the argument's type: merging is aggregating.
            TestKind::Double | TestKind::Struct => self.aggregate(&[b], a),
            _ => Ok(ScalarValue::Int64(Some(
                long_state(TEST_UDAF, &a)?.wrapping_add(long_state(TEST_UDAF, &b)?),
            ))),
        }
    }

    fn map(&self, state: &ScalarValue) -> Result<ScalarValue, UdafError> {
        Ok(state.clone())
    }

    fn supports_undo(&self) -> bool {
        matches!(self, TestKind::Long | TestKind::Int)
    }

    fn undo(&self, args: &[ScalarValue], state: ScalarValue) -> Result<ScalarValue, UdafError> {
        if !self.supports_undo() {
            return Err(UdafError::NoUndo(TEST_UDAF.into()));
        }
        Ok(match args.first().and_then(int_value) {
            Some(n) => ScalarValue::Int64(Some(long_state(TEST_UDAF, &state)?.wrapping_sub(n))),
            None => state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arg(ty: Type, data_type: DataType, literal: Option<ScalarValue>) -> UdafArg {
        UdafArg {
            ty: Some(ty),
            data_type,
            literal,
        }
    }

    fn find(name: &str) -> Arc<dyn Udaf> {
        functions()
            .into_iter()
            .find(|f| f.name() == name)
            .unwrap_or_else(|| panic!("{name} is one of the test jar's functions"))
    }

    #[test]
    fn init_arguments_set_the_start_or_the_mapped_constant() {
        let int = |n: i32| {
            arg(
                Type::Int,
                DataType::Int32,
                Some(ScalarValue::Int32(Some(n))),
            )
        };
        let long = arg(Type::Bigint, DataType::Int64, None);
        let text = |s: &str| {
            arg(
                Type::String,
                DataType::Utf8,
                Some(ScalarValue::Utf8(Some(s.into()))),
            )
        };
        // MULTI_ARG(x, s, 5, '10', '3'): starts at 5 + 2 + 1.
        let r = find("MULTI_ARG")
            .resolve(&[long.clone(), text("ab"), int(5), text("10"), text("3")])
            .expect("resolves");
        assert_eq!(r.columns.len(), 2);
        assert_eq!(r.function.initialize(), Ok(ScalarValue::Int64(Some(8))));
        // MID_VAR_ARG(x, 7, 3): map adds 10; sessions merge by adding.
        let r = find("MID_VAR_ARG")
            .resolve(&[long, int(7), int(3)])
            .expect("resolves");
        assert_eq!(r.columns.len(), 1);
        let f = r.function;
        let s = f
            .aggregate(&[ScalarValue::Int64(Some(4))], ScalarValue::Int64(Some(0)))
            .and_then(|s| f.merge(s, ScalarValue::Int64(Some(1))))
            .and_then(|s| f.map(&s));
        assert_eq!(s, Ok(ScalarValue::Int64(Some(15))));
    }

    #[test]
    fn generic_var_arg_collects_complete_rows_and_merges_lists() {
        let double = || arg(Type::Double, DataType::Float64, None);
        let r = find("GENERIC_VAR_ARG")
            .resolve(&[double(), double(), double()])
            .expect("resolves");
        assert_eq!(r.return_type, Type::Array(Box::new(Type::Double)));
        let f = r.function;
        let row = |x: Option<f64>, y: Option<f64>| {
            [
                ScalarValue::Float64(x),
                ScalarValue::Float64(Some(0.0)),
                ScalarValue::Float64(y),
            ]
        };
        let a = f
            .initialize()
            .and_then(|s| f.aggregate(&row(Some(1.0), Some(1.0)), s))
            .and_then(|s| f.aggregate(&row(Some(2.0), None), s))
            .expect("aggregates");
        let b = f
            .initialize()
            .and_then(|s| f.aggregate(&row(Some(3.0), Some(0.0)), s))
            .expect("aggregates");
        let merged = f.merge(a, b).expect("merges");
        let want = ScalarValue::List(ScalarValue::new_list_nullable(
            &[
                ScalarValue::Float64(Some(1.0)),
                ScalarValue::Float64(Some(3.0)),
            ],
            &DataType::Float64,
        ));
        assert_eq!(merged, want);
        // Mixed types where one type variable binds.
        let e = find("GENERIC_VAR_ARG")
            .resolve(&[
                double(),
                double(),
                double(),
                arg(Type::String, DataType::Utf8, None),
            ])
            .err();
        assert_eq!(
            e,
            Some(PlanError::Invalid(
                "Function 'GENERIC_VAR_ARG' does not accept parameters (DOUBLE, DOUBLE, DOUBLE, STRING).".into()
            ))
        );
    }
}
