//! A request history: one CSV row per request a service decided, the input of
//! `ledger-sim plan --fit` ([`crate::fit`]) and the output of `plan --history-out`.
//!
//! It is what a service running the ledger can export from its own logs, and it is not a
//! trace of ledger commands: there are no reservations, payment ids or pool balances in it,
//! only what a user asked for and what became of it.
//!
//! # Format
//!
//! UTF-8 text, one row per line (`\n` or `\r\n`), fields separated by commas. A field
//! never holds a comma, a quote, a line break or white space, so it needs no quoting; a
//! field may still be quoted as RFC 4180 quotes it (`"u17"`, `""` for an empty one), as an
//! exporter that quotes every field writes it, and is read as what is inside the quotes. The
//! first line is the header: these eight names (each quoted or not), in this order or any
//! other, each column found by its name:
//!
//! ```text
//! time_ms,user,tier,kind,estimate_sats,actual_sats,outcome,paid
//! ```
//!
//! Empty lines at the very end of the file end it (some exporters and editors leave them);
//! one between rows is an error.
//!
//! | column | meaning |
//! |---|---|
//! | `time_ms` | when the request was decided, milliseconds since the Unix epoch (UTC), at least `1231006505000` ([`MIN_TIME_MS`]: Bitcoin's genesis block, 2009-01-03T18:15:05Z; an earlier time is most often seconds read as milliseconds) and at most `4417804799999` ([`MAX_TIME_MS`]: the last millisecond of a 3650-day scenario starting at the latest a scenario may, 2100-01-01); rows are in time order (equal times allowed) |
//! | `user` | an opaque id of the user, 1 to 64 bytes without white space, control characters, quotes or commas (a hash of the public key will do) |
//! | `tier` | the user's tier when the request was decided: `new`, `established`, `trusted` or `elite` |
//! | `kind` | `job` (asynchronous: invoice, then work) or `session` (synchronous: work, then invoice) |
//! | `estimate_sats` | the estimate the decision was made on, `1..=1000000000` |
//! | `actual_sats` | the actual cost recorded when the work ran and succeeded, `0..=10000000000` ([`MAX_ACTUAL_SATS`]: the largest estimate at the largest `cost.actual_pct`, 1000 %); empty when no work ran (a job's invoice not paid) or it failed |
//! | `outcome` | the decision as served: `free`, `partial` (a reduced invoice was offered) or `gated` (the full invoice) |
//! | `paid` | `true` or `false`: whether the user paid the partial or full invoice; empty for `free` |
//!
//! A row that contradicts itself is refused: a `free` row with `paid`, a `partial` or
//! `gated` row without it, an `actual_sats` on a job whose invoice was not paid (its work runs
//! only after payment). A session runs its work first and is invoiced after, so an unpaid
//! session may have an actual cost: it is read. So is a row
//! that repeats an earlier row in every field ([`HistoryError::RepeatedRows`]: what an export
//! written twice into one file looks like), unless the caller allows it ([`read_with`]).
//!
//! ```text
//! time_ms,user,tier,kind,estimate_sats,actual_sats,outcome,paid
//! 1704067212345,u17,established,job,25,21,free,
//! 1704067230001,u3,new,session,40,,gated,false
//! 1704067295120,u88,trusted,job,310,290,partial,true
//! ```
//!
//! The reader ([`read`]) is strict: the first bad line is an error naming the file, the
//! line, the column and the value ([`HistoryError`]; a value longer than
//! [`MAX_QUOTED_CHARS`] characters is quoted by its beginning and its length); it never
//! panics and reads nothing partially.
//!
//! Its bounds are the planner's: everything `plan --history-out` writes for a valid scenario
//! reads back, at the scenario's extremes too (a scenario starts no earlier than
//! [`crate::scenario::MIN_START_MS`], after [`MIN_TIME_MS`]). Two rows alike in every field
//! are possible in a run's history (one user's two requests drawn in the same millisecond
//! with the same fields) but have not come up in any committed scenario's; they read with
//! [`read_with`].

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use ledger_core::{Tier, DAY_MS};

use crate::scenario::{MAX_ACTUAL_PCT, MAX_DAYS, MAX_ESTIMATE_SATS, MAX_START_MS};

/// The header line, exactly.
pub const HEADER: &str = "time_ms,user,tier,kind,estimate_sats,actual_sats,outcome,paid";

/// The earliest `time_ms`: 2009-01-03T18:15:05Z, the time of Bitcoin's genesis block. No sat
/// was paid before it, so an earlier time is a mistake, most often seconds since the epoch
/// read as milliseconds (1728000000 s is 2024-10-04; as ms, 1970-01-21).
pub const MIN_TIME_MS: u64 = 1_231_006_505_000;

/// The largest `time_ms`: the last millisecond of the longest scenario starting at the
/// latest, so that every history the planner writes reads back.
pub const MAX_TIME_MS: u64 = MAX_START_MS + MAX_DAYS as u64 * DAY_MS - 1;

/// The largest actual cost in sats: the largest estimate at the largest `cost.actual_pct`.
pub const MAX_ACTUAL_SATS: u64 = MAX_ESTIMATE_SATS * MAX_ACTUAL_PCT / 100;

/// The most characters of a value an error quotes: a user id fits whole, a 2 MB field does
/// not fill the terminal.
pub const MAX_QUOTED_CHARS: usize = 64;

/// The longest user id.
pub const MAX_USER_LEN: usize = 64;

/// How a request was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Served {
    /// Free: the pool paid.
    Free,
    /// A partial offer: the user was invoiced the rest.
    Partial,
    /// Gated: the user was invoiced in full.
    Gated,
}

impl Served {
    /// As written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Served::Free => "free",
            Served::Partial => "partial",
            Served::Gated => "gated",
        }
    }
}

/// One request.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HistoryRow {
    /// When it was decided, ms since the Unix epoch.
    pub time_ms: u64,
    /// The user's opaque id.
    pub user: String,
    /// The user's tier then.
    pub tier: Tier,
    /// A session (work first) rather than a job.
    pub session: bool,
    /// The estimate.
    pub estimate_sats: u64,
    /// The actual cost, when the work ran and succeeded.
    pub actual_sats: Option<u64>,
    /// How it was served.
    pub outcome: Served,
    /// Whether the invoice of a partial or gated request was paid; `None` for a free one.
    pub paid: Option<bool>,
}

/// A history that cannot be read: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// No header.
    #[error("{origin}: empty: a history starts with the header line {HEADER}")]
    Empty {
        /// The file.
        origin: String,
    },
    /// A header, but no rows.
    #[error("{origin}: no requests after the header")]
    NoRows {
        /// The file.
        origin: String,
    },
    /// A line that is not a row: not UTF-8, a wrong number of fields, a wrong header.
    #[error("{origin}:{line}: {reason}")]
    Line {
        /// The file.
        origin: String,
        /// The 1-based line.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Rows that repeat an earlier row in every field.
    #[error(
        "{origin}: {repeats}: an export written twice into one file, or two exports that overlap, count \
         each of those requests twice; remove the repeated rows (awk 'NR == 1 || !seen[$0]++' {origin} > \
         once.csv), or, if they are distinct requests alike to the millisecond, fit them as they are with \
         --allow-duplicate-rows"
    )]
    RepeatedRows {
        /// The file.
        origin: String,
        /// How many, and the first.
        repeats: Repeats,
    },
    /// A field with a value it cannot take.
    #[error("{origin}:{line}: {column} = {value:?}{}: {reason}", cut_note(value, *value_bytes))]
    Field {
        /// The file.
        origin: String,
        /// The 1-based line.
        line: usize,
        /// The column's name.
        column: &'static str,
        /// The value as written, its first [`MAX_QUOTED_CHARS`] characters.
        value: String,
        /// The length of the whole value in bytes.
        value_bytes: usize,
        /// Why it was refused.
        reason: String,
    },
}

impl HistoryError {
    fn field(origin: &str, line: usize, column: &'static str, value: &str, reason: String) -> HistoryError {
        HistoryError::Field {
            origin: origin.to_owned(),
            line,
            column,
            value: first_chars(value).to_owned(),
            value_bytes: value.len(),
            reason,
        }
    }
}

/// The first [`MAX_QUOTED_CHARS`] characters of `value`.
fn first_chars(value: &str) -> &str {
    value.char_indices().nth(MAX_QUOTED_CHARS).map_or(value, |(cut, _)| &value[..cut])
}

/// What follows a quoted value that was cut: `... (N bytes)`.
fn cut_note(shown: &str, value_bytes: usize) -> String {
    if shown.len() < value_bytes {
        format!("... ({value_bytes} bytes)")
    } else {
        String::new()
    }
}

/// `value` as an error quotes it: whole, or cut after [`MAX_QUOTED_CHARS`] characters.
fn quoted(value: &str) -> String {
    let shown = first_chars(value);
    format!("{shown:?}{}", cut_note(shown, value.len()))
}

/// The rows as CSV text with its header.
pub fn write(rows: &[HistoryRow]) -> String {
    let mut out = String::with_capacity(rows.len() * 48 + HEADER.len() + 1);
    out.push_str(HEADER);
    out.push('\n');
    for r in rows {
        write_row(&mut out, r);
    }
    out
}

/// Appends `r` to `out` as a line of CSV (after the [`HEADER`] line, as [`write()`] writes it).
pub fn write_row(out: &mut String, r: &HistoryRow) {
    let actual = r.actual_sats.map(|a| a.to_string()).unwrap_or_default();
    let paid = match r.paid {
        None => "",
        Some(true) => "true",
        Some(false) => "false",
    };
    let kind = if r.session { "session" } else { "job" };
    writeln!(
        out,
        "{},{},{},{kind},{},{actual},{},{paid}",
        r.time_ms,
        r.user,
        r.tier,
        r.estimate_sats,
        r.outcome.as_str()
    )
    .expect("writing to a String cannot fail");
}

/// Reads a history from the bytes of a file; `origin` names it in errors. Rows that repeat an
/// earlier row in every field are refused ([`HistoryError::RepeatedRows`]); [`read_with`]
/// can take them.
pub fn read(bytes: &[u8], origin: &str) -> Result<Vec<HistoryRow>, HistoryError> {
    read_with(bytes, origin, false).map(|h| h.rows)
}

/// A history as read: its rows, and the rows that repeat an earlier one, if they were allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct History {
    /// The rows, in time order.
    pub rows: Vec<HistoryRow>,
    /// Rows that repeat an earlier row in every field (read as they are).
    pub repeats: Option<Repeats>,
}

/// Rows that repeat an earlier row in every field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Repeats {
    /// How many rows repeat an earlier one (a history written twice over has as many as rows).
    pub count: u64,
    /// The line of the first row that repeats an earlier one.
    pub line: usize,
    /// The line of the earlier row it repeats.
    pub of_line: usize,
}

impl std::fmt::Display for Repeats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows = if self.count == 1 { "row repeats" } else { "rows repeat" };
        write!(
            f,
            "{} {rows} an earlier row in every field (the first: line {} repeats line {})",
            self.count, self.line, self.of_line
        )
    }
}

/// Reads a history as [`read`] does; with `allow_repeats`, rows that repeat an earlier row in
/// every field are read as they are and counted in [`History::repeats`] instead of refused.
///
/// Rows are in time order, so a row can only repeat one with the same `time_ms`, and those are
/// the rows just above it: the check keeps a hash of each row of the current millisecond, not a
/// copy, and its memory is that of the largest number of rows sharing a millisecond.
pub fn read_with(bytes: &[u8], origin: &str, allow_repeats: bool) -> Result<History, HistoryError> {
    let mut lines: Vec<&[u8]> = bytes.split(|b| *b == b'\n').map(|l| l.strip_suffix(b"\r").unwrap_or(l)).collect();
    // Empty lines at the very end (a final newline, or a few more, as some exporters and
    // editors leave them) end the file; one between rows is an error below.
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    if lines.is_empty() {
        return Err(HistoryError::Empty { origin: origin.to_owned() });
    }
    let text = |line: usize, raw: &[u8]| -> Result<String, HistoryError> {
        String::from_utf8(raw.to_vec()).map_err(|e| HistoryError::Line {
            origin: origin.to_owned(),
            line,
            reason: format!("not UTF-8 text (byte {} of the line)", e.utf8_error().valid_up_to() + 1),
        })
    };
    let header = text(1, lines[0])?;
    let columns = Columns::of(header.trim_start_matches('\u{feff}'), origin)?;
    let mut rows: Vec<HistoryRow> = Vec::new();
    let mut same_ms = SameMillisecond::default();
    let mut repeats: Option<Repeats> = None;
    for (i, raw) in lines.iter().enumerate().skip(1) {
        let line = i + 1;
        let row = parse_row(&text(line, raw)?, &columns, origin, line)?;
        if let Some(prev) = rows.last().map(|r| r.time_ms) {
            if row.time_ms < prev {
                let k = columns.at[0] + 1;
                return Err(HistoryError::field(
                    origin,
                    line,
                    "time_ms",
                    &row.time_ms.to_string(),
                    format!(
                        "before the line above's {prev}: rows must be in time order; sort them, the header \
                         first: (head -n 1 {origin}; tail -n +2 {origin} | sort -s -t, -k{k},{k}n) > sorted.csv"
                    ),
                ));
            }
        }
        if let Some(earlier) = same_ms.earlier(&rows, &row) {
            let r = repeats.get_or_insert(Repeats { count: 0, line, of_line: earlier + 2 });
            r.count += 1;
        }
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(HistoryError::NoRows { origin: origin.to_owned() });
    }
    match repeats {
        Some(repeats) if !allow_repeats => Err(HistoryError::RepeatedRows { origin: origin.to_owned(), repeats }),
        _ => Ok(History { rows, repeats }),
    }
}

/// The rows of the current millisecond, by a hash of each: the rows above that a new row
/// could repeat.
#[derive(Default)]
struct SameMillisecond {
    time_ms: Option<u64>,
    /// Hash of a row, and the indexes of the rows with that hash.
    seen: BTreeMap<u64, Vec<usize>>,
}

impl SameMillisecond {
    /// The index in `rows` of an earlier row that `row` repeats, if any; `row` is then
    /// remembered as the next row of `rows`.
    fn earlier(&mut self, rows: &[HistoryRow], row: &HistoryRow) -> Option<usize> {
        if self.time_ms != Some(row.time_ms) {
            self.time_ms = Some(row.time_ms);
            self.seen.clear();
        }
        // std's `DefaultHasher::new()` has fixed keys: the same hash on every run.
        let mut hasher = std::hash::DefaultHasher::new();
        row.hash(&mut hasher);
        let with_hash = self.seen.entry(hasher.finish()).or_default();
        let earlier = with_hash.iter().copied().find(|&i| rows[i] == *row);
        with_hash.push(rows.len());
        earlier
    }
}

/// Where each column is on a line: the header's names matched to [`HEADER`]'s.
struct Columns {
    /// The field holding each of [`HEADER`]'s columns, in [`HEADER`]'s order.
    at: [usize; 8],
    /// The header as the file names its columns, for errors.
    names: String,
}

impl Columns {
    /// The columns the header names, each of [`HEADER`]'s once, in any order.
    fn of(header: &str, origin: &str) -> Result<Columns, HistoryError> {
        let fail = |reason: String| HistoryError::Line { origin: origin.to_owned(), line: 1, reason };
        let all = "the columns of a history are time_ms, user, tier, kind, estimate_sats, actual_sats, outcome \
                   and paid, in any order";
        if header.contains('\r') {
            return Err(fail(format!(
                "header {}: a carriage return (\\r) inside the line: the file's lines end in a bare CR, as \
                 old Mac software writes them, so it reads as one line; end them in \\n (tr '\\r' '\\n' < \
                 {origin} > fixed.csv)",
                quoted(header)
            )));
        }
        let names = split_fields(header).map_err(|reason| fail(format!("header: {reason}")))?;
        let mut at = [usize::MAX; 8];
        for (field, name) in names.iter().enumerate() {
            let Some(column) = HEADER.split(',').position(|c| c == name) else {
                return Err(fail(format!("header: unknown column {} (field {}): {all}", quoted(name), field + 1)));
            };
            if at[column] != usize::MAX {
                return Err(fail(format!(
                    "header: column {name:?} twice (fields {} and {})",
                    at[column] + 1,
                    field + 1
                )));
            }
            at[column] = field;
        }
        if let Some(missing) = at.iter().position(|f| *f == usize::MAX) {
            let name = HEADER.split(',').nth(missing).expect("8 columns");
            return Err(fail(format!("header: no column {name:?}: {all}")));
        }
        Ok(Columns { at, names: names.join(",") })
    }
}

/// The fields of a line, split at commas, each unquoted if it was quoted as RFC 4180 quotes
/// a field: between double quotes, a double quote inside doubled. A line holds one row (no
/// field of this format spans lines). An error says what is wrong with the quoting.
fn split_fields(line_text: &str) -> Result<Vec<Cow<'_, str>>, String> {
    if !line_text.contains('"') {
        return Ok(line_text.split(',').map(Cow::Borrowed).collect());
    }
    let mut fields = Vec::new();
    let mut rest = line_text;
    loop {
        let number = fields.len() + 1;
        if let Some(opened) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut inside = opened;
            let after = loop {
                let Some(at) = inside.find('"') else {
                    return Err(format!(
                        "field {number}: a quote opened and not closed on the line (no field of a history spans lines)"
                    ));
                };
                value.push_str(&inside[..at]);
                match inside[at + 1..].strip_prefix('"') {
                    Some(more) => {
                        value.push('"');
                        inside = more;
                    }
                    None => break &inside[at + 1..],
                }
            };
            fields.push(Cow::Owned(value));
            match after.strip_prefix(',') {
                Some(next) => rest = next,
                None if after.is_empty() => return Ok(fields),
                None => {
                    let trailing = quoted(after.split(',').next().unwrap_or(after));
                    return Err(format!(
                        "field {number}: {trailing} after its closing quote: \
                         a quoted field ends at a comma or the end of the line"
                    ));
                }
            }
        } else {
            let (field, next) = match rest.find(',') {
                Some(at) => (&rest[..at], Some(&rest[at + 1..])),
                None => (rest, None),
            };
            if field.contains('"') {
                return Err(format!(
                    "field {number}: {}: a quote inside a field that does not start with one",
                    quoted(field)
                ));
            }
            fields.push(Cow::Borrowed(field));
            match next {
                Some(next) => rest = next,
                None => return Ok(fields),
            }
        }
    }
}

fn parse_row(line_text: &str, columns: &Columns, origin: &str, line: usize) -> Result<HistoryRow, HistoryError> {
    let in_file =
        split_fields(line_text).map_err(|reason| HistoryError::Line { origin: origin.to_owned(), line, reason })?;
    if in_file.len() != 8 {
        let reason = if line_text.is_empty() {
            "an empty line: every line after the header is a request (empty lines may only end the file)".to_owned()
        } else {
            format!("{} fields, expected 8 ({})", in_file.len(), columns.names)
        };
        return Err(HistoryError::Line { origin: origin.to_owned(), line, reason });
    }
    let fields: [&str; 8] = columns.at.map(|i| &*in_file[i]);
    let fail = |column: &'static str, value: &str, reason: &str| {
        HistoryError::field(origin, line, column, value, reason.to_owned())
    };
    let number = |column: &'static str, value: &str, lo: u64, hi: u64| -> Result<u64, HistoryError> {
        let range = format!("must be a whole number in {lo}..={hi}");
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(fail(column, value, &range));
        }
        match value.parse::<u64>() {
            Ok(v) if (lo..=hi).contains(&v) => Ok(v),
            _ => Err(fail(column, value, &range)),
        }
    };
    let time_ms =
        parse_time(fields[0]).map_err(|reason| HistoryError::field(origin, line, "time_ms", fields[0], reason))?;
    let user = fields[1];
    if user.is_empty()
        || user.len() > MAX_USER_LEN
        || user.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == ',')
    {
        return Err(fail(
            "user",
            user,
            &format!("must be 1 to {MAX_USER_LEN} bytes without white space, control characters, quotes or commas"),
        ));
    }
    let tier =
        Tier::from_str(fields[2]).map_err(|_| fail("tier", fields[2], "must be new, established, trusted or elite"))?;
    let session = match fields[3] {
        "job" => false,
        "session" => true,
        other => return Err(fail("kind", other, "must be job or session")),
    };
    let estimate_sats = number("estimate_sats", fields[4], 1, MAX_ESTIMATE_SATS)?;
    let actual_sats = match fields[5] {
        "" => None,
        v => Some(number("actual_sats", v, 0, MAX_ACTUAL_SATS)?),
    };
    let outcome = match fields[6] {
        "free" => Served::Free,
        "partial" => Served::Partial,
        "gated" => Served::Gated,
        other => return Err(fail("outcome", other, "must be free, partial or gated")),
    };
    let paid = match (fields[7], outcome) {
        ("", Served::Free) => None,
        (v, Served::Free) => return Err(fail("paid", v, "a free request has no invoice: leave it empty")),
        ("true", _) => Some(true),
        ("false", _) => Some(false),
        (v, _) => return Err(fail("paid", v, "must be true or false for a partial or gated request")),
    };
    // A job's work runs only once its invoice is paid; a session's runs first and is invoiced
    // after, so an unpaid session may have cost what it cost.
    if paid == Some(false) && !session {
        if let Some(a) = actual_sats {
            return Err(fail(
                "actual_sats",
                &a.to_string(),
                "the invoice of a job was not paid, so its work never ran: leave it empty (a session, whose \
                 work runs before its invoice, may have one)",
            ));
        }
    }
    Ok(HistoryRow { time_ms, user: user.to_owned(), tier, session, estimate_sats, actual_sats, outcome, paid })
}

/// A `time_ms` field, or why not, with what the value would be in another unit or form when
/// that is the likely mistake: seconds, microseconds or nanoseconds since the epoch, an ISO 8601
/// date and time, a number in scientific notation.
fn parse_time(value: &str) -> Result<u64, String> {
    let range = format!("must be a whole number in {MIN_TIME_MS}..={MAX_TIME_MS}");
    let whole = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    if !whole(value) {
        if let Some(hint) = iso_hint(value) {
            return Err(format!("{range}: {hint}"));
        }
        if let Some(hint) = scientific_hint(value) {
            return Err(format!("{range}: {hint}"));
        }
        // 1740960013.035: seconds with their milliseconds after a point.
        return Err(match value.split_once('.') {
            Some((s, ms)) if whole(s) && whole(ms) => format!(
                "{range}: time_ms is whole milliseconds since the epoch; seconds with a fraction? write \
                 them times 1000"
            ),
            _ => range,
        });
    }
    let Ok(v) = value.parse::<u64>() else {
        return Err(range);
    };
    if v < MIN_TIME_MS {
        return Err(format!(
            "reads as {}, before Bitcoin's genesis block ({}), when no sat had been paid: time_ms is \
             milliseconds since the epoch (UTC); seconds? multiply by 1000",
            utc(v),
            utc(MIN_TIME_MS)
        ));
    }
    if v > MAX_TIME_MS {
        let within = |ms: u64| (MIN_TIME_MS..=MAX_TIME_MS).contains(&ms);
        let hint = if within(v / 1000) {
            "; microseconds? divide by 1000"
        } else if within(v / 1_000_000) {
            "; nanoseconds (19 digits)? divide by 1000000"
        } else {
            ""
        };
        return Err(format!("{range}{hint}"));
    }
    Ok(v)
}

/// What to say of a `time_ms` written as an ISO 8601 date and time (`2025-03-10T12:00:00Z`,
/// `2025-03-10 12:00:00.250+01:00`, `2025-03-10`): how to convert it, and what it is in
/// milliseconds when it names its zone. `None` for a value that does not start as a date.
fn iso_hint(value: &str) -> Option<String> {
    let b = value.as_bytes();
    let digits = |r: std::ops::Range<usize>| b.get(r.clone()).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(digits(0..4) && b.get(4) == Some(&b'-') && digits(5..7) && b.get(7) == Some(&b'-') && digits(8..10)) {
        return None;
    }
    // The value itself in the command, unless it is too long to echo or would end its quotes.
    let shown = if value.len() <= 40 && !value.contains(['\'', '\\']) { value } else { "TIME" };
    let command = format!("date -d '{shown}' +%s%3N");
    let zoned = value[10..].contains(['Z', '+', '-']);
    let reads = match iso_ms(value) {
        Some(ms) if (MIN_TIME_MS..=MAX_TIME_MS).contains(&ms) => format!(" (this one is {ms})"),
        None if !zoned => " (a time without a zone, Z or +01:00, is read by date in the machine's own zone)".to_owned(),
        _ => String::new(),
    };
    Some(format!(
        "an ISO 8601 date and time, where time_ms is milliseconds since the epoch (UTC): convert it, \
         with GNU date: {command}{reads}"
    ))
}

/// The milliseconds since the epoch of `YYYY-MM-DD[(T| )HH:MM[:SS[.fff...]]](Z|(+|-)HH[:]MM)`:
/// `None` for anything else (a time without a zone among it), or a time before the epoch.
fn iso_ms(value: &str) -> Option<u64> {
    let num = |s: &str| -> Option<u64> {
        if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (year, month, day) = (num(value.get(0..4)?)?, num(value.get(5..7)?)?, num(value.get(8..10)?)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    let rest = &value[10..];
    let at = rest.find(['Z', '+', '-'])?;
    let (time, zone) = (&rest[..at], &rest[at..]);
    let offset_min: i64 = match zone {
        "Z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let hm = z[1..].replace(':', "");
            if hm.len() != 4 {
                return None;
            }
            let (h, m) = (num(&hm[..2])?, num(&hm[2..])?);
            sign * (h * 60 + m) as i64
        }
    };
    let mut ms_of_day = 0u64;
    if !time.is_empty() {
        let time = time.strip_prefix(['T', ' '])?;
        let (hms, fraction) = time.split_once('.').unwrap_or((time, ""));
        let parts: Vec<&str> = hms.split(':').collect();
        if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2) {
            return None;
        }
        let (h, m) = (num(parts[0])?, num(parts[1])?);
        let sec = if parts.len() == 3 { num(parts[2])? } else { 0 };
        if h > 23 || m > 59 || sec > 59 || (time.contains('.') && num(fraction).is_none()) {
            return None;
        }
        // Milliseconds, the digits past them cut as `date +%3N` cuts them.
        let milli = format!("{fraction:0<3}")[..3].parse::<u64>().ok()?;
        ms_of_day = ((h * 60 + m) * 60 + sec) * 1000 + milli;
    }
    // Howard Hinnant's days_from_civil (public domain), the inverse of `utc_date`.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (days * DAY_MS + ms_of_day).checked_add_signed(-offset_min * 60_000)
}

/// What to say of a `time_ms` written in scientific notation (`1.7e12`, as a spreadsheet
/// shows a large number): the number in full, and how much of it the notation rounded away.
/// `None` for a value that is not such a number.
fn scientific_hint(value: &str) -> Option<String> {
    let (mantissa, exponent) = value.split_once(['e', 'E'])?;
    let exponent: i32 = exponent.strip_prefix('+').unwrap_or(exponent).parse().ok()?;
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = format!("{int}{frac}");
    if int.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || exponent > 30 {
        return None;
    }
    let said = "scientific notation, as a spreadsheet shows a large number; write time_ms in full, whole \
                milliseconds (a number format without an exponent)";
    let significant = digits.trim_start_matches('0');
    if significant.len() > 30 {
        return Some(said.to_owned());
    }
    let Some(zeros) = u32::try_from(exponent - frac.len() as i32).ok() else {
        return Some(format!("{said}: this one is not even a whole number"));
    };
    if significant.is_empty() {
        return Some(format!("{said}: this one is 0"));
    }
    let full = format!("{significant}{}", "0".repeat(zeros as usize));
    let significant = significant.len();
    let rounded = if zeros > 0 {
        format!(
            ", but it keeps only {significant} significant digit(s): every time is rounded to {} ms, and the \
             export must be made again with the whole numbers",
            10u64.checked_pow(zeros).map_or_else(|| format!("1e{zeros}"), |u| u.to_string())
        )
    } else {
        String::new()
    };
    Some(format!("{said}: this one is {full}{rounded}"))
}

/// `ms` since the Unix epoch as a UTC date and time, `1970-01-21T00:00:00Z` (with `.123`
/// when the milliseconds are not 0).
pub fn utc(ms: u64) -> String {
    let ms_of_day = ms % DAY_MS;
    let (secs, milli) = (ms_of_day / 1000, ms_of_day % 1000);
    let time = format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
    let fraction = if milli == 0 { String::new() } else { format!(".{milli:03}") };
    format!("{}T{time}{fraction}Z", utc_date(ms))
}

/// The UTC date of `ms` since the Unix epoch, `2025-03-03`.
pub fn utc_date(ms: u64) -> String {
    // Howard Hinnant's days_from_civil inverted (public domain): the proleptic Gregorian
    // calendar by 400-year eras of 146097 days, counted from 0000-03-01.
    let z = ms / DAY_MS + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_written_are_read_back() {
        let rows = vec![
            HistoryRow {
                time_ms: 1_704_067_212_345,
                user: "u17".into(),
                tier: Tier::Established,
                session: false,
                estimate_sats: 25,
                actual_sats: Some(21),
                outcome: Served::Free,
                paid: None,
            },
            HistoryRow {
                time_ms: 1_704_067_230_001,
                user: "u3".into(),
                tier: Tier::New,
                session: true,
                estimate_sats: 40,
                actual_sats: None,
                outcome: Served::Gated,
                paid: Some(false),
            },
        ];
        let text = write(&rows);
        assert_eq!(read(text.as_bytes(), "h.csv").unwrap(), rows);
        assert_eq!(read(text.replace('\n', "\r\n").as_bytes(), "h.csv").unwrap(), rows);
        assert_eq!(read(text.trim_end().as_bytes(), "h.csv").unwrap(), rows);
    }

    /// Every field between quotes, as an exporter that quotes all fields writes it.
    fn quote_all(text: &str) -> String {
        let quote_line = |line: &str| line.split(',').map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(",");
        text.lines().map(|line| quote_line(line) + "\r\n").collect()
    }

    #[test]
    fn quoted_fields_read_as_what_is_inside_the_quotes() {
        let text = format!(
            "{HEADER}\n1704067212345,u17,established,job,25,21,free,\n1704067230001,u3,new,session,40,,gated,false\n"
        );
        let plain = read(text.as_bytes(), "h.csv").unwrap();
        assert_eq!(read(quote_all(&text).as_bytes(), "h.csv").unwrap(), plain);
        // Some fields quoted, some not, as a minimal quoting writes them.
        let mixed = format!("\u{feff}{HEADER}\n1704067212345,\"u17\",established,\"job\",25,21,free,\"\"\n1704067230001,u3,\"new\",session,40,,gated,\"false\"\n");
        assert_eq!(read(mixed.as_bytes(), "h.csv").unwrap(), plain);
    }

    #[test]
    fn bad_quoting_names_the_line_and_the_field() {
        let row = |fields: &str| format!("{HEADER}\n{fields}\n");
        let error = |fields: &str| read(row(fields).as_bytes(), "h.csv").unwrap_err().to_string();
        assert_eq!(
            error("1704067212345,\"u17,established,job,25,21,free,"),
            "h.csv:2: field 2: a quote opened and not closed on the line (no field of a history spans lines)"
        );
        assert_eq!(
            error("1704067212345,\"u17\"x,established,job,25,21,free,"),
            "h.csv:2: field 2: \"x\" after its closing quote: a quoted field ends at a comma or the end of the line"
        );
        assert_eq!(
            error("1704067212345,u\"17,established,job,25,21,free,"),
            "h.csv:2: field 2: \"u\\\"17\": a quote inside a field that does not start with one"
        );
        // Quoting lets a value hold what no field of the format may: it is refused as a value.
        assert_eq!(
            error("1704067212345,\"u,17\",established,job,25,21,free,"),
            "h.csv:2: user = \"u,17\": must be 1 to 64 bytes without white space, control characters, quotes or commas"
        );
        assert_eq!(
            error("1704067212345,\"u\"\"17\",established,job,25,21,free,"),
            "h.csv:2: user = \"u\\\"17\": must be 1 to 64 bytes without white space, control characters, quotes or commas"
        );
        assert_eq!(
            error("\"1704067212345\",u17,\"established\",job,\"25,21\",free,"),
            "h.csv:2: 7 fields, expected 8 (time_ms,user,tier,kind,estimate_sats,actual_sats,outcome,paid)"
        );
        // A quoted name holding a comma is one name, and no column's.
        assert_eq!(
            read(b"\"time_ms\",user,\"tier,kind\",estimate_sats,actual_sats,outcome,paid\n", "h.csv")
                .unwrap_err()
                .to_string(),
            "h.csv:1: header: unknown column \"tier,kind\" (field 3): the columns of a history are time_ms, user, \
             tier, kind, estimate_sats, actual_sats, outcome and paid, in any order"
        );
    }
}
