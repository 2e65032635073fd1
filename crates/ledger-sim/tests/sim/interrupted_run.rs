//! A signal to a `run` (a CI job's timeout, a Ctrl-C) stops it after the seeds in flight: it
//! reports the seeds it finished, a range from the first that is exactly what a run of that
//! range reports, and ends with status 128 + the signal's number. A second signal ends it at
//! once (an `--exec` child stopped first). In memory, on PostgreSQL and with an `--exec` child.
//! Every wait here is bounded.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::{json, root, scratch, sim_in, Ended, Running, SIM};

/// The signals `pid` has a handler for, from `/proc/PID/status` (`SigCgt`), and those pending
/// for it (`SigPnd` and `ShdPnd`): bit `n - 1` for signal `n`.
fn signal_masks(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let mask = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            .unwrap_or(0)
    };
    (mask("SigCgt:"), mask("SigPnd:") | mask("ShdPnd:"))
}

/// Waits, at most 30 s, until `pid` has a handler for signal `number`: a signal sent before
/// that would end it by the default action, before it could report anything.
fn wait_for_handler(pid: u32, number: u32) {
    let started = Instant::now();
    while signal_masks(pid).0 & (1 << (number - 1)) == 0 {
        assert!(started.elapsed() < Duration::from_secs(30), "ledger-sim never took signal {number} within 30 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The CPU time `pid` has used so far (user and system, all its threads), from
/// `/proc/PID/stat`.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "pid (comm) state ppid ...": comm may hold anything, so read after its last ')'; utime
    // and stime are the 14th and 15th fields, in clock ticks.
    let fields: Vec<u64> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect())
        .unwrap_or_default();
    let tick = Command::new("getconf").arg("CLK_TCK").output().expect("getconf runs");
    let per_second: f64 = String::from_utf8_lossy(&tick.stdout).trim().parse().expect("CLK_TCK is a number");
    fields.iter().sum::<u64>() as f64 / per_second
}

/// Waits, at most 60 s, until `pid` has worked for `seconds` of CPU time: the seeds are
/// running by then, however loaded the machine (a wait on the clock would not say so).
fn wait_for_work(pid: u32, seconds: f64) {
    let started = Instant::now();
    while cpu_seconds(pid) < seconds {
        assert!(started.elapsed() < Duration::from_secs(60), "ledger-sim did not work {seconds} s within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn send(signal: &str, pid: u32) {
    assert!(Command::new("kill").args(["-s", signal, &pid.to_string()]).status().unwrap().success());
}

/// Starts `ledger-sim ARGS` (a `--json` run of seeds `0..asked`), sends it SIG`signal` (number
/// `number`) once it has used `work` seconds of CPU, and checks what any run a signal stopped
/// says: exit 128 + `number`, `interrupted_by`, the seeds it finished as a range `0..end` with
/// `0 < end < asked`, and the stderr line naming the rest. Its end, its report and `end`.
fn interrupted(args: &[&str], asked: u64, work: f64, signal: &str, number: u32) -> (Ended, serde_json::Value, u64) {
    let mut cmd = Command::new(SIM);
    cmd.args(args).current_dir(root()).env_remove("DATABASE_URL");
    let started = Instant::now();
    let run = Running::spawn(&mut cmd);
    wait_for_handler(run.id(), number);
    wait_for_work(run.id(), work);
    send(signal, run.id());
    let ended = run.wait(started, Duration::from_secs(120), "the interrupted run did not end within 120 s");
    assert_eq!(ended.code, 128 + number as i32, "SIG{signal}: {}", ended.stderr);
    let report = json(&ended.stdout);
    assert_eq!(report["interrupted_by"], format!("SIG{signal}"), "{}", ended.stderr);
    let seeds = report["seeds"].as_str().unwrap();
    let end: u64 = seeds.strip_prefix("0..").and_then(|n| n.parse().ok()).expect(seeds);
    assert!(end > 0 && end < asked, "{seeds}");
    let said = format!(
        "stopped by SIG{signal}: the report covers seeds 0..{end} of 0..{asked} (`--seeds {end}..{asked}` runs the rest)"
    );
    assert!(ended.stderr.contains(&said), "{}", ended.stderr);
    (ended, report, end)
}

#[test]
fn a_signal_stops_an_in_memory_run_which_reports_the_seeds_it_finished() {
    let scenario = root().join("fixtures/scenarios/ci-small.toml").display().to_string();
    for (signal, number) in [("INT", 2), ("TERM", 15)] {
        let junit = format!("{}/junit.xml", scratch(&format!("interrupted-{signal}")));
        let args = ["run", "--seeds", "0..100000000", "--scenario", &scenario, "--json", "--junit", &junit];
        // Some seeds run first (a seed here takes well under a millisecond of CPU).
        let (_, report, end) = interrupted(&args, 100_000_000, 0.3, signal, number);
        let seeds = report["seeds"].as_str().unwrap();
        let verdict = std::fs::read_to_string(&junit).expect("--junit is written for the seeds run");
        assert!(verdict.contains(&format!("0..{end}")), "{verdict}");
        // The seeds it finished are reported as a run of just those would report them.
        let (code, whole, err) = sim_in(&root(), &["run", "--seeds", seeds, "--scenario", &scenario, "--json"]);
        assert_eq!(code, 0, "{err}");
        let mut whole = json(&whole);
        let mut report = report.clone();
        for key in ["steps_per_sec", "interrupted_by"] {
            report.as_object_mut().unwrap().remove(key);
            whole.as_object_mut().unwrap().remove(key);
        }
        assert_eq!(report, whole, "the report of 0..{end} differs from a run of 0..{end}");
    }
}

/// A signal that stops the seeds does not cut their counterexamples' shrinking short (one that
/// comes once every seed has run does: `shrink_until` in `ledger-simulator`): they are
/// shrunk and written exactly as a run of the same range shrinks and writes them.
#[test]
fn counterexamples_of_the_seeds_a_signal_stopped_are_shrunk_as_usual() {
    let dir = scratch("interrupted-shrunk");
    let args = ["run", "--engine", "seed", "--seeds", "0..100000000", "--trace-dir", &dir, "--json"];
    // A seed of the default scenario takes about 0.2 s of CPU, and every one breaks I2-I6.
    let (_, mut report, _) = interrupted(&args, 100_000_000, 1.0, "TERM", 15);
    let seeds = report["seeds"].as_str().unwrap().to_owned();
    let violations = report["violations"].as_array().expect("violations");
    assert!(violations.len() >= 5, "the seed model breaks I2-I6: {violations:?}");
    for v in violations {
        assert_eq!(v["reduction"], "shrunk", "{v}");
    }
    let again = scratch("interrupted-shrunk-again");
    let (code, whole, err) =
        sim_in(&root(), &["run", "--engine", "seed", "--seeds", &seeds, "--trace-dir", &again, "--json"]);
    assert_eq!(code, 1, "{err}");
    let mut whole = json(&whole);
    for r in [&mut report, &mut whole] {
        r.as_object_mut().unwrap().remove("steps_per_sec");
        r.as_object_mut().unwrap().remove("interrupted_by");
        for v in r["violations"].as_array_mut().unwrap() {
            v.as_object_mut().unwrap().remove("trace");
            v.as_object_mut().unwrap().remove("replay");
        }
    }
    assert_eq!(report, whole, "the counterexamples of {seeds} differ from a run of {seeds}");
}

#[test]
fn a_second_signal_ends_the_run_at_once() {
    // The seed engine's counterexamples (every seed of the default scenario breaks an
    // invariant), shrunk with a large budget of replays: seconds of work after the first
    // signal, which the second cuts short.
    let mut cmd = Command::new(SIM);
    let dir = scratch("interrupted-twice");
    cmd.args(["run", "--engine", "seed", "--seeds", "0..100000000", "--max-replays", "100000", "--trace-dir", &dir])
        .current_dir(root())
        .env_remove("DATABASE_URL");
    let started = Instant::now();
    let run = Running::spawn(&mut cmd);
    wait_for_handler(run.id(), 2);
    // A seed takes about 0.2 s of CPU here: by 1 s, seeds have finished, and their
    // counterexamples await shrinking once the first signal stops the run.
    wait_for_work(run.id(), 1.0);
    send("INT", run.id());
    // The second once the first has been taken (it is no longer pending): two pending
    // SIGINTs would be delivered as one.
    wait_until_taken(run.id(), 2);
    send("INT", run.id());
    let ended = run.wait(started, Duration::from_secs(60), "a second SIGINT did not end the run within 60 s");
    assert_eq!(ended.code, -1, "the second SIGINT should end the run by the signal: {}", ended.stderr);
    assert!(ended.stdout.is_empty(), "nothing is reported after a second signal: {}", ended.stdout);
}

/// Waits, at most 60 s, until `pid` has taken a pending `signal` (bit `number - 1` of its
/// pending set is clear again).
fn wait_until_taken(pid: u32, number: u32) {
    let started = Instant::now();
    while signal_masks(pid).1 & (1 << (number - 1)) != 0 {
        assert!(started.elapsed() < Duration::from_secs(60), "signal {number} was never taken");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Runs `args` (a run of seeds `0..100000` on a Postgres or `--exec` engine, `--json`), sends
/// it SIG`signal` once it has worked, and checks the report: the seeds it finished, from the
/// first, their trace hash and steps those of the in-memory reference engine on the same
/// seeds (a lockstep run is held step for step equal to it), the stderr line naming the rest,
/// exit 128 + `number`. Returns the run's stderr.
fn stopped_by_signal_reports_what_it_ran(args: &[&str], signal: &str, number: u32) -> String {
    let args = [args, &["--users", "50", "--steps", "500", "--seeds", "0..100000", "--json"]].concat();
    // The run's own CPU time (a server's or a child's is not counted): seeds have run by then,
    // a 500-step seed taking a few milliseconds of it.
    let (ended, report, end) = interrupted(&args, 100_000, 0.3, signal, number);
    let seeds = report["seeds"].as_str().unwrap();
    let (code, whole, err) = sim_in(&root(), &["run", "--users", "50", "--steps", "500", "--seeds", seeds, "--json"]);
    assert_eq!(code, 0, "{err}");
    let whole = json(&whole);
    for key in ["trace_hash", "steps", "requests"] {
        assert_eq!(report[key], whole[key], "{key} of seeds 0..{end}: {args:?} against the in-memory reference");
    }
    ended.stderr
}

#[test]
fn a_signal_stops_a_postgres_run_which_reports_the_seeds_it_finished() {
    // On the run's own throwaway cluster, which it stops and removes as usual.
    let stderr = stopped_by_signal_reports_what_it_ran(&["run", "--engine", "pg-reference"], "TERM", 15);
    assert!(
        stderr.contains("SIGTERM: stopping: no seed starts now, and the run reports what it has done"),
        "the signal should be said when it comes: {stderr}"
    );
    let cluster = stderr
        .lines()
        .find_map(|l| l.strip_prefix("ledger-pg: starting a throwaway PostgreSQL in "))
        .and_then(|rest| rest.split(" (").next())
        .unwrap_or_else(|| panic!("the run should say where its cluster is: {stderr}"));
    assert!(!std::path::Path::new(cluster).exists(), "the run left its cluster {cluster} behind");
}

#[test]
fn a_signal_stops_an_exec_run_which_reports_the_seeds_it_finished() {
    let exec = format!("'{SIM}' serve");
    let stderr = stopped_by_signal_reports_what_it_ran(&["run", "--engine", "exec", "--exec", &exec], "INT", 2);
    assert!(
        stderr.contains("SIGINT: the run stops after the seed in flight and reports the seeds it ran"),
        "the first signal should be said: {stderr}"
    );
}

#[test]
fn a_second_signal_stops_an_exec_run_and_its_child_at_once() {
    // One seed of 200,000 steps takes the child seconds: the second signal comes while it runs.
    let dir = scratch("interrupted-exec-twice");
    let pid_file = format!("{dir}/child.pid");
    let _ = std::fs::remove_file(&pid_file);
    let exec = format!("echo $$ > '{pid_file}'; exec '{SIM}' serve");
    // Stderr goes to a file, read while the run runs: the second signal is sent once the
    // first has been said, which is when the run's signal thread has taken it. Sent as soon
    // as the kernel had delivered the first, the two could reach that thread as one (it reads
    // which signals came, not how many times).
    let (out_path, err_path) = (format!("{dir}/stdout"), format!("{dir}/stderr"));
    let mut run = Command::new(SIM)
        .args(["run", "--engine", "exec", "--exec", &exec, "--steps", "200000", "--seeds", "0..100000", "--json"])
        .current_dir(root())
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let pid = run.id();
    let started = Instant::now();
    let said = |what: &str| std::fs::read_to_string(&err_path).unwrap_or_default().contains(what);
    let end = |run: &mut std::process::Child| {
        let _ = run.kill();
        let _ = run.wait();
    };
    wait_for_handler(pid, 2);
    wait_for_work(pid, 0.3);
    let child: u32 = std::fs::read_to_string(&pid_file).expect("the child wrote its pid").trim().parse().unwrap();
    send("INT", pid);
    let soft = "SIGINT: the run stops after the seed in flight";
    while !said(soft) {
        if started.elapsed() > Duration::from_secs(60) {
            end(&mut run);
            panic!("the first SIGINT was not said within 60 s: {}", std::fs::read_to_string(&err_path).unwrap());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    send("INT", pid);
    let status = loop {
        if let Some(status) = run.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(120) {
            end(&mut run);
            panic!("a second SIGINT did not end the run: {}", std::fs::read_to_string(&err_path).unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(status.code(), None, "the second SIGINT should end the run by the signal ({status}): {stderr}");
    let stdout = std::fs::read_to_string(&out_path).unwrap();
    assert!(stdout.is_empty(), "nothing is reported after a second signal: {stdout}");
    assert!(
        stderr.contains(&format!("SIGINT: stopped `{exec}` (SIGKILL to its process group {child})")),
        "the run should say it stopped the child: {stderr}"
    );
    let stopped = Instant::now();
    while std::path::Path::new(&format!("/proc/{child}")).exists()
        && !std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default().contains(") Z ")
    {
        assert!(stopped.elapsed() < Duration::from_secs(5), "the child {child} outlived the run by 5 s");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The processes whose command line holds `text`, from `/proc` (a zombie included).
fn processes_naming(text: &str) -> Vec<u32> {
    let mut found: Vec<u32> = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            String::from_utf8_lossy(&cmdline).replace('\0', " ").contains(text).then_some(pid)
        })
        .collect();
    found.sort_unstable();
    found
}

/// Whether process `pid` is alive: there, and not a zombie.
fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z" | "X"))
}

/// A signal that comes while `initdb` makes a Postgres run's throwaway cluster stops the run
/// there: `initdb` is killed, no server is started, the cluster's directory is removed, and the
/// run reports no seed and exits as any run a signal stopped does (128 + its number). Before,
/// `initdb` ran to its end and the server was started, to be stopped again a moment later.
#[test]
fn a_signal_while_initdb_runs_starts_no_server_and_leaves_no_directory() {
    // The run's temporary directory is one of this test's own: its cluster is made there, and
    // nothing else is.
    let tmp = scratch("interrupted-initdb");
    let mut cmd = Command::new(SIM);
    cmd.args(["run", "--engine", "pg-reference", "--users", "50", "--steps", "500", "--seeds", "0..100000", "--json"])
        .current_dir(root())
        .env_remove("DATABASE_URL")
        .env("TMPDIR", &tmp);
    let started = Instant::now();
    let run = Running::spawn(&mut cmd);
    wait_for_handler(run.id(), 15);
    // `initdb` (and `runuser` above it, when the tests run as root) names the data directory
    // it makes under `tmp`.
    let initdb = loop {
        let found: Vec<u32> = processes_naming(&format!("{tmp}/ledger-pg-"))
            .into_iter()
            .filter(|&pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                String::from_utf8_lossy(&cmdline).contains("initdb") && alive(pid)
            })
            .collect();
        if !found.is_empty() {
            break found;
        }
        assert!(started.elapsed() < Duration::from_secs(120), "the run never ran initdb in {tmp} within 120 s");
        std::thread::sleep(Duration::from_millis(5));
    };
    send("TERM", run.id());
    let ended = run.wait(started, Duration::from_secs(120), "a run stopped during initdb did not end within 120 s");
    assert_eq!(ended.code, 128 + 15, "SIGTERM: {}", ended.stderr);
    assert!(
        !ended.stderr.contains("starting a throwaway PostgreSQL"),
        "no server is started after the signal: {}",
        ended.stderr
    );
    let report = json(&ended.stdout);
    assert_eq!(report["interrupted_by"], "SIGTERM", "{}", ended.stderr);
    assert_eq!(report["seeds"], "0..0", "{}", ended.stderr);
    let said = "stopped by SIGTERM: the report covers seeds 0..0 of 0..100000 (`--seeds 0..100000` runs the rest)";
    assert!(ended.stderr.contains(said), "{}", ended.stderr);
    // Nothing of the cluster outlives the run: initdb is killed, no process names its
    // directory (a server), and the directory is gone.
    let ended_at = Instant::now();
    while initdb.iter().any(|&pid| alive(pid)) || !processes_naming(&format!("{tmp}/ledger-pg-")).is_empty() {
        assert!(
            ended_at.elapsed() < Duration::from_secs(10),
            "initdb {initdb:?} or a server of the cluster outlived the run by 10 s: {:?}",
            processes_naming(&format!("{tmp}/ledger-pg-"))
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let left: Vec<String> = std::fs::read_dir(&tmp)
        .expect("the run's temporary directory")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with("ledger-pg-"))
        .collect();
    assert!(left.is_empty(), "the run left {left:?} in {tmp}: {}", ended.stderr);
}
