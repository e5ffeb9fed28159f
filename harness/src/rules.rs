//! Traceability between docs/contract.md and the features: every rule of the contract carries
//! an id in brackets (`[R-KEY-FORMAT]`), and every scenario names the rules it checks with
//! tags (`@R-KEY-FORMAT`). The map shows which rule no scenario checks, which tag names no
//! rule, and which scenario names none, so "every rule has a scenario" stays a checked fact
//! (`authconf list --rules`, and the `traceability` test).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::listing::Listed;

/// The contract beside a features directory (`<features>/../docs/contract.md`).
pub fn contract_beside(features: &Path) -> PathBuf {
    let dir = if features.is_dir() {
        features.to_path_buf()
    } else {
        features.parent().map(Path::to_path_buf).unwrap_or_default()
    };
    dir.join("..").join("docs").join("contract.md")
}

/// Every rule id written `[R-...]` in the contract's text.
pub fn rule_ids(contract: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\[(R-[A-Z0-9][A-Z0-9-]*)\]").expect("static regex");
    re.captures_iter(contract)
        .map(|c| c[1].to_owned())
        .collect()
}

/// The rules, the scenarios that check each, and what does not fit.
#[derive(Debug, Default)]
pub struct RuleMap {
    /// Rule id -> "feature › scenario" names (outlines once), in file order.
    pub rules: BTreeMap<String, Vec<String>>,
    /// (scenario, tag) for each `@R-...` tag that names no rule of the contract.
    pub unknown_tags: Vec<(String, String)>,
    /// Scenarios that name no rule at all.
    pub untagged: Vec<String>,
}

impl RuleMap {
    /// Rules no scenario checks.
    pub fn unchecked(&self) -> Vec<&str> {
        self.rules
            .iter()
            .filter(|(_, s)| s.is_empty())
            .map(|(r, _)| r.as_str())
            .collect()
    }

    /// Whether every rule has a scenario, every tag a rule and every scenario a rule.
    pub fn is_complete(&self) -> bool {
        self.unchecked().is_empty() && self.unknown_tags.is_empty() && self.untagged.is_empty()
    }
}

/// Builds the map from the contract's text and the listed scenarios.
pub fn map(contract: &str, listed: &[Listed]) -> RuleMap {
    let ids = rule_ids(contract);
    let mut out = RuleMap {
        rules: ids.iter().map(|r| (r.clone(), Vec::new())).collect(),
        ..RuleMap::default()
    };
    let mut seen = BTreeSet::new();
    for l in listed {
        // Outline rows share their tags (bar example tags): list each name once.
        let name = format!("{} › {}", l.feature, l.name);
        if !seen.insert(name.clone()) {
            continue;
        }
        let tags: Vec<&str> = l
            .tags
            .iter()
            .map(|t| t.trim_start_matches('@'))
            .filter(|t| t.starts_with("R-"))
            .collect();
        if tags.is_empty() {
            out.untagged.push(name.clone());
        }
        for t in tags {
            match out.rules.get_mut(t) {
                Some(v) => {
                    if !v.contains(&name) {
                        v.push(name.clone());
                    }
                }
                None => out.unknown_tags.push((name.clone(), t.to_owned())),
            }
        }
    }
    out
}

/// The map as text for `authconf list --rules`.
pub fn render(m: &RuleMap) -> String {
    let mut s = String::new();
    for (rule, scenarios) in &m.rules {
        s.push_str(&format!("{rule} ({} scenarios)\n", scenarios.len()));
        for sc in scenarios {
            s.push_str(&format!("    {sc}\n"));
        }
    }
    let checked = m.rules.len() - m.unchecked().len();
    s.push_str(&format!(
        "\n{} rules, {checked} with a scenario.\n",
        m.rules.len()
    ));
    if !m.unchecked().is_empty() {
        s.push_str(&format!(
            "Rules without a scenario: {}\n",
            m.unchecked().join(", ")
        ));
    }
    for (sc, tag) in &m.unknown_tags {
        s.push_str(&format!("Tag @{tag} names no rule: {sc}\n"));
    }
    for sc in &m.untagged {
        s.push_str(&format!("Scenario names no rule: {sc}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(name: &str, tags: &[&str]) -> Listed {
        Listed {
            feature: "F".into(),
            name: name.into(),
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        }
    }

    #[test]
    fn finds_gaps_both_ways() {
        let contract = "[R-A] one. [R-B] two.";
        let m = map(
            contract,
            &[
                listed("x", &["R-A", "admin"]),
                listed("y", &["R-C"]),
                listed("z", &["admin"]),
            ],
        );
        assert_eq!(m.rules["R-A"], vec!["F › x"]);
        assert_eq!(m.unchecked(), vec!["R-B"]);
        assert_eq!(m.unknown_tags, vec![("F › y".into(), "R-C".into())]);
        assert_eq!(m.untagged, vec!["F › z"]);
        assert!(!m.is_complete());
    }
}
