//! junit.xml: one testsuite per feature, the failure class as a testcase property.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::sections::failure_text;
use crate::outcome::RunOutcome;
use crate::results::{ScenarioResult, Verdict};

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .chars()
        .filter(|c| *c == '\n' || *c == '\t' || !c.is_control())
        .collect()
}

/// junit.xml: one testsuite per feature.
pub fn junit(o: &RunOutcome) -> String {
    let mut by_feature: BTreeMap<&str, Vec<&ScenarioResult>> = BTreeMap::new();
    for r in &o.scenarios {
        by_feature.entry(&r.feature).or_default().push(r);
    }
    let mut s = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        s,
        "<testsuites name=\"authconf\" tests=\"{}\" time=\"{:.3}\">",
        o.scenarios.len(),
        o.wall.as_secs_f64()
    );
    for (feat, rs) in by_feature {
        let failures = rs.iter().filter(|r| r.verdict.fails_run()).count();
        let skipped = rs
            .iter()
            .filter(|r| matches!(r.verdict, Verdict::Skipped(_)))
            .count();
        let _ = writeln!(
            s,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\">",
            xml(feat),
            rs.len()
        );
        for r in rs {
            let _ = write!(
                s,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml(feat),
                xml(&r.name),
                r.duration.as_secs_f64()
            );
            if let Some(c) = r.class {
                // The class of a failure, for CI tools that filter on testcase properties.
                let _ = write!(
                    s,
                    ">\n      <properties><property name=\"authconf.class\" value=\"{c}\"/></properties"
                );
            }
            match &r.verdict {
                Verdict::Passed if r.class.is_some() => s.push_str(">\n    </testcase>\n"),
                Verdict::Passed => s.push_str("/>\n"),
                Verdict::Skipped(why) => {
                    let _ = writeln!(
                        s,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        xml(why)
                    );
                }
                Verdict::ExpectedFailure(why) => {
                    let _ = writeln!(
                        s,
                        ">\n      <system-out>expected failure: {}\n{}</system-out>\n    </testcase>",
                        xml(why),
                        xml(&failure_text(r))
                    );
                }
                Verdict::UnexpectedPass(why) => {
                    let _ = writeln!(
                        s,
                        ">\n      <failure message=\"listed as a known failure but passed\">{}</failure>\n    </testcase>",
                        xml(why)
                    );
                }
                Verdict::Failed => {
                    let msg = r
                        .failure
                        .as_ref()
                        .map(|f| f.message.lines().next().unwrap_or_default().to_owned())
                        .unwrap_or_default();
                    let _ = writeln!(
                        s,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        xml(&msg),
                        xml(&failure_text(r))
                    );
                }
            }
        }
        s.push_str("  </testsuite>\n");
    }
    s.push_str("</testsuites>\n");
    s
}
