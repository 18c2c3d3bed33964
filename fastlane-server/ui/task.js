// A task: its jobs a page at a time, the most recently changed first, each
// with the status of its newest execution, optionally only those in one
// status (`GET /tasks/{taskId}/jobs?page=&status=`); a link to submit
// another job to it.

import { call, path } from "./api.js";
import { go, h, link, message, status, table, time } from "./dom.js";
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
  main.replaceChildren(
    h("p", { class: "crumbs" }, link("/ui/tasks", "Tasks"), " / "),
    h("h1", {}, "Task ", h("code", {}, taskId)),
    h("p", {}, link("/ui/submit?task=" + encodeURIComponent(taskId), "Submit a job to this task")),
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
