//! Any bytes as a checkpoint file, and any bytes as a checkpoint body behind a valid header
//! (the checksum would stop the fuzzer at the header otherwise): rejected with a reason, or a
//! state that encodes back to a checkpoint that decodes to the same state.
#![no_main]
use jobcarbon_ledger::LedgerState;
use jobcarbon_ledger::checkpoint::{Checkpoint, FORMAT_VERSION, decode, encode};
use libfuzzer_sys::fuzz_target;
use sha2::{Digest, Sha256};
use std::path::Path;

fn round_trip(file: &[u8]) {
    let path = Path::new("fuzz.ckpt");
    let Ok(checkpoint) = decode::<LedgerState>(file, path) else {
        return;
    };
    let again = encode(&checkpoint, path).expect("a decoded checkpoint encodes");
    let back: Checkpoint<LedgerState> = decode(&again, path).expect("round trip");
    assert_eq!(back.state, checkpoint.state);
    assert_eq!(back.last_booked, checkpoint.last_booked);
}

fuzz_target!(|data: &[u8]| {
    round_trip(data);
    let digest: String = Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut file = format!(
        "jobcarbon-checkpoint {FORMAT_VERSION} {} {digest}\n",
        data.len()
    )
    .into_bytes();
    file.extend_from_slice(data);
    round_trip(&file);
});
