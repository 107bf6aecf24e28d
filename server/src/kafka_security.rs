//! ksqlDB's security settings for Kafka and for the Schema Registry, as its users write them
//! (Java client names, `ksql.streams.` and `ksql.schema.registry.` prefixes, JAAS), turned
//! into librdkafka's properties, which every Kafka client Brook makes gets, and into the
//! registry client's TLS and basic authentication.
//!
//! Bare `ssl.*` names are shared (ksqlDB also configures its own listener with them);
//! `ksql.streams.X` applies to Kafka only and wins over a bare `X`, and
//! `ksql.schema.registry.X` to the registry only, winning likewise.

use std::collections::BTreeMap;
use std::path::Path;

use brook_runtime::format::registry_client::RegistryOptions;
use brook_runtime::kafka::ClientSecurity;
use thiserror::Error;

/// A security setting Brook cannot use. Messages name the setting as written and never
/// carry a password.
#[derive(Debug, Error)]
pub enum SecurityError {
    #[error("`{key}`: {reason}")]
    Setting { key: String, reason: String },
    #[error("`{key}` = {path}: {reason}")]
    File {
        key: String,
        path: String,
        reason: String,
    },
}

/// What the settings give Kafka's clients and the registry client.
#[derive(Debug, Default)]
pub struct Security {
    pub kafka: ClientSecurity,
    pub registry: RegistryOptions,
}

const STREAMS_PREFIX: &str = "ksql.streams.";
const REGISTRY_PREFIX: &str = "ksql.schema.registry.";
/// Kafka Streams' per-client prefixes: Brook gives every client the same security.
const CLIENT_PREFIXES: &[&str] = &[
    "producer.",
    "consumer.",
    "admin.",
    "main.consumer.",
    "restore.consumer.",
    "global.consumer.",
];

/// librdkafka's own names for what Brook also reads as Java's, accepted as they are.
const LIBRDKAFKA_NAMES: &[&str] = &[
    "enable.ssl.certificate.verification",
    "enable.sasl.oauthbearer.unsecure.jwt",
];

/// Whether `key` is a Kafka or registry security setting: such settings configure clients
/// and are kept out of the properties statements see (some are secrets).
pub fn is_security_key(key: &str) -> bool {
    let bare = key
        .strip_prefix(STREAMS_PREFIX)
        .or_else(|| key.strip_prefix(REGISTRY_PREFIX))
        .unwrap_or(key);
    let bare = CLIENT_PREFIXES
        .iter()
        .find_map(|p| bare.strip_prefix(p))
        .unwrap_or(bare);
    is_kafka_security(bare) || bare.starts_with("basic.auth.")
}

fn is_kafka_security(name: &str) -> bool {
    name == "security.protocol"
        || name.starts_with("ssl.")
        || name.starts_with("sasl.")
        || LIBRDKAFKA_NAMES.contains(&name)
}

/// One setting as it applies, and the key it was written as (for messages).
#[derive(Debug, Clone)]
struct Entry {
    key: String,
    value: String,
}

/// Settings by their bare name, for one destination.
#[derive(Debug, Default)]
struct View(BTreeMap<String, (u8, Entry)>);

impl View {
    /// `config`'s security settings for the destination whose prefix is `prefix`: a
    /// prefixed setting wins over the bare one, and a later one over an earlier one.
    fn of(config: &[(String, String)], prefix: &str) -> View {
        let mut view = View::default();
        for (key, value) in config {
            let (name, rank) = match key.strip_prefix(prefix) {
                Some(name) => (name, 1),
                None => (key.as_str(), 0),
            };
            if !is_kafka_security(name) && !name.starts_with("basic.auth.") {
                continue;
            }
            let entry = Entry {
                key: key.clone(),
                value: value.trim().to_string(),
            };
            match view.0.get(name) {
                Some((held, _)) if *held > rank => {}
                _ => {
                    view.0.insert(name.to_string(), (rank, entry));
                }
            }
        }
        view
    }

    fn get(&self, name: &str) -> Option<&Entry> {
        self.0
            .get(name)
            .map(|(_, e)| e)
            .filter(|e| !e.value.is_empty())
    }

    /// A setting that is present but empty (Java's way to switch some off).
    fn is_empty_value(&self, name: &str) -> bool {
        self.0.get(name).is_some_and(|(_, e)| e.value.is_empty())
    }
}

fn setting(e: &Entry, reason: impl Into<String>) -> SecurityError {
    SecurityError::Setting {
        key: e.key.clone(),
        reason: reason.into(),
    }
}

/// The security of Kafka's clients and of the registry client, from `config` (the
/// properties file, then `--config`, in order).
pub fn from_config(config: &[(String, String)]) -> Result<Security, SecurityError> {
    refuse_per_client_prefixes(config)?;
    let kafka = kafka_security(&View::of(config, STREAMS_PREFIX))?;
    let registry_url = config
        .iter()
        .rev()
        .find(|(k, _)| k == "ksql.schema.registry.url")
        .map(|(_, v)| v.trim().to_ascii_lowercase());
    let https = registry_url.is_some_and(|u| u.starts_with("https:"));
    let registry = registry::options(&View::of(config, REGISTRY_PREFIX), https, &kafka)?;
    Ok(Security { kafka, registry })
}

fn refuse_per_client_prefixes(config: &[(String, String)]) -> Result<(), SecurityError> {
    for (key, _) in config {
        let Some(rest) = key.strip_prefix(STREAMS_PREFIX) else {
            continue;
        };
        for p in CLIENT_PREFIXES {
            if rest.strip_prefix(p).is_some_and(is_kafka_security) {
                return Err(SecurityError::Setting {
                    key: key.clone(),
                    reason: format!(
                        "Brook gives every Kafka client the same security settings: write it \
                         as `{STREAMS_PREFIX}{}` (or without a prefix)",
                        &rest[p.len()..]
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The protocols Kafka's clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl Protocol {
    fn parse(e: &Entry) -> Result<Protocol, SecurityError> {
        match e.value.to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Protocol::Plaintext),
            "SSL" => Ok(Protocol::Ssl),
            "SASL_PLAINTEXT" => Ok(Protocol::SaslPlaintext),
            "SASL_SSL" => Ok(Protocol::SaslSsl),
            _ => Err(setting(
                e,
                format!(
                    "unknown protocol `{}`: expected PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL",
                    e.value
                ),
            )),
        }
    }

    fn sasl(self) -> bool {
        matches!(self, Protocol::SaslPlaintext | Protocol::SaslSsl)
    }

    fn tls(self) -> bool {
        matches!(self, Protocol::Ssl | Protocol::SaslSsl)
    }

    fn librdkafka(self) -> &'static str {
        match self {
            Protocol::Plaintext => "plaintext",
            Protocol::Ssl => "ssl",
            Protocol::SaslPlaintext => "sasl_plaintext",
            Protocol::SaslSsl => "sasl_ssl",
        }
    }
}

/// librdkafka's properties for `view`. TLS settings count only under SSL or SASL_SSL and
/// SASL ones only under SASL_*, as with Kafka's Java clients (bare `ssl.*` may be there
/// for ksqlDB's own listener).
fn kafka_security(view: &View) -> Result<ClientSecurity, SecurityError> {
    let mut s = ClientSecurity::new();
    let protocol = match view.get("security.protocol") {
        Some(e) => Protocol::parse(e)?,
        None => Protocol::Plaintext,
    };
    if protocol == Protocol::Plaintext {
        return Ok(s);
    }
    s.set("security.protocol", protocol.librdkafka());
    if protocol.sasl() {
        sasl::configure(view, &mut s)?;
    }
    if protocol.tls() {
        tls::configure(view, &mut s)?;
    }
    for name in LIBRDKAFKA_NAMES {
        if let Some(e) = view.get(name) {
            s.set(name, e.value.clone());
        }
    }
    Ok(s)
}

/// What a key or certificate file holds, from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StoreKind {
    Pem,
    Jks,
    /// DER: a PKCS#12 store, the other format Java's keytool writes.
    Pkcs12,
}

fn store_kind(e: &Entry) -> Result<StoreKind, SecurityError> {
    let path = Path::new(&e.value);
    let bytes = std::fs::read(path).map_err(|err| SecurityError::File {
        key: e.key.clone(),
        path: e.value.clone(),
        reason: format!("cannot read it: {err}"),
    })?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64 * 1024)]);
    Ok(if text.contains("-----BEGIN ") {
        StoreKind::Pem
    } else if bytes.starts_with(&[0xfe, 0xed, 0xfe, 0xed])
        || bytes.starts_with(&[0xce, 0xce, 0xce, 0xce])
    {
        StoreKind::Jks
    } else {
        StoreKind::Pkcs12
    })
}

fn file_error(e: &Entry, reason: impl Into<String>) -> SecurityError {
    SecurityError::File {
        key: e.key.clone(),
        path: e.value.clone(),
        reason: reason.into(),
    }
}

mod jaas;
mod registry;
mod sasl;
mod tls;

#[cfg(test)]
mod tests;
