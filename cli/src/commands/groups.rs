//! `keyward groups list|get`.

use keyward_proto::v1 as pb;
use serde_json::json;

use super::emit;
use crate::args::{GroupsCommand, Output};
use crate::client::Client;
use crate::output::{Table, details, group_json, human_duration, json_text, short, time};
use crate::{Failure, resolve};

pub async fn run(client: &Client, cmd: &GroupsCommand, output: Output) -> Result<(), Failure> {
    match cmd {
        GroupsCommand::List { filter } => {
            let groups = resolve::all_groups(client, filter.as_deref().unwrap_or_default()).await?;
            match output {
                Output::Json => emit(&json_text(&json!({"groups": groups.iter().map(group_json).collect::<Vec<_>>()}))),
                Output::Table if groups.is_empty() => emit("(no groups)\n"),
                Output::Table => {
                    let mut t = Table::new(&["GROUP ID", "DISPLAY NAME", "KIND", "REGION", "CONNECTION", "LAST SYNC"]);
                    for g in &groups {
                        t.row(vec![
                            g.name.trim_start_matches("groups/").to_owned(),
                            g.display_name.clone(),
                            short!(GroupKind, g.kind, "GROUP_KIND_"),
                            g.aws_kms.as_ref().map(|a| a.region.clone()).unwrap_or_default(),
                            match (&g.aws_kms, &g.connection) {
                                (Some(_), Some(c)) => short!(ConnectionState, c.state, "CONNECTION_STATE_"),
                                _ => String::new(),
                            },
                            time(&g.last_sync_time),
                        ]);
                    }
                    emit(&t.render())
                }
            }
        }
        GroupsCommand::Get { group } => {
            let name = resolve::group_name(client, group).await?;
            let g =
                client.groups().get_group(pb::GetGroupRequest { name }).await.map_err(|s| client.fail(s))?.into_inner();
            match output {
                Output::Json => emit(&json_text(&group_json(&g))),
                Output::Table => emit(&group_details(&g)),
            }
        }
    }
}

fn group_details(g: &pb::Group) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let mut pairs = vec![
        ("name", g.name.clone()),
        ("display name", g.display_name.clone()),
        ("description", g.description.clone()),
        ("kind", short!(GroupKind, g.kind, "GROUP_KIND_")),
    ];
    if let Some(a) = &g.aws_kms {
        pairs.extend([
            ("region", a.region.clone()),
            (
                "endpoint",
                if a.endpoint_url.is_empty() {
                    format!("https://kms.{}.amazonaws.com (public)", a.region)
                } else {
                    a.endpoint_url.clone()
                },
            ),
            ("access key id", a.access_key_id.clone()),
            ("secret access key", if a.secret_access_key_set { "set" } else { "not set" }.to_owned()),
            ("trusted CAs", if a.ca_certificate_pem.is_empty() { "public roots" } else { "custom CA" }.to_owned()),
            (
                "client certificate",
                if a.client_certificate_pem.is_empty() { String::new() } else { "set (mutual TLS)".to_owned() },
            ),
            ("validate host", yes_no(a.validate_host.unwrap_or(true))),
        ]);
        if let Some(c) = &g.connection {
            let mut text = short!(ConnectionState, c.state, "CONNECTION_STATE_");
            if !c.message.is_empty() {
                text.push_str(&format!(" ({})", c.message));
            }
            if c.check_time.is_some() {
                text.push_str(&format!(", checked {}", time(&c.check_time)));
            }
            pairs.push(("connection", text));
        }
    }
    if let Some(p) = &g.crypto_policy {
        let specs: Vec<String> = p.allowed_key_specs.iter().map(|s| short!(KeySpec, *s, "KEY_SPEC_")).collect();
        let ops: Vec<String> = p.allowed_key_ops.iter().map(|o| short!(KeyOperation, *o, "KEY_OPERATION_")).collect();
        pairs.push(("allowed key specs", if specs.is_empty() { "all".to_owned() } else { specs.join(", ") }));
        pairs.push(("allowed key ops", if ops.is_empty() { "all".to_owned() } else { ops.join(", ") }));
    }
    let schedule = g
        .sync_schedule
        .as_ref()
        .and_then(|s| s.interval.as_ref())
        .filter(|d| d.seconds > 0 || d.nanos > 0)
        .map(|d| format!("every {}", human_duration(d)));
    if g.aws_kms.is_some() {
        pairs.push(("sync schedule", schedule.unwrap_or_else(|| "none (SyncKeys only)".to_owned())));
        pairs.push(("last sync", time(&g.last_sync_time)));
        pairs.push(("next sync", time(&g.next_sync_time)));
    }
    pairs.extend([
        ("audit key use", yes_no(g.audit_key_use)),
        ("created", time(&g.create_time)),
        ("updated", time(&g.update_time)),
        ("etag", g.etag.clone()),
    ]);
    details(&pairs)
}
