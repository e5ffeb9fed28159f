//! The front: the first stage of every request, before any tenant's object.
//!
//! It runs in two parts, so that the hot path needs no shared storage:
//! - [`Service::begin`], stateless (a clock and randomness only): the request id, the body
//!   limit, the route and its method ([`Route::parse`]), keys in the query, and for a route
//!   that carries a tenant key, the key's shape and keyed hash. Meta routes are answered here.
//!   A keyed request leaves as [`Stage::Keyed`]: the host finds the key's tenant in its own
//!   index ([`crate::driver::Host::key_owner`]) and calls that tenant's object, which decides
//!   whether the key is usable.
//! - [`Service::front`], over the shared rows: the admin API, and end-user routes that name
//!   their tenant without a key. An admin metrics route stops there with
//!   [`Front::FlushMetrics`], holding the authorised caller and its route; once the host has
//!   flushed usage, [`Service::resume`] answers it without authenticating again.
//!
//! [`crate::driver::drive`] runs the whole sequence over a host.

use ::http::Method;

use crate::auth::AdminCaller;
use crate::auth::Authenticator;
use crate::handlers::admin::{self, JwtAction};
use crate::handlers::meta;
use crate::handlers::platform;
use crate::http::{self, request_id, ApiError, Request, RequestId, Response};
use crate::keys::{self, KeyHasher};
use crate::notice::{no_detail, Notice, ADMIN_ACTOR};
use crate::ports::{Clock, Entropy, Ports, Sql};
use crate::route::{AdminRoute, MetaRoute, Route, TenantRoute};
use crate::tenant_state::{TenantCall, TenantContext};
use crate::test_controls::TestControl;
use crate::users::{self, UserRoute};
use crate::{model, store};

/// Settings a host passes in once.
#[derive(Debug, Clone)]
pub struct Config {
    /// The platform admin key. Only its keyed hash is kept.
    pub admin_key: String,
    /// Server-side secret of the key hash; never stored next to the hashes.
    pub pepper: Vec<u8>,
    /// Base domain for subdomain routing (`<slug>.<base>`).
    pub base_domain: Option<String>,
    /// Whether test controls are on (`--test-hooks`).
    pub test_hooks: bool,
}

/// What the host should log about a handled request. Never holds a secret.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub request_id: String,
    pub status: u16,
    /// Set when the request failed inside the service (a storage error).
    pub internal_error: bool,
}

/// What the stateless part of the front decided ([`Service::begin`]).
#[derive(Debug)]
pub struct Begun {
    pub request_id: String,
    /// HEAD: the answer goes out without its body.
    pub head: bool,
    pub stage: Stage,
}

#[derive(Debug)]
pub enum Stage {
    /// The answer (a meta route, or a refusal).
    Respond(Response),
    /// A route carrying a well-formed tenant key: its owner is looked up by hash, then the
    /// owner's object runs it.
    Keyed(Keyed),
    /// The rest of the front needs the shared rows: run [`Service::front`] with them.
    Shared(FrontStep),
}

/// A request with a tenant key, its tenant not known yet.
#[derive(Debug)]
pub struct Keyed {
    pub key_hash: String,
    pub route: TenantRoute,
    pub request: Request,
}

impl Keyed {
    /// The call to the object of `tenant_id`, the key's owner.
    pub fn into_call(self, tenant_id: String) -> TenantCall {
        TenantCall {
            tenant_id,
            key_hash: self.key_hash,
            route: self.route,
            request: self.request,
        }
    }
}

/// The part of the front that reads the shared rows, for [`Service::front`].
#[derive(Debug)]
pub struct FrontStep(Step);

#[derive(Debug)]
enum Step {
    Admin(AdminRoute, Request),
    /// End-user auth without a tenant key: the tenant comes from an access token or the
    /// routing sources.
    User(UserRoute, Request),
    TestControl(Request),
}

impl FrontStep {
    /// The request this step is about.
    pub fn request(&self) -> &Request {
        match &self.0 {
            Step::Admin(_, r) | Step::User(_, r) | Step::TestControl(r) => r,
        }
    }

    /// The admin route, if this is one (a host may refresh rows it copies before it runs).
    pub fn admin_route(&self) -> Option<&AdminRoute> {
        match &self.0 {
            Step::Admin(route, _) => Some(route),
            _ => None,
        }
    }
}

/// What the front decided about a request, with the shared rows.
#[derive(Debug)]
pub enum Front {
    /// The answer. `notices` are changes the admin API made to tenants: the host passes each
    /// to that tenant's `TenantState` object ([`crate::TenantState::notice`]) before it sends
    /// the answer, so the object's cache is never stale once the client hears back.
    Respond {
        response: Response,
        notices: Vec<(String, Notice)>,
    },
    /// A tenant route: run it in the tenant's object.
    Tenant(TenantCall),
    /// An admin metrics route, authorised: the host flushes the usage counts every tenant
    /// object holds, then answers with [`Service::resume`].
    FlushMetrics(Resume),
    /// A test control, authorised (platform admin, test hooks on): the host carries it out.
    TestControl(TestControl),
}

/// An authorised admin metrics read waiting for the usage flush.
#[derive(Debug)]
pub struct Resume {
    caller: AdminCaller,
    route: AdminRoute,
    request: Request,
}

/// The service: configuration plus the request entry points.
pub struct Service {
    config: Config,
    authenticator: Authenticator,
    jwt: Option<users::jwt::JwtSecrets>,
    passwords: std::sync::Arc<dyn users::password::PasswordWork>,
    limits: crate::limits::Limits,
}

impl Service {
    pub fn new(config: Config) -> Self {
        let hasher = KeyHasher::new(&config.pepper);
        let authenticator = Authenticator {
            admin_key_hash: hasher.hash(&config.admin_key),
            hasher,
            base_domain: config
                .base_domain
                .as_deref()
                .map(|d| d.trim_start_matches('.').to_ascii_lowercase()),
        };
        Self {
            config,
            authenticator,
            jwt: None,
            passwords: std::sync::Arc::new(users::password::Inline),
            limits: crate::limits::Limits::default(),
        }
    }

    /// Sets the limits (keyless end-user auth, WebSockets); the defaults apply otherwise.
    pub fn with_limits(mut self, limits: crate::limits::Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> &crate::limits::Limits {
        &self.limits
    }

    /// Runs password hashing on `work` (the native host's bounded pool) instead of inline.
    pub fn with_password_work(
        mut self,
        work: std::sync::Arc<dyn users::password::PasswordWork>,
    ) -> Self {
        self.passwords = work;
        self
    }

    /// Where password hashing runs.
    pub fn password_work(&self) -> &dyn users::password::PasswordWork {
        &*self.passwords
    }

    /// Turns on end-user auth with these signing secrets (`JWT_SECRET`, `JWT_SECRET_PREVIOUS`).
    /// Without them every `/v1/auth/*` route that would sign or verify a token fails closed:
    /// there is no fallback secret.
    pub fn with_jwt_secrets(mut self, secrets: users::jwt::JwtSecrets) -> Self {
        self.jwt = Some(secrets);
        self
    }

    /// The signing secrets, if end-user auth is on.
    pub fn jwt_secrets(&self) -> Option<&users::jwt::JwtSecrets> {
        self.jwt.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// What a tenant's object needs of the service to run a call.
    pub fn tenant_context(&self) -> TenantContext<'_> {
        TenantContext {
            authenticator: &self.authenticator,
            limits: &self.limits,
            jwt: self.jwt.as_ref(),
            passwords: &*self.passwords,
        }
    }

    /// The stateless part of the front: no storage, so a host runs it inline. Never panics on
    /// any input; every failure is a problem document.
    pub fn begin(&self, clock: &dyn Clock, entropy: &dyn Entropy, mut req: Request) -> Begun {
        let request_id = keys::random_hex(8, entropy);
        req.extensions_mut().insert(RequestId(request_id.clone()));
        let head = req.method() == Method::HEAD;
        let stage = self
            .stage(clock, req)
            .unwrap_or_else(|e| Stage::Respond(e.into_response()));
        Begun {
            request_id,
            head,
            stage,
        }
    }

    fn stage(&self, clock: &dyn Clock, req: Request) -> Result<Stage, ApiError> {
        if self.config.test_hooks && req.uri().path().starts_with("/_test/") {
            return Ok(Stage::Shared(FrontStep(Step::TestControl(req))));
        }
        // Every route refuses an oversized body, also those that would ignore a body, so the
        // limit holds whatever a handler reads. CSV uploads have their own, larger limit.
        if req.body().len() > http::MAX_BODY_BYTES && req.uri().path() != "/v1/graph/csv" {
            return Err(ApiError::PayloadTooLarge);
        }
        let route = Route::parse(req.method(), req.uri().path())?;
        let route = match route {
            Route::Meta(m) => {
                return Ok(Stage::Respond(match m {
                    MetaRoute::Health => meta::health(clock),
                    MetaRoute::OpenApi => meta::openapi(),
                    MetaRoute::Capabilities => meta::capabilities(
                        self.config.base_domain.as_deref(),
                        self.config.test_hooks,
                    ),
                }))
            }
            Route::Admin(a) => {
                crate::auth::refuse_keys_in_query(&http::query_pairs(req.uri().query()))?;
                return Ok(Stage::Shared(FrontStep(Step::Admin(a, req))));
            }
            Route::Tenant(t) => t,
        };
        crate::auth::refuse_keys_in_query(&http::query_pairs(req.uri().query()))?;
        let auth = &self.authenticator;
        if let TenantRoute::User(u) = route {
            // Without a key, or with an access token, the tenant is found in the shared rows.
            if u.uses_access_token() || !auth.has_bearer(&req) {
                return Ok(Stage::Shared(FrontStep(Step::User(u, req))));
            }
        }
        let key_hash = auth.tenant_key_hash(&req)?;
        Ok(Stage::Keyed(Keyed {
            key_hash,
            route,
            request: req,
        }))
    }

    /// The tenant that owns the key with this hash, from the shared rows (a host's index
    /// falls back to this). A key's tenant never changes.
    pub fn key_owner(&self, db: &dyn Sql, key_hash: &str) -> Result<Option<String>, ApiError> {
        Ok(store::find_key_by_hash(db, key_hash)?.map(|k| k.tenant_id))
    }

    /// The part of the front that reads the shared rows. Never panics on any input.
    pub fn front(&self, ports: &Ports, step: FrontStep) -> Front {
        let decided = match step.0 {
            Step::Admin(route, req) => self.admin(ports, route, req),
            Step::User(route, req) => self.user(ports, route, req),
            Step::TestControl(req) => self
                .authenticator
                .admin(ports, &req)
                .and_then(|()| TestControl::parse(&req))
                .map(Front::TestControl),
        };
        decided.unwrap_or_else(|e| Front::Respond {
            response: e.into_response(),
            notices: Vec::new(),
        })
    }

    /// Answers an admin metrics read after the usage flush, as the caller the front
    /// authorised ([`Front::FlushMetrics`]).
    pub fn resume(&self, ports: &Ports, resume: Resume) -> Response {
        self.admin_answer(ports, &resume.caller, resume.route, &resume.request)
            .map(|(response, _)| response)
            .unwrap_or_else(ApiError::into_response)
    }

    fn user(&self, ports: &Ports, route: UserRoute, req: Request) -> Result<Front, ApiError> {
        let query = http::query_pairs(req.uri().query());
        let (tenant_id, key_hash) =
            self.authenticator
                .user_route_tenant(ports, &req, &query, route.uses_access_token())?;
        Ok(Front::Tenant(TenantCall {
            tenant_id,
            key_hash,
            route: TenantRoute::User(route),
            request: req,
        }))
    }

    fn admin(&self, ports: &Ports, route: AdminRoute, req: Request) -> Result<Front, ApiError> {
        let caller = self.authenticator.platform_admin(ports, &req)?;
        let read = req.method() == Method::GET || req.method() == Method::HEAD;
        if !read {
            caller.require_write()?;
        }
        // A tenant outside the admin's limit is exactly an unknown tenant.
        if route.tenant().is_some_and(|id| !caller.sees(id)) {
            return Err(ApiError::NotFound);
        }
        if route.reads_usage() {
            return Ok(Front::FlushMetrics(Resume {
                caller,
                route,
                request: req,
            }));
        }
        let (response, notices) = self.admin_answer(ports, &caller, route, &req)?;
        Ok(Front::Respond { response, notices })
    }

    /// Runs an admin route for an authorised caller.
    fn admin_answer(
        &self,
        ports: &Ports,
        caller: &AdminCaller,
        route: AdminRoute,
        req: &Request,
    ) -> Result<(Response, Vec<(String, Notice)>), ApiError> {
        let hasher = &self.authenticator.hasher;
        let query = http::query_pairs(req.uri().query());
        let request_id = request_id(req);
        let notice = |tenant_id: &str, action: &str, detail: serde_json::Value, end: bool| {
            (
                tenant_id.to_owned(),
                Notice {
                    actor: ADMIN_ACTOR.into(),
                    action: action.into(),
                    target: tenant_id.to_owned(),
                    detail,
                    request_id: request_id.clone(),
                    end_sessions: end,
                },
            )
        };
        let only = |r: Response| Ok((r, Vec::new()));
        let jwt = |action| {
            caller.require_unlimited()?;
            if action != JwtAction::List {
                caller.require_global_superadmin()?;
            }
            admin::jwt_keyring(ports, self.jwt.as_ref(), action, req)
        };
        match route {
            AdminRoute::ListTenants => only(admin::list_tenants(ports, &query, caller.only())?),
            AdminRoute::CreateTenant => {
                caller.require_global_superadmin()?;
                let (resp, tenant) = admin::create_tenant(ports, hasher, req)?;
                let n = notice(&tenant.id, "tenant.created", no_detail(), false);
                Ok((resp, vec![n]))
            }
            AdminRoute::GetTenant(id) => only(admin::get_tenant(ports, &id)?),
            AdminRoute::DeleteTenant(id) => {
                let (resp, tenant) = admin::delete_tenant(ports, &id)?;
                let n = notice(&tenant.id, "tenant.deleted", no_detail(), true);
                Ok((resp, vec![n]))
            }
            AdminRoute::ReplaceTenant(id) | AdminRoute::PatchTenant(id) => {
                let (resp, tenant, changes) = admin::update_tenant(ports, &id, req)?;
                let end = tenant.status != model::TenantStatus::Active;
                let n = notice(&tenant.id, "tenant.updated", changes, end);
                Ok((resp, vec![n]))
            }
            AdminRoute::ListTenantKeys(id) => only(admin::list_tenant_keys(ports, &id)?),
            AdminRoute::CreateTenantKey(id) => {
                let (changed, tenant_id) = admin::create_tenant_key(ports, hasher, &id, req)?;
                let mut n = notice(&tenant_id, changed.action, changed.detail, false);
                n.1.target = changed.target;
                Ok((changed.response, vec![n]))
            }
            AdminRoute::TenantMetrics(id) => only(platform::tenant_metrics(ports, &id, &query)?),
            AdminRoute::Dashboard => only(platform::dashboard(ports, caller)?),
            AdminRoute::Metrics => only(platform::all_metrics(ports, caller, &query)?),
            AdminRoute::ApiKeys => only(platform::list_keys(ports, caller, &query)?),
            AdminRoute::ListAdmins => {
                caller.require_global_superadmin()?;
                only(platform::list_admins(ports)?)
            }
            AdminRoute::CreateAdmin => {
                caller.require_root()?;
                only(platform::create_admin(ports, hasher, req)?)
            }
            AdminRoute::RevokeAdmin(id) => {
                caller.require_root()?;
                only(platform::revoke_admin(ports, &id)?)
            }
            AdminRoute::Jwt => only(jwt(JwtAction::List)?),
            AdminRoute::JwtRotate => only(jwt(JwtAction::Rotate)?),
            AdminRoute::JwtRetirePrevious => only(jwt(JwtAction::RetirePrevious)?),
        }
    }
}
