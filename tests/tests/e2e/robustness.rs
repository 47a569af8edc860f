//! No input panics the server or makes it answer INTERNAL: every RPC gets a few hundred
//! requests built from hostile values, then the server must still be healthy.

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use tonic::Code;

const NASTY: &[&str] = &[
    "",
    " ",
    "\0",
    "groups/-",
    "groups/",
    "groups/../etc",
    "groups/00000000-0000-0000-0000-000000000000",
    "groups/00000000-0000-0000-0000-000000000000/keys/00000000-0000-0000-0000-000000000000",
    "groups/00000000-0000-0000-0000-000000000000/syncRuns/x",
    "alias/aws/x",
    "alias/",
    "http://",
    "https://[::1",
    "eu-west-1",
    "\u{202e}\u{1F511}ключ",
    "state = ",
    " AND AND ",
    "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----",
    "k1zz",
    "%00%ff",
];

/// A small deterministic generator (xorshift), so failures reproduce.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn s(&mut self) -> String {
        match self.next() % 8 {
            0 => "x".repeat((self.next() % 70_000) as usize),
            1 => format!("groups/{}", uuid::Uuid::from_u128(self.next() as u128)),
            _ => NASTY[(self.next() % NASTY.len() as u64) as usize].to_owned(),
        }
    }
    fn i(&mut self) -> i32 {
        [0, 1, -1, 2, 7, 99, i32::MAX, i32::MIN][(self.next() % 8) as usize]
    }
    fn aws(&mut self) -> Option<pb::AwsKmsConfig> {
        (!self.next().is_multiple_of(3)).then(|| pb::AwsKmsConfig {
            region: self.s(),
            endpoint_url: self.s(),
            access_key_id: self.s(),
            secret_access_key: self.s(),
            ca_certificate_pem: self.s(),
            client_certificate_pem: self.s(),
            client_private_key_pem: self.s(),
            validate_host: Some(self.next().is_multiple_of(2)),
            ..Default::default()
        })
    }
    fn group(&mut self) -> pb::Group {
        pb::Group {
            name: self.s(),
            display_name: self.s(),
            description: self.s(),
            kind: self.i(),
            aws_kms: self.aws(),
            crypto_policy: Some(pb::CryptoPolicy {
                allowed_key_specs: vec![self.i()],
                allowed_key_ops: vec![self.i()],
            }),
            sync_schedule: Some(pb::SyncSchedule {
                interval: Some(prost_types::Duration { seconds: self.i() as i64 * 1000, nanos: self.i() }),
            }),
            etag: self.s(),
            ..Default::default()
        }
    }
    fn key(&mut self) -> pb::Key {
        pb::Key {
            display_name: self.s(),
            description: self.s(),
            key_spec: self.i(),
            key_ops: vec![self.i(), self.i()],
            tags: [(self.s(), self.s())].into_iter().collect(),
            aws: Some(pb::AwsKeyDetails { aliases: vec![self.s()], ..Default::default() }),
            ..Default::default()
        }
    }
}

fn check(what: &str, r: Result<(), tonic::Status>) {
    if let Err(e) = r {
        assert!(!matches!(e.code(), Code::Internal | Code::Unknown), "{what}: {e:?}");
        assert!(e.message().len() < 2000, "{what}: message echoes input ({} bytes)", e.message().len());
    }
}

#[tokio::test]
async fn hostile_input_never_panics_or_answers_internal() {
    let mut app = TestApp::spawn().await;
    let real = app.create_aws_group("real").await;
    let mut g = Gen(0x9E37_79B9_7F4A_7C15);
    for _ in 0..150 {
        let mut group = g.group();
        if g.next().is_multiple_of(4) {
            group.name = real.name.clone();
        }
        let name = if g.next().is_multiple_of(3) { real.name.clone() } else { g.s() };
        let gs = &mut app.groups;
        check("create_group", gs.create_group(pb::CreateGroupRequest { group: Some(group.clone()) }).await.map(drop));
        check("get_group", gs.get_group(pb::GetGroupRequest { name: name.clone() }).await.map(drop));
        check(
            "list_groups",
            gs.list_groups(pb::ListGroupsRequest { page_size: g.i(), page_token: g.s(), filter: g.s() })
                .await
                .map(drop),
        );
        let mask = prost_types::FieldMask { paths: vec![g.s(), "aws_kms".into(), "crypto_policy".into()] };
        check(
            "update_group",
            gs.update_group(pb::UpdateGroupRequest { group: Some(group), update_mask: Some(mask) }).await.map(drop),
        );
        let target = match g.next() % 3 {
            0 => Some(pb::test_connection_request::Target::Name(name.clone())),
            1 => g.aws().map(pb::test_connection_request::Target::AwsKms),
            _ => None,
        };
        check("test_connection", gs.test_connection(pb::TestConnectionRequest { target }).await.map(drop));
        check("get_sync_run", gs.get_sync_run(pb::GetSyncRunRequest { name: g.s() }).await.map(drop));
        check(
            "list_sync_runs",
            gs.list_sync_runs(pb::ListSyncRunsRequest {
                parent: name.clone(),
                page_size: g.i(),
                page_token: g.s(),
                filter: g.s(),
            })
            .await
            .map(drop),
        );
        let parent = if g.next().is_multiple_of(2) { real.name.clone() } else { g.s() };
        let key = g.key();
        let ks = &mut app.keys;
        check(
            "create_key",
            ks.create_key(pb::CreateKeyRequest { parent: parent.clone(), key: Some(key) }).await.map(drop),
        );
        check("get_key", ks.get_key(pb::GetKeyRequest { name: g.s() }).await.map(drop));
        check(
            "list_keys",
            ks.list_keys(pb::ListKeysRequest {
                parent: parent.clone(),
                page_size: g.i(),
                page_token: g.s(),
                filter: g.s(),
                order_by: g.s(),
            })
            .await
            .map(drop),
        );
        check(
            "lookup_key",
            ks.lookup_key(pb::LookupKeyRequest { parent, alias: g.s(), key_arn: g.s(), aws_key_id: g.s() })
                .await
                .map(drop),
        );
    }
    let channel = app.channel();
    let health = tonic_health::pb::health_client::HealthClient::new(channel)
        .check(tonic_health::pb::HealthCheckRequest { service: String::new() })
        .await
        .expect("health")
        .into_inner();
    assert_eq!(health.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);
}

/// What a GetGroupRequest looks like on the wire, but with `name` as raw bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct RawNameRequest {
    #[prost(bytes = "vec", tag = "1")]
    name: Vec<u8>,
}

#[tokio::test]
async fn a_request_that_is_not_valid_protobuf_is_invalid_argument_without_library_text() {
    let app = TestApp::spawn().await;
    let channel = app.channel();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path = http::uri::PathAndQuery::from_static("/keyward.v1.GroupService/GetGroup");
    let codec = tonic_prost::ProstCodec::<RawNameRequest, pb::Group>::default();
    // Field 1 of GetGroupRequest is a string: these bytes are not UTF-8.
    let err = grpc
        .unary(tonic::Request::new(RawNameRequest { name: vec![0xff, 0xfe] }), path, codec)
        .await
        .expect_err("not valid protobuf for the method");
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(!err.message().contains("Protobuf") && !err.message().contains("UTF-8"), "{}", err.message());
}
