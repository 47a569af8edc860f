//! Group and key arguments as people type them: a full resource name (`groups/ID`,
//! `groups/G/keys/K`), a bare id, or a display name (a key also by alias or AWS key id / ARN),
//! turned into the resource name the API takes.

use keyward_proto::v1 as pb;

use crate::Failure;
use crate::client::Client;

/// Every group the caller may read.
pub async fn all_groups(client: &Client, filter: &str) -> Result<Vec<pb::Group>, Failure> {
    let mut groups = client.groups();
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let r = groups
            .list_groups(pb::ListGroupsRequest { page_size: 1000, page_token: token, filter: filter.to_owned() })
            .await
            .map_err(|s| client.fail(s))?
            .into_inner();
        out.extend(r.groups);
        if r.next_page_token.is_empty() {
            return Ok(out);
        }
        token = r.next_page_token;
    }
}

fn is_uuid(s: &str) -> bool {
    uuid::Uuid::try_parse(s).is_ok()
}

/// `groups/ID` for `arg`: a group name, a bare id, or a display name — exact, then ignoring
/// case, then the one display name that contains it (ignoring case).
pub async fn group_name(client: &Client, arg: &str) -> Result<String, Failure> {
    let arg = arg.trim();
    if let Some(rest) = arg.strip_prefix("groups/") {
        return Ok(format!("groups/{}", rest.trim_end_matches('/')));
    }
    if is_uuid(arg) {
        return Ok(format!("groups/{arg}"));
    }
    let groups = all_groups(client, "").await?;
    let pick = |pred: &dyn Fn(&pb::Group) -> bool| groups.iter().filter(|g| pred(g)).collect::<Vec<_>>();
    let lower = arg.to_lowercase();
    let mut found = pick(&|g| g.display_name == arg);
    if found.is_empty() {
        found = pick(&|g| g.display_name.to_lowercase() == lower);
    }
    if found.is_empty() {
        found = pick(&|g| g.display_name.to_lowercase().contains(&lower));
    }
    match found.as_slice() {
        [one] => Ok(one.name.clone()),
        [] => {
            let names: Vec<String> = groups.iter().take(10).map(|g| format!("{:?}", g.display_name)).collect();
            let more = if groups.len() > 10 { ", …" } else { "" };
            Err(Failure::new(if groups.is_empty() {
                format!("no group named {arg:?}: you may read no group")
            } else {
                format!("no group named {arg:?} (groups: {}{more})", names.join(", "))
            }))
        }
        several => Err(Failure::new(format!(
            "{arg:?} matches several groups: {}; give the full display name or the group's id",
            several.iter().map(|g| format!("{:?} ({})", g.display_name, g.name)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// Every key of `parent` (`groups/G` or `groups/-`) matching `filter` in `order_by`, at most
/// `limit` (0: all). Also answers whether more were left.
pub async fn list_keys(
    client: &Client,
    parent: &str,
    filter: &str,
    order_by: &str,
    limit: usize,
) -> Result<(Vec<pb::Key>, bool), Failure> {
    let mut keys = client.keys();
    let (mut out, mut token) = (Vec::new(), String::new());
    loop {
        let page = if limit == 0 { 1000 } else { (limit - out.len()).min(1000) };
        let r = keys
            .list_keys(pb::ListKeysRequest {
                parent: parent.to_owned(),
                page_size: i32::try_from(page).unwrap_or(1000),
                page_token: token,
                filter: filter.to_owned(),
                order_by: order_by.to_owned(),
            })
            .await
            .map_err(|s| client.fail(s))?
            .into_inner();
        out.extend(r.keys);
        if r.next_page_token.is_empty() {
            return Ok((out, false));
        }
        if limit != 0 && out.len() >= limit {
            return Ok((out, true));
        }
        token = r.next_page_token;
    }
}

/// `groups/G/keys/K` for `arg`: a key name; or, within `group` (else every group), a key id,
/// a display name, an alias (`alias/x` or `x`), an AWS key id or ARN.
pub async fn key_name(client: &Client, arg: &str, group: Option<&str>) -> Result<String, Failure> {
    let arg = arg.trim();
    if arg.starts_with("groups/") && arg.contains("/keys/") {
        return Ok(arg.to_owned());
    }
    let parent = match group {
        Some(g) => group_name(client, g).await?,
        None => "groups/-".to_owned(),
    };
    // A key id of the group; else an AWS key id (also a UUID), found below.
    if is_uuid(arg) && parent != "groups/-" {
        let name = format!("{parent}/keys/{arg}");
        match client.keys().get_key(pb::GetKeyRequest { name: name.clone() }).await {
            Ok(_) => return Ok(name),
            Err(s) if s.code() == tonic::Code::NotFound => {}
            Err(s) => return Err(client.fail(s)),
        }
    }
    // Indexed lookups, one filter term each: display name, alias, AWS key id or ARN.
    let quoted = format!("\"{}\"", arg.replace('\\', "\\\\").replace('"', "\\\""));
    let mut terms = Vec::new();
    if !arg.contains('*') {
        terms.push(format!("display_name = {quoted}"));
    }
    if arg.starts_with("arn:") {
        terms.push(format!("key_arn = {quoted}"));
    } else {
        terms.push(format!("alias = {quoted}"));
        terms.push(format!("aws_key_id = {quoted}"));
    }
    let mut found: Vec<String> = Vec::new();
    for term in terms {
        for k in list_keys(client, &parent, &term, "", 10).await?.0 {
            if !found.contains(&k.name) {
                found.push(k.name);
            }
        }
    }
    // A Keyward key id without a group: GetKey in each group the caller reads.
    if found.is_empty() && is_uuid(arg) {
        let mut keys = client.keys();
        for g in all_groups(client, "").await? {
            let name = format!("{}/keys/{arg}", g.name);
            if keys.get_key(pb::GetKeyRequest { name: name.clone() }).await.is_ok() {
                found.push(name);
            }
        }
    }
    let scope = if parent == "groups/-" { "any group".to_owned() } else { parent.clone() };
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => {
            Err(Failure::new(format!("no key {arg:?} in {scope} (by key id, display name, alias, AWS key id or ARN)")))
        }
        several => Err(Failure::new(format!(
            "{arg:?} matches several keys: {}; give --group or the key's full name",
            several.join(", ")
        ))),
    }
}
