import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { guardRun } from './run_guard';

describe('guardRun', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'png-guard-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('writes nothing until record(), then resumes a rerun of the same run', () => {
    const file = path.join(dir, 'run', 'run.json');
    const run = { data: '/data', training: { steps: 3, lr: 0.1 } };
    const guard = guardRun(path.join(dir, 'run'), run);
    expect(guard.resumed).toBe(false);
    expect(fs.existsSync(path.join(dir, 'run'))).toBe(false);
    guard.record();
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(run);
    expect(fs.readdirSync(path.join(dir, 'run'))).toEqual(['run.json']); // no temporary left
    const again = guardRun(path.join(dir, 'run'), { training: { steps: 3, lr: 0.1 }, data: '/data' }); // key order does not matter
    expect(again.resumed).toBe(true);
    again.record();
    expect(JSON.parse(fs.readFileSync(file, 'utf8'))).toEqual(run);
  });

  it('refuses another run, naming the file and the field that differs, and a corrupt record', () => {
    const file = path.join(dir, 'run.json');
    guardRun(dir, { data: '/data', training: { steps: 3 } }).record();
    expect(() => guardRun(dir, { data: '/data', training: { steps: 4 } })).toThrow(
      `${file}: this folder holds a run started with another training ({"steps":3}, now {"steps":4}); rerun with the same settings to resume it, or remove ${dir} or choose another folder to start over`,
    );
    expect(() => guardRun(dir, { data: '/data', training: { steps: 3 }, config: {} })).toThrow(/another config \(undefined, now \{\}\)/);
    fs.writeFileSync(file, '{"data": ');
    expect(() => guardRun(dir, { data: '/data' })).toThrow(
      new RegExp(
        `^${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: not valid JSON \\(.*\\); remove ${dir.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} or choose another folder$`,
      ),
    );
  });

  it("resumes a run recorded before a field was added, once `upgrade` fills today's default in; another value still differs", () => {
    guardRun(dir, { data: '/data', config: { lr: 0.1 } }).record(); // recorded before `warmup` existed
    const withDefaults = (recorded: Record<string, unknown>) => ({ ...recorded, config: { warmup: 50, ...(recorded.config as object) } });
    expect(() => guardRun(dir, { data: '/data', config: { warmup: 50, lr: 0.1 } })).toThrow(/another config/);
    expect(guardRun(dir, { data: '/data', config: { warmup: 50, lr: 0.1 } }, withDefaults).resumed).toBe(true);
    expect(() => guardRun(dir, { data: '/data', config: { warmup: 10, lr: 0.1 } }, withDefaults)).toThrow(
      'another config ({"warmup":50,"lr":0.1}, now {"warmup":10,"lr":0.1})',
    );
    const failing = () => {
      throw new Error('cannot read');
    };
    expect(() => guardRun(dir, { data: '/data', config: { warmup: 50, lr: 0.1 } }, failing)).toThrow('another config ({"lr":0.1}'); // compared as written
  });
});
