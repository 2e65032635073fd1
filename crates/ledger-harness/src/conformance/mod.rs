//! The conformance trace format, versions 1 and 2: JSON Lines that another implementation of
//! the ledger can replay, or produce and have checked (`ledger-sim check-trace`).
//!
//! A trace is UTF-8 text of lines separated by `\n`. A **header** line (an object with a
//! `"format"` key) starts a segment: a fresh ledger at genesis under the header's config. Each
//! following **step** line is one command at its `now`, with the outcome or refusal it must
//! give and the balances after it. A file may hold many segments; each is one case. In version
//! 2 the last line is a **footer**: the numbers of segments and steps, and the SHA-256 of every
//! byte before it, so that a trace cut short (even at a line boundary) is refused.
//!
//! ```text
//! {"format":"ledger-conformance","version":2,"case":"free","description":"","config":{...}}
//! {"now":1,"command":{"cmd":"set_tier",...},"expect":{"outcome":"tier_set","previous":null},"totals":{...},"identity":{...}}
//! {"footer":{"segments":1,"steps":1,"sha256":"5f0c..."}}
//! ```
//!
//! Every number in a line is an integer in `0..=i64::MAX` (so that every value fits a
//! PostgreSQL `BIGINT`); anything else is refused with [`ErrorKind::NumberOutOfRange`] (but for
//! the balances of a step's `totals` read by [`read_trace_claims`], for `check-trace`). An
//! object may not name a key twice. The reader never panics: every input gives a trace or a
//! [`ReadError`] naming the line. Version 1 (no footer, no `rules`) is still read; the writer
//! writes version 2.
//!
//! The reader is pure (serde and SHA-256 only). [`check`] replays a trace against the
//! reference engine (`ledger-sim check-trace`); the `conformance` test module of each implementation
//! drives its engine.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub mod check;
pub mod replay;
pub mod rules;

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

use ledger_core::{Command, Config, ConfigJson, Identity, Outcome, Pubkey, Refusal, Sats, Tier, TimeMs, Totals};

/// The value of a header's `"format"` key.
pub const FORMAT_NAME: &str = "ledger-conformance";
/// The format version this module writes; it reads this one and every one back to
/// [`OLDEST_VERSION`].
pub const FORMAT_VERSION: u64 = 2;
/// The oldest version this module reads: version 1, which has no footer (a cut trace cannot
/// be told from a whole one) and no `rules` key.
pub const OLDEST_VERSION: u64 = 1;
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

/// The last line of a version 2 trace: what came before it, counted and hashed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Footer {
    /// Number of header lines.
    pub segments: u64,
    /// Number of step lines.
    pub steps: u64,
    /// SHA-256 of every byte before the footer line (each earlier line with its `\n`), as 64
    /// lowercase hex characters.
    pub sha256: String,
}

impl Footer {
    /// The footer of `text`, the lines before it, holding `segments` headers and `steps`
    /// steps.
    pub fn of(text: &[u8], segments: usize, steps: usize) -> Footer {
        Footer { segments: segments as u64, steps: steps as u64, sha256: Sha256Hex::of(text) }
    }

    /// The footer as one line of JSON, without the `\n`.
    pub fn to_line(&self) -> String {
        #[derive(Serialize)]
        struct FooterLine<'a> {
            footer: &'a Footer,
        }
        serde_json::to_string(&FooterLine { footer: self }).expect("a footer serializes")
    }
}

/// SHA-256 written as 64 lowercase hex characters: what a footer's `sha256` holds, here and in
/// the simulator's own traces (`ledger-sim-trace`). Fed in pieces, so that a reader can hash
/// lines as it goes.
#[derive(Clone, Debug, Default)]
pub struct Sha256Hex(sha2::Sha256);

impl Sha256Hex {
    /// Adds `bytes` to what is hashed.
    pub fn update(&mut self, bytes: &[u8]) {
        sha2::Digest::update(&mut self.0, bytes);
    }

    /// The hash of everything added so far.
    pub fn hex(&self) -> String {
        sha2::Digest::finalize(self.0.clone()).iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> String {
        let mut h = Sha256Hex::default();
        h.update(bytes);
        h.hex()
    }

    /// True for 64 lowercase hex characters.
    pub fn is_hex(s: &str) -> bool {
        s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

/// One line of a trace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// A header: a new segment from genesis, in a file of format `version`.
    Header {
        /// The header's `version`: every header of a file has the same.
        version: u64,
        /// The header.
        header: Header,
    },
    /// A step of the current segment.
    Step(Step),
    /// The footer (version 2), which must be the last line; [`parse_line`] reads it, only
    /// [`read_trace`] can check its counts and hash.
    Footer(Footer),
}

/// A whole trace, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trace {
    /// The version of its headers.
    pub version: u64,
    /// Its segments.
    pub segments: Vec<Segment>,
    /// Its footer, checked; `None` in version 1, which has none: there, a trace cut at a line
    /// boundary cannot be told from a whole one.
    pub footer: Option<Footer>,
    /// The balances of a step's `totals` written outside `0..=`[`MAX_NUMBER`] (a negative
    /// pool, a balance beyond what a `BIGINT` holds, within 64 bits), by the step's line, each
    /// with its key (`pool_sats`): what [`read_trace_claims`] takes as the implementation's
    /// claim (the step reads with 0 there) instead of refusing the line. Always empty from
    /// [`read_trace`].
    pub claimed_totals: BTreeMap<usize, Vec<(String, i128)>>,
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
    /// Not UTF-8, a byte order mark, a `\r` before the `\n`, an empty line, a JSON syntax
    /// error, or a JSON value that is not an object.
    NotJson,
    /// An object (at any depth) that names a key twice.
    DuplicateKey,
    /// The first line is not a header (or the input is empty).
    MissingHeader,
    /// A header with a wrong `format`, a missing or unknown key, or a bad config; a version
    /// other than the file's first header's; a case name the file already used.
    BadHeader,
    /// A header of a version this reader does not read (not 1 or 2).
    UnsupportedVersion,
    /// A number that is not an integer in `0..=i64::MAX` (negative, fractional, exponent, or
    /// too large: `9223372036854775808`, `u64::MAX` and `1e400` are refused).
    NumberOutOfRange,
    /// A command's `pubkey` that is not 64 lowercase hex characters.
    BadPubkey,
    /// Any other step-line problem: a missing or unknown key, an unknown command, outcome or
    /// refusal, a value of the wrong type, an `identity` where none belongs.
    BadField,
    /// A malformed footer, a footer whose counts or hash do not match the lines before it, a
    /// footer in a version 1 trace, or a line after the footer.
    BadFooter,
    /// A version 2 trace that ends without a footer (cut short); the line is the one after
    /// the last.
    MissingFooter,
}

impl ErrorKind {
    /// The kind's name as written in fixtures (`number_out_of_range`).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::NotJson => "not_json",
            ErrorKind::DuplicateKey => "duplicate_key",
            ErrorKind::MissingHeader => "missing_header",
            ErrorKind::BadHeader => "bad_header",
            ErrorKind::UnsupportedVersion => "unsupported_version",
            ErrorKind::NumberOutOfRange => "number_out_of_range",
            ErrorKind::BadPubkey => "bad_pubkey",
            ErrorKind::BadField => "bad_field",
            ErrorKind::BadFooter => "bad_footer",
            ErrorKind::MissingFooter => "missing_footer",
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
/// [`ErrorKind::MissingHeader`]. What needs the whole file (one version per file, unique case
/// names, the footer's counts and hash, nothing after it) is checked by [`read_trace`].
pub fn parse_line(line_no: usize, text: &str) -> Result<Line, ReadError> {
    parse_line_inner(text, line_no == 1, None).map_err(|(kind, message)| ReadError { line: line_no, kind, message })
}

/// [`parse_line`]; with `claimed`, a step's balances (its `totals`' `*_sats`) written outside
/// `0..=`[`MAX_NUMBER`] but within 64 bits are pushed onto it, each with its key, and read as 0,
/// instead of refusing the line ([`read_trace_claims`]).
fn parse_line_inner(text: &str, first: bool, claimed: Option<&mut Vec<(String, i128)>>) -> LineResult<Line> {
    let (mut obj, unreadable) = read_object(text)?;
    if let (Some(claimed), false) = (claimed, obj.contains_key("format") || obj.contains_key("footer")) {
        if let Some(Value::Object(totals)) = obj.get_mut("totals") {
            for (key, value) in totals.iter_mut().filter(|(k, _)| k.ends_with("_sats")) {
                let Value::Number(n) = value else { continue };
                let claim = match (n.as_i64(), n.as_u64()) {
                    (Some(v), _) if v < 0 => i128::from(v),
                    (_, Some(v)) if v > MAX_NUMBER => i128::from(v),
                    _ => continue,
                };
                claimed.push((key.clone(), claim));
                *value = Value::from(0u64);
            }
        }
    }
    if first && !obj.contains_key("format") {
        return Err(err(
            ErrorKind::MissingHeader,
            format!("the first line must be a header with \"format\": \"{FORMAT_NAME}\""),
        ));
    }
    if let Some(number) = unreadable {
        return Err(err(
            ErrorKind::NumberOutOfRange,
            format!("{number} is not an integer in 0..={MAX_NUMBER} (a BIGINT)"),
        ));
    }
    check_map_numbers(&obj, &mut String::new())?;
    if obj.contains_key("format") {
        parse_header(obj).map(|(version, header)| Line::Header { version, header })
    } else if obj.contains_key("footer") {
        parse_footer(obj).map(Line::Footer)
    } else {
        parse_step(obj).map(Line::Step)
    }
}

/// The line as a JSON object, and the first number in it that no float holds (`1e400`), if
/// any: such a line is read with that number as `0`, so that the checks before
/// [`ErrorKind::NumberOutOfRange`] still come first.
fn read_object(text: &str) -> LineResult<(Map<String, Value>, Option<String>)> {
    if text.starts_with('\u{feff}') {
        return Err(err(
            ErrorKind::NotJson,
            "the line starts with a byte order mark (U+FEFF): a trace is UTF-8 without one",
        ));
    }
    if text.ends_with('\r') {
        return Err(err(ErrorKind::NotJson, "the line ends with \\r: lines end with \\n alone, not \\r\\n"));
    }
    if text.trim().is_empty() {
        return Err(err(ErrorKind::NotJson, "empty line"));
    }
    let (value, unreadable) = match unique_keys(text) {
        // `-0` reads as 0: the one signed number that parses into range.
        Ok(value) if text.contains("-0") => (value, blank_bad_numbers(text).1),
        Ok(value) => (value, None),
        Err(_) => {
            // A syntax error, a key twice, or a number serde_json cannot hold: told apart on
            // the line with every out-of-range number blanked to `0`.
            let (blanked, first_bad) = blank_bad_numbers(text);
            if let Err(e) = serde_json::from_str::<IgnoredAny>(&blanked) {
                return Err(err(ErrorKind::NotJson, e.to_string()));
            }
            match unique_keys(&blanked) {
                Ok(value) => (value, first_bad),
                Err(e) => return Err(err(ErrorKind::DuplicateKey, duplicate_message(&e))),
            }
        }
    };
    match value {
        Value::Object(obj) => Ok((obj, unreadable)),
        _ => Err(err(ErrorKind::NotJson, "a line must be a JSON object")),
    }
}

/// `text` as a JSON value, refusing an object that names a key twice (`serde_json::Value`
/// would keep the last and hide the first).
fn unique_keys(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = UniqueKeys { parent: None, at: PathPart::Root }.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// The words of a duplicate-key error, with its column instead of serde_json's "line 1".
fn duplicate_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let words = text.strip_suffix(&suffix).unwrap_or(&text);
    format!("{words} (column {}): an object names each key once", e.column())
}

/// Where a value sits in a line, as a chain up to the line's object: rendered only for an
/// error, so reading a line allocates no paths.
#[derive(Clone, Copy)]
enum PathPart<'a> {
    Root,
    Key(&'a str),
    Index(usize),
}

/// Reads a JSON value as `serde_json::Value` does, except that a key named twice in one
/// object is an error naming its path (`command.cmd`).
#[derive(Clone, Copy)]
struct UniqueKeys<'a> {
    parent: Option<&'a UniqueKeys<'a>>,
    at: PathPart<'a>,
}

impl UniqueKeys<'_> {
    fn path(&self) -> String {
        let mut out = self.parent.map(UniqueKeys::path).unwrap_or_default();
        match self.at {
            PathPart::Root => {}
            PathPart::Key(k) if out.is_empty() => out.push_str(k),
            PathPart::Key(k) => {
                out.push('.');
                out.push_str(k);
            }
            PathPart::Index(i) => out.push_str(&format!("[{i}]")),
        }
        out
    }
}

impl<'de> DeserializeSeed<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for UniqueKeys<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) =
            seq.next_element_seed(UniqueKeys { parent: Some(&self), at: PathPart::Index(items.len()) })?
        {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let child = UniqueKeys { parent: Some(&self), at: PathPart::Key(&key) };
            if obj.contains_key(&key) {
                return Err(A::Error::custom(format!("duplicate key `{}`", child.path())));
            }
            let value = map.next_value_seed(child)?;
            obj.insert(key, value);
        }
        Ok(Value::Object(obj))
    }
}

/// `text` with every JSON number that is not a plain integer in `0..=MAX_NUMBER` replaced by
/// `0` and spaces (the same length, so columns stay true), and the first such number. Strings
/// are skipped; a run of number characters that is not a JSON number is left as it is (a
/// syntax error).
fn blank_bad_numbers(text: &str) -> (String, Option<String>) {
    let bytes = text.as_bytes();
    let mut out = bytes.to_vec();
    let mut first = None;
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'-' | b'0'..=b'9' if !in_string => {
                let len = bytes[i..]
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(bytes.len() - i);
                let token = &text[i..i + len];
                if is_json_number(token) && !token.parse::<u64>().is_ok_and(|n| n <= MAX_NUMBER && is_plain(token)) {
                    first.get_or_insert_with(|| token.to_owned());
                    out[i] = b'0';
                    out[i + 1..i + len].fill(b' ');
                }
                i += len - 1;
            }
            _ => {}
        }
        i += 1;
    }
    (String::from_utf8(out).expect("ASCII replaced by ASCII"), first)
}

/// The first whole number of the JSON `text` that no 64-bit integer holds (beyond
/// `i64::MIN..=u64::MAX`), as written, with the key it is the value of (`None` in an array of
/// the top level): serde_json reads such a number as a float and calls it one, which hides
/// that the digits were simply too many.
pub fn integer_beyond_64_bits(text: &str) -> Option<(Option<String>, String)> {
    let bytes = text.as_bytes();
    let (mut in_string, mut string_start) = (false, 0);
    let (mut last_string, mut key): (Option<&str>, Option<&str>) = (None, None);
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' if in_string => {
                in_string = false;
                last_string = text.get(string_start..i);
            }
            b'"' => (in_string, string_start) = (true, i + 1),
            b':' if !in_string => key = last_string,
            b'-' | b'0'..=b'9' if !in_string => {
                let len = bytes[i..]
                    .iter()
                    .position(|b| !matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .unwrap_or(bytes.len() - i);
                let token = &text[i..i + len];
                let digits = token.strip_prefix('-').unwrap_or(token);
                if !digits.is_empty()
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && token.parse::<u64>().is_err()
                    && token.parse::<i64>().is_err()
                {
                    return Some((key.map(str::to_owned), token.to_owned()));
                }
                i += len - 1;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Digits only, without a leading zero (but `0` itself).
fn is_plain(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_digit()) && (token == "0" || !token.starts_with('0'))
}

/// The JSON grammar of a number: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
fn is_json_number(token: &str) -> bool {
    fn digits(s: &[u8]) -> usize {
        s.iter().take_while(|b| b.is_ascii_digit()).count()
    }
    let mut s = token.as_bytes();
    if let Some(rest) = s.strip_prefix(b"-") {
        s = rest;
    }
    let n = digits(s);
    if n == 0 || (n > 1 && s[0] == b'0') {
        return false;
    }
    s = &s[n..];
    if let Some(rest) = s.strip_prefix(b".") {
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        s = &rest[n..];
    }
    if let Some(rest) = s.strip_prefix(b"e").or_else(|| s.strip_prefix(b"E")) {
        let rest = rest.strip_prefix(b"+").or_else(|| rest.strip_prefix(b"-")).unwrap_or(rest);
        let n = digits(rest);
        if n == 0 {
            return false;
        }
        s = &rest[n..];
    }
    s.is_empty()
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
        Value::Object(map) => check_map_numbers(map, path),
        _ => Ok(()),
    }
}

fn check_map_numbers(map: &Map<String, Value>, path: &mut String) -> LineResult<()> {
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

fn parse_header(obj: Map<String, Value>) -> LineResult<(u64, Header)> {
    let bad = |m: String| err(ErrorKind::BadHeader, m);
    match obj.get("format") {
        Some(Value::String(s)) if s == FORMAT_NAME => {}
        other => return Err(bad(format!("format must be \"{FORMAT_NAME}\", got {}", show(other)))),
    }
    let version = match obj.get("version") {
        Some(Value::Number(n)) => match n.as_u64() {
            Some(v) if (OLDEST_VERSION..=FORMAT_VERSION).contains(&v) => v,
            _ => {
                return Err(err(
                    ErrorKind::UnsupportedVersion,
                    format!(
                    "version {n} is not supported (this reader reads versions {OLDEST_VERSION} to {FORMAT_VERSION})"
                ),
                ))
            }
        },
        other => return Err(bad(format!("version must be an integer, got {}", show(other)))),
    };
    if version == 1 && obj.contains_key("rules") {
        return Err(bad("header: unknown key `rules` in a version 1 header (rules came with version 2)".into()));
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
    let c: ConfigJson = serde_json::from_value(obj["config"].clone()).map_err(|e| bad(format!("config: {e}")))?;
    let config = Config::try_from(c).map_err(|e| bad(format!("config.{e}")))?;
    Ok((version, Header { case, description, rules, config }))
}

fn parse_footer(mut obj: Map<String, Value>) -> LineResult<Footer> {
    let bad = |m: String| err(ErrorKind::BadFooter, m);
    check_keys(&obj, &["footer"], &[], "footer line").map_err(bad)?;
    let value = obj.remove("footer").unwrap_or_default();
    let footer: Footer = serde_json::from_value(value).map_err(|e| bad(format!("footer: {e}")))?;
    if !Sha256Hex::is_hex(&footer.sha256) {
        return Err(bad(format!("footer.sha256: must be 64 lowercase hex characters, got {:?}", footer.sha256)));
    }
    Ok(footer)
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

/// Reads a whole trace's segments; see [`read_trace`].
pub fn read_str(text: &str) -> Result<Vec<Segment>, ReadError> {
    read_bytes(text.as_bytes())
}

/// Reads a whole trace's segments from bytes; see [`read_trace`].
pub fn read_bytes(bytes: &[u8]) -> Result<Vec<Segment>, ReadError> {
    read_trace(bytes).map(|t| t.segments)
}

/// Reads a whole trace. The first line must be a header; blank lines are errors; a final
/// `\n` is allowed; a line that is not UTF-8 is a [`ErrorKind::NotJson`] error. Every header
/// has the same version; case names are unique. A version 2 trace ends with its footer,
/// whose counts and hash must match the lines before it. Stops at the first bad line.
pub fn read_trace(bytes: &[u8]) -> Result<Trace, ReadError> {
    read_trace_with(bytes, Reader::default())
}

/// [`read_trace`] for a trace another implementation wrote of what it did (`ledger-sim
/// check-trace`): a balance of a step's `totals` written outside `0..=`[`MAX_NUMBER`] but within
/// 64 bits (`"pool_sats":-42`) is its claim, kept in [`Trace::claimed_totals`] for the checker
/// to hold against the reference and the invariants, not a reason to refuse the line. Every
/// other line is read as [`read_trace`] reads it.
pub fn read_trace_claims(bytes: &[u8]) -> Result<Trace, ReadError> {
    read_trace_with(bytes, Reader { claims: true, ..Reader::default() })
}

fn read_trace_with(bytes: &[u8], mut reader: Reader) -> Result<Trace, ReadError> {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    if body.is_empty() {
        return Err(ReadError { line: 1, kind: ErrorKind::MissingHeader, message: "the trace is empty".into() });
    }
    let mut offset = 0;
    let mut n_lines = 0;
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        n_lines = i + 1;
        reader.line(n_lines, raw, &bytes[..offset]).map_err(|(kind, message)| ReadError {
            line: n_lines,
            kind,
            message,
        })?;
        offset += raw.len() + 1;
    }
    reader.finish(n_lines)
}

/// What [`read_trace`] knows of a file after some of its lines.
#[derive(Default)]
struct Reader {
    /// The first header's version and line.
    version: Option<(u64, usize)>,
    segments: Vec<Segment>,
    n_steps: usize,
    /// Each case name, with the line of its header.
    cases: BTreeMap<String, usize>,
    /// The footer, with its line.
    footer: Option<(usize, Footer)>,
    /// Whether a step's balances out of range are claims ([`read_trace_claims`]).
    claims: bool,
    /// Those claims, by line.
    claimed: BTreeMap<usize, Vec<(String, i128)>>,
}

impl Reader {
    /// Reads line `line_no`, `raw`, which follows the bytes `before`.
    fn line(&mut self, line_no: usize, raw: &[u8], before: &[u8]) -> LineResult<()> {
        if let Some((at, _)) = &self.footer {
            return Err(err(
                ErrorKind::BadFooter,
                format!("a line after the footer (line {at}): the footer is the last line"),
            ));
        }
        let text = std::str::from_utf8(raw).map_err(|_| err(ErrorKind::NotJson, "the line is not UTF-8"))?;
        let mut claimed = Vec::new();
        let line = parse_line_inner(text, line_no == 1, self.claims.then_some(&mut claimed))?;
        if !claimed.is_empty() {
            self.claimed.insert(line_no, claimed);
        }
        match line {
            Line::Header { version, header } => {
                let (first_version, first_line) = *self.version.get_or_insert((version, line_no));
                if version != first_version {
                    return Err(err(
                        ErrorKind::BadHeader,
                        format!("version {version}, but the header at line {first_line} is version {first_version}: a file holds one version"),
                    ));
                }
                if let Some(first) = self.cases.insert(header.case.clone(), line_no) {
                    return Err(err(
                        ErrorKind::BadHeader,
                        format!("case {:?} again, first at line {first}: a case name is unique in a file", header.case),
                    ));
                }
                self.segments.push(Segment { line: line_no, header, steps: Vec::new() });
            }
            Line::Step(step) => match self.segments.last_mut() {
                Some(seg) => {
                    seg.steps.push((line_no, step));
                    self.n_steps += 1;
                }
                None => {
                    return Err(err(
                        ErrorKind::MissingHeader,
                        format!("the first line must be a header with \"format\": \"{FORMAT_NAME}\""),
                    ))
                }
            },
            Line::Footer(footer) => {
                self.check_footer(&footer, before)?;
                self.footer = Some((line_no, footer));
            }
        }
        Ok(())
    }

    fn check_footer(&self, footer: &Footer, before: &[u8]) -> LineResult<()> {
        let bad = |m: String| err(ErrorKind::BadFooter, m);
        if let Some((1, line)) = self.version {
            return Err(bad(format!(
                "a footer in a version 1 trace (header at line {line}): footers came with version 2"
            )));
        }
        let counted = (self.segments.len() as u64, self.n_steps as u64);
        if (footer.segments, footer.steps) != counted {
            return Err(bad(format!(
                "the footer counts {} segments and {} steps, the lines before it hold {} and {}",
                footer.segments, footer.steps, counted.0, counted.1
            )));
        }
        let sha256 = Sha256Hex::of(before);
        if footer.sha256 != sha256 {
            return Err(bad(format!("footer.sha256 is {}, the lines before it hash to {sha256}", footer.sha256)));
        }
        Ok(())
    }

    /// The trace, once its `n_lines` lines are read.
    fn finish(self, n_lines: usize) -> Result<Trace, ReadError> {
        let version = self.version.map_or(FORMAT_VERSION, |(v, _)| v);
        if version >= 2 && self.footer.is_none() {
            return Err(ReadError {
                line: n_lines + 1,
                kind: ErrorKind::MissingFooter,
                message: format!("the trace ends after line {n_lines} without its footer: it was cut short"),
            });
        }
        Ok(Trace {
            version,
            segments: self.segments,
            footer: self.footer.map(|(_, f)| f),
            claimed_totals: self.claimed,
        })
    }
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
        self.to_line_of(FORMAT_VERSION)
    }

    /// The header as one line of a trace of `version`; version 1 has no `rules`.
    fn to_line_of(&self, version: u64) -> String {
        let rules: &[String] = if version >= 2 { &self.rules } else { &[] };
        let out = HeaderOut {
            format: FORMAT_NAME,
            version,
            case: &self.case,
            description: &self.description,
            rules,
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

/// Writes segments as a trace of the current version, footer included (every line ends with
/// `\n`).
pub fn write_string(segments: &[(Header, Vec<Step>)]) -> String {
    write_version(FORMAT_VERSION, segments)
}

/// Writes segments as a trace of `version`, 1 or 2: version 1 (for a reader that knows only
/// it) has no footer, and leaves the headers' `rules` out.
pub fn write_version(version: u64, segments: &[(Header, Vec<Step>)]) -> String {
    assert!((OLDEST_VERSION..=FORMAT_VERSION).contains(&version), "no writer for version {version}");
    let mut out = String::new();
    let mut n_steps = 0;
    for (header, steps) in segments {
        out.push_str(&header.to_line_of(version));
        out.push('\n');
        for s in steps {
            out.push_str(&s.to_line());
            out.push('\n');
        }
        n_steps += steps.len();
    }
    if version == 1 {
        return out;
    }
    let footer = Footer::of(out.as_bytes(), segments.len(), n_steps);
    out.push_str(&footer.to_line());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_core::RequestId;

    fn header() -> Header {
        Header { case: "c".into(), description: String::new(), rules: Vec::new(), config: Config::default() }
    }

    fn step() -> Step {
        Step {
            now: TimeMs(5),
            command: Command::Decide {
                request_id: RequestId(1),
                pubkey: crate::users::user_pubkey(1),
                estimated_sats: Sats::new(3).unwrap(),
            },
            expect: Expect::Refusal(Refusal::UnknownRequest),
            totals: Balances::default(),
            identity: None,
        }
    }

    /// A real vector file: many segments, every command.
    fn vector_file() -> Vec<u8> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/conformance/commands.jsonl");
        std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn kind_at(bytes: &[u8]) -> (usize, ErrorKind) {
        let e = read_trace(bytes).unwrap_err();
        (e.line, e.kind)
    }

    #[test]
    fn a_step_round_trips() {
        let text = write_string(&[(header(), vec![step()])]);
        let trace = read_trace(text.as_bytes()).unwrap();
        assert_eq!((trace.version, trace.segments.len()), (2, 1));
        assert_eq!(trace.segments[0].steps, vec![(2, step())]);
        assert_eq!(trace.footer.map(|f| (f.segments, f.steps)), Some((1, 1)));
    }

    #[test]
    fn garbage_is_an_error_with_a_line_number() {
        let text = format!("{}\n{{\"now\": 1,\n", header().to_line());
        let e = read_str(&text).unwrap_err();
        assert_eq!((e.line, e.kind), (2, ErrorKind::NotJson));
        let e = read_bytes(b"\xff\xfe").unwrap_err();
        assert_eq!((e.line, e.kind), (1, ErrorKind::NotJson));
        assert_eq!(read_str("").unwrap_err().kind, ErrorKind::MissingHeader);
    }

    #[test]
    fn a_vector_cut_at_any_line_boundary_is_refused() {
        let bytes = vector_file();
        let whole = read_trace(&bytes).unwrap();
        assert_eq!(whole.version, FORMAT_VERSION);
        let ends: Vec<usize> = bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i + 1).collect();
        assert!(ends.len() > 100, "a short vector file");
        for (n_lines, &end) in ends[..ends.len() - 1].iter().enumerate().map(|(i, e)| (i + 1, e)) {
            // With and without the cut line's `\n`: the footer is missing after the last line.
            assert_eq!(kind_at(&bytes[..end]), (n_lines + 1, ErrorKind::MissingFooter), "cut after line {n_lines}");
            assert_eq!(
                kind_at(&bytes[..end - 1]),
                (n_lines + 1, ErrorKind::MissingFooter),
                "cut in line {n_lines}'s end"
            );
        }
        // The footer without its own `\n` is still whole.
        assert_eq!(read_trace(&bytes[..bytes.len() - 1]).unwrap(), whole);
    }

    #[test]
    fn a_footer_that_does_not_match_is_refused() {
        let text = write_string(&[(header(), vec![step(), step()])]);
        let footer_line = text.lines().count();
        let (body, footer) = text.trim_end().rsplit_once('\n').unwrap();
        let f: Value = serde_json::from_str(footer).unwrap();
        let sha = f["footer"]["sha256"].as_str().unwrap().to_owned();
        let with = |footer: &str| format!("{body}\n{footer}\n");
        for bad in [
            footer.replace("\"steps\":2", "\"steps\":3"),
            footer.replace("\"segments\":1", "\"segments\":2"),
            footer.replace(&sha, &"0".repeat(64)),
            footer.replace(&sha, &sha.to_uppercase()),
            footer.replace("}}", "},\"more\":1}"),
            footer.replace(",\"sha256\"", ",\"n\":1,\"sha256\""),
        ] {
            assert_eq!(kind_at(with(&bad).as_bytes()), (footer_line, ErrorKind::BadFooter), "{bad}");
        }
        // A step changed under the footer: the hash no longer matches.
        let tampered = text.replacen("\"now\":5", "\"now\":6", 1);
        assert_eq!(kind_at(tampered.as_bytes()), (footer_line, ErrorKind::BadFooter));
        // Anything after the footer, even a blank line.
        assert_eq!(kind_at(format!("{text}\n").as_bytes()), (footer_line + 1, ErrorKind::BadFooter));
        assert_eq!(kind_at(format!("{text}{footer}\n").as_bytes()), (footer_line + 1, ErrorKind::BadFooter));
    }

    #[test]
    fn version_1_is_read_without_a_footer() {
        let segments = read_trace(&vector_file()).unwrap().segments;
        let parts: Vec<(Header, Vec<Step>)> = segments
            .iter()
            .map(|s| {
                (Header { rules: Vec::new(), ..s.header.clone() }, s.steps.iter().map(|(_, st)| st.clone()).collect())
            })
            .collect();
        let v1 = write_version(1, &parts);
        assert!(v1.starts_with("{\"format\":\"ledger-conformance\",\"version\":1,"));
        let trace = read_trace(v1.as_bytes()).unwrap();
        assert_eq!((trace.version, trace.footer.clone()), (1, None));
        assert_eq!(trace.segments.len(), segments.len());
        // A version 1 trace cut at a line boundary cannot be told from a whole one.
        let cut = &v1[..v1.len() - v1.lines().last().unwrap().len() - 1];
        assert!(read_trace(cut.as_bytes()).is_ok());
        // Nor may it carry what version 2 brought, or mix with version 2.
        let rules = v1.replacen("\"description\"", "\"rules\":[\"R-DECIDE-3\"],\"description\"", 1);
        assert_eq!(kind_at(rules.as_bytes()), (1, ErrorKind::BadHeader));
        let footer = Footer::of(v1.as_bytes(), parts.len(), trace.segments.iter().map(|s| s.steps.len()).sum());
        let n = v1.lines().count();
        assert_eq!(kind_at(format!("{v1}{}\n", footer.to_line()).as_bytes()), (n + 1, ErrorKind::BadFooter));
        let mixed = format!(
            "{}\n{}",
            header().to_line_of(1),
            write_string(&[(Header { case: "d".into(), ..header() }, vec![])])
        );
        assert_eq!(kind_at(mixed.as_bytes()), (2, ErrorKind::BadHeader));
    }

    #[test]
    fn a_case_name_is_used_once() {
        let text = write_string(&[(header(), vec![step()]), (header(), vec![])]);
        let e = read_str(&text).unwrap_err();
        assert_eq!((e.line, e.kind), (3, ErrorKind::BadHeader));
        assert!(e.message.contains("first at line 1"), "{e}");
    }

    #[test]
    fn a_key_twice_is_refused_at_any_depth() {
        let line = step().to_line();
        for (from, to, path) in [
            ("\"now\":5", "\"now\":5,\"now\":5", "`now`"),
            ("\"cmd\":\"decide\"", "\"cmd\":\"decide\",\"cmd\":\"decide\"", "`command.cmd`"),
            (
                "\"refusal\":\"unknown_request\"",
                "\"refusal\":\"unknown_request\",\"refusal\":\"overflow\"",
                "`expect.refusal`",
            ),
        ] {
            let text = format!("{}\n{}\n", header().to_line(), line.replacen(from, to, 1));
            let e = read_str(&text).unwrap_err();
            assert_eq!((e.line, e.kind), (2, ErrorKind::DuplicateKey), "{e}");
            assert!(e.message.starts_with(&format!("duplicate key {path} (column ")), "{e}");
        }
        let e = parse_line(2, "[{\"a\":1},{\"b\":{\"c\":[1,{\"d\":1,\"d\":2}]}}]").unwrap_err();
        assert_eq!(e.kind, ErrorKind::DuplicateKey);
        assert!(e.message.starts_with("duplicate key `[1].b.c[1].d`"), "{e}");
        // A syntax error anywhere in the line comes first.
        let e = parse_line(2, "{\"a\":1,\"a\":2,}").unwrap_err();
        assert_eq!(e.kind, ErrorKind::NotJson, "{e}");
    }

    #[test]
    fn numbers_no_float_holds_are_out_of_range() {
        let line = step().to_line();
        for n in ["1E400", "1e400", "-1e400", "1.5e999", &format!("1{}", "0".repeat(400))] {
            let text = format!("{}\n{}\n", header().to_line(), line.replacen("\"now\":5", &format!("\"now\":{n}"), 1));
            let e = read_str(&text).unwrap_err();
            assert_eq!((e.line, e.kind), (2, ErrorKind::NumberOutOfRange), "{n}: {e}");
            assert!(e.message.starts_with(&format!("{n} is not an integer")), "{e}");
        }
        // Text that looks like a number inside a string is no number; a malformed number is
        // a syntax error.
        assert_eq!(
            blank_bad_numbers(r#"{"a":"1e400\"-1","b":-2}"#),
            (r#"{"a":"1e400\"-1","b":0 }"#.into(), Some("-2".into()))
        );
        assert_eq!(parse_line(2, "{\"now\":01}").unwrap_err().kind, ErrorKind::NotJson);
        assert_eq!(parse_line(2, "{\"now\":1e400,}").unwrap_err().kind, ErrorKind::NotJson);
        assert_eq!(parse_line(1, "{\"now\":1e400}").unwrap_err().kind, ErrorKind::MissingHeader);
        for json in ["0", "-0", "1.5", "1e5", "-1.25E-7", "10"] {
            assert!(is_json_number(json), "{json}");
        }
        for not in ["", "-", "01", "1.", ".5", "1e", "1e+", "--1", "1-2", "+1"] {
            assert!(!is_json_number(not), "{not}");
        }
    }

    #[test]
    fn a_bom_or_a_carriage_return_is_named() {
        let text = write_string(&[(header(), vec![step()])]);
        let e = read_str(&format!("\u{feff}{text}")).unwrap_err();
        assert_eq!((e.line, e.kind), (1, ErrorKind::NotJson));
        assert!(e.message.contains("byte order mark"), "{e}");
        let e = read_str(&text.replacen('\n', "\r\n", 2)).unwrap_err();
        assert_eq!((e.line, e.kind), (1, ErrorKind::NotJson));
        assert!(e.message.contains("\\r\\n"), "{e}");
    }
}
