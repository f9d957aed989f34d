"use strict";

// Where a model fails: per-class metrics with a confusion heat map of the most confused classes,
// and slices (group columns) with each key against the rest. Uses app.js's helpers ($, el, svg,
// fmt, percent, sig, level, count, isNumber) and its `view`.

const MOST_CLASSES = 50; // classes listed in the per-class table; past it, those with the lowest F1
const HEAT_CLASSES = 12; // classes in the confusion heat map: the most confused ones

// The `groups` field from the Groups box: a JSON object {column: [one key per sample]}, or CSV
// whose header row names the columns. A column whose values are all integers written plainly (no
// leading zero, at most 15 digits, so exact in JavaScript) is sent as integers, any other as
// strings; an empty box sends none.
function readGroups() {
  const text = $("groups").value.trim();
  if (text === "") return null;
  if (text.startsWith("{")) {
    let value;
    try {
      value = JSON.parse(text);
    } catch (error) {
      throw new Error(`groups: not valid JSON (${error.message})`);
    }
    if (typeof value !== "object" || Array.isArray(value) || value === null) {
      throw new Error("groups: expected an object {column: [one key per sample]}");
    }
    return value;
  }
  const rows = text.split(/\r?\n/).filter((line) => line.trim() !== "").map((line) => line.split(",").map((cell) => cell.trim()));
  const [header, ...body] = rows;
  if (!body.length) throw new Error("groups: expected CSV with a header row of column names, then one row per sample");
  const columns = {};
  header.forEach((name, k) => {
    const keys = body.map((row) => row[k] ?? "");
    // Integers only as integers are written: "01234" (a code, not a number) stays a string.
    columns[name] = keys.every((key) => /^-?(0|[1-9]\d{0,14})$/.test(key)) ? keys.map(Number) : keys;
  });
  return columns;
}

// The request fields of "where": per_class and groups, when asked for.
function whereOptions() {
  const groups = readGroups();
  return { ...($("opt-per-class").checked ? { per_class: true } : {}), ...(groups ? { groups } : {}) };
}

function renderWhere(result) {
  renderClasses(result);
  renderSlices(result);
}

// A table with its header row; `cells` of each row are strings or [text, class] pairs.
function table(id, titles, rows, rowClass = () => "") {
  const head = el("thead", {}, [el("tr", {}, titles.map((t) => el("th", {}, [t])))]);
  const body = el("tbody", {}, rows.map((cells, k) => el("tr", { class: rowClass(k) }, cells.map((cell) =>
    Array.isArray(cell) ? el("td", { class: cell[1] }, [cell[0]]) : el("td", { class: "num" }, [cell])))));
  return el("div", { class: "scroll" }, [el("table", { id }, [head, body])]);
}

function renderClasses(result) {
  const box = $("classes");
  const classes = result.classes;
  if (!classes) {
    box.replaceChildren(el("p", { class: "empty" }, ["Tick per-class metrics under Loss options, then run Score or Compare, to see each class's precision, recall, F1 and calibration here."]));
    return;
  }
  const total = classes.support.length;
  let order = [...Array(total).keys()];
  let note = `${plural(total, "class", "classes")}.`;
  if (total > MOST_CLASSES) {
    const f1 = (c) => (isNumber(classes.f1[c]) ? classes.f1[c] : Infinity);
    order = order.sort((a, b) => f1(a) - f1(b)).slice(0, MOST_CLASSES);
    note = `The ${MOST_CLASSES} of ${count(total)} classes with the lowest F1.`;
  }
  const rows = order.map((c) => [
    [String(c), "class"],
    fmt(classes.support[c], Number.isInteger(classes.support[c]) ? 0 : 2),
    fmt(classes.precision[c], 3), fmt(classes.recall[c], 3), fmt(classes.f1[c], 3),
    fmt(classes.ce[c]), fmt(classes.ece[c]),
  ]);
  box.replaceChildren(
    el("p", { class: "rule" }, [`${note} Precision, recall and F1 as scikit-learn's precision_recall_fscore_support; ce is the mean over the samples of that true class; ECE is the class's one-vs-rest calibration error (class-wise ECE, the mean over all classes: ${fmt(result.metrics.classwise_ece)}). "–": no sample to divide by.`]),
    table("class-table", ["class", "support", "precision", "recall", "F1", "mean ce", "ECE"], rows),
    heatMap(classes.confusion),
  );
}

// The confusion counts among the classes most often confused (true or predicted in an
// off-diagonal cell), rows true classes and columns predicted ones, darker for more.
function heatMap({ true: truth, predicted, count: counts }) {
  const confused = new Map();
  truth.forEach((t, k) => {
    if (t === predicted[k]) return;
    for (const c of [t, predicted[k]]) confused.set(c, (confused.get(c) ?? 0) + counts[k]);
  });
  if (!confused.size) return el("p", { class: "rule", id: "heat-note" }, ["No sample is confused: every prediction is its true class."]);
  const chosen = [...confused.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0]).slice(0, HEAT_CLASSES).map(([c]) => c).sort((a, b) => a - b);
  const at = new Map(chosen.map((c, k) => [c, k]));
  const cells = [];
  truth.forEach((t, k) => {
    if (at.has(t) && at.has(predicted[k])) cells.push({ row: at.get(t), column: at.get(predicted[k]), value: counts[k] });
  });
  const most = maxOf(cells.filter((c) => c.row !== c.column).map((c) => c.value));
  const size = 28;
  const pad = 44;
  const side = pad + size * chosen.length;
  const labels = chosen.flatMap((c, k) => [
    svg("text", { x: pad - 6, y: pad + size * k + size / 2 + 4, "text-anchor": "end", class: "tick" }, [String(c)]),
    svg("text", { x: pad + size * k + size / 2, y: pad - 8, "text-anchor": "middle", class: "tick" }, [String(c)]),
  ]);
  const rects = cells.map(({ row, column, value }) => svg("rect", {
    x: pad + size * column, y: pad + size * row, width: size - 1, height: size - 1,
    class: row === column ? "diagonal" : "confused",
    "fill-opacity": row === column ? 0.25 : Math.max(0.08, value / most),
    "data-true": chosen[row], "data-predicted": chosen[column],
  }, [svg("title", {}, [`true ${chosen[row]}, predicted ${chosen[column]}: ${fmt(value, Number.isInteger(value) ? 0 : 2)}`])]));
  return el("figure", { class: "heat" }, [
    svg("svg", { viewBox: `0 0 ${side} ${side}`, id: "confusion", role: "img", "aria-label": "confusion heat map" }, [...labels, ...rects]),
    el("figcaption", { class: "rule", id: "heat-note" }, [`Confusion among the ${plural(chosen.length, "class", "classes")} most often confused (rows: true class, columns: predicted class; darker: more samples; the diagonal, the right answers, in pale blue).`]),
  ]);
}

// Each group column: one row per key, with (under a bootstrap) total's interval and the key's
// gap from the rest, its p-value and Holm's; the rows whose Holm-adjusted p is below alpha are
// marked. In Compare, each pair's difference of total inside each key.
function renderSlices(result) {
  const box = $("slices");
  if (!result.groups) {
    box.replaceChildren(el("p", { class: "empty" }, ["Give group columns under Groups (one key per sample), then run Score or Compare, to see each slice here."]));
    return;
  }
  const alpha = result.bootstrap ? 1 - result.bootstrap.confidence_level : null;
  const marked = (p) => alpha !== null && isNumber(p) && p < alpha;
  const parts = [el("p", { class: "rule" }, [alpha === null
    ? "Each key's samples (count), accuracy and mean losses. Tick bootstrap intervals to test each key against the rest."
    : `Each key against all other samples: ★ marks a Holm-adjusted p < ${sig(alpha)} over the keys of the column (the slice-versus-rest randomization test).`])];
  for (const [column, entries] of Object.entries(result.groups)) {
    const rows = entries.map((e) => {
      const cells = [[String(e.key), "key"], count(e.count), percent(e.metrics.accuracy), fmt(e.reduced.ce), fmt(e.reduced.total)];
      if (e.vs_rest) {
        const gap = e.vs_rest.total;
        cells.push(bounds("total", e.intervals.total), fmt(gap.estimate), pValue(gap.p_value), pValue(gap.p_adjusted), [marked(gap.p_adjusted) ? "★" : "", "mark"]);
      }
      return cells;
    });
    const titles = ["key", "count", "accuracy", "mean ce", "mean total", ...(alpha === null ? [] : ["total interval", "total − rest", "p-value", "Holm p", ""])];
    parts.push(el("h4", {}, [`by ${column}`]), table(`slice-table-${column}`, titles, rows, (k) => (marked(entries[k].vs_rest?.total?.p_adjusted) ? "significant" : "")));
  }
  for (const pair of view.differences ?? []) {
    for (const [column, entries] of Object.entries(pair.groups ?? {})) {
      const rows = entries.map((e) => {
        const d = e.criteria.total;
        return [[String(e.key), "key"], fmt(d.estimate), bounds("total", d), pValue(d.p_value), pValue(d.p_adjusted), [marked(d.p_adjusted) ? "★" : "", "mark"]];
      });
      parts.push(el("h4", {}, [`${pair.a} − ${pair.b}, mean total, by ${column}`]), table(`pair-table-${column}`, ["key", "difference", "interval", "p-value", "Holm p", ""], rows, (k) => (marked(entries[k].criteria.total.p_adjusted) ? "significant" : "")));
    }
  }
  box.replaceChildren(...parts);
}
