//! `/docker-executor/blacklist`: taking Docker hosts out of rotation and
//! putting them back. A blacklisted host gets no new work; what runs there
//! is followed to its end.

use poem::web::Data;
use poem_openapi::{Object, OpenApi};

use super::ApiTags;
use super::body::JsonBody;
use super::error::ApiError;
use crate::services::Services;

/// `{"host": "host:port"}`.
#[derive(Debug, Object)]
#[oai(example)]
#[allow(dead_code)] // documents the schema; bodies are read by `host`
pub struct HostRequest {
    /// The host as `DOCKER_HOSTS` names it: `host:port`, `tcp://…`, `unix:///…`.
    host: String,
}

impl poem_openapi::types::Example for HostRequest {
    fn example() -> Self {
        Self {
            host: "docker-host-1:2375".to_owned(),
        }
    }
}

/// The body of blacklist requests.
type HostBody = JsonBody<HostRequest>;

/// The blacklist after a change.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Blacklist {
    /// The host the request named.
    pub host: String,
    /// Every blacklisted host.
    pub blacklisted: Vec<String>,
}

impl poem_openapi::types::Example for Blacklist {
    fn example() -> Self {
        Self {
            host: "docker-host-1:2375".to_owned(),
            blacklisted: vec!["docker-host-1:2375".to_owned()],
        }
    }
}

/// Reads `{"host": "host:port"}`: any `host:port` (single-label names and IPs
/// included), `tcp://…`, `http://…` or `unix:///…`.
fn host(body: HostBody, operation: &str, verb: &str) -> Result<String, ApiError> {
    let Ok(body) = body.0 else {
        return Err(ApiError::bad_request(
            operation,
            format!("Failed to {verb} host because JSON body could not be parsed."),
        ));
    };
    let Some(host) = body.get("host").and_then(|h| h.as_str()) else {
        return Err(ApiError::bad_request(
            operation,
            format!("Failed to {verb} host because 'host' attribute was not found in JSON body."),
        ));
    };
    let valid = if let Some(path) = host.strip_prefix("unix://") {
        path.starts_with('/')
    } else {
        let rest = host
            .strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
            .or_else(|| host.strip_prefix("https://"))
            .unwrap_or(host);
        rest.rsplit_once(':').is_some_and(|(name, port)| {
            !name.is_empty()
                && !name.contains(['/', ' '])
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        })
    };
    if !valid {
        return Err(ApiError::bad_request(
            operation,
            format!(
                "Failed to {verb} host because 'host' attribute had an invalid value: {host:?} is not host:port."
            ),
        ));
    }
    Ok(host.to_owned())
}

async fn change(
    services: &Services,
    host: String,
    blacklisted: bool,
    operation: &'static str,
) -> Result<poem_openapi::payload::Json<Blacklist>, ApiError> {
    services
        .store
        .set_blacklisted(&host, blacklisted)
        .await
        .map_err(ApiError::store(operation))?;
    let list = services
        .store
        .blacklist()
        .await
        .map_err(ApiError::store(operation))?;
    services.executors.set_blacklist(&list);
    tracing::info!(host, blacklisted, "blacklist changed");
    Ok(poem_openapi::payload::Json(Blacklist {
        host,
        blacklisted: list,
    }))
}

/// Blacklist routes.
#[derive(Debug)]
pub struct BlacklistApi;

#[OpenApi]
impl BlacklistApi {
    /// Blacklist a Docker host
    ///
    /// The host gets no new executions; those already running there are
    /// followed to their end. Body: `{"host": "host:port"}`.
    #[oai(
        path = "/docker-executor/blacklist",
        method = "post",
        operation_id = "blacklistHost",
        tag = "ApiTags::Health"
    )]
    async fn add(
        &self,
        services: Data<&Services>,
        body: HostBody,
    ) -> Result<poem_openapi::payload::Json<Blacklist>, ApiError> {
        const OP: &str = "add_to_blacklist";
        let host = host(body, OP, "add host to blacklist")?;
        change(&services, host, true, OP).await
    }

    /// Blacklist a Docker host (PUT)
    ///
    /// The same as `POST`.
    #[oai(
        path = "/docker-executor/blacklist",
        method = "put",
        operation_id = "blacklistHostPut",
        tag = "ApiTags::Health"
    )]
    async fn put(
        &self,
        services: Data<&Services>,
        body: HostBody,
    ) -> Result<poem_openapi::payload::Json<Blacklist>, ApiError> {
        self.add(services, body).await
    }

    /// Put a Docker host back in rotation
    #[oai(
        path = "/docker-executor/blacklist",
        method = "delete",
        operation_id = "unblacklistHost",
        tag = "ApiTags::Health"
    )]
    async fn remove(
        &self,
        services: Data<&Services>,
        body: HostBody,
    ) -> Result<poem_openapi::payload::Json<Blacklist>, ApiError> {
        const OP: &str = "remove_from_blacklist";
        let host = host(body, OP, "remove host from blacklist")?;
        change(&services, host, false, OP).await
    }
}
