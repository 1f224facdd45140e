// common.js - what the page's two views share: DOM helpers, the type-ahead's matcher, the
// error shape, PNG planes (masks 8- or 16-bit), the VOC colours, and the view switch. Plain
// JavaScript, no build step, no external asset. Text from the server is only ever set with
// textContent, never parsed as HTML.
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

// A name as the API matches it: case-insensitive, '_' and space alike.
ecs.fold = (s) => String(s).toLowerCase().replace(/_/g, " ");

// The type-ahead's choice over labels that each have one or more folded names (its name
// first, then its synonyms): entries[i] is a string or an array of strings. Answers at most
// limit {i, via} (via: the index of the name that matched), the labels in ranks, each rank in
// the labels' order: a name equal to q, the label's name starting with q, a synonym starting
// with q, a word of a name starting with q, q anywhere in a name. Labels in exclude are left
// out. One pass over every name, so thousands of labels cost well under a frame a keystroke.
ecs.matchNames = (entries, q, exclude, limit) => {
  q = ecs.fold(q).trim();
  const ranks = [[], [], [], [], []];
  const wordStart = (s, at) => {
    for (; at > 0; at = s.indexOf(q, at + 1)) if (!/[a-z0-9]/.test(s[at - 1])) return true;
    return false;
  };
  for (let i = 0; i < entries.length; i++) {
    if (exclude.has(i)) continue;
    const names = typeof entries[i] === "string" ? [entries[i]] : entries[i];
    let best = 5, via = 0;
    for (let v = 0; v < names.length && best > 0; v++) {
      const s = names[v], at = q ? s.indexOf(q) : 0;
      if (at < 0) continue;
      const r = !q || (at === 0 && s.length === q.length) ? 0
        : at === 0 ? (v === 0 ? 1 : 2) : wordStart(s, at) ? 3 : 4;
      if (r < best) (best = r), (via = v);
    }
    if (best < 5 && ranks[best].length < limit) ranks[best].push({ i, via });
  }
  return [].concat(...ranks).slice(0, limit);
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

// A PNG (bytes) drawn into RGBA pixels (the erased image).
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

// The samples of a grey (8 or 16 bits) or palette (8 bits: the indices) PNG, not interlaced,
// as the server writes CAMs and masks: {width, height, bits, palette, samples (Uint16Array)}.
// A canvas cannot be used for these: it rounds 16 bits to 8 and turns indices into colours.
ecs.pngSamples = async (bytes) => {
  const sig = [137, 80, 78, 71, 13, 10, 26, 10];
  if (bytes.length < 33 || sig.some((b, i) => bytes[i] !== b)) throw new Error("not a PNG");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const idat = [];
  let w = 0, h = 0, bits = 0, type = -1, interlace = 0;
  for (let off = 8; off + 12 <= bytes.length;) {
    const len = dv.getUint32(off);
    const name = String.fromCharCode(...bytes.subarray(off + 4, off + 8));
    if (name === "IHDR") {
      w = dv.getUint32(off + 8);
      h = dv.getUint32(off + 12);
      bits = bytes[off + 16];
      type = bytes[off + 17];
      interlace = bytes[off + 20];
    } else if (name === "IDAT") {
      idat.push(bytes.subarray(off + 8, off + 8 + len));
    } else if (name === "IEND") {
      break;
    }
    off += 12 + len;
  }
  const ok = (type === 0 && (bits === 8 || bits === 16)) || (type === 3 && bits === 8);
  if (!ok || interlace || !w || !h)
    throw new Error(`a PNG of colour type ${type} with ${bits} bits is not a map of ids`);
  const stream = new Blob(idat).stream().pipeThrough(new DecompressionStream("deflate"));
  const raw = new Uint8Array(await new Response(stream).arrayBuffer());
  const bpp = bits / 8, stride = w * bpp;
  if (raw.length < h * (stride + 1)) throw new Error("a PNG shorter than its size");
  const px = new Uint8Array(h * stride);
  for (let y = 0; y < h; y++) {
    const f = raw[y * (stride + 1)], src = y * (stride + 1) + 1, row = y * stride;
    for (let i = 0; i < stride; i++) {
      const a = i >= bpp ? px[row + i - bpp] : 0;
      const b = y ? px[row - stride + i] : 0;
      const c = y && i >= bpp ? px[row - stride + i - bpp] : 0;
      let pred = 0;
      if (f === 1) pred = a;
      else if (f === 2) pred = b;
      else if (f === 3) pred = (a + b) >> 1;
      else if (f === 4) {
        const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        pred = pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (f !== 0) throw new Error(`a PNG row with filter ${f}`);
      px[row + i] = (raw[src + i] + pred) & 255;
    }
  }
  const n = w * h, samples = new Uint16Array(n);
  if (bits === 16) for (let q = 0; q < n; q++) samples[q] = (px[2 * q] << 8) | px[2 * q + 1];
  else samples.set(px);
  return { width: w, height: h, bits, palette: type === 3, samples };
};

// The ignore id of the page's mask planes (ECS_MASK_IGNORE), whatever the PNG's encoding.
ecs.IGNORE = 65535;

// The label ids of a mask PNG as the answer's mask_bits says it is encoded: 8, the VOC
// palette PNG (index = id, 255 = ignore); 16, a 16-bit grey PNG (65535 = ignore).
ecs.maskPlane = async (bytes, maskBits) => {
  const m = await ecs.pngSamples(bytes);
  const want = maskBits === 16 ? "16-bit grey" : "8-bit palette";
  if ((maskBits === 16) !== (m.bits === 16 && !m.palette) || (maskBits !== 16 && !m.palette))
    throw new Error(`the answer says its masks are ${want} PNGs, one is not`);
  if (m.bits === 8) for (let q = 0; q < m.samples.length; q++)
    if (m.samples[q] === 255) m.samples[q] = ecs.IGNORE;
  return m;
};

// The VOC colour of a label id: its bits spread over the top bits of R, G and B (id 1: dark
// red, ...). The VOC palette's first 256 colours, and distinct for every id below 2^24, so
// the ids above 254 of a 16-bit mask get their own colours too.
ecs.vocColour = (id) => {
  let r = 0, g = 0, b = 0, c = id;
  for (let j = 0; j < 8; j++) {
    r |= ((c >> 0) & 1) << (7 - j);
    g |= ((c >> 1) & 1) << (7 - j);
    b |= ((c >> 2) & 1) << (7 - j);
    c >>= 3;
  }
  return [r, g, b];
};

// The jet colour of v in [0, 1], as the server's overlay draws it.
ecs.jet = (v) => {
  const k = (x) => Math.max(0, Math.min(1, 1.5 - Math.abs(4 * v - x)));
  return [k(3) * 255, k(2) * 255, k(1) * 255];
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
