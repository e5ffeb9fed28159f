//! The World itself: the state of one scenario and what every step asks of it first (its
//! tags, the last exchange, a tenant by name). Built by cucumber inside [`with_context`].

use std::collections::BTreeMap;
use std::sync::Arc;

use super::state::{KeyRef, TenantRef, Users};
use super::stream::Stream;
use crate::context::RunContext;
use crate::support::http::{Exchange, Req};

/// Raised when a world is built outside [`crate::with_context`].
#[derive(Debug, thiserror::Error)]
#[error("authconf scenarios need a run context (run them through authconf::run_suite)")]
pub struct ContextMissing;

tokio::task_local! {
    static CONTEXT: Arc<RunContext>;
}

/// Runs `fut` (the cucumber run) with `ctx` as the context of every world it builds.
pub async fn with_context<F: std::future::Future>(ctx: Arc<RunContext>, fut: F) -> F::Output {
    CONTEXT.scope(ctx, fut).await
}

/// The World of one scenario.
#[derive(Debug, cucumber::World)]
#[world(init = Self::new)]
pub struct AuthWorld {
    /// The run's shared context.
    pub ctx: Arc<RunContext>,
    /// Tenants by scenario name (`A`, `B`).
    pub tenants: BTreeMap<String, TenantRef>,
    /// Keys by reference (`A:secret`, `A:ci`).
    pub keys: BTreeMap<String, KeyRef>,
    /// Literal credentials built by steps (truncated keys and the like).
    pub raw_creds: BTreeMap<String, String>,
    /// Named values for placeholders (`{slug:x}`).
    pub values: BTreeMap<String, String>,
    /// The last exchange.
    pub last: Option<Exchange>,
    /// The last request, expanded (for re-sending it with a change).
    pub last_req: Option<Req>,
    /// Exchanges saved by name.
    pub saved: BTreeMap<String, Exchange>,
    /// Responses of the last batch of concurrent requests.
    pub batch: Vec<Exchange>,
    /// Secrets issued to this scenario, in order (for entropy checks).
    pub issued: Vec<String>,
    /// Open event streams by name.
    pub streams: BTreeMap<String, Stream>,
    /// End users, their tokens and their mail.
    pub users: Users,
    /// `<feature path>:<scenario line>`, set by the harness's `before` hook; deviations are
    /// recorded under it.
    pub scenario_key: Option<String>,
    /// The scenario's tags (with or without the leading `@`), set by the harness's `before`
    /// hook; `@contract` makes format deviations fail the step.
    pub scenario_tags: Vec<String>,
}

impl AuthWorld {
    pub(crate) fn new() -> Result<Self, ContextMissing> {
        let ctx = CONTEXT.try_with(Arc::clone).map_err(|_| ContextMissing)?;
        Ok(AuthWorld {
            ctx,
            tenants: BTreeMap::new(),
            keys: BTreeMap::new(),
            raw_creds: BTreeMap::new(),
            values: BTreeMap::new(),
            last: None,
            last_req: None,
            saved: BTreeMap::new(),
            batch: Vec::new(),
            issued: Vec::new(),
            streams: BTreeMap::new(),
            users: Users::default(),
            scenario_key: None,
            scenario_tags: Vec::new(),
        })
    }

    /// Whether the scenario carries `tag` (given without `@`).
    pub fn has_tag(&self, tag: &str) -> bool {
        self.scenario_tags
            .iter()
            .any(|t| t.trim_start_matches('@') == tag)
    }

    /// Whether the scenario judges shapes (`@contract`): there a format deviation is the
    /// subject and fails the step.
    pub fn is_contract(&self) -> bool {
        self.has_tag("contract")
    }

    /// `METHOD path` of the last exchange (`(no request)` before the first one).
    pub fn last_request_line(&self) -> String {
        match &self.last {
            Some(e) => format!("{} {}", e.method, e.path),
            None => "(no request)".to_owned(),
        }
    }

    /// The last exchange; a step that needs one before any request is a bug in the feature.
    pub fn last(&self) -> &Exchange {
        match &self.last {
            Some(e) => e,
            None => self.harness_error("no request has been sent yet in this scenario"),
        }
    }

    /// A tenant of the scenario.
    pub fn tenant(&self, name: &str) -> &TenantRef {
        match self.tenants.get(name) {
            Some(t) => t,
            None => self.harness_error(format!("the scenario has no tenant {name:?}")),
        }
    }
}
