/**
 * Grounding scenes: the things of a scene are arranged so that most thing phrases cannot be
 * resolved by their own colour and shape words. One or two episodes per scene, each a
 * {@link PhraseType}: twins (2–4 instances of one colour and shape, one told apart by a relation to a
 * unique anchor or to the stuff it stands on, by relative size, or by order), binding (every
 * combination of two colours and two shapes), plural subsets (the instances on one stuff region
 * while others stand on another), occlusion (the instance partly hidden behind another shape). A few
 * extra shapes, some only a few pixels wide, are named by unary phrases. Relations are written both
 * after the noun ("a blue circle left of the red square") and before it ("Left of the red square
 * there is a blue circle"), so a left-to-right text encoder cannot resolve them by luck.
 *
 * Semantics (checked on the placed shapes, so every phrase names exactly its segments):
 * - "left of / right of / above / below A": the centre is beyond A's centre by more than half their
 *   summed reach along that axis, and that axis dominates the offset; every other twin lies on the
 *   other side of A's centre along that axis.
 * - "in / on / in front of <stuff>": ≥ 70 % of the shape's pixels lie on that stuff band; every other
 *   twin (or, for a plural subset, every instance outside the subset) has ≤ 30 % there.
 * - "bigger / smaller": area ratio ≥ 2 to every other twin; superlatives for three twins.
 * - "leftmost / rightmost / topmost / lowest": the centre leads every other twin by ≥ half a radius.
 * - "behind A": 20–35 % of the shape is hidden by A; the other twins are not hidden at all.
 * Things do not overlap except an occluded instance and its occluder.
 */
import { Prng, deriveSeed } from '@png/node-utils';
import {
  COLOURS,
  FILLERS,
  NUMBER_WORDS,
  NarrativeBuilder,
  SHAPES,
  STUFF,
  drawShape,
  drawStuffBands,
  measureSegments,
  newSegment,
  renderPixels,
  segmentIdAllocator,
  shapePixels,
  type Rgb,
  type ShapeKind,
  type StuffKind,
  type StuffRegion,
} from './scene_drawing';
import type { PhraseType, SceneOptions, SyntheticNarrative, SyntheticScene, SyntheticSegment } from './scene';

type EpisodeType = Exclude<PhraseType, 'unary'>;
const EPISODE_TYPES: readonly EpisodeType[] = ['twin-relation', 'twin-size', 'twin-order', 'binding', 'plural-subset', 'occluded'];
/** How often each episode is drawn, so that every type gets a similar number of phrases (binding writes 2–3 per sentence). */
const EPISODE_WEIGHTS: Record<EpisodeType, number> = {
  'twin-relation': 1.2,
  'twin-size': 1,
  'twin-order': 0.9,
  binding: 1,
  'plural-subset': 1.1,
  occluded: 1.6,
};
/** Probability of a second episode (when it fits). */
const SECOND_EPISODE_RATE = 0.6;

/**
 * Shape radii as fractions of the image side: large enough that a perfect mask at stride 4 keeps
 * ≥ 95 AR on every phrase type at 96×96 (README), up to half the image across. `sizeStep` is the
 * radius ratio between twins told apart by size (area ratio ≥ 2).
 */
const RADIUS = {
  twin: [0.14, 0.21],
  anchor: [0.13, 0.19],
  sizeSmallestOfTwo: [0.13, 0.16],
  sizeSmallestOfThree: [0.115, 0.13],
  sizeStep: [1.42, 1.55],
  binding: [0.13, 0.18],
  subset: [0.13, 0.16],
  occluded: [0.19, 0.25],
  extra: [0.13, 0.2],
  tiny: [0.02, 0.05],
} as const;
/** Rings (two borders) and triangles (sharp corners) lose most to a coarse mask: drawn this much larger. */
const SHAPE_SCALE: Record<ShapeKind, number> = { circle: 1, square: 1, triangle: 1.1, ring: 1.15, diamond: 1 };
/** Probability that an extra shape is tiny (a few pixels: the small and medium size buckets). */
const TINY_EXTRA_RATE = 0.07;

/** Prepositions of a thing standing on a stuff band (after and before the noun). */
const ON_STUFF: Record<StuffKind, string> = { sky: 'in', wall: 'in front of', grass: 'on', water: 'in', sand: 'on', tree: 'in front of' };
const TAILS = ['here.', 'in this picture.', 'as well.', 'in the scene.'];

/** A shape of the scene: where it is, what it looks like, and its panoptic segment. */
interface Thing {
  shape: ShapeKind;
  colour: string;
  r: number;
  cx: number;
  cy: number;
  /** Radius of the disc that holds the shape (r · reach). */
  reach: number;
  /** Drawn after every other thing (occluders). */
  onTop: boolean;
  /** Fraction of the shape's pixels on each stuff band (by segment id), before other things are drawn. */
  onStuff: Map<number, number>;
  segment: SyntheticSegment;
}

/** A phrase to write: its text, its segments, whether it names several, and its type. */
interface Mention {
  text: string;
  segments: readonly SyntheticSegment[];
  plural: boolean;
  type: PhraseType;
}

/** A mention of things (plural when there are several). */
function mention(text: string, things: readonly Thing[], type: PhraseType): Mention {
  return { text, segments: things.map((t) => t.segment), plural: things.length > 1, type };
}

/** A sentence an episode can contribute to a narrative. */
type Sentence = (b: NarrativeBuilder, rng: Prng) => void;

/** A placed episode: the unary overview mentions it offers and the target sentences it can write. */
interface Episode {
  type: EpisodeType;
  overview: Mention[];
  sentences: Sentence[];
}

/** The canvas things are placed on: the stuff map and the discs already taken. */
class Canvas {
  readonly things: Thing[] = [];

  constructor(
    readonly height: number,
    readonly width: number,
    readonly stuffIds: Uint32Array,
    readonly stuff: readonly StuffRegion[],
    private readonly newId: () => number,
  ) {}

  get side(): number {
    return Math.min(this.height, this.width);
  }

  /** The shape's pixels (row-major indices) at (cx, cy), as drawn. */
  footprint(shape: ShapeKind, cx: number, cy: number, r: number): number[] {
    return shapePixels(this.width, this.height, SHAPES[shape].inside, cx, cy, r);
  }

  /** Whether a disc of radius `reach` at (cx, cy) is clear of every placed thing except `except`, with a 1-pixel gap. */
  free(cx: number, cy: number, reach: number, except?: Thing): boolean {
    return this.things.every((t) => t === except || Math.hypot(t.cx - cx, t.cy - cy) >= t.reach + reach + 1);
  }

  /** A uniformly random centre keeping the shape inside the image. */
  randomCentre(rng: Prng, reach: number): [number, number] {
    return [rng.uniform(reach, this.width - reach), rng.uniform(reach, this.height - reach)];
  }

  /** Creates a thing at (cx, cy) without checking room. */
  make(shape: ShapeKind, colour: string, r: number, cx: number, cy: number, onTop = false): Thing {
    const pixels = this.footprint(shape, cx, cy, r);
    const onStuff = new Map<number, number>();
    for (const p of pixels) onStuff.set(this.stuffIds[p], (onStuff.get(this.stuffIds[p]) ?? 0) + 1 / pixels.length);
    const thing: Thing = {
      shape,
      colour,
      r,
      cx,
      cy,
      reach: r * SHAPES[shape].reach,
      onTop,
      onStuff,
      segment: newSegment(this.newId(), SHAPES[shape].categoryId, 0),
    };
    this.things.push(thing);
    return thing;
  }

  /**
   * Places a shape of radius r · SHAPE_SCALE[shape] at a random free spot that satisfies `accept`
   * (given the centre and that radius); undefined after `tries` misses.
   */
  place(
    rng: Prng,
    shape: ShapeKind,
    colour: string,
    radius: number,
    accept: (cx: number, cy: number, r: number) => boolean = () => true,
    tries = 120,
  ): Thing | undefined {
    const r = radius * SHAPE_SCALE[shape];
    const reach = r * SHAPES[shape].reach;
    if (2 * reach > this.side) return undefined;
    for (let t = 0; t < tries; t++) {
      const [cx, cy] = this.randomCentre(rng, reach);
      if (this.free(cx, cy, reach) && accept(cx, cy, r)) return this.make(shape, colour, r, cx, cy);
    }
    return undefined;
  }

  /** Fraction of a shape at (cx, cy) on the stuff band `region`. */
  fractionOn(shape: ShapeKind, cx: number, cy: number, r: number, region: StuffRegion): number {
    const pixels = this.footprint(shape, cx, cy, r);
    return pixels.filter((p) => this.stuffIds[p] === region.segment.id).length / Math.max(1, pixels.length);
  }

  /** Forgets every thing placed after the first `count` (an episode that did not fit). */
  truncate(count: number): void {
    this.things.length = count;
  }
}

/** The (colour, shape) combinations in use, so that every combination names one group only. */
class Combos {
  private readonly used = new Set<string>();

  constructor(readonly palette: readonly string[]) {}

  has(colour: string, shape: ShapeKind): boolean {
    return this.used.has(`${colour} ${shape}`);
  }

  take(colour: string, shape: ShapeKind): void {
    this.used.add(`${colour} ${shape}`);
  }

  /** A free combination: colour from `colours` in order of preference, shape at random but not in `avoid`. */
  pick(rng: Prng, colours: readonly string[], avoid: readonly ShapeKind[] = []): [string, ShapeKind] | undefined {
    for (const colour of colours) {
      const shapes = rng.shuffle(Object.keys(SHAPES) as ShapeKind[]).filter((s) => !avoid.includes(s) && !this.has(colour, s));
      if (shapes.length > 0) return [colour, shapes[0]];
    }
    return undefined;
  }
}

/**
 * Builds one grounding scene from `seed` (see the module comment). Deterministic: the same seed and
 * options give the same scene.
 */
export function synthesizeGroundingScene(seed: number, height: number, width: number, options: SceneOptions): SyntheticScene {
  const rng = new Prng(seed);
  const noise = new Prng(deriveSeed(seed, 1));
  const newId = segmentIdAllocator(rng);
  const ids = new Uint32Array(height * width);
  const colourOf = new Map<number, Rgb>();
  const stuff = drawStuffBands(rng, ids, height, width, newId, colourOf);
  const canvas = new Canvas(height, width, ids.slice(), stuff, newId);
  const combos = new Combos(rng.shuffle(Object.keys(COLOURS)));

  const episodes: Episode[] = [];
  const first = pickWeighted(rng, EPISODE_TYPES);
  for (const type of [first, ...EPISODE_TYPES.filter((t) => t !== first)]) {
    const episode = placeEpisode(type, canvas, combos, rng);
    if (episode) {
      episodes.push(episode);
      break;
    }
  }
  if (rng.chance(SECOND_EPISODE_RATE)) {
    const episode = placeEpisode(
      pickWeighted(
        rng,
        EPISODE_TYPES.filter((t) => t !== episodes[0]?.type),
      ),
      canvas,
      combos,
      rng,
    );
    if (episode) episodes.push(episode);
  }
  const extras = placeExtras(canvas, combos, rng);

  for (const thing of [...canvas.things.filter((t) => !t.onTop), ...canvas.things.filter((t) => t.onTop)]) {
    colourOf.set(thing.segment.id, COLOURS[thing.colour]);
    drawShape(ids, width, height, SHAPES[thing.shape].inside, thing.cx, thing.cy, thing.r, thing.segment.id);
  }
  const all = [...stuff.map((s) => s.segment), ...canvas.things.map((t) => t.segment)];
  measureSegments(ids, width, all);
  const image = renderPixels(ids, width, colourOf, new Set(stuff.map((s) => s.segment.id)), noise);

  const longRate = options.longCaptionRate ?? 0.25;
  const narratives = [writeNarrative(rng, episodes, extras, stuff, longRate, 'first')];
  if (rng.chance(options.secondNarrativeRate ?? 0.5)) narratives.push(writeNarrative(rng, episodes, extras, stuff, longRate, 'second'));
  let annotator = rng.int(1, 150);
  for (const narrative of narratives) narrative.annotator_id = annotator += rng.int(1, 20);
  return { height, width, image, ids, segments: all.filter((s) => s.area > 0), narratives };
}

/** Tries to place an episode of `type` (up to 40 layouts); undefined if none fits. */
function placeEpisode(type: EpisodeType, canvas: Canvas, combos: Combos, rng: Prng): Episode | undefined {
  const start = canvas.things.length;
  for (let attempt = 0; attempt < 40; attempt++) {
    const episode = EPISODE_PLACERS[type](canvas, combos, rng);
    if (episode) return episode;
    canvas.truncate(start);
  }
  return undefined;
}

const EPISODE_PLACERS: Record<EpisodeType, (canvas: Canvas, combos: Combos, rng: Prng) => Episode | undefined> = {
  'twin-relation': placeTwinRelation,
  'twin-size': placeTwinSize,
  'twin-order': placeTwinOrder,
  binding: placeBinding,
  'plural-subset': placePluralSubset,
  occluded: placeOccluded,
};

/** `count` same-coloured, same-shaped twins of radius ≈ r (±10 %), placed at random; undefined if they do not fit. */
function placeTwins(canvas: Canvas, rng: Prng, colour: string, shape: ShapeKind, count: number, r: number): Thing[] | undefined {
  const twins: Thing[] = [];
  for (let k = 0; k < count; k++) {
    const twin = canvas.place(rng, shape, colour, r * rng.uniform(0.9, 1.1));
    if (!twin) return undefined;
    twins.push(twin);
  }
  return twins;
}

/** Spatial relations of a thing to an anchor, with the words after and before the noun. */
const DIRECTIONS = [
  { axis: 0, sign: -1, after: ['left of', 'to the left of'], before: ['Left of', 'To the left of'] },
  { axis: 0, sign: 1, after: ['right of', 'to the right of'], before: ['Right of', 'To the right of'] },
  { axis: 1, sign: -1, after: ['above'], before: ['Above'] },
  { axis: 1, sign: 1, after: ['below', 'under'], before: ['Below', 'Under'] },
] as const;

function placeTwinRelation(canvas: Canvas, combos: Combos, rng: Prng): Episode | undefined {
  const free = combos.pick(rng, combos.palette);
  if (!free) return undefined; // every colour and shape is taken
  const [colour, shape] = free;
  const anchorCombo = combos.pick(rng, rng.chance(0.5) ? [colour, ...combos.palette] : combos.palette.filter((c) => c !== colour), [shape]);
  if (!anchorCombo) return undefined;
  const side = canvas.side;
  const anchor = canvas.place(rng, anchorCombo[1], anchorCombo[0], uniform(rng, RADIUS.anchor) * side);
  if (!anchor) return undefined;
  const twins = placeTwins(canvas, rng, colour, shape, rng.pick([2, 3, 3, 4]), uniform(rng, RADIUS.twin) * side);
  if (!twins) return undefined;
  const sentences: Sentence[] = [];
  for (const target of twins) {
    const others = twins.filter((t) => t !== target);
    for (const d of DIRECTIONS) {
      const offset = (t: Thing) => (d.axis === 0 ? t.cx - anchor.cx : t.cy - anchor.cy) * d.sign;
      const across = (t: Thing) => (d.axis === 0 ? t.cy - anchor.cy : t.cx - anchor.cx);
      if (offset(target) > (target.reach + anchor.reach) / 2 && offset(target) > Math.abs(across(target)) && others.every((o) => offset(o) < 0)) {
        sentences.push(
          relationSentence(
            mention(thingText(rng, colour, shape, 1), [target], 'twin-relation'),
            d.after,
            d.before,
            mention(`the ${anchor.colour} ${anchor.shape}`, [anchor], 'unary'),
          ),
        );
      }
    }
    for (const region of canvas.stuff) {
      const id = region.segment.id;
      if ((target.onStuff.get(id) ?? 0) >= 0.7 && others.every((o) => (o.onStuff.get(id) ?? 0) <= 0.3)) {
        sentences.push(stuffRelationSentence(mention(thingText(rng, colour, shape, 1), [target], 'twin-relation'), region));
      }
    }
  }
  if (sentences.length === 0) return undefined;
  combos.take(colour, shape);
  combos.take(anchor.colour, anchor.shape);
  return { type: 'twin-relation', overview: [groupMention(twins), mention(`a ${anchor.colour} ${anchor.shape}`, [anchor], 'unary')], sentences };
}

function placeTwinSize(canvas: Canvas, combos: Combos, rng: Prng): Episode | undefined {
  const free = combos.pick(rng, combos.palette);
  if (!free) return undefined; // every colour and shape is taken
  const [colour, shape] = free;
  const side = canvas.side;
  const count = rng.pick([2, 3]);
  const radii = [uniform(rng, count === 2 ? RADIUS.sizeSmallestOfTwo : RADIUS.sizeSmallestOfThree) * side];
  while (radii.length < count) radii.push(radii[radii.length - 1] * uniform(rng, RADIUS.sizeStep));
  const twins: Thing[] = [];
  for (const r of rng.shuffle(radii)) {
    const twin = canvas.place(rng, shape, colour, r);
    if (!twin) return undefined;
    twins.push(twin);
  }
  const byArea = [...twins].sort((a, b) => a.r - b.r);
  const [smallest, biggest] = [byArea[0], byArea[byArea.length - 1]];
  const words = count === 2 ? { small: 'smaller', big: 'bigger', rest: 'than the other one' } : { small: 'smallest', big: 'biggest', rest: 'of them' };
  const sentences: Sentence[] = [];
  for (const [target, adjective] of [
    [smallest, words.small],
    [biggest, words.big],
  ] as const) {
    sentences.push((b, r) => {
      const type = 'twin-size';
      if (r.chance(0.5)) {
        b.text(r.pick(['There is', 'We can see', 'I can see']));
        b.noun(`the ${adjective} ${colour} ${shape}`, [target.segment], false, type);
        b.text(r.pick(TAILS));
      } else {
        b.text(r.pick(['There is', 'We can see', 'I can see']));
        b.noun(thingText(r, colour, shape, 1), [target.segment], false, type);
        b.text(count === 2 ? `which is ${adjective} ${words.rest}.` : `which is the ${adjective} ${words.rest}.`);
      }
    });
  }
  combos.take(colour, shape);
  return { type: 'twin-size', overview: [groupMention(twins)], sentences };
}

/** Order words: the extreme along an axis, inside the phrase ("the leftmost …") and as a clause. */
const ORDERS = [
  { axis: 0, sign: -1, adjective: 'leftmost', clause: 'on the far left', lead: 'On the far left' },
  { axis: 0, sign: 1, adjective: 'rightmost', clause: 'on the far right', lead: 'On the far right' },
  { axis: 1, sign: -1, adjective: 'topmost', clause: 'at the very top', lead: 'At the very top' },
  { axis: 1, sign: 1, adjective: 'lowest', clause: 'at the very bottom', lead: 'At the very bottom' },
] as const;

function placeTwinOrder(canvas: Canvas, combos: Combos, rng: Prng): Episode | undefined {
  const free = combos.pick(rng, combos.palette);
  if (!free) return undefined; // every colour and shape is taken
  const [colour, shape] = free;
  const twins = placeTwins(canvas, rng, colour, shape, rng.pick([2, 3, 3, 4]), uniform(rng, RADIUS.twin) * canvas.side);
  if (!twins) return undefined;
  const sentences: Sentence[] = [];
  for (const order of ORDERS) {
    const key = (t: Thing) => (order.axis === 0 ? t.cx : t.cy) * order.sign;
    const ranked = [...twins].sort((a, b) => key(b) - key(a));
    const [target, next] = ranked;
    if (key(target) - key(next) < 0.5 * Math.min(target.r, next.r)) continue;
    sentences.push((b, r) => {
      const type = 'twin-order';
      const form = r.int(0, 2);
      if (form === 0) {
        b.text(r.pick(['There is', 'We can see', 'I can see']));
        b.noun(`the ${order.adjective} ${colour} ${shape}`, [target.segment], false, type);
        b.text(r.pick(TAILS));
      } else if (form === 1) {
        b.text(`${order.lead} ${r.pick(['there is', 'we can see'])}`);
        b.noun(thingText(r, colour, shape, 1), [target.segment], false, type);
        b.text(r.pick(TAILS));
      } else {
        b.text(r.pick(['There is', 'We can see', 'I can see']));
        b.noun(thingText(r, colour, shape, 1), [target.segment], false, type);
        b.text(`${order.clause}.`);
      }
    });
  }
  if (sentences.length === 0) return undefined;
  combos.take(colour, shape);
  return { type: 'twin-order', overview: [groupMention(twins)], sentences };
}

function placeBinding(canvas: Canvas, combos: Combos, rng: Prng): Episode | undefined {
  const colours = rng.shuffle(combos.palette.slice(0, 4)).slice(0, 2);
  const shapes = rng.shuffle(Object.keys(SHAPES) as ShapeKind[]).filter((s) => colours.every((c) => !combos.has(c, s)));
  if (shapes.length < 3) return undefined;
  const side = canvas.side;
  const doubled = rng.chance(0.3) ? rng.int(0, 3) : -1;
  const groups: Thing[][] = [];
  for (const [k, [colour, shape]] of colours.flatMap((c) => shapes.slice(0, 2).map((s) => [c, s] as const)).entries()) {
    const group: Thing[] = [];
    for (let n = 0; n < (k === doubled ? 2 : 1); n++) {
      const thing = canvas.place(rng, shape, colour, uniform(rng, RADIUS.binding) * side);
      if (!thing) return undefined;
      group.push(thing);
    }
    groups.push(group);
  }
  // A third shape in one or both colours, so that colour alone fails more often than not.
  const distractors: Thing[] = [];
  for (const colour of rng.shuffle(colours).slice(0, rng.chance(0.5) ? 2 : 1)) {
    const thing = canvas.place(rng, shapes[2], colour, uniform(rng, RADIUS.binding) * side);
    if (!thing) return undefined;
    distractors.push(thing);
  }
  for (const thing of [...groups.map((g) => g[0]), ...distractors]) combos.take(thing.colour, thing.shape);
  const sentence: Sentence = (b, r) => {
    const named = r.shuffle(groups).slice(0, r.int(2, 3));
    b.text(named[0].length > 1 ? r.pick(['There are', 'We can see']) : r.pick(['There is', 'We can see']));
    named.forEach((group, k) => {
      if (k > 0) b.text(k === named.length - 1 ? 'and' : 'and also');
      noun(b, mention(thingText(r, group[0].colour, group[0].shape, group.length), group, 'binding'));
    });
    b.text(r.pick(TAILS));
  };
  return { type: 'binding', overview: distractors.map((d) => groupMention([d])), sentences: [sentence] };
}

function placePluralSubset(canvas: Canvas, combos: Combos, rng: Prng): Episode | undefined {
  if (canvas.stuff.length < 2) return undefined;
  const free = combos.pick(rng, combos.palette);
  if (!free) return undefined; // every colour and shape is taken
  const [colour, shape] = free;
  const [inside, outside] = rng.shuffle(canvas.stuff).slice(0, 2);
  const side = canvas.side;
  const counts = rng.pick([
    [2, 2],
    [2, 3],
    [3, 2],
  ]);
  const groups: Thing[][] = [[], []];
  for (const [g, region] of [inside, outside].entries()) {
    for (let n = 0; n < counts[g]; n++) {
      const r = uniform(rng, RADIUS.subset) * side;
      const thing = canvas.place(rng, shape, colour, r, (cx, cy, radius) => canvas.fractionOn(shape, cx, cy, radius, region) >= 0.8);
      if (!thing) return undefined;
      groups[g].push(thing);
    }
  }
  // A shape of the same colour elsewhere, so that colour alone fails more often than not.
  const distractorShape = combos.pick(rng, [colour], [shape]);
  const distractor = distractorShape && canvas.place(rng, distractorShape[1], colour, uniform(rng, RADIUS.subset) * side);
  if (!distractor) return undefined;
  combos.take(colour, shape);
  combos.take(colour, distractor.shape);
  const sentences = (
    [
      [groups[0], inside],
      [groups[1], outside],
    ] as const
  ).map(([group, region]): Sentence => {
    const type = group.length > 1 ? 'plural-subset' : 'twin-relation';
    return stuffRelationSentence(mention(thingText(rng, colour, shape, group.length), group, type), region);
  });
  return { type: 'plural-subset', overview: [groupMention([...groups[0], ...groups[1]]), groupMention([distractor])], sentences };
}

function placeOccluded(canvas: Canvas, combos: Combos, rng: Prng): Episode | undefined {
  const free = combos.pick(rng, combos.palette);
  if (!free) return undefined; // every colour and shape is taken
  const [colour, shape] = free;
  const coverCombo = combos.pick(
    rng,
    combos.palette.filter((c) => c !== colour),
    [shape],
  );
  if (!coverCombo) return undefined;
  const side = canvas.side;
  const r = uniform(rng, RADIUS.occluded) * side;
  const target = canvas.place(rng, shape, colour, r);
  if (!target) return undefined;
  const { cx: tx, cy: ty, r: tr } = target;
  // The occluder: its centre on a circle around the target's, hiding 20–35 % of the target.
  const coverR = tr * rng.uniform(0.65, 0.85);
  const coverReach = coverR * SHAPES[coverCombo[1]].reach;
  const targetPixels = new Set(canvas.footprint(shape, tx, ty, tr));
  let cover: Thing | undefined;
  for (let t = 0; t < 60 && !cover; t++) {
    const angle = rng.uniform(0, 2 * Math.PI);
    const distance = rng.uniform(0.6, 1.3) * tr;
    const [cx, cy] = [tx + distance * Math.cos(angle), ty + distance * Math.sin(angle)];
    if (cx < coverReach || cx > canvas.width - coverReach || cy < coverReach || cy > canvas.height - coverReach || !canvas.free(cx, cy, coverReach, target))
      continue;
    const hidden = canvas.footprint(coverCombo[1], cx, cy, coverR).filter((p) => targetPixels.has(p)).length / targetPixels.size;
    if (hidden >= 0.2 && hidden <= 0.35) cover = canvas.make(coverCombo[1], coverCombo[0], coverR, cx, cy, true);
  }
  if (!cover) return undefined;
  const twins = placeTwins(canvas, rng, colour, shape, rng.pick([1, 1, 2]), r);
  if (!twins) return undefined;
  combos.take(colour, shape);
  combos.take(cover.colour, cover.shape);
  const coverMention = mention(`the ${cover.colour} ${cover.shape}`, [cover], 'unary');
  const sentence: Sentence = (b, r) => {
    if (r.chance(0.25)) {
      b.text(r.pick(['There is', 'We can see', 'I can see']));
      b.noun(`the partly hidden ${colour} ${shape}`, [target.segment], false, 'occluded');
      b.text(r.pick(TAILS));
    } else {
      relationSentence(
        mention(thingText(r, colour, shape, 1), [target], 'occluded'),
        ['behind', 'partly hidden behind'],
        ['Behind', 'Partly hidden behind'],
        coverMention,
      )(b, r);
    }
  };
  return {
    type: 'occluded',
    overview: [groupMention([target, ...twins]), mention(`a ${cover.colour} ${cover.shape}`, [cover], 'unary')],
    sentences: [sentence],
  };
}

/** 0–2 extra shapes of free combinations, a third of them only a few pixels wide; each named by a unary phrase. */
function placeExtras(canvas: Canvas, combos: Combos, rng: Prng): Mention[] {
  const extras: Mention[] = [];
  const count = rng.pick([0, 1, 1, 2]);
  for (let k = 0; k < count; k++) {
    const combo = combos.pick(rng, rng.chance(0.7) ? combos.palette.slice(0, 3) : combos.palette.slice(3));
    if (!combo) continue;
    const tiny = rng.chance(TINY_EXTRA_RATE);
    const r = uniform(rng, tiny ? RADIUS.tiny : RADIUS.extra) * canvas.side;
    const thing = canvas.place(rng, combo[1], combo[0], r);
    if (!thing) continue;
    combos.take(combo[0], combo[1]);
    extras.push(mention(`${tiny ? 'a small' : 'a'} ${combo[0]} ${combo[1]}`, [thing], 'unary'));
  }
  return extras;
}

function uniform(rng: Prng, [lo, hi]: readonly [number, number]): number {
  return rng.uniform(lo, hi);
}

function pickWeighted(rng: Prng, types: readonly EpisodeType[]): EpisodeType {
  let u = rng.uniform(
    0,
    types.reduce((sum, t) => sum + EPISODE_WEIGHTS[t], 0),
  );
  for (const t of types) {
    u -= EPISODE_WEIGHTS[t];
    if (u < 0) return t;
  }
  return types[types.length - 1];
}

/** "a blue circle", "an orange ring", "two red squares", sometimes with "the". */
function thingText(rng: Prng, colour: string, shape: ShapeKind, count: number): string {
  if (count > 1) return `${rng.chance(0.3) ? 'the' : NUMBER_WORDS[count]} ${colour} ${shape}s`;
  return rng.chance(0.25) ? `the ${colour} ${shape}` : `${/^[aeiou]/.test(colour) ? 'an' : 'a'} ${colour} ${shape}`;
}

/** All instances of one colour and shape: a unary phrase ("three blue circles"). */
function groupMention(things: readonly Thing[]): Mention {
  const { colour, shape } = things[0];
  return mention(
    things.length > 1 ? `${NUMBER_WORDS[things.length]} ${colour} ${shape}s` : `${/^[aeiou]/.test(colour) ? 'an' : 'a'} ${colour} ${shape}`,
    things,
    'unary',
  );
}

function noun(b: NarrativeBuilder, m: Mention): void {
  b.noun(m.text, m.segments, m.plural, m.type);
}

/** "There is <target> left of <anchor> here." or "Left of <anchor> there is <target> here.": relation after or before the noun. */
function relationSentence(target: Mention, after: readonly string[], before: readonly string[], anchor: Mention): Sentence {
  return (b, rng) => {
    const plural = target.plural;
    if (rng.chance(0.5)) {
      b.text(plural ? rng.pick(['There are', 'We can see']) : rng.pick(['There is', 'We can see', 'I can see']));
      noun(b, target);
      b.text(rng.pick(after));
      noun(b, anchor);
    } else {
      b.text(rng.pick(before));
      noun(b, anchor);
      b.text(plural ? rng.pick(['there are', 'we can see']) : rng.pick(['there is', 'we can see', 'I can see']));
      noun(b, target);
    }
    b.text(rng.pick(TAILS));
  };
}

function stuffRelationSentence(target: Mention, region: StuffRegion): Sentence {
  const preposition = ON_STUFF[region.kind];
  return (b, rng) => relationSentence(target, [preposition], [preposition[0].toUpperCase() + preposition.slice(1)], stuffMention(rng, region))(b, rng);
}

/**
 * One narrative: (first style) an opening overview of unary phrases, then one or two target sentences
 * per episode, the extra shapes, the stuff not yet named, and sometimes long filler sentences.
 */
function writeNarrative(
  rng: Prng,
  episodes: readonly Episode[],
  extras: readonly Mention[],
  stuff: readonly StuffRegion[],
  longRate: number,
  style: 'first' | 'second',
): SyntheticNarrative {
  const b = new NarrativeBuilder();
  if (style === 'first') {
    const overview = [...episodes.flatMap((e) => e.overview), ...extras].slice(0, 3);
    if (overview.length > 0) {
      b.text(rng.pick(['In this image we can see', 'Here we can see', 'In this picture I can see']));
      overview.forEach((m, k) => {
        if (k > 0) b.text(k === overview.length - 1 ? 'and' : 'and also');
        noun(b, m);
      });
      b.text(rng.pick(TAILS));
    }
  }
  for (const episode of style === 'first' ? episodes : [...episodes].reverse()) {
    for (const sentence of rng.shuffle(episode.sentences).slice(0, rng.int(1, 2))) sentence(b, rng);
  }
  const named = () => new Set(b.chunks.flatMap((c) => c.segment_ids));
  const unnamedExtras = extras.filter((m) => !named().has(String(m.segments[0].id)));
  if (unnamedExtras.length > 0) {
    b.text(rng.pick(['We can also see', 'There is also']));
    unnamedExtras.forEach((m, k) => {
      if (k > 0) b.text('and');
      noun(b, m);
    });
    b.text(rng.pick(TAILS));
  }
  const rest = stuff.filter((s) => s.segment.area > 0 && !named().has(String(s.segment.id)));
  rest.forEach((s, k) => {
    b.text(
      k === 0
        ? rng.pick(['At the top there is', 'In the background there is', 'We can also see'])
        : rng.pick(['Below that there is', 'At the bottom we can see', 'There is also']),
    );
    noun(b, stuffMention(rng, s));
    b.text(rng.pick(TAILS));
  });
  if (rng.chance(longRate)) {
    for (const filler of rng.shuffle(FILLERS)) b.text(filler);
    b.text('In the end');
    b.noun('the picture', [], false);
    b.text('is a little blurry.');
  }
  return b.build();
}

/** "the grass", "some trees": a unary stuff phrase. */
function stuffMention(rng: Prng, region: StuffRegion): Mention {
  return { text: rng.pick(STUFF[region.kind].phrases), segments: [region.segment], plural: STUFF[region.kind].plural, type: 'unary' };
}
