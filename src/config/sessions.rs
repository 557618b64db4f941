use std::time::Duration;

use clap::Args;
use service::identity::sessions::SessionSettings;

/// Dashboard sessions (`/auth/sign-in`) and sign-in throttling.
#[derive(Args, Clone, Debug)]
pub struct SessionConfig {
    /// A dashboard session unused this long ends; every request slides it.
    #[arg(
        long = "session-idle-timeout",
        env = "TOKENWARDEN_SESSION_IDLE_TIMEOUT",
        value_parser = humantime::parse_duration,
        default_value = "30m",
        global = true
    )]
    pub idle_timeout: Duration,

    /// A dashboard session ends this long after sign-in, however busy.
    #[arg(
        long = "session-absolute-timeout",
        env = "TOKENWARDEN_SESSION_ABSOLUTE_TIMEOUT",
        value_parser = humantime::parse_duration,
        default_value = "12h",
        global = true
    )]
    pub absolute_timeout: Duration,

    /// Consecutive failed sign-ins of one email before it is locked out (one client
    /// address may fail four times as often).
    #[arg(
        long = "session-max-failures",
        env = "TOKENWARDEN_SESSION_MAX_FAILURES",
        default_value_t = 5,
        global = true
    )]
    pub max_failures: u32,

    /// The first lockout; every further failure doubles it, up to 15 minutes.
    #[arg(
        long = "session-lockout",
        env = "TOKENWARDEN_SESSION_LOCKOUT",
        value_parser = humantime::parse_duration,
        default_value = "30s",
        global = true
    )]
    pub lockout: Duration,
}

impl SessionConfig {
    /// The service-layer settings.
    pub fn settings(&self) -> SessionSettings {
        SessionSettings {
            idle_timeout: self.idle_timeout,
            absolute_timeout: self.absolute_timeout,
            max_failures: self.max_failures,
            lockout: self.lockout,
        }
    }
}
