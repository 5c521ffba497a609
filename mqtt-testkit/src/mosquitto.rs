//! A real mosquitto broker started by a test: the other end of a bridge.
//!
//! The binary is `$MOSQUITTO`, `/usr/sbin/mosquitto` or `mosquitto` on the
//! `PATH` (Debian's `mosquitto` package; `.ci/run` installs it). It listens
//! on `127.0.0.1` on a free port, anonymous clients allowed, with its
//! persistence file in the test's directory, and is stopped by PID.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A port no one listens on now (the OS picks it; it is free again at
/// once, and a test binds it soon after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A running mosquitto; killed when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    child: Option<Child>,
    /// Its plain MQTT listener.
    pub addr: SocketAddr,
    binary: PathBuf,
    config: PathBuf,
    /// Other ports its configuration listens on, waited for at start.
    extra_ports: Vec<u16>,
}

impl Mosquitto {
    /// The mosquitto binary, if installed.
    pub fn binary() -> Option<PathBuf> {
        if let Some(p) = std::env::var_os("MOSQUITTO") {
            return Some(PathBuf::from(p));
        }
        let sbin = PathBuf::from("/usr/sbin/mosquitto");
        if sbin.exists() {
            return Some(sbin);
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join("mosquitto"))
                .find(|p| p.exists())
        })
    }

    /// Starts mosquitto with its files in `dir` (created), on a free port,
    /// with `extra` appended to its configuration (e.g. a TLS listener on
    /// one of `extra_ports`, which are waited for too). Waits until it
    /// accepts connections.
    ///
    /// # Panics
    /// If mosquitto is not installed, or does not listen within 10 s.
    pub fn start(dir: &Path, extra: &str, extra_ports: &[u16]) -> Mosquitto {
        let binary = Self::binary().expect("mosquitto is installed (apt-get install mosquitto)");
        std::fs::create_dir_all(dir).expect("mosquitto's directory");
        let port = free_port();
        let config = dir.join("mosquitto.conf");
        // The queues are large enough for any test: a message dropped by
        // mosquitto's own limits is not what a bridge test is about. Run as
        // root (a CI container), mosquitto would become the user
        // `mosquitto`, which cannot write in the test's directory: `user`
        // keeps it as it is (and does nothing for other users).
        let text = format!(
            "listener {port} 127.0.0.1\n\
             user root\n\
             allow_anonymous true\n\
             persistence true\n\
             persistence_location {dir}/\n\
             autosave_interval 1\n\
             max_queued_messages 100000\n\
             max_inflight_messages 100\n\
             log_dest file {dir}/mosquitto.log\n\
             log_type all\n\
             {extra}\n",
            dir = dir.display()
        );
        std::fs::write(&config, text).expect("mosquitto.conf");
        let mut m = Mosquitto {
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            binary,
            config,
            extra_ports: extra_ports.to_vec(),
        };
        m.launch();
        m
    }

    fn launch(&mut self) {
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        let ports = std::iter::once(self.addr.port()).chain(self.extra_ports.iter().copied());
        for port in ports.collect::<Vec<_>>() {
            let addr = SocketAddr::from(([127, 0, 0, 1], port));
            while TcpStream::connect(addr).is_err() {
                assert!(
                    Instant::now() < deadline,
                    "mosquitto did not listen on {addr}: see {}",
                    self.config.with_file_name("mosquitto.log").display()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Stops it as an operator would (SIGTERM: it saves its persistence
    /// file and exits), and waits for it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let term = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        if term.is_err() {
            let _ = child.kill();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() >= deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return;
                }
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Starts it again, on the same port and files.
    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
