/* Shared by the sources of movierec._kernels (_kernels.c, _features.c, _ranks.c, _pool.c). */
#ifndef MOVIEREC_KERNELS_H
#define MOVIEREC_KERNELS_H
#include <Python.h>
#include <stdint.h>

#define TIME_MAX ((int64_t)1 << 34) /* times are clipped to [0, 2^34) like the log's keys */

static inline int64_t clip_time(int64_t t) {
    return t < 0 ? 0 : (t >= TIME_MAX ? TIME_MAX - 1 : t);
}

/* first position in times[lo, hi) whose clipped time is > key: a galloping search from the
 * end (the times asked for are recent, so it reads the segment's last few cache lines, which
 * the searches of one pair share), then a binary search of the range it found */
static inline int64_t search_after(const int64_t *times, int64_t lo, int64_t hi, int64_t key) {
    int64_t step = 1;
    while (hi > lo) { /* times[hi, ...) are all > key */
        int64_t probe = hi - step < lo ? lo : hi - step;
        if (clip_time(times[probe]) <= key) {
            lo = probe + 1;
            break;
        }
        hi = probe;
        step *= 2;
    }
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (clip_time(times[mid]) <= key)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* release the buffers a kernel parsed */
static inline void release_buffers(Py_buffer **b, int n) {
    for (int k = 0; k < n; k++) PyBuffer_Release(b[k]);
}

PyObject *item_features(PyObject *self, PyObject *args);
PyObject *cross_features(PyObject *self, PyObject *args);
PyObject *source_features(PyObject *self, PyObject *args);
PyObject *time_ranks(PyObject *self, PyObject *args);
PyObject *merge_proposals(PyObject *self, PyObject *args);

/* the spare core (_spare.c): a job posted while it spins runs there; spare_join waits */
typedef void (*spare_job)(void *arg);
int spare_post(spare_job fn, void *arg);
void spare_join(void);
/* run(ctx, a, b) over [0, n) in chunks, shared with the spare core when it spins (its
 * chunks get ctx there, the caller's here); 1 when it took part */
typedef void (*spare_range)(void *ctx, Py_ssize_t a, Py_ssize_t b);
int spare_loop(spare_range run, void *here, void *there, Py_ssize_t n, Py_ssize_t chunk);
PyObject *spare_wake(PyObject *self, PyObject *args);
PyObject *spare_rest(PyObject *self, PyObject *args);
PyObject *trees_split(PyObject *self, PyObject *args);
#endif
