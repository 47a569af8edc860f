//! CryptoService with virtual asymmetric, HMAC and symmetric keys against the emulator, checked
//! independently where a check can be: a signature made through Keyward verifies under aws-lc-rs
//! with the key from GetPublicKey; an RSA ciphertext made locally with that key decrypts through
//! Keyward; a data key's plaintext is what its ciphertext decrypts to; an ECDH secret derived
//! through Keyward equals the one computed locally; a MAC verifies and fails when one byte
//! changes. Refusals (operation, state, algorithm, size) are decided before AWS: an armed fault
//! on the AWS call would answer otherwise.

use aws_lc_rs::{agreement, digest, rand, rsa, signature};
use keyward_proto::v1 as pb;
use keyward_shared::kms::Error as KmsError;
use keyward_shared::kms::faults::Fault;
use std::sync::Arc;

use keyward_tests::fixtures::{sign_req, spki_key};
use keyward_tests::front::{Answer, KmsFront};
use keyward_tests::status::{invalid_on, precondition};
use keyward_tests::{Conn, TestApp};
use pb::KeyOperation as Op;
use pb::crypto_service_client::CryptoServiceClient;

async fn public_key(c: &mut CryptoServiceClient<Conn>, name: &str) -> pb::GetPublicKeyResponse {
    c.get_public_key(pb::GetPublicKeyRequest { name: name.into() }).await.expect("GetPublicKey").into_inner()
}

async fn verify(c: &mut CryptoServiceClient<Conn>, name: &str, message: &[u8], sig: &[u8], alg: &str) -> bool {
    let req = pb::VerifyRequest {
        name: name.into(),
        message: message.to_vec(),
        message_type: "RAW".into(),
        signature: sig.to_vec(),
        signing_algorithm: alg.into(),
    };
    c.verify(req).await.expect("Verify").into_inner().signature_valid
}

/// A fault that answers every AWS `op` call with an error no refusal here has: a refusal seen
/// instead proves Keyward decided before calling AWS.
fn arm(app: &TestApp, op: &'static str) {
    app.faults.inject(Fault::Fail { op, key: None, error: KmsError::Other("AWS was called".into()), times: None });
}

#[tokio::test]
async fn signatures_made_through_keyward_verify_locally_and_refusals_come_first() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("signing").await;
    let mut c = app.crypto_client();
    let message = b"order 4711: 3 items, EUR 99.00".to_vec();
    let cases: [(pb::KeySpec, &str, &'static dyn signature::VerificationAlgorithm); 4] = [
        (pb::KeySpec::Rsa2048, "RSASSA_PSS_SHA_256", &signature::RSA_PSS_2048_8192_SHA256),
        (pb::KeySpec::Rsa3072, "RSASSA_PKCS1_V1_5_SHA_384", &signature::RSA_PKCS1_2048_8192_SHA384),
        (pb::KeySpec::EccNistP256, "ECDSA_SHA_256", &signature::ECDSA_P256_SHA256_ASN1),
        (pb::KeySpec::EccNistP384, "ECDSA_SHA_384", &signature::ECDSA_P384_SHA384_ASN1),
    ];
    for (spec, alg, local) in cases {
        let k = app.create_key(&g.name, alg, spec, &[Op::Sign, Op::Verify]).await;
        let pk = public_key(&mut c, &k.name).await;
        assert!(pk.signing_algorithms.iter().any(|a| a == alg), "{alg}: {:?}", pk.signing_algorithms);
        assert!(pk.public_key_pem.starts_with("-----BEGIN PUBLIC KEY-----\n"));
        let sig = c.sign(sign_req(&k.name, &message, "", alg)).await.expect("sign").into_inner();
        assert_eq!(sig.signing_algorithm, alg);
        signature::UnparsedPublicKey::new(local, spki_key(&pk.public_key))
            .verify(&message, &sig.signature)
            .unwrap_or_else(|_| panic!("{alg}: the signature does not verify under aws-lc-rs"));
        assert!(verify(&mut c, &k.name, &message, &sig.signature, alg).await);
        let mut changed = message.clone();
        changed[0] ^= 1;
        assert!(!verify(&mut c, &k.name, &changed, &sig.signature, alg).await, "{alg}: a changed message");
    }

    // Every signing algorithm of RSA and of the other curves, each verified outside.
    let every: [(pb::KeySpec, &str, &'static dyn signature::VerificationAlgorithm); 7] = [
        (pb::KeySpec::Rsa2048, "RSASSA_PSS_SHA_384", &signature::RSA_PSS_2048_8192_SHA384),
        (pb::KeySpec::Rsa2048, "RSASSA_PSS_SHA_512", &signature::RSA_PSS_2048_8192_SHA512),
        (pb::KeySpec::Rsa2048, "RSASSA_PKCS1_V1_5_SHA_256", &signature::RSA_PKCS1_2048_8192_SHA256),
        (pb::KeySpec::Rsa2048, "RSASSA_PKCS1_V1_5_SHA_512", &signature::RSA_PKCS1_2048_8192_SHA512),
        (pb::KeySpec::Rsa4096, "RSASSA_PSS_SHA_256", &signature::RSA_PSS_2048_8192_SHA256),
        (pb::KeySpec::EccNistP521, "ECDSA_SHA_512", &signature::ECDSA_P521_SHA512_ASN1),
        (pb::KeySpec::EccSecgP256k1, "ECDSA_SHA_256", &signature::ECDSA_P256K1_SHA256_ASN1),
    ];
    let mut made = std::collections::HashMap::new();
    for (spec, alg, local) in every {
        if let std::collections::hash_map::Entry::Vacant(slot) = made.entry(spec as i32) {
            let k = app.create_key(&g.name, &format!("every-{}", spec as i32), spec, &[Op::Sign, Op::Verify]).await;
            let pk = public_key(&mut c, &k.name).await;
            slot.insert((k.name, pk.public_key));
        }
        let (name, der) = &made[&(spec as i32)];
        let sig = c.sign(sign_req(name, &message, "RAW", alg)).await.expect(alg).into_inner().signature;
        signature::UnparsedPublicKey::new(local, spki_key(der))
            .verify(&message, &sig)
            .unwrap_or_else(|_| panic!("{alg}: does not verify under aws-lc-rs"));
    }

    // DIGEST: AWS signs the given SHA-256; it verifies over the message itself.
    let k = app.create_key(&g.name, "digest", pb::KeySpec::EccNistP256, &[Op::Sign, Op::Verify]).await;
    let d = digest::digest(&digest::SHA256, &message);
    let sig = c.sign(sign_req(&k.name, d.as_ref(), "DIGEST", "ECDSA_SHA_256")).await.expect("sign digest");
    let pk = public_key(&mut c, &k.name).await;
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, spki_key(&pk.public_key))
        .verify(&message, &sig.into_inner().signature)
        .expect("a DIGEST signature verifies over the message");

    // Refused before AWS (a fault on Sign would answer UNKNOWN/INTERNAL otherwise).
    arm(&app, "sign");
    let enc = app.create_key(&g.name, "rsa-enc", pb::KeySpec::Rsa2048, &[Op::Encrypt, Op::Decrypt]).await;
    let e = c.sign(sign_req(&enc.name, &message, "", "RSASSA_PSS_SHA_256")).await.expect_err("SIGN on ENCRYPT_DECRYPT");
    precondition(&e, "KEY_OPS", "SIGN on an encryption key");
    let e = c.sign(sign_req(&k.name, &message, "", "ECDSA_SHA_384")).await.expect_err("P-256 with SHA-384");
    invalid_on(&e, "signing_algorithm", "an algorithm the spec does not offer");
    let e = c.sign(sign_req(&k.name, &[0u8; 4097], "RAW", "ECDSA_SHA_256")).await.expect_err("4097 bytes");
    invalid_on(&e, "message", "over AWS's RAW limit");
    let e = c.sign(sign_req(&k.name, &[0u8; 20], "DIGEST", "ECDSA_SHA_256")).await.expect_err("short digest");
    invalid_on(&e, "message", "a digest of the wrong length");
    let sym = app.create_key(&g.name, "sym", pb::KeySpec::SymmetricDefault, &[Op::Encrypt]).await;
    let e = c.sign(sign_req(&sym.name, &message, "", "ECDSA_SHA_256")).await.expect_err("symmetric");
    precondition(&e, "KEY_SPEC", "SIGN with a symmetric key");
    app.set_enabled(&k.name, false).await;
    let e = c.sign(sign_req(&k.name, &message, "", "ECDSA_SHA_256")).await.expect_err("disabled");
    precondition(&e, "KEY_STATE", "a disabled key");
    let e = c.get_public_key(pb::GetPublicKeyRequest { name: sym.name.clone() }).await.expect_err("no public key");
    precondition(&e, "KEY_SPEC", "GetPublicKey of a symmetric key");
}

#[tokio::test]
async fn rsa_ciphertexts_made_locally_decrypt_through_keyward() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("rsa").await;
    let mut c = app.crypto_client();
    let k = app.create_key(&g.name, "rsa", pb::KeySpec::Rsa2048, &[Op::Encrypt, Op::Decrypt]).await;
    let pk = public_key(&mut c, &k.name).await;
    assert_eq!(pk.encryption_algorithms, vec!["RSAES_OAEP_SHA_1".to_owned(), "RSAES_OAEP_SHA_256".to_owned()]);
    let local = rsa::OaepPublicEncryptingKey::new(rsa::PublicEncryptingKey::from_der(&pk.public_key).expect("der"))
        .expect("oaep key");
    let secret = b"a 32-byte data key, or a password".to_vec();
    let mut out = vec![0u8; local.ciphertext_size()];
    let ct = local.encrypt(&rsa::OAEP_SHA256_MGF1SHA256, &secret, &mut out, None).expect("encrypt locally").to_vec();
    let dec = |ct: Vec<u8>, alg: &str| pb::DecryptRequest {
        name: k.name.clone(),
        ciphertext: ct,
        encryption_algorithm: alg.into(),
        ..Default::default()
    };
    let back = c.decrypt(dec(ct.clone(), "RSAES_OAEP_SHA_256")).await.expect("decrypt").into_inner().plaintext;
    assert_eq!(back, secret);
    // Through Keyward both ways, SHA-1 OAEP.
    let enc = pb::EncryptRequest {
        name: k.name.clone(),
        plaintext: secret.clone(),
        encryption_algorithm: "RSAES_OAEP_SHA_1".into(),
        ..Default::default()
    };
    let ct1 = c.encrypt(enc.clone()).await.expect("encrypt").into_inner().ciphertext;
    assert_eq!(c.decrypt(dec(ct1, "RSAES_OAEP_SHA_1")).await.expect("decrypt").into_inner().plaintext, secret);

    arm(&app, "encrypt");
    arm(&app, "decrypt");
    let e = c.decrypt(dec(ct, "")).await.expect_err("no algorithm");
    invalid_on(&e, "encryption_algorithm", "RSA needs an algorithm");
    let big = pb::EncryptRequest {
        plaintext: vec![1; 191],
        encryption_algorithm: "RSAES_OAEP_SHA_256".into(),
        ..enc.clone()
    };
    invalid_on(&c.encrypt(big).await.expect_err("191 bytes"), "plaintext", "over OAEP-SHA-256's 190 bytes");
    let with_aad = pb::EncryptRequest { aad: b"x".to_vec(), ..enc.clone() };
    invalid_on(&c.encrypt(with_aad).await.expect_err("aad"), "aad", "AWS binds no context to RSA");
    let bad_alg = pb::EncryptRequest { encryption_algorithm: "SYMMETRIC_DEFAULT".into(), ..enc };
    invalid_on(&c.encrypt(bad_alg).await.expect_err("symmetric alg"), "encryption_algorithm", "not RSA's");
}

#[tokio::test]
async fn macs_verify_and_fail_on_one_changed_byte() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("mac").await;
    let mut c = app.crypto_client();
    let k = app.create_key(&g.name, "hmac", pb::KeySpec::Hmac256, &[Op::GenerateMac, Op::VerifyMac]).await;
    let message = b"webhook body".to_vec();
    let req = pb::GenerateMacRequest { name: k.name.clone(), message: message.clone(), mac_algorithm: String::new() };
    let out = c.generate_mac(req.clone()).await.expect("mac").into_inner();
    assert_eq!((out.mac.len(), out.mac_algorithm.as_str()), (32, "HMAC_SHA_256"));
    let check = |m: Vec<u8>, mac: Vec<u8>| pb::VerifyMacRequest {
        name: k.name.clone(),
        message: m,
        mac,
        mac_algorithm: "HMAC_SHA_256".into(),
    };
    assert!(c.verify_mac(check(message.clone(), out.mac.clone())).await.expect("verify").into_inner().mac_valid);
    let mut changed = message.clone();
    changed[3] ^= 0x20;
    assert!(!c.verify_mac(check(changed, out.mac.clone())).await.expect("verify").into_inner().mac_valid);
    let mut bad_mac = out.mac.clone();
    bad_mac[0] ^= 1;
    assert!(!c.verify_mac(check(message.clone(), bad_mac)).await.expect("verify").into_inner().mac_valid);

    arm(&app, "generate_mac");
    let other = pb::GenerateMacRequest { mac_algorithm: "HMAC_SHA_512".into(), ..req.clone() };
    invalid_on(&c.generate_mac(other).await.expect_err("512 on 256"), "mac_algorithm", "another size's algorithm");
    let big = pb::GenerateMacRequest { message: vec![0; 4097], ..req };
    invalid_on(&c.generate_mac(big).await.expect_err("4097"), "message", "over 4096 bytes");
}

#[tokio::test]
async fn data_keys_open_with_decrypt_and_reencrypt_moves_a_ciphertext() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("envelope").await;
    let vault = app.regular_group("envelope-vault").await;
    let mut c = app.crypto_client();
    let a = app.create_key(&g.name, "a", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt]).await;
    let b = app.create_key(&g.name, "b", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt]).await;
    let local = app.create_key(&vault.name, "local", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt]).await;
    let context: std::collections::HashMap<String, String> = [("tenant".to_owned(), "acme".to_owned())].into();
    let dec = |name: &str, ct: Vec<u8>, ctx: std::collections::HashMap<String, String>| pb::DecryptRequest {
        name: name.into(),
        ciphertext: ct,
        encryption_context: ctx,
        ..Default::default()
    };

    let dk = c
        .generate_data_key(pb::GenerateDataKeyRequest {
            name: a.name.clone(),
            key_spec: "AES_256".into(),
            encryption_context: context.clone(),
            ..Default::default()
        })
        .await
        .expect("data key")
        .into_inner();
    assert_eq!(dk.plaintext.len(), 32);
    let opened = c.decrypt(dec(&a.name, dk.ciphertext.clone(), context.clone())).await.expect("decrypt");
    assert_eq!(opened.into_inner().plaintext, dk.plaintext, "the ciphertext is the data key's");
    let e = c.decrypt(dec(&a.name, dk.ciphertext.clone(), Default::default())).await.expect_err("no context");
    invalid_on(&e, "ciphertext", "the context is bound");

    let bare = pb::GenerateDataKeyWithoutPlaintextRequest {
        name: a.name.clone(),
        key_spec: "AES_256".into(),
        ..Default::default()
    };
    let ct = c.generate_data_key_without_plaintext(bare).await.expect("without plaintext").into_inner().ciphertext;
    let opened = c.decrypt(dec(&a.name, ct, Default::default())).await.expect("decrypt").into_inner();
    assert_eq!(opened.plaintext.len(), 32);
    // LocalStack 4.10 makes 32 bytes whatever is asked: NumberOfBytes is checked in the request
    // Keyward sends, through a recording front (AWS's GenerateDataKey reference).
    let answer: Answer = Arc::new(
        |_req: &serde_json::Value| serde_json::json!({ "KeyId": "arn:aws:kms:eu-west-1:111122223333:key/x", "CiphertextBlob": "AAAA" }),
    );
    let front = KmsFront::start(&app.emulator_url, [("GenerateDataKeyWithoutPlaintext", answer)].into()).await;
    let cfg = pb::AwsKmsConfig { endpoint_url: front.url.clone(), ..app.aws_kms_config() };
    let fronted = app.create_group(keyward_tests::fixtures::aws_group("envelope-front", cfg)).await.expect("group");
    let fk = app.create_key(&fronted.name, "f", pb::KeySpec::SymmetricDefault, &[Op::Encrypt, Op::Decrypt]).await;
    let bare = pb::GenerateDataKeyWithoutPlaintextRequest {
        name: fk.name.clone(),
        number_of_bytes: 64,
        encryption_context: context.clone(),
        ..Default::default()
    };
    c.generate_data_key_without_plaintext(bare).await.expect("through the front");
    let sent = front.requests("GenerateDataKeyWithoutPlaintext");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["NumberOfBytes"], serde_json::json!(64));
    assert!(sent[0].get("KeySpec").is_none(), "one of KeySpec and NumberOfBytes: {}", sent[0]);
    assert_eq!(sent[0]["EncryptionContext"], serde_json::json!({ "tenant": "acme" }));

    // A Keyward key makes its data keys itself; Decrypt opens them.
    let kdk = pb::GenerateDataKeyRequest { name: local.name.clone(), key_spec: "AES_128".into(), ..Default::default() };
    let kdk = c.generate_data_key(kdk).await.expect("keyward data key").into_inner();
    assert_eq!(kdk.plaintext.len(), 16);
    let opened = c.decrypt(dec(&local.name, kdk.ciphertext.clone(), Default::default())).await.expect("decrypt");
    assert_eq!(opened.into_inner().plaintext, kdk.plaintext);

    // A data key pair: its private key's ciphertext opens to its plaintext.
    let pair = pb::GenerateDataKeyPairRequest {
        name: a.name.clone(),
        key_pair_spec: "ECC_NIST_P256".into(),
        ..Default::default()
    };
    let pair = c.generate_data_key_pair(pair).await.expect("pair").into_inner();
    let opened = c.decrypt(dec(&a.name, pair.private_key_ciphertext, Default::default())).await.expect("decrypt");
    assert_eq!(opened.into_inner().plaintext, pair.private_key_plaintext);
    spki_key(&pair.public_key);

    // ReEncrypt: a → b inside AWS; b → the Keyward key through Keyward.
    let moved = |name: &str, source: &str, ct: Vec<u8>| pb::ReEncryptRequest {
        name: name.into(),
        ciphertext: ct,
        source_key: source.into(),
        source_encryption_context: context.clone(),
        ..Default::default()
    };
    let to_b =
        c.re_encrypt(moved(&b.name, &a.name, dk.ciphertext.clone())).await.expect("to b").into_inner().ciphertext;
    let opened = c.decrypt(dec(&b.name, to_b.clone(), Default::default())).await.expect("b opens it");
    assert_eq!(opened.into_inner().plaintext, dk.plaintext);
    let mut to_local = moved(&local.name, &b.name, to_b);
    to_local.source_encryption_context.clear();
    let in_keyward = c.re_encrypt(to_local).await.expect("to the Keyward key").into_inner().ciphertext;
    let opened = c.decrypt(dec(&local.name, in_keyward, Default::default())).await.expect("local opens it");
    assert_eq!(opened.into_inner().plaintext, dk.plaintext);

    // A ReEncrypt that cannot finish opens nothing: the destination is checked before AWS
    // Decrypt of the source (armed to fail, so a call would show), with its own field names.
    let off = app.create_key(&vault.name, "off", pb::KeySpec::Aes256, &[Op::Encrypt, Op::Decrypt]).await;
    app.set_enabled(&off.name, false).await;
    let rsa = app.create_key(&vault.name, "rsa-dest", pb::KeySpec::Rsa2048, &[Op::Encrypt, Op::Decrypt]).await;
    arm(&app, "decrypt");
    let e = c.re_encrypt(moved(&off.name, &a.name, dk.ciphertext.clone())).await.expect_err("disabled destination");
    precondition(&e, "KEY_STATE", "a disabled destination, before AWS is asked");
    let mut bogus = moved(&rsa.name, &a.name, dk.ciphertext.clone());
    bogus.destination_encryption_algorithm = "BOGUS".into();
    let e = c.re_encrypt(bogus).await.expect_err("bogus algorithm");
    invalid_on(&e, "destination_encryption_algorithm", "named as the request names it");
    let mut with_aad = moved(&rsa.name, &a.name, dk.ciphertext.clone());
    with_aad.destination_encryption_algorithm = "RSAES_OAEP_SHA_256".into();
    with_aad.destination_aad = b"x".to_vec();
    invalid_on(&c.re_encrypt(with_aad).await.expect_err("aad on RSA"), "destination_aad", "destination_aad");
    let mut src_ctx = moved(&b.name, &local.name, kdk.ciphertext.clone());
    src_ctx.source_encryption_context = context.clone();
    invalid_on(
        &c.re_encrypt(src_ctx).await.expect_err("context on a Keyward source"),
        "source_encryption_context",
        "source",
    );

    arm(&app, "generate_data_key");
    for (req, field) in [
        (pb::GenerateDataKeyRequest { name: a.name.clone(), ..Default::default() }, "key_spec"),
        (
            pb::GenerateDataKeyRequest { name: a.name.clone(), number_of_bytes: 1025, ..Default::default() },
            "number_of_bytes",
        ),
        (
            pb::GenerateDataKeyRequest {
                name: a.name.clone(),
                key_spec: "AES_256".into(),
                number_of_bytes: 32,
                ..Default::default()
            },
            "number_of_bytes",
        ),
        (
            pb::GenerateDataKeyRequest { name: a.name.clone(), key_spec: "AES_512".into(), ..Default::default() },
            "key_spec",
        ),
        (
            pb::GenerateDataKeyRequest {
                name: a.name.clone(),
                key_spec: "AES_512".into(),
                number_of_bytes: 5,
                ..Default::default()
            },
            "key_spec",
        ),
        (
            pb::GenerateDataKeyRequest {
                name: local.name.clone(),
                key_spec: "AES_256".into(),
                encryption_context: context.clone(),
                ..Default::default()
            },
            "encryption_context",
        ),
    ] {
        invalid_on(&c.generate_data_key(req).await.expect_err(field), field, field);
    }
}

#[tokio::test]
async fn a_shared_secret_derived_through_keyward_equals_the_local_one() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("ecdh").await;
    let mut c = app.crypto_client();
    let k = app.create_key(&g.name, "agree", pb::KeySpec::EccNistP256, &[Op::DeriveSharedSecret]).await;
    let kms_public = spki_key(&public_key(&mut c, &k.name).await.public_key);
    let rng = rand::SystemRandom::new();
    let mine = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &rng).expect("ephemeral key");
    let my_public = mine.compute_public_key().expect("public key");
    let my_der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&my_public).expect("der");
    let req = pb::DeriveSharedSecretRequest {
        name: k.name.clone(),
        key_agreement_algorithm: "ECDH".into(),
        public_key: my_der.as_ref().to_vec(),
    };
    let theirs = c.derive_shared_secret(req.clone()).await.expect("derive").into_inner().shared_secret;
    let local = agreement::agree_ephemeral(
        mine,
        agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, kms_public),
        aws_lc_rs::error::Unspecified,
        |s| Ok(s.to_vec()),
    )
    .expect("agree locally");
    // AWS answers the raw ECDH secret; LocalStack 4.10 answers HKDF-SHA256 of it (no salt, no
    // info). Both are computed here; the answer must be one of the two.
    let prk = aws_lc_rs::hkdf::Salt::new(aws_lc_rs::hkdf::HKDF_SHA256, &[]).extract(&local);
    let mut hkdf = [0u8; 32];
    prk.expand(&[], aws_lc_rs::hkdf::HKDF_SHA256).and_then(|okm| okm.fill(&mut hkdf)).expect("hkdf");
    assert!(theirs == local || theirs == hkdf, "the secret is neither the raw ECDH secret nor LocalStack's HKDF of it");
    assert_eq!(theirs.len(), 32);

    arm(&app, "derive_shared_secret");
    let e = c.derive_shared_secret(pb::DeriveSharedSecretRequest {
        key_agreement_algorithm: "X25519".into(),
        ..req.clone()
    });
    invalid_on(&e.await.expect_err("not ECDH"), "key_agreement_algorithm", "an algorithm AWS lacks");
    let e = c.derive_shared_secret(pb::DeriveSharedSecretRequest { public_key: vec![], ..req.clone() }).await;
    invalid_on(&e.expect_err("no public key"), "public_key", "required");
    // A peer key on another curve: refused here, not sent to AWS.
    let p384 = agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P384, &rng).expect("p-384 key");
    let p384 = p384.compute_public_key().expect("public key");
    let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::PublicKeyX509Der>::as_der(&p384).expect("der");
    let e = c.derive_shared_secret(pb::DeriveSharedSecretRequest { public_key: der.as_ref().to_vec(), ..req }).await;
    invalid_on(&e.expect_err("another curve"), "public_key", "a P-384 key for a P-256 key");
}
