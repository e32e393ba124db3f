import { RECALL_GRID_SIZE, recallThreshold } from './average_recall';
import { PHRASE_GROUPS, type PhraseGroup, type PngMetrics } from './evaluator';

/** One number per phrase group; null stands for NaN (an empty group). */
export type GroupValues<T> = Record<PhraseGroup, T>;

/** The JSON report of an evaluation. Numbers are full precision; null is NaN (empty group). */
export interface PngReport {
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

/** The `--json` summary: AR of every group (null for NaN), counts and acc@0.5. */
export interface PngSummary extends GroupValues<number | null> {
  counts: GroupValues<number>;
  accuracy_at_0_5: GroupValues<number | null>;
}

const METRIC_DESCRIPTION =
  'PNG Average Recall as the official average_accuracy: thresholds t_i = i*1e-5 for i = 0..99999, recall r_i = #{IoU >= t_i} / n ' +
  '(NaN IoUs count in n), AR = sum over i = 0..99998 of (t_{i+1} - t_i) * r_i; acc@0.5 = fraction of IoU > 0.5';

const nullForNaN = (x: number): number | null => (Number.isNaN(x) ? null : x);

function perGroup<T>(value: (group: PhraseGroup) => T): GroupValues<T> {
  return Object.fromEntries(PHRASE_GROUPS.map((group) => [group, value(group)])) as GroupValues<T>;
}

/** AR of every group (null for NaN) plus counts and acc@0.5: what `png-metrics … --json` prints. */
export function summarizeMetrics(metrics: PngMetrics): PngSummary {
  return {
    ...perGroup((g) => nullForNaN(metrics[g].averageRecall)),
    counts: perGroup((g) => metrics[g].count),
    accuracy_at_0_5: perGroup((g) => nullForNaN(metrics[g].accuracyAt05)),
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

/** The human-readable table: AR and acc@0.5 ×100 with one decimal (`nan` for empty groups), and counts. */
export function formatMetricsTable(metrics: PngMetrics): string {
  const lines = [`${'group'.padEnd(10)}${'AR'.padStart(8)}${'acc@0.5'.padStart(10)}${'phrases'.padStart(10)}`];
  for (const group of PHRASE_GROUPS) {
    const m = metrics[group];
    lines.push(`${group.padEnd(10)}${formatPercent(m.averageRecall).padStart(8)}${formatPercent(m.accuracyAt05).padStart(10)}${String(m.count).padStart(10)}`);
  }
  return `${lines.join('\n')}\n`;
}
