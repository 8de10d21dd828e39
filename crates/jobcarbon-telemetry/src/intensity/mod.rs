//! Live grid intensity from commercial providers: Electricity Maps (average, life-cycle) and
//! WattTime (marginal, `co2_moer`), behind one [`IntensityProvider`] trait, and
//! [`PolledProvider`], the cache that polls no faster than the configured interval, backs off
//! on 429 and 5xx (honouring `Retry-After`) and keeps history for backfill.
//!
//! Credentials come from files (`SecretFile`, re-read when they change) and never
//! appear in errors, logs or `Debug` output: messages name the file.

mod electricity_maps;
mod http;
mod polled;
mod watttime;

pub use electricity_maps::{ElectricityMaps, ElectricityMapsConfig};
pub use polled::PolledProvider;
pub use watttime::{WattTime, WattTimeConfig};

use async_trait::async_trait;
use jobcarbon_core::Seconds;
use jobcarbon_core::intensity::{IntensityPoint, IntensitySeries, Signal};

/// Why a provider gave no value. [`ProviderError::kind`] is the `kind` label of
/// `jobcarbon_source_errors_total`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderError {
    /// The provider refused the credentials (HTTP 401/403).
    #[error("{provider}: credentials refused (HTTP {status}) by {url}; check {files}")]
    Auth {
        /// `electricity-maps` or `watttime`.
        provider: &'static str,
        /// The URL asked, without credentials.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The credential files (never their content).
        files: String,
    },
    /// HTTP 429.
    #[error("{provider}: rate limited (HTTP 429) by {url}")]
    RateLimited {
        /// `electricity-maps` or `watttime`.
        provider: &'static str,
        /// The URL asked.
        url: String,
        /// The provider's `Retry-After`, if given.
        retry_after: Option<Seconds>,
    },
    /// Another HTTP error status.
    #[error("{provider}: {url} answered HTTP {status}")]
    Http {
        /// `electricity-maps` or `watttime`.
        provider: &'static str,
        /// The URL asked.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The provider's `Retry-After`, if given (5xx).
        retry_after: Option<Seconds>,
    },
    /// No answer (DNS, connection, TLS or timeout).
    #[error("{provider}: {url} unreachable: {reason}")]
    Unreachable {
        /// `electricity-maps` or `watttime`.
        provider: &'static str,
        /// The URL asked.
        url: String,
        /// What failed.
        reason: String,
    },
    /// An answer that is not the documented JSON.
    #[error("{provider}: {url} gave a bad response: {reason}")]
    BadResponse {
        /// `electricity-maps` or `watttime`.
        provider: &'static str,
        /// The URL asked.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// A credential file cannot be read (the message names the file, never its content).
    #[error("{provider}: {reason}")]
    Credentials {
        /// `electricity-maps` or `watttime`.
        provider: &'static str,
        /// What failed.
        reason: String,
    },
    /// Not asked: the poller is backing off after an earlier failure.
    #[error("{provider}: not asking before {until} s (backing off after: {cause})")]
    BackingOff {
        /// `electricity-maps` or `watttime`.
        provider: &'static str,
        /// When it will ask again, seconds since the Unix epoch.
        until: f64,
        /// The failure it is backing off from.
        cause: String,
    },
    /// The provider answered but has no value for the time or zone asked.
    #[error("{provider}: no data for {what}")]
    NoData {
        /// `electricity-maps` or `watttime`.
        provider: &'static str,
        /// What was asked for.
        what: String,
    },
}

impl ProviderError {
    /// The `kind` label of `jobcarbon_source_errors_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderError::Auth { .. } => "auth",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Http { .. } => "http",
            ProviderError::Unreachable { .. } => "unreachable",
            ProviderError::BadResponse { .. } => "bad_response",
            ProviderError::Credentials { .. } => "credentials",
            ProviderError::BackingOff { .. } => "backoff",
            ProviderError::NoData { .. } => "no_data",
        }
    }

    /// What the provider asked for (`Retry-After`), if anything.
    pub fn retry_after(&self) -> Option<Seconds> {
        match self {
            ProviderError::RateLimited { retry_after, .. }
            | ProviderError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// One intensity provider, answering in gCO2e/kWh whatever unit it publishes.
#[async_trait]
pub trait IntensityProvider: Send + Sync {
    /// `electricity-maps` or `watttime`: the `source` label of self-metrics.
    fn name(&self) -> &'static str;
    /// The kind of figure it publishes.
    fn signal(&self) -> Signal;
    /// The most recent value.
    async fn latest(&self) -> Result<IntensityPoint, ProviderError>;
    /// The forecast from about now on.
    async fn forecast(&self) -> Result<IntensitySeries, ProviderError>;
    /// Published values between `start` and `end` (seconds since the Unix epoch).
    async fn history(&self, start: Seconds, end: Seconds)
    -> Result<IntensitySeries, ProviderError>;
}

/// A secret file's error without the "prometheus" source name of the shared helper.
pub(crate) fn secret_reason(e: crate::SourceError) -> String {
    match e {
        crate::SourceError::Unsupported { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// RFC 3339 (`2019-05-21T00:00:00.000Z`, `2022-07-15T00:00:00+00:00`) → seconds.
pub(crate) fn parse_time(text: &str) -> Option<Seconds> {
    let ts: jiff::Timestamp = text.parse().ok()?;
    Some(Seconds(ts.as_millisecond() as f64 / 1000.0))
}

/// Seconds → RFC 3339 UTC (`2022-07-15T00:00:00Z`), whole seconds.
pub(crate) fn format_time(at: Seconds) -> String {
    jiff::Timestamp::from_second(at.value().floor() as i64)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_providers_time_formats_parse() {
        assert_eq!(
            parse_time("2019-05-21T00:00:00.000Z"),
            Some(Seconds(1_558_396_800.0))
        );
        assert_eq!(
            parse_time("2019-05-21T02:00:00+02:00"),
            Some(Seconds(1_558_396_800.0))
        );
        assert_eq!(
            format_time(Seconds(1_558_396_800.5)),
            "2019-05-21T00:00:00Z"
        );
        assert_eq!(parse_time("yesterday"), None);
    }
}
