//! The accounts wing against an in-memory store: seeding, user changes, sessions and their
//! rotation, API keys, and the sweep of expired credentials.

use super::*;
use crate::env::testing::FakeEnv;
use crate::store::MemoryStore;

const T0: u64 = 1_800_000_000_000;
const TTL: u64 = 3600;

fn seed(name: &str, role: Role, password: &str) -> UserEntry {
    UserEntry {
        username: name.into(),
        role,
        password_hash: hash_password(password).unwrap(),
    }
}

fn accounts<'a>(store: &'a MemoryStore, env: &'a FakeEnv, seeds: &'a [UserEntry]) -> Accounts<'a> {
    Accounts::new(store, env)
        .with_seeds(seeds)
        .with_refresh_ttl_seconds(TTL)
        .with_bucket_ms(60_000)
}

fn tokens() -> Tokens {
    Tokens::new(&[b"0123456789abcdef0123456789abcdef".to_vec()])
}

#[pollster::test]
async fn seeds_apply_once_then_the_store_wins_until_the_entry_changes() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let seeds = vec![seed("ann", Role::Writer, "first-pass")];
    let a = accounts(&store, &env, &seeds);
    assert_eq!(
        a.check_password("ann", "first-pass").await.unwrap().role,
        Role::Writer
    );
    // An admin changes the password: the unchanged seed does not undo it.
    let patch = UserPatch {
        password: Some("second-pass".into()),
        ..Default::default()
    };
    a.update_user("ann", &patch).await.unwrap();
    assert_eq!(
        a.check_password("ann", "first-pass")
            .await
            .unwrap_err()
            .status,
        401
    );
    assert!(a.check_password("ann", "second-pass").await.is_ok());
    // Removed through the API: the unchanged seed does not bring ann back.
    a.remove_user("ann").await.unwrap();
    assert!(a.user("ann").await.unwrap().is_none());
    assert!(a.list_users().await.unwrap().is_empty());
    // The operator changes the entry: it applies again.
    let changed = vec![seed("ann", Role::Reader, "third-pass")];
    let a = accounts(&store, &env, &changed);
    let ann = a.check_password("ann", "third-pass").await.unwrap();
    assert_eq!(ann.role, Role::Reader);
    assert_eq!(a.list_users().await.unwrap().len(), 1);
}

#[pollster::test]
async fn unknown_wrong_and_disabled_users() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let seeds = vec![
        seed("ann", Role::Admin, "ann-pass!"),
        seed("bob", Role::Writer, "bob-pass!"),
    ];
    let a = accounts(&store, &env, &seeds);
    let wrong = a.check_password("bob", "nope").await.unwrap_err();
    let unknown = a.check_password("mallory", "bob-pass!").await.unwrap_err();
    assert_eq!(wrong, unknown);
    assert_eq!(wrong.code, "invalid_credentials");
    let patch = UserPatch {
        disabled: Some(true),
        ..Default::default()
    };
    a.update_user("bob", &patch).await.unwrap();
    // Told only after the right password.
    assert_eq!(a.check_password("bob", "nope").await.unwrap_err(), wrong);
    assert_eq!(
        a.check_password("bob", "bob-pass!").await.unwrap_err().code,
        "user_disabled"
    );
}

#[pollster::test]
async fn the_last_active_admin_stays() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let seeds = vec![seed("ann", Role::Admin, "ann-pass!")];
    let a = accounts(&store, &env, &seeds);
    for patch in [
        UserPatch {
            disabled: Some(true),
            ..Default::default()
        },
        UserPatch {
            role: Some(Role::Writer),
            ..Default::default()
        },
    ] {
        assert_eq!(
            a.update_user("ann", &patch).await.unwrap_err().code,
            "last_admin"
        );
    }
    assert_eq!(a.remove_user("ann").await.unwrap_err().code, "last_admin");
    a.add_user("cat", "cat-pass!", Role::Admin).await.unwrap();
    a.remove_user("ann").await.unwrap();
    assert_eq!(
        a.add_user("cat", "x-pass-12", Role::Reader)
            .await
            .unwrap_err()
            .code,
        "user_exists"
    );
    assert_eq!(
        a.add_user("dan", "short", Role::Reader)
            .await
            .unwrap_err()
            .code,
        "invalid_password"
    );
}

#[pollster::test]
async fn refresh_rotates_and_a_reused_token_revokes_the_whole_session() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let seeds = vec![seed("ann", Role::Writer, "ann-pass!")];
    let a = accounts(&store, &env, &seeds);
    let ann = a.check_password("ann", "ann-pass!").await.unwrap();
    let first = a.start_session(&ann).await.unwrap();
    assert!(first.token.starts_with(REFRESH_TOKEN_PREFIX));
    assert_eq!(first.expires_in, TTL);
    // Only the digest is stored.
    assert!(store.keys().iter().all(|k| !k.contains(&first.token[5..])));
    assert!(sessions::is_stored(&store, &first.token).await);

    let (user, second) = a.rotate(&first.token).await.unwrap();
    assert_eq!(user.username, "ann");
    let (_, third) = a.rotate(&second.token).await.unwrap();
    // The first token again: someone else has it. The session ends, the newest token too.
    let reused = a.rotate(&first.token).await.unwrap_err();
    assert_eq!((reused.status, reused.code), (401, "refresh_token_reused"));
    let after = a.rotate(&third.token).await.unwrap_err();
    assert_eq!((after.status, after.code), (401, "session_revoked"));
    // Another session of the same user is untouched.
    let other = a.start_session(&ann).await.unwrap();
    assert!(a.rotate(&other.token).await.is_ok());
}

#[pollster::test]
async fn logout_expiry_and_user_changes_end_sessions() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let seeds = vec![
        seed("ann", Role::Admin, "ann-pass!"),
        seed("bob", Role::Writer, "bob-pass!"),
    ];
    let a = accounts(&store, &env, &seeds);
    let bob = a.check_password("bob", "bob-pass!").await.unwrap();

    let s = a.start_session(&bob).await.unwrap();
    assert_eq!(a.end_session(&s.token).await.unwrap(), "bob");
    assert_eq!(a.end_session(&s.token).await.unwrap(), "bob"); // again: fine
    assert_eq!(
        a.rotate(&s.token).await.unwrap_err().code,
        "session_revoked"
    );

    let s = a.start_session(&bob).await.unwrap();
    env.advance(TTL * 1000);
    assert_eq!(
        a.rotate(&s.token).await.unwrap_err().code,
        "invalid_refresh_token"
    );

    // A new password ends sessions; so does disabling, and re-enabling does not revive them.
    let s = a.start_session(&bob).await.unwrap();
    let patch = UserPatch {
        password: Some("bob-new-pass".into()),
        ..Default::default()
    };
    a.update_user("bob", &patch).await.unwrap();
    assert_eq!(
        a.rotate(&s.token).await.unwrap_err().code,
        "session_revoked"
    );
    let bob = a.check_password("bob", "bob-new-pass").await.unwrap();
    let s = a.start_session(&bob).await.unwrap();
    for disabled in [true, false] {
        let patch = UserPatch {
            disabled: Some(disabled),
            ..Default::default()
        };
        a.update_user("bob", &patch).await.unwrap();
    }
    assert_eq!(
        a.rotate(&s.token).await.unwrap_err().code,
        "session_revoked"
    );

    for garbage in [
        "",
        "mcpr_",
        "mcpr_xyz",
        "eyJhbGciOi.x.y",
        &"mcpr_0".repeat(20),
    ] {
        assert_eq!(
            a.rotate(garbage).await.unwrap_err().status,
            401,
            "{garbage}"
        );
        assert_eq!(
            a.end_session(garbage).await.unwrap_err().status,
            401,
            "{garbage}"
        );
    }
}

#[pollster::test]
async fn api_keys_act_as_their_user_until_revoked_expired_or_the_user_is_disabled() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let seeds = vec![
        seed("ann", Role::Admin, "ann-pass!"),
        seed("bob", Role::Writer, "bob-pass!"),
    ];
    let a = accounts(&store, &env, &seeds);
    let bob = a.user("bob").await.unwrap().unwrap();
    let new = |role, expires_in_seconds| NewKey {
        name: "ci deploy",
        role,
        owner: &bob,
        created_by: "ann",
        expires_in_seconds,
    };
    assert_eq!(
        a.create_key(&new(Role::Admin, None))
            .await
            .unwrap_err()
            .code,
        "role_exceeds_user"
    );
    let (record, key) = a.create_key(&new(Role::Writer, None)).await.unwrap();
    assert!(key.starts_with(API_KEY_PREFIX));
    assert!(store.keys().iter().all(|k| !k.contains(&key[22..])));
    let who = a.authenticate(&key, &tokens()).await.unwrap();
    assert_eq!(
        (who.subject.as_str(), who.role, who.api_key.as_deref()),
        ("bob", Role::Writer, Some(record.id.as_str()))
    );

    // Forged, truncated and edited keys.
    let mut forged = key.clone();
    forged.replace_range(key.len() - 1.., if key.ends_with('0') { "1" } else { "0" });
    for bad in [&forged, &key[..key.len() - 1], "mcpe_", "mcpe_zz_zz"] {
        let e = a.authenticate(bad, &tokens()).await.unwrap_err();
        assert_eq!((e.status, e.code), (401, "invalid_api_key"), "{bad}");
    }

    // Expiry: positive, at most ten years (a larger one was a trap when shown, found by
    // schemathesis).
    for bad in [0, super::api_keys::MAX_EXPIRES_IN_SECONDS + 1, u64::MAX] {
        let e = a
            .create_key(&new(Role::Reader, Some(bad)))
            .await
            .unwrap_err();
        assert_eq!((e.status, e.code), (400, "invalid_expiry"), "{bad}");
    }
    let (longest, _) = a
        .create_key(&new(
            Role::Reader,
            Some(super::api_keys::MAX_EXPIRES_IN_SECONDS),
        ))
        .await
        .unwrap();
    assert!(longest.expires_at_ms.is_some());
    let (_, short) = a.create_key(&new(Role::Reader, Some(60))).await.unwrap();
    assert!(a.authenticate(&short, &tokens()).await.is_ok());
    env.advance(60_000);
    let expired = a.authenticate(&short, &tokens()).await.unwrap_err();
    assert!(expired.message.contains("expired"));

    // Revocation: the next request.
    a.revoke_key(&record.id).await.unwrap();
    let revoked = a.authenticate(&key, &tokens()).await.unwrap_err();
    assert!(revoked.message.contains("revoked"));
    assert_eq!(a.list_keys().await.unwrap().len(), 3);

    // Disabling the owner ends every key; enabling again does not revive them.
    let (_, live) = a.create_key(&new(Role::Reader, None)).await.unwrap();
    assert!(a.authenticate(&live, &tokens()).await.is_ok());
    for disabled in [true, false] {
        let patch = UserPatch {
            disabled: Some(disabled),
            ..Default::default()
        };
        a.update_user("bob", &patch).await.unwrap();
    }
    let e = a.authenticate(&live, &tokens()).await.unwrap_err();
    assert!(e.message.contains("disabled or removed"), "{e}");
    // Demoting the owner lowers what a key may do.
    let bob = a.user("bob").await.unwrap().unwrap();
    let (_, k) = a
        .create_key(&NewKey {
            owner: &bob,
            ..new(Role::Writer, None)
        })
        .await
        .unwrap();
    let patch = UserPatch {
        role: Some(Role::Reader),
        ..Default::default()
    };
    a.update_user("bob", &patch).await.unwrap();
    assert_eq!(
        a.authenticate(&k, &tokens()).await.unwrap().role,
        Role::Reader
    );
    // Removing the owner ends it too.
    a.remove_user("bob").await.unwrap();
    assert!(a.authenticate(&k, &tokens()).await.is_err());
}

#[pollster::test]
async fn a_refresh_token_is_not_an_access_token() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let seeds = vec![seed("ann", Role::Writer, "ann-pass!")];
    let a = accounts(&store, &env, &seeds);
    let ann = a.user("ann").await.unwrap().unwrap();
    let refresh = a.start_session(&ann).await.unwrap();
    let e = a.authenticate(&refresh.token, &tokens()).await.unwrap_err();
    assert_eq!(e.status, 401);
    assert!(e.message.contains("/token/refresh"));
    let access = tokens()
        .issue("ann", Role::Writer, 900, T0, "j".into())
        .unwrap()
        .token;
    assert_eq!(
        a.rotate(&access).await.unwrap_err().code,
        "invalid_refresh_token"
    );
}

#[pollster::test]
async fn the_sweep_deletes_expired_credentials_and_keeps_live_ones() {
    let (store, env) = (MemoryStore::new(), FakeEnv::at(T0));
    let seeds = vec![seed("ann", Role::Writer, "ann-pass!")];
    let a = accounts(&store, &env, &seeds);
    let ann = a.user("ann").await.unwrap().unwrap();
    let before: Vec<String> = store.keys();
    let old = a.start_session(&ann).await.unwrap();
    env.advance(TTL * 1000 / 2);
    let young = a.start_session(&ann).await.unwrap();
    // Half-way: the old session rotates, so its session record lives on with the new token.
    let (_, rotated) = a.rotate(&old.token).await.unwrap();
    env.advance(TTL * 1000 / 2 + 120_000);
    let mut budget = 1000;
    let (removed, done) = a.sweep(&mut budget).await.unwrap();
    assert!(done);
    // Only the old session's first token has expired; its session record was extended by
    // the rotation, and the young session's token has half its life left.
    assert_eq!(removed, 1);
    assert!(!sessions::is_stored(&store, &old.token).await);
    assert!(sessions::is_stored(&store, &rotated.token).await);
    assert!(a.rotate(&rotated.token).await.is_ok());
    assert!(a.rotate(&young.token).await.is_ok());
    // Everything ends in time, and nothing is left behind but the index cursor.
    env.advance(2 * TTL * 1000 + 120_000);
    let mut budget = 1000;
    a.sweep(&mut budget).await.unwrap();
    let mut left: Vec<String> = store
        .keys()
        .into_iter()
        .filter(|k| !before.contains(k))
        .collect();
    left.sort();
    assert_eq!(left, ["index/credentials/cursor"]);
}
