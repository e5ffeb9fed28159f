//! The suite as written: every feature file under a path, parsed, and every scenario listed
//! with its inherited tags (outlines expanded per example row) for `authconf list`, the
//! rule map (`rules.rs`) and the run's scenario count.

use std::path::Path;

use cucumber::gherkin;

use crate::error::RunError;

/// Parses every feature file under `path`.
pub fn parse_features(path: &Path) -> Result<Vec<gherkin::Feature>, RunError> {
    let mut files = Vec::new();
    if path.is_dir() {
        let mut stack = vec![path.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d)? {
                let p = e?.path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.extension().is_some_and(|x| x == "feature") {
                    files.push(p);
                }
            }
        }
    } else if path.is_file() {
        files.push(path.to_path_buf());
    } else {
        return Err(RunError::Usage(format!(
            "no feature files at {}",
            path.display()
        )));
    }
    files.sort();
    files
        .iter()
        .map(|f| {
            gherkin::Feature::parse_path(f, gherkin::GherkinEnv::default())
                .map_err(|e| RunError::Usage(format!("{}: {e}", f.display())))
        })
        .collect()
}

/// One scenario as listed (outlines expanded per example row).
#[derive(Debug, Clone)]
pub struct Listed {
    /// Feature name.
    pub feature: String,
    /// Scenario name, placeholders filled in.
    pub name: String,
    /// Tags (feature and scenario), without `@`.
    pub tags: Vec<String>,
}

fn fill(template: &str, header: &[String], row: &[String]) -> String {
    let mut s = template.to_owned();
    for (h, v) in header.iter().zip(row) {
        s = s.replace(&format!("<{h}>"), v);
    }
    s
}

/// Every scenario of the features, outlines expanded, in file order.
pub fn list_features(path: &Path) -> Result<Vec<Listed>, RunError> {
    let mut out = Vec::new();
    for f in parse_features(path)? {
        let scenarios = f.scenarios.iter().map(|s| (s, Vec::new())).chain(
            f.rules
                .iter()
                .flat_map(|r| r.scenarios.iter().map(move |s| (s, r.tags.clone()))),
        );
        for (s, rule_tags) in scenarios {
            let base: Vec<String> = f
                .tags
                .iter()
                .chain(rule_tags.iter())
                .chain(s.tags.iter())
                .cloned()
                .collect();
            if s.examples.is_empty() {
                out.push(Listed {
                    feature: f.name.clone(),
                    name: s.name.clone(),
                    tags: base,
                });
                continue;
            }
            for ex in &s.examples {
                let Some(table) = &ex.table else { continue };
                let Some((header, rows)) = table.rows.split_first() else {
                    continue;
                };
                for row in rows {
                    let mut tags = base.clone();
                    tags.extend(ex.tags.iter().cloned());
                    out.push(Listed {
                        feature: f.name.clone(),
                        name: fill(&s.name, header, row),
                        tags,
                    });
                }
            }
        }
    }
    Ok(out)
}
