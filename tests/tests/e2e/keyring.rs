//! The master key's lifecycle: values name the master key that sealed them; `reseal` moves
//! every stored secret and Keyward key's material under the current key, after which the old key
//! can go; a start whose keyring lacks a key that still seals values is refused with a clear
//! message; one damaged value fails only its group or key (FAILED_PRECONDITION SEALED_VALUE).

use std::collections::HashMap;

use keyward_proto::v1 as pb;
use keyward_shared::config::Config;
use keyward_shared::crypto::{MasterKey, sealed_key_id};
use keyward_shared::domain::{Caller, GroupId, KeyId, SyncTrigger};
use keyward_shared::{Ctx, Keyward};
use keyward_tests::TestApp;
use keyward_tests::fixtures::mask;
use keyward_tests::status::precondition;
use pb::KeyOperation as Op;
use sea_orm::ConnectionTrait;

const NEW_KEY: &str = "0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b";

/// Opens the test's database as a server would, with this keyring.
async fn open(app: &TestApp, current: &str, previous: &str) -> Result<Keyward, keyward_shared::Error> {
    let mut env = HashMap::from([
        ("KEYWARD_DATABASE_URL".to_owned(), app.db_url.clone()),
        ("KEYWARD_MASTER_KEY".to_owned(), current.to_owned()),
    ]);
    if !previous.is_empty() {
        env.insert("KEYWARD_PREVIOUS_MASTER_KEYS".to_owned(), previous.to_owned());
    }
    let config = Config::load(None, env).expect("config");
    let (keyring, _) = config.keyring().expect("keyring");
    Keyward::open(&config, keyring, true).await
}

fn ctx(kw: &Keyward) -> Ctx {
    Ctx { caller: Caller::system("test", "r"), now: kw.now() }
}

/// The id of a group from its name `groups/{id}`.
fn gid(g: &pb::Group) -> String {
    g.name.trim_start_matches("groups/").to_owned()
}

/// The key ids the stored sealed values name, sorted.
async fn sealed_ids(app: &TestApp) -> Vec<String> {
    let db = app.keyward.store().connection();
    let mut ids = Vec::new();
    for sql in [
        "SELECT secret_access_key_sealed AS v FROM groups WHERE secret_access_key_sealed IS NOT NULL",
        "SELECT material_sealed AS v FROM keys WHERE material_sealed IS NOT NULL",
    ] {
        let rows =
            db.query_all_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql)).await.expect("query");
        for r in rows {
            let v: Vec<u8> = r.try_get("", "v").expect("v");
            ids.push(sealed_key_id(&v).expect("format").map(hex::encode).unwrap_or_else(|| "v1".into()));
        }
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn resealing_moves_every_value_under_the_new_key_and_the_old_key_can_go() {
    let mut app = TestApp::spawn().await;
    let old_hex = app.master_key_hex();
    let g = app.create_aws_group("keyring").await;
    let vault = app.regular_group("keyring-vault").await;
    let k = app.create_key(&vault.name, "k", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt]).await;
    let ct = app
        .crypto_client()
        .encrypt(pb::EncryptRequest {
            name: k.name.clone(),
            plaintext: b"kept".to_vec(),
            aad: vec![],
            ..Default::default()
        })
        .await
        .expect("encrypt")
        .into_inner()
        .ciphertext;
    let (old_id, new_id) =
        (MasterKey::from_text(&old_hex).expect("old").id(), MasterKey::from_text(NEW_KEY).expect("new").id());
    assert_eq!(sealed_ids(&app).await, vec![old_id.clone(), old_id.clone()]);

    // A server with the new key current and the old one previous: starts, reseals both values.
    let both = open(&app, NEW_KEY, &old_hex).await.expect("start with both keys");
    let report = both.reseal(&ctx(&both)).await.expect("reseal");
    assert_eq!((report.resealed, report.current, report.unopened.len()), (2, 0, 0), "{report:?}");
    assert_eq!(sealed_ids(&app).await, vec![new_id.clone(), new_id.clone()]);
    let again = both.reseal(&ctx(&both)).await.expect("again");
    assert_eq!((again.resealed, again.current), (0, 2), "nothing left to do: {again:?}");

    // Only the new key: everything opens (the group's secret reaches AWS, the key decrypts).
    let new_only = open(&app, NEW_KEY, "").await.expect("start with the new key only");
    let group_id = GroupId::parse(&gid(&g)).expect("group id");
    new_only.sync_group(&ctx(&new_only), group_id, SyncTrigger::Manual).await.expect("the secret opens");
    let (vid, kid) = (GroupId::parse(&gid(&vault)).expect("g"), KeyId::parse(&k.key_id).expect("k"));
    let pt = new_only.decrypt(&ctx(&new_only), vid, kid, &ct, &Default::default()).await.expect("the material opens");
    assert_eq!(&pt[..], b"kept");

    // The old key alone: refused at start, naming the key it lacks.
    let e = open(&app, &old_hex, "").await.err().expect("the old key alone is refused");
    let text = e.to_string();
    assert!(text.contains(&new_id) && text.contains("KEYWARD_PREVIOUS_MASTER_KEYS"), "{text}");
    // A key never seen: refused too.
    let e = open(&app, &"7c".repeat(32), "").await.err().expect("a wrong key is refused");
    assert!(e.to_string().contains(&new_id), "{e}");
}

#[tokio::test]
async fn one_damaged_value_fails_only_its_group_or_key() {
    let mut app = TestApp::spawn().await;
    let good = app.create_aws_group("intact").await;
    let bad = app.create_aws_group("damaged").await;
    let vault = app.regular_group("damaged-vault").await;
    let ok_key = app.create_key(&vault.name, "intact", pb::KeySpec::Aes256, &[Op::Encrypt]).await;
    let bad_key = app.create_key(&vault.name, "damaged", pb::KeySpec::Aes256, &[Op::Encrypt]).await;
    // Another row's sealed value: well formed, under the right key, but bound elsewhere.
    app.exec_sql(&format!(
        "UPDATE groups SET secret_access_key_sealed = (SELECT secret_access_key_sealed FROM groups WHERE id = '{}') WHERE id = '{}'",
        gid(&good), gid(&bad)
    ))
    .await;
    app.exec_sql(&format!(
        "UPDATE keys SET material_sealed = (SELECT material_sealed FROM keys WHERE id = '{}') WHERE id = '{}'",
        ok_key.key_id, bad_key.key_id
    ))
    .await;
    let stored = |app: &TestApp, id: String| {
        let db = app.keyward.store().connection().clone();
        async move {
            let sql = format!("SELECT secret_access_key_sealed AS v FROM groups WHERE id = '{id}'");
            let row = db
                .query_one_raw(sea_orm::Statement::from_string(db.get_database_backend(), sql))
                .await
                .expect("query")
                .expect("row");
            row.try_get::<Vec<u8>>("", "v").expect("v")
        }
    };
    let damaged_bytes = stored(&app, gid(&bad)).await;

    // Reads of every group work; only the damaged group's AWS calls are refused, naming it.
    assert_eq!(app.list_groups().await.expect("list").len(), 3);
    app.get_group(&bad.name).await;
    let e = app
        .groups
        .sync_keys(pb::SyncKeysRequest { name: bad.name.clone(), ..Default::default() })
        .await
        .expect_err("damaged");
    let why = precondition(&e, "SEALED_VALUE", "damaged secret");
    assert!(why.contains(&bad.name) && why.contains("secret_access_key"), "{why}");
    app.sync(&good.name).await;
    // The start-up check does not refuse a database with one damaged value.
    app.keyward.store().check_keyring().await.expect("starts");

    // A change that does not touch the secret keeps the stored value as it was.
    let mut g = app.get_group(&bad.name).await;
    g.description = "still damaged".into();
    g.etag.clear();
    app.groups
        .update_group(pb::UpdateGroupRequest { group: Some(g), update_mask: mask(&["description"]) })
        .await
        .expect("update the description");
    assert_eq!(stored(&app, gid(&bad)).await, damaged_bytes);
    // Setting the secret again mends it.
    let mut g = app.get_group(&bad.name).await;
    g.etag.clear();
    g.aws_kms.as_mut().expect("aws").secret_access_key = app.secret_access_key.clone();
    app.groups
        .update_group(pb::UpdateGroupRequest { group: Some(g), update_mask: mask(&["aws_kms.secret_access_key"]) })
        .await
        .expect("set the secret again");
    app.sync(&bad.name).await;

    // Key material: only the damaged key fails, naming it.
    let mut c = app.crypto_client();
    let enc = |name: &str| pb::EncryptRequest {
        name: name.into(),
        plaintext: b"x".to_vec(),
        aad: vec![],
        ..Default::default()
    };
    c.encrypt(enc(&ok_key.name)).await.expect("intact key");
    let e = c.encrypt(enc(&bad_key.name)).await.expect_err("damaged key");
    assert!(precondition(&e, "SEALED_VALUE", "damaged material").contains(&bad_key.name));
}
