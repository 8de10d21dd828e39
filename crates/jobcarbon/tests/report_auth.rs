//! `jobcarbon report --token-file` (and `--ca-file` for https://) against a ledger surface with
//! `--auth` and TLS: the real server, its access reviews answered by the fake API server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_exporter::{ServeOptions, load_tls, spawn_with};
use jobcarbon_kube::auth::{CacheLimits, CachedReviewer, KubeAccessReviewer};
use jobcarbon_ledger::view::LedgerView;
use jobcarbon_testkit::kube_api::FakeKubeApi;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

fn report(url: &str, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_jobcarbon"))
        .arg("report")
        .args(["--url", url, "--format", "json"])
        .args(args)
        .output()
        .expect("run jobcarbon report");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn self_signed(dir: &Path) -> (String, String) {
    let config = dir.join("req.cnf");
    std::fs::write(
        &config,
        "[req]\ndistinguished_name=dn\nx509_extensions=ext\nprompt=no\n[dn]\nCN=jobcarbon\n\
         [ext]\nsubjectAltName=IP:127.0.0.1\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let made = Command::new("openssl")
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
    (cert.display().to_string(), key.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_sends_the_token_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path());
    let api = FakeKubeApi::start().await.unwrap();
    let user = "system:serviceaccount:finance:reporter";
    api.add_token("reporter-token", user, &["system:serviceaccounts"]);
    api.add_token("nobody-token", "system:serviceaccount:x:nobody", &[]);
    api.allow_non_resource(user, "/api/*", "get");
    let client = kube::Client::try_from(kube::Config::new(api.url().parse().unwrap())).unwrap();
    let reviewer = CachedReviewer::new(KubeAccessReviewer::new(client), CacheLimits::default());
    let options = ServeOptions {
        auth: Some(Arc::new(reviewer)),
        tls: Some(load_tls(Path::new(&cert), Path::new(&key)).unwrap()),
        ..ServeOptions::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let server = spawn_with(listener, LedgerView::shared(), options);
    let token = dir.path().join("token");
    std::fs::write(&token, "reporter-token\n").unwrap();
    let nobody = dir.path().join("nobody");
    std::fs::write(&nobody, "nobody-token").unwrap();
    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let token = token.display().to_string();

    let url2 = url.clone();
    let runs = tokio::task::spawn_blocking(move || {
        let ok = report(&url2, &["--token-file", &token, "--ca-file", &cert]);
        let anonymous = report(&url2, &["--ca-file", &cert]);
        let denied = report(
            &url2,
            &[
                "--token-file",
                &nobody.display().to_string(),
                "--ca-file",
                &cert,
            ],
        );
        let untrusted = report(&url2, &["--token-file", &token]);
        let blank = report(
            &url2,
            &[
                "--token-file",
                &empty.display().to_string(),
                "--ca-file",
                &cert,
            ],
        );
        (ok, anonymous, denied, untrusted, blank)
    })
    .await
    .unwrap();
    let (ok, anonymous, denied, untrusted, blank) = runs;
    assert_eq!(ok.0, 0, "{ok:?}");
    let answer: serde_json::Value = serde_json::from_str(&ok.1).unwrap();
    assert!(answer.get("window").is_some(), "{answer}");
    assert_eq!(anonymous.0, 1, "{anonymous:?}");
    assert!(anonymous.2.contains("401"), "{anonymous:?}");
    assert_eq!(denied.0, 1, "{denied:?}");
    assert!(denied.2.contains("403"), "{denied:?}");
    assert_ne!(
        untrusted.0, 0,
        "a self-signed certificate is not trusted without --ca-file"
    );
    assert_eq!(blank.0, 1, "{blank:?}");
    assert!(blank.2.contains("--token-file"), "{blank:?}");
    server.shutdown().await.unwrap();
}
