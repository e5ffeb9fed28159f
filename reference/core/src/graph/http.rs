//! HTTP glue of the graph object: request bodies and queries read and checked (unknown fields
//! refused, errors naming the field, e.g. `mutations[2].edge.relation`), answers as JSON.
//!
//! The host matches the path and method, authenticates the key, checks `read:graph` or
//! `write:graph`, and reads the stored CSV for a reload; then it calls
//! [`GraphState::handle`] on the tenant's object with the [`GraphRoute`]. The body readers are
//! public too, so a host can refuse a malformed request before reaching the object.
//!
//! | route | body or query | answer |
//! |---|---|---|
//! | `GET /v1/graph/state` | | [`super::GraphStateView`] |
//! | `POST /v1/graph/validate` | `{"edgeIds":[...],"userId","resourceId"}` | `{"valid":true}` or `{"valid":false,"reason"}` |
//! | `POST /v1/graph/check` | `{"subject","relation","object"}` | `{"allowed":bool}` |
//! | `POST /v1/graph/mutations` | `{"mutations":[{"op":"add","edge":{...}} or {"op":"revoke","edgeId"}]}` | `{"version","applied"}` |
//! | `GET /v1/graph/mutations` | `?since=V&limit=N` | [`super::MutationPage`] |
//! | `POST /v1/graph/reload` | (the stored CSV, from the host) | `{"success":true,"tenantId","edgeCount","version"}` |

use auth_contract::{CheckResult, CsvStored};
use http::StatusCode;
use serde::Serialize;
use serde_json::Value;

use super::csv::{self, check_part, EdgeSpec, PartKind, HEADER};
use super::index::MutationOp;
use super::{GraphState, DEFAULT_LOG_LIMIT, MAX_LOG_LIMIT, MAX_MUTATIONS_PER_CALL};
use crate::http::{
    json, json_object, json_sorted, query_pairs, ApiError, ApiResult, Fields, Request,
};
use crate::objects::ObjectEnv;
use crate::route::GraphOp;

/// Longest chain `validate` accepts.
pub const MAX_CHAIN_EDGES: usize = 1000;

/// Which graph operation the `GraphStateCSV` object runs ([`GraphCall::of`] a parsed route).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphRoute {
    State,
    Validate,
    Check,
    Mutate,
    Mutations,
    /// Reload from this CSV (the host read `tenants/<tenantId>/graph.csv` from the blob store).
    Reload {
        csv: Vec<u8>,
    },
}

/// Body of `POST /v1/graph/validate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidateRequest {
    pub edge_ids: Vec<String>,
    pub user_id: String,
    pub resource_id: String,
}

/// Body of `POST /v1/graph/check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    pub subject: String,
    pub relation: String,
    pub object: String,
}

/// Where a tenant's uploaded graph file lives in the blob store (R2 on Workers).
pub fn blob_key(tenant_id: &str) -> String {
    format!("tenants/{tenant_id}/graph.csv")
}

/// What a graph request that the tenant object let through asks of its host, which does the
/// blob IO around the `GraphStateCSV` object (as a Worker does with R2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphCall {
    /// `PUT /v1/graph/csv`: check it ([`check_upload`]), store it, answer [`upload_answer`].
    Upload,
    /// `POST /v1/graph/reload`: read the stored file, then run [`GraphRoute::Reload`].
    Reload,
    /// Anything else: run this route in the object.
    Run(GraphRoute),
}

/// The audit record a successful graph call leaves in the tenant's log: the action, and the
/// field of the answer that its detail repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphAudit {
    pub action: &'static str,
    field: &'static str,
}

impl GraphAudit {
    /// `{"<field>": <that field of the answer>}`. Free-form on purpose, so `json!` stays: the
    /// detail repeats whatever the answer (an `auth-contract` type) holds in that field.
    pub fn detail(&self, answer: &crate::http::Response) -> Value {
        let body: Value = serde_json::from_slice(answer.body()).unwrap_or(Value::Null);
        serde_json::json!({ self.field: body.get(self.field).cloned().unwrap_or(Value::Null) })
    }
}

impl GraphCall {
    /// What the host does for a graph route.
    pub fn of(op: GraphOp) -> Self {
        match op {
            GraphOp::Upload => GraphCall::Upload,
            GraphOp::Reload => GraphCall::Reload,
            GraphOp::State => GraphCall::Run(GraphRoute::State),
            GraphOp::Validate => GraphCall::Run(GraphRoute::Validate),
            GraphOp::Check => GraphCall::Run(GraphRoute::Check),
            GraphOp::Mutations => GraphCall::Run(GraphRoute::Mutations),
            GraphOp::Mutate => GraphCall::Run(GraphRoute::Mutate),
        }
    }

    /// What a successful call of this kind writes to the audit log, if anything.
    pub fn audit(&self) -> Option<GraphAudit> {
        let (action, field) = match self {
            GraphCall::Upload => ("graph.csv_uploaded", "edgeCount"),
            GraphCall::Reload => ("graph.reloaded", "version"),
            GraphCall::Run(GraphRoute::Mutate) => ("graph.mutated", "version"),
            GraphCall::Run(_) => return None,
        };
        Some(GraphAudit { action, field })
    }
}

/// Checks an upload before the host stores it: size, media type (`text/csv` or
/// `application/octet-stream`), then [`validate_csv_upload`]. Answers the edge count.
pub fn check_upload(req: &Request) -> Result<usize, ApiError> {
    if req.body().len() > csv::MAX_CSV_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    let media = crate::http::media_type(req);
    if !matches!(
        media.as_deref(),
        Some("text/csv" | "application/octet-stream")
    ) {
        return Err(ApiError::UnsupportedMediaType);
    }
    validate_csv_upload(req.body())
}

/// The answer to a stored upload.
pub fn upload_answer(tenant_id: &str, edges: usize, bytes: usize) -> crate::http::Response {
    json_sorted(
        StatusCode::OK,
        &CsvStored {
            stored: true,
            key: blob_key(tenant_id),
            edge_count: edges,
            bytes,
        },
    )
}

/// Checks an upload before the host stores it: the same parser and limits as a reload.
/// Answers the number of distinct edges, or the 400 a reload of it would give.
pub fn validate_csv_upload(bytes: &[u8]) -> Result<usize, ApiError> {
    csv::parse(bytes)
        .map(|edges| edges.len())
        .map_err(|e| e.to_api_error())
}

/// Puts `prefix.` in front of the field a nested error names.
fn nested(prefix: &str, e: ApiError) -> ApiError {
    match e {
        ApiError::InvalidField { field, message } => ApiError::InvalidField {
            field: format!("{prefix}.{field}"),
            message,
        },
        other => other,
    }
}

pub fn parse_validate(req: &Request) -> Result<ValidateRequest, ApiError> {
    let f = Fields::new(
        json_object(req, false)?,
        &["edgeIds", "userId", "resourceId"],
    )?;
    let edge_ids = f
        .opt_str_list("edgeIds")?
        .ok_or_else(|| ApiError::field("edgeIds", "is required"))?;
    if edge_ids.len() > MAX_CHAIN_EDGES {
        return Err(ApiError::field(
            "edgeIds",
            format!("must hold at most {MAX_CHAIN_EDGES} edge ids"),
        ));
    }
    // An empty list is not a 400: the public deployment answers it with
    // `{"valid":false,"reason":"Empty edge chain"}`, and so do we.
    Ok(ValidateRequest {
        edge_ids,
        user_id: f.req_str("userId")?,
        resource_id: f.req_str("resourceId")?,
    })
}

/// A node id `type:id`, with the same rules as the CSV's columns.
fn node(f: &Fields, name: &str) -> Result<String, ApiError> {
    let value = f.req_str(name)?;
    let Some((ty, id)) = value.split_once(':') else {
        return Err(ApiError::field(
            name,
            "must be a node id <type>:<id>, e.g. user:alice",
        ));
    };
    check_part(PartKind::Name, ty).map_err(|m| ApiError::field(name, format!("type {m}")))?;
    check_part(PartKind::Id, id).map_err(|m| ApiError::field(name, format!("id {m}")))?;
    Ok(value)
}

pub fn parse_check(req: &Request) -> Result<CheckRequest, ApiError> {
    let f = Fields::new(json_object(req, false)?, &["subject", "relation", "object"])?;
    let subject = node(&f, "subject")?;
    let relation = f.req_str("relation")?;
    check_part(PartKind::Name, &relation).map_err(|m| ApiError::field("relation", m))?;
    let object = node(&f, "object")?;
    Ok(CheckRequest {
        subject,
        relation,
        object,
    })
}

fn parse_edge(value: Option<&Value>) -> Result<EdgeSpec, ApiError> {
    let map = match value {
        None => return Err(ApiError::field("edge", "is required")),
        Some(Value::Object(m)) => m.clone(),
        Some(_) => {
            return Err(ApiError::field(
                "edge",
                format!("must be an object with {}", HEADER.join(", ")),
            ))
        }
    };
    let f = Fields::new(map, &HEADER).map_err(|e| nested("edge", e))?;
    let mut parts: [String; 5] = Default::default();
    for (i, name) in HEADER.iter().enumerate() {
        // Trimmed like the CSV's fields, so one edge has one id whichever way it came in.
        parts[i] = f
            .req_str(name)
            .map_err(|e| nested("edge", e))?
            .trim_matches([' ', '\t'])
            .to_owned();
    }
    EdgeSpec::from_parts(parts)
        .map_err(|(i, message)| ApiError::field(format!("edge.{}", HEADER[i]), message))
}

fn parse_op(value: &Value) -> Result<MutationOp, ApiError> {
    let Value::Object(map) = value else {
        return Err(ApiError::field("", "must be an object"));
    };
    let op = match map.get("op") {
        None => return Err(ApiError::field("op", "is required")),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(ApiError::field("op", "must be add or revoke")),
    };
    match op {
        "add" => {
            let f = Fields::new(map.clone(), &["op", "edge"])?;
            Ok(MutationOp::Add(parse_edge(f.get("edge"))?))
        }
        "revoke" => {
            let f = Fields::new(map.clone(), &["op", "edgeId"])?;
            Ok(MutationOp::Revoke {
                edge_id: f.req_str("edgeId")?,
            })
        }
        _ => Err(ApiError::field("op", "must be add or revoke")),
    }
}

/// Body of `POST /v1/graph/mutations`: 1 to [`MAX_MUTATIONS_PER_CALL`] ops.
pub fn parse_mutations(req: &Request) -> Result<Vec<MutationOp>, ApiError> {
    let f = Fields::new(json_object(req, false)?, &["mutations"])?;
    let items = match f.get("mutations") {
        None => return Err(ApiError::field("mutations", "is required")),
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::field("mutations", "must be a list of mutations")),
    };
    if items.is_empty() {
        return Err(ApiError::field(
            "mutations",
            "must hold at least one mutation",
        ));
    }
    if items.len() > MAX_MUTATIONS_PER_CALL {
        return Err(ApiError::field(
            "mutations",
            format!("must hold at most {MAX_MUTATIONS_PER_CALL} mutations"),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            parse_op(item).map_err(|e| match e {
                // `parse_op` names the item itself with an empty field.
                ApiError::InvalidField { field, message } if field.is_empty() => {
                    ApiError::field(format!("mutations[{i}]"), message)
                }
                e => nested(&format!("mutations[{i}]"), e),
            })
        })
        .collect()
}

/// Query of `GET /v1/graph/mutations`: `since` (default 0) and `limit` (1 to 1000, default
/// 100). Unknown parameters are refused.
pub fn parse_mutations_query(query: Option<&str>) -> Result<(i64, usize), ApiError> {
    let mut since = 0;
    let mut limit = DEFAULT_LOG_LIMIT;
    for (k, v) in query_pairs(query) {
        match k.as_str() {
            "since" => {
                since = v
                    .parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| ApiError::query("since", "must be a whole number from 0"))?
            }
            "limit" => {
                limit = v
                    .parse::<usize>()
                    .ok()
                    .filter(|n| (1..=MAX_LOG_LIMIT).contains(n))
                    .ok_or_else(|| {
                        ApiError::query(
                            "limit",
                            format!("must be a whole number from 1 to {MAX_LOG_LIMIT}"),
                        )
                    })?
            }
            other => return Err(ApiError::query(other, "is not a known parameter")),
        }
    }
    Ok((since, limit))
}

/// GET routes ignore the request body, as everywhere else in the service.
fn ok(value: &impl Serialize) -> ApiResult {
    Ok(json(StatusCode::OK, value))
}

impl GraphState {
    /// Handles one graph request routed by the host, which has already checked the method,
    /// the key and its permission. `actor_key_id` (the calling key's id) goes into the
    /// mutation log of reloads and mutations.
    pub fn handle(
        &mut self,
        env: &ObjectEnv,
        route: GraphRoute,
        req: &Request,
        actor_key_id: &str,
    ) -> ApiResult {
        match route {
            GraphRoute::State => ok(&self.state(env)),
            GraphRoute::Validate => {
                let body = parse_validate(req)?;
                ok(&self.validate(&body.edge_ids, &body.user_id, &body.resource_id))
            }
            GraphRoute::Check => {
                let body = parse_check(req)?;
                ok(&CheckResult {
                    allowed: self.check(&body.subject, &body.relation, &body.object),
                })
            }
            GraphRoute::Mutate => {
                let ops = parse_mutations(req)?;
                ok(&self.mutate(env, &ops, actor_key_id)?)
            }
            GraphRoute::Mutations => {
                let (since, limit) = parse_mutations_query(req.uri().query())?;
                ok(&self.mutations_since(env, since, limit)?)
            }
            GraphRoute::Reload { csv } => ok(&self.reload(env, &csv, actor_key_id)?),
        }
    }
}
