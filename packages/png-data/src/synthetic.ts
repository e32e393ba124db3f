/**
 * A deterministic synthetic PNG benchmark in exactly the file format and layout of the real one
 * (spec §1.1–§1.4): stuff bands (sky, grass, water, …) with coloured shapes on top (the things),
 * RGB-encoded panoptic PNGs, a COCO panoptic JSON and Localized-Narratives-like png_coco records.
 * Images are written as PNG (the real ones are JPEG; the loader reads either).
 *
 * Every caption equals its utterances joined by single spaces, so sentences end with a non-noun
 * chunk that carries the full stop ("… on the grass in the front."). The real captions do not
 * always have a space between chunks ("a person" + "." → "a person."); the loader handles both.
 */
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Prng, deriveSeed, writeFileAtomic } from '@png/node-utils';
import pngjs from 'pngjs';
import { synthesizeGroundingScene } from './grounding_scenes';
import { imageStem, splitPaths } from './layout';
import {
  COLOURS,
  FILLERS,
  NUMBER_WORDS,
  NarrativeBuilder,
  SHAPES,
  STUFF,
  TAILS,
  drawShape,
  drawStuffBands,
  measureSegments,
  newSegment,
  renderPixels,
  segmentIdAllocator,
  type Rgb,
  type ShapeKind,
  type StuffRegion,
} from './scene_drawing';
import type { SceneOptions, SyntheticNarrative, SyntheticScene, SyntheticSegment } from './scene';

/**
 * The base RGB colour each word of the synthetic narratives stands for: thing colours ("red") and
 * stuff nouns ("grass", "lake", "trees"). Rendered pixels differ from it by at most ±10 per channel
 * (±18 on stuff, which has a texture).
 */
export const SYNTHETIC_PALETTE: { readonly colours: Readonly<Record<string, Rgb>>; readonly stuff: Readonly<Record<string, Rgb>> } = {
  colours: COLOURS,
  stuff: Object.fromEntries(Object.values(STUFF).flatMap((spec) => spec.phrases.map((p) => [p.slice(p.lastIndexOf(' ') + 1), spec.rgb]))),
};

/** Options of {@link generateSyntheticBenchmark}. */
export interface SyntheticBenchmarkOptions extends SceneOptions {
  seed: number;
  /** Number of images of `train2017`. */
  train: number;
  /** Number of images of `val2017`. */
  val: number;
}

/** What {@link generateSyntheticBenchmark} wrote: per split, each image id and the seed of its scene. */
export interface SyntheticBenchmark {
  root: string;
  splits: Record<'train2017' | 'val2017', { imageId: number; sceneSeed: number }[]>;
}

/** The categories of the synthetic benchmark, in the COCO panoptic `categories[]` format. */
export const SYNTHETIC_CATEGORIES: readonly { id: number; name: string; supercategory: string; isthing: 0 | 1; color: [number, number, number] }[] = [
  { id: 1, name: 'circle', supercategory: 'shape', isthing: 1, color: [220, 20, 60] },
  { id: 2, name: 'square', supercategory: 'shape', isthing: 1, color: [119, 11, 32] },
  { id: 3, name: 'triangle', supercategory: 'shape', isthing: 1, color: [0, 0, 142] },
  { id: 4, name: 'ring', supercategory: 'shape', isthing: 1, color: [0, 0, 230] },
  { id: 5, name: 'diamond', supercategory: 'shape', isthing: 1, color: [106, 0, 228] },
  { id: 101, name: 'sky-other-merged', supercategory: 'sky', isthing: 0, color: [70, 130, 180] },
  { id: 102, name: 'wall-other-merged', supercategory: 'wall', isthing: 0, color: [102, 102, 156] },
  { id: 103, name: 'grass-merged', supercategory: 'plant', isthing: 0, color: [152, 251, 152] },
  { id: 104, name: 'water-other', supercategory: 'water', isthing: 0, color: [0, 80, 100] },
  { id: 105, name: 'sand', supercategory: 'ground', isthing: 0, color: [250, 170, 30] },
  { id: 106, name: 'tree-merged', supercategory: 'plant', isthing: 0, color: [107, 142, 35] },
];

/** A group of things described by one phrase: same kind and colour (a crowd is one segment). */
interface ThingGroup {
  kind: ShapeKind;
  colour: string;
  size: 'small' | 'big';
  crowd: boolean;
  segments: SyntheticSegment[];
  /** Stuff segment under the first instance's centre, if it survived occlusion. */
  ground: StuffRegion | undefined;
}

/** The default image size of 'grounding' scenes (why: the README of @png/png-data, "Grounding scenes"). */
export const GROUNDING_DEFAULT_SIZE: readonly [number, number] = [96, 96];

/**
 * Builds one synthetic scene of `options.kind` from `seed`, deterministically.
 * @throws if the kind is unknown or the size is not two integers ≥ 16 (≥ 48 for 'grounding').
 */
export function synthesizeScene(seed: number, options: SceneOptions = {}): SyntheticScene {
  const kind = options.kind ?? 'unary';
  if (kind !== 'unary' && kind !== 'grounding') throw new Error(`synthesizeScene: kind must be 'unary' or 'grounding', got ${JSON.stringify(kind)}`);
  const [height, width] = options.size ?? (kind === 'unary' ? [64, 64] : GROUNDING_DEFAULT_SIZE);
  const min = kind === 'unary' ? 16 : 48;
  if (!Number.isInteger(height) || !Number.isInteger(width) || height < min || width < min) {
    throw new Error(`synthesizeScene: size must be [height, width] with integers ≥ ${min} for ${kind} scenes, got ${JSON.stringify(options.size)}`);
  }
  return kind === 'unary' ? synthesizeUnaryScene(seed, height, width, options) : synthesizeGroundingScene(seed, height, width, options);
}

/**
 * A unary scene: 2–3 stuff bands with wavy borders, 2–3 groups of shapes drawn over them (later
 * shapes occlude earlier ones; segments stay disjoint; fully hidden instances are dropped), pixel
 * colours with deterministic texture and noise, and 1–2 narratives.
 */
function synthesizeUnaryScene(seed: number, height: number, width: number, options: SceneOptions): SyntheticScene {
  const rng = new Prng(seed);
  const noise = new Prng(deriveSeed(seed, 1));
  const newId = segmentIdAllocator(rng);
  const ids = new Uint32Array(height * width);
  const colourOf = new Map<number, Rgb>();

  // Stuff bands, top to bottom.
  const stuffSegments = drawStuffBands(rng, ids, height, width, newId, colourOf);
  const stuffIds = ids.slice();

  // Things, drawn in order over the stuff.
  const minSide = Math.min(height, width);
  const groups: ThingGroup[] = [];
  const groupCount = rng.int(2, 3);
  for (let g = 0; g < groupCount; g++) {
    const kind = rng.pick(Object.keys(SHAPES) as ShapeKind[]);
    const colour = rng.pick(Object.keys(COLOURS));
    const crowd = rng.chance(0.12);
    const size = rng.chance(0.5) ? 'small' : 'big';
    const count = crowd ? 1 : g === 0 ? rng.int(2, 3) : rng.pick([1, 1, 2, 3]);
    const group: ThingGroup = { kind, colour, size, crowd, segments: [], ground: undefined };
    for (let n = 0; n < count; n++) {
      const segment = newSegment(newId(), SHAPES[kind].categoryId, crowd ? 1 : 0);
      colourOf.set(segment.id, COLOURS[colour]);
      group.segments.push(segment);
      const pieces = crowd ? rng.int(3, 5) : 1;
      for (let p = 0; p < pieces; p++) {
        const r = Math.max(3, minSide * (crowd ? 0.05 : size === 'small' ? rng.uniform(0.07, 0.11) : rng.uniform(0.13, 0.2)));
        const cx = rng.uniform(r, width - r);
        const cy = rng.uniform(r, height - r);
        if (group.ground === undefined) {
          const under = stuffIds[Math.floor(cy) * width + Math.floor(cx)];
          group.ground = stuffSegments.find((s) => s.segment.id === under);
        }
        drawShape(ids, width, height, SHAPES[kind].inside, cx, cy, r, segment.id);
      }
    }
    groups.push(group);
  }

  // Areas and boxes; drop what is fully hidden.
  const all = [...stuffSegments.map((s) => s.segment), ...groups.flatMap((g) => g.segments)];
  measureSegments(ids, width, all);
  const visible = (s: SyntheticSegment) => s.area > 0;
  for (const group of groups) {
    group.segments = group.segments.filter(visible);
    if (group.ground && !visible(group.ground.segment)) group.ground = undefined;
  }
  const stuff = stuffSegments.filter((s) => visible(s.segment));

  const image = renderPixels(ids, width, colourOf, new Set(stuffSegments.map((s) => s.segment.id)), noise);

  const liveGroups = groups.filter((g) => g.segments.length > 0);
  const narratives = [describeScene(rng, liveGroups, stuff, options.longCaptionRate ?? 0.25, 'first')];
  if (rng.chance(options.secondNarrativeRate ?? 0.35)) narratives.push(describeScene(rng, liveGroups, stuff, options.longCaptionRate ?? 0.25, 'second'));
  let annotator = rng.int(1, 150);
  for (const narrative of narratives) narrative.annotator_id = annotator += rng.int(1, 20);
  return { height, width, image, ids, segments: all.filter(visible), narratives };
}

/** "two small red circles", "an orange ring", "a group of blue squares"; `definite` uses "the". */
function thingPhrase(rng: Prng, group: ThingGroup, definite: boolean): { text: string; plural: boolean } {
  const n = group.segments.length;
  const noun = n > 1 || group.crowd ? `${group.kind}s` : group.kind;
  const words = [rng.chance(0.4) ? group.size : '', group.colour, noun].filter((w) => w !== '').join(' ');
  if (group.crowd) return { text: `${definite ? 'the' : 'a'} group of ${group.colour} ${noun}`, plural: true };
  if (definite) return { text: `the ${words}`, plural: n > 1 };
  if (n === 1) return { text: `${/^[aeiou]/.test(words) ? 'an' : 'a'} ${words}`, plural: false };
  // Annotators sometimes leave the plural flag off; the metric counts segments, not the flag.
  return { text: `${rng.chance(0.2) ? 'some' : NUMBER_WORDS[n]} ${words}`, plural: !rng.chance(0.1) };
}

function stuffChunk(builder: NarrativeBuilder, rng: Prng, stuff: StuffRegion): void {
  const spec = STUFF[stuff.kind];
  builder.noun(rng.pick(spec.phrases), [stuff.segment], spec.plural);
}

function describeScene(
  rng: Prng,
  groups: readonly ThingGroup[],
  stuff: readonly StuffRegion[],
  longRate: number,
  style: 'first' | 'second',
): SyntheticNarrative {
  const b = new NarrativeBuilder();
  const ungrounded = (utterance: string) => b.noun(utterance, [], false);
  const mentioned = new Set<number>();
  const order = style === 'first' ? groups : [...groups].reverse();

  if (style === 'first') {
    const opener = rng.int(0, 2);
    if (opener === 2) {
      b.text('In this');
      ungrounded('picture');
      b.text('I can see');
    } else {
      b.text(opener === 0 ? 'In this image we can see' : 'Here we can see');
    }
  }
  order.forEach((group, g) => {
    const phrase = thingPhrase(rng, group, false);
    if (style === 'second') b.text(g > 0 ? rng.pick(['and', 'and also']) : group.segments.length > 1 ? 'There are' : 'There is');
    else if (g > 0) b.text(rng.pick(['and', 'and also', 'along with']));
    b.noun(phrase.text, group.segments, phrase.plural);
    if (group.ground && rng.chance(0.6)) {
      b.text(STUFF[group.ground.kind].preposition);
      stuffChunk(b, rng, group.ground);
      mentioned.add(group.ground.segment.id);
    }
  });
  b.text(rng.pick(TAILS));

  const rest = stuff.filter((s) => !mentioned.has(s.segment.id));
  rest.forEach((s, k) => {
    if (k > 0 && rng.chance(0.5)) {
      b.text('and');
    } else {
      if (k > 0) b.text(rng.pick(TAILS));
      if (s === stuff[0] && rng.chance(0.5)) {
        b.text('In the background of');
        ungrounded('this image');
        b.text('there is');
      } else {
        b.text(
          s === stuff[0]
            ? rng.pick(['At the top there is', 'Behind them there is'])
            : rng.pick(['At the bottom we can see', 'Below that there is', 'We can also see']),
        );
      }
    }
    stuffChunk(b, rng, s);
  });
  if (rest.length > 0) b.text(rng.pick(TAILS));

  if (rng.chance(longRate)) {
    for (const filler of rng.shuffle(FILLERS)) b.text(filler);
    if (groups.length > 0) {
      const phrase = thingPhrase(rng, groups[0], true);
      b.text('I think');
      b.noun(phrase.text, groups[0].segments, phrase.plural);
      b.text(`${phrase.plural ? 'stand' : 'stands'} out the most, and`);
    } else {
      b.text('In the end');
    }
    ungrounded('the picture');
    b.text('is a little blurry.');
  }
  return b.build();
}

/** An 8-bit RGB PNG of `rgb` (3 bytes per pixel, row-major). */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  const png = new pngjs.PNG({ width, height, colorType: 2, inputColorType: 2, inputHasAlpha: false });
  png.data = Buffer.from(rgb.buffer, rgb.byteOffset, rgb.byteLength);
  return pngjs.PNG.sync.write(png, { colorType: 2, inputColorType: 2, inputHasAlpha: false });
}

/** The COCO panoptic RGB encoding of an id map: R = id mod 256, G = (id / 256) mod 256, B = id / 65536. */
export function panopticRgb(ids: Uint32Array): Uint8Array {
  const out = new Uint8Array(ids.length * 3);
  ids.forEach((id, k) => {
    out[3 * k] = id & 0xff;
    out[3 * k + 1] = (id >>> 8) & 0xff;
    out[3 * k + 2] = (id >>> 16) & 0xff;
  });
  return out;
}

/**
 * Writes a synthetic benchmark under `outDir` in the layout of spec §1.1:
 * `images/{split}/<id:012d>.png`, `annotations/panoptic_{split}.json`,
 * `annotations/panoptic_segmentation/{split}/<id:012d>.png` and `annotations/png_coco_{split}.json`.
 * The same options give byte-identical files. Every file is written atomically.
 */
export async function generateSyntheticBenchmark(outDir: string, options: SyntheticBenchmarkOptions): Promise<SyntheticBenchmark> {
  const { seed, train, val } = options;
  if (!Number.isInteger(seed)) throw new Error(`generateSyntheticBenchmark: seed must be an integer, got ${JSON.stringify(seed)}`);
  for (const [name, n] of [
    ['train', train],
    ['val', val],
  ] as const) {
    if (!Number.isInteger(n) || n < 0)
      throw new Error(`generateSyntheticBenchmark: ${name} must be a non-negative integer (number of images), got ${JSON.stringify(n)}`);
  }
  const rng = new Prng(deriveSeed(seed, 0));
  const usedImageIds = new Set<number>();
  const result: SyntheticBenchmark = { root: outDir, splits: { train2017: [], val2017: [] } };
  const splits = [
    ['train2017', train],
    ['val2017', val],
  ] as const;
  for (const [s, [split, count]] of splits.entries()) {
    const paths = splitPaths(outDir, split);
    // The folders exist even for an empty split, as in the real layout.
    for (const dir of [dirname(paths.image(0, 'png')), dirname(paths.panopticPng(0))]) await mkdir(dir, { recursive: true });
    const imageIds: number[] = [];
    while (imageIds.length < count) {
      const id = rng.int(1, 581929);
      if (!usedImageIds.has(id)) imageIds.push(id);
      usedImageIds.add(id);
    }
    imageIds.sort((a, b) => a - b);
    const images: unknown[] = [];
    const annotations: unknown[] = [];
    const records: unknown[] = [];
    for (const [i, imageId] of imageIds.entries()) {
      const sceneSeed = deriveSeed(seed, s + 1, i);
      const scene = synthesizeScene(sceneSeed, options);
      const stem = imageStem(imageId);
      writeFileAtomic(paths.image(imageId, 'png'), encodePng(scene.width, scene.height, scene.image));
      writeFileAtomic(paths.panopticPng(imageId), encodePng(scene.width, scene.height, panopticRgb(scene.ids)));
      images.push({ id: imageId, width: scene.width, height: scene.height, file_name: `${stem}.png` });
      annotations.push({ image_id: imageId, file_name: `${stem}.png`, segments_info: scene.segments });
      for (const narrative of scene.narratives) records.push({ image_id: String(imageId), ...narrative });
      result.splits[split].push({ imageId, sceneSeed });
    }
    const description = `synthetic PNG benchmark${options.kind === 'grounding' ? ' (grounding scenes)' : ''}, seed ${seed}`;
    const panoptic = { info: { description }, images, annotations, categories: SYNTHETIC_CATEGORIES };
    writeFileAtomic(paths.panoptic, JSON.stringify(panoptic));
    writeFileAtomic(paths.records, JSON.stringify(records));
  }
  return result;
}
