//! What the benchmark drives: the bare hyper "hello world" baseline and the reference service,
//! each as a process of its own where the binaries allow it.
//!
//! A separate process matters on this 2-core machine: a server started inside the generator's
//! process would share its allocator and, in the same tokio runtime, its worker threads, so
//! the generator's own work would be counted as the server's cost (and the server's resident
//! memory would include the generator's). `wrk` always drives a server from outside; so do we.
//! Where the `auth-service` binary is not beside `authconf`, the reference runs in-process on
//! this process's runtime; the generator keeps a runtime and thread of its own either way.

use std::convert::Infallible;
use std::io::BufRead as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

/// True for a URL on 127.0.0.1, localhost or ::1: the only targets load is sent to.
pub fn is_loopback(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .unwrap_or("");
    let authority = rest.split('/').next().unwrap_or("");
    if authority.starts_with("[::1]") {
        return true;
    }
    let host = authority.split(':').next().unwrap_or("");
    host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// The socket address of a loopback `http://host:port[/...]` URL.
pub fn socket_addr(url: &str) -> anyhow::Result<SocketAddr> {
    if !is_loopback(url) {
        bail!("load benchmarks send traffic to 127.0.0.1 or localhost only, not {url}");
    }
    let rest = url
        .strip_prefix("http://")
        .context("only http:// targets")?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| !p.contains(']'))
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    authority
        .to_socket_addrs()?
        .next()
        .with_context(|| format!("{url} resolves to no address"))
}

/// Serves "hello world" on 127.0.0.1 (a free port), printing `listening on ADDR` first, until
/// the process ends: the baseline, run by `authconf bench --serve-hello` in a child process.
pub async fn serve_hello() -> anyhow::Result<()> {
    use hyper::server::conn::http1;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_req| async {
                Ok::<_, Infallible>(hyper::Response::new(http_body_util::Full::new(
                    bytes::Bytes::from_static(b"hello world"),
                )))
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A child process that prints `listening on ADDR` on stdout; killed when dropped.
pub struct ChildServer {
    child: Child,
    pub addr: String,
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildServer {
    /// Starts `cmd` and waits (at most `wait`) for its address line; the rest of its stdout is
    /// drained so it never writes into a full pipe.
    pub fn start(mut cmd: Command, wait: Duration) -> anyhow::Result<Self> {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {:?}", cmd.get_program()))?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = line.strip_prefix("listening on ") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.trim().to_owned());
                    }
                }
            }
        });
        let mut server = Self {
            child,
            addr: String::new(),
        };
        server.addr = rx
            .recv_timeout(wait)
            .with_context(|| format!("{:?} did not report its address", cmd.get_program()))?;
        Ok(server)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Asks the process to stop (SIGTERM), waits up to 10 s, then kills it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Drop kills it.
    }
}

/// The bare hyper baseline in a child process (`authconf bench --serve-hello`).
pub fn start_hello() -> anyhow::Result<ChildServer> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["bench", "--serve-hello"]);
    ChildServer::start(cmd, Duration::from_secs(10))
}

/// VmRSS of a process (`self` or a pid) in MiB; 0 where /proc is not there.
pub fn rss_mib_of(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The reference under load: the `auth-service` binary beside this one as a process of its
/// own, else in-process (see the module's comment).
pub enum Service {
    Process(ChildServer),
    InProcess(auth_service::RunningService),
}

impl Service {
    pub async fn start(dir: &Path, admin_key: &str) -> anyhow::Result<(Self, String)> {
        let beside = std::env::current_exe()?.with_file_name("auth-service");
        if beside.exists() {
            let mut cmd = Command::new(&beside);
            cmd.args(["--listen", "127.0.0.1:0", "--data-dir"])
                .arg(dir)
                .env("PLATFORM_ADMIN_KEY", admin_key)
                .env("JWT_SECRET", format!("bench-{admin_key}"))
                .env_remove("MAIL_API_URL")
                .env_remove("RUST_LOG");
            let child = tokio::task::spawn_blocking(move || {
                ChildServer::start(cmd, Duration::from_secs(600))
            })
            .await??;
            let base = format!("http://{}", child.addr);
            return Ok((Self::Process(child), base));
        }
        let running = auth_service::spawn(auth_service::Config {
            listen: "127.0.0.1:0".parse()?,
            data_dir: dir.to_owned(),
            base_domain: None,
            admin_key: Some(admin_key.to_owned()),
            test_hooks: false,
        })
        .await?;
        let base = running.base_url();
        Ok((Self::InProcess(running), base))
    }

    pub fn rss_mib(&self) -> f64 {
        match self {
            Self::Process(child) => rss_mib_of(&child.pid().to_string()),
            Self::InProcess(_) => rss_mib_of("self"),
        }
    }

    /// What the figures of this service cover.
    pub fn scope(&self) -> &'static str {
        match self {
            Self::Process(_) => "the auth-service process alone",
            Self::InProcess(_) => {
                "whole process (service plus load generator: no auth-service binary beside authconf)"
            }
        }
    }

    pub async fn stop(self) {
        match self {
            Self::Process(child) => {
                let _ = tokio::task::spawn_blocking(move || child.stop()).await;
            }
            Self::InProcess(running) => running.shutdown().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_driven() {
        assert!(is_loopback("http://127.0.0.1:8080/"));
        assert!(is_loopback("http://localhost:1"));
        assert!(!is_loopback("http://example.com/"));
        assert!(!is_loopback("http://127.0.0.1.example.com/"));
        assert!(is_loopback("http://127.0.0.2:9/"));
        assert!(is_loopback("http://[::1]:9/"));
        assert!(socket_addr("http://example.com:80/").is_err());
        assert_eq!(
            socket_addr("http://127.0.0.1:8080/x").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert_eq!(
            socket_addr("http://127.0.0.1").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
    }
}
