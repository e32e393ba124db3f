import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { expectDefined } from '@png/core/testing';
import { DiffusionBackbone } from '@png/diffusion-backbone';
import { generateSyntheticBenchmark } from '@png/png-data';
import { PHRASE_GROUPS, PngGroundTruth, evaluatePredictions, parsePredictions, summarizeMetrics } from '@png/png-metrics';
import { evaluateOnBenchmark, mergeEvaluationShards, readEvaluationRecords, scoreEvaluation, type EvaluationShard } from './benchmark_evaluation';
import { PngGrounder } from './png_grounder';

const EMBEDDED = path.join(__dirname, '..', '..', 'diffusion-backbone', 'models', 'png-tiny-sd');

describe('evaluateOnBenchmark (embedded backbone, wasm)', () => {
  let dir: string;
  let backbone: DiffusionBackbone;
  beforeAll(async () => {
    await setBackend('wasm');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-eval-'));
    await generateSyntheticBenchmark(path.join(dir, 'data'), { seed: 3, train: 0, val: 3 });
    // Two more narratives of the first image: one re-cased and re-spaced (kept), one the official pre-processing drops.
    const file = path.join(dir, 'data', 'annotations', 'png_coco_val2017.json');
    const records = JSON.parse(fs.readFileSync(file, 'utf8'));
    const respaced = { ...records[0], caption: records[0].caption.toUpperCase().replaceAll(' ', '  ') };
    const dropped = { ...records[0], caption: `${records[0].caption} And more.` };
    fs.writeFileSync(file, JSON.stringify([...records, respaced, dropped]));
    backbone = await DiffusionBackbone.fromPretrained(EMBEDDED);
  });
  afterAll(() => {
    backbone.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('grounds narratives with more phrases than the model takes in several forwards, and its predictions file re-scores to the same AR', async () => {
    // max_phrases 2: every synthetic narrative (4+ phrases) needs several forwards
    const grounder = PngGrounder.create(
      backbone,
      { mlma: { hidden_dim: 32, num_heads: 4, mask_dim: 32, norm_groups: 8 }, decoder: { num_layers: 1, num_heads: 4, dim_feedforward: 32 }, max_phrases: 2 },
      { seed: 2, recordAttention: true },
    );
    const before = tf.memory().numTensors;
    const out = path.join(dir, 'eval');
    const result = await evaluateOnBenchmark({ data: path.join(dir, 'data'), grounder, imageSize: 64, out, overlays: 2, attentionMaps: 1, batchSize: 3 });
    expect(tf.memory().numTensors).toBe(before);
    grounder.dispose();

    const gt = PngGroundTruth.load(path.join(dir, 'data', 'annotations'));
    expect(result.phrases).toBe(gt.phraseCount);
    const last = gt.records.length - 1;
    expect(result.dropped.map((d) => [d.index, d.reason])).toEqual([[last, 'word count mismatch']]);
    expect(gt.dropped.map((d) => d.index)).toEqual([last]);
    expect(gt.phrases[last - 1].length).toBeGreaterThan(0); // the re-spaced narrative is evaluated
    expect(result.samples).toBe(gt.phrases.filter((p) => p.length > 0).length);
    const predictions = parsePredictions(JSON.parse(fs.readFileSync(path.join(out, 'predictions.json'), 'utf8')));
    // the same groups and, resampling the same images, the same bootstrap intervals
    expect(summarizeMetrics(evaluatePredictions(gt, predictions).evaluate({ bootstrap: {} }))).toEqual(result.summary);
    expect(result.summary.average_recall_ci?.overall).toHaveLength(2);
    expect(result.evaluator.phraseScores()).toHaveLength(gt.phraseCount);
    const report = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(report.average_recall).toEqual(Object.fromEntries(PHRASE_GROUPS.map((g) => [g, result.summary[g]])));
    expect(report.baseline_full_image).toEqual(result.baseline);
    expect(report.dropped_narratives).toEqual({ 'empty caption': 0, 'word count mismatch': 1 });
    expect(fs.readdirSync(path.join(out, 'overlays'))).toHaveLength(2);
    expect(fs.readdirSync(path.join(out, 'attention'))).toHaveLength(1);
  });
});

describe('sharded evaluation (predictions made up from the ground truth: the sharding is in the scoring)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-shards-'));
    await generateSyntheticBenchmark(path.join(dir, 'data'), { seed: 4, train: 0, val: 4, kind: 'grounding' });
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** Evaluates one shard (or all) with a fixed "model": each phrase's GT mask with pixels of a pattern of its record flipped. */
  async function evaluate(out: string, shard?: EvaluationShard) {
    const records = await readEvaluationRecords({ data: path.join(dir, 'data'), shard });
    const predicted = records.samples.map((sample) =>
      sample.phrases.map((p, j) => p.mask.map((on, k) => ((k * (sample.index + 2) + j) % 5 === 0 ? 1 - on : on))),
    );
    return scoreEvaluation({ imageSize: 96, maxPhrases: 4, out, overlays: 4, metrics: { bootstrap: { resamples: 200 } }, shard }, records, predicted);
  }

  it('3 shards merged give the unsharded report.json, ar_curves.svg and predictions.json byte for byte; bad shard sets are named', async () => {
    const whole = path.join(dir, 'whole');
    const unsharded = await evaluate(whole);
    expect(unsharded.samples).toBe(8); // two narratives per image
    const sharded = path.join(dir, 'sharded');
    const files: string[] = [];
    for (const index of [2, 0, 1]) {
      const result = await evaluate(sharded, { index, count: 3 });
      expect(result.samples).toBe(index === 2 ? 2 : 3); // records 0,3,6 / 1,4,7 / 2,5 of 8
      files.push(expectDefined(result.shardFile));
    }
    expect(fs.readdirSync(sharded).sort()).toEqual(['overlays', 'shard-0-of-3.json', 'shard-1-of-3.json', 'shard-2-of-3.json']);
    expect(fs.readdirSync(path.join(sharded, 'overlays'))).toEqual(fs.readdirSync(path.join(whole, 'overlays'))); // the unsharded numbering

    const merged = mergeEvaluationShards(files, sharded);
    expect(merged.summary).toEqual(unsharded.summary);
    for (const file of ['report.json', 'ar_curves.svg', 'predictions.json'])
      expect(fs.readFileSync(path.join(sharded, file)).equals(fs.readFileSync(path.join(whole, file)))).toBe(true);
    expect(merged.summary.average_recall_ci?.overall).toHaveLength(2);
    expect(Object.keys(merged.metrics.byTag.phrase_type ?? {}).length).toBeGreaterThan(1);

    const [two, zero, one] = files;
    expect(() => mergeEvaluationShards([zero, two])).toThrow('shard 1 of 3 missing (got 2 files); run them with --shard K/3 and merge all 3');
    expect(() => mergeEvaluationShards([zero, one, two, zero])).toThrow(`${zero}: shard 0 of 3 is also ${zero}; give each shard once`);
    type ShardContent = {
      settings: { metrics: { bootstrap: { resamples: number } } };
      shard: { count: number };
      version: number;
      evaluator: { ious: unknown[] };
    };
    const edited = (name: string, edit: (content: ShardContent) => void): string => {
      const content = JSON.parse(fs.readFileSync(one, 'utf8'));
      edit(content);
      const file = path.join(dir, name);
      fs.writeFileSync(file, JSON.stringify(content));
      return file;
    };
    const resampled = edited('resampled.json', (c) => (c.settings.metrics.bootstrap.resamples = 100));
    const settings = (resamples: number) =>
      `{"split":"val2017","records":8,"limit":null,"probe":null,"image_size":96,"max_phrases":4,"metrics":{"bootstrap":{"resamples":${resamples}}}}`;
    expect(() => mergeEvaluationShards([zero, resampled, two])).toThrow(
      `${resampled}: settings is ${settings(100)}, but ${settings(200)} in ${zero}; every shard must evaluate the same data with the same settings`,
    );
    const ofFour = edited('of-four.json', (c) => (c.shard.count = 4));
    expect(() => mergeEvaluationShards([zero, ofFour, two])).toThrow(`${ofFour}: shard 1 of 4, but ${zero} is one of 3; merge the shards of one run`);
    const future = edited('future.json', (c) => (c.version = 2));
    expect(() => mergeEvaluationShards([zero, future, two])).toThrow(`${future}: shard file version 2, this png reads version 1`);
    const badState = edited('bad-state.json', (c) => (c.evaluator.ious[0] = 'x'));
    expect(() => mergeEvaluationShards([zero, badState, two])).toThrow(
      `${badState}: field evaluator: evaluator state, field ious[0]: expected a float32 value or null`,
    );
    const cut = path.join(dir, 'cut.json');
    fs.writeFileSync(cut, fs.readFileSync(one, 'utf8').slice(0, 100));
    expect(() => mergeEvaluationShards([zero, cut, two])).toThrow(`${cut}: not valid JSON`);
  }, 600_000); // seconds of CPU, but four readings of the split: generous for a loaded machine
});
