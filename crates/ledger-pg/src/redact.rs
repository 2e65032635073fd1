//! Database URLs in messages: a password is never printed; and a URL that is not PostgreSQL's
//! is refused before any connection.

use sqlx::postgres::PgConnectOptions;

/// `url` with its password, if any, replaced by `***` (in the authority, `user:secret@`, or
/// as a `password=` parameter), for messages: a secret is never printed. In a garbled URL
/// (no `://`), everything from the first `:` to the last `@` is hidden.
pub fn redacted(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(scheme_end) = out.find("://").map(|i| i + 3) {
        let rest = &out[scheme_end..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            if let Some(colon) = rest[..at].find(':') {
                out = format!("{}{}:***{}", &out[..scheme_end], &rest[..colon], &rest[at..]);
            }
        }
    } else {
        // Garbled (`postgres:u:secret@h`, `u:secret@h`): where the user ends is unknown, so
        // everything from the first `:` to the last `@` is hidden.
        let head_end = out.find('?').unwrap_or(out.len());
        if let Some(at) = out[..head_end].rfind('@') {
            if let Some(colon) = out[..at].find(':') {
                out = format!("{}***{}", &out[..=colon], &out[at..]);
            }
        }
    }
    if let Some(query) = out.find('?') {
        let (head, params) = out.split_at(query + 1);
        let params: Vec<String> = params
            .split('&')
            .map(|p| if p.starts_with("password=") { "password=***".to_owned() } else { p.to_owned() })
            .collect();
        out = format!("{head}{}", params.join("&"));
    }
    out
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

/// `text` with the password of every URL in it replaced by `***` (see [`redacted`]): for any
/// message that may quote a user's file or environment, such as a parser's error showing the
/// line it could not read.
pub fn redacted_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The URL starts after the last separator before its scheme and ends at the next one.
        let is_end = |c: char| c.is_whitespace() || "\"'`<>()[]{},;".contains(c);
        let start = rest[..at].rfind(is_end).map_or(0, |i| i + rest[i..].chars().next().map_or(1, char::len_utf8));
        let end = rest[at..].find(is_end).map_or(rest.len(), |i| at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redacted(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{database_url_options, redacted, redacted_text};

    #[test]
    fn passwords_in_free_text_are_never_shown() {
        let line = r#"at line 1: DATABASE_URL = "postgres://u:hunter2@127.0.0.1/db" and mysql://a:b@h/x?password=s"#;
        let shown = redacted_text(line);
        assert!(!shown.contains("hunter2") && !shown.contains(":b@") && !shown.contains("=s"), "{shown}");
        assert!(shown.contains("postgres://u:***@127.0.0.1/db") && shown.contains("mysql://a:***@h/x?password=***"));
        assert_eq!(redacted_text("no url here: a://b"), "no url here: a://b");
        assert_eq!(redacted_text("é://x:y@h é"), "é://x:***@h é");
        assert_eq!(redacted_text(""), "");
    }

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(redacted("postgres://u:hunter2@127.0.0.1:1/x"), "postgres://u:***@127.0.0.1:1/x");
        assert_eq!(redacted("postgres://u:p@ss@h/db?sslmode=disable"), "postgres://u:***@h/db?sslmode=disable");
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redacted("postgres://h/db?user=u&password=x&port=5"), "postgres://h/db?user=u&password=***&port=5");
        assert_eq!(redacted("not a url"), "not a url");
        // Garbled: no `//`, or no scheme at all.
        assert_eq!(redacted("postgres:u:hunter2@h/db"), "postgres:***@h/db");
        assert_eq!(redacted("postgres:/u:hunter2@h/db"), "postgres:***@h/db");
        assert_eq!(redacted("u:hunter2@h:5/db?sslmode=disable"), "u:***@h:5/db?sslmode=disable");
        assert_eq!(redacted("gar:bage//x"), "gar:bage//x");
        assert_eq!(redacted("gar:bage//x?password=s"), "gar:bage//x?password=***");
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
