import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expectDefined, sharedFixturesDir } from '@png/core/testing';
import { CLIPTokenizer } from '@png/diffusion-backbone';
import { PHRASE_GROUPS, PngEvaluator, PngGroundTruth, encodeRle, evaluatePredictions } from '@png/png-metrics';
import { PNG } from 'pngjs';
import { PngDataset, decodeImage, type PngDatasetOptions, type PngSample } from './dataset';
import { generateSyntheticBenchmark, synthesizeScene } from './synthetic';
import { chunk, pixels, unionMask, writeHandBenchmark, type HandImage } from './test_support';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'png-data-dataset-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function load(root: string, options: PngDatasetOptions = {}, split = 'val2017'): Promise<{ dataset: PngDataset; samples: PngSample[] }> {
  const dataset = await PngDataset.open(root, split, options);
  const samples: PngSample[] = [];
  for await (const sample of dataset.records()) samples.push(sample);
  return { dataset, samples };
}

/** Sky over grass, two circles, a crowd of squares, a strip of trees. */
const SCENE: HandImage = {
  id: 139,
  height: 20,
  width: 30,
  segments: [
    { id: 11, categoryId: 101, rect: [0, 0, 10, 30] }, // sky (stuff)
    { id: 12, categoryId: 103, rect: [10, 0, 20, 30] }, // grass (stuff)
    { id: 24, categoryId: 106, rect: [10, 10, 20, 14] }, // tree-merged (stuff)
    { id: 21, categoryId: 1, rect: [2, 2, 6, 7] }, // circle (thing)
    { id: 22, categoryId: 1, rect: [12, 2, 16, 7] }, // circle (thing)
    { id: 1648163, categoryId: 2, rect: [12, 20, 18, 28], iscrowd: 1 }, // crowd of squares (thing)
  ],
};
const JPEG_SCENE: HandImage = {
  id: 285,
  height: 16,
  width: 24,
  format: 'jpg',
  segments: [
    { id: 5, categoryId: 102, rect: [0, 0, 16, 24] },
    { id: 6, categoryId: 5, rect: [4, 4, 12, 12] },
  ],
};

/** Record 0: non-noun chunks, an ungrounded noun, a plural, a crowd, stuff, "trees", chunks without spaces. */
const RECORD_0 = {
  image_id: '139',
  annotator_id: 3,
  caption: 'In this image I can see two circles, a crowd of squares on the grass and trees.',
  segments: [
    chunk('In this'),
    chunk('image', [], true),
    chunk('I can see'),
    chunk('two circles', [21, 22]),
    chunk(','),
    chunk('a crowd of squares', [1648163], true, true),
    chunk('on'),
    chunk('the grass', [12]),
    { utterance: 'and', segment_ids: ['11'], noun: false, plural: false }, // a non-noun chunk with ids is not evaluated
    chunk('trees', [24], true, true),
    chunk('.'),
  ],
};
/** Record 1, the same image's second narrative: thing/stuff decided by the LAST listed segment; irregular spaces. */
const RECORD_1 = {
  image_id: '139',
  annotator_id: 9,
  caption: 'A circle in the sky   and the sky with  a circle, and "quotes" [brackets] {braces}.',
  segments: [
    chunk('A circle in the sky', [21, 11], true, false),
    chunk('and'),
    chunk('the sky with a circle', [11, 21], true, false),
    chunk(', and "quotes" [brackets] {braces}.'),
  ],
};
const RECORD_2 = {
  image_id: '285',
  annotator_id: 1,
  caption: 'A diamond on a wall.',
  segments: [chunk('A diamond', [6]), chunk('on'), chunk('a wall', [5]), chunk('.')],
};

describe('PngDataset on hand-made records (spec §1.7)', () => {
  const root = path.join(tmp, 'hand');
  writeHandBenchmark(root, 'val2017', [SCENE, JPEG_SCENE], [RECORD_0, RECORD_1, RECORD_2]);

  it('extracts the evaluated phrases with spans, flags and masks', async () => {
    const { dataset, samples } = await load(root, { chunkSize: 7 });
    expect(dataset.skipped).toEqual([]);
    expect(samples.map((s) => [s.index, s.imageId])).toEqual([
      [0, 139],
      [1, 139],
      [2, 285],
    ]);
    const [s0, s1] = samples;
    expect(s0.phrases.map((p) => [p.text, p.chunkIndex, p.segmentIds, p.isThing, p.isPlural])).toEqual([
      ['two circles', 3, [21, 22], true, true],
      ['a crowd of squares', 5, [1648163], true, false], // iscrowd is an ordinary segment; plural flag ignored
      ['the grass', 7, [12], false, false],
      ['trees', 9, [24], false, false], // flagged plural, one stuff segment: singular stuff
    ]);
    expect(s0.narrative.caption).toBe(RECORD_0.caption);
    expect(s0.narrative.phrases.map(([a, b]) => s0.narrative.caption.slice(a, b))).toEqual(['two circles', 'a crowd of squares', 'the grass', 'trees']);
    expect(s0.phrases[0].mask).toEqual(unionMask(SCENE, [21, 22]));
    expect(s0.phrases[2].mask).toEqual(unionMask(SCENE, [12])); // grass minus what is drawn over it
    expect(s0.image).toEqual({ data: pixels(SCENE), height: 20, width: 30 });
    expect(s0.tokenSpans).toBeUndefined();

    expect(s1.phrases.map((p) => [p.text, p.isThing, p.isPlural])).toEqual([
      ['A circle in the sky', false, true], // last segment is the sky
      ['the sky with a circle', true, true], // last segment is a circle
    ]);
    expect(s1.narrative.phrases).toEqual([
      [0, 19],
      [26, 48],
    ]); // white space runs may differ from the utterance's
    expect(s1.phrases[0].mask).toEqual(unionMask(SCENE, [11, 21]));
  });

  it('reads JPEG images', async () => {
    const { samples } = await load(root);
    const { image, phrases } = samples[2];
    expect([image.height, image.width, image.data.length]).toEqual([16, 24, 16 * 24 * 3]);
    const exact = pixels(JPEG_SCENE);
    const meanError = image.data.reduce((sum, v, k) => sum + Math.abs(v - exact[k]), 0) / exact.length;
    expect(meanError).toBeLessThan(12);
    expect(phrases.map((p) => [p.text, p.isThing])).toEqual([
      ['A diamond', true],
      ['a wall', false],
    ]);
  });

  it('matches png-metrics PngGroundTruth phrase for phrase', async () => {
    const { samples } = await load(root);
    const gt = PngGroundTruth.load(path.join(root, 'annotations'));
    for (const sample of samples) {
      const reference = gt.sample(sample.index);
      expect(sample.phrases.map((p) => [p.isThing, p.isPlural, Array.from(p.mask)])).toEqual(
        reference.phrases.map((p) => [p.isThing, p.isPlural, Array.from(p.mask)]),
      );
    }
  });

  it('gives CLIP token positions per phrase with a tokenizer, across windows for long captions', async () => {
    const tokenizer = await CLIPTokenizer.fromPretrained(path.join(sharedFixturesDir(), 'tiny-sd', 'tokenizer'));
    const long = {
      ...RECORD_2,
      caption: `${'This is a long story about nothing at all, '.repeat(12)}A diamond on a wall.`,
      segments: [chunk('This is a long story about nothing at all, '.repeat(12).trim()), ...RECORD_2.segments],
    };
    const dir = path.join(tmp, 'tokens');
    writeHandBenchmark(dir, 'val2017', [JPEG_SCENE], [RECORD_2, long]);
    const { samples } = await load(dir, { tokenizer });
    for (const sample of samples) {
      const chunks = tokenizer.chunk(sample.narrative.caption);
      expect(sample.tokenSpans).toEqual(sample.narrative.phrases.map(([a, b]) => chunks.tokenOfChar(a, b)));
      for (const positions of expectDefined(sample.tokenSpans, 'tokenSpans')) expect(positions.length).toBeGreaterThan(0);
    }
    expect(expectDefined(samples[0].tokenSpans, 'tokenSpans')[0][0]).toEqual({ window: 0, position: 1 });
    expect(expectDefined(samples[1].tokenSpans, 'tokenSpans')[1].every((t) => t.window > 0)).toBe(true); // "a wall" is past the first window
  });
});

describe('PngDataset on utterances that are not verbatim in the caption (official pre-processing, spec §1.5)', () => {
  /** The real record quoted in PPMN's utils/pre_process.py, on the hand-made scene (a circle for the bear). */
  const PPMN_RECORD = {
    image_id: '139',
    annotator_id: 36,
    caption: 'In this picture we can able to see a black bear on this tree.',
    segments: [
      chunk('in this'),
      chunk('picture', [], true),
      chunk('we can able to see a'),
      chunk('black bear', [21]),
      chunk('on this'),
      chunk('tree', [24]),
      chunk('.'),
    ],
  };
  const kept: [string, { caption: string; segments: ReturnType<typeof chunk>[] }, string[]][] = [
    ['lower-cased utterances (the PPMN record)', PPMN_RECORD, ['black bear', 'tree']],
    [
      '"n\'t" split off as in Localized Narratives',
      {
        caption: "We can't see the grass, but we don't miss the circles.",
        segments: [chunk("We ca n't see"), chunk('the grass', [12]), chunk(', but we do'), chunk("n't miss"), chunk('the circles', [21, 22]), chunk('.')],
      },
      ['the grass', 'the circles'],
    ],
    [
      're-spaced punctuation',
      {
        caption: 'A circle, a crowd of squares; and grass.',
        segments: [chunk('A circle ,', [21]), chunk('a crowd of squares ;', [1648163]), chunk('and'), chunk('grass .', [12])],
      },
      ['A circle,', 'a crowd of squares;', 'grass.'],
    ],
    [
      'accents and case',
      { caption: 'The Café sky over the naïve GRASS.', segments: [chunk('the cafe sky', [11]), chunk('over'), chunk('the naive grass', [12]), chunk('.')] },
      ['The Café sky', 'the naïve GRASS'],
    ],
    [
      'double spaces and new lines',
      { caption: 'two  circles\non the   grass', segments: [chunk('two circles', [21, 22]), chunk('on'), chunk('the grass', [12])] },
      ['two  circles', 'the   grass'],
    ],
  ];
  const dropped: [string, { caption: string; segments: ReturnType<typeof chunk>[] }, string][] = [
    [
      'a word the caption lacks',
      { caption: 'A circle on the grass.', segments: [chunk('A red circle', [21]), chunk('on'), chunk('the grass', [12]), chunk('.')] },
      'word count mismatch: the caption has 6 words (BERT basic tokenisation) and its utterances 7; they part at utterance 0 "A red circle": words ["a","red","circle"], the caption has ["a","circle","on"] there',
    ],
    [
      'utterances out of order',
      { caption: 'A circle on the grass.', segments: [chunk('the grass', [12]), chunk('A circle', [21])] },
      'word count mismatch: the caption has 6 words (BERT basic tokenisation) and its utterances 4; they part at utterance 0 "the grass"',
    ],
    ['an empty caption', { caption: '', segments: [chunk('the grass', [12])] }, 'empty caption: the caption "" has no word'],
  ];
  const root = path.join(tmp, 'respaced');
  const records = [...kept.map(([, r]) => ({ image_id: '139', ...r })), ...dropped.map(([, r]) => ({ image_id: '139', ...r }))];
  writeHandBenchmark(root, 'val2017', [SCENE], records);

  it.each(kept.map(([name, , spans], i) => [name, i, spans] as const))('keeps %s, with the caption spans of the phrases', async (_name, index, spans) => {
    const { samples } = await load(root);
    const sample = expectDefined(
      samples.find((s) => s.index === index),
      `sample ${index}`,
    );
    expect(sample.narrative.phrases.map(([a, b]) => sample.narrative.caption.slice(a, b))).toEqual(spans);
  });

  it('drops, in both modes, only the records the official pre-processing drops, naming the reason and the words', async () => {
    for (const onBadRecord of ['throw', 'skip'] as const) {
      const { dataset, samples } = await load(root, { onBadRecord });
      expect(samples.map((s) => s.index)).toEqual(kept.map((_, i) => i));
      expect(dataset.skipped).toEqual([]);
      expect(dataset.dropped.map((d) => [d.index, d.reason])).toEqual([
        [5, 'word count mismatch'],
        [6, 'word count mismatch'],
        [7, 'empty caption'],
      ]);
      for (const [k, d] of dataset.dropped.entries()) expect(d.message).toContain(`png_coco_val2017.json record ${d.index}: ${dropped[k][2]}`);
    }
  });

  it('png-metrics PngGroundTruth evaluates the same records and phrases', async () => {
    const { samples } = await load(root);
    const gt = PngGroundTruth.load(path.join(root, 'annotations'));
    expect(gt.phrases.map((p, i) => (p.length > 0 ? i : -1)).filter((i) => i >= 0)).toEqual(samples.map((s) => s.index));
    expect(gt.dropped.map((d) => [d.index, d.reason])).toEqual([
      [5, 'word count mismatch'],
      [6, 'word count mismatch'],
      [7, 'empty caption'],
    ]);
  });
});

describe('PngDataset bad records', () => {
  const good = RECORD_2;
  const bad: [string, unknown, string][] = [
    ['missing segments', { image_id: '285', caption: 'x' }, 'field segments: expected an array of caption chunks, got nothing (the field is missing)'],
    ['wrong id type', { ...good, image_id: 285.5 }, 'field image_id: expected a non-negative integer id'],
    [
      'segment id not a string of digits',
      { ...good, segments: [chunk('A diamond'), { ...chunk('on'), segment_ids: ['x'] }] },
      'field segments[1].segment_ids[0]: expected a non-negative integer id',
    ],
    [
      'segment id not in the image',
      { ...good, segments: [good.segments[0], good.segments[1], chunk('a wall', [5, 77])] },
      'field segments[2].segment_ids[1]: segment 77 is not in segments_info of image 285 in panoptic_val2017.json',
    ],
    ['missing caption', { image_id: '285', segments: [] }, 'field caption: missing'],
    ['image not in the panoptic JSON', { ...good, image_id: '4' }, 'field image_id: image 4 has no entry in images in panoptic_val2017.json'],
    ['missing image file', { image_id: '777', caption: 'a wall', segments: [chunk('a wall', [5])] }, 'field image_id: no image file'],
    ['record not an object', ['not', 'a', 'record'], 'field (record): expected an object'],
    [
      'grounded chunk without text',
      { ...good, segments: [chunk('', [6]), ...good.segments] },
      'field segments[0].utterance: a grounded noun chunk has no text',
    ],
  ];
  const missingFile: HandImage = { id: 777, height: 16, width: 16, segments: [{ id: 5, categoryId: 102, rect: [0, 0, 16, 16] }] };
  /** Writes the two images (the second without its image file) and `records`. */
  const writeBad = (dir: string, records: unknown[]) => {
    writeHandBenchmark(dir, 'val2017', [JPEG_SCENE, missingFile], records);
    fs.rmSync(path.join(dir, 'images/val2017/000000000777.png'));
  };
  const root = path.join(tmp, 'bad');
  writeBad(root, [good, ...bad.map(([, record]) => record), good]);

  it("'throw' raises at the first bad record, naming the file, record index and field", async () => {
    await expect(load(root)).rejects.toThrow('png_coco_val2017.json record 1: field segments: expected an array');
  });

  it.each(bad.map(([name, record, message], i) => [name, record, message, i + 1] as const))(
    "'throw' names the field: %s",
    async (name, record, message, index) => {
      const dir = path.join(tmp, 'bad-one', name.replace(/\W+/g, '_'));
      writeBad(
        dir,
        Array.from({ length: index + 2 }, (_, k) => (k === index ? record : good)),
      );
      await expect(load(dir)).rejects.toThrow(`png_coco_val2017.json record ${index}: ${message}`);
    },
  );

  it("'skip' leaves every bad record out and lists it with the same message", async () => {
    const { dataset, samples } = await load(root, { onBadRecord: 'skip' });
    expect(samples.map((s) => s.index)).toEqual([0, bad.length + 1]);
    expect(dataset.skipped.map((s) => s.index)).toEqual(bad.map((_, i) => i + 1));
    for (const [i, s] of dataset.skipped.entries()) expect(s.reason).toContain(`png_coco_val2017.json record ${i + 1}: ${bad[i][2]}`);
    // a second pass starts a new list
    for await (const sample of dataset.records()) expect(sample.index === 0 || sample.index === bad.length + 1).toBe(true);
    expect(dataset.skipped).toHaveLength(bad.length);
    expect(dataset.dropped).toEqual([]);
  });

  it('a file that is not a JSON array fails in both modes, naming the byte offset', async () => {
    const dir = path.join(tmp, 'truncated');
    const text = JSON.stringify([good, good]);
    writeHandBenchmark(dir, 'val2017', [JPEG_SCENE], text.slice(0, text.length - 10));
    await expect(load(dir, { onBadRecord: 'skip' })).rejects.toThrow(
      `png_coco_val2017.json: byte ${text.length - 10}: the file is truncated: it ends inside record 1`,
    );
  });

  it('a folder where an image, a panoptic PNG or an annotation file is expected is named, with what was expected', async () => {
    const dir = path.join(tmp, 'folders');
    writeHandBenchmark(dir, 'val2017', [JPEG_SCENE], [good]);
    const image = path.join(dir, 'images/val2017/000000000285.jpg');
    fs.rmSync(image);
    fs.mkdirSync(image);
    await expect(load(dir)).rejects.toThrow(`png_coco_val2017.json record 0: field image_id: ${image}: is a folder; expected an image (JPEG or PNG)`);
    const skipped = await load(dir, { onBadRecord: 'skip' });
    expect(skipped.dataset.skipped.map((s) => s.index)).toEqual([0]);

    fs.rmSync(image, { recursive: true });
    writeHandBenchmark(dir, 'val2017', [JPEG_SCENE], [good]);
    const panopticPng = path.join(dir, 'annotations/panoptic_segmentation/val2017/000000000285.png');
    fs.rmSync(panopticPng);
    fs.mkdirSync(panopticPng);
    await expect(load(dir)).rejects.toThrow(`png_coco_val2017.json record 0: field image_id: ${panopticPng}: is a folder; expected a COCO panoptic PNG`);

    const records = path.join(dir, 'annotations/png_coco_val2017.json');
    fs.rmSync(records);
    fs.mkdirSync(records);
    await expect(load(dir)).rejects.toThrow(`${records}: is a folder; expected a JSON file holding one array`);
    const panoptic = path.join(dir, 'annotations/panoptic_val2017.json');
    fs.rmSync(panoptic);
    fs.mkdirSync(panoptic);
    await expect(load(dir)).rejects.toThrow(`${panoptic}: is a folder; expected the COCO panoptic JSON`);
  });

  it('checks the options and the folder', async () => {
    await expect(PngDataset.open(root, 'val2017', { onBadRecord: 'ignore' as 'skip' })).rejects.toThrow("onBadRecord must be 'skip' or 'throw'");
    await expect(PngDataset.open(root, 'train2017')).rejects.toThrow('png_coco_train2017.json not found');
  });
});

describe('round trip through a synthetic benchmark', () => {
  it('reads back the generated scenes and scores AR 0.99999 in every group with the ground truth as prediction', async () => {
    const root = path.join(tmp, 'synthetic');
    const written = await generateSyntheticBenchmark(root, { seed: 11, train: 2, val: 10, size: [48, 64] });
    const { dataset, samples } = await load(root);
    expect(dataset.skipped).toEqual([]);
    const scenes = written.splits.val2017.map(({ imageId, sceneSeed }) => ({ imageId, scene: synthesizeScene(sceneSeed, { size: [48, 64] }) }));
    const expectedRecords = scenes.flatMap(({ imageId, scene }) => scene.narratives.map((n) => ({ imageId, scene, narrative: n })));
    expect(samples).toHaveLength(expectedRecords.length);

    const evaluator = new PngEvaluator();
    const gt = PngGroundTruth.load(path.join(root, 'annotations'));
    samples.forEach((sample, i) => {
      const { imageId, scene, narrative } = expectedRecords[i];
      expect([sample.index, sample.imageId]).toEqual([i, imageId]);
      expect(sample.image.data).toEqual(scene.image);
      expect(sample.narrative.caption).toBe(narrative.caption);
      const nouns = narrative.segments.filter((c) => c.noun && c.segment_ids.length > 0);
      expect(sample.phrases.map((p) => [p.text, p.segmentIds.map(String)])).toEqual(nouns.map((c) => [c.utterance, c.segment_ids]));
      expect(sample.narrative.phrases.map(([a, b]) => sample.narrative.caption.slice(a, b))).toEqual(nouns.map((c) => c.utterance));
      for (const p of sample.phrases) expect(p.mask).toEqual(Uint8Array.from(scene.ids, (id) => (p.segmentIds.includes(id) ? 1 : 0)));
      evaluator.process(
        gt.sample(sample.index),
        sample.phrases.map((p) => p.mask),
      );
    });
    const metrics = evaluator.evaluate();
    for (const group of PHRASE_GROUPS) {
      expect(metrics[group].count).toBeGreaterThan(0);
      expect(metrics[group].averageRecall).toBeCloseTo(0.99999, 12);
    }
    // The same through a predictions file (COCO RLE), as a user would submit it.
    const predictions = samples
      .filter((s) => s.phrases.length > 0)
      .map((s) => ({
        record_index: s.index,
        image_id: String(s.imageId),
        phrases: s.phrases.map((p) => ({ segment_ids: p.segmentIds.map(String), rle: encodeRle(p.mask, s.image.height, s.image.width) })),
      }));
    const viaFile = evaluatePredictions(gt, predictions).evaluate();
    for (const group of PHRASE_GROUPS) expect(viaFile[group].averageRecall).toBe(metrics[group].averageRecall);
  });
});

describe('decodeImage', () => {
  it('composites a PNG’s transparency on white, not black', () => {
    const png = new PNG({ width: 3, height: 1, colorType: 6 });
    png.data.set([200, 0, 0, 255, 0, 0, 0, 0, 0, 0, 100, 128]); // opaque red, transparent black, half-transparent blue
    const { data, width, height } = decodeImage(new Uint8Array(PNG.sync.write(png)), 'rgba.png');
    expect([width, height]).toEqual([3, 1]);
    expect([...data]).toEqual([200, 0, 0, 255, 255, 255, 127, 127, 177]);
  });
});
