//! The two servers under test, each a child process on loopback with a fresh data directory,
//! so that its memory is its own: `mcp-edge up` (the WebAssembly components) and the native
//! baseline (this binary's `native-server` mode).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use mcp_edge_provision::redis::Redis;

pub struct Target {
    pub name: &'static str,
    /// The first replica's address: where set-up requests go.
    pub addr: SocketAddr,
    /// Every replica's address (one but for `--kv redis --replicas N`).
    pub addrs: Vec<SocketAddr>,
    /// The servers under test (their memory is reported): killed on drop.
    children: Vec<Child>,
    /// The redis-server they share, if any: stopped after them.
    _redis: Option<Redis>,
    /// The scenarios whose set-up this target has had (it runs once, not per slice).
    set_up: std::sync::Mutex<Vec<&'static str>>,
    _dir: tempfile::TempDir,
}

/// The store of the wasm target.
pub enum Store {
    /// `mcp-edge up`'s default, SQLite in its data directory.
    Sqlite,
    /// `replicas` `mcp-edge up --kv redis://…` on one redis-server of this run, which
    /// acknowledges only what is on disk (`appendfsync always`), as SQLite does.
    Redis { replicas: usize },
}

/// Configuration both servers get, as Spin variables.
pub fn variables(users_json: &str) -> Vec<(String, String)> {
    [
        ("JWT_SECRET", "bench-secret-bench-secret-bench-secret-0123"),
        ("USERS", users_json),
        // Limits stay on (their store round trips are part of the cost) but high enough that a
        // load generator on one address is never refused.
        ("RATE_LIMIT_BURST", "1000000000"),
        ("LOGIN_FAILURE_BURST", "1000000000"),
        ("LOGIN_USER_FAILURE_BURST", "1000000000"),
        ("MAX_MESSAGES_PER_GROUP", "100000000"),
        ("MAX_CLIENTS_PER_GROUP", "100000"),
    ]
    .iter()
    .map(|(k, v)| (format!("SPIN_VARIABLE_{k}"), v.to_string()))
    .collect()
}

fn wait_for_address(
    mut child: Child,
    lines: mpsc::Receiver<String>,
    name: &str,
) -> Result<(Child, SocketAddr)> {
    loop {
        match lines.recv_timeout(Duration::from_secs(600)) {
            Ok(line) => {
                if let Some(addr) = line
                    .split("on http://")
                    .nth(1)
                    .filter(|_| line.starts_with("Serving "))
                {
                    return Ok((child, addr.trim().parse()?));
                }
            }
            Err(_) => {
                let _ = child.kill();
                bail!("{name} did not start");
            }
        }
    }
}

fn forward_lines(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

impl Target {
    /// Whether `scenario` still needs its set-up on this target; true once only.
    pub fn first_run_of(&self, scenario: &'static str) -> bool {
        let mut done = self.set_up.lock().unwrap_or_else(|p| p.into_inner());
        if done.contains(&scenario) {
            return false;
        }
        done.push(scenario);
        true
    }

    /// `mcp-edge up` on the repository's spin.toml (building the components if needed).
    pub fn wasm(
        root: &Path,
        users_json: &str,
        up_args: &[String],
        store: &Store,
    ) -> Result<Target> {
        let dir = tempfile::tempdir()?;
        let (replicas, redis, name) = match store {
            Store::Sqlite => (1, None, "wasm"),
            Store::Redis { replicas } => {
                let redis =
                    Redis::durable(&dir.path().join("redis")).map_err(anyhow::Error::msg)?;
                let name: &'static str =
                    Box::leak(format!("wasm, redis ×{replicas}").into_boxed_str());
                (*replicas, Some(redis), name)
            }
        };
        let mut children = Vec::new();
        let mut addrs = Vec::new();
        for replica in 0..replicas {
            let data = dir.path().join(format!("replica-{replica}"));
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-edge"));
            cmd.current_dir(root)
                .args(["up", "--listen", "127.0.0.1:0", "--cleanup-schedule", "off"])
                .arg("--data-dir")
                .arg(&data)
                .arg("--audit-log")
                .arg(dir.path().join(format!("audit-{replica}.log")))
                .args(up_args)
                .envs(variables(users_json))
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit());
            if let Some(redis) = &redis {
                cmd.args(["--kv", &redis.url()]);
            }
            if replica > 0 {
                // The first replica compiled the components into the shared cache.
                cmd.args(["--no-build", "--cache-dir"])
                    .arg(dir.path().join("replica-0").join("cache"));
            }
            let mut child = cmd.spawn().context("start mcp-edge")?;
            let lines = forward_lines(child.stdout.take().context("stdout")?);
            let (child, addr) = wait_for_address(child, lines, "mcp-edge")?;
            children.push(child);
            addrs.push(addr);
        }
        Ok(Target {
            set_up: Default::default(),
            name,
            addr: addrs[0],
            addrs,
            children,
            _redis: redis,
            _dir: dir,
        })
    }

    /// The native baseline over the same kind of store.
    pub fn native(root: &Path, users_json: &str, docs_site: &Path) -> Result<Target> {
        let dir = tempfile::tempdir()?;
        let audit = std::fs::File::create(dir.path().join("audit.log"))?;
        let mut child = Command::new(std::env::current_exe()?)
            .current_dir(root)
            .args([
                "native-server",
                "--listen",
                "127.0.0.1:0",
                "--manifest",
                "spin.toml",
            ])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--docs")
            .arg(docs_site)
            .envs(variables(users_json))
            // glibc raises its mmap threshold after the first 19 MiB Argon2 buffer is freed,
            // and from then on keeps those buffers in fragmented heaps: gigabytes of RSS that
            // say nothing about the domain code this baseline stands for. (wasmtime allocates
            // guest memories itself, so the runtime is not affected.)
            .env("MALLOC_MMAP_THRESHOLD_", "1048576")
            .stdout(Stdio::from(audit))
            .stderr(Stdio::piped())
            .spawn()
            .context("start the native baseline")?;
        let lines = forward_lines(child.stderr.take().context("stderr")?);
        let (child, addr) = wait_for_address(child, lines, "native baseline")?;
        Ok(Target {
            set_up: Default::default(),
            name: "native",
            addr,
            addrs: vec![addr],
            children: vec![child],
            _redis: None,
            _dir: dir,
        })
    }

    /// The largest value of a `/proc/PID/status` field across the servers under test.
    fn proc_status(&self, field: &str) -> u64 {
        self.children
            .iter()
            .filter_map(|child| {
                std::fs::read_to_string(format!("/proc/{}/status", child.id())).ok()
            })
            .filter_map(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .max()
            .unwrap_or(0)
    }

    /// Waits until the instances the previous scenario left idle have been dropped (after the
    /// runtime's idle-instance timeout, 1 s by default), so that a scenario's peak memory is
    /// its own, not what the one before it still held.
    pub async fn settle(&self) {
        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    }

    /// Starts a new peak-memory window (Linux: writing 5 to `clear_refs` resets `VmHWM`).
    pub fn reset_peak_rss(&self) {
        for child in &self.children {
            let _ = std::fs::write(format!("/proc/{}/clear_refs", child.id()), "5");
        }
    }

    /// Resident memory now, in KiB (of the largest replica).
    pub fn rss_kib(&self) -> u64 {
        self.proc_status("VmRSS:")
    }

    /// CPU time (user and system) the servers have used, in milliseconds.
    pub fn cpu_ms(&self) -> u64 {
        // `/proc/PID/stat` counts in clock ticks, 100 a second on Linux.
        self.children
            .iter()
            .filter_map(|child| std::fs::read_to_string(format!("/proc/{}/stat", child.id())).ok())
            .filter_map(|stat| {
                // Fields after the command name (which may hold spaces), from field 3 on.
                let rest = stat.rsplit_once(')')?.1;
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
                Some((ticks(11)? + ticks(12)?) * 10)
            })
            .sum()
    }

    /// Peak resident memory since the last reset, in MiB (of the largest replica).
    pub fn peak_rss_mib(&self) -> f64 {
        self.proc_status("VmHWM:") as f64 / 1024.0
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
