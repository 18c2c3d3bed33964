// The overview's charts of `GET /status/activity`: executions ended per
// minute by final status (stacked bars) and run time percentiles (lines).
// Each chart is an SVG image with a written summary beside it and a table
// of its numbers under it, so nothing is told by colour or shape alone.

import { h, table } from "./dom.js";

const SVG = "http://www.w3.org/2000/svg";
const FINAL = [
  ["done", "done"],
  ["failed", "failed"],
  ["timedout", "timed out"],
  ["expired", "expired"],
  ["stopped", "stopped"],
];
const PERCENTILES = [
  ["p50Ms", "median"],
  ["p90Ms", "90th percentile"],
  ["p99Ms", "99th percentile"],
];
const WIDTH = 600;
const HEIGHT = 140;

function svg(tag, attributes = {}, ...children) {
  const element = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, String(value));
  for (const child of children) if (child) element.append(child);
  return element;
}

function clock(value) {
  return new Date(value).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

function seconds(ms) {
  return ms === undefined || ms === null ? "—" : (ms / 1000).toFixed(ms < 10000 ? 2 : 1) + " s";
}

/// Both charts, with their summaries and tables.
export function activityCharts(activity) {
  const minutes = activity.minutes || [];
  const totals = Object.fromEntries(FINAL.map(([key]) => [key, minutes.reduce((n, m) => n + (m[key] || 0), 0)]));
  const span = minutes.length + " minute" + (minutes.length === 1 ? "" : "s");
  const said = FINAL.map(([key, words]) => `${totals[key]} ${words}`).join(", ");
  const short = activity.complete ? "" : " Only the latest 20,000 ended executions are counted; the earliest minutes fall short.";
  const busy = minutes.filter((m) => FINAL.some(([key]) => m[key] > 0));
  return h(
    "section",
    { "aria-labelledby": "activity-title", class: "activity" },
    h("h2", { id: "activity-title" }, `Activity, last ${span}`),
    h("p", { id: "activity-summary" }, `Ended: ${said}.${short}`),
    h("div", { class: "charts" }, endedChart(minutes), runTimeChart(minutes)),
    h(
      "details",
      { class: "numbers" },
      h("summary", {}, "The numbers, minute by minute"),
      busy.length === 0
        ? h("p", {}, "Nothing ended in this window.")
        : table(
            "Executions ended per minute",
            ["Minute", ...FINAL.map(([, words]) => words), "Median", "p90", "p99"],
            busy.map((m) => [clock(m.at), ...FINAL.map(([key]) => String(m[key])), seconds(m.p50Ms), seconds(m.p90Ms), seconds(m.p99Ms)]),
          ),
    ),
  );
}

function frame(id, title, children, legend, first, last) {
  return h(
    "figure",
    { class: "chart" },
    svg(
      "svg",
      { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", "aria-labelledby": id, preserveAspectRatio: "none" },
      svg("title", { id }, title),
      svg("line", { x1: 0, y1: HEIGHT, x2: WIDTH, y2: HEIGHT, class: "axis" }),
      ...children,
    ),
    h("div", { class: "chart-axis" }, h("span", {}, first ? clock(first.at) : ""), h("span", {}, last ? clock(last.at) : "")),
    h("figcaption", {}, title, h("ul", { class: "legend" }, legend)),
  );
}

function endedChart(minutes) {
  const most = Math.max(1, ...minutes.map((m) => FINAL.reduce((n, [key]) => n + (m[key] || 0), 0)));
  const step = WIDTH / Math.max(1, minutes.length);
  const bars = [];
  minutes.forEach((m, i) => {
    let y = HEIGHT;
    for (const [key, words] of FINAL) {
      const n = m[key] || 0;
      if (n === 0) continue;
      const height = (n / most) * HEIGHT;
      y -= height;
      bars.push(
        svg(
          "rect",
          { x: i * step + 0.5, y, width: Math.max(1, step - 1), height, class: "bar-" + key },
          svg("title", {}, `${clock(m.at)}: ${n} ${words}`),
        ),
      );
    }
  });
  const legend = FINAL.map(([key, words]) => h("li", {}, h("span", { class: "swatch bar-" + key, "aria-hidden": "true" }), words));
  return frame("chart-ended", `Executions ended per minute (tallest bar: ${most})`, bars, legend, minutes[0], minutes[minutes.length - 1]);
}

function runTimeChart(minutes) {
  const most = Math.max(1, ...minutes.map((m) => m.p99Ms || 0));
  const step = WIDTH / Math.max(1, minutes.length);
  // A tenth of the height stays free above the highest point.
  const y = (ms) => HEIGHT - (ms / most) * HEIGHT * 0.9;
  const lines = [];
  for (const [key, words] of PERCENTILES) {
    // One line per run of minutes that have a value: a gap stays a gap,
    // and a minute alone is a level stroke across its slot.
    let run = [];
    const flush = () => {
      if (run.length === 1) run = [[run[0][0] - step / 2, run[0][1]], [run[0][0] + step / 2, run[0][1]]];
      if (run.length > 0) {
        const points = run.map(([px, py]) => `${px},${py}`).join(" ");
        lines.push(svg("polyline", { points, class: "line-" + key }, svg("title", {}, words)));
      }
      run = [];
    };
    minutes.forEach((m, i) => {
      if (m[key] === undefined || m[key] === null) flush();
      else run.push([(i + 0.5) * step, y(m[key])]);
    });
    flush();
  }
  const legend = PERCENTILES.map(([key, words]) =>
    h("li", {}, h("span", { class: "sample line-" + key, "aria-hidden": "true" }), words),
  );
  const top = seconds(most / 0.9);
  return frame("chart-run-time", `Run time per minute (top of the chart: ${top})`, lines, legend, minutes[0], minutes[minutes.length - 1]);
}
