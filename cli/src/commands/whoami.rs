//! `keyward whoami`: the principal the credentials belong to (GetCurrentPrincipal).

use keyward_proto::v1 as pb;

use super::emit;
use crate::Failure;
use crate::args::Output;
use crate::client::Client;
use crate::output::{Table, current_principal_json, details, json_text, short};

pub async fn run(client: &Client, output: Output) -> Result<(), Failure> {
    let me = client
        .principals()
        .get_current_principal(pb::GetCurrentPrincipalRequest { name: "principals/me".into() })
        .await
        .map_err(|s| client.fail(s))?
        .into_inner();
    if output == Output::Json {
        return emit(&json_text(&current_principal_json(&me)));
    }
    let p = me.principal.clone().unwrap_or_default();
    let roles: Vec<String> = p.account_roles.iter().map(|r| short!(AccountRole, *r, "ACCOUNT_ROLE_")).collect();
    let mut text = details(&[
        ("principal", p.name.clone()),
        ("display name", p.display_name.clone()),
        ("kind", short!(PrincipalKind, p.kind, "PRINCIPAL_KIND_")),
        ("account roles", if roles.is_empty() { "none".into() } else { roles.join(", ") }),
        ("authenticated by", me.authenticated_by.clone()),
    ]);
    if !me.groups.is_empty() {
        let mut t = Table::new(&["GROUP ID", "DISPLAY NAME", "KIND", "ROLES"]);
        for g in &me.groups {
            let roles: Vec<String> = g.roles.iter().map(|r| short!(GroupRole, *r, "GROUP_ROLE_")).collect();
            t.row(vec![
                g.group.trim_start_matches("groups/").to_owned(),
                g.display_name.clone(),
                short!(GroupKind, g.kind, "GROUP_KIND_"),
                roles.join(", "),
            ]);
        }
        text.push('\n');
        text.push_str(&t.render());
    }
    emit(&text)
}
