/*
 * movierec._kernels: the two inner loops of per-request scoring, compiled.
 *
 * topk_rows      the k best columns of each row of a float32 matrix, best first, ties to the
 *                smaller column (one bounded heap per row: m + r·log k steps, r the values that
 *                enter the heap).
 * csr_product    dense rows of x @ m for two CSR matrices: every stored x[q, j] adds
 *                x[q, j]·m[j, :] to row q of a zeroed output, in storage order (SciPy's
 *                order and precision).
 * count_le       per (item, time) query, the log position after the item's last event at or
 *                before that time: a binary search inside the item's own segment of a log
 *                sorted by (item, time) (a few events, not the whole log).
 *
 * All take their arrays through the buffer protocol (NumPy arrays, checked by the Python
 * wrappers in movierec.types and movierec.models.topk) and release the GIL while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* ------------------------------------------------------------------ top-k */

typedef struct {
    float v;
    int64_t i;
} entry;

/* a is worse than b: lower value, or the same value at a larger column */
static inline int worse(entry a, entry b) { return a.v < b.v || (a.v == b.v && a.i > b.i); }

static void sift_down(entry *h, Py_ssize_t n, Py_ssize_t p) {
    for (;;) {
        Py_ssize_t l = 2 * p + 1, r = l + 1, w = p;
        if (l < n && worse(h[l], h[w])) w = l;
        if (r < n && worse(h[r], h[w])) w = r;
        if (w == p) return;
        entry t = h[p];
        h[p] = h[w];
        h[w] = t;
        p = w;
    }
}

static inline float clean(float v) { return isnan(v) ? -INFINITY : v; }

static void topk_row(const float *row, Py_ssize_t m, Py_ssize_t k, entry *h, int64_t *out) {
    for (Py_ssize_t j = 0; j < k; j++) {
        h[j].v = clean(row[j]);
        h[j].i = j;
    }
    for (Py_ssize_t p = k / 2 - 1; p >= 0; p--) sift_down(h, k, p);
    for (Py_ssize_t j = k; j < m; j++) {
        float v = clean(row[j]);
        if (v > h[0].v) { /* an equal value at a larger column is worse: never enters */
            h[0].v = v;
            h[0].i = j;
            sift_down(h, k, 0);
        }
    }
    /* pop the worst to the back: best first */
    for (Py_ssize_t n = k; n > 0; n--) {
        out[n - 1] = h[0].i;
        h[0] = h[n - 1];
        sift_down(h, n - 1, 0);
    }
}

static PyObject *topk_rows(PyObject *self, PyObject *args) {
    Py_buffer scores, out;
    Py_ssize_t n, m, k;
    if (!PyArg_ParseTuple(args, "y*nnnw*", &scores, &n, &m, &k, &out)) return NULL;
    PyObject *result = NULL;
    if (k < 1 || k > m || scores.len != (Py_ssize_t)(n * m * sizeof(float)) ||
        out.len != (Py_ssize_t)(n * k * sizeof(int64_t))) {
        PyErr_SetString(PyExc_ValueError, "topk_rows: buffer sizes do not match (n, m, k)");
        goto done;
    }
    entry *heap = malloc((size_t)k * sizeof(entry));
    if (heap == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const float *s = scores.buf;
    int64_t *o = out.buf;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t r = 0; r < n; r++) topk_row(s + r * m, m, k, heap, o + r * k);
    Py_END_ALLOW_THREADS;
    free(heap);
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&scores);
    PyBuffer_Release(&out);
    return result;
}

/* ------------------------------------------------------------ CSR product */

/* One variant per index type (I) and value type (T) of x, m and the output: a row is summed
 * in T in storage order, as SciPy's sparse product does (so the two agree to the bit). */
#define CSR_PRODUCT(NAME, I, T)                                                              \
    static void NAME(Py_ssize_t n_q, Py_ssize_t n_out, const I *xp, const I *xi,             \
                     const T *xd, const I *mp, const I *mi, const T *md, T *out) {           \
        for (Py_ssize_t q = 0; q < n_q; q++) {                                               \
            T *o = out + q * n_out;                                                          \
            for (I a = xp[q]; a < xp[q + 1]; a++) {                                          \
                const I j = xi[a];                                                           \
                const T w = xd[a];                                                           \
                for (I b = mp[j]; b < mp[j + 1]; b++) o[mi[b]] += w * md[b];                 \
            }                                                                                \
        }                                                                                    \
    }

CSR_PRODUCT(product_i32_f32, int32_t, float)
CSR_PRODUCT(product_i32_f64, int32_t, double)
CSR_PRODUCT(product_i64_f32, int64_t, float)
CSR_PRODUCT(product_i64_f64, int64_t, double)

static PyObject *csr_product(PyObject *self, PyObject *args) {
    Py_buffer xp, xi, xd, mp, mi, md, out;
    Py_ssize_t n_q, n_out;
    int wide, dbl;
    if (!PyArg_ParseTuple(args, "nny*y*y*y*y*y*w*pp", &n_q, &n_out, &xp, &xi, &xd, &mp, &mi,
                          &md, &out, &wide, &dbl))
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
        product_i64_f64(n_q, n_out, xp.buf, xi.buf, xd.buf, mp.buf, mi.buf, md.buf, out.buf);
    else if (wide)
        product_i64_f32(n_q, n_out, xp.buf, xi.buf, xd.buf, mp.buf, mi.buf, md.buf, out.buf);
    else if (dbl)
        product_i32_f64(n_q, n_out, xp.buf, xi.buf, xd.buf, mp.buf, mi.buf, md.buf, out.buf);
    else
        product_i32_f32(n_q, n_out, xp.buf, xi.buf, xd.buf, mp.buf, mi.buf, md.buf, out.buf);
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&xp);
    PyBuffer_Release(&xi);
    PyBuffer_Release(&xd);
    PyBuffer_Release(&mp);
    PyBuffer_Release(&mi);
    PyBuffer_Release(&md);
    PyBuffer_Release(&out);
    return result;
}

/* ------------------------------------------------------------- count_le */

#define TIME_MAX ((int64_t)1 << 34) /* times are clipped to [0, 2^34) like the log's keys */

static inline int64_t clip_time(int64_t t) {
    return t < 0 ? 0 : (t >= TIME_MAX ? TIME_MAX - 1 : t);
}

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
        int64_t lo = start[i], hi = start[i + 1], key = clip_time(t[q]);
        while (lo < hi) { /* first position whose clipped time is > key */
            int64_t mid = lo + (hi - lo) / 2;
            if (clip_time(times[mid]) <= key)
                lo = mid + 1;
            else
                hi = mid;
        }
        pos[q] = lo;
    }
    Py_END_ALLOW_THREADS;
    if (bad) {
        PyErr_SetString(PyExc_IndexError, "count_le: an item outside the log");
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&st);
    PyBuffer_Release(&tm);
    PyBuffer_Release(&it);
    PyBuffer_Release(&tq);
    PyBuffer_Release(&out);
    return result;
}

static PyMethodDef methods[] = {
    {"topk_rows", topk_rows, METH_VARARGS,
     "topk_rows(scores, n, m, k, out): k best columns per row, best first (ties: smaller)."},
    {"csr_product", csr_product, METH_VARARGS,
     "csr_product(n_q, n_out, xp, xi, xd, mp, mi, md, out, wide, dbl): out += x @ m."},
    {"count_le", count_le, METH_VARARGS,
     "count_le(item_start, times, items, t, out): log position after each item's events <= t."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_kernels",
                                    "Compiled inner loops of per-request scoring.", -1,
                                    methods};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&module); }
