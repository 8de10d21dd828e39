//! The HTTP side shared by the providers: reqwest (prometheus-http-query's, rustls), status
//! codes mapped to [`ProviderError`], `Retry-After` read, bodies parsed as JSON.

use super::ProviderError;
use crate::prom::error_chain;
use jobcarbon_core::Seconds;
use prometheus_http_query::reqwest;
use serde::de::DeserializeOwned;
use std::time::Duration;

pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    pub(crate) base: url::Url,
    pub(crate) provider: &'static str,
}

impl Http {
    pub(crate) fn new(
        provider: &'static str,
        base: &str,
        timeout: Duration,
    ) -> Result<Self, ProviderError> {
        let bad = |reason: String| ProviderError::BadResponse {
            provider,
            url: crate::access::redact_url(base),
            reason,
        };
        let mut base = url::Url::parse(base).map_err(|e| bad(format!("invalid URL: {e}")))?;
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad(
                "credentials in the URL: use the credential files".into()
            ));
        }
        // Paths are joined below the base, whether or not it ends with `/`.
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|e| bad(error_chain(&e)))?;
        Ok(Self {
            client,
            base,
            provider,
        })
    }

    /// `base` + `path` with the query pairs, percent-encoded.
    pub(crate) fn url(&self, path: &str, query: &[(&str, &str)]) -> url::Url {
        let mut url = self
            .base
            .join(path.trim_start_matches('/'))
            .unwrap_or_else(|_| self.base.clone());
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Sends `request` (built for `url`) and parses a 2xx JSON body. `files` names the
    /// credential files for an auth error.
    pub(crate) async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        url: &url::Url,
        files: &str,
    ) -> Result<T, ProviderError> {
        let shown = without_query(url);
        let response = request
            .send()
            .await
            .map_err(|e| ProviderError::Unreachable {
                provider: self.provider,
                url: shown.clone(),
                reason: error_chain(&e),
            })?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry_after(v, crate::now()));
        match status {
            200..=299 => {}
            401 | 403 => {
                return Err(ProviderError::Auth {
                    provider: self.provider,
                    url: shown,
                    status,
                    files: files.to_owned(),
                });
            }
            429 => {
                return Err(ProviderError::RateLimited {
                    provider: self.provider,
                    url: shown,
                    retry_after,
                });
            }
            _ => {
                return Err(ProviderError::Http {
                    provider: self.provider,
                    url: shown,
                    status,
                    retry_after,
                });
            }
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| ProviderError::Unreachable {
                provider: self.provider,
                url: shown.clone(),
                reason: error_chain(&e),
            })?;
        serde_json::from_slice(&body).map_err(|e| ProviderError::BadResponse {
            provider: self.provider,
            url: shown,
            reason: e.to_string(),
        })
    }
}

/// The URL for messages: no query (it may carry identifiers), no credentials.
fn without_query(url: &url::Url) -> String {
    let mut shown = url.clone();
    shown.set_query(None);
    crate::access::redact_url(shown.as_str())
}

/// `Retry-After`: delay seconds, or an HTTP date (RFC 9110), as seconds from `now`.
pub(crate) fn retry_after(value: &str, now: Seconds) -> Option<Seconds> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then_some(Seconds(secs));
    }
    let at = jiff::fmt::rfc2822::DateTimeParser::new()
        .parse_timestamp(value)
        .ok()?;
    Some((Seconds(at.as_second() as f64) - now).non_negative())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        assert_eq!(retry_after("120", Seconds(0.0)), Some(Seconds(120.0)));
        // Sun, 06 Nov 1994 08:49:37 GMT = 784111777.
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:49:37 GMT", Seconds(784_111_700.0)),
            Some(Seconds(77.0))
        );
        assert_eq!(retry_after("soon", Seconds(0.0)), None);
    }

    #[test]
    fn urls_join_below_the_base_and_hide_queries() {
        let http = Http::new("test", "http://127.0.0.1:1/prefix", Duration::from_secs(1))
            .unwrap_or_else(|e| panic!("{e}"));
        let url = http.url("/v3/forecast", &[("region", "CAISO_NORTH")]);
        assert_eq!(
            url.as_str(),
            "http://127.0.0.1:1/prefix/v3/forecast?region=CAISO_NORTH"
        );
        assert_eq!(without_query(&url), "http://127.0.0.1:1/prefix/v3/forecast");
        assert!(Http::new("test", "https://u:p@host/", Duration::from_secs(1)).is_err());
    }
}
