//! `go.micro.bot.weather`: adds `weather CITY` to every running `micro bot`.

use micro::bot::{CommandHandler, HelpResponse};

/// Answers `weather CITY` (made up, of course).
struct Weather;

impl CommandHandler for Weather {
    fn help(&self) -> HelpResponse {
        HelpResponse { usage: "weather CITY".into(), description: "the weather in CITY".into() }
    }

    async fn exec(&self, args: Vec<String>) -> Result<String, micro::Error> {
        match args.get(1) {
            Some(city) => Ok(format!("the weather in {city}: sunny, 21°C")),
            None => Err(micro::Error::bad_request("go.micro.bot.weather", "usage: weather CITY")),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), micro::Error> {
    let service = micro::Service::new("go.micro.bot.weather")?;
    micro::bot::register_command_handler(service.server(), Weather);
    service.run().await
}
