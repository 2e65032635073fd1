//! The reference engine behind the protocol (`ledger-sim serve`): the protocol's own
//! conformance test, a fast baseline for the client, and an example of the server side.
//!
//! It answers every request in the order it reads them, and flushes its output whenever its
//! input holds no further whole line, so a client with many requests in flight gets them back in
//! few writes, and none waits on the next request's arrival.

use std::io::{BufRead, BufReader, Read, Write};

use ledger_core::{implied_movements, Command, Config, Ledger, Movement, Outcome, Pubkey, Refusal};
use ledger_harness::Reply;

use crate::child::{read_bounded_prefix, BadLine};
use crate::protocol::{
    find_scalar, integer_out_of_range, integer_outside, request_names_are_sound, shortened, Api, ErrorCode,
    Observation, Request, RequestBody, Response, ResponseBody, StateKind, PROTOCOL_VERSION,
};

/// A JSON error of one request line: `serde_json` places it at a line and column of the text
/// it read, which is always line 1 of that one line; the column is what locates it.
fn within_line(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.strip_suffix(&format!(" at line {} column {}", e.line(), e.column())) {
        Some(what) => format!("{what} (column {})", e.column()),
        None => text,
    }
}

/// Serves the reference engine on `input`/`output` until end of input. A line that is not a
/// request (not UTF-8, or longer than 16 MiB, included) is answered with a `malformed` error
/// when its `id` can be read (for a line too long, when it comes before the cut), and reported
/// on `log` otherwise; a time, id or amount that is an integer outside `0..=2^63-1` (however
/// many digits it has) is answered `out_of_range`, and any request but `hello` that can be read
/// before `hello` `unavailable` (SPEC.md §9.1). Returns an error only when the streams fail.
pub fn serve(input: impl Read, output: impl Write, log: &mut impl Write) -> std::io::Result<()> {
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, output);
    let mut ledger: Option<Ledger> = None;
    let mut journal: Vec<Movement> = Vec::new();
    let mut line_no: u64 = 0;
    loop {
        line_no += 1;
        let response = match read_line(&mut input)? {
            None => break,
            Some(Err(prefix)) => {
                skip_rest_of_line(&mut input)?;
                let bad = BadLine::TooLong;
                match line_id(&prefix) {
                    Some(id) => {
                        Some(Response { id, body: error(ErrorCode::Malformed, format!("line {line_no}: {bad}")) })
                    }
                    None => {
                        // A line without an id to answer: said on stderr, and the server goes on.
                        writeln!(log, "ledger-sim serve: line {line_no} cannot be read: {bad}")?;
                        None
                    }
                }
            }
            Some(Ok((line, not_utf8))) => {
                // JSON's white space only: another (U+00A0) makes the line no request instead.
                if line.bytes().all(|b| matches!(b, b' ' | b'\t' | b'\r')) && not_utf8.is_none() {
                    writeln!(log, "ledger-sim serve: line {line_no} is empty: not a request, and no id to answer")?;
                    continue;
                }
                answer_line(&line, not_utf8.as_ref(), line_no, &mut ledger, &mut journal, log)?
            }
        };
        if let Some(response) = response {
            serde_json::to_writer(&mut out, &response).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
        }
        // Flushed unless another whole line is already buffered: a partial one means the next
        // read waits on the client, who must have this answer first.
        if !input.buffer().contains(&b'\n') {
            out.flush()?;
        }
    }
    out.flush()
}

/// The answer to a whole line, `line` (not UTF-8 when `not_utf8` says why): the request's,
/// or `malformed`/`out_of_range` when its `id` can be made out; `None`, said on `log`, when
/// it cannot.
fn answer_line(
    line: &str,
    not_utf8: Option<&BadLine>,
    line_no: u64,
    ledger: &mut Option<Ledger>,
    journal: &mut Vec<Movement>,
    log: &mut impl Write,
) -> std::io::Result<Option<Response>> {
    let request = match not_utf8 {
        None => serde_json::from_str::<Request>(line).map_err(|e| within_line(&e)).and_then(|request| {
            request_names_are_sound(line)?;
            Ok(request)
        }),
        Some(bad) => Err(bad.to_string()),
    };
    let why = match request {
        Ok(request) => {
            let second_hello = matches!(request.body, RequestBody::Hello { .. }) && ledger.is_some();
            let body = answer_checked(ledger, journal, request.body);
            // Said of a second hello answered `hello_ok` only: one refused changed nothing either.
            if second_hello && matches!(body, ResponseBody::HelloOk { .. }) {
                writeln!(log, "ledger-sim serve: line {line_no}: a second hello leaves the ledger as it is (a reset returns it to genesis)")?;
            }
            return Ok(Some(Response { id: request.id, body }));
        }
        Err(why) => why,
    };
    // One JSON value (not garbage after the object, a line cut short by the end of the input,
    // nesting too deep), checked without reading its numbers, which may not fit a float.
    let one_value = serde_json::from_str::<serde::de::IgnoredAny>(line).is_ok();
    if let Some(unsigned) = (one_value && not_utf8.is_none()).then(|| zeros_unsigned(line)).flatten() {
        return answer_line(&unsigned, None, line_no, ledger, journal, log);
    }
    let Some(id) = line_id(line.as_bytes()) else {
        let what = if not_utf8.is_some() { "cannot be read" } else { "is not a request and has no id" };
        writeln!(log, "ledger-sim serve: line {line_no} {what}: {why}")?;
        return Ok(None);
    };
    let body = if let Some(protocol) = one_value.then(|| other_protocol(line)).flatten() {
        error(ErrorCode::NotSupported, format!("protocol {protocol}: this server speaks {PROTOCOL_VERSION}"))
    } else if let Some(what) = (one_value && not_utf8.is_none()).then(|| integer_out_of_range(line)).flatten() {
        error(ErrorCode::OutOfRange, format!("line {line_no}: {what} is not in 0..=2^63-1"))
    } else {
        error(ErrorCode::Malformed, format!("line {line_no}: {why}"))
    };
    Ok(Some(Response { id, body }))
}

/// `request` (one JSON value) with each `-0` written ` 0`, when it has one: `-0` is the
/// integer 0 (SPEC.md §9.1), which serde reads as the float -0.0. The line keeps its length, so
/// an error's column still points into what the client sent.
fn zeros_unsigned(request: &str) -> Option<String> {
    let mut signs = Vec::new();
    find_scalar(request, |_, start, text| {
        if text.starts_with('-') && integer_outside(text) == Some(false) {
            signs.push(start);
        }
        None::<()>
    });
    if signs.is_empty() {
        return None;
    }
    let mut bytes = request.as_bytes().to_vec();
    for at in signs {
        bytes[at] = b' ';
    }
    String::from_utf8(bytes).ok()
}

/// The version a `hello` of another protocol names: any integer but 1, however many digits it
/// has. Such a hello is answered `not_supported` (SPEC.md §9.2) whatever else it holds, since a
/// later version's hello need not have this one's fields.
fn other_protocol(request: &str) -> Option<String> {
    let (mut hello, mut other) = (false, None);
    find_scalar(request, |keys, _, text| {
        match keys {
            [key] if key == "type" => hello = serde_json::from_str::<String>(text).is_ok_and(|t| t == "hello"),
            [key] if key == "protocol" && integer_outside(text).is_some() && text != "1" => {
                other = Some(shortened(text));
            }
            _ => {}
        }
        None::<()>
    });
    other.filter(|_| hello)
}

/// A line read: its text and, when it was not UTF-8, why; or, when it was too long to read
/// whole, its first bytes.
type ReadLine = Result<(String, Option<BadLine>), Vec<u8>>;

/// The next line without its `\n`, `None` at the end. A line that is not UTF-8 comes back
/// with its invalid bytes replaced (U+FFFD) and the reason, so that its `id` may still be read;
/// one longer than [`MAX_LINE`](crate::child::MAX_LINE) comes back as its first bytes, the rest
/// of it left unread.
fn read_line(input: &mut impl BufRead) -> std::io::Result<Option<ReadLine>> {
    let bytes = match read_bounded_prefix(input)? {
        None => return Ok(None),
        Some((prefix, false)) => return Ok(Some(Err(prefix))),
        Some((bytes, true)) => bytes,
    };
    Ok(Some(Ok(match String::from_utf8(bytes) {
        Ok(line) => (line, None),
        Err(e) => {
            let bad = BadLine::NotUtf8(e.utf8_error().to_string());
            (String::from_utf8_lossy(e.as_bytes()).into_owned(), Some(bad))
        }
    })))
}

/// The `id` of a line that is not a request, when it can be made out (SPEC.md §9.1): the
/// top-level object's `id`, an integer in `0..=2^64-1`, named once. In a line cut short (too
/// long to read whole) or not one JSON value, it counts when it comes before the cut or the
/// fault: `{"id":7,"type":"decide",...` gives 7; an `id` after the cut, or after a value the cut
/// falls in, gives `None`, and so does one the cut may have shortened (`{"x":"...","id":12` of
/// `"id":123456`): the id counts only when what follows it (another key, or the object's end)
/// was read too. serde_json reads the object's keys and skips their values whole (an `"id"`
/// inside one is not the request's, and a number is skipped without being read) until the
/// first fault; the error it then raises does not matter. A second `id` before the fault
/// leaves none: either could be another request's.
fn line_id(prefix: &[u8]) -> Option<u64> {
    use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
    use std::cell::Cell;

    struct Id<'a>(&'a Cell<Option<u64>>);
    impl<'de> Visitor<'de> for Id<'_> {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a request: a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let (mut named, mut read) = (false, None);
            loop {
                let key = map.next_key::<String>()?;
                // What follows the id, a key or the object's end, was read: the id is whole.
                if let Some(id) = read.take() {
                    self.0.set(Some(id));
                }
                match key {
                    None => return Ok(()),
                    Some(key) if key == "id" && named => {
                        self.0.set(None);
                        return Ok(());
                    }
                    Some(key) if key == "id" => {
                        named = true;
                        read = Some(map.next_value::<u64>()?);
                    }
                    Some(_) => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
        }
    }
    impl<'de> DeserializeSeed<'de> for Id<'_> {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }

    let id = Cell::new(None);
    let _ = Id(&id).deserialize(&mut serde_json::Deserializer::from_slice(prefix));
    id.get()
}

/// After a line too long to read: the rest of it, up to its `\n`.
fn skip_rest_of_line(input: &mut impl BufRead) -> std::io::Result<()> {
    loop {
        let buf = input.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(i) => {
                input.consume(i + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                input.consume(n);
            }
        }
    }
}

/// Whether the reference's answer `result` to `command`, which journaled `journal`, is fresh
/// where the harness reads it (SPEC.md §9.2): an outcome that made the movements it implies, or
/// one that implies none; a repeat makes none. A refusal is not fresh here; `serve` answers
/// `true` for a first one, where `fresh` is not read.
pub fn is_fresh(command: &Command, result: &Result<Outcome, Refusal>, journal: &[Movement]) -> bool {
    match result {
        Ok(outcome) => !journal.is_empty() || implied_movements(command, outcome, None).is_ok_and(|m| m.is_empty()),
        Err(_) => false,
    }
}

/// `fresh` as `serve` answers it (SPEC.md §9.2): [`is_fresh`] where the outcome moves sats, which
/// is where the harness reads it; elsewhere what the spec recommends, `false` for a repeat (a
/// decision answered again, R-IDEM-1, or an `insufficient_funds` refused again, R-PARTIAL-7) and
/// `true` for any other answer, a first refusal included. `repeat` is [`answered_before`],
/// asked before the command was applied.
fn fresh(command: &Command, result: &Result<Outcome, Refusal>, journal: &[Movement], repeat: bool) -> bool {
    let anyone = Pubkey::from_bytes([0; 32]);
    if result.as_ref().is_ok_and(|o| implied_movements(command, o, Some(anyone)).is_ok_and(|m| !m.is_empty())) {
        return is_fresh(command, result, journal);
    }
    !(repeat && matches!(result, Ok(Outcome::Decided { .. }) | Err(Refusal::InsufficientFunds { .. })))
}

/// Whether the ledger remembers an answer to `command` that moves no sats: its request was
/// decided (R-IDEM-1), or its amount refused `insufficient_funds` (R-PARTIAL-7).
fn answered_before(ledger: &Ledger, command: &Command) -> bool {
    match *command {
        Command::Decide { request_id, .. } => ledger.request(request_id).is_some(),
        Command::ReservePartial { request_id, amount_sats, .. } => {
            ledger.request(request_id).is_some_and(|r| r.refused.iter().any(|&(amount, _)| amount == amount_sats))
        }
        _ => false,
    }
}

fn error(code: ErrorCode, text: String) -> ResponseBody {
    ResponseBody::Error { code, definite: code.is_definite(), text }
}

/// [`answer`], after the checks every request passes: a time or id in range (SPEC.md §1), and
/// `hello` first (§9.1).
fn answer_checked(ledger: &mut Option<Ledger>, journal: &mut Vec<Movement>, body: RequestBody) -> ResponseBody {
    if let Some((field, v)) = body.out_of_range() {
        return error(ErrorCode::OutOfRange, format!("{field} {v} is above 2^63-1"));
    }
    if ledger.is_none() && !matches!(body, RequestBody::Hello { .. }) {
        return error(ErrorCode::Unavailable, "a request before hello".to_owned());
    }
    answer(ledger, journal, body)
}

fn answer(ledger: &mut Option<Ledger>, journal: &mut Vec<Movement>, body: RequestBody) -> ResponseBody {
    match body {
        RequestBody::Hello { protocol, config } => {
            if protocol != PROTOCOL_VERSION {
                return error(
                    ErrorCode::NotSupported,
                    format!("protocol {protocol}: this server speaks {PROTOCOL_VERSION}"),
                );
            }
            match Config::try_from(config) {
                Ok(c) => {
                    // A hello never returns a ledger to genesis (SPEC.md §9.2): a reset does.
                    if ledger.is_none() {
                        *ledger = Some(Ledger::new(c));
                    }
                    ResponseBody::HelloOk {
                        protocol: PROTOCOL_VERSION,
                        name: "ledger-sim serve (the reference engine)".to_owned(),
                        api: Api::Reference,
                        clock: "harness".to_owned(),
                        state: StateKind::Memory,
                    }
                }
                Err(e) => error(ErrorCode::Malformed, format!("config.{e}")),
            }
        }
        RequestBody::Reset { config } => match Config::try_from(config) {
            Ok(c) => {
                *ledger = Some(Ledger::new(c));
                ResponseBody::ResetOk
            }
            Err(e) => error(ErrorCode::Malformed, format!("config.{e}")),
        },
        RequestBody::Call { now_ms, call } => {
            let Some(ledger) = ledger.as_mut() else {
                return error(ErrorCode::Unavailable, "a call before hello".to_owned());
            };
            let command = call.to_command();
            let repeat = answered_before(ledger, &command);
            journal.clear();
            let result = ledger.apply(&command, now_ms, journal);
            ResponseBody::Reply { fresh: fresh(&command, &result, journal, repeat), reply: Reply::from(result) }
        }
        RequestBody::Observe => {
            let Some(ledger) = ledger.as_ref() else {
                return error(ErrorCode::Unavailable, "observe before hello".to_owned());
            };
            ResponseBody::Observed(Observation::of_totals(&ledger.totals()))
        }
    }
}
