//! How a run with an `--exec` child ends when it is told to stop, and when the child will not
//! exit: a signal to the run (SIGTERM, SIGHUP, a terminal's SIGINT) stops the child's whole
//! process group, which the signal itself never reaches; a child that ignores the end of its
//! input is waited for a bounded time, said on stderr, then killed. Every wait here is bounded.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::common::{root, scratch, SIM};

/// Processes of process group `group` that are not zombies.
fn members(group: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid pgrp ...": comm may hold anything, so read after its last ')'.
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        if fields.len() > 2 && fields[0] != "Z" && fields[2] == group.to_string() {
            found.push(pid);
        }
    }
    found
}

/// Kills a process group on drop, so that a failed test leaves nothing running.
struct Group(Option<u32>);

impl Drop for Group {
    fn drop(&mut self) {
        if let Some(group) = self.0 {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{group}")]).status();
        }
    }
}

/// Waits at most `bound` for `child` to exit; kills it past that.
fn wait_at_most(child: &mut Child, bound: Duration) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > bound {
            let _ = child.kill();
            let _ = child.wait();
            panic!("ledger-sim did not end within {bound:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `ledger-sim ARGS` with `--exec` a child that ignores its input and never answers,
/// waits until the child runs, sends the run `signal` (by name, e.g. `TERM`, number
/// `number`), and checks that the run ended by it within 10 s, said what it stopped, and left
/// nothing of the child's process group running after 5 s.
fn a_signal_stops_the_child(signal: &str, number: i32, args: &[&str]) {
    let dir = scratch(&format!("signal-{signal}-{}", args[0]));
    let pid_file = format!("{dir}/child.pid");
    let _ = std::fs::remove_file(&pid_file);
    // `$$` is the shell the harness started: the leader of the child's process group. It
    // starts `sleep` and waits, so the group holds two processes.
    let exec = format!("echo $$ > '{pid_file}'; sleep 1000");
    let mut run = Command::new(SIM)
        .args(args)
        .args(["--exec", &exec])
        .current_dir(root())
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let group = loop {
        if let Some(group) = std::fs::read_to_string(&pid_file).ok().and_then(|s| s.trim().parse::<u32>().ok()) {
            break group;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = run.kill();
            let _ = run.wait();
            panic!("the child never started within 20 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _cleanup = Group(Some(group));
    // The shell has started `sleep` once the group holds two processes.
    while members(group).len() < 2 && started.elapsed() < Duration::from_secs(20) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(members(group).len() >= 2, "the child's shell never started sleep");
    let sent = Command::new("kill").args(["-s", signal, &run.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = wait_at_most(&mut run, Duration::from_secs(10));
    let mut stderr = String::new();
    run.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    assert_eq!(status.signal(), Some(number), "the run should end by SIG{signal} ({status}): {stderr}");
    assert!(
        stderr.contains(&format!("SIG{signal}: stopped `{exec}` (SIGKILL to its process group {group})")),
        "the run should say what it stopped: {stderr}"
    );
    let stopped = Instant::now();
    while !members(group).is_empty() {
        assert!(
            stopped.elapsed() < Duration::from_secs(5),
            "processes {:?} of the child's group {group} outlived the run by 5 s",
            members(group)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sigterm_to_a_lockstep_run_stops_its_child() {
    a_signal_stops_the_child("TERM", 15, &["run", "--engine", "exec", "--seeds", "0..3"]);
}

#[test]
fn sighup_to_a_lockstep_run_stops_its_child() {
    a_signal_stops_the_child("HUP", 1, &["run", "--engine", "exec", "--seeds", "0..3"]);
}

#[test]
fn sigint_to_a_concurrent_run_stops_its_child() {
    a_signal_stops_the_child("INT", 2, &["run", "--engine", "exec", "--concurrency", "4", "--seeds", "0..3"]);
}

#[test]
fn sigterm_to_conform_stops_its_child() {
    a_signal_stops_the_child("TERM", 15, &["conform"]);
}

#[test]
fn a_child_that_ignores_the_end_of_its_input_is_waited_for_out_loud_then_killed() {
    let run = |exec: &str| {
        let started = Instant::now();
        let out = Command::new(SIM)
            .args(["run", "--engine", "exec", "--exec", exec, "--seeds", "0..1", "--users", "5", "--steps", "20"])
            .current_dir(root())
            .env_remove("DATABASE_URL")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        (stderr, started.elapsed())
    };
    // The reference served, then a shell that waits on: the run is over, the child is not.
    let exec = format!("'{SIM}' serve; sleep 1000");
    let (stderr, took) = run(&exec);
    assert!(took < Duration::from_secs(30), "the run took {took:?}");
    assert!(
        stderr.contains(&format!("waiting up to 2 s for `{exec}` to exit after the end of its input")),
        "the wait should be said: {stderr}"
    );
    assert!(
        stderr
            .contains(&format!("`{exec}` did not exit within 2 s of the end of its input: killing its process group")),
        "the kill should be said: {stderr}"
    );
    // A child that exits at the end of its input is not waited for out loud.
    let (stderr, _) = run(&format!("'{SIM}' serve"));
    assert!(!stderr.contains("waiting up to"), "{stderr}");
}
