//! `SPEC.md` and the conformance vectors, held to each other: the rule ids of `SPEC.md` are
//! those of `ledger_core::spec::Rule`, in the same order; every rule is named by at least one
//! case and every case names only rules that exist; and every rule, broken by the one-line
//! variant of the reference that `Variant::breaks` guards, fails at least one case that names it.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use ledger_core::{Ledger, Rule};
use ledger_harness::conformance::replay::replay;
use ledger_harness::conformance::{self, Segment};
use ledger_harness::mutants::Breaks;
use ledger_harness::oracle::Model;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn vector_files() -> Vec<(String, Vec<Segment>)> {
    conformance::read_dir(&root().join("fixtures/conformance")).unwrap_or_else(|e| panic!("{e}"))
}

/// The rule ids `SPEC.md` defines, in order: each rule is a list item that starts with its id
/// in bold, `- **R-DECIDE-3** ...`.
fn spec_rule_ids() -> Vec<String> {
    let spec = std::fs::read_to_string(root().join("SPEC.md")).expect("SPEC.md at the repository root");
    spec.lines()
        .filter_map(|line| line.strip_prefix("- **")?.split_once("**").map(|(id, _)| id.to_owned()))
        .filter(|id| id.starts_with("R-"))
        .collect()
}

#[test]
fn spec_md_defines_exactly_the_rules_of_the_code_in_order() {
    let in_spec = spec_rule_ids();
    let in_code: Vec<String> = Rule::ALL.iter().map(|r| r.id().to_owned()).collect();
    let mut seen = BTreeSet::new();
    for id in &in_spec {
        assert!(seen.insert(id), "SPEC.md defines {id} twice");
        assert!(conformance::is_rule_id(id), "SPEC.md: {id} is not a rule id");
    }
    assert_eq!(in_spec, in_code, "SPEC.md's rules differ from ledger_core::spec::Rule::ALL");
}

/// The cases that name each rule, `file: case`.
fn cases_by_rule() -> BTreeMap<String, Vec<String>> {
    let mut by_rule: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (file, segs) in vector_files() {
        for seg in &segs {
            for id in &seg.header.rules {
                by_rule.entry(id.clone()).or_default().push(format!("{file}: {}", seg.header.case));
            }
        }
    }
    by_rule
}

#[test]
fn every_rule_is_named_by_a_case_and_every_case_names_a_rule_that_exists() {
    let by_rule = cases_by_rule();
    let unknown: Vec<_> = by_rule.iter().filter(|(id, _)| Rule::from_id(id).is_none()).collect();
    assert!(unknown.is_empty(), "cases name rules SPEC.md does not define: {unknown:?}");
    let unpinned: Vec<&str> = Rule::ALL.iter().map(|r| r.id()).filter(|id| !by_rule.contains_key(*id)).collect();
    assert!(unpinned.is_empty(), "rules no conformance case names: {unpinned:?}");
}

/// The cases a ledger breaking `rule` fails (a panic counts as failing).
fn cases_failed_by(rule: Rule, files: &[(String, Vec<Segment>)]) -> Vec<(String, Vec<String>)> {
    let mut failed = Vec::new();
    for (file, segs) in files {
        for seg in segs {
            let mut ledger = Ledger::with_variant(seg.header.config, Breaks(rule));
            let fails = catch_unwind(AssertUnwindSafe(|| !replay(seg, file, &mut ledger).is_empty())).unwrap_or(true);
            if fails {
                failed.push((format!("{file}: {}", seg.header.case), seg.header.rules.clone()));
            }
        }
    }
    failed
}

#[test]
fn every_rule_broken_fails_a_case_that_names_it() {
    let files = vector_files();
    let mut survivors = Vec::new();
    for &rule in Rule::ALL {
        let failed = cases_failed_by(rule, &files);
        let named = failed.iter().filter(|(_, rules)| rules.iter().any(|id| id == rule.id())).count();
        if named == 0 {
            let others: Vec<&str> = failed.iter().map(|(case, _)| case.as_str()).take(5).collect();
            survivors.push(format!(
                "{rule} ({}): broken, it fails {} case(s), none naming it{}",
                rule.summary(),
                failed.len(),
                if others.is_empty() { String::new() } else { format!(" (fails {})", others.join("; ")) }
            ));
        }
    }
    assert!(survivors.is_empty(), "{} rule(s) not pinned:\n{}", survivors.len(), survivors.join("\n"));
}

/// The oracle's model, written from `SPEC.md` apart from the reference, gives every answer and
/// every balance sheet of every vector (which the reference wrote).
#[test]
fn the_oracle_model_answers_every_vector() {
    let mut differences = Vec::new();
    for (file, segs) in vector_files() {
        for seg in &segs {
            let mut model = Model::new(seg.header.config);
            for (line, step) in &seg.steps {
                let got = model.apply(&step.command, step.now);
                if got != step.expect.to_result() {
                    differences.push(format!(
                        "{file}:{line} ({}): expected {:?}, model {got:?}",
                        seg.header.case, step.expect
                    ));
                    break;
                }
                let totals = ledger_harness::conformance::Balances::from(model.totals());
                if totals != step.totals {
                    differences.push(format!(
                        "{file}:{line} ({}): expected {:?}, model {totals:?}",
                        seg.header.case, step.totals
                    ));
                    break;
                }
            }
        }
    }
    assert!(differences.is_empty(), "{} case(s):\n{}", differences.len(), differences.join("\n"));
}

/// The table of rules and cases in the conformance README is the one the vectors give.
#[test]
fn the_rules_table_of_the_conformance_readme_is_fresh() {
    use ledger_harness::conformance::rules;
    let path = root().join("fixtures/conformance/README.md");
    let readme = std::fs::read_to_string(&path).expect("fixtures/conformance/README.md");
    let fresh = rules::splice(&readme, &rules::table(&vector_files()));
    assert!(
        readme == fresh,
        "the table of rules in fixtures/conformance/README.md is stale: run `cargo run -p ledger-harness --example gen_conformance`"
    );
}
