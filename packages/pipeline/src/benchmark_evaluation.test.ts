import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { setBackend } from '@png/core';
import { DiffusionBackbone } from '@png/diffusion-backbone';
import { generateSyntheticBenchmark } from '@png/png-data';
import { PHRASE_GROUPS, PngGroundTruth, evaluatePredictions, parsePredictions, summarizeMetrics } from '@png/png-metrics';
import { evaluateOnBenchmark } from './benchmark_evaluation';
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
