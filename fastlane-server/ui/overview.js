// Overview: what the farm is doing now, from `GET /status` (every 3 s), and
// what it did in the last hour, from `GET /status/activity` (every 30 s):
// queues, hosts (with blacklisting), running executions, admission gates,
// the scheduled jobs with their next run, charts of the executions that
// ended, and the latest failures.

import { call } from "./api.js";
import { activityCharts } from "./charts.js";
import { h, link, message, status, table, time, confirm } from "./dom.js";

const REFRESH_MS = 3000;
// The activity is a heavier read, and moves by the minute.
const ACTIVITY_MS = 30000;

export async function render(main) {
  const out = h("div", { id: "host-action", "aria-live": "polite" });
  const body = h("div", { id: "overview" });
  main.replaceChildren(h("h1", {}, "Overview"), out, body);
  let timer = null;
  let stopped = false;
  let latest = 0;
  let lastActivity = null;
  let activityAt = 0;

  // One refresh loop: a refresh started while another is on its way (after
  // a button) supersedes it.
  async function refresh() {
    clearTimeout(timer);
    const mine = ++latest;
    let shown;
    const due = !lastActivity || Date.now() - activityAt >= ACTIVITY_MS;
    const [farm, activity] = await Promise.allSettled([
      call("/status"),
      due ? call("/status/activity") : Promise.resolve(lastActivity),
    ]);
    if (due && activity.status === "fulfilled") {
      lastActivity = activity.value;
      activityAt = Date.now();
    }
    const lately =
      activity.status === "fulfilled"
        ? [activityCharts(activity.value), failures(activity.value.failures || [])]
        : [message("error", "Could not read /status/activity: " + activity.reason.message)];
    shown =
      farm.status === "fulfilled"
        ? sections(farm.value, lately, out, refresh)
        : [message("error", "Could not read /status: " + farm.reason.message), ...lately];
    if (stopped || mine !== latest) return;
    // The table of the charts' numbers stays open across refreshes.
    const wasOpen = body.querySelector("details.numbers")?.open;
    body.replaceChildren(...shown);
    const numbers = body.querySelector("details.numbers");
    if (numbers && wasOpen) numbers.open = true;
    timer = setTimeout(refresh, REFRESH_MS);
  }
  await refresh();
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

function sections(status, lately, out, refresh) {
  const queues = Object.entries(status.queues || {});
  const running = (status.containers && status.containers.running) || [];
  const scheduled = (status.jobs && status.jobs.scheduled) || [];
  return [
    h(
      "dl",
      { class: "figures" },
      figure("Tasks", status.tasks ? status.tasks.count : "—"),
      figure("Jobs", status.jobs ? status.jobs.count : "—"),
      figure("Running", running.length),
      queues.map(([name, queue]) => figure("Queue " + name, queue.length)),
      figure("Version", status.fastlane ? status.fastlane.version : "—"),
    ),
    ...lately,
    table(
      "Hosts",
      ["Host", "Farm", "State", "Running", "Action"],
      (status.hosts || []).map((host) => [
        h("code", {}, host.host),
        host.farm || "—",
        hostState(host),
        String(host.running ?? "—"),
        hostAction(host, out, refresh),
      ]),
    ),
    table(
      "Running executions",
      ["Host", "Execution", "Container"],
      running.map((r) => [h("code", {}, r.host), h("code", {}, r.executionId || "—"), h("code", {}, (r.id || "").slice(0, 12))]),
    ),
    table(
      "Admission gates",
      ["Gate", "Running", "Waiting", "Paused"],
      (status.limits || []).map((l) => [h("code", {}, l.gate), String(l.running), String(l.waiting), l.paused ? "paused" : "—"]),
    ),
    table(
      scheduledCaption(scheduled.length, status.jobs ? status.jobs.scheduledCount : scheduled.length),
      ["Task", "Job", "Schedule", "Next run"],
      scheduled.map((s) => [
        s.task ? link("/ui/tasks/" + encodeURIComponent(s.task.id), s.task.id) : "—",
        s.task ? link("/ui/tasks/" + encodeURIComponent(s.task.id) + "/jobs/" + encodeURIComponent(s.jobId), s.jobId) : s.jobId,
        s.cron ? h("code", {}, s.cron + (s.cronTimezone ? " (" + s.cronTimezone + ")" : "")) : "once",
        time(s.nextScheduledAt),
      ]),
    ),
  ];
}

function failures(latest) {
  const jobPage = (f) => "/ui/tasks/" + encodeURIComponent(f.taskId) + "/jobs/" + encodeURIComponent(f.jobId);
  return table(
    latest.length ? "Latest failures" : "Latest failures: none",
    ["Task", "Job", "Status", "Exit code", "Error", "Ended"],
    latest.map((f) => [
      link("/ui/tasks/" + encodeURIComponent(f.taskId), f.taskId),
      link(jobPage(f), h("code", {}, f.jobId.slice(0, 8))),
      status(f.status),
      f.exitCode === undefined ? "—" : String(f.exitCode),
      f.error ? h("code", {}, f.error) : "—",
      time(f.finishedAt),
    ]),
  );
}

function scheduledCaption(shown, all) {
  return all > shown ? `Scheduled jobs: the ${shown} firing soonest of ${all}` : "Scheduled jobs";
}

function figure(name, value) {
  return h("div", {}, h("dt", {}, name), h("dd", {}, String(value)));
}

function hostState(host) {
  const words = [];
  words.push(host.available ? "available" : "unavailable");
  if (host.blacklisted) words.push("blacklisted");
  if (host.circuit && host.circuit !== "closed") words.push("circuit " + host.circuit);
  const text = words.join(", ") + (host.error ? ": " + host.error : "");
  return h("span", { class: host.blacklisted || !host.available ? "state-bad" : "state-good" }, text);
}

function hostAction(host, out, refresh) {
  const blacklisting = !host.blacklisted;
  const label = blacklisting ? "Blacklist" : "Restore";
  const button = h("button", { type: "button", "data-host": host.host }, label);
  button.addEventListener("click", async () => {
    const what = blacklisting
      ? `No new execution will start on ${host.host} until it is restored.`
      : `${host.host} takes executions again.`;
    if (!(await confirm(label + " " + host.host, what))) return;
    try {
      await call("/docker-executor/blacklist", { method: blacklisting ? "POST" : "DELETE", body: { host: host.host } });
      out.replaceChildren(message("notice", `${host.host} ${blacklisting ? "blacklisted" : "restored"}.`));
    } catch (error) {
      out.replaceChildren(message("error", `${label} ${host.host} failed: ${error.message}`));
    }
    refresh();
  });
  return button;
}
