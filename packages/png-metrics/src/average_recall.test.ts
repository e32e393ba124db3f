import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { RECALL_GRID_SIZE, averageRecall, averageRecallReference, recallContribution, recallThreshold, summarizeRecall } from './average_recall';
import { PngEvaluator, type PngMetrics } from './evaluator';
import { parseMaskPhrases } from './mask_phrases';
import { seededRandom } from './test_support';

const FIXTURES = path.resolve(__dirname, '../../../../shared/fixtures/png-metric');

function evaluateFixture(name: string): PngMetrics {
  const evaluator = new PngEvaluator();
  const json: unknown = JSON.parse(readFileSync(path.join(FIXTURES, name), 'utf8'));
  for (const { sample, prediction } of parseMaskPhrases(json, name)) evaluator.process(sample, [prediction]);
  return evaluator.evaluate();
}

describe('worked examples (spec §3), exact bits', () => {
  test('example 1: basic', () => {
    const m = evaluateFixture('ex1_basic.json');
    expect(m.overall.averageRecall).toBe(0.39167500000021316);
    expect(m.singulars.averageRecall).toBe(0.583340000000546);
    expect(m.plurals.averageRecall).toBe(0.20001);
    expect(m.things.averageRecall).toBe(0.5333400000003459);
    expect(m.stuff.averageRecall).toBe(0.25001);
    expect(m.overall.accuracyAt05).toBe(0.25); // B is exactly 0.5, not > 0.5
    expect(m.overall.count).toBe(4);
  });

  test('example 2: IoU in float32', () => {
    const m = evaluateFixture('ex2_float32.json');
    expect(m.overall.averageRecall).toBe(0.6000066666671943);
    expect(m.things.averageRecall).toBe(0.6000066666671943);
    expect(m.plurals.averageRecall).toBeNaN();
    expect(m.stuff.averageRecall).toBeNaN();
    expect(m.stuff.count).toBe(0);
    // IoUs in float64 would give the wrong value of the spec
    expect(averageRecall([3 / 10, 9 / 10, 6 / 10])).toBe(0.600003333333861);
  });

  test('example 3: perfect match, empty∪empty, soft GT', () => {
    const m = evaluateFixture('ex3_edge.json');
    expect(m.overall.averageRecall).toBe(0.5166666666663403);
    expect(m.things.averageRecall).toBe(0.7750000000014738);
    expect(m.stuff.averageRecall).toBe(0.0);
    expect(m.stuff.count).toBe(1);
    expect(m.plurals.averageRecall).toBeNaN();
    expect(m.plurals.count).toBe(0);
  });

  test('the reference implementation gives the same values', () => {
    expect(averageRecallReference([0.6666666865348816, 0.5, 0.4000000059604645, 0])).toBe(0.39167500000021316);
    expect(averageRecallReference([0.30000001192092896, 0.8999999761581421, 0.6000000238418579])).toBe(0.6000066666671943);
    expect(averageRecallReference([1, NaN, 0.550000011920929])).toBe(0.5166666666663403);
  });
});

describe('threshold grid', () => {
  test('t_i = i × 1e-5 as a double product, 100 000 values ending at 0.99999', () => {
    expect(RECALL_GRID_SIZE).toBe(100_000);
    expect(recallThreshold(0)).toBe(0);
    expect(recallThreshold(30000)).toBe(30000 * 1e-5);
    expect(recallThreshold(99999)).toBe(99999 * 1e-5);
    let differFromQuotient = 0;
    for (let i = 0; i < RECALL_GRID_SIZE; i++) if (recallThreshold(i) !== i / 1e5) differFromQuotient++;
    expect(differFromQuotient).toBe(55227); // spec §2.4
    expect(() => recallThreshold(100000)).toThrow(/index/);
  });
});

/** The next double above (dir = 1) or below (dir = -1) a positive x. */
function adjacentDouble(x: number, dir: 1 | -1): number {
  const f = new Float64Array([x]);
  const bits = new BigInt64Array(f.buffer);
  bits[0] += BigInt(dir);
  return f[0];
}

/** IoU-like values that stress the comparisons: 0, 1, NaN, exact fractions, grid points and their neighbours. */
function randomIoU(random: () => number): number {
  const grid = () => recallThreshold(Math.floor(random() * RECALL_GRID_SIZE));
  const fraction = () => {
    const den = 1 + Math.floor(random() * 40);
    return Math.floor(random() * (den + 1)) / den;
  };
  switch (Math.floor(random() * 10)) {
    case 0:
      return 0;
    case 1:
      return 1;
    case 2:
      return NaN;
    case 3:
      return Math.fround(fraction());
    case 4:
      return fraction();
    case 5:
      return grid();
    case 6:
      return adjacentDouble(grid() || 1e-5, random() < 0.5 ? 1 : -1);
    case 7:
      return Math.fround(grid());
    case 8:
      return Math.fround(random());
    default:
      return random();
  }
}

function randomList(random: () => number, maxLength: number): number[] {
  return Array.from({ length: Math.floor(random() * (maxLength + 1)) }, () => randomIoU(random));
}

function shuffled<T>(items: readonly T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

describe('fast path vs literal reference', () => {
  test('identical bits on 2 000 random short lists with 0, 1, NaN, fractions and grid points', () => {
    const random = seededRandom(20211023);
    let mismatches = 0;
    for (let trial = 0; trial < 2000; trial++) {
      const ious = randomList(random, 6);
      if (!Object.is(averageRecall(ious), averageRecallReference(ious))) mismatches++;
    }
    expect(mismatches).toBe(0);
  });

  test('identical bits on a few longer lists', () => {
    const random = seededRandom(7);
    for (let trial = 0; trial < 4; trial++) {
      const ious = Array.from({ length: 150 }, () => randomIoU(random));
      expect(Object.is(averageRecall(ious), averageRecallReference(ious))).toBe(true);
    }
  });

  test('empty list is NaN in both; all-NaN list is 0 in both', () => {
    expect(averageRecall([])).toBeNaN();
    expect(averageRecallReference([])).toBeNaN();
    expect(averageRecall([NaN, NaN])).toBe(0);
    expect(averageRecallReference([NaN, NaN])).toBe(0);
  });

  test('summarizeRecall agrees with averageRecall and counts inclusively / strictly', () => {
    const s = summarizeRecall([0.5, 0.5000001, NaN, 0]);
    expect(s.averageRecall).toBe(averageRecall([0.5, 0.5000001, NaN, 0]));
    expect(s.count).toBe(4);
    expect(s.accuracyAt05).toBe(0.25); // only 0.5000001 is > 0.5
    expect(s.recall[0]).toBe(0.75); // 0 ≥ t_0 = 0, NaN never counts
    expect(s.recall[50000]).toBe(0.5); // inclusive: 0.5 ≥ t_50000
    expect(s.recall.length).toBe(RECALL_GRID_SIZE);
  });
});

describe('properties', () => {
  test('AR is the mean IoU within 1e-5 (lists without NaN)', () => {
    const random = seededRandom(42);
    for (let trial = 0; trial < 300; trial++) {
      const ious = randomList(random, 60).filter((x) => !Number.isNaN(x));
      if (ious.length === 0) continue;
      const mean = ious.reduce((a, b) => a + b, 0) / ious.length;
      // |AR − mean| ≤ 1e-5 up to the float rounding of the 99 999-term sum (≈1e-12)
      expect(Math.abs(averageRecall(ious) - mean)).toBeLessThanOrEqual(1e-5 + 1e-9);
    }
  });

  test('AR is invariant under permutation, bit for bit', () => {
    const random = seededRandom(3);
    for (let trial = 0; trial < 200; trial++) {
      const ious = randomList(random, 40);
      expect(Object.is(averageRecall(shuffled(ious, random)), averageRecall(ious))).toBe(true);
    }
  });

  test('typed-array input gives the same bits as an array', () => {
    const ious = [0.25, 0.75, 1, 0];
    expect(averageRecall(Float32Array.from(ious))).toBe(averageRecall(ious));
  });
});

describe('recallContribution (the sum form the bootstrap uses)', () => {
  const sumForm = (ious: readonly number[]) => ious.reduce((total, x) => total + recallContribution(x), 0) / ious.length;

  test('t_m with m = min(#{t_i ≤ IoU}, 99 999); 0 for NaN', () => {
    expect(recallContribution(0)).toBe(recallThreshold(1));
    expect(recallContribution(1)).toBe(recallThreshold(RECALL_GRID_SIZE - 1));
    expect(recallContribution(NaN)).toBe(0);
    expect(recallContribution(0.5)).toBe(recallThreshold(50001)); // c = 50 001 (example 1, phrase B)
    expect(recallContribution(Math.fround(0.3))).toBe(recallThreshold(30001)); // float32 3/10 passes t_30000
  });

  test('Σ contributions / n is the official AR within 1e-12 on random lists and the worked examples', () => {
    const random = seededRandom(11);
    let worst = 0;
    for (let trial = 0; trial < 300; trial++) {
      const ious = randomList(random, 300);
      if (ious.length === 0) continue;
      worst = Math.max(worst, Math.abs(sumForm(ious) - averageRecall(ious)));
    }
    expect(worst).toBeLessThan(1e-12); // measured 6.3e-13: the rounding of the official 99 999-term sum
    // example 1: the sum form gives 1.5667 / 4 = 0.391675; the official sum carries 2.1e-13 of rounding
    expect(sumForm([0.6666666865348816, 0.5, 0.4000000059604645, 0])).toBe(
      (recallThreshold(66667) + recallThreshold(50001) + recallThreshold(40001) + recallThreshold(1)) / 4,
    );
    expect(Math.abs(sumForm([0.6666666865348816, 0.5, 0.4000000059604645, 0]) - 0.39167500000021316)).toBeLessThan(1e-12);
  });
});
