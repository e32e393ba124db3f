import { AlignedText } from './aligned_text';
import { HTML_ENTITIES } from './html_entities';

/**
 * The part of ftfy 6.1 `fix_text` (default config) that CLIP's tokenizer relies on, applied to an
 * AlignedText so offsets into the caption survive. Same segmenting (per line, HTML unescaping
 * switched off for good once a line contains '<'), same fixers in the same order, repeated until
 * nothing changes, then NFC.
 *
 * Not ported: `fix_encoding` (mojibake repair, e.g. 'cafÃ©' → 'café'), ftfy's heuristic core.
 * Text without mojibake is unaffected by it.
 */
export function fixText(text: AlignedText): AlignedText {
  const out: AlignedText[] = [];
  let unescapeEntities = true;
  for (let pos = 0; pos < text.length; ) {
    const nl = text.text.indexOf('\n', pos);
    const end = nl < 0 ? text.length : nl + 1;
    let segment = text.slice(pos, end);
    if (segment.text.includes('<')) unescapeEntities = false;
    for (;;) {
      const before = segment.text;
      segment = fixSegment(segment, unescapeEntities);
      if (segment.text === before) break;
    }
    out.push(segment);
    pos = end;
  }
  return out.length ? AlignedText.concat(out) : text;
}

/** One pass of ftfy's `fix_and_explain` loop body. */
function fixSegment(t: AlignedText, unescapeEntities: boolean): AlignedText {
  if (unescapeEntities) t = t.replace(/&#?[0-9A-Za-z]{1,24};/g, unescapeEntity);
  return (
    t
      .replace(/[\x80-\x9f]/g, (c) => CP1252_C1[c.charCodeAt(0) - 0x80]) // fix_c1_controls
      .replace(LIGATURE_RE, (c) => LIGATURES[c]) // fix_latin_ligatures
      .replace(/[\u3000\uff01-\uffef]/g, widthFix) // fix_character_width
      .replace(/[\u201c-\u201f]/g, () => '"') // uncurl_quotes
      .replace(/[\u02bc\u2018-\u201b]/g, () => "'")
      .replace(/\r\n|[\r\u2028\u2029\u0085]/g, () => '\n') // fix_line_breaks
      .replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, () => '\ufffd') // fix_surrogates
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ftfy's remove_terminal_escapes matches the ESC control character on purpose
      .replace(/\x1b\[[\p{Nd};]*[a-zA-Z]/gu, () => '') // remove_terminal_escapes
      // biome-ignore lint/suspicious/noControlCharactersInRegex: ftfy's remove_control_chars strips these control characters on purpose
      .replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, () => '') // remove_control_chars
      .nfc()
  );
}

/** Windows-1252 for bytes 0x80–0x9F, holes kept as the same code point (ftfy's sloppy codec, HTML5). */
const CP1252_C1 = [
  '\u20ac',
  '\x81',
  '\u201a',
  '\u0192',
  '\u201e',
  '\u2026',
  '\u2020',
  '\u2021',
  '\u02c6',
  '\u2030',
  '\u0160',
  '\u2039',
  '\u0152',
  '\x8d',
  '\u017d',
  '\x8f',
  '\x90',
  '\u2018',
  '\u2019',
  '\u201c',
  '\u201d',
  '\u2022',
  '\u2013',
  '\u2014',
  '\u02dc',
  '\u2122',
  '\u0161',
  '\u203a',
  '\u0153',
  '\x9d',
  '\u017e',
  '\u0178',
];

const LIGATURES: Record<string, string> = {
  Ĳ: 'IJ',
  ĳ: 'ij',
  ŉ: 'ʼn',
  Ǳ: 'DZ',
  ǲ: 'Dz',
  ǳ: 'dz',
  Ǆ: 'DŽ',
  ǅ: 'Dž',
  ǆ: 'dž',
  Ǉ: 'LJ',
  ǈ: 'Lj',
  ǉ: 'lj',
  Ǌ: 'NJ',
  ǋ: 'Nj',
  ǌ: 'nj',
  ﬀ: 'ff',
  ﬁ: 'fi',
  ﬂ: 'fl',
  ﬃ: 'ffi',
  ﬄ: 'ffl',
  ﬅ: 'ſt',
  ﬆ: 'st',
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join('')}]`, 'g');

/** Fullwidth and halfwidth forms to their standard width (their NFKC form); U+3000 to a space. */
function widthFix(c: string): string {
  return c === '\u3000' ? ' ' : c.normalize('NFKC');
}

/** ftfy's `_unescape_fixup`: a known entity, or a numeric reference that `html.unescape` fully decodes. */
function unescapeEntity(ref: string): string {
  const name = ref.slice(1, -1);
  const named = HTML_ENTITIES.get(name);
  if (named !== undefined) return named;
  const m = /^#(?:([0-9]+)|[xX]([0-9a-fA-F]+))$/.exec(name);
  return m ? charref(m[1] !== undefined ? parseInt(m[1], 10) : parseInt(m[2], 16)) : ref;
}

/** Python `html.unescape` of a numeric character reference `&#num;`. */
function charref(num: number): string {
  if (num === 0) return '\ufffd';
  if (num === 0x0d) return '\r';
  if (num >= 0x80 && num <= 0x9f) return CP1252_C1[num - 0x80];
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
  const invalid =
    (num >= 0x01 && num <= 0x08) ||
    num === 0x0b ||
    (num >= 0x0e && num <= 0x1f) ||
    num === 0x7f ||
    (num >= 0xfdd0 && num <= 0xfdef) ||
    (num & 0xfffe) === 0xfffe;
  return invalid ? '' : String.fromCodePoint(num);
}
