//! The fuzz corpus replayed as tests: every input under `fuzz/corpus/<target>` (grown by
//! `scripts/fuzz`) and `fuzz/regressions/<target>` (inputs that once crashed) goes through the
//! check the fuzz target runs, and every seed must decode, or be refused, as it says.
//!
//! Fuzz builds set `cfg(fuzzing)`, under which miniz_oxide skips the zlib checksum; here it is
//! checked, so most mdns_txt inputs the fuzzer found stop at it (after inflating). The JSON they
//! carried past it is what etcd_record's corpus feeds the same record decoder, and the mdns_txt
//! seeds are whole records that decode.

use std::path::{Path, PathBuf};

use micro_tests::fuzz::{check, seeds};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut files: Vec<PathBuf> = entries.map(|e| e.expect("corpus entries are readable").path()).collect();
    files.sort();
    files
}

fn replay(target: &str) {
    let check = check(target);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus = files(&root.join("corpus").join(target));
    assert!(!corpus.is_empty(), "the corpus of {target} is missing or empty (run scripts/fuzz)");
    let regressions = files(&root.join("regressions").join(target));
    for path in corpus.iter().chain(&regressions) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if std::panic::catch_unwind(|| check(&data)).is_err() {
            panic!("{} fails the {target} check (the panic above says why)", path.display());
        }
    }
    for (i, (input, accepted)) in seeds(target).iter().enumerate() {
        let verdict = if *accepted { "decode" } else { "be refused" };
        assert_eq!(
            check(input),
            *accepted,
            "seed {i} of {target} should {verdict}: {}",
            String::from_utf8_lossy(input)
        );
    }
}

#[test]
fn grpc_frame() {
    replay("grpc_frame");
}

#[test]
fn json_codec() {
    replay("json_codec");
}

#[test]
fn gateway_path() {
    replay("gateway_path");
}

#[test]
fn gateway_query() {
    replay("gateway_query");
}

#[test]
fn gateway_route() {
    replay("gateway_route");
}

#[test]
fn mdns_txt() {
    replay("mdns_txt");
}

#[test]
fn etcd_record() {
    replay("etcd_record");
}
