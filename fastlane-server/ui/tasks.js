// Tasks: every task a page at a time (`GET /tasks?page=`), or those whose
// id holds a word (`GET /search?query=`), with their job counts and the
// status of each task's newest execution.

import { call } from "./api.js";
import { go, h, link, message, status, table, time } from "./dom.js";

export async function render(main, _params, query) {
  const words = query.get("q") || "";
  const page = Math.max(1, parseInt(query.get("page") || "1", 10) || 1);
  const search = h("input", { id: "task-search", name: "q", type: "search", value: words, "aria-describedby": "search-hint" });
  const form = h(
    "form",
    { role: "search", class: "inline" },
    h("label", { for: "task-search" }, "Find tasks"),
    search,
    h("button", { type: "submit" }, "Search"),
    h("span", { id: "search-hint", class: "hint" }, "A word of the task id; empty lists them all."),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = search.value.trim();
    go("/ui/tasks" + (q ? "?q=" + encodeURIComponent(q) : ""));
  });
  const results = h("div", {}, message("notice", "Loading…"));
  main.replaceChildren(h("h1", {}, "Tasks"), form, results);

  const answer = words
    ? await call("/search?query=" + encodeURIComponent(words) + "&page=" + page)
    : await call("/tasks?page=" + page);
  if (answer.items.length === 0) {
    results.replaceChildren(message("notice", words ? `No task matches “${words}”.` : "No task yet."));
    return;
  }
  const here = (n) => "/ui/tasks?" + new URLSearchParams(words ? { q: words, page: n } : { page: n });
  results.replaceChildren(
    table(
      `${answer.total} task${answer.total === 1 ? "" : "s"}, page ${answer.page} of ${answer.pages}`,
      ["Task", "Jobs", "Last run", "Created", "Last changed"],
      answer.items.map((t) => [
        link("/ui/tasks/" + encodeURIComponent(t.taskId), t.taskId),
        String(t.jobsCount),
        t.lastStatus ? status(t.lastStatus) : "—",
        time(t.createdAt),
        time(t.lastModifiedAt),
      ]),
    ),
    pager(answer, here),
  );
}

/// Previous and next links of a page of results.
export function pager(answer, here) {
  return h(
    "nav",
    { class: "pager", "aria-label": "Pages" },
    answer.hasPrev ? link(here(answer.page - 1), "← Previous page") : null,
    h("span", {}, `Page ${answer.page} of ${answer.pages}`),
    answer.hasNext ? link(here(answer.page + 1), "Next page →") : null,
  );
}
