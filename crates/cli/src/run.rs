//! `nestwork run`: the node process.

use anyhow::Context;
use nestwork_api::endpoint::{self, Endpoint};
use nestwork_node::{identity, Clock, Config, DataDir, RunError, Running};

/// What `nestwork run` was asked on the command line.
pub struct RunFlags {
    /// `--config`.
    pub config: Option<std::path::PathBuf>,
    /// `--api-port`.
    pub api_port: Option<u16>,
    /// `--listen` (repeatable).
    pub listen: Vec<String>,
    /// `--no-mdns`.
    pub no_mdns: bool,
}

/// Run the node until Ctrl-C or SIGTERM.
pub fn run(dir: &DataDir, flags: RunFlags) -> anyhow::Result<()> {
    init_logging();
    let (key, created) = identity::load_or_init(dir)?;
    if created {
        eprintln!("Created a new member key in {}", dir.key_file().display());
    }
    let mut config = Config::load(flags.config.as_deref(), &dir.config_file())?;
    if let Some(port) = flags.api_port {
        config.api.port = port;
    }
    if !flags.listen.is_empty() {
        config.network.listen = flags.listen;
    }
    if flags.no_mdns {
        config.network.mdns = false;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(dir, key, config))
}

async fn serve(dir: &DataDir, key: nestwork_core::MemberKey, config: Config) -> anyhow::Result<()> {
    // Before anything starts: a node whose API token is unusable does not
    // start at all.
    let token = endpoint::token(dir).context("reading the API token")?;
    let member = key.id();
    let running = Running::start(
        dir,
        key,
        Clock::default(),
        config.network.clone(),
        nestwork_node::TICK_EVERY,
    )
    .await?;
    let listening = running
        .net
        .status()
        .await
        .map(|s| s.listening)
        .unwrap_or_default();

    let listener = tokio::net::TcpListener::bind(("127.0.0.1", config.api.port))
        .await
        .with_context(|| format!("cannot listen for the API on 127.0.0.1:{}", config.api.port))?;
    let addr = listener.local_addr()?;
    Endpoint {
        addr: addr.to_string(),
        pid: std::process::id(),
    }
    .write(dir)
    .context("writing api.json")?;

    println!("Nestwork node running");
    println!("  member    {member}");
    println!("  data      {}", dir.root().display());
    println!(
        "  API       http://{addr} (token in {})",
        dir.token_file().display()
    );
    for a in &listening {
        println!("  peers on  {a}");
    }
    println!(
        "  mDNS      {}",
        if config.network.mdns { "on" } else { "off" }
    );
    println!("Press Ctrl-C to stop.");
    tracing::info!(%addr, "API ready");

    let served = nestwork_api::server::serve(
        listener,
        running.node.clone(),
        Some(running.net.clone()),
        token,
        shutdown_signal(),
    )
    .await;
    Endpoint::remove(dir);
    match running.stop().await {
        // The process ends now anyway, and the store was flushed.
        Err(RunError::StillHeld(after)) => {
            tracing::warn!(?after, "something still held the node when it stopped")
        }
        other => other?,
    }
    served.context("serving the API")?;
    println!("Node stopped.");
    Ok(())
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down");
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}
