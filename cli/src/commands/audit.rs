//! `keyward audit list`: the audit log in chain order, filtered by resource and time.

use keyward_proto::v1 as pb;
use serde_json::json;

use super::{emit, note};
use crate::Failure;
use crate::args::{AuditCommand, Output};
use crate::client::Client;
use crate::output::{Table, audit_event_json, json_text, time};

pub async fn run(client: &Client, cmd: &AuditCommand, output: Output) -> Result<(), Failure> {
    let AuditCommand::List { filter, limit } = cmd;
    let mut audit = client.audit();
    let (mut events, mut token, mut more) = (Vec::new(), String::new(), false);
    loop {
        let page = if *limit == 0 { 1000 } else { (*limit - events.len()).min(1000) };
        let r = audit
            .list_audit_events(pb::ListAuditEventsRequest {
                page_size: i32::try_from(page).unwrap_or(1000),
                page_token: token,
                filter: filter.clone().unwrap_or_default(),
            })
            .await
            .map_err(|s| client.fail(s))?
            .into_inner();
        events.extend(r.audit_events);
        if r.next_page_token.is_empty() {
            break;
        }
        if *limit != 0 && events.len() >= *limit {
            more = true;
            break;
        }
        token = r.next_page_token;
    }
    if more {
        note(&format!(
            "(the first {} events; raise --limit, 0 for all, or narrow --filter, e.g. 'create_time >= \"2026-12-01T00:00:00Z\"')",
            events.len()
        ));
    }
    match output {
        Output::Json => {
            emit(&json_text(&json!({"auditEvents": events.iter().map(audit_event_json).collect::<Vec<_>>()})))
        }
        Output::Table if events.is_empty() => emit("(no audit events)\n"),
        Output::Table => {
            let mut t = Table::new(&["SEQ", "TIME", "ACTOR", "ACTION", "RESOURCE", "OUTCOME"]);
            for e in &events {
                t.row(vec![
                    e.seq.to_string(),
                    time(&e.create_time),
                    e.actor.clone(),
                    e.action.trim_start_matches("keyward.v1.").to_owned(),
                    e.resource.clone(),
                    e.outcome.clone(),
                ]);
            }
            emit(&t.render())
        }
    }
}
