/** What a synthetic scene is, in memory and in the png_coco file: the types both scene kinds and the benchmark writer share. */
/** One chunk of a png_coco record, as in the JSON file. */
export interface NarrativeChunkJson {
  utterance: string;
  segment_ids: string[];
  noun: boolean;
  plural: boolean;
  /** Grounding scenes only: what it takes to resolve the phrase (an extra key the real format does not have; png-metrics reads it as a tag). */
  phrase_type?: PhraseType;
}

/**
 * What a phrase of a grounding scene needs to be resolved: `unary` (its own colour and shape, or a
 * stuff name), `twin-relation` / `twin-size` / `twin-order` (one of 2–4 instances of the same colour
 * and shape, told apart by a relation to an anchor or to stuff, by relative size, or by order),
 * `binding` (every combination of two colours and two shapes is present), `plural-subset` (some of
 * the instances of a colour and shape, by the stuff they are on) and `occluded` (the instance partly
 * hidden behind another shape).
 */
export type PhraseType = 'unary' | 'twin-relation' | 'twin-size' | 'twin-order' | 'binding' | 'plural-subset' | 'occluded';
/** Every {@link PhraseType}, in report order. */
export const PHRASE_TYPES: readonly PhraseType[] = ['unary', 'twin-relation', 'twin-size', 'twin-order', 'binding', 'plural-subset', 'occluded'];

/**
 * `unary`: the original scenes (every thing phrase is solved by its own colour and shape; the
 * control). `grounding`: scenes whose thing phrases mostly need relations, size, order, binding or
 * occlusion; every grounded chunk carries its `phrase_type`.
 */
export type SceneKind = 'unary' | 'grounding';

/** One narrative of a synthetic scene (a png_coco record without its image id). */
export interface SyntheticNarrative {
  annotator_id: number;
  caption: string;
  segments: NarrativeChunkJson[];
}

/** One panoptic segment of a synthetic scene (the fields of COCO `segments_info`). */
export interface SyntheticSegment {
  id: number;
  category_id: number;
  /** COCO bbox [x, y, w, h] in whole pixels. */
  bbox: [number, number, number, number];
  area: number;
  iscrowd: 0 | 1;
}

/** A synthetic image with its panoptic segmentation and narratives, in memory. */
export interface SyntheticScene {
  height: number;
  width: number;
  /** RGB, row-major, 3 bytes per pixel. */
  image: Uint8Array;
  /** Panoptic segment id of every pixel, row-major (never 0: stuff covers the background). */
  ids: Uint32Array;
  /** Segments with at least one pixel, stuff first, then things in drawing order. */
  segments: SyntheticSegment[];
  /** One or two narratives. */
  narratives: SyntheticNarrative[];
}

/** Options of {@link synthesizeScene}. */
export interface SceneOptions {
  /** Default 'unary'. */
  kind?: SceneKind;
  /** [height, width]; default [64, 64] for 'unary' scenes, {@link GROUNDING_DEFAULT_SIZE} for 'grounding' scenes. */
  size?: readonly [number, number];
  /** Probability that a narrative gets extra sentences that take it past 77 CLIP tokens; default 0.25. */
  longCaptionRate?: number;
  /** Probability that an image gets a second narrative by another annotator; default 0.35 (0.5 for 'grounding' scenes). */
  secondNarrativeRate?: number;
}
