//! SASL: the mechanism and the credentials, from `sasl.mechanism` and `sasl.jaas.config`
//! (or librdkafka's `sasl.username` and `sasl.password`).

use brook_runtime::kafka::ClientSecurity;

use super::{jaas, setting, Entry, SecurityError, View};

const SUPPORTED: &str = "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER";

pub(super) fn configure(view: &View, s: &mut ClientSecurity) -> Result<(), SecurityError> {
    let Some(e) = view
        .get("sasl.mechanism")
        .or_else(|| view.get("sasl.mechanisms"))
    else {
        return Err(SecurityError::Setting {
            key: "sasl.mechanism".into(),
            reason: format!(
                "not set, and Kafka's default, GSSAPI (Kerberos), is not built into Brook: \
                 set it to {SUPPORTED}"
            ),
        });
    };
    let mechanism = e.value.to_ascii_uppercase();
    match mechanism.as_str() {
        "PLAIN" | "SCRAM-SHA-256" | "SCRAM-SHA-512" => {
            s.set("sasl.mechanisms", mechanism);
            credentials(view, s)
        }
        "OAUTHBEARER" => {
            s.set("sasl.mechanisms", mechanism);
            oauthbearer(view, s)
        }
        "GSSAPI" => Err(setting(
            e,
            format!("GSSAPI (Kerberos) is not built into Brook: use {SUPPORTED}"),
        )),
        _ => Err(setting(
            e,
            format!("unknown SASL mechanism `{}`: expected {SUPPORTED}", e.value),
        )),
    }
}

fn jaas(e: &Entry) -> Result<jaas::Jaas, SecurityError> {
    jaas::parse(&e.value).map_err(|reason| setting(e, reason))
}

/// The user name and password, from librdkafka's names or the JAAS text.
fn credentials(view: &View, s: &mut ClientSecurity) -> Result<(), SecurityError> {
    if let (Some(user), Some(password)) = (view.get("sasl.username"), view.get("sasl.password")) {
        s.set("sasl.username", user.value.clone());
        s.set("sasl.password", password.value.clone());
        return Ok(());
    }
    let Some(e) = view.get("sasl.jaas.config") else {
        return Err(SecurityError::Setting {
            key: "sasl.jaas.config".into(),
            reason: "not set: SASL needs a user, e.g. sasl.jaas.config=\
                     org.apache.kafka.common.security.plain.PlainLoginModule required \
                     username=\"…\" password=\"…\"; (or sasl.username and sasl.password)"
                .into(),
        });
    };
    let j = jaas(e)?;
    if !matches!(j.module(), "PlainLoginModule" | "ScramLoginModule") {
        return Err(setting(
            e,
            format!(
                "the login module {} carries no user name and password: use \
                 org.apache.kafka.common.security.plain.PlainLoginModule or \
                 org.apache.kafka.common.security.scram.ScramLoginModule",
                j.class
            ),
        ));
    }
    for option in ["username", "password"] {
        if j.option(option).is_none_or(str::is_empty) {
            return Err(setting(
                e,
                format!("{} has no `{option}` option", j.module()),
            ));
        }
    }
    s.set("sasl.username", j.option("username").unwrap_or_default());
    s.set("sasl.password", j.option("password").unwrap_or_default());
    Ok(())
}

/// OAUTHBEARER as librdkafka offers it without libcurl: its unsecured JWT (Kafka's
/// `unsecuredLoginStringClaim_sub`), or `sasl.oauthbearer.config` given as librdkafka
/// takes it. Token endpoints (OIDC) need librdkafka built with libcurl, which Brook is not.
fn oauthbearer(view: &View, s: &mut ClientSecurity) -> Result<(), SecurityError> {
    for oidc in [
        "sasl.oauthbearer.token.endpoint.url",
        "sasl.login.callback.handler.class",
        "sasl.oauthbearer.method",
    ] {
        if let Some(e) = view.get(oidc) {
            return Err(setting(
                e,
                "OAUTHBEARER with a token endpoint (OIDC) needs librdkafka built with libcurl, \
                 which Brook is not: only unsecured JWTs (unsecuredLoginStringClaim_sub) work",
            ));
        }
    }
    if let Some(e) = view.get("sasl.oauthbearer.config") {
        s.set("sasl.oauthbearer.config", e.value.clone());
        s.set("enable.sasl.oauthbearer.unsecure.jwt", "true");
        return Ok(());
    }
    let Some(e) = view.get("sasl.jaas.config") else {
        return Err(SecurityError::Setting {
            key: "sasl.jaas.config".into(),
            reason: "not set: OAUTHBEARER needs org.apache.kafka.common.security.oauthbearer.\
                     OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"…\";"
                .into(),
        });
    };
    let j = jaas(e)?;
    let Some(subject) = j.option("unsecuredLoginStringClaim_sub") else {
        return Err(setting(
            e,
            "OAUTHBEARER works with unsecured JWTs only here: the login module needs \
             unsecuredLoginStringClaim_sub",
        ));
    };
    let mut config = format!("principal={subject}");
    if let Some(life) = j.option("unsecuredLoginLifetimeSeconds") {
        config.push_str(&format!(" lifeSeconds={life}"));
    }
    s.set("sasl.oauthbearer.config", config);
    s.set("enable.sasl.oauthbearer.unsecure.jwt", "true");
    Ok(())
}
