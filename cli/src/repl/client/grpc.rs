//! The REPL's transport for `grpc://host:port` (`grpcs://` over TLS): Brook's gRPC API
//! (server/proto), which answers with the same ksqlDB entities, rows and messages as the
//! REST API, so the REPL renders both alike. A login rides on every call as the
//! `authorization` metadata, which the server reads as REST reads the header.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Map, Value};
use tokio::sync::OnceCell;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status, Streaming};

use super::{Login, ServerError, StreamItem};
use crate::repl::ReplError;

/// The client generated from `server/proto/brook/v1/brook.proto` by build.rs.
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("brook.v1");
}

use proto::brook_client::BrookClient;
use proto::query_response::Message;

/// One HTTP/2 connection, made on first use and shared by the clones of the client.
#[derive(Debug, Clone)]
pub struct Grpc {
    /// As the user gave it (`grpc://host:port`), for messages.
    url: String,
    endpoint: Endpoint,
    channel: Arc<OnceCell<Channel>>,
    /// `Basic …`, sent as the `authorization` metadata of every call.
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    basic: Option<(String, String)>,
}

impl Grpc {
    /// `url` is `grpc://host:port` (HTTP/2 without TLS) or `grpcs://host:port` (TLS,
    /// checked against `ca`, PEM, else the system's CAs).
    pub fn new(url: &str, login: &Login, ca: Option<&[u8]>) -> Result<Grpc, ReplError> {
        let usage = |e: &dyn std::fmt::Display| ReplError::Usage(format!("{url}: {e}"));
        let (scheme, authority) = match url.strip_prefix("grpcs://") {
            Some(a) => ("https", a),
            None => ("http", url.strip_prefix("grpc://").unwrap_or(url)),
        };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{authority}"))
            .map_err(|e| usage(&e))?
            .connect_timeout(Duration::from_secs(10));
        if scheme == "https" {
            let tls = match ca {
                Some(pem) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)),
                None => ClientTlsConfig::new().with_native_roots(),
            };
            endpoint = endpoint.tls_config(tls).map_err(|e| usage(&e))?;
        }
        let basic = login.basic();
        let authorization = match &basic {
            Some((user, password)) => {
                let token =
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                Some(
                    format!("Basic {token}")
                        .parse()
                        .map_err(|_| usage(&"the user name cannot be sent in a header"))?,
                )
            }
            None => None,
        };
        Ok(Grpc {
            url: url.to_string(),
            endpoint,
            channel: Arc::default(),
            authorization,
            basic,
        })
    }

    /// A call's request, with the login.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(a) = &self.authorization {
            request.metadata_mut().insert("authorization", a.clone());
        }
        request
    }

    async fn client(&self) -> Result<BrookClient<Channel>, ReplError> {
        let channel = self
            .channel
            .get_or_try_init(|| self.endpoint.connect())
            .await
            .map_err(|e| ReplError::Connect {
                url: self.url.clone(),
                reason: super::error_chain(&e),
            })?;
        Ok(BrookClient::new(channel.clone()).max_decoding_message_size(64 << 20))
    }

    /// A refusal as the REST client reports it: the server's message, with the HTTP
    /// status REST would have answered.
    fn error(&self, s: Status) -> ReplError {
        let status = match s.code() {
            Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => 400,
            Code::Unauthenticated => 401,
            Code::NotFound => 404,
            Code::ResourceExhausted => 429,
            Code::Unimplemented => 501,
            Code::Unavailable => {
                return ReplError::Connect {
                    url: self.url.clone(),
                    reason: s.message().to_string(),
                }
            }
            _ => 500,
        };
        // The server's `statement_error` entity, when it sent one: the error code and the
        // statement it refused, as REST reports them.
        let entity: Option<Value> = s
            .metadata()
            .get_bin("ksql-error-bin")
            .and_then(|v| v.to_bytes().ok())
            .and_then(|b| serde_json::from_slice(&b).ok());
        let field = |k: &str| entity.as_ref().and_then(|e| e.get(k));
        let error = ServerError {
            status,
            code: field("error_code").and_then(Value::as_u64),
            message: s.message().to_string(),
            statement: field("statementText")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        super::refused(error, self.basic.as_ref())
    }

    pub async fn ksql(
        &self,
        sql: &str,
        properties: &Map<String, Value>,
    ) -> Result<Vec<Value>, ReplError> {
        let req = proto::ExecuteRequest {
            sql: sql.to_string(),
            properties: string_properties(properties),
        };
        let resp = self
            .client()
            .await?
            .execute(self.request(req))
            .await
            .map_err(|s| self.error(s))?;
        resp.into_inner()
            .entities_json
            .iter()
            .map(|e| {
                serde_json::from_str(e)
                    .map_err(|err| ReplError::Protocol(format!("Execute answered {err}: {e}")))
            })
            .collect()
    }

    /// Starts a query: its header, and the rows to come.
    pub async fn query(
        &self,
        sql: &str,
        properties: &Map<String, Value>,
    ) -> Result<(proto::QueryHeader, Rows), ReplError> {
        let req = proto::QueryRequest {
            sql: sql.to_string(),
            properties: string_properties(properties),
        };
        let mut stream = self
            .client()
            .await?
            .query(self.request(req))
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        match stream.message().await.map_err(|s| self.error(s))? {
            Some(proto::QueryResponse {
                message: Some(Message::Header(h)),
            }) => Ok((h, Rows { stream })),
            Some(other) => Err(ReplError::Protocol(format!(
                "the query started without its header: {other:?}"
            ))),
            None => Err(ReplError::Protocol(
                "the push query ended before its header".into(),
            )),
        }
    }

    pub async fn print(
        &self,
        sql: &str,
        properties: &Map<String, Value>,
    ) -> Result<Lines, ReplError> {
        let req = proto::PrintRequest {
            sql: sql.to_string(),
            properties: string_properties(properties),
        };
        let stream = self
            .client()
            .await?
            .print(self.request(req))
            .await
            .map_err(|s| self.error(s))?
            .into_inner();
        Ok(Lines { stream })
    }

    /// `Info`, in `/info`'s `KsqlServerInfo` shape.
    pub async fn info(&self) -> Result<Value, ReplError> {
        let call = async {
            self.client()
                .await?
                .info(self.request(proto::InfoRequest {}))
                .await
                .map_err(|s| self.error(s))
        };
        let info = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .map_err(|_| ReplError::Connect {
                url: self.url.clone(),
                reason: "no answer within 10s".into(),
            })??
            .into_inner();
        Ok(json!({
            "version": info.version,
            "kafkaClusterId": info.kafka_cluster_id,
            "ksqlServiceId": info.ksql_service_id,
            "serverStatus": info.server_status,
        }))
    }
}

/// gRPC's properties are text; REST's JSON values become their text.
fn string_properties(p: &Map<String, Value>) -> std::collections::HashMap<String, String> {
    p.iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// A query's rows after its header. Dropping it cancels the call, which ends the query.
pub struct Rows {
    stream: Streaming<proto::QueryResponse>,
}

impl Rows {
    pub async fn next(&mut self) -> Result<Option<StreamItem>, ReplError> {
        loop {
            match self.stream.message().await {
                Ok(Some(proto::QueryResponse {
                    message: Some(Message::Row(r)),
                })) => {
                    return match serde_json::from_str(&r.values_json) {
                        Ok(Value::Array(values)) => Ok(Some(StreamItem::Row(values))),
                        _ => Err(ReplError::Protocol(format!(
                            "bad row from the server: {}",
                            r.values_json
                        ))),
                    }
                }
                // The end (LIMIT reached); the call closes right after.
                Ok(Some(proto::QueryResponse {
                    message: Some(Message::Finished(_)),
                }))
                | Ok(None) => return Ok(None),
                Ok(Some(_)) => continue,
                // The query failed on the server after it started.
                Err(s) => return Ok(Some(StreamItem::Error(s.message().to_string()))),
            }
        }
    }
}

/// PRINT's lines. Dropping it cancels the call, which ends the PRINT.
pub struct Lines {
    stream: Streaming<proto::PrintLine>,
}

impl Lines {
    pub async fn next_line(&mut self) -> Result<Option<String>, ReplError> {
        match self.stream.message().await {
            Ok(Some(l)) => Ok(Some(l.line)),
            Ok(None) => Ok(None),
            Err(s) => Err(ReplError::Protocol(format!(
                "PRINT's stream broke: {}",
                s.message()
            ))),
        }
    }
}
