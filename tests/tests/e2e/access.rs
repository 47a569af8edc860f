//! Authentication and authorization end to end: the matrix generated from the server's access
//! table (every RPC of the descriptor set × every role × own group, another group, no
//! membership), API keys (create → use → revoke, expiry, the token stored nowhere), disabled
//! principals, the bootstrap admin made once, and `principals/me`.

use std::collections::BTreeMap;

use bytes::{Buf, BufMut};
use keyward_proto::v1 as pb;
use keyward_server::{Rule, TABLE};
use keyward_shared::domain::Permission;
use keyward_tests::fixtures::mask;
use keyward_tests::{Conn, TestApp, conn};
use prost::Message;
use prost_types::{DescriptorProto, FileDescriptorSet};
use tonic::Code;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Raw protobuf bytes in and out, so that any method can be called from its descriptor.
#[derive(Clone, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        let n = src.remaining();
        Ok(Some(src.copy_to_bytes(n).to_vec()))
    }
}

/// Every keyward.v1 method: (full name `keyward.v1.Svc/Method`, input message, server streaming).
fn methods(fds: &FileDescriptorSet) -> Vec<(String, String, bool)> {
    let mut out = Vec::new();
    for f in &fds.file {
        if f.package() != "keyward.v1" {
            continue;
        }
        for s in &f.service {
            for m in &s.method {
                out.push((
                    format!("keyward.v1.{}/{}", s.name(), m.name()),
                    m.input_type().to_owned(),
                    m.server_streaming(),
                ));
            }
        }
    }
    out
}

fn message<'a>(fds: &'a FileDescriptorSet, full: &str) -> &'a DescriptorProto {
    let name = full.trim_start_matches(".keyward.v1.");
    fds.file
        .iter()
        .filter(|f| f.package() == "keyward.v1")
        .flat_map(|f| f.message_type.iter())
        .find(|m| m.name() == name)
        .unwrap_or_else(|| panic!("message {full}"))
}

/// A request of message `full` with the dotted `path` set to `value`.
fn request(fds: &FileDescriptorSet, full: &str, path: &str, value: &str) -> Vec<u8> {
    let (head, rest) = path.split_once('.').map_or((path, None), |(h, r)| (h, Some(r)));
    let msg = message(fds, full);
    let field = msg.field.iter().find(|f| f.name() == head).unwrap_or_else(|| panic!("{full} has no field {head}"));
    let payload = match rest {
        None => value.as_bytes().to_vec(),
        Some(rest) => request(fds, field.type_name(), rest, value),
    };
    let mut buf = Vec::new();
    prost::encoding::encode_key(field.number() as u32, prost::encoding::WireType::LengthDelimited, &mut buf);
    prost::encoding::encode_varint(payload.len() as u64, &mut buf);
    buf.extend_from_slice(&payload);
    buf
}

async fn call(c: Conn, method: &str, streaming: bool, body: Vec<u8>) -> Code {
    let mut grpc = tonic::client::Grpc::new(c);
    grpc.ready().await.expect("ready");
    let path: http::uri::PathAndQuery = format!("/{method}").parse().expect("path");
    let req = tonic::Request::new(body);
    let r = if streaming {
        grpc.server_streaming(req, path, Raw).await.map(|_| ())
    } else {
        grpc.unary(req, path, Raw).await.map(|_| ())
    };
    match r {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Admin,
    AccountAuditor,
    GroupAdmin,
    KeyManager,
    CryptoUser,
    GroupAuditor,
    Nobody,
}

const ROLES: [Role; 7] = [
    Role::Admin,
    Role::AccountAuditor,
    Role::GroupAdmin,
    Role::KeyManager,
    Role::CryptoUser,
    Role::GroupAuditor,
    Role::Nobody,
];

/// What the resource of a call is, seen from the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    /// In the group where the caller has its group role.
    OwnGroup,
    /// In a group where it has none.
    OtherGroup,
    /// The caller itself (principal RPCs).
    Myself,
    /// Another principal.
    OtherPrincipal,
    /// The account (no resource field), or a listing open to all.
    Account,
}

/// The expectation, written from the roles' definitions (not from the server's code).
fn allowed(role: Role, p: Permission, target: Target, method: &str) -> bool {
    use Permission::*;
    if method.ends_with("/GetCurrentPrincipal") || method.ends_with("/ListGroups") {
        return true;
    }
    if method.ends_with("/ListAuditEvents") {
        return matches!(role, Role::Admin | Role::AccountAuditor | Role::GroupAdmin | Role::GroupAuditor);
    }
    // Every principal reads itself and manages its own API keys.
    if target == Target::Myself && matches!(p, ReadPrincipals | ManageApiKeys) {
        return true;
    }
    match role {
        Role::Admin => true,
        Role::AccountAuditor => matches!(p, ReadGroup | ReadAudit | ReadPrincipals),
        _ if target == Target::Myself => false,
        _ if target != Target::OwnGroup => false,
        Role::GroupAdmin => matches!(p, ReadGroup | ManageGroup | ManageMembers | ManageKeys | ExportKeys | ReadAudit),
        Role::KeyManager => matches!(p, ReadGroup | ManageKeys),
        Role::CryptoUser => matches!(p, ReadGroup | UseKeys),
        Role::GroupAuditor => matches!(p, ReadGroup | ReadAudit),
        Role::Nobody => false,
    }
}

/// The resource name a rule's field takes, below `group` or about `principal`.
fn resource_name(rule: &Rule, group: &str, principal: &str) -> String {
    let id = uuid::Uuid::now_v7();
    let m = rule.method;
    if m.contains("PrincipalService/") && !m.contains("Membership") {
        return if m.ends_with("/RevokeApiKey") { format!("{principal}/apiKeys/{id}") } else { principal.to_owned() };
    }
    match rule.field {
        "parent" if m.ends_with("/ListKeyDrifts") => format!("{group}/syncRuns/{id}"),
        "parent" => group.to_owned(),
        "name" | "group.name" if m.contains("GroupService/") && !m.contains("SyncRun") => group.to_owned(),
        "name" if m.contains("SyncRun") => format!("{group}/syncRuns/{id}"),
        "name" | "membership.name" if m.contains("Membership") => format!("{group}/memberships/{id}"),
        _ => format!("{group}/keys/{id}"),
    }
}

#[tokio::test]
async fn every_rpc_answers_every_role_as_the_table_says() {
    let mut app = TestApp::spawn().await;
    let fds = FileDescriptorSet::decode(keyward_proto::FILE_DESCRIPTOR_SET).expect("descriptor set");
    let table: BTreeMap<&str, &Rule> = TABLE.iter().map(|r| (r.method, r)).collect();
    let methods = methods(&fds);
    let missing: Vec<_> = methods.iter().filter(|(m, _, _)| !table.contains_key(m.as_str())).collect();
    assert!(missing.is_empty(), "RPCs without an entry in the access table: {missing:?}");
    assert_eq!(methods.len(), TABLE.len(), "the table lists a method the API does not have");

    // Two REGULAR groups with a key each (so that an allowed DeleteGroup is refused for the key).
    let own = app.regular_group("own").await;
    let other = app.regular_group("other").await;
    app.create_key(&own.name, "k", pb::KeySpec::Aes256, &[pb::KeyOperation::Encrypt, pb::KeyOperation::Decrypt]).await;
    app.create_key(&other.name, "k", pb::KeySpec::Aes256, &[pb::KeyOperation::Encrypt, pb::KeyOperation::Decrypt])
        .await;
    let mut callers = Vec::new();
    for role in ROLES {
        let (account, group): (&[pb::AccountRole], &[pb::GroupRole]) = match role {
            Role::Admin => (&[pb::AccountRole::Admin], &[]),
            Role::AccountAuditor => (&[pb::AccountRole::Auditor], &[]),
            Role::GroupAdmin => (&[], &[pb::GroupRole::GroupAdmin]),
            Role::KeyManager => (&[], &[pb::GroupRole::KeyManager]),
            Role::CryptoUser => (&[], &[pb::GroupRole::CryptoUser]),
            Role::GroupAuditor => (&[], &[pb::GroupRole::Auditor]),
            Role::Nobody => (&[], &[]),
        };
        let groups: Vec<(&str, &[pb::GroupRole])> =
            if group.is_empty() { vec![] } else { vec![(own.name.as_str(), group)] };
        let (p, token) = app.principal_with(&format!("{role:?}"), account, &groups).await;
        callers.push((role, p.name, token));
    }

    let mut wrong = Vec::new();
    let mut calls = 0;
    for (method, input, streaming) in &methods {
        let rule = table[method.as_str()];
        for (role, me, token) in &callers {
            let targets: &[(Target, &str)] = match rule.field {
                "" | "*" => &[(Target::Account, "")],
                _ if method.contains("PrincipalService/") && !method.contains("Membership") => &[
                    (Target::Myself, me.as_str()),
                    (Target::OtherPrincipal, "principals/00000000-0000-7000-8000-000000000000"),
                ],
                _ => &[(Target::OwnGroup, own.name.as_str()), (Target::OtherGroup, other.name.as_str())],
            };
            for (target, base) in targets {
                let body = if rule.field.is_empty() || rule.field == "*" {
                    Vec::new()
                } else {
                    request(&fds, input, rule.field, &resource_name(rule, base, base))
                };
                let code = call(conn(app.addr, token), method, *streaming, body).await;
                calls += 1;
                let expect = allowed(*role, rule.permission, *target, method);
                let ok = if expect {
                    !matches!(code, Code::PermissionDenied | Code::Unauthenticated)
                } else {
                    code == Code::PermissionDenied
                };
                if !ok {
                    wrong.push(format!("{method} as {role:?} on {target:?}: {code:?} (allowed: {expect})"));
                }
            }
        }
        // Without credentials, and with a token that is not one: UNAUTHENTICATED, every RPC.
        for token in ["", "kw_00000000000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
            let c = if token.is_empty() {
                let ch =
                    tonic::transport::Channel::from_shared(format!("http://{}", app.addr)).expect("uri").connect_lazy();
                tonic::service::interceptor::InterceptedService::new(ch, keyward_tests::Bearer::none())
            } else {
                conn(app.addr, token)
            };
            let code = call(c, method, *streaming, Vec::new()).await;
            calls += 1;
            if code != Code::Unauthenticated {
                wrong.push(format!("{method} with token {token:?}: {code:?}, not UNAUTHENTICATED"));
            }
        }
    }
    assert!(wrong.is_empty(), "{} of {calls} calls answered otherwise:\n{}", wrong.len(), wrong.join("\n"));
    // The groups survived every allowed call.
    assert_eq!(app.list_groups().await.expect("list").len(), 2);
}

#[tokio::test]
async fn listings_answer_only_what_the_caller_reads() {
    let mut app = TestApp::spawn().await;
    let own = app.regular_group("mine").await;
    let other = app.regular_group("theirs").await;
    let mine = app
        .create_key(&own.name, "k1", pb::KeySpec::Aes256, &[pb::KeyOperation::Encrypt, pb::KeyOperation::Decrypt])
        .await;
    app.create_key(&other.name, "k2", pb::KeySpec::Aes256, &[pb::KeyOperation::Encrypt, pb::KeyOperation::Decrypt])
        .await;
    let (_, token) = app.principal_with("auditor-of-one", &[], &[(own.name.as_str(), &[pb::GroupRole::Auditor])]).await;
    let c = conn(app.addr, &token);
    let mut groups = pb::group_service_client::GroupServiceClient::new(c.clone());
    let listed = groups.list_groups(pb::ListGroupsRequest::default()).await.expect("list groups").into_inner();
    assert_eq!(listed.groups.iter().map(|g| g.name.clone()).collect::<Vec<_>>(), vec![own.name.clone()]);
    let mut keys = pb::key_service_client::KeyServiceClient::new(c.clone());
    let all = keys
        .list_keys(pb::ListKeysRequest { parent: "groups/-".into(), ..Default::default() })
        .await
        .expect("list groups/-")
        .into_inner();
    assert_eq!(all.keys.iter().map(|k| k.name.clone()).collect::<Vec<_>>(), vec![mine.name.clone()]);
    let mut audit = pb::audit_service_client::AuditServiceClient::new(c);
    let events = audit.list_audit_events(pb::ListAuditEventsRequest::default()).await.expect("audit").into_inner();
    assert!(!events.audit_events.is_empty());
    for e in &events.audit_events {
        assert!(e.resource == own.name || e.resource.starts_with(&format!("{}/", own.name)), "{e:?}");
    }
    // A key of the other group named under the reader's own group is not found: names are
    // checked with their group.
    let (g2, k2) = (other.name.clone(), app.all_keys(&other.name, "").await[0].name.clone());
    let smuggled = k2.replace(&g2, &own.name);
    let e = keys.get_key(pb::GetKeyRequest { name: smuggled }).await.expect_err("not in this group");
    assert_eq!(e.code(), Code::NotFound);
}

#[tokio::test]
async fn an_api_key_works_until_revoked_or_expired_and_is_stored_only_as_a_hash() {
    let app = TestApp::spawn().await;
    let (p, token) = app.principal_with("svc", &[pb::AccountRole::Auditor], &[]).await;
    let mut me = pb::principal_service_client::PrincipalServiceClient::new(conn(app.addr, &token));
    let cur = me.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.expect("me").into_inner();
    assert_eq!(cur.principal.as_ref().map(|p| p.name.clone()), Some(p.name.clone()));
    assert_eq!(cur.authenticated_by, "api_key");

    // The token is in no table and no audit event.
    let secret = token.rsplit('_').next().expect("secret part").to_owned();
    // Every byte of the database: the SQLite file, or every row of every PostgreSQL table.
    let dump = String::from_utf8_lossy(&app.database_dump().await).into_owned();
    let id = p.name.trim_start_matches("principals/");
    assert!(dump.contains(id), "the dump holds the principals");
    assert!(!dump.contains(&secret) && !dump.contains(&token), "the token is in the database");

    // A second key of its own, made by the principal itself; revoked: refused from then on.
    let made = me
        .create_api_key(pb::CreateApiKeyRequest {
            parent: p.name.clone(),
            api_key: Some(pb::ApiKey { display_name: "second".into(), ..Default::default() }),
        })
        .await
        .expect("own API key")
        .into_inner();
    let key = made.api_key.expect("api key");
    let mut second = pb::principal_service_client::PrincipalServiceClient::new(conn(app.addr, &made.token));
    second.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.expect("second key works");
    let listed = me.list_api_keys(pb::ListApiKeysRequest { parent: p.name.clone(), ..Default::default() }).await;
    let listed = listed.expect("list").into_inner();
    assert_eq!(listed.api_keys.len(), 2);
    assert!(listed.api_keys.iter().any(|k| k.last_used_time.is_some()), "last use is recorded");
    // No answer but CreateApiKey's carries a token; no log line (TRACE) carries either token.
    let answers = [listed.encode_to_vec(), cur.encode_to_vec()];
    for (i, a) in answers.iter().enumerate() {
        let text = String::from_utf8_lossy(a);
        assert!(!text.contains(&secret) && !text.contains(&made.token), "answer {i} carries a token");
    }
    let logged = keyward_tests::logs::captured();
    for t in [&token, &made.token] {
        let part = t.rsplit('_').next().expect("secret part");
        assert!(!logged.contains(part), "a token's secret is in the log");
    }
    me.revoke_api_key(pb::RevokeApiKeyRequest { name: key.name.clone() }).await.expect("revoke");
    let e = second.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.expect_err("revoked");
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("revoked"), "{}", e.message());
    assert!(!e.message().contains(&made.token));

    // Expiry: a key that expires in an hour works now and is refused two hours later.
    let soon = app.keyward.now() + time::Duration::hours(1);
    let expiring = me
        .create_api_key(pb::CreateApiKeyRequest {
            parent: p.name.clone(),
            api_key: Some(pb::ApiKey {
                display_name: "short".into(),
                expire_time: Some(prost_types::Timestamp { seconds: soon.unix_timestamp(), nanos: 0 }),
                ..Default::default()
            }),
        })
        .await
        .expect("expiring key")
        .into_inner();
    let mut short = pb::principal_service_client::PrincipalServiceClient::new(conn(app.addr, &expiring.token));
    short.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.expect("works before expiry");
    app.clock.advance(std::time::Duration::from_secs(2 * 3600));
    let e = short.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.expect_err("expired");
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("expired"), "{}", e.message());

    // Another principal's keys are not its to make.
    let mut admin = app.principal_client();
    let other = admin
        .create_principal(pb::CreatePrincipalRequest {
            principal: Some(pb::Principal {
                kind: pb::PrincipalKind::User as i32,
                display_name: "someone".into(),
                ..Default::default()
            }),
        })
        .await
        .expect("principal")
        .into_inner();
    let e = me
        .create_api_key(pb::CreateApiKeyRequest {
            parent: other.name.clone(),
            api_key: Some(pb::ApiKey { display_name: "x".into(), ..Default::default() }),
        })
        .await
        .expect_err("not its own");
    assert_eq!(e.code(), Code::PermissionDenied);
}

/// Where material goes is not a key manager's call: a KEY_MANAGER of the source who admins
/// another group may not copy into it (its crypto users would use the material), nor point an
/// AWS KMS group elsewhere (only an ADMIN changes `aws_kms.*`), nor set a policy that rotates
/// copies in groups it does not manage.
#[tokio::test]
async fn material_leaves_a_group_only_as_its_admin_and_an_admin_decide() {
    let mut app = TestApp::spawn().await;
    let vault = app.regular_group("vault").await;
    let aws = app.create_aws_group("aws").await;
    let ops = [pb::KeyOperation::Encrypt, pb::KeyOperation::Decrypt, pb::KeyOperation::Export];
    let source = app.create_key(&vault.name, "src", pb::KeySpec::Aes256, &ops).await;
    let (km, ga) = ([pb::GroupRole::KeyManager], [pb::GroupRole::GroupAdmin]);
    let (_, km_token) = app.principal_with("km", &[], &[(vault.name.as_str(), &km), (aws.name.as_str(), &ga)]).await;
    let (_, ga_token) = app.principal_with("ga", &[], &[(vault.name.as_str(), &ga), (aws.name.as_str(), &km)]).await;
    let copy = |name: &str| pb::CopyKeyRequest {
        source: source.name.clone(),
        target_group: aws.name.clone(),
        display_name: name.into(),
        ..Default::default()
    };
    let before = app.aws_key_count().await;
    let mut as_km = pb::key_service_client::KeyServiceClient::new(conn(app.addr, &km_token));
    let e = as_km.copy_key(copy("by-km")).await.expect_err("a key manager copies out");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert_eq!(app.aws_key_count().await, before, "nothing made in AWS");
    let mut as_ga = pb::key_service_client::KeyServiceClient::new(conn(app.addr, &ga_token));
    as_ga.copy_key(copy("by-ga")).await.expect("the source's group admin copies");

    // Nor through a rotation onto new Keyward material made in the vault.
    let virt = app.create_key(&aws.name, "native", pb::KeySpec::SymmetricDefault, &[]).await;
    let onto_vault = pb::RotateKeyRequest {
        name: virt.name.clone(),
        to_source: Some(pb::RotationSource {
            source: Some(pb::rotation_source::Source::NewKeyInGroup(vault.name.clone())),
        }),
        ..Default::default()
    };
    let e = as_km.rotate_key(onto_vault).await.expect_err("a vault key manager rotates onto vault material");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");

    // Connection settings: the AWS group's own GROUP_ADMIN changes its name, not its endpoint.
    let mut groups = pb::group_service_client::GroupServiceClient::new(conn(app.addr, &km_token));
    let mut g = aws.clone();
    g.etag.clear();
    g.display_name = "renamed".into();
    let changed = pb::UpdateGroupRequest { group: Some(g.clone()), update_mask: mask(&["display_name"]) };
    groups.update_group(changed).await.expect("display_name");
    let mut elsewhere = g.clone();
    elsewhere.aws_kms.as_mut().expect("aws_kms").endpoint_url = "http://127.0.0.1:9".into();
    for paths in [&["aws_kms.endpoint_url"][..], &["aws_kms"], &["display_name", "aws_kms.secret_access_key"]] {
        let req = pb::UpdateGroupRequest { group: Some(elsewhere.clone()), update_mask: mask(paths) };
        let e = groups.update_group(req).await.expect_err("endpoint changed by a group admin");
        assert_eq!(e.code(), Code::PermissionDenied, "{paths:?}: {e:?}");
    }
    let stored = app.get_group(&aws.name).await;
    assert_eq!(stored.aws_kms.map(|a| a.endpoint_url), aws.aws_kms.clone().map(|a| a.endpoint_url), "unchanged");
    let same = pb::UpdateGroupRequest { group: Some(g), update_mask: mask(&["aws_kms.endpoint_url"]) };
    app.groups.update_group(same).await.expect("an ADMIN changes the endpoint");

    // rotate_linked on a source with a copy in a group the caller does not manage keys in.
    let (_, only_km) = app.principal_with("vault-km", &[], &[(vault.name.as_str(), &km)]).await;
    let mut as_vault_km = pb::key_service_client::KeyServiceClient::new(conn(app.addr, &only_km));
    let mut k = app.get_key(&source.name).await;
    k.etag.clear();
    let policy = |rotate_linked| pb::RotationPolicy { cron: "30 2 * * *".into(), rotate_linked, ..Default::default() };
    k.rotation_policy = Some(policy(true));
    let req = |k: &pb::Key| pb::UpdateKeyRequest {
        key: Some(k.clone()),
        update_mask: mask(&["rotation_policy"]),
        ..Default::default()
    };
    let e = as_vault_km.update_key(req(&k)).await.expect_err("rotate_linked over a group it does not manage");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    assert!(e.message().contains(&aws.name), "names the group: {}", e.message());
    assert!(app.get_key(&source.name).await.rotation_policy.is_none(), "unchanged");
    as_ga.update_key(req(&k)).await.expect("manages keys in both groups");
    k.rotation_policy = Some(policy(false));
    as_vault_km.update_key(req(&k)).await.expect("its own key's rotation alone");
}

#[tokio::test]
async fn two_authorization_headers_are_refused_not_picked_from() {
    let app = TestApp::spawn().await;
    let mut req = tonic::Request::new(pb::GetCurrentPrincipalRequest::default());
    for t in
        ["kw_00000000000000000000000000000000_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", app.admin_token.as_str()]
    {
        let v = format!("Bearer {t}").parse().expect("header");
        req.metadata_mut().append("authorization", v);
    }
    let mut c = pb::principal_service_client::PrincipalServiceClient::new(conn(app.addr, ""));
    let e = c.get_current_principal(req).await.expect_err("two credentials");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
}

#[tokio::test]
async fn a_disabled_principal_is_refused_and_cannot_be_the_caller_itself() {
    let mut app = TestApp::spawn().await;
    let g = app.regular_group("g").await;
    let (p, token) = app.principal_with("user", &[], &[(g.name.as_str(), &[pb::GroupRole::KeyManager])]).await;
    let mut keys = pb::key_service_client::KeyServiceClient::new(conn(app.addr, &token));
    keys.list_keys(pb::ListKeysRequest { parent: g.name.clone(), ..Default::default() }).await.expect("allowed");
    let mut admin = app.principal_client();
    let disabled = admin
        .disable_principal(pb::DisablePrincipalRequest { name: p.name.clone() })
        .await
        .expect("disable")
        .into_inner();
    assert!(disabled.disabled);
    let e = keys
        .list_keys(pb::ListKeysRequest { parent: g.name.clone(), ..Default::default() })
        .await
        .expect_err("disabled");
    assert_eq!(e.code(), Code::Unauthenticated);
    admin.enable_principal(pb::EnablePrincipalRequest { name: p.name.clone() }).await.expect("enable");
    keys.list_keys(pb::ListKeysRequest { parent: g.name.clone(), ..Default::default() }).await.expect("enabled again");

    let me = admin.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.expect("me").into_inner();
    let myself = me.principal.expect("principal").name;
    let e = admin.disable_principal(pb::DisablePrincipalRequest { name: myself }).await.expect_err("not itself");
    assert_eq!(e.code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn the_bootstrap_admin_is_made_once_and_sees_its_groups() {
    let mut app = TestApp::spawn().await;
    // The harness's start made it; a second start (or a racing server) does not.
    let ctx = app.keyward.ctx(keyward_shared::domain::Caller::system("test", "again"));
    let mut delivered = false;
    let again = app
        .keyward
        .bootstrap_admin(&ctx, |_| {
            delivered = true;
            Ok(())
        })
        .await
        .expect("bootstrap");
    assert!(!again && !delivered, "a second bootstrap made another admin");

    let g = app.create_aws_group("connected").await;
    app.groups
        .test_connection(pb::TestConnectionRequest {
            target: Some(pb::test_connection_request::Target::Name(g.name.clone())),
        })
        .await
        .expect("test connection");
    let (_, token) = app.principal_with("member", &[], &[(g.name.as_str(), &[pb::GroupRole::CryptoUser])]).await;
    let mut me = pb::principal_service_client::PrincipalServiceClient::new(conn(app.addr, &token));
    let cur = me
        .get_current_principal(pb::GetCurrentPrincipalRequest { name: "principals/me".into() })
        .await
        .expect("me")
        .into_inner();
    assert_eq!(cur.groups.len(), 1);
    let mine = &cur.groups[0];
    assert_eq!((mine.group.as_str(), mine.kind), (g.name.as_str(), pb::GroupKind::AwsKms as i32));
    assert_eq!(mine.roles, vec![pb::GroupRole::CryptoUser as i32]);
    assert_eq!(
        mine.connection.as_ref().map(|c| c.state),
        Some(pb::ConnectionState::Connected as i32),
        "the user view shows the group's connection state"
    );
}

#[tokio::test]
async fn a_key_revoked_through_another_server_is_refused_here_within_a_second() {
    let app = TestApp::spawn().await;
    let (p, token) = app.principal_with("svc", &[pb::AccountRole::Auditor], &[]).await;
    let mut me = pb::principal_service_client::PrincipalServiceClient::new(conn(app.addr, &token));
    me.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.expect("works");
    let keys = me.list_api_keys(pb::ListApiKeysRequest { parent: p.name.clone(), ..Default::default() }).await;
    let key = keys.expect("list").into_inner().api_keys.remove(0);
    let (pid, kid) = key.name.trim_start_matches("principals/").split_once("/apiKeys/").expect("name");
    // Another server (its own cache) revokes it.
    let other = app.second_keyward().await;
    let ctx = other.ctx(keyward_shared::domain::Caller::system("test", "revoke"));
    let pid = keyward_shared::domain::PrincipalId::parse(pid).expect("id");
    let kid = keyward_shared::domain::ApiKeyId::parse(kid).expect("id");
    other.revoke_api_key(&ctx, pid, kid).await.expect("revoke elsewhere");
    app.clock.advance(std::time::Duration::from_millis(1100));
    let e = me.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.expect_err("revoked");
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
}
