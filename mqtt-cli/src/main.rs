//! `mqtt`: the broker and the command-line tools of the mqtt-rs workspace.

mod bench;
mod client;
mod options;
mod passwd;
mod publish;
mod subscribe;
mod transport;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use mqtt_server::{Config, Server};
use tracing_subscriber::EnvFilter;

/// MQTT 3.1.1 and 5.0: a broker, and tools to talk to one.
#[derive(Debug, Parser)]
#[command(name = "mqtt", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the MQTT broker (default: 127.0.0.1:1883, anonymous clients
    /// allowed, sessions in memory).
    Broker(BrokerArgs),
    /// Publish a message (like mosquitto_pub).
    Pub(publish::PubArgs),
    /// Subscribe and print messages (like mosquitto_sub).
    Sub(subscribe::SubArgs),
    /// Load-test a broker (like emqtt-bench): conn, pub, sub, pubsub, filters.
    Bench(bench::BenchArgs),
    /// Manage a password file (like mosquitto_passwd, same format).
    Passwd(passwd::PasswdArgs),
}

#[derive(Debug, Args)]
struct BrokerArgs {
    /// Address to listen on for MQTT over TCP, e.g. 0.0.0.0:1883. Repeat for
    /// several; replaces the config file's `listen`. Default: 127.0.0.1:1883.
    #[arg(short, long = "listen", value_name = "ADDR")]
    listen: Vec<SocketAddr>,

    /// TOML configuration file; every key is documented, with its default,
    /// in example.toml at the repository root. Unknown keys are errors.
    #[arg(short, long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// Keep sessions, queued messages and retained messages on disk in
    /// DIR (created if missing) and restore them at startup: turns on
    /// `persistence` with `data_dir = DIR`. Acknowledged QoS 1/2 messages
    /// survive kill -9.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,

    /// Log level or filter (error, warn, info, debug, trace, or a
    /// tracing filter such as `mqtt_server=debug`). Overrides RUST_LOG.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,

    /// Join a cluster of brokers through the NATS server (with JetStream)
    /// at URL, e.g. nats://127.0.0.1:4222. Repeat for several servers of
    /// one NATS cluster; replaces the `[cluster]` table's `urls` (the
    /// table's other keys, or their defaults, apply).
    #[arg(long = "cluster", value_name = "URL")]
    cluster: Vec<String>,

    /// This node's name in the cluster (letters, digits, - and _);
    /// replaces the `[cluster]` table's `node`.
    #[arg(long = "node", value_name = "NAME", requires = "cluster")]
    node: Option<String>,

    /// Threads serving the connections; replaces the config file's
    /// `workers`. Default: one per core.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1024))]
    workers: Option<u16>,
}

/// The broker's configuration: the file's, with the command line's
/// replacements.
fn broker_config(args: &BrokerArgs) -> Result<Config, String> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    if !args.listen.is_empty() {
        config.listen = args.listen.clone();
    }
    if let Some(dir) = &args.data_dir {
        config.persistence = true;
        config.data_dir = dir.clone();
    }
    if let Some(n) = args.workers {
        config.workers = usize::from(n);
    }
    if !args.cluster.is_empty() {
        let cluster = config.cluster.get_or_insert_with(Default::default);
        cluster.urls = args.cluster.clone();
        if let Some(node) = &args.node {
            cluster.node = Some(node.clone());
        }
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn init_logging(level: Option<&str>) -> Result<(), String> {
    let filter = match level {
        Some(l) => EnvFilter::try_new(l).map_err(|e| format!("invalid --log-level {l:?}: {e}"))?,
        None => EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .init();
    Ok(())
}

async fn broker(args: BrokerArgs, config: Config) -> Result<(), String> {
    init_logging(args.log_level.as_deref())?;
    let server = Server::bind(config).await.map_err(|e| e.to_string())?;
    let shutdown = server.shutdown_handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        shutdown.shutdown();
    });
    tokio::spawn(reload_on_sighup(server.reload_handle()));
    server.run().await.map_err(|e| e.to_string())
}

/// SIGHUP reloads the password and ACL files (errors are logged).
async fn reload_on_sighup(reload: mqtt_server::ReloadHandle) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the password and ACL files");
            reload.reload();
        }
    }
    #[cfg(not(unix))]
    drop(reload);
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
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

/// mimalloc rather than the system allocator: messages are allocated on
/// the publisher's thread and freed on the subscriber's, which glibc's
/// malloc serialises on its arena locks (measured with `mqtt bench`; see
/// benches/README.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The broker's configuration is read first: it says how many threads
    // the runtime starts.
    let config = match &cli.command {
        Command::Broker(args) => match broker_config(args) {
            Ok(config) => Some(config),
            Err(e) => {
                eprintln!("mqtt: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ => None,
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = config.as_ref().map(|c| c.workers).filter(|&n| n > 0) {
        builder.worker_threads(n);
    }
    let runtime = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mqtt: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Broker(args) => broker(args, config.unwrap_or_default())
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::Pub(args) => publish::run(args).await,
            Command::Sub(args) => subscribe::run(args).await,
            Command::Bench(args) => bench::run(args).await,
            Command::Passwd(args) => passwd::run(args),
        }
    });
    // Tasks still blocked (a thread reading standard input) must not hold
    // the exit.
    runtime.shutdown_background();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mqtt: {e}");
            ExitCode::FAILURE
        }
    }
}
