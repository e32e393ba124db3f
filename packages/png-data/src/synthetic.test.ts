import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expectDefined } from '@png/core/testing';
import { generateSyntheticBenchmark, synthesizeScene, SYNTHETIC_CATEGORIES } from './synthetic';

/** Every file under `dir` (relative path → bytes), sorted by path. */
function readTree(dir: string): Map<string, Buffer> {
  const files = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
  return new Map(files.map((f) => [f, fs.readFileSync(path.join(dir, f))]));
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'png-data-synthetic-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('generateSyntheticBenchmark', () => {
  it('writes the real layout, byte-identical for the same seed and different for another', async () => {
    const [a, b, c] = ['a', 'b', 'c'].map((d) => path.join(tmp, d));
    const written = await generateSyntheticBenchmark(a, { seed: 7, train: 3, val: 2 });
    await generateSyntheticBenchmark(b, { seed: 7, train: 3, val: 2 });
    await generateSyntheticBenchmark(c, { seed: 8, train: 3, val: 2 });
    const [ta, tb, tc] = [readTree(a), readTree(b), readTree(c)];
    const stems = (split: 'train2017' | 'val2017') => written.splits[split].map((s) => String(s.imageId).padStart(12, '0'));
    expect([...ta.keys()]).toEqual(
      [
        'annotations/panoptic_train2017.json',
        'annotations/panoptic_val2017.json',
        ...stems('train2017').map((s) => `annotations/panoptic_segmentation/train2017/${s}.png`),
        ...stems('val2017').map((s) => `annotations/panoptic_segmentation/val2017/${s}.png`),
        'annotations/png_coco_train2017.json',
        'annotations/png_coco_val2017.json',
        ...stems('train2017').map((s) => `images/train2017/${s}.png`),
        ...stems('val2017').map((s) => `images/val2017/${s}.png`),
      ].sort(),
    );
    expect([...tb.keys()]).toEqual([...ta.keys()]);
    for (const [name, bytes] of ta) expect(bytes.equals(expectDefined(tb.get(name), name))).toBe(true);
    const annotations = 'annotations/png_coco_val2017.json';
    expect(expectDefined(ta.get(annotations), annotations).equals(expectDefined(tc.get(annotations), annotations))).toBe(false);
    expect(fs.readdirSync(path.join(a, 'annotations')).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('uses the real JSON formats: string image ids and segment ids, COCO segments_info and categories', async () => {
    const dir = path.join(tmp, 'format');
    const { splits } = await generateSyntheticBenchmark(dir, { seed: 3, train: 0, val: 2, size: [48, 80] });
    const records = JSON.parse(fs.readFileSync(path.join(dir, 'annotations/png_coco_val2017.json'), 'utf8'));
    const panoptic = JSON.parse(fs.readFileSync(path.join(dir, 'annotations/panoptic_val2017.json'), 'utf8'));
    expect(Object.keys(records[0])).toEqual(['image_id', 'annotator_id', 'caption', 'segments']);
    expect(records[0].image_id).toBe(String(splits.val2017[0].imageId));
    expect(Object.keys(records[0].segments[0])).toEqual(['utterance', 'segment_ids', 'noun', 'plural']);
    for (const record of records) for (const chunk of record.segments) for (const id of chunk.segment_ids) expect(id).toMatch(/^\d+$/);
    expect(panoptic.images[0]).toEqual({
      id: splits.val2017[0].imageId,
      width: 80,
      height: 48,
      file_name: `${String(splits.val2017[0].imageId).padStart(12, '0')}.png`,
    });
    expect(Object.keys(panoptic.annotations[0].segments_info[0])).toEqual(['id', 'category_id', 'bbox', 'area', 'iscrowd']);
    expect(panoptic.categories).toEqual(SYNTHETIC_CATEGORIES);
    expect(fs.readdirSync(path.join(dir, 'images/train2017'))).toEqual([]);
  });

  it('rejects bad options', async () => {
    await expect(generateSyntheticBenchmark(path.join(tmp, 'bad'), { seed: 1.5, train: 1, val: 1 })).rejects.toThrow('seed must be an integer');
    await expect(generateSyntheticBenchmark(path.join(tmp, 'bad'), { seed: 1, train: -1, val: 1 })).rejects.toThrow('train must be a non-negative integer');
    expect(() => synthesizeScene(1, { size: [8, 64] })).toThrow('size must be [height, width] with integers ≥ 16');
  });
});

describe('synthesizeScene', () => {
  const scenes = Array.from({ length: 40 }, (_, seed) => synthesizeScene(seed));
  const narratives = scenes.flatMap((s) => s.narratives);
  const chunks = narratives.flatMap((n) => n.segments);

  it('is deterministic', () => {
    const again = synthesizeScene(5);
    expect(again).toEqual(scenes[5]);
    expect(synthesizeScene(6).image).not.toEqual(again.image);
  });

  it('keeps segments consistent with the id map (area, bbox, no id 0, disjoint by construction)', () => {
    for (const scene of scenes) {
      const counts = new Map<number, number>();
      for (const id of scene.ids) counts.set(id, (counts.get(id) ?? 0) + 1);
      expect(counts.has(0)).toBe(false);
      expect(new Set(scene.segments.map((s) => s.id))).toEqual(new Set(counts.keys()));
      for (const s of scene.segments) {
        expect(s.area).toBe(counts.get(s.id));
        const [x, y, w, h] = s.bbox;
        let inside = 0;
        for (let r = y; r < y + h; r++) for (let c = x; c < x + w; c++) if (scene.ids[r * scene.width + c] === s.id) inside++;
        expect(inside).toBe(s.area);
      }
      expect(scene.image.length).toBe(scene.height * scene.width * 3);
    }
  });

  it('writes narratives whose caption is the utterances joined by single spaces, grounded in the scene', () => {
    for (const scene of scenes) {
      const ids = new Set(scene.segments.map((s) => String(s.id)));
      for (const n of scene.narratives) {
        expect(n.caption).toBe(n.segments.map((c) => c.utterance).join(' '));
        for (const c of n.segments) for (const id of c.segment_ids) expect(ids.has(id)).toBe(true);
        for (const c of n.segments) if (!c.noun) expect(c.segment_ids).toEqual([]);
      }
    }
  });

  it('covers the cases of spec §1.7', () => {
    const thingCategories = new Set(SYNTHETIC_CATEGORIES.filter((c) => c.isthing === 1).map((c) => c.id));
    const segments = scenes.flatMap((s) => s.segments);
    const isThing = (id: string) =>
      thingCategories.has(
        expectDefined(
          segments.find((s) => String(s.id) === id),
          `segment ${id}`,
        ).category_id,
      );
    expect(chunks.some((c) => !c.noun)).toBe(true); // non-noun chunks
    expect(chunks.some((c) => c.noun && c.segment_ids.length === 0)).toBe(true); // ungrounded nouns
    expect(chunks.some((c) => c.segment_ids.length >= 2)).toBe(true); // plurals
    expect(chunks.some((c) => c.plural && c.segment_ids.length === 1 && !isThing(c.segment_ids[0]))).toBe(true); // "trees": one stuff segment
    expect(chunks.some((c) => !c.plural && c.segment_ids.length >= 2)).toBe(true); // flag left off on a plural
    expect(chunks.some((c) => c.segment_ids.length > 0 && isThing(c.segment_ids[0]))).toBe(true);
    expect(chunks.some((c) => c.segment_ids.length > 0 && !isThing(c.segment_ids[0]))).toBe(true);
    expect(segments.some((s) => s.iscrowd === 1)).toBe(true);
    expect(scenes.some((s) => s.narratives.length === 2)).toBe(true);
    expect(scenes.some((s) => s.narratives.length === 1)).toBe(true);
    expect(narratives.some((n) => n.caption.split(' ').length > 100)).toBe(true); // long: well past 77 CLIP tokens
  });
});
