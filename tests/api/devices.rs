//! The device registry: credentials issued once and kept only as hashes, revocation, scoping,
//! and bulk import that registers all rows or none and names every wrong one.

use herald::delivery::devices::{self, CREDENTIAL_PREFIX, NewDevice, RowError};
use herald::domain::area::AreaCode;
use herald_channels::ChannelKind;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::json;

use crate::helpers::{Backend, TestApp, item_body, spawn_app, spawn_app_with};
use crate::on_both_backends;
use crate::scripted::{Scripted, Step};

const VILLAGE_A: &str = "530426101001";
const VILLAGE_B: &str = "530426101002";

fn loudspeaker(device_id: Option<&str>, name: &str, area: &str) -> NewDevice {
    NewDevice {
        channel: ChannelKind::Loudspeaker,
        device_id: device_id.map(str::to_owned),
        name: name.into(),
        area_code: area.into(),
        group: "一组".into(),
        public_key: None,
    }
}

async fn device_count(app: &TestApp) -> i64 {
    let db = &app.hub.db;
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) FROM devices",
        ))
        .await
        .expect("query")
        .expect("a row");
    row.try_get_by_index::<i64>(0).expect("count")
}

async fn credentials_are_shown_once_kept_hashed_and_revocable(backend: Backend) {
    let speakers = Scripted::new(ChannelKind::Loudspeaker, &[], Step::Deliver);
    let app = spawn_app_with(backend, vec![speakers]).await;
    let issued = devices::add_devices(
        &app.hub,
        "test",
        None,
        vec![
            (1, loudspeaker(Some("ls-dz-001"), "大村一组喇叭", VILLAGE_A)),
            (2, loudspeaker(None, "大村二组喇叭", VILLAGE_A)),
        ],
        &|_| {},
    )
    .await
    .expect("store")
    .expect("valid rows");
    assert_eq!(issued.len(), 2);
    assert_eq!(issued[0].device.device_id, "ls-dz-001");
    assert!(
        issued[1].device.device_id.starts_with("ls-"),
        "{:?}",
        issued[1].device
    );
    assert_ne!(issued[0].credential, issued[1].credential);
    for i in &issued {
        assert!(i.credential.starts_with(CREDENTIAL_PREFIX));
        assert!(
            i.credential.len() > CREDENTIAL_PREFIX.len() + 60,
            "256 bits of randomness"
        );
    }
    let first = &issued[0];

    // Only the hash is stored: no column of any device row holds the credential.
    let db = &app.hub.db;
    let sql = format!(
        "SELECT COUNT(*) FROM devices WHERE credential_hash = '{0}' OR device_id = '{0}' OR group_name = '{0}'",
        first.credential
    );
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("a row");
    assert_eq!(row.try_get_by_index::<i64>(0).expect("count"), 0);

    let login = |id: &'static str, credential: String| {
        let hub = app.hub.clone();
        async move { devices::authenticate(&hub, id, &credential).await.expect("store") }
    };
    let found = login("ls-dz-001", first.credential.clone())
        .await
        .expect("its own credential");
    assert_eq!(found.area_code, VILLAGE_A);
    assert_eq!(found.group, "一组");
    assert!(found.enabled);
    assert!(
        login("ls-dz-001", issued[1].credential.clone()).await.is_none(),
        "another device's credential"
    );
    assert!(
        login("ls-dz-001", format!("{}x", first.credential))
            .await
            .is_none()
    );
    assert!(login("ls-nobody", first.credential.clone()).await.is_none());

    // A new credential replaces the old one at once.
    let reissued = devices::reissue_credential(&app.hub, "test", None, "ls-dz-002")
        .await
        .expect_err("no such device");
    assert!(
        matches!(reissued, herald::error::Error::NotFound(_)),
        "{reissued:?}"
    );
    let second_id = issued[1].device.device_id.clone();
    let renewed = devices::reissue_credential(&app.hub, "test", None, &second_id)
        .await
        .expect("reissue");
    assert_ne!(renewed.credential, issued[1].credential);
    assert!(
        devices::authenticate(&app.hub, &second_id, &issued[1].credential)
            .await
            .expect("store")
            .is_none()
    );
    assert!(
        devices::authenticate(&app.hub, &second_id, &renewed.credential)
            .await
            .expect("store")
            .is_some()
    );

    // Listed, scoped to an area.
    let all = devices::list_devices(&app.hub, None).await.expect("list");
    assert_eq!(all.len(), 2);
    let elsewhere = AreaCode::parse(VILLAGE_B).expect("area");
    assert!(
        devices::list_devices(&app.hub, Some(&elsewhere))
            .await
            .expect("list")
            .is_empty()
    );

    // An announcement queued for both devices, not yet sent.
    let queued = app
        .publish_new(&item_body(VILLAGE_A), &json!({"channels": ["loudspeaker"]}))
        .await;

    // Revoked: it cannot log in, nothing more reaches it (what was queued for it is called
    // off), and revoking again is a conflict.
    let revoked = devices::revoke_device(&app.hub, "test", None, "ls-dz-001")
        .await
        .expect("revoke");
    assert!(!revoked.enabled);
    app.assert_queue_agrees().await;
    assert_eq!(app.deliver_due().await, 1, "only the other device is sent to");
    let to_revoked = app
        .publish_delivery(&queued, "target_id", &revoked.target_id)
        .await;
    assert_eq!(to_revoked["state"], "cancelled", "{to_revoked}");
    let summary = app
        .get("admin", &format!("/api/v1/items/{queued}/deliveries"))
        .await
        .json;
    let count_of = |state: &str| {
        summary["summary"]
            .as_array()
            .expect("summary")
            .iter()
            .filter(|r| r["channel"] == "loudspeaker" && r["state"] == state)
            .map(|r| r["count"].as_i64().expect("count"))
            .sum::<i64>()
    };
    assert_eq!(
        (count_of("cancelled"), count_of("delivered"), count_of("pending")),
        (1, 1, 0),
        "{summary}"
    );
    assert!(revoked.revoked_at.is_some());
    assert!(login("ls-dz-001", first.credential.clone()).await.is_none());
    let again = devices::revoke_device(&app.hub, "test", None, "ls-dz-001").await;
    assert!(again.is_err(), "{again:?}");
    let refused = devices::reissue_credential(&app.hub, "test", None, "ls-dz-001").await;
    assert!(refused.is_err(), "a revoked device gets no new credential");
    let item = app.create_item("publisher", &item_body(VILLAGE_A)).await;
    let reached = app
        .get("publisher", &format!("/api/v1/items/{item}/targets"))
        .await;
    assert_eq!(reached.status, 200, "{}", reached.json);
    let names: Vec<&str> = reached
        .json
        .as_array()
        .expect("targets")
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"大村二组喇叭"), "{names:?}");
    assert!(
        !names.contains(&"大村一组喇叭"),
        "a revoked device is not reached: {names:?}"
    );

    // Both are in the audit log.
    let audit = app.get("admin", "/api/v1/audit?limit=1000").await.text();
    assert!(
        audit.contains("device.add") && audit.contains("device.revoke"),
        "{audit}"
    );
    assert!(!audit.contains(&first.credential));
}

async fn an_import_registers_all_rows_or_none_and_names_each_wrong_one(backend: Backend) {
    let app = spawn_app(backend).await;
    let file = "channel,name,area_code,device_id,group\n\
                loudspeaker,大村一组喇叭,530426101001,ls-a-1,一组\n\
                notice_board,大村公开屏,530426101001,,\n\
                loudspeaker,小村喇叭,999999999999,ls-b-1,\n\
                loudspeaker,重复的喇叭,530426101002,ls-a-1,\n\
                portal,不是设备,530426101002,,\n\
                loudspeaker,,530426101002,ls-b-2,\n";
    let rows = devices::parse_csv(file.as_bytes()).expect("readable");
    assert_eq!(rows.len(), 6);
    assert_eq!(rows[0].0, 2, "rows are labelled with their line in the file");
    let errors = devices::add_devices(&app.hub, "test", None, rows, &|_| {})
        .await
        .expect("store")
        .expect_err("wrong rows");
    let named: Vec<(usize, &str)> = errors
        .iter()
        .map(|e: &RowError| (e.row, e.field.as_str()))
        .collect();
    assert_eq!(
        named,
        vec![(4, "area_code"), (5, "device_id"), (6, "channel"), (7, "name")],
        "{errors:?}"
    );
    assert_eq!(device_count(&app).await, 0, "nothing is registered");

    // Credentials that cannot be kept (the import's file could not be written) register
    // nothing either.
    let unkept = devices::import_devices(
        &app.hub,
        "test",
        None,
        vec![(1, loudspeaker(Some("ls-kept"), "喇叭", VILLAGE_A))],
        &|_| {},
        &mut |_| Err(anyhow::anyhow!("disk full").into()),
    )
    .await;
    assert!(unkept.is_err());
    assert_eq!(
        device_count(&app).await,
        0,
        "nothing is registered without its credentials"
    );

    // Unreadable rows are reported by line too, before anything is checked.
    let broken = "channel,name,area_code\nloudspeaker,甲\nwechat_xyz,乙,530426101001\n";
    let errors = devices::parse_csv(broken.as_bytes()).expect_err("unreadable");
    assert_eq!(
        errors.iter().map(|e| e.row).collect::<Vec<_>>(),
        vec![2, 3],
        "{errors:?}"
    );

    // Corrected, the same file goes in whole; the ids it names are then taken.
    let fixed = file
        .replace("999999999999,ls-b-1", "530426101002,ls-b-1")
        .replace("重复的喇叭,530426101002,ls-a-1", "重复的喇叭,530426101002,ls-b-3")
        .replace("portal,不是设备", "notice_board,小村公开屏")
        .replace(
            "loudspeaker,,530426101002",
            "loudspeaker,小村二组喇叭,530426101002",
        );
    let issued = devices::add_devices(
        &app.hub,
        "test",
        None,
        devices::parse_csv(fixed.as_bytes()).expect("readable"),
        &|_| {},
    )
    .await
    .expect("store")
    .expect("valid");
    assert_eq!(issued.len(), 6);
    assert_eq!(device_count(&app).await, 6);
    let again = devices::add_devices(
        &app.hub,
        "test",
        None,
        vec![(1, loudspeaker(Some("ls-a-1"), "再来一个", VILLAGE_A))],
        &|_| {},
    )
    .await
    .expect("store")
    .expect_err("taken");
    assert_eq!(again[0].field, "device_id");
    assert!(again[0].message.contains("already registered"), "{again:?}");

    // An administrator of one village cannot register devices in another.
    let scope = AreaCode::parse(VILLAGE_A).expect("area");
    let outside = devices::add_devices(
        &app.hub,
        "test",
        Some(&scope),
        vec![(1, loudspeaker(None, "别村喇叭", VILLAGE_B))],
        &|_| {},
    )
    .await
    .expect("store")
    .expect_err("outside");
    assert_eq!(outside[0].field, "area_code");
    assert!(
        devices::revoke_device(&app.hub, "test", Some(&scope), "ls-b-1")
            .await
            .is_err()
    );
}

/// A device is heard only under the key registered for it (PROTOCOL.md §7): the registry is
/// what `open_report` looks keys up in.
async fn reports_are_heard_only_under_the_devices_own_key(backend: Backend) {
    use herald_firmware_protocol::{
        Direction, KeyPair, Report, ReportBody, hex, hub::ReportRejection, open_report, report::Status, topic,
    };
    let app = spawn_app(backend).await;
    let key_a = KeyPair::from_seed(&[0x33; 32]);
    let key_b = KeyPair::from_seed(&[0x44; 32]);
    let mut with_key = loudspeaker(Some("spk-a"), "大村喇叭", VILLAGE_A);
    with_key.public_key = Some(hex::encode(&key_a.public_key()).to_uppercase());
    let mut bad_key = loudspeaker(Some("spk-x"), "坏钥匙", VILLAGE_A);
    bad_key.public_key = Some("12ab".into());
    let errors = devices::add_devices(&app.hub, "test", None, vec![(1, bad_key)], &|_| {})
        .await
        .expect("store")
        .expect_err("not a key");
    assert_eq!(errors[0].field, "public_key");
    let issued = devices::add_devices(
        &app.hub,
        "test",
        None,
        vec![
            (1, with_key),
            (2, loudspeaker(Some("spk-b"), "小村喇叭", VILLAGE_B)),
        ],
        &|_| {},
    )
    .await
    .expect("store")
    .expect("valid");
    let a_id = issued[0].device.key_id.expect("a key id for the key given");
    assert_eq!(
        issued[0].device.public_key.as_deref(),
        Some(hex::encode(&key_a.public_key()).as_str())
    );
    assert_eq!(issued[1].device.key_id, None, "no key, no key id");
    let b_first = devices::set_device_key(&app.hub, "test", None, "spk-b", &hex::encode(&key_b.public_key()))
        .await
        .expect("set key")
        .key_id
        .expect("key id");
    assert_ne!(a_id, b_first);

    let sealed = |key: &KeyPair, key_id: i64, device: &str| {
        let report = Report {
            device: device.into(),
            session: 1,
            seq: 1,
            sent_at: 0,
            msg: ReportBody::Status(Status { online: true }),
        };
        key.seal(
            Direction::Report,
            u32::try_from(key_id).expect("u32"),
            &report.encode().expect("encode"),
        )
        .expect("seal")
    };
    let open = |topic_device: &'static str, frame: Vec<u8>, key_id: i64| {
        let hub = app.hub.clone();
        async move {
            let key = devices::report_key(&hub, u32::try_from(key_id).expect("u32"))
                .await
                .expect("store")
                .map(|device| device.key);
            open_report(&topic::report(topic_device, "status"), &frame, |_| key)
        }
    };
    let heard = open("spk-a", sealed(&key_a, a_id, "spk-a"), a_id)
        .await
        .expect("A is heard");
    assert_eq!(heard.device, "spk-a");
    assert_eq!(
        open("spk-a", sealed(&key_b, b_first, "spk-a"), b_first).await,
        Err(ReportRejection::DeviceMismatch),
        "B cannot report for A under its own key"
    );
    assert_eq!(
        open("spk-a", sealed(&key_b, a_id, "spk-a"), a_id).await,
        Err(ReportRejection::BadSignature),
        "nor under A's key id"
    );

    // A new key for B is a new key id; the old one is no longer heard. A revoked device is not heard.
    let key_b2 = KeyPair::from_seed(&[0x55; 32]);
    let b_second = devices::set_device_key(
        &app.hub,
        "test",
        None,
        "spk-b",
        &hex::encode(&key_b2.public_key()),
    )
    .await
    .expect("set key")
    .key_id
    .expect("key id");
    assert_ne!(b_second, b_first);
    assert_eq!(
        open("spk-b", sealed(&key_b, b_first, "spk-b"), b_first).await,
        Err(ReportRejection::UnknownKey)
    );
    open("spk-b", sealed(&key_b2, b_second, "spk-b"), b_second)
        .await
        .expect("B is heard under its new key");
    devices::revoke_device(&app.hub, "test", None, "spk-a")
        .await
        .expect("revoke");
    assert_eq!(
        open("spk-a", sealed(&key_a, a_id, "spk-a"), a_id).await,
        Err(ReportRejection::UnknownKey)
    );
}

on_both_backends! {
    reports_are_heard_only_under_the_devices_own_key => reports_are_heard_only_under_the_devices_own_key;
    credentials_are_shown_once_kept_hashed_and_revocable => credentials_are_shown_once_kept_hashed_and_revocable;
    an_import_registers_all_rows_or_none_and_names_each_wrong_one => an_import_registers_all_rows_or_none_and_names_each_wrong_one;
}

on_both_backends! {
    signed_commands_are_kept_a_month_past_their_end_then_pruned => |backend| async move {
        use herald::store::entities::device_command;
        use sea_orm::{ActiveValue::Set, EntityTrait};
        let app = spawn_app(backend).await;
        let now = app.hub.clock.now();
        let kept_after_end = herald::device_link::COMMANDS_KEPT_AFTER_END;
        let ends = [
            ("long-over", now - kept_after_end - chrono::Duration::hours(1)),
            ("recently-over", now - kept_after_end + chrono::Duration::hours(1)),
            ("still-valid", now + chrono::Duration::hours(1)),
        ];
        for (id, not_after) in ends {
            device_command::Entity::insert(device_command::ActiveModel {
                id: Set(id.into()),
                frame: Set(vec![1, 2, 3]),
                not_after: Set(not_after),
                created_at: Set(not_after - chrono::Duration::hours(1)),
            })
            .exec(&app.hub.db)
            .await
            .expect("insert");
        }
        let pruned = herald::device_link::prune_commands(&app.hub.db, now).await.expect("prune");
        assert_eq!(pruned, 1);
        let mut left: Vec<String> = device_command::Entity::find().all(&app.hub.db).await.expect("read").into_iter().map(|c| c.id).collect();
        left.sort();
        assert_eq!(left, ["recently-over", "still-valid"]);
        assert_eq!(herald::device_link::prune_commands(&app.hub.db, now).await.expect("prune"), 0);
    };
}
