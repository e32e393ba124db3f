// The component analysis' statistics (examples/ablation_stats.cjs) on synthetic per-phrase scores:
// hand-made evaluators whose phrases have chosen IoUs, groups and phrase types; no model runs.
// It sits beside the module in examples/ (a jest root): the module is CommonJS, which jest's runtime loads as it is.
import { PngEvaluator, averageRecall, type PngSample } from '@png/png-metrics';

// eslint-disable-next-line @typescript-eslint/no-require-imports
const stats = require('./ablation_stats.cjs');

interface Phrase {
  /** IoU in tenths: the prediction covers the first `tenths` of a 10-pixel GT mask. */
  tenths: number;
  thing?: boolean;
  plural?: boolean;
  type: string;
  /** GT area: the mask is `area` pixels long (default 10); the prediction covers `tenths/10` of it. */
  area?: number;
}

/** An evaluator holding one image per phrase, with IoU tenths/10 (exactly, for area 10). */
function evaluatorOf(phrases: Phrase[]): PngEvaluator {
  const evaluator = new PngEvaluator();
  phrases.forEach((p, i) => {
    const area = p.area ?? 10;
    const gt = new Uint8Array(area).fill(1);
    const pred = new Uint8Array(area);
    pred.fill(1, 0, Math.round((p.tenths / 10) * area));
    const sample: PngSample = {
      label: `image ${i}`,
      imageId: i,
      height: 1,
      width: area,
      phrases: [{ label: 'p', isThing: p.thing ?? true, isPlural: p.plural ?? false, tags: { phrase_type: p.type }, mask: gt }],
    };
    evaluator.process(sample, [pred]);
  });
  return evaluator;
}

/** Per seed: unary phrases where both models agree and binding phrases where `full` is 3 tenths better on every phrase. */
function seedPhrases(seed: number, model: 'static' | 'full'): Phrase[] {
  const unary = [2, 5, 7, 9, 4 + seed].map((tenths): Phrase => ({ tenths, type: 'unary', thing: tenths % 2 === 0 }));
  const binding = [1, 2, 3, 4, 5, 6].map((tenths): Phrase => ({ tenths: tenths + seed / 2 + (model === 'full' ? 3 : 0), type: 'binding', plural: tenths > 4 }));
  const extra: Phrase[] = seed === 2 ? [{ tenths: 5, type: 'occluded', area: 40 }] : [];
  return [...unary, ...binding.map((p) => ({ ...p, tenths: Math.round(p.tenths) })), ...extra];
}

describe('Student t', () => {
  test('critical values match the t tables', () => {
    const cases: [number, number, number][] = [
      [0.95, 1, 12.7062],
      [0.95, 2, 4.3027],
      [0.95, 3, 3.1824],
      [0.95, 4, 2.7764],
      [0.95, 9, 2.2622],
      [0.95, 30, 2.0423],
      [0.99, 5, 4.0321],
      [0.9, 7, 1.8946],
    ];
    for (const [confidence, df, t] of cases) expect(stats.studentTCritical(confidence, df)).toBeCloseTo(t, 4);
    expect(stats.studentTCritical(0.95, 2000)).toBeCloseTo(1.9612, 3); // → the normal 1.96
  });

  test('bad arguments are refused, naming them', () => {
    expect(() => stats.studentTCritical(95, 4)).toThrow('confidence must be in (0, 1), e.g. 0.95, got 95');
    expect(() => stats.studentTCritical(0.95, 0)).toThrow('degrees of freedom must be an integer ≥ 1, got 0');
  });

  test('mean ± t·s/√n, NaN left out, no interval below two values', () => {
    const m = stats.meanInterval([1, 2, NaN, 3]);
    expect(m.n).toBe(3);
    expect(m.mean).toBe(2);
    expect(m.high - m.mean).toBeCloseTo(4.3027 / Math.sqrt(3), 4);
    expect(m.mean - m.low).toBeCloseTo(m.high - m.mean, 12);
    const one = stats.meanInterval([0.4]);
    expect([one.mean, one.n, one.low, one.high]).toEqual([0.4, 1, NaN, NaN]);
    expect(stats.meanInterval([]).mean).toBeNaN();
  });
});

describe('summarizeAblation', () => {
  const seeds = [0, 1, 2];
  const runs = seeds.flatMap((seed) => [
    { name: 'static', seed, evaluator: evaluatorOf(seedPhrases(seed, 'static')) },
    { name: 'full', seed, evaluator: evaluatorOf(seedPhrases(seed, 'full')) },
    ...(seed < 2 ? [{ name: 'mlma', seed, evaluator: evaluatorOf(seedPhrases(seed, 'static')) }] : []),
  ]);
  const comparisons = [
    { name: 'full − static', a: 'full', b: 'static' },
    { name: 'mlma − static', a: 'mlma', b: 'static' },
  ];
  const summary = stats.summarizeAblation(runs, { comparisons, sizeThresholds: [20, 30], resamples: 200 });
  const arOf = (phrases: Phrase[]) => averageRecall(phrases.map((p) => Math.fround(Math.round(p.tenths) / 10))); // IoUs are float32

  test('groups: the five, the size buckets, and every phrase type of any seed', () => {
    expect(summary.names).toEqual(['static', 'full', 'mlma']);
    expect(summary.seeds).toEqual([0, 1, 2]);
    expect(summary.groups.map((g: { id: string }) => g.id)).toEqual([
      'overall',
      'things',
      'stuff',
      'singulars',
      'plurals',
      'size:small',
      'size:medium',
      'size:large',
      'phrase_type:binding',
      'phrase_type:occluded',
      'phrase_type:unary',
    ]);
  });

  test('per seed AR is the official AR of the group; mean and t interval over the seeds', () => {
    const perSeed = seeds.map((seed) => arOf(seedPhrases(seed, 'full').filter((p) => p.type === 'binding')));
    const s = summary.averageRecall.full['phrase_type:binding'];
    expect(s.perSeed).toEqual({ 0: perSeed[0], 1: perSeed[1], 2: perSeed[2] });
    const expected = stats.meanInterval(perSeed);
    expect([s.mean, s.low, s.high, s.n]).toEqual([expected.mean, expected.low, expected.high, 3]);
    expect(s.phrases).toBe(6);
    // a group present in one seed only: a mean without an interval
    const occluded = summary.averageRecall.static['phrase_type:occluded'];
    expect([occluded.n, occluded.mean, occluded.low]).toEqual([1, arOf([{ tenths: 5, type: 'occluded' }]), NaN]);
    expect(summary.averageRecall.static['size:large'].perSeed).toEqual({ 2: occluded.mean }); // area 40 ≥ 30
    expect(summary.averageRecall.mlma.overall.n).toBe(2);
  });

  test('paired differences: mean over seeds with a t interval, and the per-seed paired bootstrap', () => {
    const binding = summary.differences['full − static']['phrase_type:binding'];
    const diffs = seeds.map(
      (seed) => arOf(seedPhrases(seed, 'full').filter((p) => p.type === 'binding')) - arOf(seedPhrases(seed, 'static').filter((p) => p.type === 'binding')),
    );
    expect(binding.perSeed.map((d: { difference: number }) => d.difference)).toEqual(diffs);
    expect(binding.mean).toBeCloseTo(0.3, 4);
    expect(binding.low).toBeCloseTo(stats.meanInterval(diffs).low, 12);
    // every binding phrase is better under full: every seed's interval lies above 0
    expect(binding.bootstrap).toMatchObject({ above: 3, below: 0, seeds: 3 });
    expect(binding.bootstrap.first.seed).toBe(0);
    expect(binding.bootstrap.first.interval[0]).toBeGreaterThan(0);
    expect(binding.bootstrap.medianHalfWidth).toBeGreaterThan(0);
    // identical predictions: difference 0 with the interval [0, 0]
    const unary = summary.differences['full − static']['phrase_type:unary'];
    expect(unary.perSeed.map((d: { interval: number[] }) => d.interval)).toEqual([
      [0, 0],
      [0, 0],
      [0, 0],
    ]);
    expect(unary.bootstrap).toMatchObject({ above: 0, below: 0, seeds: 3, medianHalfWidth: 0 });
    // only the seeds where both ran are paired
    expect(summary.differences['mlma − static'].overall.perSeed.map((d: { seed: number }) => d.seed)).toEqual([0, 1]);
  });

  test('mean recall curves over the seeds', () => {
    expect(summary.thresholds).toHaveLength(201);
    expect(summary.thresholds[0]).toBe(0);
    expect(summary.thresholds[100]).toBeCloseTo(0.5, 4);
    const curve = summary.curves.static['phrase_type:unary'];
    expect(curve[0]).toBe(1); // every IoU ≥ 0
    // recall at t = 0.45 (grid index 45 000): the unary phrases with IoU ≥ 0.45, averaged over the seeds (3/5, 4/5, 4/5)
    expect(summary.thresholds[90]).toBeCloseTo(0.45, 12);
    expect(curve[90]).toBeCloseTo((3 / 5 + 4 / 5 + 4 / 5) / 3, 12);
    expect(summary.curves.mlma['phrase_type:occluded']).toBeNull();
  });

  test('figure panels: the five groups and the phrase types, one curve per model', () => {
    const panels = stats.curvePanels(summary);
    expect(panels.map((p: { title: string }) => p.title)).toEqual([
      'overall',
      'things',
      'stuff',
      'singulars',
      'plurals',
      'phrase_type binding',
      'phrase_type occluded',
      'phrase_type unary',
    ]);
    expect(panels[0].series.map((s: { legend: string }) => s.legend)).toEqual([
      `static: AR ${(100 * summary.averageRecall.static.overall.mean).toFixed(1)}`,
      `full: AR ${(100 * summary.averageRecall.full.overall.mean).toFixed(1)}`,
      `mlma: AR ${(100 * summary.averageRecall.mlma.overall.mean).toFixed(1)}`,
    ]);
    expect(panels[6].series[2]).toEqual({ legend: 'mlma: no phrases', recall: null });
  });
});

describe('tables', () => {
  // A hand-made summary: two models, two groups, known numbers.
  const group = (perSeed: Record<number, number>, mean: number, low: number, high: number, n: number, phrases = 10) => ({
    perSeed,
    mean,
    low,
    high,
    n,
    phrases,
  });
  const summary = {
    names: ['static', 'full'],
    seeds: [0, 1],
    confidence: 0.95,
    groups: [
      { id: 'overall', label: 'overall' },
      { id: 'size:large', label: 'large objects' },
      { id: 'phrase_type:twin', label: 'phrase_type twin' },
    ],
    averageRecall: {
      static: {
        overall: group({ 0: 0.5, 1: 0.6 }, 0.55, 0.4, 0.7, 2),
        'size:large': group({}, NaN, NaN, NaN, 0, 0),
        'phrase_type:twin': group({ 1: 0.25 }, 0.25, NaN, NaN, 1, 4),
      },
      full: {
        overall: group({ 0: 0.52 }, 0.52, NaN, NaN, 1),
        'size:large': group({}, NaN, NaN, NaN, 0, 0),
        'phrase_type:twin': group({}, NaN, NaN, NaN, 0, 0),
      },
    },
    differences: {
      'full − static': {
        overall: {
          n: 2,
          mean: 0.0123,
          low: -0.0049,
          high: 0.0301,
          bootstrap: { first: { seed: 0, interval: [-0.011, 0.034] }, medianHalfWidth: 0.0213, above: 1, below: 0, seeds: 2 },
        },
        'size:large': { n: 0, mean: NaN, low: NaN, high: NaN, bootstrap: { first: null, medianHalfWidth: NaN, above: 0, below: 0, seeds: 0 } },
        'phrase_type:twin': {
          n: 1,
          mean: -0.0004,
          low: NaN,
          high: NaN,
          bootstrap: { first: { seed: 1, interval: [-0.02, 0.02] }, medianHalfWidth: 0.02, above: 0, below: 0, seeds: 1 },
        },
      },
    },
  };

  test('mean AR ± half-width; groups without phrases left out; missing cells as –', () => {
    expect(stats.formatAverageRecallTable(summary)).toBe(
      [
        '| group | phrases / seed | static | full |',
        '|---|---:|---:|---:|',
        '| overall | 10 | 55.0 ± 15.0 | 52.0 |',
        '| phrase_type twin | 4 | 25.0 | – |',
      ].join('\n'),
    );
  });

  test('differences with signs and their t interval; the bootstrap cell', () => {
    expect(stats.formatDifferenceTable(summary)).toBe(
      ['| group | full − static |', '|---|---:|', '| overall | +1.2 [-0.5, +3.0] |', '| phrase_type twin | 0.0 |'].join('\n'),
    );
    expect(stats.formatBootstrapTable(summary)).toBe(
      [
        '| group | full − static |',
        '|---|---:|',
        '| overall | [-1.1, +3.4] · ±2.1 · 1↑ 0↓ of 2 |',
        '| phrase_type twin | [-2.0, +2.0] · ±2.0 · 0↑ 0↓ of 1 |',
      ].join('\n'),
    );
  });

  test('one group per seed', () => {
    expect(stats.formatPerSeedTable(summary)).toBe(
      ['| seed | static | full |', '|---|---:|---:|', '| seed 0 | 50.0 | 52.0 |', '| seed 1 | 60.0 | – |'].join('\n'),
    );
  });
});

describe('formatTrainFitTable (the memorisation check)', () => {
  /** A png evaluate report.json with the fields the table reads. */
  const report = (overall: number, things: number, stuff: number, types: Record<string, number>) => ({
    average_recall: { overall, things, stuff },
    by_tag: { phrase_type: Object.fromEntries(Object.entries(types).map(([t, ar]) => [t, { average_recall: ar }])) },
  });

  it('shows train / val (val − train) per group, the mean over the seeds that have both', () => {
    const table = stats.formatTrainFitTable({
      static: [
        { train: report(0.9, 0.8, 1, { unary: 0.95, 'twin-order': 0.6 }), val: report(0.7, 0.5, 0.96, { unary: 0.85, 'twin-order': 0.25 }) },
        { train: report(0.8, 0.7, 0.9, { unary: 0.85, 'twin-order': 0.5 }), val: report(0.7, 0.5, 0.9, { unary: 0.85, 'twin-order': 0.35 }) },
      ],
      eipa: [{ train: report(0.5, 0.4, 0.6, { unary: 0.5 }), val: report(0.6, 0.5, 0.7, { unary: 0.55, 'twin-order': 0.3 }) }],
      unrun: [],
    });
    expect(table.split('\n')).toEqual([
      '| group | static | eipa |',
      '|---|---:|---:|',
      '| overall | 85.0 / 70.0 (-15.0) | 50.0 / 60.0 (+10.0) |',
      '| things | 75.0 / 50.0 (-25.0) | 40.0 / 50.0 (+10.0) |',
      '| stuff | 95.0 / 93.0 (-2.0) | 60.0 / 70.0 (+10.0) |',
      '| unary | 90.0 / 85.0 (-5.0) | 50.0 / 55.0 (+5.0) |',
      '| twin-order | 55.0 / 30.0 (-25.0) | – |', // eipa's train report has no twin-order phrase
    ]);
  });

  it('is null when no variant has both evaluations', () => {
    expect(stats.formatTrainFitTable({ static: [], eipa: [] })).toBeNull();
  });
});
