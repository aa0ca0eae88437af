//! Each client command: build the request from names, call the API, wait for tasks, print.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use crate::client::{encode, task_href, wait_task, Api, CliError};
use crate::output::{self, Format};
use crate::profile::{self, Profile};
use crate::Connection;

pub(crate) const REMOTES: &str = "remotes/container/container/";
pub(crate) const REPOS: &str = "repositories/container/container/";
const DISTS: &str = "distributions/container/container/";

#[derive(Subcommand)]
pub enum Command {
    /// Show the server's status (versions, database, free storage).
    #[command(after_help = "Example:\n  pulpish status")]
    Status,
    /// Save the server and credentials to ~/.config/pulpish/cli.toml.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Remotes: where and how to fetch from an upstream registry.
    #[command(subcommand)]
    Remote(RemoteCommand),
    /// Repositories: versioned sets of tags, manifests and blobs; sync them from a remote.
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Distributions: serve a repository at /v2/<base-path>.
    #[command(subcommand)]
    Distribution(DistributionCommand),
    /// Pull-through caching: serve any repository of an upstream registry, fetched when pulled.
    #[command(subcommand)]
    PullThrough(crate::pull_through::PullThroughCommand),
    /// Content in a repository version.
    #[command(subcommand)]
    Content(ContentCommand),
    /// Background tasks: list, follow, cancel.
    #[command(subcommand)]
    Task(TaskCommand),
    /// Sync schedules: sync a repository every interval, backing off after failures.
    #[command(subcommand)]
    Schedule(crate::schedule::ScheduleCommand),
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Write the profile from --server/--username/--password (or their PULPISH_* variables).
    #[command(after_help = "Example:\n  pulpish --server http://registry.example:24817 --password s3cret config create")]
    Create {
        /// Replace an existing profile.
        #[arg(long)]
        overwrite: bool,
    },
}

#[derive(Args, Default)]
pub struct RemoteFields {
    /// Upstream registry URL, e.g. https://registry-1.docker.io
    #[arg(long)]
    url: Option<String>,
    /// Repository on the upstream, e.g. library/busybox
    #[arg(long)]
    upstream_name: Option<String>,
    /// immediate | on_demand | streamed
    #[arg(long)]
    policy: Option<String>,
    /// Comma-separated tag wildcards to sync (e.g. 'latest,1.*')
    #[arg(long, value_delimiter = ',')]
    include_tags: Option<Vec<String>>,
    /// Comma-separated tag wildcards to leave out
    #[arg(long, value_delimiter = ',')]
    exclude_tags: Option<Vec<String>>,
    /// The upstream's user name (`--username` is who logs in to pulpish)
    #[arg(long)]
    upstream_username: Option<String>,
    /// The upstream's password (`--password` is the pulpish login's)
    #[arg(long)]
    upstream_password: Option<String>,
    /// Verify the upstream's TLS certificate (true/false)
    #[arg(long)]
    tls_validation: Option<bool>,
    /// Also sync what refers to each synced image: signatures, attestations, SBOMs (true/false; default true)
    #[arg(long)]
    include_referrers: Option<bool>,
    #[arg(long)]
    download_concurrency: Option<u32>,
    /// Retry a failed on-demand download in the background (5xx, 429, timeouts), so the next client finds the blob stored (true/false; default false)
    #[arg(long)]
    retry_in_background: Option<bool>,
    /// Start fetching an image's blobs when a client GETs its manifest (true/false; default true, false with streamed)
    #[arg(long)]
    prefetch: Option<bool>,
}

impl RemoteFields {
    fn body(self) -> Map<String, Value> {
        let mut m = Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                m.insert(k.into(), v);
            }
        };
        put("url", self.url.map(Value::from));
        put("upstream_name", self.upstream_name.map(Value::from));
        put("policy", self.policy.map(Value::from));
        put("include_tags", self.include_tags.map(|t| json!(t)));
        put("exclude_tags", self.exclude_tags.map(|t| json!(t)));
        put("username", self.upstream_username.map(Value::from));
        put("password", self.upstream_password.map(Value::from));
        put("tls_validation", self.tls_validation.map(Value::from));
        put("include_referrers", self.include_referrers.map(Value::from));
        put("download_concurrency", self.download_concurrency.map(Value::from));
        put("retry_in_background", self.retry_in_background.map(Value::from));
        put("prefetch", self.prefetch.map(Value::from));
        m
    }
}

#[derive(Subcommand)]
pub enum RemoteCommand {
    /// Create a remote.
    #[command(after_help = "Example:\n  pulpish remote create --name busybox --url https://registry-1.docker.io \\\n    --upstream-name library/busybox --policy on_demand")]
    Create {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        fields: RemoteFields,
    },
    /// List remotes.
    #[command(after_help = "Example:\n  pulpish remote list --name-contains busy")]
    List {
        #[arg(long)]
        name_contains: Option<String>,
    },
    /// Show one remote.
    #[command(after_help = "Example:\n  pulpish remote show --name busybox")]
    Show {
        #[arg(long)]
        name: String,
    },
    /// Change a remote's fields (waits for the task).
    #[command(after_help = "Example:\n  pulpish remote update --name busybox --policy streamed --include-tags 'latest,1.*'")]
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
    /// Delete a remote (waits for the task).
    #[command(after_help = "Example:\n  pulpish remote delete --name busybox")]
    Delete {
        #[arg(long)]
        name: String,
        #[arg(long)]
        background: bool,
    },
}

#[derive(Subcommand)]
pub enum RepoCommand {
    /// Create a repository.
    #[command(after_help = "Example:\n  pulpish repo create --name busybox --remote busybox")]
    Create {
        #[arg(long)]
        name: String,
        /// Name of the remote a sync uses by default.
        #[arg(long)]
        remote: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// List repositories.
    #[command(after_help = "Example:\n  pulpish repo list")]
    List {
        #[arg(long)]
        name_contains: Option<String>,
    },
    /// Show one repository.
    #[command(after_help = "Example:\n  pulpish repo show --name busybox")]
    Show {
        #[arg(long)]
        name: String,
    },
    /// Change a repository (waits for the task).
    #[command(after_help = "Example:\n  pulpish repo update --name busybox --remote other-remote")]
    Update {
        #[arg(long)]
        name: String,
        #[arg(long)]
        new_name: Option<String>,
        /// Name of the default remote ('' to clear it).
        #[arg(long)]
        remote: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        background: bool,
    },
    /// Delete a repository and its versions (waits for the task).
    #[command(after_help = "Example:\n  pulpish repo delete --name busybox")]
    Delete {
        #[arg(long)]
        name: String,
        #[arg(long)]
        background: bool,
    },
    /// Sync from a remote into a new version, with a progress bar; with --every, on a schedule.
    #[command(after_help = "Example:\n  pulpish repo sync --name busybox --mirror\n  pulpish repo sync --name busybox --remote other --background\n  pulpish repo sync --name busybox --every 1h")]
    Sync {
        #[arg(long)]
        name: String,
        /// Remote name (default: the repository's own).
        #[arg(long)]
        remote: Option<String>,
        /// Remove what the upstream no longer has.
        #[arg(long)]
        mirror: bool,
        /// Print the task and return at once.
        #[arg(long)]
        background: bool,
        /// Sync every DURATION (30s, 5m, 1h, 2d or seconds) instead of once: creates or updates
        /// the repository's sync schedule (see `pulpish schedule`).
        #[arg(long, value_parser = crate::schedule::parse_every, value_name = "DURATION", conflicts_with = "background")]
        every: Option<u64>,
    },
    /// List a repository's versions with their content counts.
    #[command(after_help = "Example:\n  pulpish repo versions --name busybox")]
    Versions {
        #[arg(long)]
        name: String,
    },
}

#[derive(Subcommand)]
pub enum DistributionCommand {
    /// Serve a repository at /v2/<base-path> (waits for the task).
    #[command(after_help = "Example:\n  pulpish distribution create --name busybox --base-path library/busybox --repository busybox")]
    Create {
        #[arg(long)]
        name: String,
        #[arg(long)]
        base_path: String,
        /// Repository name: serve its latest version (or --version).
        #[arg(long)]
        repository: Option<String>,
        /// Pin this version number of --repository.
        #[arg(long, requires = "repository")]
        version: Option<i64>,
        /// Need credentials to pull.
        #[arg(long)]
        private: bool,
        #[arg(long)]
        background: bool,
    },
    /// List distributions.
    #[command(after_help = "Example:\n  pulpish distribution list")]
    List {
        #[arg(long)]
        name_contains: Option<String>,
    },
    /// Show one distribution.
    #[command(after_help = "Example:\n  pulpish distribution show --name busybox")]
    Show {
        #[arg(long)]
        name: String,
    },
    /// Change a distribution (waits for the task).
    #[command(after_help = "Example:\n  pulpish distribution update --name busybox --repository busybox --version 3")]
    Update {
        #[arg(long)]
        name: String,
        #[arg(long)]
        base_path: Option<String>,
        #[arg(long)]
        repository: Option<String>,
        #[arg(long, requires = "repository")]
        version: Option<i64>,
        #[arg(long)]
        private: Option<bool>,
        #[arg(long)]
        background: bool,
    },
    /// Delete a distribution (waits for the task).
    #[command(after_help = "Example:\n  pulpish distribution delete --name busybox")]
    Delete {
        #[arg(long)]
        name: String,
        #[arg(long)]
        background: bool,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ContentType {
    Tag,
    Manifest,
    Blob,
}

#[derive(Subcommand)]
pub enum ContentCommand {
    /// List the content of a repository's latest (or given) version.
    #[command(after_help = "Example:\n  pulpish content list --repo busybox --type blob")]
    List {
        #[arg(long)]
        repo: String,
        #[arg(long = "type", value_enum, default_value = "tag")]
        kind: ContentType,
        /// Version number (default: latest).
        #[arg(long)]
        version: Option<i64>,
    },
}

#[derive(Subcommand)]
pub enum TaskCommand {
    /// List tasks, newest first.
    #[command(after_help = "Example:\n  pulpish task list --state running")]
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show a task (id or href).
    #[command(after_help = "Example:\n  pulpish task show 0b4f...")]
    Show { task: String },
    /// Wait for a task to finish, with its progress.
    #[command(after_help = "Example:\n  pulpish task wait /pulp/api/v3/tasks/0b4f.../")]
    Wait { task: String },
    /// Cancel a waiting or running task.
    #[command(after_help = "Example:\n  pulpish task cancel 0b4f...")]
    Cancel { task: String },
}

fn connect(conn: &Connection) -> Result<Api, CliError> {
    let p = profile::load().map_err(CliError::Other)?;
    let server = conn.server.clone().or(p.server).unwrap_or_else(|| "http://127.0.0.1:24817".into());
    let username = conn.username.clone().or(p.username).unwrap_or_else(|| "admin".into());
    Ok(Api::new(&server, &username, conn.password.clone().or(p.password)))
}

/// Starts a task-answered request; waits (with progress) unless `background`.
pub(crate) fn follow(api: &Api, format: Format, answer: Value, background: bool, message: &str) -> Result<Value, CliError> {
    let href = answer["task"].as_str().unwrap_or_default().to_string();
    if background {
        output::done(format, &format!("Started task {href}"), &answer);
        return Ok(answer);
    }
    let task = wait_task(api, &href, format == Format::Table)?;
    output::done(format, message, &task);
    Ok(task)
}

pub fn run(command: Command, conn: &Connection, format: Format) -> Result<(), CliError> {
    if let Command::Config(ConfigCommand::Create { overwrite }) = command {
        if profile::path().exists() && !overwrite {
            return Err(CliError::Other(format!("{} exists; pass --overwrite to replace it", profile::path().display())));
        }
        let saved = profile::save(&Profile { server: conn.server.clone(), username: conn.username.clone(), password: conn.password.clone() })
            .map_err(CliError::Other)?;
        println!("Saved {}", saved.display());
        return Ok(());
    }
    let api = connect(conn)?;
    match command {
        Command::Status => {
            let s = api.get("status/")?;
            match format {
                Format::Json => output::show(format, &s),
                Format::Table => {
                    println!("server:    {}", api.server);
                    println!("version:   {}", s["versions"][0]["version"].as_str().unwrap_or("?"));
                    println!("database:  {} ({})", s["database_connection"]["backend"].as_str().unwrap_or("?"), if s["database_connection"]["connected"] == true { "connected" } else { "NOT connected" });
                    println!("storage:   {} bytes free", s["storage"]["free"]);
                    println!("workers:   {}", s["online_workers"]);
                }
            }
        }
        Command::Config(_) => unreachable!("handled above"),
        Command::Remote(c) => remote(&api, format, c)?,
        Command::Repo(c) => repo(&api, format, c)?,
        Command::Distribution(c) => distribution(&api, format, c)?,
        Command::PullThrough(c) => crate::pull_through::run(&api, format, c)?,
        Command::Content(c) => content(&api, format, c)?,
        Command::Task(c) => task(&api, format, c)?,
        Command::Schedule(c) => crate::schedule::run(&api, format, c)?,
    }
    Ok(())
}

pub(crate) fn list_path(list: &str, name_contains: Option<String>) -> String {
    match name_contains {
        Some(n) => format!("{list}?name__contains={}", encode(&n)),
        None => list.to_string(),
    }
}

fn remote(api: &Api, format: Format, c: RemoteCommand) -> Result<(), CliError> {
    match c {
        RemoteCommand::Create { name, fields } => {
            let mut body = fields.body();
            body.insert("name".into(), name.clone().into());
            let r = api.post(REMOTES, &Value::Object(body))?;
            output::done(format, &format!("Created remote '{name}' ({})", r["pulp_href"].as_str().unwrap_or("")), &r);
        }
        RemoteCommand::List { name_contains } => {
            let items = api.list_all(&list_path(REMOTES, name_contains))?;
            output::list(format, &items, &["name", "url", "upstream_name", "policy", "include_tags"]);
        }
        RemoteCommand::Show { name } => output::show(format, &api.find(REMOTES, "remote", &name)?),
        RemoteCommand::Update { name, new_name, fields, background } => {
            let href = api.href_of(REMOTES, "remote", &name)?;
            let mut body = fields.body();
            if let Some(n) = new_name {
                body.insert("name".into(), n.into());
            }
            let answer = api.patch(&href, &Value::Object(body))?;
            follow(api, format, answer, background, &format!("Updated remote '{name}'"))?;
        }
        RemoteCommand::Delete { name, background } => {
            let href = api.href_of(REMOTES, "remote", &name)?;
            follow(api, format, api.delete(&href)?, background, &format!("Deleted remote '{name}'"))?;
        }
    }
    Ok(())
}

fn repo(api: &Api, format: Format, c: RepoCommand) -> Result<(), CliError> {
    match c {
        RepoCommand::Create { name, remote, description } => {
            let mut body = json!({"name": name, "description": description});
            if let Some(r) = remote {
                body["remote"] = api.href_of(REMOTES, "remote", &r)?.into();
            }
            let r = api.post(REPOS, &body)?;
            output::done(format, &format!("Created repository '{name}' ({})", r["pulp_href"].as_str().unwrap_or("")), &r);
        }
        RepoCommand::List { name_contains } => {
            let items = api.list_all(&list_path(REPOS, name_contains))?;
            output::list(format, &items, &["name", "remote", "latest_version_href", "description"]);
        }
        RepoCommand::Show { name } => output::show(format, &api.find(REPOS, "repository", &name)?),
        RepoCommand::Update { name, new_name, remote, description, background } => {
            let href = api.href_of(REPOS, "repository", &name)?;
            let mut body = Map::new();
            if let Some(n) = new_name {
                body.insert("name".into(), n.into());
            }
            if let Some(d) = description {
                body.insert("description".into(), d.into());
            }
            if let Some(r) = remote {
                let v = if r.is_empty() { Value::Null } else { api.href_of(REMOTES, "remote", &r)?.into() };
                body.insert("remote".into(), v);
            }
            follow(api, format, api.patch(&href, &Value::Object(body))?, background, &format!("Updated repository '{name}'"))?;
        }
        RepoCommand::Delete { name, background } => {
            let href = api.href_of(REPOS, "repository", &name)?;
            follow(api, format, api.delete(&href)?, background, &format!("Deleted repository '{name}'"))?;
        }
        RepoCommand::Sync { name, remote, mirror, every: Some(every), .. } => crate::schedule::sync_every(api, format, &name, remote, mirror, every)?,
        RepoCommand::Sync { name, remote, mirror, background, every: None } => {
            let href = api.href_of(REPOS, "repository", &name)?;
            let mut body = json!({"mirror": mirror});
            if let Some(r) = remote {
                body["remote"] = api.href_of(REMOTES, "remote", &r)?.into();
            }
            let answer = api.post(&format!("{href}sync/"), &body)?;
            let task = follow(api, format, answer, background, "")?;
            if !background && format == Format::Table {
                match task["created_resources"].as_array().and_then(|c| c.first()).and_then(Value::as_str) {
                    Some(v) => println!("Sync of '{name}' completed: new version {v}"),
                    None => println!("Sync of '{name}' completed: no changes, no new version"),
                }
            }
        }
        RepoCommand::Versions { name } => {
            let href = api.href_of(REPOS, "repository", &name)?;
            let items = api.list_all(&format!("{href}versions/"))?;
            if format == Format::Json {
                output::list(format, &items, &[]);
                return Ok(());
            }
            let rows: Vec<Value> = items
                .iter()
                .map(|v| {
                    let present = &v["content_summary"]["present"];
                    json!({
                        "number": v["number"],
                        "created": v["pulp_created"],
                        "tags": present["container.tag"]["count"].as_i64().unwrap_or(0),
                        "manifests": present["container.manifest"]["count"].as_i64().unwrap_or(0),
                        "blobs": present["container.blob"]["count"].as_i64().unwrap_or(0),
                    })
                })
                .collect();
            output::list(format, &rows, &["number", "created", "tags", "manifests", "blobs"]);
        }
    }
    Ok(())
}

/// `repository` / `repository_version` fields from a repository name and optional version.
fn served(api: &Api, repository: Option<String>, version: Option<i64>) -> Result<Map<String, Value>, CliError> {
    let mut m = Map::new();
    if let Some(r) = repository {
        let href = api.href_of(REPOS, "repository", &r)?;
        match version {
            Some(n) => {
                m.insert("repository_version".into(), format!("{href}versions/{n}/").into());
                m.insert("repository".into(), Value::Null);
            }
            None => {
                m.insert("repository".into(), href.into());
                m.insert("repository_version".into(), Value::Null);
            }
        }
    }
    Ok(m)
}

fn distribution(api: &Api, format: Format, c: DistributionCommand) -> Result<(), CliError> {
    match c {
        DistributionCommand::Create { name, base_path, repository, version, private, background } => {
            let mut body = served(api, repository, version)?;
            body.insert("name".into(), name.clone().into());
            body.insert("base_path".into(), base_path.clone().into());
            body.insert("private".into(), private.into());
            let answer = api.post(DISTS, &Value::Object(body))?;
            let server = api.server.trim_start_matches("http://").trim_start_matches("https://").to_string();
            follow(api, format, answer, background, &format!("Created distribution '{name}': pull from {server}/{base_path}"))?;
        }
        DistributionCommand::List { name_contains } => {
            let items = api.list_all(&list_path(DISTS, name_contains))?;
            output::list(format, &items, &["name", "base_path", "repository", "repository_version", "private"]);
        }
        DistributionCommand::Show { name } => output::show(format, &api.find(DISTS, "distribution", &name)?),
        DistributionCommand::Update { name, base_path, repository, version, private, background } => {
            let href = api.href_of(DISTS, "distribution", &name)?;
            let mut body = served(api, repository, version)?;
            if let Some(b) = base_path {
                body.insert("base_path".into(), b.into());
            }
            if let Some(p) = private {
                body.insert("private".into(), p.into());
            }
            follow(api, format, api.patch(&href, &Value::Object(body))?, background, &format!("Updated distribution '{name}'"))?;
        }
        DistributionCommand::Delete { name, background } => {
            let href = api.href_of(DISTS, "distribution", &name)?;
            follow(api, format, api.delete(&href)?, background, &format!("Deleted distribution '{name}'"))?;
        }
    }
    Ok(())
}

fn content(api: &Api, format: Format, c: ContentCommand) -> Result<(), CliError> {
    let ContentCommand::List { repo, kind, version } = c;
    let r = api.find(REPOS, "repository", &repo)?;
    let version_href = match version {
        Some(n) => format!("{}versions/{n}/", r["pulp_href"].as_str().unwrap_or_default()),
        None => r["latest_version_href"].as_str().unwrap_or_default().to_string(),
    };
    let (path, columns): (&str, &[&str]) = match kind {
        ContentType::Tag => ("content/container/tags/", &["name", "tagged_manifest"]),
        ContentType::Manifest => ("content/container/manifests/", &["digest", "media_type", "listed_manifests"]),
        ContentType::Blob => ("content/container/blobs/", &["digest", "artifact"]),
    };
    let mut items = api.list_all(&format!("{path}?repository_version={}", encode(&version_href)))?;
    if let ContentType::Tag = kind {
        // Show the digest a tag points to rather than an href.
        for item in &mut items {
            if let Some(href) = item["tagged_manifest"].as_str().map(str::to_string) {
                if let Ok(m) = api.get(&href) {
                    item["tagged_manifest"] = m["digest"].clone();
                }
            }
        }
    }
    if let ContentType::Blob = kind {
        for item in &mut items {
            if item["artifact"].is_null() && format == Format::Table {
                item["artifact"] = "(on demand: not downloaded yet)".into();
            }
        }
    }
    output::list(format, &items, columns);
    Ok(())
}

fn task(api: &Api, format: Format, c: TaskCommand) -> Result<(), CliError> {
    match c {
        TaskCommand::List { state, limit } => {
            let mut path = format!("tasks/?limit={limit}");
            if let Some(s) = state {
                path.push_str(&format!("&state={}", encode(&s)));
            }
            let page = api.get(&path)?;
            let items = page["results"].as_array().cloned().unwrap_or_default();
            output::list(format, &items, &["pulp_href", "name", "state", "pulp_created", "error.description"]);
        }
        TaskCommand::Show { task } => output::show(format, &api.get(&task_href(&task))?),
        TaskCommand::Wait { task } => {
            let t = wait_task(api, &task_href(&task), format == Format::Table)?;
            output::done(format, &format!("Task {} completed", t["pulp_href"].as_str().unwrap_or("")), &t);
        }
        TaskCommand::Cancel { task } => {
            let t = api.patch(&task_href(&task), &json!({"state": "canceled"}))?;
            output::done(format, &format!("Task {} is {}", t["pulp_href"].as_str().unwrap_or(""), t["state"].as_str().unwrap_or("")), &t);
        }
    }
    Ok(())
}
