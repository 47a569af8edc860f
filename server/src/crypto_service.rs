//! keyward.v1.CryptoService: thin handlers (parse → one use case → convert back). These are
//! data-plane calls: they change nothing, so they are not audited, and nothing they carry is
//! logged. Request plaintexts are zeroized once used.

use keyward_proto::v1 as pb;
use keyward_shared::Keyward;
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

#[tonic::async_trait]
impl pb::crypto_service_server::CryptoService for CryptoService {
    async fn encrypt(&self, req: Request<pb::EncryptRequest>) -> R<pb::EncryptResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let plaintext = Zeroizing::new(r.plaintext);
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let ciphertext = self.keyward.encrypt(&ctx, g, k, &plaintext, &r.aad).await.map_err(to_status)?;
        Ok(Response::new(pb::EncryptResponse { ciphertext }))
    }

    async fn decrypt(&self, req: Request<pb::DecryptRequest>) -> R<pb::DecryptResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let plaintext = self.keyward.decrypt(&ctx, g, k, &r.ciphertext, &r.aad).await.map_err(to_status)?;
        Ok(Response::new(pb::DecryptResponse { plaintext: take(plaintext) }))
    }

    async fn wrap_key(&self, req: Request<pb::WrapKeyRequest>) -> R<pb::WrapKeyResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let plaintext = Zeroizing::new(r.plaintext);
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let wrapped = self.keyward.wrap_key(&ctx, g, k, &plaintext).await.map_err(to_status)?;
        Ok(Response::new(pb::WrapKeyResponse { wrapped }))
    }

    async fn unwrap_key(&self, req: Request<pb::UnwrapKeyRequest>) -> R<pb::UnwrapKeyResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, k) = convert::parse_key_name("name", &r.name)?;
        let plaintext = self.keyward.unwrap_key(&ctx, g, k, &r.wrapped).await.map_err(to_status)?;
        Ok(Response::new(pb::UnwrapKeyResponse { plaintext: take(plaintext) }))
    }
}
