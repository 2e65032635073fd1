//! `ledger-sim serve` (the reference engine behind the protocol) answers as SPEC.md §1 and
//! §9.1 say where a request is out of range, comes before `hello`, or is not UTF-8.

use ledger_exec::serve::serve;
use serde_json::Value;

const CONFIG: &str = r#"{"budget_sats":{"new":0,"established":50,"trusted":200,"elite":1000},"pool_initial_sats":10000,"credit_bps":1000,"reservation_ttl_ms":600000}"#;

/// What `serve` writes for `input` (one response per line), and what it says on stderr.
fn serve_bytes(input: &[u8]) -> (Vec<Value>, String) {
    let (mut out, mut log) = (Vec::new(), Vec::new());
    serve(input, &mut out, &mut log).expect("in-memory streams do not fail");
    let lines = String::from_utf8(out).expect("responses are UTF-8");
    let responses = lines.lines().map(|l| serde_json::from_str(l).expect(l)).collect();
    (responses, String::from_utf8_lossy(&log).into_owned())
}

fn hello(id: u64) -> String {
    format!(r#"{{"id":{id},"type":"hello","protocol":1,"config":{CONFIG}}}"#)
}

fn by_id(responses: &[Value], id: u64) -> &Value {
    responses.iter().find(|r| r["id"] == id).unwrap_or_else(|| panic!("no answer to {id}: {responses:?}"))
}

/// Times, request ids and payment ids are integers in 0..=2^63-1 (SPEC.md §1, the schema's
/// `time_ms` and `id`); above that the request is answered `out_of_range` and nothing happens.
#[test]
fn times_and_ids_above_2_pow_63_are_out_of_range_and_change_nothing() {
    let big = u64::MAX;
    let lines = [
        hello(0),
        format!(r#"{{"id":1,"type":"call","now_ms":{big},"call":{{"call":"credit","payment_id":1,"paid_sats":100}}}}"#),
        format!(r#"{{"id":2,"type":"call","now_ms":5,"call":{{"call":"credit","payment_id":{big},"paid_sats":100}}}}"#),
        format!(
            r#"{{"id":3,"type":"call","now_ms":5,"call":{{"call":"decide","request_id":9223372036854775808,"pubkey":"{}","estimated_sats":5}}}}"#,
            "11".repeat(32)
        ),
        r#"{"id":4,"type":"call","now_ms":5,"call":{"call":"credit","payment_id":1,"paid_sats":9223372036854775808}}"#
            .to_owned(),
        r#"{"id":5,"type":"call","now_ms":18446744073709551616,"call":{"call":"expire"}}"#.to_owned(),
        r#"{"id":6,"type":"call","now_ms":9223372036854775807,"call":{"call":"credit","payment_id":9223372036854775807,"paid_sats":100}}"#
            .to_owned(),
        r#"{"id":7,"type":"observe"}"#.to_owned(),
    ];
    let (responses, _) = serve_bytes((lines.join("\n") + "\n").as_bytes());
    for id in 1..=5 {
        let r = by_id(&responses, id);
        assert_eq!(
            (r["type"].as_str(), r["code"].as_str(), &r["definite"]),
            (Some("error"), Some("out_of_range"), &Value::Bool(true)),
            "{r}"
        );
    }
    assert!(by_id(&responses, 1)["text"].as_str().unwrap().contains("now_ms"));
    assert!(by_id(&responses, 2)["text"].as_str().unwrap().contains("payment_id"));
    assert!(by_id(&responses, 3)["text"].as_str().unwrap().contains("request_id"));
    assert_eq!(by_id(&responses, 6)["reply"]["credited_sats"], 10, "2^63-1 itself is in range");
    assert_eq!(by_id(&responses, 7)["credited_sats"], 10, "only the call in range credited");
}

/// A negative integer is outside `0..=2^63-1` too, and answered `out_of_range` as the TypeScript
/// adapters answer it; a number that is not an integer is `malformed`. Neither changes anything.
#[test]
fn negative_numbers_are_out_of_range_and_fractions_malformed() {
    let lines = [
        hello(0),
        r#"{"id":1,"type":"call","now_ms":-5,"call":{"call":"expire"}}"#.to_owned(),
        r#"{"id":2,"type":"call","now_ms":5,"call":{"call":"credit","payment_id":1,"paid_sats":-1}}"#.to_owned(),
        r#"{"id":3,"type":"call","now_ms":5,"call":{"call":"credit","payment_id":-2,"paid_sats":100}}"#.to_owned(),
        r#"{"id":4,"type":"call","now_ms":1e3,"call":{"call":"expire"}}"#.to_owned(),
        r#"{"id":5,"type":"call","now_ms":5,"call":{"call":"credit","payment_id":1,"paid_sats":100.5}}"#.to_owned(),
        r#"{"id":6,"type":"observe"}"#.to_owned(),
    ];
    let (responses, _) = serve_bytes((lines.join("\n") + "\n").as_bytes());
    for (id, code, field) in
        [(1, "out_of_range", "now_ms"), (2, "out_of_range", "paid_sats"), (3, "out_of_range", "payment_id")]
    {
        let r = by_id(&responses, id);
        assert_eq!((r["code"].as_str(), &r["definite"]), (Some(code), &Value::Bool(true)), "{r}");
        assert!(r["text"].as_str().unwrap().contains(field), "{r}");
    }
    for id in [4, 5] {
        assert_eq!(by_id(&responses, id)["code"], "malformed", "{:?}", by_id(&responses, id));
    }
    assert_eq!(by_id(&responses, 6)["pool_sats"], 10000, "nothing credited");
}

/// "A request before `hello` is answered `unavailable`" (SPEC.md §9.1): `reset` too, and it
/// starts nothing, so what follows is still refused until `hello`.
#[test]
fn a_reset_before_hello_is_unavailable_and_starts_nothing() {
    let lines = [
        format!(r#"{{"id":1,"type":"reset","config":{CONFIG}}}"#),
        r#"{"id":2,"type":"observe"}"#.to_owned(),
        r#"{"id":3,"type":"call","now_ms":5,"call":{"call":"expire"}}"#.to_owned(),
        hello(4),
        format!(r#"{{"id":5,"type":"reset","config":{CONFIG}}}"#),
    ];
    let (responses, _) = serve_bytes((lines.join("\n") + "\n").as_bytes());
    for id in 1..=3 {
        let r = by_id(&responses, id);
        assert_eq!((r["code"].as_str(), &r["definite"]), (Some("unavailable"), &Value::Bool(true)), "{r}");
    }
    assert_eq!(by_id(&responses, 4)["type"], "hello_ok");
    assert_eq!(by_id(&responses, 5)["type"], "reset_ok");
}

/// A line that is not UTF-8 but whose `id` can be made out is answered `malformed` (SPEC.md
/// §9.1); one without an id is said on stderr, and the server goes on.
#[test]
fn a_line_that_is_not_utf8_with_a_readable_id_is_answered_malformed() {
    let mut input = hello(0).into_bytes();
    input.extend_from_slice(
        b"\n{\"id\":3,\"type\":\"observe\",\"pad\":\"\xff\"}\n\xff\xfe no id\n{\"id\":4,\"type\":\"observe\"}\n",
    );
    let (responses, log) = serve_bytes(&input);
    let r = by_id(&responses, 3);
    assert_eq!((r["code"].as_str(), &r["definite"]), (Some("malformed"), &Value::Bool(true)), "{r}");
    assert!(r["text"].as_str().unwrap().contains("not UTF-8"), "{r}");
    assert_eq!(by_id(&responses, 4)["type"], "observed");
    assert_eq!(responses.len(), 3, "{responses:?}");
    assert!(log.contains("line 3 cannot be read") && log.contains("not UTF-8"), "{log}");
}

/// A line longer than 16 MiB is read no further than that: answered `malformed` when its `id`
/// comes before the cut (nested `"id"`s and values skipped whole), said on stderr when it comes
/// after it; either way the server goes on with the next line.
#[test]
fn a_line_too_long_to_read_is_answered_malformed_when_its_id_comes_before_the_cut() {
    let pad = "a".repeat(ledger_exec::child::MAX_LINE + 10);
    let mut input = hello(0);
    input.push_str(&format!(
        "\n{{\"meta\":{{\"id\":99,\"list\":[1,\"}}\"]}},\"id\":3,\"type\":\"observe\",\"pad\":\"{pad}\"}}"
    ));
    input.push_str(&format!("\n{{\"type\":\"observe\",\"pad\":\"{pad}\",\"id\":5}}"));
    input.push_str("\n{\"id\":4,\"type\":\"observe\"}\n");
    let (responses, log) = serve_bytes(input.as_bytes());
    let r = by_id(&responses, 3);
    assert_eq!((r["code"].as_str(), &r["definite"]), (Some("malformed"), &Value::Bool(true)), "{r}");
    assert!(r["text"].as_str().unwrap().contains("line 2: a line longer than 16 MiB"), "{r}");
    assert_eq!(by_id(&responses, 4)["type"], "observed");
    assert_eq!(responses.len(), 3, "no answer to 99 or to 5: {responses:?}");
    assert!(log.contains("line 3 cannot be read: a line longer than 16 MiB"), "{log}");
}

/// An id the cut may have shortened is no id: `"id":123456789` cut after `12` is not answered
/// as request 12 (another request, perhaps in flight), only said on stderr.
#[test]
fn an_id_the_cut_falls_in_is_not_answered() {
    let prefix = "{\"x\":\"";
    let before_id = "\",\"id\":";
    let pad = "a".repeat(ledger_exec::child::MAX_LINE - prefix.len() - before_id.len() - 2);
    let mut input = hello(0);
    input.push_str(&format!(
        "\n{prefix}{pad}{before_id}123456789,\"type\":\"observe\"}}\n{{\"id\":4,\"type\":\"observe\"}}\n"
    ));
    let (responses, log) = serve_bytes(input.as_bytes());
    assert_eq!(responses.len(), 2, "only hello and 4 are answered: {responses:?}");
    assert_eq!(by_id(&responses, 4)["type"], "observed");
    assert!(log.contains("line 2 cannot be read: a line longer than 16 MiB"), "{log}");
}

/// A line that is not one JSON value but begins with its id (garbage after the object, a bare
/// CR inside it, the input ending mid-line, nesting too deep) is answered `malformed` with that
/// id (SPEC.md §9.1), not left for the client to time out on.
#[test]
fn a_line_that_is_not_json_but_begins_with_its_id_is_answered_malformed() {
    let deep = "[".repeat(200);
    let lines = [
        r#"{"id":1,"type":"observe"} xyz"#.to_owned(),
        "{\"id\":2,\"type\":\"observe\"}\r{\"id\":9,\"type\":\"observe\"}".to_owned(),
        format!(r#"{{"id":3,"type":"observe","x":{deep}}}"#),
        r#"{"type":"observe"} {"id":8}"#.to_owned(),
        r#"{"id":5,"type":"call","now_ms":1,"call":{"call":"expire"}"#.to_owned(),
    ];
    let input = format!("{}\n{}", hello(0), lines.join("\n"));
    let (responses, log) = serve_bytes(input.as_bytes());
    for id in [1, 2, 3, 5] {
        let r = by_id(&responses, id);
        assert_eq!((r["code"].as_str(), &r["definite"]), (Some("malformed"), &Value::Bool(true)), "{r}");
    }
    assert_eq!(responses.len(), 5, "nothing for 9 or 8, inside lines that are not requests: {responses:?}");
    assert!(log.contains("line 5 is not a request and has no id"), "{log}");
}

/// A hello of another protocol version is answered `not_supported`, whatever shape the rest
/// of it has (a later version's hello need not carry this one's fields; SPEC.md §9.2).
#[test]
fn a_hello_of_another_version_is_not_supported_whatever_its_shape() {
    let input = "{\"id\":0,\"type\":\"hello\",\"protocol\":2}\n\
                 {\"id\":1,\"type\":\"hello\",\"protocol\":4294967297,\"config\":{}}\n\
                 {\"id\":2,\"type\":\"hello\",\"protocol\":1}\n";
    let (responses, _) = serve_bytes(input.as_bytes());
    for id in [0, 1] {
        assert_eq!(by_id(&responses, id)["code"], "not_supported", "{responses:?}");
    }
    assert_eq!(by_id(&responses, 2)["code"], "malformed", "version 1 without its config: {responses:?}");
}

/// An empty line, or one of JSON whitespace only, is no request and has no id (SPEC.md §9.1):
/// no answer, a note on stderr, and the server goes on. Other white space is not JSON's.
#[test]
fn an_empty_line_is_said_on_stderr() {
    let input = format!("{}\n\n \t \r\n\u{a0}\n{{\"id\":1,\"type\":\"observe\"}}\n", hello(0));
    let (responses, log) = serve_bytes(input.as_bytes());
    assert_eq!(by_id(&responses, 1)["type"], "observed");
    assert_eq!(responses.len(), 2, "{responses:?}");
    assert!(log.contains("line 2 is empty") && log.contains("line 3 is empty"), "{log}");
    assert!(log.contains("line 4 is not a request and has no id"), "{log}");
}

/// An answer is written out before the server waits for more input, even when part of the next
/// line has arrived: a client that writes half a request and pauses still gets the answers to
/// the whole ones.
#[test]
fn an_answer_is_flushed_before_the_server_waits_on_a_partial_line() {
    use std::cell::RefCell;
    use std::rc::Rc;

    /// What reached the client, shared by the two ends.
    type Seen = Rc<RefCell<Vec<u8>>>;
    struct Client {
        chunks: Vec<Vec<u8>>,
        seen: Seen,
        answered_before_the_rest: Rc<RefCell<Option<bool>>>,
    }
    impl std::io::Read for Client {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.chunks.is_empty() {
                return Ok(0);
            }
            if self.chunks.len() == 1 {
                // The client sends the rest of its half-written request only now.
                let seen = String::from_utf8_lossy(&self.seen.borrow()).into_owned();
                *self.answered_before_the_rest.borrow_mut() = Some(seen.contains(r#""id":1,"type":"observed""#));
            }
            let chunk = self.chunks.remove(0);
            buf[..chunk.len()].copy_from_slice(&chunk);
            Ok(chunk.len())
        }
    }
    struct Pipe(Seen);
    impl std::io::Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let seen: Seen = Rc::default();
    let answered = Rc::new(RefCell::new(None));
    let first = format!("{}\n{{\"id\":1,\"type\":\"observe\"}}\n{{\"id\":2,", hello(0));
    let client = Client {
        chunks: vec![first.into_bytes(), b"\"type\":\"observe\"}\n".to_vec()],
        seen: seen.clone(),
        answered_before_the_rest: answered.clone(),
    };
    serve(client, Pipe(seen.clone()), &mut Vec::new()).unwrap();
    assert_eq!(*answered.borrow(), Some(true), "request 1 was answered only after the rest of request 2 came");
    assert!(String::from_utf8_lossy(&seen.borrow()).contains(r#""id":2,"type":"observed""#));
}

/// A configuration's amounts and time are numbers of SPEC.md §1 too: outside `0..=2^63-1`
/// (negative, 2^63, beyond 64 bits either way) a `hello` or `reset` is answered `out_of_range`
/// and starts nothing.
#[test]
fn configuration_numbers_out_of_range_are_out_of_range() {
    // A hello whose configuration has the value written `old` replaced by the literal `new`.
    let hello_with = |id: u64, old: &str, new: &str| {
        assert!(CONFIG.contains(old), "{old}");
        format!(r#"{{"id":{id},"type":"hello","protocol":1,"config":{}}}"#, CONFIG.replacen(old, new, 1))
    };
    let (pool, ttl) = (r#""pool_initial_sats":10000"#, r#""reservation_ttl_ms":600000"#);
    let lines = [
        hello_with(1, pool, r#""pool_initial_sats":9223372036854775808"#),
        hello_with(2, r#""new":0"#, r#""new":-1"#),
        hello_with(3, ttl, r#""reservation_ttl_ms":18446744073709551615"#),
        hello_with(4, pool, r#""pool_initial_sats":-9223372036854775809"#),
        r#"{"id":5,"type":"observe"}"#.to_owned(),
        hello(6),
        r#"{"id":7,"type":"call","now_ms":-9223372036854775809,"call":{"call":"expire"}}"#.to_owned(),
    ];
    let (responses, _) = serve_bytes((lines.join("\n") + "\n").as_bytes());
    for (id, field) in [
        (1, "config.pool_initial_sats"),
        (2, "config.budget_sats.new"),
        (3, "config.reservation_ttl_ms"),
        (4, "config.pool_initial_sats"),
        (7, "now_ms"),
    ] {
        let r = by_id(&responses, id);
        assert_eq!(r["code"], "out_of_range", "{r}");
        assert!(r["text"].as_str().unwrap().contains(field), "{r}");
    }
    assert_eq!(by_id(&responses, 5)["code"], "unavailable", "no hello took: {responses:?}");
    assert_eq!(by_id(&responses, 6)["type"], "hello_ok");
}

/// A message names its kind, and a call its command, by name (SPEC.md §9.2): serde would read
/// an integer there as the variant of that index (`"type":3` as `observe`, `"call":6` as
/// `expire`), so such a request is answered `malformed` and changes nothing.
#[test]
fn a_variant_named_by_its_index_is_malformed() {
    let lines = [
        hello(0),
        r#"{"id":1,"type":3}"#.to_owned(),
        r#"{"id":2,"type":"call","now_ms":5,"call":{"call":5,"payment_id":1,"paid_sats":100}}"#.to_owned(),
        hello(3).replace(r#""type":"hello""#, r#""type":0"#),
        // An escaped key is the same key.
        r#"{"id":4,"\u0074ype":3}"#.to_owned(),
        r#"{"id":5,"type":"observe"}"#.to_owned(),
    ];
    let (responses, _) = serve_bytes((lines.join("\n") + "\n").as_bytes());
    for (id, key, index) in [(1, "type", 3), (2, "call", 5), (3, "type", 0), (4, "type", 3)] {
        let r = by_id(&responses, id);
        assert_eq!((r["type"].as_str(), r["code"].as_str()), (Some("error"), Some("malformed")), "{r}");
        let text = r["text"].as_str().unwrap();
        assert!(text.contains(&format!("\"{key}\": {index} is a number, not the name of a variant")), "{text}");
    }
    assert_eq!(by_id(&responses, 5)["credited_sats"], 0, "the credit named by its index took no effect");
}

/// `hello` never returns the ledger to genesis (SPEC.md §9.2): a second one, under another
/// configuration, is answered `hello_ok`, changes nothing, and is said on stderr.
#[test]
fn a_second_hello_changes_nothing() {
    let lines = [
        hello(0),
        r#"{"id":1,"type":"call","now_ms":5,"call":{"call":"credit","payment_id":1,"paid_sats":100}}"#.to_owned(),
        hello(2).replace(r#""pool_initial_sats":10000"#, r#""pool_initial_sats":7"#),
        r#"{"id":3,"type":"observe"}"#.to_owned(),
    ];
    let (responses, log) = serve_bytes((lines.join("\n") + "\n").as_bytes());
    assert_eq!(by_id(&responses, 2)["type"], "hello_ok");
    let observed = by_id(&responses, 3);
    assert_eq!(
        (&observed["pool_sats"], &observed["credited_sats"]),
        (&Value::from(10_010), &Value::from(10)),
        "{observed}"
    );
    assert!(log.contains("line 3: a second hello leaves the ledger as it is"), "{log}");
}

/// What `serve` writes for `lines`, one request each, and what it says on stderr.
fn serve_lines(lines: &[String]) -> (Vec<Value>, String) {
    serve_bytes((lines.join("\n") + "\n").as_bytes())
}

fn code(responses: &[Value], id: u64) -> &str {
    let r = by_id(responses, id);
    assert_eq!((&r["type"], &r["definite"]), (&Value::from("error"), &Value::Bool(true)), "{r}");
    r["code"].as_str().unwrap()
}

fn text(responses: &[Value], id: u64) -> &str {
    by_id(responses, id)["text"].as_str().unwrap()
}

/// An integer is judged by its digits, however many (SPEC.md §9.1): 2^64 and 400 digits either
/// way are `out_of_range`, named as written (never as the float serde would read), wherever the
/// request holds them, even before its `id`; a number with a fraction or an exponent is
/// `malformed` however large; `-0` is 0. A hello naming any integer but 1 is of another version.
#[test]
fn integers_are_judged_by_their_digits_however_many() {
    let nines = "9".repeat(400);
    let long = "7".repeat(1 << 20);
    let lines = [
        hello(0),
        format!(r#"{{"id":1,"type":"call","now_ms":{nines},"call":{{"call":"expire"}}}}"#),
        r#"{"id":2,"type":"call","now_ms":18446744073709551616,"call":{"call":"expire"}}"#.to_owned(),
        format!(
            r#"{{"id":3,"type":"call","now_ms":5,"call":{{"call":"credit","payment_id":1,"paid_sats":-{nines}}}}}"#
        ),
        format!(r#"{{"type":"call","call":{{"call":"credit","paid_sats":{nines},"payment_id":1}},"now_ms":5,"id":4}}"#),
        format!(r#"{{"id":5,"type":"reset","config":{}}}"#, CONFIG.replace("10000,", &format!("{long},"))),
        format!(
            r#"{{"id":6,"type":"call","now_ms":5,"call":{{"call":"credit","payment_id":1,"paid_sats":{nines}.5}}}}"#
        ),
        r#"{"id":7,"type":"call","now_ms":5,"call":{"call":"credit","payment_id":1,"paid_sats":1e400}}"#.to_owned(),
        format!(r#"{{"id":8,"type":"hello","protocol":{nines},"config":{CONFIG}}}"#),
        r#"{"id":9,"type":"call","now_ms":5,"call":{"call":"credit","payment_id":-0,"paid_sats":-0}}"#.to_owned(),
        r#"{"id":10,"type":"observe"}"#.to_owned(),
    ];
    let (responses, _) = serve_lines(&lines);
    for (id, what) in [
        (1, "now_ms 9999999999999999...9999999999999999 (400 characters) is not in 0..=2^63-1"),
        (2, "now_ms 18446744073709551616 is not in 0..=2^63-1"),
        (3, "call.paid_sats -999999999999999...9999999999999999 (401 characters)"),
        (4, "call.paid_sats 9999999999999999"),
        (5, "config.pool_initial_sats 7777777777777777...7777777777777777 (1048576 characters)"),
    ] {
        assert_eq!(code(&responses, id), "out_of_range", "{}", text(&responses, id));
        assert!(text(&responses, id).contains(what), "{}", text(&responses, id));
    }
    for id in [6, 7] {
        assert_eq!(code(&responses, id), "malformed", "{}", text(&responses, id));
    }
    assert_eq!(code(&responses, 8), "not_supported", "{}", text(&responses, 8));
    assert_eq!(by_id(&responses, 9)["reply"]["credited_sats"], 0, "-0 is 0: {responses:?}");
    assert_eq!(by_id(&responses, 10)["pool_sats"], 10000, "nothing else credited");
}

/// An `id` is an integer in `0..=2^64-1` named once (SPEC.md §9.1); a line whose `id` is
/// missing, named twice or anything else has no id that can be made out: it is answered with
/// none (which could answer another request in flight), only said on stderr.
#[test]
fn an_id_is_an_integer_up_to_2_pow_64_minus_1_named_once() {
    let lines = [
        hello(0),
        r#"{"id":18446744073709551615,"type":"observe"}"#.to_owned(),
        r#"{"id":18446744073709551616,"type":"observe"}"#.to_owned(),
        format!(r#"{{"id":{},"type":"observe"}}"#, "9".repeat(400)),
        r#"{"id":-45,"type":"observe"}"#.to_owned(),
        r#"{"id":1.5,"type":"observe"}"#.to_owned(),
        r#"{"id":"12","type":"observe"}"#.to_owned(),
        r#"{"type":"observe"}"#.to_owned(),
        r#"{"id":2,"type":"observe","id":3}"#.to_owned(),
        r#"{"id":4,"type":"observe","id":4}"#.to_owned(),
        r#"{"id":-0,"type":"observe"}"#.to_owned(),
    ];
    let (responses, log) = serve_lines(&lines);
    let ids: Vec<&Value> = responses.iter().map(|r| &r["id"]).collect();
    assert_eq!(ids, [&Value::from(0), &Value::from(u64::MAX), &Value::from(0)], "{responses:?}");
    assert_eq!(responses[1]["type"], "observed");
    for line in 3..=10 {
        assert!(log.contains(&format!("line {line} is not a request and has no id")), "line {line}: {log}");
    }
}

/// A request in which an object names a key twice is `malformed` (SPEC.md §9.1): a key serde
/// knows, and one it would ignore, at the top level or inside.
#[test]
fn a_key_named_twice_is_malformed() {
    let lines = [
        hello(0),
        r#"{"id":1,"type":"observe","x":1,"x":2}"#.to_owned(),
        r#"{"id":2,"type":"call","now_ms":5,"call":{"call":"expire","x":1,"x":1}}"#.to_owned(),
        r#"{"id":3,"type":"observe","pad":{"a":1,"\u0061":2}}"#.to_owned(),
        r#"{"id":4,"type":"call","now_ms":5,"call":{"call":"credit","payment_id":1,"paid_sats":1,"paid_sats":2}}"#
            .to_owned(),
        r#"{"id":5,"type":"call","now_ms":5,"now_ms":6,"call":{"call":"expire"}}"#.to_owned(),
        r#"{"id":6,"type":"observe","x":{"a":1},"y":{"a":1}}"#.to_owned(),
        r#"{"id":7,"type":"observe"}"#.to_owned(),
    ];
    let (responses, _) = serve_lines(&lines);
    for (id, key) in [(1, "x"), (2, "x"), (3, "a"), (4, "paid_sats"), (5, "now_ms")] {
        assert_eq!(code(&responses, id), "malformed", "{}", text(&responses, id));
        assert!(text(&responses, id).contains(key), "{}", text(&responses, id));
    }
    assert_eq!(by_id(&responses, 6)["type"], "observed", "one key in each of two objects");
    assert_eq!(by_id(&responses, 7)["credited_sats"], 0, "the credit with two amounts took no effect");
}

/// A `type` or a `call` the protocol does not define is `malformed`, not `not_supported`
/// (SPEC.md §9.1): the seed's own names included.
#[test]
fn a_type_or_call_the_protocol_does_not_define_is_malformed() {
    let lines = [
        hello(0),
        r#"{"id":1,"type":"frobnicate"}"#.to_owned(),
        r#"{"id":2,"type":"call","now_ms":5,"call":{"call":"frobnicate"}}"#.to_owned(),
        r#"{"id":3,"type":"call","now_ms":5,"call":{"call":"recordGrant","request_id":1,"actual_sats":1}}"#.to_owned(),
    ];
    let (responses, _) = serve_lines(&lines);
    for id in 1..=3 {
        assert_eq!(code(&responses, id), "malformed", "{}", text(&responses, id));
    }
}

/// Where `fresh` is not read (SPEC.md §9.2) `serve` answers what the spec recommends: `true` for
/// a first answer, a refusal included, and `false` for a repeat, a decision answered again or an
/// `insufficient_funds` refused again; where it is read, it is exact.
#[test]
fn fresh_is_the_recommended_value_where_it_is_not_read() {
    let (x, y) = ("11".repeat(32), "22".repeat(32));
    let call = |id: u64, call: String| format!(r#"{{"id":{id},"type":"call","now_ms":5,"call":{{{call}}}}}"#);
    let decide = |id, request, pubkey: &str, estimate| {
        call(id, format!(r#""call":"decide","request_id":{request},"pubkey":"{pubkey}","estimated_sats":{estimate}"#))
    };
    let partial = |id, amount| {
        call(id, format!(r#""call":"reserve_partial","request_id":1,"pubkey":"{x}","amount_sats":{amount}"#))
    };
    let release = |id| call(id, r#""call":"release","request_id":9,"amount_sats":0"#.to_owned());
    let lines = [
        hello(0),
        call(1, format!(r#""call":"set_tier","pubkey":"{x}","tier":"elite""#)),
        decide(2, 1, &x, 5000),
        decide(3, 1, &x, 5000),
        partial(4, 1001),
        partial(5, 1001),
        decide(6, 2, &y, 10),
        decide(7, 2, &y, 10),
        decide(8, 2, &y, 11),
        release(9),
        release(10),
        call(11, r#""call":"expire""#.to_owned()),
        decide(12, 3, &x, 10),
        decide(13, 3, &x, 10),
    ];
    let (responses, _) = serve_lines(&lines);
    let expected = [
        (1, "tier_set", true),
        (2, "partial", true),
        (3, "partial", false),
        (4, "insufficient_funds", true),
        (5, "insufficient_funds", false),
        (6, "gate", true),
        (7, "gate", false),
        (8, "exists_with_different_estimate", true),
        (9, "unknown_request", true),
        (10, "unknown_request", true),
        (11, "expired", true),
        (12, "free", true),
        (13, "free", false),
    ];
    for (id, what, fresh) in expected {
        let r = by_id(&responses, id);
        let reply = &r["reply"];
        let got = reply["decision"]["serve"].as_str().or(reply["refusal"].as_str()).or(reply["outcome"].as_str());
        assert_eq!((got, &r["fresh"]), (Some(what), &Value::Bool(fresh)), "request {id}: {r}");
    }
}

/// `granted_sats` and `n_grants` are the ledger's `absorbed_sats` and `n_grants` (SPEC.md §2,
/// §9.2): what records absorbed, not what they were asked, and a record absorbing 0 is a grant.
#[test]
fn granted_sats_is_the_absorbed_total() {
    let x = "11".repeat(32);
    let call = |id: u64, call: String| format!(r#"{{"id":{id},"type":"call","now_ms":5,"call":{{{call}}}}}"#);
    let lines = [
        hello(0),
        call(1, format!(r#""call":"set_tier","pubkey":"{x}","tier":"elite""#)),
        call(2, format!(r#""call":"decide","request_id":1,"pubkey":"{x}","estimated_sats":100"#)),
        call(3, format!(r#""call":"record","request_id":1,"pubkey":"{x}","actual_sats":160,"reserved_sats":100"#)),
        call(4, format!(r#""call":"decide","request_id":2,"pubkey":"{x}","estimated_sats":10"#)),
        call(5, format!(r#""call":"record","request_id":2,"pubkey":"{x}","actual_sats":0,"reserved_sats":10"#)),
        r#"{"id":6,"type":"observe"}"#.to_owned(),
    ];
    let (responses, _) = serve_lines(&lines);
    let o = by_id(&responses, 6);
    assert_eq!(
        (&o["granted_sats"], &o["n_grants"], &o["overrun_sats"]),
        (&Value::from(100), &Value::from(2), &Value::from(60)),
        "{o}"
    );
}

/// A memory child's first `hello` creates its ledger at genesis under that hello's `config`
/// (SPEC.md §9.2): no `reset` is needed before the first call.
#[test]
fn the_first_hello_creates_genesis_under_its_config() {
    let lines = [
        hello(0).replace(r#""pool_initial_sats":10000"#, r#""pool_initial_sats":7"#),
        r#"{"id":1,"type":"observe"}"#.to_owned(),
    ];
    let (responses, _) = serve_lines(&lines);
    let o = by_id(&responses, 1);
    assert_eq!(
        (&o["pool_sats"], &o["credited_sats"], &o["n_grants"]),
        (&Value::from(7), &Value::from(0), &Value::from(0))
    );
}

/// A second `hello` is judged on its `protocol` first (SPEC.md §9.2): of another version it is
/// `not_supported`, changes nothing, and is not taken for a second hello of this one.
#[test]
fn a_second_hello_of_another_version_is_not_supported() {
    let lines = [
        hello(0),
        r#"{"id":1,"type":"call","now_ms":5,"call":{"call":"credit","payment_id":1,"paid_sats":100}}"#.to_owned(),
        hello(2).replace(r#""protocol":1"#, r#""protocol":2"#),
        r#"{"id":3,"type":"observe"}"#.to_owned(),
    ];
    let (responses, log) = serve_lines(&lines);
    assert_eq!(code(&responses, 2), "not_supported");
    assert_eq!(by_id(&responses, 3)["credited_sats"], 10);
    assert!(!log.contains("second hello"), "{log}");
}

/// A second `hello` is judged as the first was, its `config` too (SPEC.md §9.2): a missing or
/// invalid one is `malformed`, a number out of range `out_of_range`; each changes nothing and is
/// not said on stderr as a hello that left the ledger as it is.
#[test]
fn a_second_hello_with_a_bad_config_is_refused_and_changes_nothing() {
    let lines = [
        hello(0),
        r#"{"id":1,"type":"call","now_ms":5,"call":{"call":"credit","payment_id":1,"paid_sats":100}}"#.to_owned(),
        r#"{"id":2,"type":"hello","protocol":1}"#.to_owned(),
        hello(3).replace(r#""reservation_ttl_ms":600000"#, r#""reservation_ttl_ms":0"#),
        hello(4).replace(r#""pool_initial_sats":10000"#, r#""pool_initial_sats":-1"#),
        r#"{"id":5,"type":"observe"}"#.to_owned(),
    ];
    let (responses, log) = serve_lines(&lines);
    assert_eq!(code(&responses, 2), "malformed");
    assert_eq!(code(&responses, 3), "malformed");
    assert_eq!(code(&responses, 4), "out_of_range");
    assert_eq!(
        (&by_id(&responses, 5)["pool_sats"], &by_id(&responses, 5)["credited_sats"]),
        (&Value::from(10_010), &Value::from(10))
    );
    assert!(!log.contains("second hello"), "{log}");
}

/// The harness always sends the seed API's fields (SPEC.md §9.2); `serve` requires them and
/// checks their range, and their values change no answer.
#[test]
fn the_seed_fields_are_required_and_checked_but_change_no_answer() {
    let x = "11".repeat(32);
    let session = |amount: &str, pubkey: &str, reserved: &str| {
        let call = |id: u64, call: String| format!(r#"{{"id":{id},"type":"call","now_ms":5,"call":{{{call}}}}}"#);
        vec![
            hello(0),
            call(1, format!(r#""call":"set_tier","pubkey":"{x}","tier":"elite""#)),
            call(2, format!(r#""call":"decide","request_id":1,"pubkey":"{x}","estimated_sats":100"#)),
            call(3, format!(r#""call":"decide","request_id":2,"pubkey":"{x}","estimated_sats":100"#)),
            call(4, format!(r#""call":"release","request_id":1{amount}"#)),
            call(5, format!(r#""call":"record","request_id":2,"actual_sats":70{pubkey}{reserved}"#)),
            r#"{"id":6,"type":"observe"}"#.to_owned(),
        ]
    };
    let (right, _) =
        serve_lines(&session(r#","amount_sats":100"#, &format!(r#","pubkey":"{x}""#), r#","reserved_sats":100"#));
    let (wrong, _) = serve_lines(&session(
        r#","amount_sats":3"#,
        &format!(r#","pubkey":"{}""#, "22".repeat(32)),
        r#","reserved_sats":9223372036854775807"#,
    ));
    assert_eq!(right, wrong, "the seed's fields change no answer");
    assert_eq!(right[4]["reply"]["returned_sats"], 100, "{right:?}");
    let (missing, _) = serve_lines(&session("", "", r#","reserved_sats":100"#));
    assert_eq!((code(&missing, 4), code(&missing, 5)), ("malformed", "malformed"));
    let (negative, _) =
        serve_lines(&session(r#","amount_sats":-1"#, &format!(r#","pubkey":"{x}""#), r#","reserved_sats":-1"#));
    assert_eq!((code(&negative, 4), code(&negative, 5)), ("out_of_range", "out_of_range"));
    assert_eq!(negative[6]["pool_sats"], 9800, "neither took effect: {negative:?}");
}

/// A request with several faults is answered with the code of one of them, definite, and
/// nothing happens (SPEC.md §9.2).
#[test]
fn a_request_with_several_faults_is_answered_with_one_definite_code() {
    let lines = [
        r#"{"id":0,"type":"observe","now_ms":1.5}"#.to_owned(),
        hello(1),
        r#"{"id":2,"type":"call","now_ms":5,"call":{"call":"decide","request_id":-1,"pubkey":"x","estimated_sats":5}}"#
            .to_owned(),
        r#"{"id":3,"type":"call","now_ms":-5,"call":{"call":"credit","paid_sats":100}}"#.to_owned(),
        r#"{"id":4,"type":"observe"}"#.to_owned(),
    ];
    let (responses, _) = serve_lines(&lines);
    assert!(["unavailable", "malformed"].contains(&code(&responses, 0)), "{responses:?}");
    for id in [2, 3] {
        assert!(["out_of_range", "malformed"].contains(&code(&responses, id)), "{responses:?}");
    }
    let o = by_id(&responses, 4);
    assert_eq!((&o["pool_sats"], &o["reserved_sats"]), (&Value::from(10000), &Value::from(0)), "{o}");
}

/// An `observe` among calls in flight shows the state between two commands of the serial order
/// (SPEC.md §9.1): `serve` applies them in the order it reads them, so exactly those before it.
#[test]
fn an_observe_among_calls_in_flight_shows_the_calls_before_it() {
    let credit = |id: u64| {
        format!(
            r#"{{"id":{id},"type":"call","now_ms":5,"call":{{"call":"credit","payment_id":{id},"paid_sats":100}}}}"#
        )
    };
    let observe = |id: u64| format!(r#"{{"id":{id},"type":"observe"}}"#);
    let lines = [hello(0), credit(1), observe(2), credit(3), credit(4), observe(5)];
    let (responses, _) = serve_lines(&lines);
    assert_eq!(
        (&by_id(&responses, 2)["credited_sats"], &by_id(&responses, 5)["credited_sats"]),
        (&Value::from(10), &Value::from(30))
    );
}

/// Before a `hello` was answered, a request that can be read is `unavailable` and one that
/// cannot is `malformed` (SPEC.md §9.1).
#[test]
fn a_malformed_request_before_hello_is_malformed() {
    let lines = [
        r#"{"id":1,"type":"call","now_ms":5}"#.to_owned(),
        r#"{"id":2,"type":"frobnicate"}"#.to_owned(),
        r#"{"id":3,"type":"observe","x":1,"x":1}"#.to_owned(),
        r#"{"id":4,"type":"observe"}"#.to_owned(),
        hello(5).replace(r#""protocol":1"#, r#""protocol":2"#),
        r#"{"id":6,"type":"observe"}"#.to_owned(),
    ];
    let (responses, _) = serve_lines(&lines);
    for (id, expected) in [
        (1, "malformed"),
        (2, "malformed"),
        (3, "malformed"),
        (4, "unavailable"),
        (5, "not_supported"),
        (6, "unavailable"),
    ] {
        assert_eq!(code(&responses, id), expected, "{}", text(&responses, id));
    }
}
