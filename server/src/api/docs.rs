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
