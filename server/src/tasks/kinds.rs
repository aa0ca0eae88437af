//! Every kind of task, by name. Request handlers validate and enqueue; these apply.

use std::time::Duration;

use serde_json::Value;

use super::{TaskContext, TaskError, TaskResult};
use crate::api::hrefs;
use crate::db::{is_unique_violation, DbError};
use crate::models::labels::Labelled;
use crate::models::{distribution, remote, repository};

pub const REMOTE_UPDATE: &str = "pulpish.remote.update";
pub const REMOTE_DELETE: &str = "pulpish.remote.delete";
pub const REPOSITORY_UPDATE: &str = "pulpish.repository.update";
pub const REPOSITORY_DELETE: &str = "pulpish.repository.delete";
pub const DISTRIBUTION_CREATE: &str = "pulpish.distribution.create";
pub const DISTRIBUTION_UPDATE: &str = "pulpish.distribution.update";
pub const DISTRIBUTION_DELETE: &str = "pulpish.distribution.delete";
/// Sleeps, reporting progress; for exercising the queue (not reachable over HTTP).
pub const DEBUG_SLEEP: &str = "pulpish.debug.sleep";

pub(super) async fn run(ctx: TaskContext, name: String, args: Value) -> TaskResult {
    match name.as_str() {
        REMOTE_UPDATE => {
            let applied = ctx
                .state
                .db
                .run(move |c| {
                    crate::db::write_transaction(c, |c| {
                        let mut row = match remote::Remote::from_task_args(c, &args) {
                            Ok(row) => row,
                            Err(message) => return Ok(Err(message)),
                        };
                        if let Some(current) = labels_to_keep(c, &args, Labelled::Remote, &row.id)? {
                            row.pulp_labels = current;
                        }
                        remote::update(c, &row)?;
                        // The remotes a pull-through remote made follow its settings.
                        if row.kind == remote::PULL_THROUGH {
                            for mut child in remote::made_for(c, &row.id)? {
                                if row.copy_settings_to(&mut child) {
                                    remote::update(c, &child)?;
                                }
                            }
                        }
                        Ok::<_, diesel::result::Error>(Ok(()))
                    })
                    .map_err(DbError::from)
                })
                .await
                .map_err(|e| match e {
                    DbError::Query(q) if is_unique_violation(&q) => TaskError::Failed("a remote with this name already exists".into()),
                    other => TaskError::Db(other),
                })?;
            applied.map_err(TaskError::Failed)?;
            Ok(vec![])
        }
        REMOTE_DELETE => {
            let id = string(&args["id"])?;
            write(&ctx, move |c| remote::delete(c, &id).map(|_| ()), "").await?;
            Ok(vec![])
        }
        REPOSITORY_UPDATE => {
            let mut row: repository::Repository = parse(&args["repository"])?;
            // A lowered retain_repo_versions applies at once, as the next version would apply it.
            let prune = move |c: &mut crate::db::DbConnection| {
                crate::db::write_transaction(c, |c| {
                    if let Some(current) = labels_to_keep(c, &args, Labelled::Repository, &row.id)? {
                        row.pulp_labels = current;
                    }
                    repository::update(c, &row)?;
                    repository::prune_versions(c, &row.id).map(|_| ())
                })
            };
            write(&ctx, prune, "a repository with this name already exists").await?;
            Ok(vec![])
        }
        REPOSITORY_DELETE => {
            let id = string(&args["id"])?;
            write(&ctx, move |c| repository::delete(c, &id).map(|_| ()), "").await?;
            Ok(vec![])
        }
        DISTRIBUTION_CREATE => {
            let row: distribution::Distribution = parse(&args["distribution"])?;
            let href = if row.kind == remote::PULL_THROUGH { hrefs::distribution_pull_through(&row.id) } else { hrefs::distribution(&row.id) };
            write(&ctx, move |c| distribution::insert(c, &row), "a distribution with this name or base_path already exists").await?;
            Ok(vec![href])
        }
        DISTRIBUTION_UPDATE => {
            let mut row: distribution::Distribution = parse(&args["distribution"])?;
            let update = move |c: &mut crate::db::DbConnection| {
                crate::db::write_transaction(c, |c| {
                    if let Some(current) = labels_to_keep(c, &args, Labelled::Distribution, &row.id)? {
                        row.pulp_labels = current;
                    }
                    distribution::update(c, &row)
                })
            };
            write(&ctx, update, "a distribution with this name or base_path already exists").await?;
            Ok(vec![])
        }
        DISTRIBUTION_DELETE => {
            let id = string(&args["id"])?;
            write(&ctx, move |c| distribution::delete(c, &id).map(|_| ()), "").await?;
            Ok(vec![])
        }
        crate::sync::TASK_NAME => crate::sync::run(ctx, parse(&args)?).await,
        super::versions::TAG | super::versions::UNTAG | super::versions::ADD | super::versions::REMOVE => {
            super::versions::change(ctx, parse(&args)?).await
        }
        super::versions::DELETE_VERSION => super::versions::delete_version(ctx, parse(&args)?).await,
        super::housekeeping::ORPHAN_CLEANUP => super::housekeeping::orphan_cleanup(ctx, parse(&args)?).await,
        super::housekeeping::PURGE => super::housekeeping::purge(ctx, parse(&args)?).await,
        DEBUG_SLEEP => {
            let seconds = args["seconds"].as_f64().unwrap_or(1.0);
            let steps = (seconds * 10.0).ceil().max(1.0) as u64;
            ctx.progress("debug.sleep", "Sleeping", Some(steps)).await?;
            for done in 1..=steps {
                tokio::time::sleep(Duration::from_millis(100)).await;
                ctx.advance("debug.sleep", done, done == steps).await?;
            }
            Ok(vec![])
        }
        other => Err(TaskError::Failed(format!("unknown task kind '{other}'"))),
    }
}

/// An update whose request did not name `pulp_labels` keeps the labels stored when it runs:
/// a `set_label/` since the request was made must not be undone by the request's older copy.
fn labels_to_keep(c: &mut crate::db::DbConnection, args: &Value, kind: Labelled, id: &str) -> diesel::QueryResult<Option<String>> {
    if args[super::KEEP_LABELS] != true {
        return Ok(None);
    }
    crate::models::labels::current(c, kind, id)
}

fn parse<T: serde::de::DeserializeOwned>(v: &Value) -> Result<T, TaskError> {
    serde_json::from_value(v.clone()).map_err(|e| TaskError::Failed(format!("malformed task arguments: {e}")))
}

fn string(v: &Value) -> Result<String, TaskError> {
    v.as_str().map(str::to_string).ok_or_else(|| TaskError::Failed("malformed task arguments".into()))
}

/// Runs one write; a unique-key clash (a name taken since the request was validated) fails
/// the task with `conflict` rather than a database message.
async fn write<F>(ctx: &TaskContext, f: F, conflict: &'static str) -> Result<(), TaskError>
where
    F: FnOnce(&mut crate::db::DbConnection) -> diesel::QueryResult<()> + Send + 'static,
{
    ctx.state
        .db
        .run(move |c| f(c).map_err(DbError::from))
        .await
        .map_err(|e| match e {
            DbError::Query(q) if is_unique_violation(&q) && !conflict.is_empty() => TaskError::Failed(conflict.into()),
            other => TaskError::Db(other),
        })
}
