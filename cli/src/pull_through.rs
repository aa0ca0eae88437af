//! `pulpish pull-through remote|distribution ...`: pull-through caching, set up the way the
//! container remote and distribution commands set up a sync.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use crate::client::{Api, CliError};
use crate::commands::{follow, list_path};
use crate::output::{self, Format};

const REMOTES: &str = "remotes/container/pull-through/";
const DISTS: &str = "distributions/container/pull-through/";

#[derive(Subcommand)]
pub enum PullThroughCommand {
    /// Pull-through remotes: an upstream registry whose repositories are fetched when pulled.
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Pull-through distributions: serve a pull-through remote at /v2/<base-path>/<upstream repository>.
    #[command(subcommand)]
    Distribution(DistributionCommand),
}

#[derive(Args, Default)]
pub struct RemoteFields {
    /// Upstream registry URL, e.g. https://registry-1.docker.io
    #[arg(long)]
    url: Option<String>,
    /// on_demand (default) | streamed
    #[arg(long)]
    policy: Option<String>,
    /// Comma-separated wildcards of upstream repositories that may be pulled (e.g. 'library/*')
    #[arg(long, value_delimiter = ',')]
    includes: Option<Vec<String>>,
    /// Comma-separated wildcards of upstream repositories that may not be pulled
    #[arg(long, value_delimiter = ',')]
    excludes: Option<Vec<String>>,
    /// Seconds a pulled tag is served before it is checked upstream again (0: every pull; default 300)
    #[arg(long, value_name = "SECONDS")]
    tag_ttl: Option<u32>,
    /// Retry a failed on-demand download in the background (true/false; default false)
    #[arg(long)]
    retry_in_background: Option<bool>,
    /// Start fetching an image's blobs when a client GETs its manifest (true/false; default true, false with streamed)
    #[arg(long)]
    prefetch: Option<bool>,
    /// The upstream's user name (`--username` is the pulpish server's)
    #[arg(long)]
    upstream_username: Option<String>,
    /// The upstream's password (write-only; `--password` is the pulpish server's)
    #[arg(long)]
    upstream_password: Option<String>,
    /// Verify the upstream's TLS certificate (true/false)
    #[arg(long)]
    tls_validation: Option<bool>,
}

impl RemoteFields {
    fn body(self) -> Map<String, Value> {
        let fields = [
            ("url", self.url.map(Value::from)),
            ("policy", self.policy.map(Value::from)),
            ("includes", self.includes.map(|t| json!(t))),
            ("excludes", self.excludes.map(|t| json!(t))),
            ("tag_ttl", self.tag_ttl.map(Value::from)),
            ("retry_in_background", self.retry_in_background.map(Value::from)),
            ("prefetch", self.prefetch.map(Value::from)),
            ("username", self.upstream_username.map(Value::from)),
            ("password", self.upstream_password.map(Value::from)),
            ("tls_validation", self.tls_validation.map(Value::from)),
        ];
        fields.into_iter().filter_map(|(k, v)| Some((k.to_string(), v?))).collect()
    }
}

#[derive(Subcommand)]
pub enum RemoteCommand {
    /// Create a pull-through remote.
    #[command(after_help = "Example:\n  pulpish pull-through remote create --name docker-cache --url https://registry-1.docker.io \\\n    --includes 'library/*' --tag-ttl 600")]
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        fields: RemoteFields,
    },
    /// List pull-through remotes.
    #[command(after_help = "Example:\n  pulpish pull-through remote list")]
    List {
        #[arg(long)]
        name_contains: Option<String>,
    },
    /// Show one pull-through remote.
    #[command(after_help = "Example:\n  pulpish pull-through remote show --name docker-cache")]
    Show {
        #[arg(long)]
        name: String,
    },
    /// Change a pull-through remote and the remotes it made (waits for the task).
    #[command(after_help = "Example:\n  pulpish pull-through remote update --name docker-cache --excludes 'private/*'")]
    Update {
        #[arg(long)]
        name: String,
        /// Rename it.
        #[arg(long)]
        new_name: Option<String>,
        #[command(flatten)]
        fields: RemoteFields,
        #[arg(long)]
        background: bool,
    },
    /// Delete a pull-through remote (waits for the task).
    #[command(after_help = "Example:\n  pulpish pull-through remote delete --name docker-cache")]
    Delete {
        #[arg(long)]
        name: String,
        #[arg(long)]
        background: bool,
    },
}

#[derive(Subcommand)]
pub enum DistributionCommand {
    /// Serve a pull-through remote at /v2/<base-path>/<upstream repository> (waits for the task).
    #[command(after_help = "Example:\n  pulpish pull-through distribution create --name docker-cache --base-path docker-cache --remote docker-cache")]
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        base_path: String,
        /// Name of the pull-through remote.
        #[arg(long)]
        remote: String,
        /// Need credentials to pull.
        #[arg(long)]
        private: bool,
        #[arg(long)]
        background: bool,
    },
    /// List pull-through distributions.
    #[command(after_help = "Example:\n  pulpish pull-through distribution list")]
    List {
        #[arg(long)]
        name_contains: Option<String>,
    },
    /// Show one pull-through distribution and the distributions it made.
    #[command(after_help = "Example:\n  pulpish pull-through distribution show --name docker-cache")]
    Show {
        #[arg(long)]
        name: String,
    },
    /// Change a pull-through distribution (waits for the task).
    #[command(after_help = "Example:\n  pulpish pull-through distribution update --name docker-cache --private true")]
    Update {
        #[arg(long)]
        name: String,
        #[arg(long)]
        base_path: Option<String>,
        /// Name of the pull-through remote.
        #[arg(long)]
        remote: Option<String>,
        #[arg(long)]
        private: Option<bool>,
        #[arg(long)]
        background: bool,
    },
    /// Delete a pull-through distribution (waits for the task).
    #[command(after_help = "Example:\n  pulpish pull-through distribution delete --name docker-cache")]
    Delete {
        #[arg(long)]
        name: String,
        #[arg(long)]
        background: bool,
    },
}

const REMOTE: &str = "pull-through remote";
const DISTRIBUTION: &str = "pull-through distribution";

pub fn run(api: &Api, format: Format, c: PullThroughCommand) -> Result<(), CliError> {
    match c {
        PullThroughCommand::Remote(c) => remote(api, format, c),
        PullThroughCommand::Distribution(c) => distribution(api, format, c),
    }
}

fn remote(api: &Api, format: Format, c: RemoteCommand) -> Result<(), CliError> {
    match c {
        RemoteCommand::Create { name, fields } => {
            let mut body = fields.body();
            body.insert("name".into(), name.clone().into());
            let r = api.post(REMOTES, &Value::Object(body))?;
            output::done(format, &format!("Created {REMOTE} '{name}' ({})", r["pulp_href"].as_str().unwrap_or("")), &r);
        }
        RemoteCommand::List { name_contains } => {
            let items = api.list_all(&list_path(REMOTES, name_contains))?;
            output::list(format, &items, &["name", "url", "policy", "includes", "excludes", "tag_ttl"]);
        }
        RemoteCommand::Show { name } => output::show(format, &api.find(REMOTES, REMOTE, &name)?),
        RemoteCommand::Update { name, new_name, fields, background } => {
            let mut body = fields.body();
            if let Some(n) = new_name {
                body.insert("name".into(), n.into());
            }
            update(api, format, (REMOTES, REMOTE), &name, body, background)?;
        }
        RemoteCommand::Delete { name, background } => delete(api, format, (REMOTES, REMOTE), &name, background)?,
    }
    Ok(())
}

fn distribution(api: &Api, format: Format, c: DistributionCommand) -> Result<(), CliError> {
    match c {
        DistributionCommand::Create { name, base_path, remote, private, background } => {
            let body = json!({
                "name": name,
                "base_path": base_path,
                "remote": api.href_of(REMOTES, REMOTE, &remote)?,
                "private": private,
            });
            let answer = api.post(DISTS, &body)?;
            let server = api.server.trim_start_matches("http://").trim_start_matches("https://").to_string();
            let message = format!("Created {DISTRIBUTION} '{name}': pull from {server}/{base_path}/<upstream repository>");
            follow(api, format, answer, background, &message)?;
        }
        DistributionCommand::List { name_contains } => {
            let items = api.list_all(&list_path(DISTS, name_contains))?;
            output::list(format, &items, &["name", "base_path", "remote", "private", "distributions"]);
        }
        DistributionCommand::Show { name } => output::show(format, &api.find(DISTS, DISTRIBUTION, &name)?),
        DistributionCommand::Update { name, base_path, remote, private, background } => {
            let mut body = Map::new();
            if let Some(b) = base_path {
                body.insert("base_path".into(), b.into());
            }
            if let Some(r) = remote {
                body.insert("remote".into(), api.href_of(REMOTES, REMOTE, &r)?.into());
            }
            if let Some(p) = private {
                body.insert("private".into(), p.into());
            }
            update(api, format, (DISTS, DISTRIBUTION), &name, body, background)?;
        }
        DistributionCommand::Delete { name, background } => delete(api, format, (DISTS, DISTRIBUTION), &name, background)?,
    }
    Ok(())
}

/// PATCHes the object named `name` in the list `(path, noun)` and follows the task.
fn update(api: &Api, format: Format, (list, noun): (&str, &str), name: &str, body: Map<String, Value>, background: bool) -> Result<(), CliError> {
    let href = api.href_of(list, noun, name)?;
    follow(api, format, api.patch(&href, &Value::Object(body))?, background, &format!("Updated {noun} '{name}'"))?;
    Ok(())
}

fn delete(api: &Api, format: Format, (list, noun): (&str, &str), name: &str, background: bool) -> Result<(), CliError> {
    let href = api.href_of(list, noun, name)?;
    follow(api, format, api.delete(&href)?, background, &format!("Deleted {noun} '{name}'"))?;
    Ok(())
}
