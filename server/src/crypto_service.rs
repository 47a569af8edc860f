//! keyward.v1.CryptoService: thin handlers (parse → one use case → convert back). These are
//! data-plane calls: they change nothing, so they are not audited, and nothing they carry is
//! logged. Request plaintexts are zeroized once used.

use std::collections::HashMap;

use keyward_proto::v1 as pb;
use keyward_shared::domain::{Action, GroupId};
use keyward_shared::{Binding, Ctx, DataKeyRequest, Keyward, Signing};
use tonic::{Request, Response, Status};
use zeroize::Zeroizing;

use crate::access::admit;
use crate::convert;
use crate::status::to_status;

pub struct CryptoService {
    pub keyward: Keyward,
}

type R<T> = Result<Response<T>, Status>;

/// The plaintext out of its zeroizing holder, for the response (prost needs a plain `Vec`).
fn take(mut p: Zeroizing<Vec<u8>>) -> Vec<u8> {
    std::mem::take(&mut *p)
}

impl CryptoService {
    /// The use case's result, audited on the key when its group asks for it.
    async fn account<T>(
        &self,
        ctx: &Ctx,
        group: GroupId,
        name: &str,
        action: Action,
        result: keyward_shared::Result<T>,
    ) -> Result<T, Status> {
        let key = convert::canonical_name(name);
        self.keyward.accounted(ctx, group, &key, action, result).await.map_err(to_status)
    }
}

/// GenerateDataKey's (and …WithoutPlaintext's) fields.
fn data_key(key_spec: String, n: i32, context: HashMap<String, String>, with_plaintext: bool) -> DataKeyRequest {
    DataKeyRequest { key_spec, number_of_bytes: n, encryption_context: context.into_iter().collect(), with_plaintext }
}

/// Encrypt's and Decrypt's binding fields.
fn binding(aad: Vec<u8>, encryption_algorithm: String, context: HashMap<String, String>) -> Binding {
    Binding { aad, encryption_algorithm, encryption_context: context.into_iter().collect() }
}

#[tonic::async_trait]
impl pb::crypto_service_server::CryptoService for CryptoService {
    async fn encrypt(&self, req: Request<pb::EncryptRequest>) -> R<pb::EncryptResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let plaintext = Zeroizing::new(r.plaintext);
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let b = binding(r.aad, r.encryption_algorithm, r.encryption_context);
        let ciphertext = self
            .account(&ctx, g, &r.name, Action::Encrypt, self.keyward.encrypt(&ctx, g, k, &plaintext, &b).await)
            .await?;
        Ok(Response::new(pb::EncryptResponse { ciphertext }))
    }

    async fn decrypt(&self, req: Request<pb::DecryptRequest>) -> R<pb::DecryptResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let b = binding(r.aad, r.encryption_algorithm, r.encryption_context);
        let plaintext = self
            .account(&ctx, g, &r.name, Action::Decrypt, self.keyward.decrypt(&ctx, g, k, &r.ciphertext, &b).await)
            .await?;
        Ok(Response::new(pb::DecryptResponse { plaintext: take(plaintext) }))
    }

    async fn wrap_key(&self, req: Request<pb::WrapKeyRequest>) -> R<pb::WrapKeyResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let plaintext = Zeroizing::new(r.plaintext);
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let wrapped = self
            .account(&ctx, g, &r.name, Action::WrapKey, self.keyward.wrap_key(&ctx, g, k, &plaintext).await)
            .await?;
        Ok(Response::new(pb::WrapKeyResponse { wrapped }))
    }

    async fn unwrap_key(&self, req: Request<pb::UnwrapKeyRequest>) -> R<pb::UnwrapKeyResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let plaintext = self
            .account(&ctx, g, &r.name, Action::UnwrapKey, self.keyward.unwrap_key(&ctx, g, k, &r.wrapped).await)
            .await?;
        Ok(Response::new(pb::UnwrapKeyResponse { plaintext: take(plaintext) }))
    }

    async fn get_public_key(&self, req: Request<pb::GetPublicKeyRequest>) -> R<pb::GetPublicKeyResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let name = req.get_ref().name.clone();
        let (g, k) = convert::parse_key_name("name", &name)?;
        let p =
            self.account(&ctx, g, &name, Action::GetPublicKey, self.keyward.get_public_key(&ctx, g, k).await).await?;
        Ok(Response::new(pb::GetPublicKeyResponse {
            public_key: p.info.der,
            public_key_pem: p.pem,
            key_spec: p.info.key_spec.unwrap_or_default(),
            key_usage: p.info.key_usage.unwrap_or_default(),
            signing_algorithms: p.info.signing_algorithms,
            encryption_algorithms: p.info.encryption_algorithms,
            key_agreement_algorithms: p.info.key_agreement_algorithms,
        }))
    }

    async fn sign(&self, req: Request<pb::SignRequest>) -> R<pb::SignResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let message = Zeroizing::new(r.message);
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let s = Signing { message: &message, message_type: &r.message_type, algorithm: &r.signing_algorithm };
        let signature = self.account(&ctx, g, &r.name, Action::Sign, self.keyward.sign(&ctx, g, k, s).await).await?;
        Ok(Response::new(pb::SignResponse { signature, signing_algorithm: r.signing_algorithm.clone() }))
    }

    async fn verify(&self, req: Request<pb::VerifyRequest>) -> R<pb::VerifyResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let s = Signing { message: &r.message, message_type: &r.message_type, algorithm: &r.signing_algorithm };
        let signature_valid = self
            .account(&ctx, g, &r.name, Action::Verify, self.keyward.verify(&ctx, g, k, s, &r.signature).await)
            .await?;
        Ok(Response::new(pb::VerifyResponse { signature_valid }))
    }

    async fn generate_mac(&self, req: Request<pb::GenerateMacRequest>) -> R<pb::GenerateMacResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let message = Zeroizing::new(r.message);
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let (mac, mac_algorithm) = self
            .account(
                &ctx,
                g,
                &r.name,
                Action::GenerateMac,
                self.keyward.generate_mac(&ctx, g, k, &message, &r.mac_algorithm).await,
            )
            .await?;
        Ok(Response::new(pb::GenerateMacResponse { mac, mac_algorithm }))
    }

    async fn verify_mac(&self, req: Request<pb::VerifyMacRequest>) -> R<pb::VerifyMacResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let mac_valid = self
            .account(
                &ctx,
                g,
                &r.name,
                Action::VerifyMac,
                self.keyward.verify_mac(&ctx, g, k, &r.message, &r.mac, &r.mac_algorithm).await,
            )
            .await?;
        Ok(Response::new(pb::VerifyMacResponse { mac_valid }))
    }

    async fn generate_data_key(&self, req: Request<pb::GenerateDataKeyRequest>) -> R<pb::GenerateDataKeyResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let dk = data_key(r.key_spec, r.number_of_bytes, r.encryption_context, true);
        let out = self
            .account(&ctx, g, &r.name, Action::GenerateDataKey, self.keyward.generate_data_key(&ctx, g, k, &dk).await)
            .await?;
        let plaintext = out.plaintext.map(take).unwrap_or_default();
        Ok(Response::new(pb::GenerateDataKeyResponse { plaintext, ciphertext: out.ciphertext }))
    }

    async fn generate_data_key_without_plaintext(
        &self,
        req: Request<pb::GenerateDataKeyWithoutPlaintextRequest>,
    ) -> R<pb::GenerateDataKeyWithoutPlaintextResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let dk = data_key(r.key_spec, r.number_of_bytes, r.encryption_context, false);
        let out = self
            .account(
                &ctx,
                g,
                &r.name,
                Action::GenerateDataKeyWithoutPlaintext,
                self.keyward.generate_data_key(&ctx, g, k, &dk).await,
            )
            .await?;
        Ok(Response::new(pb::GenerateDataKeyWithoutPlaintextResponse { ciphertext: out.ciphertext }))
    }

    async fn generate_data_key_pair(
        &self,
        req: Request<pb::GenerateDataKeyPairRequest>,
    ) -> R<pb::GenerateDataKeyPairResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let context = r.encryption_context.into_iter().collect();
        let out = self
            .account(
                &ctx,
                g,
                &r.name,
                Action::GenerateDataKeyPair,
                self.keyward.generate_data_key_pair(&ctx, g, k, &r.key_pair_spec, &context, !r.without_plaintext).await,
            )
            .await?;
        Ok(Response::new(pb::GenerateDataKeyPairResponse {
            private_key_plaintext: out.private_key_plaintext.map(take).unwrap_or_default(),
            private_key_ciphertext: out.private_key_ciphertext,
            public_key: out.public_key,
        }))
    }

    async fn re_encrypt(&self, req: Request<pb::ReEncryptRequest>) -> R<pb::ReEncryptResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let dest = convert::parse_key_name("name", &r.name)?;
        let source = convert::parse_key_name("source_key", &r.source_key)?;
        let from = binding(r.source_aad, r.source_encryption_algorithm, r.source_encryption_context);
        let to = binding(r.destination_aad, r.destination_encryption_algorithm, r.destination_encryption_context);
        let ciphertext = self
            .account(
                &ctx,
                dest.0,
                &r.name,
                Action::ReEncrypt,
                self.keyward.re_encrypt(&ctx, dest, source, &r.ciphertext, &from, &to).await,
            )
            .await?;
        Ok(Response::new(pb::ReEncryptResponse { ciphertext }))
    }

    async fn derive_shared_secret(
        &self,
        req: Request<pb::DeriveSharedSecretRequest>,
    ) -> R<pb::DeriveSharedSecretResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let secret = self
            .account(
                &ctx,
                g,
                &r.name,
                Action::DeriveSharedSecret,
                self.keyward.derive_shared_secret(&ctx, g, k, &r.key_agreement_algorithm, &r.public_key).await,
            )
            .await?;
        Ok(Response::new(pb::DeriveSharedSecretResponse { shared_secret: take(secret) }))
    }
}
