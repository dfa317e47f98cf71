//! `micro new`: writes a complete project from the templates under `templates/<type>/`, which
//! are embedded in the binary (include_dir) and rendered with Tera, file names included.
//!
//! Names follow Go Micro: the alias is the last element of the path, the FQDN is
//! `<namespace>.<srv|fnc|api|web>.<alias>` (so `go.micro.srv.example`), and the project goes to
//! `./<alias>/` (no GOPATH). Everything is rendered in memory first; a target directory that is
//! not empty, or any error, writes nothing.

use std::fmt;
use std::path::{Path, PathBuf};

use heck::{ToSnakeCase, ToUpperCamelCase};
use include_dir::{include_dir, Dir, DirEntry};

static TEMPLATES: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// The one error type of the scaffolder: a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

fn err(msg: impl Into<String>) -> Error {
    Error(msg.into())
}

/// What kind of project to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// An RPC service with handlers and subscribers.
    #[default]
    Service,
    /// A service that answers one request and exits.
    Function,
    /// A handler for the gateway's `api` handler.
    Api,
    /// A small web site for the dashboard's proxy.
    Web,
}

impl Kind {
    /// Every kind, as `--type` names them.
    pub const NAMES: &'static [&'static str] = &["service", "function", "api", "web"];

    /// The template folder.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Service => "service",
            Kind::Function => "function",
            Kind::Api => "api",
            Kind::Web => "web",
        }
    }

    /// The FQDN segment (`srv`, `fnc`, `api`, `web`).
    pub fn segment(self) -> &'static str {
        match self {
            Kind::Service => "srv",
            Kind::Function => "fnc",
            Kind::Api => "api",
            Kind::Web => "web",
        }
    }
}

impl std::str::FromStr for Kind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "service" | "srv" => Ok(Kind::Service),
            "function" | "fnc" => Ok(Kind::Function),
            "api" => Ok(Kind::Api),
            "web" => Ok(Kind::Web),
            _ => Err(err(format!("unknown type \"{s}\" (valid: {})", Kind::NAMES.join(", ")))),
        }
    }
}

/// Where the generated project finds the `micro` crates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A checkout of this repository (path dependencies; builds offline).
    Path(PathBuf),
    /// A release on crates.io.
    Version(String),
}

impl Source {
    /// The repository this scaffolder was built from.
    pub fn this_repository() -> Source {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap_or(Path::new(".")).to_path_buf();
        Source::Path(root)
    }
}

/// What to create.
#[derive(Debug, Clone)]
pub struct Options {
    /// The path given on the command line, e.g. `github.com/micro/example`.
    pub path: String,
    /// The project type.
    pub kind: Kind,
    /// The namespace (`go.micro`).
    pub namespace: String,
    /// The alias (default: last element of the path).
    pub alias: Option<String>,
    /// The FQDN (default: `<namespace>.<segment>.<alias>`).
    pub fqdn: Option<String>,
    /// Plugins, e.g. `registry=etcd`, `broker=nats`.
    pub plugins: Vec<(String, String)>,
    /// Where the `micro` crates come from.
    pub source: Source,
    /// The directory the project folder is created in.
    pub parent: PathBuf,
    /// How to run the `micro` tool in the generated README.
    pub micro_cli: String,
}

impl Options {
    /// Defaults for a path: a service in the `go.micro` namespace, under the current directory.
    pub fn new(path: impl Into<String>) -> Self {
        Options {
            path: path.into(),
            kind: Kind::Service,
            namespace: "go.micro".into(),
            alias: None,
            fqdn: None,
            plugins: vec![],
            source: Source::this_repository(),
            parent: PathBuf::from("."),
            micro_cli: "micro".into(),
        }
    }
}

/// The plugins a project may default to, by kind (the names `--registry`, `--broker`,
/// `--transport` and `--selector` take; kept here so the scaffolder needs no runtime).
pub const PLUGINS: &[(&str, &[&str])] = &[
    ("registry", &["mdns", "etcd", "memory"]),
    ("broker", &["http", "nats", "nats-js", "rabbitmq", "kafka", "memory"]),
    ("transport", &["http", "grpc", "nats"]),
    ("selector", &["random", "roundrobin", "leastloaded"]),
];

/// Parses `registry=etcd:broker=nats` (also comma separated). Only known kinds and names are
/// taken: they are written into the project's source.
pub fn parse_plugins(spec: &str) -> Result<Vec<(String, String)>, Error> {
    spec.split([':', ','])
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').ok_or_else(|| err(format!("plugin {p:?} is not kind=name")))?;
            let kinds: Vec<&str> = PLUGINS.iter().map(|(k, _)| *k).collect();
            let Some((_, names)) = PLUGINS.iter().find(|(kind, _)| *kind == k) else {
                return Err(err(format!("unknown plugin kind {k:?} (valid: {})", kinds.join(", "))));
            };
            if !names.contains(&v) {
                return Err(err(format!("unknown {k} {v:?} (valid: {})", names.join(", "))));
            }
            Ok((k.to_string(), v.to_string()))
        })
        .collect()
}

/// Refuses a dotted name (`--namespace`, `--fqdn`) that could not be a service name and a proto
/// package: labels of ASCII letters, digits, `_` and `-`, each starting with a letter.
fn check_dotted(what: &str, name: &str) -> Result<(), Error> {
    let label_ok = |l: &str| {
        l.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    if name.len() > 200 || !name.split('.').all(label_ok) {
        return Err(err(format!(
            "{what} {name:?} is not a dotted name (labels of letters, digits, _ and -, each starting with a letter)"
        )));
    }
    Ok(())
}

/// What was created.
#[derive(Debug, Clone)]
pub struct Created {
    /// The FQDN.
    pub fqdn: String,
    /// The alias.
    pub alias: String,
    /// The project directory.
    pub dir: PathBuf,
    /// The files written, relative to `dir`, sorted.
    pub files: Vec<PathBuf>,
    /// The project type.
    pub kind: Kind,
}

fn valid_alias(alias: &str) -> bool {
    let mut chars = alias.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn features(plugins: &[(String, String)]) -> Vec<&'static str> {
    let mut f: Vec<&'static str> = plugins
        .iter()
        .filter_map(|(k, v)| match (k.as_str(), v.as_str()) {
            ("registry", "etcd") => Some("etcd"),
            ("broker", "nats" | "nats-js") | ("transport", "nats") => Some("nats"),
            ("broker", "rabbitmq") => Some("rabbitmq"),
            ("broker", "kafka") => Some("kafka"),
            _ => None,
        })
        .collect();
    f.sort();
    f.dedup();
    f
}

/// The version of `micro` a project names, and the checkout its `[patch.crates-io]` section
/// points at, if any.
fn source_of(source: &Source) -> (String, Option<PathBuf>) {
    match source {
        Source::Path(root) => (env!("CARGO_PKG_VERSION").to_string(), Some(root.clone())),
        Source::Version(v) => (v.clone(), None),
    }
}

/// Suffix of templates that cargo would otherwise take for a manifest; dropped on render.
const TEMPLATE_SUFFIX: &str = ".tera";

fn collect<'a>(dir: &'a Dir<'a>, out: &mut Vec<&'a include_dir::File<'a>>) {
    for entry in dir.entries() {
        match entry {
            DirEntry::Dir(d) => collect(d, out),
            DirEntry::File(f) => out.push(f),
        }
    }
}

/// Renders the project in memory: `(relative path, contents)` pairs.
pub fn render(opts: &Options) -> Result<(Created, Vec<(PathBuf, String)>), Error> {
    let alias = match &opts.alias {
        Some(a) => a.clone(),
        None => opts.path.trim_end_matches('/').rsplit('/').next().unwrap_or_default().to_string(),
    };
    if !valid_alias(&alias) {
        return Err(err(format!(
            "alias {alias:?} is not a valid crate name (lowercase letters, digits, - and _; starting with a letter)"
        )));
    }
    check_dotted("namespace", &opts.namespace)?;
    let fqdn = opts.fqdn.clone().unwrap_or_else(|| format!("{}.{}.{}", opts.namespace, opts.kind.segment(), alias));
    check_dotted("fqdn", &fqdn)?;
    // Plugins given in code bypass parse_plugins; they reach the sources too.
    for (k, v) in &opts.plugins {
        parse_plugins(&format!("{k}={v}"))?;
    }
    let mut ctx = tera::Context::new();
    ctx.insert("alias", &alias);
    ctx.insert("alias_snake", &alias.to_snake_case());
    ctx.insert("Alias", &alias.to_upper_camel_case());
    ctx.insert("fqdn", &fqdn);
    ctx.insert("namespace", &opts.namespace);
    ctx.insert("kind", opts.kind.name());
    ctx.insert("proto_package", &fqdn.replace('-', "_"));
    ctx.insert("topic", &format!("topic.{fqdn}"));
    let (version, checkout) = source_of(&opts.source);
    ctx.insert("micro_version", &version);
    let path_of = |dir: &str| checkout.as_ref().map(|root| format!("{:?}", root.join(dir).display().to_string()));
    ctx.insert("micro_path", &path_of("runtime"));
    ctx.insert("micro_build_path", &path_of("protoc-gen-micro"));
    ctx.insert("features", &features(&opts.plugins));
    ctx.insert("plugins", &opts.plugins);
    ctx.insert("micro_cli", &opts.micro_cli);

    let root =
        TEMPLATES.get_dir(opts.kind.name()).ok_or_else(|| err(format!("no templates for {}", opts.kind.name())))?;
    let mut files = vec![];
    collect(root, &mut files);
    let mut out = vec![];
    for f in files {
        let rel = f.path().strip_prefix(opts.kind.name()).unwrap_or(f.path());
        let rel_name = rel.to_string_lossy();
        let name = tera::Tera::one_off(rel_name.strip_suffix(TEMPLATE_SUFFIX).unwrap_or(&rel_name), &ctx, false)
            .map_err(|e| err(format!("template name {}: {e}", rel.display())))?;
        let text = f.contents_utf8().ok_or_else(|| err(format!("template {} is not UTF-8", rel.display())))?;
        let body = tera::Tera::one_off(text, &ctx, false).map_err(|e| {
            let mut msg = format!("template {}: {e}", rel.display());
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                msg.push_str(&format!(": {s}"));
                source = s.source();
            }
            err(msg)
        })?;
        out.push((PathBuf::from(name), body));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    let created = Created {
        fqdn,
        dir: opts.parent.join(&alias),
        alias,
        files: out.iter().map(|(p, _)| p.clone()).collect(),
        kind: opts.kind,
    };
    Ok((created, out))
}

/// Renders and writes the project; refuses a directory that exists and is not empty.
pub fn create(opts: &Options) -> Result<Created, Error> {
    let (created, files) = render(opts)?;
    if created.dir.exists() {
        let empty = std::fs::read_dir(&created.dir).map(|mut d| d.next().is_none()).unwrap_or(false);
        if !empty {
            return Err(err(format!("{} already exists and is not empty; nothing was written", created.dir.display())));
        }
    }
    for (rel, body) in &files {
        let path = created.dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| err(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, body).map_err(|e| err(format!("cannot write {}: {e}", path.display())))?;
    }
    Ok(created)
}

/// The written files as a tree, one per line, like `tree` prints them.
pub fn tree(created: &Created) -> String {
    let mut lines = vec![format!("{}/", created.dir.display())];
    let files: Vec<Vec<String>> = created
        .files
        .iter()
        .map(|p| p.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect())
        .collect();
    let mut printed: Vec<Vec<String>> = vec![];
    for parts in &files {
        for depth in 0..parts.len() {
            let prefix = parts[..=depth].to_vec();
            if printed.contains(&prefix) {
                continue;
            }
            let is_dir = depth + 1 < parts.len();
            lines.push(format!("{}{}{}", "    ".repeat(depth + 1), parts[depth], if is_dir { "/" } else { "" }));
            printed.push(prefix);
        }
    }
    lines.join("\n")
}

/// The commands to run next.
pub fn next_steps(created: &Created, micro_cli: &str) -> String {
    let dir = created.dir.display();
    let call = match created.kind {
        Kind::Service | Kind::Function => {
            format!(
                "{micro_cli} call {} {}.Call '{{\"name\": \"John\"}}'",
                created.fqdn,
                created.alias.to_upper_camel_case()
            )
        }
        Kind::Api => format!(
            "MICRO_API_HANDLER=api {micro_cli} api    # then: curl 'http://localhost:8080/{}/call?name=John'",
            created.alias
        ),
        Kind::Web => format!("{micro_cli} web    # then open http://127.0.0.1:8082/{}/", created.alias),
    };
    format!("run it:\n\n    cd {dir} && cargo run\n\nthen, from another terminal:\n\n    {micro_cli} list services\n    {call}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_go_micro() {
        let (c, _) = render(&Options::new("github.com/micro/example")).unwrap();
        assert_eq!((c.fqdn.as_str(), c.alias.as_str()), ("go.micro.srv.example", "example"));
        let mut o = Options::new("x/y/foo-bar");
        o.kind = Kind::Function;
        o.namespace = "acme".into();
        assert_eq!(render(&o).unwrap().0.fqdn, "acme.fnc.foo-bar");
        assert!(render(&Options::new("github.com/micro/Bad Name")).is_err());
        assert_eq!(parse_plugins("registry=etcd:broker=nats").unwrap().len(), 2);
        assert!(parse_plugins("storage=s3").is_err());
        assert!("nosuch".parse::<Kind>().unwrap_err().to_string().contains("valid: service, function, api, web"));
    }
}
