/**
 * Streaming loader of a PNG benchmark folder (spec §1.1): `images/{split}/<id:012d>.{jpg,png}`,
 * `annotations/png_coco_{split}.json`, `annotations/panoptic_{split}.json` and
 * `annotations/panoptic_segmentation/{split}/<id:012d>.png`. Records are parsed one at a time from
 * the png_coco array; validation and phrase extraction are @png/png-metrics' (clean protocol,
 * §1.7), so a phrase here is exactly a phrase the evaluator scores.
 */
import { existsSync } from 'node:fs';
import { basename } from 'node:path';
import { readInputFile } from '@png/core';
import {
  alignUtterances,
  decodePanopticPng,
  extractPhrases,
  parseNarrativeRecords,
  parsePanopticJson,
  type GtPhrase,
  type NarrativeDropReason,
  type NarrativeRecord,
  type PanopticIdMap,
  type PanopticIndex,
} from '@png/png-metrics';
import jpeg from 'jpeg-js';
import pngjs from 'pngjs';
import { streamJsonArray } from './json_stream';
import { splitPaths } from './layout';

/** An 8-bit RGB image, row-major, 3 bytes per pixel. */
export interface RgbImage {
  data: Uint8Array;
  height: number;
  width: number;
}

/** Where a token lives in a chunked caption: window index and position in it (bos is 0). */
export interface TokenPosition {
  readonly window: number;
  readonly position: number;
}

/**
 * What the loader needs of a tokenizer: the tokens of each phrase span of a caption.
 * `CLIPTokenizer` of @png/diffusion-backbone fits (its `chunk(text).phraseTokens(spans)`).
 */
export interface PhraseTokenizer {
  chunk(text: string): { phraseTokens(spans: ReadonlyArray<readonly [number, number]>): TokenPosition[][] };
}

/** One evaluated phrase of a record (a noun chunk with segment ids). */
export interface SamplePhrase {
  /** The chunk's utterance. */
  text: string;
  /** Index of the chunk in the record's `segments`. */
  chunkIndex: number;
  segmentIds: number[];
  /** The category of the last listed segment is a thing. */
  isThing: boolean;
  /** Two or more segment ids (the JSON `plural` flag is ignored). */
  isPlural: boolean;
  /** The chunk's extra string keys, e.g. `{phrase_type: 'binding'}` (png-metrics groups by them). */
  tags: Readonly<Record<string, string>>;
  /** Binary union of the phrase's segments, row-major, H·W of the original image. */
  mask: Uint8Array;
}

/** One narrative record, ready for a model (`narrative`) and for evaluation (`phrases`). */
export interface PngSample {
  /** Index of the record in `png_coco_{split}.json`. */
  index: number;
  imageId: number;
  /** The decoded image; records of the same image in a row share it (do not modify it). */
  image: RgbImage;
  /**
   * The caption and the character spans [start, end) of the evaluated phrases, in phrase order
   * (the `Narrative` input of @png/diffusion-backbone's `encodePhrases`).
   */
  narrative: { caption: string; phrases: [number, number][] };
  phrases: SamplePhrase[];
  /** Per phrase, the CLIP token positions its span covers (only with a tokenizer). */
  tokenSpans?: TokenPosition[][];
}

/** A record left out in 'skip' mode, with the message 'throw' mode would have raised. */
export interface SkippedRecord {
  index: number;
  reason: string;
}

/** A record the official pre-processing drops (spec §1.5), left out in both modes. */
export interface DroppedRecord {
  index: number;
  reason: NarrativeDropReason;
  /** `png_coco_val2017.json record 3: word count mismatch: the caption has 12 words …`. */
  message: string;
}

/** Options of {@link PngDataset.open}. */
export interface PngDatasetOptions {
  /** What a bad record does: 'throw' (default) raises; 'skip' leaves it out and lists it in `skipped`. */
  onBadRecord?: 'skip' | 'throw';
  /** Adds `tokenSpans` to every sample. */
  tokenizer?: PhraseTokenizer;
  /** Bytes read at a time from the png_coco file; default 1 MiB. */
  chunkSize?: number;
}

/** A problem with one record: the field at fault and what is wrong. */
class BadRecord extends Error {
  constructor(
    readonly field: string,
    detail: string,
  ) {
    super(detail);
  }
}

/** Decoded image and panoptic id map of the last image read (records of one image are often adjacent). */
interface ImageCache {
  imageId: number;
  image: RgbImage;
  ids: Uint32Array;
}

/**
 * A split of a PNG benchmark folder. The panoptic JSON is read at {@link PngDataset.open}; the
 * narrative records, images and panoptic PNGs are read while iterating {@link PngDataset.records}.
 */
export class PngDataset {
  /** Records left out by the last pass of {@link PngDataset.records} in 'skip' mode. */
  readonly skipped: SkippedRecord[] = [];
  /** Records the official pre-processing drops, left out by the last pass of {@link PngDataset.records}. */
  readonly dropped: DroppedRecord[] = [];
  private cache: ImageCache | undefined;
  private readonly paths: ReturnType<typeof splitPaths>;

  private constructor(
    readonly root: string,
    readonly split: string,
    /** The split's COCO panoptic JSON (image sizes, segments, categories). */
    readonly panoptic: PanopticIndex,
    private readonly options: PngDatasetOptions,
  ) {
    this.paths = splitPaths(root, split);
  }

  /**
   * Opens `split` of the benchmark folder `root` and reads its panoptic JSON.
   * @throws if a file is missing or the panoptic JSON is invalid (naming file and field).
   */
  static async open(root: string, split = 'val2017', options: PngDatasetOptions = {}): Promise<PngDataset> {
    const mode = options.onBadRecord ?? 'throw';
    if (mode !== 'skip' && mode !== 'throw') throw new Error(`PngDataset.open: onBadRecord must be 'skip' or 'throw', got ${JSON.stringify(mode)}`);
    const paths = splitPaths(root, split);
    if (!existsSync(paths.records)) throw new Error(`PngDataset.open: ${paths.records} not found; root must hold images/ and annotations/ (spec §1.1)`);
    const text = (await readInputFile(paths.panoptic, 'the COCO panoptic JSON')).toString('utf8');
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new Error(`PngDataset.open: cannot read the COCO panoptic JSON ${paths.panoptic}: ${(e as Error).message}`);
    }
    return new PngDataset(root, split, parsePanopticJson(json, basename(paths.panoptic)), { ...options, onBadRecord: mode });
  }

  /**
   * Streams the samples in file order. Records without evaluated phrases are yielded with
   * `phrases: []` (the official loaders drop them); records the official pre-processing drops are
   * not yielded and are listed in `dropped`. Each call is a new pass and clears `skipped` and `dropped`.
   * @throws in 'throw' mode at the first bad record: `png_coco_val2017.json record 17: field
   *   segments[2].segment_ids[0]: …`; in either mode if the file is not a JSON array.
   */
  async *records(): AsyncGenerator<PngSample> {
    this.skipped.length = 0;
    this.dropped.length = 0;
    const file = basename(this.paths.records);
    for await (const { index, value } of streamJsonArray(this.paths.records, { chunkSize: this.options.chunkSize })) {
      let sample: PngSample | DroppedRecord;
      try {
        sample = await this.sample(index, value, file);
      } catch (e) {
        if (!(e instanceof BadRecord)) throw e;
        const reason = `${file} record ${index}: field ${e.field}: ${e.message}`;
        if (this.options.onBadRecord === 'throw') throw new Error(reason);
        this.skipped.push({ index, reason });
        continue;
      }
      if ('reason' in sample) this.dropped.push(sample);
      else yield sample;
    }
  }

  private async sample(index: number, value: unknown, file: string): Promise<PngSample | DroppedRecord> {
    const record = parseRecord(value, file);
    const { imageId } = record;
    const caption = record.caption;
    if (caption === undefined) throw new BadRecord('caption', 'missing; the loader needs the caption to locate the phrases');
    const size = this.panoptic.images.get(imageId);
    const segments = this.panoptic.segmentsByImage.get(imageId);
    if (!size || !segments)
      throw new BadRecord('image_id', `image ${imageId} has no ${size ? 'annotation' : 'entry in images'} in panoptic_${this.split}.json`);
    const known = new Set(segments.map((s) => s.id));
    record.segments.forEach((chunk, c) => {
      if (!chunk.noun) return;
      chunk.segmentIds.forEach((id, k) => {
        if (!known.has(id))
          throw new BadRecord(`segments[${c}].segment_ids[${k}]`, `segment ${id} is not in segments_info of image ${imageId} in panoptic_${this.split}.json`);
      });
    });
    const alignment = alignUtterances(
      caption,
      record.segments.map((chunk) => chunk.utterance),
    );
    if (alignment.drop) return { index, reason: alignment.drop.reason, message: `${file} record ${index}: ${alignment.drop.reason}: ${alignment.drop.detail}` };
    const { spans } = alignment;
    let gtPhrases: GtPhrase[];
    try {
      gtPhrases = extractPhrases(record, index, this.panoptic);
    } catch (e) {
      throw new BadRecord('segments', (e as Error).message);
    }
    const phraseSpans = gtPhrases.map((p) => spans[p.chunkIndex]);
    phraseSpans.forEach(([start, end], k) => {
      if (start === end) throw new BadRecord(`segments[${gtPhrases[k].chunkIndex}].utterance`, 'a grounded noun chunk has no text');
    });
    const { image, ids } = await this.readImage(imageId, size);
    const phrases = gtPhrases.map(
      (p): SamplePhrase => ({
        text: p.utterance,
        chunkIndex: p.chunkIndex,
        segmentIds: p.segmentIds,
        isThing: p.isThing,
        isPlural: p.isPlural,
        tags: p.tags,
        mask: new Uint8Array(ids.length),
      }),
    );
    fillMasks(ids, phrases);
    const sample: PngSample = { index, imageId, image, narrative: { caption, phrases: phraseSpans }, phrases };
    const tokenizer = this.options.tokenizer;
    if (tokenizer) sample.tokenSpans = tokenizer.chunk(caption).phraseTokens(phraseSpans);
    return sample;
  }

  private async readImage(imageId: number, size: { width: number; height: number }): Promise<ImageCache> {
    if (this.cache?.imageId === imageId) return this.cache;
    const jpgPath = this.paths.image(imageId, 'jpg');
    const imagePath = [jpgPath, this.paths.image(imageId, 'png')].find((p) => existsSync(p));
    if (!imagePath) throw new BadRecord('image_id', `no image file ${jpgPath.slice(0, -4)}.jpg or .png`);
    const image = decodeImage(await readRecordFile(imagePath, 'an image (JPEG or PNG)'), imagePath);
    const panopticPath = this.paths.panopticPng(imageId);
    if (!existsSync(panopticPath)) throw new BadRecord('image_id', `no panoptic PNG ${panopticPath}`);
    const panopticBytes = await readRecordFile(panopticPath, 'a COCO panoptic PNG');
    let idMap: PanopticIdMap;
    try {
      idMap = decodePanopticPng(panopticBytes);
    } catch (e) {
      throw new BadRecord('image_id', `cannot decode the panoptic PNG ${panopticPath}: ${(e as Error).message}`);
    }
    for (const [what, w, h] of [
      ['image', image.width, image.height],
      ['panoptic PNG', idMap.width, idMap.height],
    ] as const) {
      if (w !== size.width || h !== size.height) {
        throw new BadRecord('image_id', `the ${what} of image ${imageId} is ${w}×${h} (W×H) but panoptic_${this.split}.json says ${size.width}×${size.height}`);
      }
    }
    this.cache = { imageId, image, ids: idMap.ids };
    return this.cache;
  }
}

/** A file a record needs (its image, its panoptic PNG); a folder or unreadable file is a bad record naming the path. */
async function readRecordFile(path: string, what: string): Promise<Uint8Array> {
  try {
    return await readInputFile(path, what);
  } catch (e) {
    throw new BadRecord('image_id', (e as Error).message);
  }
}

/**
 * Validates one record with png-metrics' `parseNarrativeRecords`; its message
 * `<file>: record 0, field <f>: …` (for a one-record array) becomes a {@link BadRecord} on `<f>`.
 */
function parseRecord(value: unknown, file: string): NarrativeRecord {
  try {
    return parseNarrativeRecords([value], file)[0];
  } catch (e) {
    const message = (e as Error).message;
    const match = /^.*?: record 0, field (\S+): (.*)$/s.exec(message);
    throw match ? new BadRecord(match[1], match[2]) : new BadRecord('(record)', message);
  }
}

/** Sets every phrase's mask to the union of its segments, in one pass over the id map. */
function fillMasks(ids: Uint32Array, phrases: readonly SamplePhrase[]): void {
  const phrasesOf = new Map<number, SamplePhrase[]>();
  for (const phrase of phrases) {
    for (const id of phrase.segmentIds) {
      const list = phrasesOf.get(id) ?? [];
      if (!list.includes(phrase)) list.push(phrase);
      phrasesOf.set(id, list);
    }
  }
  let lastId = -1;
  let last: SamplePhrase[] | undefined;
  for (let k = 0; k < ids.length; k++) {
    if (ids[k] !== lastId) {
      lastId = ids[k];
      last = phrasesOf.get(lastId);
    }
    if (last) for (const phrase of last) phrase.mask[k] = 1;
  }
}

/** Decodes a JPEG or PNG (by its signature, not its name) into 8-bit RGB; a PNG's transparency is composited on white. */
export function decodeImage(bytes: Uint8Array, path: string): RgbImage {
  try {
    if (bytes[0] === 0xff && bytes[1] === 0xd8) {
      const { data, width, height } = jpeg.decode(bytes, { useTArray: true, formatAsRGBA: false });
      return { data, width, height };
    }
    const png = pngjs.PNG.sync.read(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    const data = new Uint8Array(png.width * png.height * 3);
    for (let k = 0, n = png.width * png.height; k < n; k++) {
      const alpha = png.data[4 * k + 3] / 255;
      for (let c = 0; c < 3; c++) data[3 * k + c] = Math.round(alpha * png.data[4 * k + c] + (1 - alpha) * 255);
    }
    return { data, width: png.width, height: png.height };
  } catch (e) {
    throw new BadRecord('image_id', `cannot decode the image ${path} (JPEG or PNG expected): ${(e as Error).message}`);
  }
}
