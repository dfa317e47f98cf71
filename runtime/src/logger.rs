//! Default logging: one line per event on stderr, filtered by `RUST_LOG` (`info` unless set);
//! `MICRO_LOG_FORMAT=json` writes one JSON object per line instead, with the fields of the
//! current span (a traced call's `trace_id` and `span_id`) under `span`.

/// Installs the default subscriber unless the program installed its own.
pub fn init() {
    init_with("info");
}

/// The same, with `directives` (`info,noisy_crate=warn`) when `RUST_LOG` is not set.
pub fn init_with(directives: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(directives));
    use std::io::IsTerminal;
    if std::env::var("MICRO_LOG_FORMAT").is_ok_and(|f| f.trim().eq_ignore_ascii_case("json")) {
        let _ = tracing_subscriber::fmt()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init();
        return;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
}
