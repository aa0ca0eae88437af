//! `GET /metrics`: the Prometheus text exposition, for anyone, for the admin only, or not at
//! all (`--metrics`).

use actix_web::{web, HttpRequest, HttpResponse};

use crate::app::AppState;
use crate::config::MetricsAccess;
use crate::error::ApiError;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/metrics", web::get().to(metrics));
}

async fn metrics(state: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    match state.config.metrics {
        MetricsAccess::Off => return Err(ApiError::not_found()),
        MetricsAccess::Admin => crate::api::auth::verify(&state, req.headers(), req.peer_addr().map(|a| a.ip())).await?,
        MetricsAccess::Public => {}
    }
    let text = state.metrics.render(&state).await;
    Ok(HttpResponse::Ok().content_type(prometheus::TEXT_FORMAT).body(text))
}
