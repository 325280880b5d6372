//! The golden vectors in `vectors/`: every message as signed bytes, with its decoded form, the
//! key that signed it and what a device does with it. This test re-derives every file from the
//! fixed keys below and compares the text exactly, so the files cannot drift from the code;
//! `HERALD_WRITE_VECTORS=1 cargo test -p herald-firmware-protocol --test vectors` rewrites them.
//! It also checks that PROTOCOL.md quotes every frame.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use std::path::{Path, PathBuf};

use herald_firmware_protocol::command::*;
use herald_firmware_protocol::device::{
    Capabilities, DeviceIdentity, DeviceSession, DeviceState, Output, ReplayWindow, TrustedKey,
};
use herald_firmware_protocol::frame::{Direction, Frame, KeyPair, signing_input};
use herald_firmware_protocol::hub::{DeviceKey, Issuer, open_report};
use herald_firmware_protocol::report::*;
use herald_firmware_protocol::{hex, topic};
use serde::Serialize;

/// "Now" for every vector: 2026-11-18T20:26:40Z.
const NOW: u64 = 1_795_033_600;
const DEVICE: &str = "spk-0001";
const AREA: &str = "411421103201";
const DEVICE_KEY_ID: u32 = 1001;

/// Test keys only: their seeds are published here.
struct TestKey {
    key_id: u32,
    role: &'static str,
    seed: [u8; 32],
}

const ROOT: TestKey = TestKey {
    key_id: 1,
    role: "root issuer",
    seed: [0x11; 32],
};
const OPERATIONAL: TestKey = TestKey {
    key_id: 2,
    role: "operational issuer",
    seed: [0x22; 32],
};
const DEVICE_KEY: TestKey = TestKey {
    key_id: DEVICE_KEY_ID,
    role: "device spk-0001",
    seed: [0x33; 32],
};
const STRANGER: TestKey = TestKey {
    key_id: 9,
    role: "issuer the device does not trust",
    seed: [0x44; 32],
};
const NEXT_OPERATIONAL: TestKey = TestKey {
    key_id: 3,
    role: "the next operational issuer",
    seed: [0x55; 32],
};

#[derive(Serialize)]
struct VectorFile<'a, T: Serialize> {
    name: &'a str,
    description: &'a str,
    direction: &'a str,
    topic: String,
    key: KeyFile,
    header: HeaderFile,
    signing_input_hex: String,
    signature_hex: String,
    payload: String,
    frame_hex: String,
    decoded: &'a T,
    expect: Expect,
}

#[derive(Serialize)]
struct KeyFile {
    key_id: u32,
    role: &'static str,
    seed_hex: String,
    public_key_hex: String,
}

#[derive(Serialize)]
struct HeaderFile {
    magic: &'static str,
    version: u8,
    algorithm: u8,
    key_id: u32,
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum Expect {
    /// The context device answers with this ack.
    Device {
        stage: AckStage,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<RejectReason>,
        ack_payload: String,
    },
    /// The hub opens it.
    Hub { accepted: bool },
}

struct Vector {
    name: &'static str,
    text: String,
    frame: Vec<u8>,
}

fn key_file(key: &TestKey) -> KeyFile {
    KeyFile {
        key_id: key.key_id,
        role: key.role,
        seed_hex: hex::encode(&key.seed),
        public_key_hex: hex::encode(&KeyPair::from_seed(&key.seed).public_key()),
    }
}

/// The device every command vector is checked against (PROTOCOL.md, "Vector context").
fn context_device() -> DeviceSession {
    let public = |key: &TestKey| KeyPair::from_seed(&key.seed).public_key();
    let state = DeviceState {
        trusted: vec![
            TrustedKey {
                key_id: ROOT.key_id,
                role: KeyRole::Root,
                public_key: public(&ROOT),
            },
            TrustedKey {
                key_id: OPERATIONAL.key_id,
                role: KeyRole::Operational,
                public_key: public(&OPERATIONAL),
            },
        ],
        // Key 2's commands up to seq 41 were accepted.
        windows: vec![ReplayWindow {
            key_id: OPERATIONAL.key_id,
            highest: 41,
            seen: 1,
        }],
        session: 2,
        area: Some(AREA.into()),
        schedule_version: 6,
    };
    let mut device = DeviceSession::new(
        DeviceIdentity {
            device_id: DEVICE.into(),
            key_id: DEVICE_KEY_ID,
            keys: KeyPair::from_seed(&DEVICE_KEY.seed),
        },
        capabilities(),
        state,
    );
    device.connect(Some(NOW)).expect("connect");
    device
}

fn capabilities() -> Capabilities {
    Capabilities {
        firmware: "acme-spk 2.4.1".into(),
        codecs: vec![AudioCodec::Mp3, AudioCodec::Wav],
        tts: true,
        screen: Some(Screen {
            width: 128,
            height: 64,
            qr: true,
        }),
    }
}

fn command(seq: u64, id: &str, cmd: CommandBody) -> Command {
    Command {
        seq,
        issued_at: NOW - 5,
        not_after: NOW + 600,
        id: id.into(),
        to: Audience::Devices(vec![DEVICE.into()]),
        cmd,
    }
}

fn alert_audio() -> PlaySource {
    PlaySource::Audio(AudioRef {
        url: "https://herald.example.gov.cn/media/alert-0042.mp3".into(),
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        size: 482_113,
        codec: AudioCodec::Mp3,
    })
}

fn play_alert(seq: u64) -> Command {
    command(
        seq,
        "alert-0042",
        CommandBody::Play(Play {
            priority: 2,
            source: alert_audio(),
            repeat: 2,
            start_at: None,
            override_quiet_hours: true,
        }),
    )
}

fn command_vector(
    name: &'static str,
    description: &str,
    key: &TestKey,
    topic: String,
    command: &Command,
    tamper: bool,
) -> Vector {
    let issuer = Issuer::new(key.key_id, &key.seed);
    let mut frame = issuer.sign(command).expect("sign");
    if tamper {
        // One bit of the signature's last byte.
        frame[71] ^= 0x01;
    }
    let mut device = context_device();
    let outputs = device.handle(Some(NOW), &topic, &frame);
    let ack_publish = outputs
        .iter()
        .find_map(|output| match output {
            Output::Publish(publish) if publish.topic.ends_with("/ack") => Some(publish),
            _ => None,
        })
        .expect("the device acks every command");
    let ack_frame = Frame::parse(&ack_publish.payload).expect("ack frame");
    let ack_report = Report::decode(ack_frame.payload).expect("ack report");
    let ReportBody::Ack(ack) = ack_report.msg else {
        panic!("not an ack");
    };
    let expect = Expect::Device {
        stage: ack.stage,
        reason: ack.reason,
        ack_payload: String::from_utf8(ack_frame.payload.to_vec()).expect("utf-8"),
    };
    vector(
        name,
        description,
        Direction::Command,
        key,
        topic,
        frame,
        command,
        expect,
    )
}

fn report_vector(name: &'static str, description: &str, report: &Report) -> Vector {
    let keys = KeyPair::from_seed(&DEVICE_KEY.seed);
    let frame = keys
        .seal(
            Direction::Report,
            DEVICE_KEY_ID,
            &report.encode().expect("encode"),
        )
        .expect("seal");
    let topic = topic::report(&report.device, report.msg.kind());
    let accepted = open_report(&topic, &frame, |key_id| {
        (key_id == DEVICE_KEY_ID).then(|| DeviceKey {
            device_id: DEVICE.into(),
            public_key: keys.public_key(),
        })
    })
    .as_ref()
    .is_ok_and(|opened| opened == report);
    let expect = Expect::Hub { accepted };
    vector(
        name,
        description,
        Direction::Report,
        &DEVICE_KEY,
        topic,
        frame,
        report,
        expect,
    )
}

#[allow(clippy::too_many_arguments)]
fn vector<T: Serialize>(
    name: &'static str,
    description: &str,
    direction: Direction,
    key: &TestKey,
    topic: String,
    frame: Vec<u8>,
    decoded: &T,
    expect: Expect,
) -> Vector {
    let parsed = Frame::parse(&frame).expect("frame");
    let file = VectorFile {
        name,
        description,
        direction: match direction {
            Direction::Command => "command",
            Direction::Report => "report",
        },
        topic,
        key: key_file(key),
        header: HeaderFile {
            magic: "HR",
            version: parsed.header[2],
            algorithm: parsed.header[3],
            key_id: parsed.key_id,
        },
        signing_input_hex: hex::encode(&signing_input(direction, parsed.header, parsed.payload)),
        signature_hex: hex::encode(parsed.signature),
        payload: String::from_utf8(parsed.payload.to_vec()).expect("utf-8"),
        frame_hex: hex::encode(&frame),
        decoded,
        expect,
    };
    let mut text = serde_json::to_string_pretty(&file).expect("json");
    text.push('\n');
    Vector { name, text, frame }
}

fn report(seq: u32, msg: ReportBody) -> Report {
    Report {
        device: DEVICE.into(),
        session: 3,
        seq,
        sent_at: NOW,
        msg,
    }
}

/// The proof that alert-0042 played twice to its end, 61.5 s in all.
fn alert_played() -> Proof {
    Proof {
        item: "alert-0042".into(),
        medium: Medium::Audio,
        start: NOW + 2,
        end: NOW + 64,
        duration_ms: 61_500,
        completed: true,
    }
}

fn all_vectors() -> Vec<Vector> {
    let device_topic = topic::device_commands(DEVICE);
    let next_public = KeyPair::from_seed(&NEXT_OPERATIONAL.seed).public_key();
    vec![
        command_vector(
            "cmd-play-audio",
            "County emergency audio, twice, through quiet hours.",
            &OPERATIONAL,
            device_topic.clone(),
            &play_alert(42),
            false,
        ),
        command_vector(
            "cmd-play-tts",
            "Township notice spoken by the device, sent once to the township's area topic.",
            &OPERATIONAL,
            topic::area_commands("411421103"),
            &Command {
                to: Audience::Areas(vec!["411421103".into()]),
                ..command(
                    43,
                    "notice-0107",
                    CommandBody::Play(Play {
                        priority: 3,
                        source: PlaySource::Tts(TtsText {
                            text: "各位村民请注意：明天上午九点在村委会接种疫苗。".into(),
                            lang: "zh-CN".into(),
                        }),
                        repeat: 1,
                        start_at: Some(NOW + 60),
                        override_quiet_hours: false,
                    }),
                )
            },
            false,
        ),
        command_vector(
            "cmd-display",
            "Two pages of text and a QR link on the device's screen for an hour.",
            &OPERATIONAL,
            device_topic.clone(),
            &command(
                44,
                "notice-0108",
                CommandBody::Display(Display {
                    priority: 5,
                    pages: vec!["防汛通知".into(), "请远离河道，注意安全。".into()],
                    page_seconds: 8,
                    qr: Some("https://herald.example.gov.cn/i/0108".into()),
                    start_at: None,
                    until: Some(NOW + 3600),
                }),
            ),
            false,
        ),
        command_vector(
            "cmd-cancel",
            "Stop alert-0042.",
            &OPERATIONAL,
            device_topic.clone(),
            &command(
                45,
                "cancel-0042",
                CommandBody::Cancel(Cancel {
                    target: Some("alert-0042".into()),
                }),
            ),
            false,
        ),
        command_vector(
            "cmd-schedule-sync",
            "The device's timetable for the next 48 hours: two announcements.",
            &OPERATIONAL,
            device_topic.clone(),
            &command(
                46,
                "schedule-7",
                CommandBody::ScheduleSync(ScheduleSync {
                    version: 7,
                    entries: vec![
                        ScheduleEntry {
                            id: "news-0700".into(),
                            at: NOW + 36_000,
                            priority: 5,
                            source: PlaySource::Audio(AudioRef {
                                url: "https://herald.example.gov.cn/media/news.mp3".into(),
                                sha256: "2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
                                    .into(),
                                size: 1_204_224,
                                codec: AudioCodec::Mp3,
                            }),
                        },
                        ScheduleEntry {
                            id: "fire-1800".into(),
                            at: NOW + 75_600,
                            priority: 5,
                            source: PlaySource::Tts(TtsText {
                                text: "天干物燥，小心火烛。".into(),
                                lang: "zh-CN".into(),
                            }),
                        },
                    ],
                }),
            ),
            false,
        ),
        command_vector(
            "cmd-config",
            "Volume 70, quiet hours 22:00–06:00 Beijing time, health every 5 minutes.",
            &OPERATIONAL,
            device_topic.clone(),
            &command(
                47,
                "config-12",
                CommandBody::Config(Config {
                    volume: Some(70),
                    quiet_hours: Some(QuietHours {
                        from_minute: 1320,
                        to_minute: 360,
                    }),
                    utc_offset_minutes: Some(480),
                    area: Some(AREA.into()),
                    health_interval_s: Some(300),
                }),
            ),
            false,
        ),
        command_vector(
            "cmd-time-sync",
            "Set the clock.",
            &OPERATIONAL,
            device_topic.clone(),
            &command(48, "time-48", CommandBody::TimeSync(TimeSync { unix_time: NOW })),
            false,
        ),
        command_vector(
            "cmd-rebirth",
            "Ask for a fresh birth report.",
            &OPERATIONAL,
            device_topic.clone(),
            &command(49, "rebirth-49", CommandBody::Rebirth),
            false,
        ),
        command_vector(
            "cmd-trust",
            "Key rotation: the root key adds operational key 3 and retires key 2.",
            &ROOT,
            device_topic.clone(),
            &command(
                1,
                "rotate-2026-11",
                CommandBody::Trust(Trust {
                    add: vec![TrustedKeyEntry {
                        key_id: NEXT_OPERATIONAL.key_id,
                        role: KeyRole::Operational,
                        public_key: hex::encode(&next_public),
                    }],
                    remove: vec![OPERATIONAL.key_id],
                }),
            ),
            false,
        ),
        command_vector(
            "reject-bad-signature",
            "cmd-play-audio as seq 50 with one bit of its signature flipped.",
            &OPERATIONAL,
            device_topic.clone(),
            &play_alert(50),
            true,
        ),
        command_vector(
            "reject-replay",
            "A correctly signed command with seq 41, which the device already accepted.",
            &OPERATIONAL,
            device_topic.clone(),
            &play_alert(41),
            false,
        ),
        command_vector(
            "reject-expired",
            "A correctly signed command whose not_after passed an hour ago.",
            &OPERATIONAL,
            device_topic.clone(),
            &Command {
                issued_at: NOW - 7200,
                not_after: NOW - 3600,
                ..play_alert(51)
            },
            false,
        ),
        command_vector(
            "reject-unknown-key",
            "A correctly signed command under key 9, which the device does not trust.",
            &STRANGER,
            device_topic,
            &play_alert(1),
            false,
        ),
        report_vector(
            "rpt-will",
            "The will, signed at CONNECT: retained status offline with seq 0.",
            &report(0, ReportBody::Status(Status { online: false })),
        ),
        report_vector(
            "rpt-status-online",
            "Retained status online, the first report after CONNECT.",
            &report(1, ReportBody::Status(Status { online: true })),
        ),
        report_vector(
            "rpt-birth",
            "Capabilities and last sequence numbers, after status online.",
            &report(
                2,
                ReportBody::Birth(Birth {
                    firmware: "acme-spk 2.4.1".into(),
                    codecs: vec![AudioCodec::Mp3, AudioCodec::Wav],
                    tts: true,
                    screen: Some(Screen {
                        width: 128,
                        height: 64,
                        qr: true,
                    }),
                    area: Some(AREA.into()),
                    keys: vec![
                        KeySeen {
                            key_id: 1,
                            last_seq: 0,
                        },
                        KeySeen {
                            key_id: 2,
                            last_seq: 41,
                        },
                    ],
                    schedule_version: 6,
                }),
            ),
        ),
        report_vector(
            "rpt-ack-verified",
            "cmd-play-audio passed every check.",
            &report(
                3,
                ReportBody::Ack(Ack {
                    key_id: Some(2),
                    cmd_seq: Some(42),
                    id: Some("alert-0042".into()),
                    stage: AckStage::Verified,
                    reason: None,
                }),
            ),
        ),
        report_vector(
            "rpt-ack-finished",
            "cmd-play-audio played to its end.",
            &report(
                4,
                ReportBody::Ack(Ack {
                    key_id: Some(2),
                    cmd_seq: Some(42),
                    id: Some("alert-0042".into()),
                    stage: AckStage::Finished,
                    reason: None,
                }),
            ),
        ),
        report_vector(
            "rpt-ack-rejected",
            "A replayed command refused, with its reason.",
            &report(
                5,
                ReportBody::Ack(Ack {
                    key_id: Some(2),
                    cmd_seq: Some(41),
                    id: Some("alert-0042".into()),
                    stage: AckStage::Rejected,
                    reason: Some(RejectReason::Replay),
                }),
            ),
        ),
        report_vector(
            "rpt-health",
            "Periodic health: the loudspeaker line is faulty.",
            &report(
                6,
                ReportBody::Health(Health {
                    volume: 70,
                    amplifier: Condition::Ok,
                    line: Condition::Fault,
                    storage_free_kib: 51_200,
                    storage_total_kib: 65_536,
                    temperature_decidegrees: Some(415),
                    playing: Some("alert-0042".into()),
                }),
            ),
        ),
        report_vector(
            "rpt-proof",
            "Proof of play: alert-0042 played twice, 61.5 s in all.",
            &report(7, ReportBody::Proof(alert_played())),
        ),
        report_vector(
            "rpt-bundle",
            "alert-0042 finished and its proof of play, sent at one moment as one bundle.",
            &report(
                8,
                ReportBody::Bundle(Bundle {
                    reports: vec![
                        Bundled::Ack(Ack {
                            key_id: Some(2),
                            cmd_seq: Some(42),
                            id: Some("alert-0042".into()),
                            stage: AckStage::Finished,
                            reason: None,
                        }),
                        Bundled::Proof(alert_played()),
                    ],
                }),
            ),
        ),
    ]
}

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("vectors")
}

#[test]
fn every_vector_file_is_re_derived_byte_for_byte() {
    let vectors = all_vectors();
    let write = std::env::var_os("HERALD_WRITE_VECTORS").is_some();
    let mut names: Vec<String> = Vec::new();
    for vector in &vectors {
        let path = vectors_dir().join(format!("{}.json", vector.name));
        if write {
            std::fs::write(&path, &vector.text).expect("write vector");
        }
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (HERALD_WRITE_VECTORS=1 writes it)", path.display()));
        assert_eq!(on_disk, vector.text, "{} drifted from the code", vector.name);
        names.push(format!("{}.json", vector.name));
    }
    let mut on_disk: Vec<String> = std::fs::read_dir(vectors_dir())
        .expect("vectors/")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    on_disk.sort();
    names.sort();
    assert_eq!(on_disk, names, "vectors/ holds a file no test derives");
}

#[test]
fn every_vector_decodes_from_its_file_alone() {
    for vector in all_vectors() {
        let file: serde_json::Value = serde_json::from_str(&vector.text).expect("json");
        let frame = hex::decode(file["frame_hex"].as_str().expect("frame_hex")).expect("hex");
        assert_eq!(frame, vector.frame);
        let parsed = Frame::parse(&frame).expect("frame");
        assert_eq!(
            parsed.payload,
            file["payload"].as_str().expect("payload").as_bytes()
        );
        let public_key = hex::decode_array::<32>(file["key"]["public_key_hex"].as_str().expect("public key"))
            .expect("hex");
        let direction = if file["direction"] == "command" {
            Direction::Command
        } else {
            Direction::Report
        };
        let signature_holds = parsed.verify(direction, &public_key).is_ok();
        assert_eq!(
            signature_holds,
            vector.name != "reject-bad-signature",
            "{}",
            vector.name
        );
        // The decoded form in the file is what the payload decodes to, re-encoded.
        let decoded = match direction {
            Direction::Command => serde_json::to_value(Command::decode(parsed.payload).expect("command")),
            Direction::Report => serde_json::to_value(Report::decode(parsed.payload).expect("report")),
        }
        .expect("value");
        assert_eq!(decoded, file["decoded"], "{}", vector.name);
        // Encoding the decoded message gives the payload back: the round trip is exact.
        let re_encoded = match direction {
            Direction::Command => Command::decode(parsed.payload).and_then(|c| c.encode()),
            Direction::Report => Report::decode(parsed.payload).and_then(|r| r.encode()),
        }
        .expect("encode");
        assert_eq!(re_encoded, parsed.payload, "{}", vector.name);
        match &file["expect"] {
            serde_json::Value::Object(expect) if expect.contains_key("hub") => {
                assert_eq!(expect["hub"]["accepted"], true, "{}", vector.name);
            }
            serde_json::Value::Object(expect) => {
                let device = &expect["device"];
                let expected_stage = if vector.name.starts_with("reject-") {
                    "rejected"
                } else {
                    "verified"
                };
                assert_eq!(device["stage"], expected_stage, "{}", vector.name);
                if let Some(reason) = vector.name.strip_prefix("reject-") {
                    assert_eq!(device["reason"], reason.replace('-', "_"), "{}", vector.name);
                }
            }
            other => panic!("{}: bad expect {other}", vector.name),
        }
    }
}

#[test]
fn protocol_md_quotes_every_frame() {
    let spec = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("PROTOCOL.md"))
        .expect("PROTOCOL.md");
    let compact: String = spec.chars().filter(|c| !c.is_whitespace()).collect();
    for vector in all_vectors() {
        let hex = hex::encode(&vector.frame);
        assert!(
            compact.contains(&hex),
            "PROTOCOL.md does not quote the frame of {}",
            vector.name
        );
    }
}
