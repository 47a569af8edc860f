//! keyward.v1.KeyService: thin handlers (parse → one use case → convert back). Mutating RPCs
//! run inside `audited`, which records refusals.

use std::future::Future;

use keyward_proto::v1 as pb;
use keyward_shared::domain::{Action, GroupId, Key, KeyId};
use keyward_shared::{Ctx, KeyFilter, KeyOrder, Keyward};
use tonic::{Request, Response, Status};

use crate::access::admit;
use crate::status::{invalid, to_status};
use crate::{audited, convert};

pub struct KeyService {
    pub keyward: Keyward,
}

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::key_service_server::KeyService for KeyService {
    async fn create_key(&self, req: Request<pb::CreateKeyRequest>) -> R<pb::Key> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        audited(&self.keyward, ctx, Action::CreateKey, &r.parent.clone(), |ctx| async move {
            let group = convert::parse_group_name("parent", &r.parent)?;
            let new = convert::new_key(r.key.ok_or_else(|| invalid("key", "required"))?)?;
            let k = self.keyward.create_key(&ctx, group, new).await.map_err(to_status)?;
            Ok(Response::new(convert::key_pb(&k)))
        })
        .await
    }

    async fn get_key(&self, req: Request<pb::GetKeyRequest>) -> R<pb::Key> {
        let ctx = admit(&self.keyward, &req).await?;
        let (g, k) = convert::parse_key_name("name", &req.into_inner().name)?;
        let k = self.keyward.get_key(&ctx, g, k).await.map_err(to_status)?;
        Ok(Response::new(convert::key_pb(&k)))
    }

    async fn list_keys(&self, req: Request<pb::ListKeysRequest>) -> R<pb::ListKeysResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let group = convert::parse_key_parent("parent", &r.parent)?;
        let limit = convert::page_size(r.page_size)?;
        let filter = KeyFilter::parse(&r.filter).map_err(|e| invalid("filter", e))?;
        let order = KeyOrder::parse(&r.order_by).map_err(|e| invalid("order_by", e))?;
        let query = convert::query_digest(&[&r.parent, &r.filter, &r.order_by]);
        let after = convert::decode_key_token(&r.page_token, &query)?;
        let keys =
            self.keyward.list_keys(&ctx, group, &filter, order, after.as_ref(), limit).await.map_err(to_status)?;
        let next_page_token = match keys.last() {
            Some(k) if keys.len() as u64 == limit => convert::encode_key_token(&query, &order.cursor_of(k)),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListKeysResponse { keys: keys.iter().map(convert::key_pb).collect(), next_page_token }))
    }

    async fn lookup_key(&self, req: Request<pb::LookupKeyRequest>) -> R<pb::Key> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let group = convert::parse_key_parent("parent", &r.parent)?;
        let given: Vec<(&str, &str)> = [("alias", &r.alias), ("key_arn", &r.key_arn), ("aws_key_id", &r.aws_key_id)]
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(f, v)| (f, v.as_str()))
            .collect();
        let [(field, value)] = given.as_slice() else {
            return Err(invalid("alias", "give exactly one of alias, key_arn, aws_key_id"));
        };
        if value.len() > 2048 {
            return Err(invalid(field, format!("is {} bytes; at most 2048", value.len())));
        }
        // The same checks as the filter's term for the field.
        let quoted = value.replace('\\', "\\\\").replace('"', "\\\"");
        let filter = KeyFilter::parse(&format!("{field} = \"{quoted}\"")).map_err(|e| invalid(field, e))?;
        let k = self.keyward.lookup_key(&ctx, group, &filter, value).await.map_err(to_status)?;
        Ok(Response::new(convert::key_pb(&k)))
    }

    async fn update_key(&self, req: Request<pb::UpdateKeyRequest>) -> R<pb::Key> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let resource = r.key.as_ref().map(|k| k.name.clone()).unwrap_or_default();
        audited(&self.keyward, ctx, Action::UpdateKey, &resource, |ctx| async move {
            let key = r.key.ok_or_else(|| invalid("key", "required"))?;
            let (g, id) = convert::parse_key_name("key.name", &key.name)?;
            let patch = convert::key_patch(key, r.update_mask, r.remove_aliases)?;
            let k = self.keyward.update_key(&ctx, g, id, patch).await.map_err(to_status)?;
            Ok(Response::new(convert::key_pb(&k)))
        })
        .await
    }

    async fn schedule_key_deletion(&self, req: Request<pb::ScheduleKeyDeletionRequest>) -> R<pb::Key> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let days = if r.pending_window_days == 0 { 30 } else { r.pending_window_days };
        let validate_only = r.validate_only;
        self.change_key(ctx, Action::ScheduleKeyDeletion, r.name, |ctx, g, id| async move {
            self.keyward.schedule_key_deletion(&ctx, g, id, days, validate_only).await
        })
        .await
    }

    async fn cancel_key_deletion(&self, req: Request<pb::CancelKeyDeletionRequest>) -> R<pb::Key> {
        let ctx = admit(&self.keyward, &req).await?;
        let name = req.into_inner().name;
        self.change_key(ctx, Action::CancelKeyDeletion, name, |ctx, g, id| async move {
            self.keyward.cancel_key_deletion(&ctx, g, id).await
        })
        .await
    }

    async fn delete_key(&self, req: Request<pb::DeleteKeyRequest>) -> R<()> {
        let ctx = admit(&self.keyward, &req).await?;
        let name = req.into_inner().name;
        audited(&self.keyward, ctx, Action::DeleteKey, &name.clone(), |ctx| async move {
            let (g, id) = convert::parse_key_name("name", &name)?;
            self.keyward.delete_key(&ctx, g, id).await.map_err(to_status)?;
            Ok(Response::new(()))
        })
        .await
    }
    async fn import_key(&self, req: Request<pb::ImportKeyRequest>) -> R<pb::Key> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        audited(&self.keyward, ctx, Action::ImportKey, &r.parent.clone(), |ctx| async move {
            let (group, import) = convert::import_request(r)?;
            let k = self.keyward.import_key(&ctx, group, import).await.map_err(to_status)?;
            Ok(Response::new(convert::key_pb(&k)))
        })
        .await
    }

    async fn copy_key(&self, req: Request<pb::CopyKeyRequest>) -> R<pb::Key> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        audited(&self.keyward, ctx, Action::CopyKey, &r.source.clone(), |ctx| async move {
            let copy = convert::copy_request(r)?;
            let k = self.keyward.copy_key(&ctx, copy).await.map_err(to_status)?;
            Ok(Response::new(convert::key_pb(&k)))
        })
        .await
    }

    async fn delete_key_material(&self, req: Request<pb::DeleteKeyMaterialRequest>) -> R<pb::Key> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (acknowledge, validate_only) = (r.acknowledge_unrecoverable, r.validate_only);
        self.change_key(ctx, Action::DeleteKeyMaterial, r.name, |ctx, g, id| async move {
            self.keyward.delete_key_material(&ctx, g, id, acknowledge, validate_only).await
        })
        .await
    }

    async fn reimport_key_material(&self, req: Request<pb::ReimportKeyMaterialRequest>) -> R<pb::Key> {
        let ctx = admit(&self.keyward, &req).await?;
        let name = req.into_inner().name;
        self.change_key(ctx, Action::ReimportKeyMaterial, name, |ctx, g, id| async move {
            self.keyward.reimport_key_material(&ctx, g, id).await
        })
        .await
    }

    async fn rotate_key(&self, req: Request<pb::RotateKeyRequest>) -> R<pb::RotateKeyResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        audited(&self.keyward, ctx, Action::RotateKey, &r.name.clone(), |ctx| async move {
            let (g, id, rotate) = convert::rotate_request(&r)?;
            let out = self.keyward.rotate_key(&ctx, g, id, rotate).await.map_err(to_status)?;
            Ok(Response::new(convert::rotation_pb(&out)))
        })
        .await
    }

    async fn list_key_rotations(&self, req: Request<pb::ListKeyRotationsRequest>) -> R<pb::ListKeyRotationsResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, id) = convert::parse_key_name("name", &r.name)?;
        let limit = match r.page_size {
            0 => None,
            n @ 1..=1000 => Some(n),
            n => return Err(invalid("page_size", format!("{n}; AWS lists 1 to 1000 rotations a page"))),
        };
        let marker = Some(r.page_token).filter(|t| !t.is_empty());
        let page = self.keyward.list_key_rotations(&ctx, g, id, limit, marker).await.map_err(to_status)?;
        Ok(Response::new(pb::ListKeyRotationsResponse {
            rotations: page
                .items
                .iter()
                .map(|r| pb::KeyRotation {
                    rotation_time: r.rotation_date.map(convert::ts),
                    rotation_type: r.rotation_type.clone().unwrap_or_default(),
                    key_material_id: r.key_material_id.clone().unwrap_or_default(),
                })
                .collect(),
            next_page_token: page.next_marker.unwrap_or_default(),
        }))
    }
}

impl KeyService {
    /// A change of the key named `name` (the request's `name` field), audited, answered with
    /// the changed key.
    async fn change_key<F>(
        &self,
        ctx: Ctx,
        action: Action,
        name: String,
        change: impl FnOnce(Ctx, GroupId, KeyId) -> F,
    ) -> R<pb::Key>
    where
        F: Future<Output = keyward_shared::Result<Key>>,
    {
        audited(&self.keyward, ctx, action, &name.clone(), |ctx| async move {
            let (g, id) = convert::parse_key_name("name", &name)?;
            let k = change(ctx, g, id).await.map_err(to_status)?;
            Ok(Response::new(convert::key_pb(&k)))
        })
        .await
    }
}
