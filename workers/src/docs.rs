//! `GET /docs/...` and `POST /mcp` from the built site in the Worker's static assets (`workers/build.rs` puts
//! it under `docs/`): the route record of the URL, then the file it names, each fetched
//! through the assets binding (Cloudflare serves them from its cache).

use mcp_edge_domain::api::{self, Ctx};
use mcp_edge_domain::docs::SiteFiles;
use mcp_edge_domain::http::{Request as ApiRequest, Response as ApiResponse};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use worker::Env;

use crate::shard::ShardedKv;

/// The assets binding (`[assets] binding` in wrangler.toml).
pub const ASSETS_BINDING: &str = "ASSETS";

/// The site's folder within the assets.
const SITE_DIR: &str = "docs";

struct AssetSite<'a> {
    env: &'a Env,
}

fn asset_url(path: &str) -> String {
    let encoded: Vec<String> = path
        .split('/')
        .map(|segment| utf8_percent_encode(segment, NON_ALPHANUMERIC).to_string())
        .collect();
    format!("https://assets.invalid/{SITE_DIR}/{}", encoded.join("/"))
}

#[async_trait::async_trait(?Send)]
impl SiteFiles for AssetSite<'_> {
    async fn read(&self, path: &str) -> Option<Vec<u8>> {
        let assets = self.env.assets(ASSETS_BINDING).ok()?;
        let mut resp = assets.fetch(asset_url(path), None).await.ok()?;
        if resp.status_code() != 200 {
            return None;
        }
        resp.bytes().await.ok()
    }
}

/// `GET /docs/...`. The request's store makes no call until used: public docs make none; a
/// reader's API key is checked there.
pub async fn serve(req: &ApiRequest, env: &Env, store: &ShardedKv) -> ApiResponse {
    crate::with_ctx(env, store, async |ctx| {
        api::docs(req, &AssetSite { env }, ctx).await
    })
    .await
}

/// `GET /openapi.json`, from the same site.
pub async fn openapi(req: &ApiRequest, env: &Env, store: &ShardedKv) -> ApiResponse {
    crate::with_ctx(env, store, async |ctx| {
        api::openapi(req, &AssetSite { env }, ctx).await
    })
    .await
}

/// `POST /mcp`: the docs tools and resources read the same site.
pub async fn mcp(req: &ApiRequest, env: &Env, store: &ShardedKv) -> ApiResponse {
    crate::with_ctx(env, store, async |ctx| mcp_with(req, env, ctx).await).await
}

/// `POST /mcp` with a given context (a message tool's call, answered in its group's
/// object, [`crate::group`]).
pub async fn mcp_with(req: &ApiRequest, env: &Env, ctx: &Ctx<'_>) -> ApiResponse {
    api::mcp(req, &AssetSite { env }, ctx).await
}
