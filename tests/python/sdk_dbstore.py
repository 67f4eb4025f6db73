"""The Zoho Python SDK's DBStore, driven by one JSON request on stdin, answering one JSON value on stdout.

The Rust test tests/stores/python_sdk.rs runs it to show that the SDK and the portal's MySqlStore share one
table. Every operation goes through the SDK's own DBStore and OAuthToken, as an application using the SDK would:

    {"db": {"host", "port", "user", "password", "database", "table"}, "op": NAME, ...arguments}

With {"db": {"sqlite": PATH}} the store is instead the SDK's TokenStore interface on the seed's SQLite table (the
seed: CustomStoreSQLite, the sample store of Zoho's Kaizen #192 article, "Custom token persistence") in
that file (seed_sqlite_store.py, a custom store as an application sharing the portal's zohooauth.db writes it);
tests/api/sqlite_file.rs runs it beside running portals.

Operations: find_by_user_name (user_name), find_by_refresh_token (refresh_token, client_id, client_secret),
refresh (user_name, access_token, expiry_time: the SDK's save after a refresh), save (token: a new token of
the SDK's), delete (id), get_tokens, start_against (user_name, api_url, accounts_url: the SDK started as an
application starts it, against those servers, then a list of Leads; answers {"token", "leads"}). Tokens are answered as objects of the ten columns, expiry_time as the SDK
holds it (text, milliseconds since the epoch); a token not found is null. An SDK error exits with status 1
and the error on stderr.
"""

import json
import sys
import tempfile

from zohocrmsdk.src.com.zoho.api.authenticator import OAuthToken
from zohocrmsdk.src.com.zoho.api.authenticator.store import DBStore
from zohocrmsdk.src.com.zoho.crm.api import HeaderMap, Initializer, ParameterMap, UserSignature
from zohocrmsdk.src.com.zoho.crm.api.dc.data_center import DataCenter
from zohocrmsdk.src.com.zoho.crm.api.record import GetRecordsParam, RecordOperations

from seed_sqlite_store import SeedSQLiteStore


def store_of(db):
    if "sqlite" in db:
        return SeedSQLiteStore(db["sqlite"])
    return DBStore(
        host=db["host"],
        database_name=db["database"],
        user_name=db["user"],
        password=db["password"],
        port_number=db["port"],
        table_name=db["table"],
    )


def as_json(token):
    if token is None:
        return None
    signature = token.get_user_signature()
    return {
        "id": token.get_id(),
        "user_name": signature.get_name() if signature is not None else None,
        "client_id": token.get_client_id(),
        "client_secret": token.get_client_secret(),
        "refresh_token": token.get_refresh_token(),
        "access_token": token.get_access_token(),
        "grant_token": token.get_grant_token(),
        "expiry_time": token.get_expires_in(),
        "redirect_url": token.get_redirect_url(),
        "api_domain": token.get_api_domain(),
    }


def find_by_user_name(store, request):
    # The SDK asks with a token that carries only the user signature (find_user=False: no call to Zoho).
    wanted = OAuthToken(user_signature=UserSignature(request["user_name"]), find_user=False)
    return store.find_token(wanted)


def find_by_refresh_token(store, request):
    # The SDK's OAuthToken needs a client beside a bare refresh token; find_token merges the row into it.
    wanted = OAuthToken(
        client_id=request["client_id"],
        client_secret=request["client_secret"],
        refresh_token=request["refresh_token"],
    )
    return store.find_token(wanted)


def refresh(store, request):
    # What the SDK does after Zoho answers a refresh: the found token gets the new access token and expiry,
    # and save_token updates the row by its user name.
    token = find_by_user_name(store, request)
    if token is None:
        raise LookupError("no token for the user name")
    token.set_access_token(request["access_token"])
    token.set_expires_in(request["expiry_time"])
    store.save_token(token)
    return token


def save(store, request):
    fields = request["token"]
    token = OAuthToken(
        client_id=fields["client_id"],
        client_secret=fields["client_secret"],
        grant_token=fields["grant_token"],
        refresh_token=fields["refresh_token"],
        redirect_url=fields["redirect_url"],
        access_token=fields["access_token"],
        user_signature=UserSignature(fields["user_name"]),
        api_domain=fields["api_domain"],
        find_user=False,
    )
    token.set_expires_in(fields["expiry_time"])
    store.save_token(token)
    return token


def start_against(store, request):
    # Initializer.initialize finds the user's token through the store and, its access token expired, refreshes it
    # at the accounts server and saves it back through the store, as when an application using the SDK starts.
    # The servers are the request's (the sandbox), given as any data centre is: an Environment.
    environment = DataCenter.Environment(
        request["api_url"], request["accounts_url"].rstrip("/") + "/oauth/v2/token", request["api_url"]
    )
    token = OAuthToken(user_signature=UserSignature(request["user_name"]), find_user=False)
    with tempfile.TemporaryDirectory() as resource_path:
        Initializer.initialize(environment=environment, token=token, store=store, resource_path=resource_path)
        parameters = ParameterMap()
        parameters.add(GetRecordsParam.fields, "id,Last_Name,Email")
        response = RecordOperations("Leads").get_records(parameters, HeaderMap())
        if response is None or response.get_status_code() != 200:
            raise RuntimeError("listing Leads answered " + str(response and response.get_status_code()))
        leads = len(response.get_object().get_data())
    return {"token": as_json(find_by_user_name(store, request)), "leads": leads}


def main():
    request = json.load(sys.stdin)
    store = store_of(request["db"])
    op = request["op"]
    if op == "find_by_user_name":
        answer = as_json(find_by_user_name(store, request))
    elif op == "find_by_refresh_token":
        answer = as_json(find_by_refresh_token(store, request))
    elif op == "refresh":
        answer = as_json(refresh(store, request))
    elif op == "save":
        answer = as_json(save(store, request))
    elif op == "delete":
        store.delete_token(request["id"])
        answer = None
    elif op == "start_against":
        answer = start_against(store, request)
    elif op == "get_tokens":
        answer = [as_json(token) for token in store.get_tokens()]
    else:
        raise ValueError("unknown operation " + op)
    json.dump(answer, sys.stdout)


if __name__ == "__main__":
    try:
        main()
    except Exception as error:  # the SDK wraps driver errors in SDKException; the test shows the cause
        print(type(error).__name__ + ": " + str(error), file=sys.stderr)
        cause = getattr(error, "cause", None)
        if cause is not None:
            print("caused by: " + repr(cause), file=sys.stderr)
        sys.exit(1)
