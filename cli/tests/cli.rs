//! The `keyward` binary end to end, as a person runs it: a process against the real server
//! (in-process, over a real database and the LocalStack KMS emulator), its stdout, stderr and
//! exit code. Groups and keys as tables and JSON, a filter, name resolution, a sync followed
//! with a progress bar under a pseudo-terminal and its counts, a FAILED run's exit code, the
//! audit log, profiles, TLS and mutual TLS, completions, and one-line errors (server down,
//! gRPC codes, credentials) that never print the token.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Stdio;

use keyward_proto::v1 as pb;
use keyward_server::tls::{ClientAuth, Tls, TlsFiles};
use keyward_shared::kms::Error as KmsError;
use keyward_shared::kms::faults::Fault;
use keyward_tests::TestApp;
use keyward_tests::tls_front::TestCa;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_keyward");

/// What one run of the binary left.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    #[track_caller]
    fn ok(self) -> Self {
        assert_eq!(self.code, 0, "keyward failed: {self:#?}");
        assert!(self.stderr.is_empty(), "nothing on stderr: {self:#?}");
        self
    }

    #[track_caller]
    fn json(self) -> Value {
        let run = self.ok();
        serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("JSON on stdout ({e}): {}", run.stdout))
    }

    /// The one `error: …` line on stderr of a run that exited 1.
    #[track_caller]
    fn error(self) -> String {
        assert_eq!(self.code, 1, "{self:#?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:#?}");
        assert!(self.stderr.starts_with("error: "), "{self:#?}");
        for dump in ["panicked", "Status {", "Error {", "RUST_BACKTRACE", "tonic::"] {
            assert!(!self.stderr.contains(dump), "no debug dump ({dump}): {self:#?}");
        }
        self.stderr.trim_end().to_owned()
    }
}

/// Runs `keyward ARGS` with only `env` of Keyward's variables (none of the caller's), a fresh
/// HOME without a config file.
async fn keyward(env: &[(&str, String)], args: &[&str]) -> Run {
    let home = tempfile::tempdir().expect("home");
    let mut cmd = tokio::process::Command::new(BIN);
    clean_env(&mut cmd, home.path());
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str()))).args(args);
    let out = cmd.stdin(Stdio::null()).output().await.expect("run keyward");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).expect("utf-8 stdout"),
        stderr: String::from_utf8(out.stderr).expect("utf-8 stderr"),
    }
}

fn clean_env(cmd: &mut tokio::process::Command, home: &Path) {
    for (k, _) in std::env::vars() {
        if k.starts_with("KEYWARD_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", home).env_remove("XDG_CONFIG_HOME").env("NO_COLOR", "1");
}

/// The settings of `app`'s bootstrap admin, by environment variables.
fn admin(app: &TestApp) -> Vec<(&'static str, String)> {
    vec![("KEYWARD_ADDR", format!("http://{}", app.addr)), ("KEYWARD_TOKEN", app.admin_token.clone())]
}

async fn as_admin(app: &TestApp, args: &[&str]) -> Run {
    keyward(&admin(app), args).await
}

/// `n` symmetric keys (the first with an alias) and `rsa` RSA_2048 signing keys in `app`'s AWS
/// account; their AWS key ids.
async fn seed(app: &TestApp, n: usize, rsa: usize) -> (Vec<String>, Vec<String>) {
    let (mut sym, mut signing) = (Vec::new(), Vec::new());
    for i in 0..n {
        let k = app.aws.create_key().description(format!("seed {i}")).send().await.expect("seed key");
        let id = k.key_metadata().expect("metadata").key_id().to_owned();
        if i == 0 {
            app.aws.create_alias().alias_name("alias/cli/first").target_key_id(&id).send().await.expect("alias");
        }
        sym.push(id);
    }
    for _ in 0..rsa {
        let k = app
            .aws
            .create_key()
            .key_spec(aws_sdk_kms::types::KeySpec::Rsa2048)
            .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
            .send()
            .await
            .expect("seed RSA key");
        signing.push(k.key_metadata().expect("metadata").key_id().to_owned());
    }
    (sym, signing)
}

/// The value of `label:` in a `label: value` listing, checking that the values line up.
#[track_caller]
fn field(text: &str, label: &str) -> String {
    let column = |line: &str| {
        let i = line.find(':').expect("a label") + 1;
        i + line[i..].len() - line[i..].trim_start().len()
    };
    let prefix = format!("{label}:");
    let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("{label:?} in\n{text}"));
    let first = text.lines().next().expect("a line");
    assert_eq!(column(line), column(first), "values aligned:\n{text}");
    line[column(line)..].to_owned()
}

fn id_of(name: &str) -> &str {
    name.rsplit('/').next().expect("an id")
}

/// The column where `header`'s text `col` starts is where `cell` starts on the line holding it.
#[track_caller]
fn aligned(table: &str, col: &str, cell: &str) {
    let mut lines = table.lines();
    let header = lines.next().expect("a header line");
    let at = header.find(col).unwrap_or_else(|| panic!("column {col:?} in {header:?}"));
    let line = lines.find(|l| l.contains(cell)).unwrap_or_else(|| panic!("a row with {cell:?} in\n{table}"));
    assert_eq!(line.find(cell), Some(at), "{cell:?} under {col:?}:\n{table}");
}

#[tokio::test]
async fn groups_and_keys_as_tables_and_json_with_a_filter() {
    let mut app = TestApp::spawn().await;
    let (sym, rsa) = seed(&app, 3, 2).await;
    let g = app.create_aws_group("payments-prod").await;
    let regular = app.regular_group("scratch").await;
    app.sync(&g.name).await;

    // groups list: aligned columns for people.
    let table = as_admin(&app, &["groups", "list"]).await.ok().stdout;
    assert!(table.starts_with("GROUP ID"), "{table}");
    for cell in [id_of(&g.name), id_of(&regular.name)] {
        aligned(&table, "GROUP ID", cell);
    }
    aligned(&table, "DISPLAY NAME", "payments-prod");
    aligned(&table, "DISPLAY NAME", "scratch");
    aligned(&table, "KIND", "AWS_KMS");
    aligned(&table, "REGION", "eu-west-1");
    aligned(&table, "LAST SYNC", &app.get_group(&g.name).await.last_sync_time.expect("synced").to_string());

    // ... and the messages as JSON.
    let v = as_admin(&app, &["groups", "list", "--output", "json"]).await.json();
    let groups = v["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 2, "{v}");
    let aws = groups.iter().find(|x| x["name"] == g.name.as_str()).expect("the AWS group");
    assert_eq!(aws["displayName"], "payments-prod");
    assert_eq!(aws["kind"], "GROUP_KIND_AWS_KMS");
    assert_eq!(aws["awsKms"]["region"], "eu-west-1");
    assert_eq!(aws["awsKms"]["accessKeyId"], app.access_key_id.as_str());
    assert_eq!(aws["awsKms"]["secretAccessKeySet"], true);
    assert!(aws["awsKms"].get("secretAccessKey").is_none(), "no secret field at all");
    assert_eq!(aws["etag"], app.get_group(&g.name).await.etag.as_str());
    let reg = groups.iter().find(|x| x["name"] == regular.name.as_str()).expect("the REGULAR group");
    assert_eq!((reg["kind"].as_str(), reg["awsKms"].is_null()), (Some("GROUP_KIND_REGULAR"), true));
    let only = as_admin(&app, &["groups", "list", "--filter", "kind = REGULAR", "-o", "json"]).await.json();
    assert_eq!(only["groups"].as_array().map(Vec::len), Some(1), "{only}");

    // groups get by display name, by a unique part of it, by bare id, by full name.
    for arg in ["payments-prod", "PAYMENTS", id_of(&g.name), g.name.as_str()] {
        let v = as_admin(&app, &["groups", "get", arg, "-o", "json"]).await.json();
        assert_eq!(v["name"], g.name.as_str(), "groups get {arg}");
    }
    let text = as_admin(&app, &["groups", "get", "payments-prod"]).await.ok().stdout;
    assert_eq!(field(&text, "name"), g.name);
    assert_eq!(field(&text, "secret access key"), "set");
    assert_eq!(field(&text, "region"), "eu-west-1");

    // keys list of one group as JSON: every synced key with its AWS details.
    let v = as_admin(&app, &["keys", "list", "--group", "payments-prod", "-o", "json"]).await.json();
    let keys = v["keys"].as_array().expect("keys");
    let got: BTreeSet<&str> = keys.iter().map(|k| k["aws"]["awsKeyId"].as_str().expect("awsKeyId")).collect();
    let want: BTreeSet<&str> = sym.iter().chain(&rsa).map(String::as_str).collect();
    assert_eq!(got, want);
    for k in keys {
        assert_eq!((k["group"].as_str(), k["virtual"].as_bool()), (Some(g.name.as_str()), Some(true)), "{k}");
        assert_eq!(k["state"], "KEY_STATE_ENABLED");
        assert_eq!(k["createdBy"], "sync");
    }

    // A filter: only the RSA keys, in JSON and in the table.
    let v = as_admin(&app, &["keys", "list", "-g", &g.name, "--filter", "key_spec = RSA_2048", "-o", "json"]).await;
    let keys = v.json()["keys"].as_array().cloned().expect("keys");
    let got: BTreeSet<&str> = keys.iter().map(|k| k["aws"]["awsKeyId"].as_str().expect("id")).collect();
    assert_eq!(got, rsa.iter().map(String::as_str).collect());
    assert!(keys.iter().all(|k| k["keySpec"] == "KEY_SPEC_RSA_2048" && k["keyOps"][0] == "KEY_OPERATION_SIGN"));
    let table = as_admin(&app, &["keys", "list", "-g", id_of(&g.name), "--filter", "key_spec = RSA_2048"]).await.ok();
    assert_eq!(table.stdout.lines().count(), 3, "a header and two keys:\n{}", table.stdout);
    aligned(&table.stdout, "SPEC", "RSA_2048");
    aligned(&table.stdout, "STATE", "ENABLED");
    assert!(!table.stdout.contains("SYMMETRIC_DEFAULT"), "{}", table.stdout);

    // Every group's keys: a GROUP column; the aliased key shows its alias and its name.
    let table = as_admin(&app, &["keys", "list"]).await.ok().stdout;
    aligned(&table, "GROUP", "payments-prod");
    aligned(&table, "ALIASES", "alias/cli/first");
    aligned(&table, "DISPLAY NAME", "cli/first");
    // Ordered by display name, newest update first: the server's order_by.
    let v = as_admin(&app, &["keys", "list", "-g", &g.name, "--order-by", "display_name desc", "-o", "json"]).await;
    let names: Vec<String> = v.json()["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["displayName"].as_str().unwrap().to_owned())
        .collect();
    let mut sorted = names.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(names, sorted);
    assert!(names.len() > 2, "{names:?}");
    let limited = as_admin(&app, &["keys", "list", "--limit", "2", "-o", "json"]).await;
    assert_eq!(limited.code, 0);
    assert!(limited.stderr.contains("the first 2 keys"), "{limited:?}");

    // keys get: by alias within the group, by bare key id anywhere, by full name.
    let first = app.all_keys(&g.name, "").await.into_iter().find(|k| k.display_name == "cli/first").expect("key");
    let text = as_admin(&app, &["keys", "get", "alias/cli/first", "--group", "payments-prod"]).await.ok().stdout;
    assert_eq!(field(&text, "name"), first.name);
    assert_eq!(field(&text, "AWS key ARN"), first.aws.as_ref().expect("aws").key_arn);
    assert_eq!(field(&text, "state"), "ENABLED");
    assert_eq!(field(&text, "AWS aliases"), "alias/cli/first");
    for arg in [first.key_id.as_str(), first.name.as_str(), "cli/first"] {
        let v = as_admin(&app, &["keys", "get", arg, "-o", "json"]).await.json();
        assert_eq!(v["name"], first.name.as_str(), "keys get {arg}");
        assert_eq!(v["aws"]["aliases"][0], "alias/cli/first");
        assert_eq!(v["aws"]["keyArn"], first.aws.as_ref().expect("aws").key_arn.as_str());
        assert_eq!(v["etag"], first.etag.as_str());
    }
}

/// `keyward ARGS` under a pseudo-terminal (util-linux `script`), 120 columns wide: everything
/// the terminal showed, and the exit code.
async fn keyward_on_a_terminal(env: &[(&str, String)], args: &[&str]) -> (i32, String) {
    let home = tempfile::tempdir().expect("home");
    let line = format!(
        "stty cols 120 rows 40; exec {BIN} {}",
        args.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ")
    );
    let mut cmd = tokio::process::Command::new("script");
    clean_env(&mut cmd, home.path());
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str()))).args(["-q", "-e", "-c", &line, "/dev/null"]);
    let out = cmd.stdin(Stdio::null()).output().await.expect("run script(1)");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

#[tokio::test]
async fn sync_follows_the_run_with_a_progress_bar_and_prints_the_counts() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("estate").await;
    for i in 0..40 {
        app.aws.create_key().description(format!("seed {i}")).send().await.expect("seed key");
    }
    // 40 keys, 8 at a time, 150 ms each: most of a second of progress to draw.
    app.faults.inject(Fault::Delay { op: "describe_key", millis: 150 });
    let (code, screen) = keyward_on_a_terminal(&admin(&app), &["sync", "estate"]).await;
    assert_eq!(code, 0, "{screen}");
    assert!(screen.contains("syncing estate ["), "the progress bar was drawn:\n{screen}");
    assert!(screen.contains("/40 keys  added "), "done of listed, then the counts:\n{screen}");
    assert!(screen.contains("· unchanged 0 · failed 0"), "{screen}");
    assert!(screen.contains(" left"), "the time left while keys remain:\n{screen}");
    let run = app
        .groups
        .list_sync_runs(pb::ListSyncRunsRequest { parent: g.name.clone(), ..Default::default() })
        .await
        .expect("runs")
        .into_inner()
        .sync_runs
        .remove(0);
    assert_eq!((run.state, run.listed, run.added), (pb::SyncRunState::Succeeded as i32, 40, 40), "{run:?}");
    assert!(screen.contains("sync SUCCEEDED in "), "{screen}");
    assert!(screen.contains(&run.name), "the summary names the run:\n{screen}");
    for line in ["listed:    40", "added:     40", "updated:   0", "unchanged: 0", "failed:    0"] {
        assert!(screen.contains(line), "{line:?} in the summary:\n{screen}");
    }
    app.faults.clear();

    // Off a terminal: no bar, stdout holds the summary only.
    let run = as_admin(&app, &["sync", &g.name]).await.ok();
    assert!(run.stdout.starts_with("sync SUCCEEDED in "), "{run:?}");
    assert!(run.stdout.contains("unchanged: 40\n") && run.stdout.contains("added:     0\n"), "{run:?}");
    assert!(!run.stdout.contains("keys  added"), "{run:?}");
    assert!(run.stdout.contains("drift:     none\n"), "{run:?}");

    // A key disabled in AWS behind Keyward's back: the summary's drift names it.
    let aws_id = app.all_keys(&g.name, "").await[0].aws.as_ref().unwrap().aws_key_id.clone();
    app.aws.disable_key().key_id(&aws_id).send().await.expect("disable in AWS");
    let run = as_admin(&app, &["sync", &g.name]).await.ok();
    assert!(run.stdout.contains("drift:     1 key changed in AWS (state 1)\n"), "{run:?}");
    assert!(run.stdout.contains(" state CHANGED ENABLED → DISABLED\n"), "{run:?}");

    // JSON: the ended run.
    let v = as_admin(&app, &["sync", id_of(&g.name), "-o", "json"]).await.json();
    assert_eq!(v["state"], "SYNC_RUN_STATE_SUCCEEDED", "{v}");
    assert_eq!((v["listed"].as_i64(), v["done"].as_i64(), v["unchanged"].as_i64()), (Some(40), Some(40), Some(40)));
    assert_eq!((v["added"].as_i64(), v["failed"].as_i64()), (Some(0), Some(0)));
    assert_eq!(v["trigger"], "SYNC_TRIGGER_MANUAL");
    assert!(v["name"].as_str().is_some_and(|n| n.starts_with(&format!("{}/syncRuns/", g.name))), "{v}");
    assert!(v["endTime"].is_string() && v["estimatedTimeRemaining"].is_null(), "{v}");
    assert_eq!(v["drift"]["keys"].as_i64(), Some(0), "{v}");

    // A run already going for the group (ABORTED for a second one) is followed to its end.
    app.faults.inject(Fault::Delay { op: "describe_key", millis: 100 });
    let going = app
        .groups
        .sync_keys(pb::SyncKeysRequest { name: g.name.clone(), return_immediately: true })
        .await
        .expect("started")
        .into_inner();
    let run = as_admin(&app, &["sync", "estate"]).await;
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(run.stderr, format!("a sync of {} is already running: following {}\n", g.name, going.name));
    assert!(run.stdout.starts_with("sync SUCCEEDED in ") && run.stdout.contains(&going.name), "{run:?}");
    assert!(run.stdout.contains("unchanged: 40\n"), "{run:?}");
}

#[tokio::test]
async fn a_sync_that_fails_exits_1_with_its_reason_and_warnings_are_listed() {
    let mut app = TestApp::spawn().await;
    let (sym, _) = seed(&app, 3, 0).await;
    let g = app.create_aws_group("denied").await;

    // One unreadable key: the run SUCCEEDED with a warning naming the key.
    app.faults.inject(Fault::Fail {
        op: "describe_key",
        key: Some(sym[1].clone()),
        error: KmsError::AccessDenied("not authorized to perform kms:DescribeKey".into()),
        times: None,
    });
    let run = as_admin(&app, &["sync", "denied"]).await.ok();
    assert!(run.stdout.contains("failed:    1\n") && run.stdout.contains("added:     2\n"), "{run:?}");
    assert!(run.stdout.contains("warnings (1):\n"), "{run:?}");
    let warning = run.stdout.lines().find(|l| l.contains(&sym[1])).expect("the warning names the key");
    assert!(warning.contains("access denied"), "{warning}");
    app.faults.clear();

    // AWS refuses the listing: the run FAILED, exit 1, the reason on stderr.
    app.faults.inject(Fault::Fail {
        op: "list_keys",
        key: None,
        error: KmsError::AccessDenied("not authorized to perform kms:ListKeys".into()),
        times: None,
    });
    let run = as_admin(&app, &["sync", "denied"]).await;
    assert!(run.stdout.starts_with("sync FAILED"), "{run:?}");
    let e = run.error();
    assert!(e.starts_with(&format!("error: sync run {}/syncRuns/", g.name)), "{e}");
    assert!(e.contains("FAILED: ") && e.contains("kms:ListKeys"), "{e}");
    let run = as_admin(&app, &["sync", "denied", "-o", "json"]).await;
    assert_eq!(run.code, 1, "{run:?}");
    let v: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(v["state"], "SYNC_RUN_STATE_FAILED");
    assert!(v["error"].as_str().is_some_and(|e| e.contains("kms:ListKeys")), "{v}");
}

#[tokio::test]
async fn a_server_that_is_down_is_one_helpful_line_and_exit_1() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let addr = format!("http://127.0.0.1:{port}");
    for args in [&["groups", "list"][..], &["keys", "list", "-o", "json"], &["sync", "payments"]] {
        let mut all = vec!["--addr", addr.as_str()];
        all.extend_from_slice(args);
        let run = keyward(&[("KEYWARD_TOKEN", "kw_not_used".into())], &all).await;
        assert!(run.stdout.is_empty(), "{run:?}");
        assert_eq!(
            run.error(),
            format!(
                "error: cannot reach the Keyward server at {addr}: connection refused \
                 (is it running? `scripts/demo` starts one)"
            )
        );
    }
    // KEYWARD_ADDR too; a bare host:port is plaintext.
    let run = keyward(&[("KEYWARD_ADDR", format!("127.0.0.1:{port}"))], &["groups", "list"]).await;
    assert!(run.error().contains(&format!("at {addr}: connection refused")));
}

#[tokio::test]
async fn grpc_errors_name_their_code_and_usage_errors_exit_2() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("errors").await;

    let missing = format!("{}/keys/{}", g.name, uuid::Uuid::now_v7());
    let e = as_admin(&app, &["keys", "get", &missing]).await.error();
    assert!(e.starts_with("error: NOT_FOUND: "), "{e}");
    let e = as_admin(&app, &["keys", "list", "--filter", "color = red"]).await.error();
    assert!(e.starts_with("error: INVALID_ARGUMENT: ") && e.contains("state, virtual, key_spec, source"), "{e}");
    let e = as_admin(&app, &["groups", "get", "no-such-group"]).await.error();
    assert_eq!(e, "error: no group named \"no-such-group\" (groups: \"errors\")");
    let e = as_admin(&app, &["keys", "get", "nothing-like-it", "--group", "errors"]).await.error();
    assert!(e.contains(&format!("no key \"nothing-like-it\" in {}", g.name)), "{e}");

    // Credentials: none, or refused; the token is never printed.
    let addr = ("KEYWARD_ADDR", format!("http://{}", app.addr));
    let e = keyward(std::slice::from_ref(&addr), &["groups", "list"]).await.error();
    assert!(e.starts_with("error: UNAUTHENTICATED: ") && e.contains("no API token was sent"), "{e}");
    assert!(e.contains("--token-file") && e.contains("KEYWARD_TOKEN"), "{e}");
    let bad = "kw_0000000000000000000000000000000000000000000000000000";
    let run = keyward(&[addr.clone(), ("KEYWARD_TOKEN", bad.into())], &["groups", "list"]).await;
    assert!(!run.stderr.contains(bad) && !run.stdout.contains(bad), "{run:?}");
    let e = run.error();
    assert!(e.starts_with("error: UNAUTHENTICATED: ") && e.contains("the token from KEYWARD_TOKEN was refused"), "{e}");
    let help = keyward(&[("KEYWARD_TOKEN", app.admin_token.clone())], &["--help"]).await.ok();
    assert!(help.stdout.contains("KEYWARD_TOKEN") && !help.stdout.contains(&app.admin_token), "{}", help.stdout);

    // Usage errors are clap's: exit 2.
    for args in [&["keys"][..], &["groups", "list", "--output", "yaml"], &["frobnicate"], &["sync"]] {
        let run = as_admin(&app, args).await;
        assert_eq!(run.code, 2, "{args:?}: {run:?}");
    }
}

#[tokio::test]
async fn profiles_from_the_config_file_with_flags_and_env_on_top() {
    let mut app = TestApp::spawn().await;
    app.regular_group("profiled").await;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::write(dir.path().join("admin.token"), format!("{}\n", app.admin_token)).expect("token");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "default_profile = \"local\"\n\n[profiles.local]\naddr = \"http://{}\"\ntoken_file = \"admin.token\"\n\n\
             [profiles.down]\naddr = \"http://127.0.0.1:{closed}\"\n",
            app.addr
        ),
    )
    .expect("config");
    let cfg = ("KEYWARD_CLI_CONFIG", config.display().to_string());

    // The default profile (its token file relative to the config file).
    let v = keyward(std::slice::from_ref(&cfg), &["groups", "list", "-o", "json"]).await.json();
    assert_eq!(v["groups"][0]["displayName"], "profiled", "{v}");
    let who = keyward(std::slice::from_ref(&cfg), &["whoami"]).await.ok().stdout;
    assert_eq!((field(&who, "account roles"), field(&who, "authenticated by")), ("ADMIN".into(), "api_key".into()));
    // --profile and KEYWARD_PROFILE pick another.
    let e = keyward(std::slice::from_ref(&cfg), &["--profile", "down", "groups", "list"]).await.error();
    assert!(e.contains(&format!("127.0.0.1:{closed}: connection refused")), "{e}");
    let e = keyward(&[cfg.clone(), ("KEYWARD_PROFILE", "down".into())], &["groups", "list"]).await.error();
    assert!(e.contains("connection refused"), "{e}");
    // A flag beats the profile's address; KEYWARD_ADDR does too.
    let v = keyward(
        &[cfg.clone(), ("KEYWARD_TOKEN", app.admin_token.clone())],
        &["--profile", "down", "--addr", &format!("http://{}", app.addr), "groups", "list", "-o", "json"],
    )
    .await
    .json();
    assert_eq!(v["groups"][0]["displayName"], "profiled");
    let e = keyward(&[cfg.clone(), ("KEYWARD_ADDR", format!("http://127.0.0.1:{closed}"))], &["groups", "list"])
        .await
        .error();
    assert!(e.contains("connection refused"), "{e}");
    // An unknown profile names the ones there are; --config names another file.
    let e = keyward(std::slice::from_ref(&cfg), &["--profile", "prod", "groups", "list"]).await.error();
    assert!(e.contains("no profile \"prod\"") && e.contains("(profiles: down, local)"), "{e}");
    let e = keyward(&[], &["--config", "/nonexistent/keyward.toml", "groups", "list"]).await.error();
    assert!(e.contains("cannot read the config file /nonexistent/keyward.toml"), "{e}");
}

#[tokio::test]
async fn tls_with_a_ca_file_and_mutual_tls_with_a_client_certificate() {
    let mut app = TestApp::spawn().await;
    app.regular_group("over-tls").await;
    let (ca, clients) = (TestCa::new("keyward cli test CA"), TestCa::new("keyward cli clients"));
    let dir = tempfile::tempdir().expect("dir");
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).expect("write");
        p.display().to_string()
    };
    let server = ca.server_cert(&["keyward.test"]);
    let (cert, key) = (write("server.pem", &server.cert_pem), write("server.key", &server.key_pem));
    let ca_file = write("ca.pem", &ca.pem());
    let client_ca = write("clients.pem", &clients.pem());
    let me = clients.client_cert("cli-user");
    let my_cert = write("me.pem", &me.cert_pem);
    write("me.key", &me.key_pem);

    let mut stops = Vec::new();
    let mut serve = async |client_auth: ClientAuth| {
        let tls = Tls::new(TlsFiles {
            cert: cert.clone().into(),
            key: key.clone().into(),
            client_ca: Some(client_ca.clone().into()),
            client_auth,
        })
        .expect("tls");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("https://127.0.0.1:{}", listener.local_addr().expect("addr").port());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let kw = app.keyward.clone();
        tokio::spawn(async move {
            let _ = keyward_server::serve_tls(kw, listener, &tls, async move {
                let _ = stopped.await;
            })
            .await;
        });
        stops.push(stop);
        url
    };
    let tls_url = serve(ClientAuth::None).await;
    let mtls_url = serve(ClientAuth::Required).await;
    let token = ("KEYWARD_TOKEN", app.admin_token.clone());

    // The CA and the name the certificate carries (the address is an IP).
    let ok = ["--ca-file", ca_file.as_str(), "--server-name", "keyward.test"];
    let mut args = vec!["--addr", tls_url.as_str()];
    args.extend(ok);
    args.extend(["groups", "list", "-o", "json"]);
    let v = keyward(std::slice::from_ref(&token), &args).await.json();
    assert_eq!(v["groups"][0]["displayName"], "over-tls");
    // The same from a profile.
    let config = write(
        "config.toml",
        &format!(
            "[profiles.default]\naddr = \"{tls_url}\"\nca_file = \"ca.pem\"\nserver_name = \"keyward.test\"\n\n\
             [profiles.mtls]\naddr = \"{mtls_url}\"\nca_file = \"ca.pem\"\nserver_name = \"keyward.test\"\n\
             cert_file = \"me.pem\"\nkey_file = \"me.key\"\n"
        ),
    );
    let cfg = ("KEYWARD_CLI_CONFIG", config);
    let v = keyward(&[cfg.clone(), token.clone()], &["groups", "list", "-o", "json"]).await.json();
    assert_eq!(v["groups"][0]["displayName"], "over-tls");
    // Without the CA (public roots) or with the wrong name: refused in the handshake, said in one line.
    let e =
        keyward(std::slice::from_ref(&token), &["--addr", &tls_url, "--server-name", "keyward.test", "groups", "list"])
            .await
            .error();
    assert!(e.starts_with(&format!("error: cannot reach the Keyward server at {tls_url}: ")), "{e}");
    assert!(e.contains("certificate"), "{e}");
    let e = keyward(std::slice::from_ref(&token), &["--addr", &tls_url, "--ca-file", &ca_file, "groups", "list"])
        .await
        .error();
    assert!(e.contains("certificate"), "{e}");
    // Plaintext against the TLS port: a hint to use TLS.
    let plain = tls_url.replace("https://", "http://");
    let e = keyward(std::slice::from_ref(&token), &["--addr", &plain, "groups", "list"]).await.error();
    assert!(e.contains("does the server speak TLS? then use an https:// address"), "{e}");

    // Mutual TLS: with the client certificate from the profile; without it the server refuses.
    let v = keyward(&[cfg.clone(), token.clone()], &["--profile", "mtls", "groups", "list", "-o", "json"]).await.json();
    assert_eq!(v["groups"][0]["displayName"], "over-tls");
    let mut args = vec!["--addr", mtls_url.as_str()];
    args.extend(ok);
    args.extend(["groups", "list"]);
    let e = keyward(std::slice::from_ref(&token), &args).await.error();
    assert!(e.contains("does the server require a client certificate? then set cert_file and key_file"), "{e}");
    let mut args = vec!["--addr", mtls_url.as_str(), "--cert-file", my_cert.as_str()];
    args.extend(ok);
    args.extend(["groups", "list"]);
    let e = keyward(&[cfg, token], &args).await.error();
    assert_eq!(e, "error: a client certificate (cert_file) needs its key (key_file)");
}

#[tokio::test]
async fn audit_list_with_a_filter_as_table_and_json() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("audited").await;
    app.regular_group("other").await;
    let filter = format!("resource = \"{}\"", g.name);
    let v = as_admin(&app, &["audit", "list", "--filter", &filter, "-o", "json"]).await.json();
    let events = v["auditEvents"].as_array().expect("events");
    assert!(!events.is_empty(), "{v}");
    assert!(events.iter().all(|e| e["resource"] == g.name.as_str()), "only the group's events: {v}");
    let created = events.iter().find(|e| e["action"] == "keyward.v1.GroupService/CreateGroup").expect("CreateGroup");
    assert_eq!(created["outcome"], "OK");
    assert!(created["actor"].as_str().is_some_and(|a| a.starts_with("principals/")), "{created}");
    assert!(created["seq"].as_i64().is_some_and(|s| s > 0) && created["hash"].as_str().is_some_and(|h| h.len() == 64));

    let table = as_admin(&app, &["audit", "list", "--filter", &filter]).await.ok().stdout;
    aligned(&table, "ACTION", "GroupService/CreateGroup");
    aligned(&table, "RESOURCE", &g.name);
    aligned(&table, "OUTCOME", "OK");
    // Every event, then the first one only (the rest said on stderr).
    let all = as_admin(&app, &["audit", "list", "-o", "json"]).await.json();
    assert!(all["auditEvents"].as_array().is_some_and(|e| e.len() > events.len()), "{all}");
    let one = as_admin(&app, &["audit", "list", "--limit", "1"]).await;
    assert_eq!((one.code, one.stdout.lines().count()), (0, 2), "{one:?}");
    assert!(one.stderr.contains("the first 1 events"), "{one:?}");
    let e = as_admin(&app, &["audit", "list", "--filter", "actor = me"]).await.error();
    assert!(e.starts_with("error: INVALID_ARGUMENT: "), "{e}");
}

#[tokio::test]
async fn completions_for_bash_zsh_and_fish() {
    for (shell, mark) in
        [("bash", "complete -F _keyward"), ("zsh", "#compdef keyward"), ("fish", "complete -c keyward")]
    {
        let run = keyward(&[], &["completions", shell]).await.ok();
        assert!(run.stdout.contains(mark), "{shell}: {}", &run.stdout[..run.stdout.len().min(400)]);
        for word in ["groups", "sync", "audit", "token-file"] {
            assert!(run.stdout.contains(word), "{shell} completes {word}");
        }
    }
    assert_eq!(keyward(&[], &["completions", "tcsh"]).await.code, 2);
}

#[test]
fn the_servers_configuration_leaves_every_cli_variable_to_the_cli() {
    // keyward-server refuses KEYWARD_* variables it does not know; the CLI's own, exported in
    // the same shell, must be on its list of variables to leave alone.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut used = BTreeSet::new();
    for entry in walk(&src) {
        let text = std::fs::read_to_string(&entry).expect("read");
        for (i, _) in text.match_indices("\"KEYWARD_") {
            let name: String = text[i + 1..].chars().take_while(|c| c.is_ascii_uppercase() || *c == '_').collect();
            used.insert(name);
        }
    }
    assert!(used.contains("KEYWARD_TOKEN"), "{used:?}");
    let listed: BTreeSet<String> = keyward_shared::config::CLI_VARIABLES.iter().map(|v| v.to_string()).collect();
    assert_eq!(used, listed, "the CLI's variables and shared::config::CLI_VARIABLES");
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("dir").map(|e| e.expect("entry").path()) {
        if e.is_dir() {
            out.extend(walk(&e));
        } else if e.extension().is_some_and(|x| x == "rs") {
            out.push(e);
        }
    }
    out
}

#[tokio::test]
async fn rotate_shows_its_plan_then_rotates() {
    let mut app = TestApp::spawn().await;
    let g = app.create_aws_group("rotating").await;
    let ops = [pb::KeyOperation::Encrypt, pb::KeyOperation::Decrypt];
    let k = app
        .try_create_key(
            &g.name,
            keyward_tests::fixtures::key("orders", pb::KeySpec::SymmetricDefault, &ops, &["alias/orders"], &[]),
        )
        .await
        .expect("key");
    // --plan: the new key, the alias move and the AWS calls; nothing changes.
    let plan = as_admin(&app, &["rotate", "alias/orders", "--group", "rotating", "--plan"]).await.ok().stdout;
    assert!(plan.starts_with(&format!("NEW_KEY rotation of {}\n", k.name)), "{plan}");
    assert!(
        plan.contains(&format!("  moves alias/orders: {} → the new key\n", keyward_tests::fixtures::aws_id(&k))),
        "{plan}"
    );
    assert!(plan.contains("  AWS CreateKey("), "{plan}");
    assert!(plan.ends_with("plan only: nothing was changed (run without --plan to rotate)\n"), "{plan}");
    assert_eq!(app.get_key(&k.name).await.aws.unwrap().aliases, vec!["alias/orders".to_owned()]);
    // Without it: rotated; the alias is on the new key.
    let v = as_admin(&app, &["rotate", &k.name, "-o", "json"]).await.json();
    assert_eq!(v["executed"], true, "{v}");
    assert_eq!(v["oldKey"], k.name.as_str(), "{v}");
    let new_key = v["key"].as_str().expect("the new key").to_owned();
    assert_ne!(new_key, k.name);
    assert_eq!(app.get_key(&new_key).await.aws.unwrap().aliases, vec!["alias/orders".to_owned()]);
    assert!(app.get_key(&k.name).await.aws.unwrap().aliases.is_empty());
    assert_eq!(v["movedAliases"][0]["alias"], "alias/orders", "{v}");
}

#[tokio::test]
async fn what_the_cli_prints_cannot_leak_the_token_steer_the_terminal_or_hang() {
    let mut app = TestApp::spawn().await;
    // A token pasted into the config file by mistake: the parse error names the line, not its text.
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!("[profiles.default]\naddr = \"http://{}\"\ntoken = \"{}\"\n", app.addr, app.admin_token),
    )
    .expect("config");
    let e = keyward(&[], &["--config", config.to_str().unwrap(), "groups", "list"]).await.error();
    assert!(e.contains("line 3: unknown field `token`"), "{e}");
    assert!(!e.contains(&app.admin_token), "the token in an error: {e}");

    // Text from AWS with escape sequences and carriage returns reaches the terminal escaped.
    let id = app.seed_aws_keys(1).await.remove(0);
    let nasty = "\u{1b}]0;PWNED\u{7}\u{1b}[31mRED\u{1b}[0m\r\u{1b}[2Kfake line";
    app.aws.update_key_description().key_id(&id).description(nasty).send().await.expect("description");
    let g = app.create_aws_group("escapes").await;
    app.sync(&g.name).await;
    let text = as_admin(&app, &["keys", "get", &id, "--group", "escapes"]).await.ok().stdout;
    assert!(!text.contains('\u{1b}') && !text.contains('\r') && !text.contains('\u{7}'), "{text:?}");
    assert!(text.contains("\\u{1b}[31mRED"), "{text:?}");
    // JSON keeps the value as it is (escaped by JSON itself).
    let v = as_admin(&app, &["keys", "get", &id, "--group", "escapes", "-o", "json"]).await.json();
    assert_eq!(v["description"], nasty);

    // A server that takes the connection and never answers: an error after --timeout, not a hang.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = format!("http://{}", silent.local_addr().expect("addr"));
    let started = std::time::Instant::now();
    let run =
        keyward(&[("KEYWARD_TOKEN", app.admin_token.clone())], &["--addr", &addr, "--timeout", "2", "groups", "list"])
            .await;
    assert_eq!(run.code, 1, "{run:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "took {:?}", started.elapsed());
    assert!(run.stderr.contains("Timeout expired"), "{run:?}");
    drop(silent);
}
