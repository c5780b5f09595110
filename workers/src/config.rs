//! Configuration from Worker vars and secrets, under the same names as the Spin variables
//! (`jwt_secret`, `users`, `token_ttl_seconds`, ...). A name set as both a secret and a var
//! reads the secret.

use mcp_edge_domain::config::ConfigSource;
use worker::Env;

pub struct WorkerConfig<'a>(pub &'a Env);

impl ConfigSource for WorkerConfig<'_> {
    fn get(&self, key: &str) -> Result<Option<String>, String> {
        if let Ok(secret) = self.0.secret(key) {
            return Ok(Some(secret.to_string()));
        }
        Ok(self.0.var(key).ok().map(|v| v.to_string()))
    }
}
