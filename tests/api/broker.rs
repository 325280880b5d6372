//! Each device logs in with its own credential and reaches only its own topics (PROTOCOL.md
//! §2.2), on both brokers Herald supports: a real Mosquitto set up with the files `herald mqtt
//! acl` writes (the test starts its own `mosquitto` on a free port), and the in-process broker
//! of `herald serve`. One scenario runs against both.

use std::{
    net::TcpStream,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rumqttc::{
    Client, ConnectReturnCode, Connection, ConnectionError, Event, MqttOptions, Packet, QoS,
    SubscribeReasonCode,
};

use crate::cli::{Killed, herald};
use crate::helpers::free_port;

/// A private `mosquitto` on a free port, with `settings` (configuration lines) after its
/// listener; it stops when the handle drops.
pub fn start_mosquitto(dir: &Path, settings: &str) -> (Killed, u16) {
    let port = free_port();
    let config = dir.join("mosquitto.conf");
    // `user root` only keeps a broker started as root from dropping to the `mosquitto` user,
    // who could not read the test's private files; started as anyone else it has no effect.
    std::fs::write(
        &config,
        format!("listener {port} 127.0.0.1\npersistence false\nuser root\n{settings}"),
    )
    .expect("config");
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mosquitto is installed (Debian's mosquitto package)");
    let broker = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "mosquitto did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    (broker, port)
}

fn connect(port: u16, client_id: &str, user: &str, password: &str) -> (Client, Connection) {
    let mut options = MqttOptions::new(client_id, "127.0.0.1", port);
    options
        .set_credentials(user, password)
        .set_keep_alive(Duration::from_secs(5))
        .set_max_packet_size(256 * 1024, 256 * 1024);
    Client::new(options, 16)
}

/// Polls until `wanted` picks something out of an event, or `within` passes (then None).
fn wait_for<T>(
    connection: &mut Connection,
    within: Duration,
    mut wanted: impl FnMut(&Result<Event, ConnectionError>) -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + within;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match connection.recv_timeout(left) {
            Ok(event) => {
                if let Some(found) = wanted(&event) {
                    return Some(found);
                }
                if event.is_err() {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            Err(_) => return None,
        }
    }
    None
}

fn connected(connection: &mut Connection) -> Result<(), ConnectReturnCode> {
    wait_for(connection, Duration::from_secs(5), |event| match event {
        Ok(Event::Incoming(Packet::ConnAck(_))) => Some(Ok(())),
        Err(ConnectionError::ConnectionRefused(code)) => Some(Err(*code)),
        _ => None,
    })
    .expect("the broker answered the connect")
}

/// Polls every connection in turn (a connection sends only while it is polled) for
/// `within`; returns what each received, as (topic, payload).
fn pump(connections: &mut [&mut Connection], within: Duration) -> Vec<Vec<(String, String)>> {
    let mut got = vec![Vec::new(); connections.len()];
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for (connection, got) in connections.iter_mut().zip(got.iter_mut()) {
            if let Ok(Ok(Event::Incoming(Packet::Publish(p)))) =
                connection.recv_timeout(Duration::from_millis(20))
            {
                got.push((p.topic.clone(), String::from_utf8_lossy(&p.payload).into_owned()));
            }
        }
    }
    got
}

fn credential_of(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout)
        .lines()
        .find_map(|l| l.strip_prefix("credential: "))
        .expect("a credential")
        .to_owned()
}

#[test]
fn each_device_reaches_only_its_own_topics_on_a_mosquitto_set_up_by_herald() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let files = dir.path().join("broker");
    let run = |args: &[&str]| {
        let out = herald()
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .expect("runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    };
    run(&["migrate"]);
    let add = |id: &str| {
        credential_of(
            &run(&[
                "device",
                "add",
                "--channel",
                "loudspeaker",
                "--name",
                id,
                "--area",
                "530426101001",
                "--device-id",
                id,
            ])
            .stdout,
        )
    };
    let (a, b, c) = (add("spk-a"), add("spk-b"), add("spk-c"));
    run(&["device", "revoke", "spk-c"]);
    run(&["mqtt", "acl", "--out-dir", files.to_str().expect("path")]);
    // Given to the broker's group once, the password file keeps that group when the files
    // are written again after a device change (where this process may hand a file to another
    // group at all).
    #[cfg(unix)]
    {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let passwd = files.join("passwd");
        if std::os::unix::fs::chown(&passwd, None, Some(1)).is_ok() {
            run(&["mqtt", "acl", "--out-dir", files.to_str().expect("path")]);
            let meta = std::fs::metadata(&passwd).expect("passwd");
            assert_eq!(meta.gid(), 1, "the group given to passwd is kept");
            assert_eq!(meta.permissions().mode() & 0o777, 0o640);
        }
    }
    let hub_password = std::fs::read_to_string(files.join("hub.credential")).expect("hub credential");
    let settings = format!(
        "allow_anonymous false\npassword_file {}\nacl_file {}\n",
        files.join("passwd").display(),
        files.join("acl").display()
    );
    let (_broker, port) = start_mosquitto(dir.path(), &settings);
    each_device_stays_on_its_own_topics(
        port,
        ("herald-hub", hub_password.trim()),
        [&a, &b, &c].map(String::as_str),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_reaches_only_its_own_topics_on_the_in_process_broker() {
    use herald::broker::{BrokerGate, EmbeddedBroker, HubLogin};
    use herald::delivery::devices::{self, NewDevice};
    use herald_channels::ChannelKind;
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    let rows = ["spk-a", "spk-b", "spk-c"]
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let device = NewDevice {
                channel: ChannelKind::Loudspeaker,
                device_id: Some((*id).to_owned()),
                name: (*id).to_owned(),
                area_code: "530426101001".into(),
                group: String::new(),
                public_key: None,
            };
            (i + 1, device)
        })
        .collect();
    let issued = devices::add_devices(&app.hub, "test", None, rows, &|_| {})
        .await
        .expect("store")
        .expect("valid devices");
    devices::revoke_device(&app.hub, "test", None, "spk-c")
        .await
        .expect("revoked");
    let credential = |id: &str| {
        issued
            .iter()
            .find(|i| i.device.device_id == id)
            .map(|i| i.credential.clone())
            .expect("issued")
    };
    let (a, b, c) = (credential("spk-a"), credential("spk-b"), credential("spk-c"));
    let login = HubLogin {
        username: "herald~hub".into(),
        password: "the-hub's-secret-for-this-test".into(),
    };
    let gate = BrokerGate::new(login.clone());
    gate.attach(app.hub.clone());
    let broker = EmbeddedBroker::start("127.0.0.1:0", gate)
        .await
        .expect("the broker starts");
    let port = broker.local_addr().port();
    let b_again = b.clone();
    let since = app.hub.clock.now();
    tokio::task::spawn_blocking(move || {
        each_device_stays_on_its_own_topics(
            port,
            (&login.username, &login.password),
            [&a, &b, &c].map(String::as_str),
        );
    })
    .await
    .expect("the scenario");

    // Revoked while connected: its session is closed, and it cannot come back.
    let mut options = rumqttc::MqttOptions::new("spk-b", "127.0.0.1", port);
    options.set_credentials("spk-b", b_again);
    let (_client, mut events) = rumqttc::AsyncClient::new(options, 16);
    let first = tokio::time::timeout(Duration::from_secs(5), events.poll())
        .await
        .expect("an answer");
    assert!(
        matches!(first, Ok(Event::Incoming(Packet::ConnAck(_)))),
        "{first:?}"
    );
    devices::revoke_device(&app.hub, "test", None, "spk-b")
        .await
        .expect("revoked");
    let (_, closed) = broker
        .try_disconnect_revoked(&app.hub, since)
        .await
        .expect("looked");
    assert_eq!(closed, 1);
    let mut ended = false;
    let mut refused = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline && !refused {
        match tokio::time::timeout(Duration::from_secs(2), events.poll()).await {
            Ok(Err(ConnectionError::ConnectionRefused(_))) => refused = true,
            Ok(Err(_)) => ended = true,
            Ok(Ok(_)) | Err(_) => {}
        }
    }
    assert!(
        ended && refused,
        "the session ended ({ended}) and logging in again was refused ({refused})"
    );
    broker.shutdown().await;
}

/// Devices spk-a and spk-b (spk-c revoked) on the broker at `port`, with these credentials,
/// and the hub's login.
fn each_device_stays_on_its_own_topics(
    port: u16,
    (hub_user, hub_password): (&str, &str),
    [a, b, c]: [&str; 3],
) {
    // Wrong, revoked and unknown logins are refused.
    for (user, password) in [("spk-a", b), ("spk-c", c), ("spk-x", a)] {
        // Each as its own client id, so the in-process broker checks the password itself.
        let (_client, mut connection) = connect(port, user, user, password);
        let refused = connected(&mut connection).expect_err("refused");
        assert!(
            matches!(
                refused,
                ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
            ),
            "{user}: {refused:?}"
        );
    }

    let (hub, mut hub_connection) = connect(port, "hub", hub_user, hub_password);
    connected(&mut hub_connection).expect("the hub logs in");
    hub.subscribe("herald/v1/d/+/+", QoS::AtLeastOnce)
        .expect("subscribe");
    let (device_a, mut a_connection) = connect(port, "spk-a", "spk-a", a);
    connected(&mut a_connection).expect("device A logs in");
    let (device_b, mut b_connection) = connect(port, "spk-b", "spk-b", b);
    connected(&mut b_connection).expect("device B logs in");
    device_b
        .subscribe("herald/v1/d/spk-b/cmd", QoS::AtLeastOnce)
        .expect("subscribe");

    // A may subscribe to its own and area command topics. Its subscription to B's is either
    // refused in the SUBACK or (Mosquitto 2.0 acknowledges it) filtered at delivery: below, A
    // hears nothing sent to B.
    for (topic, allowed) in [
        ("herald/v1/d/spk-a/cmd", true),
        ("herald/v1/a/530426101001/cmd", true),
        ("herald/v1/d/spk-b/cmd", false),
    ] {
        device_a.subscribe(topic, QoS::AtLeastOnce).expect("subscribe");
        let code = wait_for(&mut a_connection, Duration::from_secs(5), |event| match event {
            Ok(Event::Incoming(Packet::SubAck(ack))) => ack.return_codes.first().cloned(),
            _ => None,
        })
        .expect("a SUBACK");
        if allowed {
            assert_eq!(code, SubscribeReasonCode::Success(QoS::AtLeastOnce), "{topic}");
        }
    }
    // Settle every subscription before counting deliveries.
    pump(
        &mut [&mut hub_connection, &mut a_connection, &mut b_connection],
        Duration::from_millis(500),
    );

    // A reports on its own topic and tries to report for B and to command B.
    device_a
        .publish("herald/v1/d/spk-a/status", QoS::AtLeastOnce, false, "a-online")
        .expect("publish");
    device_a
        .publish("herald/v1/d/spk-b/status", QoS::AtLeastOnce, false, "forged-by-a")
        .expect("publish");
    device_a
        .publish("herald/v1/d/spk-b/cmd", QoS::AtLeastOnce, false, "hoax-from-a")
        .expect("publish");
    // The hub commands each device.
    hub.publish("herald/v1/d/spk-a/cmd", QoS::AtLeastOnce, false, "cmd-for-a")
        .expect("publish");
    hub.publish("herald/v1/d/spk-b/cmd", QoS::AtLeastOnce, false, "cmd-for-b")
        .expect("publish");

    let mut at = pump(
        &mut [&mut hub_connection, &mut a_connection, &mut b_connection],
        Duration::from_secs(2),
    );
    let (at_b, at_a, at_hub) = (
        at.pop().unwrap_or_default(),
        at.pop().unwrap_or_default(),
        at.pop().unwrap_or_default(),
    );
    assert_eq!(
        at_a,
        vec![("herald/v1/d/spk-a/cmd".to_owned(), "cmd-for-a".to_owned())],
        "A hears its own command only"
    );
    assert_eq!(
        at_b,
        vec![("herald/v1/d/spk-b/cmd".to_owned(), "cmd-for-b".to_owned())],
        "B never hears A's hoax"
    );
    // The hub reads every device topic, its own commands included; what A forged never
    // reached anyone.
    let mut at_hub = at_hub;
    at_hub.sort();
    assert_eq!(
        at_hub,
        vec![
            ("herald/v1/d/spk-a/cmd".to_owned(), "cmd-for-a".to_owned()),
            ("herald/v1/d/spk-a/status".to_owned(), "a-online".to_owned()),
            ("herald/v1/d/spk-b/cmd".to_owned(), "cmd-for-b".to_owned()),
        ],
        "neither A's report for B nor its command to B went through"
    );

    // Packets larger than a connection's first read buffer (8 KiB on the in-process broker)
    // arrive whole both ways: a command with a long text (120 KB), a long report (12 KB).
    let command = "令".repeat(40_000);
    let report = "报".repeat(4_000);
    hub.publish("herald/v1/d/spk-a/cmd", QoS::AtLeastOnce, false, command.clone())
        .expect("publish");
    device_a
        .publish(
            "herald/v1/d/spk-a/health",
            QoS::AtLeastOnce,
            false,
            report.clone(),
        )
        .expect("publish");
    let mut at = pump(
        &mut [&mut hub_connection, &mut a_connection],
        Duration::from_secs(2),
    );
    let (at_a, mut at_hub) = (at.pop().unwrap_or_default(), at.pop().unwrap_or_default());
    assert_eq!(
        at_a,
        vec![("herald/v1/d/spk-a/cmd".to_owned(), command.clone())],
        "A hears the whole command"
    );
    at_hub.sort();
    assert_eq!(
        at_hub,
        vec![
            ("herald/v1/d/spk-a/cmd".to_owned(), command),
            ("herald/v1/d/spk-a/health".to_owned(), report),
        ],
        "the hub hears the whole report"
    );
}
