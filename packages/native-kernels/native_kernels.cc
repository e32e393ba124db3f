// @png/native-kernels: convolution and matrix products over oneDNN, computed in place on float32
// arrays that the caller owns (the tfjs wasm backend's heap: no copies). One entry point per
// kernel; every function is synchronous and runs on oneDNN's threads (OpenMP: all cores, or
// OMP_NUM_THREADS). Layouts are tfjs': activations NHWC, conv filters HWIO [KH, KW, Ci, Co].
// A filter given with a `filterKey` is reordered into oneDNN's blocked layout once and kept (as
// PyTorch keeps a frozen weight's reordered copy), least recently used first out within a budget.
#include <dnnl.hpp>
#include <node_api.h>
#include <omp.h>

#include <cstring>
#include <list>
#include <string>
#include <unordered_map>
#include <vector>

using dnnl::algorithm;
using dnnl::memory;
using dnnl::prop_kind;
using tag = dnnl::memory::format_tag;
using dt = dnnl::memory::data_type;

namespace {

struct ArgError {
  std::string message;
};

dnnl::engine &engine() {
  static dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  return eng;
}

dnnl::stream &stream() {
  static dnnl::stream s(engine());
  return s;
}

napi_value property(napi_env env, napi_value obj, const char *name) {
  napi_value v;
  if (napi_get_named_property(env, obj, name, &v) != napi_ok) throw ArgError{std::string("cannot read '") + name + "'"};
  return v;
}

/** The float32 data of obj[name], a Float32Array, and its length. */
float *floats(napi_env env, napi_value obj, const char *name, size_t *length) {
  napi_value v = property(env, obj, name);
  bool is_typed = false;
  napi_is_typedarray(env, v, &is_typed);
  napi_typedarray_type type;
  void *data = nullptr;
  if (!is_typed || napi_get_typedarray_info(env, v, &type, length, &data, nullptr, nullptr) != napi_ok || type != napi_float32_array)
    throw ArgError{std::string("'") + name + "' must be a Float32Array"};
  return static_cast<float *>(data);
}

std::vector<int64_t> ints(napi_env env, napi_value obj, const char *name, size_t expected) {
  napi_value v = property(env, obj, name);
  uint32_t n = 0;
  bool is_array = false;
  napi_is_array(env, v, &is_array);
  if (!is_array || napi_get_array_length(env, v, &n) != napi_ok || n != expected)
    throw ArgError{std::string("'") + name + "' must be an array of " + std::to_string(expected) + " integers"};
  std::vector<int64_t> out(n);
  for (uint32_t i = 0; i < n; i++) {
    napi_value e;
    napi_get_element(env, v, i, &e);
    if (napi_get_value_int64(env, e, &out[i]) != napi_ok) throw ArgError{std::string("'") + name + "' must hold integers"};
  }
  return out;
}

bool flag(napi_env env, napi_value obj, const char *name) {
  bool b = false;
  napi_get_value_bool(env, property(env, obj, name), &b);
  return b;
}

int64_t product(const std::vector<int64_t> &dims) {
  int64_t n = 1;
  for (int64_t d : dims) n *= d;
  return n;
}

/** A float32 array holding exactly the elements of `dims` (its length is checked). */
float *tensor(napi_env env, napi_value obj, const char *name, const std::vector<int64_t> &dims) {
  size_t length = 0;
  float *p = floats(env, obj, name, &length);
  if (static_cast<int64_t>(length) != product(dims))
    throw ArgError{std::string("'") + name + "' holds " + std::to_string(length) + " floats; its shape needs " + std::to_string(product(dims))};
  return p;
}

/** The convolution geometry every conv entry point takes. */
struct Conv {
  memory::dims x, w, y;  // oneDNN's logical dims: x/y {N, C, H, W}, w {O, I, KH, KW}
  memory::dims strides, dilates, pad_l, pad_r;
};

Conv conv_args(napi_env env, napi_value a) {
  auto xs = ints(env, a, "xShape", 4), ws = ints(env, a, "filterShape", 4), ys = ints(env, a, "yShape", 4);
  auto strides = ints(env, a, "strides", 2), dil = ints(env, a, "dilations", 2), pads = ints(env, a, "pads", 4);
  Conv c;
  c.x = {xs[0], xs[3], xs[1], xs[2]};  // [B, H, W, Ci]
  c.w = {ws[3], ws[2], ws[0], ws[1]};  // [KH, KW, Ci, Co]
  c.y = {ys[0], ys[3], ys[1], ys[2]};  // [B, Ho, Wo, Co]
  c.strides = {strides[0], strides[1]};
  c.dilates = {dil[0] - 1, dil[1] - 1};  // oneDNN counts the gaps
  c.pad_l = {pads[0], pads[2]};          // pads = [top, bottom, left, right]
  c.pad_r = {pads[1], pads[3]};
  return c;
}

/** Runs `reorder` from `from` into a new memory of `to` when the layouts differ; else `from`. */
memory reordered(const memory &from, const memory::desc &to) {
  if (from.get_desc() == to) return from;
  memory out(to, engine());
  dnnl::reorder(from, out).execute(stream(), const_cast<memory &>(from), out);
  return out;
}

/**
 * Filters reordered into the layout a primitive wants, per caller key and use ('f' forward, 'd'
 * input gradient): a key names one immutable filter (@png/core gives one per tensor's data), so a
 * frozen weight is reordered on its first call only. Least recently used entries go first when
 * the bytes would pass `limit`; the caller releases a key when its tensor is gone.
 */
struct FilterCache {
  struct Entry {
    memory::desc desc;
    memory reordered;
    size_t bytes;
    std::list<std::string>::iterator at;
  };
  std::unordered_map<std::string, Entry> entries;
  std::list<std::string> order;  // most recently used first
  size_t bytes = 0;
  size_t limit = size_t(1024) << 20;

  void erase(const std::string &key) {
    auto it = entries.find(key);
    if (it == entries.end()) return;
    bytes -= it->second.bytes;
    order.erase(it->second.at);
    entries.erase(it);
  }

  void fit(size_t more) {
    while (!order.empty() && bytes + more > limit) erase(order.back());
  }
};

FilterCache &filter_cache() {
  static FilterCache cache;
  return cache;
}

/** `w` in the layout `want`: itself when it is in it already, else its reordered copy (kept under `key` when key ≥ 0). */
memory filter_as(const memory &w, const memory::desc &want, int64_t key, char use) {
  if (w.get_desc() == want) return w;
  FilterCache &cache = filter_cache();
  if (key < 0 || cache.limit == 0) return reordered(w, want);
  std::string name = std::to_string(key) + use;
  auto it = cache.entries.find(name);
  if (it != cache.entries.end() && it->second.desc == want) {
    cache.order.splice(cache.order.begin(), cache.order, it->second.at);
    return it->second.reordered;
  }
  cache.erase(name);
  memory copy = reordered(w, want);
  size_t bytes = want.get_size();
  if (bytes > cache.limit) return copy;
  cache.fit(bytes);
  cache.order.push_front(name);
  cache.entries.emplace(name, FilterCache::Entry{want, copy, bytes, cache.order.begin()});
  cache.bytes += bytes;
  return copy;
}

/** args.filterKey: a non-negative integer naming an immutable filter, or −1 when absent. */
int64_t filter_key(napi_env env, napi_value a) {
  bool has = false;
  napi_has_named_property(env, a, "filterKey", &has);
  if (!has) return -1;
  int64_t key = -1;
  if (napi_get_value_int64(env, property(env, a, "filterKey"), &key) != napi_ok || key < 0) throw ArgError{"'filterKey' must be a non-negative integer"};
  return key;
}

dnnl::convolution_forward::primitive_desc forward_pd(const Conv &c, prop_kind kind) {
  memory::desc x(c.x, dt::f32, tag::any), w(c.w, dt::f32, tag::any), y(c.y, dt::f32, tag::any);
  dnnl::convolution_forward::desc d(kind, algorithm::convolution_direct, x, w, y, c.strides, c.dilates, c.pad_l, c.pad_r);
  return dnnl::convolution_forward::primitive_desc(d, engine());
}

/** y = conv(x, filter): args {x, xShape, filter, filterShape, y, yShape, strides, dilations, pads, filterKey?}. */
void conv2d(napi_env env, napi_value a) {
  Conv c = conv_args(env, a);
  memory x({c.x, dt::f32, tag::nhwc}, engine(), tensor(env, a, "x", c.x));
  memory w({c.w, dt::f32, tag::hwio}, engine(), tensor(env, a, "filter", c.w));
  memory y({c.y, dt::f32, tag::nhwc}, engine(), tensor(env, a, "y", c.y));
  auto pd = forward_pd(c, prop_kind::forward_inference);
  memory xr = reordered(x, pd.src_desc()), wr = filter_as(w, pd.weights_desc(), filter_key(env, a), 'f');
  memory yr = pd.dst_desc() == y.get_desc() ? y : memory(pd.dst_desc(), engine());
  dnnl::convolution_forward(pd).execute(stream(), {{DNNL_ARG_SRC, xr}, {DNNL_ARG_WEIGHTS, wr}, {DNNL_ARG_DST, yr}});
  if (yr != y) dnnl::reorder(yr, y).execute(stream(), yr, y);
  stream().wait();
}

/** dx = conv's input gradient: args {dy, yShape, filter, filterShape, dx, xShape, strides, dilations, pads, filterKey?}. */
void conv2d_backprop_input(napi_env env, napi_value a) {
  Conv c = conv_args(env, a);
  memory dy({c.y, dt::f32, tag::nhwc}, engine(), tensor(env, a, "dy", c.y));
  memory w({c.w, dt::f32, tag::hwio}, engine(), tensor(env, a, "filter", c.w));
  memory dx({c.x, dt::f32, tag::nhwc}, engine(), tensor(env, a, "dx", c.x));
  auto hint = forward_pd(c, prop_kind::forward_training);
  memory::desc x_any(c.x, dt::f32, tag::any), w_any(c.w, dt::f32, tag::any), y_any(c.y, dt::f32, tag::any);
  dnnl::convolution_backward_data::desc d(algorithm::convolution_direct, x_any, w_any, y_any, c.strides, c.dilates, c.pad_l, c.pad_r);
  dnnl::convolution_backward_data::primitive_desc pd(d, engine(), hint);
  memory dyr = reordered(dy, pd.diff_dst_desc()), wr = filter_as(w, pd.weights_desc(), filter_key(env, a), 'd');
  memory dxr = pd.diff_src_desc() == dx.get_desc() ? dx : memory(pd.diff_src_desc(), engine());
  dnnl::convolution_backward_data(pd).execute(stream(), {{DNNL_ARG_DIFF_DST, dyr}, {DNNL_ARG_WEIGHTS, wr}, {DNNL_ARG_DIFF_SRC, dxr}});
  if (dxr != dx) dnnl::reorder(dxr, dx).execute(stream(), dxr, dx);
  stream().wait();
}

/** dfilter = conv's filter gradient: args {x, xShape, dy, yShape, dfilter, filterShape, strides, dilations, pads}. */
void conv2d_backprop_filter(napi_env env, napi_value a) {
  Conv c = conv_args(env, a);
  memory x({c.x, dt::f32, tag::nhwc}, engine(), tensor(env, a, "x", c.x));
  memory dy({c.y, dt::f32, tag::nhwc}, engine(), tensor(env, a, "dy", c.y));
  memory dw({c.w, dt::f32, tag::hwio}, engine(), tensor(env, a, "dfilter", c.w));
  auto hint = forward_pd(c, prop_kind::forward_training);
  memory::desc x_any(c.x, dt::f32, tag::any), w_any(c.w, dt::f32, tag::any), y_any(c.y, dt::f32, tag::any);
  dnnl::convolution_backward_weights::desc d(algorithm::convolution_direct, x_any, w_any, y_any, c.strides, c.dilates, c.pad_l, c.pad_r);
  dnnl::convolution_backward_weights::primitive_desc pd(d, engine(), hint);
  memory xr = reordered(x, pd.src_desc()), dyr = reordered(dy, pd.diff_dst_desc());
  memory dwr = pd.diff_weights_desc() == dw.get_desc() ? dw : memory(pd.diff_weights_desc(), engine());
  dnnl::convolution_backward_weights(pd).execute(stream(), {{DNNL_ARG_SRC, xr}, {DNNL_ARG_DIFF_DST, dyr}, {DNNL_ARG_DIFF_WEIGHTS, dwr}});
  if (dwr != dw) dnnl::reorder(dwr, dw).execute(stream(), dwr, dw);
  stream().wait();
}

/**
 * c [G, M, N] = a · b for a [Ga, M, K] (stored [Ga, K, M] when transposeA) and b [Gb, K, N]
 * (stored [Gb, N, K] when transposeB), Ga and Gb equal or 1 (broadcast): args {a, b, c, batchA,
 * batchB, m, k, n, transposeA, transposeB}.
 */
void matmul(napi_env env, napi_value args) {
  auto dims = ints(env, args, "dims", 5);  // [Ga, Gb, M, K, N]
  int64_t ga = dims[0], gb = dims[1], m = dims[2], k = dims[3], n = dims[4], g = ga > gb ? ga : gb;
  if ((ga != gb && ga != 1 && gb != 1) || m < 1 || k < 1 || n < 1) throw ArgError{"'dims' [Ga, Gb, M, K, N]: Ga and Gb must be equal or 1"};
  bool ta = flag(env, args, "transposeA"), tb = flag(env, args, "transposeB");
  memory::desc ad({ga, m, k}, dt::f32, ta ? memory::dims{m * k, 1, m} : memory::dims{m * k, k, 1});
  memory::desc bd({gb, k, n}, dt::f32, tb ? memory::dims{k * n, 1, k} : memory::dims{k * n, n, 1});
  memory::desc cd({g, m, n}, dt::f32, tag::abc);
  memory a(ad, engine(), tensor(env, args, "a", {ga, m, k}));
  memory b(bd, engine(), tensor(env, args, "b", {gb, k, n}));
  memory c(cd, engine(), tensor(env, args, "c", {g, m, n}));
  dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(ad, bd, cd), engine());
  dnnl::matmul(pd).execute(stream(), {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
  stream().wait();
}

using Kernel = void (*)(napi_env, napi_value);

/** Wraps a kernel as a JS function of one argument object; errors become JS errors. */
template <Kernel kernel>
napi_value entry(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  try {
    if (argc < 1) throw ArgError{"expected one argument object"};
    kernel(env, argv[0]);
  } catch (const ArgError &e) {
    napi_throw_type_error(env, nullptr, e.message.c_str());
  } catch (const dnnl::error &e) {
    napi_throw_error(env, nullptr, (std::string("oneDNN: ") + e.what()).c_str());
  }
  return nullptr;
}

napi_value version(napi_env env, napi_callback_info) {
  const dnnl_version_t *v = dnnl_version();
  std::string s = std::to_string(v->major) + "." + std::to_string(v->minor) + "." + std::to_string(v->patch);
  napi_value out;
  napi_create_string_utf8(env, s.c_str(), s.size(), &out);
  return out;
}

/**
 * newFilterKey(): a key no other caller in this process has had. The addon hands them out (not
 * the caller) because the cache is per process while callers may be several: two copies of
 * @png/core, or jest's module registry per test file, would count from 0 each and share keys.
 */
napi_value new_filter_key(napi_env env, napi_callback_info) {
  static int64_t next = 0;
  napi_value out;
  napi_create_int64(env, next++, &out);
  return out;
}

/** releaseFilter(key): drops the reordered copies kept under `key`. */
napi_value release_filter(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  int64_t key = -1;
  if (argc < 1 || napi_get_value_int64(env, argv[0], &key) != napi_ok) {
    napi_throw_type_error(env, nullptr, "releaseFilter(key): key must be an integer");
    return nullptr;
  }
  for (char use : {'f', 'd'}) filter_cache().erase(std::to_string(key) + use);
  return nullptr;
}

/** filterCache({limitBytes?}): sets the budget when given (0 keeps nothing); returns {entries, bytes, limitBytes}. */
napi_value filter_cache_info(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr);
  FilterCache &cache = filter_cache();
  bool has = false;
  if (argc >= 1) napi_has_named_property(env, argv[0], "limitBytes", &has);
  if (has) {
    napi_value v;
    double limit = -1;
    napi_get_named_property(env, argv[0], "limitBytes", &v);
    if (napi_get_value_double(env, v, &limit) != napi_ok || !(limit >= 0)) {
      napi_throw_type_error(env, nullptr, "filterCache({limitBytes}): limitBytes must be a number ≥ 0");
      return nullptr;
    }
    cache.limit = static_cast<size_t>(limit);
    cache.fit(0);
  }
  napi_value out, entries, bytes, limit;
  napi_create_object(env, &out);
  napi_create_double(env, static_cast<double>(cache.entries.size()), &entries);
  napi_create_double(env, static_cast<double>(cache.bytes), &bytes);
  napi_create_double(env, static_cast<double>(cache.limit), &limit);
  napi_set_named_property(env, out, "entries", entries);
  napi_set_named_property(env, out, "bytes", bytes);
  napi_set_named_property(env, out, "limitBytes", limit);
  return out;
}

napi_value threads(napi_env env, napi_callback_info) {
  napi_value out;
  napi_create_int32(env, omp_get_max_threads(), &out);  // oneDNN 2.6 as Debian builds it runs on OpenMP
  return out;
}

}  // namespace

NAPI_MODULE_INIT() {
  napi_property_descriptor props[] = {
      {"conv2d", nullptr, entry<conv2d>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"conv2dBackpropInput", nullptr, entry<conv2d_backprop_input>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"conv2dBackpropFilter", nullptr, entry<conv2d_backprop_filter>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"matmul", nullptr, entry<matmul>, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"version", nullptr, version, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"threads", nullptr, threads, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"newFilterKey", nullptr, new_filter_key, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"releaseFilter", nullptr, release_filter, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
      {"filterCache", nullptr, filter_cache_info, nullptr, nullptr, nullptr, napi_enumerable, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  return exports;
}
