//! Reaching Prometheus as production clusters run it, against a real Prometheus:
//! TLS with a private CA, client certificates (mTLS) and basic auth through Prometheus' own
//! `--web.config.file`, and a tenant header required by a reverse proxy (Mimir/Cortex style).
//! No secret appears in any error or `Debug` output.

// Test helpers fail loudly: a panic is the test failing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_core::Seconds;
use jobcarbon_telemetry::dcgm::{DcgmConfig, DcgmSource};
use jobcarbon_telemetry::prom::{Auth, PromClient, PromConfig};
use jobcarbon_telemetry::{EnergySource, SourceError};
use jobcarbon_testkit::prometheus::{History, PromServer, tenant_proxy, unix_now};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PASSWORD: &str = "correct-horse-battery";
/// bcrypt of [`PASSWORD`] (cost 4, test only), as Prometheus' web config wants it.
const PASSWORD_BCRYPT: &str = "$2b$04$R27j5RdI1IfHD3n7J01qfOUdAJjSWNQvaP579HIzPJbOLvvmgsgKK";

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl) on PATH");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private CA, a server certificate for 127.0.0.1 and a client certificate, all signed by it.
fn private_pki(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=jobcarbon test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ],
    );
    // Extensions make v3 certificates (webpki rejects v1).
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
        let key = format!("{name}.key");
        let csr = format!("{name}.csr");
        let crt = format!("{name}.crt");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={name}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                ext,
                "-out",
                &crt,
            ],
        );
    }
}

fn history(t: i64) -> History {
    let mut h = History::new();
    h.series(
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
        &[
            ("UUID", "GPU-1"),
            ("Hostname", "n1"),
            ("pod", "p"),
            ("namespace", "ml"),
            ("container", "c"),
        ],
        &[(t, 5e6)],
    );
    h
}

/// Reads, retrying while the server finishes starting (its readiness is not visible through
/// TLS to the harness): for the first, successful read of each server.
async fn read(config: PromConfig, at: i64) -> Result<usize, SourceError> {
    read_tries(config, at, 50).await
}

/// One read, once the server is known to serve.
async fn read_once(config: PromConfig, at: i64) -> Result<usize, SourceError> {
    read_tries(config, at, 1).await
}

async fn read_tries(config: PromConfig, at: i64, tries: usize) -> Result<usize, SourceError> {
    let client = PromClient::new(config)?;
    let source = DcgmSource::new(client, DcgmConfig::default());
    let mut last = None;
    for _ in 0..tries {
        match source.read(Seconds(at as f64)).await {
            Ok(readings) => return Ok(readings.len()),
            Err(e @ SourceError::Unsupported { .. }) => return Err(e),
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(last.expect("at least one attempt"))
}

fn https_config(port: u16, pki: &Path, password_file: &Path) -> PromConfig {
    let mut c = PromConfig::new(format!("https://127.0.0.1:{port}"));
    c.timeout = Duration::from_secs(10);
    c.tls.ca_file = Some(pki.join("ca.crt"));
    c.tls.cert_file = Some(pki.join("client.crt"));
    c.tls.key_file = Some(pki.join("client.key"));
    c.auth = Auth::Basic {
        username: "jobcarbon".into(),
        password_file: password_file.to_owned(),
    };
    c
}

fn no_secret(text: &str) {
    assert!(!text.contains(PASSWORD), "secret leaked: {text}");
    assert!(!text.contains("wrong-password"), "secret leaked: {text}");
}

#[tokio::test]
async fn private_ca_client_certificate_and_basic_auth() {
    let pki = tempfile::tempdir().unwrap();
    private_pki(pki.path());
    let p = pki.path().display();
    let web = format!(
        "tls_server_config:\n  cert_file: {p}/server.crt\n  key_file: {p}/server.key\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {p}/ca.crt\nbasic_auth_users:\n  jobcarbon: {PASSWORD_BCRYPT}\n"
    );
    let t = unix_now() - 60;
    let prom = tokio::task::spawn_blocking(move || {
        PromServer::builder()
            .history(&history(t))
            .web_config(web)
            .start()
    })
    .await
    .unwrap()
    .unwrap();
    let password: PathBuf = pki.path().join("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();

    // Everything right: the private CA verifies the server, the client certificate and the
    // password from the file are accepted.
    let good = https_config(prom.port(), pki.path(), &password);
    assert_eq!(read(good.clone(), t).await.unwrap(), 1);

    // Without the CA: the system roots do not know it.
    let mut no_ca = good.clone();
    no_ca.tls.ca_file = None;
    let err = read_once(no_ca, t).await.unwrap_err();
    assert!(matches!(err, SourceError::Unreachable { .. }), "{err}");

    // insecureSkipVerify accepts the unknown CA (and says so in the log).
    let mut insecure = good.clone();
    insecure.tls.ca_file = None;
    insecure.tls.insecure_skip_verify = true;
    assert_eq!(read_once(insecure, t).await.unwrap(), 1);

    // Without a client certificate the TLS handshake is refused.
    let mut no_cert = good.clone();
    no_cert.tls.cert_file = None;
    no_cert.tls.key_file = None;
    assert!(read_once(no_cert, t).await.is_err());

    // A wrong password: 401, and neither password appears anywhere.
    let wrong = pki.path().join("wrong");
    std::fs::write(&wrong, "wrong-password").unwrap();
    let bad = https_config(prom.port(), pki.path(), &wrong);
    let debug = format!("{bad:?} {:?}", PromClient::new(bad.clone()).unwrap());
    let err = read_once(bad, t).await.unwrap_err();
    assert!(matches!(err, SourceError::BadResponse { .. }), "{err}");
    assert!(err.to_string().contains("401"), "{err}");
    no_secret(&err.to_string());
    no_secret(&format!("{err:?}"));
    no_secret(&debug);

    // The password file is rotated: the next query uses the new content.
    std::fs::write(&wrong, PASSWORD).unwrap();
    let file = std::fs::File::options().write(true).open(&wrong).unwrap();
    file.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    let rotated = https_config(prom.port(), pki.path(), &wrong);
    assert_eq!(read_once(rotated, t).await.unwrap(), 1);

    // mTLS settings must come in pairs: a configuration error naming the files' keys.
    let mut half = good;
    half.tls.key_file = None;
    let err = PromClient::new(half).unwrap_err();
    assert!(err.to_string().contains("certFile and keyFile"), "{err}");
}

#[tokio::test]
async fn tenant_header_through_a_gateway() {
    let t = unix_now() - 60;
    let prom =
        tokio::task::spawn_blocking(move || PromServer::builder().history(&history(t)).start())
            .await
            .unwrap()
            .unwrap();
    let gateway = tenant_proxy(prom.port(), "X-Scope-OrgID", "team-a").unwrap();
    let url = format!("http://127.0.0.1:{gateway}");

    let mut without = PromConfig::new(url.clone());
    without.timeout = Duration::from_secs(10);
    let err = read_once(without.clone(), t).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");

    let mut with = without.clone();
    with.headers.insert("X-Scope-OrgID".into(), "team-a".into());
    assert_eq!(read(with, t).await.unwrap(), 1);

    // The same header from a file (a secret tenant key) works too.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tenant");
    std::fs::write(&file, "team-a\n").unwrap();
    let mut from_file = without;
    from_file.header_files.insert("X-Scope-OrgID".into(), file);
    assert_eq!(read(from_file, t).await.unwrap(), 1);
}
