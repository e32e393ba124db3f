import * as tf from '@tensorflow/tfjs-core';
import { letterbox, type RgbImage } from '@png/png-data';
import { findNounPhrases } from './noun_phrases';
import { masksFromLogits, type PngGrounder } from './png_grounder';

/** One grounded phrase of a free-form narrative. */
export interface GroundedPhrase {
  readonly text: string;
  /** Character span [start, end) in the caption. */
  readonly span: readonly [number, number];
  /** Binary mask at the image's own size, row-major H·W. */
  readonly mask: Uint8Array;
}

/**
 * Grounds a free-form narrative on an image: the noun phrases (found with `findNounPhrases`
 * unless `phrases` gives their spans) each get a mask at the image's own size. The image is
 * letterboxed to `imageSize` (the size the grounder was trained at); a narrative with more
 * phrases than the model's max_phrases is grounded in several forwards.
 */
export async function groundNarrative(
  grounder: PngGrounder,
  image: RgbImage,
  caption: string,
  options: { imageSize: number; phrases?: ReadonlyArray<readonly [number, number]> },
): Promise<GroundedPhrase[]> {
  if (typeof caption !== 'string' || caption.trim() === '')
    throw new Error('groundNarrative: the caption is empty; pass a narrative that mentions what to ground');
  const spans = options.phrases ?? findNounPhrases(caption);
  if (spans.length === 0)
    throw new Error(
      `groundNarrative: found no noun phrase in ${JSON.stringify(caption)}; name the things to ground (e.g. "a red circle on the grass") or pass the phrase spans (png ground: --phrase TEXT)`,
    );
  spans.forEach(([start, end], j) => {
    if (!Number.isInteger(start) || !Number.isInteger(end) || start < 0 || end <= start || end > caption.length) {
      throw new Error(
        `groundNarrative: phrase ${j} has span [${start}, ${end}), expected integers with 0 ≤ start < end ≤ ${caption.length} (the caption length)`,
      );
    }
  });
  const { tensor, transform } = letterbox(image, options.imageSize);
  const masks: Uint8Array[] = [];
  try {
    const { latents, skips } = grounder.encodeImages(tensor);
    try {
      const max = grounder.config.max_phrases;
      for (let first = 0; first < spans.length; first += max) {
        const group = spans.slice(first, first + max).map(([s, e]): [number, number] => [s, e]);
        const phrases = grounder.encodePhrases([{ caption, phrases: group }]);
        const out = grounder.forwardLatents(latents, phrases, skips);
        const last = out.predictions[out.predictions.length - 1]; // [1, h, w, P]
        masks.push(...(await masksFromLogits(last, [transform], [group.length]))[0]);
        tf.dispose([out, phrases]);
      }
    } finally {
      tf.dispose([latents, skips]);
    }
  } finally {
    tensor.dispose();
  }
  return spans.map(([start, end], j) => ({ text: caption.slice(start, end), span: [start, end], mask: masks[j] }));
}
