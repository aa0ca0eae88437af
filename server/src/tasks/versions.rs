//! Tasks that change what a repository holds on request: tag, untag, add and remove (a copy is
//! an add), each making one new version from the latest; and the deletion of a version.

use serde::{Deserialize, Serialize};

use super::{TaskContext, TaskError, TaskResult};
use crate::api::hrefs;
use crate::db::{is_unique_violation, write_transaction, DbConnection, DbError};
use crate::models::{content, repository};

pub const TAG: &str = "pulpish.repository.tag";
pub const UNTAG: &str = "pulpish.repository.untag";
pub const ADD: &str = "pulpish.repository.add";
pub const REMOVE: &str = "pulpish.repository.remove";
pub const DELETE_VERSION: &str = "pulpish.repository.delete_version";

/// Pulp's refusal to delete a repository's only version.
pub const ONLY_VERSION: &str = "Cannot delete repository version. Repositories must have at least one repository version.";
/// A repository serves its latest version and numbers the next one after it: that one stays.
pub const LATEST_VERSION: &str = "The latest version of a repository cannot be deleted.";

/// A change to a repository's content, applied to its latest version when the task runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Change {
    /// Points `tag` at the manifest, replacing the tag of that name.
    Tag { tag: String, manifest_id: String },
    Untag { tag: String },
    /// Adds the units with everything they reference; an added tag replaces the one of its name.
    Add { content_ids: Vec<String> },
    /// Removes the units as Pulp's recursive remove does (`content::removal`); `None`: all.
    Remove { content_ids: Option<Vec<String>> },
}

impl Change {
    pub fn task_name(&self) -> &'static str {
        match self {
            Change::Tag { .. } => TAG,
            Change::Untag { .. } => UNTAG,
            Change::Add { .. } => ADD,
            Change::Remove { .. } => REMOVE,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChangeArgs {
    pub repository_id: String,
    pub change: Change,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeleteVersionArgs {
    pub repository_id: String,
    pub number: i64,
}

/// Makes the new version; nothing when the change changes nothing (Pulp keeps no empty versions).
pub async fn change(ctx: TaskContext, args: ChangeArgs) -> TaskResult {
    let mut attempt = 0;
    loop {
        let a = args.clone();
        let result = ctx.state.db.run(move |c| write_transaction(c, |c| apply(c, &a))).await;
        match result {
            Ok(Ok(Some(number))) => return Ok(vec![hrefs::repository_version(&args.repository_id, number)]),
            Ok(Ok(None)) => return Ok(vec![]),
            Ok(Err(message)) => return Err(TaskError::Failed(message)),
            // A push made the same version number meanwhile: go again on the new latest.
            Err(DbError::Query(e)) if is_unique_violation(&e) && attempt < 5 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

fn apply(c: &mut DbConnection, args: &ChangeArgs) -> Result<Result<Option<i64>, String>, DbError> {
    let repo_id = args.repository_id.as_str();
    let Some(repo) = repository::find(c, repo_id)? else {
        return Ok(Err("The repository no longer exists.".into()));
    };
    let latest = repo.latest_version_number;
    let (add, remove) = match &args.change {
        Change::Tag { tag, manifest_id } => {
            if !repository::holds(c, repo_id, latest, manifest_id)? {
                return Ok(Err(format!("The manifest to tag '{tag}' is no longer in the latest version of repository '{}'.", repo.name)));
            }
            let tag_id = content::ensure_tag(c, tag, manifest_id)?;
            let replaced = content::tags_named(c, repo_id, latest, tag)?.into_iter().filter(|id| *id != tag_id).collect();
            (vec![tag_id], replaced)
        }
        Change::Untag { tag } => (vec![], content::tags_named(c, repo_id, latest, tag)?),
        Change::Add { content_ids } => {
            let found = content::types_of(c, content_ids)?;
            let missing: Vec<&str> = content_ids.iter().filter(|id| !found.contains_key(*id)).map(String::as_str).collect();
            if !missing.is_empty() {
                return Ok(Err(format!("Content to add no longer exists: {}", missing.join(", "))));
            }
            let add = content::with_references(c, content_ids)?;
            let mut replaced = Vec::new();
            for (_, name) in content::tag_names_of(c, &add)? {
                replaced.extend(content::tags_named(c, repo_id, latest, &name)?.into_iter().filter(|id| !add.contains(id)));
            }
            (add, replaced)
        }
        Change::Remove { content_ids } => (vec![], content::removal(c, repo_id, latest, content_ids.as_deref())?),
    };
    Ok(Ok(repository::new_version(c, repo_id, &add, &remove)?))
}

pub async fn delete_version(ctx: TaskContext, args: DeleteVersionArgs) -> TaskResult {
    let outcome = ctx
        .state
        .db
        .run(move |c| {
            write_transaction(c, |c| {
                let Some(repo) = repository::find(c, &args.repository_id)? else {
                    return Ok::<_, DbError>(Err("The repository no longer exists.".to_string()));
                };
                if repository::find_version(c, &repo.id, args.number)?.is_none() {
                    return Ok(Err(format!("Version {} of repository '{}' no longer exists.", args.number, repo.name)));
                }
                if args.number == repo.latest_version_number {
                    let only = repository::next_version_number(c, &repo.id, -1)? == Some(args.number);
                    return Ok(Err(if only { ONLY_VERSION } else { LATEST_VERSION }.to_string()));
                }
                repository::delete_version(c, &repo.id, args.number)?;
                Ok(Ok(()))
            })
        })
        .await?;
    outcome.map_err(TaskError::Failed)?;
    Ok(vec![])
}
