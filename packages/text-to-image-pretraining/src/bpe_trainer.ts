import { CLIPTokenizer, bytesToUnicode, type CLIPTokenizerFiles } from '@png/diffusion-backbone';

export interface ClipBpeTrainingOptions {
  /** Largest vocabulary (512 byte symbols + merges + 2 special tokens); default 49408, CLIP's. */
  readonly vocabSize?: number;
  /** A pair seen fewer times than this is never merged; default 2. */
  readonly minFrequency?: number;
  /** tokenizer_config.json's model_max_length; default 77. */
  readonly modelMaxLength?: number;
}

/**
 * Learns a CLIP byte-level BPE vocabulary from a corpus, the way the CLIP vocabulary was made:
 * texts are cleaned and split into words exactly as `CLIPTokenizer` splits them, then the most
 * frequent adjacent symbol pair (ties: the smaller pair in code-unit order) is merged until the
 * vocabulary is full or no pair is frequent enough. The result has CLIP's layout (256 byte
 * symbols, the same with `</w>`, one token per merge, `<|startoftext|>`, `<|endoftext|>`) and
 * loads with `CLIPTokenizer.fromFiles` or, written to a folder, `CLIPTokenizer.fromPretrained`.
 */
export function trainClipBpe(texts: Iterable<string>, options: ClipBpeTrainingOptions = {}): CLIPTokenizerFiles {
  const vocabSize = options.vocabSize ?? 49408;
  const minFrequency = options.minFrequency ?? 2;
  const modelMaxLength = options.modelMaxLength ?? 77;
  if (!Number.isInteger(vocabSize) || vocabSize < 514)
    throw new Error(`trainClipBpe: vocabSize must be an integer ≥ 514 (512 byte symbols + 2 special tokens), got ${vocabSize}`);
  if (!Number.isInteger(minFrequency) || minFrequency < 1) throw new Error(`trainClipBpe: minFrequency must be a positive integer, got ${minFrequency}`);

  const bytes = bytesToUnicode().sort(); // CLIP's order: the printable bytes, then the rest (U+0100…)
  const symbols = [...bytes, ...bytes.map((b) => `${b}</w>`)];
  // A byte-level tokenizer without merges splits texts into CLIP's words, one symbol per byte.
  const base = CLIPTokenizer.fromFiles(filesOf(symbols, [], modelMaxLength), 'trainClipBpe');
  const wordCounts = new Map<string, number>();
  let count = 0;
  for (const text of texts) {
    if (typeof text !== 'string') throw new Error(`trainClipBpe: texts[${count}] is ${typeof text}, expected a string`);
    count++;
    let word: string[] = [];
    for (const id of base.encodeWithSpans(text).ids) {
      word.push(symbols[id]);
      if (id >= 256) {
        // the symbol with </w> ends a word
        const key = word.join(' ');
        wordCounts.set(key, (wordCounts.get(key) ?? 0) + 1);
        word = [];
      }
    }
  }
  if (wordCounts.size === 0) throw new Error('trainClipBpe: the corpus has no words; pass non-empty texts');

  const words = [...wordCounts].map(([key, n]) => ({ symbols: key.split(' '), n }));
  const merges: Array<[string, string]> = [];
  while (symbols.length + merges.length + 2 < vocabSize) {
    const pairs = new Map<string, number>();
    for (const { symbols: s, n } of words) {
      for (let i = 0; i + 1 < s.length; i++) pairs.set(`${s[i]} ${s[i + 1]}`, (pairs.get(`${s[i]} ${s[i + 1]}`) ?? 0) + n);
    }
    let best: string | undefined;
    let bestCount = minFrequency - 1;
    for (const [pair, n] of pairs) {
      if (n > bestCount || (n === bestCount && best !== undefined && pair < best)) {
        best = pair;
        bestCount = n;
      }
    }
    if (best === undefined) break;
    const [a, b] = best.split(' ');
    merges.push([a, b]);
    for (const w of words) {
      const s = w.symbols;
      const merged: string[] = [];
      for (let i = 0; i < s.length; i++) {
        if (i + 1 < s.length && s[i] === a && s[i + 1] === b) {
          merged.push(a + b);
          i++;
        } else merged.push(s[i]);
      }
      w.symbols = merged;
    }
  }
  return filesOf(symbols, merges, modelMaxLength);
}

/** The four files of a CLIP tokenizer folder for a vocabulary of `symbols` + one token per merge. */
function filesOf(symbols: readonly string[], merges: ReadonlyArray<readonly [string, string]>, modelMaxLength: number): CLIPTokenizerFiles {
  const vocab: Record<string, number> = {};
  let size = 0;
  for (const token of [...symbols, ...merges.map(([a, b]) => a + b), '<|startoftext|>', '<|endoftext|>']) vocab[token] ??= size++;
  return {
    vocab: JSON.stringify(vocab),
    merges: `${['#version: 0.2', ...merges.map(([a, b]) => `${a} ${b}`)].join('\n')}\n`,
    tokenizerConfig: JSON.stringify(
      { model_max_length: modelMaxLength, bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: '<|endoftext|>', unk_token: '<|endoftext|>' },
      null,
      2,
    ),
    specialTokensMap: JSON.stringify(
      { bos_token: '<|startoftext|>', eos_token: '<|endoftext|>', pad_token: '<|endoftext|>', unk_token: '<|endoftext|>' },
      null,
      2,
    ),
  };
}
