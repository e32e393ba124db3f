import * as tf from '@tensorflow/tfjs-core';
import type { WasmBackend } from './wasm_heap';

/**
 * Kernels that @tensorflow/tfjs-backend-wasm 4.22.0 lacks but training needs, composed from the
 * wasm backend's own kernels (or, for UnsortedSegmentSum, a plain loop over the wasm heap):
 *
 * - `Conv2DBackpropFilter`               — the filter gradient of conv2d (im2col + one GEMM);
 * - `DepthwiseConv2dNativeBackpropFilter` / `DepthwiseConv2dNativeBackpropInput` — depthwise grads;
 * - `UnsortedSegmentSum`                 — the gradient of gather (embedding tables);
 * - `Einsum`                             — forward only (tfjs has no Einsum gradient on any backend).
 *
 * and some that it has but runs far slower than it could, replaced (wasm's kept as the fallback for
 * the cases not handled):
 *
 * - `Conv2DBackpropInput`                — the input gradient of conv2d, as stride-phase forward
 *                                          convs through XNNPACK (~27 GFLOP/s instead of ~2.5);
 * - `Slice`, `Unpack`                    — contiguous slices copied from the heap, without wasm's
 *                                          copy of the whole input per slice;
 * - `Identity`                           — shares its input's storage instead of copying it (the
 *                                          gradient tape saves tensors through it).
 *
 * Not provided: FFT / IFFT / Complex / Real / Imag / ComplexAbs (the wasm backend has no complex64
 * storage at all), the Ragged* and string kernels.
 *
 * Every kernel here calls other wasm kernels directly through the registry (`kernelFunc` with the
 * same backend), so nothing is recorded on the gradient tape or tracked by the engine; the
 * intermediates are released with `backend.disposeData` (the backend ref-counts data ids, so
 * releasing an intermediate that the result aliases — e.g. a Reshape — is safe).
 */

type Info = tf.TensorInfo;

/** Runs wasm kernels on `backend` and releases every intermediate but the result (also on throw). */
function compose(
  backend: WasmBackend,
  body: (run: (kernel: string, inputs: tf.NamedTensorInfoMap | Info[], attrs?: tf.NamedAttrMap) => Info, own: (t: Info) => Info) => Info,
): Info {
  const temps: Info[] = [];
  const run = (kernel: string, inputs: tf.NamedTensorInfoMap | Info[], attrs: tf.NamedAttrMap = {}): Info => {
    const k = tf.getKernel(kernel, 'wasm');
    if (!k) throw new Error(`wasm_kernels: the wasm backend has no '${kernel}' kernel`);
    const out = k.kernelFunc({ inputs: inputs as tf.NamedTensorInfoMap, attrs, backend: backend as unknown as tf.KernelBackend }) as Info;
    temps.push(out);
    return out;
  };
  let result: Info | undefined;
  try {
    result = body(run, (t) => {
      temps.push(t);
      return t;
    }); // own: also release a buffer made directly
    return result;
  } finally {
    for (const t of temps) if (t !== result) backend.disposeData(t.dataId);
  }
}

/** Zero-pads (or crops, for negative amounts) each axis of a rank-n tensor by [before, after]. */
function padOrCrop(run: (k: string, i: tf.NamedTensorInfoMap, a?: tf.NamedAttrMap) => Info, x: Info, pads: [number, number][]): Info {
  let y = x;
  if (pads.some(([a, b]) => a > 0 || b > 0)) {
    y = run('PadV2', { x: y }, { paddings: pads.map(([a, b]) => [Math.max(0, a), Math.max(0, b)]), constantValue: 0 });
  }
  if (pads.some(([a, b]) => a < 0 || b < 0)) {
    const begin = pads.map(([a]) => Math.max(0, -a));
    const size = y.shape.map((n, i) => n - begin[i] - Math.max(0, -pads[i][1]));
    y = run('Slice', { x: y }, { begin, size });
  }
  return y;
}

/** Geometry shared by the conv gradients (NHWC, after tfjs' own padding rules). */
function convGeometry(
  xShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  strides: number | [number, number],
  dilations: number | [number, number],
  pad: unknown,
  dimRoundingMode: 'floor' | 'round' | 'ceil' | undefined,
  depthwise: boolean,
) {
  type Pad = Parameters<typeof tf.backend_util.computeConv2DInfo>[4];
  return tf.backend_util.computeConv2DInfo(xShape, filterShape, strides, dilations, pad as Pad, dimRoundingMode, depthwise, 'channelsLast');
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropFilter
// dW[kh,kw,ci,co] = Σ_{b,y,x} xpad[b, y·sH + kh, x·sW + kw, ci] · dy[b, y, x, co]
// = cols[(kh,kw,ci), n] · dy[n, co] with n = (b,y,x): im2col of the channel-major input, one NN
// GEMM (the wasm BatchMatMul is fast only without transposes: ~18 GFLOP/s vs ~1.6).
// ---------------------------------------------------------------------------------------------

/** Tunables. `maxColsFloats`: im2col taps are grouped so that one block (one GEMM) stays under this many floats (256 MB). */
export const wasmKernelOptions = { maxColsFloats: 1 << 26 };

function conv2DBackpropFilter({ inputs, attrs, backend }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): Info {
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as unknown as tf.Conv2DBackpropFilterAttrs;
  return compose(backend as WasmBackend, (run) => {
    let x = inputs.x as Info; // [B, H, W, Ci] (or NCHW)
    let dy = inputs.dy as Info; // [B, Ho, Wo, Co] (or NCHW)
    if (dataFormat === 'NCHW') {
      x = run('Transpose', { x }, { perm: [0, 2, 3, 1] });
      dy = run('Transpose', { x: dy }, { perm: [0, 2, 3, 1] });
    }
    const [B, H, W, Ci] = x.shape;
    const [KH, KW, , Co] = filterShape;
    const info = convGeometry([B, H, W, Ci], filterShape as [number, number, number, number], strides, 1, pad, dimRoundingMode, false);
    const { strideHeight: sH, strideWidth: sW, outHeight: Ho, outWidth: Wo } = info;
    const { top, left } = info.padInfo;
    const N = B * Ho * Wo;
    // Tap (kh, kw) reads xpad[:, kh + y·sH, kw + x·sW, :]. Strided slices are slow on wasm (~7 M
    // elements/s), so the padded input is split once into its sH·sW stride phases
    // xpad[:, ph::sH, pw::sW, :] (contiguous 4-D slices), each made channel-major; a tap is then a
    // plain slice of its phase at offset (kh div sH, kw div sW). Stride 1: one phase = xpad.
    const Hq = Math.ceil(((Ho - 1) * sH + KH) / sH),
      Wq = Math.ceil(((Wo - 1) * sW + KW) / sW); // phase size
    const xP = padOrCrop(run, x, [
      [0, 0],
      [top, Hq * sH - top - H],
      [left, Wq * sW - left - W],
      [0, 0],
    ]); // [B, Hq·sH, Wq·sW, Ci]
    const xR = run('Reshape', { x: xP }, { shape: [B * Hq, sH, Wq, sW * Ci] });
    const phases = new Map<number, Info>();
    const phase = (ph: number, pw: number): Info => {
      const key = ph * sW + pw;
      let phaseT = phases.get(key);
      if (!phaseT) {
        const p = sH === 1 && sW === 1 ? xP : run('Slice', { x: xR }, { begin: [0, ph, 0, pw * Ci], size: [B * Hq, 1, Wq, Ci] });
        const p4 = run('Reshape', { x: p }, { shape: [B, Hq, Wq, Ci] });
        phaseT = run('Transpose', { x: p4 }, { perm: [3, 0, 1, 2] }); // [Ci, B, Hq, Wq]
        phases.set(key, phaseT);
      }
      return phaseT;
    };
    const dy2 = run('Reshape', { x: dy }, { shape: [N, Co] }); // [N, Co]
    const tap = (kh: number, kw: number): Info => {
      const p = phase(kh % sH, kw % sW);
      const [oh, ow] = [Math.floor(kh / sH), Math.floor(kw / sW)];
      return oh === 0 && ow === 0 && Hq === Ho && Wq === Wo ? p : run('Slice', { x: p }, { begin: [0, 0, oh, ow], size: [Ci, B, Ho, Wo] }); // [Ci, B, Ho, Wo]
    };
    const taps: [number, number][] = [];
    for (let kh = 0; kh < KH; kh++) for (let kw = 0; kw < KW; kw++) taps.push([kh, kw]);
    const perGroup = Math.max(1, Math.floor(wasmKernelOptions.maxColsFloats / (Ci * N)));
    const parts: Info[] = [];
    for (let g = 0; g < taps.length; g += perGroup) {
      const group = taps.slice(g, g + perGroup).map(([kh, kw]) => tap(kh, kw));
      const stacked = group.length === 1 ? group[0] : run('Pack', group, { axis: 0 }); // [g, Ci, B, Ho, Wo]
      const cols = run('Reshape', { x: stacked }, { shape: [group.length * Ci, N] }); // [g·Ci, N]
      parts.push(run('BatchMatMul', { a: cols, b: dy2 }, { transposeA: false, transposeB: false })); // [g·Ci, Co]
    }
    const dw = parts.length === 1 ? parts[0] : run('Concat', parts, { axis: 0 }); // [KH·KW·Ci, Co]
    return run('Reshape', { x: dw }, { shape: [KH, KW, Ci, Co] });
  });
}

// ---------------------------------------------------------------------------------------------
// Depthwise conv gradients (NHWC; filter [KH, KW, C, M], output channel c·M + m)
// ---------------------------------------------------------------------------------------------

/** dW[kh,kw,c,m] = Σ_{b,y,x} xpad[b, y·sH + kh·dH, x·sW + kw·dW, c] · dy[b, y, x, c·M + m] */
function depthwiseBackpropFilter({ inputs, attrs, backend }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): Info {
  const { strides, dilations, pad, dimRoundingMode, filterShape } = attrs as unknown as tf.DepthwiseConv2dNativeBackpropFilterAttrs;
  return compose(backend as WasmBackend, (run) => {
    const x = inputs.x as Info; // [B, H, W, C]
    const dy = inputs.dy as Info; // [B, Ho, Wo, C·M]
    const [B, H, W, C] = x.shape;
    const [KH, KW, , M] = filterShape;
    const info = convGeometry([B, H, W, C], filterShape as [number, number, number, number], strides, dilations, pad, dimRoundingMode, true);
    const { strideHeight: sH, strideWidth: sW, dilationHeight: dH, dilationWidth: dW, outHeight: Ho, outWidth: Wo } = info;
    const { top, left } = info.padInfo;
    const needH = (Ho - 1) * sH + (KH - 1) * dH + 1,
      needW = (Wo - 1) * sW + (KW - 1) * dW + 1;
    const xP = padOrCrop(run, x, [
      [0, 0],
      [top, Math.max(0, needH - top - H)],
      [left, Math.max(0, needW - left - W)],
      [0, 0],
    ]);
    const dy5 = run('Reshape', { x: dy }, { shape: [B, Ho, Wo, C, M] });
    const grads: Info[] = [];
    for (let kh = 0; kh < KH; kh++) {
      for (let kw = 0; kw < KW; kw++) {
        const xs = run(
          'StridedSlice',
          { x: xP },
          {
            begin: [0, kh * dH, kw * dW, 0],
            end: [B, kh * dH + (Ho - 1) * sH + 1, kw * dW + (Wo - 1) * sW + 1, C],
            strides: [1, sH, sW, 1],
            beginMask: 0,
            endMask: 0,
            ellipsisMask: 0,
            newAxisMask: 0,
            shrinkAxisMask: 0,
          },
        ); // [B, Ho, Wo, C]
        const xs5 = run('Reshape', { x: xs }, { shape: [B, Ho, Wo, C, 1] });
        const prod = run('Multiply', { a: xs5, b: dy5 }); // [B, Ho, Wo, C, M]
        grads.push(run('Sum', { x: prod }, { axis: [0, 1, 2], keepDims: false })); // [C, M]
      }
    }
    const packed = grads.length === 1 ? grads[0] : run('Pack', grads, { axis: 0 }); // [KH·KW, C, M]
    return run('Reshape', { x: packed }, { shape: [KH, KW, C, M] });
  });
}

/**
 * dx[b,i,j,c] = Σ_{kh,kw,m} up[b, i + top − kh·dH, j + left − kw·dW, c·M+m] · W[kh,kw,c,m], where
 * `up` is dy with (s−1) zeros inserted between rows/columns: a 'valid' stride-1 depthwise conv of
 * the suitably padded `up` with the spatially flipped filter, then a sum over the multiplier M.
 */
function depthwiseBackpropInput({ inputs, attrs, backend }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): Info {
  const { strides, dilations, pad, dimRoundingMode, inputShape } = attrs as unknown as tf.DepthwiseConv2dNativeBackpropInputAttrs;
  return compose(backend as WasmBackend, (run) => {
    const dy = inputs.dy as Info; // [B, Ho, Wo, C·M]
    const filter = inputs.filter as Info; // [KH, KW, C, M]
    const [B, H, W, C] = inputShape;
    const [KH, KW, , M] = filter.shape;
    const info = convGeometry([B, H, W, C], filter.shape as [number, number, number, number], strides, dilations, pad, dimRoundingMode, true);
    const { strideHeight: sH, strideWidth: sW, dilationHeight: dH, dilationWidth: dW, outHeight: Ho, outWidth: Wo } = info;
    const { top, left } = info.padInfo;
    let up = dy; // [B, Ho·sH, Wo·sW, C·M] after zero insertion (data at multiples of the stride)
    if (sH > 1 || sW > 1) {
      const d6 = run('Reshape', { x: dy }, { shape: [B, Ho, 1, Wo, 1, C * M] });
      const p6 = run(
        'PadV2',
        { x: d6 },
        {
          paddings: [
            [0, 0],
            [0, 0],
            [0, sH - 1],
            [0, 0],
            [0, sW - 1],
            [0, 0],
          ],
          constantValue: 0,
        },
      );
      up = run('Reshape', { x: p6 }, { shape: [B, Ho * sH, Wo * sW, C * M] });
    }
    // Padded length must be H + (KH−1)·dH so that the 'valid' conv yields H rows.
    const L = (KH - 1) * dH - top,
      T = (KW - 1) * dW - left;
    const upP = padOrCrop(run, up, [
      [0, 0],
      [L, H + (KH - 1) * dH - L - up.shape[1]],
      [T, W + (KW - 1) * dW - T - up.shape[2]],
      [0, 0],
    ]);
    const flipped = run('Reverse', { x: filter }, { dims: [0, 1] });
    const f4 = run('Reshape', { x: flipped }, { shape: [KH, KW, C * M, 1] });
    const dx = run('DepthwiseConv2dNative', { x: upP, filter: f4 }, { strides: [1, 1], pad: 'valid', dilations: [dH, dW], dataFormat: 'NHWC' }); // [B, H, W, C·M]
    if (M === 1) return dx;
    const dx5 = run('Reshape', { x: dx }, { shape: [B, H, W, C, M] });
    return run('Sum', { x: dx5 }, { axis: [4], keepDims: false }); // [B, H, W, C]
  });
}

// ---------------------------------------------------------------------------------------------
// Conv2DBackpropInput (override of wasm's own kernel, a naive loop at ~2.5 GFLOP/s)
// A transposed conv as stride-1 forward convs through the wasm Conv2D (XNNPACK, ~29 GFLOP/s),
// split into the sH·sW stride phases ("sub-pixel" decomposition) so that no multiply is spent on
// the zeros a dilated dy would hold. Per axis (forward: y[o] = Σ_k xpad[o·s + k]·w[k], x[i] =
// xpad[i + p]), with t = i + p = q·s + r:
//   dx[i] = Σ_m dy[q − m] · w[r + s·m]      (0 ≤ q − m < Ho, 0 ≤ r + s·m < K)
// i.e. for phase r a 'valid' correlation of dy (padded by Kr − 1 before) with the flipped taps
// w[r + s·(Kr−1−j)], j < Kr = ⌈(K − r)/s⌉. Phase outputs over q ∈ [qa, qb) are interleaved
// (t = q·s + r) and cropped to t ∈ [p, p + H). Stride 1: one phase, the whole flipped filter,
// no interleave or crop.
// ---------------------------------------------------------------------------------------------

/** The wasm backend's own kernel kept by registerWasmTrainingKernels, for the cases an override leaves to it. */
function fallBack(original: tf.KernelFunc | undefined, kernelName: string): tf.KernelFunc {
  if (!original)
    throw new Error(
      `wasm_kernels: no original wasm ${kernelName} to fall back on; call registerWasmTrainingKernels after importing @tensorflow/tfjs-backend-wasm`,
    );
  return original;
}

let wasmConv2DBackpropInputOriginal: tf.KernelFunc | undefined;

function conv2DBackpropInput(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): Info {
  const { inputs, attrs, backend } = args;
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as unknown as tf.Conv2DBackpropInputAttrs;
  const dy0 = inputs.dy as Info; // [B, Ho, Wo, Co]
  const filter = inputs.filter as Info; // [KH, KW, Ci, Co]
  const dilations = (attrs as { dilations?: number | [number, number] }).dilations ?? 1;
  const dilated = typeof dilations === 'number' ? dilations !== 1 : dilations.some((d) => d !== 1);
  if (dataFormat === 'NCHW' || dilated || dy0.dtype !== 'float32' || filter.dtype !== 'float32' || dy0.shape.length !== 4) {
    return fallBack(wasmConv2DBackpropInputOriginal, 'Conv2DBackpropInput')(args as unknown as Parameters<tf.KernelFunc>[0]) as Info;
  }
  return compose(backend as WasmBackend, (run, own) => {
    const [B, H, W, Ci] = inputShape;
    const [KH, KW, , Co] = filter.shape;
    const info = convGeometry([B, H, W, Ci], filter.shape as [number, number, number, number], strides, 1, pad, dimRoundingMode, false);
    const { strideHeight: sH, strideWidth: sW } = info;
    const { top, left } = info.padInfo;
    const [, Ho, Wo] = dy0.shape;
    // Per axis: q range [qa, qb) covering t ∈ [p, p + H), and each phase's tap count.
    const axis = (p: number, n: number, s: number, k: number) => {
      const qa = Math.floor(p / s),
        qb = Math.ceil((p + n) / s);
      const kr = (r: number) => Math.max(0, Math.ceil((k - r) / s));
      return { qa, qb, Q: qb - qa, kr };
    };
    const ah = axis(top, H, sH, KH),
      aw = axis(left, W, sW, KW);
    // The channel-swapped filter [KH, KW, Co, Ci]: one contiguous block of Co·Ci per tap.
    const wT = run('Transpose', { x: filter }, { perm: [0, 1, 3, 2] });
    const b = backend as WasmBackend;
    const CC = Co * Ci;
    const phaseOut = (rh: number, rw: number): Info => {
      const kh = ah.kr(rh),
        kw = aw.kr(rw);
      if (kh === 0 || kw === 0) return run('Fill', {}, { shape: [B, ah.Q, aw.Q, Ci], value: 0, dtype: 'float32' });
      // The phase's flipped taps: tap (jh, jw) = filter tap (rh + sH·(kh−1−jh), rw + sW·(kw−1−jw)).
      // Copied block by block over the heap (wasm's Gather / Reverse run at ~30 M floats/s).
      let f4 = wT; // a 1×1 filter needs no flip
      if (KH * KW > 1) {
        f4 = own(b.makeOutput([kh, kw, Co, Ci], 'float32'));
        const dst = b.typedArrayFromHeap(f4),
          src = b.typedArrayFromHeap(wT); // views after every allocation
        for (let jh = 0; jh < kh; jh++)
          for (let jw = 0; jw < kw; jw++) {
            const tap = (rh + sH * (kh - 1 - jh)) * KW + rw + sW * (kw - 1 - jw);
            dst.set(src.subarray(tap * CC, (tap + 1) * CC), (jh * kw + jw) * CC);
          }
      }
      // dy rows [qa − (kh−1), qb) (zero outside [0, Ho)): pads before/after, negative = crop.
      const padH: [number, number] = [kh - 1 - ah.qa, ah.qb - Ho],
        padW: [number, number] = [kw - 1 - aw.qa, aw.qb - Wo];
      let dy = dy0;
      if (padH[0] < 0 || padH[1] < 0 || padW[0] < 0 || padW[1] < 0) {
        dy = padOrCrop(run, dy0, [
          [0, 0],
          [Math.min(0, padH[0]), Math.min(0, padH[1])],
          [Math.min(0, padW[0]), Math.min(0, padW[1])],
          [0, 0],
        ]);
      }
      const convPad = [
        [0, 0],
        [Math.max(0, padH[0]), Math.max(0, padH[1])],
        [Math.max(0, padW[0]), Math.max(0, padW[1])],
        [0, 0],
      ];
      return run('Conv2D', { x: dy, filter: f4 }, {
        strides: [1, 1],
        pad: convPad,
        dilations: [1, 1],
        dataFormat: 'NHWC',
        dimRoundingMode: undefined,
      } as unknown as tf.NamedAttrMap); // [B, Qh, Qw, Ci]
    };
    let t: Info; // [B, Qh·sH, Qw·sW, Ci]: t = q·s + r for q ∈ [qa, qb)
    if (sH === 1 && sW === 1) t = phaseOut(0, 0);
    else {
      const rowsH: Info[] = [];
      for (let rh = 0; rh < sH; rh++) {
        const ph = Array.from({ length: sW }, (_, rw) => phaseOut(rh, rw));
        rowsH.push(sW === 1 ? ph[0] : run('Pack', ph, { axis: 3 })); // [B, Qh, Qw, sW, Ci]
      }
      const packed = sH === 1 ? rowsH[0] : run('Pack', rowsH, { axis: 2 }); // [B, Qh, sH, Qw, sW, Ci]
      t = run('Reshape', { x: packed }, { shape: [B, ah.Q * sH, aw.Q * sW, Ci] });
    }
    const offH = top - ah.qa * sH,
      offW = left - aw.qa * sW;
    if (offH === 0 && offW === 0 && t.shape[1] === H && t.shape[2] === W) return t;
    return run('Slice', { x: t }, { begin: [0, offH, offW, 0], size: [B, H, W, Ci] });
  });
}

// ---------------------------------------------------------------------------------------------
// UnsortedSegmentSum (gather's gradient): out[s, ...] = Σ_{i: ids[i] = s} x[i, ...]
// A loop over the wasm heap: O(size(x) + size(out)); the cpu backend's formulation (one masked
// sum per segment) would be O(numSegments · size(x)) — hopeless for a 49k-token vocabulary.
// ---------------------------------------------------------------------------------------------

function unsortedSegmentSum({ inputs, attrs, backend }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): Info {
  const b = backend as WasmBackend;
  const x = inputs.x as Info; // [...idsShape, ...inner]
  const segmentIds = inputs.segmentIds as Info; // idsShape
  const { numSegments } = attrs as unknown as tf.UnsortedSegmentSumAttrs;
  const ids = b.readSync(segmentIds.dataId) as ArrayLike<number>;
  const inner = tf.util.sizeFromShape(x.shape.slice(segmentIds.shape.length));
  const out = b.makeOutput([numSegments, ...x.shape.slice(segmentIds.shape.length)], x.dtype); // [numSegments, ...inner]
  // Views are taken after every allocation (a heap growth would detach older views).
  const o = b.typedArrayFromHeap(out);
  const xv = b.typedArrayFromHeap(x);
  o.fill(0);
  for (let i = 0; i < ids.length; i++) {
    const s = ids[i];
    if (!(s >= 0 && s < numSegments)) continue; // TF drops out-of-range ids
    const src = i * inner,
      dst = s * inner;
    for (let j = 0; j < inner; j++) o[dst + j] += xv[src + j];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Einsum (forward): the cpu backend's algorithm (transpose/reshape each operand to the full index
// space, multiply, sum the contracted axes one by one) on wasm kernels.
// ---------------------------------------------------------------------------------------------

function einsum({ inputs, attrs, backend }: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): Info {
  const { equation } = attrs as unknown as tf.EinsumAttrs;
  const tensors = inputs as unknown as Info[];
  const bu = tf.backend_util;
  const { allDims, summedDims, idDims } = bu.decodeEinsumEquation(equation, tensors.length);
  bu.checkEinsumDimSizes(allDims.length, idDims, tensors as unknown as tf.Tensor[]);
  const { path, steps } = bu.getEinsumComputePath(summedDims, idDims);
  return compose(backend as WasmBackend, (run) => {
    let out: Info | null = null;
    let remaining = allDims.length;
    for (let i = 0; i < steps.length; i++) {
      for (const term of steps[i]) {
        const { permutationIndices: perm, expandDims } = bu.getEinsumPermutation(remaining, idDims[term]);
        let x = bu.isIdentityPermutation(perm) ? tensors[term] : run('Transpose', { x: tensors[term] }, { perm });
        const shape = x.shape.slice();
        for (const d of expandDims) shape.splice(d, 0, 1);
        if (!tf.util.arraysEqual(x.shape, shape)) x = run('Reshape', { x }, { shape });
        out = out === null ? x : run('Multiply', { a: x, b: out });
      }
      if (i < steps.length - 1) {
        if (path[i] >= 0 && out !== null) out = run('Sum', { x: out }, { axis: path[i] - (allDims.length - remaining), keepDims: false });
        remaining--;
      }
    }
    if (out === null) throw new Error(`einsum '${equation}': the compute path multiplied no operand; pass at least one tensor`);
    // The result must own its data: an input passed through unchanged gets its own reference.
    return tensors.includes(out) ? run('Identity', { x: out }) : out;
  });
}

// ---------------------------------------------------------------------------------------------
// Slice / Unpack: wasm's read the whole input through readSync — a copy of all of it — for every
// slice, so splitting a [G, …] tensor costs G full copies (16 MB × 64 for a UNet's attention
// probabilities). Contiguous slices (any slice along axis 0) are copied straight from the heap;
// the rest fall back to wasm's kernels.
// ---------------------------------------------------------------------------------------------

let wasmSliceOriginal: tf.KernelFunc | undefined;
let wasmUnpackOriginal: tf.KernelFunc | undefined;

/** A new tensor of `shape` holding x's elements [offset, offset + size(shape)), copied over the heap. */
function copyRange(b: WasmBackend, x: Info, offset: number, shape: number[]): Info {
  const out = b.makeOutput(shape, x.dtype);
  const n = tf.util.sizeFromShape(shape);
  b.typedArrayFromHeap(out).set(b.typedArrayFromHeap(x).subarray(offset, offset + n)); // views after the allocation
  return out;
}

function slice(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): Info {
  const x = args.inputs.x as Info;
  const { begin, size } = args.attrs as unknown as tf.SliceAttrs;
  const [begin_, size_] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
  tf.slice_util.assertParamsValid(x as tf.Tensor, begin_, size_); // as the cpu kernel does; wasm's reads out of bounds
  if (x.dtype === 'string' || !tf.slice_util.isSliceContinous(x.shape, begin_, size_))
    return fallBack(wasmSliceOriginal, 'Slice')(args as unknown as Parameters<tf.KernelFunc>[0]) as Info;
  return copyRange(args.backend as WasmBackend, x, tf.slice_util.computeFlatOffset(begin_, tf.util.computeStrides(x.shape)), size_);
}

function unpack(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): Info[] {
  const value = args.inputs.value as Info; // [..., G, ...inner]
  const rank = value.shape.length;
  const axis = ((args.attrs as unknown as tf.UnpackAttrs).axis + rank) % rank;
  if (value.dtype === 'string' || value.shape.slice(0, axis).some((d) => d !== 1))
    return fallBack(wasmUnpackOriginal, 'Unpack')(args as unknown as Parameters<tf.KernelFunc>[0]) as Info[];
  const outShape = value.shape.filter((_, i) => i !== axis);
  const n = tf.util.sizeFromShape(outShape);
  return Array.from({ length: value.shape[axis] }, (_, g) => copyRange(args.backend as WasmBackend, value, g * n, outShape));
}

// ---------------------------------------------------------------------------------------------
// Identity: wasm's copies its input. The gradient tape keeps every tensor it saves for the backward
// through Identity (tfjs' engine clones them), so on wasm each saved activation was held twice.
// Sharing the storage, ref-counted as the cpu backend's Identity and wasm's own Reshape do, holds
// it once; no wasm kernel writes into its inputs.
// ---------------------------------------------------------------------------------------------

let wasmIdentityOriginal: tf.KernelFunc | undefined;

function identity(args: { inputs: tf.NamedTensorInfoMap; backend: unknown }): Info {
  const x = args.inputs.x as Info;
  if (x.dtype === 'string') return fallBack(wasmIdentityOriginal, 'Identity')(args as unknown as Parameters<tf.KernelFunc>[0]) as Info;
  (args.backend as WasmBackend).incRef(x.dataId);
  return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
}

const KERNELS: Array<{ kernelName: string; kernelFunc: tf.KernelFunc }> = [
  { kernelName: tf.Conv2DBackpropFilter, kernelFunc: conv2DBackpropFilter as unknown as tf.KernelFunc },
  { kernelName: tf.DepthwiseConv2dNativeBackpropFilter, kernelFunc: depthwiseBackpropFilter as unknown as tf.KernelFunc },
  { kernelName: tf.DepthwiseConv2dNativeBackpropInput, kernelFunc: depthwiseBackpropInput as unknown as tf.KernelFunc },
  { kernelName: tf.UnsortedSegmentSum, kernelFunc: unsortedSegmentSum as unknown as tf.KernelFunc },
  { kernelName: tf.Einsum, kernelFunc: einsum as unknown as tf.KernelFunc },
];

/** Names of the kernels `registerWasmTrainingKernels` provides (when wasm lacks them). */
export const WASM_TRAINING_KERNELS: readonly string[] = KERNELS.map((k) => k.kernelName);

/**
 * Kernels wasm has but `registerWasmTrainingKernels` replaces with faster ones (each keeps the
 * original as the fallback for the cases it does not handle, e.g. NCHW).
 */
const OVERRIDES: Array<{ kernelName: string; kernelFunc: tf.KernelFunc; keepOriginal: (f: tf.KernelFunc) => void }> = [
  {
    kernelName: tf.Conv2DBackpropInput,
    kernelFunc: conv2DBackpropInput as unknown as tf.KernelFunc,
    keepOriginal: (f) => {
      wasmConv2DBackpropInputOriginal = f;
    },
  },
  {
    kernelName: tf.Slice,
    kernelFunc: slice as unknown as tf.KernelFunc,
    keepOriginal: (f) => {
      wasmSliceOriginal = f;
    },
  },
  {
    kernelName: tf.Unpack,
    kernelFunc: unpack as unknown as tf.KernelFunc,
    keepOriginal: (f) => {
      wasmUnpackOriginal = f;
    },
  },
  {
    kernelName: tf.Identity,
    kernelFunc: identity as unknown as tf.KernelFunc,
    keepOriginal: (f) => {
      wasmIdentityOriginal = f;
    },
  },
];

/** Names of the wasm kernels `registerWasmTrainingKernels` replaces. */
export const WASM_KERNEL_OVERRIDES: readonly string[] = OVERRIDES.map((k) => k.kernelName);

/**
 * Registers, for backend 'wasm', each kernel of WASM_TRAINING_KERNELS that is not registered yet
 * (a future tfjs-backend-wasm that ships its own keeps it), and replaces those of
 * WASM_KERNEL_OVERRIDES (keeping wasm's as their fallback). Idempotent; returns the names it
 * registered by this call. Call it after `@tensorflow/tfjs-backend-wasm` has been imported.
 */
export function registerWasmTrainingKernels(): string[] {
  const added: string[] = [];
  for (const { kernelName, kernelFunc } of KERNELS) {
    if (tf.getKernel(kernelName, 'wasm')) continue;
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc });
    added.push(kernelName);
  }
  for (const { kernelName, kernelFunc, keepOriginal } of OVERRIDES) {
    const original = tf.getKernel(kernelName, 'wasm');
    // wasm not loaded, done already, or replaced since by a native kernel (which falls back on this one)
    if (!original || original.kernelFunc === kernelFunc || (original as { native?: boolean }).native) continue;
    keepOriginal(original.kernelFunc);
    tf.unregisterKernel(kernelName, 'wasm');
    // The original's setupFunc (its cwrap) is kept: it runs if the backend is (re)initialised later.
    tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc, setupFunc: original.setupFunc, disposeFunc: original.disposeFunc });
    added.push(kernelName);
  }
  return added;
}
