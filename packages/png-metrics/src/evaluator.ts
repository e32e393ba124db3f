import { summarizeRecall, type RecallSummary } from './average_recall';
import { maskIoU, type Mask } from './iou';
import { fieldError, isRecord } from './json_input';
import { decodeRle, type CocoRle } from './rle';

/** One ground-truth phrase to evaluate. */
export interface PngPhrase {
  /** Who the phrase is, for error messages, e.g. `record 3 (image 397133), phrase 1 "two dogs"`. */
  label: string;
  /** The category of the phrase's last segment is a thing (otherwise the phrase counts as stuff). */
  isThing: boolean;
  /** Two or more GT segments. */
  isPlural: boolean;
  /** Ground-truth mask, row-major, `height × width` of the sample. */
  mask: Mask;
}

/** One narrative (or any group of phrases on one image) at the original image size. */
export interface PngSample {
  /** Who the sample is, for error messages, e.g. `record 3 (image 397133)`. */
  label: string;
  height: number;
  width: number;
  phrases: readonly PngPhrase[];
}

/**
 * A predicted mask at the original image size: binary (`Uint8Array`, row-major), soft
 * (`Float32Array`, row-major) or COCO RLE (column-major runs, either `counts` form).
 */
export type PredictedMask = Mask | CocoRle;

/** The five phrase groups, in report order. */
export const PHRASE_GROUPS = ['overall', 'things', 'stuff', 'singulars', 'plurals'] as const;
/** A phrase group: overall = all; things / stuff by the last segment's category; singulars / plurals by segment count. */
export type PhraseGroup = (typeof PHRASE_GROUPS)[number];
/** AR, count, acc@0.5 and recall curve of every group. Empty groups have NaN values. */
export type PngMetrics = Record<PhraseGroup, RecallSummary>;

/** Serializable evaluator state: per-phrase float32 IoUs (null for NaN) and group flags (1 = thing, 2 = plural). */
export interface PngEvaluatorState {
  format: typeof STATE_FORMAT;
  version: 1;
  ious: (number | null)[];
  flags: number[];
}

const STATE_FORMAT = 'png-metrics/evaluator-state';
const THING = 1;
const PLURAL = 2;

const GROUP_RULES: Record<PhraseGroup, (flags: number) => boolean> = {
  overall: () => true,
  things: (f) => (f & THING) !== 0,
  stuff: (f) => (f & THING) === 0,
  singulars: (f) => (f & PLURAL) === 0,
  plurals: (f) => (f & PLURAL) !== 0,
};

/**
 * Accumulates per-phrase IoUs and computes the official PNG metrics. The state is the list of
 * float32 IoUs with group flags, so shards evaluated anywhere can be merged by concatenation
 * ({@link PngEvaluator.merge}, {@link PngEvaluator.toJSON} / {@link PngEvaluator.fromJSON}) and give
 * the same bits as one pass: AR depends only on the multiset of IoUs.
 */
export class PngEvaluator {
  private ious: number[] = [];
  private flags: number[] = [];

  /** Number of phrases processed so far. */
  get phraseCount(): number {
    return this.ious.length;
  }

  /** Forgets every processed phrase. */
  reset(): void {
    this.ious = [];
    this.flags = [];
  }

  /**
   * Scores one sample: `prediction[k]` is the mask predicted for `sample.phrases[k]`.
   * @throws naming the phrase if a prediction or GT mask does not have the sample's size, or
   *   naming the sample if the number of predictions differs from the number of phrases.
   */
  process(sample: PngSample, prediction: readonly PredictedMask[]): void {
    if (prediction.length !== sample.phrases.length) {
      throw new Error(`${sample.label}: got ${prediction.length} predicted masks for ${sample.phrases.length} phrases; give one mask per phrase, in phrase order`);
    }
    const pixels = sample.height * sample.width;
    const ious: number[] = [];
    const flags: number[] = [];
    sample.phrases.forEach((phrase, k) => {
      if (phrase.mask.length !== pixels) {
        throw new Error(`${phrase.label}: ground-truth mask has ${phrase.mask.length} pixels, expected ${sample.height}×${sample.width} = ${pixels}`);
      }
      ious.push(maskIoU(predictionAsMask(prediction[k], phrase.label, sample.height, sample.width), phrase.mask));
      flags.push((phrase.isThing ? THING : 0) | (phrase.isPlural ? PLURAL : 0));
    });
    // Append only after every phrase passed, so a failing sample leaves the state unchanged.
    this.append(ious, flags);
  }

  /** Appends the phrases of another evaluator (a shard). Order does not matter. Returns `this`. */
  merge(other: PngEvaluator): this {
    this.append(other.ious, other.flags);
    return this;
  }

  private append(ious: readonly number[], flags: readonly number[]): void {
    const n = ious.length; // fixed first: merging an evaluator into itself doubles it
    for (let k = 0; k < n; k++) {
      this.ious.push(ious[k]);
      this.flags.push(flags[k]);
    }
  }

  /** The state as plain JSON (NaN IoUs as null); float32 values survive `JSON.stringify` exactly. */
  toJSON(): PngEvaluatorState {
    return { format: STATE_FORMAT, version: 1, ious: this.ious.map((x) => (Number.isNaN(x) ? null : x)), flags: [...this.flags] };
  }

  /** Rebuilds an evaluator from {@link PngEvaluator.toJSON} output (e.g. a shard from another process). */
  static fromJSON(state: unknown): PngEvaluator {
    const where = 'evaluator state';
    if (!isRecord(state)) throw fieldError(where, '(root)', 'an object from PngEvaluator.toJSON()', state);
    if (state.format !== STATE_FORMAT) throw fieldError(where, 'format', JSON.stringify(STATE_FORMAT), state.format);
    if (state.version !== 1) throw fieldError(where, 'version', '1', state.version);
    const { ious, flags } = state;
    if (!Array.isArray(ious)) throw fieldError(where, 'ious', 'an array', ious);
    if (!Array.isArray(flags) || flags.length !== ious.length) throw fieldError(where, 'flags', `an array of ${ious.length} entries, one per IoU`, flags);
    const evaluator = new PngEvaluator();
    ious.forEach((x, k) => {
      if (x !== null && (typeof x !== 'number' || Math.fround(x) !== x)) throw fieldError(where, `ious[${k}]`, 'a float32 value or null', x);
      const f = flags[k];
      if (!Number.isInteger(f) || f < 0 || f > (THING | PLURAL)) throw fieldError(where, `flags[${k}]`, 'an integer 0..3', f);
    });
    evaluator.append(
      ious.map((x) => (x === null ? NaN : x)),
      flags,
    );
    return evaluator;
  }

  /** AR, count, acc@0.5 and the full recall curve of every group (NaN for empty groups). */
  evaluate(): PngMetrics {
    const metrics = {} as PngMetrics;
    for (const group of PHRASE_GROUPS) {
      const rule = GROUP_RULES[group];
      metrics[group] = summarizeRecall(this.ious.filter((_, k) => rule(this.flags[k])));
    }
    return metrics;
  }
}

function predictionAsMask(prediction: PredictedMask, label: string, height: number, width: number): Mask {
  if (prediction instanceof Uint8Array || prediction instanceof Float32Array) {
    if (prediction.length !== height * width) {
      throw new Error(`${label}: predicted mask has ${prediction.length} pixels, expected the original image size ${height}×${width} = ${height * width}`);
    }
    return prediction;
  }
  const size = prediction?.size;
  if (!Array.isArray(size) || size[0] !== height || size[1] !== width) {
    throw new Error(`${label}: predicted RLE has size ${JSON.stringify(size)}, expected the original image size [${height}, ${width}]`);
  }
  try {
    return decodeRle(prediction);
  } catch (e) {
    throw new Error(`${label}: ${(e as Error).message}`);
  }
}
