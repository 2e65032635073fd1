//! A reader of the output that has gone (`ledger-sim ... 2>&1 | head -3`): nothing panics, and
//! the files asked for are written whole all the same. Before, the first line said on stderr
//! after the pipe closed panicked (exit 101) and the `--report` of a solve was never written.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{root, scratch, SIM};

/// Runs `ledger-sim args` in `dir` with stdout and stderr on pipes whose reading ends are closed
/// at once: its exit code. Killed, and the test failed, after 120 s.
fn with_reader_gone(dir: &Path, args: &[&str]) -> Option<i32> {
    let mut child = Command::new(SIM)
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > Duration::from_secs(120) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ledger-sim {} did not end within 120 s with its reader gone", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_solve_whose_reader_has_gone_still_writes_its_report() {
    let dir = scratch("gone-reader-solve");
    let scenario = root().join("fixtures/scenarios/plan-tipping.toml");
    let report = Path::new(&dir).join("solve.html");
    let args = [
        "plan",
        scenario.to_str().unwrap(),
        "--target",
        "p_dry(day=7) <= 0.2",
        "--solve",
        "credit_pct=0..100",
        "--report",
        report.to_str().unwrap(),
    ];
    let code = with_reader_gone(dir.as_ref(), &args);
    // 141: the shell's code for a process a broken pipe stopped, as `main` gives it.
    assert_eq!(code, Some(141), "the solve's output met a closed pipe");
    let page = std::fs::read_to_string(&report).expect("the report is written");
    assert!(page.trim_end().ends_with("</html>"), "the report is written whole");
    assert!(page.contains("credit_pct between"), "the report holds the answer");
}

#[test]
fn a_run_whose_reader_has_gone_neither_panics_nor_loses_its_junit() {
    let dir = scratch("gone-reader-run");
    let junit = Path::new(&dir).join("run.xml");
    let args = ["run", "--seeds", "0..3", "--steps", "2000", "--users", "50", "--junit", junit.to_str().unwrap()];
    let code = with_reader_gone(dir.as_ref(), &args);
    assert_eq!(code, Some(141), "the run's output met a closed pipe");
    let xml = std::fs::read_to_string(&junit).expect("the junit report is written");
    assert!(xml.trim_end().ends_with("</testsuites>"), "{xml}");
}
