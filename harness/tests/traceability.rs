//! "Every rule here has a scenario" (docs/contract.md) as a checked fact: every rule id of the
//! contract is named by at least one scenario's tag, every `@R-...` tag names a rule of the
//! contract, and every scenario names at least one rule.

use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn every_rule_has_a_scenario_and_every_scenario_a_rule() {
    let contract = std::fs::read_to_string(root().join("docs/contract.md")).expect("contract");
    let listed = authconf::list_features(&root().join("features")).expect("features parse");
    let map = authconf::rules::map(&contract, &listed);
    assert!(
        map.rules.len() >= 50,
        "the contract should carry its rule ids; found {}",
        map.rules.len()
    );
    assert!(
        map.is_complete(),
        "traceability gaps:\n{}",
        authconf::rules::render(&map)
            .lines()
            .filter(|l| l.starts_with("Rules without")
                || l.starts_with("Tag @")
                || l.starts_with("Scenario names no rule"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
