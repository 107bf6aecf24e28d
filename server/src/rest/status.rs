//! `/status` (the statuses of the commands `/ksql` ran) and `/is_valid_property`.

use std::collections::BTreeMap;
use std::sync::Mutex;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::{generic_error, json_response, kind_lower, Api, BAD_REQUEST, JSON};

/// ksqlDB's `Errors.ERROR_CODE_NOT_FOUND`.
const NOT_FOUND: u32 = 40400;

/// Properties a client may never override: ksqlDB's deny list always holds the service id
/// (`ksql.properties.overrides.denylist`, empty here, would add to it).
const DENIED_PROPERTIES: &[&str] = &["ksql.service.id"];

/// The last status of every command `/ksql` reported, by command id.
#[derive(Default)]
pub(super) struct CommandStatuses {
    by_id: Mutex<BTreeMap<String, Value>>,
}

impl CommandStatuses {
    /// Keeps `status` (a `commandStatus` object) as the command's latest.
    pub(super) fn record(&self, command_id: &str, status: &Value) {
        self.by_id
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(command_id.to_string(), status.clone());
    }

    /// Everything recorded, plus the creation of every source in the catalog: sources
    /// restored from the command log at start were created by commands this process never
    /// reported, and ksqlDB's status store holds those too.
    async fn all(&self, api: &Api) -> BTreeMap<String, Value> {
        let mut all = self.by_id.lock().unwrap_or_else(|e| e.into_inner()).clone();
        for s in api.engine.catalog().await.sources.values() {
            let kind = kind_lower(s.kind);
            all.entry(format!("{kind}/`{}`/create", s.name))
                .or_insert_with(|| {
                    json!({
                        "status": "SUCCESS",
                        "message": format!("{} created", super::capitalized(s.kind)),
                        "queryId": null,
                    })
                });
        }
        all
    }
}

/// `GET /status`: `{"commandStatuses": {id: status}}`.
pub(super) async fn statuses(State(api): State<Api>) -> Response {
    let all = api.statuses.all(&api).await;
    let statuses: Map<String, Value> = all
        .into_iter()
        .map(|(id, s)| (id, s.get("status").cloned().unwrap_or(Value::Null)))
        .collect();
    json_response(StatusCode::OK, JSON, json!({ "commandStatuses": statuses }))
}

/// `GET /status/{type}/{entity}/{action}`: one command's status.
pub(super) async fn status(State(api): State<Api>, Path(id): Path<String>) -> Response {
    let all = api.statuses.all(&api).await;
    let wanted = normalize(&id);
    let found = wanted
        .and_then(|w| all.iter().find(|(k, _)| normalize(k).as_ref() == Some(&w)))
        .map(|(_, s)| s.clone());
    match found {
        Some(s) => json_response(StatusCode::OK, JSON, s),
        None => generic_error(StatusCode::NOT_FOUND, NOT_FOUND, "Command not found"),
    }
}

/// A command id's parts; ksqlDB reads its type and action case-insensitively.
fn normalize(id: &str) -> Option<(String, String, String)> {
    let (kind, rest) = id.trim_start_matches('/').split_once('/')?;
    let (entity, action) = rest.rsplit_once('/')?;
    Some((
        kind.to_ascii_lowercase(),
        entity.to_string(),
        action.to_ascii_lowercase(),
    ))
}

/// `GET /is_valid_property/{name}`: `true`, or why the server refuses overrides of it.
pub(super) async fn is_valid_property(Path(name): Path<String>) -> Response {
    if DENIED_PROPERTIES.contains(&name.as_str()) {
        return generic_error(
            StatusCode::BAD_REQUEST,
            BAD_REQUEST,
            &format!(
                "One or more properties overrides set locally are prohibited by the KSQL \
                 server (use UNSET to reset their default value): [{name}]"
            ),
        );
    }
    json_response(StatusCode::OK, JSON, Value::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn command_ids() {
        assert_eq!(
            normalize("STREAM/`PAGEVIEWS`/CREATE"),
            normalize("stream/`PAGEVIEWS`/create")
        );
        assert_ne!(
            normalize("stream/`pageviews`/create"),
            normalize("stream/`PAGEVIEWS`/create")
        );
        assert_eq!(normalize("stream"), None);
    }
}
