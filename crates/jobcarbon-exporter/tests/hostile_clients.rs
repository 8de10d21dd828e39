//! The HTTP surface under hostile clients, over real sockets: hundreds of idle connections and
//! slow-loris clients trickling headers do not stop a scrape; oversized headers are refused;
//! idle connections are closed after the header timeout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_exporter::{HEADER_TIMEOUT, MAX_HEADER_BYTES, spawn};
use jobcarbon_ledger::view::LedgerView;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn get(addr: std::net::SocketAddr, path: &str, extra: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out).await;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_survive_idle_and_slow_clients() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = spawn(listener, LedgerView::shared());

    // 300 connections that never send a byte, 50 that trickle an endless header.
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nX-Slow: a")
            .await
            .unwrap();
        slow.push(s);
    }
    for s in &mut slow {
        let _ = s.write_all(b"aaaa").await;
    }

    // The scrape is answered meanwhile (generous bound: this is not a timing test).
    let response = tokio::time::timeout(Duration::from_secs(10), get(addr, "/metrics", ""))
        .await
        .expect("/metrics answered while 350 hostile connections are open");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // A request head over the limit is refused, not buffered without bound.
    let huge = format!("X-Big: {}\r\n", "a".repeat(MAX_HEADER_BYTES * 2));
    let response = get(addr, "/healthz", &huge).await;
    assert!(
        response.is_empty() || response.starts_with("HTTP/1.1 431"),
        "{response}"
    );

    // Idle connections are closed once the header timeout has passed.
    let started = Instant::now();
    let mut first = idle.remove(0);
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(HEADER_TIMEOUT * 3, first.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
    assert!(started.elapsed() <= HEADER_TIMEOUT * 3);
    server.shutdown().await.unwrap();
}
