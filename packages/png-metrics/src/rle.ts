/**
 * COCO run-length encoding (the `pycocotools.mask` format). Runs alternate 0s and 1s, start with a
 * (possibly empty) run of 0s, and follow the **column-major** (Fortran) order of the H×W mask.
 * `counts` is either the uncompressed array of run lengths or the compressed COCO string.
 */

/** A COCO RLE: `size` is [height, width]; `counts` is a run-length array or the compressed string. */
export interface CocoRle {
  size: [number, number];
  counts: number[] | string;
}

/** Options of {@link encodeRle}. */
export interface EncodeRleOptions {
  /** Emit the compressed COCO string (default) or the plain array of run lengths. */
  compressed?: boolean;
}

/**
 * Encodes a binary row-major mask (any non-zero byte is foreground) as a COCO RLE.
 * @throws if `mask.length` is not `height × width`.
 */
export function encodeRle(mask: Uint8Array, height: number, width: number, options: EncodeRleOptions = {}): CocoRle {
  checkSize([height, width], 'encodeRle');
  if (mask.length !== height * width) {
    throw new Error(`encodeRle: mask has ${mask.length} pixels but size is ${height}×${width} = ${height * width}`);
  }
  const counts: number[] = [];
  let current = 0;
  let run = 0;
  for (let col = 0; col < width; col++) {
    for (let row = 0; row < height; row++) {
      const v = mask[row * width + col] !== 0 ? 1 : 0;
      if (v !== current) {
        counts.push(run);
        run = 0;
        current = v;
      }
      run++;
    }
  }
  counts.push(run);
  return { size: [height, width], counts: options.compressed === false ? counts : compressRleCounts(counts) };
}

/**
 * Decodes a COCO RLE (either `counts` form) into a binary row-major mask of `size[0] × size[1]` bytes (0/1).
 * @throws with a message saying what is wrong if the RLE is malformed or its runs do not add up to H×W.
 */
export function decodeRle(rle: CocoRle): Uint8Array {
  const [height, width] = checkSize(rle?.size, 'decodeRle');
  const counts = typeof rle.counts === 'string' ? decompressRleCounts(rle.counts) : rle.counts;
  if (!Array.isArray(counts)) throw new Error('decodeRle: counts must be an array of run lengths or a compressed COCO string');
  const total = height * width;
  const mask = new Uint8Array(total);
  let position = 0; // column-major index of the next pixel, = col · height + row
  let row = 0;
  let col = 0;
  for (let r = 0; r < counts.length; r++) {
    const run = counts[r];
    if (!Number.isInteger(run) || run < 0) throw new Error(`decodeRle: counts[${r}] = ${run} is not a non-negative integer`);
    if (position + run > total) throw new Error(`decodeRle: runs cover more than ${height}×${width} = ${total} pixels (at counts[${r}])`);
    if (r % 2 === 1) {
      for (let j = 0; j < run; j++) {
        mask[row * width + col] = 1;
        if (++row === height) {
          row = 0;
          col++;
        }
      }
    } else {
      col += Math.floor((row + run) / height);
      row = (row + run) % height;
    }
    position += run;
  }
  if (position !== total) throw new Error(`decodeRle: runs cover ${position} pixels but size is ${height}×${width} = ${total}`);
  return mask;
}

/**
 * The compressed COCO string of a run-length array (pycocotools `rleToString`): from the fourth run on,
 * each run is stored as the difference to the run two places before; each value is written as 5-bit
 * groups, least significant first, as characters 48 + group, with 0x20 set on all but the last group;
 * the last group's 0x10 bit is the sign.
 */
export function compressRleCounts(counts: readonly number[]): string {
  let out = '';
  for (let i = 0; i < counts.length; i++) {
    let x = i > 2 ? counts[i] - counts[i - 2] : counts[i];
    let more = true;
    while (more) {
      const group = ((x % 32) + 32) % 32; // x & 0x1f for any sign, in exact arithmetic
      x = (x - group) / 32; // arithmetic shift right by 5
      more = group & 0x10 ? x !== -1 : x !== 0;
      out += String.fromCharCode(48 + (more ? group | 0x20 : group));
    }
  }
  return out;
}

/**
 * The run-length array of a compressed COCO string (pycocotools `rleFrString`).
 * @throws if the string contains a character outside '0'…'o' or ends inside a value.
 */
export function decompressRleCounts(s: string): number[] {
  const counts: number[] = [];
  let p = 0;
  while (p < s.length) {
    let x = 0;
    let scale = 1; // 32^k
    let more = true;
    while (more) {
      if (p >= s.length) throw new Error('decodeRle: compressed counts string ends in the middle of a value');
      const c = s.charCodeAt(p) - 48;
      if (c < 0 || c > 63) throw new Error(`decodeRle: invalid character ${JSON.stringify(s[p])} at position ${p} of the compressed counts string`);
      x += (c & 0x1f) * scale;
      scale *= 32;
      more = (c & 0x20) !== 0;
      p++;
      if (!more && c & 0x10) x -= scale; // sign-extend
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

function checkSize(size: unknown, where: string): [number, number] {
  if (!Array.isArray(size) || size.length !== 2 || !size.every((v) => Number.isInteger(v) && v >= 0)) {
    throw new Error(`${where}: size must be [height, width] with non-negative integers, got ${JSON.stringify(size)}`);
  }
  return [size[0], size[1]];
}
