//! Electricity Maps API v3: `GET /v3/carbon-intensity/{latest,forecast,history,past-range}`
//! with the `auth-token` header. Values are gCO2eq/kWh, life-cycle by default (average).

use super::http::Http;
use super::{IntensityProvider, ProviderError, format_time, parse_time};
use crate::access::SecretFile;
use async_trait::async_trait;
use jobcarbon_core::intensity::{IntensityPoint, IntensitySeries, Signal};
use jobcarbon_core::{GramsPerKwh, Seconds};
use serde::Deserialize;
use std::path::PathBuf;
use std::time::Duration;

const NAME: &str = "electricity-maps";
/// `/history` answers the last 24 hours; older intervals go to `/past-range`.
const HISTORY_SPAN: Seconds = Seconds(24.0 * 3600.0);
/// `/past-range` answers at most 10 days of hourly data per request.
const PAST_RANGE_MAX: Seconds = Seconds(10.0 * 24.0 * 3600.0);

/// Where and how to reach Electricity Maps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElectricityMapsConfig {
    /// Zone key, e.g. `DE`, `US-CAL-CISO`.
    pub zone: String,
    /// File holding the API token, re-read when it changes.
    pub token_file: PathBuf,
    /// API base, `https://api.electricitymaps.com` by default.
    pub url: String,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl ElectricityMapsConfig {
    /// The public API base.
    pub const DEFAULT_URL: &'static str = "https://api.electricitymaps.com";
}

/// Electricity Maps' carbon-intensity API (life-cycle, average signal) for one zone.
pub struct ElectricityMaps {
    http: Http,
    zone: String,
    token: SecretFile,
    token_file: PathBuf,
}

impl std::fmt::Debug for ElectricityMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElectricityMaps")
            .field("url", &self.http.base.as_str())
            .field("zone", &self.zone)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// One point of `latest`, `forecast`, `history` and `past-range`: other fields
/// (`updatedAt`, `emissionFactorType`, `isEstimated`, …) are not needed.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EmPoint {
    /// `null` where the zone has no data for that hour.
    carbon_intensity: Option<f64>,
    datetime: String,
}

#[derive(Debug, Deserialize)]
struct EmForecast {
    forecast: Vec<EmPoint>,
}

#[derive(Debug, Deserialize)]
struct EmHistory {
    history: Vec<EmPoint>,
}

#[derive(Debug, Deserialize)]
struct EmPastRange {
    data: Vec<EmPoint>,
}

fn points(raw: Vec<EmPoint>) -> Vec<IntensityPoint> {
    raw.into_iter()
        .filter_map(|p| {
            Some(IntensityPoint {
                at: parse_time(&p.datetime)?,
                value: GramsPerKwh(p.carbon_intensity?),
            })
        })
        .collect()
}

fn series(raw: Vec<EmPoint>) -> IntensitySeries {
    let points = points(raw);
    let period = IntensitySeries::infer_period(&points, Seconds::from_hours(1.0));
    IntensitySeries::new(points, period)
}

impl ElectricityMaps {
    /// A client for `config`; fails only if the URL or HTTP client is unusable (the token is read per request).
    pub fn new(config: &ElectricityMapsConfig) -> Result<Self, ProviderError> {
        Ok(Self {
            http: Http::new(NAME, &config.url, config.timeout)?,
            zone: config.zone.clone(),
            token: SecretFile::new(config.token_file.clone()),
            token_file: config.token_file.clone(),
        })
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ProviderError> {
        let token = self.token.read().map_err(|e| ProviderError::Credentials {
            provider: NAME,
            reason: super::secret_reason(e),
        })?;
        let mut query = query.to_vec();
        query.insert(0, ("zone", self.zone.as_str()));
        let url = self.http.url(path, &query);
        let mut value = reqwest_header(&token)?;
        value.set_sensitive(true);
        let request = self
            .http
            .client
            .get(url.clone())
            .header("auth-token", value);
        let files = format!("tokenFile {}", self.token_file.display());
        self.http.json(request, &url, &files).await
    }
}

fn reqwest_header(
    token: &str,
) -> Result<prometheus_http_query::reqwest::header::HeaderValue, ProviderError> {
    prometheus_http_query::reqwest::header::HeaderValue::from_str(token).map_err(|_| {
        ProviderError::Credentials {
            provider: NAME,
            reason: "tokenFile holds characters not allowed in an HTTP header".into(),
        }
    })
}

#[async_trait]
impl IntensityProvider for ElectricityMaps {
    fn name(&self) -> &'static str {
        NAME
    }

    fn signal(&self) -> Signal {
        Signal::Average
    }

    async fn latest(&self) -> Result<IntensityPoint, ProviderError> {
        let raw: EmPoint = self.get("v3/carbon-intensity/latest", &[]).await?;
        points(vec![raw])
            .pop()
            .ok_or_else(|| ProviderError::NoData {
                provider: NAME,
                what: format!("zone {} now (carbonIntensity null)", self.zone),
            })
    }

    async fn forecast(&self) -> Result<IntensitySeries, ProviderError> {
        let raw: EmForecast = self.get("v3/carbon-intensity/forecast", &[]).await?;
        Ok(series(raw.forecast))
    }

    async fn history(
        &self,
        start: Seconds,
        end: Seconds,
    ) -> Result<IntensitySeries, ProviderError> {
        if start.value() >= (crate::now() - HISTORY_SPAN).value() {
            let raw: EmHistory = self.get("v3/carbon-intensity/history", &[]).await?;
            return Ok(series(raw.history));
        }
        let end = end.min(start + PAST_RANGE_MAX);
        let (from, to) = (format_time(start), format_time(end));
        let raw: EmPastRange = self
            .get(
                "v3/carbon-intensity/past-range",
                &[("start", from.as_str()), ("end", to.as_str())],
            )
            .await?;
        Ok(series(raw.data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        jobcarbon_testkit::fixture(&format!("intensity/{name}"))
    }

    #[test]
    fn documented_shapes_parse() {
        let latest: EmPoint =
            serde_json::from_str(&fixture("electricitymaps-latest.json")).unwrap();
        let p = points(vec![latest]);
        assert_eq!(p[0].value, GramsPerKwh(302.0));
        let forecast: EmForecast =
            serde_json::from_str(&fixture("electricitymaps-forecast.json")).unwrap();
        let s = series(forecast.forecast);
        assert_eq!(s.period, Seconds::from_hours(1.0));
        assert!(s.points.len() >= 2);
        let history: EmHistory =
            serde_json::from_str(&fixture("electricitymaps-history.json")).unwrap();
        // The null hour is dropped, not read as 0.
        let h = series(history.history);
        assert!(h.points.iter().all(|p| p.value.value() > 0.0));
        let past: EmPastRange =
            serde_json::from_str(&fixture("electricitymaps-past-range.json")).unwrap();
        assert!(!series(past.data).is_empty());
    }
}
