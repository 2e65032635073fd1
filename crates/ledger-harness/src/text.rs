//! Text shown to a person that comes from elsewhere: a user's file or environment quoted in an
//! error, an implementation's error text. A password is never printed, and control characters
//! (a terminal's escape sequences, a right-to-left override) are shown as escapes, not obeyed.

/// `url` with its password, if any, replaced by `***` (in the authority, `user:secret@`, or
/// as a `...password=` parameter, its key percent-decoded and of any case), for messages: a
/// secret is never printed. The user's part ends at the last `@` of the URL. In a garbled URL
/// (no `://`), everything from the first `:` to the last `@` is hidden.
///
/// This is the lenient form, for a URL quoted in free text ([`redacted_text`]); a URL given as
/// one (an option's value) is shown by `ledger_pg::redacted`, which shows less of one that does
/// not parse.
pub fn redacted(url: &str) -> String {
    // What is hidden, as byte ranges of `url`: each of the user's part's password and each
    // password parameter's value, found in `url` as given (either may hold the other's
    // delimiters), then written `***` where they meet or overlap as one.
    let mut hidden: Vec<(usize, usize)> = Vec::new();
    let user_start = url.find("://").map_or(0, |i| i + 3);
    // The user's part ends at the last `@`, not at the first `/`, `?` or `#`: a password
    // written without percent-encoding may hold any of them (`u:pa/ss@h/db`, `u:p#ss@h/db`,
    // `u:p@ss@h/db`). An `@` later in the URL (in its query) hides a little more than the
    // password, never less. In a garbled URL (`postgres:u:secret@h`, `u:secret@h`), where the
    // user's part starts is unknown: everything from the first `:` to the last `@`.
    if let Some(at) = url[user_start..].rfind('@').map(|i| user_start + i) {
        if let Some(colon) = url[user_start..at].find(':').map(|i| user_start + i) {
            hidden.push((colon + 1, at));
        }
    }
    // Its parameters (`?password=`, `&sslpassword=`, `?pass%77ord=`, `?PASSWORD=`), each
    // whole up to the next `&` (a `#`, `,` or `;` may be in a password), with any part after
    // it that is no `key=value` (a raw `&` in the password). The query starts at the first `?`,
    // which may be in the user's password (hidden above either way).
    if let Some(q) = url.find('?') {
        let mut start = q + 1;
        let mut hiding: Option<usize> = None;
        for p in url[q + 1..].split('&') {
            let end = start + p.len();
            match p.split_once('=') {
                Some((key, _)) if is_password_key(key) => {
                    if let Some(from) = hiding.take() {
                        hidden.push((from, start - 1));
                    }
                    hiding = Some(start + key.len() + 1);
                }
                None if hiding.is_some() => {}
                _ => {
                    if let Some(from) = hiding.take() {
                        hidden.push((from, start - 1));
                    }
                }
            }
            start = end + 1;
        }
        if let Some(from) = hiding {
            hidden.push((from, url.len()));
        }
    }
    hidden.sort_unstable();
    let mut out = String::with_capacity(url.len());
    let mut shown_to = 0;
    let mut i = 0;
    while i < hidden.len() {
        let (from, mut to) = hidden[i];
        while i + 1 < hidden.len() && hidden[i + 1].0 <= to {
            to = to.max(hidden[i + 1].1);
            i += 1;
        }
        let from = from.max(shown_to);
        out.push_str(&url[shown_to..from]);
        out.push_str("***");
        shown_to = to.max(from);
        i += 1;
    }
    out.push_str(&url[shown_to..]);
    // And a libpq key/value string's (`host=h password=secret`).
    hidden_passwords(&out)
}

/// Whether the key of a URL's parameter names a password (`password`, `sslpassword`, any
/// case), read as a server reads it: percent-escapes decoded (`pass%77ord`), `+` a space.
pub fn is_password_key(key: &str) -> bool {
    let bytes = key.as_bytes();
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(hi), Some(lo)) => {
                decoded.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b'+', ..) => {
                decoded.push(b' ');
                i += 1;
            }
            (b, ..) => {
                decoded.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).to_ascii_lowercase().contains("password")
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
        // A password may hold a quote, a bracket, a `/` or a `?` (`u:pa'ss@h`, shell-quoted
        // `u:pa'\''ss@h`, `u:pa/ss@h`): the URL runs at least to the last `@` before the
        // next white space. And one may hold a space (`u:pa ss@h` in a `.env`): a user and
        // password with no `@` before the space run to an `@` later on the line, if no `/`
        // comes first. Either hides a little more than the password, never less.
        let authority = at + 3;
        let token_end = rest[authority..].find(char::is_whitespace).map_or(rest.len(), |i| authority + i);
        let token = &rest[authority..token_end];
        let has_user_colon = token[..token.find(['/', '?', '#']).unwrap_or(token.len())].contains(':');
        let past_at = match token.rfind('@') {
            Some(i) => authority + i,
            None if has_user_colon => {
                let line_end = rest[token_end..].find('\n').map_or(rest.len(), |i| token_end + i);
                match rest[token_end..line_end].find('@') {
                    Some(i) if !rest[token_end..token_end + i].contains('/') => token_end + i,
                    _ => at,
                }
            }
            None => at,
        };
        let end = rest[past_at..].find(is_end).map_or(rest.len(), |i| past_at + i);
        out.push_str(&rest[..start]);
        out.push_str(&redacted(&rest[start..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    hidden_passwords(&out)
}

/// `text` with the value of every `...password` key hidden: `password=secret`,
/// `sslpassword=secret`, `PGPASSWORD=secret`, `password = "secret"` (any case), JSON's
/// `"password": "secret"`, and `POSTGRES_PASSWORD: secret`; the value being a quoted string
/// (escaped quotes within it) or what runs to the next space, quote, `&`, `;`, `,` or closing
/// bracket.
fn hidden_passwords(text: &str) -> String {
    const KEY: &str = "password";
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = lower[at..].find(KEY) {
        let key_end = at + found + KEY.len();
        let bytes = text.as_bytes();
        // A JSON key (`"password": "secret"`): its closing quote.
        let json_key = bytes.get(key_end) == Some(&b'"');
        let mut i = key_end + usize::from(json_key);
        let skip_spaces = |mut i: usize| {
            while i < bytes.len() && (bytes[i] == b' ' || bytes[i] == b'\t') {
                i += 1;
            }
            i
        };
        i = skip_spaces(i);
        // `:` only after an upper-case key (`POSTGRES_PASSWORD: x`): a message's own prose
        // says "without its password: give it in PGPASSWORD".
        let upper = text[key_end - KEY.len()..key_end] == *"PASSWORD";
        if i >= bytes.len() || !(bytes[i] == b'=' || (bytes[i] == b':' && (upper || json_key))) {
            out.push_str(&text[at..key_end]);
            at = key_end;
            continue;
        }
        i = skip_spaces(i + 1);
        let value_end = match bytes.get(i) {
            Some(&q @ (b'"' | b'\'')) => {
                // The closing quote, past any quote escaped by a backslash.
                let mut c = i + 1;
                while c < bytes.len() && bytes[c] != q {
                    c += if bytes[c] == b'\\' { 2 } else { 1 };
                }
                let close = if c < bytes.len() { c + 1 } else { text.len() };
                out.push_str(&text[at..i]);
                out.push(q as char);
                out.push_str("***");
                if close <= text.len() && close > i + 1 && text.as_bytes()[close - 1] == q {
                    out.push(q as char);
                }
                close
            }
            // Hidden already (a URL's parameter, up to its `&` or `#`).
            _ if text[i..].starts_with("***") => {
                out.push_str(&text[at..i + 3]);
                i + 3
            }
            _ => {
                // A backslash escapes the character after it, as a shell reads it
                // (`PGPASSWORD=Se\'cr`, `pa\ ss`): part of the value.
                let mut end = i;
                while end < bytes.len() {
                    match bytes[end] {
                        b'\\' => end += 2,
                        c if c.is_ascii_whitespace() || b"\"'&;,)]}".contains(&c) => break,
                        _ => end += 1,
                    }
                }
                // Never inside a character: a backslash before a multi-byte one steps into it.
                let end = (end.min(text.len())..=text.len()).find(|&e| text.is_char_boundary(e)).unwrap_or(text.len());
                out.push_str(&text[at..i]);
                if end > i {
                    out.push_str("***");
                }
                end
            }
        };
        at = value_end;
    }
    out.push_str(&text[at..]);
    out
}

/// `text` as shown to a person: every password hidden ([`redacted_text`]), then every control
/// character escaped ([`printable`]). Hide first, cut after: a URL cut before its `@` no
/// longer looks like one.
pub fn shown(text: &str) -> String {
    printable(&redacted_text(text)).into_owned()
}

/// `text` as a terminal shows it safely: every control character but a newline and a tab
/// (C0, DEL, C1) and every bidirectional override or isolate (U+202A..U+202E,
/// U+2066..U+2069) written as its escape, `\u{1b}`, so that a name or message from a file or an
/// implementation cannot move the cursor, recolour the terminal or reorder what follows it.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if !text.contains(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::{printable, redacted, redacted_text};

    #[test]
    fn passwords_in_free_text_are_never_shown() {
        let line = r#"at line 1: DATABASE_URL = "postgres://u:hunter2@127.0.0.1/db" and mysql://a:b@h/x?password=s"#;
        let shown = redacted_text(line);
        assert!(!shown.contains("hunter2") && !shown.contains(":b@") && !shown.contains("=s"), "{shown}");
        assert!(shown.contains("postgres://u:***@127.0.0.1/db") && shown.contains("mysql://a:***@h/x?password=***"));
        assert_eq!(redacted_text("no url here: a://b"), "no url here: a://b");
        assert_eq!(redacted_text("é://x:y@h é"), "é://x:***@h é");
        assert_eq!(redacted_text(""), "");
        // A quote or a bracket in the password, raw, shell-quoted or in Rust's `{:?}`.
        for (text, shown) in [
            ("DATABASE_URL postgres://u:pa'ss@h/db: refused", "DATABASE_URL postgres://u:***@h/db: refused"),
            (
                "--database-url 'postgres://u:pa'\\''ss@h/db' --seed 1",
                "--database-url 'postgres://u:***@h/db' --seed 1",
            ),
            (r#"url "postgres://u:pa\"ss@h:5/db" is"#, r#"url "postgres://u:***@h:5/db" is"#),
            ("(postgres://u:a)b(c@h)", "(postgres://u:***@h)"),
            ("'postgres://h/db' and 'x@y'", "'postgres://h/db' and 'x@y'"),
            ("'postgres://host' 'a@b'", "'postgres://host' 'a@b'"),
            // A `/`, a `?` or a space in a password not percent-encoded.
            (
                r#"--database-url "postgres://hb:pa/ss@127.0.0.1:5/db": invalid"#,
                r#"--database-url "postgres://hb:***@127.0.0.1:5/db": invalid"#,
            ),
            ("postgres://hb:RO?XYZ@h:5/db", "postgres://hb:***@h:5/db"),
            ("1 | DATABASE_URL=postgres://u:pa ssXYZ@h/db", "1 | DATABASE_URL=postgres://u:***@h/db"),
            (r#"1 | url = "postgres://u:pa/ssXYZ@h/db""#, r#"1 | url = "postgres://u:***@h/db""#),
            (r#"1 | DATABASE_URL="postgres://u:Se'crXYZ@h/db""#, r#"1 | DATABASE_URL="postgres://u:***@h/db""#),
            // Escaped by a shell.
            (r"PGPASSWORD=Se\'crXYZ ledger-sim serve", "PGPASSWORD=*** ledger-sim serve"),
            (r#"PGPASSWORD=ab\"XYZ x"#, "PGPASSWORD=*** x"),
            (r"PGPASSWORD=pa\ XYZ x", "PGPASSWORD=*** x"),
            (r"DATABASE_URL=postgres://u:pa\'XYZ@h/db x", "DATABASE_URL=postgres://u:***@h/db x"),
            (r"PGPASSWORD=ab\", "PGPASSWORD=***"),
            (r"PGPASSWORD=ab\é", "PGPASSWORD=***"),
            // A URL with no password and a later `@` on its line keeps its text.
            ("postgres://h/db and a@b", "postgres://h/db and a@b"),
        ] {
            assert_eq!(redacted_text(text), shown, "{text}");
        }
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
        // A raw `@`, `#`, `/` or `?` in the password: the user's part ends at the last `@`.
        assert_eq!(redacted("postgres://u:p@ss@host/db"), "postgres://u:***@host/db");
        assert_eq!(redacted("postgres://u:p#ss@host/db"), "postgres://u:***@host/db");
        assert_eq!(redacted("postgres://u:5#ss@host:7/db"), "postgres://u:***@host:7/db");
        assert_eq!(redacted("postgres://u:p@s#s/w?o@rd@host/db?x=1"), "postgres://u:***@host/db?x=1");
        assert_eq!(redacted("postgres:u:p#s@s@h/db"), "postgres:***@h/db");
        // An `@` in the query hides more than the password, never less.
        assert_eq!(redacted("postgres://u:pw@h/db?application_name=a@b"), "postgres://u:***@b");
        assert_eq!(redacted("postgres://h/db?application_name=a@b"), "postgres://h/db?application_name=a@b");
    }

    #[test]
    fn password_parameters_are_hidden_whatever_their_key_looks_like() {
        for (url, shown) in [
            ("postgres://h/db?password=x", "postgres://h/db?password=***"),
            ("postgres://h/db?PASSWORD=x&sslmode=require", "postgres://h/db?PASSWORD=***&sslmode=require"),
            ("postgres://h/db?pass%77ord=x", "postgres://h/db?pass%77ord=***"),
            ("postgres://h/db?%50ASS%57ORD=x&a=1", "postgres://h/db?%50ASS%57ORD=***&a=1"),
            ("postgres://h/db?ssl%70assword=x", "postgres://h/db?ssl%70assword=***"),
            // A raw `&` in the password: what follows it up to the next `key=` is hidden too.
            ("postgres://h/db?password=a&b&sslmode=require", "postgres://h/db?password=***&sslmode=require"),
            // An `@` in a parameter's password, and a password parameter in the user's password:
            // both are hidden, and what lies between.
            ("postgres://u@h:1/db?pass%77ord=S@h:1%23c@etXYZ", "postgres://u@h:***"),
            ("postgres://u:a?b=c&password=@h/db", "postgres://u:***"),
            ("postgres://u:pw@h/db?password=x@y&a=1", "postgres://u:***&a=1"),
            // A malformed escape is no password key, and is kept.
            ("postgres://h/db?pass%7word=x", "postgres://h/db?pass%7word=x"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
            assert_eq!(redacted_text(&format!("at {url} then")), format!("at {shown} then"), "{url}");
        }
        assert!(super::is_password_key("pass%77ord") && super::is_password_key("SslPassword"));
        assert!(!super::is_password_key("passfile") && !super::is_password_key("pass%2"));
    }

    #[test]
    fn passwords_outside_urls_are_never_shown() {
        for (text, shown) in [
            ("host=127.0.0.1 port=1 password=s3cr3t", "host=127.0.0.1 port=1 password=***"),
            ("postgres://h/db?sslmode=require&sslpassword=k3y", "postgres://h/db?sslmode=require&sslpassword=***"),
            ("PGPASSWORD=hunter2 psql", "PGPASSWORD=*** psql"),
            (r#"DATABASE_URL = "host=h password=hunter2""#, r#"DATABASE_URL = "host=h password=***""#),
            (r#"db_password = "two words""#, r#"db_password = "***""#),
            ("POSTGRES_PASSWORD: 'x y' then", "POSTGRES_PASSWORD: '***' then"),
            (
                "without its password: give it in PGPASSWORD (or ~/.pgpass)",
                "without its password: give it in PGPASSWORD (or ~/.pgpass)",
            ),
            ("password=", "password="),
            ("the password is wrong", "the password is wrong"),
            ("password=***", "password=***"),
            ("a Password = b, c", "a Password = ***, c"),
            (r#"password="unclosed"#, r#"password="***"#),
        ] {
            assert_eq!(redacted_text(text), shown, "{text}");
        }
        assert_eq!(redacted("host=h password=s3cr3t"), "host=h password=***");
        // In a URL's query a parameter is hidden whole, up to the next `&` or `#`.
        for (url, shown) in [
            ("postgres://h/db?password=ab,cd&x=1", "postgres://h/db?password=***&x=1"),
            // A `#` in a password's value is no fragment: hidden with the rest.
            ("postgres://h/db?sslpassword=a;b)c#frag", "postgres://h/db?sslpassword=***"),
            ("postgres://h/db?password=ab#cd&x=1", "postgres://h/db?password=***&x=1"),
            ("postgres://h/db?PassWord=\"b", "postgres://h/db?PassWord=***"),
        ] {
            assert_eq!(redacted(url), shown, "{url}");
        }
        // JSON, and a quote escaped within a quoted value.
        assert_eq!(redacted_text(r#"{"password":"hunter2","x":1}"#), r#"{"password":"***","x":1}"#);
        assert_eq!(redacted_text(r#"{"db_password" : "a\"b"}"#), r#"{"db_password" : "***"}"#);
        assert_eq!(redacted_text(r#"password = "p\"hunter2" after"#), r#"password = "***" after"#);
    }

    #[test]
    fn control_characters_are_shown_as_escapes() {
        assert_eq!(printable("case \u{1b}[31mRED\u{7}"), "case \\u{1b}[31mRED\\u{7}");
        assert_eq!(printable("a\u{202E}b\u{9b}c"), "a\\u{202e}b\\u{9b}c");
        assert_eq!(printable("two\nlines\tand é 😀"), "two\nlines\tand é 😀");
        assert!(matches!(printable("plain"), std::borrow::Cow::Borrowed(_)));
    }
}
