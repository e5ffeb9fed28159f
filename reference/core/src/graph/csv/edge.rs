//! One edge of the graph and the rules for its five parts, shared by the CSV file and by the
//! JSON mutations (which name the parts the way the file's header does).
//!
//! Why ':' is refused in every part: the edge id is
//! `<subject_type>:<subject_id>:<relation>:<object_type>:<object_id>` and a node is
//! `<type>:<id>`. If an id could hold ':', two different edges could share one id (`a:b` +
//! `c` versus `a` + `b:c`) and a node id could not be split back into type and id, so revoking
//! or validating "an edge id" would be ambiguous. Types and relations are further limited to
//! `[A-Za-z0-9_-]+` because they are identifiers; ids (user names, document keys) may hold any
//! other printable text, but no control characters, which would corrupt logs and the
//! `validate` reasons.

/// Longest field, in bytes after trimming.
pub const MAX_FIELD_BYTES: usize = 256;
/// The only header accepted, column by column.
pub const HEADER: [&str; 5] = [
    "subject_type",
    "subject_id",
    "relation",
    "object_type",
    "object_id",
];

/// What a field holds, which decides its rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartKind {
    /// `subject_type`, `relation`, `object_type`: `[A-Za-z0-9_-]+`.
    Name,
    /// `subject_id`, `object_id`: any text without ':' or control characters.
    Id,
}

/// The kind of each column, in header order.
pub const PART_KINDS: [PartKind; 5] = [
    PartKind::Name,
    PartKind::Id,
    PartKind::Name,
    PartKind::Name,
    PartKind::Id,
];

/// Checks one (already trimmed) part of an edge. The message leaves out the field's name so
/// the CSV reader and the JSON handlers can each name it their way.
pub fn check_part(kind: PartKind, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("must not be empty".into());
    }
    if value.len() > MAX_FIELD_BYTES {
        return Err(format!("must be at most {MAX_FIELD_BYTES} bytes"));
    }
    match kind {
        PartKind::Name => {
            if !value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err("must match [A-Za-z0-9_-]+".into());
            }
        }
        PartKind::Id => {
            if value.contains(':') {
                return Err("must not contain ':' (it separates the parts of an edge id)".into());
            }
            if value.chars().any(char::is_control) {
                return Err("must not contain control characters".into());
            }
        }
    }
    Ok(())
}

/// One edge as written in the file or in a mutation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EdgeSpec {
    pub subject_type: String,
    pub subject_id: String,
    pub relation: String,
    pub object_type: String,
    pub object_id: String,
}

impl EdgeSpec {
    /// Builds a spec from five parts in header order, checking each; on failure answers the
    /// 0-based index of the bad part and the message.
    pub fn from_parts(parts: [String; 5]) -> Result<Self, (usize, String)> {
        for (i, (part, kind)) in parts.iter().zip(PART_KINDS).enumerate() {
            check_part(kind, part).map_err(|m| (i, m))?;
        }
        let [subject_type, subject_id, relation, object_type, object_id] = parts;
        Ok(Self {
            subject_type,
            subject_id,
            relation,
            object_type,
            object_id,
        })
    }

    /// The source node, `subject_type:subject_id`.
    pub fn subject(&self) -> String {
        format!("{}:{}", self.subject_type, self.subject_id)
    }

    /// The target node, `object_type:object_id`.
    pub fn object(&self) -> String {
        format!("{}:{}", self.object_type, self.object_id)
    }

    /// `<subject_type>:<subject_id>:<relation>:<object_type>:<object_id>`, unambiguous
    /// because no part holds ':'.
    pub fn id(&self) -> String {
        format!(
            "{}:{}:{}:{}:{}",
            self.subject_type, self.subject_id, self.relation, self.object_type, self.object_id
        )
    }
}
