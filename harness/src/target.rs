//! The target of a run, made ready: the embedded reference started in-process (temporary data
//! dir, test controls on, fresh admin key and JWT secret, a wiremock mail API), or a URL
//! target checked for form, with the admin key from the environment and, with
//! `--mail-capture`, a mail API the target sends to.

use std::time::{Duration, Instant};

use crate::error::RunError;
use crate::mail;
use crate::options::{RunOptions, Target};

/// The target started or reached for a run.
pub(crate) struct Prepared {
    pub(crate) base_url: String,
    pub(crate) admin_key: Option<String>,
    pub(crate) embedded: Option<auth_service::RunningService>,
    _data_dir: Option<tempfile::TempDir>,
    /// The mail API the embedded reference sends to.
    pub(crate) mail: Option<mail::WiremockMail>,
    /// The JWT signing secret, when the harness knows it.
    pub(crate) jwt_secret: Option<String>,
    /// The mail API's key: never to appear in a response or in a mail body.
    pub(crate) mail_key: Option<String>,
}

fn random_alnum(n: usize) -> String {
    use rand::Rng as _;
    rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// Starts or checks the target `opts` names.
pub(crate) async fn prepare(opts: &RunOptions) -> Result<Prepared, RunError> {
    match &opts.target {
        Target::Embedded => embedded(opts).await,
        Target::Url(u) => url(opts, u).await,
    }
}

async fn embedded(opts: &RunOptions) -> Result<Prepared, RunError> {
    let dir = tempfile::tempdir()?;
    let key = format!("sk_live_{}", random_alnum(40));
    let config = auth_service::Config {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: dir.path().to_path_buf(),
        base_domain: Some(
            opts.base_domain
                .clone()
                .unwrap_or_else(|| "auth.test".into()),
        ),
        admin_key: Some(key),
        test_hooks: true,
    };
    // A mail API that captures every mail, and secrets the harness chose: the steps
    // read tokens from the mail and can sign JWTs independently.
    let mail = mail::WiremockMail::start().await;
    let jwt_secret = random_alnum(48);
    let mail_key = format!("mailkey_{}", random_alnum(32));
    let extras = auth_service::Extras {
        jwt_secret: jwt_secret.clone(),
        jwt_secret_previous: None,
        mail: Some(auth_service::MailConfig::new(mail.url(), mail_key.clone())),
    };
    let svc = auth_service::spawn_with(config, extras)
        .await
        .map_err(|e| {
            RunError::Unreachable(format!("the embedded reference did not start: {e:#}"))
        })?;
    Ok(Prepared {
        base_url: svc.base_url(),
        admin_key: Some(svc.admin_key.clone()),
        embedded: Some(svc),
        _data_dir: Some(dir),
        mail: Some(mail),
        jwt_secret: Some(jwt_secret),
        mail_key: Some(mail_key),
    })
}

async fn url(opts: &RunOptions, u: &str) -> Result<Prepared, RunError> {
    let url =
        reqwest::Url::parse(u).map_err(|e| RunError::Usage(format!("--target {u:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(RunError::Usage(format!(
            "--target {u:?}: http or https only"
        )));
    }
    if opts.admin_key.is_none() {
        return Err(RunError::Usage(
            "a URL target needs the platform admin key in AUTHCONF_ADMIN_KEY".into(),
        ));
    }
    let (mail, mail_key) = match &opts.mail_capture {
        Some((addr, key)) => {
            let mail = mail::WiremockMail::start_on(*addr).await.map_err(|e| {
                RunError::Usage(format!("--mail-capture {addr}: cannot listen: {e}"))
            })?;
            (Some(mail), key.clone())
        }
        None => (None, None),
    };
    Ok(Prepared {
        base_url: u.trim_end_matches('/').to_owned(),
        admin_key: opts.admin_key.clone(),
        embedded: None,
        _data_dir: None,
        mail,
        jwt_secret: opts.jwt_secret.clone(),
        mail_key,
    })
}

impl Prepared {
    /// Stops the embedded reference, if there is one, then drops its data dir. Close the
    /// run's pooled connections first: the reference shuts down gracefully, waiting for open
    /// connections.
    pub(crate) async fn shut_down(self, progress: bool) {
        if let Some(svc) = self.embedded {
            let shutdown_started = Instant::now();
            svc.shutdown().await;
            if progress && shutdown_started.elapsed() > Duration::from_secs(2) {
                eprintln!(
                    "note: the embedded reference took {:.1} s to shut down",
                    shutdown_started.elapsed().as_secs_f64()
                );
            }
        }
    }
}
