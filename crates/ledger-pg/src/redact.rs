//! Database URLs in messages: a password is never printed.

/// `url` with its password, if any, replaced by `***` (in the authority, `user:secret@`, or
/// as a `password=` parameter), for messages: a secret is never printed.
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

#[cfg(test)]
mod tests {
    use super::redacted;

    #[test]
    fn passwords_are_never_shown() {
        assert_eq!(redacted("postgres://u:hunter2@127.0.0.1:1/x"), "postgres://u:***@127.0.0.1:1/x");
        assert_eq!(redacted("postgres://u:p@ss@h/db?sslmode=disable"), "postgres://u:***@h/db?sslmode=disable");
        assert_eq!(redacted("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redacted("postgres://h/db?user=u&password=x&port=5"), "postgres://h/db?user=u&password=***&port=5");
        assert_eq!(redacted("not a url"), "not a url");
    }
}
