//! A fake Electricity Maps v3 and WattTime v3 API on one loopback port. Bodies are the
//! documented response shapes of `fixtures/intensity/` (provenance in
//! `fixtures/PROVENANCE.md`) with their data arrays rebuilt from the scenario's points, so
//! the client parses exactly the fields the providers send. The real APIs cannot be reached
//! from the test machines.
//!
//! Electricity Maps: `GET /v3/carbon-intensity/{latest,forecast,history,past-range}` with the
//! `auth-token` header. WattTime: `GET /login` (basic auth) → token; `GET /v3/forecast`,
//! `GET /v3/historical` with `Authorization: Bearer`.

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request the fake answered.
#[derive(Debug, Clone, PartialEq)]
pub struct IntensityRequest {
    /// The request path (`/v3/carbon-intensity/latest`, `/login`, …).
    pub path: String,
    /// The query parameters.
    pub query: BTreeMap<String, String>,
    /// The status it was answered with.
    pub status: u16,
}

/// A scripted failure: the next matching requests get `status` (with `Retry-After`).
#[derive(Debug, Clone)]
struct Failure {
    path_prefix: String,
    status: u16,
    retry_after: Option<String>,
    remaining: Option<usize>,
}

#[derive(Default)]
struct State {
    em_token: String,
    /// (time, gCO2eq/kWh), hourly.
    em_points: Vec<(i64, f64)>,
    wt_user: String,
    wt_password: String,
    /// (time, lbs CO2/MWh), every 5 minutes.
    wt_points: Vec<(i64, f64)>,
    tokens: Vec<String>,
    failures: Vec<Failure>,
    requests: Vec<IntensityRequest>,
    /// Clock of the fake (seconds since the epoch); wall clock when `None`.
    now: Option<i64>,
}

/// The running fake. Dropping it stops the server.
pub struct FakeIntensityApi {
    url: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for FakeIntensityApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Wall-clock seconds since the Unix epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl FakeIntensityApi {
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
                    let service = service_fn(move |req| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(handle(&state, req)) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self { url, state, task })
    }

    /// `http://127.0.0.1:PORT`: the `url` of both providers.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Electricity Maps' token and hourly (time, gCO2eq/kWh) points.
    pub fn electricity_maps(&self, token: &str, points: Vec<(i64, f64)>) {
        let mut s = lock(&self.state);
        s.em_token = token.to_owned();
        s.em_points = points;
    }

    /// WattTime's credentials and 5-minute (time, lbs CO2/MWh) points.
    pub fn watttime(&self, user: &str, password: &str, points: Vec<(i64, f64)>) {
        let mut s = lock(&self.state);
        s.wt_user = user.to_owned();
        s.wt_password = password.to_owned();
        s.wt_points = points;
    }

    /// The next `count` requests whose path starts with `path_prefix` (all: `None`) get
    /// `status`, with `Retry-After: retry_after` when given.
    pub fn fail(
        &self,
        path_prefix: &str,
        status: u16,
        retry_after: Option<&str>,
        count: Option<usize>,
    ) {
        lock(&self.state).failures.push(Failure {
            path_prefix: path_prefix.to_owned(),
            status,
            retry_after: retry_after.map(str::to_owned),
            remaining: count,
        });
    }

    /// Answer normally again.
    pub fn recover(&self) {
        lock(&self.state).failures.clear();
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<IntensityRequest> {
        lock(&self.state).requests.clone()
    }

    /// How many requests went to `path`.
    pub fn count(&self, path: &str) -> usize {
        self.requests().iter().filter(|r| r.path == path).count()
    }
}

fn reply(status: u16, body: &Value, retry_after: Option<&str>) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    if let Some(r) = retry_after {
        builder = builder.header("retry-after", r);
    }
    builder
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap_or_else(|_| Response::new(Full::new(Bytes::new())))
}

fn query_map(req: &Request<Incoming>) -> BTreeMap<String, String> {
    req.uri()
        .query()
        .map(|q| {
            url_pairs(q)
                .into_iter()
                .collect::<BTreeMap<String, String>>()
        })
        .unwrap_or_default()
}

/// `a=b&c=d` with percent-decoding (`+` and `%XX`).
fn url_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'%'
                && i + 2 < bytes.len()
                && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
                && let Ok(v) = u8::from_str_radix(hex, 16)
            {
                out.push(v);
                i += 3;
                continue;
            }
            out.push(bytes[i]);
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn handle(state: &Mutex<State>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let query = query_map(&req);
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (auth_token, authorization) = (header("auth-token"), header("authorization"));
    let mut s = lock(state);
    let (status, body, retry_after) = match scripted_failure(&mut s, &path) {
        Some(f) => (
            f.status,
            json!({"error": "scripted failure"}),
            f.retry_after,
        ),
        None => {
            let (status, body) = answer(&mut s, &path, &query, auth_token, authorization);
            (status, body, None)
        }
    };
    s.requests.push(IntensityRequest {
        path,
        query,
        status,
    });
    reply(status, &body, retry_after.as_deref())
}

fn scripted_failure(s: &mut State, path: &str) -> Option<Failure> {
    let f = s
        .failures
        .iter_mut()
        .find(|f| path.starts_with(&f.path_prefix) && f.remaining != Some(0))?;
    if let Some(n) = f.remaining.as_mut() {
        *n -= 1;
    }
    Some(f.clone())
}

fn answer(
    s: &mut State,
    path: &str,
    query: &BTreeMap<String, String>,
    auth_token: Option<String>,
    authorization: Option<String>,
) -> (u16, Value) {
    let now = s.now.unwrap_or_else(unix_now);
    if let Some(endpoint) = path.strip_prefix("/v3/carbon-intensity/") {
        if auth_token.as_deref() != Some(s.em_token.as_str()) || s.em_token.is_empty() {
            return (
                401,
                json!({"message": "Invalid authentication credentials"}),
            );
        }
        return electricity_maps(s, endpoint, query, now);
    }
    if path == "/login" {
        use base64::Engine as _;
        let expected = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", s.wt_user, s.wt_password))
        );
        if authorization.as_deref() != Some(expected.as_str()) || s.wt_user.is_empty() {
            return (403, json!({"error": "Forbidden"}));
        }
        let token = format!("fake-token-{}", s.tokens.len() + 1);
        s.tokens.push(token.clone());
        let mut body = template("watttime-login.json");
        body["token"] = json!(token);
        return (200, body);
    }
    if let Some(endpoint) = path.strip_prefix("/v3/") {
        let token = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer "))
            .unwrap_or_default();
        if !s.tokens.iter().any(|t| t == token) {
            return (401, json!({"error": "Unauthorized"}));
        }
        return watttime(s, endpoint, query, now);
    }
    (404, json!({"error": "not found"}))
}

fn template(name: &str) -> Value {
    serde_json::from_str(&crate::fixture(&format!("intensity/{name}")))
        .unwrap_or_else(|e| panic!("fixture intensity/{name}: {e}"))
}

fn time_arg(query: &BTreeMap<String, String>, key: &str) -> Option<i64> {
    let ts: jiff::Timestamp = query.get(key)?.parse().ok()?;
    Some(ts.as_second())
}

fn rfc3339_z(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%S.000Z").to_string())
        .unwrap_or_default()
}

fn rfc3339_offset(t: i64) -> String {
    jiff::Timestamp::from_second(t)
        .map(|ts| ts.strftime("%Y-%m-%dT%H:%M:%S+00:00").to_string())
        .unwrap_or_default()
}

/// The fixture's array `key` rebuilt from `points`, each element shaped like its first.
fn rebuild(body: &mut Value, key: &str, points: &[(i64, f64)], time_key: &str, value_key: &str) {
    let shape = body[key].get(0).cloned().unwrap_or_else(|| json!({}));
    let offset = time_key == "point_time";
    body[key] = Value::Array(
        points
            .iter()
            .map(|(t, v)| {
                let mut item = shape.clone();
                item[time_key] = json!(if offset {
                    rfc3339_offset(*t)
                } else {
                    rfc3339_z(*t)
                });
                item[value_key] = json!(v);
                item
            })
            .collect(),
    );
}

fn select(points: &[(i64, f64)], from: i64, to: i64) -> Vec<(i64, f64)> {
    points
        .iter()
        .copied()
        .filter(|(t, _)| *t >= from && *t < to)
        .collect()
}

fn electricity_maps(
    s: &State,
    endpoint: &str,
    query: &BTreeMap<String, String>,
    now: i64,
) -> (u16, Value) {
    let current = s.em_points.iter().rev().find(|(t, _)| *t <= now).copied();
    match endpoint {
        "latest" => {
            let Some((t, v)) = current else {
                return (404, json!({"message": "no data"}));
            };
            let mut body = template("electricitymaps-latest.json");
            body["datetime"] = json!(rfc3339_z(t));
            body["carbonIntensity"] = json!(v);
            (200, body)
        }
        "forecast" => {
            let from = current.map_or(now, |(t, _)| t);
            let mut body = template("electricitymaps-forecast.json");
            rebuild(
                &mut body,
                "forecast",
                &select(&s.em_points, from, now + 72 * 3600),
                "datetime",
                "carbonIntensity",
            );
            (200, body)
        }
        "history" => {
            let mut body = template("electricitymaps-history.json");
            rebuild(
                &mut body,
                "history",
                &select(&s.em_points, now - 24 * 3600, now + 1),
                "datetime",
                "carbonIntensity",
            );
            (200, body)
        }
        "past-range" => {
            let (Some(from), Some(to)) = (time_arg(query, "start"), time_arg(query, "end")) else {
                return (400, json!({"message": "start and end are required"}));
            };
            let mut body = template("electricitymaps-past-range.json");
            rebuild(
                &mut body,
                "data",
                &select(&s.em_points, from, to.min(now + 1)),
                "datetime",
                "carbonIntensity",
            );
            (200, body)
        }
        _ => (404, json!({"message": "not found"})),
    }
}

fn watttime(s: &State, endpoint: &str, query: &BTreeMap<String, String>, now: i64) -> (u16, Value) {
    if query.get("signal_type").map(String::as_str) != Some("co2_moer") {
        return (400, json!({"error": "signal_type must be co2_moer"}));
    }
    match endpoint {
        "forecast" => {
            let from = now - now.rem_euclid(300);
            let mut body = template("watttime-forecast.json");
            rebuild(
                &mut body,
                "data",
                &select(&s.wt_points, from, now + 24 * 3600),
                "point_time",
                "value",
            );
            body["meta"]["generated_at"] = json!(rfc3339_offset(from));
            (200, body)
        }
        "historical" => {
            let (Some(from), Some(to)) = (time_arg(query, "start"), time_arg(query, "end")) else {
                return (400, json!({"error": "start and end are required"}));
            };
            let mut body = template("watttime-historical.json");
            rebuild(
                &mut body,
                "data",
                &select(&s.wt_points, from, to.min(now + 1)),
                "point_time",
                "value",
            );
            (200, body)
        }
        _ => (404, json!({"error": "not found"})),
    }
}
