//! Database URLs in messages: a password is never printed, in any form; and a URL that is not
//! PostgreSQL's is refused before any connection.

use sqlx::postgres::PgConnectOptions;

pub use ledger_harness::text::redacted_text;

/// What is shown of a URL that does not parse, after its scheme (`postgres://`).
pub const UNPARSEABLE: &str = "<unparseable URL, not shown>";

/// `url`, a database URL given as one (an option's value, `DATABASE_URL`), as a message may
/// show it: its password, if any, replaced by `***`, wherever it is (`user:secret@`, with a
/// raw `@`, `#`, `/` or `?` in it: the user's part ends at the URL's last `@`; a `password=`
/// or `sslpassword=` parameter, its key of any case and percent-encoded or not). A URL that
/// does not parse is shown as its scheme alone (`postgres://<unparseable URL, not shown>`):
/// where its password ends is anyone's guess. A libpq key/value string (`host=h password=s`)
/// is shown with every password's value hidden, and anything else as [`UNPARSEABLE`].
pub fn redacted(url: &str) -> String {
    match url.split_once("://") {
        // `u:secret@h://x` parses, as the scheme `u` and a path.
        Some((scheme, _)) if !is_scheme(scheme) => UNPARSEABLE.to_owned(),
        Some(_) if url.parse::<PgConnectOptions>().is_ok() => ledger_harness::text::redacted(url),
        Some((scheme, _)) => format!("{scheme}://{UNPARSEABLE}"),
        None => conninfo_redacted(url).unwrap_or_else(|| UNPARSEABLE.to_owned()),
    }
}

/// Whether `url` (a URL or a libpq key/value string) carries a password: one given on the
/// command line is every local user's to read.
pub fn has_password(url: &str) -> bool {
    ledger_harness::text::redacted(url) != url || conninfo_redacted(url).is_some_and(|shown| shown != url)
}

/// Whether `s` is a URL's scheme (a letter, then letters, digits, `+`, `-` or `.`).
fn is_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// A libpq key/value connection string (`host=h port=5 password='a b'`), as libpq reads it
/// (white space around `=`; a value single-quoted, or up to white space; a backslash escaping
/// the character after it), with the value of every key naming a password (`password`,
/// `sslpassword`, any case) written `***`; `None` when `s` is no such string.
fn conninfo_redacted(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let space = |i: usize| b.get(i).is_some_and(u8::is_ascii_whitespace);
    let mut shown = Vec::new();
    let mut i = 0;
    loop {
        while space(i) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let key_start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        let key = &s[key_start..i];
        while space(i) {
            i += 1;
        }
        if key.is_empty() || b.get(i) != Some(&b'=') {
            return None;
        }
        i += 1;
        while space(i) {
            i += 1;
        }
        let value_start = i;
        if b.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match b.get(i) {
                    None => return None,
                    Some(b'\\') => i += 2,
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(_) => i += 1,
                }
            }
        } else {
            while i < b.len() && !space(i) {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
        }
        // The value ends at an ASCII byte (a quote, white space) or at the end.
        i = i.min(b.len());
        let value = &s[value_start..i];
        if ledger_harness::text::is_password_key(key) && !value.is_empty() {
            shown.push(format!("{key}=***"));
        } else {
            shown.push(format!("{key}={value}"));
        }
    }
    (!shown.is_empty()).then(|| shown.join(" "))
}

/// The connection options of the PostgreSQL URL `url`, given as `named` (`--database-url`,
/// `DATABASE_URL`). A URL that does not start with `postgres://` or `postgresql://`, or that
/// does not parse, is refused, before any connection (a garbled URL would otherwise be tried
/// against localhost), with a message naming `named` and the URL without its password.
pub fn database_url_options(named: &str, url: &str) -> Result<PgConnectOptions, String> {
    let shown = redacted(url);
    let is_postgres = url.split_once("://").is_some_and(|(scheme, _)| {
        scheme.eq_ignore_ascii_case("postgres") || scheme.eq_ignore_ascii_case("postgresql")
    });
    if !is_postgres {
        return Err(format!(
            "{named} {shown:?}: not a PostgreSQL URL: it must start with postgres:// or postgresql:// \
             (such as postgres://USER@HOST:5432/DATABASE)"
        ));
    }
    url.parse::<PgConnectOptions>()
        .map_err(|e| format!("{named} {shown:?}: not a valid PostgreSQL URL: {}", redacted_text(&e.to_string())))
}

#[cfg(test)]
mod tests {
    use super::{database_url_options, has_password, redacted, UNPARSEABLE};

    /// The password of every form of a database URL, which no form of it shows.
    #[test]
    fn no_form_of_a_database_url_shows_its_password() {
        for (url, shown) in [
            ("postgres://u:hunter2@127.0.0.1:5/db", "postgres://u:***@127.0.0.1:5/db".to_owned()),
            ("postgres://u@h/db", "postgres://u@h/db".to_owned()),
            // In the query: any case, a percent-encoded key.
            ("postgres://u@h/db?password=hunter2", "postgres://u@h/db?password=***".to_owned()),
            ("postgres://u@h/db?PASSWORD=hunter2&x=1", "postgres://u@h/db?PASSWORD=***&x=1".to_owned()),
            ("postgres://u@h/db?pass%77ord=hunter2", "postgres://u@h/db?pass%77ord=***".to_owned()),
            ("postgres://u@h/db?Pass%57ord=hunter2", "postgres://u@h/db?Pass%57ord=***".to_owned()),
            ("postgres://u@h/db?password=hun#ter2", "postgres://u@h/db?password=***".to_owned()),
            // A raw `@` or `#` in the password: the user's part ends at the last `@`.
            ("postgres://u:hunter2@x@127.0.0.1/db", "postgres://u:***@127.0.0.1/db".to_owned()),
            ("postgres://u:hunt@er#2@127.0.0.1/db", "postgres://u:***@127.0.0.1/db".to_owned()),
            // Parsed as host `u`, port 5 and a fragment: still the password is hidden.
            ("postgres://u:5#hunter2@127.0.0.1/db", "postgres://u:***@127.0.0.1/db".to_owned()),
            // No parse: the scheme alone.
            ("postgres://u:hunter2#@h:notaport/db", format!("postgres://{UNPARSEABLE}")),
            ("postgres://u:hunter2@[::1/db", format!("postgres://{UNPARSEABLE}")),
            ("postgresql://u:hu#nt:er2@h:x/db", format!("postgresql://{UNPARSEABLE}")),
            ("u:hunter2@h://x", UNPARSEABLE.to_owned()),
            ("postgres:u:hunter2@h/db", UNPARSEABLE.to_owned()),
            ("u:hunter2@h:5/db", UNPARSEABLE.to_owned()),
            ("hunter2", UNPARSEABLE.to_owned()),
            // libpq's key/value strings.
            ("host=h password=hunter2", "host=h password=***".to_owned()),
            ("host = h  PASSWORD = 'hun ter\\' 2' port=5", "host=h PASSWORD=*** port=5".to_owned()),
            ("password=hun\\ ter2 dbname=x", "password=*** dbname=x".to_owned()),
            ("sslpassword=hunter2", "sslpassword=***".to_owned()),
            ("host=h password='hunter2", UNPARSEABLE.to_owned()),
            ("host=h hunter2", UNPARSEABLE.to_owned()),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
            for secret in ["hunter2", "hunt", "ter2", "er#2"] {
                assert!(!redacted(url).contains(secret), "{url}");
            }
        }
        for url in ["postgres://u:x@h/db", "postgres://h/db?pass%77ord=x", "host=h password=x", "postgres:u:x@h"] {
            assert!(has_password(url), "{url}");
        }
        for url in ["postgres://u@h/db", "postgres://h/db?sslmode=require", "host=h", "postgres://h/db"] {
            assert!(!has_password(url), "{url}");
        }
    }

    #[test]
    fn only_a_postgres_url_that_parses_is_taken() {
        for url in ["postgres://u:p@127.0.0.1:5/db", "postgresql://h/db", "POSTGRES://h/db", "postgres:///db?host=/tmp"]
        {
            assert!(database_url_options("--database-url", url).is_ok(), "{url}");
        }
        for (url, says) in [
            ("gar:bage//x", "not a PostgreSQL URL"),
            ("", "not a PostgreSQL URL"),
            ("127.0.0.1:5432", "not a PostgreSQL URL"),
            ("mysql://u:hunter2@h/db", "not a PostgreSQL URL"),
            ("postgres:u:hunter2@h/db", "not a PostgreSQL URL"),
            ("postgres//u:hunter2@h/db", "not a PostgreSQL URL"),
            ("postgres://u:hunter2@h:notaport/db", "not a valid PostgreSQL URL"),
            ("postgres://u:hunter2@h:99999/db", "not a valid PostgreSQL URL"),
            ("postgres://u:hunter2@[::1/db", "not a valid PostgreSQL URL"),
        ] {
            let e = database_url_options("DATABASE_URL", url).unwrap_err();
            assert!(e.starts_with("DATABASE_URL \""), "{url}: {e}");
            assert!(e.contains(says) && !e.contains("hunter2"), "{url}: {e}");
        }
    }
}
