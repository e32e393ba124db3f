// The statistics of the component analysis (examples/ablation.mjs), on evaluators of @png/png-metrics:
// per model and phrase group the mean AR over seeds with a Student-t interval, paired differences
// between two models (mean over seeds of the per-seed difference, t interval over seeds, and the
// per-seed paired bootstrap over images), mean recall curves, and Markdown tables of all of it.
// CommonJS so that jest (which runs CommonJS) and the ES-module script both load it as it is.
'use strict';
const { PHRASE_GROUPS, PngEvaluator, RECALL_GRID_SIZE, SIZE_BUCKETS, recallThreshold } = require('@png/png-metrics');

/**
 * P(|T| ≤ t) for Student's t with `df` degrees of freedom (an integer ≥ 1), from the finite series
 * in θ = atan(t / √df) (Abramowitz & Stegun 26.7.3–4).
 */
function studentTCentralProbability(t, df) {
  const theta = Math.atan(Math.abs(t) / Math.sqrt(df));
  const [sin, cos2] = [Math.sin(theta), Math.cos(theta) ** 2];
  if (df % 2 === 0) {
    // sinθ · (1 + 1/2 cos²θ + 1·3/(2·4) cos⁴θ + … up to cos^(df−2)θ)
    let term = 1;
    let sum = 1;
    for (let k = 2; k <= df - 2; k += 2) sum += term *= ((k - 1) / k) * cos2;
    return sin * sum;
  }
  // 2/π · (θ + sinθ·cosθ · (1 + 2/3 cos²θ + 2·4/(3·5) cos⁴θ + … up to cos^(df−3)θ)), the sum empty for df = 1
  let term = 1;
  let sum = df > 1 ? 1 : 0;
  for (let k = 3; k <= df - 2; k += 2) sum += term *= ((k - 1) / k) * cos2;
  return (2 / Math.PI) * (theta + sin * Math.sqrt(cos2) * sum);
}

/** The t with P(|T| ≤ t) = confidence for `df` degrees of freedom (e.g. 2.776 for 0.95 and df 4), by bisection. */
function studentTCritical(confidence, df) {
  if (!(confidence > 0 && confidence < 1)) throw new RangeError(`confidence must be in (0, 1), e.g. 0.95, got ${confidence}`);
  if (!Number.isInteger(df) || df < 1) throw new RangeError(`degrees of freedom must be an integer ≥ 1, got ${df}`);
  let [low, high] = [0, 1];
  while (studentTCentralProbability(high, df) < confidence) high *= 2;
  for (let i = 0; i < 200 && high - low > 1e-12 * high; i++) {
    const mid = (low + high) / 2;
    if (studentTCentralProbability(mid, df) < confidence) low = mid;
    else high = mid;
  }
  return (low + high) / 2;
}

/**
 * Mean of the finite values with its Student-t interval (n − 1 degrees of freedom): mean ± t·s/√n.
 * NaN values (empty groups) are left out; with fewer than two values the interval is [NaN, NaN].
 */
function meanInterval(values, confidence = 0.95) {
  const xs = values.filter((x) => Number.isFinite(x));
  const n = xs.length;
  if (n === 0) return { mean: NaN, low: NaN, high: NaN, n };
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  if (n < 2) return { mean, low: NaN, high: NaN, n };
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / (n - 1));
  const half = (studentTCritical(confidence, n - 1) * sd) / Math.sqrt(n);
  return { mean, low: mean - half, high: mean + half, n };
}

/**
 * The groups of the tables, in order: the five phrase groups, the size buckets, then the values of
 * each tag key (`tagValues`: key → values, e.g. `{phrase_type: ['binding', 'unary']}`; shown sorted).
 * Each has an id ('overall', 'size:small', 'phrase_type:binding'), a label and `pick`, which takes
 * the group's entry out of a png-metrics GroupedValues (an evaluate() or pairedBootstrap() result;
 * undefined where the group is absent).
 */
function tableGroups(tagValues = {}) {
  const groups = [
    ...PHRASE_GROUPS.map((g) => ({ id: g, label: g, pick: (v) => v[g] })),
    ...SIZE_BUCKETS.map((b) => ({ id: `size:${b}`, label: `${b} objects`, pick: (v) => v.bySize[b] })),
  ];
  for (const [key, values] of Object.entries(tagValues)) {
    groups.push(...[...new Set(values)].sort().map((value) => ({ id: `${key}:${value}`, label: `${key} ${value}`, pick: (v) => v.byTag[key]?.[value] })));
  }
  return groups;
}

/** i = round(k · 99 999 / (points − 1)), k = 0 … points − 1: the grid indices of a downsampled curve. */
function curveIndices(points) {
  const last = RECALL_GRID_SIZE - 1;
  return Array.from({ length: points }, (_, k) => Math.round((k * last) / (points - 1)));
}

/**
 * Everything the tables and the figure show.
 * @param runs `[{name, seed, evaluator}]`: one PngEvaluator per model (a variant, or a variant under a
 *   test-time probe) and seed; the models are listed in order of first appearance.
 * @param options.comparisons `[{name, a, b}]`: paired differences a − b, per seed where both ran.
 * @param options.sizeThresholds, options.groupBy: png-metrics' groups (GT area bounds; tag keys).
 * @param options.resamples image resamples of the per-seed paired bootstrap (default 1000, seed 0).
 * @param options.confidence of every interval (default 0.95).
 * @param options.curvePoints thresholds of the mean recall curves (default 201).
 */
function summarizeAblation(runs, options = {}) {
  const { comparisons = [], sizeThresholds, groupBy = ['phrase_type'], resamples = 1000, confidence = 0.95, curvePoints = 201 } = options;
  const names = [...new Set(runs.map((r) => r.name))];
  const seeds = [...new Set(runs.map((r) => r.seed))].sort((x, y) => x - y);
  const key = (name, seed) => `${name}\u0000${seed}`;
  const evaluators = new Map(runs.map((r) => [key(r.name, r.seed), r.evaluator]));
  const metricsOptions = { groupBy, sizeThresholds };
  const indices = curveIndices(curvePoints);

  // Each run's AR, count and downsampled curve per group; its full metrics (a 100 000-point curve per group) are not kept.
  const tagValues = Object.fromEntries(groupBy.map((k) => [k, []]));
  const values = new Map();
  for (const r of runs) {
    const m = r.evaluator.evaluate(metricsOptions);
    for (const k of groupBy) tagValues[k].push(...Object.keys(m.byTag[k] ?? {}));
    const perGroup = new Map();
    for (const group of tableGroups(Object.fromEntries(groupBy.map((k) => [k, Object.keys(m.byTag[k] ?? {})])))) {
      const g = group.pick(m);
      if (g.count > 0) perGroup.set(group.id, { averageRecall: g.averageRecall, count: g.count, curve: indices.map((i) => g.recall[i]) });
    }
    values.set(key(r.name, r.seed), perGroup);
  }
  const groups = tableGroups(tagValues);

  const averageRecall = {};
  const curves = {};
  for (const name of names) {
    averageRecall[name] = {};
    curves[name] = {};
    for (const group of groups) {
      const entries = seeds.flatMap((seed) => {
        const g = values.get(key(name, seed))?.get(group.id);
        return g ? [[seed, g]] : [];
      });
      averageRecall[name][group.id] = {
        perSeed: Object.fromEntries(entries.map(([seed, g]) => [seed, g.averageRecall])),
        phrases: entries.length ? entries.reduce((a, [, g]) => a + g.count, 0) / entries.length : 0,
        ...meanInterval(
          entries.map(([, g]) => g.averageRecall),
          confidence,
        ),
      };
      curves[name][group.id] = entries.length ? indices.map((_, i) => entries.reduce((a, [, g]) => a + g.curve[i], 0) / entries.length) : null;
    }
  }

  const differences = {};
  for (const { name, a, b } of comparisons) {
    const paired = seeds.flatMap((seed) => {
      const [ea, eb] = [evaluators.get(key(a, seed)), evaluators.get(key(b, seed))];
      return ea && eb ? [[seed, PngEvaluator.pairedBootstrap(ea, eb, { ...metricsOptions, bootstrap: { resamples, seed: 0, confidence } })]] : [];
    });
    differences[name] = { a, b };
    for (const group of groups) {
      const perSeed = paired.flatMap(([seed, d]) => {
        const g = group.pick(d);
        return g !== undefined && g.count > 0 ? [{ seed, difference: g.difference, interval: g.interval ? [g.interval[0], g.interval[1]] : null }] : [];
      });
      const intervals = perSeed.filter((s) => s.interval);
      const halfWidths = intervals.map((s) => (s.interval[1] - s.interval[0]) / 2).sort((x, y) => x - y);
      differences[name][group.id] = {
        perSeed,
        ...meanInterval(
          perSeed.map((s) => s.difference),
          confidence,
        ),
        bootstrap: {
          first: intervals[0] ?? null,
          medianHalfWidth: halfWidths.length ? median(halfWidths) : NaN,
          above: intervals.filter((s) => s.interval[0] > 0).length,
          below: intervals.filter((s) => s.interval[1] < 0).length,
          seeds: intervals.length,
        },
      };
    }
  }
  return {
    names,
    seeds,
    groups: groups.map(({ id, label }) => ({ id, label })),
    confidence,
    resamples,
    averageRecall,
    differences,
    thresholds: indices.map(recallThreshold),
    curves,
  };
}

function median(sorted) {
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** AR points (×100) with one decimal; `signed` writes + before positive values. NaN → 'nan'. */
function points(fraction, signed = false) {
  if (!Number.isFinite(fraction)) return 'nan';
  const text = (100 * fraction).toFixed(1);
  return signed && fraction > 0 && text !== '0.0' ? `+${text}` : text.replace(/^-(0\.0)$/, '$1');
}

function markdownTable(header, rows) {
  return [`| ${header.join(' | ')} |`, `|${header.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join(
    '\n',
  );
}

const confidenceLabel = (summary) => `${Math.round(summary.confidence * 100)} %`;

/** Rows: groups; columns: `names`; cells: mean AR over seeds ± the t interval's half-width (×100). */
function formatAverageRecallTable(summary, names = summary.names) {
  const rows = summary.groups.map((group) => {
    const phrases = Math.max(0, ...names.map((name) => summary.averageRecall[name]?.[group.id]?.phrases ?? 0));
    const cells = names.map((name) => {
      const s = summary.averageRecall[name]?.[group.id];
      if (!s || s.n === 0) return '–';
      return Number.isFinite(s.low) ? `${points(s.mean)} ± ${points((s.high - s.low) / 2)}` : points(s.mean);
    });
    return [group.label, String(Math.round(phrases)), ...cells];
  });
  return markdownTable(
    ['group', 'phrases / seed', ...names],
    rows.filter((r) => r[1] !== '0'),
  );
}

/** Rows: groups; columns: comparisons; cells: mean over seeds of a − b [t interval over seeds] (×100). */
function formatDifferenceTable(summary, comparisons = Object.keys(summary.differences)) {
  const rows = summary.groups.map((group) => [
    group.label,
    ...comparisons.map((name) => {
      const d = summary.differences[name][group.id];
      if (d.n === 0) return '–';
      return Number.isFinite(d.low) ? `${points(d.mean, true)} [${points(d.low, true)}, ${points(d.high, true)}]` : points(d.mean, true);
    }),
  ]);
  return markdownTable(
    ['group', ...comparisons],
    rows.filter((r) => r.slice(1).some((c) => c !== '–')),
  );
}

/**
 * Rows: groups; columns: comparisons; cells: the first seed's paired-bootstrap interval of a − b,
 * the median half-width of the per-seed intervals, and how many seeds' intervals lie above / below 0.
 */
function formatBootstrapTable(summary, comparisons = Object.keys(summary.differences)) {
  const rows = summary.groups.map((group) => [
    group.label,
    ...comparisons.map((name) => {
      const { bootstrap: b } = summary.differences[name][group.id];
      if (b.seeds === 0) return '–';
      const [low, high] = b.first.interval;
      return `[${points(low, true)}, ${points(high, true)}] · ±${points(b.medianHalfWidth)} · ${b.above}↑ ${b.below}↓ of ${b.seeds}`;
    }),
  ]);
  return markdownTable(
    ['group', ...comparisons],
    rows.filter((r) => r.slice(1).some((c) => c !== '–')),
  );
}

/** Rows: seeds; columns: `names`; cells: the seed's AR of one group (×100). */
function formatPerSeedTable(summary, names = summary.names, groupId = 'overall') {
  const rows = summary.seeds.map((seed) => [
    `seed ${seed}`,
    ...names.map((name) => {
      const ar = summary.averageRecall[name]?.[groupId]?.perSeed[seed];
      return ar === undefined ? '–' : points(ar);
    }),
  ]);
  return markdownTable(['seed', ...names], rows);
}

/**
 * The figure's panels (png-metrics' renderRecallCurvePanelsSvg): one per group of `groupIds` (default:
 * the five phrase groups and the tag groups), one curve per model of `names`: the mean recall over seeds.
 */
function curvePanels(summary, names = summary.names, groupIds = summary.groups.filter((g) => !g.id.startsWith('size:')).map((g) => g.id)) {
  return groupIds
    .map((id) => ({
      title: summary.groups.find((g) => g.id === id).label,
      thresholds: summary.thresholds,
      series: names.map((name) => {
        const ar = summary.averageRecall[name]?.[id];
        return { legend: ar && ar.n > 0 ? `${name}: AR ${points(ar.mean)}` : `${name}: no phrases`, recall: summary.curves[name]?.[id] ?? null };
      }),
    }))
    .filter((panel) => panel.series.some((s) => s.recall !== null));
}

/**
 * The memorisation table from png evaluate reports: `pairs` maps each variant to its seeds'
 * { train, val } report.json objects (AR on training records and on val). Rows: overall, things,
 * stuff, then each phrase type of the val reports; cells: mean over seeds of train / val
 * (val − train), in points. Null when no variant has a pair.
 */
function formatTrainFitTable(pairs) {
  const names = Object.keys(pairs).filter((name) => pairs[name].length > 0);
  if (names.length === 0) return null;
  const groups = [
    ['overall', (r) => r.average_recall?.overall],
    ['things', (r) => r.average_recall?.things],
    ['stuff', (r) => r.average_recall?.stuff],
  ];
  for (const name of names)
    for (const { val } of pairs[name])
      for (const type of Object.keys(val.by_tag?.phrase_type ?? {}))
        if (!groups.some(([g]) => g === type)) groups.push([type, (r) => r.by_tag?.phrase_type?.[type]?.average_recall]);
  const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
  const rows = groups.map(([group, value]) => [
    group,
    ...names.map((name) => {
      const both = pairs[name].map(({ train, val }) => [value(train), value(val)]).filter(([t, v]) => Number.isFinite(t) && Number.isFinite(v));
      if (both.length === 0) return '–';
      const [t, v] = [mean(both.map((b) => b[0])), mean(both.map((b) => b[1]))];
      return `${points(t)} / ${points(v)} (${points(v - t, true)})`;
    }),
  ]);
  return markdownTable(['group', ...names], rows);
}

module.exports = {
  studentTCritical,
  meanInterval,
  tableGroups,
  summarizeAblation,
  formatAverageRecallTable,
  formatDifferenceTable,
  formatBootstrapTable,
  formatPerSeedTable,
  formatTrainFitTable,
  curvePanels,
  confidenceLabel,
};
