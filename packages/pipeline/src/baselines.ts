/**
 * Sanity baselines of a PNG benchmark split: rules that learn nothing (or only a text prior),
 * scored with the official Average Recall by png-metrics' evaluator: overall / things / stuff /
 * singulars / plurals, size buckets, and per value of the chunks' tags (`phrase_type` of synthetic
 * grounding scenes).
 *
 * - `whole-image`: every phrase is the whole image.
 * - `colour-lookup`: the pixels within an RGB distance of the colour the phrase names: a stuff noun's
 *   colour ("the grass"), else a colour word's ("two red circles"); a phrase naming neither gets an
 *   empty mask. Colours are those of the synthetic scenes (`SYNTHETIC_PALETTE`).
 * - `text-prior`: the mean ground-truth mask of the phrase's words, learnt on the training split
 *   (in image-relative coordinates on a 32×32 grid), thresholded; no pixel is looked at.
 * - `perfect-mask`: the ground truth as the model would best predict it at a mask stride: put on the
 *   model's canvas (letterbox), area-averaged over stride×stride cells, and brought back exactly
 *   as predictions are (bilinear, threshold 0.5). The resolution ceiling of a model at that stride.
 */
import * as tf from '@tensorflow/tfjs-core';
import {
  PngDataset,
  SYNTHETIC_PALETTE,
  letterboxTransform,
  masksToTarget,
  unletterbox,
  type DroppedRecord,
  type PngSample,
  type SamplePhrase,
  type SkippedRecord,
} from '@png/png-data';
import { PngEvaluator, maskIoU, type PngEvaluateOptions, type PngMetrics } from '@png/png-metrics';

/** The rules, in report order. */
export const BASELINE_RULES = ['whole-image', 'colour-lookup', 'text-prior', 'perfect-mask'] as const;
export type BaselineRule = (typeof BASELINE_RULES)[number];

/** Options of {@link evaluateBaselines}. */
export interface BaselineOptions {
  /** Benchmark folder (spec §1.1). */
  data: string;
  /** Split to score; default 'val2017'. */
  split?: string;
  /** Split the text prior learns from; default 'train2017'. */
  trainSplit?: string;
  /** Default: every rule. */
  rules?: readonly BaselineRule[];
  /** Mask strides of the perfect-mask rule, in canvas pixels; default [4]. */
  strides?: readonly number[];
  /** Canvas side of the perfect-mask rule (a multiple of 8); default: each image's longer side rounded up to a multiple of 8, so a stride is in image pixels. */
  imageSize?: number;
  /** Largest RGB (Euclidean) distance of a pixel to the named colour in colour lookup; default 40. */
  colourDistance?: number;
  /** Score the first N records only. */
  limit?: number;
  /** Groups beyond the five (tag keys, size thresholds); default png-metrics' (`phrase_type`, COCO's bounds). */
  metrics?: Omit<PngEvaluateOptions, 'bootstrap'>;
}

/** The scores of one rule. */
export interface BaselineScore {
  /** The rule, with its stride for the perfect mask: 'colour-lookup', 'perfect-mask@4'. */
  name: string;
  /** Every group's AR (`metrics.byTag.phrase_type` per phrase type). */
  metrics: PngMetrics;
}

export interface BaselineResult {
  split: string;
  samples: number;
  phrases: number;
  scores: BaselineScore[];
  /** Records the loader left out: bad records ('skip' mode) and those the official pre-processing drops. */
  skipped: SkippedRecord[];
  dropped: DroppedRecord[];
}
const DEFAULT_COLOUR_DISTANCE = 40;

/**
 * Scores the rules on `split`.
 * @throws if a stride does not divide the canvas, the text prior has no training phrase, or the loader
 *   throws on a bad record.
 */
export async function evaluateBaselines(options: BaselineOptions): Promise<BaselineResult> {
  const split = options.split ?? 'val2017';
  const rules = options.rules ?? BASELINE_RULES;
  const strides = options.strides ?? [4];
  const predictors: { name: string; predict: (sample: PngSample) => Promise<Uint8Array[]> }[] = [];
  for (const rule of rules) {
    if (rule === 'whole-image') predictors.push({ name: rule, predict: async (s) => s.phrases.map(() => new Uint8Array(pixelCount(s)).fill(1)) });
    if (rule === 'colour-lookup') {
      const distance = options.colourDistance ?? DEFAULT_COLOUR_DISTANCE;
      predictors.push({ name: rule, predict: async (s) => s.phrases.map((p) => colourLookup(s, p.text, distance)) });
    }
    if (rule === 'text-prior') {
      const prior = await TextPrior.learn(options.data, options.trainSplit ?? 'train2017');
      predictors.push({ name: rule, predict: async (s) => s.phrases.map((p) => prior.predict(p.text, s.image.height, s.image.width)) });
    }
    if (rule === 'perfect-mask') {
      for (const stride of strides) predictors.push({ name: `${rule}@${stride}`, predict: (s) => perfectMask(s, stride, options.imageSize) });
    }
  }

  const evaluators = predictors.map(() => new PngEvaluator());
  const dataset = await PngDataset.open(options.data, split, { onBadRecord: 'skip' });
  let samples = 0;
  let phrases = 0;
  for await (const sample of dataset.records()) {
    if (options.limit !== undefined && samples >= options.limit) break;
    samples++;
    if (sample.phrases.length === 0) continue;
    phrases += sample.phrases.length;
    const gt = {
      label: `record ${sample.index} (image ${sample.imageId})`,
      imageId: sample.imageId,
      height: sample.image.height,
      width: sample.image.width,
      phrases: sample.phrases.map((p) => ({
        label: `record ${sample.index}, phrase ${JSON.stringify(p.text)}`,
        isThing: p.isThing,
        isPlural: p.isPlural,
        tags: p.tags,
        mask: p.mask,
      })),
    };
    for (const [r, predictor] of predictors.entries()) evaluators[r].process(gt, await predictor.predict(sample));
  }
  const scores = predictors.map((predictor, r) => ({ name: predictor.name, metrics: evaluators[r].evaluate(options.metrics) }));
  return { split, samples, phrases, scores, skipped: [...dataset.skipped], dropped: [...dataset.dropped] };
}

function pixelCount(sample: PngSample): number {
  return sample.image.height * sample.image.width;
}

/** The words of a phrase, lower-case. */
function words(text: string): string[] {
  return text.toLowerCase().match(/[a-z]+/g) ?? [];
}

/** The colour a phrase names: a stuff noun's, else a colour word's (the first one), else none. */
function namedColour(text: string): readonly number[] | undefined {
  const ws = words(text);
  const stuff = ws.find((w) => Object.hasOwn(SYNTHETIC_PALETTE.stuff, w));
  if (stuff !== undefined) return SYNTHETIC_PALETTE.stuff[stuff];
  const colour = ws.find((w) => Object.hasOwn(SYNTHETIC_PALETTE.colours, w));
  return colour === undefined ? undefined : SYNTHETIC_PALETTE.colours[colour];
}

/** The pixels within `distance` (RGB, Euclidean) of the colour the phrase names; empty if it names none. */
function colourLookup(sample: PngSample, text: string, distance: number): Uint8Array {
  const mask = new Uint8Array(pixelCount(sample));
  const rgb = namedColour(text);
  if (!rgb) return mask;
  const data = sample.image.data;
  const limit = distance * distance;
  for (let k = 0; k < mask.length; k++) {
    const [dr, dg, db] = [data[3 * k] - rgb[0], data[3 * k + 1] - rgb[1], data[3 * k + 2] - rgb[2]];
    if (dr * dr + dg * dg + db * db <= limit) mask[k] = 1;
  }
  return mask;
}

/** The ground-truth masks at a mask stride, brought back to the image as predictions are. */
async function perfectMask(sample: PngSample, stride: number, imageSize: number | undefined): Promise<Uint8Array[]> {
  const { height, width } = sample.image;
  const side = imageSize ?? 8 * Math.ceil(Math.max(height, width) / 8);
  if (!Number.isInteger(stride) || stride < 1 || side % stride !== 0)
    throw new Error(`perfect-mask: stride ${stride} must be a positive integer dividing the canvas side ${side}`);
  const transform = letterboxTransform(height, width, side);
  const low = tf.tidy(() => {
    const canvas = masksToTarget(
      sample.phrases.map((p) => p.mask),
      transform,
    ); // [1, S, S, P]
    return stride === 1 ? canvas : tf.avgPool(canvas, stride, stride, 'valid'); // [1, S / stride, S / stride, P]
  });
  try {
    return await unletterbox(low, transform, { threshold: 0.5 });
  } finally {
    low.dispose();
  }
}

/** Words that say nothing about where a phrase is. */
const STOP_WORDS = new Set(['a', 'an', 'the', 'some', 'of', 'group', 'one', 'two', 'three', 'four', 'five', 'six', 'seven']);
const PRIOR_GRID = 32;
const PRIOR_MIN_COUNT = 5;
const PRIOR_THRESHOLDS = [0.2, 0.3, 0.4, 0.5, 0.6];

/**
 * The text-only predictor: per key, the mean of the training phrases' masks on a G×G grid in
 * image-relative coordinates. A phrase uses the first of its keys with ≥ 5 training phrases: its
 * words without articles and counts ("leftmost blue ring"), the same without colour words
 * ("leftmost ring"), its last word ("ring"), then every phrase. The threshold on the mean mask is
 * the one of {0.2, …, 0.6} with the best mean IoU on the training split.
 */
class TextPrior {
  private constructor(
    private readonly means: Map<string, Float32Array>,
    private readonly threshold: number,
  ) {}

  static async learn(data: string, split: string): Promise<TextPrior> {
    const dataset = await PngDataset.open(data, split, { onBadRecord: 'skip' });
    const grids: { keys: string[]; grid: Uint8Array }[] = [];
    for await (const sample of dataset.records()) {
      for (const phrase of sample.phrases) grids.push({ keys: priorKeys(phrase.text), grid: toGrid(phrase, sample.image.height, sample.image.width) });
    }
    if (grids.length === 0)
      throw new Error(`text-prior: no grounded phrase in the ${split} split of ${data} to learn from; pass a training split with narratives`);
    const sums = new Map<string, { sum: Float32Array; count: number }>();
    for (const { keys, grid } of grids) {
      for (const key of keys) {
        const entry = sums.get(key) ?? { sum: new Float32Array(PRIOR_GRID * PRIOR_GRID), count: 0 };
        for (const [k, v] of grid.entries()) entry.sum[k] += v;
        entry.count++;
        sums.set(key, entry);
      }
    }
    const means = new Map<string, Float32Array>();
    for (const [key, { sum, count }] of sums)
      if (count >= PRIOR_MIN_COUNT || key === 'all')
        means.set(
          key,
          sum.map((v) => v / count),
        );
    let best = { threshold: PRIOR_THRESHOLDS[0], iou: -1 };
    for (const threshold of PRIOR_THRESHOLDS) {
      const prior = new TextPrior(means, threshold);
      let total = 0;
      for (const { keys, grid } of grids) {
        const iou = maskIoU(prior.gridMask(keys), grid);
        total += Number.isNaN(iou) ? 0 : iou;
      }
      if (total / grids.length > best.iou) best = { threshold, iou: total / grids.length };
    }
    return new TextPrior(means, best.threshold);
  }

  private gridMask(keys: readonly string[]): Uint8Array {
    const key = keys.find((k) => this.means.has(k));
    const mean = key === undefined ? undefined : this.means.get(key);
    if (!mean) throw new Error(`TextPrior: no mean grid for any of ${keys.join(', ')}`);
    return Uint8Array.from(mean, (v) => (v > this.threshold ? 1 : 0));
  }

  predict(text: string, height: number, width: number): Uint8Array {
    const grid = this.gridMask(priorKeys(text));
    const mask = new Uint8Array(height * width);
    for (let y = 0; y < height; y++) {
      const gy = Math.floor(((y + 0.5) * PRIOR_GRID) / height);
      for (let x = 0; x < width; x++) mask[y * width + x] = grid[gy * PRIOR_GRID + Math.floor(((x + 0.5) * PRIOR_GRID) / width)];
    }
    return mask;
  }
}

/** The prior's keys of a phrase, most specific first (see {@link TextPrior}). */
function priorKeys(text: string): string[] {
  const content = words(text).filter((w) => !STOP_WORDS.has(w));
  const colourless = content.filter((w) => !Object.hasOwn(SYNTHETIC_PALETTE.colours, w));
  return [`text:${content.join(' ')}`, `colourless:${colourless.join(' ')}`, `head:${content[content.length - 1] ?? ''}`, 'all'];
}

/** A phrase's mask sampled at the centres of a G×G grid over the image. */
function toGrid(phrase: SamplePhrase, height: number, width: number): Uint8Array {
  const grid = new Uint8Array(PRIOR_GRID * PRIOR_GRID);
  for (let gy = 0; gy < PRIOR_GRID; gy++) {
    const y = Math.floor(((gy + 0.5) * height) / PRIOR_GRID);
    for (let gx = 0; gx < PRIOR_GRID; gx++) grid[gy * PRIOR_GRID + gx] = phrase.mask[y * width + Math.floor(((gx + 0.5) * width) / PRIOR_GRID)];
  }
  return grid;
}
