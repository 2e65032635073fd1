//! Outputs on a machine shared with other users, where `ledger-sim` may run as root in a
//! directory others write into: a link another user planted is never written through, a
//! relative trace directory named like an option cannot turn a printed replay command into
//! another command, and an input larger than the tool reads is refused, never aborting it.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::common::{json, scratch, sim_in};

const SCENARIO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/scenarios/ci-small.toml");

/// The user this test runs as.
fn me() -> u32 {
    std::fs::metadata("/proc/self").unwrap().uid()
}

/// A `--junit` path that is a link owned by another user is refused before any work, and the
/// file it names keeps its bytes; the user's own link is written through, as before.
#[test]
fn an_output_through_another_users_link_is_refused() {
    let dir = scratch("files-foreign-link");
    let d = Path::new(&dir);
    let victim = d.join("victim.conf");
    std::fs::write(&victim, "precious").unwrap();
    let link = d.join("junit.xml");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    // Another user's link: only root can make one for another user; CI runs as root.
    let other = if me() == 0 { 65534 } else { me() };
    if other == me() {
        eprintln!("not root: a link of another user cannot be made here, and only the own-link half runs");
    } else {
        std::os::unix::fs::lchown(&link, Some(other), None).unwrap();
        let args = ["run", "--engine", "seed", "--scenario", SCENARIO, "--seeds", "0..2", "--junit", "junit.xml"];
        let (code, out, err) = sim_in(d, &args);
        assert_eq!(code, 2, "{out}{err}");
        assert!(err.contains("--junit junit.xml: a symbolic link owned by another user (uid 65534)"), "{err}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
        std::os::unix::fs::lchown(&link, Some(me()), None).unwrap();
    }
    let args = ["run", "--engine", "seed", "--scenario", SCENARIO, "--seeds", "0..2", "--junit", "junit.xml"];
    let (code, out, err) = sim_in(d, &args);
    assert_eq!(code, 1, "the seed model breaks its invariants: {out}{err}");
    assert!(std::fs::read_to_string(&victim).unwrap().starts_with("<?xml"), "the user's own link is followed");
    // Nothing left beside them but the traces' directory (`target/ledger-sim`).
    let mut left: Vec<String> =
        std::fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["junit.xml", "target", "victim.conf"], "{left:?}");
}

/// `--trace-dir=-x`: the traces go to `./-x`, and every replay command printed names them so.
#[test]
fn a_trace_directory_named_like_an_option_is_printed_as_a_path() {
    let dir = scratch("files-dash-dir");
    let args = [
        "run",
        "--engine",
        "seed",
        "--scenario",
        SCENARIO,
        "--seeds",
        "0..2",
        "--trace-dir=--database-url=x",
        "--json",
    ];
    let (code, out, err) = sim_in(Path::new(&dir), &args);
    assert_eq!(code, 1, "{out}{err}");
    let r = json(&out);
    for v in r["violations"].as_array().unwrap() {
        let replay = v["replay"].as_str().unwrap();
        assert!(replay.starts_with("ledger-sim replay ./--database-url=x/"), "{replay}");
        assert!(Path::new(&dir).join(v["trace"].as_str().unwrap()).is_file(), "{v}");
    }
    assert!(!err.contains("replay --database-url"), "{err}");
}

/// A trace larger than any the tool reads (a sparse file: no disk) is refused by its size,
/// at once, exit 2: not read into memory, not an abort.
#[test]
fn an_input_beyond_the_largest_read_is_refused_by_its_size() {
    let dir = scratch("files-huge-input");
    let path = Path::new(&dir).join("huge.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(5 << 30).unwrap();
    for args in [vec!["replay", "huge.jsonl"], vec!["check-trace", "huge.jsonl"], vec!["merge-runs", "huge.jsonl"]] {
        let (code, out, err) = sim_in(Path::new(&dir), &args);
        assert_eq!(code, 2, "{args:?}: {out}{err}");
        assert!(err.contains("huge.jsonl: 5368709120 bytes, more than"), "{args:?}: {err}");
    }
    let _ = std::fs::remove_file(&path);
}
