//! The conformance trace format, version 1: JSON Lines that another implementation of the
//! ledger can replay, or produce and have checked (`ledger-sim check-trace`).
//!
//! A trace is UTF-8 text of lines separated by `\n`. A **header** line (an object with a
//! `"format"` key) starts a segment: a fresh ledger at genesis under the header's config. Each
//! following **step** line is one command at its `now`, with the outcome or refusal it must
//! give and the balances after it. A file may hold many segments; each is one case.
//!
//! ```text
//! {"format":"ledger-conformance","version":1,"case":"free","description":"","config":{...}}
//! {"now":1,"command":{"cmd":"set_tier",...},"expect":{"outcome":"tier_set","previous":null},"totals":{...},"identity":{...}}
//! ```
//!
//! Every number in a line is an integer in `0..=i64::MAX` (so that every value fits a
//! PostgreSQL `BIGINT`); anything else is refused with [`ErrorKind::NumberOutOfRange`]. The
//! reader never panics: every input gives a trace or a [`ReadError`] naming the line.
//!
//! The reader is pure (serde only). [`check`] replays a trace against the reference engine
//! (`ledger-sim check-trace`); `tests/conformance.rs` of each implementation drives its engine.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod check;
pub mod replay;

/// Reads every `*.jsonl` trace directly in `dir` (not its subdirectories), sorted by file
/// name, each parsed into its segments: how an implementation's tests load the conformance
/// vectors of `fixtures/conformance/`. An error names the file.
pub fn read_dir(dir: &std::path::Path) -> Result<Vec<(String, Vec<Segment>)>, String> {
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut names: Vec<String> =
        entries.filter_map(|e| e.ok()?.file_name().into_string().ok()).filter(|n| n.ends_with(".jsonl")).collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let path = dir.join(&name);
            let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let segments = read_bytes(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((name, segments))
        })
        .collect()
}

use ledger_core::{Bps, Budgets, Command, Config, Identity, Outcome, Pubkey, Refusal, Sats, Tier, TimeMs, Totals};

/// The value of a header's `"format"` key.
pub const FORMAT_NAME: &str = "ledger-conformance";
/// The format version this module reads and writes.
pub const FORMAT_VERSION: u64 = 1;
/// The largest number a trace may carry: `i64::MAX`, what a `BIGINT` holds.
pub const MAX_NUMBER: u64 = i64::MAX as u64;

/// A header line: the start of a segment run from genesis under `config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// The case's name, unique within a file (`window/exactly-24h`).
    pub case: String,
    /// What the case shows, in words; may be empty.
    pub description: String,
    /// The ids of the SPEC.md rules the case pins (`R-DECIDE-3`); may be empty.
    pub rules: Vec<String>,
    /// The ledger's configuration for this segment.
    pub config: Config,
}

/// What a step's command must answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Expect {
    /// An outcome: `{"outcome": ...}`.
    Outcome(Outcome),
    /// A refusal: `{"refusal": ...}`; nothing changed.
    Refusal(Refusal),
}

impl From<Result<Outcome, Refusal>> for Expect {
    fn from(r: Result<Outcome, Refusal>) -> Expect {
        match r {
            Ok(o) => Expect::Outcome(o),
            Err(r) => Expect::Refusal(r),
        }
    }
}

impl Expect {
    /// The expectation as the engine's result type.
    pub fn to_result(&self) -> Result<Outcome, Refusal> {
        match self {
            Expect::Outcome(o) => Ok(o.clone()),
            Expect::Refusal(r) => Err(r.clone()),
        }
    }
}

/// The ledger's balances after a step.
pub type Balances = Totals;

/// An identity's standing after a step, as stored (the window is not re-evaluated at `now`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Standing {
    /// Current tier.
    pub tier: Tier,
    /// Absorbed in the window that began at `absorbed_reset_at_ms`.
    pub sats_absorbed_today: Sats,
    /// Start of the current daily window.
    pub absorbed_reset_at_ms: TimeMs,
    /// Outstanding reservations of the identity.
    pub reserved_sats: Sats,
}

impl From<Identity> for Standing {
    fn from(i: Identity) -> Standing {
        Standing {
            tier: i.tier,
            sats_absorbed_today: i.sats_absorbed_today,
            absorbed_reset_at_ms: i.absorbed_reset_at,
            reserved_sats: i.reserved_sats,
        }
    }
}

/// A step line: one command, what it must answer, and the balances after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// When the command runs.
    pub now: TimeMs,
    /// The command.
    pub command: Command,
    /// Its outcome or refusal.
    pub expect: Expect,
    /// Balances after it.
    pub totals: Balances,
    /// The standing of the identity the command names (`None`: no identity has the pubkey).
    /// Written only for commands with a `pubkey`; ignored for the others.
    pub identity: Option<Standing>,
}

/// The pubkey a command names, if any: such a step carries an `"identity"` key.
pub fn named_pubkey(command: &Command) -> Option<Pubkey> {
    match *command {
        Command::SetTier { pubkey, .. } | Command::Decide { pubkey, .. } | Command::ReservePartial { pubkey, .. } => {
            Some(pubkey)
        }
        _ => None,
    }
}

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A header: a new segment from genesis.
    Header(Header),
    /// A step of the current segment.
    Step(Step),
}

/// A header and its steps, each with its 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Segment {
    /// The header's line number.
    pub line: usize,
    /// The header.
    pub header: Header,
    /// The steps, with their line numbers.
    pub steps: Vec<(usize, Step)>,
}

/// The kind of a [`ReadError`]: the part of the error other implementations must agree on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Not UTF-8, an empty line, a JSON syntax error, or a JSON value that is not an object.
    NotJson,
    /// The first line is not a header (or the input is empty).
    MissingHeader,
    /// A header with a wrong `format`, a missing or unknown key, or a bad config.
    BadHeader,
    /// A header of a version other than 1.
    UnsupportedVersion,
    /// A number that is not an integer in `0..=i64::MAX` (negative, fractional, exponent, or
    /// too large: `9223372036854775808` and `u64::MAX` are refused).
    NumberOutOfRange,
    /// A command's `pubkey` that is not 64 lowercase hex characters.
    BadPubkey,
    /// Any other step-line problem: a missing or unknown key, an unknown command, outcome or
    /// refusal, a value of the wrong type, an `identity` where none belongs.
    BadField,
}

impl ErrorKind {
    /// The kind's name as written in fixtures (`number_out_of_range`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotJson => "not_json",
            ErrorKind::MissingHeader => "missing_header",
            ErrorKind::BadHeader => "bad_header",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::NumberOutOfRange => "number_out_of_range",
            ErrorKind::BadPubkey => "bad_pubkey",
            ErrorKind::BadField => "bad_field",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A line the reader cannot accept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {kind}: {message}")]
pub struct ReadError {
    /// 1-based line number.
    pub line: usize,
    /// What kind of problem.
    pub kind: ErrorKind,
    /// The problem in words, naming the field.
    pub message: String,
}

fn err(kind: ErrorKind, message: impl Into<String>) -> (ErrorKind, String) {
    (kind, message.into())
}

type LineResult<T> = Result<T, (ErrorKind, String)>;

/// Parses one line (without its `\n`). `line_no` is used only in the error.
/// Line 1 must be a header: an object without a `"format"` key there is
/// [`ErrorKind::MissingHeader`].
pub fn parse_line(line_no: usize, text: &str) -> Result<Line, ReadError> {
    parse_line_inner(text, line_no == 1).map_err(|(kind, message)| ReadError { line: line_no, kind, message })
}

fn parse_line_inner(text: &str, first: bool) -> LineResult<Line> {
    if text.trim().is_empty() {
        return Err(err(ErrorKind::NotJson, "empty line"));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| err(ErrorKind::NotJson, e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(err(ErrorKind::NotJson, "a line must be a JSON object"));
    };
    if first && !obj.contains_key("format") {
        return Err(err(
            ErrorKind::MissingHeader,
            format!("the first line must be a header with \"format\": \"{FORMAT_NAME}\""),
        ));
    }
    check_numbers(&Value::Object(obj.clone()), &mut String::new())?;
    if obj.contains_key("format") {
        parse_header(obj).map(Line::Header)
    } else {
        parse_step(obj).map(Line::Step)
    }
}

/// Every number must be an integer in `0..=MAX_NUMBER`; the error names the first offender.
fn check_numbers(v: &Value, path: &mut String) -> LineResult<()> {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(u) if u <= MAX_NUMBER => Ok(()),
            _ => Err(err(
                ErrorKind::NumberOutOfRange,
                format!("{}: {n} is not an integer in 0..={MAX_NUMBER} (a BIGINT)", display_path(path)),
            )),
        },
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                check_numbers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        Value::Object(map) => {
            for (k, item) in map {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                check_numbers(item, path)?;
                path.truncate(len);
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() {
        "(line)"
    } else {
        path
    }
}

fn check_keys(obj: &Map<String, Value>, required: &[&str], optional: &[&str], what: &str) -> Result<(), String> {
    for k in required {
        if !obj.contains_key(*k) {
            return Err(format!("{what}: missing key `{k}`"));
        }
    }
    if let Some(k) = obj.keys().find(|k| !required.contains(&k.as_str()) && !optional.contains(&k.as_str())) {
        return Err(format!("{what}: unknown key `{k}`"));
    }
    Ok(())
}

/// The config of a header: every key required, none unknown.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TraceConfig {
    budget_sats: Budgets,
    pool_initial_sats: Sats,
    credit_bps: Bps,
    reservation_ttl_ms: u64,
}

fn parse_header(obj: Map<String, Value>) -> LineResult<Header> {
    let bad = |m: String| err(ErrorKind::BadHeader, m);
    match obj.get("format") {
        Some(Value::String(s)) if s == FORMAT_NAME => {}
        other => return Err(bad(format!("format must be \"{FORMAT_NAME}\", got {}", show(other)))),
    }
    match obj.get("version") {
        Some(Value::Number(n)) if n.as_u64() == Some(FORMAT_VERSION) => {}
        Some(Value::Number(n)) => {
            return Err(err(
                ErrorKind::UnsupportedVersion,
                format!("version {n} is not supported (this reader reads version {FORMAT_VERSION})"),
            ))
        }
        other => return Err(bad(format!("version must be an integer, got {}", show(other)))),
    }
    check_keys(&obj, &["format", "version", "case", "config"], &["description", "rules"], "header").map_err(bad)?;
    let case = match &obj["case"] {
        Value::String(s) => s.clone(),
        other => return Err(bad(format!("case must be a string, got {}", show(Some(other))))),
    };
    let description = match obj.get("description") {
        None => String::new(),
        Some(Value::String(s)) => s.clone(),
        other => return Err(bad(format!("description must be a string, got {}", show(other)))),
    };
    let rules = match obj.get("rules") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|r| match r {
                Value::String(id) if is_rule_id(id) => Ok(id.clone()),
                other => Err(bad(format!("rules: each must be a rule id like \"R-DECIDE-3\", got {other}"))),
            })
            .collect::<LineResult<Vec<String>>>()?,
        other => return Err(bad(format!("rules must be an array of rule ids, got {}", show(other)))),
    };
    let c: TraceConfig = serde_json::from_value(obj["config"].clone()).map_err(|e| bad(format!("config: {e}")))?;
    if c.reservation_ttl_ms == 0 {
        return Err(bad("config.reservation_ttl_ms: must be at least 1".into()));
    }
    let config = Config {
        budget_sats: c.budget_sats,
        pool_initial_sats: c.pool_initial_sats,
        credit_bps: c.credit_bps,
        reservation_ttl_ms: c.reservation_ttl_ms,
    };
    Ok(Header { case, description, rules, config })
}

/// True for a rule id of SPEC.md: `R-`, an upper-case area, `-`, a number (`R-DECIDE-3`).
pub fn is_rule_id(id: &str) -> bool {
    let mut parts = id.split('-');
    let (Some("R"), Some(area), Some(n), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    !area.is_empty()
        && area.bytes().all(|b| b.is_ascii_uppercase())
        && !n.is_empty()
        && n.len() <= 3
        && n.bytes().all(|b| b.is_ascii_digit())
        && !n.starts_with('0')
}

fn show(v: Option<&Value>) -> String {
    match v {
        None => "nothing".into(),
        Some(v) => {
            let s = v.to_string();
            if s.chars().count() > 40 {
                format!("{}...", s.chars().take(40).collect::<String>())
            } else {
                s
            }
        }
    }
}

fn parse_step(obj: Map<String, Value>) -> LineResult<Step> {
    let bad = |m: String| err(ErrorKind::BadField, m);
    check_keys(&obj, &["now", "command", "expect", "totals"], &["identity"], "step").map_err(bad)?;
    let now = match obj["now"].as_u64() {
        Some(n) => TimeMs(n),
        None => return Err(bad(format!("now must be an integer, got {}", show(obj.get("now"))))),
    };
    if let Some(Value::String(s)) = obj["command"].get("pubkey") {
        if let Err(e) = s.parse::<Pubkey>() {
            return Err(err(ErrorKind::BadPubkey, format!("command.pubkey: {e}")));
        }
    }
    let command: Command = canonical(&obj["command"], "command").map_err(bad)?;
    let expect = match &obj["expect"] {
        Value::Object(e) => match (e.contains_key("outcome"), e.contains_key("refusal")) {
            (true, false) => Expect::Outcome(canonical(&obj["expect"], "expect").map_err(bad)?),
            (false, true) => Expect::Refusal(canonical(&obj["expect"], "expect").map_err(bad)?),
            _ => return Err(bad("expect: needs exactly one of the keys `outcome` and `refusal`".into())),
        },
        other => return Err(bad(format!("expect must be an object, got {}", show(Some(other))))),
    };
    let totals: Balances = serde_json::from_value(obj["totals"].clone()).map_err(|e| bad(format!("totals: {e}")))?;
    let identity = match (named_pubkey(&command), obj.get("identity")) {
        (Some(_), Some(v)) => {
            serde_json::from_value::<Option<Standing>>(v.clone()).map_err(|e| bad(format!("identity: {e}")))?
        }
        (Some(_), None) => {
            return Err(bad(format!("step: missing key `identity` (a {} names a pubkey)", command.name())))
        }
        (None, Some(_)) => {
            return Err(bad(format!(
                "step: key `identity` does not belong to a {} (it names no pubkey)",
                command.name()
            )))
        }
        (None, None) => None,
    };
    Ok(Step { now, command, expect, totals, identity })
}

/// Decodes `v` as `T` and insists that it is `T`'s canonical form: no unknown key, no
/// missing key (an `Option` is written as `null`, never left out).
fn canonical<T: Serialize + for<'de> Deserialize<'de>>(v: &Value, what: &str) -> Result<T, String> {
    let t: T = serde_json::from_value(v.clone()).map_err(|e| format!("{what}: {e}"))?;
    let back = serde_json::to_value(&t).map_err(|e| format!("{what}: {e}"))?;
    match first_difference(v, &back, what) {
        None => Ok(t),
        Some(d) => Err(d),
    }
}

fn first_difference(given: &Value, canonical: &Value, path: &str) -> Option<String> {
    match (given, canonical) {
        (Value::Object(g), Value::Object(c)) => {
            if let Some(k) = g.keys().find(|k| !c.contains_key(*k)) {
                return Some(format!("{path}: unknown key `{k}`"));
            }
            if let Some(k) = c.keys().find(|k| !g.contains_key(*k)) {
                return Some(format!("{path}: missing key `{k}`"));
            }
            g.iter().find_map(|(k, gv)| first_difference(gv, &c[k], &format!("{path}.{k}")))
        }
        (Value::Array(g), Value::Array(c)) if g.len() == c.len() => {
            g.iter().zip(c).enumerate().find_map(|(i, (gv, cv))| first_difference(gv, cv, &format!("{path}[{i}]")))
        }
        _ if given == canonical => None,
        _ => {
            Some(format!("{path}: {} is not in canonical form (expected {})", show(Some(given)), show(Some(canonical))))
        }
    }
}

/// Reads a whole trace. The first line must be a header; blank lines are errors; a final
/// `\n` is allowed. Stops at the first bad line.
pub fn read_str(text: &str) -> Result<Vec<Segment>, ReadError> {
    read_bytes(text.as_bytes())
}

/// Reads a whole trace from bytes; a line that is not UTF-8 is a [`ErrorKind::NotJson`] error.
pub fn read_bytes(bytes: &[u8]) -> Result<Vec<Segment>, ReadError> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Err(ReadError { line: 1, kind: ErrorKind::MissingHeader, message: "the trace is empty".into() });
    }
    read_lines(body.split(|&b| b == b'\n').map(|l| std::str::from_utf8(l).map_err(|_| ())).enumerate())
}

fn read_lines<'a>(lines: impl Iterator<Item = (usize, Result<&'a str, ()>)>) -> Result<Vec<Segment>, ReadError> {
    let mut segments: Vec<Segment> = Vec::new();
    for (i, text) in lines {
        let line_no = i + 1;
        let text = text.map_err(|()| ReadError {
            line: line_no,
            kind: ErrorKind::NotJson,
            message: "the line is not UTF-8".into(),
        })?;
        match parse_line(line_no, text)? {
            Line::Header(header) => segments.push(Segment { line: line_no, header, steps: Vec::new() }),
            Line::Step(step) => match segments.last_mut() {
                Some(seg) => seg.steps.push((line_no, step)),
                None => {
                    return Err(ReadError {
                        line: line_no,
                        kind: ErrorKind::MissingHeader,
                        message: format!("the first line must be a header with \"format\": \"{FORMAT_NAME}\""),
                    })
                }
            },
        }
    }
    Ok(segments)
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    format: &'static str,
    version: u64,
    case: &'a str,
    description: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    rules: &'a [String],
    config: &'a Config,
}

#[derive(Serialize)]
struct StepOut<'a> {
    now: TimeMs,
    command: &'a Command,
    expect: &'a Expect,
    totals: &'a Balances,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<&'a Option<Standing>>,
}

impl Header {
    /// The header as one line of JSON, without the `\n`.
    pub fn to_line(&self) -> String {
        let out = HeaderOut {
            format: FORMAT_NAME,
            version: FORMAT_VERSION,
            case: &self.case,
            description: &self.description,
            rules: &self.rules,
            config: &self.config,
        };
        serde_json::to_string(&out).expect("a header serializes")
    }
}

impl Step {
    /// The step as one line of JSON, without the `\n`. `identity` is written (possibly as
    /// `null`) exactly when the command names a pubkey.
    pub fn to_line(&self) -> String {
        let identity = named_pubkey(&self.command).map(|_| &self.identity);
        let out =
            StepOut { now: self.now, command: &self.command, expect: &self.expect, totals: &self.totals, identity };
        serde_json::to_string(&out).expect("a step serializes")
    }
}

/// Writes segments as a trace (every line ends with `\n`).
pub fn write_string(segments: &[(Header, Vec<Step>)]) -> String {
    let mut out = String::new();
    for (header, steps) in segments {
        out.push_str(&header.to_line());
        out.push('\n');
        for s in steps {
            out.push_str(&s.to_line());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::RequestId;

    fn header_line() -> String {
        Header { case: "c".into(), description: String::new(), rules: Vec::new(), config: Config::default() }.to_line()
    }

    #[test]
    fn a_step_round_trips() {
        let step = Step {
            now: TimeMs(5),
            command: Command::Decide {
                request_id: RequestId(1),
                pubkey: crate::users::user_pubkey(1),
                estimated_sats: Sats::new(3).unwrap(),
            },
            expect: Expect::Refusal(Refusal::UnknownRequest),
            totals: Balances::default(),
            identity: None,
        };
        let text = format!("{}\n{}\n", header_line(), step.to_line());
        let segs = read_str(&text).unwrap();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].steps, vec![(2, step)]);
    }

    #[test]
    fn garbage_is_an_error_with_a_line_number() {
        let text = format!("{}\n{{\"now\": 1,\n", header_line());
        let e = read_str(&text).unwrap_err();
        assert_eq!((e.line, e.kind), (2, ErrorKind::NotJson));
        let e = read_bytes(b"\xff\xfe").unwrap_err();
        assert_eq!((e.line, e.kind), (1, ErrorKind::NotJson));
        assert_eq!(read_str("").unwrap_err().kind, ErrorKind::MissingHeader);
    }
}
