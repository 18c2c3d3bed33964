//! Hiding secrets: env values whose names contain a blacklisted word
//! (`ENV_BLACKLISTED_WORDS`) are shown as `***`.

use std::collections::BTreeMap;

/// What a redacted value is replaced with.
pub const MASK: &str = "***";

/// A copy of `envs` with the values of secret-looking names masked. Words
/// match anywhere in the name, ignoring case, and are plain text (not
/// patterns); no words means nothing is masked.
pub fn redact_envs(envs: &BTreeMap<String, String>, words: &[String]) -> BTreeMap<String, String> {
    envs.iter()
        .map(|(name, value)| {
            let lower = name.to_lowercase();
            let secret = words.iter().any(|w| lower.contains(w.as_str()));
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

/// `url` with its password (if any) shown as `***`, for logs and errors:
/// the one in the user info and the value of a `pass` or `password` query
/// parameter (a `unix://` Redis URL carries it there).
pub fn url_without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let path = query_without_password(path);
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

/// `path?query#fragment` with `pass` and `password` values masked.
fn query_without_password(path: &str) -> String {
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
            Some((name, _)) if matches!(name, "pass" | "password") => format!("{name}={MASK}"),
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
}
