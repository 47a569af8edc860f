//! `keyward rotate KEY`: RotateKey. With `--plan`, the plan only (`validate_only`: what the
//! rotation would call and move, nothing done); else the rotation, then what it created and moved.

use keyward_proto::v1 as pb;
use serde_json::{Value, json};

use super::emit;
use crate::args::{Output, RotateArgs};
use crate::client::Client;
use crate::output::{details, json_text, printable, short, wire};
use crate::{Failure, resolve};

pub async fn run(client: &Client, args: &RotateArgs, output: Output) -> Result<(), Failure> {
    let name = resolve::key_name(client, &args.key, args.group.as_deref()).await?;
    let req = pb::RotateKeyRequest {
        name,
        validate_only: args.plan,
        in_place: args.in_place,
        rotate_linked: args.rotate_linked,
        ..Default::default()
    };
    let r = client.keys().rotate_key(req).await.map_err(|s| client.fail(s))?.into_inner();
    match output {
        Output::Json => emit(&json_text(&answer_json(&r))),
        Output::Table => emit(&answer_text(&r)),
    }
}

fn moves(m: &[pb::AliasMove]) -> Vec<String> {
    m.iter()
        .map(|a| {
            let to = if a.to_aws_key_id.is_empty() { "the new key".to_owned() } else { a.to_aws_key_id.clone() };
            format!("{}: {} → {to}", a.alias, a.from_aws_key_id)
        })
        .collect()
}

/// The plan (and, once executed, what was done) for people.
fn answer_text(r: &pb::RotateKeyResponse) -> String {
    printable_lines(&plan_text(r))
}

/// Every line of `text` printable (the lines themselves kept).
fn printable_lines(text: &str) -> String {
    text.lines().map(|l| format!("{}\n", printable(l))).collect()
}

fn plan_text(r: &pb::RotateKeyResponse) -> String {
    let mut out = String::new();
    if let Some(p) = &r.plan {
        let kind = short!(RotationKind, p.kind, "ROTATION_KIND_");
        out.push_str(&format!("{} rotation of {}\n", kind, p.key));
        let new_key = p.new_key.as_ref().map(|k| k.display_name.clone()).unwrap_or_default();
        out.push_str(&details(&[
            ("new key", new_key),
            ("old key renamed", p.rename_old_to.clone()),
            ("old key", short!(OldKeyAction, p.old_key_action, "OLD_KEY_ACTION_")),
            ("source", p.source.as_ref().map(|s| s.key.clone()).unwrap_or_default()),
        ]));
        for m in moves(&p.alias_moves) {
            out.push_str(&format!("  moves {m}\n"));
        }
        for c in &p.copies {
            let what = if c.skipped.is_empty() { "follows".to_owned() } else { format!("stays: {}", c.skipped) };
            out.push_str(&format!("  copy {} {what}\n", c.key));
        }
        for call in &p.aws_calls {
            out.push_str(&format!("  AWS {call}\n"));
        }
    }
    if r.executed {
        out.push_str(&format!("done: {} now holds the aliases\n", r.key.as_ref().map_or("", |k| k.name.as_str())));
        for k in &r.created_keys {
            out.push_str(&format!("  created {k}\n"));
        }
        for m in moves(&r.moved_aliases) {
            out.push_str(&format!("  moved {m}\n"));
        }
    } else {
        out.push_str("plan only: nothing was changed (run without --plan to rotate)\n");
    }
    out
}

fn answer_json(r: &pb::RotateKeyResponse) -> Value {
    let moves_json = |m: &[pb::AliasMove]| -> Vec<Value> {
        m.iter()
            .map(|a| json!({"alias": a.alias, "fromAwsKeyId": a.from_aws_key_id, "toAwsKeyId": a.to_aws_key_id}))
            .collect()
    };
    json!({
        "executed": r.executed,
        "plan": r.plan.as_ref().map(|p| json!({
            "kind": wire!(RotationKind, p.kind),
            "key": p.key,
            "awsKeyId": p.aws_key_id,
            "newKey": p.new_key.as_ref().map(|k| json!({"displayName": k.display_name, "keySpec": wire!(KeySpec, k.key_spec)})),
            "renameOldTo": p.rename_old_to,
            "aliasMoves": moves_json(&p.alias_moves),
            "oldKeyAction": wire!(OldKeyAction, p.old_key_action),
            "awsCalls": p.aws_calls,
            "copies": p.copies.iter().map(|c| json!({"key": c.key, "newKey": c.new_key, "skipped": c.skipped})).collect::<Vec<_>>(),
        })),
        "key": r.key.as_ref().map(|k| k.name.clone()),
        "oldKey": r.old_key.as_ref().map(|k| k.name.clone()),
        "createdKeys": r.created_keys,
        "movedAliases": moves_json(&r.moved_aliases),
    })
}
