//! Spin variables, resolved once at start-up, and `wasi:config/store` over them.
//!
//! Application variables (`[variables]`) take their value from, in order: the environment
//! (`SPIN_VARIABLE_<NAME>`, Spin's convention), the runtime-config file's `[variables]`
//! table, values `mcp-edge` generated on first run, and the declared default. A required
//! variable with no value stops start-up with an error naming it. Components see only their
//! own `[component.X.variables]`, rendered from `{{ name }}` templates.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use wasmtime::component::{HasData, Linker};

use crate::bindings::wasi::config::store;
use crate::manifest::{Manifest, valid_variable_name};

/// Looks up an environment variable (injected so tests need not touch the process env).
pub type EnvLookup = Box<dyn Fn(&str) -> Option<String>>;

/// Where variable values come from, besides the manifest's defaults.
#[derive(Default)]
pub struct Sources {
    pub env: Option<EnvLookup>,
    /// `[variables]` of the runtime-config file.
    pub file: BTreeMap<String, String>,
    /// Values generated on first run (JWT secret, bootstrap users).
    pub generated: BTreeMap<String, String>,
}

pub fn env_name(variable: &str) -> String {
    format!("SPIN_VARIABLE_{}", variable.to_ascii_uppercase())
}

/// Resolves every application variable.
pub fn resolve(manifest: &Manifest, sources: &Sources) -> Result<BTreeMap<String, String>> {
    let mut values = BTreeMap::new();
    for (name, decl) in &manifest.variables {
        let from_env = sources.env.as_ref().and_then(|env| env(&env_name(name)));
        let value = from_env
            .or_else(|| sources.file.get(name).cloned())
            .or_else(|| sources.generated.get(name).cloned())
            .or_else(|| decl.default.clone());
        match value {
            Some(v) => {
                values.insert(name.clone(), v);
            }
            None if decl.required => bail!(
                "variable {name} is required but has no value: set {} or add it to the runtime-config file",
                env_name(name)
            ),
            None => bail!("variable {name} has neither a default nor required = true"),
        }
    }
    Ok(values)
}

/// Renders a component variable's template (`literal {{ name }} literal`).
pub fn render(template: &str, values: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .with_context(|| format!("unclosed {{{{ in template {template:?}"))?;
        let name = after[..end].trim();
        let value = values.get(name).with_context(|| {
            format!("template {template:?} refers to undeclared variable {name:?}")
        })?;
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// The variables one component sees through `wasi:config`.
pub fn component_config(
    component: &str,
    templates: &BTreeMap<String, String>,
    values: &BTreeMap<String, String>,
) -> Result<ComponentConfig> {
    let mut rendered = BTreeMap::new();
    for (key, template) in templates {
        if !valid_variable_name(key) {
            bail!(
                "component {component}: variable name {key:?} must be lower-case letters, digits and underscores"
            );
        }
        let value = render(template, values)
            .with_context(|| format!("component {component}, variable {key}"))?;
        rendered.insert(key.clone(), value);
    }
    Ok(ComponentConfig(Arc::new(rendered)))
}

/// A component's rendered variables, shared by all its instances. Values are never logged.
#[derive(Clone, Default)]
pub struct ComponentConfig(Arc<BTreeMap<String, String>>);

impl std::fmt::Debug for ComponentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

struct HasConfig;

impl HasData for HasConfig {
    type Data<'a> = &'a ComponentConfig;
}

pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> &ComponentConfig,
) -> wasmtime::Result<()> {
    store::add_to_linker::<_, HasConfig>(linker, view)
}

impl store::Host for &ComponentConfig {
    async fn get(&mut self, key: String) -> wasmtime::Result<Result<Option<String>, store::Error>> {
        Ok(Ok(self.0.get(&key).cloned()))
    }

    async fn get_all(&mut self) -> wasmtime::Result<Result<Vec<(String, String)>, store::Error>> {
        Ok(Ok(self
            .0
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        toml::from_str(
            r#"
spin_manifest_version = 2
[application]
name = "t"
[variables]
jwt_secret = { required = true, secret = true }
ttl = { default = "900" }
users = { required = true }
"#,
        )
        .unwrap()
    }

    #[test]
    fn precedence_env_file_generated_default() {
        let m = manifest();
        let sources = Sources {
            env: Some(Box::new(|k| {
                (k == "SPIN_VARIABLE_JWT_SECRET").then(|| "from-env".to_string())
            })),
            file: BTreeMap::from([
                ("jwt_secret".into(), "from-file".into()),
                ("users".into(), "file-users".into()),
            ]),
            generated: BTreeMap::from([("users".into(), "generated".into())]),
        };
        let values = resolve(&m, &sources).unwrap();
        assert_eq!(values["jwt_secret"], "from-env");
        assert_eq!(values["users"], "file-users");
        assert_eq!(values["ttl"], "900");
    }

    #[test]
    fn a_missing_required_variable_is_named() {
        let err = resolve(&manifest(), &Sources::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("jwt_secret") && err.contains("SPIN_VARIABLE_JWT_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn templates_render_and_refuse_unknown_names() {
        let values = BTreeMap::from([("a".to_string(), "1".to_string())]);
        assert_eq!(render("x{{ a }}y{{a}}", &values).unwrap(), "x1y1");
        assert!(render("{{ b }}", &values).is_err());
        assert!(render("{{ a", &values).is_err());
        let cfg = component_config(
            "c",
            &BTreeMap::from([("k".into(), "{{ a }}".into())]),
            &values,
        )
        .unwrap();
        assert_eq!(
            format!("{cfg:?}"),
            "[\"k\"]",
            "debug output shows names, never values"
        );
    }
}
