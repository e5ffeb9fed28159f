//! `wrk` beside our generator: the same endpoint driven by `wrk -t1 -c<C> -d<D> --latency`, so a
//! reader sees the ceiling of our own generator. A key, if any, goes in a Lua script readable by
//! its owner only (never on the command line, where any local user could read it).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// `wrk`'s figures for one endpoint, and ours for the same endpoint at the same connections.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WrkFigures {
    pub name: String,
    pub connections: usize,
    pub requests_per_second: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub requests: u64,
    /// Answers that were not 2xx or 3xx (a 429 probe has them all).
    pub non_2xx_3xx: u64,
    /// Socket errors (connect, read, write, timeout) wrk counted.
    pub socket_errors: u64,
    /// Our generator's requests/s on the same endpoint and connections, in the same run.
    pub ours_requests_per_second: Option<f64>,
}

impl WrkFigures {
    /// Our generator's throughput as a share of wrk's.
    pub fn ours_to_wrk(&self) -> Option<f64> {
        let ours = self.ours_requests_per_second?;
        (self.requests_per_second > 0.0).then(|| ours / self.requests_per_second)
    }
}

/// Where `wrk` is, when installed (`AUTHCONF_WRK` overrides).
pub fn find() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("AUTHCONF_WRK") {
        return Some(PathBuf::from(p));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("wrk"))
            .find(|p| p.is_file())
    })
}

/// Runs `wrk -t1 -c<connections> -d<duration> --latency url`, with `Bearer <key>` when given.
pub fn run(
    wrk: &Path,
    name: &str,
    url: &str,
    key: Option<&str>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<WrkFigures> {
    let mut cmd = Command::new(wrk);
    cmd.arg("-t1")
        .arg(format!("-c{connections}"))
        .arg(format!("-d{}s", duration.as_secs().max(1)))
        .arg("--latency");
    let script = match key {
        Some(key) => {
            let mut f = tempfile::Builder::new().suffix(".lua").tempfile()?;
            writeln!(f, "wrk.headers[\"Authorization\"] = \"Bearer {key}\"")?;
            f.flush()?;
            cmd.arg("-s").arg(f.path());
            Some(f)
        }
        None => None,
    };
    let out = cmd
        .arg(url)
        .output()
        .with_context(|| format!("running {}", wrk.display()))?;
    drop(script);
    if !out.status.success() {
        bail!(
            "wrk exited with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let mut figures = parse(&String::from_utf8_lossy(&out.stdout))?;
    figures.name = name.to_owned();
    figures.connections = connections;
    Ok(figures)
}

/// A duration as wrk prints it (`750.00us`, `1.50ms`, `2.00s`, `1.00m`), in milliseconds.
fn millis(text: &str) -> Option<f64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        _ => return None,
    })
}

/// Reads requests/s, the 50 % and 99 % latencies and the error counts from wrk's `--latency`
/// output.
pub fn parse(output: &str) -> anyhow::Result<WrkFigures> {
    let mut f = WrkFigures {
        name: String::new(),
        connections: 0,
        requests_per_second: f64::NAN,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        requests: 0,
        non_2xx_3xx: 0,
        socket_errors: 0,
        ours_requests_per_second: None,
    };
    for line in output.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", n] => f.requests_per_second = n.parse()?,
            ["50%", d] => f.p50_ms = millis(d).context("wrk's 50% latency")?,
            ["99%", d] => f.p99_ms = millis(d).context("wrk's 99% latency")?,
            [n, "requests", "in", ..] => f.requests = n.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => f.non_2xx_3xx = n.parse()?,
            ["Socket", "errors:", rest @ ..] => {
                // "connect 0, read 0, write 0, timeout 0"
                f.socket_errors = rest
                    .iter()
                    .filter_map(|w| w.trim_end_matches(',').parse::<u64>().ok())
                    .sum();
            }
            _ => {}
        }
    }
    if f.requests_per_second.is_nan() || f.p50_ms.is_nan() || f.p99_ms.is_nan() {
        bail!("wrk's output has no Requests/sec or latency distribution (was --latency given?)");
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OUTPUT: &str = "Running 5s test @ http://127.0.0.1:40000/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   780.12us  200.00us   5.00ms   90.00%
    Req/Sec    82.00k     2.00k   85.00k    80.00%
  Latency Distribution
     50%  750.00us
     75%  800.00us
     90%  900.00us
     99%    1.50ms
  410123 requests in 5.00s, 40.00MB read
  Socket errors: connect 0, read 2, write 1, timeout 0
  Non-2xx or 3xx responses: 12
Requests/sec:  82024.60
Transfer/sec:      8.00MB
";

    #[test]
    fn reads_wrk_latency_output() {
        let f = parse(OUTPUT).unwrap();
        assert_eq!(f.requests_per_second, 82024.60);
        assert_eq!(f.p50_ms, 0.75);
        assert_eq!(f.p99_ms, 1.5);
        assert_eq!(f.requests, 410123);
        assert_eq!(f.non_2xx_3xx, 12);
        assert_eq!(f.socket_errors, 3);
    }

    #[test]
    fn durations_in_every_unit() {
        assert_eq!(millis("750.00us"), Some(0.75));
        assert_eq!(millis("1.50ms"), Some(1.5));
        assert_eq!(millis("2.00s"), Some(2000.0));
        assert_eq!(millis("1.00m"), Some(60_000.0));
        assert_eq!(millis("12"), None);
    }

    #[test]
    fn output_without_latency_is_refused() {
        let without = OUTPUT.replace("     99%    1.50ms\n", "");
        assert!(parse(&without).is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn ours_as_a_share_of_wrk() {
        let mut f = parse(OUTPUT).unwrap();
        assert_eq!(f.ours_to_wrk(), None);
        f.ours_requests_per_second = Some(41012.3);
        assert!((f.ours_to_wrk().unwrap() - 0.5).abs() < 1e-9);
    }
}
