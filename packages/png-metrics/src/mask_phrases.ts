/**
 * The phrase-masks file read by `png-metrics ar` (the format of the worked examples):
 * `{"phrases": [{"name", "pred": number[][], "gt": number[][], "isThing", "isPlural"}, …]}` with
 * row-major H×W masks given as rows. A mask of only 0s and 1s is binary; any other value makes it soft.
 */
import type { PngSample } from './evaluator';
import type { Mask } from './iou';
import { fieldError, isRecord } from './json_input';

/** One phrase of a phrase-masks file, ready for `PngEvaluator.process(sample, [prediction])`. */
export interface MaskPhrase {
  sample: PngSample;
  prediction: Mask;
}

/**
 * Validates a parsed phrase-masks file.
 * @param source file name used in error messages.
 * @throws naming the phrase index and the field.
 */
export function parseMaskPhrases(json: unknown, source = 'phrases file'): MaskPhrase[] {
  if (!isRecord(json) || !Array.isArray(json.phrases)) {
    throw fieldError(source, 'phrases', 'an array of {name, pred, gt, isThing, isPlural}', isRecord(json) ? json.phrases : json);
  }
  return json.phrases.map((phrase, i) => {
    const where = `${source}: phrase ${i}`;
    if (!isRecord(phrase)) throw fieldError(where, '(phrase)', 'an object {name, pred, gt, isThing, isPlural}', phrase);
    const { name, isThing, isPlural } = phrase;
    if (name !== undefined && typeof name !== 'string') throw fieldError(where, 'name', 'a string', name);
    if (typeof isThing !== 'boolean') throw fieldError(where, 'isThing', 'true or false', isThing);
    if (typeof isPlural !== 'boolean') throw fieldError(where, 'isPlural', 'true or false', isPlural);
    const gt = maskFromRows(phrase.gt, where, 'gt');
    const prediction = maskFromRows(phrase.pred, where, 'pred');
    if (prediction.height !== gt.height || prediction.width !== gt.width) {
      throw fieldError(where, 'pred', `a ${gt.height}×${gt.width} mask like gt`, `${prediction.height}×${prediction.width} rows`);
    }
    const label = `${where}${name === undefined ? '' : ` ${JSON.stringify(name)}`}`;
    return {
      sample: { label, height: gt.height, width: gt.width, phrases: [{ label, isThing, isPlural, mask: gt.mask }] },
      prediction: prediction.mask,
    };
  });
}

function maskFromRows(rows: unknown, where: string, field: string): { height: number; width: number; mask: Mask } {
  if (!Array.isArray(rows) || !rows.every((row) => Array.isArray(row) && row.length === rows[0].length)) {
    throw fieldError(where, field, 'a rectangular array of rows of numbers', rows);
  }
  const values = (rows as unknown[][]).flat();
  const bad = values.findIndex((v) => typeof v !== 'number' || !Number.isFinite(v));
  if (bad >= 0) throw fieldError(where, `${field} (value ${bad} in row-major order)`, 'a finite number', values[bad]);
  const numbers = values as number[];
  const mask = numbers.every((v) => v === 0 || v === 1) ? Uint8Array.from(numbers) : Float32Array.from(numbers);
  return { height: rows.length, width: rows.length === 0 ? 0 : (rows[0] as unknown[]).length, mask };
}
