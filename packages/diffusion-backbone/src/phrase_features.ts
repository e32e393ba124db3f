/**
 * Phrase features, the method's first step: a narrative's noun phrases (character spans of its
 * caption) → the CLIP tokens each span covers → the mean of those tokens' hidden states, the
 * `PhraseFeatures` that EIPA, MLMA and the decoder read; optionally also the mean of the other
 * tokens of each phrase's sentence, the clause that says which of several look-alikes it is.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { CaptionTokens, PhraseFeatures } from '@png/core';
import type { CLIPTextModel } from './clip/modeling_clip';
import { SENTENCE_END_PUNCTUATION, type CLIPChunkOptions, type CLIPTextChunks, type CLIPTokenPosition, type CLIPTokenizer } from './clip/tokenization_clip';

/** A narrative and the character spans [start, end) of its noun phrases in the caption. */
export interface Narrative {
  readonly caption: string;
  readonly phrases: ReadonlyArray<readonly [number, number]>;
}

/** Checks a batch of narratives; errors name the narrative and phrase at fault. */
export function validateNarratives(narratives: readonly Narrative[], maxPhrases: number): void {
  if (narratives.length === 0) throw new Error('no narratives: pass at least one {caption, phrases}');
  narratives.forEach((n, i) => {
    if (typeof n.caption !== 'string' || n.caption.trim() === '') throw new Error(`narrative ${i}: the caption is empty; a narrative needs text to ground`);
    if (!Array.isArray(n.phrases) || n.phrases.length === 0) throw new Error(`narrative ${i}: 0 phrases; give at least one noun-phrase span`);
    if (n.phrases.length > maxPhrases)
      throw new Error(`narrative ${i}: ${n.phrases.length} phrases, above the configured maximum of ${maxPhrases} (max_phrases)`);
    n.phrases.forEach(([start, end], j) => {
      if (!(Number.isInteger(start) && Number.isInteger(end) && start >= 0 && end > start && end <= n.caption.length)) {
        throw new Error(`narrative ${i}, phrase ${j}: span [${start}, ${end}) is not a non-empty range inside the ${n.caption.length}-character caption`);
      }
      if (n.caption.slice(start, end).trim() === '') throw new Error(`narrative ${i}, phrase ${j}: span [${start}, ${end}) holds only white space`);
    });
  });
}

/** A sentence ends after final punctuation (perhaps with closing quotes or brackets) that white space or the text's end follows. */
const SENTENCE_END = new RegExp(`${SENTENCE_END_PUNCTUATION}(?=\\s|$)`, 'gu');

/**
 * The character span [start, end) of the sentence around `span` in `text`: from just after the
 * last sentence end at or before the span's start (or the text's start) to the first sentence end
 * at or after the span's end, its punctuation included (or the text's end), leading white space
 * dropped. Punctuation inside the span does not cut it ("Dr. Who" stays one phrase's sentence).
 */
export function sentenceSpan(text: string, [start, end]: readonly [number, number]): [number, number] {
  let from = 0;
  let to = text.length;
  for (const m of text.matchAll(SENTENCE_END)) {
    const after = m.index + m[0].length;
    if (after <= start) from = after;
    else if (after >= end) {
      to = after;
      break;
    }
  }
  while (from < start && /\s/u.test(text[from])) from++;
  return [from, to];
}

/** A narrative's caption cut into the text encoder's windows, and per phrase the tokens its span covers. */
export interface NarrativeTokens {
  readonly chunks: CLIPTextChunks;
  /** Per phrase, its tokens in text order (never empty). */
  readonly phrases: CLIPTokenPosition[][];
  /** Per phrase, the other tokens of its sentence (`sentenceSpan`) in text order, with `sentences` (may be empty). */
  readonly sentences?: CLIPTokenPosition[][];
}

/**
 * Validates `narratives` (at most `maxPhrases` phrases each), cuts each caption into windows
 * (`CLIPTokenizer.chunk` with `windows`; default: hard 75-token windows) and maps every phrase span
 * to its tokens (`CLIPTextChunks.phraseTokens`); a span that covers no token is an error naming it.
 * With `options.sentences`, also each phrase's sentence (`sentenceSpan`) without the phrase's tokens.
 */
export function tokenizeNarratives(
  tokenizer: CLIPTokenizer,
  narratives: readonly Narrative[],
  maxPhrases: number,
  windows: CLIPChunkOptions = {},
  options: { sentences?: boolean } = {},
): NarrativeTokens[] {
  validateNarratives(narratives, maxPhrases);
  return narratives.map((n, i) => {
    const chunks = tokenizer.chunk(n.caption, windows);
    const phrases = chunks.phraseTokens(n.phrases);
    phrases.forEach((tokens, j) => {
      const [start, end] = n.phrases[j];
      if (tokens.length === 0) throw new Error(`narrative ${i}, phrase ${j}: span [${start}, ${end}) ("${n.caption.slice(start, end)}") covers no token`);
    });
    if (!options.sentences) return { chunks, phrases };
    const key = (t: CLIPTokenPosition) => `${t.window}:${t.position}`;
    const sentences = chunks.phraseTokens(n.phrases.map((span) => sentenceSpan(n.caption, span))).map((tokens, j) => {
      const own = new Set(phrases[j].map(key));
      return tokens.filter((t) => !own.has(key(t)));
    });
    return { chunks, phrases, sentences };
  });
}

/**
 * The matrix that mean-pools phrases from token columns: [B·P, width] with P = `phrasesPerRow`,
 * where row i·P + j averages the columns `columns[i][j]` (phrase j of narrative i) and the rows
 * of absent phrases (and of phrases given no column) are 0. Caller owns the tensor.
 */
export function phrasePoolingMatrix(columns: ReadonlyArray<ReadonlyArray<readonly number[]>>, phrasesPerRow: number, width: number): tf.Tensor2D {
  const rows = columns.length * phrasesPerRow;
  const pool = new Float32Array(rows * width);
  for (const [i, phrases] of columns.entries()) {
    for (const [j, ids] of phrases.entries()) {
      for (const t of ids) pool[(i * phrasesPerRow + j) * width + t] = 1 / ids.length;
    }
  }
  return tf.tensor2d(pool, [rows, width]);
}

/** Options of {@link encodePhrases}. */
export interface EncodePhrasesOptions {
  /** Phrases a narrative may have (max_phrases). */
  readonly maxPhrases: number;
  /** Phrase slots of the output (default: the largest phrase count of the batch). */
  readonly padTo?: number;
  /** How long captions are cut into encoder windows (default: hard 75-token windows, no overlap). */
  readonly windows?: CLIPChunkOptions;
  /** Also return the caption's token states (`caption`), for a model that reads the whole caption. */
  readonly caption?: boolean;
  /** Windows of `caption` per narrative (default: the most of the batch); a caption with more is an error. */
  readonly captionWindows?: number;
  /** Also return per phrase the mean of the other tokens of its sentence (`sentence`). */
  readonly sentence?: boolean;
}

/**
 * Phrase features: each phrase is the mean of the CLIP hidden states of the tokens its character
 * span covers. Captions longer than 75 tokens are encoded in windows (CLIPTokenizer.chunk, as
 * `windows` says), so a phrase anywhere in a long narrative gets its contextual features. Returns
 * [B, P, D] with P = the largest phrase count of the batch (or `padTo`) and the [B, P] mask; with
 * `caption`, also the caption's token states as the frozen UNet reads a prompt: each window
 * bos…eos and CLIP's padding (every position of a real window is 1 in the mask), the windows of a
 * narrative one after another, absent windows 0 in the mask: [B, K·L, D] with K = the most windows
 * of the batch (or `captionWindows`), L = model_max_length; with `sentence`, also per phrase the
 * mean hidden state of the other tokens of its sentence (`sentenceSpan`; 0 where the phrase is its
 * whole sentence), [B, P, D]. Caller owns the tensors.
 */
export function encodePhrases(
  tokenizer: CLIPTokenizer,
  textEncoder: CLIPTextModel,
  narratives: readonly Narrative[],
  options: EncodePhrasesOptions,
): PhraseFeatures {
  const tokenized = tokenizeNarratives(tokenizer, narratives, options.maxPhrases, options.windows, { sentences: options.sentence });
  const p = options.padTo ?? Math.max(...narratives.map((n) => n.phrases.length));
  const windows = tokenized.flatMap((t) => t.chunks.windows);
  const length = tokenizer.modelMaxLength;
  // each phrase's tokens as rows of the batch's flattened windows [W·L]
  let firstWindow = 0;
  const firstWindows: number[] = [];
  for (const { chunks } of tokenized) {
    firstWindows.push(firstWindow);
    firstWindow += chunks.windows.length;
  }
  const rowsOf = (i: number, tokens: readonly CLIPTokenPosition[]) => tokens.map(({ window, position }) => (firstWindows[i] + window) * length + position);
  const columns = tokenized.map(({ phrases }, i) => phrases.map((tokens) => rowsOf(i, tokens)));
  const counts = tokenized.map((t) => t.chunks.windows.length);
  const k = options.captionWindows ?? Math.max(...counts);
  if (options.caption) {
    counts.forEach((count, i) => {
      if (count > k)
        throw new Error(`narrative ${i}: its caption takes ${count} encoder windows, above captionWindows ${k}; raise captionWindows or shorten the caption`);
    });
  }
  return tf.tidy(() => {
    const { lastHiddenState } = textEncoder.forward(tf.tensor2d(windows, undefined, 'int32')); // [W, L, D]
    const d = lastHiddenState.shape[2];
    const flat = tf.reshape(lastHiddenState, [-1, d]); // [W·L, D]
    const pooled = tf.matMul(phrasePoolingMatrix(columns, p, flat.shape[0]), flat); // [B·P, W·L] × [W·L, D] → [B·P, D]
    const mask = narratives.map((n) => Array.from({ length: p }, (_, j) => (j < n.phrases.length ? 1 : 0)));
    let phrases: PhraseFeatures = {
      tensor: tf.reshape(pooled, [narratives.length, p, d]) as tf.Tensor3D,
      mask: tf.tensor2d(mask, [narratives.length, p], 'float32'),
    }; // [B, P, D], [B, P]
    if (options.sentence) {
      const sentenceColumns = tokenized.map(({ sentences }, i) => (sentences ?? []).map((tokens) => rowsOf(i, tokens)));
      const sentence = tf.matMul(phrasePoolingMatrix(sentenceColumns, p, flat.shape[0]), flat); // [B·P, W·L] × [W·L, D] → [B·P, D]
      phrases = { ...phrases, sentence: tf.reshape(sentence, [narratives.length, p, d]) as tf.Tensor3D }; // [B, P, D]
    }
    if (!options.caption) return phrases;
    // row t of narrative i: its window ⌊t/L⌋ at position t mod L, or the zero row W·L past its windows
    const rows = new Int32Array(narratives.length * k * length);
    const real = new Float32Array(rows.length);
    counts.forEach((count, i) => {
      for (let t = 0; t < k * length; t++) {
        const inside = t < count * length;
        rows[i * k * length + t] = inside ? firstWindows[i] * length + t : flat.shape[0];
        real[i * k * length + t] = inside ? 1 : 0;
      }
    });
    // phrase j of narrative i spans rows first…last of its narrative's K·L (window w, position q → w·L + q)
    const spans = new Float32Array(narratives.length * p * 2);
    tokenized.forEach(({ phrases: tokens }, i) => {
      tokens.forEach((ts, j) => {
        const at = (t: CLIPTokenPosition) => t.window * length + t.position;
        spans.set([at(ts[0]), at(ts[ts.length - 1])], (i * p + j) * 2);
      });
    });
    const padded = tf.concat([flat, tf.zeros([1, d])], 0); // [W·L + 1, D]
    const caption: CaptionTokens = {
      tensor: tf.reshape(tf.gather(padded, tf.tensor1d(rows, 'int32')), [narratives.length, k * length, d]) as tf.Tensor3D, // [B·K·L, D] → [B, K·L, D]
      mask: tf.tensor2d(real, [narratives.length, k * length]), // [B, K·L]
      spans: tf.tensor3d(spans, [narratives.length, p, 2]), // [B, P, 2]
    };
    return { ...phrases, caption };
  });
}
