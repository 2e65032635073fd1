//! The workspace builds on the Rust it declares (`rust-version` in Cargo.toml, the README's
//! prerequisite): no locked dependency asks for a newer compiler. A plain `cargo update`
//! once raised it to 1.89 unnoticed, because the default resolver takes the newest version
//! of a crate whatever Rust it needs; `.cargo/config.toml` now tells `cargo update` to
//! prefer versions that build on the declared Rust, and this test catches a lock file that
//! does not.
//!
//! It reads `cargo metadata --locked --offline` for this host, every kind of dependency
//! (normal, build and dev: the test suite is built too), so it needs no network: the crates
//! were fetched to build this test. The loom suite's extra crates (`--cfg ledger_loom`) are
//! fetched only by that suite's own build, so they are not checked here.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// `1.85` or `1.85.0` as comparable numbers: `[1, 85, 0]` both.
fn version(text: &str) -> [u64; 3] {
    let mut v = [0; 3];
    for (slot, part) in v.iter_mut().zip(text.split('.')) {
        *slot = part.parse().unwrap_or_else(|_| panic!("rust-version {text:?}"));
    }
    v
}

fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let out = Command::new(rustc).arg("-vV").output().expect("rustc -vV runs");
    let text = String::from_utf8(out.stdout).expect("rustc -vV prints UTF-8");
    text.lines().find_map(|l| l.strip_prefix("host: ")).expect("rustc -vV names the host").to_owned()
}

#[test]
fn no_locked_dependency_needs_a_newer_rust_than_the_workspace_declares() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--locked", "--offline", "--format-version", "1", "--filter-platform"])
        .arg(host_triple())
        .current_dir(root)
        .env_remove("RUSTFLAGS")
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let members: Vec<&str> =
        meta["workspace_members"].as_array().expect("members").iter().map(|m| m.as_str().unwrap()).collect();
    let packages: BTreeMap<&str, &Value> =
        meta["packages"].as_array().expect("packages").iter().map(|p| (p["id"].as_str().unwrap(), p)).collect();
    let declared = packages[members[0]]["rust_version"].as_str().expect("the workspace declares a rust-version");
    let resolved = meta["resolve"]["nodes"].as_array().expect("the resolved graph");
    assert!(resolved.len() > members.len() + 100, "only {} packages resolved", resolved.len());
    let too_new: Vec<String> = resolved
        .iter()
        .map(|node| packages[node["id"].as_str().unwrap()])
        .filter_map(|p| {
            let wants = p["rust_version"].as_str()?;
            (version(wants) > version(declared))
                .then(|| format!("{} {} (Rust {wants})", p["name"].as_str().unwrap(), p["version"].as_str().unwrap()))
        })
        .collect();
    assert!(
        too_new.is_empty(),
        "the workspace declares Rust {declared}, but Cargo.lock holds crates that need a newer one: {too_new:?}; \
         `cargo update -p NAME` picks the newest version that builds on {declared} (.cargo/config.toml)"
    );
}
