//! REST endpoints of the image service (Glance v2 subset) and the temp-URL download endpoint
//! (Swift role), as an axum `Router` the API process merges or a simulation calls in-process.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;
use tower::ServiceExt;

use super::model::CreateImage;
use super::store::{ImageStore, StoreError};
use super::tempurl::{self, TempUrlError};
use ferric_types::clock::Clock;

/// Largest JSON body accepted on metadata calls.
pub const MAX_JSON_BODY: usize = 64 << 10;

/// The image service: store plus the temp-URL secret.
pub struct ImageService {
    /// The store.
    pub store: Arc<ImageStore>,
    temp_url_key: Vec<u8>,
    clock: Clock,
}

/// An HTTP error with a JSON body `{"code", "title", "message"}`.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self.0.canonical_reason().unwrap_or("Error");
        (self.0, Json(json!({"code": self.0.as_u16(), "title": title, "message": self.1}))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Invalid(_) => StatusCode::BAD_REQUEST,
            StoreError::Conflict(_) => StatusCode::CONFLICT,
            StoreError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            StoreError::Upload(_) => StatusCode::BAD_REQUEST,
            StoreError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %e, "image store failure");
        }
        ApiError(status, e.to_string())
    }
}

impl ImageService {
    /// A service over `store`, signing temp URLs with `temp_url_key`.
    pub fn new(store: Arc<ImageStore>, temp_url_key: Vec<u8>, clock: Clock) -> Self {
        Self { store, temp_url_key, clock }
    }

    /// A temp URL (under `base_url`, e.g. `http://192.0.2.1:6385`) valid for `ttl`, for an active
    /// image: what the direct deploy hands the agent as `image_info.urls[0]`.
    pub fn temp_url(&self, base_url: &str, image_id: &str, ttl: Duration) -> Result<String, StoreError> {
        self.store.data_path(image_id)?;
        let expires = self.clock.now_unix() + ttl.as_secs().max(1);
        Ok(format!(
            "{}{}",
            base_url.trim_end_matches('/'),
            tempurl::image_path_and_query(&self.temp_url_key, image_id, expires)
        ))
    }

    /// The routes: `/v2/images...` and the temp-URL download path.
    pub fn router(self: Arc<Self>) -> Router {
        let meta = Router::new()
            .route("/v2/images", get(list).post(create))
            .route("/v2/images/{id}", get(show).delete(delete))
            .layer(DefaultBodyLimit::max(MAX_JSON_BODY));
        let data = Router::new()
            .route("/v2/images/{id}/file", get(download).put(upload))
            .route(&format!("{}/{{id}}", tempurl::PREFIX), get(temp_download).head(temp_download))
            .layer(DefaultBodyLimit::disable());
        meta.merge(data).with_state(self)
    }
}

type Svc = State<Arc<ImageService>>;

async fn list(State(s): Svc) -> Result<Response, ApiError> {
    let images = s.store.list()?;
    Ok(Json(json!({"images": images, "schema": "/v2/schemas/images", "first": "/v2/images"})).into_response())
}

async fn create(State(s): Svc, body: axum::body::Bytes) -> Result<Response, ApiError> {
    let req: CreateImage = serde_json::from_slice(&body)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("invalid image body: {e}")))?;
    let img = s.store.create(req)?;
    let mut resp = (StatusCode::CREATED, Json(&img)).into_response();
    if let Ok(v) = HeaderValue::from_str(&img.self_link) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

async fn show(State(s): Svc, Path(id): Path<String>) -> Result<Response, ApiError> {
    Ok(Json(s.store.get(&id)?).into_response())
}

async fn delete(State(s): Svc, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    s.store.delete(&id)?;
    Ok(StatusCode::NO_CONTENT)
}

async fn upload(State(s): Svc, Path(id): Path<String>, body: Body) -> Result<StatusCode, ApiError> {
    s.store.upload(&id, body.into_data_stream()).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn download(State(s): Svc, Path(id): Path<String>, req: Request) -> Result<Response, ApiError> {
    let img = s.store.get(&id)?;
    if img.status != super::model::ImageStatus::Active {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    serve(&s.store, &id, req).await
}

#[derive(Deserialize)]
struct TempUrlQuery {
    temp_url_sig: Option<String>,
    temp_url_expires: Option<String>,
}

async fn temp_download(
    State(s): Svc,
    Path(id): Path<String>,
    Query(q): Query<TempUrlQuery>,
    req: Request,
) -> Result<Response, ApiError> {
    let path = format!("{}/{id}", tempurl::PREFIX);
    if let Err(e) = tempurl::verify(
        &s.temp_url_key,
        req.method().as_str(),
        &path,
        q.temp_url_sig.as_deref(),
        q.temp_url_expires.as_deref(),
        s.clock.now_unix(),
    ) {
        tracing::warn!(image = %id, reason = %e, "temp URL refused");
        let status = match e {
            TempUrlError::Missing | TempUrlError::Malformed | TempUrlError::Expired | TempUrlError::Invalid => {
                StatusCode::UNAUTHORIZED
            }
        };
        return Err(ApiError(status, format!("Temp URL invalid: {e}")));
    }
    serve(&s.store, &id, req).await
}

/// Serves an image's data with Range, HEAD and conditional requests (tower-http's file service).
async fn serve(store: &ImageStore, id: &str, req: Request) -> Result<Response, ApiError> {
    let path = store.data_path(id).map_err(|e| match e {
        StoreError::Conflict(m) => ApiError(StatusCode::NOT_FOUND, m),
        other => other.into(),
    })?;
    let mut fwd =
        axum::http::Request::builder().method(if req.method() == Method::HEAD { Method::HEAD } else { Method::GET });
    for (k, v) in req.headers() {
        fwd = fwd.header(k, v);
    }
    let fwd = fwd.body(Body::empty()).map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?;
    // Reads of 1 MiB keep big images fast; a small image gets a buffer of its own size (every
    // download in flight holds one: thousands at once in a fleet simulation).
    let len = tokio::fs::metadata(&path).await.map(|m| m.len()).unwrap_or(1 << 20);
    let chunk = usize::try_from(len.clamp(8 << 10, 1 << 20)).unwrap_or(1 << 20);
    // `data` has no extension, so the file service labels it application/octet-stream.
    let resp = tower_http::services::ServeFile::new(path)
        .with_buf_chunk_size(chunk)
        .oneshot(fwd)
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(resp.map(Body::new))
}
