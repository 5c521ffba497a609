//! The dashboard in a real browser: Debian's `chromium`, headless, driven
//! through WebDriver (`chromedriver`, started here on a free port of
//! 127.0.0.1 and stopped by its PID) with fantoccini, against the real
//! broker with rumqttc clients. Every expectation polls the page until it
//! shows the expected state, within a bounded time.
//!
//! Without chromedriver the test is skipped with a message, unless
//! `BROWSER_REQUIRE=1` (CI sets it), where it fails. `CHROMEDRIVER` and
//! `CHROMIUM` name other binaries. The overview's screenshot is saved in
//! the target directory, and as `docs/dashboard.png` (the README's) with
//! `UPDATE_SCREENSHOT=1`. The same flow runs in Firefox when `GECKODRIVER`
//! names a geckodriver.
#![allow(clippy::unwrap_used)]

mod admin_http;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use mqtt_server::{Config, ListenerConfig, ListenerKind};
use mqtt_testkit::v5;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::DisconnectReasonCode;
use rumqttc::v5::{ConnectionError, StateError};
use serde_json::{Value, json};

/// How long the page has to show what is expected (it pushes a sample a
/// second; a loaded CI machine is slow to start a browser).
const PAGE_TIMEOUT: Duration = Duration::from_secs(20);

fn binary(env: &str, default: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os(env).unwrap_or_else(|| default.into()));
    path.is_file().then_some(path)
}

/// A WebDriver server (chromedriver, geckodriver), killed by the PID it
/// was started with when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    /// Starts `path` on a free port of 127.0.0.1; `port_args` makes its
    /// arguments from the port.
    async fn start(path: &PathBuf, port_args: impl Fn(u16) -> Vec<String>) -> Driver {
        // A free port: bound, read, released, then given to the driver.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(path)
            .args(port_args(port))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", path.display()));
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} did not listen on port {port} within {PAGE_TIMEOUT:?}",
                path.display()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        driver
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `script` (the body of a function run in the page) until it
/// returns something other than `null` or `false`; returns that.
async fn until(page: &Client, what: &str, script: &str) -> Value {
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    loop {
        let last = match page.execute(script, vec![]).await {
            Ok(v) if !v.is_null() && v != Value::Bool(false) => return v,
            Ok(v) => v,
            Err(e) => Value::String(e.to_string()),
        };
        assert!(
            tokio::time::Instant::now() < deadline,
            "the page did not show {what} within {PAGE_TIMEOUT:?} (last: {last})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn text_is(page: &Client, id: &str, expected: &str) {
    let script = format!(
        "const e = document.getElementById({id:?}); return e && e.textContent.trim() === {expected:?};"
    );
    until(page, &format!("#{id} = {expected:?}"), &script).await;
}

async fn type_into(page: &Client, css: &str, text: &str) {
    let e = page.find(Locator::Css(css)).await.unwrap();
    e.clear().await.unwrap();
    e.send_keys(text).await.unwrap();
}

/// Clicks what `css` finds. The lists re-render as data arrives, which can
/// replace the element between the find and the click: then it is found
/// again (within [`PAGE_TIMEOUT`]). Whether it was clicked.
async fn try_click(page: &Client, css: &str) -> bool {
    let e = page.find(Locator::Css(css)).await.unwrap();
    match e.click().await {
        Ok(()) => true,
        Err(e) if e.is_stale_element_reference() => false,
        Err(e) => panic!("clicking {css}: {e}"),
    }
}

async fn click(page: &Client, css: &str) {
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    while !try_click(page, css).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} kept being replaced for {PAGE_TIMEOUT:?}"
        );
    }
}

/// Clicks a button that asks for confirmation, twice: once to arm it, then
/// once armed. A button replaced by a re-render in between loses its
/// armed state, so the pair starts again.
async fn click_confirmed(page: &Client, css: &str) {
    let armed = format!(
        "const b = document.querySelector({css:?}); return !!b && b.classList.contains('confirm');"
    );
    let deadline = tokio::time::Instant::now() + PAGE_TIMEOUT;
    loop {
        let is_armed = page.execute(&armed, vec![]).await.unwrap() == Value::Bool(true);
        if try_click(page, css).await {
            if is_armed {
                return;
            }
            until(page, "the button armed", &armed).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{css} was not clicked armed within {PAGE_TIMEOUT:?}"
        );
    }
}

/// Saves a screenshot of the page in the target directory: where, and
/// the PNG.
async fn shot(page: &Client, s: &Setup, name: &str) -> (PathBuf, Vec<u8>) {
    let png = page.screenshot().await.unwrap();
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.png", s.browser));
    std::fs::write(&path, &png).unwrap();
    (path, png)
}

struct Setup {
    /// `chromium` or `firefox`.
    browser: &'static str,
    admin: SocketAddr,
    mqtt: SocketAddr,
    ws: SocketAddr,
}

async fn flow(page: &Client, s: &Setup) {
    let base = format!("http://{}/", s.admin);
    page.set_window_size(1400, 1000).await.unwrap();
    page.goto(&base).await.unwrap();

    // Log in with the token.
    until(
        page,
        "the login form",
        "return !document.getElementById('view-login').hidden;",
    )
    .await;
    type_into(page, "#login-token", admin_http::TOKEN).await;
    click(page, "#login-submit").await;
    until(
        page,
        "the overview",
        "return !document.getElementById('view-overview').hidden;",
    )
    .await;
    until(
        page,
        "the live stream",
        "return document.getElementById('live-status').textContent === 'live';",
    )
    .await;
    text_is(page, "stat-connections", "0").await;

    // A client connects: the count rises.
    let (mut watched, _) = v5::Peer::connect(v5::options(s.mqtt, "browser-watched-1")).await;
    text_is(page, "stat-connections", "1").await;

    // Some traffic for the graphs, and retained messages to browse.
    let (mut publisher, _) = v5::Peer::connect(v5::options(s.mqtt, "demo-publisher")).await;
    let (mut sink, _) = v5::Peer::connect(v5::options(s.mqtt, "demo-subscriber")).await;
    sink.subscribe("demo/#", QoS::AtMostOnce).await;
    let (mut sink2, _) = v5::Peer::connect(v5::options(s.mqtt, "demo-dashboard")).await;
    sink2.subscribe("demo/load", QoS::AtMostOnce).await;
    publisher
        .publish("test/retained/a", QoS::AtLeastOnce, true, b"first")
        .await;
    publisher
        .publish("test/retained/b", QoS::AtLeastOnce, true, b"second")
        .await;
    let traffic = tokio::spawn(async move {
        for i in 0u32..600 {
            let n = 1 + (i % 20) as usize;
            for _ in 0..n {
                publisher
                    .client
                    .try_publish("demo/load", QoS::AtMostOnce, false, vec![b'x'; 64])
                    .ok();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    text_is(page, "stat-connections", "4").await;
    until(
        page,
        "messages per second",
        "const t = document.getElementById('stat-in').textContent; return t !== '–' && t !== '0';",
    )
    .await;
    until(
        page,
        "a few seconds of graphs",
        "return Number(document.getElementById('chart-messages').dataset.samples) >= 20;",
    )
    .await;
    let (saved, png) = shot(page, s, "dashboard").await;
    assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
    if s.browser == "chromium" && std::env::var_os("UPDATE_SCREENSHOT").is_some_and(|v| v == "1") {
        let docs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/dashboard.png");
        std::fs::write(&docs, &png).unwrap();
        eprintln!("screenshot saved as {}", docs.display());
    }
    eprintln!("overview screenshot: {}", saved.display());
    traffic.abort();

    // Find the client, disconnect it, see it go.
    click(page, "#tabs a[data-view='clients']").await;
    type_into(page, "#clients-search", "browser-watched").await;
    let row = "tr[data-client-id='browser-watched-1']";
    until(
        page,
        "the client's row",
        &format!(
            "const rows = document.querySelectorAll('#clients-table tbody tr[data-client-id]'); \
         return rows.length === 1 && !!document.querySelector({row:?});"
        ),
    )
    .await;
    shot(page, s, "dashboard-clients").await;
    click_confirmed(page, &format!("{row} button.danger")).await;
    match watched.wait_error().await {
        ConnectionError::MqttState(StateError::ServerDisconnect { reason_code, .. }) => {
            assert_eq!(reason_code, DisconnectReasonCode::AdministrativeAction)
        }
        other => panic!("expected DISCONNECT 0x98, got {other:?}"),
    }
    until(page, "the client gone", &format!(
        "return !document.querySelector({row:?}) && document.getElementById('clients-total').textContent === '(0)';"
    ))
    .await;

    // Delete a retained message.
    click(page, "#tabs a[data-view='retained']").await;
    type_into(page, "#retained-filter", "test/retained/#").await;
    let a = "tr[data-topic='test/retained/a']";
    until(page, "both retained messages", &format!(
        "return !!document.querySelector({a:?}) && !!document.querySelector(\"tr[data-topic='test/retained/b']\");"
    ))
    .await;
    click_confirmed(page, &format!("{a} button.danger")).await;
    until(page, "the retained message gone", &format!(
        "return !document.querySelector({a:?}) && !!document.querySelector(\"tr[data-topic='test/retained/b']\");"
    ))
    .await;
    let (mut check, _) = v5::Peer::connect(v5::options(s.mqtt, "retained-check")).await;
    check.subscribe("test/retained/#", QoS::AtLeastOnce).await;
    assert_eq!(&check.next_publish().await.topic[..], b"test/retained/b");
    check.expect_no_publish(Duration::from_millis(300)).await;

    // The in-page MQTT client, over the WebSocket listener.
    let (mut subscriber, _) = v5::Peer::connect(v5::options(s.mqtt, "hears-the-browser")).await;
    subscriber
        .subscribe("from/browser/#", QoS::AtLeastOnce)
        .await;
    click(page, "#tabs a[data-view='mqtt']").await;
    let url = until(
        page,
        "the WebSocket URL filled in",
        "return document.getElementById('mqtt-url').value || null;",
    )
    .await;
    assert_eq!(url, json!(format!("ws://{}/mqtt", s.ws)));
    type_into(page, "#mqtt-client-id", "in-page-client").await;
    click(page, "#mqtt-connect").await;
    text_is(page, "mqtt-status", "connected").await;
    type_into(page, "#mqtt-sub-filter", "to/browser/#").await;
    click(page, "#mqtt-subscribe").await;
    until(page, "the subscription", "return document.getElementById('mqtt-status').textContent.startsWith('subscribed to to/browser/#');").await;
    type_into(page, "#mqtt-pub-topic", "from/browser/hello").await;
    type_into(page, "#mqtt-pub-payload", "hi from chromium").await;
    page.find(Locator::Css("#mqtt-pub-qos option:nth-child(2)"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    click(page, "#mqtt-publish").await;
    let got = subscriber.next_publish().await;
    assert_eq!(
        (&got.topic[..], &got.payload[..]),
        (&b"from/browser/hello"[..], &b"hi from chromium"[..])
    );
    assert_eq!(got.qos, QoS::AtLeastOnce);
    subscriber
        .publish("to/browser/news", QoS::AtLeastOnce, false, b"hello page")
        .await;
    until(
        page,
        "the message in the page",
        "const li = document.querySelector(\"#mqtt-messages li[data-topic='to/browser/news']\"); \
        return !!li && li.querySelector('.payload').textContent === 'hello page';",
    )
    .await;

    shot(page, s, "dashboard-mqtt").await;

    // A phone-sized screen: nothing wider than the screen but the tables'
    // own scrolling boxes.
    page.set_window_size(390, 844).await.unwrap();
    for view in ["clients", "retained", "mqtt", "overview"] {
        click(page, &format!("#tabs a[data-view='{view}']")).await;
        until(
            page,
            &format!("the {view} view without horizontal overflow at phone width"),
            "return document.documentElement.scrollWidth <= window.innerWidth;",
        )
        .await;
    }
    shot(page, s, "dashboard-phone").await;
}

/// Runs [`flow`] in a new session of the browser `caps` ask `driver` for.
async fn run(browser: &'static str, driver: Driver, caps: serde_json::Map<String, Value>) {
    let mut config = Config {
        sys_interval: 0,
        ..admin_http::config()
    };
    config.listeners.push(ListenerConfig::new(
        ListenerKind::Ws,
        SocketAddr::from(([127, 0, 0, 1], 0)),
    ));
    let console = admin_http::Console::start(config).await;
    let setup = Setup {
        browser,
        admin: console.addr,
        mqtt: console.broker.addr,
        ws: console.broker.addr_of(ListenerKind::Ws),
    };
    let page = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .unwrap_or_else(|e| panic!("a WebDriver session with headless {browser}: {e}"));
    let outcome = AssertUnwindSafe(flow(&page, &setup)).catch_unwind().await;
    // The browser goes first (its driver ends it), then the driver.
    let _ = page.close().await;
    drop(driver);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_chromium() {
    let required = std::env::var_os("BROWSER_REQUIRE").is_some_and(|v| v == "1");
    let (Some(driver), Some(chromium)) = (
        binary("CHROMEDRIVER", "/usr/bin/chromedriver"),
        binary("CHROMIUM", "/usr/bin/chromium"),
    ) else {
        assert!(
            !required,
            "BROWSER_REQUIRE=1 but chromedriver or chromium is missing (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "SKIPPED the_dashboard_works_in_chromium: chromedriver or chromium not found (apt-get install chromium chromium-driver; BROWSER_REQUIRE=1 makes this a failure)"
        );
        return;
    };
    let driver = Driver::start(&driver, |port| {
        vec![format!("--port={port}"), "--allowed-ips=127.0.0.1".into()]
    })
    .await;
    let profile = tempfile::tempdir().unwrap();
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--hide-scrollbars", "--force-color-profile=srgb",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }),
    );
    run("chromium", driver, caps).await;
}

/// The same in Firefox, where a geckodriver is at hand: Debian packages
/// none, so this runs only when `GECKODRIVER` names one (and
/// `/usr/bin/firefox-esr`, or `FIREFOX`, exists); otherwise it says it
/// is skipped. CI does not run it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_works_in_firefox() {
    let geckodriver = std::env::var_os("GECKODRIVER")
        .map(PathBuf::from)
        .filter(|p| p.is_file());
    let (Some(driver), Some(firefox)) = (geckodriver, binary("FIREFOX", "/usr/bin/firefox-esr"))
    else {
        eprintln!(
            "SKIPPED the_dashboard_works_in_firefox: set GECKODRIVER to a geckodriver (and install firefox-esr) to run it"
        );
        return;
    };
    let driver = Driver::start(&driver, |port| {
        vec![
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            port.to_string(),
        ]
    })
    .await;
    let mut caps = serde_json::Map::new();
    caps.insert(
        "moz:firefoxOptions".into(),
        json!({ "binary": firefox, "args": ["-headless"] }),
    );
    run("firefox", driver, caps).await;
}
