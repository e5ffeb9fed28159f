//! The goals of issue #15 checked against the figures, and the console summary. The targets
//! are computed here and stored in `load.json` / `memory.json`, so `scripts/bench-report`
//! renders them without judging anything itself.

use serde::{Deserialize, Serialize};

use super::memory::MemoryReport;
use super::BenchReport;

/// Hot path throughput, as a share of bare hyper's at the same connections.
pub const HOT_PATH_RATIO: f64 = 0.75;
/// Hot path p99 at [`P99_CONNECTIONS`] connections, in ms.
pub const HOT_PATH_P99_MS: f64 = 5.0;
pub const P99_CONNECTIONS: usize = 64;
/// `GET /v1/api-keys` throughput as a share of bare hyper's.
pub const READ_RATIO: f64 = 0.4;
/// Our generator's throughput on bare hyper as a share of `wrk`'s.
pub const GENERATOR_TO_WRK: f64 = 0.8;
/// Resident memory at [`MEMORY_TENANTS`] tenants and [`MEMORY_KEYS`] keys, in MiB.
pub const MEMORY_MIB: f64 = 1024.0;
pub const MEMORY_TENANTS: usize = 100_000;
pub const MEMORY_KEYS: usize = 1_000_000;

/// One goal: what was measured, the goal, whether it is met and by how much.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Target {
    pub name: String,
    pub measured: String,
    pub goal: String,
    pub met: bool,
    /// "0.12 to spare" or "missed by 0.58 (4.4x short)".
    pub margin: String,
    pub note: String,
}

/// A goal that the figure must reach at least (`at_least`) or at most.
fn target(name: &str, value: f64, goal: f64, at_least: bool, unit: &str, note: String) -> Target {
    let met = if at_least {
        value >= goal
    } else {
        value <= goal
    };
    let gap = (value - goal).abs();
    let factor = if at_least { goal / value } else { value / goal };
    let margin = if met {
        format!("{gap:.2}{unit} to spare")
    } else if factor.is_finite() {
        let how = if at_least { "short" } else { "over" };
        format!("missed by {gap:.2}{unit} ({factor:.1}x {how})")
    } else {
        format!("missed by {gap:.2}{unit}")
    };
    Target {
        name: name.to_owned(),
        measured: format!("{value:.3}{unit}"),
        goal: format!("{} {goal}{unit}", if at_least { ">=" } else { "<=" }),
        met,
        margin,
        note,
    }
}

/// The load goals, from whatever figures the report holds.
/// The goals are the native host's, against bare hyper: against another baseline (the
/// Worker's hello world) there are none.
pub fn load_targets(r: &BenchReport) -> Vec<Target> {
    let mut out = Vec::new();
    if r.endpoints
        .first()
        .is_none_or(|b| b.name != super::BASELINE)
    {
        return out;
    }
    let ep = |name: &str| r.endpoints.iter().find(|e| e.name == name);
    if let Some(hot) = ep(super::HOT_PATH) {
        if let Some(ratio) = hot.ratio_to_hyper {
            out.push(target(
                "hot path (`GET /v1/rate-limit`) vs bare hyper",
                ratio,
                HOT_PATH_RATIO,
                true,
                "",
                format!(
                    "{:.0} req/s at {} connections",
                    hot.requests_per_second, hot.connections
                ),
            ));
        }
    }
    let p99 = r
        .scaling
        .iter()
        .find(|s| s.hot.connections == P99_CONNECTIONS)
        .map(|s| &s.hot)
        .or_else(|| ep(super::HOT_PATH).filter(|h| h.connections == P99_CONNECTIONS));
    if let Some(hot) = p99 {
        out.push(target(
            "hot path p99",
            hot.p99_ms,
            HOT_PATH_P99_MS,
            false,
            " ms",
            format!("at {P99_CONNECTIONS} connections"),
        ));
    }
    if let Some(read) = ep(super::READ) {
        if let Some(ratio) = read.ratio_to_hyper {
            out.push(target(
                "`GET /v1/api-keys` vs bare hyper",
                ratio,
                READ_RATIO,
                true,
                "",
                format!("{:.0} req/s", read.requests_per_second),
            ));
        }
    }
    if let Some(w) = r
        .wrk
        .iter()
        .find(|w| w.name == super::BASELINE && w.connections == r.concurrency)
        .filter(|_| {
            r.endpoints
                .first()
                .is_some_and(|b| b.name == super::BASELINE)
        })
    {
        if let Some(share) = w.ours_to_wrk() {
            out.push(target(
                "load generator vs `wrk -t1` on bare hyper",
                share,
                GENERATOR_TO_WRK,
                true,
                "",
                format!(
                    "ours {:.0} req/s, wrk {:.0} req/s at {} connections",
                    w.ours_requests_per_second.unwrap_or(0.0),
                    w.requests_per_second,
                    w.connections
                ),
            ));
        }
    }
    out
}

/// The memory goal: at most [`MEMORY_MIB`] at 100,000 tenants and 1,000,000 keys. Measured at
/// fewer, it is stated but not judged met.
pub fn memory_targets(m: &MemoryReport) -> Vec<Target> {
    let mut t = target(
        &format!(
            "resident memory, {} tenants / {} keys",
            thousands(m.tenants),
            thousands(m.keys)
        ),
        m.rss_mib,
        MEMORY_MIB,
        false,
        " MiB",
        m.note.clone(),
    );
    if m.tenants < MEMORY_TENANTS || m.keys < MEMORY_KEYS {
        t.met = false;
        t.margin = format!(
            "not judged: the goal is at {} tenants / {} keys",
            thousands(MEMORY_TENANTS),
            thousands(MEMORY_KEYS)
        );
    }
    vec![t]
}

/// 100000 -> "100,000".
pub fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The console summary of a load report.
pub fn summary(r: &BenchReport) -> String {
    let mut s = String::new();
    let line = |e: &super::EndpointFigures| {
        format!(
            "{:<34} c={:<4} t={:<6} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ratio {}\n",
            e.name,
            e.connections,
            e.tenants,
            e.requests_per_second,
            e.p50_ms,
            e.p99_ms,
            e.ratio_to_hyper
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"))
        )
    };
    // The table's baseline and hot path are rows of the scaling too, and its one-tenant spread
    // row is the hot path: each figure is printed once.
    for sc in &r.scaling {
        s.push_str(&line(&sc.baseline));
        s.push_str(&line(&sc.hot));
    }
    for e in r.tenant_spread.iter().filter(|e| e.tenants > 1) {
        s.push_str(&line(e));
    }
    let shown = if r.scaling.is_empty() { 0 } else { 2 };
    for e in r.endpoints.iter().skip(shown) {
        s.push_str(&line(e));
    }
    for w in &r.wrk {
        s.push_str(&format!(
            "wrk -t1 {:<26} c={:<4} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ours/wrk {}\n",
            w.name,
            w.connections,
            w.requests_per_second,
            w.p50_ms,
            w.p99_ms,
            w.ours_to_wrk()
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}"))
        ));
    }
    for t in &r.targets {
        s.push_str(&target_line(t));
    }
    s
}

/// One goal as a console line.
pub fn target_line(t: &Target) -> String {
    format!(
        "target: {} = {} (goal {}): {}, {}\n",
        t.name,
        t.measured,
        t.goal,
        if t.met { "met" } else { "MISSED" },
        t.margin
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_floor_says_by_how_much() {
        let t = target("hot path", 0.15, 0.75, true, "", String::new());
        assert!(!t.met);
        assert_eq!(t.margin, "missed by 0.60 (5.0x short)");
        assert_eq!(t.goal, ">= 0.75");
        assert!(target_line(&t).contains("MISSED, missed by 0.60"));
    }

    #[test]
    fn a_missed_ceiling_says_by_how_much() {
        let t = target("p99", 12.5, 5.0, false, " ms", String::new());
        assert!(!t.met);
        assert_eq!(t.margin, "missed by 7.50 ms (2.5x over)");
        let met = target("p99", 4.0, 5.0, false, " ms", String::new());
        assert!(met.met);
        assert_eq!(met.margin, "1.00 ms to spare");
    }

    #[test]
    fn memory_at_fewer_tenants_is_not_judged_met() {
        let m = MemoryReport {
            tenants: 10_000,
            keys: 100_000,
            rss_mib: 100.0,
            rss_before_mib: 8.0,
            fill_seconds: 1.0,
            note: String::new(),
            restart_listening_ms: None,
            restart_first_answer_ms: None,
            rss_after_restart_mib: None,
            targets: Vec::new(),
        };
        let t = &memory_targets(&m)[0];
        assert!(!t.met);
        assert!(t.margin.starts_with("not judged"));
        assert_eq!(t.name, "resident memory, 10,000 tenants / 100,000 keys");
        let full = MemoryReport {
            tenants: 100_000,
            keys: 1_000_000,
            rss_mib: 1500.0,
            ..m
        };
        let t = &memory_targets(&full)[0];
        assert!(!t.met);
        assert_eq!(t.margin, "missed by 476.00 MiB (1.5x over)");
    }

    fn figures(name: &str, rps: f64, p99: f64, ratio: f64) -> super::super::EndpointFigures {
        super::super::EndpointFigures {
            name: name.into(),
            method: "GET".into(),
            path: "/".into(),
            requests_per_second: rps,
            p50_ms: 1.0,
            p95_ms: 2.0,
            p99_ms: p99,
            runs_rps: vec![rps],
            statuses: vec![(200, 10)],
            ratio_to_hyper: Some(ratio),
            connections: 64,
            tenants: 1,
        }
    }

    fn bench_report(baseline: &str) -> BenchReport {
        BenchReport {
            machine: String::new(),
            concurrency: 64,
            duration_seconds: 5.0,
            warmup_seconds: 1.0,
            runs: 3,
            endpoints: vec![
                figures(baseline, 100_000.0, 1.0, 1.0),
                figures(super::super::HOT_PATH, 15_000.0, 12.0, 0.15),
                figures(super::super::READ, 50_000.0, 3.0, 0.5),
            ],
            generator: String::new(),
            target: String::new(),
            baseline: String::new(),
            scaling: Vec::new(),
            tenant_spread: Vec::new(),
            wrk: Vec::new(),
            targets: Vec::new(),
            timings: Vec::new(),
        }
    }

    #[test]
    fn load_goals_are_judged_with_their_margins() {
        let r = bench_report(super::super::BASELINE);
        let t = load_targets(&r);
        let by = |n: &str| t.iter().find(|t| t.name.starts_with(n)).unwrap().clone();
        let hot = by("hot path (");
        assert!(!hot.met);
        assert_eq!(hot.margin, "missed by 0.60 (5.0x short)");
        let p99 = by("hot path p99");
        assert!(!p99.met);
        assert_eq!(p99.measured, "12.000 ms");
        assert!(by("`GET /v1/api-keys`").met);
        // No wrk figure: the generator's goal is not claimed.
        assert!(!t.iter().any(|t| t.name.starts_with("load generator")));
        let summary = summary(&BenchReport {
            targets: t.clone(),
            ..r
        });
        assert!(summary.contains("MISSED, missed by 0.60 (5.0x short)"));
    }

    #[test]
    fn no_native_goals_against_another_baseline() {
        assert!(load_targets(&bench_report(super::super::GIVEN_BASELINE)).is_empty());
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(100), "100");
        assert_eq!(thousands(10_000), "10,000");
    }
}
