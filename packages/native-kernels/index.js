'use strict';
// The addon built at install, or why there is none. Loading it never throws.
const path = require('node:path');

const file = path.join(__dirname, 'build', 'Release', 'png_native_kernels.node');
let kernels = null;
let unavailable = null;
try {
  kernels = require(file);
} catch (e) {
  unavailable =
    e && e.code === 'MODULE_NOT_FOUND'
      ? 'not built at install (no C++ compiler, Node headers or oneDNN): apt-get install g++ make python3 libdnnl-dev, then npm rebuild @png/native-kernels'
      : `${file} does not load: ${e && e.message ? e.message.split('\n')[0] : e}`;
}
module.exports = { kernels, unavailable };
