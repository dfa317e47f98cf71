//! The Greeter on micro (the helloworld example's handler), for the benchmark:
//! `bench-micro-server ADDR`.

fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:0".into());
    let server = micro::Server::new(micro::server::ServerOptions { address: addr, ..Default::default() });
    helloworld::helloworld::register_greeter_handler(&server, helloworld::Greeter);
    let bound = server.start().expect("listens");
    println!("{bound}");
    loop {
        std::thread::park();
    }
}
