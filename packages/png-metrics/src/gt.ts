/**
 * Ground truth of the PNG benchmark (spec §1), TensorFlow-free: narrative records
 * (`png_coco_{split}.json`), COCO panoptic JSON, panoptic PNG id maps, and phrase extraction with
 * the clean protocol (§1.7): each noun chunk with non-empty `segment_ids` is one phrase; plural ⇔
 * 2 or more listed segment ids (the `plural` flag is ignored); thing ⇔ the last listed segment's
 * category has `isthing = 1`; the GT mask is the binary union of the phrase's segments at the
 * original H×W; `iscrowd` segments are ordinary; no pixel is ignored.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import pngjs from 'pngjs';
import type { PngSample } from './evaluator';
import { fieldError, isRecord, readJsonFile } from './json_input';
import { alignUtterances, type NarrativeDrop } from './pre_process';

/** One chunk of a narrative caption (`segments[]` of a png_coco record). */
export interface NarrativeChunk {
  utterance: string;
  /** Panoptic segment ids (parsed from the JSON strings), in file order, duplicates kept. */
  segmentIds: number[];
  noun: boolean;
  /** The annotated plural flag; kept for reference, never used by the metric. */
  plural: boolean | undefined;
  /**
   * The chunk's other string-valued keys (e.g. `{"phrase_type": "twin-relation"}` of the synthetic
   * benchmark): tags that can define extra evaluation groups. Empty for the real benchmark's chunks.
   */
  tags: Readonly<Record<string, string>>;
}

/** One narrative record of `png_coco_{split}.json`. */
export interface NarrativeRecord {
  imageId: number;
  annotatorId: number | undefined;
  caption: string | undefined;
  segments: NarrativeChunk[];
}

/** One segment of a COCO panoptic annotation's `segments_info`. */
export interface PanopticSegment {
  id: number;
  categoryId: number;
  iscrowd: boolean;
}

/** The parts of a COCO `panoptic_{split}.json` that evaluation uses. */
export interface PanopticIndex {
  /** Original size of every image, by image id. */
  images: Map<number, { width: number; height: number }>;
  /** `segments_info` of every annotated image (file order), by image id. */
  segmentsByImage: Map<number, PanopticSegment[]>;
  /** `isthing` of every category, by category id. */
  isThingByCategory: Map<number, boolean>;
}

/** One evaluated phrase of a narrative record. */
export interface GtPhrase {
  recordIndex: number;
  imageId: number;
  /** Index of the chunk in the record's `segments`. */
  chunkIndex: number;
  utterance: string;
  segmentIds: number[];
  isThing: boolean;
  isPlural: boolean;
  /** The chunk's tags ({@link NarrativeChunk.tags}). */
  tags: Readonly<Record<string, string>>;
}

/** A decoded panoptic PNG: segment id of every pixel, row-major (0 = void). */
export interface PanopticIdMap {
  width: number;
  height: number;
  ids: Uint32Array;
}

/**
 * Parses and validates the records of a `png_coco_{split}.json` file (a JSON array).
 * Required: `image_id` (decimal string, or integer), `segments[]` with `utterance` (string),
 * `segment_ids` (decimal strings, or integers) and `noun` (bool). `annotator_id` (int), `caption`
 * (string) and `plural` (bool) are checked when present; other string-valued keys of a chunk become
 * its `tags`, and any other key is ignored.
 * @param source file name used in error messages.
 * @throws naming the record index and the field.
 */
export function parseNarrativeRecords(json: unknown, source = 'png_coco records'): NarrativeRecord[] {
  if (!Array.isArray(json)) throw fieldError(source, '(root)', 'a JSON array of narrative records', isRecord(json) ? '{...}' : json);
  return json.map((record, i) => {
    const where = `${source}: record ${i}`;
    if (!isRecord(record)) throw fieldError(where, '(record)', 'an object', record);
    const { annotator_id, caption, segments } = record;
    if (annotator_id !== undefined && !Number.isInteger(annotator_id)) throw fieldError(where, 'annotator_id', 'an integer', annotator_id);
    if (caption !== undefined && typeof caption !== 'string') throw fieldError(where, 'caption', 'a string', caption);
    if (!Array.isArray(segments)) throw fieldError(where, 'segments', 'an array of caption chunks', segments);
    return {
      imageId: parseId(record.image_id, where, 'image_id'),
      annotatorId: annotator_id as number | undefined,
      caption: caption as string | undefined,
      segments: segments.map((chunk, c) => parseChunk(chunk, where, `segments[${c}]`)),
    };
  });
}

function parseChunk(chunk: unknown, where: string, field: string): NarrativeChunk {
  if (!isRecord(chunk)) throw fieldError(where, field, 'an object {utterance, segment_ids, noun, plural}', chunk);
  const { utterance, segment_ids, noun, plural } = chunk;
  if (typeof utterance !== 'string') throw fieldError(where, `${field}.utterance`, 'a string', utterance);
  if (!Array.isArray(segment_ids)) throw fieldError(where, `${field}.segment_ids`, 'an array of segment id strings', segment_ids);
  if (typeof noun !== 'boolean') throw fieldError(where, `${field}.noun`, 'true or false', noun);
  if (plural !== undefined && typeof plural !== 'boolean') throw fieldError(where, `${field}.plural`, 'true or false', plural);
  const tags: Record<string, string> = {};
  for (const [key, value] of Object.entries(chunk)) {
    if (typeof value === 'string' && !CHUNK_KEYS.has(key)) tags[key] = value;
  }
  return { utterance, segmentIds: segment_ids.map((id, k) => parseId(id, where, `${field}.segment_ids[${k}]`)), noun, plural, tags };
}

/** The keys of a png_coco chunk that are not tags. */
const CHUNK_KEYS = new Set(['utterance', 'segment_ids', 'noun', 'plural']);

/** A COCO id given as a decimal string (png_coco) or a non-negative integer (COCO JSON). */
function parseId(value: unknown, where: string, field: string): number {
  if (typeof value === 'string' && /^\d+$/.test(value)) return Number.parseInt(value, 10);
  if (Number.isInteger(value) && (value as number) >= 0) return value as number;
  throw fieldError(where, field, 'a non-negative integer id (a decimal string such as "397133")', value);
}

/**
 * Parses the fields of a COCO `panoptic_{split}.json` used by evaluation (§1.2): `images[]`
 * (`id`, `width`, `height`), `annotations[]` (`image_id`, `segments_info[]` with `id`,
 * `category_id`, `iscrowd`) and `categories[]` (`id`, `isthing`).
 * @param source file name used in error messages.
 * @throws naming the array, index and field.
 */
export function parsePanopticJson(json: unknown, source = 'panoptic json'): PanopticIndex {
  if (!isRecord(json)) throw fieldError(source, '(root)', 'an object with images, annotations and categories', json);
  const list = (key: string): unknown[] => {
    const value = json[key];
    if (!Array.isArray(value)) throw fieldError(source, key, 'an array', value);
    return value;
  };
  const entry = (key: string, item: unknown, i: number): Record<string, unknown> => {
    if (!isRecord(item)) throw fieldError(`${source}: ${key}[${i}]`, '(entry)', 'an object', item);
    return item;
  };
  const integer = (obj: Record<string, unknown>, field: string, where: string): number => {
    const value = obj[field];
    if (!Number.isInteger(value) || (value as number) < 0) throw fieldError(where, field, 'a non-negative integer', value);
    return value as number;
  };
  const flag = (obj: Record<string, unknown>, field: string, where: string): boolean => {
    const value = obj[field] ?? 0;
    if (value !== 0 && value !== 1 && typeof value !== 'boolean') throw fieldError(where, field, '0 or 1', value);
    return value === 1 || value === true;
  };

  const images = new Map<number, { width: number; height: number }>();
  list('images').forEach((item, i) => {
    const where = `${source}: images[${i}]`;
    const image = entry('images', item, i);
    images.set(integer(image, 'id', where), { width: integer(image, 'width', where), height: integer(image, 'height', where) });
  });
  const segmentsByImage = new Map<number, PanopticSegment[]>();
  list('annotations').forEach((item, i) => {
    const where = `${source}: annotations[${i}]`;
    const annotation = entry('annotations', item, i);
    const imageId = integer(annotation, 'image_id', where);
    const infos = annotation.segments_info;
    if (!Array.isArray(infos)) throw fieldError(where, 'segments_info', 'an array', infos);
    segmentsByImage.set(
      imageId,
      infos.map((info, s) => {
        const at = `${where}.segments_info[${s}]`;
        if (!isRecord(info)) throw fieldError(at, '(entry)', 'an object', info);
        return { id: integer(info, 'id', at), categoryId: integer(info, 'category_id', at), iscrowd: flag(info, 'iscrowd', at) };
      }),
    );
  });
  const isThingByCategory = new Map<number, boolean>();
  list('categories').forEach((item, i) => {
    const where = `${source}: categories[${i}]`;
    const category = entry('categories', item, i);
    isThingByCategory.set(integer(category, 'id', where), flag(category, 'isthing', where));
  });
  return { images, segmentsByImage, isThingByCategory };
}

/**
 * The evaluated phrases of one record (§1.7): one per noun chunk with non-empty `segment_ids`.
 * @throws naming the record index, utterance and id if a listed segment id is not in the image's
 *   `segments_info`, or if the image or a category is missing from the panoptic JSON.
 */
export function extractPhrases(record: NarrativeRecord, recordIndex: number, panoptic: PanopticIndex): GtPhrase[] {
  const where = recordLabel(recordIndex, record.imageId);
  const segments = panoptic.segmentsByImage.get(record.imageId);
  if (!segments) throw new Error(`${where}: image ${record.imageId} has no entry in the panoptic JSON annotations; use the panoptic file of the same split`);
  if (!panoptic.images.has(record.imageId))
    throw new Error(`${where}: image ${record.imageId} is not in the panoptic JSON images; use the panoptic file of the same split`);
  const byId = new Map(segments.map((s) => [s.id, s]));
  const phrases: GtPhrase[] = [];
  record.segments.forEach((chunk, chunkIndex) => {
    if (!chunk.noun || chunk.segmentIds.length === 0) return;
    const chunkSegments = chunk.segmentIds.map((id) => {
      const segment = byId.get(id);
      if (!segment) {
        throw new Error(
          `${where}, utterance ${JSON.stringify(chunk.utterance)}: segment id ${id} is not in segments_info of image ${record.imageId}; check that the png_coco and panoptic files belong together`,
        );
      }
      return segment;
    });
    const last = chunkSegments[chunkSegments.length - 1];
    const isThing = panoptic.isThingByCategory.get(last.categoryId);
    if (isThing === undefined) {
      throw new Error(
        `${where}, utterance ${JSON.stringify(chunk.utterance)}: category ${last.categoryId} of segment ${last.id} is not in the panoptic JSON categories`,
      );
    }
    phrases.push({
      recordIndex,
      imageId: record.imageId,
      chunkIndex,
      utterance: chunk.utterance,
      segmentIds: chunk.segmentIds,
      isThing,
      isPlural: chunk.segmentIds.length >= 2,
      tags: chunk.tags,
    });
  });
  return phrases;
}

/**
 * Decodes a COCO panoptic PNG into segment ids, id = R + 256·G + 65536·B from the raw 8-bit RGB
 * values (§1.3); no gamma or alpha handling.
 * @throws if the file is not an 8-bit RGB, RGBA or palette PNG.
 */
export function decodePanopticPng(file: Uint8Array): PanopticIdMap {
  const png = pngjs.PNG.sync.read(Buffer.from(file.buffer, file.byteOffset, file.byteLength));
  if (!png.color || !(png.palette || png.depth === 8)) {
    throw new Error(
      `panoptic PNG must be 8-bit RGB(A) or palette, got ${png.color ? '' : 'grayscale '}color type ${png.colorType} with ${png.depth}-bit samples`,
    );
  }
  const ids = new Uint32Array(png.width * png.height);
  const rgba = png.data;
  for (let k = 0; k < ids.length; k++) ids[k] = rgba[4 * k] + 256 * rgba[4 * k + 1] + 65536 * rgba[4 * k + 2];
  return { width: png.width, height: png.height, ids };
}

/** `record 3 (image 397133)`: how records are named in messages. */
export function recordLabel(recordIndex: number, imageId: number): string {
  return `record ${recordIndex} (image ${imageId})`;
}

/** `record 3 (image 397133), phrase 1 "two dogs"`: how phrases are named in messages. */
export function phraseLabel(phrase: GtPhrase, phraseIndex: number): string {
  return `${recordLabel(phrase.recordIndex, phrase.imageId)}, phrase ${phraseIndex} ${JSON.stringify(phrase.utterance)}`;
}

/** Pixel indices (row-major) of every segment id present in an id map. */
function pixelsBySegment(idMap: PanopticIdMap): Map<number, Int32Array> {
  // Dense slot per distinct id; neighbouring pixels mostly share an id, so the Map is rarely consulted.
  const slotOf = new Map<number, number>();
  const slots = new Int32Array(idMap.ids.length);
  const counts: number[] = [];
  let lastId = -1;
  let lastSlot = -1;
  idMap.ids.forEach((id, k) => {
    if (id !== lastId) {
      lastId = id;
      let slot = slotOf.get(id);
      if (slot === undefined) {
        slot = counts.length;
        slotOf.set(id, slot);
        counts.push(0);
      }
      lastSlot = slot;
    }
    slots[k] = lastSlot;
    counts[lastSlot]++;
  });
  const lists = counts.map((count) => new Int32Array(count));
  const filled = new Int32Array(counts.length);
  slots.forEach((slot, k) => {
    lists[slot][filled[slot]++] = k;
  });
  return new Map([...slotOf].map(([id, slot]) => [id, lists[slot]]));
}

/**
 * The benchmark's ground truth, loaded from a folder holding `png_coco_{split}.json`,
 * `panoptic_{split}.json` and `panoptic_segmentation/{split}/{image_id:012d}.png`. Records and
 * phrases are parsed and validated at load; panoptic PNGs are read when a sample is requested.
 */
export class PngGroundTruth {
  /** Evaluated phrases of every record, by record index (empty for records without any and for dropped ones). */
  readonly phrases: readonly (readonly GtPhrase[])[];
  /**
   * Records the official pre-processing drops (spec §1.5: word counts that differ, an empty
   * caption), by record index: not evaluated, so they need no prediction. Records without a
   * caption are never dropped.
   */
  readonly dropped: readonly (NarrativeDrop & { readonly index: number })[];
  private cachedImage: { imageId: number; pixels: Map<number, Int32Array> } | undefined;

  private constructor(
    readonly dir: string,
    readonly split: string,
    readonly records: readonly NarrativeRecord[],
    readonly panoptic: PanopticIndex,
  ) {
    const dropped: (NarrativeDrop & { index: number })[] = [];
    this.phrases = records.map((record, i) => {
      const phrases = extractPhrases(record, i, panoptic);
      const drop =
        record.caption === undefined
          ? undefined
          : alignUtterances(
              record.caption,
              record.segments.map((c) => c.utterance),
            ).drop;
      if (!drop) return phrases;
      dropped.push({ index: i, ...drop });
      return [];
    });
    this.dropped = dropped;
  }

  /**
   * Loads and validates the ground truth of `split` from `dir`.
   * @throws naming the file, record index and field of the first problem found.
   */
  static load(dir: string, split = 'val2017'): PngGroundTruth {
    const recordsFile = `png_coco_${split}.json`;
    const panopticFile = `panoptic_${split}.json`;
    const records = parseNarrativeRecords(readJsonFile(join(dir, recordsFile), 'PNG narratives'), recordsFile);
    const panoptic = parsePanopticJson(readJsonFile(join(dir, panopticFile), 'COCO panoptic annotations'), panopticFile);
    return new PngGroundTruth(dir, split, records, panoptic);
  }

  /** Total number of evaluated phrases. */
  get phraseCount(): number {
    return this.phrases.reduce((sum, list) => sum + list.length, 0);
  }

  /**
   * The record's phrases with their binary GT masks at the original image size, ready for
   * {@link PngEvaluator.process}. Reads the image's panoptic PNG (the last image is cached).
   */
  sample(recordIndex: number): PngSample {
    const record = this.records[recordIndex];
    if (!record) throw new RangeError(`record index ${recordIndex} is out of range: the ground truth has ${this.records.length} records`);
    const image = this.panoptic.images.get(record.imageId);
    if (!image) throw new Error(`record ${recordIndex}: image ${record.imageId} is not in the panoptic JSON images`);
    const { width, height } = image;
    const phrases = this.phrases[recordIndex];
    const pixels = phrases.length > 0 ? this.segmentPixels(record.imageId, width, height) : new Map<number, Int32Array>();
    return {
      label: recordLabel(recordIndex, record.imageId),
      imageId: record.imageId,
      width,
      height,
      phrases: phrases.map((phrase, k) => {
        const mask = new Uint8Array(width * height);
        for (const id of phrase.segmentIds) for (const p of pixels.get(id) ?? []) mask[p] = 1;
        return { label: phraseLabel(phrase, k), isThing: phrase.isThing, isPlural: phrase.isPlural, tags: phrase.tags, mask };
      }),
    };
  }

  private segmentPixels(imageId: number, width: number, height: number): Map<number, Int32Array> {
    if (this.cachedImage?.imageId !== imageId) {
      const path = join(this.dir, 'panoptic_segmentation', this.split, `${String(imageId).padStart(12, '0')}.png`);
      let idMap: PanopticIdMap;
      try {
        idMap = decodePanopticPng(readFileSync(path));
      } catch (e) {
        throw new Error(`cannot use the panoptic PNG of image ${imageId} at ${path}: ${(e as Error).message}`);
      }
      if (idMap.width !== width || idMap.height !== height) {
        throw new Error(`panoptic PNG ${path} is ${idMap.width}×${idMap.height} (W×H) but panoptic_${this.split}.json says ${width}×${height}`);
      }
      this.cachedImage = { imageId, pixels: pixelsBySegment(idMap) };
    }
    return this.cachedImage.pixels;
  }
}
