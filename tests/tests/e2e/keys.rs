//! CreateKey in an AWS_KMS group for every key spec, the alias conflict that must not leave an
//! orphan key, GetKey/ListKeys paging and filters, and every validation rule refusing bad input
//! before any AWS call.

use keyward_proto::v1 as pb;
use keyward_shared::kms::faults::Fault;
use keyward_tests::TestApp;
use keyward_tests::fixtures::key;
use tonic::Code;
use tonic_types::StatusExt;

use pb::KeyOperation as Op;

#[tokio::test]
async fn create_key_for_every_spec_lands_in_aws_with_alias_tags_and_usage() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("gen").await;
    let cases = [
        (pb::KeySpec::SymmetricDefault, vec![Op::Encrypt, Op::Decrypt], "ENCRYPT_DECRYPT"),
        (pb::KeySpec::Rsa2048, vec![Op::Sign, Op::Verify], "SIGN_VERIFY"),
        (pb::KeySpec::Rsa3072, vec![Op::Encrypt, Op::Decrypt], "ENCRYPT_DECRYPT"),
        (pb::KeySpec::Rsa4096, vec![Op::Sign], "SIGN_VERIFY"),
        (pb::KeySpec::EccNistP256, vec![Op::Sign, Op::Verify], "SIGN_VERIFY"),
        (pb::KeySpec::EccNistP384, vec![Op::Sign, Op::Verify], "SIGN_VERIFY"),
        (pb::KeySpec::EccNistP521, vec![Op::Verify], "SIGN_VERIFY"),
        (pb::KeySpec::EccSecgP256k1, vec![Op::Sign, Op::Verify], "SIGN_VERIFY"),
    ];
    for (i, (spec, ops, usage)) in cases.iter().enumerate() {
        let alias = format!("alias/gen/{}", spec.as_str_name().to_lowercase());
        let k = app
            .try_create_key(
                &g.name,
                key(&format!("k{i}"), *spec, ops, &[&alias], &[("team", "sec"), ("i", &i.to_string())]),
            )
            .await
            .unwrap_or_else(|e| panic!("{spec:?}: {e:?}"));
        assert_eq!(k.key_spec, *spec as i32);
        assert_eq!(k.state, pb::KeyState::Enabled as i32);
        assert_eq!(k.source, pb::KeySource::AwsNative as i32);
        assert!(k.r#virtual);
        assert!(k.created_by.starts_with("principals/"), "created by {}", k.created_by);
        let aws = k.aws.clone().expect("aws details");
        assert_eq!(aws.aliases, vec![alias.clone()]);

        // What AWS holds.
        let d = app.aws.describe_key().key_id(&aws.aws_key_id).send().await.expect("describe");
        let m = d.key_metadata().expect("meta");
        assert_eq!(m.key_spec().map(|s| s.as_str()), spec.as_str_name().strip_prefix("KEY_SPEC_"));
        assert_eq!(m.key_usage().map(|u| u.as_str()), Some(*usage));
        assert_eq!(m.description(), Some(format!("k{i} description").as_str()));
        let aliases = app.aws.list_aliases().key_id(&aws.aws_key_id).send().await.expect("aliases");
        assert_eq!(aliases.aliases().iter().filter_map(|a| a.alias_name()).collect::<Vec<_>>(), vec![alias.as_str()]);
        let tags = app.aws.list_resource_tags().key_id(&aws.aws_key_id).send().await.expect("tags");
        let mut tags: Vec<(String, String)> =
            tags.tags().iter().map(|t| (t.tag_key().to_owned(), t.tag_value().to_owned())).collect();
        tags.sort();
        assert_eq!(tags, vec![("i".to_owned(), i.to_string()), ("team".to_owned(), "sec".to_owned())]);

        let got = app.get_key(&k.name).await;
        assert_eq!(got, k);
    }
    // A sync afterwards adopts nothing new.
    let run = app.sync(&g.name).await;
    assert_eq!((run.added, run.listed), (0, 8), "{run:?}");
}

#[tokio::test]
async fn alias_taken_in_aws_is_already_exists_naming_the_owner_and_leaves_no_orphan() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("taken").await;
    let owner = app.aws.create_key().send().await.expect("owner");
    let owner_arn = owner.key_metadata().expect("meta").arn().expect("arn").to_owned();
    let owner_id = owner.key_metadata().expect("meta").key_id().to_owned();
    app.aws.create_alias().alias_name("alias/shared").target_key_id(&owner_id).send().await.expect("alias");

    let err = app
        .try_create_key(
            &g.name,
            key("k", pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &["alias/first-ok", "alias/shared"], &[]),
        )
        .await
        .expect_err("alias taken");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert!(err.message().contains("alias/shared") && err.message().contains(&owner_arn), "{}", err.message());

    // Checked before any key is made: nothing in Keyward, no new key in AWS.
    assert!(app.all_keys(&g.name, "").await.is_empty());
    assert_eq!(app.aws_key_count().await, 1, "only the owner exists");

    // Taken between the check and CreateAlias (a race): the new key is not left behind.
    app.faults.inject(Fault::Fail {
        op: "create_alias",
        key: Some("alias/raced".into()),
        error: keyward_shared::kms::Error::AlreadyExists("alias/raced already exists".into()),
        times: Some(1),
    });
    let err = app
        .try_create_key(
            &g.name,
            key("k2", pb::KeySpec::SymmetricDefault, &[Op::Encrypt], &["alias/first-ok", "alias/raced"], &[]),
        )
        .await
        .expect_err("alias raced");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    // Keyward recorded the key before aliasing it, and keeps it as AWS now has it: pending
    // deletion, renamed so that "k2" is free for a retry.
    let kept = app.all_keys(&g.name, "").await;
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].display_name.starts_with("k2~abandoned-"), "{}", kept[0].display_name);
    assert_eq!(kept[0].state, pb::KeyState::PendingDeletion as i32);
    let keys = app.aws.list_keys().send().await.expect("list");
    let others: Vec<String> =
        keys.keys().iter().filter_map(|k| k.key_id()).filter(|id| *id != owner_id).map(str::to_owned).collect();
    assert_eq!(others.len(), 1, "exactly the abandoned key");
    let m = app.aws.describe_key().key_id(&others[0]).send().await.expect("describe");
    assert_eq!(m.key_metadata().and_then(|m| m.key_state()).map(|s| s.as_str()), Some("PendingDeletion"));
    let aliases = app.aws.list_aliases().key_id(&others[0]).send().await.expect("aliases");
    assert!(aliases.aliases().is_empty(), "alias/first-ok was removed again");
    let shared = app.aws.list_aliases().key_id(&owner_id).send().await.expect("aliases");
    assert_eq!(shared.aliases().len(), 1, "the owner keeps its alias");
}

#[tokio::test]
async fn duplicate_display_name_is_already_exists_before_aws() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("dup").await;
    app.try_create_key(&g.name, key("same", pb::KeySpec::SymmetricDefault, &[], &[], &[])).await.expect("first");
    let err =
        app.try_create_key(&g.name, key("same", pb::KeySpec::SymmetricDefault, &[], &[], &[])).await.expect_err("dup");
    assert_eq!(err.code(), Code::AlreadyExists);
    assert_eq!(app.aws_key_count().await, 1);
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field_with_no_aws_call() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("strict").await;
    let long_alias = format!("alias/{}", "a".repeat(251));
    let ok_alias = format!("alias/{}", "a".repeat(250));
    let fifty_one: Vec<(String, String)> = (0..51).map(|i| (format!("k{i}"), String::new())).collect();
    let k129 = "k".repeat(129);
    let v257 = "v".repeat(257);
    let mut too_many = key("t", pb::KeySpec::SymmetricDefault, &[], &[], &[]);
    too_many.tags = fifty_one.into_iter().collect();
    let cases: Vec<(&str, pb::Key, &str)> = vec![
        ("ECC with ENCRYPT", key("a", pb::KeySpec::EccNistP256, &[Op::Encrypt], &[], &[]), "key.key_ops"),
        ("SYMMETRIC with SIGN", key("a", pb::KeySpec::SymmetricDefault, &[Op::Sign], &[], &[]), "key.key_ops"),
        ("RSA with both", key("a", pb::KeySpec::Rsa2048, &[Op::Encrypt, Op::Sign], &[], &[]), "key.key_ops"),
        ("RSA with no usage", key("a", pb::KeySpec::Rsa2048, &[], &[], &[]), "key.key_ops"),
        ("AES_256 in AWS", key("a", pb::KeySpec::Aes256, &[Op::Encrypt], &[], &[]), "key.key_spec"),
        ("no spec", key("a", pb::KeySpec::Unspecified, &[], &[], &[]), "key.key_spec"),
        ("no display name", key("", pb::KeySpec::SymmetricDefault, &[], &[], &[]), "key.display_name"),
        (
            "description 8193",
            {
                let mut k = key("a", pb::KeySpec::SymmetricDefault, &[], &[], &[]);
                k.description = "d".repeat(8193);
                k
            },
            "key.description",
        ),
        ("alias without prefix", key("a", pb::KeySpec::SymmetricDefault, &[], &["payments"], &[]), "key.aws.aliases"),
        ("alias/aws/", key("a", pb::KeySpec::SymmetricDefault, &[], &["alias/aws/s3"], &[]), "key.aws.aliases"),
        ("alias charset", key("a", pb::KeySpec::SymmetricDefault, &[], &["alias/pay ments"], &[]), "key.aws.aliases"),
        ("alias colon", key("a", pb::KeySpec::SymmetricDefault, &[], &["alias/a:b"], &[]), "key.aws.aliases"),
        ("alias 257 chars", key("a", pb::KeySpec::SymmetricDefault, &[], &[&long_alias], &[]), "key.aws.aliases"),
        ("alias twice", key("a", pb::KeySpec::SymmetricDefault, &[], &["alias/x", "alias/x"], &[]), "key.aws.aliases"),
        ("51 tags", too_many, "key.tags"),
        ("tag key 129", key("a", pb::KeySpec::SymmetricDefault, &[], &[], &[(&k129, "v")]), "key.tags[kkkk"),
        ("tag value 257", key("a", pb::KeySpec::SymmetricDefault, &[], &[], &[("k", &v257)]), "key.tags[k]"),
        ("empty tag key", key("a", pb::KeySpec::SymmetricDefault, &[], &[], &[("", "v")]), "key.tags[]"),
        ("aws: tag", key("a", pb::KeySpec::SymmetricDefault, &[], &[], &[("AwS:team", "v")]), "key.tags[AwS:team]"),
        (
            "unknown op",
            {
                let mut k = key("a", pb::KeySpec::SymmetricDefault, &[], &[], &[]);
                k.key_ops = vec![99];
                k
            },
            "key.key_ops",
        ),
    ];
    for (what, k, field) in cases {
        let err = app.try_create_key(&g.name, k).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        let details = err.get_error_details();
        let br = details.bad_request().unwrap_or_else(|| panic!("{what}: no BadRequest"));
        assert!(
            br.field_violations.iter().any(|v| v.field.starts_with(field)),
            "{what}: fields {:?}",
            br.field_violations
        );
    }
    for (what, parent) in [("bad parent", "groups/nope"), ("no parent", ""), ("key name as parent", "groups/x/keys/y")]
    {
        let err =
            app.try_create_key(parent, key("a", pb::KeySpec::SymmetricDefault, &[], &[], &[])).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}");
    }
    assert_eq!(app.aws_key_count().await, 0, "no AWS call made a key");
    assert!(app.all_keys(&g.name, "").await.is_empty(), "nothing written");

    // Just inside every limit works.
    let k = key(
        "limits",
        pb::KeySpec::SymmetricDefault,
        &[],
        &[&ok_alias],
        &[(&"k".repeat(128), &"v".repeat(256)), ("empty", "")],
    );
    let mut k = k;
    for i in 0..48 {
        k.tags.insert(format!("t{i}"), "x".into());
    }
    assert_eq!(k.tags.len(), 50);
    app.try_create_key(&g.name, k).await.expect("at the limits");
}

#[tokio::test]
async fn list_keys_pages_and_filters_and_refuses_bad_requests() {
    let mut app = TestApp::spawn().await;
    for _ in 0..5 {
        app.aws.create_key().send().await.expect("seed");
    }
    let e = app.aws.create_key().send().await.expect("seed");
    app.aws.disable_key().key_id(e.key_metadata().expect("m").key_id()).send().await.expect("disable");
    let g = app.create_aws_group("pages").await;
    app.sync(&g.name).await;

    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let r = app
            .keys
            .list_keys(pb::ListKeysRequest {
                parent: g.name.clone(),
                page_size: 4,
                page_token: token,
                ..Default::default()
            })
            .await
            .expect("page")
            .into_inner();
        assert!(r.keys.len() <= 4);
        seen.extend(r.keys.into_iter().map(|k| k.name));
        if r.next_page_token.is_empty() {
            break;
        }
        token = r.next_page_token;
    }
    assert_eq!(seen.len(), 6);
    seen.dedup();
    assert_eq!(seen.len(), 6, "no key twice");
    assert_eq!(app.all_keys(&g.name, "state = DISABLED").await.len(), 1);
    assert_eq!(app.all_keys(&g.name, "state = ENABLED AND virtual = true").await.len(), 5);
    assert_eq!(app.all_keys("groups/-", "key_spec = SYMMETRIC_DEFAULT").await.len(), 6);
    assert_eq!(app.all_keys("groups/-", "virtual = false").await.len(), 0);

    for (what, req) in [
        (
            "bad filter field",
            pb::ListKeysRequest { parent: g.name.clone(), filter: "color = red".into(), ..Default::default() },
        ),
        (
            "bad filter value",
            pb::ListKeysRequest { parent: g.name.clone(), filter: "state = ON".into(), ..Default::default() },
        ),
        (
            "bad token",
            pb::ListKeysRequest { parent: g.name.clone(), page_token: "garbage".into(), ..Default::default() },
        ),
        ("negative size", pb::ListKeysRequest { parent: g.name.clone(), page_size: -1, ..Default::default() }),
        ("bad parent", pb::ListKeysRequest { parent: "groups".into(), ..Default::default() }),
    ] {
        let err = app.keys.list_keys(req).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
    }
    let missing = format!("groups/{}", uuid::Uuid::now_v7());
    let err =
        app.keys.list_keys(pb::ListKeysRequest { parent: missing, ..Default::default() }).await.expect_err("missing");
    assert_eq!(err.code(), Code::NotFound);
    let err = app
        .keys
        .get_key(pb::GetKeyRequest { name: format!("{}/keys/{}", g.name, uuid::Uuid::now_v7()) })
        .await
        .expect_err("missing key");
    assert_eq!(err.code(), Code::NotFound);
}
