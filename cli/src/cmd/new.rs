//! `micro new PATH`: writes a complete project (see the `micro-new` crate).

use std::time::Instant;

use micro_new::{Kind, Options, Source};

use crate::UsageError;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The project path, e.g. github.com/micro/example (the last element is the alias).
    pub(crate) path: String,
    /// service, function, api or web.
    #[arg(long = "type", default_value = "service")]
    pub(crate) kind: String,
    /// The namespace of the FQDN.
    #[arg(long, default_value = "go.micro")]
    pub(crate) namespace: String,
    /// The alias (default: the last element of the path).
    #[arg(long)]
    pub(crate) alias: Option<String>,
    /// The full service name (default: <namespace>.<srv|fnc|api|web>.<alias>).
    #[arg(long)]
    pub(crate) fqdn: Option<String>,
    /// Plugins, e.g. registry=etcd:broker=nats (cargo features and defaults).
    #[arg(long)]
    pub(crate) plugin: Option<String>,
    /// A checkout of micro to depend on (default: the one this binary was built from).
    #[arg(long = "micro-path", value_name = "DIR")]
    pub(crate) micro_path: Option<std::path::PathBuf>,
    /// Depend on this release of micro from crates.io instead of a checkout.
    #[arg(long = "micro-version", value_name = "VERSION", conflicts_with = "micro_path")]
    pub(crate) micro_version: Option<String>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<()> {
    let start = Instant::now();
    let mut opts = Options::new(&args.path);
    opts.kind = args.kind.parse::<Kind>().map_err(|e| UsageError(e.to_string()))?;
    opts.namespace = args.namespace;
    opts.alias = args.alias;
    opts.fqdn = args.fqdn;
    if let Some(p) = &args.plugin {
        opts.plugins = micro_new::parse_plugins(p).map_err(|e| UsageError(e.to_string()))?;
    }
    if let Some(dir) = args.micro_path {
        let dir =
            std::fs::canonicalize(&dir).map_err(|e| UsageError(format!("--micro-path {}: {e}", dir.display())))?;
        opts.source = Source::Path(dir);
    } else if let Some(v) = args.micro_version {
        opts.source = Source::Version(v);
    }
    let (preview, _) = micro_new::render(&opts).map_err(|e| UsageError(e.to_string()))?;
    println!("Creating {} {} in {}\n", opts.kind.name(), preview.fqdn, preview.alias);
    let created = micro_new::create(&opts)?;
    println!("{}\n", micro_new::tree(&created));
    print!("{}", micro_new::next_steps(&created, &opts.micro_cli));
    tracing_free_timing(start);
    Ok(())
}

/// Says how long it took when asked (`MICRO_NEW_TIMING=1`), on standard error.
fn tracing_free_timing(start: Instant) {
    if std::env::var_os("MICRO_NEW_TIMING").is_some() {
        eprintln!("micro new took {:?}", start.elapsed());
    }
}
