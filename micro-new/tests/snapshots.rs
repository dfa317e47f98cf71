//! Directory snapshots of every project type (like cargo's own `cargo_new` tests): the expected
//! tree and contents live under `tests/snapshots/<type>/`. `UPDATE_GOLDEN=1` rewrites them;
//! otherwise a difference fails with the first differing lines.

use std::path::{Path, PathBuf};

use micro_new::{Kind, Options, Source};

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(dir).unwrap().to_path_buf());
            }
        }
    }
    out.sort();
    out
}

fn check(kind: Kind, plugins: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = Options::new("github.com/micro/example");
    opts.kind = kind;
    opts.parent = tmp.path().to_path_buf();
    opts.source = Source::Path(PathBuf::from("/path/to/micro"));
    opts.plugins = micro_new::parse_plugins(plugins).unwrap();
    let created = micro_new::create(&opts).unwrap();
    let name = if plugins.is_empty() { kind.name().to_string() } else { format!("{}-plugins", kind.name()) };
    let snapshot = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots").join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&snapshot);
        for rel in &created.files {
            let to = snapshot.join(rel);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(created.dir.join(rel), to).unwrap();
        }
        return;
    }
    assert_eq!(files_under(&created.dir), files_under(&snapshot), "{} tree", kind.name());
    for rel in &created.files {
        let got = std::fs::read_to_string(created.dir.join(rel)).unwrap();
        let want = std::fs::read_to_string(snapshot.join(rel)).unwrap();
        if got != want {
            let line = got.lines().zip(want.lines()).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{}/{} differs at line {} (UPDATE_GOLDEN=1 to accept)\n--- snapshot\n{}\n+++ generated\n{}",
                kind.name(),
                rel.display(),
                line + 1,
                want.lines().nth(line).unwrap_or(""),
                got.lines().nth(line).unwrap_or("")
            );
        }
    }
}

#[test]
fn service() {
    check(Kind::Service, "");
}

#[test]
fn service_with_plugins() {
    check(Kind::Service, "registry=etcd:broker=nats");
}

#[test]
fn function() {
    check(Kind::Function, "");
}

#[test]
fn api() {
    check(Kind::Api, "");
}

#[test]
fn web() {
    check(Kind::Web, "");
}

#[test]
fn refuses_a_non_empty_directory_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::create_dir(tmp.path().join("example")).unwrap();
    std::fs::write(tmp.path().join("example/keep.txt"), "mine").unwrap();
    let mut opts = Options::new("github.com/micro/example");
    opts.parent = tmp.path().to_path_buf();
    let err = micro_new::create(&opts).unwrap_err().to_string();
    assert!(err.contains("already exists and is not empty; nothing was written"), "{err}");
    assert_eq!(std::fs::read_dir(tmp.path().join("example")).unwrap().count(), 1);
}
