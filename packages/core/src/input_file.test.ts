import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkInputFile, readInputFile } from './input_file';
import { SafetensorsFile, serializeSafetensors } from './safetensors';
import { openModule } from './checkpoint';

describe('input files', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'input-file-'));
  afterAll(() => fs.rmSync(tmp, { recursive: true }));

  it('reads a file, and names the path and what was expected for a folder or a missing file', async () => {
    const file = path.join(tmp, 'a.bin');
    fs.writeFileSync(file, Uint8Array.from([1, 2, 3]));
    expect(await checkInputFile(file, 'a blob')).toBe(3);
    expect([...(await readInputFile(file, 'a blob'))]).toEqual([1, 2, 3]);
    await expect(readInputFile(tmp, 'a blob')).rejects.toThrow(`${tmp}: is a folder; expected a blob`);
    await expect(checkInputFile(path.join(tmp, 'none'), 'a blob')).rejects.toThrow(`${path.join(tmp, 'none')}: no such file; expected a blob`);
    await expect(readInputFile(path.join(file, 'below'), 'a blob')).rejects.toThrow(new RegExp(`^${file}/below: cannot read a blob \\(ENOTDIR`));
  });

  it('a folder where a weights file or a module config is expected is an error naming it, not EISDIR', async () => {
    const weights = path.join(tmp, 'model.safetensors');
    fs.mkdirSync(weights);
    await expect(SafetensorsFile.open(weights)).rejects.toThrow(`${weights}: is a folder; expected a safetensors weights file`);
    await expect(SafetensorsFile.open(path.join(tmp, 'none.safetensors'))).rejects.toThrow(
      `${path.join(tmp, 'none.safetensors')}: no such file; expected a safetensors weights file`,
    );

    const module = path.join(tmp, 'module');
    fs.mkdirSync(path.join(module, 'config.json'), { recursive: true });
    fs.writeFileSync(path.join(module, 'model.safetensors'), serializeSafetensors({}));
    await expect(openModule(module)).rejects.toThrow(`${path.join(module, 'config.json')}: is a folder; expected a module config (JSON)`);
  });
});
