//! The device's whole verification path. The fuzzer cannot forge a signature, so nothing it
//! sends may ever be executed: only rejection acks may come out.
#![no_main]

use herald_firmware_protocol::command::KeyRole;
use herald_firmware_protocol::device::{
    Capabilities, DeviceIdentity, DeviceSession, DeviceState, Output, TrustedKey,
};
use herald_firmware_protocol::{KeyPair, topic};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let mut device = DeviceSession::new(
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
            role: KeyRole::Root,
            public_key: KeyPair::from_seed(&[0x22; 32]).public_key(),
        }),
    );
    let now = Some(1_795_033_600);
    for output in device.handle(now, &topic::device_commands("spk-0001"), bytes) {
        assert!(
            matches!(output, Output::Publish(_)),
            "unsigned bytes were accepted: {output:?}"
        );
    }
});
