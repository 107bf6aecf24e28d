//! Push queries that keep state (GROUP BY, joins): the pipeline a persistent query would
//! run, planned on a copy of the session as if the query were a CSAS/CTAS, fed by a
//! consumer of the query's own, its result rows streamed to the subscriber instead of
//! written to a topic.

use std::sync::Arc;

use arrow::array::{AsArray, RecordBatch, RecordBatchOptions};
use arrow::compute::{filter_record_batch, not};
use arrow::datatypes::Schema;
use brook_planner::schema::{LogicalSchema, Namespace};
use brook_runtime::pipeline::Pipeline;
use brook_runtime::session::{Action, Session, StatementError};
use brook_sql::sqlparser::ast::{Ident, SelectItem};
use brook_sql::Query;

/// Key columns a push query does not select but its aggregation needs: planned under these
/// names, left out of the rows sent.
const HIDDEN_KEY: &str = "__BROOK_PUSH_KEY_";

pub(super) struct Planned {
    pub pipeline: Pipeline,
    /// The columns the subscriber sees (no key columns: a push query's rows have none).
    pub schema: LogicalSchema,
    /// Input topics, in the pipeline's input order.
    pub topics: Vec<String>,
    /// The results carry window bounds ahead of their columns.
    windowed: bool,
}

/// Plans `query` as the persistent query `name` would be, on a copy of the session.
pub(super) fn plan(
    session: &Session,
    query: &Query,
    name: &str,
) -> Result<Planned, StatementError> {
    let mut session = session.clone();
    let mut q = query.clone();
    q.limit = None;
    // GROUP BY expressions the projection leaves out are still the aggregation's key.
    if brook_planner::aggregate::is_aggregation(&q) {
        // No GROUP BY: one group for every row.
        if q.group_by.is_empty() {
            q.group_by.push(brook_sql::parse_expr("1")?);
        }
        // A projection of keys only still has a value, unseen.
        q.projection.push(SelectItem::ExprWithAlias {
            expr: brook_sql::parse_expr("COUNT(*)")?,
            alias: Ident::new(format!("{HIDDEN_KEY}VALUE")),
        });
        let selected: Vec<String> = q
            .projection
            .iter()
            .filter_map(|i| match i {
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    Some(e.to_string().to_uppercase())
                }
                _ => None,
            })
            .collect();
        let missing: Vec<_> = q
            .group_by
            .iter()
            .filter(|g| !selected.contains(&g.to_string().to_uppercase()))
            .cloned()
            .collect();
        for (i, g) in missing.into_iter().enumerate() {
            q.projection.insert(
                i,
                SelectItem::ExprWithAlias {
                    expr: g,
                    alias: Ident::new(format!("{HIDDEN_KEY}{i}")),
                },
            );
        }
    }
    let mut last = None;
    for kind in ["STREAM", "TABLE"] {
        let sql = format!(
            "CREATE {kind} {name} WITH (KAFKA_TOPIC='{name}', VALUE_FORMAT='JSON') AS {q};"
        );
        let statements = brook_sql::parse(&sql)?;
        let Some(ps) = statements.first() else {
            continue;
        };
        match session.plan(ps, &|_| Some(1)) {
            Ok(Action::StartQuery(spec)) => {
                let sink = spec.sink.clone();
                let pipeline = Pipeline::new(*spec, &session.catalog)?.capture();
                let topics = pipeline.input_topics();
                let schema = LogicalSchema {
                    columns: sink
                        .schema
                        .columns
                        .iter()
                        .filter(|c| !c.name.starts_with(HIDDEN_KEY))
                        .map(|c| {
                            let mut c = c.clone();
                            c.namespace = Namespace::Value;
                            c
                        })
                        .collect(),
                };
                return Ok(Planned {
                    pipeline,
                    schema,
                    topics,
                    windowed: sink.window.is_some(),
                });
            }
            Ok(_) => break,
            // The query's result is the other kind: try that.
            Err(e) if e.to_string().contains("Your SELECT query produces a") => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        StatementError::Plan(brook_planner::PlanError::Invalid(
            "the query could not be planned as a push query".into(),
        ))
    }))
}

impl Planned {
    /// A result batch as the subscriber's rows: the pseudo columns, then the selected
    /// columns (no window bounds unless selected, no hidden keys), without deletions.
    pub fn rows(&self, b: RecordBatch) -> Result<Option<RecordBatch>, arrow::error::ArrowError> {
        let schema = b.schema();
        let tombstone = schema.index_of(brook_runtime::aggregate::TOMBSTONE).ok();
        let b = match tombstone {
            Some(t) => {
                let gone = b.column(t).as_boolean().clone();
                filter_record_batch(&b, &not(&gone)?)?
            }
            None => b,
        };
        if b.num_rows() == 0 {
            return Ok(None);
        }
        let first = if self.windowed { 5 } else { 3 };
        let keep: Vec<usize> = (0..3)
            .chain((first..b.num_columns()).filter(|&i| {
                Some(i) != tombstone && !schema.field(i).name().starts_with(HIDDEN_KEY)
            }))
            .collect();
        let fields: Vec<_> = keep.iter().map(|&i| schema.field(i).clone()).collect();
        let cols = keep.iter().map(|&i| b.column(i).clone()).collect();
        let rows = b.num_rows();
        Ok(Some(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )?))
    }
}
