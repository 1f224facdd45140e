// cam.js - the Masks view: one image, its labels and options to POST /cam, and the answer as
// pictures (CAM overlays, erase region, erased image and its CAMs, masks over the image),
// class scores as bars, downloads of the server's own bytes (COCO RLE included), and the
// equivalent curl command. The background threshold previews client side from the CAMs and Φ;
// releasing the slider asks the server again with alpha_bg, and the refinement switch asks
// again with refine, so what is downloaded is always what /cam answers. Masks come as 8-bit
// palette or 16-bit grey PNGs (the answer's mask_bits); the page reads the ids of either.
"use strict";

(() => {
  const $ = ecs.$;
  const OUTPUTS = "cam,erased_cam,mask,cam_mask,ecs_mask,scores,erased_image,erase_region,coco";
  const st = {
    labels: [], // the model's classes then groups: {id, name, kind, synonyms, members}
    folded: [], // per label its folded names, the name first (the type-ahead's entries)
    index: new Map(), // a label's name -> its index in labels
    alphaModel: 0.26,
    file: null,
    image: null, // ImageData of the picture as the browser decoded it
    result: null, // the last JSON answer
    planes: null, // its decoded planes
    chosen: [],
    modelKey: null, // NAME@VERSION of the model the labels are from
    active: -1, // the highlighted option of the label list
    options: [],
    busy: false,
    last: null, // the last request's fields (for retry and curl)
    shown: null, // the fields of the answer shown
    pending: null, // fields to send once the request in flight has ended
  };

  // ---- the served model -----------------------------------------------------------------

  // Read when the Masks view is shown, so a model activated in the Admin view is the one
  // offered here; labels the new model lacks leave the chosen ones.
  async function loadModel() {
    try {
      const r = await fetch("/v1/models", { headers: { Accept: "application/json" } });
      const j = await r.json();
      const m = (j.models || []).find((x) => x.served) || (j.models || [])[0];
      if (!m) throw new Error("no model is served yet");
      const key = `${m.name}@${m.version}`;
      if (key === st.modelKey) return;
      st.modelKey = key;
      // labels (classes with their synonyms, then groups); only classes from an older server
      st.labels = Array.isArray(m.labels) && m.labels.length
        ? m.labels.filter((l) => l && typeof l.name === "string")
        : (m.classes || []).map((name, k) => ({ id: k + 1, name, kind: "class" }));
      st.folded = st.labels.map((l) => {
        const names = [ecs.fold(l.name)];
        for (const s of l.synonyms || []) if (!names.includes(ecs.fold(s))) names.push(ecs.fold(s));
        return names;
      });
      st.index = new Map(st.labels.map((l, i) => [l.name, i]));
      st.chosen = st.chosen.filter((name) => st.index.has(name));
      renderChips();
      if (typeof m.alpha_bg === "number") st.alphaModel = m.alpha_bg;
      $("alpha").value = st.alphaModel.toFixed(2);
      $("alpha-out").textContent = st.alphaModel.toFixed(2);
      $("refine").checked = m.refine === true;
      $("refine-default").textContent = `the model's default: ${m.refine ? "on" : "off"}`;
      const groups = st.labels.filter((l) => l.kind === "group").length;
      $("model-line").textContent = `model ${m.name} v${m.version} · ${m.backbone || "?"} · ` +
        `${st.labels.length - groups} classes` + (groups ? ` and ${groups} groups` : "");
    } catch (e) {
      $("model-line").textContent = `no model: ${e.message}`;
    }
  }

  // ---- the image --------------------------------------------------------------------------

  async function takeFile(f) {
    if (!f) return;
    st.file = f;
    $("file-name").textContent = `${f.name || "pasted image"} (${Math.round(f.size / 1024)} KiB)`;
    st.image = null;
    try {
      const bmp = await createImageBitmap(f);
      const c = document.createElement("canvas");
      c.width = bmp.width;
      c.height = bmp.height;
      const g = c.getContext("2d", { willReadFrequently: true });
      g.drawImage(bmp, 0, 0);
      st.image = g.getImageData(0, 0, c.width, c.height);
    } catch (_) {
      /* the server says what is wrong with it */
    }
    $("run").disabled = false;
  }

  function wireImage() {
    const drop = $("drop");
    $("file").addEventListener("change", (e) => takeFile(e.target.files[0]));
    drop.addEventListener("dragover", (e) => {
      e.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      if (e.dataTransfer.files.length) takeFile(e.dataTransfer.files[0]);
    });
    document.addEventListener("paste", (e) => {
      if ($("view-masks").hidden) return;
      for (const item of e.clipboardData.items)
        if (item.kind === "file") {
          takeFile(item.getAsFile());
          e.preventDefault();
          return;
        }
    });
  }

  // ---- labels: type-ahead over the model's classes, their synonyms and its groups ------

  const matches = (q) => ecs.matchNames(st.folded, q, new Set(st.chosen.map((c) =>
    st.index.get(c)).filter((i) => i !== undefined)), 50);

  // An option: the label's name, then (muted) the synonym that matched and what a group holds.
  function optionItem(m, n) {
    const l = st.labels[m.i];
    const li = ecs.el("li", { id: `opt-${n}`, role: "option",
                              "aria-selected": n === st.active ? "true" : "false" }, null);
    li.appendChild(ecs.el("span", {}, l.name));
    const notes = [];
    if (m.via > 0) notes.push(l.synonyms.find((s) => ecs.fold(s) === st.folded[m.i][m.via]));
    if (l.kind === "group") notes.push(`group of ${(l.members || []).length}`);
    if (notes.length)
      li.appendChild(ecs.el("span", { class: "muted" }, ` · ${notes.join(" · ")}`));
    return li;
  }

  function renderOptions() {
    const list = $("label-list"), input = $("label-input");
    ecs.clear(list);
    st.options = matches(input.value);
    st.options.forEach((m, n) => {
      const li = optionItem(m, n);
      li.addEventListener("mousedown", (e) => {
        e.preventDefault();
        addLabel(st.labels[m.i].name);
      });
      list.appendChild(li);
    });
    const open = document.activeElement === input && st.options.length > 0;
    list.hidden = !open;
    input.setAttribute("aria-expanded", open ? "true" : "false");
    if (st.active >= 0 && st.active < st.options.length) {
      input.setAttribute("aria-activedescendant", `opt-${st.active}`);
      $(`opt-${st.active}`).scrollIntoView({ block: "nearest" });
    } else {
      input.removeAttribute("aria-activedescendant");
    }
  }

  function renderChips() {
    const ul = $("chips");
    ecs.clear(ul);
    for (const name of st.chosen) {
      const li = ecs.el("li", {}, null);
      li.appendChild(ecs.el("span", {}, name));
      const b = ecs.el("button", { type: "button", "aria-label": `remove ${name}` }, "×");
      b.addEventListener("click", () => {
        st.chosen = st.chosen.filter((x) => x !== name);
        renderChips();
        $("label-input").focus();
      });
      li.appendChild(b);
      ul.appendChild(li);
    }
    $("labels-hint").textContent = st.chosen.length
      ? `${st.chosen.length} label(s) chosen.`
      : "No label chosen: the model predicts them.";
  }

  function addLabel(text) {
    // "a, b" typed at once is two labels, as the API reads a comma-separated list
    for (let name of text.split(",")) {
      name = name.trim();
      if (name && !st.chosen.includes(name)) st.chosen.push(name);
    }
    $("label-input").value = "";
    st.active = -1;
    renderChips();
    renderOptions();
  }

  function wireLabels() {
    const input = $("label-input");
    input.addEventListener("input", () => {
      st.active = 0;
      renderOptions();
    });
    input.addEventListener("focus", renderOptions);
    input.addEventListener("blur", () => setTimeout(renderOptions, 0));
    input.addEventListener("keydown", (e) => {
      const n = st.options.length;
      if (e.key === "ArrowDown" && n) {
        st.active = (st.active + 1) % n;
        renderOptions();
        e.preventDefault();
      } else if (e.key === "ArrowUp" && n) {
        st.active = (st.active - 1 + n) % n;
        renderOptions();
        e.preventDefault();
      } else if (e.key === "Enter") {
        e.preventDefault(); // Enter picks a label; it never submits the form from here
        if (st.active >= 0 && st.active < n) addLabel(st.labels[st.options[st.active].i].name);
        else if (input.value.trim()) addLabel(input.value); // the server judges unknown names
      } else if (e.key === "Escape") {
        st.active = -1;
        $("label-list").hidden = true;
        input.setAttribute("aria-expanded", "false");
      } else if (e.key === "Backspace" && !input.value && st.chosen.length) {
        st.chosen.pop();
        renderChips();
      }
    });
  }

  // ---- the request ------------------------------------------------------------------------

  function fields(alphaChanged) {
    const f = { labels: st.chosen.join(","), outputs: OUTPUTS, scales: $("scales").value };
    if (!f.labels) delete f.labels;
    if (f.scales === "1") delete f.scales;
    if ($("flip").checked) f.flip = "true";
    f.refine = $("refine").checked ? "true" : "false"; // always said, so curl asks the same
    const a = Number($("alpha").value);
    if (alphaChanged || Math.abs(a - st.alphaModel) > 1e-6) f.alpha_bg = a.toFixed(2);
    return f;
  }

  function curlOf(f) {
    const q = (s) => `'${String(s).replace(/'/g, "'\\''")}'`;
    const name = st.file && st.file.name ? st.file.name : "image.png";
    const parts = ["curl -s", `-F image=@${q(name)}`];
    for (const [k, v] of Object.entries(f)) parts.push(`-F ${q(`${k}=${v}`)}`);
    parts.push(q(`${location.origin}/cam`));
    return parts.join(" ");
  }

  function setBusy(on, text) {
    st.busy = on;
    $("run").disabled = on || !st.file;
    $("progress").hidden = !on;
    if (on) $("progress").removeAttribute("value");
    $("status").textContent = text || "";
    if (!on && st.pending) {
      // options changed while a request ran: ask again with the latest ones
      const f = st.pending;
      st.pending = null;
      send(f);
    }
  }

  let retryTimer = null;
  function failed(status, body, retryAfter) {
    let msg = ecs.errorText(status, body);
    const retry = $("retry");
    retry.hidden = true;
    if (status === 503 && retryAfter) {
      let left = Number(retryAfter) || 1;
      msg = `The server is busy: ${msg}. Retry in ${left} s.`;
      retry.hidden = false;
      retry.disabled = true;
      clearInterval(retryTimer);
      retryTimer = setInterval(() => {
        left--;
        if (left > 0) {
          $("cam-error-text").textContent = `The server is busy: ${ecs.errorText(status, body)}.` +
            ` Retry in ${left} s.`;
          return;
        }
        clearInterval(retryTimer);
        $("cam-error-text").textContent =
          `The server was busy: ${ecs.errorText(status, body)}. You can retry now.`;
        retry.disabled = false;
      }, 1000);
    }
    ecs.showError($("cam-error"), $("cam-error-text"), msg);
    setBusy(false, "failed");
  }

  function send(f) {
    if (!st.file) return;
    if (st.busy) {
      st.pending = f;
      return;
    }
    st.last = f;
    ecs.showError($("cam-error"), $("cam-error-text"), null);
    const form = new FormData();
    form.append("image", st.file, st.file.name || "image.png");
    for (const [k, v] of Object.entries(f)) form.append(k, v);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/cam");
    xhr.setRequestHeader("Accept", "application/json");
    xhr.upload.onprogress = (e) => {
      if (!e.lengthComputable) return;
      $("progress").max = e.total;
      $("progress").value = e.loaded;
      $("status").textContent = `uploading ${Math.round((100 * e.loaded) / e.total)}%`;
    };
    xhr.upload.onload = () => {
      $("progress").removeAttribute("value");
      $("status").textContent = "computing…";
    };
    xhr.onerror = () => failed(0, null, null);
    xhr.onload = async () => {
      if (xhr.status !== 200) {
        failed(xhr.status, xhr.responseText, xhr.getResponseHeader("Retry-After"));
        return;
      }
      try {
        const j = JSON.parse(xhr.responseText);
        await show(j, f);
        setBusy(false, `done in ${Math.round(j.timings.total_ms)} ms`);
      } catch (e) {
        failed(200, null, null);
        $("cam-error-text").textContent = `The answer cannot be shown: ${e.message}`;
      }
    };
    setBusy(true, "uploading…");
    xhr.send(form);
  }

  // ---- the answer -------------------------------------------------------------------------

  async function decodeAll(j) {
    const size = (m) => {
      if (m.width !== j.width || m.height !== j.height)
        throw new Error(`a ${m.width}×${m.height} picture in a ${j.width}×${j.height} answer`);
      return m.samples;
    };
    const grey = async (b64) => size(await ecs.pngSamples(ecs.b64ToBytes(b64)));
    const mask = async (b64) => size(await ecs.maskPlane(ecs.b64ToBytes(b64), j.mask_bits));
    const p = { w: j.width, h: j.height, cams: [], erased: [] };
    for (const c of j.cams || []) p.cams.push(await grey(c.png));
    for (const c of j.erased_cams || []) p.erased.push(await grey(c.png));
    p.mask = await mask(j.mask);
    p.camMask = await mask(j.cam_mask);
    p.ecsMask = await mask(j.ecs_mask);
    p.region = await grey(j.erase_region);
    p.erasedImage = await ecs.decodePng(ecs.b64ToBytes(j.erased_image));
    p.preview = null;
    return p;
  }

  // The CAM mask and the combined mask at threshold a, from the 8-bit CAMs and Φ.
  function previewMasks(a) {
    const p = st.planes, n = p.w * p.h, ids = st.result.labels.map((l) => l.id);
    const cam = new Uint16Array(n), comb = new Uint16Array(n);
    const thr = a * 255;
    for (let q = 0; q < n; q++) {
      let best = thr, l = 0;
      for (let i = 0; i < p.cams.length; i++)
        if (p.cams[i][q] > best) {
          best = p.cams[i][q];
          l = ids[i];
        }
      cam[q] = l;
      comb[q] = p.ecsMask[q] !== ecs.IGNORE ? p.ecsMask[q] : l;
    }
    p.preview = { cam, comb };
  }

  function baseImage() {
    const p = st.planes;
    if (st.image && st.image.width === p.w && st.image.height === p.h) return st.image;
    return p.erasedImage; // the browser could not decode it the server's way: show what we have
  }

  function paint(canvas, base, colour) {
    const p = st.planes, n = p.w * p.h;
    canvas.width = p.w;
    canvas.height = p.h;
    const g = canvas.getContext("2d");
    const out = g.createImageData(p.w, p.h);
    const op = Number($("opacity").value) / 100;
    for (let q = 0; q < n; q++) {
      const c = colour ? colour(q) : null;
      for (let k = 0; k < 3; k++) {
        const b = base.data[q * 4 + k];
        out.data[q * 4 + k] = c ? Math.round((1 - op) * b + op * c[k]) : b;
      }
      out.data[q * 4 + 3] = 255;
    }
    g.putImageData(out, 0, 0);
  }

  // A mask's pixel in its id's VOC colour; background (0) shows the image, ignore white.
  const colours = new Map([[ecs.IGNORE, [255, 255, 255]]]);
  const colourOf = (id) => {
    if (!colours.has(id)) colours.set(id, ecs.vocColour(id));
    return colours.get(id);
  };
  const maskColour = (plane) => (q) => (plane[q] === 0 ? null : colourOf(plane[q]));

  function figure(id, caption) {
    const fig = ecs.el("figure", { id }, null);
    const canvas = ecs.el("canvas", { role: "img", "aria-label": caption }, null);
    fig.appendChild(canvas);
    fig.appendChild(ecs.el("figcaption", {}, caption));
    $("figures").appendChild(fig);
    return canvas;
  }

  function render() {
    const j = st.result, p = st.planes;
    if (!j) return;
    ecs.clear($("figures"));
    const base = baseImage();
    const prev = p.preview;
    paint(figure("fig-image", `image ${p.w}×${p.h}`), base, null);
    j.labels.forEach((l, i) => {
      paint(figure(`fig-cam-${l.id}`, `CAM: ${l.name}`), base, (q) => ecs.jet(p.cams[i][q] / 255));
    });
    paint(figure("fig-region", "erase region R"), base, (q) => (p.region[q] ? [255, 0, 0] : null));
    paint(figure("fig-erased", "erased image"), p.erasedImage, null);
    j.labels.forEach((l, i) => {
      paint(figure(`fig-erased-cam-${l.id}`, `erased image's CAM: ${l.name}`), p.erasedImage,
            (q) => ecs.jet(p.erased[i][q] / 255));
    });
    const tag = prev ? " (preview)" : "";
    const refined = st.shown && st.shown.refine === "true" ? ", refined" : "";
    paint(figure("fig-mask", `combined mask${refined}${tag}`), base,
          maskColour(prev ? prev.comb : p.mask));
    paint(figure("fig-cam-mask", `CAM mask${refined}${tag}`), base,
          maskColour(prev ? prev.cam : p.camMask));
    paint(figure("fig-ecs-mask", "ECS mask (Φ; white: outside)"), base, maskColour(p.ecsMask));
  }

  // The masks' ids with their colours and names (mask_ids), ignore included.
  function renderLegend(j) {
    const ul = $("legend");
    ecs.clear(ul);
    for (const m of j.mask_ids || []) {
      const id = m.id === (j.mask_bits === 16 ? 65535 : 255) ? ecs.IGNORE : m.id;
      const li = ecs.el("li", { "data-id": m.id }, null);
      const sw = ecs.el("span", { class: "swatch", "aria-hidden": "true" }, null);
      sw.style.background = id === 0 ? "transparent" : `rgb(${colourOf(id).join(",")})`;
      li.appendChild(sw);
      li.appendChild(ecs.el("span", {}, `${m.id} ${m.name}`));
      ul.appendChild(li);
    }
    $("legend-bits").textContent = j.mask_bits
      ? `Mask PNGs: ${j.mask_bits === 16 ? "16-bit grey (65535 = ignore)"
                                          : "8-bit VOC palette (255 = ignore)"}.` : "";
  }

  function renderScores(j) {
    const ol = $("scores");
    ecs.clear(ol);
    const used = new Set(j.labels.map((l) => l.id));
    const rows = (j.scores || []).slice().sort((a, b) => b.score - a.score).slice(0, 20);
    for (const s of rows) {
      const li = ecs.el("li", { class: used.has(s.id) ? "used" : null }, null);
      li.appendChild(ecs.el("span", {}, s.name));
      const track = ecs.el("span", { class: "track", role: "meter", "aria-valuemin": 0,
                                     "aria-valuemax": 1, "aria-valuenow": s.score.toFixed(3),
                                     "aria-label": `score of ${s.name}` }, null);
      const fill = ecs.el("span", { class: "fill" }, null);
      fill.style.display = "block";
      fill.style.width = `${(100 * s.score).toFixed(1)}%`;
      track.appendChild(fill);
      li.appendChild(track);
      li.appendChild(ecs.el("span", {}, s.score.toFixed(3)));
      ol.appendChild(li);
    }
  }

  function renderDownloads(j) {
    const ul = $("downloads");
    // the last answer's Blob URLs go with their links (each holds its bytes until revoked)
    for (const a of ul.querySelectorAll("a")) URL.revokeObjectURL(a.href);
    ecs.clear(ul);
    const add = (name, bytes, type) => {
      const li = ecs.el("li", {}, null);
      li.appendChild(ecs.downloadLink(name, bytes, type));
      ul.appendChild(li);
    };
    for (const c of j.cams || []) add(`cam_${c.name}.png`, ecs.b64ToBytes(c.png), "image/png");
    for (const c of j.erased_cams || [])
      add(`erased_cam_${c.name}.png`, ecs.b64ToBytes(c.png), "image/png");
    for (const k of ["mask", "cam_mask", "ecs_mask", "erase_region", "erased_image"])
      if (j[k]) add(`${k}.png`, ecs.b64ToBytes(j[k]), "image/png");
    // the server's outputs=coco as it answered it (the CLI's coco.json): one COCO compressed
    // RLE per class of the combined mask
    if (Array.isArray(j.coco))
      add("coco.json", new TextEncoder().encode(JSON.stringify(j.coco)), "application/json");
  }

  async function show(j, f) {
    const planes = await decodeAll(j); // nothing changes when the answer cannot be shown
    st.result = j;
    st.planes = planes;
    st.shown = f;
    $("results").hidden = false;
    renderScores(j);
    render();
    renderLegend(j);
    renderDownloads(j);
    $("curl").value = curlOf(f);
  }

  // ---- options ----------------------------------------------------------------------------

  function wireOptions() {
    $("cam-form").addEventListener("submit", (e) => {
      e.preventDefault();
      send(fields(false));
    });
    $("retry").addEventListener("click", () => st.last && send(st.last));
    $("opacity").addEventListener("input", () => {
      $("opacity-out").textContent = `${$("opacity").value}%`;
      render();
    });
    // refinement is the server's (along the image's colours): a new request
    $("refine").addEventListener("change", () => st.result && st.file && send(fields(false)));
    $("alpha").addEventListener("input", () => {
      $("alpha-out").textContent = Number($("alpha").value).toFixed(2);
      if (!st.planes) return;
      previewMasks(Number($("alpha").value));
      render();
    });
    // released (mouse up, or a key press done): the server's exact masks at that threshold
    $("alpha").addEventListener("change", () => {
      if (st.result && st.file) send(fields(true));
    });
    for (const id of ["scales", "flip"])
      $(id).addEventListener("change", () => st.result && st.file && send(fields(false)));
    $("copy-curl").addEventListener("click", async () => {
      const t = $("curl");
      try {
        await navigator.clipboard.writeText(t.value);
        $("status").textContent = "curl command copied";
      } catch (_) {
        t.focus();
        t.select();
        $("status").textContent = "select and copy the command (Ctrl+C)";
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => {
    wireImage();
    wireLabels();
    wireOptions();
    renderChips();
    ecs.views.masks.push(loadModel);
  });
})();
