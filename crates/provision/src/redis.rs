//! A throwaway `redis-server` on loopback for tests and benchmarks, killed on drop.
//!
//! A free port found by binding port 0 is only free until someone else takes it: another
//! test of the same run may start its own server there first. A server that cannot bind
//! exits, and a readiness check by connecting would then find the *other* test's server and
//! quietly share it. So readiness here is the server's own log line saying it accepts
//! connections, from the process this fixture started; a server that exits instead is
//! retried on another port (when the port was ours to choose) or reported with its log.
//!
//! Each server also works in a directory of its own: Redis loads a `dump.rdb` it finds in
//! its working directory even with saving turned off, and a replica writes one there after
//! its first sync. Started in the caller's directory, one test's data would turn up in the
//! next test's "empty" server.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// What `redis-server` logs once it listens (Redis 6 and 7).
const READY: &str = "Ready to accept connections";
/// Ports tried before giving up, when the fixture picks them.
const ATTEMPTS: usize = 8;

/// A running `redis-server` this process started.
pub struct Redis {
    child: Child,
    port: u16,
    args: Vec<String>,
    /// Its working directory and log; removed on drop (a `--dir` in `args` moves the data,
    /// not the log).
    home: PathBuf,
}

impl Redis {
    /// A server on a free loopback port, without persistence unless `args` say otherwise
    /// (later arguments override earlier ones, so `args` may set any option).
    pub fn start(args: &[&str]) -> Result<Redis, String> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match Self::start_on(free_port(), args) {
                Ok(redis) => return Ok(redis),
                Err(Failure::Exited(log)) => last = log,
                Err(Failure::Other(e)) => return Err(e),
            }
        }
        Err(format!(
            "redis-server did not start on any of {ATTEMPTS} ports; last log:\n{last}"
        ))
    }

    /// A server that acknowledges only what is on disk (`appendonly yes`, `appendfsync
    /// always`), in `dir`: a restart on the same directory finds every acknowledged write.
    pub fn durable(dir: &std::path::Path) -> Result<Redis, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("redis data dir: {e}"))?;
        let dir = dir.to_str().ok_or("a non-UTF-8 data dir")?;
        Self::start(&[
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            dir,
        ])
    }

    /// A server on `port` (for a test that must know the port before the server exists).
    pub fn start_on(port: u16, args: &[&str]) -> Result<Redis, Failure> {
        crate::ensure_program("redis-server", "redis-server");
        let home = home_dir(port).map_err(|e| Failure::Other(format!("redis home: {e}")))?;
        let log = home.join("redis.log");
        let port_arg = port.to_string();
        let (Some(home_arg), Some(log_arg)) = (home.to_str(), log.to_str()) else {
            return Err(Failure::Other("a non-UTF-8 temp dir".into()));
        };
        let mut child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port_arg,
                "--daemonize",
                "no",
            ])
            .args(["--save", "", "--appendonly", "no", "--logfile", log_arg])
            .args(["--dir", home_arg])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Failure::Other(format!("start redis-server: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains(READY) {
                break;
            }
            if let Ok(Some(_)) = child.try_wait() {
                let _ = std::fs::remove_dir_all(&home);
                return Err(Failure::Exited(text));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(&home);
                return Err(Failure::Other(format!(
                    "redis-server on port {port} was not ready in 20 s; its log:\n{text}"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let args = args.iter().map(|a| a.to_string()).collect();
        Ok(Redis {
            child,
            port,
            args,
            home,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// SIGKILL: nothing is flushed on the way out.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills it, then starts the same server again: same port, same arguments (so the same
    /// `--dir`, and what it persisted there, when the arguments name one).
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill();
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let next = Self::start_on(self.port, &args).map_err(|e| e.to_string())?;
        *self = next;
        Ok(())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

/// Why a server did not start.
#[derive(Debug)]
pub enum Failure {
    /// It exited before it was ready (most often: its port was taken); its log.
    Exited(String),
    Other(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Exited(log) => write!(f, "redis-server exited before it was ready:\n{log}"),
            Failure::Other(e) => f.write_str(e),
        }
    }
}

/// A loopback port nobody listened on a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A fresh directory of this process's own, one per server started.
fn home_dir(port: u16) -> std::io::Result<PathBuf> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("mcp-edge-redis-{}-{n}-{port}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
