//! Image references: `[registry[:port]/]name[:tag][@digest]`.

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
