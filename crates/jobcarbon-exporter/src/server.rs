//! The HTTP server loop, bounded against hostile or broken clients: at most
//! [`MAX_CONNECTIONS`] connections (more are closed at once), request headers within
//! [`MAX_HEADER_BYTES`] and [`HEADER_TIMEOUT`] (slow-loris and idle keep-alive connections are
//! closed), request bodies within [`MAX_BODY_BYTES`] (the API takes none). Prometheus' scrape
//! keeps working while hundreds of idle or slow connections are held open.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

/// Open connections at most; the next ones are closed on accept.
pub const MAX_CONNECTIONS: usize = 1024;
/// Time a connection may take to send a request's headers (also bounds idle keep-alive).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// Size of a request's head (request line and headers).
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Size of a request body.
pub const MAX_BODY_BYTES: usize = 16 * 1024;
/// How long in-flight requests may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve_bounded(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = app.layer(DefaultBodyLimit::max(MAX_BODY_BYTES));
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                // Out of file descriptors and the like: keep serving the connections we have.
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tracing::warn!(
                limit = MAX_CONNECTIONS,
                "connection limit reached; closing a new connection"
            );
            continue;
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .max_buf_size(MAX_HEADER_BYTES.max(8192));
        let connection =
            http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            // A client that misbehaves only ends its own connection.
            let _ = connection.await;
            drop(permit);
        });
    }
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("in-flight requests still running after the drain period; stopping");
    }
    Ok(())
}
