/*
 * awaitable.c - Resume: runs a view coroutine inside its asyncio Task.
 *
 * A coroutine view gets its Task before it starts (conn.c), so that
 * asyncio.current_task(), asyncio.timeout() and TaskGroup work from its
 * first line.  The connection then runs the view's first step at once, as
 * that Task and in its context, rather than a loop turn later.  The Task
 * runs a Resume: a coroutine-like object whose first send() yields what the
 * view's first step yielded (so the Task waits on the same future) and
 * whose later sends go to the view.  When the view returns or raises,
 * Resume delivers the response to its slot in the connection's queue and
 * finishes without an exception, so no "exception never retrieved" noise.
 * A view that finished in its first step leaves a Resume that ends at once.
 *
 * On CPython 3.12+ a stock Task starts eagerly instead (eager_start=True):
 * its constructor takes the first step itself, as the current task and in
 * its context, so the Resume's first send runs the view's first step.  A
 * view that finishes there leaves its outcome on the Resume for the
 * connection (aw_resume_outcome), and its Task ends inside the constructor:
 * it is never scheduled.
 */
#include "common.h"

typedef struct {
    PyObject_HEAD
    fulmen_state *st;
    ConnObject *conn;     /* strong */
    RequestObject *req;   /* borrowed: the queue slot owns it */
    PyObject *coro;
    PyObject *first;      /* what the view yielded first, until re-yielded */
    uint32_t seq;
    int parked;           /* aw_resume_park or aw_resume_drop was called */
    int done;
    int eager;            /* the first send runs the view's first step
                           * (cleared once it has) */
    PyObject *outcome;    /* eager, finished before parking: the response,
                           * or the exception if `raised` */
    int raised;
    int running;          /* in a send, throw or close of coro: the view's
                           * own code stepping its Task meets ValueError */
} ResumeObject;

/* The view's code, while it runs, stepped (send, throw, close) the Task's
 * Resume that runs it: a ValueError, as a running coroutine's own. */
static int aw_running(ResumeObject *r)
{
    if (LIKELY(!r->running))
        return 0;
    PyErr_SetString(PyExc_ValueError, "the view's coroutine is already running");
    return 1;
}

/* A Resume for coro (a new reference), not yet parked: see aw_resume_park
 * and aw_resume_drop. */
PyObject *aw_resume_new(fulmen_state *st, ConnObject *c, RequestObject *req,
                        PyObject *coro)
{
    ResumeObject *r = PyObject_GC_New(ResumeObject, st->ResumeType);
    if (r == NULL)
        return NULL;
    r->st = st;
    Py_INCREF(c);
    r->conn = c;
    r->req = req;
    Py_INCREF(coro);
    r->coro = coro;
    r->first = NULL;
    r->seq = 0;
    r->parked = 0;
    r->done = 0;
    r->eager = 0;
    r->outcome = NULL;
    r->raised = 0;
    r->running = 0;
    PyObject_GC_Track(r);
    return (PyObject *)r;
}

/* Its Task starts eagerly: the first send runs the view's first step
 * (3.12+: conn.c sets it only there). */
void aw_resume_set_eager(PyObject *aw)
{
    ((ResumeObject *)aw)->eager = 1;
}

/* After an eager Task's constructor, the view's first step as PyIter_Send
 * would give it: PYGEN_RETURN with *result (a new reference), PYGEN_ERROR
 * with the view's exception set, or PYGEN_NEXT with *result NULL (it
 * suspended, or the Task did not start it yet: park the Resume). */
PySendResult aw_resume_outcome(PyObject *aw, PyObject **result)
{
    ResumeObject *r = (ResumeObject *)aw;
    PyObject *o = r->outcome;
    *result = NULL;
    if (o == NULL)
        return PYGEN_NEXT;
    r->outcome = NULL;
    if (r->raised) {
        PyErr_SetObject((PyObject *)Py_TYPE(o), o); /* with its traceback */
        Py_DECREF(o);
        return PYGEN_ERROR;
    }
    *result = o;
    return PYGEN_RETURN;
}

#if PY_VERSION_HEX >= 0x030C0000
static PySendResult aw_finish(ResumeObject *r, PySendResult status,
                              PyObject **result);

/* The eager first send: run the view's first step.  A view that finishes
 * before the Resume is parked keeps its outcome here, and the Task ends. */
static PySendResult aw_first_step(ResumeObject *r, PyObject *arg, PyObject **result)
{
    PySendResult st;
    r->eager = 0;
    r->running = 1;
    st = PyIter_Send(r->coro, arg, result);
    r->running = 0;
    if (st == PYGEN_NEXT)
        return st; /* the Task waits on what the view yielded */
    if (r->parked)
        return aw_finish(r, st, result);
    r->done = 1;
    Py_CLEAR(r->coro);
    if (st == PYGEN_RETURN) {
        r->outcome = *result;
    } else {
        r->outcome = PyErr_GetRaisedException();
        r->raised = 1;
    }
    *result = Py_NewRef(Py_None);
    return PYGEN_RETURN;
}
#endif

/* The view's first step yielded `first` (stolen; NULL when its eager Task
 * took it): the Task yields it in turn, and the response goes to the
 * connection's slot seq. */
void aw_resume_park(PyObject *aw, uint32_t seq, PyObject *first)
{
    ResumeObject *r = (ResumeObject *)aw;
    r->seq = seq;
    r->parked = 1;
    Py_XSETREF(r->first, first);
}

/* The view finished in its first step: its Task has nothing left to run. */
void aw_resume_drop(PyObject *aw)
{
    ResumeObject *r = (ResumeObject *)aw;
    r->parked = 1;
    r->done = 1;
    r->req = NULL;
    Py_CLEAR(r->coro);
}

/* The view finished: status is PYGEN_RETURN with *result, or PYGEN_ERROR
 * with an exception set.  Deliver and report a plain return to the Task. */
static PySendResult aw_finish(ResumeObject *r, PySendResult status,
                              PyObject **result)
{
    r->done = 1;
    if (status == PYGEN_RETURN) {
        conn_deliver(r->conn, r->seq, *result);
    } else {
        conn_deliver_error(r->conn, r->seq, r->req);
    }
    Py_CLEAR(r->coro);
    *result = Py_None;
    Py_INCREF(Py_None);
    return PYGEN_RETURN;
}

static PySendResult aw_am_send(ResumeObject *r, PyObject *arg, PyObject **result)
{
    PySendResult st;
#if PY_VERSION_HEX >= 0x030C0000
    if (r->eager && r->coro != NULL)
        return aw_first_step(r, arg, result);
#endif
    if (UNLIKELY(!r->parked)) {
        /* run before the connection took the view's first step (a task
         * factory that starts tasks eagerly): a bare yield, after which
         * the Task steps again on the next loop turn */
        *result = Py_None;
        Py_INCREF(Py_None);
        return PYGEN_NEXT;
    }
    if (r->first != NULL) {
        *result = r->first;
        r->first = NULL;
        return PYGEN_NEXT;
    }
    if (r->done || r->coro == NULL) {
        *result = Py_None;
        Py_INCREF(Py_None);
        return PYGEN_RETURN;
    }
    if (aw_running(r)) {
        *result = NULL;
        return PYGEN_ERROR;
    }
    r->running = 1;
    st = PyIter_Send(r->coro, arg, result);
    r->running = 0;
    if (st == PYGEN_NEXT)
        return st;
    return aw_finish(r, st, result);
}

static PyObject *aw_send(ResumeObject *r, PyObject *arg)
{
    PyObject *res = NULL;
    PySendResult st = aw_am_send(r, arg, &res);
    if (st == PYGEN_NEXT)
        return res;
    if (st == PYGEN_RETURN) {
        Py_DECREF(res);
        PyErr_SetNone(PyExc_StopIteration);
    }
    return NULL;
}

static PyObject *aw_iternext(ResumeObject *r)
{
    PyObject *res = NULL;
    PySendResult st = aw_am_send(r, Py_None, &res);
    if (st == PYGEN_NEXT)
        return res;
    Py_XDECREF(res);
    return NULL; /* StopIteration(None) is implied by NULL without error */
}

static PyObject *aw_throw(ResumeObject *r, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *res, *meth;
    Py_CLEAR(r->first);
    if (r->done || r->coro == NULL) {
        if (nargs >= 1) {
            if (PyExceptionInstance_Check(args[0]))
                PyErr_SetObject((PyObject *)Py_TYPE(args[0]), args[0]);
            else
                PyErr_SetObject(args[0], nargs >= 2 ? args[1] : NULL);
        }
        return NULL;
    }
    if (aw_running(r))
        return NULL;
    meth = PyObject_GetAttr(r->coro, r->st->s_throw);
    if (meth == NULL)
        return NULL;
    r->running = 1;
    res = PyObject_Vectorcall(meth, args, (size_t)nargs, NULL);
    r->running = 0;
    Py_DECREF(meth);
    if (res != NULL || UNLIKELY(!r->parked))
        return res; /* the view yielded again; or its first step, which
                     * answers for it, has not been taken (the app's code
                     * throwing into it from there) */
    if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
        PyObject *t, *v, *tb, *value;
        PyErr_Fetch(&t, &v, &tb);
        PyErr_NormalizeException(&t, &v, &tb);
        value = v ? PyObject_GetAttrString(v, "value") : Py_NewRef(Py_None);
        Py_XDECREF(t);
        Py_XDECREF(v);
        Py_XDECREF(tb);
        aw_finish(r, value ? PYGEN_RETURN : PYGEN_ERROR, &value);
        Py_DECREF(value);
    } else {
        aw_finish(r, PYGEN_ERROR, &res);
        Py_DECREF(res);
    }
    PyErr_SetNone(PyExc_StopIteration);
    return NULL;
}

static PyObject *aw_close(ResumeObject *r, PyObject *unused)
{
    PyObject *res;
    Py_CLEAR(r->first);
    if (r->coro == NULL)
        Py_RETURN_NONE;
    if (aw_running(r))
        return NULL;
    r->running = 1;
    res = PyObject_CallMethodNoArgs(r->coro, r->st->s_close_gen);
    r->running = 0;
    if (UNLIKELY(!r->parked))
        return res; /* (as in aw_throw: the first step answers) */
    if (!r->done) {
        /* cancelled before the view finished: answer 503 in its place */
        PyObject *resp = resp_new_simple(r->st, 503, "Service Unavailable", NULL);
        r->done = 1;
        if (resp != NULL)
            conn_deliver(r->conn, r->seq, resp);
        else
            PyErr_WriteUnraisable((PyObject *)r);
    }
    Py_CLEAR(r->coro);
    return res;
}

static PyObject *aw_await(PyObject *self)
{
    Py_INCREF(self);
    return self;
}

static int aw_traverse(ResumeObject *r, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(r));
    Py_VISIT(r->conn);
    Py_VISIT(r->coro);
    Py_VISIT(r->first);
    Py_VISIT(r->outcome);
    return 0;
}

static int aw_clear(ResumeObject *r)
{
    Py_CLEAR(r->conn);
    Py_CLEAR(r->coro);
    Py_CLEAR(r->first);
    Py_CLEAR(r->outcome);
    return 0;
}

static void aw_dealloc(ResumeObject *r)
{
    PyTypeObject *tp = Py_TYPE(r);
    PyObject_GC_UnTrack(r);
    if (!r->done && r->conn != NULL && r->coro != NULL) {
        /* dropped without finishing (loop closed): close the view */
        PyObject *res = PyObject_CallMethodNoArgs(r->coro, r->st->s_close_gen);
        if (res == NULL)
            PyErr_Clear();
        Py_XDECREF(res);
    }
    aw_clear(r);
    tp->tp_free(r);
    Py_DECREF(tp);
}

static PyMethodDef aw_methods[] = {
    {"send", (PyCFunction)aw_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))aw_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)aw_close, METH_NOARGS, NULL},
    {NULL},
};

static PyType_Slot aw_slots[] = {
    {Py_am_await, aw_await},
    {Py_am_send, aw_am_send},
    {Py_tp_iter, aw_await},
    {Py_tp_iternext, aw_iternext},
    {Py_tp_methods, aw_methods},
    {Py_tp_dealloc, aw_dealloc},
    {Py_tp_traverse, aw_traverse},
    {Py_tp_clear, aw_clear},
    {0, NULL},
};

PyType_Spec aw_resume_spec = {
    .name = "fulmen._core.Resume",
    .basicsize = sizeof(ResumeObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = aw_slots,
};

/* ========================================================================
 * Ready: an awaitable that is already done (await gives its value without
 * suspending); cheaper than a Future for results known at once.  One made
 * by aw_ready_yield_new first yields once, as asyncio.sleep(0) does: its
 * Task gives the loop a turn before it goes on.
 */

typedef struct {
    PyObject_HEAD
    PyObject *value;
    int yield_first;
} ReadyObject;

PyObject *aw_ready_new(fulmen_state *st, PyObject *value)
{
    ReadyObject *r = PyObject_New(ReadyObject, st->ReadyType);
    if (r == NULL)
        return NULL;
    Py_INCREF(value);
    r->value = value;
    r->yield_first = 0;
    return (PyObject *)r;
}

PyObject *aw_ready_yield_new(fulmen_state *st, PyObject *value)
{
    PyObject *r = aw_ready_new(st, value);
    if (r != NULL)
        ((ReadyObject *)r)->yield_first = 1;
    return r;
}

static PySendResult aw_ready_send(ReadyObject *r, PyObject *arg, PyObject **result)
{
    if (r->yield_first) {
        /* a bare yield: asyncio's Task takes it as a turn of the loop */
        r->yield_first = 0;
        *result = Py_NewRef(Py_None);
        return PYGEN_NEXT;
    }
    *result = r->value ? r->value : Py_None;
    Py_INCREF(*result);
    Py_CLEAR(r->value);
    return PYGEN_RETURN;
}

static PyObject *aw_ready_iternext(ReadyObject *r)
{
    PyObject *v = r->value ? r->value : Py_None, *exc;
    if (r->yield_first) {
        r->yield_first = 0;
        return Py_NewRef(Py_None);
    }
    exc = PyObject_CallOneArg(PyExc_StopIteration, v);
    Py_CLEAR(r->value);
    if (exc != NULL) {
        PyErr_SetObject(PyExc_StopIteration, exc);
        Py_DECREF(exc);
    }
    return NULL;
}

static void aw_ready_dealloc(ReadyObject *r)
{
    PyTypeObject *tp = Py_TYPE(r);
    Py_XDECREF(r->value);
    PyObject_Free(r);
    Py_DECREF(tp);
}

static PyType_Slot aw_ready_slots[] = {
    {Py_am_await, aw_await},
    {Py_am_send, aw_ready_send},
    {Py_tp_iter, aw_await},
    {Py_tp_iternext, aw_ready_iternext},
    {Py_tp_dealloc, aw_ready_dealloc},
    {0, NULL},
};

PyType_Spec aw_ready_spec = {
    .name = "fulmen._core.Ready",
    .basicsize = sizeof(ReadyObject),
    .flags = Py_TPFLAGS_DEFAULT,
    .slots = aw_ready_slots,
};

/* ========================================================================
 * Shared: one task's wait on a Future that several tasks may wait on.  The
 * asyncio.shield that keeps a cancelled wait from cancelling the Future is
 * made when the Shared is awaited, not before: a send() that is not
 * awaited leaves no shield future behind to log "exception was never
 * retrieved" when the Future fails (the connection went).
 */

typedef struct {
    PyObject_HEAD
    PyObject *fut;
} SharedObject;

PyObject *aw_shared_new(fulmen_state *st, PyObject *fut)
{
    SharedObject *s;
    if (fut == NULL)
        return NULL;
    s = PyObject_GC_New(SharedObject, st->SharedType);
    if (s == NULL) {
        Py_DECREF(fut);
        return NULL;
    }
    s->fut = fut;
    PyObject_GC_Track(s);
    return (PyObject *)s;
}

static PyObject *aw_shared_await(SharedObject *s)
{
    PyObject *asyncio, *outer, *it;
    PyTypeObject *tp;
    if (s->fut == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "cannot await a cleared wait");
        return NULL;
    }
    asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL)
        return NULL;
    outer = PyObject_CallMethod(asyncio, "shield", "O", s->fut);
    Py_DECREF(asyncio);
    if (outer == NULL)
        return NULL;
    tp = Py_TYPE(outer);
    if (tp->tp_as_async != NULL && tp->tp_as_async->am_await != NULL)
        it = tp->tp_as_async->am_await(outer);
    else
        it = PyObject_CallMethod(outer, "__await__", NULL);
    Py_DECREF(outer);
    return it;
}

static int aw_shared_traverse(SharedObject *s, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(s));
    Py_VISIT(s->fut);
    return 0;
}

static int aw_shared_clear(SharedObject *s)
{
    Py_CLEAR(s->fut);
    return 0;
}

static void aw_shared_dealloc(SharedObject *s)
{
    PyTypeObject *tp = Py_TYPE(s);
    PyObject_GC_UnTrack(s);
    aw_shared_clear(s);
    PyObject_GC_Del(s);
    Py_DECREF(tp);
}

static PyType_Slot aw_shared_slots[] = {
    {Py_am_await, aw_shared_await},
    {Py_tp_traverse, aw_shared_traverse},
    {Py_tp_clear, aw_shared_clear},
    {Py_tp_dealloc, aw_shared_dealloc},
    {0, NULL},
};

PyType_Spec aw_shared_spec = {
    .name = "fulmen._core.Shared",
    .basicsize = sizeof(SharedObject),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = aw_shared_slots,
};
