//! The embedded Kafka-protocol broker (nisshi, the renamed Tansu), for tests and for a
//! single-machine server. Brook still speaks to it only through rdkafka, as to any Kafka.

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use nisshi_broker::broker::Broker;
use nisshi_broker::coordinator::group::administrator::{Controller, GroupCoordinatorConfig};
use nisshi_storage::ArcDynStorage;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use url::Url;

use crate::error::{Result, RuntimeError};

/// Where the embedded broker keeps its log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BrokerStorage {
    /// In memory: gone when the process ends. For tests.
    Memory,
    /// A SQLite file, which survives restarts and crashes. The server's default.
    Sqlite(PathBuf),
}

impl BrokerStorage {
    fn url(&self) -> Result<Url> {
        let text = match self {
            BrokerStorage::Memory => "memory://brook/".to_string(),
            BrokerStorage::Sqlite(path) => {
                let abs = absolute(path)?;
                // nisshi strips one leading `/` from the URL's path, so an absolute file
                // needs `sqlite:///` followed by the path's own leading `/`.
                format!("sqlite:///{}", abs.display())
            }
        };
        Url::parse(&text).map_err(|e| RuntimeError::Broker(format!("storage url {text}: {e}")))
    }
}

fn absolute(path: &Path) -> Result<PathBuf> {
    if path.is_absolute() {
        Ok(path.to_path_buf())
    } else {
        Ok(std::env::current_dir()?.join(path))
    }
}

/// Settings for [`EmbeddedBroker::start`].
#[derive(Debug, Clone)]
pub struct EmbeddedBrokerConfig {
    pub storage: BrokerStorage,
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// With it, the listener takes TLS connections only (`security.protocol=SSL` or
    /// `SASL_SSL` for clients).
    pub tls: Option<BrokerTls>,
    /// With any, every client must log in with SASL SCRAM-SHA-256 or SCRAM-SHA-512 as one
    /// of them (`SASL_PLAINTEXT`, or `SASL_SSL` with [`EmbeddedBrokerConfig::tls`]).
    pub scram_users: Vec<ScramUser>,
}

impl EmbeddedBrokerConfig {
    /// In memory on a free loopback port: what tests use.
    pub fn for_tests() -> Self {
        EmbeddedBrokerConfig {
            storage: BrokerStorage::Memory,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: None,
            scram_users: Vec::new(),
        }
    }
}

mod security;
pub use security::{BrokerTls, ScramUser};

/// The cluster id the broker reports (its SCRAM credentials are stored under it).
const CLUSTER_ID: &str = "brook";

/// A running embedded broker; it stops when dropped.
pub struct EmbeddedBroker {
    addr: SocketAddr,
    handle: JoinHandle<()>,
}

impl EmbeddedBroker {
    /// Starts the broker on the current tokio runtime and waits until it accepts connections.
    pub async fn start(config: EmbeddedBrokerConfig) -> Result<EmbeddedBroker> {
        let addr = if config.listen.port() == 0 {
            // nisshi advertises the port it is given, so pick a concrete free one first.
            let probe = StdTcpListener::bind(config.listen)?;
            probe.local_addr()?
        } else {
            config.listen
        };
        if let Err(e) = StdTcpListener::bind(addr) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                return Err(RuntimeError::BrokerAddressInUse { addr });
            }
            return Err(e.into());
        }
        let listener = Url::parse(&format!("tcp://{addr}"))
            .map_err(|e| RuntimeError::Broker(format!("listener url: {e}")))?;
        let storage = config.storage.url()?;
        if let BrokerStorage::Sqlite(path) = &config.storage {
            if let Some(dir) = absolute(path)?.parent() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let tls = config
            .tls
            .as_ref()
            .map(security::server_config)
            .transpose()?;
        // Also without users: those of an earlier start are deleted.
        security::store_users(&config.storage, &storage, &config.scram_users).await?;
        let authentication = !config.scram_users.is_empty();
        let mut broker = Broker::<Controller<ArcDynStorage>, ArcDynStorage>::builder()
            .node_id(1)
            .cluster_id(CLUSTER_ID)
            .incarnation_id(uuid::Uuid::new_v4())
            .advertised_listener(listener.clone())
            .storage(storage)
            .listener(listener)
            .tls_server_config(tls)
            .authentication(authentication)
            .silent(true)
            // Kafka delays a new group's first rebalance by 3 s to gather members; Brook's
            // queries each own their group, so waiting buys nothing.
            .group_coordinator(GroupCoordinatorConfig {
                initial_rebalance_delay: Duration::ZERO,
                ..GroupCoordinatorConfig::default()
            })
            .build()
            .await
            .map_err(|e| RuntimeError::Broker(format!("{e:?}")))?;
        let handle = tokio::spawn(async move {
            if let Err(e) = broker.serve(Instant::now()).await {
                tracing::error!(error = ?e, "embedded broker stopped");
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if handle.is_finished() {
                return Err(RuntimeError::Broker(format!(
                    "the broker stopped while starting on {addr}"
                )));
            }
            match tokio::net::TcpStream::connect(addr).await {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(e) => {
                    handle.abort();
                    return Err(RuntimeError::Broker(format!(
                        "not listening on {addr} after 20 s: {e}"
                    )));
                }
            }
        }
        Ok(EmbeddedBroker { addr, handle })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The `bootstrap.servers` value for clients.
    pub fn bootstrap_servers(&self) -> String {
        self.addr.to_string()
    }

    /// The broker as a plaintext client reaches it (without TLS or SCRAM users).
    pub fn kafka(&self) -> crate::kafka::Kafka {
        crate::kafka::Kafka::plaintext(self.bootstrap_servers())
    }

    /// Stops the broker. SQLite storage is crash-safe, so stopping does not need to flush.
    pub fn stop(self) {}
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.handle.abort();
    }
}
