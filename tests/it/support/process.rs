//! The real `leadrelay` binary as a child process, for crash, log and limit tests: its files
//! ([`ServeFiles`]), how to start it ([`serve`]) and the running child ([`Serve`]).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::{eventually, root};

/// `target/debug/leadrelay`, built by `make test` before the tests run.
fn binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"));
    let binary = target.join("debug/leadrelay");
    assert!(
        binary.exists(),
        "{} is missing: run `make test` (it builds the binary first)",
        binary.display()
    );
    binary
}

/// A loopback port for a child to listen on: free when checked, never handed out twice in
/// this process, and below the kernel's ephemeral range. A port found by binding port 0 is
/// in that range, where any connection a parallel test opens before the child binds the
/// port (the server_limits flood opens thousands) may take it as its source port.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = ports_below_ephemeral();
    let span = high - low;
    // Another test process on the machine starts elsewhere in the range.
    let start = std::process::id().wrapping_mul(7_919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let Ok(port) = u16::try_from(low + offset) else {
            continue;
        };
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {low}..{high}");
}

/// Up to 10,000 ports just below the ephemeral range (Linux's
/// `net.ipv4.ip_local_port_range`, 32768 unless configured), never below 1,024.
fn ports_below_ephemeral() -> (u32, u32) {
    let ephemeral_low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse::<u32>().ok())
        .unwrap_or(32_768);
    let high = ephemeral_low.clamp(2_048, 65_535);
    (high.saturating_sub(10_000).max(1_024), high)
}

/// A temporary directory with what `leadrelay serve` reads and writes: the configuration
/// (`leadrelay.toml`), the data directory (`data/`) and the log, stderr (`serve.log`).
pub struct ServeFiles {
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    dir: tempfile::TempDir,
}

impl ServeFiles {
    /// Writes `config_text` as the configuration.
    pub fn new(config_text: &str) -> ServeFiles {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = dir.path().join("leadrelay.toml");
        std::fs::write(&config, config_text).expect("write config");
        ServeFiles {
            config,
            data_dir: dir.path().join("data"),
            log: dir.path().join("serve.log"),
            dir,
        }
    }

    /// Another file in the directory (where a child writes its alerts, say).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The log so far; empty before the first line.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `leadrelay serve` on these files, started by [`ServeCommand::spawn`]: stdout discarded,
/// stderr appended to [`ServeFiles::log`], `RUST_LOG=warn` unless set otherwise.
pub fn serve(files: &ServeFiles) -> ServeCommand<'_> {
    ServeCommand {
        files,
        env: vec![("RUST_LOG".into(), "warn".into())],
        stdout: None,
        soft_open_files: None,
    }
}

/// How one `leadrelay serve` starts.
pub struct ServeCommand<'a> {
    files: &'a ServeFiles,
    env: Vec<(String, String)>,
    stdout: Option<PathBuf>,
    soft_open_files: Option<u64>,
}

impl ServeCommand<'_> {
    /// Sets an environment variable (a later value for the same name wins).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.env.push((name.into(), value.into()));
        self
    }

    /// Writes stdout (the terminal channel's alerts) to `path` instead of discarding it.
    pub fn stdout_to(mut self, path: &Path) -> Self {
        self.stdout = Some(path.to_path_buf());
        self
    }

    /// Starts the process with this open-file soft limit (through `ulimit -S -n`; the hard
    /// limit stays what it was), as systemd's default of 1,024 would.
    pub fn open_files_soft_limit(mut self, limit: u64) -> Self {
        self.soft_open_files = Some(limit);
        self
    }

    /// Starts it on a free loopback port and waits until `/healthz` answers.
    pub async fn spawn(self) -> Serve {
        let port = free_port();
        let child = self.command(port).spawn().expect("spawn leadrelay serve");
        let serve = Serve {
            child,
            reaped: false,
            port,
            base: format!("http://127.0.0.1:{port}"),
        };
        wait_healthy(&super::http_client(), &serve.base).await;
        serve
    }

    /// Starts it and waits for it to exit, as a refused start does: its exit status and its
    /// log. Panics (after stopping it) if it serves instead.
    pub async fn refused(self) -> (std::process::ExitStatus, String) {
        let port = free_port();
        let mut child = self.command(port).spawn().expect("spawn leadrelay serve");
        let http = super::http_client();
        let started = std::time::Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                return (status, self.files.log_text());
            }
            let healthz = http
                .get(format!("http://127.0.0.1:{port}/healthz"))
                .send()
                .await;
            if healthz.is_ok_and(|r| r.status().is_success())
                || started.elapsed() > Duration::from_secs(20)
            {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "leadrelay serve did not stop at start: {}",
                    self.files.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn command(&self, port: u16) -> Command {
        let mut command = match self.soft_open_files {
            Some(limit) => {
                let mut shell = Command::new("sh");
                shell
                    .arg("-c")
                    .arg(format!("ulimit -S -n {limit} && exec \"$0\" \"$@\""))
                    .arg(binary());
                shell
            }
            None => Command::new(binary()),
        };
        command
            .args(["serve", "--config"])
            .arg(&self.files.config)
            .args(["--listen", &format!("127.0.0.1:{port}"), "--data-dir"])
            .arg(&self.files.data_dir)
            .envs(self.env.iter().map(|(k, v)| (k, v)));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.files.log)
            .expect("log file");
        command.stderr(log);
        match &self.stdout {
            Some(path) => command.stdout(std::fs::File::create(path).expect("stdout file")),
            None => command.stdout(Stdio::null()),
        };
        command
    }
}

/// A running `leadrelay serve`, killed and reaped when dropped so that a failing test leaves
/// no process behind (one that went on posting to a stand-in another test then gets).
pub struct Serve {
    child: Child,
    reaped: bool,
    pub port: u16,
    pub base: String,
}

impl Serve {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, then reaps it: a crash, as far as the data directory can tell.
    pub fn kill(&mut self) {
        if !self.reaped {
            self.child.kill().expect("SIGKILL"); // std's kill is SIGKILL on Unix
            self.child.wait().expect("reaped");
            self.reaped = true;
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if !self.reaped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    eventually(Duration::from_secs(20), "healthz", || async {
        let response = http.get(format!("{base}/healthz")).send().await.ok()?;
        response.status().is_success().then_some(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_for_children_are_below_the_ephemeral_range_and_never_handed_out_twice() {
        let (_, ephemeral_low) = ports_below_ephemeral();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        assert!(
            ports.iter().all(|&port| u32::from(port) < ephemeral_low),
            "{ports:?}"
        );
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
    }
}
