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
    /// names, e.g. `client_timeout_seconds`), on a fresh store.
    pub fn start(kind: Kind, vars: &[(&str, &str)]) -> Deployment {
        let process = match kind {
            Kind::Runtime => {
                // The scheduled cleanup runs every second: `fire_cron` then only waits.
                let mut builder = support::server("spin.toml")
                    .arg("--cleanup-schedule")
                    .arg("* * * * * *");
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
        Deployment { process }
    }

    /// Fires the scheduled cleanup: the Worker's Cron Trigger through wrangler's
    /// `/__scheduled`; the runtime's schedule runs every second by itself.
    pub fn fire_cron(&self) {
        if let Process::Workers(dev) = &self.process {
            let r = dev.get("/__scheduled?cron=*+*+*+*+*", &[]);
            assert_eq!(r.status, 200, "scheduled event: {}", r.text());
        }
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
