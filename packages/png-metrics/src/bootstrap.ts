/**
 * Bootstrap over images: resample the images (with replacement, seeded), recompute a group's AR
 * on every resample, and take the percentile interval. The AR of a resample uses the exact sum
 * form of the official AR (see {@link recallContribution}): a resample's AR is
 * Σ_images m_u · S_u / Σ_images m_u · N_u, where m_u is how often image u was drawn, S_u the sum of
 * its phrases' contributions and N_u their count, so a resample costs O(images) per group.
 */
import { mulberry32 } from '@png/node-utils';
import { recallContribution } from './average_recall';

/** How to bootstrap. */
export interface BootstrapOptions {
  /** Number of resamples (default 1000). */
  resamples?: number;
  /** Seed of the resampling (default 0); the same seed draws the same resamples. */
  seed?: number;
  /** Coverage of the percentile interval (default 0.95). */
  confidence?: number;
}

/** The bootstrap settings used, with the number of images resampled. */
export interface BootstrapSettings {
  resamples: number;
  seed: number;
  confidence: number;
  /** Resampling units: distinct images (samples without an image id count as their own image). */
  images: number;
}

/** A percentile interval [low, high]. */
export type ConfidenceInterval = readonly [low: number, high: number];

/** The options with their defaults, validated. */
export function bootstrapSettings(options: BootstrapOptions, images: number): BootstrapSettings {
  const { resamples = 1000, seed = 0, confidence = 0.95 } = options;
  if (!Number.isInteger(resamples) || resamples < 1) throw new RangeError(`bootstrap resamples must be an integer ≥ 1, got ${resamples}`);
  if (!Number.isInteger(seed)) throw new RangeError(`bootstrap seed must be an integer, got ${seed}`);
  if (!(confidence > 0 && confidence < 1)) throw new RangeError(`bootstrap confidence must be in (0, 1), e.g. 0.95, got ${confidence}`);
  return { resamples, seed, confidence, images };
}

/**
 * Per group, the totals of every image: `sums[u]` = Σ contributions of the group's phrases in image u
 * (of one prediction set), `counts[u]` = their number.
 */
export interface ImageTotals {
  sums: Float64Array;
  counts: Float64Array;
}

/**
 * Totals per image of the phrases `members` of one group.
 * @param ious per-phrase IoU; `imageOf[k]` the image index of phrase k, in [0, images).
 */
export function imageTotals(members: readonly number[], ious: readonly number[], imageOf: Int32Array, images: number): ImageTotals {
  const sums = new Float64Array(images);
  const counts = new Float64Array(images);
  for (const k of members) {
    sums[imageOf[k]] += recallContribution(ious[k]);
    counts[imageOf[k]] += 1;
  }
  return { sums, counts };
}

/**
 * Draws `settings.resamples` resamples of the images and calls `visit` with the draw counts
 * m_u of each (an Int32Array reused between calls). Deterministic under the seed.
 */
function forEachResample(settings: BootstrapSettings, visit: (draws: Int32Array) => void): void {
  const random = mulberry32(settings.seed);
  const draws = new Int32Array(settings.images);
  for (let r = 0; r < settings.resamples; r++) {
    draws.fill(0);
    for (let d = 0; d < settings.images; d++) draws[Math.floor(random() * settings.images)]++;
    visit(draws);
  }
}

/** Σ_u draws[u] · values[u]. */
function weighted(draws: Int32Array, values: Float64Array): number {
  let total = 0;
  for (let u = 0; u < draws.length; u++) if (draws[u] !== 0) total += draws[u] * values[u];
  return total;
}

/**
 * The percentile interval of every group's AR: one shared set of resamples, the AR of each
 * group recomputed on each. Resamples in which a group has no phrase are left out of its
 * interval; a group empty in every resample gets null.
 */
export function bootstrapIntervals(groups: readonly ImageTotals[], settings: BootstrapSettings): (ConfidenceInterval | null)[] {
  const values = groups.map(() => new Float64Array(settings.resamples));
  let r = 0;
  forEachResample(settings, (draws) => {
    groups.forEach((g, i) => {
      values[i][r] = weighted(draws, g.sums) / weighted(draws, g.counts);
    });
    r++;
  });
  return values.map((v) => percentileInterval(v, settings.confidence));
}

/**
 * The percentile interval of every group's AR difference A − B on the same resamples of the same
 * phrases: `a[i]` and `b[i]` are the totals of group i under the two prediction sets (same counts).
 */
export function pairedBootstrapIntervals(a: readonly ImageTotals[], b: readonly ImageTotals[], settings: BootstrapSettings): (ConfidenceInterval | null)[] {
  const values = a.map(() => new Float64Array(settings.resamples));
  let r = 0;
  forEachResample(settings, (draws) => {
    a.forEach((g, i) => {
      const n = weighted(draws, g.counts);
      values[i][r] = weighted(draws, g.sums) / n - weighted(draws, b[i].sums) / n;
    });
    r++;
  });
  return values.map((v) => percentileInterval(v, settings.confidence));
}

/**
 * The central `confidence` interval of the non-NaN values: the (1 ± confidence)/2 quantiles with
 * linear interpolation between order statistics (numpy's default `percentile`). Null if all are NaN.
 */
export function percentileInterval(values: Float64Array, confidence: number): ConfidenceInterval | null {
  const sorted = values.filter((x) => !Number.isNaN(x)).sort();
  if (sorted.length === 0) return null;
  const quantile = (q: number): number => {
    const h = (sorted.length - 1) * q;
    const below = Math.floor(h);
    const above = Math.min(below + 1, sorted.length - 1);
    return sorted[below] + (h - below) * (sorted[above] - sorted[below]);
  };
  return [quantile((1 - confidence) / 2), quantile((1 + confidence) / 2)];
}
