/**
 * Recall-vs-IoU curve and Average Recall (AR) exactly as the official PNG `average_accuracy`
 * (spec §2.4): thresholds t_i = i × 1e-5 (double multiplication), i = 0 … 99 999; recall
 * r_i = #{IoU ≥ t_i} / n with NaNs counted in n but never above a threshold; AR is the left
 * Riemann sum Σ_{i=0}^{N−2} (t_{i+1} − t_i) · r_i, accumulated left to right in float64.
 */

/** Number of thresholds in the official grid `numpy.arange(0, 1, 0.00001)`. */
export const RECALL_GRID_SIZE = 100_000;

const THRESHOLDS = Float64Array.from({ length: RECALL_GRID_SIZE }, (_, i) => i * 1e-5);
/** STEPS[i] = t_{i+1} − t_i, exactly as the official code computes each interval (20 distinct values, never a constant 1e-5). */
const STEPS = Float64Array.from({ length: RECALL_GRID_SIZE - 1 }, (_, i) => THRESHOLDS[i + 1] - THRESHOLDS[i]);

/** The official threshold t_i = i × 1e-5 (a double product, not i / 1e5), for 0 ≤ i < RECALL_GRID_SIZE. */
export function recallThreshold(i: number): number {
  if (!Number.isInteger(i) || i < 0 || i >= RECALL_GRID_SIZE) {
    throw new RangeError(`recallThreshold: index must be an integer in [0, ${RECALL_GRID_SIZE - 1}], got ${i}`);
  }
  return THRESHOLDS[i];
}

/** The non-NaN IoUs in ascending order (numeric sort of a Float64Array, never a lexicographic one). */
function sortedWithoutNaN(ious: ArrayLike<number>): Float64Array {
  const kept = new Float64Array(ious.length);
  let m = 0;
  for (let k = 0; k < ious.length; k++) {
    const x = ious[k];
    if (!Number.isNaN(x)) kept[m++] = x;
  }
  return kept.subarray(0, m).sort();
}

/**
 * c_i = #{x ≥ t_i} for every threshold, by one sweep of the ascending list against the ascending
 * grid: O(m + grid). `sorted` must be ascending and NaN-free.
 */
function countsAtThresholds(sorted: Float64Array): Int32Array {
  const counts = new Int32Array(RECALL_GRID_SIZE);
  let below = 0; // number of values < THRESHOLDS[i]; non-decreasing in i
  for (let i = 0; i < RECALL_GRID_SIZE; i++) {
    const t = THRESHOLDS[i];
    while (below < sorted.length && sorted[below] < t) below++;
    counts[i] = sorted.length - below;
  }
  return counts;
}

/** The official left Riemann sum, in the official operation order: divide, multiply by the step, add. */
function averageRecallFromCounts(counts: Int32Array, n: number): number {
  let ar = 0;
  for (let i = 0; i < RECALL_GRID_SIZE - 1; i++) ar += STEPS[i] * (counts[i] / n);
  return ar;
}

/** AR, recall curve and acc@0.5 of one IoU list (one group). */
export interface RecallSummary {
  /** Official Average Recall; NaN for an empty list. */
  averageRecall: number;
  /** Number of phrases, NaN IoUs included. */
  count: number;
  /** Fraction of IoUs strictly above 0.5 (NaN counts as a miss); NaN for an empty list. */
  accuracyAt05: number;
  /** r_i for every threshold of the official grid (length RECALL_GRID_SIZE); all NaN for an empty list. */
  recall: Float64Array;
}

/**
 * AR, the full recall curve and acc@0.5 of an IoU list, bit-identical to the official code.
 * O(n log n + grid): NaNs are dropped (but kept in n), the rest sorted once and swept against the grid.
 */
export function summarizeRecall(ious: ArrayLike<number>): RecallSummary {
  const n = ious.length;
  const sorted = sortedWithoutNaN(ious);
  const counts = countsAtThresholds(sorted);
  const recall = new Float64Array(RECALL_GRID_SIZE);
  for (let i = 0; i < RECALL_GRID_SIZE; i++) recall[i] = counts[i] / n;
  let aboveHalf = 0;
  for (let k = sorted.length - 1; k >= 0 && sorted[k] > 0.5; k--) aboveHalf++;
  return { averageRecall: averageRecallFromCounts(counts, n), count: n, accuracyAt05: aboveHalf / n, recall };
}

/**
 * Official Average Recall of an IoU list (fast path, O(n log n + grid)). The result depends only on
 * the multiset of values; NaN IoUs count in n and never pass a threshold; an empty list gives NaN.
 */
export function averageRecall(ious: ArrayLike<number>): number {
  return averageRecallFromCounts(countsAtThresholds(sortedWithoutNaN(ious)), ious.length);
}

/**
 * One IoU's share of n · AR: t_m with m = min(#{i : t_i ≤ iou}, N − 1), and 0 for NaN. Every step
 * t_{i+1} − t_i is exact in float64 (Sterbenz: t_i ≤ t_{i+1} ≤ 2 t_i for i ≥ 1, and t_1 − 0 = t_1), so the
 * steps below t_m sum to exactly t_m and AR = Σ_k recallContribution(iou_k) / n in exact arithmetic. In
 * float64 the official 99 999-term sum carries its own rounding, so the two differ below 1e-12 (6e-13
 * at most on the tests' random lists), not bit for bit: {@link averageRecall} stays the official number;
 * this form lets the bootstrap recompute AR on a resample in O(phrases).
 */
export function recallContribution(iou: number): number {
  if (Number.isNaN(iou)) return 0;
  // first index with t_i > iou, i.e. the number of thresholds ≤ iou
  let low = 0;
  let high = RECALL_GRID_SIZE;
  while (low < high) {
    const middle = (low + high) >>> 1;
    if (THRESHOLDS[middle] <= iou) low = middle + 1;
    else high = middle;
  }
  return THRESHOLDS[Math.min(low, RECALL_GRID_SIZE - 1)];
}

/**
 * The literal definition of the official AR, kept as the reference for {@link averageRecall}:
 * builds the grid, counts `iou >= t` for every threshold and every IoU (O(n · grid)), and sums.
 * Use it to cross-check; it is slow for long lists.
 */
export function averageRecallReference(ious: ArrayLike<number>): number {
  const n = ious.length;
  const t = new Float64Array(RECALL_GRID_SIZE);
  for (let i = 0; i < RECALL_GRID_SIZE; i++) t[i] = i * 1e-5;
  const recall = new Float64Array(RECALL_GRID_SIZE);
  for (let i = 0; i < RECALL_GRID_SIZE; i++) {
    let c = 0;
    for (let k = 0; k < n; k++) if (ious[k] >= t[i]) c++;
    recall[i] = c / n;
  }
  let ar = 0;
  for (let i = 0; i < RECALL_GRID_SIZE - 1; i++) ar += (t[i + 1] - t[i]) * recall[i];
  return ar;
}
