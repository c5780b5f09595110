//! Platform-neutral request and response values. Each platform adapter (a `wasi:http`
//! component, a native server, a Worker) converts to and from these, so that parsing and
//! responding are written once.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Upper-case method name.
    pub method: String,
    /// The path the endpoint routes on, percent-encoded as received: for Spin-style hosts
    /// the `spin-path-info` (the part after the matched route prefix).
    pub path: String,
    /// The raw query string, without `?`.
    pub query: Option<String>,
    /// Header names in lower case, values as raw bytes, in arrival order.
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn get(path: &str) -> Self {
        Self {
            method: "GET".into(),
            path: path.into(),
            ..Default::default()
        }
    }

    pub fn header_values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of a header, if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Refuses any method other than those listed.
    pub fn expect_method(&self, allowed: &[&str]) -> Result<(), ApiError> {
        if allowed.contains(&self.method.as_str()) {
            Ok(())
        } else {
            Err(ApiError::method_not_allowed(&allowed.join(", ")))
        }
    }

    /// Parses the body as JSON of type `T`, with 4xx answers for every way it can be wrong.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        if let Some(ct) = self.header("content-type") {
            let essence = ct.split(';').next().unwrap_or("").trim();
            let is_json = essence.eq_ignore_ascii_case("application/json")
                || (essence.len() > 5
                    && essence[essence.len() - 5..].eq_ignore_ascii_case("+json"));
            if !is_json {
                return Err(ApiError::unsupported_media_type());
            }
        } else if self.header_values("content-type").next().is_some() {
            return Err(ApiError::unsupported_media_type());
        }
        if self.body.is_empty() {
            return Err(ApiError::bad_request(
                "empty_body",
                "request body is empty; send a JSON object",
            ));
        }
        serde_json::from_slice(&self.body).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::bad_request("invalid_request", e.to_string()),
                _ => ApiError::bad_request(
                    "invalid_json",
                    format!("request body is not valid JSON: {e}"),
                ),
            }
        })
    }

    /// Query parameters, percent-decoded. A parameter given twice is refused: which one a
    /// client meant is ambiguous.
    pub fn query_params(&self) -> Result<Vec<(String, String)>, ApiError> {
        let raw = self.query.as_deref().unwrap_or("");
        let mut params: Vec<(String, String)> = Vec::new();
        for (k, v) in form_urlencoded::parse(raw.as_bytes()) {
            if params.iter().any(|(existing, _)| *existing == k) {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    format!("query parameter {k} given more than once"),
                ));
            }
            params.push((k.into_owned(), v.into_owned()));
        }
        Ok(params)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn json<T: Serialize>(status: u16, value: &T) -> Self {
        Self::try_json(status, value).unwrap_or_else(Self::from)
    }

    /// A JSON response, or the error if `value` cannot be serialised.
    pub fn try_json<T: Serialize>(status: u16, value: &T) -> Result<Self, ApiError> {
        match serde_json::to_vec(value) {
            Ok(body) => Ok(Self::new(status)
                .with_header("content-type", "application/json")
                .with_body(body)),
            Err(e) => Err(ApiError::new(500, "serialization_error", e.to_string())),
        }
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

impl From<ApiError> for Response {
    fn from(err: ApiError) -> Self {
        let mut resp = Response::new(err.status)
            .with_header("content-type", "application/json")
            .with_body(err.body());
        for (name, value) in err.headers {
            resp = resp.with_header(name, value);
        }
        resp
    }
}

/// Every response carries these, whichever runtime serves it.
pub fn with_common_headers(mut resp: Response) -> Response {
    if resp.header("x-content-type-options").is_none() {
        resp = resp.with_header("x-content-type-options", "nosniff");
    }
    if resp.header("cache-control").is_none() {
        resp = resp.with_header("cache-control", "no-store");
    }
    resp
}

/// The largest request body any runtime accepts by default (`mcp-edge --max-body-bytes`, the
/// components' own read limit, the Worker's cap).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// The `413` for a request body over `max` bytes, the same from every runtime.
pub fn body_too_large(max: usize) -> ApiError {
    ApiError::payload_too_large(format!("request body exceeds {max} bytes"))
}

/// The request id a runtime tags an answer and its logs with: the client's `x-request-id`
/// when it is 1-128 visible ASCII characters (safe to echo and to log), else a fresh one.
pub fn request_id(offered: Option<&str>) -> String {
    offered
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| {
            // From the thread's generator (seeded from the OS, reseeded as it goes): an id
            // needs uniqueness, not a system call per request.
            let mut id = [0u8; 8];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut id);
            hex::encode(id)
        })
}

/// Runs a handler and turns its error into the JSON error response.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    with_common_headers(result.unwrap_or_else(Response::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        name: String,
    }

    fn post(ct: Option<&str>, body: &[u8]) -> Request {
        let mut req = Request {
            method: "POST".into(),
            body: body.to_vec(),
            ..Default::default()
        };
        if let Some(ct) = ct {
            req.headers
                .push(("content-type".into(), ct.as_bytes().to_vec()));
        }
        req
    }

    #[test]
    fn request_ids_are_echoed_only_when_safe() {
        assert_eq!(request_id(Some("trace-123")), "trace-123");
        for unsafe_id in [
            None,
            Some(""),
            Some("a b"),
            Some("é"),
            Some(&*"x".repeat(129)),
        ] {
            let fresh = request_id(unsafe_id);
            assert_eq!(fresh.len(), 16, "{unsafe_id:?}");
            assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()));
        }
    }

    #[test]
    fn json_body_errors_are_4xx() {
        let cases: &[(Option<&str>, &[u8], u16, &str)] = &[
            (
                Some("text/plain"),
                br#"{"name":"a"}"#,
                415,
                "unsupported_media_type",
            ),
            (None, b"", 400, "empty_body"),
            (None, b"{", 400, "invalid_json"),
            (None, b"\xff\xfe", 400, "invalid_json"),
            (None, br#"{"name":5}"#, 400, "invalid_request"),
            (None, br#"[]"#, 400, "invalid_request"),
            (Some("application/json"), br#"{}"#, 400, "invalid_request"),
        ];
        for (ct, body, status, code) in cases {
            let err = post(*ct, body).json::<Body>().unwrap_err();
            assert_eq!((err.status, err.code), (*status, *code), "{ct:?} {body:?}");
        }
        assert!(
            post(Some("application/json; charset=utf-8"), br#"{"name":"a"}"#)
                .json::<Body>()
                .is_ok()
        );
        assert!(
            post(Some("application/merge+json"), br#"{"name":"a"}"#)
                .json::<Body>()
                .is_ok()
        );
    }

    #[test]
    fn deeply_nested_json_is_a_400_not_a_crash() {
        let body = "[".repeat(100_000);
        assert_eq!(
            post(None, body.as_bytes())
                .json::<Body>()
                .unwrap_err()
                .status,
            400
        );
    }

    #[test]
    fn duplicate_query_parameters_are_refused() {
        let mut req = Request::get("/");
        req.query = Some("a=1&b=%20x".into());
        assert_eq!(req.query_params().unwrap()[1], ("b".into(), " x".into()));
        req.query = Some("a=1&a=2".into());
        assert_eq!(req.query_params().unwrap_err().status, 400);
    }

    #[test]
    fn error_responses_carry_json_and_extra_headers() {
        let resp = respond(Err(ApiError::method_not_allowed("POST")));
        assert_eq!(resp.status, 405);
        assert_eq!(resp.header("allow"), Some("POST"));
        assert_eq!(resp.header("content-type"), Some("application/json"));
        assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));
    }
}
