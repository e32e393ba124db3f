import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { streamJsonArray } from './json_stream';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'png-data-stream-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function write(name: string, text: string | Uint8Array): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  return file;
}

async function collect(file: string, chunkSize: number): Promise<{ index: number; value: unknown; byteOffset: number }[]> {
  const out = [];
  for await (const element of streamJsonArray(file, { chunkSize })) out.push(element);
  return out;
}

const TRICKY = [
  { caption: 'brackets ] [ and braces } { inside "quoted \\" text"', segments: [{ utterance: '}]', segment_ids: ['1'] }] },
  { caption: 'escaped backslash at the end \\', n: [1, [2, [3]], {}] },
  { caption: 'unicode é 漢字 😀 and \u2028 line separator', nested: { a: { b: [] } } },
  [],
  {},
  'a string element, with a comma',
  -12.5e3,
  true,
  null,
];

describe('streamJsonArray', () => {
  const text = `\ufeff [\n${TRICKY.map((v) => JSON.stringify(v, null, v === TRICKY[1] ? 2 : undefined)).join(' ,\n\t')}\n] \n`;
  const file = write('tricky.json', text);

  it.each([1, 2, 3, 7, 64, 1 << 20])('yields every element, whatever the chunk size (%i bytes)', async (chunkSize) => {
    const elements = await collect(file, chunkSize);
    expect(elements.map((e) => e.value)).toEqual(TRICKY);
    expect(elements.map((e) => e.index)).toEqual(TRICKY.map((_, i) => i));
    const bytes = Buffer.from(text);
    for (const e of elements) expect(bytes.subarray(e.byteOffset, e.byteOffset + 1).toString()).toBe(JSON.stringify(e.value)[0]);
  });

  it('reads an empty array and rejects what is not one array', async () => {
    expect(await collect(write('empty.json', ' [ ] '), 1)).toEqual([]);
    await expect(collect(write('object.json', '{"a": 1}'), 4)).rejects.toThrow(
      "object.json: byte 0: expected the '[' that opens the array of records, got '{'",
    );
    await expect(collect(write('trailing.json', '[1, 2] x'), 4)).rejects.toThrow("trailing.json: byte 7: unexpected 'x' after the ']' that closes the array");
    await expect(collect(write('comma.json', '[1, 2,]'), 4)).rejects.toThrow("comma.json: byte 6: expected record 2, got ']'");
    await expect(collect(write('missing_comma.json', '[{"a": 1} {"b": 2}]'), 4)).rejects.toThrow(
      "missing_comma.json: byte 10: expected ',' or ']' after record 0, got '{'",
    );
    await expect(collect(write('bad_element.json', '[{"a": 1}, {"b": nope}]'), 4)).rejects.toThrow('bad_element.json record 1 (bytes 11–22) is not valid JSON');
  });

  it('names the byte offset where a truncated file ends', async () => {
    const full = JSON.stringify([{ caption: 'one' }, { caption: 'two [with] {brackets}' }]);
    const cut = full.slice(0, 40);
    const file = write('truncated.json', cut);
    const seen: unknown[] = [];
    await expect(
      (async () => {
        for await (const e of streamJsonArray(file, { chunkSize: 5 })) seen.push(e.value);
      })(),
    ).rejects.toThrow(`truncated.json: byte 40: the file is truncated: it ends inside record 1, which starts at byte 19`);
    expect(seen).toEqual([{ caption: 'one' }]); // records before the cut were streamed
    await expect(collect(write('no_close.json', '[1, 2'), 2)).rejects.toThrow(
      'no_close.json: byte 5: the file is truncated: it ends inside record 1, which starts at byte 4',
    );
    await expect(collect(write('no_close2.json', '[1, 2 '), 2)).rejects.toThrow(
      "no_close2.json: byte 6: the file is truncated: it ends after record 1, before the ']' that closes the array",
    );
    await expect(collect(write('zero.json', ''), 2)).rejects.toThrow('zero.json: byte 0: the file is truncated: it ends before the array starts');
    await expect(collect(write('open_string.json', '[{"a": "x]}'), 3)).rejects.toThrow(
      'open_string.json: byte 11: the file is truncated: it ends inside record 0, which starts at byte 1',
    );
  });

  it('rejects invalid UTF-8 inside an element and a bad chunk size', async () => {
    const file = write('latin1.json', Buffer.from([0x5b, 0x22, 0xe9, 0x22, 0x5d]));
    await expect(collect(file, 2)).rejects.toThrow('latin1.json record 0 (bytes 1–4) is not valid JSON');
    await expect(collect(file, 0)).rejects.toThrow('chunkSize must be a positive integer');
  });
});
