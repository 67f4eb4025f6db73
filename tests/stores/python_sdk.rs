//! The Zoho Python SDK's own `DBStore` (`zohocrmsdk8-0`, with `mysql-connector-python`) and the portal's
//! `MySqlStore` on one MySQL table, both ways: each reads, updates and deletes the other's rows.
//!
//! The SDK runs as [`crate::zoho_sdk`] sets it up.

use serde_json::{Value, json};
use zylker_portal::tokens::{OAuthToken, exposed};

use crate::databases::TestDatabase;
use crate::zoho_sdk::Sdk;

/// A token as the SDK holds it: the ten columns, `expiry_time` as text.
fn as_sdk_sees_it(token: &OAuthToken) -> Value {
    json!({
        "id": token.id,
        "user_name": token.user_name,
        "client_id": token.client_id,
        "client_secret": exposed(&token.client_secret),
        "refresh_token": exposed(&token.refresh_token),
        "access_token": exposed(&token.access_token),
        "grant_token": exposed(&token.grant_token),
        "expiry_time": token.expiry_time.map(|t| t.to_string()),
        "redirect_url": token.redirect_url,
        "api_domain": token.api_domain,
    })
}

fn portal_token(user_name: &str, org: &str) -> OAuthToken {
    OAuthToken {
        id: None,
        user_name: Some(format!("{user_name}:{org}")),
        client_id: Some("1000.PORTALCLIENT".to_owned()),
        client_secret: Some("portal-client-secret".to_owned().into()),
        refresh_token: Some(format!("1000.refresh.{user_name}").into()),
        access_token: Some(format!("1000.access.{user_name}").into()),
        grant_token: None,
        expiry_time: Some(1_900_000_000_000),
        redirect_url: Some("http://127.0.0.1:8080/oauth/callback".to_owned()),
        api_domain: Some("https://www.zohoapis.com".to_owned()),
    }
}

fn by_user(user_name: &str) -> OAuthToken {
    OAuthToken {
        user_name: Some(user_name.to_owned()),
        ..OAuthToken::default()
    }
}

#[test]
fn the_python_sdks_dbstore_and_the_portal_share_the_mysql_table_both_ways() {
    let Some(database) = TestDatabase::mysql() else {
        return;
    };
    let store = database.open();
    let sdk = Sdk::new(&database);

    // 1. The portal writes; the SDK reads every field, refreshes one row and deletes another.
    let mut priya = portal_token("priya.raman@zylker.com", "60032191920");
    let mut obrien = portal_token("o'brien@zylker.com", "1");
    obrien.user_name = Some("o'brien@zylker.com:1".to_owned());
    obrien.grant_token = Some("1000.grant.o'brien".to_owned().into());
    obrien.api_domain = None;
    let mut arjun = portal_token("arjun.mehta@zylker.com", "60032191920");
    for token in [&mut priya, &mut obrien, &mut arjun] {
        store.save_token(token).expect("the portal saves");
    }

    for token in [&priya, &obrien, &arjun] {
        let name = token.user_name.as_deref().expect("a user name");
        assert_eq!(
            sdk.find_by_user_name(name),
            as_sdk_sees_it(token),
            "the SDK reads the portal's row for {name}"
        );
    }
    assert_eq!(
        sdk.run(
            "find_by_refresh_token",
            json!({
                "refresh_token": exposed(&priya.refresh_token),
                "client_id": priya.client_id,
                "client_secret": exposed(&priya.client_secret),
            })
        ),
        as_sdk_sees_it(&priya),
        "the SDK finds the portal's row by its refresh token"
    );
    assert_eq!(
        sdk.find_by_user_name("nobody@zylker.com:1"),
        Value::Null,
        "a user the table lacks is not found"
    );

    let refreshed = sdk.run(
        "refresh",
        json!({
            "user_name": priya.user_name,
            "access_token": "1000.access.priya.refreshed-by-the-sdk",
            "expiry_time": "1900000360000",
        }),
    );
    assert_eq!(refreshed["id"], json!(priya.id));
    sdk.run("delete", json!({ "id": arjun.id }));

    // 2. The portal sees the SDK's refresh and its delete.
    let seen = store
        .find_token(&by_user("priya.raman@zylker.com:60032191920"))
        .expect("find")
        .expect("priya is still stored");
    let mut expected = priya.clone();
    expected.access_token = Some("1000.access.priya.refreshed-by-the-sdk".to_owned().into());
    expected.expiry_time = Some(1_900_000_360_000);
    assert_eq!(seen, expected, "the SDK's new access token and expiry");
    let arjun_id = arjun.id.as_deref().expect("an id");
    assert_eq!(
        store.find_token_by_id(arjun_id).expect("find by id"),
        None,
        "the row the SDK deleted is gone"
    );
    assert_eq!(
        store
            .find_token(&by_user("arjun.mehta@zylker.com:60032191920"))
            .expect("find"),
        None
    );
    assert_eq!(
        store
            .find_token(&by_user("o'brien@zylker.com:1"))
            .expect("find"),
        Some(obrien.clone()),
        "a row the SDK did not touch is unchanged"
    );

    // 3. The SDK writes tokens of its own; the portal finds each by user name and by id, and lists them. The
    // SDK numbers a new row max(id) + 1, so its first takes the id of the row it deleted, and its second an id
    // the portal has never seen.
    let mut from_sdk = Vec::new();
    for (user, expected_id) in [("sofia.khan", arjun_id), ("mateo.garcia", "4")] {
        let user_name = format!("{user}@zylker.com:60032191920");
        let saved = sdk.run(
            "save",
            json!({ "token": {
                "user_name": user_name,
                "client_id": "1000.SDKCLIENT",
                "client_secret": "sdk-client-secret",
                "refresh_token": format!("1000.refresh.{user}"),
                "access_token": format!("1000.access.{user}"),
                "grant_token": format!("1000.grant.{user}"),
                "expiry_time": "1900000720000",
                "redirect_url": "https://sdk.zylker.com/callback",
                "api_domain": "https://www.zohoapis.eu",
            } }),
        );
        assert_eq!(saved["id"], json!(expected_id), "the SDK's numbering");
        let by_name = store
            .find_token(&by_user(&user_name))
            .expect("find")
            .expect("the portal finds the SDK's row by user name");
        assert_eq!(
            as_sdk_sees_it(&by_name),
            saved,
            "every field as the SDK wrote it"
        );
        assert_eq!(
            store.find_token_by_id(expected_id).expect("find by id"),
            Some(by_name.clone()),
            "the portal finds the SDK's row by id"
        );
        from_sdk.push(by_name);
    }
    let listed = store.get_tokens().expect("get_tokens");
    let mut wanted = vec![expected, obrien];
    wanted.extend(from_sdk);
    assert_eq!(
        listed.len(),
        wanted.len(),
        "priya, o'brien and the SDK's two rows: {listed:?}"
    );
    assert!(
        wanted.iter().all(|token| listed.contains(token)),
        "get_tokens lists the SDK's rows beside the portal's, every field equal: {listed:?}"
    );
    assert_eq!(
        sdk.run("get_tokens", json!({})).as_array().map(Vec::len),
        Some(wanted.len()),
        "and the SDK lists the same rows"
    );
}
