// The time loop of one layer of the BPTT kernels (rnnfuse.kernels.bptt_lstm, bptt_gru) in C++:
// per step one matrix product (at::addmm_ / at::mm_out, so the same BLAS as PyTorch; split by
// columns over the threads, see product) and one
// fused, vectorised elementwise pass over the rows for the gates and the state update.
//
// The data layout is the packed one of rnnfuse.kernels.layout: step t owns the flat rows
// [offsets[t], offsets[t] + rows[t]); its sequences are the first rows[t] of the sorted batch
// and rows[t] never grows with t, so the state before step t is the first rows[t] rows of
// step t - 1 (or of the initial state).  The Python modules hold the same equations as
// in-place PyTorch operations (the fallback) and document them.
#include <ATen/ATen.h>
#include <torch/csrc/utils/pybind.h>

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <tuple>
#include <type_traits>
#include <vector>

namespace {

using at::Tensor;
using at::vec::Vectorized;

// Rows handled per task of at::parallel_for: at least this many elements, so that small
// steps (most of them) run on the calling thread without a parallel region.
int64_t grain_rows(int64_t width) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(1, width)); }

// exp: in float32 ATen's inlined polynomial (20 ulp, several times faster than the 1-ulp
// SLEEF call; the kernels' results stay within float32 rounding of the reference loop's;
// it clamps its argument, so NaN is not kept: see sigmoid), in float64 the accurate one.
template <typename T>
inline Vectorized<T> fast_exp(Vectorized<T> x) {
  if constexpr (std::is_same_v<T, float>) {
    return x.exp_u20();
  } else {
    return x.exp();
  }
}

// σ(x), with PyTorch's σ at NaN and -inf: the float32 exp clamps its argument first, which
// would turn σ(NaN) into a number and σ(-inf) into a tiny one instead of 0 (whose product
// with an infinite input is then inf where PyTorch's 0 · inf is NaN)
template <typename T>
inline Vectorized<T> sigmoid(Vectorized<T> x) {
  const Vectorized<T> one(T(1));
  const Vectorized<T> s = one / (one + fast_exp(x.neg()));
  if constexpr (std::is_same_v<T, float>) {
    const Vectorized<T> minus_inf(-std::numeric_limits<T>::infinity());
    return Vectorized<T>::blendv(s, x, x.isnan()) & (x != minus_inf);  // != is true at NaN
  } else {
    return s;
  }
}

// tanh x = 2 σ(2x) - 1 in float32 (one exp); the accurate tanh in float64
template <typename T>
inline Vectorized<T> tanh(Vectorized<T> x) {
  if constexpr (std::is_same_v<T, float>) {
    const Vectorized<T> two(T(2)), one(T(1));
    return two * sigmoid(two * x) - one;
  } else {
    return x.tanh();
  }
}

template <typename T>
inline const T* ptr_or_null(const Tensor& t) {
  return t.defined() ? t.data_ptr<T>() : nullptr;
}

// Apply fn(j, count) over the columns [0, width) of one row, a vector at a time (the last
// chunk shorter).
template <typename T, typename Fn>
inline void columns(int64_t width, Fn fn) {
  constexpr int64_t n = Vectorized<T>::size();
  for (int64_t j = 0; j < width; j += n) fn(j, std::min<int64_t>(n, width - j));
}

template <typename T>
inline Vectorized<T> ld(const T* p, int64_t count) {
  return count == Vectorized<T>::size() ? Vectorized<T>::loadu(p) : Vectorized<T>::loadu(p, count);
}

template <typename T>
inline void st(Vectorized<T> v, T* p, int64_t count) {
  v.store(p, static_cast<int>(count));
}

// out (n, m) = a (n, k) @ b (k, m), or += when `accumulate`: one BLAS call per share of the
// output's columns, the shares on the intra-op threads (each with the caller's thread-local
// state: grad and inference mode).  BLAS runs a product of one step's size on a single thread
// (200 products of 64 x 256 x 1024 took 100 ms with two threads and 104 ms with one, AMD EPYC),
// where oneDNN's LSTM spreads every step over all threads.  Small products stay whole.
void product(const Tensor& out, const Tensor& a, const Tensor& b, bool accumulate) {
  constexpr int64_t kMinWork = int64_t(1) << 20, kMinColumns = 64;
  const int64_t n = out.size(0), m = out.size(1), k = a.size(1), threads = at::get_num_threads();
  auto run = [&](Tensor o, const Tensor& right) {
    if (accumulate) {
      o.addmm_(a, right);
    } else {
      at::mm_out(o, a, right);
    }
  };
  if (threads < 2 || at::in_parallel_region() || n * m * k < kMinWork || m < 2 * kMinColumns) {
    run(out, b);
    return;
  }
  const int64_t share = std::max<int64_t>(kMinColumns, (m + threads - 1) / threads);
  const at::ThreadLocalState state;
  at::parallel_for(0, m, share, [&](int64_t begin, int64_t end) {
    at::ThreadLocalStateGuard guard(state);
    run(out.narrow(1, begin, end - begin), b.narrow(1, begin, end - begin));
  });
}

struct Steps {
  std::vector<int64_t> offsets, rows;
  int64_t size() const { return static_cast<int64_t>(offsets.size()); }
  // the state before step t: rows[t] rows of step t - 1, or of the initial state
  Tensor previous(const Tensor& flat, const Tensor& initial, int64_t t) const {
    if (t == 0) return initial.narrow(0, 0, rows[0]);
    return flat.narrow(0, offsets[t - 1], rows[t]);
  }
};

// ---------------------------------------------------------------------------------- LSTM

// One step's elementwise part for `rows` rows: `act` (rows, 4H) holds the gate
// pre-activations and leaves holding (σi, σf, tanh g, σo); writes c, tanh(c), m = σo tanh(c).
template <typename T>
void lstm_cell_forward(int64_t rows, int64_t hidden, T* act, const T* bias, const T* c_prev, T* c, T* tanh_c,
                       T* m, const T* peep, std::optional<double> clip) {
  using V = Vectorized<T>;
  const bool has_clip = clip.has_value();
  const V hi(static_cast<T>(clip.value_or(0))), lo(static_cast<T>(-clip.value_or(0)));
  at::parallel_for(0, rows, grain_rows(4 * hidden), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* a = act + r * 4 * hidden;
      const T* cp = c_prev + r * hidden;
      T *cr = c + r * hidden, *tr = tanh_c + r * hidden, *mr = m + r * hidden;
      columns<T>(hidden, [&](int64_t j, int64_t k) {
        V ai = ld(a + j, k), af = ld(a + hidden + j, k), ag = ld(a + 2 * hidden + j, k);
        V ao = ld(a + 3 * hidden + j, k), cpv = ld(cp + j, k);
        if (bias) {
          ai = ai + ld(bias + j, k);
          af = af + ld(bias + hidden + j, k);
          ag = ag + ld(bias + 2 * hidden + j, k);
          ao = ao + ld(bias + 3 * hidden + j, k);
        }
        if (peep) {
          ai = ai + ld(peep + j, k) * cpv;
          af = af + ld(peep + hidden + j, k) * cpv;
        }
        V si = sigmoid(ai), sf = sigmoid(af), tg = tanh(ag);
        V cv = sf * cpv + si * tg;
        if (has_clip) cv = at::vec::minimum(at::vec::maximum(cv, lo), hi);
        if (peep) ao = ao + ld(peep + 2 * hidden + j, k) * cv;
        V so = sigmoid(ao), tc = tanh(cv);
        st(si, a + j, k);
        st(sf, a + hidden + j, k);
        st(tg, a + 2 * hidden + j, k);
        st(so, a + 3 * hidden + j, k);
        st(cv, cr + j, k);
        st(tc, tr + j, k);
        st(so * tc, mr + j, k);
      });
    }
  });
}

// One step back for `rows` rows: `dm` is the gradient of m; `dc` holds the gradient of c from
// later steps and leaves holding that of c_prev; writes the gate pre-activation gradients.
// `dh_extra`, when given, is added to `dm` first (the output gradient of this step).
template <typename T>
void lstm_cell_backward(int64_t rows, int64_t hidden, const T* dm, const T* dm_extra, T* dc, const T* c,
                        const T* tanh_c, const T* c_prev, const T* act, T* d_gates, const T* peep,
                        std::optional<double> clip) {
  using V = Vectorized<T>;
  const bool has_clip = clip.has_value();
  const V bound(static_cast<T>(clip.value_or(0))), one(T(1)), zero(T(0));
  at::parallel_for(0, rows, grain_rows(4 * hidden), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      const T* a = act + r * 4 * hidden;
      T* d = d_gates + r * 4 * hidden;
      const T *dmr = dm + r * hidden, *cr = c + r * hidden, *tr = tanh_c + r * hidden, *cp = c_prev + r * hidden;
      const T* dxr = dm_extra ? dm_extra + r * hidden : nullptr;
      T* dcr = dc + r * hidden;
      columns<T>(hidden, [&](int64_t j, int64_t k) {
        V si = ld(a + j, k), sf = ld(a + hidden + j, k), tg = ld(a + 2 * hidden + j, k);
        V so = ld(a + 3 * hidden + j, k), tc = ld(tr + j, k), g = ld(dmr + j, k);
        if (dxr) g = g + ld(dxr + j, k);
        V u = g * so, v = u * tc;
        V d_o = v * (one - so);
        V dcv = ld(dcr + j, k) + u * (one - tc * tc);
        if (peep) dcv = dcv + d_o * ld(peep + 2 * hidden + j, k);
        if (has_clip) dcv = V::blendv(zero, dcv, ld(cr + j, k).abs() < bound);
        V cpv = ld(cp + j, k);
        V d_i = dcv * tg * si * (one - si);
        V d_f = dcv * cpv * sf * (one - sf);
        V d_g = dcv * si * (one - tg * tg);
        V carry = dcv * sf;
        if (peep) carry = carry + d_i * ld(peep + j, k) + d_f * ld(peep + hidden + j, k);
        st(d_i, d + j, k);
        st(d_f, d + hidden + j, k);
        st(d_g, d + 2 * hidden + j, k);
        st(d_o, d + 3 * hidden + j, k);
        st(carry, dcr + j, k);
      });
    }
  });
}

// Forward of the recurrence.  `acts` (N, 4H) holds the projected inputs (plus `bias` (4H), when
// given, which is then added here) and leaves holding the gate activations.  Returns cs (N, H), tanh_cs (N, H), ms (N, H) and hs (N + 1, P) with a zero
// last row; without a projection ms is hs[:-1].
std::vector<Tensor> lstm_forward(Tensor acts, const std::optional<Tensor>& bias_in, const Tensor& c0_in, const Tensor& h0_in, const Tensor& w_hh_in,
                                 const std::optional<Tensor>& peep_in, const std::optional<Tensor>& w_hr_in,
                                 std::optional<double> cell_clip, std::optional<double> proj_clip,
                                 std::vector<int64_t> offsets, std::vector<int64_t> rows) {
  TORCH_CHECK(acts.is_contiguous(), "lstm_forward: acts must be contiguous");
  const Steps steps{std::move(offsets), std::move(rows)};
  Tensor c0 = c0_in.contiguous(), h0 = h0_in.contiguous(), w_hh_t = w_hh_in.t();
  Tensor peep = peep_in.has_value() ? peep_in->contiguous() : Tensor();
  Tensor bias = bias_in.has_value() ? bias_in->contiguous() : Tensor();
  Tensor w_hr_t = w_hr_in.has_value() ? w_hr_in->t() : Tensor();
  const int64_t total = acts.size(0), hidden = c0.size(1), out = h0.size(1);
  Tensor cs = at::empty({total, hidden}, acts.options()), tanh_cs = at::empty_like(cs);
  Tensor hs = at::empty({total + 1, out}, acts.options());
  hs[total].zero_();
  Tensor ms = w_hr_t.defined() ? at::empty_like(cs) : hs.narrow(0, 0, total);
  for (int64_t t = 0; t < steps.size(); ++t) {
    const int64_t off = steps.offsets[t], n = steps.rows[t];
    Tensor act = acts.narrow(0, off, n);
    product(act, steps.previous(hs, h0, t), w_hh_t, true);
    Tensor c_prev = steps.previous(cs, c0, t);
    AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lstm_forward", [&] {
      lstm_cell_forward<scalar_t>(n, hidden, act.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(bias),
                                  c_prev.data_ptr<scalar_t>(),
                                  cs.data_ptr<scalar_t>() + off * hidden, tanh_cs.data_ptr<scalar_t>() + off * hidden,
                                  ms.data_ptr<scalar_t>() + off * hidden,
                                  ptr_or_null<scalar_t>(peep), cell_clip);
    });
    if (w_hr_t.defined()) {
      Tensor h = hs.narrow(0, off, n);
      product(h, ms.narrow(0, off, n), w_hr_t, false);
      if (proj_clip.has_value()) h.clamp_(-*proj_clip, *proj_clip);
    }
  }
  return {cs, tanh_cs, ms, hs};
}

// Adds this step's terms of the peephole gradients to d_peep (3, H): d_i c_prev, d_f c_prev, d_o c.
template <typename T>
void peephole_grads(int64_t rows, int64_t hidden, const T* d_gates, const T* c_prev, const T* c, T* d_peep) {
  using V = Vectorized<T>;
  columns<T>(hidden, [&](int64_t j, int64_t k) {
    V si = ld(d_peep + j, k), sf = ld(d_peep + hidden + j, k), so = ld(d_peep + 2 * hidden + j, k);
    for (int64_t r = 0; r < rows; ++r) {
      const T* d = d_gates + r * 4 * hidden;
      V cpv = ld(c_prev + r * hidden + j, k);
      si = si + ld(d + j, k) * cpv;
      sf = sf + ld(d + hidden + j, k) * cpv;
      so = so + ld(d + 3 * hidden + j, k) * ld(c + r * hidden + j, k);
    }
    st(si, d_peep + j, k);
    st(sf, d_peep + hidden + j, k);
    st(so, d_peep + 2 * hidden + j, k);
  });
}

// Backward through time.  Returns the gradients of the gate pre-activations (N, 4H), of c0,
// of h0, (with a projection) of every output through its clip, and (with peepholes) of the
// peepholes (3, H); undefined tensors where there is none.
std::vector<Tensor> lstm_backward(const Tensor& acts, const Tensor& cs, const Tensor& tanh_cs, const Tensor& hs,
                                  const Tensor& c0_in, const Tensor& g_hs_in, const Tensor& g_c, const Tensor& g_h,
                                  const Tensor& w_hh_in, const std::optional<Tensor>& peep_in,
                                  const std::optional<Tensor>& w_hr_in, std::optional<double> cell_clip,
                                  std::optional<double> proj_clip, std::vector<int64_t> offsets,
                                  std::vector<int64_t> rows) {
  const Steps steps{std::move(offsets), std::move(rows)};
  Tensor c0 = c0_in.contiguous(), g_hs = g_hs_in.contiguous(), w_hh = w_hh_in.contiguous();
  Tensor peep = peep_in.has_value() ? peep_in->contiguous() : Tensor();
  Tensor w_hr = w_hr_in.has_value() ? w_hr_in->contiguous() : Tensor();
  const int64_t total = acts.size(0), hidden = cs.size(1);
  Tensor d_gates = at::empty_like(acts);
  Tensor dc = g_c.contiguous().clone(), dh = g_h.contiguous().clone();
  Tensor d_hs = w_hr.defined() ? at::empty({total, dh.size(1)}, dh.options()) : Tensor();
  Tensor dm = w_hr.defined() ? at::empty({dh.size(0), hidden}, dh.options()) : Tensor();
  Tensor d_peep = peep.defined() ? at::zeros_like(peep) : Tensor();
  for (int64_t t = steps.size() - 1; t >= 0; --t) {
    const int64_t off = steps.offsets[t], n = steps.rows[t];
    Tensor dh_t = dh.narrow(0, 0, n);
    Tensor dm_t = dh_t;  // the gradient of m (without a projection: of the output)
    bool add_output_grad = true;
    if (w_hr.defined()) {
      Tensor d_out = d_hs.narrow(0, off, n);
      at::add_out(d_out, dh_t, g_hs.narrow(0, off, n));
      if (proj_clip.has_value()) d_out.mul_(hs.narrow(0, off, n).abs() < *proj_clip);
      dm_t = dm.narrow(0, 0, n);
      product(dm_t, d_out, w_hr, false);
      add_output_grad = false;
    }
    Tensor c_prev = steps.previous(cs, c0, t);
    AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "lstm_backward", [&] {
      const int64_t at_row = off * hidden;
      lstm_cell_backward<scalar_t>(
          n, hidden, dm_t.data_ptr<scalar_t>(), add_output_grad ? g_hs.data_ptr<scalar_t>() + off * dh.size(1) : nullptr,
          dc.data_ptr<scalar_t>(), cs.data_ptr<scalar_t>() + at_row, tanh_cs.data_ptr<scalar_t>() + at_row,
          c_prev.data_ptr<scalar_t>(), acts.data_ptr<scalar_t>() + 4 * at_row, d_gates.data_ptr<scalar_t>() + 4 * at_row,
          ptr_or_null<scalar_t>(peep), cell_clip);
      if (peep.defined())
        peephole_grads<scalar_t>(n, hidden, d_gates.data_ptr<scalar_t>() + 4 * at_row, c_prev.data_ptr<scalar_t>(),
                                 cs.data_ptr<scalar_t>() + at_row, d_peep.data_ptr<scalar_t>());
    });
    product(dh_t, d_gates.narrow(0, off, n), w_hh, false);
  }
  return {d_gates, dc, dh, d_hs, d_peep};
}

// ----------------------------------------------------------------------------------- GRU

// After the r, z product: (+ bias,) σ on r and z in place, r·h_prev into rh.
template <typename T>
void gru_gates(int64_t rows, int64_t hidden, T* act, const T* bias, const T* h_prev, T* rh) {
  using V = Vectorized<T>;
  at::parallel_for(0, rows, grain_rows(3 * hidden), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* a = act + r * 3 * hidden;
      const T* hp = h_prev + r * hidden;
      columns<T>(hidden, [&](int64_t j, int64_t k) {
        V ar = ld(a + j, k), az = ld(a + hidden + j, k);
        if (bias) {
          ar = ar + ld(bias + j, k);
          az = az + ld(bias + hidden + j, k);
        }
        V sr = sigmoid(ar);
        st(sr, a + j, k);
        st(sigmoid(az), a + hidden + j, k);
        st(sr * ld(hp + j, k), rh + r * hidden + j, k);
      });
    }
  });
}

// After the candidate product: n = tanh(· (+ bias)) in place, h = n + z (h_prev - n).
template <typename T>
void gru_update(int64_t rows, int64_t hidden, T* act, const T* bias, const T* h_prev, T* h) {
  using V = Vectorized<T>;
  at::parallel_for(0, rows, grain_rows(3 * hidden), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      T* a = act + r * 3 * hidden;
      columns<T>(hidden, [&](int64_t j, int64_t k) {
        V an = ld(a + 2 * hidden + j, k);
        if (bias) an = an + ld(bias + 2 * hidden + j, k);
        V nv = tanh(an), z = ld(a + hidden + j, k);
        st(nv, a + 2 * hidden + j, k);
        st(nv + z * (ld(h_prev + r * hidden + j, k) - nv), h + r * hidden + j, k);
      });
    }
  });
}

// Returns rhs (N, H) = r·h_prev and hs (N + 1, H) with a zero last row; `acts` (N, 3H) holds
// the projected inputs (plus `bias` (3H), when given, added here) and leaves holding (σr, σz, n).
std::vector<Tensor> gru_forward(Tensor acts, const std::optional<Tensor>& bias_in, const Tensor& h0_in, const Tensor& w_hh, std::vector<int64_t> offsets,
                                std::vector<int64_t> rows) {
  TORCH_CHECK(acts.is_contiguous(), "gru_forward: acts must be contiguous");
  const Steps steps{std::move(offsets), std::move(rows)};
  Tensor h0 = h0_in.contiguous();
  Tensor bias = bias_in.has_value() ? bias_in->contiguous() : Tensor();
  const int64_t total = acts.size(0), hidden = h0.size(1);
  Tensor w_rz_t = w_hh.narrow(0, 0, 2 * hidden).t(), w_n_t = w_hh.narrow(0, 2 * hidden, hidden).t();
  Tensor rhs = at::empty({total, hidden}, acts.options());
  Tensor hs = at::empty({total + 1, hidden}, acts.options());
  hs[total].zero_();
  for (int64_t t = 0; t < steps.size(); ++t) {
    const int64_t off = steps.offsets[t], n = steps.rows[t];
    Tensor act = acts.narrow(0, off, n), h_prev = steps.previous(hs, h0, t);
    product(act.narrow(1, 0, 2 * hidden), h_prev, w_rz_t, true);
    AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "gru_gates", [&] {
      gru_gates<scalar_t>(n, hidden, act.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(bias), h_prev.data_ptr<scalar_t>(),
                          rhs.data_ptr<scalar_t>() + off * hidden);
    });
    product(act.narrow(1, 2 * hidden, hidden), rhs.narrow(0, off, n), w_n_t, true);
    AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "gru_update", [&] {
      gru_update<scalar_t>(n, hidden, act.data_ptr<scalar_t>(), ptr_or_null<scalar_t>(bias), h_prev.data_ptr<scalar_t>(),
                           hs.data_ptr<scalar_t>() + off * hidden);
    });
  }
  return {rhs, hs};
}

// Backward through time; returns the gradients of the gate pre-activations (N, 3H) (n's
// taken inside the tanh) and of h0.
std::vector<Tensor> gru_backward(const Tensor& acts, const Tensor& hs, const Tensor& h0_in, const Tensor& g_hs_in,
                                 const Tensor& g_h, const Tensor& w_hh_in, std::vector<int64_t> offsets,
                                 std::vector<int64_t> rows) {
  const Steps steps{std::move(offsets), std::move(rows)};
  Tensor h0 = h0_in.contiguous(), g_hs = g_hs_in.contiguous(), w_hh = w_hh_in.contiguous();
  const int64_t hidden = h0.size(1);
  Tensor w_rz = w_hh.narrow(0, 0, 2 * hidden), w_n = w_hh.narrow(0, 2 * hidden, hidden);
  Tensor d_gates = at::empty_like(acts), dh = g_h.contiguous().clone();
  Tensor d_rh = at::empty({dh.size(0), hidden}, dh.options());
  for (int64_t t = steps.size() - 1; t >= 0; --t) {
    const int64_t off = steps.offsets[t], n = steps.rows[t];
    Tensor h_prev = steps.previous(hs, h0, t), d_act = d_gates.narrow(0, off, n), d_rh_t = d_rh.narrow(0, 0, n);
    AT_DISPATCH_FLOATING_TYPES(acts.scalar_type(), "gru_backward", [&] {
      using V = Vectorized<scalar_t>;
      const scalar_t *a0 = acts.data_ptr<scalar_t>() + off * 3 * hidden, *hp = h_prev.data_ptr<scalar_t>();
      const scalar_t* go = g_hs.data_ptr<scalar_t>() + off * hidden;
      scalar_t *d0 = d_act.data_ptr<scalar_t>(), *dhp = dh.data_ptr<scalar_t>();
      const V one(scalar_t(1));
      at::parallel_for(0, n, grain_rows(3 * hidden), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const scalar_t* a = a0 + r * 3 * hidden;
          scalar_t* d = d0 + r * 3 * hidden;
          columns<scalar_t>(hidden, [&](int64_t j, int64_t k) {
            V g = ld(dhp + r * hidden + j, k) + ld(go + r * hidden + j, k);
            V z = ld(a + hidden + j, k), nv = ld(a + 2 * hidden + j, k);
            st(g, dhp + r * hidden + j, k);
            st(g * (one - z) * (one - nv * nv), d + 2 * hidden + j, k);
            st(g * (ld(hp + r * hidden + j, k) - nv) * z * (one - z), d + hidden + j, k);
          });
        }
      });
      product(d_rh_t, d_act.narrow(1, 2 * hidden, hidden), w_n, false);
      const scalar_t* drh = d_rh_t.data_ptr<scalar_t>();
      at::parallel_for(0, n, grain_rows(3 * hidden), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const scalar_t* a = a0 + r * 3 * hidden;
          scalar_t* d = d0 + r * 3 * hidden;
          columns<scalar_t>(hidden, [&](int64_t j, int64_t k) {
            V sr = ld(a + j, k), drv = ld(drh + r * hidden + j, k);
            st(drv * ld(hp + r * hidden + j, k) * sr * (one - sr), d + j, k);
            V g = ld(dhp + r * hidden + j, k);
            st(g * ld(a + hidden + j, k) + drv * sr, dhp + r * hidden + j, k);
          });
        }
      });
    });
    product(dh.narrow(0, 0, n), d_act.narrow(1, 0, 2 * hidden), w_rz, true);
  }
  return {d_gates, dh};
}

// One layer of padded_lstm_stack: a fused call per start in `starts`, the first over every
// sequence, call k >= 1 over the sequences rows[k - 1] (its state: the rows carry[k - 1] of
// the call before).  Returns the time-major outputs (zero where a call does not run a
// sequence) and every sequence's final c (held past its length: the one of the call it ends in).
std::tuple<Tensor, Tensor> padded_lstm_layer(const Tensor& inputs, const std::vector<Tensor>& w, const Tensor& h0,
                                             const Tensor& c0, const std::vector<int64_t>& starts,
                                             const std::vector<Tensor>& rows, const std::vector<Tensor>& carry) {
  const int64_t steps = inputs.size(0), batch = inputs.size(1);
  const int64_t first_stop = starts.size() > 1 ? starts[1] : steps;
  auto [out, h, c] = at::lstm(inputs.narrow(0, 0, first_stop), {h0.unsqueeze(0), c0.unsqueeze(0)}, w, true, 1, 0.0,
                              false, false, false);
  if (starts.size() == 1) {
    return {out, c.select(0, 0)};
  }
  std::vector<Tensor> outs{out};
  Tensor cells = c.select(0, 0);
  for (size_t k = 1; k < starts.size(); ++k) {
    const int64_t start = starts[k], stop = k + 1 < starts.size() ? starts[k + 1] : steps;
    const Tensor& alive = rows[k - 1];
    auto [part, h_next, c_next] = at::lstm(inputs.narrow(0, start, stop - start).index_select(1, alive),
                                           {h.index_select(1, carry[k - 1]), c.index_select(1, carry[k - 1])}, w,
                                           true, 1, 0.0, false, false, false);
    outs.push_back(at::zeros({stop - start, batch, part.size(2)}, part.options()).index_copy_(1, alive, part));
    cells = cells.index_copy(0, alive, c_next.select(0, 0));
    h = h_next;
    c = c_next;
  }
  return {at::cat(outs), cells};
}

// A stack of LSTM layers over a small padded ragged batch, for inference: per layer the input
// with the indicator column (rnnfuse.kernels.padded), its fused calls (at::lstm: oneDNN on
// CPU), and each sequence's final h read at its last step; the layers chain time-major.  The
// same operations as rnnfuse.kernels.padded_stack._run_python, which documents them (empty h0
// and c0: zero initial states).
std::tuple<Tensor, std::vector<Tensor>, std::vector<Tensor>> padded_lstm_stack(
    const Tensor& x, const Tensor& outside, const Tensor& padded_rows, const Tensor& last_rows,
    const std::optional<Tensor>& empty, const std::vector<int64_t>& starts, const std::vector<Tensor>& rows,
    const std::vector<Tensor>& carry, const std::vector<std::vector<Tensor>>& weights, std::vector<Tensor> h0,
    std::vector<Tensor> c0) {
  const int64_t steps = outside.size(0), batch = x.size(0), total = x.size(1);
  if (h0.empty()) {
    for (const auto& w : weights) {
      h0.push_back(at::zeros({batch, w[1].size(1)}, x.options()));
    }
    c0 = h0;
  }
  const Tensor indicator = outside.to(x.scalar_type());
  Tensor layer_in = x.narrow(1, 0, steps).transpose(0, 1);
  std::vector<Tensor> cells, last;
  for (size_t k = 0; k < weights.size(); ++k) {
    Tensor inputs = at::cat({layer_in, indicator}, 2);
    if (k == 0) {  // whatever the caller's padding holds must not reach a product
      const int64_t features = inputs.size(2);
      inputs.view({steps * batch, features}).narrow(1, 0, features - 1).index_fill_(0, padded_rows, 0.0);
    }
    auto [out, c] = padded_lstm_layer(inputs, weights[k], h0[k], c0[k], starts, rows, carry);
    Tensor final_h = out.view({steps * batch, out.size(2)}).index_select(0, last_rows);
    last.push_back(empty.has_value() ? at::where(*empty, h0[k], final_h) : final_h);
    cells.push_back(c);
    layer_in = out;
  }
  if (steps < total) {
    layer_in = at::constant_pad_nd(layer_in, {0, 0, 0, 0, 0, total - steps});
  }
  return {layer_in.transpose(0, 1), cells, last};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("lstm_forward", &lstm_forward, "LSTM BPTT kernel: the forward recurrence");
  m.def("lstm_backward", &lstm_backward, "LSTM BPTT kernel: backward through time");
  m.def("gru_forward", &gru_forward, "reset-before GRU BPTT kernel: the forward recurrence");
  m.def("gru_backward", &gru_backward, "reset-before GRU BPTT kernel: backward through time");
  m.def("padded_lstm_stack", &padded_lstm_stack, "LSTM layers over a padded ragged batch, inference");
}
