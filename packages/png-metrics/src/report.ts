import { RECALL_GRID_SIZE, recallThreshold } from './average_recall';
import type { BootstrapSettings } from './bootstrap';
import { PHRASE_GROUPS, SIZE_BUCKETS, type GroupMetrics, type PhraseGroup, type PngMetrics, type SizeBucket } from './evaluator';

/** One number per phrase group; null stands for NaN (an empty group). */
export type GroupValues<T> = Record<PhraseGroup, T>;

/** AR, count and acc@0.5 of a size or tag group (null for NaN), with its bootstrap interval when there is one. */
export interface GroupSummary {
  average_recall: number | null;
  count: number;
  accuracy_at_0_5: number | null;
  /** [low, high] of the AR; null when every resample missed the group. Only with a bootstrap. */
  average_recall_ci?: [number, number] | null;
}

/** The groups beside the five phrase groups, as the summary and the report give them. */
interface Breakdowns {
  /** Bootstrap intervals of the five groups' AR (only with a bootstrap). */
  average_recall_ci?: GroupValues<[number, number] | null>;
  /** By GT mask area: small < size_thresholds[0] ≤ medium < size_thresholds[1] ≤ large (pixels). */
  by_size: Record<SizeBucket, GroupSummary>;
  size_thresholds: [number, number];
  /** Per tag key, per value; only when some phrase carries a grouped tag. */
  by_tag?: Record<string, Record<string, GroupSummary>>;
  /** How the intervals were made (only with a bootstrap). */
  bootstrap?: BootstrapSettings & { method: string };
}

/** The JSON report of an evaluation. Numbers are full precision; null is NaN (empty group). */
export interface PngReport extends Breakdowns {
  metric: string;
  average_recall: GroupValues<number | null>;
  counts: GroupValues<number>;
  accuracy_at_0_5: GroupValues<number | null>;
  recall_curves: {
    /** True: the curves hold `points` of the `grid_size` thresholds; AR always uses the full grid. */
    downsampled: boolean;
    grid_size: number;
    points: number;
    sampling: string;
    thresholds: number[];
    recall: GroupValues<(number | null)[]>;
  };
}

/** The `--json` summary: AR of every group (null for NaN), counts and acc@0.5, and the other groups. */
export interface PngSummary extends GroupValues<number | null>, Breakdowns {
  counts: GroupValues<number>;
  accuracy_at_0_5: GroupValues<number | null>;
}

const METRIC_DESCRIPTION =
  'PNG Average Recall as the official average_accuracy: thresholds t_i = i*1e-5 for i = 0..99999, recall r_i = #{IoU >= t_i} / n ' +
  '(NaN IoUs count in n), AR = sum over i = 0..99998 of (t_{i+1} - t_i) * r_i; acc@0.5 = fraction of IoU > 0.5';

const BOOTSTRAP_METHOD =
  'images resampled with replacement (seeded); AR of a resample = sum over its phrases of t_min(#{i: t_i <= IoU}, 99999) / n ' +
  '(the official AR in exact arithmetic); percentile interval, linear interpolation between order statistics; ' +
  'resamples without a phrase of a group are left out of its interval';

const nullForNaN = (x: number): number | null => (Number.isNaN(x) ? null : x);

const interval = (m: GroupMetrics): [number, number] | null => (m.interval ? [m.interval[0], m.interval[1]] : null);

function groupSummary(m: GroupMetrics): GroupSummary {
  const summary: GroupSummary = { average_recall: nullForNaN(m.averageRecall), count: m.count, accuracy_at_0_5: nullForNaN(m.accuracyAt05) };
  if (m.interval !== undefined) summary.average_recall_ci = interval(m);
  return summary;
}

/** The size and tag groups, and the intervals when the metrics have them. */
function breakdowns(metrics: PngMetrics): Breakdowns {
  const tagKeys = Object.keys(metrics.byTag);
  return {
    ...(metrics.bootstrap ? { average_recall_ci: perGroup((g) => interval(metrics[g])) } : {}),
    by_size: Object.fromEntries(SIZE_BUCKETS.map((b) => [b, groupSummary(metrics.bySize[b])])) as Record<SizeBucket, GroupSummary>,
    size_thresholds: [metrics.sizeThresholds[0], metrics.sizeThresholds[1]],
    ...(tagKeys.length > 0
      ? {
          by_tag: Object.fromEntries(
            tagKeys.map((key) => [key, Object.fromEntries(Object.entries(metrics.byTag[key]).map(([value, m]) => [value, groupSummary(m)]))]),
          ),
        }
      : {}),
    ...(metrics.bootstrap ? { bootstrap: { ...metrics.bootstrap, method: BOOTSTRAP_METHOD } } : {}),
  };
}

function perGroup<T>(value: (group: PhraseGroup) => T): GroupValues<T> {
  return Object.fromEntries(PHRASE_GROUPS.map((group) => [group, value(group)])) as GroupValues<T>;
}

/**
 * AR of every group (null for NaN) plus counts and acc@0.5, then the size groups, the tag groups
 * (when some phrase has a grouped tag) and the bootstrap intervals (when evaluated with one):
 * what `png-metrics … --json` prints.
 */
export function summarizeMetrics(metrics: PngMetrics): PngSummary {
  return {
    ...perGroup((g) => nullForNaN(metrics[g].averageRecall)),
    counts: perGroup((g) => metrics[g].count),
    accuracy_at_0_5: perGroup((g) => nullForNaN(metrics[g].accuracyAt05)),
    ...breakdowns(metrics),
  };
}

/**
 * The JSON report. Recall curves are downsampled to `curvePoints` thresholds (default 1001:
 * t_i at i = round(k · 99999 / 1000), k = 0…1000, so both ends are kept); the report says so.
 */
export function buildReport(metrics: PngMetrics, curvePoints = 1001): PngReport {
  if (!Number.isInteger(curvePoints) || curvePoints < 2 || curvePoints > RECALL_GRID_SIZE) {
    throw new RangeError(`curvePoints must be an integer in [2, ${RECALL_GRID_SIZE}], got ${curvePoints}`);
  }
  const last = RECALL_GRID_SIZE - 1;
  const indices = Array.from({ length: curvePoints }, (_, k) => Math.round((k * last) / (curvePoints - 1)));
  return {
    metric: METRIC_DESCRIPTION,
    average_recall: perGroup((g) => nullForNaN(metrics[g].averageRecall)),
    counts: perGroup((g) => metrics[g].count),
    accuracy_at_0_5: perGroup((g) => nullForNaN(metrics[g].accuracyAt05)),
    ...breakdowns(metrics),
    recall_curves: {
      downsampled: curvePoints < RECALL_GRID_SIZE,
      grid_size: RECALL_GRID_SIZE,
      points: curvePoints,
      sampling: `t_i at i = round(k * ${last} / ${curvePoints - 1}) for k = 0..${curvePoints - 1}`,
      thresholds: indices.map(recallThreshold),
      recall: perGroup((g) => indices.map((i) => nullForNaN(metrics[g].recall[i]))),
    },
  };
}

/**
 * A fraction as a percentage with one decimal, like Python's `'%.1f' % (x * 100)` (exact binary
 * halves round to even, where `toFixed` rounds them up); NaN prints as `nan`.
 */
export function formatPercent(fraction: number): string {
  if (Number.isNaN(fraction)) return 'nan';
  const percent = fraction * 100;
  const fractional = percent - Math.floor(percent);
  if (fractional === 0.25 || fractional === 0.75) {
    // percent·10 ends in exactly .5: round half to even.
    const tenths = Math.floor(percent * 10);
    return ((tenths % 2 === 0 ? tenths : tenths + 1) / 10).toFixed(1);
  }
  return percent.toFixed(1);
}

/**
 * The human-readable table: AR and acc@0.5 ×100 with one decimal (`nan` for empty groups) and counts
 * of the five groups, then the size buckets and each tag key's values; a last column with the
 * bootstrap interval of the AR when the metrics have one.
 */
export function formatMetricsTable(metrics: PngMetrics): string {
  const [small, medium] = metrics.sizeThresholds;
  const sections: [string | undefined, [string, GroupMetrics][]][] = [
    [undefined, PHRASE_GROUPS.map((g) => [g, metrics[g]])],
    [`by size (GT area in pixels: small < ${small} <= medium < ${medium} <= large)`, SIZE_BUCKETS.map((b) => [`  ${b}`, metrics.bySize[b]])],
    ...Object.entries(metrics.byTag).map(([key, values]): [string, [string, GroupMetrics][]] => [
      `by ${key}`,
      Object.entries(values).map(([value, m]) => [`  ${value}`, m]),
    ]),
  ];
  const width = Math.max(10, ...sections.flatMap(([, rows]) => rows.map(([label]) => label.length + 1)));
  const ci = metrics.bootstrap ? `${formatConfidence(metrics.bootstrap.confidence)} CI` : undefined;
  const row = (label: string, ar: string, acc: string, count: string, interval?: string) =>
    `${label.padEnd(width)}${ar.padStart(8)}${acc.padStart(10)}${count.padStart(10)}${interval === undefined ? '' : interval.padStart(16)}`;
  const lines = [row('group', 'AR', 'acc@0.5', 'phrases', ci)];
  for (const [title, rows] of sections) {
    if (title !== undefined) lines.push(title);
    for (const [label, m] of rows) {
      const interval = ci === undefined ? undefined : m.interval ? `[${formatPercent(m.interval[0])}, ${formatPercent(m.interval[1])}]` : 'nan';
      lines.push(row(label, formatPercent(m.averageRecall), formatPercent(m.accuracyAt05), String(m.count), interval));
    }
  }
  return `${lines.join('\n')}\n`;
}

/** 0.95 → `95%`. */
function formatConfidence(confidence: number): string {
  return `${Number((confidence * 100).toPrecision(12))}%`;
}
