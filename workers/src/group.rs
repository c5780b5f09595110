//! The message routes, and the MCP endpoint's message tools, answered inside the group's own
//! object: the Worker makes one call, to the `KvShard` object named `group/{g}`, and that
//! object runs the domain's handler there, over a store whose keys of the group
//! (`group/{g}/…`: log slots, head, tail, members) are its own SQLite rows, read and written
//! without a call. Other keys (client records, rate
//! limits, the cleanup index, counters) stay in their objects, reached from the group's
//! object ([`GroupKv`]); the Worker logs those onward calls beside its own.
//!
//! The key layout is [`shard_for`]'s either way, so the same data is served whichever side
//! runs the handler, and the domain's algorithms (atomic operations per key) hold unchanged:
//! each local operation is one synchronous SQLite statement, which nothing interleaves.

use std::rc::Rc;

use mcp_edge_domain::api;
use mcp_edge_domain::http::{Request as ApiRequest, Response as ApiResponse};
use mcp_edge_domain::ids::is_valid_id;
use mcp_edge_domain::store::{KvStore, StoreError};
use serde::{Deserialize, Serialize};
use worker::{Env, Headers, Request, RequestInit, Response, State};

use crate::config::WorkerConfig;

use crate::http::Route;
use crate::platform::WorkerEnv;
use crate::shard::{Calls, ShardedKv, shard_for};
use crate::store::SqlKv;
use crate::waiters::Waiters;

/// The header that carries the forwarded request's method, path, query and headers.
const REQUEST_HEADER: &str = "x-mcp-edge-request";
/// The header of the object's answer that counts its onward calls: `all global
/// global_writes`.
const ONWARD_HEADER: &str = "x-mcp-edge-onward-calls";

/// The path of every forwarded request (object calls of the store use `/op`).
pub const PATH: &str = "/group";

/// The group a message route's request is for, when it names a valid one: `group_id` in the
/// body of register and send, in the query of receive and stream, in the arguments of an MCP message
/// tool's call. Anything else is answered by the
/// Worker itself (the domain refuses it before it touches the store).
pub fn of(route: &Route, req: &ApiRequest) -> Option<String> {
    let group = match route {
        Route::Register | Route::Send => serde_json::from_slice::<serde_json::Value>(&req.body)
            .ok()?
            .get("group_id")?
            .as_str()?
            .to_owned(),
        // A receive or stream, and a cleanup asked for one group (its object runs the
        // group's own).
        Route::Receive | Route::Stream | Route::Cleanup => {
            req.query_params()
                .ok()?
                .into_iter()
                .find(|(name, _)| name == "group_id")?
                .1
        }
        Route::Mcp => message_tool_group(&req.body)?,
        _ => return None,
    };
    is_valid_id(&group).then_some(group)
}

/// The MCP tools that are the message routes ([`api::mcp`]); any other call is answered by
/// the Worker.
const MESSAGE_TOOLS: [&str; 3] = ["register_client", "send_message", "receive_messages"];

/// The group of an MCP `tools/call` of a message tool: its `group_id` argument.
fn message_tool_group(body: &[u8]) -> Option<String> {
    let call: serde_json::Value = serde_json::from_slice(body).ok()?;
    if call.get("method")?.as_str()? != "tools/call" {
        return None;
    }
    let params = call.get("params")?;
    let tool = params.get("name")?.as_str()?;
    MESSAGE_TOOLS.contains(&tool).then_some(())?;
    Some(
        params
            .get("arguments")?
            .get("group_id")?
            .as_str()?
            .to_owned(),
    )
}

/// What the object needs to rebuild the request (the body travels as the call's body).
#[derive(Debug, Serialize, Deserialize)]
struct Forwarded {
    /// The object that answers, `group/{g}`: its own keys are local.
    shard: String,
    /// The route's name ([`Route::name`]: `send`), for the handler.
    route: String,
    method: String,
    path: String,
    query: Option<String>,
    /// Names and hex-encoded values: header values need not be text.
    headers: Vec<(String, String)>,
}

/// The Worker's side: `req` for `route` answered by the object of `group`, with the object's
/// onward calls.
pub async fn forward(
    store: &ShardedKv,
    group: &str,
    route: &Route,
    req: ApiRequest,
) -> Result<(ApiResponse, Calls), StoreError> {
    let shard = format!("group/{group}");
    let meta = Forwarded {
        shard: shard.clone(),
        route: route.name().to_owned(),
        method: req.method,
        path: req.path,
        query: req.query,
        headers: req
            .headers
            .into_iter()
            .map(|(name, value)| (name, hex::encode(value)))
            .collect(),
    };
    let failed = |e: worker::Error| StoreError::Other(format!("object {shard}: {e}"));
    let encoded = serde_json::to_vec(&meta).map_err(|e| StoreError::Other(e.to_string()))?;
    let headers = Headers::new();
    headers
        .set(REQUEST_HEADER, &hex::encode(encoded))
        .map_err(failed)?;
    let mut init = RequestInit::new();
    init.with_method(worker::Method::Post)
        .with_headers(headers)
        .with_body(Some(js_sys::Uint8Array::from(req.body.as_slice()).into()));
    let call = Request::new_with_init(&format!("https://object{PATH}"), &init).map_err(failed)?;
    let mut resp = store.fetch(&shard, call).await?;
    let onward = resp
        .headers()
        .get(ONWARD_HEADER)
        .ok()
        .flatten()
        .and_then(|v| {
            let mut counts = v.split(' ').map(|n| n.parse().ok());
            Some(Calls {
                all: counts.next()??,
                global: counts.next()??,
                global_writes: counts.next()??,
            })
        })
        .unwrap_or_default();
    let headers = resp
        .headers()
        .entries()
        .filter(|(name, _)| name != ONWARD_HEADER)
        .collect();
    let body = resp.bytes().await.map_err(failed)?;
    Ok((
        ApiResponse {
            status: resp.status_code(),
            headers,
            body,
        },
        onward,
    ))
}

/// The local key that names the group whose object this is, for its alarm (not a domain
/// key: never routed, never listed by the cleanup).
pub const NAME_KEY: &str = "object/group";

/// The object's side: rebuilds the forwarded request and answers it with the route's
/// handler over [`GroupKv`], then makes sure the group's cleanup is due within a bucket.
pub async fn serve(
    kv: &SqlKv,
    state: &State,
    env: &Env,
    waiters: Rc<Waiters>,
    mut req: Request,
) -> worker::Result<Response> {
    let meta = req
        .headers()
        .get(REQUEST_HEADER)?
        .and_then(|v| hex::decode(v).ok())
        .and_then(|v| serde_json::from_slice::<Forwarded>(&v).ok())
        .ok_or_else(|| worker::Error::RustError("forwarded request: no metadata".into()))?;
    let body = req.bytes().await?;
    let headers = meta
        .headers
        .into_iter()
        .filter_map(|(name, value)| Some((name, hex::decode(value).ok()?)))
        .collect();
    let api_req = ApiRequest {
        method: meta.method,
        path: meta.path,
        query: meta.query,
        headers,
        body,
    };
    let store = GroupKv::new(kv, meta.shard, env)?.waking(waiters.clone());
    let platform = WorkerEnv::new(env).waking(waiters);
    let resp = crate::with_platform(platform, env, &store, async |ctx| {
        match meta.route.as_str() {
            "register" => Some(api::register(&api_req, ctx).await),
            "send" => Some(api::send(&api_req, ctx).await),
            "receive" => Some(api::receive(&api_req, ctx).await),
            "stream" => Some(api::stream(&api_req, ctx).await),
            "mcp" => Some(crate::docs::mcp_with(&api_req, env, ctx).await),
            "cleanup" => Some(api::cleanup(&api_req, ctx).await),
            _ => None,
        }
    })
    .await
    .ok_or_else(|| worker::Error::RustError("forwarded request: no such route".into()))?;
    let calls = store.remote.calls();
    arm_cleanup(kv, state, env, &store.group).await?;
    let out = crate::http::to_worker(resp)?;
    out.headers().set(
        ONWARD_HEADER,
        &format!("{} {} {}", calls.all, calls.global, calls.global_writes),
    )?;
    Ok(out)
}

/// Makes sure the alarm of `group`'s object (this one) fires within a cleanup bucket, and
/// that the object knows its group's name for it.
async fn arm_cleanup(kv: &SqlKv, state: &State, env: &Env, group: &str) -> worker::Result<()> {
    let failed = |e: mcp_edge_domain::ApiError| worker::Error::RustError(e.message);
    let store_failed = |e: StoreError| worker::Error::RustError(e.to_string());
    if kv.get(NAME_KEY).map_err(store_failed)?.as_deref() != Some(group.as_bytes()) {
        kv.set(NAME_KEY, group.as_bytes()).map_err(store_failed)?;
    }
    let now = js_sys::Date::now() as u64;
    let due = api::group_cleanup_due(&WorkerConfig(env), now).map_err(failed)?;
    crate::alarm::arm(state, now, due).await
}

/// The store of a handler run inside the object `shard`: its keys in its own SQLite, the
/// others in their objects. A group's object is the group's own storage: the domain keeps
/// no global cleanup listing for it, and the object's alarm cleans the group up.
pub struct GroupKv<'a> {
    local: &'a SqlKv,
    shard: String,
    group: String,
    remote: ShardedKv,
    /// Told of every write to the object's own keys (they wake waiting receives).
    waiters: Option<Rc<Waiters>>,
}

impl<'a> GroupKv<'a> {
    pub fn new(local: &'a SqlKv, shard: String, env: &Env) -> worker::Result<Self> {
        let group = shard.strip_prefix("group/").unwrap_or_default().to_owned();
        Ok(Self {
            local,
            shard,
            group,
            remote: ShardedKv::open(env).map_err(|e| worker::Error::RustError(e.to_string()))?,
            waiters: None,
        })
    }

    /// Writes to the object's own keys wake `waiters`.
    pub fn waking(mut self, waiters: Rc<Waiters>) -> Self {
        self.waiters = Some(waiters);
        self
    }

    /// A local write of `key` is done.
    fn written(&self, key: &str) {
        if let Some(waiters) = &self.waiters {
            waiters.written(key);
        }
    }

    fn is_local(&self, key: &str) -> bool {
        shard_for(key) == self.shard
    }
}

#[async_trait::async_trait(?Send)]
impl KvStore for GroupKv<'_> {
    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        if self.is_local(key) {
            self.local.get(key)
        } else {
            self.remote.get(key).await
        }
    }

    async fn set(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        if self.is_local(key) {
            self.local.set(key, value)?;
            self.written(key);
            Ok(())
        } else {
            self.remote.set(key, value).await
        }
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        if self.is_local(key) {
            self.local.delete(key)
        } else {
            self.remote.delete(key).await
        }
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        let (local, remote): (Vec<usize>, Vec<usize>) =
            (0..keys.len()).partition(|&i| self.is_local(&keys[i]));
        let mut out = vec![None; keys.len()];
        let wanted = |at: &[usize]| at.iter().map(|&i| keys[i].clone()).collect::<Vec<_>>();
        if !local.is_empty() {
            for (i, value) in local.iter().zip(self.local.get_many(&wanted(&local))?) {
                out[*i] = value;
            }
        }
        if !remote.is_empty() {
            let values = self.remote.get_many(&wanted(&remote)).await?;
            for (i, value) in remote.iter().zip(values) {
                out[*i] = value;
            }
        }
        Ok(out)
    }

    async fn increment(&self, key: &str, delta: i64) -> Result<i64, StoreError> {
        if self.is_local(key) {
            self.local.increment(key, delta)
        } else {
            self.remote.increment(key, delta).await
        }
    }

    async fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: &[u8],
    ) -> Result<bool, StoreError> {
        if self.is_local(key) {
            let swapped = self.local.compare_and_swap(key, expected, new)?;
            if swapped {
                self.written(key);
            }
            Ok(swapped)
        } else {
            self.remote.compare_and_swap(key, expected, new).await
        }
    }

    fn group_local(&self) -> Option<&str> {
        (!self.group.is_empty()).then_some(self.group.as_str())
    }

    async fn schedule_cleanup(&self, key: &str, at_ms: u64) -> Result<bool, StoreError> {
        if self.is_local(key) {
            // The alarm is set for it when the request or the alarm run ends.
            self.local.schedule(key, at_ms)?;
            Ok(true)
        } else {
            self.remote.schedule_cleanup(key, at_ms).await
        }
    }

    async fn keys_with_prefix(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        if !self.is_local(prefix) {
            return Err(StoreError::Other(format!(
                "keys under {prefix} are not this object's"
            )));
        }
        self.local.keys_with_prefix(prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::of as group_of;
    use crate::http::Route;
    use mcp_edge_domain::http::Request;

    fn with_body(body: &str) -> Request {
        let mut req = Request::get("/");
        req.body = body.as_bytes().to_vec();
        req
    }

    #[test]
    fn the_group_comes_from_the_body_or_the_query_and_must_be_valid() {
        let send = with_body(r#"{"sender_id":"a","group_id":"g1","payload":1}"#);
        assert_eq!(group_of(&Route::Send, &send).as_deref(), Some("g1"));
        assert_eq!(group_of(&Route::Register, &send).as_deref(), Some("g1"));
        let mut receive = Request::get("/");
        receive.query = Some("client_id=a&group_id=g%202x".into());
        assert_eq!(group_of(&Route::Receive, &receive), None, "not a valid id");
        receive.query = Some("client_id=a&group_id=team-7".into());
        assert_eq!(
            group_of(&Route::Receive, &receive).as_deref(),
            Some("team-7")
        );
        for body in ["", "[]", r#"{"group_id":7}"#, r#"{"group_id":"a/b"}"#] {
            assert_eq!(group_of(&Route::Send, &with_body(body)), None, "{body}");
        }
        assert_eq!(group_of(&Route::Login, &send), None);
        let call = |body: &str| group_of(&Route::Mcp, &with_body(body));
        assert_eq!(
            call(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send_message","arguments":{"sender_id":"a","group_id":"g1","payload":1}}}"#).as_deref(),
            Some("g1")
        );
        // Docs tools, other methods and invalid groups stay in the Worker.
        assert_eq!(
            call(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs","arguments":{"query":"x","group_id":"g1"}}}"#
            ),
            None
        );
        assert_eq!(
            call(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"name":"send_message","arguments":{"group_id":"g1"}}}"#
            ),
            None
        );
        assert_eq!(
            call(
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"receive_messages","arguments":{"group_id":"a b"}}}"#
            ),
            None
        );
    }
}
