/**
 * The predictions file: a JSON array with one entry per evaluated narrative record,
 *
 *   [{"record_index": 0, "image_id": "397133",
 *     "phrases": [{"segment_ids": ["3290188", "5131833"], "rle": {"size": [427, 640], "counts": "…"}}, …]}, …]
 *
 * `record_index` is the index of the record in `png_coco_{split}.json`; `phrases` lists one mask per
 * evaluated phrase of that record (noun chunks with non-empty `segment_ids`), in caption order, each
 * repeating the chunk's `segment_ids` so that the match to the ground truth is checked, with a COCO
 * RLE at the original image size (compressed string or counts array).
 */
import { writeFileAtomic } from '@png/node-utils';
import { PngEvaluator } from './evaluator';
import { phraseLabel, recordLabel, type PngGroundTruth } from './gt';
import { fieldError, isRecord } from './json_input';
import type { CocoRle } from './rle';

/** Predictions for the phrases of one narrative record. */
export interface PngPredictionRecord {
  /** Index of the record in `png_coco_{split}.json`. */
  record_index: number;
  /** The record's `image_id`, as in `png_coco_{split}.json`. */
  image_id: string;
  /** One entry per evaluated phrase of the record, in caption order. */
  phrases: PngPhrasePrediction[];
}

/** The predicted mask of one phrase. */
export interface PngPhrasePrediction {
  /** The phrase's `segment_ids`, copied from the ground truth (checked at evaluation). */
  segment_ids: string[];
  /** Predicted mask at the original image size. */
  rle: CocoRle;
}

/**
 * Validates parsed JSON as a predictions file (structure only; the match with the ground truth
 * is checked by {@link evaluatePredictions}).
 * @param source file name used in error messages.
 * @throws naming the entry index and the field.
 */
export function parsePredictions(json: unknown, source = 'predictions'): PngPredictionRecord[] {
  if (!Array.isArray(json)) throw fieldError(source, '(root)', 'a JSON array of {record_index, image_id, phrases}', isRecord(json) ? '{...}' : json);
  return json.map((entry, i) => {
    const where = `${source}: entry ${i}`;
    if (!isRecord(entry)) throw fieldError(where, '(entry)', 'an object {record_index, image_id, phrases}', entry);
    const { record_index, image_id, phrases } = entry;
    if (!Number.isInteger(record_index) || (record_index as number) < 0)
      throw fieldError(where, 'record_index', 'a non-negative integer (index in png_coco_{split}.json)', record_index);
    if (typeof image_id !== 'string') throw fieldError(where, 'image_id', "the record's image_id string", image_id);
    if (!Array.isArray(phrases)) throw fieldError(where, 'phrases', 'an array with one {segment_ids, rle} per evaluated phrase', phrases);
    return {
      record_index: record_index as number,
      image_id,
      phrases: phrases.map((phrase, k) => {
        const field = `phrases[${k}]`;
        if (!isRecord(phrase)) throw fieldError(where, field, 'an object {segment_ids, rle}', phrase);
        const { segment_ids, rle } = phrase;
        if (!Array.isArray(segment_ids) || !segment_ids.every((id) => typeof id === 'string')) {
          throw fieldError(where, `${field}.segment_ids`, 'an array of segment id strings', segment_ids);
        }
        if (!isRecord(rle)) throw fieldError(where, `${field}.rle`, 'a COCO RLE {size: [h, w], counts}', rle);
        const { size, counts } = rle;
        if (!Array.isArray(size) || size.length !== 2 || !size.every((v) => Number.isInteger(v) && v >= 0)) {
          throw fieldError(where, `${field}.rle.size`, '[height, width]', size);
        }
        if (typeof counts !== 'string' && !(Array.isArray(counts) && counts.every((c) => Number.isInteger(c) && c >= 0))) {
          throw fieldError(where, `${field}.rle.counts`, 'a compressed COCO string or an array of non-negative run lengths', counts);
        }
        return { segment_ids: segment_ids as string[], rle: { size: [size[0], size[1]], counts: counts as string | number[] } };
      }),
    };
  });
}

/** Writes a predictions file atomically (temporary file in the same folder, then rename). */
export function writePredictionsFile(path: string, records: readonly PngPredictionRecord[]): void {
  writeFileAtomic(path, `${JSON.stringify(records)}\n`);
}

/** Options of {@link evaluatePredictions}. */
export interface EvaluatePredictionsOptions {
  /** Evaluator to add the phrases to (a fresh one by default). */
  evaluator?: PngEvaluator;
  /** Called after each record with the number of phrases done and the total. */
  onProgress?: (phrasesDone: number, phrasesTotal: number) => void;
}

/**
 * Scores predictions against the ground truth: every record with evaluated phrases must have exactly
 * one prediction entry whose image id, phrase count and per-phrase segment ids match.
 * @returns the evaluator holding every phrase's IoU (call `evaluate()` on it).
 * @throws naming the record or phrase on any mismatch, and listing missing records.
 */
export function evaluatePredictions(gt: PngGroundTruth, predictions: readonly PngPredictionRecord[], options: EvaluatePredictionsOptions = {}): PngEvaluator {
  const byRecord = new Map<number, PngPredictionRecord>();
  predictions.forEach((prediction, i) => {
    const index = prediction.record_index;
    if (index >= gt.records.length) {
      throw new Error(`predictions entry ${i}: record_index ${index} is out of range; png_coco_${gt.split}.json has ${gt.records.length} records`);
    }
    if (byRecord.has(index)) throw new Error(`predictions entry ${i}: record_index ${index} appears twice; give one entry per record`);
    byRecord.set(index, prediction);
  });
  const missing = gt.phrases.flatMap((phrases, index) => (phrases.length > 0 && !byRecord.has(index) ? [index] : []));
  if (missing.length > 0) {
    const shown = missing.slice(0, 10).map((index) => recordLabel(index, gt.records[index].imageId));
    throw new Error(`predictions are missing for ${missing.length} of the records with phrases: ${shown.join('; ')}${missing.length > 10 ? '; …' : ''}`);
  }

  const evaluator = options.evaluator ?? new PngEvaluator();
  const total = gt.phraseCount;
  let done = 0;
  // Records grouped by image so that each panoptic PNG is decoded once; AR does not depend on order.
  const order = gt.records.map((_, index) => index).sort((a, b) => gt.records[a].imageId - gt.records[b].imageId || a - b);
  for (const index of order) {
    const phrases = gt.phrases[index];
    const prediction = byRecord.get(index);
    if (prediction === undefined) continue;
    const where = `predictions for ${recordLabel(index, gt.records[index].imageId)}`;
    if (Number.parseInt(prediction.image_id, 10) !== gt.records[index].imageId) {
      throw new Error(`${where}: image_id is "${prediction.image_id}"; record_index and image_id must name the same png_coco record`);
    }
    if (prediction.phrases.length !== phrases.length) {
      throw new Error(
        `${where}: ${prediction.phrases.length} phrases given, the record has ${phrases.length} evaluated phrases (noun chunks with segment_ids, in caption order)`,
      );
    }
    phrases.forEach((phrase, k) => {
      const given = prediction.phrases[k].segment_ids.map((id) => Number.parseInt(id, 10));
      if (given.length !== phrase.segmentIds.length || given.some((id, s) => id !== phrase.segmentIds[s])) {
        throw new Error(
          `predictions for ${phraseLabel(phrase, k)}: segment_ids ${JSON.stringify(prediction.phrases[k].segment_ids)} do not match the ground truth ${JSON.stringify(phrase.segmentIds.map(String))}; phrases must be in caption order`,
        );
      }
    });
    if (phrases.length === 0) continue;
    evaluator.process(
      gt.sample(index),
      prediction.phrases.map((phrase) => phrase.rle),
    );
    done += phrases.length;
    options.onProgress?.(done, total);
  }
  return evaluator;
}
