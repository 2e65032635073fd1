//! The harness's side of the protocol: a child process that speaks it, with every wait bounded.
//!
//! The child is started with `sh -c COMMAND`; its standard error is passed through. A thread
//! reads its standard output line by line into a channel, so that a wait for a response can
//! time out (and say on stderr what it waits for) instead of blocking on a pipe.
//!
//! Each child leads a process group of its own, so that a kill reaches whatever its shell
//! started, and so a signal sent to the run (a terminal's Ctrl-C, `kill`, `timeout`) does not
//! reach it. The run therefore stops its children itself: every live child's group is in a
//! registry, and on SIGINT, SIGTERM or SIGHUP a thread kills each group, says so on stderr and
//! ends the run by the same signal (exit status 128 + its number). A run that reports the
//! seeds it finished ([`finish_seed_on_first_signal`]) is stopped so on the second signal.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::protocol::{
    tags_are_names, Api, ErrorCode, Request, RequestBody, Response, ResponseBody, StateKind, PROTOCOL_VERSION,
};
use ledger_core::{Config, ConfigJson};

/// How long a response may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long the child may take to answer `hello` (an adapter may compile its code first).
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(60);

/// After this long without a response, say on stderr what is awaited.
const SAY_AFTER: Duration = Duration::from_secs(2);

/// How long a child may take to exit once its input is closed before its group is killed.
pub const EXIT_GRACE: Duration = Duration::from_secs(2);

/// What names a database to a process: `DATABASE_URL` and libpq's environment variables.
/// None of them reaches an implementation from the environment of the run unless the run
/// passes it on (`--exec-env NAME`, or `DATABASE_URL` of `--exec-db`'s fresh database): every
/// seed starts with a `reset`, which an implementation carries out on whatever database they
/// name, a user's own included.
pub const DATABASE_ENV: &[&str] = &[
    "DATABASE_URL",
    "PGAPPNAME",
    "PGCHANNELBINDING",
    "PGCLIENTENCODING",
    "PGCONNECT_TIMEOUT",
    "PGDATA",
    "PGDATABASE",
    "PGDATESTYLE",
    "PGGEQO",
    "PGGSSENCMODE",
    "PGGSSLIB",
    "PGHOST",
    "PGHOSTADDR",
    "PGKRBSRVNAME",
    "PGLOADBALANCEHOSTS",
    "PGLOCALEDIR",
    "PGOPTIONS",
    "PGPASSFILE",
    "PGPASSWORD",
    "PGPORT",
    "PGREQUIREAUTH",
    "PGREQUIREPEER",
    "PGREQUIRESSL",
    "PGSERVICE",
    "PGSERVICEFILE",
    "PGSSLCERT",
    "PGSSLCOMPRESSION",
    "PGSSLCRL",
    "PGSSLCRLDIR",
    "PGSSLKEY",
    "PGSSLMAXPROTOCOLVERSION",
    "PGSSLMINPROTOCOLVERSION",
    "PGSSLMODE",
    "PGSSLROOTCERT",
    "PGSSLSNI",
    "PGSYSCONFDIR",
    "PGTARGETSESSIONATTRS",
    "PGTZ",
    "PGUSER",
];

/// The names of [`DATABASE_ENV`] set in this process's environment that `env` does not give:
/// what [`Child::start`] withholds from a child started with `env`.
pub fn withheld_database_env(env: &[(String, String)]) -> Vec<&'static str> {
    DATABASE_ENV
        .iter()
        .copied()
        .filter(|name| std::env::var_os(name).is_some() && !env.iter().any(|(k, _)| k == name))
        .collect()
}

/// After this long waiting for a child to exit, say on stderr what the run waits for.
const SAY_EXIT_AFTER: Duration = Duration::from_millis(500);

/// The live children's process groups (each child leads its own: the group id is its process
/// id), with their commands: what a signal to the run kills ([`stop_children_on_signals`]).
/// A child is added when spawned, under the lock, and removed once reaped.
static LIVE: Mutex<BTreeMap<u32, String>> = Mutex::new(BTreeMap::new());

fn live() -> MutexGuard<'static, BTreeMap<u32, String>> {
    LIVE.lock().unwrap_or_else(|p| p.into_inner())
}

/// Says `line` on stderr as the run's, through [`crate::say!`].
fn say(line: std::fmt::Arguments<'_>) {
    crate::say!("ledger-sim: {line}");
}

/// Sends SIGKILL to process group `group`; false if `kill` could not be run or failed (the
/// group no longer exists, say). `kill` runs in a process group of its own: a signal sent to
/// the run's group (as `timeout` sends one) must not stop it halfway.
fn kill_group(group: u32) -> bool {
    Process::new("kill")
        .args(["-KILL", "--", &format!("-{group}")])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the run stops on its own at its first signal ([`finish_seed_on_first_signal`]).
static FINISH_SEED_FIRST: AtomicBool = AtomicBool::new(false);

/// Tells the signal thread that the run watches for SIGINT, SIGTERM and SIGHUP itself and, on
/// the first, finishes the seed in flight (its child still running), starts no other and
/// reports the seeds it ran. The first signal is then only said on stderr; the second stops
/// every live child and ends the run, as the first does otherwise ([`stop_on`]).
pub fn finish_seed_on_first_signal() {
    FINISH_SEED_FIRST.store(true, Ordering::Relaxed);
}

/// From the first child on, the run's SIGINT, SIGTERM and SIGHUP are taken by a thread of
/// its own, which stops every live child ([`stop_on`]), at the first signal or, if the run
/// finishes its seed first ([`finish_seed_on_first_signal`]), at the second. Before that they
/// end the run as usual.
fn stop_children_on_signals() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(signals) => signals,
            Err(e) => {
                say(format_args!(
                    "cannot take SIGINT, SIGTERM and SIGHUP ({e}): a signal to the run will not reach its --exec child"
                ));
                return;
            }
        };
        let spawned = std::thread::Builder::new().name("exec-signals".into()).spawn(move || {
            let mut first = true;
            for signal in signals.forever() {
                if first && FINISH_SEED_FIRST.load(Ordering::Relaxed) {
                    first = false;
                    let name = signal_hook::low_level::signal_name(signal).unwrap_or("a signal");
                    say(format_args!(
                        "{name}: the run stops after the seed in flight and reports the seeds it ran; \
                         a second signal stops it at once"
                    ));
                    continue;
                }
                stop_on(signal);
            }
        });
        if let Err(e) = spawned {
            say(format_args!("cannot watch for signals ({e}): a signal to the run will not reach its --exec child"));
        }
    });
}

/// Kills the process group of every live child, says which on stderr, and ends the run by
/// `signal` (as its default action would: the exit status is 128 + its number). The registry
/// stays locked to the end, so that no child starts or is reaped meanwhile.
fn stop_on(signal: i32) -> ! {
    let live = live();
    let name = signal_hook::low_level::signal_name(signal).unwrap_or("a signal");
    for (&group, command) in live.iter() {
        if kill_group(group) {
            say(format_args!("{name}: stopped `{command}` (SIGKILL to its process group {group})"));
        } else {
            say(format_args!(
                "{name}: `kill -KILL -- -{group}` failed for `{command}`: it may have exited, or still run"
            ));
        }
    }
    let _ = signal_hook::low_level::emulate_default_handler(signal);
    std::process::exit(128 + signal)
}

/// Why the child cannot go on. Every variant names the command.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// It could not be started.
    #[error("cannot start `{command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing to it failed (it exited).
    #[error("`{command}` stopped reading its input: {source}{status}")]
    Write {
        /// The command.
        command: String,
        /// Why.
        source: std::io::Error,
        /// Its exit status, if it exited.
        status: String,
    },
    /// It closed its output.
    #[error("`{command}` closed its output{status} before answering {waiting}")]
    Eof {
        /// The command.
        command: String,
        /// Its exit status, if it exited.
        status: String,
        /// What was awaited.
        waiting: String,
    },
    /// It wrote a line that is not a response (or not one to a request in flight): the
    /// implementation's failure, which a run reports as a finding (`bad_answer`).
    #[error("`{command}` wrote line {line_no} that is not a response of protocol {PROTOCOL_VERSION} ({why}){}", quoted(.line))]
    Garbled {
        /// The command.
        command: String,
        /// Line number of its output, from 1.
        line_no: u64,
        /// Why, with what an amount out of range says of I1 ([`crate::protocol::amount_out_of_range`]).
        why: String,
        /// The line, shown safely and shortened when long ([`line_shown`]); empty for a line
        /// that could not be kept (one too long to read whole, or not UTF-8).
        line: String,
        /// The id the line names at its top level, when one can be made out: the request it
        /// meant to answer.
        id: Option<u64>,
    },
    /// It did not answer in time.
    #[error("`{command}` did not answer {waiting} within {secs} s")]
    Timeout {
        /// The command.
        command: String,
        /// What was awaited.
        waiting: String,
        /// The bound.
        secs: u64,
    },
    /// Its `hello_ok` is not something the harness can drive.
    #[error("`{command}`: {why}")]
    Handshake {
        /// The command.
        command: String,
        /// Why.
        why: String,
    },
}

/// `: LINE` after an error about a line, or nothing for a line that could not be kept (one
/// too long to read whole).
fn quoted(line: &str) -> String {
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

/// The longest part of a line a message quotes: a line longer than this is shown by its
/// first characters and its length.
const LINE_SHOWN: usize = 300;

/// `line` as a message quotes it: every password hidden and every control character escaped
/// (hidden first, then cut: a URL cut before its `@` would no longer show as one), whole when
/// it is at most [`LINE_SHOWN`] characters, else its first ones, `...` and its length.
pub fn line_shown(line: &str) -> String {
    let shown = ledger_harness::text::shown(line.trim_end());
    let n = shown.chars().count();
    if n <= LINE_SHOWN {
        return shown;
    }
    let head: String = shown.chars().take(LINE_SHOWN - 60).collect();
    format!("{head}... ({n} characters)")
}

/// The longest line read from the other side of the protocol: 16 MiB.
pub const MAX_LINE: usize = 16 << 20;

/// A line that cannot be a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadLine {
    /// Longer than [`MAX_LINE`]; the reader stopped in the middle of it.
    #[error("a line longer than {} MiB", MAX_LINE >> 20)]
    TooLong,
    /// Not UTF-8 (the whole line was read).
    #[error("a line that is not UTF-8 ({0})")]
    NotUtf8(String),
}

/// The next line (without its `\n`), `None` at the end; a line that is not UTF-8 or is
/// longer than [`MAX_LINE`] is a [`BadLine`], so that a runaway peer cannot exhaust memory.
pub fn read_bounded_line(reader: &mut impl BufRead) -> std::io::Result<Option<Result<String, BadLine>>> {
    Ok(read_bounded_bytes(reader)?.map(|line| {
        line.and_then(|bytes| String::from_utf8(bytes).map_err(|e| BadLine::NotUtf8(e.utf8_error().to_string())))
    }))
}

/// The bytes of the next line (without its `\n`), `None` at the end; a line longer than
/// [`MAX_LINE`] is [`BadLine::TooLong`], the rest of it left unread.
pub fn read_bounded_bytes(reader: &mut impl BufRead) -> std::io::Result<Option<Result<Vec<u8>, BadLine>>> {
    Ok(read_bounded_prefix(reader)?.map(|(bytes, whole)| if whole { Ok(bytes) } else { Err(BadLine::TooLong) }))
}

/// The bytes of the next line (without its `\n`) and whether they are all of it, `None` at the
/// end: a line longer than [`MAX_LINE`] comes back as its first `MAX_LINE + 1` bytes, the rest
/// of it left unread.
pub fn read_bounded_prefix(reader: &mut impl BufRead) -> std::io::Result<Option<(Vec<u8>, bool)>> {
    let mut bytes = Vec::new();
    let n = reader.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut bytes)?;
    if n == 0 {
        return Ok(None);
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
    } else if bytes.len() > MAX_LINE {
        return Ok(Some((bytes, false)));
    }
    Ok(Some((bytes, true)))
}

/// What the child said it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// Its name.
    pub name: String,
    /// Its API.
    pub api: Api,
    /// Where its state lives.
    pub state: StateKind,
}

enum Line {
    Text(Vec<String>),
    Eof,
    Error(std::io::Error),
}

/// A running child that speaks the protocol.
pub struct Child {
    command: String,
    env: Vec<(String, String)>,
    process: std::process::Child,
    /// `None` once closed (on drop).
    stdin: Option<BufWriter<ChildStdin>>,
    lines: Receiver<Line>,
    /// Lines received and not yet read.
    pending: std::collections::VecDeque<String>,
    /// The end of its output, once `recv_ready` has seen it.
    end: Option<Line>,
    line_no: u64,
    next_id: u64,
    timeout: Duration,
    /// Requests sent and not answered: id -> what it is, for messages.
    in_flight: BTreeMap<u64, Sent>,
    hello: Hello,
    /// It failed the protocol: on drop it is killed at once, not given time to exit.
    broken: bool,
    /// Where the run is (`seed 3, engine step 412`), said with what is awaited; empty when the
    /// caller keeps no such count.
    context: String,
}

impl Child {
    /// Starts `command` (with `env` added to its environment, and none of [`DATABASE_ENV`] but
    /// what `env` gives), says hello with `config` and checks the answer. Responses are
    /// awaited at most `timeout` each.
    pub fn start(
        command: &str,
        env: &[(String, String)],
        config: &Config,
        timeout: Duration,
    ) -> Result<Child, ExecError> {
        // A process group of its own, so that a kill reaches whatever the shell started; in
        // the registry from its start, so that a signal to the run stops it.
        stop_children_on_signals();
        let mut live = live();
        let mut process = Process::new("sh");
        for name in withheld_database_env(env) {
            process.env_remove(name);
        }
        let mut process = process
            .arg("-c")
            .arg(command)
            .process_group(0)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| ExecError::Spawn { command: command.to_owned(), source })?;
        live.insert(process.id(), command.to_owned());
        drop(live);
        let stdin = Some(BufWriter::with_capacity(1 << 16, process.stdin.take().expect("piped")));
        let stdout = process.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("exec-stdout".into())
            .spawn(move || {
                // Lines go over in batches: every whole line already read, so that a child
                // answering many requests at once costs one wake-up, not one per line.
                let mut reader = BufReader::with_capacity(1 << 16, stdout);
                loop {
                    let mut batch = Vec::new();
                    let end = loop {
                        match read_bounded_line(&mut reader) {
                            Ok(None) => break Some(Line::Eof),
                            Ok(Some(Ok(line))) => batch.push(line),
                            Ok(Some(Err(bad))) => {
                                break Some(Line::Error(std::io::Error::new(std::io::ErrorKind::InvalidData, bad)))
                            }
                            Err(e) => break Some(Line::Error(e)),
                        }
                        if !reader.buffer().contains(&b'\n') {
                            break None;
                        }
                    };
                    if !batch.is_empty() && tx.send(Line::Text(batch)).is_err() {
                        return;
                    }
                    if let Some(end) = end {
                        let _ = tx.send(end);
                        return;
                    }
                }
            })
            .map_err(|source| ExecError::Spawn { command: command.to_owned(), source })?;
        let placeholder = Hello { name: String::new(), api: Api::Reference, state: StateKind::Memory };
        let mut child = Child {
            command: command.to_owned(),
            env: env.to_vec(),
            process,
            stdin,
            lines,
            pending: std::collections::VecDeque::new(),
            end: None,
            line_no: 0,
            next_id: 0,
            timeout,
            in_flight: BTreeMap::new(),
            hello: placeholder,
            broken: false,
            context: String::new(),
        };
        match child.handshake(config) {
            Ok(hello) => child.hello = hello,
            Err(e) => {
                child.broken = true;
                return Err(e);
            }
        }
        Ok(child)
    }

    fn handshake(&mut self, config: &Config) -> Result<Hello, ExecError> {
        let body = RequestBody::Hello { protocol: PROTOCOL_VERSION, config: ConfigJson::from(*config) };
        let longer = HELLO_TIMEOUT.max(self.timeout);
        let saved = std::mem::replace(&mut self.timeout, longer);
        let answer = self.ask(body);
        self.timeout = saved;
        let bad = |why: String| ExecError::Handshake { command: self.command.clone(), why };
        match answer?.body {
            ResponseBody::HelloOk { protocol, name, api, clock, state } => {
                if protocol != PROTOCOL_VERSION {
                    return Err(bad(format!("speaks protocol {protocol}; this harness speaks {PROTOCOL_VERSION}")));
                }
                if clock != "harness" {
                    return Err(bad(format!(
                        "says clock {clock:?}; the harness owns the clock (an implementation must take now_ms from each call: SPEC.md §9.2)"
                    )));
                }
                Ok(Hello { name, api, state })
            }
            ResponseBody::Error { code, text, .. } => Err(bad(format!("refused hello: {} {text}", code.as_str()))),
            other => Err(bad(format!("answered hello with {}", kind(&other)))),
        }
    }

    /// What the child said it is.
    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// The command it runs.
    pub fn command(&self) -> &str {
        &self.command
    }

    /// The environment it was started with, beyond the harness's own.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The bound on each wait.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// Whether it failed the protocol or stopped answering (a wait timed out, its output
    /// ended, a line could not be read): no further request can be trusted to it, and a run
    /// that goes on needs another child.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Marks it as failed: it answered in a way no further request can be trusted to (a reply
    /// of the wrong kind, say), so that a run that goes on starts another child
    /// ([`Child::is_broken`]).
    pub fn set_broken(&mut self) {
        self.broken = true;
    }

    /// Says where the run is (`seed 3, engine step 412`) with what is awaited, in the lines
    /// on stderr and the errors that name a request: the request ids are the harness's own
    /// numbering, which the person reading cannot place. Empty: nothing said.
    pub fn set_context(&mut self, context: String) {
        self.context = context;
    }

    /// The id the next request will be sent with.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Sends a request without waiting; returns its id. `what` names it in messages.
    pub fn send(&mut self, body: RequestBody) -> Result<u64, ExecError> {
        let id = self.next_id;
        self.next_id += 1;
        let what = Sent::of(&body);
        let line = serde_json::to_string(&Request { id, body }).expect("requests serialize");
        let stdin = self.stdin.as_mut().expect("open until drop");
        let written = stdin.write_all(line.as_bytes()).and_then(|()| stdin.write_all(b"\n"));
        if let Err(source) = written {
            return Err(ExecError::Write { command: self.command.clone(), source, status: self.status() });
        }
        self.in_flight.insert(id, what);
        Ok(id)
    }

    /// Sends `line` as it is, which a run never does (a line the protocol's error rules are
    /// about, `protocol_cases`). With `what`, it is a request with the next id (which `line`
    /// must carry): an answer to it is awaited like any other's. Without, no answer is
    /// awaited (a line of white space) and no id is used.
    pub fn send_raw(&mut self, line: &str, what: Option<&'static str>) -> Result<Option<u64>, ExecError> {
        let stdin = self.stdin.as_mut().expect("open until drop");
        let written = stdin.write_all(line.as_bytes()).and_then(|()| stdin.write_all(b"\n"));
        if let Err(source) = written {
            return Err(ExecError::Write { command: self.command.clone(), source, status: self.status() });
        }
        Ok(what.map(|what| {
            let id = self.next_id;
            self.next_id += 1;
            self.in_flight.insert(id, Sent { what, now_ms: None });
            id
        }))
    }

    /// Sends what was buffered.
    pub fn flush(&mut self) -> Result<(), ExecError> {
        self.stdin.as_mut().expect("open until drop").flush().map_err(|source| ExecError::Write {
            command: self.command.clone(),
            source,
            status: self.status(),
        })
    }

    /// Number of requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Waits for the next response, whichever request it answers (at most the timeout, saying
    /// on stderr what it waits for after 2 s).
    pub fn recv(&mut self) -> Result<Response, ExecError> {
        let r = self.recv_unchecked();
        self.broken |= r.is_err();
        r
    }

    /// The next response if one has already arrived; never waits.
    pub fn recv_ready(&mut self) -> Result<Option<Response>, ExecError> {
        if self.pending.is_empty() {
            match self.lines.try_recv() {
                Ok(Line::Text(batch)) => self.pending.extend(batch),
                // An end or an error: kept for the next `recv` to report.
                Ok(end) => {
                    self.end = Some(end);
                    return Ok(None);
                }
                Err(_) => return Ok(None),
            }
        }
        self.recv().map(Some)
    }

    fn recv_unchecked(&mut self) -> Result<Response, ExecError> {
        if let Some(text) = self.pending.pop_front() {
            return self.parse(text);
        }
        let started = Instant::now();
        let mut said = false;
        loop {
            let left = self.timeout.saturating_sub(started.elapsed());
            let wait = if said { left } else { left.min(SAY_AFTER) };
            let next = match self.end.take() {
                Some(end) => Ok(end),
                None => self.lines.recv_timeout(wait),
            };
            match next {
                Ok(Line::Text(batch)) => {
                    self.pending.extend(batch);
                    let text = self.pending.pop_front().expect("a batch holds a line");
                    return self.parse(text);
                }
                Ok(Line::Eof) | Err(RecvTimeoutError::Disconnected) => {
                    return Err(ExecError::Eof {
                        command: self.command.clone(),
                        status: self.status(),
                        waiting: self.waiting(),
                    })
                }
                Ok(Line::Error(e)) => {
                    return Err(ExecError::Garbled {
                        command: self.command.clone(),
                        line_no: self.line_no + 1,
                        why: e.to_string(),
                        line: String::new(),
                        id: None,
                    })
                }
                Err(RecvTimeoutError::Timeout) => {
                    if started.elapsed() >= self.timeout {
                        return Err(ExecError::Timeout {
                            command: self.command.clone(),
                            waiting: self.waiting(),
                            secs: self.timeout.as_secs(),
                        });
                    }
                    if !said {
                        say(format_args!(
                            "waiting for `{}` to answer {} (for {} s, at most {} s)",
                            self.command,
                            self.waiting(),
                            started.elapsed().as_secs(),
                            self.timeout.as_secs()
                        ));
                        said = true;
                    }
                }
            }
        }
    }

    /// Sends one request and waits for its answer (nothing else may be in flight).
    pub fn ask(&mut self, body: RequestBody) -> Result<Response, ExecError> {
        debug_assert!(self.in_flight.is_empty(), "ask is for one request at a time");
        self.send(body)?;
        self.flush()?;
        self.recv()
    }

    fn parse(&mut self, text: String) -> Result<Response, ExecError> {
        self.line_no += 1;
        let garbled = |why: String, line: &str| ExecError::Garbled {
            command: self.command.clone(),
            line_no: self.line_no,
            why: match crate::protocol::amount_out_of_range(line) {
                Some(evidence) => format!("{why}; {evidence}"),
                None => why,
            },
            line: line_shown(line),
            id: crate::protocol::top_level_id(line),
        };
        let mut response: Response = serde_json::from_str(&text).map_err(|e| garbled(e.to_string(), &text))?;
        tags_are_names(&text).map_err(|e| garbled(e, &text))?;
        if self.in_flight.remove(&response.id).is_none() {
            return Err(garbled(format!("id {} is not a request in flight", response.id), &text));
        }
        if let ResponseBody::Error { code, definite, .. } = &response.body {
            if *definite != code.is_definite() {
                return Err(garbled(
                    format!(
                        "error {} is {}definite, but the line says \"definite\":{definite}",
                        code.as_str(),
                        if code.is_definite() { "" } else { "in" }
                    ),
                    &text,
                ));
            }
        }
        // What the child wrote for people is shown to them: without a password, and without
        // control characters a terminal would obey.
        if let ResponseBody::Error { text, .. } | ResponseBody::HelloOk { name: text, .. } = &mut response.body {
            *text = ledger_harness::text::shown(text);
        }
        Ok(response)
    }

    fn waiting(&self) -> String {
        match self.in_flight.iter().next() {
            None => "nothing".to_owned(),
            Some((id, what)) if self.in_flight.len() == 1 && !self.context.is_empty() => {
                format!("{what} ({}; request id {id})", self.context)
            }
            Some((id, what)) if self.in_flight.len() == 1 => format!("request {id} ({what})"),
            Some((id, what)) => format!("{} requests (the oldest: {id}, {what})", self.in_flight.len()),
        }
    }

    fn status(&mut self) -> String {
        // Give a child that is exiting a moment to be reaped.
        for _ in 0..20 {
            if let Ok(Some(status)) = self.process.try_wait() {
                return format!(" (it exited: {status})");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        String::new()
    }

    /// Kills the child and every process it started (its process group) with SIGKILL, as a
    /// crash would, and reaps it.
    pub fn kill(&mut self) {
        if !kill_group(self.process.id()) {
            let _ = self.process.kill();
        }
        let _ = self.process.wait();
        self.forget();
    }

    /// Takes the reaped child out of the registry of live children.
    fn forget(&self) {
        live().remove(&self.process.id());
    }

    /// Process id, for a test that kills it from outside.
    pub fn pid(&self) -> u32 {
        self.process.id()
    }
}

impl Drop for Child {
    /// Closes the child's input (a well-behaved child exits at end of input), waits up to
    /// [`EXIT_GRACE`] for it to exit (not at all when it failed the protocol), then kills its
    /// process group. A wait that lasts is said on stderr, and so is the kill that ends it.
    fn drop(&mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.flush();
        }
        let grace = if self.broken { Duration::ZERO } else { EXIT_GRACE };
        let started = Instant::now();
        let mut said = false;
        while started.elapsed() < grace {
            if let Ok(Some(_)) = self.process.try_wait() {
                self.forget();
                return;
            }
            if !said && started.elapsed() >= SAY_EXIT_AFTER {
                say(format_args!(
                    "waiting up to {} s for `{}` to exit after the end of its input",
                    grace.as_secs(),
                    self.command
                ));
                said = true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        if said {
            say(format_args!(
                "`{}` did not exit within {} s of the end of its input: killing its process group",
                self.command,
                grace.as_secs()
            ));
        }
        self.kill();
    }
}

/// What a request in flight is, for messages (made into words only when one is printed).
#[derive(Clone, Copy, Debug)]
struct Sent {
    what: &'static str,
    now_ms: Option<u64>,
}

impl Sent {
    fn of(body: &RequestBody) -> Sent {
        match body {
            RequestBody::Hello { .. } => Sent { what: "hello", now_ms: None },
            RequestBody::Reset { .. } => Sent { what: "reset", now_ms: None },
            RequestBody::Observe => Sent { what: "observe", now_ms: None },
            RequestBody::Call { now_ms, call } => Sent { what: call.name(), now_ms: Some(now_ms.0) },
        }
    }
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.now_ms {
            Some(now) => write!(f, "{} at {now}", self.what),
            None => f.write_str(self.what),
        }
    }
}

/// A response's `type`, for messages.
pub fn kind(body: &ResponseBody) -> &'static str {
    match body {
        ResponseBody::HelloOk { .. } => "hello_ok",
        ResponseBody::ResetOk => "reset_ok",
        ResponseBody::Reply { .. } => "reply",
        ResponseBody::Observed(_) => "observed",
        ResponseBody::Error { .. } => "error",
    }
}

/// The error an `error` response is, in words.
pub fn error_text(code: ErrorCode, text: &str) -> String {
    if text.is_empty() {
        code.as_str().to_owned()
    } else {
        format!("{}: {text}", code.as_str())
    }
}
