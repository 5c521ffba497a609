//! The real `mqtt broker` as a child process, for the tests that kill it.

use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MQTT: &str = env!("CARGO_BIN_EXE_mqtt");

/// Our broker process; killed (SIGKILL) when dropped.
pub(crate) struct Broker {
    child: Child,
    /// Where it listens.
    #[allow(
        dead_code,
        reason = "not every test binary that includes this module reads it"
    )]
    pub(crate) addr: SocketAddr,
}

impl Broker {
    /// `mqtt broker --config CONFIG --listen ADDR --data-dir DIR`, its log
    /// (at info level) written to `log`; returns once it accepts.
    pub(crate) fn start(config: &Path, dir: &Path, addr: SocketAddr, log: File) -> Broker {
        let child = Command::new(MQTT)
            .args(["broker", "--log-level", "info", "--config"])
            .arg(config)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--data-dir")
            .arg(dir)
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the broker");
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(Instant::now() < deadline, "the broker did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Broker { child, addr }
    }

    /// SIGKILL: no shutdown, no flush.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}
