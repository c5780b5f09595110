//! Prerequisites on first use: a rustup target (`rustup target add`), a program from a Debian
//! package (`apt-get install`, when running as root on Debian or Ubuntu). What cannot be
//! installed here (no rustup, not root, not Debian, offline) comes back as one line that
//! says what to run. Nothing is fetched from outside rustup's and the distribution's
//! package sources.
//!
//! The machine is looked at through [`Machine`], so that tests can put stand-in programs
//! first on a `PATH` of their own.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What provisioning found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was there already.
    Present,
    /// It was missing and is installed now.
    Installed,
    /// It is missing and cannot be installed here: the one line to show the user.
    Missing(String),
}

impl Outcome {
    /// `Ok` unless missing; the line to print otherwise.
    pub fn ready(self) -> Result<(), String> {
        match self {
            Outcome::Missing(line) => Err(line),
            _ => Ok(()),
        }
    }
}

/// The machine as provisioning sees it.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Where programs are looked up (and the `PATH` they run with).
    pub path: OsString,
    /// Whether this process may install system packages.
    pub root: bool,
    /// `/etc/os-release`, which says which distribution this is.
    pub os_release: PathBuf,
}

impl Machine {
    /// This machine.
    pub fn current() -> Self {
        Self {
            path: std::env::var_os("PATH").unwrap_or_default(),
            root: effective_uid() == Some(0),
            os_release: PathBuf::from("/etc/os-release"),
        }
    }

    /// The program `name` on the `PATH`, if any.
    pub fn find(&self, name: &str) -> Option<PathBuf> {
        std::env::split_paths(&self.path)
            .map(|dir| dir.join(name))
            .find(|p| is_executable(p))
    }

    fn run(&self, program: &Path, args: &[&str]) -> Option<std::process::Output> {
        // A program just written can be briefly "busy" while another thread's child still
        // holds the writer's descriptor (ETXTBSY); that passes within milliseconds.
        for _ in 0..50 {
            let out = Command::new(program)
                .args(args)
                .env("PATH", &self.path)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdin(Stdio::null())
                .output();
            match out {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                other => return other.ok(),
            }
        }
        None
    }

    /// Whether this is Debian or a derivative (Ubuntu): `ID` or `ID_LIKE` in os-release.
    pub fn is_debian_like(&self) -> bool {
        let Ok(text) = std::fs::read_to_string(&self.os_release) else {
            return false;
        };
        text.lines().any(|line| {
            let Some((key, value)) = line.split_once('=') else {
                return false;
            };
            matches!(key, "ID" | "ID_LIKE")
                && value
                    .trim_matches('"')
                    .split_whitespace()
                    .any(|id| id == "debian" || id == "ubuntu")
        })
    }

    /// Makes sure the rustup target `target` is installed for the active toolchain.
    pub fn rust_target(&self, target: &str) -> Outcome {
        let Some(rustup) = self.find("rustup") else {
            return Outcome::Missing(format!(
                "the Rust target {target} is needed and rustup is not on PATH: install it with \
                 your toolchain's installer (with rustup: rustup target add {target})"
            ));
        };
        let installed = self
            .run(&rustup, &["target", "list", "--installed"])
            .filter(|o| o.status.success())
            .is_some_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == target)
            });
        if installed {
            return Outcome::Present;
        }
        eprintln!("installing the Rust target {target} (rustup target add {target})");
        match self.run(&rustup, &["target", "add", target]) {
            Some(o) if o.status.success() => Outcome::Installed,
            _ => Outcome::Missing(format!(
                "the Rust target {target} is missing and `rustup target add {target}` failed \
                 (offline?): run it by hand"
            )),
        }
    }

    /// Makes sure the program `program` is on the PATH, installing the Debian package
    /// `package` when it is not and this process may.
    pub fn debian_program(&self, program: &str, package: &str) -> Outcome {
        if self.find(program).is_some() {
            return Outcome::Present;
        }
        let by_hand = format!(
            "{program} is needed and not installed: run `sudo apt-get install -y {package}` \
             (or your system's equivalent)"
        );
        let apt = match self.find("apt-get") {
            Some(apt) if self.root && self.is_debian_like() => apt,
            _ => return Outcome::Missing(by_hand),
        };
        eprintln!("installing {program} (apt-get install {package})");
        let ok = |o: Option<std::process::Output>| o.is_some_and(|o| o.status.success());
        if !ok(self.run(&apt, &["update", "-q"])) {
            return Outcome::Missing(format!("{by_hand}; apt-get update failed (offline?)"));
        }
        let args = ["install", "-y", "-q", "--no-install-recommends", package];
        if !ok(self.run(&apt, &args)) || self.find(program).is_none() {
            return Outcome::Missing(format!("{by_hand}; apt-get install failed"));
        }
        Outcome::Installed
    }
}

/// For test binaries and tools: makes sure of a prerequisite, or prints the one line that
/// says what to run and exits (no panic, no backtrace: nothing after it can pass).
pub fn require(what: Outcome) {
    if let Err(line) = what.ready() {
        eprintln!("error: {line}");
        std::process::exit(2);
    }
}

/// For test suites: makes sure of the program `program` (Debian package `package`) once per
/// process, whatever the number of tests asking at once; see [`require`].
pub fn ensure_program(program: &str, package: &str) {
    static DONE: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    if !done.iter().any(|p| p == program) {
        require(Machine::current().debian_program(program, package));
        done.push(program.to_owned());
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The effective user ID, from `/proc/self/status` (Linux).
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uids = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    uids.split_whitespace().nth(1)?.parse().ok()
}

pub mod redis;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod redis_tests;
