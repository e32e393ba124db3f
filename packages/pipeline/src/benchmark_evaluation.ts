/**
 * Evaluates a PngGrounder on a PNG benchmark split with the PNG Average Recall, and draws what it
 * predicts. Everything is written to one folder:
 *
 *   report.json          AR / counts / acc@0.5 per group (the five groups, size buckets, phrase types) with
 *                        bootstrap intervals over images, and the recall curves (+ the trivial baseline's AR,
 *                        the narratives dropped by the official pre-processing, per reason)
 *   ar_curves.svg        the recall curves (the paper's Figure 4 layout)
 *   predictions.json     every predicted mask as COCO RLE (`png-metrics evaluate` reads it)
 *   overlays/<n>.png     ground truth beside prediction, phrase legend, for the first samples
 *   attention/<n>.png    per adapted block, each pixel in the colour of its most-attended phrase (Figure 5)
 *
 * Sharded (`shard: {index: K, count: N}`), it grounds only the grounded records K, K + N, K + 2N, …
 * of the split and writes, instead of the first three files, `shard-<K>-of-<N>.json`: the evaluator
 * states, predictions and settings of its records (overlays and attention maps keep the unsharded
 * numbering). {@link mergeEvaluationShards} turns the N shard files into the report.json,
 * ar_curves.svg and predictions.json of the unsharded run, byte for byte.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { parseJsonObject } from '@png/core';
import { writeFileAtomic } from '@png/node-utils';
import { encodePng, letterbox, type DroppedRecord, type PngSample, type SkippedRecord } from '@png/png-data';
import {
  PngEvaluator,
  buildReport,
  countDrops,
  encodeRle,
  interleaveShards,
  renderRecallCurvesSvg,
  summarizeMetrics,
  type PngEvaluateOptions,
  type PngEvaluatorState,
  type PngMetrics,
  type PngPredictionRecord,
  type PngSample as EvaluatedSample,
  type PngSummary,
} from '@png/png-metrics';
import { encodeSamples, readGroundedSamples } from './benchmark_samples';
import { masksFromLogits, type EipaProbe, type PngGrounder } from './png_grounder';
import { renderAttentionMap, renderOverlay, tileImages } from './visualize';

export interface BenchmarkEvaluationOptions {
  readonly data: string;
  /** Default 'val2017'. */
  readonly split?: string;
  readonly grounder: PngGrounder;
  /** Canvas side the images are letterboxed to (as in training). */
  readonly imageSize: number;
  /** Output folder; nothing is written without it. */
  readonly out?: string;
  /** Samples drawn as overlays (default 8). */
  readonly overlays?: number;
  /** Samples whose EIPA attention is drawn (default 4; needs a grounder made with `recordAttention`). */
  readonly attentionMaps?: number;
  /** Evaluate only the first `limit` grounded records. */
  readonly limit?: number;
  /** Samples per forward (default 8). */
  readonly batchSize?: number;
  /**
   * Groups and intervals of the metrics (png-metrics' `evaluate` options); default: tag groups by
   * `phrase_type`, COCO's size thresholds, 1000 bootstrap resamples of the images (seed 0, 95 %).
   */
  readonly metrics?: PngEvaluateOptions;
  /**
   * A test-time check of EIPA (see EipaProbe). For `swap_phrases` the donor of each sample is the
   * image of the next grounded record of the split (the last's is the first's), so the split needs
   * two records or more.
   */
  readonly probe?: EipaProbe['kind'];
  /** Ground only every `count`-th grounded record, from record `index` (0-based), and write a shard file (see the module comment). */
  readonly shard?: EvaluationShard;
  readonly onProgress?: (done: number, total: number) => void;
}

/** Shard `index` (0 ≤ index < count) of `count`: the grounded records index, index + count, … */
export interface EvaluationShard {
  readonly index: number;
  readonly count: number;
}

export interface BenchmarkEvaluationResult {
  /** The metrics of the records evaluated (a shard's own only, when sharded). */
  readonly metrics: PngMetrics;
  /** Every phrase's IoU, groups and tags (`phraseScores()`), e.g. for `PngEvaluator.pairedBootstrap` against another run. */
  readonly evaluator: PngEvaluator;
  readonly summary: PngSummary;
  /** A trivial baseline on the same phrases: every phrase predicted as the whole image. */
  readonly baseline: PngSummary;
  readonly samples: number;
  readonly phrases: number;
  /** Bad records of the split, left out of the evaluation (each with its index and the field at fault). */
  readonly skipped: readonly SkippedRecord[];
  /** Records the official pre-processing drops (not evaluated, as in the official code). */
  readonly dropped: readonly DroppedRecord[];
  readonly seconds: number;
  /** The shard file written, when sharded with an output folder. */
  readonly shardFile?: string;
}

/** One forward's worth of a sample: up to max_phrases of its phrases. */
interface View {
  readonly sample: number;
  readonly first: number;
  readonly count: number;
}

export async function evaluateOnBenchmark(options: BenchmarkEvaluationOptions): Promise<BenchmarkEvaluationResult> {
  const began = performance.now();
  const { grounder, imageSize } = options;
  const batchSize = options.batchSize ?? 8;
  const attentionMaps = options.attentionMaps ?? 4;
  const maxPhrases = grounder.config.max_phrases;
  const records = await readEvaluationRecords(options);
  const { all, numbers, samples } = records;
  if (options.probe === 'swap_phrases' && all.length < 2)
    throw new Error(
      `${options.data}: split ${records.split} has ${all.length} grounded record; swap_phrases needs two or more (each image's phrase states come from another image)`,
    );

  // A sample with more phrases than the model takes is grounded in several forwards.
  const views: View[] = samples.flatMap((s, i) =>
    Array.from({ length: Math.ceil(s.phrases.length / maxPhrases) }, (_, k) => ({
      sample: i,
      first: k * maxPhrases,
      count: Math.min(maxPhrases, s.phrases.length - k * maxPhrases),
    })),
  );
  const predicted: Uint8Array[][] = samples.map(() => []);
  const attention: Array<Record<string, Float32Array> | undefined> = samples.map(() => undefined);
  for (let start = 0; start < views.length; start += batchSize) {
    const batch = views.slice(start, start + batchSize);
    const inputs = batch.map((v) => viewSample(samples[v.sample], v));
    const encoded = encodeSamples(grounder, inputs, { size: imageSize, maxPhrases });
    const donors =
      options.probe === 'swap_phrases'
        ? encodeDonors(
            grounder,
            batch.map((v) => all[(numbers[v.sample] + 1) % all.length]),
            imageSize,
          )
        : undefined;
    const out = grounder.forwardLatents(
      encoded.latents,
      encoded.phrases,
      encoded.skips,
      donors ? { kind: 'swap_phrases', donors } : options.probe === 'zero_gates' ? { kind: 'zero_gates' } : undefined,
    );
    const last = out.predictions[out.predictions.length - 1]; // [B, h, w, maxPhrases]
    const masks = await masksFromLogits(
      last,
      encoded.transforms,
      batch.map((v) => v.count),
    );
    for (const [b, view] of batch.entries()) {
      predicted[view.sample].push(...masks[b]);
      if (numbers[view.sample] < attentionMaps && view.first === 0 && Object.keys(out.attention).length > 0) {
        const maps: Record<string, Float32Array> = {};
        for (const [block, a] of Object.entries(out.attention)) {
          const one = tf.slice(a, [b, 0, 0], [1, -1, view.count]); // [1, HW, count]
          maps[block] = (await one.data()) as Float32Array;
          one.dispose();
        }
        attention[view.sample] = maps;
      }
    }
    tf.dispose([out, encoded.latents, encoded.skips, encoded.phrases, encoded.targets, donors]);
    options.onProgress?.(Math.min(samples.length, batch[batch.length - 1].sample + 1), samples.length);
  }

  return scoreEvaluation({ ...options, maxPhrases }, records, predicted, attention, began);
}

/** The grounded records of an evaluation: every one of the (limited) split, and those of this run (its shard's, when sharded). */
export interface EvaluationRecords {
  readonly split: string;
  /** Every grounded record of the split (the first `limit`). */
  readonly all: readonly PngSample[];
  /** numbers[i]: the position among `all` of `samples[i]` (overlays, attention maps and swap_phrases donors go by it). */
  readonly numbers: readonly number[];
  readonly samples: readonly PngSample[];
  readonly skipped: readonly SkippedRecord[];
  readonly dropped: readonly DroppedRecord[];
}

/** @internal Reads the split and picks the shard's records (all of them unsharded); exported for the tests. */
export async function readEvaluationRecords(options: Pick<BenchmarkEvaluationOptions, 'data' | 'split' | 'limit' | 'shard'>): Promise<EvaluationRecords> {
  const { shard } = options;
  if (shard && !(Number.isInteger(shard.count) && shard.count >= 1 && Number.isInteger(shard.index) && shard.index >= 0 && shard.index < shard.count))
    throw new RangeError(`shard must be {index, count} with integers 0 <= index < count, got ${JSON.stringify(shard)}`);
  const split = options.split ?? 'val2017';
  const { samples: all, skipped, dropped } = await readGroundedSamples(options.data, split, { limit: options.limit });
  const numbers = all.map((_, i) => i).filter((i) => !shard || i % shard.count === shard.index);
  return { split, all, numbers, samples: numbers.map((i) => all[i]), skipped, dropped };
}

/**
 * @internal Scores the predicted masks of `records.samples` (`predicted[i][j]`: phrase j of sample i, at the
 * original size) and writes the outputs: the report, or the shard file when sharded. Exported for the tests.
 */
export function scoreEvaluation(
  options: Pick<BenchmarkEvaluationOptions, 'imageSize' | 'out' | 'overlays' | 'metrics' | 'probe' | 'shard' | 'limit'> & { readonly maxPhrases: number },
  records: EvaluationRecords,
  predicted: readonly (readonly Uint8Array[])[],
  attention: readonly (Record<string, Float32Array> | undefined)[] = [],
  began = performance.now(),
): BenchmarkEvaluationResult {
  const { imageSize, out, shard, maxPhrases } = options;
  const { split, all, numbers, samples, skipped, dropped } = records;
  const overlays = options.overlays ?? 8;
  const evaluator = new PngEvaluator();
  const baseline = new PngEvaluator();
  const predictions: PngPredictionRecord[] = [];
  for (const [i, sample] of samples.entries()) {
    const gt = evaluatedSample(sample, split);
    evaluator.process(gt, predicted[i]);
    baseline.process(
      gt,
      sample.phrases.map(() => new Uint8Array(sample.image.height * sample.image.width).fill(1)),
    );
    predictions.push({
      record_index: sample.index,
      image_id: String(sample.imageId),
      phrases: sample.phrases.map((p, j) => ({
        segment_ids: p.segmentIds.map(String),
        rle: encodeRle(predicted[i][j], sample.image.height, sample.image.width),
      })),
    });
  }
  const metricsOptions = options.metrics ?? { bootstrap: {} };
  const metrics = evaluator.evaluate(metricsOptions);
  const result: BenchmarkEvaluationResult = {
    metrics,
    evaluator,
    summary: summarizeMetrics(metrics),
    baseline: summarizeMetrics(baseline.evaluate(metricsOptions)),
    samples: samples.length,
    phrases: evaluator.phraseCount,
    skipped,
    dropped,
    seconds: (performance.now() - began) / 1000,
  };
  if (!out) return result;
  const droppedNarratives = countDrops(dropped);
  let shardFile: string | undefined;
  if (shard) {
    const file: EvaluationShardFile = {
      format: SHARD_FORMAT,
      version: SHARD_VERSION,
      shard: { index: shard.index, count: shard.count },
      settings: {
        split,
        records: all.length,
        limit: options.limit ?? null,
        probe: options.probe ?? null,
        image_size: imageSize,
        max_phrases: maxPhrases,
        metrics: metricsOptions,
      },
      dropped_narratives: droppedNarratives,
      skipped_records: skipped.length,
      evaluator: evaluator.toJSON(),
      baseline: baseline.toJSON(),
      predictions,
    };
    shardFile = path.join(out, `shard-${shard.index}-of-${shard.count}.json`);
    writeFileAtomic(shardFile, `${JSON.stringify(file)}\n`);
  } else {
    writeEvaluationOutputs(out, {
      metrics,
      split,
      samples: result.samples,
      probe: options.probe,
      droppedNarratives,
      baseline: result.baseline,
      predictions,
    });
  }
  for (const [i, sample] of samples.entries()) {
    if (numbers[i] >= overlays) break;
    const labels = sample.phrases.map((p) => p.text);
    const figure = tileImages(
      [
        {
          image: renderOverlay(
            sample.image,
            sample.phrases.map((p, j) => ({ label: labels[j], mask: p.mask })),
          ),
          title: 'ground truth',
        },
        {
          image: renderOverlay(
            sample.image,
            predicted[i].map((mask, j) => ({ label: labels[j], mask })),
          ),
          title: 'predicted',
        },
      ],
      { columns: 2 },
    );
    writeFileAtomic(
      path.join(out, 'overlays', `${String(numbers[i]).padStart(3, '0')}_image${sample.imageId}.png`),
      encodePng(figure.width, figure.height, figure.data),
    );
  }
  for (const [i, maps] of attention.entries()) {
    if (!maps) continue;
    const sample = samples[i];
    const labels = sample.phrases.slice(0, maxPhrases).map((p) => p.text);
    const image = renderOverlay(sample.image, []);
    const tiles = [{ image, title: 'image' }];
    for (const [block, data] of Object.entries(maps)) {
      const side = Math.round(Math.sqrt(data.length / labels.length)); // the square canvas at this block's resolution
      tiles.push({
        image: renderAttentionMap(data, side, side, labels, { size: Math.max(image.height, image.width), legend: false }),
        title: block.replace(/\.transformer_blocks\.0$/, '').replace('attentions.', 'attn.'),
      });
    }
    const columns = Math.ceil(tiles.length / Math.ceil(tiles.length / 4)); // ≤ 4 per row, rows as full as they can be
    const figure = tileImages(tiles, { columns, legend: labels }); // one legend for every panel
    writeFileAtomic(
      path.join(out, 'attention', `${String(numbers[i]).padStart(3, '0')}_image${sample.imageId}.png`),
      encodePng(figure.width, figure.height, figure.data),
    );
  }
  return { ...result, shardFile };
}

/** The VAE latents of `donors`' images, letterboxed to `size` as the samples are: [B, S/f, S/f, C]. */
function encodeDonors(grounder: PngGrounder, donors: readonly PngSample[], size: number): tf.Tensor4D {
  return tf.tidy(() =>
    grounder.backbone.encodeImages(
      tf.concat(
        donors.map((d) => letterbox(d.image, size).tensor),
        0,
      ) as tf.Tensor4D,
    ),
  );
}

/** The sample with only the phrases of `view` (one forward's worth). */
function viewSample(sample: PngSample, view: View): PngSample {
  const end = view.first + view.count;
  return {
    ...sample,
    narrative: { ...sample.narrative, phrases: sample.narrative.phrases.slice(view.first, end) },
    phrases: sample.phrases.slice(view.first, end),
  };
}

/** The ground truth of a sample as the evaluator takes it. */
function evaluatedSample(sample: PngSample, split: string): EvaluatedSample {
  return {
    label: `${split} record ${sample.index} (image ${sample.imageId})`,
    imageId: sample.imageId,
    height: sample.image.height,
    width: sample.image.width,
    phrases: sample.phrases.map((p, j) => ({ label: `phrase ${j} "${p.text}"`, isThing: p.isThing, isPlural: p.isPlural, tags: p.tags, mask: p.mask })),
  };
}

const SHARD_FORMAT = 'png/evaluation-shard';
const SHARD_VERSION = 1;

/** What `shard-<K>-of-<N>.json` holds (format version 1): everything the report of the unsharded run needs from the shard's records. */
interface EvaluationShardFile {
  format: typeof SHARD_FORMAT;
  version: typeof SHARD_VERSION;
  shard: { index: number; count: number };
  /** What every shard of one evaluation must share; `records` is the number of grounded records of the whole (limited) split. */
  settings: {
    split: string;
    records: number;
    limit: number | null;
    probe: string | null;
    image_size: number;
    max_phrases: number;
    metrics: PngEvaluateOptions;
  };
  dropped_narratives: Record<string, number>;
  skipped_records: number;
  /** png-metrics evaluator states of the shard's records: the model's and the whole-image baseline's. */
  evaluator: PngEvaluatorState;
  baseline: PngEvaluatorState;
  predictions: PngPredictionRecord[];
}

/** report.json, ar_curves.svg and predictions.json of an evaluation. */
function writeEvaluationOutputs(
  out: string,
  parts: {
    metrics: PngMetrics;
    split: string;
    samples: number;
    probe: string | undefined;
    droppedNarratives: Record<string, number>;
    baseline: PngSummary;
    predictions: readonly PngPredictionRecord[];
  },
): void {
  const report = buildReport(parts.metrics);
  const extras = {
    split: parts.split,
    samples: parts.samples,
    ...(parts.probe ? { probe: parts.probe } : {}),
    dropped_narratives: parts.droppedNarratives,
    baseline_full_image: parts.baseline,
  };
  writeFileAtomic(path.join(out, 'report.json'), `${JSON.stringify({ ...report, ...extras }, null, 2)}\n`);
  writeFileAtomic(path.join(out, 'ar_curves.svg'), renderRecallCurvesSvg(report));
  writeFileAtomic(path.join(out, 'predictions.json'), JSON.stringify(parts.predictions));
}

/** What {@link mergeEvaluationShards} gives: the unsharded run's figures. */
export type MergedEvaluation = Pick<BenchmarkEvaluationResult, 'metrics' | 'evaluator' | 'summary' | 'baseline' | 'samples' | 'phrases'> & {
  readonly shards: number;
};

/**
 * Merges the shard files of one sharded evaluation (`shard-<K>-of-<N>.json`, K = 0..N-1, in any
 * order) into the report.json, ar_curves.svg and predictions.json of the unsharded run, byte for byte.
 * @param out output folder; nothing is written without it.
 * @throws naming the file at fault: not valid JSON, not a shard file, another format version,
 *   another shard count or settings than the first file, a shard given twice or missing.
 */
export function mergeEvaluationShards(files: readonly string[], out?: string): MergedEvaluation {
  if (files.length === 0) throw new Error('no shard files to merge; pass the shard-<K>-of-<N>.json files of every shard');
  const shards = files.map((file) => readShardFile(file));
  const [first] = shards;
  const count = first.content.shard.count;
  const byIndex: (typeof first)[] = new Array(count);
  for (const shard of shards) {
    const { file, content } = shard;
    if (content.shard.count !== count)
      throw new Error(`${file}: shard ${content.shard.index} of ${content.shard.count}, but ${first.file} is one of ${count}; merge the shards of one run`);
    for (const key of ['settings', 'dropped_narratives', 'skipped_records'] as const) {
      const [mine, theirs] = [JSON.stringify(content[key]), JSON.stringify(first.content[key])];
      if (mine !== theirs)
        throw new Error(`${file}: ${key} is ${mine}, but ${theirs} in ${first.file}; every shard must evaluate the same data with the same settings`);
    }
    const twin = byIndex[content.shard.index];
    if (twin) throw new Error(`${file}: shard ${content.shard.index} of ${count} is also ${twin.file}; give each shard once`);
    byIndex[content.shard.index] = shard;
  }
  const missing = [...byIndex.keys()].filter((k) => !byIndex[k]);
  if (missing.length > 0)
    throw new Error(
      `shard${missing.length > 1 ? 's' : ''} ${missing.join(', ')} of ${count} missing (got ${files.length} file${files.length > 1 ? 's' : ''}); run them with --shard K/${count} and merge all ${count}`,
    );
  const evaluators = byIndex.map(({ file, content }) => ({
    evaluator: evaluatorOf(content.evaluator, file, 'evaluator'),
    baseline: evaluatorOf(content.baseline, file, 'baseline'),
  }));
  const evaluator = PngEvaluator.fromShards(evaluators.map((e) => e.evaluator));
  const baselineEvaluator = PngEvaluator.fromShards(evaluators.map((e) => e.baseline));
  const predictions = interleaveShards(
    byIndex.map((s) => s.content.predictions),
    'predictions of shard',
  );
  const { settings } = first.content;
  if (predictions.length !== settings.records)
    throw new Error(`${files.length} shards hold ${predictions.length} records, but the split has ${settings.records}; a shard file is incomplete`);
  const metrics = evaluator.evaluate(settings.metrics);
  const merged: MergedEvaluation = {
    metrics,
    evaluator,
    summary: summarizeMetrics(metrics),
    baseline: summarizeMetrics(baselineEvaluator.evaluate(settings.metrics)),
    samples: predictions.length,
    phrases: evaluator.phraseCount,
    shards: count,
  };
  if (out)
    writeEvaluationOutputs(out, {
      metrics,
      split: settings.split,
      samples: merged.samples,
      probe: settings.probe ?? undefined,
      droppedNarratives: first.content.dropped_narratives,
      baseline: merged.baseline,
      predictions,
    });
  return merged;
}

/** Reads a shard file, checking its format, version and shard numbers (the evaluator states are checked when they are rebuilt). */
function readShardFile(file: string): { file: string; content: EvaluationShardFile } {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`${file}: cannot read the shard file (${(e as Error).message})`);
  }
  const content = parseJsonObject(text, file);
  if (content.format !== SHARD_FORMAT)
    throw new Error(`${file}: not a png evaluate shard file (format ${JSON.stringify(content.format)}, expected "${SHARD_FORMAT}")`);
  if (content.version !== SHARD_VERSION)
    throw new Error(
      `${file}: shard file version ${JSON.stringify(content.version)}, this png reads version ${SHARD_VERSION}; evaluate the shard again with this version`,
    );
  const shard = content.shard as { index?: unknown; count?: unknown } | undefined;
  const { index, count } = shard ?? {};
  if (!Number.isInteger(count) || (count as number) < 1 || !Number.isInteger(index) || (index as number) < 0 || (index as number) >= (count as number))
    throw new Error(`${file}: field shard must be {index, count} with 0 <= index < count, got ${JSON.stringify(shard)}`);
  if (typeof content.settings !== 'object' || content.settings === null || !Array.isArray(content.predictions))
    throw new Error(`${file}: fields settings and predictions are missing; the file was cut short or edited, evaluate the shard again`);
  return { file, content: content as unknown as EvaluationShardFile };
}

function evaluatorOf(state: unknown, file: string, field: string): PngEvaluator {
  try {
    return PngEvaluator.fromJSON(state);
  } catch (e) {
    throw new Error(`${file}: field ${field}: ${(e as Error).message}`);
  }
}
