// Small helpers to build the DOM from data. Text always goes in as text
// (never as HTML), so nothing a task id, a command or a log holds can
// become markup.

/// `h("a", {href: "/x", class: "y"}, "text", child…)`: an element. An
/// attribute `on<event>` adds a listener; `null` or `false` attributes and
/// children are left out.
export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      element.addEventListener(name.slice(2), value);
    } else if (value === true) {
      element.setAttribute(name, "");
    } else {
      element.setAttribute(name, String(value));
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    if (Array.isArray(child)) append(element, child);
    else element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/// Shows `href` (a `/ui/…` path) as if the reader had followed a link
/// (the router in app.js listens).
export function go(href) {
  history.pushState(null, "", href);
  window.dispatchEvent(new Event("fastlane:navigate"));
}

/// A link inside the UI, followed without reloading the page.
export function link(href, ...children) {
  return h("a", { href, "data-route": "" }, ...children);
}

/// The status of an execution as text with a mark (not by colour alone).
export function status(name) {
  const marks = {
    done: "✓", failed: "✗", timedout: "⏱", expired: "⌛", stopped: "■",
    running: "▶", pulling: "↓", enqueued: "…",
  };
  const text = name || "none";
  return h("span", { class: "status status-" + text }, (marks[text] || "·") + " " + text);
}

/// A time as the reader's local date and time, with the exact value in
/// a `<time>` element.
export function time(value) {
  if (!value) return "—";
  const date = new Date(value);
  if (Number.isNaN(date.getTime())) return String(value);
  return h("time", { datetime: date.toISOString(), title: date.toISOString() }, date.toLocaleString());
}

/// Seconds between two times, as `1.2 s`, `3 min 4 s` or `2 h 5 min`.
export function duration(from, to) {
  if (!from) return "—";
  const end = to ? new Date(to) : new Date();
  const seconds = (end - new Date(from)) / 1000;
  if (!(seconds >= 0)) return "—";
  if (seconds < 60) return seconds.toFixed(1) + " s";
  if (seconds < 3600) return Math.floor(seconds / 60) + " min " + Math.round(seconds % 60) + " s";
  return Math.floor(seconds / 3600) + " h " + Math.round((seconds % 3600) / 60) + " min";
}

/// A table with a caption, column headings and rows of cells.
/// (In a box that scrolls sideways on a narrow screen.)
export function table(caption, headings, rows) {
  return h(
    "div",
    { class: "scroll" },
    h(
      "table",
      {},
      h("caption", {}, caption),
      h("thead", {}, h("tr", {}, headings.map((heading) => h("th", { scope: "col" }, heading)))),
      h(
        "tbody",
        {},
        rows.length
          ? rows.map((cells) => h("tr", {}, cells.map((cell) => h("td", {}, cell))))
          : h("tr", {}, h("td", { colspan: headings.length, class: "notice" }, "None.")),
      ),
    ),
  );
}

/// A message in place of content: `kind` is `notice` or `error`.
export function message(kind, text) {
  return h("p", { class: kind, role: kind === "error" ? "alert" : "status" }, text);
}

/// Asks the reader to confirm `text`; resolves to true when they do.
export function confirm(title, text) {
  const dialog = document.getElementById("confirm");
  document.getElementById("confirm-title").textContent = title;
  document.getElementById("confirm-text").textContent = text;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
    document.getElementById("confirm-cancel").focus();
  });
}

/// A button that asks for confirmation, then runs `action`, showing what
/// it answered (or its error) in `out`.
export function actionButton(label, confirmation, action, out) {
  const button = h("button", { type: "button" }, label);
  button.addEventListener("click", async () => {
    if (!(await confirm(label, confirmation))) return;
    button.disabled = true;
    out.replaceChildren(message("notice", label + "…"));
    try {
      const done = await action();
      out.replaceChildren(message("notice", done || label + ": done."));
    } catch (error) {
      out.replaceChildren(message("error", label + " failed: " + error.message));
    } finally {
      button.disabled = false;
    }
  });
  return button;
}
