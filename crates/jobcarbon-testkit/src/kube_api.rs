//! A fake Kubernetes API server for tests: a local HTTP/1.1 server on a free loopback port that
//! serves scripted **real Kubernetes JSON** — lists with `metadata.resourceVersion`, chunked watch
//! streams of JSON lines (including `BOOKMARK` and `ERROR` 410 Gone), 404 `Status` objects for
//! resources that are not served (an absent CRD), and server-side-apply `PATCH`es it records.
//!
//! Point a kube `Client` at [`FakeKubeApi::url`] with a plain `http://` URL:
//!
//! ```text
//! let api = FakeKubeApi::start().await?;
//! api.push_list("/api/v1/pods", list("v1", "PodList", "100", vec![pod_json]));
//! api.push_watch("/api/v1/pods", WatchScript::hang(vec![event("ADDED", &pod_json)]));
//! let config = kube::Config::new(api.url().parse()?);
//! let client = kube::Client::try_from(config)?;
//! ```
//!
//! Scripting, per collection path (`/api/v1/pods`, `/apis/jobcarbon.io/v1alpha1/softwareproducts`):
//! - each list request (`GET` without `watch`) takes the next pushed list body; when none is
//!   left the last one is served again (a quiet cluster); with `limit` (kube-runtime's watcher
//!   asks for pages of 500) the list is served in pages as the API server serves them:
//!   `metadata.continue` (the server's token format) and `remainingItemCount` while items
//!   remain, the next page for `continue=<token>`, 410 `Expired` for a token from an older
//!   list, 400 for `continue` with `resourceVersion`;
//! - each watch request (`?watch=true`) takes the next pushed [`WatchScript`] and streams its lines;
//!   the script then closes the stream or keeps it open; with no script left the stream stays
//!   open and silent (as a real server does until `timeoutSeconds`);
//! - a path with nothing pushed answers 404 `NotFound`, exactly as for a CRD that is not installed;
//! - `GET` and `PATCH` of `<collection>/<name>[/status]` find the object in the last list served;
//!   a `PATCH` is recorded with its query and body and answered with the object, status applied.
//!
//! - `POST` to a collection stores an object (a Lease); `GET`/`PUT` of `<collection>/<name>`
//!   then read it and replace it with the API server's optimistic concurrency (`PUT` at a stale
//!   `metadata.resourceVersion` is 409 `Conflict`; a second create is 409 `AlreadyExists`).
//!
//! - Metadata-only requests are answered as the API server answers them: a list or `GET` with
//!   `Accept: application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1` (or
//!   `as=PartialObjectMetadata`) gets a `meta.k8s.io/v1` `PartialObjectMetadataList` /
//!   `PartialObjectMetadata` built from the scripted full objects, and a watch with
//!   `as=PartialObjectMetadata` streams events whose objects are `PartialObjectMetadata`
//!   (`ERROR` `Status` objects pass unchanged). Script full objects; the fake strips them.
//!
//! - Access reviews, as kube-rbac-proxy and the ledger's `--auth` send them:
//!   `POST /apis/authentication.k8s.io/v1/tokenreviews` authenticates the tokens given to
//!   [`FakeKubeApi::add_token`] (any other gets `status.error`, `authenticated` absent; an empty
//!   `spec.token` is 400 `BadRequest`), and
//!   `POST /apis/authorization.k8s.io/v1/subjectaccessreviews` evaluates the RBAC rules given to
//!   [`FakeKubeApi::allow_non_resource`] on `spec.nonResourceAttributes` the way RBAC matches
//!   `nonResourceURLs` (exact, or a prefix ending in `*`) — a spec with neither user nor groups,
//!   or without exactly one of `resourceAttributes` / `nonResourceAttributes`, is 422 `Invalid`.
//!   Both answer 201 with the review echoed and its `status` filled in.
//!
//! Every request is recorded ([`FakeKubeApi::requests`]).

use bytes::Bytes;
use futures::StreamExt;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type Body = BoxBody<Bytes, Infallible>;

/// How a scripted watch stream ends after its lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchEnd {
    /// Close the response (the client re-watches from its last resourceVersion).
    Close,
    /// Keep the stream open and silent.
    Hang,
}

/// One watch response: raw JSON lines (use [`event`], [`bookmark`], [`expired`], or any string
/// for a malformed line) and how it ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchScript {
    /// Raw JSON lines, sent one per line.
    pub lines: Vec<String>,
    /// What happens after the last line.
    pub end: WatchEnd,
}

impl WatchScript {
    /// A response that sends `lines` and closes (the client re-watches).
    pub fn close(lines: Vec<String>) -> Self {
        Self {
            lines,
            end: WatchEnd::Close,
        }
    }
    /// A response that sends `lines` and stays open and silent.
    pub fn hang(lines: Vec<String>) -> Self {
        Self {
            lines,
            end: WatchEnd::Hang,
        }
    }
}

/// A request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path, without the query.
    pub path: String,
    /// Raw query string (see [`RecordedRequest::has_query`]).
    pub query: String,
    /// The `Content-Type` header (patches say which patch type).
    pub content_type: Option<String>,
    /// The `Accept` header (metadata-only requests ask for `as=PartialObjectMetadata…`).
    pub accept: Option<String>,
    /// The request body as JSON (`Value::Null` when empty or not JSON).
    pub body: Value,
}

impl RecordedRequest {
    /// Whether the query string has `key=value`.
    pub fn has_query(&self, key: &str, value: &str) -> bool {
        self.query
            .split('&')
            .any(|pair| pair.split_once('=') == Some((key, value)))
    }
}

#[derive(Default)]
struct Collection {
    lists: VecDeque<Value>,
    last_list: Option<Value>,
    watches: VecDeque<WatchScript>,
}

#[derive(Default)]
struct State {
    collections: HashMap<String, Collection>,
    requests: Vec<RecordedRequest>,
    /// Objects created with `POST` (Leases), by object path, with the server's
    /// optimistic concurrency: `PUT` must carry the stored `metadata.resourceVersion`.
    objects: HashMap<String, Value>,
    resource_version: u64,
    /// Bearer tokens the TokenReview endpoint accepts: token → `status.user`.
    tokens: HashMap<String, Value>,
    /// RBAC rules on non-resource URLs: (user or group, URL pattern, verb).
    non_resource_rules: Vec<(String, String, String)>,
}

/// The running server. Dropping it stops the server.
pub struct FakeKubeApi {
    url: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FakeKubeApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FakeKubeApi {
    /// Start on `127.0.0.1` with a free port. Needs a tokio runtime.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State::default()));
        let served = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = served.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| handle(state.clone(), req));
                    if let Err(error) = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(%error, "fake kube api connection ended");
                    }
                });
            }
        });
        Ok(Self { url, state, task })
    }

    /// `http://127.0.0.1:PORT`, for `kube::Config::new`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Queue a list body for `collection` (e.g. `/api/v1/pods`).
    pub fn push_list(&self, collection: &str, body: Value) {
        lock(&self.state)
            .collections
            .entry(collection.to_owned())
            .or_default()
            .lists
            .push_back(body);
    }

    /// Queue a watch response for `collection`.
    pub fn push_watch(&self, collection: &str, script: WatchScript) {
        lock(&self.state)
            .collections
            .entry(collection.to_owned())
            .or_default()
            .watches
            .push_back(script);
    }

    /// Accept `token` in TokenReviews as `username` in `groups` (a service account's token:
    /// `system:serviceaccount:<ns>:<name>`, groups `system:serviceaccounts`, …).
    pub fn add_token(&self, token: &str, username: &str, groups: &[&str]) {
        let user = json!({
            "username": username,
            "uid": format!("uid-{username}"),
            "groups": groups,
        });
        lock(&self.state).tokens.insert(token.to_owned(), user);
    }

    /// An RBAC rule, as a ClusterRole bound to `subject` (a user or a group) grants it:
    /// `nonResourceURLs: [url]`, `verbs: [verb]` (`*` matches any verb; a URL ending in `*`
    /// matches that prefix).
    pub fn allow_non_resource(&self, subject: &str, url: &str, verb: &str) {
        lock(&self.state).non_resource_rules.push((
            subject.to_owned(),
            url.to_owned(),
            verb.to_owned(),
        ));
    }

    /// Requests to `path` so far (the review endpoints: how many reviews reached the server).
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.state).requests.clone()
    }

    /// The `PATCH` requests received so far.
    pub fn patches(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect()
    }

    /// The list (non-watch GET) requests `collection` has answered, pages included.
    pub fn list_requests(&self, collection: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path == collection && !is_watch(&r.query))
            .collect()
    }

    /// How many list (non-watch GET) requests `collection` has answered.
    pub fn list_count(&self, collection: &str) -> usize {
        self.list_requests(collection).len()
    }

    /// How many watch requests `collection` has received.
    pub fn watch_count(&self, collection: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path == collection && is_watch(&r.query))
            .count()
    }
}

/// A list body: `{"apiVersion", "kind", "metadata": {"resourceVersion"}, "items"}`.
pub fn list(api_version: &str, kind: &str, resource_version: &str, items: Vec<Value>) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"resourceVersion": resource_version},
        "items": items,
    })
}

/// A watch line `{"type": TYPE, "object": OBJECT}` (`ADDED`, `MODIFIED`, `DELETED`).
pub fn event(kind: &str, object: &Value) -> String {
    json!({"type": kind, "object": object}).to_string()
}

/// A `BOOKMARK` line: an object of `kind` carrying only `metadata.resourceVersion`.
pub fn bookmark(api_version: &str, kind: &str, resource_version: &str) -> String {
    json!({"type": "BOOKMARK", "object": {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": {"resourceVersion": resource_version, "creationTimestamp": null},
    }})
    .to_string()
}

/// The `ERROR` line an API server sends when the watched resourceVersion was compacted.
pub fn expired(message: &str) -> String {
    json!({"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": "Expired", "code": 410,
    }})
    .to_string()
}

/// A `Status` failure object as the API server returns it.
pub fn status_failure(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "details": {}, "code": code,
    })
}

/// What a request's `Accept` header asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Full,
    /// `as=PartialObjectMetadata` or `as=PartialObjectMetadataList` (`meta.k8s.io/v1`).
    Metadata,
}

impl Shape {
    fn of(accept: Option<&str>) -> Self {
        match accept {
            Some(a) if a.contains("as=PartialObjectMetadata") => Shape::Metadata,
            _ => Shape::Full,
        }
    }
}

/// An object as the API server returns it for a metadata-only request.
pub(crate) fn partial_object_metadata(object: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": object.get("metadata").cloned().unwrap_or_else(|| json!({})),
    })
}

/// A list as the API server returns it for a metadata-only list request.
pub(crate) fn partial_object_metadata_list(list: &Value) -> Value {
    let items: Vec<Value> = list
        .get("items")
        .and_then(Value::as_array)
        .map(|items| items.iter().map(partial_object_metadata).collect())
        .unwrap_or_default();
    json!({
        "kind": "PartialObjectMetadataList",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list.get("metadata").cloned().unwrap_or_else(|| json!({})),
        "items": items,
    })
}

/// A watch line for a metadata-only watch: the event's object reduced to its metadata,
/// `ERROR` `Status` objects and lines that are not JSON left as they are.
fn partial_watch_line(line: String) -> String {
    let Ok(mut event) = serde_json::from_str::<Value>(&line) else {
        return line;
    };
    let is_status = event.pointer("/object/kind").and_then(Value::as_str) == Some("Status");
    match event.get_mut("object") {
        Some(object) if !is_status => {
            *object = partial_object_metadata(object);
            event.to_string()
        }
        _ => line,
    }
}

fn shaped(shape: Shape, body: Value, list: bool) -> Value {
    match (shape, list) {
        (Shape::Full, _) => body,
        (Shape::Metadata, true) => partial_object_metadata_list(&body),
        (Shape::Metadata, false) => partial_object_metadata(&body),
    }
}

/// `POST <collection>` creates (409 `AlreadyExists` if present), `GET <collection>/<name>`
/// reads, `PUT <collection>/<name>` replaces only at the stored resourceVersion (409 `Conflict`
/// otherwise), as the API server does. `None`: not a stored object, use the scripts.
fn stored_object(
    state: &mut State,
    method: &Method,
    path: &str,
    body: &Value,
) -> Option<Response<Body>> {
    let conflict = |reason: &str, message: String| {
        json_response(StatusCode::CONFLICT, &status_failure(409, reason, &message))
    };
    match *method {
        Method::POST => {
            let name = body.pointer("/metadata/name")?.as_str()?;
            let object_path = format!("{path}/{name}");
            if state.objects.contains_key(&object_path) {
                return Some(conflict(
                    "AlreadyExists",
                    format!("{object_path} already exists"),
                ));
            }
            state.resource_version += 1;
            let mut object = body.clone();
            object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
            state.objects.insert(object_path, object.clone());
            Some(json_response(StatusCode::CREATED, &object))
        }
        Method::GET => state
            .objects
            .get(path)
            .map(|o| json_response(StatusCode::OK, o)),
        Method::PUT => {
            let stored = state.objects.get(path)?;
            let sent = body.pointer("/metadata/resourceVersion");
            if sent != stored.pointer("/metadata/resourceVersion") {
                return Some(conflict(
                    "Conflict",
                    format!(
                        "Operation cannot be fulfilled on {path}: the object has been modified; please apply your changes to the latest version and try again"
                    ),
                ));
            }
            state.resource_version += 1;
            let mut object = body.clone();
            object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
            state.objects.insert(path.to_owned(), object.clone());
            Some(json_response(StatusCode::OK, &object))
        }
        _ => None,
    }
}

/// Path of the TokenReview collection.
pub const TOKEN_REVIEWS: &str = "/apis/authentication.k8s.io/v1/tokenreviews";
/// Path of the SubjectAccessReview collection.
pub const SUBJECT_ACCESS_REVIEWS: &str = "/apis/authorization.k8s.io/v1/subjectaccessreviews";

/// A `TokenReview` or `SubjectAccessReview` create, answered as the API server answers it;
/// `None` for any other path.
fn access_review(state: &State, path: &str, body: &Value) -> Option<Response<Body>> {
    let (status, kind) = match path {
        TOKEN_REVIEWS => (token_review(state, body), "TokenReview"),
        SUBJECT_ACCESS_REVIEWS => (subject_access_review(state, body), "SubjectAccessReview"),
        _ => return None,
    };
    Some(match status {
        Ok(status) => {
            let mut review = json!({
                "kind": kind,
                "apiVersion": body.get("apiVersion").cloned().unwrap_or(Value::Null),
                "metadata": {"creationTimestamp": null},
                "spec": body.get("spec").cloned().unwrap_or_else(|| json!({})),
            });
            review["status"] = status;
            json_response(StatusCode::CREATED, &review)
        }
        Err((code, status)) => json_response(code, &status),
    })
}

fn token_review(state: &State, body: &Value) -> Result<Value, (StatusCode, Value)> {
    let token = body
        .pointer("/spec/token")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if token.is_empty() {
        let message = "token is required for TokenReview in authentication";
        return Err((
            StatusCode::BAD_REQUEST,
            status_failure(400, "BadRequest", message),
        ));
    }
    Ok(match state.tokens.get(token) {
        Some(user) => json!({"authenticated": true, "user": user}),
        // `authenticated: false` is omitted, `user` is an empty struct.
        None => json!({"user": {}, "error": "[invalid bearer token, token lookup failed]"}),
    })
}

fn subject_access_review(state: &State, body: &Value) -> Result<Value, (StatusCode, Value)> {
    let spec = body.get("spec").cloned().unwrap_or_else(|| json!({}));
    let user = spec.get("user").and_then(Value::as_str).unwrap_or_default();
    let groups: Vec<&str> = spec
        .get("groups")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let invalid = |field: &str, message: &str| {
        let text = format!(
            "SubjectAccessReview.authorization.k8s.io \"\" is invalid: {field}: Invalid value: {message}"
        );
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            status_failure(422, "Invalid", &text),
        )
    };
    if user.is_empty() && groups.is_empty() {
        return Err(invalid(
            "spec.user",
            "\"\": at least one of user or group must be specified",
        ));
    }
    let (Some(attributes), None) = (
        spec.get("nonResourceAttributes"),
        spec.get("resourceAttributes"),
    ) else {
        // The fake grants no resource rules; either both or neither is invalid.
        if spec.get("resourceAttributes").is_some() && spec.get("nonResourceAttributes").is_none() {
            return Ok(json!({"allowed": false}));
        }
        return Err(invalid(
            "spec.resourceAttributes",
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        ));
    };
    let path = attributes
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let verb = attributes
        .get("verb")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let granted = state
        .non_resource_rules
        .iter()
        .find(|(subject, url, rule_verb)| {
            (subject == user || groups.contains(&subject.as_str()))
                && (rule_verb == "*" || rule_verb == verb)
                && url_matches(url, path)
        });
    Ok(match granted {
        Some((subject, url, _)) => json!({
            "allowed": true,
            "reason": format!("RBAC: allowed by ClusterRoleBinding \"test\" of ClusterRole \"{url}\" to {subject:?}"),
        }),
        // RBAC denies by having no rule: `allowed: false` and no reason.
        None => json!({"allowed": false}),
    })
}

/// RBAC's `nonResourceURLs` match: `*` is everything, `prefix*` a prefix, anything else exact.
fn url_matches(rule: &str, path: &str) -> bool {
    match rule.strip_suffix('*') {
        Some(prefix) => path.starts_with(prefix),
        None => rule == path,
    }
}

fn is_watch(query: &str) -> bool {
    query
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1")
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

fn not_found(what: &str) -> Response<Body> {
    json_response(
        StatusCode::NOT_FOUND,
        &status_failure(404, "NotFound", &format!("{what} not found")),
    )
}

async fn handle(
    state: Arc<Mutex<State>>,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let shape = Shape::of(accept.as_deref());
    let bytes = match req.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let mut state = lock(&state);
    state.requests.push(RecordedRequest {
        method: method.to_string(),
        path: path.clone(),
        query: query.clone(),
        content_type,
        accept,
        body: body.clone(),
    });

    if method == Method::POST
        && let Some(response) = access_review(&state, &path, &body)
    {
        return Ok(response);
    }
    if let Some(response) = stored_object(&mut state, &method, &path, &body) {
        return Ok(response);
    }
    if let Some(collection) = state.collections.get_mut(&path) {
        return Ok(collection_response(
            collection, &method, &query, shape, &path,
        ));
    }
    Ok(object_response(&state, method, &path, &body, shape))
}

fn method_not_allowed() -> Response<Body> {
    json_response(
        StatusCode::METHOD_NOT_ALLOWED,
        &status_failure(405, "MethodNotAllowed", "method not allowed"),
    )
}

/// A list (the next scripted one, else the last again) or a watch of a collection.
fn collection_response(
    collection: &mut Collection,
    method: &Method,
    query: &str,
    shape: Shape,
    path: &str,
) -> Response<Body> {
    if method != Method::GET {
        return method_not_allowed();
    }
    if is_watch(query) {
        let script = collection
            .watches
            .pop_front()
            .unwrap_or_else(|| WatchScript::hang(Vec::new()));
        return watch_response(script, shape);
    }
    let paging = match Paging::of(query) {
        Ok(paging) => paging,
        Err(message) => return bad_request(&message),
    };
    // Later pages continue the snapshot the first page started; only a first page moves on.
    if paging.token.is_none()
        && let Some(next) = collection.lists.pop_front()
    {
        collection.last_list = Some(next);
    }
    let Some(list) = collection.last_list.as_ref() else {
        return not_found(path);
    };
    match page_of(list, &paging) {
        Ok(page) => json_response(StatusCode::OK, &shaped(shape, page, true)),
        Err(error) => page_error(error),
    }
}

fn bad_request(message: &str) -> Response<Body> {
    json_response(
        StatusCode::BAD_REQUEST,
        &status_failure(400, "BadRequest", message),
    )
}

/// A list request's `limit`, `continue` and `resourceVersion` parameters.
struct Paging {
    limit: Option<usize>,
    token: Option<String>,
}

impl Paging {
    fn of(query: &str) -> Result<Self, String> {
        let mut paging = Paging {
            limit: None,
            token: None,
        };
        let mut resource_version = false;
        for (key, value) in query.split('&').filter_map(|pair| pair.split_once('=')) {
            match key {
                "limit" => {
                    let limit: i64 = value
                        .parse()
                        .map_err(|_| format!("invalid limit {value:?}"))?;
                    paging.limit = usize::try_from(limit).ok().filter(|l| *l > 0);
                }
                "continue" if !value.is_empty() => paging.token = Some(value.to_owned()),
                "resourceVersion" if !value.is_empty() => resource_version = true,
                _ => {}
            }
        }
        if paging.token.is_some() && resource_version {
            return Err("specifying resource version is not allowed when using continue".into());
        }
        Ok(paging)
    }
}

/// `(namespace, name)` of a listed object: its order key in the API server's storage.
fn key_parts(item: &Value) -> (Option<&str>, &str) {
    let name = item.pointer("/metadata/name").and_then(Value::as_str);
    let namespace = item.pointer("/metadata/namespace").and_then(Value::as_str);
    (namespace, name.unwrap_or_default())
}

/// `namespace/name` (or `name`), the storage key a continue token carries.
fn storage_key(item: &Value) -> String {
    match key_parts(item) {
        (Some(namespace), name) => format!("{namespace}/{name}"),
        (None, name) => name.to_owned(),
    }
}

/// [`storage_key`]` == key`, without building the key for every item of a page search.
fn has_storage_key(item: &Value, key: &str) -> bool {
    match (key_parts(item), key.split_once('/')) {
        ((Some(namespace), name), Some((key_namespace, key_name))) => {
            namespace == key_namespace && name == key_name
        }
        ((None, name), None) => name == key,
        _ => false,
    }
}

/// The API server's continue token: unpadded URL-safe base64 of
/// `{"v":"meta.k8s.io/v1","rv":<list resourceVersion>,"start":"<last key>\u0000"}`.
fn continue_token(resource_version: i64, last_key: &str) -> String {
    use base64::Engine as _;
    let token =
        json!({"v": "meta.k8s.io/v1", "rv": resource_version, "start": format!("{last_key}\u{0}")});
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token.to_string())
}

/// The token's resourceVersion and the key after which the page starts.
fn read_token(token: &str) -> Option<(i64, String)> {
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()?;
    let token: Value = serde_json::from_slice(&bytes).ok()?;
    if token.get("v")?.as_str()? != "meta.k8s.io/v1" {
        return None;
    }
    let start = token.get("start")?.as_str()?.strip_suffix('\u{0}')?;
    Some((token.get("rv")?.as_i64()?, start.to_owned()))
}

/// The whole list without `limit`; with it, the page the token points at, carrying
/// `metadata.continue` and `metadata.remainingItemCount` while items remain. A token from an
/// earlier snapshot (a newer list was scripted since) is 410 `Expired`, as after compaction.
fn page_of(list: &Value, paging: &Paging) -> Result<Value, PageError> {
    // `continue` without `limit` is the rest of the list.
    let limit = match (paging.limit, &paging.token) {
        (None, None) => return Ok(list.clone()),
        (limit, _) => limit.unwrap_or(usize::MAX),
    };
    let resource_version: i64 = list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|rv| rv.parse().ok())
        .unwrap_or_default();
    let items: &[Value] = list
        .get("items")
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice);
    let start = match &paging.token {
        None => 0,
        Some(token) => {
            let Some((rv, after)) = read_token(token) else {
                return Err(PageError::InvalidToken(token.clone()));
            };
            let position = items.iter().position(|i| has_storage_key(i, &after));
            match position {
                Some(position) if rv == resource_version => position + 1,
                _ => return Err(PageError::Expired),
            }
        }
    };
    let end = start.saturating_add(limit).min(items.len());
    let mut metadata = json!({"resourceVersion": resource_version.to_string()});
    if end < items.len()
        && let Some(last) = items.get(end.saturating_sub(1))
    {
        metadata["continue"] = json!(continue_token(resource_version, &storage_key(last)));
        metadata["remainingItemCount"] = json!(items.len() - end);
    }
    let mut page =
        json!({"metadata": metadata, "items": items.get(start..end).unwrap_or_default()});
    for field in ["apiVersion", "kind"] {
        if let Some(value) = list.get(field) {
            page[field] = value.clone();
        }
    }
    Ok(page)
}

/// Why a page cannot be served.
enum PageError {
    InvalidToken(String),
    Expired,
}

fn page_error(error: PageError) -> Response<Body> {
    let token = match error {
        PageError::InvalidToken(token) => token,
        PageError::Expired => return expired_continue(),
    };
    bad_request(&format!("continue key is not valid: {token}"))
}

fn expired_continue() -> Response<Body> {
    json_response(
        StatusCode::GONE,
        &status_failure(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
        ),
    )
}

/// `<collection>/<name>` or `<collection>/<name>/status`, served from the collection's last list.
fn object_response(
    state: &State,
    method: Method,
    path: &str,
    body: &Value,
    shape: Shape,
) -> Response<Body> {
    let (object_path, subresource) = match path.strip_suffix("/status") {
        Some(p) => (p, Some("status")),
        None => (path, None),
    };
    let Some((collection_path, name)) = object_path.rsplit_once('/') else {
        return not_found(path);
    };
    let object = state
        .collections
        .get(collection_path)
        .and_then(|c| c.last_list.as_ref())
        .and_then(|l| l.get("items"))
        .and_then(Value::as_array)
        .and_then(|items| {
            items
                .iter()
                .find(|o| o.pointer("/metadata/name").and_then(Value::as_str) == Some(name))
        })
        .cloned();
    let Some(mut object) = object else {
        return not_found(path);
    };
    match (method, subresource) {
        (Method::GET, _) => json_response(StatusCode::OK, &shaped(shape, object, false)),
        (Method::PATCH, Some("status")) => {
            if let (Some(obj), Some(status)) = (object.as_object_mut(), body.get("status")) {
                obj.insert("status".to_owned(), status.clone());
            }
            json_response(StatusCode::OK, &object)
        }
        _ => method_not_allowed(),
    }
}

fn watch_response(script: WatchScript, shape: Shape) -> Response<Body> {
    let lines: Vec<String> = match shape {
        Shape::Full => script.lines,
        Shape::Metadata => script.lines.into_iter().map(partial_watch_line).collect(),
    };
    let lines = futures::stream::iter(lines)
        .map(|line| Ok::<_, Infallible>(Frame::data(Bytes::from(format!("{line}\n")))));
    let body: Body = match script.end {
        WatchEnd::Close => BodyExt::boxed(StreamBody::new(lines)),
        WatchEnd::Hang => BodyExt::boxed(StreamBody::new(lines.chain(futures::stream::pending()))),
    };
    let mut response = Response::new(body);
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}

/// Writes a kubeconfig at `dir/kubeconfig` whose one cluster is `server` (no credentials), for
/// a `jobcarbon` process started by a test.
pub fn write_kubeconfig(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: u\ncurrent-context: c\nusers:\n- name: u\n  user: {{}}\n"),
    )
    .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_only_answers_have_the_api_server_shape() {
        let job = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "j", "namespace": "ml", "resourceVersion": "7"},
            "spec": {"template": {}}, "status": {"active": 1}});
        let listed =
            partial_object_metadata_list(&list("batch/v1", "JobList", "9", vec![job.clone()]));
        assert_eq!(
            listed,
            json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"resourceVersion": "9"},
                   "items": [{"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                              "metadata": {"name": "j", "namespace": "ml", "resourceVersion": "7"}}]})
        );
        let line: Value =
            serde_json::from_str(&partial_watch_line(event("ADDED", &job))).unwrap_or_default();
        assert_eq!(line["type"], "ADDED");
        assert_eq!(line["object"]["kind"], "PartialObjectMetadata");
        assert!(line["object"].get("spec").is_none());
        let gone = expired("too old resource version");
        assert_eq!(partial_watch_line(gone.clone()), gone);
        assert_eq!(partial_watch_line("{not json".into()), "{not json");
        assert_eq!(Shape::of(Some("application/json")), Shape::Full);
        assert_eq!(Shape::of(Some(crate_metadata_mime())), Shape::Metadata);
    }

    #[test]
    fn access_reviews_are_validated_and_answered_as_the_api_server_does() {
        let mut state = State::default();
        state
            .tokens
            .insert("t".into(), json!({"username": "u", "groups": ["g"]}));
        state
            .non_resource_rules
            .push(("g".into(), "/api/*".into(), "get".into()));
        let review = |token: &str| json!({"spec": {"token": token}});
        let empty = token_review(&state, &review(""))
            .err()
            .map(|(code, _)| code);
        assert_eq!(empty, Some(StatusCode::BAD_REQUEST));
        let unknown = token_review(&state, &review("x")).unwrap_or_default();
        assert_eq!(unknown.get("authenticated"), None);
        assert_eq!(unknown["user"], json!({}));
        assert_eq!(
            token_review(&state, &review("t")).unwrap_or_default()["authenticated"],
            true
        );

        let sar = |spec: Value| subject_access_review(&state, &json!({"spec": spec}));
        let nobody = sar(json!({"nonResourceAttributes": {"path": "/metrics", "verb": "get"}}));
        assert_eq!(
            nobody.err().map(|(c, _)| c),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        let neither = sar(json!({"user": "u"}));
        assert_eq!(
            neither.err().map(|(c, _)| c),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        let allowed = |path: &str, verb: &str| {
            sar(json!({"user": "u", "groups": ["g"],
                       "nonResourceAttributes": {"path": path, "verb": verb}}))
            .unwrap_or_default()["allowed"]
                == true
        };
        assert!(allowed("/api/v1/products", "get"));
        assert!(!allowed("/api/v1/products", "post"));
        assert!(!allowed("/metrics", "get"));
        assert!(url_matches("*", "/anything") && !url_matches("/api", "/api/v1"));
    }

    fn crate_metadata_mime() -> &'static str {
        "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
    }
}
