//! The Worker's settings, read from its secrets and variables at an object's first use (never
//! in a constructor: a missing secret must become a 503 that names it, not a poisoned isolate).

use auth_core::users::jwt::JwtSecrets;
use worker::Env;

/// Where mail goes. The key is never logged.
pub struct MailApi {
    pub url: String,
    pub key: String,
}

/// What both object classes build from the environment.
pub struct Settings {
    pub service: auth_core::Service,
    pub secrets: JwtSecrets,
    pub test_hooks: bool,
    /// The mail API (`MAIL_API_URL`, `MAIL_API_KEY`); without it mail stays in the outbox.
    pub mail: Option<MailApi>,
}

impl Settings {
    /// Reads and checks every setting; the error names the missing or bad one, never a value.
    pub fn from_env(env: &Env) -> Result<Self, String> {
        let secret = |name: &str| -> Option<String> {
            env.secret(name)
                .map(|s| s.to_string())
                .or_else(|_| env.var(name).map(|v| v.to_string()))
                .ok()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
        };
        let admin_key = secret("PLATFORM_ADMIN_KEY").ok_or("PLATFORM_ADMIN_KEY is not set")?;
        let pepper = secret("KEY_PEPPER").ok_or("KEY_PEPPER is not set")?;
        let jwt_secret = secret("JWT_SECRET").ok_or("JWT_SECRET is not set")?;
        if jwt_secret.len() < 32 {
            return Err("JWT_SECRET must be at least 32 characters".into());
        }
        let previous = secret("JWT_SECRET_PREVIOUS");
        let base_domain = secret("BASE_DOMAIN");
        let test_hooks = secret("TEST_HOOKS").as_deref() == Some("1");
        let mail = match (secret("MAIL_API_URL"), secret("MAIL_API_KEY")) {
            (Some(url), Some(key)) => Some(MailApi { url, key }),
            (Some(_), None) => return Err("MAIL_API_URL is set but MAIL_API_KEY is not".into()),
            _ => None,
        };
        let secrets = JwtSecrets::new(
            jwt_secret.as_bytes(),
            previous.as_deref().map(str::as_bytes),
        );
        let service = auth_core::Service::new(auth_core::Config {
            admin_key,
            pepper: pepper.into_bytes(),
            base_domain,
            test_hooks,
        })
        .with_jwt_secrets(secrets.clone());
        Ok(Self {
            service,
            secrets,
            test_hooks,
            mail,
        })
    }
}
