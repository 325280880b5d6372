//! The hub's report check with a registered device: the fuzzer cannot sign as it.
#![no_main]

use herald_firmware_protocol::KeyPair;
use herald_firmware_protocol::hub::{DeviceKey, open_report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    let registered = |_| {
        Some(DeviceKey {
            device_id: "spk-0001".into(),
            public_key: KeyPair::from_seed(&[0x33; 32]).public_key(),
        })
    };
    assert!(open_report("herald/v1/d/spk-0001/ack", bytes, registered).is_err());
});
