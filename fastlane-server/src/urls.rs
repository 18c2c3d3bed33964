//! Absolute URLs of tasks, jobs and executions, as responses and
//! notifications show them: on `PUBLIC_BASE_URL`, else on the request's
//! `Host` header. Every URL ends with a slash, as the original's did; the
//! server answers with and without it. The HTTP layer and the notifiers
//! both build them, so they live below both.

/// Builds the URLs of one response.
#[derive(Debug, Clone)]
pub struct Urls {
    base: String,
}

/// Percent-encodes one path segment (everything but RFC 3986 unreserved
/// characters).
fn segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

impl Urls {
    /// URLs for a response to a request that named `host` (its `Host`
    /// header).
    pub fn new(host: Option<&str>, public_base_url: Option<&str>) -> Self {
        let base = match public_base_url {
            Some(base) => base.to_owned(),
            None => {
                let host = host
                    .filter(|h| !h.is_empty() && !h.contains(['/', ' ']))
                    .unwrap_or("localhost");
                format!("http://{host}")
            }
        };
        Self { base }
    }

    /// URLs outside a request: on `PUBLIC_BASE_URL`, else on
    /// `http://localhost:10000`.
    pub fn with_base(public_base_url: Option<&str>) -> Self {
        Self {
            base: public_base_url
                .unwrap_or("http://localhost:10000")
                .trim_end_matches('/')
                .to_owned(),
        }
    }

    /// `…/tasks/?page=N`.
    pub fn tasks_page(&self, page: u64) -> String {
        format!("{}/tasks/?page={page}", self.base)
    }

    /// `…/search/?query=Q&page=N`.
    pub fn search_page(&self, query: &str, page: u64) -> String {
        format!("{}/search/?query={}&page={page}", self.base, segment(query))
    }

    /// `…/tasks/<task>/`.
    pub fn task(&self, task_id: &str) -> String {
        format!("{}/tasks/{}/", self.base, segment(task_id))
    }

    /// `…/tasks/<task>/jobs/<job>/`.
    pub fn job(&self, task_id: &str, job_id: &str) -> String {
        format!("{}jobs/{}/", self.task(task_id), segment(job_id))
    }

    /// `…/tasks/<task>/jobs/<job>/executions/<execution>/`.
    pub fn execution(&self, task_id: &str, job_id: &str, execution_id: &str) -> String {
        format!(
            "{}executions/{}/",
            self.job(task_id, job_id),
            segment(execution_id)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_use_the_host_or_the_configured_base_and_encode_segments() {
        let urls = Urls::new(Some("fl.local:10000"), None);
        assert_eq!(urls.task("a b/c"), "http://fl.local:10000/tasks/a%20b%2Fc/");
        assert_eq!(
            urls.execution("t", "j", "e"),
            "http://fl.local:10000/tasks/t/jobs/j/executions/e/"
        );
        let urls = Urls::new(Some("fl.local:10000"), Some("https://fastlane.example.com"));
        assert_eq!(
            urls.tasks_page(2),
            "https://fastlane.example.com/tasks/?page=2"
        );
    }
}
