//! Configuration through `wasi:config/store`: on Spin these are the component's variables.
//!
//! An endpoint reads a dozen keys per request (limits, CORS, secrets), each a host call, so
//! the first read of a request fetches them all with one `get-all` and the rest are answered
//! from it. The values live as long as the request's [`WasiConfig`]: the next request reads
//! afresh and sees a changed variable.

use std::cell::OnceCell;
use std::collections::HashMap;

use mcp_edge_domain::config::ConfigSource;

use crate::bindings::wasi::config::store::{self, Error};

#[derive(Default)]
pub struct WasiConfig {
    /// Every variable, or `None` where `get-all` failed (a platform that resolves variables
    /// from a secret store may fail on one of them): then each key is read on its own, so
    /// only a read of the failing key fails.
    all: OnceCell<Option<HashMap<String, String>>>,
}

fn describe(e: Error) -> String {
    match e {
        Error::Upstream(msg) => format!("upstream: {msg}"),
        Error::Io(msg) => format!("io: {msg}"),
    }
}

impl ConfigSource for WasiConfig {
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        let all = self.all.get_or_init(|| {
            store::get_all()
                .ok()
                .map(|pairs| pairs.into_iter().collect())
        });
        match all {
            Some(all) => Ok(all.get(key).cloned()),
            None => store::get(key).map_err(describe),
        }
    }
}
