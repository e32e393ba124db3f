import { averageRecall } from './average_recall';
import { PHRASE_GROUPS, PngEvaluator, interleaveShards, type PngMetrics, type PngSample, type PredictedMask } from './evaluator';
import { encodeRle } from './rle';
import { seededRandom } from './test_support';

interface Case {
  sample: PngSample;
  prediction: PredictedMask[];
}

/** Random small samples: binary / soft / RLE predictions, some empty masks (NaN IoUs), all four group combinations. */
function randomCases(count: number, seed: number): Case[] {
  const random = seededRandom(seed);
  const randomMask = (pixels: number, density: number) => Uint8Array.from({ length: pixels }, () => (random() < density ? 1 : 0));
  return Array.from({ length: count }, (_, s) => {
    const height = 2 + Math.floor(random() * 6);
    const width = 2 + Math.floor(random() * 6);
    const phrases = Array.from({ length: 1 + Math.floor(random() * 4) }, (_, k) => ({
      label: `sample ${s} phrase ${k}`,
      isThing: random() < 0.5,
      isPlural: random() < 0.4,
      mask: randomMask(height * width, random() < 0.1 ? 0 : random()),
    }));
    const prediction = phrases.map((): PredictedMask => {
      const mask = randomMask(height * width, random() < 0.1 ? 0 : random());
      const kind = random();
      if (kind < 0.3) return Float32Array.from(mask, (v) => (v ? Math.fround(0.5 + random() / 2) : 0));
      if (kind < 0.6) return encodeRle(mask, height, width, { compressed: random() < 0.5 });
      return mask;
    });
    return { sample: { label: `sample ${s}`, height, width, phrases }, prediction };
  });
}

function expectSameBits(a: PngMetrics, b: PngMetrics): void {
  for (const group of PHRASE_GROUPS) {
    expect(Object.is(a[group].averageRecall, b[group].averageRecall)).toBe(true);
    expect(Object.is(a[group].accuracyAt05, b[group].accuracyAt05)).toBe(true);
    expect(a[group].count).toBe(b[group].count);
    let differing = 0;
    a[group].recall.forEach((r, i) => {
      if (!Object.is(r, b[group].recall[i])) differing++;
    });
    expect(differing).toBe(0);
  }
}

describe('PngEvaluator', () => {
  const cases = randomCases(300, 99);

  test('sharded, serialized across "processes", merged in any order == one pass, bit for bit', () => {
    const single = new PngEvaluator();
    for (const { sample, prediction } of cases) single.process(sample, prediction);
    const reference = single.evaluate();
    expect(reference.overall.count).toBe(single.phraseCount);
    expect(reference.overall.recall.some(Number.isNaN)).toBe(false);

    const random = seededRandom(5);
    for (const shardCount of [2, 3, 7]) {
      const shards = Array.from({ length: shardCount }, () => new PngEvaluator());
      for (const { sample, prediction } of cases) shards[Math.floor(random() * shardCount)].process(sample, prediction);
      const wire = shards.map((shard) => JSON.stringify(shard)); // toJSON, as a worker would send it
      const merged = new PngEvaluator();
      for (const text of wire.reverse()) merged.merge(PngEvaluator.fromJSON(JSON.parse(text)));
      expectSameBits(merged.evaluate(), reference);
    }
  });

  test('fromShards restores a round-robin deal: the same JSON report, bootstrap intervals included, as one pass', () => {
    // 298 samples: 100, 99, 99 per shard; several narratives per image, so the per-image sums of the bootstrap mix samples of different shards
    const withImages = cases.slice(0, 298).map(({ sample, prediction }, s) => ({ sample: { ...sample, imageId: (s * 7) % 40 }, prediction }));
    const options = { groupBy: ['phrase_type'], bootstrap: { resamples: 50 } };
    const single = new PngEvaluator();
    for (const { sample, prediction } of withImages) single.process(sample, prediction);
    const shards = Array.from({ length: 3 }, () => new PngEvaluator());
    for (const [s, { sample, prediction }] of withImages.entries()) shards[s % 3].process(sample, prediction);
    const merged = PngEvaluator.fromShards(shards.map((shard) => PngEvaluator.fromJSON(JSON.parse(JSON.stringify(shard)))));
    expect(JSON.stringify(merged)).toBe(JSON.stringify(single));
    expect(JSON.stringify(merged.evaluate(options))).toBe(JSON.stringify(single.evaluate(options)));
    expect(() => PngEvaluator.fromShards([shards[1], shards[0]])).toThrow(
      'evaluator shard 0 of 2 holds 99 items, but a round-robin deal of 199 items gives it 100',
    );
  });

  test('interleaveShards names the shard that does not fit a round-robin deal', () => {
    expect(
      interleaveShards([
        [0, 3, 6],
        [1, 4],
        [2, 5],
      ]),
    ).toEqual([0, 1, 2, 3, 4, 5, 6]);
    expect(interleaveShards([[0, 1]])).toEqual([0, 1]);
    expect(() =>
      interleaveShards(
        [
          [0, 3],
          [1, 4, 7],
          [2, 5],
        ],
        'shard file',
      ),
    ).toThrow('shard file 0 of 3 holds 2 items, but a round-robin deal of 7 items gives it 3: a shard is missing, repeated or from another run');
  });

  test('the state keeps NaN IoUs (as null in JSON) and float32 values exactly', () => {
    const evaluator = new PngEvaluator();
    for (const { sample, prediction } of cases) evaluator.process(sample, prediction);
    const state = evaluator.toJSON();
    expect(state.ious).toContain(null);
    expect(state.ious.every((x) => x === null || Math.fround(x) === x)).toBe(true);
    const copy = PngEvaluator.fromJSON(JSON.parse(JSON.stringify(state)));
    expect(copy.toJSON()).toEqual(state);
  });

  test('group rules: stuff = not thing, singular = not plural, each phrase once per partition', () => {
    const evaluator = new PngEvaluator();
    for (const { sample, prediction } of cases) evaluator.process(sample, prediction);
    const m = evaluator.evaluate();
    expect(m.things.count + m.stuff.count).toBe(m.overall.count);
    expect(m.singulars.count + m.plurals.count).toBe(m.overall.count);
  });

  test('reset empties the state; evaluate on nothing gives NaN everywhere', () => {
    const evaluator = new PngEvaluator();
    evaluator.process(cases[0].sample, cases[0].prediction);
    evaluator.reset();
    expect(evaluator.phraseCount).toBe(0);
    const m = evaluator.evaluate();
    for (const group of PHRASE_GROUPS) {
      expect(m[group].averageRecall).toBeNaN();
      expect(m[group].accuracyAt05).toBeNaN();
      expect(m[group].count).toBe(0);
    }
  });

  test('merging an evaluator into itself doubles it', () => {
    const evaluator = new PngEvaluator();
    evaluator.process(cases[0].sample, cases[0].prediction);
    const n = evaluator.phraseCount;
    expect(evaluator.merge(evaluator).phraseCount).toBe(2 * n);
  });

  test('fromJSON rejects malformed states with the field named', () => {
    const good = {
      format: 'png-metrics/evaluator-state',
      version: 2,
      ious: [0.5, null],
      flags: [1, 2],
      areas: [4, 0],
      tags: { phrase_type: ['unary', null] },
      samples: [{ label: 's', image_id: 7, phrases: 2 }],
    };
    expect(PngEvaluator.fromJSON(good).phraseCount).toBe(2);
    expect(() => PngEvaluator.fromJSON({ ...good, format: 'x' })).toThrow(/field format/);
    expect(() => PngEvaluator.fromJSON({ ...good, version: 1 })).toThrow(/field version: expected 2/);
    expect(() => PngEvaluator.fromJSON({ ...good, flags: [1] })).toThrow(/field flags: expected an array of 2 entries/);
    expect(() => PngEvaluator.fromJSON({ ...good, ious: [0.1, null] })).toThrow(/field ious\[0\]: expected a float32 value/);
    expect(() => PngEvaluator.fromJSON({ ...good, flags: [1, 4] })).toThrow(/field flags\[1\]: expected an integer 0..3/);
    expect(() => PngEvaluator.fromJSON({ ...good, areas: [4, -1] })).toThrow(/field areas\[1\]: expected a finite number/);
    expect(() => PngEvaluator.fromJSON({ ...good, tags: { phrase_type: ['unary', 3] } })).toThrow(/field tags.phrase_type\[1\]: expected a string or null/);
    expect(() => PngEvaluator.fromJSON({ ...good, samples: [{ label: 's', image_id: 7, phrases: 1 }] })).toThrow(
      /field samples: expected phrase counts summing to 2/,
    );
    expect(() => PngEvaluator.fromJSON([])).toThrow(/field \(root\)/);
  });
});

describe('size and tag groups', () => {
  // 4×4 masks, row-major; `rows(n)` = the first n pixels set
  const first = (n: number) => Uint8Array.from({ length: 16 }, (_, k) => (k < n ? 1 : 0));
  const phrase = (label: string, area: number, tags?: Record<string, string>) => ({
    label,
    isThing: true,
    isPlural: false,
    mask: first(area),
    ...(tags ? { tags } : {}),
  });
  const samples: { sample: PngSample; prediction: Uint8Array[] }[] = [
    {
      sample: {
        label: 'a',
        imageId: 1,
        height: 4,
        width: 4,
        phrases: [phrase('a0', 2, { phrase_type: 'unary' }), phrase('a1', 6, { phrase_type: 'binding', twins: '2' }), phrase('a2', 12)],
      },
      prediction: [first(2), first(3), first(0)], // IoU 1, 1/2, 0
    },
    {
      sample: {
        label: 'b',
        imageId: 2,
        height: 4,
        width: 4,
        phrases: [phrase('b0', 4, { phrase_type: 'binding' }), phrase('b1', 9, { phrase_type: 'twin-size', twins: '2' })],
      },
      prediction: [first(4), first(3)], // IoU 1, 1/3
    },
  ];
  const evaluator = new PngEvaluator();
  for (const { sample, prediction } of samples) evaluator.process(sample, prediction);
  const third = Math.fround(1 / 3);

  test('size buckets from the GT area: small < t0 ≤ medium < t1 ≤ large', () => {
    const m = evaluator.evaluate({ sizeThresholds: [4, 9] });
    expect(m.sizeThresholds).toEqual([4, 9]);
    expect(m.bySize.small.count).toBe(1); // area 2
    expect(m.bySize.medium.averageRecall).toBe(averageRecall([0.5, 1])); // areas 6 and 4
    expect(m.bySize.large.averageRecall).toBe(averageRecall([0, third])); // areas 12 and 9
    expect(m.overall.averageRecall).toBe(averageRecall([1, 0.5, 0, 1, third]));
    const coco = evaluator.evaluate();
    expect(coco.sizeThresholds).toEqual([1024, 9216]);
    expect([coco.bySize.small.count, coco.bySize.medium.count, coco.bySize.large.count]).toEqual([5, 0, 0]);
    expect(coco.bySize.medium.averageRecall).toBeNaN();
    expect(() => evaluator.evaluate({ sizeThresholds: [9, 4] })).toThrow(/sizeThresholds must be two areas 0 < small ≤ medium/);
  });

  test('tag groups: phrase_type by default, values sorted, untagged phrases in none', () => {
    const m = evaluator.evaluate();
    expect(Object.keys(m.byTag)).toEqual(['phrase_type']);
    expect(Object.keys(m.byTag.phrase_type)).toEqual(['binding', 'twin-size', 'unary']);
    expect(m.byTag.phrase_type.binding.averageRecall).toBe(averageRecall([0.5, 1]));
    expect(m.byTag.phrase_type['twin-size'].averageRecall).toBe(averageRecall([third]));
    expect(m.byTag.phrase_type.unary.count).toBe(1);
    const byTwins = evaluator.evaluate({ groupBy: ['twins', 'missing'] });
    expect(Object.keys(byTwins.byTag)).toEqual(['twins']);
    expect(byTwins.byTag.twins['2'].averageRecall).toBe(averageRecall([0.5, third]));
  });

  test('without tags there are no tag groups; the five groups are unchanged by the extra ones', () => {
    const plain = new PngEvaluator();
    const cases = randomCases(50, 4);
    for (const { sample, prediction } of cases) plain.process(sample, prediction);
    expect(plain.evaluate().byTag).toEqual({});
    const reference = new PngEvaluator();
    for (const { sample, prediction } of cases)
      reference.process({ ...sample, phrases: sample.phrases.map((p, k) => ({ ...p, tags: { phrase_type: `t${k}` } })) }, prediction);
    expectSameBits(reference.evaluate({ bootstrap: { resamples: 10 } }), plain.evaluate());
  });

  test('tags, areas and samples survive toJSON / fromJSON and merging', () => {
    const copy = PngEvaluator.fromJSON(JSON.parse(JSON.stringify(evaluator)));
    expect(copy.phraseScores()).toEqual(evaluator.phraseScores());
    expect(copy.toJSON().tags).toEqual({ phrase_type: ['unary', 'binding', null, 'binding', 'twin-size'], twins: [null, '2', null, null, '2'] });
    const merged = new PngEvaluator().merge(copy).merge(copy);
    expect(merged.phraseScores().map((s) => s.sample)).toEqual([0, 0, 0, 1, 1, 2, 2, 2, 3, 3]);
    expect(merged.evaluate().byTag.phrase_type.binding.count).toBe(4);
  });
});
