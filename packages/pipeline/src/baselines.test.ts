import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setBackend } from '@png/core';
import { expectDefined } from '@png/core/testing';
import { PngDataset, generateSyntheticBenchmark } from '@png/png-data';
import { evaluateBaselines, type BaselineResult } from './baselines';
import { main } from './command_line';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'png-baselines-'));
const unary = path.join(tmp, 'unary');
const grounding = path.join(tmp, 'grounding');
const EMBEDDED = path.join(__dirname, '..', '..', 'diffusion-backbone', 'models', 'png-tiny-sd');

beforeAll(async () => {
  await setBackend('cpu');
  await generateSyntheticBenchmark(unary, { seed: 3, train: 4, val: 8 });
  await generateSyntheticBenchmark(grounding, { kind: 'grounding', seed: 3, train: 30, val: 12 });
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const score = (result: BaselineResult, name: string) =>
  expectDefined(
    result.scores.find((s) => s.name === name),
    `the '${name}' score`,
  );

describe('evaluateBaselines', () => {
  it('scores the perfect mask at stride 1 as every IoU = 1 (AR 0.99999), and coarser strides lower', async () => {
    const result = await evaluateBaselines({ data: grounding, rules: ['perfect-mask'], strides: [1, 4, 8] });
    const [exact, four, eight] = result.scores;
    expect(result.scores.map((s) => s.name)).toEqual(['perfect-mask@1', 'perfect-mask@4', 'perfect-mask@8']);
    expect(exact.metrics.overall.averageRecall).toBeCloseTo(0.99999, 12);
    const types = exact.metrics.byTag.phrase_type;
    expect(Object.keys(types).length).toBeGreaterThan(3);
    for (const summary of Object.values(types)) expect(summary.averageRecall).toBeCloseTo(0.99999, 12);
    expect(four.metrics.things.averageRecall).toBeLessThan(exact.metrics.things.averageRecall);
    expect(eight.metrics.things.averageRecall).toBeLessThan(four.metrics.things.averageRecall);
  });

  it('scores the whole image as the mean phrase area fraction', async () => {
    const result = await evaluateBaselines({ data: unary, rules: ['whole-image'] });
    const fractions: number[] = [];
    for await (const sample of (await PngDataset.open(unary, 'val2017')).records()) {
      for (const p of sample.phrases) fractions.push(p.mask.reduce((a, b) => a + b, 0) / p.mask.length);
    }
    expect(result.phrases).toBe(fractions.length);
    expect(result.scores[0].metrics.overall.averageRecall).toBeCloseTo(fractions.reduce((a, b) => a + b, 0) / fractions.length, 4);
    expect(result.scores[0].metrics.byTag).toEqual({});
  });

  it('solves unary scenes by colour lookup but not the phrases of grounding scenes that need more than their words', async () => {
    const control = await evaluateBaselines({ data: unary, rules: ['colour-lookup'] });
    expect(control.scores[0].metrics.overall.averageRecall).toBeGreaterThan(0.85);
    const result = await evaluateBaselines({ data: grounding, rules: ['colour-lookup'] });
    const byType = result.scores[0].metrics.byTag.phrase_type;
    expect(byType.unary.averageRecall).toBeGreaterThan(0.7);
    const hard = Object.entries(byType).filter(([type]) => type !== 'unary');
    expect(hard.length).toBeGreaterThan(3);
    const ious = hard.reduce((sum, [, s]) => sum + s.averageRecall * s.count, 0) / hard.reduce((n, [, s]) => n + s.count, 0);
    expect(ious).toBeLessThan(0.5);
    expect(hard.reduce((n, [, s]) => n + s.count, 0) + byType.unary.count).toBe(result.phrases);
  });

  it('learns a text prior on the training split that places stuff better than the whole image', async () => {
    const result = await evaluateBaselines({ data: grounding, rules: ['whole-image', 'text-prior'] });
    expect(score(result, 'text-prior').metrics.stuff.averageRecall).toBeGreaterThan(score(result, 'whole-image').metrics.stuff.averageRecall + 0.1);
  });

  it('refuses a stride that does not divide the canvas and a text prior without training phrases', async () => {
    await expect(evaluateBaselines({ data: grounding, rules: ['perfect-mask'], strides: [5] })).rejects.toThrow(
      'perfect-mask: stride 5 must be a positive integer dividing the canvas side 96',
    );
    const empty = path.join(tmp, 'empty-train');
    await generateSyntheticBenchmark(empty, { seed: 1, train: 0, val: 1 });
    await expect(evaluateBaselines({ data: empty, rules: ['text-prior'] })).rejects.toThrow('text-prior: no grounded phrase in the train2017 split');
  });
});

describe('png baseline', () => {
  async function png(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    let stdout = '';
    let stderr = '';
    const code = await main(args, {
      stdout: { write: (t: string) => (stdout += t) },
      stderr: { write: (t: string) => (stderr += t) },
      embeddedModel: EMBEDDED,
    });
    return { code, stdout, stderr };
  }

  it('prints a table per rule and phrase type, or JSON', async () => {
    const table = await png(
      'baseline',
      '--data',
      grounding,
      '--rule',
      'whole-image',
      '--rule',
      'perfect-mask',
      '--stride',
      '2',
      '--stride',
      '4',
      '--size-thresholds',
      '31,277',
      '--backend',
      'cpu',
    );
    expect(table.code).toBe(0);
    expect(table.stdout).toContain('small < 31 <= medium < 277 <= large');
    expect(table.stdout).toMatch(/^rule +overall +things +stuff +singulars +plurals +small +medium +large .*twin-relation.* unary$/m);
    expect(table.stdout).toMatch(/^perfect-mask@2 +\d+\.\d/m);
    const json = await png('baseline', '--data', grounding, '--rule', 'colour-lookup', '--json', '--backend', 'cpu');
    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout);
    expect(parsed.scores.map((s: { name: string }) => s.name)).toEqual(['colour-lookup']);
    expect(parsed.scores[0].by_tag.phrase_type.unary.count).toBeGreaterThan(0);
    expect(parsed.scores[0].size_thresholds).toEqual([1024, 9216]);
  });

  it('refuses an unknown rule with exit code 2', async () => {
    const r = await png('baseline', '--data', grounding, '--rule', 'oracle');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--rule must be one of whole-image, colour-lookup, text-prior, perfect-mask');
  });
});
