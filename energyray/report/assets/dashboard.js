/* energyray dashboard: draws the charts, applies the filters to every chart, the summary table and
   the cheapest answer, and recomputes Pareto frontiers under a latency deadline and an energy budget.
   No network requests: plotly.js and the data are inlined in the page. */
"use strict";

// --- the cheapest answer: the same as energyray/report/dashboard.py's cheapest_answer -------------
var QUALITY_TOLERANCE = 0.02;

function fmt(v) {
  // 3 significant digits, no exponent, trailing zeros dropped (as dashboard.py's fmt)
  if (v === 0 || !isFinite(v)) return v === 0 ? "0" : String(v);
  if (Math.abs(v) >= 100) return v.toFixed(0);
  var decimals = Math.max(0, 2 - Math.floor(Math.log10(Math.abs(v))));
  var text = v.toFixed(decimals);
  return text.indexOf(".") >= 0 ? text.replace(/0+$/, "").replace(/\.$/, "") : text;
}

function ratio(a, b) { return b > 0 ? (a / b).toFixed(1) + "×" : "∞×"; }

function pct(v) { return (100 * v).toFixed(0) + " %"; }

function minBy(xs, f) { var best = xs[0]; for (var i = 1; i < xs.length; i++) if (f(xs[i]) < f(best)) best = xs[i]; return best; }
function maxBy(xs, f) { var best = xs[0]; for (var i = 1; i < xs.length; i++) if (f(xs[i]) > f(best)) best = xs[i]; return best; }

var NAMING = [1, 4, 8];  // model, precision, hardware in CONFIG_KEYS (report/labels.py's NAMING)

function names(allParts, sep) {
  // a name per configuration from its parts, by the rule of energyray/report/labels.py's names
  var n = allParts.length ? allParts[0].length : 0, idx = [], i;
  for (i = 0; i < n; i++) {
    var seen = {};
    allParts.forEach(function (p) { if (p[i]) seen[p[i]] = true; });
    if (Object.keys(seen).length > 1) idx.push(i);
  }
  if (!idx.length) idx = NAMING;
  function join(p, at) { return at.map(function (k) { return p[k]; }).filter(function (v) { return v; }).join(sep); }
  var out = allParts.map(function (p) { return join(p, idx); });
  var groups = {};
  out.forEach(function (name, j) { (groups[name] = groups[name] || []).push(j); });
  Object.keys(groups).forEach(function (name) {
    var members = groups[name], whole = {};
    members.forEach(function (j) { whole[JSON.stringify(allParts[j])] = true; });
    if (Object.keys(whole).length < 2) return;
    var at = idx.slice();
    for (var k = 0; k < n; k++) {
      if (at.indexOf(k) >= 0) continue;
      var vals = {};
      members.forEach(function (j) { vals[allParts[j][k]] = true; });
      if (Object.keys(vals).length > 1) at.push(k);
    }
    at.sort(function (a, b) { return a - b; });
    members.forEach(function (j) { out[j] = join(allParts[j], at); });
  });
  return out.map(function (name) { return name || "(no axes)"; });
}

function relabel(recs) {
  // the records named among themselves (as dashboard.py's _relabel)
  if (!recs.length || !recs.every(function (r) { return Array.isArray(r.parts); })) return recs;
  var got = names(recs.map(function (r) { return r.parts; }), ", ");
  return recs.map(function (r, j) {
    var copy = Object.assign({}, r);
    copy.label = got[j];
    return copy;
  });
}

var TASK_KEY = 5;  // the index of task in each record's keys (FILTER_KEYS)

function cheapestAnswer(recs) {
  if (!recs.length) return "No configuration selected.";
  // a request of one task is not a request of another (an image, an answer): each task on its own
  var tasks = [];
  recs.forEach(function (r) { if (tasks.indexOf(r.keys[TASK_KEY]) < 0) tasks.push(r.keys[TASK_KEY]); });
  tasks.sort();
  if (tasks.length > 1) {
    return tasks.length + " tasks, each compared on its own (a request of one is not a request of another). " +
      tasks.map(function (task) {
        return "Task " + (task || "\u2013") + ": " + answer(recs.filter(function (r) { return r.keys[TASK_KEY] === task; }));
      }).join(" ");
  }
  return answer(recs);
}

function answer(recs) {
  if (!recs.some(function (r) { return r.ok; })) {
    var failed = recs.reduce(function (s, r) { return s + r.failed; }, 0);
    return "No trial completed (" + failed + " failed): there is nothing to compare; the failures section says why.";
  }
  var priced = relabel(recs.filter(function (r) { return r.ok && r.j_per_request !== null; }));
  if (!priced.length) {
    return "No configuration has an energy per request (energy not measured): " +
      "nothing to compare; run on hardware with an energy counter or an estimate.";
  }
  var scored = priced.filter(function (r) { return r.accuracy !== null; });
  var cheap, text;
  if (!scored.length) {
    cheap = minBy(priced, function (r) { return r.j_per_request; });
    var dear = maxBy(priced, function (r) { return r.j_per_request; });
    text = "No configuration was scored for accuracy (random weights, or a task without gold answers), " +
      "so quality cannot be compared. Cheapest by energy: " + cheap.label + " at " + fmt(cheap.j_per_request) +
      " J/request (" + cheap.energy + ")";
    if (dear !== cheap && dear.j_per_request > cheap.j_per_request) {
      text += ", " + ratio(dear.j_per_request, cheap.j_per_request) + " less than " + dear.label;
    }
    return text + ".";
  }
  // highest accuracy; among equals the cheaper; among those the earlier (summary order)
  var best = scored[0];
  scored.forEach(function (r) {
    if (r.accuracy > best.accuracy || (r.accuracy === best.accuracy && r.j_per_request < best.j_per_request)) best = r;
  });
  var close = scored.filter(function (r) { return r.accuracy >= best.accuracy - QUALITY_TOLERANCE - 1e-9; });
  cheap = minBy(close, function (r) { return r.j_per_request; });
  var points = (100 * QUALITY_TOLERANCE).toFixed(0);
  text = "Highest accuracy measured: " + pct(best.accuracy) + " (" + best.label + "), at " + fmt(best.j_per_request) +
    " J/request (" + best.energy + "). ";
  if (cheap === best) {
    text += "No configuration within " + points + " points of it uses less energy: it is also the cheapest for that quality.";
  } else {
    text += "Cheapest configuration within " + points + " points of it: " + cheap.label + " (" + pct(cheap.accuracy) +
      ") at " + fmt(cheap.j_per_request) + " J/request (" + cheap.energy + "), " +
      ratio(best.j_per_request, cheap.j_per_request) + " less energy than " + best.label + ".";
  }
  if (best.energy_kind !== cheap.energy_kind) text += " Careful: one figure is measured, the other estimated.";
  var unscored = priced.length - scored.length;
  if (unscored) text += " " + unscored + " configuration(s) without accuracy are left out.";
  return text;
}

// --- Pareto frontier ----------------------------------------------------------------------------------
function paretoFront(xs, ys, xdir, ydir) {
  // indices of the points no other point beats on both axes, ordered by x
  var idx = [];
  for (var i = 0; i < xs.length; i++) if (isFinite(xs[i]) && isFinite(ys[i]) && xs[i] !== null && ys[i] !== null) idx.push(i);
  var sx = xdir === "max" ? -1 : 1, sy = ydir === "max" ? -1 : 1;
  idx.sort(function (a, b) { return sx * (xs[a] - xs[b]) || sy * (ys[a] - ys[b]); });
  var front = [], bestY = Infinity;
  idx.forEach(function (i) { if (sy * ys[i] < bestY) { bestY = sy * ys[i]; front.push(i); } });
  if (sx < 0) front.reverse();
  return front;
}

// --- filtering a trace's points --------------------------------------------------------------------
var DTYPES = { f8: Float64Array, f4: Float32Array, i4: Int32Array, u4: Uint32Array, i2: Int16Array,
               u2: Uint16Array, i1: Int8Array, u1: Uint8Array, u1c: Uint8ClampedArray };

function decode(v) {
  // plotly's base64 arrays ({dtype, bdata, shape}) as plain arrays, so that filters can slice them
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === "object") {
    if (typeof v.bdata === "string" && typeof v.dtype === "string" && DTYPES[v.dtype]) {
      var raw = atob(v.bdata), bytes = new Uint8Array(raw.length);
      for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
      var flat = Array.prototype.slice.call(new DTYPES[v.dtype](bytes.buffer));
      if (!v.shape) return flat;
      var shape = String(v.shape).split(",").map(function (s) { return parseInt(s, 10); });
      if (shape.length !== 2) return flat;
      var rows = [];
      for (var r = 0; r < shape[0]; r++) rows.push(flat.slice(r * shape[1], (r + 1) * shape[1]));
      return rows;
    }
    var out = {};
    Object.keys(v).forEach(function (k) { out[k] = decode(v[k]); });
    return out;
  }
  return v;
}


function sliceArrays(obj, mask, n, depth) {
  // every array attribute of length n (the trace's points), nested objects too, kept where mask
  var out = {};
  Object.keys(obj).forEach(function (k) {
    var v = obj[k];
    if (k === "meta") out[k] = v;
    else if (Array.isArray(v) && v.length === n) out[k] = v.filter(function (_, i) { return mask[i]; });
    else if (v && typeof v === "object" && !Array.isArray(v) && depth < 3) out[k] = sliceArrays(v, mask, n, depth + 1);
    else out[k] = v;
  });
  return out;
}

if (typeof module !== "undefined" && module.exports) {
  module.exports = { fmt: fmt, cheapestAnswer: cheapestAnswer, names: names, paretoFront: paretoFront, decode: decode,
                     sliceArrays: sliceArrays };
}

// --- the page -----------------------------------------------------------------------------------------
(function () {
  if (typeof document === "undefined") return;
  var FILTER_KEYS = JSON.parse(document.getElementById("er-filter-keys").textContent);
  var FIGURES = JSON.parse(document.getElementById("er-figures").textContent);
  var CONFIGS = JSON.parse(document.getElementById("er-configs").textContent);
  var charts = [];  // {div, orig: {data, layout}, pareto, inputs}

  function clone(v) { return JSON.parse(JSON.stringify(v)); }

  function selected() {
    var sel = {};
    document.querySelectorAll("#filters select[data-key]").forEach(function (s) {
      var set = {};
      Array.prototype.forEach.call(s.options, function (o) { if (o.selected) set[o.value] = true; });
      sel[s.getAttribute("data-key")] = set;
    });
    return sel;
  }

  function matches(key, sel) {
    if (!Array.isArray(key)) return true;
    for (var i = 0; i < FILTER_KEYS.length && i < key.length; i++) {
      var s = sel[FILTER_KEYS[i]];
      if (s && !s[String(key[i] === null ? "" : key[i])]) return false;
    }
    return true;
  }

  function axisValues(trace, axis) { return trace[axis] || []; }

  function num(input) {
    var v = input && input.value !== "" ? parseFloat(input.value) : NaN;
    return isFinite(v) ? v : null;
  }

  function render(chart, sel) {
    var p = chart.pareto, deadline = p ? num(chart.inputs.deadline) : null, budget = p ? num(chart.inputs.budget) : null;
    var data = [], frontierAt = -1, px = [], py = [];
    chart.orig.data.forEach(function (trace, ti) {
      var meta = trace.meta && typeof trace.meta === "object" ? trace.meta : {};
      if (meta.role === "frontier") { frontierAt = ti; data.push(clone(trace)); return; }
      if (Array.isArray(meta.keys)) {
        var n = meta.keys.length, xs = axisValues(trace, "x"), ys = axisValues(trace, "y");
        var mask = meta.keys.map(function (k, i) {
          if (!matches(k, sel)) return false;
          var v = { x: xs[i], y: ys[i] };
          if (deadline !== null && p.deadline && v[p.deadline] > deadline) return false;
          if (budget !== null && p.budget && v[p.budget] > budget) return false;
          return true;
        });
        var t = sliceArrays(trace, mask, n, 0);
        // the frontier is of our own measurements: published (external) figures are drawn, not on it
        if (p && meta.kind !== "external" && trace.visible !== false && trace.visible !== "legendonly") {
          mask.forEach(function (m, i) { if (m) { px.push(xs[i]); py.push(ys[i]); } });
        }
        data.push(t);
      } else if (Array.isArray(meta.key)) {
        var t2 = clone(trace);
        if (!matches(meta.key, sel)) t2.visible = false;
        data.push(t2);
      } else {
        data.push(trace);
      }
    });
    if (p && frontierAt >= 0) {
      var front = paretoFront(px, py, p.x || "min", p.y || "min");
      var fr = data[frontierAt];
      fr.x = front.map(function (i) { return px[i]; });
      fr.y = front.map(function (i) { return py[i]; });
      ["text", "hovertext", "customdata", "ids"].forEach(function (k) { delete fr[k]; });
    }
    Plotly.react(chart.div, data, chart.layout, chart.config);
  }

  function update() {
    var sel = selected();
    charts.forEach(function (c) { render(c, sel); });
    var shown = 0;
    document.querySelectorAll("#summary-table tbody tr[data-keys]").forEach(function (tr) {
      var ok = matches(JSON.parse(tr.getAttribute("data-keys")), sel);
      tr.style.display = ok ? "" : "none";
      if (ok) shown++;
    });
    var visible = CONFIGS.filter(function (c) { return matches(c.keys, sel); });
    document.getElementById("cheapest").textContent = cheapestAnswer(visible);
    var note = document.getElementById("er-shown");
    // the table may list only the first configurations of many: count them all, and its rows apart
    var rows = document.querySelectorAll("#summary-table tbody tr[data-keys]").length;
    if (note) note.textContent = "Showing " + visible.length + " of " + CONFIGS.length + " configurations" +
      (rows < CONFIGS.length ? " (" + shown + " of them among the table's first " + rows + " rows)" : "") + ".";
  }

  function paretoInputs(div, layout, p) {
    var box = document.createElement("div");
    box.className = "er-pareto";
    var inputs = {};
    function title(axis) {
      var a = layout[axis + "axis"] || {}, t = a.title;
      return (t && typeof t === "object" ? t.text : t) || axis;
    }
    [["deadline", "Latency deadline"], ["budget", "Energy budget"]].forEach(function (pair) {
      var axis = p[pair[0]];
      if (!axis) return;
      var label = document.createElement("label");
      label.textContent = pair[1] + ": hide points with " + title(axis) + " above ";
      var input = document.createElement("input");
      input.type = "number"; input.min = "0"; input.step = "any"; input.placeholder = "no limit";
      input.setAttribute("data-pareto", pair[0]);
      input.addEventListener("input", update);
      label.appendChild(input);
      box.appendChild(label);
      inputs[pair[0]] = input;
    });
    div.parentNode.insertBefore(box, div);
    return inputs;
  }

  Object.keys(FIGURES).forEach(function (id) {
    var div = document.getElementById("view-" + id);
    if (!div) return;
    var fig = decode(FIGURES[id]);
    var layout = fig.layout || {};
    // plotly.js 3 reads titles only as {text}: a bare string (plotly.py 5 style) would be dropped
    Object.keys(layout).forEach(function (k) {
      if (/^[xy]axis\d*$/.test(k) && layout[k] && typeof layout[k].title === "string") layout[k].title = { text: layout[k].title };
    });
    if (typeof layout.title === "string") layout.title = { text: layout.title };
    layout.autosize = true;
    layout.height = 420;
    delete layout.width;
    if (!layout.margin) {
      // plotly's default leaves 100 px above the plot for a title: the page's heading is the title
      var titled = layout.title && (typeof layout.title === "string" || layout.title.text);
      layout.margin = { t: titled ? 50 : 24 };  // the rest as plotly sets them (room for axis titles)
    }
    var p = layout.meta && layout.meta.pareto ? layout.meta.pareto : null;
    var chart = { div: div, orig: { data: fig.data || [] }, layout: layout, pareto: p, inputs: {},
                  config: { responsive: true, displaylogo: false } };
    if (p) chart.inputs = paretoInputs(div, layout, p);
    charts.push(chart);
  });

  document.querySelectorAll("#filters select[data-key]").forEach(function (s) { s.addEventListener("change", update); });
  document.querySelectorAll("#filters button[data-all], #filters button[data-none]").forEach(function (b) {
    b.addEventListener("click", function () {
      var key = b.getAttribute("data-all") || b.getAttribute("data-none"), all = b.hasAttribute("data-all");
      var s = document.querySelector('#filters select[data-key="' + key + '"]');
      Array.prototype.forEach.call(s.options, function (o) { o.selected = all; });
      update();
    });
  });
  update();
})();
