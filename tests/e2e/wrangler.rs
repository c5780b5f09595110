//! `wrangler dev --local` as a test server: the Worker built once per test run with the
//! project's own toolchain script, then one wrangler (and its workerd) per test, each on its
//! own ports and its own persisted state, stopped with its whole process group.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::support::{self, Client};

/// Builds `workers/build/` once (installing the toolchain on first use).
pub fn ensure_built() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        // The toolchain script brings Node.js 22 from npm when the system's is older.
        mcp_edge_provision::ensure_program("npm", "npm");
        let out = Command::new("bash")
            .arg("workers/tools/build.sh")
            .current_dir(support::root())
            .env_remove("MCP_EDGE_WORKER_PREBUILT")
            .output()
            .map_err(|e| format!("run workers/tools/build.sh: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "workers/tools/build.sh failed:\n{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// What workerd prints when a port it was given is taken.
const PORT_TAKEN: &str = "Address already in use";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A dotenv line: `$` is escaped, as wrangler expands variables in .env files.
fn env_line(name: &str, value: &str) -> String {
    format!(
        "{name}={}\n",
        value.replace('\\', "\\\\").replace('$', "\\$")
    )
}

pub struct WranglerDev {
    child: Child,
    client: Client,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
    _config: Config,
}

/// The Worker's configuration for one test: wrangler.toml with the request budget of its
/// Rate Limiting binding set from the test's `rate_limit_burst` (requests a minute; the
/// suite's default is a budget it cannot spend). It lies beside wrangler.toml, whose relative
/// paths it keeps, and is removed with the test.
struct Config {
    name: String,
}

impl Config {
    fn for_vars(vars: &[(&str, &str)]) -> Config {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        // A burst of 0 turns the budgets off in the domain; the binding needs a positive limit.
        let limit = vars
            .iter()
            .find(|(name, _)| *name == "rate_limit_burst")
            .and_then(|(_, value)| value.parse::<u64>().ok())
            .filter(|limit| *limit > 0)
            .unwrap_or(1_000_000);
        let shipped = std::fs::read_to_string(support::root().join("wrangler.toml"))
            .expect("read wrangler.toml");
        let budget = "simple = { limit = 600, period = 60 }";
        assert!(
            shipped.contains(budget),
            "wrangler.toml's REQUESTS budget moved"
        );
        let name = format!(
            "wrangler.e2e-{}-{}.toml",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let text = shipped.replace(
            budget,
            &format!("simple = {{ limit = {limit}, period = 60 }}"),
        );
        std::fs::write(support::root().join(&name), text)
            .expect("write the test's wrangler config");
        Config { name }
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(support::root().join(&self.name));
    }
}

impl std::ops::Deref for WranglerDev {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl WranglerDev {
    pub fn start(vars: &[(&str, &str)]) -> WranglerDev {
        Self::start_with_assets(vars, None)
    }

    /// As [`WranglerDev::start`], with `assets` (a folder holding a built site in `docs/`)
    /// in place of the Worker's own.
    pub fn start_with_assets(
        vars: &[(&str, &str)],
        assets: Option<&std::path::Path>,
    ) -> WranglerDev {
        ensure_built();
        // A port found free can be taken before wrangler binds it: by another test's wrangler
        // or workerd, which bind ports of their own, again on every reload. Such a start is
        // tried again on new ports; any other failure ends the test.
        let mut attempt = 1;
        loop {
            match Self::try_start(vars, assets) {
                Ok(dev) => return dev,
                Err(log) if attempt < 3 && log.contains(PORT_TAKEN) => attempt += 1,
                Err(log) => panic!("wrangler dev did not start:\n{log}"),
            }
        }
    }

    /// One start on fresh ports: the server once it answers, else what wrangler printed
    /// (it is stopped).
    fn try_start(
        vars: &[(&str, &str)],
        assets: Option<&std::path::Path>,
    ) -> Result<WranglerDev, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env = env_line("jwt_secret", support::SECRET);
        env.push_str(&env_line("users", &support::users_json()));
        // As for the runtime: the suite sends hundreds of requests a second from one address.
        env.push_str(&env_line("rate_limit_burst", "1000000"));
        for (name, value) in vars {
            env.push_str(&env_line(name, value));
        }
        let env_file = dir.path().join("test.env");
        std::fs::write(&env_file, env).expect("write env file");
        let config = Config::for_vars(vars);
        let port = free_port();
        let script = format!(
            "source workers/tools/env.sh && exec wrangler dev --config '{config}' --local \
             --test-scheduled --ip 127.0.0.1 --port {port} --inspector-port {inspector} \
             --persist-to '{state}' --env-file '{env}' --show-interactive-dev-session=false \
             --log-level log",
            config = config.name,
            inspector = free_port(),
            state = dir.path().join("state").display(),
            env = env_file.display(),
        );
        let script = match assets {
            Some(dir) => format!("{script} --assets '{}'", dir.display()),
            None => script,
        };
        let mut child = Command::new("bash")
            .args(["-c", &script])
            .current_dir(support::root())
            .env("MCP_EDGE_WORKER_PREBUILT", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so that workerd goes with it.
            .process_group(0)
            .spawn()
            .expect("spawn wrangler dev");
        let log = Arc::new(Mutex::new(String::new()));
        for stream in [
            Box::new(child.stdout.take().expect("stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().expect("stderr")),
        ] {
            let sink = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut log = sink.lock().unwrap_or_else(|p| p.into_inner());
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let mut dev = WranglerDev {
            child,
            client: Client::new(format!("http://127.0.0.1:{port}")),
            log,
            _dir: dir,
            _config: config,
        };
        let deadline = Instant::now() + support::STARTUP_TIMEOUT;
        loop {
            let log = dev.log();
            if log.contains("Ready on") && dev.try_health() {
                return Ok(dev);
            }
            let exited = matches!(dev.child.try_wait(), Ok(Some(_)));
            if exited || log.contains(PORT_TAKEN) || Instant::now() >= deadline {
                return Err(log);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn try_health(&self) -> bool {
        std::net::TcpStream::connect(("127.0.0.1", self.port())).is_ok()
            && self.get("/health", &[]).status == 200
    }

    fn port(&self) -> u16 {
        self.base
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or(0)
    }

    /// Everything wrangler and the Worker printed (console.log lines included).
    pub fn log(&self) -> String {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for WranglerDev {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // What wrangler saw when a test failed (its reloads, the Worker's errors).
            let log = self.log();
            let quiet = |l: &&str| l.contains("\"do_calls\"") && l.contains("\"status\":20");
            let lines: Vec<&str> = log.lines().filter(|l| !quiet(l)).collect();
            let tail = lines[lines.len().saturating_sub(80)..].join("\n");
            eprintln!("--- the last lines wrangler dev printed ---\n{tail}");
        }
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.wait();
    }
}
