//! A throwaway PostgreSQL cluster for tests: `initdb` in a temporary directory, `pg_ctl start` on a
//! free loopback port (socket in that directory too), one database per test, stopped and removed
//! when the last handle drops.
//!
//! Uses the machine's PostgreSQL binaries (Debian's `postgresql` package: the newest
//! `/usr/lib/postgresql/*/bin`, or `QYS_PG_BINDIR`, or `PATH`). Run as root (as CI does), the
//! cluster is owned by and run as the `postgres` user (`runuser`), since PostgreSQL refuses root.
//! Nothing is skipped: if the cluster cannot start, the test fails with the reason and the log.
//!
//! Include it with `#[path = "common/pg.rs"] mod pg;` (the callbacks benchmark, an example, with
//! `#[path = "../tests/common/pg.rs"]`).
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// A running cluster. Cheap to share: [`PgCluster::shared`].
pub struct PgCluster {
    dir: tempfile::TempDir,
    bindir: PathBuf,
    port: u16,
    /// Run the binaries as this user (`runuser -u`), when the tests run as root.
    run_as: Option<String>,
    next_db: AtomicUsize,
}

static SHARED: Mutex<Weak<PgCluster>> = Mutex::new(Weak::new());

/// Where the PostgreSQL server binaries are.
pub fn bindir() -> PathBuf {
    if let Some(dir) = std::env::var_os("QYS_PG_BINDIR") {
        return dir.into();
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .filter(|(_, bin): &(u32, PathBuf)| bin.join("pg_ctl").exists())
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return bin;
    }
    // On PATH, e.g. another distribution's packages.
    let pg_ctl = Command::new("sh").args(["-c", "command -v pg_ctl"]).output().expect("sh");
    let path = String::from_utf8_lossy(&pg_ctl.stdout).trim().to_owned();
    assert!(
        !path.is_empty(),
        "PostgreSQL's server binaries are missing: install Debian's `postgresql` package (scripts/tools.sh does) \
         or set QYS_PG_BINDIR"
    );
    Path::new(&path).parent().unwrap().to_path_buf()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

impl PgCluster {
    /// The cluster this test binary shares (started on first use, stopped when the last test
    /// holding it drops its handle).
    pub fn shared() -> Arc<PgCluster> {
        let mut shared = SHARED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return cluster;
        }
        let cluster = Arc::new(Self::start());
        *shared = Arc::downgrade(&cluster);
        cluster
    }

    /// A new cluster of its own (fsync off: the tests kill proxies, never PostgreSQL).
    pub fn start() -> PgCluster {
        Self::start_with(false)
    }

    /// A new cluster; `durable`: fsync on, as in production (for benchmarks).
    pub fn start_with(durable: bool) -> PgCluster {
        let bindir = bindir();
        let run_as = is_root().then(|| "postgres".to_owned());
        let dir = tempfile::Builder::new().prefix("qys-pg-").tempdir().expect("temp dir");
        if run_as.is_some() {
            let out = Command::new("chown").args(["-R", "postgres:"]).arg(dir.path()).output().expect("chown");
            assert!(out.status.success(), "chown postgres {}: {}", dir.path().display(), String::from_utf8_lossy(&out.stderr));
        }
        let mut cluster = PgCluster { dir, bindir, port: 0, run_as, next_db: AtomicUsize::new(0) };
        let data = cluster.data_dir();
        let out = cluster.run(
            "initdb",
            &["-D", data.to_str().unwrap(), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions"],
        );
        assert!(out.status.success(), "initdb failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // A free port can be taken by someone else before the server binds it: try a few.
        let mut last = String::new();
        for _ in 0..5 {
            cluster.port = free_port();
            let options = format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200{}",
                cluster.port,
                cluster.dir.path().display(),
                if durable { "" } else { " -c fsync=off -c full_page_writes=off" }
            );
            let log = cluster.dir.path().join("server.log");
            let out = cluster.run(
                "pg_ctl",
                &["-D", data.to_str().unwrap(), "-o", &options, "-l", log.to_str().unwrap(), "-w", "-t", "60", "start"],
            );
            if out.status.success() {
                return cluster;
            }
            last = format!(
                "{}{}\n--- server.log ---\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("PostgreSQL did not start: {last}");
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, program: &str, args: &[&str]) -> Output {
        let exe = self.bindir.join(program);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        cmd.args(args).current_dir(self.dir.path());
        cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()))
    }

    /// The TCP port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` (user `postgres`, no password: trust on loopback).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new, empty database and returns its URL.
    pub fn create_db(&self) -> String {
        let name = format!("t{}_{}", std::process::id(), self.next_db.fetch_add(1, Ordering::Relaxed));
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }

    /// Runs `sql` in database `db` with psql; returns the rows, unaligned (`|` between columns,
    /// one row a line). Panics with psql's message on an error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let exe = self.bindir.join("psql");
        let out = Command::new(&exe)
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres"])
            .args(["-p", &self.port.to_string(), "-d", db, "-c", sql])
            .output()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", exe.display()));
        assert!(out.status.success(), "psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
    }

    /// [`psql`](Self::psql) on the database of `url` (as returned by [`create_db`](Self::create_db)).
    pub fn query(&self, url: &str, sql: &str) -> String {
        self.psql(url.rsplit('/').next().unwrap(), sql)
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let data = self.data_dir();
        let _ = self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "-w", "stop"]);
        // The TempDir removes the directory (root may; otherwise it is the current user's).
    }
}
