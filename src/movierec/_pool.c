/* The merged candidate pool of a batch of queries, for movierec._kernels.
 *
 * Each source proposes up to kk items per query (its top-k, -1 for none). The pool of a
 * query is the union of its proposals in ascending item order (a scan of the items marked,
 * not a sort); a pair gets each source's score of its item (0 where not finite), its rank
 * in each source's list (per_source where the source did not propose it) and whether each
 * source proposed it: what the NumPy keys, flatnonzero and searchsorted of
 * ranking.candidates.generate gave, in one pass per query. */
#include "_kernels.h"

#include <math.h>
#include <stdlib.h>

/* merge_proposals(prop int64 (n_src, n_q, kk), stacked float32 (n_src, n_q, n_items),
 *                 n_src, n_q, kk, n_items, per_source, rows int64, items int64,
 *                 scores float32 (cap, n_src), ranks float32 (cap, n_src),
 *                 proposed bool (cap, n_src)) -> number of pairs */
PyObject *merge_proposals(PyObject *self, PyObject *args) {
    Py_buffer pr, st, ro, it, sc, rk, pp;
    Py_ssize_t n_src, n_q, kk, n_items;
    double per_source;
    if (!PyArg_ParseTuple(args, "y*y*nnnndw*w*w*w*w*", &pr, &st, &n_src, &n_q, &kk, &n_items,
                          &per_source, &ro, &it, &sc, &rk, &pp))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t cap = ro.len / 8;
    if (n_src < 1 || n_q < 0 || kk < 0 || n_items < 0 || pr.len != n_src * n_q * kk * 8 ||
        st.len != n_src * n_q * n_items * 4 || ro.len % 8 || it.len != ro.len ||
        sc.len != cap * n_src * 4 || rk.len != cap * n_src * 4 || pp.len != cap * n_src ||
        cap < n_q * (n_src * kk < n_items ? n_src * kk : n_items)) {
        PyErr_SetString(PyExc_ValueError, "merge_proposals: buffer sizes do not match");
        goto done;
    }
    const int64_t *prop = pr.buf;
    for (Py_ssize_t a = 0; a < n_src * n_q * kk; a++) {
        if (prop[a] >= n_items) {
            PyErr_SetString(PyExc_ValueError, "merge_proposals: a proposed item is out of range");
            goto done;
        }
    }
    /* slot[item]: the item's pair in the current query, -1 when not pooled */
    int64_t *slot = malloc((size_t)(n_items > 0 ? n_items : 1) * sizeof(int64_t));
    if (slot == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    const float *stacked = st.buf;
    int64_t *rows = ro.buf, *items = it.buf;
    float *scores = sc.buf, *ranks = rk.buf;
    char *proposed = pp.buf;
    Py_ssize_t n_pairs = 0;
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t i = 0; i < n_items; i++) slot[i] = -1;
    for (Py_ssize_t q = 0; q < n_q; q++) {
        Py_ssize_t first = n_pairs;
        for (Py_ssize_t s = 0; s < n_src; s++) { /* mark the query's proposed items */
            const int64_t *p = prop + (s * n_q + q) * kk;
            for (Py_ssize_t r = 0; r < kk; r++)
                if (p[r] >= 0) slot[p[r]] = 0;
        }
        for (Py_ssize_t i = 0; i < n_items; i++) { /* pairs in item order */
            if (slot[i] < 0) continue;
            slot[i] = n_pairs;
            rows[n_pairs] = q;
            items[n_pairs] = i;
            for (Py_ssize_t s = 0; s < n_src; s++) {
                float v = stacked[(s * n_q + q) * n_items + i];
                scores[n_pairs * n_src + s] = isfinite(v) ? v : 0.0f;
                ranks[n_pairs * n_src + s] = (float)per_source;
                proposed[n_pairs * n_src + s] = 0;
            }
            n_pairs++;
        }
        for (Py_ssize_t s = 0; s < n_src; s++) { /* each source's ranks */
            const int64_t *p = prop + (s * n_q + q) * kk;
            for (Py_ssize_t r = 0; r < kk; r++) {
                if (p[r] < 0) continue;
                Py_ssize_t at = slot[p[r]] * n_src + s;
                ranks[at] = (float)r;
                proposed[at] = 1;
            }
        }
        for (Py_ssize_t a = first; a < n_pairs; a++) slot[items[a]] = -1;
    }
    Py_END_ALLOW_THREADS;
    free(slot);
    result = PyLong_FromSsize_t(n_pairs);
done:
    {
        Py_buffer *parsed[] = {&pr, &st, &ro, &it, &sc, &rk, &pp};
        release_buffers(parsed, 7);
    }
    return result;
}
