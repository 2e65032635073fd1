//! `TestPg::on_server`: a fresh database on a server the user gave (`DATABASE_URL`,
//! `--database-url`), made and dropped there, with clear errors for a URL that cannot do it;
//! and what the private clusters' durabilities promise across a crash.

use ledger_pg::testpg::{Durability, TestPg};

/// The password carried by a `postgres://user:password@...` URL (a throwaway cluster's).
fn password_in(url: &str) -> &str {
    let authority = url.strip_prefix("postgres://").expect("a postgres:// URL");
    let userinfo = &authority[..authority.rfind('@').expect("a user")];
    userinfo.split_once(':').expect("a password in the URL").1
}

/// Whether the database `name` exists on the server of `pg`.
fn exists(pg: &TestPg, name: &str) -> bool {
    let (opts, name) = (pg.connect_options(), name.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&opts).await.expect("a connection");
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
                .bind(&name)
                .fetch_one(&mut conn)
                .await
                .expect("the count");
            conn.close().await.expect("close");
            n == 1
        })
    })
    .join()
    .expect("the query thread")
}

#[test]
fn a_fresh_database_on_a_given_server_is_made_and_dropped_there() {
    let server = TestPg::new().expect("a throwaway PostgreSQL must start");
    let db = TestPg::on_server("--database-url", server.url(), "ledger_confirm").expect("a fresh database");
    let name = db.database_name().to_owned();
    assert!(name.starts_with("ledger_confirm_"), "{name}");
    assert!(db.url().ends_with(&format!("/{name}")), "{}", db.url());
    assert!(exists(&server, &name), "{name} is made on the given server");
    db.drop_database().expect("the database is dropped");
    assert!(!exists(&server, &name), "{name} is gone");

    // Dropped with its TestPg as well.
    let db = TestPg::on_server("--database-url", server.url(), "ledger_confirm").expect("a fresh database");
    let name = db.database_name().to_owned();
    drop(db);
    assert!(!exists(&server, &name), "{name} is gone");
}

#[test]
fn a_url_that_cannot_reach_a_fresh_database_is_refused_saying_why() {
    let server = TestPg::new().expect("a throwaway PostgreSQL must start");
    // The database named in the query wins over the path: a fresh one would never be reached.
    // The throwaway cluster's URL carries its password, which is never shown.
    let url = format!("{}?dbname=postgres", server.url());
    let password = password_in(server.url());
    let e = TestPg::on_server("--database-url", &url, "ledger_confirm").unwrap_err().to_string();
    assert!(e.starts_with("--database-url ") && e.contains("names its database in its query"), "{e}");
    assert!(!e.contains(password), "the password is never shown: {e}");

    let e = TestPg::on_server("DATABASE_URL", "gar:bage//x", "ledger_test").unwrap_err().to_string();
    assert!(e.starts_with("DATABASE_URL ") && e.contains("not a PostgreSQL URL"), "{e}");
}

/// Runs `statements` on a connection to `pg`'s database, one transaction each (each one
/// acknowledged before the next is sent), and then `SELECT count(*) FROM acked` if it exists.
fn exec(pg: &TestPg, statements: Vec<String>) -> Option<i64> {
    let opts = pg.connect_options();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&opts).await.expect("a connection");
            for sql in &statements {
                sqlx::query(sql).execute(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            }
            let n = sqlx::query_scalar("SELECT count(*) FROM acked").fetch_one(&mut conn).await.ok();
            let _ = conn.close().await;
            n
        })
    })
    .join()
    .expect("the query thread")
}

/// An empty table `acked`, on disk (a checkpoint).
fn create_acked(pg: &TestPg) {
    exec(pg, vec!["CREATE TABLE acked (n int)".into(), "CHECKPOINT".into()]);
}

/// 100 single-row commits into `acked`, each acknowledged; the rows then seen.
fn insert_100(pg: &TestPg) -> Option<i64> {
    exec(pg, (0..100).map(|n| format!("INSERT INTO acked VALUES ({n})")).collect())
}

fn rows(pg: &TestPg) -> Option<i64> {
    exec(pg, Vec::new())
}

/// The crash tests' two servers, shown on 100 acknowledged commits: a durable one keeps them
/// all through a SIGKILL of its postmaster; one that loses acknowledged commits, with its WAL
/// writer stalled, loses every one of them, every time (not only when the crash falls between
/// the WAL writer's rounds). A stall is refused on any other server, and a restart (not a
/// crash) of a stalled server lets its writers go on and loses nothing.
#[test]
fn a_crash_loses_acknowledged_commits_only_where_the_settings_allow_and_then_all_of_them() {
    // Three servers started, two crashed and one restarted: a few seconds each, never a hang.
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(
            module_path!(),
            "::a_crash_loses_acknowledged_commits_only_where_the_settings_allow_and_then_all_of_them"
        ),
        std::time::Duration::from_secs(300),
    );
    let durable = TestPg::new_private_cluster_with(Durability::Durable).expect("a throwaway PostgreSQL must start");
    let e = durable.stall_wal_writer().unwrap_err().to_string();
    assert!(e.contains("LosesAcknowledged") && e.contains("Durable"), "{e}");
    create_acked(&durable);
    assert_eq!(insert_100(&durable), Some(100));
    durable.kill_server().expect("SIGKILL to the postmaster");
    durable.start_server().expect("crash recovery");
    assert_eq!(rows(&durable), Some(100), "a durable server keeps what it acknowledged");
    drop(durable);

    let loose =
        TestPg::new_private_cluster_with(Durability::LosesAcknowledged).expect("a throwaway PostgreSQL must start");
    create_acked(&loose);
    loose.stall_wal_writer().expect("the WAL writer and the background writer stop");
    assert_eq!(insert_100(&loose), Some(100), "acknowledged and visible before the crash");
    loose.kill_server().expect("SIGKILL to the postmaster and the stalled writers");
    loose.start_server().expect("crash recovery");
    assert_eq!(rows(&loose), Some(0), "every commit acknowledged after the stall is lost");

    loose.stall_wal_writer().expect("stalled again, on the restarted server");
    assert_eq!(insert_100(&loose), Some(100));
    loose.restart_server().expect("a restart lets the stalled writers go on");
    assert_eq!(rows(&loose), Some(100), "a clean shutdown writes what was acknowledged");

    let shared = TestPg::new().expect("a throwaway PostgreSQL must start");
    let e = shared.stall_wal_writer().unwrap_err().to_string();
    assert!(e.contains("LosesAcknowledged") || e.contains("DATABASE_URL"), "{e}");
}

/// The process ids of `pg`'s server: its postmaster (the parent of a backend) and every child
/// of it, from `/proc`.
fn server_processes(pg: &TestPg) -> Vec<u32> {
    let opts = pg.connect_options();
    let postmaster = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&opts).await.expect("a connection");
            let backend: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut conn).await.unwrap();
            let postmaster = parent(u32::try_from(backend).unwrap()).expect("the backend's parent");
            conn.close().await.expect("close");
            postmaster
        })
    })
    .join()
    .expect("the query thread");
    let mut all = vec![postmaster];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) {
            if parent(pid) == Some(postmaster) {
                all.push(pid);
            }
        }
    }
    all
}

/// The parent of process `pid`.
fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// The state of process `pid` (`T` stopped, `S` sleeping, ...), `None` when it is gone or a
/// zombie.
fn state(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(')')?.1.split_whitespace().next()?.to_owned();
    (state != "Z" && state != "X").then_some(state)
}

fn kill(sig: &str, pids: &[u32]) {
    let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let _ = std::process::Command::new("kill").arg(sig).args(&pids).status();
}

/// Which of `pids` (a server's, taken before) are still alive; those are ended (continued and
/// killed) before the test says so, so that a failure leaves no stopped server behind.
fn left_alive_then_ended(pids: &[u32]) -> Vec<(u32, String)> {
    let left: Vec<(u32, String)> = pids.iter().filter_map(|&p| state(p).map(|s| (p, s))).collect();
    if !left.is_empty() {
        let pids: Vec<u32> = left.iter().map(|(p, _)| *p).collect();
        kill("-CONT", &pids);
        kill("-KILL", &pids);
    }
    left
}

/// A throwaway cluster whose processes are all stopped (SIGSTOP) is still ended when it is
/// dropped, in bounded time: its processes are continued, `pg_ctl stop` is given 10 s, and
/// what is left is killed. Before, `pg_ctl stop` waited its 60 s, failed, and the stopped
/// processes stayed, their data directory removed under them.
#[test]
fn a_hung_cluster_is_ended_when_dropped() {
    let _limit = ledger_pg::testpg::TimeLimit::new(
        concat!(module_path!(), "::a_hung_cluster_is_ended_when_dropped"),
        std::time::Duration::from_secs(300),
    );
    let pg = TestPg::new_private_cluster().expect("a throwaway PostgreSQL must start");
    let pids = server_processes(&pg);
    assert!(pids.len() >= 4, "a postmaster and its children: {pids:?}");
    kill("-STOP", &pids);
    let started = std::time::Instant::now();
    drop(pg);
    let took = started.elapsed();
    let left = left_alive_then_ended(&pids);
    assert_eq!(left, Vec::new(), "processes of the dropped cluster still there (pid, state)");
    assert!(took < std::time::Duration::from_secs(40), "the drop took {took:?}");
}

/// Set in the environment of a copy of this test binary that runs one test's child part.
const CHILD: &str = "LEDGER_PG_TEST_CHILD";

/// The same when the process that started the cluster is killed (no `Drop` runs): its
/// watchdog ends the hung server. Before, the watchdog's `pg_ctl stop` failed the same way.
#[test]
fn a_hung_cluster_is_ended_by_its_watchdog_when_its_process_is_killed() {
    let name = "testpg::a_hung_cluster_is_ended_by_its_watchdog_when_its_process_is_killed";
    if std::env::var_os(CHILD).is_some() {
        // The child: a cluster, its processes stopped, then wait to be killed.
        let pg = TestPg::new_private_cluster().expect("a throwaway PostgreSQL must start");
        let pids = server_processes(&pg);
        kill("-STOP", &pids);
        let pids: Vec<String> = pids.iter().map(u32::to_string).collect();
        println!("SERVER PROCESSES {}", pids.join(" "));
        std::thread::sleep(std::time::Duration::from_secs(600));
        return;
    }
    let _limit = ledger_pg::testpg::TimeLimit::new(name, std::time::Duration::from_secs(300));
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the test binary runs again");
    let out = std::io::BufReader::new(child.stdout.take().expect("its stdout"));
    let pids: Vec<u32> = out
        .lines()
        .map_while(Result::ok)
        .find_map(|l| {
            // After libtest's `test NAME ... `, on the same line.
            let (_, pids) = l.split_once("SERVER PROCESSES ")?;
            Some(pids.split(' ').map(|n| n.parse().unwrap()).collect())
        })
        .expect("the child says its server's processes");
    assert!(pids.len() >= 4, "a postmaster and its children: {pids:?}");
    child.kill().expect("the child is killed");
    child.wait().expect("the child is gone");
    // The watchdog looks once a second, then gives pg_ctl 10 s.
    let started = std::time::Instant::now();
    while pids.iter().any(|&p| state(p).is_some()) && started.elapsed() < std::time::Duration::from_secs(60) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let left = left_alive_then_ended(&pids);
    assert_eq!(left, Vec::new(), "processes of the cluster still there 60 s after its owner died (pid, state)");
}

/// Set, with [`CHILD`], in the environment of a copy of this test binary that makes a fresh
/// database on the server of this URL (`TestPg::on_server`) and says its name on stdout.
const SWEEP_SERVER: &str = "LEDGER_PG_TEST_SWEEP_SERVER";

/// A copy of this test binary that made a database on a server and holds it until killed.
struct Holder {
    child: std::process::Child,
    db: String,
}

/// Starts the child part of the test `name` making a database on `url`: `mode` `hold` keeps
/// it until killed, `make` drops it and ends.
fn child_making_a_database(name: &str, url: &str, mode: &str) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads", "1"])
        .env(CHILD, mode)
        .env(SWEEP_SERVER, url)
        .env_remove("DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the test binary runs again")
}

/// Reads `pipe` to its end on a thread of its own.
fn read_all(mut pipe: impl std::io::Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    })
}

/// The database a child says it made (`DATABASE NAME`, after libtest's `test NAME ... `).
fn said_database(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|l| Some(l.split_once("DATABASE ")?.1.trim().to_owned()))
}

impl Holder {
    /// A child that made a database on `url` and holds it, once it has said which (at most
    /// 60 s).
    fn start(name: &str, url: &str) -> Holder {
        use std::io::BufRead;
        let mut child = child_making_a_database(name, url, "hold");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("its stdout"));
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if let Some(db) = said_database(&line) {
                    let _ = tx.send(db);
                }
            }
        });
        match rx.recv_timeout(std::time::Duration::from_secs(60)) {
            Ok(db) => Holder { child, db },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = read_all(child.stderr.take().expect("its stderr")).join().unwrap_or_default();
                panic!("the child never said which database it made within 60 s: {stderr}");
            }
        }
    }

    /// Kills it with SIGKILL (no `Drop` runs: its database stays) and reaps it.
    fn kill(mut self) -> u32 {
        let pid = self.child.id();
        let _ = self.child.kill();
        let _ = self.child.wait();
        pid
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process that makes a database on `url` and ends (dropping it): its stderr, and the
/// database it made, at most 60 s.
fn make_one(name: &str, url: &str) -> (String, String) {
    let mut child = child_making_a_database(name, url, "make");
    let stdout = read_all(child.stdout.take().expect("its stdout"));
    let stderr = read_all(child.stderr.take().expect("its stderr"));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            break status;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child making a database did not end within 60 s: {}", stderr.join().unwrap_or_default());
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let (stdout, stderr) = (stdout.join().expect("stdout"), stderr.join().expect("stderr"));
    assert!(status.success(), "the child making a database failed: {stdout}{stderr}");
    let made = said_database(&stdout).unwrap_or_else(|| panic!("the child said no database: {stdout}"));
    (stderr, made)
}

/// Runs `sql` on the database of `pg`, and the first column of the rows of its last
/// statement, as text (NULL as `None`).
fn query(pg: &TestPg, sql: &str) -> Vec<Option<String>> {
    let (opts, sql) = (pg.connect_options(), sql.to_owned());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect_with(&opts).await.expect("a connection");
            let rows = sqlx::query_scalar(&sql).fetch_all(&mut conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
            conn.close().await.expect("close");
            rows
        })
    })
    .join()
    .expect("the query thread")
}

/// The comment on the database `name` of `pg`'s server.
fn comment_of(pg: &TestPg, name: &str) -> Option<String> {
    let sql = format!("SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = '{name}'");
    query(pg, &sql).into_iter().next().flatten()
}

/// `marker` with the value of its field `key` (`key=VALUE`, up to the next space) replaced.
fn with_field(marker: &str, key: &str, value: &str) -> String {
    let at = marker.find(&format!(" {key}=")).unwrap_or_else(|| panic!("no {key}= in {marker:?}")) + key.len() + 2;
    let end = marker[at..].find(' ').map_or(marker.len(), |i| at + i);
    format!("{}{value}{}", &marker[..at], &marker[end..])
}

/// The lines of `stderr` that say a database was dropped.
fn dropped_lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.starts_with("ledger-pg: dropped the database ")).collect()
}

/// A test run or `ledger-sim` run killed hard (SIGKILL, a double Ctrl-C: no `Drop` runs)
/// leaves its databases on a server of the user's. The next process that makes one there
/// drops them, one line on stderr each, without the URL's password: only those marked as
/// ledger-pg's throwaway databases made on this host since this boot, whose process is gone,
/// and that nothing is connected to. A database without the marker (a user's, even one named
/// like ours), one made on another host or before the last boot, one whose process is alive
/// and one someone is connected to are kept. Before, they stayed forever.
#[test]
fn databases_left_by_killed_processes_are_dropped_by_the_next_one_and_no_other() {
    let name = "testpg::databases_left_by_killed_processes_are_dropped_by_the_next_one_and_no_other";
    if let Some(url) = std::env::var_os(SWEEP_SERVER) {
        // The child: a fresh database on the server, said, then held until killed or dropped.
        let db = TestPg::on_server("--database-url", url.to_str().expect("a UTF-8 URL"), "ledger_test")
            .expect("a fresh database on the given server");
        println!("DATABASE {}", db.database_name());
        if std::env::var_os(CHILD).is_some_and(|mode| mode == "hold") {
            std::thread::sleep(std::time::Duration::from_secs(600));
        }
        return;
    }
    let _limit = ledger_pg::testpg::TimeLimit::new(name, std::time::Duration::from_secs(300));
    // A server of its own: no other test makes databases on it meanwhile.
    let server = TestPg::new_private_cluster().expect("a throwaway PostgreSQL must start");
    let url = server.url().to_owned();
    // The URL carries the cluster's password, which is never printed.
    let password = password_in(&url).to_owned();

    // Three processes that made a database there, all alive as each makes its own (each
    // process sweeps when it first makes one); two are then killed.
    let live = Holder::start(name, &url);
    let killed = Holder::start(name, &url);
    let connected = Holder::start(name, &url);
    let (left, left_by) = (killed.db.clone(), killed.kill());
    let (connected_db, connected_by) = (connected.db.clone(), connected.kill());
    let marker = comment_of(&server, &left).expect("a database made on a server of the user's is marked");
    assert!(marker.starts_with("ledger-pg throwaway database"), "{marker}");
    assert!(marker.contains(&format!(" pid={left_by} ")), "{marker}");

    // Made elsewhere (another machine sharing the server, this one before a reboot), by a
    // process that is gone too; a user's databases, one of them named like ours.
    let elsewhere = with_field(&with_field(&marker, "machine", "0123456789abcdef0123456789abcdef"), "host", "ci-2");
    let other_boot = with_field(&marker, "boot", "00000000-0000-0000-0000-000000000000");
    // Named as that process's would be: only their markers keep them.
    let others = [
        (format!("ledger_test_{left_by}_1_1"), Some(elsewhere)),
        (format!("ledger_test_{left_by}_2_2"), Some(other_boot)),
        (format!("ledger_test_{left_by}_3_3"), None),
        ("precious".to_owned(), None),
    ];
    for (db, comment) in &others {
        query(&server, &format!("CREATE DATABASE {db}"));
        if let Some(comment) = comment {
            query(&server, &format!("COMMENT ON DATABASE {db} IS '{comment}'"));
        }
    }

    // Someone connected to the database of a process that is gone.
    let (close, closed) = std::sync::mpsc::channel::<()>();
    let (opened, open) = std::sync::mpsc::channel::<()>();
    let opts = server.connect_options().database(&connected_db);
    let holding = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
        rt.block_on(async move {
            use sqlx::Connection;
            let conn = sqlx::PgConnection::connect_with(&opts).await.expect("a connection");
            opened.send(()).expect("the test waits");
            let _ = closed.recv_timeout(std::time::Duration::from_secs(240));
            conn.close().await.expect("close");
        })
    });
    open.recv_timeout(std::time::Duration::from_secs(60)).expect("connected within 60 s");

    // The next process to make a database there: the killed one's goes, and nothing else.
    let (stderr, made) = make_one(name, &url);
    assert!(!stderr.contains(&password), "the password is never shown: {stderr}");
    let lines = dropped_lines(&stderr);
    assert_eq!(lines.len(), 1, "one line per database dropped: {stderr}");
    assert!(lines[0].contains(&format!("{left} on postgres://postgres:***@")), "{stderr}");
    assert!(lines[0].contains(&format!("process {left_by} ")), "it says why: {stderr}");
    assert!(!exists(&server, &left), "{left} is dropped: {stderr}");
    assert!(!exists(&server, &made), "the process dropped its own database at its end");
    for db in [&connected_db, &live.db] {
        assert!(exists(&server, db), "{db} is kept: {stderr}");
    }
    for (db, _) in &others {
        assert!(exists(&server, db), "{db} is kept: {stderr}");
    }

    // Once nothing is connected to it, the next one drops it.
    close.send(()).expect("the connection is held");
    holding.join().expect("the connection's thread");
    let (stderr, _) = make_one(name, &url);
    let lines = dropped_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(&connected_db) && lines[0].contains(&format!("process {connected_by} ")), "{stderr}");
    assert!(!exists(&server, &connected_db), "{stderr}");
    assert!(exists(&server, &live.db), "a live process's database is kept: {stderr}");

    // Once its process is gone, the next one drops it; a user's and another host's stay.
    let live_db = live.db.clone();
    live.kill();
    let (stderr, _) = make_one(name, &url);
    let lines = dropped_lines(&stderr);
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(&live_db), "{stderr}");
    assert!(!exists(&server, &live_db), "{stderr}");
    for (db, _) in &others {
        assert!(exists(&server, db), "{db} is kept: {stderr}");
    }
}
