//! Serves `helloworld.Greeter` as service `helloworld` (address from `MICRO_SERVER_ADDRESS`).

#[tokio::main]
async fn main() -> Result<(), micro::Error> {
    let service = micro::Service::new("helloworld")?;
    helloworld::helloworld::register_greeter_handler(service.server(), helloworld::Greeter);
    service.run().await
}
