//! `zylker-portal tokens`: list, show and delete stored tokens on any store, copy them between stores, and
//! re-encrypt (`rekey`) or decrypt them in place.

use std::io::{BufRead, Write};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};

use crate::tokens::{
    EncryptedStore, Keyring, OAuthToken, Secret, StoreError, StoreSpec, TokenStore,
    describe_expiry, encrypted_if, exposed, live_sign_ins_in, mask_secret, open_existing_store,
    open_sign_in_store, open_store,
};

/// `tokens` and its subcommands, whose names are fixed: the README documents them and scripts use them.
#[derive(Debug, Args)]
pub struct TokensArgs {
    /// Token store: sqlite:PATH, sqlite::memory:, list, file:PATH, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE
    /// or mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE.
    #[arg(
        long,
        env = "TOKEN_STORE",
        // The variable may hold a database password: `--help` must not print it.
        hide_env_values = true,
        default_value = "sqlite:zohooauth.db",
        global = true
    )]
    pub store: StoreSpec,
    /// The keyring the tokens are encrypted with (as `serve`'s): comma-separated KID:KEY pairs; the first
    /// encrypts, every one decrypts. Absent: values are shown and written as stored.
    #[arg(
        long,
        env = "TOKEN_ENCRYPTION_KEYS",
        hide_env_values = true,
        global = true
    )]
    pub token_encryption_keys: Option<Keyring>,
    #[command(subcommand)]
    pub command: TokensCommand,
}

/// How `list` and `show` print a token: the same switches for both.
#[derive(Debug, Clone, Copy, Args)]
pub struct PrintArgs {
    /// Print JSON (the ten fields of the SDK's table) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print the secrets in full instead of masked (`1000.a1…`).
    #[arg(long)]
    pub reveal: bool,
}

/// What `zylker-portal tokens` does to the store: list, show, delete one, delete all.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// List stored tokens, secrets masked.
    List {
        #[command(flatten)]
        print: PrintArgs,
    },
    /// Show one token, secrets masked.
    Show {
        id: String,
        #[command(flatten)]
        print: PrintArgs,
    },
    /// Delete one token.
    Delete { id: String },
    /// Delete every token (asks first, unless --yes).
    DeleteAll {
        #[arg(long)]
        yes: bool,
    },
    /// Copy every token of one store into another (created when missing), upserting by user name, and
    /// print how many were added and updated; then the live sign-ins whose token kept its id. A token the
    /// other store refuses is named on stderr and the rest are copied; the end says how many of how many were
    /// copied (the exit status is not 0 when any failed). --store is not used.
    Copy {
        /// The store to read: it must exist.
        #[arg(long)]
        from: StoreSpec,
        /// The store to write: created when missing, its tokens of other users left alone.
        #[arg(long)]
        to: StoreSpec,
    },
    /// Re-encrypt every token under the first key of the keyring (plaintext ones included), row by row with
    /// compare-and-set, safe beside running portals and resumable; print how many rows changed.
    Rekey,
    /// Write every token back in plaintext (refuses without --yes): the way out of encryption.
    Decrypt {
        #[arg(long)]
        yes: bool,
    },
}

impl TokensArgs {
    /// Runs the command on a blocking thread (stores may block), with the process's stdin and stdout.
    pub async fn run(self) -> anyhow::Result<()> {
        tokio::task::spawn_blocking(move || {
            let stdin = std::io::stdin();
            let stdout = std::io::stdout();
            self.run_with(&mut stdin.lock(), &mut stdout.lock())
        })
        .await
        .context("the tokens command stopped unexpectedly")?
    }

    /// Runs the command, reading a confirmation from `input` and writing results to `output`. The prompt
    /// goes to stderr so that `output` stays parseable.
    pub fn run_with(self, input: &mut impl BufRead, output: &mut impl Write) -> anyhow::Result<()> {
        let keyring = self.token_encryption_keys.as_ref();
        if let TokensCommand::Copy { from, to } = &self.command {
            return copy(from, to, keyring, output);
        }
        let spec = &self.store;
        if matches!(spec, StoreSpec::SqliteMemory | StoreSpec::List) {
            // Opening it here would make an empty store of this process's own, never the portal's.
            bail!(
                "the {spec} store lives only inside a running portal's memory, so a `tokens` command (a process \
                 of its own) cannot reach it: use the portal's token administration page (/admin/tokens), or run \
                 the portal on a file or database store (sqlite:PATH, file:PATH, postgres://… or mysql://…) to inspect it \
                 from here"
            );
        }
        // Never `open_store`: a mistyped path must fail, not leave an empty store behind.
        let needs_keyring = |command: &str| {
            anyhow::anyhow!(
                "tokens {command} needs the keyring: give --token-encryption-keys or TOKEN_ENCRYPTION_KEYS"
            )
        };
        match &self.command {
            TokensCommand::Rekey if keyring.is_none() => return Err(needs_keyring("rekey")),
            TokensCommand::Decrypt { .. } if keyring.is_none() => {
                return Err(needs_keyring("decrypt"));
            }
            TokensCommand::Decrypt { yes: false } => bail!(
                "tokens decrypt writes every token back in plaintext, readable by anyone who can read the store: \
                 run it again with --yes to do so (nothing changed)"
            ),
            _ => {}
        }
        // Never `open_store`: a mistyped path must fail, not leave an empty store behind.
        let raw = open_existing_store(spec)
            .with_context(|| format!("cannot open the token store {spec}"))?;
        if let (TokensCommand::Rekey | TokensCommand::Decrypt { .. }, Some(keyring)) =
            (&self.command, keyring)
        {
            let store = EncryptedStore::over(raw, keyring.clone());
            return rewrite(
                &store,
                spec,
                matches!(self.command, TokensCommand::Rekey),
                output,
            );
        }
        let store = encrypted_if(raw, keyring);
        let store = store.as_ref();
        match self.command {
            TokensCommand::List { print } => list(store, spec, print, output),
            TokensCommand::Show { id, print } => show(store, spec, &id, print, output),
            TokensCommand::Delete { id } => delete(store, spec, &id, output),
            TokensCommand::DeleteAll { yes } => delete_all(store, spec, yes, input, output),
            TokensCommand::Copy { .. } | TokensCommand::Rekey | TokensCommand::Decrypt { .. } => {
                unreachable!("run above")
            }
        }
    }
}

/// The token with its four secret fields masked.
fn masked(token: &OAuthToken) -> OAuthToken {
    let mask = |value: &Option<Secret>| exposed(value).map(|text| Secret::from(mask_secret(text)));
    OAuthToken {
        client_secret: mask(&token.client_secret),
        refresh_token: mask(&token.refresh_token),
        access_token: mask(&token.access_token),
        grant_token: mask(&token.grant_token),
        ..token.clone()
    }
}

/// The token as `--reveal` asks: in full, or with its secrets masked.
fn as_printed(token: &OAuthToken, print: PrintArgs) -> OAuthToken {
    if print.reveal {
        token.clone()
    } else {
        masked(token)
    }
}

/// Writes `value` as pretty JSON and a newline.
fn write_json(output: &mut impl Write, value: &impl serde::Serialize) -> anyhow::Result<()> {
    serde_json::to_writer_pretty(&mut *output, value)?;
    writeln!(output)?;
    Ok(())
}

fn list(
    store: &dyn TokenStore,
    spec: &StoreSpec,
    print: PrintArgs,
    output: &mut impl Write,
) -> anyhow::Result<()> {
    let mut tokens = store.get_tokens().context("cannot list the tokens")?;
    tokens.sort_by_key(|t| id_order(&t.id));
    let tokens: Vec<OAuthToken> = tokens.iter().map(|t| as_printed(t, print)).collect();
    if print.json {
        return write_json(output, &tokens);
    }
    if tokens.is_empty() {
        writeln!(output, "no tokens stored in {spec}")?;
        return Ok(());
    }
    let text = |value: Option<&str>| value.unwrap_or("-").to_owned();
    let header = [
        "ID",
        "USER",
        "CLIENT ID",
        "ACCESS TOKEN",
        "REFRESH TOKEN",
        "EXPIRES (UTC)",
        "API DOMAIN",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 7]> = tokens
        .iter()
        .map(|t| {
            [
                text(t.id.as_deref()),
                text(t.user_name.as_deref()),
                text(t.client_id.as_deref()),
                text(exposed(&t.access_token)),
                text(exposed(&t.refresh_token)),
                describe_expiry(t.expiry_time),
                text(t.api_domain.as_deref()),
            ]
        })
        .collect();
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        writeln!(output, "{}", line.join("  ").trim_end())?;
    }
    Ok(())
}

/// Numeric ids in numeric order ("2" before "10"), then the others.
fn id_order(id: &Option<String>) -> (u64, String) {
    let id = id.clone().unwrap_or_default();
    (id.parse().unwrap_or(u64::MAX), id)
}

fn show(
    store: &dyn TokenStore,
    spec: &StoreSpec,
    id: &str,
    print: PrintArgs,
    output: &mut impl Write,
) -> anyhow::Result<()> {
    let Some(token) = store
        .find_token_by_id(id)
        .context("cannot read the token")?
    else {
        bail!("no token with id {id:?} in {spec}");
    };
    let token = as_printed(&token, print);
    if print.json {
        return write_json(output, &token);
    }
    let text = |value: Option<&str>| value.unwrap_or("-").to_owned();
    let fields = [
        ("id", text(token.id.as_deref())),
        ("user_name", text(token.user_name.as_deref())),
        ("client_id", text(token.client_id.as_deref())),
        ("client_secret", text(exposed(&token.client_secret))),
        ("refresh_token", text(exposed(&token.refresh_token))),
        ("access_token", text(exposed(&token.access_token))),
        ("grant_token", text(exposed(&token.grant_token))),
        ("expiry_time", describe_expiry(token.expiry_time)),
        ("redirect_url", text(token.redirect_url.as_deref())),
        ("api_domain", text(token.api_domain.as_deref())),
    ];
    for (name, value) in fields {
        writeln!(output, "{name:<14} {value}")?;
    }
    Ok(())
}

fn delete(
    store: &dyn TokenStore,
    spec: &StoreSpec,
    id: &str,
    output: &mut impl Write,
) -> anyhow::Result<()> {
    let Some(token) = store
        .find_token_by_id(id)
        .context("cannot read the token")?
    else {
        bail!("no token with id {id:?} in {spec}");
    };
    store.delete_token(id).context("cannot delete the token")?;
    let user = token.user_name.as_deref().unwrap_or("no user name");
    writeln!(output, "deleted token {id} ({user})")?;
    Ok(())
}

fn delete_all(
    store: &dyn TokenStore,
    spec: &StoreSpec,
    yes: bool,
    input: &mut impl BufRead,
    output: &mut impl Write,
) -> anyhow::Result<()> {
    let count = store.get_tokens().context("cannot list the tokens")?.len();
    if count == 0 {
        writeln!(output, "no tokens stored in {spec}; nothing to delete")?;
        return Ok(());
    }
    if !yes {
        eprint!(
            "Delete all {count} tokens in {spec}? Every user will have to log in again. Type yes to confirm: "
        );
        let mut answer = String::new();
        // No answer (stdin closed or unreadable) is not a yes: an unattended run must never delete.
        let read = input.read_line(&mut answer).unwrap_or(0);
        if read == 0 {
            eprintln!();
            bail!("no answer: nothing deleted (use --yes to delete without asking)");
        }
        if !answer.trim().eq_ignore_ascii_case("yes") {
            bail!("not confirmed: nothing deleted");
        }
    }
    store.delete_tokens().context("cannot delete the tokens")?;
    writeln!(output, "deleted {count} tokens")?;
    Ok(())
}

/// `tokens copy`: every token of `from` saved into `to`, matched to `to`'s rows as `save_token` matches them
/// (by user name first). A new row keeps the id it had in `from` when `to` has no row with that id, so that
/// sessions holding the id (the portal's cookies) stay valid after a move; otherwise `to` numbers it.
///
/// With a keyring, both ends are read with any of its keys (and plaintext as it is) and `to` is written with
/// the first: copying a plaintext store into a database with a keyring encrypts on the way.
fn copy(
    from_spec: &StoreSpec,
    to_spec: &StoreSpec,
    keyring: Option<&Keyring>,
    output: &mut impl Write,
) -> anyhow::Result<()> {
    // One file as both ends copies nothing, and opening it as the second store would read it with another
    // store's code while the first holds it open (for a SQLite file, losing the process's locks on it).
    if let (Some(from), Some(to)) = (from_spec.file_path(), to_spec.file_path())
        && crate::private_file::same_file(from, to)
    {
        bail!("--from {from_spec} and --to {to_spec} name the same file: nothing to copy");
    }
    let from = open_existing_store(from_spec)
        .with_context(|| format!("cannot open the token store {from_spec}"))?;
    let from = encrypted_if(from, keyring);
    let to =
        open_store(to_spec).with_context(|| format!("cannot open the token store {to_spec}"))?;
    let to = encrypted_if(to, keyring);
    let mut tokens = from
        .get_tokens()
        .with_context(|| format!("cannot list the tokens of {from_spec}"))?;
    tokens.sort_by_key(|t| id_order(&t.id));
    let total = tokens.len();
    let (mut added, mut updated, mut skipped, mut failed) = (0, 0, 0, 0);
    // A row the destination refuses (a NUL byte in a user name, for PostgreSQL) is reported and the copy goes
    // on: one bad row must not leave the rest behind, nor hide how far the copy got.
    for token in tokens {
        match copy_one(to.as_ref(), &token) {
            Ok(Copied::Added) => added += 1,
            Ok(Copied::Updated) => updated += 1,
            Ok(Copied::NothingToCopy) => skipped += 1,
            Err(error) => {
                failed += 1;
                // By id and user name (escaped: it may hold control characters), never a token.
                eprintln!(
                    "cannot copy the token {} of {} into {to_spec}: {}",
                    token.id.as_deref().unwrap_or("without id"),
                    token.user_name.as_deref().map_or_else(
                        || "a user without name".to_owned(),
                        |name| format!("\"{}\"", name.escape_debug())
                    ),
                    crate::routes::error::error_chain(&error)
                );
            }
        }
    }
    write!(
        output,
        "copied {from_spec} to {to_spec}: {added} added, {updated} updated"
    )?;
    if skipped > 0 {
        write!(output, ", {skipped} without any token skipped")?;
    }
    writeln!(output)?;
    writeln!(
        output,
        "copied {} of {total} tokens, {failed} failed",
        added + updated
    )?;
    copy_sign_ins(from_spec, to_spec, to.as_ref(), output)?;
    if failed > 0 {
        bail!(
            "{failed} of {total} tokens could not be copied into {to_spec} (each is named above)"
        );
    }
    Ok(())
}

/// `tokens copy`'s second phase, after the tokens: the live sign-ins of `from` recorded in `to`, so that the
/// people signed in through a portal on `from` stay signed in through one on `to` (with the same session key).
/// A sign-in is copied when `to` holds its token under the same id and user name (the cookie names both); one
/// whose token has another id there, or is not there, could open nothing and is counted as left behind. Each
/// sign-in that cannot be written is reported and the rest copied; the counts end the output.
fn copy_sign_ins(
    from_spec: &StoreSpec,
    to_spec: &StoreSpec,
    to: &dyn TokenStore,
    output: &mut impl Write,
) -> anyhow::Result<()> {
    let now = crate::tokens::now_millis() / 1000;
    let sign_ins = live_sign_ins_in(from_spec, now)
        .with_context(|| format!("cannot read the sign-ins of {from_spec}"))?;
    let Some(target) = open_sign_in_store(to_spec)
        .with_context(|| format!("cannot open the sign-in tables of {to_spec}"))?
    else {
        writeln!(
            output,
            "copied 0 sign-ins: {to_spec} keeps them in a portal's memory, out of this command's reach"
        )?;
        return Ok(());
    };
    let (mut copied, mut left_behind, mut failed) = (0, 0, 0);
    for sign_in in sign_ins {
        let token = to
            .find_token_by_id(&sign_in.token_id)
            .with_context(|| format!("cannot read {to_spec}"));
        let opens_its_token = match token {
            Ok(token) => {
                token.and_then(|token| token.user_name).as_deref() == Some(&sign_in.user_name)
            }
            Err(error) => {
                eprintln!(
                    "a sign-in of token {} not copied: {error:#}",
                    sign_in.token_id
                );
                failed += 1;
                continue;
            }
        };
        if !opens_its_token {
            left_behind += 1;
            continue;
        }
        match target.record_sign_in(&sign_in) {
            Ok(()) => copied += 1,
            Err(error) => {
                let error = anyhow::Error::new(error);
                eprintln!(
                    "a sign-in of token {} not copied: {error:#}",
                    sign_in.token_id
                );
                failed += 1;
            }
        }
    }
    write!(output, "copied {copied} sign-ins")?;
    if left_behind > 0 {
        write!(
            output,
            ", {left_behind} left behind (their token has another id in {to_spec}, or is not there)"
        )?;
    }
    writeln!(output)?;
    if failed > 0 {
        bail!("{failed} sign-ins could not be copied (said above); the others were");
    }
    Ok(())
}

/// What copying one token did.
enum Copied {
    Added,
    Updated,
    /// A row with no token at all in the source: nothing a portal could use, nothing to copy.
    NothingToCopy,
}

/// Saves `token` into `to`, on the row `save_token` matches it to (by user name first); a new row keeps the
/// token's id when `to` has no row with that id (see [`copy`]).
fn copy_one(to: &dyn TokenStore, token: &OAuthToken) -> Result<Copied, StoreError> {
    let existing = to.find_token(token)?;
    let mut copy = token.clone();
    copy.id = match &existing {
        Some(row) => row.id.clone(),
        None => match &token.id {
            Some(id) if to.find_token_by_id(id)?.is_none() => Some(id.clone()),
            _ => None,
        },
    };
    match to.save_token(&mut copy) {
        Ok(()) if existing.is_some() => Ok(Copied::Updated),
        Ok(()) => Ok(Copied::Added),
        Err(StoreError::NothingToSave) => Ok(Copied::NothingToCopy),
        Err(error) => Err(error),
    }
}

/// `tokens rekey` and `tokens decrypt`: every row rewritten one at a time, by id, each with its own
/// compare-and-set ([`EncryptedStore::rekey_row`]), so running portals keep writing beside it and a run that
/// stops can be started again: rows already done are left as they are and not counted.
fn rewrite(
    store: &EncryptedStore,
    spec: &StoreSpec,
    encrypt: bool,
    output: &mut impl Write,
) -> anyhow::Result<()> {
    // The ids from the stored rows as they are: listing them decrypted would stop at the first row this run
    // is meant to report on.
    let mut ids: Vec<String> = store
        .inner()
        .get_tokens()
        .context("cannot list the tokens")?
        .into_iter()
        .filter_map(|row| row.id)
        .collect();
    ids.sort_by_key(|id| id_order(&Some(id.clone())));
    let mut changed = 0;
    for id in &ids {
        let done = if encrypt {
            store.rekey_row(id)
        } else {
            store.decrypt_row(id)
        };
        match done {
            Ok(true) => changed += 1,
            Ok(false) => {}
            Err(error) => {
                return Err(anyhow::Error::new(error)).with_context(|| {
                    format!(
                        "cannot rewrite token {id} (changed so far: {changed}; run the command again to go on)"
                    )
                });
            }
        }
    }
    if encrypt {
        let kid = store.keyring().encrypting_key_id();
        writeln!(
            output,
            "re-encrypted {changed} of {} tokens in {spec} under key {kid}",
            ids.len()
        )?;
    } else {
        writeln!(
            output,
            "decrypted {changed} of {} tokens in {spec}",
            ids.len()
        )?;
    }
    Ok(())
}

/// `--store`, `--from`, `--to` and `TOKEN_STORE` are read with this parser: clap's own error for a bad value
/// repeats the value, which may hold a database password; this one says what is wrong with the password masked.
impl clap::builder::ValueParserFactory for StoreSpec {
    type Parser = crate::secret::QuietValueParser<StoreSpec>;

    fn value_parser() -> Self::Parser {
        crate::secret::QuietValueParser::new("the store spec")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_keeps_a_short_prefix_only() {
        assert_eq!(
            mask_secret("1000.a1b2c3d4e5f6a7b8c9d0e1f2a3b4c5d6.e7f8a9b0c1d2e3f4a5b6c7d8e9f0a1b2"),
            "1000.a1…"
        );
        assert_eq!(mask_secret("short"), "s…");
        assert_eq!(mask_secret("abc"), "…");
        assert_eq!(mask_secret(""), "");
        assert_eq!(mask_secret("ünïcødé-sëcrët"), "ünï…");
    }
}
