//! What a container is created with: the job's image, command, envs and
//! labels, the limits it asked for within its farm's maximums, and the
//! hardening every container gets (never privileged, no new privileges, a
//! pids limit, the log's size limit) or its farm sets.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig};

use fastlane_sdk::{ExecutionSpec, PluginError};

use crate::executor::{DockerExecutor, FarmHosts, LABEL_EXECUTION, LABEL_JOB, LABEL_TASK};

/// Refuses a job asking for more CPUs or memory than `farm` allows,
/// naming the limit and the farm.
pub(crate) fn check_resources(
    farm: &FarmHosts,
    cpu_limit: Option<f64>,
    memory_limit: Option<u64>,
) -> Result<(), PluginError> {
    let settings = &farm.config;
    if let (Some(asked), Some(max)) = (cpu_limit, settings.max_cpu_limit)
        && asked > max
    {
        return Err(PluginError::permanent(format!(
            "cpuLimit {asked} is above the maxCpuLimit of {max} CPUs of docker farm {:?} \
             (DOCKER_HOSTS[{}])",
            farm.pattern, farm.index
        )));
    }
    if let (Some(asked), Some(max)) = (memory_limit, settings.max_memory_limit)
        && asked > max
    {
        return Err(PluginError::permanent(format!(
            "memoryLimit {asked} bytes is above the maxMemoryLimit of {max} bytes of docker \
             farm {:?} (DOCKER_HOSTS[{}])",
            farm.pattern, farm.index
        )));
    }
    Ok(())
}

impl DockerExecutor {
    /// What the container of `spec` is created with: the job's command,
    /// envs and limits (the farm's defaults for those it sets none), and
    /// the hardening every container gets (`no-new-privileges`, the pids
    /// limit, the log's size limit) or its farm sets (user, read-only root,
    /// network, capabilities dropped). Nothing a job sends reaches the
    /// privileged flag, mounts or devices.
    pub(crate) fn container_body(
        &self,
        spec: &ExecutionSpec,
        farm: &FarmHosts,
    ) -> ContainerCreateBody {
        let cpu_limit = spec.cpu_limit.or(farm.cpu_limit);
        let memory_limit = spec.memory_limit.or(farm.memory_limit);
        let labels = HashMap::from([
            (LABEL_EXECUTION.to_owned(), spec.execution_id.clone()),
            (LABEL_JOB.to_owned(), spec.job_id.clone()),
            (LABEL_TASK.to_owned(), spec.task_id.clone()),
        ]);
        let settings = &farm.config;
        let log_config = settings.log_max_size().map(|size| HostConfigLogConfig {
            typ: None,
            config: Some(HashMap::from([("max-size".to_owned(), size.to_owned())])),
        });
        ContainerCreateBody {
            image: Some(spec.image.clone()),
            cmd: Some(spec.argv.clone()),
            env: Some(spec.envs.iter().map(|(k, v)| format!("{k}={v}")).collect()),
            labels: Some(labels),
            user: settings.user.clone(),
            host_config: Some(HostConfig {
                extra_hosts: Some(
                    spec.extra_hosts
                        .iter()
                        .map(|(name, ip)| format!("{name}:{ip}"))
                        .collect(),
                ),
                privileged: Some(false),
                security_opt: Some(vec!["no-new-privileges".to_owned()]),
                // -1 says "unlimited" outright: left unset, the engine
                // applies its own default (Podman's is 2048).
                pids_limit: Some(match self.pids_limit {
                    0 => -1,
                    n => i64::try_from(n).unwrap_or(i64::MAX),
                }),
                log_config,
                readonly_rootfs: settings.read_only_rootfs.then_some(true),
                network_mode: settings.network.clone(),
                cap_drop: (!settings.cap_drop.is_empty()).then(|| settings.cap_drop.clone()),
                nano_cpus: cpu_limit.map(|cpus| (cpus * 1e9) as i64),
                memory: memory_limit.map(|bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}
