//! TLS on the REST/gRPC port: the certificate chain and key from PEM files, optionally the
//! CA that client certificates must chain to, and ALPN offering HTTP/2 (`h2`, which gRPC
//! needs) and HTTP/1.1. rustls reads PEM only, so Java keystores and encrypted keys are
//! refused with the `openssl` command that converts them (docs/security.md).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use thiserror::Error;

/// Whether clients must present a certificate (ksqlDB's `ssl.client.authentication`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Checked when presented, but not required.
    Requested,
    Required,
}

/// The listener's PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, the server's own certificate first.
    pub cert: PathBuf,
    /// The unencrypted private key (may be the same file as `cert`).
    pub key: PathBuf,
    /// CA certificates that client certificates must chain to, and how strictly.
    pub client_ca: Option<(PathBuf, ClientAuth)>,
}

/// A TLS file Brook cannot use; the message names the file and what to do.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("TLS {what} {}: cannot read it: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("TLS {what} {}: {reason}", path.display())]
    Content {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("TLS certificate {} and key {}: {reason}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        reason: String,
    },
}

/// The protocols offered by ALPN, preferred first: HTTP/2 serves gRPC and ksqlDB's
/// HTTP/2 clients, HTTP/1.1 curl and WebSockets.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The listener's TLS settings.
pub fn server_config(files: &TlsFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let certs = certificates("certificate", &files.cert)?;
    let key = private_key(&files.key)?;
    // Named explicitly: the process holds more than one rustls user, and the default
    // provider is ambiguous when two are compiled in.
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| pair_error(files, e))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some((path, auth)) => {
            let verifier = client_verifier(path, *auth, provider)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| pair_error(files, e))?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

fn pair_error(files: &TlsFiles, e: rustls::Error) -> TlsError {
    TlsError::Pair {
        cert: files.cert.clone(),
        key: files.key.clone(),
        reason: e.to_string(),
    }
}

/// The file's text, or why it is not a PEM file.
fn pem_text(what: &'static str, path: &Path) -> Result<String, TlsError> {
    let bytes = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    if !text.contains("-----BEGIN ") {
        return Err(content(
            what,
            path,
            "not a PEM file (a JKS or PKCS#12 keystore?). Brook reads PEM: convert a PKCS#12 \
             store with `openssl pkcs12 -in STORE.p12 -nodes -out STORE.pem`, a JKS one first \
             with `keytool -importkeystore -srckeystore STORE.jks -destkeystore STORE.p12 \
             -deststoretype PKCS12`",
        ));
    }
    Ok(text)
}

fn content(what: &'static str, path: &Path, reason: impl Into<String>) -> TlsError {
    TlsError::Content {
        what,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Every certificate in a PEM file (at least one).
fn certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = pem_text(what, path)?;
    let certs = CertificateDer::pem_slice_iter(text.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(what, path, pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(content(
            what,
            path,
            "no certificate (-----BEGIN CERTIFICATE-----) in the file",
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let text = pem_text("key", path)?;
    if text.contains("-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || text.contains("Proc-Type: 4,ENCRYPTED")
    {
        return Err(content(
            "key",
            path,
            "the key is encrypted, and Brook reads unencrypted keys only: write one with \
             `openssl pkey -in KEY.pem -out KEY-plain.pem` and keep it readable by Brook's user \
             only (chmod 600)",
        ));
    }
    PrivateKeyDer::from_pem_slice(text.as_bytes()).map_err(|e| {
        content(
            "key",
            path,
            format!(
                "{} (a PEM private key, -----BEGIN PRIVATE KEY-----, is expected)",
                pem_reason(&e)
            ),
        )
    })
}

/// The PEM reader's error in words (its own shows markers as byte lists).
fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => format!(
            "a section has no end line (-----END {}-----)",
            String::from_utf8_lossy(end_marker)
        ),
        Error::IllegalSectionStart { line } => format!(
            "a section starts with a bad line ({})",
            String::from_utf8_lossy(line)
        ),
        Error::NoItemsFound => "no private key in the file".to_string(),
        other => other.to_string(),
    }
}

fn client_verifier(
    path: &Path,
    auth: ClientAuth,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, TlsError> {
    let what = "client CA";
    let mut roots = RootCertStore::empty();
    for cert in certificates(what, path)? {
        roots
            .add(cert)
            .map_err(|e| content(what, path, e.to_string()))?;
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    let builder = match auth {
        ClientAuth::Required => builder,
        ClientAuth::Requested => builder.allow_unauthenticated(),
    };
    builder
        .build()
        .map_err(|e| content(what, path, e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    /// Each file a listener may be given by mistake, and the words its refusal must carry.
    #[test]
    fn unusable_files_are_refused_naming_the_file_and_the_fix() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        let cert_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let cases: Vec<(TlsFiles, &[&str])> = vec![
            (
                TlsFiles {
                    cert: d.join("missing.pem"),
                    key: d.join("missing.key"),
                    client_ca: None,
                },
                &["TLS certificate", "missing.pem", "cannot read it"],
            ),
            (
                TlsFiles {
                    cert: write(d, "store.jks", "\u{fe}\u{ed}binary"),
                    key: d.join("k"),
                    client_ca: None,
                },
                &["store.jks", "not a PEM file", "openssl pkcs12"],
            ),
            (
                TlsFiles {
                    cert: write(
                        d,
                        "nocert.pem",
                        "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n",
                    ),
                    key: d.join("k"),
                    client_ca: None,
                },
                &["nocert.pem", "no certificate"],
            ),
            (
                TlsFiles {
                    cert: write(d, "cut.pem", "-----BEGIN CERTIFICATE-----\nMIIB\n"),
                    key: d.join("k"),
                    client_ca: None,
                },
                &["cut.pem", "no end line", "-----END CERTIFICATE-----"],
            ),
            (
                TlsFiles {
                    cert: write(d, "c.pem", cert_pem),
                    key: write(
                        d,
                        "enc.key",
                        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
                    ),
                    client_ca: None,
                },
                &["enc.key", "encrypted", "openssl pkey"],
            ),
        ];
        for (files, words) in cases {
            let err = server_config(&files).expect_err("refused").to_string();
            for w in words {
                assert!(err.contains(w), "`{err}` lacks `{w}`");
            }
        }
    }
}
