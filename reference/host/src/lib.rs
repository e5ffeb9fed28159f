//! Native host of the auth-service reference implementation.
//!
//! It maps the core's ports onto this machine: embedded SQLite (WAL) for storage, the system
//! clock, the OS CSPRNG; and serves the core over real HTTP with axum on tokio. The core's
//! request driver runs on the async workers; what it asks of the host ([`adapter`]) runs
//! where it belongs: a tenant's object on its runner (the blocking pool), the shared database
//! behind its lock on the blocking pool (admin routes, keyless end-user routes, key index
//! misses), blobs on the blocking pool.
//!
//! [`spawn`] starts a service inside the caller's tokio runtime; the `auth-service` binary and
//! the `authconf` harness (embedded mode) both use it.

mod adapter;
mod blobs;
mod body;
mod key_index;
mod listener;
mod mail;
mod objects;
mod passwords;
mod server;
mod settings;
mod sqlite;
mod state;

use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use auth_core::keys;
use auth_core::ports::{Clock, Entropy};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use mail::MailConfig;
pub use objects::MAX_LIVE_OBJECTS;
pub use settings::{LimitArgs, Limits};
pub use sqlite::Database;

/// Internals the host's criterion benches (`benches/storage_paths.rs`) measure directly, so
/// they time the code the service runs rather than a copy of it. Not part of the host's API.
#[doc(hidden)]
pub mod bench_support {
    pub use crate::objects::{BatchLimits, Runtime};
    pub use crate::sqlite::{open_connection, SqliteSql};
}

/// Settings of end-user auth and mail, beside [`Config`].
#[derive(Clone)]
pub struct Extras {
    /// `JWT_SECRET`: the base signing secret of access tokens (at least 32 characters).
    pub jwt_secret: String,
    /// `JWT_SECRET_PREVIOUS`: a secret that still verifies tokens while it is `previous`.
    pub jwt_secret_previous: Option<String>,
    /// The HTTP mail API (`MAIL_API_URL`, `MAIL_API_KEY`). Without it mail stays queued in the
    /// outbox and a warning is logged.
    pub mail: Option<MailConfig>,
}

impl std::fmt::Debug for Extras {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extras")
            .field("jwt_secret", &"..")
            .field(
                "jwt_secret_previous",
                &self.jwt_secret_previous.as_ref().map(|_| ".."),
            )
            .field("mail", &self.mail)
            .finish()
    }
}

/// Shortest `JWT_SECRET` accepted.
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// Checks a JWT signing secret: present, at least [`MIN_JWT_SECRET_LEN`] characters.
pub fn validate_jwt_secret(name: &str, secret: &str) -> anyhow::Result<()> {
    if secret.trim().len() < MIN_JWT_SECRET_LEN {
        bail!("{name} must be set to a random secret of at least {MIN_JWT_SECRET_LEN} characters");
    }
    Ok(())
}

/// How to run the service.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 picks a free one.
    pub listen: SocketAddr,
    /// Where the SQLite file, the key pepper and the generated admin key live.
    pub data_dir: PathBuf,
    /// Base domain for subdomain routing (`<slug>.<base>`).
    pub base_domain: Option<String>,
    /// The platform admin key; read from or generated into `data_dir/platform-admin.key`
    /// when `None`.
    pub admin_key: Option<String>,
    /// Turns on the test controls (`--test-hooks`).
    pub test_hooks: bool,
}

/// Idle time after which an object is evicted (the platform evicts after about 10 s idle).
pub const IDLE_EVICTION: std::time::Duration = std::time::Duration::from_secs(10);

/// A running service: its address and the admin key it accepts.
pub struct RunningService {
    pub local_addr: SocketAddr,
    pub admin_key: String,
    shutdown: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    passwords: Arc<passwords::PasswordPool>,
    /// The server's state, for the host's own unit tests.
    #[cfg(test)]
    state: Arc<server::AppState>,
}

impl RunningService {
    pub fn base_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Password hashes (argon2 runs) done so far: every login failure path costs one.
    pub fn password_hashes(&self) -> u64 {
        self.passwords.jobs()
    }

    /// Stops accepting connections, lets requests in flight finish, and returns when done.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Waits until the server stops by itself (it does not, unless it fails).
    pub async fn wait(mut self) {
        let _ = (&mut self.task).await;
    }
}

/// The system clock, plus an offset that only the test controls move.
#[derive(Debug, Default)]
pub struct HostClock {
    offset_ms: std::sync::atomic::AtomicI64,
}

impl HostClock {
    /// Moves the clock forward (a test control); answers the new time.
    pub fn advance(&self, ms: i64) -> i64 {
        self.offset_ms
            .fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
        self.now_ms()
    }
}

impl Clock for HostClock {
    fn now_ms(&self) -> i64 {
        let system = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        system + self.offset_ms.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// The OS CSPRNG.
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&self, buf: &mut [u8]) {
        // The OS generator failing is not something a request can recover from; refusing to
        // go on is safer than handing out predictable keys.
        getrandom::getrandom(buf).expect("the OS CSPRNG is available");
    }
}

/// Checks the shape the contract gives platform admin keys.
pub fn validate_admin_key(key: &str) -> anyhow::Result<()> {
    match key.strip_prefix("sk_live_") {
        Some(rest) if rest.len() >= 32 && rest.bytes().all(|b| b.is_ascii_graphic()) => Ok(()),
        _ => bail!("PLATFORM_ADMIN_KEY must be sk_live_ followed by at least 32 characters"),
    }
}

/// Writes a new file readable by its owner only, failing if it exists.
fn write_private(path: &Path, contents: &str) -> anyhow::Result<()> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(contents.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

/// Reads a secret file, or makes it with `make` on first start.
fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> anyhow::Result<String> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let value = make();
            write_private(path, &value)?;
            Ok(value)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Opens the data dir and the database, and starts serving, with a fresh random JWT secret
/// (so access tokens do not survive a restart, and rotated keys derived from it neither) and
/// no mail API (mail stays queued). Use [`spawn_with`] to choose them.
pub async fn spawn(config: Config) -> anyhow::Result<RunningService> {
    let extras = Extras {
        jwt_secret: keys::random_base62(48, &OsEntropy),
        jwt_secret_previous: None,
        mail: None,
    };
    spawn_with(config, extras).await
}

/// Opens the data dir and the database, and starts serving with the given JWT secrets and
/// mail API, under the default [`Limits`].
pub async fn spawn_with(config: Config, extras: Extras) -> anyhow::Result<RunningService> {
    spawn_limited(config, extras, Limits::default()).await
}

/// [`spawn_with`] under the given limits.
pub async fn spawn_limited(
    config: Config,
    extras: Extras,
    limits: Limits,
) -> anyhow::Result<RunningService> {
    validate_jwt_secret("JWT_SECRET", &extras.jwt_secret)?;
    if let Some(p) = &extras.jwt_secret_previous {
        validate_jwt_secret("JWT_SECRET_PREVIOUS", p)?;
    }
    blobs::create_private_dir(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let admin_key = match &config.admin_key {
        Some(k) => {
            validate_admin_key(k)?;
            k.clone()
        }
        None => read_or_create(&config.data_dir.join("platform-admin.key"), || {
            format!("sk_live_{}", keys::random_base62(40, &OsEntropy))
        })?,
    };
    // The pepper keys the hash of every API key; it lives beside, not inside, the database so
    // that a copy of the database alone does not allow testing guesses offline.
    let pepper = read_or_create(&config.data_dir.join("key-pepper"), || {
        keys::random_hex(32, &OsEntropy)
    })?;
    let db = Arc::new(Database::open(&config.data_dir.join("auth.sqlite3"))?);
    let clock = Arc::new(HostClock::default());
    let secrets = auth_core::users::jwt::JwtSecrets::new(
        extras.jwt_secret.trim().as_bytes(),
        extras
            .jwt_secret_previous
            .as_deref()
            .map(|p| p.trim().as_bytes()),
    );
    {
        let conn = db.lock();
        auth_core::users::jwt::reconcile(&sqlite::SqliteSql(&conn), &secrets, clock.now_ms())
            .context("reconciling the JWT keyring")?;
    }
    let tenants = objects::Runtime::start(&config.data_dir, Arc::clone(&db), Arc::clone(&clock))?;
    let graphs = objects::Runtime::start(&config.data_dir, Arc::clone(&db), Arc::clone(&clock))?;
    tenants.set_memory_budget(limits.object_memory_bytes);
    graphs.set_memory_budget(limits.object_memory_bytes);
    tenants.set_live_cap(limits.max_live_objects);
    graphs.set_live_cap(limits.max_live_objects);
    tenants.set_batch_limits(limits.object_batch);
    graphs.set_batch_limits(limits.object_batch);
    let blobs = blobs::BlobStore::open(&config.data_dir.join("blobs"))?;
    let passwords = Arc::new(passwords::PasswordPool::new(
        limits.password_workers,
        limits.password_queue,
        limits.password_wait,
    ));
    let per_address = std::num::NonZeroU32::new(limits.keyless_auth_per_address)
        .unwrap_or(std::num::NonZeroU32::MIN);
    let keyless_by_address = governor::RateLimiter::keyed(governor::Quota::per_minute(per_address));
    let work: Arc<dyn auth_core::users::password::PasswordWork> = Arc::clone(&passwords) as _;
    let service = auth_core::Service::new(auth_core::Config {
        admin_key: admin_key.clone(),
        pepper: pepper.into_bytes(),
        base_domain: config.base_domain.clone(),
        test_hooks: config.test_hooks,
    })
    .with_jwt_secrets(secrets)
    .with_limits(limits.core)
    .with_password_work(work);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("binding {}", config.listen))?;
    let local_addr = listener.local_addr()?;
    let (tx, rx) = oneshot::channel();
    let state = Arc::new(server::AppState {
        service,
        db,
        clock,
        tenants,
        graphs,
        blobs,
        keyless_by_address,
        key_index: key_index::KeyIndex::new(limits.key_index_entries),
        limits,
    });
    server::start_evictor(Arc::clone(&state), IDLE_EVICTION);
    let mailer = match extras.mail {
        Some(mail) => Some(mail::start(
            mail,
            Arc::clone(&state.db),
            Arc::clone(&state.clock),
            state.service.authenticator().hasher.clone(),
        )?),
        None => {
            tracing::warn!(
                "no mail API configured (MAIL_API_URL): mail stays queued in the outbox"
            );
            None
        }
    };
    #[cfg(test)]
    let test_state = Arc::clone(&state);
    let stopper = Arc::clone(&state);
    let task = tokio::spawn(async move {
        if let Err(e) = server::serve(listener, state, async move {
            let _ = rx.await;
            // Upgraded connections are not tracked by the server's graceful shutdown: stopping
            // the runtimes closes their sockets (1001) and ends the alarm scheduler and evictor.
            stopper.tenants.stop();
            stopper.graphs.stop();
        })
        .await
        {
            tracing::error!(error = %e, "server stopped");
        }
        if let Some(m) = mailer {
            m.abort();
        }
    });
    tracing::info!(%local_addr, "auth-service listening");
    Ok(RunningService {
        local_addr,
        admin_key,
        shutdown: Some(tx),
        task,
        passwords,
        #[cfg(test)]
        state: test_state,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A key in an answer's text (the answer to a tenant's creation holds its first keys).
    fn first_key(text: &str, prefix: &str) -> String {
        let start = text.find(prefix).expect("a key in the answer");
        text[start..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    }

    /// The hot path (a tenant route with a key whose tenant the index knows) does not wait for
    /// the shared database: held by someone else, the request is still answered. A key the
    /// index does not know yet does wait for it (the lookup that fills the index).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_known_key_is_served_without_the_shared_database() {
        let dir = tempfile::tempdir().expect("temp dir");
        let svc = spawn(Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            data_dir: dir.path().to_owned(),
            base_domain: None,
            admin_key: None,
            test_hooks: false,
        })
        .await
        .expect("service");
        let base = svc.base_url();
        let client = reqwest::Client::new();
        let created = client
            .post(format!("{base}/admin/tenants"))
            .bearer_auth(&svc.admin_key)
            .header("content-type", "application/json")
            .body(r#"{"name":"Hot","slug":"hot-path","plan":"pro"}"#)
            .send()
            .await
            .expect("create");
        assert_eq!(created.status(), 201);
        let text = created.text().await.expect("body");
        let key = first_key(&text, "sk_live_");
        let get = |key: String| {
            let client = client.clone();
            let url = format!("{base}/v1/rate-limit");
            async move {
                let sent = client.get(url).bearer_auth(key).send();
                tokio::time::timeout(Duration::from_secs(3), sent).await
            }
        };
        // First use: the index learns the key's tenant, the object loads its records.
        let warm = get(key.clone()).await.expect("answered").expect("sent");
        assert_eq!(warm.status(), 200);

        // Someone else holds the shared database (a thread, as the blocking pool would).
        let (locked_tx, locked) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let state = Arc::clone(&svc.state);
        let holder = std::thread::spawn(move || {
            let _held = state.db.lock();
            let _ = locked_tx.send(());
            let _ = released.recv();
        });
        locked.recv().expect("the holder has the lock");
        let hot = get(key.clone()).await;
        let unknown = keys::generate(keys::KeyType::Secret, keys::Environment::Live, &OsEntropy);
        let other = get(unknown).await;
        release.send(()).expect("the holder waits");
        holder.join().expect("the holder ends");
        let hot = hot.expect("answered while the shared database was held");
        assert_eq!(hot.expect("sent").status(), 200);
        assert!(
            other.is_err(),
            "a key the index does not know is looked up in the shared database"
        );
        svc.shutdown().await;
    }
}
