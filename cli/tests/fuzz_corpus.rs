//! The corpus of the tools' own fuzz target (`websocket_bridge`, see `fuzz/`) replayed as a test:
//! every input under `fuzz/corpus/websocket_bridge` and `fuzz/regressions/websocket_bridge` goes
//! through the target's check, and every seed must pass a message through, or not, as it says.

use std::path::Path;

fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return vec![] };
    let mut files: Vec<_> = entries.map(|e| e.expect("corpus entries are readable").path()).collect();
    files.sort();
    files
}

#[test]
fn websocket_bridge() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let corpus = files(&root.join("corpus/websocket_bridge"));
    assert!(!corpus.is_empty(), "the corpus of websocket_bridge is missing or empty (run scripts/fuzz)");
    for path in corpus.iter().chain(&files(&root.join("regressions/websocket_bridge"))) {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        if std::panic::catch_unwind(|| micro_cli::fuzzing::websocket_bridge(&data)).is_err() {
            panic!("{} fails the websocket_bridge check (the panic above says why)", path.display());
        }
    }
    for (i, (input, through)) in micro_cli::fuzzing::websocket_seeds().iter().enumerate() {
        assert_eq!(micro_cli::fuzzing::websocket_bridge(input), *through, "seed {i}");
    }
}
