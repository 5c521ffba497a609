//! The operator's console's refusals and bounds: no token, a wrong token,
//! logins of the password file's users, malformed input, paging limits,
//! body size and connection limits, HTTPS, and configuration errors.
#![allow(clippy::unwrap_used)]

mod admin_http;

use std::time::Duration;

use admin_http::{Console, TOKEN, config, request};
use hyper::StatusCode;
use mqtt_server::{Config, PasswordFile, PasswordHash, Server};
use mqtt_testkit::TIMEOUT;

/// Every endpoint behind the token, with a body where it takes one.
const PROTECTED: &[(&str, &str)] = &[
    ("GET", "/api/v1/broker"),
    ("GET", "/api/v1/stats"),
    ("GET", "/api/v1/events"),
    ("GET", "/api/v1/clients"),
    ("GET", "/api/v1/clients/x"),
    ("DELETE", "/api/v1/clients/x"),
    ("GET", "/api/v1/sessions"),
    ("GET", "/api/v1/sessions/x"),
    ("DELETE", "/api/v1/sessions/x"),
    ("GET", "/api/v1/subscriptions"),
    ("GET", "/api/v1/retained"),
    ("GET", "/api/v1/retained/a/b"),
    ("DELETE", "/api/v1/retained/a/b"),
    ("POST", "/api/v1/publish"),
    ("POST", "/api/v1/reload"),
    ("POST", "/api/v1/logout"),
];

#[tokio::test]
async fn every_endpoint_refuses_a_request_without_the_right_token() {
    let console = Console::start(config()).await;
    let wrong = format!("{TOKEN}x");
    for (method, path) in PROTECTED {
        let body = (*method == "POST").then_some(r#"{"topic":"a","payload":"b"}"#);
        for token in [
            None,
            Some(wrong.as_str()),
            Some(&TOKEN[..TOKEN.len() - 1]),
            Some(""),
        ] {
            let a = request(console.addr, method, path, token, body).await;
            assert_eq!(
                a.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert_eq!(a.headers["www-authenticate"], "Bearer");
            // Nothing said about why.
            assert_eq!(a.text(), r#"{"error":"unauthorized"}"#);
        }
    }
    // Another scheme with the right secret is not a bearer token.
    let stream = tokio::net::TcpStream::connect(console.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = stream;
    stream
        .write_all(
            format!("GET /api/v1/broker HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {TOKEN}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut raw = String::new();
    tokio::time::timeout(TIMEOUT, stream.read_to_string(&mut raw))
        .await
        .unwrap()
        .unwrap();
    assert!(raw.starts_with("HTTP/1.1 401"), "{raw}");
    // The admin token passes, the scheme in any case.
    let a = request(console.addr, "GET", "/api/v1/broker", Some(TOKEN), None).await;
    assert_eq!(a.status, StatusCode::OK);
}

/// A password file with `admin` and `operator`, and a console that lets
/// `admin` log in.
fn with_users(dir: &std::path::Path) -> Config {
    let mut file = PasswordFile::new();
    file.set("admin", PasswordHash::new(b"admin-pw").unwrap());
    file.set("operator", PasswordHash::new(b"operator-pw").unwrap());
    let path = dir.join("passwd");
    std::fs::write(&path, file.to_text()).unwrap();
    Config {
        password_file: Some(path),
        admin_token: None,
        admin_users: vec!["admin".into()],
        ..config()
    }
}

#[tokio::test]
async fn users_with_the_admin_role_log_in_with_their_password() {
    let dir = tempfile::tempdir().unwrap();
    let console = Console::start(with_users(dir.path())).await;
    let login =
        |body: &'static str| request(console.addr, "POST", "/api/v1/login", None, Some(body));

    let ok = login(r#"{"username":"admin","password":"admin-pw"}"#).await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.text());
    let token = ok.json()["token"].as_str().unwrap().to_owned();
    assert_eq!(token.len(), 64);
    assert_eq!(ok.json()["expires_in"], 3600);
    let a = request(console.addr, "GET", "/api/v1/clients", Some(&token), None).await;
    assert_eq!(a.status, StatusCode::OK);

    // A wrong password, or an unknown user: 401, nothing more.
    for body in [
        r#"{"username":"admin","password":"nope"}"#,
        r#"{"username":"ghost","password":"admin-pw"}"#,
    ] {
        let a = login(body).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(a.text(), r#"{"error":"unauthorized"}"#);
    }
    // Right password, no admin role: 403.
    let a = login(r#"{"username":"operator","password":"operator-pw"}"#).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.text(), r#"{"error":"forbidden"}"#);
    // Malformed: 400 naming the problem.
    let a = login(r#"{"username":"admin"}"#).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(a.error().contains("password"), "{}", a.error());

    // Logged out, the token no longer works.
    let out = request(console.addr, "POST", "/api/v1/logout", Some(&token), None).await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let a = request(console.addr, "GET", "/api/v1/clients", Some(&token), None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn repeated_failed_logins_block_the_address() {
    let dir = tempfile::tempdir().unwrap();
    let console = Console::start(Config {
        max_auth_failures: 2,
        ..with_users(dir.path())
    })
    .await;
    let login =
        |body: &'static str| request(console.addr, "POST", "/api/v1/login", None, Some(body));
    for _ in 0..2 {
        let a = login(r#"{"username":"admin","password":"guess"}"#).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    }
    // Even the right password is refused now, with the same answer.
    let a = login(r#"{"username":"admin","password":"admin-pw"}"#).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.text(), r#"{"error":"unauthorized"}"#);
}

#[tokio::test]
async fn malformed_requests_get_400_naming_the_problem() {
    let console = Console::start(config()).await;
    let cases: &[(&str, &str, Option<&str>, &str)] = &[
        (
            "POST",
            "/api/v1/publish",
            Some("{not json"),
            "malformed JSON",
        ),
        (
            "POST",
            "/api/v1/publish",
            Some(r#"{"payload":"x"}"#),
            "topic",
        ),
        (
            "POST",
            "/api/v1/publish",
            Some(r#"{"topic":"a","qos":3}"#),
            "qos",
        ),
        ("POST", "/api/v1/publish", Some(r#"{"topic":"a/#"}"#), "a/#"),
        ("POST", "/api/v1/publish", Some(r#"{"topic":""}"#), "topic"),
        (
            "POST",
            "/api/v1/publish",
            Some(r#"{"topic":"a","colour":1}"#),
            "colour",
        ),
        (
            "POST",
            "/api/v1/publish",
            Some(r#"{"topic":"a","payload":"!!","payload_encoding":"base64"}"#),
            "base64",
        ),
        (
            "POST",
            "/api/v1/publish",
            Some(r#"{"topic":"a","payload_encoding":"hex"}"#),
            "payload_encoding",
        ),
        ("GET", "/api/v1/retained?filter=a/%23/b", None, "a/#/b"),
        ("GET", "/api/v1/retained/a/%2B", None, "a/+"),
        ("DELETE", "/api/v1/retained/a/%23", None, "a/#"),
        ("GET", "/api/v1/clients?sort=colour", None, "colour"),
        ("GET", "/api/v1/clients?order=up", None, "up"),
        ("GET", "/api/v1/clients?lmit=5", None, "lmit"),
        ("GET", "/api/v1/clients?limit=many", None, "limit"),
        ("GET", "/api/v1/sessions?connected=maybe", None, "connected"),
    ];
    for (method, path, body, named) in cases {
        let a = request(console.addr, method, path, Some(TOKEN), *body).await;
        assert_eq!(
            a.status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body:?}: {}",
            a.text()
        );
        assert!(
            a.error().contains(named),
            "{method} {path}: {:?} does not name {named}",
            a.error()
        );
    }
}

#[tokio::test]
async fn pages_are_bounded() {
    let console = Console::start(Config {
        admin_max_page_size: 50,
        ..config()
    })
    .await;
    let page = console.get("/api/v1/sessions").await.json();
    assert_eq!(page["limit"], 50, "the default page is cut to the maximum");
    for path in [
        "/api/v1/clients?limit=51",
        "/api/v1/sessions?limit=0",
        "/api/v1/subscriptions?limit=1000",
        "/api/v1/retained?limit=51",
    ] {
        let a = console.get(path).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(a.error().contains("50"), "{path}: {}", a.error());
    }
    assert_eq!(
        console.get("/api/v1/clients?limit=50").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let console = Console::start(Config {
        admin_max_body_bytes: 1024,
        ..config()
    })
    .await;
    let big = format!(r#"{{"topic":"a","payload":"{}"}}"#, "x".repeat(2000));
    let a = console.post("/api/v1/publish", &big).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
    let small = console
        .post("/api/v1/publish", r#"{"topic":"a","payload":"x"}"#)
        .await;
    assert_eq!(small.status, StatusCode::OK);
}

/// With one connection allowed, a second waits until the first closes.
#[tokio::test]
async fn connections_beyond_the_limit_wait() {
    let console = Console::start(Config {
        admin_max_connections: 1,
        ..config()
    })
    .await;
    let first = tokio::net::TcpStream::connect(console.addr).await.unwrap();
    let (status, _, live) =
        admin_http::send_on(first, "GET", "/api/v1/events", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let second = tokio::spawn(request(
        console.addr,
        "GET",
        "/api/v1/broker",
        Some(TOKEN),
        None,
    ));
    // Bounded: not served while the first holds the only slot...
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "served beyond admin_max_connections");
    // ...and served once it is gone.
    drop(live);
    let a = tokio::time::timeout(TIMEOUT, second)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status, StatusCode::OK);
}

#[tokio::test]
async fn the_console_speaks_https_with_the_listeners_tls_settings() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, der) = admin_http::self_signed(dir.path());
    let console = Console::start(Config {
        admin_certfile: Some(cert),
        admin_keyfile: Some(key),
        ..config()
    })
    .await;
    let tcp = tokio::net::TcpStream::connect(console.addr).await.unwrap();
    let tls = admin_http::tls_connector(der)
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("a TLS handshake");
    let (status, _, body) =
        admin_http::send_on(tls, "GET", "/api/v1/broker", Some(TOKEN), None).await;
    assert_eq!(status, StatusCode::OK);
    let info: serde_json::Value =
        serde_json::from_slice(&admin_http::read_all(body).await).unwrap();
    assert_eq!(info["name"], "mqtt-rs");
    // Plain HTTP gets no answer.
    let mut plain = tokio::net::TcpStream::connect(console.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    plain
        .write_all(b"GET /api/v1/broker HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(TIMEOUT, plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("mqtt-rs"));
}

#[tokio::test]
async fn configuration_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Config, &str)> = vec![
        (
            Config {
                admin_token: None,
                ..config()
            },
            "admin_listen",
        ),
        (
            Config {
                admin_token: Some("short".into()),
                ..config()
            },
            "admin_token",
        ),
        (
            Config {
                admin_token: Some("has a space in it, too long".into()),
                ..config()
            },
            "admin_token",
        ),
        (
            Config {
                admin_token_file: Some(dir.path().join("t")),
                ..config()
            },
            "admin_token_file",
        ),
        (
            Config {
                admin_certfile: Some(dir.path().join("c")),
                ..config()
            },
            "admin_keyfile",
        ),
        (
            Config {
                admin_max_page_size: 0,
                ..config()
            },
            "admin_max_page_size",
        ),
    ];
    for (c, key) in cases {
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(key), "{err} does not name {key}");
    }
    // Files are read at startup; errors name the key and file.
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "tiny\n").unwrap();
    let c = Config {
        admin_token: None,
        admin_token_file: Some(token_file.clone()),
        ..config()
    };
    let err = Server::bind(c).await.err().unwrap().to_string();
    assert!(
        err.contains("admin_token_file") && err.contains("token"),
        "{err}"
    );
    let c = Config {
        admin_certfile: Some(dir.path().join("missing.crt")),
        admin_keyfile: Some(dir.path().join("missing.key")),
        ..config()
    };
    let err = Server::bind(c).await.err().unwrap().to_string();
    assert!(err.contains("admin_certfile"), "{err}");
}

#[tokio::test]
async fn a_token_file_is_read_at_startup() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "from-a-file-0123456789abcdef\nignored\n").unwrap();
    let console = Console::start(Config {
        admin_token: None,
        admin_token_file: Some(path),
        ..config()
    })
    .await;
    let a = request(
        console.addr,
        "GET",
        "/api/v1/broker",
        Some("from-a-file-0123456789abcdef"),
        None,
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = request(console.addr, "GET", "/api/v1/broker", Some(TOKEN), None).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
}
