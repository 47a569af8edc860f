//! The server over TLS (rustls, aws-lc-rs): a client trusting the server's CA connects, a
//! plaintext or untrusting one does not; client certificates required against a CA bundle (an
//! unknown CA's and an expired one refused); a certificate reloaded from its files is served to
//! the next connection while open ones carry on; a client certificate mapped to a principal
//! (SPIFFE ID or subject) authenticates its calls, an unmapped one is refused.

use keyward_server::tls::{ClientAuth, Tls, TlsFiles};
use keyward_tests::TestApp;
use keyward_tests::tls_front::{CertAndKey, TestCa};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

struct Served {
    url: String,
    tls: Tls,
    dir: tempfile::TempDir,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// A second server on the test's Keyward, over TLS with `cert` (and client certificates
/// checked against `client_ca` when given).
async fn serve(app: &TestApp, cert: &CertAndKey, client_ca: Option<(&TestCa, ClientAuth)>) -> Served {
    let dir = tempfile::tempdir().expect("dir");
    let (cert_path, key_path) = (dir.path().join("server.pem"), dir.path().join("server.key"));
    std::fs::write(&cert_path, &cert.cert_pem).expect("cert");
    std::fs::write(&key_path, &cert.key_pem).expect("key");
    let (client_ca_path, client_auth) = match client_ca {
        Some((ca, auth)) => {
            let p = dir.path().join("clients.pem");
            std::fs::write(&p, ca.pem()).expect("ca");
            (Some(p), auth)
        }
        None => (None, ClientAuth::None),
    };
    let tls =
        Tls::new(TlsFiles { cert: cert_path, key: key_path, client_ca: client_ca_path, client_auth }).expect("tls");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("https://localhost:{}", listener.local_addr().expect("addr").port());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (kw, t) = (app.keyward.clone(), tls.clone());
    tokio::spawn(async move {
        let _ = keyward_server::serve_tls(kw, listener, &t, async move {
            let _ = stopped.await;
        })
        .await;
    });
    Served { url, tls, dir, _stop: stop }
}

/// A health check over a new connection trusting `ca`, presenting `identity` if given.
async fn check(url: &str, ca: &TestCa, identity: Option<&CertAndKey>) -> Result<HealthClient<Channel>, String> {
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca.pem())).domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
    }
    let channel = Channel::from_shared(url.to_owned())
        .map_err(|e| e.to_string())?
        .tls_config(tls)
        .map_err(|e| e.to_string())?
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))?;
    let mut client = HealthClient::new(channel);
    client.check(HealthCheckRequest { service: String::new() }).await.map_err(|e| format!("{e:?}"))?;
    Ok(client)
}

#[tokio::test]
async fn the_server_speaks_tls_and_reloads_its_certificate() {
    let app = TestApp::spawn().await;
    let (ca, other_ca) = (TestCa::new("keyward test server CA"), TestCa::new("another CA"));
    let served = serve(&app, &ca.server_cert(&["localhost", "127.0.0.1"]), None).await;
    let mut open = check(&served.url, &ca, None).await.expect("a client trusting the CA connects");
    assert!(check(&served.url, &other_ca, None).await.is_err(), "a client trusting another CA does not");
    let plain = served.url.replace("https://", "http://");
    let plaintext = async {
        let channel = Channel::from_shared(plain).ok()?.connect().await.ok()?;
        HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.ok()
    };
    assert!(plaintext.await.is_none(), "plaintext is not served");

    // New files, then reload (what SIGHUP does): the next connection gets the new certificate.
    let renewed = other_ca.server_cert(&["localhost"]);
    std::fs::write(served.dir.path().join("server.pem"), &renewed.cert_pem).expect("cert");
    std::fs::write(served.dir.path().join("server.key"), &renewed.key_pem).expect("key");
    served.tls.reload().expect("reload");
    check(&served.url, &other_ca, None).await.expect("the new certificate is served");
    assert!(check(&served.url, &ca, None).await.is_err(), "the old one is not");
    open.check(HealthCheckRequest { service: String::new() }).await.expect("an open connection carries on");

    // A broken file: the reload fails and the certificate in use stays.
    std::fs::write(served.dir.path().join("server.key"), "not a key").expect("key");
    let e = served.tls.reload().expect_err("a broken key");
    assert!(e.to_string().contains("not a PEM private key") && !e.to_string().contains("not a key\""), "{e}");
    check(&served.url, &other_ca, None).await.expect("still served");
}

#[tokio::test]
async fn required_client_certificates_are_checked_against_the_bundle() {
    let app = TestApp::spawn().await;
    let (server_ca, clients_ca, stranger_ca) =
        (TestCa::new("server CA"), TestCa::new("clients CA"), TestCa::new("stranger"));
    let served = serve(&app, &server_ca.server_cert(&["localhost"]), Some((&clients_ca, ClientAuth::Required))).await;
    check(&served.url, &server_ca, Some(&clients_ca.client_cert("payments-service")))
        .await
        .expect("a client of the CA");
    assert!(check(&served.url, &server_ca, None).await.is_err(), "no client certificate");
    assert!(check(&served.url, &server_ca, Some(&stranger_ca.client_cert("x"))).await.is_err(), "an unknown CA's");
    assert!(
        check(&served.url, &server_ca, Some(&clients_ca.expired_client_cert("old"))).await.is_err(),
        "an expired certificate"
    );

    // Optional: without a certificate is fine, a bad one is still refused.
    let optional = serve(&app, &server_ca.server_cert(&["localhost"]), Some((&clients_ca, ClientAuth::Optional))).await;
    check(&optional.url, &server_ca, None).await.expect("no certificate, optional");
    assert!(check(&optional.url, &server_ca, Some(&stranger_ca.client_cert("x"))).await.is_err());
}

/// A channel over TLS to `url` trusting `ca`, presenting `identity`.
async fn channel(url: &str, ca: &TestCa, identity: &CertAndKey) -> Channel {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost")
        .identity(Identity::from_pem(&identity.cert_pem, &identity.key_pem));
    Channel::from_shared(url.to_owned()).expect("url").tls_config(tls).expect("tls").connect().await.expect("connect")
}

#[tokio::test]
async fn a_mapped_client_certificate_authenticates_as_its_principal() {
    use keyward_proto::v1 as pb;
    use pb::certificate_identity::Identity as Id;
    let mut app = TestApp::spawn().await;
    let (server_ca, clients_ca) = (TestCa::new("server CA"), TestCa::new("clients CA"));
    let served = serve(&app, &server_ca.server_cert(&["localhost"]), Some((&clients_ca, ClientAuth::Required))).await;
    let g = app.regular_group("mesh").await;
    let spiffe = "spiffe://example.org/ns/prod/sa/payments";
    let (p, _) = app.principal_with("payments", &[], &[(g.name.as_str(), &[pb::GroupRole::KeyManager])]).await;
    let mut admin = app.principal_client();
    let mapped = admin
        .update_principal(pb::UpdatePrincipalRequest {
            principal: Some(pb::Principal {
                name: p.name.clone(),
                certificate_identities: vec![
                    pb::CertificateIdentity { identity: Some(Id::Uri(spiffe.into())) },
                    pb::CertificateIdentity { identity: Some(Id::Subject("CN=batch-job".into())) },
                ],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["certificate_identities".into()] }),
        })
        .await
        .expect("map the certificate identities")
        .into_inner();
    assert_eq!(mapped.certificate_identities.len(), 2);

    // The SPIFFE ID: GetCurrentPrincipal names the principal and what the certificate showed.
    let mesh = channel(&served.url, &server_ca, &clients_ca.spiffe_client_cert("payments-pod", spiffe)).await;
    let mut me = pb::principal_service_client::PrincipalServiceClient::new(mesh.clone());
    let cur = me.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.expect("me").into_inner();
    assert_eq!(cur.principal.map(|p| p.name), Some(p.name.clone()));
    assert_eq!(cur.authenticated_by, "certificate");
    assert!(cur.presented_identities.contains(&pb::CertificateIdentity { identity: Some(Id::Uri(spiffe.into())) }));
    let mut keys = pb::key_service_client::KeyServiceClient::new(mesh);
    keys.list_keys(pb::ListKeysRequest { parent: g.name.clone(), ..Default::default() }).await.expect("its group");

    // The subject: another certificate, the same principal.
    let batch = channel(&served.url, &server_ca, &clients_ca.client_cert("batch-job")).await;
    let mut me = pb::principal_service_client::PrincipalServiceClient::new(batch);
    let cur = me.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.expect("me").into_inner();
    assert_eq!(cur.principal.map(|p| p.name), Some(p.name.clone()));

    // A certificate of the CA that no principal names: UNAUTHENTICATED.
    let stranger = channel(&served.url, &server_ca, &clients_ca.client_cert("stranger")).await;
    let mut me = pb::principal_service_client::PrincipalServiceClient::new(stranger);
    let e = me.get_current_principal(pb::GetCurrentPrincipalRequest::default()).await.expect_err("unmapped");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("subject:CN=stranger"), "the refusal says what to map: {}", e.message());

    // An identity belongs to one principal only.
    let (other, _) = app.principal_with("other", &[], &[]).await;
    let e = admin
        .update_principal(pb::UpdatePrincipalRequest {
            principal: Some(pb::Principal {
                name: other.name,
                certificate_identities: vec![pb::CertificateIdentity { identity: Some(Id::Uri(spiffe.into())) }],
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask { paths: vec!["certificate_identities".into()] }),
        })
        .await
        .expect_err("taken");
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
}
