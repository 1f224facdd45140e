// admin.js - the Admin view over the /admin API: datasets with their validation summary,
// training and evaluation jobs (start, live progress with a loss plot, cancel, resume), and
// model versions (activate, delete). The bearer token is entered once and kept in this tab's
// sessionStorage; it goes only into the Authorization header of requests to this origin
// (relative URLs), never into a URL, a log or the page.
"use strict";

(() => {
  const $ = ecs.$;
  const KEY = "ecsnet.admin.token";
  const losses = new Map(); // job id -> [[step, loss], ...] seen while polling
  let timer = null;

  const token = () => sessionStorage.getItem(KEY) || "";

  async function call(method, path, body) {
    const init = { method, headers: { Authorization: `Bearer ${token()}` } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const r = await fetch(path, init);
    const text = await r.text();
    if (!r.ok) {
      if (r.status === 401) signOut();
      throw new Error(ecs.errorText(r.status, text));
    }
    return text ? JSON.parse(text) : {};
  }

  const fail = (e) => ecs.showError($("admin-error"), $("admin-error-text"), e ? e.message : null);

  // ---- datasets ---------------------------------------------------------------------------

  function renderDatasets(list) {
    const body = $("datasets").tBodies[0], sel = $("job-dataset");
    const keep = sel.value;
    ecs.clear(body);
    ecs.clear(sel);
    for (const d of list) {
      const tr = ecs.el("tr", {}, null);
      const problems = (d.problems || []).join("; ");
      const v = d.ok ? "valid" : `${d.n_problems || 0} problem(s): ${problems}`;
      const cells = [d.name, (d.classes || []).join(", "), d.train, d.val, d.masks,
                     d.error ? `cannot be read: ${d.error}` : v];
      for (const c of cells) tr.appendChild(ecs.el("td", {}, c === undefined ? "" : c));
      body.appendChild(tr);
      sel.appendChild(ecs.el("option", { value: d.name }, d.name));
    }
    if (keep) sel.value = keep;
  }

  // ---- jobs -------------------------------------------------------------------------------

  function plot(canvas, pts) {
    const w = (canvas.width = canvas.clientWidth || 300), h = (canvas.height = 90);
    const g = canvas.getContext("2d");
    const css = getComputedStyle(document.body);
    g.clearRect(0, 0, w, h);
    g.strokeStyle = css.getPropertyValue("--line");
    g.strokeRect(0.5, 0.5, w - 1, h - 1);
    if (pts.length < 2) return;
    const x0 = pts[0][0], x1 = pts[pts.length - 1][0] || 1;
    let lo = Infinity, hi = -Infinity;
    for (const [, y] of pts) (lo = Math.min(lo, y)), (hi = Math.max(hi, y));
    if (hi - lo < 1e-9) hi = lo + 1;
    g.strokeStyle = css.getPropertyValue("--bar");
    g.lineWidth = 2;
    g.beginPath();
    pts.forEach(([x, y], i) => {
      const px = 4 + ((x - x0) / Math.max(1, x1 - x0)) * (w - 8);
      const py = h - 4 - ((y - lo) / (hi - lo)) * (h - 8);
      if (i) g.lineTo(px, py);
      else g.moveTo(px, py);
    });
    g.stroke();
  }

  const fmt = (v, d) => (typeof v === "number" ? v.toFixed(d) : "–");
  const pct = (v) => (typeof v === "number" ? (100 * v).toFixed(1) : "–");

  function jobItem(j) {
    const p = j.progress || {};
    const li = ecs.el("li", { id: `job-${j.id}`, "data-status": j.status }, null);
    const ds = (j.request && j.request.dataset) || "?";
    li.appendChild(ecs.el("strong", {}, `#${j.id} ${j.kind} on ${ds}: `));
    li.appendChild(ecs.el("span", { class: "job-status" }, j.status));
    const total = p.total_steps || 0, step = p.step || 0;
    const bar = ecs.el("progress", { max: total || 1, value: total ? step : 0,
                                     "aria-label": `job ${j.id} progress` }, null);
    if (j.status === "succeeded") bar.value = bar.max;
    li.appendChild(bar);
    const eta = typeof p.eta_s === "number" ? `${Math.round(p.eta_s)} s` : "–";
    li.appendChild(ecs.el("div", { class: "job-line" },
      `step ${step}/${total || "?"} · loss ${fmt(p.loss, 4)} (cls ${fmt(p.loss_cls, 4)}, ` +
      `seg ${fmt(p.loss_seg, 4)}) · ${fmt(p.images_per_s, 1)} images/s · ETA ${eta}`));
    if (typeof p.loss === "number") {
      const pts = losses.get(j.id) || [];
      if (!pts.length || pts[pts.length - 1][0] !== step) pts.push([step, p.loss]);
      losses.set(j.id, pts);
    }
    const canvas = ecs.el("canvas", { role: "img", "aria-label": `loss of job ${j.id}` }, null);
    li.appendChild(canvas);
    if (j.result && j.result.model)
      li.appendChild(ecs.el("div", {}, `result: ${j.result.model.name} v${j.result.model.version}` +
                                       (j.result.activated ? " (served)" : "")));
    const ev = j.result && j.result.evaluation;
    if (ev)
      li.appendChild(ecs.el("div", { class: "job-eval" },
        `evaluation on ${ev.split} (${ev.n_images} images): mIoU ${pct(ev.miou)} at ` +
        `α_bg ${fmt(ev.best_alpha, 2)} · combined ${pct(ev.miou_combined)} · ` +
        `mAP ${pct(ev.map)}`));
    if (j.error) li.appendChild(ecs.el("div", { class: "error" }, j.error));
    for (const n of Array.isArray(j.notes) ? j.notes : [])
      li.appendChild(ecs.el("div", { class: "muted" },
                            typeof n === "string" ? n : JSON.stringify(n)));
    const actions = ecs.el("div", { class: "actions" }, null);
    if (j.status === "queued" || j.status === "running")
      actions.appendChild(button(`Cancel job ${j.id}`, "Cancel", () =>
        call("DELETE", `/admin/jobs/${j.id}`)));
    if (["interrupted", "cancelled", "failed"].includes(j.status))
      actions.appendChild(button(`Resume job ${j.id}`, "Resume", () =>
        call("POST", `/admin/jobs/${j.id}/resume`)));
    li.appendChild(actions);
    return [li, canvas];
  }

  function button(label, text, act) {
    const b = ecs.el("button", { type: "button", "aria-label": label }, text);
    b.addEventListener("click", async () => {
      b.disabled = true;
      try {
        await act();
        fail(null);
      } catch (e) {
        fail(e);
      }
      refresh();
    });
    return b;
  }

  function renderJobs(list) {
    const ul = $("jobs");
    const focused = document.activeElement && document.activeElement.getAttribute("aria-label");
    ecs.clear(ul);
    const plots = [];
    for (const j of list) {
      const [li, canvas] = jobItem(j);
      ul.appendChild(li);
      plots.push([canvas, losses.get(j.id) || []]);
    }
    for (const [c, pts] of plots) plot(c, pts);
    if (!list.length) ul.appendChild(ecs.el("li", { class: "muted" }, "no jobs yet"));
    // a re-render keeps the keyboard where it was
    if (focused) {
      const again = [...ul.querySelectorAll("button")].find(
        (b) => b.getAttribute("aria-label") === focused);
      if (again && !again.disabled) again.focus();
    }
    return list.some((j) => j.status === "queued" || j.status === "running");
  }

  // ---- model versions ---------------------------------------------------------------------

  function renderVersions(models) {
    const body = $("versions").tBodies[0];
    ecs.clear(body);
    for (const m of models)
      for (const v of m.versions || []) {
        const tr = ecs.el("tr", {}, null);
        const state = [v.active ? "active" : "", v.served ? "served" : ""].filter(Boolean);
        for (const c of [m.name, v.version, v.backbone || "", fmt(v.alpha_bg, 2),
                         state.join(", ") || "–"])
          tr.appendChild(ecs.el("td", {}, c));
        const td = ecs.el("td", {}, null);
        if (!v.active && !v.served) {
          const path = `/admin/models/${encodeURIComponent(m.name)}/versions/${v.version}`;
          td.appendChild(button(`Activate ${m.name} version ${v.version}`, "Activate", () =>
            call("POST", `${path}/activate`)));
          td.appendChild(button(`Delete ${m.name} version ${v.version}`, "Delete", () =>
            call("DELETE", path)));
        }
        tr.appendChild(td);
        body.appendChild(tr);
      }
  }

  // ---- refresh ----------------------------------------------------------------------------

  async function refresh() {
    clearTimeout(timer);
    if (!token() || $("view-admin").hidden) return;
    let busy = false;
    try {
      const [ds, jobs, models] = await Promise.all([
        call("GET", "/admin/datasets"), call("GET", "/admin/jobs"), call("GET", "/admin/models")]);
      renderDatasets(ds.datasets || []);
      busy = renderJobs(jobs.jobs || []);
      renderVersions(models.models || []);
    } catch (e) {
      fail(e);
    }
    if (token()) timer = setTimeout(refresh, busy ? 700 : 3000);
  }

  function signedIn(on) {
    $("admin-body").hidden = !on;
    $("sign-out").hidden = !on;
    $("token").value = "";
    $("token").placeholder = on ? "signed in" : "";
  }

  function signOut() {
    sessionStorage.removeItem(KEY);
    clearTimeout(timer);
    signedIn(false);
  }

  function startJob() {
    const kind = $("job-kind").value, dataset = $("job-dataset").value;
    if (kind === "eval") return call("POST", "/admin/eval", { dataset });
    const body = { dataset, steps: Number($("job-steps").value),
                   batch_size: Number($("job-batch").value), crop: Number($("job-crop").value),
                   activate: $("job-activate").checked };
    if ($("job-name").value.trim()) body.model_name = $("job-name").value.trim();
    return call("POST", "/admin/train", body);
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      const t = $("token").value.trim();
      if (!t) return fail(new Error("enter the admin token"));
      sessionStorage.setItem(KEY, t);
      try {
        await call("GET", "/admin/jobs");
        fail(null);
        signedIn(true);
        refresh();
      } catch (err) {
        sessionStorage.removeItem(KEY);
        fail(err);
      }
    });
    $("sign-out").addEventListener("click", signOut);
    $("job-kind").addEventListener("change", () => {
      for (const r of document.querySelectorAll(".train-only"))
        r.hidden = $("job-kind").value !== "train";
    });
    $("job-form").addEventListener("submit", async (e) => {
      e.preventDefault();
      try {
        const j = await startJob();
        fail(null);
        $("status").textContent = "";
        $("admin-error").hidden = true;
        if (j && j.id) $("jobs").setAttribute("data-last", j.id);
      } catch (err) {
        fail(err);
      }
      refresh();
    });
    signedIn(Boolean(token()));
    ecs.views.admin.push(refresh);
  });
})();
