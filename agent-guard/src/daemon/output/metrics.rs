//! Prometheus metrics: counted where things happen (the event hub, each output), and the
//! daemon's status (open tasks, pending approvals, map use) read at scrape time through a
//! [`StatusSource`], so this module needs nothing of the task registry. Served on
//! `GET /metrics` when the config file has `metrics.listen`.

use std::{
    net::SocketAddr,
    sync::{Arc, atomic::AtomicI64},
};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry as PromRegistry,
};

use crate::api::StatusInfo;

/// Reads the daemon's status at scrape time (the task registry, behind its lock).
pub type StatusSource = Arc<dyn Fn() -> StatusInfo + Send + Sync>;

/// Labels of `agent_guard_events_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    // Static names: no allocation per event for its count.
    pub kind: &'static str,
    pub decision: &'static str,
}

/// Labels of the per-output metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutputLabels {
    pub output: String,
}

/// Labels of the map metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MapLabels {
    pub map: String,
}

/// Every metric the daemon exposes; cheap to clone (the counters are shared).
#[derive(Clone, Default)]
pub struct Metrics {
    pub events: Family<EventLabels, Counter>,
    /// Kernel records lost to a full ring buffer (`EVENT_DROPS`).
    pub ring_drops: Counter,
    /// Identical events folded into an aggregate (flood control).
    pub aggregated: Counter,
    pub output_sent: Family<OutputLabels, Counter>,
    /// Events an output could not take (queue or spool full): lost for that output.
    pub output_dropped: Family<OutputLabels, Counter>,
    /// Failed attempts to deliver (retried from the spool for HTTP).
    pub output_failures: Family<OutputLabels, Counter>,
    pub spool_bytes: Family<OutputLabels, Gauge<i64, AtomicI64>>,
    pub open_tasks: Gauge<i64, AtomicI64>,
    pub pending_approvals: Gauge<i64, AtomicI64>,
    pub map_entries: Family<MapLabels, Gauge<i64, AtomicI64>>,
    pub map_capacity: Family<MapLabels, Gauge<i64, AtomicI64>>,
}

impl Metrics {
    pub fn output(name: &str) -> OutputLabels {
        OutputLabels { output: name.to_string() }
    }

    fn registry(&self) -> PromRegistry {
        let mut r = PromRegistry::with_prefix("agent_guard");
        r.register("events", "Events reported, by kind and decision", self.events.clone());
        r.register("ring_buffer_drops", "Kernel records lost to a full ring buffer", self.ring_drops.clone());
        r.register("aggregated_events", "Identical events folded into aggregates", self.aggregated.clone());
        r.register("output_sent_events", "Events delivered, by output", self.output_sent.clone());
        r.register("output_dropped_events", "Events an output could not take, by output", self.output_dropped.clone());
        r.register("output_failures", "Failed delivery attempts, by output", self.output_failures.clone());
        r.register("spool_bytes", "Bytes waiting in an output's disk spool", self.spool_bytes.clone());
        r.register("open_tasks", "Tasks open now", self.open_tasks.clone());
        r.register("pending_approvals", "Held actions waiting for a human", self.pending_approvals.clone());
        r.register("map_entries", "Entries in use, by kernel map", self.map_entries.clone());
        r.register("map_capacity", "Entries a kernel map can hold", self.map_capacity.clone());
        r
    }

    /// The text exposition, with the status gauges read now.
    pub fn render(&self, status: &StatusSource) -> String {
        {
            let status = status();
            self.open_tasks.set(status.open_tasks as i64);
            self.pending_approvals.set(status.pending_approvals as i64);
            for map in status.maps {
                let labels = MapLabels { map: map.name };
                self.map_entries.get_or_create(&labels).set(map.used as i64);
                self.map_capacity.get_or_create(&labels).set(i64::from(map.size));
            }
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry()).expect("writing to a String");
        text
    }
}

/// The metrics listener cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics endpoint {addr}: {source}")]
    Bind { addr: SocketAddr, source: std::io::Error },
}

/// Binds now (a taken port fails the start) and serves until `shutdown`.
pub async fn serve(
    addr: SocketAddr,
    metrics: Metrics,
    status: StatusSource,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<tokio::task::JoinHandle<()>, MetricsError> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|source| MetricsError::Bind { addr, source })?;
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (metrics, status) = (metrics.clone(), status.clone());
            async move {
                let text = tokio::task::spawn_blocking(move || metrics.render(&status)).await.unwrap_or_default();
                (
                    [(axum::http::header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")],
                    text,
                )
            }
        }),
    );
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(%err, "metrics endpoint stopped");
        }
    }))
}
