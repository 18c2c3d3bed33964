//! The OpenAPI document as served at `/openapi.json`, embedded in Swagger UI
//! at `/docs` and committed as `openapi/fastlane.json`: poem-openapi's
//! document of the operations, completed with what the access checks
//! (`access.rs`) add to every operation, which poem-openapi cannot express
//! for a middleware: the two security schemes (HTTP Basic and bearer
//! tokens, both optional until the operator configures them) and the 401
//! and 403 answers.

use serde_json::{Value, json};

use super::ordered::Ordered;

/// The document, as pretty JSON.
pub fn spec_json() -> String {
    let spec = super::job_request::finish_document(super::service().spec());
    let Ok(mut document) = serde_json::from_str::<Ordered>(&spec) else {
        return spec;
    };
    complete(&mut document);
    serde_json::to_string_pretty(&document).unwrap_or(spec)
}

/// `value` as an [`Ordered`] (its keys sorted).
fn ordered(value: Value) -> Ordered {
    serde_json::from_value(value).unwrap_or(Ordered::Null)
}

/// Adds the security schemes, each operation's security and its 401 and
/// 403 answers, a licence and a server entry.
fn complete(spec: &mut Ordered) {
    if let Some(info) = spec.get_mut("info") {
        info.set(
            "license",
            ordered(json!({"name": "MIT", "url": "https://opensource.org/licenses/MIT"})),
        );
    }
    spec.set(
        "servers",
        ordered(json!([{
            "url": "/",
            "description": "the server that serves this document (Swagger UI calls it)"
        }])),
    );
    let schemes = ordered(json!({
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
    }));
    if let Some(components) = spec.get_mut("components") {
        components.set("securitySchemes", schemes);
    }
    let error = |description: &str| {
        ordered(json!({
            "description": description,
            "content": {"application/json; charset=utf-8": {
                "schema": {"$ref": "#/components/schemas/ErrorBody"}
            }}
        }))
    };
    let unauthorized = error(
        "Authentication is on (BASIC_AUTH_* or API_TOKENS) and the request has no valid \
         credentials.",
    );
    let forbidden = error(
        "The credentials do not cover this route (a token without the scope), or the request \
         comes from a page of another site that CORS_ORIGINS does not allow.",
    );
    // Credentials are optional until the operator turns authentication on:
    // hence the empty requirement.
    let security = ordered(json!([{"basicAuth": []}, {"bearerAuth": []}, {}]));
    let Some(Ordered::Object(paths)) = spec.get_mut("paths") else {
        return;
    };
    for (_, item) in paths.iter_mut() {
        let Ordered::Object(operations) = item else {
            continue;
        };
        for (_, operation) in operations.iter_mut() {
            operation.set("security", security.clone());
            let Some(responses) = operation.get_mut("responses") else {
                continue;
            };
            // The health check's failures answer its own shape; client
            // generators take one error type per operation, so it keeps it.
            if answers_other_errors(responses) {
                continue;
            }
            for (status, answer) in [("401", &unauthorized), ("403", &forbidden)] {
                if responses.get_mut(status).is_none() {
                    responses.set(status, answer.clone());
                }
            }
        }
    }
}

/// True when one of the error answers in `responses` is not an
/// `ErrorBody`.
fn answers_other_errors(responses: &Ordered) -> bool {
    let Ordered::Object(answers) = responses else {
        return false;
    };
    answers
        .iter()
        .filter(|(status, _)| status.starts_with('4') || status.starts_with('5'))
        .any(|(_, answer)| {
            serde_json::to_string(answer)
                .is_ok_and(|text| text.contains("\"$ref\"") && !text.contains("ErrorBody"))
        })
}
