/*
 * The spare core: a native thread that takes half of a lone request's native work.
 *
 * A quiet server scores a lone request's row on one core while the other idles. Handing
 * half of a kernel's rows to a Python thread costs two wake-ups of an idle core (tens of
 * microseconds on a virtual machine), as much as the half saves; this thread instead spins
 * while a lone row is being scored (spare_wake ... spare_rest), so a posted half starts at
 * once. It never touches Python objects and never takes the GIL: a job is a C function and
 * its arguments, run between spare_post and spare_join of the same caller.
 *
 * States: SLEEPING (waits on a condition until woken), SPINNING (polls for a job until its
 * deadline), POSTED (a job waits; its caller may take it back), RUNNING, DONE (the caller
 * collects it). Only one caller posts at a time (post_lock); a caller that finds the thread
 * not spinning, or the lock taken, runs the whole job itself. Jobs are loops shared chunk by
 * chunk (spare_loop), so a caller waits at most for the chunk the spare core is running.
 */
#define PY_SSIZE_T_CLEAN
#include "_kernels.h" /* Python.h first: it sets the POSIX feature macros */

#include <pthread.h>
#include <time.h>

enum { SLEEPING = 0, SPINNING = 1, POSTED = 2, RUNNING = 3, DONE = 4 };

static pthread_mutex_t wake_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t woken = PTHREAD_COND_INITIALIZER;
static pthread_mutex_t post_lock = PTHREAD_MUTEX_INITIALIZER;
static int started = 0;
static int state = SLEEPING;
static int64_t spin_until = 0; /* CLOCK_MONOTONIC ns */
static spare_job job_fn = NULL;
static void *job_arg = NULL;

static int64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void *spare_main(void *unused) {
    (void)unused;
    for (;;) {
        pthread_mutex_lock(&wake_lock);
        while (__atomic_load_n(&spin_until, __ATOMIC_ACQUIRE) <= now_ns())
            pthread_cond_wait(&woken, &wake_lock);
        __atomic_store_n(&state, SPINNING, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&wake_lock);
        for (;;) {
            int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
            int posted = POSTED; /* the caller may take a job back before it starts */
            if (s == POSTED && __atomic_compare_exchange_n(&state, &posted, RUNNING, 0,
                                                           __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                job_fn(job_arg);
                __atomic_store_n(&state, DONE, __ATOMIC_RELEASE);
            } else if (s == SPINNING && __atomic_load_n(&spin_until, __ATOMIC_ACQUIRE) <= now_ns()) {
                int expect = SPINNING; /* fails if a job was posted meanwhile: run it first */
                if (__atomic_compare_exchange_n(&state, &expect, SLEEPING, 0, __ATOMIC_ACQ_REL,
                                                __ATOMIC_ACQUIRE))
                    break;
            } else {
                cpu_relax();
            }
        }
    }
    return NULL;
}

/* Spin for the next ns nanoseconds (a lone row is being scored); starts the thread. The
 * caller never waits for the spare core: if it holds the lock (it is awake, maybe about to
 * sleep), the deadline is set without a signal, and at worst this row goes without it. */
static int spare_wake_ns(int64_t ns) {
    __atomic_store_n(&spin_until, now_ns() + ns, __ATOMIC_RELEASE);
    if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != SLEEPING) return 1; /* awake already */
    if (__atomic_load_n(&started, __ATOMIC_ACQUIRE) ? pthread_mutex_trylock(&wake_lock) != 0
                                                    : pthread_mutex_lock(&wake_lock) != 0)
        return 1;
    if (!started) {
        pthread_t t;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &attr, spare_main, NULL) == 0)
            __atomic_store_n(&started, 1, __ATOMIC_RELEASE);
        pthread_attr_destroy(&attr);
    }
    pthread_cond_signal(&woken);
    pthread_mutex_unlock(&wake_lock);
    return started;
}

int spare_post(spare_job fn, void *arg) {
    if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != SPINNING) return 0;
    if (pthread_mutex_trylock(&post_lock) != 0) return 0;
    job_fn = fn;
    job_arg = arg;
    int expect = SPINNING;
    if (__atomic_compare_exchange_n(&state, &expect, POSTED, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE))
        return 1; /* post_lock is held until spare_join */
    pthread_mutex_unlock(&post_lock);
    return 0;
}

void spare_join(void) {
    int posted = POSTED; /* not started yet: taken back, nothing to wait for */
    if (!__atomic_compare_exchange_n(&state, &posted, SPINNING, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != DONE) cpu_relax();
        __atomic_store_n(&state, SPINNING, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&post_lock);
}

/* A loop over [0, n) in chunks that the caller and the spare core take turns at: each
 * takes the next chunk until none is left, so the caller never waits for more than the
 * chunk the spare core is running (and not at all for a post the spare core has not
 * picked up: spare_join takes it back). */
typedef struct {
    spare_range run;
    void *ctx; /* the spare core's */
    Py_ssize_t n, chunk, next;
} shared_loop;

static void take_chunks(shared_loop *l, void *ctx) {
    for (;;) {
        Py_ssize_t a = __atomic_fetch_add(&l->next, l->chunk, __ATOMIC_ACQ_REL);
        if (a >= l->n) return;
        l->run(ctx, a, a + l->chunk < l->n ? a + l->chunk : l->n);
    }
}

static void spare_take(void *arg) {
    shared_loop *l = arg;
    take_chunks(l, l->ctx);
}

int spare_loop(spare_range run, void *here, void *there, Py_ssize_t n, Py_ssize_t chunk) {
    shared_loop l = {run, there, n, chunk > 0 ? chunk : 1, 0};
    int posted = n > l.chunk && spare_post(spare_take, &l);
    take_chunks(&l, here);
    if (posted) spare_join();
    return posted;
}

PyObject *spare_wake(PyObject *self, PyObject *args) {
    (void)self;
    long long us;
    if (!PyArg_ParseTuple(args, "L", &us)) return NULL;
    int ok;
    Py_BEGIN_ALLOW_THREADS;
    ok = spare_wake_ns(us > 0 ? (int64_t)us * 1000 : 0);
    Py_END_ALLOW_THREADS;
    return PyBool_FromLong(ok);
}

PyObject *spare_rest(PyObject *self, PyObject *args) {
    (void)self;
    (void)args;
    __atomic_store_n(&spin_until, 0, __ATOMIC_RELEASE);
    Py_RETURN_NONE;
}

/* ------------------------------------------------------------ compiled trees */

/* lleaves' entry point: predictions of rows [start, end) of a float64 row-major matrix */
typedef void (*tree_fn)(const double *data, double *out, int start, int end);

typedef struct {
    tree_fn fn;
    const double *data;
    double *out;
} tree_job;

static void run_trees(void *arg, Py_ssize_t a, Py_ssize_t b) {
    tree_job *j = arg;
    j->fn(j->data, j->out, (int)a, (int)b);
}

/* Rows of compiled trees a chunk: about 15 us of a 132-tree model. */
#define TREE_CHUNK 32

/* trees_split(entry, data, out, n, nf): out[r] = entry's prediction of row r of the n x nf
 * float64 data, chunks of rows shared with the spare core when it spins (then True). */
PyObject *trees_split(PyObject *self, PyObject *args) {
    (void)self;
    unsigned long long addr;
    Py_buffer data, out;
    Py_ssize_t n, nf;
    if (!PyArg_ParseTuple(args, "Ky*w*nn", &addr, &data, &out, &n, &nf)) return NULL;
    PyObject *result = NULL;
    if (addr == 0 || n < 0 || n > INT32_MAX || nf < 1 ||
        out.len != (Py_ssize_t)(n * sizeof(double)) ||
        data.len != (Py_ssize_t)(n * nf * sizeof(double))) {
        PyErr_SetString(PyExc_ValueError, "trees_split: bad entry point or buffer sizes");
        goto done;
    }
    tree_job job = {(tree_fn)(uintptr_t)addr, data.buf, out.buf};
    int posted;
    Py_BEGIN_ALLOW_THREADS;
    posted = spare_loop(run_trees, &job, &job, n, TREE_CHUNK);
    Py_END_ALLOW_THREADS;
    result = PyBool_FromLong(posted);
done:
    {
        Py_buffer *parsed[] = {&data, &out};
        release_buffers(parsed, 2);
    }
    return result;
}
