//! Spin's route forms on `mcp-edge`, through a component that answers with the request it
//! was given: named segments become `spin-path-match-<name>` headers, wildcards give the path
//! info, an exact segment beats a named one, and the `spin-*` headers are Spin's.

mod support;

use support::server;

fn lines(text: &str) -> Vec<&str> {
    text.lines().collect()
}

#[test]
fn route_parameters_and_wildcards_reach_the_component_as_on_spin() {
    let s = server("tests/fixtures/routes.toml")
        .arg("--kv")
        .arg("memory")
        .start();
    let listed = s.printed.join("\n");
    assert!(
        listed.contains("/base/:path_segment/:path_end/..."),
        "{listed}"
    );

    let r = s.get("/base/path/end/rest?key=value", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let got = lines(&text);
    for expected in [
        "method: GET",
        "path: /base/path/end/rest?key=value",
        "spin-component-route: /base/:path_segment/:path_end",
        "spin-matched-route: /base/:path_segment/:path_end/...",
        "spin-path-info: /rest",
        "spin-path-match-path-end: end",
        "spin-path-match-path-segment: path",
        "spin-raw-component-route: /base/:path_segment/:path_end/...",
        "spin-base-path: /",
    ] {
        assert!(got.contains(&expected), "{expected} not in\n{text}");
    }
    assert!(
        got.iter().any(|l| l.starts_with("spin-full-url: http://")
            && l.ends_with("/base/path/end/rest?key=value")),
        "{text}"
    );
    assert!(
        got.iter()
            .any(|l| l.starts_with("spin-client-addr: 127.0.0.1:"))
    );

    let user = s.get("/users/42", &[]).text();
    assert!(lines(&user).contains(&"spin-path-match-id: 42"), "{user}");
    let me = s.get("/users/me", &[]).text();
    assert!(
        !me.contains("spin-path-match-id"),
        "the exact route wins: {me}"
    );
    assert!(
        lines(&me).contains(&"spin-matched-route: /users/me"),
        "{me}"
    );

    let file = s.get("/files/a/b.txt", &[]).text();
    assert!(lines(&file).contains(&"spin-path-info: /a/b.txt"), "{file}");
    let dir = s.get("/files/", &[]).text();
    assert!(lines(&dir).contains(&"spin-path-info: /"), "{dir}");

    // A client's own spin-* headers never reach the component.
    let spoofed = s
        .get(
            "/users/7",
            &[
                ("spin-path-match-id", "1"),
                ("spin-path-match-admin", "yes"),
            ],
        )
        .text();
    assert!(
        lines(&spoofed).contains(&"spin-path-match-id: 7"),
        "{spoofed}"
    );
    assert!(!spoofed.contains("spin-path-match-admin"), "{spoofed}");

    // Nothing matches: the runtime's 404.
    let none = s.get("/base/only-one", &[]);
    assert_eq!(
        (none.status, none.error_code().as_str()),
        (404, "route_not_found")
    );
}

#[test]
fn a_route_the_runtime_cannot_serve_is_refused_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manifest = dir.path().join("bad.toml");
    std::fs::write(
        &manifest,
        "spin_manifest_version = 2\n[application]\nname = \"bad\"\n\
         [[trigger.http]]\nroute = \"/a/:\"\ncomponent = \"x\"\n\
         [[trigger.http]]\nroute = \"/b\"\ncomponent = \"y\"\n\
         [component.x]\nsource = \"x.wasm\"\n[component.y]\nsource = \"y.wasm\"\n",
    )
    .expect("write");
    let out = std::process::Command::new(support::binary())
        .args([
            "up",
            "--no-build",
            "--kv",
            "memory",
            "--listen",
            "127.0.0.1:0",
            "--manifest",
        ])
        .arg(&manifest)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .expect("run mcp-edge");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("/a/:") && err.contains("named"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
}
