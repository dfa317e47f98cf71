//! The Greeter on micro (the helloworld example's handler), for the benchmark:
//! `bench-micro-server ADDR`. `BENCH_OBSERVE=metrics` wraps it in the service's metrics,
//! `BENCH_OBSERVE=tracing` in OpenTelemetry tracing as the `OTEL_*` variables set it up (the
//! exporter runs on a one-thread runtime of its own); `BENCH_OBSERVE=shed` in the service's
//! default load shedding.

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    // The connection cap (4096 by default) is raised so the idle-connections section can hold its
    // 10,000; nothing else comes near it.
    let serve = micro::transport::http::ServeOptions { max_connections: 16_384, ..Default::default() };
    let server = micro::Server::new(micro::server::ServerOptions { address: addr, serve, ..Default::default() });
    let exporter =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("a runtime");
    let _in_runtime = exporter.enter();
    match std::env::var("BENCH_OBSERVE").as_deref() {
        Ok("metrics") => server.wrap(micro::wrapper::Metrics::new()),
        Ok("shed") => server.wrap(micro::wrapper::Shedder::new(Default::default())),
        Ok("tracing") => match micro::wrapper::Tracing::from_env("bench") {
            Ok(Some(t)) => server.wrap(t),
            other => panic!("BENCH_OBSERVE=tracing needs OTEL_EXPORTER_OTLP_ENDPOINT: {other:?}"),
        },
        _ => {}
    }
    helloworld::helloworld::register_greeter_handler(&server, helloworld::Greeter);
    let bound = server.start().expect("listens");
    println!("{bound}");
    loop {
        std::thread::park();
    }
}
