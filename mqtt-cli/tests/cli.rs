//! End-to-end tests of `mqtt pub`, `mqtt sub` and `mqtt bench` against the
//! real broker, each run as the built `mqtt` binary.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const MQTT: &str = env!("CARGO_BIN_EXE_mqtt");

/// A child process killed when the test ends, however it ends.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on (bound, then released).
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local address").port()
}

/// A broker on a free port, ready to accept; `config` is extra TOML.
fn broker(config: &str) -> (Guard, u16) {
    let port = free_port();
    let mut cmd = Command::new(MQTT);
    cmd.arg("broker").arg("--log-level").arg("warn");
    let mut config_file = None;
    if config.is_empty() {
        cmd.arg("--listen").arg(format!("127.0.0.1:{port}"));
    } else {
        let path =
            std::env::temp_dir().join(format!("mqtt-cli-test-{}-{port}.toml", std::process::id()));
        std::fs::write(
            &path,
            format!("listen = [\"127.0.0.1:{port}\"]\n{config}\n"),
        )
        .expect("write the config");
        cmd.arg("--config").arg(&path);
        config_file = Some(path);
    }
    let guard = Guard(
        cmd.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the broker"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "broker did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Listening means the file was read.
    if let Some(path) = config_file {
        let _ = std::fs::remove_file(path);
    }
    (guard, port)
}

/// `mqtt ARGS... -h 127.0.0.1 -p PORT`, run to completion.
fn mqtt(port: u16, args: &[&str]) -> Output {
    Command::new(MQTT)
        .args(args)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run mqtt")
}

/// A running `mqtt sub`.
fn spawn_sub(port: u16, args: &[&str]) -> Guard {
    Guard(
        Command::new(MQTT)
            .arg("sub")
            .args(args)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mqtt sub"),
    )
}

/// Publishes with `pub_args` until `sub` exits (it may not have subscribed
/// yet when the first message goes), then returns its stdout. Bounded.
fn publish_until_received(port: u16, mut sub: Guard, pub_args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = mqtt(port, pub_args);
        assert!(
            out.status.success(),
            "mqtt pub failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let wait_until = Instant::now() + Duration::from_millis(300);
        while Instant::now() < wait_until {
            if let Some(status) = sub.0.try_wait().expect("poll mqtt sub") {
                let mut stdout = String::new();
                let mut stderr = String::new();
                if let Some(mut s) = sub.0.stdout.take() {
                    s.read_to_string(&mut stdout).expect("read sub stdout");
                }
                if let Some(mut s) = sub.0.stderr.take() {
                    s.read_to_string(&mut stderr).expect("read sub stderr");
                }
                assert!(status.success(), "mqtt sub failed ({status}): {stderr}");
                return stdout;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(Instant::now() < deadline, "mqtt sub received nothing");
    }
}

#[test]
fn pub_qos1_reaches_sub_v5() {
    let (_broker, port) = broker("");
    let sub = spawn_sub(port, &["-t", "t", "-C", "1"]);
    let out = publish_until_received(port, sub, &["pub", "-t", "t", "-m", "hello", "-q", "1"]);
    assert_eq!(out, "hello\n");
}

#[test]
fn pub_qos2_reaches_sub_v311() {
    let (_broker, port) = broker("");
    let sub = spawn_sub(
        port,
        &["-t", "a/+", "-C", "1", "-V", "311", "-v", "-q", "2"],
    );
    let out = publish_until_received(
        port,
        sub,
        &[
            "pub", "-t", "a/b", "-m", "hello", "-q", "2", "-V", "mqttv311",
        ],
    );
    assert_eq!(out, "a/b hello\n");
}

#[test]
fn sub_json_output_parses() {
    let (_broker, port) = broker("");
    let sub = spawn_sub(port, &["-t", "j", "-C", "1", "--json", "-q", "1"]);
    let out = publish_until_received(
        port,
        sub,
        &[
            "pub",
            "-t",
            "j",
            "-m",
            "hi there",
            "-q",
            "1",
            "--user-property",
            "k",
            "v",
            "--content-type",
            "text/plain",
        ],
    );
    let line = out.lines().next().expect("one line");
    let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
    assert_eq!(v["topic"], "j");
    assert_eq!(v["qos"], 1);
    assert_eq!(v["retain"], false);
    assert_eq!(v["payload"], "hi there");
    assert_eq!(v["payload_encoding"], "utf-8");
    assert_eq!(v["properties"]["content_type"], "text/plain");
    assert_eq!(v["properties"]["user_properties"][0][0], "k");
    assert_eq!(v["properties"]["user_properties"][0][1], "v");
}

#[test]
fn pub_stdin_lines_and_retained() {
    let (_broker, port) = broker("");
    // -l: one message per line, blank lines skipped, retained so the
    // subscriber below gets the last one whenever it subscribes.
    let mut publisher = Command::new(MQTT)
        .args(["pub", "-t", "r", "-l", "-r", "-q", "1"])
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mqtt pub -l");
    publisher
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"one\n\ntwo\n")
        .expect("write stdin");
    let out = publisher.wait_with_output().expect("mqtt pub -l");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mqtt(port, &["sub", "-t", "r", "-C", "1", "-W", "10"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "two\n");
    // -R skips the stale retained message: nothing arrives, -W times out.
    let out = mqtt(port, &["sub", "-t", "r", "-C", "1", "-W", "1", "-R"]);
    assert_eq!(out.status.code(), Some(27), "timeout exit code");
    assert!(out.stdout.is_empty());
}

/// With the default threads and with `workers = 1` (one thread besides
/// the main one, checked on Linux).
#[test]
fn bench_pubsub_qos1_has_no_losses() {
    for config in ["", "workers = 1"] {
        let (broker, port) = broker(config);
        if !config.is_empty() && cfg!(target_os = "linux") {
            let threads = std::fs::read_dir(format!("/proc/{}/task", broker.0.id()))
                .expect("the broker's threads")
                .count();
            assert_eq!(threads, 2, "the main thread and one worker");
        }
        bench_qos1_without_loss(port);
    }
}

fn bench_qos1_without_loss(port: u16) {
    let out = mqtt(
        port,
        &[
            "bench", "pubsub", "-c", "2", "-S", "1", "-q", "1", "-n", "200", "--json",
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "bench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON report");
    assert_eq!(v["mode"], "pubsub");
    assert_eq!(v["sent"], 400);
    assert_eq!(v["acked"], 400);
    assert_eq!(v["expected"], 400);
    assert_eq!(v["received"], 400);
    assert_eq!(v["losses"], 0);
    assert_eq!(v["connect_failures"], 0);
    assert!(v["latency"]["p99_us"].as_f64().is_some_and(|p| p > 0.0));
}

#[test]
fn bench_conn_reports_connections() {
    let (_broker, port) = broker("");
    let out = mqtt(port, &["bench", "conn", "-c", "20", "-R", "0", "--json"]);
    assert!(out.status.success());
    let v: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("JSON report");
    assert_eq!(v["connections"], 20);
    assert_eq!(v["connect_failures"], 0);
}

#[test]
fn refused_connection_names_the_reason() {
    let (_broker, port) = broker("allow_anonymous = false");
    let out = mqtt(port, &["pub", "-t", "t", "-m", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connection refused: Not authorized (0x87)"),
        "{err}"
    );
    let out = mqtt(port, &["sub", "-t", "t", "-V", "311"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("connection refused: Not authorized (return code 5)"),
        "{err}"
    );
}

#[test]
fn closed_port_fails_with_the_address() {
    let port = free_port();
    let out = mqtt(port, &["pub", "-t", "t", "-m", "x"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );
}

#[test]
fn help_documents_options_and_defaults() {
    let out = Command::new(MQTT)
        .args(["sub", "--help"])
        .output()
        .expect("mqtt sub --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "--host",
        "[default: localhost]",
        "--count",
        "--timeout",
        "--json",
    ] {
        assert!(help.contains(needle), "missing {needle:?} in:\n{help}");
    }
}

/// `mqtt passwd` writes the file the broker reads, and SIGHUP makes the
/// running broker read it again without restarting.
#[test]
fn sighup_reloads_the_password_file() {
    let dir = std::env::temp_dir().join(format!("mqtt-cli-passwd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("passwd");
    let file_s = file.to_str().expect("utf-8 path");
    let passwd = |args: &[&str]| {
        let out = Command::new(MQTT)
            .arg("passwd")
            .args(args)
            .output()
            .expect("run mqtt passwd");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    passwd(&["-c", "-b", file_s, "alice", "first"]);
    // Failed logins while polling must not get 127.0.0.1 rate-limited.
    let (broker, port) = broker(&format!(
        "allow_anonymous = false\npassword_file = \"{file_s}\"\nmax_auth_failures = 0"
    ));
    let publish = |pw: &str| {
        mqtt(
            port,
            &["pub", "-t", "t", "-m", "x", "-u", "alice", "-P", pw],
        )
    };
    assert!(publish("first").status.success());
    assert!(!publish("second").status.success());

    passwd(&["-b", file_s, "alice", "second"]);
    let status = Command::new("kill")
        .args(["-HUP", &broker.0.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success());
    // The reload happens in the broker's own time: poll, bounded.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !publish("second").status.success() {
        assert!(Instant::now() < deadline, "the new password never worked");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = publish("first");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Bad User Name or Password (0x86)"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}
