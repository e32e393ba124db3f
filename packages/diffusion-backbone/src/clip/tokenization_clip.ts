import { nodeOnly, parseJsonObject, readInputFile } from '@png/core';
import { AlignedText } from './aligned_text';
import { fixText } from './ftfy';

/** Padding strategies of transformers' `__call__`. */
export type PaddingStrategy = 'max_length' | 'longest' | false;

export interface CLIPTokenizerCallOptions {
  /** 'max_length' pads to `maxLength`, 'longest' to the longest sequence of the batch. Default: no padding. */
  readonly padding?: PaddingStrategy;
  /** Cut sequences to `maxLength` ids (bos and eos included). Default false. */
  readonly truncation?: boolean;
  /** Default: `modelMaxLength` (77). */
  readonly maxLength?: number;
}

export interface CLIPTokenizerOutput {
  readonly inputIds: number[][];
  /** 1 for real tokens (bos and eos included), 0 for padding. */
  readonly attentionMask: number[][];
}

/** Token ids of a text without bos/eos, with the span of the original text each token came from. */
export interface CLIPTokenSpans {
  readonly ids: number[];
  /** Per token, [charStart, charEnd) in UTF-16 code units of the original text. */
  readonly spans: Array<[number, number]>;
}

/** Where a token of a chunked text lives: window index and position in that window (bos is 0). */
export interface CLIPTokenPosition {
  readonly window: number;
  readonly position: number;
}

/** How `CLIPTokenizer.chunk` cuts a long text into windows. */
export interface CLIPChunkOptions {
  /** Tokens per window, bos and eos excluded (default model_max_length − 2: 75). */
  readonly windowTokens?: number;
  /** Tokens each window repeats from the end of the one before (default 0: windows do not overlap). */
  readonly overlap?: number;
  /** End windows after a sentence's final punctuation when one lies in the window (default false: at a word boundary). */
  readonly sentences?: boolean;
}

/** A long text cut into windows that each fit the text encoder, with a character-span → token map. */
export interface CLIPTextChunks {
  /** Each `[bos, ≤ windowTokens ids, eos, pad…]`, `windowTokens + 2` long. */
  readonly windows: number[][];
  readonly attentionMasks: number[][];
  /**
   * The tokens overlapping the characters [charStart, charEnd) of the original text (UTF-16 code
   * units), in text order. A span that straddles two windows yields positions in both.
   */
  tokenOfChar(charStart: number, charEnd: number): CLIPTokenPosition[];
  /**
   * Per span [start, end) of `spans` (e.g. a narrative's noun phrases), its tokens as
   * `tokenOfChar` gives them (empty for a span that covers none): the one span → token map that
   * phrase pooling, cross-attention maps and the benchmark loader read.
   */
  phraseTokens(spans: ReadonlyArray<readonly [number, number]>): CLIPTokenPosition[][];
}

/** The text files of a transformers CLIP tokenizer folder. */
export interface CLIPTokenizerFiles {
  /** vocab.json */
  readonly vocab: string;
  /** merges.txt */
  readonly merges: string;
  /** tokenizer_config.json */
  readonly tokenizerConfig?: string;
  /** special_tokens_map.json (overrides tokenizer_config.json, as in transformers) */
  readonly specialTokensMap?: string;
}

/** Python `regex`'s `\s` (Unicode White_Space; unlike JS's `\s` it has U+0085 and lacks U+FEFF). */
const WS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const WHITESPACE_RUN = new RegExp(`[${WS}]+`, 'g');
/** CLIP's pre-tokenizer pattern (`CLIPTokenizer.pat`, IGNORECASE); digits are single tokens. */
const PAT = new RegExp(`<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^${WS}\\p{L}\\p{N}]+`, 'giu');
/** transformers keeps at most this many merges (vocab size 49408 = 256·2 bytes + merges + 2 special). */
const MAX_MERGES = 49152 - 256 - 2;
/** Final punctuation that ends a sentence ('.', '!', '?'), perhaps with closing quotes or brackets: a regex source. */
export const SENTENCE_END_PUNCTUATION = `[.!?]["'”’)\\]]*`;
/** A token that ends a sentence. */
const SENTENCE_END = new RegExp(`${SENTENCE_END_PUNCTUATION}$`);
const BPE_CACHE_LIMIT = 50_000;

/**
 * transformers' `CLIPTokenizer` (slow, with ftfy): ftfy fixes, whitespace collapse, lower case,
 * CLIP's regex, byte-level BPE with `</w>` word ends, `<|startoftext|>` … `<|endoftext|>` around
 * every sequence. Special-token strings in the text are kept whole. Also chunks texts longer than
 * the encoder's 77 positions and maps character spans to tokens (`chunk`).
 */
export class CLIPTokenizer {
  readonly bosToken: string;
  readonly eosToken: string;
  readonly padToken: string;
  readonly unkToken: string;
  readonly bosTokenId: number;
  readonly eosTokenId: number;
  readonly padTokenId: number;
  readonly unkTokenId: number;
  /** Longest sequence the text encoder takes, bos and eos included (77). */
  readonly modelMaxLength: number;

  private readonly encoder: Map<string, number>;
  private readonly ranks: Map<string, number>;
  private readonly byteEncoder: string[] = bytesToUnicode();
  private readonly specialRe: RegExp;
  private readonly cache = new Map<string, string[]>();

  private constructor(vocab: Record<string, number>, merges: Array<[string, string]>, special: SpecialTokens, modelMaxLength: number, name: string) {
    this.encoder = new Map(Object.entries(vocab));
    this.ranks = new Map(merges.map(([a, b], i) => [`${a} ${b}`, i]));
    this.bosToken = special.bos_token;
    this.eosToken = special.eos_token;
    this.padToken = special.pad_token;
    this.unkToken = special.unk_token;
    const id = (field: string, token: string) => {
      const v = this.encoder.get(token);
      if (v === undefined) throw new Error(`${name}: ${field} ${JSON.stringify(token)} is not in vocab.json; the tokenizer files do not belong together`);
      return v;
    };
    this.bosTokenId = id('bos_token', this.bosToken);
    this.eosTokenId = id('eos_token', this.eosToken);
    this.padTokenId = id('pad_token', this.padToken);
    this.unkTokenId = id('unk_token', this.unkToken);
    this.modelMaxLength = modelMaxLength;
    // transformers never splits its special tokens (its "no split" trie); longest first
    const specials = [...new Set([this.bosToken, this.eosToken, this.unkToken, this.padToken])].sort((a, b) => b.length - a.length);
    this.specialRe = new RegExp(specials.map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('|'), 'g');
  }

  /** Loads `vocab.json`, `merges.txt` and (if present) `tokenizer_config.json` and `special_tokens_map.json` from `dir`. Node only. */
  static async fromPretrained(dir: string): Promise<CLIPTokenizer> {
    const { fs, path } = await nodeOnly('CLIPTokenizer.fromPretrained');
    if (!fs.existsSync(dir)) throw new Error(`${dir}: no such folder; pass a CLIP tokenizer folder (vocab.json, merges.txt)`);
    const read = async (file: string): Promise<string | undefined> => {
      const p = path.join(dir, file);
      return fs.existsSync(p) ? (await readInputFile(p, `a CLIP tokenizer file (${file})`)).toString('utf8') : undefined;
    };
    const readRequired = async (file: string): Promise<string> => {
      const text = await read(file);
      if (text === undefined) throw new Error(`${path.join(dir, file)}: missing; a CLIP tokenizer folder needs vocab.json and merges.txt`);
      return text;
    };
    return CLIPTokenizer.fromFiles(
      {
        vocab: await readRequired('vocab.json'),
        merges: await readRequired('merges.txt'),
        tokenizerConfig: await read('tokenizer_config.json'),
        specialTokensMap: await read('special_tokens_map.json'),
      },
      dir,
    );
  }

  /** Builds a tokenizer from the contents of its files (browsers, tests). `name` prefixes errors. */
  static fromFiles(files: CLIPTokenizerFiles, name = 'CLIPTokenizer'): CLIPTokenizer {
    const vocab = parseJsonObject(files.vocab, `${name}/vocab.json`);
    for (const [token, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id)) throw new Error(`${name}/vocab.json: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, expected an integer`);
    }
    const lines = files.merges.trim().split('\n');
    const header = lines[0]?.startsWith('#') ? 1 : 0; // '#version: 0.2'
    const merges = lines.slice(header, header + MAX_MERGES).map((line, i): [string, string] => {
      const parts = line.trim().split(/\s+/);
      if (parts.length !== 2)
        throw new Error(`${name}/merges.txt: line ${header + i + 1} is ${JSON.stringify(line)}, expected two symbols separated by a space`);
      return [parts[0], parts[1]];
    });
    const config = files.tokenizerConfig ? parseJsonObject(files.tokenizerConfig, `${name}/tokenizer_config.json`) : {};
    const map = files.specialTokensMap ? parseJsonObject(files.specialTokensMap, `${name}/special_tokens_map.json`) : {};
    const special = { ...DEFAULT_SPECIAL_TOKENS };
    for (const field of Object.keys(special) as Array<keyof SpecialTokens>) {
      for (const [source, file] of [
        [config, 'tokenizer_config.json'],
        [map, 'special_tokens_map.json'],
      ] as const) {
        if (source[field] !== undefined && source[field] !== null) special[field] = tokenContent(source[field], `${name}/${file}`, field);
      }
    }
    const maxLength = config.model_max_length ?? 77;
    if (!Number.isInteger(maxLength) || (maxLength as number) < 2) {
      throw new Error(`${name}/tokenizer_config.json: model_max_length is ${JSON.stringify(maxLength)}, expected an integer ≥ 2`);
    }
    return new CLIPTokenizer(vocab as Record<string, number>, merges, special, maxLength as number, name);
  }

  get vocabSize(): number {
    return this.encoder.size;
  }

  /** Token ids of `text` with bos and eos, unpadded (transformers `encode`). */
  encode(text: string, options: { truncation?: boolean; maxLength?: number } = {}): number[] {
    return this.call(text, { truncation: options.truncation, maxLength: options.maxLength }).inputIds[0];
  }

  /**
   * transformers `tokenizer(text, padding, truncation, max_length)`: bos + ids + eos per text,
   * truncated to `maxLength` (the SD pipeline: `padding: 'max_length', truncation: true`), padded
   * on the right with the pad token.
   */
  call(text: string | readonly string[], options: CLIPTokenizerCallOptions = {}): CLIPTokenizerOutput {
    const texts = typeof text === 'string' ? [text] : text;
    if (!Array.isArray(texts)) throw new Error(`CLIPTokenizer: text must be a string or an array of strings, got ${typeName(text)}`);
    const maxLength = options.maxLength ?? this.modelMaxLength;
    if (!Number.isInteger(maxLength) || maxLength < 2)
      throw new Error(`CLIPTokenizer: maxLength must be an integer ≥ 2 (room for bos and eos), got ${maxLength}`);
    if (![undefined, false, 'max_length', 'longest'].includes(options.padding)) {
      throw new Error(`CLIPTokenizer: padding must be 'max_length', 'longest' or false, got ${JSON.stringify(options.padding)}`);
    }
    const seqs = texts.map((t, i) => {
      let ids = this.tokenize(t, `text[${i}]`).ids;
      if (options.truncation && ids.length > maxLength - 2) ids = ids.slice(0, maxLength - 2);
      return [this.bosTokenId, ...ids, this.eosTokenId];
    });
    const target = options.padding === 'max_length' ? maxLength : options.padding === 'longest' ? Math.max(...seqs.map((s) => s.length)) : 0;
    return {
      inputIds: seqs.map((s) => (s.length < target ? [...s, ...new Array<number>(target - s.length).fill(this.padTokenId)] : s)),
      attentionMask: seqs.map((s) => [...new Array<number>(s.length).fill(1), ...new Array<number>(Math.max(0, target - s.length)).fill(0)]),
    };
  }

  /** Token ids of `text` without bos/eos, each with the span of `text` it came from. */
  encodeWithSpans(text: string): CLIPTokenSpans {
    const { ids, spans } = this.tokenize(text, 'text');
    return { ids, spans };
  }

  /**
   * Cuts `text` into windows of at most `windowTokens` tokens (default 75, so that a window with
   * bos and eos fills the encoder's 77 positions). Windows break between words when they can (with
   * `sentences`, after a sentence's final punctuation when one lies in the window); a word longer
   * than a window is split. With `overlap`, each window starts that many tokens before the end of
   * the one before, so that a token just after a cut still reads left context (CLIP's encoder is
   * causal); every token is read from the first window that holds it, where it has the most left
   * context. Encode each window, then pool a phrase's features from its tokens (`phraseTokens`;
   * `encodePhrases` does both).
   */
  chunk(text: string, options: CLIPChunkOptions = {}): CLIPTextChunks {
    const windowTokens = options.windowTokens ?? this.modelMaxLength - 2;
    if (!Number.isInteger(windowTokens) || windowTokens < 1 || windowTokens > this.modelMaxLength - 2) {
      throw new Error(`CLIPTokenizer.chunk: windowTokens must be an integer in [1, ${this.modelMaxLength - 2}] (model_max_length − 2), got ${windowTokens}`);
    }
    const overlap = options.overlap ?? 0;
    if (!Number.isInteger(overlap) || overlap < 0 || overlap >= windowTokens) {
      throw new Error(`CLIPTokenizer.chunk: overlap must be an integer in [0, ${windowTokens - 1}] (below windowTokens), got ${overlap}`);
    }
    const { ids, spans, words } = this.tokenize(text, 'text');
    // token k ends a sentence: the last piece of a word of final punctuation ('.', '!', '?', maybe closing quotes)
    const endsSentence = (k: number) => options.sentences === true && words[k + 1] !== words[k] && SENTENCE_END.test(text.slice(spans[k][0], spans[k][1]));
    const windows: number[][] = [];
    const attentionMasks: number[][] = [];
    const where: CLIPTokenPosition[] = [];
    // tokens before `read` are already read from an earlier window
    for (let start = 0, read = 0; ; ) {
      let end = Math.min(start + windowTokens, ids.length);
      if (end < ids.length) {
        let sentenceEnd = end;
        while (sentenceEnd > read && !endsSentence(sentenceEnd - 1)) sentenceEnd--;
        if (sentenceEnd > read) end = sentenceEnd;
        else if (words[end] === words[end - 1]) {
          let wordStart = end - 1;
          while (wordStart > read && words[wordStart - 1] === words[end]) wordStart--;
          if (wordStart > read) end = wordStart; // else the word alone overflows the window: split it
        }
      }
      const body = ids.slice(start, end);
      const pad = windowTokens - body.length;
      for (let k = read; k < end; k++) where.push({ window: windows.length, position: k - start + 1 });
      windows.push([this.bosTokenId, ...body, this.eosTokenId, ...new Array<number>(pad).fill(this.padTokenId)]);
      attentionMasks.push([...new Array<number>(body.length + 2).fill(1), ...new Array<number>(pad).fill(0)]);
      if (end >= ids.length) break;
      read = end;
      // the next window repeats up to `overlap` tokens, from the start of a word when it can
      let next = Math.max(start + 1, end - overlap);
      while (next > start + 1 && next < end && words[next - 1] === words[next]) next--;
      start = next;
    }
    const length = text.length;
    const tokenOfChar = (charStart: number, charEnd: number): CLIPTokenPosition[] => {
      if (!Number.isInteger(charStart) || !Number.isInteger(charEnd) || charStart < 0 || charEnd < charStart || charEnd > length) {
        throw new Error(`tokenOfChar: expected integers 0 ≤ charStart ≤ charEnd ≤ ${length} (the text length), got (${charStart}, ${charEnd})`);
      }
      const out: CLIPTokenPosition[] = [];
      spans.forEach(([s, e], k) => {
        if (s < charEnd && e > charStart) out.push(where[k]);
      });
      return out;
    };
    return { windows, attentionMasks, tokenOfChar, phraseTokens: (phrases) => phrases.map(([start, end]) => tokenOfChar(start, end)) };
  }

  /** ids (no bos/eos), their spans in `text` and the index of the pre-tokenizer word each came from. */
  private tokenize(text: string, what: string): { ids: number[]; spans: Array<[number, number]>; words: number[] } {
    if (typeof text !== 'string') throw new Error(`CLIPTokenizer: ${what} must be a string, got ${typeName(text)}`);
    const ids: number[] = [];
    const spans: Array<[number, number]> = [];
    const words: number[] = [];
    let word = 0;
    const addWord = (pieces: string[], pieceSpans: Array<[number, number]>) => {
      pieces.forEach((p, k) => {
        ids.push(this.encoder.get(p) ?? this.unkTokenId);
        spans.push(pieceSpans[k]);
        words.push(word);
      });
      word++;
    };
    let pos = 0;
    for (const m of [...text.matchAll(this.specialRe), null]) {
      const end = m ? m.index : text.length;
      if (end > pos) this.tokenizeChunk(AlignedText.from(text.slice(pos, end), pos), addWord);
      if (m) {
        addWord([m[0]], [[m.index, m.index + m[0].length]]);
        pos = m.index + m[0].length;
      }
    }
    return { ids, spans, words };
  }

  /** transformers `_tokenize` on text between special tokens: clean, split into words, BPE each. */
  private tokenizeChunk(chunk: AlignedText, addWord: (pieces: string[], spans: Array<[number, number]>) => void): void {
    let t = fixText(chunk).replace(WHITESPACE_RUN, () => ' ');
    const lead = t.text.startsWith(' ') ? 1 : 0;
    const trail = t.length > lead && t.text.endsWith(' ') ? 1 : 0;
    // U+0345 (a mark whose case fold is a letter) matches no alternative of PAT under Python
    // regex's IGNORECASE, so findall skips it like a space; JS would take it as a letter.
    t = t
      .slice(lead, t.length - trail)
      .lower()
      .replace(/\u0345/g, () => ' ');
    for (const m of t.text.matchAll(PAT)) {
      // byte-level: one symbol per UTF-8 byte, remembering the code units each byte belongs to
      let symbols = '';
      const unitOfByte: Array<[number, number]> = [];
      for (let i = m.index; i < m.index + m[0].length; ) {
        // biome-ignore lint/style/noNonNullAssertion: i < t.text.length, so codePointAt(i) is a number
        const cp = t.text.codePointAt(i)!;
        const n = cp > 0xffff ? 2 : 1;
        for (const byte of utf8(cp)) {
          symbols += this.byteEncoder[byte];
          unitOfByte.push([i, i + n]);
        }
        i += n;
      }
      const pieces = this.bpe(symbols);
      let b = 0;
      const pieceSpans = pieces.map((p): [number, number] => {
        const nBytes = p.endsWith('</w>') ? p.length - 4 : p.length;
        const span = t.span(unitOfByte[b][0], unitOfByte[b + nBytes - 1][1]);
        b += nBytes;
        return span;
      });
      addWord(pieces, pieceSpans);
    }
  }

  /**
   * CLIP's BPE of one word (a string of byte symbols): the last symbol carries `</w>`; repeatedly
   * merge every occurrence (left to right) of the adjacent pair with the lowest merge rank. Same
   * result as transformers' loop, in O(n log n) with a heap.
   */
  private bpe(token: string): string[] {
    if (SPECIAL_WORDS.has(token)) return [token];
    const cached = this.cache.get(token);
    if (cached) return cached;
    const n = token.length;
    const sym = [...token];
    sym[n - 1] += '</w>';
    const next = Int32Array.from({ length: n }, (_, i) => (i + 1 < n ? i + 1 : -1));
    const prev = Int32Array.from({ length: n }, (_, i) => i - 1);
    const alive = new Uint8Array(n).fill(1);
    const rank = (i: number) => (i >= 0 && next[i] >= 0 ? this.ranks.get(`${sym[i]} ${sym[next[i]]}`) : undefined);
    const heap = new PairHeap();
    const push = (i: number) => {
      const r = rank(i);
      if (r !== undefined) heap.push(r, i);
    };
    for (let i = 0; i < n - 1; i++) push(i);
    while (heap.size) {
      // one round of transformers' loop: all occurrences of the best pair, left to right
      const r = heap.peekRank();
      const lefts: number[] = [];
      while (heap.size && heap.peekRank() === r) lefts.push(heap.pop());
      lefts.sort((a, b) => a - b);
      for (const i of lefts) {
        if (!alive[i] || rank(i) !== r) continue; // consumed earlier this round, or stale
        const j = next[i];
        sym[i] += sym[j];
        alive[j] = 0;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        push(prev[i]);
        push(i);
      }
    }
    const word = sym.filter((_, i) => alive[i]);
    if (this.cache.size >= BPE_CACHE_LIMIT) this.cache.clear();
    this.cache.set(token, word);
    return word;
  }
}

interface SpecialTokens {
  bos_token: string;
  eos_token: string;
  pad_token: string;
  unk_token: string;
}

/** transformers' `CLIPTokenizer.__init__` defaults. */
const DEFAULT_SPECIAL_TOKENS: SpecialTokens = {
  bos_token: '<|startoftext|>',
  eos_token: '<|endoftext|>',
  pad_token: '<|endoftext|>',
  unk_token: '<|endoftext|>',
};

/** Words the BPE returns whole (transformers seeds its BPE cache with them). */
const SPECIAL_WORDS = new Set(['<|startoftext|>', '<|endoftext|>']);

/** A special token as stored: a plain string or `{"__type": "AddedToken", "content": …}`. */
function tokenContent(value: unknown, file: string, field: string): string {
  if (typeof value === 'string') return value;
  if (value && typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') return (value as { content: string }).content;
  throw new Error(`${file}: ${field} is ${JSON.stringify(value)}, expected a string or an AddedToken object with "content"`);
}

/** Writes a tokenizer's files to `dir` (vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json), each atomically. */
export async function saveClipTokenizerFiles(dir: string, files: CLIPTokenizerFiles): Promise<void> {
  const { path, utils } = await nodeOnly('saveClipTokenizerFiles');
  utils.writeFileAtomic(path.join(dir, 'vocab.json'), files.vocab);
  utils.writeFileAtomic(path.join(dir, 'merges.txt'), files.merges);
  if (files.tokenizerConfig !== undefined) utils.writeFileAtomic(path.join(dir, 'tokenizer_config.json'), files.tokenizerConfig);
  if (files.specialTokensMap !== undefined) utils.writeFileAtomic(path.join(dir, 'special_tokens_map.json'), files.specialTokensMap);
}

function typeName(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'an array' : typeof v;
}

/** GPT-2/CLIP `bytes_to_unicode`: printable bytes map to themselves, the rest to U+0100 onwards. */
export function bytesToUnicode(): string[] {
  const table = new Array<string>(256);
  let extra = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    table[b] = String.fromCharCode(printable ? b : 256 + extra++);
  }
  return table;
}

function utf8(cp: number): number[] {
  if (cp < 0x80) return [cp];
  if (cp < 0x800) return [0xc0 | (cp >> 6), 0x80 | (cp & 0x3f)];
  if (cp < 0x10000) return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
  return [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
}

/** Min-heap of (rank, left symbol index) pairs. */
class PairHeap {
  private readonly ranks: number[] = [];
  private readonly items: number[] = [];

  get size(): number {
    return this.items.length;
  }

  peekRank(): number {
    return this.ranks[0];
  }

  push(rank: number, item: number): void {
    let i = this.items.length;
    this.ranks.push(rank);
    this.items.push(item);
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.ranks[p] <= rank) break;
      this.ranks[i] = this.ranks[p];
      this.items[i] = this.items[p];
      i = p;
    }
    this.ranks[i] = rank;
    this.items[i] = item;
  }

  pop(): number {
    const top = this.items[0];
    const rank = this.ranks.pop();
    const item = this.items.pop();
    if (rank === undefined || item === undefined) throw new Error('PairHeap.pop: the heap is empty; check size first');
    const n = this.items.length;
    if (n > 0) {
      let i = 0;
      for (;;) {
        let c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && this.ranks[c + 1] < this.ranks[c]) c++;
        if (this.ranks[c] >= rank) break;
        this.ranks[i] = this.ranks[c];
        this.items[i] = this.items[c];
        i = c;
      }
      this.ranks[i] = rank;
      this.items[i] = item;
    }
    return top;
  }
}
