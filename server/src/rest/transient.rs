//! `/close-query`: ends a push query started through `/query-stream`, by the id its
//! response header carried.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use brook_server::bodies;
use brook_server::engine::PushQuery;
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::{generic_error, Api, BAD_REQUEST, BAD_STATEMENT};

/// The running transient queries that `/close-query` can end, by query id.
#[derive(Default)]
pub(super) struct TransientQueries {
    running: Mutex<HashMap<String, oneshot::Sender<()>>>,
}

impl TransientQueries {
    fn running(&self) -> MutexGuard<'_, HashMap<String, oneshot::Sender<()>>> {
        // The map stays consistent whatever a panicking holder did (single inserts/removes).
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes `pq` closable: its rows pass through a relay that stops on `/close-query`.
    /// Stopping drops the engine's receiver, which ends the query and releases its
    /// consumer, and closes the relay's channel, which ends the HTTP response.
    pub(super) fn track(self: &Arc<Self>, mut pq: PushQuery) -> PushQuery {
        let (close_tx, mut close_rx) = oneshot::channel::<()>();
        let (tx, rx) = mpsc::channel(1);
        let mut rows = std::mem::replace(&mut pq.rows, rx);
        let id = pq.id.clone();
        self.running().insert(id.clone(), close_tx);
        let registry = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let item = tokio::select! {
                    _ = &mut close_rx => break,
                    _ = tx.closed() => break,
                    item = rows.recv() => item,
                };
                let Some(item) = item else { break };
                tokio::select! {
                    _ = &mut close_rx => break,
                    sent = tx.send(item) => if sent.is_err() { break },
                }
            }
            registry.running().remove(&id);
        });
        pq
    }

    pub(super) fn close(&self, id: &str) -> bool {
        match self.running().remove(id) {
            Some(stop) => {
                let _ = stop.send(());
                true
            }
            None => false,
        }
    }
}

pub(super) async fn close_query(State(api): State<Api>, body: Body) -> Response {
    let body = match super::read_body(&api, body).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let id = match bodies::close_query_request(&body) {
        Ok(id) => id,
        Err(e) => return generic_error(StatusCode::BAD_REQUEST, BAD_REQUEST, &e.to_string()),
    };
    if !api.transient.close(&id) {
        return generic_error(
            StatusCode::BAD_REQUEST,
            BAD_STATEMENT,
            &format!("No query with id {id}"),
        );
    }
    info!(query = %id, "push query closed by /close-query");
    StatusCode::OK.into_response()
}
