//! The `text/plain` answers: progenitor hands the body of `…/stdout`,
//! `…/stderr` and `…/logs` over as a [`ByteStream`] and leaves their
//! `Fastlane-Exit-Code` header untyped; these read both.

use futures_util::TryStreamExt;
use reqwest::header::HeaderMap;

use crate::ByteStream;

/// Reads a whole `text/plain` body (bytes that are not UTF-8 become U+FFFD).
pub async fn text(body: ByteStream) -> Result<String, reqwest::Error> {
    let bytes: Vec<u8> = body
        .into_inner()
        .try_fold(Vec::new(), |mut all, chunk| async move {
            all.extend_from_slice(&chunk);
            Ok(all)
        })
        .await?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The `Fastlane-Exit-Code` header: the execution's exit code, `None` while
/// it has none (the server then sends the word `None`).
pub fn exit_code(headers: &HeaderMap) -> Option<i64> {
    headers
        .get("fastlane-exit-code")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderMap, HeaderValue};

    use super::{ByteStream, exit_code, text};

    fn headers(exit: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("Fastlane-Exit-Code", HeaderValue::from_static(exit));
        headers
    }

    #[test]
    fn a_finished_execution_has_its_exit_code_in_the_header() {
        assert_eq!(exit_code(&headers("0")), Some(0));
        assert_eq!(exit_code(&headers("137")), Some(137));
    }

    #[test]
    fn an_execution_that_has_not_exited_has_none() {
        assert_eq!(exit_code(&headers("None")), None);
        assert_eq!(exit_code(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn a_body_in_several_chunks_reads_as_one_text() -> Result<(), reqwest::Error> {
        let chunks = vec![
            Ok(bytes::Bytes::from_static(b"it ")),
            Ok(bytes::Bytes::from_static(b"works\n")),
        ];
        let body = ByteStream::new(Box::pin(futures_util::stream::iter(chunks)));
        assert_eq!(text(body).await?, "it works\n");
        Ok(())
    }
}
