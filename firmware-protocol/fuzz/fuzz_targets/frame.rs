//! The frame layout parser, then signature verification under a fixed key.
#![no_main]

use herald_firmware_protocol::frame::{Direction, Frame, KeyPair};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(frame) = Frame::parse(bytes) {
        let key = KeyPair::from_seed(&[0x22; 32]).public_key();
        let _ = frame.verify(Direction::Command, &key);
    }
});
