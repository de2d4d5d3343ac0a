/* Recency ranks of the events of history rows (latest = 0), for movierec._kernels.
 *
 * Per row, a stable merge sort of the row's entries by time, latest first, where NumPy's
 * lexsort put them (NaN times last, as NumPy sorts NaN), then either
 *   - the strict rank: the position in that order, ties of time by the larger column first
 *     (``lexsort((-indices, -times, rows))``), or
 *   - the dense rank: how many distinct times come before (equal times share a rank; NaN
 *     differs from every time, itself included, as ``!=`` says).
 * One pass per row instead of a lexsort of the whole batch and its index arithmetic: the
 * per-request rows hold a few hundred events. */
#include "_kernels.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const double *t;
    const int64_t *col; /* NULL: ties by storage position only (dense rank) */
} order_keys;

/* entry a (a storage position) goes before entry b */
static inline int goes_before(const order_keys *k, int64_t a, int64_t b) {
    double ta = k->t[a], tb = k->t[b];
    int na = isnan(ta), nb = isnan(tb);
    if (na != nb) return nb; /* NaN last */
    if (!na) {
        if (ta > tb) return 1; /* latest first */
        if (ta < tb) return 0;
    }
    if (k->col != NULL && k->col[a] != k->col[b]) return k->col[a] > k->col[b];
    return a < b; /* stable */
}

/* sort positions e[0, n) by goes_before (bottom-up merge sort; tmp holds n) */
static void sort_positions(const order_keys *k, int64_t *e, int64_t *tmp, int64_t n) {
    int64_t *src = e, *dst = tmp;
    for (int64_t width = 1; width < n; width *= 2) {
        for (int64_t lo = 0; lo < n; lo += 2 * width) {
            int64_t mid = lo + width < n ? lo + width : n;
            int64_t hi = lo + 2 * width < n ? lo + 2 * width : n;
            int64_t i = lo, j = mid, o = lo;
            while (i < mid && j < hi)
                dst[o++] = goes_before(k, src[j], src[i]) ? src[j++] : src[i++];
            while (i < mid) dst[o++] = src[i++];
            while (j < hi) dst[o++] = src[j++];
        }
        int64_t *swap = src;
        src = dst;
        dst = swap;
    }
    if (src != e) memcpy(e, src, (size_t)n * sizeof(int64_t));
}

static int ranks(int64_t n_rows, const int64_t *indptr, const double *t, const int64_t *col,
                 double *out) {
    int64_t longest = 0;
    for (int64_t r = 0; r < n_rows; r++) {
        int64_t len = indptr[r + 1] - indptr[r];
        if (len > longest) longest = len;
    }
    int64_t *e = malloc((size_t)(longest > 0 ? longest : 1) * 2 * sizeof(int64_t));
    if (e == NULL) return -1;
    int64_t *tmp = e + longest;
    order_keys k = {t, col};
    for (int64_t r = 0; r < n_rows; r++) {
        int64_t lo = indptr[r], n = indptr[r + 1] - lo;
        for (int64_t a = 0; a < n; a++) e[a] = lo + a;
        sort_positions(&k, e, tmp, n);
        int64_t dense = 0;
        for (int64_t a = 0; a < n; a++) {
            if (col == NULL && a > 0 && t[e[a]] != t[e[a - 1]]) dense++;
            out[e[a]] = col == NULL ? (double)dense : (double)a;
        }
    }
    free(e);
    return 0;
}

/* time_ranks(indptr int64, times float64, cols int64 or None, out float64) */
PyObject *time_ranks(PyObject *self, PyObject *args) {
    Py_buffer ip, tm, out, cl = {0};
    PyObject *cols;
    if (!PyArg_ParseTuple(args, "y*y*Ow*", &ip, &tm, &cols, &out)) return NULL;
    PyObject *result = NULL;
    int has_cols = cols != Py_None;
    if (has_cols && PyObject_GetBuffer(cols, &cl, PyBUF_SIMPLE) < 0) goto done;
    int64_t n_rows = ip.len / 8 - 1, nnz = tm.len / 8;
    if (ip.len % 8 || n_rows < 0 || tm.len % 8 || out.len != tm.len ||
        (has_cols && cl.len != tm.len)) {
        PyErr_SetString(PyExc_ValueError, "time_ranks: buffer sizes do not match");
        goto done;
    }
    const int64_t *indptr = ip.buf;
    for (int64_t r = 0; r < n_rows; r++) {
        if (indptr[r] < 0 || indptr[r + 1] < indptr[r] || indptr[r + 1] > nnz) {
            PyErr_SetString(PyExc_ValueError, "time_ranks: indptr is not a row partition");
            goto done;
        }
    }
    int failed;
    Py_BEGIN_ALLOW_THREADS;
    failed = ranks(n_rows, indptr, tm.buf, has_cols ? cl.buf : NULL, out.buf);
    Py_END_ALLOW_THREADS;
    if (failed) {
        PyErr_NoMemory();
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    PyBuffer_Release(&ip);
    PyBuffer_Release(&tm);
    PyBuffer_Release(&out);
    if (has_cols && cl.obj != NULL) PyBuffer_Release(&cl);
    return result;
}
