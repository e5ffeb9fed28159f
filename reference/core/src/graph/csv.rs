//! The graph file: an RFC 4180 CSV parser and the rules for one edge.
//!
//! The file is `tenants/<tenantId>/graph.csv`, header
//! `subject_type,subject_id,relation,object_type,object_id`, one edge a row. The public
//! deployment split on newlines and commas (section 14, D20: a quoted comma broke it); this
//! parser reads the CSV grammar for real:
//! - fields may be quoted; inside quotes `""` is one quote and commas, CR and LF are data;
//! - records end with CRLF or LF; the last one may or may not end with a newline;
//! - a UTF-8 byte order mark at the very start is skipped;
//! - a line with nothing on it (zero bytes) is skipped, so hand-edited files with blank lines
//!   load; a line holding anything else is a record and must have exactly five fields;
//! - every field is trimmed of surrounding spaces and tabs, quoted or not, as the public
//!   deployment trimmed its values (so `" alice "` is `alice`);
//! - a quote inside an unquoted field, text after a closing quote, an unterminated quote and a
//!   lone CR are errors rather than guesses.
//!
//! Errors name the 1-based line (where the offending field starts; quoted fields can span
//! lines) and the 1-based column (the field number), e.g.
//! `line 7, column 3: relation must match [A-Za-z0-9_-]+`.
//!
//! The rules for one edge's parts (and why ':' is refused in every one) are in `csv/edge.rs`;
//! the CSV grammar is read by `csv/reader.rs`; this file holds the limits, the errors and
//! the parse of the whole file (header, rows, duplicates).

mod edge;
mod reader;

use std::collections::BTreeSet;
use std::fmt;

pub use edge::{check_part, EdgeSpec, PartKind, HEADER, MAX_FIELD_BYTES, PART_KINDS};
use reader::{Field, Reader, Record};

/// Largest graph file accepted, in bytes (8 MiB).
pub const MAX_CSV_BYTES: usize = 8 * 1024 * 1024;
/// Most distinct edges one graph file may hold.
pub const MAX_EDGES: usize = 200_000;

/// Why a graph file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CsvError {
    /// Larger than [`MAX_CSV_BYTES`]; nothing was parsed.
    TooLarge { bytes: usize },
    /// A problem at a place in the file.
    At {
        line: usize,
        column: usize,
        message: String,
    },
}

impl CsvError {
    fn at(line: usize, column: usize, message: impl Into<String>) -> Self {
        CsvError::At {
            line,
            column,
            message: message.into(),
        }
    }

    /// The 400 a host answers: `invalid_field` naming `csv`, the message giving the place.
    pub fn to_api_error(&self) -> crate::http::ApiError {
        crate::http::ApiError::field("csv", self.to_string())
    }
}

impl fmt::Display for CsvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CsvError::TooLarge { bytes } => write!(
                f,
                "is {bytes} bytes; graph files are limited to {MAX_CSV_BYTES} bytes (8 MiB)"
            ),
            CsvError::At {
                line,
                column,
                message,
            } => write!(f, "line {line}, column {column}: {message}"),
        }
    }
}

impl std::error::Error for CsvError {}
/// Longest part of a client's input an error repeats, in characters.
pub const ECHO_CHARS: usize = 32;

/// A short, quoted and escaped prefix of client input for an error message. The whole input
/// could be megabytes, and escaping grows it further (a control byte becomes `\u{1}`, then
/// JSON escapes the backslash): an error must stay small whatever it is about.
pub fn echo(input: &str) -> String {
    let mut chars = input.chars();
    let prefix: String = chars.by_ref().take(ECHO_CHARS).collect();
    if chars.next().is_none() {
        format!("{prefix:?}")
    } else {
        format!("{prefix:?}... ({} bytes)", input.len())
    }
}

/// A field as trimmed UTF-8 text.
fn field_text(field: &Field, column: usize) -> Result<String, CsvError> {
    let text = std::str::from_utf8(&field.bytes).map_err(|_| {
        CsvError::at(
            field.line,
            column,
            format!("{} is not valid UTF-8", HEADER[column - 1]),
        )
    })?;
    Ok(text.trim_matches([' ', '\t']).to_owned())
}

/// The five fields of a record, or an error naming the first missing or extra one.
fn five(record: &Record) -> Result<&[Field; 5], CsvError> {
    let n = record.fields.len();
    match <&[Field; 5]>::try_from(record.fields.as_slice()) {
        Ok(f) => Ok(f),
        Err(_) if n < 5 => {
            let last = record.fields.last().map_or(record.line, |f| f.line);
            Err(CsvError::at(
                last,
                n + 1,
                format!(
                    "missing field {}; every row has 5 fields ({}), this one has {n}",
                    HEADER[n],
                    HEADER.join(",")
                ),
            ))
        }
        Err(_) => Err(CsvError::at(
            record.fields[5].line,
            6,
            format!(
                "unexpected field; every row has 5 fields ({}), this one has {n}",
                HEADER.join(",")
            ),
        )),
    }
}

/// Parses a whole graph file into its distinct edges, in the order they first appear.
/// Duplicate rows collapse to one edge. Nothing is kept on error.
pub fn parse(input: &[u8]) -> Result<Vec<EdgeSpec>, CsvError> {
    if input.len() > MAX_CSV_BYTES {
        return Err(CsvError::TooLarge { bytes: input.len() });
    }
    let mut reader = Reader::new(input);
    let header = match reader.next_record() {
        None => {
            return Err(CsvError::at(
                1,
                1,
                format!(
                    "missing header; the first line must be {}",
                    HEADER.join(",")
                ),
            ))
        }
        Some(r) => r?,
    };
    for (i, expected) in HEADER.iter().enumerate() {
        let found = match header.fields.get(i) {
            Some(f) => field_text(f, i + 1)?,
            None => String::new(),
        };
        if found != *expected {
            return Err(CsvError::at(
                header.line,
                i + 1,
                format!(
                    "header must be {}; expected {expected}, found {}",
                    HEADER.join(","),
                    echo(&found)
                ),
            ));
        }
    }
    if header.fields.len() > 5 {
        return Err(CsvError::at(
            header.line,
            6,
            format!("header must be {}; found an extra column", HEADER.join(",")),
        ));
    }

    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut edges = Vec::new();
    while let Some(record) = reader.next_record() {
        let record = record?;
        let fields = five(&record)?;
        let mut parts: [String; 5] = Default::default();
        for (i, field) in fields.iter().enumerate() {
            parts[i] = field_text(field, i + 1)?;
        }
        let spec = EdgeSpec::from_parts(parts).map_err(|(i, message)| {
            CsvError::at(fields[i].line, i + 1, format!("{} {message}", HEADER[i]))
        })?;
        let id = spec.id();
        if seen.contains(&id) {
            continue;
        }
        if edges.len() == MAX_EDGES {
            return Err(CsvError::at(
                record.line,
                1,
                format!("too many edges; a graph file holds at most {MAX_EDGES} distinct edges"),
            ));
        }
        seen.insert(id);
        edges.push(spec);
    }
    Ok(edges)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "subject_type,subject_id,relation,object_type,object_id\n";

    fn ok(body: &str) -> Vec<EdgeSpec> {
        parse(body.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn err(body: &[u8]) -> String {
        parse(body).unwrap_err().to_string()
    }

    fn spec(parts: [&str; 5]) -> EdgeSpec {
        EdgeSpec::from_parts(parts.map(str::to_owned)).unwrap()
    }

    #[test]
    fn reads_plain_rows_and_builds_ids() {
        let edges = ok(&format!(
            "{H}user,alice,member,group,eng\ngroup,eng,viewer,doc,readme"
        ));
        assert_eq!(edges.len(), 2);
        assert_eq!(edges[0].id(), "user:alice:member:group:eng");
        assert_eq!(edges[0].subject(), "user:alice");
        assert_eq!(edges[0].object(), "group:eng");
        assert_eq!(edges[1], spec(["group", "eng", "viewer", "doc", "readme"]));
    }

    #[test]
    fn quoted_fields_hold_commas_quotes_and_newlines() {
        let body = format!(
            "{H}user,\"smith, john\",member,group,\"the \"\"eng\"\" team\"\r\n\
             user,\"multi\nline\",member,group,eng\r\n"
        );
        // A newline inside quotes is data, and data may not hold control characters: the
        // error points at the line where the field starts, column 2.
        assert_eq!(
            err(body.as_bytes()),
            "line 3, column 2: subject_id must not contain control characters"
        );
        let edges = ok(&format!(
            "{H}user,\"smith, john\",member,group,\"the \"\"eng\"\" team\"\r\n"
        ));
        assert_eq!(edges[0].subject_id, "smith, john");
        assert_eq!(edges[0].object_id, "the \"eng\" team");
    }

    #[test]
    fn lines_count_inside_quoted_fields() {
        // Ids may not hold control characters, so a multi-line field is always an error; the
        // point is that lines are still counted right: the error gives the line where the
        // offending field starts.
        let body = format!("{H}user,bob,member,\"group\",eng\nuser,\"x\",\"a\nb\",g,h\n");
        assert_eq!(
            err(body.as_bytes()),
            "line 3, column 3: relation must match [A-Za-z0-9_-]+"
        );
        let body = format!("{H}user,\"a\nb\nc\",member,group,eng,extra\n");
        assert!(err(body.as_bytes()).starts_with("line 4, column 6: unexpected field"));
    }

    #[test]
    fn crlf_lf_trailing_newline_bom_and_blank_lines() {
        let want = vec![spec(["user", "alice", "member", "group", "eng"])];
        assert_eq!(ok(&format!("{H}user,alice,member,group,eng")), want);
        assert_eq!(ok(&format!("{H}user,alice,member,group,eng\n")), want);
        assert_eq!(
            ok("subject_type,subject_id,relation,object_type,object_id\r\nuser,alice,member,group,eng\r\n"),
            want
        );
        assert_eq!(
            ok(&format!("\u{feff}{H}user,alice,member,group,eng\n")),
            want
        );
        assert_eq!(
            ok(&format!("{H}\n\r\nuser,alice,member,group,eng\n\n")),
            want
        );
        // Whitespace around fields and the header is trimmed.
        assert_eq!(
            ok(" subject_type , subject_id,relation,object_type,object_id \n user , alice ,member,\" group \",eng\n"),
            want
        );
        assert!(ok(H).is_empty());
    }

    #[test]
    fn bad_header() {
        assert_eq!(
            err(b""),
            "line 1, column 1: missing header; the first line must be subject_type,subject_id,relation,object_type,object_id"
        );
        assert_eq!(err(b"\xEF\xBB\xBF\n\n"), err(b""));
        let e = err(b"subject_type,subject_id,rel,object_type,object_id\n");
        assert!(e.starts_with("line 1, column 3: header must be"), "{e}");
        assert!(e.ends_with("expected relation, found \"rel\""), "{e}");
        let e = err(b"subject,relation,object\nuser:a,member,group:b\n");
        assert!(e.starts_with("line 1, column 1:"), "{e}");
        let e = err(b"subject_type,subject_id,relation,object_type\n");
        assert!(e.starts_with("line 1, column 5:"), "{e}");
        let e = err(b"subject_type,subject_id,relation,object_type,object_id,revoked_at\n");
        assert!(e.starts_with("line 1, column 6:"), "{e}");
        // Case matters.
        assert!(
            err(b"Subject_type,subject_id,relation,object_type,object_id\n")
                .starts_with("line 1, column 1:")
        );
        // Blank lines before the header are skipped; the error gives the header's real line.
        assert!(err(b"\n\nfoo\n").starts_with("line 3, column 1:"));
    }

    #[test]
    fn bad_rows_name_line_and_column() {
        let cases: &[(&str, &str)] = &[
            (
                "user,alice,member,group",
                "line 2, column 5: missing field object_id; every row has 5 fields",
            ),
            (
                "user,alice,member,group,eng,x",
                "line 2, column 6: unexpected field",
            ),
            (
                "user,alice,,group,eng",
                "line 2, column 3: relation must not be empty",
            ),
            (
                "user,alice,mem ber,group,eng",
                "line 2, column 3: relation must match [A-Za-z0-9_-]+",
            ),
            (
                "us:er,alice,member,group,eng",
                "line 2, column 1: subject_type must match [A-Za-z0-9_-]+",
            ),
            (
                "user,al:ice,member,group,eng",
                "line 2, column 2: subject_id must not contain ':'",
            ),
            (
                "user,alice,member,group,\"e:ng\"",
                "line 2, column 5: object_id must not contain ':'",
            ),
            (
                "user,alice,member,gr√oup,eng",
                "line 2, column 4: object_type must match",
            ),
            (
                "user,\"alice,member,group,eng",
                "line 2, column 2: unterminated quoted field",
            ),
            (
                "user,\"alice\"x,member,group,eng",
                "line 2, column 2: unexpected text after a closing quote",
            ),
            (
                "user,ali\"ce,member,group,eng",
                "line 2, column 2: a quote inside an unquoted field",
            ),
            (
                "user,alice\rx,member,group,eng",
                "line 2, column 2: carriage return not followed by a line feed",
            ),
            ("   ", "line 2, column 2: missing field subject_id"),
        ];
        for (row, want) in cases {
            let body = format!("{H}user,ok,member,group,eng\n{row}\n");
            // Put the bad row on line 3 and check, then on line 2 (directly after the header).
            let e = err(body.as_bytes());
            assert!(
                e.starts_with(&want.replace("line 2", "line 3")),
                "{row:?}: {e}"
            );
            let e = err(format!("{H}{row}\n").as_bytes());
            assert!(e.starts_with(want), "{row:?}: {e}");
        }
        // Non-ASCII ids are fine, invalid UTF-8 is not.
        assert_eq!(
            ok(&format!("{H}user,zoë,member,group,ingénierie\n")).len(),
            1
        );
        let mut body = H.as_bytes().to_vec();
        body.extend_from_slice(b"user,a\xFFb,member,group,eng\n");
        assert_eq!(
            err(&body),
            "line 2, column 2: subject_id is not valid UTF-8"
        );
    }

    #[test]
    fn duplicates_collapse() {
        let edges = ok(&format!(
            "{H}user,alice,member,group,eng\nuser,\"alice\",member,group, eng\nuser,bob,member,group,eng\n"
        ));
        assert_eq!(edges.len(), 2);
        assert_eq!(edges[1].subject_id, "bob");
    }

    #[test]
    fn limits() {
        let long = "x".repeat(MAX_FIELD_BYTES);
        assert_eq!(ok(&format!("{H}user,{long},member,group,eng\n")).len(), 1);
        let e = err(format!("{H}user,{long}x,member,group,eng\n").as_bytes());
        assert_eq!(e, "line 2, column 2: subject_id must be at most 256 bytes");

        let mut big = H.as_bytes().to_vec();
        big.resize(MAX_CSV_BYTES + 1, b'\n');
        assert_eq!(
            parse(&big),
            Err(CsvError::TooLarge {
                bytes: MAX_CSV_BYTES + 1
            })
        );
        big.truncate(MAX_CSV_BYTES);
        assert_eq!(parse(&big), Ok(vec![]));

        let mut body = String::from(H);
        for i in 0..MAX_EDGES {
            body.push_str(&format!("u,{i},r,o,x\n"));
        }
        // Duplicates of an edge already seen do not count against the limit.
        body.push_str("u,0,r,o,x\n");
        assert_eq!(parse(body.as_bytes()).unwrap().len(), MAX_EDGES);
        body.push_str("u,new,r,o,x\n");
        assert_eq!(
            err(body.as_bytes()),
            format!(
                "line {}, column 1: too many edges; a graph file holds at most 200000 distinct edges",
                MAX_EDGES + 3
            )
        );
    }

    /// An 8 MiB file whose header is one field of control bytes gets a small error: the
    /// found header is echoed as a short prefix, not escaped in full.
    #[test]
    fn a_huge_bad_header_gives_a_small_error() {
        let body = vec![0x01u8; MAX_CSV_BYTES];
        let e = parse(&body).unwrap_err();
        let problem = serde_json::to_vec(&e.to_api_error().to_problem()).unwrap();
        assert!(problem.len() < 1024, "{} bytes", problem.len());
        let text = e.to_string();
        assert!(text.contains(&format!("({MAX_CSV_BYTES} bytes)")), "{text}");
        assert_eq!(echo("rel"), "\"rel\"");
    }

    #[test]
    fn api_error_names_csv() {
        let e = parse(b"nope\n").unwrap_err().to_api_error();
        match e {
            crate::http::ApiError::InvalidField { field, message } => {
                assert_eq!(field, "csv");
                assert!(message.starts_with("line 1, column 1: header must be"));
            }
            other => panic!("{other:?}"),
        }
    }
}
