//! What `conform` tells a team whose implementation fails a case: the failing case as a block
//! of the protocol's JSON (the rules it pins, the request sent, both answers, each field that
//! differs, the requests before it) and a command that replays that case alone; `--case` to
//! run one case; `--write-vectors` to have the built-in vectors as files, never replacing a
//! file that differs; and the README's example of a failure is what `conform` prints.

use std::path::Path;
use std::process::Command;

use crate::common::{broken, json, root, scratch, sim_in, SIM};

/// Runs `ledger-sim ARGS` from the repository's root.
fn sim(args: &[&str]) -> (i32, String, String) {
    sim_in(&root(), args)
}

/// A credit of 10 to 99 sats is answered 100 more: the reply of a credit step is wrong.
const CREDIT_BUG: &str = r#"s/"credited_sats":\([1-9][0-9]\)}/"credited_sats":1\1}/"#;

/// The block of the failing case `case` in a text report.
fn block<'a>(out: &'a str, case: &str) -> &'a str {
    let start = out.find(&format!(" {case}: ")).unwrap_or_else(|| panic!("no failure of {case}: {out}"));
    let start = out[..start].rfind("FAIL ").expect("a block starts with FAIL");
    let replay = out[start..].find("\n  replay:").map(|i| start + i + 1).expect("a block ends with its replay");
    let end = out[replay..].find('\n').map_or(out.len(), |i| replay + i + 1);
    &out[start..end]
}

/// The one line of `block` that starts with `label` (after its indent).
fn labelled<'a>(block: &'a str, label: &str) -> &'a str {
    block
        .lines()
        .find_map(|l| l.strip_prefix(&format!("  {label}")))
        .unwrap_or_else(|| panic!("no {label} in {block}"))
        .trim_start()
}

/// Runs `command` with `sh -c` from the repository's root, with the binary on `PATH` (the
/// replay commands say `ledger-sim`).
fn shell(command: &str) -> (i32, String, String) {
    let bin_dir = Path::new(SIM).parent().expect("the binary's directory");
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let out = Command::new("sh")
        .args(["-c", command])
        .current_dir(root())
        .env("PATH", path)
        .env_remove("DATABASE_URL")
        .output()
        .expect("sh");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The line `line` (from 1) of the vector file `name` of the repository.
fn vector_line(name: &str, line: usize) -> String {
    let text = std::fs::read_to_string(root().join("fixtures/conformance").join(name)).expect("the vectors");
    text.lines().nth(line - 1).expect("the line is in the file").to_owned()
}

#[test]
fn a_failing_case_is_told_in_the_protocols_json_and_replays_alone() {
    let exec = broken(CREDIT_BUG);
    let (code, out, err) = sim(&["conform", "--exec", &exec]);
    assert_eq!(code, 1, "{out}{err}");
    let b = block(&out, "credit/credited");
    // The location is the failing step's line of the vector file.
    let head = b.lines().next().expect("a first line");
    assert!(head.ends_with(" credit/credited: credit: the reply differs"), "{b}");
    let line: usize = head["FAIL commands.jsonl:".len()..].split(' ').next().unwrap().parse().expect("a line");
    assert!(vector_line("commands.jsonl", line).contains(r#""cmd":"credit","payment_id":2,"paid_sats":250"#), "{b}");
    assert_eq!(labelled(b, "rules:"), "R-CREDIT-1", "{b}");
    let sent = labelled(b, "sent:");
    assert!(sent.ends_with(
        r#","type":"call","now_ms":1700000000001,"call":{"call":"credit","payment_id":2,"paid_sats":250}}"#
    ));
    let id = &sent[..sent.find(",\"type\"").unwrap()];
    assert_eq!(
        labelled(b, "expected:"),
        format!(
            r#"{id},"type":"reply","fresh":true,"reply":{{"reply":"ok","outcome":"credited","credited_sats":25}}}}"#
        )
    );
    assert_eq!(
        labelled(b, "got:"),
        format!(
            r#"{id},"type":"reply","fresh":true,"reply":{{"reply":"ok","outcome":"credited","credited_sats":125}}}}"#
        )
    );
    assert_eq!(labelled(b, "differs:"), "reply.credited_sats: expected 25, got 125", "{b}");
    // The requests before: the case's reset at its header's line, then the first credit.
    let before: Vec<&str> = b.lines().skip_while(|l| !l.starts_with("  before:")).take(2).collect();
    assert!(
        before[0].contains(&format!("line {}  {{", line - 2)) && before[0].contains(r#""type":"reset","config":{"#)
    );
    assert!(
        before[1].contains(&format!("line {}  {{", line - 1))
            && before[1].contains(r#""payment_id":1,"paid_sats":1000}"#)
    );
    // No Rust notation, no line past what a terminal shows in two or three rows.
    for rust in ["Ok(", "Err(", "Some(", "TimeMs(", "RequestId(", "Sats(", " sats)"] {
        assert!(!out.contains(rust), "{rust} in {out}");
    }
    assert!(out.lines().all(|l| l.chars().count() < 400), "{out}");
    // The summary comes last, after every block.
    let summary = out.lines().position(|l| l.starts_with("conform ")).expect("the summary");
    assert!(out.lines().skip(summary).all(|l| !l.starts_with("FAIL ") && !l.starts_with("  ")), "{out}");
    assert!(out.lines().nth(summary).unwrap().ends_with("failed"), "{out}");
    assert!(out.contains("failing cases by rule: R-CREDIT-1 ("), "{out}");
    assert!(out.contains("--write-vectors DIR"), "{out}");

    // The replay command runs that case alone, on the same implementation, and fails the same.
    let replay = labelled(b, "replay:");
    assert!(
        replay.starts_with(&format!("(cd {} && ledger-sim conform --exec ", root().display()))
            && replay.ends_with(" --case credit/credited)"),
        "{replay}"
    );
    let (code, again, err) = shell(replay);
    assert_eq!(code, 1, "`{replay}`: {again}{err}");
    assert_eq!(again.matches("FAIL ").count(), 1, "{again}");
    assert!(again.contains(": 1 cases, "), "{again}");
    let b_again = block(&again, "credit/credited");
    for label in ["rules:", "differs:"] {
        assert_eq!(labelled(b_again, label), labelled(b, label));
    }

    // --json carries the same as data, and is the same on every run; its replay runs from the
    // directory conform ran in (the same bytes from any directory), and stderr gives the one
    // that works pasted anywhere.
    let (code, text, err) = sim(&["conform", "--exec", &exec, "--json"]);
    assert_eq!(code, 1, "{text}{err}");
    assert!(err.contains(&format!("ledger-sim: credit/credited, from any directory: {replay}")), "{err}");
    let (_, text_again, _) = sim(&["conform", "--exec", &exec, "--json"]);
    assert_eq!(text, text_again, "the report is deterministic");
    let r = json(&text);
    let f = r["failures"].as_array().unwrap().iter().find(|f| f["case"] == "credit/credited").expect("the case");
    assert_eq!(f["file"], "commands.jsonl");
    assert_eq!(f["line"], line);
    assert_eq!(f["step"], 2);
    assert_eq!(f["rules"], serde_json::json!(["R-CREDIT-1"]));
    assert_eq!(f["sent"]["call"], serde_json::json!({"call": "credit", "payment_id": 2, "paid_sats": 250}));
    assert_eq!(f["expected"]["reply"]["credited_sats"], 25);
    assert_eq!(f["got"]["reply"]["credited_sats"], 125);
    assert_eq!(f["got"]["id"], f["sent"]["id"]);
    assert_eq!(f["differs"], serde_json::json!([{"field": "reply.credited_sats", "expected": 25, "got": 125}]));
    assert_eq!(f["before"][0]["line"], line - 2);
    assert_eq!(f["before"][0]["request"]["type"], "reset");
    assert_eq!(f["before"][1]["request"]["call"]["paid_sats"], 1000);
    let here = replay.strip_prefix(&format!("(cd {} && ", root().display())).and_then(|r| r.strip_suffix(')'));
    assert_eq!(f["replay"].as_str(), here, "{f}");
    assert!(f["detail"].as_str().unwrap().contains("reply.credited_sats: expected 25, got 125"), "{f}");
    assert!(r["failed_rules"]["R-CREDIT-1"].as_u64().unwrap() >= 1, "{r}");
}

#[test]
fn a_wrong_total_or_standing_names_each_field_that_differs() {
    let dir = scratch("conform-fields");
    let vectors = format!("{dir}/vectors");
    let (code, out, err) = sim(&["conform", "--write-vectors", &vectors]);
    assert_eq!(code, 0, "{out}{err}");

    // Every observed pool ending in 0 is shown ending in 1.
    let exec = broken(r#"s/"pool_sats":\([0-9]*\)0,/"pool_sats":\11,/"#);
    let case = "window/record-across-boundary";
    let (code, out, err) = sim(&["conform", "--exec", &exec, "--vectors", &vectors, "--case", case]);
    assert_eq!(code, 1, "{out}{err}");
    let b = block(&out, case);
    assert!(b.starts_with(&format!("FAIL {vectors}/daily-window.jsonl:")), "{b}");
    assert!(b.lines().next().unwrap().ends_with(": after set_tier: the totals observed differ"), "{b}");
    assert_eq!(labelled(b, "rules:"), "R-WINDOW-2, R-WINDOW-1");
    assert!(labelled(b, "then:").ends_with(r#","type":"observe"}"#), "{b}");
    assert!(
        labelled(b, "expected:").contains(r#""type":"observed","pool_sats":10000,"reserved_sats":0,"granted_sats":0"#)
    );
    assert_eq!(labelled(b, "differs:"), "pool_sats: expected 10000, got 10001", "{b}");
    assert!(out.contains(": 1 cases, 1 steps, 1 failed"), "{out}");

    // Each observe shows one identity, whose window opened 1 ms before the vectors' and whose
    // tier is always established. The run's options carry to the replay, and a password in
    // the command is never printed.
    let pubkey = "000000000000000100000000000000000000000000000000000000000000005a";
    let identity = format!(
        r#""identities":[{{"pubkey":"{pubkey}","tier":"established","sats_absorbed_today":0,"absorbed_reset_at_ms":1699999999999}}]"#
    );
    let sed = format!(r#"s/\("type":"observed".*\)}}$/\1,{identity}}}/"#);
    let exec = format!("DATABASE_URL=postgres://u:hunter2@127.0.0.1/none {}", broken(&sed));
    let args = ["conform", "--exec", &exec, "--exec-timeout", "30s", "--vectors", &vectors];
    let (code, out, err) = sim(&[&args[..], &["--case", "set_tier/create", "--case", "decide/free"]].concat());
    assert_eq!(code, 1, "{out}{err}");
    assert!(!out.contains("hunter2") && !err.contains("hunter2"), "{out}{err}");
    let b = block(&out, "set_tier/create");
    assert!(b
        .lines()
        .next()
        .unwrap()
        .ends_with(": after set_tier: the standing of its identity differs (observe's identities)"));
    assert_eq!(
        labelled(b, "expected:"),
        format!(
            r#"{{"pubkey":"{pubkey}","tier":"established","sats_absorbed_today":0,"absorbed_reset_at_ms":1700000000000}}"#
        )
    );
    assert_eq!(labelled(b, "differs:"), "absorbed_reset_at_ms: expected 1700000000000, got 1699999999999", "{b}");
    // Two fields differ in the other case, in the order the answer has them.
    let b = block(&out, "decide/free");
    let differs: Vec<&str> = b.lines().skip_while(|l| !l.starts_with("  differs:")).take(2).map(str::trim).collect();
    assert_eq!(
        differs,
        [
            r#"differs:  tier: expected "elite", got "established""#,
            "absorbed_reset_at_ms: expected 1700000000000, got 1699999999999"
        ],
        "{b}"
    );
    let replay = labelled(b, "replay:");
    let absolute = std::path::absolute(&vectors).unwrap();
    assert!(replay.contains("DATABASE_URL=postgres://u:***@127.0.0.1/none"), "{replay}");
    assert!(
        replay.ends_with(&format!(" --exec-timeout 30s --vectors {} --case decide/free)", absolute.display())),
        "{replay}"
    );
    assert!(!out.contains("--write-vectors DIR"), "the vectors are files already: {out}");
    let r = json(&sim(&[&args[..], &["--case", "decide/free", "--json"]].concat()).1);
    let f = &r["failures"][0];
    assert_eq!(f["path"], format!("{vectors}/commands.jsonl"));
    assert_eq!(f["observe"]["type"], "observe");
    assert_eq!(f["got"]["tier"], "established");
    assert_eq!(
        f["differs"],
        serde_json::json!([
            {"field": "tier", "expected": "elite", "got": "established"},
            {"field": "absorbed_reset_at_ms", "expected": 1700000000000u64, "got": 1699999999999u64},
        ])
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_case_name_no_case_has_is_refused_before_the_implementation_starts() {
    let serve = format!("'{SIM}' serve");
    for (name, says) in [
        ("window/exactly-24", "the nearest: window/exactly-24h"),
        ("exactly-24h", "window/exactly-24h"),
        ("no-such-thing", "of the groups credit, deadline, decide,"),
    ] {
        let (code, out, err) = sim(&["conform", "--exec", &serve, "--case", "decide/free", "--case", name]);
        assert_eq!(code, 2, "{name}: {out}{err}");
        assert!(err.contains(&format!("--case \"{name}\": no case of the vectors (built in) has this name")), "{err}");
        assert!(err.contains(says), "{name}: {err}");
        assert!(!err.contains("starting") && out.is_empty(), "refused before the work: {out}{err}");
    }
    // A name that is there runs that case alone.
    let (code, out, err) = sim(&["conform", "--exec", &serve, "--case", "window/exactly-24h", "--json"]);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(json(&out)["cases"], 1, "{out}");
}

#[test]
fn the_built_in_vectors_are_written_out_and_a_file_that_differs_is_never_replaced() {
    let dir = scratch("write-vectors");
    let vectors = format!("{dir}/a/b");
    let (code, out, err) = sim(&["conform", "--write-vectors", &vectors]);
    assert_eq!(code, 0, "{out}{err}");
    let fixtures = root().join("fixtures/conformance");
    let mut names: Vec<String> =
        std::fs::read_dir(&vectors).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(names.len(), 9, "{names:?}");
    for name in &names {
        assert_eq!(std::fs::read(fixtures.join(name)).unwrap(), std::fs::read(Path::new(&vectors).join(name)).unwrap());
        assert!(out.contains(&format!("wrote {vectors}/{name} (")), "{out}");
    }
    // Again: the same bytes are kept.
    let (code, out, err) = sim(&["conform", "--write-vectors", &vectors]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("kept {vectors}/commands.jsonl (already there, the same bytes)")), "{out}");

    // A file that differs is refused, named, and left as it was; nothing else is written.
    let edited = Path::new(&vectors).join("limits.jsonl");
    std::fs::write(&edited, b"my notes\n").unwrap();
    std::fs::remove_file(Path::new(&vectors).join("random.jsonl")).unwrap();
    let (code, out, err) = sim(&["conform", "--write-vectors", &vectors]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains(&format!("{}", edited.display())) && err.contains("differs from the built-in"), "{err}");
    assert_eq!(std::fs::read(&edited).unwrap(), b"my notes\n");
    assert!(!Path::new(&vectors).join("random.jsonl").exists(), "nothing written");
    // A FIFO of a vector's name is refused, not read (a read would wait for a writer forever).
    std::fs::write(&edited, std::fs::read(fixtures.join("limits.jsonl")).unwrap()).unwrap();
    let fifo = Path::new(&vectors).join("tier-changes.jsonl");
    std::fs::remove_file(&fifo).unwrap();
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let (code, out, err) = sim(&["conform", "--write-vectors", &vectors]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("tier-changes.jsonl is there and is not a regular file"), "{err}");
    std::fs::remove_file(&fifo).unwrap();

    // Onto a file, into a directory that takes no file, and with the options of a run.
    let file = format!("{dir}/a-file");
    std::fs::write(&file, b"x").unwrap();
    for (args, says) in [
        (vec!["conform", "--write-vectors", &file], "not a directory".to_owned()),
        (vec!["conform", "--write-vectors", "/proc/ledger-sim-vectors"], "cannot write into /proc".to_owned()),
        (vec!["conform", "--write-vectors", &vectors, "--exec", "true"], "cannot be used with".to_owned()),
        (vec!["conform", "--write-vectors", &vectors, "--case", "decide/free"], "cannot be used with".to_owned()),
        (vec!["conform", "--write-vectors", &vectors, "--vectors", &vectors], "cannot be used with".to_owned()),
        (vec!["conform"], "--exec <COMMAND>|--write-vectors <DIR>".to_owned()),
    ] {
        let (code, out, err) = sim(&args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains(&says), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The failing case the README shows is what `conform` prints for its command.
#[test]
fn the_readmes_failing_case_is_the_real_output() {
    let readme = std::fs::read_to_string(root().join("README.md")).expect("README.md");
    let start = readme.find("$ ledger-sim conform --exec \"ledger-sim serve | sed").expect("the README's example");
    let end = start + readme[start..].find("\n```").expect("the example's end");
    let (command, shown) = readme[start + 2..end].split_once('\n').expect("a command and its output");
    let (code, out, err) = shell(command);
    assert_eq!(code, 1, "`{command}`: {out}{err}");
    // The replay runs from the directory conform ran in: the README names it so.
    let out = out.replace(&format!("(cd {} && ", root().display()), "(cd /path/to/checkout && ");
    assert_eq!(out.trim_end(), shown, "the README's example of `conform` is stale");
}

/// `conform --junit FILE`: one test case per case of the vectors, a failing case failed with
/// what differed and its replay command, a case another `--case` left out skipped; a path that
/// is a directory or one of the vectors read is refused before the implementation starts, and
/// nothing is written then.
#[test]
fn conform_writes_junit_one_case_per_vector_case() {
    let dir = scratch("conform-junit");
    let junit = format!("{dir}/out/junit.xml");
    let exec = broken(CREDIT_BUG);
    let (code, out, err) = sim(&["conform", "--exec", &exec, "--junit", &junit]);
    assert_eq!(code, 1, "{out}{err}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    let cases = json(&sim(&["conform", "--exec", &exec, "--json"]).1)["cases"].as_u64().unwrap();
    assert!(xml.contains(&format!("tests=\"{cases}\" failures=\"")), "{xml}");
    assert!(xml.contains(r#"<testsuite name="ledger-sim conform: exec-reference, built-in vectors, "#), "{xml}");
    assert!(xml.contains(r#"name="commands.jsonl credit/credited">"#), "{xml}");
    assert!(xml.contains(r#"type="R-CREDIT-1""#) && xml.contains("credit: the reply differs"), "{xml}");
    // Its replay runs from the directory conform ran in, and says so, as run's JUnit does.
    assert!(xml.contains("  replay (from the directory the run started in): ledger-sim conform --exec "), "{xml}");
    // (The binary's own path, in the `--exec` command, may lie under the checkout when the
    // target directory does: only a path that is not part of that command counts.)
    let without_exec = xml.replace(SIM, "");
    assert!(!xml.contains("(cd ") && !without_exec.contains(&root().display().to_string()), "{xml}");
    assert!(xml.contains(r#"skipped="0""#), "{xml}");
    // Only one case asked: every other is skipped, and this one passes.
    let serve = format!("'{SIM}' serve");
    let (code, out, err) = sim(&["conform", "--exec", &serve, "--case", "window/exactly-24h", "--junit", &junit]);
    assert_eq!(code, 0, "{out}{err}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(&format!(r#"tests="{cases}" failures="0" errors="0" skipped="{}""#, cases - 1)), "{xml}");
    assert!(xml.contains(r#" window/exactly-24h"/>"#), "the case asked passes: {xml}");
    assert!(xml.contains(r#"<skipped message="not run: --case asked for other cases"/>"#), "{xml}");
    // A directory, or one of the vectors read: refused before the implementation starts.
    let vectors = format!("{dir}/vectors");
    assert_eq!(sim(&["conform", "--write-vectors", &vectors]).0, 0);
    let input = format!("{vectors}/commands.jsonl");
    let before = std::fs::read(&input).unwrap();
    for (path, says) in [(dir.as_str(), "a directory"), (input.as_str(), "the same file as the input")] {
        let (code, out, err) = sim(&["conform", "--exec", &serve, "--vectors", &vectors, "--junit", path]);
        assert_eq!(code, 2, "{path}: {out}{err}");
        assert!(err.contains(&format!("--junit {path}: {says}")), "{err}");
        assert!(!err.contains("starting") && out.is_empty(), "refused before the work: {out}{err}");
    }
    assert_eq!(std::fs::read(&input).unwrap(), before);
}

/// `ledger-sim serve` behind a shell loop that answers every `credited` outcome with `then`
/// (a shell command that exits, hangs or prints a line): its command line.
fn failing_on_credits(dir: &str, name: &str, then: &str) -> String {
    let script = format!("{dir}/{name}.sh");
    let text = [
        format!("'{SIM}' serve | while IFS= read -r line; do"),
        r#"  case "$line" in"#.to_owned(),
        format!(r#"    *'"outcome":"credited"'*) {then} ;;"#),
        r#"    *) printf '%s\n' "$line" ;;"#.to_owned(),
        "  esac".to_owned(),
        "done\n".to_owned(),
    ]
    .join("\n");
    std::fs::write(&script, text).unwrap();
    format!("sh {script}")
}

/// An implementation that crashes, hangs or writes a line that is not a protocol 1 answer in
/// a case fails that case (exit 1, never the tool's exit 2): named, with its rules, the request
/// it was answering, what it did (the line it wrote, quoted) and the command that replays the
/// case; the next case runs on a new child, the summary counts it, and `--json` and `--junit`
/// carry it beside every other case.
#[test]
fn a_crash_a_hang_or_a_bad_line_fails_its_case_and_the_next_runs_on_a_new_child() {
    let dir = scratch("conform-broke");
    let junit = format!("{dir}/junit.xml");
    let negative =
        broken(r#"s/"outcome":"credited","credited_sats":[1-9][0-9]*/"outcome":"credited","credited_sats":-5/"#);
    for (kind, exec, how) in [
        ("crash", failing_on_credits(&dir, "exit", "kill 0"), "closed its output (it exited: "),
        (
            "no_answer",
            failing_on_credits(&dir, "hang", "sleep 30"),
            "did not answer credit within 1 s (--exec-timeout)",
        ),
        (
            "bad_answer",
            failing_on_credits(&dir, "garbage", "echo 'Traceback (most recent call last): KeyError'"),
            "answered credit with a line that is not a response of protocol 1 (expected value at line 1 column 1): \
             Traceback (most recent call last): KeyError",
        ),
        ("bad_answer", negative, "reply.credited_sats is -5: a negative amount, evidence that I1 broke"),
    ] {
        let args = ["conform", "--exec", &exec, "--exec-timeout", "1", "--case", "credit/credited"];
        let args = [&args[..], &["--case", "window/exactly-24h"]].concat();
        let (code, out, err) = sim(&[&args[..], &["--json", "--junit", &junit]].concat());
        assert_eq!(code, 1, "{kind}: a failed case, not an error: {out}{err}");
        assert!(!err.contains("error:"), "{kind}: {err}");
        let r = json(&out);
        assert_eq!((r["cases"].as_u64(), r["failed"].as_u64()), (Some(2), Some(1)), "{kind}: {out}");
        let f = &r["failures"][0];
        assert_eq!(f["case"], "credit/credited", "{kind}: {f}");
        assert_eq!(f["rules"], serde_json::json!(["R-CREDIT-1"]), "{kind}: {f}");
        assert_eq!(f["sent"]["call"]["call"], "credit", "{kind}: {f}");
        assert_eq!(f["expected"]["reply"]["outcome"], "credited", "{kind}: {f}");
        assert_eq!(f["got"], serde_json::Value::Null, "{kind}: {f}");
        assert_eq!(f["implementation_failed"]["kind"], kind, "{kind}: {f}");
        assert!(f["detail"].as_str().unwrap().contains(how), "{kind}: {f}");
        assert!(f["replay"].as_str().unwrap().contains(" --case credit/credited"), "{kind}: {f}");
        let xml = std::fs::read_to_string(&junit).unwrap();
        assert!(xml.contains(r#" failures="1" errors="0""#), "{kind}: {xml}");
        assert!(xml.contains(r#"type="R-CREDIT-1""#) && xml.contains(how), "{kind}: {xml}");
        assert!(xml.contains(r#" window/exactly-24h"/>"#), "{kind}: the next case passes on a new child: {xml}");
    }
    // The text names the case, the request and what the implementation did, and replays it.
    let exec = failing_on_credits(&dir, "exit", "kill 0");
    let (code, out, err) = sim(&["conform", "--exec", &exec, "--case", "credit/credited", "--case", "decide/free"]);
    assert_eq!(code, 1, "{out}{err}");
    let b = block(&out, "credit/credited");
    assert!(b.lines().next().unwrap().ends_with(": credit: the implementation exited before answering (crash)"), "{b}");
    assert_eq!(labelled(b, "rules:"), "R-CREDIT-1", "{b}");
    assert!(labelled(b, "sent:").contains(r#""call":{"call":"credit""#), "{b}");
    assert!(labelled(b, "got:").starts_with("(crash) closed its output (it exited: "), "{b}");
    assert!(out.contains(": 2 cases, ") && out.contains(" 1 failed\n"), "{out}");
    let (code, again, err) = shell(labelled(b, "replay:"));
    assert_eq!(code, 1, "{again}{err}");
    assert!(again.contains(": credit: the implementation exited before answering (crash)"), "{again}");
}

/// An implementation that fails a case and then cannot be started again: that case fails, the
/// cases after it are not run, and each is a failed JUnit case saying why (exit 1, with the
/// report, never the tool's exit 2).
#[test]
fn a_child_that_cannot_be_started_again_leaves_the_cases_after_it_failed_not_run() {
    let dir = scratch("conform-once");
    let exits = failing_on_credits(&dir, "exit", "kill 0");
    let marker = format!("{dir}/started");
    let script = format!("{dir}/once.sh");
    std::fs::write(
        &script,
        format!("if [ -e '{marker}' ]; then echo 'cannot start twice' >&2; exit 3; fi\ntouch '{marker}'\n{exits}\n"),
    )
    .unwrap();
    let junit = format!("{dir}/junit.xml");
    let exec = format!("sh {script}");
    let args = ["conform", "--exec", &exec, "--case", "credit/credited", "--case", "window/exactly-24h"];
    let (code, out, err) = sim(&[&args[..], &["--junit", &junit]].concat());
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(": 1 cases, 1 steps, 1 failed, 1 not run\n"), "{out}");
    assert!(out.contains("1 case(s) not run: `sh ") && out.contains("exit status: 3"), "{out}");
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"failures="2""#) && xml.contains(r#"type="not_run""#), "{xml}");
    assert!(
        xml.contains("not run: `sh ") && xml.contains("it was started again because it failed in case credit/credited"),
        "{xml}"
    );
}

/// `conform --junit` and `--json` hold the same bytes from any directory, as `run`'s do: the
/// replay and the vectors' paths are relative to the directory conform ran in (the text report
/// gives a replay that works pasted anywhere).
#[test]
fn conform_junit_and_json_are_the_same_bytes_from_any_directory() {
    let exec = broken(CREDIT_BUG);
    let mut reports = Vec::new();
    for name in ["conform-anywhere-a", "conform-anywhere-b"] {
        let dir = scratch(name);
        assert_eq!(sim_in(Path::new(&dir), &["conform", "--write-vectors", "v"]).0, 0);
        let args = ["conform", "--exec", &exec, "--vectors", "v", "--case", "credit/credited"];
        let (code, out, err) = sim_in(Path::new(&dir), &[&args[..], &["--json", "--junit", "j.xml"]].concat());
        assert_eq!(code, 1, "{out}{err}");
        let xml = std::fs::read_to_string(Path::new(&dir).join("j.xml")).unwrap();
        assert!(!xml.contains(&dir) && !out.contains(&dir), "{xml}{out}");
        assert!(err.contains(&format!("from any directory: (cd {dir} && ledger-sim conform ")), "{err}");
        reports.push((out, xml));
    }
    assert_eq!(reports[0].0, reports[1].0, "the JSON report depends on the directory");
    assert_eq!(reports[0].1, reports[1].1, "the JUnit file depends on the directory");
    let replay = json(&reports[0].0)["failures"][0]["replay"].as_str().unwrap().to_owned();
    assert!(
        replay.starts_with("ledger-sim conform --exec ") && replay.ends_with(" --vectors v --case credit/credited"),
        "{replay}"
    );
    let xml = &reports[0].1;
    let line = xml.lines().find(|l| l.contains("replay (from the directory the run started in): ")).expect("a replay");
    assert!(line.ends_with(" --vectors v --case credit/credited"), "{xml}");
}
