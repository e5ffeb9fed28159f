//! `auth-service`: the native host of the reference implementation.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// The auth-service reference implementation: multi-tenant API keys over HTTP, on SQLite.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Directory for the database, the key pepper and the generated admin key.
    #[arg(long)]
    data_dir: PathBuf,
    /// Base domain for subdomain routing: `<slug>.<base-domain>` names a tenant.
    #[arg(long)]
    base_domain: Option<String>,
    /// Turn on the test controls (never in production).
    #[arg(long)]
    test_hooks: bool,
    #[command(flatten)]
    limits: auth_service::LimitArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let admin_key = std::env::var("PLATFORM_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    // No fallback secret: without JWT_SECRET the service does not start.
    let Some(jwt_secret) = env("JWT_SECRET") else {
        anyhow::bail!(
            "JWT_SECRET is not set: set it to a random secret of at least {} characters \
             (it signs end-user access tokens; there is no default)",
            auth_service::MIN_JWT_SECRET_LEN
        );
    };
    let mail = match (env("MAIL_API_URL"), env("MAIL_API_KEY")) {
        (Some(url), Some(key)) => Some(auth_service::MailConfig::new(url, key)),
        (Some(_), None) => anyhow::bail!("MAIL_API_URL is set but MAIL_API_KEY is not"),
        _ => None,
    };
    let extras = auth_service::Extras {
        jwt_secret,
        jwt_secret_previous: env("JWT_SECRET_PREVIOUS"),
        mail,
    };
    let service = auth_service::spawn_limited(
        auth_service::Config {
            listen: args.listen,
            data_dir: args.data_dir.clone(),
            base_domain: args.base_domain,
            admin_key,
            test_hooks: args.test_hooks,
        },
        extras,
        args.limits.limits(),
    )
    .await
    .context("starting auth-service")?;
    if std::env::var("PLATFORM_ADMIN_KEY").is_err() {
        tracing::info!(
            path = %args.data_dir.join("platform-admin.key").display(),
            "platform admin key is in this file"
        );
    }
    // Print the bound address on stdout so scripts that pass port 0 can find the service.
    println!("listening on {}", service.local_addr);
    shutdown_signal().await;
    tracing::info!("shutting down");
    service.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
