//! Golden files of the generated code. `UPDATE_GOLDEN=1 cargo test -p micro-build --test golden`
//! rewrites them; otherwise any difference fails with the first differing lines.

use std::path::{Path, PathBuf};

fn protos() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/protos")
}

/// A generated file as prettyplease lays it out, however it was laid out.
fn tokens(code: &str) -> String {
    prettyplease::unparse(&syn::parse_file(code).expect("generated code parses"))
}

/// Checks the pretty-printed output of `config` against the case's golden files, and that the
/// default output (prost's code not pretty-printed) is the same code.
fn check(case: &str, files: &[&str], config: impl Fn() -> micro_build::Config) {
    let (set, names) = micro_build::parse(files, &[protos()]).expect("corpus parses");
    let generated = config().format(true).generate(&set, &names).expect("generates");
    let plain = config().generate(&set, &names).expect("generates");
    assert_eq!(plain.len(), generated.len(), "{case}: the same files either way");
    for ((name, pretty), (_, plain)) in generated.iter().zip(&plain) {
        if name.ends_with(".rs") {
            assert_eq!(tokens(pretty), tokens(plain), "{case}/{name}: formatting changed the code");
        }
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(case);
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    if update {
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut expected: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    expected.sort();
    let mut got: Vec<String> = generated.iter().map(|(n, _)| n.clone()).collect();
    got.sort();
    if !update {
        assert_eq!(got, expected, "{case}: generated files differ from the golden ones (UPDATE_GOLDEN=1 to accept)");
    }
    for (name, contents) in &generated {
        let path = dir.join(name);
        if update {
            std::fs::write(&path, contents).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap();
        if &want != contents {
            let line = want.lines().zip(contents.lines()).position(|(a, b)| a != b).unwrap_or(0);
            let show = |s: &str| s.lines().skip(line.saturating_sub(2)).take(6).collect::<Vec<_>>().join("\n");
            panic!(
                "{case}/{name} differs from its golden file at line {} (UPDATE_GOLDEN=1 to accept)\n--- golden\n{}\n+++ generated\n{}",
                line + 1,
                show(&want),
                show(contents)
            );
        }
    }
}

#[test]
fn messages_of_every_kind() {
    check("types", &["corpus/types.proto"], micro_build::configure);
}

#[test]
fn services_of_every_kind_with_imports_and_http_routes() {
    check("shop", &["corpus/shop.proto"], || micro_build::configure().include_file("mod.rs"));
}

#[test]
fn names_that_collide_well_known_types_and_trailing_comments() {
    check("collide", &["corpus/collide.proto"], micro_build::configure);
}

#[test]
fn proto2_with_defaults_and_an_extension_left_out() {
    check("legacy", &["corpus/legacy.proto", "corpus/uses.proto"], micro_build::configure);
}

#[test]
fn file_without_package() {
    check("nopackage", &["corpus/nopackage.proto"], micro_build::configure);
}

#[test]
fn services_only_client_only_with_extern_path() {
    check("client_only", &["corpus/shop.proto"], || {
        micro_build::configure()
            .services_only(true)
            .build_server(false)
            .extern_path(".corpus.shop.v1", "::shop_messages")
            .extern_path(".corpus.types", "::types_messages")
    });
}

#[test]
fn broken_proto_reports_file_line_and_column() {
    let err = micro_build::configure()
        .out_dir(std::env::temp_dir())
        .compile_protos(&["broken.proto"], &[protos()])
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("broken.proto:5:1: "), "{err}");
    let missing = micro_build::parse(&["nope.proto"], &[protos()]).unwrap_err().to_string();
    assert!(missing.contains("nope.proto"), "{missing}");
}
