import { packageConfig } from '../../tsup.base';

export default [
  packageConfig({ index: 'src/index.ts' }),
  // Node only: the embedded tiny backbone's folder, found through import.meta.url (shimmed in CJS)
  packageConfig({ 'png-tiny-sd': 'src/png_tiny_sd.ts' }, { clean: false, shims: true }),
];
