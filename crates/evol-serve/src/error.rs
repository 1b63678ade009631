//! Errors answered in OpenAI's shape, in one place: client mistakes are 4xx
//! with the parameter they concern; engine failures are 500 without
//! internals.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use evol_wire::ErrorBody;

/// An error answered as `{"error": {...}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
}

impl ApiError {
    /// A 400 about one parameter.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: Some(param.into()),
        }
    }

    pub fn unauthorized() -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "missing or wrong API key (send `Authorization: Bearer KEY`)".into(),
            kind: "invalid_request_error",
            param: None,
        }
    }

    /// What the engine said when it could not answer.
    pub fn engine(e: evol_llm::ChatError) -> ApiError {
        if e.kind.is_fatal() {
            ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: e.message,
                kind: "server_error",
                param: None,
            }
        } else {
            ApiError::invalid("messages", e.message)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(ErrorBody::new(self.message, self.kind, self.param.as_deref(), None))).into_response()
    }
}
