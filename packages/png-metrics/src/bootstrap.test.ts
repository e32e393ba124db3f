import { averageRecall } from './average_recall';
import { percentileInterval } from './bootstrap';
import { PHRASE_GROUPS, PngEvaluator, type PngSample } from './evaluator';
import { seededRandom } from './test_support';

const SIDE = 8;

/** `images` samples (one per image) of 5 phrases on 8×8 masks: random GT, a noisy copy of it as prediction. */
function randomSet(images: number, seed: number, noise = 0.3): { samples: PngSample[]; predictions: Uint8Array[][] } {
  const random = seededRandom(seed);
  const samples: PngSample[] = [];
  const predictions: Uint8Array[][] = [];
  for (let i = 0; i < images; i++) {
    const phrases = Array.from({ length: 5 }, (_, k) => ({
      label: `image ${i} phrase ${k}`,
      isThing: k % 2 === 0,
      isPlural: k === 4,
      tags: { phrase_type: k < 2 ? 'unary' : 'binding' },
      mask: Uint8Array.from({ length: SIDE * SIDE }, () => (random() < 0.4 ? 1 : 0)),
    }));
    samples.push({ label: `image ${i}`, imageId: i, height: SIDE, width: SIDE, phrases });
    const flip = noise * random() * 2; // per-image difficulty, so images differ
    predictions.push(phrases.map((p) => Uint8Array.from(p.mask, (v) => (random() < flip ? 1 - v : v))));
  }
  return { samples, predictions };
}

function evaluatorOf(set: { samples: PngSample[]; predictions: Uint8Array[][] }): PngEvaluator {
  const evaluator = new PngEvaluator();
  for (const [i, sample] of set.samples.entries()) evaluator.process(sample, set.predictions[i]);
  return evaluator;
}

describe('percentileInterval', () => {
  test('linear interpolation between order statistics, NaN left out', () => {
    const values = Float64Array.from([NaN, 4, 0, 2, 1, 3]);
    expect(percentileInterval(values, 0.5)).toEqual([1, 3]); // quantiles 0.25 and 0.75 of 0..4
    expect(percentileInterval(values, 0.9)).toEqual([expect.closeTo(0.2, 15), expect.closeTo(3.8, 15)]); // quantiles 0.05 and 0.95
    expect(percentileInterval(Float64Array.from([NaN]), 0.95)).toBeNull();
  });
});

describe('bootstrap over images', () => {
  const set300 = randomSet(300, 1);
  const evaluator = evaluatorOf(set300);

  test('every group gets an interval around its bit-exact AR, which stays the point estimate', () => {
    const plain = evaluator.evaluate();
    const metrics = evaluator.evaluate({ bootstrap: {} });
    expect(metrics.bootstrap).toEqual({ resamples: 1000, seed: 0, confidence: 0.95, images: 300 });
    for (const m of [...PHRASE_GROUPS.map((g) => metrics[g]), metrics.byTag.phrase_type.unary, metrics.byTag.phrase_type.binding]) {
      const [low, high] = m.interval ?? [NaN, NaN]; // NaN fails the checks below
      expect(low).toBeLessThan(m.averageRecall);
      expect(high).toBeGreaterThan(m.averageRecall);
    }
    expect(metrics.overall.averageRecall).toBe(plain.overall.averageRecall);
    expect(plain.overall.interval).toBeUndefined();
    // 8×8 masks: every GT is small under COCO's bounds; medium and large are empty in every resample
    expect(metrics.bySize.small.interval).toEqual(metrics.overall.interval);
    expect(metrics.bySize.large.interval).toBeNull();
  });

  test('deterministic under the seed; another seed draws other resamples', () => {
    const a = evaluator.evaluate({ bootstrap: { seed: 7, resamples: 200 } });
    const b = evaluatorOf(set300).evaluate({ bootstrap: { seed: 7, resamples: 200 } });
    const c = evaluator.evaluate({ bootstrap: { seed: 8, resamples: 200 } });
    expect(b.overall.interval).toEqual(a.overall.interval);
    expect(b.byTag.phrase_type.binding.interval).toEqual(a.byTag.phrase_type.binding.interval);
    expect(c.overall.interval).not.toEqual(a.overall.interval);
  });

  test('the interval shrinks with more images and widens with the confidence', () => {
    const width = (m: { interval?: readonly [number, number] | null }) => {
      const [low, high] = m.interval ?? [NaN, NaN]; // NaN fails the comparisons of widths
      return high - low;
    };
    const small = evaluatorOf(randomSet(30, 2)).evaluate({ bootstrap: {} });
    const large = evaluatorOf(randomSet(600, 2)).evaluate({ bootstrap: {} });
    expect(width(large.overall)).toBeLessThan(0.5 * width(small.overall)); // ~1/√20 ≈ 0.22 expected
    expect(width(evaluator.evaluate({ bootstrap: { confidence: 0.5 } }).overall)).toBeLessThan(
      width(evaluator.evaluate({ bootstrap: { confidence: 0.95 } }).overall),
    );
  });

  test('images, not samples, are resampled: narratives of one image are drawn together', () => {
    const twice = new PngEvaluator();
    set300.samples.slice(0, 10).forEach((sample, i) => {
      twice.process(sample, set300.predictions[i]);
      twice.process({ ...sample, label: `${sample.label} again` }, set300.predictions[i]);
    });
    expect(twice.evaluate({ bootstrap: { resamples: 10 } }).bootstrap?.images).toBe(10);
    const withoutIds = new PngEvaluator();
    for (const [i, sample] of set300.samples.slice(0, 10).entries()) withoutIds.process({ ...sample, imageId: undefined }, set300.predictions[i]);
    withoutIds.process({ label: 'no phrases', height: 1, width: 1, phrases: [] }, []);
    expect(withoutIds.evaluate({ bootstrap: { resamples: 10 } }).bootstrap?.images).toBe(10);
  });

  test('bad settings are named', () => {
    expect(() => evaluator.evaluate({ bootstrap: { resamples: 0 } })).toThrow(/bootstrap resamples must be an integer ≥ 1, got 0/);
    expect(() => evaluator.evaluate({ bootstrap: { confidence: 95 } })).toThrow(/bootstrap confidence must be in \(0, 1\)/);
  });
});

describe('PngEvaluator.pairedBootstrap', () => {
  const set = randomSet(200, 3);
  const better = evaluatorOf(set);
  const worse = evaluatorOf({ samples: set.samples, predictions: randomSet(200, 3, 0.6).predictions });

  test('identical predictions: every difference and interval is exactly 0', () => {
    const paired = PngEvaluator.pairedBootstrap(better, evaluatorOf(set));
    for (const d of [...PHRASE_GROUPS.map((g) => paired[g]), paired.bySize.small, paired.byTag.phrase_type.unary]) {
      expect(d.difference).toBe(0);
      expect(d.interval).toEqual([0, 0]);
    }
    expect(paired.bySize.large).toEqual({ difference: NaN, interval: null, count: 0 });
  });

  test("a better prediction set: the difference is the official ARs' and its interval excludes 0", () => {
    const paired = PngEvaluator.pairedBootstrap(better, worse, { bootstrap: { resamples: 500 } });
    const a = better.evaluate();
    const b = worse.evaluate();
    expect(paired.overall.difference).toBe(a.overall.averageRecall - b.overall.averageRecall);
    expect(paired.byTag.phrase_type.binding.difference).toBe(a.byTag.phrase_type.binding.averageRecall - b.byTag.phrase_type.binding.averageRecall);
    expect(paired.overall.count).toBe(1000);
    const [low, high] = paired.overall.interval ?? [NaN, NaN]; // NaN fails the checks below
    expect(low).toBeGreaterThan(0);
    expect(high).toBeGreaterThan(paired.overall.difference);
  });

  test('evaluators of different phrases are refused', () => {
    const fewer = evaluatorOf({ samples: set.samples.slice(1), predictions: set.predictions.slice(1) });
    expect(() => PngEvaluator.pairedBootstrap(better, fewer)).toThrow(/hold different phrases \(1000 vs 995 phrases in 200 vs 199 samples/);
  });

  test('phraseScores lists the IoUs the groups are computed from', () => {
    const scores = better.phraseScores();
    expect(averageRecall(scores.map((s) => s.iou))).toBe(better.evaluate().overall.averageRecall);
    expect(scores[7]).toMatchObject({
      sample: 1,
      sampleLabel: 'image 1',
      imageId: 1,
      phrase: 2,
      isThing: true,
      isPlural: false,
      tags: { phrase_type: 'binding' },
    });
  });
});
