//! WattTime API v3: `GET /login` with HTTP basic auth gives a bearer token valid for 30
//! minutes; `GET /v3/forecast` and `GET /v3/historical` with `signal_type=co2_moer` give the
//! marginal operating emissions rate, in lbs CO2 per MWh (converted to g/kWh here). WattTime
//! has no "latest" endpoint for MOER values: the forecast's point for now is the current one.

use super::http::Http;
use super::{IntensityProvider, ProviderError, format_time, parse_time};
use crate::SourceError;
use crate::access::SecretFile;
use async_trait::async_trait;
use jobcarbon_core::intensity::{IntensityPoint, IntensitySeries, Signal, from_lbs_per_mwh};
use jobcarbon_core::{GramsPerKwh, Seconds};
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const NAME: &str = "watttime";
const SIGNAL: &str = "co2_moer";
/// Tokens live 30 minutes; renew a little before.
const TOKEN_LIFETIME: Duration = Duration::from_secs(25 * 60);
/// `/v3/historical` answers at most 32 days per request.
const HISTORICAL_MAX: Seconds = Seconds(32.0 * 24.0 * 3600.0);

/// Where and how to reach WattTime.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WattTimeConfig {
    /// Grid region, e.g. `CAISO_NORTH`.
    pub region: String,
    /// File holding the account's user name.
    pub username_file: PathBuf,
    /// File holding the account's password.
    pub password_file: PathBuf,
    /// API base, `https://api.watttime.org` by default (`/login` and `/v3/...` below it).
    pub url: String,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl WattTimeConfig {
    /// The public API base.
    pub const DEFAULT_URL: &'static str = "https://api.watttime.org";
}

/// WattTime's marginal emissions API (`co2_moer`) for one region, logging in as needed.
pub struct WattTime {
    http: Http,
    region: String,
    username: SecretFile,
    password: SecretFile,
    files: String,
    token: Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for WattTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WattTime")
            .field("url", &self.http.base.as_str())
            .field("region", &self.region)
            .field("credentials", &self.files)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct Login {
    token: String,
}

#[derive(Debug, Deserialize)]
struct WtData {
    data: Vec<WtPoint>,
    #[serde(default)]
    meta: WtMeta,
}

#[derive(Debug, Deserialize)]
struct WtPoint {
    point_time: String,
    value: f64,
}

#[derive(Debug, Default, Deserialize)]
struct WtMeta {
    #[serde(default)]
    data_point_period_seconds: Option<f64>,
    #[serde(default)]
    units: Option<String>,
}

/// The response as g/kWh. Only mass-per-energy units are accepted: a percentile signal
/// (`/v3/signal-index`) must never be booked as an intensity.
fn series(raw: WtData, url: &str) -> Result<IntensitySeries, ProviderError> {
    let factor = match raw.meta.units.as_deref() {
        None | Some("lbs_co2_per_mwh") => from_lbs_per_mwh(1.0).value(),
        // 1 kg/MWh = 1 g/kWh.
        Some("kg_co2_per_mwh") | Some("g_co2_per_kwh") => 1.0,
        Some(other) => {
            return Err(ProviderError::BadResponse {
                provider: NAME,
                url: url.to_owned(),
                reason: format!("units {other:?} are not an emission rate"),
            });
        }
    };
    let points: Vec<IntensityPoint> = raw
        .data
        .into_iter()
        .filter_map(|p| {
            Some(IntensityPoint {
                at: parse_time(&p.point_time)?,
                value: GramsPerKwh(p.value * factor),
            })
        })
        .collect();
    let period = raw
        .meta
        .data_point_period_seconds
        .map(Seconds)
        .unwrap_or_else(|| IntensitySeries::infer_period(&points, Seconds(300.0)));
    Ok(IntensitySeries::new(points, period))
}

impl WattTime {
    /// A client for `config`; fails only if the URL or HTTP client is unusable (credentials are read at login).
    pub fn new(config: &WattTimeConfig) -> Result<Self, ProviderError> {
        Ok(Self {
            http: Http::new(NAME, &config.url, config.timeout)?,
            region: config.region.clone(),
            username: SecretFile::new(config.username_file.clone()),
            password: SecretFile::new(config.password_file.clone()),
            files: format!(
                "usernameFile {} and passwordFile {}",
                config.username_file.display(),
                config.password_file.display()
            ),
            token: Mutex::new(None),
        })
    }

    fn credentials_error(e: SourceError) -> ProviderError {
        ProviderError::Credentials {
            provider: NAME,
            reason: super::secret_reason(e),
        }
    }

    /// A valid token: the cached one, or a new login.
    async fn token(&self) -> Result<String, ProviderError> {
        if let Ok(cached) = self.token.lock()
            && let Some((token, at)) = cached.as_ref()
            && at.elapsed() < TOKEN_LIFETIME
        {
            return Ok(token.clone());
        }
        let username = self.username.read().map_err(Self::credentials_error)?;
        let password = self.password.read().map_err(Self::credentials_error)?;
        let url = self.http.url("login", &[]);
        let request = self
            .http
            .client
            .get(url.clone())
            .basic_auth(username, Some(password));
        let login: Login = self.http.json(request, &url, &self.files).await?;
        if let Ok(mut cached) = self.token.lock() {
            *cached = Some((login.token.clone(), Instant::now()));
        }
        Ok(login.token)
    }

    /// GET with the bearer token; one new login when the token is refused (revoked, or
    /// the password rotated).
    async fn data(&self, path: &str, query: &[(&str, &str)]) -> Result<WtData, ProviderError> {
        let mut query = query.to_vec();
        query.insert(0, ("region", self.region.as_str()));
        query.push(("signal_type", SIGNAL));
        let url = self.http.url(path, &query);
        for attempt in 0..2 {
            let token = self.token().await?;
            let request = self.http.client.get(url.clone()).bearer_auth(token);
            match self.http.json::<WtData>(request, &url, &self.files).await {
                Err(ProviderError::Auth { .. }) if attempt == 0 => {
                    if let Ok(mut cached) = self.token.lock() {
                        *cached = None;
                    }
                }
                other => return other,
            }
        }
        Err(ProviderError::NoData {
            provider: NAME,
            what: path.to_owned(),
        })
    }
}

#[async_trait]
impl IntensityProvider for WattTime {
    fn name(&self) -> &'static str {
        NAME
    }

    fn signal(&self) -> Signal {
        Signal::Marginal
    }

    async fn latest(&self) -> Result<IntensityPoint, ProviderError> {
        let forecast = self.forecast().await?;
        let now = crate::now();
        let value = forecast
            .value_at(now)
            .or_else(|| forecast.points.first().map(|p| p.value));
        value
            .map(|value| IntensityPoint { at: now, value })
            .ok_or_else(|| ProviderError::NoData {
                provider: NAME,
                what: format!("region {} now (empty forecast)", self.region),
            })
    }

    async fn forecast(&self) -> Result<IntensitySeries, ProviderError> {
        let raw = self.data("v3/forecast", &[]).await?;
        series(raw, self.http.url("v3/forecast", &[]).as_str())
    }

    async fn history(
        &self,
        start: Seconds,
        end: Seconds,
    ) -> Result<IntensitySeries, ProviderError> {
        let end = end.min(start + HISTORICAL_MAX);
        let (from, to) = (format_time(start), format_time(end));
        let raw = self
            .data(
                "v3/historical",
                &[("start", from.as_str()), ("end", to.as_str())],
            )
            .await?;
        series(raw, self.http.url("v3/historical", &[]).as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        jobcarbon_testkit::fixture(&format!("intensity/{name}"))
    }

    #[test]
    fn documented_shapes_parse_and_convert_to_grams_per_kwh() {
        let raw: WtData = serde_json::from_str(&fixture("watttime-forecast.json")).unwrap();
        let first = raw.data[0].value;
        let s = series(raw, "u").unwrap();
        assert_eq!(s.period, Seconds(300.0));
        assert_eq!(s.points[0].value.value(), first * 0.453_592_37);
        let raw: WtData = serde_json::from_str(&fixture("watttime-historical.json")).unwrap();
        assert!(!series(raw, "u").unwrap().is_empty());
        let login: Login = serde_json::from_str(&fixture("watttime-login.json")).unwrap();
        assert!(!login.token.is_empty());
    }

    #[test]
    fn a_percentile_is_not_an_intensity() {
        let raw: WtData = serde_json::from_str(&fixture("watttime-signal-index.json")).unwrap();
        assert!(matches!(
            series(raw, "u"),
            Err(ProviderError::BadResponse { .. })
        ));
    }
}
