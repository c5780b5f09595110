//! Fuzz entry points for the domain's parsers and validators. Each takes arbitrary bytes, runs
//! them through the real code with in-memory capabilities, and panics when a promise breaks:
//! a 5xx or a non-JSON error for bad input, or a docs read that names something outside the
//! docs root. `fuzz/` (cargo fuzz, long runs) and this crate's unit tests (bounded runs) drive
//! the same functions.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::accounts::{Role, Tokens, bearer_token};
use crate::api::{self, Ctx};
use crate::audit::MemoryAudit;
use crate::config::keys;
use crate::docs::site::{self, Site};
use crate::docs::{MemoryDocs, SiteFiles};
use crate::env::testing::FakeEnv;
use crate::http::{Request, Response};
use crate::store::MemoryStore;

const NOW: u64 = 1_800_000_000_000;
const SECRET: &str = "fuzzing-secret-fuzzing-secret-0123456789";

/// Users with deliberately cheap Argon2 parameters, so a login costs microseconds.
fn users() -> &'static str {
    static USERS: OnceLock<String> = OnceLock::new();
    USERS.get_or_init(|| {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let params = argon2::Params::new(8, 1, 1, None).unwrap_or_default();
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let salt = SaltString::encode_b64(b"fuzzing-salt-16b").expect("a 16-byte salt encodes");
        let hash = |pw: &str| {
            argon
                .hash_password(pw.as_bytes(), &salt)
                .map(|h| h.to_string())
                .unwrap_or_default()
        };
        serde_json::json!([
            {"username": "wendy", "role": "writer", "password_hash": hash("wendy-pw")},
            {"username": "rita", "role": "reader", "password_hash": hash("rita-pw")},
        ])
        .to_string()
    })
}

fn token(subject: &str, role: Role) -> String {
    Tokens::new(&[SECRET.as_bytes().to_vec()])
        .issue(subject, role, 900, NOW, "fuzz".into())
        .map(|t| t.token)
        .unwrap_or_default()
}

/// Splits `data` at NUL bytes into at most `n` fields (missing ones empty).
fn fields(data: &[u8], n: usize) -> Vec<&[u8]> {
    let mut out: Vec<&[u8]> = data.splitn(n, |b| *b == 0).collect();
    out.resize(n, &[]);
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The promise every answer to bad input keeps.
fn check(resp: &Response, what: &str) {
    assert!(resp.status < 500, "{what}: answered {}", resp.status);
    if resp.status >= 400 {
        let body: serde_json::Value = serde_json::from_slice(&resp.body)
            .unwrap_or_else(|e| panic!("{what}: error body is not JSON: {e}"));
        assert!(
            body["error"]["code"].is_string() && body["error"]["message"].is_string(),
            "{what}: error body lacks code or message: {body}"
        );
    }
}

/// A built site that remembers every path it was asked for.
struct Recording {
    site: &'static Site,
    asked: std::cell::RefCell<Vec<String>>,
}

#[async_trait::async_trait(?Send)]
impl SiteFiles for Recording {
    async fn read(&self, path: &str) -> Option<Vec<u8>> {
        self.asked.borrow_mut().push(path.to_owned());
        self.site.read(path).await
    }
}

/// The site the fuzz entry points serve, built once from a small tree.
fn docs_tree() -> Recording {
    static SITE: OnceLock<Site> = OnceLock::new();
    let site = SITE.get_or_init(|| {
        let options = site::Options {
            base_url: "http://localhost/docs/".into(),
        };
        site::build(&source_tree(), &options)
    });
    Recording {
        site,
        asked: Default::default(),
    }
}

fn source_tree() -> MemoryDocs {
    MemoryDocs::new(&[
        ("v1/index.md", "# One\n\n[next](guide.md)\n"),
        (
            "v1/guide.md",
            "# Guide\n\n| a | b |\n|---|---|\n| 1 | 2 |\n",
        ),
        ("v2/index.html", "<!doctype html><title>two</title>"),
        ("v2/deep/page.md", "# Deep\n"),
    ])
}

/// Every path the docs handler hands to its source stays inside the root.
fn assert_inside_root(path: &str) {
    assert!(
        !path.starts_with('/') && !path.contains('\\') && !path.contains('\0'),
        "docs asked for {path:?}"
    );
    if !path.is_empty() {
        for segment in path.split('/') {
            assert!(
                !segment.is_empty() && segment != "." && segment != "..",
                "docs asked for {path:?}"
            );
        }
    }
}

/// One request to one endpoint, every part of it from `data`: byte 0 picks the endpoint,
/// byte 1 the method, byte 2 the credentials; then NUL-separated path, query, header lines
/// (`name: value`, newline-separated) and body.
/// Returns the status answered (`None` for input too short to name a request).
pub fn api_request(data: &[u8]) -> Option<u16> {
    let (endpoint, method, auth) = match data {
        [a, b, c, ..] => (*a, *b, *c),
        _ => return None,
    };
    let parts = fields(&data[3..], 4);
    let mut req = Request {
        method: ["GET", "POST", "PUT", "HEAD", "OPTIONS", "DELETE"][method as usize % 6].into(),
        path: text(parts[0]),
        query: (!parts[1].is_empty()).then(|| text(parts[1])),
        headers: Vec::new(),
        body: parts[3].to_vec(),
    };
    for line in parts[2].split(|b| *b == b'\n') {
        if let Some(colon) = line.iter().position(|b| *b == b':') {
            let name = text(&line[..colon]).trim().to_ascii_lowercase();
            let value = line[colon + 1..].trim_ascii().to_vec();
            req.headers.push((name, value));
        }
    }
    let credential = match auth % 5 {
        0 => None,
        1 => Some(token("wendy", Role::Writer)),
        2 => Some(token("rita", Role::Reader)),
        3 => Some(token("root", Role::Admin)),
        _ => Some(text(parts[1])),
    };
    if let Some(t) = credential {
        req.headers
            .push(("authorization".into(), format!("Bearer {t}").into_bytes()));
    }
    let store = MemoryStore::new();
    let env = FakeEnv::at(NOW);
    let audit = MemoryAudit::default();
    let config = HashMap::from([
        (keys::JWT_SECRET.to_owned(), SECRET.to_owned()),
        (keys::USERS.to_owned(), users().to_owned()),
        (keys::MAX_PAYLOAD_BYTES.to_owned(), "4096".to_owned()),
        (
            keys::CORS_ALLOWED_ORIGINS.to_owned(),
            "https://app.example".to_owned(),
        ),
    ]);
    let ctx = Ctx {
        store: &store,
        config: &config,
        env: &env,
        audit: &audit,
    };
    // A registered client, so that sends and receives can get past the registry.
    let setup = pollster::block_on(api::register(
        &Request {
            method: "POST".into(),
            headers: vec![(
                "authorization".into(),
                format!("Bearer {}", token("wendy", Role::Writer)).into_bytes(),
            )],
            body: br#"{"client_id":"c1","group_id":"g1"}"#.to_vec(),
            ..Default::default()
        },
        &ctx,
    ));
    assert_eq!(setup.status, 201, "fuzz setup");
    let what = format!("{} {:?}", req.method, req.path);
    let resp = match endpoint % 7 {
        0 => pollster::block_on(api::login(&req, &ctx)),
        1 => pollster::block_on(api::register(&req, &ctx)),
        2 => pollster::block_on(api::send(&req, &ctx)),
        3 => pollster::block_on(api::receive(&req, &ctx)),
        4 => pollster::block_on(api::cleanup(&req, &ctx)),
        5 => pollster::block_on(api::health(&req, async || Ok(()))),
        _ => {
            let docs = docs_tree();
            let resp = pollster::block_on(api::docs(&req, &docs, &ctx));
            for path in docs.asked.borrow().iter() {
                assert_inside_root(path);
            }
            resp
        }
    };
    check(&resp, &what);
    Some(resp.status)
}

/// A docs request for an arbitrary path (and `If-None-Match`): never a 5xx, never a read
/// outside the root. Returns the status answered.
pub fn docs_path(data: &[u8]) -> u16 {
    let parts = fields(data, 2);
    let mut req = Request::get(&text(parts[0]));
    if !parts[1].is_empty() {
        req.headers
            .push(("if-none-match".into(), parts[1].to_vec()));
    }
    let docs = docs_tree();
    let config: HashMap<String, String> = HashMap::new();
    let (store, env, audit) = (MemoryStore::new(), FakeEnv::at(NOW), MemoryAudit::default());
    let ctx = api::Ctx {
        store: &store,
        config: &config,
        env: &env,
        audit: &audit,
    };
    let resp = pollster::block_on(api::docs(&req, &docs, &ctx));
    for path in docs.asked.borrow().iter() {
        assert_inside_root(path);
    }
    check(&resp, &format!("docs {:?}", req.path));
    resp.status
}

/// Arbitrary bytes as a bearer credential: refused with 401 unless they are a token this
/// secret signed.
pub fn token_verification(data: &[u8]) {
    let mut req = Request::get("/");
    req.headers.push(("authorization".into(), data.to_vec()));
    let tokens = Tokens::new(&[SECRET.as_bytes().to_vec()]);
    if let Ok(raw) = bearer_token(&req)
        && let Err(e) = tokens.verify(raw, NOW)
    {
        assert_eq!(e.status, 401, "{raw:?}");
    }
}

/// Arbitrary text as the `users` configuration: parsed or refused, never a panic.
pub fn users_config(data: &[u8]) {
    let _ = crate::accounts::parse_users(&text(data));
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Inputs shaped like the fuzz targets' seeds, so bounded runs reach past the first check.
    fn request_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"/".to_vec()),
            Just(b"/v1/index.md".to_vec()),
            Just(b"/../%2e%2e/x".to_vec()),
            Just(b"client_id=c1&group_id=g1&after=1&limit=5".to_vec()),
            Just(b"content-type: application/json\nif-none-match: *".to_vec()),
            Just(b"origin: https://app.example\naccess-control-request-method: POST".to_vec()),
            Just(br#"{"sender_id":"c1","group_id":"g1","payload":{"a":[1,2]}}"#.to_vec()),
            Just(br#"{"username":"wendy","password":"wendy-pw"}"#.to_vec()),
            Just(br#"{"client_id":"c2","group_id":"g1"}"#.to_vec()),
            proptest::collection::vec(any::<u8>(), 0..64),
        ];
        (any::<[u8; 3]>(), proptest::collection::vec(piece, 0..5)).prop_map(|(head, pieces)| {
            let mut out = head.to_vec();
            out.extend(pieces.join(&0u8));
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn api_requests_never_5xx(data in request_bytes()) {
            api_request(&data);
        }

        #[test]
        fn docs_paths_stay_inside_the_root(
            path in "(/|[a-z0-9]{1,3}|\\.\\.|\\.|%2e|%2f|%5c|%00|%25|v1|v2|index\\.md|deep|page\\.md){0,12}",
            etag in "[ -~]{0,40}",
        ) {
            docs_path(format!("{path}\0{etag}").as_bytes());
        }

        #[test]
        fn tokens_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            token_verification(&data);
            let mut bearer = b"Bearer ".to_vec();
            bearer.extend(&data);
            token_verification(&bearer);
        }

        #[test]
        fn users_config_never_panics(data in "\\PC{0,200}") {
            users_config(data.as_bytes());
        }
    }

    #[test]
    fn the_harness_reaches_real_answers() {
        // A valid send through the fuzz entry point's framing: the harness is not just
        // refusing everything at the door.
        let mut data = vec![2u8, 1, 1];
        data.extend(b"/\0\0content-type: application/json\0");
        data.extend(br#"{"sender_id":"c1","group_id":"g1","payload":"hi"}"#);
        assert_eq!(api_request(&data), Some(202));
        assert_eq!(docs_path(b"/v1/guide.md\0"), 200);
        assert_eq!(docs_path(b"/v1/../../etc/passwd\0"), 404);
    }
}
