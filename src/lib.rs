//! The composition root of tokenwarden, shared by the binary (`src/main.rs`, the command
//! line), the end-to-end tests and the benchmarks, so they all run the process the binary
//! runs: [`config`] reads flags and environment into typed sections; [`compose`] turns a
//! [`Config`] into a running API server or worker (database, keys, providers or the sandbox,
//! engine, queue) and hands the parts to the `api` and `jobs` crates.

/// Assembles a process from its configuration.
pub mod compose;
/// Everything configurable, from flags or the environment.
pub mod config;
/// Logging setup.
pub mod telemetry;

pub use compose::{WorkerApp, build_app};
pub use config::Config;
