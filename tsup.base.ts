import { defineConfig, type Options } from 'tsup';

/** One build config for every package: ESM + CJS + d.ts, tfjs as an external peer. */
export function packageConfig(entry: Record<string, string>, extra: Options = {}) {
  return defineConfig({
    entry,
    format: ['esm', 'cjs'],
    dts: { compilerOptions: { paths: {} } },
    sourcemap: true,
    clean: true,
    target: 'es2022',
    platform: 'neutral',
    external: [/^@tensorflow\//, /^@png\//, /^node:/, 'webgpu'],
    ...extra,
  });
}
