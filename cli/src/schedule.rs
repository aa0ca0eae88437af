//! `pulpish schedule ...` and `pulpish repo sync --every`: a repository's sync schedule, found
//! by the repository's name.

use clap::Subcommand;
use serde_json::{json, Map, Value};

use crate::client::{encode, Api, CliError};
use crate::commands::{REMOTES, REPOS};
use crate::output::{self, Format};

const SCHEDULES: &str = "sync-schedules/";

#[derive(Subcommand)]
pub enum ScheduleCommand {
    /// List sync schedules with their next run and backoff.
    #[command(after_help = "Example:\n  pulpish schedule list")]
    List,
    /// Show a repository's sync schedule: next run, last task, failures, current backoff.
    #[command(after_help = "Example:\n  pulpish schedule show --repo busybox")]
    Show {
        #[arg(long)]
        repo: String,
    },
    /// Change a repository's sync schedule.
    #[command(after_help = "Example:\n  pulpish schedule update --repo busybox --every 6h\n  pulpish schedule update --repo busybox --enabled false")]
    Update {
        #[arg(long)]
        repo: String,
        /// Time between syncs: 30s, 5m, 1h, 2d, 1h30m, or seconds.
        #[arg(long, value_parser = parse_every, value_name = "DURATION")]
        every: Option<u64>,
        /// Run the schedule (true) or pause it (false).
        #[arg(long)]
        enabled: Option<bool>,
        /// Remote name to sync from.
        #[arg(long)]
        remote: Option<String>,
        /// Remove what the upstream no longer has (true/false).
        #[arg(long)]
        mirror: Option<bool>,
    },
    /// Delete a repository's sync schedule.
    #[command(after_help = "Example:\n  pulpish schedule delete --repo busybox")]
    Delete {
        #[arg(long)]
        repo: String,
    },
}

/// `30s`, `5m`, `1h`, `2d`, `1h30m` (humantime) or plain seconds: whole seconds, at least 1.
pub fn parse_every(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let seconds = match text.parse::<u64>() {
        Ok(n) => n,
        Err(_) => {
            let d = humantime::parse_duration(text).map_err(|e| format!("{e} (e.g. 30s, 5m, 1h, 2d, or seconds)"))?;
            if d.subsec_nanos() != 0 {
                return Err("use whole seconds".into());
            }
            d.as_secs()
        }
    };
    if seconds == 0 {
        return Err("the interval must be at least 1 second".into());
    }
    Ok(seconds)
}

/// The schedule of the repository at `repo_href`, if it has one.
fn find(api: &Api, repo_href: &str) -> Result<Option<Value>, CliError> {
    let page = api.get(&format!("{SCHEDULES}?repository={}", encode(repo_href)))?;
    Ok(page["results"].as_array().and_then(|r| r.first().cloned()))
}

fn find_for(api: &Api, repo: &str) -> Result<Value, CliError> {
    let href = api.href_of(REPOS, "repository", repo)?;
    find(api, &href)?.ok_or_else(|| CliError::NotFound(format!("repository '{repo}' has no sync schedule")))
}

/// `repo sync --every`: creates the repository's schedule, or changes the one it has.
pub fn sync_every(api: &Api, format: Format, repo: &str, remote: Option<String>, mirror: bool, every: u64) -> Result<(), CliError> {
    let repo_href = api.href_of(REPOS, "repository", repo)?;
    let mut body = json!({"interval": every, "mirror": mirror, "enabled": true});
    if let Some(r) = remote {
        body["remote"] = api.href_of(REMOTES, "remote", &r)?.into();
    }
    let (schedule, verb) = match find(api, &repo_href)? {
        Some(existing) => (api.patch(existing["pulp_href"].as_str().unwrap_or_default(), &body)?, "Updated"),
        None => {
            body["repository"] = repo_href.into();
            (api.post(SCHEDULES, &body)?, "Created")
        }
    };
    if format == Format::Table {
        println!("{verb} the sync schedule of '{repo}': every {}", humantime::format_duration(std::time::Duration::from_secs(every)));
    }
    output::show(format, &schedule);
    Ok(())
}

pub fn run(api: &Api, format: Format, c: ScheduleCommand) -> Result<(), CliError> {
    match c {
        ScheduleCommand::List => {
            let mut items = api.list_all(SCHEDULES)?;
            if format == Format::Table {
                // Repository names rather than hrefs.
                for item in &mut items {
                    if let Some(href) = item["repository"].as_str().map(str::to_string) {
                        if let Ok(r) = api.get(&href) {
                            item["repository"] = r["name"].clone();
                        }
                    }
                }
            }
            output::list(format, &items, &["repository", "interval", "enabled", "next_run", "failures", "current_backoff", "last_task"]);
        }
        ScheduleCommand::Show { repo } => output::show(format, &find_for(api, &repo)?),
        ScheduleCommand::Update { repo, every, enabled, remote, mirror } => {
            let href = find_for(api, &repo)?["pulp_href"].as_str().unwrap_or_default().to_string();
            let mut body = Map::new();
            if let Some(n) = every {
                body.insert("interval".into(), n.into());
            }
            if let Some(e) = enabled {
                body.insert("enabled".into(), e.into());
            }
            if let Some(m) = mirror {
                body.insert("mirror".into(), m.into());
            }
            if let Some(r) = remote {
                body.insert("remote".into(), api.href_of(REMOTES, "remote", &r)?.into());
            }
            let schedule = api.patch(&href, &Value::Object(body))?;
            output::done(format, &format!("Updated the sync schedule of '{repo}'"), &schedule);
        }
        ScheduleCommand::Delete { repo } => {
            let href = find_for(api, &repo)?["pulp_href"].as_str().unwrap_or_default().to_string();
            api.delete(&href)?;
            output::done(format, &format!("Deleted the sync schedule of '{repo}'"), &json!({"deleted": href}));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_every;

    #[test]
    fn durations_and_seconds() {
        assert_eq!(parse_every("30s"), Ok(30));
        assert_eq!(parse_every("5m"), Ok(300));
        assert_eq!(parse_every("1h"), Ok(3600));
        assert_eq!(parse_every("2d"), Ok(172_800));
        assert_eq!(parse_every("1h30m"), Ok(5400));
        assert_eq!(parse_every("45"), Ok(45));
        assert!(parse_every("0").is_err());
        assert!(parse_every("1.5s").is_err());
        assert!(parse_every("soon").is_err());
    }
}
