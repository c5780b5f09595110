//! The subset of Spin's application manifest (version 2) that `mcp-edge` runs: HTTP
//! triggers, components with `source`, `files`, `key_value_stores`, `variables` and
//! `build`, and application `[variables]`. Anything it cannot honour is a start-up error
//! rather than a silent difference from Spin.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub spin_manifest_version: u32,
    pub application: Application,
    #[serde(default)]
    pub variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    pub trigger: Triggers,
    #[serde(default)]
    pub component: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Deserialize)]
pub struct Application {
    pub name: String,
    #[serde(default)]
    pub version: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct VariableDecl {
    #[serde(default)]
    pub default: Option<String>,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub secret: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct Triggers {
    #[serde(default)]
    pub http: Vec<HttpTrigger>,
    /// Other trigger types (Spin plugins); `mcp-edge` serves only HTTP.
    #[serde(flatten)]
    pub other: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Deserialize)]
pub struct HttpTrigger {
    pub route: String,
    pub component: String,
}

#[derive(Debug, Deserialize)]
pub struct ComponentDecl {
    pub source: String,
    #[serde(default)]
    pub files: Vec<FileMount>,
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    #[serde(default)]
    pub build: Option<BuildDecl>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FileMount {
    /// A directory (or `dir/**/*`-style glob of a whole directory), mounted at the same
    /// relative path in the guest.
    Pattern(String),
    Mapping {
        source: String,
        destination: String,
    },
}

impl FileMount {
    /// The host directory, relative to the manifest.
    pub fn source_dir(&self) -> &str {
        match self {
            FileMount::Mapping { source, .. } => source,
            FileMount::Pattern(pattern) => pattern
                .trim_end_matches("/**/*")
                .trim_end_matches("/**")
                .trim_end_matches('/'),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct BuildDecl {
    pub command: String,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub watch: Vec<String>,
}

/// A directory to preopen read-only for a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub host: PathBuf,
    pub guest: String,
}

/// Spin variable names: lower-case letters, digits and underscores, starting with a letter.
pub fn valid_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read manifest {}", path.display()))?;
        let manifest: Manifest = toml::from_str(&text)
            .with_context(|| format!("invalid manifest {}", path.display()))?;
        manifest.validate()?;
        Ok(manifest)
    }

    fn validate(&self) -> Result<()> {
        if self.spin_manifest_version != 2 {
            bail!("only spin_manifest_version = 2 is supported");
        }
        for name in self.variables.keys() {
            if !valid_variable_name(name) {
                bail!("variable name {name:?} must be lower-case letters, digits and underscores");
            }
        }
        for (name, decl) in &self.variables {
            if decl.required && decl.default.is_some() {
                bail!("variable {name} cannot be both required and have a default");
            }
        }
        for trigger in &self.trigger.http {
            if !self.component.contains_key(&trigger.component) {
                bail!(
                    "route {} names unknown component {}",
                    trigger.route,
                    trigger.component
                );
            }
        }
        Ok(())
    }

    /// Directories to mount for `component`, resolved against the manifest directory.
    pub fn mounts(&self, base: &Path, component: &ComponentDecl) -> Result<Vec<Mount>> {
        component
            .files
            .iter()
            .map(|mount| {
                let source = mount.source_dir().to_owned();
                let guest = match mount {
                    FileMount::Mapping { destination, .. } => destination.clone(),
                    FileMount::Pattern(pattern) => {
                        if source.contains(['*', '?', '[']) {
                            bail!("files pattern {pattern:?}: only whole directories are supported; use {{ source, destination }}");
                        }
                        format!("/{source}")
                    }
                };
                let host = base.join(&source);
                if !host.is_dir() {
                    bail!("files source {} is not a directory", host.display());
                }
                Ok(Mount { host, guest })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
spin_manifest_version = 2
[application]
name = "demo"
[variables]
jwt_secret = { required = true, secret = true }
token_ttl_seconds = { default = "900" }
[[trigger.http]]
route = "/login"
component = "login"
[[trigger.cron]]
component = "login"
cron_expression = "* * * * *"
[component.login]
source = "login.wasm"
key_value_stores = ["default"]
files = [{ source = "static", destination = "/" }, "assets/**/*"]
[component.login.variables]
jwt_secret = "{{ jwt_secret }}"
[component.login.build]
command = "cargo build"
watch = ["src/**/*.rs"]
"#;

    #[test]
    fn parses_the_spin_v2_shape() {
        let m: Manifest = toml::from_str(SAMPLE).unwrap();
        m.validate().unwrap();
        assert_eq!(m.trigger.http[0].route, "/login");
        assert!(m.trigger.other.contains_key("cron"));
        let login = &m.component["login"];
        assert_eq!(login.key_value_stores, vec!["default"]);
        assert!(m.variables["jwt_secret"].secret);
        assert_eq!(login.build.as_ref().unwrap().watch.len(), 1);
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("static")).unwrap();
        std::fs::create_dir_all(dir.path().join("assets")).unwrap();
        let mounts = m.mounts(dir.path(), login).unwrap();
        assert_eq!(mounts[0].guest, "/");
        assert_eq!(mounts[1].guest, "/assets");
    }

    #[test]
    fn rejects_what_it_cannot_run() {
        let bad_version = SAMPLE.replace("spin_manifest_version = 2", "spin_manifest_version = 1");
        assert!(
            toml::from_str::<Manifest>(&bad_version)
                .unwrap()
                .validate()
                .is_err()
        );
        let unknown = SAMPLE.replace(
            "component = \"login\"\n[[trigger.cron]]",
            "component = \"nope\"\n[[trigger.cron]]",
        );
        assert!(
            toml::from_str::<Manifest>(&unknown)
                .unwrap()
                .validate()
                .is_err()
        );
        let bad_name = SAMPLE.replace("token_ttl_seconds", "Token-TTL");
        assert!(
            toml::from_str::<Manifest>(&bad_name)
                .unwrap()
                .validate()
                .is_err()
        );
    }
}
