//! Every decoder and the device's whole verification path fed arbitrary bytes: none may panic,
//! and nothing unsigned may ever come out verified. `fuzz/` runs the same entry points under
//! libFuzzer for longer; this runs a few thousand cases on every `cargo test`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a panic is the failure report.

use herald_firmware_protocol::command::{Audience, Command, CommandBody, KeyRole};
use herald_firmware_protocol::device::{
    Capabilities, DeviceIdentity, DeviceSession, DeviceState, Output, TrustedKey,
};
use herald_firmware_protocol::frame::{Direction, Frame, KeyPair, MAGIC, VERSION};
use herald_firmware_protocol::hub::{DeviceKey, Issuer, open_report};
use herald_firmware_protocol::report::{AckStage, Report, ReportBody};
use herald_firmware_protocol::topic;
use proptest::prelude::*;

const NOW: u64 = 1_795_033_600;

fn device() -> DeviceSession {
    let mut session = DeviceSession::new(
        DeviceIdentity {
            device_id: "spk-0001".into(),
            key_id: 1001,
            keys: KeyPair::from_seed(&[0x33; 32]),
        },
        Capabilities {
            firmware: "fuzz".into(),
            codecs: Vec::new(),
            tts: true,
            screen: None,
        },
        DeviceState::factory(TrustedKey {
            key_id: 2,
            role: KeyRole::Operational,
            public_key: Issuer::new(2, &[0x22; 32]).public_key(),
        }),
    );
    session.connect(Some(NOW)).expect("connect");
    session
}

/// Anything the device answers to unsigned bytes is a rejection.
fn assert_only_rejections(outputs: &[Output]) {
    for output in outputs {
        let Output::Publish(publish) = output else {
            panic!("unsigned bytes produced {output:?}");
        };
        let frame = Frame::parse(&publish.payload).expect("the device's own frame");
        let report = Report::decode(frame.payload).expect("the device's own report");
        let ReportBody::Ack(ack) = report.msg else {
            panic!("not an ack: {report:?}");
        };
        assert_eq!(ack.stage, AckStage::Rejected);
    }
}

/// Bytes that start like a frame, so the fuzzer gets past the magic.
fn framed_bytes() -> impl Strategy<Value = Vec<u8>> {
    (any::<u32>(), proptest::collection::vec(any::<u8>(), 0..400)).prop_map(|(key_id, rest)| {
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION);
        bytes.push(1);
        bytes.extend_from_slice(&key_id.to_be_bytes());
        bytes.extend(rest);
        bytes
    })
}

/// A frame with a valid signature around arbitrary JSON-ish text, so the payload decoders run.
fn signed_junk() -> impl Strategy<Value = Vec<u8>> {
    "\\{\"seq\":[0-9]{1,3},\"issued_at\":[0-9]{1,12},\"not_after\":[0-9]{1,12},\"id\":\"[a-z0-9-]{0,8}\",\"to\":\\{\"devices\":\\[\"spk-000[0-9]\"\\]\\},\"cmd\":\\{\"type\":\"(play|display|cancel|config|rebirth|trust|time_sync|nope)\"[ -~]{0,60}\\}\\}"
        .prop_map(|payload| {
            KeyPair::from_seed(&[0x22; 32])
                .seal(Direction::Command, 2, payload.as_bytes())
                .expect("seal")
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decoders_take_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = Frame::parse(&bytes);
        let _ = Command::decode(&bytes);
        let _ = Report::decode(&bytes);
        let _ = open_report("herald/v1/d/spk-0001/ack", &bytes, |_| None);
        let mut device = device();
        assert_only_rejections(&device.handle(Some(NOW), &topic::device_commands("spk-0001"), &bytes));
    }

    #[test]
    fn frames_with_a_forged_signature_are_always_rejected(bytes in framed_bytes()) {
        let mut device = device();
        assert_only_rejections(&device.handle(Some(NOW), &topic::device_commands("spk-0001"), &bytes));
        let registered = |_| Some(DeviceKey {
            device_id: "spk-0001".into(),
            public_key: KeyPair::from_seed(&[0x33; 32]).public_key(),
        });
        prop_assert!(open_report("herald/v1/d/spk-0001/ack", &bytes, registered).is_err());
    }

    #[test]
    fn signed_junk_never_panics_and_valid_commands_round_trip(bytes in signed_junk()) {
        let mut device = device();
        let outputs = device.handle(Some(NOW), &topic::device_commands("spk-0001"), &bytes);
        prop_assert!(!outputs.is_empty());
        let frame = Frame::parse(&bytes).expect("frame");
        if let Ok(command) = Command::decode(frame.payload) {
            prop_assert_eq!(Command::decode(&command.encode().expect("encode")), Ok(command));
        }
    }

    #[test]
    fn signed_commands_round_trip(seq in 1u64..1 << 53, id in "[a-z0-9]{1,20}", now in 0u64..1 << 40) {
        let command = Command {
            seq,
            issued_at: now,
            not_after: now + 60,
            id,
            to: Audience::Devices(vec!["spk-0001".into()]),
            cmd: CommandBody::Rebirth,
        };
        let frame = Issuer::new(2, &[0x22; 32]).sign(&command).expect("sign");
        let parsed = Frame::parse(&frame).expect("frame");
        prop_assert!(parsed.verify(Direction::Command, &Issuer::new(2, &[0x22; 32]).public_key()).is_ok());
        prop_assert_eq!(Command::decode(parsed.payload), Ok(command));
    }
}
