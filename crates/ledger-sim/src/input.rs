//! A user's files. Reading an input: a regular file of bounded size, read whole; a device
//! (`/dev/zero` never ends), a directory or a file larger than [`MAX_INPUT`] is refused,
//! naming it, before anything is read. Writing an output: whole or not at all, never over a
//! file the command read as an input, into a directory made when it is missing.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The files this process has read as inputs, by device and inode, with the path given: an
/// output is never renamed over one (`--junit T.jsonl` of `replay T.jsonl`, `--out H.csv` of
/// `plan --fit H.csv` would replace the user's data with the command's output).
static INPUTS: Mutex<Vec<(u64, u64, PathBuf)>> = Mutex::new(Vec::new());

fn remember_input(path: &Path, meta: &std::fs::Metadata) {
    let mut inputs = INPUTS.lock().unwrap_or_else(|e| e.into_inner());
    if !inputs.iter().any(|(dev, ino, _)| (*dev, *ino) == (meta.dev(), meta.ino())) {
        inputs.push((meta.dev(), meta.ino(), path.to_path_buf()));
    }
}

/// Notes that the command will read `path`, before it checks its outputs, when it reads its
/// inputs only after the check (`check-trace T --junit T`, `merge a.json --report a.json`):
/// the output is then refused before any work, not when it is written. A path that names no
/// regular file yet is left to the read, which names what is wrong with it.
pub fn will_read(path: &Path) {
    if let Some(meta) = std::fs::metadata(path).ok().filter(std::fs::Metadata::is_file) {
        remember_input(path, &meta);
    }
}

/// The input that is the same file as `target`, if the command read one and its path still
/// names that file (an input removed since, whose inode a new file may have, is not at risk).
fn input_at(target: &Path) -> Option<PathBuf> {
    let id = |m: std::fs::Metadata| (m.dev(), m.ino());
    let target = id(std::fs::metadata(target).ok()?);
    let inputs = INPUTS.lock().unwrap_or_else(|e| e.into_inner());
    inputs
        .iter()
        .find(|(dev, ino, path)| (*dev, *ino) == target && std::fs::metadata(path).ok().map(id) == Some(target))
        .map(|(_, _, p)| p.clone())
}

/// The largest input file read (traces of 100 M steps stay well below it).
pub const MAX_INPUT: u64 = 4 << 30;

/// The largest scenario file read: a scenario is a page of TOML, and a file of gigabytes given
/// by mistake is refused before it is read, not parsed into an error that quotes it.
pub const MAX_SCENARIO: u64 = 16 << 20;

/// The bytes of the file at `path`.
pub fn read_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    read_bytes_at_most(path, MAX_INPUT)
}

/// The text of the scenario file at `path` (at most [`MAX_SCENARIO`] bytes, UTF-8).
pub fn read_scenario(path: &Path) -> anyhow::Result<String> {
    text_of(path, read_bytes_at_most(path, MAX_SCENARIO)?)
}

/// The two kinds of scenario file, each read by its own command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScenarioKind {
    /// `run --scenario FILE`: the simulator's steps and faults.
    Run,
    /// `plan FILE`: days of traffic for capacity planning.
    Plan,
}

/// Top-level keys only a run scenario has, and only a plan scenario has (`tiers` is both's).
const RUN_ONLY_KEYS: [&str; 12] = [
    "n_users",
    "n_steps",
    "max_in_flight",
    "step_ms",
    "session_share",
    "estimate_min_sats",
    "estimate_max_sats",
    "actual_min_pct",
    "actual_max_pct",
    "swarm",
    "faults",
    "ledger",
];
const PLAN_ONLY_KEYS: [&str; 14] = [
    "name",
    "days",
    "seeds",
    "seed",
    "start_ms",
    "population",
    "requests",
    "cost",
    "payment",
    "budget",
    "pool_initial_sats",
    "credit_pct",
    "reservation_ttl_ms",
    "partial",
];

/// The error for a scenario `text` (of the file `shown`) given to the command of the other
/// kind than `wanted`: one that sets keys of the other kind only. `None` when it sets any key
/// of `wanted`'s kind, or does not parse (its own error says why).
pub fn other_kind(text: &str, shown: &str, wanted: ScenarioKind) -> Option<anyhow::Error> {
    let table: toml::Table = toml::from_str(text).ok()?;
    // An empty table says nothing of the kind (an empty scenario has its own error).
    let set = |k: &str| table.get(k).is_some_and(|v| !matches!(v, toml::Value::Table(t) if t.is_empty()));
    let has = |keys: &[&'static str]| keys.iter().copied().filter(|k| set(k)).collect::<Vec<_>>();
    let (own, other) = match wanted {
        ScenarioKind::Run => (has(&RUN_ONLY_KEYS), has(&PLAN_ONLY_KEYS)),
        ScenarioKind::Plan => (has(&PLAN_ONLY_KEYS), has(&RUN_ONLY_KEYS)),
    };
    if !own.is_empty() || other.is_empty() {
        return None;
    }
    let keys = other.iter().take(3).map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    let quoted = ledger_simulator::report::shell_quote(shown);
    Some(match wanted {
        ScenarioKind::Run => anyhow::anyhow!(
            "{shown}: a plan scenario (it sets {keys}), which `ledger-sim plan {quoted}` reads; `run --scenario` \
             takes a run scenario (`n_users`, `n_steps`, `[faults]`, `[ledger]`), such as \
             fixtures/scenarios/ci-small.toml"
        ),
        ScenarioKind::Plan => anyhow::anyhow!(
            "{shown}: a run scenario (it sets {keys}), which `ledger-sim run --scenario {quoted}` reads; `plan` \
             takes a plan scenario (`days`, `[population]`, `[requests]`, `[cost]`), such as \
             fixtures/scenarios/plan-launch.toml"
        ),
    })
}

/// The bytes of the file at `path`, refused when it has more than `max`.
fn read_bytes_at_most(path: &Path, max: u64) -> anyhow::Result<Vec<u8>> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("{shown}: {}", words(&e)))?;
    if meta.is_dir() {
        anyhow::bail!("{shown}: a directory, not a file");
    }
    if !meta.is_file() {
        anyhow::bail!("{shown}: not a regular file (a device or a pipe may never end)");
    }
    if meta.len() > max {
        anyhow::bail!("{shown}: {} bytes, more than the {max} this input may have", meta.len());
    }
    remember_input(path, &meta);
    let file = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{shown}: {}", words(&e)))?;
    // A file larger than the memory free now (a sparse file of gigabytes takes no disk) is
    // refused, not read into an allocation whose failure would abort the process.
    let free = crate::memory::available();
    if free.is_some_and(|free| meta.len() > free / 2) {
        anyhow::bail!(
            "{shown}: {} bytes, more than half the memory free now ({} bytes); it would not be read and parsed",
            meta.len(),
            free.unwrap_or(0)
        );
    }
    let mut bytes = Vec::new();
    bytes
        .try_reserve_exact(meta.len() as usize)
        .map_err(|_| anyhow::anyhow!("{shown}: {} bytes, more than this process can hold in memory now", meta.len()))?;
    // Bounded even if the file grows while it is read.
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| anyhow::anyhow!("{shown}: {}", words(&e)))?;
    if bytes.len() as u64 > max {
        anyhow::bail!("{shown}: grew beyond {max} bytes while it was read");
    }
    Ok(bytes)
}

/// The text of the file at `path`, which must be UTF-8.
pub fn read_text(path: &Path) -> anyhow::Result<String> {
    text_of(path, read_bytes(path)?)
}

fn text_of(path: &Path, bytes: Vec<u8>) -> anyhow::Result<String> {
    String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not UTF-8 text (byte {})", path.display(), e.utf8_error().valid_up_to()))
}

/// An I/O error's words, without the "(os error N)" a user does not need.
pub fn words(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.find(" (os error").map_or(s.clone(), |i| s[..i].to_owned())
}

/// Where an output for `path` really goes: through a symlink to the file it names, so that
/// the rename of [`write_whole`] replaces that file and not the link, when the link is the
/// user's own. Refuses, naming `flag`, what is not a regular file (a device, a pipe, a
/// directory: renaming over `/dev/null` replaces the device for everyone on the machine), a
/// link to nothing, a link another user owns (in a directory others write into, such a link
/// would have this process, perhaps root, replace any file it names; the kernel's
/// `protected_symlinks` refuses to follow one in a sticky directory for the same reason), and
/// a file the command read as an input.
pub fn output_target(flag: &str, path: &Path) -> anyhow::Result<PathBuf> {
    let shown = path.display();
    // `out/` or `out/.` names a directory, existing or not: no file can be renamed to it,
    // which only the write at the end of the work would find.
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    if bytes.ends_with(b"/") || bytes.ends_with(b"/.") || bytes.ends_with(b"/..") || matches!(bytes, b"." | b"..") {
        anyhow::bail!("{flag} {shown}: a directory's name; give a file name");
    }
    let target = match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            let me = ledger_simulator::files::effective_uid();
            if me.is_some_and(|me| me != m.uid()) {
                anyhow::bail!(
                    "{flag} {shown}: a symbolic link owned by another user (uid {}); an output is never written \
                     through someone else's link (remove it, or give the file it names)",
                    m.uid()
                );
            }
            std::fs::canonicalize(path)
                .map_err(|e| anyhow::anyhow!("{flag} {shown}: a symbolic link to nothing ({})", words(&e)))?
        }
        _ => path.to_path_buf(),
    };
    match std::fs::metadata(&target) {
        Ok(m) if m.is_dir() => anyhow::bail!("{flag} {shown}: a directory; give a file name"),
        Ok(m) if !m.is_file() => anyhow::bail!(
            "{flag} {shown}: not a regular file (a device or a pipe); an output is written whole to a file, \
             then renamed into place"
        ),
        _ => {}
    }
    if let Some(input) = input_at(&target) {
        anyhow::bail!(
            "{flag} {shown}: the same file as the input {}; an output never replaces an input (give it another name)",
            input.display()
        );
    }
    Ok(target)
}

/// The directories missing above `target`, nearest the root first, and the directory that is
/// there: `target`'s parent (with nothing missing) or its nearest existing ancestor. A file in
/// the way is named, as the directory that cannot be made.
fn missing_parents(flag: &str, path: &Path, target: &Path) -> anyhow::Result<(Vec<PathBuf>, PathBuf)> {
    let mut missing = Vec::new();
    let mut dir = target.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    loop {
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => anyhow::bail!(
                "{flag} {}: cannot make the directory {} ({} is a file, not a directory)",
                path.display(),
                missing.last().unwrap_or(&dir).display(),
                dir.display()
            ),
            Err(_) => {
                missing.push(dir.clone());
                match dir.parent().filter(|d| !d.as_os_str().is_empty()) {
                    Some(up) => dir = up.to_path_buf(),
                    None => {
                        dir = PathBuf::from(".");
                        break;
                    }
                }
            }
        }
    }
    missing.reverse();
    Ok((missing, dir))
}

/// Makes the directories missing above `target` (`--junit target/ledger-sim/junit.xml` in a
/// fresh checkout), saying so on stderr (a mistyped directory is seen at once), and returns
/// them, nearest the root first, for [`remove_made`] should the write fail.
pub fn make_parents(flag: &str, path: &Path, target: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let (missing, _) = missing_parents(flag, path, target)?;
    let mut made = Vec::new();
    for dir in &missing {
        if let Err(e) = std::fs::create_dir(dir) {
            if e.kind() != std::io::ErrorKind::AlreadyExists {
                remove_made(&made);
                anyhow::bail!("{flag} {}: cannot make the directory {} ({})", path.display(), dir.display(), words(&e));
            }
        } else {
            made.push(dir.clone());
        }
    }
    if let Some(last) = made.last() {
        ledger_exec::say!("{flag}: made the directory {}", last.display());
    }
    Ok(made)
}

/// Removes the directories [`make_parents`] made (when still empty), deepest first: an output
/// that could not be written leaves nothing behind.
pub fn remove_made(made: &[PathBuf]) {
    for dir in made.iter().rev() {
        let _ = std::fs::remove_dir(dir);
    }
}

/// `--trace-dir`'s value: a relative directory whose name begins with `-` is given as `./-...`,
/// so that the replay commands printed with its traces' paths cannot read it as an option.
pub fn trace_dir_arg(s: &str) -> Result<PathBuf, String> {
    if s.is_empty() {
        return Err("an empty directory name".to_owned());
    }
    Ok(if s.starts_with('-') { PathBuf::from(format!("./{s}")) } else { PathBuf::from(s) })
}

/// Checks, before any work, that `flag`'s output can be written at `path`: a regular file or
/// none yet (see [`output_target`]), in a directory that takes a new file.
///
/// A directory missing above it is not made here (a command that then fails would leave it
/// behind): the nearest one that is there must take new entries, and the write makes the rest.
pub fn check_output(flag: &str, path: &Path) -> anyhow::Result<()> {
    let target = output_target(flag, path)?;
    let (missing, dir) = missing_parents(flag, path, &target)?;
    ledger_simulator::files::takes_a_file(&dir).map_err(|e| {
        if missing.is_empty() {
            anyhow::anyhow!("{flag} {}: cannot write beside it ({})", path.display(), words(&e))
        } else {
            anyhow::anyhow!(
                "{flag} {}: cannot make the directory {} in {} ({})",
                path.display(),
                missing[0].display(),
                dir.display(),
                words(&e)
            )
        }
    })
}

/// Checks, before any work, that files can be written into the directory `dir` (made when they
/// are): it is a directory or does not exist yet, and the nearest directory on its path that
/// exists takes a new file. Nothing is made.
pub fn check_directory(flag: &str, dir: &Path) -> anyhow::Result<()> {
    let shown = dir.display();
    let mut existing = dir;
    loop {
        match std::fs::metadata(existing) {
            Ok(m) if m.is_dir() => break,
            Ok(_) if existing == dir => anyhow::bail!("{flag} {shown}: not a directory"),
            Ok(_) => anyhow::bail!("{flag} {shown}: {} is not a directory", existing.display()),
            Err(_) => {
                existing = match existing.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p,
                    _ => Path::new("."),
                }
            }
        }
    }
    ledger_simulator::files::takes_a_file(existing)
        .map_err(|e| anyhow::anyhow!("{flag} {shown}: cannot write into {} ({})", existing.display(), words(&e)))
}

/// Writes `bytes` to `flag`'s output `path` whole or not at all: to a temporary file beside
/// it, then renamed over it (through a symlink to the file it names; never over a device or a
/// pipe, see [`output_target`]).
pub fn write_whole(flag: &str, path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let target = output_target(flag, path)?;
    let made = make_parents(flag, path, &target)?;
    ledger_simulator::files::write_whole(&target, bytes).map_err(|e| {
        remove_made(&made);
        anyhow::anyhow!("{flag} {}: {}", path.display(), words(&e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ledger-sim-input-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// An output never replaces what is not a regular file, and writes through a symlink.
    #[test]
    fn outputs_write_regular_files_and_through_links_only() {
        let d = dir("out");
        let file = d.join("a.toml");
        write_whole("--out", &file, b"one").unwrap();
        write_whole("--out", &file, b"two").unwrap();
        assert_eq!(std::fs::read(&file).unwrap(), b"two");

        let link = d.join("link.toml");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        write_whole("--out", &link, b"three").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link stays a link");
        assert_eq!(std::fs::read(&file).unwrap(), b"three", "written through the link");

        let dangling = d.join("dangling.toml");
        std::os::unix::fs::symlink(d.join("nowhere/x"), &dangling).unwrap();
        let e = write_whole("--out", &dangling, b"x").unwrap_err().to_string();
        assert!(e.contains("--out") && e.contains("link to nothing"), "{e}");

        for device in ["/dev/null", "/dev/full"] {
            let e = check_output("--junit", Path::new(device)).unwrap_err().to_string();
            assert!(e.contains("--junit /dev/") && e.contains("not a regular file"), "{e}");
            let e = write_whole("--junit", Path::new(device), b"x").unwrap_err().to_string();
            assert!(e.contains("not a regular file"), "{e}");
            let m = std::fs::symlink_metadata(device).unwrap();
            assert!(!m.is_file(), "{device} is still a device");
        }
        let e = check_output("--report", &d).unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        // A missing directory is not made by the check (a command that fails after it would
        // leave it behind), only by the write; one that cannot be (a file is in the way) is
        // named.
        check_output("--out", &d.join("no/such/dir/x.toml")).unwrap();
        assert!(!d.join("no").exists(), "the check made nothing");
        write_whole("--out", &d.join("no/such/dir/x.toml"), b"x").unwrap();
        assert_eq!(std::fs::read(d.join("no/such/dir/x.toml")).unwrap(), b"x");
        for path in [d.join("a.toml/x.toml"), d.join("a.toml/deeper/x.toml")] {
            let e = check_output("--out", &path).unwrap_err().to_string();
            assert!(e.contains("--out") && e.contains("cannot make the directory") && e.contains("is a file"), "{e}");
            let e = write_whole("--out", &path, b"x").unwrap_err().to_string();
            assert!(e.contains("cannot make the directory"), "{e}");
        }
        // A write that fails after making directories (a file name too long for the file
        // system) removes them.
        let e = write_whole("--out", &d.join("made/for").join("x".repeat(300)), b"x").unwrap_err().to_string();
        assert!(e.starts_with("--out "), "{e}");
        assert!(!d.join("made").exists(), "left behind: {e}");
        // A directory's name, existing or not, before any work (the rename at its end would fail).
        for name in ["nodir/", "nodir/.", "nodir/..", "."] {
            let path = if name == "." { PathBuf::from(".") } else { PathBuf::from(format!("{}/{name}", d.display())) };
            let e = check_output("--junit", &path).unwrap_err().to_string();
            assert!(e.ends_with(": a directory's name; give a file name"), "{e}");
        }
        assert!(!d.join("nodir").exists(), "nothing made");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A directory for outputs is checked without being made.
    #[test]
    fn a_directory_for_outputs_is_checked_and_not_made() {
        let d = dir("dir");
        check_directory("--trace-dir", &d).unwrap();
        check_directory("--trace-dir", &d.join("a/b")).unwrap();
        assert!(!d.join("a").exists(), "nothing made");
        std::fs::write(d.join("f"), b"").unwrap();
        let e = check_directory("--trace-dir", &d.join("f")).unwrap_err().to_string();
        assert!(e.ends_with("f: not a directory"), "{e}");
        let e = check_directory("--trace-dir", &d.join("f/g")).unwrap_err().to_string();
        assert!(e.contains("f is not a directory"), "{e}");
        assert_eq!(std::fs::read_dir(&d).unwrap().count(), 1, "no probe left behind");
        let _ = std::fs::remove_dir_all(&d);
    }

    /// An output is never renamed over a file the command read, by any path to it.
    #[test]
    fn an_output_never_replaces_an_input() {
        let d = dir("same");
        let input = d.join("in.toml");
        std::fs::write(&input, b"days = 1").unwrap();
        std::os::unix::fs::symlink(&input, d.join("link.toml")).unwrap();
        std::fs::hard_link(&input, d.join("hard.toml")).unwrap();
        check_output("--out", &input).unwrap();
        read_scenario(&input).unwrap();
        for path in [input.clone(), d.join("link.toml"), d.join("hard.toml"), d.join("./in.toml")] {
            let e = check_output("--out", &path).unwrap_err().to_string();
            assert!(e.contains("the same file as the input") && e.contains("in.toml"), "{e}");
            let e = write_whole("--out", &path, b"output").unwrap_err().to_string();
            assert!(e.contains("never replaces an input"), "{e}");
        }
        assert_eq!(std::fs::read(&input).unwrap(), b"days = 1");
        write_whole("--out", &d.join("other.toml"), b"output").unwrap();
        // An input announced before it is read is protected from then on.
        let later = d.join("later.json");
        std::fs::write(&later, b"{}").unwrap();
        check_output("--report", &later).unwrap();
        will_read(&later);
        let e = check_output("--report", &later).unwrap_err().to_string();
        assert!(e.contains("the same file as the input") && e.contains("later.json"), "{e}");
        will_read(&d.join("missing.json"));
        will_read(&d);
        let _ = std::fs::remove_dir_all(&d);
    }
}
