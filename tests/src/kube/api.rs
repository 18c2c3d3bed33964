//! The fake's API: routing a request, the objects' store and its watches,
//! and the Job controller (a Job's pod, its deadline, its end, its
//! deletion).

use std::collections::HashMap;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use poem::http::StatusCode;
use poem::web::Data;
use poem::{Body, Request, Response, handler};
use serde_json::{Value, json};

use super::{Change, Objects, State, TOKEN, async_stream, now};

/// A `Status` answer, as the API server sends errors.
pub(super) fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
    });
    Response::builder()
        .status(code)
        .content_type("application/json")
        .body(body.to_string())
}

fn ok(code: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(code)
        .content_type("application/json")
        .body(body.to_string())
}

/// True when `labels` fit a label selector (`k=v`, `k==v`, `k!=v`, `k`).
fn selects(selector: &str, labels: &Value) -> bool {
    selector.split(',').filter(|s| !s.is_empty()).all(|term| {
        if let Some((key, value)) = term.split_once("!=") {
            labels[key].as_str() != Some(value)
        } else if let Some((key, value)) = term.split_once('=') {
            labels[key].as_str() == Some(value.trim_start_matches('='))
        } else {
            labels.get(term).is_some()
        }
    })
}

fn query(request: &Request) -> HashMap<String, String> {
    request
        .uri()
        .query()
        .map(|q| {
            url_pairs(q)
                .into_iter()
                .collect::<HashMap<String, String>>()
        })
        .unwrap_or_default()
}

fn url_pairs(query: &str) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{query}"))
        .map(|url| url.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

#[handler]
pub(super) async fn serve(
    request: &Request,
    body: Body,
    Data(state): Data<&Arc<State>>,
) -> Response {
    let body = body.into_vec().await.unwrap_or_default();
    state
        .requests
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(format!(
            "{} {} {}",
            request.method(),
            request.uri(),
            String::from_utf8_lossy(&body)
        ));
    let authorized = request
        .header("authorization")
        .is_some_and(|h| h == format!("Bearer {TOKEN}"));
    if !authorized {
        return status(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized");
    }
    let path: Vec<&str> = request.uri().path().trim_matches('/').split('/').collect();
    let params = query(request);
    let method = request.method().as_str();
    match (method, path.as_slice()) {
        ("GET", ["version"]) => ok(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake",
                    "gitCommit": "", "gitTreeState": "clean", "buildDate": now(),
                    "goVersion": "", "compiler": "", "platform": "linux/amd64"}),
        ),
        ("POST", ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => {
            match serde_json::from_slice(&body) {
                Ok(job) => state.create_job(ns, job),
                Err(err) => status(StatusCode::BAD_REQUEST, "BadRequest", &err.to_string()),
            }
        }
        ("GET", ["apis", "batch", "v1", "namespaces", ns, "jobs"]) => {
            let selector = params.get("labelSelector").cloned().unwrap_or_default();
            state.list("jobs", ns, &selector, "JobList", "batch/v1")
        }
        ("GET", ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
            let objects = state.lock();
            match objects.jobs.get(&((*ns).to_owned(), (*name).to_owned())) {
                Some(job) => ok(StatusCode::OK, job),
                None => not_found("jobs.batch", name),
            }
        }
        ("DELETE", ["apis", "batch", "v1", "namespaces", ns, "jobs", name]) => {
            let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let grace = options["gracePeriodSeconds"].as_u64().unwrap_or(30);
            state.delete_job(ns, name, grace)
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods"]) => {
            let selector = params.get("labelSelector").cloned().unwrap_or_default();
            let watching = params.get("watch").is_some_and(|w| w == "true" || w == "1");
            if watching {
                let from = params
                    .get("resourceVersion")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let timeout = params
                    .get("timeoutSeconds")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(300);
                state.watch_pods(ns, &selector, from, Duration::from_secs(timeout))
            } else {
                state.list("pods", ns, &selector, "PodList", "v1")
            }
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods", name]) => {
            let objects = state.lock();
            match objects.pods.get(&((*ns).to_owned(), (*name).to_owned())) {
                Some(pod) => ok(StatusCode::OK, pod),
                None => not_found("pods", name),
            }
        }
        ("DELETE", ["api", "v1", "namespaces", ns, "pods", name]) => {
            let options: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let grace = options["gracePeriodSeconds"].as_u64().unwrap_or(30);
            match state.delete_pod(ns, name, grace) {
                Some(pod) => ok(StatusCode::OK, &pod),
                None => not_found("pods", name),
            }
        }
        ("GET", ["api", "v1", "namespaces", ns, "pods", name, "log"]) => {
            let follow = params.get("follow").is_some_and(|f| f == "true");
            let limit = params.get("limitBytes").and_then(|l| l.parse().ok());
            state.log(ns, name, follow, limit).await
        }
        _ => status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!(
                "the fake API server has no {method} {}",
                request.uri().path()
            ),
        ),
    }
}

pub(super) fn not_found(what: &str, name: &str) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{what} \"{name}\" not found"),
    )
}

impl State {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, Objects> {
        self.objects.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `object` at a new resource version and tells the watches.
    pub(super) fn changed(
        &self,
        objects: &mut Objects,
        kind: &'static str,
        namespace: &str,
        change: &'static str,
        mut object: Value,
    ) -> Value {
        objects.version += 1;
        object["metadata"]["resourceVersion"] = json!(objects.version.to_string());
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let key = (namespace.to_owned(), name);
        let map = if kind == "pods" {
            &mut objects.pods
        } else {
            &mut objects.jobs
        };
        if change == "DELETED" {
            map.remove(&key);
        } else {
            map.insert(key, object.clone());
        }
        let change = Change {
            version: objects.version,
            kind,
            namespace: namespace.to_owned(),
            kind_of_change: change,
            object: object.clone(),
        };
        objects.history.push(change.clone());
        let _ = self.changes.send(change);
        object
    }

    pub(super) fn list(
        &self,
        kind: &str,
        ns: &str,
        selector: &str,
        list_kind: &str,
        api: &str,
    ) -> Response {
        let objects = self.lock();
        let map = if kind == "pods" {
            &objects.pods
        } else {
            &objects.jobs
        };
        let items: Vec<&Value> = map
            .iter()
            .filter(|((namespace, _), object)| {
                namespace == ns && selects(selector, &object["metadata"]["labels"])
            })
            .map(|(_, object)| object)
            .collect();
        ok(
            StatusCode::OK,
            &json!({"apiVersion": api, "kind": list_kind,
                    "metadata": {"resourceVersion": objects.version.to_string()},
                    "items": items}),
        )
    }

    pub(super) fn watch_pods(
        &self,
        ns: &str,
        selector: &str,
        from: u64,
        timeout: Duration,
    ) -> Response {
        let mut live = self.changes.subscribe();
        let past: Vec<Change> = self
            .lock()
            .history
            .iter()
            .filter(|c| c.version > from)
            .cloned()
            .collect();
        let (ns, selector) = (ns.to_owned(), selector.to_owned());
        let fits = move |change: &Change| {
            change.kind == "pods"
                && change.namespace == ns
                && selects(&selector, &change.object["metadata"]["labels"])
        };
        let line = |change: &Change| {
            let event = json!({"type": change.kind_of_change, "object": change.object});
            Ok::<_, std::io::Error>(format!("{event}\n").into_bytes())
        };
        let stream = async_stream(move |sender| async move {
            let mut last = from;
            for change in past.iter().filter(|c| fits(c)) {
                last = change.version;
                if sender.send(line(change)).await.is_err() {
                    return;
                }
            }
            let ends = tokio::time::sleep(timeout);
            tokio::pin!(ends);
            loop {
                tokio::select! {
                    () = &mut ends => return,
                    change = live.recv() => match change {
                        Ok(change) if change.version > last && fits(&change) => {
                            last = change.version;
                            if sender.send(line(&change)).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                        Err(_) => return,
                    },
                }
            }
        });
        Response::builder()
            .content_type("application/json")
            .body(Body::from_bytes_stream(stream))
    }

    pub(super) fn create_job(self: &Arc<Self>, ns: &str, mut job: Value) -> Response {
        let name = job["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let mut objects = self.lock();
        if objects.jobs.contains_key(&(ns.to_owned(), name.clone())) {
            return status(
                StatusCode::CONFLICT,
                "AlreadyExists",
                &format!("jobs.batch \"{name}\" already exists"),
            );
        }
        let uid = uuid::Uuid::new_v4().to_string();
        job["metadata"]["namespace"] = json!(ns);
        job["metadata"]["uid"] = json!(uid);
        job["metadata"]["creationTimestamp"] = json!(now());
        job["status"] = json!({"active": 1, "startTime": now()});
        let job = self.changed(&mut objects, "jobs", ns, "ADDED", job);

        let template = &job["spec"]["template"];
        let suffix: String = uuid::Uuid::new_v4().simple().to_string()[..5].to_owned();
        let pod_name = format!("{name}-{suffix}");
        let mut labels = template["metadata"]["labels"].clone();
        labels["job-name"] = json!(name);
        labels["batch.kubernetes.io/job-name"] = json!(name);
        labels["controller-uid"] = json!(uid);
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": pod_name, "namespace": ns, "uid": uuid::Uuid::new_v4().to_string(),
                "creationTimestamp": now(), "labels": labels,
                "annotations": template["metadata"]["annotations"],
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name,
                                     "uid": uid, "controller": true}],
            },
            "spec": template["spec"],
            "status": {"phase": "Pending", "conditions": []},
        });
        self.changed(&mut objects, "pods", ns, "ADDED", pod);
        drop(objects);
        tokio::spawn(Arc::clone(self).kubelet(ns.to_owned(), pod_name));
        if let Some(deadline) = job["spec"]["activeDeadlineSeconds"].as_u64() {
            tokio::spawn(Arc::clone(self).deadline(ns.to_owned(), name, deadline));
        }
        ok(StatusCode::CREATED, &job)
    }

    /// Changes the pod `name` with `change`, if it still exists; its new
    /// state.
    pub(super) fn update_pod(
        &self,
        ns: &str,
        name: &str,
        change: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let mut objects = self.lock();
        let mut pod = objects.pods.get(&(ns.to_owned(), name.to_owned()))?.clone();
        change(&mut pod);
        Some(self.changed(&mut objects, "pods", ns, "MODIFIED", pod))
    }

    pub(super) fn update_job(&self, ns: &str, name: &str, change: impl FnOnce(&mut Value)) {
        let mut objects = self.lock();
        if let Some(job) = objects.jobs.get(&(ns.to_owned(), name.to_owned())) {
            let mut job = job.clone();
            change(&mut job);
            self.changed(&mut objects, "jobs", ns, "MODIFIED", job);
        }
    }

    pub(super) fn pod(&self, ns: &str, name: &str) -> Option<Value> {
        self.lock()
            .pods
            .get(&(ns.to_owned(), name.to_owned()))
            .cloned()
    }

    pub(super) fn deleting(&self, ns: &str, name: &str) -> bool {
        self.pod(ns, name)
            .is_none_or(|pod| pod["metadata"].get("deletionTimestamp").is_some())
    }

    /// Writes down that the Job `name` ended (unless it already failed).
    pub(super) fn finish_job(self: &Arc<Self>, ns: &str, name: &str, succeeded: bool) {
        let mut ttl = None;
        self.update_job(ns, name, |job| {
            if job["status"].get("conditions").is_some() {
                return;
            }
            ttl = job["spec"]["ttlSecondsAfterFinished"].as_u64();
            job["status"]["active"] = json!(0);
            job["status"]["completionTime"] = json!(now());
            if succeeded {
                job["status"]["succeeded"] = json!(1);
                job["status"]["conditions"] = json!([{"type": "Complete", "status": "True"}]);
            } else {
                job["status"]["failed"] = json!(1);
                job["status"]["conditions"] = json!([{"type": "Failed", "status": "True",
                    "reason": "BackoffLimitExceeded",
                    "message": "Job has reached the specified backoff limit"}]);
            }
        });
        if let Some(ttl) = ttl {
            let (state, ns, name) = (Arc::clone(self), ns.to_owned(), name.to_owned());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_secs(ttl)).await;
                state.delete_job(&ns, &name, 0);
            });
        }
    }

    /// The Job controller's deadline: past it, an unfinished Job fails
    /// with `DeadlineExceeded` and its pod is deleted.
    pub(super) async fn deadline(self: Arc<Self>, ns: String, name: String, seconds: u64) {
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        let mut failed = false;
        self.update_job(&ns, &name, |job| {
            if job["status"].get("conditions").is_some() {
                return;
            }
            failed = true;
            job["status"]["active"] = json!(0);
            job["status"]["failed"] = json!(1);
            job["status"]["conditions"] = json!([{"type": "Failed", "status": "True",
                "reason": "DeadlineExceeded",
                "message": "Job was active longer than specified deadline"}]);
        });
        if failed {
            for pod in self.pods_of(&ns, &name) {
                self.delete_pod(&ns, &pod, 0);
            }
        }
    }

    pub(super) fn pods_of(&self, ns: &str, job: &str) -> Vec<String> {
        self.lock()
            .pods
            .iter()
            .filter(|((namespace, _), pod)| {
                namespace == ns && pod["metadata"]["labels"]["job-name"] == job
            })
            .map(|((_, name), _)| name.clone())
            .collect()
    }

    /// Deletes a pod: one whose container runs gets `deletionTimestamp`
    /// and is stopped within `grace` (its kubelet then removes it); any
    /// other goes at once. Returns the pod, `None` when there is none.
    pub(super) fn delete_pod(&self, ns: &str, name: &str, grace: u64) -> Option<Value> {
        let key = (ns.to_owned(), name.to_owned());
        let (pod, container) = {
            let objects = self.lock();
            (
                objects.pods.get(&key).cloned()?,
                objects.containers.get(&key).cloned(),
            )
        };
        let running = pod["status"]["containerStatuses"][0]["state"]
            .get("running")
            .is_some();
        match container {
            Some(id) if running => {
                let pod = self.update_pod(ns, name, |pod| {
                    pod["metadata"]["deletionTimestamp"] = json!(now());
                    pod["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
                });
                let (engine, url) = (self.engine.clone(), self.engine_url.clone());
                tokio::spawn(async move {
                    let _ = engine
                        .post(format!("{url}/containers/{id}/stop?t={grace}"))
                        .send()
                        .await;
                });
                pod
            }
            _ => {
                self.update_pod(ns, name, |pod| {
                    pod["metadata"]["deletionTimestamp"] = json!(now());
                });
                self.remove_pod(ns, name);
                Some(pod)
            }
        }
    }

    /// Removes the pod `name` and its container.
    pub(super) fn remove_pod(&self, ns: &str, name: &str) {
        let key = (ns.to_owned(), name.to_owned());
        let container = {
            let mut objects = self.lock();
            let Some(pod) = objects.pods.get(&key).cloned() else {
                return;
            };
            self.changed(&mut objects, "pods", ns, "DELETED", pod);
            objects.containers.remove(&key)
        };
        if let Some(id) = container {
            let (engine, url) = (self.engine.clone(), self.engine_url.clone());
            tokio::spawn(async move {
                let _ = engine
                    .delete(format!("{url}/containers/{id}?force=true"))
                    .send()
                    .await;
            });
        }
    }

    /// Deletes the Job `name` and its pods (foreground: the Job goes once
    /// they are gone).
    pub(super) fn delete_job(self: &Arc<Self>, ns: &str, name: &str, grace: u64) -> Response {
        let job = {
            let mut objects = self.lock();
            let Some(job) = objects.jobs.get(&(ns.to_owned(), name.to_owned())).cloned() else {
                return not_found("jobs.batch", name);
            };
            let mut job = job;
            job["metadata"]["deletionTimestamp"] = json!(now());
            job["metadata"]["finalizers"] = json!(["foregroundDeletion"]);
            self.changed(&mut objects, "jobs", ns, "MODIFIED", job)
        };
        for pod in self.pods_of(ns, name) {
            self.delete_pod(ns, &pod, grace);
        }
        let (state, ns, name) = (Arc::clone(self), ns.to_owned(), name.to_owned());
        tokio::spawn(async move {
            while !state.pods_of(&ns, &name).is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let mut objects = state.lock();
            if let Some(job) = objects.jobs.get(&(ns.clone(), name)).cloned() {
                state.changed(&mut objects, "jobs", &ns, "DELETED", job);
            }
        });
        ok(StatusCode::OK, &job)
    }
}
