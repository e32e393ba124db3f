// FLOPs of the multiply-accumulate kernels a tf.profile() run executed (2 × MACs; as
// ../shared/fixtures/tiny-sd/sd15_costs.json counts: convolutions and matMuls only).
const prod = (s) => s.reduce((a, b) => a * b, 1);

/** Σ FLOPs of conv and matMul kernels in `profile.kernels` (NHWC, HWIO filters). */
export function kernelFlops(profile) {
  let flops = 0;
  for (const k of profile.kernels) {
    const [a, b] = k.inputShapes ?? [];
    const out = k.outputShapes?.[0];
    if (!a || !b || !out) continue;
    switch (k.name) {
      case 'Conv2D': // x [B,H,W,Ci], filter [kh,kw,Ci,Co] → out [B,Ho,Wo,Co]
        flops += 2 * prod(out) * b[0] * b[1] * b[2];
        break;
      case 'Conv2DBackpropInput': // dy, filter [kh,kw,Ci,Co] → dx [B,H,W,Ci]
        flops += 2 * prod(k.inputShapes[0]) * b[0] * b[1] * b[2];
        break;
      case 'Conv2DBackpropFilter': // x, dy → dW [kh,kw,Ci,Co]: one MAC per dy element per filter tap and input channel
        flops += 2 * prod(b) * out[0] * out[1] * out[2];
        break;
      case 'BatchMatMul':
      case '_FusedMatMul': // [.., M, K] × [.., K, N] (transposes do not change the count)
        flops += 2 * prod(out) * (k.inputShapes[0].at(-1) === out.at(-2) ? k.inputShapes[0].at(-2) : k.inputShapes[0].at(-1));
        break;
    }
  }
  return flops;
}
