//! `--pg-mutant FILE`: one function of the reference schema with a deliberate bug.
//!
//! A mutant file names one function and one change of it, in SQL comments:
//!
//! ```sql
//! -- function: ledger_decide_locked
//! -- replace: SELECT * INTO idn FROM identities WHERE pubkey = p_pubkey FOR UPDATE;
//! -- with: SELECT * INTO idn FROM identities WHERE pubkey = p_pubkey;
//! ```
//!
//! The mutant is built from the function as the schema installs it today
//! ([`ledger_pg::schema::function_source`]), so it never goes stale: a change whose text is no
//! longer in the function exactly once is refused, naming the file. A file that holds a whole
//! `CREATE OR REPLACE FUNCTION` of its own (an old version of a function, kept as it was) is
//! installed as it is.

use std::path::Path;

use ledger_simulator::report::EngineKind;

/// The largest `--pg-mutant` file read (a function of the schema is a few kilobytes).
const MAX_PG_MUTANT_BYTES: u64 = 1 << 20;

/// The SQL that installs the `--pg-mutant` file at `path` for an engine of `kind`. Refused for
/// any engine but pg-reference. (`ledger-sim` refuses the option in a build without its
/// `mutants` feature.)
pub fn load_pg_mutant(path: &Path, kind: EngineKind) -> anyhow::Result<String> {
    if kind != EngineKind::PgReference {
        anyhow::bail!("--pg-mutant applies to --engine pg-reference only (it replaces one of its SQL functions)");
    }
    let shown = path.display();
    // A regular file of bounded size: `/dev/zero` or a fifo would be read forever.
    let meta = std::fs::metadata(path).map_err(|e| anyhow::anyhow!("--pg-mutant {shown}: {e}"))?;
    if !meta.is_file() || meta.len() > MAX_PG_MUTANT_BYTES {
        anyhow::bail!("--pg-mutant {shown}: not a regular file of at most {MAX_PG_MUTANT_BYTES} bytes");
    }
    let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("--pg-mutant {shown}: {e}"))?;
    build(path, &text)
}

/// The SQL that installs the mutant described by `text` (the file at `path`).
pub(crate) fn build(path: &Path, text: &str) -> anyhow::Result<String> {
    let shown = path.display();
    let directive = |key: &str| {
        let prefix = format!("-- {key}:");
        let found: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix(prefix.as_str())).map(|v| v.trim()).collect();
        match found.as_slice() {
            [] => Ok(None),
            [one] if !one.is_empty() => Ok(Some(*one)),
            _ => anyhow::bail!("--pg-mutant {shown}: `-- {key}:` must be given once, with a value"),
        }
    };
    let (function, replace, with) = (directive("function")?, directive("replace")?, directive("with")?);
    let (Some(function), Some(replace), Some(with)) = (function, replace, with) else {
        if function.is_some() || replace.is_some() || with.is_some() {
            anyhow::bail!("--pg-mutant {shown}: give all of `-- function:`, `-- replace:` and `-- with:`");
        }
        if text.contains("CREATE OR REPLACE FUNCTION") {
            return Ok(text.to_owned());
        }
        anyhow::bail!(
            "--pg-mutant {shown}: neither a change of one function (`-- function:`, `-- replace:`, `-- with:`) \
             nor a `CREATE OR REPLACE FUNCTION` of the schema"
        );
    };
    let source = ledger_pg::schema::function_source(function)
        .ok_or_else(|| anyhow::anyhow!("--pg-mutant {shown}: the schema has no function {function:?}"))?;
    if replace == with {
        anyhow::bail!("--pg-mutant {shown}: `-- with:` is the text it replaces: that is no mutant");
    }
    match source.matches(replace).count() {
        1 => {}
        0 => anyhow::bail!(
            "--pg-mutant {shown}: {function} no longer contains the text to replace ({replace:?}); the mutant \
             must follow the function"
        ),
        n => anyhow::bail!("--pg-mutant {shown}: the text to replace is in {function} {n} times; make it unique"),
    }
    let create = format!("CREATE FUNCTION {function}(");
    if source.matches(&create).count() != 1 {
        anyhow::bail!("--pg-mutant {shown}: {function}'s file does not create it once");
    }
    let replaced = format!("CREATE OR REPLACE FUNCTION {function}(");
    Ok(source.replacen(&create, &replaced, 1).replacen(replace, with, 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixtures() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/pg-mutants")
    }

    #[test]
    fn every_fixture_builds_against_todays_schema() {
        let mut n = 0;
        for entry in std::fs::read_dir(fixtures()).expect("fixtures/pg-mutants") {
            let path = entry.expect("a directory entry").path();
            let text = std::fs::read_to_string(&path).expect("a mutant file");
            let sql = build(&path, &text).unwrap_or_else(|e| panic!("{e}"));
            assert!(sql.contains("CREATE OR REPLACE FUNCTION"), "{}", path.display());
            n += 1;
        }
        assert!(n >= 6, "the mutants are in fixtures/pg-mutants");
    }

    #[test]
    fn a_change_differs_from_the_function_by_its_one_line() {
        let path = fixtures().join("ledger_credit_stripe_off_by_one.sql");
        let sql = build(&path, &std::fs::read_to_string(&path).unwrap()).unwrap();
        let source = ledger_pg::schema::function_source("ledger_credit").unwrap();
        let differ: Vec<(&str, &str)> = source.lines().zip(sql.lines()).filter(|(a, b)| a != b).collect();
        assert_eq!(source.lines().count(), sql.lines().count());
        assert_eq!(differ.len(), 2, "the CREATE line and the changed line: {differ:#?}");
        assert!(differ[1].1.contains("% (ledger_n_stripes() + 1)"), "{differ:#?}");
    }

    #[test]
    fn a_change_that_no_longer_applies_is_refused_naming_the_file() {
        let path = Path::new("m.sql");
        let stale = "-- function: ledger_credit\n-- replace: no such text\n-- with: anything\n";
        let e = build(path, stale).unwrap_err().to_string();
        assert!(e.contains("m.sql") && e.contains("no longer contains"), "{e}");
        let twice = "-- function: ledger_credit\n-- replace: p_paid\n-- with: p_paid + 1\n";
        assert!(build(path, twice).unwrap_err().to_string().contains("times"));
        let unknown = "-- function: ledger_nothing\n-- replace: a\n-- with: b\n";
        assert!(build(path, unknown).unwrap_err().to_string().contains("no function"));
        let partial = "-- function: ledger_credit\n-- replace: p_paid\n";
        assert!(build(path, partial).unwrap_err().to_string().contains("all of"));
        let same = "-- function: ledger_credit\n-- replace: v_credited_total\n-- with: v_credited_total\n";
        assert!(build(path, same).is_err());
        assert!(build(path, "DROP TABLE identities;").unwrap_err().to_string().contains("neither"));
    }

    #[test]
    fn a_mutant_is_loaded_for_pg_reference_from_a_regular_file_only() {
        let path = fixtures().join("ledger_credit_stripe_off_by_one.sql");
        assert!(load_pg_mutant(&path, EngineKind::PgReference).unwrap().contains("CREATE OR REPLACE FUNCTION"));
        let e = load_pg_mutant(&path, EngineKind::PgSeed).unwrap_err().to_string();
        assert!(e.contains("pg-reference only"), "{e}");
        let e = load_pg_mutant(Path::new("/dev/zero"), EngineKind::PgReference).unwrap_err().to_string();
        assert!(e.contains("/dev/zero") && e.contains("not a regular file"), "{e}");
        let e = load_pg_mutant(Path::new("/no/such/mutant.sql"), EngineKind::PgReference).unwrap_err().to_string();
        assert!(e.starts_with("--pg-mutant /no/such/mutant.sql:"), "{e}");
    }
}
