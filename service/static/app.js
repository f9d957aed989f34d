// The FairLoss dashboard, and the living example of calling the scoring API from JavaScript.
//
// No framework and no build step: fetch() talks to the service, the DOM and inline SVG show the
// results. Every number shown comes from the service's responses; the page computes no loss.
// Paths are relative ("score", not "/score") so the page also works behind a path prefix.
"use strict";

const README_EXAMPLE = {
  name: "model-a",
  logits: [[0.34, 0.33, 0.33], [0.49, 0.51, 0.0]],
  labels: [0, 0],
};
const PLOT_POINTS = 4000; // at most about this many samples drawn in the scatter (flipped ones always are)
const LABEL_GAP = 16; // least distance, in SVG units, between two labels in the scatter's label column
const HISTOGRAM_BINS = 20;
const SVG_NS = "http://www.w3.org/2000/svg";
// One colour per candidate (request order) in the reliability diagram and the error bars.
const PALETTE = ["#3056d3", "#c2255c", "#0f7b9c", "#b08800", "#7b2cbf", "#495057", "#2b8a3e", "#e8590c"];
const colorOf = (k) => PALETTE[k % PALETTE.length];
// The criteria the bootstrap gives an interval for (and /compare a paired difference), in the
// order shown. All but accuracy are losses: lower is better.
const CRITERIA = [
  ["ce", "cross-entropy"],
  ["penalty", "penalty"],
  ["total", "FairLoss total"],
  ["log_loss", "log loss"],
  ["brier", "Brier"],
  ["pll", "PLL"],
  ["pbs", "PBS"],
  ["accuracy", "accuracy"],
  ["ece", "ECE"],
];

const $ = (id) => document.getElementById(id);
const maxOf = (values) => values.reduce((a, b) => Math.max(a, b), -Infinity); // no spread: arrays may be long
const fmt = (x, digits = 4) => (x === null || x === undefined || Number.isNaN(x) ? "–" : Number(x).toFixed(digits));
const count = (k) => k.toLocaleString("en-US"); // 20000 -> "20,000"
const plural = (k, one, many = `${one}s`) => `${count(k)} ${k === 1 ? one : many}`;
const isNumber = (x) => typeof x === "number" && Number.isFinite(x);
// Interval bounds and differences' bounds: three significant digits ("1.54", "0.0213"), enough
// to see whether two intervals overlap; the estimates keep fmt's four decimals.
const sig = (x) => (isNumber(x) ? String(Number(x.toPrecision(3))) : "–");
const percent = (x, digits = 1) => (isNumber(x) ? `${fmt(x * 100, digits)}%` : "–");
const inPercent = (x) => (isNumber(x) ? x * 100 : null); // null (no value) stays null
const level = (c) => `${Number((c * 100).toPrecision(6))}%`; // 0.95 -> "95%"

// ---------------------------------------------------------------------------------------------
// Calling the API

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail ?? `HTTP ${status}`);
    this.status = status;
    this.problem = problem; // RFC 9457 problem details: type, title, status, detail, errors
  }
}

function authHeaders() {
  const key = $("opt-key").value.trim();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

// GET (no body) or POST a JSON body; resolves to the parsed JSON response. A 503 (the server is at
// its concurrency limit) is retried after its Retry-After seconds; any other error status throws
// an ApiError carrying the problem+json body.
async function callApi(path, body = undefined, attempts = 3) {
  const init = { method: body === undefined ? "GET" : "POST", headers: authHeaders() };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  for (let attempt = 1; ; attempt += 1) {
    const response = await fetch(path, init);
    if (response.status === 503 && attempt < attempts) {
      const seconds = Number(response.headers.get("Retry-After")) || 1;
      await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
      continue;
    }
    const data = await response.json().catch(() => null);
    if (!response.ok) throw new ApiError(response.status, data);
    return data;
  }
}

// The loss options of both endpoints; fields left empty are left out, so the server's defaults apply.
function lossOptions() {
  const options = { reduction: $("opt-reduction").value, precision: $("opt-precision").value };
  const numbers = { smooth_max_beta: "opt-beta", scaling_factor: "opt-scaling", ignore_index: "opt-ignore" };
  for (const [name, id] of Object.entries(numbers)) {
    const text = $(id).value.trim();
    if (text !== "") options[name] = Number(text);
  }
  return { ...options, ...bootstrapOption(), ...whereOptions() };
}

// The bootstrap field, when "bootstrap intervals" is ticked: { replicates, confidence_level, seed },
// each left out when its input is empty (the server's defaults: 1000, 0.95 and 0). With it, each
// scored body gains `intervals` and `/compare` gains `differences`, its paired tests.
function bootstrapOption() {
  if (!$("opt-bootstrap").checked) return {};
  const bootstrap = {};
  const numbers = { replicates: "opt-replicates", confidence_level: "opt-confidence", seed: "opt-seed" };
  for (const [name, id] of Object.entries(numbers)) {
    const text = $(id).value.trim();
    if (text !== "") bootstrap[name] = Number(text);
  }
  return { bootstrap };
}

// POST /score with the first candidate's predictions (logits, probabilities or log-probabilities).
async function runScore() {
  const [first] = readCandidates();
  const labels = readLabels(first);
  const result = await callApi("score", { [first.kind]: first.values, labels, ...lossOptions() });
  return { mode: "score", labels, candidates: [{ name: first.name, ...result }], ranking: null, differences: null };
}

// POST /compare with every candidate: each gets per-sample scores and superior violations (the
// (correct, wrong) sample pairs a criterion orders the wrong way), and the response ranks them.
// With the bootstrap on, `differences` holds one paired comparison per pair of candidates.
async function runCompare() {
  const candidates = readCandidates();
  const labels = readLabels(candidates[0]);
  const sent = candidates.map(({ name, kind, values }) => ({ name, [kind]: values }));
  const response = await callApi("compare", { labels, candidates: sent, ...lossOptions() });
  const { ranking, differences = null } = response;
  return { mode: "compare", labels, candidates: response.candidates, ranking, differences };
}

// ---------------------------------------------------------------------------------------------
// Reading the inputs: JSON arrays or CSV

function parseText(text, what) {
  const trimmed = text.trim();
  if (!trimmed) throw new Error(`${what}: nothing entered`);
  if (trimmed[0] === "[" || trimmed[0] === "{") {
    try {
      return JSON.parse(trimmed);
    } catch (error) {
      throw new Error(`${what}: not valid JSON (${error.message})`);
    }
  }
  return parseCsv(trimmed, what);
}

const KINDS = ["logits", "probabilities", "log_probabilities"];
const NEGATIVE_INFINITY = /^-(inf|infinity)$/i; // numpy's and pandas' way of writing log(0)

// Whether a CSV's first row is a header: a cell that is not a number (or is empty), or the
// names pandas gives unnamed columns, 0, 1, ..., C-1 written as integers, over rows of numbers
// written with a decimal point (a frame of predictions written by `to_csv(index=False)`).
function isHeader(rows) {
  const [first, ...rest] = rows;
  if (first.some((cell) => cell === "" || Number.isNaN(Number(cell)))) return true;
  const numbered = first.every((cell, c) => cell === String(c));
  return numbered && rest.some((cells) => cells.some((cell) => /[.eE]/.test(cell)));
}

// The cells of CSV rows separated by commas, semicolons, tabs or spaces; a header row is
// recognised and set aside (`header`), and a pandas index column (its header cell empty) dropped.
function csvCells(text) {
  let rows = text.split(/\r?\n/).map((line) => line.trim()).filter(Boolean).map((line) => line.split(/[,;\t ]+/));
  let header = null;
  if (isHeader(rows)) header = rows.shift();
  if (header && header[0] === "" && header.length > 1) {
    header = header.slice(1);
    rows = rows.map((cells) => cells.slice(1));
  }
  return { header, rows };
}

// The numbers in `columns` (by index; all when null) of each row.
function csvNumbers(rows, what, columns = null) {
  return rows.map((cells, r) =>
    (columns ?? cells.map((_, c) => c)).map((c) => {
      const cell = cells[c] ?? "";
      const value = NEGATIVE_INFINITY.test(cell) ? -Infinity : Number(cell);
      if (cell === "" || Number.isNaN(value)) {
        throw new Error(`${what}: CSV row ${r + 1}, column ${c + 1} ("${cell}") is not a number`);
      }
      return value;
    }),
  );
}

function parseCsv(text, what) {
  const { header, rows } = csvCells(text);
  const values = csvNumbers(rows, what);
  values.header = header;
  return values;
}

// A CSV of predictions, as the command line reads one: the columns KIND_0, ... (or pandas'
// 0, 1, ...) are the predictions, and a `labels` column the labels; with a header naming
// neither, every column but `labels` and `sample_weight`. One column: binary scores of class 1.
const PREDICTION_COLUMN = /^((logits|probabilities|log_probabilities)_)?[0-9]+$/;
function csvPredictions(text, what) {
  const { header, rows } = csvCells(text);
  let columns = null;
  let labels = null;
  if (header) {
    const at = (test) => header.flatMap((cell, c) => (test(cell) ? [c] : []));
    columns = at((cell) => PREDICTION_COLUMN.test(cell));
    if (!columns.length) columns = at((cell) => cell !== "labels" && cell !== "sample_weight");
    const labelsAt = header.indexOf("labels");
    if (labelsAt >= 0) labels = csvNumbers(rows, "labels", [labelsAt]).flat();
  }
  let values = csvNumbers(rows, what, columns);
  if (values.every((row) => row.length === 1)) values = values.flat();
  const named = header && columns.map((c) => header[c]);
  return { values, labels, kind: kindOfHeader(named) };
}

// The kind a CSV header names (`probabilities_0`, ... as `add_prefix` writes them), if any.
function kindOfHeader(header) {
  if (!header) return null;
  return [...KINDS].reverse().find((kind) => header.every((cell) => cell.startsWith(kind))) ?? null;
}

// JSON has no -Infinity: a log-probability of -inf (a probability of 0) goes as the lowest
// float64, which the service clips to the same value.
function finite(values) {
  return values.map((row) => (Array.isArray(row) ? finite(row) : row === -Infinity ? -Number.MAX_VALUE : row));
}

// Each candidate's name, kind and predictions, and the labels its input holds (a CSV's `labels`
// column, a JSON object's `labels`), if any.
function readCandidates() {
  return [...document.querySelectorAll(".candidate")].map((box, k) => {
    const name = box.querySelector(".candidate-name").value.trim() || `candidate-${k + 1}`;
    let kind = box.querySelector(".candidate-kind").value;
    const text = box.querySelector(".candidate-logits").value;
    const what = `${kind} of ${name}`;
    const trimmed = text.trim();
    let values;
    let labels = null;
    if (trimmed && trimmed[0] !== "[" && trimmed[0] !== "{") {
      const read = csvPredictions(trimmed, what);
      ({ values, labels } = read);
      kind = read.kind ?? kind;
    } else {
      const value = parseText(text, what);
      values = value;
      if (!Array.isArray(value)) {
        const held = KINDS.filter((key) => Array.isArray(value?.[key]));
        if (held.length !== 1) throw new Error(`predictions of ${name}: expected an array of rows, or an object holding one of ${KINDS.join(", ")}`);
        [kind] = held;
        values = value[kind];
        labels = Array.isArray(value.labels) ? value.labels : null;
      }
    }
    box.querySelector(".candidate-kind").value = kind;
    return { name, kind, values: finite(values), labels };
  });
}

// The labels; empty, those the first candidate's input holds. A lone "0" above them is the
// header pandas writes for an unnamed Series, set aside when the labels then outnumber the
// predictions by one.
function readLabels(first) {
  if (!$("labels").value.trim() && first?.labels) return first.labels;
  const value = parseText($("labels").value, "labels");
  let labels = Array.isArray(value) ? value.flat() : value.labels;
  if (!Array.isArray(labels)) throw new Error("labels: expected an array of class indices");
  const unnamed = value.header === null && $("labels").value.trim().split(/\r?\n/)[0].trim() === "0";
  if (unnamed && first && labels.length === first.values.length + 1) labels = labels.slice(1);
  return labels;
}

// ---------------------------------------------------------------------------------------------
// Small DOM and SVG helpers

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

function svg(tag, attrs = {}, children = []) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

// About `count` round tick values covering [0, max]; whole numbers only when `integer`.
function ticks(max, count = 5, integer = false) {
  const raw = integer ? Math.max(1, max / count) : max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const values = [];
  for (let v = 0; v <= max + step * 1e-9; v += step) values.push(Number(v.toPrecision(12)));
  return values;
}

// A chart frame: the plot area, scales from data to pixels, and both axes with ticks and titles.
function frame(xMax, yMax, xTitle, yTitle, { width = 520, height = 300, right = 14, xTicks = null, yInteger = false } = {}) {
  const m = { left: 56, right, top: 12, bottom: 44 };
  const x = (v) => m.left + (v / xMax) * (width - m.left - m.right);
  const y = (v) => height - m.bottom - (v / yMax) * (height - m.top - m.bottom);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (const t of ticks(yMax, 5, yInteger)) {
    root.append(
      svg("line", { class: "grid", x1: m.left, x2: width - m.right, y1: y(t), y2: y(t) }),
      svg("text", { class: "tick", x: m.left - 6, y: y(t) + 4, "text-anchor": "end" }, [fmtTick(t)]),
    );
  }
  for (const t of xTicks ?? ticks(xMax)) {
    root.append(svg("text", { class: "tick", x: x(t), y: height - m.bottom + 16, "text-anchor": "middle" }, [fmtTick(t)]));
  }
  root.append(
    svg("line", { class: "axis", x1: m.left, x2: width - m.right, y1: y(0), y2: y(0) }),
    svg("line", { class: "axis", x1: m.left, x2: m.left, y1: m.top, y2: y(0) }),
    svg("text", { class: "title", x: (m.left + width - m.right) / 2, y: height - 6, "text-anchor": "middle" }, [xTitle]),
    svg("text", { class: "title", transform: `translate(14 ${(m.top + y(0)) / 2}) rotate(-90)`, "text-anchor": "middle" }, [yTitle]),
  );
  return { root, x, y, m, width, height };
}

const fmtTick = (v) => String(Number(v.toPrecision(2)));

// ---------------------------------------------------------------------------------------------
// Rendering a result

let view = null; // the last response, shaped as { mode, labels, candidates, ranking, differences }
let shown = null; // the candidate shown: { result, flipped, page }; the table's controls re-render from it

// The server's example pairs (i correct, j wrong) that cross-entropy scores the wrong way round,
// and whether FairLoss's total puts them back in order.
function flippedPairs(result) {
  const examples = result.violations?.ce?.examples ?? [];
  const total = result.per_sample.total;
  return examples.map(([i, j]) => ({ i, j, fixed: total[i] <= total[j] }));
}

function render(index) {
  const result = view.candidates[index];
  // What the service says looks like a mistake in the input (logits that look like probabilities).
  const warnings = view.candidates.flatMap((c) => (c.warnings ?? []).map((w) => `${c.name}: ${w}`));
  $("warnings").textContent = warnings.join(" ");
  $("warnings").hidden = warnings.length === 0;
  const pairs = flippedPairs(result);
  const flipped = new Set(pairs.flatMap(({ i, j }) => [i, j]));
  renderSummary(result);
  renderScatter(result, pairs, flipped);
  renderHistogram(result);
  renderFlips(result, pairs);
  shown = { result, flipped, page: 0 };
  renderSamples();
  renderRanking();
  renderWhere(result);
  $("placeholder").hidden = true;
  $("output").hidden = false;
}

function card(name, label, value, note = "", interval = null) {
  return el("div", { class: "card", "data-metric": name }, [
    el("span", { class: "label" }, [label]),
    el("strong", { class: "value" }, [value]),
    ...(interval ? [el("span", { class: "interval" }, [interval])] : []),
    el("span", { class: "note" }, [note]),
  ]);
}

// ---------------------------------------------------------------------------------------------
// Bootstrap intervals, as text
//
// Every interval is of the per-sample mean (accuracy and ECE: of the whole set), whatever the
// reduction: with reduction "sum", the cards and the ranking say "mean" before the interval.

// "[low, high]" of one criterion; accuracy in percent.
function bounds(criterion, { low, high }) {
  if (criterion !== "accuracy") return `[${sig(low)}, ${sig(high)}]`;
  const inPercentText = (x) => (isNumber(x) ? `${sig(x * 100)}%` : "–");
  return `[${inPercentText(low)}, ${inPercentText(high)}]`;
}

// "estimate [low, high]", e.g. "1.5897 [1.54, 1.63]" or "80.0% [32.7%, 100%]".
function intervalText(criterion, interval) {
  const estimate = criterion === "accuracy" ? percent(interval.estimate) : fmt(interval.estimate);
  return `${estimate} ${bounds(criterion, interval)}`;
}

// The interval under a value already shown (a card, a ranking cell): "95% [0.19, 1.08]" ("[0.19,
// 1.08]" without the level), or with the estimate when the value shown is a sum, not the mean the
// interval is about.
function intervalNote(result, criterion, withLevel = true) {
  const interval = result.intervals?.[criterion];
  if (!interval) return null;
  const at = withLevel ? `${level(result.bootstrap.confidence_level)} ` : "";
  const summed = ["ce", "penalty", "total"].includes(criterion) && result.reduced.reduction === "sum";
  return summed ? `${at}mean ${intervalText(criterion, interval)}` : `${at}${bounds(criterion, interval)}`;
}

function renderSummary(result) {
  const { reduced, metrics } = result;
  const how = reduced.reduction;
  const interval = (criterion) => intervalNote(result, criterion);
  const cards = [
    card("accuracy", "accuracy", `${fmt(metrics.accuracy * 100, 1)}%`, `${result.sums.correct} of ${result.sums.count} correct`, interval("accuracy")),
    card("ce", `cross-entropy (${how})`, fmt(reduced.ce), "", interval("ce")),
    card("penalty", `penalty (${how})`, fmt(reduced.penalty), "", interval("penalty")),
    card("total", `FairLoss total (${how})`, fmt(reduced.total), "", interval("total")),
    card("pll", "PLL (mean)", fmt(metrics.pll), "penalized log loss", interval("pll")),
    card("pbs", "PBS (mean)", fmt(metrics.pbs), "penalized Brier score", interval("pbs")),
    card("ece", "ECE", fmt(metrics.ece), `${count(result.n)} samples on ${result.device}`, interval("ece")),
  ];
  if (result.violations) {
    const { ce, total } = result.violations;
    cards.push(card("violations", "pairs in the wrong order", `${count(ce.count)} → ${count(total.count)}`, `CE → FairLoss, of ${count(ce.pairs)} (correct, wrong) pairs`));
  }
  $("summary").replaceChildren(...cards);
}

// The samples the scatter draws: all of them up to PLOT_POINTS, otherwise one in every `stride`
// by sample # (#0, #stride, #2·stride, …); the flipped ones always. The rule is stated under the plot.
function plotted(n, flipped) {
  const stride = Math.max(1, Math.ceil(n / PLOT_POINTS));
  const chosen = new Set(flipped);
  for (let i = 0; i < n; i += stride) chosen.add(i);
  return { stride, indices: [...chosen].sort((a, b) => a - b) };
}

// Label positions for a column of labels: as close to each label's target height as they can be,
// in the same order, never closer than `gap` to each other and inside [top, bottom] when
// (count - 1) * gap fits there. Targets must be sorted ascending.
function spreadLabels(targets, top, bottom, gap) {
  const at = [];
  targets.forEach((t, k) => at.push(Math.max(t, k ? at[k - 1] + gap : top))); // push down past the one above
  for (let k = at.length - 1; k >= 0; k -= 1) {
    at[k] = Math.min(at[k], k === at.length - 1 ? bottom : at[k + 1] - gap); // then up, off the bottom
  }
  return at;
}

function renderScatter(result, pairs, flipped) {
  const { ce, total, correct } = result.per_sample;
  const n = ce.length;
  const max = Math.max(maxOf(ce), maxOf(total), 1e-6) * 1.08;
  // The flipped samples are labelled in a column right of the plot, so the chart is tall enough
  // for all their labels at LABEL_GAP apart: labels never overlap, however close their points are.
  const height = Math.max(300, flipped.size * LABEL_GAP + 56);
  const { root, x, y, m, width } = frame(max, max, "cross-entropy", "FairLoss total", { height, right: 66 });
  root.append(svg("line", { class: "diagonal", x1: x(0), y1: y(0), x2: x(max), y2: y(max) }));
  for (const { i, j, fixed } of pairs) {
    root.append(svg("line", { class: `pair ${fixed ? "fixed" : ""}`, x1: x(ce[i]), y1: y(total[i]), x2: x(ce[j]), y2: y(total[j]) }));
  }
  const radius = n <= 200 ? 6 : n <= 2000 ? 4 : 2.5;
  const { stride, indices } = plotted(n, flipped);
  const point = (i) => {
    const tip = `#${i}: label ${view.labels[i]}, predicted ${result.per_sample.predicted[i]}\nCE ${fmt(ce[i])}, total ${fmt(total[i])}`;
    const kind = correct[i] ? "ok" : "bad";
    const attrs = { class: `point ${kind} ${flipped.has(i) ? "flip" : ""}`, cx: x(ce[i]), cy: y(total[i]), r: flipped.has(i) ? 6 : radius, "data-index": i };
    return svg("circle", attrs, [svg("title", {}, [tip])]);
  };
  root.append(...indices.filter((i) => !flipped.has(i)).map(point)); // flipped ones last: on top
  const labelled = [...flipped].sort((a, b) => total[b] - total[a] || a - b); // top of the plot first
  root.append(...labelled.map(point));

  const column = width - m.right + 10;
  const at = spreadLabels(labelled.map((i) => y(total[i]) + 4), m.top + 10, y(0) + 4, LABEL_GAP);
  labelled.forEach((i, k) => {
    root.append(
      svg("line", { class: "leader", x1: x(ce[i]) + 6, y1: y(total[i]), x2: column - 3, y2: at[k] - 4 }),
      svg("text", { class: "point-label", x: column, y: at[k], "data-index": i }, [`#${i}`]),
    );
  });
  $("scatter").replaceChildren(root);

  const drawn = indices.length;
  const inPairs = flipped.size ? `, including the ${plural(flipped.size, "sample")} of the flipped pairs (labelled on the right)` : "";
  $("scatter-note").textContent = drawn === n
    ? `All ${plural(n, "sample")} drawn${inPairs}.`
    : `${count(drawn)} of ${count(n)} samples drawn: one in every ${stride} by sample # (#0, #${stride}, #${2 * stride}, …)` +
      `${flipped.size ? ` plus the ${plural(flipped.size, "sample")} of the flipped pairs (labelled on the right)` : ""}; ` +
      `${count(n - drawn)} not drawn. Every sample is in the table below and in its CSV.`;
}

function renderHistogram(result) {
  const { penalty, correct, counted } = result.per_sample;
  const top = Math.max(1 / result.num_classes, maxOf(penalty));
  const bins = Array.from({ length: HISTOGRAM_BINS }, () => ({ ok: 0, bad: 0 }));
  penalty.forEach((p, i) => {
    if (counted && !counted[i]) return;
    const bin = bins[Math.min(HISTOGRAM_BINS - 1, Math.floor((p / top) * HISTOGRAM_BINS))];
    bin[correct[i] ? "ok" : "bad"] += 1;
  });
  const most = Math.max(maxOf(bins.map((b) => b.ok + b.bad)), 1);
  const xTicks = [0, top / 4, top / 2, (3 * top) / 4, top];
  const title = `penalty (at most 1/C = ${fmt(1 / result.num_classes, 3)})`;
  const { root, x, y } = frame(top, most * 1.1, title, "samples", { xTicks, yInteger: true });
  const width = x(top / HISTOGRAM_BINS) - x(0) - 2;
  bins.forEach((bin, k) => {
    const left = x((k * top) / HISTOGRAM_BINS) + 1;
    const range = `${fmt((k * top) / HISTOGRAM_BINS, 3)}–${fmt(((k + 1) * top) / HISTOGRAM_BINS, 3)}`;
    for (const [kind, base, count] of [["ok", 0, bin.ok], ["bad", bin.ok, bin.bad]]) {
      if (!count) continue;
      root.append(svg("rect", { class: `bar ${kind}`, x: left, width, y: y(base + count), height: y(base) - y(base + count) }, [
        svg("title", {}, [`penalty ${range}: ${count} ${kind === "ok" ? "correct" : "wrong"}`]),
      ]));
    }
  });
  $("histogram").replaceChildren(root);
  const binned = bins.reduce((sum, b) => sum + b.ok + b.bad, 0);
  $("histogram-note").textContent = binned === penalty.length
    ? `All ${plural(binned, "sample")} counted.`
    : `${count(binned)} of ${count(penalty.length)} samples counted: the others' label is ignore_index.`;
}

function renderFlips(result, pairs) {
  const box = $("flips");
  if (!result.violations) {
    box.replaceChildren(el("p", { class: "empty" }, ["Run Compare to see which (correct, wrong) sample pairs cross-entropy puts in the wrong order."]));
    return;
  }
  if (!pairs.length) {
    box.replaceChildren(el("p", { class: "rule" }, ["Cross-entropy orders every (correct, wrong) pair correctly here."]));
    return;
  }
  const { ce, total } = result.per_sample;
  const items = pairs.map(({ i, j, fixed }) =>
    el("li", { "data-pair": `${i},${j}` }, [
      `Cross-entropy prefers wrong sample #${j} (${fmt(ce[j])}) to correct sample #${i} (${fmt(ce[i])}); `,
      el("strong", { class: fixed ? "good" : "bad" }, [fixed ? "FairLoss puts them back in order" : "FairLoss keeps the flip"]),
      ` (${fmt(total[i])} vs ${fmt(total[j])}).`,
    ]),
  );
  const { ce: byCe, total: byTotal } = result.violations;
  const C = result.num_classes;
  box.replaceChildren(
    el("div", { class: "flips" }, [
      el("h3", {}, [`Order flipped by cross-entropy: ${count(byCe.count)} of ${plural(byCe.pairs, "(correct, wrong) pair")}`]),
      el("p", { class: "rule", id: "flips-rule" }, [
        `Listed: the ${plural(pairs.length, "example")} the service returns, the correct samples that cross-entropy `
        + "scores worst, each against the wrong sample it scores best. The counts cover every pair.",
      ]),
      el("ul", {}, items),
      // Why FairLoss can keep a flip. Careful: FairLoss guarantees no such order; only the paper's
      // PLL and PBS do, by construction.
      el("p", { class: "rule", id: "flips-why" }, [
        "The paper's PLL and PBS are superior by construction: "
        + "under them a correct prediction always scores better than a wrong one (but for exact "
        + "ties for the top logit, which the paper counts as correct and accuracy's argmax may not). "
        + "FairLoss only makes such inversions rarer: its penalty is at most "
        + `1/C = ${fmt(1 / C, 3)}, while the cross-entropy of a barely-correct sample can exceed a barely-wrong `
        + `one's by up to ln(C/2) = ${fmt(Math.log(C / 2), 3)}. /compare counts the inversions left: `
        + `${count(byTotal.count)} of ${count(byTotal.pairs)} pairs under the FairLoss total, against `
        + `${count(byCe.count)} under cross-entropy.`,
      ]),
    ]),
  );
}

// The table lists one page of samples in the order picked above it; the note under the controls
// says which rows are shown and how to see the others (the other pages, or the CSV of all rows).
const ORDERS = {
  flips: (ps, flipped) => (a, b) => flipped.has(b) - flipped.has(a) || a - b,
  index: () => (a, b) => a - b,
  total: (ps) => (a, b) => ps.total[b] - ps.total[a] || a - b,
  ce: (ps) => (a, b) => ps.ce[b] - ps.ce[a] || a - b,
};

function orderRule(order, flipped) {
  if (order === "flips" && flipped.size) return `the ${plural(flipped.size, "sample")} of the flipped pairs first, then the rest by sample #`;
  return { flips: "by sample #", index: "by sample #", total: "by FairLoss total, highest first", ce: "by cross-entropy, highest first" }[order];
}

function renderSamples() {
  const { result, flipped } = shown;
  const ps = result.per_sample;
  const { ce, penalty, total, predicted, correct } = ps;
  const n = ce.length;
  const order = $("table-order").value;
  const size = Number($("table-size").value);
  const pages = Math.max(1, Math.ceil(n / size));
  shown.page = Math.min(Math.max(shown.page, 0), pages - 1);
  const from = shown.page * size;
  const all = Array.from({ length: n }, (_, i) => i).sort(ORDERS[order](ps, flipped));
  const rows = all.slice(from, from + size);

  const titles = ["#", "label", "predicted", "correct", "cross-entropy", "penalty", "FairLoss total", ""];
  const head = el("thead", {}, [el("tr", {}, titles.map((h, k) => el("th", { class: k >= 4 && k <= 6 ? "num" : "" }, [h])))]);
  const body = el("tbody", {}, rows.map((i) =>
    el("tr", { "data-index": i, class: flipped.has(i) ? "flipped" : "" }, [
      el("td", {}, [String(i)]),
      el("td", { class: "label" }, [String(view.labels[i])]),
      el("td", { class: "predicted" }, [String(predicted[i])]),
      el("td", { class: `correct ${correct[i] ? "good" : "bad"}` }, [correct[i] ? "✓" : "✗"]),
      el("td", { class: "num ce" }, [fmt(ce[i])]),
      el("td", { class: "num penalty" }, [fmt(penalty[i])]),
      el("td", { class: "num total" }, [fmt(total[i])]),
      el("td", { class: "flag" }, [flipped.has(i) ? "order flipped by CE" : ""]),
    ]),
  ));
  $("samples").replaceChildren(head, body);

  const rule = orderRule(order, flipped);
  $("samples-note").textContent = rows.length === n
    ? `All ${plural(n, "row")} shown, ${rule}.`
    : `Rows ${count(from + 1)}–${count(from + rows.length)} of ${count(n)} shown (page ${shown.page + 1} of ${pages}), ${rule}. `
      + `${count(n - rows.length)} not shown: use previous / next, more rows per page, or download all ${count(n)} rows as CSV.`;
  $("page-prev").disabled = shown.page === 0;
  $("page-next").disabled = shown.page === pages - 1;
  $("download-csv").textContent = `download all ${plural(n, "row")} (CSV)`;
}

// Every per-sample column of the candidate shown, one row per sample, saved as a CSV file. The file
// is built here from the response already received, so nothing is fetched.
function downloadCsv() {
  const { result } = shown;
  const columns = Object.keys(result.per_sample);
  const lines = [["sample", "label", ...columns].join(",")];
  for (let i = 0; i < view.labels.length; i += 1) {
    lines.push([i, view.labels[i], ...columns.map((c) => result.per_sample[c][i])].join(","));
  }
  const url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  const link = el("a", { href: url, download: `${result.name ?? "scores"}-per-sample.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 0);
}

// One row per candidate, one column per criterion: the value and the candidate's rank under it.
function renderRanking() {
  const box = $("ranking-box");
  box.hidden = !view.ranking;
  if (!view.ranking) return;
  const columns = [
    ["accuracy", "accuracy", (c) => `${fmt(c.metrics.accuracy * 100, 1)}%`],
    ["ce", `cross-entropy`, (c) => fmt(c.reduced.ce)],
    ["total", "FairLoss total", (c) => fmt(c.reduced.total)],
    ["pll", "PLL", (c) => fmt(c.metrics.pll)],
    ["pbs", "PBS", (c) => fmt(c.metrics.pbs)],
    ["brier", "Brier", (c) => fmt(c.metrics.brier)],
  ];
  const head = el("thead", {}, [el("tr", {}, [
    el("th", {}, ["candidate"]),
    ...columns.map(([, title]) => el("th", { class: "num" }, [title])),
    el("th", { class: "num", title: "superior violations under cross-entropy" }, ["CE viol."]),
    el("th", { class: "num", title: "superior violations under FairLoss" }, ["FairLoss viol."]),
  ])]);
  const body = el("tbody", {}, view.candidates.map((c) =>
    el("tr", { "data-candidate": c.name }, [
      el("th", { scope: "row" }, [c.name]),
      ...columns.map(([criterion, , value]) => {
        const rank = view.ranking[criterion].indexOf(c.name) + 1;
        const interval = intervalNote(c, criterion, false);
        const tip = interval ? { title: `${level(c.bootstrap.confidence_level)} bootstrap interval` } : {};
        return el("td", { class: `num ${rank === 1 ? "best" : ""}`, "data-criterion": criterion }, [
          value(c),
          el("span", { class: "rank" }, [`#${rank}`]),
          ...(interval ? [el("span", { class: "interval", ...tip }, [interval])] : []),
        ]);
      }),
      el("td", { class: "num" }, [`${count(c.violations.ce.count)} / ${count(c.violations.ce.pairs)}`]),
      el("td", { class: "num" }, [`${count(c.violations.total.count)} / ${count(c.violations.total.pairs)}`]),
    ]),
  ));
  $("ranking").replaceChildren(head, body);
}

// ---------------------------------------------------------------------------------------------
// Calibration: the reliability diagram

// Every candidate's ECE bins in one chart: for each bin that holds samples, a point at the mean
// confidence (the top class's probability) of its samples and the share of them predicted
// correctly, the points of a candidate joined by a line. The dashed diagonal y = x is perfect
// calibration; the thin vertical segments are each bin's gap to it, the terms ECE sums (weighted
// by the bin counts, drawn as bars under the plot: one bar per candidate per bin). Empty bins
// have no accuracy, so they get no point and no bar.
function renderReliability() {
  const width = 520;
  const m = { left: 56, right: 14, top: 12 };
  const plot = 260; // the height of the accuracy plot; below it, a strip of bin counts
  const strip = 64;
  const gap = 18;
  const base = m.top + plot + gap + strip; // the count strip's zero line
  const height = base + 44;
  const x = (v) => m.left + v * (width - m.left - m.right);
  const y = (v) => m.top + (1 - v) * plot;
  const bins = view.candidates.map((c) => c.sums.bins);
  const nBins = bins[0].count.length;
  const most = Math.max(maxOf(bins.flatMap((b) => b.count)), 1e-12);
  const yCount = (v) => base - (v / most) * strip;

  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": "reliability diagram" });
  for (const t of [0, 0.2, 0.4, 0.6, 0.8, 1]) {
    root.append(
      svg("line", { class: "grid", x1: m.left, x2: width - m.right, y1: y(t), y2: y(t) }),
      svg("line", { class: "grid", x1: x(t), x2: x(t), y1: m.top, y2: y(0) }),
      svg("text", { class: "tick y-tick", x: m.left - 6, y: y(t) + 4, "text-anchor": "end" }, [fmtTick(t)]),
      svg("text", { class: "tick x-tick", x: x(t), y: base + 16, "text-anchor": "middle" }, [fmtTick(t)]),
    );
  }
  root.append(
    // The accuracy plot's axes, the count strip's axes, their titles, and the diagonal.
    svg("line", { class: "axis", x1: m.left, x2: width - m.right, y1: y(0), y2: y(0) }),
    svg("line", { class: "axis", x1: m.left, x2: m.left, y1: m.top, y2: y(0) }),
    svg("line", { class: "axis", x1: m.left, x2: width - m.right, y1: base, y2: base }),
    svg("line", { class: "axis", x1: m.left, x2: m.left, y1: base - strip, y2: base }),
    svg("text", { class: "tick count-tick", x: m.left - 6, y: base - strip + 8, "text-anchor": "end" }, [String(Number(most.toPrecision(3)))]),
    svg("text", { class: "tick count-tick", x: m.left - 6, y: base + 4, "text-anchor": "end" }, ["0"]),
    svg("text", { class: "title x-title", x: (m.left + width - m.right) / 2, y: height - 6, "text-anchor": "middle" }, ["confidence (mean of the bin's samples)"]),
    svg("text", { class: "title y-title", transform: `translate(14 ${m.top + plot / 2}) rotate(-90)`, "text-anchor": "middle" }, ["accuracy (share correct)"]),
    svg("text", { class: "title count-title", transform: `translate(14 ${base - strip / 2}) rotate(-90)`, "text-anchor": "middle" }, ["samples"]),
    svg("line", { class: "diagonal", x1: x(0), y1: y(0), x2: x(1), y2: y(1) }, [svg("title", {}, ["perfect calibration: accuracy = confidence"])]),
  );

  const slot = (x(1 / nBins) - x(0) - 2) / view.candidates.length; // one bar's width in a bin
  const layers = { gaps: [], lines: [], points: [] }; // drawn in this order: points on top
  view.candidates.forEach((c, k) => {
    const color = colorOf(k);
    const { count: counts, confidence, correct } = bins[k];
    const drawn = [];
    counts.forEach((n, b) => {
      if (!(n > 0)) return; // an empty bin: no accuracy to draw
      const conf = confidence[b] / n;
      const acc = correct[b] / n;
      const range = `(${fmt(b / nBins, 3)}, ${fmt((b + 1) / nBins, 3)}]`;
      const tip = `${c.name}, bin ${range}: ${count(n)} samples, mean confidence ${fmt(conf, 3)}, accuracy ${fmt(acc, 3)}`;
      const data = { "data-candidate": c.name, "data-bin": b, "data-count": n, "data-confidence": conf, "data-accuracy": acc };
      layers.gaps.push(svg("line", { class: "gap", x1: x(conf), y1: y(acc), x2: x(conf), y2: y(conf), stroke: color }));
      layers.points.push(svg("circle", { class: "bin-point", cx: x(conf), cy: y(acc), r: 4.5, fill: color, ...data }, [svg("title", {}, [tip])]));
      root.append(svg("rect", {
        class: "count-bar", x: x(b / nBins) + 1 + k * slot, width: slot, y: yCount(n), height: base - yCount(n), fill: color, ...data,
      }, [svg("title", {}, [tip])]));
      drawn.push(`${x(conf)},${y(acc)}`);
    });
    layers.lines.push(svg("polyline", { class: "reliability-line", points: drawn.join(" "), stroke: color, "data-candidate": c.name }));
  });
  root.append(...layers.gaps, ...layers.lines, ...layers.points);
  $("reliability").replaceChildren(root);

  $("reliability-legend").replaceChildren(...view.candidates.map((c, k) =>
    el("span", { class: "swatch", "data-candidate": c.name }, [
      el("i", { class: "dot", style: `background: ${colorOf(k)}` }), `${c.name} (ECE ${fmt(c.metrics.ece)})`,
    ]),
  ));
  const filled = bins.map((b, k) => `${view.candidates[k].name}: ${b.count.filter((n) => n > 0).length} of ${nBins}`).join("; ");
  $("reliability-note").textContent =
    `One point per non-empty bin of the ${nBins} equal-width confidence bins of (0, 1] (${filled} bins hold samples; `
    + "empty bins are left out): the share of the bin's samples predicted correctly against their mean confidence "
    + "(the top class's probability); the bars below count the bin's samples. On the dashed diagonal y = x a model "
    + "is calibrated: ECE sums the vertical gaps to it, each weighted by its bin's share of the samples.";
}

// ---------------------------------------------------------------------------------------------
// Uncertainty: bootstrap intervals and paired differences

// One criterion's intervals across the candidates, on one shared axis: a horizontal bar from low
// to high with a dot at the estimate, one row per candidate, so overlaps show at a glance.
function errorBars(criterion) {
  const rows = view.candidates.map((c) => c.intervals[criterion]);
  const values = rows.flatMap(({ estimate, low, high }) => [estimate, low, high]).filter(isNumber);
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  const pad = (hi - lo) * 0.06 || Math.abs(hi) * 0.05 || 0.01; // a point interval still gets a width
  lo -= pad;
  hi += pad;
  const width = 240;
  const row = 12;
  const x = (v) => 6 + ((v - lo) / (hi - lo)) * (width - 12);
  const root = svg("svg", { class: "ebars", viewBox: `0 0 ${width} ${rows.length * row + 6}`, width, height: rows.length * row + 6 });
  rows.forEach((interval, k) => {
    const name = view.candidates[k].name;
    const cy = 3 + row * k + row / 2;
    const bar = svg("g", { class: "ebar", "data-candidate": name, stroke: colorOf(k), fill: colorOf(k) }, [
      svg("title", {}, [`${name}: ${intervalText(criterion, interval)}`]),
    ]);
    const { estimate, low, high } = interval;
    if (isNumber(low) && isNumber(high)) {
      bar.append(
        svg("line", { class: "range", x1: x(low), x2: x(high), y1: cy, y2: cy }),
        svg("line", { class: "cap", x1: x(low), x2: x(low), y1: cy - 4, y2: cy + 4 }),
        svg("line", { class: "cap", x1: x(high), x2: x(high), y1: cy - 4, y2: cy + 4 }),
      );
    }
    if (isNumber(estimate)) bar.append(svg("circle", { class: "estimate", cx: x(estimate), cy, r: 3.5 }));
    root.append(bar);
  });
  return root;
}

// One row per criterion: each candidate's "estimate [low, high]", then the error bars of all.
function renderIntervals() {
  const box = $("intervals");
  const title = $("intervals-title");
  if (!view.candidates.every((c) => c.intervals)) {
    title.textContent = "Bootstrap intervals";
    box.replaceChildren(el("p", { class: "empty" }, [
      "Tick bootstrap intervals under Loss options, then run Score or Compare, to see an interval for each criterion here.",
    ]));
    return;
  }
  const { replicates, confidence_level: confidence, seed } = view.candidates[0].bootstrap;
  title.textContent = `Bootstrap intervals: ${level(confidence)} percentile intervals, ${plural(replicates, "replicate")}, seed ${seed}`;
  const head = el("thead", {}, [el("tr", {}, [
    el("th", {}, ["criterion"]),
    ...view.candidates.map((c, k) => el("th", { class: "num" }, [el("i", { class: "dot", style: `background: ${colorOf(k)}` }), c.name])),
    el("th", {}, ["error bars (shared axis per row)"]),
  ])]);
  const body = el("tbody", {}, CRITERIA.filter(([criterion]) => view.candidates[0].intervals[criterion]).map(([criterion, label]) =>
    el("tr", { "data-criterion": criterion }, [
      el("th", { scope: "row" }, [label]),
      ...view.candidates.map((c) => el("td", { class: "num interval", "data-candidate": c.name }, [intervalText(criterion, c.intervals[criterion])])),
      el("td", { class: "bars" }, [errorBars(criterion)]),
    ]),
  ));
  box.replaceChildren(
    el("p", { class: "rule", id: "intervals-rule" }, [
      "Each cell: the value on the data [low, high], of the per-sample mean (accuracy and ECE: of the whole set). "
      + "Where bars overlap, the data do not tell those candidates apart under that criterion; the paired differences below test it.",
    ]),
    el("div", { class: "scroll" }, [el("table", { id: "interval-table" }, [head, body])]),
  );
}

// "+0.0213" for a positive difference as shown; negative ones, zeros and "–" stay as they are.
const signed = (text) => (Number(text) > 0 ? `+${text}` : text);

// A p-value as shown: four decimals, tiny ones in exponent form (never 0: the smallest from R
// randomizations is 1 / (1 + R)), "–" where there is no test.
function pValue(p) {
  if (!isNumber(p)) return "–";
  return p < 1e-4 ? p.toExponential(1) : p.toFixed(4);
}

// The pairwise differences a - b, one row per criterion, the significant ones marked. For losses
// (every criterion but accuracy) lower is better, so a negative difference favours a; for accuracy
// higher is better, so a positive one does.
function renderDifferences() {
  const box = $("differences");
  if (!view.differences?.length) {
    const why = view.mode === "compare" && view.candidates.length > 1
      ? "Tick bootstrap intervals under Loss options and run Compare again"
      : "Run Compare with two or more candidates and bootstrap intervals ticked";
    box.replaceChildren(el("p", { class: "empty" }, [`${why} to see each pair's differences, with intervals and p-values, here.`]));
    return;
  }
  const { confidence_level: confidence } = view.candidates[0].bootstrap;
  const alpha = 1 - confidence;
  const alphaText = String(Number(alpha.toPrecision(6)));
  // A p-value cell: the value, and a star when it is below alpha.
  const pCell = (kind, p, title) => {
    const significant = isNumber(p) && p < alpha;
    return el("td", { class: `num ${kind} ${significant ? "significant" : ""}`, title }, [
      el("span", { class: "value" }, [pValue(p)]),
      el("span", { class: "mark", "aria-label": significant ? "significant" : "" }, [significant ? "★" : ""]),
    ]);
  };
  const bodies = view.differences.map(({ a, b, criteria, discordant }) =>
    el("tbody", { "data-pair": `${a}|${b}` }, CRITERIA.filter(([criterion]) => criteria[criterion]).map(([criterion, label], row) => {
      const d = criteria[criterion];
      const accuracy = criterion === "accuracy";
      const higherIsBetter = accuracy;
      const favours = !isNumber(d.estimate) || d.estimate === 0 ? "neither" : (d.estimate > 0) === higherIsBetter ? a : b;
      const significant = [d.p_adjusted, d.mcnemar_p_value].some((p) => isNumber(p) && p < alpha);
      // Accuracy in percentage points, the losses as they are; "+" on the positive ones.
      const estimate = accuracy ? `${signed(fmt(inPercent(d.estimate), 1))} pp` : signed(fmt(d.estimate));
      const interval = accuracy ? `[${sig(inPercent(d.low))}, ${sig(inPercent(d.high))}] pp` : `[${sig(d.low)}, ${sig(d.high)}]`;
      const mcnemar = accuracy
        ? pCell("mcnemar", d.mcnemar_p_value, `McNemar's exact test: ${discordant[0]} samples only ${a} gets right, ${discordant[1]} only ${b}`)
        : el("td", { class: "num mcnemar" }, [""]);
      return el("tr", { "data-criterion": criterion, class: significant ? "significant" : "" }, [
        el("th", { scope: "row", class: "pair" }, [row === 0 ? `${a} − ${b}` : ""]),
        el("td", { class: "criterion" }, [label]),
        el("td", { class: "num estimate" }, [estimate]),
        el("td", { class: "num interval" }, [interval]),
        pCell("p-value", d.p_value, "paired randomization test: each sample's two outputs swapped at random"),
        pCell("holm", d.p_adjusted, "Holm's adjustment over the pairs of candidates"),
        mcnemar,
        el("td", { class: "favours" }, [favours]),
      ]);
    })),
  );
  const titles = ["pair a − b", "criterion", "difference", `${level(confidence)} interval`, "p-value", "Holm p", "McNemar p", "favours"];
  const head = el("thead", {}, [el("tr", {}, titles.map((t, k) => el("th", { class: k >= 2 && k <= 6 ? "num" : "" }, [t])))]);
  box.replaceChildren(
    el("p", { class: "rule", id: "differences-legend" }, [
      `Differences a − b, with the paired bootstrap's intervals and the paired randomization test's p-values. ★ marks `
      + `a Holm-adjusted p < ${alphaText} (1 − the ${level(confidence)} confidence level): a significant difference. Lower is better for every loss, so a `
      + "negative difference favours a; for accuracy (in percentage points) higher is better, so a positive one does, "
      + "and McNemar's exact test on the samples only one candidate gets right is shown too.",
    ]),
    el("div", { class: "scroll" }, [el("table", { id: "difference-table" }, [head, ...bodies])]),
  );
}

function show(newView) {
  view = newView;
  const select = $("candidate-select");
  select.replaceChildren(...view.candidates.map((c, k) => el("option", { value: k }, [c.name])));
  $("candidate-pick").hidden = view.candidates.length < 2;
  render(0);
  // These show every candidate at once, so picking another candidate leaves them as they are.
  renderReliability();
  renderIntervals();
  renderDifferences();
}

// ---------------------------------------------------------------------------------------------
// Wiring the page

function addCandidate(name = `model-${String.fromCharCode(97 + document.querySelectorAll(".candidate").length)}`, logits = "") {
  const box = $("candidate-template").content.firstElementChild.cloneNode(true);
  box.querySelector(".candidate-name").value = name;
  box.querySelector(".candidate-logits").value = logits;
  box.querySelector(".remove").addEventListener("click", () => {
    box.remove();
    updateRemoveButtons();
  });
  box.querySelector(".candidate-file").addEventListener("change", async (event) => {
    const text = await event.target.files[0].text();
    const value = text.trim().startsWith("{") ? JSON.parse(text) : null;
    const kind = KINDS.find((key) => value?.[key]);
    box.querySelector(".candidate-logits").value = kind ? JSON.stringify(value[kind]) : text;
    if (kind) box.querySelector(".candidate-kind").value = kind;
    if (value?.name) box.querySelector(".candidate-name").value = value.name;
    if (value?.labels) $("labels").value = JSON.stringify(value.labels);
  });
  $("candidates").append(box);
  updateRemoveButtons();
}

function updateRemoveButtons() {
  const boxes = document.querySelectorAll(".candidate");
  for (const box of boxes) box.querySelector(".remove").hidden = boxes.length < 2;
}

function loadExample() {
  $("candidates").replaceChildren();
  addCandidate(README_EXAMPLE.name, JSON.stringify(README_EXAMPLE.logits));
  $("labels").value = JSON.stringify(README_EXAMPLE.labels);
}

function showError(error) {
  const box = $("error");
  const where = error.problem?.errors?.[0]?.loc?.join(".");
  box.textContent = error instanceof ApiError
    ? `${error.status} ${error.problem?.title ?? "Error"}: ${error.message}${where ? ` (at ${where})` : ""}`
    : error.message;
  box.hidden = false;
}

// Run one request with the buttons disabled; its result replaces the one shown.
async function run(request) {
  const buttons = document.querySelectorAll(".actions button");
  buttons.forEach((b) => (b.disabled = true));
  $("error").hidden = true;
  try {
    show(await request());
  } catch (error) {
    // The results shown came from other inputs: they go, so nothing on screen contradicts the error.
    view = null;
    $("output").hidden = true;
    $("warnings").hidden = true;
    $("placeholder").hidden = false;
    showError(error);
  } finally {
    buttons.forEach((b) => (b.disabled = false));
  }
}

// A size as people read it: 64 MiB, 97.7 KiB, 512 bytes (binary units, as the settings take them).
function bytesText(bytes) {
  if (bytes < 1024) return `${bytes} bytes`;
  let value = bytes / 1024;
  for (const unit of ["KiB", "MiB", "GiB"]) {
    const shown = Number(value.toFixed(1));
    if (shown < 1024 || unit === "GiB") return `${shown} ${unit}`;
    value /= 1024;
  }
}

let infoAsked = 0; // the latest /info asked for: an older answer (another key's) is dropped

async function showServerInfo() {
  const asked = ++infoAsked;
  try {
    const info = await callApi("info");
    if (asked !== infoAsked) return;
    $("server-info").textContent = `service ${info.version} · torch ${info.torch_version} · devices ${info.devices.join(", ")} · bodies up to ${bytesText(info.limits.max_body_bytes)}`;
  } catch (error) {
    if (asked !== infoAsked) return;
    $("server-info").textContent = `server info unavailable (${error.message})`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  addCandidate("model-a");
  $("add-candidate").addEventListener("click", () => addCandidate());
  $("load-example").addEventListener("click", loadExample);
  $("run-score").addEventListener("click", () => run(runScore));
  $("run-compare").addEventListener("click", () => run(runCompare));
  $("candidate-select").addEventListener("change", (event) => render(Number(event.target.value)));
  const showPage = (page) => {
    shown.page = page;
    renderSamples();
  };
  $("page-prev").addEventListener("click", () => showPage(shown.page - 1));
  $("page-next").addEventListener("click", () => showPage(shown.page + 1));
  for (const id of ["table-order", "table-size"]) $(id).addEventListener("change", () => showPage(0));
  $("download-csv").addEventListener("click", downloadCsv);
  $("opt-bootstrap").addEventListener("change", (event) => {
    for (const id of ["opt-replicates", "opt-confidence", "opt-seed"]) $(id).disabled = !event.target.checked;
  });
  $("labels-file").addEventListener("change", async (event) => {
    $("labels").value = await event.target.files[0].text();
  });
  // a key may open /info: asked again as the key is typed or pasted, once it rests 300 ms
  let keyTimer;
  $("opt-key").addEventListener("input", () => {
    clearTimeout(keyTimer);
    keyTimer = setTimeout(showServerInfo, 300);
  });
  $("groups-file").addEventListener("change", async (event) => {
    $("groups").value = await event.target.files[0].text();
  });
  showServerInfo();
});
