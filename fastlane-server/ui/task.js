// A task: its jobs, most recently changed first (`GET /tasks/{taskId}`),
// and a link to submit another job to it.

import { call, path } from "./api.js";
import { h, link, message, table, time } from "./dom.js";

const PER_PAGE = 50;

export async function render(main, [taskId], query) {
  const page = Math.max(1, parseInt(query.get("page") || "1", 10) || 1);
  const answer = await call(path("tasks", taskId));
  const jobs = answer.jobs || [];
  const pages = Math.max(1, Math.ceil(jobs.length / PER_PAGE));
  const shown = jobs.slice((page - 1) * PER_PAGE, page * PER_PAGE);
  const base = "/ui/tasks/" + encodeURIComponent(taskId);
  main.replaceChildren(
    h("p", { class: "crumbs" }, link("/ui/tasks", "Tasks"), " / "),
    h("h1", {}, "Task ", h("code", {}, taskId)),
    h("p", {}, link("/ui/submit?task=" + encodeURIComponent(taskId), "Submit a job to this task")),
    jobs.length === 0
      ? message("notice", "This task has no job.")
      : table(
          `${jobs.length} job${jobs.length === 1 ? "" : "s"}, most recently changed first`,
          ["Job", "Created"],
          shown.map((job) => [link(base + "/jobs/" + encodeURIComponent(job.id), h("code", {}, job.id)), time(job.createdAt)]),
        ),
    pages > 1
      ? h(
          "nav",
          { class: "pager", "aria-label": "Pages" },
          page > 1 ? link(base + "?page=" + (page - 1), "← Previous page") : null,
          h("span", {}, `Page ${page} of ${pages}`),
          page < pages ? link(base + "?page=" + (page + 1), "Next page →") : null,
        )
      : null,
  );
}
