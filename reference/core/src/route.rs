//! The route table: every route the service answers, parsed once, with its method check.
//!
//! [`Route::parse`] turns a method and a path into a typed [`Route`] (or the 404 / 405 with
//! `Allow` to answer). The parsed route travels with the request: the front acts on it, the
//! tenant's object runs it ([`crate::tenant_state`] never reads the path again), and usage is
//! counted under its [`Endpoint`]. [`Endpoint`] is the table itself, one row per method and
//! path template; [`crate::ROUTES`] is derived from it, and every route maps to exactly one
//! row (the `match` in [`Route::endpoint`] is exhaustive; the tests parse every row back).

use http::Method;
use serde::{Deserialize, Serialize};

use crate::http::{path_segments, ApiError};
use crate::users::UserRoute;

/// A route, parsed and method-checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Route {
    /// No authentication: health, the OpenAPI document, the capabilities document.
    Meta(MetaRoute),
    /// `/admin/*`: the platform admin API, run by the front over the shared rows.
    Admin(AdminRoute),
    /// `/v1/*`: run in the tenant's object.
    Tenant(TenantRoute),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetaRoute {
    Health,
    OpenApi,
    Capabilities,
}

/// An admin route; ids are as they appear in the path, percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRoute {
    ListTenants,
    CreateTenant,
    GetTenant(String),
    ReplaceTenant(String),
    PatchTenant(String),
    DeleteTenant(String),
    ListTenantKeys(String),
    CreateTenantKey(String),
    TenantMetrics(String),
    Dashboard,
    Metrics,
    ApiKeys,
    ListAdmins,
    CreateAdmin,
    RevokeAdmin(String),
    Jwt,
    JwtRotate,
    JwtRetirePrevious,
}

impl AdminRoute {
    /// Whether the route reads usage counts, which must be flushed from the tenants' objects
    /// first.
    pub fn reads_usage(&self) -> bool {
        matches!(
            self,
            AdminRoute::TenantMetrics(_) | AdminRoute::Dashboard | AdminRoute::Metrics
        )
    }

    /// The tenant the path names, if any (an admin limited to some tenants sees no other).
    pub fn tenant(&self) -> Option<&str> {
        match self {
            AdminRoute::GetTenant(id)
            | AdminRoute::ReplaceTenant(id)
            | AdminRoute::PatchTenant(id)
            | AdminRoute::DeleteTenant(id)
            | AdminRoute::ListTenantKeys(id)
            | AdminRoute::CreateTenantKey(id)
            | AdminRoute::TenantMetrics(id) => Some(id),
            _ => None,
        }
    }
}

/// A route run in the tenant's object: the API a tenant's key calls, or end-user auth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TenantRoute {
    Api(ApiRoute),
    User(UserRoute),
}

/// `/v1/*` outside `/v1/auth/`: authenticated with one of the tenant's keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ApiRoute {
    Tenant,
    RateLimit,
    ListKeys,
    CreateKey,
    GetKey(String),
    RevokeKey(String),
    RotateKey(String),
    AuditLog,
    Events,
    Graph(GraphOp),
}

/// A graph route (`/v1/graph/*`), run by the tenant's `GraphStateCSV` object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GraphOp {
    /// `PUT /v1/graph/csv`: the only route whose body may be larger than
    /// [`crate::http::MAX_BODY_BYTES`]; the host reads it after the front.
    Upload,
    Reload,
    State,
    Validate,
    Check,
    Mutate,
    Mutations,
}

impl GraphOp {
    /// The permission a restricted key needs.
    pub fn needs(self) -> &'static str {
        match self {
            GraphOp::State | GraphOp::Mutations | GraphOp::Check | GraphOp::Validate => {
                "read:graph"
            }
            GraphOp::Upload | GraphOp::Reload | GraphOp::Mutate => "write:graph",
        }
    }
}

impl TenantRoute {
    /// Whether the request's body is an upload, read by the host only after the front.
    pub fn is_upload(&self) -> bool {
        matches!(self, TenantRoute::Api(ApiRoute::Graph(GraphOp::Upload)))
    }
}

/// Picks the route for `method` among a path's `options`: HEAD is answered wherever GET is;
/// any other method is a 405 with `allow`.
fn pick<R, const N: usize>(
    method: &Method,
    allow: &'static str,
    options: [(Method, R); N],
) -> Result<R, ApiError> {
    let method = if method == Method::HEAD {
        &Method::GET
    } else {
        method
    };
    options
        .into_iter()
        .find(|(m, _)| m == method)
        .map(|(_, r)| r)
        .ok_or(ApiError::MethodNotAllowed(allow))
}

const GET: Method = Method::GET;
const POST: Method = Method::POST;

impl Route {
    /// The route of `method` on `path`: a 404 for an unknown path, a 405 with `Allow` for a
    /// method the path does not take.
    pub fn parse(method: &Method, path: &str) -> Result<Route, ApiError> {
        let segments = path_segments(path).ok_or(ApiError::NotFound)?;
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let meta = |r| pick(method, "GET, HEAD", [(GET, Route::Meta(r))]);
        match segs.as_slice() {
            ["health"] => meta(MetaRoute::Health),
            ["openapi.json"] => meta(MetaRoute::OpenApi),
            [".well-known", "authconf"] => meta(MetaRoute::Capabilities),
            ["admin", rest @ ..] => parse_admin(method, rest).map(Route::Admin),
            ["v1", "auth", leaf] => {
                let route = UserRoute::parse(leaf).ok_or(ApiError::NotFound)?;
                let (allowed, allow) = route.methods();
                crate::http::allow(method, allowed, allow)?;
                Ok(Route::Tenant(TenantRoute::User(route)))
            }
            ["v1", rest @ ..] => {
                parse_api(method, rest).map(|r| Route::Tenant(TenantRoute::Api(r)))
            }
            _ => Err(ApiError::NotFound),
        }
    }

    /// The row of the route table this route is.
    pub fn endpoint(&self) -> Endpoint {
        match self {
            Route::Meta(MetaRoute::Health) => Endpoint::Health,
            Route::Meta(MetaRoute::OpenApi) => Endpoint::OpenApi,
            Route::Meta(MetaRoute::Capabilities) => Endpoint::Capabilities,
            Route::Admin(a) => a.endpoint(),
            Route::Tenant(t) => t.endpoint(),
        }
    }
}

fn parse_admin(method: &Method, rest: &[&str]) -> Result<AdminRoute, ApiError> {
    use AdminRoute as A;
    let id = |s: &str| s.to_owned();
    match rest {
        ["tenants"] => pick(
            method,
            "GET, HEAD, POST",
            [(GET, A::ListTenants), (POST, A::CreateTenant)],
        ),
        ["tenants", t] => pick(
            method,
            "GET, HEAD, PUT, PATCH, DELETE",
            [
                (GET, A::GetTenant(id(t))),
                (Method::PUT, A::ReplaceTenant(id(t))),
                (Method::PATCH, A::PatchTenant(id(t))),
                (Method::DELETE, A::DeleteTenant(id(t))),
            ],
        ),
        ["tenants", t, "keys"] => pick(
            method,
            "GET, HEAD, POST",
            [
                (GET, A::ListTenantKeys(id(t))),
                (POST, A::CreateTenantKey(id(t))),
            ],
        ),
        ["tenants", t, "metrics"] => pick(method, "GET, HEAD", [(GET, A::TenantMetrics(id(t)))]),
        ["dashboard"] => pick(method, "GET, HEAD", [(GET, A::Dashboard)]),
        ["metrics"] => pick(method, "GET, HEAD", [(GET, A::Metrics)]),
        ["api-keys"] => pick(method, "GET, HEAD", [(GET, A::ApiKeys)]),
        ["admins"] => pick(
            method,
            "GET, HEAD, POST",
            [(GET, A::ListAdmins), (POST, A::CreateAdmin)],
        ),
        ["admins", a] => pick(method, "DELETE", [(Method::DELETE, A::RevokeAdmin(id(a)))]),
        ["jwt"] => pick(method, "GET, HEAD", [(GET, A::Jwt)]),
        ["jwt", "rotate"] => pick(method, "POST", [(POST, A::JwtRotate)]),
        ["jwt", "retire-previous"] => pick(method, "POST", [(POST, A::JwtRetirePrevious)]),
        _ => Err(ApiError::NotFound),
    }
}

fn parse_api(method: &Method, rest: &[&str]) -> Result<ApiRoute, ApiError> {
    use ApiRoute as R;
    let id = |s: &str| s.to_owned();
    let graph = |op| R::Graph(op);
    match rest {
        ["tenant"] => pick(method, "GET, HEAD", [(GET, R::Tenant)]),
        ["rate-limit"] => pick(method, "GET, HEAD", [(GET, R::RateLimit)]),
        ["audit-log"] => pick(method, "GET, HEAD", [(GET, R::AuditLog)]),
        ["events"] => pick(method, "GET, HEAD", [(GET, R::Events)]),
        ["api-keys"] => pick(
            method,
            "GET, HEAD, POST",
            [(GET, R::ListKeys), (POST, R::CreateKey)],
        ),
        ["api-keys", k] => pick(
            method,
            "GET, HEAD, DELETE",
            [
                (GET, R::GetKey(id(k))),
                (Method::DELETE, R::RevokeKey(id(k))),
            ],
        ),
        ["api-keys", k, "rotate"] => pick(method, "POST", [(POST, R::RotateKey(id(k)))]),
        ["graph", "state"] => pick(method, "GET, HEAD", [(GET, graph(GraphOp::State))]),
        ["graph", "mutations"] => pick(
            method,
            "GET, HEAD, POST",
            [
                (GET, graph(GraphOp::Mutations)),
                (POST, graph(GraphOp::Mutate)),
            ],
        ),
        ["graph", "reload"] => pick(method, "POST", [(POST, graph(GraphOp::Reload))]),
        ["graph", "validate"] => pick(method, "POST", [(POST, graph(GraphOp::Validate))]),
        ["graph", "check"] => pick(method, "POST", [(POST, graph(GraphOp::Check))]),
        ["graph", "csv"] => pick(method, "PUT", [(Method::PUT, graph(GraphOp::Upload))]),
        _ => Err(ApiError::NotFound),
    }
}

impl AdminRoute {
    pub fn endpoint(&self) -> Endpoint {
        use AdminRoute as A;
        use Endpoint as E;
        match self {
            A::ListTenants => E::ListTenants,
            A::CreateTenant => E::CreateTenant,
            A::GetTenant(_) => E::GetTenant,
            A::ReplaceTenant(_) => E::ReplaceTenant,
            A::PatchTenant(_) => E::PatchTenant,
            A::DeleteTenant(_) => E::DeleteTenant,
            A::ListTenantKeys(_) => E::ListTenantKeys,
            A::CreateTenantKey(_) => E::CreateTenantKey,
            A::TenantMetrics(_) => E::TenantMetrics,
            A::Dashboard => E::Dashboard,
            A::Metrics => E::Metrics,
            A::ApiKeys => E::AdminApiKeys,
            A::ListAdmins => E::ListAdmins,
            A::CreateAdmin => E::CreateAdmin,
            A::RevokeAdmin(_) => E::RevokeAdmin,
            A::Jwt => E::Jwt,
            A::JwtRotate => E::JwtRotate,
            A::JwtRetirePrevious => E::JwtRetirePrevious,
        }
    }
}

impl TenantRoute {
    pub fn endpoint(&self) -> Endpoint {
        use Endpoint as E;
        match self {
            TenantRoute::Api(r) => match r {
                ApiRoute::Tenant => E::Tenant,
                ApiRoute::RateLimit => E::RateLimit,
                ApiRoute::ListKeys => E::ListKeys,
                ApiRoute::CreateKey => E::CreateKey,
                ApiRoute::GetKey(_) => E::GetKey,
                ApiRoute::RevokeKey(_) => E::RevokeKey,
                ApiRoute::RotateKey(_) => E::RotateKey,
                ApiRoute::AuditLog => E::AuditLog,
                ApiRoute::Events => E::Events,
                ApiRoute::Graph(op) => match op {
                    GraphOp::Upload => E::GraphUpload,
                    GraphOp::Reload => E::GraphReload,
                    GraphOp::State => E::GraphState,
                    GraphOp::Validate => E::GraphValidate,
                    GraphOp::Check => E::GraphCheck,
                    GraphOp::Mutate => E::GraphMutate,
                    GraphOp::Mutations => E::GraphMutations,
                },
            },
            TenantRoute::User(u) => match u {
                UserRoute::Register => E::Register,
                UserRoute::Login => E::Login,
                UserRoute::Refresh => E::Refresh,
                UserRoute::Logout => E::Logout,
                UserRoute::Me => E::Me,
                UserRoute::Validate => E::ValidateToken,
                UserRoute::ChangePassword => E::ChangePassword,
                UserRoute::VerifyEmail => E::VerifyEmail,
                UserRoute::ResendVerification => E::ResendVerification,
                UserRoute::ForgotPassword => E::ForgotPassword,
                UserRoute::ResetPassword => E::ResetPassword,
            },
        }
    }
}

/// Declares [`Endpoint`], one variant per row of the route table, with its method and OpenAPI
/// path template, and [`Endpoint::ALL`] in table order.
macro_rules! endpoints {
    ($($name:ident = $method:literal $path:literal,)*) => {
        /// One row of the route table: a method and an OpenAPI path template. HEAD is answered
        /// wherever GET is and is not a row of its own.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Endpoint {
            $($name,)*
        }

        impl Endpoint {
            /// Every row, in the order of [`crate::ROUTES`].
            pub const ALL: &'static [Endpoint] = &[$(Endpoint::$name,)*];

            pub const fn method(self) -> &'static str {
                match self {
                    $(Endpoint::$name => $method,)*
                }
            }

            pub const fn template(self) -> &'static str {
                match self {
                    $(Endpoint::$name => $path,)*
                }
            }
        }
    };
}

endpoints! {
    Health = "GET" "/health",
    OpenApi = "GET" "/openapi.json",
    Capabilities = "GET" "/.well-known/authconf",
    ListTenants = "GET" "/admin/tenants",
    CreateTenant = "POST" "/admin/tenants",
    GetTenant = "GET" "/admin/tenants/{id}",
    ReplaceTenant = "PUT" "/admin/tenants/{id}",
    PatchTenant = "PATCH" "/admin/tenants/{id}",
    DeleteTenant = "DELETE" "/admin/tenants/{id}",
    ListTenantKeys = "GET" "/admin/tenants/{id}/keys",
    CreateTenantKey = "POST" "/admin/tenants/{id}/keys",
    TenantMetrics = "GET" "/admin/tenants/{id}/metrics",
    Dashboard = "GET" "/admin/dashboard",
    Metrics = "GET" "/admin/metrics",
    AdminApiKeys = "GET" "/admin/api-keys",
    ListAdmins = "GET" "/admin/admins",
    CreateAdmin = "POST" "/admin/admins",
    RevokeAdmin = "DELETE" "/admin/admins/{id}",
    Jwt = "GET" "/admin/jwt",
    JwtRotate = "POST" "/admin/jwt/rotate",
    JwtRetirePrevious = "POST" "/admin/jwt/retire-previous",
    Tenant = "GET" "/v1/tenant",
    RateLimit = "GET" "/v1/rate-limit",
    ListKeys = "GET" "/v1/api-keys",
    CreateKey = "POST" "/v1/api-keys",
    GetKey = "GET" "/v1/api-keys/{id}",
    RevokeKey = "DELETE" "/v1/api-keys/{id}",
    RotateKey = "POST" "/v1/api-keys/{id}/rotate",
    AuditLog = "GET" "/v1/audit-log",
    Events = "GET" "/v1/events",
    GraphUpload = "PUT" "/v1/graph/csv",
    GraphReload = "POST" "/v1/graph/reload",
    GraphState = "GET" "/v1/graph/state",
    GraphValidate = "POST" "/v1/graph/validate",
    GraphCheck = "POST" "/v1/graph/check",
    GraphMutate = "POST" "/v1/graph/mutations",
    GraphMutations = "GET" "/v1/graph/mutations",
    Register = "POST" "/v1/auth/register",
    Login = "POST" "/v1/auth/login",
    Refresh = "POST" "/v1/auth/refresh",
    Logout = "POST" "/v1/auth/logout",
    Me = "GET" "/v1/auth/me",
    ValidateToken = "GET" "/v1/auth/validate",
    ChangePassword = "POST" "/v1/auth/change-password",
    VerifyEmail = "POST" "/v1/auth/verify-email",
    ResendVerification = "POST" "/v1/auth/resend-verification",
    ForgotPassword = "POST" "/v1/auth/forgot-password",
    ResetPassword = "POST" "/v1/auth/reset-password",
}

/// `(method, template)` of every row: [`crate::ROUTES`].
pub const TABLE: [(&str, &str); Endpoint::ALL.len()] = {
    let mut out = [("", ""); Endpoint::ALL.len()];
    let mut i = 0;
    while i < out.len() {
        out[i] = (Endpoint::ALL[i].method(), Endpoint::ALL[i].template());
        i += 1;
    }
    out
};

#[cfg(test)]
mod tests {
    use super::*;

    fn concrete(template: &str) -> String {
        template.replace("{id}", "x%3Ay")
    }

    #[test]
    fn every_row_parses_back_to_itself() {
        for e in Endpoint::ALL {
            let method: Method = e.method().parse().expect("method");
            let route = Route::parse(&method, &concrete(e.template()))
                .unwrap_or_else(|err| panic!("{e:?} does not parse: {err:?}"));
            assert_eq!(route.endpoint(), *e, "{e:?}");
            if method == Method::GET {
                let head = Route::parse(&Method::HEAD, &concrete(e.template())).expect("HEAD");
                assert_eq!(head.endpoint(), *e, "HEAD of {e:?} counts as GET");
            }
        }
    }

    #[test]
    fn ids_are_carried_decoded() {
        let r = Route::parse(&Method::DELETE, "/v1/api-keys/key%3Aabc").expect("route");
        assert_eq!(
            r,
            Route::Tenant(TenantRoute::Api(ApiRoute::RevokeKey("key:abc".into())))
        );
        let r = Route::parse(&Method::PATCH, "/admin/tenants/tenant%3Aa").expect("route");
        assert_eq!(r, Route::Admin(AdminRoute::PatchTenant("tenant:a".into())));
    }

    #[test]
    fn wrong_methods_and_unknown_paths_are_refused() {
        assert!(matches!(
            Route::parse(&Method::POST, "/v1/rate-limit"),
            Err(ApiError::MethodNotAllowed("GET, HEAD"))
        ));
        assert!(matches!(
            Route::parse(&Method::HEAD, "/v1/graph/check"),
            Err(ApiError::MethodNotAllowed("POST"))
        ));
        assert!(matches!(
            Route::parse(&Method::GET, "/v1/nope"),
            Err(ApiError::NotFound)
        ));
        assert!(matches!(
            Route::parse(&Method::GET, "/v1/auth/users"),
            Err(ApiError::NotFound)
        ));
    }
}
