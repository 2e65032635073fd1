//! The protocol's error cases (`ledger_exec::protocol_cases`) against implementations in other
//! processes: the Python reference of `examples/python-reference` answers every one as SPEC.md
//! requires, and an implementation that answers one wrongly, or writes a line the harness
//! cannot read, fails that case, named, with what it sent and what came back.

use std::path::Path;
use std::time::Duration;

use ledger_core::Config;
use ledger_exec::child::Child;
use ledger_exec::protocol_cases::{cases, run};

fn python_reference() -> String {
    let adapter = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/python-reference/adapter.py");
    format!("python3 {}", adapter.canonicalize().unwrap().display())
}

fn start(command: &str) -> Child {
    Child::start(command, &[], &Config::default(), Duration::from_secs(20)).unwrap_or_else(|e| panic!("{command}: {e}"))
}

#[test]
fn the_python_reference_answers_every_error_case_as_spec_requires() {
    let out = run(&mut start(&python_reference()));
    assert!(out.failed.is_empty(), "{:#?}", out.failed);
    assert_eq!(out.passed.len(), cases().len());
    assert!(out.not_run.is_empty());
}

/// The Python reference behind a filter that answers `out_of_range` where SPEC.md says
/// `malformed` (an implementation that reads `1e3` as a number, too large): that case fails,
/// named, with what was sent and what came back; the others pass. Behind one that answers an
/// empty line (with `"id": null`, which no request has): the harness cannot take that answer,
/// so its case fails and the cases after it are not run.
#[test]
fn a_wrong_error_code_or_an_answer_to_no_request_fails_its_case() {
    let sed = r#"sed -u 's/"code":"malformed","definite":true,"text":"field .paid_sats. is not an integer"/"code":"out_of_range","definite":true,"text":"read as a float"/'"#;
    let out = run(&mut start(&format!("{} | {sed}", python_reference())));
    let names: Vec<&str> = out.failed.iter().map(|f| f.case.as_str()).collect();
    assert_eq!(names, ["protocol/exponent"], "{:#?}", out.failed);
    let f = &out.failed[0];
    assert_eq!(f.expected, "error malformed");
    assert!(f.got.starts_with("error out_of_range"), "{f:?}");
    assert!(f.sent.contains("1e3"), "{f:?}");
    assert!(out.not_run.is_empty());
    assert_eq!(out.passed.len(), cases().len() - 1);

    let answers_empty = r#"python3 -u -c '
import subprocess, sys
child = subprocess.Popen(sys.argv[1:], stdin=subprocess.PIPE, stdout=sys.stdout, text=True, bufsize=1)
for line in sys.stdin:
    if not line.strip():
        sys.stdout.write("{\"id\":null,\"type\":\"error\",\"code\":\"malformed\",\"definite\":true,\"text\":\"empty\"}\n")
        sys.stdout.flush()
    child.stdin.write(line)
    child.stdin.flush()
' "#;
    let out = run(&mut start(&format!("{answers_empty}{}", python_reference())));
    let names: Vec<&str> = out.failed.iter().map(|f| f.case.as_str()).collect();
    assert_eq!(names, ["protocol/empty-line"], "{:#?}", out.failed);
    assert!(out.failed[0].got.starts_with("an answer the harness could not take"), "{:?}", out.failed[0]);
    let first_not_run = cases().iter().position(|c| c.name == "protocol/empty-line").unwrap() + 1;
    assert_eq!(out.not_run.len(), cases().len() - first_not_run, "{:?}", out.not_run);
}
