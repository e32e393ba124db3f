import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { averageRecallReference } from './average_recall';
import { PHRASE_GROUPS } from './evaluator';
import { PngGroundTruth, decodePanopticPng, parseNarrativeRecords, parsePanopticJson } from './gt';
import { readJsonFile } from './json_input';
import { evaluatePredictions, parsePredictions, writePredictionsFile, type PngPredictionRecord } from './predictions';
import { encodeRle } from './rle';
import { TINY_ID_MAPS, TINY_PANOPTIC, TINY_RECORDS, panopticPng, writeTinyDataset } from './test_support';

const dirs: string[] = [];
function dataset(records?: unknown): string {
  const dir = writeTinyDataset(records);
  dirs.push(dir);
  return dir;
}
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Predictions equal to the ground truth (what a perfect model would write). */
function perfectPredictions(gt: PngGroundTruth): PngPredictionRecord[] {
  return gt.records.map((record, index) => {
    const sample = gt.sample(index);
    return {
      record_index: index,
      image_id: String(record.imageId),
      phrases: gt.phrases[index].map((phrase, k) => ({
        segment_ids: phrase.segmentIds.map(String),
        rle: encodeRle(sample.phrases[k].mask as Uint8Array, sample.height, sample.width),
      })),
    };
  });
}

const clone = <T>(value: T): T => JSON.parse(JSON.stringify(value));
// biome-ignore lint/suspicious/noExplicitAny: the validation tests write wrong-typed values into parsed JSON on purpose
type MalformedJson = any;

describe('panoptic PNG decoding', () => {
  test('id = R + 256·G + 65536·B from 8-bit RGB', () => {
    const image = TINY_ID_MAPS.get(2);
    if (!image) throw new Error('TINY_ID_MAPS has no image 2');
    const decoded = decodePanopticPng(panopticPng(image.ids, image.width, image.height));
    expect(decoded.width).toBe(3);
    expect(decoded.height).toBe(5);
    expect(Array.from(decoded.ids)).toEqual(image.ids);
    expect(decoded.ids[0]).toBe(70000); // R = 0x70, G = 0x11, B = 0x01
  });
});

describe('phrase extraction (clean protocol)', () => {
  const gt = PngGroundTruth.load(dataset());
  const summary = (recordIndex: number) =>
    gt.phrases[recordIndex].map((p) => [p.utterance, p.segmentIds, p.isThing ? 'thing' : 'stuff', p.isPlural ? 'plural' : 'singular']);

  test('noun chunks with segment ids only; plural by segment count; thing by the last segment', () => {
    // skipped: non-noun chunks, the ungrounded noun "sky", the non-noun chunk "with someone" that has ids
    expect(summary(0)).toEqual([
      ['two people', [1001, 1002], 'thing', 'plural'], // 1002 is iscrowd: an ordinary segment
      ['the grass', [1003], 'stuff', 'singular'],
      ['trees', [1004], 'stuff', 'singular'], // flagged plural, one segment
    ]);
    // a second narrative of the same image is its own record
    expect(summary(1)).toEqual([
      ['A person', [1001], 'thing', 'singular'],
      ['grass and person', [1003, 1001], 'thing', 'plural'],
      ['person and grass', [1001, 1003], 'stuff', 'plural'],
    ]);
    expect(summary(2)).toEqual([
      ['An object', [70000], 'thing', 'singular'],
      ['the ground', [2], 'stuff', 'singular'],
    ]);
    expect(summary(3)).toEqual([]);
    expect(gt.phraseCount).toBe(8);
  });

  test('GT masks: binary union of the segments at the original size (crowd included, void ignored)', () => {
    const sample = gt.sample(0);
    expect([sample.height, sample.width]).toEqual([4, 6]);
    expect(sample.phrases[0].label).toBe('record 0 (image 1), phrase 0 "two people"');
    const ids = TINY_ID_MAPS.get(1)?.ids ?? [];
    expect(ids).toHaveLength(24); // image 1 is 4×6
    const expected = (segments: number[]) => Uint8Array.from(ids, (id) => (segments.includes(id) ? 1 : 0));
    expect(sample.phrases[0].mask).toEqual(expected([1001, 1002]));
    expect(sample.phrases[1].mask).toEqual(expected([1003]));
    expect(gt.sample(1).phrases[1].mask).toEqual(expected([1001, 1003]));
    expect(gt.sample(3).phrases).toEqual([]);
  });

  test('GT as prediction gives AR 0.99999 in every group', () => {
    const metrics = evaluatePredictions(gt, perfectPredictions(gt)).evaluate();
    expect(metrics.overall.count).toBe(8);
    expect([metrics.things.count, metrics.stuff.count, metrics.singulars.count, metrics.plurals.count]).toEqual([4, 4, 5, 3]);
    for (const group of PHRASE_GROUPS) {
      expect(metrics[group].averageRecall).toBe(averageRecallReference([1]));
      expect(metrics[group].averageRecall).toBeCloseTo(0.99999, 12);
      expect(metrics[group].accuracyAt05).toBe(1);
    }
  });
});

describe('chunk tags', () => {
  test('extra string keys of a chunk become its tags and reach the evaluator; other extra keys are ignored', () => {
    const records = clone(TINY_RECORDS) as MalformedJson[];
    Object.assign(records[0].segments[1], { phrase_type: 'plural-subset', difficulty: 3 });
    records[0].segments[3].phrase_type = 'unary';
    const parsed = parseNarrativeRecords(records);
    expect(parsed[0].segments[1].tags).toEqual({ phrase_type: 'plural-subset' });
    expect(parsed[0].segments[5].tags).toEqual({});
    const gt = PngGroundTruth.load(dataset(records));
    expect(gt.phrases[0].map((p) => p.tags)).toEqual([{ phrase_type: 'plural-subset' }, { phrase_type: 'unary' }, {}]);
    const sample = gt.sample(0);
    expect(sample.imageId).toBe(1);
    expect(sample.phrases[1].tags).toEqual({ phrase_type: 'unary' });
    const metrics = evaluatePredictions(gt, perfectPredictions(gt)).evaluate();
    expect(Object.keys(metrics.byTag.phrase_type)).toEqual(['plural-subset', 'unary']);
    expect(metrics.byTag.phrase_type.unary.count).toBe(1);
  });
});

describe('validation errors name the record and the field', () => {
  test('malformed png_coco records', () => {
    const bad = (mutate: (records: MalformedJson[]) => void) => {
      const records = clone(TINY_RECORDS);
      mutate(records);
      return () => parseNarrativeRecords(records, 'png_coco_val2017.json');
    };
    expect(bad((r) => (r[1].image_id = 'abc'))).toThrow('png_coco_val2017.json: record 1, field image_id: expected a non-negative integer id');
    expect(bad((r) => delete r[2].segments)).toThrow('record 2, field segments: expected an array of caption chunks, got nothing (the field is missing)');
    expect(bad((r) => (r[0].segments[3].segment_ids = ['1003', 'x']))).toThrow(
      'record 0, field segments[3].segment_ids[1]: expected a non-negative integer id',
    );
    expect(bad((r) => delete r[0].segments[1].noun)).toThrow('record 0, field segments[1].noun: expected true or false');
    expect(bad((r) => (r[0].segments[1].utterance = 5))).toThrow('record 0, field segments[1].utterance: expected a string, got 5');
    expect(bad((r) => (r[3].annotator_id = '9'))).toThrow('record 3, field annotator_id: expected an integer');
    expect(bad((r) => (r[1] = null))).toThrow('record 1, field (record): expected an object');
    expect(() => parseNarrativeRecords({}, 'f.json')).toThrow('f.json, field (root): expected a JSON array');
  });

  test('integer ids are accepted as well as strings', () => {
    const records = clone(TINY_RECORDS) as MalformedJson[];
    records[2].image_id = 2;
    records[2].segments[0].segment_ids = [70000];
    const parsed = parseNarrativeRecords(records);
    expect(parsed[2].imageId).toBe(2);
    expect(parsed[2].segments[0].segmentIds).toEqual([70000]);
  });

  test('a segment id missing from segments_info names record, utterance and id', () => {
    const records = clone(TINY_RECORDS) as MalformedJson[];
    records[1].segments[2].segment_ids = ['1003', '4242'];
    expect(() => PngGroundTruth.load(dataset(records))).toThrow(
      'record 1 (image 1), utterance "grass and person": segment id 4242 is not in segments_info of image 1',
    );
  });

  test('malformed panoptic JSON', () => {
    const panoptic = clone(TINY_PANOPTIC) as MalformedJson;
    panoptic.annotations[1].segments_info[0].category_id = 'person';
    expect(() => parsePanopticJson(panoptic, 'panoptic_val2017.json')).toThrow(
      'panoptic_val2017.json: annotations[1].segments_info[0], field category_id: expected a non-negative integer, got "person"',
    );
    expect(() => parsePanopticJson({ ...clone(TINY_PANOPTIC), images: {} }, 'p.json')).toThrow('p.json, field images: expected an array');
  });

  test('a missing file names the path', () => {
    expect(() => PngGroundTruth.load(dataset(), 'train2017')).toThrow(/cannot read PNG narratives at .*png_coco_train2017\.json/);
  });
});

describe('predictions file', () => {
  const dir = dataset();
  const gt = PngGroundTruth.load(dir);

  test('written atomically and read back', () => {
    const path = join(dir, 'out', 'predictions.json');
    const predictions = perfectPredictions(gt);
    writePredictionsFile(path, predictions);
    expect(readdirSync(join(dir, 'out'))).toEqual(['predictions.json']); // no temporary file left
    expect(parsePredictions(readJsonFile(path, 'predictions'), 'predictions.json')).toEqual(predictions);
  });

  test('malformed entries name the entry and the field', () => {
    const predictions = clone(perfectPredictions(gt)) as MalformedJson[];
    predictions[1].phrases[0].rle.counts = [1, -2];
    expect(() => parsePredictions(predictions, 'p.json')).toThrow(
      'p.json: entry 1, field phrases[0].rle.counts: expected a compressed COCO string or an array of non-negative run lengths',
    );
    predictions[1].phrases[0] = { rle: predictions[0].phrases[0].rle };
    expect(() => parsePredictions(predictions, 'p.json')).toThrow('p.json: entry 1, field phrases[0].segment_ids: expected an array of segment id strings');
    predictions[0].record_index = -1;
    expect(() => parsePredictions(predictions, 'p.json')).toThrow('p.json: entry 0, field record_index');
  });

  test('mismatches with the ground truth are errors naming the record or phrase', () => {
    const predictions = perfectPredictions(gt);
    const without = (index: number) => predictions.filter((p) => p.record_index !== index);
    expect(() => evaluatePredictions(gt, without(1))).toThrow('predictions are missing for 1 of the records with phrases: record 1 (image 1)');
    expect(() => evaluatePredictions(gt, without(3))).not.toThrow(); // record 3 has no phrase

    const wrongIds = clone(predictions);
    wrongIds[1].phrases[2].segment_ids = ['1003'];
    expect(() => evaluatePredictions(gt, wrongIds)).toThrow(
      'predictions for record 1 (image 1), phrase 2 "person and grass": segment_ids ["1003"] do not match the ground truth ["1001","1003"]',
    );

    const tooFew = clone(predictions);
    tooFew[0].phrases.pop();
    expect(() => evaluatePredictions(gt, tooFew)).toThrow('predictions for record 0 (image 1): 2 phrases given, the record has 3 evaluated phrases');

    const wrongSize = clone(predictions);
    wrongSize[2].phrases[1].rle = encodeRle(new Uint8Array(15), 3, 5);
    expect(() => evaluatePredictions(gt, wrongSize)).toThrow(
      'record 2 (image 2), phrase 1 "the ground": predicted RLE has size [3,5], expected the original image size [5, 3]',
    );

    const wrongImage = clone(predictions);
    wrongImage[2].image_id = '1';
    expect(() => evaluatePredictions(gt, wrongImage)).toThrow('predictions for record 2 (image 2): image_id is "1"');

    expect(() => evaluatePredictions(gt, [...predictions, predictions[0]])).toThrow('predictions entry 4: record_index 0 appears twice');
    expect(() => evaluatePredictions(gt, [{ ...predictions[0], record_index: 9 }])).toThrow('record_index 9 is out of range');
  });
});

describe('records the official pre-processing drops (spec §1.5)', () => {
  const respaced = { ...clone(TINY_RECORDS[2]), caption: 'An Object  on the ground .' }; // case and spacing differ: kept
  const mismatch = { ...clone(TINY_RECORDS[2]), caption: 'An object lies on the ground.' }; // one word more than the utterances
  const empty = { ...clone(TINY_RECORDS[2]), caption: '' };
  const noCaption = clone(TINY_RECORDS[2]) as Record<string, unknown>;
  delete noCaption.caption;
  const gt = PngGroundTruth.load(dataset([...TINY_RECORDS, respaced, mismatch, empty, noCaption]));

  test('have no evaluated phrase and are listed with the reason', () => {
    expect(gt.phrases.map((p) => p.length)).toEqual([3, 3, 2, 0, 2, 0, 0, 2]);
    expect(gt.dropped.map((d) => [d.index, d.reason])).toEqual([
      [5, 'word count mismatch'],
      [6, 'empty caption'],
    ]);
    expect(gt.dropped[0].detail).toBe(
      'the caption has 7 words (BERT basic tokenisation) and its utterances 6; they part at utterance 1 "on": words ["on"], the caption has ["lies"] there',
    );
  });

  test('need no prediction', () => {
    const predictions = perfectPredictions(gt);
    expect(predictions.filter((p) => p.phrases.length > 0).map((p) => p.record_index)).toEqual([0, 1, 2, 4, 7]);
    const metrics = evaluatePredictions(
      gt,
      predictions.filter((p) => p.phrases.length > 0),
    ).evaluate();
    expect(metrics.overall.count).toBe(12);
  });
});
