//! The Electricity Maps and WattTime clients against the testkit's fake API (their
//! documented response shapes): values and unit conversion, authentication failures that
//! name the credential file but never the secret, token renewal after a password rotation,
//! rate limiting with `Retry-After`, and polling no faster than the poll interval.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use jobcarbon_core::{GramsPerKwh, Seconds};
use jobcarbon_telemetry::intensity::{
    ElectricityMaps, ElectricityMapsConfig, IntensityProvider, PolledProvider, ProviderError,
    WattTime, WattTimeConfig,
};
use jobcarbon_testkit::intensity_api::{FakeIntensityApi, unix_now};
use std::path::Path;
use std::time::Duration;

const LB: f64 = 0.453_592_37;

/// Now, at least 10 s before the next 5-minute boundary: the fake answers "latest" by its own
/// clock, so a test that crossed a boundary would read the next point.
async fn clear_of_a_five_minute_boundary() -> i64 {
    let now = unix_now();
    let left = 300 - now.rem_euclid(300);
    if left >= 10 {
        return now;
    }
    tokio::time::sleep(std::time::Duration::from_secs(left.unsigned_abs() + 1)).await;
    unix_now()
}

async fn api(now: i64) -> FakeIntensityApi {
    let api = FakeIntensityApi::start().await.unwrap();
    let hour = now - now.rem_euclid(3600);
    api.electricity_maps(
        "em-secret",
        (-30..30)
            .map(|h| (hour + h * 3600, 300.0 + h as f64))
            .collect(),
    );
    let five = now - now.rem_euclid(300);
    api.watttime(
        "jobcarbon",
        "wt-secret",
        (-24..24)
            .map(|k| (five + k * 300, 1000.0 + k as f64))
            .collect(),
    );
    api
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn em(api: &FakeIntensityApi, token_file: std::path::PathBuf) -> ElectricityMaps {
    ElectricityMaps::new(&ElectricityMapsConfig {
        zone: "DE".into(),
        token_file,
        url: api.url().into(),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

fn wt(api: &FakeIntensityApi, dir: &Path) -> WattTime {
    WattTime::new(&WattTimeConfig {
        region: "CAISO_NORTH".into(),
        username_file: dir.join("user"),
        password_file: dir.join("password"),
        url: api.url().into(),
        timeout: Duration::from_secs(5),
    })
    .unwrap()
}

#[tokio::test]
async fn electricity_maps_latest_forecast_and_history() {
    let now = clear_of_a_five_minute_boundary().await;
    let api = api(now).await;
    let dir = tempfile::tempdir().unwrap();
    let client = em(&api, write(dir.path(), "token", "em-secret\n"));
    assert_eq!(client.latest().await.unwrap().value, GramsPerKwh(300.0));
    let forecast = client.forecast().await.unwrap();
    assert_eq!(forecast.period, Seconds(3600.0));
    let in_5h = Seconds((now + 5 * 3600) as f64);
    assert_eq!(forecast.value_at(in_5h), Some(GramsPerKwh(305.0)));
    // Within the last day: /history; older: /past-range with start and end.
    let hour = (now - now.rem_euclid(3600)) as f64;
    let recent = client
        .history(Seconds(hour - 7200.0), Seconds(hour))
        .await
        .unwrap();
    assert_eq!(
        recent.mean_over(Seconds(hour - 5400.0), Seconds(hour - 1800.0)),
        Some(GramsPerKwh(301.5 - 3.0))
    );
    let old = client
        .history(Seconds(hour - 28.0 * 3600.0), Seconds(hour - 26.0 * 3600.0))
        .await
        .unwrap();
    assert_eq!(
        old.value_at(Seconds(hour - 27.5 * 3600.0)),
        Some(GramsPerKwh(272.0))
    );
    assert_eq!(api.count("/v3/carbon-intensity/past-range"), 1);
}

#[tokio::test]
async fn watttime_logs_in_and_converts_pounds_per_megawatt_hour() {
    let now = clear_of_a_five_minute_boundary().await;
    let api = api(now).await;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "user", "jobcarbon");
    write(dir.path(), "password", "wt-secret");
    let client = wt(&api, dir.path());
    // 1000 lbs/MWh at the current 5 minutes = 453.59237 g/kWh.
    let latest = client.latest().await.unwrap();
    assert!(
        (latest.value.value() - 1000.0 * LB).abs() < 1e-9,
        "{latest:?}"
    );
    let five = (now - now.rem_euclid(300)) as f64;
    let history = client
        .history(Seconds(five - 900.0), Seconds(five))
        .await
        .unwrap();
    assert_eq!(history.period, Seconds(300.0));
    let mean = history
        .mean_over(Seconds(five - 600.0), Seconds(five))
        .unwrap();
    assert!((mean.value() - 998.5 * LB).abs() < 1e-9);
    // One login for all of it: the token is reused.
    assert_eq!(api.count("/login"), 1);
}

#[tokio::test]
async fn refused_credentials_name_the_file_never_the_secret() {
    let now = clear_of_a_five_minute_boundary().await;
    let api = api(now).await;
    let dir = tempfile::tempdir().unwrap();
    let token = write(dir.path(), "token", "wrong-token-value");
    let err = em(&api, token.clone()).latest().await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Auth { status: 401, .. }),
        "{err}"
    );
    let message = format!("{err} {err:?}");
    assert!(message.contains(&token.display().to_string()), "{message}");
    assert!(!message.contains("wrong-token-value"), "{message}");

    write(dir.path(), "user", "jobcarbon");
    let password = write(dir.path(), "password", "not-the-password");
    let client = wt(&api, dir.path());
    let err = client.forecast().await.unwrap_err();
    assert_eq!(err.kind(), "auth");
    let message = format!("{err} {err:?} {client:?}");
    assert!(
        message.contains(&password.display().to_string()),
        "{message}"
    );
    assert!(!message.contains("not-the-password"), "{message}");

    // The rotated password is read again: no restart needed.
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&password, "wt-secret").unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .write(true)
        .open(&password)
        .unwrap()
        .set_modified(later)
        .unwrap();
    assert!(client.forecast().await.is_ok());
}

#[tokio::test]
async fn rate_limits_back_off_as_long_as_asked_and_polls_are_cached() {
    let now = clear_of_a_five_minute_boundary().await;
    let api = api(now).await;
    let dir = tempfile::tempdir().unwrap();
    let client = em(&api, write(dir.path(), "token", "em-secret"));
    let polled = PolledProvider::new(Box::new(client), Seconds(300.0));
    let t = Seconds(now as f64);

    api.fail("/v3/carbon-intensity/latest", 429, Some("120"), Some(1));
    let err = polled.latest(t).await.unwrap_err();
    assert_eq!(err.kind(), "rate_limited");
    assert_eq!(err.retry_after(), Some(Seconds(120.0)));
    // Within Retry-After nothing is asked.
    let err = polled.latest(t + Seconds(119.0)).await.unwrap_err();
    assert_eq!(err.kind(), "backoff");
    assert_eq!(api.count("/v3/carbon-intensity/latest"), 1);
    // After it, the provider answers, and the value is cached for the poll interval.
    let value = polled.latest(t + Seconds(121.0)).await.unwrap();
    assert_eq!(value.value, GramsPerKwh(300.0));
    polled.latest(t + Seconds(400.0)).await.unwrap();
    assert_eq!(api.count("/v3/carbon-intensity/latest"), 2);
    polled.latest(t + Seconds(421.0)).await.unwrap();
    assert_eq!(api.count("/v3/carbon-intensity/latest"), 3);

    // 5xx without Retry-After: exponential backoff from 30 s.
    api.fail("/v3/carbon-intensity/forecast", 502, None, Some(2));
    assert_eq!(polled.forecast(t).await.unwrap_err().kind(), "http");
    assert_eq!(
        polled.forecast(t + Seconds(29.0)).await.unwrap_err().kind(),
        "backoff"
    );
    assert_eq!(
        polled.forecast(t + Seconds(31.0)).await.unwrap_err().kind(),
        "http"
    );
    assert_eq!(
        polled.forecast(t + Seconds(90.0)).await.unwrap_err().kind(),
        "backoff"
    );
    assert!(polled.forecast(t + Seconds(92.0)).await.is_ok());
    assert_eq!(api.count("/v3/carbon-intensity/forecast"), 3);
}
