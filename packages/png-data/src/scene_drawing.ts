/**
 * What the two kinds of synthetic scenes share: the shapes, stuff kinds and colours, drawing into a
 * panoptic id map, pixel rendering, and the narrative builder. Internal to @png/png-data.
 */
import type { NarrativeChunkJson, PhraseType, SyntheticNarrative, SyntheticSegment } from './scene';
import type { Prng } from '@png/node-utils';

export type ShapeKind = 'circle' | 'square' | 'triangle' | 'ring' | 'diamond';
export type StuffKind = 'sky' | 'wall' | 'grass' | 'water' | 'sand' | 'tree';
export type Rgb = [number, number, number];

/**
 * Per shape: its category, whether the pixel offset (dx, dy) from the centre is inside at radius r,
 * and `reach`: the radius of the smallest centred circle holding the drawn shape (within the box
 * cx ± r, cy ± r, which cuts the triangle's base corners), in units of r.
 */
export const SHAPES: Record<ShapeKind, { categoryId: number; inside: (dx: number, dy: number, r: number) => boolean; reach: number }> = {
  circle: { categoryId: 1, inside: (dx, dy, r) => dx * dx + dy * dy <= r * r, reach: 1 },
  square: { categoryId: 2, inside: (dx, dy, r) => Math.max(Math.abs(dx), Math.abs(dy)) <= 0.85 * r, reach: 1.21 },
  triangle: { categoryId: 3, inside: (dx, dy, r) => dy >= -r && dy <= 0.8 * r && Math.abs(dx) <= 0.6 * (dy + r), reach: 1.29 },
  ring: { categoryId: 4, inside: (dx, dy, r) => dx * dx + dy * dy <= r * r && dx * dx + dy * dy >= 0.25 * r * r, reach: 1 },
  diamond: { categoryId: 5, inside: (dx, dy, r) => Math.abs(dx) + Math.abs(dy) <= r, reach: 1 },
};

export const STUFF: Record<StuffKind, { categoryId: number; rgb: Rgb; phrases: string[]; plural: boolean; preposition: string }> = {
  sky: { categoryId: 101, rgb: [120, 175, 235], phrases: ['the sky', 'a blue sky'], plural: false, preposition: 'in' },
  wall: { categoryId: 102, rgb: [185, 175, 155], phrases: ['a wall', 'the wall'], plural: false, preposition: 'in front of' },
  grass: { categoryId: 103, rgb: [75, 155, 60], phrases: ['the grass', 'some grass'], plural: false, preposition: 'on' },
  water: { categoryId: 104, rgb: [40, 90, 170], phrases: ['the water', 'a lake'], plural: false, preposition: 'in' },
  sand: { categoryId: 105, rgb: [222, 200, 140], phrases: ['the sand', 'the beach'], plural: false, preposition: 'on' },
  // One tree-merged stuff segment named by a plural noun: flagged plural, scored singular (§1.7).
  tree: { categoryId: 106, rgb: [35, 100, 45], phrases: ['trees', 'some trees'], plural: true, preposition: 'near' },
};

export const COLOURS: Record<string, Rgb> = {
  red: [220, 40, 40],
  green: [60, 200, 70],
  blue: [40, 70, 225],
  yellow: [240, 215, 40],
  orange: [245, 140, 30],
  purple: [145, 60, 195],
  white: [242, 242, 242],
  black: [25, 25, 25],
};

/** Count words by number ("two" = NUMBER_WORDS[2]). */
export const NUMBER_WORDS = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven'];
export const TAILS = ['in the front.', 'on the left side.', 'in the middle.', 'here.', 'around.', 'on the right side.'];
export const FILLERS = [
  'The picture looks very simple and clean, and every shape has a flat colour with a thin edge so that it is easy to tell them apart from each other.',
  'It seems like a drawing made on a computer with bright colours, and the light is the same everywhere so there are no shadows on the ground or on the shapes.',
  'Nothing else is visible in the scene, there are no people or animals, and the whole view is calm and quiet from one side to the other side.',
];

/** A stuff band of a scene. */
export interface StuffRegion {
  kind: StuffKind;
  segment: SyntheticSegment;
}

/** Draws fresh panoptic segment ids from `rng` (1 … 2²⁴ − 1, never twice). */
export function segmentIdAllocator(rng: Prng): () => number {
  const used = new Set<number>();
  return () => {
    let id: number;
    do id = rng.int(1, 0xffffff);
    while (used.has(id));
    used.add(id);
    return id;
  };
}

export function newSegment(id: number, categoryId: number, iscrowd: 0 | 1): SyntheticSegment {
  return { id, category_id: categoryId, bbox: [0, 0, 0, 0], area: 0, iscrowd };
}

/**
 * 2–3 stuff bands top to bottom (sky or wall over one or two of grass, water, sand, trees) with wavy
 * borders, written into `ids`; their colours go into `colourOf`.
 */
export function drawStuffBands(rng: Prng, ids: Uint32Array, height: number, width: number, newId: () => number, colourOf: Map<number, Rgb>): StuffRegion[] {
  const bands: StuffKind[] = [rng.pick(['sky', 'wall'] as const), ...rng.shuffle(['grass', 'water', 'sand', 'tree'] as const).slice(0, rng.int(1, 2))];
  const borders = bands.slice(1).map((_, b) => ({
    y: height * (bands.length === 2 ? rng.uniform(0.3, 0.6) : b === 0 ? rng.uniform(0.25, 0.45) : rng.uniform(0.6, 0.8)),
    amplitude: rng.uniform(0, 0.06 * height),
    frequency: rng.uniform(0.05, 0.3),
    phase: rng.uniform(0, 2 * Math.PI),
  }));
  const stuffSegments = bands.map((kind) => {
    const id = newId();
    colourOf.set(id, STUFF[kind].rgb);
    return { kind, segment: newSegment(id, STUFF[kind].categoryId, 0) };
  });
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let band = 0;
      while (band < borders.length) {
        const border = borders[band];
        if (y + 0.5 < border.y + border.amplitude * Math.sin(border.frequency * x + border.phase)) break;
        band++;
      }
      ids[y * width + x] = stuffSegments[band].segment.id;
    }
  }
  return stuffSegments;
}

/** The pixels (row-major indices) a shape covers: those of the box cx ± r, cy ± r whose centre is inside. */
export function shapePixels(
  width: number,
  height: number,
  inside: (dx: number, dy: number, r: number) => boolean,
  cx: number,
  cy: number,
  r: number,
): number[] {
  const pixels: number[] = [];
  for (let y = Math.max(0, Math.floor(cy - r)); y < Math.min(height, Math.ceil(cy + r) + 1); y++) {
    for (let x = Math.max(0, Math.floor(cx - r)); x < Math.min(width, Math.ceil(cx + r) + 1); x++) {
      if (inside(x + 0.5 - cx, y + 0.5 - cy, r)) pixels.push(y * width + x);
    }
  }
  return pixels;
}

export function drawShape(
  ids: Uint32Array,
  width: number,
  height: number,
  inside: (dx: number, dy: number, r: number) => boolean,
  cx: number,
  cy: number,
  r: number,
  id: number,
): void {
  for (const p of shapePixels(width, height, inside, cx, cy, r)) ids[p] = id;
}

/** Fills `area` and the COCO `bbox` [x, y, w, h] of every segment from the id map. */
export function measureSegments(ids: Uint32Array, width: number, segments: SyntheticSegment[]): void {
  const byId = new Map(segments.map((s) => [s.id, { segment: s, x0: Infinity, y0: Infinity, x1: -1, y1: -1 }]));
  ids.forEach((id, k) => {
    const box = byId.get(id);
    if (!box) throw new Error(`measureSegments: pixel ${k} has id ${id}, which no segment has`);
    const x = k % width;
    const y = (k - x) / width;
    box.segment.area++;
    box.x0 = Math.min(box.x0, x);
    box.y0 = Math.min(box.y0, y);
    box.x1 = Math.max(box.x1, x);
    box.y1 = Math.max(box.y1, y);
  });
  for (const { segment, x0, y0, x1, y1 } of byId.values()) {
    if (segment.area > 0) segment.bbox = [x0, y0, x1 - x0 + 1, y1 - y0 + 1];
  }
}

/** RGB pixels of an id map: the segment's colour, a soft texture on stuff, ±10 noise everywhere. */
export function renderPixels(ids: Uint32Array, width: number, colourOf: ReadonlyMap<number, Rgb>, stuffIds: ReadonlySet<number>, noise: Prng): Uint8Array {
  const image = new Uint8Array(ids.length * 3);
  ids.forEach((id, k) => {
    const base = colourOf.get(id);
    if (!base) throw new Error(`renderPixels: pixel ${k} has id ${id}, which colourOf does not colour`);
    const x = k % width;
    const y = (k - x) / width;
    const texture = stuffIds.has(id) ? 8 * Math.sin(0.9 * x + 0.4 * y) : 0;
    for (let c = 0; c < 3; c++) image[3 * k + c] = clampByte(base[c] + texture + noise.int(-10, 10));
  });
  return image;
}

function clampByte(v: number): number {
  return Math.min(255, Math.max(0, Math.round(v)));
}

/** Collects chunks; the caption is their utterances joined by single spaces. */
export class NarrativeBuilder {
  readonly chunks: NarrativeChunkJson[] = [];

  text(utterance: string): this {
    this.chunks.push({ utterance, segment_ids: [], noun: false, plural: false });
    return this;
  }

  /** A noun chunk; `type` (grounding scenes only) becomes its `phrase_type` key. */
  noun(utterance: string, segments: readonly SyntheticSegment[], plural: boolean, type?: PhraseType): this {
    const chunk: NarrativeChunkJson = { utterance, segment_ids: segments.map((s) => String(s.id)), noun: true, plural };
    if (type !== undefined && segments.length > 0) chunk.phrase_type = type;
    this.chunks.push(chunk);
    return this;
  }

  build(): SyntheticNarrative {
    return { annotator_id: 0, caption: this.chunks.map((c) => c.utterance).join(' '), segments: this.chunks };
  }
}
