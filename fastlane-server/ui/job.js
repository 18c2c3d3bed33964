// A job: its spec (secrets masked by the API), its executions, the output
// of the one chosen (the newest by default, followed live while it runs),
// and the actions: stop the job, retry it, stop one execution.

import { call, path } from "./api.js";
import { actionButton, duration, h, link, message, status, table, time } from "./dom.js";
import { viewer } from "./log.js";

export async function render(main, [taskId, jobId], query) {
  const jobPath = path("tasks", taskId, "jobs", jobId);
  const taskHref = "/ui/tasks/" + encodeURIComponent(taskId);
  const here = taskHref + "/jobs/" + encodeURIComponent(jobId);
  const out = h("div", { id: "job-action", "aria-live": "polite" });
  const body = h("div", {});
  main.replaceChildren(
    h("p", { class: "crumbs" }, link("/ui/tasks", "Tasks"), " / ", link(taskHref, taskId), " / "),
    h("h1", {}, "Job ", h("code", {}, jobId)),
    out,
    body,
  );
  let output = null;
  let stopped = false;

  async function load() {
    const { job } = await call(jobPath);
    if (stopped) return;
    const executions = job.executions || [];
    const chosenId = query.get("execution") || (executions[0] && executions[0].executionId);
    const chosen = executions.find((e) => e.executionId === chosenId) || null;
    // Why the execution shown has not started, while it waits for a slot.
    const waiting =
      chosen && chosen.status === "enqueued"
        ? (await call(jobPath + "/executions/" + encodeURIComponent(chosen.executionId))).waiting
        : null;
    if (stopped) return;
    // The viewer of the execution shown stays across reloads (after its
    // end, or an action): it already holds what it followed.
    if (!output || !chosen || output.executionId !== chosen.executionId) {
      if (output) output.stop();
      output = chosen ? viewer(taskId, jobId, chosen, () => setTimeout(reload, 300)) : null;
    }
    body.replaceChildren(
      h(
        "div",
        { class: "actions" },
        actionButton("Stop the job", "Its running execution is stopped, and a cron job stops firing.", async () => {
          await call(jobPath + "/stop", { method: "POST" });
          setTimeout(reload, 300);
          return "The job was stopped.";
        }, out),
        actionButton("Retry the job", "A new execution of the job is queued now.", async () => {
          await call(jobPath + "/retry", { method: "POST" });
          setTimeout(reload, 300);
          return "A new execution was queued.";
        }, out),
      ),
      spec(job),
      table(
        `Executions (${job.executionCount} in all${job.executionCount > executions.length ? ", the newest " + executions.length + " shown" : ""})`,
        ["Execution", "Status", "Exit code", "Host", "Started", "Duration", "Action"],
        executions.map((e) => [
          e.executionId === chosenId
            ? h("strong", { "aria-current": "true" }, h("code", {}, e.executionId.slice(0, 8)), " (shown)")
            : link(here + "?execution=" + encodeURIComponent(e.executionId), h("code", {}, e.executionId.slice(0, 8))),
          status(e.status),
          e.exitCode === null || e.exitCode === undefined ? "—" : String(e.exitCode),
          (e.metadata && e.metadata.docker_host) || "—",
          time(e.startedAt),
          duration(e.startedAt, e.finishedAt),
          ["enqueued", "pulling", "running"].includes(e.status)
            ? actionButton("Stop", `Execution ${e.executionId} is stopped.`, async () => {
                await call(jobPath + "/executions/" + encodeURIComponent(e.executionId) + "/stop", { method: "POST" });
                setTimeout(reload, 300);
                return "The execution was stopped.";
              }, out)
            : "",
        ]),
      ),
      chosen
        ? h(
            "section",
            { "aria-labelledby": "output-title" },
            h("h2", { id: "output-title" }, "Output of ", h("code", {}, chosen.executionId.slice(0, 8)), " ", status(chosen.status)),
            // (A done execution's `error` is its stderr, shown below.)
            chosen.error && chosen.status !== "done" ? message("error", "Error: " + chosen.error) : null,
            waiting ? message("notice", waitingText(waiting)) : null,
            output.element,
          )
        : message("notice", "No execution yet."),
    );
  }

  async function reload() {
    if (stopped) return;
    try {
      await load();
    } catch (error) {
      out.replaceChildren(message("error", error.message));
    }
  }

  await load();
  return () => {
    stopped = true;
    if (output) output.stop();
  };
}

/// "Waiting: …" for an execution in line.
function waitingText({ gate, reason, ahead }) {
  const why = {
    paused: `${gate} is paused`,
    full: `every slot of ${gate} is taken`,
    rate: `the rate limit of ${gate} has no start left this moment`,
    turn: `executions before it take the room ${gate} has`,
  }[reason] || `${gate}: ${reason}`;
  return `Waiting: ${why}; ${ahead} ${ahead === 1 ? "execution goes" : "executions go"} before it.`;
}

function spec(job) {
  const m = job.metadata || {};
  const rows = [
    ["Image", h("code", {}, job.image)],
    ["Command", h("code", {}, job.command)],
    ["Schedule", job.cron ? h("code", {}, job.cron + (job.cronTimezone ? " (" + job.cronTimezone + ")" : "")) : job.nextRunAt ? "once, later" : "now"],
    ["Next run", job.nextRunAt ? time(job.nextRunAt) : "—"],
    ["Retries", `${m.retry_count ?? 0} of ${m.retries ?? 0} used`],
    ["Timeout", m.timeout ? m.timeout + " s" : "—"],
    ["Created", time(job.createdAt)],
  ];
  const envs = Object.entries(m.envs || {});
  return h(
    "section",
    { "aria-labelledby": "spec-title" },
    h("h2", { id: "spec-title" }, "Spec"),
    h("dl", { class: "spec" }, rows.map(([name, value]) => [h("dt", {}, name), h("dd", {}, value)])),
    envs.length
      ? table("Environment (secrets masked)", ["Name", "Value"], envs.map(([k, v]) => [h("code", {}, k), h("code", {}, String(v))]))
      : null,
  );
}
