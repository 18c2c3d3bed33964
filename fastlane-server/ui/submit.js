// Submit a job: a form for the common fields of `POST /tasks/{taskId}`.
// The server checks everything; a refusal is shown beside the field it
// names (`field` in the error body), or above the form when it names none.

import { call, path } from "./api.js";
import { go, h, message } from "./dom.js";

/// The form's inputs: [request field, label, input attributes, hint].
const FIELDS = [
  ["taskId", "Task", { required: true, autocomplete: "off" }, "Letters, digits, '-', '_', '.', ':' or '@'."],
  ["image", "Image", { required: true, placeholder: "busybox:latest" }, "As docker pull takes it: name, name:tag or registry/name:tag."],
  ["command", "Command", { required: true, placeholder: "echo hello" }, "Split into words as a shell would; no shell runs it."],
  ["envs", "Environment", { rows: 3, placeholder: "NAME=value" }, "One NAME=value a line."],
  ["startIn", "Start in", { placeholder: "5m" }, "Run once, this long from now (30s, 5m, 2h). Empty: now."],
  ["cron", "Cron", { placeholder: "*/5 * * * *" }, "Run repeatedly on this cron expression instead."],
  ["retries", "Retries", { type: "number", min: 0, value: 0 }, "Runs again this many times after a failure."],
  ["timeout", "Timeout", { type: "number", min: 1, placeholder: "seconds" }, "Stopped after this many seconds."],
];

export async function render(main, _params, query) {
  const form = h("form", { id: "submit-form", novalidate: true });
  const general = h("div", { id: "submit-error", "aria-live": "polite" });
  const inputs = {};
  for (const [name, label, attributes, hint] of FIELDS) {
    const id = "field-" + name;
    const input = h(name === "envs" ? "textarea" : "input", { id, name, "aria-describedby": `${id}-hint ${id}-error`, ...attributes });
    if (name === "taskId" && query.get("task")) input.value = query.get("task");
    inputs[name] = input;
    form.append(
      h(
        "div",
        { class: "field" },
        h("label", { for: id }, label),
        input,
        h("p", { class: "hint", id: `${id}-hint` }, hint),
        h("p", { class: "error", id: `${id}-error` }),
      ),
    );
  }
  form.append(h("div", { class: "actions" }, h("button", { type: "submit" }, "Submit the job")));
  main.replaceChildren(h("h1", {}, "Submit a job"), general, form);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clear(form, general);
    const taskId = inputs.taskId.value.trim();
    let body;
    try {
      body = request(inputs);
    } catch (error) {
      return show(form, general, error.field, error.message);
    }
    if (!taskId) return show(form, general, "taskId", "Name the task.");
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const created = await call(path("tasks", taskId), { method: "POST", body });
      go("/ui/tasks/" + encodeURIComponent(taskId) + "/jobs/" + encodeURIComponent(created.jobId));
    } catch (error) {
      show(form, general, error.field, error.message);
    } finally {
      button.disabled = false;
    }
  });
}

/// The request body the form says.
function request(inputs) {
  const body = { image: inputs.image.value.trim(), command: inputs.command.value.trim() };
  const envs = {};
  for (const [i, line] of inputs.envs.value.split("\n").entries()) {
    if (!line.trim()) continue;
    const at = line.indexOf("=");
    if (at < 1) throw Object.assign(new Error(`line ${i + 1} is not NAME=value`), { field: "envs" });
    envs[line.slice(0, at).trim()] = line.slice(at + 1);
  }
  if (Object.keys(envs).length) body.envs = envs;
  for (const name of ["startIn", "cron"]) {
    if (inputs[name].value.trim()) body[name] = inputs[name].value.trim();
  }
  for (const name of ["retries", "timeout"]) {
    const text = inputs[name].value.trim();
    // A number input holding what is not a number reads as empty.
    if (inputs[name].validity.badInput) throw Object.assign(new Error(`${name} must be a whole number`), { field: name });
    if (!text) continue;
    const number = Number(text);
    if (!Number.isInteger(number)) throw Object.assign(new Error(`${name} must be a whole number`), { field: name });
    body[name] = number;
  }
  return body;
}

function clear(form, general) {
  general.replaceChildren();
  for (const p of form.querySelectorAll("p.error")) p.textContent = "";
  for (const input of form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

/// Shows `text` beside the input of request field `field` (its first
/// segment: `envs.PATH` is the environment's), else above the form.
function show(form, general, field, text) {
  const name = field ? field.split(/[.[]/)[0] : null;
  const input = name ? form.querySelector(`[name="${CSS.escape(name)}"]`) : null;
  if (!input) {
    general.replaceChildren(message("error", text));
    return;
  }
  input.setAttribute("aria-invalid", "true");
  document.getElementById(input.id + "-error").textContent = text;
  input.focus();
}
