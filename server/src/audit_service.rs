//! keyward.v1.AuditService: list the hash-chained audit log and verify it.

use keyward_proto::v1 as pb;
use keyward_shared::domain::Action;
use keyward_shared::{AuditQuery, Keyward};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tonic::{Request, Response, Status};

use crate::access::admit;
use crate::convert::{self, page_size, ts};
use crate::status::{action_name, invalid, to_status};

pub struct AuditService {
    pub keyward: Keyward,
}

type R<T> = Result<Response<T>, Status>;

/// Parses `resource = "X"`, `resource = "X/*"`, `create_time >= "T"`, `create_time < "T"`,
/// joined by AND.
fn parse_filter(filter: &str) -> Result<AuditQuery, Status> {
    let mut q = AuditQuery::default();
    if filter.trim().is_empty() {
        return Ok(q);
    }
    for term in filter.split(" AND ") {
        let term = term.trim();
        let (field, op, value) = ["<=", ">=", "=", "<"]
            .iter()
            .find_map(|op| term.split_once(op).map(|(f, v)| (f.trim(), *op, v.trim().trim_matches('"'))))
            .ok_or_else(|| invalid("filter", "terms are `field OP \"value\"`"))?;
        let time = || {
            OffsetDateTime::parse(value, &Rfc3339).map_err(|_| invalid("filter", "create_time takes an RFC 3339 time"))
        };
        match (field, op) {
            ("resource", "=") => {
                q.resource = Some(match value.strip_suffix("/*") {
                    Some(prefix) => format!("{prefix}/"),
                    None => value.to_owned(),
                })
            }
            ("create_time", ">=") => q.since = Some(time()?),
            ("create_time", "<") => q.until = Some(time()?),
            _ => {
                return Err(invalid(
                    "filter",
                    "supported: resource = \"X\", resource = \"X/*\", create_time >= \"T\", create_time < \"T\"",
                ));
            }
        }
    }
    Ok(q)
}

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for AuditService {
    async fn list_audit_events(&self, req: Request<pb::ListAuditEventsRequest>) -> R<pb::ListAuditEventsResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let r = req.into_inner();
        let limit = page_size(r.page_size)?;
        let after = convert::decode_seq_token("a1", &r.page_token)?.unwrap_or(0);
        let q = parse_filter(&r.filter)?;
        let events = self.keyward.list_audit_events(&ctx, &q, after, limit).await.map_err(to_status)?;
        let next_page_token = match events.last() {
            Some(e) if events.len() as u64 == limit => convert::encode_seq_token("a1", e.seq),
            _ => String::new(),
        };
        Ok(Response::new(pb::ListAuditEventsResponse {
            audit_events: events
                .into_iter()
                .map(|e| pb::AuditEvent {
                    name: format!("auditEvents/{}", e.id),
                    seq: e.seq,
                    actor: e.actor,
                    // Stored as the use case's name; shown as the gRPC method (older events
                    // already stored the method's name).
                    action: Action::from_name(&e.action).map(|a| action_name(a).to_owned()).unwrap_or(e.action),
                    resource: e.resource,
                    outcome: e.outcome,
                    request_id: e.request_id,
                    detail: e.detail,
                    create_time: Some(ts(e.create_time)),
                    prev_hash: e.prev_hash,
                    hash: e.hash,
                })
                .collect(),
            next_page_token,
        }))
    }

    async fn verify_audit_chain(&self, req: Request<pb::VerifyAuditChainRequest>) -> R<pb::VerifyAuditChainResponse> {
        let ctx = admit(&self.keyward, &req).await?;
        let (checked, broken) = self.keyward.verify_audit_chain(&ctx).await.map_err(to_status)?;
        Ok(Response::new(match broken {
            None => pb::VerifyAuditChainResponse { ok: true, checked, ..Default::default() },
            Some(b) => pb::VerifyAuditChainResponse {
                ok: false,
                checked,
                first_broken_seq: b.seq,
                first_broken_event: if b.event_id.is_empty() {
                    String::new()
                } else {
                    format!("auditEvents/{}", b.event_id)
                },
                reason: b.reason,
            },
        }))
    }
}
