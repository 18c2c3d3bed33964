//! The fake's kubelet: runs a pod's container on the real engine
//! (scheduling it first against the one node's labels, pulling its image),
//! writes down how it ended, and serves its log as the kubelet does: both
//! streams merged.

use std::sync::{Arc, PoisonError};
use std::time::Duration;

use anyhow::Context;
use poem::http::StatusCode;
use poem::{Body, Response};
use serde_json::{Value, json};

use super::api::{not_found, status};
use super::{NODE_LABELS, State, async_stream, now};

impl State {
    /// Runs the pod `name`: schedules it, pulls its image, runs its
    /// container on the engine and writes down how it ended.
    pub(super) async fn kubelet(self: Arc<Self>, ns: String, name: String) {
        let Some(pod) = self.pod(&ns, &name) else {
            return;
        };
        let spec = pod["spec"].clone();
        let fits = spec["nodeSelector"].as_object().is_none_or(|wanted| {
            wanted.iter().all(|(k, v)| {
                NODE_LABELS
                    .iter()
                    .any(|(nk, nv)| nk == k && v.as_str() == Some(nv))
            })
        });
        if !fits {
            self.update_pod(&ns, &name, |pod| {
                pod["status"]["conditions"] = json!([{
                    "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                    "message": "0/1 nodes are available: 1 node(s) didn't match Pod's node \
                                affinity/selector. preemption: 0/1 nodes are available.",
                    "lastTransitionTime": now()}]);
            });
            return;
        }
        let container = spec["containers"][0].clone();
        let image = container["image"].as_str().unwrap_or_default().to_owned();
        let waiting = |reason: &str, message: Option<String>| {
            json!([{"name": "job", "image": image, "imageID": "", "ready": false,
                    "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": message}}}])
        };
        self.update_pod(&ns, &name, |pod| {
            pod["status"]["conditions"] =
                json!([{"type": "PodScheduled", "status": "True", "lastTransitionTime": now()}]);
            pod["status"]["containerStatuses"] = waiting("ContainerCreating", None);
        });
        let never = container["imagePullPolicy"] == "Never";
        loop {
            if self.deleting(&ns, &name) {
                self.remove_pod(&ns, &name);
                return;
            }
            match self.ensure_image(&image, never).await {
                Ok(()) => break,
                Err(message) => {
                    let reason = if never {
                        "ErrImageNeverPull"
                    } else {
                        "ErrImagePull"
                    };
                    self.update_pod(&ns, &name, |pod| {
                        pod["status"]["containerStatuses"] = waiting(reason, Some(message));
                    });
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    self.update_pod(&ns, &name, |pod| {
                        pod["status"]["containerStatuses"] = waiting(
                            "ImagePullBackOff",
                            Some(format!("Back-off pulling image \"{image}\"")),
                        );
                    });
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
        let id = match self.run_container(&ns, &name, &pod, &container).await {
            Ok(id) => id,
            Err(err) => {
                self.update_pod(&ns, &name, |pod| {
                    pod["status"]["containerStatuses"] =
                        waiting("CreateContainerError", Some(format!("{err:#}")));
                });
                return;
            }
        };
        let started = now();
        self.update_pod(&ns, &name, |pod| {
            pod["status"]["phase"] = json!("Running");
            pod["status"]["containerStatuses"] = json!([{"name": "job", "image": image,
                "imageID": image, "ready": true, "restartCount": 0, "containerID": id,
                "state": {"running": {"startedAt": started}}}]);
        });
        let (code, oom) = self.wait_container(&id).await;
        let execution = pod["metadata"]["labels"]["fastlane.execution"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let told = self
            .reasons
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&execution);
        let reason = told.unwrap_or_else(|| {
            match (oom, code) {
                (true, _) => "OOMKilled",
                (false, 0) => "Completed",
                _ => "Error",
            }
            .to_owned()
        });
        self.update_pod(&ns, &name, |pod| {
            pod["status"]["phase"] = json!(if code == 0 { "Succeeded" } else { "Failed" });
            pod["status"]["containerStatuses"] = json!([{"name": "job", "image": image,
                "imageID": image, "ready": false, "restartCount": 0, "containerID": id,
                "state": {"terminated": {"exitCode": code, "reason": reason,
                                         "startedAt": started, "finishedAt": now()}}}]);
        });
        let job = pod["metadata"]["labels"]["job-name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.finish_job(&ns, &job, code == 0);
        if self.deleting(&ns, &name) {
            self.remove_pod(&ns, &name);
        }
    }

    /// Makes sure the engine has `image`, pulling it unless `never`.
    pub(super) async fn ensure_image(&self, image: &str, never: bool) -> Result<(), String> {
        let url = format!("{}/images/{image}/json", self.engine_url);
        let found = self
            .engine
            .get(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if found.status().is_success() {
            return Ok(());
        }
        if never {
            return Err(format!(
                "Container image \"{image}\" is not present with pull policy of Never"
            ));
        }
        let url = reqwest::Url::parse_with_params(
            &format!("{}/images/create", self.engine_url),
            [("fromImage", image)],
        )
        .map_err(|e| e.to_string())?;
        let pulled = self
            .engine
            .post(url)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let ok = pulled.status().is_success();
        let text = pulled.text().await.unwrap_or_default();
        // The engine streams progress; an error is in the body.
        if ok && !text.contains("\"error\"") {
            return Ok(());
        }
        Err(format!(
            "failed to pull and unpack image \"{image}\": {}",
            text.trim()
        ))
    }

    /// Creates and starts the container of pod `name`.
    pub(super) async fn run_container(
        &self,
        ns: &str,
        name: &str,
        pod: &Value,
        container: &Value,
    ) -> anyhow::Result<String> {
        let env: Vec<String> = container["env"]
            .as_array()
            .map(|env| {
                env.iter()
                    .map(|e| {
                        format!(
                            "{}={}",
                            e["name"].as_str().unwrap_or_default(),
                            e["value"].as_str().unwrap_or_default()
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let limits = &container["resources"]["limits"];
        let memory: i64 = limits["memory"]
            .as_str()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        let nano_cpus: i64 = limits["cpu"]
            .as_str()
            .and_then(|c| c.trim_end_matches('m').parse::<i64>().ok())
            .map_or(0, |milli| milli * 1_000_000);
        let extra_hosts: Vec<String> = pod["spec"]["hostAliases"]
            .as_array()
            .map(|aliases| {
                aliases
                    .iter()
                    .flat_map(|a| {
                        let ip = a["ip"].as_str().unwrap_or_default().to_owned();
                        a["hostnames"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default()
                            .into_iter()
                            .map(move |h| format!("{}:{ip}", h.as_str().unwrap_or_default()))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let body = json!({
            "Image": container["image"], "Cmd": container["args"], "Env": env,
            "Labels": {"fake-kube": self.id, "fake-kube.pod": name},
            "HostConfig": {"Memory": memory, "NanoCpus": nano_cpus, "ExtraHosts": extra_hosts},
        });
        let created: Value = self
            .engine
            .post(format!("{}/containers/create", self.engine_url))
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let id = created["Id"].as_str().context("container id")?.to_owned();
        self.lock()
            .containers
            .insert((ns.to_owned(), name.to_owned()), id.clone());
        self.engine
            .post(format!("{}/containers/{id}/start", self.engine_url))
            .send()
            .await?
            .error_for_status()?;
        Ok(id)
    }

    /// Waits for container `id` to exit: its code, and whether it was
    /// killed for memory.
    pub(super) async fn wait_container(&self, id: &str) -> (i64, bool) {
        let waited = self
            .engine
            .post(format!("{}/containers/{id}/wait", self.engine_url))
            .send()
            .await;
        if let Ok(response) = waited {
            let _ = response.bytes().await;
        }
        let inspected: Value = match self
            .engine
            .get(format!("{}/containers/{id}/json", self.engine_url))
            .send()
            .await
        {
            Ok(response) => response.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        let state = &inspected["State"];
        (
            state["ExitCode"].as_i64().unwrap_or(137),
            state["OOMKilled"].as_bool().unwrap_or(false),
        )
    }

    /// The log of pod `name`: both streams, merged, as the kubelet keeps
    /// it.
    pub(super) async fn log(
        &self,
        ns: &str,
        name: &str,
        follow: bool,
        limit: Option<u64>,
    ) -> Response {
        let key = (ns.to_owned(), name.to_owned());
        let (pod, container) = {
            let objects = self.lock();
            (
                objects.pods.get(&key).cloned(),
                objects.containers.get(&key).cloned(),
            )
        };
        let Some(pod) = pod else {
            return not_found("pods", name);
        };
        let Some(id) = container else {
            let reason = pod["status"]["containerStatuses"][0]["state"]["waiting"]["reason"]
                .as_str()
                .unwrap_or("ContainerCreating")
                .to_owned();
            return status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("container \"job\" in pod \"{name}\" is waiting to start: {reason}"),
            );
        };
        let url = format!(
            "{}/containers/{id}/logs?stdout=1&stderr=1&follow={follow}",
            self.engine_url
        );
        let response = match self.engine.get(url).send().await {
            Ok(response) if response.status().is_success() => response,
            _ => return not_found("pods", name),
        };
        let stream = async_stream(move |sender| async move {
            let mut response = response;
            let mut pending: Vec<u8> = Vec::new();
            let mut left = limit.unwrap_or(u64::MAX);
            while let Ok(Some(chunk)) = response.chunk().await {
                pending.extend_from_slice(&chunk);
                // Docker's multiplexed frames: 8 bytes of header (stream,
                // 0, 0, 0, length), then the payload.
                while pending.len() >= 8 {
                    let length =
                        u32::from_be_bytes([pending[4], pending[5], pending[6], pending[7]])
                            as usize;
                    if pending.len() < 8 + length {
                        break;
                    }
                    let mut payload: Vec<u8> = pending.drain(..8 + length).skip(8).collect();
                    payload.truncate(usize::try_from(left).unwrap_or(usize::MAX));
                    left -= payload.len() as u64;
                    if sender.send(Ok(payload)).await.is_err() || left == 0 {
                        return;
                    }
                }
            }
        });
        Response::builder()
            .content_type("text/plain")
            .body(Body::from_bytes_stream(stream))
    }
}
