//! The OpenAPI document as served at `/openapi.json`, embedded in Swagger UI
//! at `/docs` and committed as `openapi/fastlane.json`: poem-openapi's
//! document of the operations, completed with what the access checks
//! (`access.rs`) add to every operation, which poem-openapi cannot express
//! for a middleware: the two security schemes (HTTP Basic and bearer
//! tokens, both optional until the operator configures them) and the 401
//! and 403 answers.

use serde_json::{Value, json};

/// The document, as pretty JSON.
pub fn spec_json() -> String {
    let mut spec: Value = serde_json::from_str(&super::service().spec()).unwrap_or_default();
    complete(&mut spec);
    serde_json::to_string_pretty(&spec).unwrap_or_default()
}

/// Adds the security schemes, each operation's security and its 401 and
/// 403 answers, and a server entry.
fn complete(spec: &mut Value) {
    spec["info"]["license"] = json!({"name": "MIT", "url": "https://opensource.org/licenses/MIT"});
    spec["servers"] = json!([{
        "url": "http://localhost:10000",
        "description": "a standalone started by scripts/standalone.sh (set your own server's URL)"
    }]);
    spec["components"]["securitySchemes"] = json!({
        "basicAuth": {
            "type": "http",
            "scheme": "basic",
            "description": "BASIC_AUTH_USERNAME and BASIC_AUTH_PASSWORD: may do everything."
        },
        "bearerAuth": {
            "type": "http",
            "scheme": "bearer",
            "description": "A token of API_TOKENS, with its scopes: admin (everything), read (every \
                            GET route), submit:<task id regex> (submit, replace, stop and retry jobs \
                            of the tasks whose whole id matches)."
        }
    });
    let error = |description: &str| {
        json!({
            "description": description,
            "content": {"application/json; charset=utf-8": {
                "schema": {"$ref": "#/components/schemas/ErrorBody"}
            }}
        })
    };
    let unauthorized = error(
        "Authentication is on (BASIC_AUTH_* or API_TOKENS) and the request has no valid \
         credentials.",
    );
    let forbidden = error(
        "The credentials do not cover this route (a token without the scope), or the request \
         comes from a page of another site that CORS_ORIGINS does not allow.",
    );
    let Some(paths) = spec["paths"].as_object_mut() else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for operation in item.values_mut() {
            // Credentials are optional until the operator turns
            // authentication on: hence the empty requirement.
            operation["security"] = json!([{"basicAuth": []}, {"bearerAuth": []}, {}]);
            let responses = &mut operation["responses"];
            if responses.get("401").is_none() {
                responses["401"] = unauthorized.clone();
            }
            if responses.get("403").is_none() {
                responses["403"] = forbidden.clone();
            }
        }
    }
}
