//! The command line: `serve` (the default), `sandbox` and `tokens`. Every flag has its environment variable.

pub mod sandbox;
pub mod serve;
pub mod tokens;

use clap::{Parser, Subcommand};

/// Zylker Academy's "Login with Zoho" portal.
#[derive(Debug, Parser)]
#[command(
    name = "zylker-portal",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `serve`'s flags, for when no subcommand is given.
    #[command(flatten)]
    pub serve: serve::ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the portal (the default). With no Zoho client configured, runs on the embedded sandbox.
    Serve(serve::ServeArgs),
    /// Run the embedded Zoho sandbox alone.
    Sandbox(sandbox::SandboxArgs),
    /// Inspect and manage stored tokens.
    Tokens(tokens::TokensArgs),
}

impl Cli {
    /// Runs the chosen command; the `Err` is printed by `main` with its cause chain.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Some(Command::Serve(args)) => args.run().await,
            None => self.serve.run().await,
            Some(Command::Sandbox(args)) => args.run().await,
            Some(Command::Tokens(args)) => args.run().await,
        }
    }
}
