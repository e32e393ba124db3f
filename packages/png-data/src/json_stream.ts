/**
 * Streaming reader of a file holding one top-level JSON array: yields one parsed element at a time,
 * reading the file in fixed-size chunks, so memory stays at one chunk plus one element however big
 * the file is (the png_coco train file is hundreds of MB). Element boundaries are found on raw
 * bytes: JSON's structural characters are ASCII, and no byte of a multi-byte UTF-8 character is
 * below 0x80, so a chunk can end anywhere, even inside a character.
 */
import { open } from 'node:fs/promises';
import { basename } from 'node:path';
import { checkInputFile } from '@png/core';

/** One element of the array and where it is in the file. */
export interface StreamedElement {
  index: number;
  value: unknown;
  /** Byte offset of the element's first byte. */
  byteOffset: number;
}

enum Phase {
  Start,
  BeforeValue,
  FirstValue,
  InValue,
  AfterValue,
  End,
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_BRACKET = 0x5b;
const CLOSE_BRACKET = 0x5d;
const OPEN_BRACE = 0x7b;
const CLOSE_BRACE = 0x7d;
const UTF8_BOM = [0xef, 0xbb, 0xbf];

function isWhitespace(byte: number): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/**
 * Incremental splitter of a top-level JSON array: feed byte chunks with {@link push}, collect the
 * complete elements it returns, call {@link end} at the end of input. Errors name `source` and
 * the byte offset.
 */
class JsonArrayScanner {
  private phase = Phase.Start;
  private offset = 0;
  private index = 0;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private valueStart = 0;
  private pieces: Uint8Array[] = [];
  private readonly decoder = new TextDecoder('utf-8', { fatal: true });

  constructor(private readonly source: string) {}

  /** Scans the next bytes of the file; returns the elements completed by them. */
  push(chunk: Uint8Array): StreamedElement[] {
    const out: StreamedElement[] = [];
    let pieceStart = this.phase === Phase.InValue ? 0 : -1;
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i];
      const at = this.offset + i;
      switch (this.phase) {
        case Phase.Start:
          if (at < 3 && byte === UTF8_BOM[at]) break;
          if (byte === OPEN_BRACKET) this.phase = Phase.FirstValue;
          else if (!isWhitespace(byte)) throw this.error(at, `expected the '[' that opens the array of records, got ${describeByte(byte)}`);
          break;
        case Phase.FirstValue:
        case Phase.BeforeValue:
          if (isWhitespace(byte)) break;
          if (byte === CLOSE_BRACKET && this.phase === Phase.FirstValue) {
            this.phase = Phase.End;
            break;
          }
          if (byte === COMMA || byte === CLOSE_BRACKET) throw this.error(at, `expected record ${this.index}, got ${describeByte(byte)}`);
          this.phase = Phase.InValue;
          this.valueStart = at;
          pieceStart = i;
          this.depth = 0;
          i--; // scan the first byte as part of the value
          break;
        case Phase.InValue: {
          if (this.inString) {
            if (this.escaped) this.escaped = false;
            else if (byte === BACKSLASH) this.escaped = true;
            else if (byte === QUOTE) this.inString = false;
            break;
          }
          let endsBefore = false; // a scalar ends before this byte
          let endsWith = false; // an object or array ends with this byte
          if (byte === QUOTE) this.inString = true;
          else if (byte === OPEN_BRACE || byte === OPEN_BRACKET) this.depth++;
          else if (byte === CLOSE_BRACE || byte === CLOSE_BRACKET) {
            if (this.depth === 0) endsBefore = true;
            else endsWith = --this.depth === 0;
          } else if (this.depth === 0 && (byte === COMMA || isWhitespace(byte))) endsBefore = true;
          if (endsBefore || endsWith) {
            this.pieces.push(chunk.subarray(pieceStart, endsWith ? i + 1 : i));
            pieceStart = -1;
            out.push(this.finishValue(endsWith ? at + 1 : at));
            this.phase = Phase.AfterValue;
            if (endsBefore) i--; // the byte belongs to what follows the value
          }
          break;
        }
        case Phase.AfterValue:
          if (byte === COMMA) this.phase = Phase.BeforeValue;
          else if (byte === CLOSE_BRACKET) this.phase = Phase.End;
          else if (!isWhitespace(byte)) throw this.error(at, `expected ',' or ']' after record ${this.index - 1}, got ${describeByte(byte)}`);
          break;
        case Phase.End:
          if (!isWhitespace(byte)) throw this.error(at, `unexpected ${describeByte(byte)} after the ']' that closes the array`);
          break;
      }
    }
    if (pieceStart >= 0) this.pieces.push(chunk.subarray(pieceStart));
    this.offset += chunk.length;
    return out;
  }

  /** Checks that the input ended after the closing ']'. */
  end(): void {
    if (this.phase === Phase.End) return;
    const where =
      this.phase === Phase.InValue
        ? `inside record ${this.index}, which starts at byte ${this.valueStart}`
        : this.phase === Phase.Start
          ? 'before the array starts'
          : `after record ${this.index - 1}, before the ']' that closes the array`;
    throw this.error(this.offset, `the file is truncated: it ends ${where}`);
  }

  private finishValue(endOffset: number): StreamedElement {
    const bytes = this.pieces.length === 1 ? this.pieces[0] : concat(this.pieces);
    this.pieces = [];
    const index = this.index++;
    let value: unknown;
    try {
      value = JSON.parse(this.decoder.decode(bytes));
    } catch (e) {
      throw new Error(`${this.source} record ${index} (bytes ${this.valueStart}–${endOffset}) is not valid JSON: ${(e as Error).message}`);
    }
    return { index, value, byteOffset: this.valueStart };
  }

  private error(byteOffset: number, message: string): Error {
    return new Error(`${this.source}: byte ${byteOffset}: ${message}`);
  }
}

function describeByte(byte: number): string {
  return byte >= 0x20 && byte < 0x7f ? `'${String.fromCharCode(byte)}'` : `byte 0x${byte.toString(16).padStart(2, '0')}`;
}

function concat(pieces: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(pieces.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const piece of pieces) {
    out.set(piece, at);
    at += piece.length;
  }
  return out;
}

/**
 * Yields the elements of the top-level JSON array in the file at `path`, one at a time, reading
 * `chunkSize` bytes at a time (default 1 MiB).
 * @throws naming the file and the byte offset if the file is not one JSON array (including a
 *   truncated file), and the element index if an element is not valid JSON.
 */
export async function* streamJsonArray(path: string, options: { chunkSize?: number } = {}): AsyncGenerator<StreamedElement> {
  const chunkSize = options.chunkSize ?? 1 << 20;
  if (!Number.isInteger(chunkSize) || chunkSize < 1) throw new Error(`streamJsonArray: chunkSize must be a positive integer, got ${chunkSize}`);
  const scanner = new JsonArrayScanner(basename(path));
  await checkInputFile(path, 'a JSON file holding one array');
  const file = await open(path, 'r');
  try {
    for (;;) {
      const buffer = new Uint8Array(chunkSize); // fresh: completed elements may still point into it
      const { bytesRead } = await file.read(buffer, 0, chunkSize, null);
      if (bytesRead === 0) break;
      yield* scanner.push(buffer.subarray(0, bytesRead));
    }
    scanner.end();
  } finally {
    await file.close();
  }
}
