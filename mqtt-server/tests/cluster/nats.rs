//! A NATS server with JetStream for a test: a child process on
//! 127.0.0.1 and a free port, with a throwaway store directory, killed
//! when dropped. Without the `nats-server` binary, [`Nats::start`] returns
//! `None` and the test prints "skipped" — unless `NATS_REQUIRE=1`, when it
//! fails (CI sets it).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Nats {
    pub(crate) port: u16,
    binary: PathBuf,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

/// The binary: `$NATS_SERVER`, else `nats-server` on the PATH or in
/// /usr/sbin (Debian's package puts it there).
fn binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("NATS_SERVER") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/bin")])
        .map(|d| d.join("nats-server"))
        .find(|p| p.is_file())
}

impl Nats {
    /// Starts one, or says why the test is skipped.
    pub(crate) fn start(test: &str) -> Option<Nats> {
        let Some(binary) = binary() else {
            assert!(
                std::env::var("NATS_REQUIRE").as_deref() != Ok("1"),
                "NATS_REQUIRE=1 but no nats-server binary (set NATS_SERVER, or install it)"
            );
            eprintln!(
                "{test}: skipped (no nats-server binary; NATS_REQUIRE=1 makes this a failure)"
            );
            return None;
        };
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut nats = Nats {
            port,
            binary,
            dir: tempfile::tempdir().expect("a temporary directory"),
            child: None,
        };
        nats.restart();
        Some(nats)
    }

    pub(crate) fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store), and waits
    /// until it accepts connections.
    pub(crate) fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Kills the server (by its PID) and waits for it to exit.
    pub(crate) fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}
