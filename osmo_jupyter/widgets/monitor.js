// WorkflowMonitor front end: draws the model's state (DAG, table, log pane); buttons and
// clicks send {action} messages to Python, which owns every change. Terminal and Notebook (for
// the selected task, while it runs) are the page's: an "osmo-open" event that the osmo-jupyter
// JupyterLab extension answers (labextension/src/widgetbridge.ts) with a terminal or a notebook
// in the task; unanswered (no extension; a terminal in Notebook 7, which has no tabs for one),
// the widget says what to run instead.
const OPEN_EVENT = "osmo-open";
const WITHOUT_LAB = {
  terminal: (wf, task) => `osmo workflow exec ${wf} ${task}`,
  notebook: (wf, task) => `osmo workflow kernel ${wf} ${task}`,
};
const W = 150, H = 44, GAP_X = 40, GAP_Y = 14;

function colour(model, status) {
  const c = model.get("colours");
  return c[status] || (status.startsWith("FAILED") ? c.FAILED : c.UNKNOWN);
}

function duration(t) {
  if (!t.start_time) return "";
  const s = (t.end_time || Date.now() / 1000) - t.start_time;
  return s < 60 ? `${s.toFixed(1)}s` : `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, "0")}s`;
}

function el_(tag, attrs = {}, text) {
  const ns = ["svg", "rect", "line", "text", "g"].includes(tag) ? "http://www.w3.org/2000/svg" : null;
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

function drawDag(model, tasks) {
  const rows = {}, pos = {};
  for (const t of tasks) {
    const r = (rows[t.level] = (rows[t.level] || 0) + 1) - 1;
    pos[t.name] = { x: 10 + t.level * (W + GAP_X), y: 10 + r * (H + GAP_Y) };
  }
  const cols = Math.max(0, ...tasks.map((t) => t.level)) + 1;
  const height = Math.max(1, ...Object.values(rows)) * (H + GAP_Y) + 10;
  const svg = el_("svg", { width: cols * (W + GAP_X), height, class: "osmo-dag" });
  for (const t of tasks)
    for (const u of t.after)
      if (pos[u])
        svg.append(el_("line", { x1: pos[u].x + W, y1: pos[u].y + H / 2, x2: pos[t.name].x,
          y2: pos[t.name].y + H / 2, "stroke-width": 1.5 }));
  for (const t of tasks) {
    const g = el_("g", { "data-task": t.name, style: "cursor:pointer" });
    const sel = model.get("selected") === t.name;
    g.append(el_("rect", { x: pos[t.name].x, y: pos[t.name].y, width: W, height: H, rx: 6,
      fill: colour(model, t.status), class: sel ? "osmo-selected" : "", "stroke-width": 2 }));
    g.append(el_("text", { x: pos[t.name].x + 8, y: pos[t.name].y + 18, fill: "#fff",
      "font-weight": "bold", "font-size": 12 }, t.name));
    g.append(el_("text", { x: pos[t.name].x + 8, y: pos[t.name].y + 35, fill: "#fff",
      "font-size": 11 }, t.status));
    g.addEventListener("click", () => model.send({ action: "select", task: t.name }));
    svg.append(g);
  }
  return svg;
}

function drawTable(model, tasks) {
  const table = el_("table", { class: "osmo-tasks" });
  const head = el_("tr");
  for (const h of ["task", "state", "attempt", "duration", "exit", "last lines"]) head.append(el_("th", {}, h));
  table.append(head);
  for (const t of tasks) {
    const tr = el_("tr", { "data-task": t.name });
    const state = el_("td", { style: `color:${colour(model, t.status)};font-weight:bold` }, t.status);
    if (t.status === "SCHEDULING" && t.pending_reason) {  // why it waits, from the scheduler
      state.append(el_("div", { class: "osmo-pending-reason", style: "font-weight:normal" }, t.pending_reason));
    }
    tr.append(el_("td", {}, t.name), state, el_("td", {}, String(t.retry_id + 1)),
      el_("td", {}, duration(t)), el_("td", {}, t.exit_code == null ? "" : String(t.exit_code)),
      el_("td", { style: "font-family:monospace;white-space:pre" }, (t.last_lines || []).join("\n")));
    tr.addEventListener("click", () => model.send({ action: "select", task: t.name }));
    table.append(tr);
  }
  return table;
}

function taskTools(model, el, tasks, button, state) {
  const task = model.get("selected");
  const row = tasks.find((t) => t.name === task);
  const tools = el_("div", { class: "osmo-task-tools" });
  for (const [what, label] of [["terminal", "Terminal"], ["notebook", "Notebook"]]) {
    const b = el_("button", { class: `osmo-open-${what} ${button}`,
      title: `A ${what} in task ${task} (while it runs)` }, label);
    b.disabled = !row || row.status !== "RUNNING";
    b.onclick = () => {
      const wf = model.get("workflow_id");
      const detail = { what, workflowId: wf, task };
      const ev = new CustomEvent(OPEN_EVENT, { bubbles: true, cancelable: true, detail });
      // not cancelled: nothing on this page can open it
      state.hint = el.dispatchEvent(ev) ? `Cannot open a ${what} in ${wf}/${task} from this page: run \`${WITHOUT_LAB[what](wf, task)}\` in a terminal` : "";
      state.redraw();
    };
    tools.append(b, " ");
  }
  if (state.hint) tools.append(el_("span", { class: "osmo-hint" }, state.hint));
  return tools;
}

function render({ model, el }) {
  el.classList.add("osmo-monitor");
  const state = { hint: "", redraw: () => draw() };
  const draw = () => {
    const tasks = model.get("tasks");
    const status = model.get("status");
    const head = el_("div", { class: "osmo-head" });
    head.append(el_("b", {}, model.get("workflow_id") + " "),
      el_("span", { class: "osmo-status", style: `color:${colour(model, status)};font-weight:bold` }, status));
    // A finished workflow can be restarted, not canceled; a running one the other way round.
    const ended = status === "COMPLETED" || status.startsWith("FAILED");
    // jupyter-widgets' own button classes: styled (and themed) as every ipywidgets button.
    const button = "jupyter-widgets jupyter-button widget-button";
    const cancel = el_("button", { class: `osmo-cancel ${button}` }, "Cancel");
    cancel.disabled = ended;
    cancel.onclick = () => model.send({ action: "cancel" });
    const restart = el_("button", { class: `osmo-restart ${button}` }, "Restart");
    restart.disabled = !ended;
    restart.onclick = () => model.send({ action: "restart" });
    head.append(" ", cancel, " ", restart);
    const err = model.get("error") ? el_("div", { class: "osmo-error" }, model.get("error")) : "";
    const logHead = el_("div", {}, `log: ${model.get("selected")}`);
    if (model.get("selected")) logHead.append(" ", taskTools(model, el, tasks, button, state));
    const log = el_("pre", { class: "osmo-log" }, model.get("log_lines").join("\n"));
    el.replaceChildren(head, err, drawDag(model, tasks), drawTable(model, tasks), logHead, log);
    log.scrollTop = log.scrollHeight;
  };
  model.on("change:selected", () => { state.hint = ""; });  // before the redraw below
  for (const k of ["tasks", "status", "selected", "log_lines", "error", "workflow_id"]) model.on(`change:${k}`, draw);
  const timer = setInterval(draw, 1000); // running durations tick
  draw();
  return () => clearInterval(timer);
}

export default { render };
