//! `plan --history-out` and `plan --fit` end to end: the binary writes the committed fixture
//! history, fits it into a scenario that `plan` runs as it is, and refuses a bad history with
//! exit 2, naming file and line, leaving no output file behind.

use crate::common::{root, scratch, sim_in};

#[test]
fn history_out_writes_the_fixture_and_fit_reads_it_back_into_a_scenario_that_runs() {
    let dir = scratch("plan-fit");
    let root = root();
    let history = format!("{dir}/fit-small.csv");
    let (code, _, err) = sim_in(&root, &["plan", "fixtures/history/fit-small.toml", "--history-out", history.as_str()]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("19946 requests of seed 11 written to"), "{err}");
    let committed = std::fs::read(root.join("fixtures/history/fit-small.csv")).unwrap();
    assert!(std::fs::read(&history).unwrap() == committed, "the binary writes the committed fixture");

    let fitted = format!("{dir}/fitted.toml");
    let (code, stdout, err) = sim_in(&root, &["plan", "--fit", history.as_str()]);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.starts_with("# A planner scenario fitted by `ledger-sim plan --fit fit-small.csv`"), "{stdout}");
    let (code, _, err) = sim_in(&root, &["plan", "--fit", history.as_str(), "--out", fitted.as_str()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&fitted).unwrap(), stdout, "--out writes what stdout shows");

    let (code, table, err) = sim_in(&root, &["plan", fitted.as_str(), "--seeds", "1", "--days", "3"]);
    assert_eq!(code, 0, "{err}");
    assert!(table.contains("fitted from fit-small.csv"), "{table}");
}

/// An exporter that quotes every field and ends lines with CRLF (a spreadsheet's "CSV", Python's
/// `csv.QUOTE_ALL`) writes the same history: it fits to the same scenario, byte for byte.
#[test]
fn a_history_with_every_field_quoted_fits_as_the_plain_one() {
    let dir = scratch("plan-fit-quoted");
    let root = root();
    let plain = std::fs::read_to_string(root.join("fixtures/history/fit-small.csv")).unwrap();
    let quoted: String = plain
        .lines()
        .map(|line| line.split(',').map(|field| format!("\"{field}\"")).collect::<Vec<_>>().join(",") + "\r\n")
        .collect();
    assert!(quoted.contains(",\"\",") && quoted.starts_with("\"time_ms\",\"user\""));
    std::fs::write(format!("{dir}/fit-small.csv"), quoted).unwrap();
    let (code, from_quoted, err) = sim_in(dir.as_ref(), &["plan", "--fit", "fit-small.csv"]);
    assert_eq!(code, 0, "{err}");
    let (code, from_plain, err) = sim_in(&root.join("fixtures/history"), &["plan", "--fit", "fit-small.csv"]);
    assert_eq!(code, 0, "{err}");
    assert!(from_quoted == from_plain, "the quoted history fits to another scenario:\n{from_quoted}");
}

#[test]
fn a_bad_history_exits_two_naming_file_and_line_and_writes_nothing() {
    let dir = scratch("plan-fit-bad");
    let bad = format!("{dir}/bad.csv");
    std::fs::write(
        &bad,
        "time_ms,user,tier,kind,estimate_sats,actual_sats,outcome,paid\n\
         1704067212345,u1,new,job,25,21,free,\n\
         1704067212346,u2,gold,job,25,21,free,\n",
    )
    .unwrap();
    let out = format!("{dir}/out.toml");
    let (code, stdout, err) = sim_in(dir.as_ref(), &["plan", "--fit", "bad.csv", "--out", out.as_str()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(r#"bad.csv:3: tier = "gold": must be new, established, trusted or elite"#), "{err}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(!std::path::Path::new(&out).exists(), "no output file");
    let leftovers: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers, vec![std::ffi::OsString::from("bad.csv")], "no temporary file either");

    for (args, expect) in [
        (vec!["plan", "--fit", "missing.csv"], "missing.csv"),
        (vec!["plan", "--fit", "bad.csv", "s.toml"], "cannot be used with"),
        (vec!["plan", "--fit", "bad.csv", "--seeds", "3"], "cannot be used with"),
        (vec!["plan"], "required"),
        (vec!["plan", "s.toml", "--out", "x.toml"], "--fit"),
    ] {
        let (code, _, err) = sim_in(dir.as_ref(), &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(expect), "{args:?}: {err}");
    }
}

#[test]
fn history_out_refuses_a_path_it_cannot_write_and_writes_nothing_partial() {
    let root = root();
    let dir = scratch("plan-history-out");
    // A file where its directory would be made.
    std::fs::write(format!("{dir}/a-file"), "").unwrap();
    let target = format!("{dir}/a-file/h.csv");
    let (code, _, err) =
        sim_in(&root, &["plan", "fixtures/history/fit-small.toml", "--days", "1", "--history-out", target.as_str()]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("a-file/h.csv") && err.contains("cannot make the directory"), "{err}");
    let (code, _, err) = sim_in(
        &root,
        &["plan", "fixtures/history/fit-small.toml", "--history-out", "h.csv", "--sweep", "credit_pct=1,2"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot be used with"), "{err}");
}
