//! `ledger-sim conform --exec COMMAND`: the conformance vectors through the engine protocol
//! ([`ledger_exec::conform`]).
//!
//! What it prints is for a team that wrote its implementation from SPEC.md and has only this
//! output to go on: each failing case as a small block (its rules, the request that failed,
//! both answers as JSON, the fields that differ, the requests before, the command that
//! replays the case), and the vectors themselves as files on request (`--write-vectors`), so
//! that a failure's FILE:LINE can be opened.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ledger_exec::conform::{Failure, Report};
use ledger_harness::conformance::Segment;

/// Arguments of `conform`.
#[derive(clap::Args, Debug)]
#[command(group = clap::ArgGroup::new("conform-what").required(true).args(["command", "write_vectors"]))]
pub struct ConformArgs {
    /// The implementation (of the reference API).
    #[command(flatten)]
    pub child: Option<crate::child_args::ChildArgs>,
    /// The directory of vectors (`*.jsonl`). Without it, the vectors built into this binary:
    /// the repository's `fixtures/conformance/*.jsonl` when it was built.
    #[arg(long, value_name = "DIR")]
    pub vectors: Option<PathBuf>,
    /// Run only the case of this name (the `case` of its header, as a failure names it); may
    /// be given more than once. A name that no case has is refused (exit 2), with the names
    /// nearest to it.
    #[arg(long = "case", value_name = "NAME")]
    pub cases: Vec<String>,
    /// Write the vectors built into this binary to DIR as files (made when missing), so that a
    /// failure's FILE:LINE can be opened and `--vectors DIR` reads them; then exit, without
    /// --exec. A file already there is kept when it holds the same bytes and refused, naming
    /// it, when it differs: nothing is written then.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["command", "exec_db", "exec_env", "exec_timeout", "vectors", "cases", "json", "junit"],
    )]
    pub write_vectors: Option<PathBuf>,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the verdict as JUnit XML to FILE: one test case per case of the vectors,
    /// passed, failed (with what differed and the command that replays it) or skipped (not
    /// run: another `--case` was asked). Refused before any work for a directory or a file
    /// the command reads; written whole, then renamed into place.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// After the vectors, the protocol's error rules (SPEC.md §9.1, §9.2) on a new child: lines
    /// a run never sends (an unknown type, a key named twice, `1e3`, an integer beyond 2^63-1,
    /// a line of white space, an invalid config...), each with the answer SPEC.md requires.
    /// Their verdict is printed after the vectors' (in `--json` as `protocol_errors`), and a
    /// case answered otherwise fails the command.
    #[arg(long)]
    pub protocol_errors: bool,
}

/// How many of the steps before a failing one the text shows (the case's `reset` aside);
/// `--json` lists them all.
const STEPS_SHOWN: usize = 5;

/// The `conform` subcommand: `Ok(true)` when every case passes.
pub fn conform_cmd(args: &ConformArgs) -> anyhow::Result<bool> {
    if let Some(dir) = &args.write_vectors {
        return write_vectors(dir);
    }
    let child_args = args.child.as_ref().expect("clap requires --exec or --write-vectors");
    let exec = child_args.exec()?;
    let (files, from) = match &args.vectors {
        Some(dir) => {
            let files = ledger_harness::conformance::read_dir(dir).map_err(|e| anyhow::anyhow!("--vectors {e}"))?;
            if files.is_empty() {
                anyhow::bail!("--vectors {}: no conformance vectors (*.jsonl) here", dir.display());
            }
            (files, dir.display().to_string())
        }
        None => (built_in()?, "built in".to_owned()),
    };
    // Every case, to be listed in --junit whether it ran or not.
    let every: Vec<(String, String)> =
        files.iter().flat_map(|(f, s)| s.iter().map(move |s| (f.clone(), s.header.case.clone()))).collect();
    if let Some(path) = &args.junit {
        if let Some(dir) = &args.vectors {
            every.iter().for_each(|(f, _)| crate::input::will_read(&dir.join(f)));
        }
        crate::input::check_output("--junit", path)?;
    }
    // Before the implementation is started: a name no case has is refused without the work.
    let files = selected(files, &args.cases, &from)?;
    let config = files[0].1.first().map(|s| s.header.config).unwrap_or_default();
    let (mut child, _db) = ledger_pg_runs::start_exec(&exec, &config)?;
    let report = ledger_exec::conform::conform(&mut child, &files)?;
    let protocol = if args.protocol_errors {
        // A child of its own: whatever the vectors left it in, and however they ended.
        let (mut fresh, db) = ledger_pg_runs::start_exec(&exec, &config)?;
        let outcome = ledger_exec::protocol_cases::run(&mut fresh);
        drop(fresh);
        drop(db);
        Some(outcome)
    } else {
        None
    };
    let shown = Shown { args, exec: &exec, name: &child.hello().name, from: &from };
    if let Some(path) = &args.junit {
        crate::junit::write(path, &shown.junit(&report, &every))?;
    }
    let mut out = std::io::stdout().lock();
    if args.json {
        let mut json = shown.json(&report);
        if let Some(p) = &protocol {
            json["protocol_errors"] = serde_json::to_value(p)?;
        }
        crate::child_args::write_json(&mut out, &json)?;
        // The report's replays run from the directory conform ran in; stderr gives each in a
        // form that works pasted anywhere, as `run` does.
        for f in &report.failures {
            ledger_exec::say!("ledger-sim: {}, from any directory: {}", f.case, shown.replay(f));
        }
    } else {
        shown.text(&mut out, &report)?;
        if let Some(p) = &protocol {
            for f in &p.failed {
                let lines = [
                    format!("FAILED {}: {}", f.case, f.spec),
                    format!("  sent:     {}", f.sent),
                    format!("  expected: {}", f.expected),
                    format!("  got:      {}", f.got),
                ];
                for line in lines {
                    writeln!(out, "{}", ledger_harness::text::shown(&line))?;
                }
            }
            let not_run = match p.not_run.len() {
                0 => String::new(),
                n => format!(", {n} not run (after an answer the harness could not take)"),
            };
            writeln!(
                out,
                "protocol error rules (SPEC.md §9.1, §9.2): {} cases, {} failed{not_run}",
                p.passed.len() + p.failed.len() + p.not_run.len(),
                p.failed.len()
            )?;
        }
    }
    // The implementation goes before its database.
    drop(child);
    drop(_db);
    Ok(report.failures.is_empty() && protocol.is_none_or(|p| p.failed.is_empty()))
}

/// What a report is shown with: the run's options, for each failure's file and replay command.
struct Shown<'a> {
    args: &'a ConformArgs,
    exec: &'a ledger_pg_runs::ExecArgs,
    /// The implementation's name, from its `hello_ok`.
    name: &'a str,
    /// Where the vectors came from, as the summary says it.
    from: &'a str,
}

impl Shown<'_> {
    /// Where `f`'s file is: in `--vectors` DIR, or built in.
    fn path(&self, f: &Failure) -> Option<PathBuf> {
        self.args.vectors.as_ref().map(|dir| dir.join(&f.file))
    }

    /// The command that runs `f`'s case alone on the same implementation, quoted for a POSIX
    /// shell, with every password hidden (so it runs as printed only when there was none):
    /// from the directory conform ran in, its `--vectors` as given, so that `--json` and
    /// `--junit` hold the same bytes from any directory, as `run`'s do.
    fn replay_here(&self, f: &Failure) -> String {
        self.replay_with(f, self.args.vectors.clone())
    }

    /// [`Shown::replay_here`] in a form that works pasted anywhere, for a person: run from the
    /// directory conform ran in (`(cd DIR && ledger-sim conform ...)`, since the command of
    /// `--exec` may name files relative to it), its `--vectors` made absolute.
    fn replay(&self, f: &Failure) -> String {
        let absolute = self.args.vectors.as_ref().map(|dir| std::path::absolute(dir).unwrap_or_else(|_| dir.clone()));
        let command = self.replay_with(f, absolute);
        match std::env::current_dir() {
            Ok(start) => ledger_simulator::report::from_anywhere(&command, "", &start),
            Err(_) => command,
        }
    }

    /// `ledger-sim conform` with the run's options, `vectors` and `f`'s case.
    fn replay_with(&self, f: &Failure, vectors: Option<PathBuf>) -> String {
        let quote = ledger_simulator::report::shell_quote;
        let mut command = format!("ledger-sim conform {}", self.exec.replay_flags());
        if let Some(dir) = vectors {
            command.push_str(&format!(" --vectors {}", quote(&dir.display().to_string())));
        }
        command.push_str(&format!(" --case {}", quote(&f.case)));
        ledger_harness::text::redacted_text(&command)
    }

    /// The report as text: a block per failing case, then the summary.
    fn text(&self, out: &mut impl Write, report: &Report) -> anyhow::Result<()> {
        for f in &report.failures {
            // The case's name is the vectors' and the answers are the implementation's:
            // passwords are hidden and control characters shown as escapes.
            for line in self.block(f, format!("  replay:   {}", self.replay(f))) {
                writeln!(out, "{}", ledger_harness::text::shown(&line))?;
            }
        }
        writeln!(
            out,
            "{}",
            ledger_harness::text::shown(&format!(
                "conform {} ({:?}, vectors {}): {} cases, {} steps, {} failed{}",
                self.exec.command.as_deref().unwrap_or(""),
                self.name,
                self.from,
                report.cases,
                report.steps,
                report.failures.len(),
                match report.not_run.len() {
                    0 => String::new(),
                    n => format!(", {n} not run"),
                }
            ))
        )?;
        if let Some(why) = &report.stopped {
            writeln!(
                out,
                "{}",
                ledger_harness::text::shown(&format!("{} case(s) not run: {why}", report.not_run.len()))
            )?;
        }
        if !report.failures.is_empty() {
            let by_rule: Vec<String> =
                failed_rules(&report.failures).iter().map(|(rule, n)| format!("{rule} ({n})")).collect();
            let no_rule = report.failures.iter().filter(|f| f.rules.is_empty()).count();
            let no_rule = match no_rule {
                0 => String::new(),
                n => format!("{}{n} failing case(s) name no rule", if by_rule.is_empty() { "" } else { "; " }),
            };
            writeln!(out, "failing cases by rule: {}{no_rule}", by_rule.join(", "))?;
            if self.args.vectors.is_none() {
                writeln!(
                    out,
                    "the vectors are built in: `ledger-sim conform --write-vectors DIR` writes them out, to open FILE:LINE"
                )?;
            }
        }
        Ok(())
    }

    /// One failing case as lines of text, the last `replay`, the line that gives its replay.
    fn block(&self, f: &Failure, replay: String) -> Vec<String> {
        let location = self.path(f).map_or_else(|| f.file.clone(), |p| p.display().to_string());
        let rules = if f.rules.is_empty() { "(the case names none)".to_owned() } else { f.rules.join(", ") };
        let mut lines = vec![
            format!("FAIL {location}:{} {}: {}", f.line, f.case, f.what),
            format!("  rules:    {rules}"),
            format!("  sent:     {}", f.sent),
        ];
        if let Some(observe) = &f.observe {
            lines.push(format!("  then:     {observe}"));
        }
        lines.push(format!("  expected: {}", f.expected));
        match &f.broke {
            // No answer to show: what the implementation did, the line it wrote quoted.
            Some(broke) => lines.push(format!("  got:      ({}) {}", broke.kind.id(), broke.how)),
            None => lines.push(format!("  got:      {}", f.got)),
        }
        for (i, d) in f.differs.iter().enumerate() {
            lines.push(format!("  {}{d}", if i == 0 { "differs:  " } else { "          " }));
        }
        // The reset, then the last steps before the failing one.
        let width = f.line.to_string().len();
        let shown_line = |label: &str, s: &ledger_exec::conform::SentLine| {
            format!("  {label}line {:>width$}  {}", s.line, s.request)
        };
        if let Some((reset, steps)) = f.before.split_first() {
            lines.push(shown_line("before:   ", reset));
            // Two or fewer are shown rather than counted.
            let hidden = if steps.len() > STEPS_SHOWN + 2 { steps.len() - STEPS_SHOWN } else { 0 };
            if hidden > 0 {
                let (first, last) = (steps[0].line, steps[hidden - 1].line);
                lines.push(format!("            ... {hidden} steps, lines {first}-{last} (--json lists them)"));
            }
            for s in &steps[hidden..] {
                lines.push(shown_line("          ", s));
            }
        }
        lines.push(replay);
        lines
    }

    /// The report as JUnit XML: one case per case of `every` (file, case), in their order.
    fn junit(&self, report: &Report, every: &[(String, String)]) -> String {
        let cases: Vec<crate::junit::Case> = every
            .iter()
            .map(|(file, case)| {
                let failed = report.failures.iter().find(|f| &f.file == file && &f.case == case);
                let run = self.args.cases.is_empty() || self.args.cases.contains(case);
                // A case the implementation could not be started again for fails: a CI must
                // not read a case that never ran as passed, nor as merely skipped.
                let not_run = report.not_run.iter().any(|(f, c)| f == file && c == case);
                let not_run = not_run.then(|| {
                    let why = report.stopped.as_deref().unwrap_or_default();
                    let message = ledger_harness::text::shown(&format!("not run: {why}"));
                    (message.clone(), "not_run".to_owned(), message + "\n")
                });
                crate::junit::Case {
                    name: format!("{file} {case}"),
                    failure: failed
                        .map(|f| {
                            let message = ledger_harness::text::shown(&format!("line {}: {}", f.line, f.detail()));
                            let rules = if f.rules.is_empty() { "conformance".to_owned() } else { f.rules.join(" ") };
                            let replay = format!("  {} {}", crate::junit::REPLAY_LABEL, self.replay_here(f));
                            let body: Vec<String> =
                                self.block(f, replay).iter().map(|l| ledger_harness::text::shown(l)).collect();
                            (message, rules, body.join("\n") + "\n")
                        })
                        .or(not_run),
                    skipped: (!run).then(|| "not run: --case asked for other cases".to_owned()),
                    output: None,
                }
            })
            .collect();
        let properties = [
            ("implementation", ledger_harness::text::shown(self.name)),
            ("vectors", self.from.to_owned()),
            ("cases", report.cases.to_string()),
            ("steps", report.steps.to_string()),
        ];
        crate::junit::render_cases(&self.suite_name(every.len()), &properties, &cases)
    }

    /// The JUnit suite's name: what ran, the same on every run of the same command.
    fn suite_name(&self, n_cases: usize) -> String {
        let vectors = if self.args.vectors.is_some() { "vectors from --vectors" } else { "built-in vectors" };
        format!("ledger-sim conform: exec-reference, {vectors}, {n_cases} cases")
    }

    /// The report as one JSON object.
    fn json(&self, report: &Report) -> serde_json::Value {
        let failures: Vec<serde_json::Value> = report.failures.iter().map(|f| self.failure_json(f)).collect();
        serde_json::json!({
            "implementation": self.name,
            "vectors": self.from,
            "cases": report.cases,
            "steps": report.steps,
            "failed": report.failures.len(),
            "failed_rules": failed_rules(&report.failures),
            "failures": failures,
            "not_run": report.not_run.iter().map(|(file, case)| serde_json::json!({"file": file, "case": case})).collect::<Vec<_>>(),
            "stopped": report.stopped,
        })
    }

    fn failure_json(&self, f: &Failure) -> serde_json::Value {
        let value =
            |text: &str| -> serde_json::Value { serde_json::from_str(text).expect("the report's JSON reads back") };
        let differs: Vec<serde_json::Value> = f
            .differs
            .iter()
            .map(|d| {
                let mut v = serde_json::json!({"field": d.field, "expected": d.expected});
                // No `got` when the answer has no such field (a `null` is a value it gave).
                if let Some(got) = &d.got {
                    v["got"] = got.clone();
                }
                v
            })
            .collect();
        let before: Vec<serde_json::Value> =
            f.before.iter().map(|s| serde_json::json!({"line": s.line, "request": value(&s.request)})).collect();
        serde_json::json!({
            "file": f.file,
            "path": self.path(f).map(|p| p.display().to_string()),
            "case": f.case,
            "line": f.line,
            "step": f.step,
            "rules": f.rules,
            "what": f.what,
            "detail": f.detail(),
            "sent": value(&f.sent),
            "observe": f.observe.as_deref().map(value),
            "expected": value(&f.expected),
            "got": value(&f.got),
            "implementation_failed": f.broke.as_ref().map(|b| serde_json::json!({
                "kind": b.kind.id(),
                "how": b.how,
                "line": b.line,
            })),
            "differs": differs,
            "before": before,
            "replay": self.replay_here(f),
        })
    }
}

/// How many failing cases name each rule, by rule id.
fn failed_rules(failures: &[Failure]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for rule in failures.iter().flat_map(|f| &f.rules) {
        *counts.entry(rule.as_str()).or_insert(0) += 1;
    }
    counts
}

type Files = Vec<(String, Vec<Segment>)>;

/// The cases of `files` named in `names` (all of them when `names` is empty), each file's in
/// its order; a name that no case has is an error that suggests the nearest.
fn selected(files: Files, names: &[String], from: &str) -> anyhow::Result<Files> {
    if names.is_empty() {
        return Ok(files);
    }
    let all: Vec<&str> = files.iter().flat_map(|(_, s)| s.iter().map(|s| s.header.case.as_str())).collect();
    if let Some(unknown) = names.iter().find(|n| !all.contains(&n.as_str())) {
        anyhow::bail!(
            "--case \"{unknown}\": no case of the vectors ({from}) has this name; {}",
            nearest(unknown, &all)
        );
    }
    Ok(files
        .into_iter()
        .map(|(file, segments)| (file, segments.into_iter().filter(|s| names.contains(&s.header.case)).collect()))
        .filter(|(_, segments): &(String, Vec<Segment>)| !segments.is_empty())
        .collect())
}

/// The names of `all` nearest to `name`, in words: a few within a small edit distance or
/// holding it, else the groups the names come in.
fn nearest(name: &str, all: &[&str]) -> String {
    let lower = name.to_lowercase();
    let bound = 2 + name.chars().count() / 4;
    let mut near: Vec<(usize, &str)> = all
        .iter()
        .map(|&n| (edit_distance(&lower, &n.to_lowercase()), n))
        .filter(|&(d, n)| d <= bound || (lower.len() >= 3 && n.to_lowercase().contains(&lower)))
        .collect();
    near.sort();
    near.dedup();
    if near.is_empty() {
        let mut groups: Vec<&str> = all.iter().map(|n| n.split_once('/').map_or(*n, |(g, _)| g)).collect();
        groups.sort_unstable();
        groups.dedup();
        return format!(
            "names are GROUP/NAME (`window/exactly-24h`), of the groups {} (`--write-vectors DIR` writes the \
             vectors out to read them)",
            groups.join(", ")
        );
    }
    let names: Vec<&str> = near.iter().take(5).map(|&(_, n)| n).collect();
    format!("the nearest: {}", names.join(", "))
}

/// The Levenshtein distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substituted = diagonal + usize::from(ca != cb);
            diagonal = row[j + 1];
            row[j + 1] = substituted.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

/// `--write-vectors DIR`: the built-in vectors as files in `dir`. Every file is checked before
/// any is written, so that a refusal leaves the directory as it was; each is written whole
/// (a temporary file renamed into place).
fn write_vectors(dir: &Path) -> anyhow::Result<bool> {
    const FLAG: &str = "--write-vectors";
    crate::input::check_directory(FLAG, dir)?;
    let mut kept = Vec::new();
    let mut new = Vec::new();
    for (name, bytes) in BUILT_IN {
        let path = dir.join(name);
        let shown = path.display();
        match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => new.push((name, bytes, path)),
            Err(e) => anyhow::bail!("{FLAG} {}: {shown}: {}", dir.display(), crate::input::words(&e)),
            // Read only a regular file (a FIFO would never end, a device might not).
            Ok(_) if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) => anyhow::bail!(
                "{FLAG} {}: {shown} is there and is not a regular file; it is not replaced (move it away, or give \
                 another directory); nothing was written",
                dir.display()
            ),
            Ok(_) => match std::fs::read(&path) {
                Ok(there) if there == bytes => kept.push(path),
                Ok(_) => anyhow::bail!(
                    "{FLAG} {}: {shown} is there and differs from the built-in {name}; it is not replaced \
                     (move it away, or give another directory); nothing was written",
                    dir.display()
                ),
                Err(e) => anyhow::bail!(
                    "{FLAG} {}: {shown} is there and cannot be read ({}); nothing was written",
                    dir.display(),
                    crate::input::words(&e)
                ),
            },
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("{FLAG} {}: cannot make it ({})", dir.display(), crate::input::words(&e)))?;
    let mut out = std::io::stdout().lock();
    for (name, bytes, path) in &new {
        crate::input::write_whole(FLAG, path, bytes)?;
        let cases = ledger_harness::conformance::read_bytes(bytes).map_or(0, |s| s.len());
        writeln!(out, "wrote {} ({cases} cases, built-in {name})", path.display())?;
    }
    for path in &kept {
        writeln!(out, "kept {} (already there, the same bytes)", path.display())?;
    }
    let quote = ledger_simulator::report::shell_quote;
    writeln!(
        out,
        "{} vector files in {}: `ledger-sim conform --exec COMMAND --vectors {}` runs them",
        BUILT_IN.len(),
        dir.display(),
        quote(&dir.display().to_string())
    )?;
    Ok(true)
}

/// The repository's conformance vectors, built into the binary so that `conform` runs from any
/// directory (and from an installed `ledger-sim`), in the order `--vectors` reads a directory.
const BUILT_IN: [(&str, &[u8]); 9] = [
    ("commands.jsonl", include_bytes!("../../../fixtures/conformance/commands.jsonl")),
    ("credit-rounding.jsonl", include_bytes!("../../../fixtures/conformance/credit-rounding.jsonl")),
    ("daily-window.jsonl", include_bytes!("../../../fixtures/conformance/daily-window.jsonl")),
    ("deadlines.jsonl", include_bytes!("../../../fixtures/conformance/deadlines.jsonl")),
    ("idempotency.jsonl", include_bytes!("../../../fixtures/conformance/idempotency.jsonl")),
    ("limits.jsonl", include_bytes!("../../../fixtures/conformance/limits.jsonl")),
    ("random.jsonl", include_bytes!("../../../fixtures/conformance/random.jsonl")),
    ("tier-changes.jsonl", include_bytes!("../../../fixtures/conformance/tier-changes.jsonl")),
    ("unknown-identities.jsonl", include_bytes!("../../../fixtures/conformance/unknown-identities.jsonl")),
];

fn built_in() -> anyhow::Result<Files> {
    BUILT_IN
        .iter()
        .map(|(name, bytes)| {
            let segments = ledger_harness::conformance::read_bytes(bytes)
                .map_err(|e| anyhow::anyhow!("the built-in vectors {name}: {e}"))?;
            Ok(((*name).to_owned(), segments))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Every `*.jsonl` of `fixtures/conformance` is built in, and nothing else: a vector file
    /// added to the directory and not to [`super::BUILT_IN`] fails here.
    #[test]
    fn the_built_in_vectors_are_the_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/conformance");
        let from_dir = ledger_harness::conformance::read_dir(&dir).expect("the repository's vectors");
        let built_in = super::built_in().expect("the built-in vectors read");
        let names = |v: &[(String, Vec<ledger_harness::conformance::Segment>)]| {
            v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>()
        };
        assert_eq!(names(&built_in), names(&from_dir));
        assert!(built_in == from_dir, "the built-in vectors differ from the directory's");
    }

    #[test]
    fn a_misspelt_case_is_answered_with_the_nearest_names() {
        let all = ["window/exactly-24h", "window/minus-1ms", "window/plus-1ms", "decide/free", "credit/zero"];
        assert_eq!(super::nearest("window/exactly-24", &all), "the nearest: window/exactly-24h");
        assert_eq!(super::nearest("plus-1ms", &all), "the nearest: window/plus-1ms");
        let none = super::nearest("nothing-like-it", &all);
        assert!(none.contains("of the groups credit, decide, window"), "{none}");
        assert_eq!(super::edit_distance("kitten", "sitting"), 3);
        assert_eq!(super::edit_distance("", "abc"), 3);
    }
}
