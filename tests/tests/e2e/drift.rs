//! The drift report: a region edited behind Keyward's back (alias re-pointed, policy edited,
//! policy only re-ordered, tag changed, key disabled, key created, key deleted) lists exactly the
//! real changes, key by key and page by page, summarised on the run, in the audit log and in
//! the metrics' source; a change found while a Keyward change of the key is in flight is
//! reported and not stored over it.

use std::time::Duration;

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use keyward_tests::fixtures::aws_id;
use pb::DriftKind as K;

const POLICY: &str = r#"{"Version":"2012-10-17","Id":"p","Statement":[{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":"kms:*","Resource":"*"},{"Sid":"Use","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":["kms:Decrypt","kms:Encrypt"],"Resource":"*"}]}"#;
/// POLICY with its statements, its keys and its action list in another order, one action
/// as a one-element list: the same policy.
const POLICY_REORDERED: &str = r#"{"Statement":[{"Resource":"*","Action":["kms:Encrypt","kms:Decrypt"],"Principal":{"AWS":["arn:aws:iam::000000000000:root"]},"Effect":"Allow","Sid":"Use"},{"Sid":"Root","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::000000000000:root"},"Action":["kms:*"],"Resource":"*"}],"Id":"p","Version":"2012-10-17"}"#;

fn tag(k: &str, v: &str) -> aws_sdk_kms::types::Tag {
    aws_sdk_kms::types::Tag::builder().tag_key(k).tag_value(v).build().unwrap()
}

/// A key made in AWS with a description, optional alias, tags and policy; its AWS key id.
async fn aws_key(app: &TestApp, description: &str, alias: Option<&str>, tags: &[(&str, &str)], policy: bool) -> String {
    let mut req = app.aws.create_key().description(description);
    for (k, v) in tags {
        req = req.tags(tag(k, v));
    }
    if policy {
        req = req.policy(POLICY);
    }
    let id = req.send().await.expect("create key").key_metadata().unwrap().key_id().to_owned();
    if let Some(a) = alias {
        app.aws.create_alias().alias_name(a).target_key_id(&id).send().await.expect("alias");
    }
    id
}

/// Every entry of a run's drift report, read `page_size` at a time.
async fn drifts(app: &mut TestApp, run: &str, page_size: i32) -> Vec<pb::KeyDrift> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = app
            .groups
            .list_key_drifts(pb::ListKeyDriftsRequest { parent: run.into(), page_size, page_token: token })
            .await
            .expect("drifts")
            .into_inner();
        assert!(r.key_drifts.len() <= page_size as usize);
        out.extend(r.key_drifts);
        if r.next_page_token.is_empty() {
            return out;
        }
        token = r.next_page_token;
    }
}

/// (field, kind, before, after) of each change of the key whose AWS key id is `id`.
fn of(report: &[pb::KeyDrift], id: &str) -> Vec<(String, K, String, String)> {
    let mut v: Vec<_> = report
        .iter()
        .filter(|d| d.aws_key_arn.ends_with(&format!("key/{id}")))
        .flat_map(|d| d.changes.iter())
        .map(|c| (c.field.clone(), c.kind(), c.before.clone(), c.after.clone()))
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn a_region_edited_behind_keywards_back_reports_exactly_the_real_changes() {
    let mut app = TestApp::spawn().await;
    let a = aws_key(&app, "a", Some("alias/moving"), &[("team", "x"), ("env", "prod")], false).await;
    let b = aws_key(&app, "b", Some("alias/b"), &[], false).await;
    let edited = aws_key(&app, "policy edited", None, &[], true).await;
    let reordered = aws_key(&app, "policy re-ordered", None, &[], true).await;
    let disabled = aws_key(&app, "disabled", None, &[], false).await;
    let quiet = aws_key(&app, "left alone", Some("alias/quiet"), &[("team", "q")], true).await;
    let doomed = aws_key(&app, "doomed", None, &[], false).await;
    let g = app.create_aws_group("drift").await;
    let first = app.sync(&g.name).await;
    let summary = first.drift.clone().unwrap_or_default();
    assert_eq!(summary.keys, 0, "a first sync finds every key; none is drift: {summary:?}");
    assert!(drifts(&mut app, &first.name, 100).await.is_empty());
    let names = app.all_keys(&g.name, "").await;
    let name_of = |id: &str| names.iter().find(|k| aws_id(k) == id).unwrap().name.clone();

    // Behind Keyward's back.
    app.aws.update_alias().alias_name("alias/moving").target_key_id(&b).send().await.expect("re-point");
    app.aws.tag_resource().key_id(&a).tags(tag("team", "y")).send().await.expect("tag");
    app.aws.untag_resource().key_id(&a).tag_keys("env").send().await.expect("untag");
    app.aws.tag_resource().key_id(&b).tags(tag("new", "1")).send().await.expect("tag b");
    let policy = POLICY.replace("kms:Decrypt", "kms:ReEncrypt*");
    app.aws.put_key_policy().key_id(&edited).policy_name("default").policy(&policy).send().await.expect("edit");
    app.aws
        .put_key_policy()
        .key_id(&reordered)
        .policy_name("default")
        .policy(POLICY_REORDERED)
        .send()
        .await
        .expect("re-order");
    app.aws.disable_key().key_id(&disabled).send().await.expect("disable");
    app.aws.update_key_description().key_id(&a).description("a, edited").send().await.expect("describe");
    app.aws.schedule_key_deletion().key_id(&doomed).pending_window_in_days(7).send().await.expect("schedule");
    let created = aws_key(&app, "created", None, &[], false).await;

    let second = app.sync(&g.name).await;
    assert_eq!(second.state, pb::SyncRunState::Succeeded as i32, "{second:?}");
    let report = drifts(&mut app, &second.name, 2).await;
    let s = |v: &str| v.to_owned();
    let (na, nb) = (name_of(&a), name_of(&b));
    assert_eq!(
        of(&report, &a),
        vec![
            (s("aws.aliases.alias/moving"), K::Repointed, na.clone(), nb.clone()),
            (s("description"), K::Changed, s("a"), s("a, edited")),
            (s("tags.env"), K::Removed, s("prod"), s("")),
            (s("tags.team"), K::Changed, s("x"), s("y")),
        ]
    );
    assert_eq!(
        of(&report, &b),
        vec![
            (s("aws.aliases.alias/moving"), K::Repointed, na.clone(), nb.clone()),
            (s("tags.new"), K::Added, s(""), s("1")),
        ]
    );
    let policy_change = of(&report, &edited);
    assert_eq!(policy_change.len(), 1, "{policy_change:?}");
    assert_eq!((policy_change[0].0.as_str(), policy_change[0].1), ("aws.key_policy", K::Changed));
    assert!(policy_change[0].3.contains("kms:ReEncrypt*"), "{policy_change:?}");
    assert!(of(&report, &reordered).is_empty(), "a re-ordered policy is the same policy: {report:#?}");
    let seen = app.get_key(&name_of(&reordered)).await.aws.unwrap().key_policy;
    assert_ne!(seen, POLICY, "the sync read the re-ordered text (and kept it), so the comparison ran");
    assert_eq!(of(&report, &disabled), vec![(s("state"), K::Changed, s("ENABLED"), s("DISABLED"))]);
    assert!(of(&report, &quiet).is_empty(), "{report:#?}");
    assert_eq!(of(&report, &doomed), vec![(s("state"), K::Changed, s("ENABLED"), s("PENDING_DELETION"))]);
    assert_eq!(of(&report, &created), vec![(s(""), K::Created, s(""), s(""))]);
    assert_eq!(report.len(), 6, "{report:#?}");
    assert!(report.iter().all(|d| d.applied && d.key.starts_with(&g.name)), "{report:#?}");

    let summary = second.drift.clone().unwrap_or_default();
    assert_eq!(summary.keys, 6);
    assert_eq!(summary.not_applied, 0);
    let fields: Vec<(String, i64)> =
        summary.fields.clone().into_iter().collect::<std::collections::BTreeMap<_, _>>().into_iter().collect();
    assert_eq!(
        fields,
        vec![
            (s("aws.aliases"), 2),
            (s("aws.key_policy"), 1),
            (s("description"), 1),
            (s("key"), 1),
            (s("state"), 2),
            (s("tags"), 3),
        ]
    );
    // The same summary on GetSyncRun, and in the run's audit event.
    let got = app
        .groups
        .get_sync_run(pb::GetSyncRunRequest { name: second.name.clone() })
        .await
        .expect("get run")
        .into_inner();
    assert_eq!(got.drift, second.drift);
    let events = app
        .audit_client()
        .list_audit_events(pb::ListAuditEventsRequest {
            filter: format!("resource = \"{}\"", second.name),
            ..Default::default()
        })
        .await
        .expect("audit")
        .into_inner()
        .audit_events;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert!(events[0].detail.contains("drift 6 keys (aws.aliases 2,"), "{}", events[0].detail);

    // Nothing changed since: no drift.
    let third = app.sync(&g.name).await;
    assert_eq!(third.drift.unwrap_or_default().keys, 0);
    assert!(drifts(&mut app, &third.name, 100).await.is_empty());
}

#[tokio::test]
async fn a_change_found_while_a_keyward_change_is_in_flight_is_reported_and_not_stored() {
    let mut app = TestApp::spawn().await;
    let id = aws_key(&app, "busy", None, &[], false).await;
    let g = app.create_aws_group("in-flight").await;
    app.sync(&g.name).await;
    let k = app.all_keys(&g.name, "").await.remove(0);
    app.aws.disable_key().key_id(&id).send().await.expect("disable");

    // A Keyward change of the key holds its lock (as UpdateKey does while it calls AWS).
    let key_id = k.name.rsplit('/').next().unwrap().to_owned();
    let store = app.keyward.store().clone();
    assert!(
        store
            .try_lease(&format!("key/{key_id}"), "a change in flight", Duration::from_secs(60), app.keyward.now())
            .await
            .unwrap()
    );
    let run = app.sync(&g.name).await;
    let report = drifts(&mut app, &run.name, 100).await;
    assert_eq!(report.len(), 1, "{report:#?}");
    assert!(!report[0].applied, "{report:#?}");
    assert_eq!(report[0].changes[0].field, "state");
    assert_eq!(run.drift.unwrap_or_default().not_applied, 1);
    assert_eq!(app.get_key(&k.name).await.state, pb::KeyState::Enabled as i32, "not stored over the change in flight");

    // Once the change is done, the next sync finds the drift again and stores it.
    store.release_lease(&format!("key/{key_id}"), "a change in flight").await.unwrap();
    let run = app.sync(&g.name).await;
    let report = drifts(&mut app, &run.name, 100).await;
    assert_eq!(report.len(), 1, "{report:#?}");
    assert!(report[0].applied);
    assert_eq!(app.get_key(&k.name).await.state, pb::KeyState::Disabled as i32);

    // A bad parent or token is INVALID_ARGUMENT; an unknown run NOT_FOUND.
    let err = app
        .groups
        .list_key_drifts(pb::ListKeyDriftsRequest { parent: g.name.clone(), ..Default::default() })
        .await
        .expect_err("a group is not a run");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = app
        .groups
        .list_key_drifts(pb::ListKeyDriftsRequest {
            parent: run.name.clone(),
            page_token: "nope".into(),
            ..Default::default()
        })
        .await
        .expect_err("bad token");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = app
        .groups
        .list_key_drifts(pb::ListKeyDriftsRequest {
            parent: format!("{}/syncRuns/{}", g.name, uuid::Uuid::now_v7()),
            ..Default::default()
        })
        .await
        .expect_err("unknown run");
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
}
