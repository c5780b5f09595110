//! End-to-end harness: builds the components with `mcp-edge build`, starts the real
//! `mcp-edge` binary on a loopback port, and talks to it over HTTP. Every wait is bounded.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use mcp_edge_provision::redis::Redis;
use serde_json::{Value, json};

pub const SECRET: &str = "e2e-test-secret-e2e-test-secret-0123456789";
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(120);

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mcp-edge"))
}

/// Compiled-component cache shared by all tests, so each component compiles once per run.
fn cache_dir() -> PathBuf {
    root().join("target").join("e2e-compile-cache")
}

/// Builds the manifest's components once per test binary, through `mcp-edge build`.
pub fn ensure_built(manifest: &str) {
    static BUILT: OnceLock<std::sync::Mutex<Vec<String>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    if built.iter().any(|m| m == manifest) {
        return;
    }
    let status = Command::new(binary())
        .args(["build", "--manifest", manifest])
        .current_dir(root())
        .status()
        .expect("run mcp-edge build");
    assert!(
        status.success(),
        "mcp-edge build --manifest {manifest} failed"
    );
    built.push(manifest.to_owned());
}

/// `npm ci` in `dir` (under the repository) once per checkout, unless `probes` (files its
/// packages install) are already there. The lock file in `dir` pins every package.
pub fn npm_ci(dir: &str, probes: &[&str]) {
    let dir = root().join(dir);
    // Tests in several processes may want the same packages at once: one installs, the
    // others wait for it, then find them there (never half installed).
    let lock_path = root().join("target").join(format!(
        "npm-ci-{}.lock",
        dir.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("packages")
    ));
    std::fs::create_dir_all(root().join("target")).expect("create target/");
    let lock = std::fs::File::create(&lock_path).expect("create the npm ci lock file");
    lock.lock().expect("lock the npm ci lock file");
    // npm writes node_modules/.package-lock.json last: without it an install was cut short.
    let installed = dir.join("node_modules/.package-lock.json").exists()
        && probes.iter().all(|p| dir.join(p).exists());
    if installed {
        return;
    }
    mcp_edge_provision::ensure_program("npm", "npm");
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .status()
        .expect("run npm ci");
    assert!(status.success(), "npm ci in {} failed", dir.display());
}

/// The npm packages of tests/mcp: the conformance suite and the official client SDK.
pub fn ensure_mcp_packages() {
    npm_ci(
        "tests/mcp",
        &[
            "node_modules/@modelcontextprotocol/conformance/package.json",
            "node_modules/@modelcontextprotocol/client/package.json",
        ],
    );
}

/// The Python tools of tests/openapi (schemathesis, openapi-spec-validator), every package
/// pinned in its requirements.lock, in a virtual environment under target/ made once per
/// checkout; answers the environment's `bin` directory.
pub fn python_tools() -> PathBuf {
    let venv = root().join("target").join("openapi-venv");
    let bin = venv.join("bin");
    std::fs::create_dir_all(root().join("target")).expect("create target/");
    let lock = std::fs::File::create(root().join("target").join("openapi-venv.lock"))
        .expect("create the venv lock file");
    lock.lock().expect("lock the venv lock file");
    let lockfile = root().join("tests/openapi/requirements.lock");
    // Written last: without it an install was cut short, or the lock file changed since.
    let done = venv.join("installed.lock");
    let wanted = std::fs::read(&lockfile).expect("read tests/openapi/requirements.lock");
    if std::fs::read(&done).ok().as_deref() == Some(wanted.as_slice()) {
        return bin;
    }
    mcp_edge_provision::ensure_program("python3", "python3");
    let _ = std::fs::remove_dir_all(&venv);
    let made = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .expect("run python3 -m venv");
    assert!(
        made.success(),
        "python3 -m venv failed: on Debian, apt-get install python3-venv"
    );
    let installed = Command::new(bin.join("pip"))
        .args([
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "-r",
        ])
        .arg(&lockfile)
        .status()
        .expect("run pip install");
    assert!(
        installed.success(),
        "pip install -r {} failed",
        lockfile.display()
    );
    std::fs::write(&done, wanted).expect("mark the venv installed");
    bin
}

/// Users every test server knows: one per role, plus a second writer.
pub fn users_json() -> String {
    static USERS: OnceLock<String> = OnceLock::new();
    USERS
        .get_or_init(|| {
            let hash = |pw: &str| mcp_edge_domain::accounts::hash_password(pw).unwrap();
            json!([
                {"username": "admin", "role": "admin", "password_hash": hash("admin-pw")},
                {"username": "wendy", "role": "writer", "password_hash": hash("wendy-pw")},
                {"username": "will", "role": "writer", "password_hash": hash("will-pw")},
                {"username": "rita", "role": "reader", "password_hash": hash("rita-pw")},
            ])
            .to_string()
        })
        .clone()
}

pub struct ServerBuilder {
    manifest: String,
    dir: Arc<tempfile::TempDir>,
    args: Vec<String>,
    envs: Vec<(String, String)>,
    configured: bool,
}

impl ServerBuilder {
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.to_owned());
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Start with no JWT secret and no users: the first-run bootstrap supplies them.
    pub fn unconfigured(mut self) -> Self {
        self.configured = false;
        self
    }

    pub fn start(self) -> Server {
        ensure_built(&self.manifest);
        let mut cmd = Command::new(binary());
        cmd.current_dir(root())
            .args([
                "up",
                "--no-build",
                "--listen",
                "127.0.0.1:0",
                "--manifest",
                &self.manifest,
            ])
            .arg("--data-dir")
            .arg(self.dir.path())
            .arg("--cache-dir")
            .arg(cache_dir())
            .args(&self.args)
            .env_remove("SPIN_VARIABLE_JWT_SECRET")
            .env_remove("SPIN_VARIABLE_USERS")
            .env("RUST_LOG", "warn")
            // The suite sends hundreds of requests a second from one address; tests of the
            // limits themselves set their own.
            .env("SPIN_VARIABLE_RATE_LIMIT_BURST", "1000000")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // `MCP_EDGE_TEST_INSTANCE_REUSE=N` runs a suite with `--max-instance-reuse-count N`
        // (unless a test sets its own), to show it passes at every reuse count.
        if let Ok(count) = std::env::var("MCP_EDGE_TEST_INSTANCE_REUSE")
            && !self.args.iter().any(|a| a == "--max-instance-reuse-count")
        {
            cmd.args(["--max-instance-reuse-count", &count]);
        }
        if self.configured {
            cmd.env("SPIN_VARIABLE_JWT_SECRET", SECRET)
                .env("SPIN_VARIABLE_USERS", users_json());
        }
        for (k, v) in &self.envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn mcp-edge up");
        let stdout = child.stdout.take().expect("stdout");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr_log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let sink = stderr_log.clone();
        std::thread::spawn(move || {
            let mut buf = String::new();
            let mut reader = BufReader::new(stderr);
            while reader.read_line(&mut buf).map(|n| n > 0).unwrap_or(false) {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&buf);
                buf.clear();
            }
        });
        let mut printed = Vec::new();
        let deadline = std::time::Instant::now() + STARTUP_TIMEOUT;
        let base = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(base) = line
                        .rsplit(" on ")
                        .next()
                        .filter(|_| line.starts_with("Serving "))
                    {
                        break base.trim().to_owned();
                    }
                    printed.push(line);
                }
                Err(_) => {
                    let _ = child.kill();
                    let log = stderr_log.lock().unwrap_or_else(|p| p.into_inner()).clone();
                    panic!("mcp-edge did not start; stdout: {printed:?}\nstderr: {log}");
                }
            }
        };
        Server {
            child,
            client: Client::new(base),
            printed,
            stderr: stderr_log,
            dir: self.dir,
        }
    }
}

/// A response's headers, as names and text values.
fn headers_of<B>(resp: &http::Response<B>) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_owned(),
                v.to_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

pub struct Server {
    child: Child,
    client: Client,
    /// What the server printed before it started serving (e.g. a generated password).
    pub printed: Vec<String>,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
    dir: Arc<tempfile::TempDir>,
}

/// A response, read completely.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The error code of a JSON error body (asserting the documented shape).
    pub fn error_code(&self) -> String {
        let v = self.json();
        assert!(
            v["error"]["message"].is_string(),
            "error body lacks a message: {v}"
        );
        v["error"]["code"].as_str().unwrap_or_default().to_owned()
    }
}

pub fn server(manifest: &str) -> ServerBuilder {
    server_in(manifest, Arc::new(tempfile::tempdir().expect("tempdir")))
}

/// A server on an existing data directory (to restart on the same state).
pub fn server_in(manifest: &str, dir: Arc<tempfile::TempDir>) -> ServerBuilder {
    ServerBuilder {
        manifest: manifest.to_owned(),
        dir,
        args: Vec::new(),
        envs: Vec::new(),
        configured: true,
    }
}

/// The project's own application on the in-memory store.
pub fn app() -> Server {
    server("spin.toml").arg("--kv").arg("memory").start()
}

/// An HTTP client for one base URL, with the API's requests as methods: what every
/// end-to-end test speaks, whichever runtime answers.
pub struct Client {
    pub base: String,
    agent: ureq::Agent,
}

impl std::ops::Deref for Server {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

impl Client {
    pub fn new(base: String) -> Self {
        Self {
            base,
            agent: agent(),
        }
    }

    /// A client that trusts only `root` (DER) for HTTPS.
    pub fn trusting(base: String, root: Vec<u8>) -> Self {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let roots = RootCerts::Specific(Arc::new(vec![Certificate::from_der(&root).to_owned()]));
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .tls_config(TlsConfig::builder().root_certs(roots).build())
            .build()
            .into();
        Self { base, agent }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// As [`Client::request`], but a failed connection is an `Err` (a replica that is gone)
    /// rather than a panic.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<Reply, String> {
        let mut builder = http::Request::builder().method(method).uri(self.url(path));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let result = match body {
            Some(b) => self.agent.run(builder.body(b.to_vec()).expect("request")),
            None => self.agent.run(builder.body(()).expect("request")),
        };
        let mut resp = result.map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let headers = headers_of(&resp);
        let mut body = Vec::new();
        resp.body_mut()
            .as_reader()
            .read_to_end(&mut body)
            .map_err(|e| format!("{method} {path}: reading the body: {e}"))?;
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Opens a `GET` whose body is read as it comes (an event stream): its status, headers and
    /// a reader of the body. A request with an error status has its body in the reader too.
    pub fn open(&self, path: &str, headers: &[(&str, &str)]) -> EventStream {
        let mut builder = http::Request::builder().method("GET").uri(self.url(path));
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let resp = self
            .agent
            .run(builder.body(()).expect("request"))
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        EventStream {
            status: resp.status().as_u16(),
            headers: headers_of(&resp),
            reader: BufReader::new(Box::new(resp.into_body().into_reader())),
        }
    }

    pub fn get(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        self.request("GET", path, headers, None)
    }

    pub fn post_json(&self, path: &str, token: Option<&str>, body: &Value) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a));
        }
        self.request("POST", path, &headers, Some(body.to_string().as_bytes()))
    }

    pub fn login(&self, user: &str, password: &str) -> String {
        let r = self.post_json(
            "/login",
            None,
            &json!({"username": user, "password": password}),
        );
        assert_eq!(r.status, 200, "login {user}: {}", r.text());
        r.json()["access_token"].as_str().expect("token").to_owned()
    }

    pub fn token(&self, user: &str) -> String {
        self.login(user, &format!("{user}-pw"))
    }

    pub fn register(&self, token: &str, client: &str, group: &str) -> Reply {
        self.post_json(
            "/mcp/register",
            Some(token),
            &json!({"client_id": client, "group_id": group}),
        )
    }

    pub fn send(&self, token: &str, sender: &str, group: &str, payload: Value) -> Reply {
        self.post_json(
            "/mcp/send",
            Some(token),
            &json!({"sender_id": sender, "group_id": group, "payload": payload}),
        )
    }

    pub fn receive(&self, token: &str, client: &str, group: &str, after: Option<u64>) -> Reply {
        let mut path = format!("/mcp/receive?client_id={client}&group_id={group}");
        if let Some(a) = after {
            path.push_str(&format!("&after={a}"));
        }
        let auth = format!("Bearer {token}");
        self.get(&path, &[("authorization", &auth)])
    }

    /// Writes raw bytes on a fresh connection and returns what comes back until the server
    /// closes it (bounded by a timeout; write errors after an early answer are ignored).
    pub fn raw(&self, bytes: &[u8]) -> String {
        use std::io::Write;
        let addr = self.base.trim_start_matches("http://");
        let mut conn = std::net::TcpStream::connect(addr).expect("connect");
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        conn.set_write_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let _ = conn.write_all(bytes);
        let mut out = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n) = conn.read(&mut buf) {
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    /// Sends one raw request on a fresh connection and parses the answer.
    pub fn exchange(&self, bytes: &[u8]) -> RawReply {
        RawReply::parse(&self.raw(bytes))
    }

    /// `POST path` with a JSON body from the loopback address `local_ip` (127.0.0.x), so
    /// that a test can act as several clients.
    pub fn post_json_from(&self, local_ip: &str, path: &str, body: &Value) -> RawReply {
        use socket2::{Domain, Socket, Type};
        use std::io::Write;
        let server: std::net::SocketAddr = self
            .base
            .trim_start_matches("http://")
            .parse()
            .expect("base is ip:port");
        let local: std::net::SocketAddr = format!("{local_ip}:0").parse().expect("local ip");
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        socket.bind(&local.into()).expect("bind the local address");
        socket.connect(&server.into()).expect("connect");
        let mut conn: std::net::TcpStream = socket.into();
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .expect("timeout");
        let body = body.to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(request.as_bytes()).expect("write");
        let mut out = Vec::new();
        let _ = conn.read_to_end(&mut out);
        RawReply::parse(&String::from_utf8_lossy(&out))
    }
}

impl Server {
    /// The server process's resident memory, from `/proc`.
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stops the server with a signal and waits (bounded) for it to exit.
    pub fn stop(mut self, signal: &str) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("mcp-edge did not exit within 15 s of SIG{signal}");
    }

    /// The data directory, to start another server on it later.
    pub fn dir(&self) -> Arc<tempfile::TempDir> {
        self.dir.clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP/1.1 answer read off a raw connection.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub raw: String,
}

impl RawReply {
    pub fn parse(raw: &str) -> RawReply {
        let (head, rest) = raw.split_once("\r\n\r\n").unwrap_or((raw, ""));
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let chunked = headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
        let body = if chunked {
            let mut body = String::new();
            let mut rest = rest;
            while let Some((size, after)) = rest.split_once("\r\n") {
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                if n == 0 || after.len() < n {
                    break;
                }
                body.push_str(&after[..n]);
                rest = after[n..].trim_start_matches("\r\n");
            }
            body
        } else {
            rest.to_owned()
        };
        RawReply {
            status,
            headers,
            body,
            raw: raw.to_owned(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `error.code` of a JSON error body, if the body is one.
    pub fn error_code(&self) -> Option<String> {
        let v: Value = serde_json::from_str(&self.body).ok()?;
        let err = v.get("error")?;
        err.get("message")?.as_str()?;
        err.get("code")?.as_str().map(str::to_owned)
    }
}

/// A throwaway `redis-server` on loopback (crates/provision's fixture, which never mistakes
/// another test's server for its own), killed on drop. A server that cannot start fails the
/// test with its log.
pub struct RedisServer(Redis);

impl RedisServer {
    /// No persistence: for tests that don't restart it.
    pub fn start() -> RedisServer {
        Self(Redis::start(&[]).unwrap_or_else(|e| panic!("{e}")))
    }

    /// On a port chosen before the server exists (a test of a store that comes up late).
    pub fn start_on(port: u16) -> RedisServer {
        Self::start_on_with(port, &[])
    }

    /// Acknowledges only what is on disk (`appendonly yes`, `appendfsync always`), in `dir`:
    /// a restart on the same directory finds every acknowledged write.
    pub fn durable(dir: &std::path::Path) -> RedisServer {
        Self(Redis::durable(dir).unwrap_or_else(|e| panic!("{e}")))
    }

    /// On `port`, with `args` after the fixture's defaults (so they override them).
    pub fn start_on_with(port: u16, args: &[&str]) -> RedisServer {
        Self(Redis::start_on(port, args).unwrap_or_else(|e| panic!("{e}")))
    }

    pub fn port(&self) -> u16 {
        self.0.port()
    }

    /// SIGKILL: nothing flushed on the way out.
    pub fn kill(&mut self) {
        self.0.kill();
    }

    /// The same server again: same port, same settings, same directory.
    pub fn restart(&mut self) {
        self.0.restart().unwrap_or_else(|e| panic!("{e}"));
    }

    pub fn url(&self) -> String {
        self.0.url()
    }
}

/// One Server-Sent Event, or one comment line (`event` is then `"comment"`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub id: Option<u64>,
    pub event: String,
    pub data: String,
    pub retry: Option<u64>,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
}

/// An open `text/event-stream` response ([`Client::open`]).
pub struct EventStream {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<Box<dyn Read + Send>>,
}

impl EventStream {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The next event or comment, or `None` when the stream has ended.
    pub fn next(&mut self) -> Option<Event> {
        let mut event = Event::default();
        let mut any = false;
        loop {
            let mut line = String::new();
            if self.reader.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if any {
                    return Some(event);
                }
                continue;
            }
            any = true;
            if let Some(comment) = line.strip_prefix(':') {
                event.event = "comment".into();
                event.data = comment.trim().to_owned();
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => event.id = value.parse().ok(),
                "event" => event.event = value.to_owned(),
                "data" => event.data = value.to_owned(),
                "retry" => event.retry = value.parse().ok(),
                _ => {}
            }
        }
    }

    /// Events until one named `name` comes (skipping comments and `retry`), or the end.
    pub fn next_named(&mut self, name: &str) -> Option<Event> {
        loop {
            let e = self.next()?;
            if e.event == name {
                return Some(e);
            }
        }
    }

    /// The rest of the body, read to its end.
    pub fn rest(mut self) -> String {
        let mut rest = String::new();
        let _ = self.reader.read_to_string(&mut rest);
        rest
    }
}
