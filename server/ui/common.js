// common.js - what the page's two views share: DOM helpers, the error shape, PNG planes, the
// VOC palette, COCO RLE, and the view switch. Plain JavaScript, no build step, no external
// asset. Text from the server is only ever set with textContent, never parsed as HTML.
"use strict";

const ecs = {};

ecs.$ = (id) => document.getElementById(id);

// An element with attributes and text (text as text, never markup).
ecs.el = (tag, attrs, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === false || v === null || v === undefined) continue;
    e.setAttribute(k, v === true ? "" : String(v));
  }
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
};

// The type-ahead's choice: indices of the lower-cased names that start with q, then of those
// that contain it, at most limit, skipping the indices in exclude. One pass that stops once
// limit names start with q, so thousands of names cost well under a frame per keystroke.
ecs.matchNames = (lower, q, exclude, limit) => {
  q = q.trim().toLowerCase();
  const pre = [], mid = [];
  for (let i = 0; i < lower.length && pre.length < limit; i++) {
    if (exclude.has(i)) continue;
    const at = q ? lower[i].indexOf(q) : 0;
    if (at === 0) pre.push(i);
    else if (at > 0 && mid.length < limit) mid.push(i);
  }
  return pre.concat(mid).slice(0, limit);
};

ecs.clear = (node) => {
  while (node.firstChild) node.removeChild(node.firstChild);
};

// The message of an answer that failed: the API's {"error": {"code", "message"}} shape, else
// the status line.
ecs.errorText = (status, body) => {
  try {
    const j = typeof body === "string" ? JSON.parse(body) : body;
    if (j && j.error && j.error.message) return `${j.error.message} (${status} ${j.error.code})`;
  } catch (_) {
    /* not JSON: fall through */
  }
  return status ? `the server answered ${status}` : "the server cannot be reached";
};

ecs.b64ToBytes = (b64) => {
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
};

// A PNG (bytes) drawn into RGBA pixels.
ecs.decodePng = async (bytes) => {
  const bmp = await createImageBitmap(new Blob([bytes], { type: "image/png" }), {
    colorSpaceConversion: "none",
    premultiplyAlpha: "none",
  });
  const c = document.createElement("canvas");
  c.width = bmp.width;
  c.height = bmp.height;
  const g = c.getContext("2d", { willReadFrequently: true });
  g.drawImage(bmp, 0, 0);
  bmp.close();
  return g.getImageData(0, 0, c.width, c.height);
};

// One 8-bit plane of a grey PNG.
ecs.greyPlane = (img) => {
  const n = img.width * img.height;
  const out = new Uint8Array(n);
  for (let p = 0; p < n; p++) out[p] = img.data[p * 4];
  return out;
};

// The VOC colour map: index bits spread over the top bits of R, G and B.
ecs.palette = (() => {
  const pal = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    let r = 0, g = 0, b = 0, c = i;
    for (let j = 0; j < 8; j++) {
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    pal.set([r, g, b], i * 3);
  }
  return pal;
})();

// Class ids of a palette PNG's pixels (the VOC colours are unique, so the map is exact).
ecs.maskPlane = (img) => {
  const lookup = new Map();
  for (let i = 0; i < 256; i++) {
    const k = (ecs.palette[i * 3] << 16) | (ecs.palette[i * 3 + 1] << 8) | ecs.palette[i * 3 + 2];
    lookup.set(k, i);
  }
  const n = img.width * img.height;
  const out = new Uint8Array(n);
  for (let p = 0; p < n; p++) {
    const d = img.data;
    const k = (d[p * 4] << 16) | (d[p * 4 + 1] << 8) | d[p * 4 + 2];
    out[p] = lookup.has(k) ? lookup.get(k) : 255;
  }
  return out;
};

// The jet colour of v in [0, 1], as the server's overlay draws it.
ecs.jet = (v) => {
  const k = (x) => Math.max(0, Math.min(1, 1.5 - Math.abs(4 * v - x)));
  return [k(3) * 255, k(2) * 255, k(1) * 255];
};

// COCO's compressed RLE of a binary mask (column-major runs, starting with zeros), as
// pycocotools writes it.
ecs.cocoRle = (bits, w, h) => {
  const counts = [];
  let prev = 0, run = 0;
  for (let x = 0; x < w; x++)
    for (let y = 0; y < h; y++) {
      const v = bits[y * w + x] ? 1 : 0;
      if (v !== prev) {
        counts.push(run);
        run = 0;
        prev = v;
      }
      run++;
    }
  counts.push(run);
  let s = "";
  for (let i = 0; i < counts.length; i++) {
    let x = counts[i];
    if (i > 2) x -= counts[i - 2];
    let more = true;
    while (more) {
      let c = x & 0x1f;
      x >>= 5;
      more = c & 0x10 ? x !== -1 : x !== 0;
      if (more) c |= 0x20;
      s += String.fromCharCode(c + 48);
    }
  }
  return s;
};

// A download link for bytes (a Blob URL: nothing leaves the browser).
ecs.downloadLink = (name, bytes, type, label) => {
  const url = URL.createObjectURL(new Blob([bytes], { type }));
  const a = ecs.el("a", { href: url, download: name }, label || name);
  return a;
};

ecs.showError = (box, textNode, message) => {
  if (message) {
    textNode.textContent = message;
    box.hidden = false;
  } else {
    textNode.textContent = "";
    box.hidden = true;
  }
};

// #masks and #admin: one view at a time, the tab marked for assistive technology.
ecs.views = { masks: [], admin: [] };
ecs.showView = () => {
  const name = location.hash === "#admin" ? "admin" : "masks";
  for (const v of ["masks", "admin"]) {
    ecs.$(`view-${v}`).hidden = v !== name;
    const tab = ecs.$(`tab-${v}`);
    if (v === name) tab.setAttribute("aria-current", "page");
    else tab.removeAttribute("aria-current");
  }
  for (const f of ecs.views[name]) f();
};
window.addEventListener("hashchange", ecs.showView);
document.addEventListener("DOMContentLoaded", () => setTimeout(ecs.showView, 0));
