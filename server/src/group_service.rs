//! keyward.v1.GroupService: thin handlers (parse → one use case → convert back). Mutating RPCs
//! run inside `audited`, which records refusals.

use keyward_proto::v1 as pb;
use keyward_shared::Keyward;
use keyward_shared::domain::{Action, SyncTrigger};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::access::admit;
use crate::status::{invalid, to_status};
use crate::{audited, convert};

pub struct GroupService {
    pub keyward: Keyward,
}

type R<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl pb::group_service_server::GroupService for GroupService {
    async fn create_group(&self, req: Request<pb::CreateGroupRequest>) -> R<pb::Group> {
        let ctx = admit(&self.keyward, &req).await?;
        let group = req.into_inner().group;
        audited(&self.keyward, ctx, Action::CreateGroup, "groups", |ctx| async move {
            let new = convert::new_group(group.ok_or_else(|| invalid("group", "required"))?)?;
            let g = self.keyward.create_group(&ctx, new).await.map_err(to_status)?;
            let warnings = self.keyward.group_warnings(&ctx, &g).await.map_err(to_status)?;
            Ok(Response::new(pb::Group { warnings, ..convert::group_pb(&g) }))
        })
        .await
    }

    async fn get_group(&self, req: Request<pb::GetGroupRequest>) -> R<pb::Group> {
        let ctx = admit(&self.keyward, &req).await?;
        let id = convert::parse_group_name("name", &req.into_inner().name)?;
        let g = self.keyward.get_group(&ctx, id).await.map_err(to_status)?;
        Ok(Response::new(convert::group_pb(&g)))
    }

    async fn list_groups(&self, req: Request<pb::ListGroupsRequest>) -> R<pb::ListGroupsResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let limit = convert::page_size(r.page_size)?;
        let after = convert::decode_token(&r.page_token)?;
        let kind = convert::group_kind_filter(&r.filter)?;
        let groups = self.keyward.list_groups(&ctx, kind, after, limit).await.map_err(to_status)?;
        let next_page_token = convert::next_token(groups.len(), limit, groups.last().map(|g| g.id.to_string()));
        Ok(Response::new(pb::ListGroupsResponse {
            groups: groups.iter().map(convert::group_pb).collect(),
            next_page_token,
        }))
    }

    async fn update_group(&self, req: Request<pb::UpdateGroupRequest>) -> R<pb::Group> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let resource = r.group.as_ref().map(|g| g.name.clone()).unwrap_or_default();
        audited(&self.keyward, ctx, Action::UpdateGroup, &resource, |ctx| async move {
            let group = r.group.ok_or_else(|| invalid("group", "required"))?;
            let id = convert::parse_group_name("group.name", &group.name)?;
            let patch = convert::group_patch(group, r.update_mask)?;
            let g = self.keyward.update_group(&ctx, id, patch).await.map_err(to_status)?;
            let warnings = self.keyward.group_warnings(&ctx, &g).await.map_err(to_status)?;
            Ok(Response::new(pb::Group { warnings, ..convert::group_pb(&g) }))
        })
        .await
    }

    async fn delete_group(&self, req: Request<pb::DeleteGroupRequest>) -> R<()> {
        let ctx = admit(&self.keyward, &req).await?;
        let pb::DeleteGroupRequest { name, force } = req.into_inner();
        audited(&self.keyward, ctx, Action::DeleteGroup, &name.clone(), |ctx| async move {
            let id = convert::parse_group_name("name", &name)?;
            self.keyward.delete_group(&ctx, id, force).await.map_err(to_status)?;
            Ok(Response::new(()))
        })
        .await
    }

    async fn test_connection(&self, req: Request<pb::TestConnectionRequest>) -> R<pb::ConnectionStatus> {
        let ctx = admit(&self.keyward, &req).await?;
        match req.into_inner().target {
            // A saved group: the outcome is stored on it, so the call is audited.
            Some(pb::test_connection_request::Target::Name(name)) => {
                audited(&self.keyward, ctx, Action::TestConnection, &name.clone(), |ctx| async move {
                    let id = convert::parse_group_name("name", &name)?;
                    let status = self.keyward.test_group_connection(&ctx, id).await.map_err(to_status)?;
                    Ok(Response::new(convert::connection_pb(&status)))
                })
                .await
            }
            Some(pb::test_connection_request::Target::AwsKms(a)) => {
                let cfg = convert::aws_kms_config("aws_kms", &a)
                    .map_err(|v| to_status(keyward_shared::Error::InvalidArgument(v)))?;
                Ok(Response::new(convert::connection_pb(&self.keyward.test_connection(&ctx, &cfg).await)))
            }
            None => Err(invalid("target", "set name or aws_kms")),
        }
    }

    async fn sync_keys(&self, req: Request<pb::SyncKeysRequest>) -> R<pb::SyncRun> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        audited(&self.keyward, ctx, Action::SyncKeys, &r.name.clone(), |ctx| async move {
            let id = convert::parse_group_name("name", &r.name)?;
            let run = if r.return_immediately {
                self.keyward.start_sync(&ctx, id, SyncTrigger::Manual).await
            } else {
                self.keyward.sync_group(&ctx, id, SyncTrigger::Manual).await
            };
            Ok(Response::new(convert::sync_run_pb(&run.map_err(to_status)?, self.keyward.now())))
        })
        .await
    }

    type WatchSyncRunStream = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::SyncRun, Status>> + Send>>;

    async fn watch_sync_run(&self, req: Request<pb::WatchSyncRunRequest>) -> R<Self::WatchSyncRunStream> {
        let ctx = admit(&self.keyward, &req).await?;
        let (g, r) = convert::parse_sync_run_name("name", &req.into_inner().name)?;
        // An unknown run is the call's own NOT_FOUND, not an error inside the stream.
        self.keyward.get_sync_run(&ctx, g, r).await.map_err(to_status)?;
        let kw = self.keyward.clone();
        let runs = self
            .keyward
            .watch_sync_run(&ctx, g, r)
            .map(move |run| run.map(|run| convert::sync_run_pb(&run, kw.now())).map_err(to_status));
        Ok(Response::new(Box::pin(runs)))
    }

    async fn get_sync_run(&self, req: Request<pb::GetSyncRunRequest>) -> R<pb::SyncRun> {
        let ctx = admit(&self.keyward, &req).await?;
        let (g, r) = convert::parse_sync_run_name("name", &req.into_inner().name)?;
        let run = self.keyward.get_sync_run(&ctx, g, r).await.map_err(to_status)?;
        Ok(Response::new(convert::sync_run_pb(&run, self.keyward.now())))
    }

    async fn list_key_drifts(&self, req: Request<pb::ListKeyDriftsRequest>) -> R<pb::ListKeyDriftsResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let (g, run) = convert::parse_sync_run_name("parent", &r.parent)?;
        let limit = convert::page_size(r.page_size)?;
        let after = convert::decode_seq_token("d1", &r.page_token)?;
        let drifts = self.keyward.list_key_drifts(&ctx, g, run, after, limit).await.map_err(to_status)?;
        let next_page_token = match drifts.last() {
            Some((seq, _)) if drifts.len() as u64 == limit => convert::encode_seq_token("d1", *seq),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListKeyDriftsResponse {
            key_drifts: drifts.iter().map(|(_, d)| convert::key_drift_pb(d)).collect(),
            next_page_token,
        }))
    }

    async fn list_sync_runs(&self, req: Request<pb::ListSyncRunsRequest>) -> R<pb::ListSyncRunsResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let g = convert::parse_group_name("parent", &r.parent)?;
        let limit = convert::page_size(r.page_size)?;
        let before = convert::decode_token(&r.page_token)?;
        if !r.filter.is_empty() {
            return Err(invalid("filter", "not supported for sync runs"));
        }
        let runs = self.keyward.list_sync_runs(&ctx, g, before, limit).await.map_err(to_status)?;
        let next_page_token = convert::next_token(runs.len(), limit, runs.last().map(|r| r.id.to_string()));
        Ok(Response::new(pb::ListSyncRunsResponse {
            sync_runs: runs.iter().map(|r| convert::sync_run_pb(r, self.keyward.now())).collect(),
            next_page_token,
        }))
    }
}
