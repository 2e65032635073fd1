//! Every subcommand fed random argument vectors and random files, as a hostile user would:
//! the exit status is always 0, 1 or 2, nothing panics or aborts, and no output file is left
//! half written.

use std::process::Command;

use proptest::prelude::*;

fn tmp(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ledger-sim-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Values a user might type where a value goes: numbers at and beyond every edge, ranges,
/// durations, words, paths that are missing, directories, devices or garbage.
fn value() -> impl Strategy<Value = String> {
    let garbage = tmp("garbage.bin").display().to_string();
    let dir = tmp("").display().to_string();
    prop_oneof![
        Just("0".to_owned()),
        Just("1".to_owned()),
        Just("-1".to_owned()),
        Just("18446744073709551615".to_owned()),
        Just("99999999999999999999999".to_owned()),
        Just("3.5".to_owned()),
        Just("NaN".to_owned()),
        Just("0..3".to_owned()),
        Just("5..3".to_owned()),
        Just("1/2".to_owned()),
        Just("0/0".to_owned()),
        Just("2s".to_owned()),
        Just("credit_pct=10,20".to_owned()),
        Just("budget.platinum=5".to_owned()),
        Just("reference".to_owned()),
        Just("seed".to_owned()),
        Just("".to_owned()),
        Just("/dev/full".to_owned()),
        Just("/nonexistent/x".to_owned()),
        Just(dir),
        Just(garbage),
        "[a-z0-9._/-]{0,12}",
    ]
}

fn flag() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "--seed",
        "--seeds",
        "--users",
        "--steps",
        "--scenario",
        "--scheduler",
        "--json",
        "--fail-fast",
        "--trace-dir",
        "--max-replays",
        "--junit",
        "--shard",
        "--mutant",
        "--days",
        "--sweep",
        "--csv",
        "--report",
        "--engine",
        "--for",
    ])
    .prop_map(str::to_owned)
}

fn argv() -> impl Strategy<Value = Vec<String>> {
    let sub = prop_oneof![
        Just("run"),
        Just("replay"),
        Just("check-trace"),
        Just("plan"),
        Just("merge"),
        Just("merge-runs"),
        Just("bogus")
    ];
    (sub, prop::collection::vec((flag(), value()), 0..4), prop::collection::vec(value(), 0..2)).prop_map(
        |(sub, pairs, positional)| {
            let mut v = vec![sub.to_owned()];
            // Keep a valid run small: a user's repeated flag is an error anyway.
            if sub == "run" {
                v.extend(["--steps", "300", "--users", "20"].map(str::to_owned));
            }
            if sub == "plan" {
                v.extend(["--days", "1", "--seeds", "1"].map(str::to_owned));
            }
            v.extend(positional);
            for (f, x) in pairs {
                v.push(f);
                v.push(x);
            }
            v
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn no_input_makes_it_panic_abort_or_leave_half_a_file(args in argv(), bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        std::fs::write(tmp("garbage.bin"), &bytes).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
            .args(&args)
            .current_dir(tmp(""))
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        prop_assert!(matches!(out.status.code(), Some(0..=2)), "{args:?} exited {:?}: {err}", out.status);
        prop_assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        let leftovers: Vec<_> = std::fs::read_dir(tmp(""))
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        prop_assert!(leftovers.is_empty(), "{args:?} left {leftovers:?}");
    }
}
