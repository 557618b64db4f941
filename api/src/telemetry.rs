//! Prometheus metrics: one recorder per process, rendered at `/metrics`.

static METRICS: std::sync::OnceLock<Option<metrics_exporter_prometheus::PrometheusHandle>> =
    std::sync::OnceLock::new();

/// The process-wide Prometheus recorder (installed on first use; `None` when another
/// recorder was installed first).
pub fn metrics_handle() -> Option<&'static metrics_exporter_prometheus::PrometheusHandle> {
    METRICS
        .get_or_init(|| {
            match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
                Ok(handle) => Some(handle),
                Err(err) => {
                    tracing::warn!(error = %err, "could not install the metrics recorder");
                    None
                }
            }
        })
        .as_ref()
}

/// The Prometheus text exposition of this process's metrics.
pub(crate) fn render_metrics() -> String {
    metrics_handle().map(|h| h.render()).unwrap_or_default()
}
