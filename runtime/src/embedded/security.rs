//! TLS and SASL SCRAM for the embedded broker: its certificate and key from PEM files, and
//! its users' SCRAM credentials written to its storage before it starts (nisshi checks
//! logins against the credentials its storage keeps, which only its SQLite storage does).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use nisshi_sans_io::ScramMechanism;
use nisshi_storage::{ScramCredential, Storage};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256, Sha512};
use url::Url;

use super::BrokerStorage;
use crate::error::{Result, RuntimeError};

/// The listener's certificate chain and private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A user who may log in to the embedded broker with SCRAM-SHA-256 or SCRAM-SHA-512.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramUser {
    name: String,
    password: String,
}

impl ScramUser {
    /// A user; the name must be non-empty and free of `,` and `=`, which SCRAM's messages
    /// would have to escape and Kafka's tools refuse.
    pub fn new(name: &str, password: &str) -> Result<ScramUser> {
        let name = name.trim();
        if name.is_empty() || name.contains([',', '=']) {
            return Err(RuntimeError::Broker(format!(
                "SCRAM user `{name}`: a user name must be non-empty, without `,` or `=`"
            )));
        }
        if password.is_empty() {
            return Err(RuntimeError::Broker(format!(
                "SCRAM user `{name}`: the password is empty"
            )));
        }
        Ok(ScramUser {
            name: name.to_string(),
            password: password.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Debug for ScramUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScramUser")
            .field("name", &self.name)
            .field("password", &crate::kafka::REDACTED)
            .finish()
    }
}

fn tls_error(what: &str, path: &Path, reason: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Broker(format!("TLS {what} {}: {reason}", path.display()))
}

/// The listener's TLS settings from `tls`'s PEM files.
pub(super) fn server_config(tls: &BrokerTls) -> Result<rustls::ServerConfig> {
    let certs = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| tls_error("certificate", &tls.cert, e))?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| tls_error("certificate", &tls.cert, e))?;
    if certs.is_empty() {
        return Err(tls_error(
            "certificate",
            &tls.cert,
            "no PEM certificate (-----BEGIN CERTIFICATE-----) in the file",
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| {
        tls_error(
            "key",
            &tls.key,
            format!("{e} (an unencrypted PEM private key is expected)"),
        )
    })?;
    // Named explicitly: the process may hold several rustls providers.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| tls_error("certificate and key", &tls.cert, e))
}

/// The cluster id the embedded broker runs as (`EmbeddedBroker::start`).
const CLUSTER: &str = super::CLUSTER_ID;

/// Kafka's default and minimum iteration count for SCRAM credentials.
const SCRAM_ITERATIONS: u32 = 4096;

/// A SCRAM credential for `password` (RFC 5802's SaltedPassword, StoredKey and ServerKey),
/// as Kafka's AlterUserScramCredentials stores it.
fn credential(mechanism: ScramMechanism, password: &str, salt: &[u8]) -> ScramCredential {
    use rsasl::mechanisms::scram::tools::{derive_keys, hash_password};
    let (stored_key, server_key) = match mechanism {
        ScramMechanism::Scram256 => {
            let mut salted = Default::default();
            hash_password::<Sha256>(password.as_bytes(), SCRAM_ITERATIONS, salt, &mut salted);
            let (client_key, server_key) = derive_keys::<Sha256>(&salted);
            (
                Bytes::copy_from_slice(&Sha256::digest(client_key)),
                Bytes::copy_from_slice(&server_key),
            )
        }
        ScramMechanism::Scram512 => {
            let mut salted = Default::default();
            hash_password::<Sha512>(password.as_bytes(), SCRAM_ITERATIONS, salt, &mut salted);
            let (client_key, server_key) = derive_keys::<Sha512>(&salted);
            (
                Bytes::copy_from_slice(&Sha512::digest(client_key)),
                Bytes::copy_from_slice(&server_key),
            )
        }
    };
    ScramCredential {
        salt: Bytes::copy_from_slice(salt),
        iterations: SCRAM_ITERATIONS as i32,
        stored_key,
        server_key,
    }
}

/// Writes each user's SCRAM-SHA-256 and SCRAM-SHA-512 credentials (a fresh salt each) to
/// the broker's storage, replacing earlier ones, so that a changed password takes effect at
/// the next start; users stored at an earlier start and not listed now are deleted (their
/// names are kept beside the log, as the storage cannot list them).
pub(super) async fn store_users(
    storage: &BrokerStorage,
    url: &Url,
    users: &[ScramUser],
) -> Result<()> {
    let db = match storage {
        BrokerStorage::Memory if users.is_empty() => return Ok(()),
        BrokerStorage::Memory => {
            return Err(RuntimeError::Broker(
                "SCRAM users need the broker's log on disk (its SQLite storage keeps the \
                 credentials); drop --broker-in-memory"
                    .into(),
            ))
        }
        BrokerStorage::Sqlite(db) => db,
    };
    let names_file = PathBuf::from(format!("{}.scram-users", db.display()));
    let before = previous_names(&names_file)?;
    if users.is_empty() && before.is_empty() {
        return Ok(());
    }
    let store = open(url).await?;
    let failed = |e: nisshi_storage::Error| {
        RuntimeError::Broker(format!(
            "storing SCRAM credentials in {}: {e:?}",
            db.display()
        ))
    };
    for gone in before
        .iter()
        .filter(|n| !users.iter().any(|u| u.name == **n))
    {
        for mechanism in [ScramMechanism::Scram256, ScramMechanism::Scram512] {
            store
                .delete_user_scram_credential(gone, mechanism)
                .await
                .map_err(failed)?;
        }
    }
    for user in users {
        for mechanism in [ScramMechanism::Scram256, ScramMechanism::Scram512] {
            let salt = [
                *uuid::Uuid::new_v4().as_bytes(),
                *uuid::Uuid::new_v4().as_bytes(),
            ];
            let c = credential(mechanism, &user.password, salt.as_flattened());
            store
                .upsert_user_scram_credential(&user.name, mechanism, c)
                .await
                .map_err(failed)?;
        }
    }
    let names: Vec<&str> = users.iter().map(|u| u.name.as_str()).collect();
    std::fs::write(&names_file, names.join("\n"))?;
    Ok(())
}

/// The user names an earlier start stored (none when it stored none).
fn previous_names(file: &Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(text
            .lines()
            .map(str::to_string)
            .filter(|n| !n.is_empty())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e.into()),
    }
}

/// The broker's SQLite storage, opened on its own before the broker starts.
async fn open(url: &Url) -> Result<nisshi_storage::ArcDynStorage> {
    let mut builder = nisshi_storage::StorageContainer::builder();
    builder.with_factory(Arc::new(nisshi_storage_sql::LiteEngineFactory));
    let advertised = Url::parse("tcp://127.0.0.1:0")
        .map_err(|e| RuntimeError::Broker(format!("listener url: {e}")))?;
    let failed = |e: nisshi_storage::Error| {
        RuntimeError::Broker(format!("opening the broker's storage: {e:?}"))
    };
    let store = builder
        .node_id(1)
        .cluster_id(CLUSTER)
        .advertised_listener(advertised)
        .storage(url.clone())
        .silent(true)
        .build()
        .await
        .map_err(failed)?;
    // Credentials belong to a cluster: on a new log, the broker's registration makes it.
    store
        .register_broker(nisshi_storage::BrokerRegistrationRequest {
            broker_id: 1,
            cluster_id: CLUSTER.to_string(),
            incarnation_id: uuid::Uuid::new_v4(),
            rack: None,
        })
        .await
        .map_err(failed)?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7677's SCRAM-SHA-256 example (password "pencil", salt "W22ZaJ0SNY7soEsUEjb6gQ==",
    /// 4096 iterations): the StoredKey and ServerKey its exchange is checked with.
    #[test]
    fn credentials_follow_rfc_7677() {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let salt = b64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").expect("salt");
        let c = credential(ScramMechanism::Scram256, "pencil", &salt);
        assert_eq!(c.iterations, 4096);
        assert_eq!(
            b64.encode(&c.stored_key),
            "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY="
        );
        assert_eq!(
            b64.encode(&c.server_key),
            "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="
        );
        // The same inputs through SHA-512 (values from Python's hashlib and hmac).
        let c512 = credential(ScramMechanism::Scram512, "pencil", &salt);
        assert_eq!(
            b64.encode(&c512.stored_key),
            "6AAub3065EYRmyFpM2RNwqK+eGnrkYuEWbXn19LsEmBqzu8QaCXNc1FwpnX9NhH2hK/60dzj9DoO5DvVkOHbvg=="
        );
        assert_eq!(
            b64.encode(&c512.server_key),
            "jZHbYjC1aHh0/hKbxyBuGFjDrgjgKTT1esA7awWiKcRZ0o/0b1yWEebBeSVkkCFewf91nLDfKF24mvD5nmE6rA=="
        );
    }

    #[test]
    fn passwords_never_show_in_debug() {
        let u = ScramUser::new("alice", "hunter2").expect("user");
        let shown = format!("{u:?}");
        assert!(
            shown.contains("alice") && !shown.contains("hunter2"),
            "{shown}"
        );
        for bad in ["", "a,b", "a=b"] {
            assert!(ScramUser::new(bad, "p").is_err(), "{bad}");
        }
        assert!(ScramUser::new("a", "").is_err());
    }

    #[tokio::test]
    async fn users_are_replaced_and_dropped_users_deleted() {
        let dir = tempfile::tempdir().expect("dir");
        let storage = BrokerStorage::Sqlite(dir.path().join("broker.db"));
        let url = storage.url().expect("url");
        let user = |n: &str| ScramUser::new(n, "pw").expect("user");
        store_users(&storage, &url, &[user("alice"), user("bob")])
            .await
            .expect("stored");
        store_users(&storage, &url, &[user("alice")])
            .await
            .expect("stored");
        let store = open(&url).await.expect("storage");
        for (name, kept) in [("alice", true), ("bob", false)] {
            for mechanism in [ScramMechanism::Scram256, ScramMechanism::Scram512] {
                let found = store
                    .user_scram_credential(name, mechanism)
                    .await
                    .expect("read");
                assert_eq!(found.is_some(), kept, "{name} {mechanism:?}");
            }
        }
        let e = store_users(&BrokerStorage::Memory, &url, &[user("alice")])
            .await
            .expect_err("memory keeps no credentials")
            .to_string();
        assert!(e.contains("--broker-in-memory"), "{e}");
    }

    #[test]
    fn tls_files_that_are_not_pem_are_named() {
        let dir = tempfile::tempdir().expect("dir");
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, "not a certificate").expect("write");
        let tls = BrokerTls {
            cert: cert.clone(),
            key: dir.path().join("missing.pem"),
        };
        let e = server_config(&tls).expect_err("no certificate").to_string();
        assert!(
            e.contains("cert.pem") && e.contains("no PEM certificate"),
            "{e}"
        );
    }
}
