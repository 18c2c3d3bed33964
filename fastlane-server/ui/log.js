// The output viewer of one execution: stdout and stderr side by side.
// A finished execution's output is read from its `stdout` and `stderr`
// routes; a running one is followed over its WebSocket (`format=json`),
// resuming at the last byte offset after a reconnection. Text is added at
// most once a frame, and a pane keeps only its last MAX_SHOWN characters
// (the whole output stays one link away), so a long log never freezes
// the page.

import { call, path, socketProtocols } from "./api.js";
import { h } from "./dom.js";

const MAX_SHOWN = 2_000_000;

class Pane {
  constructor(name, href) {
    this.text = "";
    this.pending = "";
    this.code = h("code", {});
    // Read with the UI's credentials, then opened from memory: a plain link
    // would go without them.
    const whole = h("button", { type: "button" }, "Open the whole " + name);
    whole.addEventListener("click", async () => {
      const { text } = await call(href, { text: true });
      window.open(URL.createObjectURL(new Blob([text], { type: "text/plain" })), "_blank", "noopener");
    });
    this.cut = h("p", { class: "hint", hidden: true }, "Only the end is shown. ", whole);
    this.element = h(
      "section",
      { class: "pane", "aria-label": name },
      h("h3", {}, name),
      this.cut,
      h("pre", { class: "log", id: "log-" + name, tabindex: "0" }, this.code),
    );
  }

  set(text) {
    this.pending = "";
    this.text = text;
    this.show();
  }

  add(text) {
    this.pending += text;
    // A tab in the background gets no frames: keep only what can be shown.
    if (this.pending.length > MAX_SHOWN * 2) this.flush();
  }

  /// Adds what came since the last frame: one text node, or the whole pane
  /// again when it has grown half as much again as it may show.
  flush() {
    if (!this.pending) return;
    const added = this.pending;
    this.pending = "";
    this.text += added;
    if (this.text.length > MAX_SHOWN * 1.5) this.show();
    else this.code.append(document.createTextNode(added));
  }

  show() {
    if (this.text.length > MAX_SHOWN) {
      this.text = this.text.slice(this.text.length - MAX_SHOWN);
      this.cut.hidden = false;
    }
    this.code.textContent = this.text;
  }
}

/// A viewer for `execution` of `taskId`/`jobId`; `onExit(frame)` is called
/// once a followed execution ends. Answers `{element, stop}`.
export function viewer(taskId, jobId, execution, onExit) {
  const base = path("tasks", taskId, "jobs", jobId, "executions", execution.executionId);
  const stdout = new Pane("stdout", base + "/stdout");
  const stderr = new Pane("stderr", base + "/stderr");
  const state = h("p", { class: "hint", id: "log-state", role: "status" }, "");
  const element = h("div", { class: "viewer" }, state, h("div", { class: "panes" }, stdout.element, stderr.element));
  let stopped = false;
  let socket = null;
  let frame = null;
  const schedule = () => {
    if (frame === null && !stopped) {
      frame = requestAnimationFrame(() => {
        frame = null;
        stdout.flush();
        stderr.flush();
      });
    }
  };

  const final = !["enqueued", "pulling", "running"].includes(execution.status);
  if (final) {
    state.textContent = "Output of a finished execution.";
    Promise.all([call(base + "/stdout", { text: true }), call(base + "/stderr", { text: true })])
      .then(([out, err]) => {
        stdout.set(out.text);
        stderr.set(err.text);
      })
      .catch((error) => {
        state.textContent = "Could not read the output: " + error.message;
      });
  } else {
    follow();
  }

  function follow() {
    let next = 0;
    let ended = false;
    // Handshakes refused in a row: the wait grows, and from the third the
    // execution is read over HTTP, where a 401 asks for credentials and any
    // other refusal is shown.
    let refused = 0;
    const connect = () => {
      if (stopped) return;
      const scheme = location.protocol === "https:" ? "wss:" : "ws:";
      const url = `${scheme}//${location.host}${base}/ws?format=json&from=${next}`;
      const protocols = socketProtocols();
      socket = protocols.length ? new WebSocket(url, protocols) : new WebSocket(url);
      state.textContent = "Following live…";
      socket.onmessage = (event) => {
        refused = 0;
        const data = JSON.parse(event.data);
        if (data.type === "start") {
          if (data.from !== next) {
            stdout.set("");
            stderr.set("");
            next = data.from;
          }
          state.textContent = "Following live: " + data.status + "…";
        } else if (data.type === "log") {
          // fastlane's own notices go with stderr, as the CLI shows them.
          if (data.offset >= next) (data.stream === "stdout" ? stdout : stderr).add(data.text);
          next = data.next;
          schedule();
        } else if (data.type === "exit") {
          ended = true;
          schedule();
          state.textContent = `Ended ${data.status}, exit code ${data.exitCode ?? "none"}${data.error ? ": " + data.error : ""}.`;
          onExit(data);
        }
      };
      socket.onclose = (event) => {
        socket = null;
        if (stopped || ended) return;
        if (event.reason === "done") {
          onExit(null);
          return;
        }
        if (event.code === 1000 && event.reason === "") {
          state.textContent = "This execution is gone.";
          return;
        }
        if (event.reason === "retry") {
          state.textContent = "Waiting for it to start…";
          setTimeout(connect, 1000);
          return;
        }
        refused += 1;
        state.textContent = "Connection lost; reconnecting…";
        const wait = Math.min(1000 * 2 ** (refused - 1), 15000);
        if (refused < 3) {
          setTimeout(connect, wait);
          return;
        }
        call(base)
          .then(() => setTimeout(connect, wait))
          .catch((error) => {
            state.textContent = "Cannot follow this execution: " + error.message;
          });
      };
    };
    connect();
  }

  return {
    element,
    executionId: execution.executionId,
    stop() {
      stopped = true;
      if (frame !== null) cancelAnimationFrame(frame);
      if (socket) socket.close();
    },
  };
}
