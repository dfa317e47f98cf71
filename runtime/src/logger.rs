//! Default logging: one line per event on stderr, filtered by `RUST_LOG` (`info` unless set);
//! `MICRO_LOG_FORMAT=json` writes one JSON object per line instead, with the fields of the
//! current span (a traced call's `trace_id` and `span_id`) under `span`.
//!
//! `RUST_LOG` is a list of `target=level` filters (`info,micro::registry=debug`), read by
//! tracing-subscriber's `Targets`. Its `EnvFilter` (span and field filters) would add the regex
//! engine to every service's build for filters a service's logs rarely need.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the default subscriber unless the program installed its own.
pub fn init() {
    init_with("info");
}

/// The same, with `directives` (`info,noisy_crate=warn`) when `RUST_LOG` is not set.
pub fn init_with(directives: &str) {
    let filter = filter(std::env::var("RUST_LOG").ok().as_deref(), directives);
    use std::io::IsTerminal;
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var("MICRO_LOG_FORMAT").is_ok_and(|f| f.trim().eq_ignore_ascii_case("json")) {
        let layer = tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr);
        let _ = registry.with(layer).try_init();
        return;
    }
    let layer =
        tracing_subscriber::fmt::layer().with_ansi(std::io::stderr().is_terminal()).with_writer(std::io::stderr);
    let _ = registry.with(layer).try_init();
}

/// The filter `rust_log` asks for, or `directives` (with one line on stderr saying so) when it
/// is not a list of `target=level` filters. Pieces are trimmed and empty ones skipped, as
/// `EnvFilter` does; span and field filters (`[span]`, `{field}`) are refused, not taken for
/// target names that never match.
fn filter(rust_log: Option<&str>, directives: &str) -> Targets {
    let fallback = || directives.parse().unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let Some(v) = rust_log.map(str::trim).filter(|v| !v.is_empty()) else {
        return fallback();
    };
    let pieces: Vec<&str> = v.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if pieces.is_empty() {
        return fallback();
    }
    let parsed = if pieces.iter().any(|p| p.contains(['[', ']', '{', '}'])) {
        Err("span and field filters are not read here".to_string())
    } else {
        pieces.join(",").parse::<Targets>().map_err(|e| e.to_string())
    };
    parsed.unwrap_or_else(|e| {
        eprintln!("RUST_LOG {v:?} is not a list of target=level filters ({e}); logging with {directives:?}");
        fallback()
    })
}

#[cfg(test)]
mod tests {
    use tracing::Level;

    #[test]
    fn rust_log_sets_levels_per_target_and_a_bad_value_falls_back() {
        let f = super::filter(Some("warn,micro::registry=debug"), "info");
        assert!(f.would_enable("micro::registry::mdns", &Level::DEBUG));
        assert!(!f.would_enable("micro::server", &Level::INFO));
        assert!(f.would_enable("micro::server", &Level::WARN));
        let f = super::filter(Some("[span{x=1}]=trace"), "info,rmcp=warn");
        assert!(f.would_enable("micro", &Level::INFO) && !f.would_enable("rmcp::x", &Level::INFO));
        let f = super::filter(Some("info, micro=debug,"), "warn");
        assert!(f.would_enable("micro::x", &Level::DEBUG) && !f.would_enable("hyper::proto", &Level::DEBUG));
        let f = super::filter(Some("micro[rpc]=debug"), "warn");
        assert!(!f.would_enable("micro", &Level::INFO), "a span filter falls back");
        let f = super::filter(None, "info");
        assert!(f.would_enable("anything", &Level::INFO) && !f.would_enable("anything", &Level::DEBUG));
    }
}
