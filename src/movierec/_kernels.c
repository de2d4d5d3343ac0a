/*
 * movierec._kernels: the two inner loops of per-request scoring, compiled.
 *
 * topk_rows      the k best columns of each row of a float32 matrix, best first, ties to the
 *                smaller column (candidates by block maxima for k >= 32, else by one pass
 *                behind a rising threshold; one selection and one sort of the k kept).
 * csr_product    dense rows of x @ m for two CSR matrices: every stored x[q, j] adds
 *                x[q, j]·m[j, :] to row q of a zeroed output, in storage order (SciPy's
 *                order and precision).
 * count_le       per (item, time) query, the log position after the item's last event at or
 *                before that time: a binary search inside the item's own segment of a log
 *                sorted by (item, time) (a few events, not the whole log).
 *
 * item_features, cross_features, source_features: the ranker's per-pair features (in
 *                _features.c).
 * spare_wake, spare_rest, trees_split: the spare core (in _spare.c); topk_rows(split=True)
 *                gives it half of the rows.
 *
 * All take their arrays through the buffer protocol (NumPy arrays, checked by the Python
 * wrappers in movierec.types and movierec.models.topk) and release the GIL while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernels.h"

/* ------------------------------------------------------------------ top-k */

typedef struct {
    float v;
    int64_t i;
} entry;

/* a is worse than b: lower value, or the same value at a larger column */
static inline int worse(entry a, entry b) { return a.v < b.v || (a.v == b.v && a.i > b.i); }

/* NaN and +inf count as -inf (a score that is not a number or not finite is no score) */
static inline float clean(float v) { return v < INFINITY ? v : -INFINITY; }

static inline void swap_entries(entry *a, entry *b) {
    entry t = *a;
    *a = *b;
    *b = t;
}

/* Reorder e[0..n) so that e[0..k) are its k best, the k-th of them at e[k - 1]: quickselect
 * on the total order of worse(), pivot the median of three. */
static void select_best(entry *e, Py_ssize_t n, Py_ssize_t k) {
    Py_ssize_t lo = 0, hi = n - 1;
    while (hi > lo) {
        Py_ssize_t mid = lo + (hi - lo) / 2;
        if (worse(e[lo], e[mid])) swap_entries(&e[lo], &e[mid]);
        if (worse(e[lo], e[hi])) swap_entries(&e[lo], &e[hi]);
        if (worse(e[mid], e[hi])) swap_entries(&e[mid], &e[hi]);
        entry pivot = e[mid]; /* e[lo] >= pivot >= e[hi] */
        Py_ssize_t i = lo, j = hi;
        while (i <= j) { /* better than the pivot to the left */
            while (worse(pivot, e[i])) i++;
            while (worse(e[j], pivot)) j--;
            if (i <= j) {
                swap_entries(&e[i], &e[j]);
                i++;
                j--;
            }
        }
        if (k - 1 <= j)
            hi = j;
        else if (k - 1 >= i)
            lo = i;
        else
            return;
    }
}

/* Best first: insertion into runs, merged bottom-up (n is at most a few hundred). */
static void sort_best_first(entry *e, entry *tmp, Py_ssize_t n) {
    const Py_ssize_t run = 16;
    for (Py_ssize_t s = 0; s < n; s += run) {
        Py_ssize_t end = s + run < n ? s + run : n;
        for (Py_ssize_t a = s + 1; a < end; a++) {
            entry x = e[a];
            Py_ssize_t b = a;
            while (b > s && worse(e[b - 1], x)) {
                e[b] = e[b - 1];
                b--;
            }
            e[b] = x;
        }
    }
    for (Py_ssize_t w = run; w < n; w *= 2) {
        for (Py_ssize_t s = 0; s < n; s += 2 * w) {
            Py_ssize_t mid = s + w < n ? s + w : n, end = s + 2 * w < n ? s + 2 * w : n;
            Py_ssize_t a = s, b = mid, o = s;
            while (a < mid && b < end) tmp[o++] = worse(e[a], e[b]) ? e[b++] : e[a++];
            while (a < mid) tmp[o++] = e[a++];
            while (b < end) tmp[o++] = e[b++];
        }
        for (Py_ssize_t s = 0; s < n; s++) e[s] = tmp[s];
    }
}

/* The k best columns of a row by a threshold, best first. Values are gathered into a buffer
 * of 4k entries; when it fills, the k best are kept and the k-th of them becomes a threshold
 * that later values must beat (strictly: a later column with an equal value is worse). A row
 * costs one predictable pass over its values plus a few selections of the buffer: the same
 * answer as a bounded heap, without the heap's unpredictable branches on every entering
 * value. The cheaper way for a small k. */
static Py_ssize_t best_by_threshold(const float *row, Py_ssize_t m, Py_ssize_t k, entry *buf) {
    const Py_ssize_t cap = 4 * k;
    Py_ssize_t n = 0;
    float thr = -INFINITY;
    int full = 0; /* a threshold is set: k values at least as good as it are kept */
    for (Py_ssize_t j = 0; j < m; j++) {
        float v = clean(row[j]);
        if (full && !(v > thr)) continue;
        buf[n].v = v;
        buf[n].i = j;
        if (++n == cap) {
            select_best(buf, n, k);
            n = k;
            thr = buf[k - 1].v; /* the k-th best: selection leaves it at k - 1 */
            full = 1;
        }
    }
    return n;
}

/* The k-th largest of a[0..n) (no NaN), reordering a: quickselect. */
static float kth_largest(float *a, Py_ssize_t n, Py_ssize_t k) {
    Py_ssize_t lo = 0, hi = n - 1, want = k - 1;
    while (hi > lo) {
        float pivot = a[lo + (hi - lo) / 2];
        Py_ssize_t i = lo, j = hi;
        while (i <= j) {
            while (a[i] > pivot) i++;
            while (a[j] < pivot) j--;
            if (i <= j) {
                float t = a[i];
                a[i] = a[j];
                a[j] = t;
                i++;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            break;
    }
    return a[want];
}

/* Largest value of row[a, e), NaN skipped (-inf if none), and whether +inf is among them:
 * eight independent lanes, which the compiler vectorises (the maximum is exact in any
 * order). */
static inline float block_max(const float *row, Py_ssize_t a, Py_ssize_t e, int *has_inf) {
    float lane[8];
    int inf[8];
    for (int l = 0; l < 8; l++) {
        lane[l] = -INFINITY;
        inf[l] = 0;
    }
    Py_ssize_t j = a;
    for (; j + 8 <= e; j += 8)
        for (int l = 0; l < 8; l++) {
            lane[l] = row[j + l] > lane[l] ? row[j + l] : lane[l];
            inf[l] |= row[j + l] == INFINITY;
        }
    float mx = -INFINITY;
    for (; j < e; j++) {
        mx = row[j] > mx ? row[j] : mx;
        *has_inf |= row[j] == INFINITY;
    }
    for (int l = 0; l < 8; l++) {
        mx = lane[l] > mx ? lane[l] : mx;
        *has_inf |= inf[l];
    }
    return mx;
}

/* The candidates for the k best of a row by block maxima, for a larger k. The row is cut
 * into at least 2k blocks; the k-th largest block maximum t is at most the row's k-th best
 * value (the k blocks whose maxima are >= t hold k distinct values >= t), so the k best are
 * among the values >= t. Only the blocks whose maximum is >= t are read again, their values
 * >= t kept without a branch; a few hundred values, instead of several selections of a
 * buffer that keeps filling while the threshold rises. -1 for a row with +inf (a maximum
 * that counts as -inf: best_by_threshold takes it). */
static Py_ssize_t best_by_blocks(const float *row, Py_ssize_t m, Py_ssize_t k, entry *buf,
                                 float *maxima) {
    Py_ssize_t size = m / (2 * k) > 1 ? m / (2 * k) : 1;
    Py_ssize_t nb = (m + size - 1) / size;
    float *work = maxima + nb;
    int has_inf = 0;
    for (Py_ssize_t b = 0; b < nb; b++) {
        Py_ssize_t a = b * size;
        work[b] = maxima[b] = block_max(row, a, a + size < m ? a + size : m, &has_inf);
    }
    if (has_inf) return -1;
    float t = kth_largest(work, nb, k);
    Py_ssize_t n = 0;
    for (Py_ssize_t b = 0; b < nb; b++) {
        if (!(maxima[b] >= t)) continue;
        Py_ssize_t a = b * size, e = a + size < m ? a + size : m;
        for (Py_ssize_t j = a; j < e; j++) {
            float v = clean(row[j]); /* NaN is -inf: kept only when t is -inf */
            buf[n].v = v;
            buf[n].i = j;
            n += v >= t;
        }
    }
    return n;
}

/* Rows with k at least this use best_by_blocks (measured: 2-4x faster at k = 150 over
 * 9,724 columns, slower at k = 10). */
#define BLOCKS_FROM_K 32

/* The k best columns of a row, best first: candidates by one of the two ways above, the k
 * best of them selected, then sorted. buf holds m + k entries, maxima 2m floats. */
static void topk_row(const float *row, Py_ssize_t m, Py_ssize_t k, entry *buf, float *maxima,
                     int64_t *out) {
    Py_ssize_t n = k >= BLOCKS_FROM_K && m >= 4 * k ? best_by_blocks(row, m, k, buf, maxima) : -1;
    if (n < 0) n = best_by_threshold(row, m, k, buf);
    if (n > k) {
        select_best(buf, n, k);
        n = k;
    }
    sort_best_first(buf, buf + n, n);
    for (Py_ssize_t a = 0; a < n; a++) out[a] = buf[a].i;
}

/* what rows of topk_rows need, with the scratch buffers of one thread */
typedef struct {
    const float *s;
    int64_t *o;
    Py_ssize_t m, k;
    entry *buf;
    float *maxima;
} topk_share;

static void topk_share_run(void *arg, Py_ssize_t a, Py_ssize_t b) {
    topk_share *t = arg;
    for (Py_ssize_t r = a; r < b; r++)
        topk_row(t->s + r * t->m, t->m, t->k, t->buf, t->maxima, t->o + r * t->k);
}

static PyObject *topk_rows(PyObject *self, PyObject *args) {
    Py_buffer scores, out;
    Py_ssize_t n, m, k;
    int split = 0;
    if (!PyArg_ParseTuple(args, "y*nnnw*|p", &scores, &n, &m, &k, &out, &split)) return NULL;
    PyObject *result = NULL;
    if (k < 1 || k > m || scores.len != (Py_ssize_t)(n * m * sizeof(float)) ||
        out.len != (Py_ssize_t)(n * k * sizeof(int64_t))) {
        PyErr_SetString(PyExc_ValueError, "topk_rows: buffer sizes do not match (n, m, k)");
        goto done;
    }
    /* candidates (4k, or up to the whole row) and k to merge in; block maxima and a copy */
    Py_ssize_t cap = m + k > 5 * k ? m + k : 5 * k, shares = split && n > 1 ? 2 : 1;
    entry *buf = malloc((size_t)(shares * cap) * sizeof(entry));
    float *maxima = malloc((size_t)(shares * 2 * m) * sizeof(float));
    if (buf == NULL || maxima == NULL) {
        free(buf);
        free(maxima);
        PyErr_NoMemory();
        goto done;
    }
    /* split: rows shared with the spare core, one at a time, when it spins (spare_loop) */
    topk_share here = {scores.buf, out.buf, m, k, buf, maxima};
    topk_share there = {scores.buf, out.buf, m, k, buf + cap, maxima + 2 * m};
    int posted = 0;
    Py_BEGIN_ALLOW_THREADS;
    if (shares == 2)
        posted = spare_loop(topk_share_run, &here, &there, n, 1);
    else
        topk_share_run(&here, 0, n);
    Py_END_ALLOW_THREADS;
    free(buf);
    free(maxima);
    result = PyBool_FromLong(posted);
done:
    {
        Py_buffer *parsed[] = {&scores, &out};
        release_buffers(parsed, 2);
    }
    return result;
}

/* ------------------------------------------------------------ CSR product */

/* One variant per index type (I) and value type (T) of x, m and the output: a row is summed
 * in T in storage order, as SciPy's sparse product does (so the two agree to the bit).
 * A float product that rounds to a subnormal (below FLT_MIN), or has a subnormal factor, is
 * a microcode assist (~5 ns, 40x a normal multiply): the recency weights 0.5^rank of old
 * events make whole rows of them. The products of a weight below 2^-64 are taken exactly in
 * double (24 x 24 bits) and rounded to float by round_product, which builds a subnormal
 * result's bits with integer arithmetic; each sum gets the same addends in the same order.
 * (Sums are adds, which take subnormals at full speed.)
 * skip_zero (the caller knows m holds no inf or NaN): a zero weight's products are +-0, and
 * adding +-0 changes no sum (a sum starts at +0 and is never -0 after), so its row of m is
 * not read: the old events of a long history have recency weight 0. */
static inline float round_product(double p) {
    double a = fabs(p);
    if (!(a < FLT_MIN)) return (float)p; /* normal (or 0 ... inf, NaN): the FPU rounds */
    /* a subnormal float is k * 2^-149; k = a * 2^149 rounded half to even (< 2^23 + 1) */
    double k = (a * 0x1p149 + 0x1p52) - 0x1p52;
    uint32_t bits = (uint32_t)k | (signbit(p) ? 0x80000000u : 0u);
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

#define TINY_F32(w) ((w) != 0 && fabsf(w) < 0x1p-64f)
#define TINY_F64(w) 0
#define CSR_PRODUCT(NAME, I, T, TINY)                                                        \
    static void NAME(Py_ssize_t n_q, Py_ssize_t n_out, const I *xp, const I *xi,             \
                     const T *xd, const I *mp, const I *mi, const T *md, T *out,             \
                     int skip_zero) {                                                        \
        for (Py_ssize_t q = 0; q < n_q; q++) {                                               \
            T *o = out + q * n_out;                                                          \
            for (I a = xp[q]; a < xp[q + 1]; a++) {                                          \
                const I j = xi[a];                                                           \
                const T w = xd[a];                                                           \
                if (skip_zero && w == 0) continue;                                           \
                if (TINY(w)) {                                                               \
                    const double wd = (double)w;                                             \
                    for (I b = mp[j]; b < mp[j + 1]; b++)                                \
                        o[mi[b]] += round_product(wd * md[b]);                               \
                } else {                                                                     \
                    for (I b = mp[j]; b < mp[j + 1]; b++) o[mi[b]] += w * md[b];             \
                }                                                                            \
            }                                                                                \
        }                                                                                    \
    }

CSR_PRODUCT(product_i32_f32, int32_t, float, TINY_F32)
CSR_PRODUCT(product_i32_f64, int32_t, double, TINY_F64)
CSR_PRODUCT(product_i64_f32, int64_t, float, TINY_F32)
CSR_PRODUCT(product_i64_f64, int64_t, double, TINY_F64)

static PyObject *csr_product(PyObject *self, PyObject *args) {
    Py_buffer xp, xi, xd, mp, mi, md, out;
    Py_ssize_t n_q, n_out;
    int wide, dbl, skip_zero;
    if (!PyArg_ParseTuple(args, "nny*y*y*y*y*y*w*ppp", &n_q, &n_out, &xp, &xi, &xd, &mp, &mi,
                          &md, &out, &wide, &dbl, &skip_zero))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t isz = wide ? 8 : 4, vsz = dbl ? 8 : 4;
    if (out.len != n_q * n_out * vsz || xp.len != (n_q + 1) * isz || xi.len % isz ||
        mp.len % isz || mi.len % isz || xd.len != xi.len / isz * vsz ||
        md.len != mi.len / isz * vsz) {
        PyErr_SetString(PyExc_ValueError, "csr_product: buffer sizes do not match");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    if (wide && dbl)
        product_i64_f64(n_q, n_out, xp.buf, xi.buf, xd.buf, mp.buf, mi.buf, md.buf, out.buf,
                        skip_zero);
    else if (wide)
        product_i64_f32(n_q, n_out, xp.buf, xi.buf, xd.buf, mp.buf, mi.buf, md.buf, out.buf,
                        skip_zero);
    else if (dbl)
        product_i32_f64(n_q, n_out, xp.buf, xi.buf, xd.buf, mp.buf, mi.buf, md.buf, out.buf,
                        skip_zero);
    else
        product_i32_f32(n_q, n_out, xp.buf, xi.buf, xd.buf, mp.buf, mi.buf, md.buf, out.buf,
                        skip_zero);
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    {
        Py_buffer *parsed[] = {&xp, &xi, &xd, &mp, &mi, &md, &out};
        release_buffers(parsed, 7);
    }
    return result;
}

/* ------------------------------------------------------------- count_le */

static PyObject *count_le(PyObject *self, PyObject *args) {
    Py_buffer st, tm, it, tq, out;
    if (!PyArg_ParseTuple(args, "y*y*y*y*w*", &st, &tm, &it, &tq, &out)) return NULL;
    PyObject *result = NULL;
    Py_ssize_t n_items = st.len / 8 - 1, n_log = tm.len / 8, n_q = it.len / 8;
    if (st.len % 8 || tm.len % 8 || it.len % 8 || n_items < 0 || tq.len != it.len ||
        out.len != it.len) {
        PyErr_SetString(PyExc_ValueError, "count_le: buffer sizes do not match");
        goto done;
    }
    const int64_t *start = st.buf, *times = tm.buf, *items = it.buf, *t = tq.buf;
    int64_t *pos = out.buf;
    int bad = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t q = 0; q < n_q && !bad; q++) {
        int64_t i = items[q];
        if (i < 0 || i >= n_items || start[i] > start[i + 1] || start[i + 1] > n_log) {
            bad = 1;
            break;
        }
        pos[q] = search_after(times, start[i], start[i + 1], clip_time(t[q]));
    }
    Py_END_ALLOW_THREADS;
    if (bad) {
        PyErr_SetString(PyExc_IndexError, "count_le: an item outside the log");
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    {
        Py_buffer *parsed[] = {&st, &tm, &it, &tq, &out};
        release_buffers(parsed, 5);
    }
    return result;
}

static PyMethodDef methods[] = {
    {"topk_rows", topk_rows, METH_VARARGS,
     "topk_rows(scores, n, m, k, out): k best columns per row, best first (ties: smaller)."},
    {"csr_product", csr_product, METH_VARARGS,
     "csr_product(n_q, n_out, xp, xi, xd, mp, mi, md, out, wide, dbl): out += x @ m."},
    {"count_le", count_le, METH_VARARGS,
     "count_le(item_start, times, items, t, out): log position after each item's events <= t."},
    {"item_features", item_features, METH_VARARGS,
     "item_features(...): the item features of (item, time) pairs into a feature matrix."},
    {"cross_features", cross_features, METH_VARARGS,
     "cross_features(...): genre, similarity and gap features of pairs into a matrix."},
    {"source_features", source_features, METH_VARARGS,
     "source_features(...): each source's score, rank and z of pairs into a matrix."},
    {"time_ranks", time_ranks, METH_VARARGS,
     "time_ranks(indptr, times, cols, out): recency rank of each event in its row."},
    {"merge_proposals", merge_proposals, METH_VARARGS,
     "merge_proposals(...): the candidate pool of the sources' proposals; returns its size."},
    {"spare_wake", spare_wake, METH_VARARGS,
     "spare_wake(us): the spare core spins for the next us microseconds (started if need be)."},
    {"spare_rest", spare_rest, METH_NOARGS, "spare_rest(): the spare core stops spinning."},
    {"trees_split", trees_split, METH_VARARGS,
     "trees_split(entry, data, out, n, nf): compiled trees' predictions, half on the spare core."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels",
                                    "Compiled inner loops of per-request scoring.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
