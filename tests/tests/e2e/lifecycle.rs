//! Key lifecycle: UpdateKey over every mask path (and what AWS then holds), the refusals Keyward
//! makes itself because the emulator would not (deletion window, states, AWS-managed keys,
//! unmanaged aliases, crypto policies), DeleteKey, and the worker's deletion-window check
//! driven with an injected clock.
//!
//! A "tripwire" fails every mutating AWS call with AccessDenied: a refusal that still answers
//! with its own code while it is armed was decided by Keyward before any AWS call.

use std::collections::BTreeMap;
use std::time::Duration;

use keyward_proto::v1 as pb;
use keyward_shared::jobs::deletion_check::Report as DeletionCheckReport;
use keyward_shared::kms::Error as KmsError;
use keyward_shared::kms::faults::Fault;
use keyward_shared::{Settings, domain};
use keyward_tests::fixtures::{aws_group, aws_id, key, mask, ops};
use keyward_tests::status::{fields, invalid_on};
use keyward_tests::{Options, TestApp};
use keyward_worker::deletion_check;
use time::OffsetDateTime;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use pb::KeyOperation as Op;

const DAY: u64 = 86_400;

/// Every `Kms` method that changes something in AWS.
const MUTATING_OPS: [&str; 11] = [
    "create_key",
    "create_alias",
    "delete_alias",
    "schedule_key_deletion",
    "cancel_key_deletion",
    "enable_key",
    "disable_key",
    "update_key_description",
    "tag_resource",
    "untag_resource",
    "put_key_policy",
];

/// From now on every mutating AWS call fails with AccessDenied (→ PERMISSION_DENIED).
fn arm_tripwire(app: &TestApp) {
    for op in MUTATING_OPS {
        app.faults.inject(Fault::Fail {
            op,
            key: None,
            error: KmsError::AccessDenied(format!("tripwire: {op} was called")),
            times: None,
        });
    }
}

fn days(n: u64) -> Duration {
    Duration::from_secs(n * DAY)
}

fn tags(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// A SYMMETRIC_DEFAULT key for ENCRYPT and DECRYPT with the given aliases and tags.
async fn create_key(app: &mut TestApp, group: &str, name: &str, aliases: &[&str], t: &[(&str, &str)]) -> pb::Key {
    let k = key(name, pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt], aliases, t);
    app.try_create_key(group, k).await.unwrap_or_else(|e| panic!("create {name}: {e:?}"))
}

/// UpdateKey without an etag check.
async fn update(
    app: &mut TestApp,
    key: &pb::Key,
    paths: &[&str],
    edit: impl FnOnce(&mut pb::Key),
) -> Result<pb::Key, Status> {
    let mut k = key.clone();
    k.etag.clear();
    edit(&mut k);
    app.update_key(k, paths).await
}

async fn schedule(app: &mut TestApp, name: &str, days: i32) -> Result<pb::Key, Status> {
    app.keys
        .schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
            name: name.into(),
            pending_window_days: days,
            validate_only: false,
        })
        .await
        .map(|r| r.into_inner())
}

async fn cancel(app: &mut TestApp, name: &str) -> Result<pb::Key, Status> {
    app.keys.cancel_key_deletion(pb::CancelKeyDeletionRequest { name: name.into() }).await.map(|r| r.into_inner())
}

/// (type, subject) of every PreconditionFailure violation.
fn preconditions(e: &Status) -> Vec<(String, String)> {
    e.get_error_details()
        .precondition_failure()
        .map(|p| p.violations.iter().map(|v| (v.r#type.clone(), v.subject.clone())).collect())
        .unwrap_or_default()
}

fn assert_invalid(e: &Status, field_prefix: &str, what: &str) {
    assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
    let f = fields(e);
    assert!(f.iter().any(|f| f.starts_with(field_prefix)), "{what}: fields {f:?}, wanted {field_prefix}");
}

/// FAILED_PRECONDITION decided by Keyward (not relayed from AWS) of type `kind`.
fn assert_refused(e: &Status, kind: &str, what: &str) {
    assert_eq!(e.code(), Code::FailedPrecondition, "{what}: {e:?}");
    let p = preconditions(e);
    assert!(p.iter().any(|(t, _)| t == kind), "{what}: preconditions {p:?}, wanted {kind}");
}

/// Every alias of the account (alias name → target key id).
async fn aws_all_aliases(app: &TestApp) -> BTreeMap<String, String> {
    let r = app.aws.list_aliases().limit(100).send().await.expect("aws aliases");
    r.aliases()
        .iter()
        .filter_map(|a| Some((a.alias_name()?.to_owned(), a.target_key_id().unwrap_or_default().to_owned())))
        .collect()
}

async fn aws_policy(app: &TestApp, id: &str) -> serde_json::Value {
    let p = app.aws.get_key_policy().key_id(id).policy_name("default").send().await.expect("aws policy");
    serde_json::from_str(p.policy().expect("policy text")).expect("policy is JSON")
}

fn secs(t: Option<prost_types::Timestamp>) -> i64 {
    t.expect("timestamp").seconds
}

fn assert_about(got: i64, want: OffsetDateTime, what: &str) {
    let want = want.unix_timestamp();
    assert!((got - want).abs() <= 300, "{what}: {got} is not within 5 minutes of {want}");
}

fn ids(v: &[domain::KeyId]) -> Vec<String> {
    v.iter().map(|k| k.to_string()).collect()
}

// ----- UpdateKey -----

#[tokio::test]
async fn update_display_name_and_description_reach_keyward_and_aws() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("upd-names").await;
    let k = create_key(&mut app, &g.name, "before", &[], &[]).await;
    let other = create_key(&mut app, &g.name, "taken", &[], &[]).await;
    let id = aws_id(&k);

    let u = update(&mut app, &k, &["display_name"], |k| k.display_name = "after".into()).await.expect("rename");
    assert_eq!(u.display_name, "after");
    assert_eq!(u.description, "before description", "not in the mask: unchanged");
    assert_ne!(u.etag, k.etag, "every change makes a new etag");
    assert_eq!(app.get_key(&k.name).await, u, "GetKey answers what UpdateKey answered");
    assert_eq!(app.aws_meta(&id).await.description(), Some("before description"));

    let u = update(&mut app, &u, &["description"], |k| {
        k.description = "new words".into();
        k.display_name = "ignored: not in the mask".into();
    })
    .await
    .expect("describe");
    assert_eq!((u.display_name.as_str(), u.description.as_str()), ("after", "new words"));
    assert_eq!(app.aws_meta(&id).await.description(), Some("new words"), "UpdateKeyDescription reached AWS");
    assert_eq!(app.get_key(&k.name).await, u);

    // A display name another key has: ALREADY_EXISTS, nothing changed.
    let e = update(&mut app, &u, &["display_name"], |k| k.display_name = other.display_name.clone())
        .await
        .expect_err("name taken");
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert_eq!(app.get_key(&k.name).await, u);
}

#[tokio::test]
async fn update_tags_adds_changes_and_removes_in_aws() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("upd-tags").await;
    let k = create_key(&mut app, &g.name, "tagged", &[], &[("keep", "1"), ("change", "old"), ("drop", "x")]).await;
    let id = aws_id(&k);
    assert_eq!(app.aws_tags(&id).await, tags(&[("keep", "1"), ("change", "old"), ("drop", "x")]));

    let want = tags(&[("keep", "1"), ("change", "new"), ("add", "2"), ("empty", "")]);
    let u = update(&mut app, &k, &["tags"], |k| k.tags = want.clone().into_iter().collect()).await.expect("tags");
    assert_eq!(u.tags.clone().into_iter().collect::<BTreeMap<_, _>>(), want);
    assert_eq!(app.aws_tags(&id).await, want, "AWS holds exactly the requested tags");
    assert_eq!(app.get_key(&k.name).await.tags, u.tags);

    // Removing every tag.
    let u = update(&mut app, &u, &["tags"], |k| k.tags.clear()).await.expect("clear tags");
    assert!(u.tags.is_empty());
    assert!(app.aws_tags(&id).await.is_empty(), "UntagResource removed them all");

    // A sync afterwards finds in AWS exactly what Keyward holds.
    let u = update(&mut app, &u, &["tags"], |k| k.tags = [("last".to_owned(), "one".to_owned())].into()).await;
    let u = u.expect("tags again");
    let run = app.sync(&g.name).await;
    assert_eq!((run.updated, run.unchanged), (0, 1), "{run:?}");
    assert_eq!(app.get_key(&k.name).await.tags, u.tags);
}

#[tokio::test]
async fn update_tags_checks_like_create_before_any_aws_call() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("upd-tags-bad").await;
    let k = create_key(&mut app, &g.name, "tagged", &[], &[("team", "sec")]).await;
    let id = aws_id(&k);
    let k129 = "k".repeat(129);
    let v257 = "v".repeat(257);
    let fifty_one: BTreeMap<String, String> = (0..51).map(|i| (format!("t{i}"), "x".to_owned())).collect();
    let cases: Vec<(&str, BTreeMap<String, String>, String)> = vec![
        ("51 tags", fifty_one, "key.tags".into()),
        ("key of 129", tags(&[(&k129, "v")]), format!("key.tags[{k129}]")),
        ("value of 257", tags(&[("k", &v257)]), "key.tags[k]".into()),
        ("empty key", tags(&[("", "v")]), "key.tags[]".into()),
        ("aws: prefix", tags(&[("aws:team", "v")]), "key.tags[aws:team]".into()),
        ("AWS: prefix", tags(&[("AWS:team", "v")]), "key.tags[AWS:team]".into()),
        ("aWs: prefix", tags(&[("aWs:team", "v")]), "key.tags[aWs:team]".into()),
    ];
    arm_tripwire(&app);
    for (what, t, field) in cases {
        let e = update(&mut app, &k, &["tags"], |k| k.tags = t.into_iter().collect()).await.expect_err(what);
        assert_invalid(&e, &field, what);
    }
    app.faults.clear();
    assert_eq!(app.aws_tags(&id).await, tags(&[("team", "sec")]), "AWS unchanged");
    assert_eq!(app.get_key(&k.name).await, k, "Keyward unchanged");

    // Just inside the limits works.
    let mut ok: BTreeMap<String, String> = (0..49).map(|i| (format!("t{i}"), "x".to_owned())).collect();
    ok.insert("k".repeat(128), "v".repeat(256));
    let u = update(&mut app, &k, &["tags"], |k| k.tags = ok.clone().into_iter().collect()).await.expect("50 tags");
    assert_eq!(u.tags.len(), 50);
    assert_eq!(app.aws_tags(&id).await, ok);
}

#[tokio::test]
async fn update_aliases_creates_and_deletes_the_difference_in_aws() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("upd-aliases").await;
    let k = create_key(&mut app, &g.name, "aliased", &["alias/one", "alias/two"], &[]).await;
    let id = aws_id(&k);

    let set = |list: &'static [&'static str]| {
        move |k: &mut pb::Key| {
            k.aws.get_or_insert_default().aliases = list.iter().map(|a| a.to_string()).collect();
        }
    };
    let u = update(&mut app, &k, &["aws.aliases"], set(&["alias/two", "alias/three"])).await.expect("aliases");
    assert_eq!(u.aws.as_ref().expect("aws").aliases, vec!["alias/three", "alias/two"]);
    assert_eq!(app.aws_aliases(&id).await, vec!["alias/three", "alias/two"]);
    assert!(!aws_all_aliases(&app).await.contains_key("alias/one"), "DeleteAlias removed alias/one");

    let u = update(&mut app, &u, &["aws.aliases"], set(&[])).await.expect("no aliases");
    assert!(u.aws.as_ref().expect("aws").aliases.is_empty());
    assert!(app.aws_aliases(&id).await.is_empty());
    assert_eq!(app.get_key(&k.name).await, u);

    // Bad alias names: INVALID_ARGUMENT naming the field, before AWS.
    arm_tripwire(&app);
    for (what, list) in
        [("no prefix", vec!["payments"]), ("alias/aws/", vec!["alias/aws/s3"]), ("twice", vec!["alias/x", "alias/x"])]
    {
        let e = update(&mut app, &u, &["aws.aliases"], |k| {
            k.aws.get_or_insert_default().aliases = list.iter().map(|a| a.to_string()).collect();
        })
        .await
        .expect_err(what);
        assert_invalid(&e, "key.aws.aliases", what);
    }
}

#[tokio::test]
async fn alias_owned_by_another_key_is_already_exists_naming_owner_and_state() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("upd-alias-taken").await;
    let owner = app.aws.create_key().send().await.expect("owner");
    let owner_meta = owner.key_metadata().expect("meta");
    let (owner_id, owner_arn) = (owner_meta.key_id().to_owned(), owner_meta.arn().expect("arn").to_owned());
    app.aws.create_alias().alias_name("alias/owned").target_key_id(&owner_id).send().await.expect("alias");
    app.aws.disable_key().key_id(&owner_id).send().await.expect("disable owner");
    let k = create_key(&mut app, &g.name, "wants-it", &["alias/mine"], &[]).await;
    let id = aws_id(&k);

    let e = update(&mut app, &k, &["aws.aliases"], |k| {
        k.aws.get_or_insert_default().aliases = vec!["alias/mine".into(), "alias/owned".into()];
    })
    .await
    .expect_err("alias taken");
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("alias/owned"), "{}", e.message());
    assert!(e.message().contains(&owner_arn), "names the owner's ARN: {}", e.message());
    assert!(e.message().contains("Disabled"), "names the owner's state: {}", e.message());

    assert_eq!(app.aws_aliases(&id).await, vec!["alias/mine"], "our key did not get it");
    assert_eq!(app.aws_aliases(&owner_id).await, vec!["alias/owned"], "the owner keeps it");
    let now = app.get_key(&k.name).await;
    assert_eq!(now.aws.expect("aws").aliases, vec!["alias/mine"], "Keyward agrees with AWS");
}

/// AWS fails part-way through an UpdateKey (description and tags changed, then the alias is
/// taken): Keyward answers the error and stores what AWS now holds, so the two agree.
#[tokio::test]
async fn a_part_way_failure_leaves_keyward_agreeing_with_aws() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("part-way").await;
    let owner = app.aws.create_key().send().await.expect("owner");
    let owner_id = owner.key_metadata().expect("meta").key_id().to_owned();
    app.aws.create_alias().alias_name("alias/owned").target_key_id(&owner_id).send().await.expect("alias");
    let k = create_key(&mut app, &g.name, "half", &[], &[("old", "1")]).await;
    let id = aws_id(&k);

    let e = update(&mut app, &k, &["description", "tags", "aws.aliases"], |k| {
        k.description = "new description".into();
        k.tags = [("new".to_owned(), "2".to_owned())].into();
        k.aws.get_or_insert_default().aliases = vec!["alias/owned".into()];
    })
    .await
    .expect_err("alias taken");
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");

    let got = app.get_key(&k.name).await;
    let m = app.aws_meta(&id).await;
    assert_eq!(got.description, m.description().unwrap_or_default(), "description as AWS holds it");
    assert_eq!(got.tags.clone().into_iter().collect::<BTreeMap<_, _>>(), app.aws_tags(&id).await, "tags");
    assert_eq!(got.aws.as_ref().expect("aws").aliases, app.aws_aliases(&id).await, "aliases");
    assert!(app.aws_aliases(&id).await.is_empty(), "alias/owned stays with its owner");
}

#[tokio::test]
async fn alias_found_by_sync_is_removed_only_when_named_in_remove_aliases() {
    let mut app = TestApp::spawn().await;
    let seeded = app.aws.create_key().description("outside").send().await.expect("seed");
    let id = seeded.key_metadata().expect("meta").key_id().to_owned();
    app.aws.create_alias().alias_name("alias/outside").target_key_id(&id).send().await.expect("alias");
    let g = app.create_aws_group("upd-alias-unmanaged").await;
    app.sync(&g.name).await;
    let k = app.all_keys(&g.name, "").await.pop().expect("synced key");
    assert_eq!(k.aws.as_ref().expect("aws").aliases, vec!["alias/outside"]);

    // Dropping it, or replacing it, without naming it: refused before any AWS call.
    arm_tripwire(&app);
    for (what, list) in [("dropped", vec![]), ("replaced", vec!["alias/new"])] {
        let e = update(&mut app, &k, &["aws.aliases"], |k| {
            k.aws.get_or_insert_default().aliases = list.iter().map(|a: &&str| a.to_string()).collect();
        })
        .await
        .expect_err(what);
        assert_refused(&e, "UNMANAGED_ALIAS", what);
        assert!(e.message().contains("alias/outside") && e.message().contains("remove_aliases"), "{}", e.message());
    }
    app.faults.clear();
    assert_eq!(app.aws_aliases(&id).await, vec!["alias/outside"], "still in AWS");
    assert!(!aws_all_aliases(&app).await.contains_key("alias/new"), "nothing created");

    // Keeping it and adding one is fine.
    let u = update(&mut app, &k, &["aws.aliases"], |k| {
        k.aws.get_or_insert_default().aliases = vec!["alias/outside".into(), "alias/new".into()];
    })
    .await
    .expect("add next to it");
    assert_eq!(app.aws_aliases(&id).await, vec!["alias/new", "alias/outside"]);

    // Named in remove_aliases: removed in AWS.
    let mut req = u.clone();
    req.etag.clear();
    req.aws.get_or_insert_default().aliases = vec!["alias/new".into()];
    let u = app.update_key_removing(req, &["aws.aliases"], &["alias/outside"]).await.expect("remove named");
    assert_eq!(u.aws.as_ref().expect("aws").aliases, vec!["alias/new"]);
    assert_eq!(app.aws_aliases(&id).await, vec!["alias/new"]);
    assert!(!aws_all_aliases(&app).await.contains_key("alias/outside"), "DeleteAlias reached AWS");

    // The alias Keyward put there is Keyward's to remove.
    let u = update(&mut app, &u, &["aws.aliases"], |k| k.aws.get_or_insert_default().aliases.clear()).await;
    assert!(u.expect("remove managed").aws.expect("aws").aliases.is_empty());
    assert!(app.aws_aliases(&id).await.is_empty());
}

#[tokio::test]
async fn update_key_policy_puts_json_and_refuses_bad_policies_before_aws() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("upd-policy").await;
    let k = create_key(&mut app, &g.name, "policed", &[], &[]).await;
    let id = aws_id(&k);
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Id": "keyward-test",
        "Statement": [{
            "Sid": "Enable IAM User Permissions",
            "Effect": "Allow",
            "Principal": {"AWS": format!("arn:aws:iam::{}:root", app.access_key_id)},
            "Action": "kms:*",
            "Resource": "*"
        }]
    });
    let text = serde_json::to_string_pretty(&policy).expect("json");
    let u = update(&mut app, &k, &["aws.key_policy"], |k| k.aws.get_or_insert_default().key_policy = text.clone())
        .await
        .expect("put policy");
    assert_eq!(u.aws.as_ref().expect("aws").key_policy, text);
    assert_eq!(aws_policy(&app, &id).await, policy, "GetKeyPolicy returns what was put");

    let big = serde_json::json!({"Version": "2012-10-17", "Statement": [], "Pad": "x".repeat(33 * 1024)}).to_string();
    arm_tripwire(&app);
    for (what, bad) in [
        ("malformed", "{\"Version\": \"2012-10-17\", ".to_owned()),
        ("array", "[1, 2]".to_owned()),
        ("string", "\"policy\"".to_owned()),
        ("number", "42".to_owned()),
        ("empty", String::new()),
        ("over 32 KiB", big),
    ] {
        let e = update(&mut app, &u, &["aws.key_policy"], |k| k.aws.get_or_insert_default().key_policy = bad)
            .await
            .expect_err(what);
        assert_invalid(&e, "key.aws.key_policy", what);
    }
    app.faults.clear();
    assert_eq!(aws_policy(&app, &id).await, policy, "AWS unchanged");
    assert_eq!(app.get_key(&k.name).await, u, "Keyward unchanged");
}

#[tokio::test]
async fn update_enabled_disables_and_enables_in_aws() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("upd-enabled").await;
    let k = create_key(&mut app, &g.name, "switch", &[], &[]).await;
    let id = aws_id(&k);
    assert!(k.enabled);

    let u = update(&mut app, &k, &["enabled"], |k| k.enabled = false).await.expect("disable");
    assert_eq!(u.state, pb::KeyState::Disabled as i32);
    assert!(!u.enabled);
    assert_eq!(u.aws.as_ref().expect("aws").aws_key_state, "Disabled");
    assert_eq!(app.aws_state(&id).await, "Disabled", "DisableKey reached AWS");
    assert_eq!(app.get_key(&k.name).await, u);

    let u = update(&mut app, &u, &["enabled"], |k| k.enabled = true).await.expect("enable");
    assert_eq!(u.state, pb::KeyState::Enabled as i32);
    assert!(u.enabled);
    assert_eq!(u.aws.as_ref().expect("aws").aws_key_state, "Enabled");
    assert_eq!(app.aws_state(&id).await, "Enabled", "EnableKey reached AWS");
}

#[tokio::test]
async fn update_key_ops_is_keyward_only_and_must_fit_the_aws_key_usage() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("upd-ops").await;
    let k = create_key(&mut app, &g.name, "sym", &[], &[]).await;
    let rsa = app
        .try_create_key(&g.name, key("rsa", pb::KeySpec::Rsa2048, &[Op::Encrypt, Op::Decrypt], &[], &[]))
        .await
        .expect("rsa");
    arm_tripwire(&app);

    let u = update(&mut app, &k, &["key_ops"], |k| k.key_ops = vec![Op::Encrypt as i32, Op::WrapKey as i32])
        .await
        .expect("no AWS call needed");
    assert_eq!(u.key_ops, vec![Op::Encrypt as i32, Op::WrapKey as i32]);
    assert_eq!(app.get_key(&k.name).await.key_ops, u.key_ops);

    for (what, key, ops) in [
        ("SIGN on a symmetric key", &u, vec![Op::Sign]),
        ("SIGN on an ENCRYPT_DECRYPT RSA key", &rsa, vec![Op::Sign, Op::Verify]),
        ("mixed usages", &rsa, vec![Op::Encrypt, Op::Sign]),
    ] {
        let e = update(&mut app, key, &["key_ops"], |k| k.key_ops = ops.iter().map(|o| *o as i32).collect())
            .await
            .expect_err(what);
        assert_invalid(&e, "key.key_ops", what);
    }
    app.faults.clear();
    assert_eq!(app.aws_meta(&aws_id(&k)).await.key_usage().map(|u| u.as_str()), Some("ENCRYPT_DECRYPT"));
    assert_eq!(app.get_key(&rsa.name).await, rsa);
}

/// SIGN / VERIFY on an AES key by UpdateKey: refused, the key keeps its ops.
#[tokio::test]
async fn update_key_refuses_sign_and_verify_on_an_aes_key() {
    let mut app = TestApp::spawn().await;
    let g = app.regular_group("vault").await;
    let k = app.create_key(&g.name, "aes", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt]).await;
    let patch = pb::Key { name: k.name.clone(), key_ops: ops(&[Op::Sign, Op::Verify]), ..Default::default() };
    let err = app.update_key(patch, &["key_ops"]).await.expect_err("sign on AES");
    invalid_on(&err, "key.key_ops", "sign on AES");
    assert_eq!(app.get_key(&k.name).await.key_ops, ops(&[Op::Encrypt, Op::Decrypt]));
}

#[tokio::test]
async fn update_mask_empty_or_unknown_is_invalid_argument() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("upd-mask").await;
    let k = create_key(&mut app, &g.name, "masked", &[], &[]).await;
    arm_tripwire(&app);
    let e = app
        .keys
        .update_key(pb::UpdateKeyRequest { key: Some(k.clone()), update_mask: None, remove_aliases: vec![] })
        .await
        .expect_err("no mask");
    assert_invalid(&e, "update_mask", "no mask");
    for paths in [vec![], vec!["color"], vec!["description", "state"], vec!["aws.key_arn"], vec!["name"]] {
        let e = update(&mut app, &k, &paths, |k| k.description = "changed".into()).await.expect_err("bad mask");
        assert_invalid(&e, "update_mask", &format!("{paths:?}"));
    }
    app.faults.clear();
    assert_eq!(app.get_key(&k.name).await, k);
    assert_eq!(app.aws_meta(&aws_id(&k)).await.description(), Some("masked description"));
}

#[tokio::test]
async fn stale_etag_is_aborted_and_changes_nothing() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("upd-etag").await;
    let k = create_key(&mut app, &g.name, "raced", &[], &[]).await;
    let mut first = k.clone();
    first.description = "first writer".into();
    let u = app.update_key(first, &["description"]).await.expect("matching etag");
    assert_ne!(u.etag, k.etag);

    arm_tripwire(&app);
    let mut second = k.clone();
    second.description = "second writer".into();
    let e = app.update_key(second, &["description"]).await.expect_err("stale etag");
    assert_eq!(e.code(), Code::Aborted, "{e:?}");
    app.faults.clear();
    assert_eq!(app.get_key(&k.name).await, u);
    assert_eq!(app.aws_meta(&aws_id(&k)).await.description(), Some("first writer"));

    let mut third = u.clone();
    third.description = "with the fresh etag".into();
    app.update_key(third, &["description"]).await.expect("fresh etag");
}

#[tokio::test]
async fn aws_managed_key_refuses_every_change_without_calling_aws() {
    let mut app = TestApp::spawn().await;
    let seeded = app
        .aws
        .create_key()
        .description("managed by AWS")
        .tags(aws_sdk_kms::types::Tag::builder().tag_key("owner").tag_value("aws").build().expect("tag"))
        .send()
        .await
        .expect("seed");
    let id = seeded.key_metadata().expect("meta").key_id().to_owned();
    app.aws.create_alias().alias_name("alias/managed").target_key_id(&id).send().await.expect("alias");
    let policy_before = aws_policy(&app, &id).await;
    app.faults.inject(Fault::AwsManaged(id.clone()));
    let g = app.create_aws_group("aws-managed").await;
    app.sync(&g.name).await;
    let k = app.all_keys(&g.name, "").await.pop().expect("synced");
    assert!(!k.mutable, "{k:?}");
    assert_eq!(k.aws.as_ref().expect("aws").key_manager, "AWS");

    arm_tripwire(&app);
    let policy_text = serde_json::json!({"Version": "2012-10-17", "Statement": []}).to_string();
    type Edit = Box<dyn FnOnce(&mut pb::Key)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("display_name", Box::new(|k| k.display_name = "renamed".into())),
        ("description", Box::new(|k| k.description = "changed".into())),
        ("tags", Box::new(|k| k.tags = [("owner".to_owned(), "me".to_owned())].into())),
        ("aws.aliases", Box::new(|k| k.aws.get_or_insert_default().aliases = vec!["alias/mine".into()])),
        ("aws.key_policy", Box::new(move |k| k.aws.get_or_insert_default().key_policy = policy_text)),
        ("enabled", Box::new(|k| k.enabled = false)),
        ("key_ops", Box::new(|k| k.key_ops = vec![Op::Encrypt as i32])),
    ];
    for (path, edit) in edits {
        let e = update(&mut app, &k, &[path], edit).await.expect_err(path);
        assert_refused(&e, "AWS_MANAGED_KEY", path);
    }
    let e = schedule(&mut app, &k.name, 7).await.expect_err("schedule");
    assert_refused(&e, "AWS_MANAGED_KEY", "schedule");
    let e = cancel(&mut app, &k.name).await.expect_err("cancel");
    assert_refused(&e, "AWS_MANAGED_KEY", "cancel");

    app.faults.clear();
    let m = app.aws_meta(&id).await;
    assert_eq!(m.key_state().map(|s| s.as_str()), Some("Enabled"));
    assert_eq!(m.description(), Some("managed by AWS"));
    assert_eq!(app.aws_tags(&id).await, tags(&[("owner", "aws")]));
    assert_eq!(app.aws_aliases(&id).await, vec!["alias/managed"]);
    assert_eq!(aws_policy(&app, &id).await, policy_before);
    assert_eq!(app.get_key(&k.name).await, k, "Keyward unchanged");
}

// ----- ScheduleKeyDeletion / CancelKeyDeletion -----

#[tokio::test]
async fn schedule_deletion_window_is_7_to_30_days() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("window").await;
    let k7 = create_key(&mut app, &g.name, "seven", &[], &[]).await;
    let k0 = create_key(&mut app, &g.name, "default", &[], &[]).await;
    let k30 = create_key(&mut app, &g.name, "thirty", &[], &[]).await;

    // LocalStack would take 6 or 31; Keyward must not.
    for n in [6, 31, 1, -1, 365] {
        let e = schedule(&mut app, &k7.name, n).await.expect_err("outside 7-30");
        assert_invalid(&e, "pending_window_days", &format!("{n} days"));
    }
    assert_eq!(app.aws_state(&aws_id(&k7)).await, "Enabled", "nothing reached AWS");
    assert_eq!(app.get_key(&k7.name).await, k7);

    for (k, asked, want_days) in [(&k7, 7, 7), (&k0, 0, 30), (&k30, 30, 30)] {
        let now = OffsetDateTime::now_utc();
        let s = schedule(&mut app, &k.name, asked).await.unwrap_or_else(|e| panic!("{asked} days: {e:?}"));
        assert_eq!(s.state, pb::KeyState::PendingDeletion as i32, "{asked} days");
        assert!(!s.enabled);
        let aws = s.aws.clone().expect("aws");
        assert_eq!(aws.aws_key_state, "PendingDeletion");
        assert_about(secs(aws.deletion_time), now + days(want_days), &format!("deletion_time for {asked}"));
        let m = app.aws_meta(&aws.aws_key_id).await;
        assert_eq!(m.key_state().map(|s| s.as_str()), Some("PendingDeletion"));
        assert_about(m.deletion_date().expect("aws deletion date").secs(), now + days(want_days), "AWS date");
        assert_eq!(app.get_key(&k.name).await, s);
    }
}

#[tokio::test]
async fn schedule_twice_enable_while_pending_and_cancel_follow_the_lifecycle() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("states").await;
    let k = create_key(&mut app, &g.name, "doomed", &[], &[]).await;
    let other = create_key(&mut app, &g.name, "alive", &[], &[]).await;
    let id = aws_id(&k);

    // Cancel with nothing to cancel.
    arm_tripwire(&app);
    let e = cancel(&mut app, &other.name).await.expect_err("not pending");
    assert_refused(&e, "KEY_STATE", "cancel when enabled");
    assert!(e.message().contains("not pending deletion"), "{}", e.message());
    app.faults.clear();
    assert_eq!(app.aws_state(&aws_id(&other)).await, "Enabled");

    let s = schedule(&mut app, &k.name, 7).await.expect("schedule");
    let date = app.aws_meta(&id).await.deletion_date().expect("date").secs();

    arm_tripwire(&app);
    let e = schedule(&mut app, &k.name, 30).await.expect_err("twice");
    assert_refused(&e, "KEY_STATE", "schedule twice");
    assert!(e.message().contains("already pending deletion"), "{}", e.message());
    for (what, on) in [("enable", true), ("disable", false)] {
        let e = update(&mut app, &s, &["enabled"], |k| k.enabled = on).await.expect_err(what);
        assert_refused(&e, "KEY_STATE", what);
        assert!(e.message().contains("cancel the deletion first"), "{what}: {}", e.message());
    }
    app.faults.clear();
    let m = app.aws_meta(&id).await;
    assert_eq!(m.key_state().map(|s| s.as_str()), Some("PendingDeletion"), "AWS unchanged");
    assert_eq!(m.deletion_date().expect("date").secs(), date, "the 7-day window stands");
    assert_eq!(app.get_key(&k.name).await, s);

    let c = cancel(&mut app, &k.name).await.expect("cancel");
    assert_eq!(c.state, pb::KeyState::Disabled as i32, "AWS leaves a cancelled key disabled");
    let aws = c.aws.clone().expect("aws");
    assert_eq!(aws.aws_key_state, "Disabled");
    assert!(aws.deletion_time.is_none());
    assert_eq!(app.aws_state(&id).await, "Disabled");
    assert_eq!(app.get_key(&k.name).await, c);

    // Now enabling works again.
    let u = update(&mut app, &c, &["enabled"], |k| k.enabled = true).await.expect("enable after cancel");
    assert_eq!(u.state, pb::KeyState::Enabled as i32);
    assert_eq!(app.aws_state(&id).await, "Enabled");
}

// ----- DeleteKey and the deletion-window check -----

#[tokio::test]
async fn delete_key_is_refused_until_aws_deleted_it_and_never_touches_aws() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("delete").await;
    let k = create_key(&mut app, &g.name, "kept", &[], &[]).await;
    let id = aws_id(&k);

    let e = app.delete_key(&k.name).await.expect_err("enabled");
    assert_refused(&e, "KEY_STATE", "delete enabled");
    assert!(e.message().contains("ENABLED") && e.message().contains("ScheduleKeyDeletion"), "{}", e.message());

    let disabled = update(&mut app, &k, &["enabled"], |k| k.enabled = false).await.expect("disable");
    let e = app.delete_key(&k.name).await.expect_err("disabled");
    assert_refused(&e, "KEY_STATE", "delete disabled");
    assert!(e.message().contains("DISABLED") && e.message().contains("ScheduleKeyDeletion"), "{}", e.message());
    assert_eq!(app.get_key(&k.name).await, disabled);

    schedule(&mut app, &k.name, 7).await.expect("schedule");
    arm_tripwire(&app);
    let e = app.delete_key(&k.name).await.expect_err("pending");
    assert_refused(&e, "KEY_STATE", "delete pending");
    assert!(
        e.message().contains("PENDING_DELETION") && e.message().contains("wait until AWS deletes it"),
        "says what must happen first: {}",
        e.message()
    );
    app.faults.clear();
    assert_eq!(app.aws_state(&id).await, "PendingDeletion", "the AWS key still exists");
    assert_eq!(app.get_key(&k.name).await.state, pb::KeyState::PendingDeletion as i32);
}

#[tokio::test]
async fn deletion_check_waits_for_the_window_then_marks_deleted_and_delete_key_works() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("window-check").await;
    let k = create_key(&mut app, &g.name, "expiring", &["alias/expiring"], &[]).await;
    let id = aws_id(&k);
    let now = OffsetDateTime::now_utc();
    schedule(&mut app, &k.name, 7).await.expect("schedule");

    // From now on Keyward's DescribeKey of this key says NotFound (as once AWS has deleted it).
    app.not_found_in_aws(&id);
    let r = deletion_check::run_once(&app.keyward, now + days(1)).await.expect("early pass");
    assert_eq!(r, DeletionCheckReport::default(), "inside the window nothing is asked");
    assert_eq!(app.get_key(&k.name).await.state, pb::KeyState::PendingDeletion as i32, "DescribeKey was not called");

    let r = deletion_check::run_once(&app.keyward, now + days(8)).await.expect("due pass");
    assert_eq!(ids(&r.deleted), vec![k.key_id.clone()], "{r:?}");
    let d = app.get_key(&k.name).await;
    assert_eq!(d.state, pb::KeyState::Deleted as i32);
    assert!(d.aws.as_ref().expect("aws").aliases.is_empty(), "AWS deletes the aliases with the key");

    // Nothing is asked about it any more.
    let r = deletion_check::run_once(&app.keyward, now + days(9)).await.expect("later pass");
    assert_eq!(r, DeletionCheckReport::default());

    // Gone from AWS: nothing but DeleteKey is left, and nothing reaches AWS.
    arm_tripwire(&app);
    let e = update(&mut app, &d, &["enabled"], |k| k.enabled = true).await.expect_err("enable DELETED");
    assert_refused(&e, "KEY_STATE", "enable DELETED");
    let e = update(&mut app, &d, &["description"], |k| k.description = "x".into()).await.expect_err("describe");
    assert_refused(&e, "KEY_STATE", "describe DELETED");
    let e = schedule(&mut app, &k.name, 7).await.expect_err("schedule DELETED");
    assert_refused(&e, "KEY_STATE", "schedule DELETED");
    let e = cancel(&mut app, &k.name).await.expect_err("cancel DELETED");
    assert_refused(&e, "KEY_STATE", "cancel DELETED");

    app.delete_key(&k.name).await.expect("delete a DELETED key");
    let e = app.keys.get_key(pb::GetKeyRequest { name: k.name.clone() }).await.expect_err("gone");
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    assert!(app.all_keys(&g.name, "").await.is_empty());
    app.faults.clear();
    assert_eq!(app.aws_state(&id).await, "PendingDeletion", "DeleteKey deleted nothing in AWS");
}

#[tokio::test]
async fn deletion_check_asks_a_still_pending_key_again_only_after_an_hour() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("still-pending").await;
    let k = create_key(&mut app, &g.name, "slow", &[], &[]).await;
    let now = OffsetDateTime::now_utc();
    schedule(&mut app, &k.name, 7).await.expect("schedule");
    let due = now + days(8);

    let r = deletion_check::run_once(&app.keyward, due).await.expect("due pass");
    assert_eq!(ids(&r.still_pending), vec![k.key_id.clone()], "{r:?}");
    assert!(r.deleted.is_empty() && r.refreshed.is_empty() && r.failed.is_empty(), "{r:?}");
    assert_eq!(app.get_key(&k.name).await.state, pb::KeyState::PendingDeletion as i32);

    // Any DescribeKey now would fail: a pass that asks would report the key as failed.
    app.faults.inject(Fault::Fail {
        op: "describe_key",
        key: None,
        error: KmsError::AccessDenied("tripwire: describe_key".into()),
        times: None,
    });
    let r = deletion_check::run_once(&app.keyward, due + Duration::from_secs(60)).await.expect("a minute later");
    assert_eq!(r, DeletionCheckReport::default(), "not asked again within the hour");
    app.faults.clear();

    let r = deletion_check::run_once(&app.keyward, due + Duration::from_secs(3660)).await.expect("an hour later");
    assert_eq!(ids(&r.still_pending), vec![k.key_id.clone()], "asked again after an hour: {r:?}");
    assert_eq!(app.get_key(&k.name).await.state, pb::KeyState::PendingDeletion as i32);
}

#[tokio::test]
async fn deletion_cancelled_outside_keyward_is_refreshed_to_disabled() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("cancelled-outside").await;
    let k = create_key(&mut app, &g.name, "rescued", &[], &[]).await;
    let id = aws_id(&k);
    let now = OffsetDateTime::now_utc();
    schedule(&mut app, &k.name, 7).await.expect("schedule");
    app.aws.cancel_key_deletion().key_id(&id).send().await.expect("cancel in AWS");

    let r = deletion_check::run_once(&app.keyward, now + days(8)).await.expect("due pass");
    assert_eq!(ids(&r.refreshed), vec![k.key_id.clone()], "{r:?}");
    let got = app.get_key(&k.name).await;
    assert_eq!(got.state, pb::KeyState::Disabled as i32);
    let aws = got.aws.clone().expect("aws");
    assert_eq!(aws.aws_key_state, "Disabled");
    assert!(aws.deletion_time.is_none(), "{aws:?}");

    let r = deletion_check::run_once(&app.keyward, now + days(9)).await.expect("later pass");
    assert_eq!(r, DeletionCheckReport::default(), "no longer pending: never asked again");
    assert_eq!(app.get_key(&k.name).await, got);
}

#[tokio::test]
async fn one_failing_key_does_not_stop_the_deletion_check_of_the_others() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("check-failures").await;
    let bad = create_key(&mut app, &g.name, "denied", &[], &[]).await;
    let good = create_key(&mut app, &g.name, "gone", &[], &[]).await;
    let now = OffsetDateTime::now_utc();
    schedule(&mut app, &bad.name, 7).await.expect("schedule");
    schedule(&mut app, &good.name, 7).await.expect("schedule");
    app.faults.inject(Fault::Fail {
        op: "describe_key",
        key: Some(aws_id(&bad)),
        error: KmsError::AccessDenied("not authorized to perform kms:DescribeKey".into()),
        times: None,
    });
    app.faults.inject(Fault::Fail {
        op: "describe_key",
        key: Some(aws_id(&good)),
        error: KmsError::NotFound("gone".into()),
        times: None,
    });

    let due = now + days(8);
    let r = deletion_check::run_once(&app.keyward, due).await.expect("the pass itself succeeds");
    assert_eq!(ids(&r.failed), vec![bad.key_id.clone()], "{r:?}");
    assert_eq!(ids(&r.deleted), vec![good.key_id.clone()], "{r:?}");
    assert_eq!(app.get_key(&bad.name).await.state, pb::KeyState::PendingDeletion as i32);
    assert_eq!(app.get_key(&good.name).await.state, pb::KeyState::Deleted as i32);

    // The failed key is retried after an hour, once AWS answers again.
    app.faults.clear();
    let r = deletion_check::run_once(&app.keyward, due + Duration::from_secs(60)).await.expect("soon after");
    assert_eq!(r, DeletionCheckReport::default());
    let r = deletion_check::run_once(&app.keyward, due + Duration::from_secs(3660)).await.expect("retry");
    assert_eq!(ids(&r.still_pending), vec![bad.key_id.clone()], "{r:?}");
}

// ----- crypto policies -----

async fn group_with_policy(app: &mut TestApp, name: &str, specs: &[pb::KeySpec], key_ops: &[Op]) -> pb::Group {
    let policy = pb::CryptoPolicy {
        allowed_key_specs: specs.iter().map(|s| *s as i32).collect(),
        allowed_key_ops: ops(key_ops),
    };
    app.create_group(pb::Group { crypto_policy: Some(policy), ..aws_group(name, app.aws_kms_config()) })
        .await
        .expect("create group")
}

#[tokio::test]
async fn group_crypto_policy_refuses_a_key_spec_with_a_precondition_failure() {
    let mut app = TestApp::spawn().await;
    let g = group_with_policy(&mut app, "symmetric-only", &[pb::KeySpec::SymmetricDefault], &[]).await;
    let e = app
        .try_create_key(&g.name, key("rsa", pb::KeySpec::Rsa2048, &[Op::Sign, Op::Verify], &[], &[]))
        .await
        .expect_err("RSA not allowed");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let p = preconditions(&e);
    assert_eq!(p, vec![("CRYPTO_POLICY".to_owned(), format!("{}/crypto_policy", g.name))], "{e:?}");
    assert!(e.message().contains("RSA_2048"), "{}", e.message());
    assert_eq!(app.aws_key_count().await, 0, "nothing created in AWS");
    assert!(app.all_keys(&g.name, "").await.is_empty());

    create_key(&mut app, &g.name, "sym", &[], &[]).await;
    assert_eq!(app.aws_key_count().await, 1);
}

#[tokio::test]
async fn group_crypto_policy_limits_key_ops_on_create_and_update() {
    let mut app = TestApp::spawn().await;
    let g = group_with_policy(&mut app, "encrypt-only", &[], &[Op::Encrypt, Op::Decrypt]).await;
    let e = app
        .try_create_key(&g.name, key("wrap", pb::KeySpec::SymmetricDefault, &[Op::WrapKey], &[], &[]))
        .await
        .expect_err("WRAP_KEY not allowed");
    assert_refused(&e, "CRYPTO_POLICY", "create with WRAP_KEY");
    assert_eq!(app.aws_key_count().await, 0);

    let k = create_key(&mut app, &g.name, "enc", &[], &[]).await;
    let e = update(&mut app, &k, &["key_ops"], |k| k.key_ops = vec![Op::Encrypt as i32, Op::UnwrapKey as i32])
        .await
        .expect_err("UNWRAP_KEY not allowed");
    assert_refused(&e, "CRYPTO_POLICY", "update to UNWRAP_KEY");
    assert_eq!(preconditions(&e)[0].1, format!("{}/crypto_policy", g.name));
    assert_eq!(app.get_key(&k.name).await, k);
}

#[tokio::test]
async fn server_policy_narrows_a_group_that_allows_everything() {
    let opts = Options {
        settings: Settings {
            server_policy: domain::CryptoPolicy {
                allowed_key_specs: vec![domain::KeySpec::SymmetricDefault],
                allowed_key_ops: vec![],
            },
            ..Settings::standard()
        },
        ..Options::default()
    };
    let mut app = TestApp::spawn_with(opts).await;
    let g = app.create_aws_group("allows-all").await;
    let e = app
        .try_create_key(&g.name, key("rsa", pb::KeySpec::Rsa2048, &[Op::Sign, Op::Verify], &[], &[]))
        .await
        .expect_err("the server refuses RSA");
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    let p = preconditions(&e);
    assert_eq!(p.len(), 1, "{p:?}");
    assert_eq!(p[0].0, "CRYPTO_POLICY");
    assert!(p[0].1.contains("server") && p[0].1.contains("crypto_policy"), "subject names the server policy: {p:?}");
    assert_eq!(app.aws_key_count().await, 0, "nothing created in AWS");

    create_key(&mut app, &g.name, "sym", &[], &[]).await;
    assert_eq!(app.aws_key_count().await, 1);
}

// ----- concurrent changes -----

/// Two UpdateKeys carrying the same (current) etag: only one may win; the other is ABORTED.
#[tokio::test]
async fn two_updates_with_the_same_etag_cannot_both_win() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("etag-race").await;
    let k = create_key(&mut app, &g.name, "contended", &[], &[]).await;
    let mut both_won = Vec::new();
    for trial in 0..5 {
        let current = app.get_key(&k.name).await;
        let send = |text: String| {
            let mut client = app.keys.clone();
            let mut key = current.clone();
            key.description = text;
            async move {
                client
                    .update_key(pb::UpdateKeyRequest {
                        key: Some(key),
                        update_mask: mask(&["description"]),
                        remove_aliases: vec![],
                    })
                    .await
            }
        };
        let (a, b) = tokio::join!(send(format!("a{trial}")), send(format!("b{trial}")));
        for r in [&a, &b] {
            if let Err(e) = r {
                assert_eq!(e.code(), Code::Aborted, "trial {trial}: {e:?}");
            }
        }
        if a.is_ok() && b.is_ok() {
            both_won.push(trial);
        }
    }
    assert!(both_won.is_empty(), "both updates with etag E succeeded in trials {both_won:?}");
}

/// A ScheduleKeyDeletion and an UpdateKey of the same key at the same time: both answer OK, so
/// both changes must stay (UpdateKey must not write back the state it read before, nor
/// ScheduleKeyDeletion the display name), and Keyward must agree with AWS.
#[tokio::test]
async fn concurrent_schedule_and_rename_lose_neither_change() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("lost-update").await;
    let mut keys = Vec::new();
    for i in 0..6 {
        keys.push(create_key(&mut app, &g.name, &format!("k{i}"), &[], &[]).await);
    }
    let outcomes = futures::future::join_all(keys.iter().enumerate().map(|(i, k)| {
        let (mut a, mut b) = (app.keys.clone(), app.keys.clone());
        let name = k.name.clone();
        let mut rename = k.clone();
        rename.etag.clear();
        rename.display_name = format!("renamed{i}");
        async move {
            let schedule = a.schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
                name,
                pending_window_days: 7,
                validate_only: false,
            });
            let update = async {
                tokio::time::sleep(Duration::from_millis(2 * i as u64)).await;
                b.update_key(pb::UpdateKeyRequest {
                    key: Some(rename),
                    update_mask: mask(&["display_name"]),
                    remove_aliases: vec![],
                })
                .await
            };
            let (s, u) = tokio::join!(schedule, update);
            (s.is_ok(), u.is_ok())
        }
    }))
    .await;
    let mut lost = Vec::new();
    for (i, (k, (scheduled, renamed))) in keys.iter().zip(outcomes).enumerate() {
        let got = app.get_key(&k.name).await;
        let in_aws = app.aws_state(&aws_id(k)).await;
        if scheduled && got.state != pb::KeyState::PendingDeletion as i32 {
            lost.push(format!("k{i}: scheduled (AWS {in_aws}) but Keyward says {:?}", got.state()));
        }
        if renamed && got.display_name != format!("renamed{i}") {
            lost.push(format!("k{i}: renamed but Keyward says {:?}", got.display_name));
        }
        if got.aws.as_ref().expect("aws").aws_key_state != in_aws {
            lost.push(format!("k{i}: Keyward {:?} vs AWS {in_aws}", got.aws.as_ref().expect("aws").aws_key_state));
        }
    }
    assert!(lost.is_empty(), "{}", lost.join("\n"));
}
