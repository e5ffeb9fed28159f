//! workerd serving the Worker artifact on a free port of 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{ADMIN_KEY, JWT_SECRET, PEPPER};

pub(crate) fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// workerd serving the Worker; stopped with SIGTERM, then SIGKILL, however the test ends.
pub(crate) struct Workerd {
    child: Child,
    pub(crate) base: String,
}

impl Workerd {
    /// workerd with the test settings, each of `overrides` (name, value) in place of its own.
    pub(crate) fn start(data: &Path, bindings: &str, overrides: &[(&str, &str)]) -> Workerd {
        let root = repo_root();
        let artifact = root.join("reference/worker/build/index_bg.wasm");
        assert!(
            artifact.exists(),
            "no Worker artifact at {}: run scripts/build-worker",
            artifact.display()
        );
        let bin = root.join("node_modules/.bin/workerd");
        assert!(
            bin.exists(),
            "no workerd at {}: run scripts/install-worker-tools",
            bin.display()
        );
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("its address").port()
        };
        let link = data.join("worker");
        if !link.exists() {
            std::os::unix::fs::symlink(root.join("reference/worker/build"), &link)
                .expect("link the artifact");
        }
        let config = Command::new("python3")
            .arg(root.join("scripts/workerd-config.py"))
            .args(["--port", &port.to_string(), "--bindings", bindings])
            .arg("--data")
            .arg(data)
            .env("PLATFORM_ADMIN_KEY", ADMIN_KEY)
            .env("JWT_SECRET", JWT_SECRET)
            .env("KEY_PEPPER", PEPPER)
            .env("BASE_DOMAIN", "auth.test")
            .env("TEST_HOOKS", "1")
            .envs(overrides.iter().copied())
            .output()
            .expect("python3 runs scripts/workerd-config.py");
        assert!(
            config.status.success(),
            "{}",
            String::from_utf8_lossy(&config.stderr)
        );
        std::fs::write(data.join("workerd.capnp"), &config.stdout).expect("write the config");
        std::fs::create_dir_all(data.join("do")).expect("object dir");
        let child = Command::new(bin)
            .arg("serve")
            .arg(data.join("workerd.capnp"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("workerd starts");
        Workerd {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits until workerd answers `/health` and returns the status: 200 when the Worker's
    /// settings are usable, 503 when they are not (what a stack started with bad overrides
    /// expects).
    pub(crate) async fn ready(&self, client: &reqwest::Client) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = client.get(format!("{}/health", self.base)).send().await {
                return r.status().as_u16();
            }
            assert!(Instant::now() < deadline, "workerd did not answer /health");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops workerd once: a second call (the drop after a restart's stop) finds it reaped and
    /// sends no signal, so it can never reach a process that has since taken the pid.
    pub(crate) fn stop(&mut self) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Workerd {
    fn drop(&mut self) {
        self.stop();
    }
}
