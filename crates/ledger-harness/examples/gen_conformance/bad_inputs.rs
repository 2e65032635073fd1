//! Traces the reader must refuse (`fixtures/conformance/bad-input/`): each with the line and
//! the kind of error it must give. Most are cut after their bad line (the reader stops there,
//! before it could miss the footer); the footer's own cases are whole traces.

use ledger_core::Tier;
use ledger_harness::conformance::{write_string, write_version, Footer, Header, Step};

use crate::vectors::{config, credit, decide, record, tier, user, Gen};

/// A trace the reader must refuse: its text and the error it must give.
pub struct Bad {
    pub(crate) name: &'static str,
    pub(crate) note: &'static str,
    pub(crate) text: String,
    pub(crate) line: usize,
    pub(crate) kind: &'static str,
}

fn header_line() -> String {
    Header { case: "bad-input".into(), description: String::new(), rules: Vec::new(), config: config() }.to_line()
}

/// A valid step line with `from` replaced by `to` (the raw text, so any byte can go in).
fn altered(step: &Step, from: &str, to: &str) -> String {
    let line = step.to_line();
    assert!(line.contains(from), "{from} not in {line}");
    line.replacen(from, to, 1)
}

pub fn bad_inputs() -> Vec<Bad> {
    let a = user(1);
    let mut g = Gen::new();
    g.case("template", "", config());
    let _ = g.step(tier(a, Tier::Elite));
    let _ = g.step(decide(1, a, 40));
    let _ = g.step(credit(1, 1_000));
    let _ = g.step(record(1, 40));
    let steps = g.segments[0].1.clone();
    let (set, dec, cred, rec) = (&steps[0], &steps[1], &steps[2], &steps[3]);
    let h = header_line();
    let pk = a.to_string();
    let two = |second: String| format!("{h}\n{}\n{second}\n", set.to_line());
    let mut out = Vec::new();
    let mut bad = |name, note, text: String, line, kind| out.push(Bad { name, note, text, line, kind });

    // Amounts at and beyond the limits.
    let paid = "\"paid_sats\":1000";
    for (name, value, note) in [
        ("paid-i64-max-plus-1", "9223372036854775808", "2^63: one more than a BIGINT holds"),
        ("paid-u64-max", "18446744073709551615", "2^64-1: a u64, not a BIGINT"),
        ("paid-beyond-u64", "18446744073709551616", "2^64: beyond any 64-bit integer"),
        ("paid-huge", "340282366920938463463374607431768211456", "2^128"),
        ("paid-negative", "-1", "negative"),
        ("paid-negative-zero", "-0", "a sign, even on zero"),
        ("paid-fraction", "1000.5", "not whole"),
        ("paid-exponent", "1e3", "an exponent, even of a whole number"),
        ("paid-decimal-point", "1000.0", "a decimal point, even of a whole number"),
    ] {
        bad(
            name,
            note,
            format!("{h}\n{}\n", altered(cred, paid, &format!("\"paid_sats\":{value}"))),
            2,
            "number_out_of_range",
        );
    }
    bad(
        "estimate-i64-max-plus-1",
        "an estimate of 2^63",
        two(altered(dec, "\"estimated_sats\":40", "\"estimated_sats\":9223372036854775808")),
        3,
        "number_out_of_range",
    );
    bad(
        "request-id-u64-max",
        "a request id of 2^64-1",
        two(altered(dec, "\"request_id\":1", "\"request_id\":18446744073709551615")),
        3,
        "number_out_of_range",
    );
    bad(
        "now-i64-max-plus-1",
        "a time of 2^63",
        two(altered(dec, &format!("\"now\":{}", dec.now.0), "\"now\":9223372036854775808")),
        3,
        "number_out_of_range",
    );
    bad(
        "totals-i64-max-plus-1",
        "an expected pool of 2^63",
        two(altered(dec, "\"pool_sats\":9960", "\"pool_sats\":9223372036854775808")),
        3,
        "number_out_of_range",
    );
    bad(
        "config-pool-u64-max",
        "a genesis pool of 2^64-1",
        format!("{}\n", replaced(&h, "\"pool_initial_sats\":10000", "\"pool_initial_sats\":18446744073709551615")),
        1,
        "number_out_of_range",
    );
    bad(
        "string-amount",
        "an amount written as a string",
        format!("{h}\n{}\n", altered(cred, paid, "\"paid_sats\":\"1000\"")),
        2,
        "bad_field",
    );

    // Bad pubkeys.
    for (name, value, note) in [
        ("pubkey-uppercase", pk.to_uppercase(), "uppercase hex"),
        ("pubkey-short", pk[..63].to_owned(), "63 characters"),
        ("pubkey-long", format!("{pk}0"), "65 characters"),
        ("pubkey-not-hex", format!("g{}", &pk[1..]), "a non-hex character"),
        (
            "pubkey-npub",
            "npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg".to_owned(),
            "bech32 npub, not hex",
        ),
        ("pubkey-empty", String::new(), "empty"),
        ("pubkey-0x", format!("0x{}", &pk[2..]), "a 0x prefix"),
    ] {
        bad(name, note, format!("{h}\n{}\n", altered(set, &pk, &value)), 2, "bad_pubkey");
    }
    bad(
        "pubkey-number",
        "a pubkey that is not a string",
        format!("{h}\n{}\n", altered(set, &format!("\"{pk}\""), "42")),
        2,
        "bad_field",
    );

    // Garbled lines.
    bad("not-json", "a truncated line", format!("{h}\n{}\n", &set.to_line()[..30]), 2, "not_json");
    bad("blank-line", "an empty line between steps", format!("{h}\n\n{}\n", set.to_line()), 2, "not_json");
    bad("array-line", "a JSON array, not an object", format!("{h}\n[1,2]\n"), 2, "not_json");
    bad(
        "not-utf8",
        "a line that is not UTF-8 (a Latin-1 e-acute, byte E9, in a tier)",
        format!("{h}\n{}\n", altered(set, "\"tier\":\"elite\"", "\"tier\":\"\u{1}lite\"")),
        2,
        "not_json",
    );
    bad("empty-file", "no header at all", String::new(), 1, "missing_header");
    bad("step-first", "a step before any header", format!("{}\n", set.to_line()), 1, "missing_header");
    bad(
        "wrong-format",
        "another format name",
        format!("{}\n", replaced(&h, "ledger-conformance", "ledger-trace")),
        1,
        "bad_header",
    );
    bad(
        "version-3",
        "a version this reader does not know",
        format!("{}\n", replaced(&h, "\"version\":2", "\"version\":3")),
        1,
        "unsupported_version",
    );
    bad(
        "header-unknown-key",
        "an unknown header key",
        format!("{}\n", replaced(&h, "\"case\"", "\"seed\":1,\"case\"")),
        1,
        "bad_header",
    );
    bad(
        "config-missing-key",
        "a config without its credit rate",
        format!("{}\n", replaced(&h, ",\"credit_bps\":1000", "")),
        1,
        "bad_header",
    );
    bad(
        "config-bps-10001",
        "a credit rate above 100 %",
        format!("{}\n", replaced(&h, "\"credit_bps\":1000", "\"credit_bps\":10001")),
        1,
        "bad_header",
    );
    bad(
        "config-ttl-0",
        "a reservation TTL of zero",
        format!("{}\n", replaced(&h, "\"reservation_ttl_ms\":600000", "\"reservation_ttl_ms\":0")),
        1,
        "bad_header",
    );
    bad(
        "unknown-command",
        "a command the format does not have",
        format!("{h}\n{}\n", altered(rec, "\"cmd\":\"record\"", "\"cmd\":\"refund\"")),
        2,
        "bad_field",
    );
    bad(
        "command-missing-field",
        "a record without its actual cost",
        format!("{h}\n{}\n", altered(rec, ",\"actual_sats\":40", "")),
        2,
        "bad_field",
    );
    bad(
        "command-unknown-field",
        "a record with a field it does not have",
        format!("{h}\n{}\n", altered(rec, ",\"actual_sats\":40", ",\"actual_sats\":40,\"reserved_sats\":40")),
        2,
        "bad_field",
    );
    bad(
        "unknown-tier",
        "a tier that does not exist",
        format!("{h}\n{}\n", altered(set, "\"tier\":\"elite\"", "\"tier\":\"gold\"")),
        2,
        "bad_field",
    );
    bad(
        "unknown-refusal",
        "a refusal the format does not have",
        format!(
            "{h}\n{}\n",
            altered(
                rec,
                "{\"outcome\":\"recorded\",\"absorbed_sats\":40,\"returned_sats\":0,\"overrun_sats\":0}",
                "{\"refusal\":\"insufficient_karma\"}"
            )
        ),
        2,
        "bad_field",
    );
    bad(
        "expect-both",
        "an expectation that is both an outcome and a refusal",
        format!(
            "{h}\n{}\n",
            altered(rec, "{\"outcome\":\"recorded\"", "{\"refusal\":\"overflow\",\"outcome\":\"recorded\"")
        ),
        2,
        "bad_field",
    );
    bad(
        "outcome-missing-null",
        "an outcome with its null field left out",
        format!("{h}\n{}\n", altered(set, ",\"previous\":null", "")),
        2,
        "bad_field",
    );
    bad(
        "totals-missing-key",
        "totals without n_grants",
        format!("{h}\n{}\n", altered(rec, ",\"n_grants\":1", "")),
        2,
        "bad_field",
    );
    bad(
        "identity-missing",
        "a decide without the identity's standing",
        format!("{h}\n{}\n", dec.to_line().split(",\"identity\"").next().unwrap_or_default().to_owned() + "}"),
        2,
        "bad_field",
    );
    bad(
        "identity-on-credit",
        "a credit with an identity",
        format!("{h}\n{}\n", altered(cred, "}}", "},\"identity\":null}")),
        2,
        "bad_field",
    );
    bad(
        "step-missing-now",
        "a step without its time",
        format!("{h}\n{}\n", altered(cred, &format!("\"now\":{},", cred.now.0), "")),
        2,
        "bad_field",
    );
    bad(
        "bad-after-good",
        "the error names the line: three good lines, then a bad one",
        format!("{h}\n{}\n{}\n{}\n", set.to_line(), dec.to_line(), altered(cred, paid, "\"paid_sats\":-5")),
        4,
        "number_out_of_range",
    );

    // Numbers no float holds: out of range, not a syntax error.
    for (name, value, note) in [
        ("paid-1E400", "1E400".to_owned(), "an exponent beyond any float, upper-case E"),
        ("paid-1e400", "1e400".to_owned(), "an exponent beyond any float"),
        ("paid-minus-1e400", "-1e400".to_owned(), "a negative number beyond any float"),
        ("paid-1.5e999", "1.5e999".to_owned(), "a fraction and an exponent beyond any float"),
        ("paid-400-digits", format!("1{}", "0".repeat(400)), "10^400 written out: beyond any float"),
    ] {
        bad(
            name,
            note,
            format!("{h}\n{}\n", altered(cred, paid, &format!("\"paid_sats\":{value}"))),
            2,
            "number_out_of_range",
        );
    }

    // A key twice in one object, at any depth: refused even when both say the same.
    for (name, from, to, note) in [
        ("duplicate-key-header", "\"case\"", "\"case\":\"again\",\"case\"", "the header's case twice"),
        (
            "duplicate-key-config",
            "\"credit_bps\":1000",
            "\"credit_bps\":1000,\"credit_bps\":1000",
            "a config key twice",
        ),
    ] {
        bad(name, note, format!("{}\n", replaced(&h, from, to)), 1, "duplicate_key");
    }
    for (name, from, to, note) in [
        ("duplicate-key-now", "\"now\"", "\"now\":1,\"now\"", "a step's now twice"),
        ("duplicate-key-cmd", "\"cmd\":\"credit\"", "\"cmd\":\"credit\",\"cmd\":\"credit\"", "the command's cmd twice"),
        (
            "duplicate-key-outcome",
            "\"outcome\":\"credited\"",
            "\"outcome\":\"credited\",\"outcome\":\"credited\"",
            "the outcome twice",
        ),
        ("duplicate-key-totals", "\"n_grants\":0", "\"n_grants\":0,\"n_grants\":0", "a total twice"),
    ] {
        bad(name, note, format!("{h}\n{}\n", altered(cred, from, to)), 2, "duplicate_key");
    }

    // Line endings and encoding marks.
    bad(
        "crlf",
        "CRLF line endings: a \\r before each \\n",
        format!("{h}\n{}\r\n{}\r\n", set.to_line(), dec.to_line()),
        2,
        "not_json",
    );
    bad("bom", "a UTF-8 byte order mark before the header", format!("\u{feff}{h}\n"), 1, "not_json");

    // One file, one version, one segment per case name.
    let header =
        |case: &str| Header { case: case.into(), description: String::new(), rules: Vec::new(), config: config() };
    let v1 = write_version(1, &[(header("first"), vec![set.clone()])]);
    bad(
        "version-1-then-2",
        "a version 1 header, then a version 2 one",
        format!("{v1}{}\n", header("second").to_line()),
        3,
        "bad_header",
    );
    bad(
        "version-1-rules",
        "a version 1 header with rules, which came with version 2",
        format!(
            "{}\n",
            replaced(&v1, "\"description\"", "\"rules\":[\"R-DECIDE-3\"],\"description\"")
                .lines()
                .next()
                .unwrap_or_default()
        ),
        1,
        "bad_header",
    );
    bad(
        "case-twice",
        "two segments with the same case name",
        write_string(&[(header("same"), vec![set.clone()]), (header("other"), vec![]), (header("same"), vec![])]),
        4,
        "bad_header",
    );

    // The footer: a trace cut short, or one that does not add up.
    let whole = write_string(&[(header("whole"), vec![set.clone(), dec.clone()]), (header("two"), vec![cred.clone()])]);
    let lines: Vec<&str> = whole.lines().collect();
    let (body, footer) = (format!("{}\n", lines[..5].join("\n")), lines[5]);
    bad("footer-missing", "a version 2 trace without its footer", body.clone(), 6, "missing_footer");
    bad(
        "footer-cut",
        "a version 2 trace cut at a line boundary",
        format!("{}\n", lines[..3].join("\n")),
        4,
        "missing_footer",
    );
    let f = Footer::of(body.as_bytes(), 2, 3);
    for (name, text, line, note) in [
        ("footer-steps", replaced(footer, "\"steps\":3", "\"steps\":4"), 6, "a footer that counts one step too many"),
        (
            "footer-segments",
            replaced(footer, "\"segments\":2", "\"segments\":1"),
            6,
            "a footer that counts one segment too few",
        ),
        (
            "footer-hash",
            replaced(footer, &f.sha256, &Footer::of(b"", 0, 0).sha256),
            6,
            "a footer with another trace's hash",
        ),
        ("footer-hash-uppercase", replaced(footer, &f.sha256, &f.sha256.to_uppercase()), 6, "a hash in upper-case hex"),
        ("footer-missing-key", replaced(footer, "\"steps\":3,", ""), 6, "a footer without its step count"),
        ("footer-unknown-key", replaced(footer, "}}", "},\"note\":\"\"}"), 6, "a footer line with another key"),
        ("footer-then-line", format!("{footer}\n{}", lines[4]), 7, "a step after the footer"),
        ("footer-then-blank", format!("{footer}\n"), 7, "a blank line after the footer"),
    ] {
        bad(name, note, format!("{body}{text}\n"), line, "bad_footer");
    }
    bad(
        "footer-tampered",
        "a step changed after the footer was written: the hash no longer matches",
        replaced(&whole, "\"credited_sats\":100", "\"credited_sats\":101"),
        6,
        "bad_footer",
    );
    bad(
        "footer-in-version-1",
        "a version 1 trace with a footer, which came with version 2",
        format!("{v1}{}\n", Footer::of(v1.as_bytes(), 1, 1).to_line()),
        3,
        "bad_footer",
    );
    out
}

/// `text` with `from` replaced by `to`, which must be there.
fn replaced(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "{from} not in {text}");
    text.replacen(from, to, 1)
}
