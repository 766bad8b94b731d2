// WorkflowList front end: a table of workflows and a Refresh button (Python re-reads them).
function render({ model, el }) {
  const draw = () => {
    const c = model.get("colours");
    const table = document.createElement("table");
    table.innerHTML = "<tr><th>id</th><th>status</th><th>pool</th><th>user</th><th>submitted</th></tr>";
    for (const r of model.get("rows")) {
      const tr = document.createElement("tr");
      const colour = c[r.status] || (r.status.startsWith("FAILED") ? c.FAILED : c.UNKNOWN);
      const when = r.submit_time ? new Date(r.submit_time * 1000).toLocaleString() : "";
      for (const [v, style] of [[r.id, ""], [r.status, `color:${colour};font-weight:bold`], [r.pool, ""], [r.user, ""], [when, ""]]) {
        const td = document.createElement("td");
        td.textContent = v ?? "";
        td.style = style;
        tr.append(td);
      }
      table.append(tr);
    }
    const button = document.createElement("button");
    button.textContent = "Refresh";
    button.onclick = () => model.send({ action: "refresh" });
    const err = document.createElement("div");
    err.style = "color:#c62828";
    err.textContent = model.get("error");
    el.replaceChildren(button, err, table);
  };
  model.on("change:rows", draw);
  model.on("change:error", draw);
  draw();
}
export default { render };
