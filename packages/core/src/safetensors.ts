/**
 * safetensors reading and writing, tf-free: an 8-byte little-endian header length, a JSON header
 * `{name: {dtype, shape, data_offsets: [begin, end]}, __metadata__?: {…}}`, then the raw row-major
 * little-endian bytes. Files are read tensor by tensor (never the whole file at once), so a 3.4 GB
 * UNet is never held twice in memory.
 */

import { checkInputFile } from './input_file';
import { nodeOnly } from './node_only';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const BYTES_PER_ELEMENT: Record<SafetensorsDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};
const FLOAT_DTYPES = new Set<SafetensorsDtype>(['F64', 'F32', 'F16', 'BF16']);
/** A header larger than this is not a safetensors header (the Rust reader uses the same bound). */
const MAX_HEADER_BYTES = 100_000_000;

export interface TensorInfo {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Byte range inside the data section. */
  readonly dataOffsets: readonly [number, number];
}

/** A store of named tensors that can be read one at a time. */
export interface WeightSource {
  /** Where the tensors come from, for error messages (a file path or a label). */
  readonly name: string;
  keys(): string[];
  info(key: string): TensorInfo | undefined;
  /** Float tensors decode to Float32Array (F16/BF16/F64 converted), integer ones to Int32Array. */
  read(key: string): Float32Array | Int32Array;
  /**
   * Decodes the float tensor `key` into `dest` (exactly its element count long). F32 bytes go
   * straight into `dest` (from a file: read into it, with no buffer in between).
   */
  readFloatsInto(key: string, dest: Float32Array): void;
  close(): void;
}

/** How far a load has read one weights file: bytes of tensor data read so far, of all it holds. */
export interface LoadProgress {
  /** The source's name: the file (or index) path. */
  readonly file: string;
  readonly loaded: number;
  /** The bytes of every tensor in the file; a load that needs only some (a VAE's encoder) stops short of it. */
  readonly total: number;
}

/** `source`, calling `progressCallback` after each tensor it reads (cf. transformers.js' progress_callback). */
export function withLoadProgress(source: WeightSource, progressCallback: (progress: LoadProgress) => void): WeightSource {
  const bytes = (key: string) => {
    const info = source.info(key);
    return info ? info.dataOffsets[1] - info.dataOffsets[0] : 0;
  };
  const total = source.keys().reduce((sum, key) => sum + bytes(key), 0);
  let loaded = 0;
  const report = (key: string) => {
    loaded += bytes(key);
    progressCallback({ file: source.name, loaded, total });
  };
  return {
    name: source.name,
    keys: () => source.keys(),
    info: (key) => source.info(key),
    read(key) {
      const values = source.read(key);
      report(key);
      return values;
    },
    readFloatsInto(key, dest) {
      source.readFloatsInto(key, dest);
      report(key);
    },
    close: () => source.close(),
  };
}

export class SafetensorsError extends Error {
  constructor(source: string, message: string) {
    super(`${source}: ${message}`);
    this.name = 'SafetensorsError';
  }
}

export function numElements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** Parses and validates a header (the JSON bytes after the length prefix). */
export function parseHeader(source: string, json: Uint8Array, dataBytes: number): { tensors: Map<string, TensorInfo>; metadata: Record<string, string> } {
  let raw: unknown;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(json);
    raw = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(source, `the header is not valid UTF-8 JSON (${(e as Error).message}); the file is corrupt or not a safetensors file`);
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new SafetensorsError(source, 'the header is not a JSON object; the file is corrupt or not a safetensors file');
  }
  const duplicate = firstDuplicateKey(text);
  if (duplicate) {
    const [outer, key] = duplicate;
    const where =
      outer === undefined
        ? key === '__metadata__'
          ? 'the header has two __metadata__ entries'
          : `tensor '${key}' appears twice in the header`
        : `${outer === '__metadata__' ? '__metadata__' : `tensor '${outer}'`}: key '${key}' appears twice`;
    throw new SafetensorsError(source, `${where}; JSON readers keep only one of them, so the file is ambiguous; write it again with unique names`);
  }
  const tensors = new Map<string, TensorInfo>();
  let metadata: Record<string, string> = {};
  const ranges: Array<[number, number, string]> = [];
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    if (key === '__metadata__') {
      metadata = parseMetadata(source, value);
      continue;
    }
    const entry = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const where = `tensor '${key}'`;
    if (typeof entry !== 'object' || entry === null) throw new SafetensorsError(source, `${where}: header entry is not an object`);
    const dtype = entry.dtype as SafetensorsDtype;
    if (!(typeof dtype === 'string' && dtype in BYTES_PER_ELEMENT)) {
      throw new SafetensorsError(
        source,
        `${where}: unsupported dtype ${JSON.stringify(entry.dtype)} (supported: ${Object.keys(BYTES_PER_ELEMENT).join(', ')})`,
      );
    }
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new SafetensorsError(source, `${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`);
    }
    const offsets = entry.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((o) => Number.isInteger(o) && o >= 0) || offsets[0] > offsets[1]) {
      throw new SafetensorsError(source, `${where}: data_offsets ${JSON.stringify(offsets)} is not [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    const expected = numElements(shape) * BYTES_PER_ELEMENT[dtype];
    if (end - begin !== expected) {
      throw new SafetensorsError(source, `${where}: ${end - begin} bytes for ${dtype}${JSON.stringify(shape)}, which needs ${expected}`);
    }
    if (end > dataBytes) {
      throw new SafetensorsError(source, `${where}: data ends at byte ${end} of a ${dataBytes}-byte data section; the file is truncated`);
    }
    tensors.set(key, { dtype, shape: shape as number[], dataOffsets: [begin, end] });
    ranges.push([begin, end, key]);
  }
  ranges.sort((a, b) => a[0] - b[0]);
  for (let i = 1; i < ranges.length; i++) {
    if (ranges[i][0] < ranges[i - 1][1]) {
      throw new SafetensorsError(source, `tensors '${ranges[i - 1][2]}' and '${ranges[i][2]}' overlap; the file is corrupt`);
    }
  }
  return { tensors, metadata };
}

/** `__metadata__`: a string→string map (or null, as none); anything else is refused, as the reference reader does. */
function parseMetadata(source: string, value: unknown): Record<string, string> {
  if (value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value))
    throw new SafetensorsError(source, `__metadata__ is ${JSON.stringify(value)}; it must be a map of strings to strings`);
  for (const [key, entry] of Object.entries(value)) {
    if (typeof entry !== 'string') throw new SafetensorsError(source, `__metadata__ key '${key}' is ${JSON.stringify(entry)}; metadata values must be strings`);
  }
  return value as Record<string, string>;
}

/**
 * The first key that appears twice in one object of a valid JSON text, as [the key of the
 * top-level entry it is inside (undefined at the top level), the key]. JSON.parse keeps the last
 * copy silently, so duplicates are looked for in the text itself.
 */
function firstDuplicateKey(text: string): [string | undefined, string] | undefined {
  // One frame per open object or array; `keys` is undefined for arrays.
  const stack: Array<{ keys: Set<string> | undefined; expectKey: boolean }> = [];
  let topKey: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const frame = stack[stack.length - 1];
    if (c === '"') {
      let end = i + 1;
      while (text[end] !== '"') end += text[end] === '\\' ? 2 : 1;
      if (frame?.keys && frame.expectKey) {
        const key = JSON.parse(text.slice(i, end + 1)) as string; // escapes decoded: "a" and "\u0061" are one key
        if (frame.keys.has(key)) return [stack.length === 1 ? undefined : topKey, key];
        frame.keys.add(key);
        frame.expectKey = false;
        if (stack.length === 1) topKey = key;
      }
      i = end;
    } else if (c === '{') {
      stack.push({ keys: new Set(), expectKey: true });
    } else if (c === '[') {
      stack.push({ keys: undefined, expectKey: false });
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',' && frame?.keys) {
      frame.expectKey = true;
    }
  }
  return undefined;
}

let f16Table: Float32Array | undefined;
/** All 65536 half-precision values as float32 (exact). */
function halfToFloatTable(): Float32Array {
  if (f16Table) return f16Table;
  f16Table = new Float32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) f16Table[h] = sign * frac * 2 ** -24;
    else if (exp === 31) f16Table[h] = frac ? NaN : sign * Infinity;
    else f16Table[h] = sign * (1 + frac / 1024) * 2 ** (exp - 15);
  }
  return f16Table;
}

/** Decodes raw little-endian bytes (own buffer, 8-byte aligned) of one tensor. */
export function decodeTensor(source: string, key: string, info: TensorInfo, bytes: Uint8Array): Float32Array | Int32Array {
  const n = numElements(info.shape);
  const buf = bytes.buffer;
  const off = bytes.byteOffset;
  switch (info.dtype) {
    case 'F32':
      return new Float32Array(buf, off, n);
    case 'F16': {
      const table = halfToFloatTable();
      const half = new Uint16Array(buf, off, n);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = table[half[i]];
      return out;
    }
    case 'BF16': {
      const half = new Uint16Array(buf, off, n);
      const bits = new Uint32Array(n);
      for (let i = 0; i < n; i++) bits[i] = half[i] << 16;
      return new Float32Array(bits.buffer);
    }
    case 'F64':
      return Float32Array.from(new Float64Array(buf, off, n));
    case 'I64': {
      const wide = new BigInt64Array(buf, off, n);
      const out = new Int32Array(n);
      for (let i = 0; i < n; i++) {
        const v = wide[i];
        if (v > 2147483647n || v < -2147483648n) throw new SafetensorsError(source, `tensor '${key}': I64 value ${v} does not fit int32`);
        out[i] = Number(v);
      }
      return out;
    }
    case 'I32':
      return new Int32Array(buf, off, n);
    case 'I16':
      return Int32Array.from(new Int16Array(buf, off, n));
    case 'I8':
      return Int32Array.from(new Int8Array(buf, off, n));
    case 'U8':
    case 'BOOL':
      return Int32Array.from(new Uint8Array(buf, off, n));
  }
}

export function isFloatDtype(dtype: SafetensorsDtype): boolean {
  return FLOAT_DTYPES.has(dtype);
}

/** `info`, after checking that it is a float tensor of exactly `dest.length` elements. */
function checkFloatDest(source: string, key: string, info: TensorInfo, dest: Float32Array): TensorInfo {
  if (!isFloatDtype(info.dtype)) throw new SafetensorsError(source, `tensor '${key}' has dtype ${info.dtype}, not a float dtype`);
  const n = numElements(info.shape);
  if (dest.length !== n) throw new SafetensorsError(source, `tensor '${key}' has ${n} elements ([${info.shape}]); the destination holds ${dest.length}`);
  return info;
}

function readHeaderLength(source: string, prefix: Uint8Array, fileBytes: number): number {
  if (fileBytes < 8) throw new SafetensorsError(source, `only ${fileBytes} bytes; a safetensors file starts with an 8-byte header length`);
  const view = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const length = Number(view.getBigUint64(0, true));
  if (length > MAX_HEADER_BYTES || 8 + length > fileBytes) {
    throw new SafetensorsError(source, `header length ${length} does not fit the ${fileBytes}-byte file; the file is truncated or not a safetensors file`);
  }
  return length;
}

/** A safetensors file held in memory (browser fetch, tests). */
export class SafetensorsBytes implements WeightSource {
  private readonly tensors: Map<string, TensorInfo>;
  readonly metadata: Record<string, string>;
  private readonly dataStart: number;

  constructor(
    private readonly bytes: Uint8Array,
    readonly name = 'safetensors bytes',
  ) {
    const length = readHeaderLength(name, bytes.subarray(0, 8), bytes.byteLength);
    this.dataStart = 8 + length;
    ({ tensors: this.tensors, metadata: this.metadata } = parseHeader(name, bytes.subarray(8, 8 + length), bytes.byteLength - this.dataStart));
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }
  info(key: string): TensorInfo | undefined {
    return this.tensors.get(key);
  }
  read(key: string): Float32Array | Int32Array {
    const info = this.mustInfo(key);
    const [b, e] = info.dataOffsets;
    const copy = this.bytes.slice(this.dataStart + b, this.dataStart + e); // own, aligned buffer
    return decodeTensor(this.name, key, info, copy);
  }
  readFloatsInto(key: string, dest: Float32Array): void {
    const info = checkFloatDest(this.name, key, this.mustInfo(key), dest);
    const [b, e] = info.dataOffsets;
    if (info.dtype === 'F32') new Uint8Array(dest.buffer, dest.byteOffset, dest.byteLength).set(this.bytes.subarray(this.dataStart + b, this.dataStart + e));
    else dest.set(this.read(key));
  }
  close(): void {}

  private mustInfo(key: string): TensorInfo {
    const info = this.tensors.get(key);
    if (!info) throw new SafetensorsError(this.name, `no tensor '${key}'`);
    return info;
  }
}

type NodeFs = typeof import('node:fs');

/** A safetensors file on disk, read tensor by tensor with positioned reads. Node only. */
export class SafetensorsFile implements WeightSource {
  private constructor(
    private readonly fs: NodeFs,
    private fd: number | undefined,
    readonly name: string,
    private readonly tensors: Map<string, TensorInfo>,
    readonly metadata: Record<string, string>,
    private readonly dataStart: number,
  ) {}

  /** Opens and validates `path`. Throws a SafetensorsError naming the file for any defect. */
  static async open(path: string): Promise<SafetensorsFile> {
    const { fs } = await nodeOnly('SafetensorsFile.open');
    await checkInputFile(path, 'a safetensors weights file');
    const fd = fs.openSync(path, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const prefix = new Uint8Array(8);
      fs.readSync(fd, prefix, 0, Math.min(8, size), 0);
      const length = readHeaderLength(path, prefix, size);
      const json = new Uint8Array(length);
      fs.readSync(fd, json, 0, length, 8);
      const { tensors, metadata } = parseHeader(path, json, size - 8 - length);
      return new SafetensorsFile(fs, fd, path, tensors, metadata, 8 + length);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  keys(): string[] {
    return [...this.tensors.keys()];
  }
  info(key: string): TensorInfo | undefined {
    return this.tensors.get(key);
  }
  read(key: string): Float32Array | Int32Array {
    const info = this.mustInfo(key);
    const [b, e] = info.dataOffsets;
    // Uninitialised memory (every byte is overwritten by readBytes): skips zero-filling multi-GB checkpoints.
    const bytes = new Uint8Array(Buffer.allocUnsafeSlow(e - b).buffer, 0, e - b);
    this.readBytes(key, info, bytes);
    return decodeTensor(this.name, key, info, bytes);
  }
  readFloatsInto(key: string, dest: Float32Array): void {
    const info = checkFloatDest(this.name, key, this.mustInfo(key), dest);
    if (info.dtype === 'F32') this.readBytes(key, info, new Uint8Array(dest.buffer, dest.byteOffset, dest.byteLength));
    else dest.set(this.read(key));
  }

  private mustInfo(key: string): TensorInfo {
    if (this.fd === undefined) throw new SafetensorsError(this.name, `read of '${key}' after close()`);
    const info = this.tensors.get(key);
    if (!info) throw new SafetensorsError(this.name, `no tensor '${key}'`);
    return info;
  }

  /** Reads the raw bytes of `key` into `bytes` (its byte length long). */
  private readBytes(key: string, info: TensorInfo, bytes: Uint8Array): void {
    const { fd } = this;
    if (fd === undefined) throw new SafetensorsError(this.name, `read of '${key}' after close()`);
    const begin = this.dataStart + info.dataOffsets[0];
    let done = 0;
    while (done < bytes.byteLength) {
      const n = this.fs.readSync(fd, bytes, done, bytes.byteLength - done, begin + done);
      if (n === 0) throw new SafetensorsError(this.name, `tensor '${key}': file ended early; the file is truncated`);
      done += n;
    }
  }
  close(): void {
    if (this.fd !== undefined) this.fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

export interface TensorData {
  readonly dtype: 'F32' | 'F16' | 'I32';
  readonly shape: readonly number[];
  readonly data: Float32Array | Int32Array | Uint16Array;
}

/** The header bytes (length prefix + padded JSON) for tensors laid out in `keys` order. */
function encodeHeader(
  keys: readonly string[],
  info: (key: string) => { dtype: TensorData['dtype']; shape: readonly number[] },
  metadata: Record<string, string>,
): { bytes: Uint8Array; dataBytes: number } {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const key of keys) {
    const { dtype, shape } = info(key);
    const nbytes = numElements(shape) * BYTES_PER_ELEMENT[dtype];
    header[key] = { dtype, shape, data_offsets: [offset, offset + nbytes] };
    offset += nbytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const pad = (8 - (json.byteLength % 8)) % 8; // data starts 8-byte aligned
  if (pad) json = new TextEncoder().encode(JSON.stringify(header) + ' '.repeat(pad));
  const bytes = new Uint8Array(8 + json.byteLength);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  bytes.set(json, 8);
  return { bytes, dataBytes: offset };
}

/** Serializes named tensors (keys sorted) into safetensors bytes. */
export function serializeSafetensors(tensors: Record<string, TensorData>, metadata: Record<string, string> = {}): Uint8Array {
  const keys = Object.keys(tensors).sort();
  for (const key of keys) {
    const t = tensors[key];
    const nbytes = numElements(t.shape) * BYTES_PER_ELEMENT[t.dtype];
    if (t.data.byteLength !== nbytes) {
      throw new SafetensorsError(
        'serializeSafetensors',
        `tensor '${key}': ${t.data.byteLength} bytes of data for ${t.dtype}${JSON.stringify(t.shape)}, which needs ${nbytes}`,
      );
    }
  }
  const { bytes: header, dataBytes } = encodeHeader(keys, (k) => tensors[k], metadata);
  const out = new Uint8Array(header.byteLength + dataBytes);
  out.set(header);
  let at = header.byteLength;
  for (const key of keys) {
    const d = tensors[key].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), at);
    at += d.byteLength;
  }
  return out;
}

/**
 * Streams F32 tensors into a safetensors file at `path`, atomically (a temporary file in the same
 * folder, fsync, rename). `shapes` fixes the header; `chunks` yields each tensor's data in sorted
 * key order. Node only.
 */
export async function writeSafetensorsFile(
  path: string,
  shapes: ReadonlyMap<string, readonly number[]>,
  chunks: AsyncIterable<[string, readonly number[], Float32Array]>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const { fs, path: nodePath, utils } = await nodeOnly('writeSafetensorsFile');
  const { dirname, basename, join } = nodePath;
  const { killPoint } = utils;
  const keys = [...shapes.keys()].sort();
  const f32 = (key: string): { dtype: 'F32'; shape: readonly number[] } => {
    const shape = shapes.get(key);
    if (!shape) throw new SafetensorsError(path, `no shape for tensor '${key}'`);
    return { dtype: 'F32', shape };
  };
  const { bytes: header } = encodeHeader(keys, f32, metadata);
  fs.mkdirSync(dirname(path), { recursive: true });
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`);
  const fd = fs.openSync(tmp, 'w');
  try {
    fs.writeSync(fd, header);
    let i = 0;
    for await (const [key, shape, data] of chunks) {
      if (key !== keys[i] || numElements(shape) !== data.length)
        throw new SafetensorsError(path, `tensor '${key}' arrived out of order or with ${data.length} values for [${shape}]`);
      fs.writeSync(fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      i++;
    }
    if (i !== keys.length) throw new SafetensorsError(path, `only ${i} of ${keys.length} tensors were written`);
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    killPoint(`${basename(path)} written`);
    fs.renameSync(tmp, path);
    killPoint(`${basename(path)} renamed`);
  } catch (e) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
    fs.rmSync(tmp, { force: true });
    throw e;
  }
}
