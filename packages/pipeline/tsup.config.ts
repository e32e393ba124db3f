import { packageConfig } from '../../tsup.base';

export default [
  packageConfig({ index: 'src/index.ts' }),
  // the `png` command: ESM only (it finds the embedded model next to itself through import.meta.url)
  packageConfig({ cli: 'src/cli.ts' }, { format: ['esm'], dts: false, clean: false }),
];
