//! Pull queries: `SELECT … FROM table [WHERE …] [LIMIT n];` without EMIT, answered from the
//! table's materialized rows (kept by the query that writes the table), not by reading its
//! topic. The filter and projection are the ones a push query runs, over a snapshot.

use brook_planner::query::{plan_stateless, Target};
use brook_planner::PlanError;
use brook_runtime::operator::{FilterProject, Operator};
use brook_runtime::session::StatementError;
use brook_runtime::RuntimeError;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{DataType, Field, Schema};
use brook_planner::schema::{Column, LogicalSchema, Namespace, WINDOWEND, WINDOWSTART};
use brook_sql::Type;
use datafusion::common::ScalarValue;
use tokio::sync::mpsc;

use super::{Engine, PushQuery};

fn refused(what: &str) -> StatementError {
    PlanError::Invalid(format!(
        "Pull queries don't support {what} clauses. See https://cnfl.io/queries for more info.\nAdd EMIT CHANGES if you intended to issue a push query."
    ))
    .into()
}

impl Engine {
    /// Runs a pull query; its rows arrive on the returned query's channel, which then closes.
    pub async fn pull_query(&self, query: &brook_sql::Query) -> Result<PushQuery, StatementError> {
        if !query.group_by.is_empty() {
            return Err(refused("GROUP BY"));
        }
        if query.window.is_some() {
            return Err(refused("WINDOW"));
        }
        if !query.joins.is_empty() {
            return Err(refused("JOIN"));
        }
        let catalog = self.catalog().await;
        let source = catalog.source(&query.from.name.value)?.clone();
        check_columns(query, source.window.is_some())?;
        let store = self
            .queries
            .lock()
            .await
            .values()
            .find(|q| q.sink == source.name)
            .and_then(|q| q.materialized.clone());
        if store.is_none() && source.kind == brook_sql::SourceKind::Stream {
            return self.pull_stream(query, &catalog, &source).await;
        }
        let Some(store) = store else {
            let n = &source.name;
            return Err(PlanError::Invalid(format!(
                "The `{n}` table isn't queryable. To derive a queryable table, you can do 'CREATE TABLE QUERYABLE_{n} AS SELECT * FROM {n}'. See https://cnfl.io/queries for more info."
            ))
            .into());
        };
        let plan = plan_stateless(query, &catalog, Target::Pull).map_err(|e| match e {
            // ksqlDB names the WHERE clause it could not compile.
            PlanError::Invalid(m) if m.starts_with("Error in WHERE expression:") => {
                match &query.selection {
                    Some(w) => PlanError::Invalid(format!("{m}\nStatement: ({w})")),
                    None => PlanError::Invalid(m),
                }
            }
            other => other,
        })?;
        let mut schema = plan.output.clone();
        let mut operator = FilterProject::new(plan, &catalog)?;
        let snapshot = {
            let store = store.read().map_err(|_| {
                RuntimeError::State("a materialized table's lock is poisoned".into())
            })?;
            // A lookup by key reads that key's rows only; the filter still runs over them.
            match key_lookup(query, &source, store.schema()) {
                Some(key) => store.get_prefix(&[key])?,
                None => store.snapshot()?,
            }
        };
        let mut out = Vec::new();
        if let Some(rows) = snapshot {
            operator.process(rows, &mut out)?;
        }
        if source.window.is_some() {
            let star = query
                .projection
                .iter()
                .any(|p| matches!(p, brook_sql::sqlparser::ast::SelectItem::Wildcard(_)));
            out = window_bounds(out, &mut schema, star)?;
        }
        let rx = limited(out, query.limit).await;
        let seq = self
            .transient_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(PushQuery {
            id: format!("pull_{}_{seq}", source.name),
            schema,
            rows: rx,
            // The rows are already cut to the LIMIT, and a pull query's response ends
            // without ksqlDB's push-query "Limit Reached" message.
            limit: None,
            pull: true,
            completed: false,
        })
    }

    /// A pull query over a stream: its topic read from the beginning up to the end it had
    /// when the query came, filtered and projected as a push query would be.
    async fn pull_stream(
        &self,
        query: &brook_sql::Query,
        catalog: &brook_planner::catalog::Catalog,
        source: &brook_planner::catalog::Source,
    ) -> Result<PushQuery, StatementError> {
        let plan = plan_stateless(query, catalog, Target::Transient)?;
        let schema = plan.output.clone();
        let mut operator = FilterProject::new(plan, catalog)?;
        let records = read_topic(self.bootstrap.clone(), source.topic.clone()).await?;
        let mut out = Vec::new();
        // Records in order; a record without a value has no row to show.
        let with_values: Vec<_> = records.into_iter().filter(|r| r.value.is_some()).collect();
        for chunk in with_values.chunks(1024) {
            let decoded = brook_runtime::rows::decode_records(source, chunk, catalog)?;
            if let Some(batch) = decoded.batch {
                operator.process(batch, &mut out)?;
            }
        }
        let limit = query.limit;
        let rx = limited(out, limit).await;
        let seq = self
            .transient_seq
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(PushQuery {
            id: format!("pull_{}_{seq}", source.name),
            schema,
            rows: rx,
            // Streams end their response as push queries do: "Limit Reached" when the
            // LIMIT cut the rows, "Query Completed" otherwise.
            limit,
            pull: true,
            completed: true,
        })
    }
}

/// A pull query's rows, cut to its LIMIT, on a channel that holds them all (so filling it
/// never waits) and closes after the last.
async fn limited(
    out: Vec<RecordBatch>,
    limit: Option<u64>,
) -> mpsc::Receiver<Result<RecordBatch, String>> {
    let mut left = limit.unwrap_or(u64::MAX);
    let (tx, rx) = mpsc::channel(out.len().max(1));
    for mut b in out {
        if left == 0 {
            break;
        }
        if b.num_rows() as u64 > left {
            b = b.slice(0, left as usize);
        }
        left -= b.num_rows() as u64;
        if b.num_rows() > 0 {
            let _ = tx.send(Ok(b)).await;
        }
    }
    rx
}

/// Every record of `topic` up to the end offsets it has now, partition by partition.
async fn read_topic(
    bootstrap: String,
    topic: String,
) -> Result<Vec<brook_runtime::rows::Record>, StatementError> {
    use brook_runtime::rdkafka::consumer::{BaseConsumer, Consumer};
    use brook_runtime::rdkafka::message::Message;
    use brook_runtime::rdkafka::{Offset, TopicPartitionList};
    let timeout = std::time::Duration::from_secs(30);
    tokio::task::spawn_blocking(move || -> Result<_, RuntimeError> {
        let consumer: BaseConsumer = brook_runtime::kafka::client_config(&bootstrap)
            .set("group.id", "_brook_pull_stream")
            .set("enable.auto.commit", "false")
            .create()?;
        let metadata = consumer.fetch_metadata(Some(&topic), timeout)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .filter(|t| t.name() == topic)
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        let mut ends = std::collections::BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for p in &partitions {
            let (low, high) = consumer.fetch_watermarks(&topic, *p, timeout)?;
            if high > low {
                ends.insert(*p, high);
                tpl.add_partition_offset(&topic, *p, Offset::Beginning)?;
            }
        }
        let mut out = Vec::new();
        if ends.is_empty() {
            return Ok(out);
        }
        consumer.assign(&tpl)?;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut next: std::collections::BTreeMap<i32, i64> = Default::default();
        while ends
            .iter()
            .any(|(p, high)| next.get(p).copied().unwrap_or(0) < *high)
        {
            if std::time::Instant::now() > deadline {
                return Err(RuntimeError::Broker(format!(
                    "topic {topic} could not be read to its end for a pull query"
                )));
            }
            if let Some(m) = consumer.poll(std::time::Duration::from_millis(200)) {
                let m = m?;
                next.insert(m.partition(), m.offset() + 1);
                if ends.get(&m.partition()).is_some_and(|h| m.offset() < *h) {
                    out.push(brook_runtime::task::to_record(&m));
                }
            }
        }
        // Partitions interleave as the topic's records came; order by timestamp within
        // what was read, as a stream's rows would be seen.
        out.sort_by_key(|r| r.timestamp);
        Ok(out)
    })
    .await
    .map_err(|e| RuntimeError::Broker(e.to_string()))?
    .map_err(StatementError::from)
}

/// Rows of a windowed table carry the window bounds after the pseudo columns. `SELECT *`
/// shows them as key columns after the table's key (ksqlDB's layout); otherwise they are
/// shown only where selected by name (as ordinary columns), so the leading pair goes.
fn window_bounds(
    batches: Vec<RecordBatch>,
    schema: &mut LogicalSchema,
    star: bool,
) -> Result<Vec<RecordBatch>, StatementError> {
    let keys = schema
        .columns
        .iter()
        .filter(|c| c.namespace == Namespace::Key)
        .count();
    // Window bounds are part of a windowed table's key, wherever they are selected.
    for c in schema.columns.iter_mut() {
        if c.name == WINDOWSTART || c.name == WINDOWEND {
            c.namespace = Namespace::Key;
        }
    }
    window_columns(schema, star, keys, Namespace::Key);
    batches
        .into_iter()
        .map(|b| {
            window_rows(b, star, keys).map_err(|e| StatementError::Runtime(RuntimeError::Arrow(e)))
        })
        .collect()
}

/// `SELECT *` over a windowed source: WINDOWSTART and WINDOWEND follow the first `keys`
/// columns (as keys in a pull query's answer, as values in a push query's).
pub(super) fn window_columns(schema: &mut LogicalSchema, star: bool, keys: usize, ns: Namespace) {
    if star {
        for (i, name) in [WINDOWSTART, WINDOWEND].iter().enumerate() {
            let at = (keys + i).min(schema.columns.len());
            schema
                .columns
                .insert(at, Column::new(*name, Type::Bigint, ns.clone()));
        }
    }
}

/// A windowed source's row as [`window_columns`] lays its columns out: the leading window
/// bounds move after the first `keys` columns for `SELECT *`, and go otherwise.
pub(super) fn window_rows(
    b: RecordBatch,
    star: bool,
    keys: usize,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let cols = b.columns();
    if cols.len() < 5 {
        return Ok(b);
    }
    let mut picked: Vec<(String, ArrayRef)> = Vec::new();
    let field = |i: usize| (b.schema().field(i).name().clone(), cols[i].clone());
    picked.extend((0..3).map(field));
    let rest: Vec<usize> = (5..cols.len()).collect();
    let (key_cols, value_cols) = rest.split_at(keys.min(rest.len()));
    picked.extend(key_cols.iter().map(|i| field(*i)));
    if star {
        picked.push(field(3));
        picked.push(field(4));
    }
    picked.extend(value_cols.iter().map(|i| field(*i)));
    let fields: Vec<Field> = picked
        .iter()
        .map(|(n, a)| Field::new(n, a.data_type().clone(), true))
        .collect();
    RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        picked.into_iter().map(|(_, a)| a).collect(),
    )
}

/// The key a WHERE clause pins with `KEY = literal` among its top-level conjuncts, for a
/// table with one key column, as a value of the stored key's type.
fn key_lookup(
    query: &brook_sql::Query,
    source: &brook_planner::catalog::Source,
    stored: &arrow::datatypes::SchemaRef,
) -> Option<ScalarValue> {
    use brook_sql::sqlparser::ast::{BinaryOperator, Expr, Value};
    let mut keys = source.schema.key_columns();
    let key = keys.next()?;
    if keys.next().is_some() {
        return None;
    }
    let dt = stored.field_with_name(&key.name).ok()?.data_type().clone();
    let mut todo = vec![query.selection.as_ref()?];
    while let Some(e) = todo.pop() {
        match e {
            Expr::Nested(inner) => todo.push(inner),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                todo.push(left);
                todo.push(right);
            }
            Expr::BinaryOp {
                left,
                op: BinaryOperator::Eq,
                right,
            } => {
                let ((Expr::Identifier(id), Expr::Value(v))
                | (Expr::Value(v), Expr::Identifier(id))) = (left.as_ref(), right.as_ref())
                else {
                    continue;
                };
                let name = match id.quote_style {
                    Some(_) => id.value.clone(),
                    None => id.value.to_uppercase(),
                };
                if name != key.name {
                    continue;
                }
                let text = match &v.value {
                    Value::SingleQuotedString(s) if dt == DataType::Utf8 => s.clone(),
                    Value::Number(n, _) if dt.is_integer() => n.clone(),
                    _ => return None,
                };
                return ScalarValue::try_from_string(text, &dt).ok();
            }
            _ => {}
        }
    }
    None
}

/// The upper-cased identifiers an expression's text mentions.
fn identifiers(text: &str) -> Vec<String> {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_uppercase)
        .collect()
}

/// Columns a pull query may not use: the pseudo columns that only a stream's records
/// have, and window bounds of a table that has no windows.
fn check_columns(query: &brook_sql::Query, windowed: bool) -> Result<(), StatementError> {
    const PSEUDO: [&str; 2] = ["ROWPARTITION", "ROWOFFSET"];
    let select: Vec<String> = query
        .projection
        .iter()
        .flat_map(|p| identifiers(&p.to_string()))
        .collect();
    let filter: Vec<String> = query
        .selection
        .iter()
        .flat_map(|w| identifiers(&w.to_string()))
        .collect();
    for (clause, words) in [("SELECT", &select), ("WHERE", &filter)] {
        let used: Vec<String> = PSEUDO
            .iter()
            .filter(|p| words.iter().any(|w| w == *p))
            .map(|p| format!("`{p}`"))
            .collect();
        if !used.is_empty() {
            return Err(PlanError::Invalid(format!(
                "Pull queries don't support the following columns in {clause} clauses: {}",
                used.join(", ")
            ))
            .into());
        }
    }
    if !windowed {
        for bound in [WINDOWSTART, WINDOWEND] {
            if filter.iter().any(|w| w == bound) {
                return Err(PlanError::Invalid(format!(
                    "WHERE column '{bound}' cannot be resolved"
                ))
                .into());
            }
        }
    }
    Ok(())
}
