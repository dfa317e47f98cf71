//! A `testing.Tester` node as its own process, for tests that kill, restart and signal nodes.
//! `TESTER_NODE` names the node in replies; everything else comes from `MICRO_*`.

#[tokio::main]
async fn main() {
    let service = match micro::Service::new("testing") {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{}", e.detail);
            std::process::exit(2);
        }
    };
    let node = std::env::var("TESTER_NODE").unwrap_or_else(|_| "tester".into());
    micro_tests::testing::register_tester_handler(service.server(), micro_tests::Tester { node });
    if let Err(e) = service.run().await {
        eprintln!("{}", e.detail);
        std::process::exit(1);
    }
}
