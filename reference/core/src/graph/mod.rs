//! `GraphStateCSV`: one Durable Object per tenant holding the tenant's authorization graph.
//!
//! The graph is a set of directed, labelled edges between nodes `type:id`
//! (`user:alice -member-> group:eng -viewer-> doc:readme`), loaded from the tenant's CSV
//! file ([`csv`]) and changed by mutations. It answers two questions:
//! - `validate`: is this explicit chain of edges live and connected from the user to the
//!   resource? (the public deployment's route, with its reason strings; section 8.3 of the
//!   upstream contract);
//! - `check`: does the subject hold the relation on the object, directly or through
//!   membership? ([`index::GraphIndex::check`]).
//!
//! Versions are a counter starting at 0 (never loaded): every reload and every mutation call
//! makes exactly one new version. The public deployment used the load time in milliseconds;
//! a counter instead lets `GET /v1/graph/mutations?since=V` page the log without gaps.
//!
//! State lives in the object's own SQL ([`store`]) and, for fast checks, in memory
//! ([`index`]), rebuilt by [`DurableObject::load`] after every eviction. Each write is one SQL
//! transaction, and memory changes only after it commits, so a refused or failed request
//! leaves both exactly as they were. Unlike the public deployment (section 14, D18 and D20),
//! an unloaded graph is an empty graph (validate answers "Edge not found", never a 503
//! relayed as 200), every failure is a problem document with its real status, and the CSV is
//! parsed for real.
//!
//! [`http`] turns requests into calls; the host routes, authenticates and checks the key's
//! permission (`read:graph`, `write:graph`) before calling [`GraphState::handle`].

pub mod csv;
pub mod http;
pub mod index;
pub mod store;

#[cfg(test)]
mod tests;

use crate::http::ApiError;
use crate::model::rfc3339;
use crate::objects::{DurableObject, ObjectEnv};
use crate::ports::StorageError;

pub use self::csv::{EdgeSpec, MAX_CSV_BYTES, MAX_EDGES, MAX_FIELD_BYTES};
pub use self::http::{
    blob_key, check_upload, upload_answer, validate_csv_upload, GraphAudit, GraphCall, GraphRoute,
};
pub use self::index::{GraphIndex, MutationOp, StoredEdge, Validation, MAX_CHECK_DEPTH};

/// Most ops in one mutation call.
pub const MAX_MUTATIONS_PER_CALL: usize = 1000;
/// Versions the mutation log keeps by default: older records are pruned, and `since` before
/// the window is a 410 (the client reloads the state instead of replaying the log).
pub const DEFAULT_LOG_WINDOW: i64 = 1000;

/// The graph object's limits. Each has a safe default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphLimits {
    /// Most edges (live and revoked: both are stored and held in memory) a graph may hold,
    /// through a reload or through mutations.
    pub max_edges: usize,
    /// Versions the mutation log keeps ([`DEFAULT_LOG_WINDOW`]).
    pub log_window: i64,
}

impl Default for GraphLimits {
    fn default() -> Self {
        Self {
            max_edges: MAX_EDGES,
            log_window: DEFAULT_LOG_WINDOW,
        }
    }
}

/// Default and largest page of `mutations_since`.
pub const DEFAULT_LOG_LIMIT: usize = 100;
pub const MAX_LOG_LIMIT: usize = 1000;

// The answers of the graph routes are wire types, in `auth-contract`.
pub use auth_contract::{
    GraphStateView, MutationPage, MutationRecord, MutationResult, ReloadSummary,
};

/// The live object: the graph in memory plus the version it is at.
#[derive(Debug, Clone, Default)]
pub struct GraphState {
    index: GraphIndex,
    version: i64,
    loaded_at: Option<i64>,
    limits: GraphLimits,
}

impl DurableObject for GraphState {
    const CLASS: &'static str = "GraphStateCSV";

    fn load(env: &ObjectEnv) -> Result<Self, StorageError> {
        let sql = env.storage.sql();
        store::ensure_schema(sql)?;
        let meta = store::read_meta(sql)?;
        let index = GraphIndex::from_edges(store::read_edges(sql)?);
        Ok(Self {
            index,
            version: meta.version,
            loaded_at: meta.loaded_at,
            limits: GraphLimits::default(),
        })
    }

    fn memory_estimate(&self) -> usize {
        self.index.memory_estimate()
    }
}

impl GraphState {
    /// Sets the limits (a host's settings); they apply from the next call.
    pub fn set_limits(&mut self, limits: GraphLimits) {
        self.limits = limits;
    }

    /// The oldest version whose log records are still kept; the versions before it were
    /// pruned.
    fn log_floor(&self) -> i64 {
        (self.version - self.limits.log_window.max(1)).max(0)
    }

    /// The current version; 0 before any reload or mutation.
    pub fn version(&self) -> i64 {
        self.version
    }

    /// The graph in memory.
    pub fn index(&self) -> &GraphIndex {
        &self.index
    }

    pub fn state(&self, env: &ObjectEnv) -> GraphStateView {
        GraphStateView {
            tenant_id: env.name.to_owned(),
            version: self.version,
            edge_count: self.index.live_count(),
            loaded_at: self.loaded_at.map(rfc3339),
            initialized: self.version > 0,
        }
    }

    /// See [`GraphIndex::validate`]. A graph never loaded is empty, so its answer is
    /// "Edge not found: <first id>".
    pub fn validate(&self, edge_ids: &[String], user_id: &str, resource_id: &str) -> Validation {
        self.index.validate(edge_ids, user_id, resource_id)
    }

    /// See [`GraphIndex::check`].
    pub fn check(&self, subject: &str, relation: &str, object: &str) -> bool {
        self.index.check(subject, relation, object)
    }

    /// Replaces the whole graph with the edges of a CSV file, as one new version.
    ///
    /// A file that does not parse is a 400 naming `csv` with the line and column, and
    /// nothing changes: the file is parsed completely before anything is written, the write
    /// is one transaction, and memory is swapped only after it commits.
    pub fn reload(
        &mut self,
        env: &ObjectEnv,
        csv: &[u8],
        actor_key_id: &str,
    ) -> Result<ReloadSummary, ApiError> {
        let specs = self::csv::parse(csv).map_err(|e| e.to_api_error())?;
        if specs.len() > self.limits.max_edges {
            return Err(ApiError::field(
                "csv",
                format!(
                    "holds {} edges; a graph holds at most {}",
                    specs.len(),
                    self.limits.max_edges
                ),
            ));
        }
        let version = self.version + 1;
        let now = env.clock.now_ms();
        let index = GraphIndex::from_edges(specs.iter().map(|s| StoredEdge::from_spec(s, version)));
        env.storage.sql().transaction(&mut |tx| {
            store::replace_edges(tx, index.edges())?;
            store::write_meta(tx, version, Some(now), index.live_count())?;
            store::append_log(tx, version, now, actor_key_id, &[("reload", None)])?;
            store::prune_log(tx, version - self.limits.log_window.max(1))
        })?;
        self.index = index;
        self.version = version;
        self.loaded_at = Some(now);
        Ok(ReloadSummary {
            success: true,
            tenant_id: env.name.to_owned(),
            edge_count: self.index.live_count(),
            version,
        })
    }

    /// Applies a batch of ops as one new version, all or nothing. Revoking an edge that does
    /// not exist refuses the whole batch with 400 naming `mutations[i].edgeId`.
    pub fn mutate(
        &mut self,
        env: &ObjectEnv,
        ops: &[MutationOp],
        actor_key_id: &str,
    ) -> Result<MutationResult, ApiError> {
        if ops.is_empty() {
            return Err(ApiError::field(
                "mutations",
                "must hold at least one mutation",
            ));
        }
        if ops.len() > MAX_MUTATIONS_PER_CALL {
            return Err(ApiError::field(
                "mutations",
                format!("must hold at most {MAX_MUTATIONS_PER_CALL} mutations"),
            ));
        }
        let version = self.version + 1;
        let now = env.clock.now_ms();
        let plan = self.index.plan(ops, version, now).map_err(|e| {
            ApiError::field(
                format!("mutations[{}].edgeId", e.index),
                "names no edge of this graph",
            )
        })?;
        // Revoked edges stay stored and in memory, so every new id counts against the cap.
        let new_edges = plan
            .changes
            .iter()
            .filter(|e| self.index.get(&e.id).is_none())
            .count();
        if self.index.len() + new_edges > self.limits.max_edges {
            return Err(ApiError::field(
                "mutations",
                format!(
                    "would grow the graph to {} edges; a graph holds at most {}",
                    self.index.len() + new_edges,
                    self.limits.max_edges
                ),
            ));
        }
        // The live count after the batch, for `meta`, without touching memory yet.
        let mut live = self.index.live_count() as i64;
        for edge in &plan.changes {
            let was_live = self.index.get(&edge.id).is_some_and(StoredEdge::is_live);
            live += i64::from(edge.is_live()) - i64::from(was_live);
        }
        let entries: Vec<(&str, Option<&str>)> = plan
            .log
            .iter()
            .map(|(op, id)| (*op, Some(id.as_str())))
            .collect();
        env.storage.sql().transaction(&mut |tx| {
            store::upsert_edges(tx, &plan.changes)?;
            store::write_meta(tx, version, self.loaded_at, live as usize)?;
            store::append_log(tx, version, now, actor_key_id, &entries)?;
            store::prune_log(tx, version - self.limits.log_window.max(1))
        })?;
        self.index.apply(&plan);
        self.version = version;
        Ok(MutationResult {
            version,
            applied: ops.len(),
        })
    }

    /// The log records of versions after `since`, oldest first, about `limit` of them.
    ///
    /// A page never splits a version, so resuming with `since=<last version returned>` loses
    /// nothing: a version cut by the limit is left for the next page, and when the first
    /// version alone is larger than the limit it is returned whole (at most
    /// [`MAX_MUTATIONS_PER_CALL`] records). `since` ahead of the current version is a 400;
    /// `since` before the kept window ([`GraphLimits::log_window`] versions) is a 410
    /// `log_window_passed`: those records are gone, and the client reads the state anew.
    pub fn mutations_since(
        &self,
        env: &ObjectEnv,
        since: i64,
        limit: usize,
    ) -> Result<MutationPage, ApiError> {
        if since < 0 {
            return Err(ApiError::query("since", "must be a whole number from 0"));
        }
        if since > self.version {
            return Err(ApiError::query(
                "since",
                format!("is ahead of the current version {}", self.version),
            ));
        }
        if since < self.log_floor() {
            return Err(ApiError::Gone {
                code: "log_window_passed",
                detail: format!(
                    "since: the mutation log keeps the last {} versions; the oldest it can \
                     answer from is since={}. Read GET /v1/graph/state instead.",
                    self.limits.log_window.max(1),
                    self.log_floor()
                ),
            });
        }
        let limit = limit.clamp(1, MAX_LOG_LIMIT);
        let sql = env.storage.sql();
        let mut rows = store::log_after(sql, since, limit + 1)?;
        if rows.len() > limit {
            let cut_version = rows[limit].version;
            rows.truncate(limit);
            if rows[limit - 1].version == cut_version {
                rows.retain(|r| r.version != cut_version);
                if rows.is_empty() {
                    rows = store::log_of(sql, cut_version)?;
                }
            }
        }
        let has_more = rows.last().is_some_and(|r| r.version < self.version);
        Ok(MutationPage {
            current_version: self.version,
            mutations: rows
                .into_iter()
                .map(|r| MutationRecord {
                    version: r.version,
                    op: r.op,
                    edge_id: r.edge_id,
                    at: rfc3339(r.at),
                    actor_key_id: r.actor_key_id,
                })
                .collect(),
            has_more,
        })
    }
}
