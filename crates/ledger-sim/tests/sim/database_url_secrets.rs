//! A database URL's password is never printed, in any form: with a raw `@` and `#` in it, in a
//! URL that parses (to a server that does not answer) and in one that does not, in a `password=`
//! parameter, on a mistaken command line, in `PGPASSWORD`; and a password given on the command
//! line is warned of, once. Needs no server: 127.0.0.1:1 refuses every connection.

use std::process::Command;

/// The binary's exit code and all it printed, stdout then stderr, for `args` with `env` set
/// (and `DATABASE_URL` and `PGPASSWORD` unset unless `env` sets them).
fn sim(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ledger-sim"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("PGPASSWORD")
        .envs(env.iter().copied())
        .output()
        .expect("ledger-sim runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), stdout.into_owned(), stderr.into_owned())
}

/// The password of every URL below, and its parts that a wrong cut would show.
const SECRETS: [&str; 5] = ["Se@127.0.0.1:1#cr@etXYZ", "Se@", "#cr", "cr@et", "etXYZ"];

const WARNING: &str = "warning: --database-url holds a password";

fn assert_never_shown(what: &str, stdout: &str, stderr: &str) {
    for secret in SECRETS {
        assert!(!stdout.contains(secret) && !stderr.contains(secret), "{what}: {secret:?} shown:\n{stdout}\n{stderr}");
    }
}

#[test]
fn a_password_with_at_and_hash_is_never_shown_by_a_run_or_an_audit() {
    // Parses (as the user `ledger`, the password `Se`, the host 127.0.0.1, port 1, and a
    // fragment): a connection is tried, and refused.
    let parses = "postgres://ledger:Se@127.0.0.1:1#cr@etXYZ@127.0.0.1:1/db";
    // Does not parse (`Se@127.0.0.1:x` has no port): refused before any connection.
    let garbled = "postgres://ledger:Se@127.0.0.1:x#cr@etXYZ@127.0.0.1:1/db";
    // In a parameter, its key percent-encoded.
    let parameter = "postgres://ledger@127.0.0.1:1/db?pass%77ord=Se@127.0.0.1:1%23cr@etXYZ";
    for url in [parses, garbled, parameter] {
        let run = ["run", "--engine", "pg-reference", "--seeds", "0..1", "--steps", "10", "--database-url", url];
        let audit = ["audit", "--database-url", url];
        let audit_eq = format!("--database-url={url}");
        for args in [&run[..], &audit[..], &["audit", &audit_eq]] {
            let (code, stdout, stderr) = sim(args, &[]);
            let what = format!("{args:?}");
            assert_eq!(code, 2, "{what}: {stdout}{stderr}");
            assert_never_shown(&what, &stdout, &stderr);
            assert_eq!(stderr.matches(WARNING).count(), 1, "{what}: warned once:\n{stderr}");
            assert!(stderr.contains("PGPASSFILE"), "{what}: {stderr}");
            if url == garbled {
                assert!(stderr.contains("postgres://<unparseable URL, not shown>"), "{what}: {stderr}");
            } else {
                assert!(stderr.contains("postgres://ledger"), "{what}: the database is named:\n{stderr}");
            }
        }
        // The same URL in DATABASE_URL, which audit reads: nothing on the command line, no
        // warning, and nothing shown.
        let (code, stdout, stderr) = sim(&["audit"], &[("DATABASE_URL", url)]);
        assert_eq!(code, 2, "{stdout}{stderr}");
        assert_never_shown("DATABASE_URL", &stdout, &stderr);
        assert!(!stderr.contains(WARNING), "{stderr}");
    }

    // The password in PGPASSWORD is never echoed, nor warned of.
    let (code, stdout, stderr) =
        sim(&["audit", "--database-url", "postgres://ledger@127.0.0.1:1/db"], &[("PGPASSWORD", SECRETS[0])]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_never_shown("PGPASSWORD", &stdout, &stderr);
    assert!(!stderr.contains(WARNING), "{stderr}");

    // A URL given where the command takes none: the error quoting it hides its password.
    let (code, stdout, stderr) = sim(&["audit", parses], &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert_never_shown("a stray argument", &stdout, &stderr);
    assert!(stderr.contains("unexpected argument"), "{stderr}");
}
