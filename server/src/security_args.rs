//! brook-server's flags for ksqlDB's properties file and for its embedded broker's TLS
//! listener and SCRAM users (docs/security.md).

use std::path::{Path, PathBuf};

use brook_server::config_file::{self, ConfigFileError};
use brook_server::kafka_security::{Security, SecurityError};
use thiserror::Error;

#[derive(Debug, clap::Args)]
pub struct SecurityArgs {
    /// ksqlDB's server properties file (`ksql-server.properties`): its settings come
    /// first and `--config` overrides them. Values may be `${env:NAME}` or
    /// `${file:PATH:KEY}`, so passwords need not be on the command line.
    #[arg(long, env = "BROOK_CONFIG_FILE", value_name = "FILE")]
    pub config_file: Option<PathBuf>,

    /// The properties file as the only argument, as `ksql-server-start` takes it.
    #[arg(value_name = "PROPERTIES_FILE", conflicts_with = "config_file")]
    pub properties_file: Option<PathBuf>,

    /// The embedded broker's TLS certificate chain (PEM): its listener then takes TLS
    /// connections only. Needs --broker-tls-key.
    #[arg(
        long,
        env = "BROOK_BROKER_TLS_CERT",
        value_name = "PEM",
        requires = "broker_tls_key"
    )]
    pub broker_tls_cert: Option<PathBuf>,

    /// The private key of --broker-tls-cert (PEM, unencrypted).
    #[arg(
        long,
        env = "BROOK_BROKER_TLS_KEY",
        value_name = "PEM",
        requires = "broker_tls_cert"
    )]
    pub broker_tls_key: Option<PathBuf>,

    /// A file of the embedded broker's SASL SCRAM users, one `NAME=PASSWORD` a line
    /// (properties syntax, `${env:…}`/`${file:…}` allowed): with any user, every client
    /// must log in with SCRAM-SHA-256 or SCRAM-SHA-512.
    #[arg(long, env = "BROOK_BROKER_SCRAM_USERS", value_name = "FILE")]
    pub broker_scram_users: Option<PathBuf>,

    /// An embedded broker SCRAM user, NAME=PASSWORD (repeatable). `ps` shows the command
    /// line: write the password as `${env:VAR}` or `${file:PATH:KEY}`.
    #[arg(long = "broker-scram-user", value_name = "NAME=PASSWORD")]
    pub broker_scram_user: Vec<String>,
}

/// A setting of this group that cannot be used; no message carries a password.
#[derive(Debug, Error)]
pub enum SecurityArgsError {
    #[error(transparent)]
    ConfigFile(#[from] ConfigFileError),
    #[error(transparent)]
    Security(#[from] SecurityError),
    #[error("--broker-scram-user `{0}`: expected NAME=PASSWORD")]
    #[cfg_attr(not(feature = "embedded-broker"), allow(dead_code))]
    UserFlag(String),
    #[error("SCRAM users: {0}")]
    User(#[from] brook_runtime::RuntimeError),
    #[error("{flag} configures the embedded broker, which --bootstrap-servers leaves unstarted")]
    NoEmbeddedBroker { flag: &'static str },
}

/// What the flags and settings give the server: its clients' security, and its embedded
/// broker's.
#[derive(Debug, Default)]
pub struct Prepared {
    /// `--bootstrap-servers`, else the settings' `bootstrap.servers` (as ksqlDB's file has
    /// it); none starts the embedded broker.
    pub bootstrap_servers: Option<String>,
    pub security: Security,
    pub broker: BrokerSecurity,
}

/// The embedded broker's TLS listener and SCRAM users.
#[derive(Debug, Default)]
pub struct BrokerSecurity {
    #[cfg(feature = "embedded-broker")]
    pub tls: Option<brook_runtime::embedded::BrokerTls>,
    #[cfg(feature = "embedded-broker")]
    pub users: Vec<brook_runtime::embedded::ScramUser>,
}

/// Reads the properties file into `config` (before `--config`'s own settings, which win)
/// and turns the security settings into clients' and the broker's. `bootstrap_flag`:
/// `--bootstrap-servers`.
pub fn prepare(
    args: &SecurityArgs,
    config: &mut Vec<(String, String)>,
    bootstrap_flag: Option<&str>,
) -> Result<Prepared, SecurityArgsError> {
    *config = args.config(std::mem::take(config))?;
    let bootstrap_servers = bootstrap_flag.map(str::to_string).or_else(|| {
        config
            .iter()
            .rev()
            .find(|(k, v)| {
                (k == "bootstrap.servers" || k == "ksql.streams.bootstrap.servers")
                    && !v.trim().is_empty()
            })
            .map(|(_, v)| v.trim().to_string())
    });
    args.check_external(bootstrap_servers.is_some())?;
    let security = brook_server::kafka_security::from_config(config)?;
    Ok(Prepared {
        bootstrap_servers,
        security,
        broker: args.broker_security()?,
    })
}

impl SecurityArgs {
    #[cfg(feature = "embedded-broker")]
    fn broker_security(&self) -> Result<BrokerSecurity, SecurityArgsError> {
        use brook_runtime::embedded::{BrokerTls, ScramUser};
        let tls = self
            .broker_tls_cert
            .clone()
            .zip(self.broker_tls_key.clone())
            .map(|(cert, key)| BrokerTls { cert, key });
        let users = self
            .scram_users()?
            .iter()
            .map(|(name, password)| ScramUser::new(name, password))
            .collect::<Result<_, _>>()?;
        Ok(BrokerSecurity { tls, users })
    }

    #[cfg(not(feature = "embedded-broker"))]
    fn broker_security(&self) -> Result<BrokerSecurity, SecurityArgsError> {
        self.check_external(true)?;
        Ok(BrokerSecurity::default())
    }

    /// The properties file, if one is given.
    pub fn file(&self) -> Option<&Path> {
        self.config_file
            .as_deref()
            .or(self.properties_file.as_deref())
    }

    /// The file's settings, then `overrides`, every reference resolved.
    pub fn config(
        &self,
        overrides: Vec<(String, String)>,
    ) -> Result<Vec<(String, String)>, SecurityArgsError> {
        Ok(config_file::merge(self.file(), overrides)?)
    }

    /// Refuses broker flags when no embedded broker starts.
    pub fn check_external(&self, external: bool) -> Result<(), SecurityArgsError> {
        let flag = if self.broker_tls_cert.is_some() {
            "--broker-tls-cert"
        } else if self.broker_scram_users.is_some() || !self.broker_scram_user.is_empty() {
            "--broker-scram-users"
        } else {
            return Ok(());
        };
        if external {
            return Err(SecurityArgsError::NoEmbeddedBroker { flag });
        }
        Ok(())
    }

    /// The users of the file, then of the flags (a name given twice keeps its last
    /// password).
    #[cfg_attr(not(feature = "embedded-broker"), allow(dead_code))]
    pub fn scram_users(&self) -> Result<Vec<(String, String)>, SecurityArgsError> {
        let mut users = match &self.broker_scram_users {
            Some(path) => config_file::load(path)?,
            None => Vec::new(),
        };
        for flag in &self.broker_scram_user {
            let Some((name, password)) = flag.split_once('=') else {
                // Only the part before any `=` could be a name; a bare word is no password.
                return Err(SecurityArgsError::UserFlag(flag.clone()));
            };
            let key = format!("--broker-scram-user {name}");
            users.push((name.to_string(), config_file::resolve(&key, password)?));
        }
        let mut last: Vec<(String, String)> = Vec::new();
        for (name, password) in users {
            last.retain(|(n, _)| *n != name);
            last.push((name, password));
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        s: SecurityArgs,
    }

    #[test]
    fn users_come_from_the_file_and_the_flags_with_references_resolved() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("users.properties");
        std::fs::write(&file, "alice=first\nbob=b-pass\n").expect("write");
        std::env::set_var("BROOK_TEST_SECURITY_ARGS_PW", "from-env");
        let cli = Cli::try_parse_from([
            "brook-server",
            "--broker-scram-users",
            file.to_str().expect("utf-8"),
            "--broker-scram-user",
            "alice=${env:BROOK_TEST_SECURITY_ARGS_PW}",
        ])
        .expect("parses");
        let users = cli.s.scram_users().expect("users");
        assert_eq!(
            users,
            vec![
                ("bob".to_string(), "b-pass".to_string()),
                ("alice".to_string(), "from-env".to_string()),
            ]
        );
        let bad =
            Cli::try_parse_from(["brook-server", "--broker-scram-user", "alice"]).expect("parses");
        assert!(matches!(
            bad.s.scram_users(),
            Err(SecurityArgsError::UserFlag(_))
        ));
    }

    #[test]
    fn the_properties_file_is_a_flag_or_the_only_argument() {
        let a = Cli::try_parse_from(["brook-server", "/etc/ksql-server.properties"]).expect("arg");
        assert_eq!(a.s.file(), Some(Path::new("/etc/ksql-server.properties")));
        let f =
            Cli::try_parse_from(["brook-server", "--config-file", "x.properties"]).expect("flag");
        assert_eq!(f.s.file(), Some(Path::new("x.properties")));
        assert!(Cli::try_parse_from(["brook-server", "--config-file", "a", "b"]).is_err());
        assert!(Cli::try_parse_from(["brook-server", "--broker-tls-cert", "c.pem"]).is_err());
        let tls = Cli::try_parse_from([
            "brook-server",
            "--broker-tls-cert",
            "c.pem",
            "--broker-tls-key",
            "k.pem",
        ])
        .expect("both");
        assert!(matches!(
            tls.s.check_external(true),
            Err(SecurityArgsError::NoEmbeddedBroker { .. })
        ));
        assert!(tls.s.check_external(false).is_ok());
    }
}
