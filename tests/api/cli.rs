//! The `herald` binary as an operator uses it.

use std::{
    io::{BufRead, BufReader, Write},
    process::{Child, Command, Stdio},
};

pub fn herald() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    // The harness's own variables must not leak into the binary under test.
    command
        .env_remove("HERALD_TEST_DATABASE_URL")
        .env_remove("HERALD_TEST_MQTT_URL");
    command
}

pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_first_serve_on_an_empty_data_dir_migrates_creates_an_admin_and_answers_health_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let child = herald()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--mqtt-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("herald serve starts");
    let mut child = Killed(child);
    let stdout = child.0.stdout.take().expect("stdout");
    let mut password = None;
    let mut address = None;
    let mut key_announced = false;
    let mut broker = None;
    let mut data_dir = None;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("line");
        if let Some(d) = line.strip_prefix("data directory: ") {
            data_dir = Some(d.to_owned());
        }
        key_announced |= line.starts_with("Generated the key that encrypts target secrets");
        if let Some(b) = line.strip_prefix("MQTT broker for devices listening on ") {
            broker = Some(b.to_owned());
        }
        if let Some(p) = line.strip_prefix("one-time password: ") {
            password = Some(p.to_owned());
        }
        if let Some(a) = line.strip_prefix("Herald listening on ") {
            address = Some(a.to_owned());
            break;
        }
    }
    let address = address.expect("serve printed where it listens");
    // The binary turns transparent huge pages off for itself (main.rs says why).
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.0.id())).expect("status");
        assert!(
            status
                .lines()
                .any(|l| l.split_whitespace().eq(["THP_enabled:", "0"])),
            "{status}"
        );
    }
    assert_eq!(
        data_dir,
        Some(
            std::path::absolute(dir.path())
                .expect("absolute")
                .display()
                .to_string()
        ),
        "serve printed the absolute data directory"
    );
    // With no external broker configured, serve runs its own; it lets in no one unknown.
    let broker: std::net::SocketAddr = broker
        .expect("serve printed where its MQTT broker listens")
        .parse()
        .expect("HOST:PORT");
    let mut options = rumqttc::MqttOptions::new("ls-nobody", "127.0.0.1", broker.port());
    options.set_credentials("ls-nobody", "hdev_wrong");
    let (_client, mut connection) = rumqttc::Client::new(options, 4);
    let answer = connection
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the broker answers");
    assert!(
        matches!(answer, Err(rumqttc::ConnectionError::ConnectionRefused(_))),
        "{answer:?}"
    );
    let password = password.expect("serve printed the first admin's password");
    assert!(
        key_announced,
        "serve told the operator it generated the secrets key"
    );
    let key = std::fs::read_to_string(dir.path().join("secrets.key")).expect("secrets.key written");
    assert_eq!(key.trim().len(), 64, "a 32-byte key in hex");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let secrets = runtime.block_on(async {
        let client = reqwest::Client::new();
        let health = client
            .get(format!("{address}/healthz"))
            .send()
            .await
            .expect("healthz");
        assert_eq!(health.status(), 200);
        let login = client
            .post(format!("{address}/api/v1/session"))
            .json(&serde_json::json!({"username": "admin", "password": password}))
            .send()
            .await
            .expect("login");
        assert_eq!(login.status(), 200);
        let admin = session_of(&login);
        // The printed password is one-time: nothing else until the administrator chooses one.
        let locked = client.get(format!("{address}/api/v1/items")).header("cookie", &admin).send().await.expect("items");
        assert_eq!(locked.status(), 403);
        let chosen = client
            .post(format!("{address}/api/v1/me/password"))
            .header("cookie", &admin)
            .json(&serde_json::json!({"current_password": password, "new_password": "峨山-admin-2026"}))
            .send()
            .await
            .expect("change");
        assert_eq!(chosen.status(), 200);

        // The whole pipeline through the running server, its worker included.
        let reviewer = client
            .post(format!("{address}/api/v1/users"))
            .header("cookie", &admin)
            .json(&serde_json::json!({"username": "reviewer", "role": "reviewer", "area_code": "530426", "password": "reviewer-password"}))
            .send()
            .await
            .expect("create reviewer");
        assert_eq!(reviewer.status(), 201);
        let reviewer_login = client
            .post(format!("{address}/api/v1/session"))
            .json(&serde_json::json!({"username": "reviewer", "password": "reviewer-password"}))
            .send()
            .await
            .expect("login");
        let reviewer = session_of(&reviewer_login);
        let post = |cookie: &str, path: String, body: serde_json::Value| {
            client.post(format!("{address}{path}")).header("cookie", cookie.to_owned()).header("Idempotency-Key", "first").json(&body).send()
        };
        let created: serde_json::Value =
            post(&admin, "/api/v1/items".into(), crate::helpers::item_body("530426")).await.expect("create").json().await.expect("json");
        let id = created["id"].as_str().expect("id").to_owned();
        post(&admin, format!("/api/v1/items/{id}/submit"), serde_json::json!({})).await.expect("submit");
        post(&reviewer, format!("/api/v1/items/{id}/confidentiality-check"), serde_json::json!({"version": 1, "confirmed": true})).await.expect("check");
        post(&reviewer, format!("/api/v1/items/{id}/approve"), serde_json::json!({"version": 1})).await.expect("approve");
        let published = post(&admin, format!("/api/v1/items/{id}/publish"), serde_json::json!({})).await.expect("publish");
        assert_eq!(published.status(), 201);
        let mut status = 0;
        for _ in 0..100 {
            status = client.get(format!("{address}/xxgk/items/{id}")).send().await.expect("page").status().as_u16();
            if status == 200 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(status, 200, "the worker in `serve` put the page live");
        let bearer = client
            .get(format!("{address}/api/v1/items"))
            .bearer_auth("not-a-token-but-secret-looking")
            .send()
            .await
            .expect("bearer");
        assert_eq!(bearer.status(), 401);
        [admin, reviewer, "not-a-token-but-secret-looking".to_owned(), password.clone()]
    });
    drop(child);
    // One log line per request, and no credential in any of them.
    let log = std::fs::read_to_string(&log_path).expect("log");
    let served: Vec<_> = log.lines().filter(|l| l.contains("request served")).collect();
    assert!(
        served
            .iter()
            .any(|l| l.contains("route=/healthz") && l.contains("status=200")),
        "{log}"
    );
    assert!(
        served
            .iter()
            .any(|l| l.contains("route=/api/v1/session") && l.contains("method=POST")),
        "{log}"
    );
    for secret in &secrets {
        let value = secret.trim_start_matches("herald_session=");
        assert!(!log.contains(value), "a credential reached the log: {log}");
    }
    assert!(
        dir.path().join("herald.db").exists(),
        "the embedded default is a SQLite file in the data dir"
    );
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let taken = format!("127.0.0.1:{}", holder.local_addr().expect("addr").port());
    // The HTTP port, then the in-process broker's, each taken while the other is free.
    for (http, mqtt, way_out) in [
        (taken.as_str(), "127.0.0.1:0", "--listen"),
        ("127.0.0.1:0", taken.as_str(), "--mqtt-listen"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let output = herald()
            .args(["serve", "--listen", http, "--mqtt-listen", mqtt, "--data-dir"])
            .arg(dir.path())
            .output()
            .expect("runs");
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(&format!("cannot listen on {taken}")), "{stderr}");
        if way_out == "--mqtt-listen" {
            assert_eq!(output.status.code(), Some(2));
            assert!(
                stderr.contains("already in use") && stderr.contains(way_out) && stderr.contains("mqtt.url"),
                "{stderr}"
            );
        }
    }
}

#[test]
fn users_and_tokens_are_managed_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        herald()
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .output()
            .expect("runs")
    };

    // No database here yet: a command other than serve or migrate says where it looked, and
    // makes none.
    let elsewhere = run(&["user", "list"]);
    assert!(!elsewhere.status.success());
    let looked = String::from_utf8_lossy(&elsewhere.stderr);
    let absolute = std::path::absolute(dir.path().join("herald.db")).expect("absolute");
    assert!(
        looked.contains(&format!("no Herald database at {}", absolute.display())),
        "{looked}"
    );
    assert!(!dir.path().join("herald.db").exists());
    assert!(run(&["migrate"]).status.success());

    let added = run(&[
        "user",
        "add",
        "--username",
        "wang.wu",
        "--role",
        "reviewer",
        "--area",
        "530426101",
    ]);
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(String::from_utf8_lossy(&added.stdout).contains("one-time password: "));

    let bad_area = run(&[
        "user",
        "add",
        "--username",
        "zhao",
        "--role",
        "publisher",
        "--area",
        "999999",
    ]);
    assert!(!bad_area.status.success());
    assert!(String::from_utf8_lossy(&bad_area.stderr).contains("area_code"));
    let bad_role = run(&[
        "user",
        "add",
        "--username",
        "zhao",
        "--role",
        "mayor",
        "--area",
        "530426",
    ]);
    assert_eq!(bad_role.status.code(), Some(2), "clap refuses an unknown role");

    let token = run(&["token", "create", "--user", "wang.wu", "--name", "ci"]);
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    assert!(String::from_utf8_lossy(&token.stdout).contains("hrld_"));

    // A reset gives a one-time password; the user changes it from the command line too.
    let reset = run(&["user", "reset-password", "wang.wu"]);
    assert!(
        reset.status.success(),
        "{}",
        String::from_utf8_lossy(&reset.stderr)
    );
    let reset = String::from_utf8_lossy(&reset.stdout).into_owned();
    let one_time = reset
        .lines()
        .find_map(|l| l.strip_prefix("one-time password: "))
        .expect("printed")
        .to_owned();
    let passwd = |input: String| {
        let mut child = herald()
            .arg("--data-dir")
            .arg(dir.path())
            .args(["user", "passwd", "wang.wu"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("written");
        child.wait_with_output().expect("ends")
    };
    let weak = passwd(format!("{one_time}\nshort\n"));
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr).contains("new_password"));
    let changed = passwd(format!("{one_time}\n森林防火-2026-峨山\n"));
    assert!(
        changed.status.success(),
        "{}",
        String::from_utf8_lossy(&changed.stderr)
    );

    // Moved to another area of the tree (the first administrator, after the demo county is
    // replaced by the real one); an area outside it is refused.
    let moved = run(&["user", "rescope", "wang.wu", "--area", "530426"]);
    assert!(
        moved.status.success(),
        "{}",
        String::from_utf8_lossy(&moved.stderr)
    );
    assert!(String::from_utf8_lossy(&moved.stdout).contains("now works within 530426"));
    let outside = run(&["user", "rescope", "wang.wu", "--area", "999999"]);
    assert!(!outside.status.success());
    assert!(String::from_utf8_lossy(&outside.stderr).contains("area_code"));

    let disabled = run(&["user", "disable", "wang.wu"]);
    assert!(disabled.status.success());
    let listed = run(&["user", "list"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains("wang.wu\treviewer\t530426\tdisabled"), "{listed}");

    let unknown = run(&["user", "disable", "nobody"]);
    assert!(!unknown.status.success());

    let verified = run(&["audit", "verify"]);
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

#[test]
fn configuration_is_layered_file_then_environment_then_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:7001\"\n[auth]\nsession_hours = 4\n",
    )
    .expect("write");
    let check = |extra_env: &[(&str, &str)], flags: &[&str]| {
        let mut command = herald();
        command.arg("--config").arg(&file).arg("check-config").args(flags);
        for (k, v) in extra_env {
            command.env(k, v);
        }
        command.output().expect("runs")
    };
    let from_file = check(&[], &[]);
    assert!(
        from_file.status.success(),
        "{}",
        String::from_utf8_lossy(&from_file.stderr)
    );
    let text = String::from_utf8_lossy(&from_file.stdout);
    assert!(
        text.contains("listen = \"127.0.0.1:7001\"") && text.contains("session_hours = 4"),
        "{text}"
    );

    let from_env = check(&[("HERALD_AUTH__SESSION_HOURS", "9")], &[]);
    assert!(String::from_utf8_lossy(&from_env.stdout).contains("session_hours = 9"));

    let from_flag = check(
        &[("HERALD_STORAGE__DATA_DIR", "/from-env")],
        &["--data-dir", "/from-flag"],
    );
    let text = String::from_utf8_lossy(&from_flag.stdout);
    assert!(text.contains("data_dir = \"/from-flag\""), "{text}");

    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:7001\"\nport = 3\n").expect("write");
    let unknown = check(&[], &[]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("port"),
        "the unknown key is named"
    );

    let bad_env = check(&[("HERALD_AUTH__SESSION_HOURS", "many")], &[]);
    assert_eq!(bad_env.status.code(), Some(2));

    // Values that parse but would make the hub unusable are refused, naming the setting.
    std::fs::write(&file, "[server]\nlisten = \"127.0.0.1:7001\"\n").expect("write");
    for (key, value) in [
        ("HERALD_AUTH__SESSION_HOURS", "0"),
        ("HERALD_AUTH__LOGIN_WINDOW_MINUTES", "0"),
        ("HERALD_SERVER__PUBLIC_URL", "www.eshan.gov.cn"),
        ("HERALD_SERVER__LISTEN", "localhost"),
        ("HERALD_CONTENT__MAX_BODY_BYTES", "10"),
    ] {
        let refused = check(&[(key, value)], &[]);
        assert_eq!(refused.status.code(), Some(2), "{key}={value}");
        let named = key
            .trim_start_matches("HERALD_")
            .replace("__", ".")
            .to_lowercase();
        assert!(
            String::from_utf8_lossy(&refused.stderr).contains(&named),
            "{key}: {}",
            String::from_utf8_lossy(&refused.stderr)
        );
    }

    // What it prints can be pasted into a ticket: no secret is in it, the rest is.
    let with_secrets = check(
        &[
            (
                "HERALD_STORAGE__DATABASE_URL",
                "postgres://herald:db-pass-7f3a@db.example:5432/herald",
            ),
            (
                "HERALD_STORAGE__SECRETS_KEY",
                "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e7a9b1",
            ),
            ("HERALD_MQTT__URL", "mqtt://hub:url-pass-51c8@broker.example:1883"),
            ("HERALD_MQTT__PASSWORD", "mqtt-pass-2e6d"),
            ("HERALD_SERVER__METRICS_TOKEN", "metrics-token-8c1b"),
        ],
        &[],
    );
    let text = String::from_utf8_lossy(&with_secrets.stdout);
    for secret in [
        "db-pass-7f3a",
        "5ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e75ec2e7a9b1",
        "url-pass-51c8",
        "mqtt-pass-2e6d",
        "metrics-token-8c1b",
    ] {
        assert!(!text.contains(secret), "{secret} is printed:\n{text}");
    }
    assert!(
        text.contains("db.example:5432/herald") && text.contains("broker.example"),
        "{text}"
    );

    let missing = herald()
        .args(["--config", "/nonexistent/herald.toml", "check-config"])
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(2));
}

/// Runs `herald bench ARGS`, checks it succeeded and printed every one of `figures`.
fn bench_prints_once(args: &[&str], figures: &[&str]) {
    let output = herald().arg("bench").args(args).output().expect("runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    for figure in figures {
        assert!(stdout.contains(figure), "{figure}: {stdout}");
    }
}

/// `bench_prints_once` on SQLite, then on PostgreSQL when the tests have one.
fn bench_prints(args: &[&str], figures: &[&str]) {
    bench_prints_once(args, figures);
    if let Ok(url) = std::env::var("HERALD_TEST_DATABASE_URL") {
        bench_prints_once(&[args, &["--postgres", &url]].concat(), figures);
    }
}

#[test]
fn the_publish_benchmark_runs_on_sqlite_and_postgres() {
    bench_prints(
        &["publish", "--targets", "300", "--summary-runs", "3"],
        &["deliveries written: 300", "item delivery summary"],
    );
}

/// `herald bench deliver` both ways: a publish to idle claim loops hands them every delivery,
/// one to busy loops leaves them to be claimed; either way all end `delivered` (the benchmark
/// fails otherwise). Small and in a debug build: the figures that count come from release.
#[test]
fn the_deliver_benchmark_drains_handed_and_claimed_deliveries() {
    bench_prints(
        &["deliver", "--targets", "2000"],
        &[
            "claim loops at the publish: idle; deliveries it leased to them (handed over): 2000",
            "drain 2000 deliveries to delivered",
            "drain / write",
        ],
    );
    bench_prints(
        &["deliver", "--targets", "2000", "--busy-loops"],
        &[
            "claim loops at the publish: busy; deliveries it leased to them (handed over): 0",
            "drain 2000 deliveries to delivered",
            "drain / write",
        ],
    );
}

#[test]
fn the_receipts_benchmark_applies_every_receipt() {
    bench_prints(
        &["receipts", "--deliveries", "2000"],
        &["intake 2000 receipts", "apply 2000 receipts", "receipts/s"],
    );
}

/// `herald bench search` over more pages than one window of a PostgreSQL search, so its later
/// windows run too; the benchmark checks every portal search against a scan and fails on a
/// difference.
#[test]
fn the_search_benchmark_checks_its_searches_on_sqlite_and_postgres() {
    bench_prints(
        &["search", "--items", "2500", "--queries", "4"],
        &[
            "2500 published items",
            "28 searches, each checked against a scan",
            "portal search",
            "staff list search",
            "发文字号",
            "no match",
        ],
    );
}

/// `herald bench portal` runs briefly end to end: the hub's item page and nginx, each under
/// wrk, each answering without errors (nginx and wrk come from scripts/install-test-deps).
#[test]
fn the_portal_benchmark_loads_the_hub_beside_nginx() {
    bench_prints_once(
        &["portal", "--seconds", "1", "--connections", "8"],
        &[
            "herald (kept pages",
            "nginx (the same bytes",
            "ratio herald / nginx",
        ],
    );
}

fn session_of(response: &reqwest::Response) -> String {
    let cookie = response
        .cookies()
        .find(|c| c.name() == "herald_session")
        .expect("session cookie");
    format!("herald_session={}", cookie.value())
}

#[test]
fn serve_on_postgresql_without_a_secrets_key_refuses_to_start_naming_the_setting() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = herald()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .env(
            "HERALD_STORAGE__DATABASE_URL",
            "postgres://herald@127.0.0.1:1/herald",
        )
        .env_remove("HERALD_STORAGE__SECRETS_KEY")
        .output()
        .expect("herald serve runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("storage.secrets_key"), "{stderr}");
    assert!(
        !dir.path().join("secrets.key").exists(),
        "no key file for PostgreSQL"
    );
}

#[test]
fn devices_are_registered_listed_imported_and_revoked_from_the_command_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let run = |args: &[&str]| {
        herald()
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .output()
            .expect("runs")
    };
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    assert!(run(&["migrate"]).status.success());

    let added = run(&[
        "device",
        "add",
        "--channel",
        "loudspeaker",
        "--name",
        "大村一组喇叭",
        "--area",
        "530426101001",
        "--device-id",
        "ls-dz-001",
    ]);
    assert!(added.status.success(), "{}", text(&added.stderr));
    assert!(
        text(&added.stdout).contains("credential: hdev_"),
        "{}",
        text(&added.stdout)
    );
    let wrong = run(&[
        "device",
        "add",
        "--channel",
        "loudspeaker",
        "--name",
        "喇叭",
        "--area",
        "999",
    ]);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong.stderr).contains("--area: "),
        "{}",
        text(&wrong.stderr)
    );

    // A file with a wrong row registers nothing and leaves no credentials file behind.
    let file = dir.path().join("devices.csv");
    let out = dir.path().join("credentials.csv");
    std::fs::write(
        &file,
        "channel,name,area_code,device_id\n\
         loudspeaker,二组喇叭,530426101001,ls-dz-002\n\
         notice_board,公开屏,530426101001,ls-dz-001\n",
    )
    .expect("file");
    let import = |out: &std::path::Path| {
        run(&[
            "device",
            "import",
            file.to_str().expect("path"),
            "--credentials-out",
            out.to_str().expect("path"),
        ])
    };
    let refused = import(&out);
    assert!(!refused.status.success());
    let stderr = text(&refused.stderr);
    assert!(stderr.contains("line 3: device_id"), "{stderr}");
    assert!(stderr.contains("nothing was registered"), "{stderr}");
    assert!(!out.exists());

    std::fs::write(
        &file,
        "channel,name,area_code,device_id,group\n\
         loudspeaker,二组喇叭,530426101001,ls-dz-002,二组\n\
         notice_board,公开屏,530426101001,,\n",
    )
    .expect("file");
    let imported = import(&out);
    assert!(imported.status.success(), "{}", text(&imported.stderr));
    let credentials = std::fs::read_to_string(&out).expect("credentials file");
    let lines: Vec<&str> = credentials.lines().collect();
    assert_eq!(lines[0], "device_id,credential");
    assert_eq!(lines.len(), 3, "{credentials}");
    assert!(lines[1].starts_with("ls-dz-002,hdev_"), "{credentials}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&out).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only its owner reads the credentials");
    }
    // An existing credentials file is never overwritten.
    let again = import(&out);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("--credentials-out"),
        "{}",
        text(&again.stderr)
    );

    let reissued = run(&["device", "reissue", "ls-dz-002"]);
    assert!(reissued.status.success(), "{}", text(&reissued.stderr));
    assert!(text(&reissued.stdout).contains("credential: hdev_"));
    assert!(
        !credentials.contains(
            text(&reissued.stdout)
                .trim_start_matches("credential: ")
                .lines()
                .next()
                .unwrap_or("-")
        )
    );
    let revoked = run(&["device", "revoke", "ls-dz-001"]);
    assert!(revoked.status.success(), "{}", text(&revoked.stderr));
    let listed = text(&run(&["device", "list"]).stdout);
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert!(
        listed.contains("ls-dz-001\tloudspeaker\t530426101001\t\trevoked\tnever seen"),
        "{listed}"
    );
    assert!(
        listed.contains("ls-dz-002\tloudspeaker\t530426101001\t二组\tactive"),
        "{listed}"
    );
    let unknown = run(&["device", "revoke", "ls-nobody"]);
    assert!(!unknown.status.success());

    // The simulator's loudspeakers play only codecs the protocol names.
    let flac = run(&["simulate", "--area", "530426101001", "--codecs", "mp3,flac"]);
    assert_eq!(flac.status.code(), Some(2));
    assert!(
        text(&flac.stderr).contains("--codecs: `flac`"),
        "{}",
        text(&flac.stderr)
    );
}

/// `herald bench fanout` runs end to end on the test broker (a few devices: its figures are
/// for a release build and a broker set up for thousands, see the README).
#[test]
fn the_fanout_benchmark_runs_and_prints_its_figures() {
    // On herald serve's own broker (devices in this process, then in two others), and on the
    // machine's Mosquitto when there is one.
    let mut runs = vec![("in-process".to_owned(), "0"), ("in-process".to_owned(), "2")];
    runs.extend(std::env::var("HERALD_TEST_MQTT_URL").ok().map(|url| (url, "0")));
    for (broker, processes) in runs {
        let output = herald()
            .args(["bench", "fanout", "--devices", "20", "--mqtt", &broker])
            .args(["--device-processes", processes])
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{broker}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in [
            "hub: received by 20 of 20 devices",
            "in the store after",
            "peer (plain MQTT client",
            "last device, hub / peer:",
        ] {
            assert!(stdout.contains(line), "{broker}: no `{line}` in: {stdout}");
        }
    }
}

/// Issue 10, point 16: a running hub backed up, the copy restored into an empty data
/// directory, with every item, attachment and receipt, and an intact audit chain.
#[tokio::test]
async fn a_running_hub_is_backed_up_and_the_copy_restores_with_every_item_and_receipt() {
    use sea_orm::ConnectionTrait;
    let app = crate::helpers::spawn_app(crate::helpers::Backend::Sqlite).await;
    let pdf = b"%PDF-1.7\n%backup\n".to_vec();
    let sha = app.upload("publisher", "application/pdf", pdf).await.json["sha256"]
        .as_str()
        .expect("sha")
        .to_owned();
    let mut body = crate::helpers::item_body("530426");
    body["attachments"] = serde_json::json!([{"sha256": sha, "filename": "方案.pdf"}]);
    app.publish_new(&body, &serde_json::json!({})).await;
    app.publish_new(&crate::helpers::item_body("530426"), &serde_json::json!({}))
        .await;
    app.deliver_due().await;

    let out = tempfile::tempdir().expect("tempdir");
    let backup = out.path().join("backup");
    // The hub keeps running (and serving) while it is copied.
    let backed = tokio::task::spawn_blocking({
        let (config, backup) = (app.config_path.clone(), backup.clone());
        move || {
            herald()
                .arg("--config")
                .arg(config)
                .arg("backup")
                .arg("--out")
                .arg(backup)
                .output()
                .expect("runs")
        }
    })
    .await
    .expect("joined");
    assert!(
        backed.status.success(),
        "{}",
        String::from_utf8_lossy(&backed.stderr)
    );
    assert_eq!(app.public_get("/healthz").await.status, 200);
    let again = herald()
        .arg("--config")
        .arg(&app.config_path)
        .args(["backup", "--out"])
        .arg(&backup)
        .output()
        .expect("runs");
    assert!(!again.status.success(), "a backup never overwrites another");

    // Restored: the copy is the data directory of another hub.
    let verified = herald()
        .arg("--data-dir")
        .arg(&backup)
        .args(["audit", "verify"])
        .output()
        .expect("runs");
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let count = |db: sea_orm::DatabaseConnection, table: &'static str| async move {
        let row = db
            .query_one_raw(sea_orm::Statement::from_string(
                db.get_database_backend(),
                format!("SELECT COUNT(*) FROM {table}"),
            ))
            .await
            .expect("count")
            .expect("a row");
        row.try_get_by_index::<i64>(0).expect("a number")
    };
    let restored =
        sea_orm::Database::connect(format!("sqlite://{}?mode=ro", backup.join("herald.db").display()))
            .await
            .expect("the copy opens");
    for table in ["items", "attachments", "deliveries", "receipts", "audit_log"] {
        assert_eq!(
            count(restored.clone(), table).await,
            count(app.hub.db.clone(), table).await,
            "{table}"
        );
    }
    let rows = count(app.hub.db.clone(), "audit_log").await;
    assert!(
        String::from_utf8_lossy(&verified.stdout).contains(&format!("{rows} rows verified")),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
}
