//! Authentication (password files compatible with mosquitto_passwd),
//! authorisation (mosquitto-format ACL files), failed-login limits and
//! reloading, seen from clients on a real socket.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mqtt_codec::{ConnAck, Packet, ProtocolVersion, QoS, ReasonCode};
use mqtt_server::{
    Config, PasswordFile, PasswordHash, ReloadHandle, Server, ShutdownHandle, Stats,
};
use mqtt_testkit::{RawClient, packets, v4, v5};
use rumqttc::{ConnectReturnCode, ConnectionError};

/// The broker with its reload handle (which `TestBroker` does not expose).
struct Broker {
    addr: SocketAddr,
    reload: ReloadHandle,
    shutdown: ShutdownHandle,
    stats: Arc<Stats>,
}

impl Broker {
    async fn start(mut config: Config) -> Broker {
        config.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
        let server = Server::bind(config).await.expect("the broker binds");
        let broker = Broker {
            addr: server.local_addrs()[0],
            reload: server.reload_handle(),
            shutdown: server.shutdown_handle(),
            stats: server.stats(),
        };
        tokio::spawn(server.run());
        broker
    }

    fn stat(&self, counter: impl FnOnce(&Stats) -> &std::sync::atomic::AtomicU64) -> u64 {
        Stats::get(counter(&self.stats))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.shutdown.shutdown();
    }
}

/// A file in the temporary directory, unique to this process and `name`,
/// removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        let path =
            std::env::temp_dir().join(format!("mqtt-security-test-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        TempFile(path)
    }

    fn write(&self, contents: &str) {
        std::fs::write(&self.0, contents).unwrap();
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn passwords(users: &[(&str, &str)]) -> String {
    let mut file = PasswordFile::new();
    for (user, password) in users {
        file.set(user, PasswordHash::new(password.as_bytes()).unwrap());
    }
    file.to_text()
}

async fn connect_as(
    addr: SocketAddr,
    version: ProtocolVersion,
    client_id: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> (RawClient, ConnAck) {
    let mut connect = packets::connect(version, client_id);
    connect.username = user.map(packets::string);
    connect.password = password.map(|p| Bytes::copy_from_slice(p.as_bytes()));
    RawClient::connect(addr, connect).await
}

async fn code_for(
    addr: SocketAddr,
    version: ProtocolVersion,
    user: Option<&str>,
    password: Option<&str>,
) -> ReasonCode {
    connect_as(addr, version, "c", user, password)
        .await
        .1
        .reason_code
}

/// A 3.1.1 connection by rumqttc, an independent client: the return code it
/// read on the wire.
async fn v3_return_code(addr: SocketAddr, user: Option<(&str, &str)>) -> ConnectReturnCode {
    let mut options = v4::options(addr, "v3");
    if let Some((u, p)) = user {
        options.set_credentials(u, p);
    }
    let mut peer = v4::Peer::start(options);
    match peer.wait_error().await {
        ConnectionError::ConnectionRefused(code) => code,
        other => panic!("expected a refused CONNACK, got {other:?}"),
    }
}

fn with_password_file(file: &TempFile) -> Config {
    Config {
        password_file: Some(file.path().to_owned()),
        ..Config::default()
    }
}

#[tokio::test]
async fn the_right_password_is_accepted() {
    let file = TempFile::new("right", &passwords(&[("alice", "secret")]));
    let broker = Broker::start(with_password_file(&file)).await;
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let code = code_for(broker.addr, version, Some("alice"), Some("secret")).await;
        assert_eq!(code, ReasonCode::Success, "{version:?}");
    }
    let mut options = v5::options(broker.addr, "rumqttc");
    options.set_credentials("alice", "secret");
    v5::Peer::connect(options).await;
}

#[tokio::test]
async fn a_wrong_password_or_unknown_user_is_refused_with_bad_credentials() {
    let file = TempFile::new("wrong", &passwords(&[("alice", "secret")]));
    let broker = Broker::start(with_password_file(&file)).await;
    for (user, password) in [
        ("alice", Some("Secret")),
        ("alice", None),
        ("mallory", Some("secret")),
    ] {
        let code = code_for(broker.addr, ProtocolVersion::V5, Some(user), password).await;
        assert_eq!(
            code,
            ReasonCode::BadUserNameOrPassword,
            "{user} {password:?}"
        );
    }
    assert_eq!(
        v3_return_code(broker.addr, Some(("alice", "wrong"))).await,
        ConnectReturnCode::BadUserNamePassword,
        "3.1.1 return code 4"
    );
    assert_eq!(broker.stat(|s| &s.auth_bad_credentials), 4);
}

#[tokio::test]
async fn anonymous_clients_are_refused_when_not_allowed() {
    let file = TempFile::new("anon", &passwords(&[("alice", "secret")]));
    let broker = Broker::start(Config {
        allow_anonymous: false,
        ..with_password_file(&file)
    })
    .await;
    assert_eq!(
        code_for(broker.addr, ProtocolVersion::V5, None, None).await,
        ReasonCode::NotAuthorized
    );
    assert_eq!(
        v3_return_code(broker.addr, None).await,
        ConnectReturnCode::NotAuthorized,
        "3.1.1 return code 5"
    );
    assert_eq!(
        code_for(
            broker.addr,
            ProtocolVersion::V5,
            Some("alice"),
            Some("secret")
        )
        .await,
        ReasonCode::Success
    );
}

#[tokio::test]
async fn anonymous_clients_are_let_in_beside_a_password_file_when_allowed() {
    let file = TempFile::new("anon-ok", &passwords(&[("alice", "secret")]));
    let broker = Broker::start(with_password_file(&file)).await;
    assert_eq!(
        code_for(broker.addr, ProtocolVersion::V5, None, None).await,
        ReasonCode::Success
    );
}

#[tokio::test]
async fn an_address_with_too_many_failed_logins_is_refused_for_a_while() {
    let file = TempFile::new("limit", &passwords(&[("alice", "secret")]));
    let broker = Broker::start(Config {
        max_auth_failures: 3,
        ..with_password_file(&file)
    })
    .await;
    for _ in 0..3 {
        let code = code_for(broker.addr, ProtocolVersion::V5, Some("alice"), Some("x")).await;
        assert_eq!(code, ReasonCode::BadUserNameOrPassword);
    }
    // Even the right password, for now.
    let code = code_for(
        broker.addr,
        ProtocolVersion::V5,
        Some("alice"),
        Some("secret"),
    )
    .await;
    assert_eq!(code, ReasonCode::ConnectionRateExceeded);
    assert_eq!(broker.stat(|s| &s.auth_blocked), 1);
}

fn have(binary: &str) -> bool {
    let found = Command::new(binary)
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        println!("NOTICE: `{binary}` not found; skipping the cross-check with mosquitto");
    }
    found
}

#[tokio::test]
async fn a_file_written_by_mosquitto_passwd_is_accepted() {
    if !have("mosquitto_passwd") {
        return;
    }
    let file = TempFile::new("mosquitto-made", "");
    let status = Command::new("mosquitto_passwd")
        .args(["-c", "-b"])
        .arg(file.path())
        .args(["alice", "open sesame"])
        .status()
        .unwrap();
    assert!(status.success());
    let status = Command::new("mosquitto_passwd")
        .arg("-b")
        .arg(file.path())
        .args(["bob", "b0b"])
        .status()
        .unwrap();
    assert!(status.success());
    let broker = Broker::start(with_password_file(&file)).await;
    for (user, password, expected) in [
        ("alice", "open sesame", ReasonCode::Success),
        ("bob", "b0b", ReasonCode::Success),
        ("alice", "b0b", ReasonCode::BadUserNameOrPassword),
    ] {
        let code = code_for(broker.addr, ProtocolVersion::V5, Some(user), Some(password)).await;
        assert_eq!(code, expected, "{user}");
    }
}

/// A mosquitto broker started by the test, killed when dropped.
struct Mosquitto(Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_file_we_write_is_accepted_by_mosquitto() {
    if !have("mosquitto") {
        return;
    }
    let file = TempFile::new("ours", &passwords(&[("alice", "open sesame")]));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = TempFile::new(
        "mosquitto.conf",
        &format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {}\n",
            file.path().display()
        ),
    );
    let _mosquitto = Mosquitto(
        Command::new("mosquitto")
            .arg("-c")
            .arg(conf.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "mosquitto did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut options = v4::options(addr, "ours");
    options.set_credentials("alice", "open sesame");
    let (_peer, ack) = v4::Peer::connect(options).await;
    assert_eq!(ack.code, ConnectReturnCode::Success);
    assert_eq!(
        v3_return_code(addr, Some(("alice", "wrong"))).await,
        ConnectReturnCode::NotAuthorized,
        "mosquitto answers 5 to a wrong password"
    );
}

const ACL: &str = "\
# Anonymous clients.
topic read public/#

user admin
topic readwrite #
topic read $SYS/#

user alice
topic readwrite alice/#
topic deny alice/secret/#
topic read shared/#

# Everyone.
pattern readwrite devices/%c/#
pattern read inbox/%u/#
";

async fn acl_broker(acl: &TempFile) -> Broker {
    Broker::start(Config {
        acl_file: Some(acl.path().to_owned()),
        ..Config::default()
    })
    .await
}

/// An MQTT 5.0 client that may read everything.
async fn admin(addr: SocketAddr) -> v5::Peer {
    let mut options = v5::options(addr, "admin");
    options.set_credentials("admin", "");
    let (mut peer, _) = v5::Peer::connect(options).await;
    peer.subscribe("#", rumqttc::v5::mqttbytes::QoS::AtLeastOnce)
        .await;
    peer
}

async fn publish_qos1(raw: &mut RawClient, topic: &str, id: u16) -> Option<ReasonCode> {
    raw.send(&Packet::Publish(packets::publish(
        topic,
        b"m",
        QoS::AtLeastOnce,
        id,
    )))
    .await
    .unwrap();
    match raw.recv().await {
        Some(Packet::PubAck(a)) => Some(a.reason_code),
        _ => None,
    }
}

async fn subscribe_codes(raw: &mut RawClient, filters: &[&str]) -> Vec<ReasonCode> {
    let filters: Vec<(&str, QoS)> = filters.iter().map(|f| (*f, QoS::AtLeastOnce)).collect();
    raw.send(&Packet::Subscribe(packets::subscribe(1, &filters)))
        .await
        .unwrap();
    match raw.recv().await {
        Some(Packet::SubAck(a)) => a.reason_codes,
        other => panic!("SUBACK expected, got {other:?}"),
    }
}

async fn next_topic(raw: &mut RawClient) -> String {
    loop {
        match raw.recv().await {
            Some(Packet::Publish(p)) => {
                if let Some(id) = p.packet_id {
                    raw.send(&Packet::PubAck(mqtt_codec::Ack::new(id)))
                        .await
                        .unwrap();
                }
                return p.topic.as_str().to_owned();
            }
            Some(_) => {}
            None => panic!("PUBLISH expected"),
        }
    }
}

#[tokio::test]
async fn acl_publish_is_allowed_and_denied_and_deny_wins_v5() {
    let acl = TempFile::new("acl-pub5", ACL);
    let broker = acl_broker(&acl).await;
    let mut admin = admin(broker.addr).await;
    let (mut alice, _) =
        connect_as(broker.addr, ProtocolVersion::V5, "a1", Some("alice"), None).await;
    assert_eq!(
        publish_qos1(&mut alice, "alice/x", 1).await,
        Some(ReasonCode::Success)
    );
    assert_eq!(&admin.next_publish().await.topic[..], b"alice/x");
    assert_eq!(
        publish_qos1(&mut alice, "bob/x", 2).await,
        Some(ReasonCode::NotAuthorized)
    );
    assert_eq!(
        publish_qos1(&mut alice, "alice/secret/x", 3).await,
        Some(ReasonCode::NotAuthorized),
        "deny wins over readwrite alice/#"
    );
    admin.expect_no_publish(Duration::from_millis(200)).await;
    assert_eq!(broker.stat(|s| &s.dropped_acl_publish), 2);
}

#[tokio::test]
async fn acl_denied_publish_is_acknowledged_and_dropped_v311() {
    let acl = TempFile::new("acl-pub3", ACL);
    let broker = acl_broker(&acl).await;
    let mut admin = admin(broker.addr).await;
    let (mut alice, _) = connect_as(
        broker.addr,
        ProtocolVersion::V3_1_1,
        "a1",
        Some("alice"),
        None,
    )
    .await;
    assert_eq!(
        publish_qos1(&mut alice, "bob/x", 1).await,
        Some(ReasonCode::Success),
        "a plain PUBACK, as mosquitto sends"
    );
    admin.expect_no_publish(Duration::from_millis(200)).await;
    assert_eq!(broker.stat(|s| &s.dropped_acl_publish), 1);
}

#[tokio::test]
async fn acl_denied_subscribe_gets_a_failure_code() {
    let acl = TempFile::new("acl-sub", ACL);
    let broker = acl_broker(&acl).await;
    let filters = ["bob/#", "alice/#", "alice/secret/#", "$SYS/#"];
    let (mut alice5, _) =
        connect_as(broker.addr, ProtocolVersion::V5, "a5", Some("alice"), None).await;
    assert_eq!(
        subscribe_codes(&mut alice5, &filters).await,
        vec![
            ReasonCode::NotAuthorized,
            ReasonCode::GrantedQoS1,
            ReasonCode::NotAuthorized,
            ReasonCode::NotAuthorized,
        ]
    );
    let (mut alice3, _) = connect_as(
        broker.addr,
        ProtocolVersion::V3_1_1,
        "a3",
        Some("alice"),
        None,
    )
    .await;
    assert_eq!(
        subscribe_codes(&mut alice3, &filters).await,
        vec![
            // 0x80 on the wire.
            ReasonCode::UnspecifiedError,
            ReasonCode::GrantedQoS1,
            ReasonCode::UnspecifiedError,
            ReasonCode::UnspecifiedError,
        ]
    );
}

#[tokio::test]
async fn a_wildcard_subscription_receives_only_what_the_client_may_read() {
    let acl = TempFile::new("acl-read", ACL);
    let broker = acl_broker(&acl).await;
    let (mut alice, _) =
        connect_as(broker.addr, ProtocolVersion::V5, "a1", Some("alice"), None).await;
    assert_eq!(
        subscribe_codes(&mut alice, &["#"]).await,
        vec![ReasonCode::GrantedQoS1]
    );
    let mut admin = admin(broker.addr).await;
    for topic in ["bob/1", "alice/secret/2", "alice/3", "public/4", "shared/5"] {
        admin
            .publish(topic, rumqttc::v5::mqttbytes::QoS::AtLeastOnce, false, b"m")
            .await;
    }
    assert_eq!(next_topic(&mut alice).await, "alice/3");
    assert_eq!(next_topic(&mut alice).await, "shared/5");
    alice.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(broker.stat(|s| &s.dropped_acl_read), 3);
}

#[tokio::test]
async fn retained_messages_are_filtered_by_read_access() {
    let acl = TempFile::new("acl-retained", ACL);
    let broker = acl_broker(&acl).await;
    let mut admin = admin(broker.addr).await;
    for topic in ["bob/r", "alice/r"] {
        admin
            .publish(
                topic,
                rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
                true,
                b"kept",
            )
            .await;
    }
    let (mut alice, _) =
        connect_as(broker.addr, ProtocolVersion::V5, "a1", Some("alice"), None).await;
    assert_eq!(
        subscribe_codes(&mut alice, &["+/r"]).await,
        vec![ReasonCode::GrantedQoS1]
    );
    assert_eq!(next_topic(&mut alice).await, "alice/r");
    alice.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn patterns_substitute_the_client_id_and_user_name() {
    let acl = TempFile::new("acl-patterns", ACL);
    let broker = acl_broker(&acl).await;
    let mut admin = admin(broker.addr).await;
    let (mut carol, _) = connect_as(
        broker.addr,
        ProtocolVersion::V5,
        "dev1",
        Some("carol"),
        None,
    )
    .await;
    assert_eq!(
        publish_qos1(&mut carol, "devices/dev1/temp", 1).await,
        Some(ReasonCode::Success)
    );
    assert_eq!(&admin.next_publish().await.topic[..], b"devices/dev1/temp");
    assert_eq!(
        publish_qos1(&mut carol, "devices/dev2/temp", 2).await,
        Some(ReasonCode::NotAuthorized)
    );
    assert_eq!(
        subscribe_codes(&mut carol, &["inbox/carol/#", "inbox/dave/#"]).await,
        vec![ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]
    );
    admin
        .publish(
            "inbox/carol/hello",
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            false,
            b"m",
        )
        .await;
    assert_eq!(next_topic(&mut carol).await, "inbox/carol/hello");
    // %u does not match an anonymous client; %c does.
    let (mut anon, _) = connect_as(broker.addr, ProtocolVersion::V5, "dev9", None, None).await;
    assert_eq!(
        subscribe_codes(&mut anon, &["inbox/+/#", "devices/dev9/#"]).await,
        vec![ReasonCode::NotAuthorized, ReasonCode::GrantedQoS1]
    );
}

#[tokio::test]
async fn lines_before_any_user_apply_to_anonymous_clients_only() {
    let acl = TempFile::new("acl-anon", ACL);
    let broker = acl_broker(&acl).await;
    let (mut anon, _) = connect_as(broker.addr, ProtocolVersion::V5, "x", None, None).await;
    assert_eq!(
        subscribe_codes(&mut anon, &["public/#", "alice/#"]).await,
        vec![ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]
    );
    assert_eq!(
        publish_qos1(&mut anon, "public/x", 5).await,
        Some(ReasonCode::NotAuthorized),
        "read only"
    );
    let (mut alice, _) =
        connect_as(broker.addr, ProtocolVersion::V5, "a", Some("alice"), None).await;
    assert_eq!(
        subscribe_codes(&mut alice, &["public/#"]).await,
        vec![ReasonCode::NotAuthorized]
    );
}

#[tokio::test]
async fn a_will_to_a_denied_topic_refuses_the_connect() {
    let acl = TempFile::new("acl-will", ACL);
    let broker = acl_broker(&acl).await;
    let mut connect = packets::connect(ProtocolVersion::V5, "a");
    connect.username = Some(packets::string("alice"));
    connect.will = Some(mqtt_codec::Will {
        topic: packets::string("bob/will"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    });
    let (_c, ack) = RawClient::connect(broker.addr, connect).await;
    assert_eq!(ack.reason_code, ReasonCode::NotAuthorized);
}

#[tokio::test]
async fn reload_takes_new_passwords_and_keeps_old_rules_when_a_file_is_broken() {
    let file = TempFile::new("reload-pw", &passwords(&[("alice", "one")]));
    let acl = TempFile::new("reload-acl", "user alice\ntopic readwrite a/#\n");
    let broker = Broker::start(Config {
        acl_file: Some(acl.path().to_owned()),
        ..with_password_file(&file)
    })
    .await;
    let v5 = ProtocolVersion::V5;
    let (mut before, ack) = connect_as(broker.addr, v5, "before", Some("alice"), Some("one")).await;
    assert_eq!(ack.reason_code, ReasonCode::Success);

    file.write(&passwords(&[("alice", "two")]));
    acl.write("user alice\ntopic readwrite b/#\n");
    assert!(broker.reload.reload().is_empty());
    assert_eq!(
        code_for(broker.addr, v5, Some("alice"), Some("two")).await,
        ReasonCode::Success
    );
    assert_eq!(
        code_for(broker.addr, v5, Some("alice"), Some("one")).await,
        ReasonCode::BadUserNameOrPassword
    );
    // The connection made before the reload stays, under the new ACL.
    assert_eq!(
        publish_qos1(&mut before, "b/1", 1).await,
        Some(ReasonCode::NoMatchingSubscribers)
    );
    assert_eq!(
        publish_qos1(&mut before, "a/1", 2).await,
        Some(ReasonCode::NotAuthorized)
    );

    file.write(&format!(
        "{}bob:not-a-hash\n",
        passwords(&[("alice", "three")])
    ));
    acl.write("user alice\ntopic readwrite c/#\nbogus line\n");
    let errors: Vec<String> = broker
        .reload
        .reload()
        .iter()
        .map(|e| e.to_string())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    let pw_error = errors
        .iter()
        .find(|e| e.contains("reload-pw"))
        .expect("the password file is named");
    assert!(pw_error.contains("line 2"), "{pw_error}");
    let acl_error = errors
        .iter()
        .find(|e| e.contains("reload-acl"))
        .expect("the ACL file is named");
    assert!(acl_error.contains("line 3"), "{acl_error}");
    assert_eq!(
        code_for(broker.addr, v5, Some("alice"), Some("two")).await,
        ReasonCode::Success,
        "the old passwords stay"
    );
    assert_eq!(
        publish_qos1(&mut before, "b/2", 3).await,
        Some(ReasonCode::NoMatchingSubscribers),
        "the old ACL stays"
    );
}

#[tokio::test]
async fn a_broken_file_at_start_is_an_error_naming_file_and_line() {
    let file = TempFile::new("broken-start", "# users\nalice\n");
    let bound = Server::bind(Config {
        listen: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
        ..with_password_file(&file)
    })
    .await;
    let Err(err) = bound else {
        panic!("a broken password file must refuse the start");
    };
    let message = err.to_string();
    assert!(
        message.contains("broken-start") && message.contains("line 2"),
        "{message}"
    );
}
