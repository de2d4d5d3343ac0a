/*
 * movierec._kernels, part two: the ranker's per-pair features, written straight into the
 * float32 feature matrix (pairs × features, row-major), one pass over the pairs each.
 *
 * item_features    the item features of (item, time) pairs from the item event log sorted by
 *                  (item, time) with running sums (binary searches in the item's segment).
 * cross_features   genre affinity (mean and max of the query's genre taste over the item's
 *                  genres), similarity to the query's latest items, popularity and year gaps.
 * source_features  each source's score, rank and score standardised within the query's pairs,
 *                  and the number of sources that proposed the pair.
 *
 * Each computes what the NumPy expressions of movierec.ranking.features did, in the same
 * order of floating-point operations (sums in storage order, double precision, one rounding
 * to float32 when written), so the features equal them. A feature's destination column is
 * given per feature (-1: not written), so the caller's column order and dropped groups hold.
 * Arrays come through the buffer protocol (checked by movierec.ranking.features); the GIL
 * is released while they run.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "_kernels.h"

#define DAY 86400.0
#define N_ITEM 12
#define N_CROSS 7

/* k-th entry of an int32 (wide = 0) or int64 index array */
#define IX(a, wide, k) ((wide) ? ((const int64_t *)(a))[k] : (int64_t)((const int32_t *)(a))[k])

static inline void put(float *row, const int64_t *dest, int f, double v) {
    if (dest[f] >= 0) row[dest[f]] = (float)v;
}

static int check(Py_ssize_t len, Py_ssize_t n, Py_ssize_t size, const char *what) {
    if (len != n * size) {
        PyErr_Format(PyExc_ValueError, "%s: buffer size does not match", what);
        return 0;
    }
    return 1;
}

/* item_features(item_start, times, cum_rating, cum_decay, years, n_genres, t_ref, windows,
 *               items, as_of, out, n_cols, dest) */
/* what the item features of a range of pairs read and write (item_features' arguments) */
typedef struct {
    const int64_t *start, *times, *items, *dest;
    const double *cum_rating, *cum_decay, *years, *n_genres, *as_of, *windows;
    double t_ref, scale;
    Py_ssize_t n_items, n_log, n_cols;
    float *o;
    int bad; /* an item outside the log (set by either thread) */
} item_pairs;

static void item_features_range(void *arg, Py_ssize_t a, Py_ssize_t b) {
    item_pairs *c = arg;
    const int64_t *start = c->start, *times = c->times, *dest = c->dest;
    for (Py_ssize_t p = a; p < b; p++) {
        int64_t i = c->items[p];
        if (i < 0 || i >= c->n_items || start[i] > start[i + 1] || start[i + 1] > c->n_log) {
            __atomic_store_n(&c->bad, 1, __ATOMIC_RELAXED);
            return;
        }
        double t = c->as_of[p];
        int64_t s = start[i];
        int64_t e = search_after(times, s, start[i + 1], clip_time((int64_t)floor(t)));
        double cnt = (double)(e - s);
        int has = cnt > 0;
        int64_t last = has ? e - 1 : 0;
        float *row = c->o + p * c->n_cols;
        put(row, dest, 0, cnt);
        put(row, dest, 1, log1p(cnt));
        for (int w = 0; w < 3; w++) {
            int64_t key = clip_time((int64_t)floor(t - c->windows[w] * DAY));
            int64_t before = search_after(times, s, start[i + 1], key);
            put(row, dest, 2 + w, (double)(e - (before > s ? before : s)));
        }
        double ex = (c->t_ref - t) / c->scale;
        put(row, dest, 5, has ? c->cum_decay[last] * exp(ex < 600 ? ex : 600) : 0.0);
        put(row, dest, 6, has ? c->cum_rating[last] / (cnt > 1 ? cnt : 1) : NAN);
        put(row, dest, 7, has ? (t - (double)times[last]) / DAY : NAN);
        put(row, dest, 8, has ? (t - (double)times[s]) / DAY : NAN);
        double year = c->years[i];
        put(row, dest, 9, year);
        put(row, dest, 10, (1970.0 + t / (365.25 * DAY)) - year);
        put(row, dest, 11, c->n_genres[i]);
    }
}

/* Pairs a chunk when the item features are shared with the spare core. */
#define ITEM_PAIR_CHUNK 64

PyObject *item_features(PyObject *self, PyObject *args) {
    Py_buffer st, tm, cr, cd, yr, ng, win, it, ao, out, de;
    double t_ref;
    Py_ssize_t n_cols;
    int split = 0;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*y*dy*y*y*w*ny*|p", &st, &tm, &cr, &cd, &yr, &ng,
                          &t_ref, &win, &it, &ao, &out, &n_cols, &de, &split))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n_items = st.len / 8 - 1, n_log = tm.len / 8, n = it.len / 8;
    if (n_items < 0 || !check(tm.len, n_log, 8, "item_features") ||
        !check(cr.len, n_log, 8, "item_features") || !check(cd.len, n_log, 8, "item_features") ||
        !check(yr.len, n_items, 8, "item_features") ||
        !check(ng.len, n_items, 8, "item_features") || !check(win.len, 3, 8, "item_features") ||
        !check(ao.len, n, 8, "item_features") || !check(out.len, n * n_cols, 4, "item_features") ||
        !check(de.len, N_ITEM, 8, "item_features"))
        goto done;
    for (Py_ssize_t f = 0; f < N_ITEM; f++)
        if (((int64_t *)de.buf)[f] >= n_cols) {
            PyErr_SetString(PyExc_ValueError, "item_features: a destination outside the matrix");
            goto done;
        }
    item_pairs c = {st.buf, tm.buf, it.buf, de.buf, cr.buf, cd.buf, yr.buf, ng.buf, ao.buf,
                    win.buf, t_ref, 180.0 * DAY / log(2.0), n_items, n_log, n_cols, out.buf, 0};
    int posted = 0;
    Py_BEGIN_ALLOW_THREADS;
    if (split) /* split: chunks of pairs shared with the spare core when it spins */
        posted = spare_loop(item_features_range, &c, &c, n, ITEM_PAIR_CHUNK);
    else
        item_features_range(&c, 0, n);
    Py_END_ALLOW_THREADS;
    if (c.bad) {
        PyErr_SetString(PyExc_IndexError, "item_features: an item outside the log");
        goto done;
    }
    result = PyBool_FromLong(posted);
done:
    {
        Py_buffer *parsed[] = {&st, &tm, &cr, &cd, &yr, &ng, &win, &it, &ao, &out, &de};
        release_buffers(parsed, 11);
    }
    return result;
}

/* cross_features(rows, items, taste, n_genre_cols, g_indptr, g_indices, g_wide, latest,
 *                n_latest_cols, n_last, s_indptr, s_indices, s_wide, s_data, pop, user_pop,
 *                years, user_year, out, n_cols, dest)
 * taste: (queries × genres) float64; g_*: the item genres' CSR structure; latest: (queries ×
 * L) int64 item of each recency rank (-1: none); n_last: latest items per query; s_*: the
 * similarity CSR (float32 data), or an indptr of one entry for none; *_wide: int64 (else
 * int32) indices. */
PyObject *cross_features(PyObject *self, PyObject *args) {
    Py_buffer rw, it, ta, gp, gi, la, nl, sp_, si, sd, pp, up, yr, uy, out, de;
    Py_ssize_t n_g, n_l, n_cols;
    int wg, ws;
    if (!PyArg_ParseTuple(args, "y*y*y*ny*y*py*ny*y*y*py*y*y*y*y*w*ny*", &rw, &it, &ta, &n_g, &gp,
                          &gi, &wg, &la, &n_l, &nl, &sp_, &si, &ws, &sd, &pp, &up, &yr, &uy, &out,
                          &n_cols, &de))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n = it.len / 8, n_q = up.len / 8, n_items = pp.len / 8;
    Py_ssize_t gsz = wg ? 8 : 4, ssz = ws ? 8 : 4;
    Py_ssize_t n_sim_rows = sp_.len / ssz - 1, n_sim = si.len / ssz;
    int has_sim = sp_.len > ssz;
    float *buf = NULL;
    if (!check(rw.len, n, 8, "cross_features") || !check(ta.len, n_q * n_g, 8, "cross_features") ||
        !check(gp.len, n_items + 1, gsz, "cross_features") ||
        !check(la.len, n_q * n_l, 8, "cross_features") ||
        !check(nl.len, n_q, 8, "cross_features") || !check(sd.len, n_sim, 4, "cross_features") ||
        !check(yr.len, n_items, 8, "cross_features") ||
        !check(uy.len, n_q, 8, "cross_features") ||
        !check(out.len, n * n_cols, 4, "cross_features") ||
        !check(de.len, N_CROSS, 8, "cross_features") || gi.len % gsz || si.len % ssz ||
        (has_sim && n_sim_rows != n_items))
        goto done;
    const int64_t *rows = rw.buf, *items = it.buf, *latest = la.buf, *n_last = nl.buf;
    const int64_t *dest = de.buf;
    const void *g_indptr = gp.buf, *g_indices = gi.buf, *s_indptr = sp_.buf, *s_indices = si.buf;
    const float *s_data = sd.buf;
    const double *taste = ta.buf, *pop = pp.buf, *user_pop = up.buf, *years = yr.buf,
                 *user_year = uy.buf;
    float *o = out.buf;
    Py_ssize_t n_gi = gi.len / gsz;
    int bad = 0;
    for (Py_ssize_t f = 0; f < N_CROSS; f++)
        if (dest[f] >= n_cols) bad = 1;
    if (has_sim) {
        buf = calloc((size_t)(n_l * n_items) + 1, sizeof(float));
        if (!buf) {
            PyErr_NoMemory();
            goto done;
        }
    }
    Py_BEGIN_ALLOW_THREADS;
    int64_t q_in_buf = -1; /* the query whose latest items' similarity rows are in buf */
    for (Py_ssize_t p = 0; p < n && !bad; p++) {
        int64_t q = rows[p], i = items[p];
        if (q < 0 || q >= n_q || i < 0 || i >= n_items ||
            IX(g_indptr, wg, i) > IX(g_indptr, wg, i + 1) ||
            IX(g_indptr, wg, i + 1) > n_gi) {
            bad = 1;
            break;
        }
        float *row = o + p * n_cols;
        const double *tq = taste + q * n_g;
        double sum = 0.0, mx = 0.0;
        for (int64_t e = IX(g_indptr, wg, i); e < IX(g_indptr, wg, i + 1); e++) {
            int64_t g = IX(g_indices, wg, e);
            if (g < 0 || g >= n_g) {
                bad = 1;
                break;
            }
            double v = tq[g];
            sum += v;
            if (v > mx || isnan(v)) mx = v;
        }
        int64_t cnt = IX(g_indptr, wg, i + 1) - IX(g_indptr, wg, i);
        put(row, dest, 0, sum / (double)(cnt > 1 ? cnt : 1));
        put(row, dest, 1, mx);
        double first = 0.0, smax = 0.0, ssum = 0.0;
        if (has_sim) {
            if (q != q_in_buf) { /* swap the previous query's rows out, this one's in */
                for (int pass = 0; pass < 2; pass++) {
                    int64_t qq = pass ? q : q_in_buf;
                    if (qq < 0) continue;
                    for (Py_ssize_t l = 0; l < n_l; l++) {
                        int64_t j = latest[qq * n_l + l];
                        if (j < 0) continue;
                        if (j >= n_items || IX(s_indptr, ws, j) > IX(s_indptr, ws, j + 1) ||
                            IX(s_indptr, ws, j + 1) > n_sim) {
                            bad = 1;
                            break;
                        }
                        for (int64_t e = IX(s_indptr, ws, j); e < IX(s_indptr, ws, j + 1); e++) {
                            int64_t c = IX(s_indices, ws, e);
                            if (c < 0 || c >= n_items) {
                                bad = 1;
                                break;
                            }
                            buf[l * n_items + c] = pass ? buf[l * n_items + c] + s_data[e] : 0.0f;
                        }
                    }
                }
                q_in_buf = q;
                if (bad) break;
            }
            for (Py_ssize_t l = 0; l < n_l; l++) {
                double v = (double)buf[l * n_items + i];
                if (l == 0) first = smax = v;
                else if (v > smax) smax = v;
                ssum += v;
            }
            int64_t k = n_last[q];
            ssum /= (double)(k > 1 ? k : 1);
        }
        put(row, dest, 2, smax);
        put(row, dest, 3, ssum);
        put(row, dest, 4, first);
        put(row, dest, 5, pop[i] - user_pop[q]);
        put(row, dest, 6, years[i] - user_year[q]);
    }
    Py_END_ALLOW_THREADS;
    if (bad) {
        PyErr_SetString(PyExc_IndexError, "cross_features: an index outside its array");
        goto done;
    }
    result = Py_None;
    Py_INCREF(result);
done:
    free(buf);
    {
        Py_buffer *parsed[] = {&rw, &it, &ta, &gp, &gi, &la, &nl, &sp_,
                               &si, &sd, &pp, &up, &yr, &uy, &out, &de};
        release_buffers(parsed, 16);
    }
    return result;
}

/* source_features(bounds, scores, ranks, proposed, n_src, where, out, n_cols, dest)
 * bounds: (queries + 1) start of each query's pairs; scores/ranks: (pairs × sources) float32;
 * proposed: (pairs × sources) bool; where: output row of each pair (-1: not written);
 * dest: 3 per source (score, rank, z) then n_sources. */
PyObject *source_features(PyObject *self, PyObject *args) {
    Py_buffer bd, sc, rk, pr, wh, out, de;
    Py_ssize_t n_src, n_cols;
    if (!PyArg_ParseTuple(args, "y*y*y*y*ny*w*ny*", &bd, &sc, &rk, &pr, &n_src, &wh, &out,
                          &n_cols, &de))
        return NULL;
    PyObject *result = NULL;
    Py_ssize_t n_q = bd.len / 8 - 1, n = wh.len / 8, n_out = out.len / 4 / (n_cols ? n_cols : 1);
    if (n_q < 0 || !check(sc.len, n * n_src, 4, "source_features") ||
        !check(rk.len, n * n_src, 4, "source_features") ||
        !check(pr.len, n * n_src, 1, "source_features") ||
        !check(out.len, n_out * n_cols, 4, "source_features") ||
        !check(de.len, 3 * n_src + 1, 8, "source_features"))
        goto done;
    const int64_t *bounds = bd.buf, *where = wh.buf, *dest = de.buf;
    const float *scores = sc.buf, *ranks = rk.buf;
    const uint8_t *proposed = pr.buf;
    float *o = out.buf;
    int bad = bounds[0] != 0 || bounds[n_q] != n;
    for (Py_ssize_t f = 0; f < 3 * n_src + 1; f++)
        if (dest[f] >= n_cols) bad = 1;
    for (Py_ssize_t q = 0; q < n_q && !bad; q++)
        if (bounds[q] > bounds[q + 1]) bad = 1;
    for (Py_ssize_t p = 0; p < n && !bad; p++)
        if (where[p] >= n_out) bad = 1;
    if (bad) {
        PyErr_SetString(PyExc_ValueError, "source_features: bounds or rows outside the arrays");
        goto done;
    }
    Py_BEGIN_ALLOW_THREADS;
    for (Py_ssize_t q = 0; q < n_q; q++) {
        int64_t a = bounds[q], b = bounds[q + 1];
        double cnt = (double)(b - a > 1 ? b - a : 1);
        for (Py_ssize_t j = 0; j < n_src; j++) {
            double sum = 0.0, sq = 0.0;
            for (int64_t p = a; p < b; p++) {
                double v = (double)scores[p * n_src + j];
                sum += v;
                sq += v * v;
            }
            double mean = sum / cnt, var = sq / cnt - mean * mean;
            double std = sqrt(var > 1e-12 ? var : 1e-12);
            for (int64_t p = a; p < b; p++) {
                if (where[p] < 0) continue;
                float *row = o + where[p] * n_cols;
                double v = (double)scores[p * n_src + j];
                put(row, dest, 3 * (int)j, v);
                put(row, dest, 3 * (int)j + 1, (double)ranks[p * n_src + j]);
                put(row, dest, 3 * (int)j + 2, (v - mean) / std);
            }
        }
        for (int64_t p = a; p < b; p++) {
            if (where[p] < 0) continue;
            int64_t c = 0;
            for (Py_ssize_t j = 0; j < n_src; j++) c += proposed[p * n_src + j] != 0;
            put(o + where[p] * n_cols, dest, 3 * (int)n_src, (double)c);
        }
    }
    Py_END_ALLOW_THREADS;
    result = Py_None;
    Py_INCREF(result);
done:
    {
        Py_buffer *parsed[] = {&bd, &sc, &rk, &pr, &wh, &out, &de};
        release_buffers(parsed, 7);
    }
    return result;
}
