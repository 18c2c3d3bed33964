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
}
