//! Every key spec × key usage AWS defines, through CreateKey: where LocalStack creates the spec,
//! the key is made and checked behind Keyward's back (DescribeKey); where it cannot
//! (ECC_NIST_EDWARDS25519, ML_DSA_*, ML_KEM_*, SM2), a recording front answers CreateKey as AWS
//! documents it and the test checks the request Keyward sent; a pair AWS would refuse is refused
//! before any AWS call. Sync reads the new specs by name; crypto policies allow or forbid them.

use std::sync::Arc;

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use keyward_tests::fixtures::{aws_group, aws_id, ops};
use keyward_tests::front::{Answer, KmsFront};
use keyward_tests::status::invalid_on;
use pb::KeyOperation as Op;
use serde_json::{Value, json};
use tonic::Code;

const USAGES: [&str; 5] =
    ["ENCRYPT_DECRYPT", "SIGN_VERIFY", "GENERATE_VERIFY_MAC", "KEY_AGREEMENT", "ENCAPSULATE_DECAPSULATE"];

/// The key_ops that ask for `usage`.
fn ops_for(usage: &str) -> Vec<Op> {
    match usage {
        "ENCRYPT_DECRYPT" => vec![Op::Encrypt, Op::Decrypt],
        "SIGN_VERIFY" => vec![Op::Sign, Op::Verify],
        "GENERATE_VERIFY_MAC" => vec![Op::GenerateMac, Op::VerifyMac],
        "KEY_AGREEMENT" => vec![Op::DeriveSharedSecret],
        _ => vec![Op::Encapsulate, Op::Decapsulate],
    }
}

/// AWS's rule, as CreateKey's API reference writes it for `KeyUsage` (not Keyward's code).
fn aws_allows(spec: &str, usage: &str) -> bool {
    match spec {
        "SYMMETRIC_DEFAULT" => usage == "ENCRYPT_DECRYPT",
        s if s.starts_with("RSA_") => matches!(usage, "ENCRYPT_DECRYPT" | "SIGN_VERIFY"),
        "ECC_NIST_P256" | "ECC_NIST_P384" | "ECC_NIST_P521" => matches!(usage, "SIGN_VERIFY" | "KEY_AGREEMENT"),
        "ECC_SECG_P256K1" | "ECC_NIST_EDWARDS25519" => usage == "SIGN_VERIFY",
        s if s.starts_with("ML_DSA_") => usage == "SIGN_VERIFY",
        s if s.starts_with("HMAC_") => usage == "GENERATE_VERIFY_MAC",
        s if s.starts_with("ML_KEM_") => usage == "ENCAPSULATE_DECAPSULATE",
        "SM2" => matches!(usage, "ENCRYPT_DECRYPT" | "SIGN_VERIFY" | "KEY_AGREEMENT"),
        other => panic!("no rule for {other}"),
    }
}

fn spec_name(s: pb::KeySpec) -> &'static str {
    s.as_str_name().trim_start_matches("KEY_SPEC_")
}

fn new_key(name: &str, spec: pb::KeySpec, key_ops: &[Op]) -> pb::Key {
    pb::Key { display_name: name.into(), key_spec: spec as i32, key_ops: ops(key_ops), ..Default::default() }
}

/// Creates every usage of `spec` in `group`: allowed ones made (returned with their usage),
/// the others refused on key.key_ops before AWS.
async fn every_usage(app: &mut TestApp, group: &str, spec: pb::KeySpec) -> Vec<(pb::Key, &'static str)> {
    let mut made = Vec::new();
    for usage in USAGES {
        let name = format!("{}-{}", spec_name(spec), usage).to_lowercase().replace('_', "-");
        let r = app.try_create_key(group, new_key(&name, spec, &ops_for(usage))).await;
        if aws_allows(spec_name(spec), usage) {
            let k = r.unwrap_or_else(|e| panic!("{} {usage}: {e:?}", spec_name(spec)));
            assert_eq!(k.key_spec, spec as i32);
            assert_eq!(k.key_ops, ops(&ops_for(usage)));
            assert_eq!(k.aws.as_ref().map(|a| a.key_usage.as_str()), Some(usage));
            made.push((k, usage));
        } else {
            let e = r.expect_err(&format!("{} {usage} is not a pair AWS makes", spec_name(spec)));
            invalid_on(&e, "key.key_ops", &format!("{} {usage}", spec_name(spec)));
        }
    }
    made
}

#[tokio::test]
async fn every_spec_the_emulator_makes_is_created_with_each_usage_aws_allows_and_refused_otherwise() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("specs").await;
    let specs = [
        pb::KeySpec::SymmetricDefault,
        pb::KeySpec::Rsa2048,
        pb::KeySpec::Rsa3072,
        pb::KeySpec::Rsa4096,
        pb::KeySpec::EccNistP256,
        pb::KeySpec::EccNistP384,
        pb::KeySpec::EccNistP521,
        pb::KeySpec::EccSecgP256k1,
        pb::KeySpec::Hmac224,
        pb::KeySpec::Hmac256,
        pb::KeySpec::Hmac384,
        pb::KeySpec::Hmac512,
    ];
    let mut made = 0;
    for spec in specs {
        let before = app.aws_key_count().await;
        let keys = every_usage(&mut app, &g.name, spec).await;
        assert_eq!(app.aws_key_count().await, before + keys.len(), "{}: refusals make nothing", spec_name(spec));
        for (k, usage) in &keys {
            // Behind Keyward's back: AWS holds the spec and usage asked for.
            let meta = app.aws_meta(&aws_id(k)).await;
            assert_eq!(meta.key_spec().map(|s| s.as_str()), Some(spec_name(spec)));
            assert_eq!(meta.key_usage().map(|u| u.as_str()), Some(*usage));
        }
        made += keys.len();
    }
    assert_eq!(made, 1 + 3 * 2 + 3 * 2 + 1 + 4, "the pairs AWS allows");

    // Empty key_ops: the spec's one usage, or its default; RSA must choose.
    let hmac = app.try_create_key(&g.name, new_key("hmac-default", pb::KeySpec::Hmac256, &[])).await.expect("hmac");
    assert_eq!(hmac.aws.as_ref().map(|a| a.key_usage.as_str()), Some("GENERATE_VERIFY_MAC"));
    // ... and the key may do what that usage does: a key made without key_ops is usable.
    assert_eq!(hmac.key_ops, ops(&[Op::GenerateMac, Op::VerifyMac]));
    let mut c = app.crypto_client();
    let mac = pb::GenerateMacRequest { name: hmac.name.clone(), message: b"m".to_vec(), mac_algorithm: String::new() };
    c.generate_mac(mac).await.expect("an HMAC key made without key_ops makes MACs");
    let sym =
        app.try_create_key(&g.name, new_key("sym-default", pb::KeySpec::SymmetricDefault, &[])).await.expect("sym");
    assert_eq!(sym.key_ops, ops(&[Op::Encrypt, Op::Decrypt]), "ENCRYPT_DECRYPT, less AES key wrap (Keyward keys only)");
    let e = app.try_create_key(&g.name, new_key("rsa-default", pb::KeySpec::Rsa2048, &[])).await.expect_err("rsa");
    invalid_on(&e, "key.key_ops", "RSA without key_ops");
    // Two usages at once: refused.
    let mixed = new_key("mixed", pb::KeySpec::EccNistP256, &[Op::Sign, Op::DeriveSharedSecret]);
    invalid_on(&app.try_create_key(&g.name, mixed).await.expect_err("two usages"), "key.key_ops", "two usages");
    // A REGULAR group holds AES keys only: an HMAC op on one is refused.
    let vault = app.regular_group("specs-vault").await;
    let e = app.try_create_key(&vault.name, new_key("aes-mac", pb::KeySpec::Aes256, &[Op::GenerateMac])).await;
    invalid_on(&e.expect_err("AES with GENERATE_MAC"), "key.key_ops", "AES with GENERATE_MAC");
}

/// A front answering CreateKey with the KeyMetadata AWS documents, echoing the spec and usage.
fn create_key_answer() -> Answer {
    Arc::new(|req: &Value| {
        let id = uuid::Uuid::new_v4().to_string();
        json!({ "KeyMetadata": {
            "AWSAccountId": "111122223333",
            "KeyId": id,
            "Arn": format!("arn:aws:kms:eu-west-1:111122223333:key/{id}"),
            "CreationDate": 1.7646336E9,
            "Enabled": true,
            "Description": req.get("Description").cloned().unwrap_or(json!("")),
            "KeyUsage": req["KeyUsage"],
            "KeySpec": req["KeySpec"],
            "CustomerMasterKeySpec": req["KeySpec"],
            "KeyState": "Enabled",
            "Origin": "AWS_KMS",
            "KeyManager": "CUSTOMER",
            "MultiRegion": false
        }})
    })
}

#[tokio::test]
async fn specs_no_emulator_makes_send_aws_the_create_key_its_reference_documents() {
    let mut app = TestApp::spawn().await;
    let front = KmsFront::start(&app.emulator_url, [("CreateKey", create_key_answer())].into()).await;
    let cfg = pb::AwsKmsConfig { endpoint_url: front.url.clone(), ..app.aws_kms_config() };
    let g = app.create_group(aws_group("front", cfg.clone())).await.expect("group");
    let specs = [
        pb::KeySpec::EccNistEdwards25519,
        pb::KeySpec::MlDsa44,
        pb::KeySpec::MlDsa65,
        pb::KeySpec::MlDsa87,
        pb::KeySpec::MlKem512,
        pb::KeySpec::MlKem768,
        pb::KeySpec::MlKem1024,
    ];
    let mut expected = Vec::new();
    for spec in specs {
        for (k, usage) in every_usage(&mut app, &g.name, spec).await {
            expected.push((spec_name(spec), usage));
            assert_eq!(k.aws.map(|a| a.key_spec), Some(spec_name(spec).to_owned()));
        }
    }
    let sent: Vec<(String, String)> = front
        .requests("CreateKey")
        .iter()
        .map(|r| (r["KeySpec"].as_str().unwrap_or("").to_owned(), r["KeyUsage"].as_str().unwrap_or("").to_owned()))
        .collect();
    let expected: Vec<(String, String)> = expected.iter().map(|(s, u)| (s.to_string(), u.to_string())).collect();
    assert_eq!(sent, expected, "one CreateKey per allowed pair, none for a refused one");

    // SM2 only in the China Regions; ML-KEM everywhere but there.
    let e = app.try_create_key(&g.name, new_key("sm2", pb::KeySpec::Sm2, &[Op::Sign])).await;
    invalid_on(&e.expect_err("SM2 in eu-west-1"), "key.key_spec", "SM2 outside China");
    let china = pb::AwsKmsConfig { region: "cn-north-1".into(), ..cfg };
    let cn = app.create_group(aws_group("front-cn", china)).await.expect("cn group");
    let before = front.requests("CreateKey").len();
    let made = every_usage(&mut app, &cn.name, pb::KeySpec::Sm2).await;
    assert_eq!(made.len(), 3, "ENCRYPT_DECRYPT, SIGN_VERIFY and KEY_AGREEMENT");
    let e = app.try_create_key(&cn.name, new_key("kem", pb::KeySpec::MlKem768, &[Op::Encapsulate])).await;
    invalid_on(&e.expect_err("ML-KEM in China"), "key.key_spec", "ML-KEM in cn-north-1");
    let sm2: Vec<Value> = front.requests("CreateKey")[before..].to_vec();
    assert_eq!(sm2.len(), 3);
    assert!(sm2.iter().all(|r| r["KeySpec"] == json!("SM2")), "{sm2:?}");
}

#[tokio::test]
async fn sync_reads_the_new_specs_and_usages_by_name_and_policies_govern_them() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("synced").await;
    // Behind Keyward's back: an HMAC key and a key-agreement key.
    for (spec, usage) in [
        (aws_sdk_kms::types::KeySpec::Hmac384, aws_sdk_kms::types::KeyUsageType::GenerateVerifyMac),
        (aws_sdk_kms::types::KeySpec::EccNistP256, aws_sdk_kms::types::KeyUsageType::KeyAgreement),
    ] {
        app.aws.create_key().key_spec(spec).key_usage(usage).send().await.expect("aws create");
    }
    app.sync(&g.name).await;
    let mut found: Vec<(i32, Vec<i32>)> =
        app.all_keys(&g.name, "").await.into_iter().map(|k| (k.key_spec, k.key_ops)).collect();
    found.sort();
    let mut want = vec![
        (pb::KeySpec::EccNistP256 as i32, ops(&[Op::DeriveSharedSecret])),
        (pb::KeySpec::Hmac384 as i32, ops(&[Op::GenerateMac, Op::VerifyMac])),
    ];
    want.sort();
    assert_eq!(found, want);

    // A group policy allowing HMAC_256 with GENERATE_MAC only.
    let policy = pb::CryptoPolicy {
        allowed_key_specs: vec![pb::KeySpec::Hmac256 as i32],
        allowed_key_ops: ops(&[Op::GenerateMac]),
    };
    let strict = app
        .create_group(pb::Group { crypto_policy: Some(policy), ..aws_group("hmac-only", app.aws_kms_config()) })
        .await
        .expect("group");
    let before = app.aws_key_count().await;
    for (name, spec, key_ops) in [
        ("other-size", pb::KeySpec::Hmac512, vec![Op::GenerateMac]),
        ("verify-too", pb::KeySpec::Hmac256, vec![Op::GenerateMac, Op::VerifyMac]),
    ] {
        let e = app.try_create_key(&strict.name, new_key(name, spec, &key_ops)).await.expect_err(name);
        assert_eq!(e.code(), Code::FailedPrecondition, "{name}: {e:?}");
    }
    assert_eq!(app.aws_key_count().await, before, "refused before AWS");
    app.try_create_key(&strict.name, new_key("ok", pb::KeySpec::Hmac256, &[Op::GenerateMac])).await.expect("allowed");
}
