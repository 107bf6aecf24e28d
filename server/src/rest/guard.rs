//! The gate every request passes before its handler (REST, gRPC, WebSocket, Schema
//! Registry alike):
//!
//! - HTTP Basic credentials, when the server has users: 401 with `WWW-Authenticate`
//!   without them (gRPC: UNAUTHENTICATED), except on the skipped paths (`/healthcheck`,
//!   `authentication.skip.paths`). Failed logins are logged with the client's address and
//!   limited per address (`auth/limiter.rs`).
//! - What only a browser on another site would send, refused: a body of a type an HTML
//!   form or a no-preflight `fetch` can send (`text/plain`, form encodings) is 415, and a
//!   write or WebSocket upgrade whose `Origin` is neither the port's own nor in
//!   `access.control.allow.origin` is 403. Non-browser clients send no `Origin`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tracing::{debug, warn};

use super::generic_error;
use crate::auth::{Authenticator, FailureLimits, Outcome, Users};

/// ksqlDB's error codes for what the gate refuses.
const MALFORMED: u32 = 40000;
const UNAUTHORIZED: u32 = 40100;
const FORBIDDEN: u32 = 40300;
const UNSUPPORTED_MEDIA_TYPE: u32 = 41500;

/// What the gate checks.
pub struct Guard {
    auth: Option<Authenticator>,
    realm: String,
    skip_paths: Vec<String>,
    allowed_origins: Vec<String>,
    /// The port speaks TLS: its own origin is `https://…`.
    tls: bool,
}

/// The gate's settings (auth_args.rs reads them).
pub struct GuardSettings {
    pub users: Option<Users>,
    pub failure_limits: FailureLimits,
    pub realm: String,
    pub skip_paths: Vec<String>,
    pub allowed_origins: Vec<String>,
    pub tls: bool,
}

impl Guard {
    pub fn new(s: GuardSettings) -> Guard {
        Guard {
            auth: s
                .users
                .map(|users| Authenticator::new(users, s.failure_limits)),
            realm: s.realm,
            skip_paths: s.skip_paths,
            allowed_origins: s.allowed_origins,
            tls: s.tls,
        }
    }
}

/// The middleware.
pub async fn check(State(guard): State<Arc<Guard>>, req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    // Taken out first: the body is not `Sync`, so the request cannot be held across the
    // credentials check's await.
    let asked = Asked {
        path: req.uri().path().to_string(),
        authorization: req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.as_bytes().to_vec()),
        grpc: is_grpc(&req),
    };
    if let Some(refused) = guard.authenticate(asked, peer).await {
        return after_body(req, refused).await;
    }
    if let Some(refused) = guard.browser_check(&req) {
        return after_body(req, refused).await;
    }
    next.run(req).await
}

/// A refused request's body read, at most [`DRAIN_MAX`] bytes for at most [`DRAIN_WAIT`],
/// before the refusal goes out: an HTTP/2 answer to a request still being sent ends with
/// a stream reset, which some clients (curl 7.x) report instead of the answer.
const DRAIN_MAX: usize = 64 << 10;
const DRAIN_WAIT: Duration = Duration::from_secs(1);

async fn after_body(req: Request, refusal: Response) -> Response {
    use futures::StreamExt as _;
    let mut body = req.into_body().into_data_stream();
    let _ = tokio::time::timeout(DRAIN_WAIT, async {
        let mut read = 0;
        while let Some(Ok(chunk)) = body.next().await {
            read += chunk.len();
            if read > DRAIN_MAX {
                break;
            }
        }
    })
    .await;
    refusal
}

/// What the credentials check needs of a request.
struct Asked {
    path: String,
    authorization: Option<Vec<u8>>,
    grpc: bool,
}

impl Guard {
    /// `None`: the request may go on.
    async fn authenticate(&self, asked: Asked, peer: Option<SocketAddr>) -> Option<Response> {
        let auth = self.auth.as_ref()?;
        let Asked {
            path,
            authorization,
            grpc,
        } = asked;
        if self.skip_paths.iter().any(|p| wildcard_match(p, &path)) {
            return None;
        }
        let peer_text = peer.map_or_else(|| "an unknown address".to_string(), |p| p.to_string());
        match auth
            .check(authorization.as_deref(), peer.map(|p| p.ip()))
            .await
        {
            Outcome::User(user) => {
                debug!(user = %user, peer = %peer_text, "authenticated");
                None
            }
            Outcome::Missing => {
                debug!(peer = %peer_text, path = %path, "no credentials");
                Some(self.unauthorized(grpc))
            }
            Outcome::Malformed => {
                debug!(peer = %peer_text, "malformed Authorization header");
                Some(refusal(
                    grpc,
                    StatusCode::BAD_REQUEST,
                    MALFORMED,
                    "Malformed authorization header",
                ))
            }
            Outcome::Refused { user, failures } => {
                log_failure(&user, &peer_text, failures, auth.limiter.limits());
                Some(self.unauthorized(grpc))
            }
            Outcome::Blocked { retry_after } => {
                // Not logged above debug: the limit's own line said so once.
                debug!(peer = %peer_text, "login refused unchecked: too many failures");
                Some(blocked(grpc, retry_after))
            }
        }
    }

    /// ksqlDB's answer: 401, `{"error_code": 40100, "message": "Unauthorized"}`, and the
    /// challenge that makes browsers and curl's `--anyauth` send credentials.
    fn unauthorized(&self, grpc: bool) -> Response {
        let mut r = refusal(grpc, StatusCode::UNAUTHORIZED, UNAUTHORIZED, "Unauthorized");
        if !grpc {
            let challenge = format!("Basic realm=\"{}\"", self.realm.replace('"', "'"));
            if let Ok(v) = HeaderValue::from_str(&challenge) {
                r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
        }
        r
    }

    /// `None`: nothing a cross-site page could have sent.
    fn browser_check(&self, req: &Request) -> Option<Response> {
        let method = req.method();
        let writes = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if writes || is_websocket_upgrade(req) {
            if let Some(origin) = req.headers().get(header::ORIGIN) {
                if !self.origin_allowed(origin, req) {
                    let shown = String::from_utf8_lossy(origin.as_bytes()).into_owned();
                    debug!(origin = %shown, path = req.uri().path(), "cross-origin request refused");
                    return Some(generic_error(
                        StatusCode::FORBIDDEN,
                        FORBIDDEN,
                        &format!(
                            "Origin {shown:?} may not use this server: a page of another site \
                             cannot send it requests. Allow the origin with \
                             access.control.allow.origin"
                        ),
                    ));
                }
            }
        }
        if *method == Method::POST || *method == Method::PUT {
            if let Some(kind) = req.headers().get(header::CONTENT_TYPE).and_then(form_type) {
                return Some(generic_error(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    UNSUPPORTED_MEDIA_TYPE,
                    &format!(
                        "Content-Type {kind} is not accepted: any web page can make a browser \
                         send it, so it is refused to keep other sites from running statements. \
                         Send application/json or application/vnd.ksql.v1+json (curl: -H \
                         'Content-Type: application/json')"
                    ),
                ));
            }
        }
        None
    }

    /// The port's own origin (`http(s)://` and the Host the request was sent to), or one of
    /// `access.control.allow.origin`'s patterns.
    fn origin_allowed(&self, origin: &HeaderValue, req: &Request) -> bool {
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim().to_ascii_lowercase();
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()));
        let scheme = if self.tls { "https" } else { "http" };
        if host.is_some_and(|h| origin == format!("{scheme}://{}", h.to_ascii_lowercase())) {
            return true;
        }
        self.allowed_origins
            .iter()
            .any(|p| wildcard_match(&p.to_ascii_lowercase(), &origin))
    }
}

fn log_failure(user: &str, peer: &str, failures: u32, limits: FailureLimits) {
    let window = limits.window.as_secs_f64();
    if failures == 0 {
        warn!("authentication failed for user {user:?} from {peer}");
    } else if failures < limits.max_failures {
        warn!(
            "authentication failed for user {user:?} from {peer} ({failures} of {} allowed in {window} s)",
            limits.max_failures
        );
    } else if failures == limits.max_failures {
        warn!(
            "authentication failed for user {user:?} from {peer}: {failures} failures in {window} s; \
             its logins are refused unchecked until the window ends \
             (brook.authentication.max.failures)"
        );
    }
}

/// A refusal in the client's protocol: ksqlDB's error body, or a gRPC status.
fn refusal(grpc: bool, status: StatusCode, code: u32, message: &str) -> Response {
    if !grpc {
        return generic_error(status, code, message);
    }
    let s = match status {
        StatusCode::UNAUTHORIZED => tonic::Status::unauthenticated(message),
        StatusCode::TOO_MANY_REQUESTS => tonic::Status::resource_exhausted(message),
        _ => tonic::Status::invalid_argument(message),
    };
    s.into_http::<axum::body::Body>().into_response()
}

fn blocked(grpc: bool, retry_after: Duration) -> Response {
    let secs = retry_after.as_secs().max(1);
    let mut r = refusal(
        grpc,
        StatusCode::TOO_MANY_REQUESTS,
        super::TOO_MANY_REQUESTS,
        &format!("Too many failed logins from this address: retry in {secs} s"),
    );
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

fn is_grpc(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn is_websocket_upgrade(req: &Request) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    // HTTP/1.1's Upgrade, or HTTP/2's extended CONNECT (RFC 8441).
    has(header::UPGRADE, "websocket") || *req.method() == Method::CONNECT
}

/// The media types an HTML form, or a `fetch` without a CORS preflight, may send; the
/// header's own spelling (without parameters) when it is one of them.
fn form_type(value: &HeaderValue) -> Option<String> {
    let text = String::from_utf8_lossy(value.as_bytes());
    let media = text
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    matches!(
        media.as_str(),
        "text/plain" | "application/x-www-form-urlencoded" | "multipart/form-data"
    )
    .then_some(media)
}

/// `pattern` with `*` matching any run of characters (ksqlDB's wildcard lists).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    // Where the last `*` was, and the text position it is matched up to.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if pi < p.len() && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_as_ksqldb_lists_write_them() {
        let cases = [
            ("/healthcheck", "/healthcheck", true),
            ("/healthcheck", "/healthcheck/x", false),
            ("/status/*", "/status/stream/X/create", true),
            ("*", "anything", true),
            ("https://*.example.com", "https://ui.example.com", true),
            ("https://*.example.com", "https://example.com", false),
            ("https://*.example.com", "http://ui.example.com", false),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("", "", true),
        ];
        for (pattern, text, want) in cases {
            assert_eq!(wildcard_match(pattern, text), want, "{pattern} ~ {text}");
        }
    }

    #[test]
    fn form_types_are_told_apart_from_json() {
        let cases = [
            ("text/plain", Some("text/plain")),
            ("text/plain;charset=UTF-8", Some("text/plain")),
            (
                "Application/X-WWW-Form-Urlencoded",
                Some("application/x-www-form-urlencoded"),
            ),
            (
                "multipart/form-data; boundary=x",
                Some("multipart/form-data"),
            ),
            ("application/json", None),
            ("application/vnd.ksql.v1+json; charset=utf-8", None),
            ("application/vnd.ksqlapi.delimited.v1", None),
            ("application/grpc", None),
        ];
        for (value, want) in cases {
            let got = form_type(&HeaderValue::from_static(value));
            assert_eq!(got.as_deref(), want, "{value}");
        }
    }
}
