//! TLS for Kafka's clients: the CA certificates to trust and the client's certificate, from
//! Java's truststore and keystore settings or librdkafka's PEM ones. librdkafka reads PEM
//! files and PKCS#12 keystores; a Java keystore (JKS), or a PKCS#12 truststore, is refused
//! with the PEM settings to use instead.

use brook_runtime::kafka::ClientSecurity;

use super::{file_error, setting, store_kind, SecurityError, StoreKind, View};

/// librdkafka's names, taken as they are.
const PASSED: &[&str] = &[
    "ssl.ca.location",
    "ssl.ca.pem",
    "ssl.certificate.location",
    "ssl.certificate.pem",
    "ssl.key.location",
    "ssl.key.pem",
    "ssl.key.password",
    "ssl.crl.location",
];

pub(super) fn configure(view: &View, s: &mut ClientSecurity) -> Result<(), SecurityError> {
    for name in PASSED {
        if let Some(e) = view.get(name) {
            s.set(name, e.value.clone());
        }
    }
    trust(view, s)?;
    identity(view, s)?;
    endpoint_identification(view, s)
}

/// Java's truststore, unless librdkafka's names already say what to trust.
fn trust(view: &View, s: &mut ClientSecurity) -> Result<(), SecurityError> {
    if s.get("ssl.ca.location").is_some() || s.get("ssl.ca.pem").is_some() {
        return Ok(());
    }
    if let Some(e) = view.get("ssl.truststore.certificates") {
        s.set("ssl.ca.pem", e.value.clone());
        return Ok(());
    }
    let Some(e) = view.get("ssl.truststore.location") else {
        return Ok(());
    };
    match store_kind(e)? {
        StoreKind::Pem => {
            s.set("ssl.ca.location", e.value.clone());
            Ok(())
        }
        kind => Err(file_error(
            e,
            format!(
                "a {} truststore, which librdkafka cannot read: export its CA certificates \
                 as PEM (keytool -exportcert -rfc -keystore {} -alias ALIAS -file ca.pem) and \
                 set ssl.ca.location (or ssl.truststore.location) to that file",
                kind_name(kind),
                e.value
            ),
        )),
    }
}

/// Java's keystore, unless librdkafka's names already give the client's certificate.
fn identity(view: &View, s: &mut ClientSecurity) -> Result<(), SecurityError> {
    if let (Some(chain), Some(key)) = (
        view.get("ssl.keystore.certificate.chain"),
        view.get("ssl.keystore.key"),
    ) {
        s.set("ssl.certificate.pem", chain.value.clone());
        s.set("ssl.key.pem", key.value.clone());
        return Ok(());
    }
    let given = ["ssl.certificate.location", "ssl.certificate.pem"];
    if given.iter().any(|k| s.get(k).is_some()) {
        return Ok(());
    }
    let Some(e) = view.get("ssl.keystore.location") else {
        return Ok(());
    };
    match store_kind(e)? {
        // Key and chain in one file: OpenSSL finds each in it.
        StoreKind::Pem => {
            s.set("ssl.certificate.location", e.value.clone());
            s.set("ssl.key.location", e.value.clone());
        }
        StoreKind::Pkcs12 => {
            s.set("ssl.keystore.location", e.value.clone());
            if let Some(p) = view.get("ssl.keystore.password") {
                s.set("ssl.keystore.password", p.value.clone());
            }
        }
        StoreKind::Jks => {
            return Err(file_error(
                e,
                format!(
                    "a JKS keystore, which librdkafka cannot read: convert it to PKCS#12 \
                     (keytool -importkeystore -srckeystore {} -destkeystore client.p12 \
                     -deststoretype PKCS12) and point ssl.keystore.location at that, or give \
                     PEM files as ssl.certificate.location and ssl.key.location",
                    e.value
                ),
            ))
        }
    }
    Ok(())
}

/// Java switches host name checks off with an empty value; librdkafka with `none`.
fn endpoint_identification(view: &View, s: &mut ClientSecurity) -> Result<(), SecurityError> {
    const NAME: &str = "ssl.endpoint.identification.algorithm";
    if view.is_empty_value(NAME) {
        s.set(NAME, "none");
        return Ok(());
    }
    let Some(e) = view.get(NAME) else {
        return Ok(());
    };
    match e.value.to_ascii_lowercase().as_str() {
        v @ ("https" | "none") => {
            s.set(NAME, v);
            Ok(())
        }
        _ => Err(setting(
            e,
            format!(
                "unknown algorithm `{}`: expected https, or empty for none",
                e.value
            ),
        )),
    }
}

pub(super) fn kind_name(kind: StoreKind) -> &'static str {
    match kind {
        StoreKind::Pem => "PEM",
        StoreKind::Jks => "JKS",
        StoreKind::Pkcs12 => "PKCS#12",
    }
}
