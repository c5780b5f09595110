//! The runtimes the suite runs against, behind one face: a [`Client`] for the base URL, the
//! same configuration variables, and a way to fire the scheduled cleanup.

use std::time::{Duration, Instant};

use crate::support::{self, Client, Server};
use crate::wrangler::WranglerDev;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `mcp-edge up` with the components of spin.toml on its durable SQLite store.
    Runtime,
    /// The Worker under `wrangler dev --local`, state in its Durable Object.
    Workers,
}

enum Process {
    Runtime(Server),
    Workers(WranglerDev),
}

pub struct Deployment {
    process: Process,
    /// A site built for this deployment alone.
    _site: Option<tempfile::TempDir>,
}

impl std::ops::Deref for Deployment {
    type Target = Client;

    fn deref(&self) -> &Client {
        match &self.process {
            Process::Runtime(server) => server,
            Process::Workers(dev) => dev,
        }
    }
}

impl Deployment {
    /// Starts `kind` with the suite's users and secret and the given variables (Spin variable
    /// names, e.g. `client_timeout_seconds`), on a fresh store, with no cleanup schedule:
    /// on the runtime cleanup runs when the test says so ([`Deployment::cleanup_group`]).
    /// On Workers a group's object also cleans the group up by its alarm, within a cleanup
    /// bucket of its last request: tests with short buckets assert on state, not on which
    /// run removed what.
    pub fn start(kind: Kind, vars: &[(&str, &str)]) -> Deployment {
        Self::start_with(kind, vars, "off")
    }

    /// As [`Deployment::start`], with the runtime's cleanup scheduled every second (the
    /// Worker's Cron Trigger fires on [`Deployment::fire_cron`]). Tests of the schedule
    /// assert on the state it leaves, never on which pass did the work.
    pub fn start_scheduled(kind: Kind, vars: &[(&str, &str)]) -> Deployment {
        Self::start_with(kind, vars, "* * * * * *")
    }

    fn start_with(kind: Kind, vars: &[(&str, &str)], schedule: &str) -> Deployment {
        let process = match kind {
            Kind::Runtime => {
                let mut builder = support::server("spin.toml")
                    .arg("--cleanup-schedule")
                    .arg(schedule);
                for (name, value) in vars {
                    builder = builder.env(
                        &format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase()),
                        value,
                    );
                }
                Process::Runtime(builder.start())
            }
            Kind::Workers => Process::Workers(WranglerDev::start(vars)),
        };
        Deployment {
            process,
            _site: None,
        }
    }

    /// Starts `kind` serving the docs tree `dir` (relative to the repository) instead of
    /// static/docs: `up --docs DIR` on the runtime; on Workers, the site `mcp-edge docs
    /// build` makes of it, as the Worker's assets.
    pub fn start_with_docs(kind: Kind, dir: &str) -> Deployment {
        match kind {
            Kind::Runtime => Deployment {
                process: Process::Runtime(
                    support::server("spin.toml").arg("--docs").arg(dir).start(),
                ),
                _site: None,
            },
            Kind::Workers => {
                let site = tempfile::tempdir().expect("tempdir");
                let out = std::process::Command::new(support::binary())
                    .args([
                        "docs",
                        "build",
                        dir,
                        "--base-url",
                        "http://127.0.0.1/docs/",
                        "--out",
                    ])
                    .arg(site.path().join("docs"))
                    .current_dir(support::root())
                    .output()
                    .expect("run mcp-edge docs build");
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                Deployment {
                    process: Process::Workers(WranglerDev::start_with_assets(
                        &[],
                        Some(site.path()),
                    )),
                    _site: Some(site),
                }
            }
        }
    }

    /// Fires the scheduled cleanup: the Worker's Cron Trigger through wrangler's
    /// `/__scheduled`; the runtime's schedule (of [`Deployment::start_scheduled`]) runs every
    /// second by itself.
    pub fn fire_cron(&self) {
        if let Process::Workers(dev) = &self.process {
            let r = dev.get("/__scheduled?cron=*+*+*+*+*", &[]);
            assert_eq!(r.status, 200, "scheduled event: {}", r.text());
        }
    }

    /// A cleanup of `group` through `POST /admin/cleanup?group_id=`, its report: on Workers the group's own (what its object's alarm runs, here
    /// on demand), on the runtime the whole pass.
    pub fn cleanup_group(&self, group: &str) -> serde_json::Value {
        let admin = self.token("admin");
        let r = self.request(
            "POST",
            &format!("/admin/cleanup?group_id={group}"),
            &[("authorization", &format!("Bearer {admin}"))],
            None,
        );
        assert_eq!(r.status, 200, "cleanup: {}", r.text());
        r.json()
    }

    /// Cleanups of `group` until one reports it is complete (bounded); their reports summed.
    pub fn cleanup_until_complete(&self, group: &str) -> serde_json::Value {
        let mut total = serde_json::json!({"clients_removed": 0, "messages_removed": 0});
        for _ in 0..50 {
            let report = self.cleanup_group(group);
            for field in ["clients_removed", "messages_removed"] {
                let sum = total[field].as_u64().unwrap_or(0) + report[field].as_u64().unwrap_or(0);
                total[field] = sum.into();
            }
            if report["complete"] == true {
                return total;
            }
        }
        panic!("cleanup never completed: {total}");
    }
}

/// Polls `check` until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
