//! `micro list services`.

use clap::Subcommand;

use super::Output;
use crate::global::Global;

#[derive(Debug, Subcommand)]
pub(crate) enum What {
    /// Every registered service, sorted, one per line.
    Services {
        /// `json` prints a JSON array of names.
        #[arg(short, long, value_enum, default_value_t)]
        output: Output,
    },
}

pub(crate) async fn run(global: &Global, what: What) -> anyhow::Result<()> {
    let What::Services { output } = what;
    let names = crate::ops::list::names(global).await?;
    if output == Output::Json {
        println!("{}", serde_json::to_string(&names)?);
    } else {
        for n in names {
            println!("{n}");
        }
    }
    Ok(())
}
