//! A throwaway PostgreSQL for tests and simulator runs.
//!
//! [`TestPg::new`] gives each caller a fresh, empty database. The database lives on the server
//! named by `DATABASE_URL` when that variable is set, and otherwise on a private cluster that this
//! module creates with the machine's `initdb` and `pg_ctl`: a temporary directory that only its
//! owner may enter (mode 0700), a free loopback port, the unix socket inside the directory, and
//! password authentication (SCRAM) for every connection, socket or loopback, with a random
//! password made for the cluster, which its URLs carry ([`TestPg::url`]): another local user can
//! neither connect nor read its files. `initdb`, `pg_ctl` and the server run with a cleared
//! environment (`PATH`, the locale's and the time zone's variables, nothing else), so that
//! nothing of ours (`PGPASSWORD`, a CI job's keys) is in the server's. When the process runs as
//! root, the cluster runs as the `postgres` user, because `initdb` refuses root.
//!
//! The private cluster is shared by every [`TestPg`] alive at the same time in one process (tests
//! run in parallel, and `initdb` costs a second or two), and is stopped and removed when the last
//! of them is dropped. Failing to start is an error, never a skip: a test that needs Postgres and
//! cannot have it must fail.
//!
//! On a server that outlives the process (`DATABASE_URL`'s, or one given to
//! [`TestPg::on_server`]) each database is dropped with its [`TestPg`], and marked when made
//! (`COMMENT ON DATABASE`, [`Maker`]) with the host, the boot and the process that made it: a
//! process killed before it could drop its databases (SIGKILL, a second Ctrl-C) leaves them, and
//! the next process that makes one on the same server drops those whose maker is gone (see
//! [`sweep`]). A database without the marker, or made on another host, is never dropped.
//!
//! `scripts/pg-throwaway.sh` does the same from the shell.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// Why a throwaway database could not be had.
#[derive(Debug, thiserror::Error)]
pub enum TestPgError {
    /// A PostgreSQL program (`initdb`, `pg_ctl`) is not installed where we looked.
    #[error(
        "cannot find the PostgreSQL program {0} under /usr/lib/postgresql/*/bin or on PATH (set PG_BIN to its \
         directory)"
    )]
    MissingProgram(&'static str),
    /// PG_BIN is set, and does not hold the program: nothing else is searched.
    #[error(
        "PG_BIN is set to {}, which holds no PostgreSQL program {program}: set PG_BIN to the directory of \
         PostgreSQL's initdb and pg_ctl, or unset it to search /usr/lib/postgresql/*/bin and PATH",
        ledger_harness::text::shown(&format!("{dir:?}"))
    )]
    MissingInPgBin {
        /// The program looked for.
        program: &'static str,
        /// PG_BIN's value.
        dir: PathBuf,
    },
    /// A program ran and failed; its output is attached.
    #[error("{program} failed: {output}")]
    Program {
        /// What was run.
        program: String,
        /// Its standard output and error.
        output: String,
    },
    /// A file-system operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// `DATABASE_URL` is not a PostgreSQL URL (the message names it, without its password).
    #[error("{0}")]
    Url(String),
    /// The server refused a connection or a statement.
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    /// The caller asked to stop (a signal to the run, [`TestPg::new_unless_stopped`]) while a
    /// throwaway cluster was being made (`what`): the program at work was killed, no server was
    /// left running, and the cluster's directory is removed.
    #[error("stopped while {0}: no server was left running, and the cluster's directory is removed")]
    Stopped(String),
    /// The server at `server` (its URL, without a password) failed `what`, or did not answer in
    /// time.
    #[error("{what} on {server}: {cause}")]
    Server {
        /// What was being done.
        what: String,
        /// The server, as `postgres://user@host:port/database`.
        server: String,
        /// The server's error, or how long it was waited for.
        cause: String,
    },
}

/// How long one admin connection's work (connecting, `CREATE DATABASE`, `DROP DATABASE`) may
/// take: a server that accepts connections and never answers fails here instead of hanging.
pub const ADMIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// How long the connection itself may take, within [`ADMIN_TIMEOUT`]: a server that is up
/// answers a connection in milliseconds (as `audit` assumes, with the same bound), so one that
/// accepts it and says nothing is given up on well before a slow `CREATE DATABASE` would be.
pub const ADMIN_CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl TestPgError {
    /// Whether this is [`TestPgError::Stopped`]: the caller's stop, not a failure.
    pub fn is_stopped(&self) -> bool {
        matches!(self, TestPgError::Stopped(_))
    }
}

/// Whether `stop` is given and set.
fn stopping(stop: Option<&AtomicBool>) -> bool {
    stop.is_some_and(|stop| stop.load(Ordering::Relaxed))
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> TestPgError {
    let what = what.into();
    move |source| TestPgError::Io { what, source }
}

/// A private cluster: stopped and its directory removed on drop.
#[derive(Debug)]
struct Cluster {
    dir: PathBuf,
    pg_ctl: PathBuf,
    port: u16,
    /// The superuser's password (`postgres`), random, made with the cluster.
    password: String,
    /// The server's command-line options (`pg_ctl start -o`).
    options: String,
    durability: Durability,
    /// The server's writers stopped by [`TestPg::stall_wal_writer`], killed with the server.
    stalled: Mutex<Vec<u32>>,
}

/// How long `pg_ctl` waits for the server to start or stop, in seconds.
const PG_CTL_WAIT_S: u64 = 60;

/// The cluster shared by the live [`TestPg`]s of this process.
static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
static NEXT_DB: AtomicU64 = AtomicU64::new(0);

fn find_program(name: &'static str) -> Result<PathBuf, TestPgError> {
    find_program_in(name, std::env::var_os("PG_BIN"), std::env::var_os("PATH"), Path::new("/usr/lib/postgresql"))
}

/// Where `name` is: in `pg_bin` (PG_BIN) alone when that is set and not empty, and otherwise
/// under `lib/*/bin` (newest major version first), then in each directory of `path` (PATH).
/// A PG_BIN that does not hold the program is an error naming it, never a fall back to another
/// PostgreSQL: a user who sets it means that one. An empty PG_BIN (`PG_BIN=` in a CI template)
/// is taken as unset.
fn find_program_in(
    name: &'static str,
    pg_bin: Option<std::ffi::OsString>,
    path: Option<std::ffi::OsString>,
    lib: &Path,
) -> Result<PathBuf, TestPgError> {
    if let Some(dir) = pg_bin.filter(|d| !d.is_empty()) {
        let program = PathBuf::from(&dir).join(name);
        return if program.is_file() {
            Ok(program)
        } else {
            Err(TestPgError::MissingInPgBin { program: name, dir: PathBuf::from(dir) })
        };
    }
    let mut candidates = Vec::new();
    if let Ok(entries) = std::fs::read_dir(lib) {
        let mut versions: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        // Newest major version first (as numbers: 9.6 is older than 10).
        versions.sort_by_key(|v| {
            let n = v.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let major = n.split('.').next().and_then(|m| m.parse::<u64>().ok());
            (major, n.to_owned())
        });
        versions.reverse();
        candidates.extend(versions.into_iter().map(|v| v.join("bin").join(name)));
    }
    if let Some(path) = path {
        candidates.extend(std::env::split_paths(&path).filter(|d| !d.as_os_str().is_empty()).map(|d| d.join(name)));
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or(TestPgError::MissingProgram(name))
}

fn running_as_root() -> bool {
    // `id -u` avoids a libc dependency for one question.
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// The variables of our environment that the cluster's programs get: `PATH`, and the locale's
/// and the time zone's (`LANG`, `LANGUAGE`, `LC_*`, `TZ`); nothing else. `runuser` keeps the
/// environment it is given, and the server keeps `pg_ctl`'s: everything else of ours (root's
/// `PGPASSWORD`, a CI job's cloud keys) would be in the server's `/proc/PID/environ`, and in
/// what `COPY ... TO PROGRAM` runs.
fn kept_environment() -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    std::env::vars_os()
        .filter(|(name, _)| {
            let name = name.to_string_lossy();
            matches!(name.as_ref(), "PATH" | "LANG" | "LANGUAGE" | "TZ") || name.starts_with("LC_")
        })
        .collect()
}

/// `program` as the cluster owner would run it (under `runuser -u postgres` when we are root),
/// with a cleared environment but for [`kept_environment`].
fn owner_command(as_root: bool, program: &Path) -> Command {
    let mut c = if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    c.env_clear().envs(kept_environment());
    c
}

/// Writes `text` to `path`, a file in a directory of the cluster owner's, as the owner does
/// (`runuser -u postgres` when we are root): whatever the owner put at `path` (a link to
/// `/etc/shadow`), the write can do no more than the owner may. Root writing there itself
/// would follow a link the owner planted.
fn write_as_owner(as_root: bool, path: &Path, text: &str) -> Result<(), TestPgError> {
    use std::process::Stdio;
    let shown = path.display().to_string();
    let mut child = owner_command(as_root, Path::new("sh"))
        .args(["-c", "umask 077 && cat > \"$1\"", "sh"])
        .arg(path)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(format!("writing {shown}")))?;
    let written = child.stdin.take().map_or(Ok(()), |mut stdin| stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().map_err(io_err(format!("writing {shown}")))?;
    written.map_err(io_err(format!("writing {shown}")))?;
    finished(Path::new("sh"), &["-c", &format!("cat > {shown}")], out).map(|_| ())
}

/// A random password for a throwaway cluster's superuser: 32 bytes of the kernel's random
/// source, in hex (nothing in it needs escaping in a URL or a file).
fn random_password() -> Result<String, TestPgError> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(io_err("reading /dev/urandom for the throwaway cluster's password"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// `out` of `program args`, or the error of a program that failed, with what it printed.
fn finished(program: &Path, args: &[&str], out: Output) -> Result<Output, TestPgError> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(TestPgError::Program {
            program: format!("{} {}", program.display(), args.join(" ")),
            output: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        })
    }
}

/// The children of process `parent` whose process title is `postgres: <one of names>`, from
/// `/proc` (PostgreSQL writes each server process's role into its command line).
fn server_children(parent: u32, names: &[&str]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        // The field after the state, past the command name's closing parenthesis.
        let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid != Some(parent) {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let title = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let role = title.trim().strip_prefix("postgres:").map(str::trim);
        if role.is_some_and(|r| names.contains(&r)) {
            found.push(pid);
        }
    }
    found.sort_unstable();
    found
}

/// Every child of process `parent`, from `/proc`.
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse::<u32>().ok()?;
            (ppid == parent).then_some(pid)
        })
        .collect();
    found.sort_unstable();
    found
}

/// Whether process `pid` is alive (not gone, not a zombie) and a PostgreSQL process: its
/// command line holds `postgres` (the postmaster's is the program's path, a child's its title
/// `postgres: ...`). A process id read earlier is signalled only if this still holds, so that
/// a number the system gave to another process since is never hit.
fn alive_postgres(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, None | Some("Z" | "X")) {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains("postgres")
}

/// How long [`Cluster::stop_now`] gives `pg_ctl stop -m immediate` before it kills what is
/// left of the server with SIGKILL.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Sends `sig` (`-KILL`, `-STOP`, `-CONT`) to the processes `pids` (ours, or the cluster
/// owner's when we are root).
fn signal(sig: &str, pids: &[u32]) -> Result<Output, TestPgError> {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let args: Vec<&str> = std::iter::once(sig).chain(pids.iter().map(String::as_str)).collect();
    run_as_owner(false, Path::new("kill"), &args)
}

/// Runs `program args` as the cluster owner (`postgres` when we are root).
fn run_as_owner(as_root: bool, program: &Path, args: &[&str]) -> Result<Output, TestPgError> {
    let out = owner_command(as_root, program)
        .args(args)
        .output()
        .map_err(io_err(format!("running {}", program.display())))?;
    finished(program, args, out)
}

/// How long `initdb` may take to create the throwaway cluster (a second or two on an idle
/// machine).
const INITDB_WAIT: Duration = Duration::from_secs(120);

/// How long a bounded program runs before the wait is announced on stderr.
const SLOW_AFTER: Duration = Duration::from_secs(5);

/// Like [`run_as_owner`], for at most `limit`. A program still running after `slow_after` is
/// announced on stderr, saying what it is `doing` and how long it is waited for; one still
/// running at `limit` is killed with its process group (`runuser` and the program under it)
/// and is an error naming the program, what it was doing and the bound. One still running
/// when `stop` is set is killed the same way, within 20 ms, and is [`TestPgError::Stopped`]:
/// the program runs in a process group of its own, which a terminal's Ctrl-C does not reach,
/// so the caller's stop is the only way a signal to the process gets to it.
fn run_as_owner_bounded(
    as_root: bool,
    program: &Path,
    args: &[&str],
    doing: &str,
    limit: Duration,
    slow_after: Duration,
    stop: Option<&AtomicBool>,
) -> Result<Output, TestPgError> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;

    let running = || format!("running {}", program.display());
    let mut child = owner_command(as_root, program)
        .args(args)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err(running()))?;
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let name = program.file_name().map_or_else(|| program.display().to_string(), |n| n.to_string_lossy().into_owned());
    let started = Instant::now();
    let mut announced = false;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(io_err(running()))? {
            break status;
        }
        let waited = started.elapsed();
        let stopped = stopping(stop);
        if waited >= limit || stopped {
            // The whole group: SIGKILL to `runuser` alone would leave the program running.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = child.kill();
            let _ = child.wait();
            if stopped {
                return Err(TestPgError::Stopped(format!("{doing} ({name} was killed)")));
            }
            return Err(TestPgError::Program {
                program: format!("{} {}", program.display(), args.join(" ")),
                output: format!("{name} was still {doing} after {} s, its bound; it was killed", limit.as_secs_f64()),
            });
        }
        if !announced && waited >= slow_after {
            say(format_args!(
                "ledger-pg: {name} is still {doing} after {} s (waiting at most {} s)",
                slow_after.as_secs_f64(),
                limit.as_secs_f64()
            ));
            announced = true;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output { status, stdout: stdout.join().unwrap_or_default(), stderr: stderr.join().unwrap_or_default() };
    finished(program, args, out)
}

/// How many lines of a throwaway server's log a failure quotes.
const SERVER_LOG_TAIL: usize = 20;

/// The bytes free to an unprivileged user on the file system of `path` (`df`'s "Avail").
fn free_space(path: &Path) -> Option<u64> {
    let fs = rustix::fs::statvfs(path).ok()?;
    fs.f_bavail.checked_mul(fs.f_frsize)
}

fn free_port() -> Result<u16, TestPgError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io_err("finding a free port"))?;
    let port = listener.local_addr().map_err(io_err("finding a free port"))?.port();
    Ok(port)
}

impl Cluster {
    /// Makes and starts a cluster, unless `stop` is set first: it is looked at while `initdb`
    /// runs (which is then killed), before each start of the server, and once it has started
    /// (which is then stopped). Stopped, it is [`TestPgError::Stopped`], and dropping the
    /// half-made cluster removes its directory.
    fn start(durability: Durability, stop: Option<&AtomicBool>) -> Result<Cluster, TestPgError> {
        let initdb = find_program("initdb")?;
        let pg_ctl = find_program("pg_ctl")?;
        let as_root = running_as_root();
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let dir = std::env::temp_dir().join(format!("ledger-pg-{}-{nanos}", std::process::id()));
        // A new directory (never one that was there, or a link), that only its owner may enter:
        // the data, the socket and the log are no other user's business.
        {
            use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&dir)
                .map_err(io_err(format!("creating {}", dir.display())))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(format!("making {} private", dir.display())))?;
        }
        let password = random_password()?;
        // From here on, dropping `cluster` removes the directory (and stops a started server).
        let mut cluster = Cluster {
            dir,
            pg_ctl,
            port: 0,
            password,
            options: String::new(),
            durability,
            stalled: Mutex::new(Vec::new()),
        };
        let dir_str = cluster.dir.to_string_lossy().into_owned();
        // The password reaches initdb in a file only the cluster owner may read, made before the
        // directory is given to the owner (so in a directory no one else can write), and removed
        // once initdb has read it: never on a command line, which every local user can read.
        let pwfile = cluster.dir.join("pwfile");
        let pwfile_str = pwfile.to_string_lossy().into_owned();
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&pwfile)
                .map_err(io_err(format!("creating {pwfile_str}")))?;
            writeln!(file, "{}", cluster.password).map_err(io_err(format!("writing {pwfile_str}")))?;
        }
        if as_root {
            run_as_owner(false, Path::new("chown"), &["postgres:", &pwfile_str, &dir_str])?;
        }
        let data = cluster.dir.join("data");
        let data_str = data.to_string_lossy().into_owned();
        let creating = format!("creating the throwaway cluster in {data_str}");
        if stopping(stop) {
            return Err(TestPgError::Stopped(creating));
        }
        let made = run_as_owner_bounded(
            as_root,
            &initdb,
            &[
                "-D",
                &data_str,
                "-U",
                "postgres",
                "--auth=scram-sha-256",
                &format!("--pwfile={pwfile_str}"),
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ],
            &creating,
            INITDB_WAIT,
            SLOW_AFTER,
            stop,
        );
        let _ = std::fs::remove_file(&pwfile);
        made?;
        let starting = format!("starting the throwaway PostgreSQL in {dir_str}");
        if stopping(stop) {
            return Err(TestPgError::Stopped(format!("{creating} (initdb had just finished)")));
        }
        // The private socket and loopback only, each with the password.
        let hba = "local all all scram-sha-256\nhost all all 127.0.0.1/32 scram-sha-256\n";
        write_as_owner(as_root, &data.join("pg_hba.conf"), hba)?;
        let mut last_err = None;
        say(format_args!(
            "ledger-pg: starting a throwaway PostgreSQL in {dir_str} (pg_ctl waits at most {PG_CTL_WAIT_S} s)"
        ));
        // A port found free can be taken before the server binds it; try a few.
        for attempt in 0..5 {
            if stopping(stop) {
                return Err(TestPgError::Stopped(starting));
            }
            if attempt > 0 {
                say(format_args!("ledger-pg: the throwaway PostgreSQL did not start; trying again on another port"));
            }
            cluster.port = free_port()?;
            cluster.options = format!(
                "-c listen_addresses=127.0.0.1 -p {} -k {dir_str} -c unix_socket_permissions=0700 {} \
                 -c max_connections=300",
                cluster.port,
                durability.settings()
            );
            match cluster.pg_ctl_start() {
                // Started as the stop came: dropping the cluster stops it at once.
                Ok(_) if stopping(stop) => {
                    return Err(TestPgError::Stopped(format!("{starting} (it had just started, and is stopped)")));
                }
                Ok(_) => {
                    cluster.watch_owner();
                    return Ok(cluster);
                }
                Err(e) => {
                    let log = std::fs::read_to_string(cluster.dir.join("server.log")).unwrap_or_default();
                    last_err = Some(TestPgError::Program {
                        program: "pg_ctl start".into(),
                        output: format!("{e}\nserver log:\n{log}"),
                    });
                }
            }
        }
        Err(last_err.expect("the loop ran at least once"))
    }

    /// Starts a watchdog, detached from this process, that stops the server and removes the
    /// directory once this process is gone: a run or a test killed by a signal (which runs no
    /// `Drop`) leaves no server behind. It checks once a second; after a normal exit it finds
    /// nothing left to do. It stops the server as [`Cluster::stop_now`] does, a hung one
    /// included: the postmaster named by `postmaster.pid` (if its command line names this data
    /// directory) and its children are continued, `pg_ctl stop -m immediate` is given
    /// [`STOP_WAIT`], and what is left of them is killed. Without `setsid` there is no
    /// watchdog, only `Drop`.
    fn watch_owner(&self) {
        let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
        let data = self.dir.join("data").to_string_lossy().into_owned();
        let owner = if running_as_root() { "runuser -u postgres -- " } else { "" };
        // `kids` reads each process's parent from /proc/N/stat (the field after the state,
        // past the command name's closing parenthesis); `pg` keeps the processes that are
        // still PostgreSQL's.
        let script = format!(
            "while kill -0 {pid} 2>/dev/null; do sleep 1; done; \
             pm=$(head -n 1 {data}/postmaster.pid 2>/dev/null); \
             if [ -n \"$pm\" ] && tr '\\0' ' ' < /proc/$pm/cmdline 2>/dev/null | grep -qF -- {data}; then \
               kids=$(for s in /proc/[0-9]*/stat; do read -r line < \"$s\" 2>/dev/null || continue; \
                 rest=${{line##*\") \"}}; set -- $rest; [ \"$2\" = \"$pm\" ] && {{ p=${{s#/proc/}}; echo ${{p%/stat}}; }}; \
                 done); \
               pg() {{ for p in \"$@\"; do tr '\\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q postgres && echo $p; \
                 done; }}; \
               kill -CONT $pm $kids 2>/dev/null; \
               {owner}{pg_ctl} -D {data} -m immediate -w -t {wait} stop; \
               left=$(pg $pm $kids); if [ -n \"$left\" ]; then kill -KILL $left 2>/dev/null; fi; \
             fi; rm -rf {dir}",
            pid = std::process::id(),
            data = quote(&data),
            pg_ctl = quote(&self.pg_ctl.to_string_lossy()),
            dir = quote(&self.dir.to_string_lossy()),
            wait = STOP_WAIT.as_secs(),
        );
        let _ = Command::new("setsid")
            .args(["-f", "sh", "-c", &script])
            .env_clear()
            .envs(kept_environment())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }

    fn pg_ctl_start(&self) -> Result<Output, TestPgError> {
        let data_str = self.dir.join("data").to_string_lossy().into_owned();
        let log = self.dir.join("server.log").to_string_lossy().into_owned();
        run_as_owner(
            running_as_root(),
            &self.pg_ctl,
            &["-D", &data_str, "-l", &log, "-w", "-t", &PG_CTL_WAIT_S.to_string(), "-o", &self.options, "start"],
        )
    }

    /// The postmaster's process id, from `postmaster.pid`.
    fn postmaster_pid(&self) -> Result<u32, TestPgError> {
        let path = self.dir.join("data").join("postmaster.pid");
        let text = std::fs::read_to_string(&path).map_err(io_err(format!("reading {}", path.display())))?;
        text.lines().next().and_then(|l| l.trim().parse().ok()).ok_or_else(|| TestPgError::Program {
            program: "reading postmaster.pid".into(),
            output: format!("{}: no process id on its first line", path.display()),
        })
    }

    /// Kills the postmaster with SIGKILL, as a crash would, and waits (at most 30 s) until it
    /// and every backend are gone: nothing is shut down, no checkpoint is written.
    fn kill(&self) -> Result<(), TestPgError> {
        let postmaster = self.postmaster_pid()?;
        signal("-KILL", &[postmaster])?;
        // A stopped writer cannot notice its postmaster's death, and would hold the old
        // shared memory forever: it dies with it, having written nothing more.
        self.signal_stalled("-KILL");
        for _ in 0..300 {
            // Gone, or a zombie its parent has not reaped yet: dead either way.
            let stat = std::fs::read_to_string(format!("/proc/{postmaster}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            if matches!(state, None | Some("Z" | "X")) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        Err(TestPgError::Program {
            program: "kill -KILL".into(),
            output: format!("postmaster {postmaster} was still alive 30 s after SIGKILL"),
        })
    }

    /// Stops the server (fast: open connections are cut) and starts it again on the same port.
    fn restart(&self) -> Result<(), TestPgError> {
        // A stopped writer would hold up the shutdown: it goes on, and shuts down as usual.
        self.signal_stalled("-CONT");
        let data_str = self.dir.join("data").to_string_lossy().into_owned();
        let log = self.dir.join("server.log").to_string_lossy().into_owned();
        say(format_args!(
            "ledger-pg: restarting the throwaway PostgreSQL in {} (pg_ctl waits at most {PG_CTL_WAIT_S} s)",
            self.dir.display()
        ));
        // Without -o, pg_ctl restarts with the options of the last start (postmaster.opts).
        run_as_owner(
            running_as_root(),
            &self.pg_ctl,
            &["-D", &data_str, "-l", &log, "-m", "fast", "-w", "-t", &PG_CTL_WAIT_S.to_string(), "restart"],
        )?;
        Ok(())
    }

    /// Starts the server again after [`Cluster::kill`]: crash recovery replays the WAL. The
    /// killed postmaster's backends exit when they notice its death, and the server cannot
    /// start while one still holds the old shared memory: tried for at most 30 s.
    fn start_again(&self) -> Result<(), TestPgError> {
        let mut last = None;
        for _ in 0..30 {
            match self.pg_ctl_start() {
                Ok(_) => return Ok(()),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        Err(last.expect("tried at least once"))
    }

    /// Stops (SIGSTOP) the WAL writer and the background writer of the running server.
    fn stall_writers(&self) -> Result<(), TestPgError> {
        let postmaster = self.postmaster_pid()?;
        let writers = server_children(postmaster, &["walwriter", "background writer"]);
        if writers.len() != 2 {
            return Err(TestPgError::Program {
                program: "stall the WAL writer".into(),
                output: format!(
                    "found {} of the 2 writer processes (walwriter, background writer) under postmaster {postmaster}",
                    writers.len()
                ),
            });
        }
        signal("-STOP", &writers)?;
        self.stalled.lock().unwrap_or_else(|p| p.into_inner()).extend(writers);
        Ok(())
    }

    /// Sends `signal` (`-KILL`, `-CONT`) to the stalled writers, which are stalled no more.
    fn signal_stalled(&self, sig: &str) {
        let pids = std::mem::take(&mut *self.stalled.lock().unwrap_or_else(|p| p.into_inner()));
        if !pids.is_empty() {
            // A writer already gone (its server crashed under it) is not an error.
            let _ = signal(sig, &pids);
        }
    }

    /// Stops the server at once and for certain, even one that hangs: stopped by SIGSTOP (a
    /// debugger, a job-control stop, a test of hangs), its processes would never handle
    /// `pg_ctl stop`'s signal and would stay, stopped, after their directory is removed. So
    /// the postmaster and its children are continued (SIGCONT) first, `pg_ctl stop -m
    /// immediate` is given [`STOP_WAIT`], and whatever is left of them then is killed
    /// (SIGKILL), waited for at most 5 s more. Only the postmaster of this cluster's
    /// `postmaster.pid` (its command line names this data directory) and its children are
    /// signalled.
    fn stop_now(&self) {
        let data = self.dir.join("data");
        let data_str = data.to_string_lossy().into_owned();
        let Ok(postmaster) = self.postmaster_pid() else { return };
        let cmdline = std::fs::read(format!("/proc/{postmaster}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(&data_str) || !alive_postgres(postmaster) {
            return;
        }
        // Read before anything dies: a child whose postmaster is gone is the init process's.
        let family: Vec<u32> = std::iter::once(postmaster).chain(children_of(postmaster)).collect();
        let _ = signal("-CONT", &family);
        let _ = run_as_owner_bounded(
            running_as_root(),
            &self.pg_ctl,
            &["-D", &data_str, "-m", "immediate", "-w", "-t", &STOP_WAIT.as_secs().to_string(), "stop"],
            &format!("stopping the throwaway cluster in {data_str}"),
            STOP_WAIT + Duration::from_secs(5),
            SLOW_AFTER,
            None,
        );
        let started = Instant::now();
        loop {
            let left: Vec<u32> = family.iter().copied().filter(|&pid| alive_postgres(pid)).collect();
            if left.is_empty() || started.elapsed() > Duration::from_secs(5) {
                if !left.is_empty() {
                    say(format_args!(
                        "ledger-pg: the throwaway PostgreSQL in {} left processes {left:?} after SIGKILL",
                        self.dir.display()
                    ));
                }
                return;
            }
            let _ = signal("-KILL", &left);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The last `lines` lines of the server's log, headed by where it is and the free space
    /// there (a full disk crashes a server over and over, and each crash's recovery turns
    /// connections away), or why it could not be read.
    fn log_tail(&self, lines: usize) -> String {
        let path = self.dir.join("server.log");
        let free = free_space(&self.dir).map_or_else(String::new, |b| format!(", {} MB free there", b >> 20));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let all: Vec<&str> = text.lines().collect();
                let tail = all[all.len().saturating_sub(lines)..].join("\n");
                format!("the end of the server's log ({}{free}):\n{tail}", path.display())
            }
            Err(e) => format!("the server's log ({}{free}) could not be read: {e}", path.display()),
        }
    }

    fn admin_options(&self) -> PgConnectOptions {
        PgConnectOptions::new()
            .host("127.0.0.1")
            .port(self.port)
            .username("postgres")
            .password(&self.password)
            .database("postgres")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.signal_stalled("-KILL");
        self.stop_now();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A fresh database on a throwaway (or `DATABASE_URL`) server, for one test or one run.
///
/// Dropping it drops the database when it lives on a `DATABASE_URL` server, and stops and
/// removes the private cluster when it is the last user of it.
#[derive(Debug)]
pub struct TestPg {
    cluster: Option<Arc<Cluster>>,
    admin: PgConnectOptions,
    db_name: String,
    url: String,
}

impl TestPg {
    /// Creates a fresh, empty database (no migrations applied).
    ///
    /// Blocking; it may be called from inside or outside a tokio runtime.
    pub fn new() -> Result<TestPg, TestPgError> {
        TestPg::new_unless_stopped(None)
    }

    /// Like [`TestPg::new`], for a run that a signal may stop (its flag, `stop`): when the
    /// throwaway cluster has to be made, and `stop` is set while it is, `initdb` is killed (or
    /// the server, if it had just started, stopped), the directory is removed, and the result
    /// is [`TestPgError::Stopped`]. `initdb` runs in a process group of its own, where a
    /// terminal's Ctrl-C does not reach it: without this it ran to its end and the server was
    /// started after the signal.
    pub fn new_unless_stopped(stop: Option<&AtomicBool>) -> Result<TestPg, TestPgError> {
        match database_url_env()? {
            Some(url) => TestPg::on_server("DATABASE_URL", &url, "ledger_test"),
            None => TestPg::on_cluster(shared_cluster(stop)?),
        }
    }

    /// A fresh database on the server of `url`, which the user gave as `named` (`DATABASE_URL`,
    /// `--database-url`), named `{prefix}_{pid}_{n}_{nanos}`: the URL's role must be allowed to
    /// create databases. Dropped with the `TestPg`, or by [`TestPg::drop_database`], which says
    /// whether it was. A URL naming its database in its query (`?dbname=`) is refused: it would
    /// not reach the new database.
    pub fn on_server(named: &str, url: &str, prefix: &str) -> Result<TestPg, TestPgError> {
        let admin = crate::database_url_options(named, url).map_err(TestPgError::Url)?;
        TestPg::on(None, admin, url, named, prefix)
    }

    /// Like [`TestPg::new`], but on a cluster of its own that no other `TestPg` shares, even
    /// when `DATABASE_URL` is set: for tests that restart or break the server.
    pub fn new_private_cluster() -> Result<TestPg, TestPgError> {
        TestPg::new_private_cluster_with(Durability::Fast)
    }

    /// Like [`TestPg::new_private_cluster`], with the given [`Durability`]: a crash test needs
    /// a server that keeps what it acknowledged.
    pub fn new_private_cluster_with(durability: Durability) -> Result<TestPg, TestPgError> {
        TestPg::new_private_cluster_unless_stopped(durability, None)
    }

    /// Like [`TestPg::new_private_cluster_with`], given up as [`TestPg::new_unless_stopped`]
    /// is when `stop` is set while the cluster is made.
    pub fn new_private_cluster_unless_stopped(
        durability: Durability,
        stop: Option<&AtomicBool>,
    ) -> Result<TestPg, TestPgError> {
        TestPg::on_cluster(Arc::new(Cluster::start(durability, stop)?))
    }

    fn on_cluster(cluster: Arc<Cluster>) -> Result<TestPg, TestPgError> {
        let admin = cluster.admin_options();
        // With the password (hex: nothing to escape); printed only through `redacted`.
        let url = format!("postgres://postgres:{}@127.0.0.1:{}/postgres", cluster.password, cluster.port);
        TestPg::on(Some(cluster), admin, &url, "the throwaway cluster", "ledger_test")
    }

    fn on(
        cluster: Option<Arc<Cluster>>,
        admin: PgConnectOptions,
        base_url: &str,
        named: &str,
        prefix: &str,
    ) -> Result<TestPg, TestPgError> {
        let n = NEXT_DB.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
        let db_name = format!("{prefix}_{}_{n}_{nanos}", std::process::id());
        let url = with_database(base_url, &db_name);
        let reaches = url.parse::<PgConnectOptions>().ok().and_then(|o| o.get_database().map(str::to_owned));
        if reaches.as_deref() != Some(db_name.as_str()) {
            return Err(TestPgError::Url(format!(
                "{named} {:?}: names its database in its query, so it cannot reach a fresh database made on its \
                 server; name the database in the path instead (postgres://USER@HOST:5432/DATABASE)",
                crate::redacted(base_url)
            )));
        }
        let create = format!("CREATE DATABASE \"{db_name}\"");
        // On a server that outlives us, marked as ours, so that a later process may drop it if
        // we are killed before we can; a database that cannot be marked is not kept.
        let maker = Maker::of_this_process().filter(|_| cluster.is_none());
        let mark = maker.as_ref().map(|m| format!("COMMENT ON DATABASE \"{db_name}\" IS '{}'", m.marker()));
        let drop = format!("DROP DATABASE IF EXISTS \"{db_name}\"");
        let created = block_on_side_thread("creating a database", admin.clone(), move |mut conn| async move {
            sqlx::query(&create).execute(&mut conn).await?;
            if let Some(mark) = mark {
                if let Err(e) = sqlx::query(&mark).execute(&mut conn).await {
                    let _ = sqlx::query(&drop).execute(&mut conn).await;
                    return Err(e);
                }
            }
            conn.close().await
        });
        if let (Err(TestPgError::Server { what, server, cause }), Some(cluster)) = (&created, &cluster) {
            // Why a server we started fails is in its log (a crash, a full disk, a killed
            // backend), not in the client's error: say its end.
            return Err(TestPgError::Server {
                what: what.clone(),
                server: server.clone(),
                cause: format!("{cause}\n{}", cluster.log_tail(SERVER_LOG_TAIL)),
            });
        }
        created?;
        if let Some(maker) = maker {
            sweep_once(&admin, base_url, maker);
        }
        Ok(TestPg { cluster, admin, db_name, url })
    }

    /// The `postgres://` URL of the fresh database. On a throwaway cluster it carries the
    /// cluster's password: show it only through [`crate::redacted`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The name of the fresh database.
    pub fn database_name(&self) -> &str {
        &self.db_name
    }

    /// Connection options for the fresh database.
    pub fn connect_options(&self) -> PgConnectOptions {
        self.admin.clone().database(&self.db_name)
    }

    /// A connection pool on the fresh database.
    pub async fn pool(&self) -> Result<PgPool, sqlx::Error> {
        PgPoolOptions::new().max_connections(40).connect_with(self.connect_options()).await
    }

    /// Restarts the server under this database (a fault the simulator injects): every open
    /// connection is cut, committed data survives. Only a private cluster can be restarted;
    /// with `DATABASE_URL` this is an error. Other `TestPg`s sharing the cluster see the
    /// restart too: use [`TestPg::new_private_cluster`] for a test that restarts.
    pub fn restart_server(&self) -> Result<(), TestPgError> {
        match &self.cluster {
            Some(c) => c.restart(),
            None => Err(TestPgError::Program {
                program: "restart".into(),
                output: "cannot restart a DATABASE_URL server".into(),
            }),
        }
    }

    /// Crashes the server under this database: SIGKILL to the postmaster, then waits until
    /// every server process is gone. Nothing is shut down cleanly; what was acknowledged
    /// survives only on a [`Durability::Durable`] server. Only a private cluster can be killed.
    pub fn kill_server(&self) -> Result<(), TestPgError> {
        self.private("kill")?.kill()
    }

    /// Stops the server's WAL writer and background writer (SIGSTOP) until the next
    /// [`TestPg::kill_server`], which kills them with the server. Only a private cluster with
    /// [`Durability::LosesAcknowledged`] may be stalled.
    ///
    /// With `synchronous_commit=off` a commit is acknowledged once it is in the server's WAL
    /// buffers, and the WAL writer writes it out a little later: a crash loses what it has not
    /// written yet. Left running, the WAL writer keeps that window to the last part-filled WAL
    /// page, which may hold no acknowledged commit at all when the crash comes, so whether a
    /// crash loses anything is left to timing. Stalled, it writes nothing, and nor does the
    /// background writer (whose buffer writes flush the WAL before them): every commit
    /// acknowledged from here to the crash is lost by it, as on a server whose WAL writer falls
    /// behind. Commits before the stall are for the caller to put on disk (`CHECKPOINT`).
    pub fn stall_wal_writer(&self) -> Result<(), TestPgError> {
        let cluster = self.private("stall the WAL writer of")?;
        if cluster.durability != Durability::LosesAcknowledged {
            return Err(TestPgError::Program {
                program: "stall the WAL writer".into(),
                output: format!(
                    "only a cluster started with Durability::LosesAcknowledged may lose its acknowledged commits, \
                     not {:?}",
                    cluster.durability
                ),
            });
        }
        cluster.stall_writers()
    }

    /// Starts the server again after [`TestPg::kill_server`] (crash recovery).
    pub fn start_server(&self) -> Result<(), TestPgError> {
        self.private("start")?.start_again()
    }

    fn private(&self, what: &str) -> Result<&Cluster, TestPgError> {
        self.cluster.as_deref().ok_or_else(|| TestPgError::Program {
            program: what.into(),
            output: format!("cannot {what} a DATABASE_URL server"),
        })
    }

    /// One connection to the fresh database.
    pub async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        self.connect_options().connect().await
    }
}

impl TestPg {
    /// Drops the database now, on a server that outlives us (`DATABASE_URL`'s, or one given
    /// with [`TestPg::on_server`]), and says whether it could; dropping the `TestPg` does the
    /// same silently. On a private cluster, which goes with its last user, it does nothing.
    pub fn drop_database(mut self) -> Result<(), TestPgError> {
        self.drop_on_server()
    }

    fn drop_on_server(&mut self) -> Result<(), TestPgError> {
        if self.cluster.is_some() || self.db_name.is_empty() {
            return Ok(());
        }
        let name = std::mem::take(&mut self.db_name);
        // `FORCE` ends any connection left (PostgreSQL 13 and later); an older server refuses
        // the option, and gets the plain statement.
        block_on_side_thread("dropping a database", self.admin.clone(), move |mut conn| async move {
            let forced =
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut conn).await;
            if forced.is_err() {
                sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\"")).execute(&mut conn).await?;
            }
            conn.close().await
        })
    }
}

impl Drop for TestPg {
    fn drop(&mut self) {
        // A shared server outlives us: remove what we made.
        let _ = self.drop_on_server();
        // Dropping the last Arc<Cluster> stops and removes the cluster.
    }
}

/// `DATABASE_URL`, the one place it is read: `None` when it is unset, or set but empty (said
/// once on stderr: an empty value names no server, as `DATABASE_URL=` in a `.env` or a CI
/// template whose secret is missing, and is taken as unset). A value that is not UTF-8 is
/// refused, naming the variable: it cannot be a PostgreSQL URL, and ignoring it would run
/// somewhere the user did not ask for.
pub fn database_url_env() -> Result<Option<String>, TestPgError> {
    database_url_from(std::env::var_os("DATABASE_URL"))
}

fn database_url_from(value: Option<std::ffi::OsString>) -> Result<Option<String>, TestPgError> {
    static EMPTY_SAID: std::sync::Once = std::sync::Once::new();
    let Some(value) = value else { return Ok(None) };
    match value.into_string() {
        Ok(url) if url.is_empty() => {
            EMPTY_SAID
                .call_once(|| say(format_args!("ledger-pg: DATABASE_URL is set but empty: ignored, as if unset")));
            Ok(None)
        }
        Ok(url) => Ok(Some(url)),
        Err(_) => Err(TestPgError::Url(
            "DATABASE_URL is not valid UTF-8, so it cannot be a PostgreSQL URL: set it to one, or unset it".to_owned(),
        )),
    }
}

fn shared_cluster(stop: Option<&AtomicBool>) -> Result<Arc<Cluster>, TestPgError> {
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = shared.upgrade() {
        return Ok(c);
    }
    let c = Arc::new(Cluster::start(Durability::Fast, stop)?);
    *shared = Arc::downgrade(&c);
    Ok(c)
}

/// The fixed start of the comment that marks a database as a throwaway of ledger-pg's, which a
/// later process may drop once its maker is gone ([`sweep`]). Never put on any other database.
pub const MARKER: &str = "ledger-pg throwaway database (a later ledger-pg process on the same host drops it once \
                          the process that made it is gone):";

/// Who made a throwaway database, as its marker says: the host (its machine id and host name),
/// the boot (the kernel's boot id), the process id namespace, and the process (its id, and its
/// start time in clock ticks after boot, so that a process given the same id later is not
/// taken for it). A value that could not be read is `-`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Maker {
    /// `/etc/machine-id` (or `/var/lib/dbus/machine-id`).
    pub machine: String,
    /// The host name (`/proc/sys/kernel/hostname`).
    pub host: String,
    /// `/proc/sys/kernel/random/boot_id`.
    pub boot: String,
    /// The process id namespace (`/proc/self/ns/pid`, `pid:[N]`).
    pub pidns: String,
    /// The process id.
    pub pid: u32,
    /// The process's start time, field 22 of `/proc/PID/stat`.
    pub start: u64,
}

/// `text` (a file's contents), trimmed, keeping only what a marker's value may hold (letters,
/// digits, `-._:[]`; anything else becomes `_`), or `-` when there is nothing.
fn marker_value(text: Option<String>) -> String {
    let value: String = text
        .unwrap_or_default()
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-._:[]".contains(c) { c } else { '_' })
        .collect();
    if value.is_empty() {
        "-".to_owned()
    } else {
        value
    }
}

/// The state and the start time of process `pid`, from `/proc/PID/stat`; `Err` when it cannot
/// be read.
fn state_and_start(pid: u32) -> std::io::Result<(String, Option<u64>)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // After the command name's closing parenthesis: the state (field 3), and the start time
    // (field 22) 19 fields on.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("").to_owned();
    let start = fields.nth(18).and_then(|f| f.parse().ok());
    Ok((state, start))
}

impl Maker {
    /// This process, or `None` when what would tell its databases from another host's, boot's
    /// or process's cannot be read (its databases are then not marked, and it drops none).
    pub fn of_this_process() -> Option<Maker> {
        static THIS: std::sync::OnceLock<Option<Maker>> = std::sync::OnceLock::new();
        THIS.get_or_init(|| {
            let read = |path: &str| std::fs::read_to_string(path).ok();
            let maker = Maker {
                machine: marker_value(read("/etc/machine-id").or_else(|| read("/var/lib/dbus/machine-id"))),
                host: marker_value(read("/proc/sys/kernel/hostname")),
                boot: marker_value(read("/proc/sys/kernel/random/boot_id")),
                pidns: marker_value(std::fs::read_link("/proc/self/ns/pid").ok().map(|p| p.display().to_string())),
                pid: std::process::id(),
                start: state_and_start(std::process::id()).ok()?.1?,
            };
            let known = (maker.machine != "-" || maker.host != "-") && maker.boot != "-" && maker.pidns != "-";
            known.then_some(maker)
        })
        .clone()
    }

    /// The comment that marks a database this maker made: [`MARKER`], then its fields.
    pub fn marker(&self) -> String {
        let Maker { machine, host, boot, pidns, pid, start } = self;
        format!("{MARKER} machine={machine} host={host} boot={boot} pidns={pidns} pid={pid} start={start}")
    }

    /// The maker a comment names, if it is a marker with every field.
    pub fn parse(comment: &str) -> Option<Maker> {
        let fields = comment.strip_prefix(MARKER)?;
        let mut found: std::collections::HashMap<&str, &str> = std::collections::HashMap::new();
        for field in fields.split_whitespace() {
            let (key, value) = field.split_once('=')?;
            if found.insert(key, value).is_some() {
                return None;
            }
        }
        let text = |key: &str| found.get(key).map(|v| (*v).to_owned());
        let maker = Maker {
            machine: text("machine")?,
            host: text("host")?,
            boot: text("boot")?,
            pidns: text("pidns")?,
            pid: text("pid")?.parse().ok()?,
            start: text("start")?.parse().ok()?,
        };
        (found.len() == 6).then_some(maker)
    }

    /// Whether `self` ran on the same host, since the same boot, in the same process id
    /// namespace as `other`: where its process id means what it says.
    pub fn same_place(&self, other: &Maker) -> bool {
        self.machine == other.machine && self.host == other.host && self.boot == other.boot && self.pidns == other.pidns
    }

    /// Whether its process is known to be gone (asked on this host): no process has its id, or
    /// the one that has it started at another time, or it is a zombie. When `/proc` does not
    /// show every user's processes (`hidepid`, pid 1 not seen) or its process cannot be read,
    /// it is taken as alive.
    pub fn gone(&self) -> bool {
        if !Path::new("/proc/1").exists() {
            return false;
        }
        match state_and_start(self.pid) {
            Ok((state, start)) => matches!(state.as_str(), "Z" | "X") || start.is_some_and(|s| s != self.start),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => !Path::new(&format!("/proc/{}", self.pid)).exists(),
            Err(_) => false,
        }
    }
}

/// The servers this process has swept (by [`server_of`]): once each is enough, the databases
/// it finds are those of processes that ended before it started.
static SWEPT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// [`sweep`] the server of `admin` (`url`, printed redacted), the first time this process makes
/// a database there. A sweep that fails is said on stderr, and the database is made all the
/// same.
fn sweep_once(admin: &PgConnectOptions, url: &str, us: Maker) {
    let key = server_of(admin);
    {
        let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
        if swept.contains(&key) {
            return;
        }
        swept.push(key);
    }
    if let Err(e) = sweep(admin.clone(), crate::redacted(url), us) {
        say(format_args!(
            "ledger-pg: could not look for databases left on {} by killed processes: {}",
            crate::redacted(url),
            crate::redacted_text(&e.to_string())
        ));
    }
}

/// Drops, on the server of `admin` (`shown`, a URL without its password), the databases that
/// ledger-pg processes of this host killed before they could drop them left there: each
/// database whose comment is a [`MARKER`] naming a maker of the same host, boot and process id
/// namespace as `us` ([`Maker::same_place`]), whose process is gone ([`Maker::gone`]), whose
/// name holds its process id as ours do (`PREFIX_PID_N_NANOS`), which the role may drop, and
/// that nothing is connected to (`pg_stat_activity`; a plain `DROP DATABASE`, without `FORCE`,
/// fails rather than cut a connection made in between). Each drop is said on stderr, one line
/// a database, saying why. A database without the marker (a user's) or from another host (a
/// server shared by several machines' CI) is never touched. One admin connection, bounded as
/// every other ([`ADMIN_CONNECT_TIMEOUT`], [`ADMIN_TIMEOUT`] in all).
fn sweep(admin: PgConnectOptions, shown: String, us: Maker) -> Result<(), TestPgError> {
    block_on_side_thread("looking for databases left by killed processes", admin, move |mut conn| async move {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT d.datname::text, shobj_description(d.oid, 'pg_database') FROM pg_database d \
             WHERE left(shobj_description(d.oid, 'pg_database'), length($1)) = $1 \
               AND d.datname <> current_database() AND pg_has_role(d.datdba, 'MEMBER') \
             ORDER BY 1",
        )
        .bind(MARKER)
        .fetch_all(&mut conn)
        .await?;
        for (name, comment) in rows {
            let Some(maker) = Maker::parse(&comment) else { continue };
            let ours_in_name = name.contains(&format!("_{}_", maker.pid)) && !name.contains('"');
            if !ours_in_name || !maker.same_place(&us) || !maker.gone() {
                continue;
            }
            let connected: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                .bind(&name)
                .fetch_one(&mut conn)
                .await?;
            if connected > 0 {
                continue;
            }
            match sqlx::query(&format!("DROP DATABASE \"{name}\"")).execute(&mut conn).await {
                Ok(_) => say(format_args!(
                    "ledger-pg: dropped the database {name} on {shown}: made by process {} of this host since its \
                     last boot, which is gone (killed before it could drop it), and nothing is connected to it",
                    maker.pid
                )),
                // Dropped by another process sweeping at the same time.
                Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {}
                Err(e) => say(format_args!(
                    "ledger-pg: could not drop the database {name} on {shown}, left by process {} which is gone: {}",
                    maker.pid,
                    crate::redacted_text(&e.to_string())
                )),
            }
        }
        conn.close().await
    })
}

/// A time limit on a test that waits on a server: if the guard is still alive after `limit`,
/// the watchdog prints what the test was waiting for and ends the test process with exit
/// status 1. A test binary that hangs fails instead, in bounded time, saying where.
#[derive(Debug)]
pub struct TimeLimit {
    done: Option<std::sync::mpsc::Sender<()>>,
}

impl TimeLimit {
    /// Starts the watchdog for `what` (the test's name and what it runs).
    pub fn new(what: impl Into<String>, limit: std::time::Duration) -> TimeLimit {
        let what = what.into();
        let (done, wait) = std::sync::mpsc::channel::<()>();
        std::thread::spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = wait.recv_timeout(limit) {
                say(format_args!(
                    "TIME LIMIT: {what} is still running after {} s: it waits on the server or on its \
                     own tasks (see the last `ledger-sim:` lines above); ending the test process",
                    limit.as_secs()
                ));
                std::process::exit(1);
            }
        });
        TimeLimit { done: Some(done) }
    }
}

impl Drop for TimeLimit {
    fn drop(&mut self) {
        if let Some(done) = self.done.take() {
            let _ = done.send(());
        }
    }
}

/// What a throwaway server promises about acknowledged commits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// `fsync=off`, `synchronous_commit=off`, `full_page_writes=off`: fast, and a crash of the
    /// server may lose commits it acknowledged. For everything but crash tests.
    Fast,
    /// `fsync=on`, `synchronous_commit=on`, `full_page_writes=on`: what was acknowledged
    /// survives a crash of the server (and of the machine, as far as the disk keeps its word).
    Durable,
    /// `synchronous_commit=off` alone: acknowledged commits may be lost even when only the
    /// server process dies. For tests that show the durability check catches that; after
    /// [`TestPg::stall_wal_writer`] a crash loses every commit acknowledged since the stall.
    LosesAcknowledged,
}

impl Durability {
    fn settings(self) -> &'static str {
        match self {
            Durability::Fast => "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            Durability::Durable => "-c fsync=on -c synchronous_commit=on -c full_page_writes=on",
            Durability::LosesAcknowledged => {
                // The WAL writer waits 10 s and 1 GB, and the WAL buffers hold 64 MB, so commits
                // acknowledged since the run's checkpoint stay in shared memory, which a crash
                // loses (with the default 1 MB flush threshold the loss was left to timing).
                "-c fsync=on -c synchronous_commit=off -c full_page_writes=on -c wal_writer_delay=10000 \
                 -c wal_writer_flush_after=1GB -c wal_buffers=64MB"
            }
        }
    }
}

/// Replaces the database part of a `postgres://` URL (its query, such as `?sslmode=...`, kept).
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// The server of `opts` as a URL without a password, for messages.
fn server_of(opts: &PgConnectOptions) -> String {
    format!(
        "postgres://{}@{}:{}/{}",
        opts.get_username(),
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or("")
    )
}

/// Runs one admin connection's work (`what`) on a separate thread with its own runtime, so
/// that the caller may be synchronous or already inside a tokio runtime; at most
/// [`ADMIN_CONNECT_TIMEOUT`] to connect and [`ADMIN_TIMEOUT`] in all, after which it fails
/// naming the server.
fn block_on_side_thread<F, Fut>(what: &'static str, opts: PgConnectOptions, work: F) -> Result<(), TestPgError>
where
    F: FnOnce(PgConnection) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(), sqlx::Error>>,
{
    let server = server_of(&opts);
    let failed = move |cause: String| TestPgError::Server { what: what.to_owned(), server, cause };
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io_err("building a tokio runtime"))?;
        let work = async move {
            match tokio::time::timeout(ADMIN_CONNECT_TIMEOUT, opts.connect()).await {
                Err(_) => Err(format!("no answer within {} s to connect", ADMIN_CONNECT_TIMEOUT.as_secs())),
                Ok(Err(e)) => Err(e.to_string()),
                Ok(Ok(conn)) => work(conn).await.map_err(|e| e.to_string()),
            }
        };
        match rt.block_on(async move { tokio::time::timeout(ADMIN_TIMEOUT, work).await }) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(cause)) => Err(failed(cause)),
            Err(_) => Err(failed(format!("no answer within {} s", ADMIN_TIMEOUT.as_secs()))),
        }
    })
    .join()
    .unwrap_or_else(|_| panic!("the admin-connection thread panicked"))
}

/// Says `line` on stderr. A closed stderr (`2>&1 | head`) is not worth a panic that would stop
/// the work: a throwaway server half started, a test's result lost.
fn say(line: std::fmt::Arguments<'_>) {
    let _ = writeln!(std::io::stderr(), "{}", ledger_harness::text::shown(&line.to_string()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bounded_program_is_killed_with_its_group_at_its_bound() {
        let pid_file = std::env::temp_dir().join(format!("ledger-pg-bounded-{}", std::process::id()));
        let script = format!("sleep 30 & echo $! > '{}'; sleep 30", pid_file.display());
        let started = Instant::now();
        let e = run_as_owner_bounded(
            false,
            Path::new("sh"),
            &["-c", &script],
            "creating the throwaway cluster in /x/data",
            Duration::from_secs(1),
            Duration::from_millis(200),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
        assert!(e.starts_with("sh -c sleep 30 &"), "{e}");
        assert!(
            e.ends_with("sh was still creating the throwaway cluster in /x/data after 1 s, its bound; it was killed"),
            "{e}"
        );
        // The program's own child went with it.
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let _ = std::fs::remove_file(&pid_file);
        let gone = (0..100).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            std::thread::sleep(Duration::from_millis(20));
            matches!(state, None | Some("Z" | "X"))
        });
        assert!(gone, "the background sleep {pid} outlived its group");
    }

    /// A stop set while the program runs kills it with its group at once, long before its
    /// bound, and is the caller's stop, not a failure of the program.
    #[test]
    fn a_bounded_program_is_killed_with_its_group_when_stopped() {
        let pid_file = std::env::temp_dir().join(format!("ledger-pg-stopped-{}", std::process::id()));
        let script = format!("sleep 60 & echo $! > '{}'; sleep 60", pid_file.display());
        let stop = Arc::new(AtomicBool::new(false));
        let setter = {
            let (stop, pid_file) = (Arc::clone(&stop), pid_file.clone());
            std::thread::spawn(move || {
                // Set once the program has started its own child, at most 30 s on.
                let started = Instant::now();
                let written = || std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n'));
                while !written() && started.elapsed() < Duration::from_secs(30) {
                    std::thread::sleep(Duration::from_millis(10));
                }
                stop.store(true, Ordering::Relaxed);
            })
        };
        let started = Instant::now();
        let e = run_as_owner_bounded(
            false,
            Path::new("sh"),
            &["-c", &script],
            "creating the throwaway cluster in /x/data",
            Duration::from_secs(120),
            Duration::from_secs(120),
            Some(&stop),
        )
        .unwrap_err();
        setter.join().unwrap();
        assert!(started.elapsed() < Duration::from_secs(40), "{:?}", started.elapsed());
        assert!(e.is_stopped(), "{e}");
        assert_eq!(
            e.to_string(),
            "stopped while creating the throwaway cluster in /x/data (sh was killed): no server was left running, \
             and the cluster's directory is removed"
        );
        let pid = std::fs::read_to_string(&pid_file).unwrap();
        let _ = std::fs::remove_file(&pid_file);
        let gone = (0..100).any(|_| {
            let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            std::thread::sleep(Duration::from_millis(20));
            matches!(state, None | Some("Z" | "X"))
        });
        assert!(gone, "the background sleep {pid} outlived its group");
        // Set before the program would start: it is not left running either.
        let e = run_as_owner_bounded(
            false,
            Path::new("sleep"),
            &["60"],
            "sleeping",
            Duration::from_secs(120),
            Duration::from_secs(120),
            Some(&stop),
        )
        .unwrap_err();
        assert!(e.is_stopped(), "{e}");
    }

    #[test]
    fn a_bounded_program_that_ends_in_time_is_run_as_before() {
        let bound = Duration::from_secs(30);
        let out = run_as_owner_bounded(false, Path::new("echo"), &["made"], "echoing", bound, bound, None).unwrap();
        assert_eq!(out.stdout, b"made\n");
        let e =
            run_as_owner_bounded(false, Path::new("sh"), &["-c", "echo no >&2; exit 3"], "failing", bound, bound, None)
                .unwrap_err()
                .to_string();
        assert_eq!(e, "sh -c echo no >&2; exit 3 failed: no\n");
        let e =
            run_as_owner_bounded(false, Path::new("/no/such/initdb"), &[], "missing", bound, bound, None).unwrap_err();
        assert!(e.to_string().starts_with("running /no/such/initdb: "), "{e}");
    }

    #[test]
    fn database_url_is_refused_when_not_utf8_and_ignored_when_empty() {
        use std::os::unix::ffi::OsStringExt;
        let bad = std::ffi::OsString::from_vec(b"postgres://u@h/caf\xe9".to_vec());
        let e = database_url_from(Some(bad)).unwrap_err().to_string();
        assert!(e.starts_with("DATABASE_URL is not valid UTF-8"), "{e}");
        assert_eq!(database_url_from(Some("".into())).unwrap(), None);
        assert_eq!(database_url_from(None).unwrap(), None);
        assert_eq!(database_url_from(Some("postgres://u@h/db".into())).unwrap().as_deref(), Some("postgres://u@h/db"));
    }

    #[test]
    fn pg_bin_is_the_only_place_looked_at_when_set() {
        use std::os::unix::ffi::OsStringExt;
        let root = std::env::temp_dir().join(format!("ledger-pg-find-{}", std::process::id()));
        let (lib, pg_bin, on_path) = (root.join("lib"), root.join("pg bin"), root.join("path"));
        for d in [lib.join("9.6/bin"), lib.join("16/bin"), pg_bin.clone(), on_path.clone()] {
            std::fs::create_dir_all(&d).unwrap();
        }
        for f in [lib.join("9.6/bin/initdb"), lib.join("16/bin/initdb"), on_path.join("pg_ctl"), pg_bin.join("initdb")]
        {
            std::fs::write(f, "").unwrap();
        }
        let path = Some(std::env::join_paths([Path::new("/no/such/dir"), &on_path]).unwrap());
        // Unset or empty: the newest version under lib, then PATH.
        for unset in [None, Some("".into())] {
            assert_eq!(
                find_program_in("initdb", unset.clone(), path.clone(), &lib).unwrap(),
                lib.join("16/bin/initdb")
            );
            assert_eq!(find_program_in("pg_ctl", unset, path.clone(), &lib).unwrap(), on_path.join("pg_ctl"));
        }
        // Set: PG_BIN alone, a missing program an error naming it (no fall back to lib or PATH).
        let set = Some(pg_bin.clone().into_os_string());
        assert_eq!(find_program_in("initdb", set.clone(), path.clone(), &lib).unwrap(), pg_bin.join("initdb"));
        let e = find_program_in("pg_ctl", set, path.clone(), &lib).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("PG_BIN is set to {:?}, which holds no PostgreSQL program pg_ctl", pg_bin)),
            "{e}"
        );
        let e = find_program_in("initdb", Some("/nonexistent".into()), path.clone(), &lib).unwrap_err().to_string();
        assert!(e.starts_with("PG_BIN is set to \"/nonexistent\", which holds no"), "{e}");
        // Not UTF-8: a path like any other, named in the error.
        let odd = std::ffi::OsString::from_vec(b"/no/caf\xe9".to_vec());
        let e = find_program_in("initdb", Some(odd), path.clone(), &lib).unwrap_err().to_string();
        assert!(e.starts_with("PG_BIN is set to \"/no/caf\\xE9\""), "{e}");
        let e = find_program_in("postgres", None, path, &lib).unwrap_err().to_string();
        assert!(e.contains("on PATH (set PG_BIN"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    /// A marker names its maker, and only a marker with every field, once each, is read as one;
    /// this process is alive, a child that ended is gone, and so is one whose id another
    /// process now has (a start time of its own).
    #[test]
    fn a_marker_names_its_maker_and_a_gone_maker_is_told_from_a_live_one() {
        let us = Maker::of_this_process().expect("this host's identity is readable");
        assert_eq!(us.pid, std::process::id());
        let marker = us.marker();
        assert!(marker.starts_with(MARKER) && marker.ends_with(&format!(" pid={} start={}", us.pid, us.start)));
        assert_eq!(Maker::parse(&marker), Some(us.clone()));
        assert!(us.same_place(&us) && !us.gone(), "{us:?}");
        for bad in [
            "a user's comment".to_owned(),
            marker.replace(" start=", " begun="),
            format!("{marker} pid=1"),
            format!("{marker} note=x"),
            marker.replace(&format!(" pid={}", us.pid), " pid=x"),
            marker.replacen(MARKER, "ledger-pg throwaway database:", 1),
        ] {
            assert_eq!(Maker::parse(&bad), None, "{bad}");
        }
        let elsewhere = Maker { host: "ci-2".into(), ..us.clone() };
        assert!(!us.same_place(&elsewhere));
        let rebooted = Maker { boot: "00000000-0000-0000-0000-000000000000".into(), ..us.clone() };
        assert!(!us.same_place(&rebooted));

        let mut child = Command::new("true").spawn().expect("true runs");
        let pid = child.id();
        let start = state_and_start(pid).ok().and_then(|(_, start)| start);
        child.wait().expect("true ends");
        let ended = Maker { pid, start: start.unwrap_or(0), ..us.clone() };
        assert!(ended.gone(), "{ended:?}");
        let reused = Maker { start: us.start + 1, ..us.clone() };
        assert!(reused.gone(), "another process with its id: {reused:?}");
        assert_eq!(marker_value(Some(" 3d12:[x]\n".into())), "3d12:[x]");
        assert_eq!(marker_value(Some("a b'c".into())), "a_b_c");
        assert_eq!(marker_value(None), "-");
    }

    /// A throwaway server that turns a new database away is quoted: the end of its log, where
    /// a crash or a full disk would say so, and the free space beside it. Needs PostgreSQL, as
    /// the tests under tests/postgres do.
    #[test]
    fn a_database_a_throwaway_server_cannot_make_quotes_its_log() {
        let cluster = Arc::new(Cluster::start(Durability::Fast, None).expect("a throwaway PostgreSQL must start"));
        cluster.kill().expect("SIGKILL to the postmaster");
        let err = TestPg::on_cluster(Arc::clone(&cluster)).expect_err("a killed server makes no database").to_string();
        assert!(err.starts_with("creating a database on postgres://postgres@127.0.0.1:"), "{err}");
        assert!(!err.contains(&cluster.password), "{err}");
        assert!(err.contains("the end of the server's log ("), "{err}");
        assert!(err.contains("MB free there):\n"), "{err}");
        assert!(err.contains("database system is ready to accept connections"), "{err}");
    }

    #[test]
    fn database_is_replaced_in_urls() {
        assert_eq!(with_database("postgres://u@h:1/postgres", "x"), "postgres://u@h:1/x");
        assert_eq!(with_database("postgres://u@h:1", "x"), "postgres://u@h:1/x");
        assert_eq!(with_database("postgres://u@h:1/db?sslmode=disable", "x"), "postgres://u@h:1/x?sslmode=disable");
    }
}
