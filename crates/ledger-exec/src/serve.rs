//! The reference engine behind the protocol (`ledger-sim serve`): the protocol's own
//! conformance test, a fast baseline for the client, and an example of the server side.
//!
//! It answers every request in the order it reads them, and flushes its output whenever its
//! input has nothing more buffered, so a client with many requests in flight gets them back in
//! few writes.

use std::io::{BufRead, BufReader, Read, Write};

use ledger_core::{implied_movements, Command, Config, Ledger, Movement, Outcome, Refusal};
use ledger_harness::Reply;

use crate::child::{read_bounded_line, BadLine};
use crate::protocol::{
    Api, ErrorCode, Observation, Request, RequestBody, Response, ResponseBody, StateKind, PROTOCOL_VERSION,
};

/// Serves the reference engine on `input`/`output` until end of input. A line that is not a
/// request is answered with a `malformed` error when its `id` can be read, and reported on
/// `log` otherwise. Returns an error only when the streams fail.
pub fn serve(input: impl Read, output: impl Write, log: &mut impl Write) -> std::io::Result<()> {
    let mut input = BufReader::with_capacity(1 << 16, input);
    let mut out = std::io::BufWriter::with_capacity(1 << 16, output);
    let mut ledger: Option<Ledger> = None;
    let mut journal: Vec<Movement> = Vec::new();
    let mut line_no: u64 = 0;
    loop {
        line_no += 1;
        let line = match read_bounded_line(&mut input)? {
            Some(Ok(line)) => line,
            None => break,
            Some(Err(bad)) => {
                // A line without an id to answer: said on stderr, and the server goes on.
                writeln!(log, "ledger-sim serve: line {line_no} cannot be read: {bad}")?;
                if bad == BadLine::TooLong {
                    skip_rest_of_line(&mut input)?;
                }
                continue;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => Some(Response { id: request.id, body: answer(&mut ledger, &mut journal, request.body) }),
            Err(e) => match serde_json::from_str::<serde_json::Value>(&line).ok().and_then(|v| v.get("id")?.as_u64()) {
                Some(id) => Some(Response { id, body: error(ErrorCode::Malformed, format!("line {line_no}: {e}")) }),
                None => {
                    writeln!(log, "ledger-sim serve: line {line_no} is not a request and has no id: {e}")?;
                    None
                }
            },
        };
        if let Some(response) = response {
            serde_json::to_writer(&mut out, &response).map_err(std::io::Error::other)?;
            out.write_all(b"\n")?;
        }
        if input.buffer().is_empty() {
            out.flush()?;
        }
    }
    out.flush()
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
/// (SPEC.md §9.2): an outcome that made the movements it implies, or one that implies none; a
/// repeat makes none, and a refusal is never fresh.
pub fn is_fresh(command: &Command, result: &Result<Outcome, Refusal>, journal: &[Movement]) -> bool {
    match result {
        Ok(outcome) => !journal.is_empty() || implied_movements(command, outcome, None).is_ok_and(|m| m.is_empty()),
        Err(_) => false,
    }
}

fn error(code: ErrorCode, text: String) -> ResponseBody {
    ResponseBody::Error { code, definite: code.is_definite(), text }
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
                    *ledger = Some(Ledger::new(c));
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
            journal.clear();
            let result = ledger.apply(&command, now_ms, journal);
            ResponseBody::Reply { fresh: is_fresh(&command, &result, journal), reply: Reply::from(result) }
        }
        RequestBody::Observe => {
            let Some(ledger) = ledger.as_ref() else {
                return error(ErrorCode::Unavailable, "observe before hello".to_owned());
            };
            let t = ledger.totals();
            let wide = |s: ledger_core::Sats| i64::try_from(s.to_u64()).expect("amounts are at most 2^63-1");
            ResponseBody::Observed(Observation {
                pool_sats: wide(t.pool_sats),
                reserved_sats: Some(wide(t.reserved_sats)),
                granted_sats: wide(t.absorbed_sats),
                n_grants: t.n_grants,
                credited_sats: Some(wide(t.credited_sats)),
                overrun_sats: Some(wide(t.overrun_sats)),
                identities: None,
            })
        }
    }
}
