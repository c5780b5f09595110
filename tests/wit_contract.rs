//! Least privilege, checked on the real artifacts: each component built for `wasm32-wasip2`
//! imports only what its world in `wit/` declares, uses every capability its world grants, and
//! exports what its world exports (`wasi:http/incoming-handler`; cleanup also the cron handler).

mod support;

use std::collections::BTreeSet;

use wit_parser::{Resolve, WorldId, WorldKey};

fn names(resolve: &Resolve, world: WorldId, imports: bool) -> BTreeSet<String> {
    let w = &resolve.worlds[world];
    let items = if imports { &w.imports } else { &w.exports };
    items
        .keys()
        .map(|key| match key {
            WorldKey::Interface(id) => resolve.id_of(*id).unwrap_or_default(),
            WorldKey::Name(name) => name.clone(),
        })
        .collect()
}

const CAPABILITIES: [&str; 5] = [
    "wasi:keyvalue",
    "wasi:config",
    "wasi:filesystem",
    "wasi:random/random",
    "wasi:clocks/wall-clock",
];

/// A component's world: named after it, but `stream` is a WIT keyword.
fn world_name(component: &str) -> &str {
    match component {
        "stream" => "message-stream",
        other => other,
    }
}

#[test]
fn every_component_imports_exactly_its_world() {
    support::ensure_built("spin.toml");
    let mut contract = Resolve::default();
    let (package, _) = contract
        .push_dir(support::root().join("wit"))
        .expect("wit/ parses");
    for name in [
        "login", "register", "send", "receive", "stream", "docs", "health", "cleanup", "admin",
        "mcp",
    ] {
        let world = contract
            .select_world(&[package], Some(world_name(name)))
            .expect("world exists");
        let wasm = std::fs::read(support::root().join(format!(
            "target/wasm32-wasip2/release/{name}_component.wasm"
        )))
        .expect("component built");
        let wit_component::DecodedWasm::Component(actual, actual_world) =
            wit_component::decode(&wasm).expect("decodes")
        else {
            panic!("{name} is not a component");
        };
        let (used, declared) = (
            names(&actual, actual_world, true),
            names(&contract, world, true),
        );
        let undeclared: Vec<_> = used.difference(&declared).collect();
        assert!(
            undeclared.is_empty(),
            "{name} imports what its world does not declare: {undeclared:?}"
        );
        // Capabilities are declared exactly: a world grants none its component does not use.
        // (Interfaces that only lend types, such as clocks for `wasi:http`, may be elided.)
        let capabilities = |set: &BTreeSet<String>| -> BTreeSet<String> {
            set.iter()
                .filter(|i| CAPABILITIES.iter().any(|c| i.starts_with(c)))
                .cloned()
                .collect()
        };
        assert_eq!(
            capabilities(&used),
            capabilities(&declared),
            "{name}: capability imports differ from its world"
        );
        let exports = names(&actual, actual_world, false);
        assert_eq!(
            exports,
            names(&contract, world, false),
            "{name}: exports differ from its world"
        );
        assert!(
            exports.contains("wasi:http/incoming-handler@0.2.12"),
            "{name}"
        );
    }
    // the capabilities that make least privilege visible
    let imports = |name: &str| {
        names(
            &contract,
            contract
                .select_world(&[package], Some(world_name(name)))
                .unwrap(),
            true,
        )
    };
    let has = |name: &str, prefix: &str| imports(name).iter().any(|i| i.starts_with(prefix));
    // docs read files, and the store only to check an API key
    assert!(has("docs", "wasi:keyvalue/store") && has("docs", "wasi:filesystem"));
    // MCP: the same site, and the store for the message tools
    assert!(has("mcp", "wasi:keyvalue/atomics") && has("mcp", "wasi:filesystem"));
    // login and admin keep users, sessions, keys and failed-login counts, but read no files
    for accounts in ["login", "admin"] {
        assert!(
            has(accounts, "wasi:keyvalue/atomics")
                && has(accounts, "wasi:config")
                && !has(accounts, "wasi:filesystem")
        );
    }
    assert!(
        has("health", "wasi:keyvalue")
            && !has("health", "wasi:config")
            && !has("health", "wasi:filesystem")
    );
    for stateful in ["register", "send", "receive", "stream"] {
        assert!(
            has(stateful, "wasi:keyvalue/atomics")
                && has(stateful, "wasi:config")
                && !has(stateful, "wasi:filesystem")
        );
    }
}
