//! The command payload decoder; whatever decodes must re-encode and decode to itself.
#![no_main]

use herald_firmware_protocol::Command;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    if let Ok(command) = Command::decode(payload) {
        let again = command.encode().map(|bytes| Command::decode(&bytes));
        assert_eq!(again, Ok(Ok(command)));
    }
});
