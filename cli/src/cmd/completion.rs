//! `micro completion bash|zsh|fish`.

use clap::CommandFactory;

pub(crate) fn run(shell: clap_complete::Shell) -> anyhow::Result<()> {
    clap_complete::generate(shell, &mut super::Cli::command(), "micro", &mut std::io::stdout());
    Ok(())
}
