"""A custom token store of the Zoho Python SDK on the seed's SQLite table, as an application sharing the portal's
zohooauth.db writes one.

The SDK has no SQLite store of its own; Zoho's Kaizen #192 sample (`CustomStoreSQLite`, "the seed") shows how an
application writes one: the SDK's TokenStore interface over the `oauthtoken` table of ten text columns, each call
opening the file with Python's sqlite3 module, running its statement and closing it again. This store does
the same, with parameterised SQL where the sample builds statements from strings. The open-and-close on every
call is the point for the tests: it is what makes another program's SQLite believe it may be the file's last
user.
"""

import sqlite3

from zohocrmsdk.src.com.zoho.api.authenticator import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store import TokenStore
from zohocrmsdk.src.com.zoho.crm.api import UserSignature

COLUMNS = (
    "id, user_name, client_id, client_secret, refresh_token, access_token, grant_token, expiry_time, "
    "redirect_url, api_domain"
)


class SeedSQLiteStore(TokenStore):
    """The SDK's six methods on the seed's `oauthtoken` table in the SQLite file at `path`."""

    def __init__(self, path):
        self.path = path

    def _run(self, statement, parameters=()):
        # One connection per call, closed at once, as the seed does.
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            with connection:
                return connection.execute(statement, parameters).fetchall()
        finally:
            connection.close()

    @staticmethod
    def _merge(token, row):
        # Fills what the asking token lacks from the row, as the SDK's own stores do.
        if token.get_id() is None:
            token.set_id(row[0])
        if token.get_user_signature() is None and row[1] is not None:
            token.set_user_signature(UserSignature(row[1]))
        for getter, setter, value in (
            (token.get_client_id, token.set_client_id, row[2]),
            (token.get_client_secret, token.set_client_secret, row[3]),
            (token.get_refresh_token, token.set_refresh_token, row[4]),
            (token.get_access_token, token.set_access_token, row[5]),
            (token.get_grant_token, token.set_grant_token, row[6]),
            (token.get_redirect_url, token.set_redirect_url, row[8]),
            (token.get_api_domain, token.set_api_domain, row[9]),
        ):
            if getter() is None:
                setter(value)
        if token.get_expires_in() is None and row[7] is not None:
            token.set_expires_in(str(row[7]))
        return token

    @classmethod
    def _token_of(cls, row):
        # The SDK's OAuthToken wants at least one key at construction: the row's id, then the rest merged in.
        return cls._merge(OAuthToken(id=row[0], find_user=False), row)

    def find_token(self, token):
        if not isinstance(token, OAuthToken):
            return None
        signature = token.get_user_signature()
        if signature is not None and signature.get_name():
            key, value = "user_name", signature.get_name()
        elif token.get_access_token() is not None:
            key, value = "access_token", token.get_access_token()
        elif token.get_grant_token():
            key, value = "grant_token", token.get_grant_token()
        elif token.get_refresh_token():
            key, value = "refresh_token", token.get_refresh_token()
        else:
            return None
        # `key` is one of the four column names above, never input.
        rows = self._run(
            "SELECT " + COLUMNS + " FROM oauthtoken WHERE " + key + " = ? ORDER BY rowid LIMIT 1", (value,)
        )
        return self._merge(token, rows[0]) if rows else None

    def save_token(self, token):
        if not isinstance(token, OAuthToken):
            return
        signature = token.get_user_signature()
        values = (
            signature.get_name() if signature is not None else None,
            token.get_client_id(),
            token.get_client_secret(),
            token.get_refresh_token(),
            token.get_access_token(),
            token.get_grant_token(),
            token.get_expires_in(),
            token.get_redirect_url(),
            token.get_api_domain(),
        )
        connection = sqlite3.connect(self.path, timeout=10)
        try:
            # BEGIN IMMEDIATE: the update-else-insert is one write transaction, so a portal inserting the same
            # user at the same moment waits for it (or it for the portal).
            connection.isolation_level = None
            connection.execute("BEGIN IMMEDIATE")
            updated = connection.execute(
                "UPDATE oauthtoken SET user_name = ?, client_id = ?, client_secret = ?, refresh_token = ?, "
                "access_token = ?, grant_token = ?, expiry_time = ?, redirect_url = ?, api_domain = ? "
                "WHERE user_name = ?",
                values + (values[0],),
            ).rowcount
            if updated == 0:
                next_id = connection.execute(
                    "SELECT coalesce(max(CAST(id AS INTEGER)), 0) + 1 FROM oauthtoken"
                ).fetchone()[0]
                connection.execute(
                    "INSERT INTO oauthtoken (" + COLUMNS + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (str(next_id),) + values,
                )
                token.set_id(str(next_id))
            connection.execute("COMMIT")
        finally:
            connection.close()

    def delete_token(self, id):
        self._run("DELETE FROM oauthtoken WHERE id = ?", (id,))

    def get_tokens(self):
        return [self._token_of(row) for row in self._run("SELECT " + COLUMNS + " FROM oauthtoken")]

    def delete_tokens(self):
        self._run("DELETE FROM oauthtoken")

    def find_token_by_id(self, id):
        rows = self._run("SELECT " + COLUMNS + " FROM oauthtoken WHERE id = ?", (id,))
        return self._token_of(rows[0]) if rows else None
