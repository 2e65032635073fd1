//! A throwaway cluster is no other local user's: its directory is its owner's alone, every
//! connection (socket or loopback) needs the password made for it, and its server holds none of
//! the environment of the process that made it (root's `PGPASSWORD`, a CI job's keys): the same
//! for `TestPg`'s clusters and `scripts/pg-throwaway.sh`'s. Before, both trusted every local
//! connection as the superuser (`COPY ... TO PROGRAM` ran anything as `postgres`), the directory
//! and the socket were open to all, and the server had the whole environment of its maker. Needs
//! PostgreSQL and fails (never skips) when a throwaway cluster cannot start.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use ledger_pg::testpg::TestPg;
use sqlx::postgres::PgConnectOptions;

/// Set in the environment of a copy of this test binary that runs one test's child part.
const CHILD: &str = "LEDGER_PG_TEST_PRIVATE_CHILD";

/// What the parent sets in its environment, which no server it starts may have.
const CANARY: &str = "LEDGER_SECRET_CANARY";
const CANARY_VALUE: &str = "canary-AKIAIOSFODNN7EXAMPLE";

/// Connects with `opts` and runs `sql`, its first column as text; the error's text otherwise.
fn first(opts: PgConnectOptions, sql: &str) -> Result<String, String> {
    let sql = sql.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let connecting = sqlx::PgConnection::connect_with(&opts);
            let mut conn = match tokio::time::timeout(std::time::Duration::from_secs(30), connecting).await {
                Ok(Ok(conn)) => conn,
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("no answer within 30 s".to_owned()),
            };
            let value: String = sqlx::query_scalar(&sql).fetch_one(&mut conn).await.map_err(|e| e.to_string())?;
            let _ = conn.close().await;
            Ok(value)
        })
    })
    .join()
    .expect("the connection's thread")
}

/// Asserts that a connection as `postgres` without a password, to the loopback port `port` and
/// to the socket in `socket_dir`, is refused for want of the password.
fn assert_no_password_is_refused(port: u16, socket_dir: &Path) {
    let bare = PgConnectOptions::new().username("postgres").database("postgres").port(port);
    for (how, opts) in [("loopback", bare.clone().host("127.0.0.1")), ("socket", bare.socket(socket_dir))] {
        let e = first(opts, "SELECT current_user::text").expect_err(&format!("a {how} connection without password"));
        assert!(e.contains("password"), "the {how} connection is refused for want of the password: {e}");
    }
}

/// Asserts that `dir` and the server's socket in it are its owner's alone.
fn assert_private(dir: &Path, port: u16) {
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions();
    assert_eq!(mode(dir).mode() & 0o777, 0o700, "the cluster's directory {}", dir.display());
    let socket = dir.join(format!(".s.PGSQL.{port}"));
    assert_eq!(mode(&socket).mode() & 0o777, 0o700, "the server's socket {}", socket.display());
}

/// The variables of process `pid`'s environment (`NAME=VALUE`).
fn environment_of(pid: u32) -> Vec<String> {
    let bytes = std::fs::read(format!("/proc/{pid}/environ")).expect("the server's environment is readable");
    bytes.split(|&b| b == 0).filter(|v| !v.is_empty()).map(|v| String::from_utf8_lossy(v).into_owned()).collect()
}

/// Asserts that the postmaster `pid` has none of our environment but what it needs.
fn assert_clean_environment(pid: u32) {
    let env = environment_of(pid);
    assert!(env.iter().any(|v| v.starts_with("PATH=")), "the server's environment is read: {env:?}");
    assert!(
        !env.iter().any(|v| v.starts_with(&format!("{CANARY}=")) || v.contains(CANARY_VALUE)),
        "the server has our {CANARY}: {env:?}"
    );
}

/// The postmaster's process id, from its data directory's `postmaster.pid`.
fn postmaster_of(data: &Path) -> u32 {
    let text = std::fs::read_to_string(data.join("postmaster.pid")).expect("postmaster.pid");
    text.lines().next().and_then(|l| l.trim().parse().ok()).expect("a process id on its first line")
}

/// The password carried by a `postgres://user:password@...` URL.
fn password_in(url: &str) -> &str {
    let authority = url.strip_prefix("postgres://").expect("a postgres:// URL");
    let userinfo = &authority[..authority.rfind('@').expect("a user")];
    userinfo.split_once(':').expect("a password in the URL").1
}

#[test]
fn a_throwaway_cluster_admits_only_who_has_its_password_and_has_none_of_our_environment() {
    let name = "private_cluster::a_throwaway_cluster_admits_only_who_has_its_password_and_has_none_of_our_environment";
    if std::env::var_os(CHILD).is_none() {
        // The server must be started by a process that has the canary in its environment: this
        // test runs again in one (setting it here would race the tests running beside it).
        let _limit = ledger_pg::testpg::TimeLimit::new(name, std::time::Duration::from_secs(300));
        let out = Command::new(std::env::current_exe().expect("this test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD, "1")
            .env(CANARY, CANARY_VALUE)
            .env_remove("DATABASE_URL")
            .output()
            .expect("the test binary runs again");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "the child part failed:\n{text}");
        return;
    }
    assert_eq!(std::env::var(CANARY).as_deref(), Ok(CANARY_VALUE));
    let pg = TestPg::new_private_cluster().expect("a throwaway PostgreSQL must start");
    let port = pg.connect_options().get_port();
    let socket_dir = PathBuf::from(first(pg.connect_options(), "SHOW unix_socket_directories").expect("connected"));
    let data = PathBuf::from(first(pg.connect_options(), "SHOW data_directory").expect("connected"));
    assert_eq!(data.parent(), Some(socket_dir.as_path()), "the socket is in the cluster's directory");
    assert_no_password_is_refused(port, &socket_dir);
    assert_private(&socket_dir, port);
    assert_clean_environment(postmaster_of(&data));
    let password = password_in(pg.url());
    assert!(password.len() >= 32, "a long random password: {}", pg.url().len());
    assert!(!ledger_pg::redacted(pg.url()).contains(password), "the URL is shown without it");
    assert!(!socket_dir.join("pwfile").exists(), "the password's file is removed once initdb has read it");
    // A restart starts the server again: with as little.
    pg.restart_server().expect("a restart");
    assert_clean_environment(postmaster_of(&data));
    assert_eq!(first(pg.connect_options(), "SELECT current_user::text").as_deref(), Ok("postgres"));
}

/// `scripts/pg-throwaway.sh`.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/pg-throwaway.sh")
}

/// A cluster of `scripts/pg-throwaway.sh`, stopped (`stop`) when dropped.
struct ScriptCluster {
    dir: PathBuf,
    url: String,
}

impl ScriptCluster {
    /// `pg-throwaway.sh start`, with the canary in its environment.
    fn start() -> ScriptCluster {
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .env(CANARY, CANARY_VALUE)
            .env_remove("DATABASE_URL")
            .env_remove("PG_THROWAWAY_DIR")
            .output()
            .expect("bash runs the script");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let dir = stderr.split_once("export PG_THROWAWAY_DIR=").map(|(_, d)| PathBuf::from(d.trim()));
        let dir = dir.unwrap_or_else(|| panic!("start names its directory:\n{stdout}{stderr}"));
        // Stopped however this ends.
        let cluster = ScriptCluster { dir, url: stdout.trim().to_owned() };
        assert!(out.status.success(), "pg-throwaway.sh start failed:\n{stdout}{stderr}");
        cluster
    }
}

impl Drop for ScriptCluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").env("PG_THROWAWAY_DIR", &self.dir).status();
    }
}

#[test]
fn the_scripts_throwaway_cluster_admits_only_who_has_its_password_and_has_none_of_our_environment() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(
            module_path!(),
            "::the_scripts_throwaway_cluster_admits_only_who_has_its_password_and_has_none_of_our_environment"
        ),
        std::time::Duration::from_secs(300),
    );
    let cluster = ScriptCluster::start();
    let opts: PgConnectOptions = cluster.url.parse().expect("the URL printed parses");
    assert_eq!(first(opts.clone(), "SELECT current_user::text").as_deref(), Ok("postgres"), "the URL printed works");
    let port = opts.get_port();
    assert_no_password_is_refused(port, &cluster.dir);
    assert_private(&cluster.dir, port);
    assert_clean_environment(postmaster_of(&cluster.dir.join("data")));
    let password = password_in(&cluster.url);
    assert!(password.len() >= 32, "a long random password");
    let url_file = cluster.dir.join("url");
    let kept = std::fs::read_to_string(&url_file).expect("the URL is kept");
    assert_eq!(kept.trim(), cluster.url);
    let mode = std::fs::metadata(&url_file).expect("url").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the file holding the password is readable by its owner alone");
    assert!(!cluster.dir.join("pwfile").exists(), "the password's file is removed once initdb has read it");
}

/// The real `initdb`: where ledger-pg looks for it (`PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else `PATH`).
fn real_initdb() -> PathBuf {
    if let Some(dir) = std::env::var_os("PG_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("initdb");
    }
    let mut versions: Vec<(u64, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.flatten()
                .filter_map(|e| Some((e.file_name().to_str()?.split('.').next()?.parse().ok()?, e.path())))
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    if let Some((_, v)) = versions.pop() {
        return v.join("bin/initdb");
    }
    let out = Command::new("sh").args(["-c", "command -v initdb"]).output().expect("sh");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A planted link's target: a file of ours in a directory of ours that the cluster owner may not
/// enter, and what it holds, which no write through a link may change.
struct Victim {
    dir: PathBuf,
    file: PathBuf,
}

const VICTIM_TEXT: &str = "the victim's own text\n";

impl Victim {
    fn new(name: &str) -> Victim {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = std::env::temp_dir().join(format!("ledger-pg-victim-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o700).create(&dir).expect("the victim's directory");
        let file = dir.join("victim");
        std::fs::write(&file, VICTIM_TEXT).expect("the victim");
        Victim { dir, file }
    }

    fn assert_untouched(&self) {
        let now = std::fs::read_to_string(&self.file).expect("the victim is still there");
        assert_eq!(
            now,
            VICTIM_TEXT,
            "a write as root followed a link the cluster owner planted to {}",
            self.file.display()
        );
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A directory for `PG_BIN` whose `initdb` runs the real one (as the cluster owner, as ours
/// does) and then, as a hostile cluster owner would, replaces each of `planted` (paths in the
/// cluster's directory, the parent of initdb's `-D`) with a link to `victim`; its `pg_ctl` is
/// the real one. Removed when dropped.
struct PlantingBin {
    dir: PathBuf,
}

impl PlantingBin {
    fn new(name: &str, planted: &[&str], victim: &Path) -> PlantingBin {
        use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
        let dir = std::env::temp_dir().join(format!("ledger-pg-planting-bin-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::DirBuilder::new().mode(0o755).create(&dir).expect("the fake PG_BIN");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("its mode");
        let real = real_initdb();
        let quote = |p: &Path| format!("'{}'", p.display().to_string().replace('\'', r"'\''"));
        let script = format!(
            "#!/bin/sh\n{real} \"$@\" || exit $?\nprev=\nfor a in \"$@\"; do\n  \
             if [ \"$prev\" = -D ]; then data=$a; fi\n  prev=$a\ndone\ncluster=$(dirname \"$data\")\n\
             for f in {planted}; do rm -f \"$cluster/$f\"; ln -s {victim} \"$cluster/$f\"; done\n",
            real = quote(&real),
            planted = planted.join(" "),
            victim = quote(victim),
        );
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(dir.join("initdb"))
            .expect("the fake initdb");
        std::io::Write::write_all(&mut file, script.as_bytes()).expect("written");
        drop(file);
        let pg_ctl = real.with_file_name("pg_ctl");
        std::os::unix::fs::symlink(&pg_ctl, dir.join("pg_ctl")).expect("pg_ctl");
        PlantingBin { dir }
    }
}

impl Drop for PlantingBin {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Root never writes through a link the cluster owner planted in the cluster's directory: a
/// hostile `postgres` (its `initdb` here) that replaces `data/pg_hba.conf` with a link to a
/// file of root's gets a failed start, and root's file is untouched. Before, root wrote
/// pg_hba.conf itself (`std::fs::write`, which follows a link) after initdb had run as
/// `postgres`, and overwrote it.
#[test]
fn a_throwaway_cluster_never_writes_as_root_through_a_link_its_owner_planted() {
    let name = "private_cluster::a_throwaway_cluster_never_writes_as_root_through_a_link_its_owner_planted";
    if std::env::var_os(CHILD).is_none() {
        // PG_BIN is read when the cluster is made: set in a process of its own.
        let _limit = ledger_pg::testpg::TimeLimit::new(name, std::time::Duration::from_secs(300));
        let victim = Victim::new("testpg");
        let bin = PlantingBin::new("testpg", &["data/pg_hba.conf"], &victim.file);
        let out = Command::new(std::env::current_exe().expect("this test binary"))
            .args([name, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CHILD, &victim.file)
            .env("PG_BIN", &bin.dir)
            .env_remove("DATABASE_URL")
            .output()
            .expect("the test binary runs again");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "the child part failed:\n{text}");
        victim.assert_untouched();
        return;
    }
    let victim = PathBuf::from(std::env::var_os(CHILD).expect("the victim"));
    let made = TestPg::new_private_cluster();
    let now = std::fs::read_to_string(&victim).expect("the victim is still there");
    assert_eq!(now, VICTIM_TEXT, "written through the link planted at pg_hba.conf (the cluster: {made:?})");
    let e = made.expect_err("a cluster whose pg_hba.conf cannot be written does not start").to_string();
    assert!(e.contains("pg_hba.conf"), "the error names the file: {e}");
}

/// The same for `scripts/pg-throwaway.sh`: a hostile `postgres` that replaces the files root
/// keeps in the cluster's directory (`port`, `url`, `options`) with links to a file of root's
/// while initdb runs never gets root to write through them; the cluster starts, its URL printed
/// as made. Before, root wrote `port`, `url` and `options` there after initdb had run as
/// `postgres`, and overwrote the file. And `url` then refuses to read back a file that is not
/// the one `start` wrote.
#[test]
fn the_scripts_cluster_never_writes_as_root_through_a_link_its_owner_planted() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::the_scripts_cluster_never_writes_as_root_through_a_link_its_owner_planted"),
        std::time::Duration::from_secs(300),
    );
    let victim = Victim::new("script");
    let bin = PlantingBin::new("script", &["port", "url", "options"], &victim.file);
    let out = Command::new("bash")
        .arg(script())
        .arg("start")
        .env("PG_BIN", &bin.dir)
        .env_remove("DATABASE_URL")
        .env_remove("PG_THROWAWAY_DIR")
        .output()
        .expect("bash runs the script");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let dir = stderr.split_once("export PG_THROWAWAY_DIR=").map(|(_, d)| PathBuf::from(d.trim()));
    // Stopped however this ends.
    let cluster = dir.map(|dir| ScriptCluster { dir, url: stdout.trim().to_owned() });
    victim.assert_untouched();
    assert!(out.status.success(), "pg-throwaway.sh start failed:\n{stdout}{stderr}");
    let cluster = cluster.unwrap_or_else(|| panic!("start names its directory:\n{stderr}"));
    let opts: PgConnectOptions = cluster.url.parse().expect("the URL printed parses");
    assert_eq!(first(opts, "SELECT current_user::text").as_deref(), Ok("postgres"), "the URL printed works");
    let url = Command::new("bash")
        .arg(script())
        .arg("url")
        .env("PG_THROWAWAY_DIR", &cluster.dir)
        .env_remove("DATABASE_URL")
        .output()
        .expect("bash runs the script");
    let said = format!("{}{}", String::from_utf8_lossy(&url.stdout), String::from_utf8_lossy(&url.stderr));
    assert!(!url.status.success() && !said.contains(VICTIM_TEXT.trim()), "a planted url is not read back: {said}");
    victim.assert_untouched();
}
