//! `mcp-edge`: run the mcp-edge components (or any Spin HTTP app) on wasmtime.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use mcp_edge_domain::accounts::{NewKey, Role, UserPatch};
use mcp_edge_domain::env::rfc3339_ms;
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
    /// Build stale components only (runs each `[component.X.build]` command; the docs
    /// component's builds the docs site).
    Build {
        #[arg(long, default_value = "spin.toml")]
        manifest: PathBuf,
        /// Also build the site of this documentation tree, for `up --docs DIR`.
        #[arg(long)]
        docs: Option<PathBuf>,
        /// Where `--docs` builds its site (`<data-dir>/docs-site`), as for `up`.
        #[arg(long, default_value = ".mcp-edge")]
        data_dir: PathBuf,
    },
    /// Print an Argon2id hash of a password read from stdin, for the `users` variable.
    HashPassword,
    /// Manage the users of a data directory's store (`up` may be running).
    User {
        #[command(subcommand)]
        action: UserAction,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Work on a documentation tree.
    Docs {
        #[command(subcommand)]
        action: DocsAction,
    },
    /// Manage API keys for machine clients.
    ApiKey {
        #[command(subcommand)]
        action: KeyAction,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Run one cleanup pass (the cleanup component's cron handler) and print what it removed.
    Cleanup(UpArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API, generated from the code; `--write`
    /// renews the committed copy the deployments serve (static/docs/v1/openapi.json).
    Openapi {
        #[arg(long)]
        write: bool,
    },
}

/// Where the accounts live: the same options as `up`.
#[derive(clap::Args)]
struct StoreArgs {
    #[arg(long, default_value = ".mcp-edge", global = true)]
    data_dir: PathBuf,
    #[arg(long, env = "MCP_EDGE_KV", value_parser = parse_kv, default_value = "sqlite", global = true)]
    kv: KvBackendKind,
    /// TOML file with a `[variables]` table (for the `users` seeds).
    #[arg(long, global = true)]
    runtime_config_file: Option<PathBuf>,
    /// Append audit records (JSON lines) to this file instead of stderr.
    #[arg(long, global = true)]
    audit_log: Option<PathBuf>,
}

fn parse_role(value: &str) -> Result<Role, String> {
    Role::parse(value).ok_or_else(|| format!("expected reader, writer or admin, got {value:?}"))
}

#[derive(Subcommand)]
enum UserAction {
    /// Add a user; the password is read from stdin.
    Add {
        name: String,
        #[arg(long, value_parser = parse_role, default_value = "writer")]
        role: Role,
    },
    /// List users.
    List,
    /// Set a user's password (read from stdin); ends the user's sessions.
    Passwd { name: String },
    /// Change a user's role.
    Role {
        name: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Disable a user: its sessions and API keys stop working.
    Disable { name: String },
    /// Enable a disabled user (its old sessions and keys stay revoked).
    Enable { name: String },
    /// Remove a user, with its sessions and API keys.
    Remove { name: String },
}

#[derive(Subcommand)]
enum DocsAction {
    /// Report every dead link, dead anchor, unparsable front matter and untitled page, as
    /// file:line; exits non-zero when there is any.
    Check {
        /// The docs tree (versions as folders).
        #[arg(default_value = "static/docs")]
        dir: PathBuf,
    },
    /// Build the site of a documentation tree: every page rendered with its navigation,
    /// route records and ETags, sitemap.xml, llms.txt, llms-full.txt and the search index.
    /// Only files that changed are written.
    Build {
        /// The docs tree (versions as folders).
        #[arg(default_value = "static/docs")]
        dir: PathBuf,
        /// Where the site goes (what the docs component mounts).
        #[arg(long, default_value = "target/docs-site")]
        out: PathBuf,
        /// The absolute URL the docs are served under, for sitemap.xml.
        #[arg(long, default_value = "http://127.0.0.1:3000/docs/")]
        base_url: String,
    },
}

#[derive(Subcommand)]
enum KeyAction {
    /// Create an API key; prints the key once, on stdout.
    Create {
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// The user the key acts as.
        #[arg(long)]
        user: String,
        #[arg(long, value_parser = parse_role, default_value = "reader")]
        role: Role,
        /// Expire the key after this many days (default: never).
        #[arg(long)]
        expires_in_days: Option<u64>,
    },
    /// List API keys (never their secrets).
    List,
    /// Revoke an API key by id; takes effect on the next request.
    Revoke { id: String },
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
    /// `redis://[user:password@]host:port` URL (`rediss://` for TLS; Redis or Valkey, shared
    /// by several runtimes). A password may instead come from MCP_EDGE_REDIS_PASSWORD.
    #[arg(long, env = "MCP_EDGE_KV", value_parser = parse_kv, default_value = "sqlite")]
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
    /// Seconds a client may take to send a request's headers before the connection is closed.
    #[arg(long, default_value_t = 30)]
    header_read_timeout_secs: u64,
    /// Seconds a client may take to send a request's body once its headers arrived (408).
    #[arg(long, default_value_t = 30)]
    body_read_timeout_secs: u64,
    /// Connections open at once; more wait in the listen backlog until one closes.
    #[arg(long, default_value_t = 1024)]
    max_connections: usize,
    /// Receives waiting for a message (`wait=`) at once; beyond it they are refused with
    /// 503. A waiting request holds no instance.
    #[arg(long, default_value_t = 10_000)]
    max_waiting: usize,
    /// Waiting receives from one client address at once (429 beyond).
    #[arg(long, default_value_t = 1_000)]
    max_waiting_per_address: usize,
    /// Waiting receives for one client of a group at once (429 beyond).
    #[arg(long, default_value_t = 4)]
    max_waiting_per_client: usize,
    /// Component instances alive at once (more requests wait for one). Each waiting on the
    /// store holds about 200 KiB; 128 kept the 256-group send within 128 MiB at the same rate.
    #[arg(long, default_value_t = 128)]
    max_instances: u32,
    /// Threads serving connections, each with its own event loop (0: one per CPU core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Requests one component instance serves, one after another, before it is dropped
    /// (1: a fresh instance for every request). An instance that failed is never reused.
    #[arg(long, default_value_t = 128)]
    max_instance_reuse_count: usize,
    /// How long an idle instance is kept for the next request (`1s`, `500ms`).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1s")]
    idle_instance_timeout: Duration,
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
    /// Serve Prometheus metrics on this address (without authentication; keep it on
    /// loopback or a private network) instead of the main listener, where they need an
    /// admin token or API key.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
    /// Serve Prometheus metrics on the main listener to anyone, without a credential.
    #[arg(long)]
    public_metrics: bool,
    /// Serve this documentation tree (versions as folders) instead of the manifest's.
    #[arg(long)]
    docs: Option<PathBuf>,
    /// When to run the cleanup component (cron, with seconds: `0 * * * * *` is every minute;
    /// five-field expressions work too), or `off`.
    #[arg(long, default_value = "0 * * * * *")]
    cleanup_schedule: String,
    /// Serve HTTPS (and HTTP/2 by ALPN) with this PEM certificate chain; needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
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
                header_read_timeout: Duration::from_secs(self.header_read_timeout_secs.max(1)),
                body_read_timeout: Duration::from_secs(self.body_read_timeout_secs.max(1)),
                max_connections: self.max_connections.max(1),
                parking: mcp_edge_host::parking::ParkLimits {
                    total: self.max_waiting,
                    per_address: self.max_waiting_per_address,
                    per_client: self.max_waiting_per_client,
                },
            },
            max_instances: self.max_instances.max(1),
            threads: self.threads,
            reuse: mcp_edge_host::dispatch::Reuse {
                max_requests: self.max_instance_reuse_count.max(1),
                idle_timeout: self.idle_instance_timeout,
            },
            runtime_config: self.runtime_config_file,
            build: !self.no_build,
            cache_dir: self.cache_dir,
            drain: Duration::from_secs(30),
            audit_log: self.audit_log,
            metrics_listen: self.metrics_listen,
            public_metrics: self.public_metrics,
            docs_dir: self.docs,
            cleanup_schedule: Some(self.cleanup_schedule).filter(|s| s != "off"),
            tls: self
                .tls_cert
                .zip(self.tls_key)
                .map(|(cert, key)| mcp_edge_host::TlsFiles { cert, key }),
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

/// A password from stdin: prompted for on a terminal, else the first line.
fn read_password(prompt: &str) -> Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        eprint!("{prompt}: ");
        std::io::stderr().flush()?;
    }
    let mut line = String::new();
    stdin
        .lock()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        anyhow::bail!("the password is empty");
    }
    Ok(password)
}

fn hash_password() -> Result<()> {
    let password = read_password("Password")?;
    let hash = mcp_edge_domain::accounts::hash_password(&password)
        .map_err(|e| anyhow::anyhow!("{}", e.message))?;
    println!("{hash}");
    Ok(())
}

fn open_accounts(store: &StoreArgs) -> Result<mcp_edge_host::accounts::AccountsStore> {
    mcp_edge_host::accounts::open(
        &store.data_dir,
        &store.kv,
        store.runtime_config_file.as_deref(),
        store.audit_log.as_deref(),
    )
}

/// Runs one account change, audited under `action` with the outcome.
fn audited<T>(
    accounts: &mcp_edge_host::accounts::AccountsStore,
    action: &'static str,
    target: &str,
    change: impl std::future::Future<Output = Result<T, mcp_edge_domain::ApiError>>,
) -> Result<T> {
    let result = pollster::block_on(change);
    accounts.audit(
        action,
        target,
        result.as_ref().map_or_else(|e| e.status, |_| 200),
    );
    result.map_err(|e| anyhow::anyhow!("{} ({})", e.message, e.code))
}

fn user_command(action: UserAction, store: &StoreArgs) -> Result<()> {
    let opened = open_accounts(store)?;
    let accounts = opened.accounts();
    let patch = |patch: UserPatch, name: &str, action| {
        let user = audited(&opened, action, name, accounts.update_user(name, &patch))?;
        println!(
            "{} {} {}",
            user.username,
            user.role.as_str(),
            state(user.disabled)
        );
        Ok(())
    };
    match action {
        UserAction::Add { name, role } => {
            let password = read_password("Password")?;
            let user = audited(
                &opened,
                "user_add",
                &name,
                accounts.add_user(&name, &password, role),
            )?;
            println!("added {} ({})", user.username, user.role.as_str());
            Ok(())
        }
        UserAction::List => {
            let users = pollster::block_on(accounts.list_users())
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            for u in users {
                println!(
                    "{}\t{}\t{}\t{}",
                    u.username,
                    u.role.as_str(),
                    state(u.disabled),
                    rfc3339_ms(u.created_at_ms)
                );
            }
            Ok(())
        }
        UserAction::Passwd { name } => {
            let password = read_password("New password")?;
            let update = UserPatch {
                password: Some(password),
                ..Default::default()
            };
            patch(update, &name, "user_update")
        }
        UserAction::Role { name, role } => {
            let update = UserPatch {
                role: Some(role),
                ..Default::default()
            };
            patch(update, &name, "user_update")
        }
        UserAction::Disable { name } => {
            let update = UserPatch {
                disabled: Some(true),
                ..Default::default()
            };
            patch(update, &name, "user_update")
        }
        UserAction::Enable { name } => {
            let update = UserPatch {
                disabled: Some(false),
                ..Default::default()
            };
            patch(update, &name, "user_update")
        }
        UserAction::Remove { name } => {
            audited(&opened, "user_remove", &name, accounts.remove_user(&name))?;
            println!("removed {name}");
            Ok(())
        }
    }
}

fn docs_check(dir: &std::path::Path) -> Result<()> {
    if !dir.is_dir() {
        anyhow::bail!("{} is not a directory", dir.display());
    }
    let findings = mcp_edge_domain::docs::check::check(&mcp_edge_domain::docs::FsDocs::at(dir));
    for finding in &findings {
        println!("{}/{finding}", dir.display());
    }
    match findings.len() {
        0 => {
            eprintln!("{}: no problems found", dir.display());
            Ok(())
        }
        n => anyhow::bail!("{n} problem(s) in {}", dir.display()),
    }
}

fn state(disabled: bool) -> &'static str {
    if disabled { "disabled" } else { "active" }
}

fn key_command(action: KeyAction, store: &StoreArgs) -> Result<()> {
    let opened = open_accounts(store)?;
    let accounts = opened.accounts();
    match action {
        KeyAction::Create {
            name,
            user,
            role,
            expires_in_days,
        } => {
            let owner = pollster::block_on(accounts.user(&user))
                .map_err(|e| anyhow::anyhow!("{}", e.message))?
                .ok_or_else(|| anyhow::anyhow!("no user {user}"))?;
            let created_by = std::env::var("USER").map_or("cli".to_owned(), |u| format!("cli:{u}"));
            let (record, key) = audited(
                &opened,
                "api_key_create",
                &user,
                accounts.create_key(&NewKey {
                    name: &name,
                    role,
                    owner: &owner,
                    created_by: &created_by,
                    expires_in_seconds: expires_in_days.map(|d| d.saturating_mul(86_400)),
                }),
            )?;
            println!("{key}");
            eprintln!(
                "created API key {} for {} ({}); it is shown only this once",
                record.id,
                record.user,
                record.role.as_str()
            );
            Ok(())
        }
        KeyAction::List => {
            let keys = pollster::block_on(accounts.list_keys())
                .map_err(|e| anyhow::anyhow!("{}", e.message))?;
            let now = mcp_edge_domain::env::Env::now_ms(&mcp_edge_domain::env::SystemEnv);
            for k in keys {
                let status = if k.revoked_at_ms.is_some() {
                    "revoked"
                } else if k.expires_at_ms.is_some_and(|at| at <= now) {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}",
                    k.id,
                    k.name,
                    k.user,
                    k.role.as_str(),
                    status,
                    k.expires_at_ms.map_or("never".to_owned(), rfc3339_ms)
                );
            }
            Ok(())
        }
        KeyAction::Revoke { id } => {
            audited(&opened, "api_key_revoke", &id, accounts.revoke_key(&id))?;
            println!("revoked {id}");
            Ok(())
        }
    }
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

fn openapi(write: bool) -> Result<()> {
    let document = mcp_edge_domain::openapi::document();
    if !write {
        print!("{document}");
        return Ok(());
    }
    let page = mcp_edge_domain::openapi::reference_page();
    for (path, text) in [
        (mcp_edge_domain::openapi::COMMITTED_PATH, document),
        (mcp_edge_domain::openapi::PAGE_PATH, page),
    ] {
        std::fs::write(path, text)
            .with_context(|| format!("cannot write {path} (run this from the repository)"))?;
        eprintln!("{path}: written");
    }
    Ok(())
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::HashPassword => hash_password(),
        Command::Openapi { write } => openapi(write),
        Command::User { action, store } => user_command(action, &store),
        Command::ApiKey { action, store } => key_command(action, &store),
        Command::Docs {
            action: DocsAction::Check { dir },
        } => docs_check(&dir),
        Command::Docs {
            action: DocsAction::Build { dir, out, base_url },
        } => {
            let built = mcp_edge_host::docs_site::build(&dir, &out, &base_url)?;
            eprintln!(
                "{}: {} pages, {} files ({} written, {} removed), {} problem(s) (see `mcp-edge docs check`)",
                out.display(),
                built.pages,
                built.files,
                built.written.written,
                built.written.removed,
                built.findings
            );
            Ok(())
        }
        Command::Build {
            manifest,
            docs,
            data_dir,
        } => {
            mcp_edge_host::build(&manifest)?;
            if let Some(dir) = docs {
                std::fs::create_dir_all(&data_dir)
                    .with_context(|| format!("cannot create {}", data_dir.display()))?;
                let site = mcp_edge_host::docs_override_site(
                    &dir,
                    &data_dir,
                    "http://127.0.0.1:3000/docs/",
                )?;
                eprintln!("{}: the site of {}", site.display(), dir.display());
            }
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
