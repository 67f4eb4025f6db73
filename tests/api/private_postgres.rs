//! A PostgreSQL server of a test's own: its own data folder and port, so that the test can stop and start it
//! (a real database restart) without disturbing the shared server the other tests use.
//!
//! It runs the server programs of Debian's `postgresql` package (`initdb`, `pg_ctl` under
//! `/usr/lib/postgresql/VERSION/bin`), as the `postgres` system user when the test runs as root (the server
//! refuses to run as root). Without them the test fails with directions, like every database test;
//! `ZYLKER_SKIP_DB_TESTS=1` leaves it out.

use std::path::PathBuf;
use std::process::Command;

use crate::databases::skipped;
use crate::serve::free_port;

pub struct PrivatePostgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    /// Creates a cluster in a temporary folder and starts it on a free port; `None` with
    /// `ZYLKER_SKIP_DB_TESTS=1`. Blocking (initdb takes seconds): call it off the async runtime.
    pub fn start() -> Option<PrivatePostgres> {
        if skipped() {
            eprintln!("database test skipped: ZYLKER_SKIP_DB_TESTS=1");
            return None;
        }
        let bin = server_programs().unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server programs under /usr/lib/postgresql/*/bin: install them \
                 (`apt-get install -y postgresql`), or set ZYLKER_SKIP_DB_TESTS=1 to skip"
            )
        });
        let dir = tempfile::tempdir().expect("a folder for the cluster");
        if running_as_root() {
            run(Command::new("chown").arg("postgres").arg(dir.path()));
        }
        let server = PrivatePostgres {
            bin,
            dir,
            port: free_port(),
        };
        server.as_server_user(|command| {
            command
                .arg(server.bin.join("initdb"))
                .arg("-D")
                .arg(server.data())
                .args(["--auth=trust", "-U", "postgres", "--no-sync"]);
        });
        server.start_again();
        Some(server)
    }

    /// The portal's spec for the cluster's `postgres` database.
    pub fn spec(&self) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?sslmode=disable",
            self.port
        )
    }

    /// Stops the server as an operator's restart does (`pg_ctl stop -m fast`: connections are ended), and waits
    /// until it is down.
    pub fn stop(&self) {
        self.as_server_user(|command| {
            command
                .arg(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .args(["-m", "fast", "-w", "stop"]);
        });
    }

    /// Starts the server (again) on its port, and waits until it takes connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.path().display()
        );
        self.as_server_user(|command| {
            command
                .arg(self.bin.join("pg_ctl"))
                .arg("-D")
                .arg(self.data())
                .arg("-l")
                .arg(self.dir.path().join("server.log"))
                .args(["-w", "-o", &options, "start"]);
        });
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs the command `build` sets up, as the `postgres` user when this process is root, and requires success.
    fn as_server_user(&self, build: impl FnOnce(&mut Command)) {
        let mut command = self.server_user_command();
        build(&mut command);
        run(&mut command);
    }

    /// A command to which the program and its arguments are still to be added: run as the `postgres` user when
    /// this process is root, in the cluster's folder.
    fn server_user_command(&self) -> Command {
        let mut command = if running_as_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]);
            command
        } else {
            Command::new("env")
        };
        command.current_dir(self.dir.path());
        command
    }
}

impl Drop for PrivatePostgres {
    /// Stops the server at once (its data is thrown away with the folder); a failure leaves nothing to undo.
    fn drop(&mut self) {
        let _ = self
            .server_user_command()
            .arg(self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// The newest installed version's server programs.
fn server_programs() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("pg_ctl").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

fn running_as_root() -> bool {
    // The effective user id, the second field of `Uid:` in /proc/self/status.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

fn run(command: &mut Command) {
    let output = command.output().expect("run a PostgreSQL program");
    assert!(
        output.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
