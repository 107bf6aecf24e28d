use clap::Parser;

use super::*;

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    api: ApiArgs,
}

/// Command-line flags, and `--config` settings, as a case gives them.
type Flags<'a> = &'a [&'a str];
type Config<'a> = &'a [(&'a str, &'a str)];

const USERS: &str = "alice:$2y$05$hHfCS6G57ey5AcCzNiXCLeQSrEfIbAoWnWe2hPfPCBJfovb5PAY5i\n";

/// Runs `prepare` on command-line flags (`{users}` stands for a users file) and settings.
fn prepare_with(flags: &[&str], config: &[(&str, &str)]) -> Result<ApiSecurity, ApiArgsError> {
    let dir = tempfile::tempdir().expect("dir");
    let users = dir.path().join("users");
    std::fs::write(&users, USERS).expect("users");
    let users = users.to_str().expect("utf-8");
    let mut argv = vec!["brook-server".to_string()];
    argv.extend(flags.iter().map(|f| f.replace("{users}", users)));
    let cli = Cli::try_parse_from(argv).expect("flags parse");
    let config: Vec<(String, String)> = config
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    prepare(&cli.api, &config)
}

/// Where the API listens, and why that is allowed, for each way of starting it.
#[test]
fn the_port_is_loopback_unless_authenticated_or_explicitly_opened() {
    let cases: &[(Flags, Config, &str, Exposure)] = &[
        (&[], &[], "127.0.0.1:8088", Exposure::Loopback),
        (
            &["--listen", "127.0.0.1:9000"],
            &[],
            "127.0.0.1:9000",
            Exposure::Loopback,
        ),
        (
            &["--users", "{users}"],
            &[],
            "0.0.0.0:8088",
            Exposure::Authenticated,
        ),
        (
            &["--users", "{users}", "--listen", "0.0.0.0:9001"],
            &[],
            "0.0.0.0:9001",
            Exposure::Authenticated,
        ),
        (
            &["--insecure-listen"],
            &[],
            "0.0.0.0:8088",
            Exposure::Insecure {
                by: "--insecure-listen",
            },
        ),
        (
            &["--insecure-listen", "--listen", "0.0.0.0:9002"],
            &[],
            "0.0.0.0:9002",
            Exposure::Insecure {
                by: "--insecure-listen",
            },
        ),
        // ksqlDB's own setting naming the address is the operator's choice too.
        (
            &[],
            &[("listeners", "http://0.0.0.0:8089")],
            "0.0.0.0:8089",
            Exposure::Insecure { by: "listeners" },
        ),
        (
            &[],
            &[("listeners", "http://localhost:8090")],
            "127.0.0.1:8090",
            Exposure::Loopback,
        ),
        (
            &["--users", "{users}"],
            &[
                ("authentication.method", "BASIC"),
                ("listeners", "http://0.0.0.0:8091"),
            ],
            "0.0.0.0:8091",
            Exposure::Authenticated,
        ),
    ];
    for (flags, config, addr, exposure) in cases {
        let api =
            prepare_with(flags, config).unwrap_or_else(|e| panic!("{flags:?} {config:?}: {e}"));
        assert_eq!(api.listen.to_string(), *addr, "{flags:?} {config:?}");
        assert_eq!(api.exposure, *exposure, "{flags:?} {config:?}");
    }
}

/// Each refusal, and the words its message must carry.
#[test]
fn unusable_combinations_stop_the_server_naming_the_cause() {
    let cases: &[(Flags, Config, &[&str])] = &[
        (
            &["--listen", "0.0.0.0:8088"],
            &[],
            &[
                "0.0.0.0:8088",
                "without authentication",
                "--users",
                "--insecure-listen",
            ],
        ),
        (
            &["--listen", "[::]:8088"],
            &[],
            &["[::]:8088", "--insecure-listen"],
        ),
        (
            &[],
            &[("authentication.method", "BASIC")],
            &[
                "authentication.method=BASIC",
                "--users FILE",
                "htpasswd -nbB",
                "JAAS",
            ],
        ),
        (
            &["--users", "{users}"],
            &[("authentication.method", "NONE")],
            &["--users", "authentication.method=NONE"],
        ),
        (
            &[],
            &[("authentication.method", "DIGEST")],
            &["authentication.method=DIGEST", "BASIC or NONE"],
        ),
        (
            &[],
            &[("listeners", "http://0.0.0.0:1,http://0.0.0.0:2")],
            &["listeners=", "one port"],
        ),
        (
            &[],
            &[("listeners", "ftp://0.0.0.0:1")],
            &["ftp://", "http:// or https://"],
        ),
        (
            &[],
            &[("listeners", "https://127.0.0.1:8088")],
            &["https://", "--tls-cert", "ssl.keystore.location"],
        ),
        (
            &[],
            &[
                ("listeners", "https://127.0.0.1:8088"),
                ("ssl.keystore.location", "/no/such/keystore.jks"),
            ],
            &["TLS certificate", "/no/such/keystore.jks", "cannot read it"],
        ),
        (
            &["--users", "/no/such/users"],
            &[],
            &["users file", "/no/such/users", "cannot read it"],
        ),
        (
            &[],
            &[("brook.authentication.max.failures", "0")],
            &["brook.authentication.max.failures=0", "whole number from 1"],
        ),
    ];
    for (flags, config, words) in cases {
        let err = match prepare_with(flags, config) {
            Ok(api) => panic!("{flags:?} {config:?} accepted: {api:?}"),
            Err(e) => e.to_string(),
        };
        for w in *words {
            assert!(err.contains(w), "{flags:?} {config:?}: `{err}` lacks `{w}`");
        }
    }
}

#[test]
fn ksqldb_settings_name_the_realm_skipped_paths_origins_and_limits() {
    let api = prepare_with(
        &["--users", "{users}"],
        &[
            ("authentication.realm", "KsqlServer-Props"),
            ("authentication.skip.paths", "/metrics, /info"),
            (
                "access.control.allow.origin",
                "https://ui.example.com,https://*.corp",
            ),
            ("brook.authentication.max.failures", "3"),
            ("brook.authentication.failure.window.ms", "5000"),
        ],
    )
    .expect("accepted");
    assert_eq!(api.realm, "KsqlServer-Props");
    assert_eq!(api.skip_paths, ["/healthcheck", "/metrics", "/info"]);
    assert_eq!(
        api.allowed_origins,
        ["https://ui.example.com", "https://*.corp"]
    );
    assert_eq!(
        api.failure_limits,
        FailureLimits {
            max_failures: 3,
            window: Duration::from_secs(5)
        }
    );
    let plain = prepare_with(&[], &[]).expect("defaults");
    assert_eq!(plain.realm, "Brook");
    assert_eq!(plain.skip_paths, ["/healthcheck"]);
    assert!(plain.users.is_none() && plain.tls.is_none());
}
