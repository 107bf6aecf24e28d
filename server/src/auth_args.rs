//! brook-server's flags for its own REST/gRPC port — where it listens, TLS, the users
//! file — and ksqlDB's settings for the same, as a `ksql-server.properties` has them:
//! `listeners`, `authentication.method`/`.realm`/`.skip.paths`, the `ssl.*` of an
//! `https://` listener (PEM files only) and `access.control.allow.origin`
//! (docs/security.md, "API").
//!
//! Safe by default: without authentication the port is bound to 127.0.0.1, and another
//! address needs `--insecure-listen` (or ksqlDB's `listeners=` naming it).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;

use crate::auth::{AuthError, FailureLimits, Users};
use crate::tls::{self, ClientAuth, TlsError, TlsFiles};

#[derive(Debug, clap::Args)]
pub struct ApiArgs {
    /// Address of the REST API (ksqlDB's: `/ksql`, `/query-stream`, `/query`, `/info`) and
    /// of the gRPC API (`brook.v1.Brook`, with server reflection) on the same port.
    /// Default 127.0.0.1:8088 (this machine only); 0.0.0.0:8088 with authentication
    /// (--users, --tls-client-ca) or --insecure-listen. ksqlDB's `listeners=` also sets it.
    #[arg(long, env = "BROOK_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// The API's TLS certificate chain (PEM): the port then takes HTTPS and gRPC over TLS
    /// only, HTTP/2 or HTTP/1.1 chosen by ALPN. Needs --tls-key.
    #[arg(long, env = "BROOK_TLS_CERT", value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM, unencrypted).
    #[arg(long, env = "BROOK_TLS_KEY", value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// CA certificates (PEM) that clients' certificates must chain to: every client must
    /// present one (ksqlDB's `ssl.client.authentication=REQUIRED`; REQUESTED also works).
    #[arg(
        long,
        env = "BROOK_TLS_CLIENT_CA",
        value_name = "PEM",
        requires = "tls_cert"
    )]
    pub tls_client_ca: Option<PathBuf>,

    /// The API's users: an Apache htpasswd file of bcrypt hashes (`htpasswd -nbB NAME
    /// PASSWORD` makes a line). Every endpoint but /healthcheck then needs HTTP Basic
    /// credentials (gRPC: the `authorization` metadata).
    #[arg(long, env = "BROOK_USERS", value_name = "FILE")]
    pub users: Option<PathBuf>,

    /// Serve the API on a non-loopback address without authentication: anyone who reaches
    /// the port may run any statement.
    #[arg(long)]
    pub insecure_listen: bool,
}

/// ksqlDB's names, and Brook's where ksqlDB has none.
pub const LISTENERS: &str = "listeners";
pub const AUTHENTICATION_METHOD: &str = "authentication.method";
pub const AUTHENTICATION_REALM: &str = "authentication.realm";
pub const AUTHENTICATION_SKIP_PATHS: &str = "authentication.skip.paths";
pub const SSL_CLIENT_AUTHENTICATION: &str = "ssl.client.authentication";
/// ksqlDB's deprecated boolean form of `ssl.client.authentication`.
pub const SSL_CLIENT_AUTH: &str = "ssl.client.auth";
pub const SSL_KEYSTORE_LOCATION: &str = "ssl.keystore.location";
pub const SSL_TRUSTSTORE_LOCATION: &str = "ssl.truststore.location";
pub const ACCESS_CONTROL_ALLOW_ORIGIN: &str = "access.control.allow.origin";
pub const MAX_FAILURES: &str = "brook.authentication.max.failures";
pub const FAILURE_WINDOW_MS: &str = "brook.authentication.failure.window.ms";

/// Answered without credentials, whatever `authentication.skip.paths` says: load
/// balancers and orchestrators probe it.
pub const ALWAYS_SKIPPED: &str = "/healthcheck";
const DEFAULT_PORT: u16 = 8088;
const DEFAULT_REALM: &str = "Brook";

/// A setting or flag of the API's security that cannot be used.
#[derive(Debug, Error)]
pub enum ApiArgsError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Users(#[from] AuthError),
    #[error("`{key}={value}`: {reason}")]
    Setting {
        key: &'static str,
        value: String,
        reason: String,
    },
    #[error("{0}")]
    Flags(String),
    #[error("the API would listen on {addr}, which other machines can reach, without authentication: anyone who reaches the port could run any statement, TERMINATE queries, PRINT any topic and delete schemas. Require logins with --users FILE (and --tls-cert/--tls-key, so that passwords are not sent in the clear), or pass --insecure-listen to serve it without them")]
    Insecure { addr: SocketAddr },
}

/// Why the API's address is what it is, for the log line that says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exposure {
    /// A loopback address: this machine only.
    Loopback,
    /// Another address, with logins or client certificates required.
    Authenticated,
    /// Another address without authentication, by the operator's choice (the flag or
    /// setting named).
    Insecure { by: &'static str },
}

/// The API's security, as the listener and the REST router use it.
#[derive(Debug)]
pub struct ApiSecurity {
    pub listen: SocketAddr,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub client_auth: Option<ClientAuth>,
    pub users: Option<Users>,
    pub failure_limits: FailureLimits,
    pub realm: String,
    /// Paths answered without credentials (`*` matches any run of characters).
    pub skip_paths: Vec<String>,
    /// Origins other than the port's own that browsers may use it from.
    pub allowed_origins: Vec<String>,
    pub exposure: Exposure,
}

/// The last value of each setting, as `--config` wins over the file.
struct Settings<'a>(&'a [(String, String)]);

impl<'a> Settings<'a> {
    fn get(&self, key: &str) -> Option<&'a str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn number(&self, key: &'static str, min: u64) -> Result<Option<u64>, ApiArgsError> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.parse::<u64>() {
            Ok(n) if n >= min && n <= u64::from(u32::MAX) => Ok(Some(n)),
            _ => Err(setting(
                key,
                v,
                format!("expected a whole number from {min} to {}", u32::MAX),
            )),
        }
    }
}

fn setting(key: &'static str, value: &str, reason: impl Into<String>) -> ApiArgsError {
    ApiArgsError::Setting {
        key,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// ksqlDB's `listeners=`: one `http://` or `https://` URL (Brook serves one port).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Listener {
    https: bool,
    addr: SocketAddr,
}

fn listener(value: &str) -> Result<Listener, ApiArgsError> {
    let bad = |reason: String| setting(LISTENERS, value, reason);
    let urls: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let [one] = urls.as_slice() else {
        return Err(bad(
            "Brook serves its REST and gRPC APIs on one port: name one listener".into(),
        ));
    };
    let url = url::Url::parse(one).map_err(|e| bad(e.to_string()))?;
    let https = match url.scheme() {
        "http" => false,
        "https" => true,
        other => return Err(bad(format!("`{other}://`: expected http:// or https://"))),
    };
    let host = url
        .host_str()
        .ok_or_else(|| bad("no host".into()))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    let port = url.port().unwrap_or(DEFAULT_PORT);
    let addr = (host, port)
        .to_socket_addrs()
        .map_err(|e| bad(format!("cannot resolve `{host}`: {e}")))?
        .next()
        .ok_or_else(|| bad(format!("`{host}` has no address")))?;
    Ok(Listener { https, addr })
}

/// Reads the flags and `config` (the properties file, then `--config`).
pub fn prepare(args: &ApiArgs, config: &[(String, String)]) -> Result<ApiSecurity, ApiArgsError> {
    let settings = Settings(config);
    let listener = settings.get(LISTENERS).map(listener).transpose()?;
    let tls_files = tls_files(args, &settings, listener)?;
    let tls = tls_files.as_ref().map(tls::server_config).transpose()?;
    let client_auth = tls_files
        .as_ref()
        .and_then(|f| f.client_ca.as_ref())
        .map(|(_, a)| *a);
    let users = users(args, &settings)?;
    let authenticated = users.is_some() || client_auth == Some(ClientAuth::Required);
    let from_listeners = args.listen.is_none() && listener.is_some();
    let listen = args
        .listen
        .or(listener.map(|l| l.addr))
        .unwrap_or_else(|| default_listen(authenticated || args.insecure_listen));
    let exposure = if listen.ip().is_loopback() {
        Exposure::Loopback
    } else if authenticated {
        Exposure::Authenticated
    } else if args.insecure_listen {
        Exposure::Insecure {
            by: "--insecure-listen",
        }
    } else if from_listeners {
        Exposure::Insecure { by: LISTENERS }
    } else {
        return Err(ApiArgsError::Insecure { addr: listen });
    };
    let window_ms = settings.number(FAILURE_WINDOW_MS, 1)?;
    let defaults = FailureLimits::default();
    let failure_limits = FailureLimits {
        max_failures: settings
            .number(MAX_FAILURES, 1)?
            .map_or(defaults.max_failures, |n| n as u32),
        window: window_ms.map_or(defaults.window, Duration::from_millis),
    };
    let mut skip_paths = vec![ALWAYS_SKIPPED.to_string()];
    skip_paths.extend(settings.list(AUTHENTICATION_SKIP_PATHS));
    Ok(ApiSecurity {
        listen,
        tls,
        client_auth,
        users,
        failure_limits,
        realm: settings
            .get(AUTHENTICATION_REALM)
            .unwrap_or(DEFAULT_REALM)
            .to_string(),
        skip_paths,
        allowed_origins: settings.list(ACCESS_CONTROL_ALLOW_ORIGIN),
        exposure,
    })
}

fn default_listen(network: bool) -> SocketAddr {
    let ip = if network {
        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    };
    SocketAddr::new(ip, DEFAULT_PORT)
}

/// The users file (`--users`), checked against `authentication.method`.
fn users(args: &ApiArgs, settings: &Settings<'_>) -> Result<Option<Users>, ApiArgsError> {
    let method = settings.get(AUTHENTICATION_METHOD);
    let basic = match method.map(str::to_ascii_uppercase).as_deref() {
        None => None,
        Some("BASIC") => Some(true),
        Some("NONE") => Some(false),
        Some(_) => {
            return Err(setting(
                AUTHENTICATION_METHOD,
                method.unwrap_or_default(),
                "expected BASIC or NONE",
            ))
        }
    };
    match (&args.users, basic) {
        (Some(_), Some(false)) => Err(ApiArgsError::Flags(format!(
            "--users asks for logins, but `{AUTHENTICATION_METHOD}=NONE` says none: drop one"
        ))),
        (Some(path), _) => Ok(Some(Users::load(path)?)),
        (None, Some(true)) => Err(setting(
            AUTHENTICATION_METHOD,
            "BASIC",
            "Brook checks logins against an Apache htpasswd file of bcrypt hashes, given \
             with --users FILE (`htpasswd -nbB NAME PASSWORD` makes a line); it does not read \
             JAAS realms (`authentication.realm` only names the realm in its answers)",
        )),
        (None, _) => Ok(None),
    }
}

/// The listener's TLS files: the flags, else with `listeners=https://…` ksqlDB's
/// `ssl.keystore.location` (a PEM file holding the chain and the key) and, when client
/// certificates are asked for, `ssl.truststore.location` (PEM).
fn tls_files(
    args: &ApiArgs,
    settings: &Settings<'_>,
    listener: Option<Listener>,
) -> Result<Option<TlsFiles>, ApiArgsError> {
    let https = listener.is_some_and(|l| l.https);
    if listener.is_some() && !https && args.tls_cert.is_some() {
        return Err(ApiArgsError::Flags(format!(
            "--tls-cert makes the port HTTPS, but `{LISTENERS}` names an http:// URL: write \
             https://"
        )));
    }
    let (cert, key) = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => (c.clone(), k.clone()),
        _ if https => match settings.get(SSL_KEYSTORE_LOCATION) {
            Some(p) => (PathBuf::from(p), PathBuf::from(p)),
            None => {
                return Err(ApiArgsError::Flags(format!(
                    "`{LISTENERS}` names an https:// URL: give the certificate and key with \
                     --tls-cert and --tls-key (PEM), or `{SSL_KEYSTORE_LOCATION}` naming a PEM \
                     file that holds both"
                )))
            }
        },
        _ => return Ok(None),
    };
    let client_ca = client_ca(args, settings)?;
    Ok(Some(TlsFiles {
        cert,
        key,
        client_ca,
    }))
}

/// `--tls-client-ca`, or the truststore when ksqlDB's settings ask for client
/// certificates.
fn client_ca(
    args: &ApiArgs,
    settings: &Settings<'_>,
) -> Result<Option<(PathBuf, ClientAuth)>, ApiArgsError> {
    let asked = client_auth_setting(settings)?;
    match (&args.tls_client_ca, asked) {
        (Some(_), Some(None)) => Err(ApiArgsError::Flags(format!(
            "--tls-client-ca asks for client certificates, but `{SSL_CLIENT_AUTHENTICATION}` \
             says NONE: drop one"
        ))),
        (Some(path), mode) => Ok(Some((
            path.clone(),
            mode.flatten().unwrap_or(ClientAuth::Required),
        ))),
        (None, Some(Some(mode))) => match settings.get(SSL_TRUSTSTORE_LOCATION) {
            Some(p) => Ok(Some((PathBuf::from(p), mode))),
            None => Err(ApiArgsError::Flags(format!(
                "`{SSL_CLIENT_AUTHENTICATION}` asks for client certificates: name their CA \
                 with --tls-client-ca or `{SSL_TRUSTSTORE_LOCATION}` (PEM)"
            ))),
        },
        (None, _) => Ok(None),
    }
}

/// `ssl.client.authentication` (or the older `ssl.client.auth`): `None` when unset,
/// `Some(None)` for NONE.
fn client_auth_setting(
    settings: &Settings<'_>,
) -> Result<Option<Option<ClientAuth>>, ApiArgsError> {
    if let Some(v) = settings.get(SSL_CLIENT_AUTHENTICATION) {
        return match v.to_ascii_uppercase().as_str() {
            "NONE" => Ok(Some(None)),
            "REQUESTED" => Ok(Some(Some(ClientAuth::Requested))),
            "REQUIRED" => Ok(Some(Some(ClientAuth::Required))),
            _ => Err(setting(
                SSL_CLIENT_AUTHENTICATION,
                v,
                "expected NONE, REQUESTED or REQUIRED",
            )),
        };
    }
    match settings.get(SSL_CLIENT_AUTH) {
        Some(v) if v.eq_ignore_ascii_case("true") => Ok(Some(Some(ClientAuth::Required))),
        Some(v) if v.eq_ignore_ascii_case("false") => Ok(Some(None)),
        Some(v) => Err(setting(SSL_CLIENT_AUTH, v, "expected true or false")),
        None => Ok(None),
    }
}

impl ApiSecurity {
    /// The log lines that say who can reach the API, once it is bound to `addr`.
    pub fn announce(&self, addr: SocketAddr) {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        let grpc = if self.tls.is_some() { "grpcs" } else { "grpc" };
        tracing::info!(listen = %addr, "REST API listening on {scheme}://{addr} (gRPC too: {grpc}://{addr})");
        let logins = match (&self.users, self.client_auth) {
            (Some(u), _) if u.len() == 1 => "HTTP Basic logins required (1 user)".to_string(),
            (Some(u), _) => format!("HTTP Basic logins required ({} users)", u.len()),
            (None, Some(ClientAuth::Required)) => "client certificates required".to_string(),
            (None, _) => "no authentication".to_string(),
        };
        match self.exposure {
            Exposure::Loopback if logins.starts_with("no ") => tracing::info!(
                "the API is bound to a loopback address, so only this machine can reach it: it has no authentication. To serve other machines, add --users FILE with --tls-cert/--tls-key (or pass --insecure-listen)"
            ),
            Exposure::Loopback => tracing::info!(
                "the API is bound to a loopback address, so only this machine can reach it; {logins}"
            ),
            Exposure::Authenticated => tracing::info!("the API is open to the network; {logins}"),
            Exposure::Insecure { by } => tracing::warn!(
                "the API is open to the network WITHOUT authentication ({by}): anyone who reaches {addr} can run any statement, TERMINATE queries, PRINT any topic and delete schemas"
            ),
        }
        if self.users.is_some() && self.tls.is_none() && !addr.ip().is_loopback() {
            tracing::warn!("passwords reach the API in the clear: add --tls-cert and --tls-key");
        }
    }
}

#[cfg(test)]
mod tests;
