//! Calls `helloworld` through discovery: `client NAME` (the service name can be changed with
//! `HELLOWORLD_SERVICE`).

use helloworld::helloworld::{GreeterClient, HelloRequest};

#[tokio::main]
async fn main() {
    let (service, args) = match micro::Service::builder().name("helloworld.client").from_process().build() {
        Ok(s) => (s, std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect::<Vec<_>>()),
        Err(e) => {
            eprintln!("{}", e.detail);
            std::process::exit(2);
        }
    };
    let name = args.first().cloned().unwrap_or_else(|| "world".into());
    let target = std::env::var("HELLOWORLD_SERVICE").unwrap_or_else(|_| "helloworld".into());
    let greeter = GreeterClient::new(target, service.client().clone());
    match greeter.say_hello(HelloRequest { name }).await {
        Ok(reply) => println!("{}", reply.message),
        Err(e) => {
            eprintln!("error calling helloworld: {e}");
            std::process::exit(1);
        }
    }
}
