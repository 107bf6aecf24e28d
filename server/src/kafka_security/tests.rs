use super::*;

/// Settings as written: (key, value).
type Settings = Vec<(&'static str, &'static str)>;

const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const PEM_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

/// Files of each kind, named by what they hold.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Files {
        let dir = tempfile::tempdir().expect("dir");
        let write = |name: &str, bytes: &[u8]| {
            std::fs::write(dir.path().join(name), bytes).expect("write");
        };
        write("ca.pem", PEM_CERT.as_bytes());
        write("client.pem", format!("{PEM_CERT}{PEM_KEY}").as_bytes());
        write("key.pem", PEM_KEY.as_bytes());
        write(
            "encrypted.pem",
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIE\n-----END ENCRYPTED PRIVATE KEY-----\n",
        );
        write("store.jks", &[0xfe, 0xed, 0xfe, 0xed, 0, 0, 0, 2]);
        write("store.p12", &[0x30, 0x82, 0x0a, 0x01, 0x02]);
        Files { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// `text`'s `{name}` placeholders replaced by the files' paths, as settings.
    fn config(&self, lines: &[(&str, &str)]) -> Vec<(String, String)> {
        lines
            .iter()
            .map(|(k, v)| {
                let mut v = v.to_string();
                for name in [
                    "ca.pem",
                    "client.pem",
                    "key.pem",
                    "encrypted.pem",
                    "store.jks",
                    "store.p12",
                ] {
                    v = v.replace(&format!("{{{name}}}"), &self.path(name));
                }
                (k.to_string(), v)
            })
            .collect()
    }
}

const SCRAM_JAAS: &str = "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"brook\" password=\"hunter2\";";

#[test]
fn ksqldb_settings_become_librdkafka_properties() {
    let f = Files::new();
    // (settings, librdkafka properties expected: exactly these)
    let cases: Vec<(Settings, Settings)> = vec![
        (vec![], vec![]),
        // Only PLAINTEXT: TLS settings there are ksqlDB's listener's, not Kafka's.
        (vec![("ssl.keystore.location", "{store.jks}")], vec![]),
        (
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "SCRAM-SHA-512"),
                ("sasl.jaas.config", SCRAM_JAAS),
                ("ssl.truststore.location", "{ca.pem}"),
                ("ssl.truststore.type", "PEM"),
                ("ssl.truststore.password", "ignored"),
            ],
            vec![
                ("sasl.mechanisms", "SCRAM-SHA-512"),
                ("sasl.password", "hunter2"),
                ("sasl.username", "brook"),
                ("security.protocol", "sasl_ssl"),
                ("ssl.ca.location", "{ca.pem}"),
            ],
        ),
        // The `ksql.streams.` prefix, which wins over the bare name wherever it is.
        (
            vec![
                ("ksql.streams.security.protocol", "ssl"),
                ("ssl.ca.location", "/bare/ca.pem"),
                ("security.protocol", "PLAINTEXT"),
                ("ksql.streams.ssl.ca.location", "{ca.pem}"),
                ("ssl.ca.location", "/later/bare.pem"),
                ("ksql.streams.ssl.keystore.location", "{client.pem}"),
                ("ssl.key.password", "kp"),
                ("ssl.endpoint.identification.algorithm", ""),
            ],
            vec![
                ("security.protocol", "ssl"),
                ("ssl.ca.location", "{ca.pem}"),
                ("ssl.certificate.location", "{client.pem}"),
                ("ssl.endpoint.identification.algorithm", "none"),
                ("ssl.key.location", "{client.pem}"),
                ("ssl.key.password", "kp"),
            ],
        ),
        // PKCS#12 keystores librdkafka reads itself; librdkafka's names pass through.
        (
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "plain"),
                ("sasl.username", "u"),
                ("sasl.password", "p"),
                ("ssl.keystore.location", "{store.p12}"),
                ("ssl.keystore.password", "sp"),
                ("ssl.ca.pem", "PEM TEXT"),
            ],
            vec![
                ("sasl.mechanisms", "PLAIN"),
                ("sasl.password", "p"),
                ("sasl.username", "u"),
                ("security.protocol", "sasl_ssl"),
                ("ssl.ca.pem", "PEM TEXT"),
                ("ssl.keystore.location", "{store.p12}"),
                ("ssl.keystore.password", "sp"),
            ],
        ),
        (
            vec![
                ("security.protocol", "SASL_PLAINTEXT"),
                ("sasl.mechanism", "OAUTHBEARER"),
                (
                    "sasl.jaas.config",
                    "org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"admin\";",
                ),
                ("ssl.keystore.location", "{store.jks}"),
            ],
            vec![
                ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
                ("sasl.mechanisms", "OAUTHBEARER"),
                ("sasl.oauthbearer.config", "principal=admin"),
                ("security.protocol", "sasl_plaintext"),
            ],
        ),
    ];
    for (settings, want) in cases {
        let security =
            from_config(&f.config(&settings)).unwrap_or_else(|e| panic!("{settings:?}: {e}"));
        let got: Vec<(String, String)> = security
            .kafka
            .keys()
            .map(|k| {
                (
                    k.to_string(),
                    security.kafka.get(k).unwrap_or_default().to_string(),
                )
            })
            .collect();
        assert_eq!(got, f.config(&want), "{settings:?}");
    }
}

#[test]
fn unusable_settings_name_the_setting_and_what_to_use() {
    let f = Files::new();
    let sasl_ssl = [
        ("security.protocol", "SASL_SSL"),
        ("sasl.mechanism", "PLAIN"),
    ];
    let with = |more: &[(&'static str, &'static str)]| {
        let mut v: Vec<(&str, &str)> = sasl_ssl.to_vec();
        v.push(("sasl.jaas.config", SCRAM_JAAS));
        v.extend_from_slice(more);
        v
    };
    // (settings, words the error must hold)
    let cases: Vec<(Settings, Vec<&str>)> = vec![
        (vec![("security.protocol", "TLS")], vec!["security.protocol", "SASL_SSL"]),
        (vec![("security.protocol", "SASL_SSL")], vec!["sasl.mechanism", "GSSAPI"]),
        (
            vec![("security.protocol", "SASL_SSL"), ("sasl.mechanism", "GSSAPI")],
            vec!["Kerberos"],
        ),
        (sasl_ssl.to_vec(), vec!["sasl.jaas.config", "not set"]),
        (
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "PLAIN"),
                ("sasl.jaas.config", "com.sun.security.auth.module.Krb5LoginModule required;"),
            ],
            vec!["Krb5LoginModule", "PlainLoginModule"],
        ),
        (
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "PLAIN"),
                (
                    "sasl.jaas.config",
                    "org.apache.kafka.common.security.plain.PlainLoginModule required password=\"hunter2\";",
                ),
            ],
            vec!["`username`"],
        ),
        (
            with(&[("ssl.truststore.location", "{store.jks}")]),
            vec!["ssl.truststore.location", "JKS", "ssl.ca.location", "keytool"],
        ),
        (
            with(&[("ssl.truststore.location", "{store.p12}")]),
            vec!["PKCS#12 truststore", "ssl.ca.location"],
        ),
        (
            with(&[("ssl.keystore.location", "{store.jks}")]),
            vec!["JKS keystore", "ssl.certificate.location", "ssl.key.location"],
        ),
        (
            with(&[("ssl.truststore.location", "/no/such/truststore.jks")]),
            vec!["/no/such/truststore.jks", "cannot read"],
        ),
        (
            with(&[("ssl.endpoint.identification.algorithm", "ldap")]),
            vec!["ssl.endpoint.identification.algorithm"],
        ),
        (
            with(&[("ksql.streams.producer.ssl.ca.location", "{ca.pem}")]),
            vec!["ksql.streams.producer.ssl.ca.location", "ksql.streams.ssl.ca.location"],
        ),
        (
            vec![
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanism", "OAUTHBEARER"),
                ("sasl.oauthbearer.token.endpoint.url", "https://idp/token"),
            ],
            vec!["libcurl"],
        ),
    ];
    for (settings, words) in cases {
        let e = from_config(&f.config(&settings))
            .expect_err(&format!("{settings:?}"))
            .to_string();
        for w in words {
            assert!(e.contains(w), "{settings:?}: `{w}` not in: {e}");
        }
        assert!(!e.contains("hunter2"), "{e}");
    }
}

#[test]
fn registry_https_and_basic_auth() {
    let f = Files::new();
    let https = ("ksql.schema.registry.url", "https://registry:8081");
    let o = from_config(&f.config(&[
        https,
        ("ssl.truststore.location", "{store.jks}"),
        ("ksql.schema.registry.ssl.truststore.location", "{ca.pem}"),
        ("ksql.schema.registry.ssl.keystore.location", "{client.pem}"),
        (
            "ksql.schema.registry.basic.auth.credentials.source",
            "USER_INFO",
        ),
        (
            "ksql.schema.registry.basic.auth.user.info",
            "sr-user:sr:pass",
        ),
    ]))
    .expect("options")
    .registry;
    assert_eq!(o.ca_pem.as_deref(), Some(PEM_CERT.as_bytes()));
    assert!(o.identity_pem.is_some());
    assert_eq!(o.basic_auth, Some(("sr-user".into(), "sr:pass".into())));
    let shown = format!("{o:?}");
    assert!(
        !shown.contains("sr:pass") && !shown.contains("MIIE"),
        "{shown}"
    );

    // Kafka's SASL user, and separate certificate and key files.
    let o = from_config(&f.config(&[
        https,
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "SCRAM-SHA-256"),
        ("sasl.jaas.config", SCRAM_JAAS),
        (
            "ksql.schema.registry.basic.auth.credentials.source",
            "SASL_INHERIT",
        ),
        ("ksql.schema.registry.ssl.certificate.location", "{ca.pem}"),
        ("ksql.schema.registry.ssl.key.location", "{key.pem}"),
        (
            "ksql.schema.registry.ssl.endpoint.identification.algorithm",
            "",
        ),
    ]))
    .expect("options")
    .registry;
    assert_eq!(o.basic_auth, Some(("brook".into(), "hunter2".into())));
    assert_eq!(
        o.identity_pem.as_deref(),
        Some(format!("{PEM_CERT}\n{PEM_KEY}").as_bytes())
    );
    assert!(o.skip_hostname_verification);

    // Over plain HTTP the TLS settings are not read (they may be the listener's).
    let plain = from_config(&f.config(&[
        ("ksql.schema.registry.url", "http://registry:8081"),
        ("ssl.truststore.location", "{store.jks}"),
    ]))
    .expect("options");
    assert_eq!(plain.registry.ca_pem, None);

    let cases: Vec<(Settings, Vec<&str>)> = vec![
        (
            vec![https, ("ssl.truststore.location", "{store.jks}")],
            vec![
                "JKS truststore",
                "PEM only",
                "ksql.schema.registry.ssl.truststore.location",
            ],
        ),
        (
            vec![
                https,
                ("ksql.schema.registry.ssl.keystore.location", "{store.p12}"),
            ],
            vec!["PKCS#12 keystore", "PEM only"],
        ),
        (
            vec![
                https,
                ("ksql.schema.registry.ssl.certificate.location", "{ca.pem}"),
                ("ksql.schema.registry.ssl.key.location", "{encrypted.pem}"),
            ],
            vec!["ksql.schema.registry.ssl.key.location", "encrypted"],
        ),
        (
            vec![
                https,
                (
                    "ksql.schema.registry.basic.auth.credentials.source",
                    "SASL_INHERIT",
                ),
            ],
            vec!["SASL_INHERIT"],
        ),
        (
            vec![
                https,
                (
                    "ksql.schema.registry.basic.auth.credentials.source",
                    "TOKEN",
                ),
            ],
            vec!["USER_INFO, URL or SASL_INHERIT"],
        ),
    ];
    for (settings, words) in cases {
        let e = from_config(&f.config(&settings))
            .expect_err(&format!("{settings:?}"))
            .to_string();
        for w in words {
            assert!(e.contains(w), "{settings:?}: `{w}` not in: {e}");
        }
    }
}

#[test]
fn security_keys_are_kept_from_statements() {
    for key in [
        "security.protocol",
        "sasl.jaas.config",
        "ssl.keystore.password",
        "ksql.streams.sasl.jaas.config",
        "ksql.streams.producer.ssl.key.password",
        "ksql.schema.registry.basic.auth.user.info",
        "ksql.schema.registry.ssl.truststore.password",
        "enable.ssl.certificate.verification",
    ] {
        assert!(is_security_key(key), "{key}");
    }
    for key in [
        "ksql.schema.registry.url",
        "ksql.streams.num.stream.threads",
        "ksql.query.pull.table.scan.enabled",
    ] {
        assert!(!is_security_key(key), "{key}");
    }
}
