import { packageConfig } from '../../tsup.base';

// Node only: the embedded tiny backbone's folder, found through import.meta.url (shimmed in CJS). It imports
// the package's own index by name (one copy of every class), so it builds after tsup.config.ts.
export default packageConfig({ 'png-tiny-sd': 'src/png_tiny_sd.ts' }, { clean: false, shims: true });
