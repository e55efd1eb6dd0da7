// The φ explorer's panels (semcore/explorer.py builds the page). Bokeh draws the map and the channel bars;
// this fills them from the runs' bundles and shows what a click or a search asks for. Arrays (gzipped) and
// sprite sheets are base64 in raw-text elements (blob-<id>), decoded natively, once, when first needed.
"use strict";

const semcore = (() => {
  const DATA = JSON.parse(document.getElementById("semcore-data").textContent);
  const TYPES = {float32: Float32Array, float64: Float64Array, int32: Int32Array, uint16: Uint16Array, uint8: Uint8Array};
  const COLOURS = 20, OTHER = COLOURS, SHOWN = 60, THUMB = 48;
  const $ = (id) => document.getElementById(id);
  const state = {run: null, row: null, models: {}, labels: null, marked: []};
  const decoded = new Map(), sheets = new Set();
  const blob = (id, type) => fetch(`data:${type};base64,` + document.getElementById(`blob-${id}`).textContent);

  function array(packed) {
    if (!decoded.has(packed.blob)) {
      decoded.set(packed.blob, blob(packed.blob, "application/gzip")
        .then((response) => new Response(response.body.pipeThrough(new DecompressionStream("gzip"))).arrayBuffer())
        .then((bytes) => new TYPES[packed.dtype](bytes)));
    }
    return decoded.get(packed.blob);
  }

  // A sprite sheet is the CSS variable --sheet-<id>, set once its image is decoded: thumbnails drawn before
  // then appear when it is.
  function sheet(id) {
    if (!sheets.has(id)) {
      sheets.add(id);
      blob(id, "image/webp").then((response) => response.blob()).then((image) =>
        document.documentElement.style.setProperty(`--sheet-${id}`, `url(${URL.createObjectURL(image)})`));
    }
    return `var(--sheet-${id})`;
  }

  const short = (x) => (x !== 0 && Math.abs(x) < 0.01 ? x.toExponential(1) : x.toPrecision(2));  // fits 50 px
  const escape = (text) => String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
  const run = () => state.run;
  const labelOf = (row) => run().colourings[0].names[state.labels[row]];

  // Thumbnails: one CSS background per image, cut from its sprite sheet (a blob: URL each).
  function thumb(row, size = THUMB) {
    const t = run().thumbnails, scale = size / Math.max(t.width, t.height);
    const slot = row % t.per_sheet, w = t.width * scale, h = t.height * scale;
    const image = sheet(t.sheets[Math.floor(row / t.per_sheet)]);
    return `<div class="thumb" style="width:${w}px;height:${h}px;background-image:${image};` +
      `background-size:${t.columns * w}px auto;background-position:-${(slot % t.columns) * w}px ` +
      `-${Math.floor(slot / t.columns) * h}px"></div>`;
  }

  function figure(row, caption, note = "") {
    const key = run().keys[row];
    const title = `${key} · ${labelOf(row)}${run().files[row] ? " · " + run().files[row] : ""}`;
    return `<div class="figure" data-row="${row}" data-key="${escape(key)}" title="${escape(title)}">` +
      `${thumb(row)}<span>${escape(caption)}</span>${note ? `<span>${escape(note)}</span>` : ""}</div>`;
  }

  const figures = (rows, note = () => "") =>
    `<div class="row">${rows.map((r, i) => figure(r, labelOf(r), note(r, i))).join("")}</div>`;

  // The map: positions, colours, and rings around the chosen image (red) and its neighbours in φ (black).
  async function drawMap() {
    $("tooltip").hidden = true;
    const map = run().maps[$("map").value];
    const [x, y] = await Promise.all([array(map.x), array(map.y)]);
    state.models.points.data = {x, y, colour: state.colour || new Float32Array(x.length)};
    await mark(state.marked);
  }

  async function mark(rows, colour = "#111111") {
    state.marked = rows;
    const map = run().maps[$("map").value];
    const [x, y] = await Promise.all([array(map.x), array(map.y)]);
    const ringed = state.row === null ? rows : [...rows, state.row];  // the chosen one on top
    const colours = ringed.map((r) => (r === state.row ? "#d62728" : colour));
    state.models.marked.data = {x: ringed.map((r) => x[r]), y: ringed.map((r) => y[r]), colour: colours};
  }

  async function channelValues(channel) {
    const levels = await array(run().channels.levels), channels = run().channels.peak.length;
    const values = new Float32Array(run().count);
    for (let i = 0; i < values.length; i++) values[i] = (levels[i * channels + channel] / 255) * run().channels.peak[channel];
    return values;
  }

  async function recolour() {
    const choice = $("colouring").value, mapper = state.models.colours;
    $("channel-choice").hidden = choice !== "channel";
    const colouring = choice === "channel" ? null : run().colourings[Number(choice)];
    let colour;
    if (colouring && colouring.kind === "category") {
      const codes = await array(colouring.codes);
      colour = Float32Array.from(codes, (c) => Math.min(c, OTHER));
      mapper.palette = [...DATA.category, "#c8c8c8"];
      [mapper.low, mapper.high] = [0, COLOURS + 1];
      categoryLegend(colouring);
    } else {
      const channel = Number($("channel").value);
      colour = colouring ? await array(colouring.values) : await channelValues(channel);
      let [low, high] = [Infinity, -Infinity];
      for (const v of colour) if (Number.isFinite(v)) [low, high] = [Math.min(low, v), Math.max(high, v)];
      mapper.palette = DATA.viridis;
      [mapper.low, mapper.high] = [low, high > low ? high : low + 1];
      numberLegend(colouring ? colouring.name : `channel ${channel}`, low, high);
    }
    state.colour = colour;
    state.models.points.data = {...state.models.points.data, colour};
  }

  function categoryLegend(colouring) {
    const shown = colouring.names.slice(0, COLOURS).map((name, code) =>
      `<div class="entry" data-code="${code}"><span class="swatch" style="background:${DATA.category[code]}"></span>` +
      `${escape(name)} <small>(${colouring.counts[code]})</small></div>`);
    const rest = colouring.counts.slice(COLOURS);
    if (rest.length) {
      shown.push(`<div class="entry" data-code="${OTHER}"><span class="swatch" style="background:#c8c8c8"></span>` +
        `other: ${rest.length} more <small>(${rest.reduce((a, b) => a + b, 0)})</small></div>`);
    }
    $("legend").innerHTML = `<div class="title">${escape(colouring.name)}</div>${shown.join("")}`;
    $("legend").dataset.colouring = colouring.name;
  }

  function numberLegend(name, low, high) {
    const stops = DATA.viridis.filter((_, i) => i % 32 === 0 || i === 255).join(",");
    $("legend").innerHTML = `<div class="title">${escape(name)}</div>` +
      `<div class="gradient" style="background:linear-gradient(to right,${stops})"></div>` +
      `<div class="entry">${low.toPrecision(3)} … ${high.toPrecision(3)}</div>`;
    $("legend").dataset.colouring = name;
  }

  // A legend entry: ring its category's images and list them.
  async function showCategory(code) {
    const colouring = run().colourings[Number($("colouring").value)];
    const codes = await array(colouring.codes);
    const rows = [];
    codes.forEach((c, r) => { if (Math.min(c, OTHER) === code) rows.push(r); });
    const name = code === OTHER ? "other" : colouring.names[code];
    showFound(`${colouring.name}: ${name}`, rows);
  }

  function showFound(title, rows) {
    $("found").innerHTML = `<h3>${escape(title)}: ${rows.length} images` +
      `${rows.length > SHOWN ? ` <small>(the first ${SHOWN} shown, all ringed on the map)</small>` : ""}</h3>` +
      figures(rows.slice(0, SHOWN));
    mark(rows);
    $("found").scrollIntoView();
  }

  // A chosen image: its neighbours in each space, channels, clusters and samples.
  async function select(row) {
    state.row = row;
    const r = run(), key = r.keys[row], test = (await array(r.test))[row];
    $("hint").hidden = true;
    $("image").innerHTML = `<h2>${escape(key)}</h2><div class="row">${thumb(row, 160)}</div>` +
      `<p class="meta">label <b>${escape(labelOf(row))}</b> · ${test ? "test" : "train"} image` +
      `${r.files[row] ? ` · file <code>${escape(r.files[row])}</code>` : ""}</p>`;
    const sections = [];
    for (const space of r.neighbours) {
      const [found, distances] = await Promise.all([array(space.rows), array(space.distances)]);
      const k = space.rows.shape[1], rows = Array.from(found.subarray(row * k, row * k + k));
      const same = rows.filter((n) => labelOf(n) === labelOf(row)).length;
      sections.push(`<section class="neighbours" data-space="${escape(space.space)}">` +
        `<h3>Nearest in ${escape(space.title)} <small>${same} of ${k} share its label</small></h3>` +
        figures(rows, (n, i) => `d ${short(distances[row * k + i])}`) + "</section>");
    }
    $("neighbours").innerHTML = sections.join("");
    await showChannels(row);
    await showClusters(row);
    const samples = r.samples.find((s) => s.row === row);
    $("samples").innerHTML = samples ? `<h3>Self-guided samples <small>toward its φ; φ error under each</small></h3>` +
      `<div class="row">${samples.images.map((png, i) => `<div class="figure"><img class="sample" ` +
      `src="data:image/png;base64,${png}"><span>${samples.phi_error[i]}</span></div>`).join("")}</div>` : "";
    $("found").innerHTML = "";
    const phi = r.neighbours[0];
    const k = phi.rows.shape[1], nearest = (await array(phi.rows)).subarray(row * k, row * k + k);
    await mark(Array.from(nearest));
    document.body.dataset.selected = key;
  }

  async function showChannels(row) {
    const r = run(), count = r.channels.top.shape[1];
    const [channels, levels] = await Promise.all([array(r.channels.top), array(r.channels.top_levels)]);
    const values = {}, top = [];
    for (let i = row * count; i < (row + 1) * count; i++) {
      if (levels[i] > 0) { top.push(channels[i]); values[channels[i]] = levels[i]; }
    }
    $("channels").hidden = top.length === 0;
    const names = top.map((c) => `c${c}`);
    state.models.barChannels.factors = names;
    state.models.bars.data = {channel: names, value: top.map((c) => values[c] / 255),
      colour: top.map((c) => (r.channels.selective[c] ? "#2ca02c" : "#7f7f7f"))};
    state.barChannels = top;
    const images = await array(r.channels.top_images), ranked = r.channels.top_images.shape[1];
    $("channel-images").innerHTML = top.map((c) =>
      `<div class="channel" data-channel="${c}"><p class="meta"><b>channel ${c}</b> ` +
      `${r.channels.selective[c] ? "selective" : "not selective"} · PR ${r.channels.pr[c].toPrecision(3)} · ` +
      `this image ${(values[c] / 255).toFixed(2)} of its largest; the images it responds to most:</p>` +
      figures(Array.from(images.subarray(c * ranked, (c + 1) * ranked))) + "</div>").join("");
  }

  async function showClusters(row) {
    const r = run(), parts = [];
    for (const clustering of r.clusters) {
      const colouring = r.colourings.find((c) => c.name === `cluster k=${clustering.k}`);
      const code = (await array(colouring.codes))[row], id = Number(colouring.names[code]);
      const members = await array(clustering.members), width = clustering.members.shape[1];
      const rows = Array.from(members.subarray(id * width, (id + 1) * width)).filter((m) => m >= 0);
      parts.push(`<section class="cluster" data-k="${clustering.k}"><h3>Its cluster at k = ${clustering.k}: ` +
        `cluster ${id} <small>${colouring.counts[code]} images; the ${rows.length} nearest its centroid</small></h3>` +
        figures(rows) + "</section>");
    }
    $("clusters").innerHTML = parts.join("");
  }

  // Search: a key, else a label (exact, then containing the text), else keys containing it.
  async function search(text) {
    const r = run(), query = text.trim();
    if (!query) return;
    const row = r.keys.indexOf(query);
    if (row >= 0) return select(row);
    const lower = query.toLowerCase(), names = r.colourings[0].names;
    let codes = names.map((n, c) => [n.toLowerCase(), c]).filter(([n]) => n === lower).map(([, c]) => c);
    if (!codes.length) codes = names.map((n, c) => [n.toLowerCase(), c]).filter(([n]) => n.includes(lower)).map(([, c]) => c);
    const rows = [];
    if (codes.length) state.labels.forEach((c, i) => { if (codes.includes(c)) rows.push(i); });
    else r.keys.forEach((k, i) => { if (k.toLowerCase().includes(lower)) rows.push(i); });
    showFound(codes.length ? `label ${codes.map((c) => names[c]).join(", ")}` : `keys containing "${query}"`, rows);
  }

  // Hover: the image under the pointer, beside it.
  function hover(data) {
    const tooltip = $("tooltip"), found = data.index.indices;
    if (!found.length) { tooltip.hidden = true; return; }
    const row = found[found.length - 1], area = $("map-area").getBoundingClientRect();
    tooltip.innerHTML = `${thumb(row, 96)}<div>${escape(run().keys[row])}<br><b>${escape(labelOf(row))}</b></div>`;
    tooltip.hidden = false;
    tooltip.style.left = `${Math.min(data.geometry.sx + 14, area.width - 130)}px`;
    tooltip.style.top = `${Math.min(data.geometry.sy + 14, area.height - 150)}px`;
  }

  function tapped(indices) {
    if (!indices.length) return;
    state.models.points.selected.indices = [];
    select(indices[0]);
  }

  function barTapped(indices) {
    if (!indices.length) return;
    state.models.bars.selected.indices = [];
    $("colouring").value = "channel";
    $("channel").value = String(state.barChannels[indices[0]]);
    recolour();
  }

  // Where a point is drawn, in the window's coordinates (the browser test clicks it there).
  function whereIs(row) {
    const plot = state.models.map, view = plot.document.views_manager.find_one(plot);
    const map = run().maps[$("map").value], bounds = view.el.getBoundingClientRect();
    return Promise.all([array(map.x), array(map.y)]).then(([x, y]) => ({
      x: bounds.left + view.frame.x_scale.compute(x[row]), y: bounds.top + view.frame.y_scale.compute(y[row])}));
  }

  async function showRun(index) {
    const key = state.row === null ? null : run().keys[state.row];
    state.run = DATA.runs[index];
    state.row = null;
    state.marked = [];
    const r = run();
    state.labels = await array(r.colourings[0].codes);
    $("map").innerHTML = Object.keys(r.maps).map((m) => `<option>${m}</option>`).join("");
    $("colouring").innerHTML = r.colourings.map((c, i) => `<option value="${i}">${escape(c.name)}</option>`).join("") +
      `<option value="channel">one channel's φ</option>`;
    $("channel").innerHTML = r.channels.peak.map((_, c) => (r.channels.dead[c] ? "" :
      `<option value="${c}">${c}${r.channels.selective[c] ? " (selective)" : ""}</option>`)).join("");
    await recolour();
    await drawMap();
    const row = key === null ? -1 : r.keys.indexOf(key);
    if (row >= 0) {
      await select(row);
    } else {  // this run does not map the chosen image: an empty panel
      for (const id of ["image", "neighbours", "clusters", "samples", "found"]) $(id).innerHTML = "";
      $("channels").hidden = true;
      $("hint").hidden = false;
      delete document.body.dataset.selected;
    }
    $("status").textContent = `${r.count.toLocaleString("en")} images · φ at σ = ${r.sigma}`;
  }

  async function bokehModels() {
    for (;;) {
      const doc = window.Bokeh && Bokeh.documents[0];
      const models = doc && ["points", "marked", "colours", "map", "bars", "bar_values", "bar_channels"]
        .map((name) => doc.get_model_by_name(name));
      if (models && models.every((m) => m) && models[3].document.views_manager?.find_one(models[3])) {
        const [points, marked, colours, map, , bars, barChannels] = models;
        return {points, marked, colours, map, bars, barChannels};
      }
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  async function start() {
    const timing = {script: performance.now()};
    state.models = await bokehModels();
    timing.bokeh = performance.now();
    $("run").innerHTML = DATA.runs.map((r, i) => `<option value="${i}">${escape(r.name)}</option>`).join("");
    $("run-choice").hidden = DATA.runs.length < 2;
    await showRun(0);
    $("run").onchange = () => showRun(Number($("run").value));
    $("map").onchange = drawMap;
    $("colouring").onchange = recolour;
    $("channel").onchange = recolour;
    $("search").onsubmit = (event) => { event.preventDefault(); search($("query").value); };
    $("panel").onclick = (event) => {
      const target = event.target.closest(".figure[data-row]");
      if (target) select(Number(target.dataset.row));
    };
    $("legend").onclick = (event) => {
      const entry = event.target.closest(".entry[data-code]");
      if (entry) showCategory(Number(entry.dataset.code));
    };
    timing.ready = performance.now();  // ms since the page was asked for
    document.body.dataset.timing = JSON.stringify(timing);
    document.body.dataset.ready = String(Math.round(timing.ready));
  }

  start();
  return {hover, tapped, barTapped, select, search, recolour, whereIs, state};
})();
