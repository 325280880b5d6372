//! Two `herald serve` processes on one PostgreSQL and one Mosquitto, 2,000 virtual
//! loudspeakers: every device carries each command out once and every report is recorded
//! once, though both instances claim deliveries and both hear every report. The test starts
//! its own Mosquitto, configured as the README says for production (queues not capped at
//! 1,000 messages per client), on a free port.

use std::{
    io::{BufRead, BufReader},
    process::Stdio,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use herald::{
    clock::Clock,
    simulate::{self, Behaviour, Tally},
};
use herald_channels::ChannelKind;
use serde_json::json;

use crate::cli::{Killed, herald};
use crate::helpers::{Backend, TestApp, item_body, spawn_app_configured};

const DEVICES: usize = 2000;
const VILLAGE: &str = "530426101001";

/// `herald serve` on the test app's configuration, running once it says where it listens.
fn serve(app: &TestApp) -> Killed {
    let mut child = herald()
        .arg("--config")
        .arg(&app.config_path)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("herald serve starts");
    let stdout = child.stdout.take().expect("stdout");
    let listening = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.starts_with("Herald listening on "));
    assert!(listening, "herald serve stopped before it listened");
    Killed(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_serves_on_postgresql_and_mosquitto_send_each_of_2000_devices_its_command_once_and_record_each_report_once()
 {
    if std::env::var("HERALD_TEST_DATABASE_URL").is_err() {
        eprintln!("HERALD_TEST_DATABASE_URL is not set: no PostgreSQL for two instances to share");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (_broker, port) = crate::broker::start_mosquitto(
        dir.path(),
        "allow_anonymous true\nmax_queued_messages 100000\nmax_inflight_messages 0\n",
    );
    let app = spawn_app_configured(Backend::Postgres, Vec::new(), |s| {
        s.mqtt.url = format!("mqtt://127.0.0.1:{port}");
    })
    .await;
    // The instances keep real time; so do the devices and this test's own hub.
    app.hub.clock.set(chrono::Utc::now());
    let fleet = simulate::register(
        &app.hub,
        "test",
        (ChannelKind::Loudspeaker, VILLAGE),
        DEVICES,
        "two",
    )
    .await
    .expect("store")
    .expect("valid devices");
    let run = fleet[0].device_id.rsplit_once('-').expect("an id").0.to_owned();
    let (_first, _second) = (serve(&app), serve(&app));

    let link = app.hub.device_link.clone().expect("a device link");
    let trusted = simulate::trusted(&link);
    let tally = Arc::new(Tally::default());
    for device in fleet {
        let tally = tally.clone();
        let address = ("127.0.0.1".to_owned(), port);
        tokio::spawn(async move {
            let now = simulate::hub_time(&Clock::System);
            if let Err(e) =
                simulate::run_device(device, trusted, address, now, Behaviour::default(), tally).await
            {
                panic!("a simulated device stopped: {e}");
            }
        });
    }
    let online = format!(
        "SELECT COUNT(*) FROM devices WHERE device_id LIKE '{run}-%' AND online AND firmware_version = 'sim-1.0'"
    );
    let mut born = 0;
    for _ in 0..600 {
        born = app.count(&online).await;
        if born == DEVICES as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        born,
        DEVICES as i64,
        "devices announced themselves to the instances: {}",
        tally.line()
    );

    // Published here; sent by whichever instance claims each delivery.
    let item = app
        .publish_new(&item_body(VILLAGE), &json!({"channels": ["loudspeaker"]}))
        .await;
    let played = format!(
        "SELECT COUNT(*) FROM deliveries WHERE item_id = '{item}' AND kind = 'publish' AND state = 'played'"
    );
    let mut done = 0;
    for _ in 0..1200 {
        done = app.count(&played).await;
        if done == DEVICES as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(done, DEVICES as i64, "deliveries played: {}", tally.line());
    let sent_more_than_once = app
        .count(&format!(
            "SELECT COUNT(*) FROM deliveries WHERE item_id = '{item}' AND kind = 'publish' AND attempts <> 1"
        ))
        .await;
    assert_eq!(sent_more_than_once, 0, "each delivery was claimed and sent once");

    // Each device carried the command out once. An instance that hears a device's birth after
    // the command went out sends it again (it cannot tell it arrived); the device refuses such
    // a copy as a replay.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    assert_eq!(n(&tally.carried_out), DEVICES as u64, "{}", tally.line());
    // Verified, started, finished and the proof from each device, and a refusal per copy:
    // each stored once, though both instances heard them all.
    let stored = format!("SELECT COUNT(*) FROM receipt_inbox WHERE dedup LIKE '{run}-%'");
    let expected = 4 * DEVICES as i64 + i64::try_from(n(&tally.refused)).expect("n");
    let mut got = 0;
    for _ in 0..100 {
        got = app.count(&stored).await;
        if got == expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, expected, "{}", tally.line());
}
