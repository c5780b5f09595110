//! The provisioning logic against stand-in `rustup`, `apt-get` and `redis-server`: each is a
//! script first (and alone) on a `PATH` of the test's own that records how it was called.
//! The machine's real toolchain and packages are never touched.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use super::*;

struct Stage {
    dir: tempfile::TempDir,
}

impl Stage {
    fn new() -> Self {
        let stage = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        std::fs::create_dir(stage.bin()).expect("bin dir");
        stage
    }

    fn bin(&self) -> PathBuf {
        self.dir.path().join("bin")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("calls.log")
    }

    /// A stand-in program: records `name args` in the log, then runs `body` (sh builtins
    /// only: the PATH holds nothing else).
    fn program(&self, name: &str, body: &str) {
        let path = self.bin().join(name);
        let script = format!(
            "#!/bin/sh\nprintf '%s\\n' \"{name} $*\" >> '{log}'\n{body}\n",
            log = self.log().display()
        );
        std::fs::write(&path, script).expect("write stand-in");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn os(&self, id: &str) -> PathBuf {
        let path = self.dir.path().join("os-release");
        std::fs::write(&path, format!("PRETTY_NAME=\"x\"\nID={id}\n")).expect("os-release");
        path
    }

    fn machine(&self, root: bool, id: &str) -> Machine {
        Machine {
            path: self.bin().into_os_string(),
            root,
            os_release: self.os(id),
        }
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

fn rustup_with(stage: &Stage, installed: &[&str]) {
    let list = installed
        .iter()
        .map(|t| format!("printf '%s\\n' {t}"))
        .collect::<Vec<_>>()
        .join("; ");
    stage.program(
        "rustup",
        &format!("if [ \"$1 $2\" = \"target list\" ]; then {list}; fi; exit 0"),
    );
}

#[test]
fn a_missing_target_is_added_with_rustup() {
    let stage = Stage::new();
    rustup_with(&stage, &["x86_64-unknown-linux-gnu"]);
    let outcome = stage.machine(false, "debian").rust_target("wasm32-wasip2");
    assert_eq!(outcome, Outcome::Installed);
    assert_eq!(
        stage.calls(),
        [
            "rustup target list --installed",
            "rustup target add wasm32-wasip2"
        ]
    );
}

#[test]
fn an_installed_target_is_left_alone() {
    let stage = Stage::new();
    rustup_with(&stage, &["x86_64-unknown-linux-gnu", "wasm32-wasip2"]);
    let outcome = stage.machine(false, "debian").rust_target("wasm32-wasip2");
    assert_eq!(outcome, Outcome::Present);
    assert_eq!(stage.calls(), ["rustup target list --installed"]);
}

#[test]
fn without_rustup_one_line_says_what_to_run() {
    let stage = Stage::new();
    let Outcome::Missing(line) = stage.machine(true, "debian").rust_target("wasm32-wasip2") else {
        panic!("no rustup: nothing can be installed");
    };
    assert!(line.contains("rustup target add wasm32-wasip2"), "{line}");
    assert!(!line.contains('\n'));
}

#[test]
fn a_failing_rustup_is_reported_not_hidden() {
    let stage = Stage::new();
    stage.program("rustup", "exit 1");
    let outcome = stage.machine(false, "debian").rust_target("wasm32-wasip2");
    assert!(matches!(outcome, Outcome::Missing(l) if l.contains("failed")));
}

/// An `apt-get` that "installs" a stand-in redis-server into the stage's bin.
fn apt_installing(stage: &Stage, update_ok: bool) {
    let redis = stage.bin().join("redis-server");
    let body = format!(
        "if [ \"$1\" = update ]; then exit {}; fi\n\
         if [ \"$1\" = install ]; then printf '#!/bin/sh\\nexit 0\\n' > '{r}'; /bin/chmod 755 '{r}'; fi\n\
         exit 0",
        if update_ok { 0 } else { 100 },
        r = redis.display()
    );
    stage.program("apt-get", &body);
}

#[test]
fn a_missing_program_is_installed_with_apt_as_root_on_debian() {
    let stage = Stage::new();
    apt_installing(&stage, true);
    let outcome = stage
        .machine(true, "debian")
        .debian_program("redis-server", "redis-server");
    assert_eq!(outcome, Outcome::Installed);
    assert_eq!(
        stage.calls(),
        [
            "apt-get update -q",
            "apt-get install -y -q --no-install-recommends redis-server"
        ]
    );
}

#[test]
fn a_present_program_installs_nothing() {
    let stage = Stage::new();
    stage.program("redis-server", "exit 0");
    apt_installing(&stage, true);
    let outcome = stage
        .machine(true, "debian")
        .debian_program("redis-server", "redis-server");
    assert_eq!(outcome, Outcome::Present);
    assert!(stage.calls().is_empty(), "{:?}", stage.calls());
}

#[test]
fn not_root_not_debian_or_offline_gives_one_line_and_calls_nothing_it_should_not() {
    let stage = Stage::new();
    apt_installing(&stage, true);
    for (root, id) in [(false, "debian"), (true, "fedora")] {
        let Outcome::Missing(line) = stage
            .machine(root, id)
            .debian_program("redis-server", "redis-server")
        else {
            panic!("cannot install as root={root} on {id}");
        };
        assert!(line.contains("apt-get install -y redis-server"), "{line}");
    }
    assert!(
        stage.calls().is_empty(),
        "apt-get was called: {:?}",
        stage.calls()
    );

    let offline = Stage::new();
    apt_installing(&offline, false);
    let outcome = offline
        .machine(true, "ubuntu")
        .debian_program("redis-server", "redis-server");
    assert!(
        matches!(&outcome, Outcome::Missing(l) if l.contains("offline")),
        "{outcome:?}"
    );
    assert_eq!(offline.calls(), ["apt-get update -q"]);
}

#[test]
fn derivatives_count_as_debian() {
    let stage = Stage::new();
    let path = stage.dir.path().join("os-release");
    std::fs::write(&path, "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n").unwrap();
    let machine = Machine {
        path: stage.bin().into_os_string(),
        root: true,
        os_release: path,
    };
    assert!(machine.is_debian_like());
}
