//! `keyward sync GROUP`: starts a sync (`return_immediately`), follows `WatchSyncRun` with a
//! progress bar on stderr (drawn only on a terminal), then prints the run's counts, warnings and
//! drift (the summary and the first changes of ListKeyDrifts).
//! A run already going for the group is followed instead. Exits 1 when the run FAILED.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use keyward_proto::v1 as pb;
use tonic::Code;

use super::{emit, note};
use crate::args::{Output, SyncArgs};
use crate::client::Client;
use crate::output::{details, human_duration, json_text, printable, short, sync_run_json};
use crate::{Failure, resolve};

const RUNNING: i32 = pb::SyncRunState::Running as i32;
const FAILED: i32 = pb::SyncRunState::Failed as i32;

pub async fn run(client: &Client, args: &SyncArgs, output: Output) -> Result<(), Failure> {
    let group = resolve::group_name(client, &args.group).await?;
    let mut groups = client.groups();
    let started = groups.sync_keys(pb::SyncKeysRequest { name: group.clone(), return_immediately: true }).await;
    let run = match started {
        Ok(r) => r.into_inner(),
        Err(s) if s.code() == Code::Aborted => match running_run(client, &group).await? {
            Some(r) => {
                note(&format!("a sync of {group} is already running: following {}", r.name));
                r
            }
            None => return Err(client.fail(s)),
        },
        Err(s) => return Err(client.fail(s)),
    };

    let mut progress = Progress::new(args.no_progress, &args.group);
    progress.show(&run);
    let mut stream = groups
        .watch_sync_run(pb::WatchSyncRunRequest { name: run.name.clone() })
        .await
        .map_err(|s| client.fail(s))?
        .into_inner();
    let mut last = run;
    loop {
        tokio::select! {
            m = stream.message() => match m {
                Ok(Some(r)) => {
                    progress.show(&r);
                    last = r;
                }
                Ok(None) => break,
                Err(s) => {
                    progress.clear();
                    return Err(client.fail(s));
                }
            },
            _ = tokio::signal::ctrl_c() => {
                progress.clear();
                note(&format!(
                    "stopped following; the sync goes on in the server ({}, {} of {} keys done)",
                    last.name, last.done, last.listed
                ));
                return Err(Failure::quiet(130));
            }
        }
    }
    progress.clear();
    if last.state == RUNNING {
        // The stream ended early (a server going away): the stored run says where it is.
        last = groups
            .get_sync_run(pb::GetSyncRunRequest { name: last.name.clone() })
            .await
            .map_err(|s| client.fail(s))?
            .into_inner();
    }
    match output {
        Output::Json => emit(&json_text(&sync_run_json(&last)))?,
        Output::Table => {
            let drift = first_drifts(client, &last).await?;
            emit(&format!("{}{}", summary(&last), drift_lines(&last, &drift)))?
        }
    }
    match last.state {
        FAILED => Err(Failure::new(format!(
            "sync run {} FAILED: {}",
            last.name,
            if last.error.is_empty() { "no reason given" } else { &last.error }
        ))),
        RUNNING => Err(Failure::new(format!(
            "the server stopped streaming the run, which is still RUNNING: {} (see `keyward groups get {}`)",
            last.name, group
        ))),
        _ => Ok(()),
    }
}

/// How many drift entries the summary shows (the rest: ListKeyDrifts).
const DRIFT_SHOWN: usize = 20;

/// The first entries of the run's drift report, when it has one.
async fn first_drifts(client: &Client, run: &pb::SyncRun) -> Result<Vec<pb::KeyDrift>, Failure> {
    if run.drift.as_ref().is_none_or(|d| d.keys == 0) {
        return Ok(Vec::new());
    }
    let page = client
        .groups()
        .list_key_drifts(pb::ListKeyDriftsRequest {
            parent: run.name.clone(),
            page_size: DRIFT_SHOWN as i32,
            ..Default::default()
        })
        .await
        .map_err(|s| client.fail(s))?
        .into_inner();
    Ok(page.key_drifts)
}

/// `drift: N keys (field n, …)` and one line per change of the first keys.
fn drift_lines(r: &pb::SyncRun, first: &[pb::KeyDrift]) -> String {
    let Some(d) = r.drift.as_ref().filter(|d| d.keys > 0) else { return "drift:     none\n".to_owned() };
    let mut fields: Vec<(&String, &i64)> = d.fields.iter().collect();
    fields.sort();
    let fields: Vec<String> = fields.iter().map(|(f, n)| format!("{f} {n}")).collect();
    let keys = if d.keys == 1 { "key" } else { "keys" };
    let mut out = format!("drift:     {} {keys} changed in AWS ({})\n", d.keys, fields.join(", "));
    if d.not_applied > 0 {
        out.push_str(&format!("           {} not applied: a Keyward change of the key was in flight\n", d.not_applied));
    }
    for k in first {
        for c in &k.changes {
            let kind = short!(DriftKind, c.kind, "DRIFT_KIND_");
            let what = match (c.before.is_empty(), c.after.is_empty()) {
                (true, true) => String::new(),
                (true, false) => format!(" {}", one_line(&c.after)),
                (false, true) => format!(" {}", one_line(&c.before)),
                (false, false) => format!(" {} → {}", one_line(&c.before), one_line(&c.after)),
            };
            let field = if c.field.is_empty() { "key" } else { &c.field };
            out.push_str(&format!("  {}  {field} {kind}{what}\n", k.key));
        }
    }
    if (d.keys as usize) > first.len() {
        out.push_str(&format!(
            "  … and {} more keys (ListKeyDrifts of {} lists every one)\n",
            d.keys as usize - first.len(),
            r.name
        ));
    }
    out
}

/// A value on one line, at most 60 characters (key policies are long JSON), printable.
fn one_line(s: &str) -> String {
    let flat: String = printable(&s.split_whitespace().collect::<Vec<_>>().join(" "));
    if flat.chars().count() > 60 { format!("{}…", flat.chars().take(59).collect::<String>()) } else { flat }
}

/// The newest RUNNING run of `group`, if any.
async fn running_run(client: &Client, group: &str) -> Result<Option<pb::SyncRun>, Failure> {
    let runs = client
        .groups()
        .list_sync_runs(pb::ListSyncRunsRequest { parent: group.to_owned(), page_size: 10, ..Default::default() })
        .await
        .map_err(|s| client.fail(s))?
        .into_inner()
        .sync_runs;
    Ok(runs.into_iter().find(|r| r.state == RUNNING))
}

/// The progress bar on stderr: a spinner while AWS lists the keys, then done of listed keys
/// with the counts and the time left.
struct Progress {
    bar: ProgressBar,
    counting: bool,
}

impl Progress {
    fn new(hidden: bool, group: &str) -> Self {
        // Drawn on stderr, and only when it is a terminal; stdout keeps only the answer.
        let bar = if hidden {
            ProgressBar::hidden()
        } else {
            ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr())
        };
        bar.set_style(style("{spinner} {prefix}: listing the keys in AWS  {msg}"));
        bar.set_prefix(format!("syncing {group}"));
        bar.enable_steady_tick(Duration::from_millis(120));
        Self { bar, counting: false }
    }

    fn show(&mut self, r: &pb::SyncRun) {
        if !self.counting && (r.listed > 0 || r.done > 0) {
            self.counting = true;
            self.bar.set_style(style("{spinner} {prefix} [{bar:30}] {pos}/{len} keys  {msg}"));
        }
        self.bar.set_length(u64::try_from(r.listed.max(r.done)).unwrap_or_default());
        self.bar.set_position(u64::try_from(r.done).unwrap_or_default());
        let mut msg =
            format!("added {} · updated {} · unchanged {} · failed {}", r.added, r.updated, r.unchanged, r.failed);
        if let Some(left) = &r.estimated_time_remaining {
            msg.push_str(&format!(" · {} left", human_duration(left)));
        }
        self.bar.set_message(msg);
    }

    fn clear(&self) {
        self.bar.finish_and_clear();
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()).progress_chars("=> ")
}

/// The ended run for people: its state and time, the counts, the warnings.
fn summary(r: &pb::SyncRun) -> String {
    let took = match (&r.start_time, &r.end_time) {
        (Some(s), Some(e)) => {
            let ms = (e.seconds - s.seconds) * 1000 + i64::from(e.nanos - s.nanos) / 1_000_000;
            format!(" in {:.1}s", ms as f64 / 1000.0)
        }
        _ => String::new(),
    };
    let mut out = format!("sync {}{took}: {}\n", short!(SyncRunState, r.state, "SYNC_RUN_STATE_"), r.name);
    out.push_str(&details(&[
        ("listed", r.listed.to_string()),
        ("added", r.added.to_string()),
        ("updated", r.updated.to_string()),
        ("unchanged", r.unchanged.to_string()),
        ("failed", r.failed.to_string()),
        ("error", r.error.clone()),
    ]));
    if !r.warnings.is_empty() {
        out.push_str(&format!("warnings ({}):\n", r.warnings.len()));
        for w in &r.warnings {
            out.push_str(&format!("  {}: {}\n", printable(&w.aws_key), printable(&w.message)));
        }
    }
    out
}
