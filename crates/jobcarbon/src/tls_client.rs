//! A blocking TLS client for `jobcarbon report` against an https:// ledger (`exporter.tls`):
//! rustls with the aws-lc-rs provider, as the kube client uses; roots from `--ca-file`, else
//! the platform's (`/etc/ssl/certs`).

use anyhow::{Context, bail};
use std::path::Path;
use std::sync::Arc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

/// Where the system's CA bundle lives on Debian, Alpine and RHEL.
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/cert.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
];

/// A client config trusting the certificates of `ca_file` (PEM), else the system bundle.
pub fn config(ca_file: Option<&Path>) -> anyhow::Result<Arc<ClientConfig>> {
    let bundle = match ca_file {
        Some(path) => path.to_owned(),
        None => match SYSTEM_BUNDLES.iter().map(Path::new).find(|p| p.exists()) {
            Some(path) => path.to_owned(),
            None => bail!("no system CA bundle found; give the ledger's CA with --ca-file"),
        },
    };
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(&bundle)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| {
            format!(
                "--ca-file {}: not a PEM certificate bundle",
                bundle.display()
            )
        })?;
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        bail!("--ca-file {}: no usable certificate", bundle.display());
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS provider")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// `stream` wrapped in TLS to `host` (a DNS name or an IP address the certificate names).
pub fn connect(
    config: &Arc<ClientConfig>,
    host: &str,
    stream: std::net::TcpStream,
) -> anyhow::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let name = ServerName::try_from(host.to_owned())
        .with_context(|| format!("{host:?} is not a host name for TLS"))?;
    let connection = rustls::ClientConnection::new(config.clone(), name)
        .context("cannot start a TLS connection")?;
    Ok(rustls::StreamOwned::new(connection, stream))
}
