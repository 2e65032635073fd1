//! The architecture invariants of ARCHITECTURE.md that a test can check: which crate may
//! depend on which, and no import cycle between the modules of any crate.
//!
//! Crate edges come from `cargo metadata --no-deps` (the manifests as written, no network).
//! Module edges come from the sources: every `crate::`, `super::` and `self::` path in code
//! (comments and inline `#[cfg(test)] mod tests` blocks left out) is an arrow from the file
//! to the module it names. Re-exports count like any other path, so a child module must
//! import an item from the module that defines it, not through the crate root.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_owned()
}

/// Each workspace package: its directory and its normal (not dev, not build) dependencies.
fn packages() -> BTreeMap<String, (PathBuf, BTreeSet<String>)> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--offline", "--format-version", "1"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    let mut map = BTreeMap::new();
    for p in meta["packages"].as_array().expect("packages") {
        let name = p["name"].as_str().expect("name").to_owned();
        let dir = Path::new(p["manifest_path"].as_str().expect("manifest_path")).parent().unwrap().to_owned();
        let deps = p["dependencies"]
            .as_array()
            .expect("dependencies")
            .iter()
            .filter(|d| d["kind"].is_null())
            .map(|d| d["name"].as_str().expect("dependency name").to_owned())
            .collect();
        map.insert(name, (dir, deps));
    }
    map
}

/// The workspace crates `name` depends on, directly or not, and itself.
fn closure(pkgs: &BTreeMap<String, (PathBuf, BTreeSet<String>)>, name: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_owned()];
    while let Some(n) = todo.pop() {
        if seen.insert(n.clone()) {
            todo.extend(pkgs[&n].1.iter().filter(|d| pkgs.contains_key(*d)).cloned());
        }
    }
    seen
}

/// Every external crate that `name` or a workspace crate below it depends on directly.
fn external_deps(pkgs: &BTreeMap<String, (PathBuf, BTreeSet<String>)>, name: &str) -> BTreeSet<String> {
    closure(pkgs, name).iter().flat_map(|n| pkgs[n].1.iter().filter(|d| !pkgs.contains_key(*d)).cloned()).collect()
}

#[test]
fn ledger_core_depends_on_no_io_clock_thread_or_async_crate() {
    let pkgs = packages();
    let allowed: BTreeSet<&str> = ["hashbrown", "rustc-hash", "serde", "serde_json", "thiserror", "toml"].into();
    let deps = &pkgs["ledger-core"].1;
    let extra: Vec<&String> = deps.iter().filter(|d| !allowed.contains(d.as_str())).collect();
    assert!(extra.is_empty(), "ledger-core may depend only on {allowed:?}; it depends on {extra:?}");
}

/// What a service embeds has one shape: no feature switches a harness-only rule on, and no
/// module of it names a mutant (they are `ledger-harness`'s, reached through the `Variant` seam).
#[test]
fn ledger_core_has_no_features_and_knows_no_mutant() {
    let core = workspace_root().join("crates/ledger-core");
    let manifest = std::fs::read_to_string(core.join("Cargo.toml")).expect("ledger-core's manifest");
    assert!(!manifest.contains("[features]"), "ledger-core must have no [features]:\n{manifest}");
    for entry in std::fs::read_dir(core.join("src")).expect("ledger-core/src") {
        let path = entry.expect("a directory entry").path();
        let text = std::fs::read_to_string(&path).expect("a source file");
        assert!(!text.to_lowercase().contains("mutant"), "{} names a mutant", path.display());
    }
}

#[test]
fn only_the_io_crates_reach_a_database_or_an_async_runtime() {
    let pkgs = packages();
    for name in ["ledger-core", "ledger-harness", "ledger-simulator", "ledger-plan", "ledger-concurrent", "ledger-exec"]
    {
        let io: Vec<String> = external_deps(&pkgs, name)
            .into_iter()
            .filter(|d| ["sqlx", "tokio", "chrono"].contains(&d.as_str()))
            .collect();
        assert!(io.is_empty(), "{name} must compile without a database or an async runtime, but reaches {io:?}");
    }
}

#[test]
fn the_layers_point_down() {
    let pkgs = packages();
    // Who may depend on each library crate (normal dependencies; tests and benches are free).
    let rules: [(&str, &[&str]); 8] = [
        ("ledger-core", &[]),
        ("ledger-harness", &["ledger-core"]),
        ("ledger-concurrent", &["ledger-core"]),
        ("ledger-exec", &["ledger-core", "ledger-harness"]),
        ("ledger-simulator", &["ledger-core", "ledger-harness"]),
        ("ledger-plan", &["ledger-core", "ledger-harness", "ledger-simulator"]),
        ("ledger-pg", &["ledger-core", "ledger-harness"]),
        ("ledger-pg-runs", &["ledger-core", "ledger-exec", "ledger-harness", "ledger-pg", "ledger-simulator"]),
    ];
    for (name, may) in rules {
        let inner: BTreeSet<&str> = pkgs[name].1.iter().filter(|d| pkgs.contains_key(*d)).map(String::as_str).collect();
        let wrong: Vec<&&str> = inner.iter().filter(|d| !may.contains(d)).collect();
        assert!(wrong.is_empty(), "{name} may depend on {may:?} of the workspace, not on {wrong:?}");
    }
    for (name, (_, deps)) in &pkgs {
        if name != "ledger-sim" && name != "ledger-benches" && name != "ledger-tests" {
            assert!(!deps.contains("ledger-sim"), "{name} depends on the command line");
        }
    }
}

/// The module path of a source file: `src/lib.rs` is `crate`, `src/a/mod.rs` and `src/a.rs`
/// are `crate::a`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap();
    let stem = last.trim_end_matches(".rs");
    if !["lib", "main", "mod"].contains(&stem) {
        parts.push(stem.to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The code of a file without comments and without its inline test module.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path a file names that starts at `crate`, `super` or `self`, as absolute module paths
/// (group imports `a::{b, c::d}` expanded).
fn paths_named(code: &str, here: &[String]) -> Vec<Vec<String>> {
    let bytes: Vec<char> = code.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let rest: String = bytes[i..bytes.len().min(i + 7)].iter().collect();
        let starts = ["crate::", "super::", "self::"].iter().find(|s| rest.starts_with(**s));
        let boundary = i == 0 || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if let (Some(s), true) = (starts, boundary) {
            let mut base: Vec<String> = match *s {
                "crate::" => Vec::new(),
                "super::" => here[..here.len().saturating_sub(1)].to_vec(),
                _ => here.to_vec(),
            };
            i += s.len();
            // `super::super::`
            while bytes[i..].iter().collect::<String>().starts_with("super::") {
                base.pop();
                i += 7;
            }
            let (tail, used) = path_tail(&bytes[i..]);
            i += used;
            for t in tail {
                let mut p = base.clone();
                p.extend(t);
                out.push(p);
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Parses `a::b::{c, d::e}` at the start of `s` into its paths; returns them and the length read.
fn path_tail(s: &[char]) -> (Vec<Vec<String>>, usize) {
    let mut i = 0;
    let mut prefix = Vec::new();
    loop {
        if i < s.len() && s[i] == '{' {
            i += 1;
            let mut all = Vec::new();
            loop {
                while i < s.len() && s[i].is_whitespace() {
                    i += 1;
                }
                if i >= s.len() || s[i] == '}' {
                    return (all, i + 1);
                }
                let (sub, used) = path_tail(&s[i..]);
                i += used.max(1);
                for p in sub {
                    let mut full = prefix.clone();
                    full.extend(p);
                    all.push(full);
                }
                while i < s.len() && s[i] != ',' && s[i] != '}' {
                    i += 1;
                }
                if i < s.len() && s[i] == ',' {
                    i += 1;
                }
            }
        }
        let start = i;
        while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_' || s[i] == '*') {
            i += 1;
        }
        if i > start {
            prefix.push(s[start..i].iter().collect::<String>());
        }
        if s[i..].starts_with(&[':', ':']) {
            i += 2;
            continue;
        }
        return (vec![prefix], i);
    }
}

/// The module a path lands in: its longest prefix that is a module of the crate.
fn module_named(path: &[String], modules: &BTreeSet<Vec<String>>) -> Vec<String> {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains(p)).unwrap_or_default()
}

/// Strongly connected components with more than one module (Tarjan).
fn cycles(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Vec<Vec<Vec<String>>> {
    struct T<'a> {
        edges: &'a BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        index: BTreeMap<Vec<String>, usize>,
        low: BTreeMap<Vec<String>, usize>,
        stack: Vec<Vec<String>>,
        on: BTreeSet<Vec<String>>,
        out: Vec<Vec<Vec<String>>>,
    }
    fn visit(t: &mut T<'_>, v: &Vec<String>) {
        let n = t.index.len();
        t.index.insert(v.clone(), n);
        t.low.insert(v.clone(), n);
        t.stack.push(v.clone());
        t.on.insert(v.clone());
        for w in t.edges.get(v).into_iter().flatten() {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low[v];
                t.low.insert(v.clone(), lv.min(lw));
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low[v];
                t.low.insert(v.clone(), lv.min(iw));
            }
        }
        if t.low[v] == t.index[v] {
            let mut scc = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(&w);
                let done = &w == v;
                scc.push(w);
                if done {
                    break;
                }
            }
            if scc.len() > 1 {
                t.out.push(scc);
            }
        }
    }
    let mut t = T {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in edges.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out
}

/// Module-to-module import arrows of the crate whose sources are under `src`.
fn module_edges(src: &Path) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(src, f)).collect();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for f in &files {
        let here = module_of(src, f);
        let text = std::fs::read_to_string(f).unwrap();
        let targets = edges.entry(here.clone()).or_default();
        for p in paths_named(&code(&text), &here) {
            let m = module_named(&p, &modules);
            if m != here {
                targets.insert(m);
            }
        }
    }
    edges
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let mut found = Vec::new();
    for (name, (dir, _)) in packages() {
        for src in ["src", "examples"] {
            let src = dir.join(src);
            if !src.is_dir() {
                continue;
            }
            for scc in cycles(&module_edges(&src)) {
                let names: Vec<String> =
                    scc.iter().map(|m| if m.is_empty() { "crate".to_owned() } else { m.join("::") }).collect();
                found.push(format!("{name}: {}", names.join(" <-> ")));
            }
        }
    }
    assert!(found.is_empty(), "import cycles:\n{}", found.join("\n"));
}

#[test]
fn the_cycle_finder_sees_a_cycle() {
    // The test above must be able to fail: a two-module cycle, an indirect one, and a
    // group import that hides one.
    let m = |s: &str| if s.is_empty() { Vec::new() } else { s.split("::").map(str::to_owned).collect::<Vec<_>>() };
    let modules: BTreeSet<Vec<String>> = ["", "a", "b", "c", "a::x"].iter().map(|s| m(s)).collect();
    let named = |code: &str, here: &str| -> BTreeSet<Vec<String>> {
        paths_named(&self::code(code), &m(here)).iter().map(|p| module_named(p, &modules)).collect()
    };
    assert_eq!(named("use crate::{a::Thing, b::{self, Other}};", "c"), [m("a"), m("b")].into());
    assert_eq!(named("use super::Thing; let x = super::super::b::f();", "a::x"), [m("a"), m("b")].into());
    assert_eq!(named("// use crate::b::Thing;\nlet s = \"x\";", "a"), BTreeSet::new());
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    edges.insert(m("a"), [m("b")].into());
    edges.insert(m("b"), [m("c")].into());
    edges.insert(m("c"), [m("a")].into());
    assert_eq!(cycles(&edges).len(), 1);
    edges.insert(m("c"), BTreeSet::new());
    assert!(cycles(&edges).is_empty());
}

/// The printing macros the sources of `dir` use, as `file:line: name!`: `println!`, `print!`,
/// `eprintln!` and `eprint!` panic when their reader has gone (`ledger-sim ... 2>&1 | head`).
fn printing_macros(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(dir, &mut files);
    files.sort();
    let mut found = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in code(&text).lines().enumerate() {
            for (at, _) in line.match_indices("!(") {
                let name: String = line[..at]
                    .chars()
                    .rev()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<Vec<_>>()
                    .into_iter()
                    .rev()
                    .collect();
                if ["println", "print", "eprintln", "eprint"].contains(&name.as_str()) {
                    found.push(format!("{}:{}: {name}!", f.display(), i + 1));
                }
            }
        }
    }
    found
}

/// Architecture invariant: the libraries and the binary never print with a macro that panics
/// when the reader of the output has gone: stdout is written through a handle whose error is
/// returned (and `main` exits 141 on a broken pipe), stderr through `ledger_exec::say!`, which
/// ignores a failure. A panic there would stop the work whose results go to files.
#[test]
fn no_source_prints_with_a_macro_that_panics_when_its_reader_has_gone() {
    let mut found = Vec::new();
    for (_, (dir, _)) in packages() {
        let src = dir.join("src");
        if src.is_dir() {
            found.extend(printing_macros(&src));
        }
    }
    assert!(found.is_empty(), "use ledger_exec::say! or a returned write instead of:\n{}", found.join("\n"));
}

#[test]
fn the_printing_macro_finder_sees_one() {
    let dir = std::env::temp_dir().join(format!("ledger-architecture-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("a.rs"),
        "// eprintln!(\"a comment\");\nfn f() {\n    ledger_exec::say!(\"fine\");\n    eprintln!(\"x\");\n    \
         std::println!(\"y\");\n}\n#[cfg(test)]\nmod tests {\n    fn g() { println!(\"a test may\"); }\n}\n",
    )
    .unwrap();
    let found = printing_macros(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    let names: Vec<&str> = found.iter().map(|f| f.rsplit(": ").next().unwrap()).collect();
    assert_eq!(names, ["eprintln!", "println!"], "{found:?}");
}
