//! keyward.v1.KeyService: thin handlers (parse → one use case → convert back).

use keyward_proto::v1 as pb;
use keyward_shared::{KeyFilter, Keyward};
use time::OffsetDateTime;
use tonic::{Request, Response, Status};

use crate::convert;
use crate::status::{invalid, to_status};

pub struct KeyService {
    pub keyward: Keyward,
}

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::key_service_server::KeyService for KeyService {
    async fn create_key(&self, req: Request<pb::CreateKeyRequest>) -> R<pb::Key> {
        let actor = crate::actor(&req)?;
        let r = req.into_inner();
        let group = convert::parse_group_name("parent", &r.parent)?;
        let new = convert::new_key(r.key.ok_or_else(|| invalid("key", "required"))?)?;
        let k = self.keyward.create_key(group, new, &actor, OffsetDateTime::now_utc()).await.map_err(to_status)?;
        Ok(Response::new(convert::key_pb(&k)))
    }

    async fn get_key(&self, req: Request<pb::GetKeyRequest>) -> R<pb::Key> {
        let (g, k) = convert::parse_key_name("name", &req.into_inner().name)?;
        let k = self.keyward.get_key(g, k).await.map_err(to_status)?;
        Ok(Response::new(convert::key_pb(&k)))
    }

    async fn list_keys(&self, req: Request<pb::ListKeysRequest>) -> R<pb::ListKeysResponse> {
        let r = req.into_inner();
        let group = convert::parse_key_parent("parent", &r.parent)?;
        let limit = convert::page_size(r.page_size)?;
        let after = convert::decode_token(&r.page_token)?;
        let filter = KeyFilter::parse(&r.filter).map_err(|e| invalid("filter", e))?;
        let keys = self.keyward.list_keys(group, &filter, after, limit).await.map_err(to_status)?;
        let next_page_token = convert::next_token(keys.len(), limit, keys.last().map(|k| k.id.to_string()));
        Ok(Response::new(pb::ListKeysResponse { keys: keys.iter().map(convert::key_pb).collect(), next_page_token }))
    }
}
