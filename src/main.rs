//! `mcp-edge`: run the mcp-edge components (or any Spin HTTP app) on wasmtime.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mcp_edge_host::server::Limits;
use mcp_edge_host::{KvBackendKind, UpOptions};

#[derive(Parser)]
#[command(
    name = "mcp-edge",
    version,
    about = "Run spin.toml's HTTP components on wasmtime with a durable embedded store"
)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `--kv`: `sqlite`, `memory`, or a `redis://` URL.
fn parse_kv(value: &str) -> Result<KvBackendKind, String> {
    match value {
        "sqlite" => Ok(KvBackendKind::Sqlite),
        "memory" => Ok(KvBackendKind::Memory),
        url if url.starts_with("redis://")
            || url.starts_with("rediss://")
            || url.starts_with("valkey://") =>
        {
            Ok(KvBackendKind::Redis(url.replacen(
                "valkey://",
                "redis://",
                1,
            )))
        }
        other => Err(format!(
            "expected sqlite, memory or a redis:// URL, got {other:?}"
        )),
    }
}

#[derive(Subcommand)]
enum Command {
    /// Build stale components, then serve the application.
    Up(UpArgs),
    /// Build stale components only (runs each `[component.X.build]` command).
    Build {
        #[arg(long, default_value = "spin.toml")]
        manifest: PathBuf,
    },
    /// Print an Argon2id hash of a password read from stdin, for the `users` variable.
    HashPassword,
    /// Run one cleanup pass (the cleanup component's cron handler) and print what it removed.
    Cleanup(UpArgs),
}

#[derive(clap::Args)]
struct UpArgs {
    #[arg(long, default_value = "spin.toml")]
    manifest: PathBuf,
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Where the store, generated secrets and the compile cache live.
    #[arg(long, default_value = ".mcp-edge")]
    data_dir: PathBuf,
    /// Key-value backend: `sqlite` (durable, in the data directory), `memory`, or a
    /// `redis://host:port` URL (Redis or Valkey, shared by several runtimes).
    #[arg(long, value_parser = parse_kv, default_value = "sqlite")]
    kv: KvBackendKind,
    /// Per-request deadline in seconds; a component past it is stopped and answered 504.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
    /// Largest linear memory one component instance may use, in MiB.
    #[arg(long, default_value_t = 128)]
    memory_limit_mib: usize,
    /// Largest request body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = mcp_edge_domain::http::MAX_BODY_BYTES)]
    max_body_bytes: usize,
    /// Component instances alive at once.
    #[arg(long, default_value_t = 256)]
    max_instances: u32,
    /// TOML file with a `[variables]` table (values for the manifest's variables).
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Skip building components; serve what is there.
    #[arg(long)]
    no_build: bool,
    /// Where compiled components are cached (default: <data-dir>/cache).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Append audit records (JSON lines) to this file instead of stderr.
    #[arg(long)]
    audit_log: Option<PathBuf>,
    /// Serve Prometheus metrics on this address instead of the main listener.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// When to run the cleanup component (cron, with seconds: `0 * * * * *` is every minute;
    /// five-field expressions work too), or `off`.
    #[arg(long, default_value = "0 * * * * *")]
    cleanup_schedule: String,
}

impl UpArgs {
    fn into_options(self) -> UpOptions {
        UpOptions {
            manifest: self.manifest,
            listen: self.listen,
            data_dir: self.data_dir,
            kv: self.kv,
            limits: Limits {
                timeout: Duration::from_secs(self.timeout_secs.max(1)),
                memory_limit_bytes: self.memory_limit_mib.max(1) * 1024 * 1024,
                max_body_bytes: self.max_body_bytes,
            },
            max_instances: self.max_instances.max(1),
            runtime_config: self.runtime_config_file,
            build: !self.no_build,
            cache_dir: self.cache_dir,
            drain: Duration::from_secs(30),
            audit_log: self.audit_log,
            metrics_listen: self.metrics_listen,
            cleanup_schedule: Some(self.cleanup_schedule).filter(|s| s != "off"),
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,wasmtime=warn,cranelift=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

fn hash_password() -> Result<()> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("Password: ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    let hash = mcp_edge_domain::auth::hash_password(password)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    println!("{hash}");
    Ok(())
}

/// Errors a user can cause (a missing target, a port in use, a bad manifest) are shown as
/// one line with their causes, never with a backtrace.
fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::HashPassword => hash_password(),
        Command::Build { manifest } => {
            mcp_edge_host::build(&manifest)?;
            Ok(())
        }
        Command::Up(args) => {
            let opts = args.into_options();
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(mcp_edge_host::up(opts, shutdown_signal()))
        }
        Command::Cleanup(args) => {
            let mut opts = args.into_options();
            if opts.build {
                mcp_edge_host::build(&opts.manifest)?;
                opts.build = false;
            }
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            for record in runtime.block_on(mcp_edge_host::cleanup_once(opts))? {
                println!("{record}");
            }
            Ok(())
        }
    }
}
