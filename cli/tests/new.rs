//! `micro new` end to end: every project type is written by the binary, builds with zero
//! warnings, passes `cargo clippy -- -D warnings` and its own tests; the service runs and answers
//! every kind of call and both subscribers get a published message; the function answers once
//! and exits. Projects share one target directory (and the workspace's lock file) to stay fast.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::{cargo, new_project};

fn micro() -> Command {
    Command::new(env!("CARGO_BIN_EXE_micro"))
}

/// Writes a project with the `micro` binary, then checks it builds clean.
fn scaffold(parent: &Path, kind: &str, path: &str) -> PathBuf {
    let (dir, out) = new_project(parent, kind, path);
    let alias = path.rsplit('/').next().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with(&format!("Creating {kind} go.micro.")), "{stdout}");
    assert!(stdout.contains(&format!("cd ./{alias} && cargo run")), "{stdout}");
    let build = cargo(&dir, &["build", "--all-targets"]);
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert!(!stderr.contains("warning"), "{kind}: warnings:\n{stderr}");
    cargo(&dir, &["clippy", "--all-targets", "--", "-D", "warnings"]);
    cargo(&dir, &["test"]);
    dir
}

fn binary(alias: &str) -> PathBuf {
    common::scaffolded_binary(alias)
}

fn cli(args: &[&str]) -> Output {
    micro().args(args).env("MICRO_REGISTRY", "mdns").stdin(Stdio::null()).output().unwrap()
}

fn retry_until_ok(args: &[&str]) -> Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = cli(args);
        if out.status.success() || Instant::now() > deadline {
            return out;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn every_type_builds_and_the_service_and_function_run() {
    let tmp = tempfile::tempdir().unwrap();
    let refused = micro().args(["new", "github.com/micro/Bad Name"]).current_dir(tmp.path()).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));

    let service = scaffold(tmp.path(), "service", "github.com/micro/newsvc");
    scaffold(tmp.path(), "api", "github.com/micro/newapi");
    scaffold(tmp.path(), "web", "github.com/micro/newweb");
    let function = scaffold(tmp.path(), "function", "github.com/micro/newfnc");

    let again = micro().args(["new", "github.com/micro/newsvc"]).current_dir(tmp.path()).output().unwrap();
    assert_eq!(again.status.code(), Some(1), "a non-empty target is refused");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not empty"));

    // The service: every call kind, and pub/sub to both subscribers.
    let log = service.join("service.log");
    let mut child = Command::new(binary("newsvc"))
        .env("MICRO_REGISTRY", "mdns")
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let call = retry_until_ok(&["call", "go.micro.srv.newsvc", "Newsvc.Call", r#"{"name":"John"}"#]);
    assert_eq!(String::from_utf8_lossy(&call.stdout), "{\n\t\"msg\": \"Hello John\"\n}\n");
    let stream = cli(&["stream", "go.micro.srv.newsvc", "Newsvc.Stream", r#"{"count":3}"#]);
    assert_eq!(String::from_utf8_lossy(&stream.stdout).lines().count(), 3, "{stream:?}");
    let pingpong = {
        let mut c = micro()
            .args(["stream", "go.micro.srv.newsvc", "Newsvc.PingPong"])
            .env("MICRO_REGISTRY", "mdns")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write;
        c.stdin.take().unwrap().write_all(b"{\"stroke\":7}\n{\"stroke\":8}\n").unwrap();
        c.wait_with_output().unwrap()
    };
    assert_eq!(String::from_utf8_lossy(&pingpong.stdout), "{\"stroke\":\"7\"}\n{\"stroke\":\"8\"}\n");
    let publish = cli(&["publish", "topic.go.micro.srv.newsvc", r#"{"say":"hello subscribers"}"#]);
    assert_eq!(String::from_utf8_lossy(&publish.stdout), "ok\n", "{publish:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if text.contains("Func received a message") && text.contains("Newsvc.Handle received a message") {
            break;
        }
        assert!(Instant::now() < deadline, "both subscribers should log the message:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();

    // The function answers one call, then exits by itself.
    let mut f = Command::new(binary("newfnc")).env("MICRO_REGISTRY", "mdns").stderr(Stdio::null()).spawn().unwrap();
    let call = retry_until_ok(&["call", "go.micro.fnc.newfnc", "Newfnc.Call", r#"{"name":"once"}"#]);
    assert!(String::from_utf8_lossy(&call.stdout).contains("Hello once"), "{call:?}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = f.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(Instant::now() < deadline, "the function did not exit after its request");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(function);
}

/// The commands of the `build` stage of a generated Dockerfile (`RUN` lines between its
/// `FROM ... AS build` and the next `FROM`).
fn build_stage(dockerfile: &str) -> Vec<String> {
    let mut in_build = false;
    let mut runs = vec![];
    for line in dockerfile.lines().map(str::trim) {
        if let Some(from) = line.strip_prefix("FROM ") {
            in_build = from.trim_end().ends_with("AS build");
        } else if in_build {
            if let Some(cmd) = line.strip_prefix("RUN ") {
                runs.push(cmd.to_string());
            }
        }
    }
    runs
}

#[test]
fn a_service_with_plugins_builds_as_its_makefile_and_dockerfile_say() {
    let tmp = tempfile::tempdir().unwrap();
    let out = micro()
        .args(["new", "github.com/micro/plugged", "--plugin", "registry=etcd:broker=nats:transport=nats"])
        .current_dir(tmp.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dir = tmp.path().join("plugged");
    std::fs::copy(common::workspace().join("Cargo.lock"), dir.join("Cargo.lock")).unwrap();
    let main = std::fs::read_to_string(dir.join("src/main.rs")).unwrap();
    assert!(
        main.contains(r#"options.set("registry", "etcd")?;"#) && main.contains(r#"options.set("broker", "nats")?;"#),
        "{main}"
    );

    // The Makefile's targets: `make test`, and `make proto` with the plugin on PATH.
    let path =
        format!("{}:{}", common::workspace().join("target/debug").display(), std::env::var("PATH").unwrap_or_default());
    let make = |target: &str| {
        Command::new("make")
            .arg(target)
            .current_dir(&dir)
            .env("CARGO_TARGET_DIR", common::workspace().join("target/scaffold"))
            .env("CARGO_NET_OFFLINE", "true")
            .env("PATH", &path)
            .env_remove("RUSTFLAGS")
            .output()
            .expect("make runs")
    };
    let test = make("test");
    assert!(test.status.success(), "make test:\n{}", String::from_utf8_lossy(&test.stderr));
    let proto = make("proto");
    assert!(proto.status.success(), "make proto:\n{}", String::from_utf8_lossy(&proto.stderr));
    assert!(dir.join("src/gen/go.micro.srv.plugged.rs").exists(), "make proto writes the generated code");

    // The Dockerfile's build stage, as docker runs it: its RUN lines in a copy of the build
    // context, and the binary where the final stage copies it from. (Without optimizations, to
    // keep the suite fast: what is checked is that the stage builds and where its binary goes.)
    let dockerfile = std::fs::read_to_string(dir.join("Dockerfile")).unwrap();
    let runs = build_stage(&dockerfile);
    assert_eq!(runs, ["cargo build --release"], "{dockerfile}");
    let context = tempfile::tempdir().unwrap();
    let src = context.path().join("src");
    let copied = Command::new("cp").args(["-r"]).arg(&dir).arg(&src).status().unwrap();
    assert!(copied.success());
    let _ = std::fs::remove_dir_all(src.join("target"));
    for run in &runs {
        let built = Command::new("sh")
            .args(["-c", run])
            .current_dir(&src)
            .env("CARGO_NET_OFFLINE", "true")
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "0")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "64")
            .env_remove("CARGO_TARGET_DIR")
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        assert!(built.status.success(), "RUN {run}:\n{}", String::from_utf8_lossy(&built.stderr));
    }
    assert!(
        dockerfile.contains("COPY --from=build /src/target/release/plugged /usr/local/bin/plugged"),
        "{dockerfile}"
    );
    assert!(src.join("target/release/plugged").exists(), "the build stage leaves the binary the final stage copies");
}
