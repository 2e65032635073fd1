//! Database URLs in messages: a password is never printed; and a URL that is not PostgreSQL's
//! is refused before any connection.

use sqlx::postgres::PgConnectOptions;

pub use ledger_harness::text::{redacted, redacted_text};

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
    use super::database_url_options;

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
