//! The audit log: append-only, hash-chained. Appends run inside the transaction of the change
//! they record, serialised by the one-row `audit_head` table.

use aws_lc_rs::digest::{Context, SHA256};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, TransactionTrait,
};
use time::OffsetDateTime;

use super::Store;
use super::entities::{audit_events, audit_head};
use crate::domain::{AuditEvent, NewAuditEvent};
use crate::{Error, Result};

/// Takes the appenders' lock (a no-op write of the head row).
pub(super) async fn lock_head(c: &impl ConnectionTrait) -> Result<()> {
    audit_head::Entity::update_many()
        .col_expr(audit_head::Column::Seq, Expr::col(audit_head::Column::Seq))
        .filter(audit_head::Column::Id.eq(1))
        .exec(c)
        .await?;
    Ok(())
}

/// SHA-256 over the previous hash and every field, each length-prefixed.
pub(crate) fn event_hash(e: &AuditEvent) -> String {
    let mut ctx = Context::new(&SHA256);
    let nanos = e.create_time.unix_timestamp_nanos().to_string();
    let seq = e.seq.to_string();
    let id = e.id.to_string();
    for part in [
        e.prev_hash.as_str(),
        &seq,
        &id,
        &nanos,
        &e.actor,
        &e.action,
        &e.resource,
        &e.outcome,
        &e.request_id,
        &e.detail,
    ] {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    ctx.finish().as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

fn model(e: &AuditEvent) -> audit_events::ActiveModel {
    audit_events::ActiveModel {
        seq: Set(e.seq),
        id: Set(e.id.to_string()),
        actor: Set(e.actor.clone()),
        action: Set(e.action.clone()),
        resource: Set(e.resource.clone()),
        outcome: Set(e.outcome.clone()),
        request_id: Set(e.request_id.clone()),
        detail: Set(e.detail.clone()),
        created_at: Set(e.create_time),
        created_at_ms: Set(Some(micros(e.create_time))),
        prev_hash: Set(e.prev_hash.clone()),
        hash: Set(e.hash.clone()),
    }
}

fn event(m: audit_events::Model) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: uuid::Uuid::parse_str(&m.id).map_err(|_| super::convert::corrupt("audit_events.id"))?,
        seq: m.seq,
        actor: m.actor,
        action: m.action,
        resource: m.resource,
        outcome: m.outcome,
        request_id: m.request_id,
        detail: m.detail,
        create_time: m.created_at,
        prev_hash: m.prev_hash,
        hash: m.hash,
    })
}

/// Where verification found the chain broken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokenLink {
    pub seq: i64,
    pub event_id: String,
    pub reason: String,
}

/// Filter of an audit listing.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Exact resource name, or a prefix ending in `/` (e.g. `groups/{id}/`).
    pub resource: Option<String>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Only events of these groups (resource `groups/{g}` or below), when given.
    pub groups: Option<Vec<crate::domain::GroupId>>,
}

impl<C: ConnectionTrait + TransactionTrait> Store<C> {
    /// Appends an event at `now`. Call inside [`Store::begin_audited`]'s transaction.
    pub async fn append_event(&self, new: NewAuditEvent<'_>, now: OffsetDateTime) -> Result<AuditEvent> {
        let head = audit_head::Entity::find_by_id(1)
            .one(&self.db)
            .await?
            .ok_or_else(|| Error::internal("audit_head row missing"))?;
        let mut e = AuditEvent {
            id: uuid::Uuid::now_v7(),
            seq: head.seq + 1,
            actor: new.caller.actor.clone(),
            action: new.action.name().to_owned(),
            resource: new.resource,
            outcome: new.outcome.to_owned(),
            request_id: new.caller.request_id.clone(),
            detail: new.detail,
            create_time: crate::domain::to_micros(now),
            prev_hash: head.hash,
            hash: String::new(),
        };
        e.hash = event_hash(&e);
        audit_events::Entity::insert(model(&e)).exec(&self.db).await?;
        audit_head::Entity::update_many()
            .col_expr(audit_head::Column::Seq, Expr::val(e.seq))
            .col_expr(audit_head::Column::Hash, Expr::val(e.hash.clone()))
            .filter(audit_head::Column::Id.eq(1))
            .exec(&self.db)
            .await?;
        Ok(e)
    }

    /// Events in chain order after `after_seq`, at most `limit`.
    pub async fn list_events(&self, q: &AuditQuery, after_seq: i64, limit: u64) -> Result<Vec<AuditEvent>> {
        let mut s = audit_events::Entity::find()
            .filter(audit_events::Column::Seq.gt(after_seq))
            .order_by_asc(audit_events::Column::Seq)
            .limit(limit);
        if let Some(r) = &q.resource {
            s = if r.ends_with('/') {
                // A literal prefix (no LIKE wildcards, case-sensitive on both databases).
                let n = i32::try_from(r.chars().count()).unwrap_or(i32::MAX);
                let head = Func::cust("substr").arg(Expr::col(audit_events::Column::Resource)).arg(1i32).arg(n);
                s.filter(Expr::expr(head).eq(r.as_str()))
            } else {
                s.filter(audit_events::Column::Resource.eq(r.as_str()))
            };
        }
        if let Some(groups) = &q.groups {
            let mut any = sea_orm::Condition::any();
            for g in groups {
                let below = format!("groups/{g}/");
                let n = i32::try_from(below.len()).unwrap_or(i32::MAX);
                let head = Func::cust("substr").arg(Expr::col(audit_events::Column::Resource)).arg(1i32).arg(n);
                any = any.add(audit_events::Column::Resource.eq(format!("groups/{g}"))).add(Expr::expr(head).eq(below));
            }
            s = s.filter(any);
        }
        // Times compare as integers (SQLite keeps timestamps as text, which sorts wrongly).
        if let Some(t) = q.since {
            s = s.filter(audit_events::Column::CreatedAtMs.gte(micros(t)));
        }
        if let Some(t) = q.until {
            s = s.filter(audit_events::Column::CreatedAtMs.lt(micros(t)));
        }
        s.all(&self.db).await?.into_iter().map(event).collect()
    }

    /// Walks the whole chain: each event's hash must match its content and its `prev_hash`
    /// the previous event's hash; seqs must be 1, 2, 3 …; the head must name the last one.
    /// Returns how many events were checked and the first broken link.
    pub async fn verify_audit_chain(&self) -> Result<(i64, Option<BrokenLink>)> {
        let mut prev_hash = "0".repeat(64);
        let mut expected_seq = 1;
        let mut after = 0;
        loop {
            let rows = audit_events::Entity::find()
                .filter(audit_events::Column::Seq.gt(after))
                .order_by_asc(audit_events::Column::Seq)
                .limit(1000)
                .all(&self.db)
                .await?;
            if rows.is_empty() {
                break;
            }
            for m in rows {
                after = m.seq;
                let broken =
                    |reason: &str| BrokenLink { seq: m.seq, event_id: m.id.clone(), reason: reason.to_owned() };
                if m.seq != expected_seq {
                    let missing = BrokenLink {
                        seq: expected_seq,
                        event_id: String::new(),
                        reason: format!("event {expected_seq} is missing (the next one present is {})", m.seq),
                    };
                    return Ok((expected_seq - 1, Some(missing)));
                }
                if m.prev_hash != prev_hash {
                    return Ok((expected_seq - 1, Some(broken("prev_hash does not match the previous event"))));
                }
                // The integer time the filters use must be the hashed time.
                if m.created_at_ms.is_some_and(|t| t != micros(m.created_at)) {
                    return Ok((expected_seq - 1, Some(broken("created_at_ms does not match the hashed time"))));
                }
                let e = match event(m.clone()) {
                    Ok(e) => e,
                    Err(_) => return Ok((expected_seq - 1, Some(broken("unreadable event")))),
                };
                if event_hash(&e) != e.hash {
                    return Ok((expected_seq - 1, Some(broken("content does not match its hash"))));
                }
                prev_hash = e.hash;
                expected_seq += 1;
            }
        }
        let head = audit_head::Entity::find_by_id(1).one(&self.db).await?;
        let checked = expected_seq - 1;
        match head {
            Some(h) if h.seq == checked && h.hash == prev_hash => Ok((checked, None)),
            _ => Ok((
                checked,
                Some(BrokenLink {
                    seq: checked + 1,
                    event_id: String::new(),
                    reason: "the log ends before the head: events were removed from the end".into(),
                }),
            )),
        }
    }
}

/// Unix microseconds (what `created_at_ms` holds, despite the suffix: the column is an integer
/// instant for filters).
fn micros(t: OffsetDateTime) -> i64 {
    (t.unix_timestamp_nanos() / 1_000) as i64
}
