//! `GET /docs/...` over Workers static assets. The domain's docs logic ([`docs::serve`]) asks
//! for directory entries and files synchronously, while assets are fetched asynchronously, so
//! a request is served in two passes: the first runs against the tree's file list (built into
//! the Worker) and notes which files it reads, the assets binding fetches those, and the second
//! pass answers with their contents. Cloudflare serves the asset fetches from its cache.

use std::cell::RefCell;
use std::collections::HashMap;

use mcp_edge_domain::api::{self, Ctx};
use mcp_edge_domain::audit::{AuditSink, MemoryAudit};
use mcp_edge_domain::docs::{DocsSource, Entry, children_in, is_dir_in};
use mcp_edge_domain::error::ApiError;
use mcp_edge_domain::http::{Request as ApiRequest, Response as ApiResponse, respond};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use worker::Env;

use crate::config::WorkerConfig;
use crate::platform::{ConsoleAudit, WorkerEnv};
use crate::shard::ShardedKv;

include!(concat!(env!("OUT_DIR"), "/docs_files.rs"));

/// The assets binding (`[assets] binding` in wrangler.toml).
pub const ASSETS_BINDING: &str = "ASSETS";

/// The docs tree as listed at build time; file contents from `contents` when fetched.
struct AssetTree<'a> {
    files: &'a [&'a str],
    /// `None` while planning: every listed file reads as empty.
    contents: Option<&'a HashMap<String, Vec<u8>>>,
    read: RefCell<Vec<String>>,
}

impl DocsSource for AssetTree<'_> {
    fn entry(&self, path: &str) -> Entry {
        if self.files.contains(&path) {
            self.read.borrow_mut().push(path.to_owned());
            return match self.contents {
                None => Entry::File(Vec::new()),
                Some(contents) => contents
                    .get(path)
                    .map_or(Entry::Missing, |bytes| Entry::File(bytes.clone())),
            };
        }
        if is_dir_in(self.files.iter().copied(), path) {
            Entry::Dir
        } else {
            Entry::Missing
        }
    }

    fn list(&self, path: &str) -> Vec<String> {
        children_in(self.files.iter().copied(), path)
    }
}

fn asset_url(path: &str) -> String {
    let encoded: Vec<String> = path
        .split('/')
        .map(|segment| utf8_percent_encode(segment, NON_ALPHANUMERIC).to_string())
        .collect();
    format!("https://assets.invalid/{}", encoded.join("/"))
}

pub async fn serve(req: &ApiRequest, env: &Env) -> ApiResponse {
    let config = WorkerConfig(env);
    let plan = AssetTree {
        files: DOCS_FILES,
        contents: None,
        read: RefCell::default(),
    };
    // The planning pass's audit record is kept back: only the answer given is audited.
    let held = MemoryAudit::default();
    // Opening binds the namespace only: public docs make no store call (a reader's API key
    // is checked there).
    let store = match ShardedKv::open(env) {
        Ok(store) => store,
        Err(e) => return respond(Err(ApiError::store_unavailable(&e))),
    };
    let planning = Ctx {
        store: &store,
        config: &config,
        env: &WorkerEnv,
        audit: &held,
    };
    let first = api::docs(req, &plan, &planning).await;
    let wanted = plan.read.into_inner();
    if wanted.is_empty() {
        // Nothing read (a listing, a redirect, an error): the first answer is the answer.
        for record in held.records() {
            ConsoleAudit.record(record);
        }
        return first;
    }
    let mut contents = HashMap::new();
    if let Ok(assets) = env.assets(ASSETS_BINDING) {
        for path in wanted {
            if let Ok(mut resp) = assets.fetch(asset_url(&path), None).await
                && resp.status_code() == 200
                && let Ok(bytes) = resp.bytes().await
            {
                contents.insert(path, bytes);
            }
        }
    }
    let tree = AssetTree {
        files: DOCS_FILES,
        contents: Some(&contents),
        read: RefCell::default(),
    };
    let answering = Ctx {
        audit: &ConsoleAudit,
        ..planning
    };
    api::docs(req, &tree, &answering).await
}
