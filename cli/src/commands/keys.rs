//! `keyward keys list|get`.

use std::collections::HashMap;

use keyward_proto::v1 as pb;
use serde_json::json;

use super::{emit, note};
use crate::args::{KeysCommand, Output};
use crate::client::Client;
use crate::output::{Table, details, human_duration, json_text, key_json, short, time, wire};
use crate::{Failure, resolve};

pub async fn run(client: &Client, cmd: &KeysCommand, output: Output) -> Result<(), Failure> {
    match cmd {
        KeysCommand::List { group, filter, order_by, limit } => {
            let parent = match group {
                Some(g) => resolve::group_name(client, g).await?,
                None => "groups/-".to_owned(),
            };
            let (filter, order_by) = (filter.as_deref().unwrap_or_default(), order_by.as_deref().unwrap_or_default());
            let (keys, more) = resolve::list_keys(client, &parent, filter, order_by, *limit).await?;
            if more {
                note(&format!("(the first {} keys; raise --limit or narrow --filter for the others)", keys.len()));
            }
            match output {
                Output::Json => emit(&json_text(&json!({"keys": keys.iter().map(key_json).collect::<Vec<_>>()}))),
                Output::Table if keys.is_empty() => emit("(no keys)\n"),
                Output::Table => {
                    // Across groups, a column names each key's group.
                    let group_names: Option<HashMap<String, String>> = if parent == "groups/-" {
                        let groups = resolve::all_groups(client, "").await?;
                        Some(groups.into_iter().map(|g| (g.name, g.display_name)).collect())
                    } else {
                        None
                    };
                    let mut headers = vec!["KEY ID", "DISPLAY NAME", "SPEC", "STATE", "SOURCE", "ALIASES"];
                    if group_names.is_some() {
                        headers.push("GROUP");
                    }
                    let mut t = Table::new(&headers);
                    for k in &keys {
                        let mut row = vec![
                            k.key_id.clone(),
                            k.display_name.clone(),
                            short!(KeySpec, k.key_spec, "KEY_SPEC_"),
                            short!(KeyState, k.state, "KEY_STATE_"),
                            short!(KeySource, k.source, "KEY_SOURCE_"),
                            aliases(k),
                        ];
                        if let Some(names) = &group_names {
                            row.push(names.get(&k.group).cloned().unwrap_or_else(|| k.group.clone()));
                        }
                        t.row(row);
                    }
                    emit(&t.render())
                }
            }
        }
        KeysCommand::Get { key, group } => {
            let name = resolve::key_name(client, key, group.as_deref()).await?;
            let k = client.keys().get_key(pb::GetKeyRequest { name }).await.map_err(|s| client.fail(s))?.into_inner();
            match output {
                Output::Json => emit(&json_text(&key_json(&k))),
                Output::Table => emit(&key_details(&k)),
            }
        }
    }
}

/// The first alias, and how many more.
fn aliases(k: &pb::Key) -> String {
    let list = k.aws.as_ref().map(|a| a.aliases.as_slice()).unwrap_or_default();
    match list {
        [] => String::new(),
        [one] => one.clone(),
        [first, rest @ ..] => format!("{first} (+{})", rest.len()),
    }
}

fn key_details(k: &pb::Key) -> String {
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    let mut tags: Vec<String> = k.tags.iter().map(|(t, v)| format!("{t}={v}")).collect();
    tags.sort();
    let mut pairs = vec![
        ("name", k.name.clone()),
        ("display name", k.display_name.clone()),
        ("description", k.description.clone()),
        ("key spec", short!(KeySpec, k.key_spec, "KEY_SPEC_")),
        (
            "key ops",
            k.key_ops.iter().map(|o| short!(KeyOperation, *o, "KEY_OPERATION_")).collect::<Vec<_>>().join(", "),
        ),
        ("state", short!(KeyState, k.state, "KEY_STATE_")),
        ("source", short!(KeySource, k.source, "KEY_SOURCE_")),
        ("virtual", yes_no(k.r#virtual)),
        ("tags", tags.join(", ")),
    ];
    if let Some(a) = &k.aws {
        pairs.extend([
            ("AWS key ARN", a.key_arn.clone()),
            ("AWS aliases", a.aliases.join(", ")),
            ("AWS state", a.aws_key_state.clone()),
            ("AWS key spec", a.key_spec.clone()),
            ("AWS key usage", a.key_usage.clone()),
            ("AWS origin", a.origin.clone()),
            ("AWS key manager", a.key_manager.clone()),
            ("AWS created", time(&a.creation_time)),
            ("AWS deletion", time(&a.deletion_time)),
            ("material valid to", time(&a.valid_to)),
            (
                "AWS rotation",
                if a.rotation_enabled {
                    format!("every {} days, next {}", a.rotation_period_days, time(&a.next_rotation_time))
                } else {
                    "off".to_owned()
                },
            ),
        ]);
    }
    for l in &k.links {
        pairs.push(("link", format!("{} {}", short!(KeyLinkKind, l.kind, "KEY_LINK_KIND_"), l.key)));
    }
    if let Some(p) = &k.rotation_policy {
        let every = match (&p.interval, p.cron.as_str()) {
            (_, cron) if !cron.is_empty() => format!("cron {cron:?}"),
            (Some(d), _) => format!("every {}", human_duration(d)),
            _ => String::new(),
        };
        let mut text = format!("{every}, next {}", time(&p.next_rotation_time));
        if p.in_place {
            text.push_str(", in place");
        }
        if p.old_key_action != 0 {
            text.push_str(&format!(", old key: {}", wire!(OldKeyAction, p.old_key_action)));
        }
        pairs.push(("rotation policy", text));
        pairs.push(("last rotation error", p.last_error.clone()));
    }
    pairs.extend([
        ("created by", k.created_by.clone()),
        ("created", time(&k.create_time)),
        ("updated", time(&k.update_time)),
        ("mutable", yes_no(k.mutable)),
        ("etag", k.etag.clone()),
    ]);
    details(&pairs)
}
