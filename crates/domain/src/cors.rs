//! Cross-origin resource sharing, off unless `cors_allowed_origins` lists origins (or `*`).
//! Browsers on a listed origin get `Access-Control-Allow-Origin` on every answer and a `204`
//! to their preflight; everyone else gets no CORS headers at all, so the browser refuses.

use crate::config::{self, ConfigSource};
use crate::error::ApiError;
use crate::http::{Request, Response};

/// Request headers a browser may send cross-origin.
const ALLOW_HEADERS: &str = "authorization, content-type, if-none-match";
/// Response headers a cross-origin script may read.
const EXPOSE_HEADERS: &str = "etag, retry-after, x-request-id";
/// How long a browser may cache a preflight answer.
const MAX_AGE_SECONDS: &str = "600";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    Off,
    Any,
    Origins(Vec<String>),
}

impl Cors {
    pub fn from_config(src: &dyn ConfigSource) -> Result<Self, ApiError> {
        let raw = src
            .get(config::keys::CORS_ALLOWED_ORIGINS)
            .map_err(|e| {
                ApiError::misconfigured(format!(
                    "configuration variable {} could not be read: {e}",
                    config::keys::CORS_ALLOWED_ORIGINS
                ))
            })?
            .unwrap_or_default();
        let origins: Vec<String> = raw
            .split(',')
            .map(|o| o.trim().trim_end_matches('/').to_owned())
            .filter(|o| !o.is_empty())
            .collect();
        if origins.is_empty() {
            Ok(Cors::Off)
        } else if origins.iter().any(|o| o == "*") {
            Ok(Cors::Any)
        } else {
            Ok(Cors::Origins(origins))
        }
    }

    /// The `Access-Control-Allow-Origin` value for this request, if its origin is allowed.
    fn allowed(&self, req: &Request) -> Option<String> {
        let origin = req.header("origin")?;
        match self {
            Cors::Off => None,
            Cors::Any => Some("*".to_owned()),
            Cors::Origins(list) => list
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
                .then(|| origin.to_owned()),
        }
    }

    /// The answer to a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) from an
    /// allowed origin; `None` for every other request.
    pub fn preflight(&self, req: &Request, methods: &[&str]) -> Option<Response> {
        if req.method != "OPTIONS" || req.header("access-control-request-method").is_none() {
            return None;
        }
        let origin = self.allowed(req)?;
        Some(
            Response::new(204)
                .with_header("access-control-allow-origin", origin)
                .with_header("access-control-allow-methods", methods.join(", "))
                .with_header("access-control-allow-headers", ALLOW_HEADERS)
                .with_header("access-control-max-age", MAX_AGE_SECONDS)
                .with_header("vary", "origin")
                .with_header("cache-control", "no-store"),
        )
    }

    /// Adds the CORS headers an allowed origin's response needs.
    pub fn decorate(&self, req: &Request, mut resp: Response) -> Response {
        if *self != Cors::Off {
            // Caches must keep answers for different origins apart.
            match resp
                .headers
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case("vary"))
            {
                Some((_, v)) if !v.to_ascii_lowercase().contains("origin") => {
                    v.push_str(", origin")
                }
                Some(_) => {}
                None => resp = resp.with_header("vary", "origin"),
            }
        }
        match self.allowed(req) {
            Some(origin) => resp
                .with_header("access-control-allow-origin", origin)
                .with_header("access-control-expose-headers", EXPOSE_HEADERS),
            None => resp,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn cors(value: &str) -> Cors {
        let src: HashMap<String, String> = [(
            config::keys::CORS_ALLOWED_ORIGINS.to_owned(),
            value.to_owned(),
        )]
        .into();
        Cors::from_config(&src).unwrap()
    }

    fn from(origin: &str, method: &str) -> Request {
        Request {
            method: method.into(),
            headers: vec![
                ("origin".into(), origin.as_bytes().to_vec()),
                ("access-control-request-method".into(), b"POST".to_vec()),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn off_by_default() {
        let off = Cors::from_config(&HashMap::<String, String>::new()).unwrap();
        assert_eq!(off, Cors::Off);
        let req = from("https://app.example", "OPTIONS");
        assert!(off.preflight(&req, &["POST"]).is_none());
        let resp = off.decorate(&req, Response::new(200));
        assert!(resp.header("access-control-allow-origin").is_none());
    }

    #[test]
    fn listed_origins_only() {
        let c = cors("https://app.example, https://other.example/");
        let pre = c
            .preflight(&from("https://app.example", "OPTIONS"), &["POST"])
            .unwrap();
        assert_eq!(pre.status, 204);
        assert_eq!(
            pre.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        assert_eq!(pre.header("access-control-allow-methods"), Some("POST"));
        assert!(
            c.preflight(&from("https://evil.example", "OPTIONS"), &["POST"])
                .is_none()
        );
        let resp = c.decorate(&from("https://other.example", "POST"), Response::new(200));
        assert_eq!(
            resp.header("access-control-allow-origin"),
            Some("https://other.example")
        );
        assert_eq!(resp.header("vary"), Some("origin"));
        assert_eq!(
            cors("*")
                .decorate(&from("x", "GET"), Response::new(200))
                .header("access-control-allow-origin"),
            Some("*")
        );
    }
}
