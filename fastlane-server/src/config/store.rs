//! Where the store and the queue are: `STORE_URL` or `MONGODB_CONFIG`, and
//! `REDIS_URL`, checked at load; errors never show a password.

use super::ConfigError;


/// Where the store is when it is not the embedded one (`STORE_URL`,
/// `MONGODB_CONFIG`). Its `Debug` hides passwords.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// A PostgreSQL database.
    Postgres {
        /// `postgres://…` or `postgresql://…`.
        url: String,
    },
    /// A MongoDB database.
    Mongo {
        /// `mongodb://…` or `mongodb+srv://…`.
        url: String,
        /// The database's name.
        database: String,
    },
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Postgres { url } => f
                .debug_struct("Postgres")
                .field("url", &crate::redact::url_without_password(url))
                .finish(),
            Self::Mongo { url, database } => f
                .debug_struct("Mongo")
                .field("url", &crate::redact::url_without_password(url))
                .field("database", database)
                .finish(),
        }
    }
}

/// The URL schemes `STORE_URL` takes.
const STORE_SCHEMES: &str = "postgres://, postgresql://, mongodb:// or mongodb+srv://";

/// The store `STORE_URL` or `MONGODB_CONFIG` names, checked.
pub(super) fn store_location(
    store_url: Option<String>,
    mongodb_config: serde_json::Value,
) -> Result<Option<StoreLocation>, ConfigError> {
    let is_mongo = |url: &str| url.starts_with("mongodb://") || url.starts_with("mongodb+srv://");
    match (store_url, mongodb_config) {
        (None, serde_json::Value::Null) => Ok(None),
        (Some(_), config) if !config.is_null() => Err(ConfigError::Invalid {
            key: "MONGODB_CONFIG",
            message: "STORE_URL is set too; set only one of them".to_owned(),
        }),
        (Some(url), _) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            Ok(Some(StoreLocation::Postgres { url }))
        }
        (Some(url), _) if is_mongo(&url) => {
            let database = database_in_url("STORE_URL", &url)?;
            Ok(Some(StoreLocation::Mongo {
                url,
                database: database.unwrap_or_else(|| "fastlane".to_owned()),
            }))
        }
        (Some(url), _) => Err(ConfigError::Invalid {
            key: "STORE_URL",
            message: format!(
                "{:?} is not a {STORE_SCHEMES} URL",
                crate::redact::url_without_password(&url)
            ),
        }),
        (None, config) => {
            let invalid = |message: String| ConfigError::Invalid {
                key: "MONGODB_CONFIG",
                message,
            };
            let serde_json::Value::Object(config) = config else {
                return Err(invalid(format!(
                    "must be a JSON object such as {{\"host\": \"mongodb://localhost:27017/fastlane\", \
                     \"db\": \"fastlane\"}}, not {config}"
                )));
            };
            let url = match config.get("host") {
                Some(serde_json::Value::String(url)) if is_mongo(url) => url.clone(),
                Some(serde_json::Value::String(url)) => {
                    return Err(invalid(format!(
                        "\"host\" {:?} is not a mongodb:// or mongodb+srv:// URL",
                        crate::redact::url_without_password(url)
                    )));
                }
                Some(_) => {
                    return Err(invalid(
                        "\"host\" must be a string (a mongodb:// URL)".to_owned(),
                    ));
                }
                None => {
                    return Err(invalid(
                        "needs \"host\", the server's URL (mongodb://host:port/db)".to_owned(),
                    ));
                }
            };
            let database = match config.get("db") {
                None | Some(serde_json::Value::Null) => database_in_url("MONGODB_CONFIG", &url)?
                    .unwrap_or_else(|| "fastlane".to_owned()),
                Some(serde_json::Value::String(db)) => {
                    check_database("MONGODB_CONFIG", db)?;
                    db.clone()
                }
                Some(_) => return Err(invalid("\"db\" must be a string".to_owned())),
            };
            Ok(Some(StoreLocation::Mongo { url, database }))
        }
    }
}

/// The database a `mongodb://` URL names in its path, if any.
fn database_in_url(key: &'static str, url: &str) -> Result<Option<String>, ConfigError> {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let Some((_, path)) = rest.split_once('/') else {
        return Ok(None);
    };
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if path.is_empty() {
        return Ok(None);
    }
    let invalid = || ConfigError::Invalid {
        key,
        message: format!(
            "{:?}: the database name is badly percent-encoded",
            crate::redact::url_without_password(url)
        ),
    };
    let mut bytes = Vec::with_capacity(path.len());
    let mut rest = path.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let hex = tail.get(..2).ok_or_else(invalid)?;
            let hex = std::str::from_utf8(hex).map_err(|_| invalid())?;
            bytes.push(u8::from_str_radix(hex, 16).map_err(|_| invalid())?);
            rest = &tail[2..];
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    let database = String::from_utf8(bytes).map_err(|_| invalid())?;
    check_database(key, &database)?;
    Ok(Some(database))
}

/// Refuses a name MongoDB would refuse for a database.
fn check_database(key: &'static str, name: &str) -> Result<(), ConfigError> {
    let bad =
        name.is_empty() || name.len() >= 64 || name.contains(['/', '\\', '.', ' ', '"', '$', '\0']);
    if bad {
        return Err(ConfigError::Invalid {
            key,
            message: format!(
                "{name:?} is not a MongoDB database name (1 to 63 bytes, none of / \\ . space \" $)"
            ),
        });
    }
    Ok(())
}

/// `REDIS_URL`, checked: one of the forms [`crate::queue::redis::url`]
/// reads. The error names the accepted forms and never the password.
pub(super) fn redis_url(url: &str) -> Result<String, ConfigError> {
    match crate::queue::redis::url::RedisUrl::parse(url) {
        Ok(_) => Ok(url.trim().to_owned()),
        Err(err) => Err(ConfigError::Invalid {
            key: "REDIS_URL",
            message: format!(
                "{:?}: {err}. Accepted forms: {}",
                crate::redact::url_without_password(url.trim()),
                crate::queue::redis::url::FORMS
            ),
        }),
    }
}
