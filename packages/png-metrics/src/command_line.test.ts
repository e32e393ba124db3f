import { readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import * as path from 'node:path';
import { averageRecallReference } from './average_recall';
import { main, type CliIo } from './command_line';
import { PngGroundTruth } from './gt';
import { writePredictionsFile, type PngPredictionRecord } from './predictions';
import { encodeRle } from './rle';
import { TINY_RECORDS, writeTinyDataset } from './test_support';

const FIXTURES = path.resolve(__dirname, '../../../../shared/fixtures/png-metric');

function run(argv: string[], stderrIsTTY = false): { code: number; stdout: string; stderr: string } {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: { write: (text: string) => (stdout += text) },
    stderr: { write: (text: string) => (stderr += text), isTTY: stderrIsTTY },
  };
  const code = main(argv, io);
  return { code, stdout, stderr };
}

const dir = writeTinyDataset();
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A prediction file: GT masks, except record 2 phrase 0 predicted empty (IoU 0). */
function writePredictions(): string {
  const gt = PngGroundTruth.load(dir);
  const records: PngPredictionRecord[] = gt.records.map((record, index) => {
    const sample = gt.sample(index);
    return {
      record_index: index,
      image_id: String(record.imageId),
      phrases: gt.phrases[index].map((phrase, k) => {
        const mask = index === 2 && k === 0 ? new Uint8Array(sample.height * sample.width) : (sample.phrases[k].mask as Uint8Array);
        return { segment_ids: phrase.segmentIds.map(String), rle: encodeRle(mask, sample.height, sample.width, { compressed: k % 2 === 0 }) };
      }),
    };
  });
  const file = path.join(dir, 'predictions.json');
  writePredictionsFile(file, records);
  return file;
}

describe('png-metrics ar', () => {
  test('--json on example 1 prints the exact AR values', () => {
    const { code, stdout } = run(['ar', path.join(FIXTURES, 'ex1_basic.json'), '--json']);
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    expect(result.overall).toBe(0.39167500000021316);
    expect(result.things).toBe(0.5333400000003459);
    expect(result.stuff).toBe(0.25001);
    expect(result.singulars).toBe(0.583340000000546);
    expect(result.plurals).toBe(0.20001);
    expect(result.counts.overall).toBe(4);
    expect(result.accuracy_at_0_5.overall).toBe(0.25);
  });

  test('--json prints null for empty groups; the table prints nan', () => {
    const json = JSON.parse(run(['ar', '--json', path.join(FIXTURES, 'ex3_edge.json')]).stdout);
    expect(json.overall).toBe(0.5166666666663403);
    expect(json.stuff).toBe(0);
    expect(json.plurals).toBeNull();
    const table = run(['ar', path.join(FIXTURES, 'ex3_edge.json')]).stdout;
    expect(table).toMatch(/^plurals\s+nan\s+nan\s+0\s+nan$/m); // last column: the bootstrap interval
    expect(table).toMatch(/^overall\s+51\.7\s+66\.7\s+3\s+\[\d+\.\d, \d+\.\d\]$/m);
    expect(run(['ar', path.join(FIXTURES, 'ex3_edge.json'), '--bootstrap', '0']).stdout).toMatch(/^plurals\s+nan\s+nan\s+0$/m);
  });

  test('a malformed phrase file is a clear error', () => {
    const file = path.join(dir, 'bad_phrases.json');
    writeFileSync(file, JSON.stringify({ phrases: [{ name: 'x', pred: [[1]], gt: [[1]], isThing: 'yes', isPlural: false }] }));
    const { code, stderr } = run(['ar', file]);
    expect(code).toBe(1);
    expect(stderr).toContain('bad_phrases.json: phrase 0, field isThing: expected true or false, got "yes"');
    writeFileSync(file, '{"phrases": [');
    expect(run(['ar', file]).stderr).toMatch(/phrase-masks file at .*bad_phrases\.json is not valid JSON/);
  });
});

describe('png-metrics evaluate', () => {
  const predictions = writePredictions();

  test('--json on the tiny dataset', () => {
    const { code, stdout, stderr } = run(['evaluate', '--gt', dir, '--pred', predictions, '--json']);
    expect(stderr).toBe(''); // no progress bar when stderr is not a terminal
    expect(code).toBe(0);
    const result = JSON.parse(stdout);
    const perfect = averageRecallReference([1]);
    expect(result.counts).toEqual({ overall: 8, things: 4, stuff: 4, singulars: 5, plurals: 3 });
    // "An object" (thing, singular) has IoU 0; every other phrase IoU 1
    expect(result.overall).toBe(averageRecallReference([1, 1, 1, 1, 1, 1, 1, 0]));
    expect(result.things).toBe(averageRecallReference([1, 1, 1, 0]));
    expect(result.singulars).toBe(averageRecallReference([1, 1, 1, 1, 0]));
    expect(result.stuff).toBe(perfect);
    expect(result.plurals).toBe(perfect);
    expect(result.accuracy_at_0_5.overall).toBe(7 / 8);
  });

  test('--split, --report, --plot and --progress', () => {
    const report = path.join(dir, 'results', 'report.json');
    const plot = path.join(dir, 'results', 'figure.svg');
    const { code, stdout, stderr } = run([
      'evaluate',
      `--gt=${dir}`,
      '--split',
      'val2017',
      '--pred',
      predictions,
      '--report',
      report,
      '--plot',
      plot,
      '--progress',
      '--curve-points',
      '11',
    ]);
    expect(code).toBe(0);
    expect(stdout).toMatch(/^overall\s+87\.5\s+87\.5\s+8\s+\[[\d.]+, [\d.]+\]$/m);
    expect(stderr).toContain('\rphrases [');
    expect(stderr).toContain('100% 8/8');
    expect(stderr.endsWith('\n')).toBe(true);
    const written = JSON.parse(readFileSync(report, 'utf8'));
    expect(written.recall_curves.points).toBe(11);
    expect(written.recall_curves.downsampled).toBe(true);
    expect(written.counts.overall).toBe(8);
    expect(readFileSync(plot, 'utf8')).toContain('<svg');
    expect(readdirSync(path.join(dir, 'results')).sort()).toEqual(['figure.svg', 'report.json']); // atomic: no temp files left
  });

  test('size and tag groups and bootstrap intervals in the table, --json and the report', () => {
    const tagged = TINY_RECORDS.map((record) => ({
      ...record,
      segments: record.segments.map((c) => (c.noun && c.segment_ids.length ? { ...c, phrase_type: c.segment_ids.length > 1 ? 'plural-subset' : 'unary' } : c)),
    }));
    const taggedDir = writeTinyDataset(tagged);
    try {
      const args = ['evaluate', '--gt', taggedDir, '--pred', predictions, '--size-thresholds', '5,9'];
      const table = run(args).stdout;
      expect(table).toMatch(/^by size \(GT area in pixels: small < 5 <= medium < 9 <= large\)$/m);
      // areas: trees, A person, An object 4 (small); two people, the ground 7 (medium); the grass 9, the plurals with grass 13 (large)
      expect(table).toMatch(/^ {2}small\s+66\.7\s+66\.7\s+3\s+\[[\d.]+, 100\.0\]$/m);
      expect(table).toMatch(/^ {2}large\s+100\.0\s+100\.0\s+3\s+\[100\.0, 100\.0\]$/m);
      expect(table).toMatch(/^by phrase_type$/m);
      expect(table).toMatch(/^ {2}plural-subset\s+100\.0\s+100\.0\s+3\s/m);
      const json = JSON.parse(run([...args, '--json', '--bootstrap', '50', '--seed', '3']).stdout);
      expect(json.overall).toBe(averageRecallReference([1, 1, 1, 1, 1, 1, 1, 0])); // unchanged by the groups
      expect(json.size_thresholds).toEqual([5, 9]);
      expect(json.by_size.small).toMatchObject({ count: 3, average_recall: averageRecallReference([1, 1, 0]) });
      expect(json.by_size.medium.count).toBe(2);
      expect(json.by_tag.phrase_type.unary).toMatchObject({ count: 5, average_recall: averageRecallReference([1, 1, 1, 1, 0]) });
      expect(json.bootstrap).toMatchObject({ resamples: 50, seed: 3, confidence: 0.95, images: 2 });
      expect(json.average_recall_ci.overall).toHaveLength(2);
      expect(json.by_tag.phrase_type.unary.average_recall_ci).toHaveLength(2);
      const report = path.join(taggedDir, 'report.json');
      expect(run([...args, '--report', report, '--group-by', 'nothing', '--bootstrap', '0']).code).toBe(0);
      const written = JSON.parse(readFileSync(report, 'utf8'));
      expect(written.by_tag).toBeUndefined(); // no phrase has the key
      expect(written.bootstrap).toBeUndefined();
      expect(written.average_recall_ci).toBeUndefined();
      expect(written.by_size.large.count).toBe(3);
    } finally {
      rmSync(taggedDir, { recursive: true, force: true });
    }
  });

  test('without tags the report has no by_tag', () => {
    const json = JSON.parse(run(['evaluate', '--gt', dir, '--pred', predictions, '--json']).stdout);
    expect(json.by_tag).toBeUndefined();
    expect(json.by_size.small.count).toBe(8); // COCO bounds: everything in 6×4 images is small
  });

  test('the progress bar is on by default when stderr is a terminal', () => {
    expect(run(['evaluate', '--gt', dir, '--pred', predictions, '--json'], true).stderr).toContain('100% 8/8');
  });

  test('says how many narratives the official pre-processing drops, and needs no prediction for them', () => {
    const records = JSON.parse(readFileSync(path.join(dir, 'png_coco_val2017.json'), 'utf8'));
    const withDropped = writeTinyDataset([...records, { ...records[2], caption: 'An object lies on the ground.' }]);
    try {
      const { code, stdout, stderr } = run(['evaluate', '--gt', withDropped, '--pred', predictions, '--json']);
      expect(stderr).toBe('1 narrative dropped as the official pre-processing drops them (not evaluated): 1 word count mismatch\n');
      expect(code).toBe(0);
      expect(JSON.parse(stdout).counts.overall).toBe(8);
    } finally {
      rmSync(withDropped, { recursive: true, force: true });
    }
  });

  test('a malformed predictions file names the entry and field', () => {
    const file = path.join(dir, 'bad_predictions.json');
    writeFileSync(file, JSON.stringify([{ record_index: 0, image_id: 1, phrases: [] }]));
    const { code, stderr } = run(['evaluate', '--gt', dir, '--pred', file]);
    expect(code).toBe(1);
    expect(stderr).toContain("bad_predictions.json: entry 0, field image_id: expected the record's image_id string, got 1");
  });
});

describe('usage', () => {
  test('--help on every command', () => {
    for (const argv of [['--help'], ['help'], ['evaluate', '--help'], ['ar', '-h']]) {
      const { code, stdout } = run(argv);
      expect(code).toBe(0);
      expect(stdout).toMatch(/^Usage: png-metrics/);
    }
    expect(run(['evaluate', '--help']).stdout).toContain('--gt DIR');
    expect(run(['ar', '--help']).stdout).toContain('PHRASES.json');
  });

  test('usage errors exit with 2 and point to --help', () => {
    expect(run([]).code).toBe(2);
    expect(run(['frobnicate']).stderr).toContain('unknown command "frobnicate"');
    expect(run(['toString']).code).toBe(2);
    const missing = run(['evaluate', '--pred', 'x.json']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--gt is required; see "png-metrics evaluate --help"');
    expect(run(['ar', 'a.json', '--bogus']).stderr).toContain('unknown option --bogus for "ar"');
    expect(run(['ar']).stderr).toContain('expected one phrase-masks file, got 0');
    expect(run(['ar', path.join(FIXTURES, 'ex1_basic.json'), '--curve-points', 'many']).code).toBe(2);
    expect(run(['ar', path.join(FIXTURES, 'ex1_basic.json'), '--size-thresholds', '9']).stderr).toContain(
      '--size-thresholds: size thresholds are two areas in pixels, SMALL,MEDIUM',
    );
    expect(run(['ar', path.join(FIXTURES, 'ex1_basic.json'), '--bootstrap', '-1']).stderr).toContain('--bootstrap must be an integer >= 0, got -1');
    expect(run(['ar', path.join(FIXTURES, 'ex1_basic.json'), '--confidence', '95']).code).toBe(2);
  });
});
