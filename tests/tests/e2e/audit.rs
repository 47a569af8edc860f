//! The audit log: exactly one event per mutating call (successes and refusals, with the gRPC
//! code name as outcome and the canonical resource name), none for reads; actor and request id
//! from metadata, `worker` for jobs; ListAuditEvents filters (times set apart by advancing the
//! test's clock) and pages; VerifyAuditChain finds tampered (text or time), removed and truncated
//! events; no event ever holds a secret.

use std::time::Duration;

use keyward_proto::v1 as pb;
use keyward_shared::kms::Error as KmsError;
use keyward_shared::kms::faults::Fault;
use keyward_tests::Conn;
use keyward_tests::TestApp;
use keyward_tests::fixtures::{aws_group, interval, mask, sym_key};
use keyward_worker::{deletion_check, scheduled_sync};
use pb::audit_service_client::AuditServiceClient;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::{Code, Status};

use pb::KeyOperation as Op;

type Audit = AuditServiceClient<Conn>;

const CREATE_GROUP: &str = "keyward.v1.GroupService/CreateGroup";
const UPDATE_GROUP: &str = "keyward.v1.GroupService/UpdateGroup";
const DELETE_GROUP: &str = "keyward.v1.GroupService/DeleteGroup";
const TEST_CONNECTION: &str = "keyward.v1.GroupService/TestConnection";
const SYNC_KEYS: &str = "keyward.v1.GroupService/SyncKeys";
const CREATE_KEY: &str = "keyward.v1.KeyService/CreateKey";
const UPDATE_KEY: &str = "keyward.v1.KeyService/UpdateKey";
const SCHEDULE: &str = "keyward.v1.KeyService/ScheduleKeyDeletion";
const CANCEL: &str = "keyward.v1.KeyService/CancelKeyDeletion";
const DELETE_KEY: &str = "keyward.v1.KeyService/DeleteKey";
const DELETION_CHECK: &str = "keyward.worker/DeletionWindowCheck";
const SCHEDULED_SYNC: &str = "keyward.worker/ScheduledSync";

async fn try_events(audit: &mut Audit, filter: &str, page_size: i32) -> Result<Vec<pb::AuditEvent>, Status> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = audit
            .list_audit_events(pb::ListAuditEventsRequest { page_size, page_token: token, filter: filter.into() })
            .await?
            .into_inner();
        assert!(r.audit_events.len() <= page_size as usize, "page larger than asked");
        out.extend(r.audit_events);
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        token = r.next_page_token;
    }
}

/// Every event matching `filter`, following pages.
async fn events(audit: &mut Audit, filter: &str) -> Vec<pb::AuditEvent> {
    try_events(audit, filter, 1000).await.unwrap_or_else(|e| panic!("list {filter:?}: {e:?}"))
}

async fn last_seq(audit: &mut Audit) -> i64 {
    events(audit, "").await.last().map_or(0, |e| e.seq)
}

/// The events appended after `*seq`; moves `*seq` to the last one.
async fn new_events(audit: &mut Audit, seq: &mut i64) -> Vec<pb::AuditEvent> {
    let all = events(audit, "").await;
    let new: Vec<pb::AuditEvent> = all.into_iter().filter(|e| e.seq > *seq).collect();
    if let Some(last) = new.last() {
        *seq = last.seq;
    }
    new
}

/// Exactly one event appended after `*seq`: returns it.
async fn one_event(audit: &mut Audit, seq: &mut i64, what: &str) -> pb::AuditEvent {
    let mut new = new_events(audit, seq).await;
    assert_eq!(new.len(), 1, "{what}: exactly one event, got {new:#?}");
    new.pop().expect("one")
}

async fn no_event(audit: &mut Audit, seq: &mut i64, what: &str) {
    let new = new_events(audit, seq).await;
    assert!(new.is_empty(), "{what}: no event, got {new:#?}");
}

fn check(e: &pb::AuditEvent, action: &str, resource: &str, outcome: &str) {
    assert_eq!((e.action.as_str(), e.resource.as_str(), e.outcome.as_str()), (action, resource, outcome), "{e:#?}");
}

async fn verify(audit: &mut Audit) -> pb::VerifyAuditChainResponse {
    audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.expect("verify").into_inner()
}

/// A request authenticated by `token`, with a request id.
fn as_caller<T>(msg: T, token: &str, request_id: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert("authorization", format!("Bearer {token}").parse().expect("ascii"));
    r.metadata_mut().insert("x-request-id", request_id.parse().expect("ascii"));
    r
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("format")
}

fn seqs(v: &[pb::AuditEvent]) -> Vec<i64> {
    v.iter().map(|e| e.seq).collect()
}

#[tokio::test]
async fn every_mutating_call_leaves_exactly_one_event_and_reads_none() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();
    let mut seq = 0;
    let admin = app.admin_name().await;
    let e = one_event(&mut audit, &mut seq, "fresh log: the bootstrap admin only").await;
    assert_eq!((e.action.as_str(), e.resource.as_str()), ("keyward.admin/BootstrapAdmin", admin.as_str()));

    let g = app.create_aws_group("audited").await;
    let e = one_event(&mut audit, &mut seq, "CreateGroup").await;
    check(&e, CREATE_GROUP, &g.name, "OK");
    assert_eq!(e.actor, admin, "the actor is the authenticated principal");
    assert!(!e.request_id.is_empty(), "a request id is generated when none is sent");

    let mut patch = g.clone();
    patch.description = "changed".into();
    let g = app
        .groups
        .update_group(pb::UpdateGroupRequest { group: Some(patch), update_mask: mask(&["description"]) })
        .await
        .expect("update group")
        .into_inner();
    check(&one_event(&mut audit, &mut seq, "UpdateGroup").await, UPDATE_GROUP, &g.name, "OK");

    let saved = pb::TestConnectionRequest { target: Some(pb::test_connection_request::Target::Name(g.name.clone())) };
    app.groups.test_connection(saved).await.expect("test saved");
    check(&one_event(&mut audit, &mut seq, "TestConnection").await, TEST_CONNECTION, &g.name, "OK");

    let run = app.sync(&g.name).await;
    check(&one_event(&mut audit, &mut seq, "SyncKeys").await, SYNC_KEYS, &run.name, "OK");
    assert!(run.name.starts_with(&format!("{}/syncRuns/", g.name)));

    let k = app.create_sym_key(&g.name, "audited-key").await;
    let e = one_event(&mut audit, &mut seq, "CreateKey").await;
    check(&e, CREATE_KEY, &k.name, "OK");

    // Reads leave nothing.
    app.groups.get_group(pb::GetGroupRequest { name: g.name.clone() }).await.expect("get group");
    app.groups.list_groups(pb::ListGroupsRequest::default()).await.expect("list groups");
    app.keys.get_key(pb::GetKeyRequest { name: k.name.clone() }).await.expect("get key");
    app.all_keys(&g.name, "").await;
    app.all_keys("groups/-", "state = ENABLED").await;
    app.groups.get_sync_run(pb::GetSyncRunRequest { name: run.name.clone() }).await.expect("get run");
    app.groups
        .list_sync_runs(pb::ListSyncRunsRequest { parent: g.name.clone(), ..Default::default() })
        .await
        .expect("list runs");
    let unsaved =
        pb::TestConnectionRequest { target: Some(pb::test_connection_request::Target::AwsKms(app.aws_kms_config())) };
    app.groups.test_connection(unsaved).await.expect("test unsaved");
    verify(&mut audit).await;
    let missing = format!("{}/keys/{}", g.name, uuid::Uuid::now_v7());
    app.keys.get_key(pb::GetKeyRequest { name: missing }).await.expect_err("a failed read");
    no_event(&mut audit, &mut seq, "reads").await;

    let mut patch = k.clone();
    patch.description = "changed".into();
    patch.etag.clear();
    app.keys
        .update_key(pb::UpdateKeyRequest {
            key: Some(patch),
            update_mask: mask(&["description"]),
            remove_aliases: vec![],
        })
        .await
        .expect("update key");
    check(&one_event(&mut audit, &mut seq, "UpdateKey").await, UPDATE_KEY, &k.name, "OK");

    let schedule =
        pb::ScheduleKeyDeletionRequest { name: k.name.clone(), pending_window_days: 7, validate_only: false };
    app.keys.schedule_key_deletion(schedule.clone()).await.expect("schedule");
    let e = one_event(&mut audit, &mut seq, "ScheduleKeyDeletion").await;
    check(&e, SCHEDULE, &k.name, "OK");
    assert!(e.detail.contains('7'), "{e:?}");

    app.keys.cancel_key_deletion(pb::CancelKeyDeletionRequest { name: k.name.clone() }).await.expect("cancel");
    check(&one_event(&mut audit, &mut seq, "CancelKeyDeletion").await, CANCEL, &k.name, "OK");

    let now = OffsetDateTime::now_utc();
    app.keys.schedule_key_deletion(schedule).await.expect("schedule again");
    check(&one_event(&mut audit, &mut seq, "ScheduleKeyDeletion again").await, SCHEDULE, &k.name, "OK");

    // The worker's early pass does nothing and records nothing; the due one records the change.
    app.not_found_in_aws(&k.aws.as_ref().expect("aws").aws_key_id);
    deletion_check::run_once(&app.keyward, now + Duration::from_secs(86_400)).await.expect("early pass");
    no_event(&mut audit, &mut seq, "deletion check inside the window").await;
    let r = deletion_check::run_once(&app.keyward, now + Duration::from_secs(8 * 86_400)).await.expect("due pass");
    assert_eq!(r.deleted.len(), 1, "{r:?}");
    let e = one_event(&mut audit, &mut seq, "deletion check").await;
    check(&e, DELETION_CHECK, &k.name, "OK");
    assert_eq!(e.actor, "worker");
    app.faults.clear();

    app.keys.delete_key(pb::DeleteKeyRequest { name: k.name.clone() }).await.expect("delete key");
    check(&one_event(&mut audit, &mut seq, "DeleteKey").await, DELETE_KEY, &k.name, "OK");

    app.groups.delete_group(pb::DeleteGroupRequest { name: g.name.clone(), force: false }).await.expect("delete group");
    check(&one_event(&mut audit, &mut seq, "DeleteGroup").await, DELETE_GROUP, &g.name, "OK");

    let v = verify(&mut audit).await;
    assert!(v.ok, "{v:?}");
    assert_eq!(v.checked, seq);
    let all = events(&mut audit, "").await;
    assert_eq!(seqs(&all), (1..=seq).collect::<Vec<_>>(), "seqs 1, 2, 3 … with no gap");
    assert_eq!(all[0].prev_hash, "0".repeat(64));
    for w in all.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash, "chained");
    }
    for e in &all {
        assert!(e.name.starts_with("auditEvents/") && uuid::Uuid::parse_str(&e.name[12..]).is_ok(), "{e:?}");
        assert_eq!(e.hash.len(), 64, "{e:?}");
        assert!(e.create_time.is_some(), "{e:?}");
    }
}

#[tokio::test]
async fn refusals_leave_one_event_whose_outcome_is_the_code_name() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();
    let g = app.create_aws_group("refusals").await;
    let k = app.create_sym_key(&g.name, "k").await;
    let mut seq = last_seq(&mut audit).await;

    let e = app
        .groups
        .create_group(pb::CreateGroupRequest {
            group: Some(pb::Group { display_name: "no kind".into(), ..Default::default() }),
        })
        .await
        .map(|_| ())
        .expect_err("no kind");
    let ev = one_event(&mut audit, &mut seq, "CreateGroup refused").await;
    check(&ev, CREATE_GROUP, "groups", "INVALID_ARGUMENT");
    assert_eq!(ev.detail, e.message(), "the detail is the message the caller saw");

    let e = app.try_create_aws_group("refusals").await.expect_err("name taken");
    assert_eq!(e.code(), Code::AlreadyExists);
    check(&one_event(&mut audit, &mut seq, "CreateGroup taken").await, CREATE_GROUP, "groups", "ALREADY_EXISTS");

    let mut stale = g.clone();
    stale.etag = "stale".into();
    let e = app
        .groups
        .update_group(pb::UpdateGroupRequest { group: Some(stale), update_mask: mask(&["description"]) })
        .await
        .expect_err("stale etag");
    assert_eq!(e.code(), Code::Aborted);
    check(&one_event(&mut audit, &mut seq, "UpdateGroup stale").await, UPDATE_GROUP, &g.name, "ABORTED");

    let missing_group = format!("groups/{}", uuid::Uuid::now_v7());
    let e = app
        .groups
        .test_connection(pb::TestConnectionRequest {
            target: Some(pb::test_connection_request::Target::Name(missing_group.clone())),
        })
        .await
        .expect_err("no such group");
    assert_eq!(e.code(), Code::NotFound);
    check(
        &one_event(&mut audit, &mut seq, "TestConnection missing").await,
        TEST_CONNECTION,
        &missing_group,
        "NOT_FOUND",
    );

    app.faults.inject(Fault::Fail {
        op: "list_keys",
        key: None,
        error: KmsError::AccessDenied("not authorized to perform kms:ListKeys".into()),
        times: None,
    });
    let e = app
        .groups
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), ..Default::default() })
        .await
        .expect_err("denied");
    assert_eq!(e.code(), Code::PermissionDenied);
    app.faults.clear();
    check(&one_event(&mut audit, &mut seq, "SyncKeys denied").await, SYNC_KEYS, &g.name, "PERMISSION_DENIED");

    let mut bad = sym_key("bad");
    bad.key_spec = pb::KeySpec::Rsa2048 as i32;
    bad.key_ops = vec![pb::KeyOperation::Encrypt as i32, pb::KeyOperation::Sign as i32];
    let e = app
        .keys
        .create_key(pb::CreateKeyRequest { parent: g.name.clone(), key: Some(bad) })
        .await
        .expect_err("mixed usage");
    let ev = one_event(&mut audit, &mut seq, "CreateKey refused").await;
    check(&ev, CREATE_KEY, &g.name, "INVALID_ARGUMENT");
    assert_eq!(ev.detail, e.message());

    let e = app
        .keys
        .update_key(pb::UpdateKeyRequest {
            key: Some(k.clone()),
            update_mask: mask(&["color"]),
            remove_aliases: vec![],
        })
        .await
        .expect_err("unknown path");
    assert_eq!(e.code(), Code::InvalidArgument);
    check(&one_event(&mut audit, &mut seq, "UpdateKey refused").await, UPDATE_KEY, &k.name, "INVALID_ARGUMENT");

    let e = app
        .keys
        .schedule_key_deletion(pb::ScheduleKeyDeletionRequest {
            name: k.name.clone(),
            pending_window_days: 6,
            validate_only: false,
        })
        .await
        .expect_err("6 days");
    assert_eq!(e.code(), Code::InvalidArgument);
    check(&one_event(&mut audit, &mut seq, "Schedule 6 days").await, SCHEDULE, &k.name, "INVALID_ARGUMENT");

    let e = app.keys.cancel_key_deletion(pb::CancelKeyDeletionRequest { name: k.name.clone() }).await.expect_err("x");
    assert_eq!(e.code(), Code::FailedPrecondition);
    let ev = one_event(&mut audit, &mut seq, "Cancel not pending").await;
    check(&ev, CANCEL, &k.name, "FAILED_PRECONDITION");
    assert_eq!(ev.detail, e.message());

    let e = app.keys.delete_key(pb::DeleteKeyRequest { name: k.name.clone() }).await.expect_err("enabled");
    assert_eq!(e.code(), Code::FailedPrecondition);
    check(&one_event(&mut audit, &mut seq, "DeleteKey enabled").await, DELETE_KEY, &k.name, "FAILED_PRECONDITION");

    let e = app
        .groups
        .delete_group(pb::DeleteGroupRequest { name: g.name.clone(), force: false })
        .await
        .expect_err("has keys");
    assert_eq!(e.code(), Code::FailedPrecondition);
    check(
        &one_event(&mut audit, &mut seq, "DeleteGroup non-empty").await,
        DELETE_GROUP,
        &g.name,
        "FAILED_PRECONDITION",
    );

    let e = app.keys.delete_key(pb::DeleteKeyRequest { name: "keys/nope".into() }).await.expect_err("bad name");
    assert_eq!(e.code(), Code::InvalidArgument);
    check(&one_event(&mut audit, &mut seq, "DeleteKey bad name").await, DELETE_KEY, "keys/nope", "INVALID_ARGUMENT");

    assert!(verify(&mut audit).await.ok);
}

/// A refusal's audit resource is the canonical name.
#[tokio::test]
async fn a_refused_delete_with_a_non_canonical_name_is_audited_under_the_canonical_one() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();
    let g = app.regular_group("vault").await;
    let k = app.create_key(&g.name, "enabled", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt]).await;
    let (gid, kid) = (g.name.trim_start_matches("groups/"), &k.key_id);
    let odd = format!("groups/{}/keys/{}", gid.to_uppercase(), kid.replace('-', ""));
    assert_ne!(odd, k.name);
    let err = app.delete_key(&odd).await.expect_err("enabled");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    let found = audit
        .list_audit_events(pb::ListAuditEventsRequest {
            page_size: 100,
            page_token: String::new(),
            filter: format!("resource = \"{}\"", k.name),
        })
        .await
        .expect("list")
        .into_inner()
        .audit_events;
    let deletes: Vec<&pb::AuditEvent> = found.iter().filter(|e| e.action.ends_with("/DeleteKey")).collect();
    assert_eq!(deletes.len(), 1, "{found:#?}");
    assert_eq!(deletes[0].outcome, "FAILED_PRECONDITION");
}

#[tokio::test]
async fn actor_is_the_authenticated_principal_request_id_comes_from_metadata_and_jobs_act_as_worker() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();
    let admin = [pb::AccountRole::Admin];
    let (alice_p, alice) = app.principal_with("alice", &admin, &[]).await;
    let (bob_p, bob) = app.principal_with("bob", &admin, &[]).await;
    let (carol_p, carol) = app.principal_with("carol", &admin, &[]).await;
    let (alice_p, bob_p, carol_p) = (alice_p.name, bob_p.name, carol_p.name);
    let mut seq = last_seq(&mut audit).await;

    let group = pb::Group { sync_schedule: interval(300), ..aws_group("by-alice", app.aws_kms_config()) };
    let g = app
        .groups
        .create_group(as_caller(pb::CreateGroupRequest { group: Some(group) }, &alice, "req-alice-1"))
        .await
        .expect("create")
        .into_inner();
    let e = one_event(&mut audit, &mut seq, "CreateGroup as alice").await;
    check(&e, CREATE_GROUP, &g.name, "OK");
    assert_eq!((e.actor.as_str(), e.request_id.as_str()), (alice_p.as_str(), "req-alice-1"));

    let k = app
        .keys
        .create_key(as_caller(
            pb::CreateKeyRequest { parent: g.name.clone(), key: Some(sym_key("bobs")) },
            &bob,
            "req-bob-1",
        ))
        .await
        .expect("create key")
        .into_inner();
    assert_eq!(k.created_by, bob_p);
    let e = one_event(&mut audit, &mut seq, "CreateKey as bob").await;
    assert_eq!((e.actor.as_str(), e.request_id.as_str()), (bob_p.as_str(), "req-bob-1"));

    // A refusal carries the caller too.
    let err = app
        .keys
        .delete_key(as_caller(pb::DeleteKeyRequest { name: k.name.clone() }, &carol, "req-carol-1"))
        .await
        .expect_err("enabled");
    assert_eq!(err.code(), Code::FailedPrecondition);
    let e = one_event(&mut audit, &mut seq, "DeleteKey as carol").await;
    check(&e, DELETE_KEY, &k.name, "FAILED_PRECONDITION");
    assert_eq!((e.actor.as_str(), e.request_id.as_str()), (carol_p.as_str(), "req-carol-1"));

    // No request id: a fresh one each time; the actor is still the caller (the harness's admin).
    let harness_admin = app.admin_name().await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        app.groups
            .test_connection(pb::TestConnectionRequest {
                target: Some(pb::test_connection_request::Target::Name(g.name.clone())),
            })
            .await
            .expect("test");
        let e = one_event(&mut audit, &mut seq, "no request id").await;
        assert_eq!(e.actor, harness_admin);
        assert!(!e.request_id.is_empty());
        ids.push(e.request_id);
    }
    assert_ne!(ids[0], ids[1], "request ids are per request");

    // The worker's scheduled sync (and its failure) act as `worker`.
    let now = OffsetDateTime::now_utc();
    let r = scheduled_sync::run_once(&app.keyward, now + Duration::from_secs(360)).await.expect("scheduled pass");
    assert_eq!(r.synced.len(), 1, "{r:?}");
    let e = one_event(&mut audit, &mut seq, "scheduled sync").await;
    assert_eq!((e.actor.as_str(), e.action.as_str(), e.outcome.as_str()), ("worker", SCHEDULED_SYNC, "OK"));
    assert!(e.resource.starts_with(&format!("{}/syncRuns/", g.name)), "{e:?}");

    app.faults.inject(Fault::Fail {
        op: "list_keys",
        key: None,
        error: KmsError::AccessDenied("not authorized to perform kms:ListKeys".into()),
        times: None,
    });
    let r = scheduled_sync::run_once(&app.keyward, now + Duration::from_secs(720)).await.expect("failing pass");
    assert_eq!(r.failed.len(), 1, "{r:?}");
    let e = one_event(&mut audit, &mut seq, "failed scheduled sync").await;
    assert_eq!((e.actor.as_str(), e.action.as_str()), ("worker", SCHEDULED_SYNC));
    check(&e, SCHEDULED_SYNC, &g.name, "PERMISSION_DENIED");
    app.faults.clear();

    // The deletion-window check acts as `worker` as well.
    let sched = pb::ScheduleKeyDeletionRequest { name: k.name.clone(), pending_window_days: 7, validate_only: false };
    app.keys.schedule_key_deletion(as_caller(sched, &alice, "req-alice-2")).await.expect("schedule");
    let e = one_event(&mut audit, &mut seq, "schedule as alice").await;
    assert_eq!((e.actor.as_str(), e.request_id.as_str()), (alice_p.as_str(), "req-alice-2"));
    app.not_found_in_aws(&k.aws.as_ref().expect("aws").aws_key_id);
    deletion_check::run_once(&app.keyward, now + Duration::from_secs(8 * 86_400)).await.expect("check");
    let e = one_event(&mut audit, &mut seq, "deletion check").await;
    check(&e, DELETION_CHECK, &k.name, "OK");
    assert_eq!(e.actor, "worker");
}

#[tokio::test]
async fn list_filters_by_resource_and_time_and_pages() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();

    // Phase A: two groups.
    let g1 = app.create_aws_group("one").await;
    let g2 = app.create_aws_group("two").await;
    // The server's clock moves a second on, t1 is taken, and it moves on again: no event of
    // phase A is at or after t1, none of phase B before it.
    app.clock.advance(Duration::from_secs(1));
    let mut t1 = app.clock.now();
    if t1.nanosecond() == 0 {
        t1 += Duration::from_nanos(1);
    }
    app.clock.advance(Duration::from_secs(1));

    // Phase B: keys and a sync in g1, a key in g2.
    let k1 = app.create_sym_key(&g1.name, "k1").await;
    let mut patch = k1.clone();
    patch.etag.clear();
    patch.description = "d".into();
    app.keys
        .update_key(pb::UpdateKeyRequest {
            key: Some(patch),
            update_mask: mask(&["description"]),
            remove_aliases: vec![],
        })
        .await
        .expect("update");
    let run = app.sync(&g1.name).await;
    let k2 = app.create_sym_key(&g2.name, "k2").await;
    app.clock.advance(Duration::from_secs(1));
    let mut t2 = app.clock.now();
    if t2.nanosecond() == 0 {
        t2 += Duration::from_nanos(1);
    }
    app.clock.advance(Duration::from_secs(1));

    // Phase C: the groups change.
    for g in [&g1, &g2] {
        let mut p = g.clone();
        p.description = "c".into();
        app.groups
            .update_group(pb::UpdateGroupRequest { group: Some(p), update_mask: mask(&["description"]) })
            .await
            .expect("update group");
    }

    // Seq 1 is the bootstrap admin, made when the test's server started (before phase A).
    let all = events(&mut audit, "").await;
    assert_eq!(all.len(), 9, "{all:#?}");

    // Exact resource: the group itself, never what is under it.
    let exact = events(&mut audit, &format!("resource = \"{}\"", g1.name)).await;
    assert_eq!(exact.iter().map(|e| e.action.as_str()).collect::<Vec<_>>(), vec![CREATE_GROUP, UPDATE_GROUP]);
    assert!(exact.iter().all(|e| e.resource == g1.name), "{exact:#?}");

    // Under it: its keys and sync runs, never the group itself nor another group's.
    let under = events(&mut audit, &format!("resource = \"{}/*\"", g1.name)).await;
    let got: Vec<(&str, &str)> = under.iter().map(|e| (e.action.as_str(), e.resource.as_str())).collect();
    assert_eq!(
        got,
        vec![(CREATE_KEY, k1.name.as_str()), (UPDATE_KEY, k1.name.as_str()), (SYNC_KEYS, run.name.as_str())]
    );
    let under2 = events(&mut audit, &format!("resource = \"{}/*\"", g2.name)).await;
    assert_eq!(under2.iter().map(|e| e.resource.as_str()).collect::<Vec<_>>(), vec![k2.name.as_str()]);
    let key_only = events(&mut audit, &format!("resource = \"{}\"", k1.name)).await;
    assert_eq!(key_only.len(), 2);

    // Time: [t1, t2) is phase B.
    let (s1, s2) = (rfc3339(t1), rfc3339(t2));
    let b = events(&mut audit, &format!("create_time >= \"{s1}\" AND create_time < \"{s2}\"")).await;
    assert_eq!(seqs(&b), vec![4, 5, 6, 7], "phase B: {b:#?}");
    assert_eq!(seqs(&events(&mut audit, &format!("create_time < \"{s1}\"")).await), vec![1, 2, 3]);
    assert_eq!(seqs(&events(&mut audit, &format!("create_time >= \"{s2}\"")).await), vec![8, 9]);
    let both = events(&mut audit, &format!("resource = \"{}/*\" AND create_time >= \"{s1}\"", g2.name)).await;
    assert_eq!(seqs(&both), vec![7]);
    for e in &b {
        let t = e.create_time.expect("time");
        let t = OffsetDateTime::from_unix_timestamp(t.seconds).expect("ts") + Duration::from_nanos(t.nanos as u64);
        assert!(t1 <= t && t < t2, "{e:?}");
    }

    // Paging: small pages give the same events in order, none twice.
    for size in [1, 3, 8] {
        let paged = try_events(&mut audit, "", size).await.expect("paged");
        assert_eq!(paged, all, "page size {size}");
    }
    let paged = try_events(&mut audit, &format!("resource = \"{}/*\"", g1.name), 2).await.expect("paged filter");
    assert_eq!(paged, under);
    let first = audit
        .list_audit_events(pb::ListAuditEventsRequest { page_size: 3, ..Default::default() })
        .await
        .expect("page")
        .into_inner();
    assert_eq!(seqs(&first.audit_events), vec![1, 2, 3]);
    assert!(!first.next_page_token.is_empty());

    // Bad requests.
    for (what, req) in [
        ("unknown field", pb::ListAuditEventsRequest { filter: "actor = \"alice\"".into(), ..Default::default() }),
        (
            "bad time",
            pb::ListAuditEventsRequest { filter: "create_time >= \"yesterday\"".into(), ..Default::default() },
        ),
        ("no operator", pb::ListAuditEventsRequest { filter: "resource".into(), ..Default::default() }),
        ("bad token", pb::ListAuditEventsRequest { page_token: "garbage".into(), ..Default::default() }),
        ("negative size", pb::ListAuditEventsRequest { page_size: -1, ..Default::default() }),
    ] {
        let e = audit.list_audit_events(req).await.expect_err(what);
        assert_eq!(e.code(), Code::InvalidArgument, "{what}: {e:?}");
    }
}

/// A time filter whose bound falls on a whole second, or is written with another UTC offset,
/// means the same instant: `create_time >= T` holds every event at or after T.
#[tokio::test]
async fn time_filter_compares_instants_at_whole_seconds_and_any_offset() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();
    app.create_aws_group("before").await;
    // The next whole second of the server's clock, then an event just after it.
    let now = app.clock.now();
    let boundary = now.replace_nanosecond(0).expect("ns") + Duration::from_secs(1);
    app.clock.advance((boundary - now).unsigned_abs() + Duration::from_millis(50));
    app.create_aws_group("after").await;
    let all = events(&mut audit, "").await;
    assert_eq!(all.len(), 3, "the bootstrap admin, then the two groups");

    let plus2 = boundary.to_offset(time::macros::offset!(+2));
    let minus5 = boundary.to_offset(time::macros::offset!(-5));
    let mut wrong = Vec::new();
    for bound in [rfc3339(boundary), rfc3339(plus2), rfc3339(minus5)] {
        for (filter, want) in
            [(format!("create_time >= \"{bound}\""), vec![3]), (format!("create_time < \"{bound}\""), vec![1, 2])]
        {
            let got = seqs(&events(&mut audit, &filter).await);
            if got != want {
                wrong.push(format!("{filter}: got seqs {got:?}, want {want:?}"));
            }
        }
    }
    let times: Vec<String> = all.iter().map(|e| format!("{:?}", e.create_time)).collect();
    assert!(wrong.is_empty(), "event times {times:?}:\n{}", wrong.join("\n"));
}

/// `resource = "X/*"` is a literal prefix: `%` and `_` in it are not wildcards and case matters.
#[tokio::test]
async fn resource_prefix_filter_is_literal() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();
    let g = app.create_aws_group("literal").await;
    app.create_sym_key(&g.name, "k").await;
    assert_eq!(events(&mut audit, &format!("resource = \"{}/*\"", g.name)).await.len(), 1);

    let underscores: String = g.name.chars().map(|c| if c == '-' || c == '/' { c } else { '_' }).collect();
    let mut wrong = Vec::new();
    for (what, prefix) in [
        ("percent", "groups/%".to_owned()),
        ("underscores", underscores),
        ("upper case", g.name.to_uppercase().replace("GROUPS/", "groups/")),
    ] {
        let got = events(&mut audit, &format!("resource = \"{prefix}/*\"")).await;
        if !got.is_empty() {
            let resources: Vec<&str> = got.iter().map(|e| e.resource.as_str()).collect();
            wrong.push(format!("{what}: {prefix}/* matched {resources:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Five events after the bootstrap admin's (seq 1).
async fn five_events(app: &mut TestApp) -> pb::Group {
    let g = app.create_aws_group("chained").await;
    let mut g = g;
    for i in 0..4 {
        let mut p = g.clone();
        p.description = format!("edit {i}");
        g = app
            .groups
            .update_group(pb::UpdateGroupRequest { group: Some(p), update_mask: mask(&["description"]) })
            .await
            .expect("update")
            .into_inner();
    }
    g
}

#[tokio::test]
async fn verify_chain_is_ok_untouched_and_finds_a_tampered_event() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();
    let v = verify(&mut audit).await;
    assert!(v.ok && v.checked == 1, "a fresh log holds the bootstrap admin's event: {v:?}");
    five_events(&mut app).await;
    let v = verify(&mut audit).await;
    assert_eq!((v.ok, v.checked, v.first_broken_seq), (true, 6, 0), "{v:?}");

    let all = events(&mut audit, "").await;
    let third = all[2].clone();
    app.exec_sql("UPDATE audit_events SET detail = 'x' WHERE seq = 3").await;
    let v = verify(&mut audit).await;
    assert!(!v.ok, "{v:?}");
    assert_eq!((v.first_broken_seq, v.checked), (3, 2), "{v:?}");
    assert_eq!(v.first_broken_event, third.name);
    assert!(!v.reason.is_empty());

    // Put the text back: the chain holds again.
    app.exec_sql(&format!("UPDATE audit_events SET detail = '{}' WHERE seq = 3", third.detail.replace('\'', "''")))
        .await;
    let v = verify(&mut audit).await;
    assert_eq!((v.ok, v.checked), (true, 6), "{v:?}");

    // Any field counts, the actor too.
    app.exec_sql("UPDATE audit_events SET actor = 'mallory' WHERE seq = 1").await;
    let v = verify(&mut audit).await;
    assert_eq!((v.ok, v.first_broken_seq, v.checked), (false, 1, 0), "{v:?}");
}

#[tokio::test]
async fn verify_chain_finds_a_deleted_middle_event() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();
    five_events(&mut app).await;
    app.exec_sql("DELETE FROM audit_events WHERE seq = 3").await;
    let v = verify(&mut audit).await;
    assert!(!v.ok, "{v:?}");
    assert_eq!(v.checked, 2, "events 1 (the bootstrap admin) and 2 hold: {v:?}");
    assert_eq!(v.first_broken_seq, 3, "the chain breaks at the removed event: {v:?}");
    assert!(!v.reason.is_empty());
}

#[tokio::test]
async fn verify_chain_finds_a_deleted_last_event() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();
    five_events(&mut app).await;
    app.exec_sql("DELETE FROM audit_events WHERE seq = 5").await;
    let v = verify(&mut audit).await;
    assert!(!v.ok, "the head names six events: {v:?}");
    assert_eq!((v.checked, v.first_broken_seq), (4, 5), "{v:?}");
    assert!(!v.reason.is_empty());
}

/// The audit event's stored time is covered by the chain.
#[tokio::test]
async fn verify_chain_finds_a_changed_event_time() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();
    let mut g = app.regular_group("timed").await;
    for i in 0..2 {
        let mut p = g.clone();
        p.description = format!("edit {i}");
        g = app
            .groups
            .update_group(pb::UpdateGroupRequest { group: Some(p), update_mask: mask(&["description"]) })
            .await
            .expect("update")
            .into_inner();
    }
    let v = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.expect("verify").into_inner();
    assert_eq!((v.ok, v.checked), (true, 4), "{v:?}");
    app.exec_sql("UPDATE audit_events SET created_at_ms = 0 WHERE seq = 2").await;
    let v = audit.verify_audit_chain(pb::VerifyAuditChainRequest {}).await.expect("verify").into_inner();
    assert_eq!((v.ok, v.first_broken_seq, v.checked), (false, 2, 1), "{v:?}");
    assert!(!v.reason.is_empty());
}

#[tokio::test]
async fn no_event_holds_a_secret() {
    let mut app = TestApp::spawn().await;
    let mut audit = app.audit_client();
    let secret1 = app.secret_access_key.clone();
    let secret2 = format!("kwsecret2-{}", uuid::Uuid::new_v4().simple());
    let pem_body = format!("MC4CAQAwBQYDK2VwBCIEI{}", uuid::Uuid::new_v4().simple());
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{pem_body}\n-----END PRIVATE KEY-----\n");
    let pem2_body = format!("MC4CAQAwBQYDK2VwBCIEI{}", uuid::Uuid::new_v4().simple());
    let pem2 = format!("-----BEGIN PRIVATE KEY-----\n{pem2_body}\n-----END PRIVATE KEY-----\n");

    let plain = app.create_aws_group("plain").await;
    let mut cfg = app.aws_kms_config();
    cfg.client_private_key_pem = pem.clone();
    let mtls = app.create_group(aws_group("mtls", cfg.clone())).await.expect("create");

    // Refused requests that carry the secrets.
    let mut bad = cfg.clone();
    bad.region = "mars-north-1x".into();
    let refused = [
        aws_group("bad region", bad.clone()),
        aws_group("mtls", cfg.clone()),
        pb::Group {
            display_name: "regular with aws".into(),
            kind: pb::GroupKind::Regular as i32,
            aws_kms: Some(cfg.clone()),
            ..Default::default()
        },
    ];
    for g in refused {
        app.groups.create_group(pb::CreateGroupRequest { group: Some(g) }).await.expect_err("refused");
    }
    for paths in [vec!["aws_kms.secret_access_key", "bogus"], vec!["aws_kms"], vec!["aws_kms.client_private_key_pem"]] {
        let mut p = mtls.clone();
        p.etag = if paths == ["aws_kms"] { "stale".into() } else { String::new() };
        p.aws_kms = Some(pb::AwsKmsConfig {
            secret_access_key: secret2.clone(),
            client_private_key_pem: pem2.clone(),
            region: bad.region.clone(),
            ..cfg.clone()
        });
        let _ = app.groups.update_group(pb::UpdateGroupRequest { group: Some(p), update_mask: mask(&paths) }).await;
    }

    // Accepted changes of the secrets, and connection tests with them.
    let mut p = mtls.clone();
    p.etag.clear();
    p.aws_kms = Some(pb::AwsKmsConfig {
        secret_access_key: secret2.clone(),
        client_private_key_pem: "not a pem".into(),
        ..cfg.clone()
    });
    app.groups
        .update_group(pb::UpdateGroupRequest {
            group: Some(p),
            update_mask: mask(&["aws_kms.secret_access_key", "aws_kms.client_private_key_pem"]),
        })
        .await
        .expect("update secrets");
    for g in [&plain, &mtls] {
        app.groups
            .test_connection(pb::TestConnectionRequest {
                target: Some(pb::test_connection_request::Target::Name(g.name.clone())),
            })
            .await
            .expect("test");
    }
    let _ = app.groups.sync_keys(pb::SyncKeysRequest { name: mtls.name.clone(), ..Default::default() }).await;
    app.groups
        .test_connection(pb::TestConnectionRequest {
            target: Some(pb::test_connection_request::Target::AwsKms(cfg.clone())),
        })
        .await
        .expect("unsaved");

    // The key lifecycle in the plain group.
    app.aws.create_key().send().await.expect("seed");
    app.sync(&plain.name).await;
    let k = app.create_sym_key(&plain.name, "k").await;
    let mut patch = k.clone();
    patch.etag.clear();
    patch.description = "d".into();
    app.keys
        .update_key(pb::UpdateKeyRequest {
            key: Some(patch),
            update_mask: mask(&["description"]),
            remove_aliases: vec![],
        })
        .await
        .expect("update key");
    let sched = pb::ScheduleKeyDeletionRequest { name: k.name.clone(), pending_window_days: 7, validate_only: false };
    app.keys.schedule_key_deletion(sched.clone()).await.expect("schedule");
    app.keys.cancel_key_deletion(pb::CancelKeyDeletionRequest { name: k.name.clone() }).await.expect("cancel");
    let now = OffsetDateTime::now_utc();
    app.keys.schedule_key_deletion(sched).await.expect("schedule");
    app.keys.delete_key(pb::DeleteKeyRequest { name: k.name.clone() }).await.expect_err("pending");
    app.not_found_in_aws(&k.aws.as_ref().expect("aws").aws_key_id);
    deletion_check::run_once(&app.keyward, now + Duration::from_secs(8 * 86_400)).await.expect("check");
    app.keys.delete_key(pb::DeleteKeyRequest { name: k.name.clone() }).await.expect("delete");
    app.groups
        .delete_group(pb::DeleteGroupRequest { name: mtls.name.clone(), force: false })
        .await
        .expect("delete group");

    let all = events(&mut audit, "").await;
    assert!(all.len() >= 20, "{} events", all.len());
    for e in &all {
        let text = format!("{e:?}");
        for (what, secret) in [
            ("secret access key", secret1.as_str()),
            ("new secret access key", secret2.as_str()),
            ("client private key", pem_body.as_str()),
            ("refused client private key", pem2_body.as_str()),
            ("PEM armour", "PRIVATE KEY-----"),
        ] {
            assert!(!text.contains(secret), "event {} holds the {what}: {e:#?}", e.seq);
        }
    }
    assert!(verify(&mut audit).await.ok);
}
