//! Hiding secrets in what fastlane shows (the API, notifications, error
//! reports, its log): env values whose names contain a blacklisted word
//! (`ENV_BLACKLISTED_WORDS`), every webhook header value, and credentials
//! in URLs (the user-info password, and query parameters whose names
//! contain a blacklisted word) are shown as `***`.

use std::collections::BTreeMap;

use fastlane_sdk::{Webhook, WebhookTargets};

/// What a redacted value is replaced with.
pub const MASK: &str = "***";

/// The default `ENV_BLACKLISTED_WORDS`: the original's words (`password`,
/// `key`, `secret`, `client_id`) and the names people use for secrets.
pub const DEFAULT_BLACKLISTED_WORDS: &str =
    "password,key,secret,client_id,token,pass,credential,auth,private,cookie,session,dsn";

/// Whether `name` contains one of `words` (lower case), ignoring case.
pub fn is_secret_name(name: &str, words: &[String]) -> bool {
    let lower = name.to_lowercase();
    words.iter().any(|w| lower.contains(w.as_str()))
}

/// A copy of `envs` with the values of secret-looking names masked. Words
/// match anywhere in the name, ignoring case, and are plain text (not
/// patterns); no words means nothing is masked.
pub fn redact_envs(envs: &BTreeMap<String, String>, words: &[String]) -> BTreeMap<String, String> {
    envs.iter()
        .map(|(name, value)| {
            let secret = is_secret_name(name, words);
            (
                name.clone(),
                if secret {
                    MASK.to_owned()
                } else {
                    value.clone()
                },
            )
        })
        .collect()
}

/// A copy of `hooks` as fastlane shows them: every header value `***`,
/// and credentials in URLs masked ([`redact_url`]).
pub fn redact_webhooks(hooks: &WebhookTargets, words: &[String]) -> WebhookTargets {
    let shown = |list: &[Webhook]| -> Vec<Webhook> {
        list.iter()
            .map(|hook| Webhook {
                url: redact_url(&hook.url, words),
                headers: hook
                    .headers
                    .keys()
                    .map(|name| (name.clone(), MASK.to_owned()))
                    .collect(),
                retries: hook.retries,
                method: hook.method.clone(),
            })
            .collect()
    };
    WebhookTargets {
        starts: shown(&hooks.starts),
        succeeds: shown(&hooks.succeeds),
        fails: shown(&hooks.fails),
        finishes: shown(&hooks.finishes),
    }
}

/// `url` with its credentials shown as `***`: the password in the user
/// info, and the values of query parameters whose names contain one of
/// `words` (lower case), are `pass`/`password` or end in `_password`
/// (a Redis Sentinel URL's `sentinel_password`).
pub fn redact_url(url: &str, words: &[String]) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let path = query_without_secrets(path, words);
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info
                .split_once(':')
                .map_or(user_info, |(user, _)| user);
            let masked = if user_info.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!("{scheme}://{masked}@{host}{path}")
        }
        None => format!("{scheme}://{authority}{path}"),
    }
}

/// `url` with its password (if any) shown as `***`, for logs and errors:
/// the one in the user info and the value of a `pass`, `password` or
/// `…_password` query parameter (a `unix://` Redis URL carries it there, a
/// Sentinel URL its `sentinel_password`).
pub fn url_without_password(url: &str) -> String {
    redact_url(url, &[])
}

/// `path?query#fragment` with the values of secret-looking parameters
/// masked.
fn query_without_secrets(path: &str, words: &[String]) -> String {
    let Some((before, query)) = path.split_once('?') else {
        return path.to_owned();
    };
    let (query, fragment) = match query.split_once('#') {
        Some((query, fragment)) => (query, Some(fragment)),
        None => (query, None),
    };
    let query: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _))
                if matches!(name, "pass" | "password")
                    || name.ends_with("_password")
                    || is_secret_name(&percent_decoded(name), words) =>
            {
                format!("{name}={MASK}")
            }
            _ => pair.to_owned(),
        })
        .collect();
    let mut out = format!("{before}?{}", query.join("&"));
    if let Some(fragment) = fragment {
        out.push('#');
        out.push_str(fragment);
    }
    out
}

/// `text` with `%XX` escapes decoded (lossily), so that an escaped
/// parameter name is matched as the receiver will read it.
fn percent_decoded(text: &str) -> String {
    percent_encoding::percent_decode_str(&text.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_names_are_masked_and_others_kept() {
        let words: Vec<String> = ["password", "key", "secret", "client_id"]
            .map(String::from)
            .to_vec();
        let envs: BTreeMap<String, String> = [
            ("clientSecret", "s1"),
            ("Key", "s2"),
            ("DB_PASSWORD_ENV", "s3"),
            ("client_id", "s4"),
            ("_id", "kept"),
            ("name", "kept too"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let shown = redact_envs(&envs, &words);
        for secret in ["clientSecret", "Key", "DB_PASSWORD_ENV", "client_id"] {
            assert_eq!(shown[secret], MASK, "{secret}");
        }
        assert_eq!(shown["_id"], "kept");
        assert_eq!(shown["name"], "kept too");
        assert_eq!(envs["Key"], "s2", "the input is not changed");
    }

    #[test]
    fn words_are_text_not_patterns_and_none_masks_nothing() {
        let envs: BTreeMap<String, String> = [
            ("A.B".to_owned(), "v".to_owned()),
            ("AXB".to_owned(), "w".to_owned()),
        ]
        .into();
        let shown = redact_envs(&envs, &["a.b".to_owned()]);
        assert_eq!(shown["A.B"], MASK);
        assert_eq!(shown["AXB"], "w");
        assert_eq!(redact_envs(&envs, &[]), envs);
    }

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            url_without_password("postgres://fastlane:secret@db:5432/fastlane?x=1"),
            "postgres://fastlane:***@db:5432/fastlane?x=1"
        );
        assert_eq!(
            url_without_password("redis://db:6379/0"),
            "redis://db:6379/0"
        );
        assert_eq!(url_without_password("not a url"), "not a url");
        assert_eq!(
            url_without_password("unix:///run/redis.sock?db=1&pass=secret&user=u"),
            "unix:///run/redis.sock?db=1&pass=***&user=u"
        );
        assert_eq!(
            url_without_password("redis+sentinel://:secret@h1:1,h2:2/svc/0?wait_replicas=1"),
            "redis+sentinel://:***@h1:1,h2:2/svc/0?wait_replicas=1"
        );
    }

    fn words() -> Vec<String> {
        DEFAULT_BLACKLISTED_WORDS
            .split(',')
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn the_default_words_cover_the_names_people_use() {
        let words = words();
        for name in [
            "GITHUB_TOKEN",
            "DB_PASSWORD",
            "DB_PASSWD",
            "SESSION_COOKIE",
            "AWS_SECRET_ACCESS_KEY",
            "GOOGLE_APPLICATION_CREDENTIALS",
            "AUTH_HEADER",
            "PRIVATE_KEY",
            "SENTRY_DSN",
            "client_id",
        ] {
            assert!(is_secret_name(name, &words), "{name}");
        }
        for name in ["HOME", "LANG", "RUST_LOG", "TZ"] {
            assert!(!is_secret_name(name, &words), "{name}");
        }
    }

    #[test]
    fn credentials_in_urls_are_masked_by_word() {
        let words = words();
        assert_eq!(
            redact_url(
                "https://bot:hunter2@hooks.example/x?token=hunter2&id=7&Api%5FKey=k#frag",
                &words
            ),
            "https://bot:***@hooks.example/x?token=***&id=7&Api%5FKey=***#frag"
        );
        assert_eq!(
            redact_url("http://h/?access_token=t&session_id=s&q=1", &words),
            "http://h/?access_token=***&session_id=***&q=1"
        );
        assert_eq!(
            redact_url("http://user@h/", &words),
            "http://user@h/",
            "no password"
        );
        assert_eq!(redact_url("http://h?x=1", &words), "http://h?x=1");
    }

    #[test]
    fn webhook_headers_are_all_masked() {
        let hooks = WebhookTargets {
            finishes: vec![Webhook {
                url: "http://u:pw@h/?token=t".to_owned(),
                headers: [
                    ("Authorization".to_owned(), "Bearer x".to_owned()),
                    ("X-Team".to_owned(), "core".to_owned()),
                ]
                .into(),
                retries: 2,
                method: Some("PUT".to_owned()),
            }],
            ..WebhookTargets::default()
        };
        let shown = redact_webhooks(&hooks, &words());
        let hook = &shown.finishes[0];
        assert_eq!(hook.url, "http://u:***@h/?token=***");
        assert_eq!(hook.headers["Authorization"], MASK);
        assert_eq!(hook.headers["X-Team"], MASK);
        assert_eq!((hook.retries, hook.method.as_deref()), (2, Some("PUT")));
        assert_eq!(hooks.finishes[0].headers["X-Team"], "core");
    }
}
