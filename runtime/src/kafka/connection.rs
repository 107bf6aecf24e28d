//! The connection every Kafka client of Brook's is built from: the bootstrap servers and the
//! security settings (TLS, SASL) together, so that no client can be made with the address
//! alone and reach a secured cluster without its credentials.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseProducer, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;

use crate::error::{Result, RuntimeError};

/// librdkafka properties whose values are secrets: never shown by `Debug`, in errors or logs.
const SECRET_PROPERTIES: &[&str] = &[
    "sasl.password",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "sasl.oauthbearer.config",
    "sasl.oauthbearer.client.secret",
];

/// What `Debug` and error messages show instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// Whether a librdkafka property's value is a secret.
pub fn is_secret(key: &str) -> bool {
    SECRET_PROPERTIES.contains(&key)
}

/// librdkafka security properties (`security.protocol`, `sasl.*`, `ssl.*`), set on every
/// client Brook makes. Built by the server from ksqlDB's settings; empty means PLAINTEXT.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClientSecurity {
    properties: BTreeMap<String, String>,
}

impl ClientSecurity {
    pub fn new() -> ClientSecurity {
        ClientSecurity::default()
    }

    /// Sets a librdkafka property (a later value replaces an earlier one).
    pub fn set(&mut self, key: &str, value: impl Into<String>) -> &mut ClientSecurity {
        self.properties.insert(key.to_string(), value.into());
        self
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.properties.get(key).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.properties.is_empty()
    }

    /// `security.protocol`, as librdkafka spells it (lower case); `plaintext` when unset.
    pub fn protocol(&self) -> String {
        self.get("security.protocol")
            .unwrap_or("plaintext")
            .to_ascii_lowercase()
    }

    /// The SASL mechanism, when the protocol uses SASL.
    pub fn sasl_mechanism(&self) -> Option<&str> {
        self.protocol()
            .starts_with("sasl")
            .then(|| self.get("sasl.mechanisms").unwrap_or("GSSAPI"))
    }

    /// The property names, for messages (values are left out: some are secrets).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.properties.keys().map(String::as_str)
    }

    fn apply(&self, c: &mut ClientConfig) {
        for (k, v) in &self.properties {
            c.set(k, v);
        }
    }
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = self
            .properties
            .iter()
            .map(|(k, v)| (k, if is_secret(k) { REDACTED } else { v.as_str() }));
        f.debug_map().entries(shown).finish()
    }
}

/// A Kafka cluster as Brook's clients reach it: its bootstrap servers and the security
/// settings every client gets. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct Kafka {
    bootstrap: Arc<str>,
    security: Arc<ClientSecurity>,
}

impl Kafka {
    /// A cluster reached without TLS or SASL (the embedded broker's default, tests).
    pub fn plaintext(bootstrap: impl Into<String>) -> Kafka {
        Kafka::new(bootstrap, ClientSecurity::default())
    }

    pub fn new(bootstrap: impl Into<String>, security: ClientSecurity) -> Kafka {
        Kafka {
            bootstrap: bootstrap.into().into(),
            security: Arc::new(security),
        }
    }

    /// `bootstrap.servers`.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    pub fn security(&self) -> &ClientSecurity {
        &self.security
    }

    /// The settings every client starts from: the servers and the security properties.
    pub(crate) fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.bootstrap());
        self.security.apply(&mut c);
        c
    }
}

/// The bootstrap servers (what logs name; the security settings are in `Debug`).
impl std::fmt::Display for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.bootstrap)
    }
}

impl std::fmt::Debug for Kafka {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kafka")
            .field("bootstrap", &self.bootstrap)
            .field("security", &self.security)
            .finish()
    }
}

/// A librdkafka configuration error, with the value left out when it is a secret (rdkafka's
/// own message carries the value).
pub fn config_error(e: KafkaError) -> RuntimeError {
    match e {
        KafkaError::ClientConfig(_, reason, key, value) => RuntimeError::KafkaSetting {
            value: if is_secret(&key) {
                REDACTED.to_string()
            } else {
                value
            },
            key,
            reason,
        },
        other => RuntimeError::Kafka(other),
    }
}

/// Remembers the first authentication or TLS error librdkafka reports, which it otherwise
/// only logs while retrying until the caller's timeout.
#[derive(Default)]
struct ProbeContext {
    refused: Mutex<Option<(RDKafkaErrorCode, String)>>,
    last: Mutex<Option<String>>,
}

impl ClientContext for ProbeContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "connecting to Kafka");
        let code = error.rdkafka_error_code();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        *last = Some(reason.to_string());
        if matches!(
            code,
            Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SSL)
        ) {
            let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
            if refused.is_none() {
                *refused = code.map(|c| (c, reason.to_string()));
            }
        }
    }
}

impl ProducerContext for ProbeContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: ()) {}
}

impl ProbeContext {
    fn refused(&self, kafka: &Kafka) -> Option<RuntimeError> {
        let refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
        let (code, reason) = refused.as_ref()?;
        let bootstrap = kafka.bootstrap().to_string();
        let reason = reason.clone();
        Some(match code {
            RDKafkaErrorCode::Authentication => RuntimeError::KafkaAuthentication {
                bootstrap,
                mechanism: kafka
                    .security()
                    .sasl_mechanism()
                    .unwrap_or("none")
                    .to_string(),
                reason,
            },
            _ => RuntimeError::KafkaTls { bootstrap, reason },
        })
    }
}

/// How often [`check_connection`] looks for a refusal while it waits for metadata.
const PROBE_STEP: Duration = Duration::from_millis(250);

/// Asks the cluster for its metadata and returns its broker count. A refused login or TLS
/// handshake fails at once with [`RuntimeError::KafkaAuthentication`] or
/// [`RuntimeError::KafkaTls`] (librdkafka would retry it until `timeout`); no answer within
/// `timeout` is [`RuntimeError::KafkaUnreachable`] with librdkafka's last complaint.
/// Blocking: run it off the async runtime.
pub fn check_connection(kafka: &Kafka, timeout: Duration) -> Result<usize> {
    let producer: BaseProducer<ProbeContext> = kafka
        .client_config()
        .create_with_context(ProbeContext::default())
        .map_err(config_error)?;
    let deadline = Instant::now() + timeout;
    loop {
        let step = PROBE_STEP.min(deadline.saturating_duration_since(Instant::now()));
        let answer = producer.client().fetch_metadata(None, step);
        // Serves the error callbacks queued meanwhile.
        producer.poll(Duration::ZERO);
        if let Some(refused) = producer.context().refused(kafka) {
            return Err(refused);
        }
        match answer {
            Ok(metadata) => return Ok(metadata.brokers().len()),
            Err(e) if Instant::now() >= deadline => {
                let last = producer.context().last.lock().map(|l| l.clone());
                let reason = last.ok().flatten().unwrap_or_else(|| e.to_string());
                return Err(RuntimeError::KafkaUnreachable {
                    bootstrap: kafka.bootstrap().to_string(),
                    reason,
                });
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secured() -> Kafka {
        let mut s = ClientSecurity::new();
        s.set("security.protocol", "SASL_SSL")
            .set("sasl.mechanisms", "SCRAM-SHA-512")
            .set("sasl.username", "brook")
            .set("sasl.password", "hunter2-secret")
            .set("ssl.key.password", "key-secret")
            .set("ssl.ca.location", "/etc/ca.pem");
        Kafka::new("broker:9093", s)
    }

    #[test]
    fn secrets_never_show_in_debug_or_display() {
        let k = secured();
        for shown in [
            format!("{k:?}"),
            format!("{k}"),
            format!("{:?}", k.security()),
        ] {
            assert!(
                !shown.contains("hunter2") && !shown.contains("key-secret"),
                "{shown}"
            );
        }
        let debug = format!("{k:?}");
        assert!(
            debug.contains("sasl.password") && debug.contains(REDACTED),
            "{debug}"
        );
        assert!(
            debug.contains("/etc/ca.pem") && debug.contains("brook"),
            "{debug}"
        );
        assert_eq!(k.to_string(), "broker:9093");
    }

    #[test]
    fn every_client_config_carries_the_security_settings() {
        let c = secured().client_config();
        assert_eq!(c.get("bootstrap.servers"), Some("broker:9093"));
        assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(c.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
        assert_eq!(c.get("sasl.password"), Some("hunter2-secret"));
        assert_eq!(
            Kafka::plaintext("b:1")
                .client_config()
                .get("security.protocol"),
            None
        );
    }

    /// librdkafka refuses `sasl_ssl` and SCRAM at configuration time when it was built
    /// without OpenSSL: this fails if the "ssl" feature is dropped.
    #[test]
    fn librdkafka_is_built_with_tls_and_sasl() {
        let user = [("sasl.username", "u"), ("sasl.password", "p")];
        let jwt = [
            ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
            ("sasl.oauthbearer.config", "principal=u"),
        ];
        let cases = [
            ("PLAIN", user),
            ("SCRAM-SHA-256", user),
            ("SCRAM-SHA-512", user),
            ("OAUTHBEARER", jwt),
        ];
        for (mechanism, settings) in cases {
            let mut s = ClientSecurity::new();
            s.set("security.protocol", "SASL_SSL")
                .set("sasl.mechanisms", mechanism);
            for (k, v) in settings {
                s.set(k, v);
            }
            let made: std::result::Result<BaseProducer, _> =
                Kafka::new("127.0.0.1:1", s).client_config().create();
            if let Err(e) = made {
                panic!("{mechanism} over SASL_SSL: {e}");
            }
        }
    }

    #[test]
    fn a_bad_secret_setting_is_reported_without_its_value() {
        let mut s = ClientSecurity::new();
        s.set("ssl.key.pem", "not a key: hunter2");
        s.set("security.protocol", "ssl");
        let made: std::result::Result<BaseProducer, _> =
            Kafka::new("127.0.0.1:1", s).client_config().create();
        let e = config_error(made.err().expect("a key that is no PEM is refused")).to_string();
        assert!(!e.contains("hunter2"), "{e}");
        assert!(e.contains("ssl.key.pem"), "{e}");
    }
}
