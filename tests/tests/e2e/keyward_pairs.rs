//! Keyward-held key pairs and HMAC keys (REGULAR groups, made and used with aws-lc-rs), checked
//! from outside: signatures verify under aws-lc-rs with the key GetPublicKey gives, an RSA
//! ciphertext made with that key decrypts through Keyward, MACs verify and fail on a changed byte,
//! the private key is sealed at rest; and what such keys cannot do is refused up front.

use aws_lc_rs::{digest, rsa, signature};
use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use keyward_tests::fixtures::{sign_req, spki_key};
use keyward_tests::status::{invalid_on, precondition};
use pb::KeyOperation as Op;

fn new_key(name: &str, spec: pb::KeySpec, ops: &[Op]) -> pb::Key {
    pb::Key {
        display_name: name.into(),
        key_spec: spec as i32,
        key_ops: keyward_tests::fixtures::ops(ops),
        ..Default::default()
    }
}

#[tokio::test]
async fn keyward_key_pairs_sign_and_their_signatures_verify_outside() {
    let mut app = TestApp::spawn().await;
    let vault = app.regular_group("pairs").await;
    let mut c = app.crypto_client();
    let message = b"release v2.4.1 sha256:0f3a".to_vec();
    let cases: [(pb::KeySpec, &str, &'static dyn signature::VerificationAlgorithm); 6] = [
        (pb::KeySpec::Rsa2048, "RSASSA_PSS_SHA_256", &signature::RSA_PSS_2048_8192_SHA256),
        (pb::KeySpec::Rsa3072, "RSASSA_PKCS1_V1_5_SHA_512", &signature::RSA_PKCS1_2048_8192_SHA512),
        (pb::KeySpec::EccNistP256, "ECDSA_SHA_256", &signature::ECDSA_P256_SHA256_ASN1),
        (pb::KeySpec::EccNistP384, "ECDSA_SHA_384", &signature::ECDSA_P384_SHA384_ASN1),
        (pb::KeySpec::EccNistP521, "ECDSA_SHA_512", &signature::ECDSA_P521_SHA512_ASN1),
        (pb::KeySpec::EccNistEdwards25519, "ED25519_SHA_512", &signature::ED25519),
    ];
    for (spec, alg, local) in cases {
        let k = app.create_key(&vault.name, alg, spec, &[Op::Sign, Op::Verify]).await;
        assert!(!k.r#virtual && k.aws.is_none(), "{alg}: held by Keyward");
        let pk = c.get_public_key(pb::GetPublicKeyRequest { name: k.name.clone() }).await.expect("pk").into_inner();
        assert!(pk.signing_algorithms.iter().any(|a| a == alg), "{alg}: {:?}", pk.signing_algorithms);
        assert_eq!(pk.key_usage, "SIGN_VERIFY");
        let sig = c.sign(sign_req(&k.name, &message, "", alg)).await.expect("sign").into_inner().signature;
        signature::UnparsedPublicKey::new(local, spki_key(&pk.public_key))
            .verify(&message, &sig)
            .unwrap_or_else(|_| panic!("{alg}: the signature does not verify under aws-lc-rs"));
        let verify = |m: &[u8], s: &[u8]| pb::VerifyRequest {
            name: k.name.clone(),
            message: m.to_vec(),
            signature: s.to_vec(),
            signing_algorithm: alg.into(),
            ..Default::default()
        };
        assert!(c.verify(verify(&message, &sig)).await.expect("verify").into_inner().signature_valid);
        let mut changed = message.clone();
        changed[0] ^= 1;
        assert!(!c.verify(verify(&changed, &sig)).await.expect("verify").into_inner().signature_valid, "{alg}");
    }
    // A DIGEST, signed by a Keyward key, verifies over the message.
    let k = app.create_key(&vault.name, "digest", pb::KeySpec::EccNistP256, &[Op::Sign]).await;
    let d = digest::digest(&digest::SHA256, &message);
    let sig = c.sign(sign_req(&k.name, d.as_ref(), "DIGEST", "ECDSA_SHA_256")).await.expect("digest").into_inner();
    let pk = c.get_public_key(pb::GetPublicKeyRequest { name: k.name.clone() }).await.expect("pk").into_inner();
    signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_ASN1, spki_key(&pk.public_key))
        .verify(&message, &sig.signature)
        .expect("a DIGEST signature verifies over the message");

    // The private key is sealed at rest: the public point, which its PKCS #8 holds in the clear,
    // is nowhere in the database.
    let point = spki_key(&pk.public_key);
    let dump = app.database_dump().await;
    assert!(!dump.windows(point.len()).any(|w| w == point.as_slice()), "the private key is stored in plaintext");
    let hex_point = hex::encode(&point);
    assert!(!String::from_utf8_lossy(&dump).contains(&hex_point), "the private key is stored in plaintext (hex)");

    // Made without key_ops: the spec's default use (ECC signs).
    let plain = app.create_key(&vault.name, "plain", pb::KeySpec::EccNistP384, &[]).await;
    assert_eq!(plain.key_ops, keyward_tests::fixtures::ops(&[Op::Sign, Op::Verify]));

    // Ed25519ph is AWS's; aws-lc-rs signs Ed25519 over the message only.
    let ed = app.create_key(&vault.name, "ed", pb::KeySpec::EccNistEdwards25519, &[Op::Sign]).await;
    let e = c.sign(sign_req(&ed.name, &[0u8; 64], "DIGEST", "ED25519_PH_SHA_512")).await.expect_err("ed25519ph");
    invalid_on(&e, "signing_algorithm", "Ed25519ph on a Keyward key");
}

#[tokio::test]
async fn keyward_rsa_keys_decrypt_what_their_public_key_encrypted_and_hmac_keys_mac() {
    let mut app = TestApp::spawn().await;
    let vault = app.regular_group("rsa-hmac").await;
    let mut c = app.crypto_client();
    let k = app.create_key(&vault.name, "rsa", pb::KeySpec::Rsa3072, &[Op::Encrypt, Op::Decrypt]).await;
    let pk = c.get_public_key(pb::GetPublicKeyRequest { name: k.name.clone() }).await.expect("pk").into_inner();
    assert_eq!(pk.encryption_algorithms, vec!["RSAES_OAEP_SHA_1".to_owned(), "RSAES_OAEP_SHA_256".to_owned()]);
    let local = rsa::OaepPublicEncryptingKey::new(rsa::PublicEncryptingKey::from_der(&pk.public_key).expect("der"))
        .expect("oaep");
    let secret = b"wrapped by a partner".to_vec();
    let mut out = vec![0u8; local.ciphertext_size()];
    let ct = local.encrypt(&rsa::OAEP_SHA1_MGF1SHA1, &secret, &mut out, None).expect("encrypt").to_vec();
    let dec = |ct: Vec<u8>, alg: &str| pb::DecryptRequest {
        name: k.name.clone(),
        ciphertext: ct,
        encryption_algorithm: alg.into(),
        ..Default::default()
    };
    assert_eq!(c.decrypt(dec(ct.clone(), "RSAES_OAEP_SHA_1")).await.expect("decrypt").into_inner().plaintext, secret);
    let e = c.decrypt(dec(ct, "RSAES_OAEP_SHA_256")).await.expect_err("other hash");
    invalid_on(&e, "ciphertext", "OAEP with the wrong hash does not open");
    let enc = pb::EncryptRequest {
        name: k.name.clone(),
        plaintext: vec![7; 318],
        encryption_algorithm: "RSAES_OAEP_SHA_256".into(),
        ..Default::default()
    };
    let ct = c.encrypt(enc.clone()).await.expect("318 bytes: RSA_3072's OAEP-SHA-256 limit").into_inner().ciphertext;
    assert_eq!(c.decrypt(dec(ct, "RSAES_OAEP_SHA_256")).await.expect("decrypt").into_inner().plaintext, vec![7; 318]);
    let over = pb::EncryptRequest { plaintext: vec![7; 319], ..enc };
    invalid_on(&c.encrypt(over).await.expect_err("319 bytes"), "plaintext", "over the OAEP limit");

    let h = app.create_key(&vault.name, "hmac", pb::KeySpec::Hmac384, &[Op::GenerateMac, Op::VerifyMac]).await;
    let req = pb::GenerateMacRequest { name: h.name.clone(), message: b"event".to_vec(), mac_algorithm: String::new() };
    let mac = c.generate_mac(req).await.expect("mac").into_inner();
    assert_eq!((mac.mac.len(), mac.mac_algorithm.as_str()), (48, "HMAC_SHA_384"));
    let check = |m: &[u8], t: &[u8]| pb::VerifyMacRequest {
        name: h.name.clone(),
        message: m.to_vec(),
        mac: t.to_vec(),
        mac_algorithm: "HMAC_SHA_384".into(),
    };
    assert!(c.verify_mac(check(b"event", &mac.mac)).await.expect("verify").into_inner().mac_valid);
    assert!(!c.verify_mac(check(b"evenT", &mac.mac)).await.expect("verify").into_inner().mac_valid);
}

#[tokio::test]
async fn what_a_keyward_pair_cannot_do_is_refused_up_front() {
    let mut app = TestApp::spawn().await;
    let vault = app.regular_group("limits").await;
    let mut c = app.crypto_client();
    for (name, spec, ops, field) in [
        ("rsa-wrap", pb::KeySpec::Rsa2048, vec![Op::Encrypt, Op::WrapKey], "key.key_ops"),
        ("rsa-export", pb::KeySpec::Rsa2048, vec![Op::Sign, Op::Export], "key.key_ops"),
        ("rsa-both", pb::KeySpec::Rsa2048, vec![Op::Sign, Op::Encrypt], "key.key_ops"),
        ("rsa-none", pb::KeySpec::Rsa2048, vec![], "key.key_ops"),
        ("ecc-agree", pb::KeySpec::EccNistP256, vec![Op::DeriveSharedSecret], "key.key_ops"),
        ("ecc-encrypt", pb::KeySpec::EccNistP384, vec![Op::Encrypt], "key.key_ops"),
        ("hmac-sign", pb::KeySpec::Hmac256, vec![Op::Sign], "key.key_ops"),
        ("aws-only", pb::KeySpec::SymmetricDefault, vec![Op::Encrypt], "key.key_spec"),
        ("ml-dsa", pb::KeySpec::MlDsa65, vec![Op::Sign], "key.key_spec"),
        ("k1", pb::KeySpec::EccSecgP256k1, vec![Op::Sign], "key.key_spec"),
    ] {
        let e = app.try_create_key(&vault.name, new_key(name, spec, &ops)).await.expect_err(name);
        invalid_on(&e, field, name);
    }
    assert!(app.all_keys(&vault.name, "").await.is_empty(), "nothing made");

    let rsa = app.create_key(&vault.name, "rsa", pb::KeySpec::Rsa2048, &[Op::Encrypt, Op::Decrypt]).await;
    // Its use is fixed when it is made: an encryption key does not become a signing key.
    let mut to_sign = rsa.clone();
    to_sign.etag.clear();
    to_sign.key_ops = keyward_tests::fixtures::ops(&[Op::Sign, Op::Verify]);
    let e = app.update_key(to_sign, &["key_ops"]).await.expect_err("encryption key to signing key");
    invalid_on(&e, "key.key_ops", "a key pair's usage changed");
    let mut narrower = rsa.clone();
    narrower.etag.clear();
    narrower.key_ops = keyward_tests::fixtures::ops(&[Op::Decrypt]);
    app.update_key(narrower, &["key_ops"]).await.expect("fewer operations of the same use");
    let mut back = app.get_key(&rsa.name).await;
    back.etag.clear();
    back.key_ops = keyward_tests::fixtures::ops(&[Op::Encrypt, Op::Decrypt]);
    app.update_key(back, &["key_ops"]).await.expect("back to both");
    let dk = pb::GenerateDataKeyRequest { name: rsa.name.clone(), key_spec: "AES_256".into(), ..Default::default() };
    precondition(&c.generate_data_key(dk).await.expect_err("data key"), "KEY_SPEC", "a data key under RSA");
    let sign = c.sign(sign_req(&rsa.name, b"m", "", "RSASSA_PSS_SHA_256")).await.expect_err("sign");
    precondition(&sign, "KEY_OPS", "SIGN on an encryption key pair");
    let aws = app.create_aws_group("limits-aws").await;
    let copy = pb::CopyKeyRequest {
        source: rsa.name.clone(),
        target_group: aws.name.clone(),
        display_name: "copy".into(),
        ..Default::default()
    };
    precondition(&app.keys.copy_key(copy).await.expect_err("copy"), "COPY_SOURCE", "a key pair's material stays");
    let rotate = pb::RotateKeyRequest { name: rsa.name.clone(), ..Default::default() };
    let e = app.keys.rotate_key(rotate).await.expect_err("rotate a key pair");
    invalid_on(&e, "key_spec", "Keyward key pairs do not rotate yet");
}
