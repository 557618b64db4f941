use std::time::Duration;

use clap::Args;
use service::events::alerts::AlertSettings;

/// When the health check raises PROVIDER_DEGRADED and PROVIDER_RECOVERED.
#[derive(Args, Clone, Debug)]
pub struct AlertsConfig {
    /// PROVIDER_DEGRADED when more than this share (0-1) of a platform's calls fail...
    #[arg(
        id = "alert_error_rate",
        long = "alert-error-rate",
        env = "TOKENWARDEN_ALERT_ERROR_RATE",
        default_value_t = 0.2,
        global = true
    )]
    pub error_rate: f64,

    /// ...among at least this many calls...
    #[arg(
        id = "alert_min_calls",
        long = "alert-min-calls",
        env = "TOKENWARDEN_ALERT_MIN_CALLS",
        default_value_t = 20,
        global = true
    )]
    pub min_calls: u64,

    /// ...within this sliding window.
    #[arg(id = "alert_window",
        long = "alert-window", env = "TOKENWARDEN_ALERT_WINDOW", value_parser = humantime::parse_duration, default_value = "5m", global = true)]
    pub window: Duration,
}

impl AlertsConfig {
    /// The alert thresholds.
    pub fn settings(&self) -> AlertSettings {
        AlertSettings {
            window: self.window,
            min_calls: self.min_calls,
            error_rate: self.error_rate,
        }
    }
}
