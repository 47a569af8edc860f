//! CryptoService: Encrypt/Decrypt and WrapKey/UnwrapKey with Keyward keys (REGULAR groups) and
//! Encrypt/Decrypt with virtual keys through the emulator; the refusals by `key_ops` and state
//! (decided by Keyward, with an armed fault proving AWS was not asked), one message for every
//! ciphertext that does not open, sizes, missing keys and bad names.

use keyward_proto::v1 as pb;
use keyward_shared::kms::Error as KmsError;
use keyward_shared::kms::faults::Fault;
use keyward_tests::Conn;
use keyward_tests::TestApp;
use pb::crypto_service_client::CryptoServiceClient;
use tonic::{Code, Status};
use tonic_types::StatusExt;

use pb::KeyOperation as Op;

const ALL_CRYPTO_OPS: [Op; 4] = [Op::Encrypt, Op::Decrypt, Op::WrapKey, Op::UnwrapKey];

/// A Keyward key (material held by Keyward) in a REGULAR group.
async fn keyward_key(app: &mut TestApp, group: &pb::Group, name: &str, ops: &[Op]) -> pb::Key {
    let k = app.create_key(&group.name, name, pb::KeySpec::Aes256, ops).await;
    assert!(!k.r#virtual);
    k
}

/// A virtual key: SYMMETRIC_DEFAULT, created in the emulator.
async fn aws_key(app: &mut TestApp, group: &pb::Group, name: &str, ops: &[Op]) -> pb::Key {
    let k = app.create_key(&group.name, name, pb::KeySpec::SymmetricDefault, ops).await;
    assert!(k.r#virtual);
    k
}

async fn encrypt(c: &mut CryptoServiceClient<Conn>, name: &str, pt: &[u8], aad: &[u8]) -> Result<Vec<u8>, Status> {
    c.encrypt(pb::EncryptRequest { name: name.into(), plaintext: pt.to_vec(), aad: aad.to_vec(), ..Default::default() })
        .await
        .map(|r| r.into_inner().ciphertext)
}

async fn decrypt(c: &mut CryptoServiceClient<Conn>, name: &str, ct: &[u8], aad: &[u8]) -> Result<Vec<u8>, Status> {
    c.decrypt(pb::DecryptRequest {
        name: name.into(),
        ciphertext: ct.to_vec(),
        aad: aad.to_vec(),
        ..Default::default()
    })
    .await
    .map(|r| r.into_inner().plaintext)
}

async fn wrap(c: &mut CryptoServiceClient<Conn>, name: &str, pt: &[u8]) -> Result<Vec<u8>, Status> {
    c.wrap_key(pb::WrapKeyRequest { name: name.into(), plaintext: pt.to_vec() }).await.map(|r| r.into_inner().wrapped)
}

async fn unwrap(c: &mut CryptoServiceClient<Conn>, name: &str, wrapped: &[u8]) -> Result<Vec<u8>, Status> {
    c.unwrap_key(pb::UnwrapKeyRequest { name: name.into(), wrapped: wrapped.to_vec() })
        .await
        .map(|r| r.into_inner().plaintext)
}

/// INVALID_ARGUMENT with exactly one BadRequest violation; returns (field, description).
#[track_caller]
fn bad_field(what: &str, r: Result<Vec<u8>, Status>) -> (String, String) {
    let s = r.expect_err(what);
    assert_eq!(s.code(), Code::InvalidArgument, "{what}: {s:?}");
    let br = s.get_error_details().bad_request().cloned().unwrap_or_else(|| panic!("{what}: no BadRequest"));
    assert_eq!(br.field_violations.len(), 1, "{what}: {br:?}");
    let v = &br.field_violations[0];
    (v.field.clone(), v.description.clone())
}

/// FAILED_PRECONDITION with one PreconditionFailure violation; returns (type, subject, description).
#[track_caller]
fn precondition(what: &str, r: Result<Vec<u8>, Status>) -> (String, String, String) {
    let s = r.expect_err(what);
    assert_eq!(s.code(), Code::FailedPrecondition, "{what}: {s:?}");
    let pf = s.get_error_details().precondition_failure().cloned().unwrap_or_else(|| panic!("{what}: no details"));
    assert_eq!(pf.violations.len(), 1, "{what}: {pf:?}");
    let v = &pf.violations[0];
    (v.r#type.clone(), v.subject.clone(), v.description.clone())
}

/// Enables or disables a key, which then is in the state that says so.
async fn set_enabled(app: &mut TestApp, name: &str, enabled: bool) -> pb::Key {
    let k = app.set_enabled(name, enabled).await;
    let want = if enabled { pb::KeyState::Enabled } else { pb::KeyState::Disabled };
    assert_eq!(k.state, want as i32);
    k
}

async fn audit_event_count(app: &TestApp) -> usize {
    let mut c = app.audit_client();
    let mut n = 0;
    let mut token = String::new();
    loop {
        let r = c
            .list_audit_events(pb::ListAuditEventsRequest { page_size: 1000, page_token: token, filter: String::new() })
            .await
            .expect("list audit events")
            .into_inner();
        n += r.audit_events.len();
        if r.next_page_token.is_empty() {
            return n;
        }
        token = r.next_page_token;
    }
}

/// Arms faults that fail every AWS Encrypt/Decrypt: an answer that is not UNAVAILABLE was
/// decided without asking AWS.
fn arm_crypto_tripwire(app: &TestApp) {
    for op in ["encrypt", "decrypt"] {
        app.faults.inject(Fault::Fail {
            op,
            key: None,
            error: KmsError::Unavailable("must not be called".into()),
            times: None,
        });
    }
}

#[tokio::test]
async fn keyward_key_round_trips_with_and_without_aad_and_wraps_rfc5649() {
    let mut app = TestApp::spawn().await;
    let mut c = app.crypto_client();
    let g = app.regular_group("vault").await;
    let k = keyward_key(&mut app, &g, "data", &ALL_CRYPTO_OPS).await;
    let audit_before = audit_event_count(&app).await;

    // Without aad.
    let ct = encrypt(&mut c, &k.name, b"attack at dawn", b"").await.expect("encrypt");
    assert_eq!(ct[0], 1, "format version 1");
    assert_eq!(&ct[1..17], uuid::Uuid::parse_str(&k.key_id).expect("uuid").as_bytes(), "the ciphertext names its key");
    assert_eq!(ct.len(), 14 + 45);
    assert!(!ct.windows(6).any(|w| w == b"attack"));
    assert_eq!(decrypt(&mut c, &k.name, &ct, b"").await.expect("decrypt"), b"attack at dawn");
    let again = encrypt(&mut c, &k.name, b"attack at dawn", b"").await.expect("encrypt again");
    assert_ne!(again, ct, "fresh nonce each time");
    assert_eq!(decrypt(&mut c, &k.name, &again, b"").await.expect("decrypt again"), b"attack at dawn");

    // With aad: needed to decrypt.
    let ct = encrypt(&mut c, &k.name, b"payload", b"tenant=42").await.expect("encrypt with aad");
    assert_eq!(decrypt(&mut c, &k.name, &ct, b"tenant=42").await.expect("decrypt with aad"), b"payload");
    let (field, _) = bad_field("aad left out", decrypt(&mut c, &k.name, &ct, b"").await);
    assert_eq!(field, "ciphertext");

    // Binary data of the largest size; one byte more is refused, as is nothing.
    let big: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    let ct = encrypt(&mut c, &k.name, &big, &[0u8, 255, 1]).await.expect("64 KiB");
    assert_eq!(decrypt(&mut c, &k.name, &ct, &[0u8, 255, 1]).await.expect("decrypt 64 KiB"), big);
    let too_big = vec![1u8; 65537];
    let (field, desc) = bad_field("64 KiB + 1", encrypt(&mut c, &k.name, &too_big, b"").await);
    assert_eq!(field, "plaintext");
    assert!(desc.contains("65536"), "{desc}");
    assert_eq!(bad_field("empty", encrypt(&mut c, &k.name, b"", b"").await), ("plaintext".into(), "required".into()));

    // Wrap/unwrap (RFC 5649): any length, padded to 8 plus 8.
    for len in [1usize, 16, 20, 32, 33, 64] {
        let material: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
        let wrapped = wrap(&mut c, &k.name, &material).await.unwrap_or_else(|e| panic!("wrap {len}: {e:?}"));
        assert_eq!(wrapped.len(), len.div_ceil(8) * 8 + 8, "RFC 5649 size for {len}");
        assert_eq!(unwrap(&mut c, &k.name, &wrapped).await.expect("unwrap"), material);
    }
    assert_eq!(bad_field("wrap nothing", wrap(&mut c, &k.name, b"").await).0, "plaintext");
    assert_eq!(bad_field("unwrap nothing", unwrap(&mut c, &k.name, b"").await).0, "wrapped");

    // Data-plane calls change nothing and write no audit events.
    assert_eq!(audit_event_count(&app).await, audit_before);
}

#[tokio::test]
async fn every_ciphertext_that_does_not_open_gets_one_message() {
    let mut app = TestApp::spawn().await;
    let mut c = app.crypto_client();
    let g = app.regular_group("vault").await;
    let k = keyward_key(&mut app, &g, "data", &ALL_CRYPTO_OPS).await;
    let other = keyward_key(&mut app, &g, "other", &ALL_CRYPTO_OPS).await;

    let ct = encrypt(&mut c, &k.name, b"the quick brown fox jumps", b"ctx").await.expect("encrypt");
    let mid = ct.len() / 2;
    let mut flipped_mid = ct.clone();
    flipped_mid[mid] ^= 0x01;
    let mut flipped_last = ct.clone();
    *flipped_last.last_mut().expect("bytes") ^= 0x80;
    let mut flipped_key_id = ct.clone();
    flipped_key_id[5] ^= 0x01;
    let mut version_2 = ct.clone();
    version_2[0] = 2;
    let others = encrypt(&mut c, &other.name, b"the quick brown fox jumps", b"ctx").await.expect("other key");
    let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        ("flipped middle byte", flipped_mid, b"ctx"),
        ("flipped last byte", flipped_last, b"ctx"),
        ("flipped key id", flipped_key_id, b"ctx"),
        ("unknown version", version_2, b"ctx"),
        ("truncated by one", ct[..ct.len() - 1].to_vec(), b"ctx"),
        ("truncated to the header", ct[..20].to_vec(), b"ctx"),
        ("one byte", ct[..1].to_vec(), b"ctx"),
        ("another key's ciphertext", others, b"ctx"),
        ("wrong aad", ct.clone(), b"ctX"),
        ("no aad", ct.clone(), b""),
        ("garbage", b"definitely not a ciphertext at all".to_vec(), b"ctx"),
    ];
    let mut messages = std::collections::BTreeSet::new();
    for (what, bytes, aad) in cases {
        let r = decrypt(&mut c, &k.name, &bytes, aad).await;
        let (field, desc) = bad_field(what, r);
        assert_eq!(field, "ciphertext", "{what}");
        assert!(desc.starts_with("could not decrypt"), "{what}: {desc}");
        messages.insert(desc);
    }
    assert_eq!(messages.len(), 1, "one message whatever the cause: {messages:?}");
    // The untouched ciphertext still opens.
    assert_eq!(decrypt(&mut c, &k.name, &ct, b"ctx").await.expect("decrypt"), b"the quick brown fox jumps");

    // Unwrap: garbage, too short, another key's wrap, a flipped byte → "could not unwrap".
    let material = [9u8; 32];
    let wrapped = wrap(&mut c, &k.name, &material).await.expect("wrap");
    let others_wrap = wrap(&mut c, &other.name, &material).await.expect("wrap other");
    let mut flipped = wrapped.clone();
    flipped[10] ^= 0x04;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", (0u8..40).collect()),
        ("too short", b"short".to_vec()),
        ("another key's wrap", others_wrap),
        ("flipped byte", flipped),
        ("truncated", wrapped[..wrapped.len() - 8].to_vec()),
    ];
    for (what, bytes) in cases {
        let (field, desc) = bad_field(what, unwrap(&mut c, &k.name, &bytes).await);
        assert_eq!((field.as_str(), desc.as_str()), ("wrapped", "could not unwrap"), "{what}");
    }
    assert_eq!(unwrap(&mut c, &k.name, &wrapped).await.expect("unwrap"), material);
}

#[tokio::test]
async fn key_ops_decide_what_a_key_may_do() {
    let mut app = TestApp::spawn().await;
    let mut c = app.crypto_client();
    let g = app.regular_group("vault").await;
    let enc_only = keyward_key(&mut app, &g, "enc-only", &[Op::Encrypt]).await;
    let wrap_only = keyward_key(&mut app, &g, "unwrap-only", &[Op::UnwrapKey, Op::Export]).await;

    let ct = encrypt(&mut c, &enc_only.name, b"secret", b"").await.expect("ENCRYPT allowed");
    let (kind, subject, desc) = precondition("no DECRYPT", decrypt(&mut c, &enc_only.name, &ct, b"").await);
    assert_eq!((kind.as_str(), subject.as_str()), ("KEY_OPS", enc_only.name.as_str()));
    assert!(desc.contains("DECRYPT"), "{desc}");
    let (kind, _, desc) = precondition("no WRAP_KEY", wrap(&mut c, &enc_only.name, &[1u8; 32]).await);
    assert_eq!(kind, "KEY_OPS");
    assert!(desc.contains("WRAP_KEY"), "{desc}");
    let (kind, _, desc) = precondition("no UNWRAP_KEY", unwrap(&mut c, &enc_only.name, &[1u8; 40]).await);
    assert_eq!(kind, "KEY_OPS");
    assert!(desc.contains("UNWRAP_KEY"), "{desc}");
    let (kind, _, desc) = precondition("no ENCRYPT", encrypt(&mut c, &wrap_only.name, b"x", b"").await);
    assert_eq!(kind, "KEY_OPS");
    assert!(desc.contains("does not allow ENCRYPT"), "{desc}");

    // The key's current record decides: granting DECRYPT makes the old ciphertext readable.
    let ops = vec![Op::Encrypt as i32, Op::Decrypt as i32];
    let k = app
        .update_key(pb::Key { name: enc_only.name.clone(), key_ops: ops, ..Default::default() }, &["key_ops"])
        .await
        .unwrap_or_else(|e| panic!("update key key_ops: {e:?}"));
    assert!(k.key_ops.contains(&(Op::Decrypt as i32)));
    assert_eq!(decrypt(&mut c, &enc_only.name, &ct, b"").await.expect("DECRYPT granted"), b"secret");
}

#[tokio::test]
async fn disabled_keyward_key_is_refused_until_enabled() {
    let mut app = TestApp::spawn().await;
    let mut c = app.crypto_client();
    let g = app.regular_group("vault").await;
    let k = keyward_key(&mut app, &g, "data", &ALL_CRYPTO_OPS).await;
    let ct = encrypt(&mut c, &k.name, b"before", b"").await.expect("encrypt");
    let wrapped = wrap(&mut c, &k.name, &[3u8; 16]).await.expect("wrap");

    set_enabled(&mut app, &k.name, false).await;
    let (kind, subject, desc) = precondition("encrypt disabled", encrypt(&mut c, &k.name, b"after", b"").await);
    assert_eq!((kind.as_str(), subject.as_str()), ("KEY_STATE", k.name.as_str()));
    assert!(desc.contains("DISABLED"), "{desc}");
    assert_eq!(precondition("decrypt disabled", decrypt(&mut c, &k.name, &ct, b"").await).0, "KEY_STATE");
    assert_eq!(precondition("wrap disabled", wrap(&mut c, &k.name, &[3u8; 16]).await).0, "KEY_STATE");
    assert_eq!(precondition("unwrap disabled", unwrap(&mut c, &k.name, &wrapped).await).0, "KEY_STATE");

    set_enabled(&mut app, &k.name, true).await;
    assert_eq!(decrypt(&mut c, &k.name, &ct, b"").await.expect("decrypt after enable"), b"before");
    assert_eq!(unwrap(&mut c, &k.name, &wrapped).await.expect("unwrap after enable"), [3u8; 16]);
}

#[tokio::test]
async fn virtual_key_encrypts_and_decrypts_through_aws() {
    let mut app = TestApp::spawn().await;
    let mut c = app.crypto_client();
    let g = app.create_aws_group("aws").await;
    let k = aws_key(&mut app, &g, "data", &[Op::Encrypt, Op::Decrypt]).await;
    let other = aws_key(&mut app, &g, "other", &[Op::Encrypt, Op::Decrypt]).await;

    // Without aad: AWS's own ciphertext, which AWS itself decrypts.
    let ct = encrypt(&mut c, &k.name, b"hello aws", b"").await.expect("encrypt");
    let direct = app
        .aws
        .decrypt()
        .ciphertext_blob(aws_sdk_kms::primitives::Blob::new(ct.clone()))
        .send()
        .await
        .expect("AWS decrypts what Keyward's Encrypt returned");
    assert_eq!(direct.plaintext().map(|b| b.as_ref().to_vec()), Some(b"hello aws".to_vec()));
    assert_eq!(
        direct.key_id().map(|id| id.ends_with(&k.aws.as_ref().expect("aws").aws_key_id)),
        Some(true),
        "{:?}",
        direct.key_id()
    );
    assert_eq!(decrypt(&mut c, &k.name, &ct, b"").await.expect("decrypt"), b"hello aws");

    // With aad (encryption context).
    let ct_aad = encrypt(&mut c, &k.name, b"bound", b"tenant=7").await.expect("encrypt with aad");
    assert_eq!(decrypt(&mut c, &k.name, &ct_aad, b"tenant=7").await.expect("decrypt with aad"), b"bound");

    // What does not open: one INVALID_ARGUMENT on `ciphertext`, the same message as Keyward keys.
    let mut flipped_mid = ct.clone();
    let mid = flipped_mid.len() / 2;
    flipped_mid[mid] ^= 0x01;
    let mut flipped_last = ct.clone();
    *flipped_last.last_mut().expect("bytes") ^= 0x01;
    let others = encrypt(&mut c, &other.name, b"hello aws", b"").await.expect("other key");
    let cases: Vec<(&str, Vec<u8>, &[u8])> = vec![
        ("wrong aad", ct_aad.clone(), b"tenant=8"),
        ("aad left out", ct_aad.clone(), b""),
        ("flipped middle byte", flipped_mid, b""),
        ("flipped last byte", flipped_last, b""),
        ("truncated", ct[..ct.len() / 2].to_vec(), b""),
        ("another key's ciphertext", others, b""),
        ("garbage", b"definitely not an AWS KMS ciphertext blob".to_vec(), b""),
        ("one byte", vec![7u8], b""),
    ];
    let mut messages = std::collections::BTreeSet::new();
    for (what, bytes, aad) in cases {
        let (field, desc) = bad_field(what, decrypt(&mut c, &k.name, &bytes, aad).await);
        assert_eq!(field, "ciphertext", "{what}");
        messages.insert(desc);
    }
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(messages.iter().all(|m| m.starts_with("could not decrypt")), "{messages:?}");

    // AWS's 4096-byte limit is Keyward's for virtual keys, checked before calling AWS.
    let at_limit = vec![0x5au8; 4096];
    let ct = encrypt(&mut c, &k.name, &at_limit, b"").await.expect("4096 bytes");
    assert_eq!(decrypt(&mut c, &k.name, &ct, b"").await.expect("decrypt 4096"), at_limit);
    arm_crypto_tripwire(&app);
    let (field, desc) = bad_field("4097 bytes", encrypt(&mut c, &k.name, &[0u8; 4097], b"").await);
    assert_eq!(field, "plaintext");
    assert!(desc.contains("4096"), "{desc}");

    // AWS KMS has no RFC 5649 wrap.
    let (kind, subject, desc) = precondition("wrap virtual", wrap(&mut c, &k.name, &[1u8; 32]).await);
    assert_eq!((kind.as_str(), subject.as_str()), ("NOT_KEYWARD_KEY", k.name.as_str()));
    assert!(desc.contains("RFC 5649"), "{desc}");
    assert_eq!(precondition("unwrap virtual", unwrap(&mut c, &k.name, &[1u8; 40]).await).0, "NOT_KEYWARD_KEY");
}

#[tokio::test]
async fn virtual_key_refusals_are_decided_without_asking_aws() {
    let mut app = TestApp::spawn().await;
    let mut c = app.crypto_client();
    let g = app.create_aws_group("aws").await;
    let k = aws_key(&mut app, &g, "data", &[Op::Encrypt, Op::Decrypt]).await;
    let enc_only = aws_key(&mut app, &g, "enc-only", &[Op::Encrypt]).await;
    let quiet = aws_key(&mut app, &g, "quiet", &[Op::Encrypt, Op::Decrypt]).await;
    let ct = encrypt(&mut c, &k.name, b"x", b"").await.expect("encrypt");
    let ct2 = encrypt(&mut c, &enc_only.name, b"x", b"").await.expect("encrypt");

    // Disabled through Keyward (AWS DisableKey too).
    set_enabled(&mut app, &k.name, false).await;
    // Disabled only in Keyward's records: AWS still has the key Enabled and would encrypt.
    app.exec_sql(&format!("UPDATE keys SET state = 'DISABLED' WHERE id = '{}'", quiet.key_id)).await;
    let aws_id = &quiet.aws.as_ref().expect("aws").aws_key_id;
    let d = app.aws.describe_key().key_id(aws_id).send().await.expect("describe");
    assert_eq!(d.key_metadata().map(|m| m.enabled()), Some(true), "AWS still has it enabled");

    arm_crypto_tripwire(&app);
    // The tripwire works: an allowed call reaches it.
    let s = encrypt(&mut c, &enc_only.name, b"x", b"").await.expect_err("tripwire");
    assert_eq!(s.code(), Code::Unavailable, "{s:?}");
    assert!(s.message().contains("must not be called"), "{s:?}");

    for (what, key, r) in [
        ("encrypt disabled", &k, encrypt(&mut c, &k.name, b"y", b"").await),
        ("decrypt disabled", &k, decrypt(&mut c, &k.name, &ct, b"").await),
        ("encrypt disabled in Keyward only", &quiet, encrypt(&mut c, &quiet.name, b"y", b"").await),
    ] {
        let (kind, subject, desc) = precondition(what, r);
        assert_eq!((kind.as_str(), subject.as_str()), ("KEY_STATE", key.name.as_str()), "{what}");
        assert!(!desc.contains("must not be called"), "{what}: {desc}");
    }
    let (kind, _, desc) = precondition("no DECRYPT", decrypt(&mut c, &enc_only.name, &ct2, b"").await);
    assert_eq!(kind, "KEY_OPS");
    assert!(desc.contains("DECRYPT"), "{desc}");
}

#[tokio::test]
async fn missing_keys_are_not_found_and_bad_names_invalid() {
    let mut app = TestApp::spawn().await;
    let mut c = app.crypto_client();
    let g = app.regular_group("vault").await;
    let k = keyward_key(&mut app, &g, "data", &ALL_CRYPTO_OPS).await;
    let ct = encrypt(&mut c, &k.name, b"x", b"").await.expect("encrypt");

    let missing = [
        format!("{}/keys/{}", g.name, uuid::Uuid::now_v7()),
        format!("groups/{}/keys/{}", uuid::Uuid::now_v7(), k.key_id),
    ];
    for name in &missing {
        for (what, r) in [
            ("encrypt", encrypt(&mut c, name, b"x", b"").await),
            ("decrypt", decrypt(&mut c, name, &ct, b"").await),
            ("wrap", wrap(&mut c, name, &[1u8; 16]).await),
            ("unwrap", unwrap(&mut c, name, &[1u8; 24]).await),
        ] {
            let s = r.expect_err(what);
            assert_eq!(s.code(), Code::NotFound, "{what} {name}: {s:?}");
        }
    }

    let bad = [
        String::new(),
        "data".to_owned(),
        format!("{}/keys/not-a-uuid", g.name),
        format!("groups/-/keys/{}", k.key_id),
        format!("{}/keys", g.name),
        format!("{}/extra", k.name),
    ];
    for name in &bad {
        for (what, r) in [
            ("encrypt", encrypt(&mut c, name, b"x", b"").await),
            ("decrypt", decrypt(&mut c, name, &ct, b"").await),
            ("wrap", wrap(&mut c, name, &[1u8; 16]).await),
            ("unwrap", unwrap(&mut c, name, &[1u8; 24]).await),
        ] {
            let (field, _) = bad_field(&format!("{what} {name:?}"), r);
            assert_eq!(field, "name", "{what} {name:?}");
        }
    }
}

#[tokio::test]
async fn plaintext_ciphertext_and_material_never_reach_the_logs() {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();

    let mut app = TestApp::spawn().await;
    let mut c = app.crypto_client();
    let regular = app.regular_group("vault").await;
    let kk = keyward_key(&mut app, &regular, "data", &ALL_CRYPTO_OPS).await;
    let aws = app.create_aws_group("aws").await;
    let vk = aws_key(&mut app, &aws, "data", &[Op::Encrypt, Op::Decrypt]).await;

    let canary = format!("log-canary-{}", uuid::Uuid::new_v4().simple());
    let aad = format!("aad-canary-{}", uuid::Uuid::new_v4().simple());
    let mut ciphertexts = Vec::new();
    for k in [&kk, &vk] {
        let ct = encrypt(&mut c, &k.name, canary.as_bytes(), aad.as_bytes()).await.expect("encrypt");
        assert_eq!(decrypt(&mut c, &k.name, &ct, aad.as_bytes()).await.expect("decrypt"), canary.as_bytes());
        let mut bad = ct.clone();
        bad[ct.len() / 2] ^= 1;
        bad_field("tampered", decrypt(&mut c, &k.name, &bad, aad.as_bytes()).await);
        ciphertexts.push(ct);
    }
    let wrapped = wrap(&mut c, &kk.name, canary.as_bytes()).await.expect("wrap");
    assert_eq!(unwrap(&mut c, &kk.name, &wrapped).await.expect("unwrap"), canary.as_bytes());
    ciphertexts.push(wrapped);
    let kid = keyward_shared::domain::KeyId::parse(&kk.key_id).expect("key id");
    let material = app.keyward.store().key_material(kid).await.expect("material").to_vec();

    let logs = keyward_tests::logs::captured();
    let shown = |s: &[u8]| [String::from_utf8_lossy(s).into_owned(), b64(s), hex(s)];
    // Plaintext, aad and key material: nowhere, not even in the AWS SDK's TRACE lines.
    for secret in [canary.as_bytes(), aad.as_bytes(), &material] {
        for form in shown(secret) {
            assert!(!logs.contains(&form), "{form} reached the logs");
        }
    }
    // Ciphertexts: never logged by Keyward. (At TRACE, aws-smithy-runtime itself prints AWS
    // Encrypt's response body and output, CiphertextBlob included; those lines are the SDK's.)
    let ours: Vec<&str> = logs.lines().filter(|l| !l.contains(" aws_smithy_runtime::")).collect();
    for ct in &ciphertexts {
        for form in shown(ct) {
            let leak = ours.iter().find(|l| l.contains(&form));
            assert!(leak.is_none(), "a ciphertext reached the logs: {leak:?}");
        }
    }
}

#[tokio::test]
async fn aes_128_and_aes_192_keyward_keys_encrypt_and_stay_out_of_aws() {
    let mut app = TestApp::spawn().await;
    let vault = app.regular_group("sizes").await;
    let other = app.regular_group("sizes-copies").await;
    let aws = app.create_aws_group("sizes-aws").await;
    let mut c = app.crypto_client();
    let k128 = app
        .create_key(
            &vault.name,
            "k128",
            pb::KeySpec::Aes128,
            &[Op::Encrypt, Op::Decrypt, Op::WrapKey, Op::UnwrapKey, Op::Export],
        )
        .await;
    let k192 = app.create_key(&vault.name, "k192", pb::KeySpec::Aes192, &[Op::Encrypt, Op::Decrypt, Op::Export]).await;
    assert_eq!(k128.key_spec, pb::KeySpec::Aes128 as i32);
    assert_eq!(k192.key_spec, pb::KeySpec::Aes192 as i32);
    for k in [&k128, &k192] {
        let ct = encrypt(&mut c, &k.name, b"sized", b"aad").await.expect("encrypt");
        assert_eq!(decrypt(&mut c, &k.name, &ct, b"aad").await.expect("decrypt"), b"sized");
    }
    let w = wrap(&mut c, &k128.name, &[9u8; 32]).await.expect("AES-128 wraps");
    assert_eq!(unwrap(&mut c, &k128.name, &w).await.expect("unwrap"), vec![9u8; 32]);

    // No AES-192 key wrap; no AWS copies of other sizes than 256 bits.
    let e = app
        .try_create_key(
            &vault.name,
            keyward_tests::fixtures::key("w192", pb::KeySpec::Aes192, &[Op::WrapKey], &[], &[]),
        )
        .await
        .expect_err("AES-192 wrap");
    keyward_tests::status::invalid_on(&e, "key.key_ops", "AES-192 wrap");
    let before = app.aws_key_count().await;
    let to_aws = pb::CopyKeyRequest { source: k128.name.clone(), target_group: aws.name.clone(), ..Default::default() };
    let e = app.keys.copy_key(to_aws).await.expect_err("AES-128 into AWS");
    assert!(keyward_tests::status::precondition(&e, "KEY_SPEC", "AES-128 into AWS").contains("256-bit"));
    assert_eq!(app.aws_key_count().await, before, "no AWS key");
    let to_regular =
        pb::CopyKeyRequest { source: k192.name.clone(), target_group: other.name.clone(), ..Default::default() };
    let copy = app.keys.copy_key(to_regular).await.expect("AES-192 into REGULAR").into_inner();
    assert_eq!(copy.key_spec, pb::KeySpec::Aes192 as i32);

    // ImportKey takes material of the key's size.
    let import = |material: Vec<u8>| pb::ImportKeyRequest {
        parent: vault.name.clone(),
        key: Some(keyward_tests::fixtures::key(
            "imported-128",
            pb::KeySpec::Aes128,
            &[Op::Encrypt, Op::Decrypt],
            &[],
            &[],
        )),
        material,
        format: pb::MaterialFormat::Raw as i32,
        ..Default::default()
    };
    let e = app.keys.import_key(import(vec![1u8; 32])).await.expect_err("32 bytes for AES-128");
    assert!(keyward_tests::status::invalid_on(&e, "material", "wrong size").contains("16 bytes"));
    let k = app.keys.import_key(import(vec![1u8; 16])).await.expect("16 bytes").into_inner();
    assert_eq!(k.key_spec, pb::KeySpec::Aes128 as i32);
    let ct = encrypt(&mut c, &k.name, b"imported", b"").await.expect("encrypt");
    assert_eq!(decrypt(&mut c, &k.name, &ct, b"").await.expect("decrypt"), b"imported");
}

/// The audit events of `resource`, as (action, outcome, detail).
async fn events_of(app: &TestApp, resource: &str) -> Vec<(String, String, String)> {
    let mut audit = app.audit_client();
    let req = pb::ListAuditEventsRequest {
        filter: format!("resource = \"{resource}\""),
        page_size: 100,
        ..Default::default()
    };
    let events = audit.list_audit_events(req).await.expect("audit").into_inner().audit_events;
    events.into_iter().map(|e| (e.action, e.outcome, e.detail)).collect()
}

#[tokio::test]
async fn a_group_that_asks_for_it_has_every_crypto_call_audited_and_never_its_data() {
    let mut app = TestApp::spawn().await;
    let audited = app
        .create_group(pb::Group {
            display_name: "audited".into(),
            kind: pb::GroupKind::Regular as i32,
            audit_key_use: true,
            ..Default::default()
        })
        .await
        .expect("group");
    assert!(audited.audit_key_use);
    let quiet = app.regular_group("quiet").await;
    let k = keyward_key(&mut app, &audited, "k", &ALL_CRYPTO_OPS).await;
    let q = keyward_key(&mut app, &quiet, "q", &ALL_CRYPTO_OPS).await;
    let mut c = app.crypto_client();
    let secret = b"card 4111 1111 1111 1111";
    let ct = encrypt(&mut c, &k.name, secret, b"").await.expect("encrypt");
    decrypt(&mut c, &k.name, b"not a ciphertext", b"").await.expect_err("bad ciphertext");
    encrypt(&mut c, &q.name, secret, b"").await.expect("unaudited encrypt");

    let seen = events_of(&app, &k.name).await;
    let crypto: Vec<(&str, &str)> = seen
        .iter()
        .filter(|(a, _, _)| a.starts_with("keyward.v1.CryptoService/"))
        .map(|(a, o, _)| (a.as_str(), o.as_str()))
        .collect();
    assert_eq!(
        crypto,
        vec![("keyward.v1.CryptoService/Encrypt", "OK"), ("keyward.v1.CryptoService/Decrypt", "INVALID_ARGUMENT")],
        "{seen:?}"
    );
    let all = format!("{seen:?}");
    assert!(!all.contains("4111") && !all.contains(&hex::encode(&ct)), "data in the audit log: {all}");
    let quiet_events = events_of(&app, &q.name).await;
    assert!(quiet_events.iter().all(|(a, _, _)| !a.starts_with("keyward.v1.CryptoService/")), "{quiet_events:?}");

    // Turned off: the next call is not audited.
    let mut g = audited.clone();
    g.audit_key_use = false;
    g.etag.clear();
    let req = pb::UpdateGroupRequest { group: Some(g), update_mask: keyward_tests::fixtures::mask(&["audit_key_use"]) };
    let off = app.groups.update_group(req).await.expect("update").into_inner();
    assert!(!off.audit_key_use);
    encrypt(&mut c, &k.name, secret, b"").await.expect("encrypt");
    let after = events_of(&app, &k.name).await;
    assert_eq!(after.iter().filter(|(a, _, _)| a.starts_with("keyward.v1.CryptoService/")).count(), 2, "{after:?}");
}

#[tokio::test]
async fn a_key_disabled_through_one_server_refuses_here_at_once_and_on_another_within_a_second() {
    let mut app = TestApp::spawn().await;
    let g = app.regular_group("busy").await;
    let k = keyward_key(&mut app, &g, "k", &[Op::Encrypt, Op::Decrypt]).await;
    let (gid, kid) = {
        let mut parts = k.name.split('/');
        let (_, g, _, k) = (parts.next(), parts.next().unwrap(), parts.next(), parts.next().unwrap());
        (keyward_shared::domain::GroupId::parse(g).unwrap(), keyward_shared::domain::KeyId::parse(k).unwrap())
    };
    // Another server's view (its own pool and caches), reading the key for each call.
    let other = app.second_keyward().await;
    let ctx = || other.ctx(keyward_shared::domain::Caller::system("other", "r"));
    let binding = keyward_shared::Binding::default();
    for _ in 0..3 {
        other.encrypt(&ctx(), gid, kid, b"hello", &binding).await.expect("enabled: encrypts");
    }
    app.set_enabled(&k.name, false).await;
    // Here: refused at once.
    let err = app
        .crypto_client()
        .encrypt(pb::EncryptRequest { name: k.name.clone(), plaintext: b"hello".to_vec(), ..Default::default() })
        .await
        .expect_err("disabled here");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    // There: refused once its view is a second old (its clock moved on by a second).
    app.clock.advance(std::time::Duration::from_millis(1001));
    let err = other.encrypt(&ctx(), gid, kid, b"hello", &binding).await.expect_err("disabled there too");
    assert!(err.to_string().contains("DISABLED") || err.to_string().contains("disabled"), "{err}");
}
