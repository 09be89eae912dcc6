//! Arbitrary bytes into the golden-dump reader: it must return a value or a located
//! error, never panic. Small limits keep one input's work bounded.
#![no_main]

use combined_margin::fixture::{read_dump_str, Limits};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = Limits {
        max_elements: 1 << 16,
        max_file_bytes: 1 << 20,
    };
    if let Ok(dump) = read_dump_str("fuzz.json", text, limits) {
        let _ = dump.layer_cases();
    }
});
