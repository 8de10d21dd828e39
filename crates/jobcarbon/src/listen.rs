//! `--listen` for the servers (DESIGN §11): `[::]:PORT` by default, which on Linux accepts
//! IPv6 and IPv4 (dual stack); where the node has no IPv6 (kernel booted with
//! `ipv6.disable=1`, or no IPv6 loopback in the pod) binding `[::]` fails, and the server binds
//! `0.0.0.0:PORT` instead. Any other address is bound as given.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// The ledger's default `--listen`.
pub const LEDGER_DEFAULT: &str = "[::]:9464";
/// The node agent's default `--listen`.
pub const NODE_DEFAULT: &str = "[::]:9465";

/// The addresses to try, in order: `[::]:PORT` falls back to `0.0.0.0:PORT`.
pub fn candidates(addr: SocketAddr) -> Vec<SocketAddr> {
    if addr.ip() == Ipv6Addr::UNSPECIFIED {
        vec![
            addr,
            SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port()),
        ]
    } else {
        vec![addr]
    }
}

/// Binds the first candidate that works with `bind`. An address in use is not a missing IPv6
/// stack: that error is returned at once, as is the last error when every candidate fails.
pub fn bind_with<T>(
    addr: SocketAddr,
    mut bind: impl FnMut(SocketAddr) -> io::Result<T>,
) -> io::Result<(T, SocketAddr)> {
    let mut first_error = None;
    for candidate in candidates(addr) {
        match bind(candidate) {
            Ok(bound) => {
                if let Some(e) = &first_error {
                    tracing::warn!(requested = %addr, listen = %candidate, error = %e,
                        "no IPv6 on this node: listening on IPv4 only");
                }
                return Ok((bound, candidate));
            }
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => return Err(e),
            Err(e) => {
                if first_error.is_none() {
                    first_error = Some(e);
                } else {
                    return Err(e);
                }
            }
        }
    }
    Err(first_error.unwrap_or_else(|| io::Error::other("no address to listen on")))
}

/// Binds `addr` (with the IPv4 fallback of `[::]`) as a tokio listener. Must run inside a
/// tokio runtime.
pub fn bind(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let (listener, _) = bind_with(addr, |a| {
        let listener = std::net::TcpListener::bind(a)?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })?;
    tokio::net::TcpListener::from_std(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_ipv6_any_address() {
        let ledger: SocketAddr = LEDGER_DEFAULT.parse().unwrap();
        let node: SocketAddr = NODE_DEFAULT.parse().unwrap();
        assert_eq!(ledger.ip(), Ipv6Addr::UNSPECIFIED);
        assert_eq!((ledger.port(), node.port()), (9464, 9465));
    }

    #[test]
    fn ipv6_any_falls_back_to_ipv4_any_on_the_same_port() {
        let addr: SocketAddr = "[::]:9464".parse().unwrap();
        assert_eq!(
            candidates(addr),
            vec![addr, "0.0.0.0:9464".parse::<SocketAddr>().unwrap()]
        );
        // Explicit addresses are bound as given.
        for given in ["0.0.0.0:9464", "127.0.0.1:1", "[::1]:9464", "[fd00::1]:80"] {
            let a: SocketAddr = given.parse().unwrap();
            assert_eq!(candidates(a), vec![a]);
        }
    }

    #[test]
    fn a_node_without_ipv6_gets_the_ipv4_listener() {
        let addr: SocketAddr = "[::]:9464".parse().unwrap();
        let (bound, at) = bind_with(addr, |a| {
            if a.is_ipv6() {
                // What socket(AF_INET6) returns with ipv6.disable=1.
                Err(io::Error::from_raw_os_error(97))
            } else {
                Ok(a)
            }
        })
        .unwrap();
        assert_eq!(bound, "0.0.0.0:9464".parse::<SocketAddr>().unwrap());
        assert_eq!(at, bound);
    }

    #[test]
    fn a_port_in_use_is_not_retried_on_ipv4() {
        let mut tried = Vec::new();
        let err = bind_with("[::]:9464".parse().unwrap(), |a| -> io::Result<()> {
            tried.push(a);
            Err(io::ErrorKind::AddrInUse.into())
        })
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert_eq!(tried.len(), 1);
    }

    #[test]
    fn both_failing_reports_the_ipv4_error() {
        let err = bind_with("[::]:1".parse().unwrap(), |a| -> io::Result<()> {
            Err(io::Error::other(format!("cannot bind {a}")))
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "cannot bind 0.0.0.0:1");
    }

    #[tokio::test]
    async fn the_default_address_accepts_ipv4_clients() {
        // On a dual-stack host `[::]` takes IPv4 too; on one without IPv6 the fallback does.
        let listener = bind("[::]:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accept = tokio::spawn(async move { listener.accept().await.map(|_| ()) });
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("an IPv4 client reaches the default listener");
        accept.await.unwrap().unwrap();
    }
}
