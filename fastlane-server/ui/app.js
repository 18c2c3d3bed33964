// The admin UI's entry: routes `/ui/…` paths to pages without reloading,
// and gives each page the `<main>` element to fill. A page's `render`
// answers a function that stops what it started (timers, sockets) when
// the reader goes elsewhere.

import * as overview from "./overview.js";
import * as tasks from "./tasks.js";
import * as task from "./task.js";
import * as job from "./job.js";
import * as submit from "./submit.js";
import { go, message } from "./dom.js";

const routes = [
  [/^\/ui\/?$/, overview, "overview"],
  [/^\/ui\/tasks\/?$/, tasks, "tasks"],
  [/^\/ui\/tasks\/([^/]+)\/?$/, task, "tasks"],
  [/^\/ui\/tasks\/([^/]+)\/jobs\/([^/]+)\/?$/, job, "tasks"],
  [/^\/ui\/submit\/?$/, submit, "submit"],
];

let stop = null;
let shown = 0;

async function show() {
  if (stop) {
    stop();
    stop = null;
  }
  // A page that finishes loading after the reader went elsewhere is
  // stopped at once and leaves the page alone.
  const mine = ++shown;
  const main = document.getElementById("main");
  const path = location.pathname;
  const query = new URLSearchParams(location.search);
  for (const [pattern, page, section] of routes) {
    const match = pattern.exec(path);
    if (!match) continue;
    for (const a of document.querySelectorAll("nav a[data-section]")) {
      if (a.dataset.section === section) a.setAttribute("aria-current", "page");
      else a.removeAttribute("aria-current");
    }
    const target = document.createElement("div");
    main.replaceChildren(message("notice", "Loading…"));
    try {
      const params = match.slice(1).map(decodeURIComponent);
      const cleanup = (await page.render(target, params, query)) || null;
      if (mine !== shown) {
        if (cleanup) cleanup();
        return;
      }
      stop = cleanup;
      main.replaceChildren(...target.childNodes);
    } catch (error) {
      if (mine === shown) main.replaceChildren(message("error", error.message));
    }
    return;
  }
  main.replaceChildren(message("error", "No such page: " + path));
}

document.addEventListener("click", (event) => {
  const a = event.target.closest("a");
  if (!a || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui")) return;
  event.preventDefault();
  go(url.pathname + url.search);
});

window.addEventListener("popstate", show);
window.addEventListener("fastlane:navigate", () =>
  show().then(() => document.getElementById("main").focus({ preventScroll: true })),
);
show();
