//! The Prometheus HTTP API client every Prometheus-backed source shares (Kepler, DCGM,
//! request counters, live PromQL scalars): prometheus-http-query with a request timeout, an
//! optional bearer token file (re-read on every request, so rotated tokens work), and errors
//! mapped to [`SourceError`].

pub use crate::access::{Auth, PromConfig, TlsFiles, default_replica_labels};
use crate::access::{Headers, TlsClient};
use crate::{CountSample, MetricQuery, RequestPreset, RequestQuery, SourceError};
use async_trait::async_trait;
use jobcarbon_core::PodKey;
use jobcarbon_core::Seconds;
use prometheus_http_query::reqwest::header::{HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Drops replica labels and keeps one line per remaining label set (the largest value: the
/// later scrape of a counter), lines ordered by label set. Sorted in place (stable, so lines
/// with the same labels are weighed in answer order), no label set copied. An answer without
/// replica labels is returned as it came: Prometheus never answers two lines with one label set.
fn without_replicas(mut samples: Vec<PromSample>, replica_labels: &[String]) -> Vec<PromSample> {
    let mut removed = false;
    for s in &mut samples {
        for l in replica_labels {
            removed |= s.labels.remove(l).is_some();
        }
    }
    if !removed {
        return samples;
    }
    samples.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut lines: Vec<PromSample> = Vec::with_capacity(samples.len());
    for s in samples {
        match lines.last_mut() {
            Some(kept) if kept.labels == s.labels => {
                if !(kept.value >= s.value || s.value.is_nan()) {
                    *kept = s;
                }
            }
            _ => lines.push(s),
        }
    }
    lines
}

/// `labels[exported_<name>]`, else `labels[name]`; empty values are absent. Looked up without
/// allocating (this runs for several labels of every sample of every answer).
fn exported_or_plain<'a>(labels: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    const PREFIX: &[u8] = b"exported_";
    let mut buf = [0u8; 64];
    let long;
    let exported = if PREFIX.len() + name.len() <= buf.len() {
        let len = PREFIX.len() + name.len();
        buf[..PREFIX.len()].copy_from_slice(PREFIX);
        buf[PREFIX.len()..len].copy_from_slice(name.as_bytes());
        // Two `str`s back to back are UTF-8.
        std::str::from_utf8(&buf[..len]).unwrap_or_default()
    } else {
        long = format!("exported_{name}");
        long.as_str()
    };
    labels
        .get(exported)
        .or_else(|| labels.get(name))
        .map(String::as_str)
        .filter(|v| !v.is_empty())
}

/// An instant query's `data` as samples: the vector's lines without replica labels (folded),
/// or the scalar. A range vector is not an instant answer.
pub(crate) fn instant_samples(
    data: prometheus_http_query::response::Data,
    replica_labels: &[String],
    keep: LabelSelection<'_>,
) -> Result<Vec<PromSample>, &'static str> {
    use prometheus_http_query::response::Data;
    match data {
        Data::Vector(v) => Ok(without_replicas(
            v.into_iter()
                .map(|iv| {
                    let (labels, sample) = iv.into_inner();
                    PromSample {
                        labels: labels
                            .into_iter()
                            .filter(|(k, _)| keep.keeps(k, replica_labels))
                            .collect(),
                        value: sample.value(),
                        at: Seconds(sample.timestamp()),
                    }
                })
                .collect(),
            replica_labels,
        )),
        Data::Scalar(s) => Ok(vec![PromSample {
            labels: BTreeMap::new(),
            value: s.value(),
            at: Seconds(s.timestamp()),
        }]),
        Data::Matrix(_) => Err("expected an instant vector, got a range vector"),
    }
}

/// Which labels decoded samples keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabelSelection<'a> {
    /// Every label of the answer.
    All,
    /// Only these names, each also as `exported_<name>` (what [`PromSample::label`] reads);
    /// the others are never allocated. Series that then coincide are one series to the
    /// replica fold (the largest value), as they are to every reader that keys on these labels.
    Only(&'a [String]),
}

impl LabelSelection<'_> {
    /// Whether a line keeps label `name`. The replica labels are always kept: the fold must
    /// find them to fold an HA pair's lines, then drops them.
    fn keeps(self, name: &str, replicas: &[String]) -> bool {
        match self {
            LabelSelection::All => true,
            LabelSelection::Only(names) => {
                let plain = name.strip_prefix("exported_").unwrap_or(name);
                names.iter().any(|n| n == name || n == plain) || replicas.iter().any(|r| r == name)
            }
        }
    }
}

/// A whole `/api/v1/query` answer body (`{"status":"success","data":{…}}`) as samples with the
/// `keep` labels, the way [`PromClient::instant`] and [`PromClient::instant_keeping`] read it;
/// an error answer or malformed JSON is `Err` with the reason.
pub fn decode_instant_answer(
    body: &[u8],
    replica_labels: &[String],
    keep: LabelSelection<'_>,
) -> Result<Vec<PromSample>, String> {
    match serde_json::from_slice::<Answer>(body).map_err(|e| e.to_string())? {
        Answer {
            status,
            data: Some(data),
            ..
        } if status == "success" => data
            .into_samples(replica_labels, keep)
            .map_err(str::to_owned),
        answer => Err(answer.error_reason()),
    }
}

/// An `/api/v1/query` answer, decoded in one pass straight into what [`PromSample`] holds (the
/// client library's own types buffer the whole body twice and build a `HashMap` per line).
/// `stats`, `warnings` and `infos` are ignored; a line without `value` (a native histogram) or
/// a non-numeric value fails the answer, as with the library.
#[derive(serde::Deserialize)]
struct Answer<'a> {
    status: String,
    #[serde(borrow)]
    data: Option<AnswerData<'a>>,
    error: Option<String>,
}

impl Answer<'_> {
    /// Why an answer is not a success: Prometheus' `error`, or its status.
    fn error_reason(self) -> String {
        self.error
            .unwrap_or_else(|| format!("status {}", self.status))
    }
}

#[derive(serde::Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum AnswerData<'a> {
    Vector(#[serde(borrow)] Vec<AnswerLine<'a>>),
    Scalar(AnswerPoint),
    Matrix(serde::de::IgnoredAny),
}

impl AnswerData<'_> {
    /// The vector's lines with the `keep` labels, without replica labels (folded), or the scalar.
    fn into_samples(
        self,
        replica_labels: &[String],
        keep: LabelSelection<'_>,
    ) -> Result<Vec<PromSample>, &'static str> {
        match self {
            AnswerData::Vector(lines) => Ok(without_replicas(
                lines
                    .into_iter()
                    .map(|l| PromSample {
                        labels: l.metric.into_labels(keep, replica_labels),
                        value: l.value.1.0,
                        at: Seconds(l.value.0),
                    })
                    .collect(),
                replica_labels,
            )),
            AnswerData::Scalar(point) => Ok(vec![PromSample {
                labels: BTreeMap::new(),
                value: point.1.0,
                at: Seconds(point.0),
            }]),
            AnswerData::Matrix(_) => Err("expected an instant vector, got a range vector"),
        }
    }
}

#[derive(serde::Deserialize)]
struct AnswerLine<'a> {
    #[serde(borrow)]
    metric: LinePairs<'a>,
    value: AnswerPoint,
}

/// A line's labels as the answer wrote them, borrowed from the body where JSON allows (no
/// escapes): only the labels kept are ever allocated.
struct LinePairs<'a>(Vec<(Text<'a>, Text<'a>)>);

impl LinePairs<'_> {
    /// The labels `keep` keeps, owned.
    fn into_labels(
        self,
        keep: LabelSelection<'_>,
        replicas: &[String],
    ) -> BTreeMap<String, String> {
        self.0
            .into_iter()
            .filter(|(name, _)| keep.keeps(&name.0, replicas))
            .map(|(name, value)| (name.0.into_owned(), value.0.into_owned()))
            .collect()
    }
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for LinePairs<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = LinePairs<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of label names to values")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(16));
                while let Some(pair) = map.next_entry::<Text<'a>, Text<'a>>()? {
                    pairs.push(pair);
                }
                Ok(LinePairs(pairs))
            }
        }
        deserializer.deserialize_map(Visitor(std::marker::PhantomData))
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
struct Text<'a>(std::borrow::Cow<'a, str>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Visitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: serde::de::Error>(
                self,
                text: &'de str,
            ) -> Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Borrowed(text)))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Owned(text.to_owned())))
            }
            fn visit_string<E: serde::de::Error>(self, text: String) -> Result<Text<'a>, E> {
                Ok(Text(std::borrow::Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(Visitor(std::marker::PhantomData))
    }
}

/// `[time, "value"]`.
#[derive(serde::Deserialize)]
struct AnswerPoint(f64, QuotedFloat);

/// A float inside a JSON string (`"1.5"`, `"NaN"`, `"+Inf"`), as Prometheus writes values.
struct QuotedFloat(f64);

impl<'de> serde::Deserialize<'de> for QuotedFloat {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = QuotedFloat;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a float value inside a quoted JSON string")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<QuotedFloat, E> {
                text.parse()
                    .map(QuotedFloat)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(text), &self))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// Drops replica labels from range-query series and merges the series that then coincide:
/// one point per time, the largest value (the later scrape of a counter), times ascending.
fn series_without_replicas(series: Vec<PromSeries>, replica_labels: &[String]) -> Vec<PromSeries> {
    let mut merged: BTreeMap<BTreeMap<String, String>, BTreeMap<i64, f64>> = BTreeMap::new();
    for mut s in series {
        for l in replica_labels {
            s.labels.remove(l);
        }
        let points = merged.entry(s.labels).or_default();
        for (at, value) in s.points {
            // Range-query times are whole milliseconds.
            let ms = (at.value() * 1000.0).round() as i64;
            let slot = points.entry(ms).or_insert(value);
            if value > *slot || slot.is_nan() {
                *slot = value;
            }
        }
    }
    merged
        .into_iter()
        .map(|(labels, points)| PromSeries {
            labels,
            points: points
                .into_iter()
                .map(|(ms, v)| (Seconds(ms as f64 / 1000.0), v))
                .collect(),
        })
        .collect()
}

/// One series of a range query: its labels and its points `(time, value)`, times ascending.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSeries {
    /// The series' labels, replica labels removed.
    pub labels: BTreeMap<String, String>,
    /// `(time, value)` points, times ascending.
    pub points: Vec<(Seconds, f64)>,
}

impl PromSeries {
    /// The label's value, preferring `exported_<name>` (as [`PromSample::label`]).
    pub fn label(&self, name: &str) -> Option<&str> {
        exported_or_plain(&self.labels, name)
    }
}

/// One sample of an instant vector: its labels and value.
#[derive(Debug, Clone, PartialEq)]
pub struct PromSample {
    /// The sample's labels, replica labels removed.
    pub labels: BTreeMap<String, String>,
    /// The sample's value.
    pub value: f64,
    /// Evaluation time of the sample, seconds since the Unix epoch.
    pub at: Seconds,
}

impl PromSample {
    /// A sample from `(name, value)` label pairs (test builders, fixtures).
    pub fn from_pairs(labels: &[(&str, &str)], value: f64, at: Seconds) -> Self {
        Self {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
            at,
        }
    }

    /// The label's value, preferring `exported_<name>`: when Prometheus scrapes an exporter
    /// without `honor_labels`, the exporter's own `pod`/`namespace`/`container` are renamed
    /// `exported_*` and the unprefixed ones name the exporter's pod.
    pub fn label(&self, name: &str) -> Option<&str> {
        exported_or_plain(&self.labels, name)
    }

    /// The first of `names` present (via [`PromSample::label`]).
    pub fn first_label(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|n| self.label(n))
    }
}

/// A Prometheus HTTP API client shared by the sources: TLS, auth and headers per
/// [`PromConfig`], secrets re-read when their files change.
#[derive(Clone)]
pub struct PromClient {
    tls: Arc<TlsClient>,
    headers: Arc<Headers>,
    config: Arc<PromConfig>,
}

impl std::fmt::Debug for PromClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromClient")
            .field("url", &self.config.redacted_url())
            .finish_non_exhaustive()
    }
}

impl PromClient {
    /// Builds the client. Fails on an unparsable URL, unreadable TLS files or an invalid
    /// header (configuration errors).
    pub fn new(config: PromConfig) -> Result<Self, SourceError> {
        Ok(Self {
            headers: Arc::new(Headers::new(&config)?),
            tls: Arc::new(TlsClient::new(config.clone())?),
            config: Arc::new(config),
        })
    }

    /// The client (rebuilt when TLS files rotate) and the headers to send (token files re-read).
    fn connection(
        &self,
        source_name: &str,
    ) -> Result<
        (
            prometheus_http_query::Client,
            Vec<(HeaderName, HeaderValue)>,
        ),
        SourceError,
    > {
        let client = self.tls.get().map_err(|e| renamed(e, source_name))?;
        let headers = self
            .headers
            .current()
            .map_err(|e| renamed(e, source_name))?;
        Ok((client, headers))
    }

    /// The URL, without credentials.
    pub fn url(&self) -> String {
        self.config.redacted_url()
    }

    /// Evaluates `promql` at `at`; `source_name` names the caller in errors.
    pub async fn instant(
        &self,
        source_name: &str,
        promql: &str,
        at: Seconds,
    ) -> Result<Vec<PromSample>, SourceError> {
        self.instant_selected(source_name, promql, at, LabelSelection::All)
            .await
    }

    /// [`PromClient::instant`] keeping only the `keep` labels (and their `exported_` forms):
    /// for large answers whose reader needs a few of each series' labels.
    pub async fn instant_keeping(
        &self,
        source_name: &str,
        promql: &str,
        at: Seconds,
        keep: &[String],
    ) -> Result<Vec<PromSample>, SourceError> {
        self.instant_selected(source_name, promql, at, LabelSelection::Only(keep))
            .await
    }

    async fn instant_selected(
        &self,
        source_name: &str,
        promql: &str,
        at: Seconds,
        keep: LabelSelection<'_>,
    ) -> Result<Vec<PromSample>, SourceError> {
        let (client, headers) = self.connection(source_name)?;
        let mut query = client.query(promql).at(at.value().floor() as i64);
        for (name, value) in headers {
            query = query.header(name, value);
        }
        let again = query.clone();
        let response = query
            .get_raw()
            .await
            .map_err(|e| self.map_error(source_name, promql, e))?;
        let is_json = response
            .headers()
            .get(prometheus_http_query::reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("application/json"));
        if !response.status().is_success() || !is_json {
            // An error answer (rare): asked again through the library, so errors read as
            // they always have.
            let result = again
                .get()
                .await
                .map_err(|e| self.map_error(source_name, promql, e))?;
            let (data, _) = result.into_inner();
            return instant_samples(data, &self.config.replica_labels, keep)
                .map_err(|reason| self.query_error(source_name, promql, reason.into()));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| SourceError::BadResponse {
                source_name: source_name.into(),
                url: self.config.redacted_url(),
                reason: self.scrub(&format!("failed to read the response: {}", error_chain(&e))),
            })?;
        let answer: Answer =
            serde_json::from_slice(&body).map_err(|e| SourceError::BadResponse {
                source_name: source_name.into(),
                url: self.config.redacted_url(),
                reason: format!("failed to parse JSON response from server: {e}"),
            })?;
        match answer {
            Answer {
                status,
                data: Some(data),
                ..
            } if status == "success" => data
                .into_samples(&self.config.replica_labels, keep)
                .map_err(|reason| self.query_error(source_name, promql, reason.into())),
            answer => Err(self.query_error(source_name, promql, answer.error_reason())),
        }
    }

    fn query_error(&self, source_name: &str, promql: &str, reason: String) -> SourceError {
        SourceError::Query {
            source_name: source_name.into(),
            query: promql.into(),
            reason,
        }
    }

    /// The labels an undeduplicated HA pair adds (dropped from every answer).
    pub fn replica_labels(&self) -> &[String] {
        &self.config.replica_labels
    }

    /// A range query (`/api/v1/query_range`) from `start` to `end` (whole seconds) every
    /// `step` seconds; replica labels dropped and the series that then coincide merged.
    pub async fn range(
        &self,
        source_name: &str,
        promql: &str,
        (start, end): (i64, i64),
        step: f64,
    ) -> Result<Vec<PromSeries>, SourceError> {
        let (client, headers) = self.connection(source_name)?;
        let mut query = client.query_range(promql, start, end, step);
        for (name, value) in headers {
            query = query.header(name, value);
        }
        let result = query
            .get()
            .await
            .map_err(|e| self.map_error(source_name, promql, e))?;
        let (data, _) = result.into_inner();
        use prometheus_http_query::response::Data;
        let Data::Matrix(matrix) = data else {
            return Err(SourceError::Query {
                source_name: source_name.into(),
                query: promql.into(),
                reason: "expected a range vector (matrix)".into(),
            });
        };
        let series = matrix
            .into_iter()
            .map(|rv| {
                let (labels, samples) = rv.into_inner();
                PromSeries {
                    labels: labels.into_iter().collect(),
                    points: samples
                        .iter()
                        .map(|s| (Seconds(s.timestamp()), s.value()))
                        .collect(),
                }
            })
            .collect();
        Ok(series_without_replicas(series, &self.config.replica_labels))
    }

    /// Removes credentials a URL may carry from a message.
    fn scrub(&self, text: &str) -> String {
        text.replace(&self.config.url, &self.config.redacted_url())
    }

    fn map_error(
        &self,
        source_name: &str,
        promql: &str,
        e: prometheus_http_query::Error,
    ) -> SourceError {
        use prometheus_http_query::Error;
        match e {
            Error::Prometheus(p) => SourceError::Query {
                source_name: source_name.into(),
                query: promql.into(),
                reason: format!("{}: {}", p.error_type(), p.message()),
            },
            Error::Client(c) => match c.inner() {
                Some(r) if r.is_connect() || r.is_timeout() || r.is_request() => {
                    SourceError::Unreachable {
                        source_name: source_name.into(),
                        url: self.config.redacted_url(),
                        reason: self.scrub(&error_chain(&c)),
                    }
                }
                Some(r) if r.status().is_some() => SourceError::BadResponse {
                    source_name: source_name.into(),
                    url: self.config.redacted_url(),
                    reason: self.scrub(&format!(
                        "HTTP {} ({})",
                        r.status().map(|s| s.as_u16()).unwrap_or_default(),
                        c
                    )),
                },
                _ => SourceError::BadResponse {
                    source_name: source_name.into(),
                    url: self.config.redacted_url(),
                    reason: self.scrub(&error_chain(&c)),
                },
            },
            other => SourceError::Query {
                source_name: source_name.into(),
                query: promql.into(),
                reason: self.scrub(&error_chain(&other)),
            },
        }
    }
}

/// `error: cause: cause` in one line.
/// A configuration error of the shared client, named after the source that hit it.
fn renamed(e: SourceError, source_name: &str) -> SourceError {
    match e {
        SourceError::Unsupported { reason, .. } => SourceError::Unsupported {
            source_name: source_name.into(),
            reason,
        },
        other => other,
    }
}

pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = c.source();
    }
    s
}

/// The preset request counter's PromQL metric name (DESIGN §4 `inference.requests.preset`).
pub(crate) fn preset_metric(preset: RequestPreset) -> &'static str {
    match preset {
        // vLLM: successful requests, labelled by finished_reason.
        RequestPreset::Vllm => "vllm:request_success_total",
        // Triton: successful inference requests per model/version.
        RequestPreset::Triton => "nv_inference_request_success",
        // Text Generation Inference: successful requests.
        RequestPreset::Tgi => "tgi_request_success",
        // KServe Python ModelServer: the predict latency histogram counts every request.
        RequestPreset::Kserve => "request_predict_seconds_count",
    }
}

/// Renders the PromQL for a request query: the preset counter summed over the matching pods.
pub(crate) fn request_promql(query: &RequestQuery) -> Result<String, SourceError> {
    match query {
        RequestQuery::Promql(q) => Ok(q.clone()),
        RequestQuery::Preset { preset, matchers } => {
            let mut parts = Vec::new();
            for (k, v) in matchers {
                let valid_name = !k.is_empty()
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    && !k.starts_with(|c: char| c.is_ascii_digit());
                if !valid_name {
                    return Err(SourceError::Unsupported {
                        source_name: "requests".into(),
                        reason: format!("invalid label name {k:?} in request matchers"),
                    });
                }
                let escaped = v.replace('\\', "\\\\").replace('"', "\\\"");
                parts.push(format!("{k}=\"{escaped}\""));
            }
            Ok(format!("{}{{{}}}", preset_metric(*preset), parts.join(",")))
        }
    }
}

/// One request counter line: its identity is every label but the replica labels (already
/// dropped by the client), and its pod the `pod`/`namespace` (or `exported_*`) labels.
fn count_sample(s: &PromSample) -> CountSample {
    let series = s
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(",");
    let pod = s
        .label("namespace")
        .zip(s.label("pod"))
        .map(|(ns, pod)| PodKey::new(ns, pod));
    CountSample {
        series,
        pod,
        value: s.value,
        at: s.at,
    }
}

/// [`MetricQuery`] over Prometheus.
#[derive(Debug, Clone)]
pub struct PromMetrics {
    client: PromClient,
}

impl PromMetrics {
    /// Request counters and scalars through `client`.
    pub fn new(client: PromClient) -> Self {
        Self { client }
    }

    async fn one_number(
        &self,
        source: &str,
        promql: &str,
        at: Seconds,
    ) -> Result<f64, SourceError> {
        let samples = self.client.instant(source, promql, at).await?;
        match samples.as_slice() {
            [one] if one.value.is_finite() => Ok(one.value),
            [one] => Err(SourceError::Query {
                source_name: source.into(),
                query: promql.into(),
                reason: format!("result {} is not a finite number", one.value),
            }),
            [] => Err(SourceError::Query {
                source_name: source.into(),
                query: promql.into(),
                reason: "no data (the metric is missing at that time)".into(),
            }),
            many => Err(SourceError::Query {
                source_name: source.into(),
                query: promql.into(),
                reason: format!("expected one number, got {} series", many.len()),
            }),
        }
    }
}

#[async_trait]
impl MetricQuery for PromMetrics {
    async fn request_series(
        &self,
        query: &RequestQuery,
        at: Seconds,
    ) -> Result<Vec<CountSample>, SourceError> {
        let promql = request_promql(query)?;
        let samples = self.client.instant("requests", &promql, at).await?;
        Ok(samples.iter().map(count_sample).collect())
    }

    async fn scalar(&self, promql: &str, at: Seconds) -> Result<f64, SourceError> {
        self.one_number("promql", promql, at).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_answers_decode_or_say_why() {
        let body = jobcarbon_testkit::fixture(
            "prometheus/api-query-vector-dcgm-power-exported-labels.json",
        );
        let samples = decode_instant_answer(
            body.as_bytes(),
            &default_replica_labels(),
            LabelSelection::All,
        )
        .unwrap();
        assert!(!samples.is_empty());
        assert!(
            samples
                .iter()
                .all(|s| s.label("__name__") == Some("DCGM_FI_DEV_POWER_USAGE"))
        );
        // `pod` reads the workload's `exported_pod`, not the exporter's own pod.
        assert!(
            samples
                .iter()
                .any(|s| s.label("pod") == Some("bert-base-train-7x9kq"))
        );
        assert!(
            samples
                .iter()
                .all(|s| s.label("pod") != s.labels.get("pod").map(String::as_str))
        );

        let error = jobcarbon_testkit::fixture("prometheus/api-error-bad-data.json");
        let reason = decode_instant_answer(error.as_bytes(), &[], LabelSelection::All).unwrap_err();
        assert!(reason.contains("parse error"), "{reason}");

        let range = jobcarbon_testkit::fixture(
            "prometheus/api-query-range-kepler-v0.7.1-package-joules.json",
        );
        assert!(
            decode_instant_answer(range.as_bytes(), &[], LabelSelection::All)
                .unwrap_err()
                .contains("range vector")
        );
        assert!(decode_instant_answer(b"{", &[], LabelSelection::All).is_err());
    }

    /// The one-pass decoder reads answers exactly as the client library's types did.
    #[test]
    fn one_pass_decode_matches_the_library() {
        #[derive(serde::Deserialize)]
        struct Library {
            data: prometheus_http_query::response::PromqlResult,
        }
        let vector = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"a":"1","prometheus_replica":"x"},"value":[10.5,"NaN"]},
            {"metric":{"a":"1","prometheus_replica":"y"},"value":[10.5,"+Inf"]},
            {"metric":{"a":"2","exported_pod":"p"},"value":[11,"-Inf"]},
            {"metric":{"a":"3"},"value":[11,"1e3"]}]},"stats":{"ignored":true}}"#;
        let bodies = [
            jobcarbon_testkit::fixture(
                "prometheus/api-query-vector-dcgm-power-exported-labels.json",
            ),
            jobcarbon_testkit::fixture("prometheus/api-query-vector-up-docs.json"),
            vector.to_owned(),
            r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"2"]}}"#.to_owned(),
        ];
        for body in bodies {
            let library: Library = serde_json::from_str(&body).unwrap();
            let (data, _) = library.data.into_inner();
            let some = ["a".to_owned(), "pod".to_owned(), "__name__".to_owned()];
            for replicas in [vec![], default_replica_labels()] {
                for keep in [LabelSelection::All, LabelSelection::Only(&some)] {
                    let ours = decode_instant_answer(body.as_bytes(), &replicas, keep).unwrap();
                    assert!(!ours.is_empty());
                    let theirs = instant_samples(data.clone(), &replicas, keep).unwrap();
                    // Debug form: NaN values compare equal.
                    assert_eq!(format!("{ours:?}"), format!("{theirs:?}"));
                }
            }
        }
        let not_a_float = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"x"]}]}}"#;
        assert!(
            decode_instant_answer(not_a_float.as_bytes(), &[], LabelSelection::All)
                .unwrap_err()
                .contains("quoted")
        );
    }

    /// Kept: the names asked for and their `exported_` forms; escaped strings decode too.
    #[test]
    fn only_the_selected_labels_are_kept() {
        let body = r#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"__name__":"m","pod":"kepler-x","exported_pod":"tr\u0061in","job":"k","instance":"n1"},"value":[1,"2"]},
            {"metric":{"__name__":"m","pod":"kepler-y","exported_pod":"train","job":"k2","instance":"n1"},"value":[1,"3"]}]}}"#;
        let keep = ["__name__".to_owned(), "pod".to_owned()];
        let all = decode_instant_answer(body.as_bytes(), &[], LabelSelection::All).unwrap();
        assert_eq!(all[0].labels.len(), 5);
        let kept =
            decode_instant_answer(body.as_bytes(), &[], LabelSelection::Only(&keep)).unwrap();
        let names: Vec<Vec<&str>> = kept
            .iter()
            .map(|s| s.labels.keys().map(String::as_str).collect())
            .collect();
        assert_eq!(names, vec![vec!["__name__", "exported_pod", "pod"]; 2]);
        assert_eq!(kept[0].label("pod"), Some("train"));
        // With replica labels the fold folds lines the selection made equal: the largest wins.
        let replicas = ["pod".to_owned()];
        let folded =
            decode_instant_answer(body.as_bytes(), &replicas, LabelSelection::Only(&keep)).unwrap();
        assert_eq!(folded.len(), 1);
        assert_eq!(folded[0].value, 3.0);
        assert_eq!(folded[0].label("pod"), Some("train"));
    }

    #[test]
    fn preset_promql_escapes_and_validates() {
        let mut m = BTreeMap::new();
        m.insert("namespace".to_owned(), "ml\"serving".to_owned());
        let q = RequestQuery::Preset {
            preset: RequestPreset::Vllm,
            matchers: m,
        };
        assert_eq!(
            request_promql(&q).unwrap(),
            r#"vllm:request_success_total{namespace="ml\"serving"}"#
        );
        let mut bad = BTreeMap::new();
        bad.insert("bad-name".to_owned(), "x".to_owned());
        let q = RequestQuery::Preset {
            preset: RequestPreset::Triton,
            matchers: bad,
        };
        assert!(request_promql(&q).is_err());
    }

    #[test]
    fn exported_labels_win() {
        let s = PromSample {
            labels: [
                ("pod", "exporter-x"),
                ("exported_pod", "trainer-1"),
                ("namespace", ""),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            value: 1.0,
            at: Seconds(0.0),
        };
        assert_eq!(s.label("pod"), Some("trainer-1"));
        assert_eq!(s.label("namespace"), None);
        assert_eq!(s.first_label(&["Hostname", "pod"]), Some("trainer-1"));
    }

    #[test]
    fn range_series_of_two_replicas_merge_into_one() {
        let labels = |replica: &str| -> BTreeMap<String, String> {
            [("reason", "node_idle"), ("prometheus_replica", replica)]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        };
        let merged = series_without_replicas(
            vec![
                PromSeries {
                    labels: labels("a"),
                    points: vec![(Seconds(10.0), 1.0), (Seconds(20.0), 2.0)],
                },
                PromSeries {
                    labels: labels("b"),
                    points: vec![(Seconds(20.0), 2.5), (Seconds(30.0), 3.0)],
                },
            ],
            &default_replica_labels(),
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(merged[0].label("reason"), Some("node_idle"));
        assert!(!merged[0].labels.contains_key("prometheus_replica"));
        assert_eq!(
            merged[0].points,
            vec![
                (Seconds(10.0), 1.0),
                (Seconds(20.0), 2.5),
                (Seconds(30.0), 3.0)
            ]
        );
    }

    #[test]
    fn invalid_url_is_a_config_error() {
        assert!(PromClient::new(PromConfig::new("not a url")).is_err());
    }
}
