//! The webhook egress policy as the server applies it at submission: a
//! hook whose URL holds a literal address the policy refuses
//! (`WEBHOOKS_ALLOW_LOCAL_NETWORK`, `WEBHOOKS_ALLOWED_HOSTS`) is a 400
//! naming the hook, the address and the setting that would allow it.
//! Host names pass here: the webhook notifier checks their addresses when
//! it resolves them, before each call and on each redirect.
//!
//! The policy itself lives in the webhook plugin
//! (`fastlane_plugin_webhook::egress`); without that plugin compiled in no
//! webhook is ever called, and every URL passes.

use fastlane_sdk::WebhookTargets;

#[cfg(feature = "plugin-webhook")]
pub use fastlane_plugin_webhook::egress::EgressPolicy;

/// Stands in for the webhook plugin's policy when it is compiled out
/// (opaque like it, so callers build it the same way in both builds).
#[cfg(not(feature = "plugin-webhook"))]
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    _opaque: (),
}

#[cfg(not(feature = "plugin-webhook"))]
impl EgressPolicy {
    /// Accepts any settings.
    pub fn new<S: AsRef<str>>(_allow_local: bool, _hosts: &[S]) -> Result<Self, String> {
        Ok(Self::default())
    }

    /// Splits a comma-separated list.
    pub fn split_list(text: &str) -> Vec<String> {
        text.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Accepts every URL.
    pub fn check_url(&self, _url: &str) -> Result<(), String> {
        Ok(())
    }
}

/// Whether a webhook may be submitted with `url` under `policy`; the error
/// names the address and the setting that would allow it.
pub fn check_webhook_url(url: &str, policy: &EgressPolicy) -> Result<(), String> {
    policy.check_url(url).map_err(|refused| refused.to_string())
}

/// [`check_webhook_url`] for every hook of a job; the error names the hook
/// (`webhooks.fails[0].url`).
pub fn check_webhooks(hooks: &WebhookTargets, policy: &EgressPolicy) -> Result<(), String> {
    for (event, list) in [
        ("starts", &hooks.starts),
        ("succeeds", &hooks.succeeds),
        ("fails", &hooks.fails),
        ("finishes", &hooks.finishes),
    ] {
        for (index, hook) in list.iter().enumerate() {
            check_webhook_url(&hook.url, policy)
                .map_err(|message| format!("webhooks.{event}[{index}].url: {message}"))?;
        }
    }
    Ok(())
}

#[cfg(all(test, feature = "plugin-webhook"))]
mod tests {
    use super::*;
    use fastlane_sdk::Webhook;

    fn hook(url: &str) -> Webhook {
        Webhook {
            url: url.to_owned(),
            headers: Default::default(),
            retries: 0,
            method: None,
        }
    }

    #[test]
    fn metadata_link_local_and_loopback_literals_are_refused_by_default() {
        let policy = EgressPolicy::default();
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[fe80::1]/",
            "http://127.0.0.1:8080/",
            "http://[::ffff:169.254.169.254]/",
            "http://10.0.0.1/",
        ] {
            let message = check_webhook_url(url, &policy).expect_err(url);
            assert!(message.contains("webhook address"), "{message}");
        }
        let loopback = check_webhook_url("http://127.0.0.1:8080/", &policy).expect_err("loopback");
        assert!(
            loopback.contains("127.0.0.1")
                && loopback.contains("WEBHOOKS_ALLOW_LOCAL_NETWORK=true")
                && loopback.contains("WEBHOOKS_ALLOWED_HOSTS"),
            "{loopback}"
        );
        assert_eq!(check_webhook_url("https://example.com/x", &policy), Ok(()));
        assert_eq!(check_webhook_url("http://localhost:1/", &policy), Ok(()));
    }

    #[test]
    fn allowed_local_addresses_pass_but_metadata_never_does() {
        let open = EgressPolicy::new::<&str>(true, &[]).expect("policy");
        assert_eq!(check_webhook_url("http://127.0.0.1:8080/", &open), Ok(()));
        assert!(check_webhook_url("http://169.254.169.254/", &open).is_err());
        let listed = EgressPolicy::new(false, &["127.0.0.1"]).expect("policy");
        assert_eq!(check_webhook_url("http://127.0.0.1:9/", &listed), Ok(()));
        assert!(check_webhook_url("http://127.0.0.2:9/", &listed).is_err());
    }

    #[test]
    fn the_error_names_the_hook() {
        let hooks = WebhookTargets {
            fails: vec![hook("https://example.com/"), hook("http://[fe80::1]/")],
            ..WebhookTargets::default()
        };
        let message = check_webhooks(&hooks, &EgressPolicy::default()).expect_err("refused");
        assert!(message.starts_with("webhooks.fails[1].url: "), "{message}");
        assert!(message.contains("fe80::1"), "{message}");
    }
}
