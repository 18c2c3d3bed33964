// A task: its jobs a page at a time, the most recently changed first, each
// with the status of its newest execution, optionally only those in one
// status (`GET /tasks/{taskId}/jobs?page=&status=`); a link to submit
// another job to it.

import { call, path } from "./api.js";
import { actionButton, go, h, link, message, status, table, time } from "./dom.js";
import { pager } from "./tasks.js";

const STATUSES = ["enqueued", "pulling", "running", "done", "failed", "timedout", "expired", "stopped"];

export async function render(main, [taskId], query) {
  const page = Math.max(1, parseInt(query.get("page") || "1", 10) || 1);
  const only = STATUSES.includes(query.get("status")) ? query.get("status") : "";
  const base = "/ui/tasks/" + encodeURIComponent(taskId);
  const here = (n, s = only) => base + "?" + new URLSearchParams(s ? { status: s, page: n } : { page: n });
  const answer = await call(path("tasks", taskId, "jobs") + "?" + new URLSearchParams(only ? { page, status: only } : { page }));

  const filter = h(
    "select",
    { id: "status-filter", name: "status" },
    h("option", { value: "", selected: !only }, "any status"),
    STATUSES.map((s) => h("option", { value: s, selected: s === only }, s)),
  );
  filter.addEventListener("change", () => go(here(1, filter.value)));
  const out = h("div", { id: "task-action", "aria-live": "polite" });
  const verb = answer.paused ? "resume" : "pause";
  const toggle = actionButton(
    answer.paused ? "Resume the task" : "Pause the task",
    answer.paused
      ? "Its waiting executions start in their order, as slots allow."
      : "Nothing of this task starts until it is resumed; new jobs are accepted and wait.",
    async () => {
      await call(path("tasks", taskId, verb), { method: "POST" });
      setTimeout(() => go(here(page)), 300);
      return answer.paused ? "The task was resumed." : "The task was paused.";
    },
    out,
  );
  main.replaceChildren(
    h("p", { class: "crumbs" }, link("/ui/tasks", "Tasks"), " / "),
    h("h1", {}, "Task ", h("code", {}, taskId)),
    answer.paused ? message("notice", "This task is paused: its jobs wait, nothing of it starts.") : null,
    h("div", { class: "actions" }, link("/ui/submit?task=" + encodeURIComponent(taskId), "Submit a job to this task"), " ", toggle),
    out,
    h("div", { class: "inline" }, h("label", { for: "status-filter" }, "Newest execution "), filter),
    answer.items.length === 0
      ? message("notice", only ? `No job of this task is ${only}.` : "This task has no job.")
      : table(
          `${answer.total} job${answer.total === 1 ? "" : "s"}${only ? " " + only : ""}, most recently changed first`,
          ["Job", "Newest execution", "Exit code", "Schedule", "Next run", "Changed"],
          answer.items.map((job) => [
            link(base + "/jobs/" + encodeURIComponent(job.jobId), h("code", {}, job.jobId)),
            job.newest ? status(job.newest.status) : "none yet",
            job.newest && job.newest.exitCode !== undefined ? String(job.newest.exitCode) : "—",
            job.cron ? h("code", {}, job.cron) : job.nextRunAt ? "once" : "now",
            job.nextRunAt ? time(job.nextRunAt) : "—",
            time(job.lastModifiedAt),
          ]),
        ),
    pager({ page: answer.page, pages: answer.pages, hasPrev: !!answer.prevUrl, hasNext: !!answer.nextUrl }, (n) => here(n)),
  );
}
