/**
 * BERT's basic tokenisation, as the official PNG pre-processing runs it (`BasicTokenizer` of the
 * PNG repository's `baseline/models/tokenization.py`, `do_lower_case=True`; transformers'
 * `tokenization_bert.py` behaves the same apart from an NFC normalisation added later), with the
 * character range of every word in the input kept, so that a word can be found again in the text.
 *
 * Steps, in the order BERT applies them:
 * 1. NUL, U+FFFD and control characters (Unicode category C*, except tab, newline and carriage
 *    return) are removed; tab, newline, carriage return and category Zs are white space.
 * 2. Every CJK ideograph becomes a word of its own.
 * 3. The text is split at white space (Python's `str.split()`, which also splits at U+2028/U+2029).
 * 4. Each piece that is not one of `[UNK] [SEP] [PAD] [CLS] [MASK]` is lower-cased, decomposed
 *    (NFD) and stripped of non-spacing marks (Mn), then split so that every punctuation character
 *    (ASCII non-alphanumerics, Unicode category P*) is a word of its own.
 *
 * Lower-casing is done per piece, as BERT does it (a final Σ becomes ς); accent stripping is done
 * per character (BERT does it per piece), which gives the same words in the same places and can
 * differ in a word's `text` only by the order of combining marks of category Mc.
 */

/** One word: its normalised text and where it comes from, `text.slice(start, end)` of the input. */
export interface BasicToken {
  readonly text: string;
  /** UTF-16 offsets [start, end) of the characters the word was made from. */
  readonly start: number;
  readonly end: number;
}

/** Pieces BERT leaves as they are (no lower-casing, no punctuation split). */
const NEVER_SPLIT = new Set(['[UNK]', '[SEP]', '[PAD]', '[CLS]', '[MASK]']);

/** One input character (code point) and its UTF-16 range. */
interface SourceChar {
  readonly char: string;
  readonly start: number;
  readonly end: number;
}

/** The words of `text`, in order, as BERT's `BasicTokenizer(do_lower_case=True).tokenize` makes them. */
export function basicTokenize(text: string): BasicToken[] {
  const tokens: BasicToken[] = [];
  let piece: SourceChar[] = [];
  const endPiece = (): void => {
    if (piece.length > 0) tokens.push(...splitPiece(piece));
    piece = [];
  };
  for (let i = 0; i < text.length; ) {
    // biome-ignore lint/style/noNonNullAssertion: i < text.length, so codePointAt(i) is a number
    const codePoint = text.codePointAt(i)!;
    const char = String.fromCodePoint(codePoint);
    const source = { char, start: i, end: i + char.length };
    i = source.end;
    if (codePoint === 0 || codePoint === 0xfffd || isControl(char)) continue;
    if (isWhiteSpace(char)) {
      endPiece();
    } else if (isCjkIdeograph(codePoint)) {
      endPiece();
      tokens.push({ text: char, start: source.start, end: source.end });
    } else {
      piece.push(source);
    }
  }
  endPiece();
  return tokens;
}

/** Step 4 on one white-space-delimited piece. */
function splitPiece(piece: readonly SourceChar[]): BasicToken[] {
  const start = piece[0].start;
  const end = piece[piece.length - 1].end;
  const whole = piece.map((c) => c.char).join('');
  if (NEVER_SPLIT.has(whole)) return [{ text: whole, start, end }];
  // Lower-cased as a whole for the final sigma; each character's share is as long as its own
  // lower case (one code point, two for "İ").
  const lowered = [...whole.toLowerCase()];
  let next = 0;
  const words: BasicToken[] = [];
  let word: { text: string; start: number; end: number } | undefined;
  for (const source of piece) {
    const share = [...source.char.toLowerCase()].length;
    const lower = lowered.slice(next, next + share).join('');
    next += share;
    for (const char of stripAccents(lower)) {
      if (isPunctuation(char)) {
        if (word) words.push(word);
        word = undefined;
        words.push({ text: char, start: source.start, end: source.end });
      } else if (word) {
        word.text += char;
        word.end = source.end;
      } else {
        word = { text: char, start: source.start, end: source.end };
      }
    }
  }
  if (word) words.push(word);
  return words;
}

function stripAccents(text: string): string {
  return text.normalize('NFD').replace(/\p{Mn}/gu, '');
}

/** Category C* other than tab, newline and carriage return (BERT counts those as white space). */
function isControl(char: string): boolean {
  return char !== '\t' && char !== '\n' && char !== '\r' && /^\p{C}$/u.test(char);
}

/**
 * BERT's white space (space, tab, newline, carriage return, Zs) and what Python's `str.split()`
 * also splits at once controls are gone (U+2028 line and U+2029 paragraph separator).
 */
function isWhiteSpace(char: string): boolean {
  return char === ' ' || char === '\t' || char === '\n' || char === '\r' || /^[\p{Zs}\p{Zl}\p{Zp}]$/u.test(char);
}

/** ASCII non-alphanumerics (`$`, `^`, `` ` `` included) and Unicode category P*. */
function isPunctuation(char: string): boolean {
  const c = char.charCodeAt(0); // the ASCII ranges below are single code units
  if ((c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126)) return true;
  return /^\p{P}$/u.test(char);
}

/** The CJK Unified Ideographs blocks and their extensions/compatibility blocks, as BERT lists them. */
function isCjkIdeograph(c: number): boolean {
  return (
    (c >= 0x4e00 && c <= 0x9fff) ||
    (c >= 0x3400 && c <= 0x4dbf) ||
    (c >= 0x20000 && c <= 0x2a6df) ||
    (c >= 0x2a700 && c <= 0x2b73f) ||
    (c >= 0x2b740 && c <= 0x2b81f) ||
    (c >= 0x2b820 && c <= 0x2ceaf) ||
    (c >= 0xf900 && c <= 0xfaff) ||
    (c >= 0x2f800 && c <= 0x2fa1f)
  );
}
