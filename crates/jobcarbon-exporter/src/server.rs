//! The HTTP server loop, bounded against hostile or broken clients: at most
//! [`MAX_CONNECTIONS`] connections (more are closed at once), request headers within
//! [`MAX_HEADER_BYTES`] and [`HEADER_TIMEOUT`] (slow-loris and idle keep-alive connections are
//! closed), request bodies within [`MAX_BODY_BYTES`] (the API takes none). Prometheus' scrape
//! keeps working while hundreds of idle or slow connections are held open. With a TLS
//! config the handshake is bounded by [`HEADER_TIMEOUT`] too.

use axum::Router;
use axum::extract::DefaultBodyLimit;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

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

/// A certificate/key pair that cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {source}")]
    Cert {
        path: String,
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error("TLS certificate {0}: no certificate in the file")]
    NoCert(String),
    #[error("TLS key {path}: {source}")]
    Key {
        path: String,
        source: tokio_rustls::rustls::pki_types::pem::Error,
    },
    #[error("TLS certificate and key do not make a server config: {0}")]
    Config(#[from] tokio_rustls::rustls::Error),
}

/// A rustls server config from PEM files (a `kubernetes.io/tls` Secret's `tls.crt`, the
/// chain leaf first, and `tls.key`), HTTP/1.1 only.
pub fn load_tls(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<Arc<ServerConfig>, TlsError> {
    let shown = |p: &std::path::Path| p.display().to_string();
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|source| TlsError::Cert {
            path: shown(cert),
            source,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCert(shown(cert)));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
        path: shown(key),
        source,
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `app` on `listener` (over TLS with `tls`) until `shutdown` resolves, then drains
/// in-flight requests.
pub async fn serve_bounded(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<ServerConfig>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = tls.map(TlsAcceptor::from);
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
        let (app, watcher, tls) = (app.clone(), graceful.watcher(), tls.clone());
        tokio::spawn(async move {
            // A client that misbehaves only ends its own connection.
            match tls {
                None => serve_connection(stream, app, watcher).await,
                Some(acceptor) => {
                    match tokio::time::timeout(HEADER_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => serve_connection(stream, app, watcher).await,
                        Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
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

/// One HTTP/1.1 connection with the bounds above, until it ends or the server drains.
async fn serve_connection<I>(io: I, app: Router, watcher: hyper_util::server::graceful::Watcher)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES.max(8192));
    let connection = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app));
    let _ = watcher.watch(connection).await;
}
