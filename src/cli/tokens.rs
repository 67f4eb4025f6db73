//! `zylker-portal tokens`: list, show and delete stored tokens on any store.

use clap::{Args, Subcommand};

use crate::tokens::StoreSpec;

/// `tokens` and its subcommands (issue 2 fixes them).
#[derive(Debug, Args)]
pub struct TokensArgs {
    /// Token store: sqlite:PATH, sqlite::memory:, list or file:PATH.
    #[arg(
        long,
        env = "TOKEN_STORE",
        default_value = "sqlite:zohooauth.db",
        global = true
    )]
    pub store: StoreSpec,
    #[command(subcommand)]
    pub command: TokensCommand,
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// List stored tokens, secrets masked.
    List {
        #[arg(long)]
        json: bool,
        #[arg(long)]
        reveal: bool,
    },
    /// Show one token.
    Show { id: String },
    /// Delete one token.
    Delete { id: String },
    /// Delete every token (asks first, unless --yes).
    DeleteAll {
        #[arg(long)]
        yes: bool,
    },
}

impl TokensArgs {
    pub async fn run(self) -> anyhow::Result<()> {
        anyhow::bail!("tokens is not written yet (stores helper)")
    }
}
