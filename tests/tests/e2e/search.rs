//! Finding keys: every ListKeys filter term (display name exact and prefix, alias, tags, AWS key
//! id, key ARN, origin, update_time, with the older state/virtual/key_spec/source), order_by
//! with paging, the filter following changes made through Keyward and behind its back, bad
//! filters and their limits, and LookupKey by alias, ARN or AWS key id.

use keyward_proto::v1 as pb;
use keyward_tests::TestApp;
use keyward_tests::fixtures::{aws_id, key};
use keyward_tests::status::invalid_on;
use tonic::Code;

use pb::KeyOperation as Op;

/// Display names of the keys `filter` finds under `parent` (in the server's order).
async fn names(app: &mut TestApp, parent: &str, filter: &str) -> Vec<String> {
    app.all_keys(parent, filter).await.into_iter().map(|k| k.display_name).collect()
}

/// Every key under `parent` in `order_by`, read `page_size` at a time.
async fn ordered(app: &mut TestApp, parent: &str, filter: &str, order_by: &str, page_size: i32) -> Vec<pb::Key> {
    let mut out = Vec::new();
    let mut token = String::new();
    loop {
        let r = app
            .keys
            .list_keys(pb::ListKeysRequest {
                parent: parent.into(),
                page_size,
                page_token: token,
                filter: filter.into(),
                order_by: order_by.into(),
            })
            .await
            .expect("list keys")
            .into_inner();
        assert!(r.keys.len() <= page_size as usize);
        out.extend(r.keys);
        if r.next_page_token.is_empty() {
            return out;
        }
        token = r.next_page_token;
    }
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

#[tokio::test]
async fn every_filter_term_finds_exactly_its_keys() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("search").await;
    let spec = pb::KeySpec::SymmetricDefault;
    let ops = [Op::Encrypt, Op::Decrypt];
    let orders = app
        .try_create_key(&g.name, key("prod-orders", spec, &ops, &["alias/orders"], &[("team", "pay"), ("env", "prod")]))
        .await
        .expect("prod-orders");
    app.try_create_key(&g.name, key("prod-users", spec, &ops, &["alias/users"], &[("team", "id"), ("env", "prod")]))
        .await
        .expect("prod-users");
    app.try_create_key(&g.name, key("dev-orders", spec, &ops, &[], &[("team", "pay"), ("env", "dev")]))
        .await
        .expect("dev-orders");
    // Characters that mean something to LIKE and GLOB are plain characters in a prefix.
    app.try_create_key(&g.name, key("x_y", spec, &ops, &[], &[])).await.expect("x_y");
    app.try_create_key(&g.name, key("xzy", spec, &ops, &[], &[])).await.expect("xzy");
    app.try_create_key(&g.name, key("50%*off", spec, &ops, &[], &[])).await.expect("50%*off");
    app.try_create_key(&g.name, key("500", spec, &ops, &[], &[])).await.expect("500");
    app.try_create_key(&g.name, key("a?b", spec, &ops, &[], &[])).await.expect("a?b");
    app.try_create_key(&g.name, key("axb", spec, &ops, &[], &[])).await.expect("axb");
    // An EXTERNAL key made in AWS behind Keyward's back, found by a sync.
    let external = app
        .aws
        .create_key()
        .origin(aws_sdk_kms::types::OriginType::External)
        .description("byok")
        .send()
        .await
        .expect("external key");
    let external_id = external.key_metadata().expect("metadata").key_id().to_owned();
    app.sync(&g.name).await;
    let regular = app.regular_group("search-regular").await;
    app.try_create_key(&regular.name, key("prod-vault", pb::KeySpec::Aes256, &ops, &[], &[("team", "pay")]))
        .await
        .expect("prod-vault");

    let p = g.name.as_str();
    assert_eq!(names(&mut app, p, "display_name = \"prod-orders\"").await, ["prod-orders"]);
    assert_eq!(sorted(names(&mut app, p, "display_name = \"prod-*\"").await), ["prod-orders", "prod-users"]);
    assert_eq!(
        sorted(names(&mut app, "groups/-", "display_name = prod-*").await),
        ["prod-orders", "prod-users", "prod-vault"]
    );
    assert!(names(&mut app, p, "display_name = \"Prod-*\"").await.is_empty(), "a prefix is case-sensitive");
    assert_eq!(names(&mut app, p, "display_name = \"x_*\"").await, ["x_y"]);
    assert_eq!(names(&mut app, p, "display_name = \"50%*\"").await, ["50%*off"]);
    assert_eq!(names(&mut app, p, "display_name = \"a?*\"").await, ["a?b"]);
    assert!(names(&mut app, p, "display_name = \"prod\"").await.is_empty(), "exact unless it ends with *");

    assert_eq!(names(&mut app, p, "alias = \"alias/orders\"").await, ["prod-orders"]);
    assert_eq!(names(&mut app, p, "alias = users").await, ["prod-users"]);
    assert!(names(&mut app, p, "alias = \"alias/nobody\"").await.is_empty());

    assert_eq!(sorted(names(&mut app, p, "tags.team = \"pay\"").await), ["dev-orders", "prod-orders"]);
    assert_eq!(names(&mut app, p, "tags.team = pay AND tags.env = prod").await, ["prod-orders"]);
    assert_eq!(
        sorted(names(&mut app, "groups/-", "tags.team = pay").await),
        ["dev-orders", "prod-orders", "prod-vault"]
    );
    assert!(names(&mut app, p, "tags.team = Pay").await.is_empty(), "tag values are case-sensitive");

    let orders_id = aws_id(&orders);
    let orders_arn = orders.aws.as_ref().expect("aws").key_arn.clone();
    assert_eq!(names(&mut app, p, &format!("aws_key_id = \"{orders_id}\"")).await, ["prod-orders"]);
    assert_eq!(names(&mut app, "groups/-", &format!("key_arn = \"{orders_arn}\"")).await, ["prod-orders"]);
    let ext = app.all_keys(p, "origin = EXTERNAL").await;
    assert_eq!(ext.len(), 1, "{ext:?}");
    assert_eq!(aws_id(&ext[0]), external_id);
    assert_eq!(app.all_keys(p, "origin = AWS_KMS").await.len(), 9);
    assert!(app.all_keys(&regular.name, "origin = AWS_KMS").await.is_empty(), "Keyward keys have no AWS origin");
    assert_eq!(names(&mut app, "groups/-", "source = KEYWARD AND tags.team = pay").await, ["prod-vault"]);
    assert_eq!(app.all_keys(p, "state = PENDING_IMPORT AND origin = EXTERNAL").await.len(), 1);

    // update_time: after the newest key's time only the key changed since.
    let all = app.all_keys("groups/-", "").await;
    let newest = all.iter().filter_map(|k| k.update_time.as_ref()).max_by_key(|t| (t.seconds, t.nanos)).unwrap();
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(newest.seconds) * 1_000_000_000 + i128::from(newest.nanos),
    )
    .unwrap()
    .format(&time::format_description::well_known::Rfc3339)
    .unwrap();
    assert!(app.all_keys("groups/-", &format!("update_time > \"{t}\"")).await.is_empty());
    assert_eq!(app.all_keys("groups/-", &format!("update_time <= \"{t}\"")).await.len(), all.len());
    let mut changed = app.get_key(&orders.name).await;
    changed.description = "changed".into();
    app.update_key(changed, &["description"]).await.expect("update");
    assert_eq!(names(&mut app, "groups/-", &format!("update_time > \"{t}\"")).await, ["prod-orders"]);
    assert_eq!(
        names(&mut app, "groups/-", &format!("update_time > \"{t}\" AND update_time < \"2999-01-01T00:00:00Z\"")).await,
        ["prod-orders"]
    );
}

#[tokio::test]
async fn filters_follow_changes_through_keyward_and_in_aws() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("follow").await;
    let spec = pb::KeySpec::SymmetricDefault;
    let ops = [Op::Encrypt, Op::Decrypt];
    let k =
        app.try_create_key(&g.name, key("k", spec, &ops, &["alias/first"], &[("team", "a")])).await.expect("create");
    let p = g.name.as_str();
    assert_eq!(names(&mut app, p, "alias = first").await, ["k"]);

    // Through Keyward: new tags and aliases replace the old ones in the index.
    let mut next = app.get_key(&k.name).await;
    next.tags = [("team".to_owned(), "b".to_owned())].into();
    next.aws.as_mut().unwrap().aliases = vec!["alias/second".into()];
    app.update_key(next, &["tags", "aws.aliases"]).await.expect("update");
    assert!(names(&mut app, p, "tags.team = a").await.is_empty());
    assert_eq!(names(&mut app, p, "tags.team = b").await, ["k"]);
    assert!(names(&mut app, p, "alias = first").await.is_empty());
    assert_eq!(names(&mut app, p, "alias = second").await, ["k"]);

    // Behind Keyward's back: the next sync moves the index with AWS.
    let id = aws_id(&k);
    app.aws.create_alias().alias_name("alias/third").target_key_id(&id).send().await.expect("alias");
    app.aws.delete_alias().alias_name("alias/second").send().await.expect("delete alias");
    app.aws
        .tag_resource()
        .key_id(&id)
        .tags(aws_sdk_kms::types::Tag::builder().tag_key("team").tag_value("c").build().unwrap())
        .send()
        .await
        .expect("tag");
    app.sync(&g.name).await;
    assert!(names(&mut app, p, "alias = second").await.is_empty());
    assert_eq!(names(&mut app, p, "alias = third").await, ["k"]);
    assert_eq!(names(&mut app, p, "tags.team = c").await, ["k"]);
    assert!(names(&mut app, p, "tags.team = b").await.is_empty());

    // A group dropped with its virtual keys leaves nothing for a filter to find.
    app.groups.delete_group(pb::DeleteGroupRequest { name: g.name.clone(), force: true }).await.expect("delete group");
    assert!(names(&mut app, "groups/-", "alias = third").await.is_empty());
    assert!(names(&mut app, "groups/-", "tags.team = c").await.is_empty());
}

#[tokio::test]
async fn order_by_pages_in_order_and_tokens_belong_to_their_query() {
    let mut app = TestApp::spawn().await;
    let g = app.regular_group("order").await;
    let ops = [Op::Encrypt, Op::Decrypt];
    for n in ["delta", "alpha", "echo", "charlie", "bravo", "foxtrot", "golf"] {
        app.try_create_key(&g.name, key(n, pb::KeySpec::Aes256, &ops, &[], &[("kind", "letter")]))
            .await
            .expect("create");
    }
    let p = g.name.as_str();
    let by_name: Vec<String> =
        ordered(&mut app, p, "", "display_name", 2).await.into_iter().map(|k| k.display_name).collect();
    assert_eq!(by_name, ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf"]);
    let desc: Vec<String> = ordered(&mut app, p, "tags.kind = letter", "display_name desc", 3)
        .await
        .into_iter()
        .map(|k| k.display_name)
        .collect();
    assert_eq!(desc, ["golf", "foxtrot", "echo", "delta", "charlie", "bravo", "alpha"]);
    let created: Vec<String> =
        ordered(&mut app, p, "", "create_time", 2).await.into_iter().map(|k| k.display_name).collect();
    assert_eq!(created, ["delta", "alpha", "echo", "charlie", "bravo", "foxtrot", "golf"]);
    let default: Vec<String> = ordered(&mut app, p, "", "", 3).await.into_iter().map(|k| k.display_name).collect();
    assert_eq!(default, created, "the default order is the order Keyward recorded the keys in");

    // The key changed last comes first by update_time desc.
    let mut k = app.all_keys(p, "display_name = charlie").await.remove(0);
    k.description = "touched".into();
    app.update_key(k, &["description"]).await.expect("update");
    let recent = ordered(&mut app, p, "", "update_time desc", 2).await;
    assert_eq!(recent[0].display_name, "charlie");
    assert_eq!(recent.len(), 7);

    // A token answers only the parent, filter and order_by it was issued for.
    let first = app
        .keys
        .list_keys(pb::ListKeysRequest {
            parent: p.into(),
            page_size: 2,
            order_by: "display_name".into(),
            ..Default::default()
        })
        .await
        .expect("page")
        .into_inner();
    assert!(!first.next_page_token.is_empty());
    for (what, filter, order_by) in
        [("another order", "", "update_time"), ("another filter", "tags.kind = letter", "display_name")]
    {
        let err = app
            .keys
            .list_keys(pb::ListKeysRequest {
                parent: p.into(),
                page_size: 2,
                page_token: first.next_page_token.clone(),
                filter: filter.into(),
                order_by: order_by.into(),
            })
            .await
            .expect_err(what);
        let d = invalid_on(&err, "page_token", what);
        assert!(d.contains("another parent, filter or order_by"), "{what}: {d}");
    }
    for (bad, says) in [
        ("color", "display_name, create_time, update_time"),
        ("display_name, update_time", "one field"),
        ("display_name upward", "desc"),
    ] {
        let err = app
            .keys
            .list_keys(pb::ListKeysRequest { parent: p.into(), order_by: bad.into(), ..Default::default() })
            .await
            .expect_err(bad);
        let d = invalid_on(&err, "order_by", bad);
        assert!(d.contains(says), "{bad}: {d}");
    }
}

#[tokio::test]
async fn bad_filters_are_invalid_argument_naming_the_term_at_and_past_the_limits() {
    let mut app = TestApp::spawn().await;
    let g = app.regular_group("limits").await;
    let ops = [Op::Encrypt, Op::Decrypt];
    let tags: Vec<(String, String)> = (0..16).map(|i| (format!("t{i}"), "v".to_owned())).collect();
    let tag_refs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    app.try_create_key(&g.name, key("tagged", pb::KeySpec::Aes256, &ops, &[], &tag_refs)).await.expect("create");
    let p = g.name.as_str();

    // 16 terms: answered; 17: refused.
    let sixteen: Vec<String> = (0..16).map(|i| format!("tags.t{i} = v")).collect();
    assert_eq!(names(&mut app, p, &sixteen.join(" AND ")).await, ["tagged"]);
    // 2048 bytes: answered (a long tag key that no key has); 2049: refused.
    let pad = |n: usize| format!("tags.{} = v", "k".repeat(n));
    let at_limit = pad(2048 - "tags. = v".len());
    assert_eq!(at_limit.len(), 2048);
    let err = app
        .keys
        .list_keys(pb::ListKeysRequest { parent: p.into(), filter: at_limit, ..Default::default() })
        .await
        .expect_err("a 2039-byte tag key is past the tag key limit");
    let d = invalid_on(&err, "filter", "long tag key");
    assert!(d.contains("1 to 128 bytes"), "{d:.300}");
    let at_limit = format!("{} AND {}", sixteen[..15].join(" AND "), "display_name = \"tagged\"");
    assert_eq!(names(&mut app, p, &at_limit).await, ["tagged"]);
    let mut seventeen = sixteen.clone();
    seventeen.push("virtual = false".into());
    let past = format!("display_name = \"{}\"", "x".repeat(2049 - "display_name = \"\"".len()));
    assert_eq!(past.len(), 2049);

    let cases: Vec<(String, &str)> = vec![
        (seventeen.join(" AND "), "more than 16 terms"),
        (past, "at most 2048"),
        ("color = red".into(), "fields: state, virtual, key_spec, source, origin, display_name, alias"),
        ("state = ENABLED OR state = DISABLED".into(), "expected AND"),
        ("state = ENABLED AND state = DISABLED".into(), "appears twice"),
        ("state != ENABLED".into(), "not supported"),
        ("display_name = \"a*b\"".into(), "at the end"),
        (format!("display_name = \"{}\"", "x".repeat(257)), "1 to 256 characters"),
        ("alias = \"x\u{0}\"".into(), "control characters"),
        ("display_name = \"pay\u{0}*\"".into(), "control characters"),
        ("update_time > yesterday".into(), "RFC 3339"),
        ("key_arn = not-an-arn".into(), "not a key ARN"),
        ("origin = SOMEWHERE".into(), "AWS_KMS, EXTERNAL, AWS_CLOUDHSM, EXTERNAL_KEY_STORE"),
        (format!("tags.team = \"{}\"", "v".repeat(257)), "at most 256 bytes"),
        ("tags.team = a AND tags.team = b".into(), "appears twice"),
        ("alias = \"alias/unclosed".into(), "no closing quote"),
        ("state = ENABLED AND".into(), "ends with AND"),
    ];
    for (filter, says) in cases {
        let err = app
            .keys
            .list_keys(pb::ListKeysRequest { parent: p.into(), filter: filter.clone(), ..Default::default() })
            .await
            .expect_err(&filter);
        let d = invalid_on(&err, "filter", &filter);
        assert!(d.contains(says), "{filter:.80}: {d}");
    }
}

#[tokio::test]
async fn lookup_key_by_alias_arn_or_aws_key_id() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("lookup").await;
    let ops = [Op::Encrypt, Op::Decrypt];
    let k = app
        .try_create_key(&g.name, key("payments", pb::KeySpec::SymmetricDefault, &ops, &["alias/payments"], &[]))
        .await
        .expect("create");
    let arn = k.aws.as_ref().unwrap().key_arn.clone();
    let lookup = |parent: &str, alias: &str, key_arn: &str, aws_key_id: &str| pb::LookupKeyRequest {
        parent: parent.into(),
        alias: alias.into(),
        key_arn: key_arn.into(),
        aws_key_id: aws_key_id.into(),
    };
    for req in [
        lookup(&g.name, "alias/payments", "", ""),
        lookup("groups/-", "payments", "", ""),
        lookup("groups/-", "", &arn, ""),
        lookup(&g.name, "", "", &aws_id(&k)),
    ] {
        let found = app.keys.lookup_key(req.clone()).await.unwrap_or_else(|e| panic!("{req:?}: {e:?}")).into_inner();
        assert_eq!(found.name, k.name, "{req:?}");
    }
    let err = app.keys.lookup_key(lookup("groups/-", "alias/nobody", "", "")).await.expect_err("no such alias");
    assert_eq!(err.code(), Code::NotFound, "{err:?}");
    assert!(err.message().contains("alias/nobody"), "{}", err.message());
    let err = app.keys.lookup_key(lookup("groups/-", "", "", "")).await.expect_err("nothing given");
    assert!(invalid_on(&err, "alias", "nothing").contains("exactly one of alias, key_arn, aws_key_id"));
    let err = app.keys.lookup_key(lookup("groups/-", "payments", &arn, "")).await.expect_err("two given");
    assert!(invalid_on(&err, "alias", "two").contains("exactly one"));
    let err = app.keys.lookup_key(lookup("groups/-", "", "nope", "")).await.expect_err("bad arn");
    assert!(invalid_on(&err, "key_arn", "bad arn").contains("not a key ARN"));

    // A second group reaching the same account holds the same AWS key: across groups the
    // lookup is ambiguous and says where; under one group it answers.
    let twin = app.create_aws_group("lookup-twin").await;
    app.sync(&twin.name).await;
    let err = app.keys.lookup_key(lookup("groups/-", "alias/payments", "", "")).await.expect_err("ambiguous");
    let d = invalid_on(&err, "parent", "ambiguous");
    assert!(d.contains("2 keys") && d.contains(&k.name) && d.contains(&twin.name), "{d}");
    let in_twin =
        app.keys.lookup_key(lookup(&twin.name, "alias/payments", "", "")).await.expect("in twin").into_inner();
    assert!(in_twin.name.starts_with(&twin.name), "{}", in_twin.name);
}

#[tokio::test]
async fn the_migration_indexes_the_keys_stored_before_it() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("before").await;
    let ops = [Op::Encrypt, Op::Decrypt];
    let k = app
        .try_create_key(&g.name, key("old", pb::KeySpec::SymmetricDefault, &ops, &["alias/old"], &[("team", "x")]))
        .await
        .expect("create");
    // The schema as it was before migration m0011 (and the ones after it), with the key in it.
    app.exec_sql(
        "ALTER TABLE keys DROP COLUMN has_links; DROP INDEX keys_group_id; DROP INDEX keys_next_check; \
         DROP TABLE sync_drifts; ALTER TABLE sync_runs DROP COLUMN drift; \
         DROP TABLE key_aliases; DROP TABLE key_tags; DROP INDEX keys_aws_key_id; DROP INDEX keys_arn; \
         DROP INDEX keys_display_name; DROP INDEX keys_group_state; DROP INDEX keys_group_created; \
         DROP INDEX keys_group_updated; DROP INDEX IF EXISTS keys_group_display_name_pattern; \
         ALTER TABLE keys DROP COLUMN aws_key_id; ALTER TABLE keys DROP COLUMN origin; \
         ALTER TABLE keys DROP COLUMN created_at_us; ALTER TABLE keys DROP COLUMN updated_at_us; \
         DELETE FROM seaql_migrations WHERE version IN \
         ('m0011_key_search', 'm0012_sync_drift', 'm0013_key_pages', 'm0014_key_has_links')",
    )
    .await;
    app.second_keyward().await.store().migrate().await.expect("migrate");
    let p = g.name.as_str();
    assert_eq!(names(&mut app, p, "alias = old").await, ["old"]);
    assert_eq!(names(&mut app, p, "tags.team = x").await, ["old"]);
    assert_eq!(names(&mut app, p, &format!("aws_key_id = \"{}\"", aws_id(&k))).await, ["old"]);
    assert_eq!(names(&mut app, p, "origin = AWS_KMS").await, ["old"]);
    assert_eq!(names(&mut app, p, "update_time > \"2020-01-01T00:00:00Z\"").await, ["old"]);
}

#[tokio::test]
async fn names_of_256_characters_in_any_script_page_and_match() {
    let mut app = TestApp::spawn().await;
    let g = app.regular_group("long-names").await;
    let ops = [Op::Encrypt, Op::Decrypt];
    // 256 characters of 4 bytes each: the longest display name there is, in bytes.
    let long: Vec<String> = ["1", "2", "3"].iter().map(|d| format!("{}{d}", "😀".repeat(255))).collect();
    for n in &long {
        app.try_create_key(&g.name, key(n, pb::KeySpec::Aes256, &ops, &[], &[])).await.expect("create");
    }
    for order in ["display_name", "display_name desc"] {
        let got: Vec<String> = ordered(&mut app, &g.name, "display_name = \"😀*\"", order, 1)
            .await
            .into_iter()
            .map(|k| k.display_name)
            .collect();
        let mut want = long.clone();
        if order.ends_with("desc") {
            want.reverse();
        }
        assert_eq!(got, want, "{order}");
    }
    // A whole name matches, whatever its length in bytes.
    assert_eq!(names(&mut app, &g.name, &format!("display_name = \"{}\"", long[1])).await, [long[1].clone()]);
    // LookupKey names its own field's limit.
    let err = app
        .keys
        .lookup_key(pb::LookupKeyRequest { parent: "groups/-".into(), alias: "a".repeat(3000), ..Default::default() })
        .await
        .expect_err("too long");
    assert!(invalid_on(&err, "alias", "long alias").contains("is 3000 bytes; at most 2048"));
}
