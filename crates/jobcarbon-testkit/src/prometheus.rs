//! A real Prometheus server for tests (Debian package `prometheus`; `promtool` alongside).
//!
//! ```no_run
//! use jobcarbon_testkit::prometheus::{History, PromServer};
//! # fn main() -> anyhow::Result<()> {
//! let now = jobcarbon_testkit::prometheus::unix_now();
//! let mut history = History::new();
//! history.series("kepler_pod_cpu_joules_total", &[("pod_name", "p"), ("zone", "package")],
//!     &[(now - 60, 100.0), (now - 30, 160.0)]);
//! let prom = PromServer::builder().history(&history).start()?; // blocks loaded, ready
//! let url = prom.url();                                        // http://127.0.0.1:PORT
//! # let _ = url; Ok(()) }
//! ```
//!
//! - History is loaded through `promtool tsdb create-blocks-from openmetrics` into the TSDB
//!   directory the server then opens. Use timestamps near now ([`unix_now`]): the server runs
//!   with a 10-year retention, but blocks entirely older than the retention are deleted, and
//!   Prometheus' instant queries only look back 5 minutes from the evaluation time.
//! - [`PromBuilder::scrape`] adds a local HTTP target scraped every `interval`.
//! - Each server gets a free 127.0.0.1 port and a temp dir; it is killed on drop.
//!   [`PromServer::stop`] / [`PromServer::restart`] simulate an outage (same port, same TSDB).
//! - The binaries are `prometheus` and `promtool` on `PATH`, or `$PROMETHEUS_BIN` /
//!   `$PROMTOOL_BIN`.

use anyhow::{Context, bail};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Seconds since the Unix epoch, now.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn binary(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_owned())
}

/// What `promtool check metrics` said about an exposition.
#[derive(Debug, Clone)]
pub struct MetricsLint {
    /// promtool exited 0.
    pub passed: bool,
    /// Its stdout and stderr: lint warnings, or the parse error.
    pub output: String,
}

/// Lints exposition text with the real `promtool check metrics` (fed on stdin).
pub fn promtool_check_metrics(text: &str) -> anyhow::Result<MetricsLint> {
    use std::io::Write;
    let promtool = binary("PROMTOOL_BIN", "promtool");
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {promtool} (install the Debian package prometheus)"))?;
    child
        .stdin
        .take()
        .context("promtool stdin")?
        .write_all(text.as_bytes())
        .context("writing to promtool")?;
    let out = child.wait_with_output().context("promtool output")?;
    Ok(MetricsLint {
        passed: out.status.success(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    })
}

/// Sample history to load, rendered as OpenMetrics text. Families are kept together and
/// every series' points in time order, as `promtool` requires; no `# TYPE` lines are written,
/// so counter names without `_total` (DCGM) load as they are.
#[derive(Debug, Clone, Default)]
pub struct History {
    /// family name → (label set rendered → points)
    families: BTreeMap<String, BTreeMap<String, Vec<(i64, f64)>>>,
}

impl History {
    /// An empty history.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds points `(unix seconds, value)` to one series.
    pub fn series(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        points: &[(i64, f64)],
    ) -> &mut Self {
        let mut sorted: Vec<(&str, &str)> = labels.to_vec();
        sorted.sort();
        let rendered = sorted
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        let pts = self
            .families
            .entry(name.to_owned())
            .or_default()
            .entry(rendered)
            .or_default();
        pts.extend_from_slice(points);
        pts.sort_by_key(|(t, _)| *t);
        pts.dedup_by_key(|(t, _)| *t);
        self
    }

    /// Adds every sample of a Prometheus text exposition (e.g. a fixture `.prom` file) at each
    /// of `times`, its value multiplied by the matching factor: `[(t0, 0.9), (t1, 1.0)]` makes
    /// counters grow by 10 % of their fixture value between t0 and t1. `# ` lines are skipped.
    pub fn exposition_at(&mut self, text: &str, times: &[(i64, f64)]) -> anyhow::Result<&mut Self> {
        for (lineno, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, labels, value) = parse_sample(line)
                .with_context(|| format!("exposition line {}: {line:?}", lineno + 1))?;
            let label_refs: Vec<(&str, &str)> = labels
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let points: Vec<(i64, f64)> = times.iter().map(|(t, f)| (*t, value * f)).collect();
            self.series(&name, &label_refs, &points);
        }
        Ok(self)
    }

    /// The OpenMetrics text, ending in `# EOF`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, series) in &self.families {
            for (labels, points) in series {
                for (t, v) in points {
                    let _ = writeln!(out, "{name}{{{labels}}} {} {t}", format_value(*v));
                }
            }
        }
        out.push_str("# EOF\n");
        out
    }

    /// Whether no sample was added.
    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }
}

/// An exposition as Prometheus stores it after scraping a target whose discovered labels are
/// `target` (a ServiceMonitor adds `pod`, `namespace`, `container`, `service`, `endpoint`,
/// `job`, `instance`): with `honor_labels: false` (the operator's default) an exposed label
/// that clashes with a target label is renamed `exported_<name>` and the target's value wins;
/// with `true` the exposed label wins and the target label is dropped. Comments are kept.
pub fn as_scraped(
    text: &str,
    target: &[(&str, &str)],
    honor_labels: bool,
) -> anyhow::Result<String> {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            let _ = writeln!(out, "{line}");
            continue;
        }
        let (name, exposed, value) =
            parse_sample(trimmed).with_context(|| format!("exposition line {trimmed:?}"))?;
        let mut labels: Vec<(String, String)> = Vec::new();
        for (k, v) in exposed {
            let clashes = target.iter().any(|(t, _)| *t == k);
            let key = if clashes && !honor_labels {
                format!("exported_{k}")
            } else {
                k
            };
            labels.push((key, v));
        }
        for (k, v) in target {
            if !labels.iter().any(|(l, _)| l == k) {
                labels.push(((*k).to_owned(), (*v).to_owned()));
            }
        }
        let rendered = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect::<Vec<_>>()
            .join(",");
        let _ = writeln!(out, "{name}{{{rendered}}} {}", format_value(value));
    }
    Ok(out)
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v:?}")
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Every sample of a Prometheus text exposition: `(name, labels, value)`, `# ` lines skipped
/// (fixtures read as an exporter serves them).
pub fn exposition_samples(text: &str) -> anyhow::Result<Vec<(String, Labels, f64)>> {
    text.lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(n, l)| parse_sample(l).with_context(|| format!("exposition line {}: {l:?}", n + 1)))
        .collect()
}

/// A sample's labels, in order.
pub(crate) type Labels = Vec<(String, String)>;

/// Parses `name{a="b",…} value [timestamp]` (Prometheus text format).
fn parse_sample(line: &str) -> anyhow::Result<(String, Labels, f64)> {
    let (name, rest) = match line.find(['{', ' ']) {
        Some(i) => line.split_at(i),
        None => bail!("no value"),
    };
    let mut labels = Vec::new();
    let rest = if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        let end: Option<usize>;
        loop {
            // label name
            let start = match chars.peek() {
                Some((_, '}')) => {
                    end = chars.next().map(|(i, _)| i);
                    break;
                }
                Some((i, _)) => *i,
                None => bail!("unterminated label set"),
            };
            let mut eq = None;
            for (i, c) in chars.by_ref() {
                if c == '=' {
                    eq = Some(i);
                    break;
                }
            }
            let eq = eq.context("label without '='")?;
            let key = body[start..eq]
                .trim()
                .trim_start_matches(',')
                .trim()
                .to_owned();
            if chars.next().map(|(_, c)| c) != Some('"') {
                bail!("label {key} value not quoted");
            }
            let mut value = String::new();
            let mut escaped = false;
            let mut closed = false;
            for (_, c) in chars.by_ref() {
                match (escaped, c) {
                    (true, 'n') => {
                        value.push('\n');
                        escaped = false;
                    }
                    (true, c) => {
                        value.push(c);
                        escaped = false;
                    }
                    (false, '\\') => escaped = true,
                    (false, '"') => {
                        closed = true;
                        break;
                    }
                    (false, c) => value.push(c),
                }
            }
            if !closed {
                bail!("label {key} value not terminated");
            }
            labels.push((key, value));
            if let Some((_, ',')) = chars.peek() {
                chars.next();
            }
        }
        let end = end.context("unterminated label set")?;
        &body[end + 1..]
    } else {
        rest
    };
    let value_text = rest.split_whitespace().next().context("no value")?;
    let value: f64 = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().with_context(|| format!("bad value {v:?}"))?,
    };
    Ok((name.to_owned(), labels, value))
}

/// How to start a [`PromServer`].
#[derive(Debug, Clone)]
pub struct PromBuilder {
    history: Option<String>,
    scrape_targets: Vec<String>,
    scrape_interval: Duration,
    ready_timeout: Duration,
    web_config: Option<String>,
}

impl Default for PromBuilder {
    fn default() -> Self {
        Self {
            web_config: None,
            history: None,
            scrape_targets: Vec::new(),
            scrape_interval: Duration::from_secs(1),
            ready_timeout: Duration::from_secs(60),
        }
    }
}

impl PromBuilder {
    /// Loads this history before the server starts.
    pub fn history(mut self, history: &History) -> Self {
        self.history = Some(history.render());
        self
    }

    /// Loads raw OpenMetrics text (`# EOF` is appended when missing).
    pub fn openmetrics(mut self, text: impl Into<String>) -> Self {
        let mut text = text.into();
        if !text.trim_end().ends_with("# EOF") {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str("# EOF\n");
        }
        self.history = Some(text);
        self
    }

    /// Scrapes `target` (`127.0.0.1:PORT`, path `/metrics`) every `interval`.
    pub fn scrape(mut self, target: impl Into<String>, interval: Duration) -> Self {
        self.scrape_targets.push(target.into());
        self.scrape_interval = interval;
        self
    }

    /// Serves through Prometheus' own `--web.config.file` (TLS, client certificates, basic
    /// auth). File paths in it are relative to the server's temp dir, or absolute. Readiness is
    /// then "the listener answers" (a plain GET gets 400 from a TLS listener, 401 without
    /// credentials): the caller retries its first query.
    pub fn web_config(mut self, yaml: impl Into<String>) -> Self {
        self.web_config = Some(yaml.into());
        self
    }

    /// Starts the server and waits until it answers `/-/ready`.
    pub fn start(self) -> anyhow::Result<PromServer> {
        let dir = tempfile::tempdir().context("temp dir for Prometheus")?;
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data)?;
        if let Some(text) = &self.history {
            let input = dir.path().join("history.om.txt");
            std::fs::write(&input, text)?;
            let promtool = binary("PROMTOOL_BIN", "promtool");
            let out = Command::new(&promtool)
                .args(["tsdb", "create-blocks-from", "openmetrics"])
                .arg(&input)
                .arg(&data)
                .output()
                .with_context(|| {
                    format!("running {promtool} (install the Debian package prometheus)")
                })?;
            if !out.status.success() {
                bail!(
                    "promtool create-blocks-from openmetrics failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let mut config = String::from("global:\n  evaluation_interval: 1m\n");
        if !self.scrape_targets.is_empty() {
            let secs = self.scrape_interval.as_secs().max(1);
            let _ = write!(
                config,
                "  scrape_interval: {secs}s\n  scrape_timeout: {secs}s\nscrape_configs:\n  - job_name: test\n    honor_labels: true\n    static_configs:\n      - targets: [{}]\n",
                self.scrape_targets
                    .iter()
                    .map(|t| format!("\"{t}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config)?;
        let web_config_path = match &self.web_config {
            Some(yaml) => {
                let path = dir.path().join("web.yml");
                std::fs::write(&path, yaml)?;
                Some(path)
            }
            None => None,
        };
        let mut server = PromServer {
            child: None,
            port: free_port()?,
            dir,
            config_path,
            web_config_path,
            ready_timeout: self.ready_timeout,
        };
        server.launch()?;
        Ok(server)
    }
}

fn free_port() -> anyhow::Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
    Ok(l.local_addr()?.port())
}

/// A running Prometheus; killed on drop.
#[derive(Debug)]
pub struct PromServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    config_path: PathBuf,
    web_config_path: Option<PathBuf>,
    ready_timeout: Duration,
}

impl PromServer {
    /// Settings for a server: history, scrape targets, TLS and auth (see [`PromBuilder`]).
    pub fn builder() -> PromBuilder {
        PromBuilder::default()
    }

    /// `http://127.0.0.1:PORT` (stays the same across restarts).
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TSDB directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let prometheus = binary("PROMETHEUS_BIN", "prometheus");
        let mut command = Command::new(&prometheus);
        if let Some(web) = &self.web_config_path {
            command.arg(format!("--web.config.file={}", web.display()));
        }
        let child = command
            .arg(format!("--config.file={}", self.config_path.display()))
            .arg(format!("--storage.tsdb.path={}", self.data_dir().display()))
            .arg("--storage.tsdb.retention.time=10y")
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| {
                format!("starting {prometheus} (install the Debian package prometheus)")
            })?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + self.ready_timeout;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                bail!(
                    "prometheus exited with {status} before ready:\n{}",
                    self.log()
                );
            }
            let ready = match http_get(self.port, "/-/ready") {
                Ok((code, _)) if self.web_config_path.is_some() => code > 0,
                Ok((code, _)) => code == 200,
                Err(_) => false,
            };
            if ready {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "prometheus not ready after {:?}:\n{}",
            self.ready_timeout,
            self.log()
        )
    }

    /// Kills the server (an outage). The TSDB and port are kept for [`PromServer::restart`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port with the same TSDB.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    /// A raw GET against the server (e.g. `/api/v1/query?query=up`): status and body.
    pub fn get(&self, path_and_query: &str) -> anyhow::Result<(u16, String)> {
        http_get(self.port, path_and_query)
    }

    /// Waits until `promql` (URL-safe) returns a non-empty result, e.g. after the first scrape.
    pub fn wait_for_data(&self, promql_urlencoded: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok((200, body)) = self.get(&format!("/api/v1/query?query={promql_urlencoded}"))
                && !body.contains("\"result\":[]")
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!(
            "no data for {promql_urlencoded} after {timeout:?}:\n{}",
            self.log()
        )
    }

    /// Where the temp files live.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PromServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Minimal HTTP/1.0 GET on 127.0.0.1 (std only, so the harness works in sync and async tests).
fn http_get(port: u16, path: &str) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let code = response
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("no HTTP status")?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

/// A reverse proxy in front of a server on `127.0.0.1:upstream` that, like a multi-tenant
/// Mimir/Cortex gateway, answers 401 unless the request carries `header: value`. One request
/// per connection (`Connection: close`). Runs until the process ends.
pub fn tenant_proxy(upstream: u16, header: &str, value: &str) -> anyhow::Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding the proxy")?;
    let port = listener.local_addr()?.port();
    let wanted = format!("{}: {value}", header.to_ascii_lowercase());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let wanted = wanted.clone();
            std::thread::spawn(move || {
                let _ = proxy_one(stream, upstream, &wanted);
            });
        }
    });
    Ok(port)
}

fn proxy_one(mut client: TcpStream, upstream: u16, wanted: &str) -> anyhow::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte)? == 0 {
            bail!("client closed before the request head ended");
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let allowed = head
        .lines()
        .any(|l| l.to_ascii_lowercase().trim_end() == wanted);
    if !allowed {
        client.write_all(
            b"HTTP/1.1 401 Unauthorized\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\nno tenant specified",
        )?;
        return Ok(());
    }
    let mut lines: Vec<&str> = head
        .split("\r\n")
        .filter(|l| !l.is_empty() && !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    write!(server, "{}\r\n\r\n", lines.join("\r\n"))?;
    let mut response = Vec::new();
    server.read_to_end(&mut response)?;
    client.write_all(&response)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exposition_lines() {
        let (n, l, v) = parse_sample(r#"m{a="x,y",b="q\"z"} 2.5e+06"#).unwrap();
        assert_eq!(n, "m");
        assert_eq!(
            l,
            vec![("a".into(), "x,y".into()), ("b".into(), "q\"z".into())]
        );
        assert_eq!(v, 2.5e6);
        let (n, l, v) = parse_sample("up 1").unwrap();
        assert_eq!((n.as_str(), l.len(), v), ("up", 0, 1.0));
        assert!(parse_sample("broken{a=\"x} 1").is_err());
    }

    #[test]
    fn renders_openmetrics_with_eof() {
        let mut h = History::new();
        h.series("b", &[("z", "1"), ("a", "2")], &[(20, 2.0), (10, 1.0)]);
        let text = h.render();
        assert_eq!(
            text,
            "b{a=\"2\",z=\"1\"} 1.0 10\nb{a=\"2\",z=\"1\"} 2.0 20\n# EOF\n"
        );
    }
}
