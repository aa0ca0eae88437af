//! The OpenAPI document and an offline Swagger UI (assets vendored in server/assets).

use actix_web::{get, web, HttpResponse};

use crate::app::AppState;

const SWAGGER_JS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

const INDEX: &str = r##"<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>pulpish API</title>
  <link rel="stylesheet" href="/pulp/api/v3/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/pulp/api/v3/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/pulp/api/v3/docs/api.json", dom_id: "#swagger-ui" });
  </script>
</body>
</html>
"##;

#[get("/pulp/api/v3/docs/api.json")]
pub async fn api_json(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().content_type("application/json").body(state.openapi_json.to_string())
}

#[get("/pulp/api/v3/docs/")]
pub async fn swagger_index() -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(INDEX)
}

#[get("/pulp/api/v3/docs/swagger-ui-bundle.js")]
pub async fn swagger_js() -> HttpResponse {
    HttpResponse::Ok().content_type("application/javascript").body(SWAGGER_JS)
}

#[get("/pulp/api/v3/docs/swagger-ui.css")]
pub async fn swagger_css() -> HttpResponse {
    HttpResponse::Ok().content_type("text/css").body(SWAGGER_CSS)
}

/// The Pulp components pulpish answers as, advertised in the document (`x-pulp-app-versions`,
/// which pulp-cli checks before any command) and listed by `status/`: the two must agree, or
/// pulp-cli downloads the document again on every `pulp status`. core 3.85 is the newest whose
/// task answers pulp-cli reads without a `result` object.
pub const PULP_COMPONENTS: [(&str, &str, &str); 3] = [
    ("core", "3.85.0", "pulpcore"),
    ("container", "2.20.0", "pulp-container"),
    ("pulpish", env!("CARGO_PKG_VERSION"), "pulpish"),
];

/// Detail routes and the href parameter Pulp names each by: Pulp's document keys an object's
/// operations by its whole href (`{container_container_remote_href}sync/`), and its clients
/// substitute the href they hold. Longest prefixes first.
const HREF_PATHS: [(&str, &str); 13] = [
    ("/pulp/api/v3/repositories/container/container/{id}/versions/{number}/", "container_container_repository_version_href"),
    ("/pulp/api/v3/repositories/container/container/{id}/", "container_container_repository_href"),
    ("/pulp/api/v3/remotes/container/container/{id}/", "container_container_remote_href"),
    ("/pulp/api/v3/distributions/container/container/{id}/", "container_container_distribution_href"),
    ("/pulp/api/v3/remotes/container/pull-through/{id}/", "container_container_pull_through_remote_href"),
    ("/pulp/api/v3/distributions/container/pull-through/{id}/", "container_container_pull_through_distribution_href"),
    ("/pulp/api/v3/content/container/blobs/{id}/", "container_blob_href"),
    ("/pulp/api/v3/content/container/manifests/{id}/", "container_manifest_href"),
    ("/pulp/api/v3/content/container/tags/{id}/", "container_tag_href"),
    ("/pulp/api/v3/artifacts/{id}/", "artifact_href"),
    ("/pulp/api/v3/tasks/{id}/", "task_href"),
    ("/pulp/api/v3/workers/{id}/", "worker_href"),
    ("/pulp/api/v3/sync-schedules/{id}/", "sync_schedule_href"),
];

/// Schema names as Pulp's document has them, so generated bindings look like Pulp's.
const SCHEMA_NAMES: [(&str, &str); 28] = [
    ("RemoteRequest", "container.ContainerRemote"),
    ("PatchedRemoteRequest", "Patchedcontainer.ContainerRemote"),
    ("RemoteResponse", "container.ContainerRemoteResponse"),
    ("RepositoryRequest", "container.ContainerRepository"),
    ("PatchedRepositoryRequest", "Patchedcontainer.ContainerRepository"),
    ("RepositoryResponse", "container.ContainerRepositoryResponse"),
    ("DistributionRequest", "container.ContainerDistribution"),
    ("PatchedDistributionRequest", "Patchedcontainer.ContainerDistribution"),
    ("DistributionResponse", "container.ContainerDistributionResponse"),
    ("PullThroughRemoteRequest", "container.ContainerPullThroughRemote"),
    ("PatchedPullThroughRemoteRequest", "Patchedcontainer.ContainerPullThroughRemote"),
    ("PullThroughRemoteResponse", "container.ContainerPullThroughRemoteResponse"),
    ("PullThroughDistributionRequest", "container.ContainerPullThroughDistribution"),
    ("PatchedPullThroughDistributionRequest", "Patchedcontainer.ContainerPullThroughDistribution"),
    ("PullThroughDistributionResponse", "container.ContainerPullThroughDistributionResponse"),
    ("BlobResponse", "container.BlobResponse"),
    ("ManifestResponse", "container.ManifestResponse"),
    ("TagResponse", "container.TagResponse"),
    ("SyncRequest", "ContainerRepositorySyncURL"),
    ("TaskCancel", "PatchedTaskCancel"),
    ("Status", "StatusResponse"),
    ("ComponentVersion", "VersionResponse"),
    ("DatabaseConnection", "DatabaseConnectionResponse"),
    ("StorageStatus", "StorageResponse"),
    ("WorkerStatus", "WorkerResponse"),
    ("AppStatus", "AppStatusResponse"),
    ("ContentSettings", "ContentSettingsResponse"),
    ("HiddenField", "HiddenFieldsResponse"),
];

fn schema_name(name: &str) -> String {
    if let Some(inner) = name.strip_prefix("Paginated_") {
        return format!("Paginated{}List", schema_name(inner));
    }
    SCHEMA_NAMES.iter().find(|(from, _)| *from == name).map_or_else(|| name.to_string(), |(_, to)| to.to_string())
}

/// Renames every `$ref` to a schema.
fn rename_refs(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = r.strip_prefix("#/components/schemas/") {
                            *r = format!("#/components/schemas/{}", schema_name(name));
                        }
                    }
                    (_, v) => rename_refs(v),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rename_refs),
        _ => {}
    }
}

/// The document as pulp-cli and Pulp's bindings expect it, from the one generated off the routes
/// (`concrete`, with `{id}` paths, which tools that call URLs directly can use).
pub fn pulp_document(concrete: serde_json::Value) -> serde_json::Value {
    use serde_json::{json, Map, Value};
    let mut doc = concrete;
    let versions: Map<String, Value> = PULP_COMPONENTS.iter().map(|(c, v, _)| (c.to_string(), json!(v))).collect();
    doc["info"]["x-pulp-app-versions"] = Value::Object(versions);
    doc["info"]["x-pulp-domain-enabled"] = json!(false);

    if let Some(Value::Object(paths)) = doc.get_mut("paths") {
        let old = std::mem::take(paths);
        for (path, mut item) in old {
            let Some((prefix, name)) = HREF_PATHS.iter().find(|(prefix, _)| path.starts_with(prefix)) else {
                paths.insert(path, item);
                continue;
            };
            let key = format!("{{{name}}}{}", &path[prefix.len()..]);
            let href = json!({
                "name": name, "in": "path", "required": true, "schema": {"type": "string"},
                "description": "The object's pulp_href, e.g. as a list returns it.",
            });
            if let Value::Object(operations) = &mut item {
                for operation in operations.values_mut() {
                    let Some(Value::Array(params)) = operation.get_mut("parameters") else {
                        operation["parameters"] = json!([href.clone()]);
                        continue;
                    };
                    params.retain(|p| p["in"] != "path");
                    params.insert(0, href.clone());
                }
            }
            paths.insert(key, item);
        }
    }

    if let Some(Value::Object(schemas)) = doc.pointer_mut("/components/schemas") {
        let old = std::mem::take(schemas);
        schemas.extend(old.into_iter().map(|(name, schema)| (schema_name(&name), schema)));
    }
    rename_refs(&mut doc);
    doc
}
