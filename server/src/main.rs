//! `brook-server`: the Brook service.

mod auth;
mod auth_args;
mod rest;
mod security_args;
mod tls;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use tracing::{error, info, warn};

use brook_server::engine::{Engine, PushLimits};
use brook_server::{check_kafka, ServerError};

#[derive(Debug, Parser)]
#[command(
    name = "brook-server",
    version,
    about = "Brook: streaming SQL for Apache Kafka"
)]
struct Args {
    /// Kafka to use (HOST:PORT[,HOST:PORT…]); else `bootstrap.servers` of the properties
    /// file. Without either, Brook starts its embedded broker.
    #[arg(long, env = "BROOK_BOOTSTRAP_SERVERS")]
    bootstrap_servers: Option<String>,

    /// Where the server keeps its files (the embedded broker's log among them).
    #[arg(long, env = "BROOK_DATA_DIR", default_value = "brook-data")]
    data_dir: PathBuf,

    /// Address of the embedded broker's Kafka listener.
    #[arg(long, env = "BROOK_BROKER_LISTEN", default_value = "127.0.0.1:9092")]
    broker_listen: SocketAddr,

    /// The Kafka topic that records every stream, table, type and persistent query, so a
    /// restarted server restores them.
    #[arg(
        long,
        env = "BROOK_COMMAND_TOPIC",
        default_value = "_brook_command_topic"
    )]
    command_topic: String,

    /// Keep the embedded broker's log in memory instead of on disk (lost on exit).
    #[arg(long)]
    broker_in_memory: bool,

    /// Push queries that may run at once (ksqlDB's `ksql.max.push.queries`); one more is
    /// refused with ksqlDB's error.
    #[arg(long, env = "BROOK_MAX_PUSH_QUERIES", default_value_t = PushLimits::default().max_push_queries)]
    max_push_queries: u64,

    /// Rows a push query may fall behind its source (queued, not yet taken by its client)
    /// before it is disconnected with a "Dropped rows" error.
    #[arg(
        long,
        env = "BROOK_PUSH_QUERY_BUFFER",
        default_value_t = PushLimits::default().buffer as u64,
        value_parser = clap::value_parser!(u64).range(1..=1 << 28)
    )]
    push_query_buffer: u64,

    /// A ksqlDB server property, KEY=VALUE (repeatable), as ksqlDB's server properties
    /// file would set it: e.g. `ksql.query.push.v2.enabled=true`, the limits of
    /// docs/limits.md (`ksql.query.pull.max.concurrent.requests=10`,
    /// `ksql.idle.connection.timeout.seconds=600`, …); others become the defaults
    /// statements are planned with.
    #[arg(long = "config", value_name = "KEY=VALUE", value_parser = key_value)]
    config: Vec<(String, String)>,

    /// The properties file, and the embedded broker's TLS and SCRAM users.
    #[command(flatten)]
    security: security_args::SecurityArgs,

    /// The API's address, TLS and users.
    #[command(flatten)]
    api: auth_args::ApiArgs,
}

fn key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("expected KEY=VALUE, got `{s}`")),
    }
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BROOK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,nisshi=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut args = Args::parse();
    // The properties file joins `--config` before anything reads it; bad security settings
    // stop the server here, with the setting named.
    let flag = args.bootstrap_servers.take();
    let prepared = security_args::prepare(&args.security, &mut args.config, flag.as_deref());
    let prepared = match prepared {
        Ok(p) => p,
        Err(e) => {
            error!("{e}");
            std::process::exit(2);
        }
    };
    // Checked first: a mistyped setting stops the server before it starts anything.
    let limits = match rest::limits::Limits::from_config(&args.config)
        .and_then(|l| max_push_queries(&args).map(|m| (l, m)))
    {
        Ok(l) => l,
        Err(e) => {
            error!("{e}");
            std::process::exit(2);
        }
    };
    // So is the API's security: no TLS or users file that cannot be used, and no open
    // port without authentication unless asked for.
    let api = match auth_args::prepare(&args.api, &args.config) {
        Ok(a) => a,
        Err(e) => {
            error!("{e}");
            std::process::exit(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            error!("cannot start the tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = runtime.block_on(run(args, limits, prepared, api)) {
        error!("{e}");
        std::process::exit(1);
    }
}

/// `--max-push-queries`, or ksqlDB's name for it in `--config` (which wins).
fn max_push_queries(args: &Args) -> Result<u64, rest::limits::BadSetting> {
    match args
        .config
        .iter()
        .rev()
        .find(|(k, _)| k == MAX_PUSH_QUERIES)
    {
        Some((k, v)) => v.trim().parse().map_err(|_| rest::limits::BadSetting {
            key: k.clone(),
            value: v.clone(),
            min: 0,
            max: u64::MAX,
        }),
        None => Ok(args.max_push_queries),
    }
}

async fn run(
    args: Args,
    (limits, max_push_queries): (rest::limits::Limits, u64),
    prepared: security_args::Prepared,
    mut api: auth_args::ApiSecurity,
) -> Result<(), ServerError> {
    let mut _broker: Option<Broker> = None;
    let bootstrap = match prepared.bootstrap_servers {
        Some(b) => {
            info!(bootstrap_servers = %b, "using Kafka");
            b
        }
        None => start_embedded(&args, prepared.broker, &mut _broker).await?,
    };
    // Every client gets the security settings with the address.
    let bootstrap = brook_runtime::kafka::Kafka::new(bootstrap, prepared.security.kafka);
    check_kafka(&bootstrap, Duration::from_secs(30)).await?;
    choose_registry(&args.config, &args.data_dir, prepared.security.registry)?;
    let engine = Engine::with_command_log(&bootstrap, &args.command_topic)?;
    engine.set_push_limits(PushLimits {
        max_push_queries,
        buffer: usize::try_from(args.push_query_buffer).unwrap_or(usize::MAX),
    });
    // The embedded broker answers a waiting fetch only at its deadline, not when records
    // arrive (docs/embedded-broker.md): librdkafka's 500 ms default would then be the
    // latency of every quiet query. A shorter wait costs idle fetches, so only here.
    let fetch_wait_set = args.config.iter().any(|(k, _)| {
        k == brook_server::engine::FETCH_MAX_WAIT
            || k == brook_server::engine::FETCH_MAX_WAIT_CONSUMER
    });
    if _broker.is_some() && !fetch_wait_set {
        engine
            .set_config(brook_server::engine::FETCH_MAX_WAIT, EMBEDDED_FETCH_WAIT_MS)
            .await;
    }
    // Security settings (passwords among them) configure clients, not statements.
    let statement_settings = args
        .config
        .iter()
        .filter(|(k, _)| !brook_server::kafka_security::is_security_key(k));
    for (k, v) in statement_settings {
        engine.set_config(k, v).await;
    }
    engine.configure_processing_log().await?;
    engine.recover().await?;
    if let Err(e) = engine.create_processing_log_stream().await {
        warn!(error = %e, "the KSQL_PROCESSING_LOG stream could not be declared");
    }
    let info = rest::ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        kafka_cluster_id: rest::kafka_cluster_id(&bootstrap).await,
        service_id: "default_".to_string(),
    };
    let listener = tokio::net::TcpListener::bind(api.listen)
        .await
        .map_err(|e| ServerError::Runtime(e.into()))?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| ServerError::Runtime(e.into()))?;
    api.announce(api_addr);
    let connections = std::sync::Arc::new(rest::http::ConnectionStats::default());
    let http_limits = limits.http.clone();
    let guard = rest::guard::Guard::new(rest::guard::GuardSettings {
        users: api.users.take(),
        failure_limits: api.failure_limits,
        realm: std::mem::take(&mut api.realm),
        skip_paths: std::mem::take(&mut api.skip_paths),
        allowed_origins: std::mem::take(&mut api.allowed_origins),
        tls: api.tls.is_some(),
    });
    let app = rest::router(
        engine.clone(),
        info,
        &bootstrap,
        limits,
        connections.clone(),
        guard,
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(rest::http::serve(
        listener,
        app,
        http_limits,
        connections,
        api.tls.clone(),
        stop_rx,
    ));
    info!(bootstrap_servers = %bootstrap, "brook-server ready; Ctrl-C or SIGTERM stops it");
    shutdown_signal().await;
    info!("shutting down");
    // Stopping the engine first ends push queries, so their responses complete and the
    // HTTP server's graceful shutdown is not held up by clients streaming forever.
    engine.shutdown().await;
    let _ = stop_tx.send(true);
    match tokio::time::timeout(Duration::from_secs(10), server).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => error!("REST API task: {e}"),
        Err(_) => error!("REST API connections still open after 10s; closing them"),
    }
    Ok(())
}

/// The process's schema registry, chosen before anything builds a codec or a session
/// (they take it when built): with `--config ksql.schema.registry.url=http://…`, that
/// external registry (cached; the server's `/subjects…` endpoints then pass through to it),
/// else the server's own, kept in `<data-dir>/schemas.jsonl` so that ids survive restarts.
fn choose_registry(
    config: &[(String, String)],
    data_dir: &std::path::Path,
    options: brook_runtime::format::registry_client::RegistryOptions,
) -> Result<(), ServerError> {
    use brook_runtime::format::registry::{set_default_registry, SchemaRegistry};
    let url = config
        .iter()
        .rev()
        .find(|(k, v)| k == "ksql.schema.registry.url" && !v.is_empty())
        .map(|(_, v)| v);
    let registry: std::sync::Arc<dyn SchemaRegistry> = match url {
        Some(url) => {
            // Basic authentication and TLS come with `options` (kafka_security.rs).
            let client =
                brook_runtime::format::registry_client::RegistryClient::with_options(url, options)?;
            // The client's URL, without the user info a password may be in.
            let url = client.url().to_string();
            info!(url = %url, "schemas are kept in the Schema Registry at {url}");
            std::sync::Arc::new(client)
        }
        None => {
            let path = data_dir.join("schemas.jsonl");
            let registry = brook_server::schema_registry::FileRegistry::open(&path)?;
            info!(file = %path.display(), "Schema Registry API on the REST port; schemas kept in {}", path.display());
            std::sync::Arc::new(registry)
        }
    };
    set_default_registry(registry)?;
    Ok(())
}

/// ksqlDB's setting for `--max-push-queries`.
const MAX_PUSH_QUERIES: &str = "ksql.max.push.queries";

/// `fetch.wait.max.ms` of persistent queries on the embedded broker (docs/embedded-broker.md).
const EMBEDDED_FETCH_WAIT_MS: &str = "50";

#[cfg(feature = "embedded-broker")]
type Broker = brook_runtime::embedded::EmbeddedBroker;
#[cfg(not(feature = "embedded-broker"))]
type Broker = ();

#[cfg(feature = "embedded-broker")]
async fn start_embedded(
    args: &Args,
    security: security_args::BrokerSecurity,
    slot: &mut Option<Broker>,
) -> Result<String, ServerError> {
    use brook_runtime::embedded::{BrokerStorage, EmbeddedBroker, EmbeddedBrokerConfig};
    let storage = if args.broker_in_memory {
        BrokerStorage::Memory
    } else {
        BrokerStorage::Sqlite(args.data_dir.join("broker.db"))
    };
    let broker = EmbeddedBroker::start(EmbeddedBrokerConfig {
        storage: storage.clone(),
        listen: args.broker_listen,
        tls: security.tls,
        scram_users: security.users,
    })
    .await?;
    let where_ = match &storage {
        BrokerStorage::Memory => "memory".to_string(),
        BrokerStorage::Sqlite(p) => p.display().to_string(),
    };
    info!(
        listen = %broker.addr(),
        storage = %where_,
        "embedded Kafka broker listening; any Kafka client can use bootstrap.servers={}",
        broker.addr()
    );
    let bootstrap = broker.bootstrap_servers();
    *slot = Some(broker);
    Ok(bootstrap)
}

#[cfg(not(feature = "embedded-broker"))]
async fn start_embedded(
    _args: &Args,
    _security: security_args::BrokerSecurity,
    _slot: &mut Option<Broker>,
) -> Result<String, ServerError> {
    Err(ServerError::NoKafka)
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
