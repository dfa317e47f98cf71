//! `micro run [DIR]`: the inner loop. Builds every binary of the project or workspace in DIR, or
//! of each project a `micro.toml` there lists (`services = ["users", "orders"]`, directories
//! relative to it), with `cargo build --bins` (whose own progress bar or lines show on long
//! builds), and runs each as a
//! service with `micro api` and `micro web` beside them (unless `--no-api`, `--no-web`), on the
//! embedded defaults, their lines prefixed with the name (coloured on a terminal). It watches
//! the sources (`notify`, debounced; `target/` and dot-directories are ignored) and rebuilds on
//! a change: while a build runs, or when it fails (cargo prints the compiler's error), the
//! running binaries keep serving. A binary the build changed is replaced gracefully: the new
//! process starts, and only when it has registered is the old one sent SIGTERM, so it drains and
//! deregisters while the new node already answers. Ctrl-C stops the services (each drains and
//! deregisters), then the tools.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use crate::global::Global;
use crate::UsageError;

/// How long a new process may take to register before it is given up on.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a stopped process may take to drain before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// Quiet time that ends a burst of file changes.
const DEBOUNCE: Duration = Duration::from_millis(300);

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The project or workspace (default: the current directory).
    #[arg(default_value = ".")]
    dir: PathBuf,
    /// Do not run `micro api` beside the services.
    #[arg(long)]
    no_api: bool,
    /// Do not run `micro web` beside the services.
    #[arg(long)]
    no_web: bool,
    /// Where `micro api` listens.
    #[arg(long = "api_address", default_value = "127.0.0.1:8080")]
    api_address: String,
    /// Where `micro web` listens.
    #[arg(long = "web_address", default_value = "127.0.0.1:8082")]
    web_address: String,
    /// Do not watch the sources: build and run once.
    #[arg(long)]
    no_watch: bool,
}

/// One binary of a project.
#[derive(Debug, Clone)]
struct Bin {
    name: String,
    path: PathBuf,
    /// The project that builds it.
    project: PathBuf,
}

/// What `micro.toml` says.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Manifest {
    /// Project directories, relative to the file.
    services: Vec<PathBuf>,
}

/// The projects to run: those `DIR/micro.toml` lists, else DIR itself.
fn projects(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let file = dir.join("micro.toml");
    let Ok(text) = std::fs::read_to_string(&file) else { return Ok(vec![dir.to_path_buf()]) };
    let manifest: Manifest = toml::from_str(&text)
        .map_err(|e| UsageError(format!("{} is not a micro.toml: {}", file.display(), e.message())))?;
    if manifest.services.is_empty() {
        return Err(UsageError(format!("{} lists no services", file.display())).into());
    }
    Ok(manifest.services.iter().map(|p| dir.join(p)).collect())
}

/// A running process whose lines go out prefixed.
struct Running {
    child: Child,
    /// Told once when the process has registered (or has exited: `false`).
    registered: mpsc::Receiver<bool>,
    /// The binary's modification time when it started.
    built: Option<SystemTime>,
}

/// The binaries `cargo metadata` lists for `dir`, where `cargo build` puts them.
fn bins(dir: &Path) -> anyhow::Result<Vec<Bin>> {
    let out =
        Command::new(cargo()).args(["metadata", "--no-deps", "--format-version", "1"]).current_dir(dir).output()?;
    if !out.status.success() {
        return Err(UsageError(format!(
            "{} is not a cargo project: {}",
            dir.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .into());
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let target = PathBuf::from(meta["target_directory"].as_str().unwrap_or("target")).join("debug");
    let mut bins = vec![];
    for package in meta["packages"].as_array().into_iter().flatten() {
        for t in package["targets"].as_array().into_iter().flatten() {
            if t["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "bin")) {
                let name = t["name"].as_str().unwrap_or_default().to_string();
                bins.push(Bin { path: target.join(&name), name, project: dir.to_path_buf() });
            }
        }
    }
    if bins.is_empty() {
        return Err(UsageError(format!("{} has no binaries to run", dir.display())).into());
    }
    Ok(bins)
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Builds every binary of `dir`; cargo shows its progress and the compiler's errors.
fn build(dir: &Path) -> bool {
    say(&format!("building {}", dir.display()));
    let started = Instant::now();
    let ok = Command::new(cargo())
        .args(["build", "--bins"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        say(&format!("built in {:.1} s", started.elapsed().as_secs_f64()));
    } else {
        say("the build failed; what is running keeps serving");
    }
    ok
}

fn say(line: &str) {
    eprintln!("{} {line}", paint("micro run", 1));
}

/// `text` in the `n`th colour on a terminal.
fn paint(text: &str, n: usize) -> String {
    if std::io::stderr().is_terminal() {
        format!("\x1b[{}m{text}\x1b[0m", 31 + n % 6)
    } else {
        text.to_string()
    }
}

/// Starts `program ARGS`, its lines prefixed with `name`; `registered` is told when a line of
/// its standard error contains `ready` (a service's "registered with the ... registry").
fn spawn(name: &str, colour: usize, program: &Path, args: &[&str], ready: &'static str) -> anyhow::Result<Running> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("{} does not start: {e}", program.display()))?;
    let (tx, registered) = mpsc::channel();
    let prefix = paint(&format!("{name:>12} |"), colour);
    for (i, stream) in [
        child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child.stderr.take().map(|s| Box::new(s) as _),
    ]
    .into_iter()
    .enumerate()
    {
        let (Some(stream), prefix, tx) = (stream, prefix.clone(), tx.clone()) else { continue };
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if i == 1 && line.contains(ready) {
                    let _ = tx.send(true);
                }
                eprintln!("{prefix} {line}");
            }
            let _ = tx.send(false);
        });
    }
    let built = std::fs::metadata(program).and_then(|m| m.modified()).ok();
    Ok(Running { child, registered, built })
}

/// Asks a process to stop (SIGTERM: it drains and deregisters), killing it after the timeout.
fn stop(mut running: Running) {
    let pid = nix::unistd::Pid::from_raw(running.child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + STOP_TIMEOUT;
    while Instant::now() < deadline {
        if running.child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = running.child.kill();
    let _ = running.child.wait();
}

/// Starts `bin`, waiting until it has registered; `None` if it exits or never does.
fn start(bin: &Bin, colour: usize) -> Option<Running> {
    let running = match spawn(&bin.name, colour, &bin.path, &[], "registered with the") {
        Ok(r) => r,
        Err(e) => {
            say(&e.to_string());
            return None;
        }
    };
    match running.registered.recv_timeout(REGISTER_TIMEOUT) {
        Ok(true) => Some(running),
        _ => {
            say(&format!("{} did not register; the one before it keeps serving", bin.name));
            stop(running);
            None
        }
    }
}

/// Builds every project, then replaces every service whose binary changed: the new process
/// first, then the old one stopped. A project that fails to build keeps its processes.
fn rebuild(
    projects: &[PathBuf],
    bins: &[Bin],
    services: &mut BTreeMap<String, Running>,
    stopping: &mut Vec<std::thread::JoinHandle<()>>,
) {
    let built: Vec<&PathBuf> = projects.iter().filter(|p| build(p)).collect();
    for (i, bin) in bins.iter().enumerate() {
        if !built.contains(&&bin.project) {
            continue;
        }
        let now = std::fs::metadata(&bin.path).and_then(|m| m.modified()).ok();
        if services.get(&bin.name).is_some_and(|r| r.built == now) {
            continue;
        }
        if let Some(new) = start(bin, i + 2) {
            say(&format!("{} replaced", bin.name));
            if let Some(old) = services.insert(bin.name.clone(), new) {
                stopping.retain(|h| !h.is_finished());
                stopping.push(std::thread::spawn(move || stop(old)));
            }
        }
    }
}

/// Events of file changes in the `projects` that a build could care about.
fn watch(projects: &[PathBuf]) -> anyhow::Result<(notify::RecommendedWatcher, mpsc::Receiver<()>)> {
    use notify::Watcher;
    let (tx, rx) = mpsc::channel();
    let roots = projects.iter().map(|p| p.canonicalize()).collect::<Result<Vec<_>, _>>()?;
    let bases = roots.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let Ok(event) = res else { return };
        if matches!(event.kind, notify::EventKind::Access(_)) {
            return;
        }
        let relevant = event.paths.iter().any(|p| {
            let rel = bases.iter().find_map(|b| p.strip_prefix(b).ok()).unwrap_or(p);
            !rel.components().any(|c| {
                let c = c.as_os_str().to_string_lossy();
                c == "target" || (c.starts_with('.') && c.len() > 1)
            })
        });
        if relevant {
            let _ = tx.send(());
        }
    })?;
    for root in &roots {
        watcher.watch(root, notify::RecursiveMode::Recursive)?;
    }
    Ok((watcher, rx))
}

pub(crate) async fn run(_global: &Global, args: Args) -> anyhow::Result<()> {
    let (stop_tx, stop_rx) = mpsc::channel();
    tokio::spawn(async move {
        micro::service::shutdown_signal().await;
        let _ = stop_tx.send(());
    });
    tokio::task::spawn_blocking(move || serve(args, stop_rx)).await?
}

fn serve(args: Args, stopped: mpsc::Receiver<()>) -> anyhow::Result<()> {
    let projects = projects(&args.dir)?;
    let mut all = vec![];
    for p in &projects {
        all.extend(bins(p)?);
    }
    let bins = all;
    say(&format!("running {}", bins.iter().map(|b| b.name.as_str()).collect::<Vec<_>>().join(", ")));
    let changes = if args.no_watch { None } else { Some(watch(&projects)?) };
    let me = std::env::current_exe()?;
    let mut tools = vec![];
    if !args.no_api {
        tools.push(spawn("api", 0, &me, &["api", "--api_address", &args.api_address], "listening on")?);
    }
    if !args.no_web {
        tools.push(spawn("web", 1, &me, &["web", "--web_address", &args.web_address], "listening on")?);
    }
    let mut services = BTreeMap::new();
    // Replaced processes still draining, waited for before `micro run` ends.
    let mut stopping = vec![];
    rebuild(&projects, &bins, &mut services, &mut stopping);
    loop {
        if stopped.recv_timeout(Duration::from_millis(100)).is_ok() {
            break;
        }
        let Some((_, rx)) = &changes else { continue };
        if rx.try_recv().is_err() {
            continue;
        }
        // The rest of the burst.
        while rx.recv_timeout(DEBOUNCE).is_ok() {}
        rebuild(&projects, &bins, &mut services, &mut stopping);
    }
    say("stopping");
    let mut handles = stopping;
    handles.extend(services.into_values().map(|s| std::thread::spawn(move || stop(s))));
    handles.into_iter().for_each(|h| drop(h.join()));
    tools.into_iter().for_each(stop);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_micro_toml_lists_the_projects() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(projects(dir.path()).unwrap(), [dir.path()], "no micro.toml: the directory itself");
        std::fs::write(dir.path().join("micro.toml"), "# the fleet\nservices = [\"users\", \"shop/orders\"]\n")
            .unwrap();
        assert_eq!(projects(dir.path()).unwrap(), [dir.path().join("users"), dir.path().join("shop/orders")]);
        std::fs::write(dir.path().join("micro.toml"), "service = [\"typo\"]\n").unwrap();
        let e = projects(dir.path()).unwrap_err().to_string();
        assert!(e.contains("is not a micro.toml") && e.contains("unknown field"), "{e}");
        std::fs::write(dir.path().join("micro.toml"), "services = []\n").unwrap();
        assert!(projects(dir.path()).unwrap_err().to_string().contains("lists no services"));
    }
}
