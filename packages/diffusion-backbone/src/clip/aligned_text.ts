/**
 * A string that remembers where each of its UTF-16 code units came from in an original text, so
 * that token offsets survive text cleaning (ftfy fixes, whitespace collapse, lower-casing).
 *
 * Invariant: `starts` and `ends` are non-decreasing, and unit i came from `original[starts[i],
 * ends[i])`. A replaced piece maps every unit of its replacement to the whole span it replaced.
 */
export class AlignedText {
  constructor(
    readonly text: string,
    readonly starts: readonly number[],
    readonly ends: readonly number[],
  ) {}

  /** `text` as found at `offset` in the original. */
  static from(text: string, offset = 0): AlignedText {
    const starts = new Array<number>(text.length);
    const ends = new Array<number>(text.length);
    for (let i = 0; i < text.length; i++) {
      starts[i] = offset + i;
      ends[i] = offset + i + 1;
    }
    return new AlignedText(text, starts, ends);
  }

  static concat(parts: readonly AlignedText[]): AlignedText {
    if (parts.length === 1) return parts[0];
    return new AlignedText(
      parts.map((p) => p.text).join(''),
      parts.flatMap((p) => p.starts),
      parts.flatMap((p) => p.ends),
    );
  }

  get length(): number {
    return this.text.length;
  }

  /** The original span [start, end) of units [i, j) (j > i). */
  span(i: number, j: number): [number, number] {
    return [this.starts[i], this.ends[j - 1]];
  }

  slice(i: number, j: number): AlignedText {
    return new AlignedText(this.text.slice(i, j), this.starts.slice(i, j), this.ends.slice(i, j));
  }

  /**
   * Replaces every match of the global regex `re` by `replacement(match)`. Units of an unchanged
   * match keep their own offsets; a changed match maps all its new units to the span it covered.
   */
  replace(re: RegExp, replacement: (match: string) => string): AlignedText {
    const b = new Builder(this);
    for (const m of this.text.matchAll(re)) {
      const i = m.index;
      const j = i + m[0].length;
      if (j === i) continue;
      b.copy(i);
      const r = replacement(m[0]);
      if (r === m[0]) b.copy(j);
      else b.put(r, i, j);
    }
    b.copy(this.text.length);
    return b.build();
  }

  /** Python's `str.lower()` (full case mapping with final sigma, as JS `toLowerCase`). */
  lower(): AlignedText {
    const whole = this.text.toLowerCase();
    if (whole === this.text) return this;
    const b = new Builder(this);
    let out = 0;
    let i = 0;
    for (const codePoint of this.text) {
      const n = codePoint.length;
      // The length of a code point's lower case does not depend on context (only final sigma
      // does, and σ/ς have one length), so the whole-string result can be cut per code point.
      const len = codePoint.toLowerCase().length;
      const piece = whole.slice(out, out + len);
      b.copy(i);
      if (len === n) b.putAligned(piece, i);
      else b.put(piece, i, i + n);
      out += len;
      i += n;
    }
    if (out !== whole.length) throw new Error(`AlignedText.lower: case mapping of ${JSON.stringify(this.text)} is context dependent; please report this text`);
    return b.build();
  }

  /**
   * Unicode NFC. Each character with its combining marks is normalised on its own; neighbours
   * that still compose with each other (Hangul jamo) are normalised together.
   */
  nfc(): AlignedText {
    if (this.text.normalize('NFC') === this.text) return this;
    const b = new Builder(this);
    const clusters = [...this.text.matchAll(/\P{M}\p{M}*|\p{M}+/gu)].map((m) => [m.index, m.index + m[0].length]);
    let [gs, ge] = clusters[0];
    const flush = () => {
      const g = this.text.slice(gs, ge);
      const n = g.normalize('NFC');
      b.copy(gs);
      if (n === g) b.copy(ge);
      else b.put(n, gs, ge);
    };
    for (let k = 1; k < clusters.length; k++) {
      const [cs, ce] = clusters[k];
      const g = this.text.slice(gs, ge);
      const c = this.text.slice(cs, ce);
      if ((g + c).normalize('NFC') !== g.normalize('NFC') + c.normalize('NFC')) {
        ge = ce;
      } else {
        flush();
        [gs, ge] = [cs, ce];
      }
    }
    flush();
    return b.build();
  }
}

/** Accumulates units of a new AlignedText from a source one. */
class Builder {
  private text = '';
  private readonly starts: number[] = [];
  private readonly ends: number[] = [];
  private at = 0;

  constructor(private readonly src: AlignedText) {}

  /** Copies source units [at, j) unchanged. */
  copy(j: number): void {
    if (j <= this.at) return;
    this.text += this.src.text.slice(this.at, j);
    for (let i = this.at; i < j; i++) {
      this.starts.push(this.src.starts[i]);
      this.ends.push(this.src.ends[i]);
    }
    this.at = j;
  }

  /** Emits `s` for source units [i, j): every new unit gets their whole span. */
  put(s: string, i: number, j: number): void {
    const [start, end] = this.src.span(i, j);
    this.text += s;
    for (let k = 0; k < s.length; k++) {
      this.starts.push(start);
      this.ends.push(end);
    }
    this.at = j;
  }

  /** Emits `s` unit for unit in place of source units [i, i + s.length). */
  putAligned(s: string, i: number): void {
    this.text += s;
    for (let k = 0; k < s.length; k++) {
      this.starts.push(this.src.starts[i + k]);
      this.ends.push(this.src.ends[i + k]);
    }
    this.at = i + s.length;
  }

  build(): AlignedText {
    return new AlignedText(this.text, this.starts, this.ends);
  }
}
