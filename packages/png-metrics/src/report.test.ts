import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { RECALL_GRID_SIZE, recallThreshold } from './average_recall';
import { PngEvaluator, type PngMetrics } from './evaluator';
import { parseMaskPhrases } from './mask_phrases';
import { buildReport, formatMetricsTable, formatPercent, summarizeMetrics } from './report';

const FIXTURES = path.resolve(__dirname, '../../../../shared/fixtures/png-metric');

function fixtureMetrics(name: string): PngMetrics {
  const evaluator = new PngEvaluator();
  for (const { sample, prediction } of parseMaskPhrases(JSON.parse(readFileSync(path.join(FIXTURES, name), 'utf8')), name)) {
    evaluator.process(sample, [prediction]);
  }
  return evaluator.evaluate();
}

describe('formatPercent', () => {
  test('×100 with one decimal, NaN as nan', () => {
    expect(formatPercent(0.39167500000021316)).toBe('39.2');
    expect(formatPercent(0.20001)).toBe('20.0');
    expect(formatPercent(1)).toBe('100.0');
    expect(formatPercent(NaN)).toBe('nan');
  });

  test('exact binary halves round to even like Python %.1f (toFixed would round up)', () => {
    const f = 0.3925;
    expect(f * 100).toBe(39.25); // an exact tie
    expect((f * 100).toFixed(1)).toBe('39.3');
    expect(formatPercent(f)).toBe('39.2');
    expect(formatPercent(0.3975)).toBe('39.8'); // 39.75 → even 39.8
    expect(formatPercent(0.39250001)).toBe('39.3'); // not a tie
  });
});

describe('summary and report', () => {
  const ex2 = fixtureMetrics('ex2_float32.json');

  test('summary: full-precision AR, null for NaN, counts, acc@0.5', () => {
    const summary = summarizeMetrics(ex2);
    const roundTrip = JSON.parse(JSON.stringify(summary));
    expect(roundTrip.overall).toBe(0.6000066666671943);
    expect(roundTrip.stuff).toBeNull();
    expect(roundTrip.plurals).toBeNull();
    expect(roundTrip.counts).toEqual({ overall: 3, things: 3, stuff: 0, singulars: 3, plurals: 0 });
    expect(roundTrip.accuracy_at_0_5.overall).toBe(2 / 3);
    expect(roundTrip.accuracy_at_0_5.stuff).toBeNull();
  });

  test('report: curves downsampled to 1001 points including both ends, and it says so', () => {
    const report = buildReport(ex2);
    const curves = report.recall_curves;
    expect(curves.downsampled).toBe(true);
    expect(curves.grid_size).toBe(RECALL_GRID_SIZE);
    expect(curves.points).toBe(1001);
    expect(curves.thresholds).toHaveLength(1001);
    expect(curves.thresholds[0]).toBe(0);
    expect(curves.thresholds[1]).toBe(recallThreshold(100));
    expect(curves.thresholds[1000]).toBe(recallThreshold(99999));
    expect(curves.recall.overall[0]).toBe(1);
    expect(curves.recall.overall[1000]).toBe(0);
    expect(curves.recall.overall[300]).toBe(1); // t_30000: the float32 3/10 still counts
    expect(curves.recall.stuff.every((r) => r === null)).toBe(true);
    expect(report.average_recall.overall).toBe(0.6000066666671943);
    expect(report.average_recall.stuff).toBeNull();
    expect(buildReport(ex2, RECALL_GRID_SIZE).recall_curves.downsampled).toBe(false);
    expect(() => buildReport(ex2, 1)).toThrow(/curvePoints/);
  });

  test('table: ×100 one decimal, nan for empty groups', () => {
    const table = formatMetricsTable(fixtureMetrics('ex3_edge.json'));
    expect(table).toContain('overall       51.7      66.7         3');
    expect(table).toContain('plurals        nan       nan         0');
  });
});
