import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { expectDefined } from '@png/core/testing';
import { PngDataset } from './dataset';
import { PHRASE_TYPES, type NarrativeChunkJson, type SyntheticScene } from './scene';
import { GROUNDING_DEFAULT_SIZE, SYNTHETIC_CATEGORIES, SYNTHETIC_PALETTE, generateSyntheticBenchmark, synthesizeScene } from './synthetic';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'png-data-grounding-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** SHA-256 over every file under `dir` (sorted relative path, then bytes). */
function treeHash(dir: string): string {
  const hash = createHash('sha256');
  const files = (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile()).sort();
  for (const f of files) hash.update(f).update(fs.readFileSync(path.join(dir, f)));
  return hash.digest('hex');
}

const SHAPE_OF = new Map(SYNTHETIC_CATEGORIES.filter((c) => c.isthing === 1).map((c) => [c.id, c.name]));

/** Colour and shape of every thing segment of a scene: the shape from its category, the colour nearest to its mean pixel. */
function thingLooks(scene: SyntheticScene): Map<number, { colour: string; shape: string; area: number; cx: number; cy: number }> {
  const sums = new Map<number, number[]>();
  scene.ids.forEach((id, k) => {
    const s = sums.get(id) ?? [0, 0, 0, 0, 0, 0];
    for (let c = 0; c < 3; c++) s[c] += scene.image[3 * k + c];
    s[3]++;
    s[4] += k % scene.width;
    s[5] += Math.floor(k / scene.width);
    sums.set(id, s);
  });
  const looks = new Map<number, { colour: string; shape: string; area: number; cx: number; cy: number }>();
  for (const segment of scene.segments) {
    const shape = SHAPE_OF.get(segment.category_id);
    if (!shape) continue;
    const [r, g, b, n, x, y] = expectDefined(sums.get(segment.id), `pixel sums of segment ${segment.id}`);
    const mean = [r / n, g / n, b / n];
    const [colour] = Object.entries(SYNTHETIC_PALETTE.colours).sort(([, p], [, q]) => distance(p, mean) - distance(q, mean))[0];
    looks.set(segment.id, { colour, shape, area: n, cx: x / n, cy: y / n });
  }
  return looks;
}

function distance(p: readonly number[], q: readonly number[]): number {
  return Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
}

describe('grounding scenes', () => {
  const scenes = Array.from({ length: 60 }, (_, seed) => synthesizeScene(seed, { kind: 'grounding' }));
  const looksOf = new Map<SyntheticScene, ReturnType<typeof thingLooks>>();
  const looksIn = (scene: SyntheticScene) => {
    let looks = looksOf.get(scene);
    if (!looks) {
      looks = thingLooks(scene);
      looksOf.set(scene, looks);
    }
    return looks;
  };
  const grounded = (scene: SyntheticScene): NarrativeChunkJson[] => scene.narratives.flatMap((n) => n.segments.filter((c) => c.segment_ids.length > 0));

  it(`are ${GROUNDING_DEFAULT_SIZE.join('×')} by default, deterministic from the seed, and differ from unary scenes`, () => {
    expect([scenes[3].height, scenes[3].width]).toEqual([...GROUNDING_DEFAULT_SIZE]);
    expect(synthesizeScene(3, { kind: 'grounding' })).toEqual(scenes[3]);
    expect(synthesizeScene(3).image).not.toEqual(scenes[3].image);
    expect(synthesizeScene(4, { kind: 'grounding', size: [64, 80] }).image.length).toBe(64 * 80 * 3);
    expect(() => synthesizeScene(1, { kind: 'grounding', size: [32, 32] })).toThrow('integers ≥ 48 for grounding scenes');
    expect(() => synthesizeScene(1, { kind: 'binding' as never })).toThrow("kind must be 'unary' or 'grounding'");
  });

  it('type every grounded chunk, with every phrase type present', () => {
    const types = new Set<string>();
    for (const scene of scenes) {
      for (const n of scene.narratives) {
        expect(n.caption).toBe(n.segments.map((c) => c.utterance).join(' '));
        for (const c of n.segments) {
          if (c.segment_ids.length > 0) types.add(expectDefined(c.phrase_type, `phrase_type of '${c.utterance}'`));
          else expect(c.phrase_type).toBeUndefined();
        }
      }
    }
    expect([...types].sort()).toEqual([...PHRASE_TYPES].sort());
  });

  it('name, for every thing phrase, the colour and shape of each of its segments', () => {
    for (const scene of scenes) {
      const looks = looksIn(scene);
      const visible = new Set(scene.segments.map((s) => String(s.id)));
      for (const chunk of grounded(scene)) {
        for (const id of chunk.segment_ids) expect(visible.has(id)).toBe(true);
        const things = chunk.segment_ids.map((id) => looks.get(Number(id)));
        if (things[0] === undefined) continue; // stuff
        for (const t of things) {
          expect(t).toBeDefined();
          expect(chunk.utterance).toContain(t?.colour);
          expect(chunk.utterance).toContain(t?.shape);
        }
      }
    }
  });

  it('make unary thing phrases name a whole colour-and-shape group and the other types only part of one', () => {
    let checked = 0;
    for (const scene of scenes) {
      const looks = looksIn(scene);
      const group = (id: string) => {
        const { colour, shape } = expectDefined(looks.get(Number(id)), `looks of segment ${id}`);
        return [...looks].filter(([, l]) => l.colour === colour && l.shape === shape).map(([other]) => String(other));
      };
      for (const chunk of grounded(scene)) {
        if (!looks.has(Number(chunk.segment_ids[0])) || chunk.phrase_type === 'binding') continue;
        const all = group(chunk.segment_ids[0]);
        if (chunk.phrase_type === 'unary') expect(chunk.segment_ids.sort()).toEqual(all.sort());
        else expect(all.length).toBeGreaterThan(chunk.segment_ids.length);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100);
  });

  it('make binding phrases need both words: the same colour with another shape and the same shape with another colour are present', () => {
    let checked = 0;
    for (const scene of scenes) {
      const looks = [...looksIn(scene).values()];
      for (const chunk of grounded(scene).filter((c) => c.phrase_type === 'binding')) {
        const { colour, shape } = expectDefined(looksIn(scene).get(Number(chunk.segment_ids[0])), `looks of segment ${chunk.segment_ids[0]}`);
        expect(looks.some((l) => l.colour === colour && l.shape !== shape)).toBe(true);
        expect(looks.some((l) => l.colour !== colour && l.shape === shape)).toBe(true);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(5);
  });

  it('tell twins apart as the words say: by size and by order', () => {
    let checked = 0;
    for (const scene of scenes) {
      const looks = looksIn(scene);
      for (const chunk of grounded(scene)) {
        if (chunk.phrase_type !== 'twin-size' && chunk.phrase_type !== 'twin-order') continue;
        const target = expectDefined(looks.get(Number(chunk.segment_ids[0])), `looks of segment ${chunk.segment_ids[0]}`);
        const twins = [...looks.values()].filter((l) => l !== target && l.colour === target.colour && l.shape === target.shape);
        const narrative = expectDefined(
          scene.narratives.find((n) => n.segments.includes(chunk)),
          `the narrative of '${chunk.utterance}'`,
        );
        const next = narrative.segments[narrative.segments.indexOf(chunk) + 1].utterance;
        const before = narrative.segments[narrative.segments.indexOf(chunk) - 1].utterance;
        const words = `${before} ${chunk.utterance} ${next}`;
        if (/bigger|biggest/.test(words)) for (const t of twins) expect(target.area).toBeGreaterThan(1.6 * t.area);
        else if (/smaller|smallest/.test(words)) for (const t of twins) expect(t.area).toBeGreaterThan(1.6 * target.area);
        else if (/left/.test(words)) for (const t of twins) expect(target.cx).toBeLessThan(t.cx);
        else if (/right/.test(words)) for (const t of twins) expect(target.cx).toBeGreaterThan(t.cx);
        else if (/top/.test(words)) for (const t of twins) expect(target.cy).toBeLessThan(t.cy);
        else if (/lowest|bottom/.test(words)) for (const t of twins) expect(target.cy).toBeGreaterThan(t.cy);
        else throw new Error(`no size or order word around ${JSON.stringify(chunk.utterance)}: ${words}`);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(10);
  });

  it('write relations both after and before the noun', () => {
    const relation = /^(left of|to the left of|right of|to the right of|above|below|under|behind|partly hidden behind|in|on|in front of)$/i;
    const positions = new Set<string>();
    for (const scene of scenes) {
      for (const n of scene.narratives) {
        n.segments.forEach((c, k) => {
          if (c.phrase_type !== 'twin-relation' && c.phrase_type !== 'occluded' && c.phrase_type !== 'plural-subset') return;
          if (relation.test(n.segments[k + 1]?.utterance ?? '')) positions.add('after');
          if (relation.test(n.segments[k - 3]?.utterance ?? '')) positions.add('before');
        });
      }
    }
    expect([...positions].sort()).toEqual(['after', 'before']);
  });
});

describe('generateSyntheticBenchmark kinds', () => {
  it('writes unary benchmarks byte-identical to before grounding scenes existed', async () => {
    const dir = path.join(tmp, 'unary');
    await generateSyntheticBenchmark(dir, { seed: 7, train: 3, val: 2 });
    expect(treeHash(dir)).toBe('3d382c000eacc054563038f5f7416452c20fd1277d334aa021f4ed4f40e8352f');
    const explicit = path.join(tmp, 'unary-explicit');
    await generateSyntheticBenchmark(explicit, { kind: 'unary', seed: 7, train: 3, val: 2 });
    expect(treeHash(explicit)).toBe(treeHash(dir));
  });

  it('writes grounding benchmarks that PngDataset reads, with each phrase type as a tag', async () => {
    const dir = path.join(tmp, 'grounding');
    await generateSyntheticBenchmark(dir, { kind: 'grounding', seed: 2, train: 0, val: 6 });
    const records = JSON.parse(fs.readFileSync(path.join(dir, 'annotations/png_coco_val2017.json'), 'utf8'));
    expect(Object.keys(records[0].segments.find((c: NarrativeChunkJson) => c.segment_ids.length > 0))).toEqual([
      'utterance',
      'segment_ids',
      'noun',
      'plural',
      'phrase_type',
    ]);
    const dataset = await PngDataset.open(dir, 'val2017');
    let phrases = 0;
    for await (const sample of dataset.records()) {
      expect(sample.image.height).toBe(GROUNDING_DEFAULT_SIZE[0]);
      const chunks = records[sample.index].segments;
      for (const p of sample.phrases) {
        expect(p.tags).toEqual({ phrase_type: chunks[p.chunkIndex].phrase_type });
        expect(PHRASE_TYPES).toContain(p.tags.phrase_type);
        phrases++;
      }
    }
    expect(phrases).toBeGreaterThan(20);
    expect(dataset.skipped).toEqual([]);
  });
});
