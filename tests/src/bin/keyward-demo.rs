//! keyward-demo: the walk-through that `scripts/demo` runs against a live keyward-server and the
//! AWS KMS emulator. It seeds the emulator's account THROUGH THE AWS API with a realistic estate
//! (only while the account is empty, so a re-run does not seed twice), then drives Keyward over
//! gRPC: CreateGroup (or reuses the group), TestConnection, SyncKeys, ListKeys, CreateKey, RotateKey
//! and SyncKeys again, printing what each step did. Any step that does not do what it should ends the
//! program with a non-zero status, so the demo doubles as a smoke check.
#![allow(clippy::print_stdout, reason = "a command-line walk-through: printing is its job")]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use aws_sdk_kms::error::DisplayErrorContext;
use aws_sdk_kms::types::{KeySpec, KeyUsageType, Tag};
use clap::Parser;
use futures::StreamExt;
use keyward_proto::v1 as pb;
use tonic::transport::Channel;
use tonic::{Code, Request, Response, Status};

/// Walks through Keyward's main job against a running server and a KMS emulator.
#[derive(Parser)]
#[command(about)]
struct Args {
    /// keyward-server's gRPC URL.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    server: String,
    /// The file holding the API token the demo calls with (the bootstrap admin's, which the
    /// server wrote there at its first start: KEYWARD_BOOTSTRAP_TOKEN_FILE).
    #[arg(long)]
    token_file: std::path::PathBuf,
    /// The KMS emulator's URL (LocalStack), e.g. `http://127.0.0.1:4566`.
    #[arg(long)]
    emulator: String,
    /// Access key id of the demo account. LocalStack takes a 12-digit access key id as the
    /// account id, so this fixed value is the demo's AWS account.
    #[arg(long, default_value = "000000000042")]
    access_key_id: String,
    /// Secret access key (the emulator accepts any).
    #[arg(long, default_value = "demo-secret-access-key")]
    secret_access_key: String,
    /// Keys to seed into an empty account (at least 120 for the full picture).
    #[arg(long, default_value_t = 132)]
    seed_keys: usize,
    /// Parallel AWS calls while seeding.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

/// `Bearer <token>`: the demo's credentials, read from `--token-file` at the start.
static AUTHORIZATION: std::sync::OnceLock<tonic::metadata::MetadataValue<tonic::metadata::Ascii>> =
    std::sync::OnceLock::new();

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let start = Instant::now();
    match run(&args).await {
        Ok(()) => println!("\nDemo passed in {:.0} s.", start.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("\nDEMO FAILED: {e:#}");
            std::process::exit(1);
        }
    }
}

async fn run(args: &Args) -> Result<()> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let token = std::fs::read_to_string(&args.token_file)
        .map_err(|e| anyhow!("the API token file {}: {e}", args.token_file.display()))?;
    let _ =
        AUTHORIZATION.set(format!("Bearer {}", token.trim()).parse().map_err(|_| anyhow!("the token is not ASCII"))?);
    let aws = keyward_tests::aws_client(&args.emulator, &args.access_key_id, &args.secret_access_key);
    let region = keyward_tests::REGION;

    // 1. The existing estate in AWS.
    step(1, &format!("AWS account {} in {region} at {} (through the AWS API)", args.access_key_id, args.emulator));
    let existing = aws_key_count(&aws).await?;
    let plan = seed_plan(args.seed_keys);
    let seeded_now = existing == 0;
    if seeded_now {
        let t = Instant::now();
        seed(&aws, &plan, args.concurrency.max(1)).await?;
        println!("   seeded {} keys in {:.0} s: {}", plan.len(), t.elapsed().as_secs_f64(), plan_summary(&plan));
    } else {
        println!("   the account already holds {existing} keys: not seeding again");
    }
    let aws_total = aws_key_count(&aws).await?;
    if seeded_now {
        ensure!(aws_total == plan.len(), "AWS lists {aws_total} keys after seeding {}", plan.len());
    }

    // 2. The group.
    let channel = connect(&args.server).await?;
    let mut groups = pb::group_service_client::GroupServiceClient::new(channel.clone());
    let mut keys = pb::key_service_client::KeyServiceClient::new(channel.clone());
    let display_name = format!("Demo AWS account {} ({region})", args.access_key_id);
    step(2, &format!("Group {display_name:?} over gRPC at {}", args.server));
    let aws_kms = pb::AwsKmsConfig {
        region: region.into(),
        endpoint_url: args.emulator.clone(),
        access_key_id: args.access_key_id.clone(),
        secret_access_key: args.secret_access_key.clone(),
        ..Default::default()
    };
    // The demo's group: by its name, or (renamed since) by the account and region it reaches.
    let ours = |g: &pb::Group| {
        g.display_name == display_name
            || g.aws_kms.as_ref().is_some_and(|a| a.access_key_id == args.access_key_id && a.region == region)
    };
    let group = match find_group(&mut groups, ours).await? {
        Some(g) if g.aws_kms.as_ref().is_some_and(|a| a.endpoint_url == args.emulator) => {
            println!("   CreateGroup skipped: {} already exists (re-run)", g.name);
            g
        }
        Some(g) => {
            let g = rpc(
                "UpdateGroup",
                groups
                    .update_group(req(pb::UpdateGroupRequest {
                        group: Some(pb::Group {
                            name: g.name.clone(),
                            etag: g.etag.clone(),
                            aws_kms: Some(aws_kms),
                            ..Default::default()
                        }),
                        update_mask: Some(prost_types::FieldMask {
                            paths: vec![
                                "aws_kms.endpoint_url".into(),
                                "aws_kms.access_key_id".into(),
                                "aws_kms.secret_access_key".into(),
                            ],
                        }),
                    }))
                    .await,
            )?;
            println!("   UpdateGroup: {} now points at {}", g.name, args.emulator);
            g
        }
        None => {
            let g = rpc(
                "CreateGroup",
                groups
                    .create_group(req(pb::CreateGroupRequest {
                        group: Some(pb::Group {
                            display_name: display_name.clone(),
                            description: "LocalStack KMS emulator, seeded by scripts/demo".into(),
                            kind: pb::GroupKind::AwsKms as i32,
                            aws_kms: Some(aws_kms),
                            sync_schedule: Some(pb::SyncSchedule {
                                interval: Some(prost_types::Duration { seconds: 300, nanos: 0 }),
                            }),
                            ..Default::default()
                        }),
                    }))
                    .await,
            )?;
            println!("   CreateGroup: {} (kind AWS_KMS, region {region}, synced by the worker every 5 min)", g.name);
            g
        }
    };
    let secret_set = group.aws_kms.as_ref().is_some_and(|a| a.secret_access_key_set && a.secret_access_key.is_empty());
    ensure!(secret_set, "the group should show secret_access_key_set and never the secret itself");

    // 3. TestConnection.
    step(3, "TestConnection");
    let status = rpc(
        "TestConnection",
        groups
            .test_connection(req(pb::TestConnectionRequest {
                target: Some(pb::test_connection_request::Target::Name(group.name.clone())),
            }))
            .await,
    )?;
    println!(
        "   {}: {}",
        enum_name(pb::ConnectionState::try_from(status.state).map(|s| s.as_str_name())),
        status.message
    );
    ensure!(
        status.state == pb::ConnectionState::Connected as i32,
        "TestConnection did not connect: {}",
        status.message
    );

    // 4. SyncKeys.
    step(4, "SyncKeys: every key AWS lists becomes a virtual key");
    let t = Instant::now();
    let run1 = sync(&mut groups, &group.name).await?;
    print_run(&run1, t.elapsed());
    check_run(&run1, aws_total)?;

    // 5. ListKeys.
    step(5, "ListKeys (pages of 50)");
    let (all, pages) = list_all(&mut keys, &group.name, "", 50).await?;
    println!("   {} keys in {pages} pages; a few of them:", all.len());
    print_table(&all);
    let by_state = count_by(&all, |k| enum_name(pb::KeyState::try_from(k.state).map(|s| s.as_str_name())));
    let by_spec = count_by(&all, |k| enum_name(pb::KeySpec::try_from(k.key_spec).map(|s| s.as_str_name())));
    println!("   by state: {}", fmt_counts(&by_state));
    println!("   by spec:  {}", fmt_counts(&by_spec));
    ensure!(all.len() == aws_total, "Keyward holds {} keys of the group; AWS lists {aws_total}", all.len());
    ensure!(all.iter().all(|k| k.r#virtual), "every key of an AWS_KMS group is virtual");
    if seeded_now {
        let want = |after: After| plan.iter().filter(|k| k.after == after).count();
        let got = |s: &str| by_state.get(s).copied().unwrap_or(0);
        ensure!(
            got("DISABLED") == want(After::Disable),
            "DISABLED: Keyward {}, seeded {}",
            got("DISABLED"),
            want(After::Disable)
        );
        let pending = plan.iter().filter(|k| matches!(k.after, After::ScheduleDeletion(_))).count();
        ensure!(
            got("PENDING_DELETION") == pending,
            "PENDING_DELETION: Keyward {}, seeded {pending}",
            got("PENDING_DELETION")
        );
        let aliased = all.iter().filter(|k| k.aws.as_ref().is_some_and(|a| !a.aliases.is_empty())).count();
        let want_aliased = plan.iter().filter(|k| !k.aliases.is_empty()).count();
        ensure!(aliased == want_aliased, "keys with aliases: Keyward {aliased}, seeded {want_aliased}");
    }
    for filter in ["state = DISABLED", "key_spec = RSA_2048 AND state = ENABLED"] {
        let (found, _) = list_all(&mut keys, &group.name, filter, 100).await?;
        println!("   filter {filter:?}: {} keys", found.len());
        let expected = all.iter().filter(|k| matches_filter(k, filter)).count();
        ensure!(found.len() == expected, "filter {filter:?} gave {} keys; the full list has {expected}", found.len());
    }

    // 6. CreateKey.
    let n = next_demo_number(&all);
    let alias = format!("alias/demo/payments-{n}");
    step(6, &format!("CreateKey: RSA_2048 SIGN/VERIFY with {alias}"));
    let created = rpc(
        "CreateKey",
        keys.create_key(req(pb::CreateKeyRequest {
            parent: group.name.clone(),
            key: Some(pb::Key {
                display_name: format!("payments-signing-{n}"),
                description: "Signs payment instructions (created by scripts/demo)".into(),
                key_spec: pb::KeySpec::Rsa2048 as i32,
                key_ops: vec![pb::KeyOperation::Sign as i32, pb::KeyOperation::Verify as i32],
                tags: [("team", "payments"), ("env", "demo"), ("cost-center", "cc-1010")]
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v.to_owned()))
                    .collect(),
                aws: Some(pb::AwsKeyDetails { aliases: vec![alias.clone()], ..Default::default() }),
                ..Default::default()
            }),
        }))
        .await,
    )?;
    let details = created.aws.clone().unwrap_or_default();
    println!("   {} ({})", created.name, created.display_name);
    println!(
        "   AWS: {} state {} usage {} aliases {:?}",
        details.key_arn, details.aws_key_state, details.key_usage, details.aliases
    );
    ensure!(created.state == pb::KeyState::Enabled as i32, "the new key is not ENABLED");
    ensure!(
        created.r#virtual && created.created_by.starts_with("principals/"),
        "the new key should be virtual and created by the demo's principal, not {:?}",
        created.created_by
    );
    ensure!(details.aliases == vec![alias.clone()], "the new key should carry {alias}, has {:?}", details.aliases);
    ensure!(details.key_usage == "SIGN_VERIFY", "AWS key usage is {:?}, not SIGN_VERIFY", details.key_usage);
    let in_aws = aws
        .describe_key()
        .key_id(&alias)
        .send()
        .await
        .map_err(|e| anyhow!("AWS DescribeKey {alias}: {}", DisplayErrorContext(&e)))?;
    let in_aws_arn = in_aws.key_metadata().map(|m| m.arn().unwrap_or_default().to_owned()).unwrap_or_default();
    ensure!(
        in_aws_arn == details.key_arn,
        "AWS resolves {alias} to {in_aws_arn:?}, Keyward recorded {}",
        details.key_arn
    );
    println!("   checked through the AWS API: {alias} → {in_aws_arn}");
    let fetched = rpc("GetKey", keys.get_key(req(pb::GetKeyRequest { name: created.name.clone() })).await)?;
    ensure!(fetched.name == created.name && fetched.etag == created.etag, "GetKey does not return the created key");

    // 7. RotateKey: a plan, then a new AWS key takes over the alias.
    step(7, &format!("RotateKey: a new AWS key takes over {alias}"));
    let rotate = pb::RotateKeyRequest { name: created.name.clone(), validate_only: true, ..Default::default() };
    let planned = rpc("RotateKey (plan)", keys.rotate_key(req(rotate.clone())).await)?;
    let plan = planned.plan.clone().unwrap_or_default();
    ensure!(!planned.executed, "validate_only executed the rotation");
    println!("   plan (nothing changed yet): {}", plan.aws_calls.join(" → "));
    let done = rpc("RotateKey", keys.rotate_key(req(pb::RotateKeyRequest { validate_only: false, ..rotate })).await)?;
    let new_key = done.key.clone().unwrap_or_default();
    let old_key = done.old_key.clone().unwrap_or_default();
    let new_arn = new_key.aws.as_ref().map(|a| a.key_arn.clone()).unwrap_or_default();
    for m in &done.moved_aliases {
        println!("   moved {}: {} → {}", m.alias, m.from_aws_key_id, m.to_aws_key_id);
    }
    println!(
        "   {} is now {:?}; {} took over {:?}",
        old_key.name, old_key.display_name, new_key.name, new_key.display_name
    );
    let resolved = aws
        .describe_key()
        .key_id(&alias)
        .send()
        .await
        .map_err(|e| anyhow!("AWS DescribeKey {alias}: {}", DisplayErrorContext(&e)))?;
    let resolved_arn = resolved.key_metadata().map(|m| m.arn().unwrap_or_default().to_owned()).unwrap_or_default();
    ensure!(
        resolved_arn == new_arn && new_arn != details.key_arn,
        "after the rotation AWS resolves {alias} to {resolved_arn:?}; the new key is {new_arn:?}"
    );
    ensure!(old_key.state == pb::KeyState::Enabled as i32, "the old key should stay ENABLED");
    ensure!(
        old_key.links.iter().any(|l| l.kind == pb::KeyLinkKind::RotatedTo as i32 && l.key == new_key.name),
        "the old key is not linked ROTATED_TO the new one"
    );
    println!("   checked through the AWS API: {alias} → {resolved_arn} (the old key stays ENABLED to decrypt)");

    // 8. SyncKeys again: nothing new.
    step(8, "SyncKeys again: the keys Keyward created are already known");
    let t = Instant::now();
    let run2 = sync(&mut groups, &group.name).await?;
    print_run(&run2, t.elapsed());
    check_run(&run2, aws_total + 2)?;
    ensure!(run2.added == 0, "the second sync added {} keys; expected 0", run2.added);
    let runs = rpc(
        "ListSyncRuns",
        groups
            .list_sync_runs(req(pb::ListSyncRunsRequest {
                parent: group.name.clone(),
                page_size: 10,
                ..Default::default()
            }))
            .await,
    )?;
    ensure!(runs.sync_runs.iter().any(|r| r.name == run2.name), "ListSyncRuns does not show {}", run2.name);
    println!(
        "   added == 0: a sync only appends keys it has not seen; ListSyncRuns shows {} runs",
        runs.sync_runs.len()
    );

    // 9. Who may do what.
    step(9, "Access: a service account that may use the group's keys and nothing more");
    let mut principals = pb::principal_service_client::PrincipalServiceClient::new(channel.clone());
    let me = rpc(
        "GetCurrentPrincipal",
        principals.get_current_principal(req(pb::GetCurrentPrincipalRequest::default())).await,
    )?;
    let admin = me.principal.unwrap_or_default();
    let roles: Vec<&str> =
        admin.account_roles.iter().map(|r| pb::AccountRole::try_from(*r).map_or("?", |r| r.as_str_name())).collect();
    println!("   the demo calls as {} ({}), account roles {roles:?}", admin.name, admin.display_name);
    let app_name = format!("payments-app-{}", time::OffsetDateTime::now_utc().unix_timestamp());
    let app = rpc(
        "CreatePrincipal",
        principals
            .create_principal(req(pb::CreatePrincipalRequest {
                principal: Some(pb::Principal {
                    kind: pb::PrincipalKind::ServiceAccount as i32,
                    display_name: app_name.clone(),
                    ..Default::default()
                }),
            }))
            .await,
    )?;
    rpc(
        "CreateMembership",
        principals
            .create_membership(req(pb::CreateMembershipRequest {
                parent: group.name.clone(),
                membership: Some(pb::Membership {
                    principal: app.name.clone(),
                    roles: vec![pb::GroupRole::CryptoUser as i32],
                    ..Default::default()
                }),
            }))
            .await,
    )?;
    let made = rpc(
        "CreateApiKey",
        principals
            .create_api_key(req(pb::CreateApiKeyRequest {
                parent: app.name.clone(),
                api_key: Some(pb::ApiKey { display_name: "demo".into(), ..Default::default() }),
            }))
            .await,
    )?;
    println!("   {} ({app_name}): GROUP_ROLE_CRYPTO_USER in the group, one API key (its token shown once)", app.name);
    let as_app = |mut r: Request<pb::ScheduleKeyDeletionRequest>| {
        let v = format!("Bearer {}", made.token).parse().map_err(|_| anyhow!("token not ASCII"))?;
        r.metadata_mut().insert("authorization", v);
        Ok::<_, anyhow::Error>(r)
    };
    let mut listing =
        Request::new(pb::ListKeysRequest { parent: group.name.clone(), page_size: 5, ..Default::default() });
    listing
        .metadata_mut()
        .insert("authorization", format!("Bearer {}", made.token).parse().map_err(|_| anyhow!("token not ASCII"))?);
    let page = rpc("ListKeys as the app", keys.list_keys(listing).await)?;
    println!("   as the app: ListKeys answers {} keys of the group", page.keys.len());
    let refused = keys
        .schedule_key_deletion(as_app(Request::new(pb::ScheduleKeyDeletionRequest {
            name: new_key.name.clone(),
            pending_window_days: 7,
            validate_only: true,
        }))?)
        .await
        .err()
        .map(|s| s.code());
    ensure!(refused == Some(Code::PermissionDenied), "ScheduleKeyDeletion as a CRYPTO_USER answered {refused:?}");
    println!("   as the app: ScheduleKeyDeletion → PERMISSION_DENIED (it uses keys; it does not manage them)");
    let anonymous = groups.get_group(Request::new(pb::GetGroupRequest { name: group.name.clone() })).await;
    ensure!(
        anonymous.as_ref().err().map(|s| s.code()) == Some(Code::Unauthenticated),
        "GetGroup without credentials answered {:?}",
        anonymous.map(|_| ())
    );
    println!("   without credentials: GetGroup → UNAUTHENTICATED");

    // 10. What to try next.
    let addr = args.server.trim_start_matches("http://").trim_end_matches('/');
    step(10, "Try it yourself (grpcurl, https://github.com/fullstorydev/grpcurl)");
    let g = &group.name;
    let h = format!("-plaintext -H \"authorization: Bearer $(cat {})\"", args.token_file.display());
    println!("   grpcurl -plaintext {addr} list");
    println!("   grpcurl {h} -d '{{\"name\":\"{g}\"}}' {addr} keyward.v1.GroupService/GetGroup");
    println!(
        "   grpcurl {h} -d '{{\"parent\":\"{g}\",\"pageSize\":5,\"filter\":\"state = DISABLED\"}}' {addr} keyward.v1.KeyService/ListKeys"
    );
    println!("   grpcurl {h} -d '{{\"name\":\"{}\"}}' {addr} keyward.v1.KeyService/GetKey", created.name);
    println!(
        "   grpcurl {h} -d '{{\"name\":\"{}\",\"validateOnly\":true}}' {addr} keyward.v1.KeyService/RotateKey",
        new_key.name
    );
    println!("   grpcurl {h} -d '{{\"name\":\"{g}\"}}' {addr} keyward.v1.GroupService/SyncKeys");
    println!("   grpcurl {h} -d '{{\"parent\":\"{g}\"}}' {addr} keyward.v1.GroupService/ListSyncRuns");
    println!("   grpcurl {h} {addr} keyward.v1.PrincipalService/GetCurrentPrincipal");
    println!("   grpcurl -plaintext {addr} grpc.health.v1.Health/Check");
    Ok(())
}

// ----- seeding -----

/// What happens to a seeded key after it is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Nothing,
    Disable,
    /// ScheduleKeyDeletion with this window (7–30 days).
    ScheduleDeletion(i32),
}

struct SeedKey {
    spec: &'static str,
    usage: &'static str,
    description: String,
    aliases: Vec<String>,
    tags: Vec<(String, String)>,
    after: After,
}

const TEAMS: [(&str, &str); 8] = [
    ("payments", "cc-1010"),
    ("identity", "cc-1020"),
    ("search", "cc-1030"),
    ("billing", "cc-1040"),
    ("ledger", "cc-1050"),
    ("platform", "cc-1060"),
    ("data", "cc-1070"),
    ("mobile", "cc-1080"),
];
const ENVS: [&str; 3] = ["prod", "staging", "dev"];
const APPS: [&str; 6] = ["api", "worker", "gateway", "reports", "events", "backup"];

/// Key spec and usage of the `i`-th key: mostly SYMMETRIC_DEFAULT, then RSA and ECC of every
/// size, a few slow RSA_4096 ones.
fn spec_for(i: usize) -> (&'static str, &'static str) {
    const ED: &str = "ENCRYPT_DECRYPT";
    const SV: &str = "SIGN_VERIFY";
    match i % 40 {
        13 => return ("RSA_4096", ED),
        27 => return ("RSA_4096", SV),
        _ => {}
    }
    match i % 30 {
        17 => return ("ECC_NIST_P521", SV),
        23 => return ("ECC_SECG_P256K1", SV),
        _ => {}
    }
    match i % 11 {
        2 => ("RSA_2048", ED),
        4 => ("ECC_NIST_P256", SV),
        6 => ("RSA_2048", SV),
        8 => ("ECC_NIST_P384", SV),
        9 if i.is_multiple_of(2) => ("RSA_3072", ED),
        9 => ("RSA_3072", SV),
        _ => ("SYMMETRIC_DEFAULT", ED),
    }
}

/// A deterministic estate: `alias/<team>/<app>-<env>` on most keys (a second `-legacy` alias on
/// some), tags team/env/cost-center on most, some keys disabled, some pending deletion.
fn seed_plan(n: usize) -> Vec<SeedKey> {
    (0..n)
        .map(|i| {
            let (team, cost_center) = TEAMS[i % TEAMS.len()];
            let env = ENVS[(i / TEAMS.len()) % ENVS.len()];
            let app = APPS[(i / (TEAMS.len() * ENVS.len())) % APPS.len()];
            let round = i / (TEAMS.len() * ENVS.len() * APPS.len());
            let app = if round == 0 { app.to_owned() } else { format!("{app}{round}") };
            let (spec, usage) = spec_for(i);
            let mut aliases = Vec::new();
            if i % 7 != 3 {
                aliases.push(format!("alias/{team}/{app}-{env}"));
                if i.is_multiple_of(10) {
                    aliases.push(format!("alias/{team}/{app}-{env}-legacy"));
                }
            }
            let mut tags = Vec::new();
            if !i.is_multiple_of(13) {
                tags.push(("team".to_owned(), team.to_owned()));
                tags.push(("env".to_owned(), env.to_owned()));
                tags.push(("cost-center".to_owned(), cost_center.to_owned()));
                if i.is_multiple_of(5) {
                    tags.push(("owner".to_owned(), format!("{team}-oncall")));
                }
            }
            let after = if i % 17 == 5 {
                After::Disable
            } else if i % 19 == 7 {
                After::ScheduleDeletion(7 + (i % 24) as i32)
            } else {
                After::Nothing
            };
            SeedKey { spec, usage, description: format!("{team} {app} key ({env})"), aliases, tags, after }
        })
        .collect()
}

fn plan_summary(plan: &[SeedKey]) -> String {
    let mut specs: BTreeMap<String, usize> = BTreeMap::new();
    for k in plan {
        let name = if k.spec.starts_with("RSA") { format!("{} {}", k.spec, k.usage) } else { k.spec.to_owned() };
        *specs.entry(name).or_default() += 1;
    }
    let aliased = plan.iter().filter(|k| !k.aliases.is_empty()).count();
    let tagged = plan.iter().filter(|k| !k.tags.is_empty()).count();
    let disabled = plan.iter().filter(|k| k.after == After::Disable).count();
    let pending = plan.iter().filter(|k| matches!(k.after, After::ScheduleDeletion(_))).count();
    format!(
        "{}; {aliased} with aliases, {tagged} tagged, {disabled} disabled, {pending} pending deletion",
        fmt_counts(&specs)
    )
}

async fn seed(aws: &aws_sdk_kms::Client, plan: &[SeedKey], concurrency: usize) -> Result<()> {
    println!(
        "   the account is empty: seeding {} keys (CreateKey, CreateAlias, DisableKey, ScheduleKeyDeletion)",
        plan.len()
    );
    let done = &AtomicUsize::new(0);
    let results: Vec<Result<()>> = futures::stream::iter(plan)
        .map(|k| async move {
            let r = seed_one(aws, k).await;
            let n = done.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_multiple_of(40) {
                println!("   ... {n}/{}", plan.len());
            }
            r
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let failures: Vec<String> = results.into_iter().filter_map(|r| r.err()).map(|e| format!("{e:#}")).collect();
    match failures.first() {
        None => Ok(()),
        Some(first) => bail!("{} of {} seed keys failed; first: {first}", failures.len(), plan.len()),
    }
}

async fn seed_one(aws: &aws_sdk_kms::Client, k: &SeedKey) -> Result<()> {
    let mut create = aws
        .create_key()
        .key_spec(KeySpec::from(k.spec))
        .key_usage(KeyUsageType::from(k.usage))
        .description(&k.description);
    for (key, value) in &k.tags {
        create = create.tags(Tag::builder().tag_key(key).tag_value(value).build()?);
    }
    let out = create.send().await.map_err(|e| anyhow!("CreateKey {}: {}", k.spec, DisplayErrorContext(&e)))?;
    let id = out.key_metadata().map(|m| m.key_id().to_owned()).context("CreateKey returned no KeyMetadata")?;
    for alias in &k.aliases {
        aws.create_alias()
            .alias_name(alias)
            .target_key_id(&id)
            .send()
            .await
            .map_err(|e| anyhow!("CreateAlias {alias}: {}", DisplayErrorContext(&e)))?;
    }
    match k.after {
        After::Nothing => {}
        After::Disable => {
            aws.disable_key()
                .key_id(&id)
                .send()
                .await
                .map_err(|e| anyhow!("DisableKey {id}: {}", DisplayErrorContext(&e)))?;
        }
        After::ScheduleDeletion(days) => {
            aws.schedule_key_deletion()
                .key_id(&id)
                .pending_window_in_days(days)
                .send()
                .await
                .map_err(|e| anyhow!("ScheduleKeyDeletion {id}: {}", DisplayErrorContext(&e)))?;
        }
    }
    Ok(())
}

/// Keys in the account (every state), following pages.
async fn aws_key_count(aws: &aws_sdk_kms::Client) -> Result<usize> {
    let mut n = 0;
    let mut marker = None;
    for _ in 0..10_000 {
        let r = aws
            .list_keys()
            .set_marker(marker)
            .limit(1000)
            .send()
            .await
            .map_err(|e| anyhow!("AWS ListKeys: {}", DisplayErrorContext(&e)))?;
        n += r.keys().len();
        match r.next_marker() {
            Some(m) if r.truncated() => marker = Some(m.to_owned()),
            _ => return Ok(n),
        }
    }
    bail!("AWS ListKeys did not finish")
}

// ----- gRPC -----

/// A request with the demo's credentials.
fn req<T>(message: T) -> Request<T> {
    let mut r = Request::new(message);
    if let Some(a) = AUTHORIZATION.get() {
        r.metadata_mut().insert("authorization", a.clone());
    }
    r
}

/// The answer of an RPC, or an error naming the RPC, the code and the server's message.
fn rpc<T>(what: &str, r: Result<Response<T>, Status>) -> Result<T> {
    r.map(Response::into_inner).map_err(|s| anyhow!("{what}: {:?}: {}", s.code(), s.message()))
}

/// Connects, retrying for up to 30 s while the server starts.
async fn connect(url: &str) -> Result<Channel> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Channel::from_shared(url.to_owned())?.connect_timeout(Duration::from_secs(2)).connect().await {
            Ok(c) => return Ok(c),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(error = %e, "server not up yet");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Err(e) => bail!("cannot reach keyward-server at {url}: {e}"),
        }
    }
}

async fn find_group(
    groups: &mut pb::group_service_client::GroupServiceClient<Channel>,
    ours: impl Fn(&pb::Group) -> bool,
) -> Result<Option<pb::Group>> {
    let mut token = String::new();
    loop {
        let r = rpc(
            "ListGroups",
            groups
                .list_groups(req(pb::ListGroupsRequest {
                    page_size: 100,
                    page_token: token,
                    filter: "kind = AWS_KMS".into(),
                }))
                .await,
        )?;
        if let Some(g) = r.groups.into_iter().find(|g| ours(g)) {
            return Ok(Some(g));
        }
        if r.next_page_token.is_empty() {
            return Ok(None);
        }
        token = r.next_page_token;
    }
}

/// SyncKeys; waits while another sync of the group (e.g. the worker's scheduled one) runs.
async fn sync(groups: &mut pb::group_service_client::GroupServiceClient<Channel>, name: &str) -> Result<pb::SyncRun> {
    for _ in 0..60 {
        match groups.sync_keys(req(pb::SyncKeysRequest { name: name.to_owned(), ..Default::default() })).await {
            Ok(r) => return Ok(r.into_inner()),
            Err(s) if s.code() == Code::Aborted => {
                println!("   another sync of the group is running ({}); retrying in 2 s", s.message());
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(s) => bail!("SyncKeys: {:?}: {}", s.code(), s.message()),
        }
    }
    bail!("SyncKeys: the group stayed busy for 2 minutes")
}

fn print_run(r: &pb::SyncRun, took: Duration) {
    println!(
        "   {} {}: listed {}, added {}, updated {}, unchanged {}, failed {} ({:.1} s)",
        r.name,
        enum_name(pb::SyncRunState::try_from(r.state).map(|s| s.as_str_name())),
        r.listed,
        r.added,
        r.updated,
        r.unchanged,
        r.failed,
        took.as_secs_f64()
    );
    for w in r.warnings.iter().take(5) {
        println!("     warning {}: {}", w.aws_key, w.message);
    }
}

fn check_run(r: &pb::SyncRun, aws_total: usize) -> Result<()> {
    ensure!(r.state == pb::SyncRunState::Succeeded as i32, "the sync did not succeed: {}", r.error);
    ensure!(r.failed == 0, "{} keys could not be read", r.failed);
    ensure!(r.listed == aws_total as i64, "the sync listed {} keys; AWS has {aws_total}", r.listed);
    ensure!(
        r.added + r.updated + r.unchanged == r.listed,
        "added + updated + unchanged ({}) != listed ({})",
        r.added + r.updated + r.unchanged,
        r.listed
    );
    Ok(())
}

/// Every key of `parent` matching `filter`, in pages of `page_size`; also the number of pages.
async fn list_all(
    keys: &mut pb::key_service_client::KeyServiceClient<Channel>,
    parent: &str,
    filter: &str,
    page_size: i32,
) -> Result<(Vec<pb::Key>, usize)> {
    let mut out = Vec::new();
    let mut token = String::new();
    for pages in 1..=10_000 {
        let r = rpc(
            "ListKeys",
            keys.list_keys(req(pb::ListKeysRequest {
                parent: parent.to_owned(),
                page_size,
                page_token: token,
                filter: filter.to_owned(),
                ..Default::default()
            }))
            .await,
        )?;
        ensure!(
            r.keys.len() <= page_size as usize,
            "ListKeys returned {} keys for page_size {page_size}",
            r.keys.len()
        );
        out.extend(r.keys);
        if r.next_page_token.is_empty() {
            return Ok((out, pages));
        }
        token = r.next_page_token;
    }
    bail!("ListKeys did not finish")
}

/// The filters the demo uses, evaluated on the client for cross-checking.
fn matches_filter(k: &pb::Key, filter: &str) -> bool {
    match filter {
        "state = DISABLED" => k.state == pb::KeyState::Disabled as i32,
        "key_spec = RSA_2048 AND state = ENABLED" => {
            k.key_spec == pb::KeySpec::Rsa2048 as i32 && k.state == pb::KeyState::Enabled as i32
        }
        _ => false,
    }
}

fn print_table(all: &[pb::Key]) {
    println!("   {:<38} {:<18} {:<17} {:<26} tags", "display_name", "key_spec", "state", "alias");
    // A few keys of different specs, so the table shows the mix.
    let mut shown: Vec<&pb::Key> = Vec::new();
    for k in all {
        if shown.len() < 8 && !shown.iter().any(|s| s.key_spec == k.key_spec) {
            shown.push(k);
        }
    }
    for k in shown {
        let alias = k.aws.as_ref().and_then(|a| a.aliases.first()).cloned().unwrap_or_else(|| "-".into());
        let tags = ["team", "env", "cost-center"]
            .iter()
            .filter_map(|t| k.tags.get(*t).map(|v| format!("{t}={v}")))
            .collect::<Vec<_>>()
            .join(",");
        println!(
            "   {:<38} {:<18} {:<17} {:<26} {}",
            k.display_name,
            enum_name(pb::KeySpec::try_from(k.key_spec).map(|s| s.as_str_name())),
            enum_name(pb::KeyState::try_from(k.state).map(|s| s.as_str_name())),
            alias,
            if tags.is_empty() { "-".into() } else { tags }
        );
    }
}

/// `alias/demo/payments-<n>`: one more than the highest `n` in use.
fn next_demo_number(all: &[pb::Key]) -> u32 {
    all.iter()
        .filter_map(|k| k.aws.as_ref())
        .flat_map(|a| a.aliases.iter())
        .filter_map(|a| a.strip_prefix("alias/demo/payments-")?.parse::<u32>().ok())
        .max()
        .unwrap_or(0)
        + 1
}

// ----- printing -----

fn step(n: u32, title: &str) {
    println!("\n[{n}] {title}");
}

/// `KEY_STATE_ENABLED` → `ENABLED`.
fn enum_name<E>(r: Result<&'static str, E>) -> String {
    match r {
        Ok(s) => ["KEY_STATE_", "KEY_SPEC_", "CONNECTION_STATE_", "SYNC_RUN_STATE_"]
            .iter()
            .find_map(|p| s.strip_prefix(p))
            .unwrap_or(s)
            .to_owned(),
        Err(_) => "?".to_owned(),
    }
}

fn count_by(all: &[pb::Key], f: impl Fn(&pb::Key) -> String) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for k in all {
        *m.entry(f(k)).or_default() += 1;
    }
    m
}

fn fmt_counts(m: &BTreeMap<String, usize>) -> String {
    m.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
}
