//! Configuration through `wasi:config/store`: on Spin these are the component's variables.

use mcp_edge_domain::config::ConfigSource;

use crate::bindings::wasi::config::store::{self, Error};

pub struct WasiConfig;

impl ConfigSource for WasiConfig {
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        store::get(key).map_err(|e| match e {
            Error::Upstream(msg) => format!("upstream: {msg}"),
            Error::Io(msg) => format!("io: {msg}"),
        })
    }
}
