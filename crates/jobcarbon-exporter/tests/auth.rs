//! `--auth` through the real server and the real kube client: the fake API server answers the
//! TokenReviews and SubjectAccessReviews with Kubernetes' own JSON. Allowed, denied, unknown
//! and malformed tokens; the probes stay open; decisions are cached; TLS from PEM files.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_exporter::{ServeOptions, load_tls, spawn_with};
use jobcarbon_kube::auth::{CacheLimits, CachedReviewer, KubeAccessReviewer};
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_testkit::kube_api::{FakeKubeApi, SUBJECT_ACCESS_REVIEWS, TOKEN_REVIEWS};
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

const PROMETHEUS: &str = "system:serviceaccount:monitoring:prometheus";
const INTRUDER: &str = "system:serviceaccount:default:intruder";

async fn fake_api() -> FakeKubeApi {
    let api = FakeKubeApi::start().await.unwrap();
    api.add_token("prom-token", PROMETHEUS, &["system:serviceaccounts"]);
    api.add_token("other-token", INTRUDER, &["system:serviceaccounts"]);
    // The documented ClusterRole, bound to Prometheus' service account.
    api.allow_non_resource(PROMETHEUS, "/metrics", "get");
    api.allow_non_resource(PROMETHEUS, "/api/*", "get");
    api
}

fn options(api: &FakeKubeApi) -> ServeOptions {
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let reviewer = CachedReviewer::new(KubeAccessReviewer::new(client), CacheLimits::default());
    ServeOptions {
        auth: Some(Arc::new(reviewer)),
        tls: None,
        ..ServeOptions::default()
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    path: &str,
    token: Option<&str>,
) -> String {
    let auth = token
        .map(|t| format!("Authorization: {t}\r\n"))
        .unwrap_or_default();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn get(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> String {
    exchange(TcpStream::connect(addr).await.unwrap(), path, token).await
}

fn status(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn tokens_are_reviewed_and_rbac_decides() {
    let api = fake_api().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = spawn_with(listener, LedgerView::shared(), options(&api));

    // Allowed: Prometheus' token on /metrics and on the JSON API.
    let ok = get(addr, "/metrics", Some("Bearer prom-token")).await;
    assert_eq!(status(&ok), 200, "{ok}");
    assert!(ok.contains("# EOF") || ok.contains("jobcarbon"), "{ok}");
    let products = get(addr, "/api/v1/products", Some("Bearer prom-token")).await;
    assert_eq!(status(&products), 200, "{products}");
    // The web view is a path of its own: no rule grants "/", so it is denied.
    let ui = get(addr, "/", Some("Bearer prom-token")).await;
    assert_eq!(status(&ui), 403, "{ui}");

    // Denied: a real user without a binding gets 403, naming the user.
    let denied = get(addr, "/api/v1/workloads", Some("Bearer other-token")).await;
    assert_eq!(status(&denied), 403, "{denied}");
    assert!(denied.contains(INTRUDER), "{denied}");

    // Unauthenticated: unknown, missing and malformed tokens get 401 with a challenge.
    for token in [
        Some("Bearer not-a-token"),
        None,
        Some("Basic cHJvbTpwdw=="),
        Some("Bearer "),
        Some("Bearer two words"),
    ] {
        let answer = get(addr, "/metrics", token).await;
        assert_eq!(status(&answer), 401, "{token:?}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("www-authenticate: bearer"),
            "{answer}"
        );
    }

    // The probes stay open.
    assert_eq!(status(&get(addr, "/healthz", None).await), 200);
    assert_eq!(status(&get(addr, "/readyz", Some("garbage")).await), 503);

    // Malformed tokens never reached the API server; each decision was reviewed once.
    let reviews = api.count(TOKEN_REVIEWS);
    assert_eq!(reviews, 5, "prom ×3 paths, other, not-a-token");
    assert_eq!(api.count(SUBJECT_ACCESS_REVIEWS), 4);
    for _ in 0..5 {
        assert_eq!(
            status(&get(addr, "/metrics", Some("Bearer prom-token")).await),
            200
        );
    }
    assert_eq!(api.count(TOKEN_REVIEWS), reviews, "cached decisions");

    // The reviews carried what kube-rbac-proxy sends.
    let sar = api
        .requests()
        .into_iter()
        .find(|r| r.path == SUBJECT_ACCESS_REVIEWS)
        .unwrap();
    assert_eq!(sar.body["spec"]["user"], PROMETHEUS);
    assert_eq!(sar.body["spec"]["groups"][0], "system:serviceaccounts");
    assert_eq!(
        sar.body["spec"]["nonResourceAttributes"]["path"],
        "/metrics"
    );
    assert_eq!(sar.body["spec"]["nonResourceAttributes"]["verb"], "get");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_api_server_is_503_and_not_cached() {
    let api = fake_api().await;
    let opts = options(&api);
    drop(api);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = spawn_with(listener, LedgerView::shared(), opts);
    let answer = get(addr, "/metrics", Some("Bearer prom-token")).await;
    assert_eq!(status(&answer), 503, "{answer}");
    assert_eq!(status(&get(addr, "/healthz", None).await), 200);
    server.shutdown().await.unwrap();
}

/// A self-signed serving certificate for 127.0.0.1, made by the openssl CLI.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let config = dir.join("req.cnf");
    std::fs::write(
        &config,
        "[req]\ndistinguished_name=dn\nx509_extensions=ext\nprompt=no\n[dn]\nCN=jobcarbon\n\
         [ext]\nsubjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args(["-nodes", "-days", "2", "-config"])
        .arg(&config)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl is installed");
    assert!(made.status.success(), "{made:?}");
    (cert, key)
}

#[tokio::test]
async fn tls_from_a_secret_s_pem_files_with_auth() {
    use tokio_rustls::rustls::{self, pki_types::pem::PemObject};
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let api = fake_api().await;
    let mut opts = options(&api);
    opts.tls = Some(load_tls(&cert, &key).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = spawn_with(listener, LedgerView::shared(), opts);

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(&cert).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tls = |token: Option<&'static str>, path: &'static str| {
        let connector = connector.clone();
        async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            exchange(connector.connect(name, tcp).await.unwrap(), path, token).await
        }
    };
    assert_eq!(
        status(&tls(Some("Bearer prom-token"), "/metrics").await),
        200
    );
    assert_eq!(status(&tls(None, "/metrics").await), 401);
    assert_eq!(status(&tls(None, "/healthz").await), 200);
    // Plain HTTP on the TLS port gets no answer.
    assert_eq!(status(&get(addr, "/healthz", None).await), 0);
    server.shutdown().await.unwrap();

    // A key file that is not a key is a clear error naming the file.
    let err = load_tls(&cert, &cert).expect_err("a certificate is no key");
    assert!(err.to_string().contains("tls.crt"), "{err}");
}
