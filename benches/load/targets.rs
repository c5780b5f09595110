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

pub struct Target {
    pub name: &'static str,
    pub addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
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
    /// `mcp-edge up` on the repository's spin.toml (building the components if needed).
    pub fn wasm(root: &Path, users_json: &str, up_args: &[String]) -> Result<Target> {
        let dir = tempfile::tempdir()?;
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
            .current_dir(root)
            .args(["up", "--listen", "127.0.0.1:0", "--cleanup-schedule", "off"])
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--audit-log")
            .arg(dir.path().join("audit.log"))
            .args(up_args)
            .envs(variables(users_json))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start mcp-edge")?;
        let lines = forward_lines(child.stdout.take().context("stdout")?);
        let (child, addr) = wait_for_address(child, lines, "mcp-edge")?;
        Ok(Target {
            name: "wasm",
            addr,
            child,
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
            name: "native",
            addr,
            child,
            _dir: dir,
        })
    }

    fn proc_status(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix(field))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    }

    /// Starts a new peak-memory window (Linux: writing 5 to `clear_refs` resets `VmHWM`).
    pub fn reset_peak_rss(&self) {
        let _ = std::fs::write(format!("/proc/{}/clear_refs", self.child.id()), "5");
    }

    /// Peak resident memory since the last reset, in MiB.
    pub fn peak_rss_mib(&self) -> f64 {
        self.proc_status("VmHWM:") as f64 / 1024.0
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
