//! The protoc plugin with real hosts: Debian's `protoc` and grpcio-tools' `grpc_tools.protoc`.
//! Their output must equal the golden files the build.rs path produces, and the committed
//! plugin-generated example must be up to date.

use std::path::{Path, PathBuf};
use std::process::Command;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn plugin() -> &'static str {
    env!("CARGO_BIN_EXE_protoc-gen-micro")
}

fn run(mut cmd: Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run ./scripts/setup)"));
    out
}

fn generated(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), std::fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    files.sort();
    files
}

fn assert_same_as_golden(out_dir: &Path, case: &str) {
    let golden = generated(&manifest().join("tests/golden").join(case));
    let got = generated(out_dir);
    assert_eq!(
        got.iter().map(|f| &f.0).collect::<Vec<_>>(),
        golden.iter().map(|f| &f.0).collect::<Vec<_>>(),
        "{case}: file names"
    );
    // The embedded descriptor set differs where the hosts ship different copies of
    // google/protobuf/*.proto; everything else must be identical.
    let without_descriptors =
        |s: &str| s.lines().filter(|l| !l.starts_with("pub const FILE_DESCRIPTOR_SET")).collect::<Vec<_>>().join("\n");
    for ((name, g), (_, want)) in got.iter().zip(&golden) {
        assert_eq!(
            g.contains("pub const FILE_DESCRIPTOR_SET"),
            want.contains("pub const FILE_DESCRIPTOR_SET"),
            "{case}/{name}: descriptor set"
        );
        assert!(
            without_descriptors(g) == without_descriptors(want),
            "{case}/{name}: protoc's output differs from the build.rs output"
        );
    }
}

fn protoc(out: &Path, opt: Option<&str>, file: &str) -> Command {
    let mut cmd = Command::new("protoc");
    cmd.arg(format!("--plugin=protoc-gen-micro={}", plugin()))
        .arg(format!("--micro_out={}", out.display()))
        .arg(format!("-I{}", manifest().join("tests/protos").display()))
        .arg("-I/usr/include")
        .arg(file);
    if let Some(o) = opt {
        cmd.arg(format!("--micro_opt={o}"));
    }
    cmd
}

#[test]
fn debian_protoc_matches_build_rs() {
    for (case, file, opt) in [
        ("shop", "corpus/shop.proto", Some("include_file=mod.rs")),
        ("types", "corpus/types.proto", None),
        ("nopackage", "corpus/nopackage.proto", None),
        (
            "client_only",
            "corpus/shop.proto",
            Some("services_only,server=false,extern_path=.corpus.shop.v1=::shop_messages,extern_path=.corpus.types=::types_messages"),
        ),
    ] {
        let out = tempfile::tempdir().unwrap();
        let res = run(protoc(out.path(), opt, file));
        assert!(res.status.success(), "{case}: protoc failed: {}", String::from_utf8_lossy(&res.stderr));
        assert_same_as_golden(out.path(), case);
    }
}

#[test]
fn grpc_tools_protoc_matches_build_rs() {
    let python = std::env::var_os("MICRO_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("../.venv/bin/python"));
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "grpc_tools.protoc"])
        .arg(format!("--plugin=protoc-gen-micro={}", plugin()))
        .arg(format!("--micro_out={}", out.path().display()))
        .arg("--micro_opt=include_file=mod.rs")
        .arg(format!("-I{}", manifest().join("tests/protos").display()))
        .arg("corpus/shop.proto");
    let res = run(cmd);
    assert!(res.status.success(), "grpc_tools.protoc failed: {}", String::from_utf8_lossy(&res.stderr));
    assert_same_as_golden(out.path(), "shop");
}

#[test]
fn broken_input_is_a_clear_error_not_a_panic() {
    let out = tempfile::tempdir().unwrap();
    let res = run(protoc(out.path(), None, "broken.proto"));
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("broken.proto:5:1"), "{err}");

    let res = run(protoc(out.path(), Some("nosuch=1"), "corpus/nopackage.proto"));
    assert!(!res.status.success());
    let err = String::from_utf8_lossy(&res.stderr);
    assert!(err.contains("unknown option \"nosuch\""), "{err}");

    let mut child = Command::new(plugin())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"\xff\xff\xff not a request").unwrap();
    let res = child.wait_with_output().unwrap();
    assert!(res.status.success(), "a plugin reports errors inside its response");
    assert!(String::from_utf8_lossy(&res.stdout).contains("invalid CodeGeneratorRequest"));
}

#[test]
fn committed_plugin_output_of_the_pinger_example_is_current() {
    let example = manifest().join("../examples/pinger");
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("protoc");
    cmd.arg(format!("--plugin=protoc-gen-micro={}", plugin()))
        .arg(format!("--micro_out={}", out.path().display()))
        .arg(format!("-I{}", example.join("proto").display()))
        .arg("pinger.proto");
    let res = run(cmd);
    assert!(res.status.success(), "protoc failed: {}", String::from_utf8_lossy(&res.stderr));
    let fresh = std::fs::read_to_string(out.path().join("pinger.rs")).unwrap();
    let committed = std::fs::read_to_string(example.join("src/gen/pinger.rs")).unwrap();
    assert!(
        fresh == committed,
        "examples/pinger/src/gen/pinger.rs is stale: regenerate it with `make -C examples/pinger proto`"
    );
}
