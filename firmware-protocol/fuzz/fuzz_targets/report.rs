//! The report payload decoder; whatever decodes must re-encode and decode to itself.
#![no_main]

use herald_firmware_protocol::Report;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|payload: &[u8]| {
    if let Ok(report) = Report::decode(payload) {
        let again = report.encode().map(|bytes| Report::decode(&bytes));
        assert_eq!(again, Ok(Ok(report)));
    }
});
