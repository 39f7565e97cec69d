//! Prometheus metrics (`GET /metrics` on the API port), in the OpenMetrics text format, through
//! the `prometheus-client` crate.
//!
//! Names use the `ironic_` prefix and the `driver` label (`ipmi`, `redfish`) as
//! ironic-prometheus-exporter exposes Ironic's own metrics, so dashboards built on it carry
//! over where the two overlap. Node counts are read from the database at scrape time (one
//! GROUP BY); everything else is counted where it happens, into process-wide metrics whose hot
//! paths (BMC requests, database calls) cost an atomic or an uncontended lock, and whose values
//! never feed back into what the service does (simulation traces do not change).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};
use std::sync::LazyLock;

/// The content type of [`render`]'s OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The content type of [`render`]'s Prometheus text (format 0.0.4).
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FlowLabels {
    flow: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StepLabels {
    operation: String,
    step: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DriverLabels {
    driver: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabels {
    op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    provision_state: String,
    power_state: String,
}

/// A BMC protocol's counters, fetched once so a request touches no label map.
#[derive(Clone)]
pub struct BmcMetrics {
    requests: Counter,
    errors: Counter,
    latency: Histogram,
}

impl BmcMetrics {
    /// Counts one request that took `elapsed`, and whether it failed.
    pub fn observe(&self, elapsed: std::time::Duration, ok: bool) {
        self.requests.inc();
        if !ok {
            self.errors.inc();
        }
        self.latency.observe(elapsed.as_secs_f64());
    }
}

fn step_histogram() -> Histogram {
    // 10 ms to about 45 minutes: power actions to image writes.
    Histogram::new(exponential_buckets(0.01, 4.0, 10))
}

fn latency_histogram() -> Histogram {
    // 100 µs to about 26 s.
    Histogram::new(exponential_buckets(0.0001, 4.0, 10))
}

/// Every metric the process counts (see the module docs).
pub struct Metrics {
    deploys: Family<FlowLabels, Counter>,
    deploy_failures: Family<FlowLabels, Counter>,
    steps: Family<StepLabels, Histogram, fn() -> Histogram>,
    bmc_requests: Family<DriverLabels, Counter>,
    bmc_errors: Family<DriverLabels, Counter>,
    bmc_latency: Family<DriverLabels, Histogram, fn() -> Histogram>,
    /// IPMI requests.
    pub ipmi: BmcMetrics,
    /// Redfish requests.
    pub redfish: BmcMetrics,
    workers_busy: Gauge,
    workers: Gauge,
    db_latency: Family<OpLabels, Histogram, fn() -> Histogram>,
    db_read: Histogram,
    db_write: Histogram,
}

impl Metrics {
    fn new() -> Metrics {
        let bmc_requests = Family::<DriverLabels, Counter>::default();
        let bmc_errors = Family::<DriverLabels, Counter>::default();
        let bmc_latency: Family<DriverLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let bmc = |driver: &'static str| {
            let l = DriverLabels { driver };
            BmcMetrics {
                requests: bmc_requests.get_or_create_owned(&l),
                errors: bmc_errors.get_or_create_owned(&l),
                latency: bmc_latency.get_or_create_owned(&l),
            }
        };
        let (ipmi, redfish) = (bmc("ipmi"), bmc("redfish"));
        let db_latency: Family<OpLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        let db_read = db_latency.get_or_create_owned(&OpLabels { op: "read" });
        let db_write = db_latency.get_or_create_owned(&OpLabels { op: "write" });
        Metrics {
            deploys: Family::default(),
            deploy_failures: Family::default(),
            steps: Family::new_with_constructor(step_histogram),
            bmc_requests,
            bmc_errors,
            bmc_latency,
            ipmi,
            redfish,
            workers_busy: Gauge::default(),
            workers: Gauge::default(),
            db_latency,
            db_read,
            db_write,
        }
    }

    /// A deploy started with deploy interface `flow` (`direct`, `iscsi`, ...).
    pub fn deploy_started(&self, flow: &str) {
        self.deploys.get_or_create(&FlowLabels { flow: flow.to_owned() }).inc();
    }

    /// A deploy with deploy interface `flow` failed.
    pub fn deploy_failed(&self, flow: &str) {
        self.deploy_failures.get_or_create(&FlowLabels { flow: flow.to_owned() }).inc();
    }

    /// One step of `operation` (deploy, clean, ...) ran for `elapsed`.
    pub fn step_done(&self, operation: &str, step: &str, elapsed: std::time::Duration) {
        let l = StepLabels { operation: operation.to_owned(), step: step.to_owned() };
        self.steps.get_or_create(&l).observe(elapsed.as_secs_f64());
    }

    /// A conductor with `n` workers started in this process.
    pub fn workers_added(&self, n: usize) {
        self.workers.inc_by(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Marks a worker busy until the guard drops (also when its task is aborted).
    pub fn worker_busy(&self) -> WorkerGuard {
        self.workers_busy.inc();
        WorkerGuard(self.workers_busy.clone())
    }

    /// A database read (`write`: a write transaction) took `elapsed`.
    pub fn db(&self, write: bool, elapsed: std::time::Duration) {
        if write { &self.db_write } else { &self.db_read }.observe(elapsed.as_secs_f64());
    }

    fn register(&self, r: &mut Registry) {
        r.register("ironic_deploys", "Deploys started, by deploy interface (flow)", self.deploys.clone());
        r.register(
            "ironic_deploy_failures",
            "Deploys that failed, by deploy interface (flow)",
            self.deploy_failures.clone(),
        );
        r.register_with_unit(
            "ironic_step_duration",
            "Duration of conductor steps, by operation and step",
            Unit::Seconds,
            self.steps.clone(),
        );
        r.register("ironic_bmc_requests", "Requests to BMCs, by protocol (driver)", self.bmc_requests.clone());
        r.register(
            "ironic_bmc_request_errors",
            "BMC requests that failed, by protocol (driver)",
            self.bmc_errors.clone(),
        );
        r.register_with_unit(
            "ironic_bmc_request_duration",
            "BMC request latency, by protocol (driver)",
            Unit::Seconds,
            self.bmc_latency.clone(),
        );
        r.register("ironic_conductor_workers_busy", "Conductor workers running a task", self.workers_busy.clone());
        r.register("ironic_conductor_workers", "Conductor workers (the pool size)", self.workers.clone());
        r.register_with_unit(
            "ironic_db_query_duration",
            "Database call latency, by read or write transaction",
            Unit::Seconds,
            self.db_latency.clone(),
        );
    }
}

/// Decrements the busy-worker gauge when dropped.
pub struct WorkerGuard(Gauge);

impl Drop for WorkerGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The process's metrics.
pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);

/// The exposition: node counts by provision and power state (from `nodes`, as the database
/// counts them), then the process's metrics; in OpenMetrics text when `openmetrics` (a scraper
/// that asks for it), else in Prometheus's text format.
pub fn render(nodes: &[(String, String, i64)], openmetrics: bool) -> Result<String, std::fmt::Error> {
    let mut r = Registry::default();
    let by_state = Family::<NodeLabels, Gauge>::default();
    for (provision_state, power_state, n) in nodes {
        let l = NodeLabels { provision_state: provision_state.clone(), power_state: power_state.clone() };
        by_state.get_or_create(&l).set(*n);
    }
    r.register("ironic_nodes", "Nodes, by provision state and power state", by_state);
    METRICS.register(&mut r);
    let mut out = String::with_capacity(8192);
    prometheus_client::encoding::text::encode(&mut out, &r)?;
    Ok(if openmetrics { out } else { to_prometheus_text(&out) })
}

/// OpenMetrics text as Prometheus's text format 0.0.4, which `prometheus-client` does not
/// write: the two differ, for what this module exposes, only in that OpenMetrics names a
/// counter family without the `_total` its samples carry, and has `# UNIT` and `# EOF` lines.
/// (Prometheus reads either; tools such as `promtool check metrics` read only the latter.)
fn to_prometheus_text(om: &str) -> String {
    let counters: std::collections::HashSet<&str> =
        om.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(om.len() + 16 * counters.len());
    for line in om.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].into_iter().find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                let total = if counters.contains(name) { "_total" } else { "" };
                out.push_str(&format!("{prefix}{name}{total} {tail}"));
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family() {
        METRICS.ipmi.observe(std::time::Duration::from_millis(3), false);
        METRICS.step_done("deploy", "power_on", std::time::Duration::from_secs(2));
        METRICS.deploy_started("direct");
        let om = render(&[("available".into(), "power off".into(), 3)], true).unwrap();
        assert!(om.contains("# TYPE ironic_deploys counter") && om.ends_with("# EOF\n"), "{om}");
        let text = render(&[("available".into(), "power off".into(), 3)], false).unwrap();
        assert!(text.contains("# TYPE ironic_deploys_total counter") && !text.contains("# EOF"), "{text}");
        for needle in [
            "ironic_nodes{provision_state=\"available\",power_state=\"power off\"} 3",
            "ironic_bmc_requests_total{driver=\"ipmi\"}",
            "ironic_bmc_request_errors_total{driver=\"ipmi\"}",
            "ironic_bmc_request_duration_seconds_bucket{",
            "ironic_step_duration_seconds_count{operation=\"deploy\",step=\"power_on\"}",
            "ironic_deploys_total{flow=\"direct\"}",
        ] {
            assert!(text.contains(needle), "{needle} missing from\n{text}");
        }
    }
}
