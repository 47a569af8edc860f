//! Bring your own key: ImportKey into AWS_KMS groups in every material format, with and without
//! an RFC 5649 wrapping key, keeping no copy of the material anywhere in the database; every
//! decoding refusal before any AWS call; a failure injected at each step of the AWS import (and
//! in its compensation) leaving Keyward and AWS agreeing; CopyKey with its links and suggested
//! names; DeleteKeyMaterial / ReimportKeyMaterial; the crypto policy.
//!
//! That AWS holds exactly the material given is proven with LocalStack's own ciphertext format
//! (`key id (36) ‖ iv ‖ tag ‖ ciphertext`): a reference key made with LocalStack's
//! `_custom_key_material_` tag set to the expected bytes opens a ciphertext of the imported key
//! once the key id in its header is swapped for the reference key's.

use std::collections::BTreeMap;

use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded};
use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use keyward_proto::v1 as pb;
use keyward_shared::kms::Error as KmsError;
use keyward_shared::kms::faults::Fault;
use keyward_tests::fixtures::{aws_group, aws_id, ops};
use keyward_tests::status::{invalid_on, precondition};
use keyward_tests::{TestApp, logs};
use tonic::{Code, Status};

use pb::KeyOperation as Op;
use pb::MaterialFormat as Fmt;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

// ---------------------------------------------------------------------------------------------
// Material helpers (all independent of Keyward's own code).

fn random_bytes(n: usize) -> Vec<u8> {
    let mut v = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut v).expect("random");
    v
}

fn hex_of(bytes: &[u8], upper: bool) -> String {
    bytes.iter().map(|b| if upper { format!("{b:02X}") } else { format!("{b:02x}") }).collect()
}

/// RFC 5649 AES key wrap with padding of `plaintext` under the 32-byte `kek`.
fn rfc5649_wrap(kek: &[u8], plaintext: &[u8]) -> Vec<u8> {
    let kek = AesKek::new(&AES_256, kek).expect("kek");
    let mut out = vec![0u8; plaintext.len() + 16];
    let n = kek.wrap_with_padding(plaintext, &mut out).expect("wrap").len();
    out.truncate(n);
    out
}

/// `bytes` written as ImportKey's `format` says: RAW as is; BASE64 standard alphabet in lines of
/// 16 characters with mixed line endings; HEX upper case with a `0x` prefix and a trailing line
/// break.
fn encode(format: Fmt, bytes: &[u8]) -> Vec<u8> {
    match format {
        Fmt::Raw => bytes.to_vec(),
        Fmt::Base64 => {
            let text = B64.encode(bytes);
            let mut out = String::from("\n");
            for (i, chunk) in text.as_bytes().chunks(16).enumerate() {
                out.push_str(std::str::from_utf8(chunk).expect("ascii"));
                out.push_str(if i % 2 == 0 { "\r\n" } else { "\n" });
            }
            assert!(out.matches('\n').count() >= 3, "the base64 text has line breaks");
            out.into_bytes()
        }
        Fmt::Hex => format!("0x{}\n", hex_of(bytes, true)).into_bytes(),
        Fmt::Unspecified => panic!("no encoding for UNSPECIFIED"),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Asserts that `secret` appears in `dump` neither raw nor as lower/upper hex nor as base64
/// (padded, unpadded, url-safe).
#[track_caller]
fn assert_absent(dump: &[u8], secret: &[u8], what: &str) {
    let forms: [(&str, Vec<u8>); 6] = [
        ("raw", secret.to_vec()),
        ("lower hex", hex_of(secret, false).into_bytes()),
        ("upper hex", hex_of(secret, true).into_bytes()),
        ("base64", B64.encode(secret).into_bytes()),
        ("unpadded base64", B64.encode(secret).trim_end_matches('=').as_bytes().to_vec()),
        ("base64url", base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret).into_bytes()),
    ];
    for (form, needle) in forms {
        assert!(!contains(dump, &needle), "{what} found as {form}");
    }
}

// ---------------------------------------------------------------------------------------------
// API helpers.

fn import_req(parent: &str, name: &str, key_ops: &[Op], material: Vec<u8>, format: Fmt) -> pb::ImportKeyRequest {
    pb::ImportKeyRequest {
        parent: parent.into(),
        key: Some(pb::Key { display_name: name.into(), key_ops: ops(key_ops), ..Default::default() }),
        material,
        format: format as i32,
        wrapping_key: String::new(),
        valid_to: None,
    }
}

async fn import(app: &mut TestApp, req: pb::ImportKeyRequest) -> Result<pb::Key, Status> {
    app.keys.import_key(req).await.map(|r| r.into_inner())
}

/// A Keyward key in a REGULAR group with material chosen here (RAW import), so its bytes are known.
async fn known_keyward_key(
    app: &mut TestApp,
    group: &pb::Group,
    name: &str,
    key_ops: &[Op],
    material: &[u8],
) -> pb::Key {
    let k = import(app, import_req(&group.name, name, key_ops, material.to_vec(), Fmt::Raw))
        .await
        .unwrap_or_else(|e| panic!("import {name} into the REGULAR group: {e:?}"));
    assert!(!k.r#virtual, "{k:?}");
    assert_eq!(k.key_spec, pb::KeySpec::Aes256 as i32, "unset key_spec picks AES_256 in a REGULAR group");
    assert_eq!(k.source, pb::KeySource::Imported as i32);
    assert_eq!(k.state, pb::KeyState::Enabled as i32);
    assert_eq!(k.key_ops, ops(key_ops));
    k
}

/// CopyKey as the principal of `token` (`None`: the harness's admin).
async fn copy(app: &mut TestApp, req: pb::CopyKeyRequest, token: Option<&str>) -> Result<pb::Key, Status> {
    let mut r = tonic::Request::new(req);
    if let Some(t) = token {
        r.metadata_mut().insert("authorization", format!("Bearer {t}").parse().expect("ascii"));
    }
    app.keys.copy_key(r).await.map(|r| r.into_inner())
}

// ---------------------------------------------------------------------------------------------
// AWS-side checks.

async fn aws_encrypt(app: &TestApp, id: &str, plaintext: &[u8]) -> Vec<u8> {
    let r = app.aws.encrypt().key_id(id).plaintext(Blob::new(plaintext)).send().await.expect("AWS Encrypt");
    r.ciphertext_blob().expect("ciphertext").as_ref().to_vec()
}

async fn aws_decrypt(app: &TestApp, id: &str, ciphertext: &[u8]) -> Result<Vec<u8>, String> {
    match app.aws.decrypt().key_id(id).ciphertext_blob(Blob::new(ciphertext)).send().await {
        Ok(r) => Ok(r.plaintext().expect("plaintext").as_ref().to_vec()),
        Err(e) => Err(format!("{:?}", e.into_service_error())),
    }
}

/// AWS Encrypt then Decrypt with the key round-trips; returns (plaintext, ciphertext).
async fn aws_round_trip(app: &TestApp, id: &str) -> (Vec<u8>, Vec<u8>) {
    let pt = random_bytes(48);
    let ct = aws_encrypt(app, id, &pt).await;
    assert_ne!(ct, pt);
    assert_eq!(aws_decrypt(app, id, &ct).await.expect("AWS Decrypt"), pt, "round trip through {id}");
    (pt, ct)
}

/// Whether AWS key `id` holds exactly `material` (see the module docs). Makes one AWS key.
async fn aws_holds(app: &TestApp, id: &str, material: &[u8]) -> bool {
    let pt = random_bytes(40);
    let ct = aws_encrypt(app, id, &pt).await;
    assert!(ct.len() > 36 && &ct[..36] == id.as_bytes(), "a LocalStack ciphertext names its key id first");
    let tag = aws_sdk_kms::types::Tag::builder()
        .tag_key("_custom_key_material_")
        .tag_value(B64.encode(material))
        .build()
        .expect("tag");
    let reference = app.aws.create_key().tags(tag).send().await.expect("reference key");
    let reference = reference.key_metadata().expect("meta").key_id().to_owned();
    assert_eq!(reference.len(), 36);
    let mut swapped = ct.clone();
    swapped[..36].copy_from_slice(reference.as_bytes());
    match app.aws.decrypt().ciphertext_blob(Blob::new(swapped)).send().await {
        Ok(r) => r.plaintext().map(|p| p.as_ref() == pt.as_slice()).unwrap_or(false),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------------------------------------
// ImportKey into AWS.

#[tokio::test]
async fn import_into_aws_in_every_format_with_and_without_wrapping_key_keeps_no_copy() {
    let mut app = TestApp::spawn().await;
    let aws = app.create_aws_group("byok-aws").await;
    let regular = app.regular_group("byok-kek").await;
    let kek_material = random_bytes(32);
    let kek = known_keyward_key(&mut app, &regular, "kek", &[Op::UnwrapKey], &kek_material).await;
    assert_eq!(app.aws_key_count().await, 0, "a REGULAR import makes no AWS key");
    let mut crypto = app.crypto_client();

    struct Case {
        format: Fmt,
        wrapped: bool,
        material: Vec<u8>,
        /// What was uploaded, before its text encoding (the wrapped bytes when wrapped).
        file: Vec<u8>,
        key: pb::Key,
    }
    let mut cases = Vec::new();
    for (i, (format, wrapped)) in
        [Fmt::Raw, Fmt::Base64, Fmt::Hex].into_iter().flat_map(|f| [(f, false), (f, true)]).enumerate()
    {
        let what = format!("{}{}", format.as_str_name(), if wrapped { " wrapped" } else { "" });
        let material = random_bytes(32);
        let file = if wrapped { rfc5649_wrap(&kek_material, &material) } else { material.clone() };
        if wrapped {
            assert_eq!(file.len(), 40);
            // The Keyward key holds exactly the bytes imported into it.
            let back = crypto
                .unwrap_key(pb::UnwrapKeyRequest { name: kek.name.clone(), wrapped: file.clone() })
                .await
                .expect("UnwrapKey with the imported wrapping key")
                .into_inner()
                .plaintext;
            assert_eq!(back, material, "{what}: the wrapping key's material is the one imported");
        }
        let name = format!("imported-{i}");
        let alias = format!("alias/byok/{i}");
        let mut req = import_req(&aws.name, &name, &[Op::Encrypt, Op::Decrypt], encode(format, &file), format);
        let k = req.key.as_mut().expect("key");
        k.description = format!("{what} import");
        k.tags = [("case".to_owned(), what.replace(' ', "-")), ("team".to_owned(), "sec".to_owned())].into();
        k.aws = Some(pb::AwsKeyDetails { aliases: vec![alias.clone()], ..Default::default() });
        if i % 2 == 0 {
            k.key_spec = pb::KeySpec::SymmetricDefault as i32;
        }
        if wrapped {
            req.wrapping_key = kek.name.clone();
        }
        let key = import(&mut app, req).await.unwrap_or_else(|e| panic!("{what}: {e:?}"));

        // What Keyward answers.
        assert_eq!(key.display_name, name);
        assert_eq!(key.group, aws.name);
        assert_eq!(key.state, pb::KeyState::Enabled as i32, "{what}: {key:?}");
        assert!(key.enabled);
        assert_eq!(key.source, pb::KeySource::Imported as i32, "{what}");
        assert!(key.r#virtual);
        assert_eq!(key.key_spec, pb::KeySpec::SymmetricDefault as i32, "{what}");
        assert_eq!(key.key_ops, ops(&[Op::Encrypt, Op::Decrypt]));
        assert!(key.created_by.starts_with("principals/"), "{what}: created by {}", key.created_by);
        assert!(key.links.is_empty(), "{what}: an upload has no source key: {:?}", key.links);
        let details = key.aws.clone().expect("aws details");
        assert_eq!(details.aliases, vec![alias.clone()], "{what}");
        assert_eq!(details.aws_key_state, "Enabled", "{what}");
        assert_eq!(details.origin, "EXTERNAL", "{what}");
        assert!(details.enabled);
        assert!(details.key_arn.ends_with(&format!("key/{}", details.aws_key_id)), "{details:?}");
        assert_eq!(app.get_key(&key.name).await, key, "{what}: a read returns what ImportKey returned");

        // What AWS holds.
        let id = aws_id(&key);
        let m = app.aws_meta(&id).await;
        assert_eq!(m.key_state().map(|s| s.as_str()), Some("Enabled"), "{what}");
        assert_eq!(m.origin().map(|o| o.as_str()), Some("EXTERNAL"), "{what}");
        assert_eq!(m.key_usage().map(|u| u.as_str()), Some("ENCRYPT_DECRYPT"), "{what}");
        assert_eq!(m.description(), Some(format!("{what} import").as_str()));
        assert_eq!(
            m.expiration_model().map(|e| e.as_str()),
            Some("KEY_MATERIAL_DOES_NOT_EXPIRE"),
            "{what}: no valid_to given"
        );
        assert_eq!(app.aws_aliases(&id).await, vec![alias.clone()], "{what}");
        assert_eq!(app.aws_tags(&id).await, key.tags.clone().into_iter().collect::<BTreeMap<_, _>>(), "{what}");
        aws_round_trip(&app, &id).await;
        cases.push(Case { format, wrapped, material, file, key });
    }
    assert_eq!(app.aws_key_count().await, 6);
    assert_eq!(app.all_keys(&aws.name, "source = IMPORTED AND state = ENABLED").await.len(), 6);

    // No table holds the material, nor the uploaded file; nor does any log line.
    let dump = app.database_dump().await;
    for c in &cases {
        assert!(contains(&dump, aws_id(&c.key).as_bytes()), "the dump holds the keys");
        let what = format!("{} wrapped={}", c.format.as_str_name(), c.wrapped);
        assert_absent(&dump, &c.material, &format!("{what}: the material in the database"));
        if c.wrapped {
            assert_absent(&dump, &c.file, &format!("{what}: the uploaded file in the database"));
        }
    }
    assert_absent(&dump, &kek_material, "the wrapping key's material in plaintext in the database");
    let logs = logs::captured().into_bytes();
    assert!(contains(&logs, b"key material imported"), "logs were captured");
    for c in &cases {
        assert_absent(&logs, &c.material, "the material in a log line");
    }

    // AWS holds exactly the material given (and the check tells materials apart).
    for c in &cases {
        let what = format!("{} wrapped={}", c.format.as_str_name(), c.wrapped);
        assert!(aws_holds(&app, &aws_id(&c.key), &c.material).await, "{what}: AWS holds the material given");
    }
    assert!(!aws_holds(&app, &aws_id(&cases[0].key), &cases[1].material).await, "the check tells materials apart");
}

/// (what, material, format, wrapping key, texts expected in the `material` violation)
type Refusal<'a> = (&'a str, Vec<u8>, Fmt, &'a str, Vec<&'a str>);

#[tokio::test]
async fn material_that_does_not_decode_to_32_bytes_is_refused_before_any_aws_call() {
    let mut app = TestApp::spawn().await;
    let aws = app.create_aws_group("strict-aws").await;
    let regular = app.regular_group("strict-regular").await;
    let kek_material = random_bytes(32);
    let kek = known_keyward_key(&mut app, &regular, "kek", &[Op::UnwrapKey], &kek_material).await;
    let other = known_keyward_key(&mut app, &regular, "other-kek", &[Op::UnwrapKey], &random_bytes(32)).await;
    let no_unwrap =
        known_keyward_key(&mut app, &regular, "no-unwrap", &[Op::Encrypt, Op::Decrypt, Op::WrapKey], &random_bytes(32))
            .await;
    let aws_before = app.aws_key_count().await;
    assert_eq!(aws_before, 0);

    let material = random_bytes(32);
    let hex = hex_of(&material, false);
    // base64url text: bytes whose standard base64 holds + and / (so the url alphabet has - and _).
    let url_material: Vec<u8> = material.iter().map(|b| b | 0xf8).collect();
    let url_text = base64::engine::general_purpose::URL_SAFE.encode(&url_material);
    assert!(url_text.contains('-') || url_text.contains('_'));
    let b64_of_b64 = B64.encode(B64.encode(&material));
    // One inner space makes an odd character count, two an even one: both are refused.
    let inner_space = format!("0x{} {}", &hex[..32], &hex[32..]);
    let inner_spaces = format!("0x{}  {}", &hex[..32], &hex[32..]);
    let wrapped = rfc5649_wrap(&kek_material, &material);
    let wrapped_short = rfc5649_wrap(&kek_material, &material[..16]);

    let length_cases: Vec<Refusal> = vec![
        ("16 bytes raw", material[..16].to_vec(), Fmt::Raw, "", vec!["RAW", "decoded to 16 bytes", "32 bytes"]),
        ("31 bytes raw", material[..31].to_vec(), Fmt::Raw, "", vec!["RAW", "decoded to 31 bytes"]),
        ("33 bytes raw", [&material[..], b"\n"].concat(), Fmt::Raw, "", vec!["RAW", "decoded to 33 bytes"]),
        ("62 hex digits", hex.as_bytes()[..62].to_vec(), Fmt::Hex, "", vec!["HEX", "decoded to 31 bytes"]),
        ("base64 of base64", b64_of_b64.into_bytes(), Fmt::Base64, "", vec!["BASE64", "decoded to 44 bytes"]),
        ("base64url", url_text.into_bytes(), Fmt::Base64, "", vec!["BASE64", "base64url"]),
        ("hex inner space", inner_space.into_bytes(), Fmt::Hex, "", vec!["HEX"]),
        ("hex two inner spaces", inner_spaces.into_bytes(), Fmt::Hex, "", vec!["HEX", "inner spaces"]),
        ("odd hex", hex.as_bytes()[..63].to_vec(), Fmt::Hex, "", vec!["HEX", "63 digits"]),
        ("not base64", b"@@@@".to_vec(), Fmt::Base64, "", vec!["BASE64", "not valid"]),
        (
            "unwraps to 16 bytes",
            wrapped_short,
            Fmt::Raw,
            &kek.name,
            vec!["RAW", "decoded and unwrapped to 16 bytes", "32 bytes"],
        ),
        ("wrong wrapping key", wrapped.clone(), Fmt::Raw, &other.name, vec!["could not unwrap"]),
        ("garbage wrapped data", random_bytes(40), Fmt::Raw, &kek.name, vec!["could not unwrap"]),
        ("wrapped, too short", random_bytes(8), Fmt::Raw, &kek.name, vec!["could not unwrap"]),
    ];
    for parent in [&aws.name, &regular.name] {
        let mut unwrap_messages = Vec::new();
        for (what, bytes, format, wrapping_key, expected) in &length_cases {
            let mut req = import_req(parent, "refused", &[Op::Encrypt, Op::Decrypt], bytes.clone(), *format);
            req.wrapping_key = (*wrapping_key).to_owned();
            let err = import(&mut app, req).await.expect_err(what);
            let desc = invalid_on(&err, "material", what);
            for e in expected {
                assert!(desc.contains(e), "{what}: {desc:?} lacks {e:?}");
            }
            assert!(!desc.contains(&hex[..16]) && !err.message().contains(&hex[..16]), "{what}: quotes the material");
            if desc.contains("could not unwrap") {
                unwrap_messages.push(err.message().to_owned());
            }
        }
        assert_eq!(unwrap_messages.len(), 3);
        assert!(unwrap_messages.iter().all(|m| *m == unwrap_messages[0]), "one message: {unwrap_messages:?}");

        // A wrapping key without UNWRAP_KEY.
        let mut req = import_req(parent, "refused", &[Op::Encrypt], encode(Fmt::Raw, &wrapped), Fmt::Raw);
        req.wrapping_key = no_unwrap.name.clone();
        let err = import(&mut app, req).await.expect_err("no UNWRAP_KEY");
        let msg = precondition(&err, "KEY_OPS", "no UNWRAP_KEY");
        assert!(msg.contains("UNWRAP_KEY") && msg.contains(&no_unwrap.name), "{msg}");

        // A wrapping key that does not exist; a wrapping key that is not a key name.
        let mut req = import_req(parent, "refused", &[Op::Encrypt], wrapped.clone(), Fmt::Raw);
        req.wrapping_key = format!("{}/keys/{}", regular.name, uuid::Uuid::now_v7());
        let err = import(&mut app, req).await.expect_err("missing wrapping key");
        invalid_on(&err, "wrapping_key", "missing wrapping key");
        let mut req = import_req(parent, "refused", &[Op::Encrypt], wrapped.clone(), Fmt::Raw);
        req.wrapping_key = "kek".into();
        let err = import(&mut app, req).await.expect_err("bad wrapping key name");
        invalid_on(&err, "wrapping_key", "bad wrapping key name");

        // Format unspecified, or unknown.
        let req = import_req(parent, "refused", &[Op::Encrypt], material.clone(), Fmt::Unspecified);
        let err = import(&mut app, req).await.expect_err("no format");
        invalid_on(&err, "format", "no format");
        let mut req = import_req(parent, "refused", &[Op::Encrypt], material.clone(), Fmt::Raw);
        req.format = 42;
        let err = import(&mut app, req).await.expect_err("unknown format");
        invalid_on(&err, "format", "unknown format");
    }

    // Nothing was asked of AWS, nothing was created.
    assert_eq!(app.aws_key_count().await, aws_before, "no AWS call made a key");
    assert!(app.all_keys(&aws.name, "").await.is_empty(), "nothing recorded in the AWS_KMS group");
    assert_eq!(app.all_keys(&regular.name, "").await.len(), 3, "only the three wrapping keys");

    // The same material, well formed, is accepted (the refusals were about the encoding).
    let mut req = import_req(&aws.name, "accepted", &[Op::Encrypt, Op::Decrypt], wrapped, Fmt::Raw);
    req.wrapping_key = kek.name.clone();
    let k = import(&mut app, req.clone()).await.expect("well-formed import");
    assert_eq!(k.state, pb::KeyState::Enabled as i32);
    assert_eq!(app.aws_key_count().await, 1);
    // A taken display name: ALREADY_EXISTS, before AWS.
    let err = import(&mut app, req).await.expect_err("name taken");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");
    assert_eq!(app.aws_key_count().await, 1);
}

/// 64 hex digits with one space between them: the refusal must name the separator, not claim
/// that the digit count (65) is odd — following that advice (drop a digit) cannot fix the file.
#[tokio::test]
async fn hex_with_one_inner_space_is_refused_for_the_space_not_for_an_odd_digit_count() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("hex-space").await;
    let hex = hex_of(&random_bytes(32), true);
    let text = format!("0x{} {}", &hex[..32], &hex[32..]);
    let err = import(&mut app, import_req(&g.name, "spaced", &[Op::Encrypt], text.into_bytes(), Fmt::Hex))
        .await
        .expect_err("inner space");
    let desc = invalid_on(&err, "material", "inner space");
    assert!(!desc.contains("65 digits"), "counts the space as a digit: {desc:?}");
    assert!(desc.contains("inner spaces"), "does not name the separator: {desc:?}");
    assert_eq!(app.aws_key_count().await, 0);
}

// ---------------------------------------------------------------------------------------------
// Failures during the AWS import.

fn unavailable(what: &str) -> KmsError {
    KmsError::Unavailable(format!("injected {what} failure"))
}

#[tokio::test]
async fn a_failure_at_each_aws_step_leaves_keyward_and_aws_agreeing() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("faults").await;
    let material = random_bytes(32);

    // (a) CreateKey fails: nothing anywhere.
    app.faults.inject(Fault::Fail { op: "create_key", key: None, error: unavailable("CreateKey"), times: None });
    let req = import_req(&g.name, "a", &[Op::Encrypt, Op::Decrypt], material.clone(), Fmt::Raw);
    let err = import(&mut app, req.clone()).await.expect_err("create_key fails");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("injected CreateKey failure"), "{}", err.message());
    app.faults.clear();
    assert!(app.all_keys(&g.name, "").await.is_empty(), "no Keyward key");
    assert_eq!(app.aws_key_count().await, 0, "no AWS key");
    // The display name is still free.
    let ok = import(&mut app, req).await.expect("the same import once AWS works");
    assert_eq!(ok.state, pb::KeyState::Enabled as i32);
    let mut expected_aws_keys = 1;

    // (b) GetParametersForImport fails, (c) ImportKeyMaterial fails, (c') the second alias fails:
    // the new AWS key is scheduled for deletion, Keyward shows it PENDING_DELETION.
    for (name, op, aliases) in [
        ("b", "get_parameters_for_import", vec!["alias/b"]),
        ("c", "import_key_material", vec!["alias/c"]),
        ("c-alias", "create_alias", vec!["alias/c-first", "alias/c-second"]),
    ] {
        let key = if op == "create_alias" { Some("alias/c-second".to_owned()) } else { None };
        app.faults.inject(Fault::Fail { op, key, error: unavailable(op), times: None });
        let mut req = import_req(&g.name, name, &[Op::Encrypt, Op::Decrypt], material.clone(), Fmt::Raw);
        req.key.as_mut().expect("key").aws =
            Some(pb::AwsKeyDetails { aliases: aliases.iter().map(|a| a.to_string()).collect(), ..Default::default() });
        let err = import(&mut app, req).await.expect_err(op);
        app.faults.clear();
        assert_eq!(err.code(), Code::Unavailable, "{op}: {err:?}");
        assert!(err.message().contains(&format!("injected {op} failure")), "{op}: {}", err.message());
        assert!(err.message().contains("scheduled for deletion"), "{op}: {}", err.message());
        expected_aws_keys += 1;
        assert_eq!(app.aws_key_count().await, expected_aws_keys, "{op}: one new AWS key");

        let keys: Vec<pb::Key> =
            app.all_keys(&g.name, "").await.into_iter().filter(|k| is_abandoned(k, name)).collect();
        assert_eq!(keys.len(), 1, "{op}: Keyward knows the new AWS key (renamed so the name is free)");
        let k = &keys[0];
        let id = aws_id(k);
        assert!(err.message().contains(&id), "{op}: the message names the AWS key: {}", err.message());
        assert_eq!(k.state, pb::KeyState::PendingDeletion as i32, "{op}: {k:?}");
        assert_eq!(k.source, pb::KeySource::Imported as i32);
        let details = k.aws.clone().expect("aws");
        assert_eq!(details.aws_key_state, "PendingDeletion", "{op}");
        assert!(details.deletion_time.is_some(), "{op}: deletion time shown");
        let m = app.aws_meta(&id).await;
        assert_eq!(m.key_state().map(|s| s.as_str()), Some("PendingDeletion"), "{op}");
        assert!(app.aws_aliases(&id).await.is_empty(), "{op}: no alias left on the abandoned key");
    }
    assert_eq!(app.all_keys(&g.name, "state = ENABLED").await.len(), 1, "only the successful import is ENABLED");
}

#[tokio::test]
async fn a_failed_compensation_stays_pending_import_until_the_worker_compensates() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("compensation").await;
    app.faults.inject(Fault::Fail {
        op: "import_key_material",
        key: None,
        error: unavailable("import_key_material"),
        times: None,
    });
    app.faults.inject(Fault::Fail {
        op: "schedule_key_deletion",
        key: None,
        error: unavailable("schedule_key_deletion"),
        times: None,
    });
    let req = import_req(&g.name, "stuck", &[Op::Encrypt, Op::Decrypt], random_bytes(32), Fmt::Raw);
    let err = import(&mut app, req).await.expect_err("import and compensation fail");
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("injected import_key_material failure"), "{}", err.message());
    assert!(!err.message().contains("was scheduled for deletion"), "{}", err.message());

    let keys = app.all_keys(&g.name, "").await;
    assert_eq!(keys.len(), 1);
    let k = keys[0].clone();
    let id = aws_id(&k);
    assert!(err.message().contains(&id), "the message names the AWS key: {}", err.message());
    assert_eq!(k.state, pb::KeyState::PendingImport as i32, "never ENABLED: {k:?}");
    assert_eq!(app.aws_state(&id).await, "PendingImport");

    // Not stale yet: the worker leaves it alone.
    let report = keyward_worker::recovery::run_once(&app.keyward, now).await.expect("recovery");
    assert!(report.compensated.is_empty() && report.retry.is_empty() && report.failed.is_empty(), "{report:?}");
    assert_eq!(app.get_key(&k.name).await.state, pb::KeyState::PendingImport as i32);

    // AWS works again; ten minutes later the worker compensates.
    app.faults.clear();
    let later = now + time::Duration::minutes(11);
    let report = keyward_worker::recovery::run_once(&app.keyward, later).await.expect("recovery");
    assert_eq!(report.compensated.iter().map(|id| id.to_string()).collect::<Vec<_>>(), vec![k.key_id.clone()]);
    assert!(report.retry.is_empty() && report.failed.is_empty(), "{report:?}");
    assert_eq!(app.aws_state(&id).await, "PendingDeletion");
    let after = app.get_key(&k.name).await;
    assert_eq!(after.state, pb::KeyState::PendingDeletion as i32, "{after:?}");
    let details = after.aws.clone().expect("aws");
    assert_eq!(details.aws_key_state, "PendingDeletion");
    assert!(details.deletion_time.is_some());

    // Done once: later passes find nothing.
    let report = keyward_worker::recovery::run_once(&app.keyward, now + time::Duration::minutes(30)).await.expect("r");
    assert!(report.compensated.is_empty() && report.retry.is_empty() && report.failed.is_empty(), "{report:?}");
    assert_eq!(app.aws_key_count().await, 1);
}

/// Whatever AWS answers when ImportKeyMaterial fails, the caller learns that the new AWS key was
/// scheduled for deletion, and Keyward shows it PENDING_DELETION.
#[tokio::test]
async fn every_kind_of_import_failure_reports_the_compensation() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("kinds").await;
    let cases = [
        ("access denied", KmsError::AccessDenied("injected".into()), Code::PermissionDenied),
        ("validation", KmsError::Validation("injected".into()), Code::InvalidArgument),
        ("invalid state", KmsError::InvalidState("injected".into()), Code::FailedPrecondition),
        ("timeout", KmsError::Timeout("injected".into()), Code::DeadlineExceeded),
        ("limit", KmsError::LimitExceeded("injected".into()), Code::ResourceExhausted),
        ("not found (e.g. the import token)", KmsError::NotFound("injected".into()), Code::NotFound),
    ];
    let mut problems = Vec::new();
    for (i, (what, error, code)) in cases.into_iter().enumerate() {
        app.faults.inject(Fault::Fail { op: "import_key_material", key: None, error, times: None });
        let name = format!("kind-{i}");
        let req = import_req(&g.name, &name, &[Op::Encrypt, Op::Decrypt], random_bytes(32), Fmt::Raw);
        let err = import(&mut app, req).await.expect_err(what);
        app.faults.clear();
        let k = app.all_keys(&g.name, "").await.into_iter().find(|k| is_abandoned(k, &name)).expect("recorded");
        assert_eq!(k.state, pb::KeyState::PendingDeletion as i32, "{what}: {k:?}");
        let id = aws_id(&k);
        assert_eq!(app.aws_state(&id).await, "PendingDeletion", "{what}");
        if !(err.message().contains("scheduled for deletion") && err.message().contains(&id)) {
            problems.push(format!("{what}: the caller is not told about the abandoned AWS key {id}: {err:?}"));
        }
        // The group exists: NOT_FOUND would point the caller at the wrong resource.
        let wrong_code = if code == Code::NotFound { err.code() == Code::NotFound } else { err.code() != code };
        if wrong_code {
            problems.push(format!("{what}: code {:?}", err.code()));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// valid_to: ImportKeyMaterial's ValidTo (AWS: a future time, at most 365 days ahead), checked by
/// Keyward before any AWS call.
#[tokio::test]
async fn valid_to_sets_the_expiry_and_is_checked_before_aws() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("expiring").await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let at = |seconds: i64| Some(prost_types::Timestamp { seconds, nanos: 0 });

    let mut req = import_req(&g.name, "expiring", &[Op::Encrypt, Op::Decrypt], random_bytes(32), Fmt::Raw);
    req.valid_to = at(now + 30 * 86_400);
    let k = import(&mut app, req).await.expect("import with valid_to");
    assert_eq!(k.state, pb::KeyState::Enabled as i32);
    assert_eq!(k.aws.as_ref().and_then(|a| a.valid_to), at(now + 30 * 86_400), "{k:?}");
    assert_eq!(app.get_key(&k.name).await, k);
    let m = app.aws_meta(&aws_id(&k)).await;
    assert_eq!(m.expiration_model().map(|e| e.as_str()), Some("KEY_MATERIAL_EXPIRES"));
    assert_eq!(app.aws_key_count().await, 1);

    let mut problems = Vec::new();
    for (i, (what, valid_to)) in
        [("in the past", now - 3600), ("more than 365 days ahead", now + 400 * 86_400)].into_iter().enumerate()
    {
        let name = format!("refused-{i}");
        let mut req = import_req(&g.name, &name, &[Op::Encrypt, Op::Decrypt], random_bytes(32), Fmt::Raw);
        req.valid_to = at(valid_to);
        match import(&mut app, req).await {
            Ok(k) => {
                problems.push(format!("{what}: accepted, {} valid_to {:?}", k.name, k.aws.and_then(|a| a.valid_to)))
            }
            Err(err) => {
                invalid_on(&err, "valid_to", what);
            }
        }
    }
    assert!(problems.is_empty(), "valid_to not checked: {problems:#?}");
    assert_eq!(app.aws_key_count().await, 1, "no AWS call made a key");
    assert_eq!(app.all_keys(&g.name, "").await.len(), 1);
}

// ---------------------------------------------------------------------------------------------
// CopyKey.

fn ts(t: &Option<prost_types::Timestamp>) -> time::OffsetDateTime {
    let t = t.as_ref().expect("timestamp");
    time::OffsetDateTime::from_unix_timestamp(t.seconds).expect("ts") + time::Duration::nanoseconds(t.nanos.into())
}

#[track_caller]
fn assert_link(
    links: &[pb::KeyLink],
    kind: pb::KeyLinkKind,
    other: &pb::Key,
    actor: &str,
    window: (time::OffsetDateTime, time::OffsetDateTime),
) {
    let l = links
        .iter()
        .find(|l| l.kind == kind as i32 && l.key == other.name)
        .unwrap_or_else(|| panic!("no {kind:?} link to {}: {links:?}", other.name));
    assert_eq!(l.group, other.group, "{l:?}");
    assert_eq!(l.actor, actor, "{l:?}");
    let at = ts(&l.create_time);
    assert!(at >= window.0 - time::Duration::seconds(1) && at <= window.1, "{l:?} not in {window:?}");
}

fn copy_req(
    source: &pb::Key,
    target: &pb::Group,
    display_name: &str,
    aliases: &[&str],
    ops_: &[Op],
) -> pb::CopyKeyRequest {
    pb::CopyKeyRequest {
        source: source.name.clone(),
        target_group: target.name.clone(),
        display_name: display_name.into(),
        aliases: aliases.iter().map(|a| a.to_string()).collect(),
        key_ops: ops(ops_),
    }
}

#[tokio::test]
async fn copy_key_to_regular_and_aws_groups_names_copies_and_links_both_ways() {
    let mut app = TestApp::spawn().await;
    let src = app.regular_group("copy-src").await;
    let dst = app.regular_group("copy-dst").await;
    let aws = app.create_aws_group("copy-aws").await;
    let material = random_bytes(32);
    let all_ops = [Op::Encrypt, Op::Decrypt, Op::WrapKey, Op::UnwrapKey, Op::Export];
    let source = known_keyward_key(&mut app, &src, "payments", &all_ops, &material).await;
    let mut crypto = app.crypto_client();
    // The source group's admin who manages keys in the target groups: CopyKey needs both.
    let (km, ga): (&[pb::GroupRole], &[pb::GroupRole]) = (&[pb::GroupRole::KeyManager], &[pb::GroupRole::GroupAdmin]);
    let mut people = Vec::new();
    for name in ["alice", "bob", "carol"] {
        let groups = [(src.name.as_str(), ga), (dst.name.as_str(), km), (aws.name.as_str(), km)];
        people.push(app.principal_with(name, &[], &groups).await);
    }
    let [(alice_p, alice), (bob_p, bob), (carol_p, carol)] = <[_; 3]>::try_from(people).expect("three");
    let (alice, bob, carol) = (Some(alice.as_str()), Some(bob.as_str()), Some(carol.as_str()));
    // A key manager of the target only may not copy out of the source's group.
    let (_, target_only) = app.principal_with("dave", &[], &[(dst.name.as_str(), km)]).await;
    let e =
        copy(&mut app, copy_req(&source, &dst, "", &[], &[]), Some(&target_only)).await.expect_err("not its source");
    assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
    let t0 = time::OffsetDateTime::now_utc();

    // Two copies into a REGULAR group: suggested names _copy1, _copy2.
    let c1 =
        copy(&mut app, copy_req(&source, &dst, "", &[], &[Op::WrapKey, Op::UnwrapKey]), alice).await.expect("copy 1");
    let c2 = copy(&mut app, copy_req(&source, &dst, "", &[], &[]), bob).await.expect("copy 2");
    assert_eq!((c1.display_name.as_str(), c2.display_name.as_str()), ("payments_copy1", "payments_copy2"));
    for (c, key_ops) in [(&c1, ops(&[Op::WrapKey, Op::UnwrapKey])), (&c2, ops(&[Op::Encrypt, Op::Decrypt]))] {
        assert_eq!(c.group, dst.name);
        assert!(!c.r#virtual);
        assert_eq!(c.source, pb::KeySource::Keyward as i32, "{c:?}");
        assert_eq!(c.state, pb::KeyState::Enabled as i32);
        assert_eq!(c.key_spec, pb::KeySpec::Aes256 as i32);
        assert_eq!(c.key_ops, key_ops, "empty key_ops: ENCRYPT and DECRYPT");
    }
    // Copy 1 holds the same material: it unwraps what the source's bytes wrapped.
    let secret = random_bytes(24);
    let back = crypto
        .unwrap_key(pb::UnwrapKeyRequest { name: c1.name.clone(), wrapped: rfc5649_wrap(&material, &secret) })
        .await
        .expect("unwrap with the copy")
        .into_inner()
        .plaintext;
    assert_eq!(back, secret);

    // Into an AWS_KMS group: a virtual key whose material came from Keyward, ENABLED.
    let a1 = copy(&mut app, copy_req(&source, &aws, "", &["alias/payments-copy"], &[]), carol).await.expect("aws copy");
    let a2 = copy(&mut app, copy_req(&source, &aws, "", &[], &[]), carol).await.expect("aws copy 2");
    let t1 = time::OffsetDateTime::now_utc();
    assert_eq!((a1.display_name.as_str(), a2.display_name.as_str()), ("payments_copy1", "payments_copy2"));
    assert!(a1.r#virtual);
    assert_eq!(a1.source, pb::KeySource::Keyward as i32, "{a1:?}");
    assert_eq!(a1.state, pb::KeyState::Enabled as i32);
    assert_eq!(a1.key_spec, pb::KeySpec::SymmetricDefault as i32);
    assert_eq!(a1.aws.as_ref().map(|a| a.aliases.clone()), Some(vec!["alias/payments-copy".to_owned()]));
    assert_eq!(a1.aws.as_ref().map(|a| a.aws_key_state.as_str()), Some("Enabled"));
    let id = aws_id(&a1);
    let m = app.aws_meta(&id).await;
    assert_eq!(m.key_state().map(|s| s.as_str()), Some("Enabled"));
    assert_eq!(m.origin().map(|o| o.as_str()), Some("EXTERNAL"));
    assert_eq!(app.aws_aliases(&id).await, vec!["alias/payments-copy".to_owned()]);
    aws_round_trip(&app, &id).await;

    // Links both ways, with actor and time.
    let s = app.get_key(&source.name).await;
    let to: Vec<&pb::KeyLink> = s.links.iter().filter(|l| l.kind == pb::KeyLinkKind::CopiedTo as i32).collect();
    assert_eq!(to.len(), 4, "{:?}", s.links);
    for (c, actor) in [(&c1, &alice_p.name), (&c2, &bob_p.name), (&a1, &carol_p.name), (&a2, &carol_p.name)] {
        assert_link(&s.links, pb::KeyLinkKind::CopiedTo, c, actor, (t0, t1));
        let got = app.get_key(&c.name).await;
        assert_eq!(&got, c, "a read returns what CopyKey returned");
        assert_eq!(got.links.len(), 1, "{:?}", got.links);
        assert_link(&got.links, pb::KeyLinkKind::CopiedFrom, &source, actor, (t0, t1));
    }

    // A given display name is used; a taken one is ALREADY_EXISTS before AWS.
    let n = copy(&mut app, copy_req(&source, &dst, "explicit", &[], &[]), None).await.expect("named copy");
    assert_eq!(n.display_name, "explicit");
    let aws_keys = app.aws_key_count().await;
    assert_eq!(aws_keys, 2);
    let err = copy(&mut app, copy_req(&source, &aws, "payments_copy1", &[], &[]), None).await.expect_err("taken");
    assert_eq!(err.code(), Code::AlreadyExists, "{err:?}");

    // No EXPORT: refused, nothing created anywhere.
    let locked = known_keyward_key(&mut app, &src, "locked", &[Op::Encrypt, Op::Decrypt], &random_bytes(32)).await;
    for target in [&aws, &dst] {
        let err = copy(&mut app, copy_req(&locked, target, "", &[], &[]), None).await.expect_err("no EXPORT");
        let msg = precondition(&err, "KEY_OPS", "no EXPORT");
        assert!(msg.contains("EXPORT"), "{msg}");
    }
    // A virtual key is no copy source.
    let err = copy(&mut app, copy_req(&a1, &dst, "", &[], &[]), None).await.expect_err("virtual source");
    precondition(&err, "COPY_SOURCE", "virtual source");
    assert_eq!(app.aws_key_count().await, aws_keys, "no AWS call made a key");
    assert_eq!(app.all_keys(&aws.name, "").await.len(), 2);
    assert_eq!(app.all_keys(&dst.name, "").await.len(), 3);
    assert!(app.get_key(&locked.name).await.links.is_empty());

    // The AWS copy holds the source's material.
    assert!(aws_holds(&app, &id, &material).await, "AWS holds the source's material");
}

/// Copies asked for at the same time without a display name each get a free `_copy<N>`; the
/// caller, who gave no name, never gets ALREADY_EXISTS.
#[tokio::test]
async fn concurrent_copies_without_a_name_get_distinct_suggested_names() {
    let mut app = TestApp::spawn().await;
    let src = app.regular_group("race-src").await;
    let dst = app.regular_group("race-dst").await;
    let source =
        known_keyward_key(&mut app, &src, "hot", &[Op::Encrypt, Op::Decrypt, Op::Export], &random_bytes(32)).await;
    let calls = (0..4).map(|_| {
        let mut keys = app.keys.clone();
        let req = copy_req(&source, &dst, "", &[], &[]);
        async move { keys.copy_key(req).await.map(|r| r.into_inner().display_name) }
    });
    let results = futures::future::join_all(calls).await;
    let failed: Vec<String> =
        results.iter().filter_map(|r| r.as_ref().err()).map(|e| format!("{:?}: {}", e.code(), e.message())).collect();
    assert!(failed.is_empty(), "copies without a name failed: {failed:#?}");
    let mut names: Vec<String> = results.into_iter().filter_map(Result::ok).collect();
    names.sort();
    assert_eq!(names, ["hot_copy1", "hot_copy2", "hot_copy3", "hot_copy4"]);
}

/// The same alias twice: ImportKey and CopyKey refuse it before any AWS call.
#[tokio::test]
async fn import_and_copy_with_an_alias_listed_twice_are_refused_before_aws() {
    let mut app = TestApp::spawn().await;
    let src = app.regular_group("src").await;
    let aws = app.create_aws_group("dst").await;
    let source =
        app.create_key(&src.name, "source", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt, Op::Export]).await;
    let twice = vec!["alias/dup".to_owned(), "alias/dup".to_owned()];

    let err = app
        .keys
        .import_key(pb::ImportKeyRequest {
            parent: aws.name.clone(),
            key: Some(pb::Key {
                display_name: "imported".into(),
                key_ops: ops(&[Op::Encrypt, Op::Decrypt]),
                aws: Some(pb::AwsKeyDetails { aliases: twice.clone(), ..Default::default() }),
                ..Default::default()
            }),
            material: vec![7u8; 32],
            format: pb::MaterialFormat::Raw as i32,
            wrapping_key: String::new(),
            valid_to: None,
        })
        .await
        .expect_err("import");
    invalid_on(&err, "key.aws.aliases", "import");

    let err = app
        .keys
        .copy_key(pb::CopyKeyRequest {
            source: source.name.clone(),
            target_group: aws.name.clone(),
            aliases: twice,
            ..Default::default()
        })
        .await
        .expect_err("copy");
    invalid_on(&err, "key.aws.aliases", "copy");

    assert_eq!(app.aws_key_count().await, 0, "no AWS key created");
    assert!(app.all_keys(&aws.name, "").await.is_empty());
}

// ---------------------------------------------------------------------------------------------
// DeleteKeyMaterial / ReimportKeyMaterial.

#[tokio::test]
async fn delete_and_reimport_key_material() {
    let mut app = TestApp::spawn().await;
    let src = app.regular_group("material-src").await;
    let aws = app.create_aws_group("material-aws").await;
    let material = random_bytes(32);
    let source = known_keyward_key(&mut app, &src, "source", &[Op::Encrypt, Op::Decrypt, Op::Export], &material).await;
    let copied = copy(&mut app, copy_req(&source, &aws, "", &[], &[]), None).await.expect("copy");
    let id = aws_id(&copied);
    let (pt, ct) = aws_round_trip(&app, &id).await;

    // With a live Keyward source no acknowledgement is needed.
    let k = app.delete_material(&copied.name, false).await.expect("delete material");
    assert_eq!(k.state, pb::KeyState::PendingImport as i32, "{k:?}");
    assert!(!k.enabled);
    assert_eq!(k.aws.as_ref().map(|a| a.aws_key_state.as_str()), Some("PendingImport"));
    assert_eq!(app.get_key(&k.name).await, k);
    assert_eq!(app.aws_state(&id).await, "PendingImport");
    assert!(aws_decrypt(&app, &id, &ct).await.is_err(), "no material in AWS");

    let k = app.reimport(&copied.name).await.expect("reimport");
    assert_eq!(k.state, pb::KeyState::Enabled as i32, "{k:?}");
    assert!(k.enabled);
    assert_eq!(k.aws.as_ref().map(|a| a.aws_key_state.as_str()), Some("Enabled"));
    assert_eq!(app.get_key(&k.name).await, k);
    assert_eq!(app.aws_state(&id).await, "Enabled");
    assert_eq!(aws_decrypt(&app, &id, &ct).await.expect("decrypt after reimport"), pt, "same material back");

    // An upload: Keyward cannot restore it, so deleting needs acknowledge_unrecoverable.
    let imported = import(
        &mut app,
        import_req(&aws.name, "uploaded", &[Op::Encrypt, Op::Decrypt], encode(Fmt::Hex, &random_bytes(32)), Fmt::Hex),
    )
    .await
    .expect("import");
    let iid = aws_id(&imported);
    let err = app.delete_material(&imported.name, false).await.expect_err("not acknowledged");
    let msg = precondition(&err, "UNRECOVERABLE", "not acknowledged");
    assert!(msg.contains("acknowledge_unrecoverable"), "{msg}");
    assert_eq!(app.aws_state(&iid).await, "Enabled", "AWS untouched");
    assert_eq!(app.get_key(&imported.name).await.state, pb::KeyState::Enabled as i32);
    let k = app.delete_material(&imported.name, true).await.expect("acknowledged");
    assert_eq!(k.state, pb::KeyState::PendingImport as i32);
    assert_eq!(app.aws_state(&iid).await, "PendingImport");
    let err = app.reimport(&imported.name).await.expect_err("no source");
    let msg = precondition(&err, "NO_SOURCE", "no source");
    assert!(msg.contains(&imported.name), "{msg}");
    assert_eq!(app.aws_state(&iid).await, "PendingImport");
    assert_eq!(app.get_key(&imported.name).await.state, pb::KeyState::PendingImport as i32);

    // AWS-generated material and Keyward keys: no imported material to delete; AWS is not asked.
    let native = app
        .keys
        .create_key(pb::CreateKeyRequest {
            parent: aws.name.clone(),
            key: Some(pb::Key {
                display_name: "native".into(),
                key_spec: pb::KeySpec::SymmetricDefault as i32,
                key_ops: ops(&[Op::Encrypt, Op::Decrypt]),
                ..Default::default()
            }),
        })
        .await
        .expect("create native")
        .into_inner();
    assert_eq!(native.source, pb::KeySource::AwsNative as i32);
    app.faults.inject(Fault::Fail {
        op: "delete_imported_key_material",
        key: None,
        error: unavailable("delete_imported_key_material"),
        times: None,
    });
    app.faults.inject(Fault::Fail {
        op: "get_parameters_for_import",
        key: None,
        error: unavailable("get_parameters_for_import"),
        times: None,
    });
    for (what, name) in [("AWS_NATIVE", &native.name), ("Keyward key", &source.name)] {
        let err = app.delete_material(name, true).await.expect_err(what);
        let msg = precondition(&err, "KEY_SOURCE", what);
        assert!(!msg.contains("injected"), "{what}: AWS was asked: {msg}");
    }
    let err = app.reimport(&native.name).await.expect_err("reimport native");
    assert_eq!(err.code(), Code::FailedPrecondition, "{err:?}");
    app.faults.clear();
    assert_eq!(app.aws_state(&aws_id(&native)).await, "Enabled");
    assert_eq!(app.get_key(&native.name).await.state, pb::KeyState::Enabled as i32);
}

/// Reimport from a disabled or non-exportable source is refused; a source a copy waits for
/// cannot be deleted.
#[tokio::test]
async fn reimport_needs_a_usable_source_and_a_waiting_copy_keeps_its_source() {
    let mut app = TestApp::spawn().await;
    let src = app.regular_group("src").await;
    let aws = app.create_aws_group("dst").await;
    let all_ops = [Op::Encrypt, Op::Decrypt, Op::Export];
    let source = app.create_key(&src.name, "source", pb::KeySpec::Aes256, &all_ops).await;
    let copy = app
        .keys
        .copy_key(pb::CopyKeyRequest {
            source: source.name.clone(),
            target_group: aws.name.clone(),
            ..Default::default()
        })
        .await
        .expect("copy")
        .into_inner();
    let k = app
        .keys
        .delete_key_material(pb::DeleteKeyMaterialRequest {
            name: copy.name.clone(),
            acknowledge_unrecoverable: false,
            validate_only: false,
        })
        .await
        .expect("delete material")
        .into_inner();
    assert_eq!(k.state, pb::KeyState::PendingImport as i32, "{k:?}");

    // A DISABLED source hands out no material.
    app.set_enabled(&source.name, false).await;
    let err = app.reimport(&copy.name).await.expect_err("disabled source");
    let msg = precondition(&err, "COPY_SOURCE", "disabled source");
    assert!(msg.contains("DISABLED"), "{msg}");
    assert_eq!(app.get_key(&copy.name).await.state, pb::KeyState::PendingImport as i32);

    // Deleting the source would strand the copy: refused, naming the copy.
    let err = app.delete_key(&source.name).await.expect_err("copy waits");
    let msg = precondition(&err, "COPY_NEEDS_SOURCE", "copy waits");
    assert!(msg.contains(&copy.name), "{msg}");
    app.get_key(&source.name).await;

    // An ENABLED source without EXPORT hands out no material either.
    app.set_enabled(&source.name, true).await;
    let no_export =
        pb::Key { name: source.name.clone(), key_ops: ops(&[Op::Encrypt, Op::Decrypt]), ..Default::default() };
    app.update_key(no_export, &["key_ops"]).await.expect("drop EXPORT");
    let err = app.reimport(&copy.name).await.expect_err("no EXPORT");
    let msg = precondition(&err, "COPY_SOURCE", "no EXPORT");
    assert!(msg.contains("EXPORT"), "{msg}");
    assert_eq!(app.get_key(&copy.name).await.state, pb::KeyState::PendingImport as i32);

    // Restored: the copy is reimported; then the disabled source may go.
    let with_export = pb::Key { name: source.name.clone(), key_ops: ops(&all_ops), ..Default::default() };
    app.update_key(with_export, &["key_ops"]).await.expect("EXPORT back");
    let k = app.reimport(&copy.name).await.expect("reimport");
    assert_eq!(k.state, pb::KeyState::Enabled as i32, "{k:?}");
    app.set_enabled(&source.name, false).await;
    app.delete_key(&source.name).await.expect("delete the disabled source");
    assert_eq!(app.get_key(&copy.name).await.state, pb::KeyState::Enabled as i32);
}

// ---------------------------------------------------------------------------------------------
// Crypto policy.

#[tokio::test]
async fn crypto_policy_refuses_import_and_copy_before_any_aws_call() {
    let mut app = TestApp::spawn().await;
    let policy = pb::CryptoPolicy { allowed_key_specs: vec![pb::KeySpec::Rsa2048 as i32], allowed_key_ops: vec![] };
    let group = pb::Group { crypto_policy: Some(policy.clone()), ..aws_group("rsa-only", app.aws_kms_config()) };
    let aws = app.create_group(group).await.expect("aws group");
    let src = app.regular_group("free").await;
    let material = random_bytes(32);
    let source = known_keyward_key(&mut app, &src, "source", &[Op::Encrypt, Op::Decrypt, Op::Export], &material).await;
    // Would show as UNAVAILABLE if AWS were asked.
    app.faults.inject(Fault::Fail { op: "create_key", key: None, error: unavailable("create_key"), times: None });

    let err = import(&mut app, import_req(&aws.name, "refused", &[Op::Encrypt], material.clone(), Fmt::Raw))
        .await
        .expect_err("policy");
    let msg = precondition(&err, "CRYPTO_POLICY", "import");
    assert!(msg.contains("SYMMETRIC_DEFAULT") && msg.contains(&aws.name), "{msg}");
    let err = copy(&mut app, copy_req(&source, &aws, "", &[], &[]), None).await.expect_err("copy");
    precondition(&err, "CRYPTO_POLICY", "copy");
    assert_eq!(app.aws_key_count().await, 0);
    assert!(app.all_keys(&aws.name, "").await.is_empty());
    assert!(app.get_key(&source.name).await.links.is_empty());
}

/// A key abandoned by a failed import: renamed `<name>~abandoned-<id>` so the name is free again.
fn is_abandoned(k: &pb::Key, name: &str) -> bool {
    k.display_name.starts_with(&format!("{name}~abandoned-"))
}
