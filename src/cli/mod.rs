//! The command line: `serve` (the default), `sandbox`, `tokens` and `session-key`. Every setting has its environment variable
//! (`PORTAL_*`, `ZOHO_*`, `SANDBOX_*`, …); only the `tokens` subcommands' per-invocation switches (`--json`,
//! `--reveal`, `--yes`) and ids are command-line only. `token-key` prints a token encryption key pair.

pub mod sandbox;
pub mod serve;
pub mod tokens;

use std::io::Write;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::app::SessionKey;

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

/// What `zylker-portal` was asked to do; no subcommand means `serve`.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the portal (the default). With no Zoho client configured, runs on the embedded sandbox.
    Serve(Box<serve::ServeArgs>),
    /// Run the embedded Zoho sandbox alone.
    Sandbox(sandbox::SandboxArgs),
    /// Inspect and manage stored tokens.
    Tokens(tokens::TokensArgs),
    /// Print a fresh random session key (64 bytes, hex) for SESSION_KEY (--session-key).
    SessionKey,
    /// Print a fresh token encryption key pair, KID:HEX, for TOKEN_ENCRYPTION_KEYS (--token-encryption-keys).
    TokenKey,
}

impl Cli {
    /// Runs the chosen command; the `Err` is printed by `main` with its cause chain.
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Some(Command::Serve(args)) => (*args).run().await,
            None => self.serve.run().await,
            Some(Command::Sandbox(args)) => args.run().await,
            Some(Command::Tokens(args)) => args.run().await,
            Some(Command::SessionKey) => print_session_key(&mut std::io::stdout().lock()),
            Some(Command::TokenKey) => print_token_key(&mut std::io::stdout().lock()),
        }
    }
}

/// `zylker-portal session-key`: 64 bytes from a CSPRNG (the generator the portal's own random key comes from),
/// hex-encoded, alone on one line of `output`. The only place a key is ever printed, and never to the log.
fn print_session_key(output: &mut impl Write) -> anyhow::Result<()> {
    let key = hex::encode(SessionKey::generate().master());
    writeln!(output, "{key}")
        .and_then(|()| output.flush())
        .context("cannot write the session key to stdout")
}

/// `zylker-portal token-key`: a new key id and 32 bytes from a CSPRNG, `KID:HEX`, alone on one line of `output`,
/// ready to be put first in TOKEN_ENCRYPTION_KEYS. Printed here only, never to the log.
fn print_token_key(output: &mut impl Write) -> anyhow::Result<()> {
    writeln!(output, "{}", crate::tokens::Keyring::generate_pair())
        .and_then(|()| output.flush())
        .context("cannot write the token key to stdout")
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, Command};

    #[test]
    fn debug_of_parsed_arguments_shows_no_secret() {
        let key = "ab".repeat(64);
        let token_key = "cd".repeat(32);
        let keyring = format!("k1:{token_key}");
        let parsed = [
            Cli::parse_from([
                "zylker-portal",
                "serve",
                "--client-id",
                "1000.PUBLIC",
                "--client-secret",
                "serve-client-secret",
                "--session-key",
                &key,
                "--token-encryption-keys",
                &keyring,
            ]),
            Cli::parse_from([
                "zylker-portal",
                "--client-id",
                "1000.PUBLIC",
                "--client-secret",
                "default-client-secret",
                "--session-key",
                &key,
            ]),
            Cli::parse_from([
                "zylker-portal",
                "sandbox",
                "--client-id",
                "1000.PUBLIC",
                "--client-secret",
                "sandbox-client-secret",
            ]),
        ];
        for cli in parsed {
            let printed = format!("{cli:?} {cli:#?}");
            for secret in [
                "serve-client-secret",
                "default-client-secret",
                "sandbox-client-secret",
                key.as_str(),
                token_key.as_str(),
            ] {
                assert!(!printed.contains(secret), "{printed}");
            }
            assert!(printed.contains("1000.PUBLIC"), "{printed}");
            assert!(printed.contains("REDACTED"), "{printed}");
        }
    }

    #[test]
    fn secrets_parse_to_exactly_what_was_given() {
        let cli = Cli::parse_from([
            "zylker-portal",
            "sandbox",
            "--client-id",
            "id",
            "--client-secret",
            "s3cret with spaces",
        ]);
        let Some(Command::Sandbox(args)) = cli.command else {
            panic!("not the sandbox command");
        };
        assert_eq!(
            args.client_secret.as_ref().map(|s| s.expose_secret()),
            Some("s3cret with spaces")
        );
    }
}
