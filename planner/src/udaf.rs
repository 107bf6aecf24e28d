//! User-defined aggregate functions (UDAFs): the extension point through which a Rust crate
//! adds an aggregate function, as a jar in ksqlDB's `ext/` directory does.
//!
//! An implementation of [`Udaf`] names the function and resolves a call's argument types
//! (ksqlDB's `@UdafFactory` overloads, variadic arguments, literal "init" arguments) into a
//! [`Resolved`] call: the state and result types and a [`UdafFunction`], whose hooks mirror
//! ksqlDB's `Udaf`/`TableUdaf` (initialize, aggregate, merge, map and, for tables, undo) over
//! DataFusion [`ScalarValue`]s. [`register`] makes a function callable: the planner looks a
//! name up here when it is not a built-in aggregate, and the runtime's aggregation drives the
//! hooks (its changelog keeps each group's state value, so state survives restarts).
//!
//! The registry is process-wide, as a ksqlDB server's function registry is: whatever
//! registers functions (a test harness, an embedding program) does so once at start-up.
//! [`Signature`] covers the common ways of matching arguments so that an implementation's
//! `resolve` stays short.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::ops::Range;
use std::sync::{Arc, LazyLock, RwLock};

use brook_sql::Type;
use thiserror::Error;

use crate::PlanError;

/// Re-exported so that implementations use the exact versions the planner and runtime use.
pub use arrow;
pub use datafusion::common::ScalarValue;

/// A failure inside a UDAF's hooks while a query runs.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum UdafError {
    /// The function could not compute a value (a bad argument, an overflow…).
    #[error("{function}: {message}")]
    Failed { function: String, message: String },
    /// `undo` was called on a function that cannot take a value back.
    #[error("{0} cannot take a value back out of its aggregate")]
    NoUndo(String),
}

impl UdafError {
    pub fn failed(function: &str, message: impl Into<String>) -> Self {
        UdafError::Failed {
            function: function.to_string(),
            message: message.into(),
        }
    }
}

/// One argument of a call, as the planner compiled it.
#[derive(Debug, Clone)]
pub struct UdafArg {
    /// Its ksqlDB type; `None` for a bare NULL.
    pub ty: Option<Type>,
    /// Its Arrow type (what the hooks' values for it are).
    pub data_type: arrow::datatypes::DataType,
    /// Its value, when it reads no column (a literal, or an expression of literals):
    /// init arguments must have one.
    pub literal: Option<ScalarValue>,
}

impl UdafArg {
    /// The value of init argument `index` (0-based among all the call's arguments), or
    /// ksqlDB's refusal of a non-literal one.
    pub fn init_value<'a>(
        args: &'a [UdafArg],
        index: usize,
        function: &str,
    ) -> Result<&'a ScalarValue, PlanError> {
        args.get(index)
            .and_then(|a| a.literal.as_ref())
            .ok_or_else(|| {
                PlanError::Invalid(format!(
                    "Parameter {} passed to function {function} must be a literal constant.",
                    index + 1
                ))
            })
    }
}

/// A call resolved by [`Udaf::resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The per-row (column) arguments: the call's first `columns.len()` arguments, each read
    /// for every row and cast to the type given (`None`: passed as it is). The arguments
    /// after them are init arguments, which the implementation consumed while resolving.
    pub columns: Vec<Option<Type>>,
    /// The type of the state between rows (ksqlDB's aggregate type): it decides whether the
    /// value format can hold the state (DELIMITED holds no ARRAY, MAP or STRUCT).
    pub aggregate_type: Type,
    /// The type `map` returns.
    pub return_type: Type,
    pub function: Arc<dyn UdafFunction>,
}

/// An aggregate function that can be registered (ksqlDB's `@UdafDescription` class with its
/// `@UdafFactory` methods).
pub trait Udaf: Send + Sync + Debug {
    /// The name calls use (matched case-insensitively); ksqlDB's messages quote it as given.
    fn name(&self) -> &str;

    fn description(&self) -> &str {
        ""
    }

    /// The overloads, as users read them (`DESCRIBE FUNCTION`), e.g. `(BIGINT, STRING...)`.
    fn signatures(&self) -> Vec<String> {
        Vec::new()
    }

    /// Resolves a call's arguments, or refuses them with ksqlDB's message (see
    /// [`rejected`]).
    fn resolve(&self, args: &[UdafArg]) -> Result<Resolved, PlanError>;
}

/// The value-level hooks of one resolved call (ksqlDB's `Udaf`, with `TableUdaf`'s `undo`).
/// A state value is handed over and returned, never shared, so hooks may reuse it.
pub trait UdafFunction: Send + Sync + Debug {
    /// The state of a group that has seen no row.
    fn initialize(&self) -> Result<ScalarValue, UdafError>;

    /// Folds one row's column arguments (in call order) into the state.
    fn aggregate(&self, args: &[ScalarValue], state: ScalarValue)
        -> Result<ScalarValue, UdafError>;

    /// Combines two states (session windows merging: `a` is the older).
    fn merge(&self, a: ScalarValue, b: ScalarValue) -> Result<ScalarValue, UdafError>;

    /// The result for a state.
    fn map(&self, state: &ScalarValue) -> Result<ScalarValue, UdafError>;

    /// Whether [`UdafFunction::undo`] is implemented: only then can the function aggregate a
    /// table, whose rows change and go.
    fn supports_undo(&self) -> bool {
        false
    }

    /// Takes one row's column arguments back out of the state.
    fn undo(&self, _args: &[ScalarValue], _state: ScalarValue) -> Result<ScalarValue, UdafError> {
        Err(UdafError::NoUndo(std::any::type_name::<Self>().to_string()))
    }
}

/// ksqlDB's message when no overload takes these argument types.
pub fn rejected(function: &str, args: &[UdafArg]) -> PlanError {
    let types: Vec<String> = args
        .iter()
        .map(|a| {
            a.ty.as_ref()
                .map(|t| t.to_string())
                .unwrap_or("NULL".into())
        })
        .collect();
    PlanError::Invalid(format!(
        "Function '{function}' does not accept parameters ({}).",
        types.join(", ")
    ))
}

static REGISTRY: LazyLock<RwLock<BTreeMap<String, Arc<dyn Udaf>>>> =
    LazyLock::new(|| RwLock::new(BTreeMap::new()));

/// Makes `udaf` callable by its name; a function registered earlier under the same name is
/// replaced. Built-in aggregates keep their names: a UDAF of the same name is never called.
pub fn register(udaf: Arc<dyn Udaf>) {
    let name = udaf.name().to_uppercase();
    // A panic while holding the lock leaves the map itself intact: keep using it.
    let mut map = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    map.insert(name, udaf);
}

/// Removes a registered function; whether there was one.
pub fn unregister(name: &str) -> bool {
    let mut map = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    map.remove(&name.to_uppercase()).is_some()
}

/// The function registered under `name` (any case).
pub fn lookup(name: &str) -> Option<Arc<dyn Udaf>> {
    let map = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    map.get(&name.to_uppercase()).cloned()
}

/// Every registered function, by name.
pub fn registered() -> Vec<Arc<dyn Udaf>> {
    let map = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    map.values().cloned().collect()
}

/// What a parameter accepts.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamType {
    /// This type, or one ksqlDB widens to it implicitly (INTEGER → BIGINT → DECIMAL →
    /// DOUBLE) when no overload takes the argument types as they are.
    Exact(Type),
    /// A type variable (Java's `<T>`): every argument bound to the same name has one type.
    Generic(&'static str),
    /// Any type, each argument its own (Java's `Object`).
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    pub ty: ParamType,
    /// Takes any number of arguments (Java's `T...`, `VariadicArgs<T>`), zero included.
    pub variadic: bool,
}

impl Param {
    pub fn of(ty: Type) -> Self {
        Param {
            ty: ParamType::Exact(ty),
            variadic: false,
        }
    }

    pub fn generic(name: &'static str) -> Self {
        Param {
            ty: ParamType::Generic(name),
            variadic: false,
        }
    }

    pub fn any() -> Self {
        Param {
            ty: ParamType::Any,
            variadic: false,
        }
    }

    pub fn variadic(mut self) -> Self {
        self.variadic = true;
        self
    }
}

/// One overload: the column parameters, then the init parameters (a factory's parameters,
/// given as literals after the column arguments). At most one parameter is variadic.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub columns: Vec<Param>,
    pub init: Vec<Param>,
}

/// How a call's arguments bind to a [`Signature`].
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// Per parameter (columns, then init), the arguments it takes.
    pub ranges: Vec<Range<usize>>,
    /// How many leading arguments are column arguments.
    pub columns: usize,
    /// Per column argument, the type it is cast to (`None`: as it is).
    pub column_types: Vec<Option<Type>>,
    /// The types the generic parameters were bound to.
    pub generics: BTreeMap<&'static str, Type>,
}

impl Signature {
    pub fn new(columns: Vec<Param>, init: Vec<Param>) -> Self {
        Signature { columns, init }
    }

    /// The overload as users read it: `(BIGINT, STRING..., INTEGER)`.
    pub fn display(&self) -> String {
        let params: Vec<String> = self
            .columns
            .iter()
            .chain(&self.init)
            .map(|p| {
                let t = match &p.ty {
                    ParamType::Exact(t) => t.to_string(),
                    ParamType::Generic(g) => g.to_string(),
                    ParamType::Any => "ANY".to_string(),
                };
                if p.variadic {
                    format!("{t}...")
                } else {
                    t
                }
            })
            .collect();
        format!("({})", params.join(", "))
    }

    /// Binds `args` to the parameters; `widen` allows ksqlDB's implicit numeric widening.
    pub fn bind(&self, args: &[UdafArg], widen: bool) -> Option<Binding> {
        let params: Vec<&Param> = self.columns.iter().chain(&self.init).collect();
        let variadic = params.iter().position(|p| p.variadic);
        let ranges: Vec<Range<usize>> = match variadic {
            None if params.len() == args.len() => (0..args.len()).map(|i| i..i + 1).collect(),
            None => return None,
            Some(v) => {
                let fixed = params.len() - 1;
                let many = args.len().checked_sub(fixed)?;
                (0..params.len())
                    .map(|i| match i.cmp(&v) {
                        std::cmp::Ordering::Less => i..i + 1,
                        std::cmp::Ordering::Equal => v..v + many,
                        std::cmp::Ordering::Greater => i - 1 + many..i + many,
                    })
                    .collect()
            }
        };
        let mut generics: BTreeMap<&'static str, Type> = BTreeMap::new();
        let mut column_types = Vec::new();
        for (i, (p, r)) in params.iter().zip(&ranges).enumerate() {
            for a in &args[r.clone()] {
                let cast = match (&p.ty, &a.ty) {
                    // A bare NULL fits any parameter.
                    (ParamType::Exact(t), None) => Some(t.clone()),
                    (_, None) | (ParamType::Any, _) => None,
                    (ParamType::Exact(t), Some(at)) => {
                        if same_type(t, at) {
                            None
                        } else if widen && widens_to(at, t) {
                            Some(t.clone())
                        } else {
                            return None;
                        }
                    }
                    (ParamType::Generic(g), Some(at)) => {
                        match generics.get(g) {
                            Some(bound) if !same_type(bound, at) => return None,
                            Some(_) => {}
                            None => {
                                generics.insert(g, at.clone());
                            }
                        }
                        None
                    }
                };
                if i < self.columns.len() {
                    column_types.push(cast);
                }
            }
        }
        let columns = match self.columns.len() {
            0 => 0,
            n => ranges[n - 1].end,
        };
        Some(Binding {
            ranges,
            columns,
            column_types,
            generics,
        })
    }
}

/// The first overload (index and binding) that takes `args`: exact types first, then with
/// implicit widening, as ksqlDB's function index resolves.
pub fn bind_first(signatures: &[Signature], args: &[UdafArg]) -> Option<(usize, Binding)> {
    [false, true].into_iter().find_map(|widen| {
        signatures
            .iter()
            .enumerate()
            .find_map(|(i, s)| s.bind(args, widen).map(|b| (i, b)))
    })
}

/// Type equality as calls see it: struct field names compare case-insensitively.
pub fn same_type(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::Array(x), Type::Array(y)) => same_type(x, y),
        (Type::Map(k1, v1), Type::Map(k2, v2)) => same_type(k1, k2) && same_type(v1, v2),
        (Type::Struct(f1), Type::Struct(f2)) => {
            f1.len() == f2.len()
                && f1.iter().zip(f2).all(|(x, y)| {
                    x.name.value.eq_ignore_ascii_case(&y.name.value) && same_type(&x.ty, &y.ty)
                })
        }
        (Type::Custom(x), Type::Custom(y)) => x.value.eq_ignore_ascii_case(&y.value),
        _ => a == b,
    }
}

/// ksqlDB's implicit widening of numbers: INTEGER → BIGINT → DECIMAL → DOUBLE.
fn widens_to(from: &Type, to: &Type) -> bool {
    let rank = |t: &Type| match t {
        Type::Int => Some(0),
        Type::Bigint => Some(1),
        Type::Decimal { .. } => Some(2),
        Type::Double => Some(3),
        _ => None,
    };
    matches!((rank(from), rank(to)), (Some(f), Some(t)) if f <= t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::DataType;

    fn arg(ty: Type) -> UdafArg {
        UdafArg {
            ty: Some(ty),
            data_type: DataType::Null,
            literal: None,
        }
    }

    #[derive(Debug)]
    struct Named(&'static str);

    impl Udaf for Named {
        fn name(&self) -> &str {
            self.0
        }

        fn resolve(&self, args: &[UdafArg]) -> Result<Resolved, PlanError> {
            Err(rejected(self.0, args))
        }
    }

    #[test]
    fn the_registry_finds_functions_by_any_case_and_they_count_as_aggregates() {
        register(Arc::new(Named("Planner_Test_Udaf")));
        assert!(lookup("planner_test_udaf").is_some());
        assert!(crate::aggregate::is_aggregate("PLANNER_TEST_UDAF"));
        assert!(registered().iter().any(|u| u.name() == "Planner_Test_Udaf"));
        // Built-in aggregates are not in the registry, and keep their meaning.
        assert!(lookup("SUM").is_none());
        assert!(unregister("PLANNER_TEST_UDAF"));
        assert!(!crate::aggregate::is_aggregate("PLANNER_TEST_UDAF"));
        let e = Named("Mine").resolve(&[arg(Type::Decimal {
            precision: 5,
            scale: 1,
        })]);
        assert_eq!(
            e.err(),
            Some(PlanError::Invalid(
                "Function 'Mine' does not accept parameters (DECIMAL(5, 1)).".into()
            ))
        );
    }

    #[test]
    fn variadic_in_the_middle_binds_what_the_fixed_parameters_leave() {
        let s = Signature::new(
            vec![Param::of(Type::Bigint), Param::of(Type::String).variadic()],
            vec![Param::of(Type::Int), Param::of(Type::Int)],
        );
        let args = [
            arg(Type::Bigint),
            arg(Type::String),
            arg(Type::String),
            arg(Type::Int),
            arg(Type::Int),
        ];
        let b = s.bind(&args, false).expect("binds");
        assert_eq!(b.ranges, vec![0..1, 1..3, 3..4, 4..5]);
        assert_eq!(b.columns, 3);
        // No variadic argument at all.
        let b = s
            .bind(&[arg(Type::Bigint), arg(Type::Int), arg(Type::Int)], false)
            .expect("binds");
        assert_eq!(b.columns, 1);
        // A STRING where the init INTEGER goes.
        assert!(s
            .bind(
                &[arg(Type::Bigint), arg(Type::String), arg(Type::Int)],
                true
            )
            .is_none());
    }

    #[test]
    fn generics_bind_one_type_and_numbers_widen_only_when_asked() {
        let s = Signature::new(vec![Param::generic("C").variadic()], Vec::new());
        assert!(s
            .bind(&[arg(Type::Double), arg(Type::Double)], false)
            .is_some());
        assert!(s
            .bind(&[arg(Type::Double), arg(Type::String)], true)
            .is_none());
        let s = Signature::new(vec![Param::of(Type::Bigint)], Vec::new());
        assert!(s.bind(&[arg(Type::Int)], false).is_none());
        let b = s.bind(&[arg(Type::Int)], true).expect("widens");
        assert_eq!(b.column_types, vec![Some(Type::Bigint)]);
        assert!(s.bind(&[arg(Type::String)], true).is_none());
    }
}
