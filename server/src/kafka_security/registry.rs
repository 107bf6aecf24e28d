//! The Schema Registry client's HTTPS and basic authentication, from ksqlDB's
//! `ksql.schema.registry.*` settings (bare `ssl.*` ones apply too, the prefixed winning).
//! Its TLS stack (rustls) reads PEM only.

use brook_runtime::format::registry_client::RegistryOptions;
use brook_runtime::kafka::ClientSecurity;

use super::tls::kind_name;
use super::{file_error, setting, store_kind, Entry, SecurityError, StoreKind, View};

pub(super) fn options(
    view: &View,
    https: bool,
    kafka: &ClientSecurity,
) -> Result<RegistryOptions, SecurityError> {
    let mut o = RegistryOptions {
        basic_auth: basic_auth(view, kafka)?,
        ..RegistryOptions::default()
    };
    if https {
        o.ca_pem = trust(view)?;
        o.identity_pem = identity(view)?;
        o.skip_hostname_verification = view.is_empty_value("ssl.endpoint.identification.algorithm");
    }
    Ok(o)
}

/// Confluent's `basic.auth.credentials.source`: USER_INFO (`basic.auth.user.info`, also
/// when the source is not set), URL (the URL's user info, which the client reads), or
/// SASL_INHERIT (Kafka's SASL user).
fn basic_auth(
    view: &View,
    kafka: &ClientSecurity,
) -> Result<Option<(String, String)>, SecurityError> {
    let user_info = || {
        view.get("basic.auth.user.info").map(|e| {
            let (user, password) = e.value.split_once(':').unwrap_or((&e.value, ""));
            (user.to_string(), password.to_string())
        })
    };
    let Some(source) = view.get("basic.auth.credentials.source") else {
        return Ok(user_info());
    };
    match source.value.to_ascii_uppercase().as_str() {
        "USER_INFO" => Ok(user_info()),
        "URL" => Ok(None),
        "SASL_INHERIT" => match (kafka.get("sasl.username"), kafka.get("sasl.password")) {
            (Some(u), Some(p)) => Ok(Some((u.to_string(), p.to_string()))),
            _ => Err(setting(
                source,
                "SASL_INHERIT, but Kafka's settings give no SASL user and password",
            )),
        },
        other => Err(setting(
            source,
            format!("unknown source `{other}`: expected USER_INFO, URL or SASL_INHERIT"),
        )),
    }
}

fn read(e: &Entry) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(&e.value).map_err(|err| file_error(e, format!("cannot read it: {err}")))
}

fn pem_only(e: &Entry, what: &str) -> Result<Vec<u8>, SecurityError> {
    match store_kind(e)? {
        StoreKind::Pem => read(e),
        kind => Err(file_error(
            e,
            format!(
                "a {} {what}: the Schema Registry client reads PEM only; convert it (keytool \
                 and openssl can) and set ksql.schema.registry.ssl.{what}.location to the PEM \
                 file",
                kind_name(kind)
            ),
        )),
    }
}

/// The CA certificates to trust, as PEM, when the settings name any.
fn trust(view: &View) -> Result<Option<Vec<u8>>, SecurityError> {
    if let Some(e) = view
        .get("ssl.truststore.certificates")
        .or_else(|| view.get("ssl.ca.pem"))
    {
        return Ok(Some(e.value.clone().into_bytes()));
    }
    match view
        .get("ssl.ca.location")
        .or_else(|| view.get("ssl.truststore.location"))
    {
        Some(e) => pem_only(e, "truststore").map(Some),
        None => Ok(None),
    }
}

/// The client's certificate chain and key, as one PEM, when the settings name them.
fn identity(view: &View) -> Result<Option<Vec<u8>>, SecurityError> {
    let (pem, key_entry) = if let (Some(c), Some(k)) = (
        view.get("ssl.keystore.certificate.chain"),
        view.get("ssl.keystore.key"),
    ) {
        (format!("{}\n{}", c.value, k.value).into_bytes(), k.clone())
    } else if let (Some(c), Some(k)) = (
        view.get("ssl.certificate.location"),
        view.get("ssl.key.location"),
    ) {
        let mut pem = pem_only(c, "keystore")?;
        pem.push(b'\n');
        pem.extend(pem_only(k, "keystore")?);
        (pem, k.clone())
    } else if let Some(e) = view.get("ssl.keystore.location") {
        (pem_only(e, "keystore")?, e.clone())
    } else {
        return Ok(None);
    };
    if String::from_utf8_lossy(&pem).contains("ENCRYPTED") {
        return Err(setting(
            &key_entry,
            "an encrypted private key, which the Schema Registry client cannot use: write it \
             unencrypted (openssl pkcs8 -in key.pem -nocrypt -out plain.pem … after decrypting) \
             and keep that file readable only by Brook",
        ));
    }
    Ok(Some(pem))
}
