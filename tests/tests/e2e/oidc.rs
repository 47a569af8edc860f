//! OIDC / JWT bearer tokens against a real issuer on loopback (its JWKS over HTTP): a token of
//! the issuer for the audience authenticates the principal its `sub` is mapped to; every other
//! token is UNAUTHENTICATED and says why without echoing it; the issuer's key rotation is
//! followed, a flood of made-up key ids is not.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use keyward_proto::v1 as pb;
use keyward_shared::oidc::OidcSettings;
use keyward_tests::fixtures::mask;
use keyward_tests::oidc::Issuer;
use keyward_tests::{Options, TestApp, conn, logs};
use serde_json::json;
use tonic::Code;

const AUD: &str = "keyward";

async fn app_trusting(issuer: &Issuer) -> TestApp {
    let mut opts = Options::default();
    opts.settings.oidc =
        Some(OidcSettings { issuer: issuer.issuer.clone(), audience: AUD.into(), jwks_url: issuer.jwks_url.clone() });
    TestApp::spawn_with(opts).await
}

async fn me(app: &TestApp, token: &str) -> Result<pb::CurrentPrincipal, tonic::Status> {
    let mut c = pb::principal_service_client::PrincipalServiceClient::new(conn(app.addr, token));
    c.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.map(|r| r.into_inner())
}

#[tokio::test]
async fn a_token_of_the_issuer_authenticates_the_principal_its_subject_is_mapped_to() {
    let issuer = Issuer::start().await;
    let mut app = app_trusting(&issuer).await;
    let g = app.regular_group("payments").await.name;
    let (p, _) = app.principal_with("alice", &[], &[(g.as_str(), &[pb::GroupRole::CryptoUser])]).await;
    let mut admin = app.principal_client();
    let mut mapped = p.clone();
    mapped.oidc_subjects = vec!["alice@example.com".into()];
    let req = pb::UpdatePrincipalRequest { principal: Some(mapped.clone()), update_mask: mask(&["oidc_subjects"]) };
    let stored = admin.update_principal(req).await.expect("map the subject").into_inner();
    assert_eq!(stored.oidc_subjects, vec!["alice@example.com".to_owned()]);

    let good = issuer.token("alice@example.com", AUD, 300, json!({}));
    let cur = me(&app, &good).await.expect("a valid token");
    assert_eq!(cur.principal.map(|p| p.name), Some(p.name.clone()));
    assert_eq!(cur.authenticated_by, "oidc");
    assert_eq!(cur.groups.iter().map(|g| g.group.clone()).collect::<Vec<_>>(), vec![g.clone()]);
    // Its roles hold: it lists the group's keys, and may not delete the group.
    let mut keys = pb::key_service_client::KeyServiceClient::new(conn(app.addr, &good));
    keys.list_keys(pb::ListKeysRequest { parent: g.clone(), ..Default::default() }).await.expect("reads");
    let mut groups = pb::group_service_client::GroupServiceClient::new(conn(app.addr, &good));
    let e = groups.delete_group(pb::DeleteGroupRequest { name: g.clone(), force: false }).await;
    assert_eq!(e.expect_err("a crypto user deletes").code(), Code::PermissionDenied);

    // Every other token: UNAUTHENTICATED, saying why, never echoing it.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let (header, payload, _) = {
        let mut parts = good.split('.');
        (parts.next().unwrap().to_owned(), parts.next().unwrap().to_owned(), ())
    };
    let forged_payload = URL_SAFE_NO_PAD.encode(
        json!({ "iss": issuer.issuer, "sub": "alice@example.com", "aud": AUD, "exp": now + 300, "admin": true })
            .to_string(),
    );
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let cases = [
        ("for another audience", issuer.token("alice@example.com", "another-service", 300, json!({})), "aud"),
        ("expired", issuer.token("alice@example.com", AUD, -3600, json!({})), "expired"),
        ("not valid yet", issuer.token("alice@example.com", AUD, 7200, json!({ "nbf": now + 3600 })), "not valid yet"),
        (
            "of another issuer",
            issuer.token("alice@example.com", AUD, 300, json!({ "iss": "https://evil.example" })),
            "iss",
        ),
        ("without a sub", issuer.sign(&json!({ "iss": issuer.issuer, "aud": AUD, "exp": now + 300 }), None), "sub"),
        ("of an unmapped subject", issuer.token("mallory@example.com", AUD, 300, json!({})), "names no principal"),
        (
            "with a changed payload",
            format!("{header}.{forged_payload}.{}", good.rsplit('.').next().unwrap()),
            "signature",
        ),
        ("unsigned (alg none)", format!("{none_header}.{payload}."), "not a valid JWT"),
        (
            "naming a key id the issuer lacks",
            issuer.sign(
                &json!({ "iss": issuer.issuer, "sub": "alice@example.com", "aud": AUD, "exp": now + 300 }),
                Some("made-up"),
            ),
            "kid",
        ),
    ];
    for (case, token, why) in &cases {
        let e = me(&app, token).await.expect_err(case);
        assert_eq!(e.code(), Code::Unauthenticated, "{case}: {e:?}");
        assert!(e.message().contains(why), "{case}: {}", e.message());
        assert!(!e.message().contains(token.as_str()), "{case}: the token is echoed");
    }
    // None of the tokens reached a log or the audit log.
    let logged = logs::captured();
    let audit = String::from_utf8_lossy(&app.database_dump().await).into_owned();
    assert!(audit.contains("alice@example.com"), "the dump holds the principal's subject");
    for token in std::iter::once(&good).chain(cases.iter().map(|(_, t, _)| t)) {
        let signature = token.rsplit('.').next().unwrap();
        if signature.len() > 20 {
            assert!(!logged.contains(signature) && !audit.contains(signature), "a token's signature was logged");
        }
    }
}

#[tokio::test]
async fn the_issuers_key_rotation_is_followed_and_made_up_key_ids_do_not_refetch() {
    let issuer = Issuer::start().await;
    let app = app_trusting(&issuer).await;
    let (p, _) = app.principal_with("svc", &[pb::AccountRole::Auditor], &[]).await;
    let mut mapped = p.clone();
    mapped.oidc_subjects = vec!["spiffe://example.org/svc".into()];
    let req = pb::UpdatePrincipalRequest { principal: Some(mapped), update_mask: mask(&["oidc_subjects"]) };
    app.principal_client().update_principal(req).await.expect("map");
    let sub = "spiffe://example.org/svc";
    me(&app, &issuer.token(sub, AUD, 300, json!({}))).await.expect("first key");
    assert_eq!(issuer.fetches(), 1, "fetched once, when first needed");
    me(&app, &issuer.token(sub, AUD, 300, json!({}))).await.expect("again");
    assert_eq!(issuer.fetches(), 1, "kept");

    // Tokens naming key ids the issuer does not have: refused, one fetch at most in 30 s.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for i in 0..20 {
        let claims = json!({ "iss": issuer.issuer, "sub": sub, "aud": AUD, "exp": now + 300 });
        let e = me(&app, &issuer.sign(&claims, Some(&format!("kid-{i}")))).await.expect_err("unknown kid");
        assert_eq!(e.code(), Code::Unauthenticated);
    }
    assert_eq!(issuer.fetches(), 1, "within 30 s of the last fetch, no more");

    // The issuer rotates: its new key is fetched once the 30 s have passed.
    issuer.rotate();
    let rotated = issuer.token(sub, AUD, 300, json!({}));
    app.clock.advance(std::time::Duration::from_secs(31));
    let cur = me(&app, &rotated).await.expect("the issuer's new key");
    assert_eq!(cur.principal.map(|x| x.name), Some(p.name));
    assert_eq!(issuer.fetches(), 2);
}

#[tokio::test]
async fn oidc_subjects_are_checked_and_belong_to_one_principal() {
    let issuer = Issuer::start().await;
    let app = app_trusting(&issuer).await;
    let (a, _) = app.principal_with("a", &[], &[]).await;
    let (b, _) = app.principal_with("b", &[], &[]).await;
    let mut admin = app.principal_client();
    let update = |p: &pb::Principal, subs: Vec<String>| {
        let mut p = p.clone();
        p.oidc_subjects = subs;
        pb::UpdatePrincipalRequest { principal: Some(p), update_mask: mask(&["oidc_subjects"]) }
    };
    admin.update_principal(update(&a, vec!["shared".into()])).await.expect("a takes it");
    let e = admin.update_principal(update(&b, vec!["shared".into()])).await.expect_err("b takes it too");
    assert_eq!(e.code(), Code::AlreadyExists, "{e:?}");
    for (subs, field) in [
        (vec![String::new()], "oidc_subjects[0]"),
        (vec!["x".repeat(256)], "oidc_subjects[0]"),
        (vec!["ok".into(), "bad\u{7}".into()], "oidc_subjects[1]"),
        (vec!["twice".into(), "twice".into()], "oidc_subjects[1]"),
        ((0..21).map(|i| format!("s{i}")).collect(), "oidc_subjects"),
    ] {
        let e = admin.update_principal(update(&b, subs.clone())).await.expect_err("bad subjects");
        keyward_tests::status::invalid_on(&e, field, "oidc_subjects");
    }
    let stored = admin.get_principal(pb::GetPrincipalRequest { name: b.name.clone() }).await.expect("b").into_inner();
    assert!(stored.oidc_subjects.is_empty(), "unchanged: {stored:?}");
}

async fn mapped(app: &TestApp, sub: &str) -> pb::Principal {
    let (p, _) = app.principal_with(sub, &[pb::AccountRole::Auditor], &[]).await;
    let mut m = p.clone();
    m.oidc_subjects = vec![sub.into()];
    let req = pb::UpdatePrincipalRequest { principal: Some(m), update_mask: mask(&["oidc_subjects"]) };
    app.principal_client().update_principal(req).await.expect("map").into_inner()
}

#[tokio::test]
async fn a_slow_issuer_delays_only_the_call_that_fetches() {
    let issuer = Issuer::start().await;
    let app = app_trusting(&issuer).await;
    mapped(&app, "svc").await;
    let good = issuer.token("svc", AUD, 600, json!({}));
    me(&app, &good).await.expect("first fetch");
    // 31 s on, a token with a made-up kid makes Keyward fetch again, from an issuer that now
    // takes 3 s to answer.
    app.clock.advance(std::time::Duration::from_secs(31));
    issuer.set_delay(3000);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let made_up = issuer.sign(&json!({ "iss": issuer.issuer, "sub": "svc", "aud": AUD, "exp": now + 300 }), Some("x"));
    let addr = app.addr;
    let slow = tokio::spawn(async move {
        let mut c = pb::principal_service_client::PrincipalServiceClient::new(conn(addr, &made_up));
        c.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.map(|_| ())
    });
    while issuer.fetches() < 2 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The fetch is in flight: a valid token is answered meanwhile.
    me(&app, &good).await.expect("answered while the issuer is slow");
    assert!(!slow.is_finished(), "the valid call came back before the fetch ended");
    let e = slow.await.expect("task").expect_err("made-up kid");
    assert_eq!(e.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn what_a_caller_hears_quotes_neither_the_jwks_url_nor_the_token() {
    let issuer = Issuer::start_at("/jwks.json?X-Amz-Signature=SECRETSIG123&token=hunter2").await;
    let app = app_trusting(&issuer).await;
    mapped(&app, "svc").await;
    issuer.set_status(500);
    let token = issuer.token("svc", AUD, 300, json!({}));
    let e = me(&app, &token).await.expect_err("no keys");
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("could not be read"), "{}", e.message());
    let logs = keyward_tests::logs::captured();
    let dump = String::from_utf8_lossy(&app.database_dump().await).into_owned();
    for secret in ["SECRETSIG123", "hunter2"] {
        assert!(!e.message().contains(secret), "{}", e.message());
        assert!(!logs.contains(secret), "the JWKS URL's query is in the log");
        assert!(!dump.contains(secret), "the JWKS URL's query is in the database");
    }

    // A signed token with a claim of the wrong type: refused without quoting it.
    issuer.set_status(200);
    app.clock.advance(std::time::Duration::from_secs(31));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let odd = issuer.token("svc", AUD, 300, json!({ "exp": "secret-claim-value" }));
    let e = me(&app, &odd).await.expect_err("exp is a string");
    assert!(!e.message().contains("secret-claim-value"), "{}", e.message());
    // A very long kid comes back clipped.
    let long = issuer
        .sign(&json!({ "iss": issuer.issuer, "sub": "svc", "aud": AUD, "exp": now + 300 }), Some(&"k".repeat(3000)));
    let e = me(&app, &long).await.expect_err("unknown kid");
    assert!(e.message().len() < 200, "{} characters", e.message().len());
}

#[tokio::test]
async fn a_key_the_issuer_marks_for_encryption_does_not_verify_tokens() {
    let issuer = Issuer::start().await;
    issuer.set_jwk_field("use", json!("enc"));
    let app = app_trusting(&issuer).await;
    mapped(&app, "svc").await;
    let e = me(&app, &issuer.token("svc", AUD, 300, json!({}))).await.expect_err("an encryption key");
    assert_eq!(e.code(), Code::Unauthenticated);
    // The issuer fixes its JWKS: the same kind of token works once it is fetched again.
    issuer.set_jwk_field("use", json!("sig"));
    app.clock.advance(std::time::Duration::from_secs(31));
    me(&app, &issuer.token("svc", AUD, 300, json!({}))).await.expect("a signing key");
}
