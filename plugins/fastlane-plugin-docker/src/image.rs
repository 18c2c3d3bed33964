//! Images: references (`[registry[:port]/]name[:tag][@digest]`), making
//! one ready on a host, and pulling it there with its progress reported
//! layer by layer.

use std::collections::BTreeMap;

use bollard::errors::Error as DockerError;
use bollard::models::CreateImageInfo;
use bollard::query_parameters::CreateImageOptions;
use futures_util::StreamExt;
use tracing::debug;

use fastlane_sdk::{PluginError, Progress};

use crate::config::Farm;
use crate::errors::classify;
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

/// Makes `image` ready on `host` as the pull policy (the job's
/// `requested`, else the farm's) says: pulled every time for `always`;
/// otherwise inspected, and pulled only when the host lacks it.
pub(crate) async fn make_ready(
    host: &Host,
    image: &str,
    farm: &Farm,
    requested: Option<fastlane_sdk::PullPolicy>,
    progress: &dyn Progress,
) -> Result<(), PluginError> {
    let policy = farm.pull_policy_for(requested);
    if policy == PullPolicy::Always {
        pull(host, image, farm, progress).await?;
        host.saw_image(image, true);
        return Ok(());
    }
    // An image a healthy host held a moment ago is taken on trust: one
    // engine round trip less per execution (7 ms of the 12 between a
    // submission and its container on Podman, measured here). `start`
    // pulls it should it be gone after all.
    if host.circuit.fails() == 0 && host.holds_image(image) {
        return Ok(());
    }
    let docker = host.client().await?;
    match docker.inspect_image(image).await {
        Ok(_) => {}
        Err(DockerError::DockerResponseServerError {
            status_code: 404, ..
        }) => {
            debug!(host = %host.name, image, "image not present, pulling");
            pull_if_allowed(host, image, farm, policy, progress).await?;
        }
        Err(e) => return Err(classify(host, "inspecting the image", e)),
    }
    host.saw_image(image, true);
    Ok(())
}

/// Pulls `image` onto `host`, with the farm's login to its registry if
/// any, telling `progress` how many of its layers are downloaded; an image
/// the registry refuses or does not have is a permanent error naming it,
/// with the registry's message.
pub(crate) async fn pull(
    host: &Host,
    image: &str,
    farm: &Farm,
    progress: &dyn Progress,
) -> Result<(), PluginError> {
    let docker = host.client().await?;
    let (registry, login) = farm.login_for(image);
    let credentials = login.map(|login| login.credentials(registry));
    let reference = ImageRef::parse(image);
    let options = CreateImageOptions {
        from_image: Some(reference.name.clone()),
        tag: reference.tag.clone(),
        ..Default::default()
    };
    progress.report(&format!("pulling {image}"));
    let mut layers = Layers::default();
    let mut steps = docker.create_image(Some(options), None, credentials);
    while let Some(step) = steps.next().await {
        match step {
            Ok(info) => {
                if let Some(detail) = info.error_detail.as_ref().and_then(|d| d.message.clone()) {
                    return Err(PluginError::permanent(format!(
                        "image {image:?} is not on docker host {} and could not be pulled: {detail}",
                        host.name
                    )));
                }
                if layers.take(&info) {
                    progress.report(&layers.describe(image));
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
    progress: &dyn Progress,
) -> Result<(), PluginError> {
    if policy == PullPolicy::Never {
        return Err(PluginError::permanent(format!(
            "image {image:?} is not on docker host {} and the pullPolicy is never",
            host.name
        )));
    }
    pull(host, image, farm, progress).await
}

/// What a pull's progress messages said of its layers. Docker Engine and
/// Podman both name each layer (`id`) in messages such as `Pulling fs
/// layer`, `Downloading` (with bytes), `Download complete`, `Pull
/// complete` and `Already exists`.
#[derive(Debug, Default)]
struct Layers {
    layers: BTreeMap<String, Layer>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Layer {
    /// Bytes downloaded, and of how many (0 while unknown).
    current: u64,
    total: u64,
    downloaded: bool,
}

impl Layers {
    /// Takes one progress message; true when what [`Layers::describe`]
    /// says changed.
    fn take(&mut self, info: &CreateImageInfo) -> bool {
        let (Some(id), Some(status)) = (info.id.as_deref(), info.status.as_deref()) else {
            return false;
        };
        let downloaded = match status {
            "Pulling fs layer" | "Waiting" | "Downloading" | "Verifying Checksum" => false,
            "Download complete" | "Extracting" | "Pull complete" | "Already exists" => true,
            // `Pulling from <name>` (its id is the tag) and the like.
            _ => return false,
        };
        let before = self.layers.get(id).copied();
        let layer = self.layers.entry(id.to_owned()).or_default();
        layer.downloaded |= downloaded;
        if let Some(detail) = &info.progress_detail
            && status == "Downloading"
        {
            let bytes = |n: Option<i64>| n.and_then(|n| u64::try_from(n).ok());
            layer.current = bytes(detail.current).unwrap_or(layer.current);
            layer.total = bytes(detail.total).unwrap_or(layer.total);
        }
        if layer.downloaded {
            layer.current = layer.total;
        }
        before != Some(*layer)
    }

    /// `pulling <image>: 1 of 2 layers downloaded, 0.8 of 2.1 MB`.
    fn describe(&self, image: &str) -> String {
        let done = self.layers.values().filter(|l| l.downloaded).count();
        let mut text = format!(
            "pulling {image}: {done} of {} layers downloaded",
            self.layers.len()
        );
        let (current, total) = self
            .layers
            .values()
            .fold((0, 0), |(c, t), l| (c + l.current, t + l.total));
        if total > 0 {
            let mb = |n: u64| n as f64 / 1_000_000.0;
            text.push_str(&format!(", {:.1} of {:.1} MB", mb(current), mb(total)));
        }
        text
    }
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

    fn message(id: &str, status: &str, bytes: Option<(i64, i64)>) -> CreateImageInfo {
        CreateImageInfo {
            id: Some(id.into()),
            status: Some(status.into()),
            progress_detail: bytes.map(|(current, total)| bollard::models::ProgressDetail {
                current: Some(current),
                total: Some(total),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_pull_is_described_by_its_layers_as_docker_and_podman_report_them() {
        let mut layers = Layers::default();
        // Docker Engine: the tag's line first, then each layer.
        assert!(!layers.take(&message("1", "Pulling from private/bulky", None)));
        assert!(layers.take(&message("aaa", "Already exists", None)));
        assert!(layers.take(&message("bbb", "Pulling fs layer", None)));
        assert!(layers.take(&message("bbb", "Downloading", Some((500_000, 2_000_000)))));
        assert_eq!(
            layers.describe("r/bulky:1"),
            "pulling r/bulky:1: 1 of 2 layers downloaded, 0.5 of 2.0 MB"
        );
        assert!(layers.take(&message("bbb", "Download complete", None)));
        assert!(!layers.take(&message("bbb", "Extracting", Some((1, 2)))));
        assert!(!layers.take(&message("bbb", "Pull complete", None)));
        assert_eq!(
            layers.describe("r/bulky:1"),
            "pulling r/bulky:1: 2 of 2 layers downloaded, 2.0 of 2.0 MB"
        );
        // Podman: no byte counts.
        let mut layers = Layers::default();
        layers.take(&message("c21b", "Already exists", None));
        layers.take(&message("e869", "Pulling fs layer", None));
        assert_eq!(layers.describe("b"), "pulling b: 1 of 2 layers downloaded");
    }
}
