//! How to reach Prometheus as clusters run it: a private CA, mTLS, basic auth, a bearer token,
//! extra headers (a Mimir/Cortex tenant) and headers from files.
//!
//! Secrets live in files only. Each file is read again when its modification time changes, so
//! rotated Secrets work without a restart, and no secret is ever part of a log line, an
//! error or a `Debug` dump: those name the file, never its content.

use crate::SourceError;
use base64::Engine as _;
use prometheus_http_query::reqwest;
use reqwest::header::{HeaderName, HeaderValue};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// TLS towards Prometheus.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM bundle of the CA(s) that signed Prometheus' certificate (added to the system roots).
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mTLS: both or neither.
    pub cert_file: Option<PathBuf>,
    /// Client key (PEM) matching `cert_file`.
    pub key_file: Option<PathBuf>,
    /// Accept any server certificate. Off by default; logged loudly when on.
    pub insecure_skip_verify: bool,
}

/// The `Authorization` header, from a file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No `Authorization` header.
    #[default]
    None,
    /// `Authorization: Bearer <file content>` (a service-account token).
    BearerTokenFile(PathBuf),
    /// `Authorization: Basic base64(username:<file content>)`.
    Basic {
        /// User name, in the clear (not a secret).
        username: String,
        /// File holding the password, re-read when it changes.
        password_file: PathBuf,
    },
}

/// Where and how to reach Prometheus (DESIGN §11 `prometheus:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromConfig {
    /// Base URL of the Prometheus HTTP API (may hold a path prefix).
    pub url: String,
    /// Timeout of one query, connection included.
    pub timeout: Duration,
    /// Labels an undeduplicated HA pair adds (`prometheus_replica`, `replica`): dropped from
    /// every answer, and the lines that then coincide counted once.
    pub replica_labels: Vec<String>,
    /// TLS settings for `https` URLs.
    pub tls: TlsFiles,
    /// The `Authorization` header to send.
    pub auth: Auth,
    /// Extra headers sent with every query (e.g. `X-Scope-OrgID: team-a`).
    pub headers: BTreeMap<String, String>,
    /// Extra headers whose values are secrets, read from files.
    pub header_files: BTreeMap<String, PathBuf>,
}

/// The replica labels of Prometheus Operator and Thanos HA pairs.
pub fn default_replica_labels() -> Vec<String> {
    vec!["prometheus_replica".to_owned(), "replica".to_owned()]
}

impl PromConfig {
    /// `url` with a 10 s timeout, the default replica labels, no TLS files, no auth.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            timeout: Duration::from_secs(10),
            replica_labels: default_replica_labels(),
            tls: TlsFiles::default(),
            auth: Auth::None,
            headers: BTreeMap::new(),
            header_files: BTreeMap::new(),
        }
    }

    /// The URL without any `user:password@` part, for logs and errors.
    pub fn redacted_url(&self) -> String {
        redact_url(&self.url)
    }
}

/// `https://user:pass@host/` → `https://***@host/`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

fn unsupported(reason: String) -> SourceError {
    SourceError::Unsupported {
        source_name: "prometheus".into(),
        reason,
    }
}

fn modified(path: &Path) -> Result<SystemTime, SourceError> {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map_err(|e| unsupported(format!("cannot read {}: {e}", path.display())))
}

/// A secret in a file, read again whenever the file's modification time changes.
pub struct SecretFile {
    path: PathBuf,
    cached: Mutex<Option<(SystemTime, String)>>,
}

impl std::fmt::Debug for SecretFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretFile")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SecretFile {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            cached: Mutex::new(None),
        }
    }

    /// The file's content without surrounding whitespace.
    pub fn read(&self) -> Result<String, SourceError> {
        let mtime = modified(&self.path)?;
        if let Ok(cached) = self.cached.lock()
            && let Some((at, value)) = cached.as_ref()
            && *at == mtime
        {
            return Ok(value.clone());
        }
        let value = std::fs::read_to_string(&self.path)
            .map_err(|e| unsupported(format!("cannot read {}: {e}", self.path.display())))?
            .trim()
            .to_owned();
        if let Ok(mut cached) = self.cached.lock() {
            *cached = Some((mtime, value.clone()));
        }
        Ok(value)
    }

    fn header_value(&self, value: String) -> Result<HeaderValue, SourceError> {
        let mut v = HeaderValue::from_str(&value).map_err(|_| {
            unsupported(format!(
                "{} holds characters not allowed in an HTTP header",
                self.path.display()
            ))
        })?;
        v.set_sensitive(true);
        Ok(v)
    }
}

/// The headers every query carries, with secret files re-read on change.
#[derive(Debug)]
pub(crate) struct Headers {
    fixed: Vec<(HeaderName, HeaderValue)>,
    files: Vec<(HeaderName, SecretFile)>,
    auth: Option<(AuthKind, SecretFile)>,
}

#[derive(Debug)]
enum AuthKind {
    Bearer,
    Basic(String),
}

fn header_name(name: &str) -> Result<HeaderName, SourceError> {
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| unsupported(format!("{name:?} is not a valid HTTP header name")))
}

impl Headers {
    pub(crate) fn new(config: &PromConfig) -> Result<Self, SourceError> {
        let mut fixed = Vec::new();
        for (name, value) in &config.headers {
            let value = HeaderValue::from_str(value).map_err(|_| {
                unsupported(format!(
                    "header {name}: value holds characters not allowed in HTTP"
                ))
            })?;
            fixed.push((header_name(name)?, value));
        }
        let mut files = Vec::new();
        for (name, path) in &config.header_files {
            files.push((header_name(name)?, SecretFile::new(path.clone())));
        }
        let auth = match &config.auth {
            Auth::None => None,
            Auth::BearerTokenFile(path) => Some((AuthKind::Bearer, SecretFile::new(path.clone()))),
            Auth::Basic {
                username,
                password_file,
            } => Some((
                AuthKind::Basic(username.clone()),
                SecretFile::new(password_file.clone()),
            )),
        };
        Ok(Self { fixed, files, auth })
    }

    /// Every header for one query, secrets marked sensitive (never printed by `Debug`).
    pub(crate) fn current(&self) -> Result<Vec<(HeaderName, HeaderValue)>, SourceError> {
        let mut out = self.fixed.clone();
        for (name, file) in &self.files {
            out.push((name.clone(), file.header_value(file.read()?)?));
        }
        if let Some((kind, file)) = &self.auth {
            let secret = file.read()?;
            let value = match kind {
                AuthKind::Bearer => format!("Bearer {secret}"),
                AuthKind::Basic(user) => format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
                ),
            };
            out.push((reqwest::header::AUTHORIZATION, file.header_value(value)?));
        }
        Ok(out)
    }
}

/// The HTTP client, rebuilt when a TLS file changes (a renewed certificate).
pub(crate) struct TlsClient {
    config: PromConfig,
    built: Mutex<Option<(Vec<SystemTime>, prometheus_http_query::Client)>>,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient")
            .field("tls", &self.config.tls)
            .finish_non_exhaustive()
    }
}

impl TlsClient {
    pub(crate) fn new(config: PromConfig) -> Result<Self, SourceError> {
        if config.tls.cert_file.is_some() != config.tls.key_file.is_some() {
            return Err(unsupported(
                "certFile and keyFile go together (mTLS needs both)".into(),
            ));
        }
        if config.tls.insecure_skip_verify {
            tracing::warn!(
                url = %config.redacted_url(),
                "prometheus.insecureSkipVerify is on: Prometheus' TLS certificate is NOT verified; anyone on the path can read and change what the ledger books"
            );
        }
        let client = Self {
            config,
            built: Mutex::new(None),
        };
        client.get()?;
        Ok(client)
    }

    fn tls_paths(&self) -> Vec<&Path> {
        let t = &self.config.tls;
        [&t.ca_file, &t.cert_file, &t.key_file]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
            .collect()
    }

    /// The client for the TLS files as they are now.
    pub(crate) fn get(&self) -> Result<prometheus_http_query::Client, SourceError> {
        let mtimes = self
            .tls_paths()
            .into_iter()
            .map(modified)
            .collect::<Result<Vec<_>, _>>()?;
        if let Ok(built) = self.built.lock()
            && let Some((at, client)) = built.as_ref()
            && *at == mtimes
        {
            return Ok(client.clone());
        }
        let client = self.build()?;
        if let Ok(mut built) = self.built.lock() {
            *built = Some((mtimes, client.clone()));
        }
        Ok(client)
    }

    fn build(&self) -> Result<prometheus_http_query::Client, SourceError> {
        let c = &self.config;
        let read = |path: &Path| {
            std::fs::read(path)
                .map_err(|e| unsupported(format!("cannot read {}: {e}", path.display())))
        };
        let mut builder = reqwest::Client::builder()
            .timeout(c.timeout)
            .connect_timeout(c.timeout)
            .tls_danger_accept_invalid_certs(c.tls.insecure_skip_verify);
        if let Some(ca) = &c.tls.ca_file {
            let certs = reqwest::Certificate::from_pem_bundle(&read(ca)?).map_err(|e| {
                unsupported(format!(
                    "caFile {}: not a PEM certificate bundle: {e}",
                    ca.display()
                ))
            })?;
            builder = builder.tls_certs_merge(certs);
        }
        if let (Some(cert), Some(key)) = (&c.tls.cert_file, &c.tls.key_file) {
            let mut pem = read(cert)?;
            pem.push(b'\n');
            pem.extend(read(key)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|e| {
                unsupported(format!(
                    "certFile {} / keyFile {}: not a PEM certificate and key: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|e| {
            unsupported(format!(
                "cannot build the HTTP client: {}",
                crate::prom::error_chain(&e)
            ))
        })?;
        prometheus_http_query::Client::from(http, &c.url)
            .map_err(|_| unsupported(format!("invalid Prometheus URL {:?}", c.redacted_url())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_credentials() {
        assert_eq!(
            redact_url("https://admin:hunter2@thanos:9091/api"),
            "https://***@thanos:9091/api"
        );
        assert_eq!(redact_url("http://prom:9090"), "http://prom:9090");
        assert_eq!(redact_url("http://prom:9090/a@b"), "http://prom:9090/a@b");
    }

    #[test]
    fn secrets_are_reread_when_the_file_changes_and_never_printed() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("password");
        std::fs::write(&path, "first-secret\n").unwrap_or_else(|e| panic!("{e}"));
        let mut config = PromConfig::new("http://127.0.0.1:1");
        config.auth = Auth::Basic {
            username: "jobcarbon".into(),
            password_file: path.clone(),
        };
        config.header_files.insert("X-Api-Key".into(), path.clone());
        let headers = Headers::new(&config).unwrap_or_else(|e| panic!("{e}"));
        let first = headers.current().unwrap_or_else(|e| panic!("{e}"));
        let basic = |hs: &[(HeaderName, HeaderValue)]| {
            hs.iter()
                .find(|(n, _)| n == reqwest::header::AUTHORIZATION)
                .map(|(_, v)| v.to_str().unwrap_or_default().to_owned())
                .unwrap_or_default()
        };
        assert_eq!(
            basic(&first),
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode("jobcarbon:first-secret")
            )
        );
        // A rotated Secret: new content, new mtime.
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&path, "second-secret").unwrap_or_else(|e| panic!("{e}"));
        let later = SystemTime::now() + Duration::from_secs(5);
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("{e}"));
        file.set_modified(later).unwrap_or_else(|e| panic!("{e}"));
        let second = headers.current().unwrap_or_else(|e| panic!("{e}"));
        assert!(basic(&second).ends_with(
            &base64::engine::general_purpose::STANDARD.encode("jobcarbon:second-secret")
        ));
        let printed = format!("{headers:?} {second:?} {config:?}");
        assert!(!printed.contains("second-secret"), "{printed}");
        assert!(!printed.contains(
            &base64::engine::general_purpose::STANDARD.encode("jobcarbon:second-secret")
        ));
    }
}
