//! [`PolledProvider`]: one provider behind a cache. The latest value and the forecast are
//! fetched at most once per poll interval; failures back off (the provider's `Retry-After`,
//! else exponentially); history is kept for the ranges fetched, so a backfill of many
//! intervals costs one request per day of history rather than one per interval.
//!
//! Every method takes `now` (wall-clock seconds), so the timing rules are testable.

use super::{IntensityProvider, ProviderError};
use jobcarbon_core::Seconds;
use jobcarbon_core::intensity::{IntensityPoint, IntensitySeries, Signal};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Longest wait after repeated failures.
const MAX_BACKOFF: Seconds = Seconds(1800.0);
/// How much history one request asks for after the interval being booked.
const HISTORY_CHUNK: Seconds = Seconds(24.0 * 3600.0);
/// History older than this is dropped from the cache.
const HISTORY_RETENTION: Seconds = Seconds(40.0 * 24.0 * 3600.0);

/// How long to wait after the `failures`-th failure in a row: what the provider asked for,
/// else `base × 2^(failures − 1)`, at most 30 minutes.
pub fn backoff_delay(failures: u32, retry_after: Option<Seconds>, base: Seconds) -> Seconds {
    if let Some(asked) = retry_after {
        return asked.max(Seconds::ZERO);
    }
    let exponent = failures.saturating_sub(1).min(16);
    Seconds(base.value() * f64::from(1u32 << exponent)).min(MAX_BACKOFF)
}

#[derive(Debug, Default)]
struct State {
    latest: Option<(IntensityPoint, Seconds)>,
    forecast: Option<(IntensitySeries, Seconds)>,
    /// History points fetched so far and the ranges the requests covered.
    history: Vec<IntensityPoint>,
    period: Option<Seconds>,
    fetched: Vec<(Seconds, Seconds)>,
    failures: u32,
    backoff_until: Option<(Seconds, String)>,
}

/// A provider with its poll interval, backoff and history cache.
pub struct PolledProvider {
    provider: Box<dyn IntensityProvider>,
    poll: Seconds,
    backoff_base: Seconds,
    state: Mutex<State>,
}

impl std::fmt::Debug for PolledProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolledProvider")
            .field("provider", &self.provider.name())
            .field("poll", &self.poll)
            .finish_non_exhaustive()
    }
}

impl PolledProvider {
    /// Polls `provider` at most once per `poll`.
    pub fn new(provider: Box<dyn IntensityProvider>, poll: Seconds) -> Self {
        Self {
            provider,
            poll,
            backoff_base: Seconds(30.0),
            state: Mutex::new(State::default()),
        }
    }

    /// The first backoff step (30 s by default); tests shorten it.
    pub fn with_backoff_base(mut self, base: Seconds) -> Self {
        self.backoff_base = base;
        self
    }

    /// The provider's name (`electricity-maps`, `watttime`).
    pub fn name(&self) -> &'static str {
        self.provider.name()
    }

    /// Whether it publishes average or marginal intensity.
    pub fn signal(&self) -> Signal {
        self.provider.signal()
    }

    /// The minimum time between two requests.
    pub fn poll_interval(&self) -> Seconds {
        self.poll
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses to ask while backing off.
    fn gate(&self, now: Seconds) -> Result<(), ProviderError> {
        match &self.state().backoff_until {
            Some((until, cause)) if now.value() < until.value() => Err(ProviderError::BackingOff {
                provider: self.provider.name(),
                until: until.value(),
                cause: cause.clone(),
            }),
            _ => Ok(()),
        }
    }

    fn record<T>(&self, now: Seconds, result: &Result<T, ProviderError>) {
        let mut state = self.state();
        match result {
            Ok(_) => {
                state.failures = 0;
                state.backoff_until = None;
            }
            Err(e) => {
                state.failures += 1;
                let delay = backoff_delay(state.failures, e.retry_after(), self.backoff_base);
                state.backoff_until = Some((now + delay, e.kind().to_owned()));
            }
        }
    }

    /// The latest value, fetched when the cached one is a poll interval old.
    pub async fn latest(&self, now: Seconds) -> Result<IntensityPoint, ProviderError> {
        if let Some((point, fetched)) = self.state().latest
            && (now - fetched).value() < self.poll.value()
        {
            return Ok(point);
        }
        self.gate(now)?;
        let result = self.provider.latest().await;
        self.record(now, &result);
        let point = result?;
        self.state().latest = Some((point, now));
        Ok(point)
    }

    /// The forecast, fetched when the cached one is a poll interval old.
    pub async fn forecast(&self, now: Seconds) -> Result<IntensitySeries, ProviderError> {
        if let Some((series, fetched)) = &self.state().forecast
            && (now - *fetched).value() < self.poll.value()
        {
            return Ok(series.clone());
        }
        self.gate(now)?;
        let result = self.provider.forecast().await;
        self.record(now, &result);
        let series = result?;
        self.state().forecast = Some((series.clone(), now));
        Ok(series)
    }

    /// The last forecast fetched, however old.
    pub fn last_forecast(&self) -> Option<IntensitySeries> {
        self.state().forecast.as_ref().map(|(s, _)| s.clone())
    }

    /// The intensity of the interval `[start, end]`: the latest value while the interval is
    /// recent (it ended less than a poll interval ago), else the time-weighted mean of the
    /// provider's history over it.
    pub async fn intensity_over(
        &self,
        start: Seconds,
        end: Seconds,
        now: Seconds,
    ) -> Result<jobcarbon_core::GramsPerKwh, ProviderError> {
        if (now - end).value() < self.poll.value() {
            return Ok(self.latest(now).await?.value);
        }
        if let Some(mean) = self.cached_mean(start, end) {
            return Ok(mean);
        }
        let period = self.state().period.unwrap_or(Seconds::from_hours(1.0));
        let from = start - period;
        let to = (end + HISTORY_CHUNK).min(now);
        if self.already_fetched(from, end) {
            return Err(self.no_data(start, end));
        }
        self.gate(now)?;
        let result = self.provider.history(from, to).await;
        self.record(now, &result);
        let series = result?;
        {
            let mut state = self.state();
            state.period = Some(series.period);
            state.history.extend(series.points);
            let merged = IntensitySeries::new(std::mem::take(&mut state.history), series.period);
            // Backfills reach back days, not months: keep the cache bounded.
            let oldest = now - HISTORY_RETENTION;
            state.history = merged
                .points
                .into_iter()
                .filter(|p| p.at.value() >= oldest.value())
                .collect();
            state.fetched.retain(|(_, b)| b.value() >= oldest.value());
            state.fetched.push((from, to));
        }
        self.cached_mean(start, end)
            .ok_or_else(|| self.no_data(start, end))
    }

    fn cached_mean(&self, start: Seconds, end: Seconds) -> Option<jobcarbon_core::GramsPerKwh> {
        let state = self.state();
        let period = state.period?;
        IntensitySeries::new(state.history.clone(), period).mean_over(start, end)
    }

    fn already_fetched(&self, from: Seconds, end: Seconds) -> bool {
        self.state()
            .fetched
            .iter()
            .any(|(a, b)| a.value() <= from.value() && b.value() >= end.value())
    }

    fn no_data(&self, start: Seconds, end: Seconds) -> ProviderError {
        ProviderError::NoData {
            provider: self.provider.name(),
            what: format!(
                "{} to {} in its history",
                super::format_time(start),
                super::format_time(end)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_half_an_hour_unless_told() {
        let base = Seconds(30.0);
        assert_eq!(backoff_delay(1, None, base), Seconds(30.0));
        assert_eq!(backoff_delay(3, None, base), Seconds(120.0));
        assert_eq!(backoff_delay(40, None, base), Seconds(1800.0));
        assert_eq!(backoff_delay(5, Some(Seconds(7.0)), base), Seconds(7.0));
    }
}
