//! Route matching with Spin's semantics, by the crate Spin itself routes with (`routefinder`):
//! exact routes (`/login`), named segments (`/users/:id`, each given to the component as a
//! `spin-path-match-<name>` header, underscores as hyphens), and trailing wildcards
//! (`/docs/...`, which matches `/docs` and everything below it; `/...` matches all). Of the
//! routes that match, the most specific wins: exact segments over named ones over the
//! wildcard, and a longer prefix over a shorter one. A route the crate cannot parse is refused
//! when the manifest is loaded.

use anyhow::{Result, anyhow, bail};
use http::HeaderValue;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The route as written in the manifest.
    pub raw: String,
    pub component: String,
    /// `raw` and the route without its wildcard as header values, made once rather than per
    /// request (`None`: not valid in a header, so the header is left out).
    pub raw_header: Option<HeaderValue>,
    pub component_route_header: Option<HeaderValue>,
}

impl Route {
    fn new(raw: String, component: String) -> Self {
        let header = |v: &str| HeaderValue::from_str(v).ok();
        let mut route = Self {
            raw,
            component,
            raw_header: None,
            component_route_header: None,
        };
        route.raw_header = header(&route.raw);
        route.component_route_header = header(route.component_route());
        route
    }

    /// `spin-component-route`: the route without its wildcard.
    pub fn component_route(&self) -> &str {
        self.raw.strip_suffix("/...").unwrap_or(&self.raw)
    }
}

/// What a request matched, with the values Spin passes in its `spin-*` headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteMatch<'a> {
    /// The route, as written (`spin-raw-component-route`, `spin-matched-route`), and its
    /// component.
    pub route: &'a Route,
    /// The route's place in [`Router::routes`].
    pub index: usize,
    /// `spin-path-info`: the request path after the route's prefix.
    pub path_info: String,
    /// The named segments and their values: `spin-path-match-<name>`.
    pub params: Vec<(String, String)>,
}

#[derive(Debug, Default)]
pub struct Router {
    routes: Vec<Route>,
    finder: routefinder::Router<usize>,
}

/// The route with a leading and no trailing slash (`/` stays `/`).
fn normalize(route: &str) -> String {
    let absolute = if route.starts_with('/') {
        route.to_owned()
    } else {
        format!("/{route}")
    };
    match absolute.strip_suffix('/') {
        Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
        _ => absolute,
    }
}

/// The route in routefinder's syntax: Spin's `/...` wildcard is its `/*`.
fn spec(normalized: &str) -> String {
    match normalized.strip_suffix("/...") {
        Some(prefix) => format!("{prefix}/*"),
        None if normalized == "/..." => "/*".to_owned(),
        None => normalized.to_owned(),
    }
}

impl Router {
    pub fn new(routes: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut out: Vec<Route> = Vec::new();
        let mut finder = routefinder::Router::new();
        let mut seen: Vec<String> = Vec::new();
        for (raw, component) in routes {
            // Routes that differ only in how they are written (`/x` and `/x/`, `/a/...` and
            // `/a/*`) are the same route.
            let normalized = spec(&normalize(&raw));
            if let Some(at) = seen.iter().position(|s| *s == normalized) {
                bail!(
                    "route {raw} duplicates route {} (component {})",
                    out[at].raw,
                    out[at].component
                );
            }
            finder.add(normalized.as_str(), out.len()).map_err(|e| {
                anyhow!("route {raw} (component {component}) cannot be served: {e}")
            })?;
            seen.push(normalized);
            out.push(Route::new(raw, component));
        }
        Ok(Self {
            routes: out,
            finder,
        })
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
        let found = self.finder.best_match(path)?;
        let index = *found.handler();
        let route = self.routes.get(index)?;
        let captures = found.captures();
        let wildcard = route.raw.ends_with("/...");
        // As Spin: the path after the wildcard's prefix, keeping a trailing slash.
        let path_info = match captures.wildcard() {
            Some(rest) if wildcard => match (rest.is_empty(), path.ends_with('/')) {
                (true, false) => String::new(),
                (true, true) => "/".to_owned(),
                (false, false) => format!("/{rest}"),
                (false, true) => format!("/{rest}/"),
            },
            _ => String::new(),
        };
        Some(RouteMatch {
            route,
            index,
            path_info,
            params: captures
                .iter()
                .map(|(name, value)| (name.replace('_', "-"), value.to_owned()))
                .collect(),
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
        assert_eq!(r.find("/login").unwrap().route.component, "login");
        assert!(r.find("/login/extra").is_none());
        assert!(r.find("/loginx").is_none());
        assert_eq!(
            r.find("/docs/v1/special").unwrap().route.component,
            "special"
        );
        assert_eq!(r.find("/docs/v1/other").unwrap().route.component, "v1");
        let m = r.find("/docs/v2/a.md").unwrap();
        assert_eq!(
            (
                m.route.component.as_str(),
                m.path_info.as_str(),
                m.route.component_route()
            ),
            ("docs", "/v2/a.md", "/docs")
        );
        assert_eq!(r.find("/docs").unwrap().path_info, "");
        assert!(r.find("/docsx").is_none());
        assert_eq!(r.find("/health/ready").unwrap().path_info, "/ready");
        assert!(r.find("/").is_none());
    }

    /// The shape Spin gives `/:path_segment/:path_end/...` (from Spin's own routing test).
    #[test]
    fn named_segments_are_captured_as_spin_does() {
        let r = Router::new(
            [
                ("/:path_segment/:path_end/...", "params"),
                ("/users/:id", "user"),
                ("/users/me", "me"),
            ]
            .map(|(r, c)| (r.to_string(), c.to_string())),
        )
        .unwrap();
        let m = r.find("/path/end/rest").unwrap();
        assert_eq!(
            (
                m.route.component.as_str(),
                m.route.component_route(),
                m.path_info.as_str()
            ),
            ("params", "/:path_segment/:path_end", "/rest")
        );
        assert_eq!(
            m.params,
            vec![
                ("path-segment".to_string(), "path".to_string()),
                ("path-end".to_string(), "end".to_string())
            ]
        );
        let user = r.find("/users/42").unwrap();
        assert_eq!(
            (user.route.component.as_str(), user.params.clone()),
            ("user", vec![("id".to_string(), "42".to_string())])
        );
        // An exact segment beats a named one.
        assert_eq!(r.find("/users/me").unwrap().route.component, "me");
        assert!(r.find("/users").is_none());
    }

    #[test]
    fn catch_all_and_duplicates() {
        let r = Router::new([
            ("/...".to_string(), "all".to_string()),
            ("/a".to_string(), "a".to_string()),
        ])
        .unwrap();
        assert_eq!(r.find("/anything/at/all").unwrap().route.component, "all");
        assert_eq!(r.find("/").unwrap().path_info, "/");
        // As on Spin, a trailing slash does not change which route matches.
        assert_eq!(r.find("/a/").unwrap().route.component, "a");
        assert_eq!(r.find("/a").unwrap().route.component, "a");
        assert!(
            Router::new([
                ("/x".to_string(), "a".to_string()),
                ("/x/".to_string(), "b".to_string())
            ])
            .is_err()
        );
    }
}
