//! Ironic's error envelope: `{"error_message": "<JSON text>"}`, where the inner JSON is
//! `{"faultcode", "faultstring", "debuginfo"}` for application errors and
//! `{"code", "title", "description"}` for routing errors (404 no route, 405, 406), exactly as
//! Ironic's two layers produce them. Every error in the API becomes one of these here.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferric_types::rpc::RpcError;

/// An API failure with its HTTP status.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    /// Routing-layer errors use the `code/title/description` shape.
    pub routing: bool,
    /// Extra header (e.g. `Allow` on 405).
    pub allow: Option<&'static str>,
    /// The conductor found the record changed since it was read: worth retrying.
    pub stale: bool,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError { status, message: message.into(), routing: false, allow: None, stale: false }
    }
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, message)
    }
    /// 406 from a field, verb or parameter that needs a newer microversion (Ironic's
    /// NotAcceptable).
    pub fn not_acceptable() -> ApiError {
        ApiError::new(StatusCode::NOT_ACCEPTABLE, "Request not acceptable.")
    }
    /// 406 naming the version that would accept the request.
    pub fn not_acceptable_min(minor: u32) -> ApiError {
        ApiError::new(
            StatusCode::NOT_ACCEPTABLE,
            format!("Request not acceptable. The minimal required API version should be 1.{minor}"),
        )
    }
    /// 405 with Ironic's application shape (endpoints refusing a method below their version).
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::METHOD_NOT_ALLOWED, message)
    }
    pub fn routing(status: StatusCode, description: impl Into<String>) -> ApiError {
        ApiError { status, message: description.into(), routing: true, allow: None, stale: false }
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl ApiError {
    /// The body bytes, formatted as Ironic's Python serialiser formats them.
    pub fn body(&self) -> String {
        let inner = if self.routing {
            format!(
                "{{\"code\": {}, \"title\": {}, \"description\": {}}}",
                self.status.as_u16(),
                ferric_types::py_json::string(title(self.status)),
                ferric_types::py_json::string(&self.message)
            )
        } else {
            let code = if self.status.is_server_error() { "Server" } else { "Client" };
            format!(
                "{{\"faultcode\": {}, \"faultstring\": {}, \"debuginfo\": null}}",
                ferric_types::py_json::string(code),
                ferric_types::py_json::string(&self.message)
            )
        };
        format!("{{\"error_message\": {}}}", ferric_types::py_json::string(&inner))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body()).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        if let Some(a) = self.allow {
            r.headers_mut().insert(header::ALLOW, HeaderValue::from_static(a));
        }
        r
    }
}

impl From<RpcError> for ApiError {
    fn from(e: RpcError) -> Self {
        let status = match &e {
            RpcError::NotFound(_) => StatusCode::NOT_FOUND,
            RpcError::Locked(_) | RpcError::Conflict(_) | RpcError::Stale(_) => StatusCode::CONFLICT,
            RpcError::InvalidState(_)
            | RpcError::Invalid(_)
            | RpcError::MissingParameter(_)
            | RpcError::Unsupported(_) => StatusCode::BAD_REQUEST,
            RpcError::Forbidden(_) => StatusCode::FORBIDDEN,
            RpcError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            RpcError::NoFreeWorker(_) | RpcError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            RpcError::DriverFailed(_) | RpcError::Timeout(_) | RpcError::Internal(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let stale = matches!(e, RpcError::Stale(_));
        ApiError { stale, ..ApiError::new(status, e.to_string()) }
    }
}

impl From<crate::db::DbError> for ApiError {
    fn from(e: crate::db::DbError) -> Self {
        RpcError::from(e).into()
    }
}

pub type ApiResult<T = Response> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_matches_ironic_bytes() {
        let e = ApiError::bad_request(
            "The requested action \"active\" can not be performed on node \"6c52e3e3-e191-4113-ba94-004bad13e7e7\" while it is in state \"enroll\".",
        );
        assert_eq!(
            e.body(),
            r#"{"error_message": "{\"faultcode\": \"Client\", \"faultstring\": \"The requested action \\\"active\\\" can not be performed on node \\\"6c52e3e3-e191-4113-ba94-004bad13e7e7\\\" while it is in state \\\"enroll\\\".\", \"debuginfo\": null}"}"#
        );
        let e = ApiError::routing(StatusCode::METHOD_NOT_ALLOWED, "");
        assert_eq!(
            e.body(),
            r#"{"error_message": "{\"code\": 405, \"title\": \"Method Not Allowed\", \"description\": \"\"}"}"#
        );
    }

    #[test]
    fn non_ascii_is_escaped_like_python() {
        assert_eq!(ferric_types::py_json::string("é€😀"), "\"\\u00e9\\u20ac\\ud83d\\ude00\"");
    }
}
