//! Images: references (`[registry[:port]/]name[:tag][@digest]`) and
//! pulling one onto a host.

use bollard::errors::Error as DockerError;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;

use fastlane_sdk::PluginError;

use crate::config::Farm;
use crate::host::Host;
use crate::registry::PullPolicy;

/// An image reference split the way the pull API wants it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    /// Everything before the tag (registry, port and path included), or the
    /// whole reference when it has a digest.
    pub name: String,
    /// The tag; `None` for digest references.
    pub tag: Option<String>,
}

impl ImageRef {
    /// Splits `reference`. A `:` counts as a tag separator only after the
    /// last `/`, so `registry:5000/app` has no tag (it means `latest`).
    pub fn parse(reference: &str) -> Self {
        if reference.contains('@') {
            return Self {
                name: reference.to_owned(),
                tag: None,
            };
        }
        let last_slash = reference.rfind('/').map_or(0, |i| i + 1);
        match reference[last_slash..].rfind(':') {
            Some(i) => Self {
                name: reference[..last_slash + i].to_owned(),
                tag: Some(reference[last_slash + i + 1..].to_owned()),
            },
            None => Self {
                name: reference.to_owned(),
                tag: Some("latest".to_owned()),
            },
        }
    }
}

/// Pulls `image` onto `host`, with the farm's login to its registry if
/// any; an image the registry refuses or does not have is a permanent
/// error naming it, with the registry's message.
pub(crate) async fn pull(host: &Host, image: &str, farm: &Farm) -> Result<(), PluginError> {
    let docker = host.client().await?;
    let (registry, login) = farm.login_for(image);
    let credentials = login.map(|login| login.credentials(registry));
    let reference = ImageRef::parse(image);
    let options = CreateImageOptions {
        from_image: Some(reference.name.clone()),
        tag: reference.tag.clone(),
        ..Default::default()
    };
    let mut progress = docker.create_image(Some(options), None, credentials);
    while let Some(step) = progress.next().await {
        match step {
            Ok(info) => {
                if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                    return Err(PluginError::permanent(format!(
                        "image {image:?} is not on docker host {} and could not be pulled: {detail}",
                        host.name
                    )));
                }
            }
            Err(DockerError::DockerResponseServerError { message, .. })
            | Err(DockerError::DockerStreamError { error: message }) => {
                return Err(PluginError::permanent(format!(
                    "image {image:?} is not on docker host {} and could not be pulled: {message}",
                    host.name
                )));
            }
            Err(other) => return Err(host.unavailable(&other)),
        }
    }
    Ok(())
}

/// Pulls an image a host lacks, unless the `pullPolicy` (the job's, else
/// its farm's) is `never`.
pub(crate) async fn pull_if_allowed(
    host: &Host,
    image: &str,
    farm: &Farm,
    policy: PullPolicy,
) -> Result<(), PluginError> {
    if policy == PullPolicy::Never {
        return Err(PluginError::permanent(format!(
            "image {image:?} is not on docker host {} and the pullPolicy is never",
            host.name
        )));
    }
    pull(host, image, farm).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(reference: &str) -> (String, Option<String>) {
        let r = ImageRef::parse(reference);
        (r.name, r.tag)
    }

    #[test]
    fn tags_registries_and_digests_split_correctly() {
        let latest = Some("latest".to_owned());
        assert_eq!(split("busybox"), ("busybox".into(), latest.clone()));
        assert_eq!(
            split("ubuntu:18.04"),
            ("ubuntu".into(), Some("18.04".into()))
        );
        assert_eq!(
            split("reg.example.com:5000/team/app:1.2"),
            ("reg.example.com:5000/team/app".into(), Some("1.2".into()))
        );
        assert_eq!(
            split("reg.example.com:5000/team/app"),
            ("reg.example.com:5000/team/app".into(), latest)
        );
        let digest = "app@sha256:0123456789abcdef";
        assert_eq!(split(digest), (digest.into(), None));
    }
}
