//! Route matching with Spin's semantics: a route is either exact (`/login`) or a wildcard
//! (`/docs/...`, which matches `/docs` and everything below it; `/...` matches all). An
//! exact match wins over any wildcard, and a longer wildcard prefix over a shorter one.

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// The prefix without the trailing `/...` (empty for `/...`).
    Prefix(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    /// The route as written in the manifest.
    pub raw: String,
    pub component: String,
    pattern: Pattern,
}

/// What a request matched, with the values Spin passes in its `spin-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    pub component: &'a str,
    /// `spin-raw-component-route`, `spin-matched-route`: the route as written.
    pub raw_route: &'a str,
    /// `spin-component-route`: the route without its wildcard.
    pub component_route: &'a str,
    /// `spin-path-info`: the request path after the route's prefix.
    pub path_info: String,
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

fn normalize(route: &str) -> String {
    let trimmed = route.trim_end_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else if trimmed.starts_with('/') {
        trimmed.to_owned()
    } else {
        format!("/{trimmed}")
    }
}

impl Router {
    pub fn new(routes: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut out: Vec<Route> = Vec::new();
        for (raw, component) in routes {
            let pattern = match raw.strip_suffix("/...") {
                Some(prefix) => Pattern::Prefix(normalize(prefix)),
                None if raw == "..." => Pattern::Prefix(String::new()),
                None => Pattern::Exact(match normalize(&raw) {
                    p if p.is_empty() => "/".into(),
                    p => p,
                }),
            };
            if let Some(dup) = out.iter().find(|r| r.pattern == pattern) {
                bail!(
                    "route {raw} duplicates route {} (component {})",
                    dup.raw,
                    dup.component
                );
            }
            out.push(Route {
                raw,
                component,
                pattern,
            });
        }
        Ok(Self { routes: out })
    }

    /// The routes of a manifest's HTTP triggers.
    pub fn from_manifest(manifest: &crate::manifest::Manifest) -> Result<Self> {
        Self::new(
            manifest
                .trigger
                .http
                .iter()
                .map(|t| (t.route.clone(), t.component.clone())),
        )
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn find(&self, path: &str) -> Option<RouteMatch<'_>> {
        let exact = self
            .routes
            .iter()
            .find(|r| matches!(&r.pattern, Pattern::Exact(p) if p == path));
        if let Some(route) = exact {
            return Some(RouteMatch {
                component: &route.component,
                raw_route: &route.raw,
                component_route: &route.raw,
                path_info: String::new(),
            });
        }
        self.routes
            .iter()
            .filter_map(|r| match &r.pattern {
                Pattern::Prefix(prefix)
                    if path == prefix
                        || path
                            .strip_prefix(prefix.as_str())
                            .is_some_and(|rest| rest.starts_with('/')) =>
                {
                    Some((prefix.len(), r, prefix))
                }
                _ => None,
            })
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, route, prefix)| RouteMatch {
                component: &route.component,
                raw_route: &route.raw,
                component_route: route.raw.strip_suffix("/...").unwrap_or(""),
                path_info: path[prefix.len()..].to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(
            [
                ("/login", "login"),
                ("/docs/...", "docs"),
                ("/docs/v1/special", "special"),
                ("/health/...", "health"),
                ("/docs/v1/...", "v1"),
            ]
            .map(|(r, c)| (r.to_string(), c.to_string())),
        )
        .unwrap()
    }

    #[test]
    fn exact_beats_wildcard_and_longest_prefix_wins() {
        let r = router();
        assert_eq!(r.find("/login").unwrap().component, "login");
        assert!(r.find("/login/extra").is_none());
        assert!(r.find("/loginx").is_none());
        assert_eq!(r.find("/docs/v1/special").unwrap().component, "special");
        assert_eq!(r.find("/docs/v1/other").unwrap().component, "v1");
        let m = r.find("/docs/v2/a.md").unwrap();
        assert_eq!(
            (m.component, m.path_info.as_str(), m.component_route),
            ("docs", "/v2/a.md", "/docs")
        );
        assert_eq!(r.find("/docs").unwrap().path_info, "");
        assert!(r.find("/docsx").is_none());
        assert_eq!(r.find("/health/ready").unwrap().path_info, "/ready");
        assert!(r.find("/").is_none());
    }

    #[test]
    fn catch_all_and_duplicates() {
        let r = Router::new([
            ("/...".to_string(), "all".to_string()),
            ("/a".to_string(), "a".to_string()),
        ])
        .unwrap();
        assert_eq!(r.find("/anything/at/all").unwrap().component, "all");
        assert_eq!(r.find("/").unwrap().path_info, "/");
        assert_eq!(r.find("/a").unwrap().component, "a");
        assert!(
            Router::new([
                ("/x".to_string(), "a".to_string()),
                ("/x/".to_string(), "b".to_string())
            ])
            .is_err()
        );
    }
}
