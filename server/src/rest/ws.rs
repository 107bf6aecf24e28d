//! `/ws/query`: ksqlDB's WebSocket endpoint for push (and pull) queries. The request is the
//! `/ksql` body — `{"ksql": "...", "streamsProperties": {...}}` — in the URL parameter
//! `request` (and optionally `version=1`). As ksqlDB's `WSQueryEndpoint` does, the server
//! sends one text frame with the result's columns (`[{"name", "schema"}, …]`), then one
//! `{"row":{"columns":[…]}}` frame per row; the end of the query (its LIMIT) closes the
//! socket normally with reason `done`, a refused request closes it with 1003 and the
//! reason, a failure with 1011. The client closing the socket ends the query, and so does
//! `ksql.websocket.connection.max.timeout.ms` passing (ksqlDB's bound on a WebSocket's
//! life), which closes it with 1011 and ksqlDB's reason.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::Uri;
use axum::response::Response;
use brook_server::engine::PushQuery;
use serde_json::{json, Map, Value};
use tracing::debug;

use super::{schema_info, values, Api, KsqlRequest};

/// RFC 6455 close codes, as ksqlDB uses them.
const NORMAL_CLOSURE: u16 = 1000;
const INVALID_MESSAGE_TYPE: u16 = 1003;
const UNEXPECTED_CONDITION: u16 = 1011;

pub(super) async fn ws_query(State(api): State<Api>, uri: Uri, ws: WebSocketUpgrade) -> Response {
    let params: HashMap<String, String> =
        url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    // ksqlDB accepts the upgrade first and reports a bad request by closing the socket.
    ws.on_upgrade(move |socket| serve(api, params, socket))
}

fn parse_request(params: &HashMap<String, String>) -> Result<KsqlRequest, String> {
    if let Some(v) = params.get("version") {
        if v != "1" {
            return Err(format!("Received invalid api version: {v}"));
        }
    }
    let text = params
        .get("request")
        .filter(|r| !r.is_empty())
        .ok_or("Error parsing request: missing request parameter")?;
    let req: KsqlRequest =
        serde_json::from_str(text).map_err(|e| format!("Error parsing request: {e}"))?;
    if req.ksql.trim().is_empty() {
        return Err(
            "Error parsing request: \"ksql\" field of \"request\" must be populated".into(),
        );
    }
    Ok(req)
}

async fn serve(api: Api, params: HashMap<String, String>, mut socket: WebSocket) {
    // No limit: a deadline that never comes.
    let lifetime = api.limits.websocket_max_lifetime;
    let expiry = tokio::time::sleep(lifetime.unwrap_or(Duration::from_secs(u32::MAX.into())));
    tokio::pin!(expiry);
    let req = match parse_request(&params) {
        Ok(r) => r,
        Err(message) => return close(socket, INVALID_MESSAGE_TYPE, &message).await,
    };
    let pq = match api.start_push(&req.ksql, &req.streams_properties).await {
        Ok(pq) => pq,
        Err(refusal) => {
            let message = refusal_message(refusal).await;
            return close(socket, INVALID_MESSAGE_TYPE, &message).await;
        }
    };
    let PushQuery {
        id,
        schema,
        mut rows,
        ..
    } = pq;
    debug!(query = %id, "push query over /ws/query");
    let catalog = api.engine.catalog().await;
    let fields: Vec<Value> = schema
        .columns
        .iter()
        .map(|c| json!({"name": c.name, "schema": schema_info(&c.ty, &catalog)}))
        .collect();
    if socket
        .send(Message::Text(Value::Array(fields).to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            _ = &mut expiry, if lifetime.is_some() => {
                debug!(query = %id, "WebSocket reached ksql.websocket.connection.max.timeout.ms");
                return close(socket, UNEXPECTED_CONDITION, "The request token has expired.").await;
            }
            incoming = socket.recv() => match incoming {
                // The client went away or closed: dropping `rows` ends the query.
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // Pings are answered by the WebSocket layer; anything else is ignored.
                Some(Ok(_)) => {}
            },
            item = rows.recv() => match item {
                Some(Ok(batch)) => {
                    // ROWTIME, ROWPARTITION and ROWOFFSET lead every row batch; not selected.
                    let (columns, _) = super::values::selected(&batch);
                    for row in 0..batch.num_rows() {
                        let mut frame = String::from("{\"row\":{\"columns\":[");
                        for (i, c) in columns.iter().enumerate() {
                            if i > 0 {
                                frame.push(',');
                            }
                            values::write_value(&mut frame, c.as_ref(), row);
                        }
                        frame.push_str("]}}");
                        if socket.send(Message::Text(frame.into())).await.is_err() {
                            return;
                        }
                    }
                }
                Some(Err(message)) => {
                    return close(socket, UNEXPECTED_CONDITION, &message).await;
                }
                None => return close(socket, NORMAL_CLOSURE, "done").await,
            },
        }
    }
}

/// The `message` of a refusal's JSON body (what `/ksql` would have answered).
async fn refusal_message(refusal: Response) -> String {
    let body = axum::body::to_bytes(refusal.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    serde_json::from_slice::<Map<String, Value>>(&body)
        .ok()
        .and_then(|m| m.get("message").and_then(Value::as_str).map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned())
}

/// Closes with `code` and `reason`; a close reason holds at most 123 bytes.
async fn close(mut socket: WebSocket, code: u16, reason: &str) {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let frame = CloseFrame {
        code,
        reason: reason[..end].to_string().into(),
    };
    if socket.send(Message::Close(Some(frame))).await.is_err() {
        return;
    }
    // The closing handshake: wait (briefly) for the client's Close before dropping the TCP
    // connection, so clients see a clean close rather than a reset.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        while let Some(Ok(m)) = socket.recv().await {
            if matches!(m, Message::Close(_)) {
                break;
            }
        }
    })
    .await;
}
