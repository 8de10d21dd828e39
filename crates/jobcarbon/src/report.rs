//! `jobcarbon report`: asks a ledger (or the demo) for `/api/v1/allocation` and prints it as a
//! table, CSV, JSON or Markdown, optionally with an SVG chart. The numbers are the server's;
//! this only formats them.

use crate::report_fmt::grams;
use anyhow::{Context, bail};
use serde_json::Value;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
    Md,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ledger (or demo) to ask: http://HOST:PORT, or https://HOST:PORT when the ledger
    /// serves TLS (`exporter.tls`).
    #[arg(long, default_value = "http://127.0.0.1:9464", env = "JOBCARBON_URL")]
    pub url: String,
    /// Send the bearer token in this file (a ledger with `--auth`): e.g. the output of
    /// `kubectl create token <service-account>` for an account RBAC lets `get` `/api/*`.
    #[arg(long, env = "JOBCARBON_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM CA bundle that signed an https:// ledger's certificate (e.g. the TLS Secret's
    /// `ca.crt`, or `tls.crt` when it is self-signed).
    #[arg(long, env = "JOBCARBON_CA_FILE")]
    pub ca_file: Option<PathBuf>,
    /// A duration ending now (30m, 24h, 7d), or START,END (RFC 3339 or Unix seconds).
    #[arg(long, default_value = "24h")]
    pub window: String,
    /// Group by: comma-separated namespace, workload, phase, product.
    #[arg(long, default_value = "namespace,workload")]
    pub by: String,
    /// Split the window into UTC-aligned steps (1h, 1d).
    #[arg(long)]
    pub step: Option<String>,
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Also write an SVG chart: stacked bars by term per group, or a line per group with --step.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

/// Why a report failed: the caller's parameters (exit 2) or anything else (exit 1).
#[derive(Debug)]
struct BadParameter {
    flag: String,
    message: String,
}

impl std::fmt::Display for BadParameter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--{}: {}", self.flag, self.message)
    }
}

impl std::error::Error for BadParameter {}

pub fn run(args: Args) -> ExitCode {
    match report(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("jobcarbon report: {e:#}");
            let usage = e.downcast_ref::<BadParameter>().is_some();
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn report(args: &Args) -> anyhow::Result<()> {
    let mut query = vec![("window", args.window.as_str()), ("aggregate", &args.by)];
    if let Some(step) = &args.step {
        query.push(("step", step));
    }
    let client = Client::new(args)?;
    let answer: Value =
        serde_json::from_str(&client.fetch(&query)?).context("the server's answer is not JSON")?;
    let fields: Vec<String> = args.by.split(',').map(|f| f.trim().to_owned()).collect();
    let text = match args.format {
        Format::Json => serde_json::to_string_pretty(&answer)? + "\n",
        Format::Csv => {
            query.push(("format", "csv"));
            client.fetch(&query)?
        }
        Format::Table => render(&answer, &fields, false),
        Format::Md => render(&answer, &fields, true),
    };
    std::io::stdout().write_all(text.as_bytes())?;
    if let Some(path) = &args.chart {
        let svg = if args.step.is_some() {
            crate::report_chart::lines(&answer, &fields)
        } else {
            crate::report_chart::bars(&answer, &fields)
        };
        std::fs::write(path, svg).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Percent-encodes a query value (RFC 3986 unreserved characters, `,` and `:` kept).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b',' | b':' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Where and how to ask: the URL's parts, the bearer token, and TLS for https://.
struct Client {
    url: String,
    host: String,
    addr: String,
    token: Option<String>,
    tls: Option<std::sync::Arc<tokio_rustls::rustls::ClientConfig>>,
}

impl Client {
    fn new(args: &Args) -> anyhow::Result<Self> {
        let url = args.url.trim_end_matches('/');
        let (host, port, https) = if let Some(host) = url.strip_prefix("http://") {
            (host, 80, false)
        } else if let Some(host) = url.strip_prefix("https://") {
            (host, 443, true)
        } else {
            bail!("--url must be http://HOST:PORT or https://HOST:PORT (got {url:?})");
        };
        let addr = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:{port}")
        };
        let token = match &args.token_file {
            Some(path) => Some(read_token(path)?),
            None => None,
        };
        let tls = match (https, &args.ca_file) {
            (true, ca) => Some(crate::tls_client::config(ca.as_deref())?),
            (false, Some(_)) => bail!("--ca-file needs an https:// --url"),
            (false, None) => None,
        };
        Ok(Self {
            url: url.to_owned(),
            host: host.to_owned(),
            addr,
            token,
            tls,
        })
    }

    /// `GET /api/v1/allocation?…` over HTTP/1.1 (TLS for https://); the body, or the
    /// server's 400 as [`BadParameter`].
    fn fetch(&self, query: &[(&str, &str)]) -> anyhow::Result<String> {
        let path = format!(
            "/api/v1/allocation?{}",
            query
                .iter()
                .map(|(k, v)| format!("{k}={}", encode(v)))
                .collect::<Vec<_>>()
                .join("&")
        );
        let auth = self
            .token
            .as_ref()
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nAccept: */*\r\n{auth}Connection: close\r\n\r\n",
            self.host
        );
        let stream = std::net::TcpStream::connect(&self.addr)
            .with_context(|| format!("cannot reach {}", self.url))?;
        stream.set_read_timeout(Some(std::time::Duration::from_secs(60)))?;
        let raw = match &self.tls {
            None => exchange(stream, &request)?,
            Some(config) => {
                let host = self.addr.rsplit_once(':').map_or(&*self.addr, |(h, _)| h);
                let tls = crate::tls_client::connect(config, host, stream)?;
                exchange(tls, &request)?
            }
        };
        answer(&self.url, &raw)
    }
}

/// The token in `path`, trimmed; an empty or unreadable file is an error naming it.
fn read_token(path: &std::path::Path) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--token-file {}: cannot read", path.display()))?;
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        bail!(
            "--token-file {}: expected one bearer token (printable, no spaces)",
            path.display()
        );
    }
    Ok(token.to_owned())
}

/// Writes `request` and reads the whole answer (a TLS peer that closes without
/// `close_notify` ends it too).
fn exchange(mut stream: impl Read + Write, request: &str) -> anyhow::Result<Vec<u8>> {
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        Ok(_) => Ok(raw),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !raw.is_empty() => Ok(raw),
        Err(e) => Err(e.into()),
    }
}

/// The body of a raw HTTP answer, or why not.
fn answer(url: &str, raw: &[u8]) -> anyhow::Result<String> {
    let raw = String::from_utf8_lossy(raw);
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    match status {
        200 => Ok(body),
        400 => {
            let e: Value = serde_json::from_str(&body).unwrap_or_default();
            let flag = match e["parameter"].as_str().unwrap_or("") {
                "aggregate" => "by".to_owned(),
                other => other.to_owned(),
            };
            let message = e["error"].as_str().unwrap_or(&body).to_owned();
            Err(BadParameter { flag, message }.into())
        }
        _ => bail!("{url} answered {status}: {}", body.trim()),
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn num(v: &Value, field: &str) -> f64 {
    v[field].as_f64().unwrap_or(0.0)
}

/// The group label of an item: its key values in `fields` order, `-` for none.
pub fn label(item: &Value, fields: &[String]) -> Vec<String> {
    fields
        .iter()
        .map(|f| item["key"][f].as_str().unwrap_or("-").to_owned())
        .collect()
}

/// Rows of (step, key cells, numbers) for every item and unallocated reason, then the total.
fn rows(answer: &Value, fields: &[String]) -> Vec<Vec<String>> {
    let stepped = answer["steps"].as_array();
    let slices: Vec<&Value> = match stepped {
        Some(steps) => steps.iter().collect(),
        None => vec![answer],
    };
    let mut out = Vec::new();
    let numbers = |v: &Value, asce: f64| {
        vec![
            format!("{:.4}", num(v, "energy_j") / 3.6e6),
            grams(num(v, "jsc_g")),
            grams(num(v, "asc_g")),
            grams(num(v, "jsce_g")),
            grams(asce),
        ]
    };
    for s in slices {
        let step = s["window"]["start"].as_str().unwrap_or("").to_owned();
        let lead = |cells: Vec<String>| {
            let mut row = if stepped.is_some() {
                vec![step.clone()]
            } else {
                Vec::new()
            };
            row.extend(cells);
            row
        };
        for item in s["items"].as_array().into_iter().flatten() {
            let mut row = lead(label(item, fields));
            row.extend(numbers(item, num(item, "asce_g")));
            out.push(row);
        }
        for (reason, g) in s["unallocated"].as_object().into_iter().flatten() {
            let mut cells = vec![format!("unallocated: {reason}")];
            cells.resize(fields.len(), String::new());
            let mut row = lead(cells);
            row.extend(numbers(&Value::Null, g.as_f64().unwrap_or(0.0)));
            out.push(row);
        }
    }
    let mut cells = vec!["TOTAL".to_owned()];
    cells.resize(fields.len() + usize::from(stepped.is_some()), String::new());
    cells.extend(numbers(&answer["total"], num(&answer["total"], "asce_g")));
    out.push(cells);
    out
}

/// An aligned text table, or a Markdown table.
fn render(answer: &Value, fields: &[String], markdown: bool) -> String {
    let mut header: Vec<String> = Vec::new();
    if answer["steps"].is_array() {
        header.push("STEP".into());
    }
    header.extend(fields.iter().map(|f| f.to_uppercase()));
    header.extend(["ENERGY kWh", "JSC", "ASC", "JSCe", "ASCe"].map(str::to_owned));
    let body = rows(answer, fields);
    let numeric = header.len() - 5;
    let window = format!(
        "window {} .. {}\n",
        answer["window"]["start"].as_str().unwrap_or("?"),
        answer["window"]["end"].as_str().unwrap_or("?")
    );
    if markdown {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        let rule: Vec<String> = (0..header.len())
            .map(|i| if i < numeric { "---" } else { "---:" }.to_owned())
            .collect();
        let mut out = format!("Allocation, {window}\n") + &line(&header) + &line(&rule);
        for row in &body {
            out += &line(
                &row.iter()
                    .map(|c| c.replace('|', "\\|"))
                    .collect::<Vec<_>>(),
            );
        }
        return out;
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            std::iter::once(&header)
                .chain(&body)
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = window;
    for row in std::iter::once(&header).chain(&body) {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(i, c)| match i < numeric {
                true => format!("{c:<w$}", w = widths[i]),
                false => format!("{c:>w$}", w = widths[i]),
            })
            .collect();
        out += &(cells.join("  ").trim_end().to_owned() + "\n");
    }
    out
}
