import { averageRecall, summarizeRecall, type RecallSummary } from './average_recall';
import {
  bootstrapIntervals,
  bootstrapSettings,
  imageTotals,
  pairedBootstrapIntervals,
  type BootstrapOptions,
  type BootstrapSettings,
  type ConfidenceInterval,
} from './bootstrap';
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
  /**
   * String tags, e.g. `{phrase_type: 'binding'}` (the png_coco chunk's extra string keys); the
   * keys named in {@link PngEvaluateOptions.groupBy} group phrases by value.
   */
  tags?: Readonly<Record<string, string>>;
  /** Ground-truth mask, row-major, `height × width` of the sample. */
  mask: Mask;
}

/** One narrative (or any group of phrases on one image) at the original image size. */
export interface PngSample {
  /** Who the sample is, for error messages, e.g. `record 3 (image 397133)`. */
  label: string;
  /**
   * The image the sample is about. The bootstrap resamples images, so the narratives of one image
   * are drawn together; a sample without an id is an image of its own.
   */
  imageId?: number;
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

/** Size buckets of the GT mask area, in report order. */
export const SIZE_BUCKETS = ['small', 'medium', 'large'] as const;
/** small: area < thresholds[0]; medium: area < thresholds[1]; large: the rest. */
export type SizeBucket = (typeof SIZE_BUCKETS)[number];
/** COCO's area bounds in pixels: small < 32², medium < 96², large otherwise. */
export const COCO_SIZE_THRESHOLDS: readonly [number, number] = [32 ** 2, 96 ** 2];

/** The tag key grouped by when {@link PngEvaluateOptions.groupBy} is not given. */
export const DEFAULT_GROUP_BY: readonly string[] = ['phrase_type'];

/**
 * The size bucket of a GT mask area (pixels at the original image size; Σ values for a soft mask).
 * @param thresholds [small, medium] upper bounds (exclusive), default COCO's.
 */
export function sizeBucket(area: number, thresholds: readonly [number, number] = COCO_SIZE_THRESHOLDS): SizeBucket {
  return area < thresholds[0] ? 'small' : area < thresholds[1] ? 'medium' : 'large';
}

/**
 * Size thresholds written as `SMALL,MEDIUM` (areas in pixels, e.g. `1024,9216`), as the command lines take them.
 * @throws naming the text and the expected form.
 */
export function parseSizeThresholds(text: string): [number, number] {
  const parts = text.split(',').map((part) => (part.trim() === '' ? NaN : Number(part)));
  if (parts.length !== 2 || !validThresholds(parts[0], parts[1])) {
    throw new RangeError(`size thresholds are two areas in pixels, SMALL,MEDIUM with 0 < SMALL <= MEDIUM (e.g. 1024,9216), got "${text}"`);
  }
  return [parts[0], parts[1]];
}

function validThresholds(small: number, medium: number): boolean {
  return Number.isFinite(small) && Number.isFinite(medium) && small > 0 && small <= medium;
}

/** Values of every group: the five phrase groups, the size buckets and the tag groups. */
export type GroupedValues<T> = Record<PhraseGroup, T> & {
  /** By GT mask area. */
  bySize: Record<SizeBucket, T>;
  /** Per tag key of `groupBy` that some phrase carries, per value (sorted); absent keys are left out. */
  byTag: Record<string, Record<string, T>>;
};

/** The official AR, count, acc@0.5 and recall curve of a group, and its bootstrap interval when one was asked for. */
export interface GroupMetrics extends RecallSummary {
  /** Bootstrap percentile interval of the AR over images; null when every resample missed the group. */
  interval?: ConfidenceInterval | null;
}

/** What {@link PngEvaluator.evaluate} gives: every group's metrics, and the settings used. */
export type PngMetrics = GroupedValues<GroupMetrics> & {
  sizeThresholds: readonly [number, number];
  /** Present when the evaluation bootstrapped intervals. */
  bootstrap?: BootstrapSettings;
};

/** Which extra groups to report and whether to bootstrap. */
export interface PngEvaluateOptions {
  /** Tag keys whose values define groups (default `['phrase_type']`); a key no phrase carries adds nothing. */
  groupBy?: readonly string[];
  /**
   * [small, medium] upper bounds (exclusive) of the GT mask area in pixels at the original image size;
   * default {@link COCO_SIZE_THRESHOLDS} (32², 96²). Small images call for smaller bounds.
   */
  sizeThresholds?: readonly [number, number];
  /** Bootstrap intervals of every group's AR over images; none without it. */
  bootstrap?: BootstrapOptions;
}

/** The AR difference of two prediction sets on one group. */
export interface PairedDifference {
  /** Official AR of A minus official AR of B (NaN for an empty group). */
  difference: number;
  /** Bootstrap percentile interval of the difference over images; null when every resample missed the group. */
  interval: ConfidenceInterval | null;
  count: number;
}

/** What {@link PngEvaluator.pairedBootstrap} gives. */
export type PngPairedDifferences = GroupedValues<PairedDifference> & {
  sizeThresholds: readonly [number, number];
  bootstrap: BootstrapSettings;
};

/** One scored phrase, as {@link PngEvaluator.phraseScores} lists it. */
export interface PngPhraseScore {
  /** Index of the sample among the processed ones (a merged evaluator's samples follow). */
  sample: number;
  sampleLabel: string;
  imageId: number | undefined;
  /** Index of the phrase in its sample. */
  phrase: number;
  /** Float32 IoU; NaN when prediction and GT are both empty. */
  iou: number;
  isThing: boolean;
  isPlural: boolean;
  /** GT mask area in pixels at the original size (Σ values for a soft mask). */
  area: number;
  tags: Readonly<Record<string, string>>;
}

/**
 * Serializable evaluator state: per phrase the float32 IoU (null for NaN), group flags (1 = thing,
 * 2 = plural), GT area and tags (per key, one value or null per phrase); per sample its label,
 * image id and number of phrases (phrases are stored sample after sample).
 */
export interface PngEvaluatorState {
  format: typeof STATE_FORMAT;
  version: 2;
  ious: (number | null)[];
  flags: number[];
  areas: number[];
  tags: Record<string, (string | null)[]>;
  samples: { label: string; image_id: number | null; phrases: number }[];
}

const STATE_FORMAT = 'png-metrics/evaluator-state';
const THING = 1;
const PLURAL = 2;
const NO_TAGS: Readonly<Record<string, string>> = Object.freeze({});

const GROUP_RULES: Record<PhraseGroup, (flags: number) => boolean> = {
  overall: () => true,
  things: (f) => (f & THING) !== 0,
  stuff: (f) => (f & THING) === 0,
  singulars: (f) => (f & PLURAL) === 0,
  plurals: (f) => (f & PLURAL) !== 0,
};

interface SampleEntry {
  label: string;
  imageId: number | undefined;
  phrases: number;
}

/** Where a group's values go in {@link GroupedValues}. */
type GroupPlace = { kind: 'phrase'; group: PhraseGroup } | { kind: 'size'; bucket: SizeBucket } | { kind: 'tag'; key: string; value: string };

/** A group and its phrases (indices into the evaluator's lists). */
interface GroupDefinition {
  place: GroupPlace;
  members: number[];
}

/**
 * Accumulates per-phrase IoUs and computes the official PNG metrics. The state is the list of
 * float32 IoUs with group flags, GT areas, tags and the samples they came from, so shards evaluated
 * anywhere can be merged by concatenation ({@link PngEvaluator.merge}, {@link PngEvaluator.toJSON} /
 * {@link PngEvaluator.fromJSON}) and give the same bits as one pass: AR depends only on the multiset
 * of IoUs. Bootstrap intervals resample the images in ascending id, so they do not depend on the order
 * either when every sample has an image id (up to the last bits of the per-image sums).
 */
export class PngEvaluator {
  private ious: number[] = [];
  private flags: number[] = [];
  private areas: number[] = [];
  private tags: Readonly<Record<string, string>>[] = [];
  private samples: SampleEntry[] = [];

  /** Number of phrases processed so far. */
  get phraseCount(): number {
    return this.ious.length;
  }

  /** Forgets every processed phrase. */
  reset(): void {
    this.ious = [];
    this.flags = [];
    this.areas = [];
    this.tags = [];
    this.samples = [];
  }

  /**
   * Scores one sample: `prediction[k]` is the mask predicted for `sample.phrases[k]`.
   * @throws naming the phrase if a prediction or GT mask does not have the sample's size, or
   *   naming the sample if the number of predictions differs from the number of phrases.
   */
  process(sample: PngSample, prediction: readonly PredictedMask[]): void {
    if (prediction.length !== sample.phrases.length) {
      throw new Error(
        `${sample.label}: got ${prediction.length} predicted masks for ${sample.phrases.length} phrases; give one mask per phrase, in phrase order`,
      );
    }
    const pixels = sample.height * sample.width;
    const scored = sample.phrases.map((phrase, k) => {
      if (phrase.mask.length !== pixels) {
        throw new Error(`${phrase.label}: ground-truth mask has ${phrase.mask.length} pixels, expected ${sample.height}×${sample.width} = ${pixels}`);
      }
      return {
        iou: maskIoU(predictionAsMask(prediction[k], phrase.label, sample.height, sample.width), phrase.mask),
        flags: (phrase.isThing ? THING : 0) | (phrase.isPlural ? PLURAL : 0),
        area: maskArea(phrase.mask),
        tags: phrase.tags ?? NO_TAGS,
      };
    });
    // Append only after every phrase passed, so a failing sample leaves the state unchanged.
    this.appendSample({ label: sample.label, imageId: sample.imageId, phrases: scored.length }, scored);
  }

  /** Appends the samples of another evaluator (a shard). Returns `this`. */
  merge(other: PngEvaluator): this {
    const samples = [...other.samples]; // fixed first: merging an evaluator into itself doubles it
    const n = other.ious.length;
    const phrases = Array.from({ length: n }, (_, k) => ({ iou: other.ious[k], flags: other.flags[k], area: other.areas[k], tags: other.tags[k] }));
    this.samples.push(...samples);
    for (const p of phrases) this.appendPhrase(p);
    return this;
  }

  /**
   * The evaluator of one pass over samples dealt round robin to `shards.length` evaluators:
   * `shards[k]` processed samples k, k + N, k + 2N, … of the pass (N = `shards.length`). Unlike
   * {@link merge}, which appends, this restores the pass's sample order, so the per-image sums of the
   * bootstrap add in the same order too: every figure, intervals included, has the bits of the one pass.
   * @throws naming the shard whose sample count does not fit such a deal (a shard missing, repeated or from another pass).
   */
  static fromShards(shards: readonly PngEvaluator[]): PngEvaluator {
    const perShard = shards.map((shard) => {
      let first = 0;
      return shard.samples.map((sample) => {
        const phrases = Array.from({ length: sample.phrases }, (_, j) => {
          const k = first + j;
          return { iou: shard.ious[k], flags: shard.flags[k], area: shard.areas[k], tags: shard.tags[k] };
        });
        first += sample.phrases;
        return { sample, phrases };
      });
    });
    const evaluator = new PngEvaluator();
    for (const { sample, phrases } of interleaveShards(perShard, 'evaluator shard')) evaluator.appendSample(sample, phrases);
    return evaluator;
  }

  private appendSample(sample: SampleEntry, phrases: readonly { iou: number; flags: number; area: number; tags: Readonly<Record<string, string>> }[]): void {
    this.samples.push(sample);
    for (const p of phrases) this.appendPhrase(p);
  }

  private appendPhrase(p: { iou: number; flags: number; area: number; tags: Readonly<Record<string, string>> }): void {
    this.ious.push(p.iou);
    this.flags.push(p.flags);
    this.areas.push(p.area);
    this.tags.push(p.tags);
  }

  /** Every scored phrase with its sample, IoU, groups, GT area and tags, in processing order. */
  phraseScores(): PngPhraseScore[] {
    const scores: PngPhraseScore[] = [];
    let k = 0;
    this.samples.forEach((sample, s) => {
      for (let phrase = 0; phrase < sample.phrases; phrase++, k++) {
        const f = this.flags[k];
        scores.push({
          sample: s,
          sampleLabel: sample.label,
          imageId: sample.imageId,
          phrase,
          iou: this.ious[k],
          isThing: (f & THING) !== 0,
          isPlural: (f & PLURAL) !== 0,
          area: this.areas[k],
          tags: this.tags[k],
        });
      }
    });
    return scores;
  }

  /** The state as plain JSON (NaN IoUs as null); float32 values survive `JSON.stringify` exactly. */
  toJSON(): PngEvaluatorState {
    const keys = [...new Set(this.tags.flatMap((t) => Object.keys(t)))].sort();
    return {
      format: STATE_FORMAT,
      version: 2,
      ious: this.ious.map((x) => (Number.isNaN(x) ? null : x)),
      flags: [...this.flags],
      areas: [...this.areas],
      tags: Object.fromEntries(keys.map((key) => [key, this.tags.map((t) => (Object.hasOwn(t, key) ? t[key] : null))])),
      samples: this.samples.map((s) => ({ label: s.label, image_id: s.imageId ?? null, phrases: s.phrases })),
    };
  }

  /** Rebuilds an evaluator from {@link PngEvaluator.toJSON} output (e.g. a shard from another process). */
  static fromJSON(state: unknown): PngEvaluator {
    const where = 'evaluator state';
    if (!isRecord(state)) throw fieldError(where, '(root)', 'an object from PngEvaluator.toJSON()', state);
    if (state.format !== STATE_FORMAT) throw fieldError(where, 'format', JSON.stringify(STATE_FORMAT), state.format);
    if (state.version !== 2)
      throw fieldError(where, 'version', '2 (a state written by this version of png-metrics; evaluate older shards again)', state.version);
    const { ious, flags, areas, tags, samples } = state;
    if (!Array.isArray(ious)) throw fieldError(where, 'ious', 'an array', ious);
    const n = ious.length;
    if (!Array.isArray(flags) || flags.length !== n) throw fieldError(where, 'flags', `an array of ${n} entries, one per IoU`, flags);
    if (!Array.isArray(areas) || areas.length !== n) throw fieldError(where, 'areas', `an array of ${n} entries, one per IoU`, areas);
    if (!isRecord(tags)) throw fieldError(where, 'tags', 'an object {key: one value or null per IoU}', tags);
    if (!Array.isArray(samples)) throw fieldError(where, 'samples', 'an array of {label, image_id, phrases}', samples);
    ious.forEach((x, k) => {
      if (x !== null && (typeof x !== 'number' || Math.fround(x) !== x)) throw fieldError(where, `ious[${k}]`, 'a float32 value or null', x);
      const f = flags[k];
      if (!Number.isInteger(f) || f < 0 || f > (THING | PLURAL)) throw fieldError(where, `flags[${k}]`, 'an integer 0..3', f);
      const a = areas[k];
      if (typeof a !== 'number' || !(a >= 0) || !Number.isFinite(a)) throw fieldError(where, `areas[${k}]`, 'a finite number ≥ 0', a);
    });
    for (const [key, values] of Object.entries(tags)) {
      if (!Array.isArray(values) || values.length !== n) throw fieldError(where, `tags.${key}`, `an array of ${n} entries, one per IoU`, values);
      const bad = values.findIndex((v) => v !== null && typeof v !== 'string');
      if (bad >= 0) throw fieldError(where, `tags.${key}[${bad}]`, 'a string or null', values[bad]);
    }
    let total = 0;
    const entries = samples.map((s, i): SampleEntry => {
      if (!isRecord(s) || typeof s.label !== 'string') throw fieldError(where, `samples[${i}].label`, 'a string', isRecord(s) ? s.label : s);
      if (s.image_id !== null && !Number.isInteger(s.image_id)) throw fieldError(where, `samples[${i}].image_id`, 'an integer or null', s.image_id);
      if (!Number.isInteger(s.phrases) || (s.phrases as number) < 0) throw fieldError(where, `samples[${i}].phrases`, 'a non-negative integer', s.phrases);
      total += s.phrases as number;
      return { label: s.label, imageId: s.image_id === null ? undefined : (s.image_id as number), phrases: s.phrases as number };
    });
    if (total !== n) throw fieldError(where, 'samples', `phrase counts summing to ${n}, the number of IoUs`, total);
    const evaluator = new PngEvaluator();
    const tagColumns = Object.entries(tags as Record<string, (string | null)[]>);
    evaluator.samples = entries;
    ious.forEach((x, k) => {
      const phraseTags: Record<string, string> = {};
      for (const [key, values] of tagColumns) {
        const value = values[k];
        if (value !== null) phraseTags[key] = value;
      }
      evaluator.appendPhrase({
        iou: x === null ? NaN : (x as number),
        flags: flags[k] as number,
        area: areas[k] as number,
        tags: tagColumns.length ? phraseTags : NO_TAGS,
      });
    });
    return evaluator;
  }

  /**
   * AR, count, acc@0.5 and the full recall curve of every group (NaN for empty groups): the five
   * phrase groups, the size buckets and, per `groupBy` key, its values; with `bootstrap`, each
   * group's percentile interval over images.
   */
  evaluate(options: PngEvaluateOptions = {}): PngMetrics {
    const sizeThresholds = checkedThresholds(options.sizeThresholds);
    const groups = this.groupDefinitions(options.groupBy ?? DEFAULT_GROUP_BY, sizeThresholds);
    const summaries: GroupMetrics[] = groups.map((g) => summarizeRecall(g.members.map((k) => this.ious[k])));
    let bootstrap: BootstrapSettings | undefined;
    if (options.bootstrap) {
      const { imageOf, images } = this.imageIndex();
      bootstrap = bootstrapSettings(options.bootstrap, images);
      const intervals = bootstrapIntervals(
        groups.map((g) => imageTotals(g.members, this.ious, imageOf, images)),
        bootstrap,
      );
      for (const [i, s] of summaries.entries()) s.interval = intervals[i];
    }
    return { ...groupedValues(groups, summaries), sizeThresholds, ...(bootstrap ? { bootstrap } : {}) };
  }

  /** The groups in report order: phrase groups, size buckets, then tag keys and their sorted values. */
  private groupDefinitions(groupBy: readonly string[], sizeThresholds: readonly [number, number]): GroupDefinition[] {
    const all = this.ious.map((_, k) => k);
    const groups: GroupDefinition[] = PHRASE_GROUPS.map((group) => ({
      place: { kind: 'phrase', group },
      members: all.filter((k) => GROUP_RULES[group](this.flags[k])),
    }));
    for (const bucket of SIZE_BUCKETS)
      groups.push({ place: { kind: 'size', bucket }, members: all.filter((k) => sizeBucket(this.areas[k], sizeThresholds) === bucket) });
    for (const key of new Set(groupBy)) {
      const byValue = new Map<string, number[]>();
      all.forEach((k) => {
        if (!Object.hasOwn(this.tags[k], key)) return;
        const value = this.tags[k][key];
        const members = byValue.get(value);
        if (members) members.push(k);
        else byValue.set(value, [k]);
      });
      for (const [value, members] of [...byValue].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))
        groups.push({ place: { kind: 'tag', key, value }, members });
    }
    return groups;
  }

  /**
   * The image index of every phrase: the images with phrases, in ascending image id (so the
   * resamples do not depend on the processing order), then each sample without an id as an image of its own.
   */
  private imageIndex(): { imageOf: Int32Array; images: number } {
    const ids = [...new Set(this.samples.flatMap((s) => (s.imageId !== undefined && s.phrases > 0 ? [s.imageId] : [])))].sort((x, y) => x - y);
    const byId = new Map(ids.map((id, i) => [id, i]));
    const imageOf = new Int32Array(this.ious.length);
    let images = ids.length;
    let k = 0;
    for (const sample of this.samples) {
      if (sample.phrases === 0) continue;
      const image = sample.imageId === undefined ? images++ : byId.get(sample.imageId);
      if (image === undefined) throw new Error(`PngEvaluator: image id ${sample.imageId} was not indexed`); // every id with phrases is in byId
      imageOf.fill(image, k, k + sample.phrases);
      k += sample.phrases;
    }
    return { imageOf, images };
  }

  /**
   * AR differences A − B of two prediction sets on the same ground truth, per group, with paired
   * bootstrap intervals: the same image resamples for both (default 1000 resamples, seed 0, 95 %).
   * The differences are those of the official ARs. Both evaluators must hold the same samples and
   * phrases in the same order (e.g. both filled by `evaluatePredictions` on one ground truth).
   * @throws if B's phrases, groups, areas or images differ from A's.
   */
  static pairedBootstrap(a: PngEvaluator, b: PngEvaluator, options: PngEvaluateOptions = {}): PngPairedDifferences {
    const same =
      a.ious.length === b.ious.length &&
      a.samples.length === b.samples.length &&
      a.samples.every((s, i) => s.imageId === b.samples[i].imageId && s.phrases === b.samples[i].phrases) &&
      a.flags.every((f, k) => f === b.flags[k] && a.areas[k] === b.areas[k] && sameTags(a.tags[k], b.tags[k]));
    if (!same) {
      throw new Error(
        `pairedBootstrap: the two evaluators hold different phrases (${a.ious.length} vs ${b.ious.length} phrases in ${a.samples.length} vs ${b.samples.length} samples, or different groups, areas or images); evaluate both prediction sets on the same ground truth, in the same order`,
      );
    }
    const sizeThresholds = checkedThresholds(options.sizeThresholds);
    const groups = a.groupDefinitions(options.groupBy ?? DEFAULT_GROUP_BY, sizeThresholds);
    const { imageOf, images } = a.imageIndex();
    const bootstrap = bootstrapSettings(options.bootstrap ?? {}, images);
    const intervals = pairedBootstrapIntervals(
      groups.map((g) => imageTotals(g.members, a.ious, imageOf, images)),
      groups.map((g) => imageTotals(g.members, b.ious, imageOf, images)),
      bootstrap,
    );
    const differences = groups.map((g, i): PairedDifference => {
      const difference = averageRecall(g.members.map((k) => a.ious[k])) - averageRecall(g.members.map((k) => b.ious[k]));
      return { difference, interval: intervals[i], count: g.members.length };
    });
    return { ...groupedValues(groups, differences), sizeThresholds, bootstrap };
  }
}

/**
 * Undoes a round-robin deal: `shards[k]` holds items k, k + N, k + 2N, … of a list (N = `shards.length`);
 * returns the list.
 * @throws naming the shard (`<what> k of N`) whose length does not fit such a deal of all the items.
 */
export function interleaveShards<T>(shards: readonly (readonly T[])[], what = 'shard'): T[] {
  const count = shards.length;
  const total = shards.reduce((sum, shard) => sum + shard.length, 0);
  shards.forEach((shard, k) => {
    const expected = Math.max(0, Math.ceil((total - k) / count));
    if (shard.length !== expected)
      throw new Error(
        `${what} ${k} of ${count} holds ${shard.length} items, but a round-robin deal of ${total} items gives it ${expected}: a shard is missing, repeated or from another run`,
      );
  });
  return Array.from({ length: total }, (_, i) => shards[i % count][Math.floor(i / count)]);
}

function sameTags(x: Readonly<Record<string, string>>, y: Readonly<Record<string, string>>): boolean {
  const keys = Object.keys(x);
  return keys.length === Object.keys(y).length && keys.every((key) => x[key] === y[key]);
}

function checkedThresholds(thresholds: readonly [number, number] = COCO_SIZE_THRESHOLDS): readonly [number, number] {
  const [small, medium] = thresholds;
  if (!validThresholds(small, medium)) {
    throw new RangeError(`sizeThresholds must be two areas 0 < small ≤ medium (pixels), got ${JSON.stringify(thresholds)}`);
  }
  return [small, medium];
}

/** The values of `groups` (in the same order) placed into a {@link GroupedValues}. */
function groupedValues<T>(groups: readonly GroupDefinition[], values: readonly T[]): GroupedValues<T> {
  const grouped = { bySize: {}, byTag: {} } as GroupedValues<T>;
  groups.forEach(({ place }, i) => {
    if (place.kind === 'phrase') grouped[place.group] = values[i];
    else if (place.kind === 'size') grouped.bySize[place.bucket] = values[i];
    else {
      const byValue = grouped.byTag[place.key] ?? {};
      byValue[place.value] = values[i];
      grouped.byTag[place.key] = byValue;
    }
  });
  return grouped;
}

/** GT area: foreground pixels of a binary mask, Σ values of a soft one. */
function maskArea(mask: Mask): number {
  let area = 0;
  if (mask instanceof Uint8Array) {
    for (let k = 0; k < mask.length; k++) if (mask[k] !== 0) area++;
  } else {
    for (let k = 0; k < mask.length; k++) area += mask[k];
  }
  return area;
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
