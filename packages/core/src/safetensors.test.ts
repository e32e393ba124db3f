import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SafetensorsBytes, SafetensorsFile, serializeSafetensors, writeSafetensorsFile } from './safetensors';
import { saveModule, openModule, openModuleFiles, fetchFile, fetchModuleFiles, joinUrl } from './checkpoint';
import { FOLDER_FETCH_BASE, folderFetch } from './testing';
import { WeightScope } from './weights';
import { Linear } from './nn/linear';
import { setBackend } from './backends/backend';

/** A safetensors file from a raw header (an object, or JSON text as is) and data bytes. */
function rawFile(header: object | string, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

describe('safetensors', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'st-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true }));

  it('round-trips F32 and I32 with metadata, keys sorted, data 8-byte aligned', () => {
    const bytes = serializeSafetensors(
      { b: { dtype: 'F32', shape: [2, 2], data: new Float32Array([1, -2, 3.5, 1e-30]) }, a: { dtype: 'I32', shape: [3], data: new Int32Array([7, -8, 9]) } },
      { format: 'pt' },
    );
    const st = new SafetensorsBytes(bytes);
    expect(st.keys()).toEqual(['a', 'b']);
    expect(st.metadata).toEqual({ format: 'pt' });
    expect([...st.read('b')]).toEqual([1, -2, 3.5, Math.fround(1e-30)]);
    expect([...st.read('a')]).toEqual([7, -8, 9]);
    expect(Number(new DataView(bytes.buffer).getBigUint64(0, true)) % 8).toBe(0);
  });

  it('decodes F16 (normal, subnormal, max, inf) and BF16 exactly', () => {
    const half = new Uint16Array([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x7c00]);
    const bf = new Uint16Array([0x3f80, 0xc0a0]);
    const st = new SafetensorsBytes(
      rawFile(
        { h: { dtype: 'F16', shape: [6], data_offsets: [0, 12] }, g: { dtype: 'BF16', shape: [2], data_offsets: [12, 16] } },
        new Uint8Array([...new Uint8Array(half.buffer), ...new Uint8Array(bf.buffer)]),
      ),
    );
    expect([...st.read('h')]).toEqual([1, -2, 0.5, 65504, 2 ** -24, Infinity]);
    expect([...st.read('g')]).toEqual([1, -5]);
  });

  it('reads the fixture fp16 UNet within fp16 precision of the fp32 file', async () => {
    const { sharedFixturesDir } = await import('./testing');
    const dir = path.join(sharedFixturesDir(), 'tiny-sd', 'unet');
    const f32 = await SafetensorsFile.open(path.join(dir, 'diffusion_pytorch_model.safetensors'));
    const f16 = await SafetensorsFile.open(path.join(dir, 'diffusion_pytorch_model.fp16.safetensors'));
    expect(f16.keys().sort()).toEqual(f32.keys().sort());
    const a = f32.read('conv_in.weight');
    const b = f16.read('conv_in.weight');
    for (let i = 0; i < a.length; i++) expect(Math.abs(a[i] - b[i])).toBeLessThanOrEqual(Math.abs(a[i]) * 2 ** -11 + 2 ** -24);
    f32.close();
    f16.close();
  });

  it.each([
    ['a bad JSON header', rawFile({}, new Uint8Array()).fill(0x7b, 8), /header is not valid UTF-8 JSON/],
    ['a header length beyond the file', new Uint8Array([255, 255, 0, 0, 0, 0, 0, 0, 1, 2]), /header length 65535 does not fit the 10-byte file/],
    ['an unknown dtype', rawFile({ x: { dtype: 'F8', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), /tensor 'x': unsupported dtype "F8"/],
    [
      'a size that does not match the shape',
      rawFile({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, new Uint8Array(4)),
      /tensor 'x': 4 bytes for F32\[2\], which needs 8/,
    ],
    [
      'data past the end',
      rawFile({ x: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(4)),
      /data ends at byte 8 of a 4-byte data section; the file is truncated/,
    ],
    [
      'overlapping tensors',
      rawFile({ x: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, y: { dtype: 'F32', shape: [1], data_offsets: [2, 6] } }, new Uint8Array(8)),
      /'x' and 'y' overlap/,
    ],
    [
      'a bad shape',
      rawFile({ x: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, new Uint8Array(4)),
      /shape \[-1\] is not a list of non-negative integers/,
    ],
  ])('names the file and the defect for %s', async (_name, bytes, message) => {
    const file = path.join(tmp, 'bad.safetensors');
    fs.writeFileSync(file, bytes);
    await expect(SafetensorsFile.open(file)).rejects.toThrow(message);
    await expect(SafetensorsFile.open(file)).rejects.toThrow(file);
  });

  it('refuses a header with a key twice (JSON.parse would keep the last silently), naming the key', async () => {
    const entry = (begin: number) => `{"dtype":"F32","shape":[1],"data_offsets":[${begin},${begin + 4}]}`;
    const ambiguous = '; JSON readers keep only one of them, so the file is ambiguous; write it again with unique names';
    const cases: [string, string][] = [
      [`{"x":${entry(0)},"y":${entry(4)},"x":${entry(8)}}`, "tensor 'x' appears twice in the header"],
      [`{"w\\u0078":${entry(0)},"w\\\\x":${entry(4)},"wx":${entry(8)}}`, "tensor 'wx' appears twice in the header"], // in JSON, "w\u0078" is "wx" and "w\\x" is not
      [`{"x":{"dtype":"F32","shape":[1],"dtype":"F16","data_offsets":[0,4]}}`, "tensor 'x': key 'dtype' appears twice"],
      [`{"__metadata__":{"format":"pt"},"x":${entry(0)},"__metadata__":{}}`, 'the header has two __metadata__ entries'],
      [`{"__metadata__":{"format":"pt","note":"a \\"{x\\" [","format":"np"},"x":${entry(0)}}`, "__metadata__: key 'format' appears twice"],
    ];
    const file = path.join(tmp, 'duplicate.safetensors');
    for (const [header, message] of cases) {
      fs.writeFileSync(file, rawFile(header, new Uint8Array(12)));
      await expect(SafetensorsFile.open(file)).rejects.toThrow(`${file}: ${message}${ambiguous}`);
      expect(() => new SafetensorsBytes(rawFile(header, new Uint8Array(12)), 'bytes')).toThrow(`bytes: ${message}`);
    }
    // Look-alikes are fine: keys inside strings and in other objects, the same key in two entries.
    const fine = `{"__metadata__":{"x":"{\\"x\\":1, \\"x\\":2}","dtype":"y"},"x":${entry(0)},"x2":${entry(4)}}`;
    const st = new SafetensorsBytes(rawFile(fine, new Uint8Array(8)));
    expect(st.keys()).toEqual(['x', 'x2']);
    expect(st.metadata).toEqual({ x: '{"x":1, "x":2}', dtype: 'y' });
  });

  it('refuses a __metadata__ that is not a map of strings to strings (null is none)', () => {
    const x = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
    expect(() => new SafetensorsBytes(rawFile({ __metadata__: 'pt', x }, new Uint8Array(4)), 'm')).toThrow(
      'm: __metadata__ is "pt"; it must be a map of strings to strings',
    );
    expect(() => new SafetensorsBytes(rawFile({ __metadata__: ['pt'], x }, new Uint8Array(4)), 'm')).toThrow(
      'm: __metadata__ is ["pt"]; it must be a map of strings to strings',
    );
    expect(() => new SafetensorsBytes(rawFile({ __metadata__: { format: 'pt', step: 3 }, x }, new Uint8Array(4)), 'm')).toThrow(
      "m: __metadata__ key 'step' is 3; metadata values must be strings",
    );
    expect(new SafetensorsBytes(rawFile({ __metadata__: null, x }, new Uint8Array(4))).metadata).toEqual({});
  });

  it('streams a file atomically: a failed write leaves nothing under the final name', async () => {
    const file = path.join(tmp, 'stream.safetensors');
    const shapes = new Map([
      ['a', [2]],
      ['b', [1]],
    ]);
    async function* good(): AsyncGenerator<[string, number[], Float32Array]> {
      yield ['a', [2], new Float32Array([1, 2])];
      yield ['b', [1], new Float32Array([3])];
    }
    await writeSafetensorsFile(file, shapes, good());
    const st = await SafetensorsFile.open(file);
    expect([...st.read('a'), ...st.read('b')]).toEqual([1, 2, 3]);
    st.close();
    async function* failing(): AsyncGenerator<[string, number[], Float32Array]> {
      yield ['a', [2], new Float32Array([9, 9])];
      throw new Error('interrupted');
    }
    await expect(writeSafetensorsFile(file, shapes, failing())).rejects.toThrow('interrupted');
    const again = await SafetensorsFile.open(file); // the previous, complete file is intact
    expect([...again.read('a')]).toEqual([1, 2]);
    again.close();
    expect(fs.readdirSync(tmp).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('saves and reopens a module checkpoint (config.json + model.safetensors)', async () => {
    await setBackend('wasm');
    const scope = WeightScope.fresh({ seed: 1 });
    const { params } = scope.build((s) => new Linear(s.pp('proj'), 3, 2));
    const dir = path.join(tmp, 'ckpt');
    await saveModule(dir, { width: 3 }, params);
    const { config, source } = await openModule(dir);
    expect(config).toEqual({ width: 3 });
    expect(source.keys().sort()).toEqual(['proj.bias', 'proj.weight']);
    expect([...source.read('proj.weight')]).toEqual([...(await params.get('proj.weight').data())]);
    source.close();
    params.dispose();
    await expect(openModule(path.join(tmp, 'nothing'))).rejects.toThrow(/config\.json: missing; not a module checkpoint folder/);
  });

  it("fetches a module checkpoint by URL and opens it from its files' contents, with errors naming the file", async () => {
    await setBackend('wasm');
    const { params } = WeightScope.fresh({ seed: 2 }).build((s) => new Linear(s.pp('proj'), 3, 2));
    await saveModule(path.join(tmp, 'served', 'module'), { width: 3 }, params);
    const fetch = folderFetch(path.join(tmp, 'served'));
    const url = joinUrl(FOLDER_FETCH_BASE, 'module/'); // a trailing slash is fine
    const files = await fetchModuleFiles(url, { fetch });
    expect(fetch.requested.sort()).toEqual([`${FOLDER_FETCH_BASE}module/config.json`, `${FOLDER_FETCH_BASE}module/model.safetensors`]);
    const { config, source } = openModuleFiles(files, url);
    expect(config).toEqual({ width: 3 });
    expect([...source.read('proj.weight')]).toEqual([...(await params.get('proj.weight').data())]);
    params.dispose();

    expect(() => openModuleFiles({ ...files, config: '{"width": 3' }, 'm')).toThrow(/^m\/config\.json: not valid JSON/);
    expect(() => openModuleFiles({ ...files, config: '[3]' }, 'm')).toThrow('m/config.json: expected a JSON object');
    expect(() => openModuleFiles({ ...files, weights: files.weights.buffer as unknown as Uint8Array }, 'm')).toThrow(
      'm/model.safetensors: expected its bytes (a Uint8Array), got ArrayBuffer',
    );
    expect(() => openModuleFiles({ ...files, weights: files.weights.subarray(0, 40) }, 'm', 'w.safetensors')).toThrow(/^m\/w\.safetensors: /);
    await expect(fetchModuleFiles(`${FOLDER_FETCH_BASE}elsewhere`, { fetch })).rejects.toThrow(`${FOLDER_FETCH_BASE}elsewhere/config.json: HTTP 404 Not Found`);
    expect(await fetchFile(`${FOLDER_FETCH_BASE}none.json`, { fetch, optional: true })).toBeUndefined();
    const offline = () => Promise.reject(new TypeError('Failed to fetch'));
    await expect(fetchFile('http://x/a.json', { fetch: offline, optional: true })).rejects.toThrow('http://x/a.json: fetch failed (Failed to fetch)');
    const forbidden = () => Promise.resolve(new Response(null, { status: 403, statusText: 'Forbidden' }));
    await expect(fetchFile('http://x/a.json', { fetch: forbidden, optional: true })).rejects.toThrow('http://x/a.json: HTTP 403 Forbidden');
  });
});
