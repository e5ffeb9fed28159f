//! The graph in memory: every edge by id, plus an adjacency index of the live (non-revoked)
//! edges for `check`. Pure data: no storage, no clock, so every rule here is unit-tested
//! directly. [`super::GraphState`] keeps it in step with the object's SQL tables.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::csv::EdgeSpec;

/// Relations `check` follows transitively: a subject that is a `member` (or `member_of`, or a
/// group that `inherits_from` another) of X holds what X holds.
pub const MEMBERSHIP_RELATIONS: [&str; 3] = ["member", "member_of", "inherits_from"];

/// Most membership hops `check` follows from the subject before the final edge. A path
/// `user -member-> g1 -member-> ... -member-> g8 -viewer-> doc` (8 hops, then the asked
/// relation) is allowed; one more hop is not. The bound keeps a check's cost independent of
/// how deep a tenant nests groups.
pub const MAX_CHECK_DEPTH: usize = 8;

/// One edge as stored: nodes are `type:id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEdge {
    pub id: String,
    pub subject: String,
    pub relation: String,
    pub object: String,
    /// Milliseconds since the epoch when revoked; `None` while live.
    pub revoked_at: Option<i64>,
    /// Graph version at which the edge last became live.
    pub added_version: i64,
}

impl StoredEdge {
    pub fn from_spec(spec: &EdgeSpec, added_version: i64) -> Self {
        Self {
            id: spec.id(),
            subject: spec.subject(),
            relation: spec.relation.clone(),
            object: spec.object(),
            revoked_at: None,
            added_version,
        }
    }

    pub fn is_live(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// The answer of `validate` (a wire type, in `auth-contract`).
pub use auth_contract::Validation;

/// One requested change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutationOp {
    /// Adds the edge, or makes a revoked one live again.
    Add(EdgeSpec),
    /// Revokes an existing edge. Revoking one already revoked changes nothing (and keeps its
    /// first revocation time) but is still accepted and logged.
    Revoke { edge_id: String },
}

impl MutationOp {
    /// The name written to the mutation log.
    pub fn name(&self) -> &'static str {
        match self {
            MutationOp::Add(_) => "add",
            MutationOp::Revoke { .. } => "revoke",
        }
    }
}

/// What a batch of mutations does, computed before anything is written: the final state of
/// each edge it touches (in first-touch order) and one log entry `(op, edge id)` per op.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MutationPlan {
    pub changes: Vec<StoredEdge>,
    pub log: Vec<(&'static str, String)>,
}

/// Why a batch was refused: the 0-based index of the op. The only refusal is revoking an
/// edge that does not exist (the parts of added edges are checked when the body is read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownEdge {
    pub index: usize,
}

/// Memory one edge takes in the index, measured: a graph object holding 200,000 edges of short
/// ids (`user:u123 member group:g45`) held about 300 MB resident, 1.5 KB an edge (the edge,
/// its id twice as map keys, the adjacency sets and the allocator's rounding). Longer ids take
/// more, up to the 256-byte field limit; this is an estimate for eviction, not an accounting.
pub const BYTES_PER_EDGE: usize = 1536;

/// The edges and the live adjacency index. Ordered maps rather than hash maps: iteration
/// (and so the order edges are written to storage) is deterministic, and the keys, which a
/// tenant chooses, cannot be crafted into hash collisions on a platform without random hash
/// seeds (wasm32-unknown-unknown has no OS randomness for `RandomState`).
#[derive(Debug, Clone, Default)]
pub struct GraphIndex {
    edges: BTreeMap<String, StoredEdge>,
    /// subject -> relation -> objects, live edges only.
    out: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
    live: usize,
}

impl GraphIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds an index from stored edges (ids assumed distinct; a later one replaces an
    /// earlier one with the same id).
    pub fn from_edges(edges: impl IntoIterator<Item = StoredEdge>) -> Self {
        let mut g = Self::new();
        for e in edges {
            g.upsert(e);
        }
        g
    }

    /// About how many bytes the index holds: [`BYTES_PER_EDGE`] for each edge. Constant time,
    /// as the object runtime asks after every call.
    pub fn memory_estimate(&self) -> usize {
        self.edges.len() * BYTES_PER_EDGE
    }

    /// Every edge, live or revoked.
    pub fn len(&self) -> usize {
        self.edges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }

    /// Edges not revoked.
    pub fn live_count(&self) -> usize {
        self.live
    }

    pub fn get(&self, id: &str) -> Option<&StoredEdge> {
        self.edges.get(id)
    }

    pub fn edges(&self) -> impl Iterator<Item = &StoredEdge> {
        self.edges.values()
    }

    /// Inserts or replaces an edge, keeping the live index and count in step.
    pub fn upsert(&mut self, edge: StoredEdge) {
        if let Some(old) = self.edges.remove(&edge.id) {
            if old.is_live() {
                self.unindex(&old);
            }
        }
        if edge.is_live() {
            self.live += 1;
            // Look up before `entry`, which would clone the key even when it is present: a
            // reload builds 200,000 entries and most subjects and relations repeat.
            if !self.out.contains_key(&edge.subject) {
                self.out.insert(edge.subject.clone(), BTreeMap::new());
            }
            let by_rel = self.out.get_mut(&edge.subject).expect("inserted above");
            if !by_rel.contains_key(&edge.relation) {
                by_rel.insert(edge.relation.clone(), BTreeSet::new());
            }
            by_rel
                .get_mut(&edge.relation)
                .expect("inserted above")
                .insert(edge.object.clone());
        }
        self.edges.insert(edge.id.clone(), edge);
    }

    fn unindex(&mut self, edge: &StoredEdge) {
        self.live -= 1;
        if let Some(by_rel) = self.out.get_mut(&edge.subject) {
            if let Some(objects) = by_rel.get_mut(&edge.relation) {
                objects.remove(&edge.object);
                if objects.is_empty() {
                    by_rel.remove(&edge.relation);
                }
            }
            if by_rel.is_empty() {
                self.out.remove(&edge.subject);
            }
        }
    }

    fn has_live(&self, subject: &str, relation: &str, object: &str) -> bool {
        self.out
            .get(subject)
            .and_then(|r| r.get(relation))
            .is_some_and(|o| o.contains(object))
    }

    /// Checks an edge chain the way the public deployment does, with its reason strings, in
    /// its order: every edge exists and is live (first failure wins), consecutive edges meet
    /// (target of one is the source of the next), the first starts at `user_id`, the last
    /// ends at `resource_id`. Node ids are `type:id`, e.g. `user:alice`.
    pub fn validate(&self, edge_ids: &[String], user_id: &str, resource_id: &str) -> Validation {
        if edge_ids.is_empty() {
            return Validation::invalid("Empty edge chain".into());
        }
        let mut chain = Vec::with_capacity(edge_ids.len());
        for id in edge_ids {
            match self.edges.get(id) {
                None => return Validation::invalid(format!("Edge not found: {id}")),
                Some(e) if !e.is_live() => {
                    return Validation::invalid(format!("Edge revoked: {id}"))
                }
                Some(e) => chain.push(e),
            }
        }
        for pair in chain.windows(2) {
            let (a, b) = (pair[0], pair[1]);
            if a.object != b.subject {
                return Validation::invalid(format!(
                    "Chain break: edge {} → {} ≠ {}",
                    a.id, a.object, b.subject
                ));
            }
        }
        let (first, last) = (chain[0], chain[chain.len() - 1]);
        if first.subject != user_id {
            return Validation::invalid(format!(
                "Chain start mismatch: {} ≠ {user_id}",
                first.subject
            ));
        }
        if last.object != resource_id {
            return Validation::invalid(format!(
                "Chain end mismatch: {} ≠ {resource_id}",
                last.object
            ));
        }
        Validation::valid()
    }

    /// Whether `subject` holds `relation` on `object`: a live edge says so directly, or the
    /// subject reaches some node X through at most [`MAX_CHECK_DEPTH`] live membership edges
    /// ([`MEMBERSHIP_RELATIONS`]) and X holds the relation. Breadth-first with a visited set,
    /// so cycles end and the shortest membership path is the one measured against the bound.
    pub fn check(&self, subject: &str, relation: &str, object: &str) -> bool {
        let mut visited: BTreeSet<&str> = BTreeSet::new();
        let mut queue: VecDeque<(&str, usize)> = VecDeque::new();
        visited.insert(subject);
        queue.push_back((subject, 0));
        while let Some((node, depth)) = queue.pop_front() {
            if self.has_live(node, relation, object) {
                return true;
            }
            if depth == MAX_CHECK_DEPTH {
                continue;
            }
            let Some(by_rel) = self.out.get(node) else {
                continue;
            };
            for rel in MEMBERSHIP_RELATIONS {
                for next in by_rel.get(rel).into_iter().flatten() {
                    if visited.insert(next.as_str()) {
                        queue.push_back((next.as_str(), depth + 1));
                    }
                }
            }
        }
        false
    }

    /// Works out what a batch does without changing anything. Ops apply in order, each
    /// seeing the ones before it (add then revoke in one batch revokes). Every op is logged;
    /// one that changes nothing (adding a live edge, revoking a revoked one) is still logged,
    /// since the log records what was asked and accepted.
    pub fn plan(
        &self,
        ops: &[MutationOp],
        version: i64,
        now_ms: i64,
    ) -> Result<MutationPlan, UnknownEdge> {
        // Final state of each touched edge, plus first-touch order.
        let mut staged: BTreeMap<String, StoredEdge> = BTreeMap::new();
        let mut order: Vec<String> = Vec::new();
        let mut log = Vec::with_capacity(ops.len());
        for (index, op) in ops.iter().enumerate() {
            let (id, next) = match op {
                MutationOp::Add(spec) => {
                    let id = spec.id();
                    let current = staged.get(&id).or_else(|| self.edges.get(&id));
                    let next = match current {
                        Some(e) if e.is_live() => None,
                        _ => Some(StoredEdge::from_spec(spec, version)),
                    };
                    (id, next)
                }
                MutationOp::Revoke { edge_id } => {
                    let current = staged
                        .get(edge_id)
                        .or_else(|| self.edges.get(edge_id))
                        .ok_or(UnknownEdge { index })?;
                    let next = current.is_live().then(|| StoredEdge {
                        revoked_at: Some(now_ms),
                        ..current.clone()
                    });
                    (edge_id.clone(), next)
                }
            };
            if let Some(edge) = next {
                if !staged.contains_key(&id) {
                    order.push(id.clone());
                }
                staged.insert(id.clone(), edge);
            }
            log.push((op.name(), id));
        }
        let changes = order
            .into_iter()
            .filter_map(|id| staged.remove(&id))
            .collect();
        Ok(MutationPlan { changes, log })
    }

    /// Applies a plan computed by [`Self::plan`] on this index.
    pub fn apply(&mut self, plan: &MutationPlan) {
        for edge in &plan.changes {
            self.upsert(edge.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> EdgeSpec {
        let p: Vec<String> = s.split(':').map(str::to_owned).collect();
        EdgeSpec::from_parts(p.try_into().unwrap()).unwrap()
    }

    fn graph(ids: &[&str]) -> GraphIndex {
        GraphIndex::from_edges(ids.iter().map(|s| StoredEdge::from_spec(&spec(s), 1)))
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn reason(v: Validation) -> String {
        assert!(!v.valid);
        v.reason.unwrap()
    }

    fn revoke(g: &mut GraphIndex, id: &str) {
        let plan = g
            .plan(&[MutationOp::Revoke { edge_id: id.into() }], 2, 5)
            .unwrap();
        g.apply(&plan);
    }

    const CHAIN: [&str; 3] = [
        "user:alice:member:group:eng",
        "group:eng:member:group:staff",
        "group:staff:viewer:doc:readme",
    ];

    #[test]
    fn validate_accepts_a_connected_chain() {
        let g = graph(&CHAIN);
        let v = g.validate(&ids(&CHAIN), "user:alice", "doc:readme");
        assert_eq!(v, Validation::valid());
        assert_eq!(serde_json::to_string(&v).unwrap(), r#"{"valid":true}"#);
        let one = g.validate(&ids(&CHAIN[2..]), "group:staff", "doc:readme");
        assert!(one.valid);
    }

    #[test]
    fn validate_gives_every_reason() {
        let mut g = graph(&CHAIN);
        let v = g.validate(&[], "user:alice", "doc:readme");
        assert_eq!(
            serde_json::to_string(&v).unwrap(),
            r#"{"valid":false,"reason":"Empty edge chain"}"#
        );
        assert_eq!(
            reason(g.validate(&ids(&[CHAIN[0], "x:y:z:w:v"]), "user:alice", "doc:readme")),
            "Edge not found: x:y:z:w:v"
        );
        assert_eq!(
            reason(g.validate(&ids(&[CHAIN[0], CHAIN[2]]), "user:alice", "doc:readme")),
            "Chain break: edge user:alice:member:group:eng → group:eng ≠ group:staff"
        );
        assert_eq!(
            reason(g.validate(&ids(&CHAIN), "user:bob", "doc:readme")),
            "Chain start mismatch: user:alice ≠ user:bob"
        );
        assert_eq!(
            reason(g.validate(&ids(&CHAIN), "user:alice", "doc:other")),
            "Chain end mismatch: doc:readme ≠ doc:other"
        );
        // Bare ids are not node ids.
        assert_eq!(
            reason(g.validate(&ids(&CHAIN), "alice", "doc:readme")),
            "Chain start mismatch: user:alice ≠ alice"
        );
        revoke(&mut g, CHAIN[1]);
        assert_eq!(
            reason(g.validate(&ids(&CHAIN), "user:alice", "doc:readme")),
            format!("Edge revoked: {}", CHAIN[1])
        );
        // Existence and revocation are checked for the whole chain before continuity.
        assert_eq!(
            reason(g.validate(&ids(&[CHAIN[0], CHAIN[2], "nope"]), "user:x", "doc:y")),
            "Edge not found: nope"
        );
    }

    #[test]
    fn validate_on_an_empty_graph_finds_nothing() {
        let g = GraphIndex::new();
        assert_eq!(
            reason(g.validate(&ids(&CHAIN), "user:alice", "doc:readme")),
            format!("Edge not found: {}", CHAIN[0])
        );
    }

    #[test]
    fn check_direct_and_transitive() {
        let g = graph(&CHAIN);
        assert!(g.check("group:staff", "viewer", "doc:readme"));
        assert!(g.check("user:alice", "viewer", "doc:readme"));
        assert!(g.check("group:eng", "viewer", "doc:readme"));
        // Membership itself is transitive.
        assert!(g.check("user:alice", "member", "group:staff"));
        assert!(!g.check("user:alice", "editor", "doc:readme"));
        assert!(!g.check("user:bob", "viewer", "doc:readme"));
        // Edges are directed: holding the document gives nothing back to the group.
        assert!(!g.check("doc:readme", "viewer", "group:staff"));
        // Only membership relations are followed.
        let g = graph(&["user:a:viewer:group:g", "group:g:viewer:doc:d"]);
        assert!(!g.check("user:a", "viewer", "doc:d"));
        let g = graph(&[
            "user:a:member_of:group:g",
            "group:g:inherits_from:group:parent",
            "group:parent:editor:doc:d",
        ]);
        assert!(g.check("user:a", "editor", "doc:d"));
    }

    #[test]
    fn check_depth_bound() {
        // user -> g1 -> ... -> gN, gN -viewer-> doc: N membership hops.
        let nested = |n: usize| {
            let mut edges = vec!["user:u:member:group:g1".to_owned()];
            for i in 1..n {
                edges.push(format!("group:g{i}:member:group:g{}", i + 1));
            }
            edges.push(format!("group:g{n}:viewer:doc:d"));
            let refs: Vec<&str> = edges.iter().map(String::as_str).collect();
            graph(&refs)
        };
        assert!(nested(MAX_CHECK_DEPTH).check("user:u", "viewer", "doc:d"));
        assert!(!nested(MAX_CHECK_DEPTH + 1).check("user:u", "viewer", "doc:d"));
        // A short path wins over a long one to the same node.
        let mut g = nested(MAX_CHECK_DEPTH + 1);
        g.upsert(StoredEdge::from_spec(&spec("user:u:member:group:g5"), 1));
        assert!(g.check("user:u", "viewer", "doc:d"));
    }

    #[test]
    fn check_survives_cycles() {
        let g = graph(&[
            "user:a:member:group:x",
            "group:x:member:group:y",
            "group:y:member:group:x",
            "group:y:member:user:a",
        ]);
        assert!(!g.check("user:a", "viewer", "doc:d"));
        assert!(g.check("user:a", "member", "group:y"));
        assert!(g.check("group:x", "member", "group:x"));
    }

    #[test]
    fn check_ignores_revoked_edges_and_sees_readds() {
        let mut g = graph(&CHAIN);
        revoke(&mut g, CHAIN[1]);
        assert!(!g.check("user:alice", "viewer", "doc:readme"));
        assert!(g.check("group:staff", "viewer", "doc:readme"));
        assert_eq!(g.live_count(), 2);
        assert_eq!(g.len(), 3);
        let plan = g.plan(&[MutationOp::Add(spec(CHAIN[1]))], 3, 9).unwrap();
        assert_eq!(plan.changes[0].added_version, 3);
        assert_eq!(plan.changes[0].revoked_at, None);
        g.apply(&plan);
        assert!(g.check("user:alice", "viewer", "doc:readme"));
        assert_eq!(g.live_count(), 3);
    }

    #[test]
    fn plans_are_sequential_and_change_nothing_until_applied() {
        let g = graph(&CHAIN[..1]);
        let new = "user:bob:member:group:eng";
        let ops = vec![
            MutationOp::Add(spec(new)),
            MutationOp::Revoke {
                edge_id: new.into(),
            },
            MutationOp::Revoke {
                edge_id: CHAIN[0].into(),
            },
            MutationOp::Revoke {
                edge_id: CHAIN[0].into(),
            },
            MutationOp::Add(spec(CHAIN[0])),
        ];
        let plan = g.plan(&ops, 7, 1000).unwrap();
        // Nothing changed yet.
        assert!(g.get(new).is_none());
        assert!(g.get(CHAIN[0]).unwrap().is_live());
        assert_eq!(
            plan.log,
            vec![
                ("add", new.to_owned()),
                ("revoke", new.to_owned()),
                ("revoke", CHAIN[0].to_owned()),
                ("revoke", CHAIN[0].to_owned()),
                ("add", CHAIN[0].to_owned()),
            ]
        );
        // Final states only, in first-touch order: bob's edge added then revoked, alice's
        // revoked then live again.
        assert_eq!(plan.changes.len(), 2);
        assert_eq!(plan.changes[0].id, new);
        assert_eq!(plan.changes[0].revoked_at, Some(1000));
        assert_eq!(plan.changes[1].id, CHAIN[0]);
        assert_eq!(plan.changes[1].revoked_at, None);
        assert_eq!(plan.changes[1].added_version, 7);
        let mut g2 = g.clone();
        g2.apply(&plan);
        assert_eq!(g2.live_count(), 1);
        assert!(!g2.check("user:bob", "member", "group:eng"));
        assert!(g2.check("user:alice", "member", "group:eng"));
    }

    #[test]
    fn a_batch_with_an_unknown_revoke_is_refused_whole() {
        let g = graph(&CHAIN);
        let ops = vec![
            MutationOp::Add(spec("user:bob:member:group:eng")),
            MutationOp::Revoke {
                edge_id: CHAIN[0].into(),
            },
            MutationOp::Revoke {
                edge_id: "user:nobody:member:group:eng".into(),
            },
        ];
        assert_eq!(g.plan(&ops, 2, 0), Err(UnknownEdge { index: 2 }));
        assert_eq!(g.live_count(), 3);
        assert!(g.get("user:bob:member:group:eng").is_none());
    }

    #[test]
    fn revoking_twice_keeps_the_first_time() {
        let mut g = graph(&CHAIN);
        revoke(&mut g, CHAIN[0]);
        let plan = g
            .plan(
                &[MutationOp::Revoke {
                    edge_id: CHAIN[0].into(),
                }],
                3,
                99,
            )
            .unwrap();
        assert!(plan.changes.is_empty());
        assert_eq!(plan.log.len(), 1);
        assert_eq!(g.get(CHAIN[0]).unwrap().revoked_at, Some(5));
    }
}
