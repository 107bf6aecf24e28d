//! PAUSE and RESUME of persistent queries, answered with ksqlDB's entities: a
//! `currentStatus` whose command id is `pause/<queryId>/execute` (or `…/ALL/…`) and whose
//! message is `Query paused.` / `Query resumed.`, as ksqlDB's command runner reports them.

use brook_sql::QueryTarget;
use serde_json::Value;

use super::{Api, Refusal};

impl Api {
    pub(super) async fn pause_resume(
        &self,
        target: &QueryTarget,
        pause: bool,
        text: &str,
    ) -> Result<Value, Refusal> {
        let ids = self.engine.set_paused(target, pause).await?;
        let (word, message) = if pause {
            ("pause", "Query paused.")
        } else {
            ("resume", "Query resumed.")
        };
        let subject = match target {
            QueryTarget::All => "ALL".to_string(),
            // The id as the engine knows it (the statement may have spelled it in lower case).
            QueryTarget::Query(id) => ids.first().cloned().unwrap_or_else(|| id.value.clone()),
        };
        Ok(self.current_status(
            text,
            format!("{word}/{subject}/execute"),
            message.to_string(),
            None,
        ))
    }
}
