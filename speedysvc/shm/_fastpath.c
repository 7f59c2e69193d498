/* speedysvc.shm._fastpath -- the per-call shared-memory protocol below the interpreter.
 *
 * Python keeps what only Python can do (method lookup, decode, invoke, encode); this module
 * does the rest of a call on both sides: the client's enqueue (an atomic OR of the call
 * slot's pending bit), bounded spin with a pause instruction, then a semaphore wait, all with
 * the GIL released; the worker's wait, dequeue (atomic AND), claim (compare-and-swap of the
 * channel state), reply and wake-up, and its worker-table words.
 *
 * The layout (word indices, offsets, states) is not repeated here: Python passes its own
 * constants to configure() once, so both paths read one definition of layout 4
 * (speedysvc/shm/service_segment.py and channel.py).
 *
 * Everything read from shared memory is bounds-checked: slot numbers, request lengths,
 * reply sizes. A rogue writer can make a call fail, never make this code touch memory
 * outside the mapping.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <pthread.h>
#include <errno.h>
#include <semaphore.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/uio.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield" ::: "memory")
#else
#define cpu_relax() __asm__ __volatile__("" ::: "memory")
#endif

typedef uint64_t u64;
#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)
#define CAS(p, expected, desired) \
    __atomic_compare_exchange_n((p), (expected), (desired), 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)

/* ---- layout, from Python ---------------------------------------------------------------- */
static struct {
    int ok;
    Py_ssize_t pending_word, pending_words, slots_word, slot_words, slot_count, pure_first;
    Py_ssize_t workers_word, worker_words, max_workers, h_spinner, h_shutdown, service_bytes;
    Py_ssize_t w_pid, w_state, w_heartbeat, w_busy_since, w_calls, w_errors, w_busy_ns, w_client_pid;
    u64 worker_idle, worker_busy;
    Py_ssize_t c_state, c_seq, c_req_len, c_resp_len, c_worker_pid, c_client_pid, c_overflow,
        c_resp_offset;
    Py_ssize_t data_offset, min_channel_bytes;
    u64 s_request, s_claimed, s_reply;
    long long spin_max_ns;
    long long poll_ns;  /* how long a Caller waits before Python checks on the worker (channel.POLL_S) */
} L;

static int get_field(PyObject *d, const char *key, long long *out) {
    PyObject *v = PyDict_GetItemString(d, key);
    if (v == NULL) {
        PyErr_Format(PyExc_KeyError, "configure(): missing %s", key);
        return -1;
    }
    *out = PyLong_AsLongLong(v);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

#define FIELD(name)                                    \
    do {                                               \
        long long tmp_;                                \
        if (get_field(d, #name, &tmp_) < 0) return NULL; \
        L.name = tmp_;                                 \
    } while (0)

static PyObject *configure(PyObject *mod, PyObject *d) {
    if (!PyDict_Check(d)) {
        PyErr_SetString(PyExc_TypeError, "configure() takes a dict");
        return NULL;
    }
    FIELD(pending_word); FIELD(pending_words); FIELD(slots_word); FIELD(slot_words);
    FIELD(slot_count); FIELD(pure_first); FIELD(workers_word); FIELD(worker_words);
    FIELD(max_workers); FIELD(h_spinner); FIELD(h_shutdown); FIELD(service_bytes);
    FIELD(w_pid); FIELD(w_state); FIELD(w_heartbeat); FIELD(w_busy_since); FIELD(w_calls);
    FIELD(w_errors); FIELD(w_busy_ns); FIELD(w_client_pid); FIELD(worker_idle); FIELD(worker_busy);
    FIELD(c_state); FIELD(c_seq); FIELD(c_req_len); FIELD(c_resp_len); FIELD(c_worker_pid);
    FIELD(c_client_pid); FIELD(c_overflow); FIELD(c_resp_offset);
    FIELD(data_offset); FIELD(min_channel_bytes); FIELD(s_request); FIELD(s_claimed); FIELD(s_reply);
    FIELD(spin_max_ns); FIELD(poll_ns);
    if (L.pending_words * 64 != L.slot_count || L.min_channel_bytes < L.data_offset) {
        PyErr_SetString(PyExc_ValueError, "configure(): inconsistent layout");
        return NULL;
    }
    L.ok = 1;
    Py_RETURN_NONE;
}

/* ---- small helpers ---------------------------------------------------------------------- */
static inline u64 mono_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (u64)t.tv_sec * 1000000000u + (u64)t.tv_nsec;
}

static inline u64 wall_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (u64)t.tv_sec * 1000000000u + (u64)t.tv_nsec;
}

/* sem_timedwait for up to `seconds`; 0 on a token, -1 on timeout, -2 on a signal (the caller
 * returns to Python so that signal handlers run). */
static int sem_wait_for(sem_t *sem, double seconds) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    if (seconds < 0) seconds = 0;
    long long ns = ts.tv_nsec + (long long)(seconds * 1e9);
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    if (sem_timedwait(sem, &ts) == 0) return 0;
    return errno == EINTR ? -2 : -1;
}

/* Adaptive spinning (the same rule as channel.SpinState). A spin only pays when the peer
 * answers within it and has a core of its own. Successful spins size the next ones (twice the
 * recent successful waits); a spin that catches nothing, or only after half the maximum, means
 * the peer is slow or has no core: then this side stops spinning for 1, 2, 4, ... MAX_SKIP waits
 * (blocking at once), and the wait after that probes a little further than usual. On a busy machine spinning thus fades out instead of
 * taking the core the peer needs; an idle worker stops spinning after a few waits. */
#define MAX_SKIP 1024
typedef struct {
    long long ok_ns;   /* recent successful spin waits */
    unsigned skip;     /* waits left without spinning */
    unsigned level;    /* current back-off (0: none) */
    int probe;         /* the next spin is a probe with the full budget */
} Spin;

static inline void spin_init(Spin *s) {
    s->ok_ns = L.spin_max_ns / 4;
    s->skip = s->level = 0;
    s->probe = 0;
}

static inline long long spin_budget(Spin *s) {
    if (L.spin_max_ns <= 0) return 0;
    if (s->skip) {
        if (--s->skip == 0) s->probe = 1;
        return 0;
    }
    /* a probe looks a little further than usual: far enough to see a fast peer again, not
     * so far that a failed probe shows in the tail */
    long long b = s->probe ? 4 * s->ok_ns + 8000 : 2 * s->ok_ns + 2000;
    return b < L.spin_max_ns ? b : L.spin_max_ns;
}

static inline void spin_result(Spin *s, long long budget, int caught, long long waited) {
    if (budget <= 0) return;
    s->probe = 0;
    /* a reply caught only after a long spin is no success: the spin probably kept the peer
     * from the core it needed */
    if (caught && waited <= L.spin_max_ns / 2) {
        s->level = 0;
        s->ok_ns = (s->ok_ns * 3 + waited) >> 2;
    } else {
        s->level = s->level ? (s->level * 2 < MAX_SKIP ? s->level * 2 : MAX_SKIP) : 1;
        s->skip = s->level;
    }
}

static inline uint32_t le32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static int pid_dead(u64 pid) {
    if (pid == 0 || pid > 0x7fffffff) return 1;
    return kill((pid_t)pid, 0) == -1 && errno == ESRCH;
}

typedef struct {
    Py_buffer view;
    int has_view;
} Mapping;

static int map_buffer(Mapping *m, PyObject *obj, Py_ssize_t min_bytes) {
    if (PyObject_GetBuffer(obj, &m->view, PyBUF_WRITABLE) < 0) return -1;
    m->has_view = 1;
    if (m->view.len < min_bytes || ((uintptr_t)m->view.buf & 7)) {
        PyErr_Format(PyExc_ValueError, "mapping of %zd bytes is smaller than %zd or misaligned",
                     m->view.len, min_bytes);
        return -1;
    }
    return 0;
}

static void unmap_buffer(Mapping *m) {
    if (m->has_view) {
        PyBuffer_Release(&m->view);
        m->has_view = 0;
    }
}

static sem_t *open_sem(PyObject *name) {
    const char *s = PyUnicode_AsUTF8(name);
    if (s == NULL) return NULL;
    sem_t *sem = sem_open(s, 0);
    if (sem == SEM_FAILED) {
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, s);
        return NULL;
    }
    return sem;
}

/* ---- Service: one service segment (client side: register/post; worker side: Worker) --- */
typedef struct {
    PyObject_HEAD
    Mapping m;
    u64 *q;
    sem_t *qsem;
} Service;

static void Service_dealloc(Service *self) {
    unmap_buffer(&self->m);
    if (self->qsem) sem_close(self->qsem);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Service_init(Service *self, PyObject *args, PyObject *kw) {
    PyObject *mm, *name;
    if (!L.ok) {
        PyErr_SetString(PyExc_RuntimeError, "_fastpath.configure() was not called");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OU", &mm, &name)) return -1;
    if (map_buffer(&self->m, mm, L.service_bytes) < 0) return -1;
    self->q = (u64 *)self->m.view.buf;
    self->qsem = open_sem(name);
    return self->qsem ? 0 : -1;
}

static inline u64 *pending(Service *s, Py_ssize_t slot) { return &s->q[L.pending_word + (slot >> 6)]; }
static inline u64 *slot_word(Service *s, Py_ssize_t slot, Py_ssize_t w) {
    return &s->q[L.slots_word + slot * L.slot_words + w];
}

/* register(pid, no, gen) -> slot, or -1 when every compiled-client slot has a live owner */
static PyObject *Service_register(Service *self, PyObject *args) {
    unsigned long long pid, no, gen;
    if (!PyArg_ParseTuple(args, "KKK", &pid, &no, &gen)) return NULL;
    if (!self->m.has_view) return PyErr_Format(PyExc_ValueError, "service mapping released");
    u64 owner = pid << 32 | (no & 0xffffffffu);
    for (int pass = 0; pass < 2; pass++) {
        for (Py_ssize_t i = 0; i < L.pure_first; i++) {
            u64 *ow = slot_word(self, i, 0);
            u64 cur = LOAD(ow);
            if (cur != 0 && (pass == 0 || !pid_dead(cur >> 32))) continue;
            if (CAS(ow, &cur, owner)) {
                /* a stale bit read meanwhile names a channel generation that does not exist:
                 * the worker finds no such segment and moves on */
                STORE(slot_word(self, i, 1), gen);
                return PyLong_FromSsize_t(i);
            }
        }
    }
    return PyLong_FromLong(-1);
}

/* post(slot): mark the slot's call as waiting, wake a worker */
static PyObject *Service_post(Service *self, PyObject *arg) {
    Py_ssize_t slot = PyLong_AsSsize_t(arg);
    if (slot == -1 && PyErr_Occurred()) return NULL;
    if (slot < 0 || slot >= L.slot_count) return PyErr_Format(PyExc_IndexError, "slot %zd", slot);
    __atomic_fetch_or(pending(self, slot), (u64)1 << (slot & 63), __ATOMIC_SEQ_CST);
    sem_post(self->qsem);
    Py_RETURN_NONE;
}

static PyObject *Service_release(Service *self, PyObject *unused) {
    unmap_buffer(&self->m);
    self->q = NULL;
    Py_RETURN_NONE;
}

static PyMethodDef Service_methods[] = {
    {"register", (PyCFunction)Service_register, METH_VARARGS, "register(pid, no, gen) -> slot or -1"},
    {"post", (PyCFunction)Service_post, METH_O, "post(slot): queue the slot's call, wake a worker"},
    {"release", (PyCFunction)Service_release, METH_NOARGS, "drop the buffer of the mapping"},
    {NULL}};

static PyTypeObject ServiceType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "speedysvc.shm._fastpath.Service",
    .tp_basicsize = sizeof(Service),
    .tp_dealloc = (destructor)Service_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Service(mmap, queue_semaphore_name): the compiled view of a service segment",
    .tp_methods = Service_methods,
    .tp_init = (initproc)Service_init,
    .tp_new = PyType_GenericNew,
};

/* ---- Channel: one client channel (both sides) ------------------------------------------- */
typedef struct {
    PyObject_HEAD
    Mapping m;
    u64 *c;
    sem_t *sem;
    Spin spin;
    u64 claimed_seq;    /* worker side: the seq it claimed */
    u64 claimed_len;
    int busy;           /* client side: a Caller is inside a call on it (see ClientChannel.request_close) */
    int close_requested;  /* another thread asked to close it: the Caller closes it after its call */
} Channel;

static void Channel_dealloc(Channel *self) {
    unmap_buffer(&self->m);
    if (self->sem) sem_close(self->sem);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Channel_init(Channel *self, PyObject *args, PyObject *kw) {
    PyObject *mm, *name;
    if (!L.ok) {
        PyErr_SetString(PyExc_RuntimeError, "_fastpath.configure() was not called");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OU", &mm, &name)) return -1;
    if (map_buffer(&self->m, mm, L.min_channel_bytes) < 0) return -1;
    self->c = (u64 *)self->m.view.buf;
    spin_init(&self->spin);
    self->sem = open_sem(name);
    return self->sem ? 0 : -1;
}

#define CHANNEL_OK(self)                                                              \
    if (!(self)->m.has_view) return PyErr_Format(PyExc_ValueError, "channel released")

/* Spin up to `ns` for the reply state, then consume the worker's post (which follows its
 * state change at once). GIL released by the caller. 1 when replied. */
static int spin_for_reply(Channel *self, u64 seq, long long ns) {
    u64 *c = self->c;
    if (ns > 0) {
        u64 end = mono_ns() + (u64)ns;
        unsigned k = 0;
        while (!(LOAD(&c[L.c_state]) == L.s_reply)) {
            cpu_relax();
            if ((++k & 15) == 0 && mono_ns() >= end) return 0;
        }
        /* replied: take the post so it does not wake a later wait */
        for (int i = 0; i < 2000; i++) {
            if (sem_trywait(self->sem) == 0) break;
            cpu_relax();
        }
        return 1;
    }
    return LOAD(&c[L.c_state]) == L.s_reply;
}

/* wait(seq, seconds) -> 1 replied, 0 not yet (check the worker and the deadline), -1 signal */
static int wait_reply(Channel *self, u64 seq, double seconds) {
    u64 *c = self->c;
    u64 end = mono_ns() + (u64)(seconds * 1e9);
    for (;;) {
        double left = (double)((long long)(end - mono_ns())) / 1e9;
        int r = sem_wait_for(self->sem, left > 0 ? left : 0);
        if (r == 0) {
            if (LOAD(&c[L.c_state]) == L.s_reply && LOAD(&c[L.c_seq]) == seq) return 1;
            continue; /* a stale post of an earlier call */
        }
        if (LOAD(&c[L.c_state]) == L.s_reply) return 1; /* replied, post still in flight */
        if (r == -2) return -1;
        return 0;
    }
}

/* The reply, once the state says REPLY: a read-only view of it in the channel (the state is
 * set back to IDLE first: the worker never touches the channel again before the next request),
 * or -1 when it went to an overflow segment (Python maps that). The caller releases the view
 * before the channel can be unmapped (the channel is busy meanwhile). */
static PyObject *reply_view(Channel *self) {
    u64 *c = self->c;
    u64 off = LOAD(&c[L.c_resp_offset]), n = LOAD(&c[L.c_resp_len]);
    if (LOAD(&c[L.c_overflow])) return PyLong_FromLong(-1);
    if (off < (u64)L.data_offset || off > (u64)self->m.view.len || n > (u64)self->m.view.len - off)
        return PyErr_Format(PyExc_ValueError, "reply of %llu bytes at offset %llu lies outside the channel",
                            (unsigned long long)n, (unsigned long long)off);
    STORE(&c[L.c_state], 0);
    return PyMemoryView_FromMemory((char *)self->m.view.buf + off, (Py_ssize_t)n, PyBUF_READ);
}

/* Queue the request of `size` bytes already written at DATA_OFFSET, spin, wait one poll.
 * Returns what call() returns (below) except -3. */
static PyObject *send_wait(Channel *self, Service *svc, Py_ssize_t slot, u64 seq, Py_ssize_t size,
                           double poll_s) {
    u64 *c = self->c;
    c[L.c_req_len] = (u64)size;
    c[L.c_seq] = seq;
    STORE(&c[L.c_state], L.s_request);
    __atomic_fetch_or(pending(svc, slot), (u64)1 << (slot & 63), __ATOMIC_SEQ_CST);
    sem_post(svc->qsem);
    long long b = spin_budget(&self->spin);
    int r, caught;
    u64 start, end;
    Py_BEGIN_ALLOW_THREADS
    start = mono_ns();
    r = caught = spin_for_reply(self, seq, b);
    if (!r) r = wait_reply(self, seq, poll_s);
    end = mono_ns();
    Py_END_ALLOW_THREADS
    spin_result(&self->spin, b, caught, (long long)(end - start));
    if (r == -1) {
        if (PyErr_CheckSignals() < 0) return NULL;
        r = 0;
    }
    if (r == 0) return PyLong_FromLong(0);
    return reply_view(self);
}

/* call(service, slot, parts, seq, limit, poll_s): write the request parts at DATA_OFFSET, queue
 * it, spin, wait one poll. Returns the reply view (see reply_view), -1 (overflow reply: check
 * and map it), 0 (not replied yet: check the worker and the deadline, then wait()), or -3 (the
 * request is longer than `limit`: nothing was sent; grow the channel and call again). */
static PyObject *call_impl(Channel *self, Service *svc, Py_ssize_t slot, PyObject *parts,
                           unsigned long long seq, Py_ssize_t limit, double poll_s) {
    CHANNEL_OK(self);
    if (!svc->m.has_view) return PyErr_Format(PyExc_ValueError, "service mapping released");
    if (slot < 0 || slot >= L.slot_count) return PyErr_Format(PyExc_IndexError, "slot %zd", slot);
    if (limit > self->m.view.len - L.data_offset) limit = self->m.view.len - L.data_offset;
    Py_ssize_t n = PyList_GET_SIZE(parts), size = 0;
    char *dst = (char *)self->m.view.buf + L.data_offset;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *part = PyList_GET_ITEM(parts, i);
        if (PyBytes_CheckExact(part)) {
            Py_ssize_t len = PyBytes_GET_SIZE(part);
            if (size + len > limit) return PyLong_FromLong(-3);
            memcpy(dst + size, PyBytes_AS_STRING(part), len);
            size += len;
        } else {
            Py_buffer v;
            if (PyObject_GetBuffer(part, &v, PyBUF_C_CONTIGUOUS) < 0) return NULL;
            if (size + v.len > limit) {
                PyBuffer_Release(&v);
                return PyLong_FromLong(-3);
            }
            memcpy(dst + size, v.buf, v.len);
            size += v.len;
            PyBuffer_Release(&v);
        }
    }
    return send_wait(self, svc, slot, seq, size, poll_s);
}

static PyObject *Channel_call(Channel *self, PyObject *args) {
    Service *svc;
    Py_ssize_t slot, limit;
    PyObject *parts;
    unsigned long long seq;
    double poll_s;
    if (!PyArg_ParseTuple(args, "O!nO!Knd", &ServiceType, &svc, &slot, &PyList_Type, &parts, &seq, &limit,
                          &poll_s))
        return NULL;
    return call_impl(self, svc, slot, parts, seq, limit, poll_s);
}

static PyObject *NotDecoded;  /* the exception call_decoded() raises for Python to finish the call */

/* call_decoded(service, slot, parts, seq, limit, poll_s, decoder): call(), then, for a reply
 * with status OK, its result: `bytes` as the decoder returns a raw method's result; a callable
 * (msgpack's unpacker) is given the body of a msgpack reply without out-of-band buffers. Every
 * other outcome -- what call() returns as a code, an error reply, another shape, a body the
 * decoder refuses -- raises NotDecoded(call()'s result) for the Python path to finish. */
/* msgpack's unpackb with the serialiser's options (serialisers.UNPACK_PLAIN, a functools.partial),
 * called with its keywords through vectorcall: a partial with keywords builds a dict per call,
 * which is about a third of unpacking a small body. */
#define UNPACK_MAX_KW 8
static struct {
    PyObject *partial, *fn, *kwnames;
    PyObject *values[UNPACK_MAX_KW];
    Py_ssize_t nkw;
} UP;

static PyObject *set_unpack(PyObject *mod, PyObject *partial) {
    PyObject *fn = PyObject_GetAttrString(partial, "func");
    PyObject *args = fn ? PyObject_GetAttrString(partial, "args") : NULL;
    PyObject *kw = args ? PyObject_GetAttrString(partial, "keywords") : NULL;
    PyObject *names = NULL;
    if (kw == NULL) goto done;
    if (!PyTuple_Check(args) || PyTuple_GET_SIZE(args) || !PyDict_Check(kw) || PyDict_GET_SIZE(kw) > UNPACK_MAX_KW) {
        PyErr_SetString(PyExc_ValueError, "set_unpack() takes partial(fn, **at most 8 keywords)");
        goto done;
    }
    names = PyTuple_New(PyDict_GET_SIZE(kw));
    if (names == NULL) goto done;
    for (Py_ssize_t i = 0; i < UP.nkw; i++) Py_CLEAR(UP.values[i]);
    Py_ssize_t pos = 0, i = 0;
    PyObject *key, *value;
    while (PyDict_Next(kw, &pos, &key, &value)) {
        PyTuple_SET_ITEM(names, i, Py_NewRef(key));
        UP.values[i++] = Py_NewRef(value);
    }
    UP.nkw = i;
    Py_XSETREF(UP.kwnames, names);
    Py_XSETREF(UP.fn, Py_NewRef(fn));
    Py_XSETREF(UP.partial, Py_NewRef(partial));
done:
    Py_XDECREF(fn);
    Py_XDECREF(args);
    Py_XDECREF(kw);
    if (PyErr_Occurred()) return NULL;
    Py_RETURN_NONE;
}

/* decoder(body), through the vectorcall above when it is the registered partial */
static inline PyObject *unpack_call(PyObject *decoder, PyObject *body) {
    if (decoder == UP.partial && UP.fn != NULL) {
        PyObject *argv[1 + UNPACK_MAX_KW];
        argv[0] = body;
        for (Py_ssize_t i = 0; i < UP.nkw; i++) argv[1 + i] = UP.values[i];
        return PyObject_Vectorcall(UP.fn, argv, 1, UP.kwnames);
    }
    return PyObject_CallOneArg(decoder, body);
}

/* The result of a usual reply (see call_decoded), or NULL with no exception set. */
static PyObject *decode_usual(PyObject *reply, PyObject *decoder) {
    if (!PyMemoryView_Check(reply)) return NULL;
    Py_buffer *v = PyMemoryView_GET_BUFFER(reply);
    const unsigned char *buf = (const unsigned char *)v->buf;
    Py_ssize_t len = v->len;
    if (len < 8 || buf[0] != 0) return NULL;
    if (decoder == (PyObject *)&PyBytes_Type) {
        PyObject *result = PyBytes_FromStringAndSize((const char *)buf + 8, len - 8);
        if (result == NULL) PyErr_Clear();
        return result;
    }
    if (len < 16 || le32(buf + 12) != 0 || (Py_ssize_t)le32(buf + 8) > len - 16) return NULL;
    PyObject *body = PyMemoryView_FromMemory((char *)buf + 16, le32(buf + 8), PyBUF_READ);
    PyObject *result = body ? unpack_call(decoder, body) : NULL;
    Py_XDECREF(body);
    if (result == NULL) PyErr_Clear();  /* Python decodes it again and words the error */
    return result;
}

static PyObject *Channel_call_decoded(Channel *self, PyObject *args) {
    Service *svc;
    Py_ssize_t slot, limit;
    PyObject *parts, *decoder;
    unsigned long long seq;
    double poll_s;
    if (!PyArg_ParseTuple(args, "O!nO!KndO", &ServiceType, &svc, &slot, &PyList_Type, &parts, &seq, &limit,
                          &poll_s, &decoder))
        return NULL;
    PyObject *reply = call_impl(self, svc, slot, parts, seq, limit, poll_s);
    if (reply == NULL) return NULL;
    PyObject *result = decode_usual(reply, decoder);
    if (result == NULL) PyErr_SetObject(NotDecoded, reply);
    Py_DECREF(reply);
    return result;
}

static PyObject *Channel_reply(Channel *self, PyObject *unused) {
    CHANNEL_OK(self);
    return reply_view(self);
}

static PyObject *Channel_wait(Channel *self, PyObject *args) {
    unsigned long long seq;
    double seconds;
    if (!PyArg_ParseTuple(args, "Kd", &seq, &seconds)) return NULL;
    CHANNEL_OK(self);
    int r;
    Py_BEGIN_ALLOW_THREADS
    r = wait_reply(self, seq, seconds);
    Py_END_ALLOW_THREADS
    if (r == -1) {
        if (PyErr_CheckSignals() < 0) return NULL;
        r = 0;
    }
    return PyLong_FromLong(r);
}

static PyObject *Channel_post(Channel *self, PyObject *unused) {
    CHANNEL_OK(self);
    sem_post(self->sem);
    Py_RETURN_NONE;
}

static PyObject *Channel_release(Channel *self, PyObject *unused) {
    unmap_buffer(&self->m);
    self->c = NULL;
    Py_RETURN_NONE;
}

static PyObject *spin_state(Spin *s) {
    return Py_BuildValue("{s:L,s:I,s:I,s:i}", "ok_ns", s->ok_ns, "skip", s->skip, "level", s->level,
                         "probe", s->probe);
}

static PyObject *Channel_spin_state(Channel *self, PyObject *unused) { return spin_state(&self->spin); }

static PyMethodDef Channel_methods[] = {
    {"spin_state", (PyCFunction)Channel_spin_state, METH_NOARGS, "the adaptive spin's state (diagnostics)"},
    {"call_decoded", (PyCFunction)Channel_call_decoded, METH_VARARGS,
     "call_decoded(service, slot, parts, seq, limit, poll_s, decoder) -> result, or raises NotDecoded"},
    {"call", (PyCFunction)Channel_call, METH_VARARGS,
     "call(service, slot, parts, seq, limit, poll_s) -> reply view, -1 overflow, 0 not yet, -3 too big"},
    {"reply", (PyCFunction)Channel_reply, METH_NOARGS, "the reply view (after wait() said 1), or -1"},
    {"wait", (PyCFunction)Channel_wait, METH_VARARGS, "wait(seq, seconds) -> 1 replied, 0 not yet"},
    {"post", (PyCFunction)Channel_post, METH_NOARGS, "wake the channel's client"},
    {"release", (PyCFunction)Channel_release, METH_NOARGS, "drop the buffer of the mapping"},
    {NULL}};

static PyMemberDef Channel_members[] = {
    {"busy", T_INT, offsetof(Channel, busy), READONLY, "a Caller is inside a call on this channel"},
    {"close_requested", T_INT, offsetof(Channel, close_requested), 0,
     "set by ClientChannel.request_close: the Caller inside a call closes the channel after it"},
    {NULL}};

static PyTypeObject ChannelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "speedysvc.shm._fastpath.Channel",
    .tp_basicsize = sizeof(Channel),
    .tp_dealloc = (destructor)Channel_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Channel(mmap, semaphore_name): the compiled view of a client channel",
    .tp_methods = Channel_methods,
    .tp_members = Channel_members,
    .tp_init = (initproc)Channel_init,
    .tp_new = PyType_GenericNew,
};

/* ---- Route and Caller: connect()'s method attributes, with no Python frame per call ------
 *
 * A Route is one SHMClient's steady state in one thread, as its Python side last saw it: the
 * thread's channel, the service segment it has a call slot in, the slot, the request limit
 * (a Caller finds it in the client's threading.local). Python arms it after a call it made
 * (SHMClient.arm_route) and disarms it when that state changes; what
 * Python can change under it without saying so is checked on every call (the channel's and
 * the segment's mappings, a close request, the service's shutdown word, a fork, another
 * thread). A Caller is one remote method of that client: on the steady state it encodes the
 * arguments, writes them into the channel, waits and decodes the reply itself; anything else
 * goes to Python untouched -- `fallback(args, kwargs)` before anything was sent, `resume(channel,
 * code, seq, args, kwargs)` after (errors, timeouts, a dead worker, overflow, a replaced
 * segment), so every semantic stays in one place, in Python. */
static unsigned long forks;  /* bumped in a forked child: its parent's routes are not its own */
static void after_fork_child(void) { forks++; }

typedef struct {
    PyObject_HEAD
    int armed;
    unsigned long tid, forks;
    Channel *ch;          /* the thread's channel (compiled view) */
    PyObject *channel;    /* its ClientChannel */
    Service *svc;         /* the service segment the channel has a call slot in */
    Py_ssize_t slot, limit;
    u64 seq;              /* sequence numbers of its calls: bit 62 set, never one of Python's */
} Route;

static void Route_clear_refs(Route *self) {
    self->armed = 0;
    Py_CLEAR(self->ch);
    Py_CLEAR(self->channel);
    Py_CLEAR(self->svc);
}

static void Route_dealloc(Route *self) {
    Route_clear_refs(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *Route_arm(Route *self, PyObject *args) {
    Channel *ch;
    Service *svc;
    PyObject *channel;
    Py_ssize_t slot, limit;
    if (!PyArg_ParseTuple(args, "O!OO!nn", &ChannelType, &ch, &channel, &ServiceType, &svc, &slot, &limit))
        return NULL;
    if (slot < 0 || slot >= L.slot_count) return PyErr_Format(PyExc_IndexError, "slot %zd", slot);
    Route_clear_refs(self);
    Py_INCREF(ch);
    Py_INCREF(channel);
    Py_INCREF(svc);
    self->ch = ch;
    self->channel = channel;
    self->svc = svc;
    self->slot = slot;
    self->limit = limit;
    self->tid = PyThread_get_thread_ident();
    self->forks = forks;
    if (self->seq == 0) self->seq = (u64)1 << 62;
    self->armed = 1;
    Py_RETURN_NONE;
}

static PyObject *Route_disarm(Route *self, PyObject *unused) {
    Route_clear_refs(self);
    Py_RETURN_NONE;
}

static PyObject *Route_armed(Route *self, PyObject *unused) {
    return PyBool_FromLong(self->armed && self->tid == PyThread_get_thread_ident() && self->forks == forks);
}

static PyMethodDef Route_methods[] = {
    {"arm", (PyCFunction)Route_arm, METH_VARARGS,
     "arm(channel_fast, client_channel, service_fast, slot, limit): the calling thread's steady state"},
    {"disarm", (PyCFunction)Route_disarm, METH_NOARGS, "forget it: Callers go through Python"},
    {"armed", (PyCFunction)Route_armed, METH_NOARGS, "armed for the calling thread"},
    {NULL}};

static PyTypeObject RouteType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "speedysvc.shm._fastpath.Route",
    .tp_basicsize = sizeof(Route),
    .tp_dealloc = (destructor)Route_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Route(): one SHMClient's steady state, shared by its Callers",
    .tp_methods = Route_methods,
    .tp_new = PyType_GenericNew,
};

/* The route can carry a call of the calling thread now: what Python may have changed under it
 * without disarming it (the channel or segment unmapped, a close asked for, a call already in
 * progress on the channel, the service stopped, a fork, another thread). */
static inline int route_ready(Route *r) {
    Channel *ch = r->ch;
    return r->armed && r->tid == PyThread_get_thread_ident() && r->forks == forks && ch->m.has_view &&
           !ch->close_requested && !ch->busy && r->svc->m.has_view && !LOAD(&r->svc->q[L.h_shutdown]);
}

/* obj.method(), leaving the exception set before it (if any) as it was: 0, or -1 when the call
 * failed (its own error is dropped) */
static int call_keeping_error(PyObject *obj, const char *method) {
    PyObject *exc_type, *exc_value, *exc_tb;
    PyErr_Fetch(&exc_type, &exc_value, &exc_tb);
    PyObject *out = PyObject_CallMethod(obj, method, NULL);
    Py_XDECREF(out);
    if (out == NULL) PyErr_Clear();
    PyErr_Restore(exc_type, exc_value, exc_tb);
    return out == NULL ? -1 : 0;
}

typedef struct {
    PyObject_HEAD
    vectorcallfunc vectorcall;
    PyObject *local;     /* the client's threading.local: each thread's Route is its `route` */
    PyObject *prefix;    /* bytes: the encoded request header and method name */
    int raw;             /* 1: one bytes argument, written as it is; 0: msgpack [args, kwargs] */
    int packing;         /* inside pack(): a re-entrant call (a finalizer calling this method) goes
                            through Python, so the packer's buffer is never shared */
    PyObject *pack;      /* msgpack Packer(...).pack, this Caller's own */
    PyObject *decoder;   /* what decode_usual() decodes a usual reply with */
    PyObject *decode;    /* the method's Python decode (error replies, other shapes) */
    PyObject *fallback;  /* fallback(args, kwargs): the Python path, before anything was sent */
    PyObject *resume;    /* resume(channel, code, seq, args, kwargs): Python finishes a sent call */
    PyObject *with_timeout_factory;
    PyObject *label;     /* repr */
} Caller;

static int Caller_traverse(Caller *self, visitproc visit, void *arg) {
    Py_VISIT(self->local);
    Py_VISIT(self->pack);
    Py_VISIT(self->decoder);
    Py_VISIT(self->decode);
    Py_VISIT(self->fallback);
    Py_VISIT(self->resume);
    Py_VISIT(self->with_timeout_factory);
    return 0;
}

static int Caller_clear(Caller *self) {
    Py_CLEAR(self->local);
    Py_CLEAR(self->prefix);
    Py_CLEAR(self->pack);
    Py_CLEAR(self->decoder);
    Py_CLEAR(self->decode);
    Py_CLEAR(self->fallback);
    Py_CLEAR(self->resume);
    Py_CLEAR(self->with_timeout_factory);
    Py_CLEAR(self->label);
    return 0;
}

static void Caller_dealloc(Caller *self) {
    PyObject_GC_UnTrack(self);
    Caller_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

/* args as a tuple and kwargs as a dict (NULL: none), from a vectorcall's arguments */
static int call_arguments(PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames, PyObject **tuple,
                          PyObject **dict) {
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    *tuple = PyTuple_New(nargs);
    *dict = NULL;
    if (*tuple == NULL) return -1;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        Py_INCREF(args[i]);
        PyTuple_SET_ITEM(*tuple, i, args[i]);
    }
    if (nkw) {
        *dict = PyDict_New();
        if (*dict == NULL) return -1;
        for (Py_ssize_t i = 0; i < nkw; i++)
            if (PyDict_SetItem(*dict, PyTuple_GET_ITEM(kwnames, i), args[nargs + i]) < 0) return -1;
    }
    return 0;
}

static PyObject *EMPTY_DICT;  /* packed as the kwargs of a call without keyword arguments; never exposed */
static PyObject *ROUTE_ATTR;  /* "route" */

/* The calling thread's Route in `local` (a new reference), made unarmed on first use; NULL
 * with an exception set only when it cannot be made. */
static Route *thread_route(PyObject *local) {
    PyObject *r = PyObject_GetAttr(local, ROUTE_ATTR);
    if (r != NULL && Py_IS_TYPE(r, &RouteType)) return (Route *)r;
    Py_XDECREF(r);
    if (r == NULL) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)) return NULL;
        PyErr_Clear();
    }
    r = PyObject_CallNoArgs((PyObject *)&RouteType);
    if (r != NULL && PyObject_SetAttr(local, ROUTE_ATTR, r) < 0) Py_CLEAR(r);
    return (Route *)r;
}

static PyObject *Caller_vectorcall(Caller *self, PyObject *const *args, size_t nargsf, PyObject *kwnames) {
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *tuple = NULL, *dict = NULL, *body = NULL, *reply = NULL, *result = NULL;
    Route *r = thread_route(self->local);
    if (r == NULL) return NULL;
    Channel *ch = r->ch;
    if (!route_ready(r) || self->packing) goto fallback;
    Py_ssize_t limit = ch->m.view.len - L.data_offset;
    if (r->limit < limit) limit = r->limit;
    char *dst = (char *)ch->m.view.buf + L.data_offset;
    Py_ssize_t plen = PyBytes_GET_SIZE(self->prefix), size;
    if (self->raw) {
        if (nargs != 1 || (kwnames && PyTuple_GET_SIZE(kwnames)) || !PyBytes_CheckExact(args[0])) goto fallback;
        size = plen + PyBytes_GET_SIZE(args[0]);
        if (size > limit) goto fallback;
        memcpy(dst, PyBytes_AS_STRING(self->prefix), plen);
        memcpy(dst + plen, PyBytes_AS_STRING(args[0]), PyBytes_GET_SIZE(args[0]));
    } else {
        if (call_arguments(args, nargs, kwnames, &tuple, &dict) < 0) goto error;
        PyObject *pair = PyTuple_Pack(2, tuple, dict ? dict : EMPTY_DICT);
        if (pair == NULL) goto error;
        self->packing = 1;
        body = PyObject_CallOneArg(self->pack, pair);
        self->packing = 0;
        Py_DECREF(pair);
        if (body == NULL) {
            if (!(PyErr_ExceptionMatches(PyExc_TypeError) || PyErr_ExceptionMatches(PyExc_ValueError) ||
                  PyErr_ExceptionMatches(PyExc_OverflowError)))
                goto error;
            PyErr_Clear();  /* arrays, sets, numpy scalars: the serialiser's general path */
            goto fallback;
        }
        if (!PyBytes_CheckExact(body) || PyBytes_GET_SIZE(body) > 0xFFFFFFFFLL) goto fallback;
        Py_ssize_t blen = PyBytes_GET_SIZE(body);
        size = plen + 8 + blen;
        /* pack ran Python code: look at the route again */
        if (size > limit || !route_ready(r) || r->ch != ch) goto fallback;
        unsigned char head[8] = {(unsigned char)(blen & 0xFF), (unsigned char)(blen >> 8 & 0xFF),
                                 (unsigned char)(blen >> 16 & 0xFF), (unsigned char)(blen >> 24 & 0xFF), 0, 0, 0, 0};
        memcpy(dst, PyBytes_AS_STRING(self->prefix), plen);
        memcpy(dst + plen, head, 8);
        memcpy(dst + plen + 8, PyBytes_AS_STRING(body), blen);
        Py_CLEAR(body);
    }
    Service *svc = r->svc;
    PyObject *channel = r->channel;
    Py_INCREF(ch);
    Py_INCREF(svc);
    Py_INCREF(channel);  /* the route may be re-armed or disarmed by another thread meanwhile */
    u64 seq = ++r->seq;
    ch->busy = 1;
    reply = send_wait(ch, svc, r->slot, seq, size, (double)L.poll_ns / 1e9);
    if (reply != NULL) {
        result = decode_usual(reply, self->decoder);
        if (result == NULL && !PyErr_Occurred()) {
            if (PyMemoryView_Check(reply)) {  /* an error reply, or a shape Python decodes */
                result = PyObject_CallOneArg(self->decode, reply);  /* raises the remote error */
                if (call_keeping_error(reply, "release") < 0 && result != NULL) {
                    Py_CLEAR(result);  /* the result still uses the channel: cannot happen */
                    PyErr_SetString(PyExc_BufferError, "the reply is still in use after decoding");
                }
            } else if ((tuple != NULL || call_arguments(args, nargs, kwnames, &tuple, &dict) == 0)) {
                /* not replied within the first poll, or an overflow reply */
                PyObject *seq_obj = PyLong_FromUnsignedLongLong(seq);
                if (seq_obj != NULL)
                    result = PyObject_CallFunctionObjArgs(self->resume, channel, reply, seq_obj, tuple,
                                                          dict ? dict : Py_None, (PyObject *)r, NULL);
                Py_XDECREF(seq_obj);
            }
        }
    }
    ch->busy = 0;
    if (ch->close_requested) call_keeping_error(channel, "close");  /* asked while we were in the call */
    Py_DECREF(ch);
    Py_DECREF(svc);
    Py_DECREF(channel);
    Py_XDECREF(reply);
    Py_XDECREF(tuple);
    Py_XDECREF(dict);
    Py_DECREF(r);
    return result;
fallback:
    Py_CLEAR(body);
    if (tuple == NULL && call_arguments(args, nargs, kwnames, &tuple, &dict) < 0) goto error;
    result = PyObject_CallFunctionObjArgs(self->fallback, tuple, dict ? dict : Py_None, (PyObject *)r, NULL);
    Py_DECREF(tuple);
    Py_XDECREF(dict);
    Py_DECREF(r);
    return result;
error:
    Py_XDECREF(body);
    Py_XDECREF(tuple);
    Py_XDECREF(dict);
    Py_DECREF(r);
    return NULL;
}

static int Caller_init(Caller *self, PyObject *args, PyObject *kw) {
    PyObject *local, *prefix, *pack, *decoder, *decode, *fallback, *resume, *factory, *label;
    int raw;
    if (!PyArg_ParseTuple(args, "OO!pOOOOOOU", &local, &PyBytes_Type, &prefix, &raw, &pack, &decoder, &decode,
                          &fallback, &resume, &factory, &label))
        return -1;
    Caller_clear(self);
    self->local = Py_NewRef(local);
    Py_INCREF(prefix);
    self->prefix = prefix;
    self->raw = raw;
    self->pack = Py_NewRef(pack);
    self->decoder = Py_NewRef(decoder);
    self->decode = Py_NewRef(decode);
    self->fallback = Py_NewRef(fallback);
    self->resume = Py_NewRef(resume);
    self->with_timeout_factory = Py_NewRef(factory);
    self->label = Py_NewRef(label);
    self->vectorcall = (vectorcallfunc)Caller_vectorcall;
    return 0;
}

static PyObject *Caller_with_timeout(Caller *self, PyObject *seconds) {
    return PyObject_CallOneArg(self->with_timeout_factory, seconds);
}

static PyObject *Caller_repr(Caller *self) { return Py_NewRef(self->label); }

static PyMethodDef Caller_methods[] = {
    {"with_timeout", (PyCFunction)Caller_with_timeout, METH_O,
     "The same method with a per-call timeout: client.fit.with_timeout(600)(x)."},
    {NULL}};

static PyTypeObject CallerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "speedysvc.shm._fastpath.Caller",
    .tp_basicsize = sizeof(Caller),
    .tp_dealloc = (destructor)Caller_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_HAVE_VECTORCALL,
    .tp_doc = "Caller(local, prefix, raw, pack, decoder, decode, fallback, resume, with_timeout, label):\n"
              "one remote method of an SHMClient, called without a Python frame (see SHMClient.bound_method)",
    .tp_vectorcall_offset = offsetof(Caller, vectorcall),
    .tp_call = PyVectorcall_Call,
    .tp_repr = (reprfunc)Caller_repr,
    .tp_traverse = (traverseproc)Caller_traverse,
    .tp_clear = (inquiry)Caller_clear,
    .tp_methods = Caller_methods,
    .tp_init = (initproc)Caller_init,
    .tp_new = PyType_GenericNew,
};

/* ---- Worker: one worker's side of a service --------------------------------------------- */
typedef struct {
    PyObject_HEAD
    Service *svc;
    Py_ssize_t wslot;
    u64 me;           /* spinner id: worker slot + 1 */
    u64 pid;
    Spin spin;
    Py_ssize_t next_slot;  /* where the next scan starts (after the last slot served): no slot starves */
    u64 busy_start;
    /* compiled dispatch (set_dispatch): see serve() */
    PyObject *table;       /* Dispatcher.fast: name bytes -> (code, fn, serialiser, insecure, stats, copy) */
    PyObject *complete;    /* Dispatcher.complete(fast entry, start_ns, result, exc) -> reply parts */
    PyObject *unpack;      /* msgpack.unpackb with the serialiser's options */
    PyObject *pack;        /* a msgpack Packer's pack, with the serialiser's options: this worker's own */
    int packing;           /* inside pack(): a method called re-entrantly goes through Python */
    PyObject *last_name;   /* the method named by the previous call, and its table entry: */
    PyObject *last_entry;  /* a caller repeating a method costs no bytes object and no lookup */
    double bounds[256];    /* latency histogram: lower bounds (ns) of the buckets above the first */
    Py_ssize_t nbounds;
    long min_bucket, raw_code, msgpack_code;
    u64 stop_word, shutdown_word;  /* q indexes: this worker's stop request, the service's shutdown */
    u64 py_calls, py_errors;       /* the Dispatcher's counts, as last told by Python */
    u64 fast_calls;                /* calls served entirely here (their errors go through Python) */
} Worker;

static void Worker_dealloc(Worker *self) {
    Py_XDECREF(self->svc);
    Py_XDECREF(self->table);
    Py_XDECREF(self->complete);
    Py_XDECREF(self->unpack);
    Py_XDECREF(self->pack);
    Py_XDECREF(self->last_name);
    Py_XDECREF(self->last_entry);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Worker_init(Worker *self, PyObject *args, PyObject *kw) {
    Service *svc;
    if (!PyArg_ParseTuple(args, "O!n", &ServiceType, &svc, &self->wslot)) return -1;
    if (self->wslot < 0 || self->wslot >= L.max_workers) {
        PyErr_Format(PyExc_IndexError, "worker slot %zd", self->wslot);
        return -1;
    }
    Py_INCREF(svc);
    Py_XSETREF(self->svc, svc);
    self->me = (u64)self->wslot + 1;
    self->pid = (u64)getpid();
    spin_init(&self->spin);
    return 0;
}

static inline u64 *wword(Worker *w, Py_ssize_t i) {
    return &w->svc->q[L.workers_word + w->wslot * L.worker_words + i];
}

/* Clear one set pending bit; its slot, or -1. The scan starts just after the slot served last
 * and wraps around, so busy callers on low slots cannot starve a caller on a higher one. */
static Py_ssize_t claim_any(Worker *w) {
    Service *s = w->svc;
    Py_ssize_t start = w->next_slot % L.slot_count;
    for (Py_ssize_t k = 0; k <= L.pending_words; k++) {
        Py_ssize_t wi = ((start >> 6) + k) % L.pending_words;
        u64 *word = &s->q[L.pending_word + wi];
        /* first word: only bits at or after the start; the wrap-around pass (k == words) the rest */
        u64 allowed = ~(u64)0;
        if (k == 0) allowed = ~(u64)0 << (start & 63);
        else if (k == L.pending_words) allowed = (start & 63) ? (((u64)1 << (start & 63)) - 1) : 0;
        u64 v = LOAD(word) & allowed;
        while (v) {
            int bit = __builtin_ctzll(v);
            u64 mask = (u64)1 << bit;
            u64 old = __atomic_fetch_and(word, ~mask, __ATOMIC_SEQ_CST);
            if (old & mask) {
                w->next_slot = wi * 64 + bit + 1;
                return wi * 64 + bit;
            }
            v = old & ~mask & allowed;
        }
    }
    return -1;
}

static int pending_any(Service *s) {
    for (Py_ssize_t k = 0; k < L.pending_words; k++)
        if (LOAD(&s->q[L.pending_word + k])) return 1;
    return 0;
}

/* take(wait_s) -> (slot, owner, gen) or None. Spins (one idle worker per service at a time,
 * adaptively) then blocks on the queue semaphore; writes the heartbeat. */
static PyObject *Worker_take(Worker *self, PyObject *arg) {
    double wait_s = PyFloat_AsDouble(arg);
    if (wait_s == -1.0 && PyErr_Occurred()) return NULL;
    Service *s = self->svc;
    if (!s->m.has_view) return PyErr_Format(PyExc_ValueError, "service mapping released");
    long long b = spin_budget(&self->spin);
    Py_ssize_t slot = -1;
    int caught = 0, spun = 0;
    int sig = 0;
    u64 start, end_t;
    Py_BEGIN_ALLOW_THREADS
    start = mono_ns();
    u64 expected = 0;
    if (b > 0 && CAS(&s->q[L.h_spinner], &expected, self->me)) {
        spun = 1;
        u64 end = start + (u64)b;
        unsigned k = 0;
        for (;;) {
            if (pending_any(s)) {
                slot = claim_any(self);
                if (slot >= 0) {
                    sem_trywait(s->qsem); /* its wake-up, if posted already */
                    caught = 1;
                    break;
                }
            }
            cpu_relax();
            if ((++k & 15) == 0 && mono_ns() >= end) break;
        }
        expected = self->me;
        CAS(&s->q[L.h_spinner], &expected, 0);
    }
    if (slot < 0) {
        int r = sem_wait_for(s->qsem, wait_s);
        if (r == -2) sig = 1;
        /* on a token, or on a timeout: a call whose client died between setting its bit and
         * posting has no token, so an idle worker also looks */
        slot = claim_any(self);
    }
    end_t = mono_ns();
    Py_END_ALLOW_THREADS
    spin_result(&self->spin, spun ? b : 0, caught, (long long)(end_t - start));
    STORE(wword(self, L.w_heartbeat), wall_ns());
    if (sig && PyErr_CheckSignals() < 0) return NULL;
    if (slot < 0) Py_RETURN_NONE;
    u64 owner = LOAD(slot_word(s, slot, 0));
    u64 gen = LOAD(slot_word(s, slot, 1));
    return Py_BuildValue("nKK", slot, (unsigned long long)owner, (unsigned long long)gen);
}

/* claim(channel) -> request length, or -1 (nothing to do: abandoned, stale bit, taken by
 * another worker), or -2 (the channel's words are garbage). Marks the worker busy. */
static PyObject *Worker_claim(Worker *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &ChannelType)) return PyErr_Format(PyExc_TypeError, "claim(Channel)");
    Channel *ch = (Channel *)arg;
    CHANNEL_OK(ch);
    u64 *c = ch->c;
    u64 expected = L.s_request;
    if (LOAD(&c[L.c_state]) != expected) return PyLong_FromLong(-1);
    u64 req_len = LOAD(&c[L.c_req_len]);
    if (req_len > (u64)(ch->m.view.len - L.data_offset)) return PyLong_FromLong(-2);
    if (!CAS(&c[L.c_state], &expected, L.s_claimed)) return PyLong_FromLong(-1);
    STORE(&c[L.c_worker_pid], self->pid);
    ch->claimed_seq = LOAD(&c[L.c_seq]);
    ch->claimed_len = req_len;
    self->busy_start = wall_ns();
    STORE(wword(self, L.w_busy_since), self->busy_start);
    STORE(wword(self, L.w_client_pid), LOAD(&c[L.c_client_pid]));
    STORE(wword(self, L.w_state), L.worker_busy);
    return PyLong_FromUnsignedLongLong(req_len);
}

static void mark_idle(Worker *self, unsigned long long calls, unsigned long long errors) {
    self->py_calls = calls;
    self->py_errors = errors;
    calls += self->fast_calls;
    u64 now = wall_ns();
    STORE(wword(self, L.w_state), L.worker_idle);
    STORE(wword(self, L.w_busy_since), 0);
    u64 *busy = wword(self, L.w_busy_ns);
    STORE(busy, LOAD(busy) + (now - self->busy_start));
    STORE(wword(self, L.w_calls), calls);
    STORE(wword(self, L.w_errors), errors);
    STORE(wword(self, L.w_heartbeat), now);
}

/* The reply is written at `offset` in the channel: tell the client and mark the worker idle. */
static void publish_reply(Worker *self, Channel *ch, Py_ssize_t offset, Py_ssize_t size) {
    u64 *c = ch->c;
    c[L.c_overflow] = 0;
    c[L.c_resp_offset] = (u64)offset;
    c[L.c_resp_len] = (u64)size;
    STORE(&c[L.c_state], L.s_reply);
    sem_post(ch->sem);
    mark_idle(self, self->py_calls, self->py_errors);
}

/* Write `parts` (a list of buffers) as the reply of the call claimed on `ch`: 1 replied, 0 nobody
 * wants it (the client gave up; the worker is marked idle), -1 too big for the channel (the
 * caller writes an overflow segment, then finish()), -2 an exception is set. */
static int reply_parts(Worker *self, Channel *ch, PyObject *parts) {
    u64 *c = ch->c;
    if (LOAD(&c[L.c_state]) != L.s_claimed || LOAD(&c[L.c_seq]) != ch->claimed_seq) {
        mark_idle(self, self->py_calls, self->py_errors);
        return 0;
    }
    Py_ssize_t n = PyList_GET_SIZE(parts);
    Py_buffer views[8];
    if (n > 8) return -1; /* unusual shape: the Python path writes it */
    Py_ssize_t size = 0, got = 0;
    for (; got < n; got++) {
        if (PyObject_GetBuffer(PyList_GET_ITEM(parts, got), &views[got], PyBUF_SIMPLE) < 0) {
            for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&views[i]);
            return -2;
        }
        size += views[got].len;
    }
    Py_ssize_t offset = (L.data_offset + (Py_ssize_t)ch->claimed_len + 63) & ~(Py_ssize_t)63;
    int fits = offset + size <= ch->m.view.len;
    if (fits) {
        char *dst = (char *)ch->m.view.buf + offset;
        for (Py_ssize_t i = 0; i < n; i++) {
            memcpy(dst, views[i].buf, views[i].len);
            dst += views[i].len;
        }
    }
    for (Py_ssize_t i = 0; i < n; i++) PyBuffer_Release(&views[i]);
    if (!fits) return -1;
    publish_reply(self, ch, offset, size);
    return 1;
}

/* reply(channel, parts, calls, errors) -> 1 replied, 0 nobody wants it (the client gave up),
 * or -1: too big for the channel (the caller writes an overflow segment, then finish()).
 * Marks the worker idle unless -1. */
static PyObject *Worker_reply(Worker *self, PyObject *args) {
    Channel *ch;
    PyObject *parts;
    unsigned long long calls, errors;
    if (!PyArg_ParseTuple(args, "O!O!KK", &ChannelType, &ch, &PyList_Type, &parts, &calls, &errors))
        return NULL;
    CHANNEL_OK(ch);
    self->py_calls = calls;
    self->py_errors = errors;
    int r = reply_parts(self, ch, parts);
    return r == -2 ? NULL : PyLong_FromLong(r);
}

/* finish(channel, overflow_id, size, calls, errors): the reply went to an overflow segment
 * (overflow_id 0: no reply at all). Publishes it and marks the worker idle. */
static PyObject *Worker_finish(Worker *self, PyObject *args) {
    Channel *ch;
    unsigned long long overflow, size, calls, errors;
    if (!PyArg_ParseTuple(args, "O!KKKK", &ChannelType, &ch, &overflow, &size, &calls, &errors)) return NULL;
    CHANNEL_OK(ch);
    u64 *c = ch->c;
    if (overflow && LOAD(&c[L.c_state]) == L.s_claimed && LOAD(&c[L.c_seq]) == ch->claimed_seq) {
        c[L.c_overflow] = overflow;
        c[L.c_resp_len] = size;
        STORE(&c[L.c_state], L.s_reply);
        sem_post(ch->sem);
    }
    mark_idle(self, calls, errors);
    Py_RETURN_NONE;
}

/* next(channels, wait_s): take() and, when `channels` (owner -> (gen, segment, Channel)) has
 * the channel at the right generation, claim it too. Returns None, ((gen, segment, Channel),
 * request length) for a claimed call, or (slot, owner, gen) for Python to open the channel. */
static PyObject *next_call(Worker *self, PyObject *channels, double wait_s) {
    PyObject *wait = PyFloat_FromDouble(wait_s);
    if (wait == NULL) return NULL;
    PyObject *got = Worker_take(self, wait);
    Py_DECREF(wait);
    if (got == NULL || got == Py_None) return got;
    PyObject *owner = PyTuple_GET_ITEM(got, 1);
    PyObject *entry = PyDict_GetItemWithError(channels, owner);  /* borrowed */
    if (entry == NULL) {
        if (PyErr_Occurred()) {
            Py_DECREF(got);
            return NULL;
        }
        return got;
    }
    if (!PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) != 3 ||
        PyObject_RichCompareBool(PyTuple_GET_ITEM(entry, 0), PyTuple_GET_ITEM(got, 2), Py_EQ) != 1 ||
        !PyObject_TypeCheck(PyTuple_GET_ITEM(entry, 2), &ChannelType)) {
        PyErr_Clear();
        return got;  /* another generation: Python re-opens it */
    }
    PyObject *claimed = Worker_claim(self, PyTuple_GET_ITEM(entry, 2));
    if (claimed == NULL) {
        Py_DECREF(got);
        return NULL;
    }
    long n = PyLong_AsLong(claimed);
    if (n == -2) {  /* garbage: Python reports it */
        Py_DECREF(claimed);
        return got;
    }
    Py_DECREF(got);
    if (n < 0) {
        Py_DECREF(claimed);
        Py_RETURN_NONE;
    }
    PyObject *result = PyTuple_Pack(2, entry, claimed);
    Py_DECREF(claimed);
    return result;
}

static PyObject *Worker_next(Worker *self, PyObject *args) {
    PyObject *channels;
    double wait_s;
    if (!PyArg_ParseTuple(args, "O!d", &PyDict_Type, &channels, &wait_s)) return NULL;
    return next_call(self, channels, wait_s);
}

/* ---- compiled dispatch ------------------------------------------------------------------
 * serve() runs whole calls of the two encoders that need no Python of their own -- raw (bytes
 * in, bytes out) and msgpack without out-of-band arrays -- here: parse the request header, find
 * the method, call it, encode, write the reply, wake the caller, count the call, and go on to
 * the next call without returning to the interpreter's loop. Python still runs the method
 * itself and msgpack's own (C) packer and unpacker.
 *
 * Anything else goes back to Python (Worker.next()'s results): before the method runs, an
 * unknown method, another encoder, a payload that is not the usual shape or does not decode
 * (Python decodes it again and words the error); after the method ran, an exception or a
 * result that needs the serialiser's general path (Dispatcher.complete() builds the reply). */

static PyObject *ONE;  /* the int 1, made at import */

static PyObject *Worker_set_dispatch(Worker *self, PyObject *args) {
    PyObject *table, *complete, *unpack, *pack, *bounds;
    long min_bucket, raw_code, msgpack_code;
    unsigned long long stop_word, shutdown_word;
    if (!PyArg_ParseTuple(args, "O!OOOO!lllKK", &PyDict_Type, &table, &complete, &unpack, &pack,
                          &PyTuple_Type, &bounds, &min_bucket, &raw_code, &msgpack_code, &stop_word,
                          &shutdown_word))
        return NULL;
    Py_ssize_t nb = PyTuple_GET_SIZE(bounds);
    if (nb > (Py_ssize_t)(sizeof(self->bounds) / sizeof(self->bounds[0])))
        return PyErr_Format(PyExc_ValueError, "%zd histogram bounds (at most 256)", nb);
    for (Py_ssize_t i = 0; i < nb; i++) {
        self->bounds[i] = PyFloat_AsDouble(PyTuple_GET_ITEM(bounds, i));
        if (self->bounds[i] == -1.0 && PyErr_Occurred()) return NULL;
    }
    if (stop_word >= (unsigned long long)(self->svc->m.view.len / 8) ||
        shutdown_word >= (unsigned long long)(self->svc->m.view.len / 8))
        return PyErr_Format(PyExc_IndexError, "stop or shutdown word outside the service segment");
    self->nbounds = nb;
    self->min_bucket = min_bucket;
    self->raw_code = raw_code;
    self->msgpack_code = msgpack_code;
    self->stop_word = stop_word;
    self->shutdown_word = shutdown_word;
    Py_INCREF(table);
    Py_XSETREF(self->table, table);
    Py_INCREF(complete);
    Py_XSETREF(self->complete, complete);
    Py_INCREF(unpack);
    Py_XSETREF(self->unpack, unpack);
    Py_INCREF(pack);
    Py_XSETREF(self->pack, pack);
    Py_CLEAR(self->last_name);
    Py_CLEAR(self->last_entry);
    Py_RETURN_NONE;
}

/* One more call of a method, `elapsed` ns long, in its stats list [calls, errors, {bucket: n}]
 * (the same numbers Dispatcher.handle() keeps). */
static int count_call(Worker *self, PyObject *stats, u64 elapsed) {
    self->fast_calls++;  /* the worker table's count, whatever the stats list looks like */
    if (!PyList_CheckExact(stats) || PyList_GET_SIZE(stats) < 3) return 0;
    PyObject *n = PyNumber_Add(PyList_GET_ITEM(stats, 0), ONE);
    if (n == NULL) return -1;
    PyList_SetItem(stats, 0, n); /* steals n */
    Py_ssize_t lo = 0, hi = self->nbounds;  /* bisect_right */
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if ((double)elapsed < self->bounds[mid]) hi = mid;
        else lo = mid + 1;
    }
    PyObject *hist = PyList_GET_ITEM(stats, 2);
    if (!PyDict_CheckExact(hist)) return 0;
    PyObject *key = PyLong_FromLong(self->min_bucket + (long)lo);
    if (key == NULL) return -1;
    PyObject *old = PyDict_GetItemWithError(hist, key);
    PyObject *count = old ? PyNumber_Add(old, ONE) : PyLong_FromLong(1);
    int r = count ? PyDict_SetItem(hist, key, count) : -1;
    Py_DECREF(key);
    Py_XDECREF(count);
    return r;
}

/* Write [header][body] as the claimed call's reply: 1 replied, 0 nobody wants it, -1 too big. */
static int reply_bytes(Worker *self, Channel *ch, const char *head, Py_ssize_t head_len,
                       const char *body, Py_ssize_t body_len) {
    u64 *c = ch->c;
    if (!ch->m.has_view || LOAD(&c[L.c_state]) != L.s_claimed || LOAD(&c[L.c_seq]) != ch->claimed_seq) {
        mark_idle(self, self->py_calls, self->py_errors);
        return 0;
    }
    Py_ssize_t offset = (L.data_offset + (Py_ssize_t)ch->claimed_len + 63) & ~(Py_ssize_t)63;
    Py_ssize_t size = head_len + body_len;
    if (offset + size > ch->m.view.len) return -1;
    char *dst = (char *)ch->m.view.buf + offset;
    memcpy(dst, head, head_len);
    memcpy(dst + head_len, body, body_len);
    publish_reply(self, ch, offset, size);
    return 1;
}

/* The method's table entry for a request, or NULL (borrowed; no exception set). */
static PyObject *find_method(Worker *self, const unsigned char *name, Py_ssize_t len) {
    PyObject *last = self->last_name;
    if (last && PyBytes_GET_SIZE(last) == len && memcmp(PyBytes_AS_STRING(last), name, len) == 0)
        return self->last_entry;
    PyObject *key = PyBytes_FromStringAndSize((const char *)name, len);
    if (key == NULL) {
        PyErr_Clear();
        return NULL;
    }
    PyObject *entry = PyDict_GetItemWithError(self->table, key);
    if (entry == NULL || !PyTuple_Check(entry) || PyTuple_GET_SIZE(entry) < 5) {
        PyErr_Clear();
        Py_DECREF(key);
        return NULL;
    }
    Py_INCREF(entry);
    Py_XSETREF(self->last_entry, entry);
    Py_XSETREF(self->last_name, key);
    return entry;
}

/* The rest of a call Python must finish (an exception, or a result the quick encoding cannot
 * take): Dispatcher.complete() returns the reply parts. Steals `result` (may be NULL: then
 * the exception set is the method's). */
static int complete_in_python(Worker *self, Channel *ch, PyObject *entry, u64 start,
                              PyObject *result, PyObject **overflow) {
    PyObject *exc = Py_None, *type = NULL, *value = NULL, *tb = NULL;
    if (result == NULL) {
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (value == NULL) {  /* cannot happen for a raised exception; be safe */
            Py_XDECREF(type);
            Py_XDECREF(tb);
            value = PyObject_CallNoArgs(PyExc_SystemError);
            if (value == NULL) return -2;
            type = NULL;
            tb = NULL;
        }
        if (tb != NULL) PyException_SetTraceback(value, tb);
        exc = value;
    }
    PyObject *start_obj = PyLong_FromUnsignedLongLong(start);
    PyObject *parts = start_obj ? PyObject_CallFunctionObjArgs(self->complete, entry, start_obj,
                                                                result ? result : Py_None, exc, NULL)
                                : NULL;
    Py_XDECREF(start_obj);
    Py_XDECREF(result);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (parts == NULL) return -2;  /* KeyboardInterrupt, SystemExit: the worker stops */
    if (!PyList_CheckExact(parts)) {
        Py_DECREF(parts);
        PyErr_SetString(PyExc_TypeError, "Dispatcher.complete() must return a list of parts");
        return -2;
    }
    /* Dispatcher.complete() counted the call in Python's numbers: fetch them for the table */
    PyObject *owner = PyObject_GetAttrString(self->complete, "__self__");
    if (owner != NULL) {
        PyObject *calls = PyObject_GetAttrString(owner, "calls");
        PyObject *errors = PyObject_GetAttrString(owner, "errors");
        if (calls && errors) {
            self->py_calls = PyLong_AsUnsignedLongLong(calls);
            self->py_errors = PyLong_AsUnsignedLongLong(errors);
        }
        Py_XDECREF(calls);
        Py_XDECREF(errors);
        Py_DECREF(owner);
    }
    PyErr_Clear();
    if (!ch->m.has_view) {  /* the channel went away meanwhile: nobody wants the reply */
        Py_DECREF(parts);
        mark_idle(self, self->py_calls, self->py_errors);
        return 0;
    }
    int r = reply_parts(self, ch, parts);
    if (r == -1) {
        *overflow = parts;
        return -1;
    }
    Py_DECREF(parts);
    return r;
}

/* Serve the call claimed on `ch` (request length n). 1 served (or dropped: nobody wants
 * the reply), 0 not for this path (nothing happened; Python serves it), -1 the reply is too
 * big for the channel (*overflow: its parts), -2 an exception is set (the worker is idle
 * again, without replying: the client sees the worker go). */
static int serve_claimed(Worker *self, Channel *ch, Py_ssize_t n, PyObject **overflow) {
    const unsigned char *req = (const unsigned char *)ch->m.view.buf + L.data_offset;
    if (n < 4) return 0;
    unsigned code = req[0];
    Py_ssize_t end = 4 + ((Py_ssize_t)req[2] | (Py_ssize_t)req[3] << 8);
    if (end > n) return 0;
    int raw = code == (unsigned)self->raw_code;
    if (!raw && code != (unsigned)self->msgpack_code) return 0;
    PyObject *entry = find_method(self, req + 4, end - 4);
    if (entry == NULL) return 0;
    PyObject *want = PyTuple_GET_ITEM(entry, 0);
    if (!PyLong_CheckExact(want) || PyLong_AsLong(want) != (long)code) {
        PyErr_Clear();
        return 0;
    }
    Py_INCREF(entry);  /* a method may call into something that replaces the cached entry */
    PyObject *fn = PyTuple_GET_ITEM(entry, 1);
    u64 start = mono_ns();
    PyObject *result;
    if (raw) {
        PyObject *payload = PyBytes_FromStringAndSize((const char *)req + end, n - end);
        if (payload == NULL) {
            PyErr_Clear();
            Py_DECREF(entry);
            return 0;
        }
        result = PyObject_CallOneArg(fn, payload);
        Py_DECREF(payload);
    } else {
        if (n - end < 8 || le32(req + end + 4) != 0 || (Py_ssize_t)le32(req + end) > n - end - 8) {
            Py_DECREF(entry);
            return 0;  /* out-of-band arrays, or not the usual shape: Python decodes it */
        }
        PyObject *view = PyMemoryView_FromMemory((char *)req + end + 8, le32(req + end), PyBUF_READ);
        PyObject *call = view ? unpack_call(self->unpack, view) : NULL;
        Py_XDECREF(view);
        if (call == NULL || !PyList_CheckExact(call) || PyList_GET_SIZE(call) != 2 ||
            !PyList_CheckExact(PyList_GET_ITEM(call, 0)) || !PyDict_CheckExact(PyList_GET_ITEM(call, 1))) {
            PyErr_Clear();
            Py_XDECREF(call);
            Py_DECREF(entry);
            return 0;
        }
        PyObject *args = PyList_AsTuple(PyList_GET_ITEM(call, 0));
        PyObject *kwargs = PyList_GET_ITEM(call, 1);
        result = args ? PyObject_Call(fn, args, PyDict_GET_SIZE(kwargs) ? kwargs : NULL) : NULL;
        Py_XDECREF(args);
        Py_DECREF(call);
    }
    int r;
    static const char ok_head[16] = {0};  /* status OK and padding; msgpack: no buffers */
    if (result != NULL && raw && PyBytes_CheckExact(result)) {
        if (count_call(self, PyTuple_GET_ITEM(entry, 4), mono_ns() - start) < 0) PyErr_Clear();
        r = reply_bytes(self, ch, ok_head, 8, PyBytes_AS_STRING(result), PyBytes_GET_SIZE(result));
        if (r == -1) *overflow = Py_BuildValue("[y#O]", ok_head, (Py_ssize_t)8, result);
        Py_DECREF(result);
    } else if (result != NULL && !raw && !self->packing) {
        self->packing = 1;
        PyObject *body = PyObject_CallOneArg(self->pack, result);
        self->packing = 0;
        if (body == NULL || !PyBytes_CheckExact(body) || PyBytes_GET_SIZE(body) > 0xFFFFFFFFLL) {
            /* arrays, sets, numpy scalars...: the serialiser's general path */
            PyErr_Clear();
            Py_XDECREF(body);
            r = complete_in_python(self, ch, entry, start, result, overflow);
        } else {
            Py_DECREF(result);
            char head[16] = {0};
            uint32_t len = (uint32_t)PyBytes_GET_SIZE(body);
            head[8] = (char)(len & 0xFF);
            head[9] = (char)(len >> 8 & 0xFF);
            head[10] = (char)(len >> 16 & 0xFF);
            head[11] = (char)(len >> 24 & 0xFF);
            if (count_call(self, PyTuple_GET_ITEM(entry, 4), mono_ns() - start) < 0) PyErr_Clear();
            r = reply_bytes(self, ch, head, 16, PyBytes_AS_STRING(body), PyBytes_GET_SIZE(body));
            if (r == -1) *overflow = Py_BuildValue("[y#O]", head, (Py_ssize_t)16, body);
            Py_DECREF(body);
        }
    } else {
        r = complete_in_python(self, ch, entry, start, result, overflow);
    }
    Py_DECREF(entry);
    if (r == -1 && *overflow == NULL) return -2;  /* could not even build the parts */
    return r >= 0 ? 1 : r;
}

/* serve(channels, wait_s, batch_s): serve calls until one needs Python, the worker is asked to
 * stop, the service shuts down, or batch_s has passed (so the Python loop checks its stop flag
 * and writes its statistics). Returns what next() returns for a call Python must serve, None
 * when no call came within wait_s, True after a batch, or [(gen, segment, channel), parts] for a
 * reply Python must write to an overflow segment (then finish()). */
static PyObject *Worker_serve(Worker *self, PyObject *args) {
    PyObject *channels;
    double wait_s, batch_s;
    if (!PyArg_ParseTuple(args, "O!dd", &PyDict_Type, &channels, &wait_s, &batch_s)) return NULL;
    if (self->table == NULL) return PyErr_Format(PyExc_RuntimeError, "serve() before set_dispatch()");
    u64 until = mono_ns() + (u64)(batch_s * 1e9);
    u64 *q = self->svc->q;
    for (;;) {
        PyObject *got = next_call(self, channels, wait_s);
        if (got == NULL || got == Py_None || PyTuple_GET_SIZE(got) != 2) return got;
        PyObject *entry = PyTuple_GET_ITEM(got, 0);
        Py_ssize_t n = PyLong_AsSsize_t(PyTuple_GET_ITEM(got, 1));
        PyObject *overflow = NULL;
        int r = serve_claimed(self, (Channel *)PyTuple_GET_ITEM(entry, 2), n, &overflow);
        if (r == 0) return got;  /* Python serves it */
        if (r == -1) {
            PyObject *out = PyList_New(2);
            if (out != NULL) {
                Py_INCREF(entry);
                PyList_SET_ITEM(out, 0, entry);
                PyList_SET_ITEM(out, 1, overflow);
            } else {
                Py_DECREF(overflow);
            }
            Py_DECREF(got);
            return out;
        }
        Py_DECREF(got);
        if (r == -2) {
            mark_idle(self, self->py_calls, self->py_errors);
            return NULL;
        }
        if (LOAD(&q[self->stop_word]) == 1 || LOAD(&q[self->shutdown_word]) == 1 || mono_ns() >= until)
            Py_RETURN_TRUE;
        if (PyErr_CheckSignals() < 0) return NULL;
    }
}

static PyObject *Worker_get_seq(Worker *self, PyObject *arg) {
    if (!PyObject_TypeCheck(arg, &ChannelType)) return PyErr_Format(PyExc_TypeError, "claimed_seq(Channel)");
    return PyLong_FromUnsignedLongLong(((Channel *)arg)->claimed_seq);
}

static PyObject *Worker_spin_state(Worker *self, PyObject *unused) { return spin_state(&self->spin); }

static PyMethodDef Worker_methods[] = {
    {"spin_state", (PyCFunction)Worker_spin_state, METH_NOARGS, "the adaptive spin's state (diagnostics)"},
    {"take", (PyCFunction)Worker_take, METH_O, "take(wait_s) -> (slot, owner, gen) or None"},
    {"next", (PyCFunction)Worker_next, METH_VARARGS,
     "next(channels, wait_s) -> None, ((gen, segment, channel), request length) or (slot, owner, gen)"},
    {"claim", (PyCFunction)Worker_claim, METH_O, "claim(channel) -> request length, -1 or -2"},
    {"reply", (PyCFunction)Worker_reply, METH_VARARGS, "reply(channel, parts, calls, errors) -> 1, 0 or -1"},
    {"finish", (PyCFunction)Worker_finish, METH_VARARGS, "finish(channel, overflow_id, size, calls, errors)"},
    {"claimed_seq", (PyCFunction)Worker_get_seq, METH_O, "seq of the call claimed on a channel"},
    {"set_dispatch", (PyCFunction)Worker_set_dispatch, METH_VARARGS,
     "set_dispatch(table, complete, unpack, pack, bounds, min_bucket, raw_code, msgpack_code, "
     "stop_word, shutdown_word): what serve() needs"},
    {"serve", (PyCFunction)Worker_serve, METH_VARARGS,
     "serve(channels, wait_s, batch_s) -> True, None, [entry, parts] or what next() returns"},
    {NULL}};

static PyTypeObject WorkerType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "speedysvc.shm._fastpath.Worker",
    .tp_basicsize = sizeof(Worker),
    .tp_dealloc = (destructor)Worker_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Worker(service, worker_slot): one worker's side of the call queue",
    .tp_methods = Worker_methods,
    .tp_init = (initproc)Worker_init,
    .tp_new = PyType_GenericNew,
};

/* ---- module ------------------------------------------------------------------------------ */
/* ---- relay: one TCP call of the front's steady state (speedysvc/tcp/gateway.py) ----------
 *
 * The TCP front reads a frame, forwards the request, still encoded, into the service's queue
 * and writes the reply back as a frame. relay() does that whole round for a plain call --
 * one recv that holds exactly one uncompressed CALL frame, a request that fits the channel, an
 * encoder the network may use, not the front's own DESCRIBE -- with the GIL released while it
 * waits on the socket and on the worker. Anything else goes back to Python untouched: the
 * bytes received (for the FrameReader, which checks and words every problem), or a sent call
 * that needs Python to finish it (see TCPGateway._relay). */
#define FRAME_HEADER 18
#define FRAME_CALL 4
#define FRAME_REPLY 5
#define RELAY_UNARMED (-10)

static inline u64 le64(const unsigned char *p) { return (u64)le32(p) | (u64)le32(p + 4) << 32; }

/* write the whole of `iov` (blocking socket; SO_SNDTIMEO bounds it): 0, or errno */
static int send_all(int fd, struct iovec *iov, int n) {
    while (n > 0) {
        struct msghdr msg = {0};
        msg.msg_iov = iov;
        msg.msg_iovlen = n;
        ssize_t sent = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        while (n > 0 && (size_t)sent >= iov->iov_len) {
            sent -= iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (char *)iov->iov_base + sent;
            iov->iov_len -= sent;
        }
    }
    return 0;
}

static PyObject *relay(PyObject *mod, PyObject *args) {
    Route *r;
    PyObject *conn, *buf_obj, *lock, *describe;
    int fd;
    Py_ssize_t max_frame;
    unsigned long long refused;
    if (!PyArg_ParseTuple(args, "O!OiOnKOO!", &RouteType, &r, &conn, &fd, &buf_obj, &max_frame, &refused, &lock,
                          &PyBytes_Type, &describe))
        return NULL;
    if (!route_ready(r)) return PyLong_FromLong(RELAY_UNARMED);
    Channel *ch = r->ch;
    Py_buffer b;
    if (PyObject_GetBuffer(buf_obj, &b, PyBUF_WRITABLE) < 0) return NULL;
    ssize_t n;
    int err = 0;
    Py_BEGIN_ALLOW_THREADS
    n = recv(fd, b.buf, (size_t)b.len, 0);
    if (n < 0) err = errno;
    Py_END_ALLOW_THREADS
    if (n <= 0) {
        PyBuffer_Release(&b);
        if (n == 0) return PyLong_FromLong(0);                       /* closed */
        if (err == EAGAIN || err == EWOULDBLOCK) return PyLong_FromLong(-1);  /* SO_RCVTIMEO */
        if (err == EINTR) return PyErr_CheckSignals() < 0 ? NULL : PyLong_FromLong(-2);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    unsigned char *p = (unsigned char *)b.buf;
    u64 length = n >= FRAME_HEADER ? le64(p + 10) : 0;
    Py_ssize_t limit = ch->m.view.len - L.data_offset;
    if (r->limit < limit) limit = r->limit;
    /* exactly one plain CALL frame, whole */
    if (n < FRAME_HEADER + 4 || p[0] != 'S' || p[1] != 'V' || p[2] != 1 || p[3] != FRAME_CALL || p[4] != 0 ||
        p[5] != 0 || length != (u64)(n - FRAME_HEADER) || length > (u64)max_frame || (Py_ssize_t)length > limit)
        goto to_python;
    unsigned char *req = p + FRAME_HEADER;
    Py_ssize_t name_len = (Py_ssize_t)req[2] | (Py_ssize_t)req[3] << 8;
    if (4 + name_len > (Py_ssize_t)length || (req[0] < 64 && (refused >> req[0] & 1)) ||
        (name_len == PyBytes_GET_SIZE(describe) && memcmp(req + 4, PyBytes_AS_STRING(describe), name_len) == 0))
        goto to_python;
    uint32_t request_id = le32(p + 6);
    req[1] |= 1;  /* dispatch.FLAG_NETWORK: the worker refuses what the network may not use */
    memcpy((char *)ch->m.view.buf + L.data_offset, req, (size_t)length);
    PyBuffer_Release(&b);
    if (PyObject_SetAttrString(conn, "busy", Py_True) < 0) return NULL;  /* a drain waits for it */
    Service *svc = r->svc;
    PyObject *channel = r->channel;
    Py_INCREF(ch);
    Py_INCREF(svc);
    Py_INCREF(channel);
    u64 seq = ++r->seq;
    ch->busy = 1;
    PyObject *reply = send_wait(ch, svc, r->slot, seq, (Py_ssize_t)length, (double)L.poll_ns / 1e9);
    ch->busy = 0;
    PyObject *result = NULL;
    if (reply != NULL && PyMemoryView_Check(reply)) {
        Py_buffer *v = PyMemoryView_GET_BUFFER(reply);
        PyObject *got = PyObject_CallMethod(lock, "acquire", "O", Py_False);
        if (got == Py_True) {  /* nobody else writes to the socket (a GOAWAY) meanwhile */
            unsigned char head[FRAME_HEADER] = {'S', 'V', 1, FRAME_REPLY, 0, 0};
            for (int i = 0; i < 4; i++) head[6 + i] = (unsigned char)(request_id >> (8 * i));
            for (int i = 0; i < 8; i++) head[10 + i] = (unsigned char)((u64)v->len >> (8 * i));
            struct iovec iov[2] = {{head, FRAME_HEADER}, {v->buf, (size_t)v->len}};
            Py_BEGIN_ALLOW_THREADS
            err = send_all(fd, iov, 2);
            Py_END_ALLOW_THREADS
            PyObject *released = PyObject_CallMethod(lock, "release", NULL);
            Py_XDECREF(released);
            if (released == NULL) {
                result = NULL;
            } else if (err) {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
            } else {
                result = Py_NewRef(Py_None);
            }
        } else if (got != NULL) {  /* the lock is taken: Python sends it under the lock */
            PyObject *copy = PyBytes_FromStringAndSize(v->buf, v->len);
            result = copy ? Py_BuildValue("(NI)", copy, (unsigned int)request_id) : NULL;
        }
        Py_XDECREF(got);
        call_keeping_error(reply, "release");
    } else if (reply != NULL) {  /* not replied within the first poll, or an overflow reply */
        result = Py_BuildValue("(OKIK)", reply, (unsigned long long)seq, (unsigned int)request_id,
                               (unsigned long long)length);
    }
    if (ch->close_requested) call_keeping_error(channel, "close");
    Py_XDECREF(reply);
    Py_DECREF(ch);
    Py_DECREF(svc);
    Py_DECREF(channel);
    return result;
to_python:
    PyBuffer_Release(&b);
    return PyLong_FromSsize_t(n);
}

/* read_reply(fd, buf, request_id, decoder): the TCP client's read of its reply, for a
 * connection whose FrameReader holds nothing (NetworkClient.call). Receives into `buf` (the
 * reader's buffer); when that is exactly one uncompressed REPLY frame for `request_id`, with
 * status OK and a body the decoder takes (see decode_usual), returns the result. Anything else
 * raises NotDecoded(n): the n bytes received are in `buf` for the FrameReader to go on with (a
 * GOAWAY, an error reply, a reply bigger than the buffer, ...). A timeout (SO_RCVTIMEO) raises
 * TimeoutError, a closed connection ConnectionError. */
static PyObject *read_reply(PyObject *mod, PyObject *args) {
    int fd;
    PyObject *buf_obj, *decoder;
    unsigned int request_id;
    if (!PyArg_ParseTuple(args, "iOIO", &fd, &buf_obj, &request_id, &decoder)) return NULL;
    Py_buffer b;
    if (PyObject_GetBuffer(buf_obj, &b, PyBUF_WRITABLE) < 0) return NULL;
    unsigned char *p = (unsigned char *)b.buf;
    Py_ssize_t have = 0, want = FRAME_HEADER;
    int plain = 1;  /* still what the fast read handles */
    while (have < want) {
        ssize_t n;
        int err = 0;
        Py_BEGIN_ALLOW_THREADS
        n = recv(fd, p + have, (size_t)(b.len - have), 0);
        if (n < 0) err = errno;
        Py_END_ALLOW_THREADS
        if (n < 0 && err == EINTR) {
            if (PyErr_CheckSignals() < 0) goto fail;
            continue;
        }
        if (n < 0) {
            if (err == EAGAIN || err == EWOULDBLOCK) {
                PyErr_SetString(PyExc_TimeoutError, "timed out");
            } else {
                errno = err;
                PyErr_SetFromErrno(PyExc_OSError);
            }
            goto fail;
        }
        if (n == 0) {
            PyErr_SetString(PyExc_ConnectionError, "connection closed");
            goto fail;
        }
        have += n;
        if (want == FRAME_HEADER && have >= FRAME_HEADER) {
            u64 length = le64(p + 10);
            if (p[0] != 'S' || p[1] != 'V' || p[2] != 1 || p[3] != FRAME_REPLY || p[4] != 0 ||
                le32(p + 6) != request_id || length > (u64)(b.len - FRAME_HEADER)) {
                plain = 0;
                break;
            }
            want = FRAME_HEADER + (Py_ssize_t)length;
        }
    }
    PyObject *result = NULL;
    if (plain && have == want) {
        PyObject *view = PyMemoryView_FromMemory((char *)p + FRAME_HEADER, want - FRAME_HEADER, PyBUF_READ);
        if (view == NULL) goto fail;
        result = decode_usual(view, decoder);
        PyObject *released = PyObject_CallMethod(view, "release", NULL);
        Py_XDECREF(released);
        Py_DECREF(view);
        if (released == NULL) {
            Py_CLEAR(result);
            goto fail;
        }
    }
    PyBuffer_Release(&b);
    if (result == NULL) {
        PyObject *n = PyLong_FromSsize_t(have);
        if (n != NULL) {
            PyErr_SetObject(NotDecoded, n);
            Py_DECREF(n);
        }
    }
    return result;
fail:
    PyBuffer_Release(&b);
    return NULL;
}

static PyMethodDef module_methods[] = {
    {"configure", (PyCFunction)configure, METH_O, "configure(layout: dict): the layout constants"},
    {"set_unpack", (PyCFunction)set_unpack, METH_O,
     "set_unpack(partial): msgpack's unpack with its options, called through vectorcall when given as decoder"},
    {"relay", (PyCFunction)relay, METH_VARARGS,
     "relay(route, conn, fd, buf, max_frame, refused_codes, send_lock, describe) -> None (one call served),\n"
     "n > 0 (bytes received into buf, for the FrameReader), 0 closed, -1 timed out, -2 interrupted,\n"
     "-10 (route not armed: nothing read), (reply, request_id) to send under the lock, or\n"
     "(code, seq, request_id, length) for Python to finish"},
    {"read_reply", (PyCFunction)read_reply, METH_VARARGS,
     "read_reply(fd, buf, request_id, decoder) -> the result of one plain REPLY frame, or raises\n"
     "NotDecoded(n): n bytes received into buf for the FrameReader"},
    {NULL}};

static struct PyModuleDef moduledef = {
    PyModuleDef_HEAD_INIT, "_fastpath",
    "The shared-memory call protocol of speedysvc below the interpreter (see native.py).", -1,
    module_methods};

PyMODINIT_FUNC PyInit__fastpath(void) {
    if (PyType_Ready(&ServiceType) < 0 || PyType_Ready(&ChannelType) < 0 || PyType_Ready(&WorkerType) < 0 ||
        PyType_Ready(&RouteType) < 0 || PyType_Ready(&CallerType) < 0)
        return NULL;
    ONE = PyLong_FromLong(1);
    EMPTY_DICT = PyDict_New();
    ROUTE_ATTR = PyUnicode_InternFromString("route");
    if (ONE == NULL || EMPTY_DICT == NULL || ROUTE_ATTR == NULL || pthread_atfork(NULL, NULL, after_fork_child) != 0) return NULL;
    PyObject *m = PyModule_Create(&moduledef);
    if (m == NULL) return NULL;
    Py_INCREF(&ServiceType);
    Py_INCREF(&ChannelType);
    Py_INCREF(&WorkerType);
    if (PyModule_AddObject(m, "Service", (PyObject *)&ServiceType) < 0 ||
        PyModule_AddObject(m, "Channel", (PyObject *)&ChannelType) < 0 ||
        PyModule_AddObject(m, "Worker", (PyObject *)&WorkerType) < 0 ||
        PyModule_AddObjectRef(m, "Route", (PyObject *)&RouteType) < 0 ||
        PyModule_AddObjectRef(m, "Caller", (PyObject *)&CallerType) < 0 ||
        PyModule_AddIntConstant(m, "ABI", 1) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    NotDecoded = PyErr_NewExceptionWithDoc(
        "speedysvc.shm._fastpath.NotDecoded",
        "call_decoded() could not finish the call: args[0] is what call() returned", NULL, NULL);
    if (NotDecoded == NULL || PyModule_AddObjectRef(m, "NotDecoded", NotDecoded) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
